#!/bin/sh
# The main job: installs dependencies, builds, and runs the spec's
# three-node ahdapa cluster demo (contrib/demo/cluster/run.sh): three nodes
# on 127.0.0.1:8080-8082 with their own SQLite databases, gossiping over
# post-quantum sealed envelopes; prints PASS or FAIL and exits 0 or 1.
#   --interactive   keep the nodes running after the checks (Ctrl-C stops)
# Env: SKIP_DEPS=1 skips the package check; DEMO_TRAFFIC_SECS (default 35).
set -eu
cd "$(dirname "$0")/.."

[ "${SKIP_DEPS:-0}" = 1 ] || ./scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
exec contrib/demo/cluster/run.sh "$@"
