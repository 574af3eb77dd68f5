#!/bin/sh
# Regenerates the key tables of docs/config.md from the config schemas
# (build/tools/cfg-doc). Run after adding or changing a config key.
set -eu
cd "$(dirname "$0")/.."
ninja -C build tools/cfg-doc >/dev/null
build/tools/cfg-doc >build/cfg-doc.md
/usr/bin/python3 - <<'PY'
p = "docs/config.md"
s = open(p).read()
begin = s.index("<!-- cfg-doc begin")
begin = s.index("\n", begin) + 1
end = s.index("<!-- cfg-doc end -->")
s = s[:begin] + open("build/cfg-doc.md").read() + s[end:]
open(p, "w").write(s)
PY
echo "docs/config.md updated"
