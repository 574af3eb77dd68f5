#!/bin/sh
# run-ct.sh BUILD_DIR: constant-time check of ML-KEM-768 and X-Wing.
#
# Runs BUILD_DIR/tests/unit/crypto/ct_valgrind once per operation under
# valgrind memcheck with the secret inputs marked undefined (see
# tests/crypto/ct_valgrind.c): any branch or memory index that depends on a
# secret is a memcheck error, and --error-exitcode=1 turns it into a failure.
# A last "canary" run branches on a secret on purpose and MUST be flagged,
# so a broken harness (valgrind missing, client requests compiled out)
# cannot pass silently. Prints each failure and finally "N passed, N failed".
#
# Needs a build configured without sanitizers (ASan and valgrind do not mix)
# and with valgrind/memcheck.h present (Debian package valgrind).
set -u
dir=${1:?usage: run-ct.sh BUILD_DIR}
exe=$dir/tests/unit/crypto/ct_valgrind
here=$(cd "$(dirname "$0")" && pwd)
pass=0
fail=0

if [ ! -x "$exe" ] || ! command -v valgrind >/dev/null 2>&1; then
  echo "FAIL setup: need valgrind and $exe (valgrind/memcheck.h missing at configure time?)"
  echo "0 passed, 1 failed"
  exit 1
fi

vg() {
  valgrind --tool=memcheck --error-exitcode=1 --track-origins=yes --num-callers=30 \
    --suppressions="$here/ct_valgrind.supp" "$exe" "$1"
}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

for mode in mlkem-keygen mlkem-encaps mlkem-decaps mlkem-decaps-tampered \
            xwing-keygen xwing-encaps xwing-decaps xwing-decaps-tampered; do
  if vg "$mode" >"$log" 2>&1; then
    echo "ok   $mode ($(grep -o "ERROR SUMMARY: .*" "$log"))"
    pass=$((pass + 1))
  else
    echo "FAIL $mode"
    sed -n '1,80p' "$log"
    fail=$((fail + 1))
  fi
done

# The canary must fail, and for the right reason.
if vg canary >"$log" 2>&1; then
  echo "FAIL canary: valgrind did not flag a secret-dependent branch (harness broken)"
  fail=$((fail + 1))
elif grep -q 'Conditional jump or move depends on uninitialised value' "$log"; then
  echo "ok   canary (deliberate secret-dependent branch was flagged)"
  pass=$((pass + 1))
else
  echo "FAIL canary: failed for another reason"
  sed -n '1,40p' "$log"
  fail=$((fail + 1))
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
