"""Three ahdapa nodes gossiping over TLS, the steps of the cluster demo
(docs: ahdapa-cluster-demo): one CA and a server certificate for
IP:127.0.0.1 shared by the nodes, each with [gossip] peers = the other two,
interval_secs = 2, allowed_node_ids = the three ids, distributed_mode =
"eventual", and alice/alice123 in group admins.

Setup (module fixture): log in as alice on each node, PUT one random 32-byte
cluster key to all three, log in again on node1 (a cookie every node
accepts), then seed each node's /api/gossip/kem-info into the other two.

Then: a public client replicates and its deletion propagates back; a
confidential client gets tokens from every node; a node1 token introspects
active on node2 and node3; a scope definition made on node2 shapes the claims
of a node3 token; an eventual-mode logout on node1 is refused on node2; /jwks
lists all three node keys everywhere; /api/gossip/status shows successful
exchanges with both peers and each node logs its first-contact merges.

Every wait polls with a deadline and says what it waited for."""
import base64
import json
import os
import subprocess
import time

import pytest
import requests

from conftest import Daemon, binary, free_port, hash_password

INTERVAL = 2  # [gossip] interval_secs
CONVERGE = 15  # seconds allowed for a change to reach every node (several rounds)

NODE = """\
[server]
listen = "127.0.0.1:{port}"
issuer = "https://127.0.0.1:{port}"

[database]
url = "sqlite://{db}"

[users]
static_file = "{users}"

[gossip]
peers = [{peers}]
interval_secs = {interval}
allowed_node_ids = [{allowed}]

[cluster]
distributed_mode = "eventual"

[tls]
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{ca}"
"""



def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(tok):
    h, p, _ = tok.split(".")
    return json.loads(b64d(h)), json.loads(b64d(p))


def wait_for(what, fn, timeout=CONVERGE, interval=0.1, detail=None):
    """Polls fn() until it returns a true value (returned); fails with `what`
    and the last value (or detail()) after timeout seconds."""
    end = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except requests.RequestException as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() >= end:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last: "
                        f"{detail() if detail else repr(last)}")
        time.sleep(interval)


class Node:
    def __init__(self, name, port, url, ca):
        self.name, self.port, self.url, self.ca = name, port, url, ca
        self.id = f"127.0.0.1:{port}"
        self.d = None
        self.admin = None  # (cookie, csrf) used for the admin API

    def req(self, method, path, session=None, **kw):
        h = kw.pop("headers", {})
        if session:
            cookie, csrf = session
            h["Cookie"] = f"ahdapa_session={cookie}"
            if method not in ("GET", "HEAD"):
                h["X-CSRF-Token"] = csrf
        return requests.request(method, self.url + path, headers=h, verify=self.ca, timeout=10,
                                **kw)

    def adm(self, method, path, **kw):
        return self.req(method, path, session=self.admin, **kw)

    def login(self):
        r = self.req("POST", "/api/auth/login", json={"username": "alice", "password": "alice123"})
        assert r.status_code == 200, f"{self.name} login: {r.status_code} {r.text}"
        cookie = r.cookies.get("ahdapa_session")
        assert cookie, r.headers.get("Set-Cookie")
        return cookie, r.json()["csrf_token"]

    def token(self, client, **form):
        data = {"grant_type": "client_credentials", "client_id": client["client_id"],
                "client_secret": client["client_secret"]}
        data.update(form)
        return self.req("POST", "/token", data=data)

    def introspect(self, caller, tok):
        return self.req("POST", "/introspect",
                        data={"token": tok, "client_id": caller["client_id"],
                              "client_secret": caller["client_secret"]})

    def log(self):
        return self.d.text()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pki):
    tmp = tmp_path_factory.mktemp("cluster")
    users = tmp / "users.toml"
    users.write_text(f"""\
[[users]]
username = "alice"
password_hash = "{hash_password('alice123')}"
groups = ["admins"]
""")
    ports = []
    while len(ports) < 3:
        p = free_port()
        if p not in ports:
            ports.append(p)
    nodes = [Node(f"node{i + 1}", p, f"https://127.0.0.1:{p}", pki["ca"])
             for i, p in enumerate(ports)]
    try:
        for n in nodes:
            cfg = tmp / f"{n.name}.toml"
            cfg.write_text(NODE.format(
                port=n.port, db=tmp / f"{n.name}.db", users=users, interval=INTERVAL,
                peers=", ".join(f'"{m.url}"' for m in nodes if m is not n),
                allowed=", ".join(f'"{m.id}"' for m in nodes), **pki))
            n.d = Daemon("ahdapa", str(cfg))
        for n in nodes:
            n.d.wait_ready(n.url + "/healthz", n.ca)

        # 1. alice on each node (cookies under each node's local key).
        local = {n.name: n.login() for n in nodes}
        # 2. One cluster key for all three.
        key = base64.b64encode(os.urandom(32)).decode()
        key_ids = set()
        for n in nodes:
            r = n.req("PUT", "/api/admin/keys/cluster", session=local[n.name], json={"key": key})
            assert r.status_code == 200, f"{n.name} PUT cluster key: {r.status_code} {r.text}"
            key_ids.add(r.json()["key_id"])
        assert len(key_ids) == 1, key_ids
        # 3. Re-login on node1: a cookie every node accepts.
        session = nodes[0].login()
        for n in nodes:
            r = n.req("GET", "/api/auth/session", session=session)
            assert r.status_code == 200, f"node1 cookie on {n.name}: {r.status_code} {r.text}"
            n.admin = session
        # 4. Pin each node's gossip keys into the other two.
        infos = {}
        for n in nodes:
            r = n.req("GET", "/api/gossip/kem-info")
            assert r.status_code == 200, r.text
            infos[n.name] = r.json()
            assert infos[n.name]["node_id"] == n.id, infos[n.name]
        for n in nodes:
            for m in nodes:
                if m is not n:
                    r = n.adm("POST", "/api/admin/nodes/seed", json=dict(infos[m.name], url=m.url))
                    assert r.status_code == 200, f"seed {m.name} into {n.name}: {r.status_code} {r.text}"
        yield nodes
    finally:
        for n in nodes:
            if n.d is not None and n.d.proc.poll() is None:
                n.d.stop()


def wait_present(node, path, what):
    return wait_for(f"{what} on {node.name}", lambda: node.adm("GET", path).status_code == 200)


def wait_absent(node, path, what):
    def gone():
        s = node.adm("GET", path).status_code
        assert s in (200, 404), f"{node.name} GET {path}: {s}"
        return s == 404
    return wait_for(f"{what} gone on {node.name}", gone)


@pytest.fixture(scope="module")
def conf_client(cluster):
    """A confidential client (client_secret_post) made on node1, present on all."""
    n1 = cluster[0]
    r = n1.adm("POST", "/api/admin/clients",
               json={"client_name": "svc", "client_type": "confidential",
                     "token_endpoint_auth_method": "client_secret_post", "scope": "read write"})
    assert r.status_code == 201, r.text
    c = r.json()
    for n in cluster[1:]:
        wait_present(n, f"/api/admin/clients/{c['client_id']}", "confidential client")
    return c


def test_public_client_replicates_and_delete_propagates(cluster):
    n1, n2, n3 = cluster
    r = n1.adm("POST", "/api/admin/clients",
               json={"client_name": "spa", "client_type": "public",
                     "redirect_uris": ["https://app.example/cb"]})
    assert r.status_code == 201, r.text
    cid = r.json()["client_id"]
    path = f"/api/admin/clients/{cid}"
    for n in (n2, n3):
        wait_present(n, path, "public client made on node1")
        g = n.adm("GET", path).json()
        assert g["client_name"] == "spa" and g["client_type"] == "public", g
    r = n3.adm("DELETE", path)
    assert r.status_code == 204, r.text
    assert n3.adm("GET", path).status_code == 404
    wait_absent(n1, path, "public client deleted on node3")
    wait_absent(n2, path, "public client deleted on node3")
    lst = n1.adm("GET", "/api/admin/clients").json()["clients"]
    assert all(x["client_id"] != cid for x in lst)


def test_tokens_from_every_node_and_cross_node_introspection(cluster, conf_client):
    n1, n2, n3 = cluster
    tokens = {}
    for n in cluster:
        r = n.token(conf_client)
        assert r.status_code == 200, f"token from {n.name}: {r.status_code} {r.text}"
        t = r.json()
        assert t["token_type"] == "Bearer" and t["access_token"], t
        hdr, cl = jwt_parts(t["access_token"])
        assert cl["iss"] == n.url and cl["client_id"] == conf_client["client_id"], cl
        tokens[n.name] = t["access_token"]
    tok = tokens["node1"]
    for n in (n2, n3):
        r = n.introspect(conf_client, tok)
        assert r.status_code == 200, r.text
        j = r.json()
        assert j.get("active") is True, f"node1 token on {n.name}: {j}"
        assert j["iss"] == n1.url and j["client_id"] == conf_client["client_id"], j
    # ... and the other way round.
    j = n1.introspect(conf_client, tokens["node3"]).json()
    assert j.get("active") is True and j["iss"] == n3.url, j


def test_jwks_lists_every_node_key(cluster, conf_client):
    kids = {}
    for n in cluster:
        r = n.token(conf_client)
        assert r.status_code == 200, r.text
        kids[n.name] = jwt_parts(r.json()["access_token"])[0]["kid"]
    assert len(set(kids.values())) == 3, kids
    for n in cluster:
        def have_all():
            keys = n.req("GET", "/jwks").json()["keys"]
            return set(kids.values()) <= {k["kid"] for k in keys} and keys
        keys = wait_for(f"all three signing keys in {n.name} /jwks", have_all)
        assert all("d" not in k and k["kty"] == "EC" and k["crv"] == "P-256" for k in keys), keys


def test_scope_definition_replicates_and_shapes_claims(cluster):
    n1, n2, n3 = cluster
    r = n1.adm("POST", "/api/admin/clients",
               json={"client_name": "team-svc", "client_type": "confidential",
                     "token_endpoint_auth_method": "client_secret_post", "scope": "read team",
                     "claims": {"team": "blue", "floor": 3}})
    assert r.status_code == 201, r.text
    c = r.json()
    wait_present(n3, f"/api/admin/clients/{c['client_id']}", "client made on node1")
    # Without a definition of "team" the scope releases no claim.
    r = n3.token(c, scope="team")
    assert r.status_code == 200, r.text
    cl = jwt_parts(r.json()["access_token"])[1]
    assert "team" not in cl and "floor" not in cl, cl
    # Defined on node2, it reaches node3 and releases "team" there.
    r = n2.adm("POST", "/api/admin/scopes",
               json={"name": "team", "description": "the caller's team", "claims": ["team"]})
    assert r.status_code == 201, r.text
    wait_present(n3, "/api/admin/scopes/team", "scope made on node2")
    assert n3.adm("GET", "/api/admin/scopes/team").json()["claims"] == ["team"]
    r = n3.token(c, scope="team")
    assert r.status_code == 200, r.text
    cl = jwt_parts(r.json()["access_token"])[1]
    assert cl["iss"] == n3.url and cl["scope"] == "team", cl
    assert cl.get("team") == "blue" and "floor" not in cl, cl


def test_eventual_logout_reaches_other_nodes(cluster):
    n1, n2, n3 = cluster
    cookie, csrf = n1.login()
    for n in (n2, n3):
        r = n.req("GET", "/api/auth/session", session=(cookie, csrf))
        assert r.status_code == 200, f"{n.name}: {r.status_code} {r.text}"
    r = n1.req("POST", "/api/auth/logout", session=(cookie, csrf))
    assert r.status_code == 200, r.text
    assert n1.req("GET", "/api/auth/session", session=(cookie, csrf)).status_code == 401
    start = time.monotonic()
    for n in (n2, n3):
        wait_for(f"the node1 logout to be refused on {n.name}",
                 lambda: n.req("GET", "/api/auth/session", session=(cookie, csrf)).status_code == 401,
                 timeout=3 * INTERVAL + 2, detail=lambda: n.log()[-2000:])
    assert time.monotonic() - start <= 3 * INTERVAL + 2
    # The admin session is a different one and still works everywhere.
    assert n2.adm("GET", "/api/auth/session").status_code == 200


def test_gossip_status_and_first_contact(cluster):
    ids = {n.id for n in cluster}
    for n in cluster:
        seen = {}

        def ok():
            r = n.adm("GET", "/api/gossip/status")
            assert r.status_code == 200, f"{n.name} status: {r.status_code} {r.text}"
            s = seen["status"] = r.json()
            peers = {p["node_id"]: p for p in s["peers"]}
            good = (s["node_id"] == n.id and set(peers) == ids - {n.id}
                    and s["totals"]["exchanges"] > 0 and s["totals"]["failures"] >= 0
                    and all(p["pinned"] and p["last_ok"] and p["last_success_ms"] > 0
                            and p["exchanges"] > 0 for p in peers.values()))
            return s if good else None
        wait_for(f"{n.name} /api/gossip/status to show successful exchanges with both peers", ok,
                 timeout=2 * INTERVAL + 3,
                 detail=lambda: json.dumps(seen.get("status"), indent=1)[:3000])
        others = [m.url for m in cluster if m is not n]

        def first_contacts():
            lines = [ln for ln in n.log().splitlines() if "first-contact merge complete" in ln]
            return lines if all(any(u in ln for ln in lines) for u in others) else None
        wait_for(f"{n.name} to log `first-contact merge complete` for {others}", first_contacts,
                 timeout=2 * INTERVAL + 3, detail=lambda: n.log()[-3000:])
