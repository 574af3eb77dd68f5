/*
 * engine.h - the gossip engine: push-pull anti-entropy over sealed
 * envelopes, membership and trust, counters. Design and protocol:
 * docs/replication.md.
 *
 * The engine is transport-agnostic and has no threads or timers of its own:
 * a driver (lib/gossip/driver.c over HTTP in the daemons; the in-process
 * simulator in tests) asks it what is due, carries the sealed messages and
 * hands back the answers. Time comes from an injectable clock, so the
 * simulator runs on virtual time. All functions are thread-safe (one
 * engine mutex; the store's writer does the database work).
 *
 * One exchange (requester A, responder B), payload CBOR inside an envelope
 * (lib/gossip/proto.h):
 *   A -> B  request  {vv_A or its hash, generation_A, entries B lacks per
 *                     A's cached vv_B, through ranges, more?, hash of vv_B}
 *   B -> A  response {vv_B or its hash, generation_B, entries A lacks per
 *                     vv_A, through ranges, more?, need_vv?}
 * Entries of each origin travel in seq order, paged under page_bytes; a
 * receiver raises vv[origin] only to what the sender declared complete, and
 * only when it holds everything up to where the sender's range starts (a
 * stale cached vv can never make it skip a gap). When either side says
 * "more", the driver runs another exchange at once (GSP_DUE_MORE).
 *
 * Peers. A peer is a node id with pinned keys (seeded by an administrator,
 * or learned from the replicated cluster_nodes table when its id is in
 * allowed_node_ids) and, to be contacted, a URL (configured `peers`, the
 * seed call, or its cluster_nodes entry). A configured URL whose node id is
 * not known yet is reported by gsp_engine_due() with node_id ""; the
 * driver fetches GET <url>/api/gossip/kem-info (no trust implied) and calls
 * gsp_engine_resolve_kem_info().
 *
 * Vouching (optional; akamu, whose nodes all hold the CA key). A node may
 * carry a certification of its gossip keys by an authority every member
 * trusts: an opaque string made by the daemon, published in its kem-info
 * document ("certification") and in its cluster_nodes entry. With a
 * verifier set, a node whose certification verifies is pinned without an
 * administrator, from (a) a configured URL's kem-info, (b) its
 * cluster_nodes entry learned through gossip, or (c) its introduction
 * (POST /api/gossip/introduce: its own signed entry, sent before its first
 * exchange with a node it pinned on a certification, and after a 403),
 * always subject to allowed_node_ids when that list is non-empty. With a
 * verifier, allowed_node_ids alone no longer pins a learned node. A
 * certification that does not verify (or none) pins nothing: it is
 * counted ("uncertified") and logged once per node per start. Seeding
 * works as before. See
 * docs/replication.md, "Trust model".
 */
#ifndef GSP_ENGINE_H
#define GSP_ENGINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "crdt/crdt.h"
#include "crypto/envelope.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"

/* Defaults for struct gsp_engine_opts (0 = default). */
#define GSP_DEF_INTERVAL_MS    15000u
#define GSP_DEF_PUSH_DELAY_MS  10u
#define GSP_DEF_PAGE_BYTES     (1u << 20)
#define GSP_DEF_ZSTD_THRESHOLD 4096u
#define GSP_DEF_SKIP_MAX       10u /* a real round at least every N intervals */
#define GSP_DEF_RETRY_MS       1000u

typedef uint64_t (*gsp_clock_fn)(void *arg); /* unix ms */

/* Longest certification string (printable ASCII, no spaces or quotes). */
#define GSP_VOUCH_MAX 4096
/* Does cert certify that node_id's gossip keys are kem_pk and sig_pub?
 * 0 when it does; negative with a one-line reason in err otherwise
 * (-EPERM: another authority or a bad signature; -EINVAL: malformed).
 * Called on any thread without engine locks held; must not block on the
 * network. */
typedef int (*gsp_vouch_fn)(void *arg, const char *node_id,
                            const uint8_t kem_pk[CRY_XWING_PK_BYTES],
                            const uint8_t sig_pub[CRY_P256_PUB_BYTES], const char *cert,
                            struct ut_err *err);

struct gsp_engine_opts {
    struct store *store;
    struct crdt_replica *replica;        /* declares "cluster_nodes" among its tables */
    const struct cry_identity *identity; /* this node (borrowed) */
    const char *self_url;                /* advertised gossip base URL, or NULL */
    const char *const *peers;            /* configured peer base URLs */
    size_t n_peers;
    const char *const *allowed_node_ids; /* empty: only seeded nodes are trusted */
    size_t n_allowed;
    const char *const *count_tables; /* tables counted in the first-contact line */
    size_t n_count_tables;
    const char *log_module;  /* "gossip" */
    const char *header_name; /* "X-Ahdapa-Node-Id" / "X-Akamu-Node-Id" */
    uint64_t interval_ms;
    uint64_t push_delay_ms;
    size_t page_bytes;
    size_t zstd_threshold;
    unsigned skip_max;
    uint64_t retry_ms;  /* back-off after a failed exchange */
    int sessions;       /* use envelope session keys (smaller idle rounds) */
    gsp_clock_fn clock; /* NULL: CLOCK_REALTIME */
    void *clock_arg;
    cry_env_rand_fn rand; /* NULL: OpenSSL; the simulator makes it deterministic */
    void *rand_arg;
    /* Vouching (all optional; NULL: pinning by seed and allowed_node_ids
     * only, as before). vouch_cert needs vouch_verify and must verify with
     * it for this node's own id and keys. */
    const char *vouch_cert;    /* this node's certification, published */
    gsp_vouch_fn vouch_verify; /* checks other nodes' certifications */
    void *vouch_arg;
};

struct gsp_engine;

/* Loads pinned peers from the node-local table gossip_peers (created if
 * needed), pins learned nodes of cluster_nodes, publishes this node's signed
 * cluster_nodes entry when it changed, registers the replica's change
 * callback (the engine owns it: use gsp_engine_set_wakeup to hear of
 * changes), and logs "gossip: no peers configured — loop disabled" when
 * there are no peers at all. The replica's origin must be the identity's
 * node id and "cluster_nodes" a declared LWW table; count_tables (at most
 * 16) must be declared. Errors: -EINVAL (options, with a message), store
 * errors. */
int gsp_engine_new(struct gsp_engine **out, const struct gsp_engine_opts *o, struct ut_err *err);
/* Free the engine before the replica and the store it uses. */
void gsp_engine_free(struct gsp_engine *e);

/* This node's id (the identity's). */
const char *gsp_engine_node_id(const struct gsp_engine *e);
/* Peers other than this node: configured URLs, seeded and learned nodes.
 * 0 means "no peers configured — loop disabled" (it can still answer). */
size_t gsp_engine_peer_count(struct gsp_engine *e);
/* Registers the driver's wake-up: called (on the store's writer thread,
 * after a commit that changed replicated rows, and after seeding, peer
 * list reloads and URL resolutions) so the driver asks gsp_engine_due()
 * again. Must be short and must not call back into the engine. When this
 * returns, the previous function is not running and will not be called. */
void gsp_engine_set_wakeup(struct gsp_engine *e, void (*fn)(void *arg), void *arg);

/* ---- membership ---- */

/* Pins a peer from its GET /api/gossip/kem-info document (admin action).
 * url: where to reach it (NULL: keep/learn). Persists in gossip_peers.
 * -EINVAL with a message for a malformed document or bad keys; -EPERM when
 * allowed_node_ids is set and does not list the id. */
int gsp_engine_seed(struct gsp_engine *e, const char *kem_info_json, size_t len, const char *url,
                    struct ut_err *err);
/* Tells the engine which node id answers at url (from its kem-info). */
int gsp_engine_resolve_url(struct gsp_engine *e, const char *url, const char *node_id,
                           struct ut_err *err);
/* The driver's GSP_DUE_RESOLVE answer: the kem-info document url served.
 * Resolves url to its node id (gsp_engine_resolve_url) and, with a
 * verifier, pins a node not pinned yet whose "certification" verifies and
 * whose id allowed_node_ids admits (persisted in gossip_peers with the
 * certification, re-checked at every start); otherwise counts and logs the
 * refusal (once per node per start). 1 when the node was pinned by this
 * call, 0 when url resolved otherwise, -EINVAL for an unusable document,
 * -ENOENT for a URL that is no configured peer. */
int gsp_engine_resolve_kem_info(struct gsp_engine *e, const char *url, const char *doc, size_t len,
                                struct ut_err *err);
/* This node's kem-info document (GET /api/gossip/kem-info):
 * gsp_kem_info_json() plus "certification" when the engine has one. New
 * reference, NULL on allocation failure. */
json_t *gsp_engine_kem_info(struct gsp_engine *e);
/* POST /api/gossip/introduce (unauthenticated: the body authenticates
 * itself): body = the sender's own cluster_nodes entry, whose self-
 * signature covers its URL and keys and whose "certification" must verify.
 * Pins it like gsp_engine_resolve_kem_info (same rules, persisted). 0 when
 * pinned now or already pinned with these keys; -ENOTSUP without a
 * verifier (404); -EINVAL malformed (400); -EPERM uncertified or not in
 * allowed_node_ids (403); -EEXIST already pinned with other keys (409:
 * rotations travel in cluster_nodes). */
int gsp_engine_introduce(struct gsp_engine *e, const char *body, size_t len, struct ut_err *err);
/* This node's cluster_nodes entry as held (what it introduces itself
 * with), when it carries a certification: *json malloc'd. -ENOENT when
 * there is none to introduce. */
int gsp_engine_introduction(struct gsp_engine *e, char **json, size_t *len);
/* Replaces the configured peer URLs (SIGHUP). */
int gsp_engine_set_peers(struct gsp_engine *e, const char *const *urls, size_t n,
                         struct ut_err *err);

/* ---- scheduling (driver side) ---- */

enum gsp_due_kind {
    GSP_DUE_RESOLVE = 1, /* url has no known node id: fetch its kem-info */
    GSP_DUE_PUSH,        /* local changes to send (eager push) */
    GSP_DUE_ROUND,       /* periodic anti-entropy round */
    GSP_DUE_MORE,        /* the last exchange said "more" */
};
struct gsp_due {
    enum gsp_due_kind kind;
    char node_id[CRY_ENV_ID_MAX + 1]; /* "" for GSP_DUE_RESOLVE */
    char url[512];                    /* "" when the peer has no URL (cannot be contacted) */
    /* Before this exchange, POST this node's introduction to the peer
     * (gsp_engine_introduction): it was just pinned on its certification
     * and may not know us yet. Set once per such pin. */
    int introduce;
};
/* Fills up to max items due now; returns how many. Periodic rounds that
 * would be no-ops are skipped and counted ("skips"), except every
 * skip_max-th: the last exchange with the peer succeeded and our vv is
 * dominated by the peer's (nothing changed on our side since it
 * acknowledged; it pushes its own changes eagerly). A peer that has not seen
 * our latest changes is due (GSP_DUE_PUSH) push_delay_ms after the first of
 * them. A reported item is not reported again until the driver acts on it
 * (RESOLVE: until the resolve interval passed). *next_ms (optional) gets
 * when to call again at the latest. */
size_t gsp_engine_due(struct gsp_engine *e, struct gsp_due *out, size_t max, uint64_t *next_ms);

/* ---- one exchange, requester side ---- */

struct gsp_exchange; /* one in-flight request */
/* Builds and seals the request to node_id (*msg malloc'd). -ENOKEY
 * (logged once per peer state change as "gossip: no KEM key for peer,
 * skipping"; counted every time as "no_key") when node_id is not pinned,
 * -EBUSY when an exchange with it is in flight. Every successful begin must
 * be ended by exactly one gsp_engine_finish or gsp_engine_fail. */
int gsp_engine_begin(struct gsp_engine *e, const char *node_id, enum gsp_due_kind why,
                     uint8_t **msg, size_t *msg_len, struct gsp_exchange **x, struct ut_err *err);
/* Opens and merges the response (one store_write job). Logs "gossip:
 * verify_and_open response failed" with the reason on an envelope refusal
 * (then backs off like gsp_engine_fail), and the first-contact line after
 * the first exchange with a peer that completed (nothing left to page).
 * Frees x. */
int gsp_engine_finish(struct gsp_engine *e, struct gsp_exchange *x, const uint8_t *resp,
                      size_t resp_len, struct ut_err *err);
/* The request failed in transport (connect error, timeout, HTTP status):
 * counts it and backs off. http_status 0 for transport errors; 403 from the
 * peer is logged as "<header> header rejected by peer". Frees x. */
void gsp_engine_fail(struct gsp_engine *e, struct gsp_exchange *x, int http_status,
                     const char *reason);

/* ---- responder side ---- */

/* Handles a POST /api/gossip/sync body. header_node_id: the value of the
 * node-id header (NULL when absent). On success *resp is the sealed
 * response (malloc'd) and *http_status 200. Refusals set *http_status (400
 * malformed, 403 unknown/unpinned sender or a header that is absent or does
 * not match the signature, 409 replay or a session the responder does not
 * know (the requester drops its session on 400/409), 413 too large, 500
 * internal/store failure) and return negative; they are logged (WARN
 * "sync request refused", at most once per reason per 10 s) and counted by
 * reason. */
int gsp_engine_handle(struct gsp_engine *e, const uint8_t *msg, size_t msg_len,
                      const char *header_node_id, uint8_t **resp, size_t *resp_len,
                      int *http_status, struct ut_err *err);

/* ---- observability ---- */

/* GET /api/gossip/status: {"node_id", "url", "peers": [{"node_id", "url",
 * "pinned", "pinned_by" ("seed" | "config+certification" | "learned" |
 * ""), "certified", "configured", "seeded", "learned", "last_ok", "in_sync",
 * "generation", "vv", "last_success_ms", "pushes", "rounds", "skips",
 * "exchanges", "served", "failures", "bytes_out", "bytes_in",
 * "entries_sent", "entries_received", "entries_applied",
 * "refusals": {reason: n}}], "totals": {...same counters...}, "generation",
 * "vv": {origin: seq}, "members"}. New reference. */
json_t *gsp_engine_status(struct gsp_engine *e);
/* Prometheus text exposition of the same counters (prefix given, e.g.
 * "ahdapa_gossip"). Appends to out. */
int gsp_engine_metrics(struct gsp_engine *e, const char *prefix, struct ut_buf *out);

#endif
