/*
 * crdt_test.h - helpers shared by the lib/crdt tests: replicas on
 * "sqlite::memory:" stores with an injected virtual clock, write jobs, and
 * reads and dumps through the store's readers.
 *
 * Every helper is static inline so each test binary takes what it uses.
 */
#ifndef CRDT_TEST_H
#define CRDT_TEST_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "crdt/crdt.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/err.h"

/* Virtual wall clock (unix ms), moved by the test. */
struct vclock {
    _Atomic uint64_t ms;
};

static inline uint64_t vclock_fn(void *arg)
{
    return atomic_load(&((struct vclock *)arg)->ms);
}

#define T0 UINT64_C(1700000000000) /* a realistic unix ms start */

struct rep {
    struct store *s;
    struct crdt_replica *r;
    struct vclock clk;
    char origin[CRDT_ORIGIN_MAX + 2];
};

static inline int rep_open_full(struct rep **out, const char *url, const char *origin,
                                const struct crdt_table_def *t, size_t n, uint64_t ttl_ms,
                                uint64_t skew_ms, struct ut_err *err)
{
    struct store_opts so = {.url = url};
    struct rep *p = calloc(1, sizeof(*p));
    struct crdt_opts o = {0};
    int rc;

    assert_non_null(p);
    atomic_store(&p->clk.ms, T0);
    snprintf(p->origin, sizeof(p->origin), "%s", origin);
    rc = store_open(&p->s, &so, err);
    if (rc < 0) {
        free(p);
        return rc;
    }
    o.origin = p->origin;
    o.tables = t;
    o.n_tables = n;
    o.tombstone_ttl_ms = ttl_ms;
    o.max_skew_ms = skew_ms;
    o.clock = vclock_fn;
    o.clock_arg = &p->clk;
    rc = crdt_replica_open(&p->r, p->s, &o, err);
    if (rc < 0) {
        store_close(p->s);
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

static const struct crdt_table_def test_tables[] = {
    {"kv", CRDT_LWW},
    {"sessions", CRDT_LWW},
    {"revoked", CRDT_GROW_ONLY},
};
#define N_TEST_TABLES (sizeof(test_tables) / sizeof(test_tables[0]))

/* A memory replica with the test tables, TTL ttl_ms (0: default). */
static inline struct rep *rep_new(const char *origin, uint64_t ttl_ms)
{
    struct ut_err err = {{0}};
    struct rep *p = NULL;
    int rc =
        rep_open_full(&p, "sqlite::memory:", origin, test_tables, N_TEST_TABLES, ttl_ms, 0, &err);

    if (rc != 0)
        fail_msg("rep_open %s: %d %s", origin, rc, err.msg);
    return p;
}

static inline void rep_free(struct rep *p)
{
    if (p == NULL)
        return;
    crdt_replica_free(p->r);
    store_close(p->s);
    free(p);
}

static inline void rep_set_time(struct rep *p, uint64_t ms)
{
    atomic_store(&p->clk.ms, ms);
}

/* ---- jobs ---- */

typedef int (*rep_body)(struct rep *p, sqlite3 *db, void *arg, struct ut_err *err);

struct rep_job {
    struct rep *p;
    rep_body fn;
    void *arg;
};

static inline int rep_job_tramp(sqlite3 *db, void *a, struct ut_err *err)
{
    struct rep_job *j = a;

    return j->fn(j->p, db, j->arg, err);
}

static inline int rep_run(struct rep *p, rep_body fn, void *arg, struct ut_err *err)
{
    struct rep_job j = {p, fn, arg};

    return store_write(p->s, rep_job_tramp, &j, err);
}

struct put_arg {
    const char *tbl, *key;
    const void *value;
    size_t len;
    int64_t expires;
    int del;
    int fail_after; /* return -ECANCELED after a successful write */
};

static inline int put_body(struct rep *p, sqlite3 *db, void *a, struct ut_err *err)
{
    struct put_arg *x = a;
    int rc = x->del ? crdt_delete(p->r, db, x->tbl, x->key, err)
                    : crdt_put(p->r, db, x->tbl, x->key, x->value, x->len, x->expires, err);

    if (rc == 0 && x->fail_after) {
        ut_err_set(err, "job cancelled after the write");
        return -ECANCELED;
    }
    return rc;
}

static inline int rep_put_e(struct rep *p, const char *tbl, const char *key, const char *v,
                            int64_t expires, struct ut_err *err)
{
    struct put_arg a = {tbl, key, v, v != NULL ? strlen(v) : 0, expires, 0, 0};

    return rep_run(p, put_body, &a, err);
}

static inline void rep_put(struct rep *p, const char *tbl, const char *key, const char *v)
{
    struct ut_err err = {{0}};
    int rc = rep_put_e(p, tbl, key, v, 0, &err);

    if (rc != 0)
        fail_msg("put %s/%s: %d %s", tbl, key, rc, err.msg);
}

static inline void rep_del(struct rep *p, const char *tbl, const char *key)
{
    struct ut_err err = {{0}};
    struct put_arg a = {tbl, key, NULL, 0, 0, 1, 0};
    int rc = rep_run(p, put_body, &a, &err);

    if (rc != 0)
        fail_msg("delete %s/%s: %d %s", tbl, key, rc, err.msg);
}

struct apply_arg {
    const struct crdt_entry *e;
    size_t n;
    const size_t *order; /* NULL: 0..n-1 */
    int *results;        /* optional, n */
    int last;
};

/* Applies entries in one job; a negative result fails the job. */
static inline int apply_body(struct rep *p, sqlite3 *db, void *a, struct ut_err *err)
{
    struct apply_arg *x = a;

    for (size_t i = 0; i < x->n; i++) {
        size_t k = x->order != NULL ? x->order[i] : i;

        x->last = crdt_apply(p->r, db, &x->e[k], err);
        if (x->results != NULL)
            x->results[i] = x->last;
        if (x->last < 0)
            return x->last;
    }
    return 0;
}

/* One entry: the apply result (positive) or the negative error. */
static inline int rep_apply(struct rep *p, const struct crdt_entry *e, struct ut_err *err)
{
    struct apply_arg a = {.e = e, .n = 1};
    int rc = rep_run(p, apply_body, &a, err);

    return rc < 0 ? rc : a.last;
}

/* ---- reads (this thread's reader) ---- */

static inline sqlite3 *rep_reader(struct rep *p)
{
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(p->s, &err);

    if (db == NULL)
        fail_msg("store_reader: %s", err.msg);
    return db;
}

/* The live value as a string, or NULL when absent (caller frees). */
static inline char *rep_get(struct rep *p, const char *tbl, const char *key)
{
    struct ut_err err = {{0}};
    uint8_t *v = NULL;
    size_t n = 0;
    int rc = crdt_get(p->r, rep_reader(p), tbl, key, &v, &n, &err);

    if (rc == -ENOENT)
        return NULL;
    if (rc != 0)
        fail_msg("get %s/%s: %d %s", tbl, key, rc, err.msg);
    return (char *)v;
}

static inline void assert_value(struct rep *p, const char *tbl, const char *key, const char *want)
{
    char *v = rep_get(p, tbl, key);

    if (want == NULL && v != NULL)
        fail_msg("%s/%s: want absent, have \"%s\"", tbl, key, v);
    if (want != NULL && (v == NULL || strcmp(v, want) != 0))
        fail_msg("%s/%s: want \"%s\", have %s%s%s", tbl, key, want, v ? "\"" : "",
                 v ? v : "(absent)", v ? "\"" : "");
    free(v);
}

/* One integer from SQL on the reader. */
static inline long long rep_q(struct rep *p, const char *sql)
{
    struct ut_err err = {{0}};
    sqlite3 *db = rep_reader(p);
    sqlite3_stmt *st = store_stmt(p->s, db, sql, &err);
    long long v;

    if (st == NULL)
        fail_msg("%s: %s", sql, err.msg);
    if (sqlite3_step(st) != SQLITE_ROW)
        fail_msg("%s: no row (%s)", sql, sqlite3_errmsg(db));
    v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

/* Every column of every crdt_rows row, with storage classes: two replicas
 * with equal dumps hold byte-identical rows. Caller frees. */
static inline char *rep_dump(struct rep *p)
{
    struct ut_err err = {{0}};
    sqlite3 *db = rep_reader(p);
    sqlite3_stmt *st = store_stmt(p->s, db,
                                  "SELECT tbl, hex(key), typeof(value), hex(value), hlc, origin,"
                                  " seq, deleted, expires FROM crdt_rows ORDER BY tbl, key",
                                  &err);
    struct ut_buf b;
    int rc;

    if (st == NULL)
        fail_msg("dump: %s", err.msg);
    ut_buf_init(&b, 64u << 20);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < 9; c++)
            ut_buf_printf(&b, "%s%s", c ? "|" : "", (const char *)sqlite3_column_text(st, c));
        ut_buf_putc(&b, '\n');
    }
    assert_int_equal(rc, SQLITE_DONE);
    sqlite3_reset(st);
    ut_buf_putc(&b, '\0');
    return ut_buf_steal(&b, NULL);
}

static inline uint64_t rep_vv(struct rep *p, const char *origin)
{
    struct ut_err err = {{0}};
    struct crdt_vv vv = {0};
    uint64_t v;

    if (crdt_vv_load(p->r, rep_reader(p), &vv, &err) != 0)
        fail_msg("vv_load: %s", err.msg);
    v = crdt_vv_get(&vv, origin);
    crdt_vv_free(&vv);
    return v;
}

/* ---- owned copies of entries (scan output) ---- */

struct oentry {
    char *tbl, *key, *origin;
    uint8_t *value;
    size_t value_len;
    uint64_t hlc, seq;
    int deleted;
    int64_t expires;
};

struct elist {
    struct oentry *v;
    size_t n, cap;
    size_t stop_after; /* scan fn returns 7 once n reaches this (0: never) */
};

static inline int elist_add(const struct crdt_entry *e, void *arg)
{
    struct elist *l = arg;
    struct oentry *o;

    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        assert_non_null(l->v);
    }
    o = &l->v[l->n++];
    o->tbl = strdup(e->tbl);
    o->key = strdup(e->key);
    o->origin = strdup(e->origin);
    o->value = NULL;
    if (!e->deleted) {
        o->value = malloc(e->value_len + 1);
        assert_non_null(o->value);
        if (e->value_len > 0)
            memcpy(o->value, e->value, e->value_len);
    }
    o->value_len = e->value_len;
    o->hlc = e->hlc;
    o->seq = e->seq;
    o->deleted = e->deleted;
    o->expires = e->expires;
    return l->stop_after != 0 && l->n >= l->stop_after ? 7 : 0;
}

static inline struct crdt_entry oentry_view(const struct oentry *o)
{
    struct crdt_entry e = {o->tbl,    o->key, o->value,   o->value_len, o->hlc,
                           o->origin, o->seq, o->deleted, o->expires};

    return e;
}

static inline void elist_free(struct elist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].tbl);
        free(l->v[i].key);
        free(l->v[i].origin);
        free(l->v[i].value);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* Every row of src (all origins, via crdt_scan on src's reader). */
static inline void rep_scan_all(struct rep *src, struct elist *out)
{
    struct ut_err err = {{0}};
    sqlite3 *db = rep_reader(src);
    sqlite3_stmt *st = store_stmt(src->s, db, "SELECT DISTINCT origin FROM crdt_rows", &err);
    char origins[32][256];
    int n = 0, rc;

    assert_non_null(st);
    while (sqlite3_step(st) == SQLITE_ROW && n < 32)
        snprintf(origins[n++], sizeof(origins[0]), "%s", sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    for (int i = 0; i < n; i++) {
        rc = crdt_scan(src->r, db, origins[i], 0, elist_add, out, &err);
        if (rc != 0)
            fail_msg("scan %s: %d %s", origins[i], rc, err.msg);
    }
}

/* Merges the whole state of src into dst (the anti-entropy primitive). */
static inline void rep_merge_from(struct rep *dst, struct rep *src)
{
    struct ut_err err = {{0}};
    struct elist l = {0};
    struct crdt_entry *e;
    struct apply_arg a = {0};
    int rc;

    rep_scan_all(src, &l);
    e = calloc(l.n + 1, sizeof(*e));
    assert_non_null(e);
    for (size_t i = 0; i < l.n; i++)
        e[i] = oentry_view(&l.v[i]);
    a.e = e;
    a.n = l.n;
    rc = rep_run(dst, apply_body, &a, &err);
    if (rc != 0)
        fail_msg("merge %s <- %s: %d %s", dst->origin, src->origin, rc, err.msg);
    free(e);
    elist_free(&l);
}

#endif
