/*
 * gsp_test.h - helpers for the gossip engine tests: in-process nodes
 * (store, replica, identity, engine) on a virtual clock, messages carried
 * by direct calls, log capture. Header-only (static functions) so each
 * test binary stays one file plus this.
 */
#ifndef GSP_TEST_H
#define GSP_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "crdt/crdt.h"
#include "gossip/engine.h"
#include "gossip/nodeid.h"
#include "util/log.h"

/* A fresh temporary folder per test group (g_dir), removed afterwards.
 * GSP_TEST_DIR_PREFIX names it ("/tmp/test-gsp" unless defined first). */
#ifndef GSP_TEST_DIR_PREFIX
#define GSP_TEST_DIR_PREFIX "/tmp/test-gsp"
#endif
static char g_dir[64];

static int __attribute__((unused)) setup_dir(void **state)
{
    (void)state;
    strcpy(g_dir, GSP_TEST_DIR_PREFIX "-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int __attribute__((unused)) teardown_dir(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

#define T_EPOCH_MS 1767225600000ull /* 2026-01-01T00:00:00Z */

static uint64_t g_now __attribute__((unused)) = T_EPOCH_MS;

struct tnode {
    char id[64];
    char url[96];
    char path[256]; /* "" = memory store */
    int64_t skew;   /* added to g_now for this node's clocks */
    struct store *s;
    struct crdt_replica *r;
    struct cry_identity *ident;
    struct gsp_engine *e;
    /* engine options (set before tn_open) */
    const char *peers[8];
    size_t n_peers;
    const char *allowed[8];
    size_t n_allowed;
    size_t page_bytes;
    size_t zstd_threshold;
    unsigned skip_max;
    int sessions;
    uint64_t max_skew_ms;
    uint64_t ttl_ms; /* tombstone TTL (0: the crdt default) */
    /* vouching (engine.h); NULL: none */
    const char *vouch_cert;
    gsp_vouch_fn vouch_verify;
    void *vouch_arg;
};

static const struct crdt_table_def t_tables[] = {
    {"kv", CRDT_LWW},
    {"accounts", CRDT_LWW},
    {"cluster_nodes", CRDT_LWW},
    {"revoked", CRDT_GROW_ONLY},
};
static const char *const t_count[] __attribute__((unused)) = {"accounts", "kv"};

static inline uint64_t t_clock(void *arg)
{
    const struct tnode *n = arg;

    return (uint64_t)((int64_t)g_now + (n ? n->skew : 0));
}

static inline void tn_init(struct tnode *n, const char *id, const char *dir)
{
    struct ut_err err = {{0}};

    memset(n, 0, sizeof(*n));
    snprintf(n->id, sizeof(n->id), "%s", id);
    snprintf(n->url, sizeof(n->url), "http://%s", id);
    if (dir != NULL)
        snprintf(n->path, sizeof(n->path), "%s/%s.db", dir, id);
    if (cry_identity_generate(id, &n->ident, &err) < 0)
        fail_msg("identity %s: %s", id, err.msg);
}

static inline void tn_open(struct tnode *n)
{
    struct ut_err err = {{0}};
    char url[300];
    struct store_opts so = {0};
    struct crdt_opts co = {0};
    struct gsp_engine_opts eo = {0};

    if (n->path[0])
        snprintf(url, sizeof(url), "sqlite://%s", n->path);
    else
        snprintf(url, sizeof(url), "sqlite::memory:");
    so.url = url;
    if (store_open(&n->s, &so, &err) < 0)
        fail_msg("store_open %s: %s", n->id, err.msg);
    co.origin = n->id;
    co.tables = t_tables;
    co.n_tables = sizeof(t_tables) / sizeof(t_tables[0]);
    co.clock = t_clock;
    co.clock_arg = n;
    co.max_skew_ms = n->max_skew_ms;
    co.tombstone_ttl_ms = n->ttl_ms;
    if (crdt_replica_open(&n->r, n->s, &co, &err) < 0)
        fail_msg("crdt_replica_open %s: %s", n->id, err.msg);
    eo.store = n->s;
    eo.replica = n->r;
    eo.identity = n->ident;
    eo.self_url = n->url;
    eo.peers = n->peers;
    eo.n_peers = n->n_peers;
    eo.allowed_node_ids = n->allowed;
    eo.n_allowed = n->n_allowed;
    eo.count_tables = t_count;
    eo.n_count_tables = 2;
    eo.log_module = "gossip";
    eo.header_name = "X-Akamu-Node-Id";
    eo.interval_ms = 1000;
    eo.page_bytes = n->page_bytes;
    eo.zstd_threshold = n->zstd_threshold;
    eo.skip_max = n->skip_max;
    eo.sessions = n->sessions;
    eo.clock = t_clock;
    eo.clock_arg = n;
    eo.vouch_cert = n->vouch_cert;
    eo.vouch_verify = n->vouch_verify;
    eo.vouch_arg = n->vouch_arg;
    if (gsp_engine_new(&n->e, &eo, &err) < 0)
        fail_msg("gsp_engine_new %s: %s", n->id, err.msg);
}

static inline void tn_close(struct tnode *n)
{
    gsp_engine_free(n->e);
    crdt_replica_free(n->r);
    store_close(n->s);
    n->e = NULL;
    n->r = NULL;
    n->s = NULL;
}

static inline void tn_free(struct tnode *n)
{
    if (n->e != NULL)
        tn_close(n);
    cry_identity_free(n->ident);
    n->ident = NULL;
}

/* b's kem-info document, as an administrator would paste it. */
static inline char *tn_kem_info(const struct tnode *b)
{
    json_t *j = gsp_kem_info_json(b->ident);
    char *s = json_dumps(j, JSON_COMPACT);

    json_decref(j);
    return s;
}

/* a pins b (with b's URL). */
static inline void tn_seed(struct tnode *a, const struct tnode *b)
{
    struct ut_err err = {{0}};
    char *doc = tn_kem_info(b);

    if (gsp_engine_seed(a->e, doc, strlen(doc), b->url, &err) < 0)
        fail_msg("seed %s into %s: %s", b->id, a->id, err.msg);
    free(doc);
}

struct wctx {
    struct tnode *n;
    const char *tbl, *key, *val;
    size_t count; /* >0: keys key0..keyN-1 */
    size_t vlen;  /* >0: value of vlen bytes of val[0] */
};

static inline int write_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct wctx *w = arg;
    char key[300];
    char *big = NULL;
    int rc = 0;

    if (w->vlen > 0) {
        big = malloc(w->vlen);
        if (big == NULL)
            return -ENOMEM;
        memset(big, w->val[0], w->vlen);
    }
    for (size_t i = 0; i < (w->count ? w->count : 1) && rc == 0; i++) {
        if (w->count)
            snprintf(key, sizeof(key), "%s%zu", w->key, i);
        else
            snprintf(key, sizeof(key), "%s", w->key);
        if (w->val == NULL)
            rc = crdt_delete(w->n->r, db, w->tbl, key, err);
        else if (big != NULL)
            rc = crdt_put(w->n->r, db, w->tbl, key, big, w->vlen, 0, err);
        else
            rc = crdt_put(w->n->r, db, w->tbl, key, w->val, strlen(w->val), 0, err);
    }
    free(big);
    return rc;
}

static inline void tn_put(struct tnode *n, const char *key, const char *val)
{
    struct wctx w = {n, "kv", key, val, 0, 0};
    struct ut_err err = {{0}};

    if (store_write(n->s, write_job, &w, &err) < 0)
        fail_msg("put %s on %s: %s", key, n->id, err.msg);
}

static inline void tn_put_many(struct tnode *n, const char *tbl, const char *prefix, size_t count,
                               const char *val, size_t vlen)
{
    struct wctx w = {n, tbl, prefix, val, count, vlen};
    struct ut_err err = {{0}};

    if (store_write(n->s, write_job, &w, &err) < 0)
        fail_msg("put_many on %s: %s", n->id, err.msg);
}

static inline void tn_del(struct tnode *n, const char *key)
{
    struct wctx w = {n, "kv", key, NULL, 0, 0};
    struct ut_err err = {{0}};

    if (store_write(n->s, write_job, &w, &err) < 0)
        fail_msg("delete %s on %s: %s", key, n->id, err.msg);
}

/* The live value of kv/key, or NULL (caller frees). */
static inline char *tn_get(struct tnode *n, const char *tbl, const char *key)
{
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(n->s, &err);
    uint8_t *v = NULL;
    size_t len = 0;

    if (db == NULL)
        fail_msg("reader: %s", err.msg);
    if (crdt_get(n->r, db, tbl, key, &v, &len, &err) < 0)
        return NULL;
    return (char *)v;
}

static inline uint64_t tn_count(struct tnode *n, const char *tbl)
{
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(n->s, &err);
    uint64_t c = 0;

    if (db == NULL || crdt_count(n->r, db, tbl, &c, &err) < 0)
        fail_msg("count %s: %s", tbl, err.msg);
    return c;
}

/* Our vv as "origin=seq;..." for equality checks. */
static inline void tn_vv(struct tnode *n, char *out, size_t len)
{
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(n->s, &err);
    struct crdt_vv vv = {0};
    size_t off = 0;

    out[0] = '\0';
    if (db == NULL || crdt_vv_load(n->r, db, &vv, &err) < 0)
        fail_msg("vv: %s", err.msg);
    for (size_t i = 0; i < vv.n && off < len; i++)
        off += (size_t)snprintf(out + off, len - off, "%s=%llu;", vv.origin[i],
                                (unsigned long long)vv.seq[i]);
    crdt_vv_free(&vv);
}

/* A counter from the status JSON: the totals (peer NULL) or one peer's. */
static inline long long tn_stat(struct tnode *n, const char *peer, const char *name)
{
    json_t *st = gsp_engine_status(n->e), *o = NULL, *v;
    long long r = -1;
    size_t i;

    if (peer == NULL) {
        o = json_object_get(st, "totals");
    } else {
        json_array_foreach(json_object_get(st, "peers"), i, v)
        {
            if (strcmp(json_string_value(json_object_get(v, "node_id")), peer) == 0)
                o = v;
        }
    }
    if (o != NULL && json_is_integer(json_object_get(o, name)))
        r = json_integer_value(json_object_get(o, name));
    else if (o != NULL && json_is_boolean(json_object_get(o, name)))
        r = json_is_true(json_object_get(o, name));
    json_decref(st);
    return r;
}

static inline long long tn_refusals(struct tnode *n, const char *peer, const char *reason)
{
    json_t *st = gsp_engine_status(n->e), *o = NULL, *v;
    long long r = 0;
    size_t i;

    if (peer == NULL) {
        o = json_object_get(st, "totals");
    } else {
        json_array_foreach(json_object_get(st, "peers"), i, v)
        {
            if (strcmp(json_string_value(json_object_get(v, "node_id")), peer) == 0)
                o = v;
        }
    }
    v = json_object_get(json_object_get(o, "refusals"), reason);
    if (json_is_integer(v))
        r = json_integer_value(v);
    json_decref(st);
    return r;
}

/* One exchange a -> b carried by direct calls. hdr: the node-id header b
 * sees (NULL: a's id). *status (optional) gets b's HTTP status. When
 * drop_response is set the response is "lost" (gsp_engine_fail). Returns
 * begin's/handle's/finish's first error, else 0. *req_len and *resp_len
 * (optional) get the sealed sizes. */
static inline int tn_xchg_full(struct tnode *a, struct tnode *b, enum gsp_due_kind why,
                               const char *hdr, int use_hdr, int drop_response, int *status,
                               size_t *req_len, size_t *resp_len)
{
    struct ut_err err = {{0}};
    struct gsp_exchange *x = NULL;
    uint8_t *msg = NULL, *resp = NULL;
    size_t ml = 0, rl = 0;
    int rc, st = 0;

    rc = gsp_engine_begin(a->e, b->id, why, &msg, &ml, &x, &err);
    if (rc < 0)
        return rc;
    rc = gsp_engine_handle(b->e, msg, ml, use_hdr ? hdr : a->id, &resp, &rl, &st, &err);
    if (status)
        *status = st;
    if (req_len)
        *req_len = ml;
    if (resp_len)
        *resp_len = rl;
    if (rc < 0) {
        gsp_engine_fail(a->e, x, st, "refused");
    } else if (drop_response) {
        gsp_engine_fail(a->e, x, 0, "timeout");
    } else {
        rc = gsp_engine_finish(a->e, x, resp, rl, &err);
    }
    free(msg);
    free(resp);
    return rc;
}

static inline int tn_xchg(struct tnode *a, struct tnode *b)
{
    return tn_xchg_full(a, b, GSP_DUE_ROUND, NULL, 0, 0, NULL, NULL, NULL);
}

/* 1 when a's engine wants another exchange with b right away. */
static inline int tn_more_due(struct tnode *a, struct tnode *b)
{
    struct gsp_due d[16];
    size_t n = gsp_engine_due(a->e, d, 16, NULL);

    for (size_t i = 0; i < n; i++)
        if (d[i].kind == GSP_DUE_MORE && strcmp(d[i].node_id, b->id) == 0)
            return 1;
    return 0;
}

/* Exchanges a -> b until a's engine stops asking for more (at most 1000). */
static inline int tn_sync(struct tnode *a, struct tnode *b)
{
    int i, rc;

    for (i = 0; i < 1000; i++) {
        rc = tn_xchg_full(a, b, i ? GSP_DUE_MORE : GSP_DUE_ROUND, NULL, 0, 0, NULL, NULL, NULL);
        if (rc < 0)
            return rc;
        if (!tn_more_due(a, b))
            return i + 1;
    }
    return -ELOOP;
}

/* ---- log capture ---- */

static char g_logpath[64] __attribute__((unused));
static int g_logfd __attribute__((unused)) = -1;
static enum ut_log_level g_loglevel __attribute__((unused)) = UT_LOG_INFO;

static inline void log_start(void)
{
    strcpy(g_logpath, "/tmp/test-gsp-log-XXXXXX");
    g_logfd = mkstemp(g_logpath);
    assert_true(g_logfd >= 0);
    ut_log_set_fd(g_logfd);
    ut_log_set_timestamps(0);
    g_loglevel = ut_log_get_level();
    ut_log_set_level(UT_LOG_INFO);
}

/* Everything logged since log_start (caller frees); stops capturing. */
static inline char *log_stop(void)
{
    off_t len = lseek(g_logfd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)len + 1);

    ut_log_set_fd(2);
    ut_log_set_timestamps(1);
    ut_log_set_level(g_loglevel);
    assert_non_null(buf);
    assert_int_equal(pread(g_logfd, buf, (size_t)len, 0), len);
    close(g_logfd);
    unlink(g_logpath);
    g_logfd = -1;
    return buf;
}

/* 1 when log holds exactly this line. */
static inline int log_has_line(const char *log, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = log; (p = strstr(p, line)) != NULL; p += n)
        if ((p == log || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

#endif
