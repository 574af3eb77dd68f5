"""Order ownership leases, takeover and fencing (issue #8; docs/acme.md,
"Order ownership: leases, takeover and fencing"). Three akamu nodes share
one CA and one base_url (node 0's); peers pin each other through their
CA-certified gossip keys; [gossip] ownership_ttl_secs = 5 (the minimum: a
validation's lease then lasts its 10 s deadline + 2 s). Requests go to each
node's own public port while the signed JWS "url" stays base_url + path,
as behind a load balancer. http-01 answers come from a responder in this
process that can hold the first request for a token (so that a node can be
killed or stopped mid-validation); names resolve through
pebble-challtestsrv.

(a) the creator dies after the order became ready: finalize on another
    node takes over at once (the lease was released with the last
    validation) and exactly one certificate exists on every node once the
    creator is back;
(b) the creator dies mid-validation: a challenge response elsewhere gets
    503 with Retry-After until the lease expires, then that node validates
    again; the restarted creator does not resubmit (its lease expired);
(c) fencing: the owner is stopped (SIGSTOP) mid-validation, another node
    takes over after expiry; once resumed, the stale owner drops its result
    ("stale order owner fenced") and the challenge's state is the other
    node's;
(d) concurrent finalize requests for one order on all three nodes: one
    certificate, the others orderNotReady;
(e) the same on the two survivors while the creator is dead: both send
    the request to the order's successor, one certificate;
(f) four nodes, the creator and the order's successor dead: the two
    survivors both move on to the next successor, one certificate;
and a forwarded request that arrives after its sender's deadline (a node
stalled with it queued) is refused.
"""
import hashlib
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import acme_util
from acme_util import ERR, Client, b64u
from conftest import Daemon, free_port

TOKEN = "lease-token-" + b64u(os.urandom(32))
AUTH = {"Authorization": "Bearer " + TOKEN}
DEADLINE = 40  # seconds for anything to "eventually" happen
TTL = 5  # ownership_ttl_secs

CONF = """\
listen_addr = "127.0.0.1:{port}"
base_url = "{base}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{dir}/akamu.db"

[ca]
key_file = "{ca_dir}/ca.key"
cert_file = "{ca_dir}/ca.pem"

[server]
http_validation_port = {http_port}
dns_resolver_addr = "127.0.0.1:{dns_port}"

[admin]
token_file = "{token}"

[gossip]
peers = [{peers}]
interval_secs = 1
ownership_ttl_secs = {ttl}
"""


Router = acme_util.Router


class Responder(http.server.ThreadingHTTPServer):
    """http-01 answers (answers[token] = key authorization). The first GET
    of a token in `hold` waits until its Event is set (at most 60 s);
    `arrived[token]` is set when that GET came in."""

    daemon_threads = True
    block_on_close = False

    def __init__(self):
        self.answers, self.hold, self.arrived, self.gets = {}, {}, {}, {}
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                tok = self.path.rsplit("/", 1)[-1]
                with outer.lock:
                    n = outer.gets[tok] = outer.gets.get(tok, 0) + 1
                if n == 1 and tok in outer.hold:
                    outer.arrived.setdefault(tok, threading.Event()).set()
                    outer.hold[tok].wait(60)
                body = outer.answers.get(tok)
                try:
                    if body is None:
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body.encode())
                except OSError:
                    pass  # the validating node is gone

            def log_message(self, *a):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def hold_first(self, token):
        self.hold[token] = threading.Event()
        self.arrived[token] = threading.Event()

    def close(self):
        for ev in self.hold.values():
            ev.set()
        self.shutdown()
        self.server_close()


class Cluster:
    """n akamu nodes on loopback sharing one CA and base_url (node 0's)."""

    def __init__(self, tmp, http_port, dns_port, n=3):
        self.tmp, self.n = tmp, n
        self.ports = [free_port() for _ in range(n)]
        self.admins = [free_port() for _ in range(n)]
        self.ids = [f"127.0.0.1:{a}" for a in self.admins]
        self.admin_urls = [f"http://127.0.0.1:{a}" for a in self.admins]
        self.base = f"http://127.0.0.1:{self.ports[0]}"
        self.http_port, self.dns_port = http_port, dns_port
        self.ca_dir = tmp / "ca"
        self.ca_dir.mkdir()
        self.token = tmp / "token"
        self.token.write_text(TOKEN + "\n")
        self.token.chmod(0o600)
        self.nodes = [None] * n
        self.runs = [0] * n
        self.done = []  # (daemon, killed)
        self.stopped_pids = set()

    def db(self, i):
        return self.tmp / f"n{i}" / "akamu.db"

    def config(self, i):
        d = self.tmp / f"n{i}"
        d.mkdir(exist_ok=True)
        text = CONF.format(port=self.ports[i], base=self.base, admin=self.admins[i], dir=d,
                           ca_dir=self.ca_dir, http_port=self.http_port, dns_port=self.dns_port,
                           token=self.token, ttl=TTL,
                           peers=", ".join(f'"{self.admin_urls[j]}"' for j in range(self.n)
                                           if j != i))
        # one config (and so one log) per run of the node
        self.runs[i] += 1
        p = d / f"akamu-{self.runs[i]}.toml"
        p.write_text(text)
        return str(p)

    def start(self, i):
        d = Daemon("akamu", self.config(i), env={"AKAMU_LOG_LEVEL": "debug"})
        self.nodes[i] = d
        d.wait_ready(f"http://127.0.0.1:{self.ports[i]}/healthz", None, timeout=30)
        return d

    def wait_contact(self, i):
        for j in range(self.n):
            if j != i and self.nodes[j] is not None:
                assert self.nodes[i].wait_log(
                    f'first-contact merge complete peer="{self.admin_urls[j]}"', DEADLINE), \
                    self.nodes[i].text()

    def start_all(self):
        # The first start makes the shared CA; the others load it. No
        # seeding: the CA certifies every node's gossip keys.
        for i in range(self.n):
            self.start(i)
        for i in range(self.n):
            self.wait_contact(i)

    def kill(self, i):
        d, self.nodes[i] = self.nodes[i], None
        d.proc.kill()
        d.proc.wait()
        d.log.close()
        self.done.append((d, True))

    def pause(self, i):
        self.stopped_pids.add(self.nodes[i].proc.pid)
        os.kill(self.nodes[i].proc.pid, signal.SIGSTOP)

    def resume(self, i):
        os.kill(self.nodes[i].proc.pid, signal.SIGCONT)
        self.stopped_pids.discard(self.nodes[i].proc.pid)

    def client(self, node=0, key=None, kid=None):
        """An ACME client whose requests all go to node's public port (see
        to())."""
        route = {"target": self.ports[node]}
        c = Client.__new__(Client)
        c.base = self.base
        c.key = key or acme_util.Key.generate("ES256")
        c.kid = kid
        c.nonce = None
        c.s = requests.Session()
        c.s.mount("http://", Router(lambda: route["target"]))
        c.timeout = 15
        c.dir = c.s.get(self.base + "/acme/directory", timeout=10).json()
        c.route = route
        return c

    def to(self, c, node):
        """Moves c to node, with a nonce of that node (a stopped node's
        nonce would cost a forward timeout)."""
        c.route["target"] = self.ports[node]
        c.nonce = None

    def admin(self, i, path):
        r = requests.get(self.admin_urls[i] + path, headers=AUTH, timeout=5)
        assert r.status_code in (200, 404), r.text
        return r.json() if r.status_code == 200 else None

    def query(self, i, sql, *args):
        """Rows of sql on node i's database, read-only (the node may be
        running: WAL)."""
        con = sqlite3.connect(f"file:{self.db(i)}?mode=ro", uri=True, timeout=10)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()

    def row(self, i, tbl, key):
        """(value as dict, origin) of tbl/key on node i, or (None, None)."""
        rows = self.query(i, f'SELECT value, origin FROM "{tbl}" WHERE key = ?', key)
        return (json.loads(rows[0][0]), rows[0][1]) if rows else (None, None)

    def lease(self, i, order_id):
        return self.row(i, "crdt_leases", "order:" + order_id)[0]

    def certs(self, i, order_id):
        return self.query(i, "SELECT key FROM certificates WHERE json_extract(value, '$.order') = ?",
                          order_id)

    def check_alive(self):
        for i, d in enumerate(self.nodes):
            if d is not None:
                assert d.proc.poll() is None, f"node {i} died:\n{d.text()}"

    def close(self):
        """Stops every node; returns the problems (exit codes, sanitizer
        reports) of all nodes ever run."""
        for pid in list(self.stopped_pids):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        for i, d in enumerate(self.nodes):
            if d is not None:
                self.nodes[i] = None
                try:
                    d.stop()
                except AssertionError:
                    pass  # reported below: killed, exit code -9
                self.done.append((d, False))
        bad = []
        for d, killed in self.done:
            text = d.text()
            if (not killed and d.proc.returncode != 0) or "Sanitizer" in text or \
                    "runtime error" in text:
                bad.append(f"{d.log_path}: exit {d.proc.returncode}\n{text[-3000:]}")
        return bad


def eventually(what, fn):
    end = time.monotonic() + DEADLINE
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < end, f"never: {what}"
        time.sleep(0.1)


def ok(r, status=200):
    assert r.status_code == status, (r.status_code, r.text)
    return r.json() if r.content else None


def oid(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


def send(c, url, payload):
    """POST (None: POST-as-GET), once more after a badNonce (a nonce of a
    node that is gone): the answer carries a fresh nonce."""
    for _ in range(3):
        r = c.post(url, payload)
        if not (r.status_code == 400 and r.json().get("type") == ERR + "badNonce"):
            return r
    return r


def cluster_env(tmp_path, n):
    responder = Responder()
    with acme_util.challtestsrv(tmp_path, serve=False) as srv:
        cl = Cluster(tmp_path, responder.port, srv["dns"], n)
        try:
            cl.start_all()
            yield cl, responder
            cl.check_alive()
        finally:
            bad = cl.close()
            responder.close()
    assert not bad, "\n".join(bad)


@pytest.fixture
def env(tmp_path):
    """(cluster, responder), all stopped afterwards; a node that exited
    badly (or with a sanitizer report) fails the test."""
    yield from cluster_env(tmp_path, 3)


@pytest.fixture
def env4(tmp_path):
    """The same with four nodes."""
    yield from cluster_env(tmp_path, 4)


def new_order(cl, c, responder, name):
    """An order for name on c's node: (order, its URL, authz URL, the
    http-01 challenge, key authorization registered with the responder)."""
    r = send(c, c.url("newOrder"), {"identifiers": [{"type": "dns", "value": name}]})
    order, loc = ok(r, 201), r.headers["Location"]
    az_url = order["authorizations"][0]
    az = ok(send(c, az_url, None))
    ch = [x for x in az["challenges"] if x["type"] == "http-01"][0]
    responder.answers[ch["token"]] = ch["token"] + "." + c.key.thumbprint()
    return order, loc, az_url, ch


def poll(c, url, want):
    def get():
        doc = ok(send(c, url, None))
        assert doc["status"] in ("pending", "processing", "ready", want), doc
        return doc if doc["status"] == want else None
    return eventually(f"{url} {want}", get)


def csr_for(name):
    key = ec.generate_private_key(ec.SECP256R1())
    der = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    return b64u(der)


def verify_chain(cl, pem, name, tmp):
    path = tmp / f"{name}.pem"
    path.write_bytes(pem)
    r = subprocess.run(["openssl", "verify", "-CAfile", str(cl.ca_dir / "ca.pem"), str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cert = x509.load_pem_x509_certificate(pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]


def one_certificate_everywhere(cl, order_id):
    """Every running node ends up with the order's certificate, and with
    exactly one (checked again after a few gossip rounds)."""
    running = [i for i in range(cl.n) if cl.nodes[i] is not None]
    for i in running:
        eventually(f"node {i} holds the certificate", lambda i=i: cl.certs(i, order_id))
    time.sleep(3)  # several gossip intervals: a second one would have arrived
    for i in running:
        assert len(cl.certs(i, order_id)) == 1, (i, cl.certs(i, order_id))


def account(cl, node=0):
    c = cl.client(node)
    ok(c.new_account(), 201)
    for i in range(cl.n):
        eventually(f"node {i} has the account",
                   lambda i=i: cl.admin(i, "/api/admin/accounts/" + oid(c.kid)))
    return c


def validated(cl, c, responder, name, node=0):
    """An order on node, validated there; returns (order, loc) once every
    node sees it ready."""
    order, loc, az_url, ch = new_order(cl, c, responder, name)
    ok(send(c, ch["url"], {}))
    poll(c, az_url, "valid")
    poll(c, loc, "ready")
    for i in range(cl.n):
        eventually(f"node {i} sees the order ready",
                   lambda i=i: (cl.admin(i, "/api/admin/orders/" + oid(loc)) or {})
                   .get("status") == "ready")
    return order, loc


# ---- (a) the creator dies between validation and finalize ----


def test_finalize_taken_over_when_creator_dies(env, tmp_path):
    cl, responder = env
    c = account(cl)
    name = "a.takeover.test"
    order, loc = validated(cl, c, responder, name)
    # The last validation released the order's lease (and every node sees
    # that: the release came before the order turned ready).
    lease = cl.lease(1, oid(loc))
    assert lease["owner"] == "" and lease["epoch"] == 1, lease
    cl.kill(0)

    # Node 1 forwards the finalize to the creator, which is gone; the lease
    # is free, so the order's successor (node 1 itself, or node 2 which
    # node 1 then forwards to) finalizes at once.
    cl.to(c, 1)
    r = send(c, order["finalize"], {"csr": csr_for(name)})
    done = ok(r)
    assert done["status"] == "valid", done
    log = cl.nodes[1].text()
    assert "order owner unreachable; taking the request here" in log or \
        "order owner unreachable; sending the request to its successor" in log, log
    assert f'order lease taken over order="{oid(loc)}"' not in log  # it was free
    cert = ok_cert(c, done["certificate"])
    verify_chain(cl, cert, name, tmp_path)
    eventually("node 1 sees the lease released",
               lambda: cl.lease(1, oid(loc)) == {"owner": "", "epoch": 2, "expires": 0})

    # The creator comes back and syncs: one certificate everywhere.
    cl.start(0)
    cl.wait_contact(0)
    eventually("node 0 sees the order valid",
               lambda: (cl.admin(0, "/api/admin/orders/" + oid(loc)) or {})
               .get("status") == "valid")
    one_certificate_everywhere(cl, oid(loc))


def ok_cert(c, url):
    r = send(c, url, None)
    assert r.status_code == 200, r.text
    return r.content


# ---- (b) the creator dies mid-validation ----


def test_validation_taken_over_after_lease_expiry(env, tmp_path):
    cl, responder = env
    c = account(cl)
    name = "b.takeover.test"
    order, loc, az_url, ch = new_order(cl, c, responder, name)
    responder.hold_first(ch["token"])
    ok(send(c, ch["url"], {}))
    assert responder.arrived[ch["token"]].wait(DEADLINE)  # node 0 is validating
    eventually("node 1 sees the challenge processing",
               lambda: (cl.row(1, "challenges", oid(ch["url"]))[0] or {})
               .get("status") == "processing")
    lease = cl.lease(1, oid(loc))
    assert lease["owner"] == cl.ids[0] and lease["epoch"] == 1, lease
    cl.kill(0)
    responder.hold[ch["token"]].set()

    # Reads are served from node 1's copy while the owner is gone.
    cl.to(c, 1)
    assert ok(send(c, az_url, None))["status"] == "pending"
    # A response goes to the lease holder, which is gone: 503 until the
    # lease expires, then node 1 validates again (a new epoch).
    r = send(c, ch["url"], {})
    assert r.status_code == 503, r.text
    assert r.json()["type"] == ERR + "serverInternal"
    first_wait = int(r.headers["Retry-After"])
    assert 1 <= first_wait <= 10 + 2 + 1, r.headers
    end = time.monotonic() + DEADLINE
    while r.status_code == 503:
        assert time.monotonic() < end, r.text
        time.sleep(min(int(r.headers["Retry-After"]), 2))
        r = send(c, ch["url"], {})
    assert ok(r)["status"] in ("processing", "valid")
    assert time.time() * 1000 >= lease["expires"]
    log = cl.nodes[1].text()
    assert "order owner unreachable; its lease is live" in log, log
    # The order's successor (node 1, or node 2 by way of node 1) took over;
    # poll there (a read elsewhere that has not heard of the new lease yet
    # could start a second validation, harmless but not what is counted).
    w = 2 if f'sending the request to its successor order="{oid(loc)}"' in log else 1
    cl.to(c, w)
    poll(c, az_url, "valid")
    taken = f'order lease taken over order="{oid(loc)}" epoch=2 from="{cl.ids[0]}"'
    log = cl.nodes[w].text()
    assert taken in log, log
    assert f'validation taken over challenge="{oid(ch["url"])}"' in log, log
    value, origin = eventually("node 1 holds the result",
                               lambda: (lambda v: v if (v[0] or {}).get("status") == "valid"
                                        else None)(cl.row(1, "challenges", oid(ch["url"]))))
    assert origin == cl.ids[w], (origin, w)

    # Finalize through node 2: the lease is free again, the creator gone.
    poll(c, loc, "ready")
    eventually("node 2 sees the order ready",
               lambda: (cl.admin(2, "/api/admin/orders/" + oid(loc)) or {})
               .get("status") == "ready")
    cl.to(c, 2)
    done = ok(send(c, order["finalize"], {"csr": csr_for(name)}))
    assert done["status"] == "valid", done
    verify_chain(cl, ok_cert(c, done["certificate"]), name, tmp_path)

    # The creator restarts: its lease expired, so it leaves the challenge it
    # had left "processing" alone (unless gossip already brought the result
    # before it looked), and syncs the other nodes' results.
    d = cl.start(0)
    cl.wait_contact(0)
    assert "validations resumed challenges=1 submitted=1" not in d.text(), d.text()
    eventually("node 0 sees the challenge valid",
               lambda: cl.row(0, "challenges", oid(ch["url"])) == (value, cl.ids[w]))
    one_certificate_everywhere(cl, oid(loc))
    assert responder.gets[ch["token"]] == 2  # node 0 once, the successor once


# ---- (c) a stalled owner is fenced ----


def test_stalled_owner_fenced(env):
    cl, responder = env
    c = account(cl)
    order, loc, az_url, ch = new_order(cl, c, responder, "c.takeover.test")
    chall = oid(ch["url"])
    responder.hold_first(ch["token"])
    ok(send(c, ch["url"], {}))
    assert responder.arrived[ch["token"]].wait(DEADLINE)
    eventually("node 1 sees the challenge processing",
               lambda: (cl.row(1, "challenges", chall)[0] or {}).get("status") == "processing")
    lease = cl.lease(1, oid(loc))
    assert lease["owner"] == cl.ids[0] and lease["epoch"] == 1, lease
    cl.pause(0)  # mid-validation, holding the lease with epoch 1
    try:
        # Node 1 takes over once the lease has expired: a read of the
        # authorization is enough.
        time.sleep(max(0.0, lease["expires"] / 1000 - time.time()) + 0.2)
        cl.to(c, 1)
        poll(c, az_url, "valid")
        value, origin = cl.row(1, "challenges", chall)
        assert value["status"] == "valid" and origin == cl.ids[1], (value, origin)
        assert cl.lease(1, oid(loc))["epoch"] == 2
    finally:
        cl.resume(0)
    # Node 0 wakes up with its validation still running under epoch 1: its
    # result (a timeout by now, or the answer once released) is dropped.
    assert cl.nodes[0].wait_log(
        f'stale order owner fenced order="{oid(loc)}" epoch=1 work="validation" '
        f'object="{chall}"', DEADLINE), cl.nodes[0].text()
    responder.hold[ch["token"]].set()
    for i in range(cl.n):
        eventually(f"node {i} holds node 1's result",
                   lambda i=i: cl.row(i, "challenges", chall) == (value, cl.ids[1]))
        assert (cl.row(i, "authorizations", oid(az_url))[0] or {}).get("status") == "valid"
    assert "validation result recorded challenge=\"%s\"" % chall not in cl.nodes[0].text()


# ---- (d) concurrent finalize requests on every node ----


def finalize_at_once(clients, url, csr):
    """The same finalize sent by every client at the same moment (each with
    a fresh nonce of its node); their answers, in order."""
    for cc in clients:
        cc.new_nonce()
    start = threading.Barrier(len(clients))
    answers = [None] * len(clients)

    def finalize(i):
        start.wait()
        answers[i] = clients[i].post(url, {"csr": csr})

    threads = [threading.Thread(target=finalize, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    return answers


def one_issued(cl, clients, answers, name, tmp):
    """Exactly one answer is the valid order (its chain verifies, fetched
    by the client that got it), every other one orderNotReady."""
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [403] * (len(answers) - 1), \
        [(a.status_code, a.text) for a in answers]
    for cc, a in zip(clients, answers):
        if a.status_code == 403:
            assert a.json()["type"] == ERR + "orderNotReady", a.text
        else:
            assert a.json()["status"] == "valid", a.text
            verify_chain(cl, ok_cert(cc, a.json()["certificate"]), name, tmp)


def test_concurrent_finalize_issues_once(env, tmp_path):
    cl, responder = env
    c = account(cl)
    name = "d.takeover.test"
    order, loc = validated(cl, c, responder, name)
    clients = [cl.client(i, key=c.key, kid=c.kid) for i in range(cl.n)]
    answers = finalize_at_once(clients, order["finalize"], csr_for(name))
    one_issued(cl, clients, answers, name, tmp_path)
    # Every request was handled by the order's creator.
    for i in (1, 2):
        assert f'forwarded path="/acme/order/{oid(loc)}/finalize" why="order creator"' in \
            cl.nodes[i].text()
    one_certificate_everywhere(cl, oid(loc))


def test_concurrent_takeovers_meet_on_the_successor(env, tmp_path):
    """The creator is dead and the lease free: two finalize requests for
    the order reach nodes 1 and 2 at once. Both compute the same successor
    (rendezvous hash of the order id over the live map); the other node
    forwards there, so one store transaction decides: one certificate, the
    other request orderNotReady."""
    cl, responder = env
    c = account(cl)
    name = "e.takeover.test"
    order, loc = validated(cl, c, responder, name)
    cl.kill(0)
    clients = [cl.client(i, key=c.key, kid=c.kid) for i in (1, 2)]
    answers = finalize_at_once(clients, order["finalize"], csr_for(name))
    one_issued(cl, clients, answers, name, tmp_path)
    logs = [cl.nodes[i].text() for i in (1, 2)]
    sent = [i for i, t in zip((1, 2), logs)
            if f'order owner unreachable; sending the request to its successor order="{oid(loc)}"'
            in t]
    here = [i for i, t in zip((1, 2), logs)
            if f'order owner unreachable; taking the request here order="{oid(loc)}"' in t]
    assert len(sent) == 1 and here == [3 - sent[0]], (sent, here, logs)
    one_certificate_everywhere(cl, oid(loc))


def successor_order(cl, order_id, candidates):
    """candidates sorted as akm_successor ranks them: SHA-256(order id ||
    tag), tag = base64url(SHA-256(node id)[:6])."""
    def tag(i):
        return b64u(hashlib.sha256(cl.ids[i].encode()).digest()[:6])

    def score(i):
        return int.from_bytes(hashlib.sha256((order_id + tag(i)).encode()).digest()[:8], "big")
    return sorted(candidates, key=score, reverse=True)


def test_takeover_when_the_successor_is_down_too(env4, tmp_path):
    """Four nodes; the creator and the order's first successor are killed.
    Two finalize requests reach the two survivors at once: each tries the
    creator, then the first successor, marks both down and moves on to the
    same next successor, where one request wins: one certificate."""
    cl, responder = env4
    c = account(cl)
    name = "f.takeover.test"
    order, loc = validated(cl, c, responder, name)
    ranked = successor_order(cl, oid(loc), [1, 2, 3])
    first, second, third = ranked
    cl.kill(0)
    cl.kill(first)
    clients = [cl.client(i, key=c.key, kid=c.kid) for i in (second, third)]
    answers = finalize_at_once(clients, order["finalize"], csr_for(name))
    one_issued(cl, clients, answers, name, tmp_path)
    here = f'order owner unreachable; taking the request here order="{oid(loc)}"'
    assert here in cl.nodes[second].text(), cl.nodes[second].text()
    log = cl.nodes[third].text()
    assert here not in log, log
    assert 'after="successor unreachable"' in log, log
    one_certificate_everywhere(cl, oid(loc))


# ---- a forwarded request that arrives after its sender gave up ----


def test_forwarded_request_past_deadline_refused(env):
    """A node that was stalled with a forwarded request queued must not act
    on it: its sender has answered the client already (maybe by taking the
    work over). Sent here straight to the admin listener, where the
    forwarding headers are believed."""
    cl, _ = env
    c = account(cl)
    c.route["target"] = cl.admins[0]
    c.s.headers["X-Akamu-Forwarded"] = cl.ids[1]
    c.s.headers["X-Akamu-Forward-Deadline"] = str(int(time.time() * 1000) - 60000)
    c.nonce = None
    n = c.new_nonce()
    r = c.post_as_get(c.kid, nonce=n)
    assert r.status_code == 503 and r.json()["type"] == ERR + "serverInternal", r.text
    assert cl.nodes[0].wait_log("forwarded request past its deadline; refused", 5)
    # In time: served (the nonce was not spent by the late one).
    c.s.headers["X-Akamu-Forward-Deadline"] = str(int(time.time() * 1000) + 5000)
    assert ok(c.post_as_get(c.kid, nonce=n))["status"] == "valid"
    # On the public listener the header means nothing.
    c.route["target"] = cl.ports[0]
    c.s.headers["X-Akamu-Forward-Deadline"] = "1"
    c.nonce = None
    assert ok(c.post_as_get(c.kid))["status"] == "valid"
