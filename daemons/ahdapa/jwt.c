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
    unsigned char *buf;
    size_t len = 0;
    json_t *j;
    struct ut_err e2 = {{0}};

    buf = malloc(n * 3 / 4 + 3);
    if (buf == NULL) {
        ut_err_set(err, "out of memory");
        return NULL;
    }
    if (ut_b64_decode(p, n, buf, &len, 1) < 0) {
        free(buf);
        ut_err_set(err, "JWT %s is not base64url", what);
        return NULL;
    }
    j = http_parse_json(buf, len, &e2);
    free(buf);
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

char *ahdapa_jwt_sign_es256(struct evp_pkey_st *key, const json_t *header, const json_t *claims,
                            struct ut_err *err)
{
    struct jwt_tls *t = tls_get();
    unsigned char digest[32], der[80], rs[64];
    const unsigned char *dp = der;
    size_t derlen = sizeof(der), hl = 0, cl = 0;
    char *h = NULL, *c = NULL, *out = NULL;
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r, *s;

    if (t == NULL) {
        ut_err_set(err, "out of memory");
        return NULL;
    }
    if (t->sign_key != key || t->sign_ctx == NULL) {
        EVP_PKEY_CTX_free(t->sign_ctx);
        t->sign_key = NULL;
        t->sign_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
        if (t->sign_ctx == NULL || EVP_PKEY_sign_init(t->sign_ctx) <= 0) {
            EVP_PKEY_CTX_free(t->sign_ctx);
            t->sign_ctx = NULL;
            ut_err_set(err, "cannot set up the ES256 signing context");
            return NULL;
        }
        t->sign_key = key;
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
    if (ahdapa_sha256(out, hl + 1 + cl, digest) < 0 ||
        EVP_PKEY_sign(t->sign_ctx, der, &derlen, digest, sizeof(digest)) <= 0 ||
        (sig = d2i_ECDSA_SIG(NULL, &dp, (long)derlen)) == NULL) {
        ut_err_set(err, "ES256 signing failed");
        free(out);
        out = NULL;
        goto out;
    }
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, rs, 32) != 32 || BN_bn2binpad(s, rs + 32, 32) != 32) {
        ut_err_set(err, "ES256 signature out of range");
        free(out);
        out = NULL;
        goto out;
    }
    out[hl + 1 + cl] = '.';
    ut_b64_encode(rs, sizeof(rs), out + hl + 2 + cl, 1);
out:
    ECDSA_SIG_free(sig);
    free(h);
    free(c);
    return out;
}

int ahdapa_jwt_verify_es256(struct evp_pkey_st *pub, const struct ahdapa_jwt *j)
{
    struct jwt_tls *t = tls_get();
    unsigned char digest[32], der[80], *dp = der;
    ECDSA_SIG *sig;
    BIGNUM *r, *s;
    int derlen, ok;

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
    sig = ECDSA_SIG_new();
    r = BN_bin2bn(j->sig, 32, NULL);
    s = BN_bin2bn(j->sig + 32, 32, NULL);
    if (sig == NULL || r == NULL || s == NULL || !ECDSA_SIG_set0(sig, r, s)) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return -ENOMEM;
    }
    derlen = i2d_ECDSA_SIG(sig, &dp);
    ECDSA_SIG_free(sig);
    if (derlen <= 0)
        return -EBADMSG;
    ok = EVP_PKEY_verify(t->verify_ctx, der, (size_t)derlen, digest, sizeof(digest));
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
