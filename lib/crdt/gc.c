/*
 * gc.c - purging what no replica needs any more.
 *
 * LWW tables: a tombstone, or a row whose own expiry has passed, is purged
 * once its stamp is older than the horizon (now - tombstone_ttl). A purged
 * key may still be held by a replica that has not seen the newest write;
 * the horizon rule in crdt_apply refuses such old entries for keys we lack,
 * so nothing is resurrected. Live rows without expiry are never purged.
 * Grow-only tables: a fact is purged once its own expiry has passed; an old
 * copy arriving later is refused as CRDT_EXPIRED, so GC cannot undo a
 * revocation while it matters.
 *
 * The GC mark: the unix ms of the newest tombstone ever purged here,
 * persisted in crdt_meta in the same transaction. A replica that lost
 * contact before that time may still hold a row that tombstone deleted and
 * cannot learn it from us any more; the gossip engine states the mark to
 * its peers so such a replica knows it must re-sync (resync.c). Expired
 * live rows do not move the mark: every replica holding one purges it on
 * its own.
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <stdio.h>

int crdt_gc(struct crdt_replica *r, sqlite3 *db, uint64_t *purged, struct ut_err *err)
{
    uint64_t wall, horizon, total = 0, newest = 0, mark;
    char what[96];
    sqlite3_stmt *st;
    int rc;

    if (purged != NULL)
        *purged = 0;
    if (r == NULL || db == NULL) {
        ut_err_set(err, "crdt_gc: %s is NULL", r == NULL ? "replica" : "db");
        return -EINVAL;
    }
    wall = crdt_hlc_wall_ms(r->hlc);
    horizon = crdt_horizon_hlc_(r, wall);
    for (size_t i = 0; i < r->n_tables; i++) {
        const struct crdt_tbl *t = &r->tables[i];

        /* One pass: the purged rows come back (RETURNING) to find the
         * newest tombstone among them. */
        if (t->kind == CRDT_GROW_ONLY)
            st = crdt_stmt_(r, db,
                            "DELETE FROM crdt_rows WHERE tbl = ?1 AND expires > 0"
                            " AND expires <= ?3 RETURNING 0, 0",
                            err);
        else
            st = crdt_stmt_(r, db,
                            "DELETE FROM crdt_rows WHERE tbl = ?1 AND hlc < ?2"
                            " AND (deleted = 1 OR (expires > 0 AND expires <= ?3))"
                            " RETURNING deleted, hlc",
                            err);
        if (st == NULL)
            return -EIO;
        sqlite3_bind_text(st, 1, t->name, (int)t->len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)horizon);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)wall);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            uint64_t h = (uint64_t)sqlite3_column_int64(st, 1);

            total++;
            if (sqlite3_column_int(st, 0) != 0 && h > newest)
                newest = h;
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            snprintf(what, sizeof(what), "purging rows of table \"%s\"", t->name);
            return crdt_db_err_(err, db, "crdt_gc", what);
        }
    }
    mark = CRDT_HLC_MS(newest);
    if (mark > atomic_load(&r->gc_mark_ms)) {
        /* Set before the commit: if the batch rolls back the mark is too
         * high until the next open, which only makes peers re-sync from us
         * more readily (the safe direction). */
        rc = crdt_meta_set_(r, db, CRDT_META_GC_MARK, mark, err);
        if (rc < 0)
            return rc;
        atomic_store(&r->gc_mark_ms, mark);
    }
    if (total > 0)
        crdt_mark_all_dirty_(r); /* an expired row read as live is gone */
    if (purged != NULL)
        *purged = total;
    return 0;
}

struct gc_job {
    struct crdt_replica *r;
    uint64_t purged;
};

static int gc_job_fn(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct gc_job *j = arg;

    return crdt_gc(j->r, db, &j->purged, err);
}

int crdt_gc_run(struct crdt_replica *r, uint64_t *purged, struct ut_err *err)
{
    struct gc_job j = {.r = r};
    int rc;

    if (purged != NULL)
        *purged = 0;
    if (r == NULL) {
        ut_err_set(err, "crdt_gc_run: replica is NULL");
        return -EINVAL;
    }
    rc = store_write(r->s, gc_job_fn, &j, err);
    if (rc < 0)
        return rc;
    atomic_fetch_add(&r->gc_runs, 1);
    atomic_fetch_add(&r->gc_purged, j.purged);
    if (purged != NULL)
        *purged = j.purged;
    return 0;
}

void crdt_gc_stats(struct crdt_replica *r, uint64_t *runs, uint64_t *purged)
{
    if (runs != NULL)
        *runs = atomic_load(&r->gc_runs);
    if (purged != NULL)
        *purged = atomic_load(&r->gc_purged);
}

uint64_t crdt_gc_mark(struct crdt_replica *r)
{
    return atomic_load(&r->gc_mark_ms);
}

uint64_t crdt_tombstone_ttl_ms(const struct crdt_replica *r)
{
    return r->tombstone_ttl_ms;
}

uint64_t crdt_gc_interval_ms(const struct crdt_replica *r)
{
    uint64_t i = r->tombstone_ttl_ms / 8;

    if (i > CRDT_GC_INTERVAL_MAX_MS)
        i = CRDT_GC_INTERVAL_MAX_MS;
    if (i < CRDT_GC_INTERVAL_MIN_MS)
        i = CRDT_GC_INTERVAL_MIN_MS;
    return i;
}

int crdt_meta_get_(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t *value,
                   struct ut_err *err)
{
    sqlite3_stmt *st = crdt_stmt_(r, db, "SELECT value FROM crdt_meta WHERE name = ?1", err);
    int rc;

    *value = 0;
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *value = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return crdt_db_err_(err, db, "crdt_meta", "reading crdt_meta");
    return 0;
}

int crdt_meta_set_(struct crdt_replica *r, sqlite3 *db, const char *name, uint64_t value,
                   struct ut_err *err)
{
    sqlite3_stmt *st = crdt_stmt_(r, db,
                                  "INSERT INTO crdt_meta(name, value) VALUES(?1, ?2)"
                                  " ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                                  err);
    int rc;

    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)value);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return crdt_db_err_(err, db, "crdt_meta", "writing crdt_meta");
    return 0;
}
