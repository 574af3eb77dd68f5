/*
 * Unit tests for leases (lib/crdt/lease.c): acquire, renew, busy, takeover
 * after expiry with a new epoch, concurrent takeovers settled by the merge
 * (the loser fenced with -ESTALE), release. Two replicas, virtual clocks,
 * state exchanged with rep_merge_from (crdt_scan + crdt_apply).
 */
#include "crdt_test.h"
#include "util/log.h"

enum { OP_ACQUIRE, OP_CHECK, OP_RELEASE, OP_FENCED_WRITE };

struct lease_arg {
    int op;
    const char *name;
    uint64_t ttl;
    uint64_t epoch;
    char owner[CRDT_ORIGIN_MAX + 1];
};

static int lease_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    struct lease_arg *a = arg;
    char v[64];
    int rc;

    switch (a->op) {
    case OP_ACQUIRE:
        return crdt_lease_acquire(p->r, db, a->name, a->ttl, &a->epoch, a->owner, sizeof(a->owner),
                                  err);
    case OP_CHECK:
        return crdt_lease_check(p->r, db, a->name, a->epoch, err);
    case OP_RELEASE:
        return crdt_lease_release(p->r, db, a->name, a->epoch, err);
    default:
        /* The fencing pattern: check, then write carrying the epoch, in
         * one transaction. */
        rc = crdt_lease_check(p->r, db, a->name, a->epoch, err);
        if (rc < 0)
            return rc;
        snprintf(v, sizeof(v), "{\"epoch\":%llu}", (unsigned long long)a->epoch);
        return crdt_put(p->r, db, "kv", a->name, v, strlen(v), 0, err);
    }
}

static int acquire(struct rep *p, const char *name, uint64_t ttl, uint64_t *epoch, char *owner,
                   struct ut_err *err)
{
    struct lease_arg a = {OP_ACQUIRE, name, ttl, 0, ""};
    int rc = rep_run(p, lease_body, &a, err);

    *epoch = a.epoch;
    if (owner != NULL)
        snprintf(owner, sizeof(a.owner), "%s", a.owner);
    return rc;
}

static int lease_do(struct rep *p, int op, const char *name, uint64_t epoch, struct ut_err *err)
{
    struct lease_arg a = {op, name, 0, epoch, ""};

    return rep_run(p, lease_body, &a, err);
}

static void sync2(struct rep *a, struct rep *b)
{
    rep_merge_from(b, a);
    rep_merge_from(a, b);
}

static void test_acquire_renew_busy(void **state)
{
    struct rep *a = rep_new("A", 0), *b = rep_new("B", 0);
    struct ut_err err = {{0}};
    char owner[CRDT_ORIGIN_MAX + 1];
    uint64_t ep = 0;
    char *v;

    (void)state;
    assert_int_equal(acquire(a, "order/1", 1000, &ep, owner, &err), 0);
    assert_int_equal(ep, 1);
    assert_string_equal(owner, "A");
    assert_int_equal(lease_do(a, OP_CHECK, "order/1", 1, &err), 0);
    /* Renewal keeps the epoch and moves the expiry. */
    rep_set_time(a, T0 + 500);
    assert_int_equal(acquire(a, "order/1", 1000, &ep, owner, &err), 0);
    assert_int_equal(ep, 1);
    v = rep_get(a, "crdt_leases", "order/1");
    assert_string_equal(v, "{\"epoch\":1,\"expires\":1700000001500,\"owner\":\"A\"}");
    free(v);
    /* Another node sees it busy and cannot pass a check. */
    sync2(a, b);
    rep_set_time(b, T0 + 1499);
    assert_int_equal(acquire(b, "order/1", 1000, &ep, owner, &err), -EBUSY);
    assert_string_equal(owner, "A");
    assert_non_null(strstr(err.msg, "held by \"A\""));
    assert_int_equal(lease_do(b, OP_CHECK, "order/1", 1, &err), -ESTALE);
    assert_int_equal(lease_do(a, OP_CHECK, "order/1", 2, &err), -ESTALE);
    /* Other names are independent. */
    assert_int_equal(acquire(b, "order/2", 1000, &ep, owner, &err), 0);
    assert_int_equal(ep, 1);
    rep_free(a);
    rep_free(b);
}

static void test_expiry_takeover(void **state)
{
    struct rep *a = rep_new("A", 0), *b = rep_new("B", 0);
    struct ut_err err = {{0}};
    char owner[CRDT_ORIGIN_MAX + 1];
    uint64_t ep = 0;

    (void)state;
    assert_int_equal(acquire(a, "slot", 1000, &ep, NULL, &err), 0);
    sync2(a, b);
    rep_set_time(a, T0 + 999);
    assert_int_equal(lease_do(a, OP_CHECK, "slot", 1, &err), 0);
    rep_set_time(b, T0 + 1000); /* expires == now: expired */
    assert_int_equal(acquire(b, "slot", 1000, &ep, owner, &err), 0);
    assert_int_equal(ep, 2);
    assert_string_equal(owner, "B");
    /* A learns by merge: fenced. */
    sync2(a, b);
    assert_int_equal(lease_do(a, OP_CHECK, "slot", 1, &err), -ESTALE);
    assert_non_null(strstr(err.msg, "held by \"B\" with epoch 2"));
    assert_int_equal(lease_do(a, OP_FENCED_WRITE, "slot", 1, &err), -ESTALE);
    assert_value(a, "kv", "slot", NULL);
    rep_set_time(a, T0 + 1000);
    assert_int_equal(acquire(a, "slot", 1000, &ep, owner, &err), -EBUSY);
    assert_string_equal(owner, "B");
    assert_int_equal(lease_do(b, OP_FENCED_WRITE, "slot", 2, &err), 0);
    assert_value(b, "kv", "slot", "{\"epoch\":2}");
    /* Our own lease, once expired, is a new tenure: epoch + 1. */
    rep_set_time(b, T0 + 2000);
    assert_int_equal(lease_do(b, OP_CHECK, "slot", 2, &err), -ESTALE);
    assert_non_null(strstr(err.msg, "expired"));
    assert_int_equal(acquire(b, "slot", 1000, &ep, NULL, &err), 0);
    assert_int_equal(ep, 3);
    rep_free(a);
    rep_free(b);
}

/* Both take the expired lease at once: both succeed locally with the same
 * epoch; the merge keeps the greater (hlc, origin) and fences the other. */
static void test_concurrent_takeover(void **state)
{
    struct rep *a = rep_new("A", 0), *b = rep_new("B", 0);
    struct ut_err err = {{0}};
    uint64_t ea = 0, eb = 0;
    char *da, *db;

    (void)state;
    assert_int_equal(acquire(a, "order/9", 1000, &ea, NULL, &err), 0);
    sync2(a, b);
    rep_set_time(a, T0 + 2000);
    rep_set_time(b, T0 + 2001);
    assert_int_equal(acquire(a, "order/9", 1000, &ea, NULL, &err), 0);
    assert_int_equal(acquire(b, "order/9", 1000, &eb, NULL, &err), 0);
    assert_int_equal(ea, 2);
    assert_int_equal(eb, 2);
    assert_int_equal(lease_do(a, OP_CHECK, "order/9", ea, &err), 0);
    assert_int_equal(lease_do(b, OP_CHECK, "order/9", eb, &err), 0);
    sync2(a, b);
    assert_int_equal(lease_do(a, OP_CHECK, "order/9", ea, &err), -ESTALE);
    assert_int_equal(lease_do(a, OP_FENCED_WRITE, "order/9", ea, &err), -ESTALE);
    assert_int_equal(lease_do(b, OP_CHECK, "order/9", eb, &err), 0);
    da = rep_dump(a);
    db = rep_dump(b);
    assert_string_equal(da, db);
    free(da);
    free(db);
    rep_free(a);
    rep_free(b);
}

static void test_release(void **state)
{
    struct rep *a = rep_new("A", 0), *b = rep_new("B", 0);
    struct ut_err err = {{0}};
    char owner[CRDT_ORIGIN_MAX + 1];
    uint64_t ep = 0;
    char *v;

    (void)state;
    assert_int_equal(acquire(a, "w", 60000, &ep, NULL, &err), 0);
    assert_int_equal(lease_do(a, OP_RELEASE, "w", 2, &err), -ESTALE);
    assert_int_equal(lease_do(b, OP_RELEASE, "w", 1, &err), -ESTALE); /* B never held it */
    assert_int_equal(lease_do(a, OP_RELEASE, "w", 1, &err), 0);
    assert_int_equal(lease_do(a, OP_CHECK, "w", 1, &err), -ESTALE);
    assert_non_null(strstr(err.msg, "not held"));
    v = rep_get(a, "crdt_leases", "w");
    assert_string_equal(v, "{\"epoch\":1,\"expires\":0,\"owner\":\"\"}");
    free(v);
    /* Free: the next tenure, anywhere, has the next epoch. */
    sync2(a, b);
    assert_int_equal(acquire(b, "w", 60000, &ep, owner, &err), 0);
    assert_int_equal(ep, 2);
    sync2(a, b);
    assert_int_equal(acquire(a, "w", 60000, &ep, owner, &err), -EBUSY);
    assert_string_equal(owner, "B");
    rep_free(a);
    rep_free(b);
}

static void test_lease_validation(void **state)
{
    struct rep *a = rep_new("A", 0);
    struct ut_err err = {{0}};
    char name[CRDT_KEY_MAX + 2];
    uint64_t ep = 0;
    struct crdt_entry e = {"crdt_leases",
                           "bad",
                           (const uint8_t *)"not json",
                           8,
                           CRDT_HLC_MAKE(T0, 5),
                           "peer",
                           1,
                           0,
                           0};

    (void)state;
    assert_int_equal(acquire(a, "x", 0, &ep, NULL, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "ttl_ms"));
    assert_int_equal(acquire(a, "", 1000, &ep, NULL, &err), -EINVAL);
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(acquire(a, name, 1000, &ep, NULL, &err), -E2BIG);
    assert_int_equal(lease_do(a, OP_CHECK, "never", 1, &err), -ESTALE);
    /* A lease row that is not a lease document (a buggy peer). */
    assert_int_equal(rep_apply(a, &e, &err), CRDT_APPLIED);
    assert_int_equal(lease_do(a, OP_CHECK, "bad", 1, &err), -EPROTO);
    assert_non_null(strstr(err.msg, "\"bad\""));
    assert_int_equal(acquire(a, "bad", 1000, &ep, NULL, &err), -EPROTO);
    rep_free(a);
}

static int gc_body(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err)
{
    return crdt_gc(p->r, db, arg, err);
}

static uint64_t gc(struct rep *p)
{
    struct ut_err err = {{0}};
    uint64_t n = 0;

    if (rep_run(p, gc_body, &n, &err) != 0)
        fail_msg("crdt_gc: %s", err.msg);
    return n;
}

/* Lease rows expire with their lease: GC purges a released or expired one
 * once its last write is older than tombstone_ttl, never a live one; the
 * next tenure of a purged name starts again at epoch 1. */
static void test_lease_gc(void **state)
{
    const uint64_t ttl = 60000; /* tombstone_ttl */
    struct rep *a = rep_new("A", ttl);
    struct ut_err err = {{0}};
    uint64_t ep = 0, g_kv;
    char *v;

    (void)state;
    assert_int_equal(acquire(a, "done", 1000, &ep, NULL, &err), 0);
    assert_int_equal(acquire(a, "done", 1000, &ep, NULL, &err), 0); /* renewal */
    assert_int_equal(ep, 1);
    assert_int_equal(lease_do(a, OP_RELEASE, "done", 1, &err), 0);
    assert_int_equal(acquire(a, "done", 1000, &ep, NULL, &err), 0);
    assert_int_equal(ep, 2);
    assert_int_equal(lease_do(a, OP_RELEASE, "done", 2, &err), 0);
    assert_int_equal(acquire(a, "lapsed", 1000, &ep, NULL, &err), 0); /* never released */
    assert_int_equal(acquire(a, "live", 10 * ttl, &ep, NULL, &err), 0);
    /* Younger than the horizon: kept, epochs still count up. */
    rep_set_time(a, T0 + ttl / 2);
    assert_int_equal(gc(a), 0);
    assert_non_null(v = rep_get(a, "crdt_leases", "done"));
    assert_non_null(strstr(v, "\"epoch\":2"));
    free(v);
    /* Past the horizon: the released and the lapsed lease go, the live one
     * stays (its row is as old, but its lease has not expired). */
    rep_set_time(a, T0 + ttl + 1001);
    g_kv = crdt_table_generation(a->r, crdt_table_handle(a->r, "kv"));
    assert_int_equal(gc(a), 2);
    /* a purge moves every table's counter (cached readers must look again) */
    assert_true(crdt_table_generation(a->r, crdt_table_handle(a->r, "kv")) > g_kv);
    assert_null(rep_get(a, "crdt_leases", "done"));
    assert_null(rep_get(a, "crdt_leases", "lapsed"));
    assert_non_null(v = rep_get(a, "crdt_leases", "live"));
    free(v);
    assert_int_equal(lease_do(a, OP_CHECK, "live", 1, &err), 0);
    assert_int_equal(lease_do(a, OP_CHECK, "done", 2, &err), -ESTALE);
    assert_int_equal(acquire(a, "done", 1000, &ep, NULL, &err), 0);
    assert_int_equal(ep, 1);
    rep_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acquire_renew_busy),  cmocka_unit_test(test_expiry_takeover),
        cmocka_unit_test(test_concurrent_takeover), cmocka_unit_test(test_release),
        cmocka_unit_test(test_lease_validation),    cmocka_unit_test(test_lease_gc),
    };

    ut_log_set_level(UT_LOG_WARN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
