#!/usr/bin/env bash
# acme-cluster.sh - akamu as a cluster vs one node (issue #8): bench/acme-load
# (N accounts, newOrder -> http-01 -> finalize -> certificate, see
# bench/acme-load.c) against Debian's nginx as a round-robin load balancer
# (TLS to the client, one worker, keep-alive plain HTTP to the nodes) in
# front of
#   1. one akamu node (no [gossip] section: single-node mode), then
#   2. NODES akamu nodes (default 3) sharing one CA and one base_url, each
#      with its own database, replicating through gossip on their admin
#      listeners ([gossip] interval_secs = 1, eager pushes).
# Every request may land on any node (nginx rotates per request), so the
# cluster run also measures forwarding (objects not yet replicated, nonces
# redeemed at their issuer) and badNonce. The same nginx front serves the
# single node, so the two rows differ only by the cluster.
#
# Reported per row: issuances/s, p50/p99 of a whole issuance, server CPU per
# issuance (the sum over all nodes), the largest node RSS/HWM, badNonce
# answers (count and share of all ACME requests), and for the cluster the
# gossip bytes sent per issuance (sum of every node's totals.bytes_out from
# GET /api/gossip/status, over the load's whole run). Everything runs on
# 127.0.0.1 on the same cores as the generator and nginx: on a 2-core
# machine three nodes share the two cores, so this measures what the
# cluster costs, not how it scales out.
#
# Usage: bench/acme-cluster.sh
# Environment: BUILD_DIR (default build-bench, as bench/acme.sh; SKIP_BUILD=1)
#              ACCOUNTS (16) DURATION (20, seconds, <= 30) POLL_MS (20)
#              GRACE (5) NODES (3) OUT (a file to append acme-load's lines to)
#              KEEP_TMP (1: keep the temp dir: logs, databases)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
ACCOUNTS=${ACCOUNTS:-16}
DURATION=${DURATION:-20}
POLL_MS=${POLL_MS:-20}
GRACE=${GRACE:-5}
NODES=${NODES:-3}
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}
PERF_DIR=""
PERF_CALLGRAPH=fp
PIDS=()
TMP=""
# shellcheck source=bench/acme-common.sh
. "$(dirname "$0")/acme-common.sh"

bench_setup openssl curl python3 nginx pebble-challtestsrv meson ninja timeout
case $NODES in
[2-8]) ;;
*) die "NODES must be 2..8" ;;
esac

# ---- build ----
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" "$ROOT" --buildtype=release -Dtests=false >/dev/null ||
        die "meson setup $BUILD_DIR failed"
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    ninja -C "$BUILD_DIR" bench/acme-load daemons/akamu/akamu >/dev/null ||
        die "build failed (ninja -C $BUILD_DIR bench/acme-load daemons/akamu/akamu)"
fi
AKAMU=$BUILD_DIR/daemons/akamu/akamu
LOAD=$BUILD_DIR/bench/acme-load

TMP=$(mktemp -d /tmp/acme-cluster-bench.XXXXXX)
[ -n "$OUT" ] || OUT=$TMP/results.txt
make_pki
start_dns
LB_PORT=$(free_port)
HTTP_PORT=$(free_port) # acme-load's http-01 server: every node validates there
BASE=https://127.0.0.1:$LB_PORT

# ---- nginx ----
# start_nginx DIR PORT...: round robin over the given akamu ports.
start_nginx() {
    local dir=$1 p
    shift
    mkdir -p "$dir/tmp" "$dir/logs"
    {
        echo "upstream akamu {"
        for p in "$@"; do echo "    server 127.0.0.1:$p;"; done
        echo "    keepalive 64;"
        echo "}"
    } >"$dir/upstream.conf"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    include $dir/upstream.conf;
    server {
        listen 127.0.0.1:$LB_PORT ssl;
        ssl_certificate $TMP/tls.pem;
        ssl_certificate_key $TMP/tls.key;
        keepalive_requests 100000;
        location / {
            proxy_pass http://akamu;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_next_upstream error timeout;
            proxy_read_timeout 30s;
        }
    }
}
EOF
    nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >"$dir/logs/stderr" 2>&1 &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
}

# ---- akamu nodes ----
# node_conf DIR PORT ADMIN PEERS: PEERS is "" (no [gossip]) or a TOML list body.
node_conf() {
    local dir=$1 port=$2 admin=$3 peers=$4
    mkdir -p "$dir"
    cat >"$dir/akamu.toml" <<EOF
listen_addr = "127.0.0.1:$port"
base_url = "$BASE"
admin_listen_addr = "127.0.0.1:$admin"

[database]
url = "sqlite://$dir/akamu.db"

[ca]
key_file = "$TMP/ca/ca.key"
cert_file = "$TMP/ca/ca.pem"

[server]
http_validation_port = $HTTP_PORT
dns_resolver_addr = "127.0.0.1:$DNS_PORT"
EOF
    if [ -n "$peers" ]; then
        cat >>"$dir/akamu.toml" <<EOF

[gossip]
peers = [$peers]
interval_secs = 1
EOF
    fi
}

# start_node DIR PORT: sets NODE_PID.
start_node() {
    "$AKAMU" -c "$1/akamu.toml" >>"$1/log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_ready akamu "http://127.0.0.1:$2/healthz" "$NODE_PID" "$1/log" || die "akamu did not start"
}

# gossip_bytes ADMIN_PORT...: the sum of the nodes' totals.bytes_out.
gossip_bytes() {
    local p sum=0 v
    for p in "$@"; do
        v=$(curl -s --max-time 5 "http://127.0.0.1:$p/api/gossip/status" |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["totals"]["bytes_out"])') ||
            die "GET /api/gossip/status on 127.0.0.1:$p failed"
        sum=$((sum + v))
    done
    echo "$sum"
}

stop_all() {
    local pid
    for pid in "${PIDS[@]:1}"; do stop_pid "$pid"; done # [0] is pebble-challtestsrv
    PIDS=("${PIDS[0]}")
}

ROWS=()
EXTRA=()
mkdir -p "$TMP/ca"

# 1. one node, single-node mode; its first start makes the shared CA.
bench_single() {
    local dir=$TMP/single port admin
    port=$(free_port)
    admin=$(free_port)
    node_conf "$dir" "$port" "$admin" ""
    start_node "$dir" "$port"
    start_nginx "$TMP/nginx-single" "$port"
    wait_ready nginx "$BASE/healthz" "$NGINX_PID" "$TMP/nginx-single/logs/error.log" ||
        die "nginx did not start"
    run_load "1-node" "$NODE_PID" "$BASE/acme/directory" "$ACCOUNTS" "$HTTP_PORT" "$dir/cert.pem" ||
        die "acme-load against one node failed"
    verify_chain 1-node "$TMP/ca/ca.pem" "$dir/cert.pem"
    ROWS+=("$RESULT")
    EXTRA+=("gossip_bytes=0")
    stop_all
}

# 2. NODES nodes behind the same kind of front.
bench_cluster() {
    local i ports=() admins=() pids=() peers b0 b1 dir
    for i in $(seq "$NODES"); do
        ports+=("$(free_port)")
        admins+=("$(free_port)")
    done
    for i in $(seq 0 $((NODES - 1))); do
        peers=""
        for j in $(seq 0 $((NODES - 1))); do
            [ "$j" = "$i" ] && continue
            peers+="${peers:+, }\"http://127.0.0.1:${admins[$j]}\""
        done
        node_conf "$TMP/node$i" "${ports[$i]}" "${admins[$i]}" "$peers"
    done
    for i in $(seq 0 $((NODES - 1))); do
        start_node "$TMP/node$i" "${ports[$i]}"
        pids+=("$NODE_PID")
    done
    # every node has exchanged with every other (CA-certified keys, no seeding)
    for i in $(seq 0 $((NODES - 1))); do
        for _ in $(seq 300); do
            [ "$(grep -c 'first-contact merge complete' "$TMP/node$i/log")" -ge $((NODES - 1)) ] && break
            sleep 0.1
        done
        [ "$(grep -c 'first-contact merge complete' "$TMP/node$i/log")" -ge $((NODES - 1)) ] ||
            die "node$i did not reach its peers: $(tail -5 "$TMP/node$i/log")"
    done
    start_nginx "$TMP/nginx-cluster" "${ports[@]}"
    wait_ready nginx "$BASE/healthz" "$NGINX_PID" "$TMP/nginx-cluster/logs/error.log" ||
        die "nginx did not start"
    b0=$(gossip_bytes "${admins[@]}")
    run_load "${NODES}-nodes" "$(
        IFS=,
        echo "${pids[*]}"
    )" "$BASE/acme/directory" "$ACCOUNTS" "$HTTP_PORT" "$TMP/node0/cert.pem" ||
        die "acme-load against the cluster failed"
    sleep 2 # the last eager pushes and a gossip round
    b1=$(gossip_bytes "${admins[@]}")
    verify_chain cluster "$TMP/ca/ca.pem" "$TMP/node0/cert.pem"
    ROWS+=("$RESULT")
    EXTRA+=("gossip_bytes=$((b1 - b0))")
    for i in $(seq 0 $((NODES - 1))); do
        dir=$TMP/node$i
        echo "  node$i: database $(du -k "$dir"/akamu.db* |
            awk '{ s += $1 } END { printf "%.1f", s / 1024 }') MiB," \
            "$(grep -c ' WARN \| ERROR ' "$dir/log" || true) WARN/ERROR log lines" >&2
    done
    stop_all
}

echo "acme-load -d ${DURATION}s, ${ACCOUNTS} accounts, poll ${POLL_MS} ms, $(nproc) CPUs," \
    "nginx $(nginx -v 2>&1 | sed 's|.*/||'), generator, nginx and nodes on the same CPUs" >&2
bench_single
bench_cluster

printf '\n%s, %s, %s CPUs, acme-load -d %ss --poll-ms %s, %s accounts, through nginx\n' \
    "$(date -u +%Y-%m-%d)" "$(openssl version | cut -d' ' -f1-2)" "$(nproc)" "$DURATION" \
    "$POLL_MS" "$ACCOUNTS"
print_table
echo
for k in "${!ROWS[@]}"; do
    row=${ROWS[$k]}
    awk -v l="$(field label "$row")" -v bn="$(field bad_nonce "$row")" \
        -v rq="$(field requests "$row")" -v c="$(field completed "$row")" \
        -v gb="${EXTRA[$k]#gossip_bytes=}" \
        'BEGIN { share = rq > 0 ? 100 * bn / rq : 0; per = c > 0 ? gb / c : 0
                 printf "%-8s badNonce %s of %s requests (%.3f%%), gossip %s bytes sent = %.0f bytes per issuance\n", l, bn, rq, share, gb, per }'
done
a=${ROWS[0]} b=${ROWS[1]}
awk -v ar="$(field rate "$a")" -v br="$(field rate "$b")" -v ac="$(field cpu_ms_per_issuance "$a")" \
    -v bc="$(field cpu_ms_per_issuance "$b")" -v a50="$(field p50_ms "$a")" -v b50="$(field p50_ms "$b")" \
    -v a99="$(field p99_ms "$a")" -v b99="$(field p99_ms "$b")" -v n="$NODES" \
    'function r(x, y) { return y > 0 ? sprintf("%.2f", x / y) : "n/a" }
     BEGIN { printf "%s nodes / 1 node: iss/s %s, p50 %s, p99 %s, cpu/issuance (all nodes) %s\n",
             n, r(br, ar), r(b50, a50), r(b99, a99), r(bc, ac) }'
echo "(errors > 0: requests failed or timed out; such a run was cut short and does not compare)"
