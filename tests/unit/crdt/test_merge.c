/*
 * Property tests of the merge (crdt_apply): random entries applied in
 * random orders, with duplicates, to several replicas end byte-identical
 * and equal to the greatest-(hlc, origin) entry of each key; idempotence,
 * commutativity and associativity checked explicitly.
 *
 * The PRNG seed is printed on every failure; CRDT_SEED=<n> replays one.
 */
#include <time.h>
#include <unistd.h>

#include "crdt_test.h"

static uint64_t g_seed;
static uint64_t g_rng;

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (g_rng += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_error("seed=%llu (replay with CRDT_SEED=%llu)\n", (unsigned long long)g_seed,    \
                        (unsigned long long)g_seed);                                               \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

static int seed_setup(void **state)
{
    const char *env = getenv("CRDT_SEED");

    (void)state;
    g_seed = env != NULL ? strtoull(env, NULL, 10)
                         : ((uint64_t)time(NULL) * 1000003u) ^ (uint64_t)getpid();
    g_rng = g_seed;
    return 0;
}

/* ---- random entries ---- */

static const char *const origins[] = {"a", "ab", "b", "node-c:8443"};
#define N_ORIGINS 4

struct gen {
    struct elist l;
    uint64_t seq[N_ORIGINS];
};

static int same_write(const struct oentry *x, const struct oentry *y)
{
    return strcmp(x->tbl, y->tbl) == 0 && strcmp(x->key, y->key) == 0 && x->hlc == y->hlc &&
           strcmp(x->origin, y->origin) == 0;
}

/* (hlc, origin) order of the contract: >0 when x wins over y. */
static int cmp_write(const struct oentry *x, const struct oentry *y)
{
    if (x->hlc != y->hlc)
        return x->hlc > y->hlc ? 1 : -1;
    return strcmp(x->origin, y->origin);
}

/* n distinct writes over n_keys keys of "kv" (LWW, tombstones included)
 * and "revoked" (grow-only). Stamps are crowded into a few ms so equal
 * hlcs with different origins are common. */
static void gen_entries(struct gen *g, size_t n, size_t n_keys)
{
    char key[32], val[64];

    memset(g, 0, sizeof(*g));
    while (g->l.n < n) {
        struct crdt_entry e = {0};
        size_t o = rnd_below(N_ORIGINS), vk;
        uint8_t bin[8];
        int dup = 0;

        e.tbl = rnd_below(4) == 0 ? "revoked" : "kv";
        snprintf(key, sizeof(key), "k%zu", rnd_below(n_keys));
        if (rnd_below(8) == 0)
            snprintf(key, sizeof(key), "k\xc3\xa9%zu\x01", rnd_below(n_keys)); /* not ASCII */
        e.key = key;
        e.hlc = CRDT_HLC_MAKE(T0 - rnd_below(6), rnd_below(3));
        e.origin = origins[o];
        e.seq = g->seq[o] + 1;
        e.deleted = strcmp(e.tbl, "kv") == 0 && rnd_below(4) == 0;
        e.expires = strcmp(e.tbl, "revoked") == 0 ? (int64_t)(T0 + 86400000) : 0;
        if (!e.deleted) {
            vk = rnd_below(4);
            if (vk == 0) { /* binary, with a NUL */
                for (size_t i = 0; i < sizeof(bin); i++)
                    bin[i] = (uint8_t)rnd();
                bin[3] = 0;
                e.value = bin;
                e.value_len = sizeof(bin);
            } else if (vk == 1) {
                e.value = (const uint8_t *)"";
                e.value_len = 0;
            } else {
                snprintf(val, sizeof(val), "{\"v\":%llu,\"s\":\"\xe2\x82\xac\"}",
                         (unsigned long long)(rnd() % 1000));
                e.value = (const uint8_t *)val;
                e.value_len = strlen(val);
            }
        }
        {
            struct oentry probe = {
                .tbl = (char *)e.tbl, .key = key, .origin = (char *)e.origin, .hlc = e.hlc};

            for (size_t i = 0; i < g->l.n && !dup; i++)
                dup = same_write(&g->l.v[i], &probe);
        }
        if (dup)
            continue; /* (hlc, origin) names one write: keep them unique */
        g->seq[o]++;
        elist_add(&e, &g->l);
    }
}

/* The winner per (tbl, key): index into l, or SIZE_MAX for losers. */
static void winners(const struct elist *l, size_t *win)
{
    for (size_t i = 0; i < l->n; i++) {
        win[i] = i;
        for (size_t k = 0; k < l->n; k++) {
            if (k != i && strcmp(l->v[i].tbl, l->v[k].tbl) == 0 &&
                strcmp(l->v[i].key, l->v[k].key) == 0 && cmp_write(&l->v[k], &l->v[i]) > 0) {
                win[i] = SIZE_MAX;
                break;
            }
        }
    }
}

static struct crdt_entry *views(const struct elist *l)
{
    struct crdt_entry *e = calloc(l->n + 1, sizeof(*e));

    assert_non_null(e);
    for (size_t i = 0; i < l->n; i++)
        e[i] = oentry_view(&l->v[i]);
    return e;
}

/* Applies e[order[0..n)] in jobs of random sizes; returns the results. */
static void apply_order(struct rep *p, const struct crdt_entry *e, const size_t *order, size_t n,
                        int *results)
{
    struct ut_err err = {{0}};
    size_t done = 0;

    while (done < n) {
        size_t chunk = 1 + rnd_below(n - done);
        struct apply_arg a = {.e = e, .n = chunk, .order = order + done, .results = results + done};
        int rc = rep_run(p, apply_body, &a, &err);

        CHECK(rc == 0, "apply on %s: %d %s", p->origin, rc, err.msg);
        done += chunk;
    }
}

/* A random order of 0..n-1 plus extra random duplicates. */
static size_t *shuffled_with_dups(size_t n, size_t extra, size_t *out_n)
{
    size_t *o = malloc((n + extra) * sizeof(*o));

    assert_non_null(o);
    for (size_t i = 0; i < n; i++)
        o[i] = i;
    for (size_t i = 0; i < extra; i++)
        o[n + i] = rnd_below(n);
    for (size_t i = n + extra; i > 1; i--) {
        size_t j = rnd_below(i), t = o[i - 1];

        o[i - 1] = o[j];
        o[j] = t;
    }
    *out_n = n + extra;
    return o;
}

/* The replica holds exactly the winners, field by field. */
static void check_winners(struct rep *p, const struct elist *l, const size_t *win)
{
    struct ut_err err = {{0}};
    sqlite3 *db = rep_reader(p);
    sqlite3_stmt *st;
    size_t n_win = 0;

    st = store_stmt(p->s, db,
                    "SELECT value, hlc, origin, seq, deleted, expires FROM crdt_rows"
                    " WHERE tbl = ?1 AND key = ?2",
                    &err);
    assert_non_null(st);
    for (size_t i = 0; i < l->n; i++) {
        const struct oentry *w = &l->v[i];
        const void *v;
        size_t vn;

        if (win[i] == SIZE_MAX)
            continue;
        n_win++;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, w->tbl, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, w->key, -1, SQLITE_STATIC);
        CHECK(sqlite3_step(st) == SQLITE_ROW, "%s: %s/%s missing", p->origin, w->tbl, w->key);
        CHECK((uint64_t)sqlite3_column_int64(st, 1) == w->hlc &&
                  strcmp((const char *)sqlite3_column_text(st, 2), w->origin) == 0 &&
                  (uint64_t)sqlite3_column_int64(st, 3) == w->seq &&
                  sqlite3_column_int(st, 4) == w->deleted &&
                  sqlite3_column_int64(st, 5) == w->expires,
              "%s: %s/%s is not the greatest (hlc, origin) entry (want %llu/%s)", p->origin, w->tbl,
              w->key, (unsigned long long)w->hlc, w->origin);
        v = sqlite3_column_blob(st, 0);
        vn = (size_t)sqlite3_column_bytes(st, 0);
        if (w->deleted)
            CHECK(sqlite3_column_type(st, 0) == SQLITE_NULL, "%s: tombstone with a value", w->key);
        else
            CHECK(vn == w->value_len && (vn == 0 || memcmp(v, w->value, vn) == 0),
                  "%s: %s/%s value differs", p->origin, w->tbl, w->key);
    }
    sqlite3_reset(st);
    CHECK((size_t)rep_q(p, "SELECT count(*) FROM crdt_rows") == n_win, "%s: %lld rows, want %zu",
          p->origin, rep_q(p, "SELECT count(*) FROM crdt_rows"), n_win);
}

#define REPLICAS 4
#define ROUNDS   40

/* Random orders with duplicates on several replicas converge to the
 * winners; a second full pass is a no-op (idempotence). */
static void test_convergence(void **state)
{
    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        struct gen g;
        size_t n = 20 + rnd_below(60), n_keys = 1 + rnd_below(12), *win, *order, n_order;
        struct rep *r[REPLICAS];
        struct crdt_entry *e;
        char *dump0 = NULL;
        int *res;

        gen_entries(&g, n, n_keys);
        e = views(&g.l);
        win = calloc(n, sizeof(*win));
        res = calloc(2 * n + 1, sizeof(*res));
        assert_true(win != NULL && res != NULL);
        winners(&g.l, win);
        for (int k = 0; k < REPLICAS; k++) {
            char name[16];

            snprintf(name, sizeof(name), "r%d", k);
            r[k] = rep_new(name, 0);
            order = shuffled_with_dups(n, rnd_below(n + 1), &n_order);
            apply_order(r[k], e, order, n_order, res);
            free(order);
            check_winners(r[k], &g.l, win);
            if (k == 0) {
                dump0 = rep_dump(r[0]);
            } else {
                char *d = rep_dump(r[k]);

                CHECK(strcmp(d, dump0) == 0, "round %d: replica %d differs:\n%s\nvs\n%s", round, k,
                      d, dump0);
                free(d);
            }
        }
        /* Idempotence: everything again changes nothing. */
        order = shuffled_with_dups(n, 0, &n_order);
        apply_order(r[1], e, order, n_order, res);
        free(order);
        for (size_t i = 0; i < n; i++)
            CHECK(res[i] == CRDT_OLDER, "round %d: re-applied entry gave %d", round, res[i]);
        {
            char *d = rep_dump(r[1]);

            CHECK(strcmp(d, dump0) == 0, "round %d: re-applying changed the state", round);
            free(d);
        }
        for (int k = 0; k < REPLICAS; k++)
            rep_free(r[k]);
        free(dump0);
        free(res);
        free(win);
        free(e);
        elist_free(&g.l);
    }
}

/* a then b and b then a, for every pair of entries on the same key. */
static void test_commutative(void **state)
{
    struct gen g;
    struct crdt_entry *e;
    int pairs = 0;

    (void)state;
    gen_entries(&g, 40, 3);
    e = views(&g.l);
    for (size_t i = 0; i < g.l.n && pairs < 60; i++) {
        for (size_t k = i + 1; k < g.l.n && pairs < 60; k++) {
            size_t ab[2] = {i, k}, ba[2] = {k, i};
            struct rep *x, *y;
            char *dx, *dy;
            int res[2];

            if (strcmp(e[i].tbl, e[k].tbl) != 0 || strcmp(e[i].key, e[k].key) != 0)
                continue;
            pairs++;
            x = rep_new("x", 0);
            y = rep_new("y", 0);
            apply_order(x, e, ab, 2, res);
            apply_order(y, e, ba, 2, res);
            dx = rep_dump(x);
            dy = rep_dump(y);
            CHECK(strcmp(dx, dy) == 0, "a;b != b;a for entries %zu, %zu:\n%s\nvs\n%s", i, k, dx,
                  dy);
            free(dx);
            free(dy);
            rep_free(x);
            rep_free(y);
        }
    }
    assert_true(pairs > 0);
    free(e);
    elist_free(&g.l);
}

/* (A ⊔ B) ⊔ C == A ⊔ (B ⊔ C) for random sets A, B, C, where "⊔ state"
 * merges a replica's whole state through crdt_scan. */
static void test_associative(void **state)
{
    (void)state;
    for (int round = 0; round < ROUNDS; round++) {
        struct gen g;
        struct crdt_entry *e;
        size_t n = 30 + rnd_below(30), idx[3][64], cnt[3] = {0, 0, 0};
        struct rep *x, *bc, *z;
        char *dx, *dz;
        int res[64];

        gen_entries(&g, n, 1 + rnd_below(6));
        e = views(&g.l);
        for (size_t i = 0; i < n; i++) {
            size_t s = rnd_below(3);

            idx[s][cnt[s]++] = i;
        }
        x = rep_new("x", 0);
        bc = rep_new("bc", 0);
        z = rep_new("z", 0);
        /* x = (A ⊔ B) ⊔ C */
        apply_order(x, e, idx[0], cnt[0], res);
        apply_order(x, e, idx[1], cnt[1], res);
        apply_order(x, e, idx[2], cnt[2], res);
        /* z = A ⊔ (B ⊔ C) */
        apply_order(bc, e, idx[1], cnt[1], res);
        apply_order(bc, e, idx[2], cnt[2], res);
        apply_order(z, e, idx[0], cnt[0], res);
        rep_merge_from(z, bc);
        dx = rep_dump(x);
        dz = rep_dump(z);
        CHECK(strcmp(dx, dz) == 0, "round %d: (A+B)+C != A+(B+C):\n%s\nvs\n%s", round, dx, dz);
        /* And merging states both ways converges. */
        rep_merge_from(bc, z);
        free(dz);
        dz = rep_dump(bc);
        CHECK(strcmp(dx, dz) == 0, "round %d: state merge did not converge", round);
        free(dx);
        free(dz);
        rep_free(x);
        rep_free(bc);
        rep_free(z);
        free(e);
        elist_free(&g.l);
    }
}

/* A single-key torture: many writes for one key, every order wins the same. */
static void test_single_key_orders(void **state)
{
    struct gen g;
    struct crdt_entry *e;
    size_t win[40], *order, n_order;
    char *first = NULL;
    int res[80];

    (void)state;
    gen_entries(&g, 40, 1);
    e = views(&g.l);
    winners(&g.l, win);
    for (int k = 0; k < 6; k++) {
        struct rep *p = rep_new("p", 0);
        char *d;

        order = shuffled_with_dups(g.l.n, rnd_below(40), &n_order);
        apply_order(p, e, order, n_order, res);
        free(order);
        check_winners(p, &g.l, win);
        d = rep_dump(p);
        if (first == NULL)
            first = d;
        else {
            CHECK(strcmp(d, first) == 0, "order %d differs", k);
            free(d);
        }
        rep_free(p);
    }
    free(first);
    free(e);
    elist_free(&g.l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_convergence, seed_setup),
        cmocka_unit_test_setup(test_commutative, seed_setup),
        cmocka_unit_test_setup(test_associative, seed_setup),
        cmocka_unit_test_setup(test_single_key_orders, seed_setup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
