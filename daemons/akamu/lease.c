/*
 * lease.c - order ownership (issue #8; docs/acme.md "Order ownership:
 * leases, takeover and fencing"): the replicated lease "order:<id>" of
 * lib/crdt, held by the node that validates a challenge of the order or
 * finalizes it, and the routing of requests that start such work.
 *
 * Who works on an order. The live lease holder; when nobody holds it (free
 * or expired), the order's creator (its id's tag). A request that starts
 * work (a challenge response, finalize; auth.c AKM_AUTH_WORK) goes there.
 * When that node does not answer (forward.c's failure path): while
 * another node's lease is live, 503 serverInternal with Retry-After = the
 * seconds until it expires; once it is free or expired, the request runs
 * here (a takeover): the handler takes a new tenure of the lease (new
 * epoch) in the store job of its first write.
 *
 * Fencing. Results are written only after crdt_lease_check (owner, epoch,
 * not expired) in the same store job, so a node that lost the lease (its
 * work outlived the lease because it was stopped, and someone took over)
 * drops its result with a WARN. Replication is asynchronous: a node can
 * only be fenced by a takeover it has heard of, or by its own clock.
 *
 * The lease state here: the validations queued or running on this node
 * (a read takes over only what no one runs), the two takeover handlers,
 * and whether this process has caught up with the cluster since it
 * started (akm_lease_view_fresh).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "acme.h"
#include "util/log.h"

#define MOD               "acme"
#define LEASE_TABLE       "crdt_leases" /* lib/crdt's built-in lease table */
#define VA_DEADLINE_MS    10000         /* validate.c's deadline per validation */
#define VA_SLACK_MS       2000          /* queueing, the result's store job */
#define DEFAULT_TTL_MS    150000        /* [gossip] ownership_ttl_secs' default */
#define RETRY_MAX_SECS    86400
#define INFLIGHT_INIT_CAP 16

struct akm_leases {
    pthread_mutex_t mu;
    char (*ids)[AKM_ID_LEN + 1]; /* validations queued or running here */
    size_t n, cap;
    int64_t started_ms; /* this process's start (wall clock, unix ms) */
    atomic_int fresh;   /* caught up with the cluster since the start */
    struct akm_work finalize, chall;
    struct akm_work finalize_succ, chall_succ; /* the forward to the successor */
};

static const char *str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

int64_t akm_lease_now_ms(struct akamu *k)
{
    struct timespec ts;

    if (k->replica)
        return (int64_t)crdt_hlc_wall_ms(crdt_replica_hlc(k->replica));
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int akm_leases_new(struct akamu *k, struct ut_err *err)
{
    struct akm_leases *l = calloc(1, sizeof(*l));

    if (l == NULL) {
        ut_err_set(err, "order leases: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&l->mu, NULL);
    l->started_ms = akm_lease_now_ms(k);
    l->finalize = (struct akm_work){k, "orders", akm_order_finalize, 0};
    l->chall = (struct akm_work){k, "challenges", akm_chall_post, 0};
    l->finalize_succ = (struct akm_work){k, "orders", akm_order_finalize, 1};
    l->chall_succ = (struct akm_work){k, "challenges", akm_chall_post, 1};
    k->leases = l;
    return 0;
}

void akm_leases_free(struct akamu *k)
{
    if (k->leases == NULL)
        return;
    pthread_mutex_destroy(&k->leases->mu);
    free(k->leases->ids);
    free(k->leases);
    k->leases = NULL;
}

/* ---- the lease row ---- */

void akm_lease_name(const char *order_id, char out[AKM_LEASE_NAME_MAX])
{
    snprintf(out, AKM_LEASE_NAME_MAX, "order:%.*s", AKM_ID_LEN, order_id);
}

int akm_lease_get(struct akamu *k, sqlite3 *db, const char *order_id, struct akm_lease *l,
                  struct ut_err *err)
{
    char name[AKM_LEASE_NAME_MAX];
    json_error_t je;
    json_t *doc = NULL, *jo, *je_, *jn;
    uint8_t *v = NULL;
    size_t n = 0;
    int rc;

    memset(l, 0, sizeof(*l));
    if (db == NULL && (db = store_reader(k->store, err)) == NULL)
        return -EIO;
    akm_lease_name(order_id, name);
    rc = crdt_get(k->replica, db, LEASE_TABLE, name, &v, &n, err);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    doc = json_loadb((const char *)v, n, 0, &je);
    free(v);
    jo = json_object_get(doc, "owner");
    je_ = json_object_get(doc, "expires");
    jn = json_object_get(doc, "epoch");
    if (!json_is_string(jo) || json_string_length(jo) > CRY_ENV_ID_MAX || !json_is_integer(je_) ||
        !json_is_integer(jn) || json_integer_value(jn) < 0) {
        ut_err_set(err, "lease %s: not a lease document", name);
        json_decref(doc);
        return -EPROTO;
    }
    snprintf(l->owner, sizeof(l->owner), "%s", json_string_value(jo));
    l->expires_ms = (int64_t)json_integer_value(je_);
    l->epoch = (uint64_t)json_integer_value(jn);
    json_decref(doc);
    return 0;
}

int akm_lease_live(const struct akm_lease *l, int64_t now_ms)
{
    return l->owner[0] != '\0' && l->expires_ms > now_ms;
}

int64_t akm_lease_ttl_ms(const struct akamu *k, int validation)
{
    int64_t ttl = k->cfg->gossip.ownership_ttl_secs * 1000;

    if (ttl <= 0)
        ttl = DEFAULT_TTL_MS;
    if (validation && ttl < VA_DEADLINE_MS + VA_SLACK_MS)
        ttl = VA_DEADLINE_MS + VA_SLACK_MS;
    return ttl;
}

int akm_lease_take(struct akamu *k, sqlite3 *db, const char *order_id, int64_t ttl_ms,
                   struct akm_take *t, struct ut_err *err)
{
    char name[AKM_LEASE_NAME_MAX], holder[CRY_ENV_ID_MAX + 1];
    struct akm_lease prev;
    uint64_t epoch = 0;
    int rc;

    memset(t, 0, sizeof(*t));
    if ((rc = akm_lease_get(k, db, order_id, &prev, err)) < 0)
        return rc;
    snprintf(t->prev_owner, sizeof(t->prev_owner), "%s", prev.owner);
    t->prev_epoch = prev.epoch;
    akm_lease_name(order_id, name);
    rc = crdt_lease_acquire(k->replica, db, name, (uint64_t)ttl_ms, &epoch, holder, sizeof(holder),
                            err);
    if (rc == -EBUSY) {
        snprintf(t->prev_owner, sizeof(t->prev_owner), "%s", holder);
        t->holder_expires_ms = prev.expires_ms;
        return rc;
    }
    if (rc < 0)
        return rc;
    t->epoch = epoch;
    t->renewed = strcmp(prev.owner, k->node_id) == 0 && prev.epoch == epoch;
    return 0;
}

int akm_lease_check(struct akamu *k, sqlite3 *db, const char *order_id, uint64_t epoch,
                    struct ut_err *err)
{
    char name[AKM_LEASE_NAME_MAX];

    if (db == NULL && (db = store_reader(k->store, err)) == NULL)
        return -EIO;
    akm_lease_name(order_id, name);
    return crdt_lease_check(k->replica, db, name, epoch, err);
}

int akm_lease_release(struct akamu *k, sqlite3 *db, const char *order_id, uint64_t epoch,
                      struct ut_err *err)
{
    char name[AKM_LEASE_NAME_MAX];

    akm_lease_name(order_id, name);
    return crdt_lease_release(k->replica, db, name, epoch, err);
}

void akm_lease_log_take(const struct akamu *k, const char *order_id, const struct akm_take *t,
                        const char *what)
{
    if (!t->renewed && t->prev_owner[0] != '\0' && strcmp(t->prev_owner, k->node_id) != 0)
        ut_log(UT_LOG_INFO, MOD, "order lease taken over", UT_LF_S("order", order_id),
               UT_LF_I("epoch", t->epoch), UT_LF_S("from", t->prev_owner), UT_LF_S("work", what));
    else
        ut_log(UT_LOG_DEBUG, MOD, t->renewed ? "order lease renewed" : "order lease taken",
               UT_LF_S("order", order_id), UT_LF_I("epoch", t->epoch), UT_LF_S("work", what));
}

void akm_lease_log_fenced(const char *order_id, uint64_t epoch, const char *what,
                          const char *object, const char *why)
{
    ut_log(UT_LOG_WARN, MOD, "stale order owner fenced", UT_LF_S("order", order_id),
           UT_LF_I("epoch", epoch), UT_LF_S("work", what), UT_LF_S("object", object),
           UT_LF_S("reason", why));
}

/* ---- a restarted node's view ---- */

/* 1 once an outgoing gossip exchange succeeded since the start. */
static int exchanged(struct akamu *k)
{
    json_t *st = gsp_engine_status(k->engine);
    json_int_t last =
        json_integer_value(json_object_get(json_object_get(st, "totals"), "last_success_ms"));

    json_decref(st);
    return last > 0;
}

/* 1 when the order was created after this process started (so this node
 * has it from its own write or from a peer since: no copy from before). */
static int created_since_start(struct akamu *k, const char *order_id)
{
    json_t *o = akm_get(k, "orders", order_id);
    int64_t created = (int64_t)json_integer_value(json_object_get(o, "created_at"));

    json_decref(o);
    /* created_at is in whole seconds: the start's own second is not enough */
    return created > k->leases->started_ms / 1000;
}

int akm_lease_view_fresh(struct akamu *k, const char *order_id)
{
    struct akm_leases *l = k->leases;

    if (l == NULL || k->engine == NULL || atomic_load(&l->fresh))
        return 1;
    if (gsp_engine_peer_count(k->engine) == 0 ||
        akm_lease_now_ms(k) - l->started_ms >= akm_lease_ttl_ms(k, 0) || exchanged(k)) {
        atomic_store(&l->fresh, 1);
        return 1;
    }
    return created_since_start(k, order_id);
}

/* ---- routing ---- */

void akm_reply_lease_busy(struct akamu *k, struct http_req *r, const char *order_id,
                          const char *holder, int64_t expires_ms)
{
    int64_t left = expires_ms - akm_lease_now_ms(k);
    long long secs = left <= 0 ? 1 : (left + 999) / 1000;
    char v[24];

    if (secs > RETRY_MAX_SECS)
        secs = RETRY_MAX_SECS;
    snprintf(v, sizeof(v), "%lld", secs);
    http_add_header(r, "Retry-After", v);
    akm_problem(k, r, 503, "serverInternal",
                "order %s is being worked on by node %.200s, which cannot take this request "
                "now; its lease on the order ends in %lld s, when another node may take over",
                order_id, holder, secs);
}

int akm_work_order(struct akamu *k, const char *tbl, const char *id, char out[AKM_ID_LEN + 1])
{
    json_t *ch = NULL, *az = NULL;
    const char *oid = NULL;
    int rc = -ENOENT;

    if (id == NULL || strlen(id) != AKM_ID_LEN)
        return -ENOENT;
    if (strcmp(tbl, "orders") == 0) {
        oid = id;
    } else if (strcmp(tbl, "challenges") == 0 && (ch = akm_get(k, "challenges", id)) != NULL &&
               str(ch, "authz") && (az = akm_get(k, "authorizations", str(ch, "authz"))) != NULL) {
        oid = str(az, "order");
    }
    if (oid && strlen(oid) == AKM_ID_LEN) {
        memcpy(out, oid, AKM_ID_LEN + 1);
        rc = 0;
    }
    json_decref(ch);
    json_decref(az);
    return rc;
}

static const struct akm_work *work_of(struct akamu *k, const char *tbl)
{
    if (k->leases == NULL)
        return NULL;
    if (strcmp(tbl, "orders") == 0)
        return &k->leases->finalize;
    if (strcmp(tbl, "challenges") == 0)
        return &k->leases->chall;
    return NULL;
}

int akm_route_work(struct akamu *k, struct http_req *r, const char *tbl, const char *id)
{
    const struct akm_work *w = work_of(k, tbl);
    char oid[AKM_ID_LEN + 1], tag[AKM_TAG_LEN + 1];
    struct ut_err e = {{0}};
    struct akm_lease l;

    if (w == NULL || k->fwd == NULL || akm_fwd_hop(k, r) >= AKM_HOP_REDEEMED ||
        akm_work_order(k, tbl, id, oid) < 0)
        return 0;
    if (akm_lease_get(k, NULL, oid, &l, &e) < 0) {
        ut_log(UT_LOG_WARN, MOD, "cannot read an order lease", UT_LF_S("order", oid),
               UT_LF_S("error", e.msg));
        return 0;
    }
    if (akm_lease_live(&l, akm_lease_now_ms(k))) {
        if (strcmp(l.owner, k->node_id) == 0)
            return 0;
        akm_node_tag(l.owner, tag);
        return akm_forward_work(k, r, tag, w, "lease holder");
    }
    if (akm_id_tag(oid, tag) < 0 || strcmp(tag, k->tag) == 0)
        return 0;
    return akm_forward_work(k, r, tag, w, "order creator");
}

int akm_forward_holder(struct akamu *k, struct http_req *r, const char *tbl, const char *order_id,
                       const struct akm_take *t)
{
    const struct akm_work *w = work_of(k, tbl);
    char tag[AKM_TAG_LEN + 1];

    akm_node_tag(t->prev_owner, tag);
    if (w && akm_forward_work(k, r, tag, w, "lease holder") == 1)
        return 1;
    akm_reply_lease_busy(k, r, order_id, t->prev_owner, t->holder_expires_ms);
    return 0;
}

static const struct akm_work *successor_work(struct akamu *k, const struct akm_work *w)
{
    return strcmp(w->tbl, "orders") == 0 ? &k->leases->finalize_succ : &k->leases->chall_succ;
}

void akm_work_unreachable(struct akamu *k, struct http_req *r, const struct akm_work *w,
                          const char *why)
{
    char oid[AKM_ID_LEN + 1], creator[AKM_TAG_LEN + 1], last[AKM_TAG_LEN + 1],
        succ[AKM_TAG_LEN + 1];
    struct ut_err e = {{0}};
    struct akm_lease l;

    if (akm_work_order(k, w->tbl, http_req_param(r, "id"), oid) < 0 ||
        akm_lease_get(k, NULL, oid, &l, &e) < 0) {
        http_add_header(r, "Retry-After", "2");
        akm_problem(k, r, 503, "serverInternal",
                    "the node that owns this order is unreachable (%s)", why);
        return;
    }
    if (akm_lease_live(&l, akm_lease_now_ms(k)) && strcmp(l.owner, k->node_id) != 0) {
        ut_log(UT_LOG_INFO, MOD, "order owner unreachable; its lease is live",
               UT_LF_S("order", oid), UT_LF_S("owner", l.owner), UT_LF_I("epoch", l.epoch),
               UT_LF_S("why", why));
        akm_reply_lease_busy(k, r, oid, l.owner, l.expires_ms);
        return;
    }
    /* Not any node that notices: the order's successor, so that two
     * requests for one order reaching two nodes while its owner is down
     * meet on one node, whose store transaction lets one of them win. A
     * successor that does not answer either is marked down (forward.c) and
     * we come back here: the next one in the same order, until that is
     * this node. */
    akm_id_tag(oid, creator);
    if (l.owner[0])
        akm_node_tag(l.owner, last);
    if (akm_successor(k, oid, creator, l.owner[0] ? last : NULL, succ) == 0 &&
        strcmp(succ, k->tag) != 0) {
        ut_log(UT_LOG_INFO, MOD, "order owner unreachable; sending the request to its successor",
               UT_LF_S("order", oid), UT_LF_S("successor", succ), UT_LF_S("why", why),
               UT_LF_S("after", w->successor ? "successor unreachable" : "owner unreachable"));
        if (akm_forward_work(k, r, succ, successor_work(k, w), "takeover successor") == 1)
            return;
    }
    ut_log(UT_LOG_INFO, MOD, "order owner unreachable; taking the request here",
           UT_LF_S("order", oid), UT_LF_S("path", http_req_path(r)), UT_LF_S("why", why));
    akm_fwd_run_takeover(k, r, w->fn);
}

/* ---- validations in flight here ---- */

static ssize_t inflight_find(const struct akm_leases *l, const char *id)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->ids[i], id) == 0)
            return (ssize_t)i;
    }
    return -1;
}

int akm_inflight_add(struct akamu *k, const char *chall_id)
{
    struct akm_leases *l = k->leases;
    int rc = 0;

    if (l == NULL || strlen(chall_id) > AKM_ID_LEN)
        return 0;
    pthread_mutex_lock(&l->mu);
    if (inflight_find(l, chall_id) >= 0) {
        rc = -EEXIST;
    } else {
        if (l->n == l->cap) {
            size_t ncap = l->cap ? l->cap * 2 : INFLIGHT_INIT_CAP;
            char(*nv)[AKM_ID_LEN + 1] = realloc(l->ids, ncap * sizeof(*nv));

            if (nv == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            l->ids = nv;
            l->cap = ncap;
        }
        snprintf(l->ids[l->n++], AKM_ID_LEN + 1, "%s", chall_id);
    }
out:
    pthread_mutex_unlock(&l->mu);
    return rc;
}

void akm_inflight_del(struct akamu *k, const char *chall_id)
{
    struct akm_leases *l = k->leases;
    ssize_t i;

    if (l == NULL)
        return;
    pthread_mutex_lock(&l->mu);
    if ((i = inflight_find(l, chall_id)) >= 0)
        memmove(l->ids[i], l->ids[--l->n], AKM_ID_LEN + 1);
    pthread_mutex_unlock(&l->mu);
}

int akm_inflight_has(struct akamu *k, const char *chall_id)
{
    struct akm_leases *l = k->leases;
    int has;

    if (l == NULL)
        return 0;
    pthread_mutex_lock(&l->mu);
    has = inflight_find(l, chall_id) >= 0;
    pthread_mutex_unlock(&l->mu);
    return has;
}

/* ---- documents inside a store job ---- */

json_t *akm_get_in(struct akamu *k, sqlite3 *db, const char *tbl, const char *id)
{
    uint8_t *v = NULL;
    size_t n = 0;
    json_error_t je;
    json_t *doc;

    if (id == NULL || crdt_get(k->replica, db, tbl, id, &v, &n, NULL) < 0)
        return NULL;
    doc = json_loadb((const char *)v, n, JSON_REJECT_DUPLICATES, &je);
    free(v);
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}
