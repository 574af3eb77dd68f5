#!/bin/sh
# The whole test suite, from a fresh Debian 12 machine: installs what it
# needs, builds twice (normal, ASan+UBSan), runs the unit tests under both,
# the toml-test conformance suite under both, the ML-KEM constant-time and
# interop checks, each fuzzer for a few seconds, the integration tests, and
# the spec's three-node cluster demo and akamu's cluster demo behind nginx.
# The last line is "N passed, N failed".
#
# Env: SHARED_DIR (default ../shared), FUZZ_SECONDS (default 10),
#      SKIP_DEPS=1 to skip the package check.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED_DIR=${SHARED_DIR:-$ROOT/../shared}
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
PY=/usr/bin/python3
LOG=$ROOT/build-logs
mkdir -p "$LOG"

[ "${SKIP_DEPS:-0}" = 1 ] || ./scripts/install-deps.sh || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }

PASS=0
FAIL=0
FAILED=""
add() { # add PASSED FAILED NAME
  PASS=$((PASS + $1)); FAIL=$((FAIL + $2))
  [ "$2" -eq 0 ] || FAILED="$FAILED $3"
  echo "== $3: $1 passed, $2 failed"
}

# build DIR [meson options...]: configure (once) and compile.
build() {
  dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >"$LOG/$(basename "$dir")-setup.log" 2>&1 ||
      { cat "$LOG/$(basename "$dir")-setup.log"; return 1; }
  fi
  ninja -C "$dir" >"$LOG/$(basename "$dir")-build.log" 2>&1 ||
    { tail -50 "$LOG/$(basename "$dir")-build.log"; return 1; }
}

# meson_unit DIR NAME: run the unit suite; count cmocka cases (each binary
# prints "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)"), and count a
# binary that failed without a cmocka summary (crash, sanitizer) as one.
meson_unit() {
  out="$LOG/$2-unit.log"
  meson test -C "$1" --suite unit --print-errorlogs >"$out" 2>&1
  tlog="$1/meson-logs/testlog.txt"
  bad_bins=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$out" | tail -1)
  to=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$out" | tail -1)
  bad_bins=$(( ${bad_bins:-0} + ${to:-0} ))
  ok=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$tlog" | awk '{s+=$1} END {print s+0}')
  bad=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$tlog" | awk '{s+=$1} END {print s+0}')
  [ "$bad" -ge "$bad_bins" ] || bad=$bad_bins
  if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then bad=1; fi
  [ "$bad" -eq 0 ] || grep -E '^ *[0-9]+/[0-9]+ .*(FAIL|TIMEOUT)' "$out"
  [ "$bad" -eq 0 ] || tail -60 "$out"
  add "$ok" "$bad" "unit tests ($2)"
}

# counted CMD... NAME: a runner whose last line is "N passed, N failed".
counted() {
  name=$1; shift
  out="$LOG/$(echo "$name" | tr ' /()+' '_____').log"
  "$@" >"$out" 2>&1
  rc=$?
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
  p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p'); p=${p:-0}
  f=$(echo "$line" | sed -n 's/.*passed, \([0-9]*\) failed.*/\1/p'); f=${f:-0}
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  [ "$f" -eq 0 ] || tail -40 "$out"
  add "$p" "$f" "$name"
}

export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0

echo "== normal build"
if build build; then
  meson_unit build normal
  counted "toml-test (normal)" $PY tests/toml/run-toml-test.py build/tools/toml-decode "$SHARED_DIR/vectors/toml-test"
  counted "ML-KEM constant time (valgrind)" ./tests/crypto/run-ct.sh build
  counted "KEM interop with @noble/post-quantum" ./tests/crypto/run-interop.sh build/tools/cry-tool
else
  add 0 1 "normal build"
fi

echo "== ASan+UBSan build"
if build build-asan -Db_sanitize=address,undefined -Db_lundef=false \
     -Dc_args=-fno-sanitize-recover=all -Dc_link_args=-fno-sanitize-recover=all; then
  meson_unit build-asan asan
  counted "toml-test (asan)" $PY tests/toml/run-toml-test.py build-asan/tools/toml-decode "$SHARED_DIR/vectors/toml-test"
else
  add 0 1 "asan build"
fi

echo "== fuzzers (${FUZZ_SECONDS}s each)"
if CC=clang build build-fuzz -Dfuzz=true -Dtests=false -Dc_args=-fsanitize=fuzzer-no-link \
     -Db_sanitize=address,undefined -Db_lundef=false; then
  counted "fuzz" ./tests/run-fuzz.sh build-fuzz "$FUZZ_SECONDS"
else
  add 0 1 "fuzz build"
fi

echo "== integration tests"
if [ -x build/daemons/ahdapa/ahdapa ]; then
  counted "integration" env BUILD_DIR="$ROOT/build" SHARED_DIR="$SHARED_DIR" \
    $PY tests/integration/run.py
else
  add 0 1 "integration (no build)"
fi

echo "== the spec's three-node cluster demo"
if [ -x build/daemons/ahdapa/ahdapa ]; then
  if contrib/demo/cluster/run.sh >"$LOG/cluster-demo.log" 2>&1; then
    add 1 0 "cluster demo (contrib/demo/cluster/run.sh)"
  else
    tail -40 "$LOG/cluster-demo.log"
    add 0 1 "cluster demo (contrib/demo/cluster/run.sh)"
  fi
else
  add 0 1 "cluster demo (no build)"
fi

echo "== akamu's cluster demo behind nginx (certbot, lego, kill -9, a fourth node)"
if [ -x build/daemons/akamu/akamu ]; then
  if AKAMU_BIN="$ROOT/build/daemons/akamu/akamu" contrib/demo/acme-cluster/run.sh \
       >"$LOG/acme-cluster-demo.log" 2>&1; then
    add 1 0 "acme cluster demo (contrib/demo/acme-cluster/run.sh)"
  else
    tail -60 "$LOG/acme-cluster-demo.log"
    add 0 1 "acme cluster demo (contrib/demo/acme-cluster/run.sh)"
  fi
else
  add 0 1 "acme cluster demo (no build)"
fi

[ -z "$FAILED" ] || echo "failed parts:$FAILED"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
