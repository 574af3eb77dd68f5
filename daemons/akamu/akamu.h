/*
 * akamu.h - the daemon's shared state, handed to every ACME resource file.
 */
#ifndef AKAMU_H
#define AKAMU_H

#include "cfg/cfg.h"
#include "http/http.h"
#include "crdt/crdt.h"
#include "crypto/envelope.h"
#include "gossip/driver.h"
#include "gossip/engine.h"
#include "store/store.h"

struct akm_ca;     /* ca.h */
struct akm_nonces; /* nonce.h */
struct akm_va;     /* acme.h: the validation pool */
struct akm_fwd;    /* forward.c: the tag -> peer map */
struct akm_leases; /* lease.c: order ownership (validations in flight) */

struct akamu {
    struct akamu_cfg *cfg; /* owned */
    char node_id[CRY_ENV_ID_MAX + 1];
    char base[512]; /* base_url without a trailing '/' */
    char tag[9];    /* this node's id/nonce tag (nonce.h) */
    struct akm_ca *ca;
    struct akm_nonces *nonces;
    struct akm_va *va;
    struct store *store;
    struct http_server *acme;      /* public ACME listener */
    struct http_server *admin;     /* admin API + gossip listener */
    struct cry_identity *identity; /* this node's gossip keys (node_keys) */
    struct crdt_replica *replica;  /* the replicated ACME tables */
    int accounts_h;                /* crdt_table_handle of "accounts" (auth.c's cache) */
    struct gsp_engine *engine;     /* NULL in single-node mode */
    struct gsp_driver *driver;     /* NULL in single-node mode */
    struct akm_fwd *fwd;           /* cluster forwarding (forward.c) */
    struct akm_leases *leases;     /* order ownership (lease.c; made with fwd) */
};

int akamu_health_routes(struct akamu *k, struct http_server *s, struct ut_err *err);
/* GET /api/gossip/kem-info, on the admin listener. */
int akamu_gossip_routes(struct akamu *k, struct http_server *s, struct ut_err *err);

/* cluster.c: replica, gossip engine and driver; routes on the admin listener. */
int akamu_cluster_open(struct akamu *a, const char *node_id, struct ut_err *err);
int akamu_cluster_routes(struct akamu *a, struct http_server *admin, struct ut_err *err);
void akamu_cluster_reload(struct akamu *a, const struct akamu_cfg *n);
void akamu_cluster_close(struct akamu *a);
/* cluster.c: every replicated table (crdt_table_def), for counts. */
extern const struct crdt_table_def akamu_tables[];
extern const size_t akamu_n_tables;
/* cluster_api.c: GET /api/admin/cluster (admin token), on the admin listener. */
int akamu_cluster_api_routes(struct akamu *a, struct http_server *admin, struct ut_err *err);

/* trust.c: the CA vouches for gossip keys (docs/replication.md, "Trust
 * model"). akm_trust_certify: this node's certification (*out malloc'd).
 * akm_trust_verify: a gsp_vouch_fn; arg is the struct akm_ca. */
int akm_trust_certify(const struct akm_ca *ca, const struct cry_identity *id, char **out,
                      struct ut_err *err);
int akm_trust_verify(void *arg, const char *node_id, const uint8_t kem[CRY_XWING_PK_BYTES],
                     const uint8_t sig_pub[CRY_P256_PUB_BYTES], const char *cert,
                     struct ut_err *err);

extern const struct store_migration akamu_migrations[];
extern const int akamu_n_migrations;

#endif
