/*
 * xwing.c - X-Wing hybrid KEM (draft-connolly-cfrg-xwing-kem-06 .. -10):
 * ML-KEM-768 (mlkem.c) + X25519 (OpenSSL), SHAKE256 key expansion and a
 * SHA3-256 combiner (both through OpenSSL's EVP).
 *
 *   expand(sk)  = SHAKE256(sk, 96): d = [0,32), z = [32,64), sk_X = [64,96)
 *   pk          = ek_M (1184) || pk_X = X25519(sk_X, 9) (32)
 *   ct          = ct_M (1088) || ct_X = X25519(eseed[32:64], 9) (32)
 *   ss          = SHA3-256(ss_M || ss_X || ct_X || pk_X || "\.//^\")
 *
 * The private key is the 32-byte seed; decapsulation re-expands it (one
 * ML-KEM keygen per decapsulation, as the draft specifies).
 *
 * X25519 and all-zero outputs: the draft uses X25519 exactly as RFC 7748
 * §5, without the optional all-zero check. OpenSSL refuses to derive an
 * all-zero secret (a low-order ct_X or pk_X), so we map exactly that
 * refusal to ss_X = 32 zero bytes, the RFC 7748 value: decapsulation of a
 * hostile ct_X still returns a secret (bound to ct_X by the combiner and
 * protected by ML-KEM) instead of an error. Whether ct_X/pk_X is low order
 * is a public property of public inputs, so this branch leaks nothing.
 */
#include "crypto/kem.h"

#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/proverr.h>
#include <openssl/rand.h>

#include "crypto/mlkem_internal.h"
#include "util/mem.h"

#define X25519_BYTES 32

static const uint8_t xwing_label[6] = {0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c}; /* \.//^\ */

/* SHAKE256(in, outlen) through EVP; 0 or -EIO. */
static int shake256(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen)
{
    EVP_MD *md = EVP_MD_fetch(NULL, "SHAKE256", NULL);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = -EIO;

    if (md != NULL && ctx != NULL && EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
        EVP_DigestUpdate(ctx, in, inlen) == 1 && EVP_DigestFinalXOF(ctx, out, outlen) == 1)
        rc = 0;
    EVP_MD_CTX_free(ctx); /* cleanses the sponge state */
    EVP_MD_free(md);
    return rc;
}

/* The X-Wing combiner; 0 or -EIO. */
static int combiner(uint8_t ss[CRY_XWING_SS_BYTES], const uint8_t ss_m[32], const uint8_t ss_x[32],
                    const uint8_t ct_x[32], const uint8_t pk_x[32])
{
    EVP_MD *md = EVP_MD_fetch(NULL, "SHA3-256", NULL);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 0;
    int rc = -EIO;

    if (md != NULL && ctx != NULL && EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
        EVP_DigestUpdate(ctx, ss_m, 32) == 1 && EVP_DigestUpdate(ctx, ss_x, 32) == 1 &&
        EVP_DigestUpdate(ctx, ct_x, 32) == 1 && EVP_DigestUpdate(ctx, pk_x, 32) == 1 &&
        EVP_DigestUpdate(ctx, xwing_label, sizeof(xwing_label)) == 1 &&
        EVP_DigestFinal_ex(ctx, ss, &len) == 1 && len == CRY_XWING_SS_BYTES)
        rc = 0;
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
    return rc;
}

/* pk = X25519(sk, 9); 0 or -EIO. */
static int x25519_base(uint8_t pk[X25519_BYTES], const uint8_t sk[X25519_BYTES])
{
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, X25519_BYTES);
    size_t len = X25519_BYTES;
    int rc = -EIO;

    if (key != NULL && EVP_PKEY_get_raw_public_key(key, pk, &len) == 1 && len == X25519_BYTES)
        rc = 0;
    EVP_PKEY_free(key);
    return rc;
}

/* out = X25519(sk, u) as in RFC 7748 §5 (all zero for a low-order u, see the
 * file comment); 0 or -EIO. */
static int x25519(uint8_t out[X25519_BYTES], const uint8_t sk[X25519_BYTES],
                  const uint8_t u[X25519_BYTES])
{
    EVP_PKEY *key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, X25519_BYTES);
    EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, u, X25519_BYTES);
    EVP_PKEY_CTX *ctx = key ? EVP_PKEY_CTX_new(key, NULL) : NULL;
    size_t len = X25519_BYTES;
    int rc = -EIO;

    if (ctx != NULL && peer != NULL && EVP_PKEY_derive_init(ctx) == 1 &&
        EVP_PKEY_derive_set_peer(ctx, peer) == 1) {
        ERR_set_mark();
        if (EVP_PKEY_derive(ctx, out, &len) == 1 && len == X25519_BYTES) {
            rc = 0;
        } else {
            unsigned long e = ERR_peek_last_error();

            /* the only way the derivation itself fails: all-zero result */
            if (ERR_GET_LIB(e) == ERR_LIB_PROV &&
                ERR_GET_REASON(e) == PROV_R_FAILED_DURING_DERIVATION) {
                memset(out, 0, X25519_BYTES);
                rc = 0;
            }
        }
        ERR_pop_to_mark();
    }
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(key);
    return rc;
}

/* expandDecapsulationKey: fills pk (1216) and dk_M (2400); keeps sk_X. */
static int expand(const uint8_t seed[CRY_XWING_SK_BYTES], uint8_t pk[CRY_XWING_PK_BYTES],
                  uint8_t dk_m[CRY_MLKEM768_DK_BYTES], uint8_t sk_x[X25519_BYTES])
{
    uint8_t exp[96];
    int rc;

    rc = shake256(exp, sizeof(exp), seed, CRY_XWING_SK_BYTES);
    if (rc == 0)
        rc = cry_mlkem768_keygen(exp, exp + 32, pk, dk_m);
    if (rc == 0) {
        memcpy(sk_x, exp + 64, X25519_BYTES);
        rc = x25519_base(pk + CRY_MLKEM768_EK_BYTES, sk_x);
    }
    ut_memzero(exp, sizeof(exp));
    return rc;
}

int cry_xwing_keygen(const uint8_t seed[CRY_XWING_SK_BYTES], uint8_t pk[CRY_XWING_PK_BYTES])
{
    uint8_t dk_m[CRY_MLKEM768_DK_BYTES], sk_x[X25519_BYTES];
    int rc = expand(seed, pk, dk_m, sk_x);

    ut_memzero(dk_m, sizeof(dk_m));
    ut_memzero(sk_x, sizeof(sk_x));
    return rc;
}

int cry_xwing_encaps(const uint8_t pk[CRY_XWING_PK_BYTES],
                     const uint8_t eseed[CRY_XWING_ESEED_BYTES], uint8_t ct[CRY_XWING_CT_BYTES],
                     uint8_t ss[CRY_XWING_SS_BYTES])
{
    const uint8_t *pk_x = pk + CRY_MLKEM768_EK_BYTES, *ek_x = eseed + 32;
    uint8_t *ct_x = ct + CRY_MLKEM768_CT_BYTES;
    uint8_t ss_m[32], ss_x[32];
    int rc;

    /* ML-KEM first: it runs the §7.2 check on pk_M (-EINVAL). */
    rc = cry_mlkem768_encaps(pk, eseed, ct, ss_m);
    if (rc == 0)
        rc = x25519_base(ct_x, ek_x);
    if (rc == 0)
        rc = x25519(ss_x, ek_x, pk_x);
    if (rc == 0)
        rc = combiner(ss, ss_m, ss_x, ct_x, pk_x);
    ut_memzero(ss_m, sizeof(ss_m));
    ut_memzero(ss_x, sizeof(ss_x));
    return rc;
}

int cry_xwing_decaps(const uint8_t sk[CRY_XWING_SK_BYTES], const uint8_t ct[CRY_XWING_CT_BYTES],
                     uint8_t ss[CRY_XWING_SS_BYTES])
{
    uint8_t pk[CRY_XWING_PK_BYTES], dk_m[CRY_MLKEM768_DK_BYTES], sk_x[X25519_BYTES];
    uint8_t ss_m[32], ss_x[32];
    const uint8_t *ct_x = ct + CRY_MLKEM768_CT_BYTES;
    int rc;

    rc = expand(sk, pk, dk_m, sk_x);
    /* dk_m was generated just now: the §7.3 hash check cannot fail. */
    if (rc == 0)
        rc = cry_mlkem768_decaps_unchecked(dk_m, ct, ss_m);
    if (rc == 0)
        rc = x25519(ss_x, sk_x, ct_x);
    if (rc == 0)
        rc = combiner(ss, ss_m, ss_x, ct_x, pk + CRY_MLKEM768_EK_BYTES);
    ut_memzero(dk_m, sizeof(dk_m));
    ut_memzero(sk_x, sizeof(sk_x));
    ut_memzero(ss_m, sizeof(ss_m));
    ut_memzero(ss_x, sizeof(ss_x));
    return rc;
}

int cry_xwing_keygen_rand(uint8_t sk[CRY_XWING_SK_BYTES], uint8_t pk[CRY_XWING_PK_BYTES])
{
    int rc = -EIO;

    if (RAND_bytes(sk, CRY_XWING_SK_BYTES) == 1)
        rc = cry_xwing_keygen(sk, pk);
    if (rc != 0)
        ut_memzero(sk, CRY_XWING_SK_BYTES);
    return rc;
}

int cry_xwing_encaps_rand(const uint8_t pk[CRY_XWING_PK_BYTES], uint8_t ct[CRY_XWING_CT_BYTES],
                          uint8_t ss[CRY_XWING_SS_BYTES])
{
    uint8_t eseed[CRY_XWING_ESEED_BYTES];
    int rc = -EIO;

    if (RAND_bytes(eseed, sizeof(eseed)) == 1)
        rc = cry_xwing_encaps(pk, eseed, ct, ss);
    ut_memzero(eseed, sizeof(eseed));
    return rc;
}
