"""Any akamu node serves any ACME URL (issue #8; docs/acme.md, "Forwarding
and nonces in a cluster"): three nodes sharing one CA and one base_url
(node 1's public URL); requests are sent to each node's own public port
while the signed JWS "url" stays base_url + path, as behind a load balancer.

- objects created on a node whose rows have not reached another node are
  served there by forwarding to the creator (replication cut by stopping
  the only node relaying between them);
- nonces are single-use cluster-wide: a foreign nonce goes to its issuer,
  a second use anywhere is badNonce;
- the forwarding headers mean nothing on the public listener;
- a stopped issuer's nonces get badNonce with a fresh nonce, at once;
- a whole issuance through a round-robin "balancer" sees no badNonce.
"""
import base64
import hashlib
import itertools
import os
import time
import urllib.parse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import acme_util
from acme_util import ERR, Client, b64u
from conftest import Daemon, free_port

TOKEN = "fwd-token-" + b64u(os.urandom(32))
AUTH = {"Authorization": "Bearer " + TOKEN}
DEADLINE = 30  # seconds for anything to "eventually" happen

CONF = """\
listen_addr = "127.0.0.1:{port}"
base_url = "{base}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{dir}/akamu.db"

[ca]
key_file = "{ca_dir}/ca.key"
cert_file = "{ca_dir}/ca.pem"

[server]
http_validation_port = {http_port}
dns_resolver_addr = "127.0.0.1:{dns_port}"

[admin]
token_file = "{token}"

[gossip]
peers = [{peers}]
interval_secs = 1
allowed_node_ids = [{allowed}]
"""


def tag_of(node_id):
    """The 8-character tag of a node (nonces and object ids start with it)."""
    return b64u(hashlib.sha256(node_id.encode()).digest()[:6])


def nonce_tag(nonce):
    return b64u(acme_util.b64u_decode(nonce)[:6])


Router = acme_util.Router


class Cluster:
    """n akamu nodes on loopback sharing one CA and base_url (node 0's)."""

    def __init__(self, tmp, n=3, links=None, http_port=1, dns_port=1):
        self.tmp = tmp
        self.n = n
        self.ports = [free_port() for _ in range(n)]
        self.admins = [free_port() for _ in range(n)]
        self.ids = [f"127.0.0.1:{a}" for a in self.admins]
        self.admin_urls = [f"http://127.0.0.1:{a}" for a in self.admins]
        self.base = f"http://127.0.0.1:{self.ports[0]}"
        # links[i]: the nodes node i gossips with (default: all others)
        self.links = links or [[j for j in range(n) if j != i] for i in range(n)]
        self.http_port, self.dns_port = http_port, dns_port
        self.ca_dir = tmp / "ca"
        self.ca_dir.mkdir()
        self.token = tmp / "token"
        self.token.write_text(TOKEN + "\n")
        self.token.chmod(0o600)
        self.nodes = [None] * n
        self.stopped = []

    def config(self, i):
        d = self.tmp / f"n{i}"
        d.mkdir(exist_ok=True)
        allowed = [self.ids[i]] + [self.ids[j] for j in self.links[i]]
        text = CONF.format(port=self.ports[i], base=self.base, admin=self.admins[i], dir=d,
                           ca_dir=self.ca_dir, http_port=self.http_port, dns_port=self.dns_port,
                           token=self.token,
                           peers=", ".join(f'"{self.admin_urls[j]}"' for j in self.links[i]),
                           allowed=", ".join(f'"{a}"' for a in allowed))
        p = d / "akamu.toml"
        p.write_text(text)
        return str(p)

    def start(self, i):
        d = Daemon("akamu", self.config(i), env={"AKAMU_LOG_LEVEL": "debug"})
        self.nodes[i] = d
        d.wait_ready(f"http://127.0.0.1:{self.ports[i]}/healthz", None, timeout=30)
        return d

    def start_all(self):
        # The first start makes the shared CA; the others load it.
        self.start(0)
        for i in range(1, self.n):
            self.start(i)
        infos = [requests.get(u + "/api/gossip/kem-info", timeout=5).json()
                 for u in self.admin_urls]
        for i in range(self.n):
            for j in self.links[i]:
                r = requests.post(self.admin_urls[i] + "/api/admin/nodes/seed", json=infos[j],
                                  timeout=5)
                assert r.status_code == 200, r.text
        for i in range(self.n):
            for j in self.links[i]:
                assert self.nodes[i].wait_log(
                    f'first-contact merge complete peer="{self.admin_urls[j]}"', DEADLINE), \
                    self.nodes[i].text()

    def stop(self, i):
        d, self.nodes[i] = self.nodes[i], None
        assert d.stop() == 0, d.text()
        self.stopped.append(d)

    def client(self, node=0, key=None):
        """An ACME client whose requests all go to node's public port (change
        c.route.target to move it)."""
        route = {"target": self.ports[node]}
        c = Client.__new__(Client)
        c.base = self.base
        c.key = key or acme_util.Key.generate("ES256")
        c.kid = None
        c.nonce = None
        c.s = requests.Session()
        c.s.mount("http://", Router(lambda: route["target"]))
        c.timeout = 10
        c.dir = c.s.get(self.base + "/acme/directory", timeout=10).json()
        c.route = route
        return c

    def has(self, i, kind, oid):
        """Whether node i holds accounts/orders oid (its admin API reads
        its own replica)."""
        r = requests.get(f"{self.admin_urls[i]}/api/admin/{kind}/{oid}", headers=AUTH, timeout=5)
        assert r.status_code in (200, 404), r.text
        return r.status_code == 200

    def wait_has(self, i, kind, oid):
        end = time.monotonic() + DEADLINE
        while not self.has(i, kind, oid):
            assert time.monotonic() < end, f"node {i} never got {kind}/{oid}"
            time.sleep(0.1)

    def check_alive(self):
        for i, d in enumerate(self.nodes):
            if d is not None:
                assert d.proc.poll() is None, f"node {i} died:\n{d.text()}"

    def close(self):
        """Stops every node; returns the problems (exit codes, sanitizer
        reports) of all nodes ever stopped."""
        for i, d in enumerate(self.nodes):
            if d is not None:
                self.nodes[i] = None
                d.stop()
                self.stopped.append(d)
        bad = []
        for d in self.stopped:
            text = d.text()
            if d.proc.returncode != 0 or "Sanitizer" in text or "runtime error" in text:
                bad.append(f"{d.log_path}: exit {d.proc.returncode}\n{text[-3000:]}")
        return bad


def ok(r, status=200):
    assert r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else None


def oid(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


def bad_nonce(r):
    return r.status_code == 400 and r.headers.get("Content-Type", "").startswith(
        acme_util.PROBLEM) and r.json().get("type") == ERR + "badNonce"


@pytest.fixture
def clusters():
    """Makes clusters; stops them afterwards, failing on a node that exited
    badly (or with a sanitizer report)."""
    made = []

    def make(*a, **kw):
        c = Cluster(*a, **kw)
        made.append(c)
        return c

    yield make
    bad = []
    for c in made:
        bad += c.close()
    assert not bad, "\n".join(bad)


@pytest.fixture
def mesh(tmp_path, clusters):
    c = clusters(tmp_path)
    c.start_all()
    yield c
    c.check_alive()


def converge(cl, c):
    """Waits until every node holds c's account (so the cluster_nodes rows
    of the account's node have reached them too)."""
    for i in range(cl.n):
        cl.wait_has(i, "accounts", oid(c.kid))


# ---- (a) objects not replicated yet are served by their creator ----


def test_unreplicated_objects_forwarded(tmp_path, clusters):
    # 0 - 1 - 2: node 1 relays between 0 and 2, which neither gossip with
    # nor trust each other (allowed_node_ids).
    cl = clusters(tmp_path, links=[[1], [0, 2], [1]])
    cl.start_all()
    warm = cl.client(0)
    ok(warm.new_account(), 201)
    cl.wait_has(2, "accounts", oid(warm.kid))  # node 0's cluster_nodes row is on node 2
    cl.stop(1)  # nothing relays between 0 and 2 any more

    c = cl.client(0)
    ok(c.new_account(contact=["mailto:fwd@example.test"]), 201)
    r = c.post(c.url("newOrder"), {"identifiers": [{"type": "dns", "value": "a.fwd.test"}]})
    order = ok(r, 201)
    loc = r.headers["Location"]
    assert oid(loc).startswith(tag_of(cl.ids[0]))
    time.sleep(1.5)  # several gossip intervals: still nothing reaches node 2
    assert not cl.has(2, "accounts", oid(c.kid))
    assert not cl.has(2, "orders", oid(loc))

    # On node 2, with node 2's own nonces: served by node 0.
    c.route["target"] = cl.ports[2]
    c.nonce = None
    n2 = c.new_nonce()
    assert nonce_tag(n2) == tag_of(cl.ids[2])
    got = ok(c.post_as_get(loc))
    assert got == order
    # The nonce was redeemed on node 2: a replay is refused there.
    assert bad_nonce(c.post_as_get(loc, nonce=n2))
    # kid lookup: the account itself, and the authorization.
    acct = ok(c.post_as_get(c.kid))
    assert acct["status"] == "valid" and acct["contact"] == ["mailto:fwd@example.test"]
    az = ok(c.post_as_get(order["authorizations"][0]))
    assert az["identifier"] == {"type": "dns", "value": "a.fwd.test"}
    ch = az["challenges"][0]
    assert ok(c.post_as_get(ch["url"]))["token"] == ch["token"]
    # A new order for an account node 2 lacks is made by the account's node.
    r = c.post(c.url("newOrder"), {"identifiers": [{"type": "dns", "value": "b.fwd.test"}]})
    ok(r, 201)
    assert oid(r.headers["Location"]).startswith(tag_of(cl.ids[0]))
    log = cl.nodes[2].text()
    assert 'forwarded path="' + urllib.parse.urlsplit(loc).path + '" why="orders"' in log, log
    assert 'why="accounts"' in log, log
    # An unknown id of node 0's is its 404, through the forward.
    bogus = loc[:-len(oid(loc))] + tag_of(cl.ids[0]) + "A" * 16
    r = c.post_as_get(bogus)
    assert r.status_code == 404 and r.json()["type"] == ERR + "malformed", r.text

    # Node 0 gone as well: its objects cannot be served on node 2 (503,
    # never a hang), while node 2's own requests still work.
    cl.stop(0)
    c.nonce = None
    r = c.post_as_get(loc)
    assert r.status_code == 503 and r.json()["type"] == ERR + "serverInternal", r.text
    assert r.headers.get("Replay-Nonce")
    assert nonce_tag(r.headers["Replay-Nonce"]) == tag_of(cl.ids[2])
    cl.check_alive()


# ---- (b) nonces are single-use across the cluster ----


def test_nonce_redeemed_at_issuer_once(mesh):
    cl = mesh
    c = cl.client(0)
    ok(c.new_account(), 201)
    converge(cl, c)
    for issuer, user, replay in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        c.route["target"] = cl.ports[issuer]
        c.nonce = None
        n = c.new_nonce()
        assert nonce_tag(n) == tag_of(cl.ids[issuer])
        c.route["target"] = cl.ports[user]
        r = c.post_as_get(c.kid, nonce=n)
        ok(r)
        # Processed by the issuer: the answer carries one of its nonces.
        assert nonce_tag(r.headers["Replay-Nonce"]) == tag_of(cl.ids[issuer])
        for node in (replay, user, issuer):
            c.route["target"] = cl.ports[node]
            r = c.post_as_get(c.kid, nonce=n)
            assert bad_nonce(r), (node, r.status_code, r.text)
            assert r.headers.get("Replay-Nonce")
    # A nonce whose tag no node has: badNonce, not forwarded.
    c.route["target"] = cl.ports[1]
    forged = b64u(b"\x01\x02\x03\x04\x05\x06" + os.urandom(26))
    r = c.post_as_get(c.kid, nonce=forged)
    assert bad_nonce(r), r.text


# ---- (c) the forwarding headers mean nothing on the public listener ----


def test_forged_forwarding_headers_ignored(mesh):
    cl = mesh
    c = cl.client(0)
    ok(c.new_account(), 201)
    converge(cl, c)
    # A spent nonce with "already redeemed" claims: still refused, on the
    # issuer and through another node (which strips the headers).
    n = c.new_nonce()
    ok(c.post_as_get(c.kid, nonce=n))
    c.s.headers["X-Akamu-Nonce-Redeemed"] = cl.ids[0]
    c.s.headers["X-Akamu-Forwarded"] = cl.ids[1]
    for node in (0, 1, 2):
        c.route["target"] = cl.ports[node]
        r = c.post_as_get(c.kid, nonce=n)
        assert bad_nonce(r), (node, r.text)
    # A fresh foreign nonce with a forged "forwarded" claim is still
    # forwarded to its issuer (not refused as a hop too many).
    del c.s.headers["X-Akamu-Nonce-Redeemed"]
    c.route["target"] = cl.ports[0]
    n = c.new_nonce()
    c.route["target"] = cl.ports[2]
    ok(c.post_as_get(c.kid, nonce=n))
    del c.s.headers["X-Akamu-Forwarded"]
    # Control: on the admin listener (the trusted side) the claim is honoured.
    c.route["target"] = cl.admins[0]
    c.s.headers["X-Akamu-Nonce-Redeemed"] = cl.ids[1]
    ok(c.post_as_get(c.kid, nonce=n))
    del c.s.headers["X-Akamu-Nonce-Redeemed"]


# ---- (d) a stopped issuer ----


def test_stopped_issuer_gives_bad_nonce(mesh):
    cl = mesh
    c = cl.client(0)
    ok(c.new_account(), 201)
    converge(cl, c)
    c.route["target"] = cl.ports[2]
    n = c.new_nonce()
    cl.stop(2)
    c.route["target"] = cl.ports[1]
    r = c.post_as_get(c.kid, nonce=n)
    assert bad_nonce(r), r.text
    fresh = r.headers["Replay-Nonce"]
    assert nonce_tag(fresh) == tag_of(cl.ids[1])
    ok(c.post_as_get(c.kid, nonce=fresh))


# ---- (e) a whole issuance through a round-robin balancer ----


Responder = acme_util.Http01Responder


class Counting:
    """Wraps a client's session to count every answer and its badNonce."""

    def __init__(self, c):
        self.total = 0
        self.bad = 0
        orig = c.s.request

        def request(method, url, **kw):
            r = orig(method, url, **kw)
            self.total += 1
            if bad_nonce(r):
                self.bad += 1
            return r

        c.s.request = request


def issue(cl, c, responder, name, fresh_nonces):
    """newOrder .. certificate download; with fresh_nonces every POST first
    takes a new nonce from the next node (so the POST lands elsewhere)."""
    def post(url, payload):
        if fresh_nonces:
            c.nonce = None
            c.new_nonce()
        return c.post(url, payload)

    def poll(url, want):
        end = time.monotonic() + DEADLINE
        while True:
            doc = ok(post(url, None))
            if doc["status"] == want:
                return doc
            assert doc["status"] in ("pending", "processing", "ready"), doc
            assert time.monotonic() < end, (url, doc)
            time.sleep(0.1)

    r = post(c.url("newOrder"), {"identifiers": [{"type": "dns", "value": name}]})
    order, loc = ok(r, 201), r.headers["Location"]
    for az_url in order["authorizations"]:
        az = ok(post(az_url, None))
        ch = [x for x in az["challenges"] if x["type"] == "http-01"][0]
        responder.answers[ch["token"]] = ch["token"] + "." + c.key.thumbprint()
        ok(post(ch["url"], {}))
        poll(az_url, "valid")
    poll(loc, "ready")
    if fresh_nonces:
        # Without nonce reuse a request may land on a node the validation
        # results have not reached yet (replication is asynchronous): wait
        # until every node, asked with its own nonce, sees the order ready.
        for i in range(cl.n):
            route = c.route["target"]
            end = time.monotonic() + DEADLINE
            while True:
                c.route["target"] = cl.ports[i]
                c.nonce = None
                st = ok(c.post_as_get(loc))["status"]
                if st == "ready":
                    break
                assert time.monotonic() < end, st
                time.sleep(0.1)
            c.route["target"] = route
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    ok(post(order["finalize"], {"csr": b64u(csr)}))
    order = poll(loc, "valid")
    end = time.monotonic() + DEADLINE
    while True:
        r = post(order["certificate"], None)
        # Certificates are named by serial, which carries no node tag: a
        # node the certificate has not reached yet answers 404 until
        # gossip delivers it (only without nonce reuse).
        if r.status_code == 200 or not fresh_nonces:
            break
        assert r.status_code == 404 and time.monotonic() < end, r.text
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    pem = r.content
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]
    return cert


def test_round_robin_issuance(tmp_path, clusters):
    responder = Responder()
    with acme_util.challtestsrv(tmp_path, serve=False) as srv:
        cl = clusters(tmp_path, http_port=responder.server_address[1], dns_port=srv["dns"])
        try:
            cl.start_all()
            rr = itertools.cycle(cl.ports)
            c = cl.client(0)
            c.s.mount("http://", Router(lambda: next(rr)))
            count = Counting(c)
            ok(c.new_account(), 201)
            issue(cl, c, responder, "rr-reuse.fwd.test", fresh_nonces=False)
            issue(cl, c, responder, "rr-fresh.fwd.test", fresh_nonces=True)
            assert count.total > 20
            assert count.bad == 0, f"{count.bad} badNonce in {count.total} answers"
            cl.check_alive()
        finally:
            cl.close()
            responder.close()
