/*
 * jwt.c - compact JWS (RFC 7515) with ES256 only: parse, sign, verify, and
 * the P-256 JWK conversions. Hot-path friendly: the digest and the signing
 * context are per thread (no lock shared between workers); the verify
 * context is cached per thread for the last key used.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "ahdapa.h"
#include "util/b64.h"

struct jwt_tls {
    EVP_MD_CTX *md;
    EVP_PKEY *sign_key; /* the key sign_ctx was made for (borrowed) */
    EVP_PKEY_CTX *sign_ctx;
    EVP_PKEY *verify_key; /* up-ref'd */
    EVP_PKEY_CTX *verify_ctx;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md; /* fetched once, read-only afterwards */

static void tls_free(void *p)
{
    struct jwt_tls *t = p;

    if (t == NULL)
        return;
    EVP_MD_CTX_free(t->md);
    EVP_PKEY_CTX_free(t->sign_ctx);
    EVP_PKEY_CTX_free(t->verify_ctx);
    EVP_PKEY_free(t->verify_key);
    free(t);
}

static void tls_init(void)
{
    (void)pthread_key_create(&tls_key, tls_free);
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static struct jwt_tls *tls_get(void)
{
    struct jwt_tls *t;

    pthread_once(&tls_once, tls_init);
    if (sha256_md == NULL)
        return NULL;
    t = pthread_getspecific(tls_key);
    if (t == NULL) {
        t = calloc(1, sizeof(*t));
        if (t == NULL)
            return NULL;
        t->md = EVP_MD_CTX_new();
        if (t->md == NULL || pthread_setspecific(tls_key, t) != 0) {
            tls_free(t);
            return NULL;
        }
    }
    return t;
}

void ahdapa_jwt_thread_cleanup(void)
{
    pthread_once(&tls_once, tls_init);
    tls_free(pthread_getspecific(tls_key));
    pthread_setspecific(tls_key, NULL);
}

void ahdapa_pkey_free(struct evp_pkey_st *key)
{
    EVP_PKEY_free(key);
}

int ahdapa_sha256(const void *p, size_t n, unsigned char out[32])
{
    struct jwt_tls *t = tls_get();
    unsigned int len = 0;

    if (t == NULL || !EVP_DigestInit_ex2(t->md, sha256_md, NULL) ||
        !EVP_DigestUpdate(t->md, p, n) || !EVP_DigestFinal_ex(t->md, out, &len) || len != 32)
        return -EIO;
    return 0;
}

/* ---- parsing ---- */

static json_t *decode_part(const char *p, size_t n, const char *what, struct ut_err *err)
{
    unsigned char buf[AHDAPA_JWT_MAX * 3 / 4 + 3]; /* n < AHDAPA_JWT_MAX: no allocation */
    size_t len = 0;
    json_t *j;
    struct ut_err e2 = {{0}};

    if (n > AHDAPA_JWT_MAX || ut_b64_decode(p, n, buf, &len, 1) < 0) {
        ut_err_set(err, "JWT %s is not base64url", what);
        return NULL;
    }
    j = http_parse_json(buf, len, &e2);
    if (j == NULL)
        ut_err_set(err, "JWT %s is not a JSON object: %s", what, e2.msg);
    return j;
}

void ahdapa_jwt_clear(struct ahdapa_jwt *j)
{
    json_decref(j->header);
    json_decref(j->claims);
    memset(j, 0, sizeof(*j));
}

int ahdapa_jwt_parse(const char *tok, size_t len, struct ahdapa_jwt *out, struct ut_err *err)
{
    const char *d1, *d2, *alg, *kid;
    unsigned char sig[64 + 3];
    size_t siglen = 0;
    json_t *v;

    memset(out, 0, sizeof(*out));
    if (tok == NULL || len == 0 || len > AHDAPA_JWT_MAX) {
        ut_err_set(err, "JWT empty or longer than %d bytes", AHDAPA_JWT_MAX);
        return -EINVAL;
    }
    d1 = memchr(tok, '.', len);
    d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok)) : NULL;
    if (d1 == NULL || d2 == NULL || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok))) {
        ut_err_set(err, "JWT must have exactly three dot-separated parts");
        return -EINVAL;
    }
    if ((size_t)(tok + len - (d2 + 1)) != 86 || ut_b64_decode(d2 + 1, 86, sig, &siglen, 1) < 0 ||
        siglen != 64) {
        ut_err_set(err, "JWT signature is not a 64-byte base64url ES256 signature");
        return -EINVAL;
    }
    out->header = decode_part(tok, (size_t)(d1 - tok), "header", err);
    if (out->header == NULL)
        goto bad;
    alg = json_string_value(json_object_get(out->header, "alg"));
    if (alg == NULL || strcmp(alg, "ES256") != 0) {
        ut_err_set(err, "JWT alg must be \"ES256\"");
        goto bad;
    }
    if (json_object_get(out->header, "crit")) {
        ut_err_set(err, "JWT header \"crit\" is not supported");
        goto bad;
    }
    v = json_object_get(out->header, "kid");
    kid = json_string_value(v);
    if (v && (kid == NULL || *kid == '\0' || strlen(kid) >= AHDAPA_KID_MAX)) {
        ut_err_set(err, "JWT kid must be a non-empty string under %d bytes", AHDAPA_KID_MAX);
        goto bad;
    }
    out->claims = decode_part(d1 + 1, (size_t)(d2 - d1 - 1), "payload", err);
    if (out->claims == NULL)
        goto bad;
    out->signed_part = tok;
    out->signed_len = (size_t)(d2 - tok);
    memcpy(out->sig, sig, 64);
    return 0;
bad:
    ahdapa_jwt_clear(out);
    return -EINVAL;
}

/* ---- signing and verifying ---- */

static char *b64url_json(const json_t *j, size_t *outlen)
{
    char *txt = json_dumps(j, JSON_COMPACT), *b;
    size_t n;

    if (txt == NULL)
        return NULL;
    n = strlen(txt);
    b = malloc(ut_b64_enclen(n, 1) + 1);
    if (b)
        ut_b64_encode(txt, n, b, 1);
    free(txt);
    if (b)
        *outlen = strlen(b);
    return b;
}

/* DER ECDSA-Sig-Value -> r || s (32 bytes each). 0 or -1. */
static int der_to_rs(const unsigned char *d, size_t n, unsigned char rs[64])
{
    size_t i = 0, seq;

    if (n < 8 || d[i++] != 0x30)
        return -1;
    if (d[i] & 0x80) { /* long form: at most 0x81 nn for our sizes */
        if (d[i] != 0x81 || n < 3)
            return -1;
        seq = d[i + 1];
        i += 2;
    } else {
        seq = d[i++];
    }
    if (seq != n - i)
        return -1;
    for (int k = 0; k < 2; k++) {
        size_t l;

        if (i + 2 > n || d[i] != 0x02)
            return -1;
        l = d[i + 1];
        i += 2;
        if (l == 0 || l > 33 || i + l > n)
            return -1;
        while (l > 0 && d[i] == 0) { /* sign padding / leading zeros */
            i++;
            l--;
        }
        if (l > 32)
            return -1;
        memset(rs + 32 * k, 0, 32 - l);
        memcpy(rs + 32 * k + (32 - l), d + i, l);
        i += l;
    }
    return i == n ? 0 : -1;
}

/* r || s -> DER ECDSA-Sig-Value (minimal INTEGERs, as i2d_ECDSA_SIG). */
static size_t rs_to_der(const unsigned char rs[64], unsigned char der[72])
{
    size_t o = 2;

    for (int k = 0; k < 2; k++) {
        const unsigned char *v = rs + 32 * k;
        size_t skip = 0, l;

        while (skip < 31 && v[skip] == 0)
            skip++;
        l = 32 - skip;
        der[o++] = 0x02;
        if (v[skip] & 0x80) {
            der[o++] = (unsigned char)(l + 1);
            der[o++] = 0;
        } else {
            der[o++] = (unsigned char)l;
        }
        memcpy(der + o, v + skip, l);
        o += l;
    }
    der[0] = 0x30;
    der[1] = (unsigned char)(o - 2);
    return o;
}

int ahdapa_jwt_sign_input(struct evp_pkey_st *key, const char *input, size_t len, char sig[87])
{
    struct jwt_tls *t = tls_get();
    unsigned char digest[32], der[80], rs[64];
    size_t derlen = sizeof(der);

    if (t == NULL)
        return -ENOMEM;
    if (t->sign_key != key || t->sign_ctx == NULL) {
        EVP_PKEY_CTX_free(t->sign_ctx);
        t->sign_key = NULL;
        t->sign_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
        if (t->sign_ctx == NULL || EVP_PKEY_sign_init(t->sign_ctx) <= 0) {
            EVP_PKEY_CTX_free(t->sign_ctx);
            t->sign_ctx = NULL;
            return -EIO;
        }
        t->sign_key = key;
    }
    if (ahdapa_sha256(input, len, digest) < 0 ||
        EVP_PKEY_sign(t->sign_ctx, der, &derlen, digest, sizeof(digest)) <= 0 ||
        der_to_rs(der, derlen, rs) < 0)
        return -EIO;
    ut_b64_encode(rs, sizeof(rs), sig, 1);
    return 0;
}

char *ahdapa_jwt_sign_es256(struct evp_pkey_st *key, const json_t *header, const json_t *claims,
                            struct ut_err *err)
{
    size_t hl = 0, cl = 0;
    char *h = NULL, *c = NULL, *out = NULL;
    int rc;

    if (tls_get() == NULL) {
        ut_err_set(err, "out of memory");
        return NULL;
    }
    h = b64url_json(header, &hl);
    c = b64url_json(claims, &cl);
    if (h == NULL || c == NULL) {
        ut_err_set(err, "cannot serialize the JWT");
        goto out;
    }
    out = malloc(hl + cl + 2 + 86 + 1);
    if (out == NULL) {
        ut_err_set(err, "out of memory");
        goto out;
    }
    memcpy(out, h, hl);
    out[hl] = '.';
    memcpy(out + hl + 1, c, cl);
    rc = ahdapa_jwt_sign_input(key, out, hl + 1 + cl, out + hl + 2 + cl);
    if (rc < 0) {
        ut_err_set(err, rc == -EIO ? "ES256 signing failed" : "out of memory");
        free(out);
        out = NULL;
        goto out;
    }
    out[hl + 1 + cl] = '.';
out:
    free(h);
    free(c);
    return out;
}

int ahdapa_jwt_verify_es256(struct evp_pkey_st *pub, const struct ahdapa_jwt *j)
{
    struct jwt_tls *t = tls_get();
    unsigned char digest[32], der[72];
    size_t derlen;
    int ok;

    if (t == NULL)
        return -ENOMEM;
    if (t->verify_key != pub || t->verify_ctx == NULL) {
        EVP_PKEY_CTX_free(t->verify_ctx);
        EVP_PKEY_free(t->verify_key);
        t->verify_key = NULL;
        t->verify_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
        if (t->verify_ctx == NULL || EVP_PKEY_verify_init(t->verify_ctx) <= 0) {
            EVP_PKEY_CTX_free(t->verify_ctx);
            t->verify_ctx = NULL;
            return -EIO;
        }
        if (!EVP_PKEY_up_ref(pub))
            return -EIO;
        t->verify_key = pub;
    }
    if (ahdapa_sha256(j->signed_part, j->signed_len, digest) < 0)
        return -EIO;
    derlen = rs_to_der(j->sig, der);
    ok = EVP_PKEY_verify(t->verify_ctx, der, derlen, digest, sizeof(digest));
    return ok == 1 ? 0 : -EBADMSG;
}

/* ---- keys ---- */

struct evp_pkey_st *ahdapa_p256_generate(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int pub_point(EVP_PKEY *key, unsigned char pt[65])
{
    size_t n = 0;

    if (!EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, pt, 65, &n) || n != 65 ||
        pt[0] != 4)
        return -EINVAL;
    return 0;
}

json_t *ahdapa_jwk_public(struct evp_pkey_st *key, const char *kid)
{
    unsigned char pt[65];
    char x[48], y[48];

    if (pub_point(key, pt) < 0)
        return NULL;
    ut_b64_encode(pt + 1, 32, x, 1);
    ut_b64_encode(pt + 33, 32, y, 1);
    return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256", "x", x, "y", y,
                     "kid", kid, "use", "sig", "alg", "ES256");
}

static int coord(const json_t *jwk, const char *name, unsigned char out[32], struct ut_err *err)
{
    const char *s = json_string_value(json_object_get(jwk, name));
    unsigned char buf[48];
    size_t n = 0;

    if (s == NULL || strlen(s) != 43 || ut_b64_decode(s, 43, buf, &n, 1) < 0 || n != 32) {
        ut_err_set(err, "JWK \"%s\" must be 32 bytes in base64url", name);
        return -EINVAL;
    }
    memcpy(out, buf, 32);
    return 0;
}

struct evp_pkey_st *ahdapa_jwk_to_pkey(const json_t *jwk, struct ut_err *err)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    unsigned char pt[65];
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;

    if (!json_is_object(jwk) || kty == NULL || strcmp(kty, "EC") != 0 || crv == NULL ||
        strcmp(crv, "P-256") != 0) {
        ut_err_set(err, "JWK must be kty \"EC\" crv \"P-256\"");
        return NULL;
    }
    pt[0] = 4;
    if (coord(jwk, "x", pt + 1, err) < 0 || coord(jwk, "y", pt + 33, err) < 0)
        return NULL;
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        ut_err_set(err, "JWK is not a valid P-256 public key");
        EVP_PKEY_free(pk);
        pk = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return pk;
}

int ahdapa_jwk_kid(const char *node_id, struct evp_pkey_st *key, char kid[AHDAPA_KID_MAX])
{
    unsigned char pt[65], h[32], *buf;
    size_t n = strlen(node_id);

    if (pub_point(key, pt) < 0)
        return -EINVAL;
    buf = malloc(n + sizeof(pt));
    if (buf == NULL)
        return -ENOMEM;
    memcpy(buf, node_id, n);
    memcpy(buf + n, pt, sizeof(pt));
    n = ahdapa_sha256(buf, n + sizeof(pt), h) < 0 ? 0 : 1;
    free(buf);
    if (!n)
        return -EIO;
    ut_b64_encode(h, 8, kid, 1);
    return 0;
}
