/*
 * replica.c - opening a replica: options, the schema (crdt_rows, crdt_vv,
 * one view per declared table), the post-commit hook that runs the change
 * callback, and the generation counter.
 */
#include "crdt/crdt_int.h"

#include "util/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* WITHOUT ROWID: the rows are clustered on (tbl, key), so a point upsert
 * touches that b-tree and the (origin, seq) index only; a rowid table adds
 * a third b-tree (the primary-key index). Measured with bench_crdt (200k
 * session-sized rows, one transaction, WAL file): both layouts within noise
 * of each other (apply 310-355k/s, put ~135k/s) and of the same size, so
 * the simpler access path wins. Large values (up to CRDT_VALUE_MAX) spill
 * to overflow pages either way. Build with -DCRDT_ROWID_TABLE to compare. */
static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS crdt_rows("
    " tbl TEXT NOT NULL,"
    " key TEXT NOT NULL,"
    " value BLOB,"
    " hlc INTEGER NOT NULL,"
    " origin TEXT NOT NULL,"
    " seq INTEGER NOT NULL,"
    " deleted INTEGER NOT NULL DEFAULT 0,"
    " expires INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (tbl, key)"
#ifndef CRDT_ROWID_TABLE
    ") WITHOUT ROWID;"
#else
    ");"
#endif
    "CREATE INDEX IF NOT EXISTS crdt_rows_origin_seq ON crdt_rows(origin, seq);"
    "CREATE TABLE IF NOT EXISTS crdt_vv("
    " origin TEXT PRIMARY KEY NOT NULL,"
    " seq INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    /* node-local: the GC mark and the re-sync state (gc.c, resync.c) */
    "CREATE TABLE IF NOT EXISTS crdt_meta("
    " name TEXT PRIMARY KEY NOT NULL,"
    " value INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS crdt_suspect("
    " tbl TEXT NOT NULL,"
    " key TEXT NOT NULL,"
    " PRIMARY KEY (tbl, key)"
    ") WITHOUT ROWID;";

struct open_ctx {
    struct crdt_replica *r;
    const struct crdt_opts *o;
    uint64_t vv_sum;
    uint64_t gc_mark, resync_from;
};

/* Creates (or re-creates, when its text changed) the view of table t. A
 * table or index of the same name belongs to someone else: -EEXIST. */
static int ensure_view(struct crdt_replica *r, sqlite3 *db, const struct crdt_tbl *t,
                       struct ut_err *err)
{
    char want[256], drop[96];
    sqlite3_stmt *st;
    int rc, have = 0, src;

    snprintf(want, sizeof(want),
             "CREATE VIEW \"%s\" AS SELECT key, value, hlc, origin FROM crdt_rows"
             " WHERE tbl = '%s' AND deleted = 0",
             t->name, t->name);
    st = crdt_stmt_(r, db, "SELECT type, sql FROM sqlite_schema WHERE name = ?1 COLLATE NOCASE",
                    err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
    src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 0);
        const char *sql = (const char *)sqlite3_column_text(st, 1);

        if (type == NULL || strcmp(type, "view") != 0) {
            ut_err_set(err,
                       "crdt_replica_open: replicated table \"%s\": the name is already used by "
                       "a %s in the database (the view cannot be created)",
                       t->name, type != NULL ? type : "schema object");
            sqlite3_reset(st);
            return -EEXIST;
        }
        have = sql != NULL && strcmp(sql, want) == 0 ? 1 : 2;
    } else if (src != SQLITE_DONE) {
        rc = crdt_db_err_(err, db, "crdt_replica_open", "reading sqlite_schema");
        sqlite3_reset(st);
        return rc;
    }
    sqlite3_reset(st);
    if (have == 1)
        return 0;
    if (have == 2) {
        snprintf(drop, sizeof(drop), "DROP VIEW \"%s\"", t->name);
        if (sqlite3_exec(db, drop, NULL, NULL, NULL) != SQLITE_OK)
            return crdt_db_err_(err, db, "crdt_replica_open", "dropping an old view");
    }
    if (sqlite3_exec(db, want, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(drop, sizeof(drop), "creating the view \"%s\"", t->name);
        return crdt_db_err_(err, db, "crdt_replica_open", drop);
    }
    return 0;
}

static int open_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct open_ctx *c = arg;
    struct crdt_replica *r = c->r;
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_exec(db, schema_sql, NULL, NULL, NULL) != SQLITE_OK)
        return crdt_db_err_(err, db, "crdt_replica_open", "creating crdt_rows/crdt_vv");
    for (size_t i = 0; i < r->n_tables; i++) {
        rc = ensure_view(r, db, &r->tables[i], err);
        if (rc < 0)
            return rc;
    }
    for (size_t i = 0; i < c->o->n_indexed_fields; i++) {
        const char *f = c->o->indexed_fields[i];
        char sql[320];

        /* Names were checked in crdt_replica_open: safe to splice. Partial:
         * only rows that have the member are indexed, so a write of a row
         * without it (most tables lack most members) touches no entry of
         * this index; "= ?" in a query implies IS NOT NULL, so SQLite
         * still uses it. Replaces the full index of earlier versions. */
        snprintf(sql, sizeof(sql),
                 "DROP INDEX IF EXISTS \"crdt_rows_by_%s\";"
                 "CREATE INDEX IF NOT EXISTS \"crdt_rows_has_%s\" ON crdt_rows(tbl, "
                 "json_extract(value, '$.%s'), key) WHERE json_extract(value, '$.%s') IS NOT NULL",
                 f, f, f, f);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
            return crdt_db_err_(err, db, "crdt_replica_open", "creating a field index");
    }
    st = crdt_stmt_(r, db, "SELECT seq FROM crdt_vv", err);
    if (st == NULL)
        return -EIO;
    c->vv_sum = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        c->vv_sum += (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return crdt_db_err_(err, db, "crdt_replica_open", "reading crdt_vv");
    if ((rc = crdt_meta_get_(r, db, CRDT_META_GC_MARK, &c->gc_mark, err)) < 0 ||
        (rc = crdt_meta_get_(r, db, CRDT_META_RESYNC_FROM, &c->resync_from, err)) < 0)
        return rc;
    return 0;
}

/* The store's post-commit hook (writer thread). A pending count left by a
 * job that was rolled back is harmless: it makes one spurious callback and
 * bumps the generation once more than needed. */
static void commit_hook(void *arg)
{
    struct crdt_replica *r = arg;
    uint64_t p = atomic_exchange_explicit(&r->pending, 0, memory_order_relaxed);

    if (p == 0)
        return;
    for (size_t i = 0; i < r->n_tables; i++) {
        uint64_t q = atomic_exchange_explicit(&r->tables[i].pending, 0, memory_order_relaxed);

        if (q)
            atomic_fetch_add_explicit(&r->tables[i].generation, q, memory_order_release);
    }
    atomic_fetch_add_explicit(&r->generation, p, memory_order_release);
    pthread_mutex_lock(&r->cb_mu);
    if (r->cb != NULL)
        r->cb(r->cb_arg);
    pthread_mutex_unlock(&r->cb_mu);
}

static int check_tables(const struct crdt_opts *o, struct ut_err *err)
{
    char show[CRDT_SHOW_MAX];

    if (o->n_tables > 0 && o->tables == NULL) {
        ut_err_set(err, "crdt_replica_open: n_tables is %zu but tables is NULL", o->n_tables);
        return -EINVAL;
    }
    if (o->n_tables > 1000) {
        ut_err_set(err, "crdt_replica_open: %zu tables declared (at most 1000)", o->n_tables);
        return -EINVAL;
    }
    for (size_t i = 0; i < o->n_tables; i++) {
        const struct crdt_table_def *d = &o->tables[i];

        if (crdt_tbl_name_ok_(d->name) < 0 || strncmp(d->name, "crdt_", 5) == 0) {
            ut_err_set(err,
                       "crdt_replica_open: table #%zu: bad name \"%s\" (want [a-z_][a-z0-9_]*, "
                       "at most %d characters, not starting with \"crdt_\")",
                       i, crdt_show_(d->name, show, sizeof(show)), CRDT_TABLE_NAME_MAX);
            return -EINVAL;
        }
        if (d->kind != CRDT_LWW && d->kind != CRDT_GROW_ONLY) {
            ut_err_set(err, "crdt_replica_open: table \"%s\": unknown kind %d", d->name,
                       (int)d->kind);
            return -EINVAL;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(o->tables[k].name, d->name) == 0) {
                ut_err_set(err, "crdt_replica_open: table \"%s\" declared twice", d->name);
                return -EINVAL;
            }
        }
    }
    return 0;
}

static int add_table(struct crdt_replica *r, const char *name, enum crdt_kind kind)
{
    struct crdt_tbl *t = &r->tables[r->n_tables];

    t->name = strdup(name);
    if (t->name == NULL)
        return -ENOMEM;
    t->len = strlen(name);
    t->kind = kind;
    r->n_tables++;
    return 0;
}

int crdt_replica_open(struct crdt_replica **out, struct store *s, const struct crdt_opts *o,
                      struct ut_err *err)
{
    struct crdt_replica *r = NULL;
    struct open_ctx ctx = {0};
    char show[CRDT_SHOW_MAX];
    int rc;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || s == NULL || o == NULL) {
        ut_err_set(err, "crdt_replica_open: %s is NULL",
                   out == NULL ? "out" : (s == NULL ? "store" : "opts"));
        return -EINVAL;
    }
    if (crdt_origin_ok_(o->origin, NULL) < 0 || o->origin[0] == '~') {
        ut_err_set(err,
                   "crdt_replica_open: bad origin \"%s\" (want 1..%d printable ASCII bytes, no "
                   "spaces, not starting with '~')",
                   crdt_show_(o->origin, show, sizeof(show)), CRDT_ORIGIN_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < o->n_indexed_fields; i++) {
        const char *f = o->indexed_fields[i];
        size_t n = f ? strlen(f) : 0;

        if (n == 0 || n > CRDT_FIELD_MAX || strspn(f, "abcdefghijklmnopqrstuvwxyz_") != n) {
            ut_err_set(err, "crdt_replica_open: indexed field \"%s\" (want [a-z_]{1,%d})",
                       f ? crdt_show_(f, show, sizeof(show)) : "(null)", CRDT_FIELD_MAX);
            return -EINVAL;
        }
    }
    rc = check_tables(o, err);
    if (rc < 0)
        return rc;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        rc = -ENOMEM;
        goto oom;
    }
    if (pthread_mutex_init(&r->cb_mu, NULL) != 0) {
        free(r);
        r = NULL;
        rc = -ENOMEM;
        goto oom;
    }
    r->s = s;
    r->tombstone_ttl_ms =
        o->tombstone_ttl_ms != 0 ? o->tombstone_ttl_ms : CRDT_DEF_TOMBSTONE_TTL_MS;
    atomic_init(&r->pending, 0);
    atomic_init(&r->generation, 0);
    atomic_init(&r->last_skew_log_ms, 0);
    atomic_init(&r->gc_runs, 0);
    atomic_init(&r->gc_purged, 0);
    atomic_init(&r->gc_mark_ms, 0);
    atomic_init(&r->resync_from, 0);
    r->origin = strdup(o->origin);
    r->tables = calloc(o->n_tables + 1, sizeof(*r->tables));
    if (r->origin == NULL || r->tables == NULL) {
        rc = -ENOMEM;
        goto oom;
    }
    r->origin_len = strlen(r->origin);
    for (size_t i = 0; i < o->n_tables; i++) {
        rc = add_table(r, o->tables[i].name, o->tables[i].kind);
        if (rc < 0)
            goto oom;
    }
    rc = add_table(r, CRDT_LEASE_TABLE, CRDT_LWW);
    if (rc < 0)
        goto oom;
    rc = crdt_hlc_new(&r->hlc, o->clock, o->clock_arg, o->max_skew_ms);
    if (rc < 0) {
        ut_err_set(err, "crdt_replica_open: max_skew_ms %llu is out of range",
                   (unsigned long long)o->max_skew_ms);
        goto out;
    }
    ctx.r = r;
    ctx.o = o;
    rc = store_write(s, open_job, &ctx, err);
    if (rc < 0)
        goto out;
    atomic_store(&r->generation, ctx.vv_sum);
    atomic_store(&r->gc_mark_ms, ctx.gc_mark);
    atomic_store(&r->resync_from, ctx.resync_from);
    store_on_commit(s, commit_hook, r);
    ut_log(UT_LOG_DEBUG, "crdt", "replica open", UT_LF_S("origin", r->origin),
           UT_LF_I("tables", r->n_tables - 1));
    *out = r;
    r = NULL;
    goto out;
oom:
    ut_err_set(err, "crdt_replica_open: out of memory");
out:
    if (r != NULL) {
        r->s = NULL; /* the hook was not registered */
        crdt_replica_free(r);
    }
    return rc;
}

void crdt_replica_free(struct crdt_replica *r)
{
    if (r == NULL)
        return;
    crdt_gc_thread_stop_(r);
    if (r->s != NULL)
        store_on_commit(r->s, NULL, NULL);
    for (size_t i = 0; i < r->n_tables; i++)
        free(r->tables[i].name);
    free(r->tables);
    free(r->origin);
    crdt_hlc_free(r->hlc);
    pthread_mutex_destroy(&r->cb_mu);
    free(r);
}

const char *crdt_replica_origin(const struct crdt_replica *r)
{
    return r->origin;
}

struct crdt_hlc *crdt_replica_hlc(struct crdt_replica *r)
{
    return r->hlc;
}

int crdt_table_kind(const struct crdt_replica *r, const char *name)
{
    const struct crdt_tbl *t = name != NULL ? crdt_tbl_find_(r, name) : NULL;

    return t != NULL ? (int)t->kind : -1;
}

void crdt_set_change_cb(struct crdt_replica *r, crdt_change_fn fn, void *arg)
{
    pthread_mutex_lock(&r->cb_mu);
    r->cb = fn;
    r->cb_arg = arg;
    pthread_mutex_unlock(&r->cb_mu);
}

uint64_t crdt_generation(struct crdt_replica *r)
{
    return atomic_load_explicit(&r->generation, memory_order_acquire);
}

int crdt_table_handle(struct crdt_replica *r, const char *tbl)
{
    const struct crdt_tbl *t = r && tbl ? crdt_tbl_find_(r, tbl) : NULL;

    return t ? (int)(t - r->tables) : -ENOENT;
}

uint64_t crdt_table_generation(struct crdt_replica *r, int handle)
{
    if (r == NULL || handle < 0 || (size_t)handle >= r->n_tables)
        return 0;
    return atomic_load_explicit(&r->tables[handle].generation, memory_order_acquire);
}
