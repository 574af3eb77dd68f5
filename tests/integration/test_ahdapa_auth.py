"""ahdapa users, sessions, CSRF, the admin guard and the cluster key, on real
processes over TLS: login/logout/session, cookie flags, rate limiting, bad
input, cross-node cookies under the cluster key, eventual vs off logout."""
import base64
import os
import re
import subprocess
import time

import pytest
import requests

from conftest import binary, free_port, hash_password

PASSWORDS = {"alice": "alice123", "bob": "bob-secret"}

NODE = """\
[server]
listen = "127.0.0.1:{port}"
issuer = "https://127.0.0.1:{port}"

[database]
url = "sqlite://{db}"

[users]
static_file = "{users}"

[cluster]
distributed_mode = "{mode}"

[tls]
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{ca}"
"""

GOSSIP = """
[gossip]
peers = [{peers}]
interval_secs = 1
allowed_node_ids = [{allowed}]
"""



@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("users")
    p = d / "users.toml"
    p.write_text(f"""\
[[users]]
username = "alice"
password_hash = "{hash_password(PASSWORDS['alice'])}"
groups = ["admins", "users"]
email = "alice@example.com"
name = "Alice"

[[users]]
username = "bob"
password_hash = "{hash_password(PASSWORDS['bob'])}"
groups = ["users"]
""")
    return str(p)


class Node:
    def __init__(self, daemons, tmp_path, pki, users, name, port, mode="off", peers=None):
        self.url = f"https://127.0.0.1:{port}"
        self.id = f"127.0.0.1:{port}"
        self.ca = pki["ca"]
        text = NODE.format(port=port, db=tmp_path / f"{name}.db", users=users, mode=mode, **pki)
        if peers is not None:
            text += GOSSIP.format(
                peers=", ".join(f'"https://127.0.0.1:{p}"' for p in peers),
                allowed=", ".join(f'"127.0.0.1:{p}"' for p in peers + [port]))
        self.cfg = tmp_path / f"{name}.toml"
        self.cfg.write_text(text)
        self.daemons = daemons
        self.start()

    def start(self):
        self.d = self.daemons("ahdapa", str(self.cfg))
        self.d.wait_ready(self.url + "/healthz", self.ca)

    def req(self, method, path, cookie=None, csrf=None, **kw):
        h = kw.pop("headers", {})
        if cookie:
            h["Cookie"] = f"ahdapa_session={cookie}"
        if csrf:
            h["X-CSRF-Token"] = csrf
        return requests.request(method, self.url + path, headers=h, verify=self.ca, timeout=10,
                                **kw)

    def login(self, user, pw=None):
        return self.req("POST", "/api/auth/login",
                        json={"username": user, "password": pw or PASSWORDS[user]})

    def session(self, user):
        """(cookie, csrf) of a fresh login."""
        r = self.login(user)
        assert r.status_code == 200, r.text
        return cookie_of(r), r.json()["csrf_token"]


def cookie_of(r):
    m = re.match(r"ahdapa_session=([^;]*)", r.headers["Set-Cookie"])
    assert m, r.headers["Set-Cookie"]
    return m.group(1)


def assert_error(r, status):
    assert r.status_code == status, r.text
    j = r.json()
    assert isinstance(j["error"], str) and isinstance(j["error_description"], str)


@pytest.fixture
def node(daemons, tmp_path, pki, users_file):
    return Node(daemons, tmp_path, pki, users_file, "solo", free_port())


def test_login_session_logout(node):
    # Bad input: each a JSON error (and not counted by the rate limiter).
    assert_error(node.req("POST", "/api/auth/login", data='{"username":"alice"}',
                          headers={"Content-Type": "text/plain"}), 415)
    assert_error(node.req("POST", "/api/auth/login", data="{nope",
                          headers={"Content-Type": "application/json"}), 400)
    assert_error(node.req("POST", "/api/auth/login", json={"username": "alice"}), 400)
    assert_error(node.req("POST", "/api/auth/login", json=["alice", "x"]), 400)
    assert_error(node.req("POST", "/api/auth/login", json={"username": "alice", "password": 5}), 400)
    assert_error(node.req("POST", "/api/auth/login", data="{" + '"a":1,' * 3000 + '"b":2}',
                          headers={"Content-Type": "application/json"}), 413)
    assert_error(node.login("alice", "wrong"), 401)
    assert_error(node.login("mallory", "alice123"), 401)

    r = node.login("bob")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["username"] == "bob" and j["groups"] == ["users"] and len(j["csrf_token"]) >= 32
    sc = r.headers["Set-Cookie"]
    for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=28800"):
        assert flag in sc, sc
    cookie = cookie_of(r)
    assert "bob-secret" not in node.d.text() and cookie not in node.d.text()

    s = node.req("GET", "/api/auth/session", cookie=cookie)
    assert s.status_code == 200, s.text
    assert s.json()["username"] == "bob" and s.json()["csrf_token"] == j["csrf_token"]
    assert_error(node.req("GET", "/api/auth/session"), 401)
    assert_error(node.req("GET", "/api/auth/session", cookie="garbage!!"), 401)

    # Tampered cookie: flip one character in the sealed part.
    mid = len(cookie) // 2
    bad = cookie[:mid] + ("A" if cookie[mid] != "A" else "B") + cookie[mid + 1:]
    assert_error(node.req("GET", "/api/auth/session", cookie=bad), 401)
    # Truncated, and with an unknown key id.
    assert_error(node.req("GET", "/api/auth/session", cookie=cookie[:-4]), 401)
    raw = bytearray(base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4)))
    raw[1] ^= 0xFF
    other = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    r = node.req("GET", "/api/auth/session", cookie=other)
    assert_error(r, 401)
    assert "key" in r.json()["error_description"]

    # Logout needs the CSRF token; then the cookie is dead (off mode: local table).
    assert_error(node.req("POST", "/api/auth/logout", cookie=cookie), 403)
    assert_error(node.req("POST", "/api/auth/logout", cookie=cookie, csrf="x" * 43), 403)
    r = node.req("POST", "/api/auth/logout", cookie=cookie, csrf=j["csrf_token"])
    assert r.status_code == 200, r.text
    assert "Max-Age=0" in r.headers["Set-Cookie"]
    assert_error(node.req("GET", "/api/auth/session", cookie=cookie), 401)
    assert node.d.stop() == 0


def test_login_rate_limit(node):
    for _ in range(5):
        assert_error(node.login("alice", "guess"), 401)
    r = node.login("alice")
    assert_error(r, 429)
    assert int(r.headers["Retry-After"]) >= 1


def test_admin_guard_and_csrf(node):
    key = base64.b64encode(os.urandom(32)).decode()
    path = "/api/admin/keys/cluster"
    assert_error(node.req("PUT", path, json={"key": key}), 401)
    bob, bob_csrf = node.session("bob")
    assert_error(node.req("PUT", path, cookie=bob, csrf=bob_csrf, json={"key": key}), 403)
    alice, csrf = node.session("alice")
    r = node.req("PUT", path, cookie=alice, json={"key": key})
    assert_error(r, 403)
    assert_error(node.req("PUT", path, cookie=alice, csrf=bob_csrf, json={"key": key}), 403)
    # Bad keys: wrong length, not base64, not JSON, wrong content type.
    for body in ({"key": base64.b64encode(os.urandom(31)).decode()}, {"key": "!!!"}, {"k": key}):
        assert_error(node.req("PUT", path, cookie=alice, csrf=csrf, json=body), 400)
    assert_error(node.req("PUT", path, cookie=alice, csrf=csrf, data="key",
                          headers={"Content-Type": "text/plain"}), 415)
    r = node.req("PUT", path, cookie=alice, csrf=csrf, json={"key": key})
    assert r.status_code == 200, r.text
    assert re.fullmatch(r"[0-9a-f]{16}", r.json()["key_id"])
    assert key not in node.d.text()
    # The gossip admin routes use the same guard.
    assert node.req("GET", "/api/gossip/status", cookie=bob).status_code == 403
    assert node.req("GET", "/api/gossip/status").status_code == 401
    # The old (node-local) cookie still works here; restarting keeps both keys.
    assert node.req("GET", "/api/auth/session", cookie=alice).status_code == 200
    assert node.d.stop() == 0
    node.start()
    assert node.req("GET", "/api/auth/session", cookie=alice).status_code == 200


def seed(nodes, admin):
    infos = {n.id: requests.get(n.url + "/api/gossip/kem-info", verify=n.ca, timeout=5).json()
             for n in nodes}
    for n in nodes:
        cookie, csrf = admin[n.id]
        for m in nodes:
            if m is not n:
                r = n.req("POST", "/api/admin/nodes/seed", cookie=cookie, csrf=csrf,
                          json=dict(infos[m.id], url=m.url))
                assert r.status_code == 200, r.text


def pair(daemons, tmp_path, pki, users_file, mode):
    ports = [free_port(), free_port()]
    nodes = [Node(daemons, tmp_path, pki, users_file, f"n{i}", ports[i], mode,
                  [p for p in ports if p != ports[i]]) for i in range(2)]
    admin = {n.id: n.session("alice") for n in nodes}
    return nodes, admin


def set_key(nodes, admin, key):
    ids = set()
    for n in nodes:
        cookie, csrf = admin[n.id]
        r = n.req("PUT", "/api/admin/keys/cluster", cookie=cookie, csrf=csrf, json={"key": key})
        assert r.status_code == 200, r.text
        ids.add(r.json()["key_id"])
    assert len(ids) == 1


def wait_status(node, cookie, status, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if node.req("GET", "/api/auth/session", cookie=cookie).status_code == status:
            return True
        time.sleep(0.2)
    return False


def test_cluster_key_and_eventual_logout(daemons, tmp_path, pki, users_file):
    (n1, n2), admin = pair(daemons, tmp_path, pki, users_file, "eventual")
    before, _ = admin[n1.id]
    # Before the cluster key: a cookie works only on the node that issued it.
    assert n1.req("GET", "/api/auth/session", cookie=before).status_code == 200
    assert_error(n2.req("GET", "/api/auth/session", cookie=before), 401)

    set_key([n1, n2], admin, base64.b64encode(os.urandom(32)).decode())
    seed([n1, n2], admin)
    after, csrf = n1.session("alice")
    r = n2.req("GET", "/api/auth/session", cookie=after)
    assert r.status_code == 200, r.text
    assert r.json()["username"] == "alice"
    assert_error(n2.req("GET", "/api/auth/session", cookie=before), 401)
    # The node keys are now sealed under the cluster key: a restart loads them.
    assert n2.d.stop() == 0
    n2.start()
    assert n2.req("GET", "/api/auth/session", cookie=after).status_code == 200

    # Logout on n1 reaches n2 through the replicated revoked_sessions map.
    r = n1.req("POST", "/api/auth/logout", cookie=after, csrf=csrf)
    assert r.status_code == 200, r.text
    assert_error(n1.req("GET", "/api/auth/session", cookie=after), 401)
    assert wait_status(n2, after, 401, 20), n2.d.text()[-3000:]


def test_off_mode_logout_stays_local(daemons, tmp_path, pki, users_file):
    (n1, n2), admin = pair(daemons, tmp_path, pki, users_file, "off")
    set_key([n1, n2], admin, base64.b64encode(os.urandom(32)).decode())
    seed([n1, n2], admin)
    cookie, csrf = n1.session("bob")
    assert n2.req("GET", "/api/auth/session", cookie=cookie).status_code == 200
    assert n1.req("POST", "/api/auth/logout", cookie=cookie, csrf=csrf).status_code == 200
    assert_error(n1.req("GET", "/api/auth/session", cookie=cookie), 401)
    time.sleep(3)  # several gossip rounds
    assert n2.req("GET", "/api/auth/session", cookie=cookie).status_code == 200


def test_hash_password_format():
    h = hash_password("correct horse")
    assert re.fullmatch(r"\$argon2id\$v=19\$m=65536,t=3,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", h)
    assert hash_password("correct horse") != h  # random salt
    r = subprocess.run([binary("ahdapa"), "hash-password"], input="", capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "password" in r.stderr


@pytest.mark.parametrize("text,line,needle", [
    ('[[users]]\nusername = "a"\n', 1, "password_hash"),
    ('[[users]]\nusername = "a"\npassword_hash = "$2b$10$x"\n', 3, "argon2id"),
    ('[[users]]\nusername = "a"\npassword_hash = "$argon2id$x"\nrole = "x"\n', 4, "unknown key"),
    ('[[users]]\nusername = "a"\npassword_hash = "$argon2id$x"\ngroups = "admins"\n', 4, "groups"),
    ('[[users]]\nusername = "a"\npassword_hash = "$argon2id$x"\n'
     '[[users]]\nusername = "a"\npassword_hash = "$argon2id$y"\n', 4, "duplicate"),
    ('[[users]\n', 1, "line 1"),
])
def test_bad_users_file_refuses_start(tmp_path, pki, text, line, needle):
    users = tmp_path / "users.toml"
    users.write_text(text)
    port = free_port()
    cfg = tmp_path / "n.toml"
    cfg.write_text(NODE.format(port=port, db=tmp_path / "n.db", users=users, mode="off", **pki))
    r = subprocess.run([binary("ahdapa"), "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert needle in out, out
    if needle != "line 1":
        assert f"{users}:{line}" in out, out


def test_missing_users_file_starts_without_users(daemons, tmp_path, pki):
    port = free_port()
    n = Node(daemons, tmp_path, pki, str(tmp_path / "absent.toml"), "nousers", port)
    assert "users file missing" in n.d.text()
    assert_error(n.login("alice"), 401)


UI_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
          "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def test_ui_static_files_and_headers(node):
    """The admin UI's embedded files: types, security headers, ETag/304,
    the /ui redirect and 404s (the browser test drives the page itself)."""
    r = node.req("GET", "/ui", allow_redirects=False)
    assert r.status_code == 308 and r.headers["Location"] == "/ui/", r.headers
    want = {"/ui/": "text/html", "/ui/app.js": "text/javascript", "/ui/app.css": "text/css",
            "/ui/favicon.svg": "image/svg+xml"}
    for path, ctype in want.items():
        r = node.req("GET", path)
        assert r.status_code == 200, (path, r.status_code)
        assert r.headers["Content-Type"].startswith(ctype), (path, r.headers["Content-Type"])
        assert r.headers["Content-Security-Policy"] == UI_CSP, path
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-cache"
        etag = r.headers["ETag"]
        assert re.fullmatch(r'"[0-9a-f]{16}"', etag), etag
        r2 = node.req("GET", path, headers={"If-None-Match": etag})
        assert r2.status_code == 304 and r2.content == b"", (path, r2.status_code)
        assert node.req("GET", path, headers={"If-None-Match": '"0000000000000000"'}).status_code == 200
        assert node.req("HEAD", path).status_code == 200
    html = node.req("GET", "/ui/").text
    assert "<script>" not in html, "inline scripts are blocked by the CSP"
    assert 'style="' not in html, "inline style attributes are blocked by the CSP"
    for bad in ("/ui/index.html", "/ui/nope.js", "/ui/..%2Fui.c", "/ui/app.js/x"):
        r = node.req("GET", bad)
        assert r.status_code == 404, (bad, r.status_code)
        assert r.headers.get("Content-Security-Policy") in (UI_CSP, None)
    assert node.req("POST", "/ui/app.js").status_code == 405


def test_session_probe_for_the_ui(node):
    """?optional=1 answers 200 {"authenticated": false} instead of 401, so the
    page's load-time check never shows as a failed request."""
    r = node.req("GET", "/api/auth/session?optional=1")
    assert r.status_code == 200 and r.json()["authenticated"] is False, r.text
    assert "no session cookie" in r.json()["reason"]
    r = node.req("GET", "/api/auth/session?optional=1", cookie="garbage")
    assert r.status_code == 200 and r.json()["authenticated"] is False, r.text
    assert_error(node.req("GET", "/api/auth/session"), 401)
    cookie, csrf = node.session("alice")
    j = node.req("GET", "/api/auth/session?optional=1", cookie=cookie).json()
    assert j["authenticated"] is True and j["username"] == "alice" and j["csrf_token"] == csrf, j
    j = node.req("GET", "/api/auth/session", cookie=cookie).json()
    assert j["authenticated"] is True and j["username"] == "alice", j
