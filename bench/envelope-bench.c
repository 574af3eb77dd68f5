/*
 * envelope-bench [SECONDS]: sealed gossip envelopes per second, for 1 KiB
 * and 1 MiB payloads: one-way seal+open and full request+response rounds,
 * with a fresh X-Wing encapsulation per message and with session keys.
 * Both endpoints run in this process on one thread; figures go to
 * docs/performance.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/envelope.h"

#define PEER "127.0.0.1:8081"

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "envelope-bench: %s failed\n", what);
    exit(1);
}

static void pin(struct cry_keystore *ks, const struct cry_identity *who)
{
    uint8_t pk[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];

    cry_identity_public(who, pk, pub);
    if (cry_keystore_pin(ks, cry_identity_node_id(who), pk, pub, NULL) < 0)
        die("pin");
}

/* One request (and, when round, its response) per iteration. */
static void run(const char *label, struct cry_env *ea, struct cry_env *eb, size_t n, int round,
                double secs)
{
    uint8_t *p = malloc(n);
    size_t msglen = 0;
    double t0 = now_s(), t;
    long iters = 0;

    if (p == NULL)
        die("malloc");
    memset(p, 7, n);
    do {
        struct cry_env_req *rq = NULL;
        struct cry_env_inreq *in = NULL;
        uint8_t *m, *pt, *r;
        size_t len, ptl, rl;

        if (cry_env_seal_request(ea, PEER, p, n, &m, &len, round ? &rq : NULL, NULL) < 0)
            die("seal_request");
        if (cry_env_open_request(eb, m, len, &pt, &ptl, round ? &in : NULL, NULL) < 0)
            die("open_request");
        free(pt);
        if (round) {
            if (cry_env_seal_response(eb, in, (const uint8_t *)"ok", 2, &r, &rl, NULL) < 0)
                die("seal_response");
            if (cry_env_open_response(ea, rq, r, rl, &pt, &ptl, NULL) < 0)
                die("open_response");
            free(pt);
            free(r);
        }
        msglen = len;
        free(m);
        cry_env_req_free(rq);
        cry_env_inreq_free(in);
        iters++;
        t = now_s() - t0;
    } while (t < secs);
    printf("%-28s payload %8zu B  message %8zu B  %9.1f /s  %8.3f ms\n", label, n, msglen,
           (double)iters / t, 1000 * t / (double)iters);
    free(p);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 2;
    struct cry_identity *a = NULL, *b = NULL;
    struct cry_keystore *ka = NULL, *kb = NULL;
    struct cry_env *ea = NULL, *eb = NULL, *eas = NULL;
    struct cry_env_config with_sessions = {.sessions = 1};

    if (cry_identity_generate("127.0.0.1:8080", &a, NULL) < 0 ||
        cry_identity_generate(PEER, &b, NULL) < 0 || cry_keystore_new(&ka) < 0 ||
        cry_keystore_new(&kb) < 0)
        die("setup");
    pin(ka, b);
    pin(kb, a);
    if (cry_env_new(a, ka, NULL, &ea, NULL) < 0 || cry_env_new(b, kb, NULL, &eb, NULL) < 0 ||
        cry_env_new(a, ka, &with_sessions, &eas, NULL) < 0)
        die("env");
    run("X-Wing seal+open", ea, eb, 1024, 0, secs);
    run("X-Wing seal+open", ea, eb, 1 << 20, 0, secs);
    run("X-Wing request+response", ea, eb, 1024, 1, secs);
    run("X-Wing request+response", ea, eb, 1 << 20, 1, secs);
    /* The first round with sessions on establishes the session. */
    run("session request+response", eas, eb, 1024, 1, secs);
    run("session request+response", eas, eb, 1 << 20, 1, secs);
    cry_env_free(ea);
    cry_env_free(eb);
    cry_env_free(eas);
    cry_keystore_free(ka);
    cry_keystore_free(kb);
    cry_identity_free(a);
    cry_identity_free(b);
    return 0;
}
