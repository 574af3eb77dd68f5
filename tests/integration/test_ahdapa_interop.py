"""ahdapa against real third-party OAuth clients: one node over TLS, two
confidential clients made through the admin API (client_secret_post and
client_secret_basic), then tests/interop/interop.mjs (openid-client 6 and
jose 6, versions pinned in tests/interop/package-lock.json) runs discovery,
client_credentials, introspection, revocation and a JWKS-verified JWT check.

The npm dependencies are installed once with `npm ci` into
tests/interop/node_modules (gitignored)."""
import os
import shutil
import subprocess

import pytest
import requests

from conftest import ROOT, binary, free_port, hash_password

INTEROP = os.path.join(ROOT, "tests", "interop")

from test_ahdapa_oauth import NODE  # noqa: E402  (same node config)



def npm_ci():
    """Installs the pinned packages once (node_modules is gitignored)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found in PATH (needed for tests/interop)")
    if all(os.path.isfile(os.path.join(INTEROP, "node_modules", p, "package.json"))
           for p in ("openid-client", "jose")):
        return
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"npm ci in {INTEROP} failed:\n{r.stdout}\n{r.stderr}"


def test_openid_client_and_jose_interop(daemons, tmp_path, pki):
    npm_ci()
    users = tmp_path / "users.toml"
    users.write_text(f"""\
[[users]]
username = "alice"
password_hash = "{hash_password('alice123')}"
groups = ["admins"]
""")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    cfg = tmp_path / "node.toml"
    cfg.write_text(NODE.format(port=port, db=tmp_path / "node.db", users=users, **pki))
    d = daemons("ahdapa", str(cfg))
    d.wait_ready(url + "/healthz", pki["ca"])

    admin = requests.Session()
    admin.verify = pki["ca"]
    admin.trust_env = False
    r = admin.post(url + "/api/auth/login", json={"username": "alice", "password": "alice123"},
                   timeout=10)
    assert r.status_code == 200, r.text
    admin.headers["X-CSRF-Token"] = r.json()["csrf_token"]

    env = dict(os.environ)
    for label, method in (("POST", "client_secret_post"), ("BASIC", "client_secret_basic")):
        r = admin.post(url + "/api/admin/clients", timeout=10,
                       json={"client_name": f"interop-{label.lower()}",
                             "client_type": "confidential",
                             "token_endpoint_auth_method": method, "scope": "read write"})
        assert r.status_code == 201, r.text
        env[f"INTEROP_{label}_CLIENT_ID"] = r.json()["client_id"]
        env[f"INTEROP_{label}_CLIENT_SECRET"] = r.json()["client_secret"]
    env["NODE_EXTRA_CA_CERTS"] = pki["ca"]
    for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NODE_OPTIONS"):
        env.pop(k, None)

    p = subprocess.run(["node", os.path.join(INTEROP, "interop.mjs"), url, pki["ca"]],
                       cwd=INTEROP, env=env, capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    print(out)
    last = [ln for ln in p.stdout.splitlines() if ln.strip()][-1:] or [""]
    assert last[0].endswith(" 0 failed") and p.returncode == 0, \
        f"interop.mjs exit {p.returncode}:\n{out}\n--- ahdapa log ---\n{d.text()[-3000:]}"
    assert not last[0].startswith("0 passed"), out
    assert d.stop() == 0
