"""Node gossip keys: generated on first start, served by GET /api/gossip/kem-info,
unchanged across a restart; akamu serves them on the admin listener only."""
import base64

import requests

from conftest import free_port
from test_daemons import SPEC_AKAMU, ahdapa_config


def b64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def kem_info(url, verify):
    r = requests.get(url, verify=verify, timeout=5)
    assert r.status_code == 200, r.text
    j = r.json()
    # akamu adds its CA certification of these keys (docs/replication.md §9).
    assert set(j) - {"certification"} == {"node_id", "kem_alg", "kem_public_key", "signing_alg",
                                          "signing_public_key"}
    assert j["kem_alg"] == "X-Wing" and j["signing_alg"] == "ES256"
    assert len(b64u(j["kem_public_key"])) == 1216
    pub = b64u(j["signing_public_key"])
    assert len(pub) == 65 and pub[0] == 4
    return j


def test_ahdapa_keys_survive_restart(tmp_path, pki, daemons):
    port = free_port()
    cfg = ahdapa_config(tmp_path, pki, port)
    d = daemons("ahdapa", cfg)
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    first = kem_info(f"https://127.0.0.1:{port}/api/gossip/kem-info", pki["ca"])
    assert first["node_id"] == f"127.0.0.1:{port}"  # issuer's host:port
    assert 'identity="generated"' in d.text()
    assert d.stop() == 0

    d2 = daemons("ahdapa", cfg)
    d2.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    again = kem_info(f"https://127.0.0.1:{port}/api/gossip/kem-info", pki["ca"])
    assert again == first
    assert 'identity="loaded"' in d2.text()
    assert d2.stop() == 0


def test_ahdapa_node_id_config_and_mismatch(tmp_path, pki, daemons):
    port = free_port()
    cfg = ahdapa_config(tmp_path, pki, port)
    text = open(cfg).read().replace("[gossip]\n", "[gossip]\nnode_id = \"node-a\"\n")
    open(cfg, "w").write(text)
    d = daemons("ahdapa", cfg)
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    assert kem_info(f"https://127.0.0.1:{port}/api/gossip/kem-info", pki["ca"])["node_id"] == "node-a"
    d.stop()
    # The same database under another id: refused with a clear message.
    open(cfg, "w").write(text.replace("node-a", "node-b"))
    d2 = daemons("ahdapa", cfg)
    assert d2.proc.wait(30) == 1
    assert 'holds the keys of node id \\"node-a\\"' in d2.text() or \
        'holds the keys of node id "node-a"' in d2.text(), d2.text()


def test_akamu_kem_info_on_admin_only(tmp_path, pki, daemons):
    port, admin = free_port(), free_port()
    p = tmp_path / "akamu.toml"
    p.write_text(SPEC_AKAMU.format(port=port, admin=admin, db=tmp_path / "akamu.db", **pki))
    d = daemons("akamu", str(p))
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    j = kem_info(f"http://127.0.0.1:{admin}/api/gossip/kem-info", None)
    assert j["node_id"] == f"127.0.0.1:{admin}"
    r = requests.get(f"https://127.0.0.1:{port}/api/gossip/kem-info", verify=pki["ca"], timeout=5)
    assert r.status_code == 404
    d.stop()


def test_node_keys_sealed_at_rest(tmp_path, pki, daemons):
    import sqlite3
    port = free_port()
    cfg = ahdapa_config(tmp_path, pki, port)
    url = f"https://127.0.0.1:{port}/api/gossip/kem-info"
    db = tmp_path / "node.db"

    def row():
        with sqlite3.connect(db) as c:
            return c.execute("SELECT length(secret), wrap_key_id FROM node_keys").fetchone()

    d = daemons("ahdapa", cfg)
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    first = kem_info(url, pki["ca"])
    d.stop()
    assert row() == (64, None)  # in clear: no wrapping key yet

    key = tmp_path / "wrap.key"
    key.write_text(base64.b64encode(bytes(range(32))).decode() + "\n")
    key.chmod(0o600)
    base = open(cfg).read()
    open(cfg, "w").write(base.replace("[gossip]\n", f"[gossip]\nwrapping_key_file = \"{key}\"\n"))
    d = daemons("ahdapa", cfg)
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    assert kem_info(url, pki["ca"]) == first
    assert "node keys sealed at rest" in d.text()
    d.stop()
    length, wid = row()
    assert length == 12 + 64 + 16 and wid and len(wid) == 16

    # Without the key file the node refuses to start, naming the key id.
    open(cfg, "w").write(base)
    d = daemons("ahdapa", cfg)
    assert d.proc.wait(30) == 1
    assert f"wrapped with key id {wid}" in d.text(), d.text()

    # A wrong key is refused too; a malformed key file gets its own message.
    other = tmp_path / "other.key"
    other.write_text(base64.b64encode(b"\x01" * 32).decode())
    open(cfg, "w").write(base.replace("[gossip]\n", f"[gossip]\nwrapping_key_file = \"{other}\"\n"))
    d = daemons("ahdapa", cfg)
    assert d.proc.wait(30) == 1
    assert f"wrapped with key id {wid}" in d.text()
    other.write_text("not base64!")
    d = daemons("ahdapa", cfg)
    assert d.proc.wait(30) == 1
    assert "expected base64 of exactly 32 bytes" in d.text()

    # With the right key again: same identity.
    open(cfg, "w").write(base.replace("[gossip]\n", f"[gossip]\nwrapping_key_file = \"{key}\"\n"))
    d = daemons("ahdapa", cfg)
    d.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
    assert kem_info(url, pki["ca"]) == first
    d.stop()
