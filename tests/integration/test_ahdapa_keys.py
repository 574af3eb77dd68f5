"""ahdapa's token signing key at rest and its rotation, on real processes
over TLS (the patterns of test_ahdapa_oauth.py and test_ahdapa_cluster.py).

- At rest (oauth_active_key): in clear only while no wrapping key exists;
  PUT /api/admin/keys/cluster re-seals it with the node keys; with
  [gossip] wrapping_key_file from the first start it is never in clear; a
  sealed key without its wrapping key refuses the start, naming the key id.
  "In clear" is looked for in the database files as the SEC1 / PKCS#8 DER
  prefix of a P-256 private key, the exact DER seen before sealing, and PEM
  armour.
- Rotation (POST /api/admin/keys/signing/rotate): admin + CSRF only; a new
  kid signs new tokens, the previous key stays in /jwks and verifies its
  tokens until its "expires" (now + 86400 + 60 s); once that has passed
  /jwks omits it and /introspect says active:false; the next rotation
  tombstones it. A legacy clear PEM row (migration 4) is moved and sealed.
- Two gossiping nodes: a rotation on one reaches the other's /jwks, and a
  token signed with the new key introspects active there."""
import base64
import json
import os
import sqlite3
import time

import pytest
import requests

from conftest import Daemon, free_port, hash_password

from test_ahdapa_oauth import NODE as BASE_NODE  # noqa: E402  (same node config)

NODE = BASE_NODE + "{gossip}"

GOSSIP = """
[gossip]
peers = [{peers}]
interval_secs = 1
allowed_node_ids = [{allowed}]
{wrap}
"""

GRACE = 86400 + 60  # AHDAPA_TTL_MAX + the rotation slack
# A P-256 private key in DER: SEC1 ECPrivateKey, PKCS#8 PrivateKeyInfo.
DER_PREFIXES = (bytes.fromhex("30770201010420"),
                bytes.fromhex("308187020100301306072a8648ce3d020106082a8648ce3d030107"))


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_header(tok):
    return json.loads(b64d(tok.split(".")[0]))


def verify_es256(token, jwk):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    h, p, s = token.split(".")
    pub = ec.EllipticCurvePublicNumbers(int.from_bytes(b64d(jwk["x"]), "big"),
                                        int.from_bytes(b64d(jwk["y"]), "big"),
                                        ec.SECP256R1()).public_key()
    sig = b64d(s)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    pub.verify(der, f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))


def wait_for(what, fn, timeout=15):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = fn()
        except requests.RequestException as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def users(tmp_path_factory):
    p = tmp_path_factory.mktemp("keys-users") / "users.toml"
    p.write_text(f"""\
[[users]]
username = "alice"
password_hash = "{hash_password('alice123')}"
groups = ["admins"]

[[users]]
username = "bob"
password_hash = "{hash_password('bob123')}"
groups = ["staff"]
""")
    return p


def wrap_key(path, raw):
    path.write_text(base64.b64encode(raw).decode() + "\n")
    path.chmod(0o600)
    return path


class Node:
    """One ahdapa process (restartable on the same database)."""

    def __init__(self, tmp, pki, users, name="node", port=None):
        self.tmp, self.pki, self.users, self.name = tmp, pki, users, name
        self.port = port or free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.id = f"127.0.0.1:{self.port}"
        self.db = tmp / f"{name}.db"
        self.cfg = tmp / f"{name}.toml"
        self.ca = pki["ca"]
        self.d = None
        self.csrf = None
        self.admin = None
        self.configure()

    def configure(self, wrap=None, peers=None):
        gossip = ""
        if wrap is not None or peers is not None:
            peers = peers or []
            gossip = GOSSIP.format(peers=", ".join(f'"{p.url}"' for p in peers),
                                   allowed=", ".join(f'"{n.id}"' for n in [self] + peers),
                                   wrap=f'wrapping_key_file = "{wrap}"' if wrap else "")
        self.cfg.write_text(NODE.format(port=self.port, db=self.db, users=self.users,
                                        gossip=gossip, **self.pki))

    def start(self, login=True):
        self.d = Daemon("ahdapa", str(self.cfg))
        self.d.wait_ready(self.url + "/healthz", self.ca)
        if login:
            self.admin = self.session("alice", "alice123")
        return self

    def start_fails(self):
        d = Daemon("ahdapa", str(self.cfg))
        try:
            assert d.proc.wait(30) == 1, d.text()
        finally:
            d.log.close()
        return d.text()

    def stop(self):
        if self.d is not None:
            assert self.d.stop() == 0, self.d.text()[-3000:]
            self.d = None

    def session(self, user, pw):
        s = requests.Session()
        s.verify = self.ca
        s.trust_env = False
        r = s.post(self.url + "/api/auth/login", json={"username": user, "password": pw})
        assert r.status_code == 200, r.text
        s.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return s

    def rotate(self, session=None):
        return (session or self.admin).post(self.url + "/api/admin/keys/signing/rotate")

    def client(self):
        r = self.admin.post(self.url + "/api/admin/clients",
                            json={"client_name": "svc", "client_type": "confidential",
                                  "token_endpoint_auth_method": "client_secret_post",
                                  "scope": "read"})
        assert r.status_code == 201, r.text
        return r.json()

    def token(self, c):
        r = requests.post(self.url + "/token", verify=self.ca,
                          data={"grant_type": "client_credentials", "client_id": c["client_id"],
                                "client_secret": c["client_secret"]})
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def active(self, c, tok):
        r = requests.post(self.url + "/introspect", verify=self.ca,
                          data={"token": tok, "client_id": c["client_id"],
                                "client_secret": c["client_secret"]})
        assert r.status_code == 200, r.text
        return r.json()["active"]

    def jwks(self):
        r = requests.get(self.url + "/jwks", verify=self.ca)
        assert r.status_code == 200, r.text
        return {k["kid"]: k for k in r.json()["keys"]}

    def sql(self, q, *args):
        """Runs one statement (committed) on a connection closed at once: an
        open connection would keep the daemon from removing its WAL at stop."""
        c = sqlite3.connect(self.db)
        try:
            with c:
                return c.execute(q, args).fetchall()
        finally:
            c.close()

    def stored(self):
        """(kid, secret, wrap_key_id) of oauth_active_key."""
        rows = self.sql("SELECT kid, secret, wrap_key_id FROM oauth_active_key")
        assert len(rows) == 1, rows
        return rows[0]

    def files(self):
        out = b""
        for suffix in ("", "-wal"):
            p = f"{self.db}{suffix}"
            if os.path.exists(p):
                with open(p, "rb") as f:
                    out += f.read()
        return out


def assert_no_clear_key(blob, der=None):
    for needle in (b"PRIVATE KEY", b"-----BEGIN") + DER_PREFIXES:
        assert needle not in blob, needle
    if der is not None:
        assert der not in blob
        assert base64.b64encode(der)[:40] not in blob


@pytest.fixture
def node(tmp_path, pki, users):
    n = Node(tmp_path, pki, users)
    yield n
    if n.d is not None and n.d.proc.poll() is None:
        n.d.proc.kill()
        n.d.proc.wait()


def test_cluster_key_seals_signing_key(node):
    node.start()
    c = node.client()
    tok = node.token(c)
    kid = jwt_header(tok)["kid"]
    got_kid, der, wid = node.stored()
    assert got_kid == kid and wid is None  # in clear: no wrapping key yet
    assert der.startswith(DER_PREFIXES[0])
    assert 'wrap_id="(clear)"' in node.d.text()

    key = base64.b64encode(os.urandom(32)).decode()
    r = node.admin.put(node.url + "/api/admin/keys/cluster", json={"key": key})
    assert r.status_code == 200, r.text
    assert "token signing key re-wrapped" in node.d.text()
    got_kid, sealed, wid = node.stored()
    assert got_kid == kid and wid and len(wid) == 16
    assert len(sealed) == len(der) + 28 and der not in sealed
    # node keys and signing key are under the same wrapping key
    assert node.sql("SELECT wrap_key_id FROM node_keys") == [(wid,)]
    files = node.files()
    for needle in (b"BEGIN PRIVATE KEY", b"BEGIN EC PRIVATE KEY", b"-----BEGIN"):
        assert needle not in files
    node.stop()
    # After the stop (WAL checkpointed), not even the old clear bytes remain.
    assert_no_clear_key(node.files(), der)

    node.start()
    assert 'state="loaded"' in node.d.text() and f'wrap_id="{wid}"' in node.d.text()
    keys = node.jwks()
    assert kid in keys
    assert node.active(c, tok) is True
    verify_es256(tok, keys[kid])
    assert jwt_header(node.token(c))["kid"] == kid


def test_wrapping_key_file_from_start_and_wrong_key(node, tmp_path):
    good = wrap_key(tmp_path / "wrap.key", bytes(range(32)))
    node.configure(wrap=good)
    node.start()
    assert 'state="generated"' in node.d.text()
    kid, sealed, wid = node.stored()
    assert wid and len(sealed) < 512 and f'wrap_id="{wid}"' in node.d.text()
    assert_no_clear_key(node.files())
    c = node.client()
    tok = node.token(c)
    assert jwt_header(tok)["kid"] == kid
    node.stop()
    assert_no_clear_key(node.files())

    # Wrong key: refused (the node keys, sealed under the same key, say so first).
    wrong = wrap_key(tmp_path / "wrong.key", b"\x01" * 32)
    node.configure(wrap=wrong)
    assert f"wrapped with key id {wid}" in node.start_fails()
    # The signing key's own message: with a fresh gossip identity (the
    # documented recovery for node keys), it is still refused.
    node.sql("DELETE FROM node_keys")
    node.configure()
    text = node.start_fails()
    assert (f"oauth_active_key: the token signing key is sealed with key id {wid}; "
            "no wrapping key is available") in text, text
    node.configure(wrap=wrong)
    text = node.start_fails()
    assert (f"oauth_active_key: the token signing key is sealed with key id {wid}; "
            "a different wrapping key was given") in text, text
    assert node.stored() == (kid, sealed, wid)  # untouched


def test_legacy_clear_pem_row_is_moved_and_sealed(node, tmp_path):
    from cryptography.hazmat.primitives import serialization
    node.start()
    c = node.client()
    tok = node.token(c)
    kid, der, _ = node.stored()
    node.stop()
    # Put the database back to migration 4: the key as clear PEM.
    pem = serialization.load_der_private_key(der, None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    node.sql("INSERT INTO oauth_signing_key (id, kid, private_pem, created) VALUES (1, ?, ?, 0)",
             kid, pem)
    node.sql("DROP TABLE oauth_active_key")
    node.sql("PRAGMA user_version = 4")
    node.configure(wrap=wrap_key(tmp_path / "wrap.key", os.urandom(32)))
    node.start()
    assert 'state="converted"' in node.d.text(), node.d.text()
    assert node.sql("SELECT count(*) FROM oauth_signing_key") == [(0,)]
    assert node.stored()[0] == kid and node.stored()[2]
    assert node.active(c, tok) is True and jwt_header(node.token(c))["kid"] == kid
    node.stop()
    assert_no_clear_key(node.files(), der)


def test_rotate(node, tmp_path):
    node.configure(wrap=wrap_key(tmp_path / "wrap.key", os.urandom(32)))
    node.start()
    c = node.client()
    old_tok = node.token(c)
    k0 = jwt_header(old_tok)["kid"]

    # Admin session and CSRF required.
    plain = requests.post(node.url + "/api/admin/keys/signing/rotate", verify=node.ca)
    assert plain.status_code == 401
    assert node.rotate(node.session("bob", "bob123")).status_code == 403
    no_csrf = requests.Session()
    no_csrf.verify = node.ca
    no_csrf.trust_env = False
    no_csrf.cookies = node.admin.cookies
    assert no_csrf.post(node.url + "/api/admin/keys/signing/rotate").status_code == 403
    assert node.stored()[0] == k0

    before = int(time.time())
    r = node.rotate()
    assert r.status_code == 200, r.text
    j = r.json()
    k1 = j["kid"]
    assert set(j) == {"kid", "previous_kid", "previous_expires"}
    assert k1 != k0 and j["previous_kid"] == k0
    assert before + GRACE <= j["previous_expires"] <= int(time.time()) + GRACE
    assert f'token signing key rotated kid="{k1}" previous="{k0}"' in node.d.text()
    kid, sealed, wid = node.stored()
    assert kid == k1 and wid  # the new key is sealed too
    doc = json.loads(node.sql("SELECT value FROM signing_keys WHERE key = ?", k0)[0][0])
    assert doc["expires"] == j["previous_expires"] * 1000

    keys = node.jwks()
    assert {k0, k1} <= set(keys)
    assert node.active(c, old_tok) is True
    verify_es256(old_tok, keys[k0])
    new_tok = node.token(c)
    assert jwt_header(new_tok)["kid"] == k1
    verify_es256(new_tok, keys[k1])
    assert node.active(c, new_tok) is True
    node.stop()

    # Across a restart: the new key stays active, the old one verifies.
    node.start()
    assert jwt_header(node.token(c))["kid"] == k1
    assert {k0, k1} <= set(node.jwks())
    assert node.active(c, old_tok) is True
    node.stop()

    # Once the previous key's expiry has passed (moved close here), /jwks
    # omits it and its tokens are inactive, before any sweep...
    soon = (int(time.time()) + 3) * 1000  # whole seconds: the daemon's clock is time()
    node.sql("UPDATE crdt_rows SET value = json_set(value, '$.expires', ?) "
             "WHERE tbl = 'signing_keys' AND key = ?", soon, k0)
    node.start()
    time.sleep(max(0.0, soon / 1000 - time.time()) + 0.2)
    assert k0 not in node.jwks() and k1 in node.jwks()
    assert node.active(c, old_tok) is False
    assert node.active(c, new_tok) is True
    assert node.sql("SELECT deleted FROM crdt_rows WHERE tbl = 'signing_keys' AND key = ?",
                    k0) == [(0,)]
    # ... and the next rotation tombstones it.
    r = node.rotate()
    assert r.status_code == 200 and r.json()["previous_kid"] == k1, r.text
    assert node.sql("SELECT deleted FROM crdt_rows WHERE tbl = 'signing_keys' AND key = ?",
                    k0) == [(1,)]
    assert set(node.jwks()) >= {k1, r.json()["kid"]}
    assert node.active(c, new_tok) is True


def test_rotation_reaches_other_node(tmp_path, pki, users):
    n1 = Node(tmp_path, pki, users, "node1")
    n2 = Node(tmp_path, pki, users, "node2")
    try:
        n1.configure(peers=[n2])
        n2.configure(peers=[n1])
        n1.start()
        n2.start()
        for a, b in ((n1, n2), (n2, n1)):
            info = requests.get(b.url + "/api/gossip/kem-info", verify=b.ca).json()
            r = a.admin.post(a.url + "/api/admin/nodes/seed", json=dict(info, url=b.url))
            assert r.status_code == 200, r.text
        c = n1.client()
        wait_for("the client on node2",
                 lambda: n2.admin.get(n2.url + f"/api/admin/clients/{c['client_id']}")
                 .status_code == 200)
        old_tok = n1.token(c)
        k0 = jwt_header(old_tok)["kid"]
        wait_for("node1's key in node2's /jwks", lambda: k0 in n2.jwks())

        r = n1.rotate()
        assert r.status_code == 200, r.text
        k1 = r.json()["kid"]
        wait_for("node1's new key in node2's /jwks", lambda: k1 in n2.jwks())
        assert k0 in n2.jwks()
        new_tok = n1.token(c)
        assert jwt_header(new_tok)["kid"] == k1
        assert n2.active(c, new_tok) is True
        assert n2.active(c, old_tok) is True
        doc = wait_for("the previous key's expiry on node2", lambda: [
            d for (v,) in n2.sql("SELECT value FROM signing_keys WHERE key = ?", k0)
            if (d := json.loads(v))["expires"] > 0])
        assert doc[0]["expires"] == r.json()["previous_expires"] * 1000
    finally:
        for n in (n1, n2):
            if n.d is not None and n.d.proc.poll() is None:
                n.d.stop()
