#!/usr/bin/python3
"""The akamu ACME cluster demo (python3 standard library only).

run.sh prepares the run's temporary folder and calls this script; it is not
meant to be run by hand. Two commands:

  demo.py evict PORT...   stop processes of earlier demo runs still holding
                          PORT (akamu, nginx, pebble-challtestsrv, lego or
                          certbot whose working directory or command line
                          lies in a .../akamu-acme-cluster-demo.XXXXXX/
                          folder); any other process on PORT: say which one
                          and exit 1.
  demo.py run DIR BIN     the demo in DIR (the run's temporary folder, made
                          by run.sh: tls/, admin.token, node{1..4}/akamu.toml,
                          nginx.conf) with the akamu binary BIN. Starts and
                          stops every process, prints the statistics and
                          PASS or FAIL; exit 0 on PASS, 1 on FAIL.

Environment: DEMO_KEEP_GOING=1 (run the later steps after a failure too),
DEMO_SEED_KEYS=0|1 (hand-seed the gossip keys; default 0: the nodes admit
each other by their CA-certified keys; 1 for comparison, see
seed_gossip_keys_by_hand), DEMO_BALANCE=sticky (diagnosis only: nginx sends
every request to one node), DEMO_BREAK=stepN (make step N fail on purpose),
DEMO_KILL_AFTER (seconds between lego's newOrder and the kill -9 in step 6a,
default 1), DEMO_VALIDATION_DELAY (how long step 6b's http-01 server holds its
answer, default 3),
DEMO_DOWN_SECS (how long the killed node stays down, default 4), DEMO_KEEP_TMP=1
(run.sh keeps the run's folder).
"""
import base64
import calendar
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# ---------------------------------------------------------------- constants
# The ports are also in run.sh (PORTS), node*.toml and nginx.conf.
LB_PORT = 14443  # nginx
ACME_PORTS = {n: 14000 + n for n in (1, 2, 3, 4)}  # public ACME listeners
ADMIN_PORTS = {n: 18080 + n for n in (1, 2, 3, 4)}  # admin API + gossip
HTTP01_PORT = 15080  # certbot --standalone / lego --http answer here
DNS_PORT = 15053  # pebble-challtestsrv DNS (every name -> 127.0.0.1)
MGMT_PORT = 15055  # pebble-challtestsrv management API (dns-01 TXT records)
INTERVAL = 2  # [gossip] interval_secs in node*.toml
OWNERSHIP_TTL = 10  # [gossip] ownership_ttl_secs in node*.toml
DOMAIN = "acme-cluster.test"

CONVERGE = 15  # seconds allowed for a change to reach every node
READY = 30  # seconds allowed for a process to answer
FIRST_CONTACT = 5 * INTERVAL + 10  # seconds allowed for the first-contact lines
CLIENT_TIMEOUT = 150  # seconds for one certbot/lego run (validation included)
# Step 6b: seconds for lego to finish after its validating node was killed
# (the node is down DEMO_DOWN_SECS; a takeover waits ownership_ttl_secs = 10).
TAKEOVER_DEADLINE = 60
LB_URL = f"https://127.0.0.1:{LB_PORT}"
DIRECTORY = LB_URL + "/acme/directory"
LINE = "━" * 62
DEMO_DIR_RE = re.compile(r"(/\S*/akamu-acme-cluster-demo\.[A-Za-z0-9]{6,})(?=/|\s|$)")
FIRST_CONTACT_RE = re.compile(r'gossip: first-contact merge complete peer="([^"]*)"(.*)$')


def out(*a):
    print(" ".join(str(x) for x in a).rstrip(), flush=True)


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def banner(title):
    out()
    out(LINE)
    out(f"  {title}")
    out(LINE)


# ---------------------------------------------------------------- eviction

def listeners(port):
    """Socket inodes listening on port: TCP LISTEN and bound UDP, v4 and v6."""
    inodes = set()
    for f, state in (("/proc/net/tcp", "0A"), ("/proc/net/tcp6", "0A"),
                     ("/proc/net/udp", "07"), ("/proc/net/udp6", "07")):
        try:
            with open(f) as fh:
                next(fh)
                for ln in fh:
                    p = ln.split()
                    if p[3] == state and int(p[1].rsplit(":", 1)[1], 16) == port:
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


def demo_dir_of(pid, argv):
    """The demo folder of a process of an earlier run, else None. Ours are:
    akamu, nginx (master and workers), pebble-challtestsrv, lego, and
    certbot (a python3 running .../certbot), started by demo.py with the demo
    folder as working directory; the folder is taken from the working
    directory, else from the command line."""
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe")).split(" ")[0]
    except OSError:
        return None
    ours = exe in ("akamu", "nginx", "pebble-challtestsrv", "lego") or (
        exe.startswith("python3") and any(os.path.basename(a) == "certbot" for a in argv[1:2]))
    if not ours:
        return None
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    texts = [cwd] + argv
    if exe == "nginx":
        # A worker's command line is "nginx: worker process": its master's says.
        texts += cmdline(parent_of(pid))
    for text in texts:
        m = DEMO_DIR_RE.search(text)
        if m:
            return m.group(1)
    return None


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("PPid:"):
                    return int(ln.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


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
            if not running(pid):
                continue  # e.g. an nginx worker that left with its master
            d = demo_dir_of(pid, argv)
            if d is None:
                out(f"  port {port} is held by pid {pid}: {' '.join(argv)[:200]}")
                out("  that is not a process of an earlier demo run; not touching it.")
                ok = False
                continue
            out(f"  evicting pid {pid} of an earlier demo run on port {port} "
                f"({' '.join(argv)[:160]})")
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
    for d in sorted(stale):
        if os.path.isdir(d) and not os.path.islink(d) and os.stat(d).st_uid == os.getuid():
            shutil.rmtree(d)
            out(f"  removed the stale demo folder {d}")
    if ok:
        end = time.monotonic() + 5
        while time.monotonic() < end and any(listeners(p) for p in ports):
            time.sleep(0.1)
    return 0 if ok else 1


# ---------------------------------------------------------------- processes

class Procs:
    """Every process the demo starts: working directory = the demo folder,
    "pid name" appended to DIR/pids (run.sh's safety net)."""

    def __init__(self, d):
        self.d = d
        self.live = []  # (name, Popen)

    def start(self, name, argv, log, env=None):
        with open(log, "ab") as f:
            p = subprocess.Popen(argv, cwd=self.d, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, env=env)
        with open(os.path.join(self.d, "pids"), "a") as f:
            f.write(f"{p.pid} {name}\n")
        self.live.append((name, p))
        return p

    @staticmethod
    def stop(p, grace=10):
        if p.poll() is not None:
            return p.returncode
        p.terminate()
        try:
            return p.wait(grace)
        except subprocess.TimeoutExpired:
            out(f"  pid {p.pid} ignored SIGTERM for {grace} s; killing it.")
            p.kill()
            return p.wait()

    def stop_all(self):
        for name, p in reversed(self.live):
            if p.poll() is None:
                p.terminate()
        end = time.monotonic() + 10
        for name, p in reversed(self.live):
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                out(f"  {name} (pid {p.pid}) ignored SIGTERM for 10 s; killing it.")
                p.kill()
                p.wait()
        self.live = []


# ---------------------------------------------------------------- HTTP

def http(method, url, body=None, headers=None, ctx=None, timeout=10):
    """(status, body bytes); raises OSError/URLError when there is no answer."""
    h = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    r = urllib.request.Request(url, data=body, headers=h, method=method)
    try:
        with urllib.request.urlopen(r, context=ctx, timeout=timeout) as f:
            return f.status, f.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what, fn, timeout=CONVERGE, interval=0.1):
    """Calls fn until it returns a true value (returned); Fail at the deadline."""
    end = time.monotonic() + timeout
    err = None
    while True:
        try:
            v = fn()
            err = None
        except (OSError, urllib.error.URLError) as e:
            v, err = None, e
        if v:
            return v
        if time.monotonic() >= end:
            raise Fail(f"timed out after {timeout:g}s waiting for {what}"
                       + (f" (last error: {err})" if err else ""))
        time.sleep(interval)


# ---------------------------------------------------------------- openssl

def openssl(*args, data=None):
    p = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def serial_of(pem):
    rc, o, e = openssl("x509", "-in", pem, "-noout", "-serial")
    if rc != 0:
        raise Fail(f"openssl x509 -serial {pem}: {e.strip()}")
    return o.strip().split("=", 1)[1].lower()


def san_names(pem):
    rc, o, e = openssl("x509", "-in", pem, "-noout", "-ext", "subjectAltName")
    if rc != 0:
        raise Fail(f"openssl x509 -ext subjectAltName {pem}: {e.strip()}")
    names = set()
    for part in o.split("\n", 1)[-1].replace("\n", ",").split(","):
        part = part.strip()
        if part.startswith("DNS:"):
            names.add(part[4:])
        elif part.startswith("IP Address:"):
            names.add(part[11:])
    return names


def check_chain(ca, pem, names):
    """openssl verify of the leaf against the cluster CA, and its names."""
    if not os.path.isfile(pem):
        raise Fail(f"the client reported success but wrote no {pem}")
    rc, o, e = openssl("verify", "-purpose", "sslserver", "-CAfile", ca, pem)
    if rc != 0 or not o.strip().endswith(": OK"):
        raise Fail(f"openssl verify -CAfile {ca} {pem}: {(o + e).strip()}")
    got = san_names(pem)
    if got != set(names):
        raise Fail(f"{pem} names {sorted(got)}, expected {sorted(names)}")
    return serial_of(pem)


# ---------------------------------------------------------------- nginx log

ACCESS_RE = re.compile(r'^(\S+) (\d{3}) "(\S+) (\S*)" up="([^"]*)" upstatus="([^"]*)" rt=(\S+)$')


class Access:
    """One line of nginx's access log (nginx.conf, log_format acme)."""

    def __init__(self, m, names):
        self.t = float(m.group(1))
        self.status = int(m.group(2))
        self.method, self.uri = m.group(3), m.group(4)
        ups = [u.strip() for u in re.split(r"[,:] (?=\S)", m.group(5)) if u.strip()]
        # "127.0.0.1:14002, 127.0.0.1:14003": nginx tried node2, then node3.
        self.tried = [names.get(u, u) for u in ups]
        self.upstatus = [s.strip() for s in re.split(r"[,:] ", m.group(6)) if s.strip()]
        self.node = self.tried[-1] if self.tried else "-"
        self.rt = float(m.group(7)) if m.group(7) != "-" else 0.0
        self.fwd = None  # (node, why) when self.node forwarded it (Demo.annotate)

    def short(self):
        path = re.sub(r"(/acme/[a-z-]+/)([A-Za-z0-9_-]{12,})",
                      lambda m: m.group(1) + m.group(2)[:8] + "…", self.uri)
        tried = " → ".join(self.tried) if len(self.tried) > 1 else self.node
        if self.fwd:
            tried += f" ⇒ {self.fwd[0]} ({self.fwd[1]})"
        return f"{self.status} {self.method:<4} {path:<40} {tried}"


class Balancer:
    def __init__(self, d):
        self.log = os.path.join(d, "nginx", "access.log")
        self.names = {f"127.0.0.1:{p}": f"node{n}" for n, p in ACME_PORTS.items()}

    def mark(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def since(self, mark=0):
        try:
            with open(self.log, "rb") as f:
                f.seek(mark)
                data = f.read().decode(errors="replace")
        except OSError:
            return []
        res = []
        for ln in data.splitlines():
            m = ACCESS_RE.match(ln)
            if m:
                res.append(Access(m, self.names))
        return res


# ---------------------------------------------------------------- http-01

class SlowChallengeServer:
    """Step 6b's http-01 responder on :HTTP01_PORT, in this process: serves
    webroot/.well-known/acme-challenge/<token> (lego --http.webroot writes
    the file) after holding each answer `delay` seconds, so a validation is
    in flight long enough to kill the node making it."""

    def __init__(self, webroot, delay):
        self.webroot, self.delay = webroot, delay
        self.hits = []  # wall times of the validation requests
        self.httpd = None
        os.makedirs(os.path.join(webroot, ".well-known", "acme-challenge"), exist_ok=True)

    def start(self):
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                token = path[len("/.well-known/acme-challenge/"):]
                if not path.startswith("/.well-known/acme-challenge/") or "/" in token:
                    self.send_error(404)
                    return
                srv.hits.append(time.time())
                time.sleep(srv.delay)
                try:
                    with open(os.path.join(srv.webroot, ".well-known", "acme-challenge",
                                           token), "rb") as f:
                        body = f.read()
                except OSError:
                    self.send_error(404)
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the validating node was killed meanwhile

            def log_message(self, *a):
                pass

        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", HTTP01_PORT), Handler)
        except OSError as e:
            raise Fail(f"cannot listen on 127.0.0.1:{HTTP01_PORT} for the http-01 answers: {e}")
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


# ---------------------------------------------------------------- nodes

class Node:
    def __init__(self, n, demo):
        self.n = n
        self.name = f"node{n}"
        self.demo = demo
        self.dir = os.path.join(demo.d, self.name)
        self.cfg = os.path.join(self.dir, "akamu.toml")
        self.log = os.path.join(self.dir, "akamu.log")
        self.acme_url = f"https://127.0.0.1:{ACME_PORTS[n]}"
        self.admin_url = f"http://127.0.0.1:{ADMIN_PORTS[n]}"
        self.node_id = f"127.0.0.1:{ADMIN_PORTS[n]}"
        self.proc = None
        self.started = 0.0
        self.log_mark = 0  # log offset at the latest start

    def start(self):
        try:
            self.log_mark = os.path.getsize(self.log)
        except OSError:
            self.log_mark = 0
        env = dict(os.environ)
        # Problem documents are logged at debug level: the failure reports
        # quote them ("DEBUG acme: problem path=... type=... detail=...").
        env.setdefault("AKAMU_LOG_LEVEL", "debug")
        self.started_wall = time.time()
        self.proc = self.demo.procs.start(self.name, [self.demo.bin, "-c", self.cfg], self.log, env)
        self.started = time.monotonic()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_lines(self, since_start=True):
        try:
            with open(self.log, "rb") as f:
                if since_start:
                    f.seek(self.log_mark)
                return f.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, n=15):
        return self.log_lines(False)[-n:]

    def ready(self):
        """Both listeners answer /healthz."""
        def ok():
            if not self.alive():
                raise Fail(f"{self.name} exited during start-up (status {self.proc.returncode})")
            s1, _ = http("GET", self.acme_url + "/healthz", ctx=self.demo.tls, timeout=2)
            s2, _ = http("GET", self.admin_url + "/healthz", timeout=2)
            return s1 == 200 and s2 == 200
        wait_for(f"{self.name} to answer /healthz on :{ACME_PORTS[self.n]} and "
                 f":{ADMIN_PORTS[self.n]}", ok, timeout=READY)

    def raw_first_contacts(self):
        """peer URL -> the first-contact log line since the latest start."""
        res = {}
        for ln in self.log_lines():
            m = FIRST_CONTACT_RE.search(ln)
            if m and m.group(1) not in res:
                res[m.group(1)] = ln
        return res

    def first_contacts(self):
        """The same without the timestamp: "INFO gossip: first-contact ..."."""
        return {u: ln[ln.index("INFO"):] if "INFO" in ln else ln
                for u, ln in self.raw_first_contacts().items()}

    def admin(self, path):
        s, b = http("GET", self.admin_url + path,
                    headers={"Authorization": f"Bearer {self.demo.token}"})
        return s, b

    def gossip_totals(self):
        s, b = http("GET", self.admin_url + "/api/gossip/status")
        if s != 200:
            raise Fail(f"{self.name}: GET /api/gossip/status: HTTP {s}")
        return json.loads(b)["totals"]

    def crl_serials(self):
        """The serials (lower-case hex) in this node's CRL, fetched from its
        own public listener; the CRL must verify against the cluster CA."""
        s, der = http("GET", self.acme_url + "/acme/crl", ctx=self.demo.tls)
        if s != 200:
            raise Fail(f"{self.name}: GET /acme/crl: HTTP {s}")
        p = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-text", "-CAfile",
                            self.demo.cluster_ca], input=der, capture_output=True, timeout=30)
        txt = (p.stdout + p.stderr).decode(errors="replace")
        if p.returncode != 0 or "verify OK" not in txt:
            raise Fail(f"{self.name}: its CRL does not verify against the cluster CA: {txt[:300]}")
        return {m.lower().lstrip("0") for m in re.findall(r"Serial Number: ([0-9A-Fa-f]+)", txt)}

    def revocation(self, serial):
        """The revocation GET /api/admin/certificates/{serial} shows, else None."""
        s, b = self.admin(f"/api/admin/certificates/{serial}")
        return json.loads(b).get("revocation") if s == 200 else None

    def problems(self, t0):
        """The problem documents this node logged (debug) since wall time t0."""
        res = []
        for ln in self.log_lines(False):
            if " acme: problem " not in ln:
                continue
            ts = log_time(ln)
            if ts is None or ts >= t0 - 0.5:
                res.append(ln[ln.index("acme: problem ") + len("acme: problem "):])
        return res


def node_tag(node_id):
    """The tag that starts the nonces and object ids a node makes
    (daemons/akamu/nonce.h): base64url of SHA-256(node id)[0..6)."""
    return base64.urlsafe_b64encode(hashlib.sha256(node_id.encode()).digest()[:6]).decode()


def log_time(ln):
    """Wall time of a log line's ISO timestamp prefix, else None."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z ", ln)
    if not m:
        return None
    t = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return t + float(m.group(2) or 0)


# ---------------------------------------------------------------- the demo

class Demo:
    def __init__(self, d, binary):
        self.d = d
        self.bin = binary
        self.procs = Procs(d)
        self.tls = ssl.create_default_context(cafile=os.path.join(d, "tls", "ca.pem"))
        self.tls_ca = os.path.join(d, "tls", "ca.pem")
        with open(os.path.join(d, "admin.token")) as f:
            self.token = f.read().strip()
        self.nodes = [Node(n, self) for n in (1, 2, 3)]
        self.node4 = Node(4, self)
        self.cluster_ca = os.path.join(d, "node1", "ca.pem")
        self.lb = Balancer(d)
        self.nginx = None
        self.challtestsrv = None
        self.brk = os.environ.get("DEMO_BREAK", "")
        self.keep_going = os.environ.get("DEMO_KEEP_GOING", "0") == "1"
        self.seed_keys = os.environ.get("DEMO_SEED_KEYS", "0") != "0"
        self.sticky = os.environ.get("DEMO_BALANCE", "round-robin") == "sticky"
        self.down_secs = float(os.environ.get("DEMO_DOWN_SECS", "4"))
        self.kill_after = float(os.environ.get("DEMO_KILL_AFTER", "1"))
        self.validation_delay = float(os.environ.get("DEMO_VALIDATION_DELAY", "3"))
        self.step = "setup"
        self.results = []  # (step label, "ok"|"FAIL"|"skipped", detail)
        self.certs = {}  # client label -> (pem path, serial, name)
        self.convergence = []  # (what, seconds, detail)
        self.restarts = {}  # node name -> count
        self.revoked = None  # serial revoked in step 5

    def all_nodes(self):
        return self.nodes + ([self.node4] if self.node4.proc else [])

    def node(self, name):
        return {n.name: n for n in self.nodes + [self.node4]}[name]

    # --- setup (steps 1-3) ---------------------------------------------

    def start_challtestsrv(self):
        out("Starting pebble-challtestsrv (validation DNS: every name → 127.0.0.1)...")
        self.challtestsrv = self.procs.start(
            "pebble-challtestsrv",
            ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", f"127.0.0.1:{DNS_PORT}", "-http01", "", "-https01", "", "-tlsalpn01", "",
             "-management", f"127.0.0.1:{MGMT_PORT}"],
            os.path.join(self.d, "challtestsrv.log"))

        def up():
            if self.challtestsrv.poll() is not None:
                raise Fail("pebble-challtestsrv exited: "
                           + tail(os.path.join(self.d, "challtestsrv.log")))
            return http("POST", f"http://127.0.0.1:{MGMT_PORT}/clear-txt",
                        body={"host": "ready.test."}, timeout=2)[0] == 200
        wait_for("pebble-challtestsrv's management API", up, timeout=READY)
        out(f"  DNS 127.0.0.1:{DNS_PORT}, management API http://127.0.0.1:{MGMT_PORT}")

    def ca_line(self, node):
        for ln in node.log_lines():
            m = re.search(r'akamu: certificate authority .*state="(\w+)" sha256="([0-9a-fA-F:]+)"',
                          ln)
            if m:
                return m.group(1), m.group(2)
        return None

    def copy_ca(self, node):
        for f in ("ca.key", "ca.pem"):
            shutil.copy2(os.path.join(self.d, "node1", f), os.path.join(node.dir, f))
        os.chmod(os.path.join(node.dir, "ca.key"), 0o600)

    def step1_2(self):
        self.begin(1, "PKI and validation DNS", "setup: PKI and DNS")
        out(f"  TLS (balancer and nodes): {self.tls_ca} (made by run.sh)")
        self.start_challtestsrv()

        self.begin(2, "three akamu nodes, one CA, gossip first contact",
                   "setup: three nodes")
        n1 = self.nodes[0]
        out(f"Starting node1 (ACME :{ACME_PORTS[1]}, admin :{ADMIN_PORTS[1]}); "
            "it generates the cluster CA...")
        n1.start()
        n1.ready()
        ca = self.ca_line(n1)
        if ca is None or ca[0] != "generated":
            raise Fail(f"node1 did not log 'certificate authority ... state=\"generated\"': {ca}")
        out(f"  node1: CA generated, sha256 {ca[1][:23]}…")
        for n in self.nodes[1:]:
            self.copy_ca(n)
        out("  copied node1's ca.key and ca.pem to node2 and node3 (the spec's prerequisites)")
        for n in self.nodes[1:]:
            out(f"Starting {n.name} (ACME :{ACME_PORTS[n.n]}, admin :{ADMIN_PORTS[n.n]})...")
            n.start()
        for n in self.nodes[1:]:
            n.ready()
            got = self.ca_line(n)
            if got != ("loaded", ca[1]):
                raise Fail(f"{n.name}: expected the copied CA (state loaded, sha256 {ca[1]}), "
                           f"its log says {got}")
            out(f"  {n.name}: CA loaded, same sha256")
        if self.seed_keys:
            self.seed_gossip_keys_by_hand(self.nodes, self.nodes)
        else:
            out("  no seeding (DEMO_SEED_KEYS=0): peers must admit each other by the CA "
                "certification of their gossip keys")
        self.wait_first_contacts(self.nodes, {n.name: [m for m in self.nodes if m is not n]
                                              for n in self.nodes})
        self.show_trust(self.nodes)
        last = self.nodes[-1]
        secs = max(self.first_contact_secs(n, [m for m in self.nodes if m is not n],
                                           since=last.started_wall) for n in self.nodes)
        self.convergence.append(("three nodes: every first-contact line", secs,
                                 f"after {last.name} started"
                                 + (", seeding included" if self.seed_keys else "")))
        self.maybe_break(2)

    # ------------------------------------------------------------------
    # TRUST BOOTSTRAP BY HAND — off by default. The nodes admit each other
    # by CA-certified gossip keys (docs/replication.md §9), as the spec's
    # "Adding a Node" steps imply; DEMO_SEED_KEYS=1 seeds by hand as well,
    # for comparison. The first-contact waits are the same either way.
    # ------------------------------------------------------------------
    def seed_gossip_keys_by_hand(self, targets, sources):
        """GET each source's /api/gossip/kem-info and POST it to every other
        target's /api/admin/nodes/seed (admin listeners), as
        tests/integration/test_akamu_gossip.py does."""
        out("  [trust by hand: DEMO_SEED_KEYS=1] seeding gossip keys through the admin "
            "listeners...")
        infos = {}
        for m in sources:
            s, b = http("GET", m.admin_url + "/api/gossip/kem-info")
            if s != 200:
                raise Fail(f"{m.name}: GET /api/gossip/kem-info: HTTP {s} {b[:200]!r}")
            infos[m.name] = dict(json.loads(b), url=m.admin_url)
        for n in targets:
            for m in sources:
                if m is n:
                    continue
                s, b = http("POST", n.admin_url + "/api/admin/nodes/seed", body=infos[m.name])
                if s != 200:
                    raise Fail(f"seed {m.name}'s keys into {n.name}: HTTP {s} {b[:200]!r}")
        pairs = sum(1 for n in targets for m in sources if m is not n)
        out(f"  seeded {pairs} key pairs ({', '.join(sorted({m.name for m in sources}))} → "
            f"{', '.join(sorted({n.name for n in targets}))})")

    def show_trust(self, nodes):
        """Without seeding: the nodes' own trust lines (CA certification)."""
        if self.seed_keys:
            return
        for n in nodes:
            for ln in [x for x in n.log_lines() if "INFO gossip:" in x and "certified" in x][:4]:
                out(f"  {n.name}: {ln[ln.index('INFO'):]}")

    def wait_first_contacts(self, nodes, want):
        """Waits until every node in `nodes` logged the spec's first-contact
        line for each peer in want[node.name] (since its latest start)."""
        out("  waiting for the spec's first-contact lines...")
        for n in nodes:
            urls = [m.admin_url for m in want[n.name]]

            def seen():
                if not n.alive():
                    raise Fail(f"{n.name} exited (status {n.proc.returncode})")
                fc = n.first_contacts()
                return all(u in fc for u in urls) and fc
            try:
                fc = wait_for(f"{n.name}'s first-contact lines with {', '.join(urls)}", seen,
                              timeout=FIRST_CONTACT)
            except Fail:
                hints = [ln for ln in n.log_lines() if "gossip" in ln and
                         ("WARN" in ln or "ERROR" in ln)][-3:]
                for h in hints:
                    out(f"    {n.name}: {h}")
                raise
            for u in urls:
                out(f"  {n.name}: {fc[u]}")

    def start_nginx(self):
        self.begin(3, "nginx: round-robin TLS load balancer on :14443",
                   "setup: the balancer")
        self.write_upstream(self.nodes)
        conf = os.path.join(self.d, "nginx.conf")
        argv = ["nginx", "-p", self.d + "/", "-c", conf, "-e",
                os.path.join(self.d, "nginx", "error.log")]
        p = subprocess.run(argv + ["-t"], capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise Fail(f"nginx -t: {(p.stdout + p.stderr).strip()[-500:]}")
        self.nginx_argv = argv
        self.nginx = self.procs.start("nginx", argv, os.path.join(self.d, "nginx", "stderr.log"))

        def up():
            if self.nginx.poll() is not None:
                raise Fail("nginx exited: " + tail(os.path.join(self.d, "nginx", "error.log")))
            s, b = http("GET", DIRECTORY, ctx=self.tls, timeout=2)
            return s == 200 and json.loads(b).get("newNonce", "").startswith(LB_URL + "/")
        wait_for(f"nginx to serve {DIRECTORY}", up, timeout=READY)
        mode = ("hash $remote_addr (DEMO_BALANCE=sticky: diagnosis only)" if self.sticky
                else "round robin")
        out(f"  nginx pid {self.nginx.pid}: {LB_URL} → node1-node3 ({mode})")
        out(f"  {DIRECTORY}: HTTP 200, every URL starts with {LB_URL}")
        self.maybe_break(3)

    def write_upstream(self, nodes):
        lines = ["# written by demo.py: the akamu public listeners behind the balancer",
                 "upstream akamu {"]
        if self.sticky:
            lines.append("    hash $remote_addr consistent;  "
                         "# DEMO_BALANCE=sticky (diagnosis only)")
        lines += [f"    server 127.0.0.1:{ACME_PORTS[n.n]};  # {n.name}" for n in nodes]
        lines += ["    keepalive 16;", "}"]
        with open(os.path.join(self.d, "nginx-upstream.conf"), "w") as f:
            f.write("\n".join(lines) + "\n")

    # --- clients -------------------------------------------------------

    def client_env(self):
        e = dict(os.environ)
        e["REQUESTS_CA_BUNDLE"] = self.tls_ca  # certbot (python-requests)
        e["LEGO_CA_CERTIFICATES"] = self.tls_ca  # lego
        return e

    def certbot_argv(self, *args):
        base = os.path.join(self.d, "certbot")
        return ["certbot", "--non-interactive", "--config-dir", base + "/etc", "--work-dir",
                base + "/work", "--logs-dir", base + "/logs", "--server", DIRECTORY] + list(args)

    def lego_argv(self, label, *args):
        return ["lego", "--server", DIRECTORY, "--accept-tos", "--email", f"{label}@example.com",
                "--path", os.path.join(self.d, label)] + list(args)

    def lego_cert(self, label, name):
        return os.path.join(self.d, label, "certificates", name.replace("*", "_") + ".crt")

    def dns_hook(self):
        hook = os.path.join(self.d, "dns-hook.sh")
        if not os.path.exists(hook):
            mgmt = f"http://127.0.0.1:{MGMT_PORT}"
            with open(hook, "w") as f:
                f.write(f"""#!/bin/sh
# lego exec provider: $1 = present|cleanup, $2 = FQDN, $3 = TXT value.
# DEMO_PRESENT_DELAY (step 6): hold lego here so its order stays in flight.
case "$1" in
  present) [ -z "${{DEMO_PRESENT_DELAY:-}}" ] || sleep "$DEMO_PRESENT_DELAY"
           curl -sf -X POST -d "{{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}}" {mgmt}/set-txt ;;
  cleanup) curl -sf -X POST -d "{{\\"host\\":\\"$2\\"}}" {mgmt}/clear-txt ;;
esac
""")
            os.chmod(hook, 0o755)
        return hook

    def dns_env(self):
        e = self.client_env()
        # EXEC_SEQUENCE_INTERVAL: lego's exec provider otherwise waits 60 s
        # between the two TXT records of one name (the wildcard and the base).
        e.update({"EXEC_PATH": self.dns_hook(), "EXEC_PROPAGATION_TIMEOUT": "10",
                  "EXEC_POLLING_INTERVAL": "1", "EXEC_SEQUENCE_INTERVAL": "1"})
        return e

    def start_client(self, label, argv, env):
        log = os.path.join(self.d, f"{label}.log")
        with open(log, "ab") as f:
            f.write(f"$ {' '.join(argv)}\n".encode())
        return self.procs.start(label, argv, log, env), log

    def run_client(self, label, argv, env):
        """Runs one certbot/lego command through the balancer; prints how
        nginx spread its requests. On failure: Fail with the client's error
        and the refused requests (balancer log + the nodes' problem lines)."""
        mark, t0, w0 = self.lb.mark(), time.monotonic(), time.time()
        p, log = self.start_client(label, argv, env)
        try:
            rc = p.wait(CLIENT_TIMEOUT)
        except subprocess.TimeoutExpired:
            Procs.stop(p)
            rc = None
        return self.client_result(label, rc, log, mark, t0, w0)

    def client_result(self, label, rc, log, mark, t0, w0):
        secs = time.monotonic() - t0
        reqs = self.annotate(self.lb.since(mark))
        per = {}
        for a in reqs:
            per[a.node] = per.get(a.node, 0) + 1
        spread = ", ".join(f"{k} {per[k]}" for k in sorted(per))
        refused = [a for a in reqs if a.status >= 400]
        moved = [a for a in reqs if len(a.tried) > 1 and a.status < 400]
        if rc == 0:
            out(f"  {label}: done in {secs:.1f}s, {len(reqs)} requests through the balancer "
                f"({spread})")
            if refused:
                out(f"  {label}: {len(refused)} refused, and retried by the client:")
                for a in refused[:12]:
                    out(f"    {a.short()}")
                for pr in self.problems_since(w0)[:8]:
                    out(f"    {pr}")
            if moved:
                out(f"  {label}: {len(moved)} passed on by nginx to the next node "
                    "(the first one refused the connection):")
                for a in moved[:12]:
                    out(f"    {a.short()}")
            return reqs
        why = "timed out" if rc is None else f"exited {rc}"
        out(f"  {label} {why} after {secs:.1f}s. The client's last lines ({log}):")
        lines = tail_lines(log, 200)
        for ln in pick_errors(lines):
            out(f"    {ln[:220]}")
        out(f"  Requests through the balancer during the run ({len(reqs)}: {spread or 'none'}):")
        for a in reqs[:40]:
            out(f"    {a.short()}")
        if len(reqs) > 40:
            out(f"    … {len(reqs) - 40} more in {self.lb.log}")
        probs = self.problems_since(w0)
        if probs:
            out("  Problem documents the nodes answered (their debug log):")
            for pr in probs[:15]:
                out(f"    {pr}")
        raise Fail(f"{label} {why}: {summarize(lines, reqs, probs)}")

    def problems_since(self, w0):
        res = []
        for n in self.all_nodes():
            res += [f"{n.name}: {p}" for p in n.problems(w0)]
        return res

    # --- step 4 --------------------------------------------------------

    def step4a(self):
        self.begin("4a", "certbot certonly --standalone (http-01) through the balancer",
                   "certbot http-01")
        name = f"certbot.{DOMAIN}"
        self.run_client("certbot", self.certbot_argv(
            "certonly", "--standalone", "--agree-tos", "-m", "ops@example.com",
            "--http-01-port", str(HTTP01_PORT), "--http-01-address", "127.0.0.1", "-d", name),
            self.client_env())
        pem = os.path.join(self.d, "certbot", "etc", "live", name, "cert.pem")
        serial = check_chain(self.cluster_ca, pem, [name])
        check_chain(self.cluster_ca, os.path.join(os.path.dirname(pem), "fullchain.pem"), [name])
        out(f"  {pem}: openssl verify OK against the cluster CA, names {{{name}}}, serial {serial}")
        self.certs["certbot"] = (pem, serial, name)
        self.maybe_break("4a")

    def step4b(self):
        self.begin("4b", "lego run --http (http-01) through the balancer", "lego http-01")
        name = f"lego-http.{DOMAIN}"
        self.run_client("lego-http", self.lego_argv(
            "lego-http", "--http", "--http.port", f"127.0.0.1:{HTTP01_PORT}", "-d", name, "run"),
            self.client_env())
        pem = self.lego_cert("lego-http", name)
        serial = check_chain(self.cluster_ca, pem, [name])
        out(f"  {pem}: openssl verify OK against the cluster CA, names {{{name}}}, serial {serial}")
        self.certs["lego-http"] = (pem, serial, name)
        self.maybe_break("4b")

    def step4c(self):
        self.begin("4c", "lego run --dns exec (dns-01, wildcard) through the balancer",
                   "lego dns-01")
        names = [f"*.wild.{DOMAIN}", f"wild.{DOMAIN}"]
        self.run_client("lego-dns", self.lego_argv(
            "lego-dns", "--dns", "exec", "--dns.resolvers", f"127.0.0.1:{DNS_PORT}",
            "--dns.disable-cp", "-d", names[0], "-d", names[1], "run"), self.dns_env())
        pem = self.lego_cert("lego-dns", names[0])
        serial = check_chain(self.cluster_ca, pem, names)
        out(f"  {pem}: openssl verify OK against the cluster CA, names {{{', '.join(names)}}}, "
            f"serial {serial}")
        self.certs["lego-dns"] = (pem, serial, names[0])
        self.maybe_break("4c")

    # --- step 5 --------------------------------------------------------

    def step5(self):
        self.begin(5, "revoke through the balancer; every node's CRL lists the serial",
                   "revocation on every node")
        if "certbot" in self.certs:
            pem, serial, name = self.certs["certbot"]
            label, argv, env = "certbot-revoke", self.certbot_argv(
                "revoke", "--cert-name", name, "--reason", "keycompromise",
                "--no-delete-after-revoke"), self.client_env()
        elif "lego-http" in self.certs:
            pem, serial, name = self.certs["lego-http"]
            label, argv, env = "lego-revoke", self.lego_argv(
                "lego-http", "-d", name, "revoke", "--keep", "--reason", "1"), self.client_env()
            out("  (step 4a's certbot certificate is missing: revoking lego's with lego revoke)")
        else:
            raise Skip("no certificate from step 4 to revoke")
        reqs = self.run_client(label, argv, env)
        via = [a for a in reqs if a.method == "POST" and a.uri.endswith("/revoke-cert")
               and a.status == 200]
        if not via:
            raise Fail(f"{label} succeeded but the balancer logged no 200 POST /acme/revoke-cert")
        # Times count from nginx's log time of the revokeCert answer.
        rv = self.annotate(via[-1:])[0]
        t0 = rv.t
        out(f"  revoked serial {serial}: nginx sent revokeCert to {rv.node}"
            + (f", which forwarded it to {rv.fwd[0]} ({rv.fwd[1]})" if rv.fwd else "")
            + "; every node must now list it")
        want = serial.lstrip("0")
        times = {}
        pending = list(self.nodes)
        end = time.monotonic() + CONVERGE
        while pending:
            for n in list(pending):
                if want in n.crl_serials() and n.revocation(serial):
                    times[n.name] = max(0.0, time.time() - t0)
                    out(f"  {n.name}: :{ACME_PORTS[n.n]}/acme/crl lists it and "
                        f":{ADMIN_PORTS[n.n]}/api/admin/certificates/… shows it revoked, "
                        f"{times[n.name]:.2f}s after the revocation")
                    pending.remove(n)
            if pending:
                if time.monotonic() >= end:
                    raise Fail(f"{', '.join(n.name for n in pending)}: the CRL does not list "
                               f"serial {serial} (or GET /api/admin/certificates/{serial} shows "
                               f"no revocation) {CONVERGE}s after the revocation")
                time.sleep(0.1)
        self.revoked = serial
        self.convergence.append(("revocation in every node's CRL", max(times.values()),
                                 ", ".join(f"{k} {v:.2f}s" for k, v in sorted(times.items()))))
        self.maybe_break(5)

    # --- step 6 --------------------------------------------------------
    # lego finishes an order here in about 0.1 s, faster than a kill can
    # land, so each sub-step holds lego at one point of its order: 6a in its
    # dns-01 hook (before the challenge), 6b in the http-01 validation (the
    # demo's own challenge server answers the validating node slowly).

    def kill_restart(self, victim, why):
        """kill -9 victim, restart it DEMO_DOWN_SECS later with the same
        config and database, wait until it answers and logged its
        first-contact lines. Returns (kill wall time, back-up wall time)."""
        victim.proc.kill()  # SIGKILL
        victim.proc.wait()
        t_kill, kill_wall = time.monotonic(), time.time()
        out(f"  kill -9 {victim.name} (pid {victim.proc.pid}) {why}")
        self.restarts[victim.name] = self.restarts.get(victim.name, 0) + 1
        time.sleep(self.down_secs)
        with open(victim.log, "ab") as f:
            f.write(f"---- demo.py: restarting {victim.name} after kill -9 ----\n".encode())
        victim.start()
        out(f"  restarted {victim.name} after {time.monotonic() - t_kill:.1f}s down "
            "(same config, same database)")
        victim.ready()
        up_wall = time.time()
        # No seeding here: the restarted node keeps its gossip keys and pins
        # in its database and must rejoin on its own.
        others = [m for m in self.nodes if m is not victim]
        self.wait_first_contacts([victim], {victim.name: others})
        self.convergence.append((f"{victim.name} back after kill -9 (first contact)",
                                 self.first_contact_secs(victim, others), "after its restart"))
        return kill_wall, up_wall

    def finish_failover(self, label, name, victim, p, log, mark, t0, w0, kill_wall, up_wall,
                        deadline, hint_fn=None):
        """Waits (until t0 + deadline) for the lego run p, shows its requests
        after the kill, checks its certificate."""
        out("  waiting for lego to finish...")
        try:
            rc = p.wait(max(1.0, deadline - (time.monotonic() - t0)))
        except subprocess.TimeoutExpired:
            Procs.stop(p)
            rc = None
        after = self.annotate([a for a in self.lb.since(mark) if a.t >= kill_wall])
        down = [a for a in after if a.t < up_wall]
        if after:
            out(f"  lego's requests after the kill ({len(down)} while {victim.name} was down):")
            for a in after[:16]:
                out(f"    {a.short()}{'   (' + victim.name + ' down)' if a.t < up_wall else ''}")
            if len(after) > 16:
                out(f"    … {len(after) - 16} more")
        try:
            self.client_result(label, rc, log, mark, t0, w0)
        except Fail as e:
            h = hint_fn() if hint_fn else ""
            raise Fail(f"{e}{' [' + h + ']' if h else ''}")
        pem = self.lego_cert(label, name)
        serial = check_chain(self.cluster_ca, pem, [name])
        out(f"  {pem}: openssl verify OK against the cluster CA, names {{{name}}}, serial {serial}")
        self.certs[label] = (pem, serial, name)

    def step6a(self):
        self.begin("6a", "kill -9 the node that created a lego order, mid-order; restart it",
                   "kill -9 of the order's node")
        label, name = "lego-failover", f"failover.{DOMAIN}"
        # The hook waits before setting the TXT record: the kill lands while
        # lego is in it, and its challenge, polls and finalize come after.
        delay = self.kill_after + 2
        env = self.dns_env()
        env["DEMO_PRESENT_DELAY"] = f"{delay:g}"
        mark, t0, w0 = self.lb.mark(), time.monotonic(), time.time()
        p, log = self.start_client(label, self.lego_argv(
            label, "--dns", "exec", "--dns.resolvers", f"127.0.0.1:{DNS_PORT}", "--dns.disable-cp",
            "-d", name, "run"), env)
        out(f"  lego run --dns exec -d {name} started in the background (pid {p.pid}); "
            f"its hook waits {delay:g}s before setting the TXT record")

        # The order's node: its ids carry that node's tag (nginx's log only
        # says which node took the request, which may have forwarded it).
        # lego fetches the order's authorization right after newOrder.
        def order_taken():
            if p.poll() is not None:
                return "exited"
            reqs = self.lb.since(mark)
            new = [a for a in reqs if a.method == "POST" and a.uri.endswith("/new-order")
                   and a.status == 201]
            authz = [a for a in reqs if new and a.t >= new[0].t and a.status < 400
                     and a.uri.startswith("/acme/authz/")]
            return (new[0], authz[0]) if authz else None
        try:
            got = wait_for("lego's newOrder and its authorization in the balancer log",
                           order_taken, timeout=60, interval=0.02)
        except Fail:
            Procs.stop(p)
            raise
        if got == "exited":
            self.client_result(label, p.returncode, log, mark, t0, w0)  # raises when it failed
            raise Fail("lego finished before it created an order; nothing was in flight")
        new, authz = self.annotate(list(got))
        authz_id = authz.uri.rsplit("/", 1)[-1]
        victim = self.owner_of(authz_id)
        if victim is None:
            raise Fail(f"authorization id {authz_id} starts with no node's tag "
                       f"({', '.join(n.name + ' ' + node_tag(n.node_id) for n in self.nodes)})")
        out(f"  {victim.name} created the order (its ids start with {victim.name}'s tag "
            f"{node_tag(victim.node_id)}; nginx sent newOrder to {new.node}"
            + (f", which forwarded it ({new.fwd[1]})" if new.fwd else "") + ")")
        out(f"  killing {victim.name} {self.kill_after:g}s after newOrder")
        time.sleep(self.kill_after)
        if p.poll() is not None:
            raise Fail(f"lego finished within {self.kill_after:g}s of newOrder, before the kill: "
                       "no order was in flight (lower DEMO_KILL_AFTER)")
        kill_wall, up_wall = self.kill_restart(victim, "while lego's order is in flight")
        self.finish_failover(label, name, victim, p, log, mark, t0, w0, kill_wall, up_wall,
                             CLIENT_TIMEOUT)
        self.maybe_break("6a")

    def step6b(self):
        self.begin("6b", "kill -9 the node validating a challenge, mid-validation; restart it",
                   "kill -9 of the validating node")
        label, name = "lego-validate", f"validate.{DOMAIN}"
        webroot = os.path.join(self.d, "webroot")
        srv = SlowChallengeServer(webroot, self.validation_delay)
        srv.start()
        try:
            self.step6b_run(label, name, webroot, srv)
        finally:
            srv.stop()
        self.maybe_break("6b")

    def step6b_run(self, label, name, webroot, srv):
        out(f"  the demo's http-01 server on :{HTTP01_PORT} serves lego's webroot and holds "
            f"each answer {self.validation_delay:g}s")
        mark, t0, w0 = self.lb.mark(), time.monotonic(), time.time()
        p, log = self.start_client(label, self.lego_argv(
            label, "--http", "--http.webroot", webroot, "-d", name, "run"), self.client_env())
        out(f"  lego run --http --http.webroot -d {name} started in the background (pid {p.pid})")

        def validating():
            if p.poll() is not None:
                return "exited"
            return srv.hits and srv.hits[0]
        try:
            got = wait_for("a node's http-01 validation request", validating, timeout=60,
                           interval=0.02)
        except Fail:
            Procs.stop(p)
            raise
        if got == "exited":
            self.client_result(label, p.returncode, log, mark, t0, w0)
            raise Fail("lego finished before any node asked for the http-01 answer")
        posts = [a for a in self.lb.since(mark)
                 if a.method == "POST" and "/acme/chall/" in a.uri and a.status < 400]
        chall = posts[-1].uri.rsplit("/", 1)[-1] if posts else ""
        queued = [n for n in self.nodes if chall and any(
            f'validation queued challenge="{chall}"' in ln for ln in n.log_lines())]
        if queued:
            victim = queued[0]
            how = "its log says it queued the validation"
        elif posts:
            victim = self.node(posts[-1].node)
            how = "nginx sent it the challenge POST (no 'validation queued' line found)"
        else:
            Procs.stop(p)
            raise Fail("a validation request arrived but the balancer logged no challenge POST")
        out(f"  {victim.name} is validating challenge {chall[:8]}… ({how}); the answer is held")
        if p.poll() is not None:
            raise Fail("lego finished before the kill: no validation was in flight")
        kill_wall, up_wall = self.kill_restart(victim, "while its validation is in flight")

        def who_validated():
            res = []
            for n in self.all_nodes():
                for ln in n.log_lines(False):
                    if (f'challenge="{chall}"' in ln and " acme: problem " not in ln) or \
                            "validations resumed" in ln:
                        t = log_time(ln)
                        if t is not None and t >= kill_wall:
                            res.append((t, n.name, ln[ln.index(" ", ln.index("Z ") + 2) + 1:]
                                        if "Z " in ln else ln))
            return sorted(res)

        def takeover_hint():
            done = [r for r in who_validated() if "challenge validated" in r[2]]
            if done:
                return ""
            return (f"after {victim.name} died, no node finished the validation of challenge "
                    f"{chall[:8]}… it had in flight: needs takeover of in-flight validations "
                    "(ownership leases, issue #8)")
        try:
            self.finish_failover(label, name, victim, p, log, mark, t0, w0, kill_wall, up_wall,
                                 TAKEOVER_DEADLINE, takeover_hint)
        finally:
            for t, node, ln in who_validated()[:6]:
                out(f"  after the kill, {node}: {ln[:160]}")
        out(f"  validation requests the demo's http-01 server received: {len(srv.hits)}")
        done = [r for r in who_validated() if "challenge validated" in r[2]]
        taken_over = bool(done) and done[0][0] < up_wall and done[0][1] != victim.name
        if done:
            t, node, _ = done[0]
            if taken_over:
                how = f"while {victim.name} was down: {node} took the validation over"
            elif node == victim.name:
                how = f"after its restart: {victim.name} resumed its own validation"
            else:
                how = f"after {victim.name}'s restart"
            out(f"  challenge {chall[:8]}… validated by {node} {t - kill_wall:.1f}s after the "
                f"kill, {how}")
        # Down past the ownership lease (plus margin): another node must
        # have taken the validation over before the victim came back.
        if self.down_secs >= OWNERSHIP_TTL + 5 and not taken_over:
            raise Fail(f"{victim.name} stayed down {self.down_secs:g}s, past ownership_ttl_secs "
                       f"({OWNERSHIP_TTL}s), and no other node finished the validation of "
                       f"challenge {chall[:8]}… it had in flight"
                       + (f" ({done[0][1]} did, after the restart)" if done else "")
                       + " [needs takeover of in-flight validations (ownership leases, "
                       "issue #8)]")
        if self.down_secs < OWNERSHIP_TTL + 5:
            out(f"  ({victim.name} was down {self.down_secs:g}s, less than ownership_ttl_secs "
                f"({OWNERSHIP_TTL}s) + 5 s: a takeover is not required; DEMO_DOWN_SECS="
                f"{OWNERSHIP_TTL + 5} requires one)")

    # --- step 7 --------------------------------------------------------

    def step7(self):
        self.begin(7, "add node4: peers + SIGHUP, start it, it catches up and serves",
                   "adding a fourth node")
        n4 = self.node4
        self.copy_ca(n4)
        out("  node4: copied the CA files (the spec's \"Provision the new node's database and "
            "CA key files\")")
        add = n4.admin_url
        for n in self.nodes:
            with open(n.cfg) as f:
                text = f.read()
            new, k = re.subn(r"^(peers = \[)(.*)\]$",
                             lambda m: f'{m.group(1)}{m.group(2)}, "{add}"]', text, count=1,
                             flags=re.M)
            if k != 1:
                raise Fail(f"{n.cfg}: no 'peers = [...]' line to extend")
            with open(n.cfg, "w") as f:
                f.write(new)
        marks = {n.name: len(n.log_lines()) for n in self.nodes}
        for n in self.nodes:
            n.proc.send_signal(signal.SIGHUP)
        out(f"  added {add} to the peers of node1-node3; kill -HUP node1 node2 node3")
        for n in self.nodes:
            ln = wait_for(f"{n.name} to log 'peer list reloaded peers=3' after SIGHUP",
                          lambda n=n: next((x for x in n.log_lines()[marks[n.name]:]
                                            if "peer list reloaded" in x), None), timeout=10)
            if "peers=3" not in ln:
                raise Fail(f"{n.name} after SIGHUP: {ln.strip()}")
            out(f"  {n.name}: {ln[ln.index('INFO'):] if 'INFO' in ln else ln}")
        out(f"Starting node4 (ACME :{ACME_PORTS[4]}, admin :{ADMIN_PORTS[4]}, peers = [node1])...")
        n4.start()
        n4.ready()
        t0 = n4.started
        if self.seed_keys:
            self.seed_gossip_keys_by_hand([n4] + self.nodes, [n4] + self.nodes)
        self.wait_first_contacts([n4], {n4.name: [self.nodes[0]]})
        self.show_trust([n4])
        self.convergence.append(("node4 first contact with node1",
                                 self.first_contact_secs(n4, [self.nodes[0]]), "after its start"))
        # Caught up: node4 holds every certificate issued so far (admin API)
        # and the revocation is in its CRL.
        serials = {lbl: s for lbl, (_, s, _) in self.certs.items()}

        def caught_up():
            for lbl, s in serials.items():
                if n4.admin(f"/api/admin/certificates/{s}")[0] != 200:
                    return False
            return not self.revoked or self.revoked.lstrip("0") in n4.crl_serials()
        wait_for(f"node4 to hold the {len(serials)} certificates issued so far", caught_up)
        dt = time.monotonic() - t0
        out(f"  node4 holds all {len(serials)} certificates issued so far"
            + (", and its CRL lists the revoked serial" if self.revoked else "")
            + f" ({dt:.1f}s after it started)")
        self.convergence.append(("node4 caught up (certificates + CRL)", dt, "after its start"))

        self.write_upstream(self.nodes + [n4])
        p = subprocess.run(self.nginx_argv + ["-s", "reload"], capture_output=True, text=True,
                           timeout=30)
        if p.returncode != 0:
            raise Fail(f"nginx -s reload: {(p.stdout + p.stderr).strip()[-300:]}")
        out("  added node4 to nginx's upstream; nginx -s reload")
        time.sleep(1)  # the new worker takes over
        label, name = "lego-node4", f"node4.{DOMAIN}"
        reqs = self.run_client(label, self.lego_argv(
            label, "--http", "--http.port", f"127.0.0.1:{HTTP01_PORT}", "-d", name, "run"),
            self.client_env())
        served = [a for a in reqs if a.node == "node4"]
        if not served and self.sticky:
            out("  (DEMO_BALANCE=sticky: nginx keeps sending every request to one node; "
                "node4's share is not checked)")
        elif not served:
            raise Fail("nginx sent none of lego's requests to node4 after the reload")
        if served:
            fwd = [a for a in served if a.fwd]
            out(f"  nginx sent node4 {len(served)} of lego's {len(reqs)} requests "
                f"({', '.join(sorted({a.method + ' ' + short_uri(a.uri) for a in served}))}); "
                f"node4 answered {len(served) - len(fwd)} itself and forwarded {len(fwd)}")
        pem = self.lego_cert(label, name)
        serial = check_chain(self.cluster_ca, pem, [name])
        out(f"  {pem}: openssl verify OK against the cluster CA, names {{{name}}}, serial {serial}")
        self.certs[label] = (pem, serial, name)
        self.maybe_break(7)

    def forwards(self):
        """(node, wall time, path, why, to node) of every request a node
        forwarded to another one, from the nodes' debug logs
        ('forward: forwarded path=... why=... peer=...')."""
        ids = {n.node_id: n.name for n in self.nodes + [self.node4]}
        res = []
        for n in self.nodes + [self.node4]:
            for ln in n.log_lines(False):
                if " forward: forwarded " not in ln:
                    continue
                m = re.search(r'path="([^"]*)" why="([^"]*)" peer="([^"]*)"', ln)
                t = log_time(ln)
                if m and t is not None:
                    res.append((n.name, t, m.group(1), m.group(2), ids.get(m.group(3), m.group(3))))
        return res

    def annotate(self, reqs):
        """Marks the balancer's requests the answering node forwarded."""
        fw = self.forwards()
        for a in reqs:
            for name, t, path, why, to in fw:
                if name == a.node and path == a.uri and a.t - a.rt - 0.5 <= t <= a.t + 0.5:
                    a.fwd = (to, why)
                    break
        return reqs

    def owner_of(self, object_id):
        """The node whose tag starts an ACME object id, else None."""
        for n in self.nodes + [self.node4]:
            if object_id.startswith(node_tag(n.node_id)):
                return n
        return None

    def first_contact_secs(self, node, peers, since=None):
        """Seconds from `since` (default: node's latest start) to its last
        first-contact line with peers (log timestamps)."""
        urls = {p.admin_url for p in peers}
        ts = [log_time(ln) for u, ln in node.raw_first_contacts().items() if u in urls]
        ts = [t for t in ts if t is not None]
        t0 = node.started_wall if since is None else since
        return max(0.0, max(ts) - t0) if ts else float("nan")

    # --- statistics ----------------------------------------------------

    def print_stats(self):
        banner("Statistics")
        reqs = self.lb.since(0)
        out()
        out("  Balancer (nginx access log, every request of the run):")
        out(f"  {'Node':<8}  {'Requests':>8}  {'2xx/3xx':>7}  {'4xx':>5}  {'5xx':>5}  "
            f"{'Moved on':>8}  {'Forwarded':>9}")
        out("  " + "  ".join("─" * w for w in (8, 8, 7, 5, 5, 8, 9)))
        rows = {}
        for a in reqs:
            r = rows.setdefault(a.node, [0] * 6)
            r[0] += 1
            r[1 if a.status < 400 else 2 if a.status < 500 else 3] += 1
            for t in a.tried[:-1]:  # nginx tried t first and moved on
                rows.setdefault(t, [0] * 6)[4] += 1
        why = {}
        for name, _, _, w, _ in self.forwards():
            rows.setdefault(name, [0] * 6)[5] += 1
            why[w] = why.get(w, 0) + 1
        tot = [0] * 6
        for name in sorted(rows):
            r = rows[name]
            tot = [x + y for x, y in zip(tot, r)]
            out(f"  {name:<8}  {r[0]:>8}  {r[1]:>7}  {r[2]:>5}  {r[3]:>5}  {r[4]:>8}  {r[5]:>9}")
        out(f"  {'total':<8}  {tot[0]:>8}  {tot[1]:>7}  {tot[2]:>5}  {tot[3]:>5}  {tot[4]:>8}  "
            f"{tot[5]:>9}")
        out("  (Moved on: requests nginx could not hand to that node — refused while it was")
        out("   down — and passed to the next one. Forwarded: requests that node passed to")
        out("   another node over the admin listener, from its debug log"
            + (": " + ", ".join(f"{k} {v}" for k, v in sorted(why.items())) if why else "")
            + ".)")
        out()
        out("  Gossip (admin listener totals, since each node's latest start):")
        out(f"  {'Node':<8}  {'Pushes':>6}  {'Exchanges':>9}  {'Bytes out':>10}  {'Bytes in':>10}  "
            f"{'Failures':>8}")
        out(f"  {'─' * 8}  {'─' * 6}  {'─' * 9}  {'─' * 10}  {'─' * 10}  {'─' * 8}")
        for n in self.all_nodes():
            if not n.alive():
                out(f"  {n.name:<8}  (not running)")
                continue
            try:
                t = n.gossip_totals()
            except (Fail, OSError, urllib.error.URLError, KeyError, ValueError) as e:
                out(f"  {n.name:<8}  (no status: {e})")
                continue
            note = f"  (restarted {self.restarts[n.name]}×)" if n.name in self.restarts else ""
            out(f"  {n.name:<8}  {t.get('pushes', 0):>6}  {t.get('exchanges', 0):>9}  "
                f"{t.get('bytes_out', 0):>10}  {t.get('bytes_in', 0):>10}  "
                f"{t.get('failures', 0):>8}{note}")
        out()
        out("  Convergence:")
        if not self.convergence:
            out("  (none measured)")
        for what, secs, detail in self.convergence:
            out(f"  {what + ':':<46} {secs:6.2f}s  ({detail})")
        out()
        out("  Steps:")
        for label, res, detail in self.results:
            out(f"  {res:<7}  {label}" + (f" — {detail}" if detail else ""))

    # --- driver --------------------------------------------------------

    def begin(self, n, title, label):
        self.step = f"step {n} ({label})"
        banner(f"Step {n} — {title}")

    def maybe_break(self, n):
        if self.brk == f"step{n}":
            raise Fail(f"DEMO_BREAK=step{n}: failing on purpose")

    def run_steps(self):
        """Setup failures end the run; a failing step ends it too unless
        DEMO_KEEP_GOING=1, in which case the independent later steps run."""
        self.step1_2()
        self.start_nginx()
        first = None
        for fn in (self.step4a, self.step4b, self.step4c, self.step5, self.step6a, self.step6b,
                   self.step7):
            try:
                fn()
                self.results.append((self.step, "ok", ""))
            except Skip as e:
                self.results.append((self.step, "skipped", str(e)))
            except (Fail, OSError, urllib.error.URLError, KeyError, ValueError) as e:
                msg = str(e) if isinstance(e, Fail) else f"{type(e).__name__}: {e}"
                self.results.append((self.step, "FAIL", msg))
                out()
                out(f"  ✗ {self.step}: {msg}")
                first = first or (self.step, msg)
                if not self.keep_going:
                    break
            self.check_nodes()
        return first

    def check_nodes(self):
        for n in self.all_nodes():
            if n.proc and not n.alive():
                raise Fail(f"{n.name} (pid {n.proc.pid}) exited (status {n.proc.returncode})")
        if self.nginx and self.nginx.poll() is not None:
            raise Fail("nginx exited")

    def run(self):
        first = None
        try:
            first = self.run_steps()
        except KeyboardInterrupt:
            out()
            out(f"  interrupted during {self.step}.")
            self.procs.stop_all()
            return 130
        except (Fail, OSError, urllib.error.URLError, KeyError, ValueError) as e:
            msg = str(e) if isinstance(e, Fail) else f"{type(e).__name__}: {e}"
            first = (self.step, msg)
            self.results.append((self.step, "FAIL", msg))
            dead = [n for n in self.all_nodes() if n.proc and not n.alive()]
            for n in (dead or [n for n in self.all_nodes() if n.proc]):
                out()
                gone = " (the process has exited)" if n in dead else ""
                out(f"  last lines of {n.name}'s log{gone}:")
                for ln in n.log_tail(6 if not dead else 25):
                    out(f"    {ln}")
        try:
            if self.nginx:
                self.print_stats()
        except KeyboardInterrupt:
            pass
        notes = []
        if self.brk:
            notes.append(f"DEMO_BREAK={self.brk} is set")
        if self.sticky:
            notes.append("DEMO_BALANCE=sticky")
        note = f" [{'; '.join(notes)}]" if notes else ""
        out()
        out("Stopping nginx, the nodes, pebble-challtestsrv...")
        self.procs.stop_all()
        if first:
            banner(f"FAIL — {first[0]}: {first[1]}{note}")
            return 1
        if self.sticky:
            # A diagnosis run never passes: one node served every request.
            banner("FAIL — DEMO_BALANCE=sticky: every step succeeded, but with one node serving "
                   "every request; that is not the cluster proof")
            return 1
        banner(f"PASS — all acme cluster demo steps succeeded.{note}")
        return 0


# ---------------------------------------------------------------- helpers

def short_uri(uri):
    """/acme/order/XEtgB7m4sWXi9fvuGPTwcEdo/finalize -> /acme/order/…/finalize"""
    return re.sub(r"/[A-Za-z0-9_-]{12,}", "/…", uri)


def tail_lines(path, n):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()[-n:]
    except OSError:
        return []


def tail(path, n=5):
    return " | ".join(tail_lines(path, n))


def pick_errors(lines):
    """The client lines worth quoting: errors and ACME problem types, else the tail."""
    keys = ("error", "urn:ietf:params:acme", "fail", "problem", "unable", "could not")
    hits = [ln for ln in lines if any(k in ln.lower() for k in keys)]
    return (hits[-10:] if hits else lines[-10:])


# What a refusal says about the missing cluster feature (issue #8), matched
# against the client's output and the nodes' problem lines.
FORWARD = ("a node did not have an object another node had just made: needs forwarding of "
           "not-yet-replicated objects (issue #8)")
HINTS = (
    ("issued by another node",
     "needs cross-node nonce redemption (redeem at the issuing node, issue #8)"),
    ("no such authorization", FORWARD), ("no such challenge", FORWARD),
    ("no such certificate", FORWARD), ("no order ", FORWARD), ("accountDoesNotExist", FORWARD),
)


def hint(texts):
    """The hint for the first text (in order) that matches one."""
    for t in texts:
        for needle, h in HINTS:
            if needle in t:
                return h
    return ""


def summarize(lines, reqs, probs):
    """One line: the ACME problem the client gave up on, what the balancer
    saw, and (when recognised) the missing cluster feature."""
    why = ""
    for ln in reversed(lines):
        m = re.search(r"(urn:ietf:params:acme:error:\w+)(.{0,160})", ln)
        if m:
            why = (m.group(1) + m.group(2)).strip().rstrip(",")
            break
    if not why:
        hits = pick_errors(lines)
        why = hits[-1].strip()[:200] if hits else "no output"
    refused = [a for a in reqs if a.status >= 400]
    if refused:
        kinds = {}
        for a in refused:
            k = f"{a.status} {a.method} {short_uri(a.uri)}"
            kinds.setdefault(k, set()).add(a.node)
        why += "; the balancer saw " + ", ".join(
            f"{k} ({', '.join(sorted(v))})" for k, v in list(kinds.items())[:4])
    h = hint([why] + probs)
    return why + (f" [{h}]" if h else "")


def run(d, binary):
    demo = Demo(d, binary)
    try:
        return demo.run()
    finally:
        demo.procs.stop_all()


def main(argv):
    if len(argv) >= 2 and argv[1] == "evict":
        return evict([int(p) for p in argv[2:]])
    if len(argv) == 4 and argv[1] == "run":
        return run(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
