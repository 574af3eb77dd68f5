/*
 * acme.h - the RFC 8555 layer shared by akamu's resource files:
 *   acme.c       problem documents, replies, URLs, ids, directory, nonces
 *   objects.c    ACME objects in the replicated tables (JSON documents)
 *   auth.c       the JWS request pipeline (nonce, url, kid/jwk, signature)
 *   account.c    newAccount, account update/deactivation, keyChange, EAB
 *   order.c      newOrder, order, finalize, the order state machine
 *   authz.c      authorizations, challenges, validation results
 *   cert.c       certificate download, revokeCert, CRL
 *   validate.c   the validation pool (http-01, dns-01, tls-alpn-01)
 *   admin.c      the admin API on the admin listener
 *
 * URLs (all under base_url; a path in base_url is taken to be stripped by
 * a reverse proxy in front, the routes themselves start at /acme):
 *   GET  /acme/directory            GET|HEAD /acme/new-nonce
 *   POST /acme/new-account          POST /acme/new-order
 *   POST /acme/revoke-cert          POST /acme/key-change
 *   POST /acme/acct/{id}            POST /acme/acct/{id}/orders
 *   POST /acme/order/{id}           POST /acme/order/{id}/finalize
 *   POST /acme/authz/{id}           POST /acme/chall/{id}
 *   POST /acme/cert/{id}            GET  /acme/crl   (DER, RFC 5280)
 *   GET  /acme/terms                (the terms of service, text/plain)
 *
 * Ids: AKM_ID_LEN characters of base64url, the first 8 the creating node's
 * tag (the same tag nonces carry), then 16 random. So any node can tell
 * which node created an object (cluster forwarding, issue #8).
 * Certificates are keyed by their serial in lowercase hex (32 digits).
 */
#ifndef AKAMU_ACME_H
#define AKAMU_ACME_H

#include <stdarg.h>
#include <stdint.h>

#include <jansson.h>

#include "akamu.h"

#define AKM_PROBLEM_NS "urn:ietf:params:acme:error:"
#define AKM_ID_LEN     24
#define AKM_TAG_LEN    8
#define AKM_URL_MAX    1024
#define AKM_BODY_MAX   (64 * 1024) /* JWS request bodies */

/* ---- replies (acme.c) ---- */

/* RFC 7807 problem document {"type": AKM_PROBLEM_NS type, "detail",
 * "status"} with Content-Type application/problem+json, a fresh
 * Replay-Nonce and Link: <directory>;rel="index". type is the short name
 * ("malformed", "badNonce", "unauthorized", ...). */
void akm_problem(struct akamu *k, struct http_req *r, int status, const char *type, const char *fmt,
                 ...) __attribute__((format(printf, 5, 6)));
/* Same with a prepared document (e.g. with "subproblems"); steals doc. */
void akm_problem_doc(struct akamu *k, struct http_req *r, int status, json_t *doc);
/* A problem object (no reply) for storing in an order/challenge "error". */
json_t *akm_problem_new(const char *type, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A JSON reply with Replay-Nonce, the index Link and, when location is
 * non-NULL, Location. Steals doc. */
void akm_reply(struct akamu *k, struct http_req *r, int status, json_t *doc, const char *location);
/* Adds a fresh Replay-Nonce and the index Link (for non-JSON replies). */
void akm_reply_headers(struct akamu *k, struct http_req *r);

/* base_url + the formatted path into out[AKM_URL_MAX]. */
void akm_url(const struct akamu *k, char *out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* If url is base_url + prefix + id (id one non-empty segment of id
 * characters), copies id into out[AKM_ID_LEN + 1 ... ]; else -EINVAL. */
int akm_url_id(const struct akamu *k, const char *url, const char *prefix, char *out, size_t outsz);
/* A fresh object id (this node's tag + 16 random base64url chars). */
void akm_new_id(const struct akamu *k, char out[AKM_ID_LEN + 1]);
/* RFC 3339 UTC text for unix seconds ("2026-11-22T03:04:05Z"). */
void akm_time_text(int64_t t, char out[32]);
int64_t akm_now(void);

/* ---- objects in the replicated tables (objects.c) ----
 * Values are JSON objects (the internal documents below). Reads use any
 * reader connection; writes go through the store's writer (one at a time
 * per node, so an update's read-check-write is atomic on this node). */
json_t *akm_get(struct akamu *k, const char *tbl, const char *id);
struct akm_put {
    const char *tbl;
    const char *id;
    json_t *doc;     /* borrowed */
    int64_t expires; /* unix ms; 0 = never (required > 0 for grow-only tables) */
};
/* Writes n documents in one transaction. */
int akm_put_all(struct akamu *k, const struct akm_put *p, size_t n, struct ut_err *err);
/* Read-modify-write in the writer's transaction: fn gets the current
 * document (NULL when absent) and returns 1 to store *doc (which it may
 * replace; ownership stays with the caller of fn's result), 0 to leave it,
 * negative (with err) to fail. On success *out (optional) gets a new
 * reference to the resulting document. */
typedef int (*akm_update_fn)(json_t **doc, void *arg, struct ut_err *err);
int akm_update(struct akamu *k, const char *tbl, const char *id, akm_update_fn fn, void *arg,
               json_t **out, struct ut_err *err);
/* Deletes (tombstones) tbl/id of an LWW table; absent rows are fine.
 * Called from inside an akm_update fn it joins that transaction (nested
 * store_write). */
int akm_delete(struct akamu *k, const char *tbl, const char *id, struct ut_err *err);
/* Calls fn for each live row of tbl whose JSON member `field` ([a-z_];
 * NULL: every row) equals value, in key order after `after` (NULL: from
 * the start), at most limit rows. fn returns non-zero to stop. */
typedef int (*akm_each_fn)(const char *id, json_t *doc, void *arg);
int akm_each(struct akamu *k, const char *tbl, const char *field, const char *value,
             const char *after, int limit, akm_each_fn fn, void *arg, struct ut_err *err);

/*
 * Internal documents (all times unix seconds):
 *  accounts        id -> {"id","status":"valid|deactivated|revoked","contact":[...],
 *                         "jwk":{public JWK},"thumbprint","tos_agreed":bool,
 *                         "eab_kid"?, "created_at"}
 *  account_keys    thumbprint -> {"account": id}     (newAccount lookup by key)
 *  orders          id -> {"id","account","status","expires","identifiers":[{type,value}],
 *                         "authorizations":[authz ids],"not_before"?,"not_after"?,
 *                         "error"?,"certificate"? (cert id),"created_at","finalized_by"? (node id),
 *                         "finalized_at"? (processing since),"lease_epoch"? (the
 *                         finalizer's order lease epoch, lease.c)}
 *  authorizations  id -> {"id","account","order","identifier":{type,value},"wildcard":bool,
 *                         "status","expires","challenges":[chall ids]}
 *  challenges      id -> {"id","authz","account","type","token","status",
 *                         "validated"?,"error"?}
 *  certificates    serial hex -> {"id","account","order","der": base64url,
 *                         "not_after","names":[...],"created_at"}
 *  revocations     serial hex -> {"reason": int,"revoked_at","not_after"?}   (grow-only;
 *                         not_after: the certificate's, so the CRL can drop expired ones)
 *  eab_usage       eab key id -> {"account","used_at"}
 */

/* ---- the request pipeline (auth.c) ---- */
struct akm_jws;
struct evp_pkey_st;

enum akm_auth_mode {
    AKM_AUTH_JWK = 1, /* newAccount, revokeCert by certificate key */
    AKM_AUTH_KID = 2, /* everything else */
    /* With tbl/id: a request with a payload works on the order of tbl/id
     * (a challenge response, finalize) and goes to the order's owner
     * (lease.c, akm_route_work). */
    AKM_AUTH_WORK = 4,
};
struct akm_ctx {
    struct akm_jws *jws; /* the parsed request */
    json_t *payload;     /* parsed JSON payload; NULL for POST-as-GET */
    json_t *account;     /* AKM_AUTH_KID: the account document */
    char account_id[AKM_ID_LEN + 1];
    const json_t *jwk;       /* AKM_AUTH_JWK: the request's JWK (borrowed) */
    struct evp_pkey_st *key; /* the key that verified the request */
    char thumbprint[64];     /* RFC 7638 of that key */
};
/* Authenticates a POST: Content-Type application/jose+json (415), body
 * ≤ AKM_BODY_MAX, JWS syntax (malformed), nonce (badNonce), "url" equal to
 * this request's URL (unauthorized), jwk/kid as modes allow (malformed),
 * the account by kid (accountDoesNotExist; not valid -> unauthorized),
 * alg (badSignatureAlgorithm with the supported list), key
 * (badPublicKey), signature (malformed), payload JSON (malformed).
 * Returns 0 with c filled, or replies the problem itself and returns -1;
 * also -1 when, in a cluster, the request went to another node (a foreign
 * nonce to its issuer, an account not replicated here yet to its creator:
 * forward.c), whose answer is then relayed: return without replying. */
int akm_auth(struct akamu *k, struct http_req *r, unsigned modes, struct akm_ctx *c);
/* akm_auth for a resource that names an object (tbl/id from the path): in
 * a cluster, when id was created by another node and is not here yet, the
 * request goes to that node (see forward.c); -1 then too (the reply is
 * pending). tbl/id NULL: akm_auth. */
int akm_auth_at(struct akamu *k, struct http_req *r, unsigned modes, const char *tbl,
                const char *id, struct akm_ctx *c);
void akm_ctx_clear(struct akm_ctx *c);
/* 1 when the request was POST-as-GET (empty payload); otherwise replies
 * malformed and returns 0. */
int akm_require_post_as_get(struct akamu *k, struct http_req *r, const struct akm_ctx *c);

/* ---- resources: each registers its routes on s (the public ACME listener,
 * and the admin listener, where forwarded requests arrive; forward.c) ---- */
int akm_acme_routes(struct akamu *k, struct http_server *s,
                    struct ut_err *err); /* acme.c: directory, nonce, terms */
int akm_account_routes(struct akamu *k, struct http_server *s, struct ut_err *err); /* account.c */
int akm_order_routes(struct akamu *k, struct http_server *s, struct ut_err *err);   /* order.c */
int akm_authz_routes(struct akamu *k, struct http_server *s, struct ut_err *err);   /* authz.c */
int akm_cert_routes(struct akamu *k, struct http_server *s, struct ut_err *err);    /* cert.c */
int akm_admin_routes(struct akamu *k, struct http_server *admin, struct ut_err *err); /* admin.c */
/* admin.c: the admin API's bearer-token guard, for admin routes registered
 * elsewhere (cluster_api.c): 1 when r carries the token, else it replies
 * 401/403 itself and returns 0. */
int akm_admin_authorized(struct http_req *r);

/* Renderers: the RFC 8555 wire objects of internal documents (new refs). */
json_t *akm_account_render(const struct akamu *k, const json_t *acct);
json_t *akm_order_render(struct akamu *k, const json_t *order);
json_t *akm_authz_render(struct akamu *k, const json_t *authz);
json_t *akm_chall_render(const struct akamu *k, const json_t *chall);

/* order.c: recomputes an order's status from its authorizations (pending
 * -> ready when all valid; pending or ready -> invalid, with the failed
 * challenge's error, when one is invalid/deactivated/expired/missing);
 * idempotent; called after validation results. -ENOENT: no such order. */
int akm_order_refresh(struct akamu *k, const char *order_id, struct ut_err *err);
/* The same inside a store job (db: its connection), in its transaction. */
int akm_order_refresh_in(struct akamu *k, sqlite3 *db, const char *order_id, struct ut_err *err);
/* order.c, for finalize.c: the requester's order `id`, brought up to date
 * and stored (expiry; a pending/ready order recomputed as by
 * akm_order_refresh; an issuance interrupted by a crash -> invalid). NULL
 * after replying 404 malformed (absent, or another account's: the same
 * answer, so ids cannot be probed). */
json_t *akm_order_load(struct akamu *k, struct http_req *r, const struct akm_ctx *c,
                       const char *id);
/* finalize.c: POST /acme/order/{id}/finalize (routed by akm_order_routes). */
void akm_order_finalize(struct http_req *r, void *arg);

/* authz.c: the validation pool's done callback (challenge, authorization,
 * then akm_order_refresh), and the start-up resubmission of this node's
 * challenges left "processing" by a previous run. */
struct akm_va_job;
void akm_va_done(struct akamu *k, const struct akm_va_job *j, int ok, json_t *problem);
int akm_authz_resume(struct akamu *k, struct ut_err *err);

/* ---- cluster forwarding (forward.c; docs/acme.md "Forwarding and nonces
 * in a cluster") ---- */
enum akm_hop {
    AKM_HOP_CLIENT = 0,   /* from a client (anything on the public listener) */
    AKM_HOP_NONCE = 1,    /* forwarded to us as the nonce's issuer; nonce unspent */
    AKM_HOP_REDEEMED = 2, /* forwarded with the nonce already redeemed: skip it */
    /* Run again here after the order's owner did not answer (lease.c): the
     * nonce was redeemed here, nothing is forwarded any more. Compare with
     * >= AKM_HOP_REDEEMED for "nonce already redeemed, never forward". */
    AKM_HOP_TAKEOVER = 3,
};
enum akm_fwd_kind {
    AKM_FWD_NONCE = 1, /* to the nonce's issuer, nonce unspent; failure -> badNonce */
    AKM_FWD_OWNER = 2, /* to an object's creator, nonce redeemed; failure -> 503 */
};
int akm_fwd_new(struct akamu *k, struct ut_err *err);
void akm_fwd_free(struct akamu *k);
/* A node's tag (as nonce.c makes it) and an object id's (-EINVAL: not an id). */
void akm_node_tag(const char *node_id, char out[AKM_TAG_LEN + 1]);
int akm_id_tag(const char *id, char out[AKM_TAG_LEN + 1]);
/* Where r stands: the forwarding headers count only on the admin listener. */
enum akm_hop akm_fwd_hop(const struct akamu *k, struct http_req *r);
/* 1 (logged) when r was forwarded to us and arrived after the deadline
 * its sender set (X-Akamu-Forward-Deadline, + 1 s for clock differences):
 * the sender has answered its client already; refuse it. */
int akm_fwd_late(struct akamu *k, struct http_req *r);
/* Forwards r to the node whose tag is tag: 1 when the reply is pending
 * (the handler must return without replying), 0 when not possible (our
 * own or an unknown tag, single-node mode, a hop too many, a start
 * failure): the caller goes on locally. why is logged. */
int akm_forward(struct akamu *k, struct http_req *r, const char *tag, enum akm_fwd_kind kind,
                const char *why);
/* AKM_FWD_OWNER forward when tbl/id is not here and another node made it
 * (call only once the nonce is redeemed): 1 forwarded, 0 not. */
int akm_forward_absent(struct akamu *k, struct http_req *r, const char *tbl, const char *id);
/* An AKM_FWD_OWNER forward of a request that works on an order (nonce
 * redeemed) to the node whose tag is tag; when that node does not answer,
 * akm_work_unreachable(k, r, work) runs instead of a problem reply.
 * Returns like akm_forward. */
struct akm_work {
    struct akamu *k;
    const char *tbl; /* "orders" (finalize) | "challenges" (a response) */
    http_handler fn; /* the resource's handler, run here on a takeover */
    int successor;   /* this forward went to the takeover successor */
};
int akm_forward_work(struct akamu *k, struct http_req *r, const char *tag,
                     const struct akm_work *work, const char *why);
/* Runs fn(r, k) right here as AKM_HOP_TAKEOVER (akm_fwd_hop says so while
 * it runs): for the forward-failure path, which owns r. */
void akm_fwd_run_takeover(struct akamu *k, struct http_req *r, http_handler fn);

/* ---- order ownership (lease.c; docs/acme.md "Order ownership: leases,
 * takeover and fencing") ----
 * Whoever validates a challenge of an order or finalizes it holds the
 * replicated lease "order:<order id>" (lib/crdt leases), taken in the
 * same store job as the work's first write and checked (owner + epoch,
 * not expired) in the same store job as its result; released when the
 * work is over. Requests that start work go to the lease holder, else to
 * the order's creator (akm_route_work); when that node does not answer,
 * the request is answered here once the lease is free or expired
 * (takeover), else 503 with Retry-After until it expires. The lease state
 * lives in k->leases, made by akm_fwd_new and freed by akm_fwd_free. */
#define AKM_LEASE_NAME_MAX (6 + AKM_ID_LEN + 1) /* "order:" id */
struct akm_lease {
    char owner[CRY_ENV_ID_MAX + 1]; /* "" when free (or never taken) */
    int64_t expires_ms;             /* unix ms */
    uint64_t epoch;                 /* 0 when never taken */
};
/* What akm_lease_take found and did. */
struct akm_take {
    uint64_t epoch;                      /* ours, on success */
    int renewed;                         /* our live lease, same epoch */
    char prev_owner[CRY_ENV_ID_MAX + 1]; /* the owner before (may have expired) */
    uint64_t prev_epoch;
    int64_t holder_expires_ms; /* -EBUSY: when the holder's lease ends */
};
int akm_leases_new(struct akamu *k, struct ut_err *err);
void akm_leases_free(struct akamu *k);
void akm_lease_name(const char *order_id, char out[AKM_LEASE_NAME_MAX]);
/* The wall clock the leases use (the replica's HLC wall clock), unix ms. */
int64_t akm_lease_now_ms(struct akamu *k);
/* The order's lease as this node sees it (db NULL: this thread's reader;
 * else a store job's db). Never taken: 0 with *l zeroed. */
int akm_lease_get(struct akamu *k, sqlite3 *db, const char *order_id, struct akm_lease *l,
                  struct ut_err *err);
/* 1 when l names an owner whose lease has not expired at now_ms. */
int akm_lease_live(const struct akm_lease *l, int64_t now_ms);
/* The lease durations: finalization ownership_ttl_secs; a validation at
 * least its own deadline + 2 s, so that a live owner never loses the
 * lease while the validation may still run. */
int64_t akm_lease_ttl_ms(const struct akamu *k, int validation);
/* Inside a store job: takes (or renews) the order's lease for ttl_ms.
 * -EBUSY when another node holds it (t->prev_owner, t->holder_expires_ms). */
int akm_lease_take(struct akamu *k, sqlite3 *db, const char *order_id, int64_t ttl_ms,
                   struct akm_take *t, struct ut_err *err);
/* Inside a store job: 0 when we hold the lease with epoch and it has not
 * expired, else -ESTALE (err says who holds it). */
int akm_lease_check(struct akamu *k, sqlite3 *db, const char *order_id, uint64_t epoch,
                    struct ut_err *err);
/* Inside a store job: frees our lease (keeping its epoch); -ESTALE when
 * it is not ours with this epoch any more. */
int akm_lease_release(struct akamu *k, sqlite3 *db, const char *order_id, uint64_t epoch,
                      struct ut_err *err);
/* After a successful akm_lease_take: INFO when the lease was taken from
 * another node ("order lease taken over"). what: "validation"|"finalize". */
void akm_lease_log_take(const struct akamu *k, const char *order_id, const struct akm_take *t,
                        const char *what);
/* The WARN of a result dropped because the lease moved on:
 * "acme: stale order owner fenced order=... epoch=...". */
void akm_lease_log_fenced(const char *order_id, uint64_t epoch, const char *what,
                          const char *object, const char *why);
/* Whether this node may finalize order_id now: in a cluster, an order
 * created before this process started only once a gossip exchange
 * succeeded since (or ownership_ttl_secs after the start, or without
 * peers), so that a restarted node does not finalize from its stale copy
 * what another node finalized meanwhile. 1 yes, 0 not yet. */
int akm_lease_view_fresh(struct akamu *k, const char *order_id);
/* 503 serverInternal with Retry-After: the seconds until expires_ms (at
 * least 1): another node holds the order. */
void akm_reply_lease_busy(struct akamu *k, struct http_req *r, const char *order_id,
                          const char *holder, int64_t expires_ms);

/* tbl/id as the store job owning db sees it (NULL when absent). */
json_t *akm_get_in(struct akamu *k, sqlite3 *db, const char *tbl, const char *id);
/* The order tbl/id works on ("orders": id itself; "challenges": the
 * challenge's authorization's order) into out; -ENOENT when not here. */
int akm_work_order(struct akamu *k, const char *tbl, const char *id, char out[AKM_ID_LEN + 1]);
/* Routing of a request that starts work on an order (AKM_AUTH_WORK, nonce
 * redeemed): to the live lease holder when that is another node, else
 * (lease free or expired) to the order's creator when that is another
 * node. 1 forwarded (return without replying), 0 handle it here. */
int akm_route_work(struct akamu *k, struct http_req *r, const char *tbl, const char *id);
/* After akm_lease_take said -EBUSY inside a handler: forwards r to the
 * holder when the hop allows (1), else replies 503 with Retry-After (0). */
int akm_forward_holder(struct akamu *k, struct http_req *r, const char *tbl, const char *order_id,
                       const struct akm_take *t);
/* forward.c's failure path of akm_forward_work (the node did not answer):
 * 503 with Retry-After while another node's lease is live, else the
 * handler runs here (AKM_HOP_TAKEOVER). */
void akm_work_unreachable(struct akamu *k, struct http_req *r, const struct akm_work *w,
                          const char *why);
/* The node that takes over order_id's work when its owner is down: the
 * highest SHA-256(order id || tag) among the cluster's nodes (this one
 * included) other than those tagged skip1/skip2 (NULL: none) and those a
 * forward of order work failed to reach in the last 10 s. Every node with
 * the same node map that tried the same dead nodes picks the same one, so
 * concurrent takeovers of one order meet there. Copies its tag to out;
 * -ENOENT without candidates. */
int akm_successor(struct akamu *k, const char *order_id, const char *skip1, const char *skip2,
                  char out[AKM_TAG_LEN + 1]);

/* Validations queued or running on this node (challenge ids), so that a
 * read does not take over what this node is still doing. add: 0, -EEXIST
 * (already there: a claim, so one thread submits it), -ENOMEM. */
int akm_inflight_add(struct akamu *k, const char *chall_id);
void akm_inflight_del(struct akamu *k, const char *chall_id);
int akm_inflight_has(struct akamu *k, const char *chall_id);

/* authz.c: POST /acme/chall/{id} (for the takeover path), and the
 * takeover of validations left "processing" by an owner that stopped
 * (its lease free or expired, or ours but not running here): each such
 * challenge of the authorization is validated again here under a new
 * tenure of the order's lease. Called when an authorization, one of its
 * challenges or its pending order is read. */
void akm_chall_post(struct http_req *r, void *arg);
void akm_authz_adopt(struct akamu *k, const char *authz_id);

/* ---- validation (validate.c) ---- */
struct akm_va; /* opaque pool */
struct akm_va_job {
    char chall_id[AKM_ID_LEN + 1];
    char type[16];   /* "http-01" | "dns-01" | "tls-alpn-01" */
    char id_type[8]; /* "dns" | "ip" */
    char value[256]; /* the identifier (no "*." for wildcards) */
    char token[64];
    char key_auth[160]; /* token "." thumbprint */
    /* The order lease the result is fenced by (authz.c); "" / 0: none. */
    char order_id[AKM_ID_LEN + 1];
    uint64_t epoch;
};
/* Called on a pool thread when a job ends. ok: 1 valid, 0 invalid (then
 * problem is an ACME problem object, stolen). */
typedef void (*akm_va_done_fn)(struct akamu *k, const struct akm_va_job *j, int ok,
                               json_t *problem);
struct akm_va_opts {
    int threads;          /* concurrent validations; 0: 4 */
    int queue_max;        /* waiting jobs beyond that; 0: 256 */
    int timeout_ms;       /* per validation; 0: 10000 */
    const char *resolver; /* "ip" or "ip:port"; NULL: the system resolver */
    int http_port;        /* http-01 */
    int tls_alpn_port;    /* tls-alpn-01 */
    akm_va_done_fn done;
    struct akamu *k;
};
int akm_va_new(struct akm_va **out, const struct akm_va_opts *o, struct ut_err *err);
/* Queues a copy of j; -EBUSY when the queue is full (caller answers with a
 * problem and Retry-After). Never blocks. */
int akm_va_submit(struct akm_va *va, const struct akm_va_job *j, struct ut_err *err);
/* Stops the threads (pending jobs are dropped: their challenges stay
 * "processing" and are resubmitted at the next start). */
void akm_va_free(struct akm_va *va);

#endif
