#!/bin/sh
# sim.sh [BUILD_DIR] [sim-bench options...] - gossip convergence of N=1000
# real engines in the in-process simulator (virtual time): rounds to full
# convergence for fan-out 1 and 3, with and without 10% loss, for one
# write and for a batch, next to ceil(log3 N); messages and bytes.
# Example: bench/sim.sh build -n 1000 -b 100 -m both
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
[ $# -gt 0 ] && shift
BIN="$BUILD/tests/sim/sim-bench"
[ -x "$BIN" ] || { echo "sim.sh: $BIN not built (meson -Dtests=true; ninja)" >&2; exit 1; }
exec "$BIN" "$@"
