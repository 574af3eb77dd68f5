/*
 * sim-bench: rounds to full convergence of N real gossip engines in the
 * in-process simulator (tests/sim), next to ceil(log3 N).
 *
 *   sim-bench [-n N] [-s SEED] [-b BATCH] [-p POOL] [-m rounds|push|both] [-r REPEAT]
 *             [-k SKIP_MAX]
 *
 * For fan-out 1 and 3, each with 0% and 10% message loss: one write at a
 * random node, then BATCH writes at random nodes at the same instant;
 * for each, the virtual time until every replica holds it, in gossip
 * intervals ("rounds"), and the messages and bytes it took. Mode
 * "rounds" turns the eager push off (push delay far beyond the interval),
 * so only the periodic push-pull rounds spread data: the classic measure
 * the log3 N figure is for. Mode "push" keeps the engine's eager push
 * (10 ms): convergence is then a fraction of a round. The fan-out is
 * emulated by the simulator (each node pins a random pool of neighbours
 * with URLs; every interval the simulator picks `fanout` of them and acts
 * only on the engine's due items for those). -k sets the engine's
 * skip_max (1 = never skip a round whose peer looks in sync; default: the
 * engine's default).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim.h"
#include "util/log.h"

#define INTERVAL_MS 1000u

static double wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(struct sim *s, const char *what, const struct ut_err *err)
{
    fprintf(stderr, "sim-bench: %s failed (seed %" PRIu64 "): %s\n", what, s ? sim_seed(s) : 0,
            err->msg);
    exit(1);
}

/* Runs to just before the next round boundary (rounds start at multiples
 * of the interval from the start). */
static void to_boundary(struct sim *s)
{
    struct ut_err err = {{0}};
    uint64_t t = sim_now(s) - SIM_EPOCH_MS, iv = sim_interval(s);
    uint64_t target = (t / iv + 1) * iv - 1;

    if (target > t && sim_run(s, target - t, &err) < 0)
        die(s, "run", &err);
}

struct result {
    uint64_t ms;
    uint64_t msgs, bytes;
};

static int measure(struct sim *s, unsigned writes, uint64_t *counter, struct result *r)
{
    struct ut_err err = {{0}};
    struct sim_stats a, b;
    uint64_t took = 0;

    to_boundary(s);
    sim_stats(s, &a);
    for (unsigned i = 0; i < writes; i++) {
        char key[32], val[48];
        unsigned node = (unsigned)(rand() % (int)sim_n(s));
        int len;
        while (!sim_is_up(s, node))
            node = (node + 1) % sim_n(s);
        snprintf(key, sizeof(key), "bench-%" PRIu64, ++*counter);
        len = snprintf(val, sizeof(val), "{\"w\":%" PRIu64 "}", *counter);
        if (sim_write(s, node, "kv", key, val, (size_t)len, &err) < 0)
            die(s, "write", &err);
    }
    if (sim_converge(s, 300ull * sim_interval(s), &took, &err) < 0) {
        fprintf(stderr, "sim-bench: %s\n", err.msg);
        return -1;
    }
    sim_stats(s, &b);
    r->ms = took;
    r->msgs = b.msgs - a.msgs;
    r->bytes = b.bytes - a.bytes;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: sim-bench [-n N] [-s SEED] [-b BATCH] [-p POOL] "
                    "[-m rounds|push|both] [-r REPEAT] [-k SKIP_MAX]\n");
    exit(2);
}

static void run_mode(unsigned n, uint64_t seed, unsigned batch, unsigned pool, int push,
                     unsigned repeat, int log3, unsigned skip_max)
{
    struct sim_opts o = {.seed = seed,
                         .n = n,
                         .topo = SIM_TOPO_FANOUT,
                         .fanout = 1,
                         .pool = pool,
                         .sessions = 1,
                         .interval_ms = INTERVAL_MS,
                         /* "off": far beyond any measurement window */
                         .push_delay_ms = push ? 0 : 1000000000ull,
                         .skip_max = skip_max,
                         .check_ms = push ? 1 : 10,
                         .delay_min_ms = 1,
                         .delay_max_ms = 20,
                         .timeout_ms = 500};
    const unsigned fanouts[] = {1, 3};
    const double losses[] = {0.0, 0.1};
    struct ut_err err = {{0}};
    struct sim *s = NULL;
    uint64_t counter = 0, took = 0;
    double t0 = wall_s();

    o.verbose = getenv("SIM_VERBOSE") && *getenv("SIM_VERBOSE");
    if (sim_new(&s, &o, &err) < 0)
        die(s, "sim_new", &err);
    /* Warm-up: every node's own cluster_nodes entry spreads first. */
    sim_set_fanout(s, 3);
    if (sim_converge(s, 600ull * INTERVAL_MS, &took, &err) < 0)
        die(s, "warm-up convergence", &err);
    fprintf(stderr, "sim-bench: %u nodes set up and converged in %.1f s wall (%.1f rounds)\n", n,
            wall_s() - t0, (double)took / INTERVAL_MS);
    printf("\nmode: %s, N=%u, pool %u random neighbours/node (+ring), skip_max %s, seed %" PRIu64
           ", interval %u ms, one-way delay 1-20 ms, ceil(log3 N) = %d\n",
           push ? "eager push (10 ms) + rounds" : "rounds only (push off)", n, pool,
           skip_max ? (skip_max == 1 ? "1 (no skips)" : "set") : "engine default", seed,
           INTERVAL_MS, log3);
    printf("%-7s %-5s %-10s %8s %9s %9s %12s %10s %8s\n", "fanout", "loss", "writes", "rounds",
           "time_ms", "msgs", "bytes", "bytes/node", "log3(N)");
    for (size_t f = 0; f < 2; f++) {
        for (size_t l = 0; l < 2; l++) {
            sim_set_fanout(s, fanouts[f]);
            sim_set_loss(s, losses[l], 0, 0);
            for (unsigned w = 0; w < 2; w++) {
                unsigned writes = w == 0 ? 1 : batch;
                for (unsigned r = 0; r < repeat; r++) {
                    struct result res;
                    double t1 = wall_s();
                    if (measure(s, writes, &counter, &res) < 0) {
                        printf("%-7u %-4.0f%% %-10u %8s\n", fanouts[f], losses[l] * 100, writes,
                               "timeout");
                        continue;
                    }
                    printf("%-7u %-4.0f%% %-10u %8.0f %9" PRIu64 " %9" PRIu64 " %12" PRIu64
                           " %10" PRIu64 " %8d   (%.1f s wall)\n",
                           fanouts[f], losses[l] * 100, writes, ceil((double)res.ms / INTERVAL_MS),
                           res.ms, res.msgs, res.bytes, res.bytes / n, log3, wall_s() - t1);
                    fflush(stdout);
                }
            }
        }
    }
    if (sim_check(s, 0, &err) < 0)
        die(s, "final check", &err);
    sim_print_stats(s, push ? "bench push" : "bench rounds");
    sim_free(s);
}

int main(int argc, char **argv)
{
    unsigned n = 1000, batch = 100, pool = 8, repeat = 1, skip_max = 0;
    uint64_t seed = 1000;
    const char *mode = "both";
    int c, log3;

    while ((c = getopt(argc, argv, "n:s:b:p:m:r:k:")) != -1) {
        switch (c) {
        case 'n':
            n = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 's':
            seed = strtoull(optarg, NULL, 0);
            break;
        case 'b':
            batch = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'p':
            pool = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            mode = optarg;
            break;
        case 'r':
            repeat = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'k':
            skip_max = (unsigned)strtoul(optarg, NULL, 10);
            break;
        default:
            usage();
        }
    }
    if (n < 2 || batch < 1 || repeat < 1 ||
        (strcmp(mode, "rounds") != 0 && strcmp(mode, "push") != 0 && strcmp(mode, "both") != 0))
        usage();
    ut_log_set_level(UT_LOG_ERROR);
    srand((unsigned)seed);
    log3 = 0;
    for (unsigned long p = 1; p < n; p *= 3)
        log3++;
    if (strcmp(mode, "push") != 0)
        run_mode(n, seed, batch, pool, 0, repeat, log3, skip_max);
    if (strcmp(mode, "rounds") != 0)
        run_mode(n, seed, batch, pool, 1, repeat, log3, skip_max);
    return 0;
}
