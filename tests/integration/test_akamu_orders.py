"""akamu orders (RFC 8555 §7.1.3, §7.1.6, §7.4) and finalization, against a
real akamu process, with raw JWS requests:

- newOrder: identifier checks (unsupportedIdentifier, rejectedIdentifier
  with subproblems, malformed), the 100-name cap, duplicates collapsed, the
  challenge set per identifier kind (wildcard: dns-01 only; ip: http-01 and
  tls-alpn-01), notBefore/notAfter refused;
- the order resource: POST-as-GET by the owner; another account's order
  answers 404 like an absent one (ids cannot be probed);
- finalize: orderNotReady before ready, on a valid order, and for the loser
  of two concurrent finalizations; 404 for unknown and foreign orders; CSR
  errors (names differ, the account key, a 1024-bit RSA key, bad base64url);
- the happy paths: an IP identifier validated over http-01 (a tiny HTTP
  server in the test), and a DNS name plus its wildcard over http-01 and
  dns-01 with pebble-challtestsrv as akamu's DNS server; then the issued
  certificate chain verifies against akamu's CA, and a new order for the
  same identifier reuses the valid authorization (ready at once).

Internal documents (acme.h) are read from the SQLite views of the
replicated tables to check what the API does not show (challenge tokens,
stored identifiers)."""
import base64
import concurrent.futures
import hashlib
import ipaddress
import json
import re
import sqlite3
import subprocess
import time

import acme_util
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from acme_util import ERR as NS
from acme_util import Client, b64u, problem, write_config
from conftest import Daemon, free_port


def register(base):
    c = Client(base)
    r = c.new_account()
    assert r.status_code == 201, r.text
    return c


def new_order(c, *idents):
    return c.post(c.url("newOrder"), {"identifiers": [{"type": t, "value": v} for t, v in idents]})


def csr_der(names, key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    san = []
    for n in names:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            san.append(x509.DNSName(n))
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def wait_status(acme, url, want, timeout=30):
    end = time.monotonic() + timeout
    while True:
        r = acme.post(url, None)
        assert r.status_code == 200, r.text
        doc = r.json()
        if doc["status"] == want:
            return doc
        assert doc["status"] in ("pending", "processing"), doc
        assert time.monotonic() < end, f"{url} still {doc['status']}: {doc}"
        time.sleep(0.2)


class Db:
    """Reads the internal documents through the replicated tables' views."""

    def __init__(self, path):
        self.path = path

    def get(self, tbl, key):
        c = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10)
        try:
            row = c.execute(f'SELECT value FROM "{tbl}" WHERE key = ?', (key,)).fetchone()
        finally:
            c.close()
        return json.loads(row[0]) if row else None


ChallengeServer = acme_util.Http01Responder


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory):
    with acme_util.challtestsrv(tmp_path_factory.mktemp("challtestsrv"), serve=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def akamu(tmp_path_factory, challtestsrv):
    d = tmp_path_factory.mktemp("akamu")
    port, admin = free_port(), free_port()
    info = {"base": f"http://127.0.0.1:{port}", "http_port": free_port(), "dir": d,
            "ca": str(d / "ca.pem"), "db": Db(str(d / "akamu.db"))}
    cfg = write_config(str(d), port, admin, server={
        "http_validation_port": info["http_port"], "tls_alpn_validation_port": free_port(),
        "dns_resolver_addr": f"127.0.0.1:{challtestsrv['dns']}"})
    daemon = Daemon("akamu", cfg)
    info["daemon"] = daemon
    info["challenges"] = ChallengeServer(info["http_port"])
    try:
        daemon.wait_ready(info["base"] + "/healthz", None)
        yield info
    finally:
        info["challenges"].shutdown()
        daemon.stop()


@pytest.fixture
def acct(akamu):
    return register(akamu["base"])


def order_id(url):
    return url.rsplit("/", 1)[-1]


# ---- newOrder ----


def test_new_order_shape(akamu, acct):
    r = new_order(acct, ("dns", "shape.example.com"))
    assert r.status_code == 201, r.text
    assert r.headers.get("Replay-Nonce")
    loc = r.headers["Location"]
    assert re.fullmatch(re.escape(akamu["base"]) + r"/acme/order/[A-Za-z0-9_-]{24}", loc), loc
    o = r.json()
    assert o["status"] == "pending"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", o["expires"]), o
    assert o["identifiers"] == [{"type": "dns", "value": "shape.example.com"}]
    assert o["finalize"] == loc + "/finalize"
    assert len(o["authorizations"]) == 1
    assert o["authorizations"][0].startswith(akamu["base"] + "/acme/authz/")
    assert "certificate" not in o and "error" not in o

    doc = akamu["db"].get("orders", order_id(loc))
    assert doc["account"] == order_id(acct.kid) and doc["status"] == "pending"
    az = akamu["db"].get("authorizations", order_id(o["authorizations"][0]))
    assert az["identifier"] == {"type": "dns", "value": "shape.example.com"}
    assert az["wildcard"] is False and az["status"] == "pending"
    assert az["order"] == order_id(loc)
    chs = [akamu["db"].get("challenges", c) for c in az["challenges"]]
    assert sorted(c["type"] for c in chs) == ["dns-01", "http-01", "tls-alpn-01"]
    for c in chs:
        assert c["status"] == "pending" and c["authz"] == az["id"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", c["token"]), c
    assert len({c["token"] for c in chs}) == 3


def test_new_order_wildcard_and_ip_challenges(akamu, acct):
    r = new_order(acct, ("dns", "*.Wild.Example.com"), ("ip", "2001:DB8:0:0::1"),
                       ("ip", "127.0.0.1"))
    assert r.status_code == 201, r.text
    o = r.json()
    assert o["identifiers"] == [{"type": "dns", "value": "*.wild.example.com"},
                                {"type": "ip", "value": "2001:db8::1"},
                                {"type": "ip", "value": "127.0.0.1"}]
    db = akamu["db"]
    azs = [db.get("authorizations", order_id(u)) for u in o["authorizations"]]
    assert azs[0]["identifier"] == {"type": "dns", "value": "wild.example.com"}
    assert azs[0]["wildcard"] is True
    types = [sorted(db.get("challenges", c)["type"] for c in az["challenges"]) for az in azs]
    assert types == [["dns-01"], ["http-01", "tls-alpn-01"], ["http-01", "tls-alpn-01"]]


def test_new_order_duplicates_collapsed(akamu, acct):
    r = new_order(acct, ("dns", "Dup.Example.com"), ("dns", "dup.example.com"),
                       ("dns", "*.dup.example.com"), ("ip", "10.0.0.1"), ("ip", "10.0.0.1"))
    assert r.status_code == 201, r.text
    o = r.json()
    assert o["identifiers"] == [{"type": "dns", "value": "dup.example.com"},
                                {"type": "dns", "value": "*.dup.example.com"},
                                {"type": "ip", "value": "10.0.0.1"}]
    assert len(o["authorizations"]) == 3


def test_new_order_unsupported_identifier(akamu, acct):
    doc = problem(new_order(acct, ("email", "a@example.com")), 400, "unsupportedIdentifier")
    assert "email" in doc["detail"]


@pytest.mark.parametrize("kind,value", [
    ("dns", "-bad.example.com"), ("dns", "bad-.example.com"), ("dns", "ex_ample.com"),
    ("dns", "example.com."), ("dns", "com"), ("dns", "*.com"), ("dns", "a.*.example.com"),
    ("dns", "**.example.com"), ("dns", "*"), ("dns", "1.2.3.4"), ("dns", "host.123"),
    ("dns", "a" * 64 + ".com"), ("dns", ".".join(["abcdefghi"] * 26)), ("dns", ""),
    ("dns", "ex ample.com"), ("dns", "ab--cd.example.com"), ("dns", "bücher.example"),
    ("dns", "a..example.com"), ("ip", "1.2.3"), ("ip", "::g"), ("ip", "[::1]"),
    ("ip", "0.0.0.0"), ("ip", "224.0.0.1"), ("ip", "::"), ("ip", "example.com"),
    ("ip", "fe80::1%eth0"),
])
def test_new_order_rejected_identifier(akamu, acct, kind, value):
    doc = problem(new_order(acct, (kind, value)), 400, "rejectedIdentifier")
    assert doc["identifier"] == {"type": kind, "value": value}, doc


def test_new_order_punycode_accepted(akamu, acct):
    r = new_order(acct, ("dns", "xn--bcher-kva.example"))
    assert r.status_code == 201, r.text


def test_new_order_subproblems(akamu, acct):
    r = new_order(acct, ("dns", "ok.example.com"), ("dns", "bad_.example.com"),
                       ("ip", "300.1.1.1"), ("email", "x@example.com"))
    doc = problem(r, 400, "malformed")  # mixed types: the top level is malformed
    subs = doc["subproblems"]
    assert [s["identifier"] for s in subs] == [{"type": "dns", "value": "bad_.example.com"},
                                              {"type": "ip", "value": "300.1.1.1"},
                                              {"type": "email", "value": "x@example.com"}]
    assert [s["type"] for s in subs] == [NS + "rejectedIdentifier", NS + "rejectedIdentifier",
                                         NS + "unsupportedIdentifier"]
    r = new_order(acct, ("dns", "a_.example.com"), ("dns", "b_.example.com"))
    doc = problem(r, 400, "rejectedIdentifier")  # all agree: their type
    assert len(doc["subproblems"]) == 2


@pytest.mark.parametrize("payload", [
    {}, {"identifiers": []}, {"identifiers": "a.example.com"},
    {"identifiers": ["a.example.com"]}, {"identifiers": [{"type": "dns"}]},
    {"identifiers": [{"type": "dns", "value": 5}]},
])
def test_new_order_malformed(akamu, acct, payload):
    problem(acct.post(acct.dir["newOrder"], payload), 400, "malformed")


def test_new_order_post_as_get_is_malformed(akamu, acct):
    problem(acct.post(acct.dir["newOrder"], None), 400, "malformed")


def test_new_order_not_before_after_refused(akamu, acct):
    ids = [{"type": "dns", "value": "nb.example.com"}]
    for extra in ({"notBefore": "2030-01-01T00:00:00Z"}, {"notAfter": "2030-01-01T00:00:00Z"}):
        doc = problem(acct.post(acct.dir["newOrder"], {"identifiers": ids, **extra}), 400,
                      "malformed")
        assert "notBefore/notAfter" in doc["detail"]


def test_new_order_name_cap(akamu, acct):
    names = [("dns", f"n{i}.cap.example.com") for i in range(101)]
    doc = problem(new_order(acct, *names), 400, "malformed")
    assert "100" in doc["detail"]
    # 100 distinct names (plus a duplicate) are fine
    r = new_order(acct, *names[:100], names[0])
    assert r.status_code == 201, r.text
    assert len(r.json()["authorizations"]) == 100


def test_new_order_needs_account(akamu):
    a = Client(akamu["base"])
    r = a.post(a.url("newOrder"), {"identifiers": [{"type": "dns", "value": "x.example.com"}]},
               jwk=True)
    problem(r, 400, "malformed")  # newOrder takes a kid, not a jwk


# ---- the order resource ----


def test_order_get_owner_and_others(akamu, acct):
    r = new_order(acct, ("dns", "get.example.com"))
    loc, created = r.headers["Location"], r.json()
    r = acct.post(loc, None)
    assert r.status_code == 200, r.text
    assert r.headers.get("Replay-Nonce")
    assert r.json() == created
    assert "Retry-After" not in r.headers

    problem(acct.post(loc, {}), 400, "malformed")  # not POST-as-GET

    other = register(akamu["base"])
    d1 = problem(other.post(loc, None), 404, "malformed")
    d2 = problem(other.post(akamu["base"] + "/acme/order/AAAAAAAAAAAAAAAAAAAAAAAA", None), 404,
                 "malformed")
    # a foreign order looks exactly like an absent one
    assert d1["detail"].replace(order_id(loc), "X") == d2["detail"].replace(
        "AAAAAAAAAAAAAAAAAAAAAAAA", "X")


# ---- finalize ----


def test_finalize_not_ready_unknown_foreign(akamu, acct):
    o = new_order(acct, ("dns", "early.example.com")).json()
    csr = b64u(csr_der(["early.example.com"]))
    doc = problem(acct.post(o["finalize"], {"csr": csr}), 403, "orderNotReady")
    assert "pending" in doc["detail"]
    problem(acct.post(akamu["base"] + "/acme/order/AAAAAAAAAAAAAAAAAAAAAAAA/finalize",
                      {"csr": csr}), 404, "malformed")
    other = register(akamu["base"])
    problem(other.post(o["finalize"], {"csr": csr}), 404, "malformed")
    problem(acct.post(o["finalize"], None), 400, "malformed")


def answer_http01(akamu, acme, authz_url):
    """Serves the http-01 key authorization and triggers validation."""
    r = acme.post(authz_url, None)
    assert r.status_code == 200, r.text
    az = r.json()
    ch = [c for c in az["challenges"] if c["type"] == "http-01"][0]
    akamu["challenges"].answers[ch["token"]] = ch["token"] + "." + acme.key.thumbprint()
    r = acme.post(ch["url"], {})
    assert r.status_code == 200, r.text
    return wait_status(acme, authz_url, "valid")


def answer_dns01(challtestsrv, acme, authz_url):
    r = acme.post(authz_url, None)
    assert r.status_code == 200, r.text
    az = r.json()
    assert [c["type"] for c in az["challenges"]] == ["dns-01"]
    ch = az["challenges"][0]
    ka = ch["token"] + "." + acme.key.thumbprint()
    txt = b64u(hashlib.sha256(ka.encode()).digest())
    host = "_acme-challenge." + az["identifier"]["value"] + "."
    r = requests.post(challtestsrv["mgmt"] + "/set-txt", json={"host": host, "value": txt},
                      timeout=5)
    assert r.status_code == 200, r.text
    r = acme.post(ch["url"], {})
    assert r.status_code == 200, r.text
    return wait_status(acme, authz_url, "valid")


def check_certificate(akamu, acme, order, names, tmp_path):
    """The order's certificate: download (cert.c), chain verification, SANs."""
    assert order["certificate"].startswith(akamu["base"] + "/acme/cert/")
    serial = order["certificate"].rsplit("/", 1)[-1]
    assert re.fullmatch(r"[0-9a-f]{32}", serial), serial
    doc = akamu["db"].get("certificates", serial)
    assert doc["id"] == serial and doc["account"] == order_id(acme.kid)
    assert sorted(doc["names"]) == sorted(names)
    cert = x509.load_der_x509_certificate(base64.urlsafe_b64decode(doc["der"] + "=="))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    got = [str(v) for v in san.get_values_for_type(x509.DNSName)] + \
        [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    assert sorted(got) == sorted(names)
    assert format(cert.serial_number, "032x") == serial
    r = acme.post(order["certificate"], None)
    assert r.status_code == 200, r.text
    pem = tmp_path / f"{serial}.pem"
    pem.write_bytes(r.content)
    v = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", akamu["ca"],
                        str(pem)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
    assert akamu["daemon"].wait_log(f'certificate issued serial="{serial}"', 5), \
        akamu["daemon"].text()


def test_happy_path_ip_http01(akamu, acct, tmp_path):
    r = new_order(acct, ("ip", "127.0.0.1"))
    assert r.status_code == 201, r.text
    loc, o = r.headers["Location"], r.json()
    az = answer_http01(akamu, acct, o["authorizations"][0])
    assert az["identifier"] == {"type": "ip", "value": "127.0.0.1"}
    o = wait_status(acct, loc, "ready")

    # CSR errors leave the order ready
    problem(acct.post(o["finalize"], {"csr": "!!not base64!!"}), 400, "malformed")
    problem(acct.post(o["finalize"], {"csr": b64u(csr_der(["127.0.0.1"]))[:-1] + "="}), 400,
            "malformed")
    problem(acct.post(o["finalize"], {"csr": b64u(b"\x30\x03\x02\x01\x00")}), 400, "badCSR")
    doc = problem(acct.post(o["finalize"], {"csr": b64u(csr_der(["127.0.0.2"]))}), 400,
                  "badCSR")
    assert "127.0.0.1" in doc["detail"] and "127.0.0.2" in doc["detail"], doc
    doc = problem(acct.post(o["finalize"], {"csr": b64u(csr_der(["127.0.0.1",
                                                                 "x.example.com"]))}),
                  400, "badCSR")
    assert "x.example.com" in doc["detail"], doc
    doc = problem(acct.post(o["finalize"], {"csr": b64u(csr_der(["127.0.0.1"], acct.key.priv))}),
                  400, "badCSR")
    assert "account key" in doc["detail"], doc
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    problem(acct.post(o["finalize"], {"csr": b64u(csr_der(["127.0.0.1"], weak))}), 400,
            "badCSR")
    assert acct.post(loc, None).json()["status"] == "ready"

    r = acct.post(o["finalize"], {"csr": b64u(csr_der(["127.0.0.1"]))})
    assert r.status_code == 200, r.text
    assert r.headers["Location"] == loc
    o = r.json()
    assert o["status"] == "valid", o
    assert acct.post(loc, None).json() == o
    check_certificate(akamu, acct, o, ["127.0.0.1"], tmp_path)

    doc = problem(acct.post(o["finalize"], {"csr": b64u(csr_der(["127.0.0.1"]))}), 403,
                  "orderNotReady")
    assert "valid" in doc["detail"]

    # A new order for the same identifier reuses the valid authorization.
    r = new_order(acct, ("ip", "127.0.0.1"))
    assert r.status_code == 201, r.text
    o2 = r.json()
    assert o2["status"] == "ready", o2
    assert o2["authorizations"] == o["authorizations"]
    # Another account does not get it.
    other = register(akamu["base"])
    o3 = new_order(other, ("ip", "127.0.0.1")).json()
    assert o3["status"] == "pending" and o3["authorizations"] != o["authorizations"]

    # Two concurrent finalizations: exactly one wins.
    csr = b64u(csr_der(["127.0.0.1"]))
    clients = [acct, Client(akamu["base"], key=acct.key)]
    clients[1].kid = acct.kid
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        rs = list(ex.map(lambda c: c.post(o2["finalize"], {"csr": csr}), clients))
    codes = sorted(x.status_code for x in rs)
    assert codes == [200, 403], [x.text for x in rs]
    loser = [x for x in rs if x.status_code == 403][0]
    assert loser.json()["type"] == NS + "orderNotReady"
    assert akamu["db"].get("orders", o2["finalize"].split("/")[-2])["status"] == "valid"

    # A ready order whose (reused) authorization is deactivated is no
    # longer ready, although the authorization names another order.
    r = new_order(acct, ("ip", "127.0.0.1"))
    loc4, o4 = r.headers["Location"], r.json()
    assert o4["status"] == "ready", o4
    r = acct.post(o4["authorizations"][0], {"status": "deactivated"})
    assert r.status_code == 200, r.text
    o4 = acct.post(loc4, None).json()
    assert o4["status"] == "invalid", o4
    assert "deactivated" in o4["error"]["detail"], o4
    doc = problem(acct.post(o4["finalize"], {"csr": csr}), 403, "orderNotReady")
    assert "deactivated" in doc["detail"], doc
    assert acct.post(loc, None).json()["status"] == "valid"  # issued stays issued


def test_happy_path_dns_and_wildcard(akamu, acct, challtestsrv, tmp_path):
    names = ["orders.akamu.test", "*.orders.akamu.test"]
    r = new_order(acct, *(("dns", n) for n in names))
    assert r.status_code == 201, r.text
    loc, o = r.headers["Location"], r.json()
    base_az = answer_http01(akamu, acct, o["authorizations"][0])
    assert base_az["identifier"] == {"type": "dns", "value": "orders.akamu.test"}
    assert not base_az.get("wildcard", False)
    wild_az = answer_dns01(challtestsrv, acct, o["authorizations"][1])
    assert wild_az["identifier"] == {"type": "dns", "value": "orders.akamu.test"}
    assert wild_az["wildcard"] is True
    o = wait_status(acct, loc, "ready")
    # the CSR may list the names in any order and repeat one in the CN
    key = ec.generate_private_key(ec.SECP256R1())
    b = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orders.akamu.test")]))
    b = b.add_extension(x509.SubjectAlternativeName(
        [x509.DNSName("*.orders.akamu.test"), x509.DNSName("ORDERS.akamu.test")]), critical=False)
    csr = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    r = acct.post(o["finalize"], {"csr": b64u(csr)})
    assert r.status_code == 200, r.text
    o = r.json()
    assert o["status"] == "valid"
    check_certificate(akamu, acct, o, names, tmp_path)


def test_failed_validation_invalidates_order(akamu, acct):
    r = new_order(acct, ("ip", "127.0.0.1"), ("dns", "fail.akamu.test"))
    loc, o = r.headers["Location"], r.json()
    az_url = o["authorizations"][1]
    az = acct.post(az_url, None).json()
    ch = [c for c in az["challenges"] if c["type"] == "http-01"][0]
    # no answer served for this token: the responder says 404
    r = acct.post(ch["url"], {})
    assert r.status_code == 200, r.text
    wait_status(acct, az_url, "invalid")
    o = wait_status(acct, loc, "invalid")
    assert o["error"]["type"].startswith(NS), o
    doc = problem(acct.post(o["finalize"], {"csr": b64u(csr_der(["127.0.0.1",
                                                                 "fail.akamu.test"]))}),
                  403, "orderNotReady")
    assert "invalid" in doc["detail"]
