/*
 * p256.c - ECDSA P-256 with raw keys and fixed-length signatures.
 *
 * Keys travel as a 32-byte scalar (private) and a 65-byte SEC1
 * uncompressed point (public); signatures as r||s, 32 bytes each, so the
 * envelope has no variable-length DER inside it. OpenSSL 3 EVP_PKEY only
 * (no EC_KEY); EC_GROUP/EC_POINT are used only to compute the public point
 * of an imported scalar.
 */
#include "crypto/env_int.h"

#include <errno.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>

#include "util/mem.h"

#define P256_GROUP   "prime256v1"
#define P256_DER_MAX 80 /* SEQUENCE { INTEGER r, INTEGER s }: at most 72 */

static int fromdata(OSSL_PARAM *params, int selection, EVP_PKEY **out)
{
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    int rc = -EIO;

    if (pctx == NULL || EVP_PKEY_fromdata_init(pctx) != 1)
        goto out;
    if (EVP_PKEY_fromdata(pctx, out, selection, params) != 1) {
        rc = -EINVAL;
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_CTX_free(pctx);
    return rc;
}

int p256_from_priv(const uint8_t priv[CRY_P256_PRIV_BYTES], EVP_PKEY **out,
                   uint8_t pub[CRY_P256_PUB_BYTES])
{
    EC_GROUP *group = NULL;
    EC_POINT *point = NULL;
    BN_CTX *bnctx = NULL;
    BIGNUM *d = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    int rc = -EIO;

    *out = NULL;
    group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    point = group ? EC_POINT_new(group) : NULL;
    bnctx = BN_CTX_secure_new();
    d = BN_secure_new(); /* secure heap when configured; always cleared */
    if (group == NULL || point == NULL || bnctx == NULL || d == NULL ||
        BN_bin2bn(priv, CRY_P256_PRIV_BYTES, d) == NULL)
        goto out;
    if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(group)) >= 0) {
        rc = -EINVAL;
        goto out;
    }
    if (EC_POINT_mul(group, point, d, NULL, NULL, bnctx) != 1 ||
        EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED, pub, CRY_P256_PUB_BYTES,
                           bnctx) != CRY_P256_PUB_BYTES)
        goto out;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, P256_GROUP, 0) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, CRY_P256_PUB_BYTES) !=
            1)
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld); /* the secure BN goes to the secure block */
    if (params == NULL)
        goto out;
    rc = fromdata(params, EVP_PKEY_KEYPAIR, out);
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    BN_CTX_free(bnctx);
    EC_POINT_clear_free(point);
    EC_GROUP_free(group);
    return rc;
}

int p256_from_pub(const uint8_t pub[CRY_P256_PUB_BYTES], EVP_PKEY **out)
{
    OSSL_PARAM params[3];
    EVP_PKEY_CTX *check = NULL;
    char group[] = P256_GROUP;
    int rc;

    *out = NULL;
    if (pub[0] != 0x04) /* uncompressed only: one encoding per key */
        return -EINVAL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] =
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pub, CRY_P256_PUB_BYTES);
    params[2] = OSSL_PARAM_construct_end();
    rc = fromdata(params, EVP_PKEY_PUBLIC_KEY, out);
    if (rc)
        return rc;
    /* fromdata already refuses points off the curve; the full public check
     * also refuses the point at infinity and small-order points. */
    check = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL);
    if (check == NULL) {
        rc = -EIO;
    } else if (EVP_PKEY_public_check(check) != 1) {
        rc = -EINVAL;
    }
    EVP_PKEY_CTX_free(check);
    if (rc) {
        EVP_PKEY_free(*out);
        *out = NULL;
    }
    return rc;
}

int p256_sign(EVP_PKEY *key, const uint8_t *m, size_t len, uint8_t sig[CRY_P256_SIG_BYTES])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t der[P256_DER_MAX];
    size_t der_len = sizeof(der);
    const unsigned char *p = der;
    ECDSA_SIG *es = NULL;
    const BIGNUM *r, *s;
    int rc = -EIO;

    if (md == NULL || EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) != 1 ||
        EVP_DigestSign(md, der, &der_len, m, len) != 1)
        goto out;
    es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    if (es == NULL)
        goto out;
    ECDSA_SIG_get0(es, &r, &s);
    if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32)
        goto out;
    rc = 0;
out:
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    return rc;
}

int p256_verify(EVP_PKEY *key, const uint8_t *m, size_t len, const uint8_t sig[CRY_P256_SIG_BYTES])
{
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    unsigned char *der = NULL;
    int der_len, rc = -ENOMEM;

    if (es == NULL || r == NULL || s == NULL)
        goto out;
    /* r or s of 0 is never valid; out-of-range values fail the verify. */
    if (BN_is_zero(r) || BN_is_zero(s)) {
        rc = CRY_ENV_E_SIGNATURE;
        goto out;
    }
    if (ECDSA_SIG_set0(es, r, s) != 1)
        goto out;
    r = s = NULL; /* owned by es now */
    der_len = i2d_ECDSA_SIG(es, &der);
    md = EVP_MD_CTX_new();
    if (der_len <= 0 || md == NULL)
        goto out;
    rc = -EIO;
    if (EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) != 1)
        goto out;
    rc = EVP_DigestVerify(md, der, (size_t)der_len, m, len) == 1 ? 0 : CRY_ENV_E_SIGNATURE;
out:
    OPENSSL_free(der);
    EVP_MD_CTX_free(md);
    ECDSA_SIG_free(es);
    BN_free(r);
    BN_free(s);
    return rc;
}
