#!/bin/sh
# run-interop.sh PATH_TO_cry-tool [N]: interop of our ML-KEM-768 and X-Wing
# with @noble/post-quantum (version pinned in package.json/package-lock.json)
# over N random seeds (default 25); see interop.mjs for the checks.
# Installs the npm dependencies into tests/crypto/node_modules (gitignored)
# with `npm ci` the first time. Prints each failure and finally
# "N passed, N failed"; exit status 1 on any failure.
set -u
tool=${1:?usage: run-interop.sh PATH_TO_cry-tool [N]}
n=${2:-25}
[ -x "$tool" ] || { echo "FAIL: $tool is not executable"; echo "0 passed, 1 failed"; exit 1; }
tool=$(cd "$(dirname "$tool")" && pwd)/$(basename "$tool")
here=$(cd "$(dirname "$0")" && pwd)
cd "$here" || exit 1
if [ ! -f node_modules/@noble/post-quantum/package.json ]; then
  if ! npm ci --no-audit --no-fund >npm-ci.log 2>&1; then
    echo "FAIL: npm ci in $here"; cat npm-ci.log; rm -f npm-ci.log
    echo "0 passed, 1 failed"
    exit 1
  fi
  rm -f npm-ci.log
fi
exec node interop.mjs "$tool" "$n"
