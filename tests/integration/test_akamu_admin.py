"""akamu's admin API on the admin listener: bearer-token protection, the
account/order/certificate views, EAB key creation (used by newAccount
exactly once) and the revoke endpoint's error paths (revoking real
certificates is tested with cert.c)."""
import os

import pytest
import requests

from acme_util import Client, b64u, problem, write_config
from conftest import Daemon, free_port

TOKEN = "t0ken-" + b64u(os.urandom(32))
CFG_EAB = {"cfgkey": b64u(os.urandom(32))}


def start(directory, **kw):
    port, admin = free_port(), free_port()
    d = Daemon("akamu", write_config(directory, port, admin, **kw))
    d.wait_ready(f"http://127.0.0.1:{port}/healthz", None, timeout=30)
    return d, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("admin")
    tok = d / "token"
    tok.write_text("\n  " + TOKEN + "  \n")
    tok.chmod(0o600)
    dm, url, admin = start(d, token_file=tok, eab_keys=CFG_EAB)
    yield {"url": url, "admin": admin, "daemon": dm}
    alive = dm.proc.poll() is None
    dm.stop()
    assert alive, "akamu died during the tests:\n" + dm.text()


AUTH = {"Authorization": "Bearer " + TOKEN}


def get(server, path, **kw):
    return requests.get(server["admin"] + path, headers=kw.pop("headers", AUTH), timeout=5, **kw)


def post(server, path, body=None, **kw):
    return requests.post(server["admin"] + path, json=body, headers=kw.pop("headers", AUTH),
                         timeout=5, **kw)


ROUTES = [("GET", "/api/admin/accounts"), ("GET", "/api/admin/accounts/x"),
          ("GET", "/api/admin/orders"), ("GET", "/api/admin/orders/x"),
          ("GET", "/api/admin/certificates"), ("GET", "/api/admin/certificates/01"),
          ("POST", "/api/admin/certificates/01/revoke"), ("POST", "/api/admin/eab-keys")]


def test_disabled_without_token_file(tmp_path):
    d, url, admin = start(tmp_path)
    try:
        assert "admin API disabled" in d.text()
        for method, path in ROUTES:
            r = requests.request(method, admin + path, headers=AUTH, timeout=5)
            assert r.status_code == 403, (path, r.text)
            assert r.json() == {"error": "forbidden",
                                "error_description": "admin API disabled: set [admin] token_file"}
        # The gossip routes on the same listener are unaffected.
        assert requests.get(admin + "/api/gossip/kem-info", timeout=5).status_code == 200
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("content,why", [("short-token", "at least 32"),
                                         ("has a space " + "x" * 40, "printable ASCII")])
def test_bad_token_file_refuses_start(tmp_path, content, why):
    tok = tmp_path / "token"
    tok.write_text(content)
    port, admin = free_port(), free_port()
    d = Daemon("akamu", write_config(tmp_path, port, admin, token_file=tok))
    assert d.proc.wait(30) != 0
    assert "token_file" in d.text() and why in d.text(), d.text()
    assert TOKEN not in d.text()


def test_missing_token_file_refuses_start(tmp_path):
    port, admin = free_port(), free_port()
    d = Daemon("akamu", write_config(tmp_path, port, admin, token_file=tmp_path / "nope"))
    assert d.proc.wait(30) != 0
    assert "token_file" in d.text(), d.text()


@pytest.mark.parametrize("method,path", ROUTES)
def test_token_required(server, method, path):
    r = requests.request(method, server["admin"] + path, timeout=5)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="akamu-admin"')
    assert r.headers["Content-Type"].startswith("application/json")
    for bad in ["Bearer wrong", "Bearer " + TOKEN + "x", "Bearer " + TOKEN[:-1], "Basic " + TOKEN,
                TOKEN, "Bearer "]:
        r = requests.request(method, server["admin"] + path, headers={"Authorization": bad},
                             timeout=5)
        assert r.status_code == 401, bad
        assert "akamu-admin" in r.headers["WWW-Authenticate"]


def test_not_on_the_acme_listener(server):
    r = requests.get(server["url"] + "/api/admin/accounts", headers=AUTH, timeout=5)
    assert r.status_code == 404


def test_accounts(server):
    made = []
    for i in range(3):
        c = Client(server["url"])
        r = c.new_account(contact=[f"mailto:list{i}@example.com"])
        assert r.status_code == 201
        made.append(c.kid.rsplit("/", 1)[1])
    r = get(server, "/api/admin/accounts")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    ids = [a["id"] for a in r.json()["accounts"]]
    assert set(made) <= set(ids)
    assert ids == sorted(ids)

    # Paging: limit/after/next walk the same list.
    seen, after = [], None
    while True:
        params = {"limit": 2}
        if after:
            params["after"] = after
        page = get(server, "/api/admin/accounts", params=params).json()
        seen += [a["id"] for a in page["accounts"]]
        assert len(page["accounts"]) <= 2
        after = page.get("next")
        if not after:
            break
    assert seen == ids

    one = get(server, "/api/admin/accounts/" + made[1]).json()
    assert one["id"] == made[1]
    assert one["status"] == "valid"
    assert one["contact"] == ["mailto:list1@example.com"]
    assert one["url"] == server["url"] + "/acme/acct/" + made[1]
    assert one["jwk"]["kty"] == "EC" and one["thumbprint"]
    r = get(server, "/api/admin/accounts/AAAAAAAAAAAAAAAAAAAAAAAA")
    assert r.status_code == 404 and r.json()["error"] == "not_found"

    for bad in ["0", "1001", "x", "-1", ""]:
        r = get(server, "/api/admin/accounts", params={"limit": bad})
        assert r.status_code == 400, bad


def test_orders_and_certificates_lists(server):
    c = Client(server["url"])
    assert c.new_account().status_code == 201
    acct = c.kid.rsplit("/", 1)[1]
    r = get(server, "/api/admin/orders", params={"account": acct})
    assert r.status_code == 200 and r.json()["orders"] == []
    assert isinstance(get(server, "/api/admin/orders").json()["orders"], list)
    assert get(server, "/api/admin/orders/AAAAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    r = get(server, "/api/admin/certificates")
    assert r.status_code == 200 and isinstance(r.json()["certificates"], list)
    assert get(server, "/api/admin/certificates/00ff").status_code == 404
    assert get(server, "/api/admin/certificates/not-hex").status_code == 404


def test_revoke_errors(server):
    r = post(server, "/api/admin/certificates/0123456789abcdef/revoke", {"reason": 1})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = post(server, "/api/admin/certificates/zz/revoke", {"reason": 1})
    assert r.status_code == 404
    for reason in [7, 11, -1, "1", 1.5]:
        r = post(server, "/api/admin/certificates/0123456789abcdef/revoke", {"reason": reason})
        assert r.status_code == 400, reason
    r = requests.post(server["admin"] + "/api/admin/certificates/01/revoke", data=b"{",
                      headers=AUTH, timeout=5)
    assert r.status_code == 400


def test_eab_key_lifecycle(server):
    r = post(server, "/api/admin/eab-keys", {})
    assert r.status_code == 201, r.text
    assert r.headers["Cache-Control"] == "no-store"
    k = r.json()
    assert set(k) == {"kid", "hmac_key"}
    assert len(k["hmac_key"]) == 43  # 32 bytes, base64url
    assert k["hmac_key"] not in server["daemon"].text()

    c = Client(server["url"])
    r = c.new_account(eab_obj=c.eab(k["kid"], k["hmac_key"]))
    assert r.status_code == 201, r.text
    view = get(server, "/api/admin/accounts/" + c.kid.rsplit("/", 1)[1]).json()
    assert view["eab_kid"] == k["kid"]

    c2 = Client(server["url"])
    r = c2.new_account(eab_obj=c2.eab(k["kid"], k["hmac_key"]))
    problem(r, 401, "unauthorized")
    # A used kid cannot be made again.
    r = post(server, "/api/admin/eab-keys", {"kid": k["kid"]})
    assert r.status_code == 409


def test_eab_key_chosen_kid(server):
    r = post(server, "/api/admin/eab-keys", {"kid": "team-a.prod_1"})
    assert r.status_code == 201 and r.json()["kid"] == "team-a.prod_1"
    assert post(server, "/api/admin/eab-keys", {"kid": "team-a.prod_1"}).status_code == 409
    assert post(server, "/api/admin/eab-keys", {"kid": "cfgkey"}).status_code == 409
    for bad in ["", "a b", "x" * 65, 5, "é"]:
        assert post(server, "/api/admin/eab-keys", {"kid": bad}).status_code == 400, bad
    r = requests.post(server["admin"] + "/api/admin/eab-keys", headers=AUTH, timeout=5)
    assert r.status_code == 201  # no body: a random kid


def test_config_eab_key_still_works(server):
    c = Client(server["url"])
    r = c.new_account(eab_obj=c.eab("cfgkey", CFG_EAB["cfgkey"]))
    assert r.status_code == 201, r.text
