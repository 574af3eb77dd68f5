#!/bin/sh
# run-fuzz.sh BUILD_DIR SECONDS: runs every libFuzzer target over a copy of
# its checked-in corpus (fuzz/corpus/<name without fuzz_>) for SECONDS.
# A crash, leak or sanitizer report fails that target.
set -u
dir=$1
secs=$2
root=$(cd "$(dirname "$0")/.." && pwd)
pass=0
fail=0
for exe in "$dir"/fuzz/fuzz_*; do
  [ -f "$exe" ] && [ -x "$exe" ] || continue
  name=$(basename "$exe")
  corpus="$root/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  cp -r "$corpus"/. "$work"/ 2>/dev/null
  if "$exe" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$work/" "$work" >"$work.log" 2>&1; then
    echo "ok   $name ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$work.log" | grep -o '[0-9]*$' || echo '?') runs)"
    pass=$((pass + 1))
  else
    echo "FAIL $name"; tail -30 "$work.log"
    fail=$((fail + 1))
  fi
  rm -rf "$work" "$work.log"
done
[ $((pass + fail)) -gt 0 ] || { echo "no fuzz targets in $dir/fuzz"; fail=1; }
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
