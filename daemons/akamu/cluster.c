/*
 * Replication wiring: the CRDT replica holding the ACME tables, and (with a
 * [gossip] section) the gossip engine and its driver, served on the admin
 * listener only (never on the public ACME listener).
 *
 * Trust: the CA (opened before this) certifies this node's gossip keys
 * (trust.c) and vouches for peers certified by the same CA, so a cluster
 * sharing one CA needs no manual seeding (docs/replication.md, "Trust
 * model"). Seeding still works.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "akamu.h"
#include "util/log.h"

/* Every replicated ACME table; the first four are counted in the spec's
 * first-contact line, in this order. */
const struct crdt_table_def akamu_tables[] = {
    {"accounts", CRDT_LWW},          {"orders", CRDT_LWW},        {"certificates", CRDT_LWW},
    {"authorizations", CRDT_LWW},    {"challenges", CRDT_LWW},    {"eab_usage", CRDT_LWW},
    {"revocations", CRDT_GROW_ONLY}, {"cluster_nodes", CRDT_LWW}, {"account_keys", CRDT_LWW},
    {"eab_keys", CRDT_LWW}, /* admin-made EAB HMAC keys: secrets, sealed in gossip transit */
};
const size_t akamu_n_tables = sizeof(akamu_tables) / sizeof(akamu_tables[0]);
static const char *const counted[] = {"accounts", "orders", "certificates", "authorizations"};
/* Members the ACME layer filters on (akm_each): per-account listings and
 * authorization reuse at every newOrder, challenge resumption at start. */
static const char *const indexed[] = {"account", "status", "reuse"};

int akamu_cluster_open(struct akamu *a, const char *node_id, struct ut_err *err)
{
    const struct akamu_cfg *c = a->cfg;
    struct crdt_opts co = {
        .origin = node_id,
        .tables = akamu_tables,
        .n_tables = akamu_n_tables,
        .tombstone_ttl_ms = (uint64_t)c->gossip.tombstone_ttl_secs * 1000u,
        .indexed_fields = indexed,
        .n_indexed_fields = sizeof(indexed) / sizeof(indexed[0]),
    };
    char self_url[CRY_ENV_ID_MAX + 16];
    char *cert = NULL;
    int rc;

    if ((rc = crdt_replica_open(&a->replica, a->store, &co, err)) < 0)
        return rc;
    a->accounts_h = crdt_table_handle(a->replica, "accounts");
    if (!c->gossip.present) {
        ut_log(UT_LOG_INFO, "gossip", "single-node mode (no [gossip] section)");
        return crdt_gc_autorun(a->replica, "gossip", err); /* GC without a gossip driver */
    }
    if (a->ca == NULL) {
        ut_err_set(err, "gossip: the CA must be open before the cluster (it certifies the keys)");
        return -EINVAL;
    }
    if ((rc = akm_trust_certify(a->ca, a->identity, &cert, err)) < 0) {
        ut_err_prefix(err, "gossip");
        return rc;
    }
    snprintf(self_url, sizeof(self_url), "http://%s", node_id);
    struct gsp_engine_opts eo = {
        .store = a->store,
        .replica = a->replica,
        .identity = a->identity,
        .self_url = self_url,
        .peers = (const char *const *)c->gossip.peers.v,
        .n_peers = c->gossip.peers.n,
        .allowed_node_ids = (const char *const *)c->gossip.allowed_node_ids.v,
        .n_allowed = c->gossip.allowed_node_ids.n,
        .count_tables = counted,
        .n_count_tables = sizeof(counted) / sizeof(counted[0]),
        .log_module = "gossip",
        .header_name = "X-Akamu-Node-Id",
        .interval_ms = (uint64_t)c->gossip.interval_secs * 1000u,
        .sessions = 1,
        .vouch_cert = cert,
        .vouch_verify = akm_trust_verify,
        .vouch_arg = a->ca,
    };
    rc = gsp_engine_new(&a->engine, &eo, err);
    free(cert);
    if (rc < 0)
        return rc;
    ut_log(UT_LOG_INFO, "gossip", "gossip keys certified by the CA", UT_LF_S("node_id", node_id));
    struct gsp_driver_opts dopts = {
        .engine = a->engine,
        .header_name = "X-Akamu-Node-Id",
        .metrics_prefix = "akamu_gossip",
        .run_loop = c->gossip.peers.n > 0,
    };
    return gsp_driver_start(&a->driver, &dopts, err);
}

/* The admin listener is the admin boundary (bind it to an internal
 * network): every request reaching it may use the admin routes. */
static int admin_listener(struct http_req *r, void *arg)
{
    (void)r;
    (void)arg;
    return 1;
}

int akamu_cluster_routes(struct akamu *a, struct http_server *admin, struct ut_err *err)
{
    int rc = gsp_driver_routes(a->driver, admin, admin_listener, a, err);

    return rc < 0 ? rc : akamu_cluster_api_routes(a, admin, err);
}

void akamu_cluster_reload(struct akamu *a, const struct akamu_cfg *n)
{
    gsp_driver_reload_peers(a->driver, (const char *const *)n->gossip.peers.v, n->gossip.peers.n);
}

void akamu_cluster_close(struct akamu *a)
{
    gsp_driver_stop(a->driver);
    a->driver = NULL;
    gsp_engine_free(a->engine);
    a->engine = NULL;
    crdt_replica_free(a->replica);
    a->replica = NULL;
}
