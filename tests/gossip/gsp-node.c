/*
 * gsp-node: a minimal process that replicates through lib/gossip exactly
 * as the daemons do, for multi-process tests and benchmarks. Plain HTTP on
 * 127.0.0.1 only; every admin route is open (test use only).
 *
 *   gsp-node --port P --db PATH [--peer URL]... [--allow ID]... [--interval-ms N]
 *
 * Routes: the gossip routes (POST /api/gossip/sync, GET /api/gossip/status,
 * POST /api/admin/nodes/seed, GET /metrics), GET /api/gossip/kem-info,
 * PUT/GET/DELETE /kv/{key} (value = request body), GET /digest
 * ({"rows": n, "live": n, "sha256": hex over every crdt row in key order}).
 *
 * Bulk load (benchmarks): POST /bulk?n=N&size=S&prefix=P writes N entries
 * (keys P00000000, P00000001, ..., values of S random bytes; P default "b",
 * N <= 10,000,000, 1 <= S <= 1 MiB) in store_write jobs of 10,000 entries
 * each, and answers {"ok": true, "n": N} when the last one committed. The
 * request holds one of the two HTTP worker threads until then
 * (bench/gossip-bench.py loads 1M entries in calls of 100k, about a second
 * each).
 */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "gossip/driver.h"
#include "gossip/engine.h"
#include "gossip/nodeid.h"
#include "gossip/nodekey.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/sig.h"

#define MAX_LIST 16
#define BULK_JOB 10000

struct node {
    struct store *store;
    struct crdt_replica *rep;
    struct cry_identity *id;
    struct gsp_engine *engine;
    struct gsp_driver *driver;
    struct http_server *http;
};

static const struct crdt_table_def tables[] = {
    {"kv", CRDT_LWW},
    {"cluster_nodes", CRDT_LWW},
};

static int admin_ok(struct http_req *r, void *arg)
{
    (void)r;
    (void)arg;
    return 1;
}

static void kem_info(struct http_req *r, void *arg)
{
    struct node *n = arg;

    http_reply_json(r, 200, gsp_kem_info_json(n->id));
}

struct kv_job {
    struct node *n;
    const char *key;
    const unsigned char *val;
    size_t len;
    int del;
};

static int kv_write(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct kv_job *j = arg;

    if (j->del)
        return crdt_delete(j->n->rep, db, "kv", j->key, err);
    return crdt_put(j->n->rep, db, "kv", j->key, j->val, j->len, 0, err);
}

static void kv(struct http_req *r, void *arg)
{
    struct node *n = arg;
    struct kv_job j = {.n = n, .key = http_req_param(r, "key")};
    struct ut_err err = {{0}};
    uint8_t *v = NULL;
    size_t vlen = 0;
    sqlite3 *db;
    int rc;

    if (http_req_method(r) == HTTP_GET) {
        if ((db = store_reader(n->store, &err)) == NULL) {
            http_reply_error(r, 500, "server_error", err.msg);
            return;
        }
        rc = crdt_get(n->rep, db, "kv", j.key, &v, &vlen, &err);
        if (rc == -ENOENT)
            http_reply_error(r, 404, "not_found", "no such key");
        else if (rc < 0)
            http_reply_error(r, 500, "server_error", err.msg);
        else
            http_reply(r, 200, "application/octet-stream", v, vlen);
        free(v);
        return;
    }
    j.del = http_req_method(r) == HTTP_DELETE;
    j.val = http_req_body(r, &j.len);
    if ((rc = store_write(n->store, kv_write, &j, &err)) < 0) {
        http_reply_error(r, 500, "server_error", err.msg);
        return;
    }
    http_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
}

struct bulk_job {
    struct node *n;
    const char *prefix;
    long first, count;
    unsigned char *val;
    size_t size;
};

static int bulk_write(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct bulk_job *j = arg;
    char key[128];
    int rc;

    for (long i = j->first; i < j->first + j->count; i++) {
        snprintf(key, sizeof(key), "%s%08ld", j->prefix, i);
        if (RAND_bytes(j->val, (int)j->size) != 1) {
            ut_err_set(err, "RAND_bytes failed");
            return -EIO;
        }
        if ((rc = crdt_put(j->n->rep, db, "kv", key, j->val, j->size, 0, err)) < 0)
            return rc;
    }
    return 0;
}

static void bulk(struct http_req *r, void *arg)
{
    const char *qn = http_req_query(r, "n"), *qs = http_req_query(r, "size");
    const char *qp = http_req_query(r, "prefix");
    struct bulk_job j = {.n = arg, .prefix = qp ? qp : "b"};
    struct ut_err err = {{0}};
    long total = qn ? strtol(qn, NULL, 10) : 0, size = qs ? strtol(qs, NULL, 10) : 0;
    int rc = 0;

    if (total < 1 || total > 10000000 || size < 1 || size > (1 << 20) || strlen(j.prefix) > 64) {
        http_reply_error(r, 400, "invalid_request", "n 1..10000000, size 1..1048576, prefix <= 64");
        return;
    }
    j.size = (size_t)size;
    if ((j.val = malloc(j.size)) == NULL) {
        http_reply_error(r, 500, "server_error", "out of memory");
        return;
    }
    for (j.first = 0; j.first < total && rc == 0; j.first += j.count) {
        j.count = total - j.first < BULK_JOB ? total - j.first : BULK_JOB;
        rc = store_write(j.n->store, bulk_write, &j, &err);
    }
    free(j.val);
    if (rc < 0)
        http_reply_error(r, 500, "server_error", err.msg);
    else
        http_reply_json(r, 200, json_pack("{s:b, s:i}", "ok", 1, "n", (json_int_t)total));
}

static void digest(struct http_req *r, void *arg)
{
    struct node *n = arg;
    struct ut_err err = {{0}};
    sqlite3 *db = store_reader(n->store, &err);
    sqlite3_stmt *st = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char h[32];
    char hex[65];
    long rows = 0, live = 0;

    if (db == NULL || md == NULL ||
        sqlite3_prepare_v2(db,
                           "SELECT tbl, key, value, hlc, origin, seq, deleted FROM crdt_rows "
                           "WHERE tbl = 'kv' ORDER BY tbl, key",
                           -1, &st, NULL) != SQLITE_OK) {
        http_reply_error(r, 500, "server_error", db ? sqlite3_errmsg(db) : err.msg);
        goto out;
    }
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        for (int c = 0; c < 7; c++) {
            const void *p = sqlite3_column_blob(st, c);
            int len = sqlite3_column_bytes(st, c);
            EVP_DigestUpdate(md, &len, sizeof(len));
            if (p && len)
                EVP_DigestUpdate(md, p, (size_t)len);
        }
        rows++;
        live += sqlite3_column_int(st, 6) == 0;
    }
    EVP_DigestFinal_ex(md, h, NULL);
    ut_hex_encode(h, sizeof(h), hex);
    http_reply_json(r, 200,
                    json_pack("{s:i, s:i, s:s}", "rows", (json_int_t)rows, "live", (json_int_t)live,
                              "sha256", hex));
out:
    sqlite3_finalize(st);
    EVP_MD_CTX_free(md);
}

int main(int argc, char **argv)
{
    const char *peers[MAX_LIST], *allowed[MAX_LIST], *db_path = NULL;
    size_t n_peers = 0, n_allowed = 0;
    long port = 0, interval = 1000;
    char url[600], listen[64], self_url[64];
    struct node n = {0};
    struct ut_err err = {{0}};
    const char *count[] = {"kv"};
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && strcmp(a, "--port") == 0)
            port = strtol(v, NULL, 10), i++;
        else if (v && strcmp(a, "--db") == 0)
            db_path = v, i++;
        else if (v && strcmp(a, "--peer") == 0 && n_peers < MAX_LIST)
            peers[n_peers++] = v, i++;
        else if (v && strcmp(a, "--allow") == 0 && n_allowed < MAX_LIST)
            allowed[n_allowed++] = v, i++;
        else if (v && strcmp(a, "--interval-ms") == 0)
            interval = strtol(v, NULL, 10), i++;
        else {
            fprintf(stderr, "gsp-node: bad argument '%s'\n", a);
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || db_path == NULL) {
        fprintf(stderr, "usage: gsp-node --port P --db PATH [--peer URL]... [--allow ID]...\n");
        return 2;
    }
    snprintf(url, sizeof(url), "sqlite://%s", db_path);
    snprintf(listen, sizeof(listen), "127.0.0.1:%ld", port);
    snprintf(self_url, sizeof(self_url), "http://127.0.0.1:%ld", port);
    ut_sig_block();

    struct store_migration mig[] = {{1, gsp_nodekey_schema_sql}};
    struct store_opts so = {.url = url, .migrations = mig, .n_migrations = 1};
    struct crdt_opts co = {.origin = listen, .tables = tables, .n_tables = 2};
    struct http_server_opts ho = {.listen = listen, .threads = 2};
    struct gsp_engine_opts eo = {.self_url = self_url,
                                 .peers = peers,
                                 .n_peers = n_peers,
                                 .allowed_node_ids = allowed,
                                 .n_allowed = n_allowed,
                                 .count_tables = count,
                                 .n_count_tables = 1,
                                 .log_module = "gossip",
                                 .header_name = "X-Node-Id",
                                 .interval_ms = (uint64_t)interval,
                                 .sessions = 1};
    struct gsp_driver_opts dopts = {
        .header_name = "X-Node-Id", .metrics_prefix = "gsp_node", .run_loop = n_peers > 0};

    if (store_open(&n.store, &so, &err) < 0 ||
        gsp_nodekey_load(n.store, listen, NULL, &n.id, NULL, &err) < 0 ||
        crdt_replica_open(&n.rep, n.store, &co, &err) < 0)
        goto out;
    eo.store = n.store;
    eo.replica = n.rep;
    eo.identity = n.id;
    if (gsp_engine_new(&n.engine, &eo, &err) < 0)
        goto out;
    dopts.engine = n.engine;
    if (gsp_driver_start(&n.driver, &dopts, &err) < 0 || http_server_new(&n.http, &ho, &err) < 0 ||
        gsp_driver_routes(n.driver, n.http, admin_ok, NULL, &err) < 0 ||
        http_route(n.http, HTTP_GET, "/api/gossip/kem-info", kem_info, &n, &err) < 0 ||
        http_route(n.http, HTTP_GET | HTTP_PUT | HTTP_DELETE, "/kv/{key}", kv, &n, &err) < 0 ||
        http_route(n.http, HTTP_GET, "/digest", digest, &n, &err) < 0 ||
        http_route(n.http, HTTP_POST, "/bulk", bulk, &n, &err) < 0 ||
        http_server_start(n.http, &err) < 0)
        goto out;
    ut_log(UT_LOG_INFO, "gsp-node", "ready", UT_LF_S("node_id", listen));
    while (ut_sig_wait() != UT_SIG_STOP)
        ;
    rc = 0;
out:
    if (rc)
        ut_log(UT_LOG_ERROR, "gsp-node", "startup failed", UT_LF_S("error", err.msg));
    if (n.http) {
        http_server_stop(n.http);
        http_server_free(n.http);
    }
    gsp_driver_stop(n.driver);
    gsp_engine_free(n.engine);
    crdt_replica_free(n.rep);
    cry_identity_free(n.id);
    if (n.store)
        store_close(n.store);
    return rc;
}
