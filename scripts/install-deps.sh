#!/bin/sh
# Installs every build and test dependency on a fresh Debian 12 machine.
# Idempotent: run as root (or with sudo available); does nothing when all
# packages are present already.
set -eu

PKGS="
  build-essential pkg-config meson ninja-build clang libclang-rt-14-dev
  clang-format valgrind git ca-certificates openssl curl
  libssl-dev libevent-dev libcurl4-openssl-dev libjansson-dev
  libsqlite3-dev sqlite3 libcmocka-dev libargon2-dev libcbor-dev libzstd-dev
  libkrb5-dev libpq-dev
  python3 python3-pytest python3-requests
  nodejs npm wrk nginx-light chromium
  libc-ares-dev certbot lego pebble python3-acme python3-josepy faketime
"

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done

# nodejs/npm may come from elsewhere on some images: accept any working node.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  missing=$(printf '%s\n' $missing | grep -vx -e nodejs -e npm | tr '\n' ' ' || true)
fi

missing=$(echo $missing)
if [ -n "$missing" ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -q --no-install-recommends $missing
else
  echo "install-deps: all Debian packages present"
fi
