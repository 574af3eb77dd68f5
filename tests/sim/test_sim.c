/*
 * test_sim.c - convergence of real gossip engines in the simulator
 * (tests/sim/sim.h): loss, duplication, reordering, partitions that heal,
 * restarts, clock skew (within and beyond the tolerance), paging, GC.
 *
 * Seeds are fixed; SIM_SEED=<n> replaces every scenario's seed (the seed
 * is printed with every result and in every failure). SIM_LOG=debug|info|
 * warn shows the engines' log lines; SIM_VERBOSE=1 the simulator's;
 * SIM_ONLY='*n100*' runs the matching tests only.
 * Under ASan the larger scenarios do less work (still N=100).
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "sim.h"
#include "util/log.h"

#if defined(__SANITIZE_ADDRESS__)
#define SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIM_ASAN 1
#endif
#endif
#ifdef SIM_ASAN
#define SCALE(normal, asan) (asan)
#else
#define SCALE(normal, asan) (normal)
#endif

static uint64_t seed_or_env(uint64_t def)
{
    const char *e = getenv("SIM_SEED");

    return e && *e ? strtoull(e, NULL, 0) : def;
}

static double wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The simulation of the running test: freed by the teardown when a
 * failure jumped out of the test (temp dirs, engines, writer threads). */
static struct sim *g_sim;

static int teardown(void **state)
{
    (void)state;
    sim_free(g_sim);
    g_sim = NULL;
    return 0;
}

static struct sim *start(struct sim_opts *o, const char *label)
{
    struct ut_err err = {{0}};
    struct sim *s = NULL;
    int rc;

    o->verbose = getenv("SIM_VERBOSE") && *getenv("SIM_VERBOSE");
    fprintf(stderr, "[sim %s] seed=%" PRIu64 " (SIM_SEED=%" PRIu64 " reproduces)\n", label, o->seed,
            o->seed);
    rc = sim_new(&s, o, &err);
    if (rc < 0) {
        sim_free(s);
        fail_msg("seed %" PRIu64 ": sim_new: %d: %s", o->seed, rc, err.msg);
    }
    g_sim = s;
    return s;
}

static void run(struct sim *s, uint64_t ms)
{
    struct ut_err err = {{0}};

    if (sim_run(s, ms, &err) < 0)
        fail_msg("seed %" PRIu64 ": sim_run: %s", sim_seed(s), err.msg);
}

static void workload(struct sim *s, unsigned ops, uint64_t ms, unsigned del_pct)
{
    struct ut_err err = {{0}};
    int rc = sim_workload(s, ops, ms, del_pct, &err);

    if (rc < 0)
        fail_msg("seed %" PRIu64 ": workload: %d: %s", sim_seed(s), rc, err.msg);
}

static void restart(struct sim *s, unsigned i, uint64_t down_ms)
{
    struct ut_err err = {{0}};

    if (sim_restart(s, i, down_ms, &err) < 0)
        fail_msg("seed %" PRIu64 ": restart: %s", sim_seed(s), err.msg);
}

/* Converges (fails the test otherwise), runs the full check, then lets
 * the cluster idle and checks again: quiescence changes nothing. */
static uint64_t converge_and_check(struct sim *s, uint64_t max_ms, int allow_purged,
                                   const char *label)
{
    struct ut_err err = {{0}};
    uint64_t took = 0;

    if (sim_converge(s, max_ms, &took, &err) < 0) {
        sim_print_stats(s, label);
        fail_msg("seed %" PRIu64 ": %s: %s", sim_seed(s), label, err.msg);
    }
    if (sim_check(s, allow_purged, &err) < 0) {
        sim_print_stats(s, label);
        fail_msg("seed %" PRIu64 ": %s: check after convergence: %s", sim_seed(s), label, err.msg);
    }
    run(s, 5 * sim_interval(s));
    if (sim_check(s, allow_purged, &err) < 0) {
        sim_print_stats(s, label);
        fail_msg("seed %" PRIu64 ": %s: check after quiescence: %s", sim_seed(s), label, err.msg);
    }
    fprintf(stderr, "[sim %s] converged %" PRIu64 " ms (%.1f intervals) after healing\n", label,
            took, (double)took / (double)sim_interval(s));
    return took;
}

static void finish(struct sim *s, const char *label, double t0)
{
    sim_print_stats(s, label);
    fprintf(stderr, "[sim %s] wall %.2f s\n", label, wall_s() - t0);
    sim_free(s);
    g_sim = NULL;
}

/* N=3, file stores: heavy loss/dup/reordering, restarts that close and
 * reopen the database, skew within tolerance. */
static void test_n3_lossy_restarts(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(3001),
                         .n = 3,
                         .topo = SIM_TOPO_MESH,
                         .file_stores = 1,
                         .sessions = 1,
                         .loss = 0.2,
                         .dup = 0.2,
                         .straggle = 0.05,
                         .n_keys = 16};
    double t0 = wall_s();
    struct sim *s = start(&o, "n3-lossy-restarts");
    struct sim_stats st;

    (void)state;
    sim_random_skew(s, 3000);
    workload(s, 150, 15000, 25);
    restart(s, 1, 3000); /* writes continue on the others meanwhile */
    workload(s, 100, 10000, 25);
    restart(s, 2, 0);
    restart(s, 0, 500);
    workload(s, 100, 10000, 25);
    converge_and_check(s, 120000, 0, "n3-lossy-restarts");
    sim_stats(s, &st);
    assert_true(st.lost > 0 && st.duplicated > 0 && st.restarts == 3);
    finish(s, "n3-lossy-restarts", t0);
}

/* N=3: one node's clock runs beyond the tolerance: its entries are
 * refused (and counted) until its clock is back and real time has caught
 * up with its stamps; then everything converges. */
static void test_n3_skew_beyond_tolerance(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(3002),
                         .n = 3,
                         .topo = SIM_TOPO_MESH,
                         .sessions = 1,
                         .max_skew_ms = 5000,
                         .loss = 0.05,
                         .n_keys = 16};
    double t0 = wall_s();
    struct sim *s = start(&o, "n3-skew");
    struct sim_stats st;
    struct ut_err err = {{0}};
    char key[16];

    (void)state;
    workload(s, 30, 3000, 20);
    converge_and_check(s, 60000, 0, "n3-skew (before)");
    sim_set_skew(s, 2, 20000); /* 20 s ahead, tolerance 5 s */
    for (unsigned i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "skewed%u", i);
        if (sim_write(s, 2, "kv", key, "from-the-future", 15, &err) < 0)
            fail_msg("seed %" PRIu64 ": write: %s", sim_seed(s), err.msg);
        run(s, 200);
    }
    workload(s, 40, 8000, 20);
    sim_stats(s, &st);
    fprintf(stderr,
            "[sim n3-skew] while skewed: hlc_refused=%" PRIu64 " engine_refusals=%" PRIu64 "\n",
            st.hlc_refused, st.engine_refusals);
    assert_true(st.hlc_refused > 0); /* crdt_apply refused the stamps, counted */
    assert_int_equal(sim_has_writes_of(s, 2, 0), 0);
    assert_int_equal(sim_has_writes_of(s, 2, 1), 0);
    sim_set_skew(s, 2, 0); /* the clock is back; its stamps stay ahead */
    converge_and_check(s, 120000, 0, "n3-skew (after)");
    assert_int_equal(sim_has_writes_of(s, 2, 0), 1);
    assert_int_equal(sim_has_writes_of(s, 2, 1), 1);
    finish(s, "n3-skew", t0);
}

/* N=10, configured peer URLs resolved through GSP_DUE_RESOLVE: a 5/5
 * partition with writes on both sides and a restart inside it, then a
 * random 3-way partition, heal; the network stays lossy throughout. */
static void test_n10_partitions(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(10001),
                         .n = 10,
                         .topo = SIM_TOPO_MESH_RESOLVE,
                         .sessions = 1,
                         .loss = 0.1,
                         .dup = 0.1,
                         .straggle = 0.02,
                         .n_keys = 32};
    int halves[10] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
    double t0 = wall_s();
    struct sim *s = start(&o, "n10-partitions");
    struct sim_stats st;

    (void)state;
    sim_random_skew(s, 3000);
    workload(s, 100, 5000, 20);
    sim_partition(s, halves);
    workload(s, 150, 10000, 20);
    restart(s, 7, 2000);
    workload(s, 150, 10000, 20);
    sim_partition_random(s, 3);
    workload(s, 100, 8000, 20);
    sim_heal(s);
    converge_and_check(s, 120000, 0, "n10-partitions");
    sim_stats(s, &st);
    assert_true(st.resolves > 0 && st.partitioned > 0 && st.lost > 0);
    finish(s, "n10-partitions", t0);
}

/* N=10 with a 1 KiB page: an isolated node comes back to a large backlog
 * that must stream in pages ("more"). */
static void test_n10_paging(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(10002),
                         .n = 10,
                         .topo = SIM_TOPO_MESH,
                         .sessions = 1,
                         .page_bytes = 1024,
                         .loss = 0.05,
                         .dup = 0.05,
                         .n_keys = 200};
    int g[10] = {0};
    double t0 = wall_s();
    struct sim *s = start(&o, "n10-paging");

    (void)state;
    g[3] = 1;
    sim_partition(s, g);
    workload(s, 400, 10000, 10);
    restart(s, 3, 1000);
    workload(s, 100, 5000, 10);
    sim_heal(s);
    converge_and_check(s, 120000, 0, "n10-paging");
    finish(s, "n10-paging", t0);
}

/* N=10, short tombstone TTL: deletes converge, GC purges the tombstones
 * everywhere, later writes converge again and no deleted key comes back
 * (a straggling old live entry is below the horizon). */
static void test_n10_gc(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(10003),
                         .n = 10,
                         .topo = SIM_TOPO_MESH,
                         .sessions = 1,
                         .tombstone_ttl_ms = 60000,
                         .loss = 0.1,
                         .dup = 0.1,
                         .straggle = 0.05,
                         .n_keys = 40};
    double t0 = wall_s();
    struct sim *s = start(&o, "n10-gc");
    struct ut_err err = {{0}};
    uint64_t purged = 0;

    (void)state;
    workload(s, 200, 8000, 50);
    converge_and_check(s, 120000, 0, "n10-gc (deletes)");
    run(s, 61000);
    if (sim_gc(s, &purged, &err) < 0)
        fail_msg("seed %" PRIu64 ": gc: %s", sim_seed(s), err.msg);
    fprintf(stderr, "[sim n10-gc] purged %" PRIu64 " rows\n", purged);
    assert_true(purged > 0);
    if (sim_check(s, 1, &err) < 0)
        fail_msg("seed %" PRIu64 ": after gc: %s", sim_seed(s), err.msg);
    workload(s, 100, 5000, 30);
    converge_and_check(s, 120000, 1, "n10-gc (after gc)");
    finish(s, "n10-gc", t0);
}

/* N=100, fan-out 2 of a pool of pinned neighbours: loss, duplication,
 * reordering, skew, a 3-way partition with restarts inside, heal. */
static void test_n100_fanout(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(100001),
                         .n = 100,
                         .topo = SIM_TOPO_FANOUT,
                         .fanout = 2,
                         .pool = 6,
                         .sessions = 1,
                         .loss = 0.1,
                         .dup = 0.05,
                         .straggle = 0.02,
                         .n_keys = 128};
    double t0 = wall_s();
    struct sim *s = start(&o, "n100-fanout");

    (void)state;
    sim_random_skew(s, 2000);
    workload(s, SCALE(200, 80), 5000, 20);
    sim_partition_random(s, 3);
    workload(s, SCALE(200, 80), 8000, 20);
    restart(s, 17, 2000);
    restart(s, 42, 0);
    restart(s, 99, 4000);
    workload(s, SCALE(100, 40), 5000, 20);
    sim_heal(s);
    workload(s, SCALE(50, 20), 2000, 20);
    converge_and_check(s, 300000, 0, "n100-fanout");
    finish(s, "n100-fanout", t0);
}

/* N=3, tombstone TTL 60 s: node 2, cut off, writes k while the others
 * delete k (later stamp) and, after the TTL, purge the tombstone. When
 * node 2 comes back its old live entry is below their GC horizon: they
 * must not take it (no resurrection). Node 2 was out of contact for longer
 * than the TTL and a peer states a GC mark newer than its last contact: it
 * re-syncs from that peer and drops k, which the peer no longer holds. */
static void test_n3_gc_horizon(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(3003),
                         .n = 3,
                         .topo = SIM_TOPO_MESH,
                         .sessions = 1,
                         .tombstone_ttl_ms = 60000,
                         .loss = 0.05};
    int g[3] = {0, 0, 1};
    double t0 = wall_s();
    struct sim *s = start(&o, "n3-gc-horizon");
    struct ut_err err = {{0}};
    uint64_t purged = 0, took = 0;

    (void)state;
    if (sim_write(s, 0, "kv", "k", "v0", 2, &err) < 0)
        fail_msg("seed %" PRIu64 ": %s", sim_seed(s), err.msg);
    converge_and_check(s, 60000, 0, "n3-gc-horizon (start)");
    sim_partition(s, g);
    if (sim_write(s, 2, "kv", "k", "v-from-the-cut-off-node", 23, &err) < 0)
        fail_msg("seed %" PRIu64 ": %s", sim_seed(s), err.msg);
    run(s, 1000);
    if (sim_write(s, 0, "kv", "k", NULL, 0, &err) < 0)
        fail_msg("seed %" PRIu64 ": %s", sim_seed(s), err.msg);
    run(s, 65000);
    if (sim_gc(s, &purged, &err) < 0)
        fail_msg("seed %" PRIu64 ": gc: %s", sim_seed(s), err.msg);
    assert_int_equal(sim_key_state(s, 0, "kv", "k"), -ENOENT);
    assert_int_equal(sim_key_state(s, 1, "kv", "k"), -ENOENT);
    sim_heal(s);
    if (sim_converge(s, 60000, &took, &err) < 0)
        fail_msg("seed %" PRIu64 ": %s", sim_seed(s), err.msg);
    run(s, 5000);
    assert_int_equal(sim_key_state(s, 0, "kv", "k"), -ENOENT);
    assert_int_equal(sim_key_state(s, 1, "kv", "k"), -ENOENT);
    assert_int_equal(sim_key_state(s, 2, "kv", "k"), -ENOENT); /* re-synced, dropped */
    if (sim_check(s, 1, &err) < 0)
        fail_msg("seed %" PRIu64 ": n3-gc-horizon: %s", sim_seed(s), err.msg);
    fprintf(stderr,
            "[sim n3-gc-horizon] purged %" PRIu64 "; after healing: k absent at n0000 and n0001 "
            "(old entry below the horizon ignored) and at n0002 (re-synced)\n",
            purged);
    finish(s, "n3-gc-horizon", t0);
}

/* A number at path "obj.key" of node i's status (-1 when absent). */
static long long status_num(struct sim *s, unsigned i, const char *obj, const char *key)
{
    json_t *st = sim_status(s, i);
    json_t *v = json_object_get(json_object_get(st, obj), key);
    long long n = json_is_integer(v)   ? (long long)json_integer_value(v)
                  : json_is_boolean(v) ? (long long)json_is_true(v)
                                       : -1;

    json_decref(st);
    return n;
}

static void must_write(struct sim *s, unsigned node, const char *key, const char *value)
{
    struct ut_err err = {{0}};

    if (sim_write(s, node, "kv", key, value, value ? strlen(value) : 0, &err) < 0)
        fail_msg("seed %" PRIu64 ": write %s: %s", sim_seed(s), key, err.msg);
}

/* N=3, tombstone TTL 60 s, file stores: node 2 is stopped; meanwhile a row
 * it holds is deleted on node 0, a row is created on node 1 and another
 * updated, and after the TTL nodes 0 and 1 purge the tombstone. Node 2
 * starts again (its last contact is older than the TTL): it must neither
 * keep the deleted row nor hand it back to the others, must get the row
 * created while it was away (older than the horizon by then), and the
 * cluster converges byte for byte. The others never re-sync. */
static void test_n3_stale_return(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(3004),
                         .n = 3,
                         .topo = SIM_TOPO_MESH,
                         .file_stores = 1,
                         .sessions = 1,
                         .tombstone_ttl_ms = 60000,
                         .loss = 0.1,
                         .dup = 0.05};
    double t0 = wall_s();
    struct sim *s = start(&o, "n3-stale-return");
    struct ut_err err = {{0}};
    uint64_t purged = 0;
    char key[16];

    (void)state;
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        must_write(s, (unsigned)i % 3, key, "v0");
    }
    converge_and_check(s, 60000, 0, "n3-stale-return (start)");
    restart(s, 2, 100000); /* down for 100 s */
    must_write(s, 0, "k3", NULL);
    must_write(s, 1, "k5", "v1");
    must_write(s, 1, "fresh", "made-while-n0002-was-away");
    run(s, 65000);
    if (sim_gc(s, &purged, &err) < 0)
        fail_msg("seed %" PRIu64 ": gc: %s", sim_seed(s), err.msg);
    assert_true(purged > 0);
    assert_int_equal(sim_key_state(s, 0, "kv", "k3"), -ENOENT);
    assert_int_equal(sim_key_state(s, 1, "kv", "k3"), -ENOENT);
    run(s, 40000); /* node 2 is back */
    assert_true(sim_is_up(s, 2));
    converge_and_check(s, 120000, 1, "n3-stale-return (back)");
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(sim_key_state(s, i, "kv", "k3"), -ENOENT);
        assert_int_equal(sim_key_state(s, i, "kv", "fresh"), 1);
        assert_int_equal(sim_key_state(s, i, "kv", "k7"), 1);
    }
    assert_int_equal(status_num(s, 2, "totals", "resyncs"), 1);
    assert_true(status_num(s, 2, "totals", "resync_dropped") >= 1);
    assert_int_equal(status_num(s, 2, "contact", "resync"), 0);
    assert_int_equal(status_num(s, 2, "contact", "armed"), 0);
    for (unsigned i = 0; i < 2; i++) {
        assert_int_equal(status_num(s, i, "totals", "resyncs"), 0);
        assert_int_equal(status_num(s, i, "contact", "armed"), 0);
    }
    /* New writes everywhere still converge (node 2's counter went on). */
    workload(s, 60, 3000, 20);
    converge_and_check(s, 120000, 1, "n3-stale-return (after)");
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(sim_key_state(s, i, "kv", "k3") == 1,
                         sim_key_state(s, 0, "kv", "k3") == 1);
    finish(s, "n3-stale-return", t0);
}

/* N=3, TTL 60 s: the whole cluster stops for longer than the TTL after
 * deletes were replicated everywhere, and starts again. Every node is out
 * of contact for longer than the TTL, but no peer purged anything another
 * missed: nobody re-syncs, nothing is dropped, GC purges the old
 * tombstones, everything converges. */
static void test_n3_all_down(void **state)
{
    struct sim_opts o = {.seed = seed_or_env(3005),
                         .n = 3,
                         .topo = SIM_TOPO_MESH,
                         .file_stores = 1,
                         .sessions = 1,
                         .tombstone_ttl_ms = 60000,
                         .n_keys = 24};
    double t0 = wall_s();
    struct sim *s = start(&o, "n3-all-down");
    struct ut_err err = {{0}};
    uint64_t purged = 0;

    (void)state;
    workload(s, 80, 4000, 30);
    converge_and_check(s, 60000, 0, "n3-all-down (start)");
    for (unsigned i = 0; i < 3; i++)
        restart(s, i, 90000 + 1000 * i);
    run(s, 95000);
    if (sim_gc(s, &purged, &err) < 0)
        fail_msg("seed %" PRIu64 ": gc: %s", sim_seed(s), err.msg);
    converge_and_check(s, 60000, 1, "n3-all-down (back)");
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(status_num(s, i, "totals", "resyncs"), 0);
        assert_int_equal(status_num(s, i, "contact", "resync"), 0);
        assert_int_equal(status_num(s, i, "contact", "armed"), 0);
    }
    fprintf(stderr, "[sim n3-all-down] purged %" PRIu64 " old tombstones after the restart\n",
            purged);
    finish(s, "n3-all-down", t0);
}

static uint64_t mix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One random scenario from seed: topology, sessions, page size, network
 * quality, skew, and a sequence of partitions, heals, restarts and loss
 * changes interleaved with writes; then heal, converge, check. */
static void chaos_one(uint64_t seed)
{
    uint64_t r = seed;
    struct sim_opts o = {.seed = seed};
    struct sim *s;
    char label[48];
    unsigned phases;

    o.n = 3 + (unsigned)(mix(&r) % 5); /* 3..7 */
    o.topo = mix(&r) % 2 ? SIM_TOPO_MESH : SIM_TOPO_MESH_RESOLVE;
    o.file_stores = mix(&r) % 4 == 0;
    o.sessions = mix(&r) % 3 != 0;
    o.page_bytes = mix(&r) % 3 == 0 ? 1024 + (size_t)(mix(&r) % 4096) : 0;
    o.loss = (double)(mix(&r) % 30) / 100;
    o.dup = (double)(mix(&r) % 20) / 100;
    o.straggle = (double)(mix(&r) % 5) / 100;
    o.n_keys = 4 + (unsigned)(mix(&r) % 40);
    snprintf(label, sizeof(label), "chaos-%" PRIu64, seed);
    s = start(&o, label);
    sim_random_skew(s, (int64_t)(mix(&r) % 5000));
    phases = 3 + (unsigned)(mix(&r) % 5);
    for (unsigned p = 0; p < phases; p++) {
        switch (mix(&r) % 5) {
        case 0:
            sim_partition_random(s, 2 + (unsigned)(mix(&r) % 2));
            break;
        case 1:
            sim_heal(s);
            break;
        case 2: {
            unsigned i = (unsigned)(mix(&r) % o.n);
            if (sim_is_up(s, i))
                restart(s, i, mix(&r) % 4000);
            break;
        }
        case 3:
            sim_set_loss(s, (double)(mix(&r) % 40) / 100, (double)(mix(&r) % 30) / 100,
                         (double)(mix(&r) % 10) / 100);
            break;
        default:
            sim_random_skew(s, (int64_t)(mix(&r) % 5000));
            break;
        }
        workload(s, 10 + (unsigned)(mix(&r) % 60), 1000 + mix(&r) % 6000, (unsigned)(mix(&r) % 50));
    }
    sim_heal(s);
    converge_and_check(s, 180000, 0, label);
    sim_free(s);
    g_sim = NULL;
}

/* Many short random scenarios with small N: rare interleavings. */
static void test_chaos_seeds(void **state)
{
    const char *env = getenv("SIM_SEED");
    unsigned count = SCALE(40, 12);
    double t0 = wall_s();

    (void)state;
    if (env != NULL && *env) {
        chaos_one(strtoull(env, NULL, 0));
        return;
    }
    for (unsigned i = 0; i < count; i++)
        chaos_one(50000 + i);
    fprintf(stderr, "[sim chaos] %u scenarios, wall %.2f s\n", count, wall_s() - t0);
}

int main(void)
{
    const char *lvl = getenv("SIM_LOG");
    enum ut_log_level l = UT_LOG_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_n3_lossy_restarts, teardown),
        cmocka_unit_test_teardown(test_n3_skew_beyond_tolerance, teardown),
        cmocka_unit_test_teardown(test_n10_partitions, teardown),
        cmocka_unit_test_teardown(test_n10_paging, teardown),
        cmocka_unit_test_teardown(test_n10_gc, teardown),
        cmocka_unit_test_teardown(test_n3_gc_horizon, teardown),
        cmocka_unit_test_teardown(test_n3_stale_return, teardown),
        cmocka_unit_test_teardown(test_n3_all_down, teardown),
        cmocka_unit_test_teardown(test_chaos_seeds, teardown),
        cmocka_unit_test_teardown(test_n100_fanout, teardown),
    };

    if (getenv("SIM_ONLY") != NULL) /* e.g. SIM_ONLY='*n100*' */
        cmocka_set_test_filter(getenv("SIM_ONLY"));
    if (lvl != NULL && ut_log_level_parse(lvl, &l) < 0)
        l = UT_LOG_ERROR;
    ut_log_set_level(l);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
