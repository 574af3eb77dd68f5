/*
 * contact.c - the engine after a long absence, and periodic GC
 * (docs/replication.md section 8).
 *
 * A node that had no successful exchange for longer than the tombstone TTL
 * may hold rows whose tombstones the others purged meanwhile: nothing it
 * receives will delete them, and it would serve them (and write them again)
 * forever. The engine remembers when it last completed an exchange with
 * anyone, either way (node-local table gossip_state: written at most once a
 * minute, on every transition below and at shutdown), and:
 *
 * 1. Arms (at start, or at the first exchange or maintenance pass after
 *    the gap while running) when that time is older than now - TTL,
 *    keeping it (armed_lc) and our version vector as it was (ref_vv).
 *    While armed, entries older than the horizon for keys we lack are
 *    taken when we never saw that write (CRDT_APPLY_UNSEEN): rows created
 *    while we were away.
 * 2. Every node states its GC mark in the version vector it sends: the
 *    unix ms of the newest tombstone it ever purged (pseudo-origin "~gc").
 *    An armed node meeting a peer that is not re-syncing itself, has seen
 *    writes we had not (its vv not <= ref_vv) and purged a tombstone newer
 *    than armed_lc - margin, may hold rows deleted there: before applying
 *    that peer's message it logs the WARN line and opens a re-sync pass
 *    with the peer as the source. A peer that is not such a source and
 *    holds everything we hold disarms us: a whole cluster started again
 *    after a long stop re-syncs nothing.
 * 3. The pass: crdt_resync_begin marks our old live rows; to the source we
 *    state the vector of what it re-sent in this pass (empty at first) and
 *    "~resync": 1, so it sends everything it holds; its entries are applied
 *    with CRDT_APPLY_SOURCE (they confirm our rows). When a response of the
 *    source leaves nothing to page and the pass vector covers its vv,
 *    crdt_resync_end deletes the rows it did not confirm: those deleted
 *    (and purged) there. Nothing is deleted before: a pass without a
 *    reachable source loses nothing (a failing source is replaced by
 *    another eligible peer). Our persisted vector is never lowered, so our
 *    own seq counter never goes back.
 * 4. Two nodes re-syncing from each other (their requests crossed): the
 *    one with the greater node id yields (forgets its marks, stays armed)
 *    and re-syncs once the other completed.
 * A new node (no last contact recorded, no rows of other origins) is armed
 * with armed_lc 0: it takes old rows it never saw from any peer that is
 * not re-syncing, and disarms after an exchange with a peer that had
 * nothing it lacks; one that loses contact for longer than the TTL before
 * that is armed as in 1.
 */
#include "gossip/engine_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gossip/members.h"
#include "util/log.h"

#define LC_SAVE_EVERY_MS 60000u /* the last contact is persisted at most this often */

static const char state_sql[] = "CREATE TABLE IF NOT EXISTS gossip_state("
                                " name TEXT PRIMARY KEY NOT NULL,"
                                " value TEXT NOT NULL"
                                ") WITHOUT ROWID";

int gsp_vv_le_real_(const struct gsp_vv *a, const struct gsp_vv *b)
{
    for (size_t i = 0; a != NULL && i < a->n; i++)
        if (a->origin[i][0] != '~' && a->seq[i] > gsp_vv_get(b, a->origin[i]))
            return 0;
    return 1;
}

int gsp_pass_source_locked_(const struct gsp_engine *e, const char *peer)
{
    return e->pass && e->pass_source[0] != '\0' && peer != NULL &&
           strcmp(e->pass_source, peer) == 0;
}

/* ---- gossip_state ---- */

/* What is persisted, taken under mu. */
struct snapshot {
    uint64_t last_contact_ms;
    int armed;
    uint64_t armed_lc_ms;
    char *ref_vv; /* JSON, when armed */
    int pass;
    char source[CRY_ENV_ID_MAX + 1];
};

static char *vv_to_json(const struct gsp_vv *v)
{
    json_t *o = json_object();
    char *s;

    for (size_t i = 0; o != NULL && i < v->n; i++)
        json_object_set_new(o, v->origin[i], json_integer((json_int_t)v->seq[i]));
    s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return s;
}

static int vv_from_json(const char *s, struct gsp_vv *out)
{
    json_t *o = json_loads(s, 0, NULL);
    const char *k;
    json_t *v;
    int rc = 0;

    if (!json_is_object(o)) {
        json_decref(o);
        return -EINVAL;
    }
    json_object_foreach(o, k, v)
    {
        if (json_is_integer(v) && json_integer_value(v) > 0 && rc == 0)
            rc = gsp_vv_set(out, k, (uint64_t)json_integer_value(v));
    }
    json_decref(o);
    return rc;
}

static void snapshot_locked(struct gsp_engine *e, struct snapshot *s)
{
    memset(s, 0, sizeof(*s));
    s->last_contact_ms = e->last_contact_ms;
    s->armed = e->armed;
    s->armed_lc_ms = e->armed_lc_ms;
    s->ref_vv = e->armed ? vv_to_json(&e->ref_vv) : NULL;
    s->pass = e->pass;
    snprintf(s->source, sizeof(s->source), "%s", e->pass_source);
}

static int put(struct gsp_engine *e, sqlite3 *db, const char *name, const char *value,
               struct ut_err *err)
{
    sqlite3_stmt *st;
    int rc;

    if (value == NULL)
        st = store_stmt(e->store, db, "DELETE FROM gossip_state WHERE name = ?1", err);
    else
        st = store_stmt(e->store, db,
                        "INSERT INTO gossip_state(name, value) VALUES(?1, ?2)"
                        " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                        err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (value != NULL)
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "gossip_state: writing \"%s\": %s", name, sqlite3_errmsg(db));
        return store_sqlite_errno(rc) < 0 ? store_sqlite_errno(rc) : -EIO;
    }
    return 0;
}

static int write_snapshot(struct gsp_engine *e, sqlite3 *db, const struct snapshot *s,
                          struct ut_err *err)
{
    char lc[24], alc[24];
    int rc;

    snprintf(lc, sizeof(lc), "%" PRIu64, s->last_contact_ms);
    snprintf(alc, sizeof(alc), "%" PRIu64, s->armed_lc_ms);
    if ((rc = put(e, db, "last_contact_ms", s->last_contact_ms ? lc : NULL, err)) < 0 ||
        (rc = put(e, db, "armed_lc_ms", s->armed ? alc : NULL, err)) < 0 ||
        (rc = put(e, db, "ref_vv", s->armed ? (s->ref_vv ? s->ref_vv : "{}") : NULL, err)) < 0 ||
        (rc = put(e, db, "pass_source", s->pass ? s->source : NULL, err)) < 0)
        return rc;
    return 0;
}

/* A transition: the crdt side (begin/end of the marks) and the state, in
 * one transaction. */
enum { OP_NONE = 0, OP_BEGIN, OP_END_DROP, OP_END_KEEP };
struct state_job {
    struct gsp_engine *e;
    const struct snapshot *s;
    int op;
    uint64_t n; /* rows marked / dropped */
};

static int state_job_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    static const char *const keep[] = {GSP_MEMBERS_TABLE};
    struct state_job *j = arg;
    int rc = 0;

    if (j->op == OP_BEGIN)
        rc = crdt_resync_begin(j->e->replica, db, keep, 1, &j->n, err);
    else if (j->op == OP_END_DROP || j->op == OP_END_KEEP)
        rc = crdt_resync_end(j->e->replica, db, j->op == OP_END_DROP, &j->n, err);
    if (rc == 0)
        rc = write_snapshot(j->e, db, j->s, err);
    return rc;
}

static int persist(struct gsp_engine *e, const struct snapshot *s, int op, uint64_t *n,
                   struct ut_err *err)
{
    struct state_job j = {.e = e, .s = s, .op = op};
    int rc = store_write(e->store, state_job_fn, &j, err);

    if (n != NULL)
        *n = j.n;
    return rc;
}

/* Persists the last contact when it changed (at most every minute unless
 * forced); no lock held. */
static void save_contact(struct gsp_engine *e, int force)
{
    struct ut_err err = {{0}};
    struct snapshot s;
    uint64_t now = gsp_now_(e);
    int due;

    pthread_mutex_lock(&e->mu);
    due = e->state_ready && !e->pass_busy && e->last_contact_ms != e->lc_saved_ms &&
          (force || now >= e->lc_saved_at_ms + LC_SAVE_EVERY_MS);
    if (due) {
        snapshot_locked(e, &s);
        e->pass_busy = 1;
    }
    pthread_mutex_unlock(&e->mu);
    if (!due)
        return;
    if (persist(e, &s, OP_NONE, NULL, &err) < 0)
        ut_log(UT_LOG_WARN, e->log_module, "cannot record the last contact",
               UT_LF_S("error", err.msg));
    pthread_mutex_lock(&e->mu);
    e->pass_busy = 0;
    e->lc_saved_ms = s.last_contact_ms;
    e->lc_saved_at_ms = now;
    pthread_mutex_unlock(&e->mu);
    free(s.ref_vv);
}

static void iso_time(uint64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (ms == 0 || gmtime_r(&t, &tm) == NULL || strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, n, "never");
}

/* ---- start ---- */

struct load_ctx {
    struct gsp_engine *e;
    char *lc, *alc, *ref, *src;
};

static int load_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct load_ctx *c = arg;
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_exec(db, state_sql, NULL, NULL, NULL) != SQLITE_OK) {
        ut_err_set(err, "gossip_state: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    st = store_stmt(c->e->store, db, "SELECT name, value FROM gossip_state", err);
    if (st == NULL)
        return -EIO;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *n = (const char *)sqlite3_column_text(st, 0);
        const char *v = (const char *)sqlite3_column_text(st, 1);
        char **slot = NULL;

        if (n == NULL || v == NULL)
            continue;
        if (strcmp(n, "last_contact_ms") == 0)
            slot = &c->lc;
        else if (strcmp(n, "armed_lc_ms") == 0)
            slot = &c->alc;
        else if (strcmp(n, "ref_vv") == 0)
            slot = &c->ref;
        else if (strcmp(n, "pass_source") == 0)
            slot = &c->src;
        if (slot != NULL && *slot == NULL)
            *slot = strdup(v);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "gossip_state: reading: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    return 0;
}

/* 1 when the replica holds no row of another origin (a new node). */
static int only_own_rows(struct gsp_engine *e)
{
    for (size_t i = 0; i < e->self_vv.n; i++)
        if (strcmp(e->self_vv.origin[i], e->self_id) != 0 && e->self_vv.seq[i] > 0)
            return 0;
    return 1;
}

int gsp_contact_init_(struct gsp_engine *e, struct ut_err *err)
{
    struct load_ctx c = {.e = e};
    struct snapshot s;
    uint64_t now = gsp_now_(e);
    char when[32];
    int rc, armed_now = 0;

    e->ttl_ms = crdt_tombstone_ttl_ms(e->replica);
    /* A tombstone made shortly before our last contact may not have
     * reached us yet: clocks disagree by up to the skew tolerance, and a
     * lost push is repaired by the next rounds. */
    e->margin_ms = CRDT_DEF_MAX_SKEW_MS + 2 * e->interval_ms;
    e->gc_every_ms = crdt_gc_interval_ms(e->replica);
    e->gc_next_ms = now; /* the first GC at the first maintenance pass */
    rc = store_write(e->store, load_fn, &c, err);
    if (rc < 0)
        goto out;
    e->last_contact_ms = c.lc ? strtoull(c.lc, NULL, 10) : 0;
    e->lc_saved_ms = e->last_contact_ms;
    e->lc_saved_at_ms = now;
    if (c.alc != NULL) {
        /* Armed (or re-syncing) when we stopped: carry on. */
        e->armed = 1;
        e->armed_lc_ms = strtoull(c.alc, NULL, 10);
        if (c.ref == NULL || vv_from_json(c.ref, &e->ref_vv) < 0)
            gsp_vv_free(&e->ref_vv); /* unknown: any peer with data qualifies */
        if (c.src != NULL && e->armed_lc_ms != 0) {
            e->pass = 1;
            snprintf(e->pass_source, sizeof(e->pass_source), "%s", c.src);
        }
    } else if (e->last_contact_ms != 0 && now > e->last_contact_ms + e->ttl_ms) {
        e->armed = armed_now = 1;
        e->armed_lc_ms = e->last_contact_ms;
        rc = gsp_vv_copy(&e->ref_vv, &e->self_vv);
    } else if (e->last_contact_ms == 0 && only_own_rows(e)) {
        e->armed = armed_now = 1; /* a new node: its first sync takes old rows */
        e->armed_lc_ms = 0;
    }
    if (rc == 0 && crdt_resync_active(e->replica) && !e->pass) {
        /* Marks without a pass (state lost): re-sync from any source. */
        e->armed = e->pass = 1;
        e->pass_source[0] = '\0';
    }
    if (rc < 0)
        goto out;
    e->state_ready = 1;
    if (armed_now) {
        snapshot_locked(e, &s);
        rc = persist(e, &s, OP_NONE, NULL, err);
        free(s.ref_vv);
        if (rc < 0)
            goto out;
        if (e->armed_lc_ms != 0) {
            iso_time(e->last_contact_ms, when, sizeof(when));
            ut_log(UT_LOG_INFO, e->log_module,
                   "no exchange for longer than tombstone_ttl_secs; peers' GC marks decide at the "
                   "next contact whether to re-sync",
                   UT_LF_S("last_contact", when), UT_LF_I("ttl", e->ttl_ms / 1000));
        }
    }
    if (e->pass)
        ut_log(UT_LOG_INFO, e->log_module, "re-sync pass still open; continuing",
               UT_LF_S("source", e->pass_source));
out:
    free(c.lc);
    free(c.alc);
    free(c.ref);
    free(c.src);
    return rc;
}

void gsp_contact_fini_(struct gsp_engine *e)
{
    save_contact(e, 1);
}

/* ---- stated vectors ---- */

int gsp_stated_vv_(struct gsp_engine *e, const char *peer, const struct gsp_vv *real,
                   struct gsp_vv *out)
{
    uint64_t mark = crdt_gc_mark(e->replica);
    int rc;

    pthread_mutex_lock(&e->mu);
    rc = gsp_vv_copy(out, gsp_pass_source_locked_(e, peer) ? &e->pass_vv : real);
    if (rc == 0 && e->pass)
        rc = gsp_vv_set(out, GSP_VV_RESYNC, 1);
    pthread_mutex_unlock(&e->mu);
    if (rc == 0 && mark > 0)
        rc = gsp_vv_set(out, GSP_VV_GC_MARK, mark);
    return rc;
}

/* ---- arming ---- */

/* Arms when the last contact is older than the TTL (caller holds mu).
 * 1 when it armed now. */
static int arm_locked(struct gsp_engine *e, uint64_t now)
{
    /* A new node still in its first sync that then lost contact for
     * longer than the TTL is a stale node like any other. */
    if ((e->armed && e->armed_lc_ms != 0) || e->pass || e->last_contact_ms == 0 ||
        now <= e->last_contact_ms + e->ttl_ms)
        return 0;
    e->armed = 1;
    e->armed_lc_ms = e->last_contact_ms;
    /* The cached vector: no exchange raised it since the last contact
     * (there was none), so it is what we held then, plus our own writes. */
    if (gsp_vv_copy(&e->ref_vv, &e->self_vv) < 0)
        gsp_vv_free(&e->ref_vv);
    return 1;
}

/* Logs that we armed and persists it (unless save is 0: a snapshot
 * written right after carries it). */
static void armed_now(struct gsp_engine *e, int save)
{
    struct ut_err err = {{0}};
    struct snapshot s;
    char when[32];
    int go;

    pthread_mutex_lock(&e->mu);
    iso_time(e->armed_lc_ms, when, sizeof(when));
    go = save && !e->pass_busy;
    if (go) {
        snapshot_locked(e, &s);
        e->pass_busy = 1;
    }
    pthread_mutex_unlock(&e->mu);
    ut_log(UT_LOG_INFO, e->log_module,
           "no exchange for longer than tombstone_ttl_secs; peers' GC marks decide at the next "
           "contact whether to re-sync",
           UT_LF_S("last_contact", when), UT_LF_I("ttl", e->ttl_ms / 1000));
    if (!go)
        return;
    if (persist(e, &s, OP_NONE, NULL, &err) < 0)
        ut_log(UT_LOG_WARN, e->log_module, "cannot record the re-sync state",
               UT_LF_S("error", err.msg));
    free(s.ref_vv);
    pthread_mutex_lock(&e->mu);
    e->pass_busy = 0;
    pthread_mutex_unlock(&e->mu);
}

/* Whether peer (stated vv pv) may be the source of our re-sync (caller
 * holds mu): not re-syncing itself, holding writes we had not seen when we
 * lost contact, and (after a gap, not for a new node) having purged a
 * tombstone we may have missed. */
static int eligible_locked(const struct gsp_engine *e, const struct gsp_vv *pv)
{
    uint64_t gc = gsp_vv_get(pv, GSP_VV_GC_MARK);

    if (gsp_vv_get(pv, GSP_VV_RESYNC) != 0 || gsp_vv_le_real_(pv, &e->ref_vv))
        return 0;
    return e->armed_lc_ms == 0 || gc + e->margin_ms > e->armed_lc_ms;
}

static const char *label_locked(struct gsp_engine *e, const char *peer, char *buf, size_t n)
{
    struct gsp_peer *p = gsp_peer_find_(e, peer);

    snprintf(buf, n, "%s", p ? gsp_peer_label_(p) : peer);
    return buf;
}

/* The pass (re)starts with peer as the source: pull from it at once
 * (caller holds mu). */
static void start_pulling_locked(struct gsp_engine *e, const char *peer)
{
    struct gsp_peer *p = gsp_peer_find_(e, peer);

    e->pass_fresh = 1;
    e->pass_moved = 0;
    if (p != NULL)
        p->more = 1;
}

/* Opens a re-sync pass with peer as the source, marking our old rows
 * (no lock held; pass_busy claimed by the caller, s its snapshot). */
static int begin_pass(struct gsp_engine *e, const char *peer, const char *label,
                      const struct snapshot *s, uint64_t gc)
{
    struct ut_err err = {{0}};
    char when[32];
    uint64_t n = 0;
    int rc;

    iso_time(s->armed_lc_ms, when, sizeof(when));
    ut_log(UT_LOG_WARN, e->log_module,
           "out of contact for longer than tombstone_ttl_secs; discarding replicated rows "
           "older than the horizon and re-syncing from peers",
           UT_LF_S("last_contact", when), UT_LF_I("ttl", e->ttl_ms / 1000), UT_LF_S("peer", label),
           UT_LF_I("peer_gc_mark_ms", gc));
    rc = persist(e, s, OP_BEGIN, &n, &err);
    pthread_mutex_lock(&e->mu);
    e->pass_busy = 0;
    if (rc < 0) {
        e->pass = 0; /* not begun: the next exchange tries again */
        e->pass_source[0] = '\0';
    }
    pthread_mutex_unlock(&e->mu);
    if (rc < 0) {
        ut_log(UT_LOG_ERROR, e->log_module, "re-sync cannot begin", UT_LF_S("peer", label),
               UT_LF_S("error", err.msg));
        return rc;
    }
    ut_log(UT_LOG_INFO, e->log_module, "re-sync source", UT_LF_S("peer", label),
           UT_LF_I("marked", n));
    (void)peer;
    return 0;
}

unsigned gsp_contact_pre_(struct gsp_engine *e, const char *peer, const struct gsp_vv *pv)
{
    uint64_t now = gsp_now_(e), gc = pv ? gsp_vv_get(pv, GSP_VV_GC_MARK) : 0;
    char label[GSP_URL_MAX];
    struct snapshot s;
    unsigned flags = 0;
    int armed, begin = 0;

    pthread_mutex_lock(&e->mu);
    armed = e->state_ready && arm_locked(e, now);
    if (pv != NULL && e->state_ready && !e->pass_busy && e->armed && !e->pass &&
        e->armed_lc_ms != 0 && eligible_locked(e, pv)) {
        /* Before its entries are applied, so they already confirm ours. */
        begin = 1;
        e->pass = 1;
        snprintf(e->pass_source, sizeof(e->pass_source), "%s", peer);
        gsp_vv_free(&e->pass_vv);
        start_pulling_locked(e, peer);
        snapshot_locked(e, &s);
        e->pass_busy = 1;
        label_locked(e, peer, label, sizeof(label));
    }
    pthread_mutex_unlock(&e->mu);
    if (armed)
        armed_now(e, !begin);
    if (begin) {
        begin_pass(e, peer, label, &s, gc);
        free(s.ref_vv);
    }
    pthread_mutex_lock(&e->mu);
    if (gsp_pass_source_locked_(e, peer))
        flags = CRDT_APPLY_SOURCE;
    else if (e->armed && pv != NULL && gsp_vv_get(pv, GSP_VV_RESYNC) == 0)
        flags = CRDT_APPLY_UNSEEN; /* catching up: take old rows we never saw */
    pthread_mutex_unlock(&e->mu);
    return flags;
}

void gsp_pass_raise_(struct gsp_engine *e, const char *peer, const struct gsp_msg *m,
                     const struct gsp_vv *stop)
{
    pthread_mutex_lock(&e->mu);
    if (gsp_pass_source_locked_(e, peer)) {
        for (size_t i = 0; i < m->through.n; i++) {
            const char *o = m->through.origin[i];
            uint64_t t = m->through.seq[i], s = gsp_vv_get(stop, o);

            if (gsp_vv_get(&e->pass_vv, o) < gsp_vv_get(&m->through_from, o))
                continue; /* a gap: the source learns our pass vector next time */
            if (s != 0 && t >= s)
                t = s - 1;
            if (t > gsp_vv_get(&e->pass_vv, o)) {
                gsp_vv_raise(&e->pass_vv, o, t);
                e->pass_moved = 1;
            }
        }
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---- after an exchange ---- */

enum { ACT_NONE = 0, ACT_SWITCH, ACT_YIELD, ACT_COMPLETE, ACT_DISARM, ACT_FIRST_DONE };

/* Our vector as committed now (a new node's first sync is done when the
 * peer has nothing more than that). */
static int load_self(struct gsp_engine *e, struct gsp_vv *out)
{
    struct ut_err err = {{0}};
    struct crdt_vv cv = {0};
    sqlite3 *db = store_reader(e->store, &err);
    int rc = db ? crdt_vv_load(e->replica, db, &cv, &err) : -EIO;

    if (rc == 0)
        rc = gsp_vv_from_crdt(out, &cv);
    crdt_vv_free(&cv);
    return rc;
}

/* Decides what this exchange changes (caller holds mu; no transition in
 * progress). pv: the peer's stated vv; mine: our committed vv when we are
 * a new node in its first sync, else NULL. */
static int decide_locked(struct gsp_engine *e, const char *peer, const struct gsp_vv *pv,
                         int requester, int resp_more, size_t skew, const struct gsp_vv *mine)
{
    int peer_resync = gsp_vv_get(pv, GSP_VV_RESYNC) != 0;

    if (e->pass) {
        struct gsp_peer *src;

        if (gsp_pass_source_locked_(e, peer)) {
            if (peer_resync)
                return strcmp(e->self_id, peer) > 0 ? ACT_YIELD : ACT_NONE;
            /* The source had nothing left to page and everything it holds
             * came back in this pass. */
            if (requester && !resp_more && skew == 0 && gsp_vv_le_real_(pv, &e->pass_vv))
                return ACT_COMPLETE;
            return ACT_NONE;
        }
        /* The source is unknown (state lost) or failing: take this one. */
        src = e->pass_source[0] ? gsp_peer_find_(e, e->pass_source) : NULL;
        if ((src == NULL || !src->last_ok) && eligible_locked(e, pv))
            return ACT_SWITCH;
        return ACT_NONE;
    }
    if (!e->armed || peer_resync)
        return ACT_NONE;
    if (e->armed_lc_ms == 0) /* the peer has nothing we lack */
        return mine != NULL && gsp_vv_le_real_(pv, mine) ? ACT_FIRST_DONE : ACT_NONE;
    /* Not eligible (gsp_contact_pre_ would have begun a pass), and it
     * holds everything we hold: nothing we kept can be one it deleted. */
    if (!eligible_locked(e, pv) && gsp_vv_le_real_(&e->self_vv, pv))
        return ACT_DISARM;
    return ACT_NONE;
}

void gsp_contact_post_(struct gsp_engine *e, const char *peer, const struct gsp_vv *pv,
                       int requester, int resp_more, size_t skew)
{
    struct ut_err err = {{0}};
    struct gsp_vv mine = {0};
    struct snapshot s;
    char label[GSP_URL_MAX];
    uint64_t now = gsp_now_(e), n = 0, armed_lc;
    int act = ACT_NONE, op = OP_NONE, first, have_mine = 0, rc;

    pthread_mutex_lock(&e->mu);
    first = e->armed && e->armed_lc_ms == 0 && !e->pass;
    pthread_mutex_unlock(&e->mu);
    if (first && pv != NULL)
        have_mine = load_self(e, &mine) == 0;

    pthread_mutex_lock(&e->mu);
    if (pv != NULL && !e->pass_busy && e->state_ready)
        act = decide_locked(e, peer, pv, requester, resp_more, skew, have_mine ? &mine : NULL);
    e->last_contact_ms = now;
    armed_lc = e->armed_lc_ms;
    switch (act) {
    case ACT_SWITCH:
        snprintf(e->pass_source, sizeof(e->pass_source), "%s", peer);
        gsp_vv_free(&e->pass_vv);
        start_pulling_locked(e, peer);
        break;
    case ACT_YIELD:
        op = OP_END_KEEP; /* stay armed: begin again once the peer completed */
        e->pass = 0;
        e->pass_source[0] = '\0';
        gsp_vv_free(&e->pass_vv);
        e->resync_yields++;
        break;
    case ACT_COMPLETE:
        op = OP_END_DROP;
        /* fall through */
    case ACT_DISARM:
    case ACT_FIRST_DONE:
        e->pass = 0;
        e->pass_source[0] = '\0';
        gsp_vv_free(&e->pass_vv);
        e->armed = 0;
        gsp_vv_free(&e->ref_vv);
        break;
    default:
        break;
    }
    if (act == ACT_NONE && requester && pv != NULL && gsp_pass_source_locked_(e, peer)) {
        /* Page through the source's state at once while it moves; a
         * source that refuses to move (clock skew) is retried each round. */
        struct gsp_peer *p = gsp_peer_find_(e, peer);

        if (p != NULL && (e->pass_fresh || e->pass_moved) && !gsp_vv_le_real_(pv, &e->pass_vv))
            p->more = 1;
        e->pass_fresh = e->pass_moved = 0;
    }
    if (act != ACT_NONE) {
        snapshot_locked(e, &s);
        e->pass_busy = 1;
    }
    label_locked(e, peer, label, sizeof(label));
    pthread_mutex_unlock(&e->mu);
    gsp_vv_free(&mine);
    if (act == ACT_NONE) {
        save_contact(e, 0);
        return;
    }
    rc = persist(e, &s, op, &n, &err);
    free(s.ref_vv);
    pthread_mutex_lock(&e->mu);
    e->pass_busy = 0;
    if (rc == 0) {
        e->lc_saved_ms = s.last_contact_ms;
        e->lc_saved_at_ms = now;
        if (act == ACT_COMPLETE) {
            e->resyncs++;
            e->resync_dropped += n;
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (rc < 0) {
        /* The marks and the state stay as they were on disk; memory moved
         * on (a restart resumes from the disk). */
        ut_log(UT_LOG_ERROR, e->log_module, "re-sync state change failed", UT_LF_S("peer", label),
               UT_LF_S("error", err.msg));
        return;
    }
    switch (act) {
    case ACT_SWITCH:
        ut_log(UT_LOG_INFO, e->log_module, "re-sync source", UT_LF_S("peer", label),
               UT_LF_S("switched", "yes"));
        gsp_wake_(e);
        break;
    case ACT_YIELD:
        ut_log(UT_LOG_INFO, e->log_module,
               "re-sync deferred: the source is re-syncing too; trying again after it",
               UT_LF_S("peer", label));
        break;
    case ACT_COMPLETE:
        ut_log(UT_LOG_INFO, e->log_module, "re-sync complete", UT_LF_S("peer", label),
               UT_LF_I("dropped", n));
        break;
    case ACT_DISARM:
        ut_log(UT_LOG_INFO, e->log_module,
               "contact restored; no peer purged anything this node missed: no re-sync",
               UT_LF_S("peer", label), UT_LF_I("last_contact_ms", armed_lc));
        break;
    case ACT_FIRST_DONE:
        ut_log(UT_LOG_DEBUG, e->log_module, "first sync of a new node complete",
               UT_LF_S("peer", label));
        break;
    default:
        break;
    }
}

/* ---- the driver's periodic work ---- */

uint64_t gsp_engine_maintain(struct gsp_engine *e)
{
    struct ut_err err = {{0}};
    uint64_t now = gsp_now_(e), purged = 0, next;
    int armed, gc;

    pthread_mutex_lock(&e->mu);
    armed = e->state_ready && arm_locked(e, now);
    gc = now >= e->gc_next_ms;
    if (gc)
        e->gc_next_ms = now + e->gc_every_ms;
    next = e->gc_next_ms;
    if (e->last_contact_ms != e->lc_saved_ms && e->lc_saved_at_ms + LC_SAVE_EVERY_MS < next)
        next = e->lc_saved_at_ms + LC_SAVE_EVERY_MS;
    pthread_mutex_unlock(&e->mu);
    if (armed)
        armed_now(e, 1);
    if (gc) {
        if (crdt_gc_run(e->replica, &purged, &err) < 0)
            ut_log(UT_LOG_ERROR, e->log_module, "gc failed", UT_LF_S("error", err.msg));
        else
            ut_log(purged > 0 ? UT_LOG_INFO : UT_LOG_DEBUG, e->log_module, "gc",
                   UT_LF_I("purged", purged));
    }
    save_contact(e, 0);
    return next > now ? next : now + 1000;
}
