#!/bin/sh
# kem.sh [BUILD_DIR] [SECONDS] - ML-KEM-768 and X-Wing ops/s: ours
# (cry-tool bench) and @noble/post-quantum under node, in the same run,
# one after the other on the same machine, with the ratio per operation.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
SECS=${2:-2}
cd "$ROOT/tests/crypto"
[ -d node_modules/@noble/post-quantum ] || npm ci --no-audit --no-fund >/dev/null
ours=$(mktemp)
theirs=$(mktemp)
trap 'rm -f "$ours" "$theirs"' EXIT
"$BUILD/tools/cry-tool" bench "$SECS" | grep ' ops/s' >"$ours"
node bench-noble.mjs "$SECS" >"$theirs"
echo "operation            ours ops/s   noble ops/s   ratio"
while read -r a b rest; do
  name="$a $b"
  o=$(echo "$rest" | awk '{print $1}')
  t=$(grep "^$a $b " "$theirs" | awk '{print $3}')
  [ -n "$t" ] || continue
  awk -v n="$name" -v o="$o" -v t="$t" 'BEGIN { printf "%-18s %12d %13d   %5.1fx\n", n, o, t, o / t }'
done <"$ours"
