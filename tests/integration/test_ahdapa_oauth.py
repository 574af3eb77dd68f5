"""ahdapa OAuth core on a real process over TLS: the client and scope admin
API (real admin login + CSRF), client_credentials at /token (post and
basic), every reachable RFC 6749 §5.2 error, the RFC 9068 JWT (header,
claims, ES256 signature checked here with `cryptography`), /jwks,
/introspect, /revoke and the discovery documents.

Token lifetime: per client `access_token_ttl` (seconds, 1..86400, default
3600); the expiry test uses 1 s."""
import base64
import json
import sqlite3
import subprocess
import time

import pytest
import requests

from conftest import binary, free_port, hash_password

NODE = """\
[server]
listen = "127.0.0.1:{port}"
issuer = "https://127.0.0.1:{port}"

[database]
url = "sqlite://{db}"

[users]
static_file = "{users}"

[tls]
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{ca}"
"""



def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Node:
    def __init__(self, daemons, tmp_path, pki, port=None):
        users = tmp_path / "users.toml"
        users.write_text(f"""\
[[users]]
username = "alice"
password_hash = "{hash_password('alice123')}"
groups = ["admins"]
""")
        port = port or free_port()
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.db = tmp_path / "node.db"
        self.ca = pki["ca"]
        cfg = tmp_path / "node.toml"
        cfg.write_text(NODE.format(port=port, db=self.db, users=users, **pki))
        self.d = daemons("ahdapa", str(cfg))
        self.d.wait_ready(self.url + "/healthz", self.ca)
        self.admin = requests.Session()
        self.admin.verify = self.ca
        self.admin.trust_env = False
        r = self.admin.post(self.url + "/api/auth/login",
                            json={"username": "alice", "password": "alice123"})
        assert r.status_code == 200, r.text
        self.admin.headers["X-CSRF-Token"] = r.json()["csrf_token"]

    def get(self, path, **kw):
        return requests.get(self.url + path, verify=self.ca, **kw)

    def post(self, path, **kw):
        return requests.post(self.url + path, verify=self.ca, **kw)

    def new_client(self, **fields):
        body = {"client_name": "svc", "client_type": "confidential",
                "token_endpoint_auth_method": "client_secret_post", "scope": "read write"}
        body.update(fields)
        r = self.admin.post(self.url + "/api/admin/clients", json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def token(self, c, basic=False, **form):
        data = {"grant_type": "client_credentials"}
        data.update(form)
        if basic:
            return self.post("/token", data=data, auth=(c["client_id"], c["client_secret"]))
        data.update(client_id=c["client_id"], client_secret=c["client_secret"])
        return self.post("/token", data=data)


@pytest.fixture(scope="module")
def node(tmp_path_factory, pki):
    from conftest import Daemon
    started = []

    def start(*a, **kw):
        d = Daemon(*a, **kw)
        started.append(d)
        return d

    n = Node(start, tmp_path_factory.mktemp("oauth"), pki)
    yield n
    for d in started:
        d.stop()


# ---- admin API ----

def test_admin_requires_session_and_csrf(node):
    assert node.get("/api/admin/clients").status_code == 401
    s = requests.Session()
    s.verify = node.ca
    s.trust_env = False
    s.cookies = node.admin.cookies
    r = s.post(node.url + "/api/admin/clients", json={"client_name": "x"})
    assert r.status_code == 403


def test_client_crud_and_secret_once(node):
    c = node.new_client(client_name="crud")
    cid, secret = c["client_id"], c["client_secret"]
    assert len(cid) == 36 and cid.count("-") == 4
    assert len(b64d(secret)) >= 32
    assert "client_secret_hash" not in c
    g = node.admin.get(node.url + f"/api/admin/clients/{cid}")
    assert g.status_code == 200
    assert "client_secret" not in g.json() and "client_secret_hash" not in g.json()
    assert g.json()["grant_types"] == ["client_credentials"]
    lst = node.admin.get(node.url + "/api/admin/clients").json()["clients"]
    assert any(x["client_id"] == cid for x in lst)
    assert all("client_secret" not in x and "client_secret_hash" not in x for x in lst)
    # at rest: only the SHA-256 hash, never the secret
    raw = sqlite3.connect(str(node.db)).execute(
        "SELECT value FROM crdt_rows WHERE tbl='clients' AND key=?", (cid,)).fetchone()[0]
    assert secret not in raw
    import hashlib
    assert json.loads(raw)["client_secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    # PUT replaces mutable fields, keeps the secret
    p = node.admin.put(node.url + f"/api/admin/clients/{cid}",
                       json={"client_name": "renamed", "client_type": "confidential",
                             "token_endpoint_auth_method": "client_secret_post",
                             "scope": "read"})
    assert p.status_code == 200, p.text
    assert p.json()["client_name"] == "renamed" and "client_secret" not in p.json()
    assert node.token(c, scope="read").status_code == 200
    # given client_id, duplicate -> 409
    node.new_client(client_id="fixed-id")
    r = node.admin.post(node.url + "/api/admin/clients",
                        json={"client_id": "fixed-id", "client_name": "dup"})
    assert r.status_code == 409
    assert node.admin.delete(node.url + f"/api/admin/clients/{cid}").status_code == 204
    assert node.admin.get(node.url + f"/api/admin/clients/{cid}").status_code == 404
    assert node.admin.delete(node.url + f"/api/admin/clients/{cid}").status_code == 404
    assert node.token(c).status_code == 401


@pytest.mark.parametrize("body,field", [
    ({}, "client_name"),
    ({"client_name": 5}, "client_name"),
    ({"client_name": "x", "client_type": "weird"}, "client_type"),
    ({"client_name": "x", "token_endpoint_auth_method": "private_key_jwt"},
     "token_endpoint_auth_method"),
    ({"client_name": "x", "client_type": "public", "token_endpoint_auth_method": "client_secret_post"},
     "token_endpoint_auth_method"),
    ({"client_name": "x", "redirect_uris": "https://a"}, "redirect_uris"),
    ({"client_name": "x", "redirect_uris": ["not a uri"]}, "redirect_uris"),
    ({"client_name": "x", "redirect_uris": ["https://a/cb#frag"]}, "redirect_uris"),
    ({"client_name": "x", "redirect_uris": ["https:///nohost"]}, "redirect_uris"),
    ({"client_name": "x", "grant_types": ["implicit"]}, "grant_types"),
    ({"client_name": "x", "grant_types": []}, "grant_types"),
    ({"client_name": "x", "client_type": "public", "grant_types": ["client_credentials"]},
     "grant_types"),
    ({"client_name": "x", "scope": "a  b"}, "scope"),
    ({"client_name": "x", "scope": ["a"]}, "scope"),
    ({"client_name": "x", "access_token_ttl": 0}, "access_token_ttl"),
    ({"client_name": "x", "access_token_ttl": "60"}, "access_token_ttl"),
    ({"client_name": "x", "client_id": "bad id/"}, "client_id"),
    ({"client_name": "x", "client_secret": "mine"}, "client_secret"),
    ({"client_name": "x", "colour": "red"}, "colour"),
    ({"client_name": "x", "claims": {"sub": "me"}}, "claims"),
])
def test_client_validation(node, body, field):
    r = node.admin.post(node.url + "/api/admin/clients", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert f"'{field}'" in r.json()["error_description"]


def test_client_bad_json(node):
    r = node.admin.post(node.url + "/api/admin/clients", data=b'{"client_name":"a","client_name":"b"}',
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 400


def test_public_client(node):
    r = node.admin.post(node.url + "/api/admin/clients",
                        json={"client_name": "spa", "client_type": "public",
                              "redirect_uris": ["https://app.example/cb", "com.example.app:/cb"]})
    assert r.status_code == 201, r.text
    c = r.json()
    assert "client_secret" not in c and c["token_endpoint_auth_method"] == "none"
    r = node.post("/token", data={"grant_type": "client_credentials", "client_id": c["client_id"]})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_scope_crud_and_validation(node):
    r = node.admin.post(node.url + "/api/admin/scopes",
                        json={"name": "profile", "description": "p", "claims": ["name", "email"]})
    assert r.status_code == 201, r.text
    assert node.admin.post(node.url + "/api/admin/scopes", json={"name": "profile"}).status_code == 409
    assert node.admin.get(node.url + "/api/admin/scopes/profile").json()["claims"] == ["name", "email"]
    r = node.admin.put(node.url + "/api/admin/scopes/profile",
                       json={"description": "q", "claims": ["name", "email", "team"]})
    assert r.status_code == 200 and r.json()["name"] == "profile"
    names = [s["name"] for s in node.admin.get(node.url + "/api/admin/scopes").json()["scopes"]]
    assert "profile" in names
    for body, field in [({"claims": []}, "name"), ({"name": "a b"}, "name"),
                        ({"name": "x", "claims": ["exp"]}, "claims"),
                        ({"name": "x", "claims": "name"}, "claims"),
                        ({"name": "x", "description": 1}, "description"),
                        ({"name": "x", "extra": 1}, "extra")]:
        r = node.admin.post(node.url + "/api/admin/scopes", json=body)
        assert r.status_code == 400 and f"'{field}'" in r.json()["error_description"], (body, r.text)
    node.admin.post(node.url + "/api/admin/scopes", json={"name": "gone"})
    assert node.admin.delete(node.url + "/api/admin/scopes/gone").status_code == 204
    assert node.admin.get(node.url + "/api/admin/scopes/gone").status_code == 404


# ---- /token, JWT, /jwks ----

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


@pytest.mark.parametrize("basic", [False, True])
def test_token_success_and_jwt(node, basic):
    node.admin.put(node.url + "/api/admin/scopes/team",
                   json={"name": "team", "claims": ["team", "missing"]})
    method = "client_secret_basic" if basic else "client_secret_post"
    c = node.new_client(token_endpoint_auth_method=method, scope="read team",
                        claims={"team": "blue", "other": 1}, access_token_ttl=120)
    r = node.token(c, basic=basic, scope="team")
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    t = r.json()
    assert t["token_type"] == "Bearer" and t["expires_in"] == 120 and t["scope"] == "team"
    h, p, s = t["access_token"].split(".")
    hdr, cl = json.loads(b64d(h)), json.loads(b64d(p))
    assert hdr["alg"] == "ES256" and hdr["typ"] == "at+jwt"
    assert cl["iss"] == node.url and cl["sub"] == c["client_id"] == cl["client_id"]
    assert cl["aud"] == node.url and cl["scope"] == "team" and cl["exp"] - cl["iat"] == 120
    assert abs(cl["iat"] - time.time()) < 5 and len(cl["jti"]) >= 16
    assert cl["team"] == "blue" and "other" not in cl and "missing" not in cl
    jwks = node.get("/jwks").json()["keys"]
    key = [k for k in jwks if k["kid"] == hdr["kid"]]
    assert len(key) == 1 and key[0]["kty"] == "EC" and key[0]["crv"] == "P-256"
    assert "d" not in key[0]
    verify_es256(t["access_token"], key[0])
    # default scope = the client's registered scope
    r = node.token(c, basic=basic)
    assert r.json()["scope"] == "read team"
    # each token is unique
    assert json.loads(b64d(r.json()["access_token"].split(".")[1]))["jti"] != cl["jti"]


def test_token_errors(node):
    c = node.new_client(scope="read")
    cb = node.new_client(token_endpoint_auth_method="client_secret_basic", scope="read")
    cid, sec = c["client_id"], c["client_secret"]
    cases = [
        # (form, auth, status, error)
        ({"client_id": cid, "client_secret": sec}, None, 400, "invalid_request"),  # no grant_type
        ({"grant_type": "client_credentials", "client_id": cid, "client_secret": "wrong"},
         None, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
         None, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, (cb["client_id"], "wrong"), 401, "invalid_client"),
        # registered for basic, used post: wrong method
        ({"grant_type": "client_credentials", "client_id": cb["client_id"],
          "client_secret": cb["client_secret"]}, None, 401, "invalid_client"),
        ({"grant_type": "password", "client_id": cid, "client_secret": sec}, None, 400,
         "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": cid, "client_secret": sec,
          "scope": "admin"}, None, 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "client_id": cid, "client_secret": sec,
          "scope": "read  x"}, None, 400, "invalid_scope"),
        ({"grant_type": "client_credentials", "client_secret": sec}, None, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "client_id": cb["client_id"],
          "client_secret": cb["client_secret"]}, (cb["client_id"], cb["client_secret"]), 400,
         "invalid_request"),  # two auth methods
    ]
    for form, auth, status, err in cases:
        r = node.post("/token", data=form, auth=auth)
        assert (r.status_code, r.json()["error"]) == (status, err), (form, r.text)
        if status == 401 and (auth is not None or "client_id" not in form):
            assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    # duplicate parameter -> invalid_request
    r = node.post("/token", data=f"grant_type=client_credentials&grant_type=client_credentials"
                  f"&client_id={cid}&client_secret={sec}",
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    # not a form -> invalid_request; GET -> 405
    r = node.post("/token", json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert node.get("/token").status_code == 405
    # garbage Basic header
    r = node.post("/token", data={"grant_type": "client_credentials"},
                  headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in r.headers


# ---- /introspect, /revoke ----

def introspect(node, caller, tok):
    if caller["token_endpoint_auth_method"] == "client_secret_basic":
        return node.post("/introspect", data={"token": tok},
                         auth=(caller["client_id"], caller["client_secret"]))
    return node.post("/introspect", data={"token": tok, "client_id": caller["client_id"],
                                          "client_secret": caller["client_secret"]})


def test_introspect_and_revoke(node):
    rs = node.new_client(token_endpoint_auth_method="client_secret_basic", client_name="rs")
    c = node.new_client(scope="read")
    tok = node.token(c).json()["access_token"]
    r = introspect(node, rs, tok)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["active"] is True and j["client_id"] == c["client_id"] and j["scope"] == "read"
    assert j["iss"] == node.url and j["token_type"] == "Bearer"
    # caller must authenticate
    assert node.post("/introspect", data={"token": tok}).status_code == 401
    assert node.post("/introspect", data={"token": tok},
                     auth=(rs["client_id"], "bad")).status_code == 401
    assert introspect(node, rs, "").status_code == 400
    # malformed, tampered, unknown kid
    h, p, s = tok.split(".")
    cl = json.loads(b64d(p))
    cl["scope"] = "admin"
    forged = h + "." + base64.urlsafe_b64encode(json.dumps(cl).encode()).rstrip(b"=").decode() + "." + s
    hdr = json.loads(b64d(h))
    hdr["kid"] = "AAAAAAAAAAA"
    unknown = base64.urlsafe_b64encode(json.dumps(hdr).encode()).rstrip(b"=").decode() + "." + p + "." + s
    for bad in ["garbage", "a.b.c", tok + "x", forged, unknown, tok.replace(".", "..", 1)]:
        assert introspect(node, rs, bad).json() == {"active": False}, bad
    # revoke: only the owner; then inactive
    r = node.post("/revoke", data={"token": tok}, auth=(rs["client_id"], rs["client_secret"]))
    assert r.status_code == 400
    r = node.post("/revoke", data={"token": tok, "client_id": c["client_id"],
                                   "client_secret": c["client_secret"]})
    assert r.status_code == 200
    assert introspect(node, rs, tok).json() == {"active": False}
    # invalid tokens: 200 per RFC 7009
    r = node.post("/revoke", data={"token": "nonsense", "client_id": c["client_id"],
                                   "client_secret": c["client_secret"]})
    assert r.status_code == 200
    r = node.post("/revoke", data={"token": tok, "token_type_hint": "id_token",
                                   "client_id": c["client_id"], "client_secret": c["client_secret"]})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_token_type"
    row = sqlite3.connect(str(node.db)).execute(
        "SELECT expires FROM crdt_rows WHERE tbl='revoked_tokens' AND key=?", (cl["jti"],)).fetchone()
    assert row and row[0] >= cl["exp"] * 1000


def test_introspect_expired(node):
    rs = node.new_client(client_name="rs2")
    c = node.new_client(access_token_ttl=1)
    tok = node.token(c).json()["access_token"]
    assert introspect(node, rs, tok).json()["active"] is True
    time.sleep(2.1)
    assert introspect(node, rs, tok).json() == {"active": False}


# ---- discovery ----

@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server",
                                  "/.well-known/openid-configuration"])
def test_discovery(node, path):
    r = node.get(path)
    assert r.status_code == 200
    m = r.json()
    assert m["issuer"] == node.url
    assert m["token_endpoint"] == node.url + "/token"
    assert m["jwks_uri"] == node.url + "/jwks"
    assert m["introspection_endpoint"] == node.url + "/introspect"
    assert m["revocation_endpoint"] == node.url + "/revoke"
    assert m["grant_types_supported"] == ["client_credentials"]
    assert set(m["token_endpoint_auth_methods_supported"]) == {"client_secret_basic",
                                                               "client_secret_post"}
    assert "authorization_endpoint" not in m


def test_key_survives_restart(tmp_path, pki, daemons):
    n = Node(daemons, tmp_path, pki)
    kids = [k["kid"] for k in n.get("/jwks").json()["keys"]]
    assert len(kids) == 1
    c = n.new_client()
    tok = n.token(c).json()["access_token"]
    assert n.d.stop() == 0
    n2 = Node(daemons, tmp_path, pki, port=n.port)
    assert [k["kid"] for k in n2.get("/jwks").json()["keys"]] == kids
    assert introspect(n2, c, tok).json()["active"] is True
