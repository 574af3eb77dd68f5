/*
 * The engine after a long absence (lib/gossip/contact.c,
 * docs/replication.md section 8): a node out of contact for longer than
 * the tombstone TTL re-syncs from a peer that purged what it may have
 * missed, drops exactly the rows deleted there, never hands them back,
 * keeps its own seq counter; no re-sync when nobody purged anything it
 * missed; two nodes re-syncing from each other; a new node's first sync
 * takes rows older than the horizon; periodic GC and its counters.
 * Engines driven by direct calls on a virtual clock, file stores.
 */
#define GSP_TEST_DIR_PREFIX "/tmp/test-gsp-contact"
#include "gsp_test.h"

#include "gossip/engine_int.h" /* gsp_engine_maintain */

#define TTL_MS 60000u

static const char warn_line[] = "WARN gossip: out of contact for longer than tombstone_ttl_secs; "
                                "discarding replicated rows older than the horizon and "
                                "re-syncing from peers last_contact=";

/* A node on a file store; the file of an earlier test is removed. */
static void node(struct tnode *n, const char *id)
{
    char path[300];

    tn_init(n, id, g_dir);
    n->ttl_ms = TTL_MS;
    unlink(n->path);
    snprintf(path, sizeof(path), "%s-wal", n->path);
    unlink(path);
    snprintf(path, sizeof(path), "%s-shm", n->path);
    unlink(path);
}

static void mesh(struct tnode *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tn_open(&v[i]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (i != j)
                tn_seed(&v[i], &v[j]);
}

/* A value from the status "contact" object (-1 when absent). */
static long long contact(struct tnode *n, const char *name)
{
    json_t *st = gsp_engine_status(n->e);
    json_t *v = json_object_get(json_object_get(st, "contact"), name);
    long long r = json_is_integer(v)   ? (long long)json_integer_value(v)
                  : json_is_boolean(v) ? (long long)json_is_true(v)
                                       : -1;

    json_decref(st);
    return r;
}

static int has_key(struct tnode *n, const char *key)
{
    char *v = tn_get(n, "kv", key);
    int r = v != NULL;

    free(v);
    return r;
}

static uint64_t own_seq(struct tnode *n)
{
    struct ut_err err = {{0}};
    struct crdt_vv vv = {0};
    uint64_t s;

    if (crdt_vv_load(n->r, store_reader(n->s, &err), &vv, &err) < 0)
        fail_msg("vv: %s", err.msg);
    s = crdt_vv_get(&vv, n->id);
    crdt_vv_free(&vv);
    return s;
}

static void gc(struct tnode *n)
{
    struct ut_err err = {{0}};

    if (crdt_gc_run(n->r, NULL, &err) < 0)
        fail_msg("gc %s: %s", n->id, err.msg);
}

static void same_vv(struct tnode *a, struct tnode *b)
{
    char va[2048], vb[2048];

    tn_vv(a, va, sizeof(va));
    tn_vv(b, vb, sizeof(vb));
    assert_string_equal(va, vb);
}

/* Three nodes; c stops; a deletes k2, b creates "fresh"; both purge the
 * tombstone after the TTL; c comes back, re-syncs, drops k2 (and only
 * it), gets "fresh" (older than the horizon by then), never gives k2 back. */
static void test_stale_node_resyncs(void **state)
{
    struct tnode v[3], *a = &v[0], *b = &v[1], *c = &v[2];
    char *log;
    uint64_t c_seq;

    (void)state;
    node(a, "a.test:1");
    node(b, "b.test:2");
    node(c, "c.test:3");
    mesh(v, 3);
    tn_put_many(a, "kv", "k", 5, "v", 0);
    tn_put(c, "c-own", "x");
    assert_true(tn_sync(b, a) > 0);
    assert_true(tn_sync(c, a) > 0);
    assert_true(tn_sync(b, c) > 0);
    assert_true(tn_sync(a, c) > 0);
    assert_true(has_key(c, "k2"));
    assert_int_equal(contact(c, "armed"), 0);
    c_seq = own_seq(c);
    tn_close(c); /* records its last contact */

    g_now += 1000;
    tn_del(a, "k2");
    tn_put(b, "fresh", "made while c was away");
    assert_true(tn_sync(a, b) > 0);
    g_now += 2 * TTL_MS;
    gc(a);
    gc(b);
    assert_false(has_key(a, "k2"));
    assert_true(contact(a, "gc_mark_ms") > 0);
    assert_int_equal(tn_stat(a, NULL, "gc_runs"), 1);
    assert_int_equal(tn_stat(a, NULL, "gc_purged"), 1);

    log_start();
    tn_open(c);
    assert_int_equal(contact(c, "armed"), 1);
    assert_int_equal(contact(c, "resync"), 0);
    assert_true(has_key(c, "k2")); /* nothing is dropped before a source answered */
    assert_true(tn_sync(c, a) > 0);
    log = log_stop();
    assert_non_null(strstr(log, warn_line));
    assert_non_null(
        strstr(log, "INFO gossip: re-sync complete peer=\"http://a.test:1\" dropped=1"));
    free(log);
    assert_false(has_key(c, "k2"));
    assert_true(has_key(c, "k1"));
    assert_true(has_key(c, "c-own"));
    assert_true(has_key(c, "fresh"));
    assert_int_equal(tn_stat(c, NULL, "resyncs"), 1);
    assert_int_equal(tn_stat(c, NULL, "resync_dropped"), 1);
    assert_int_equal(contact(c, "resync"), 0);
    assert_int_equal(contact(c, "armed"), 0);
    assert_int_equal(contact(c, "resync_suspects"), 0);

    /* c's counter went on: its next write is the next seq, and it reaches
     * the others; k2 never does. */
    assert_int_equal(own_seq(c), c_seq);
    tn_put(c, "after", "y");
    assert_int_equal(own_seq(c), c_seq + 1);
    assert_true(tn_sync(c, b) > 0);
    assert_true(tn_sync(b, c) > 0);
    assert_true(tn_sync(a, c) > 0);
    assert_true(tn_sync(a, b) > 0);
    for (int i = 0; i < 3; i++) {
        assert_false(has_key(&v[i], "k2"));
        assert_true(has_key(&v[i], "after"));
    }
    same_vv(a, c);
    same_vv(b, c);
    /* The others never re-synced. */
    assert_int_equal(tn_stat(a, NULL, "resyncs"), 0);
    assert_int_equal(tn_stat(b, NULL, "resyncs"), 0);
    for (int i = 0; i < 3; i++)
        tn_free(&v[i]);
}

/* The stale node is contacted first (b pushes to it): it begins the
 * re-sync on b's request; a restart in the middle keeps the marks; the
 * pass completes with c's next round. */
static void test_resync_begins_as_responder_and_survives_restart(void **state)
{
    struct tnode v[2], *b = &v[0], *c = &v[1];

    (void)state;
    node(b, "b.test:2");
    node(c, "c.test:3");
    mesh(v, 2);
    tn_put_many(b, "kv", "k", 4, "v", 0);
    assert_true(tn_sync(c, b) > 0);
    tn_close(c);
    g_now += 1000;
    tn_del(b, "k0");
    g_now += 2 * TTL_MS;
    gc(b);
    tn_put(b, "new", "n"); /* something for b to push */
    tn_open(c);
    assert_int_equal(tn_xchg(b, c), 0); /* b pulls first: c handles */
    assert_int_equal(contact(c, "resync"), 1);
    assert_true(contact(c, "resync_suspects") > 0);
    assert_true(has_key(c, "k0"));
    tn_close(c);
    tn_open(c);
    assert_int_equal(contact(c, "resync"), 1);
    assert_true(tn_sync(c, b) > 0);
    assert_int_equal(contact(c, "resync"), 0);
    assert_false(has_key(c, "k0"));
    assert_true(has_key(c, "k3"));
    same_vv(b, c);
    tn_free(b);
    tn_free(c);
}

/* Back after longer than the TTL, but nobody deleted anything meanwhile
 * (or what was purged is older than the last contact): no re-sync, no
 * WARN, nothing dropped. */
static void test_no_resync_without_purges(void **state)
{
    struct tnode v[2], *a = &v[0], *c = &v[1];
    char *log;

    (void)state;
    node(a, "a.test:1");
    node(c, "c.test:3");
    mesh(v, 2);
    tn_put_many(a, "kv", "k", 3, "v", 0);
    tn_del(a, "k0"); /* replicated before c stops */
    assert_true(tn_sync(c, a) > 0);
    g_now += 100000;                /* well past the margin */
    assert_true(tn_sync(c, a) > 0); /* c's last contact: long after the delete */
    tn_close(c);
    g_now += 2 * TTL_MS;
    gc(a); /* purges k0's tombstone: older than c's last contact */
    tn_put(a, "new", "n");
    log_start();
    tn_open(c);
    assert_int_equal(contact(c, "armed"), 1);
    assert_true(tn_sync(c, a) > 0);
    log = log_stop();
    assert_null(strstr(log, "WARN gossip: out of contact"));
    assert_non_null(strstr(log, "contact restored; no peer purged anything this node missed"));
    free(log);
    assert_int_equal(contact(c, "armed"), 0);
    assert_int_equal(tn_stat(c, NULL, "resyncs"), 0);
    assert_true(has_key(c, "new"));
    assert_true(has_key(c, "k1"));
    tn_free(a);
    tn_free(c);
}

/* Two nodes cut off from each other for longer than the TTL, both
 * deleting and purging: their requests cross, so both open a re-sync with
 * the other as the source. The greater node id yields, re-syncs after the
 * other completed; both deletes win everywhere, nothing else is lost. */
static void test_mutual_resync(void **state)
{
    struct ut_err err = {{0}};
    struct tnode v[2], *a = &v[0], *b = &v[1];
    struct gsp_exchange *xa = NULL, *xb = NULL;
    uint8_t *ma = NULL, *mb = NULL, *ra = NULL, *rb = NULL;
    size_t la = 0, lb = 0, lra = 0, lrb = 0;
    int st = 0;

    (void)state;
    node(a, "a.test:1");
    node(b, "b.test:2");
    mesh(v, 2);
    tn_put_many(a, "kv", "k", 6, "v", 0);
    assert_true(tn_sync(b, a) > 0);
    assert_true(tn_sync(a, b) > 0);
    g_now += 1000;
    tn_del(a, "k1");
    tn_del(b, "k2");
    g_now += 2 * TTL_MS;
    gc(a);
    gc(b);
    /* Both requests are built before either side re-syncs. */
    assert_int_equal(gsp_engine_begin(a->e, b->id, GSP_DUE_ROUND, &ma, &la, &xa, &err), 0);
    assert_int_equal(gsp_engine_begin(b->e, a->id, GSP_DUE_ROUND, &mb, &lb, &xb, &err), 0);
    assert_int_equal(gsp_engine_handle(b->e, ma, la, a->id, &rb, &lrb, &st, &err), 0);
    assert_int_equal(gsp_engine_handle(a->e, mb, lb, b->id, &ra, &lra, &st, &err), 0);
    assert_int_equal(contact(a, "resync"), 1);
    assert_int_equal(contact(b, "resync"), 1);
    assert_int_equal(gsp_engine_finish(a->e, xa, rb, lrb, &err), 0);
    assert_int_equal(gsp_engine_finish(b->e, xb, ra, lra, &err), 0);
    free(ma);
    free(mb);
    free(ra);
    free(rb);
    assert_int_equal(contact(b, "resync"), 0); /* "b.test:2" > "a.test:1": b yields */
    assert_int_equal(tn_stat(b, NULL, "resync_yields"), 1);
    assert_int_equal(contact(b, "armed"), 1);
    for (int round = 0; round < 4; round++) {
        assert_true(tn_sync(a, b) > 0);
        assert_true(tn_sync(b, a) > 0);
    }
    assert_int_equal(tn_stat(a, NULL, "resyncs"), 1);
    assert_int_equal(tn_stat(b, NULL, "resyncs"), 1);
    for (int i = 0; i < 2; i++) {
        assert_false(has_key(&v[i], "k1"));
        assert_false(has_key(&v[i], "k2"));
        assert_true(has_key(&v[i], "k0"));
        assert_true(has_key(&v[i], "k5"));
        assert_int_equal(contact(&v[i], "resync"), 0);
        assert_int_equal(contact(&v[i], "armed"), 0);
    }
    same_vv(a, b);
    tn_free(a);
    tn_free(b);
}

/* A new node joining long after the rows were written takes them all,
 * although they are older than the horizon. */
static void test_new_node_takes_old_rows(void **state)
{
    struct tnode v[2], *a = &v[0], *n = &v[1];

    (void)state;
    node(a, "a.test:1");
    node(n, "n.test:9");
    tn_open(a);
    tn_put_many(a, "kv", "old", 20, "v", 0);
    g_now += 10 * TTL_MS;
    tn_open(n);
    tn_seed(a, n);
    tn_seed(n, a);
    assert_int_equal(contact(n, "first_sync"), 1);
    assert_true(tn_sync(n, a) > 0);
    assert_int_equal(tn_count(n, "kv"), 20);
    assert_int_equal(contact(n, "first_sync"), 0);
    assert_int_equal(tn_stat(n, NULL, "resyncs"), 0);
    same_vv(a, n);
    tn_free(a);
    tn_free(n);
}

/* gsp_engine_maintain: GC at once, then every min(TTL/8, 10 min); the
 * stated GC mark travels to peers. */
static void test_maintain_gc(void **state)
{
    struct tnode v[2], *a = &v[0], *b = &v[1];
    uint64_t next;
    char *log;
    json_t *st, *pv;
    size_t i;

    (void)state;
    node(a, "a.test:1");
    node(b, "b.test:2");
    mesh(v, 2);
    tn_put(a, "x", "1");
    tn_del(a, "x");
    log_start();
    next = gsp_engine_maintain(a->e);
    assert_int_equal(next, g_now + TTL_MS / 8);
    assert_int_equal(tn_stat(a, NULL, "gc_runs"), 1);
    assert_int_equal(tn_stat(a, NULL, "gc_purged"), 0);
    assert_int_equal(gsp_engine_maintain(a->e), next); /* not due yet */
    g_now += TTL_MS + 1;
    next = gsp_engine_maintain(a->e);
    log = log_stop();
    assert_true(log_has_line(log, "INFO gossip: gc purged=1"));
    assert_null(strstr(log, "gc purged=0")); /* DEBUG only */
    free(log);
    assert_int_equal(tn_stat(a, NULL, "gc_runs"), 2);
    assert_int_equal(tn_stat(a, NULL, "gc_purged"), 1);
    assert_true(tn_sync(b, a) > 0);
    st = gsp_engine_status(b->e);
    json_array_foreach(json_object_get(st, "peers"), i, pv)
    {
        json_t *m = json_object_get(json_object_get(pv, "vv"), "~gc");
        assert_true(json_is_integer(m) && json_integer_value(m) > 0);
    }
    json_decref(st);
    tn_free(a);
    tn_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_node_resyncs),
        cmocka_unit_test(test_resync_begins_as_responder_and_survives_restart),
        cmocka_unit_test(test_no_resync_without_purges),
        cmocka_unit_test(test_mutual_resync),
        cmocka_unit_test(test_new_node_takes_old_rows),
        cmocka_unit_test(test_maintain_gc),
    };

    ut_log_set_level(UT_LOG_ERROR);
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
