/*
 * Unit tests for the hybrid logical clock (lib/crdt/hlc.c). The wall clock
 * is injected: no test depends on real time.
 */
#include <pthread.h>

#include "crdt_test.h"

static struct crdt_hlc *hlc_at(struct vclock *c, uint64_t ms, uint64_t skew)
{
    struct crdt_hlc *h = NULL;

    atomic_store(&c->ms, ms);
    assert_int_equal(crdt_hlc_new(&h, vclock_fn, c, skew), 0);
    return h;
}

static void test_stuck_clock_counts(void **state)
{
    struct vclock c;
    struct crdt_hlc *h = hlc_at(&c, T0, 0);
    uint64_t prev = 0, s;

    (void)state;
    for (int i = 0; i < 1000; i++) {
        s = crdt_hlc_now(h);
        assert_true(s > prev);
        assert_int_equal(CRDT_HLC_MS(s), T0);
        assert_int_equal(s & 0xffff, (uint64_t)i);
        prev = s;
    }
    /* The wall clock moves on: counter back to 0. */
    atomic_store(&c.ms, T0 + 1);
    assert_int_equal(crdt_hlc_now(h), CRDT_HLC_MAKE(T0 + 1, 0));
    assert_int_equal(crdt_hlc_wall_ms(h), T0 + 1);
    crdt_hlc_free(h);
}

static void test_backwards_clock(void **state)
{
    struct vclock c;
    struct crdt_hlc *h = hlc_at(&c, T0, 0);
    uint64_t a, b, d;

    (void)state;
    a = crdt_hlc_now(h);
    atomic_store(&c.ms, T0 - 5000); /* NTP step back */
    b = crdt_hlc_now(h);
    assert_true(b > a);
    assert_int_equal(CRDT_HLC_MS(b), T0);
    atomic_store(&c.ms, 0); /* absurd */
    d = crdt_hlc_now(h);
    assert_true(d > b);
    crdt_hlc_free(h);
}

static void test_counter_overflow(void **state)
{
    struct vclock c;
    struct crdt_hlc *h = hlc_at(&c, T0, 0);
    uint64_t s = 0, prev = 0;

    (void)state;
    for (uint32_t i = 0; i < 65536; i++) {
        s = crdt_hlc_now(h);
        assert_true(s > prev);
        prev = s;
    }
    assert_int_equal(s, CRDT_HLC_MAKE(T0, 0xffff));
    /* 65537th stamp in the same ms rolls into the next millisecond. */
    s = crdt_hlc_now(h);
    assert_int_equal(s, CRDT_HLC_MAKE(T0 + 1, 0));
    /* When the wall clock reaches that ms, the counter keeps going. */
    atomic_store(&c.ms, T0 + 1);
    assert_int_equal(crdt_hlc_now(h), CRDT_HLC_MAKE(T0 + 1, 1));
    atomic_store(&c.ms, T0 + 5);
    assert_int_equal(crdt_hlc_now(h), CRDT_HLC_MAKE(T0 + 5, 0));
    crdt_hlc_free(h);
}

static void test_observe_adopts(void **state)
{
    struct vclock c;
    struct crdt_hlc *h = hlc_at(&c, T0, 1000);
    uint64_t remote = CRDT_HLC_MAKE(T0 + 999, 7), s;

    (void)state;
    assert_int_equal(crdt_hlc_observe(h, remote), 0);
    s = crdt_hlc_now(h);
    assert_int_equal(s, remote + 1);
    /* An older remote stamp changes nothing. */
    assert_int_equal(crdt_hlc_observe(h, CRDT_HLC_MAKE(T0 - 10, 0)), 0);
    assert_int_equal(crdt_hlc_now(h), s + 1);
    /* Exactly at the tolerance: adopted. */
    assert_int_equal(crdt_hlc_observe(h, CRDT_HLC_MAKE(T0 + 1000, 0xffff)), 0);
    assert_int_equal(crdt_hlc_now(h), CRDT_HLC_MAKE(T0 + 1001, 0));
    assert_int_equal(crdt_hlc_refused(h), 0);
    crdt_hlc_free(h);
}

static void test_observe_refuses_skew(void **state)
{
    struct vclock c;
    struct crdt_hlc *h = hlc_at(&c, T0, 1000);
    struct crdt_hlc *d = hlc_at(&c, T0, 0);

    (void)state;
    assert_int_equal(crdt_hlc_observe(h, CRDT_HLC_MAKE(T0 + 1001, 0)), -ERANGE);
    assert_int_equal(crdt_hlc_refused(h), 1);
    assert_int_equal(crdt_hlc_observe(h, UINT64_MAX), -ERANGE);
    assert_int_equal(crdt_hlc_observe(h, UINT64_C(1) << 63), -ERANGE);
    assert_int_equal(crdt_hlc_refused(h), 3);
    /* Nothing was adopted. */
    assert_int_equal(crdt_hlc_now(h), CRDT_HLC_MAKE(T0, 0));
    /* Default tolerance (CRDT_DEF_MAX_SKEW_MS). */
    assert_int_equal(crdt_hlc_observe(d, CRDT_HLC_MAKE(T0 + CRDT_DEF_MAX_SKEW_MS, 0)), 0);
    assert_int_equal(crdt_hlc_observe(d, CRDT_HLC_MAKE(T0 + CRDT_DEF_MAX_SKEW_MS + 1, 0)), -ERANGE);
    assert_int_equal(crdt_hlc_refused(d), 1);
    crdt_hlc_free(h);
    crdt_hlc_free(d);
}

static void test_new_args(void **state)
{
    struct crdt_hlc *h = NULL;
    uint64_t a, b;

    (void)state;
    assert_int_equal(crdt_hlc_new(NULL, NULL, NULL, 0), -EINVAL);
    assert_int_equal(crdt_hlc_new(&h, NULL, NULL, UINT64_MAX), -EINVAL);
    assert_null(h);
    /* Real clock: plausible and monotonic. */
    assert_int_equal(crdt_hlc_new(&h, NULL, NULL, 0), 0);
    a = crdt_hlc_now(h);
    b = crdt_hlc_now(h);
    assert_true(b > a);
    assert_true(CRDT_HLC_MS(a) > T0);
    crdt_hlc_free(h);
    crdt_hlc_free(NULL);
}

#define TH_N    4
#define TH_EACH 40000

struct th_arg {
    struct crdt_hlc *h;
    uint64_t *out;
};

static void *th_main(void *arg)
{
    struct th_arg *t = arg;

    for (int i = 0; i < TH_EACH; i++)
        t->out[i] = crdt_hlc_now(t->h);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Threads on a stuck clock: every stamp unique, each thread's increasing. */
static void test_threads_unique(void **state)
{
    struct vclock c;
    struct crdt_hlc *h = hlc_at(&c, T0, 0);
    uint64_t *all = calloc(TH_N * TH_EACH, sizeof(*all));
    pthread_t th[TH_N];
    struct th_arg a[TH_N];

    (void)state;
    assert_non_null(all);
    for (int i = 0; i < TH_N; i++) {
        a[i] = (struct th_arg){h, all + (size_t)i * TH_EACH};
        assert_int_equal(pthread_create(&th[i], NULL, th_main, &a[i]), 0);
    }
    for (int i = 0; i < TH_N; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < TH_N; i++) {
        for (int k = 1; k < TH_EACH; k++)
            assert_true(a[i].out[k] > a[i].out[k - 1]);
    }
    qsort(all, TH_N * TH_EACH, sizeof(*all), cmp_u64);
    for (size_t k = 1; k < TH_N * TH_EACH; k++) {
        if (all[k] == all[k - 1])
            fail_msg("stamp %llu handed out twice", (unsigned long long)all[k]);
    }
    /* 160000 stamps in one ms: the counter carried into later ms. */
    assert_int_equal(all[TH_N * TH_EACH - 1], CRDT_HLC_MAKE(T0, 0) + TH_N * TH_EACH - 1);
    free(all);
    crdt_hlc_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stuck_clock_counts),   cmocka_unit_test(test_backwards_clock),
        cmocka_unit_test(test_counter_overflow),     cmocka_unit_test(test_observe_adopts),
        cmocka_unit_test(test_observe_refuses_skew), cmocka_unit_test(test_new_args),
        cmocka_unit_test(test_threads_unique),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
