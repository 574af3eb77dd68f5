#!/usr/bin/env bash
# akamu ACME cluster demo: three akamu nodes behind Debian's nginx (round-robin
# TLS load balancer), certbot and lego issuing through it, a revocation seen by
# every node, kill -9 of a node during an order, a fourth node added with
# SIGHUP. See README.md next to this file.
#
#   contrib/demo/acme-cluster/run.sh    run every step, print PASS/FAIL, exit 0/1
#
# Environment: AKAMU_BIN (akamu binary to use), DEMO_KEEP_GOING=1 (run the
# later steps after a failure too), DEMO_SEED_KEYS=0|1 (hand-seed the gossip
# keys, default 0), DEMO_BALANCE=sticky (diagnosis only), DEMO_BREAK=stepN,
# DEMO_KILL_AFTER (default 1), DEMO_DOWN_SECS (default 4), DEMO_KEEP_TMP=1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
# Every port the demo listens on (README.md, "Ports"): the balancer, the
# public ACME listeners, the admin listeners, the http-01 and tls-alpn-01
# ports the clients answer on, pebble-challtestsrv's DNS and management API.
PORTS=(14443 14001 14002 14003 14004 18081 18082 18083 18084 15080 15443 15053 15055)
for a in "$@"; do
    case "$a" in
    -h | --help)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "run.sh: unknown argument '$a' (try --help)" >&2
        exit 2
        ;;
    esac
done

fail() {
    local line
    line=$(printf '━%.0s' $(seq 62))
    echo
    echo "$line"
    echo "  FAIL — $*"
    echo "$line"
    exit 1
}

# ---- cleanup: always stop what we started and remove the temp folder ----
# demo.py starts every process (nodes, nginx, pebble-challtestsrv, clients)
# with the temp folder as its working directory, records "pid name" in
# $TMP/pids and stops them itself; this is the safety net when demo.py could
# not (killed, crashed). A pid is only signalled while its working directory
# is still $TMP, so a reused pid is never hit.
TMP=""
# shellcheck disable=SC2317  # invoked through the EXIT trap
ours() {
    local cwd
    cwd=$(readlink "/proc/$1/cwd" 2>/dev/null) || return 1
    [ "$cwd" = "$TMP" ] || [ "$cwd" = "$TMP (deleted)" ]
}
# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
    local rc=$? pid name alive i
    local left=()
    trap - EXIT INT TERM
    if [ -n "$TMP" ] && [ -f "$TMP/pids" ]; then
        while read -r pid name; do
            if ours "$pid"; then
                left+=("$pid")
                echo "  stopping leftover $name (pid $pid)"
                kill -TERM "$pid" 2>/dev/null || true
            fi
        done <"$TMP/pids"
        for i in $(seq 100); do # up to 10 s
            alive=0
            for pid in "${left[@]}"; do ours "$pid" && alive=1; done
            [ "$alive" = 0 ] && break
            sleep 0.1
        done
        for pid in "${left[@]}"; do
            if ours "$pid"; then
                echo "  pid $pid ignored SIGTERM for 10 s; killing it."
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        if [ "${DEMO_KEEP_TMP:-0}" = 1 ]; then
            echo "DEMO_KEEP_TMP=1: the run's folder (logs, databases, certificates) stays: $TMP"
        else
            rm -rf -- "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "Interrupted."; exit 130' INT
trap 'exit 143' TERM

# ---- prerequisites ------------------------------------------------------
# Debian's python3 (standard library only), not a pyenv/venv shim.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || fail "setup: python3 is required but not found"
for tool in openssl nginx certbot lego pebble-challtestsrv curl; do
    command -v "$tool" >/dev/null ||
        fail "setup: $tool(1) is required but not found in \$PATH" \
            "(Debian packages: nginx-light, certbot, lego, pebble, curl)"
done

find_binary() {
    local b
    if [ -n "${AKAMU_BIN:-}" ]; then
        b=$(type -P -- "$AKAMU_BIN" || true)
        [ -n "$b" ] && readlink -f -- "$b" && return 0
        return 1
    fi
    if b=$(type -P akamu); then
        readlink -f -- "$b"
        return 0
    fi
    for b in "$ROOT"/build/daemons/akamu/akamu "$ROOT"/build*/daemons/akamu/akamu; do
        if [ -x "$b" ]; then
            readlink -f -- "$b"
            return 0
        fi
    done
    return 1
}

if ! BIN=$(find_binary); then
    [ -n "${AKAMU_BIN:-}" ] && fail "setup: AKAMU_BIN=$AKAMU_BIN is not an executable"
    echo "akamu not found in \$PATH or $ROOT/build*/; building it..."
    (
        cd "$ROOT"
        [ -f build/build.ninja ] || meson setup build
        ninja -C build daemons/akamu/akamu
    ) || fail "setup: building akamu failed"
    BIN=$(readlink -f "$ROOT/build/daemons/akamu/akamu")
    [ -x "$BIN" ] || fail "setup: the build produced no $ROOT/build/daemons/akamu/akamu"
fi
echo "Using akamu binary: $BIN"

# ---- free the ports (only processes of earlier demo runs are stopped) ----
"$PY" "$HERE/demo.py" evict "${PORTS[@]}" ||
    fail "setup: the demo's ports are not free (see above)"

# ---- temp folder, TLS PKI, configs ----------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/akamu-acme-cluster-demo.XXXXXX")
TMP=$(readlink -f "$TMP")
mkdir -m 700 "$TMP/tls"

echo "Generating the TLS PKI for the balancer and the nodes (CA + server certificate)..."
(
    set -e
    cd "$TMP/tls"
    umask 077
    # IP:127.0.0.1 for the clients; DNS:localhost for nginx's upstream check
    # (proxy_ssl_name), which matches names only.
    printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'extendedKeyUsage=serverAuth' \
        'basicConstraints=critical,CA:FALSE' >ext.cnf
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 1 -subj "/CN=akamu acme-cluster demo TLS CA" \
        -out ca.pem
    openssl ecparam -name prime256v1 -genkey -noout -out key.pem
    openssl req -new -key key.pem -subj "/CN=127.0.0.1" -out server.csr
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
        -sha256 -extfile ext.cnf -out cert.pem
    chmod 644 ca.pem cert.pem
) >"$TMP/tls/openssl.log" 2>&1 || {
    cat "$TMP/tls/openssl.log"
    fail "setup: generating the TLS PKI failed"
}
echo "  TLS CA cert: $TMP/tls/ca.pem   (REQUESTS_CA_BUNDLE / LEGO_CA_CERTIFICATES)"
echo "  server cert: $TMP/tls/cert.pem (nginx and the nodes' public listeners)"

# The admin API bearer token shared by the nodes (the demo reads
# /api/admin/certificates to check what each node holds).
(umask 077 && openssl rand -hex 24 >"$TMP/admin.token")

for i in 1 2 3 4; do
    mkdir -m 700 "$TMP/node$i"
    cp "$HERE/node$i.toml" "$TMP/node$i/akamu.toml"
    "$BIN" --check-config -c "$TMP/node$i/akamu.toml" >"$TMP/node$i/check.log" 2>&1 || {
        cat "$TMP/node$i/check.log"
        fail "setup: node$i.toml does not validate"
    }
done
cp "$HERE/nginx.conf" "$TMP/nginx.conf"
mkdir -p "$TMP/nginx/tmp"

# ---- the steps: processes, clients, checks, statistics ---------------------
cd "$TMP"
rc=0
"$PY" "$HERE/demo.py" run "$TMP" "$BIN" || rc=$?
exit $rc
