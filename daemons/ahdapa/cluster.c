/*
 * Replication wiring: the CRDT replica holding ahdapa's replicated tables,
 * and (with a [gossip] section) the gossip engine and its driver, whose
 * routes share the main listener; the admin ones need an admin session.
 */
#include <stdio.h>
#include <string.h>

#include "ahdapa.h"
#include "util/log.h"

static const struct crdt_table_def tables[] = {
    {"clients", CRDT_LWW},
    {"scopes", CRDT_LWW},
    {"signing_keys", CRDT_LWW},
    {"revoked_sessions", CRDT_GROW_ONLY},
    {"revoked_tokens", CRDT_GROW_ONLY},
    {"cluster_keys", CRDT_LWW},
    {"cluster_nodes", CRDT_LWW},
};
/* Counted in the first-contact line, in this order. */
static const char *const counted[] = {"clients", "scopes", "signing_keys"};

int ahdapa_cluster_open(struct ahdapa *a, struct ut_err *err)
{
    const struct ahdapa_cfg *c = a->cfg;
    struct crdt_opts co = {
        .origin = a->node_id,
        .tables = tables,
        .n_tables = sizeof(tables) / sizeof(tables[0]),
        .tombstone_ttl_ms = (uint64_t)c->gossip.tombstone_ttl_secs * 1000u,
    };
    int rc;

    if ((rc = crdt_replica_open(&a->replica, a->store, &co, err)) < 0)
        return rc;
    if (!c->gossip.present) {
        ut_log(UT_LOG_INFO, "gossip", "single-node mode (no [gossip] section)");
        return crdt_gc_autorun(a->replica, "gossip", err); /* GC without a gossip driver */
    }
    struct gsp_engine_opts eo = {
        .store = a->store,
        .replica = a->replica,
        .identity = a->identity,
        .self_url = a->issuer,
        .peers = (const char *const *)c->gossip.peers.v,
        .n_peers = c->gossip.peers.n,
        .allowed_node_ids = (const char *const *)c->gossip.allowed_node_ids.v,
        .n_allowed = c->gossip.allowed_node_ids.n,
        .count_tables = counted,
        .n_count_tables = sizeof(counted) / sizeof(counted[0]),
        .log_module = "gossip",
        .header_name = "X-Ahdapa-Node-Id",
        .interval_ms = (uint64_t)c->gossip.interval_secs * 1000u,
        .sessions = 1,
    };
    if ((rc = gsp_engine_new(&a->engine, &eo, err)) < 0)
        return rc;
    struct gsp_driver_opts dopts = {
        .engine = a->engine,
        .ca_file = c->tls.present ? c->tls.ca_file : NULL,
        .header_name = "X-Ahdapa-Node-Id",
        .metrics_prefix = "ahdapa_gossip",
        .run_loop = c->gossip.peers.n > 0,
    };
    return gsp_driver_start(&a->driver, &dopts, err);
}

static int admin_check(struct http_req *r, void *arg)
{
    return ahdapa_require_admin(arg, r);
}

int ahdapa_cluster_routes(struct ahdapa *a, struct ut_err *err)
{
    return gsp_driver_routes(a->driver, a->http, admin_check, a, err);
}

void ahdapa_cluster_reload(struct ahdapa *a, const struct ahdapa_cfg *n)
{
    gsp_driver_reload_peers(a->driver, (const char *const *)n->gossip.peers.v, n->gossip.peers.n);
}

void ahdapa_cluster_close(struct ahdapa *a)
{
    gsp_driver_stop(a->driver);
    a->driver = NULL;
    gsp_engine_free(a->engine);
    a->engine = NULL;
    crdt_replica_free(a->replica);
    a->replica = NULL;
}
