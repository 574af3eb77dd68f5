#!/usr/bin/env bash
# token.sh [AHDAPA_BIN] - OAuth token endpoint and introspection throughput,
# measured with wrk in the same run against:
#   ahdapa https  (AHDAPA_BIN, $AHDAPA, or build/daemons/ahdapa/ahdapa), TLS keep-alive
#   ahdapa http   (the same binary, a second node without [tls]: plain HTTP)
#   oidc-provider (bench/oidc-provider: pinned npm package, one Node process, plain HTTP)
#   glewlwyd      (Debian's package, its OAuth2 plugin, SQLite, plain HTTP; token only)
# Requests: POST /token with grant_type=client_credentials and
# client_secret_post (bench/wrk/token.lua), then POST /introspect of a live
# token (bench/wrk/introspect.lua), each with wrk -t$THREADS at every
# connection count of $CONNS_LIST. The ahdapa client is created through the
# admin API after logging in as alice (users.toml made with `ahdapa
# hash-password`); oidc-provider gets the same client id/secret statically.
# oidc-provider issues ES256 JWT access tokens (resource indicators) for the
# token runs; it refuses to introspect JWTs, so its introspection runs use an
# opaque token (the only kind it introspects).
#
# Reported per run: requests/s, p50/p99 latency, errors (non-2xx + socket),
# server CPU (utime+stime from /proc/PID/stat over the run, 100% = one core,
# and per request in microseconds)
# and RSS (largest VmRSS sampled during the run, and VmHWM), and the ratio of req/s to `openssl speed ecdsap256`
# sign (token) or verify (introspection) operations per second on one core.
# All servers run on free loopback ports from a temp dir and are stopped
# (TERM, then KILL after 5 s) on exit.
#
# Environment: DURATION (20s) THREADS (2) CONNS_LIST ("32 8") WARMUP (2s, "0"
#              to skip) FILL_CLIENTS (0: extra clients to register on each
#              ahdapa node before measuring, for RSS with many clients)
#              SKIP_OIDC (1: no oidc-provider) SKIP_GLEWLWYD (1: no glewlwyd;
#              also skipped when Debian's glewlwyd is not installed)
#              SPEED_SECONDS (3)
set -euo pipefail

DURATION=${DURATION:-20s}
THREADS=${THREADS:-2}
CONNS_LIST=${CONNS_LIST:-"32 8"}
WARMUP=${WARMUP:-2s}
FILL_CLIENTS=${FILL_CLIENTS:-0}
SKIP_OIDC=${SKIP_OIDC:-0}
SKIP_GLEWLWYD=${SKIP_GLEWLWYD:-0}
SPEED_SECONDS=${SPEED_SECONDS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PIDS=()
WRK_PID=""
TMP=""

die() { echo "token.sh: $*" >&2; exit 1; }

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

AHDAPA_BIN=${1:-${AHDAPA:-}}
if [ -z "$AHDAPA_BIN" ] && [ -x "$ROOT/build/daemons/ahdapa/ahdapa" ]; then
    AHDAPA_BIN=$ROOT/build/daemons/ahdapa/ahdapa
fi
[ -n "$AHDAPA_BIN" ] || die "no ahdapa binary (argument, \$AHDAPA or build/daemons/ahdapa/ahdapa)"
[ -x "$AHDAPA_BIN" ] || die "ahdapa binary '$AHDAPA_BIN' is not executable"
AHDAPA_BIN=$(cd "$(dirname "$AHDAPA_BIN")" && pwd)/$(basename "$AHDAPA_BIN")

OIDC_DIR=$ROOT/bench/oidc-provider
if [ "$SKIP_OIDC" != 1 ]; then
    command -v node >/dev/null || die "node not found (SKIP_OIDC=1 to run without oidc-provider)"
    if [ ! -d "$OIDC_DIR/node_modules/oidc-provider" ]; then
        (cd "$OIDC_DIR" && npm ci --no-audit --no-fund >/dev/null 2>&1) ||
            die "npm ci in bench/oidc-provider failed"
    fi
fi

TMP=$(mktemp -d /tmp/token-bench.XXXXXX)

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" >/dev/null 2>&1 ||
    die "cannot create a certificate"

ADMIN_PW=$(openssl rand -hex 12)
PW_HASH=$(printf '%s\n' "$ADMIN_PW" | "$AHDAPA_BIN" hash-password) || die "ahdapa hash-password failed"
cat >"$TMP/users.toml" <<EOF
[[users]]
username = "alice"
password_hash = "$PW_HASH"
groups = ["admins"]
EOF

# start_ahdapa NAME TLS(0|1): sets URL_<NAME>, PID_<NAME>.
start_ahdapa() {
    local name=$1 tls=$2 port dir scheme
    port=$(free_port)
    dir=$TMP/$name
    mkdir -p "$dir"
    scheme=http
    [ "$tls" = 1 ] && scheme=https
    cat >"$dir/ahdapa.toml" <<EOF
[server]
listen = "127.0.0.1:$port"

[database]
url = "sqlite://$dir/node.db"

[users]
static_file = "$TMP/users.toml"
EOF
    if [ "$tls" = 1 ]; then
        cat >>"$dir/ahdapa.toml" <<EOF

[tls]
cert_file = "$TMP/cert.pem"
key_file = "$TMP/key.pem"
EOF
    fi
    (cd "$dir" && AHDAPA_LOG_LEVEL=warn exec "$AHDAPA_BIN" -c "$dir/ahdapa.toml") \
        >"$dir/log" 2>&1 &
    PIDS+=($!)
    wait_ready "ahdapa ($name)" "$scheme://127.0.0.1:$port/healthz" "${PIDS[-1]}" "$dir/log" ||
        die "ahdapa ($name) did not start"
    printf -v "URL_$name" '%s' "$scheme://127.0.0.1:$port"
    printf -v "PID_$name" '%s' "${PIDS[-1]}"
}

# admin_setup URL: logs in as alice and creates the client "bench"; prints
# "CLIENT_SECRET COOKIE CSRF".
admin_setup() {
    ADMIN_PW=$ADMIN_PW python3 - "$1" <<'EOF'
import json, os, ssl, sys, urllib.request
url = sys.argv[1]
ctx = ssl._create_unverified_context()  # loopback, our own throwaway certificate
def call(method, path, body, headers):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method=method,
                                 headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, context=ctx if url.startswith("https") else None,
                                timeout=30) as r:
        return r.headers, json.load(r)
h, j = call("POST", "/api/auth/login", {"username": "alice", "password": os.environ["ADMIN_PW"]}, {})
cookie = h["Set-Cookie"].split(";", 1)[0]
csrf = j["csrf_token"]
_, c = call("POST", "/api/admin/clients",
            {"client_id": "bench", "client_name": "bench", "client_type": "confidential",
             "token_endpoint_auth_method": "client_secret_post", "scope": "read write",
             "grant_types": ["client_credentials"], "access_token_ttl": 3600},
            {"Cookie": cookie, "X-CSRF-Token": csrf})
print(c["client_secret"], cookie, csrf)
EOF
}

# get_token URL PATH EXTRA_FORM: prints an access token.
get_token() {
    curl -sk --max-time 10 -d grant_type=client_credentials -d client_id="$CLIENT_ID" \
        -d client_secret="$2" $3 "$1/token" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# check_active URL PATH SECRET TOKEN: fails unless the token introspects active.
check_active() {
    curl -sk --max-time 10 -d token="$4" -d client_id="$CLIENT_ID" -d client_secret="$3" \
        "$1$2" | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("active") else 1)'
}

CLIENT_ID=bench
start_ahdapa https 1
start_ahdapa http 0
read -r SECRET_https COOKIE_https CSRF_https <<<"$(admin_setup "$URL_https")" ||
    die "admin setup on ahdapa (https) failed"
read -r SECRET_http COOKIE_http CSRF_http <<<"$(admin_setup "$URL_http")" ||
    die "admin setup on ahdapa (http) failed"

if [ "$FILL_CLIENTS" -gt 0 ]; then
    for name in https http; do
        url_var=URL_$name cookie_var=COOKIE_$name csrf_var=CSRF_$name
        echo "registering $FILL_CLIENTS more clients on ahdapa ($name)..."
        # wrk runs for its whole -d even after every thread stopped itself,
        # so it runs in the background and is stopped once the node's
        # database holds the clients (read-only count, at most 900 s).
        COUNT=$FILL_CLIENTS FILL_THREADS=2 COOKIE=${!cookie_var} CSRF=${!csrf_var} \
            wrk -t2 -c16 -d900s -s "$ROOT/bench/wrk/fill-clients.lua" \
            "${!url_var}" >"$TMP/fill-$name.out" 2>&1 &
        WRK_PID=$!
        have=0
        for _ in $(seq 900); do
            have=$(python3 -c 'import sqlite3, sys
db = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True, timeout=10)
print(db.execute("SELECT count(*) FROM crdt_rows WHERE tbl = ? AND deleted = 0", ("clients",)).fetchone()[0])' \
                "$TMP/$name/node.db" 2>/dev/null || echo 0)
            [ "$have" -ge "$FILL_CLIENTS" ] && break
            kill -0 "$WRK_PID" 2>/dev/null || break
            sleep 1
        done
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
        WRK_PID=""
        [ "$have" -ge "$FILL_CLIENTS" ] || die "filling clients failed ($have registered)"
        echo "  $have clients registered"
    done
fi

OIDC_URL=""
if [ "$SKIP_OIDC" != 1 ]; then
    SECRET_oidc=$(openssl rand -hex 32)
    port=$(free_port)
    (cd "$OIDC_DIR" && NODE_ENV=production exec node server.mjs "$port" "$CLIENT_ID" "$SECRET_oidc") \
        >"$TMP/oidc.log" 2>&1 &
    PIDS+=($!)
    PID_oidc=${PIDS[-1]}
    OIDC_URL=http://127.0.0.1:$port
    wait_ready oidc-provider "$OIDC_URL/.well-known/openid-configuration" "$PID_oidc" \
        "$TMP/oidc.log" || die "oidc-provider did not start"
fi

# ---- glewlwyd (Debian's package) ----
# Its SQLite schema from the package's docs (which makes the admin user
# admin/password and the database user and client modules), then through
# its admin API: a scope "read", an instance "glwd" of the OAuth2 plugin
# (oauth2-glewlwyd: client_credentials only, ES256 JWTs with a fresh P-256
# key) and a confidential client. That plugin takes client credentials by
# HTTP Basic only (client_secret_post gets 403), so its runs use
# client_secret_basic. Its introspection is not measured.
GLEW_URL=""
if [ "$SKIP_GLEWLWYD" != 1 ] && ! command -v glewlwyd >/dev/null; then
    echo "glewlwyd not installed (apt-get install glewlwyd): skipped" >&2
    SKIP_GLEWLWYD=1
fi
if [ "$SKIP_GLEWLWYD" != 1 ]; then
    gdir=$TMP/glewlwyd
    mkdir -p "$gdir"
    port=$(free_port)
    zcat /usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz |
        python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).executescript(sys.stdin.read())' \
            "$gdir/glewlwyd.db" || die "cannot create glewlwyd's database"
    sed -e "s|^port=.*|port=$port|" -e "s|^external_url=.*|external_url=\"http://127.0.0.1:$port/\"|" \
        -e 's|^log_mode=.*|log_mode="console"|' -e 's|^log_level=.*|log_level="WARNING"|' \
        -e "s|@include \"/etc/glewlwyd/glewlwyd-db.conf\"|database = { type = \"sqlite3\" path = \"$gdir/glewlwyd.db\" };|" \
        /etc/glewlwyd/glewlwyd.conf >"$gdir/glewlwyd.conf"
    glewlwyd --config-file="$gdir/glewlwyd.conf" >"$gdir/log" 2>&1 &
    PIDS+=($!)
    PID_glew=${PIDS[-1]}
    GLEW_URL=http://127.0.0.1:$port
    wait_ready glewlwyd "$GLEW_URL/api/" "$PID_glew" "$gdir/log" || die "glewlwyd did not start"
    openssl ecparam -name prime256v1 -genkey -noout -out "$gdir/ec.key" 2>/dev/null &&
        openssl ec -in "$gdir/ec.key" -pubout -out "$gdir/ec.pub" 2>/dev/null ||
        die "cannot make glewlwyd's signing key"
    SECRET_glew=$(openssl rand -hex 32)
    python3 - "$gdir" "$CLIENT_ID" "$SECRET_glew" <<'PYEOF' || die "glewlwyd setup files"
import json, sys
d, cid, secret = sys.argv[1:]
plugin = {"module": "oauth2-glewlwyd", "name": "glwd", "display_name": "OAuth2", "enabled": True,
          "parameters": {"url": "glwd", "jwt-type": "ecdsa", "jwt-key-size": "256",
                         "key": open(d + "/ec.key").read(), "cert": open(d + "/ec.pub").read(),
                         "access-token-duration": 3600, "refresh-token-duration": 1209600,
                         "code-duration": 600, "refresh-token-rolling": False,
                         "auth-type-code-enabled": False, "auth-type-implicit-enabled": False,
                         "auth-type-password-enabled": False, "auth-type-client-enabled": True,
                         "auth-type-refresh-enabled": False, "scope": []}}
client = {"client_id": cid, "name": "bench", "description": "", "confidential": True,
          "enabled": True, "password": secret, "authorization_type": ["client_credentials"],
          "scope": ["read"], "redirect_uri": []}
scope = {"name": "read", "display_name": "read", "description": "bench",
         "password_required": False, "password_max_age": 0}
for name, doc in (("plugin", plugin), ("client", client), ("scope", scope)):
    json.dump(doc, open(f"{d}/{name}.json", "w"))
PYEOF
    curl -sf -c "$gdir/cookies" -H 'Content-Type: application/json' \
        -d '{"username":"admin","password":"password"}' "$GLEW_URL/api/auth/" >/dev/null ||
        die "glewlwyd admin login failed"
    for what in scope:/api/scope/ plugin:/api/mod/plugin/ client:/api/client/?source=database; do
        curl -sf -b "$gdir/cookies" -H 'Content-Type: application/json' \
            -d @"$gdir/${what%%:*}.json" "$GLEW_URL${what#*:}" >/dev/null ||
            die "glewlwyd: creating the ${what%%:*} failed"
    done
    GLEW_BASIC=$(printf '%s:%s' "$CLIENT_ID" "$SECRET_glew" | base64 -w0)
    TOKEN=$(curl -sf -H "Authorization: Basic $GLEW_BASIC" -d 'grant_type=client_credentials&scope=read' \
        "$GLEW_URL/api/glwd/token" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') ||
        die "no token from glewlwyd"
    case "$TOKEN" in eyJ*.*.*) ;; *) die "glewlwyd did not issue a JWT access token" ;; esac
fi

# ---- measure ----
# Prints "REQS P50_MS P99_MS ERRORS" from wrk's output.
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
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { err += $NF }
    /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END { printf "%s %.3f %.3f %d\n", (rps == "" ? "0" : rps), p50, p99, err }'
}

cpu_ticks() { # utime + stime of PID (all threads), in clock ticks
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}
hwm_mib() {
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}
# rss_sampler PID FILE: writes the largest VmRSS (MiB) seen, twice a second.
rss_sampler() {
    local max=0 v
    while v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null); do
        [ -n "$v" ] && [ "$v" -gt "$max" ] && max=$v && echo "$max" >"$2"
        sleep 0.5
    done
}
secs() { # "20s" / "1m" -> seconds
    awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; if (d ~ /h$/) n *= 3600; print n }'
}
HZ=$(getconf CLK_TCK)

# run_wrk URL SCRIPT CONNS DURATION: sets WRK_RESULT (wrk runs in the
# background so the INT/TERM traps fire at once).
run_wrk() {
    local out=$TMP/wrk.out
    timeout 300 wrk -t"$THREADS" -c"$3" -d"$4" --latency -s "$2" "$1" >"$out" 2>&1 &
    WRK_PID=$!
    if ! wait "$WRK_PID"; then
        WRK_PID=""
        cat "$out" >&2
        return 1
    fi
    WRK_PID=""
    WRK_RESULT=$(parse_wrk <"$out")
}

ROWS=()
# measure LABEL PID URL SCRIPT
measure() {
    local label=$1 pid=$2 url=$3 script=$4 c t0 t1 cpu rss
    for c in $CONNS_LIST; do
        if [ "$WARMUP" != "0" ]; then
            run_wrk "$url" "$script" "$c" "$WARMUP" || die "wrk warm-up ($label) failed"
        fi
        echo 0 >"$TMP/rss"
        rss_sampler "$pid" "$TMP/rss" &
        SAMPLER_PID=$!
        PIDS+=("$SAMPLER_PID")
        t0=$(cpu_ticks "$pid")
        run_wrk "$url" "$script" "$c" "$DURATION" || die "wrk ($label, -c$c) failed"
        t1=$(cpu_ticks "$pid")
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
        unset 'PIDS[-1]'
        rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$TMP/rss")
        cpu=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v d="$(secs "$DURATION")" \
            'BEGIN { printf "%.0f", (b - a) / hz / d * 100 }')
        ROWS+=("$label $c $WRK_RESULT $cpu $rss $(hwm_mib "$pid")")
        echo "  $label -c$c: $WRK_RESULT cpu ${cpu}% rss $rss MiB hwm $(hwm_mib "$pid") MiB" >&2
    done
}

echo "wrk -t$THREADS -c{$CONNS_LIST} -d$DURATION --latency, $(nproc) CPUs, wrk on the same CPUs" >&2
for name in https http; do
    url_var=URL_$name pid_var=PID_$name secret_var=SECRET_$name
    export CLIENT_ID CLIENT_SECRET=${!secret_var} TOKEN_EXTRA="" TOKEN_PATH=/token
    measure "ahdapa-$name token" "${!pid_var}" "${!url_var}" "$ROOT/bench/wrk/token.lua"
    TOKEN=$(get_token "${!url_var}" "$CLIENT_SECRET" "") || die "no token from ahdapa ($name)"
    check_active "${!url_var}" /introspect "$CLIENT_SECRET" "$TOKEN" ||
        die "ahdapa ($name) does not introspect its token as active"
    export TOKEN INTROSPECT_PATH=/introspect
    measure "ahdapa-$name introspect" "${!pid_var}" "${!url_var}" "$ROOT/bench/wrk/introspect.lua"
done
if [ -n "$OIDC_URL" ]; then
    export CLIENT_ID CLIENT_SECRET=$SECRET_oidc TOKEN_EXTRA="" TOKEN_PATH=/token
    TOKEN=$(get_token "$OIDC_URL" "$CLIENT_SECRET" "") || die "no token from oidc-provider"
    case "$TOKEN" in *.*.*) ;; *) die "oidc-provider did not issue a JWT access token" ;; esac
    measure "oidc-provider token" "$PID_oidc" "$OIDC_URL" "$ROOT/bench/wrk/token.lua"
    # A fresh opaque token (the memory adapter is an LRU of 1000 entries).
    TOKEN=$(get_token "$OIDC_URL" "$CLIENT_SECRET" "-d resource=urn:bench:opaque") ||
        die "no opaque token from oidc-provider"
    check_active "$OIDC_URL" /token/introspection "$CLIENT_SECRET" "$TOKEN" ||
        die "oidc-provider does not introspect its token as active"
    export TOKEN INTROSPECT_PATH=/token/introspection
    measure "oidc-provider introspect" "$PID_oidc" "$OIDC_URL" "$ROOT/bench/wrk/introspect.lua"
fi

if [ -n "$GLEW_URL" ]; then
    export CLIENT_ID CLIENT_SECRET=$SECRET_glew TOKEN_EXTRA="&scope=read" TOKEN_PATH=/api/glwd/token \
        TOKEN_BASIC=$GLEW_BASIC
    measure "glewlwyd token" "$PID_glew" "$GLEW_URL" "$ROOT/bench/wrk/token.lua"
    TOKEN_BASIC=""
fi

# ---- openssl speed ----
echo "openssl speed -seconds $SPEED_SECONDS ecdsap256 ..." >&2
SPEED=$(openssl speed -seconds "$SPEED_SECONDS" ecdsap256 2>/dev/null |
    awk '/^ *256 bits ecdsa \(nistp256\)/ { print $(NF-1), $NF }')
read -r SIGN_S VERIFY_S <<<"$SPEED"
[ -n "${SIGN_S:-}" ] || die "cannot parse openssl speed output"

printf '\n%s, %s, wrk -t%s -d%s, %s CPUs; openssl speed ecdsap256 (1 core): sign %s/s verify %s/s\n' \
    "$(date -u +%Y-%m-%d)" "$(openssl version | cut -d' ' -f1-2)" "$THREADS" "$DURATION" \
    "$(nproc)" "$SIGN_S" "$VERIFY_S"
printf '%-26s %5s %10s %8s %8s %6s %6s %7s %8s %8s %9s\n' server/endpoint conns "req/s" "p50 ms" \
    "p99 ms" errors "cpu%" "us/req" "RSS MiB" "HWM MiB" "x openssl"
for row in "${ROWS[@]}"; do
    read -r srv ep c rps p50 p99 err cpu rss hwm <<<"$row"
    ref=$SIGN_S
    [ "$ep" = introspect ] && ref=$VERIFY_S
    printf '%-26s %5s %10.0f %8.3f %8.3f %6d %6s %7.1f %8s %8s %9.2f\n' "$srv $ep" "$c" "$rps" \
        "$p50" "$p99" "$err" "$cpu" "$(awk -v c="$cpu" -v r="$rps" 'BEGIN { print (r > 0 ? c * 1e4 / r : 0) }')" \
        "$rss" "$hwm" "$(awk -v a="$rps" -v b="$ref" 'BEGIN { print a / b }')"
done
echo "(us/req: server CPU microseconds per request, the figure least disturbed by a busy machine;"
echo " RSS: largest VmRSS sampled during the run; HWM: VmHWM since start, which for ahdapa"
echo " includes the 64 MiB argon2id admin login; x openssl: req/s divided by one core's"
echo " ECDSA P-256 sign/s for token, verify/s for introspect)"
