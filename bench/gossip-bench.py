#!/usr/bin/python3
"""Gossip replication benchmarks (issue #4) on local gsp-node processes.

    bench/gossip-bench.py [--build DIR] [--quick] [--only latency,idle,change,sync]
                          [--sync-n N,...] [--sync-mode both,pull,push] [--keep]

Starts its own gsp-node processes (tests/gossip/gsp-node, plain HTTP on
127.0.0.1, databases in a temporary directory) and always stops them, also on
Ctrl-C / SIGTERM or an error. Every wait is bounded. Four measurements:

1. write-to-visible latency: PUT a fresh key on one node (rotating over the
   three), poll GET /kv/{key} on the two others in parallel threads (one
   keep-alive session each) until both answer 200; one sample = time from
   just before the PUT to the later of the two first 200s.
2. idle cost: after convergence and a quiet period, /api/gossip/status of
   every node sampled each second; bytes per round slot (exchanges + skips:
   a skipped round costs 0 bytes) and per exchange actually sent.
3. bytes per replicated entry vs value size (32 B, 1 KiB, 16 KiB random,
   incompressible): N PUTs round-robin, wait for convergence, sum over nodes
   of bytes_out / N / 2 (each entry reaches two peers).
4. a new node syncing a large database: node A gets N entries of 100 random
   bytes (POST /bulk), then an empty node B starts, both are seeded, and the
   time until B applied all N entries and its /digest equals A's, B's peak RSS
   (VmHWM) and the bytes that moved are reported.

Python 3 stdlib + requests. Prints a results table at the end.
"""
import argparse
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE = [0.0]  # monotonic time after which every wait gives up


class BenchError(Exception):
    pass


def left(limit):
    """Seconds a wait may still take: its own limit, capped by the deadline."""
    return max(0.0, min(limit, DEADLINE[0] - time.monotonic()))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status(pid, field):
    """A kB figure from /proc/<pid>/status (VmRSS, VmHWM), or 0."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Node:
    def __init__(self, binary, tmp, name, interval_ms):
        self.binary = binary
        self.port = free_port()
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.id = f"127.0.0.1:{self.port}"
        self.db = os.path.join(tmp, name + ".db")
        self.log_path = os.path.join(tmp, name + ".log")
        self.interval_ms = interval_ms
        self.proc = None
        self.log = None
        self.s = requests.Session()

    def start(self, peers, allow):
        args = [self.binary, "--port", str(self.port), "--db", self.db,
                "--interval-ms", str(self.interval_ms)]
        for p in peers:
            args += ["--peer", p]
        for a in allow:
            args += ["--allow", a]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        end = time.monotonic() + left(10)
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                if self.s.get(self.url + "/api/gossip/kem-info", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not start; log {self.log_path}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()
            self.log = None
        self.s.close()

    def kem_info(self):
        return self.s.get(self.url + "/api/gossip/kem-info", timeout=5).json()

    def status(self):
        return self.s.get(self.url + "/api/gossip/status", timeout=10).json()

    def digest(self):
        return self.s.get(self.url + "/digest", timeout=60).json()

    def seed(self, other):
        doc = dict(other.kem_info(), url=other.url)
        r = self.s.post(self.url + "/api/admin/nodes/seed", json=doc, timeout=5)
        if r.status_code != 200:
            raise BenchError(f"seed {other.name} on {self.name}: {r.status_code} {r.text}")


def seed_all(nodes):
    for n in nodes:
        for m in nodes:
            if m is not n:
                n.seed(m)


def kv_vv(status):
    """The version vector without entries that only carry cluster_nodes."""
    return status.get("vv", {})


def wait_converged(nodes, limit=120):
    """Waits until all nodes have the same version vector, then the same digest."""
    end = time.monotonic() + left(limit)
    while time.monotonic() < end:
        vvs = [kv_vv(n.status()) for n in nodes]
        if all(v == vvs[0] for v in vvs):
            ds = [n.digest() for n in nodes]
            if all(d == ds[0] for d in ds):
                return ds[0]
        time.sleep(0.1)
    raise BenchError(f"no convergence within {limit}s")


def wait_links_ok(nodes, limit=30):
    """Waits until every node's last exchange with every peer succeeded: right
    after seeding, a node that contacted a peer before the peer had pinned it
    got 403 and is backing off (1 s, doubling), which would delay the next
    write by up to that back-off."""
    end = time.monotonic() + left(limit)
    while time.monotonic() < end:
        if all(p["last_ok"] and p["pinned"] for n in nodes for p in n.status()["peers"]):
            return
        time.sleep(0.1)
    raise BenchError(f"links not all ok within {limit}s")


def totals(nodes):
    return [n.status()["totals"] for n in nodes]


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---- 1. write-to-visible latency ----

def bench_latency(nodes, samples, gap_s):
    sessions = {n.name: requests.Session() for n in nodes}
    put_s = requests.Session()
    lat, put_ms, after_put, timeouts = [], [], [], 0
    for n in nodes:  # open the keep-alive connections
        sessions[n.name].get(n.url + "/kv/warmup", timeout=5)
        put_s.put(n.url + "/kv/warmup", data=b"w", timeout=5)
    wait_converged(nodes)
    for i in range(samples):
        w = nodes[i % 3]
        others = [n for n in nodes if n is not w]
        key = f"lat{i:06d}"
        value = os.urandom(64)
        seen = {}
        go = threading.Event()

        def poll(n):
            go.wait()
            s = sessions[n.name]
            end = time.monotonic() + 5
            while time.monotonic() < end:
                try:
                    if s.get(f"{n.url}/kv/{key}", timeout=5).status_code == 200:
                        seen[n.name] = time.monotonic()
                        return
                except requests.RequestException:
                    return  # counted as a timeout

        ts = [threading.Thread(target=poll, args=(n,), daemon=True) for n in others]
        for t in ts:
            t.start()
        t0 = time.monotonic()
        go.set()
        r = put_s.put(f"{w.url}/kv/{key}", data=value, timeout=5)
        t1 = time.monotonic()
        for t in ts:
            t.join()
        if r.status_code != 200:
            raise BenchError(f"PUT {key}: {r.status_code}")
        put_ms.append((t1 - t0) * 1000)
        if len(seen) == 2:
            lat.append((max(seen.values()) - t0) * 1000)
            after_put.append((max(seen.values()) - t1) * 1000)
        else:
            timeouts += 1
        if time.monotonic() > DEADLINE[0]:
            raise BenchError("deadline reached during the latency run")
        time.sleep(gap_s)
    for s in list(sessions.values()) + [put_s]:
        s.close()
    if not lat:
        raise BenchError("no latency sample completed")
    return {"n": len(lat), "timeouts": timeouts, "p50": pct(lat, 50), "p99": pct(lat, 99),
            "max": max(lat), "min": min(lat), "put_p50": pct(put_ms, 50),
            "put_p99": pct(put_ms, 99), "put_max": max(put_ms),
            "after_p50": pct(after_put, 50), "after_p99": pct(after_put, 99),
            "over50": sum(x > 50 for x in lat)}


# ---- 2. idle cost ----

def bench_idle(nodes, quiet_s, window_s):
    wait_converged(nodes)
    time.sleep(left(quiet_s))
    snaps = []
    end = time.monotonic() + window_s
    while True:
        snaps.append({n.id: n.status() for n in nodes})
        if time.monotonic() >= end or time.monotonic() > DEADLINE[0]:
            break
        time.sleep(1.0)
    a, b = snaps[0], snaps[-1]

    def peer(st, pid):
        for p in st["peers"]:
            if p["node_id"] == pid:
                return p
        raise BenchError(f"peer {pid} missing in status of {st['node_id']}")

    def d(pid_self, pid_other, k):
        return peer(b[pid_self], pid_other)[k] - peer(a[pid_self], pid_other)[k]

    links = []
    ids = [n.id for n in nodes]
    for i, x in enumerate(ids):
        for y in ids[i + 1:]:
            # (bytes_out + bytes_in) at x for peer y is every byte on the x-y
            # link: x's exchanges with y and y's exchanges with x. So the round
            # slots on that link are x's and y's rounds and skips together.
            link_bytes = d(x, y, "bytes_out") + d(x, y, "bytes_in")
            exch = d(x, y, "exchanges") + d(y, x, "exchanges")
            skips = d(x, y, "skips") + d(y, x, "skips")
            pushes = d(x, y, "pushes") + d(y, x, "pushes")
            links.append({"link": f"{x}-{y}", "bytes": link_bytes, "exchanges": exch,
                          "skips": skips, "pushes": pushes})
    # Request and response size of an idle exchange: at x for peer y,
    # bytes_out = req * (x's exchanges with y) + resp * (requests x served for
    # y); least squares over the six directed pairs.
    sxx = sxy = syy = sxb = syb = 0
    for x in ids:
        for y in ids:
            if x != y:
                e, v, bo = d(x, y, "exchanges"), d(x, y, "served"), d(x, y, "bytes_out")
                sxx, sxy, syy, sxb, syb = sxx + e * e, sxy + e * v, syy + v * v, sxb + e * bo, \
                    syb + v * bo
    det = sxx * syy - sxy * sxy
    # Singular when every pair made as many exchanges as it served (then the
    # two sizes cannot be told apart from the counters).
    req, resp = ((sxb * syy - syb * sxy) / det, (syb * sxx - sxb * sxy) / det) if det else (0, 0)
    tb = sum(lk["bytes"] for lk in links)
    te = sum(lk["exchanges"] for lk in links)
    tsk = sum(lk["skips"] for lk in links)
    secs = (len(snaps) - 1) * 1.0
    return {"window_s": secs, "links": links, "req": req, "resp": resp, "bytes": tb,
            "exchanges": te, "skips": tsk,
            "per_slot": tb / (te + tsk) if te + tsk else float("nan"),
            "per_exchange": tb / te if te else float("nan"),
            "bytes_per_s_per_link": tb / secs / len(links) if secs else float("nan")}


# ---- 3. bytes per replicated entry ----

def bench_change(nodes, sizes, n_entries):
    rows = []
    s = requests.Session()
    for size in sizes:
        wait_converged(nodes)
        before = totals(nodes)
        t0 = time.monotonic()
        for i in range(n_entries):
            r = s.put(f"{nodes[i % 3].url}/kv/c{size}-{i:06d}", data=os.urandom(size), timeout=5)
            if r.status_code != 200:
                raise BenchError(f"PUT: {r.status_code}")
        wait_converged(nodes)
        dt = time.monotonic() - t0
        after = totals(nodes)

        def dsum(k):
            return sum(y[k] - x[k] for x, y in zip(before, after))

        wire = dsum("bytes_out")
        rows.append({"size": size, "n": n_entries, "wire": wire,
                     "per_entry_peer": wire / n_entries / 2,
                     "overhead": wire / n_entries / 2 - size,
                     "entries_sent": dsum("entries_sent"), "applied": dsum("entries_applied"),
                     "exchanges": dsum("exchanges"),
                     "pushes": dsum("pushes"), "secs": dt})
    s.close()
    return rows


# ---- 4. a new node syncs a large database ----

class Sampler(threading.Thread):
    """Samples VmRSS of some pids every 50 ms (VmHWM is read at the end too)."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = {p: 0 for p in pids}
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            for p in self.pids:
                self.peak[p] = max(self.peak[p], proc_status(p, "VmRSS"))
            self.stop_ev.wait(0.05)


def bench_sync(binary, tmp, n_entries, interval_ms, mode, chunk=100_000):
    """mode "both": A and B list each other as peers (both run exchange loops);
    "pull": only B does (A answers, its loop disabled); "push": only A does."""
    a = Node(binary, tmp, f"sync{n_entries}{mode}-a", interval_ms)
    b = Node(binary, tmp, f"sync{n_entries}{mode}-b", interval_ms)
    try:
        # b is not up yet: a's attempts to resolve its URL just fail
        a.start([b.url] if mode != "pull" else [], [a.id, b.id])
        t0 = time.monotonic()
        done = 0
        while done < n_entries:
            k = min(chunk, n_entries - done)
            r = a.s.post(f"{a.url}/bulk", params={"n": k, "size": 100, "prefix": f"p{done}-"},
                         timeout=left(120))
            if r.status_code != 200:
                raise BenchError(f"bulk: {r.status_code} {r.text}")
            done += k
        load_s = time.monotonic() - t0
        a_rss_loaded = proc_status(a.proc.pid, "VmHWM")
        a_digest = a.digest()
        if a_digest["rows"] != n_entries:
            raise BenchError(f"bulk load gave {a_digest}")
        db_mb = sum(os.path.getsize(a.db + x) for x in ("", "-wal") if os.path.exists(a.db + x))

        b.start([a.url] if mode != "push" else [], [a.id, b.id])
        sampler = Sampler([a.proc.pid, b.proc.pid])
        sampler.start()
        t_start = time.monotonic()
        # The side that only answers pins the other first, so the active side's
        # first exchange is not refused (403, then 1 s back-off). With both
        # loops running one side is always refused once: B here.
        for x, y in ((a, b), (b, a)) if mode == "pull" else ((b, a), (a, b)):
            x.seed(y)
        vv_s = digest_s = dup_s = None
        dup_applied = 0
        end = time.monotonic() + left(1800)
        while time.monotonic() < end:
            st = b.status()
            tb = st["totals"]
            if dup_s is None and tb["entries_received"] > tb["entries_applied"] + 1000:
                dup_s, dup_applied = time.monotonic() - t_start, tb["entries_applied"]
            # Not B's status "vv": it is the engine's cached copy, refreshed
            # only by the exchange loop (stale on a node whose loop is off).
            # A's N rows and its cluster_nodes entry are new to B.
            if tb["entries_applied"] >= n_entries + 1:
                vv_s = time.monotonic() - t_start
                break
            time.sleep(0.1)
        if vv_s is None:
            raise BenchError(f"sync of {n_entries} did not finish in time")
        while time.monotonic() < end:
            if b.digest() == a_digest:
                digest_s = time.monotonic() - t_start
                break
            time.sleep(0.2)
        if digest_s is None:
            raise BenchError("B's digest never matched A's")
        sampler.stop_ev.set()
        sampler.join()
        sa, sb = a.status()["totals"], b.status()["totals"]
        return {"n": n_entries, "mode": mode, "load_s": load_s, "db_bytes": db_mb,
                "a_hwm_after_load_kb": a_rss_loaded,
                "vv_s": vv_s, "digest_s": digest_s,
                "b_hwm_kb": proc_status(b.proc.pid, "VmHWM"),
                "b_rss_peak_kb": sampler.peak[b.proc.pid],
                "a_hwm_kb": proc_status(a.proc.pid, "VmHWM"),
                "wire": sa["bytes_out"] + sb["bytes_out"],
                "b_in": sb["bytes_in"], "b_out": sb["bytes_out"],
                "b_entries_received": sb["entries_received"],
                "b_entries_applied": sb["entries_applied"],
                "exchanges": sa["exchanges"] + sb["exchanges"],
                "dup_s": dup_s, "dup_applied": dup_applied,
                "a_fail": sa["failures"], "b_fail": sb["failures"],
                "a_exch": sa["exchanges"], "b_exch": sb["exchanges"]}
    finally:
        a.stop()
        b.stop()


def fmt_kb(kb):
    return f"{kb / 1024:.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.environ.get("BUILD_DIR", os.path.join(ROOT, "build")),
                    help="meson build directory (default $BUILD_DIR, else ./build)")
    ap.add_argument("--quick", action="store_true", help="small sample counts (about 15 s)")
    ap.add_argument("--sync-n", help="comma-separated database sizes for the sync run")
    ap.add_argument("--sync-mode", default="both",
                    help="comma-separated: both (default), pull (only B runs an exchange "
                         "loop), push (only A does)")
    ap.add_argument("--interval-ms", type=int, default=1000, help="gossip round interval")
    ap.add_argument("--timeout", type=int, default=3600, help="overall limit in seconds")
    ap.add_argument("--only", help="comma-separated subset of latency,idle,change,sync")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    o = ap.parse_args()

    binary = os.path.join(os.path.abspath(o.build), "tests", "gossip", "gsp-node")
    if not os.access(binary, os.X_OK):
        sys.exit(f"gossip-bench: {binary} not built")
    DEADLINE[0] = time.monotonic() + o.timeout
    if o.quick:
        samples, idle_s, n_change, sync_ns = 60, 11, 100, [20_000]
    else:
        samples, idle_s, n_change, sync_ns = 300, 20, 1000, [100_000, 1_000_000]
    only = set(o.only.split(",")) if o.only else {"latency", "idle", "change", "sync"}
    if only - {"latency", "idle", "change", "sync"}:
        sys.exit("gossip-bench: --only takes latency,idle,change,sync")
    modes = o.sync_mode.split(",")
    if set(modes) - {"both", "pull", "push"}:
        sys.exit("gossip-bench: --sync-mode takes both,pull,push")
    if o.sync_n:
        sync_ns = [int(x) for x in o.sync_n.split(",") if x]

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    tmp = tempfile.mkdtemp(prefix="gossip-bench-")
    nodes = []
    res = {}
    try:
        if only & {"latency", "idle", "change"}:
            nodes = [Node(binary, tmp, f"n{i}", o.interval_ms) for i in range(3)]
            allow = [n.id for n in nodes]
            for n in nodes:
                n.start([m.url for m in nodes if m is not n], allow)
            seed_all(nodes)
            wait_converged(nodes)
            wait_links_ok(nodes)
        if "latency" in only:
            print(f"[1/4] latency, {samples} samples", file=sys.stderr, flush=True)
            res["lat"] = bench_latency(nodes, samples, 0.02)
        if "idle" in only:
            print(f"[2/4] idle, {idle_s} s window", file=sys.stderr, flush=True)
            res["idle"] = bench_idle(nodes, 3 if o.quick else 5, idle_s)
        if "change" in only:
            print(f"[3/4] bytes per change, N={n_change}", file=sys.stderr, flush=True)
            res["change"] = bench_change(nodes, [32, 1024, 16384], n_change)
        for n in nodes:
            n.stop()
        nodes = []
        res["sync"] = []
        for n in sync_ns if "sync" in only else []:
            for mode in modes:
                print(f"[4/4] sync of {n} entries ({mode})", file=sys.stderr, flush=True)
                res["sync"].append(bench_sync(binary, tmp, n, o.interval_ms, mode))
    except KeyboardInterrupt:
        print("gossip-bench: interrupted", file=sys.stderr)
        return 130
    except (BenchError, requests.RequestException) as e:
        print(f"gossip-bench: {e} (logs in {tmp})", file=sys.stderr)
        o.keep = True
        return 1
    finally:
        for n in nodes:
            n.stop()
        if not o.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report(res, o)
    return 0


def report(res, o):
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    print(f"\nmachine: {os.cpu_count()} CPU ({cpu}), {platform.system()} {platform.release()}; "
          f"gossip interval {o.interval_ms} ms, push delay 10 ms, sessions on, "
          f"node ids 127.0.0.1:PORT")
    if "lat" in res:
        report_lat(res["lat"])
    if "idle" in res:
        report_idle(res["idle"])
    if "change" in res:
        report_change(res["change"])
    if res.get("sync"):
        report_sync(res["sync"])


def report_lat(la):
    print(f"\n1. write -> visible on both other nodes ({la['n']} samples, "
          f"{la['timeouts']} timeouts)")
    print(f"   p50 {la['p50']:.1f} ms   p99 {la['p99']:.1f} ms   max {la['max']:.1f} ms   "
          f"min {la['min']:.1f} ms   goal p99 <= 50 ms; {la['over50']} samples over 50 ms")
    print(f"   the PUT itself: p50 {la['put_p50']:.1f} ms, p99 {la['put_p99']:.1f} ms, "
          f"max {la['put_max']:.1f} ms; from the PUT's answer to visible: "
          f"p50 {la['after_p50']:.1f} ms, p99 {la['after_p99']:.1f} ms")


def report_idle(idl):
    print(f"\n2. idle, {idl['window_s']:.0f} s after convergence (3 links)")
    print(f"   {'link':<32} {'bytes':>8} {'exch':>5} {'skips':>5} {'pushes':>6}")
    for lk in idl["links"]:
        print(f"   {lk['link']:<32} {lk['bytes']:>8} {lk['exchanges']:>5} {lk['skips']:>5} "
              f"{lk['pushes']:>6}")
    print(f"   bytes per round slot per peer (exchanges + skips): {idl['per_slot']:.0f} B"
          f"   goal <= 300")
    print(f"   bytes per exchange actually sent (request + response): "
          f"{idl['per_exchange']:.0f} B")
    if idl["req"] > 0 and idl["resp"] > 0:
        print(f"   of which request ~{idl['req']:.0f} B, response ~{idl['resp']:.0f} B "
              "(least squares over the six directed pairs)")
    print(f"   average per link: {idl['bytes_per_s_per_link']:.0f} B/s")


def report_change(rows):
    print("\n3. bytes per replicated entry per receiving peer (random values)")
    print(f"   {'value':>7} {'N':>6} {'wire bytes':>11} {'per entry/peer':>15} {'overhead':>9} "
          f"{'entries sent':>12} {'applied':>7} {'B/sent':>6} {'exchanges':>9} {'pushes':>6}")
    for r in rows:
        print(f"   {r['size']:>7} {r['n']:>6} {r['wire']:>11} {r['per_entry_peer']:>15.0f} "
              f"{r['overhead']:>9.0f} {r['entries_sent']:>12} {r['applied']:>7} "
              f"{r['wire'] / r['entries_sent']:>6.0f} {r['exchanges']:>9} {r['pushes']:>6}")
    print("   (2N entries would suffice: the surplus is relayed entries the receiver already "
          "had; B/sent = wire bytes per entry actually sent)")


def report_sync(rows):
    print("\n4. new empty node B syncs from A (100-byte random values)")
    for s in rows:
        print(f"   N={s['n']} ({s['mode']}): bulk load on A {s['load_s']:.1f} s "
              f"(db {s['db_bytes'] / 1e6:.0f} MB); B applied all {s['vv_s']:.1f} s, "
              f"digest equal {s['digest_s']:.1f} s ({s['n'] / s['vv_s']:.0f} entries/s)")
        print(f"     B peak RSS {fmt_kb(s['b_hwm_kb'])} (VmHWM; sampled "
              f"{fmt_kb(s['b_rss_peak_kb'])}), A VmHWM {fmt_kb(s['a_hwm_kb'])} "
              f"(after load {fmt_kb(s['a_hwm_after_load_kb'])})")
        print(f"     wire {s['wire'] / 1e6:.1f} MB ({s['wire'] / s['n']:.0f} B/entry), B in "
              f"{s['b_in'] / 1e6:.1f} MB, B entries received {s['b_entries_received']} "
              f"(applied {s['b_entries_applied']}), exchanges A {s['a_exch']} B {s['b_exch']}")
        if s["dup_s"] is not None:
            print(f"     duplicate pages from {s['dup_s']:.1f} s on (B had {s['dup_applied']} "
                  f"entries by then), when the second exchange loop joined: A and B both page "
                  f"the same gap")
        print(f"     failed exchanges at seeding (403 before the other side pinned): "
              f"A {s['a_fail']} B {s['b_fail']} (each backs off 1 s)")


if __name__ == "__main__":
    sys.exit(main())
