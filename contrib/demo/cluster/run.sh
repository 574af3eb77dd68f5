#!/usr/bin/env bash
# Three-node ahdapa gossip cluster demo: see README.md next to this file.
#
#   contrib/demo/cluster/run.sh                  run every step, print PASS/FAIL, exit 0/1
#   contrib/demo/cluster/run.sh --interactive    same, then keep the nodes running until Ctrl-C
#
# Environment: DEMO_TRAFFIC_SECS (traffic window, default 35), DEMO_BREAK=stepN
# (make step N fail on purpose, to test the FAIL path), AHDAPA (binary to use).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PORTS=(8080 8081 8082)
INTERACTIVE=0
for a in "$@"; do
    case "$a" in
    --interactive | -i) INTERACTIVE=1 ;;
    -h | --help)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
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
TMP=""
PIDS=()
PASSED=0
# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
    local rc=$? pid alive i
    trap - EXIT INT TERM
    if [ ${#PIDS[@]} -gt 0 ]; then
        echo "Stopping nodes..."
        for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
        for i in $(seq 100); do # up to 10 s
            alive=0
            for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
            [ "$alive" = 0 ] && break
            sleep 0.1
        done
        for pid in "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                echo "  pid $pid ignored SIGTERM for 10 s; killing it."
                kill -KILL "$pid" 2>/dev/null || true
            fi
            wait "$pid" 2>/dev/null || true
        done
    fi
    if [ -n "$TMP" ] && [ -d "$TMP" ]; then
        rm -rf -- "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'if [ $PASSED = 1 ]; then exit 0; else echo; echo "Interrupted."; exit 130; fi' INT
trap 'exit 143' TERM

# ---- prerequisites ------------------------------------------------------
for tool in openssl python3; do
    command -v "$tool" >/dev/null || fail "setup: $tool(1) is required but not found in \$PATH"
done
PY=$(command -v python3)

find_binary() {
    local b
    if [ -n "${AHDAPA:-}" ]; then
        b=$(type -P -- "$AHDAPA" || true)
        [ -n "$b" ] && readlink -f -- "$b" && return 0
        return 1
    fi
    if b=$(type -P ahdapa); then
        readlink -f -- "$b"
        return 0
    fi
    for b in "$ROOT"/build/daemons/ahdapa/ahdapa "$ROOT"/build*/daemons/ahdapa/ahdapa; do
        if [ -x "$b" ]; then
            readlink -f -- "$b"
            return 0
        fi
    done
    return 1
}

if ! BIN=$(find_binary); then
    [ -n "${AHDAPA:-}" ] && fail "setup: AHDAPA=$AHDAPA is not an executable"
    echo "ahdapa not found in \$PATH or $ROOT/build*/; building it..."
    (
        cd "$ROOT"
        [ -f build/build.ninja ] || meson setup build
        ninja -C build daemons/ahdapa/ahdapa
    ) || fail "setup: building ahdapa failed"
    BIN=$(readlink -f "$ROOT/build/daemons/ahdapa/ahdapa")
    [ -x "$BIN" ] || fail "setup: the build produced no $ROOT/build/daemons/ahdapa/ahdapa"
fi
echo "Using ahdapa binary: $BIN"

# ---- free the ports (only earlier demo nodes are ever stopped) -----------
"$PY" "$HERE/demo.py" evict "${PORTS[@]}" ||
    fail "setup: ports ${PORTS[0]}-${PORTS[2]} are not free (see above)"

# ---- temp folder, PKI, configs -------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ahdapa-cluster-demo.XXXXXX")
mkdir -m 700 "$TMP/tls"

echo "Generating TLS PKI (CA + server certificate)..."
(
    set -e
    cd "$TMP/tls"
    umask 077
    printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n' >ext.cnf
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 1 -subj "/CN=ahdapa cluster demo CA" \
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
echo "  CA cert:     $TMP/tls/ca.pem"
echo "  server cert: $TMP/tls/cert.pem"

cp "$HERE/users.toml" "$TMP/users.toml"
for i in 1 2 3; do
    cfg="$TMP/node$i.toml"
    cp "$HERE/node$i.toml" "$cfg"
    cat >>"$cfg" <<EOF

# Appended by run.sh: the demo PKI generated for this run.
[tls]
cert_file = "$TMP/tls/cert.pem"
key_file  = "$TMP/tls/key.pem"
ca_file   = "$TMP/tls/ca.pem"
EOF
    "$BIN" --check-config -c "$cfg" >"$TMP/check$i.log" 2>&1 || {
        cat "$TMP/check$i.log"
        fail "setup: node$i.toml does not validate"
    }
done

# ---- start the nodes ------------------------------------------------------
for i in 1 2 3; do
    echo "Starting node$i (:${PORTS[$((i - 1))]})..."
    "$BIN" -c "$TMP/node$i.toml" >"$TMP/node$i.log" 2>&1 </dev/null &
    PIDS+=($!)
    echo $! >"$TMP/node$i.pid"
done

# ---- the steps (HTTP, JSON) -----------------------------------------------
rc=0
"$PY" "$HERE/demo.py" run "$TMP" || rc=$?
[ $rc = 0 ] || exit $rc
PASSED=1

if [ $INTERACTIVE = 1 ]; then
    echo
    echo "The nodes keep running; press Ctrl-C to stop them and clean up."
    echo "The browser will warn about the self-signed certificate; trust"
    echo "  $TMP/tls/ca.pem"
    echo "or click through the warning. Log in as alice / alice123 on any node."
    echo
    echo "node1  https://127.0.0.1:8080/ui/"
    echo "node2  https://127.0.0.1:8081/ui/"
    echo "node3  https://127.0.0.1:8082/ui/"
    while :; do
        for pid in "${PIDS[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "A node (pid $pid) exited; its log:"
                tail -n 20 "$TMP"/node*.log
                PASSED=0
                exit 1
            fi
        done
        sleep 1
    done
fi
exit 0
