#!/usr/bin/python3
"""HTTP side of the ahdapa three-node cluster demo (python3 stdlib only).

run.sh starts the nodes and calls this script; it is not meant to be run by
hand. Two commands:

  demo.py evict PORT...   stop earlier demo nodes still listening on PORT
                          (an ahdapa binary whose config lies in a
                          .../ahdapa-cluster-demo.XXXXXX/ folder); any other
                          process on PORT: say which one and exit 1.
  demo.py run DIR         the demo steps against https://127.0.0.1:8080-8082,
                          DIR being the run's temporary folder (tls/ca.pem,
                          node{1,2,3}.pid and .log). Prints the statistics
                          and PASS or FAIL; exit 0 on PASS, 1 on FAIL.

Environment: DEMO_TRAFFIC_SECS (traffic window, default 35),
DEMO_BREAK=stepN (make step N fail on purpose, to test the FAIL path).
"""
import base64
import json
import os
import re
import shutil
import signal
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

INTERVAL = 2  # [gossip] interval_secs in node*.toml
CONVERGE = 15  # seconds allowed for a change to reach every node
READY = 30  # seconds allowed for a node to answer /healthz
LINE = "━" * 62
DEMO_DIR_RE = re.compile(r"^(/.+/ahdapa-cluster-demo\.[A-Za-z0-9]{6,})/node[123]\.toml$")


def out(*a):
    print(" ".join(str(x) for x in a).rstrip(), flush=True)


class Fail(Exception):
    pass


# ---------------------------------------------------------------- eviction

def listeners(port):
    """Socket inodes listening on 127.0.0.1/0.0.0.0/:: port (IPv4 and IPv6)."""
    inodes = set()
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for ln in fh:
                    p = ln.split()
                    if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(p[9])
        except OSError:
            pass
    return inodes


def socket_owners(inodes):
    """pid -> argv for the processes (of this user) holding those sockets."""
    want = {f"socket:[{i}]" for i in inodes}
    owners = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in want:
                    with open(f"/proc/{pid}/cmdline", "rb") as fh:
                        argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
                    owners[int(pid)] = argv
                    break
            except OSError:
                continue
    return owners


def running(pid):
    """pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def demo_node_dir(argv):
    """The demo folder of an earlier demo node's argv, else None."""
    if not argv or os.path.basename(argv[0]) != "ahdapa":
        return None
    for i, a in enumerate(argv):
        cfg = argv[i + 1] if a == "-c" and i + 1 < len(argv) else None
        if cfg is None and a.startswith("-c") and len(a) > 2:
            cfg = a[2:]
        if cfg:
            m = DEMO_DIR_RE.match(cfg)
            if m:
                return m.group(1)
    return None


def evict(ports):
    ok = True
    stale = set()
    for port in ports:
        inodes = listeners(port)
        if not inodes:
            continue
        owners = socket_owners(inodes)
        if not owners:
            out(f"  port {port} is in use by a process this user cannot inspect "
                f"(another user's?); stop it or free the port.")
            ok = False
            continue
        for pid, argv in owners.items():
            d = demo_node_dir(argv)
            if d is None:
                out(f"  port {port} is held by pid {pid}: {' '.join(argv)[:200]}")
                out("  that is not an earlier demo node; not touching it.")
                ok = False
                continue
            out(f"  evicting stale demo node pid {pid} on port {port} ({' '.join(argv)})")
            try:
                os.kill(pid, signal.SIGTERM)
                end = time.monotonic() + 10
                while time.monotonic() < end and running(pid):
                    time.sleep(0.1)
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            stale.add(d)
    # The folders of the stopped nodes (databases, logs, keys) go too.
    for d in sorted(stale):
        if os.path.isdir(d) and not os.path.islink(d) and os.stat(d).st_uid == os.getuid():
            shutil.rmtree(d)
            out(f"  removed the stale demo folder {d}")
    if ok:
        # Wait for the ports to be released.
        end = time.monotonic() + 5
        while time.monotonic() < end and any(listeners(p) for p in ports):
            time.sleep(0.1)
    return 0 if ok else 1


# ---------------------------------------------------------------- HTTP

class Resp:
    def __init__(self, status, body, headers):
        self.status, self.body, self.headers = status, body, headers

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise Fail(f"expected JSON, got HTTP {self.status}: {self.body[:200]!r}")

    def text(self):
        return self.body.decode(errors="replace")[:300]


class Node:
    def __init__(self, n, ctx, d):
        self.name = f"node{n}"
        self.port = 8079 + n
        self.url = f"https://127.0.0.1:{self.port}"
        self.id = f"127.0.0.1:{self.port}"
        self.ctx = ctx
        self.log = os.path.join(d, f"{self.name}.log")
        with open(os.path.join(d, f"{self.name}.pid")) as f:
            self.pid = int(f.read())

    def alive(self):
        return running(self.pid)

    def req(self, method, path, session=None, js=None, form=None, timeout=10):
        h = {}
        data = None
        if js is not None:
            data = json.dumps(js).encode()
            h["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if session:
            cookie, csrf = session
            h["Cookie"] = f"ahdapa_session={cookie}"
            if method not in ("GET", "HEAD"):
                h["X-CSRF-Token"] = csrf
        r = urllib.request.Request(self.url + path, data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(r, context=self.ctx, timeout=timeout) as f:
                return Resp(f.status, f.read(), f.headers)
        except urllib.error.HTTPError as e:
            return Resp(e.code, e.read(), e.headers)

    def login(self):
        r = self.req("POST", "/api/auth/login", js={"username": "alice", "password": "alice123"})
        if r.status != 200:
            raise Fail(f"{self.name}: login as alice: HTTP {r.status} {r.text()}")
        cookie = None
        for sc in r.headers.get_all("Set-Cookie") or []:
            m = re.match(r"\s*ahdapa_session=([^;]*)", sc)
            if m:
                cookie = m.group(1)
        if not cookie:
            raise Fail(f"{self.name}: login answered no ahdapa_session cookie")
        return cookie, r.json()["csrf_token"]

    def token(self, client, **extra):
        form = {"grant_type": "client_credentials", "client_id": client["client_id"],
                "client_secret": client["client_secret"]}
        form.update(extra)
        return self.req("POST", "/token", form=form)

    def log_tail(self, n=15):
        try:
            with open(self.log, errors="replace") as f:
                return f.read().splitlines()[-n:]
        except OSError:
            return []


def wait_for(what, fn, timeout=CONVERGE, interval=0.1):
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except (OSError, urllib.error.URLError) as e:
            last = None
            err = e
        else:
            err = None
        if last:
            return last
        if time.monotonic() >= end:
            raise Fail(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {err})" if err else ""))
        time.sleep(interval)


def jwt_claims(tok):
    p = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def banner(title):
    out()
    out(LINE)
    out(f"  {title}")
    out(LINE)


# ---------------------------------------------------------------- the demo

class Demo:
    def __init__(self, d):
        ctx = ssl.create_default_context(cafile=os.path.join(d, "tls", "ca.pem"))
        self.nodes = [Node(i, ctx, d) for i in (1, 2, 3)]
        self.admin = None
        self.brk = os.environ.get("DEMO_BREAK", "")
        self.traffic_secs = float(os.environ.get("DEMO_TRAFFIC_SECS", "35"))
        self.step = "setup"

    def broken(self, step):
        return self.brk == f"step{step}"

    def begin(self, n, title, label):
        self.step = f"step {n} ({label})"
        banner(f"Step {n} — {title}")

    def adm(self, node, method, path, js=None):
        return node.req(method, path, session=self.admin, js=js)

    def check_alive(self):
        for n in self.nodes:
            if not n.alive():
                raise Fail(f"{n.name} (pid {n.pid}) is no longer running")

    # --- setup ---------------------------------------------------------

    def ready(self):
        self.step = "setup (nodes ready)"
        out("Waiting for all nodes to be ready...")
        for n in self.nodes:
            end = time.monotonic() + READY
            while True:
                if not n.alive():
                    raise Fail(f"{n.name} exited during start-up")
                try:
                    if n.req("GET", "/healthz", timeout=2).status == 200:
                        break
                except (OSError, urllib.error.URLError):
                    pass
                if time.monotonic() >= end:
                    raise Fail(f"{n.name} did not answer /healthz within {READY}s")
                time.sleep(0.1)
            out(f"  {n.name} ready.")

    def cluster_key(self):
        self.step = "setup (cluster key)"
        out("Synchronizing cluster wrapping key across all nodes...")
        local = {n.name: n.login() for n in self.nodes}
        key = base64.b64encode(os.urandom(32)).decode()
        out(f"  generated cluster key: {key[:12]}...  (truncated)")
        ids = set()
        for n in self.nodes:
            r = n.req("PUT", "/api/admin/keys/cluster", session=local[n.name], js={"key": key})
            if r.status != 200:
                raise Fail(f"{n.name}: PUT /api/admin/keys/cluster: HTTP {r.status} {r.text()}")
            ids.add(r.json().get("key_id"))
            out(f"  {n.name}: cluster key set.")
        if len(ids) != 1:
            raise Fail(f"the nodes report different cluster key ids: {sorted(map(str, ids))}")
        session = self.nodes[0].login()
        for n in self.nodes:
            r = n.req("GET", "/api/auth/session", session=session)
            if r.status != 200:
                raise Fail(f"the node1 session is refused by {n.name}: HTTP {r.status} {r.text()}")
        self.admin = session
        out("  re-authenticated on node1 with shared key.")

    def seed(self):
        self.step = "setup (gossip key exchange)"
        out("Bootstrapping gossip KEM and signing key exchange...")
        infos = {}
        for n in self.nodes:
            r = n.req("GET", "/api/gossip/kem-info")
            if r.status != 200:
                raise Fail(f"{n.name}: GET /api/gossip/kem-info: HTTP {r.status} {r.text()}")
            infos[n.name] = r.json()
            if infos[n.name].get("node_id") != n.id:
                raise Fail(f"{n.name}: kem-info node_id {infos[n.name].get('node_id')!r}, "
                           f"expected {n.id!r}")
            out(f"  {n.name} KEM node_id: {n.id}")
        for n in self.nodes:
            for m in self.nodes:
                if m is n:
                    continue
                r = self.adm(n, "POST", "/api/admin/nodes/seed", dict(infos[m.name], url=m.url))
                if r.status != 200:
                    raise Fail(f"seed {m.name} into {n.name}: HTTP {r.status} {r.text()}")
                out(f"  seeded {m.name} keys → {n.name}")
        self.step = "setup (first gossip rounds)"
        out("  Waiting for first gossip rounds (every node exchanging with both peers)...")
        t0 = time.monotonic()
        for n in self.nodes:
            want = {m.id for m in self.nodes if m is not n}

            def first_rounds():
                r = self.adm(n, "GET", "/api/gossip/status")
                if r.status != 200:
                    raise Fail(f"{n.name}: GET /api/gossip/status: HTTP {r.status} {r.text()}")
                peers = {p["node_id"]: p for p in r.json().get("peers", [])}
                return (want <= set(peers) and
                        all(peers[i].get("pinned") and peers[i].get("last_ok") for i in want))
            wait_for(f"{n.name} to complete an exchange with both peers", first_rounds,
                     timeout=5 * INTERVAL + 5)
        out(f"  first gossip rounds done after {time.monotonic() - t0:.1f}s.")

    # --- steps ---------------------------------------------------------

    def wait_status(self, nodes, path, want, t0, what):
        """Polls path on every node until its status is `want`; prints the
        time since t0 for each node as it happens."""
        pending = list(nodes)
        end = time.monotonic() + CONVERGE
        while pending:
            for n in list(pending):
                s = self.adm(n, "GET", path).status
                if s == want:
                    out(f"  {n.name}: {what} after {time.monotonic() - t0:.1f}s")
                    pending.remove(n)
                elif s not in (200, 404):
                    raise Fail(f"{n.name}: GET {path}: HTTP {s}")
            if pending:
                if time.monotonic() >= end:
                    raise Fail(f"timed out after {CONVERGE}s on "
                               f"{', '.join(n.name for n in pending)} (waiting for: {what})")
                time.sleep(0.1)

    def create_client(self, node, body):
        r = self.adm(node, "POST", "/api/admin/clients", body)
        if r.status != 201:
            raise Fail(f"{node.name}: POST /api/admin/clients: HTTP {r.status} {r.text()}")
        return r.json()

    def step1_2(self):
        n1, n2, n3 = self.nodes
        self.begin(1, "create an OAuth2 client on node1", "create a client on node1")
        c = self.create_client(n1, {"client_name": "demo-spa", "client_type": "public",
                                    "redirect_uris": ["https://app.example/cb"]})
        t0 = time.monotonic()
        out(f"  Created client: {c['client_id']}")
        self.public_id = c["client_id"]
        self.begin(2, "wait for gossip to replicate the client to node2 and node3",
                   "CRDT convergence")
        cid = "does-not-exist" if self.broken(2) else c["client_id"]
        self.wait_status([n2, n3], f"/api/admin/clients/{cid}", 200, t0, "client appeared")
        for n in (n2, n3):
            g = self.adm(n, "GET", f"/api/admin/clients/{cid}").json()
            if g.get("client_name") != "demo-spa" or g.get("client_type") != "public":
                raise Fail(f"{n.name} holds a different client: {g}")

    def step3(self):
        n1, n2, n3 = self.nodes
        self.begin(3, "delete the client on node3; the tombstone travels back to node1",
                   "tombstone propagation")
        path = f"/api/admin/clients/{self.public_id}"
        r = self.adm(n3, "DELETE", path)
        if r.status != 204:
            raise Fail(f"node3: DELETE {path}: HTTP {r.status} {r.text()}")
        t0 = time.monotonic()
        out(f"  node3: deleted client {self.public_id}")
        if self.broken(3):
            raise Fail("DEMO_BREAK=step3: failing on purpose")
        self.wait_status([n1, n2], path, 404, t0, "deletion arrived")

    def step4(self):
        self.begin(4, "confidential client on node1; a token from every node",
                   "any-node token issuance")
        n1, n2, n3 = self.nodes
        c = self.create_client(n1, {"client_name": "demo-svc-1", "client_type": "confidential",
                                    "token_endpoint_auth_method": "client_secret_post",
                                    "scope": "read write team", "claims": {"team": "blue"}})
        t0 = time.monotonic()
        out(f"  Created confidential client: {c['client_id']} (client_secret_post)")
        self.wait_status([n2, n3], f"/api/admin/clients/{c['client_id']}", 200, t0,
                         "client appeared")
        self.conf = c
        if self.broken(4):
            c = dict(c, client_secret="wrong-" + c["client_secret"])
        self.tokens = {}
        for n in self.nodes:
            r = n.token(c)
            if r.status != 200:
                raise Fail(f"client_credentials token from {n.name}: HTTP {r.status} {r.text()}")
            t = r.json()
            if not t.get("access_token") or t.get("token_type") != "Bearer":
                raise Fail(f"{n.name} answered no Bearer access_token: {t}")
            iss = jwt_claims(t["access_token"]).get("iss")
            out(f"  {n.name}: HTTP 200, access_token {t['access_token'][:16]}... (iss {iss})")
            self.tokens[n.name] = t["access_token"]

    def step5(self):
        self.begin(5, "introspect the node1 token on node2 (and node3)",
                   "cross-node token introspection")
        tok = self.tokens["node1"]
        if self.broken(5):
            # Spoil the signature: the node must now say active: false.
            tok = tok[:-4] + ("AAAA" if tok[-4:] != "AAAA" else "BBBB")
        for n in self.nodes[1:]:
            r = n.req("POST", "/introspect", form={"token": tok,
                                                   "client_id": self.conf["client_id"],
                                                   "client_secret": self.conf["client_secret"]})
            if r.status != 200:
                raise Fail(f"{n.name} /introspect: HTTP {r.status} {r.text()}")
            j = r.json()
            if j.get("active") is not True:
                raise Fail(f"{n.name} /introspect of the node1 token: active is "
                           f"{json.dumps(j.get('active'))}, expected true")
            out(f"  {n.name} /introspect: active: true (iss {j.get('iss')}, "
                f"client_id {j.get('client_id')})")

    def step6(self):
        self.begin(6, 'cross-node session revocation (distributed_mode = "eventual")',
                   "cross-node session revocation")
        n1 = self.nodes[0]
        s = n1.login()
        out("  logged in as alice on node1 (a new session)")
        for n in self.nodes[1:]:
            r = n.req("GET", "/api/auth/session", session=s)
            if r.status != 200:
                raise Fail(f"the new node1 session is refused by {n.name} before logout: "
                           f"HTTP {r.status}")
            out(f"  {n.name}: session accepted (HTTP 200)")
        if not self.broken(6):
            r = n1.req("POST", "/api/auth/logout", session=s)
            if r.status != 200:
                raise Fail(f"node1 logout: HTTP {r.status} {r.text()}")
            out("  logged out on node1")
        else:
            out("  DEMO_BREAK=step6: not logging out")
        t0 = time.monotonic()
        pending = list(self.nodes)
        end = time.monotonic() + 3 * INTERVAL + 2
        while pending:
            for n in list(pending):
                st = n.req("GET", "/api/auth/session", session=s).status
                if st == 401:
                    out(f"  {n.name}: session refused (HTTP 401) after {time.monotonic() - t0:.1f}s")
                    pending.remove(n)
                elif st != 200:
                    raise Fail(f"{n.name} GET /api/auth/session: HTTP {st}")
            if pending:
                if time.monotonic() >= end:
                    raise Fail(f"{', '.join(n.name for n in pending)} still accept the session "
                               f"{end - t0:.0f}s after the logout on node1")
                time.sleep(0.1)
        if self.adm(self.nodes[1], "GET", "/api/auth/session").status != 200:
            raise Fail("the admin session stopped working on node2")

    def step7(self):
        self.begin(7, "define a scope on node2; it reaches node1 and node3",
                   "scope definition replication")
        n1, n2, n3 = self.nodes
        r = self.adm(n2, "POST", "/api/admin/scopes",
                     {"name": "team", "description": "the caller's team", "claims": ["team"]})
        if r.status != 201:
            raise Fail(f"node2: POST /api/admin/scopes: HTTP {r.status} {r.text()}")
        t0 = time.monotonic()
        out('  node2: created scope "team" → claims ["team"]')
        if self.broken(7):
            raise Fail("DEMO_BREAK=step7: failing on purpose")
        self.wait_status([n1, n3], "/api/admin/scopes/team", 200, t0, "scope appeared")
        for n in (n1, n3):
            cl = self.adm(n, "GET", "/api/admin/scopes/team").json().get("claims")
            if cl != ["team"]:
                raise Fail(f'{n.name} holds scope "team" with claims {cl}, expected ["team"]')
        r = n3.token(self.conf, scope="team")
        if r.status != 200:
            raise Fail(f"node3 token with scope=team: HTTP {r.status} {r.text()}")
        cl = jwt_claims(r.json()["access_token"])
        if cl.get("team") != "blue":
            raise Fail(f'the node3 token for scope=team lacks team="blue": {cl}')
        out('  node3: token for scope=team carries the claim team="blue"')

    def gossip_totals(self):
        t = {}
        for n in self.nodes:
            r = self.adm(n, "GET", "/api/gossip/status")
            if r.status != 200:
                raise Fail(f"{n.name}: GET /api/gossip/status: HTTP {r.status} {r.text()}")
            t[n.name] = r.json()["totals"]
        return t

    def step8(self):
        secs = self.traffic_secs
        self.begin(8, f"sustained multi-client traffic ({secs:g} s, all nodes in rotation)",
                   "sustained multi-client traffic")
        n1, n2, n3 = self.nodes
        clients = [("demo-svc-1", n1, self.conf)]
        for i, n in ((2, n2), (3, n3)):
            c = self.create_client(n, {"client_name": f"demo-svc-{i}",
                                       "client_type": "confidential",
                                       "token_endpoint_auth_method": "client_secret_post",
                                       "scope": "read write"})
            out(f"  {n.name}: created confidential client demo-svc-{i} ({c['client_id']})")
            clients.append((f"demo-svc-{i}", n, c))
        t0 = time.monotonic()
        for name, home, c in clients[1:]:
            self.wait_status([m for m in self.nodes if m is not home],
                             f"/api/admin/clients/{c['client_id']}", 200, t0,
                             f"{name} appeared")
        before = self.gossip_totals()
        out(f"  running {secs:g} s of token traffic: each batch sends one request per client, "
            f"rotating the node...")
        by_node = {n.name: [0, 0, 0.0] for n in self.nodes}  # requests, ok, seconds
        by_client = {name: [0, 0] for name, _, _ in clients}
        errors = []
        start = time.monotonic()
        batches = 0
        while time.monotonic() - start < secs:
            for i, (name, _, c) in enumerate(clients):
                n = self.nodes[(batches + i) % 3]
                if self.broken(8) and i == 0:
                    c = dict(c, client_secret="wrong")
                t = time.monotonic()
                try:
                    r = n.token(c)
                    ok = r.status == 200 and bool(r.json().get("access_token"))
                    why = f"HTTP {r.status}"
                except (OSError, urllib.error.URLError, Fail) as e:
                    ok, why = False, str(e)
                dt = time.monotonic() - t
                bn = by_node[n.name]
                bn[0] += 1
                bn[1] += ok
                bn[2] += dt
                by_client[name][0] += 1
                by_client[name][1] += ok
                if not ok and len(errors) < 3:
                    errors.append(f"{name} on {n.name}: {why}")
            batches += 1
            nxt = start + batches * 1.0
            time.sleep(max(0.0, min(nxt, start + secs) - time.monotonic()))
        window = time.monotonic() - start
        after = self.gossip_totals()
        self.check_alive()
        self.print_stats(window, batches, clients, by_node, by_client, before, after)
        total = sum(v[0] for v in by_node.values())
        good = sum(v[1] for v in by_node.values())
        if good != total:
            raise Fail(f"{total - good}/{total} token requests failed (e.g. {'; '.join(errors)})")

    def print_stats(self, window, batches, clients, by_node, by_client, before, after):
        banner(f"Statistics — {window:.0f}s window, {batches} batches × {len(clients)} clients")
        out()
        out("  Token endpoint (by node):")
        out(f"  {'Node':<8}  {'Requests':>8}  {'Success':<9}  {'Avg latency':>11}")
        out(f"  {'─' * 8}  {'─' * 8}  {'─' * 9}  {'─' * 11}")
        tr = tk = 0
        for n in self.nodes:
            req, ok, sec = by_node[n.name]
            tr, tk = tr + req, tk + ok
            avg = f"{sec / req * 1000:.1f}ms" if req else "—"
            out(f"  {n.name:<8}  {req:>8}  {f'{ok}/{req}':<9}  {avg:>11}")
        out(f"  {'total':<8}  {tr:>8}  {f'{tk}/{tr}':<9}")
        out()
        out("  Token endpoint (by client):")
        out(f"  {'Client':<10}  {'Created on':<10}  {'Requests':>8}  {'Success':<9}")
        out(f"  {'─' * 10}  {'─' * 10}  {'─' * 8}  {'─' * 9}")
        for name, home, _ in clients:
            req, ok = by_client[name]
            out(f"  {name:<10}  {home.name:<10}  {req:>8}  {f'{ok}/{req}':<9}")
        out()
        out("  Gossip (outbound pushes, traffic window only):")
        out(f"  {'Node':<8}  {'Pushes':>6}  {'Total bytes':>11}  {'Avg/push':>8}  {'Skips':>5}")
        out(f"  {'─' * 8}  {'─' * 6}  {'─' * 11}  {'─' * 8}  {'─' * 5}")
        tp = tb = ts = 0
        for n in self.nodes:
            b, a = before[n.name], after[n.name]
            # Every outbound exchange (eager push, periodic round, continuation)
            # pushes what the peer lacks: "exchanges" counts them all.
            p = a["exchanges"] - b["exchanges"]
            by = a["bytes_out"] - b["bytes_out"]
            s = a["skips"] - b["skips"]
            tp, tb, ts = tp + p, tb + by, ts + s
            avg = f"{by // p}" if p else "—"
            out(f"  {n.name:<8}  {p:>6}  {by:>11}  {avg:>8}  {s:>5}")
        out(f"  {'total':<8}  {tp:>6}  {tb:>11}  {'—':>8}  {ts:>5}")
        out()
        att = tp + ts
        pct = round(100 * ts / att) if att else 0
        out(f"  Generation-skip rate: {ts}/{att} push attempts skipped ({pct}%)")
        if att and 100 * ts >= 50 * att:
            out("  cluster converged — majority of gossip rounds were no-ops")
        else:
            out("  cluster still exchanging — most gossip rounds carried or checked data"
                " (under half were skipped)")

    def run(self):
        self.ready()
        self.cluster_key()
        self.seed()
        self.step1_2()
        self.step3()
        self.step4()
        self.step5()
        self.step6()
        self.step7()
        self.step8()


def run(d):
    demo = Demo(d)
    try:
        demo.run()
    except KeyboardInterrupt:
        out()
        out(f"  interrupted during {demo.step}.")
        return 130
    except (Fail, OSError, urllib.error.URLError, KeyError, ValueError) as e:
        msg = str(e) if isinstance(e, Fail) else f"{type(e).__name__}: {e}"
        dead = [n for n in demo.nodes if not n.alive()]
        for n in (dead or demo.nodes):
            out()
            out(f"  last lines of {n.name}'s log{' (the process has exited)' if n in dead else ''}:")
            for ln in n.log_tail(6 if not dead else 25):
                out(f"    {ln}")
        if demo.brk:
            msg += f" [DEMO_BREAK={demo.brk} is set]"
        banner(f"FAIL — {demo.step}: {msg}")
        return 1
    banner("PASS — all cluster demo steps succeeded.")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "evict":
        return evict([int(p) for p in argv[2:]])
    if len(argv) == 3 and argv[1] == "run":
        return run(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
