/*
 * fuzz_envelope.c - libFuzzer target for lib/crypto envelopes: every input
 * goes through cry_env_open_request (at node "fuzz-b") and
 * cry_env_open_response (at node "fuzz-a", against one fixed request).
 *
 * Deterministic: fixed keys, a fixed clock (FZ_NOW), and a fresh endpoint
 * per input so replay caches and session windows never carry over from
 * one input to the next. To reach the session path, an input whose type
 * byte says "session" first has the fixed session-offering request R0
 * opened at the fresh endpoint. The request context for responses is
 * re-derived from a seeded random stream, so it is the same in every run
 * and in the corpus generator (gen_envelope_corpus.c includes this file).
 *
 * The seed corpus in fuzz/corpus/envelope/ holds valid messages of each
 * kind for these keys and this clock; regenerate it with
 * gen_envelope_corpus.c after any change to the wire format or keys.
 */
#include "crypto/envelope.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_NOW 1767225600000ULL /* 2026-01-01T00:00:00Z */

struct fz_rng {
    uint64_t ctr;
};

struct fz {
    struct cry_identity *ida, *idb;
    struct cry_keystore *ksa, *ksb;
    struct cry_env *enva;   /* sessions on, seeded randomness: makes R0 */
    struct cry_env_req *q0; /* context of R0, for the responses */
    uint8_t *r0;            /* R0: a -> b, X-Wing, offers a session */
    size_t r0_len;
    struct fz_rng rng;
};

static struct fz fz;

static uint64_t fz_clock(void *arg)
{
    (void)arg;
    return FZ_NOW;
}

/* SHA-256 in counter mode over a fixed label: a reproducible stream. */
static int fz_rand(void *arg, uint8_t *out, size_t n)
{
    struct fz_rng *r = arg;
    uint8_t block[32], in[16];
    unsigned int len;

    while (n > 0) {
        size_t k = n < sizeof(block) ? n : sizeof(block);

        memcpy(in, "fuzz-env", 8);
        for (int i = 0; i < 8; i++)
            in[8 + i] = (uint8_t)(r->ctr >> (8 * i));
        r->ctr++;
        if (EVP_Digest(in, sizeof(in), block, &len, EVP_sha256(), NULL) != 1)
            return -1;
        memcpy(out, block, k);
        out += k;
        n -= k;
    }
    return 0;
}

static struct cry_identity *fz_identity(const char *name, uint8_t tag)
{
    uint8_t seed[CRY_XWING_SK_BYTES], priv[CRY_P256_PRIV_BYTES];
    struct cry_identity *id = NULL;

    memset(seed, tag, sizeof(seed));
    memset(priv, tag + 1, sizeof(priv));
    if (cry_identity_load(name, seed, priv, &id, NULL) != 0)
        abort();
    return id;
}

static void fz_pin(struct cry_keystore *ks, const struct cry_identity *who)
{
    uint8_t pk[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];

    cry_identity_public(who, pk, pub);
    if (cry_keystore_pin(ks, cry_identity_node_id(who), pk, pub, NULL) != 0)
        abort();
}

static struct cry_env *fz_env(int at_a, int sessions)
{
    struct cry_env_config cfg = {.sessions = sessions, .clock = fz_clock};
    struct cry_env *env = NULL;

    if (at_a) {
        cfg.rand = fz_rand;
        cfg.rand_arg = &fz.rng;
    }
    if (cry_env_new(at_a ? fz.ida : fz.idb, at_a ? fz.ksa : fz.ksb, &cfg, &env, NULL) != 0)
        abort();
    return env;
}

/* (Re)makes enva and the context q0 of R0; the random stream restarts, so
 * R0's nonce, KEM ciphertext and signed bytes are the same every time. */
static void fz_make_q0(void)
{
    uint8_t *m = NULL;
    size_t len;

    cry_env_req_free(fz.q0);
    fz.q0 = NULL;
    cry_env_free(fz.enva);
    fz.enva = fz_env(1, 1);
    fz.rng.ctr = 0;
    if (cry_env_seal_request(fz.enva, "fuzz-b", (const uint8_t *)"R0", 2, &m, &len, &fz.q0, NULL) !=
        0)
        abort();
    if (fz.r0 == NULL) {
        fz.r0 = m;
        fz.r0_len = len;
    } else {
        free(m);
    }
}

static void fz_init(void)
{
    if (fz.ida != NULL)
        return;
    fz.ida = fz_identity("fuzz-a", 0xa1);
    fz.idb = fz_identity("fuzz-b", 0xb1);
    if (cry_keystore_new(&fz.ksa) != 0 || cry_keystore_new(&fz.ksb) != 0)
        abort();
    fz_pin(fz.ksa, fz.idb);
    fz_pin(fz.ksb, fz.ida);
    fz_make_q0();
}

/* Every refusal must be one of the documented reasons. */
static void fz_check(int rc, const uint8_t *pt)
{
    if (rc == 0 ? pt == NULL
                : (pt != NULL || rc < CRY_ENV_E_UNKNOWN_PEER || rc > CRY_ENV_E_TOO_LARGE))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cry_env *envb;
    struct cry_env_inreq *in = NULL;
    uint8_t *pt = NULL, *r = NULL;
    size_t ptlen, rlen;
    int rc;

    fz_init();

    /* Responder side, fresh state. */
    envb = fz_env(0, 0);
    if (size > 1 && data[1] == 2 &&
        cry_env_open_request(envb, fz.r0, fz.r0_len, &pt, &ptlen, NULL, NULL) == 0) {
        free(pt);
        pt = NULL;
    }
    rc = cry_env_open_request(envb, data, size, &pt, &ptlen, &in, NULL);
    fz_check(rc, pt);
    if (rc == 0) {
        /* A valid request must be answerable. */
        if (cry_env_seal_response(envb, in, pt, ptlen, &r, &rlen, NULL) != 0)
            __builtin_trap();
        free(r);
    }
    free(pt);
    pt = NULL;
    cry_env_inreq_free(in);
    cry_env_free(envb);

    /* Requester side: the input as the response to R0. */
    rc = cry_env_open_response(fz.enva, fz.q0, data, size, &pt, &ptlen, NULL);
    fz_check(rc, pt);
    free(pt);
    if (rc == 0)
        fz_make_q0(); /* consumed: restore the same context */
    return 0;
}
