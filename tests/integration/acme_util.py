"""A tiny raw-JWS ACME client for akamu's integration tests (RFC 8555).

Unlike a real client it lets a test break any part of a request: the
nonce, the signed "url", the key source (jwk or kid), the signature, the
Content-Type, the body itself. Every call returns the requests.Response
untouched; nothing is retried.

    from acme_util import Client, Key

    c = Client(base_url)                       # fetches the directory
    r = c.new_account(contact=["mailto:a@example.com"])
    assert r.status_code == 201 and c.kid == r.headers["Location"]
    r = c.post_as_get(c.kid)                   # signed with c.key, kid c.kid
    r = c.post(url, {"status": "deactivated"}) # a JSON payload

Keys: Key.generate("ES256" | "ES384" | "ES512" | "RS256" | "EdDSA",
bits=2048 for RSA). key.jwk() is the public JWK (dict), key.thumbprint()
its RFC 7638 thumbprint, key.sign(data) a JWS signature (ECDSA as raw
R || S). Helpers build the nested JWS objects: eab() for External Account
Binding (§7.3.4) and key_change_inner() for keyChange (§7.3.5).

Nonces: the client keeps the last Replay-Nonce it saw (any response) and
uses it once; without one it asks newNonce. Pass nonce= to force one.
"""
import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse

import requests
import requests.adapters
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

JOSE = "application/jose+json"
PROBLEM = "application/problem+json"
ERR = "urn:ietf:params:acme:error:"


def b64u(data):
    """base64url without padding (bytes or str in, str out)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(n, length=None):
    length = length or max(1, (n.bit_length() + 7) // 8)
    return b64u(n.to_bytes(length, "big"))


_CURVES = {"ES256": (ec.SECP256R1, hashes.SHA256, 32, "P-256"),
           "ES384": (ec.SECP384R1, hashes.SHA384, 48, "P-384"),
           "ES512": (ec.SECP521R1, hashes.SHA512, 66, "P-521")}


class Key:
    """A private key with its JWS algorithm."""

    def __init__(self, priv, alg):
        self.priv = priv
        self.alg = alg

    @classmethod
    def generate(cls, alg="ES256", bits=2048):
        if alg in _CURVES:
            return cls(ec.generate_private_key(_CURVES[alg][0]()), alg)
        if alg == "RS256":
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits), alg)
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate(), alg)
        raise ValueError(alg)

    def jwk(self):
        """The public JWK (only the RFC 7638 members)."""
        pub = self.priv.public_key()
        if self.alg in _CURVES:
            size, crv = _CURVES[self.alg][2], _CURVES[self.alg][3]
            nums = pub.public_numbers()
            return {"crv": crv, "kty": "EC", "x": _int_b64(nums.x, size), "y": _int_b64(nums.y, size)}
        if self.alg == "RS256":
            nums = pub.public_numbers()
            return {"e": _int_b64(nums.e), "kty": "RSA", "n": _int_b64(nums.n)}
        from cryptography.hazmat.primitives import serialization
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64u(raw)}

    def thumbprint(self):
        """RFC 7638 SHA-256 thumbprint, base64url."""
        canon = json.dumps(self.jwk(), sort_keys=True, separators=(",", ":"))
        return b64u(hashlib.sha256(canon.encode()).digest())

    def sign(self, data):
        if self.alg in _CURVES:
            _, h, size, _ = _CURVES[self.alg]
            r, s = decode_dss_signature(self.priv.sign(data, ec.ECDSA(h())))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if self.alg == "RS256":
            return self.priv.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.priv.sign(data)


def jws(key, payload, header, alg=None, mac_key=None):
    """A flattened JWS (dict). payload: None -> "" (POST-as-GET), bytes/str
    as is, anything else JSON-encoded. With mac_key the signature is an HMAC
    (header "alg" HS256/384/512), else key signs."""
    if payload is None:
        body = b""
    elif isinstance(payload, (bytes, str)):
        body = payload.encode() if isinstance(payload, str) else payload
    else:
        body = json.dumps(payload).encode()
    hdr = dict(header)
    if "alg" not in hdr:
        hdr["alg"] = alg or key.alg
    prot = b64u(json.dumps(hdr))
    pl = b64u(body)
    signing_input = f"{prot}.{pl}".encode()
    if mac_key is not None:
        h = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[hdr["alg"]]
        sig = hmac.new(mac_key, signing_input, h).digest()
    else:
        sig = key.sign(signing_input)
    return {"protected": prot, "payload": pl, "signature": b64u(sig)}


def eab(account_key, kid, hmac_key_b64, url, alg="HS256", payload=None):
    """The externalAccountBinding JWS for newAccount (§7.3.4): the account's
    public JWK, MACed with the EAB key (base64url text). payload overrides
    the bound JWK (to test a mismatch)."""
    return jws(None, account_key.jwk() if payload is None else payload,
               {"alg": alg, "kid": kid, "url": url}, mac_key=b64u_decode(hmac_key_b64))


def key_change_inner(new_key, account_url, old_jwk, url, payload=None):
    """The inner JWS of keyChange (§7.3.5): signed by the new key, "jwk" the
    new key, payload {"account", "oldKey"} (or payload as given)."""
    body = {"account": account_url, "oldKey": old_jwk} if payload is None else payload
    return jws(new_key, body, {"jwk": new_key.jwk(), "url": url})


class Client:
    """One ACME account's view of the server: a key, its account URL (kid)
    once known, and the nonce in hand."""

    def __init__(self, base_url, key=None, alg="ES256", verify=None, timeout=10):
        self.base = base_url.rstrip("/")
        self.key = key or Key.generate(alg)
        self.kid = None
        self.nonce = None
        self.s = requests.Session()
        self.s.verify = verify if verify is not None else True
        self.timeout = timeout
        self.dir = self.s.get(self.base + "/acme/directory", timeout=timeout).json()

    def url(self, name):
        """A directory URL by name ("newAccount", "keyChange", ...)."""
        return self.dir[name]

    def _keep_nonce(self, r):
        if "Replay-Nonce" in r.headers:
            self.nonce = r.headers["Replay-Nonce"]

    def new_nonce(self):
        """A fresh nonce from newNonce (also kept as the next one to use)."""
        r = self.s.head(self.dir["newNonce"], timeout=self.timeout)
        self.nonce = r.headers["Replay-Nonce"]
        return self.nonce

    def take_nonce(self):
        n = self.nonce or self.new_nonce()
        self.nonce = None
        return n

    def body(self, url, payload, key=None, kid=None, jwk=False, nonce=None, url_override=None,
             alg=None, header=None):
        """The signed JWS (dict) of a request, without sending it. Key source:
        jwk=True -> "jwk" of key; else kid (default self.kid). header: extra
        or replacing protected-header members (value None removes one)."""
        key = key or self.key
        hdr = {"alg": alg or key.alg, "nonce": nonce if nonce is not None else self.take_nonce(),
               "url": url_override if url_override is not None else url}
        if jwk:
            hdr["jwk"] = key.jwk()
        else:
            hdr["kid"] = kid or self.kid
        for k, v in (header or {}).items():
            if v is None:
                hdr.pop(k, None)
            else:
                hdr[k] = v
        return jws(key, payload, hdr)

    def post(self, url, payload, key=None, kid=None, jwk=False, nonce=None, url_override=None,
             content_type=JOSE, alg=None, header=None, raw=None, tamper=None):
        """Signs and POSTs. payload None is POST-as-GET. raw (bytes) replaces
        the whole body; tamper(dict) may edit the JWS before it is sent."""
        if raw is None:
            obj = self.body(url, payload, key=key, kid=kid, jwk=jwk, nonce=nonce,
                            url_override=url_override, alg=alg, header=header)
            if tamper:
                tamper(obj)
            raw = json.dumps(obj).encode()
        r = self.s.post(url, data=raw, headers={"Content-Type": content_type},
                        timeout=self.timeout)
        self._keep_nonce(r)
        return r

    def post_as_get(self, url, **kw):
        return self.post(url, None, **kw)

    def new_account(self, contact=None, tos=True, eab_obj=None, only_existing=False, key=None,
                    extra=None, **kw):
        """newAccount with this client's key (jwk); remembers the account URL
        (Location) as kid on 200/201. tos None leaves termsOfServiceAgreed
        out; extra adds payload members; kw go to post()."""
        payload = {}
        if contact is not None:
            payload["contact"] = contact
        if tos is not None:
            payload["termsOfServiceAgreed"] = tos
        if only_existing:
            payload["onlyReturnExisting"] = True
        if eab_obj is not None:
            payload["externalAccountBinding"] = eab_obj
        payload.update(extra or {})
        r = self.post(self.dir["newAccount"], payload, key=key, jwk=True, **kw)
        if r.status_code in (200, 201) and key is None:
            self.kid = r.headers["Location"]
        return r

    def eab(self, kid, hmac_key_b64, **kw):
        """eab() for this client's key and newAccount URL."""
        return eab(self.key, kid, hmac_key_b64, self.dir["newAccount"], **kw)

    def key_change(self, new_key, **kw):
        """keyChange to new_key; on 200 the client switches to it. kw go to
        key_change_inner (payload=) or post()."""
        url = self.dir["keyChange"]
        inner_kw = {k: kw.pop(k) for k in ("payload",) if k in kw}
        inner = key_change_inner(new_key, kw.pop("account_url", self.kid),
                                 kw.pop("old_jwk", self.key.jwk()), kw.pop("inner_url", url),
                                 **inner_kw)
        r = self.post(url, inner, **kw)
        if r.status_code == 200:
            self.key = new_key
        return r


def problem(r, status=None, type_=None):
    """Asserts r is an RFC 7807 ACME problem (Content-Type, type namespace,
    a Replay-Nonce) with the given HTTP status and short type; returns the
    document."""
    assert r.headers.get("Content-Type", "").startswith(PROBLEM), (r.status_code, r.text)
    doc = r.json()
    assert doc["type"].startswith(ERR), doc
    assert r.headers.get("Replay-Nonce"), r.headers
    if status is not None:
        assert r.status_code == status, (r.status_code, r.text)
    if type_ is not None:
        assert doc["type"] == ERR + type_, (r.status_code, r.text)
    return doc


CONF = """\
listen_addr = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"
admin_listen_addr = "127.0.0.1:{admin}"

[database]
url = "sqlite://{dir}/akamu.db"

[ca]
key_file = "{dir}/ca.key"
cert_file = "{dir}/ca.pem"
"""


def write_config(directory, port, admin, server=None, eab_keys=None, token_file=None, extra=""):
    """Writes directory/akamu.toml for a plain-HTTP akamu on 127.0.0.1 (the CA
    is generated in directory on first start) and returns its path.
    server: dict of [server] keys (Python values: bool, int, str);
    eab_keys: {kid: base64url key}; token_file: [admin] token_file;
    extra: TOML text appended as is."""
    def toml(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return json.dumps(v)

    text = CONF.format(port=port, admin=admin, dir=directory)
    if server:
        text += "\n[server]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in server.items())
    if eab_keys:
        text += "\n[server.eab_keys]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in eab_keys.items())
    if token_file:
        text += f"\n[admin]\ntoken_file = {toml(str(token_file))}\n"
    text += extra
    path = f"{directory}/akamu.toml"
    with open(path, "w") as f:
        f.write(text)
    return path


@contextlib.contextmanager
def challtestsrv(directory, serve=False):
    """Runs Debian's pebble-challtestsrv on free loopback ports for the
    duration of the with block: a DNS server answering every A query with
    127.0.0.1 (no AAAA), holding the TXT records set through its management
    API, and with serve=True its http-01 and tls-alpn-01 responders too.
    Yields {"dns", "mgmt" (management base URL), "url" (the same),
    "http", "alpn" (ports; None unless serve)}. Fails the test when it does
    not answer within 10 s; always stops it."""
    import pytest
    from conftest import free_port

    if shutil.which("pebble-challtestsrv") is None:
        pytest.fail("pebble-challtestsrv not installed (Debian package pebble)")
    ports = {"dns": free_port(), "mgmt": free_port(), "http": None, "alpn": None}
    if serve:
        ports["http"], ports["alpn"] = free_port(), free_port()
    log_path = os.path.join(str(directory), "challtestsrv.log")
    with open(log_path, "wb") as log:
        p = subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", f"127.0.0.1:{ports['dns']}",
             "-http01", f"127.0.0.1:{ports['http']}" if serve else "", "-https01", "",
             "-tlsalpn01", f"127.0.0.1:{ports['alpn']}" if serve else "",
             "-management", f"127.0.0.1:{ports['mgmt']}"],
            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['mgmt']}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.post(url + "/clear-txt", json={"host": "ready.test."}, timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or p.poll() is not None:
                    with open(log_path) as f:
                        pytest.fail("pebble-challtestsrv did not start: " + f.read())
                time.sleep(0.1)
        yield dict(ports, mgmt=url, url=url)
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Http01Responder(http.server.ThreadingHTTPServer):
    """An http-01 responder on 127.0.0.1:port (0: any free port, see .port):
    GET /.well-known/acme-challenge/<token> answers answers[token] (the key
    authorization), anything else 404. Serves from a daemon thread; close()
    stops it."""

    def __init__(self, port=0):
        self.answers = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                tok = self.path.rsplit("/", 1)[-1]
                body = outer.answers.get(tok)
                if not self.path.startswith("/.well-known/acme-challenge/") or body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *a):
                pass

        super().__init__(("127.0.0.1", port), Handler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.shutdown()
        self.server_close()


class Router(requests.adapters.HTTPAdapter):
    """Sends every request of a session to the port pick() returns, keeping
    the URL's path: a load balancer in front of the nodes."""

    def __init__(self, pick):
        super().__init__()
        self.pick = pick

    def send(self, request, **kw):
        u = urllib.parse.urlsplit(request.url)
        request.url = u._replace(netloc=f"127.0.0.1:{self.pick()}").geturl()
        return super().send(request, **kw)
