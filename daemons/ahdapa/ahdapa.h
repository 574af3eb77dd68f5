/*
 * ahdapa.h - the daemon's shared state, handed to every endpoint family.
 */
#ifndef AHDAPA_H
#define AHDAPA_H

#include "cfg/cfg.h"
#include "http/http.h"
#include "crypto/envelope.h"
#include "store/store.h"

struct ahdapa {
    struct ahdapa_cfg *cfg; /* owned; replaced on SIGHUP reload */
    struct store *store;
    struct http_server *http;
    struct cry_identity *identity; /* this node's gossip keys (node_keys) */
};

/* Endpoint families register their routes here. */
int ahdapa_health_routes(struct ahdapa *a, struct ut_err *err);
/* GET /api/gossip/kem-info. */
int ahdapa_gossip_routes(struct ahdapa *a, struct ut_err *err);

/* The schema migrations of ahdapa's database. */
extern const struct store_migration ahdapa_migrations[];
extern const int ahdapa_n_migrations;

#endif
