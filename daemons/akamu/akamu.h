/*
 * akamu.h - the daemon's shared state, handed to every ACME resource file.
 */
#ifndef AKAMU_H
#define AKAMU_H

#include "cfg/cfg.h"
#include "http/http.h"
#include "crypto/envelope.h"
#include "store/store.h"

struct akamu {
    struct akamu_cfg *cfg; /* owned */
    struct store *store;
    struct http_server *acme;      /* public ACME listener */
    struct http_server *admin;     /* admin API + gossip listener */
    struct cry_identity *identity; /* this node's gossip keys (node_keys) */
};

int akamu_health_routes(struct akamu *k, struct http_server *s, struct ut_err *err);
/* GET /api/gossip/kem-info, on the admin listener. */
int akamu_gossip_routes(struct akamu *k, struct http_server *s, struct ut_err *err);

extern const struct store_migration akamu_migrations[];
extern const int akamu_n_migrations;

#endif
