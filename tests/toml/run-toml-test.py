#!/usr/bin/env python3
"""Runs a toml-test decoder over the toml-test suite (TOML 1.0.0 selection).

usage: run-toml-test.py DECODER TOML_TEST_DIR

Walks TOML_TEST_DIR/files-toml-1.0.0. Each valid/*.toml must make DECODER
exit 0 with nothing on stderr and print JSON equal in meaning to the .json
beside it; each invalid/*.toml must make it exit 1 with nothing on stdout.
Prints one line per failure, then "N passed, N failed"; exits 1 if any failed.
Comparison follows the suite's README (upstream runner semantics).
"""

import json
import math
import os
import re
import subprocess
import sys

TIMEOUT = 10  # seconds; a hang is a failure. Upstream allows 1 s, but CI machines are shared and noisy.

SCALAR_TYPES = {
    "string", "integer", "float", "bool",
    "datetime", "datetime-local", "date-local", "time-local",
}

_DATE = r"(\d{4})-(\d{2})-(\d{2})"
_TIME = r"(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
RE_OFFSET_DT = re.compile("^" + _DATE + "T" + _TIME + r"(Z|[+-]\d{2}:\d{2})$")
RE_LOCAL_DT = re.compile("^" + _DATE + "T" + _TIME + "$")
RE_DATE = re.compile("^" + _DATE + "$")
RE_TIME = re.compile("^" + _TIME + "$")


def days_from_civil(y, m, d):
    """Days since 1970-01-01 in the proleptic Gregorian calendar."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def nanos(frac):
    return int((frac or "")[:9].ljust(9, "0"))


def datetime_key(s):
    """A comparable form of an RFC 3339 text: offset date-times become
    instants, local kinds a tuple of fields. None when it does not parse."""
    s = s.replace(" ", "T").replace("t", "T").replace("z", "Z")
    m = RE_OFFSET_DT.match(s)
    if m:
        y, mo, d, h, mi, sec = (int(x) for x in m.groups()[:6])
        off = m.group(8)
        off_s = 0
        if off != "Z":
            off_s = (int(off[1:3]) * 3600 + int(off[4:6]) * 60) * (-1 if off[0] == "-" else 1)
        secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off_s
        return ("instant", secs, nanos(m.group(7)))
    m = RE_LOCAL_DT.match(s)
    if m:
        return ("local", *(int(x) for x in m.groups()[:6]), nanos(m.group(7)))
    m = RE_DATE.match(s)
    if m:
        return ("date", *(int(x) for x in m.groups()))
    m = RE_TIME.match(s)
    if m:
        return ("time", *(int(x) for x in m.groups()[:3]), nanos(m.group(4)))
    return None


def is_tagged(v):
    return (isinstance(v, dict) and set(v) == {"type", "value"}
            and isinstance(v["type"], str) and isinstance(v["value"], str))


def scalar_diff(path, want, got):
    wt, gt = want["type"], got["type"]
    if wt != gt:
        return f"{path}: type {gt!r}, want {wt!r}"
    wv, gv = want["value"], got["value"]
    if wt in ("string", "integer"):
        ok = wv == gv
    elif wt == "bool":
        ok = wv.lower() == gv.lower()
    elif wt == "float":
        if wv.endswith("nan") or gv.endswith("nan"):
            ok = wv.endswith("nan") and gv.endswith("nan")
        else:
            try:
                ok = float(wv) == float(gv)
            except ValueError:
                ok = False
    elif wt in SCALAR_TYPES:
        wk, gk = datetime_key(wv), datetime_key(gv)
        ok = wk == gk if wk is not None and gk is not None else wv == gv
    else:
        ok = wv == gv
    if ok:
        return None
    return f"{path}: {wt} {gv!r}, want {wv!r}"


def diff(path, want, got):
    """Returns a description of the first difference, or None."""
    if is_tagged(want) or is_tagged(got):
        if not (is_tagged(want) and is_tagged(got)):
            return f"{path}: got {json.dumps(got)[:80]}, want {json.dumps(want)[:80]}"
        return scalar_diff(path, want, got)
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{path}: got {type(got).__name__}, want table"
        if set(want) != set(got):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            return f"{path}: keys missing {missing!r}, unexpected {extra!r}"
        for k in want:
            d = diff(f"{path}.{json.dumps(k)}", want[k], got[k])
            if d:
                return d
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{path}: got {type(got).__name__}, want array"
        if len(want) != len(got):
            return f"{path}: array length {len(got)}, want {len(want)}"
        for i, (w, g) in enumerate(zip(want, got)):
            d = diff(f"{path}[{i}]", w, g)
            if d:
                return d
        return None
    return f"{path}: unexpected JSON {json.dumps(want)[:80]} in expected output"


def run(decoder, path):
    with open(path, "rb") as f:
        data = f.read()
    try:
        p = subprocess.run([decoder], input=data, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, b"", b"timeout"
    return p.returncode, p.stdout, p.stderr


def check_valid(decoder, toml_path, json_path):
    rc, out, err = run(decoder, toml_path)
    if rc is None:
        return f"timed out after {TIMEOUT:g}s"
    if rc != 0:
        return f"exit {rc}: {err.decode('utf-8', 'replace').strip()[:200]}"
    if err:
        return f"wrote to stderr: {err.decode('utf-8', 'replace').strip()[:200]}"
    try:
        got = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        return f"output is not JSON: {e}"
    with open(json_path, "rb") as f:
        want = json.loads(f.read().decode("utf-8"))
    return diff("$", want, got)


def check_invalid(decoder, toml_path):
    rc, out, err = run(decoder, toml_path)
    if rc is None:
        return f"timed out after {TIMEOUT:g}s"
    if rc != 1:
        if rc == 0:
            return "accepted invalid input"
        return f"exit {rc} (want 1): {err.decode('utf-8', 'replace').strip()[:200]}"
    if out:
        return "wrote to stdout on invalid input"
    return None


def main(argv):
    if len(argv) != 3:
        print(f"usage: {argv[0]} DECODER TOML_TEST_DIR", file=sys.stderr)
        return 2
    decoder = os.path.abspath(argv[1])
    root = argv[2]
    if not os.access(decoder, os.X_OK):
        print(f"{argv[0]}: decoder {decoder} is not an executable file", file=sys.stderr)
        return 2
    with open(os.path.join(root, "files-toml-1.0.0"), encoding="utf-8") as f:
        cases = [line.strip() for line in f if line.strip().endswith(".toml")]
    passed = failed = 0
    for case in cases:
        path = os.path.join(root, case)
        if case.startswith("valid/"):
            why = check_valid(decoder, path, path[: -len(".toml")] + ".json")
        elif case.startswith("invalid/"):
            why = check_invalid(decoder, path)
        else:
            continue
        if why is None:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {case}: {why}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
