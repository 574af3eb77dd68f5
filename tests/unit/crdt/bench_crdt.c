/*
 * bench_crdt - throughput of the gossip hot path: crdt_apply and crdt_put,
 * N operations in one write transaction, on a WAL file database (and on a
 * memory one). Not a unit test: `meson test --benchmark crdt_throughput`
 * or run it directly: bench_crdt [N] [DIR].
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crdt/crdt.h"
#include "store/store.h"
#include "util/log.h"

static const struct crdt_table_def tables[] = {{"sessions", CRDT_LWW}};

struct bench {
    struct crdt_replica *r;
    size_t n;
    int mode; /* 0 apply new keys, 1 apply updates, 2 put */
    int rc;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct bench *b = arg;
    char key[48], val[160];
    uint64_t base = crdt_hlc_now(crdt_replica_hlc(b->r));

    for (size_t i = 0; i < b->n; i++) {
        int vl;

        snprintf(key, sizeof(key), "sess-%08zu", i);
        vl = snprintf(val, sizeof(val),
                      "{\"sub\":\"user%zu\",\"client_id\":\"app\",\"exp\":1700003600,"
                      "\"scope\":\"openid profile\"}",
                      i);
        if (b->mode == 2) {
            b->rc = crdt_put(b->r, db, "sessions", key, val, (size_t)vl, 0, err);
        } else {
            struct crdt_entry e = {"sessions",
                                   key,
                                   (const uint8_t *)val,
                                   (size_t)vl,
                                   base - 1000000 + i + (b->mode == 1 ? 500000 : 0),
                                   "peer-node:8443",
                                   i + 1 + (b->mode == 1 ? b->n : 0),
                                   0,
                                   0};

            b->rc = crdt_apply(b->r, db, &e, err);
            if (b->rc == CRDT_APPLIED)
                b->rc = 0;
        }
        if (b->rc != 0)
            return b->rc < 0 ? b->rc : -EIO;
    }
    return 0;
}

static int run(const char *url, size_t n)
{
    struct store_opts so = {.url = url};
    struct crdt_opts o = {.origin = "bench-node:8443", .tables = tables, .n_tables = 1};
    static const char *const names[] = {"apply (new keys)", "apply (newer versions)",
                                        "put (updates)"};
    struct store *s = NULL;
    struct crdt_replica *r = NULL;
    struct ut_err err = {{0}};

    if (store_open(&s, &so, &err) != 0 || crdt_replica_open(&r, s, &o, &err) != 0) {
        fprintf(stderr, "open %s: %s\n", url, err.msg);
        return 1;
    }
    for (int mode = 0; mode < 3; mode++) {
        struct bench b = {r, n, mode, 0};
        double t0 = now_s(), dt;
        int rc = store_write(s, job, &b, &err);

        dt = now_s() - t0;
        if (rc != 0) {
            fprintf(stderr, "%s: %d %s\n", names[mode], rc, err.msg);
            return 1;
        }
        printf("%-8s %-24s %zu ops in %.3f s: %.0f ops/s\n",
               strncmp(url, "sqlite::", 8) ? "file" : "memory", names[mode], n, dt, (double)n / dt);
    }
    crdt_replica_free(r);
    store_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    char dir[128] = "/tmp/crdt-bench-XXXXXX", url[300], path[200];
    int rc;

    ut_log_set_level(UT_LOG_WARN);
    if (argc > 2)
        snprintf(dir, sizeof(dir), "%s", argv[2]);
    else if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/bench.db", dir);
    snprintf(url, sizeof(url), "sqlite://%s", path);
    rc = run(url, n);
    unlink(path);
    if (argc <= 2)
        rmdir(dir);
    return rc != 0 ? rc : run("sqlite::memory:", n);
}
