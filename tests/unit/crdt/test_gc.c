/*
 * Unit tests for GC and re-sync (lib/crdt/gc.c, gc_thread.c, resync.c):
 * the GC mark and counters, the cadence, the horizon rule against keys
 * whose tombstone was purged (and its exemption for a re-sync source),
 * marking, confirming and dropping rows in a re-sync, its persistence,
 * that the own seq counter never goes back, and the GC thread. Virtual
 * clocks, memory stores.
 */
#include <time.h>
#include <unistd.h>

#include "crdt_test.h"
#include "util/log.h"

static const struct crdt_table_def gc_tables[] = {
    {"kv", CRDT_LWW},
    {"members", CRDT_LWW},
    {"revoked", CRDT_GROW_ONLY},
};

static struct rep *gc_rep(const char *origin, uint64_t ttl_ms)
{
    struct ut_err err = {{0}};
    struct rep *p = NULL;
    int rc = rep_open_full(&p, "sqlite::memory:", origin, gc_tables,
                           sizeof(gc_tables) / sizeof(gc_tables[0]), ttl_ms, 0, &err);

    if (rc != 0)
        fail_msg("rep_open %s: %d %s", origin, rc, err.msg);
    return p;
}

/* Reopens the replica on the same store (a restart that keeps the file). */
static void reopen(struct rep *p, uint64_t ttl_ms)
{
    struct ut_err err = {{0}};
    struct crdt_opts o = {.origin = p->origin,
                          .tables = gc_tables,
                          .n_tables = sizeof(gc_tables) / sizeof(gc_tables[0]),
                          .tombstone_ttl_ms = ttl_ms,
                          .clock = vclock_fn,
                          .clock_arg = &p->clk};

    crdt_replica_free(p->r);
    p->r = NULL;
    if (crdt_replica_open(&p->r, p->s, &o, &err) != 0)
        fail_msg("reopen: %s", err.msg);
}

static struct crdt_entry ent(const char *tbl, const char *key, const char *v, uint64_t hlc,
                             const char *origin, uint64_t seq)
{
    struct crdt_entry e = {
        tbl, key, (const uint8_t *)v, v != NULL ? strlen(v) : 0, hlc, origin, seq, v == NULL, 0};

    return e;
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

static int vv_advance(struct rep *p, const char *origin, uint64_t seq)
{
    struct ut_err err = {{0}};
    struct vv_arg a = {origin, seq};

    return rep_run(p, vv_body, &a, &err);
}

struct flagged {
    const struct crdt_entry *e;
    unsigned flags;
    int res;
};

static int apply_ex_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    struct flagged *f = arg;

    f->res = crdt_apply_ex(p->r, db, f->e, f->flags, err);
    return f->res < 0 ? f->res : 0;
}

static int apply_ex(struct rep *p, const struct crdt_entry *e, unsigned flags)
{
    struct ut_err err = {{0}};
    struct flagged f = {e, flags, 0};
    int rc = rep_run(p, apply_ex_body, &f, &err);

    return rc < 0 ? rc : f.res;
}

struct rs_arg {
    int op; /* 0 begin, 1 end+drop, 2 end keep */
    uint64_t n;
};

static int rs_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    static const char *const keep[] = {"members"};
    struct rs_arg *a = arg;

    if (a->op == 0)
        return crdt_resync_begin(p->r, db, keep, 1, &a->n, err);
    return crdt_resync_end(p->r, db, a->op == 1, &a->n, err);
}

static uint64_t resync(struct rep *p, int op)
{
    struct ut_err err = {{0}};
    struct rs_arg a = {op, 0};

    if (rep_run(p, rs_body, &a, &err) != 0)
        fail_msg("resync op %d: %s", op, err.msg);
    return a.n;
}

static uint64_t suspects(struct rep *p)
{
    struct ut_err err = {{0}};
    uint64_t n = 0;

    if (crdt_resync_count(p->r, rep_reader(p), &n, &err) != 0)
        fail_msg("resync_count: %s", err.msg);
    return n;
}

static uint64_t gc_run(struct rep *p)
{
    struct ut_err err = {{0}};
    uint64_t n = 0;

    if (crdt_gc_run(p->r, &n, &err) != 0)
        fail_msg("gc_run: %s", err.msg);
    return n;
}

/* ---- GC ---- */

static void test_gc_mark_and_counters(void **state)
{
    struct rep *p = gc_rep("n1", 1000);
    struct put_arg exp = {"kv", "temp", "t", 1, (int64_t)(T0 + 100), 0, 0};
    struct ut_err err = {{0}};
    uint64_t runs = 0, purged = 0;

    (void)state;
    assert_int_equal(crdt_gc_mark(p->r), 0);
    rep_put(p, "kv", "a", "1");
    rep_set_time(p, T0 + 10);
    rep_del(p, "kv", "a"); /* tombstone at T0 + 10 */
    rep_set_time(p, T0 + 20);
    rep_put(p, "kv", "b", "2");
    rep_del(p, "kv", "b");                                 /* tombstone at T0 + 20 */
    assert_int_equal(rep_run(p, put_body, &exp, &err), 0); /* expires T0 + 100 */
    assert_int_equal(gc_run(p), 0);
    crdt_gc_stats(p->r, &runs, &purged);
    assert_int_equal(runs, 1);
    assert_int_equal(purged, 0);
    rep_set_time(p, T0 + 1015); /* horizon T0 + 15: only "a" */
    assert_int_equal(gc_run(p), 1);
    assert_int_equal(crdt_gc_mark(p->r), T0 + 10);
    rep_set_time(p, T0 + 5000); /* "b" and the expired live row */
    assert_int_equal(gc_run(p), 2);
    assert_int_equal(crdt_gc_mark(p->r), T0 + 20); /* the expired live row does not count */
    crdt_gc_stats(p->r, &runs, &purged);
    assert_int_equal(runs, 3);
    assert_int_equal(purged, 3);
    /* The mark survives a restart; the counters are per process. */
    reopen(p, 1000);
    assert_int_equal(crdt_gc_mark(p->r), T0 + 20);
    crdt_gc_stats(p->r, &runs, &purged);
    assert_int_equal(runs, 0);
    /* It never goes back. */
    assert_int_equal(gc_run(p), 0);
    assert_int_equal(crdt_gc_mark(p->r), T0 + 20);
    rep_free(p);
}

static void test_gc_interval(void **state)
{
    struct rep *p;

    (void)state;
    p = gc_rep("n1", 60000); /* the minimum TTL: every 7.5 s */
    assert_int_equal(crdt_gc_interval_ms(p->r), 7500);
    assert_int_equal(crdt_tombstone_ttl_ms(p->r), 60000);
    rep_free(p);
    p = gc_rep("n1", 0); /* 7 days: capped at 10 minutes */
    assert_int_equal(crdt_gc_interval_ms(p->r), 600000);
    rep_free(p);
    p = gc_rep("n1", 800); /* at least 1 s */
    assert_int_equal(crdt_gc_interval_ms(p->r), 1000);
    rep_free(p);
}

/* The horizon rule: once a tombstone is purged, an old live copy of the
 * key from a lagging peer is ignored, live or as a newer-but-old update;
 * catching up, only writes never seen here pass it. */
static void test_horizon_after_purge(void **state)
{
    struct rep *p = gc_rep("n1", 1000);
    struct crdt_entry e;

    (void)state;
    e = ent("kv", "k", "v0", CRDT_HLC_MAKE(T0, 0), "peer", 1);
    assert_int_equal(apply_ex(p, &e, 0), CRDT_APPLIED);
    rep_set_time(p, T0 + 5);
    rep_del(p, "kv", "k");
    rep_set_time(p, T0 + 2000);
    assert_int_equal(gc_run(p), 1);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM crdt_rows WHERE key = 'k'"), 0);
    /* The same old write again, and an update the peer made before the
     * delete (never seen here): both below the horizon, key not held. */
    assert_int_equal(apply_ex(p, &e, 0), CRDT_HORIZON);
    e = ent("kv", "k", "v1", CRDT_HLC_MAKE(T0 + 3, 0), "other", 7);
    assert_int_equal(apply_ex(p, &e, 0), CRDT_HORIZON);
    assert_value(p, "kv", "k", NULL);
    /* Catching up (UNSEEN, SOURCE): the write we saw (vv[peer] covers it)
     * and deleted stays out, whoever re-sends it. */
    e = ent("kv", "k", "v0", CRDT_HLC_MAKE(T0, 0), "peer", 1);
    assert_int_equal(vv_advance(p, "peer", 1), 0);
    assert_int_equal(apply_ex(p, &e, CRDT_APPLY_UNSEEN), CRDT_HORIZON);
    assert_int_equal(apply_ex(p, &e, CRDT_APPLY_SOURCE), CRDT_HORIZON);
    assert_value(p, "kv", "k", NULL);
    /* A write after the horizon is a new write: taken. */
    e = ent("kv", "k", "v2", CRDT_HLC_MAKE(T0 + 1500, 0), "other", 8);
    assert_int_equal(apply_ex(p, &e, 0), CRDT_APPLIED);
    rep_free(p);

    /* Catching up, an old row we never saw for a key we lack is taken
     * (a row created while we were away). */
    p = gc_rep("n1", 1000);
    rep_set_time(p, T0 + 2000);
    e = ent("kv", "old", "kept-there", CRDT_HLC_MAKE(T0, 0), "peer", 1);
    assert_int_equal(apply_ex(p, &e, 0), CRDT_HORIZON);
    assert_int_equal(apply_ex(p, &e, CRDT_APPLY_UNSEEN), CRDT_APPLIED);
    assert_value(p, "kv", "old", "kept-there");
    e = ent("kv", "old2", "kept-there", CRDT_HLC_MAKE(T0, 1), "peer", 2);
    assert_int_equal(apply_ex(p, &e, CRDT_APPLY_SOURCE), CRDT_APPLIED);
    rep_free(p);
}

/* ---- re-sync ---- */

static void test_resync_drop(void **state)
{
    struct rep *p = gc_rep("n1", 1000);
    struct put_arg fact = {"revoked", "f", "{}", 2, (int64_t)(T0 + 100000), 0, 0};
    struct ut_err err = {{0}};
    struct crdt_entry e;
    uint64_t own;

    (void)state;
    /* Old rows: some ours, some a peer's. */
    rep_put(p, "kv", "own-confirmed", "a");
    rep_put(p, "kv", "own-unconfirmed", "b"); /* deleted and purged at the source */
    e = ent("kv", "peer-confirmed", "c", CRDT_HLC_MAKE(T0, 1), "peer", 1);
    assert_int_equal(apply_ex(p, &e, 0), CRDT_APPLIED);
    e = ent("kv", "peer-unconfirmed", "d", CRDT_HLC_MAKE(T0, 2), "peer", 2);
    assert_int_equal(apply_ex(p, &e, 0), CRDT_APPLIED);
    e = ent("kv", "stale-update", "e", CRDT_HLC_MAKE(T0, 3), "peer", 3);
    assert_int_equal(apply_ex(p, &e, 0), CRDT_APPLIED);
    rep_put(p, "kv", "rewritten", "f");
    rep_put(p, "kv", "deleted", "g");
    rep_del(p, "kv", "deleted");                            /* a tombstone: never marked */
    rep_put(p, "members", "n1", "{}");                      /* a kept table */
    assert_int_equal(rep_run(p, put_body, &fact, &err), 0); /* grow-only */
    rep_set_time(p, T0 + 500);
    rep_put(p, "kv", "recent", "h"); /* within the horizon at begin */
    own = rep_vv(p, "n1");

    rep_set_time(p, T0 + 1200); /* horizon T0 + 200 */
    assert_false(crdt_resync_active(p->r));
    assert_int_equal(resync(p, 0), 6); /* the old live kv rows */
    assert_true(crdt_resync_active(p->r));
    assert_int_equal(suspects(p), 6);
    assert_int_equal(rep_vv(p, "n1"), own); /* the vector is not touched */

    /* The source re-sends what it holds: same writes (OLDER), an older
     * version of ours (still confirms: it holds the key). */
    e = ent("kv", "peer-confirmed", "c", CRDT_HLC_MAKE(T0, 1), "peer", 1);
    assert_int_equal(apply_ex(p, &e, CRDT_APPLY_SOURCE), CRDT_OLDER);
    e = ent("kv", "own-confirmed", "older", CRDT_HLC_MAKE(T0 - 1, 0), "peer", 9);
    assert_int_equal(apply_ex(p, &e, CRDT_APPLY_SOURCE), CRDT_OLDER);
    /* Another peer's old update does not confirm: it may be stale too. */
    e = ent("kv", "stale-update", "e2", CRDT_HLC_MAKE(T0 + 100, 0), "lagging", 1);
    assert_int_equal(apply_ex(p, &e, 0), CRDT_APPLIED);
    /* A write made now is kept whatever the source says. */
    rep_put(p, "kv", "rewritten", "f2");
    assert_int_equal(suspects(p), 4);

    assert_int_equal(resync(p, 1), 3); /* own-unconfirmed, peer-unconfirmed, stale-update */
    assert_false(crdt_resync_active(p->r));
    assert_int_equal(suspects(p), 0);
    assert_value(p, "kv", "own-confirmed", "a");
    assert_value(p, "kv", "peer-confirmed", "c");
    assert_value(p, "kv", "own-unconfirmed", NULL);
    assert_value(p, "kv", "peer-unconfirmed", NULL);
    assert_value(p, "kv", "stale-update", NULL);
    assert_value(p, "kv", "rewritten", "f2");
    assert_value(p, "kv", "recent", "h");
    assert_value(p, "members", "n1", "{}");
    assert_int_equal(rep_q(p, "SELECT count(*) FROM crdt_rows WHERE tbl = 'revoked'"), 1);
    assert_int_equal(rep_q(p, "SELECT deleted FROM crdt_rows WHERE key = 'deleted'"), 1);

    /* The own seq counter never went back: the next write takes the next
     * number, above every seq this node ever used. */
    own = rep_vv(p, "n1");
    rep_put(p, "kv", "after", "i");
    assert_int_equal(rep_vv(p, "n1"), own + 1);
    assert_int_equal(rep_q(p, "SELECT seq FROM crdt_rows WHERE key = 'after'"), (long long)own + 1);
    assert_int_equal(rep_q(p, "SELECT count(*) FROM (SELECT seq FROM crdt_rows WHERE origin = 'n1'"
                              " GROUP BY seq HAVING count(*) > 1)"),
                     0);
    rep_free(p);
}

/* A re-sync that ends without a source (a yield) drops nothing; the marks
 * and the horizon of the begin persist across a restart. */
static void test_resync_keep_and_restart(void **state)
{
    struct rep *p = gc_rep("n1", 1000);
    struct crdt_entry e;

    (void)state;
    rep_put(p, "kv", "a", "1");
    rep_put(p, "kv", "b", "2");
    rep_set_time(p, T0 + 1500);
    assert_int_equal(resync(p, 0), 2);
    reopen(p, 1000);
    assert_true(crdt_resync_active(p->r));
    assert_int_equal(suspects(p), 2);
    assert_int_equal(resync(p, 2), 0); /* yield: nothing dropped */
    assert_false(crdt_resync_active(p->r));
    assert_value(p, "kv", "a", "1");
    assert_value(p, "kv", "b", "2");

    /* Begun again: the source confirms "a" after a restart, "b" goes. */
    assert_int_equal(resync(p, 0), 2);
    rep_set_time(p, T0 + 9000);
    reopen(p, 1000);
    e = ent("kv", "a", "1", CRDT_HLC_MAKE(T0, 0), "n1", 1);
    assert_int_equal(apply_ex(p, &e, CRDT_APPLY_SOURCE), CRDT_OLDER);
    assert_int_equal(resync(p, 1), 1);
    assert_value(p, "kv", "a", "1");
    assert_value(p, "kv", "b", NULL);
    rep_free(p);
}

static void test_resync_args(void **state)
{
    struct ut_err err = {{0}};
    uint64_t n = 0;

    (void)state;
    assert_int_equal(crdt_resync_begin(NULL, NULL, NULL, 0, &n, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "replica"));
    assert_int_equal(crdt_resync_end(NULL, NULL, 1, &n, &err), -EINVAL);
    assert_false(crdt_resync_active(NULL));
    assert_int_equal(crdt_gc_run(NULL, &n, &err), -EINVAL);
    assert_int_equal(crdt_gc_autorun(NULL, "x", &err), -EINVAL);
}

/* An origin starting with '~' is refused: the gossip engine uses such
 * names as pseudo-origins in the version vectors it states. */
static void test_reserved_origin(void **state)
{
    struct ut_err err = {{0}};
    struct rep *p = NULL;

    (void)state;
    assert_int_equal(rep_open_full(&p, "sqlite::memory:", "~gc", gc_tables, 1, 0, 0, &err),
                     -EINVAL);
    assert_non_null(strstr(err.msg, "~"));
}

/* ---- the GC thread ---- */

static void test_gc_autorun(void **state)
{
    struct rep *p = gc_rep("n1", 1000);
    struct ut_err err = {{0}};
    uint64_t runs = 0, purged = 0;

    (void)state;
    rep_put(p, "kv", "a", "1");
    rep_del(p, "kv", "a");
    rep_set_time(p, T0 + 5000);
    assert_int_equal(crdt_gc_autorun(p->r, "gc-test", &err), 0);
    assert_int_equal(crdt_gc_autorun(p->r, "gc-test", &err), -EALREADY);
    for (int i = 0; i < 500 && runs == 0; i++) { /* the first run is at once */
        struct timespec ts = {0, 10 * 1000 * 1000};

        nanosleep(&ts, NULL);
        crdt_gc_stats(p->r, &runs, &purged);
    }
    assert_true(runs >= 1);
    assert_int_equal(purged, 1);
    rep_free(p); /* stops the thread */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gc_mark_and_counters),    cmocka_unit_test(test_gc_interval),
        cmocka_unit_test(test_horizon_after_purge),     cmocka_unit_test(test_resync_drop),
        cmocka_unit_test(test_resync_keep_and_restart), cmocka_unit_test(test_resync_args),
        cmocka_unit_test(test_reserved_origin),         cmocka_unit_test(test_gc_autorun),
    };

    ut_log_set_level(UT_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
