/*
 * merge.c - the write path: local puts and deletes, and the merge of remote
 * entries. Both end in one conditional upsert whose WHERE clause is the
 * merge rule, so the winner is decided by SQLite inside the transaction,
 * against the row as it is at that moment (no read-then-write race).
 */
#include "crdt/crdt_int.h"

#include "util/log.h"

#include <errno.h>
#include <string.h>

/* The merge rule: the incoming row replaces the stored one only when its
 * (hlc, origin) is greater (origin compared with BINARY collation: memcmp,
 * shorter first). Equal (hlc, origin) is the same write: no change. */
static const char upsert_sql[] =
    "INSERT INTO crdt_rows(tbl, key, value, hlc, origin, seq, deleted, expires)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    " ON CONFLICT(tbl, key) DO UPDATE SET value = excluded.value, hlc = excluded.hlc,"
    " origin = excluded.origin, seq = excluded.seq, deleted = excluded.deleted,"
    " expires = excluded.expires"
    " WHERE excluded.hlc > crdt_rows.hlc"
    " OR (excluded.hlc = crdt_rows.hlc AND excluded.origin > crdt_rows.origin)";

/* The next own seq, from crdt_vv in the job's transaction: a job that
 * rolls back takes its increment with it. */
static const char next_seq_sql[] =
    "INSERT INTO crdt_vv(origin, seq) VALUES(?1, 1)"
    " ON CONFLICT(origin) DO UPDATE SET seq = crdt_vv.seq + 1 RETURNING seq";

static const char row_hlc_sql[] = "SELECT hlc FROM crdt_rows WHERE tbl = ?1 AND key = ?2";

/* 1 when p[0..n) is well-formed UTF-8 without NUL bytes (RFC 3629: no
 * overlongs, no surrogates, nothing above U+10FFFF). */
static int utf8_text(const uint8_t *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        uint8_t c = p[i];

        if (c >= 0x01 && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            if (i + 1 >= n || (p[i + 1] & 0xc0) != 0x80)
                return 0;
            i += 2;
        } else if (c >= 0xe0 && c <= 0xef) {
            if (i + 2 >= n || (p[i + 1] & 0xc0) != 0x80 || (p[i + 2] & 0xc0) != 0x80)
                return 0;
            if ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] > 0x9f))
                return 0;
            i += 3;
        } else if (c >= 0xf0 && c <= 0xf4) {
            if (i + 3 >= n || (p[i + 1] & 0xc0) != 0x80 || (p[i + 2] & 0xc0) != 0x80 ||
                (p[i + 3] & 0xc0) != 0x80)
                return 0;
            if ((c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] > 0x8f))
                return 0;
            i += 4;
        } else {
            return 0; /* NUL, continuation byte, 0xc0/0xc1, 0xf5.. */
        }
    }
    return 1;
}

struct row {
    const struct crdt_tbl *t;
    const char *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    uint64_t hlc;
    const char *origin;
    size_t origin_len;
    uint64_t seq;
    int deleted;
    int64_t expires;
};

/* Runs the conditional upsert; *won = 1 when the row was inserted or
 * replaced, 0 when the stored row was greater or equal. */
static int upsert(struct crdt_replica *r, sqlite3 *db, const char *fn, const struct row *w,
                  int *won, struct ut_err *err)
{
    sqlite3_stmt *st = crdt_stmt_(r, db, upsert_sql, err);
    int rc;

    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, w->t->name, (int)w->t->len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->key, (int)w->key_len, SQLITE_STATIC);
    if (w->deleted)
        sqlite3_bind_null(st, 3);
    else if (utf8_text(w->value, w->value_len)) /* TEXT: json_extract() works on it */
        sqlite3_bind_text(st, 3, w->value_len > 0 ? (const char *)w->value : "", (int)w->value_len,
                          SQLITE_STATIC);
    else
        sqlite3_bind_blob(st, 3, w->value, (int)w->value_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)w->hlc);
    sqlite3_bind_text(st, 5, w->origin, (int)w->origin_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)w->seq);
    sqlite3_bind_int(st, 7, w->deleted ? 1 : 0);
    sqlite3_bind_int64(st, 8, w->expires);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return crdt_db_err_(err, db, fn, "upserting the row");
    *won = sqlite3_changes(db) > 0;
    return 0;
}

static int next_seq(struct crdt_replica *r, sqlite3 *db, const char *fn, uint64_t *seq,
                    struct ut_err *err)
{
    sqlite3_stmt *st = crdt_stmt_(r, db, next_seq_sql, err);
    int rc;

    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, r->origin, (int)r->origin_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return crdt_db_err_(err, db, fn, "taking the next seq");
    return 0;
}

/* The stamp of the stored row of w's key (0 when none). */
static int stored_hlc(struct crdt_replica *r, sqlite3 *db, const char *fn, const struct row *w,
                      int *exists, uint64_t *hlc, struct ut_err *err)
{
    sqlite3_stmt *st = crdt_stmt_(r, db, row_hlc_sql, err);
    int rc;

    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, w->t->name, (int)w->t->len, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, w->key, (int)w->key_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    *exists = rc == SQLITE_ROW;
    *hlc = *exists ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return crdt_db_err_(err, db, fn, "reading the stored row");
    return 0;
}

/* *was_seen = 1 when our vv for w's origin covers w's seq: we held that
 * write, or one that superseded it. */
static int seen(struct crdt_replica *r, sqlite3 *db, const struct row *w, int *was_seen,
                struct ut_err *err)
{
    sqlite3_stmt *st = crdt_stmt_(r, db, "SELECT seq FROM crdt_vv WHERE origin = ?1", err);
    int rc;

    *was_seen = 0;
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, w->origin, (int)w->origin_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *was_seen = (uint64_t)sqlite3_column_int64(st, 0) >= w->seq;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return crdt_db_err_(err, db, "crdt_apply", "reading crdt_vv");
    return 0;
}

static int check_key(const char *fn, const char *tbl, const char *key, size_t *len,
                     struct ut_err *err)
{
    int rc = crdt_key_check_(key, len);

    if (rc == -E2BIG)
        ut_err_set(err, "%s: key in table \"%s\" is longer than %d bytes", fn, tbl, CRDT_KEY_MAX);
    else if (rc < 0)
        ut_err_set(err, "%s: %s key in table \"%s\"", fn, key == NULL ? "NULL" : "empty", tbl);
    return rc;
}

static int check_value(const char *fn, const char *tbl, const char *key, const void *value,
                       size_t len, struct ut_err *err)
{
    char show[CRDT_SHOW_MAX];

    if (len > CRDT_VALUE_MAX) {
        ut_err_set(err, "%s: %s/\"%s\": value of %zu bytes is larger than %d", fn, tbl,
                   crdt_show_(key, show, sizeof(show)), len, CRDT_VALUE_MAX);
        return -E2BIG;
    }
    if (value == NULL && len > 0) {
        ut_err_set(err, "%s: %s/\"%s\": value is NULL with length %zu", fn, tbl,
                   crdt_show_(key, show, sizeof(show)), len);
        return -EINVAL;
    }
    return 0;
}

/* A local write of (tbl, key): next own seq, a fresh stamp, the upsert. The
 * stamp must beat the stored row; it always does unless that row came from
 * a clock that was ahead of ours (e.g. before a restart with the wall clock
 * stepped back): then the clock adopts the stored stamp and stamps again. */
static int local_write(struct crdt_replica *r, sqlite3 *db, const char *fn, struct row *w,
                       struct ut_err *err)
{
    char show[CRDT_SHOW_MAX];
    uint64_t have;
    int rc, won = 0, exists;

    rc = next_seq(r, db, fn, &w->seq, err);
    if (rc < 0)
        return rc;
    w->origin = r->origin;
    w->origin_len = r->origin_len;
    for (int attempt = 0; attempt < 2; attempt++) {
        w->hlc = crdt_hlc_now(r->hlc);
        rc = upsert(r, db, fn, w, &won, err);
        if (rc < 0 || won)
            break;
        rc = stored_hlc(r, db, fn, w, &exists, &have, err);
        if (rc < 0)
            break;
        crdt_hlc_adopt_(r->hlc, have);
    }
    if (rc == 0 && !won) {
        ut_err_set(err, "%s: %s/\"%s\": the stored row keeps winning over a fresh stamp", fn,
                   w->t->name, crdt_show_(w->key, show, sizeof(show)));
        rc = -EIO;
    }
    if (rc == 0)
        crdt_mark_table_dirty_(r, w->t);
    return rc;
}

/* Common checks of crdt_put/crdt_delete; built-in tables are written only
 * through their own API (leases). */
static int local_check(struct crdt_replica *r, sqlite3 *db, const char *fn, const char *tbl,
                       const char *key, struct row *w, struct ut_err *err, int internal)
{
    int rc;

    if (r == NULL || db == NULL) {
        ut_err_set(err, "%s: %s is NULL", fn, r == NULL ? "replica" : "db");
        return -EINVAL;
    }
    rc = crdt_tbl_get_(r, fn, tbl, &w->t, err);
    if (rc < 0)
        return rc;
    if (!internal && strncmp(tbl, "crdt_", 5) == 0) {
        ut_err_set(err, "%s: table \"%s\" is built in; use its own functions", fn, tbl);
        return -EPERM;
    }
    w->key = key;
    return check_key(fn, tbl, key, &w->key_len, err);
}

int crdt_put_internal_(struct crdt_replica *r, sqlite3 *db, const char *tbl, const char *key,
                       const void *value, size_t value_len, int64_t expires, int internal,
                       struct ut_err *err)
{
    struct row w = {0};
    char show[CRDT_SHOW_MAX];
    int rc;

    rc = local_check(r, db, "crdt_put", tbl, key, &w, err, internal);
    if (rc < 0)
        return rc;
    rc = check_value("crdt_put", tbl, key, value, value_len, err);
    if (rc < 0)
        return rc;
    if (expires < 0 || (w.t->kind == CRDT_GROW_ONLY && expires == 0)) {
        ut_err_set(err, "crdt_put: %s/\"%s\": expires %lld is invalid (%s)", tbl,
                   crdt_show_(key, show, sizeof(show)), (long long)expires,
                   w.t->kind == CRDT_GROW_ONLY ? "a grow-only fact needs its expiry, unix ms"
                                               : "must be 0 or unix ms");
        return -EINVAL;
    }
    w.value = value;
    w.value_len = value_len;
    w.expires = expires;
    return local_write(r, db, "crdt_put", &w, err);
}

int crdt_put(struct crdt_replica *r, sqlite3 *db, const char *tbl, const char *key,
             const void *value, size_t value_len, int64_t expires, struct ut_err *err)
{
    return crdt_put_internal_(r, db, tbl, key, value, value_len, expires, 0, err);
}

int crdt_delete(struct crdt_replica *r, sqlite3 *db, const char *tbl, const char *key,
                struct ut_err *err)
{
    struct row w = {0};
    int rc;

    rc = local_check(r, db, "crdt_delete", tbl, key, &w, err, 0);
    if (rc < 0)
        return rc;
    if (w.t->kind == CRDT_GROW_ONLY) {
        ut_err_set(err, "crdt_delete: table \"%s\" is grow-only: its facts cannot be deleted", tbl);
        return -EPERM;
    }
    w.deleted = 1;
    return local_write(r, db, "crdt_delete", &w, err);
}

/* Logs a refused remote stamp, at most once a second per replica (a peer
 * with a bad clock sends many). */
static void log_skew(struct crdt_replica *r, const struct crdt_entry *e, uint64_t wall)
{
    uint64_t last = atomic_load_explicit(&r->last_skew_log_ms, memory_order_relaxed);

    if (wall < last + 1000 && last != 0)
        return;
    if (!atomic_compare_exchange_strong(&r->last_skew_log_ms, &last, wall))
        return;
    ut_log(UT_LOG_WARN, "crdt", "remote stamp ahead of local clock; entry refused",
           UT_LF_S("origin", e->origin), UT_LF_S("table", e->tbl),
           UT_LF_I("ahead_ms", (long long)(CRDT_HLC_MS(e->hlc) - wall)),
           UT_LF_I("max_skew_ms", (long long)crdt_hlc_max_skew_(r->hlc)),
           UT_LF_I("refused_total", (long long)crdt_hlc_refused(r->hlc)));
}

static int apply_check(struct crdt_replica *r, const struct crdt_entry *e, struct row *w,
                       struct ut_err *err)
{
    char show[CRDT_SHOW_MAX], kshow[CRDT_SHOW_MAX];
    int rc;

    rc = crdt_tbl_get_(r, "crdt_apply", e->tbl, &w->t, err);
    if (rc < 0)
        return rc;
    rc = check_key("crdt_apply", e->tbl, e->key, &w->key_len, err);
    if (rc < 0)
        return rc == -E2BIG ? -EINVAL : rc; /* malformed remote input */
    w->key = e->key;
    crdt_show_(e->key, kshow, sizeof(kshow));
    if (crdt_origin_ok_(e->origin, &w->origin_len) < 0) {
        ut_err_set(err, "crdt_apply: %s/\"%s\": bad origin \"%s\"", e->tbl, kshow,
                   crdt_show_(e->origin, show, sizeof(show)));
        return -EINVAL;
    }
    w->origin = e->origin;
    if (e->seq == 0 || e->seq >= CRDT_SEQ_LIMIT || e->hlc == 0 || e->expires < 0) {
        ut_err_set(err, "crdt_apply: %s/\"%s\" from \"%s\": bad seq %llu, hlc %llu or expires %lld",
                   e->tbl, kshow, e->origin, (unsigned long long)e->seq, (unsigned long long)e->hlc,
                   (long long)e->expires);
        return -EINVAL;
    }
    w->deleted = e->deleted != 0;
    if (w->deleted && (e->value != NULL || e->value_len != 0)) {
        ut_err_set(err, "crdt_apply: %s/\"%s\" from \"%s\": a tombstone carries a value", e->tbl,
                   kshow, e->origin);
        return -EINVAL;
    }
    if (w->t->kind == CRDT_GROW_ONLY && (w->deleted || e->expires == 0)) {
        ut_err_set(err, "crdt_apply: %s/\"%s\" from \"%s\": %s in grow-only table", e->tbl, kshow,
                   e->origin, w->deleted ? "a tombstone" : "a fact without expiry");
        return -EINVAL;
    }
    rc = check_value("crdt_apply", e->tbl, e->key, e->value, e->value_len, err);
    if (rc < 0)
        return -EINVAL;
    w->value = e->value;
    w->value_len = e->value_len;
    w->hlc = e->hlc;
    w->seq = e->seq;
    w->expires = e->expires;
    return 0;
}

int crdt_apply(struct crdt_replica *r, sqlite3 *db, const struct crdt_entry *e, struct ut_err *err)
{
    return crdt_apply_ex(r, db, e, 0, err);
}

int crdt_apply_ex(struct crdt_replica *r, sqlite3 *db, const struct crdt_entry *e, unsigned flags,
                  struct ut_err *err)
{
    char kshow[CRDT_SHOW_MAX];
    struct row w = {0};
    uint64_t wall, have;
    int rc, won = 0, exists;

    if (r == NULL || db == NULL || e == NULL) {
        ut_err_set(err, "crdt_apply: %s is NULL", r == NULL ? "replica" : (db ? "entry" : "db"));
        return -EINVAL;
    }
    rc = apply_check(r, e, &w, err);
    if (rc < 0)
        return rc;
    if (crdt_hlc_observe(r->hlc, e->hlc) < 0) {
        wall = crdt_hlc_wall_ms(r->hlc);
        ut_err_set(err,
                   "crdt_apply: %s/\"%s\" from \"%s\": stamp %llu ms is %llu ms ahead of the "
                   "local clock (max skew %llu ms); refused",
                   e->tbl, crdt_show_(e->key, kshow, sizeof(kshow)), e->origin,
                   (unsigned long long)CRDT_HLC_MS(e->hlc),
                   (unsigned long long)(CRDT_HLC_MS(e->hlc) - wall),
                   (unsigned long long)crdt_hlc_max_skew_(r->hlc));
        log_skew(r, e, wall);
        return -ERANGE;
    }
    wall = crdt_hlc_wall_ms(r->hlc);
    if (w.t->kind == CRDT_GROW_ONLY) {
        if ((uint64_t)e->expires <= wall)
            return CRDT_EXPIRED;
    } else if (e->hlc < crdt_horizon_hlc_(r, wall)) {
        /* Older than the GC horizon: only a key we hold may take it, else
         * it may be a write whose tombstone we already purged. Catching
         * up (CRDT_APPLY_UNSEEN), a write we never saw is one we missed. */
        rc = stored_hlc(r, db, "crdt_apply", &w, &exists, &have, err);
        if (rc < 0)
            return rc;
        if (!exists) {
            if (!(flags & CRDT_APPLY_UNSEEN))
                return CRDT_HORIZON;
            rc = seen(r, db, &w, &exists, err);
            if (rc < 0)
                return rc;
            if (exists)
                return CRDT_HORIZON;
        }
    }
    rc = upsert(r, db, "crdt_apply", &w, &won, err);
    if (rc < 0)
        return rc;
    if ((flags & CRDT_APPLY_SOURCE) == CRDT_APPLY_SOURCE && w.t->kind == CRDT_LWW) {
        /* The source holds the key: whichever version wins, it is no row
         * a purged tombstone deleted. */
        rc = crdt_resync_confirm_(r, db, w.t, w.key, w.key_len, err);
        if (rc < 0)
            return rc;
    }
    if (!won)
        return CRDT_OLDER;
    crdt_mark_table_dirty_(r, w.t);
    return CRDT_APPLIED;
}
