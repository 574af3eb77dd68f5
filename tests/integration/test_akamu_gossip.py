"""Two akamu nodes gossip over their admin listeners: seeding through the
admin API, the spec's first-contact line, status counters, a peer list
reload on SIGHUP, and single-node mode without [gossip]."""
import signal
import time

import requests

from conftest import free_port

CONF = """\
listen_addr = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{db}"

[ca]
key_file = "{name}-ca.key"
cert_file = "{name}-ca.pem"

[gossip]
peers = [{peers}]
interval_secs = 1
allowed_node_ids = [{allowed}]
"""


def write(tmp, name, port, admin, peers, allowed, gossip=True):
    text = CONF.format(port=port, admin=admin, db=tmp / f"{name}.db", name=name,
                       peers=", ".join(f'"{p}"' for p in peers),
                       allowed=", ".join(f'"{a}"' for a in allowed))
    if not gossip:
        text = text[:text.index("[gossip]")]
    p = tmp / f"{name}.toml"
    p.write_text(text)
    return str(p)


def test_two_akamu_nodes_first_contact(tmp_path, daemons):
    ports = [(free_port(), free_port()) for _ in range(2)]
    ids = [f"127.0.0.1:{a}" for _, a in ports]
    admins = [f"http://127.0.0.1:{a}" for _, a in ports]
    cfgs = [write(tmp_path, f"n{i}", ports[i][0], ports[i][1], [admins[1 - i]], ids) for i in range(2)]
    nodes = [daemons("akamu", c) for c in cfgs]
    for i, n in enumerate(nodes):
        n.wait_ready(f"http://127.0.0.1:{ports[i][0]}/healthz", None)
    # Not seeded: the spec's troubleshooting line.
    assert nodes[0].wait_log("gossip: no KEM key for peer, skipping", 10), nodes[0].text()

    infos = [requests.get(a + "/api/gossip/kem-info", timeout=5).json() for a in admins]
    for i in range(2):
        r = requests.post(admins[i] + "/api/admin/nodes/seed", json=infos[1 - i], timeout=5)
        assert r.status_code == 200, r.text
    for i, n in enumerate(nodes):
        want = (f'INFO gossip: first-contact merge complete peer="{admins[1 - i]}" '
                "accounts=0 orders=0 certificates=0 authorizations=0 cluster_nodes=2")
        assert n.wait_log(want, 15), n.text()

    st = requests.get(admins[0] + "/api/gossip/status", timeout=5).json()
    peer = [p for p in st["peers"] if p["node_id"] == ids[1]][0]
    assert peer["last_success_ms"] > 0
    # Gossip is on the admin listener only.
    r = requests.post(f"http://127.0.0.1:{ports[0][0]}/api/gossip/sync", data=b"x", timeout=5)
    assert r.status_code in (404, 405)

    # A sync with a forged node-id header is refused.
    r = requests.post(admins[0] + "/api/gossip/sync", data=b"\x01" * 200,
                      headers={"X-Akamu-Node-Id": "evil"}, timeout=5)
    assert r.status_code in (400, 403)

    # SIGHUP reloads the peer list.
    nodes[0].proc.send_signal(signal.SIGHUP)
    assert nodes[0].wait_log("peer list reloaded", 10)
    for n in nodes:
        assert n.stop() == 0


def test_akamu_single_node_mode(tmp_path, daemons):
    port, admin = free_port(), free_port()
    cfg = write(tmp_path, "solo", port, admin, [], [], gossip=False)
    d = daemons("akamu", cfg)
    d.wait_ready(f"http://127.0.0.1:{port}/healthz", None)
    assert "single-node mode" in d.text()
    r = requests.post(f"http://127.0.0.1:{admin}/api/admin/nodes/seed", json={}, timeout=5)
    assert r.status_code == 409
    d.stop()


def test_akamu_no_peers_loop_disabled(tmp_path, daemons):
    port, admin = free_port(), free_port()
    cfg = write(tmp_path, "nopeers", port, admin, [], [])
    d = daemons("akamu", cfg)
    d.wait_ready(f"http://127.0.0.1:{port}/healthz", None)
    assert d.wait_log("gossip: no peers configured — loop disabled", 5), d.text()
    d.stop()
