/*
 * vv.c - the persisted version vector: origin -> highest seq received
 * complete. Our own origin's entry doubles as our write counter (merge.c).
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void crdt_vv_free(struct crdt_vv *vv)
{
    if (vv == NULL)
        return;
    for (size_t i = 0; i < vv->n; i++)
        free(vv->origin[i]);
    free(vv->origin);
    free(vv->seq);
    memset(vv, 0, sizeof(*vv));
}

uint64_t crdt_vv_get(const struct crdt_vv *vv, const char *origin)
{
    size_t lo = 0, hi;

    if (vv == NULL || origin == NULL)
        return 0;
    hi = vv->n;
    while (lo < hi) { /* strcmp on unsigned bytes = SQLite's BINARY order */
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(vv->origin[mid], origin);

        if (c == 0)
            return vv->seq[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

int crdt_vv_load(struct crdt_replica *r, sqlite3 *db, struct crdt_vv *out, struct ut_err *err)
{
    struct crdt_vv vv = {0};
    size_t cap = 0;
    sqlite3_stmt *st;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof(*out));
    if (r == NULL || db == NULL || out == NULL) {
        ut_err_set(err, "crdt_vv_load: %s is NULL", r == NULL ? "replica" : (db ? "out" : "db"));
        return -EINVAL;
    }
    st = crdt_stmt_(r, db, "SELECT origin, seq FROM crdt_vv ORDER BY origin", err);
    if (st == NULL)
        return -EIO;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *o = (const char *)sqlite3_column_text(st, 0);

        if (vv.n == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 8;
            char **no = realloc(vv.origin, ncap * sizeof(*no));
            uint64_t *ns;

            if (no != NULL)
                vv.origin = no;
            ns = no != NULL ? realloc(vv.seq, ncap * sizeof(*ns)) : NULL;
            if (ns == NULL)
                goto oom;
            vv.seq = ns;
            cap = ncap;
        }
        vv.origin[vv.n] = o != NULL ? strdup(o) : NULL;
        if (vv.origin[vv.n] == NULL)
            goto oom;
        vv.seq[vv.n++] = (uint64_t)sqlite3_column_int64(st, 1);
    }
    if (rc != SQLITE_DONE) {
        rc = crdt_db_err_(err, db, "crdt_vv_load", "reading crdt_vv");
        goto out;
    }
    *out = vv;
    memset(&vv, 0, sizeof(vv));
    rc = 0;
    goto out;
oom:
    ut_err_set(err, "crdt_vv_load: out of memory");
    rc = -ENOMEM;
out:
    sqlite3_reset(st);
    crdt_vv_free(&vv);
    return rc;
}

int crdt_vv_advance(struct crdt_replica *r, sqlite3 *db, const char *origin, uint64_t seq,
                    struct ut_err *err)
{
    char show[CRDT_SHOW_MAX];
    sqlite3_stmt *st;
    size_t olen;
    int rc;

    if (r == NULL || db == NULL) {
        ut_err_set(err, "crdt_vv_advance: %s is NULL", r == NULL ? "replica" : "db");
        return -EINVAL;
    }
    if (crdt_origin_ok_(origin, &olen) < 0) {
        ut_err_set(err, "crdt_vv_advance: bad origin \"%s\"",
                   crdt_show_(origin, show, sizeof(show)));
        return -EINVAL;
    }
    if (seq >= CRDT_SEQ_LIMIT) {
        ut_err_set(err, "crdt_vv_advance: seq %llu for \"%s\" is out of range",
                   (unsigned long long)seq, origin);
        return -EINVAL;
    }
    if (seq == 0)
        return 0;
    st = crdt_stmt_(r, db,
                    "INSERT INTO crdt_vv(origin, seq) VALUES(?1, ?2) ON CONFLICT(origin)"
                    " DO UPDATE SET seq = excluded.seq WHERE excluded.seq > crdt_vv.seq",
                    err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, origin, (int)olen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return crdt_db_err_(err, db, "crdt_vv_advance", "updating crdt_vv");
    if (sqlite3_changes(db) > 0)
        crdt_mark_dirty_(r);
    return 0;
}
