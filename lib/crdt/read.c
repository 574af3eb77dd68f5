/*
 * read.c - reads of replicated rows: one value, the per-origin log scan that
 * feeds anti-entropy, and live-row counts.
 */
#include "crdt/crdt_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int crdt_get(struct crdt_replica *r, sqlite3 *db, const char *tbl, const char *key, uint8_t **value,
             size_t *value_len, struct ut_err *err)
{
    const struct crdt_tbl *t;
    char show[CRDT_SHOW_MAX];
    sqlite3_stmt *st;
    const void *p;
    size_t klen = 0, n;
    uint8_t *copy;
    int rc;

    if (value != NULL)
        *value = NULL;
    if (value_len != NULL)
        *value_len = 0;
    if (r == NULL || db == NULL || value == NULL) {
        ut_err_set(err, "crdt_get: %s is NULL", r == NULL ? "replica" : (db ? "value" : "db"));
        return -EINVAL;
    }
    rc = crdt_tbl_get_(r, "crdt_get", tbl, &t, err);
    if (rc < 0)
        return rc;
    rc = crdt_key_check_(key, &klen);
    if (rc < 0) {
        ut_err_set(err, "crdt_get: %s key in table \"%s\"",
                   rc == -E2BIG ? "too long a" : (key == NULL ? "NULL" : "empty"), tbl);
        return rc;
    }
    st = crdt_stmt_(r, db,
                    "SELECT value FROM crdt_rows WHERE tbl = ?1 AND key = ?2 AND deleted = 0", err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, t->name, (int)t->len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, (int)klen, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        ut_err_set(err, "crdt_get: %s/\"%s\": no such live row", tbl,
                   crdt_show_(key, show, sizeof(show)));
        rc = -ENOENT;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        rc = crdt_db_err_(err, db, "crdt_get", "reading the row");
        goto out;
    }
    p = sqlite3_column_blob(st, 0);
    n = (size_t)sqlite3_column_bytes(st, 0);
    copy = malloc(n + 1);
    if (copy == NULL) {
        ut_err_set(err, "crdt_get: out of memory for a value of %zu bytes", n);
        rc = -ENOMEM;
        goto out;
    }
    if (n > 0)
        memcpy(copy, p, n);
    copy[n] = '\0';
    *value = copy;
    if (value_len != NULL)
        *value_len = n;
    rc = 0;
out:
    sqlite3_reset(st);
    return rc;
}

int crdt_scan(struct crdt_replica *r, sqlite3 *db, const char *origin, uint64_t after,
              crdt_scan_fn fn, void *arg, struct ut_err *err)
{
    char show[CRDT_SHOW_MAX];
    struct crdt_entry e;
    sqlite3_stmt *st;
    size_t olen;
    int rc, frc = 0;

    if (r == NULL || db == NULL || fn == NULL) {
        ut_err_set(err, "crdt_scan: %s is NULL", r == NULL ? "replica" : (db ? "fn" : "db"));
        return -EINVAL;
    }
    if (crdt_origin_ok_(origin, &olen) < 0) {
        ut_err_set(err, "crdt_scan: bad origin \"%s\"", crdt_show_(origin, show, sizeof(show)));
        return -EINVAL;
    }
    if (after >= CRDT_SEQ_LIMIT)
        return 0; /* no seq is that high */
    st = crdt_stmt_(r, db,
                    "SELECT tbl, key, value, hlc, seq, deleted, expires FROM crdt_rows"
                    " WHERE origin = ?1 AND seq > ?2 ORDER BY seq",
                    err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, origin, (int)olen, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)after);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        e.tbl = (const char *)sqlite3_column_text(st, 0);
        e.key = (const char *)sqlite3_column_text(st, 1);
        e.deleted = sqlite3_column_int(st, 5) != 0;
        e.value = e.deleted ? NULL : sqlite3_column_blob(st, 2);
        e.value_len = e.deleted ? 0 : (size_t)sqlite3_column_bytes(st, 2);
        if (!e.deleted && e.value == NULL)
            e.value = (const uint8_t *)"";
        e.hlc = (uint64_t)sqlite3_column_int64(st, 3);
        e.origin = origin;
        e.seq = (uint64_t)sqlite3_column_int64(st, 4);
        e.expires = sqlite3_column_int64(st, 6);
        if (e.tbl == NULL || e.key == NULL) {
            ut_err_set(err, "crdt_scan: out of memory reading a row of \"%s\"", origin);
            sqlite3_reset(st);
            return -ENOMEM;
        }
        frc = fn(&e, arg);
        if (frc != 0)
            break;
    }
    if (frc == 0 && rc != SQLITE_DONE)
        frc = crdt_db_err_(err, db, "crdt_scan", "reading rows");
    sqlite3_reset(st);
    return frc;
}

int crdt_count(struct crdt_replica *r, sqlite3 *db, const char *tbl, uint64_t *count,
               struct ut_err *err)
{
    const struct crdt_tbl *t;
    sqlite3_stmt *st;
    int rc;

    if (r == NULL || db == NULL || count == NULL) {
        ut_err_set(err, "crdt_count: %s is NULL", r == NULL ? "replica" : (db ? "count" : "db"));
        return -EINVAL;
    }
    *count = 0;
    rc = crdt_tbl_get_(r, "crdt_count", tbl, &t, err);
    if (rc < 0)
        return rc;
    st = crdt_stmt_(r, db, "SELECT count(*) FROM crdt_rows WHERE tbl = ?1 AND deleted = 0", err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, t->name, (int)t->len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *count = (uint64_t)sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = crdt_db_err_(err, db, "crdt_count", "counting rows");
    }
    sqlite3_reset(st);
    return rc;
}
