/*
 * engine.c - the gossip engine: life cycle, scheduling, one push-pull
 * exchange on either side, building pages and applying them. Protocol and
 * the argument for convergence: docs/replication.md.
 */
#include "gossip/engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gossip/nodeid.h"
#include "util/log.h"
#include "util/mem.h"

struct gsp_exchange {
    char node_id[CRY_ENV_ID_MAX + 1];
    enum gsp_due_kind why;
    struct cry_env_req *req;
    struct gsp_vv vv_sent;    /* our vv when the request was built */
    struct gsp_vv stated;     /* what the request stated as our vv (contact.c) */
    struct gsp_vv pvv_before; /* what we believed the peer had */
    int pvv_was_known;
    int sent_more; /* our page was full */
    size_t n_sent;
};

static uint64_t realtime_ms(void *arg)
{
    struct timespec ts;

    (void)arg;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t gsp_now_(struct gsp_engine *e)
{
    return e->clock(e->clock_arg);
}

const char *gsp_peer_label_(const struct gsp_peer *p)
{
    return p->url[0] ? p->url : p->node_id;
}

static uint64_t min64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---- change notification (store writer thread) ---- */

static void on_change(void *arg)
{
    struct gsp_engine *e = arg;
    uint_fast64_t zero = 0;

    atomic_compare_exchange_strong(&e->pending_since_ms, &zero, gsp_now_(e));
    atomic_fetch_add(&e->change_epoch, 1);
    gsp_wake_(e);
}

void gsp_wake_(struct gsp_engine *e)
{
    pthread_mutex_lock(&e->wake_mu);
    if (e->wake != NULL)
        e->wake(e->wake_arg);
    pthread_mutex_unlock(&e->wake_mu);
}

void gsp_engine_set_wakeup(struct gsp_engine *e, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&e->wake_mu);
    e->wake = fn;
    e->wake_arg = arg;
    pthread_mutex_unlock(&e->wake_mu);
}

const char *gsp_engine_node_id(const struct gsp_engine *e)
{
    return e->self_id;
}

size_t gsp_engine_peer_count(struct gsp_engine *e)
{
    size_t n = 0;

    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n_peers; i++)
        n += strcmp(e->peers[i]->node_id, e->self_id) != 0;
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* ---- our own version vector ---- */

/* Copies our current vv (and its hash) to out/hash, reloading the cache
 * when crdt_generation() moved. The generation is read before the load, so
 * the cache is never older than the generation it is filed under. */
static int self_vv(struct gsp_engine *e, struct gsp_vv *out, uint8_t hash[GSP_VVH_BYTES],
                   struct ut_err *err)
{
    uint64_t gen = crdt_generation(e->replica);
    struct crdt_vv cv = {0};
    struct gsp_vv fresh = {0};
    sqlite3 *db;
    int rc = 0, stale;

    pthread_mutex_lock(&e->mu);
    stale = !e->self_vv_ok || e->self_vv_gen != gen;
    pthread_mutex_unlock(&e->mu);
    if (stale) {
        db = store_reader(e->store, err);
        rc = db ? crdt_vv_load(e->replica, db, &cv, err) : -EIO;
        if (rc == 0)
            rc = gsp_vv_from_crdt(&fresh, &cv);
        crdt_vv_free(&cv);
        if (rc < 0)
            goto out;
    }
    pthread_mutex_lock(&e->mu);
    if (stale && (!e->self_vv_ok || gen >= e->self_vv_gen)) {
        gsp_vv_free(&e->self_vv);
        e->self_vv = fresh;
        memset(&fresh, 0, sizeof(fresh));
        e->self_vv_gen = gen;
        e->self_vv_ok = 1;
        gsp_vv_hash(&e->self_vv, e->self_vv_hash);
    }
    if (out != NULL)
        rc = gsp_vv_copy(out, &e->self_vv);
    if (hash != NULL)
        memcpy(hash, e->self_vv_hash, GSP_VVH_BYTES);
    pthread_mutex_unlock(&e->mu);
out:
    gsp_vv_free(&fresh);
    return rc;
}

/* Our vv read from db itself, for building a page on that connection: the
 * bound of every scan must be a vv the scanning connection has seen (a
 * later snapshot only adds rows above it; the cache may come from another
 * connection whose snapshot this one has not reached). */
static int fresh_vv(struct gsp_engine *e, sqlite3 *db, struct gsp_vv *out,
                    uint8_t hash[GSP_VVH_BYTES], struct ut_err *err)
{
    struct crdt_vv cv = {0};
    int rc = crdt_vv_load(e->replica, db, &cv, err);

    if (rc == 0)
        rc = gsp_vv_from_crdt(out, &cv);
    crdt_vv_free(&cv);
    if (rc == 0)
        gsp_vv_hash(out, hash);
    return rc;
}

/* ---- pages ---- */

struct page {
    struct ut_buf ent; /* pre-encoded entry arrays */
    size_t n;
    size_t cap; /* page_bytes */
    struct gsp_vv through;
    struct gsp_vv from; /* the receiver's vv each through range starts at */
    int more;
    uint64_t bound, last; /* scan of one origin */
    int full;
    size_t skipped;
};

static int page_cb(const struct crdt_entry *ce, void *arg)
{
    struct page *pg = arg;
    size_t before = pg->ent.len;
    int rc;

    /* Only what our vv declares complete is sent: a row beyond it arrived
     * in an unfinished page and may have gaps below it. */
    if (ce->seq > pg->bound)
        return 2;
    rc = gsp_entry_encode(&pg->ent, ce);
    if (rc == -EINVAL) {
        pg->skipped++; /* every receiver would refuse it; the through marker covers it */
        return 0;
    }
    if (rc < 0 || (pg->n > 0 && pg->ent.len > pg->cap)) {
        pg->ent.len = before;
        pg->full = 1;
        return 1;
    }
    pg->n++;
    pg->last = ce->seq;
    if (pg->n >= GSP_MAX_ENTRIES || pg->ent.len >= pg->cap) {
        pg->full = 1;
        return 1;
    }
    return 0;
}

static void page_init(struct page *pg, size_t cap)
{
    memset(pg, 0, sizeof(*pg));
    pg->cap = cap;
    ut_buf_init(&pg->ent, cap + GSP_MAX_VALUE + GSP_MAX_KEY + 1024);
}

static void page_free(struct page *pg)
{
    ut_buf_free(&pg->ent);
    gsp_vv_free(&pg->through);
    gsp_vv_free(&pg->from);
}

/* Fills pg with what a node at pv lacks from us (self), origin by origin
 * in seq order, and the through markers [from, through]: from = pv[o] (the
 * point the range starts at: the receiver may use it only if it really
 * has everything up to there, so a stale pv can never make it skip a
 * gap); through = self[o] for an origin scanned to the end of what self
 * declares complete, the last seq sent (never above self[o]) for the
 * origin where the page filled up, none for origins not reached. */
static int build_page(struct gsp_engine *e, sqlite3 *db, const struct gsp_vv *self,
                      const struct gsp_vv *pv, struct page *pg, struct ut_err *err)
{
    int rc;

    for (size_t i = 0; i < self->n; i++) {
        const char *o = self->origin[i];
        uint64_t after = gsp_vv_get(pv, o);

        if (self->seq[i] <= after)
            continue;
        if (pg->full) {
            pg->more = 1;
            break;
        }
        pg->bound = self->seq[i];
        pg->last = 0;
        rc = crdt_scan(e->replica, db, o, after, page_cb, pg, err);
        if (rc < 0)
            return rc;
        if (pg->full) {
            pg->more = 1;
            if (pg->last > after && ((rc = gsp_vv_set(&pg->through, o, pg->last)) < 0 ||
                                     (rc = gsp_vv_set(&pg->from, o, after)) < 0))
                return rc;
            break;
        }
        rc = gsp_vv_set(&pg->through, o, pg->bound);
        if (rc == 0)
            rc = gsp_vv_set(&pg->from, o, after);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- applying a message ---- */

struct apply_job {
    struct gsp_engine *e;
    const struct gsp_msg *m;
    const uint8_t *refuse;
    const struct gsp_vv *before; /* our vv before (for "moved"); may be NULL */
    struct gsp_vv stop;          /* origin -> first seq refused for clock skew */
    unsigned flags;              /* crdt_apply_ex flags (CRDT_APPLY_SOURCE: re-sync source) */
    size_t applied, older, skew, unknown, invalid, gaps;
    int moved; /* some through marker raised our vv */
};

static int apply_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct apply_job *j = arg;
    const struct gsp_msg *m = j->m;
    struct crdt_vv cur = {0};
    struct ut_err lerr;
    int rc;

    /* Our vv as of this transaction: a through range applies only when
     * we hold everything up to its start. */
    if (m->through.n > 0 && (rc = crdt_vv_load(j->e->replica, db, &cur, err)) < 0)
        return rc;
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct crdt_entry *ce = &m->entries[i];
        uint64_t s;

        if (j->refuse != NULL && j->refuse[i])
            continue;
        s = gsp_vv_get(&j->stop, ce->origin);
        if (s != 0 && ce->seq >= s)
            continue;
        rc = crdt_apply_ex(j->e->replica, db, ce, j->flags, &lerr);
        if (rc == CRDT_APPLIED) {
            j->applied++;
        } else if (rc > 0) {
            j->older++;
        } else if (rc == -ERANGE) {
            /* Refused for clock skew: the origin's vv must stay below it,
             * so it is asked for again once the clocks agree. */
            j->skew++;
            if ((rc = gsp_vv_set(&j->stop, ce->origin, ce->seq)) < 0)
                goto out;
        } else if (rc == -ENOENT) {
            j->unknown++; /* a table this version does not declare */
        } else if (rc == -EINVAL) {
            j->invalid++;
        } else {
            ut_err_set(err, "%s", lerr.msg);
            goto out;
        }
    }
    for (size_t i = 0; i < m->through.n; i++) {
        const char *o = m->through.origin[i];
        uint64_t t = m->through.seq[i], s = gsp_vv_get(&j->stop, o);

        if (crdt_vv_get(&cur, o) < gsp_vv_get(&m->through_from, o)) {
            /* The sender believed we had more than we do (a lost or
             * refused earlier page): the entries are applied, but the
             * range before them is still missing. Our next vv tells it. */
            j->gaps++;
            continue;
        }
        if (s != 0)
            t = min64(t, s - 1);
        if (t == 0)
            continue;
        rc = crdt_vv_advance(j->e->replica, db, o, t, err);
        if (rc < 0)
            goto out;
        if (j->before == NULL || t > gsp_vv_get(j->before, o))
            j->moved = 1;
    }
    rc = 0;
out:
    crdt_vv_free(&cur);
    return rc;
}

/* Validates membership entries and applies m in one store_write job.
 * flags: from gsp_contact_pre_ (the re-sync source's entries). */
static int apply_msg(struct gsp_engine *e, const struct gsp_msg *m, const char *from,
                     const struct gsp_vv *before, unsigned flags, struct apply_job *j,
                     struct ut_err *err)
{
    struct gsp_member *acc = NULL;
    uint8_t *refuse = NULL;
    size_t n_acc = 0, n_ref = 0;
    int rc;

    memset(j, 0, sizeof(*j));
    j->e = e;
    j->m = m;
    j->before = before;
    j->flags = flags;
    if (m->n_entries == 0 && m->through.n == 0)
        return 0;
    if (m->n_entries > 0) {
        refuse = calloc(m->n_entries, 1);
        if (refuse == NULL)
            return -ENOMEM;
        n_ref = gsp_members_validate_(e, m, from, refuse, &acc, &n_acc);
    }
    j->refuse = refuse;
    rc = store_write(e->store, apply_fn, j, err);
    if (rc == 0 && (flags & CRDT_APPLY_SOURCE) == CRDT_APPLY_SOURCE)
        gsp_pass_raise_(e, from, m, &j->stop);
    if (rc == 0 && n_acc > 0)
        gsp_members_adopt_(e, acc, n_acc);
    if (rc == 0 && (n_ref > 0 || j->skew > 0 || j->unknown > 0 || j->invalid > 0)) {
        pthread_mutex_lock(&e->mu);
        struct gsp_peer *p = gsp_peer_find_(e, from);
        for (size_t i = 0; i < n_ref; i++)
            gsp_refuse_(e, p, "member_entry");
        for (size_t i = 0; i < j->skew; i++)
            gsp_refuse_(e, p, "clock_skew");
        for (size_t i = 0; i < j->unknown; i++)
            gsp_refuse_(e, p, "unknown_table");
        for (size_t i = 0; i < j->invalid; i++)
            gsp_refuse_(e, p, "invalid_entry");
        pthread_mutex_unlock(&e->mu);
        if (j->unknown > 0 || j->invalid > 0)
            ut_log(UT_LOG_WARN, e->log_module, "entries ignored", UT_LF_S("peer", from),
                   UT_LF_I("unknown_table", j->unknown), UT_LF_I("invalid", j->invalid));
    }
    gsp_vv_free(&j->stop);
    free(refuse);
    free(acc);
    return rc;
}

/* The vv the sender of m states (in full, or by the hash of our copy):
 * 1 and *out filled, 0 when unknown. */
static int peer_stated(struct gsp_engine *e, const char *node_id, const struct gsp_msg *m,
                       struct gsp_vv *out)
{
    struct gsp_peer *p;
    int known = 0;

    if (m->has_vv)
        return gsp_vv_copy(out, &m->vv) == 0;
    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, node_id);
    if (p != NULL && p->pvv_known && memcmp(p->pvv_hash, m->vvh, GSP_VVH_BYTES) == 0)
        known = gsp_vv_copy(out, &p->pvv) == 0;
    pthread_mutex_unlock(&e->mu);
    return known;
}

/* Warns (once per peer) when a peer has more of our own origin's writes
 * than our counter: our database was restored or wiped under the same
 * node id. Caller holds mu. */
static void check_own_origin(struct gsp_engine *e, struct gsp_peer *p, const struct gsp_vv *pv)
{
    uint64_t theirs = gsp_vv_get(pv, e->self_id), ours = gsp_vv_get(&e->self_vv, e->self_id);

    if (p == NULL || p->self_warned || !e->self_vv_ok || theirs <= ours)
        return;
    /* The cached vector may lag a write that committed since: read our
     * own counter afresh before calling it a restored database. */
    {
        struct ut_err err = {{0}};
        struct crdt_vv now = {0};
        sqlite3 *db = store_reader(e->store, &err);

        if (db == NULL || crdt_vv_load(e->replica, db, &now, &err) < 0) {
            crdt_vv_free(&now);
            return;
        }
        ours = crdt_vv_get(&now, e->self_id);
        crdt_vv_free(&now);
        if (theirs <= ours)
            return;
    }
    p->self_warned = 1;
    ut_log(UT_LOG_WARN, e->log_module,
           "peer holds more of this node's own writes than this node (database restored?)",
           UT_LF_S("peer", gsp_peer_label_(p)), UT_LF_I("peer_seq", theirs),
           UT_LF_I("own_seq", ours));
}

/* ---- life cycle ---- */

static char **dup_list(const char *const *v, size_t n)
{
    char **out = n ? calloc(n, sizeof(*out)) : NULL;

    for (size_t i = 0; out != NULL && i < n; i++)
        out[i] = ut_xstrdup(v[i] ? v[i] : "");
    return out;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

static int check_opts(const struct gsp_engine_opts *o, struct ut_err *err)
{
    if (o->store == NULL || o->replica == NULL || o->identity == NULL) {
        ut_err_set(err, "gossip engine: %s is NULL",
                   o->store == NULL ? "store" : (o->replica == NULL ? "replica" : "identity"));
        return -EINVAL;
    }
    if (strcmp(crdt_replica_origin(o->replica), cry_identity_node_id(o->identity)) != 0) {
        ut_err_set(err, "gossip engine: replica origin \"%s\" is not the node id \"%s\"",
                   crdt_replica_origin(o->replica), cry_identity_node_id(o->identity));
        return -EINVAL;
    }
    if (crdt_table_kind(o->replica, GSP_MEMBERS_TABLE) != CRDT_LWW) {
        ut_err_set(err, "gossip engine: the replica does not declare the LWW table \"%s\"",
                   GSP_MEMBERS_TABLE);
        return -EINVAL;
    }
    if (o->n_count_tables > GSP_MAX_COUNT_TABLES ||
        (o->n_count_tables > 0 && o->count_tables == NULL)) {
        ut_err_set(err, "gossip engine: %zu count_tables (at most %d)", o->n_count_tables,
                   GSP_MAX_COUNT_TABLES);
        return -EINVAL;
    }
    for (size_t i = 0; i < o->n_count_tables; i++) {
        if (o->count_tables[i] == NULL || crdt_table_kind(o->replica, o->count_tables[i]) < 0) {
            ut_err_set(err, "gossip engine: count table \"%s\" is not declared",
                       o->count_tables[i] ? o->count_tables[i] : "(null)");
            return -EINVAL;
        }
    }
    if ((o->n_peers > 0 && o->peers == NULL) || (o->n_allowed > 0 && o->allowed_node_ids == NULL)) {
        ut_err_set(err, "gossip engine: peers or allowed_node_ids is NULL with a count");
        return -EINVAL;
    }
    for (size_t i = 0; i < o->n_allowed; i++) {
        if (o->allowed_node_ids[i] == NULL || gsp_node_id_valid(o->allowed_node_ids[i]) < 0) {
            ut_err_set(err, "gossip engine: allowed_node_ids[%zu] \"%s\" is not a node id", i,
                       o->allowed_node_ids[i] ? o->allowed_node_ids[i] : "(null)");
            return -EINVAL;
        }
    }
    if (o->header_name && strlen(o->header_name) >= 64) {
        ut_err_set(err, "gossip engine: header name too long");
        return -EINVAL;
    }
    if (o->vouch_cert != NULL && (o->vouch_verify == NULL || !gsp_vouch_valid_(o->vouch_cert))) {
        ut_err_set(err, "gossip engine: %s",
                   o->vouch_verify == NULL ? "vouch_cert without vouch_verify"
                                           : "vouch_cert is not a usable certification string");
        return -EINVAL;
    }
    if (o->page_bytes != 0 && (o->page_bytes < 256 || o->page_bytes > (64u << 20))) {
        ut_err_set(err, "gossip engine: page_bytes %zu out of range [256, 64 MiB]", o->page_bytes);
        return -EINVAL;
    }
    return 0;
}

int gsp_engine_new(struct gsp_engine **out, const struct gsp_engine_opts *o, struct ut_err *err)
{
    struct cry_env_config ec = {0};
    struct gsp_engine *e = NULL;
    int rc;

    *out = NULL;
    rc = check_opts(o, err);
    if (rc < 0)
        return rc;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -ENOMEM;
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->wake_mu, NULL);
    atomic_init(&e->change_epoch, 0);
    atomic_init(&e->pending_since_ms, 0);
    e->store = o->store;
    e->replica = o->replica;
    e->id = o->identity;
    snprintf(e->self_id, sizeof(e->self_id), "%s", cry_identity_node_id(o->identity));
    cry_identity_public(e->id, e->self_kem, e->self_pub);
    if (o->self_url != NULL && o->self_url[0] && gsp_url_norm_(o->self_url, e->self_url) < 0) {
        ut_err_set(err, "gossip engine: self_url \"%s\" is not usable", o->self_url);
        rc = -EINVAL;
        goto out;
    }
    e->allowed = dup_list(o->allowed_node_ids, o->n_allowed);
    e->n_allowed = o->n_allowed;
    e->count_tables = dup_list(o->count_tables, o->n_count_tables);
    e->n_count = o->n_count_tables;
    snprintf(e->log_module, sizeof(e->log_module), "%s", o->log_module ? o->log_module : "gossip");
    snprintf(e->header_name, sizeof(e->header_name), "%s",
             o->header_name ? o->header_name : "X-Node-Id");
    e->interval_ms = o->interval_ms ? o->interval_ms : GSP_DEF_INTERVAL_MS;
    e->push_delay_ms = o->push_delay_ms ? o->push_delay_ms : GSP_DEF_PUSH_DELAY_MS;
    e->retry_ms = o->retry_ms ? o->retry_ms : GSP_DEF_RETRY_MS;
    e->page_bytes = o->page_bytes ? o->page_bytes : GSP_DEF_PAGE_BYTES;
    e->zstd_threshold = o->zstd_threshold ? o->zstd_threshold : GSP_DEF_ZSTD_THRESHOLD;
    e->skip_max = o->skip_max ? o->skip_max : GSP_DEF_SKIP_MAX;
    /* A receiver accepts what the largest allowed page of any node can be,
     * so nodes with different page_bytes still talk. */
    e->max_plain =
        gsp_max_plain(e->page_bytes > GSP_DEF_PAGE_BYTES ? e->page_bytes : GSP_DEF_PAGE_BYTES);
    e->clock = o->clock ? o->clock : realtime_ms;
    e->clock_arg = o->clock ? o->clock_arg : NULL;
    if ((o->n_allowed && e->allowed == NULL) || (o->n_count_tables && e->count_tables == NULL)) {
        rc = -ENOMEM;
        goto out;
    }
    e->vouch_verify = o->vouch_verify;
    e->vouch_arg = o->vouch_arg;
    if (o->vouch_cert != NULL) {
        struct ut_err verr = {{0}};

        e->vouch_cert = ut_xstrdup(o->vouch_cert);
        if (gsp_vouch_check_(e, e->self_id, e->self_kem, e->self_pub, e->vouch_cert, &verr) < 0) {
            ut_err_set(err, "gossip engine: this node's own certification does not verify: %s",
                       verr.msg);
            rc = -EINVAL;
            goto out;
        }
    }
    rc = cry_keystore_new(&e->ks);
    if (rc < 0)
        goto out;
    ec.max_message = e->max_plain + 4096;
    ec.sessions = o->sessions;
    ec.clock = e->clock;
    ec.clock_arg = e->clock_arg;
    ec.rand = o->rand;
    ec.rand_arg = o->rand_arg;
    rc = cry_env_new(e->id, e->ks, &ec, &e->env, err);
    if (rc < 0)
        goto out;
    rc = gsp_peers_load_(e, err);
    if (rc < 0)
        goto out;
    rc = gsp_peers_configure_(e, o->peers, o->n_peers, err);
    if (rc < 0)
        goto out;
    rc = gsp_members_init_(e, err);
    if (rc < 0)
        goto out;
    rc = self_vv(e, NULL, NULL, err);
    if (rc < 0)
        goto out;
    rc = gsp_contact_init_(e, err);
    if (rc < 0)
        goto out;
    crdt_set_change_cb(e->replica, on_change, e);
    if (gsp_engine_peer_count(e) == 0)
        ut_log(UT_LOG_WARN, e->log_module, "no peers configured — loop disabled");
    *out = e;
    e = NULL;
out:
    gsp_engine_free(e);
    return rc;
}

void gsp_engine_free(struct gsp_engine *e)
{
    if (e == NULL)
        return;
    if (e->replica != NULL)
        crdt_set_change_cb(e->replica, NULL, NULL);
    if (e->state_ready)
        gsp_contact_fini_(e); /* clean shutdown: the last contact */
    gsp_vv_free(&e->ref_vv);
    gsp_vv_free(&e->pass_vv);
    gsp_peers_free_(e);
    free(e->members);
    gsp_vv_free(&e->self_vv);
    cry_env_free(e->env);
    cry_keystore_free(e->ks);
    free_list(e->allowed, e->n_allowed);
    free_list(e->count_tables, e->n_count);
    free(e->vouch_cert);
    free(e->self_entry);
    free(e->vlogged);
    pthread_mutex_destroy(&e->mu);
    pthread_mutex_destroy(&e->wake_mu);
    free(e);
}

/* ---- scheduling ---- */

static int is_self(const struct gsp_engine *e, const struct gsp_peer *p)
{
    return strcmp(p->node_id, e->self_id) == 0 ||
           (e->self_url[0] && strcmp(p->url, e->self_url) == 0);
}

static void put_due(struct gsp_due *d, enum gsp_due_kind k, struct gsp_peer *p)
{
    memset(d, 0, sizeof(*d));
    d->kind = k;
    snprintf(d->node_id, sizeof(d->node_id), "%s", k == GSP_DUE_RESOLVE ? "" : p->node_id);
    snprintf(d->url, sizeof(d->url), "%s", p->url);
    if (k != GSP_DUE_RESOLVE && p->introduce) {
        d->introduce = 1; /* once */
        p->introduce = 0;
    }
}

size_t gsp_engine_due(struct gsp_engine *e, struct gsp_due *out, size_t max, uint64_t *next_ms)
{
    uint64_t now = gsp_now_(e), next = UINT64_MAX, epoch, since;
    size_t n = 0;

    /* Refreshes the cached vv (a failure keeps the old one: the in-sync
     * test then errs towards running rounds). */
    self_vv(e, NULL, NULL, NULL);
    since = atomic_load(&e->pending_since_ms);
    epoch = atomic_load(&e->change_epoch);
    pthread_mutex_lock(&e->mu);
    /* Every peer that has not seen the latest changes takes the time of
     * the first of them (once); then the mark is consumed. */
    for (size_t i = 0; i < e->n_peers; i++) {
        struct gsp_peer *p = e->peers[i];

        if (p->pinned && p->seen_epoch != epoch && p->dirty_since_ms == 0)
            p->dirty_since_ms = since != 0 && since <= now ? since : now;
    }
    if (since != 0) {
        uint_fast64_t expect = since;
        atomic_compare_exchange_strong(&e->pending_since_ms, &expect, 0);
    }
    for (size_t i = 0; i < e->n_peers; i++) {
        struct gsp_peer *p = e->peers[i];
        int in_sync;

        if (n == max) {
            next = now;
            break;
        }
        if (p->inflight || is_self(e, p))
            continue;
        if (p->node_id[0] == '\0') {
            if (p->url[0] == '\0')
                continue;
            if (now >= p->resolve_next_ms) {
                put_due(&out[n++], GSP_DUE_RESOLVE, p);
                p->resolve_next_ms = now + min64(e->interval_ms, e->retry_ms * 4);
            }
            next = min64(next, p->resolve_next_ms);
            continue;
        }
        if (p->url[0] == '\0')
            continue; /* it contacts us; nothing to schedule */
        /* A configured peer resolved but not pinned (its certification
         * did not verify, or there was none): fetch its kem-info again now
         * and then, in case it was re-certified. Its rounds still run and
         * log "no KEM key for peer" (once) until it is pinned. */
        if (e->vouch_verify != NULL && !p->pinned && (p->src & PEER_CONFIGURED)) {
            if (now >= p->resolve_next_ms) {
                put_due(&out[n++], GSP_DUE_RESOLVE, p);
                p->resolve_next_ms = now + e->interval_ms;
                if (n == max) {
                    next = now;
                    break;
                }
            }
            next = min64(next, p->resolve_next_ms);
        }
        if (now < p->backoff_until_ms) {
            next = min64(next, p->backoff_until_ms);
            continue;
        }
        /* The source of our re-sync is never "in sync": it is re-sending
         * everything, a round at least every interval. */
        in_sync = p->pvv_known && e->self_vv_ok && gsp_vv_le(&e->self_vv, &p->pvv) &&
                  !gsp_pass_source_locked_(e, p->node_id);
        if (p->pinned && p->more) {
            put_due(&out[n++], GSP_DUE_MORE, p);
            continue;
        }
        if (p->pinned && p->seen_epoch != epoch) {
            if (in_sync) {
                /* The peer already has everything we have (e.g. the
                 * change was its own entries, applied here). */
                p->seen_epoch = epoch;
                p->dirty_since_ms = 0;
            } else {
                if (now >= p->dirty_since_ms + e->push_delay_ms) {
                    put_due(&out[n++], GSP_DUE_PUSH, p);
                    continue;
                }
                next = min64(next, p->dirty_since_ms + e->push_delay_ms);
            }
        }
        if (now >= p->next_round_ms) {
            if (p->pinned && p->last_ok && in_sync && p->skips_in_row + 1 < e->skip_max) {
                p->skips_in_row++;
                p->c.skips++;
                e->total.skips++;
            } else {
                put_due(&out[n++], GSP_DUE_ROUND, p);
            }
            p->next_round_ms = now + e->interval_ms;
        }
        next = min64(next, p->next_round_ms);
    }
    pthread_mutex_unlock(&e->mu);
    if (next_ms != NULL)
        *next_ms = next == UINT64_MAX ? now + e->interval_ms : next;
    return n;
}

/* ---- requester ---- */

static void exchange_free(struct gsp_exchange *x)
{
    if (x == NULL)
        return;
    cry_env_req_free(x->req);
    gsp_vv_free(&x->vv_sent);
    gsp_vv_free(&x->stated);
    gsp_vv_free(&x->pvv_before);
    free(x);
}

/* A failed exchange: back off (doubling up to the interval) and retry
 * then; the cached peer vv is kept, so the retry sends only what is still
 * missing. Caller holds mu. */
static void backoff_locked(struct gsp_engine *e, struct gsp_peer *p, uint64_t now)
{
    uint64_t cap = e->interval_ms > e->retry_ms ? e->interval_ms : e->retry_ms;

    p->backoff_ms = p->backoff_ms ? min64(p->backoff_ms * 2, cap) : e->retry_ms;
    p->backoff_until_ms = now + p->backoff_ms;
    p->more = 1;
    p->last_ok = 0;
    p->c.failures++;
    e->total.failures++;
}

/* Ends an exchange on the peer record (caller holds mu). */
static void release_locked(struct gsp_engine *e, struct gsp_peer *p)
{
    if (p == NULL)
        return;
    p->inflight = 0;
    gsp_peer_gc_(e, p);
}

/* Claims the peer for a new exchange (caller holds mu): marks it in
 * flight, consumes its dirty mark and copies what the request needs. */
static int claim_locked(struct gsp_engine *e, struct gsp_peer *p, enum gsp_due_kind why,
                        uint64_t now, struct gsp_vv *pvv, uint8_t pvh[GSP_VVH_BYTES],
                        uint8_t acked[GSP_VVH_BYTES], int *use_vvh, int *pvv_known)
{
    p->inflight = 1;
    p->more = 0;
    p->seen_epoch = atomic_load(&e->change_epoch); /* before our vv is read */
    p->dirty_since_ms = 0;
    if (why == GSP_DUE_ROUND) {
        p->next_round_ms = now + e->interval_ms;
        p->skips_in_row = 0;
    }
    *pvv_known = p->pvv_known;
    memcpy(pvh, p->pvv_hash, GSP_VVH_BYTES);
    memcpy(acked, p->acked_hash, GSP_VVH_BYTES);
    *use_vvh = p->acked;
    return p->pvv_known ? gsp_vv_copy(pvv, &p->pvv) : 0;
}

int gsp_engine_begin(struct gsp_engine *e, const char *node_id, enum gsp_due_kind why,
                     uint8_t **msg, size_t *msg_len, struct gsp_exchange **xo, struct ut_err *err)
{
    struct gsp_exchange *x = NULL;
    struct gsp_msg_out mo = {0};
    struct gsp_peer *p;
    struct gsp_vv pvv = {0};
    struct page pg;
    uint8_t self_hash[GSP_VVH_BYTES], pvh[GSP_VVH_BYTES], acked[GSP_VVH_BYTES];
    uint8_t stated_hash[GSP_VVH_BYTES];
    uint8_t *payload = NULL;
    size_t payload_len = 0;
    int rc, pvv_known = 0, use_vvh = 0, claimed = 0;
    sqlite3 *db;
    uint64_t now = gsp_now_(e);

    *msg = NULL;
    *msg_len = 0;
    *xo = NULL;
    page_init(&pg, e->page_bytes);
    pthread_mutex_lock(&e->mu);
    p = node_id ? gsp_peer_find_(e, node_id) : NULL;
    if (p == NULL || !p->pinned) {
        if (p != NULL) {
            gsp_refuse_(e, p, "no_key");
            p->next_round_ms = now + e->interval_ms;
        }
        if (p == NULL || !p->nokey_logged) {
            ut_log(UT_LOG_WARN, e->log_module, "no KEM key for peer, skipping",
                   UT_LF_S("peer", p ? gsp_peer_label_(p) : (node_id ? node_id : "")));
            if (p != NULL)
                p->nokey_logged = 1;
        }
        ut_err_set(err, "gossip: peer \"%s\" is not pinned", node_id ? node_id : "(null)");
        rc = -ENOKEY;
    } else if (p->inflight) {
        ut_err_set(err, "gossip: an exchange with \"%s\" is already in flight", node_id);
        rc = -EBUSY;
    } else {
        claimed = 1;
        rc = claim_locked(e, p, why, now, &pvv, pvh, acked, &use_vvh, &pvv_known);
    }
    pthread_mutex_unlock(&e->mu);
    if (rc < 0)
        goto out;

    x = calloc(1, sizeof(*x));
    if (x == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    snprintf(x->node_id, sizeof(x->node_id), "%s", node_id);
    x->why = why;
    x->pvv_was_known = pvv_known;
    db = store_reader(e->store, err);
    rc = db ? fresh_vv(e, db, &x->vv_sent, self_hash, err) : -EIO;
    /* Without the peer's vv we cannot know what it lacks: the first
     * exchange only pulls and learns it; the next one pushes. */
    if (rc == 0 && pvv_known)
        rc = build_page(e, db, &x->vv_sent, &pvv, &pg, err);
    /* What we tell the peer we have (contact.c): our vv, or less while it
     * is the source of our re-sync, with the pseudo-origins. */
    if (rc == 0)
        rc = gsp_stated_vv_(e, node_id, &x->vv_sent, &x->stated);
    if (rc < 0)
        goto out;
    gsp_vv_hash(&x->stated, stated_hash);
    use_vvh = use_vvh && memcmp(acked, stated_hash, GSP_VVH_BYTES) == 0;
    mo.kind = GSP_MSG_REQUEST;
    mo.gen = crdt_generation(e->replica);
    mo.vv = use_vvh ? NULL : &x->stated;
    mo.vvh = use_vvh ? stated_hash : NULL;
    mo.pvh = pvv_known ? pvh : NULL;
    mo.entries = (const uint8_t *)pg.ent.data;
    mo.entries_len = pg.ent.len;
    mo.n_entries = pg.n;
    mo.through = &pg.through;
    mo.through_from = &pg.from;
    mo.more = pg.more;
    rc = gsp_msg_encode(&mo, e->zstd_threshold, &payload, &payload_len, NULL, err);
    if (rc == 0)
        rc =
            cry_env_seal_request(e->env, node_id, payload, payload_len, msg, msg_len, &x->req, err);
    if (rc == 0)
        rc = gsp_vv_copy(&x->pvv_before, &pvv);
    if (rc < 0)
        goto out;
    x->sent_more = pg.more;
    x->n_sent = pg.n;
    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, node_id);
    if (p != NULL) {
        p->c.pushes += why == GSP_DUE_PUSH;
        p->c.rounds += why == GSP_DUE_ROUND;
        p->c.exchanges++;
        p->c.bytes_out += *msg_len;
        p->c.entries_sent += pg.n;
    }
    e->total.pushes += why == GSP_DUE_PUSH;
    e->total.rounds += why == GSP_DUE_ROUND;
    e->total.exchanges++;
    e->total.bytes_out += *msg_len;
    e->total.entries_sent += pg.n;
    pthread_mutex_unlock(&e->mu);
    *xo = x;
    x = NULL;
out:
    if (rc < 0 && claimed) {
        /* Could not build or seal: nothing left; retry after a back-off. */
        free(*msg);
        *msg = NULL;
        *msg_len = 0;
        pthread_mutex_lock(&e->mu);
        p = gsp_peer_find_(e, node_id);
        if (p != NULL) {
            backoff_locked(e, p, now);
            gsp_refuse_(e, p, "internal");
            release_locked(e, p);
        }
        pthread_mutex_unlock(&e->mu);
    }
    exchange_free(x);
    free(payload);
    gsp_vv_free(&pvv);
    page_free(&pg);
    return rc;
}

/* The first-contact line: live counts of the configured tables, then
 * cluster_nodes. ut_log_ stops at the first end marker, so the fixed
 * array may carry unused slots. */
static void log_first_contact(struct gsp_engine *e, const char *label)
{
    struct ut_log_field f[GSP_MAX_COUNT_TABLES + 3];
    uint64_t counts[GSP_MAX_COUNT_TABLES + 1];
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(e->store, &err);
    size_t k = 0;

    for (size_t i = 0; i < GSP_MAX_COUNT_TABLES + 3; i++)
        f[i] = UT_LF_END;
    f[k++] = UT_LF_S("peer", label);
    for (size_t i = 0; i < e->n_count; i++) {
        if (strcmp(e->count_tables[i], GSP_MEMBERS_TABLE) == 0)
            continue;
        counts[i] = 0;
        if (db != NULL)
            crdt_count(e->replica, db, e->count_tables[i], &counts[i], &err);
        f[k++] = UT_LF_I(e->count_tables[i], counts[i]);
    }
    counts[GSP_MAX_COUNT_TABLES] = 0;
    if (db != NULL)
        crdt_count(e->replica, db, GSP_MEMBERS_TABLE, &counts[GSP_MAX_COUNT_TABLES], &err);
    f[k++] = UT_LF_I(GSP_MEMBERS_TABLE, counts[GSP_MAX_COUNT_TABLES]);
    ut_log_(UT_LOG_INFO, e->log_module, "first-contact merge complete", f[0], f[1], f[2], f[3],
            f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], f[12], f[13], f[14], f[15], f[16],
            f[17], f[18], UT_LF_END);
}

/* vv_sent raised by the through markers of a response: what the responder
 * now believes our vv is (it raises its copy the same way). */
static void believed_hash(const struct gsp_vv *sent, const struct gsp_vv *through,
                          uint8_t out[GSP_VVH_BYTES], int *ok)
{
    struct gsp_vv b = {0};

    *ok = gsp_vv_copy(&b, sent) == 0;
    for (size_t i = 0; *ok && i < through->n; i++)
        *ok = gsp_vv_raise(&b, through->origin[i], through->seq[i]) == 0;
    if (*ok)
        gsp_vv_hash(&b, out);
    gsp_vv_free(&b);
}

/* Updates the peer after a successful exchange (caller holds mu). Returns
 * 1 when the first-contact line is due. */
static int finish_ok_locked(struct gsp_engine *e, struct gsp_peer *p, const struct gsp_exchange *x,
                            struct gsp_msg *m, const struct apply_job *j,
                            const uint8_t bh[GSP_VVH_BYTES], int bh_ok, uint64_t now,
                            size_t resp_len)
{
    int progress, corrected, behind;

    if (m->has_vv) {
        gsp_vv_free(&p->pvv);
        p->pvv = m->vv;
        memset(&m->vv, 0, sizeof(m->vv));
        gsp_vv_hash(&p->pvv, p->pvv_hash);
        p->pvv_known = 1;
    } else if (!p->pvv_known || memcmp(p->pvv_hash, m->vvh, GSP_VVH_BYTES) != 0) {
        p->pvv_known = 0; /* our copy is not what it has: next time in full */
    }
    check_own_origin(e, p, &p->pvv);
    p->peer_gen = m->gen;
    p->acked = bh_ok;
    if (bh_ok)
        memcpy(p->acked_hash, bh, GSP_VVH_BYTES);
    /* Run again at once only while something moves: a peer that keeps
     * refusing (clock skew) waits for the next round instead. */
    progress = p->pvv_known && !gsp_vv_le(&p->pvv, &x->pvv_before);
    /* Our belief was too high (a page we sent was lost or refused): the
     * peer's real vv is known now; send what it lacks at once. */
    corrected = p->pvv_known && x->pvv_was_known && !gsp_vv_le(&x->pvv_before, &p->pvv);
    behind = p->pvv_known && !gsp_vv_le(&x->vv_sent, &p->pvv);
    p->more = (x->sent_more && progress) || (m->more && j->moved) || m->need_vv || !p->pvv_known ||
              ((!x->pvv_was_known || corrected) && behind);
    p->last_ok = 1;
    p->backoff_ms = 0;
    p->backoff_until_ms = 0;
    p->fail_logged = 0;
    p->c.last_success_ms = now;
    p->c.bytes_in += resp_len;
    p->c.entries_received += m->n_entries;
    p->c.entries_applied += j->applied;
    if (p->more || p->first_done)
        return 0;
    p->first_done = 1;
    return 1;
}

int gsp_engine_finish(struct gsp_engine *e, struct gsp_exchange *x, const uint8_t *resp,
                      size_t resp_len, struct ut_err *err)
{
    struct gsp_msg m = {0};
    struct apply_job j = {0};
    struct gsp_peer *p;
    struct gsp_vv pv = {0};
    uint8_t *pl = NULL, bh[GSP_VVH_BYTES];
    size_t pl_len = 0;
    uint64_t now = gsp_now_(e);
    const char *reason = NULL;
    char label[GSP_URL_MAX];
    unsigned flags;
    int rc, bh_ok = 0, first = 0, pv_known = 0;

    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, x->node_id);
    snprintf(label, sizeof(label), "%s", p ? gsp_peer_label_(p) : x->node_id);
    pthread_mutex_unlock(&e->mu);

    rc = cry_env_open_response(e->env, x->req, resp, resp_len, &pl, &pl_len, err);
    if (rc != 0) {
        reason = cry_env_errname(rc);
        ut_log(UT_LOG_WARN, e->log_module, "verify_and_open response failed",
               UT_LF_S("peer", label), UT_LF_S("reason", reason));
        if (rc == CRY_ENV_E_DECRYPT || rc == CRY_ENV_E_NO_SESSION)
            cry_env_session_drop(e->env, x->node_id);
        goto out;
    }
    rc = gsp_msg_decode(pl, pl_len, e->max_plain, &m, err);
    if (rc == 0 && (m.kind != GSP_MSG_RESPONSE || (!m.has_vv && !m.has_vvh))) {
        ut_err_set(err, "gossip payload: not a response or no vv");
        rc = -EBADMSG;
    }
    if (rc < 0) {
        reason = "payload";
        ut_log(UT_LOG_WARN, e->log_module, "malformed response", UT_LF_S("peer", label),
               UT_LF_S("error", err ? err->msg : ""));
        goto out;
    }
    pv_known = peer_stated(e, x->node_id, &m, &pv);
    flags = gsp_contact_pre_(e, x->node_id, pv_known ? &pv : NULL);
    rc = apply_msg(e, &m, x->node_id, &x->vv_sent, flags, &j, err);
    if (rc < 0) {
        reason = "store";
        ut_log(UT_LOG_ERROR, e->log_module, "applying entries failed", UT_LF_S("peer", label),
               UT_LF_S("error", err ? err->msg : ""));
        goto out;
    }
    if (!m.need_vv && j.skew == 0)
        believed_hash(&x->stated, &m.through, bh, &bh_ok);
    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, x->node_id);
    if (p != NULL) {
        first = finish_ok_locked(e, p, x, &m, &j, bh, bh_ok, now, resp_len);
        release_locked(e, p);
    }
    e->total.last_success_ms = now;
    e->total.bytes_in += resp_len;
    e->total.entries_received += m.n_entries;
    e->total.entries_applied += j.applied;
    pthread_mutex_unlock(&e->mu);
    /* Staleness and re-sync (contact.c); records the contact. */
    gsp_contact_post_(e, x->node_id, pv_known ? &pv : NULL, 1, m.more, j.skew);
    if (first)
        log_first_contact(e, label);
out:
    if (reason != NULL) {
        /* Refused or unusable: back off like a transport failure. */
        pthread_mutex_lock(&e->mu);
        p = gsp_peer_find_(e, x->node_id);
        gsp_refuse_(e, p, reason);
        if (p != NULL) {
            p->c.bytes_in += resp_len;
            backoff_locked(e, p, now);
            release_locked(e, p);
        }
        e->total.bytes_in += resp_len;
        pthread_mutex_unlock(&e->mu);
        if (rc > 0)
            rc = -EPROTO;
    }
    gsp_msg_free(&m);
    gsp_vv_free(&pv);
    if (pl != NULL) {
        ut_memzero(pl, pl_len);
        free(pl);
    }
    exchange_free(x);
    return rc;
}

void gsp_engine_fail(struct gsp_engine *e, struct gsp_exchange *x, int http_status,
                     const char *reason)
{
    struct gsp_peer *p;
    char why[32], label[GSP_URL_MAX], msg[128];
    uint64_t now;
    int log_it = 0;

    if (e == NULL || x == NULL)
        return;
    now = gsp_now_(e);
    if (http_status == 0)
        snprintf(why, sizeof(why), "transport");
    else
        snprintf(why, sizeof(why), "http_%d", http_status);
    /* A 400/409 may be a session the peer no longer has (it restarted):
     * the next request is a full X-Wing message. */
    if (http_status == 400 || http_status == 409)
        cry_env_session_drop(e->env, x->node_id);
    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, x->node_id);
    gsp_refuse_(e, p, why);
    snprintf(label, sizeof(label), "%s", p ? gsp_peer_label_(p) : x->node_id);
    if (p != NULL) {
        log_it = !p->fail_logged;
        p->fail_logged = 1;
        backoff_locked(e, p, now);
        release_locked(e, p);
    }
    pthread_mutex_unlock(&e->mu);
    if (http_status == 403) {
        /* Logged every time: it names a trust problem an operator must fix. */
        snprintf(msg, sizeof(msg), "%s header rejected by peer", e->header_name);
        ut_log(UT_LOG_WARN, e->log_module, msg, UT_LF_S("peer", label));
    } else if (log_it) {
        ut_log(UT_LOG_WARN, e->log_module, "sync failed", UT_LF_S("peer", label),
               UT_LF_I("status", http_status), UT_LF_S("reason", reason ? reason : ""));
    }
    exchange_free(x);
}

/* ---- responder ---- */

static int status_for(int rc)
{
    switch (rc) {
    case CRY_ENV_E_TOO_LARGE:
        return 413;
    case CRY_ENV_E_UNKNOWN_SENDER:
    case CRY_ENV_E_SIGNATURE:
        return 403;
    case CRY_ENV_E_REPLAY:
    case CRY_ENV_E_COUNTER_REPLAY:
    case CRY_ENV_E_COUNTER_OLD:
    case CRY_ENV_E_NO_SESSION:
    case CRY_ENV_E_SESSION_EXPIRED:
        return 409;
    case -ENOMEM:
    case -EIO:
    case -E2BIG:
        return 500;
    default:
        return 400;
    }
}

/* Counts and (rate-limited per reason) logs a refused request. who is the
 * authenticated sender when authed, else the unauthenticated header. */
static int refuse_request(struct gsp_engine *e, const char *who, int authed, const char *reason,
                          int status, int rc, int *http_status, const char *detail)
{
    uint64_t now = gsp_now_(e);
    int log_it = 0;
    size_t slot = GSP_MAX_REASONS;

    pthread_mutex_lock(&e->mu);
    gsp_refuse_(e, authed && who ? gsp_peer_find_(e, who) : NULL, reason);
    for (size_t i = 0; i < GSP_MAX_REASONS; i++) {
        if (strcmp(e->refusal_log_reason[i], reason) == 0 || e->refusal_log_reason[i][0] == 0) {
            slot = i;
            break;
        }
    }
    if (slot < GSP_MAX_REASONS) {
        if (e->refusal_log_reason[slot][0] == 0) {
            snprintf(e->refusal_log_reason[slot], GSP_REASON_LEN, "%s", reason);
            log_it = 1;
        } else {
            log_it = now >= e->refusal_log_ms[slot] + GSP_REFUSAL_LOG_MS;
        }
        if (log_it)
            e->refusal_log_ms[slot] = now;
    }
    pthread_mutex_unlock(&e->mu);
    if (log_it)
        ut_log(UT_LOG_WARN, e->log_module, "sync request refused", UT_LF_S("peer", who ? who : ""),
               UT_LF_S("reason", reason), UT_LF_I("status", status),
               UT_LF_S("detail", detail ? detail : ""));
    *http_status = status;
    return rc < 0 ? rc : -EPROTO;
}

int gsp_engine_handle(struct gsp_engine *e, const uint8_t *msg, size_t msg_len,
                      const char *header_node_id, uint8_t **resp, size_t *resp_len,
                      int *http_status, struct ut_err *err)
{
    struct cry_env_inreq *ctx = NULL;
    struct gsp_msg m = {0};
    struct gsp_msg_out mo = {0};
    struct apply_job j = {0};
    struct gsp_vv self = {0}, rv = {0}, stated = {0};
    struct gsp_peer *p;
    struct page pg;
    uint8_t *pl = NULL, *payload = NULL, self_hash[GSP_VVH_BYTES], stated_hash[GSP_VVH_BYTES];
    size_t pl_len = 0, payload_len = 0;
    char sender[CRY_ENV_ID_MAX + 1];
    const char *why = NULL, *who = header_node_id;
    unsigned flags;
    int rc, need_vv = 0, rv_known = 0, authed = 0, status = 500;
    sqlite3 *db;

    *resp = NULL;
    *resp_len = 0;
    *http_status = 500;
    page_init(&pg, e->page_bytes);
    if (msg_len > e->max_plain + 4096) {
        ut_err_set(err, "gossip: request of %zu bytes is too large", msg_len);
        why = "too_large";
        status = 413;
        rc = -E2BIG;
        goto out;
    }
    rc = cry_env_open_request(e->env, msg, msg_len, &pl, &pl_len, &ctx, err);
    if (rc != 0) {
        why = cry_env_errname(rc);
        status = status_for(rc);
        goto out;
    }
    snprintf(sender, sizeof(sender), "%s", cry_env_inreq_peer(ctx));
    who = sender;
    authed = 1;
    if (header_node_id == NULL || strcmp(header_node_id, sender) != 0) {
        ut_err_set(err, "gossip: %s header \"%.64s\" does not match the signed sender \"%s\"",
                   e->header_name, header_node_id ? header_node_id : "(absent)", sender);
        why = "node_id_header";
        status = 403;
        rc = -EPERM;
        goto out;
    }
    rc = gsp_msg_decode(pl, pl_len, e->max_plain, &m, err);
    if (rc == 0 && (m.kind != GSP_MSG_REQUEST || (!m.has_vv && !m.has_vvh))) {
        ut_err_set(err, "gossip payload: not a request or no vv");
        rc = -EBADMSG;
    }
    if (rc < 0) {
        why = "payload";
        status = rc == -E2BIG ? 413 : 400;
        goto out;
    }
    rv_known = peer_stated(e, sender, &m, &rv);
    flags = gsp_contact_pre_(e, sender, rv_known ? &rv : NULL);
    gsp_vv_free(&rv);
    rv_known = 0;
    rc = apply_msg(e, &m, sender, NULL, flags, &j, err);
    if (rc < 0) {
        why = "store";
        goto out;
    }

    /* What the requester has: stated, or named by hash of what it stated
     * before. */
    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, sender);
    if (m.has_vv) {
        rc = gsp_vv_copy(&rv, &m.vv);
        rv_known = rc == 0;
        if (p != NULL && rc == 0) {
            gsp_vv_free(&p->pvv);
            p->pvv = m.vv;
            memset(&m.vv, 0, sizeof(m.vv));
            gsp_vv_hash(&p->pvv, p->pvv_hash);
            p->pvv_known = 1;
        }
    } else if (p != NULL && p->pvv_known && memcmp(p->pvv_hash, m.vvh, GSP_VVH_BYTES) == 0) {
        rc = gsp_vv_copy(&rv, &p->pvv);
        rv_known = rc == 0;
    } else {
        need_vv = 1;
    }
    if (p != NULL) {
        check_own_origin(e, p, &rv);
        p->peer_gen = m.gen;
        p->c.served++;
        p->c.bytes_in += msg_len;
        p->c.entries_received += m.n_entries;
        p->c.entries_applied += j.applied;
    }
    e->total.served++;
    e->total.bytes_in += msg_len;
    e->total.entries_received += m.n_entries;
    e->total.entries_applied += j.applied;
    pthread_mutex_unlock(&e->mu);
    if (rc < 0)
        goto out;

    db = store_reader(e->store, err);
    rc = db ? fresh_vv(e, db, &self, self_hash, err) : -EIO;
    if (rc == 0 && rv_known)
        rc = build_page(e, db, &self, &rv, &pg, err);
    if (rc == 0)
        rc = gsp_stated_vv_(e, sender, &self, &stated);
    if (rc < 0)
        goto out;
    gsp_vv_hash(&stated, stated_hash);
    mo.kind = GSP_MSG_RESPONSE;
    mo.gen = crdt_generation(e->replica);
    /* The requester's copy of our vv is current: name it by hash. */
    if (m.has_pvh && memcmp(m.pvh, stated_hash, GSP_VVH_BYTES) == 0)
        mo.vvh = stated_hash;
    else
        mo.vv = &stated;
    mo.entries = (const uint8_t *)pg.ent.data;
    mo.entries_len = pg.ent.len;
    mo.n_entries = pg.n;
    mo.through = &pg.through;
    mo.through_from = &pg.from;
    mo.more = pg.more;
    mo.need_vv = need_vv;
    rc = gsp_msg_encode(&mo, e->zstd_threshold, &payload, &payload_len, NULL, err);
    if (rc == 0)
        rc = cry_env_seal_response(e->env, ctx, payload, payload_len, resp, resp_len, err);
    if (rc < 0)
        goto out;

    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, sender);
    if (p != NULL) {
        /* Optimistically: the requester applies what we declared complete.
         * If it does not (lost response, clock skew), its next request
         * names another vv hash and we learn its real vv again. */
        if (rv_known && p->pvv_known) {
            for (size_t i = 0; i < pg.through.n; i++)
                gsp_vv_raise(&p->pvv, pg.through.origin[i], pg.through.seq[i]);
            gsp_vv_hash(&p->pvv, p->pvv_hash);
        }
        p->c.bytes_out += *resp_len;
        p->c.entries_sent += pg.n;
    }
    e->total.bytes_out += *resp_len;
    e->total.entries_sent += pg.n;
    pthread_mutex_unlock(&e->mu);
    gsp_contact_post_(e, sender, rv_known ? &rv : NULL, 0, 0, j.skew);
    *http_status = 200;
    rc = 0;
out:
    if (rc != 0) {
        free(*resp);
        *resp = NULL;
        *resp_len = 0;
        rc = refuse_request(e, who, authed, why ? why : "internal", status, rc, http_status,
                            err ? err->msg : NULL);
    }
    cry_env_inreq_free(ctx);
    gsp_msg_free(&m);
    if (pl != NULL) {
        ut_memzero(pl, pl_len);
        free(pl);
    }
    free(payload);
    gsp_vv_free(&self);
    gsp_vv_free(&stated);
    gsp_vv_free(&rv);
    page_free(&pg);
    return rc;
}
