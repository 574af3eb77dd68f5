"""akamu with real, unmodified ACME clients from Debian: certbot (standalone
http-01, then renew and revoke) and lego (http-01, dns-01 with a wildcard,
tls-alpn-01, External Account Binding).

Everything stays on 127.0.0.1: akamu serves ACME over TLS (the test PKI's
server certificate; the clients trust its CA through REQUESTS_CA_BUNDLE and
LEGO_CA_CERTIFICATES) and sends every validation lookup to
pebble-challtestsrv (Debian's pebble package) as its DNS server, which
answers A queries for any name with 127.0.0.1 and holds the dns-01 TXT
records lego's exec hook sets through its management API. The clients'
challenge servers listen on the unprivileged ports akamu validates against
([server] http_validation_port / tls_alpn_validation_port).

Each issued chain must verify with `openssl verify` against akamu's CA and
carry exactly the requested names."""
import base64
import os
import subprocess

import acme_util
import pytest
import requests

from conftest import free_port

CONF = """\
listen_addr = "127.0.0.1:{port}"
base_url = "https://127.0.0.1:{port}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{db}"

[ca]
key_file = "{dir}/ca.key"
cert_file = "{dir}/ca.pem"
validity_days = 30

[server]
http_validation_port = {http_port}
tls_alpn_validation_port = {alpn_port}
dns_resolver_addr = "127.0.0.1:{dns_port}"

[server.eab_keys]
{eab_kid} = "{eab_key}"

[tls]
enabled = true
cert_file = "{cert}"
key_file = "{key}"
"""

CLIENT_TIMEOUT = 120  # seconds for one client run (validation included)


def run(cmd, env=None, timeout=CLIENT_TIMEOUT):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p


def san_names(pem_path):
    """The DNS and IP names of a PEM certificate, via openssl."""
    out = subprocess.run(["openssl", "x509", "-in", pem_path, "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True, check=True).stdout
    names = set()
    for part in out.split("\n", 1)[1].replace("\n", ",").split(","):
        part = part.strip()
        if part.startswith("DNS:"):
            names.add(part[4:])
        elif part.startswith("IP Address:"):
            names.add(part[11:])
    return names


def verify_chain(ca_pem, pem_path):
    """openssl verify of the leaf (first block) against the CA, as a TLS server."""
    r = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", ca_pem, pem_path],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), r.stdout + r.stderr


def serial_of(pem_path):
    out = subprocess.run(["openssl", "x509", "-in", pem_path, "-noout", "-serial"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1].lower()


@pytest.fixture(scope="module")
def challtestsrv(tmp_path_factory):
    with acme_util.challtestsrv(tmp_path_factory.mktemp("challtestsrv"), serve=False) as srv:
        yield srv


@pytest.fixture(scope="module")
def akamu(tmp_path_factory, pki, challtestsrv):
    from conftest import Daemon

    d = tmp_path_factory.mktemp("akamu")
    port, admin = free_port(), free_port()
    eab_key = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    info = {
        "url": f"https://127.0.0.1:{port}/acme/directory",
        "ca": str(d / "ca.pem"),
        "http_port": free_port(),
        "alpn_port": free_port(),
        "eab_kid": "lego-eab",
        "eab_key": eab_key,
        "dir": d,
        "base": f"https://127.0.0.1:{port}",
    }
    cfg = d / "akamu.toml"
    cfg.write_text(CONF.format(port=port, admin=admin, db=d / "akamu.db", dir=d,
                               http_port=info["http_port"], alpn_port=info["alpn_port"],
                               dns_port=challtestsrv["dns"], eab_kid=info["eab_kid"],
                               eab_key=eab_key, cert=pki["cert"], key=pki["key"]))
    daemon = Daemon("akamu", str(cfg))
    try:
        daemon.wait_ready(f"https://127.0.0.1:{port}/healthz", pki["ca"])
        info["daemon"] = daemon
        yield info
    finally:
        daemon.stop()


def certbot(akamu, pki, tmp, *args):
    base = ["certbot", "--non-interactive", "--config-dir", str(tmp / "etc"), "--work-dir",
            str(tmp / "work"), "--logs-dir", str(tmp / "logs"), "--server", akamu["url"]]
    return run(base + list(args), env={"REQUESTS_CA_BUNDLE": pki["ca"]})


def crl_text(akamu, pki):
    r = requests.get(akamu["base"] + "/acme/crl", verify=pki["ca"], timeout=10)
    assert r.status_code == 200, r.text
    p = subprocess.run(["openssl", "crl", "-inform", "DER", "-noout", "-text", "-CAfile",
                        akamu["ca"]], input=r.content, capture_output=True)
    assert p.returncode == 0, p.stderr.decode()
    assert b"verify OK" in p.stderr + p.stdout, p.stderr.decode()
    return p.stdout.decode()


def test_certbot_standalone_issue_renew_revoke(akamu, pki, tmp_path):
    name = "certbot.akamu.test"
    certbot(akamu, pki, tmp_path, "certonly", "--standalone", "--agree-tos",
            "-m", "ops@example.com", "--http-01-port", str(akamu["http_port"]),
            "--http-01-address", "127.0.0.1", "-d", name)
    live = tmp_path / "etc" / "live" / name
    verify_chain(akamu["ca"], str(live / "cert.pem"))
    verify_chain(akamu["ca"], str(live / "fullchain.pem"))
    assert san_names(str(live / "cert.pem")) == {name}
    first = serial_of(str(live / "cert.pem"))

    certbot(akamu, pki, tmp_path, "renew", "--force-renewal", "--no-random-sleep-on-renew")
    renewed = serial_of(str(live / "cert.pem"))
    assert renewed != first, "renew must issue a new certificate"
    verify_chain(akamu["ca"], str(live / "cert.pem"))

    certbot(akamu, pki, tmp_path, "revoke", "--cert-name", name, "--reason", "keycompromise",
            "--no-delete-after-revoke")
    text = crl_text(akamu, pki)
    assert renewed.upper() in text.replace(":", "").upper(), text
    assert "Key Compromise" in text, text


def lego(akamu, pki, tmp, *args, env=None):
    e = {"LEGO_CA_CERTIFICATES": pki["ca"]}
    e.update(env or {})
    return run(["lego", "--server", akamu["url"], "--accept-tos", "--email", "ops@example.com",
                "--path", str(tmp / "lego")] + list(args), env=e)


def lego_cert(tmp, name):
    return str(tmp / "lego" / "certificates" / f"{name.replace('*', '_')}.crt")


def test_lego_http01(akamu, pki, tmp_path):
    name = "lego-http.akamu.test"
    lego(akamu, pki, tmp_path, "--http", "--http.port", f"127.0.0.1:{akamu['http_port']}",
         "-d", name, "run")
    verify_chain(akamu["ca"], lego_cert(tmp_path, name))
    assert san_names(lego_cert(tmp_path, name)) == {name}


def test_lego_dns01_wildcard(akamu, pki, tmp_path, challtestsrv):
    hook = tmp_path / "dns-hook.sh"
    hook.write_text(f"""#!/bin/sh
# lego exec provider: $1 = present|cleanup, $2 = FQDN, $3 = TXT value.
case "$1" in
  present) curl -sf -X POST -d "{{\\"host\\":\\"$2\\",\\"value\\":\\"$3\\"}}" {challtestsrv['mgmt']}/set-txt ;;
  cleanup) curl -sf -X POST -d "{{\\"host\\":\\"$2\\"}}" {challtestsrv['mgmt']}/clear-txt ;;
esac
""")
    hook.chmod(0o755)
    lego(akamu, pki, tmp_path, "--dns", "exec", "--dns.resolvers",
         f"127.0.0.1:{challtestsrv['dns']}", "--dns.disable-cp",
         "-d", "*.wild.akamu.test", "-d", "wild.akamu.test", "run",
         env={"EXEC_PATH": str(hook), "EXEC_PROPAGATION_TIMEOUT": "10",
              "EXEC_POLLING_INTERVAL": "1"})
    crt = lego_cert(tmp_path, "*.wild.akamu.test")
    verify_chain(akamu["ca"], crt)
    assert san_names(crt) == {"*.wild.akamu.test", "wild.akamu.test"}


def test_lego_tls_alpn01(akamu, pki, tmp_path):
    name = "lego-alpn.akamu.test"
    lego(akamu, pki, tmp_path, "--tls", "--tls.port", f"127.0.0.1:{akamu['alpn_port']}",
         "-d", name, "run")
    verify_chain(akamu["ca"], lego_cert(tmp_path, name))
    assert san_names(lego_cert(tmp_path, name)) == {name}


def test_lego_eab(akamu, pki, tmp_path):
    name = "lego-eab.akamu.test"
    lego(akamu, pki, tmp_path, "--eab", "--kid", akamu["eab_kid"], "--hmac", akamu["eab_key"],
         "--http", "--http.port", f"127.0.0.1:{akamu['http_port']}", "-d", name, "run")
    verify_chain(akamu["ca"], lego_cert(tmp_path, name))
    # The key is spent: a second account with it is refused.
    p = subprocess.run(["lego", "--server", akamu["url"], "--accept-tos", "--email",
                        "other@example.com", "--path", str(tmp_path / "lego2"), "--eab", "--kid",
                        akamu["eab_kid"], "--hmac", akamu["eab_key"], "--http", "--http.port",
                        f"127.0.0.1:{akamu['http_port']}", "-d", name, "run"],
                       capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                       env=dict(os.environ, LEGO_CA_CERTIFICATES=pki["ca"]))
    assert p.returncode != 0, p.stdout
    assert "unauthorized" in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
