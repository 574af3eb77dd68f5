/*
 * env_kdf.c - the symmetric primitives of the envelope: HKDF-SHA256 with
 * the labels of docs/gossip-wire.md §4, AES-256-GCM, SHA-256. OpenSSL 3
 * EVP only; the algorithms are fetched once per cry_env.
 */
#include "crypto/env_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "util/mem.h"

#define ENV_LABEL_PREFIX "gossip-envelope/v1"
/* prefix 0 label 0 u8 S u8 R extra: labels are short, extra <= 56 bytes. */
#define ENV_INFO_MAX (sizeof(ENV_LABEL_PREFIX) + 32 + 2 + 2 * CRY_ENV_ID_MAX + 64)
/* EVP_*Update take int lengths: feed big payloads in chunks. */
#define ENV_CHUNK (1 << 30)

int env_algs_init(struct env_algs *a)
{
    memset(a, 0, sizeof(*a));
    a->hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    a->gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    a->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (a->hkdf == NULL || a->gcm == NULL || a->sha256 == NULL) {
        env_algs_free(a);
        return -EIO;
    }
    return 0;
}

void env_algs_free(struct env_algs *a)
{
    EVP_KDF_free(a->hkdf);
    EVP_CIPHER_free(a->gcm);
    EVP_MD_free(a->sha256);
    memset(a, 0, sizeof(*a));
}

int env_hkdf(const struct env_algs *a, const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
             size_t salt_len, const char *label, const uint8_t *s, size_t s_len, const uint8_t *r,
             size_t r_len, const uint8_t *extra, size_t extra_len, uint8_t *out, size_t out_len)
{
    uint8_t info[ENV_INFO_MAX];
    size_t n = 0, label_len = strlen(label);
    EVP_KDF_CTX *kctx = NULL;
    OSSL_PARAM params[5];
    char digest[] = "SHA256";
    int rc = -EIO;

    if (label_len > 32 || s_len > CRY_ENV_ID_MAX || r_len > CRY_ENV_ID_MAX || extra_len > 64)
        return -EINVAL;
    memcpy(info, ENV_LABEL_PREFIX, sizeof(ENV_LABEL_PREFIX)); /* with its NUL */
    n = sizeof(ENV_LABEL_PREFIX);
    memcpy(info + n, label, label_len + 1);
    n += label_len + 1;
    info[n++] = (uint8_t)s_len;
    memcpy(info + n, s, s_len);
    n += s_len;
    info[n++] = (uint8_t)r_len;
    memcpy(info + n, r, r_len);
    n += r_len;
    if (extra_len)
        memcpy(info + n, extra, extra_len);
    n += extra_len;

    kctx = EVP_KDF_CTX_new(a->hkdf);
    if (kctx == NULL)
        goto out;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n);
    params[4] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out, out_len, params) != 1)
        goto out;
    rc = 0;
out:
    EVP_KDF_CTX_free(kctx); /* clears the key material it copied */
    ut_memzero(info, sizeof(info));
    if (rc)
        ut_memzero(out, out_len);
    return rc;
}

static int gcm_update(EVP_CIPHER_CTX *c, int enc, uint8_t *out, const uint8_t *in, size_t len)
{
    int outl;

    while (len > 0) {
        int n = len > ENV_CHUNK ? ENV_CHUNK : (int)len;

        if ((enc ? EVP_EncryptUpdate(c, out, &outl, in, n)
                 : EVP_DecryptUpdate(c, out, &outl, in, n)) != 1 ||
            outl != n)
            return -EIO;
        in += n;
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

int env_gcm_seal(const struct env_algs *a, const uint8_t kiv[ENV_KIV_BYTES], const uint8_t *aad,
                 size_t aad_len, const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[ENV_TAG])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    OSSL_PARAM params[2];
    uint8_t last[16];
    int outl, rc = -EIO;

    if (c == NULL || aad_len > INT_MAX)
        goto out;
    /* Default GCM IV length is 12 bytes, which is ours. */
    if (EVP_EncryptInit_ex2(c, a->gcm, kiv, kiv + ENV_KEY_BYTES, NULL) != 1 ||
        EVP_EncryptUpdate(c, NULL, &outl, aad, (int)aad_len) != 1)
        goto out;
    if (gcm_update(c, 1, ct, pt, len) != 0 || EVP_EncryptFinal_ex(c, last, &outl) != 1 || outl != 0)
        goto out;
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tag, ENV_TAG);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_CIPHER_CTX_get_params(c, params) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c); /* cleanses the key schedule */
    return rc;
}

int env_gcm_open(const struct env_algs *a, const uint8_t kiv[ENV_KIV_BYTES], const uint8_t *aad,
                 size_t aad_len, const uint8_t *ct, size_t len, const uint8_t tag[ENV_TAG],
                 uint8_t *pt)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    OSSL_PARAM params[2];
    uint8_t tagbuf[ENV_TAG], last[16];
    int outl, rc = -EIO;

    if (c == NULL || aad_len > INT_MAX)
        goto out;
    memcpy(tagbuf, tag, ENV_TAG);
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_CIPHER_PARAM_AEAD_TAG, tagbuf, ENV_TAG);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_DecryptInit_ex2(c, a->gcm, kiv, kiv + ENV_KEY_BYTES, NULL) != 1 ||
        EVP_DecryptUpdate(c, NULL, &outl, aad, (int)aad_len) != 1 ||
        gcm_update(c, 0, pt, ct, len) != 0 || EVP_CIPHER_CTX_set_params(c, params) != 1)
        goto out;
    /* Final compares the tag in constant time. */
    if (EVP_DecryptFinal_ex(c, last, &outl) != 1) {
        rc = CRY_ENV_E_DECRYPT;
        goto out;
    }
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    if (rc)
        ut_memzero(pt, len); /* never hand out unauthenticated plaintext */
    return rc;
}

int env_sha256(const struct env_algs *a, const uint8_t *p, size_t n,
               uint8_t out[CRY_ENV_HASH_BYTES])
{
    unsigned int len = 0;

    if (EVP_Digest(p, n, out, &len, a->sha256, NULL) != 1 || len != CRY_ENV_HASH_BYTES)
        return -EIO;
    return 0;
}

void env_sig_msg(const uint8_t h[CRY_ENV_HASH_BYTES], uint8_t m[ENV_SIG_MSG_LEN])
{
    memcpy(m, ENV_SIG_CTX, sizeof(ENV_SIG_CTX)); /* with its NUL */
    memcpy(m + sizeof(ENV_SIG_CTX), h, CRY_ENV_HASH_BYTES);
}
