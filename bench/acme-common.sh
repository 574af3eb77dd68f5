# acme-common.sh - shell helpers shared by bench/acme.sh and
# bench/acme-cluster.sh (sourced, not run). The caller sets TMP (a temp dir),
# PIDS (an array: processes to stop on exit), LOAD (acme-load), OUT (its
# results file), DURATION, GRACE, POLL_MS, PERF_DIR, PERF_CALLGRAPH and
# KEEP_TMP.

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# stop_pid PID: TERM, then KILL after 5 s; waits for it.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# die MSG: the message, prefixed with the script's name, and exit 1.
die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# The EXIT trap: stops every process in PIDS, removes TMP (KEEP_TMP=1 keeps
# it). bench_setup installs it and checks the tools and DURATION.
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ -n "$TMP" ]; then
        if [ "$KEEP_TMP" = 1 ]; then echo "$(basename "$0"): kept $TMP" >&2; else rm -rf "$TMP"; fi
    fi
    exit "$rc"
}

# bench_setup TOOL...: the traps, the tools the script needs, DURATION 1..30.
bench_setup() {
    local tool
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
    case $DURATION in
    '' | *[!0-9]*) die "DURATION must be 1..30 seconds" ;;
    esac
    if [ "$DURATION" -lt 1 ] || [ "$DURATION" -gt 30 ]; then die "DURATION must be 1..30 seconds"; fi
}




# make_pki: the throwaway TLS PKI in $TMP: tls-ca.pem (trusted by acme-load)
# and tls.pem/tls.key for 127.0.0.1 and localhost.
make_pki() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=acme bench TLS CA" -keyout "$TMP/tls-ca.key" -out "$TMP/tls-ca.pem" \
        >/dev/null 2>&1 || die "cannot create the TLS CA"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout "$TMP/tls.key" -out "$TMP/tls.csr" >/dev/null 2>&1 || die "cannot create a CSR"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$TMP/tls.ext"
    openssl x509 -req -in "$TMP/tls.csr" -CA "$TMP/tls-ca.pem" -CAkey "$TMP/tls-ca.key" \
        -CAcreateserial -days 2 -extfile "$TMP/tls.ext" -out "$TMP/tls.pem" >/dev/null 2>&1 ||
        die "cannot sign the TLS certificate"
}

# start_dns: pebble-challtestsrv as the servers' DNS (every name ->
# 127.0.0.1, no AAAA); sets DNS_PORT.
start_dns() {
    local i
    DNS_PORT=$(free_port)
    CTS_MGMT=$(free_port)
    pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$DNS_PORT" \
        -http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$CTS_MGMT" \
        >"$TMP/challtestsrv.log" 2>&1 &
    PIDS+=($!)
    for i in $(seq 100); do
        curl -s --max-time 1 -o /dev/null -d '{"host":"ready.test."}' \
            "http://127.0.0.1:$CTS_MGMT/clear-txt" && break
        kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$TMP/challtestsrv.log" >&2; die "pebble-challtestsrv exited"; }
        [ "$i" = 100 ] && die "pebble-challtestsrv not ready after 10 s"
        sleep 0.1
    done
}

# run_load LABEL PID DIRECTORY_URL ACCOUNTS HTTP_PORT CERT_OUT: runs acme-load,
# appends its output to $OUT and sets RESULT to its RESULT line.
run_load() {
    local label=$1 pid=$2 url=$3 n=$4 hport=$5 cert=$6 out=$TMP/load.out perf="" rc=0
    if [ -n "$PERF_DIR" ]; then
        mkdir -p "$PERF_DIR"
        # starts while acme-load creates its accounts: a second early, cut short by the duration
        timeout $((DURATION + 10)) perf record -q -F 499 --call-graph "$PERF_CALLGRAPH" -p "$pid" -o "$PERF_DIR/$label-$n.data" \
            -- sleep "$((DURATION + 1))" >/dev/null 2>&1 &
        perf=$!
    fi
    timeout $((DURATION + GRACE + 120)) "$LOAD" --directory "$url" --ca-file "$TMP/tls-ca.pem" \
        --accounts "$n" --duration "$DURATION" --grace "$GRACE" --http-port "$hport" \
        --poll-ms "$POLL_MS" --server-pid "$pid" --label "$label" --save-cert "$cert" \
        >"$out" 2>"$TMP/load.err" || rc=$?
    [ -n "$perf" ] && { wait "$perf" || true; }
    cat "$TMP/load.err" >&2
    # a run that issued nothing still reports (a hung server is a result)
    RESULT=$(grep '^RESULT ' "$out") || { cat "$out" >&2; return 1; }
    [ "$rc" = 0 ] || echo "$(basename "$0"): $label issued no certificate (acme-load exit $rc)" >&2
    cat "$out" >>"$OUT"
}

# verify_chain LABEL ROOT_PEM CHAIN_PEM: the leaf against the root, the rest
# untrusted (nothing to check when the run issued nothing).
verify_chain() {
    [ -s "$3" ] || return 0
    openssl verify -purpose sslserver -CAfile "$2" -untrusted "$3" "$3" >/dev/null 2>&1 ||
        die "$1: the issued certificate does not verify: $(openssl verify -CAfile "$2" \
            -untrusted "$3" "$3" 2>&1 | tail -2)"
}

# field KEY RESULT_LINE: a value of a RESULT line
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'; }

# print_table: the header and one line per RESULT in ROWS.
print_table() {
    printf '%-10s %5s %7s %8s %8s %8s %9s %6s %8s %8s %8s %6s %6s\n' server accts issued "iss/s" \
        "p50 ms" "p99 ms" "cpu ms/i" "cpu%" "RSS MiB" "HWM MiB" "gen ms/i" badnon errors
    for row in "${ROWS[@]}"; do
        printf '%-10s %5s %7s %8.1f %8.1f %8.1f %9.3f %6.1f %8.1f %8.1f %8.3f %6s %6s\n' \
            "$(field label "$row")" "$(field accounts "$row")" "$(field issuances "$row")" \
            "$(field rate "$row")" "$(field p50_ms "$row")" "$(field p99_ms "$row")" \
            "$(field cpu_ms_per_issuance "$row")" "$(field server_cpu_pct "$row")" \
            "$(awk -v k="$(field server_rss_kib "$row")" 'BEGIN { print k / 1024 }')" \
            "$(awk -v k="$(field server_hwm_kib "$row")" 'BEGIN { print k / 1024 }')" \
            "$(field gen_cpu_ms_per_issuance "$row")" "$(field bad_nonce "$row")" "$(field errors "$row")"
    done
}
