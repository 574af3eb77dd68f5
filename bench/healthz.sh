#!/usr/bin/env bash
# healthz.sh [AHDAPA_BIN] - GET /healthz throughput and p99 latency over HTTPS
# keep-alive, measured with wrk in the same run against:
#   nginx   (Debian nginx-light, static file {"status":"ok"}, same certificate)
#   ahdapa  (AHDAPA_BIN, $AHDAPA, or build/daemons/ahdapa/ahdapa under the repo)
# Both servers get a fresh self-signed P-256 certificate, run on free loopback
# ports from a temp dir, and are stopped (TERM, then KILL after 5 s) on exit.
# Without an ahdapa binary only nginx is measured.
#
# Environment: DURATION (10s) THREADS (2) CONNS (32) WARMUP (2s, "0" to skip)
#              AHDAPA_EXTRA_TOML (file appended to ahdapa's generated config)
#              NGINX (nginx binary, default: nginx on PATH or /usr/sbin/nginx)
set -euo pipefail

DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-32}
WARMUP=${WARMUP:-2s}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIDS=()
WRK_PID=""
WRK_RESULT=""
TMP=""

die() { echo "healthz.sh: $*" >&2; exit 1; }

# Stops everything we started: TERM, up to 5 s grace, then KILL; children of
# our servers (nginx workers) are included, found by their parent's PID.
cleanup() {
    local rc=$? all=() pid kids i alive
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}" $WRK_PID; do
        all+=("$pid")
        kids=$(pgrep -P "$pid" 2>/dev/null || true)
        for k in $kids; do all+=("$k"); done
    done
    for pid in "${all[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for i in $(seq 50); do
        alive=0
        for pid in "${all[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${all[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}" $WRK_PID; do wait "$pid" 2>/dev/null || true; done
    [ -n "$TMP" ] && rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for tool in wrk openssl curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
[ -x "$NGINX" ] || die "nginx not found (apt-get install nginx-light)"

AHDAPA_BIN=${1:-${AHDAPA:-}}
if [ -z "$AHDAPA_BIN" ] && [ -x "$ROOT/build/daemons/ahdapa/ahdapa" ]; then
    AHDAPA_BIN=$ROOT/build/daemons/ahdapa/ahdapa
fi
if [ -n "$AHDAPA_BIN" ]; then
    [ -x "$AHDAPA_BIN" ] || die "ahdapa binary '$AHDAPA_BIN' is not executable"
    AHDAPA_BIN=$(cd "$(dirname "$AHDAPA_BIN")" && pwd)/$(basename "$AHDAPA_BIN")
fi

TMP=$(mktemp -d /tmp/healthz-bench.XXXXXX)
chmod 755 "$TMP" # nginx workers may run as nobody when started by root

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 ||
    die "cannot create a certificate"

# ---- nginx ----
NGINX_PORT=$(free_port)
mkdir -p "$TMP/www" "$TMP/nginx"
printf '{"status":"ok"}' >"$TMP/www/healthz"
chmod 644 "$TMP/www/healthz"
cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /healthz {
            root $TMP/www;
            default_type application/json;
        }
    }
}
EOF
"$NGINX" -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx.conf" \
    >"$TMP/nginx/stdout.log" 2>&1 &
PIDS+=($!)
wait_ready nginx "https://127.0.0.1:$NGINX_PORT/healthz" "${PIDS[-1]}" "$TMP/nginx/error.log" || die "nginx did not start"

# ---- ahdapa ----
AHDAPA_PORT=""
if [ -n "$AHDAPA_BIN" ]; then
    AHDAPA_PORT=$(free_port)
    mkdir -p "$TMP/ahdapa"
    cat >"$TMP/ahdapa/ahdapa.toml" <<EOF
[server]
listen = "127.0.0.1:$AHDAPA_PORT"

[tls]
cert_file = "$TMP/cert.pem"
key_file = "$TMP/key.pem"
EOF
    if [ -n "${AHDAPA_EXTRA_TOML:-}" ]; then
        cat "$AHDAPA_EXTRA_TOML" >>"$TMP/ahdapa/ahdapa.toml"
    fi
    # Run from its own dir: relative paths (e.g. the default SQLite file) land there.
    (cd "$TMP/ahdapa" && AHDAPA_LOG_LEVEL=warn exec "$AHDAPA_BIN" -c "$TMP/ahdapa/ahdapa.toml") \
        >"$TMP/ahdapa/log" 2>&1 &
    PIDS+=($!)
    wait_ready ahdapa "https://127.0.0.1:$AHDAPA_PORT/healthz" "${PIDS[-1]}" "$TMP/ahdapa/log" || die "ahdapa did not start"
else
    echo "note: no ahdapa binary (argument, \$AHDAPA or build/daemons/ahdapa/ahdapa); nginx only" >&2
fi

# ---- measure ----
# Prints "REQS P99_MS ERRORS" from wrk's output.
parse_wrk() {
    awk '
    function ms(v,   n, u) {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") return n / 1000
        if (u == "ms") return n
        if (u == "s") return n * 1000
        if (u == "m") return n * 60000
        return n
    }
    /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END { printf "%s %.3f %d\n", (rps == "" ? "0" : rps), p99, err }'
}

# Sets WRK_RESULT. wrk runs in the background and we wait for it: bash only
# runs the INT/TERM traps once a foreground command ends, `wait` is
# interrupted at once.
run_wrk() {
    local port=$1 dur=$2 out=$TMP/wrk.out
    timeout 300 wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency \
        "https://127.0.0.1:$port/healthz" >"$out" 2>&1 &
    WRK_PID=$!
    if ! wait "$WRK_PID"; then
        WRK_PID=""
        cat "$out" >&2
        return 1
    fi
    WRK_PID=""
    WRK_RESULT=$(parse_wrk <"$out")
}

NAMES=(nginx)
PORTS=($NGINX_PORT)
if [ -n "$AHDAPA_PORT" ]; then
    NAMES+=(ahdapa)
    PORTS+=("$AHDAPA_PORT")
fi
RESULTS=()
echo "wrk -t$THREADS -c$CONNS -d$DURATION --latency (HTTPS keep-alive, GET /healthz), $(nproc) CPUs"
for i in "${!NAMES[@]}"; do
    if [ "$WARMUP" != "0" ]; then
        run_wrk "${PORTS[$i]}" "$WARMUP" || die "wrk warm-up against ${NAMES[$i]} failed"
    fi
    run_wrk "${PORTS[$i]}" "$DURATION" || die "wrk against ${NAMES[$i]} failed"
    RESULTS+=("$WRK_RESULT")
done

printf '\n%-8s %12s %10s %8s\n' server "req/s" "p99 ms" errors
for i in "${!NAMES[@]}"; do
    read -r rps p99 err <<<"${RESULTS[$i]}"
    printf '%-8s %12.1f %10.3f %8d\n' "${NAMES[$i]}" "$rps" "$p99" "$err"
done
if [ "${#NAMES[@]}" -eq 2 ]; then
    read -r n_rps n_p99 _ <<<"${RESULTS[0]}"
    read -r a_rps a_p99 _ <<<"${RESULTS[1]}"
    awk -v ar="$a_rps" -v nr="$n_rps" -v ap="$a_p99" -v np="$n_p99" 'BEGIN {
        printf "\nahdapa/nginx: req/s %.2fx, p99 %.2fx\n",
            (nr > 0 ? ar / nr : 0), (np > 0 ? ap / np : 0) }'
fi
