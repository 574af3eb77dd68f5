"""The admin web UI (/ui/) in a real browser: tests/browser/ui.mjs drives
Debian's headless chromium (playwright-core) against the three-node TLS
cluster of test_ahdapa_cluster.py (shared cluster key, seeded gossip, alice in
group admins): sign in, clients and scopes made on one node appear on,
and are deleted from, the others through the page; the one-time client
secret; cluster status; logout; the /ui/ security headers. Any console
error or warning, page error or failed request fails it.

The npm packages are installed once with `npm ci` into tests/browser
(node_modules is gitignored). Screenshots go to build-logs/browser/."""
import os
import shutil
import signal
import subprocess

import pytest

from conftest import ROOT
from test_ahdapa_cluster import cluster  # noqa: F401  (module fixture: three nodes)

BROWSER = os.path.join(ROOT, "tests", "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.path.join(ROOT, "build-logs", "browser")
RUN_TIMEOUT = 180  # seconds; ui.mjs bounds itself to 120 s


def npm_ci():
    """Installs the pinned playwright-core once (node_modules is gitignored)."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found in PATH (needed for tests/browser)")
    if os.path.isfile(os.path.join(BROWSER, "node_modules", "playwright-core", "package.json")):
        return
    r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, f"npm ci in {BROWSER} failed:\n{r.stdout}\n{r.stderr}"


def test_admin_ui_in_chromium(cluster, pki):  # noqa: F811
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: install the Debian package chromium "
                    "(scripts/install-deps.sh)")
    npm_ci()
    os.makedirs(SHOTS, exist_ok=True)
    for f in os.listdir(SHOTS):
        if f.endswith(".png"):
            os.unlink(os.path.join(SHOTS, f))
    cmd = ["node", os.path.join(BROWSER, "ui.mjs"), "--ca", pki["ca"], "--out", SHOTS,
           *(n.url for n in cluster)]
    # Own process group: a hung run is killed with its chromium processes.
    p = subprocess.Popen(cmd, cwd=BROWSER, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=dict(os.environ, CHROMIUM=CHROMIUM),
                         start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        stdout, stderr = p.communicate()
        pytest.fail(f"ui.mjs still running after {RUN_TIMEOUT}s:\n{stdout}\n{stderr}")
    out = f"$ {' '.join(cmd)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    logs = "\n".join(f"--- {n.name} log (tail)\n{n.log()[-3000:]}" for n in cluster)
    assert p.returncode == 0, f"browser test failed (exit {p.returncode}):\n{out}\n{logs}"
    assert "PASS" in stdout, out
    shots = sorted(f for f in os.listdir(SHOTS) if f.endswith(".png"))
    assert len(shots) >= 10, f"screenshots in {SHOTS}: {shots}"
    print(out)
