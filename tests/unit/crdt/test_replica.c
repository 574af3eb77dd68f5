/*
 * Unit tests for replicas (lib/crdt): local writes and their ordering, seq
 * numbering under rollback, the log scan and paging, the version vector,
 * the horizon rule, GC, grow-only tables, clock skew, the change callback,
 * counts, views and input validation. Virtual clocks only.
 */
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crdt_test.h"
#include "util/log.h"

/* ---- helpers ---- */

static long long row_int(struct rep *p, const char *col, const char *tbl, const char *key)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT %s FROM crdt_rows WHERE tbl = '%s' AND key = '%s'", col, tbl,
             key);
    return rep_q(p, sql);
}

static void q_text(struct rep *p, const char *sql, char *out, size_t n)
{
    struct ut_err err = {{0}};
    sqlite3 *db = rep_reader(p);
    sqlite3_stmt *st = store_stmt(p->s, db, sql, &err);
    const unsigned char *t;

    if (st == NULL)
        fail_msg("%s: %s", sql, err.msg);
    if (sqlite3_step(st) != SQLITE_ROW)
        fail_msg("%s: no row", sql);
    t = sqlite3_column_text(st, 0);
    snprintf(out, n, "%s", t != NULL ? (const char *)t : "(null)");
    sqlite3_reset(st);
}

static int exec_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    (void)p;
    if (sqlite3_exec(db, arg, NULL, NULL, NULL) != SQLITE_OK) {
        ut_err_set(err, "%s: %s", (const char *)arg, sqlite3_errmsg(db));
        return -EIO;
    }
    return 0;
}

static void rep_exec(struct rep *p, const char *sql)
{
    struct ut_err err = {{0}};

    if (rep_run(p, exec_body, (void *)sql, &err) != 0)
        fail_msg("exec: %s", err.msg);
}

struct vv_arg {
    const char *origin;
    uint64_t seq;
};

static int vv_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    struct vv_arg *a = arg;

    return crdt_vv_advance(p->r, db, a->origin, a->seq, err);
}

static int vv_advance(struct rep *p, const char *origin, uint64_t seq, struct ut_err *err)
{
    struct vv_arg a = {origin, seq};

    return rep_run(p, vv_body, &a, err);
}

static int gc_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    return crdt_gc(p->r, db, arg, err);
}

static uint64_t rep_gc(struct rep *p)
{
    struct ut_err err = {{0}};
    uint64_t n = 0;

    if (rep_run(p, gc_body, &n, &err) != 0)
        fail_msg("gc: %s", err.msg);
    return n;
}

static uint64_t rep_count(struct rep *p, const char *tbl)
{
    struct ut_err err = {{0}};
    uint64_t n = 0;

    if (crdt_count(p->r, rep_reader(p), tbl, &n, &err) != 0)
        fail_msg("count %s: %s", tbl, err.msg);
    return n;
}

static int noop_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    (void)p;
    (void)db;
    (void)arg;
    (void)err;
    return 0;
}

/* A remote entry with a string value (NULL: tombstone). */
static struct crdt_entry ent(const char *tbl, const char *key, const char *v, uint64_t hlc,
                             const char *origin, uint64_t seq, int64_t expires)
{
    struct crdt_entry e = {
        tbl,       key,    (const uint8_t *)v, v != NULL ? strlen(v) : 0, hlc, origin, seq,
        v == NULL, expires};

    return e;
}

static void scan_own(struct rep *p, const char *origin, uint64_t after, size_t stop,
                     struct elist *l, int want_rc)
{
    struct ut_err err = {{0}};
    int rc;

    l->stop_after = stop;
    rc = crdt_scan(p->r, rep_reader(p), origin, after, elist_add, l, &err);
    if (rc != want_rc)
        fail_msg("scan %s after %llu: %d (want %d) %s", origin, (unsigned long long)after, rc,
                 want_rc, err.msg);
}

/* Closes and reopens the replica on the same store (a restart: fresh HLC). */
static void rep_reopen(struct rep *p)
{
    struct ut_err err = {{0}};
    struct crdt_opts o = {.origin = p->origin,
                          .tables = test_tables,
                          .n_tables = N_TEST_TABLES,
                          .clock = vclock_fn,
                          .clock_arg = &p->clk};

    crdt_replica_free(p->r);
    p->r = NULL;
    if (crdt_replica_open(&p->r, p->s, &o, &err) != 0)
        fail_msg("reopen: %s", err.msg);
}

/* ---- ordering of local writes ---- */

/* Two writes in the same millisecond: both stamped, the second wins, on
 * this node and on a replica that receives them in the opposite order. */
static void test_same_ms_writes(void **state)
{
    struct rep *p = rep_new("n1", 0), *q = rep_new("n2", 0);
    struct elist l = {0};
    struct crdt_entry e[2];
    struct ut_err err = {{0}};

    (void)state;
    rep_put(p, "kv", "k", "v1");
    scan_own(p, "n1", 0, 0, &l, 0);
    rep_put(p, "kv", "k", "v2");
    scan_own(p, "n1", 1, 0, &l, 0);
    assert_int_equal(l.n, 2);
    assert_value(p, "kv", "k", "v2");
    assert_int_equal(l.v[0].hlc, CRDT_HLC_MAKE(T0, 0));
    assert_int_equal(l.v[1].hlc, CRDT_HLC_MAKE(T0, 1));
    assert_int_equal(row_int(p, "seq", "kv", "k"), 2);
    e[0] = oentry_view(&l.v[1]);
    e[1] = oentry_view(&l.v[0]);
    assert_int_equal(rep_apply(q, &e[0], &err), CRDT_APPLIED);
    assert_int_equal(rep_apply(q, &e[1], &err), CRDT_OLDER);
    assert_value(q, "kv", "k", "v2");
    elist_free(&l);
    rep_free(p);
    rep_free(q);
}

/* A put whose key holds a row stamped ahead of our clock (written before a
 * restart by a clock that was ahead) still wins: the clock adopts it. */
static void test_put_beats_stored_ahead(void **state)
{
    struct rep *p = rep_new("n1", 0);
    struct ut_err err = {{0}};
    struct crdt_entry e = ent("kv", "k", "remote", CRDT_HLC_MAKE(T0 + 5000, 3), "zz", 1, 0);

    (void)state;
    assert_int_equal(rep_apply(p, &e, &err), CRDT_APPLIED);
    rep_reopen(p); /* fresh HLC at T0 */
    rep_put(p, "kv", "k", "local");
    assert_value(p, "kv", "k", "local");
    assert_true((uint64_t)row_int(p, "hlc", "kv", "k") > e.hlc);
    rep_free(p);
}

/* ---- seq numbering ---- */

static int two_puts_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    char big[CRDT_KEY_MAX + 2];
    int rc;

    (void)arg;
    rc = crdt_put(p->r, db, "kv", "x1", "1", 1, 0, err);
    if (rc < 0)
        return rc;
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    return crdt_put(p->r, db, "kv", big, "2", 1, 0, err); /* -E2BIG */
}

static void test_seq_rollback(void **state)
{
    struct rep *p = rep_new("n1", 0);
    struct put_arg a = {"kv", "c", "3", 1, 0, 0, 1};
    struct ut_err err = {{0}};
    struct elist l = {0};

    (void)state;
    rep_put(p, "kv", "a", "1");
    rep_put(p, "kv", "b", "2");
    assert_int_equal(rep_vv(p, "n1"), 2);
    /* The job fails after its crdt_put: everything of it is gone. */
    assert_int_equal(rep_run(p, put_body, &a, &err), -ECANCELED);
    assert_int_equal(rep_vv(p, "n1"), 2);
    assert_value(p, "kv", "c", NULL);
    assert_int_equal(rep_run(p, two_puts_body, NULL, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "longer than 1024"));
    assert_int_equal(rep_vv(p, "n1"), 2);
    assert_value(p, "kv", "x1", NULL);
    rep_put(p, "kv", "d", "4");
    assert_int_equal(rep_vv(p, "n1"), 3);
    scan_own(p, "n1", 0, 0, &l, 0);
    assert_int_equal(l.n, 3);
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(l.v[i].seq, i + 1);
    assert_string_equal(l.v[2].key, "d");
    elist_free(&l);
    rep_free(p);
}

/* ---- scan ---- */

static void test_scan_paging(void **state)
{
    struct rep *p = rep_new("n1", 0);
    struct ut_err err = {{0}};
    struct elist l = {0};
    uint64_t after = 0;
    int pages = 0, rc;
    char key[8];

    (void)state;
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        rep_put(p, "kv", key, "v");
    }
    rep_put(p, "kv", "k0", "again"); /* seq 11 replaces seq 1 */
    rep_del(p, "kv", "k1");          /* seq 12 replaces seq 2 */
    /* Pages of 3, each resumed after the last seq delivered. */
    do {
        size_t before = l.n;

        l.stop_after = l.n + 3;
        rc = crdt_scan(p->r, rep_reader(p), "n1", after, elist_add, &l, &err);
        assert_true(rc == 0 || rc == 7);
        if (l.n > before)
            after = l.v[l.n - 1].seq;
        pages++;
    } while (rc == 7);
    assert_int_equal(pages, 4);
    assert_int_equal(l.n, 10);
    for (size_t i = 0; i < l.n; i++)
        assert_int_equal(l.v[i].seq, i + 3);
    assert_string_equal(l.v[8].key, "k0");
    assert_memory_equal(l.v[8].value, "again", 5);
    assert_string_equal(l.v[9].key, "k1");
    assert_true(l.v[9].deleted);
    assert_null(l.v[9].value);
    assert_int_equal(l.v[9].value_len, 0);
    elist_free(&l);
    /* Nothing after the last seq; absurd after; bad origin. */
    scan_own(p, "n1", 12, 0, &l, 0);
    assert_int_equal(l.n, 0);
    scan_own(p, "n1", UINT64_MAX, 0, &l, 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(crdt_scan(p->r, rep_reader(p), "bad origin", 0, elist_add, &l, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "bad origin"));
    /* A remote origin's rows come in its seq order, not arrival order. */
    {
        struct crdt_entry e[3] = {
            ent("kv", "r5", "5", CRDT_HLC_MAKE(T0, 50), "peer", 5, 0),
            ent("kv", "r2", "2", CRDT_HLC_MAKE(T0, 20), "peer", 2, 0),
            ent("kv", "r9", NULL, CRDT_HLC_MAKE(T0, 90), "peer", 9, 0),
        };

        for (int i = 0; i < 3; i++)
            assert_int_equal(rep_apply(p, &e[i], &err), CRDT_APPLIED);
        scan_own(p, "peer", 0, 0, &l, 0);
        assert_int_equal(l.n, 3);
        assert_int_equal(l.v[0].seq, 2);
        assert_int_equal(l.v[1].seq, 5);
        assert_int_equal(l.v[2].seq, 9);
        assert_true(l.v[2].deleted);
        elist_free(&l);
    }
    rep_free(p);
}

/* ---- version vector ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void test_vv(void **state)
{
    char dir[] = "/tmp/crdt-vv-XXXXXX", url[128];
    struct ut_err err = {{0}};
    struct crdt_vv vv = {0};
    struct rep *p = NULL;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(url, sizeof(url), "sqlite://%s/vv.db", dir);
    assert_int_equal(rep_open_full(&p, url, "n1", test_tables, N_TEST_TABLES, 0, 0, &err), 0);
    assert_int_equal(rep_vv(p, "n1"), 0);
    assert_int_equal(crdt_generation(p->r), 0);
    rep_put(p, "kv", "a", "1");
    assert_int_equal(rep_vv(p, "n1"), 1);
    assert_int_equal(vv_advance(p, "peer", 5, &err), 0);
    assert_int_equal(vv_advance(p, "peer", 3, &err), 0); /* never lowers */
    assert_int_equal(vv_advance(p, "peer", 0, &err), 0);
    assert_int_equal(vv_advance(p, "zz", 2, &err), 0);
    assert_int_equal(rep_vv(p, "peer"), 5);
    assert_int_equal(vv_advance(p, "bad origin", 2, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "bad origin"));
    assert_int_equal(vv_advance(p, "peer", UINT64_C(1) << 63, &err), -EINVAL);
    /* Our own counter raised (state restored from peers): next seq 11. */
    assert_int_equal(vv_advance(p, "n1", 10, &err), 0);
    rep_put(p, "kv", "b", "2");
    assert_int_equal(row_int(p, "seq", "kv", "b"), 11);
    assert_int_equal(crdt_vv_load(p->r, rep_reader(p), &vv, &err), 0);
    assert_int_equal(vv.n, 3);
    assert_string_equal(vv.origin[0], "n1");
    assert_string_equal(vv.origin[1], "peer");
    assert_string_equal(vv.origin[2], "zz");
    assert_int_equal(vv.seq[0], 11);
    assert_int_equal(crdt_vv_get(&vv, "zz"), 2);
    assert_int_equal(crdt_vv_get(&vv, "nope"), 0);
    assert_int_equal(crdt_vv_get(&vv, "a"), 0);
    crdt_vv_free(&vv);
    assert_int_equal(vv.n, 0);
    /* Persisted: a restart resumes from it, generation = sum. */
    rep_free(p);
    assert_int_equal(rep_open_full(&p, url, "n1", test_tables, N_TEST_TABLES, 0, 0, &err), 0);
    assert_int_equal(rep_vv(p, "n1"), 11);
    assert_int_equal(rep_vv(p, "peer"), 5);
    assert_int_equal(crdt_generation(p->r), 11 + 5 + 2);
    rep_put(p, "kv", "c", "3");
    assert_int_equal(row_int(p, "seq", "kv", "c"), 12);
    rep_free(p);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- horizon, GC, grow-only ---- */

static void test_horizon(void **state)
{
    struct rep *p = rep_new("n1", 1000);
    struct ut_err err = {{0}};
    struct crdt_entry e;

    (void)state;
    /* Unknown key, older than the horizon: ignored, live or tombstone. */
    e = ent("kv", "old", "zombie", CRDT_HLC_MAKE(T0 - 2000, 0), "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_HORIZON);
    e = ent("kv", "old", NULL, CRDT_HLC_MAKE(T0 - 1500, 0), "peer", 2, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_HORIZON);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM crdt_rows WHERE key = 'old'"), 0);
    /* Unknown key within the horizon: stored. */
    e = ent("kv", "new", "fresh", CRDT_HLC_MAKE(T0 - 999, 0), "peer", 3, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_APPLIED);
    rep_free(p);

    /* A key we hold merges old entries normally. */
    p = rep_new("n1", 1000);
    rep_set_time(p, T0 - 5000);
    rep_put(p, "kv", "held", "mine");
    rep_set_time(p, T0);
    e = ent("kv", "held", "newer", CRDT_HLC_MAKE(T0 - 3000, 0), "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_APPLIED);
    assert_value(p, "kv", "held", "newer");
    e = ent("kv", "held", "older", CRDT_HLC_MAKE(T0 - 4000, 0), "peer", 2, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_OLDER);
    e = ent("kv", "held", NULL, CRDT_HLC_MAKE(T0 - 2000, 0), "peer", 3, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_APPLIED);
    assert_value(p, "kv", "held", NULL);
    rep_free(p);
}

static void test_gc(void **state)
{
    struct rep *p = rep_new("n1", 1000);
    struct ut_err err = {{0}};
    struct crdt_entry e;
    struct put_arg a = {"kv", "k4", "temp", 4, (int64_t)(T0 + 1500), 0, 0};

    (void)state;
    rep_put(p, "kv", "k1", "1");
    rep_put(p, "kv", "k2", "2");
    rep_put(p, "kv", "k3", "3");
    rep_del(p, "kv", "k2"); /* stamp (T0, 3) */
    assert_int_equal(rep_gc(p), 0);
    rep_set_time(p, T0 + 1000); /* horizon (T0, 0): tombstone not older */
    assert_int_equal(rep_gc(p), 0);
    rep_set_time(p, T0 + 1001);
    assert_int_equal(rep_gc(p), 1);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM crdt_rows"), 2);
    assert_value(p, "kv", "k1", "1"); /* live rows older than the horizon stay */
    assert_value(p, "kv", "k3", "3");
    /* A lagging peer's old write of the purged key cannot come back. */
    e = ent("kv", "k2", "2", CRDT_HLC_MAKE(T0 - 10, 0), "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_HORIZON);
    assert_int_equal(rep_count(p, "kv"), 2);
    /* An LWW row with its own expiry goes once expired and past the horizon. */
    assert_int_equal(rep_run(p, put_body, &a, &err), 0);
    rep_set_time(p, T0 + 1600); /* expired, stamp (T0 + 1001) within the horizon */
    assert_int_equal(rep_gc(p), 0);
    rep_set_time(p, T0 + 2002);
    assert_int_equal(rep_gc(p), 1);
    assert_value(p, "kv", "k4", NULL);
    assert_int_equal(rep_count(p, "kv"), 2);
    rep_free(p);
}

static void test_grow_only(void **state)
{
    struct rep *p = rep_new("n1", 1000);
    struct ut_err err = {{0}};
    struct crdt_entry e, t1;
    struct elist l = {0};
    struct put_arg del = {"revoked", "t1", NULL, 0, 0, 1, 0};

    (void)state;
    assert_int_equal(rep_put_e(p, "revoked", "t1", "{}", 0, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "revoked"));
    assert_int_equal(rep_put_e(p, "revoked", "t1", "{}", (int64_t)(T0 + 10000), &err), 0);
    assert_int_equal(rep_run(p, put_body, &del, &err), -EPERM);
    assert_non_null(strstr(err.msg, "grow-only"));
    e = ent("revoked", "t1", NULL, CRDT_HLC_MAKE(T0, 9), "peer", 1, (int64_t)(T0 + 10000));
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL); /* tombstone */
    assert_non_null(strstr(err.msg, "tombstone"));
    e = ent("revoked", "t3", "{}", CRDT_HLC_MAKE(T0, 9), "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL); /* no expiry */
    e = ent("revoked", "t3", "{}", CRDT_HLC_MAKE(T0, 9), "peer", 1, (int64_t)T0 - 1);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_EXPIRED);
    /* No horizon rule: an old fact for a key we lack is kept. */
    e = ent("revoked", "t2", "{}", CRDT_HLC_MAKE(T0 - 5000, 0), "peer", 2, (int64_t)(T0 + 10000));
    assert_int_equal(rep_apply(p, &e, &err), CRDT_APPLIED);
    /* GC long after the tombstone TTL: facts stay until their expiry. */
    rep_set_time(p, T0 + 5000);
    assert_int_equal(rep_gc(p), 0);
    assert_int_equal(rep_count(p, "revoked"), 2);
    scan_own(p, "n1", 0, 0, &l, 0);
    assert_int_equal(l.n, 1);
    t1 = oentry_view(&l.v[0]);
    rep_set_time(p, T0 + 10000);
    assert_int_equal(rep_gc(p), 2);
    assert_int_equal(rep_count(p, "revoked"), 0);
    /* Once expired, a copy arriving again is not resurrected. */
    assert_int_equal(rep_apply(p, &t1, &err), CRDT_EXPIRED);
    assert_int_equal(rep_count(p, "revoked"), 0);
    elist_free(&l);
    rep_free(p);
}

/* ---- clock skew ---- */

static void test_skew_refused(void **state)
{
    struct rep *p = NULL;
    struct ut_err err = {{0}};
    struct crdt_entry e;
    char path[] = "/tmp/crdt-log-XXXXXX", buf[4096];
    int fd = mkstemp(path);
    ssize_t n;

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(
        rep_open_full(&p, "sqlite::memory:", "n1", test_tables, N_TEST_TABLES, 0, 1000, &err), 0);
    ut_log_set_fd(fd);
    e = ent("kv", "k", "future", CRDT_HLC_MAKE(T0 + 1001, 0), "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), -ERANGE);
    ut_log_set_fd(2);
    assert_non_null(strstr(err.msg, "1001 ms ahead"));
    assert_non_null(strstr(err.msg, "peer"));
    assert_int_equal(crdt_hlc_refused(crdt_replica_hlc(p->r)), 1);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM crdt_rows"), 0);
    assert_true(crdt_hlc_now(crdt_replica_hlc(p->r)) < CRDT_HLC_MAKE(T0 + 1, 0)); /* not adopted */
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "entry refused"));
    assert_non_null(strstr(buf, "origin=\"peer\""));
    close(fd);
    unlink(path);
    /* At the tolerance: applied, and local writes then stamp after it. */
    e.hlc = CRDT_HLC_MAKE(T0 + 1000, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_APPLIED);
    rep_put(p, "kv", "k2", "x");
    assert_true((uint64_t)row_int(p, "hlc", "kv", "k2") > e.hlc);
    rep_free(p);
}

/* ---- change callback ---- */

struct cbrec {
    struct rep *p;
    int calls;
    uint64_t seen; /* live kv rows a reader saw from inside the callback */
};

static void change_cb(void *arg)
{
    struct cbrec *c = arg;
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(c->p->s, &err);

    c->calls++;
    if (db == NULL || crdt_count(c->p->r, db, "kv", &c->seen, &err) != 0)
        c->seen = UINT64_MAX;
}

static void test_change_cb(void **state)
{
    struct rep *p = rep_new("n1", 0);
    struct cbrec c = {p, 0, 0};
    struct put_arg a = {"kv", "b", "2", 1, 0, 0, 1};
    struct ut_err err = {{0}};
    struct elist l = {0};
    struct crdt_entry e;
    uint64_t g0, g1;
    int base;

    (void)state;
    crdt_set_change_cb(p->r, change_cb, &c);
    g0 = crdt_generation(p->r);
    rep_put(p, "kv", "a", "1");
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.seen, 1); /* it ran after the commit */
    g1 = crdt_generation(p->r);
    assert_true(g1 > g0);
    /* A job that wrote and rolled back alone: no commit kept, no call. */
    assert_int_equal(rep_run(p, put_body, &a, &err), -ECANCELED);
    assert_int_equal(c.calls, 1);
    /* Its dirty mark may make the next commit call once spuriously
     * (documented: spurious calls are possible, missed ones are not). */
    assert_int_equal(rep_run(p, noop_body, NULL, &err), 0);
    assert_true(c.calls <= 2);
    base = c.calls;
    assert_int_equal(rep_run(p, noop_body, NULL, &err), 0);
    assert_int_equal(c.calls, base);
    /* Re-applying what we hold changes nothing: no call. */
    scan_own(p, "n1", 0, 0, &l, 0);
    e = oentry_view(&l.v[0]);
    g1 = crdt_generation(p->r);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_OLDER);
    assert_int_equal(c.calls, base);
    assert_int_equal(crdt_generation(p->r), g1);
    /* A winning remote entry and a vv advance each call it. */
    e = ent("kv", "r", "remote", CRDT_HLC_MAKE(T0, 100), "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), CRDT_APPLIED);
    assert_int_equal(c.calls, base + 1);
    assert_int_equal(c.seen, 2);
    assert_true(crdt_generation(p->r) > g1);
    assert_int_equal(vv_advance(p, "peer", 1, &err), 0);
    assert_int_equal(c.calls, base + 2);
    assert_int_equal(vv_advance(p, "peer", 1, &err), 0); /* no change */
    assert_int_equal(c.calls, base + 2);
    /* Removed: no more calls. */
    crdt_set_change_cb(p->r, NULL, NULL);
    rep_put(p, "kv", "z", "9");
    assert_int_equal(c.calls, base + 2);
    elist_free(&l);
    rep_free(p);
}

/* ---- counts, views, values ---- */

static void test_count(void **state)
{
    struct rep *p = rep_new("n1", 0);
    struct ut_err err = {{0}};
    uint64_t n = 9;

    (void)state;
    rep_put(p, "kv", "a", "1");
    rep_put(p, "kv", "b", "2");
    rep_put(p, "kv", "c", "3");
    rep_put(p, "sessions", "x", "{}");
    rep_del(p, "kv", "b");
    rep_del(p, "kv", "never-seen"); /* a tombstone for an unknown key */
    assert_int_equal(rep_count(p, "kv"), 2);
    assert_int_equal(rep_count(p, "sessions"), 1);
    assert_int_equal(rep_count(p, "revoked"), 0);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM crdt_rows WHERE tbl = 'kv'"), 4);
    assert_int_equal(crdt_count(p->r, rep_reader(p), "nope", &n, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "\"nope\""));
    assert_int_equal(crdt_count(p->r, rep_reader(p), "Bad", &n, &err), -EINVAL);
    rep_free(p);
}

static void test_views(void **state)
{
    struct rep *p = rep_new("n1", 0);
    struct ut_err err = {{0}};
    static const uint8_t bin[] = {0x00, 0xff, 'a', 0x00};
    struct put_arg a = {"kv", "bin", bin, sizeof(bin), 0, 0, 0};
    char text[128];

    (void)state;
    rep_put(p, "sessions", "s1", "{\"sub\":\"alice\"}");
    rep_put(p, "sessions", "s2", "{\"sub\":\"bob\"}");
    rep_del(p, "sessions", "s2");
    assert_int_equal(rep_run(p, put_body, &a, &err), 0);
    /* One view per declared table (and the lease table). */
    assert_int_equal(rep_q(p, "SELECT count(*) FROM sqlite_schema WHERE type = 'view' AND name IN"
                              " ('kv', 'sessions', 'revoked', 'crdt_leases')"),
                     4);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM sessions"), 1);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM kv"), 1);
    q_text(p, "SELECT json_extract(value, '$.sub') FROM sessions WHERE key = 's1'", text,
           sizeof(text));
    assert_string_equal(text, "alice");
    q_text(p, "SELECT typeof(value) FROM kv WHERE key = 'bin'", text, sizeof(text));
    assert_string_equal(text, "blob");
    q_text(p, "SELECT origin FROM sessions", text, sizeof(text));
    assert_string_equal(text, "n1");
    /* Reopening finds its views; a stale view text is replaced. */
    rep_exec(p, "DROP VIEW kv; CREATE VIEW kv AS SELECT 1 AS x");
    rep_reopen(p);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM kv WHERE key = 'bin'"), 1);
    rep_free(p);

    /* The name of an application table cannot become a view. */
    p = rep_new("n1", 0);
    rep_exec(p, "CREATE TABLE clients(id INTEGER PRIMARY KEY)");
    {
        struct crdt_table_def t = {"clients", CRDT_LWW};
        struct crdt_opts o = {.origin = "n1", .tables = &t, .n_tables = 1};
        struct crdt_replica *r2 = NULL;

        crdt_replica_free(p->r);
        p->r = NULL;
        assert_int_equal(crdt_replica_open(&r2, p->s, &o, &err), -EEXIST);
        assert_null(r2);
        assert_non_null(strstr(err.msg, "\"clients\""));
    }
    rep_free(p);
}

static void test_values(void **state)
{
    struct rep *p = rep_new("n1", 0);
    struct ut_err err = {{0}};
    static const uint8_t bin[] = {'a', 0x00, 'b', 0xc3};
    struct put_arg a = {"kv", "bin", bin, sizeof(bin), 0, 0, 0};
    size_t big_n = CRDT_VALUE_MAX;
    uint8_t *big = malloc(big_n + 1), *v = NULL;
    size_t n = 0;

    (void)state;
    assert_non_null(big);
    rep_put(p, "kv", "empty", "");
    assert_value(p, "kv", "empty", "");
    assert_int_equal(rep_run(p, put_body, &a, &err), 0);
    assert_int_equal(crdt_get(p->r, rep_reader(p), "kv", "bin", &v, &n, &err), 0);
    assert_int_equal(n, sizeof(bin));
    assert_memory_equal(v, bin, sizeof(bin));
    assert_int_equal(v[n], 0);
    free(v);
    /* The largest value round-trips; one byte more is refused. */
    for (size_t i = 0; i < big_n; i++)
        big[i] = (uint8_t)('a' + i % 26);
    a = (struct put_arg){"kv", "big", big, big_n, 0, 0, 0};
    assert_int_equal(rep_run(p, put_body, &a, &err), 0);
    assert_int_equal(crdt_get(p->r, rep_reader(p), "kv", "big", &v, &n, &err), 0);
    assert_int_equal(n, big_n);
    assert_memory_equal(v, big, big_n);
    free(v);
    a.len = big_n + 1;
    assert_int_equal(rep_run(p, put_body, &a, &err), -E2BIG);
    assert_non_null(strstr(err.msg, "\"big\""));
    /* Absent and deleted read as -ENOENT. */
    assert_int_equal(crdt_get(p->r, rep_reader(p), "kv", "nope", &v, &n, &err), -ENOENT);
    assert_null(v);
    rep_del(p, "kv", "empty");
    assert_int_equal(crdt_get(p->r, rep_reader(p), "kv", "empty", &v, &n, &err), -ENOENT);
    free(big);
    rep_free(p);
}

/* ---- validation ---- */

static int open_with(const char *origin, const struct crdt_table_def *t, size_t n,
                     struct ut_err *err)
{
    struct rep *p = NULL;
    int rc = rep_open_full(&p, "sqlite::memory:", origin, t, n, 0, 0, err);

    rep_free(p);
    return rc;
}

static void test_open_validation(void **state)
{
    struct ut_err err = {{0}};
    char long_name[CRDT_TABLE_NAME_MAX + 2], long_origin[CRDT_ORIGIN_MAX + 2];
    struct crdt_table_def t[2] = {{"ok", CRDT_LWW}, {"ok", CRDT_LWW}};

    (void)state;
    assert_int_equal(open_with("has space", t, 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "has space"));
    assert_int_equal(open_with("", t, 1, &err), -EINVAL);
    memset(long_origin, 'o', sizeof(long_origin) - 1);
    long_origin[sizeof(long_origin) - 1] = '\0';
    assert_int_equal(open_with(long_origin, t, 1, &err), -EINVAL);
    long_origin[CRDT_ORIGIN_MAX] = '\0';
    assert_int_equal(open_with(long_origin, t, 1, &err), 0);
    assert_int_equal(open_with("n1", t, 2, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "declared twice"));
    t[1].kind = (enum crdt_kind)7;
    t[1].name = "other";
    assert_int_equal(open_with("n1", t, 2, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "other"));
    t[1].kind = CRDT_GROW_ONLY;
    {
        const char *bad[] = {"Bad", "1abc", "crdt_x", "a-b", "", "sp ace"};

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            t[1].name = bad[i];
            assert_int_equal(open_with("n1", t, 2, &err), -EINVAL);
            assert_non_null(strstr(err.msg, "bad name"));
        }
    }
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    t[1].name = long_name;
    assert_int_equal(open_with("n1", t, 2, &err), -EINVAL);
    long_name[CRDT_TABLE_NAME_MAX] = '\0';
    assert_int_equal(open_with("n1", t, 2, &err), 0);
    t[1].name = "_x9";
    assert_int_equal(open_with("n1", t, 2, &err), 0);
    t[1].name = "order"; /* an SQL keyword: the view name is quoted */
    assert_int_equal(open_with("n1", t, 2, &err), 0);
    assert_int_equal(open_with("n1", NULL, 1, &err), -EINVAL);
    assert_int_equal(open_with("n1", NULL, 0, &err), 0);
    assert_int_equal(crdt_replica_open(NULL, NULL, NULL, &err), -EINVAL);
}

/* Per-table counters: a write moves its table's counter (after the
 * commit) and the replica's, not the other tables'; a merged entry too;
 * unknown tables have no handle. */
static void test_table_generation(void **state)
{
    struct rep *a = rep_new("A", 0);
    struct ut_err err = {{0}};
    int kv = crdt_table_handle(a->r, "kv"), ses = crdt_table_handle(a->r, "sessions");
    uint64_t g_kv, g_ses, g_all;
    struct crdt_entry e = {"sessions", "s1", (const uint8_t *)"{}", 2, CRDT_HLC_MAKE(T0, 1), "B", 1,
                           0,          0};

    (void)state;
    assert_true(kv >= 0 && ses >= 0 && kv != ses);
    assert_int_equal(crdt_table_handle(a->r, "nope"), -ENOENT);
    assert_int_equal(crdt_table_handle(a->r, "crdt_leases") >= 0, 1);
    assert_int_equal(crdt_table_generation(a->r, 99), 0);
    g_kv = crdt_table_generation(a->r, kv);
    g_ses = crdt_table_generation(a->r, ses);
    g_all = crdt_generation(a->r);
    rep_put(a, "kv", "k", "v");
    assert_true(crdt_table_generation(a->r, kv) > g_kv);
    assert_int_equal(crdt_table_generation(a->r, ses), g_ses);
    assert_true(crdt_generation(a->r) > g_all);
    g_kv = crdt_table_generation(a->r, kv);
    assert_int_equal(rep_apply(a, &e, &err), CRDT_APPLIED);
    assert_true(crdt_table_generation(a->r, ses) > g_ses);
    assert_int_equal(crdt_table_generation(a->r, kv), g_kv);
    rep_free(a);
}

/* indexed_fields: names checked; the index exists and serves a filtered,
 * ordered query on a table's view (no table scan), with the same rows a
 * scan gives. */
static void test_indexed_fields(void **state)
{
    const char *good[] = {"account", "status"}, *bad[] = {"Acct"}, *bad2[] = {"a.b"};
    struct rep *p = rep_new("n1", 0);
    struct ut_err err = {{0}};
    struct crdt_opts o = {.origin = "n1",
                          .tables = test_tables,
                          .n_tables = N_TEST_TABLES,
                          .clock = vclock_fn,
                          .clock_arg = &p->clk};
    sqlite3_stmt *st;
    char v[64], plan[256] = "";
    int n = 0;

    (void)state;
    crdt_replica_free(p->r);
    p->r = NULL;
    o.indexed_fields = bad;
    o.n_indexed_fields = 1;
    assert_int_equal(crdt_replica_open(&p->r, p->s, &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "Acct"));
    o.indexed_fields = bad2;
    assert_int_equal(crdt_replica_open(&p->r, p->s, &o, &err), -EINVAL);
    o.indexed_fields = good;
    o.n_indexed_fields = 2;
    assert_int_equal(crdt_replica_open(&p->r, p->s, &o, &err), 0);
    for (int i = 0; i < 50; i++) {
        char k[16];

        snprintf(k, sizeof(k), "k%02d", i);
        snprintf(v, sizeof(v), "{\"account\":\"%s\"}", i % 10 == 0 ? "a1" : "a2");
        rep_put(p, "kv", k, v);
    }
    assert_int_equal(sqlite3_prepare_v2(rep_reader(p),
                                        "EXPLAIN QUERY PLAN SELECT key FROM kv WHERE key > "
                                        "coalesce(?1, '') AND json_extract(value, '$.account') = "
                                        "?2 ORDER BY key",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        snprintf(plan, sizeof(plan), "%s", (const char *)sqlite3_column_text(st, 3));
    sqlite3_finalize(st);
    assert_non_null(strstr(plan, "crdt_rows_has_account"));
    assert_int_equal(sqlite3_prepare_v2(rep_reader(p),
                                        "SELECT key FROM kv WHERE key > coalesce(?1, '') AND "
                                        "json_extract(value, '$.account') = 'a1' ORDER BY key",
                                        -1, &st, NULL),
                     SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
        n++;
    sqlite3_finalize(st);
    assert_int_equal(n, 5);
    assert_int_equal(
        rep_q(p, "SELECT count(*) FROM kv WHERE json_extract(value, '$.account') = 'a1'"), 5);
    rep_free(p);
}

static void test_write_validation(void **state)
{
    struct rep *p = rep_new("n1", 0);
    struct ut_err err = {{0}};
    char key[CRDT_KEY_MAX + 2];
    struct put_arg a = {"kv", NULL, "v", 1, 0, 0, 0};
    struct crdt_entry e;

    (void)state;
    memset(key, 'k', sizeof(key) - 1);
    key[sizeof(key) - 1] = '\0';
    assert_int_equal(rep_put_e(p, "kv", key, "v", 0, &err), -E2BIG);
    key[CRDT_KEY_MAX] = '\0';
    assert_int_equal(rep_put_e(p, "kv", key, "v", 0, &err), 0);
    assert_int_equal(rep_put_e(p, "kv", "", "v", 0, &err), -EINVAL);
    assert_int_equal(rep_run(p, put_body, &a, &err), -EINVAL); /* NULL key */
    a = (struct put_arg){"kv", "k", NULL, 5, 0, 0, 0};
    assert_int_equal(rep_run(p, put_body, &a, &err), -EINVAL); /* NULL value, length 5 */
    assert_int_equal(rep_put_e(p, "kv", "k", "v", -1, &err), -EINVAL);
    assert_int_equal(rep_put_e(p, "nope", "k", "v", 0, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "\"nope\" is not declared"));
    assert_int_equal(rep_put_e(p, "Nope", "k", "v", 0, &err), -EINVAL);
    assert_int_equal(rep_put_e(p, "crdt_leases", "k", "v", 0, &err), -EPERM);
    a = (struct put_arg){"crdt_leases", "k", NULL, 0, 0, 1, 0};
    assert_int_equal(rep_run(p, put_body, &a, &err), -EPERM);
    assert_int_equal(crdt_table_kind(p->r, "kv"), CRDT_LWW);
    assert_int_equal(crdt_table_kind(p->r, "revoked"), CRDT_GROW_ONLY);
    assert_int_equal(crdt_table_kind(p->r, "nope"), -1);
    assert_string_equal(crdt_replica_origin(p->r), "n1");

    /* Malformed remote entries. */
    e = ent("nope", "k", "v", CRDT_HLC_MAKE(T0, 1), "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), -ENOENT);
    e = ent("kv", "k", "v", CRDT_HLC_MAKE(T0, 1), "bad peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "bad peer"));
    e = ent("kv", "k", "v", CRDT_HLC_MAKE(T0, 1), "peer", 0, 0);
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL);
    e = ent("kv", "k", "v", 0, "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL);
    e = ent("kv", "k", "v", CRDT_HLC_MAKE(T0, 1), "peer", 1, 0);
    e.deleted = 1;
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "tombstone carries a value"));
    e = ent("kv", "k", NULL, CRDT_HLC_MAKE(T0, 1), "peer", 1, 0);
    e.deleted = 0;
    e.value_len = 5;
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL);
    key[CRDT_KEY_MAX] = 'k';
    e = ent("kv", key, "v", CRDT_HLC_MAKE(T0, 1), "peer", 1, 0);
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL);
    e = ent("kv", "k", "v", CRDT_HLC_MAKE(T0, 1), "peer", 1, 0);
    e.value_len = CRDT_VALUE_MAX + 1;
    assert_int_equal(rep_apply(p, &e, &err), -EINVAL);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM crdt_rows WHERE origin = 'peer'"), 0);
    rep_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_ms_writes),
        cmocka_unit_test(test_put_beats_stored_ahead),
        cmocka_unit_test(test_seq_rollback),
        cmocka_unit_test(test_scan_paging),
        cmocka_unit_test(test_vv),
        cmocka_unit_test(test_horizon),
        cmocka_unit_test(test_gc),
        cmocka_unit_test(test_grow_only),
        cmocka_unit_test(test_skew_refused),
        cmocka_unit_test(test_change_cb),
        cmocka_unit_test(test_count),
        cmocka_unit_test(test_views),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_open_validation),
        cmocka_unit_test(test_write_validation),
        cmocka_unit_test(test_indexed_fields),
        cmocka_unit_test(test_table_generation),
    };

    ut_log_set_level(UT_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
