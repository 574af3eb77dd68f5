/*
 * driver.h - runs a gossip engine over HTTP(S): one background thread that
 * contacts peers (POST <peer>/api/gossip/sync, GET <peer>/api/gossip/kem-info
 * to resolve configured URLs), and the HTTP routes a daemon mounts:
 *   POST /api/gossip/sync        sealed exchange (sender authenticated by
 *                                the envelope; node-id header must match)
 *   GET  /api/gossip/status      counters as JSON           (admin)
 *   POST /api/admin/nodes/seed   pin a peer's kem-info       (admin)
 *   GET  /metrics                Prometheus text             (admin)
 *   POST /api/gossip/introduce   a node's certified cluster_nodes entry
 *                                (no admin: it proves itself; engine.h,
 *                                "Vouching"; 404 without a verifier)
 * "admin" is decided by the daemon's check function (akamu: the admin
 * listener itself; ahdapa: an admin session). After a 403 from a peer the
 * loop introduces this node to it when the engine has a certification.
 */
#ifndef GSP_DRIVER_H
#define GSP_DRIVER_H

#include "gossip/engine.h"
#include "http/http.h"

struct gsp_driver;

struct gsp_driver_opts {
    struct gsp_engine *engine;  /* borrowed; must outlive the driver */
    const char *ca_file;        /* trust anchors for https peers; NULL: system */
    const char *header_name;    /* "X-Ahdapa-Node-Id" / "X-Akamu-Node-Id" */
    const char *metrics_prefix; /* "ahdapa_gossip" */
    int timeout_ms;             /* per request; 0: 5000 */
    int run_loop;               /* 0: answer peers and serve the routes, but never contact
                                   anyone (no configured peers: "loop disabled") */
};

/* Creates the driver and starts its thread: exchanges with peers when
 * run_loop, and always the engine's periodic work (GC, the last-contact
 * bookkeeping; docs/replication.md section 8). */
int gsp_driver_start(struct gsp_driver **out, const struct gsp_driver_opts *o, struct ut_err *err);
/* Wakes the loop now (e.g. after gsp_engine_seed or a peer list reload). */
void gsp_driver_wake(struct gsp_driver *d);
/* SIGHUP: replaces the engine's configured peer URLs and wakes the loop;
 * logs "gossip: peer list reloaded peers=N" (or why it was refused).
 * d NULL (single-node mode) is a no-op. */
void gsp_driver_reload_peers(struct gsp_driver *d, const char *const *urls, size_t n);
/* Stops and joins the thread (an exchange in flight finishes or times out). */
void gsp_driver_stop(struct gsp_driver *d);

/* Returns 1 when the request may use admin routes, else replies (401/403)
 * itself and returns 0. */
typedef int (*gsp_admin_check_fn)(struct http_req *r, void *arg);

/* Registers the routes above on s. d may be NULL in single-node mode: then
 * sync answers 404 and seed 409 ("no [gossip] section"). */
int gsp_driver_routes(struct gsp_driver *d, struct http_server *s, gsp_admin_check_fn admin,
                      void *admin_arg, struct ut_err *err);

#endif
