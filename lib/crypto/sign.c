/*
 * sign.c - domain-separated P-256 signatures for application data (see
 * sign.h). A thin layer over p256.c and the identity's key.
 */
#include "crypto/sign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#include "crypto/env_int.h"

#define RESERVED_PREFIX "gossip-envelope"

static int ctx_ok(const char *ctx, size_t *len)
{
    size_t n = ctx ? strnlen(ctx, CRY_SIGN_CTX_MAX + 1) : 0;

    if (n == 0 || n > CRY_SIGN_CTX_MAX ||
        strncmp(ctx, RESERVED_PREFIX, sizeof(RESERVED_PREFIX) - 1) == 0)
        return -EINVAL;
    *len = n;
    return 0;
}

/* ctx || 0x00 || m in one malloc'd buffer (p256_sign takes one range). */
static int framed(const char *ctx, const uint8_t *m, size_t len, uint8_t **out, size_t *out_len)
{
    size_t n;
    uint8_t *p;

    if (ctx_ok(ctx, &n) < 0 || (m == NULL && len > 0) || len > SIZE_MAX - n - 1)
        return -EINVAL;
    p = malloc(n + 1 + len);
    if (p == NULL)
        return -ENOMEM;
    memcpy(p, ctx, n);
    p[n] = 0;
    if (len > 0)
        memcpy(p + n + 1, m, len);
    *out = p;
    *out_len = n + 1 + len;
    return 0;
}

int cry_sign(const struct cry_identity *id, const char *ctx, const uint8_t *m, size_t len,
             uint8_t sig[CRY_P256_SIG_BYTES])
{
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc;

    if (id == NULL || sig == NULL)
        return -EINVAL;
    rc = framed(ctx, m, len, &buf, &n);
    if (rc < 0)
        return rc;
    rc = cry_identity_sign_(id, buf, n, sig);
    ERR_clear_error();
    free(buf);
    return rc;
}

int cry_verify(const uint8_t pub[CRY_P256_PUB_BYTES], const char *ctx, const uint8_t *m, size_t len,
               const uint8_t sig[CRY_P256_SIG_BYTES])
{
    EVP_PKEY *key = NULL;
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc;

    if (pub == NULL || sig == NULL)
        return -EINVAL;
    rc = framed(ctx, m, len, &buf, &n);
    if (rc < 0)
        return rc;
    rc = p256_from_pub(pub, &key);
    if (rc < 0)
        goto out;
    rc = p256_verify(key, buf, n, sig);
out:
    ERR_clear_error();
    EVP_PKEY_free(key);
    free(buf);
    return rc;
}
