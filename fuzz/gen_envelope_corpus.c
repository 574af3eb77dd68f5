/*
 * gen_envelope_corpus.c - writes the seed corpus of fuzz_envelope: valid
 * messages of every kind for the fuzz target's fixed keys and clock. Not
 * built by meson; run it by hand after changing the wire format:
 *
 *   cc -std=c17 -D_GNU_SOURCE -Ilib -pthread -o /tmp/gen-envelope \
 *      fuzz/gen_envelope_corpus.c $(find lib/crypto lib/util -name '[a-z]*.c') \
 *      -lssl -lcrypto
 *   rm -f fuzz/corpus/envelope/[a-z]* && /tmp/gen-envelope fuzz/corpus/envelope
 *
 * It includes fuzz_envelope.c so both share one fixture, and checks that
 * every seed opens with the target's own logic before writing it.
 */
#include "fuzz_envelope.c"

#include <stdio.h>

static const char *outdir;

static void put(const char *name, const uint8_t *m, size_t len)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", outdir, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(m, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    printf("%s: %zu bytes\n", path, len);
}

/* b opens a request on a fresh endpoint, as the target does. */
static void check_request(const uint8_t *m, size_t len, int session)
{
    struct cry_env *envb = fz_env(0, 0);
    uint8_t *pt = NULL;
    size_t ptlen;

    if (session && cry_env_open_request(envb, fz.r0, fz.r0_len, &pt, &ptlen, NULL, NULL) != 0)
        abort();
    free(pt);
    pt = NULL;
    if (cry_env_open_request(envb, m, len, &pt, &ptlen, NULL, NULL) != 0)
        abort();
    free(pt);
    cry_env_free(envb);
}

static void seal_plain(const char *name, const void *p, size_t n)
{
    struct cry_env *env = fz_env(1, 0);
    uint8_t *m = NULL;
    size_t len;

    if (cry_env_seal_request(env, "fuzz-b", p, n, &m, &len, NULL, NULL) != 0)
        abort();
    check_request(m, len, 0);
    put(name, m, len);
    free(m);
    cry_env_free(env);
}

int main(int argc, char **argv)
{
    static const uint8_t cbor[] = {0xa2, 0x61, 0x76, 0x01, 0x62, 0x76, 0x76, 0x80};
    struct cry_env *envb;
    struct cry_env_inreq *in = NULL;
    uint8_t *pt = NULL, *r = NULL, *s = NULL, *first = NULL, big[1024];
    size_t ptlen, rlen, slen, first_len = 0;
    struct cry_env_req *qs = NULL;

    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    outdir = argv[1];
    fz_init();

    seal_plain("kem-empty", NULL, 0);
    seal_plain("kem-cbor", cbor, sizeof(cbor));
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 13);
    seal_plain("kem-1k", big, sizeof(big));
    check_request(fz.r0, fz.r0_len, 0);
    put("kem-offer", fz.r0, fz.r0_len);

    /* b answers R0 (twice over, on two fresh endpoints: two seeds). */
    for (int k = 0; k < 2; k++) {
        envb = fz_env(0, 0);
        if (cry_env_open_request(envb, fz.r0, fz.r0_len, &pt, &ptlen, &in, NULL) != 0)
            abort();
        free(pt);
        pt = NULL;
        if (cry_env_seal_response(envb, in, k ? cbor : NULL, k ? sizeof(cbor) : 0, &r, &rlen,
                                  NULL) != 0)
            abort();
        cry_env_inreq_free(in);
        in = NULL;
        cry_env_free(envb);
        if (k == 1) {
            /* Opening it confirms a's session: the next request uses it. */
            if (cry_env_open_response(fz.enva, fz.q0, r, rlen, &pt, &ptlen, NULL) != 0)
                abort();
            free(pt);
            pt = NULL;
        }
        put(k ? "response-cbor" : "response-empty", r, rlen);
        if (k == 0) {
            first = r;
            first_len = rlen;
        } else {
            free(r);
        }
        r = NULL;
    }
    if (cry_env_seal_request(fz.enva, "fuzz-b", cbor, sizeof(cbor), &s, &slen, &qs, NULL) != 0 ||
        !cry_env_req_is_session(qs))
        abort();
    check_request(s, slen, 1);
    put("session", s, slen);
    free(s);
    cry_env_req_free(qs);
    /* The target re-derives the context of R0 from the seeded stream: a
     * response seed must open against that re-derived context. */
    fz_make_q0();
    if (cry_env_open_response(fz.enva, fz.q0, first, first_len, &pt, &ptlen, NULL) != 0)
        abort();
    free(pt);
    free(first);
    return 0;
}
