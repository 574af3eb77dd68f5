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
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <stdio.h>

int crdt_gc(struct crdt_replica *r, sqlite3 *db, uint64_t *purged, struct ut_err *err)
{
    uint64_t wall, horizon, total = 0;
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

        if (t->kind == CRDT_GROW_ONLY)
            st = crdt_stmt_(r, db,
                            "DELETE FROM crdt_rows WHERE tbl = ?1 AND expires > 0"
                            " AND expires <= ?3",
                            err);
        else
            st = crdt_stmt_(r, db,
                            "DELETE FROM crdt_rows WHERE tbl = ?1 AND hlc < ?2"
                            " AND (deleted = 1 OR (expires > 0 AND expires <= ?3))",
                            err);
        if (st == NULL)
            return -EIO;
        sqlite3_bind_text(st, 1, t->name, (int)t->len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)horizon);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)wall);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            snprintf(what, sizeof(what), "purging rows of table \"%s\"", t->name);
            return crdt_db_err_(err, db, "crdt_gc", what);
        }
        total += (uint64_t)sqlite3_changes(db);
    }
    if (purged != NULL)
        *purged = total;
    return 0;
}
