/*
 * resync.c - re-syncing a replica that may hold rows deleted elsewhere
 * (docs/replication.md section 8).
 *
 * After a long absence a replica may hold live rows whose tombstones the
 * others already purged: nothing it can receive will ever delete them. It
 * marks its old live rows ("suspects", node-local table crdt_suspect), has
 * one peer (the source) send everything it holds, which unmarks each key
 * the source holds (crdt_apply_ex with CRDT_APPLY_SOURCE), and at the end
 * deletes what is still marked. Until then nothing is deleted, so a
 * re-sync that cannot complete (no source reachable) loses nothing, and
 * the rows stay readable meanwhile.
 *
 * Which rows: live rows of the LWW tables older than the horizon at begin
 * (a row deleted by a purged tombstone is older than that tombstone, which
 * is older than the horizon). Grow-only facts are never deleted, only
 * expire (and CRDT_EXPIRED refuses late copies); crdt_leases rows are
 * never deleted either; the caller names the tables it must keep (the
 * gossip engine keeps cluster_nodes: membership entries cannot be deleted
 * and the node needs them to reach the source).
 *
 * At the end a marked row is deleted only while its stamp is still below
 * the horizon recorded at begin: a later write of the key (local, or from
 * any peer) is newer than any tombstone purged before the begin, so it
 * stays.
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int kept(const char *name, const char *const *keep, size_t n_keep)
{
    if (strcmp(name, CRDT_LEASE_TABLE) == 0)
        return 1;
    for (size_t i = 0; i < n_keep; i++)
        if (keep[i] != NULL && strcmp(keep[i], name) == 0)
            return 1;
    return 0;
}

int crdt_resync_begin(struct crdt_replica *r, sqlite3 *db, const char *const *keep, size_t n_keep,
                      uint64_t *marked, struct ut_err *err)
{
    uint64_t horizon, total = 0;
    sqlite3_stmt *st;
    char what[96];
    int rc;

    if (marked != NULL)
        *marked = 0;
    if (r == NULL || db == NULL || (n_keep > 0 && keep == NULL)) {
        ut_err_set(err, "crdt_resync_begin: %s is NULL",
                   r == NULL ? "replica" : (db == NULL ? "db" : "keep"));
        return -EINVAL;
    }
    horizon = crdt_horizon_hlc_(r, crdt_hlc_wall_ms(r->hlc));
    if (horizon == 0)
        horizon = 1; /* 0 means "no re-sync" in crdt_meta */
    for (size_t i = 0; i < r->n_tables; i++) {
        const struct crdt_tbl *t = &r->tables[i];

        if (t->kind != CRDT_LWW || kept(t->name, keep, n_keep))
            continue;
        st = crdt_stmt_(r, db,
                        "INSERT OR IGNORE INTO crdt_suspect(tbl, key) SELECT tbl, key"
                        " FROM crdt_rows WHERE tbl = ?1 AND hlc < ?2 AND deleted = 0",
                        err);
        if (st == NULL)
            return -EIO;
        sqlite3_bind_text(st, 1, t->name, (int)t->len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)horizon);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            snprintf(what, sizeof(what), "marking the old rows of \"%s\"", t->name);
            return crdt_db_err_(err, db, "crdt_resync_begin", what);
        }
        total += (uint64_t)sqlite3_changes(db);
    }
    /* A re-sync begun again keeps the earliest horizon: rows marked then
     * are still below it. */
    if (atomic_load(&r->resync_from) != 0 && atomic_load(&r->resync_from) < horizon)
        horizon = atomic_load(&r->resync_from);
    rc = crdt_meta_set_(r, db, CRDT_META_RESYNC_FROM, horizon, err);
    if (rc < 0)
        return rc;
    atomic_store(&r->resync_from, horizon);
    if (marked != NULL)
        *marked = total;
    return 0;
}

int crdt_resync_end(struct crdt_replica *r, sqlite3 *db, int drop, uint64_t *dropped,
                    struct ut_err *err)
{
    uint64_t from = 0, n = 0;
    sqlite3_stmt *st;
    int rc;

    if (dropped != NULL)
        *dropped = 0;
    if (r == NULL || db == NULL) {
        ut_err_set(err, "crdt_resync_end: %s is NULL", r == NULL ? "replica" : "db");
        return -EINVAL;
    }
    rc = crdt_meta_get_(r, db, CRDT_META_RESYNC_FROM, &from, err);
    if (rc < 0)
        return rc;
    if (drop && from != 0) {
        st = crdt_stmt_(r, db,
                        "DELETE FROM crdt_rows WHERE hlc < ?1 AND (tbl, key) IN"
                        " (SELECT tbl, key FROM crdt_suspect)",
                        err);
        if (st == NULL)
            return -EIO;
        sqlite3_bind_int64(st, 1, (sqlite3_int64)from);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE)
            return crdt_db_err_(err, db, "crdt_resync_end", "deleting the unconfirmed rows");
        n = (uint64_t)sqlite3_changes(db);
        if (n > 0)
            crdt_mark_all_dirty_(r);
    }
    if (sqlite3_exec(
            db,
            "DELETE FROM crdt_suspect; DELETE FROM crdt_meta WHERE name = '" CRDT_META_RESYNC_FROM
            "'",
            NULL, NULL, NULL) != SQLITE_OK)
        return crdt_db_err_(err, db, "crdt_resync_end", "clearing the re-sync state");
    atomic_store(&r->resync_from, 0);
    if (dropped != NULL)
        *dropped = n;
    return 0;
}

int crdt_resync_active(struct crdt_replica *r)
{
    return r != NULL && atomic_load(&r->resync_from) != 0;
}

int crdt_resync_count(struct crdt_replica *r, sqlite3 *db, uint64_t *suspects, struct ut_err *err)
{
    sqlite3_stmt *st;
    int rc;

    *suspects = 0;
    if (r == NULL || db == NULL) {
        ut_err_set(err, "crdt_resync_count: %s is NULL", r == NULL ? "replica" : "db");
        return -EINVAL;
    }
    st = crdt_stmt_(r, db, "SELECT COUNT(*) FROM crdt_suspect", err);
    if (st == NULL)
        return -EIO;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *suspects = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW)
        return crdt_db_err_(err, db, "crdt_resync_count", "counting crdt_suspect");
    return 0;
}

int crdt_resync_confirm_(struct crdt_replica *r, sqlite3 *db, const struct crdt_tbl *t,
                         const char *key, size_t key_len, struct ut_err *err)
{
    sqlite3_stmt *st;
    int rc;

    if (atomic_load(&r->resync_from) == 0)
        return 0;
    st = crdt_stmt_(r, db, "DELETE FROM crdt_suspect WHERE tbl = ?1 AND key = ?2", err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, t->name, (int)t->len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, (int)key_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return crdt_db_err_(err, db, "crdt_apply", "confirming a re-sync mark");
    return 0;
}
