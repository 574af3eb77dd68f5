"""Trust bootstrap without manual seeding (issue #8): akamu nodes that share
one CA certify their gossip keys with it and pin each other from `peers`
alone; a node with another CA is refused with the WARN line and its data
never applied; allowed_node_ids still gates certified nodes; a node started
later with one existing peer introduces itself and syncs with everyone; the
cluster status endpoint (GET /api/admin/cluster) shows peers, last contact,
lag and counts. docs/replication.md, "Trust model"."""
import os
import shutil
import signal
import subprocess
import time

import pytest
import requests

from acme_util import Client, b64u
from conftest import free_port

TOKEN = "trust-" + b64u(os.urandom(32))
AUTH = {"Authorization": "Bearer " + TOKEN}
DEADLINE = 30  # seconds for anything "eventually" (rounds run every second)

CONF = """\
listen_addr = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{dir}/akamu.db"

[ca]
key_file = "{dir}/ca.key"
cert_file = "{dir}/ca.pem"

[admin]
token_file = "{dir}/token"

[gossip]
peers = [{peers}]
interval_secs = 1
{allowed}
"""


def make_ca(directory, kind="ec"):
    """A CA akamu accepts (v3, CA:TRUE, keyCertSign, SKI) in directory."""
    key, cert = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    if kind == "ed25519":
        gen = ["openssl", "genpkey", "-algorithm", "ed25519", "-out", key]
    elif kind == "rsa":
        gen = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
               "-out", key]
    else:  # "ec" (P-256) or "p384"
        curve = "P-384" if kind == "p384" else "P-256"
        gen = ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}",
               "-out", key]
    subprocess.run(gen, check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-x509", "-new", "-key", key, "-days", "30",
                    "-subj", "/CN=trust test CA " + os.path.basename(directory),
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                    "-addext", "subjectKeyIdentifier=hash", "-out", cert],
                   check=True, capture_output=True)
    return directory


class Node:
    def __init__(self, tmp, name, ca_dir, daemons):
        self.dir = tmp / name
        self.dir.mkdir()
        # The spec's step: copy the CA files to every node.
        for f in ("ca.key", "ca.pem"):
            shutil.copy(os.path.join(ca_dir, f), self.dir / f)
        (self.dir / "token").write_text(TOKEN + "\n")
        (self.dir / "token").chmod(0o600)
        self.port, self.admin_port = free_port(), free_port()
        self.id = f"127.0.0.1:{self.admin_port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.daemons = daemons
        self.d = None

    def configure(self, peers, allowed=None):
        allowed_line = ""
        if allowed is not None:
            allowed_line = "allowed_node_ids = [%s]" % ", ".join(f'"{a}"' for a in allowed)
        text = CONF.format(port=self.port, admin=self.admin_port, dir=self.dir,
                           peers=", ".join(f'"{p.admin}"' for p in peers), allowed=allowed_line)
        self.cfg = str(self.dir / "akamu.toml")
        with open(self.cfg, "w") as f:
            f.write(text)

    def start(self, peers, allowed=None):
        self.configure(peers, allowed)
        self.d = self.daemons("akamu", self.cfg)
        self.d.wait_ready(self.url + "/healthz", None, timeout=30)
        return self

    def wait_log(self, needle, timeout=DEADLINE):
        return self.d.wait_log(needle, timeout)

    def status(self):
        r = requests.get(self.admin + "/api/admin/cluster", headers=AUTH, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()

    def peer(self, other):
        for p in self.status()["peers"]:
            if p["node_id"] == other.id:
                return p
        return None

    def has_account(self, acct_id):
        r = requests.get(self.admin + "/api/admin/accounts/" + acct_id, headers=AUTH, timeout=5)
        return r.status_code == 200

    def stop(self):
        assert self.d.proc.poll() is None, "akamu died:\n" + self.d.text()
        assert self.d.stop() == 0


def eventually(pred, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def first_contact(node, peer):
    return f'INFO gossip: first-contact merge complete peer="{peer.admin}"'


def new_account(node):
    c = Client(node.url)
    r = c.new_account(contact=["mailto:trust@example.org"])
    assert r.status_code == 201, r.text
    return c.kid.rsplit("/", 1)[1]


def refused_line(peer):
    return ("WARN gossip: peer refused: gossip keys not certified by this cluster's CA "
            f'peer="{peer.admin}" node_id="{peer.id}"')


@pytest.mark.parametrize("kind", ["ec", "p384", "rsa"])
def test_shared_ca_pins_without_seeding(tmp_path, daemons, kind):
    """(a)+(e): two nodes, one CA (of each signature scheme the CA may use:
    ECDSA P-256/SHA-256, P-384/SHA-384, RSA PKCS#1 v1.5; Ed25519 below),
    `peers` only: pinned automatically, the spec's first-contact line, an
    account made on node1 reaches node2, and the cluster status endpoint."""
    ca = make_ca(str(tmp_path), kind)
    n1, n2 = Node(tmp_path, "n1", ca, daemons), Node(tmp_path, "n2", ca, daemons)
    n1.start([n2])
    n2.start([n1])
    for a, b in ((n1, n2), (n2, n1)):
        assert a.wait_log(first_contact(a, b)), a.d.text()
        assert a.wait_log("INFO gossip: certified peer pinned "
                          f'peer="{b.admin}" node_id="{b.id}"'), a.d.text()
        assert "gossip keys certified by the CA" in a.d.text()
        assert "not certified" not in a.d.text()
    # kem-info carries the certification ("v1.<CA key sha256>.<signature>").
    info = requests.get(n1.admin + "/api/gossip/kem-info", timeout=5).json()
    assert info["certification"].startswith("v1.")
    # Nobody was seeded.
    assert "peer seeded" not in n1.d.text() + n2.d.text()

    acct = new_account(n1)
    assert eventually(lambda: n2.has_account(acct)), n2.d.text()

    # (e) the cluster status: peers, how pinned, last contact, lag, counts.
    r = requests.get(n1.admin + "/api/admin/cluster", timeout=5)
    assert r.status_code == 401
    st = n1.status()
    assert st["node_id"] == n1.id and st["mode"] == "cluster"
    assert st["counts"]["accounts"] >= 1 and st["counts"]["cluster_nodes"] == 2
    for t in ("orders", "certificates", "authorizations", "challenges", "revocations"):
        assert t in st["counts"]
    p = n1.peer(n2)
    assert p is not None, st
    assert p["pinned"] and p["certified"] and p["pinned_by"] == "config+certification"
    assert p["url"] == n2.admin
    assert p["last_contact_ms"] > 0

    def caught_up():
        q = n1.peer(n2)
        return q["lag"] is not None and q["lag"]["behind_total"] == 0
    assert eventually(caught_up), n1.status()
    lag = n1.peer(n2)["lag"]
    assert set(lag) == {"behind", "ahead", "behind_total", "ahead_total"}
    assert n2.status()["counts"]["accounts"] >= 1
    n1.stop()
    n2.stop()


def test_other_ca_refused(tmp_path, daemons):
    """(b): a node with another CA listed in peers is refused with the WARN
    line, never pinned, and its data never applied, even when it trusts us
    (an administrator seeded us there) and introduces itself."""
    ca = make_ca(str(tmp_path))
    other = tmp_path / "other-ca"
    other.mkdir()
    make_ca(str(other), "ed25519")
    n1 = Node(tmp_path, "n1", ca, daemons)
    x = Node(tmp_path, "x", str(other), daemons)
    n1.start([x])
    x.start([n1])
    assert n1.wait_log(refused_line(x)), n1.d.text()
    assert x.wait_log(refused_line(n1)), x.d.text()
    # The spec's line: x stays unpinned.
    assert n1.wait_log(f'WARN gossip: no KEM key for peer, skipping peer="{x.admin}"'), n1.d.text()

    # x's administrator pins n1 by hand: x now talks to n1, is refused (403),
    # introduces itself, and is refused again.
    info = requests.get(n1.admin + "/api/gossip/kem-info", timeout=5).json()
    r = requests.post(x.admin + "/api/admin/nodes/seed", json=info, timeout=5)
    assert r.status_code == 200, r.text
    acct = new_account(x)
    rejected = f'WARN gossip: X-Akamu-Node-Id header rejected by peer peer="{n1.admin}"'
    # Refused again after its introduction (sent after each 403).
    assert eventually(lambda: x.d.text().count(rejected) >= 2), x.d.text()
    assert not n1.has_account(acct)
    p = n1.peer(x)
    assert p is None or not p["pinned"]
    # Logged once per peer per start.
    assert n1.d.text().count(refused_line(x)) == 1
    # A direct introduction is refused too.
    entry = requests.get(x.admin + "/api/gossip/kem-info", timeout=5).json()
    r = requests.post(n1.admin + "/api/gossip/introduce", json=entry, timeout=5)
    assert r.status_code == 400  # a kem-info is no signed cluster_nodes entry
    n1.stop()
    x.stop()


def test_allowed_node_ids_excludes_certified(tmp_path, daemons):
    """(c): allowed_node_ids set and not listing a certified node: it is not
    admitted (kem-info nor introduction)."""
    ca = make_ca(str(tmp_path))
    n1, n2 = Node(tmp_path, "n1", ca, daemons), Node(tmp_path, "n2", ca, daemons)
    n1.start([n2], allowed=["127.0.0.1:1"])
    n2.start([n1])
    line = ("WARN gossip: peer refused: not in allowed_node_ids "
            f'peer="{n2.admin}" node_id="{n2.id}"')
    assert n1.wait_log(line), n1.d.text()
    # n2 pins n1 (no list there), is refused with 403 and its introduction too.
    assert n2.wait_log(f'WARN gossip: X-Akamu-Node-Id header rejected by peer peer="{n1.admin}"')

    def refused_twice():
        st = requests.get(n1.admin + "/api/gossip/status", timeout=5).json()
        return st["totals"]["refusals"].get("not_allowed", 0) >= 2
    assert eventually(refused_twice), n1.d.text()
    p = n1.peer(n2)
    assert p is None or not p["pinned"]
    assert first_contact(n1, n2) not in n1.d.text()
    acct = new_account(n2)
    assert eventually(lambda: n2.peer(n1)["pinned"])
    assert not n1.has_account(acct)
    n1.stop()
    n2.stop()


def test_node_added_later_joins(tmp_path, daemons):
    """(d): a third node started later with one existing peer introduces
    itself, learns the others through cluster_nodes (certified entries) and
    syncs both ways, before any SIGHUP; then the spec's SIGHUP step makes it
    a configured peer."""
    ca = make_ca(str(tmp_path), "ed25519")
    n1, n2, n3 = (Node(tmp_path, f"n{i}", ca, daemons) for i in (1, 2, 3))
    n1.start([n2])
    n2.start([n1])
    assert n1.wait_log(first_contact(n1, n2)), n1.d.text()
    before = new_account(n1)

    n3.start([n1])
    assert n3.wait_log(first_contact(n3, n1)), n3.d.text()
    assert n1.wait_log("INFO gossip: certified peer pinned "
                       f'peer="{n3.admin}" node_id="{n3.id}" source="introduction"'), n1.d.text()
    # n3 learned n2 from cluster_nodes, and n2 learned n3: they talk directly.
    assert n3.wait_log(first_contact(n3, n2)), n3.d.text()
    assert n2.wait_log(first_contact(n2, n3)), n2.d.text()
    assert n3.has_account(before)
    after = new_account(n3)
    assert eventually(lambda: n2.has_account(after) and n1.has_account(after))
    p = n3.peer(n2)
    assert p["pinned"] and p["certified"] and p["pinned_by"] == "learned"
    assert p["url"] == n2.admin

    # The spec's step: add the new node to the others' peers and SIGHUP.
    n1.configure([n2, n3])
    n1.d.proc.send_signal(signal.SIGHUP)
    assert n1.wait_log("peer list reloaded"), n1.d.text()
    assert eventually(lambda: n1.peer(n3)["pinned_by"] == "config+certification"), n1.status()
    for n in (n1, n2, n3):
        assert n.status()["counts"]["cluster_nodes"] == 3
        n.stop()
