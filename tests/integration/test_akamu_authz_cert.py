"""akamu authorizations and challenges (RFC 8555 §7.1.4, §7.1.5, §7.5, §8)
and certificates (§7.4.2 download, §7.6 revokeCert, the CRL), end to end
against a real akamu with raw JWS requests (acme_util).

pebble-challtestsrv (Debian's pebble package) plays the whole Internet
for akamu's validator: it is akamu's DNS server (A queries for any name
answer 127.0.0.1; the dns-01 TXT records the tests set), and it serves
http-01 and tls-alpn-01 on the ports akamu validates against
([server] http_validation_port / tls_alpn_validation_port). Each flow
polls the authorization until valid (at most 20 s), finalizes, downloads
the chain, and checks it with `openssl verify` against akamu's CA and
for exactly the requested names.

Policies checked here (documented in authz.c and cert.c): another
account's authorization, challenge or certificate answers 404 malformed
like an unknown id; responding to a challenge that is no longer pending
returns it unchanged; responding while the authorization is not pending
is malformed; revokeCert by another account or by a key that is not the
certificate's is 403 unauthorized; reasons other than 0, 1, 3, 4, 5, 9
are badRevocationReason.
"""
import base64
import datetime
import hashlib
import json
import re
import socket
import sqlite3
import subprocess
import time

import acme_util
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acme_util import Client, Key, b64u, problem
from conftest import Daemon, free_port

CONF = """\
listen_addr = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{db}"

[ca]
key_file = "{dir}/ca.key"
cert_file = "{dir}/ca.pem"
validity_days = 7

[server]
http_validation_port = {http_port}
tls_alpn_validation_port = {alpn_port}
dns_resolver_addr = "127.0.0.1:{dns_port}"
"""

ERR = "urn:ietf:params:acme:error:"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
DEADLINE = 20  # seconds for a validation or an issuance


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory):
    with acme_util.challtestsrv(tmp_path_factory.mktemp("challtestsrv"), serve=True) as srv:
        yield srv


def mgmt(srv, path, **body):
    r = requests.post(srv["url"] + path, json=body, timeout=5)
    assert r.status_code == 200, (path, r.status_code, r.text)


@pytest.fixture(scope="module")
def akamu(tmp_path_factory, challtestsrv):
    d = tmp_path_factory.mktemp("akamu")
    port = free_port()
    cfg = d / "akamu.toml"
    cfg.write_text(CONF.format(port=port, admin=free_port(), db=d / "akamu.db", dir=d,
                               http_port=challtestsrv["http"], alpn_port=challtestsrv["alpn"],
                               dns_port=challtestsrv["dns"]))
    daemon = Daemon("akamu", str(cfg))
    info = {"base": f"http://127.0.0.1:{port}", "ca": str(d / "ca.pem"), "dir": d,
            "daemon": daemon}
    try:
        daemon.wait_ready(info["base"] + "/healthz", None)
        yield info
    finally:
        daemon.stop()


def account(akamu, key=None):
    c = Client(akamu["base"], key=key)
    r = c.new_account()
    assert r.status_code == 201, r.text
    return c


@pytest.fixture
def acct(akamu):
    return account(akamu)


def ok(r, status=200):
    assert r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else None


def new_order(c, *names):
    r = c.post(c.url("newOrder"), {"identifiers": [{"type": "dns", "value": n} for n in names]})
    return r.headers.get("Location"), ok(r, 201)


def poll(c, url, want, deadline=DEADLINE):
    """POST-as-GET url until its status is want (failing on another final one)."""
    end = time.monotonic() + deadline
    while True:
        doc = ok(c.post_as_get(url))
        if doc["status"] == want:
            return doc
        assert doc["status"] in ("pending", "processing", "ready"), doc
        assert time.monotonic() < end, f"{url} still {doc['status']} after {deadline}s: {doc}"
        time.sleep(0.2)


def key_auth(c, ch):
    return ch["token"] + "." + c.key.thumbprint()


def up_link(r):
    links = r.headers.get("Link", "")
    m = re.search(r'<([^>]+)>;\s*rel="up"', links)
    return m.group(1) if m else None


def prepare(srv, c, az, ch):
    """Makes challtestsrv answer challenge ch of authorization az."""
    name, ka = az["identifier"]["value"], key_auth(c, ch)
    if ch["type"] == "http-01":
        mgmt(srv, "/add-http01", token=ch["token"], content=ka)
    elif ch["type"] == "dns-01":
        mgmt(srv, "/set-txt", host=f"_acme-challenge.{name}.",
             value=b64u(hashlib.sha256(ka.encode()).digest()))
    else:
        mgmt(srv, "/add-tlsalpn01", host=name, content=ka)


def validate(srv, c, az_url, ctype):
    """Answers az_url with a challenge of ctype; returns the valid authz."""
    az = ok(c.post_as_get(az_url))
    assert az["status"] == "pending", az
    ch = [x for x in az["challenges"] if x["type"] == ctype][0]
    prepare(srv, c, az, ch)
    r = c.post(ch["url"], {})
    doc = ok(r)
    assert doc["url"] == ch["url"] and doc["token"] == ch["token"], doc
    assert doc["status"] in ("processing", "valid"), doc
    assert up_link(r) == az_url, r.headers
    az = poll(c, az_url, "valid")
    # §7.1.4: a valid authorization lists the challenge that was validated
    assert [x["type"] for x in az["challenges"]] == [ctype], az
    assert az["challenges"][0]["status"] == "valid"
    assert RFC3339.match(az["challenges"][0]["validated"]), az
    assert "error" not in az["challenges"][0]
    return az


def csr_der(names, key):
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                        critical=False)
    return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def finalize(c, loc, order, names, key):
    poll(c, loc, "ready")
    r = c.post(order["finalize"], {"csr": b64u(csr_der(names, key))})
    ok(r)
    return poll(c, loc, "valid")


def download(akamu, c, order, names, tmp_path):
    """The chain: application/pem-certificate-chain, verifies, exact SANs."""
    r = c.post_as_get(order["certificate"])
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/pem-certificate-chain"), r.headers
    assert r.headers.get("Replay-Nonce")
    pem = r.content
    assert pem.count(b"-----BEGIN CERTIFICATE-----") == 2, pem
    path = tmp_path / (order["certificate"].rsplit("/", 1)[-1] + ".pem")
    path.write_bytes(pem)
    v = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", akamu["ca"],
                        str(path)], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.strip().endswith(": OK"), v.stdout + v.stderr
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
    assert format(cert.serial_number, "032x") == order["certificate"].rsplit("/", 1)[-1]
    return cert


def issue(akamu, srv, c, names, tmp_path, ctype="http-01"):
    """A certificate for names (a new key); returns (order, cert, key)."""
    loc, o = new_order(c, *names)
    for az_url in o["authorizations"]:
        if ok(c.post_as_get(az_url))["status"] != "valid":
            validate(srv, c, az_url, ctype)
    key = ec.generate_private_key(ec.SECP256R1())
    o = finalize(c, loc, o, names, key)
    return o, download(akamu, c, o, names, tmp_path), key


# ---- rendering ----


def test_authz_and_challenge_render(akamu, acct):
    loc, o = new_order(acct, "render.authz.test")
    az_url = o["authorizations"][0]
    assert az_url.startswith(akamu["base"] + "/acme/authz/")
    r = acct.post_as_get(az_url)
    az = ok(r)
    assert r.headers.get("Replay-Nonce") and 'rel="index"' in r.headers.get("Link", "")
    assert az["identifier"] == {"type": "dns", "value": "render.authz.test"}
    assert az["status"] == "pending"
    assert RFC3339.match(az["expires"]), az
    assert "wildcard" not in az
    assert sorted(x["type"] for x in az["challenges"]) == ["dns-01", "http-01", "tls-alpn-01"]
    for ch in az["challenges"]:
        assert set(ch) == {"type", "url", "status", "token"}, ch
        assert ch["status"] == "pending"
        assert ch["url"].startswith(akamu["base"] + "/acme/chall/")
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", ch["token"]), ch
        r = acct.post_as_get(ch["url"])
        assert ok(r) == ch
        assert up_link(r) == az_url, r.headers
        assert 'rel="index"' in r.headers["Link"], r.headers

    # an authorization takes POST-as-GET or a deactivation only
    problem(acct.post(az_url, {}), 400, "malformed")
    problem(acct.post(az_url, {"status": "valid"}), 400, "malformed")
    # unknown ids
    problem(acct.post_as_get(akamu["base"] + "/acme/authz/AAAAAAAAAAAAAAAAAAAAAAAA"), 404,
            "malformed")
    problem(acct.post_as_get(akamu["base"] + "/acme/chall/AAAAAAAAAAAAAAAAAAAAAAAA"), 404,
            "malformed")
    # a JWS with a jwk instead of the account's kid
    problem(acct.post(az_url, None, jwk=True), 400, "malformed")


# ---- the three challenge types, issuance, download ----


def test_http01_flow(akamu, challtestsrv, acct, tmp_path):
    names = ["h1.authz.test", "h2.authz.test"]
    loc, o = new_order(acct, *names)
    for az_url in o["authorizations"]:
        validate(challtestsrv, acct, az_url, "http-01")
    # responding again to a valid challenge returns it unchanged
    az = ok(acct.post_as_get(o["authorizations"][0]))
    ch = az["challenges"][0]
    assert ok(acct.post(ch["url"], {})) == ch
    # ... and the authorization's expiry moved to the authz lifetime from now
    exp = datetime.datetime.strptime(az["expires"], "%Y-%m-%dT%H:%M:%SZ")
    assert exp > datetime.datetime.utcnow() + datetime.timedelta(hours=1), az
    o = finalize(acct, loc, o, names, ec.generate_private_key(ec.SECP256R1()))
    download(akamu, acct, o, names, tmp_path)


def test_dns01_wildcard_flow(akamu, challtestsrv, acct, tmp_path):
    names = ["dw.authz.test", "*.dw.authz.test"]
    loc, o = new_order(acct, *names)
    azs = [ok(acct.post_as_get(u)) for u in o["authorizations"]]
    wild = [a for a in azs if a.get("wildcard")]
    assert len(wild) == 1 and wild[0]["wildcard"] is True, azs
    # §7.1.3: the wildcard's authorization names the base domain, dns-01 only
    assert wild[0]["identifier"] == {"type": "dns", "value": "dw.authz.test"}
    assert [x["type"] for x in wild[0]["challenges"]] == ["dns-01"]
    # one after the other: both use the TXT record at _acme-challenge.dw.authz.test
    for az_url in o["authorizations"]:
        validate(challtestsrv, acct, az_url, "dns-01")
        mgmt(challtestsrv, "/clear-txt", host="_acme-challenge.dw.authz.test.")
    o = finalize(acct, loc, o, names, ec.generate_private_key(ec.SECP256R1()))
    download(akamu, acct, o, names, tmp_path)


def test_tls_alpn01_flow(akamu, challtestsrv, acct, tmp_path):
    names = ["alpn.authz.test"]
    loc, o = new_order(acct, *names)
    validate(challtestsrv, acct, o["authorizations"][0], "tls-alpn-01")
    o = finalize(acct, loc, o, names, ec.generate_private_key(ec.SECP256R1()))
    download(akamu, acct, o, names, tmp_path)


# ---- failures ----


def test_wrong_http01_content(akamu, challtestsrv, acct):
    loc, o = new_order(acct, "wrong.authz.test")
    az_url = o["authorizations"][0]
    before = ok(acct.post_as_get(az_url))
    ch = [x for x in before["challenges"] if x["type"] == "http-01"][0]
    mgmt(challtestsrv, "/add-http01", token=ch["token"], content=ch["token"] + ".not-the-key")
    ok(acct.post(ch["url"], {}))
    az = poll(acct, az_url, "invalid")
    # §7.1.4: an invalid authorization lists the challenge that failed
    assert [x["type"] for x in az["challenges"]] == ["http-01"], az
    failed = az["challenges"][0]
    assert failed["status"] == "invalid"
    assert failed["error"]["type"] == ERR + "incorrectResponse", failed
    assert failed["error"]["detail"], failed
    assert "validated" not in failed
    o = poll(acct, loc, "invalid")
    assert o["error"]["type"].startswith(ERR), o
    # the failed challenge is returned unchanged; the others can no longer be answered
    assert ok(acct.post(failed["url"], {})) == failed
    rest = [x for x in before["challenges"] if x["url"] != failed["url"]]
    assert len(rest) == 2
    doc = problem(acct.post(rest[0]["url"], {}), 400, "malformed")
    assert "invalid" in doc["detail"], doc


def test_respond_when_authz_not_pending(akamu, acct):
    loc, o = new_order(acct, "gone.authz.test")
    az_url = o["authorizations"][0]
    az = ok(acct.post_as_get(az_url))
    assert ok(acct.post(az_url, {"status": "deactivated"}))["status"] == "deactivated"
    doc = problem(acct.post(az["challenges"][0]["url"], {}), 400, "malformed")
    assert "deactivated" in doc["detail"], doc
    # POST-as-GET still shows it, pending
    assert ok(acct.post_as_get(az["challenges"][0]["url"]))["status"] == "pending"


def test_deactivate_authz(akamu, challtestsrv, acct):
    loc, o = new_order(acct, "deact1.authz.test", "deact2.authz.test")
    az_url = o["authorizations"][0]
    az = ok(acct.post(az_url, {"status": "deactivated"}))
    assert az["status"] == "deactivated" and az["identifier"]["value"] == "deact1.authz.test"
    assert len(az["challenges"]) == 3
    assert ok(acct.post_as_get(az_url))["status"] == "deactivated"
    o = poll(acct, loc, "invalid")
    # only pending or valid authorizations can be deactivated
    problem(acct.post(az_url, {"status": "deactivated"}), 400, "malformed")
    assert akamu["daemon"].wait_log('authorization deactivated authz="', 1)

    # a valid authorization reused by a later order: deactivating it
    # invalidates both orders
    loc1, o1 = new_order(acct, "reuse.authz.test")
    validate(challtestsrv, acct, o1["authorizations"][0], "http-01")
    poll(acct, loc1, "ready")
    loc2, o2 = new_order(acct, "reuse.authz.test")
    assert o2["authorizations"] == o1["authorizations"] and o2["status"] == "ready", o2
    az = ok(acct.post(o1["authorizations"][0], {"status": "deactivated"}))
    assert az["status"] == "deactivated"
    assert ok(acct.post_as_get(loc1))["status"] == "invalid"
    assert ok(acct.post_as_get(loc2))["status"] == "invalid"


def test_non_owner_refused(akamu, challtestsrv, acct, tmp_path):
    loc, o = new_order(acct, "mine.authz.test")
    az_url = o["authorizations"][0]
    az = ok(acct.post_as_get(az_url))
    ch = az["challenges"][0]
    other = account(akamu)
    problem(other.post_as_get(az_url), 404, "malformed")
    problem(other.post(az_url, {"status": "deactivated"}), 404, "malformed")
    problem(other.post_as_get(ch["url"]), 404, "malformed")
    problem(other.post(ch["url"], {}), 404, "malformed")
    # nothing changed
    assert ok(acct.post_as_get(az_url)) == az

    o, cert, _ = issue(akamu, challtestsrv, acct, ["owned.authz.test"], tmp_path)
    problem(other.post_as_get(o["certificate"]), 404, "malformed")
    problem(acct.post(o["certificate"], {}), 400, "malformed")
    problem(acct.post_as_get(akamu["base"] + "/acme/cert/" + "0" * 32), 404, "malformed")


def test_resume_after_restart(tmp_path, challtestsrv):
    """A validation cut by a crash is submitted again at the next start."""
    hole = socket.socket()  # accepts connections (backlog), never answers
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    port, admin = free_port(), free_port()  # the admin address is the node id, kept

    def start(name, http_port):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(CONF.format(port=port, admin=admin, db=tmp_path / "akamu.db",
                                   dir=tmp_path, http_port=http_port,
                                   alpn_port=challtestsrv["alpn"], dns_port=challtestsrv["dns"]))
        d = Daemon("akamu", str(cfg), env={"AKAMU_LOG_LEVEL": "debug"})
        d.wait_ready(f"http://127.0.0.1:{port}/healthz", None)
        return d

    first = start("first", hole.getsockname()[1])
    second = None
    try:
        info = {"base": f"http://127.0.0.1:{port}"}
        # nothing revoked yet: an empty CRL
        r = requests.get(info["base"] + "/acme/crl", timeout=10)
        assert r.status_code == 200 and list(x509.load_der_x509_crl(r.content)) == []
        c = account(info)
        loc, o = new_order(c, "resume.authz.test")
        az_url = o["authorizations"][0]
        az = ok(c.post_as_get(az_url))
        ch = [x for x in az["challenges"] if x["type"] == "http-01"][0]
        prepare(challtestsrv, c, az, ch)
        assert ok(c.post(ch["url"], {}))["status"] == "processing"
        assert first.wait_log("validation queued", 5), first.text()
        time.sleep(0.5)  # the validator now waits on the silent port
        first.proc.kill()
        first.proc.wait()
        db = sqlite3.connect(f"file:{tmp_path / 'akamu.db'}?mode=ro", uri=True)
        row = db.execute("SELECT value FROM challenges WHERE key = ?",
                         (ch["url"].rsplit("/", 1)[-1],)).fetchone()
        db.close()
        assert json.loads(row[0])["status"] == "processing", row

        second = start("second", challtestsrv["http"])
        assert second.wait_log("validations resumed challenges=1 submitted=1", 10), second.text()
        c.nonce = None  # the restart invalidated it
        az = poll(c, az_url, "valid")
        assert az["challenges"][0]["url"] == ch["url"]
        poll(c, loc, "ready")
    finally:
        hole.close()
        for d in (first, second):
            if d and d.proc.poll() is None:
                d.stop()


# ---- revocation and the CRL ----


def der_b64u(cert):
    return b64u(cert.public_bytes(serialization.Encoding.DER))


def crl_text(akamu, tmp_path):
    r = requests.get(akamu["base"] + "/acme/crl", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/pkix-crl", r.headers
    path = tmp_path / "akamu.crl"
    path.write_bytes(r.content)
    v = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(path), "-noout",
                        "-CAfile", akamu["ca"]], capture_output=True, text=True)
    assert v.returncode == 0 and "verify OK" in v.stdout + v.stderr, v.stdout + v.stderr
    t = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(path), "-noout", "-text"],
                       capture_output=True, text=True, check=True).stdout
    crl = x509.load_der_x509_crl(r.content)
    return t, crl


def test_revocation_and_crl(akamu, challtestsrv, acct, tmp_path, pki):
    url = acct.url("revokeCert")
    assert url == akamu["base"] + "/acme/revoke-cert"
    o1, c1, k1 = issue(akamu, challtestsrv, acct, ["rev1.authz.test"], tmp_path)
    o2, c2, k2 = issue(akamu, challtestsrv, acct, ["rev2.authz.test"], tmp_path)
    s1, s2 = format(c1.serial_number, "032x"), format(c2.serial_number, "032x")
    other = account(akamu)

    # another account
    problem(other.post(url, {"certificate": der_b64u(c1)}), 403, "unauthorized")
    # reasons: 2 (cACompromise), 6 (certificateHold), 7 (unused), 8, 10, 11, -1
    for bad in (2, 6, 7, 8, 10, 11, -1):
        problem(acct.post(url, {"certificate": der_b64u(c1), "reason": bad}), 400,
                "badRevocationReason")
    problem(acct.post(url, {"certificate": der_b64u(c1), "reason": "1"}), 400, "malformed")
    # garbage
    problem(acct.post(url, {"certificate": "AAAA"}), 400, "malformed")
    problem(acct.post(url, {"certificate": "!!"}), 400, "malformed")
    problem(acct.post(url, {}), 400, "malformed")
    problem(acct.post(url, None), 400, "malformed")
    # a certificate of another CA
    foreign = x509.load_pem_x509_certificate(open(pki["cert"], "rb").read())
    problem(acct.post(url, {"certificate": der_b64u(foreign)}), 404, "malformed")
    # a jwk that is not the certificate's key
    stranger = Client(akamu["base"])
    problem(stranger.post(url, {"certificate": der_b64u(c1)}, jwk=True), 403, "unauthorized")
    # the certificate's key of the other certificate
    problem(stranger.post(url, {"certificate": der_b64u(c1)}, key=Key(k2, "ES256"), jwk=True),
            403, "unauthorized")

    # by the account, keyCompromise
    r = acct.post(url, {"certificate": der_b64u(c1), "reason": 1})
    assert r.status_code == 200, r.text
    assert r.content == b"" and r.headers.get("Replay-Nonce")
    assert akamu["daemon"].wait_log(f'certificate revoked serial="{s1}" reason=1 by="account"', 5)
    problem(acct.post(url, {"certificate": der_b64u(c1)}), 400, "alreadyRevoked")
    problem(stranger.post(url, {"certificate": der_b64u(c1)}, key=Key(k1, "ES256"), jwk=True),
            400, "alreadyRevoked")
    # by the certificate's own key, no reason
    r = stranger.post(url, {"certificate": der_b64u(c2)}, key=Key(k2, "ES256"), jwk=True)
    assert r.status_code == 200, r.text
    assert akamu["daemon"].wait_log(
        f'certificate revoked serial="{s2}" reason=0 by="certificate-key"', 5)
    problem(acct.post(url, {"certificate": der_b64u(c2), "reason": 4}), 400, "alreadyRevoked")
    # a revoked certificate can still be downloaded
    assert acct.post_as_get(o1["certificate"]).status_code == 200

    text, crl = crl_text(akamu, tmp_path)
    listed = {format(e.serial_number, "032x"): e for e in crl}
    assert s1 in listed and s2 in listed, text
    assert s1.upper() in text.replace(":", "")
    reason = listed[s1].extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert not [e for e in listed[s2].extensions if isinstance(e.value, x509.CRLReason)]
    assert "Key Compromise" in text
    assert crl.next_update - crl.last_update == datetime.timedelta(days=1)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    time.sleep(0.01)
    _, crl2 = crl_text(akamu, tmp_path)
    assert crl2.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number
    # HEAD too
    assert requests.head(akamu["base"] + "/acme/crl", timeout=10).status_code == 200
