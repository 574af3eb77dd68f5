"""Clock skew between akamu nodes (issue #8, the spec's troubleshooting
section): a node whose clock is ahead by more than the tolerance
(tombstone_ttl_secs) is refused — its envelopes look stale or from the
future — nothing it holds is applied, and the refusals are logged and
counted; a node ahead by less than the tolerance gossips normally.

The skewed node runs under libfaketime (Debian's faketime package), which
shifts what the process sees from clock_gettime/time, so the real clock of
the machine is untouched."""
import os
import subprocess
import time

import pytest
import requests

from conftest import Daemon, binary, free_port

TTL = 60  # tombstone_ttl_secs, the skew tolerance
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

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
peers = ["{peer}"]
interval_secs = 1
tombstone_ttl_secs = {ttl}
allowed_node_ids = [{allowed}]
"""


class FakeTimeDaemon(Daemon):
    """A Daemon whose clock runs `offset` ahead (faketime -f "+Ns")."""

    def __init__(self, name, config, offset_secs):
        self.log_path = config + ".log"
        self.log = open(self.log_path, "wb")
        # Preloaded directly (not the faketime wrapper, which forks: a
        # signal to the wrapper would leave the daemon running).
        env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME=f"+{offset_secs}s")
        self.proc = subprocess.Popen([binary(name), "-c", config], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)


def pair(tmp, offset):
    """Two nodes (b shifted by offset seconds), seeded into each other."""
    ports = [(free_port(), free_port()) for _ in range(2)]
    admins = [f"http://127.0.0.1:{a}" for _, a in ports]
    ids = ", ".join(f'"127.0.0.1:{a}"' for _, a in ports)
    cfgs = []
    for i, name in enumerate(("a", "b")):
        p = tmp / f"{name}.toml"
        p.write_text(CONF.format(port=ports[i][0], admin=ports[i][1], db=tmp / f"{name}.db",
                                 name=name, peer=admins[1 - i], ttl=TTL, allowed=ids))
        cfgs.append(str(p))
    a = Daemon("akamu", cfgs[0])
    b = FakeTimeDaemon("akamu", cfgs[1], offset)
    for d, (port, _) in zip((a, b), ports):
        d.wait_ready(f"http://127.0.0.1:{port}/healthz", None)
    infos = [requests.get(u + "/api/gossip/kem-info", timeout=5).json() for u in admins]
    for i in range(2):
        r = requests.post(admins[i] + "/api/admin/nodes/seed", json=infos[1 - i], timeout=5)
        assert r.status_code == 200, r.text
    return a, b, admins, [p for p, _ in ports]


def refusals(admin):
    st = requests.get(admin + "/api/gossip/status", timeout=5).json()
    return st["totals"].get("refusals", {})


def wait(pred, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    return pred()


@pytest.fixture(autouse=True)
def need_faketime():
    if not os.path.exists(LIBFAKETIME):
        pytest.fail(f"{LIBFAKETIME} not installed (Debian package libfaketime)")


def test_skew_beyond_tolerance_is_refused(tmp_path):
    a, b, admins, _ = pair(tmp_path, 4 * TTL)
    try:
        # The node behind refuses every envelope from the one ahead as from
        # the future (requests and responses), with the spec's line; the
        # node ahead sees its requests answered 400.
        assert wait(lambda: refusals(admins[0]).get("future")), a.text()
        assert a.wait_log('WARN gossip: verify_and_open response failed peer="%s" '
                          'reason="future"' % admins[1], 10), a.text()
        assert "timestamp too far in the future" in a.text(), a.text()
        assert wait(lambda: refusals(admins[1])), b.text()
        assert "WARN gossip: sync failed" in b.text(), b.text()
        # No first contact ever completes across the skew.
        time.sleep(3)
        assert "first-contact merge complete" not in a.text(), a.text()
        assert "first-contact merge complete" not in b.text(), b.text()
    finally:
        a.stop()
        b.stop()


def test_skew_within_tolerance_gossips(tmp_path):
    a, b, admins, _ = pair(tmp_path, TTL // 4)
    try:
        assert a.wait_log("first-contact merge complete", 20), a.text()
        assert b.wait_log("first-contact merge complete", 20), b.text()
    finally:
        a.stop()
        b.stop()
