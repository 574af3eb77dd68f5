"""Both daemons start from spec-shaped configs, serve /healthz over TLS,
refuse bad configs with precise errors, and stop gracefully."""
import os
import signal
import socket
import ssl
import subprocess

import pytest
import requests

from conftest import ROOT, BUILD, binary, free_port

SPEC_NODE = """\
[server]
listen = "127.0.0.1:{port}"
issuer = "https://127.0.0.1:{port}"

[database]
url = "sqlite://{db}"

[users]
static_file = "users.toml"

[gssapi]
keytab = "/nonexistent/keytab"

[gossip]
peers            = ["https://127.0.0.1:8081", "https://127.0.0.1:8082"]
interval_secs    = 2
allowed_node_ids = ["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8082"]

[cluster]
distributed_mode = "eventual"
"""

TLS = """
[tls]
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{ca}"
"""

SPEC_AKAMU = """\
listen_addr = "127.0.0.1:{port}"
base_url = "https://127.0.0.1:{port}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{db}"

[tls]
enabled = true
cert_file = "{cert}"
key_file = "{key}"

[gossip]
# URLs of all other cluster nodes (admin base URL, not the ACME URL).
peers = [
"http://node2.acme.internal:8081",
"http://node3.acme.internal:8081",
]
# How often to run a gossip round (seconds). Default: 15.
interval_secs = 15
# How long to keep tombstoned entries before GC (seconds). Default: 604800 = 7 days.
tombstone_ttl_secs = 604800
# How long a node may claim exclusive ownership of an order/MTC write slot
# before another node may take over. Default: 150 seconds.
ownership_ttl_secs = 150
"""


def ahdapa_config(tmp_path, pki, port, tls=True, extra=""):
    text = SPEC_NODE.format(port=port, db=tmp_path / "node.db")
    if tls:
        text += TLS.format(**pki)
    text += extra
    p = tmp_path / "node.toml"
    p.write_text(text)
    return str(p)


def check(name, path, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([binary(name), "--check-config", "-c", path], capture_output=True,
                          text=True, env=e, timeout=30)


def test_ahdapa_serves_healthz_over_tls(tmp_path, pki, daemons):
    port = free_port()
    cfg = ahdapa_config(tmp_path, pki, port)
    d = daemons("ahdapa", cfg)
    r = d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    assert r.json() == {"status": "ok"}
    assert r.headers["Content-Type"].startswith("application/json")
    # Keep-alive: several requests on one connection.
    with requests.Session() as s:
        for _ in range(5):
            assert s.get(f"https://127.0.0.1:{port}/healthz", verify=pki["ca"]).status_code == 200
    # Plain HTTP to the TLS port gets no HTTP answer.
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=3)
    # Unknown path: JSON 404.
    r = requests.get(f"https://127.0.0.1:{port}/nope", verify=pki["ca"])
    assert r.status_code == 404
    assert d.stop() == 0
    assert "shutting down" in d.text()


def test_tls_versions(tmp_path, pki, daemons):
    port = free_port()
    d = daemons("ahdapa", ahdapa_config(tmp_path, pki, port))
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    for version, ok in ((ssl.TLSVersion.TLSv1_2, True), (ssl.TLSVersion.TLSv1_3, True),
                        (ssl.TLSVersion.TLSv1_1, False)):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(pki["ca"])
        ctx.minimum_version = version
        ctx.maximum_version = version
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                    got = t.version()
            assert ok, f"{version} accepted ({got})"
        except (ssl.SSLError, OSError):
            assert not ok, f"{version} refused"
    d.stop()


def test_ahdapa_plain_http_and_env_config(tmp_path, pki, daemons):
    port = free_port()
    cfg = ahdapa_config(tmp_path, pki, port, tls=False)
    d = daemons("ahdapa", cfg)
    d.wait_ready(f"http://127.0.0.1:{port}/healthz", None)
    assert d.stop() == 0
    # $AHDAPA_CONFIG is used when -c is absent.
    r = subprocess.run([binary("ahdapa"), "--check-config"], capture_output=True, text=True,
                       env=dict(os.environ, AHDAPA_CONFIG=cfg), timeout=30)
    assert r.returncode == 0, r.stderr
    assert "is valid" in r.stdout


def test_akamu_two_listeners(tmp_path, pki, daemons):
    port, admin = free_port(), free_port()
    p = tmp_path / "akamu.toml"
    p.write_text(SPEC_AKAMU.format(port=port, admin=admin, db=tmp_path / "akamu.db", **pki))
    r = check("akamu", str(p))
    assert r.returncode == 0, r.stderr
    d = daemons("akamu", str(p))
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    r = requests.get(f"http://127.0.0.1:{admin}/healthz", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert d.stop() == 0


@pytest.mark.parametrize("name,text,want", [
    ("ahdapa", "[gossip]\ninterval_secs = \"2\"\n",
     "bad.toml:2: key 'gossip.interval_secs': expected integer in 1..86400, found string \"2\""),
    ("ahdapa", "[server]\nlisen = \"127.0.0.1:1\"\n",
     "bad.toml:2: unknown key 'server.lisen' (did you mean 'listen'?)"),
    ("ahdapa", "[cluster]\ndistributed_mode = \"sync\"\n",
     "key 'cluster.distributed_mode': expected one of off|eventual"),
    ("ahdapa", "[server\n", "invalid TOML: line 1"),
    ("akamu", "[ca]\nkey_type = \"dsa\"\n", "bad.toml:2: key 'ca.key_type': expected one of"),
    ("akamu", "[gosip]\npeers = []\n", "unknown section 'gosip' (did you mean 'gossip'?)"),
])
def test_bad_configs_refused(tmp_path, name, text, want):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    r = check(name, str(p))
    assert r.returncode == 1
    assert want in r.stderr, r.stderr
    # And the daemon refuses to start with it, with the same message.
    r2 = subprocess.run([binary(name), "-c", str(p)], capture_output=True, text=True, timeout=30)
    assert r2.returncode == 1 and want in r2.stderr


def test_allow_unknown_keys_flag(tmp_path):
    p = tmp_path / "unk.toml"
    p.write_text("[server]\nlisen = \"127.0.0.1:1\"\n")
    r = subprocess.run([binary("ahdapa"), "--check-config", "--allow-unknown-keys", "-c", str(p)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert "warning: unknown key 'server.lisen'" in r.stderr


def test_unwritable_database(tmp_path, pki, daemons):
    port = free_port()
    cfg = ahdapa_config(tmp_path, pki, port)
    text = open(cfg).read().replace(f"sqlite://{tmp_path}/node.db", "sqlite:///nonexistent/dir/x.db")
    open(cfg, "w").write(text)
    d = daemons("ahdapa", cfg)
    assert d.proc.wait(30) == 1
    assert "/nonexistent/dir/x.db" in d.text(), d.text()
    assert "startup failed" in d.text()


def test_port_in_use(tmp_path, pki, daemons):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        d = daemons("ahdapa", ahdapa_config(tmp_path, pki, port))
        assert d.proc.wait(30) == 1
        assert f"127.0.0.1:{port}" in d.text(), d.text()


def test_bad_tls_key_refused(tmp_path, pki, daemons):
    port = free_port()
    other = tmp_path / "other.key"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(other)],
                   check=True, capture_output=True)
    bad = dict(pki, key=str(other))
    d = daemons("ahdapa", ahdapa_config(tmp_path, bad, port))
    assert d.proc.wait(30) == 1
    assert "startup failed" in d.text(), d.text()


def test_sighup_reload_and_sigterm(tmp_path, pki, daemons):
    port = free_port()
    cfg = ahdapa_config(tmp_path, pki, port)
    d = daemons("ahdapa", cfg)
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_log("config reloaded")
    # A broken file on reload is refused; the node keeps serving.
    with open(cfg, "a") as f:
        f.write("\n[bogus]\n")
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_log("config reload refused")
    assert requests.get(f"https://127.0.0.1:{port}/healthz", verify=pki["ca"]).status_code == 200
    assert d.stop() == 0


def test_log_level_env(tmp_path, pki, daemons):
    port = free_port()
    d = daemons("ahdapa", ahdapa_config(tmp_path, pki, port), env={"AHDAPA_LOG_LEVEL": "error"})
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    d.stop()
    assert "INFO" not in d.text()


def test_docs_config_matches_schema():
    """docs/config.md carries the tables the schema generates (tools/cfg-doc)."""
    out = subprocess.run([os.path.join(BUILD, "tools", "cfg-doc")], capture_output=True,
                         text=True, check=True).stdout
    doc = open(os.path.join(ROOT, "docs", "config.md")).read()
    for line in out.splitlines():
        if line.startswith("| `"):
            assert line in doc, f"docs/config.md is stale (run scripts/update-config-doc.sh):\n{line}"
