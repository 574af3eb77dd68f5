#!/usr/bin/env bash
# acme.sh - ACME issuance side by side (issue #7): akamu and Debian's Pebble,
# driven in turn by bench/acme-load (N accounts, one thread each, one
# issuance at a time per account: newOrder -> authz -> http-01 -> finalize
# -> certificate; see the comment at the top of bench/acme-load.c).
#
# Everything runs on 127.0.0.1 from a temp dir: a throwaway CA (openssl)
# signs the HTTPS certificate both servers listen with, and acme-load trusts
# that CA; pebble-challtestsrv is both servers' DNS (every name -> 127.0.0.1,
# no AAAA), so their http-01 validations reach acme-load's own challenge
# server. akamu starts with a fresh database and generates its CA on first
# start; Pebble runs with PEBBLE_VA_NOSLEEP=1 (no random 0-15 s sleep before
# each validation) and PEBBLE_WFE_NONCEREJECT=0 (no deliberate badNonce);
# PEBBLE_AUTHZREUSE keeps its default (50%), which never applies here since
# every order is for a fresh name. Pebble 2.4.0 deadlocks under concurrency
# (docs/performance.md): a row with errors > 0 was cut short.
#
# For every account count in ACCOUNTS_LIST: start akamu, run acme-load for
# DURATION seconds, stop akamu; then the same for Pebble. acme-load reads the
# server's utime+stime (/proc/PID/stat) at the start and end of the window
# and when its last thread stopped, and VmRSS/VmHWM at the end. One issued
# certificate of each run is checked with `openssl verify`. Prints a table
# and the ratios akamu/Pebble; the raw RESULT and JSON lines of acme-load
# are kept in $OUT (default: the temp dir, removed on exit).
#
# Usage: bench/acme.sh
# Environment: BUILD_DIR (default build-bench, set up with --buildtype=release
#              -Dtests=false when missing; akamu and acme-load are always rebuilt,
#              akamu only when it runs; SKIP_BUILD=1 uses them as they are)
#              ACCOUNTS_LIST ("8 16") DURATION (20, seconds, ≤ 30)
#              POLL_MS (20) GRACE (5) SKIP_PEBBLE (0) SKIP_AKAMU (0)
#              FILL (0; N > 0: afterwards, akamu again with N stored
#              certificates, see bench_akamu_fill, for the issue's RSS check)
#              KEEP_TMP (1: keep the temp dir: logs, databases, certificates)
#              ACME_LOAD (another acme-load binary, e.g. a sanitizer build)
#              OUT (a file to append acme-load's RESULT and JSON lines to)
#              PERF_DIR (when set: `perf record` of each server during its
#              window, to PERF_DIR/<server>-<accounts>.data) PERF_CALLGRAPH
#              (fp; "dwarf" sees through libraries built without frame pointers)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
ACCOUNTS_LIST=${ACCOUNTS_LIST:-"8 16"}
DURATION=${DURATION:-20}
POLL_MS=${POLL_MS:-20}
GRACE=${GRACE:-5}
SKIP_PEBBLE=${SKIP_PEBBLE:-0}
SKIP_AKAMU=${SKIP_AKAMU:-0}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
FILL=${FILL:-0}
PERF_DIR=${PERF_DIR:-}
PERF_CALLGRAPH=${PERF_CALLGRAPH:-fp}
PIDS=()
TMP=""
# shellcheck source=bench/acme-common.sh
. "$(dirname "$0")/acme-common.sh"

bench_setup openssl curl python3 pebble pebble-challtestsrv meson ninja timeout

# ---- build ----
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" "$ROOT" --buildtype=release -Dtests=false >/dev/null ||
        die "meson setup $BUILD_DIR failed"
fi
TARGETS=(bench/acme-load)
[ "$SKIP_AKAMU" = 1 ] && [ "$FILL" = 0 ] || TARGETS+=(daemons/akamu/akamu)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    ninja -C "$BUILD_DIR" "${TARGETS[@]}" >/dev/null || die "build failed (ninja -C $BUILD_DIR ${TARGETS[*]})"
fi
AKAMU=$BUILD_DIR/daemons/akamu/akamu
LOAD=${ACME_LOAD:-$BUILD_DIR/bench/acme-load}

TMP=$(mktemp -d /tmp/acme-bench.XXXXXX)
[ -n "$OUT" ] || OUT=$TMP/results.txt
make_pki
start_dns

ROWS=()

# start_akamu DIR: writes DIR/akamu.toml (once; a restart keeps ports, CA and
# database) and starts akamu; sets AK_PID, AK_URL (directory) and AK_HPORT.
start_akamu() {
    local dir=$1 port admin
    if [ ! -f "$dir/akamu.toml" ]; then
        mkdir -p "$dir"
        port=$(free_port)
        admin=$(free_port)
        cat >"$dir/akamu.toml" <<EOF
listen_addr = "127.0.0.1:$port"
base_url = "https://127.0.0.1:$port"
admin_listen_addr = "127.0.0.1:$admin"

[database]
url = "sqlite://$dir/akamu.db"

[ca]
key_file = "$dir/ca.key"
cert_file = "$dir/ca.pem"

[server]
http_validation_port = $(free_port)
dns_resolver_addr = "127.0.0.1:$DNS_PORT"

[tls]
enabled = true
cert_file = "$TMP/tls.pem"
key_file = "$TMP/tls.key"
EOF
    fi
    port=$(sed -n 's/^listen_addr = "127.0.0.1:\([0-9]*\)"/\1/p' "$dir/akamu.toml")
    AK_HPORT=$(sed -n 's/^http_validation_port = //p' "$dir/akamu.toml")
    AK_URL=https://127.0.0.1:$port/acme/directory
    "$AKAMU" -c "$dir/akamu.toml" >>"$dir/log" 2>&1 &
    AK_PID=$!
    PIDS+=("$AK_PID")
    wait_ready akamu "https://127.0.0.1:$port/healthz" "$AK_PID" "$dir/log" || die "akamu did not start"
}

stop_akamu() {
    stop_pid "$AK_PID"
    unset 'PIDS[-1]'
}

db_mib() {
    du -k "$1"/akamu.db* 2>/dev/null | awk '{ s += $1 } END { printf "%.1f", s / 1024 }'
}

bench_akamu() {
    local n=$1 dir=$TMP/akamu-$1
    start_akamu "$dir"
    run_load akamu "$AK_PID" "$AK_URL" "$n" "$AK_HPORT" "$dir/cert.pem" ||
        die "acme-load against akamu failed"
    verify_chain akamu "$dir/ca.pem" "$dir/cert.pem"
    ROWS+=("$RESULT")
    stop_akamu
    echo "  akamu database: $(db_mib "$dir") MiB" >&2
}

# fill_db DB COUNT: clones the issuances already in DB (order, authorization,
# challenge and certificate rows, as stored) under fresh keys until it holds
# COUNT certificates. The clones take the node's next seqs (crdt_vv is
# advanced to match) and keep their source's stamps and expiry, so the node
# sees an ordinary database of COUNT issuances; only the ids inside the
# documents still name their source objects.
fill_db() {
    python3 - "$1" "$2" <<'PYEOF'
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
want = int(sys.argv[2])
tables = ("orders", "authorizations", "challenges", "certificates")
have = db.execute("SELECT count(*) FROM crdt_rows WHERE tbl = 'certificates' AND deleted = 0").fetchone()[0]
if have == 0:
    sys.exit("fill: no certificates to clone")
(origin,) = db.execute("SELECT origin FROM crdt_rows WHERE tbl = 'certificates' LIMIT 1").fetchone()
(seq,) = db.execute("SELECT seq FROM crdt_vv WHERE origin = ?", (origin,)).fetchone()
src = {t: db.execute("SELECT key, value, hlc, expires FROM crdt_rows WHERE tbl = ? AND deleted = 0"
                     " AND origin = ?", (t, origin)).fetchall() for t in tables}
alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
def new_key(t, key):
    if t == "certificates":
        return os.urandom(16).hex()
    return key[:8] + "".join(chr(alphabet[b & 63]) for b in os.urandom(len(key) - 8))
rows = []
for i in range(want - have):
    for t in tables:
        key, value, hlc, expires = src[t][i % len(src[t])]
        seq += 1
        rows.append((t, new_key(t, key), value, hlc, origin, seq, expires))
db.executemany("INSERT INTO crdt_rows(tbl, key, value, hlc, origin, seq, deleted, expires)"
               " VALUES (?, ?, ?, ?, ?, ?, 0, ?)", rows)
db.execute("UPDATE crdt_vv SET seq = ? WHERE origin = ?", (seq, origin))
db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(f"fill: {have} -> {want} certificates ({len(rows)} rows added)", file=sys.stderr)
PYEOF
}

# The RSS check of the issue: akamu with FILL stored certificates, measured
# under the same load (first account count) after a restart on that database.
bench_akamu_fill() {
    local n=$1 dir=$TMP/akamu-fill
    start_akamu "$dir"
    timeout 120 "$LOAD" --directory "$AK_URL" --ca-file "$TMP/tls-ca.pem" --accounts "$n" \
        --duration 5 --grace "$GRACE" --http-port "$AK_HPORT" --poll-ms "$POLL_MS" \
        --label akamu-seed >/dev/null 2>"$TMP/load.err" || { cat "$TMP/load.err" >&2; die "seeding failed"; }
    stop_akamu
    fill_db "$dir/akamu.db" "$FILL" || die "filling the database failed"
    echo "  akamu database: $(db_mib "$dir") MiB" >&2
    start_akamu "$dir"
    echo "  akamu restarted on it: VmRSS $(awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' \
        "/proc/$AK_PID/status") MiB" >&2
    run_load akamu-fill "$AK_PID" "$AK_URL" "$n" "$AK_HPORT" "$dir/cert.pem" ||
        die "acme-load against akamu (filled) failed"
    verify_chain akamu-fill "$dir/ca.pem" "$dir/cert.pem"
    ROWS+=("$RESULT")
    stop_akamu
}

bench_pebble() {
    local n=$1 dir=$TMP/pebble-$1 port mgmt hport pid
    mkdir -p "$dir"
    port=$(free_port)
    mgmt=$(free_port)
    hport=$(free_port)
    cat >"$dir/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$port",
    "managementListenAddress": "127.0.0.1:$mgmt",
    "certificate": "$TMP/tls.pem",
    "privateKey": "$TMP/tls.key",
    "httpPort": $hport,
    "tlsPort": $(free_port),
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF
    PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
        pebble -config "$dir/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" >"$dir/log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_ready pebble "https://127.0.0.1:$port/dir" "$pid" "$dir/log" || die "pebble did not start"
    run_load pebble "$pid" "https://127.0.0.1:$port/dir" "$n" "$hport" "$dir/cert.pem" ||
        die "acme-load against pebble failed"
    if [ -s "$dir/cert.pem" ]; then
        curl -s --cacert "$TMP/tls-ca.pem" --max-time 5 -o "$dir/root.pem" \
            "https://127.0.0.1:$mgmt/roots/0" || die "cannot fetch Pebble's root"
        verify_chain pebble "$dir/root.pem" "$dir/cert.pem"
    fi
    ROWS+=("$RESULT")
    stop_pid "$pid"
    unset 'PIDS[-1]'
}

echo "acme-load -d ${DURATION}s, accounts {$ACCOUNTS_LIST}, poll ${POLL_MS} ms, $(nproc) CPUs," \
    "generator on the same CPUs" >&2
for n in $ACCOUNTS_LIST; do
    [ "$SKIP_AKAMU" = 1 ] || bench_akamu "$n"
    [ "$SKIP_PEBBLE" = 1 ] || bench_pebble "$n"
done
if [ "$FILL" -gt 0 ]; then
    bench_akamu_fill "${ACCOUNTS_LIST%% *}"
fi

printf '\n%s, %s, pebble %s, %s CPUs, acme-load -d %ss --poll-ms %s\n' "$(date -u +%Y-%m-%d)" \
    "$(openssl version | cut -d' ' -f1-2)" \
    "$(dpkg-query -W -f '${Version}' pebble 2>/dev/null || echo '?')" "$(nproc)" "$DURATION" "$POLL_MS"
print_table
if [ "$SKIP_AKAMU" != 1 ] && [ "$SKIP_PEBBLE" != 1 ]; then
    echo
    for n in $ACCOUNTS_LIST; do
        a="" p=""
        for row in "${ROWS[@]}"; do
            [ "$(field accounts "$row")" = "$n" ] || continue
            [ "$(field label "$row")" = akamu ] && a=$row
            [ "$(field label "$row")" = pebble ] && p=$row
        done
        awk -v n="$n" -v ar="$(field rate "$a")" -v pr="$(field rate "$p")" \
            -v a50="$(field p50_ms "$a")" -v p50="$(field p50_ms "$p")" \
            -v a99="$(field p99_ms "$a")" -v p99="$(field p99_ms "$p")" \
            -v ac="$(field cpu_ms_per_issuance "$a")" -v pc="$(field cpu_ms_per_issuance "$p")" \
            -v am="$(field server_hwm_kib "$a")" -v pm="$(field server_hwm_kib "$p")" \
            'function r(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "n/a" }
             BEGIN { printf "akamu/pebble, %s accounts: iss/s %s, p50 %s, p99 %s, cpu/issuance %s, HWM %s\n",
                     n, r(ar, pr), r(a50, p50), r(a99, p99), r(ac, pc), r(am, pm) }'
    done
fi
echo "(errors > 0: requests failed or timed out (the first ones are printed above); such a run"
echo " was cut short and its figures do not compare."
echo " cpu ms/i: server utime+stime per completed issuance; cpu%: server CPU over the window,"
echo " 100 = one core; RSS/HWM: server VmRSS at the end and VmHWM; gen ms/i: acme-load's own CPU"
echo " per issuance, on the same cores)"
