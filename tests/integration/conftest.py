"""Shared fixtures: binaries, a throwaway PKI, free ports, daemon processes."""
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build"))


def binary(name):
    path = os.path.join(BUILD, "daemons", name, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} not built")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A P-256 CA and a server certificate for IP:127.0.0.1, valid 1 day."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, ca, key, csr, cert = (str(d / n) for n in ("ca.key", "ca.pem", "key.pem", "s.csr", "cert.pem"))
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca_key)
    openssl("req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", "1", "-subj", "/CN=test CA", "-out", ca)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("req", "-new", "-key", key, "-subj", "/CN=127.0.0.1", "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
            "-sha256", "-extfile", str(ext), "-out", cert)
    return {"ca": ca, "cert": cert, "key": key, "dir": str(d)}


class Daemon:
    """A daemon process whose stderr goes to a file we can read."""

    def __init__(self, name, config, env=None, args=()):
        self.log_path = config + ".log"
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([binary(name), "-c", config, *args], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=e)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.text():
                return True
            if self.proc.poll() is not None:
                return needle in self.text()
            time.sleep(0.05)
        return False

    def wait_ready(self, url, verify, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.text()}")
            try:
                r = requests.get(url, verify=verify, timeout=2)
                if r.status_code == 200:
                    return r
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{url} not ready:\n{self.text()}")

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("daemon ignored SIGTERM for %ds" % timeout)
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def daemons():
    started = []

    def start(*a, **kw):
        d = Daemon(*a, **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def hash_password(pw):
    """An argon2id PHC string for pw, made by `ahdapa hash-password`."""
    r = subprocess.run([binary("ahdapa"), "hash-password"], input=pw + "\n", capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()
