/*
 * mlkem_openssl.c - ML-KEM-768 through OpenSSL >= 3.5 (EVP_PKEY "ML-KEM-768").
 *
 * Compiled to nothing unless lib/crypto/meson.build found OpenSSL >= 3.5 and
 * defined CRY_HAVE_OPENSSL_MLKEM. NOTE: written against the OpenSSL 3.5
 * manual pages (EVP_PKEY-ML-KEM(7), EVP_KEM-ML-KEM(7)) but never compiled or
 * run in this tree's CI, which has OpenSSL 3.0: run the unit tests (the
 * ACVP vectors go through the public API, hence through this file) the
 * first time a 3.5 build exists.
 *
 * Mapping: keygen sets OSSL_PKEY_PARAM_ML_KEM_SEED = d || z before
 * EVP_PKEY_generate and reads back "pub" (ek, 1184 bytes) and "priv" (the
 * FIPS 203 expanded dk, 2400 bytes); encapsulation passes m as
 * OSSL_KEM_PARAM_IKME; decapsulation imports the 2400-byte dk as "priv".
 * The §7.2/§7.3 input checks are done by mlkem.c before these are called.
 */
#ifdef CRY_HAVE_OPENSSL_MLKEM

#include "crypto/mlkem_internal.h"

#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "util/mem.h"

#define ALG "ML-KEM-768"

/* Imports an ML-KEM-768 key from its encoded public ("pub") or private
 * ("priv") form. */
static EVP_PKEY *import_key(const char *param, const uint8_t *key, size_t len, int selection)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, ALG, NULL);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM params[2];

    params[0] = OSSL_PARAM_construct_octet_string(param, (void *)key, len);
    params[1] = OSSL_PARAM_construct_end();
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, selection, params) <= 0) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

int cry_mlkem768_ossl_keygen(const uint8_t d[32], const uint8_t z[32],
                             uint8_t ek[CRY_MLKEM768_EK_BYTES], uint8_t dk[CRY_MLKEM768_DK_BYTES])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, ALG, NULL);
    EVP_PKEY *pkey = NULL;
    uint8_t seed[64];
    OSSL_PARAM params[2];
    size_t eklen = 0, dklen = 0;
    int rc = -EIO;

    memcpy(seed, d, 32);
    memcpy(seed + 32, z, 32);
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_ML_KEM_SEED, seed, sizeof(seed));
    params[1] = OSSL_PARAM_construct_end();
    if (ctx != NULL && EVP_PKEY_keygen_init(ctx) > 0 && EVP_PKEY_CTX_set_params(ctx, params) > 0 &&
        EVP_PKEY_generate(ctx, &pkey) > 0 &&
        EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, ek, CRY_MLKEM768_EK_BYTES,
                                        &eklen) > 0 &&
        EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, dk, CRY_MLKEM768_DK_BYTES,
                                        &dklen) > 0 &&
        eklen == CRY_MLKEM768_EK_BYTES && dklen == CRY_MLKEM768_DK_BYTES)
        rc = 0;
    ut_memzero(seed, sizeof(seed));
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

int cry_mlkem768_ossl_encaps(const uint8_t ek[CRY_MLKEM768_EK_BYTES], const uint8_t m[32],
                             uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES])
{
    EVP_PKEY *pkey =
        import_key(OSSL_PKEY_PARAM_PUB_KEY, ek, CRY_MLKEM768_EK_BYTES, EVP_PKEY_PUBLIC_KEY);
    EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
    uint8_t ikme[32];
    OSSL_PARAM params[2];
    size_t ctlen = CRY_MLKEM768_CT_BYTES, sslen = CRY_MLKEM_SS_BYTES;
    int rc = -EIO;

    memcpy(ikme, m, sizeof(ikme));
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_KEM_PARAM_IKME, ikme, sizeof(ikme));
    params[1] = OSSL_PARAM_construct_end();
    if (ctx != NULL && EVP_PKEY_encapsulate_init(ctx, params) > 0 &&
        EVP_PKEY_encapsulate(ctx, ct, &ctlen, ss, &sslen) > 0 && ctlen == CRY_MLKEM768_CT_BYTES &&
        sslen == CRY_MLKEM_SS_BYTES)
        rc = 0;
    ut_memzero(ikme, sizeof(ikme));
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return rc;
}

int cry_mlkem768_ossl_decaps(const uint8_t dk[CRY_MLKEM768_DK_BYTES],
                             const uint8_t ct[CRY_MLKEM768_CT_BYTES],
                             uint8_t ss[CRY_MLKEM_SS_BYTES])
{
    EVP_PKEY *pkey =
        import_key(OSSL_PKEY_PARAM_PRIV_KEY, dk, CRY_MLKEM768_DK_BYTES, EVP_PKEY_KEYPAIR);
    EVP_PKEY_CTX *ctx = pkey ? EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL) : NULL;
    size_t sslen = CRY_MLKEM_SS_BYTES;
    int rc = -EIO;

    if (ctx != NULL && EVP_PKEY_decapsulate_init(ctx, NULL) > 0 &&
        EVP_PKEY_decapsulate(ctx, ss, &sslen, ct, CRY_MLKEM768_CT_BYTES) > 0 &&
        sslen == CRY_MLKEM_SS_BYTES)
        rc = 0;
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey); /* EVP_PKEY_free cleanses the key material */
    return rc;
}

#else
/* ISO C wants at least one declaration per translation unit. */
typedef int cry_mlkem_openssl_unused;
#endif
