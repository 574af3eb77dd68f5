"""Tombstone GC in the daemons, and a node away for longer than
tombstone_ttl_secs (issue #8: "tombstone GC with a node that was down
longer than tombstone_ttl_secs (nothing resurrects)"; docs/replication.md
section 8).

Three akamu nodes sharing one CA (they pin each other from `peers`), TTL 60 s
(the minimum), rounds every second. node3 stops; an account's keyChange on
node1 deletes the old key's account_keys row (a tombstone that reaches
node2). Time is advanced without waiting: node1 and node2 are restarted
with libfaketime preloaded, 200 s ahead (consistent clocks among the
running nodes, as in test_akamu_skew.py) and purge the tombstone; then node3 starts, also
200 s ahead: its last contact is older than the TTL and its peers purged a
tombstone newer than that, so it logs the WARN line, re-syncs from a peer
and drops the old key row. The old row exists on no node (checked in each
node's SQLite, read-only), the current key row and the other live rows are
everywhere, node1 and node2 never re-synced."""
import os
import shutil
import sqlite3
import time

import pytest
import requests

from acme_util import Client, Key, b64u
from conftest import Daemon, free_port

TOKEN = "gc-" + b64u(os.urandom(32))
AUTH = {"Authorization": "Bearer " + TOKEN}
TTL = 60
AHEAD = 200  # seconds the restarted nodes' clocks run ahead (> TTL + GC margin)
DEADLINE = 60  # seconds for anything "eventually"

CONF = """\
listen_addr = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{dir}/akamu.db"

[ca]
key_file = "{ca_dir}/ca.key"
cert_file = "{ca_dir}/ca.pem"

[admin]
token_file = "{token}"

[gossip]
peers = [{peers}]
interval_secs = 1
tombstone_ttl_secs = {ttl}
"""

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
WARN = ("WARN gossip: out of contact for longer than tombstone_ttl_secs; discarding replicated "
        "rows older than the horizon and re-syncing from peers last_contact=")


class Node:
    def __init__(self, tmp, i, ca_dir, token):
        self.i = i
        self.dir = tmp / f"n{i}"
        self.dir.mkdir()
        self.port, self.admin_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.admin_port}"
        self.ca_dir, self.token = ca_dir, token
        self.db = self.dir / "akamu.db"
        self.d = None
        self.logs = []

    def configure(self, peers):
        self.cfg = str(self.dir / "akamu.toml")
        with open(self.cfg, "w") as f:
            f.write(CONF.format(port=self.port, admin=self.admin_port, dir=self.dir,
                                ca_dir=self.ca_dir, token=self.token, ttl=TTL,
                                peers=", ".join(f'"{p.admin}"' for p in peers)))

    def start(self, ahead=0):
        # Each start logs to its own file (the Daemon class names it after
        # the config): keep the earlier ones.
        cfg = f"{self.cfg}.{len(self.logs)}"
        shutil.copy(self.cfg, cfg)
        env = {"AKAMU_LOG_LEVEL": "debug"}
        if ahead:
            # libfaketime preloaded into akamu itself: the faketime wrapper
            # forks, and SIGTERM to it would orphan the daemon.
            env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME=f"+{ahead}s",
                       ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                       ":verify_asan_link_order=0")
        self.d = Daemon("akamu", cfg, env=env)
        self.logs.append(self.d)
        self.d.wait_ready(self.url + "/healthz", None, timeout=30)
        return self

    def stop(self):
        assert self.d.proc.poll() is None, f"node{self.i} died:\n{self.d.text()}"
        assert self.d.stop() == 0, self.d.text()
        self.d = None

    def text(self):
        return self.d.text() if self.d else ""

    def status(self):
        r = requests.get(self.admin + "/api/gossip/status", timeout=5)
        assert r.status_code == 200, r.text
        return r.json()

    def has(self, kind, oid):
        r = requests.get(f"{self.admin}/api/admin/{kind}/{oid}", headers=AUTH, timeout=5)
        assert r.status_code in (200, 404), r.text
        return r.json() if r.status_code == 200 else None

    def sql(self, query, *args):
        """A read-only query on the node's database (WAL: beside the
        running daemon)."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(query, args).fetchall()
        finally:
            con.close()

    def live_key(self, tp):
        """The account_keys view (live rows) holds tp."""
        return bool(self.sql("SELECT 1 FROM account_keys WHERE key = ?", tp))

    def any_row(self, tp):
        """crdt_rows holds anything (live or tombstone) for account_keys/tp."""
        return bool(self.sql("SELECT 1 FROM crdt_rows WHERE tbl = 'account_keys' AND key = ?", tp))


def eventually(pred, timeout=DEADLINE):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    return pred()


def real_vv(node):
    return {o: s for o, s in node.status()["vv"].items() if not o.startswith("~")}


@pytest.fixture(autouse=True)
def need_faketime():
    if not os.path.exists(LIBFAKETIME):
        pytest.fail(f"{LIBFAKETIME} not installed (Debian package libfaketime)")


@pytest.fixture
def cluster(tmp_path):
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    nodes = [Node(tmp_path, i + 1, ca_dir, token) for i in range(3)]
    for n in nodes:
        n.configure([m for m in nodes if m is not n])
    yield nodes
    problems = []
    for n in nodes:
        if n.d is not None and n.d.proc.poll() is None:
            n.d.stop()
        for d in n.logs:
            text = d.text()
            if d.proc.returncode not in (0, None) or "Sanitizer" in text or \
                    "runtime error" in text:
                problems.append(f"{d.log_path}: exit {d.proc.returncode}\n{text[-3000:]}")
    assert not problems, "\n".join(problems)


def test_gc_and_stale_node(cluster):
    n1, n2, n3 = cluster
    # The first start makes the shared CA; the others load it.
    for n in cluster:
        n.start()
    for n in cluster:
        for m in cluster:
            if m is not n:
                assert n.d.wait_log(f'first-contact merge complete peer="{m.admin}"', DEADLINE), \
                    n.text()

    # An account with an order, made on node1, everywhere.
    c = Client(n1.url)
    r = c.new_account(contact=["mailto:gc@example.org"])
    assert r.status_code == 201, r.text
    acct = c.kid.rsplit("/", 1)[1]
    r = c.post(c.url("newOrder"), {"identifiers": [{"type": "dns", "value": "gc.example.org"}]})
    assert r.status_code == 201, r.text
    order = r.headers["Location"].rsplit("/", 1)[1]
    old_tp = c.key.thumbprint()
    for n in cluster:
        assert eventually(lambda: n.has("accounts", acct) and n.has("orders", order)), n.text()
        assert eventually(lambda: n.live_key(old_tp)), n.text()

    # node3 stops (cleanly: it records its last contact).
    n3.stop()

    # keyChange on node1: the old key's account_keys row becomes a
    # tombstone, which reaches node2.
    old_key, new_key = c.key, Key.generate("ES256")
    r = c.key_change(new_key)
    assert r.status_code == 200, r.text
    new_tp = new_key.thumbprint()
    for n in (n1, n2):
        assert eventually(lambda: n.live_key(new_tp) and not n.live_key(old_tp)), n.text()
        assert n.any_row(old_tp)  # the tombstone, not purged yet
    assert eventually(lambda: real_vv(n1) == real_vv(n2)), (n1.status(), n2.status())

    # Time moves on: node1 and node2 restart AHEAD seconds ahead and purge
    # the tombstone (GC runs at start, then every min(TTL/8, 10 min)).
    n1.stop()
    n2.stop()
    n1.start(AHEAD)
    n2.start(AHEAD)
    for n in (n1, n2):
        assert eventually(lambda: n.status()["totals"]["gc_purged"] >= 1), n.text()
        assert n.d.wait_log("INFO gossip: gc purged=", DEADLINE), n.text()
        assert eventually(lambda: not n.any_row(old_tp)), n.text()
        assert n.status()["contact"]["gc_mark_ms"] > 0
    for n, m in ((n1, n2), (n2, n1)):
        assert n.d.wait_log(f'first-contact merge complete peer="{m.admin}"', DEADLINE), n.text()

    # node3 comes back, as far ahead: out of contact for longer than the
    # TTL while its peers purged a tombstone: WARN, re-sync, the old key
    # row goes.
    n3.start(AHEAD)
    assert n3.d.wait_log(WARN, DEADLINE), n3.text()
    assert n3.d.wait_log("INFO gossip: re-sync complete peer=", DEADLINE), n3.text()
    st = n3.status()
    assert st["totals"]["resyncs"] == 1, st
    assert st["totals"]["resync_dropped"] >= 1, st
    assert st["contact"]["resync"] is False and st["contact"]["armed"] is False, st

    # Nothing resurrected, anywhere, and it stays so.
    for n in cluster:
        assert eventually(lambda: real_vv(n) == real_vv(n1)), (n.status(), n1.status())
    time.sleep(3)
    for n in cluster:
        assert not n.live_key(old_tp), f"node{n.i} holds the deleted key row"
        assert not n.any_row(old_tp), f"node{n.i} holds a row for the deleted key"
        assert n.live_key(new_tp), f"node{n.i} lacks the current key row"
        a = n.has("accounts", acct)
        assert a is not None, f"node{n.i} lacks the account"
        assert n.has("orders", order) is not None, f"node{n.i} lacks the order"
    # node1 and node2 never re-synced (they were never behind anyone).
    for n in (n1, n2):
        assert WARN not in n.text(), n.text()
        assert n.status()["totals"]["resyncs"] == 0
    # The account works on node3 with the new key only.
    c3 = Client(n3.url, key=new_key)
    r = c3.new_account(only_existing=True)
    assert r.status_code == 200 and r.headers["Location"].endswith(acct), r.text
    r = Client(n3.url, key=old_key).new_account(only_existing=True)
    assert r.status_code == 400 and "accountDoesNotExist" in r.text, r.text
