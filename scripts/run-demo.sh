#!/bin/sh
# The main job: installs dependencies, builds, and runs ahdapa.
# For now (until the three-node cluster demo exists) it starts a single
# ahdapa node on embedded SQLite with contrib/demo/single/ahdapa.toml,
# served over HTTPS with a throwaway CA, checks /healthz, and keeps the node
# running until Ctrl-C.
#   --check   start, check /healthz, stop (non-interactive; used by tests)
# Env: PORT (default 8080), SKIP_DEPS=1.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PORT=${PORT:-8080}
MODE=${1:-}

[ "${SKIP_DEPS:-0}" = 1 ] || ./scripts/install-deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build >/dev/null
fi
ninja -C build >/dev/null

WORK=$(mktemp -d /tmp/ahdapa-demo.XXXXXX)
PID=""
cleanup() {
  if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    i=0
    while kill -0 "$PID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "Generating TLS PKI (P-256 CA + server certificate for 127.0.0.1)..."
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca.key" 2>/dev/null
openssl req -x509 -new -key "$WORK/ca.key" -sha256 -days 1 -subj "/CN=ahdapa demo CA" \
  -out "$WORK/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/key.pem" 2>/dev/null
openssl req -new -key "$WORK/key.pem" -subj "/CN=127.0.0.1" -out "$WORK/srv.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/srv.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 1 -sha256 -extfile "$WORK/ext.cnf" -out "$WORK/cert.pem" 2>/dev/null

sed "s/127.0.0.1:8080/127.0.0.1:$PORT/g" contrib/demo/single/ahdapa.toml >"$WORK/ahdapa.toml"
cat >>"$WORK/ahdapa.toml" <<EOT

[tls]
cert_file = "cert.pem"
key_file = "key.pem"
ca_file = "ca.pem"
EOT

build/daemons/ahdapa/ahdapa --check-config -c "$WORK/ahdapa.toml"
echo "Starting ahdapa on https://127.0.0.1:$PORT ..."
build/daemons/ahdapa/ahdapa -c "$WORK/ahdapa.toml" &
PID=$!

i=0
until curl -fsS --cacert "$WORK/ca.pem" "https://127.0.0.1:$PORT/healthz" >"$WORK/health.json" 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 "$PID" 2>/dev/null; then
    echo "FAIL: ahdapa did not become ready on port $PORT"
    exit 1
  fi
  sleep 0.1
done
echo "GET /healthz -> $(cat "$WORK/health.json")"

if [ "$MODE" = "--check" ]; then
  echo "PASS: ahdapa served /healthz over TLS"
  exit 0
fi
echo
echo "ahdapa is running. Try:"
echo "  curl --cacert $WORK/ca.pem https://127.0.0.1:$PORT/healthz"
echo "Press Ctrl-C to stop."
wait "$PID"
