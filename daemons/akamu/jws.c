/*
 * jws.c - RFC 8555 §6.2 request authentication: flattened JWS parsing,
 * JWK import/export, RFC 7638 thumbprints, signature and EAB MAC checks.
 * All cryptography is OpenSSL 3 EVP; this file only moves bytes around.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "jws.h"
#include "http/http.h"
#include "util/b64.h"
#include "util/mem.h"

/* ---- tables ---- */

enum fam { FAM_EC, FAM_RSA, FAM_ED25519, FAM_HMAC };

struct alg {
    const char *name;
    enum fam fam;
    const char *md;    /* digest; NULL for EdDSA (no prehash) */
    const char *group; /* EC: OpenSSL group name the key must have */
    size_t siglen;     /* exact signature bytes; 0: the RSA modulus size */
};

static const struct alg algs[] = {
    {"ES256", FAM_EC, "SHA256", "prime256v1", 64}, {"ES384", FAM_EC, "SHA384", "secp384r1", 96},
    {"ES512", FAM_EC, "SHA512", "secp521r1", 132}, {"RS256", FAM_RSA, "SHA256", NULL, 0},
    {"EdDSA", FAM_ED25519, NULL, NULL, 64},        {"HS256", FAM_HMAC, "SHA256", NULL, 32},
    {"HS384", FAM_HMAC, "SHA384", NULL, 48},       {"HS512", FAM_HMAC, "SHA512", NULL, 64},
};
#define N_ALGS (sizeof(algs) / sizeof(algs[0]))

struct curve {
    const char *jwk;  /* JWK "crv" */
    const char *ossl; /* OpenSSL group name */
    const char *nist; /* the alias EVP_PKEY_get_group_name() may also give */
    size_t len;       /* coordinate bytes */
};

static const struct curve curves[] = {
    {"P-256", "prime256v1", "P-256", 32},
    {"P-384", "secp384r1", "P-384", 48},
    {"P-521", "secp521r1", "P-521", 66},
};
#define N_CURVES (sizeof(curves) / sizeof(curves[0]))

#define B64URL_ALPHABET "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/* Members that only a private (or symmetric) JWK has. */
static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};

/* ---- small helpers ---- */

/* s for an error message: at most 32 characters, non-printable ASCII as '?'.
 * Attacker-chosen text must not reach logs raw. */
static const char *shown(const char *s, char buf[40])
{
    size_t i;

    for (i = 0; s[i] != '\0' && i < 32; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
    if (s[i] != '\0' && i == 32) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* Decodes unpadded base64url text into a new buffer (NUL-terminated one
 * past *outlen). -EINVAL on padding, foreign characters or non-canonical
 * trailing bits; -ENOMEM. */
static int b64_alloc(const char *s, size_t n, unsigned char **out, size_t *outlen)
{
    unsigned char *b = malloc(n / 4 * 3 + 4); /* >= decoded size + NUL */

    *out = NULL;
    if (b == NULL)
        return -ENOMEM;
    if (ut_b64_decode(s, n, b, outlen, 1) < 0) {
        free(b);
        return -EINVAL;
    }
    b[*outlen] = '\0';
    *out = b;
    return 0;
}

/* The string value of member name, or NULL; *v gets the member itself so
 * callers can tell "absent" from "not a string". */
static const char *str_member(const json_t *o, const char *name, json_t **v)
{
    *v = json_object_get(o, name);
    return json_string_value(*v);
}

static const struct alg *alg_find(const char *name)
{
    for (size_t i = 0; i < N_ALGS; i++)
        if (strcmp(algs[i].name, name) == 0)
            return &algs[i];
    return NULL;
}

enum akm_jws_problem akm_jws_problem(int rc)
{
    switch (rc >= 0 ? 0 : -rc) {
    case 0:
        return AKM_JWS_PROB_NONE;
    case EPROTO:
        return AKM_JWS_PROB_BAD_NONCE;
    case ENOTSUP:
        return AKM_JWS_PROB_BAD_SIG_ALG;
    case EKEYREJECTED:
        return AKM_JWS_PROB_BAD_PUBLIC_KEY;
    case ENOMEM:
    case EIO:
        return AKM_JWS_PROB_SERVER_INTERNAL;
    default:
        return AKM_JWS_PROB_MALFORMED;
    }
}

const char *akm_jws_problem_type(enum akm_jws_problem p)
{
    switch (p) {
    case AKM_JWS_PROB_MALFORMED:
        return "urn:ietf:params:acme:error:malformed";
    case AKM_JWS_PROB_BAD_NONCE:
        return "urn:ietf:params:acme:error:badNonce";
    case AKM_JWS_PROB_BAD_SIG_ALG:
        return "urn:ietf:params:acme:error:badSignatureAlgorithm";
    case AKM_JWS_PROB_BAD_PUBLIC_KEY:
        return "urn:ietf:params:acme:error:badPublicKey";
    case AKM_JWS_PROB_SERVER_INTERNAL:
        return "urn:ietf:params:acme:error:serverInternal";
    case AKM_JWS_PROB_NONE:
        break;
    }
    return NULL;
}

json_t *akm_jws_algs_json(void)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < N_ALGS; i++) {
        if (algs[i].fam != FAM_HMAC && json_array_append_new(a, json_string(algs[i].name)) < 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/* ---- JWK (JSON level) ---- */

/* A public JWK checked at the JSON level, members decoded. The text
 * pointers are borrowed from the JSON. */
struct jwk_pub {
    enum fam fam;                                  /* FAM_EC, FAM_RSA or FAM_ED25519 */
    const struct curve *crv;                       /* FAM_EC */
    const char *t1, *t2;                           /* EC x,y; RSA n,e; OKP x (text) */
    unsigned char a[AKM_JWK_RSA_MAX_BITS / 8 + 4]; /* EC x; RSA n; OKP x */
    unsigned char b[72];                           /* EC y; RSA e */
    size_t alen, blen;
};

/* Decodes the base64url member name of jwk into buf (room: cap bytes).
 * -EINVAL when absent, not a string or not base64url; -EKEYREJECTED when
 * longer than cap. */
static int jwk_member(const json_t *jwk, const char *name, unsigned char *buf, size_t cap,
                      size_t *len, const char **text, struct ut_err *err)
{
    json_t *v;
    const char *s = str_member(jwk, name, &v);
    size_t n;

    if (s == NULL) {
        ut_err_set(err, "JWK member \"%s\" is %s", name, v ? "not a string" : "missing");
        return -EINVAL;
    }
    n = strlen(s);
    /* the alphabet first, so padding reads as malformed and not as too long */
    if (s[strspn(s, B64URL_ALPHABET)] != '\0') {
        ut_err_set(err, "JWK member \"%s\" is not unpadded base64url", name);
        return -EINVAL;
    }
    if (n > ut_b64_enclen(cap, 1)) {
        ut_err_set(err, "JWK member \"%s\" is longer than %zu bytes", name, cap);
        return -EKEYREJECTED;
    }
    /* ut_b64_enclen(cap) characters decode to at most cap bytes */
    if (ut_b64_decode(s, n, buf, len, 1) < 0) {
        ut_err_set(err, "JWK member \"%s\" is not unpadded base64url", name);
        return -EINVAL;
    }
    *text = s;
    return 0;
}

static int jwk_parse(const json_t *jwk, struct jwk_pub *k, struct ut_err *err)
{
    json_t *v;
    const char *kty, *crv;
    char sb[40];
    int rc;

    memset(k, 0, sizeof(*k));
    if (!json_is_object(jwk)) {
        ut_err_set(err, "JWK is not a JSON object");
        return -EINVAL;
    }
    kty = str_member(jwk, "kty", &v);
    if (kty == NULL) {
        ut_err_set(err, "JWK member \"kty\" is %s", v ? "not a string" : "missing");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(private_members) / sizeof(private_members[0]); i++) {
        if (json_object_get(jwk, private_members[i])) {
            ut_err_set(err, "JWK has the private member \"%s\": send the public key only",
                       private_members[i]);
            return -EKEYREJECTED;
        }
    }
    if (strcmp(kty, "EC") == 0) {
        k->fam = FAM_EC;
    } else if (strcmp(kty, "RSA") == 0) {
        k->fam = FAM_RSA;
    } else if (strcmp(kty, "OKP") == 0) {
        k->fam = FAM_ED25519;
    } else {
        ut_err_set(err, "JWK \"kty\" \"%s\" is not supported (EC, RSA, OKP)", shown(kty, sb));
        return -EKEYREJECTED;
    }
    crv = str_member(jwk, "crv", &v);
    if (k->fam != FAM_RSA && crv == NULL) {
        ut_err_set(err, "JWK member \"crv\" is %s", v ? "not a string" : "missing");
        return -EINVAL;
    }
    switch (k->fam) {
    case FAM_EC:
        for (size_t i = 0; i < N_CURVES; i++)
            if (strcmp(crv, curves[i].jwk) == 0)
                k->crv = &curves[i];
        if (k->crv == NULL) {
            ut_err_set(err, "JWK EC \"crv\" \"%s\" is not supported (P-256, P-384, P-521)",
                       shown(crv, sb));
            return -EKEYREJECTED;
        }
        if ((rc = jwk_member(jwk, "x", k->a, k->crv->len, &k->alen, &k->t1, err)) < 0 ||
            (rc = jwk_member(jwk, "y", k->b, k->crv->len, &k->blen, &k->t2, err)) < 0)
            return rc;
        if (k->alen != k->crv->len || k->blen != k->crv->len) {
            ut_err_set(err, "JWK %s coordinates must be exactly %zu bytes (x %zu, y %zu)",
                       k->crv->jwk, k->crv->len, k->alen, k->blen);
            return -EKEYREJECTED;
        }
        break;
    case FAM_RSA:
        if ((rc = jwk_member(jwk, "n", k->a, AKM_JWK_RSA_MAX_BITS / 8, &k->alen, &k->t1, err)) <
                0 ||
            (rc = jwk_member(jwk, "e", k->b, 4, &k->blen, &k->t2, err)) < 0)
            return rc;
        if (k->alen == 0 || k->a[0] == 0 || k->blen == 0 || k->b[0] == 0) {
            ut_err_set(err, "JWK RSA \"n\" and \"e\" must be minimal unsigned integers "
                            "(no leading zero octet, RFC 7518 §2)");
            return -EKEYREJECTED;
        }
        break;
    case FAM_ED25519:
        if (strcmp(crv, "Ed25519") != 0) {
            ut_err_set(err, "JWK OKP \"crv\" \"%s\" is not supported (Ed25519)", shown(crv, sb));
            return -EKEYREJECTED;
        }
        if ((rc = jwk_member(jwk, "x", k->a, 32, &k->alen, &k->t1, err)) < 0)
            return rc;
        if (k->alen != 32) {
            ut_err_set(err, "JWK Ed25519 \"x\" must be exactly 32 bytes, got %zu", k->alen);
            return -EKEYREJECTED;
        }
        break;
    case FAM_HMAC:
        break;
    }
    return 0;
}

/* RFC 7638 §3: required members only, lexicographic order, no whitespace.
 * Every value is either from our curve table or checked base64url, so no
 * escaping is needed. Returns a new string or NULL. */
static char *jwk_canonical(const struct jwk_pub *k)
{
    char *s = NULL;
    int n = -1;

    switch (k->fam) {
    case FAM_EC:
        n = asprintf(&s, "{\"crv\":\"%s\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", k->crv->jwk,
                     k->t1, k->t2);
        break;
    case FAM_RSA:
        n = asprintf(&s, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", k->t2, k->t1);
        break;
    case FAM_ED25519:
        n = asprintf(&s, "{\"crv\":\"Ed25519\",\"kty\":\"OKP\",\"x\":\"%s\"}", k->t1);
        break;
    case FAM_HMAC:
        break;
    }
    return n < 0 ? NULL : s;
}

int akm_jwk_thumbprint(const json_t *jwk, char out[AKM_JWK_THUMB_LEN + 1], struct ut_err *err)
{
    struct jwk_pub k;
    unsigned char h[32];
    unsigned int hl = 0;
    char *c = NULL;
    int rc;

    out[0] = '\0';
    rc = jwk_parse(jwk, &k, err);
    if (rc < 0)
        goto out;
    c = jwk_canonical(&k);
    if (c == NULL) {
        ut_err_set(err, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    if (!EVP_Digest(c, strlen(c), h, &hl, EVP_sha256(), NULL) || hl != sizeof(h)) {
        ut_err_set(err, "SHA-256 failed for the JWK thumbprint");
        rc = -EIO;
        goto out;
    }
    ut_b64_encode(h, sizeof(h), out, 1);
out:
    free(c);
    return rc;
}

int akm_jwk_equal(const json_t *a, const json_t *b, struct ut_err *err)
{
    struct jwk_pub ka, kb;
    char *ca = NULL, *cb = NULL;
    int rc;

    if ((rc = jwk_parse(a, &ka, err)) < 0 || (rc = jwk_parse(b, &kb, err)) < 0)
        goto out;
    ca = jwk_canonical(&ka);
    cb = jwk_canonical(&kb);
    if (ca == NULL || cb == NULL) {
        ut_err_set(err, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    rc = strcmp(ca, cb) == 0;
out:
    free(ca);
    free(cb);
    return rc;
}

/* ---- JWK <-> EVP_PKEY ---- */

static int pkey_check(EVP_PKEY *pk, const char *what, struct ut_err *err)
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    int ok;

    if (ctx == NULL) {
        ut_err_set(err, "out of memory");
        return -ENOMEM;
    }
    ok = EVP_PKEY_public_check(ctx);
    EVP_PKEY_CTX_free(ctx);
    if (ok != 1) {
        ut_err_set(err, "JWK is not a valid %s public key", what);
        return -EKEYREJECTED;
    }
    return 0;
}

static int fromdata(const char *type, OSSL_PARAM_BLD *bld, EVP_PKEY **pk)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = NULL;
    int ok = 0;

    if (params != NULL && (ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL)) != NULL &&
        EVP_PKEY_fromdata_init(ctx) > 0)
        ok = EVP_PKEY_fromdata(ctx, pk, EVP_PKEY_PUBLIC_KEY, params) > 0;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return ok;
}

static int import_ec(const struct jwk_pub *k, EVP_PKEY **pk, struct ut_err *err)
{
    unsigned char pt[1 + 2 * 66];
    size_t l = k->crv->len;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    int ok;

    if (bld == NULL) {
        ut_err_set(err, "out of memory");
        return -ENOMEM;
    }
    pt[0] = 4; /* uncompressed point */
    memcpy(pt + 1, k->a, l);
    memcpy(pt + 1 + l, k->b, l);
    ok = OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, k->crv->ossl, 0) &&
         OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * l) &&
         fromdata("EC", bld, pk);
    OSSL_PARAM_BLD_free(bld);
    if (!ok) {
        /* oct2point refuses coordinates >= p and points off the curve */
        ut_err_set(err, "JWK %s point is not on the curve", k->crv->jwk);
        return -EKEYREJECTED;
    }
    return pkey_check(*pk, k->crv->jwk, err);
}

static int import_rsa(const struct jwk_pub *k, EVP_PKEY **pk, struct ut_err *err)
{
    size_t bits = k->alen * 8;
    uint64_t e = 0;
    BIGNUM *n = NULL, *be = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    int rc = 0;

    for (unsigned char c = k->a[0]; (c & 0x80) == 0; c <<= 1)
        bits--; /* a[0] != 0: checked by jwk_parse */
    for (size_t i = 0; i < k->blen; i++)
        e = e << 8 | k->b[i];
    if (bits < AKM_JWK_RSA_MIN_BITS || bits > AKM_JWK_RSA_MAX_BITS) {
        ut_err_set(err, "JWK RSA modulus is %zu bits; %d..%d required", bits, AKM_JWK_RSA_MIN_BITS,
                   AKM_JWK_RSA_MAX_BITS);
        return -EKEYREJECTED;
    }
    if ((k->a[k->alen - 1] & 1) == 0) {
        ut_err_set(err, "JWK RSA modulus is even");
        return -EKEYREJECTED;
    }
    if ((e & 1) == 0 || e <= 65536) {
        ut_err_set(err, "JWK RSA exponent %llu is not odd and above 2^16", (unsigned long long)e);
        return -EKEYREJECTED;
    }
    n = BN_bin2bn(k->a, (int)k->alen, NULL);
    be = BN_bin2bn(k->b, (int)k->blen, NULL);
    if (n == NULL || be == NULL) {
        ut_err_set(err, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    /* No factor below 752 (the SP 800-56B §6.4.2.1 bound). The rest of that
     * check (EVP_PKEY_public_check: a Miller-Rabin round) is skipped on
     * purpose: ~100 ms for an 8192-bit modulus that anyone can send
     * unauthenticated, while verifying with it costs well under 1 ms. */
    for (BN_ULONG d = 3; d < 752; d += 2) {
        if (BN_mod_word(n, d) == 0) {
            ut_err_set(err, "JWK RSA modulus has the small factor %lu", (unsigned long)d);
            rc = -EKEYREJECTED;
            goto out;
        }
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) || !fromdata("RSA", bld, pk)) {
        ut_err_set(err, "cannot build the RSA key");
        rc = -EIO;
        goto out;
    }
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(be);
    return rc;
}

int akm_jwk_to_pkey(const json_t *jwk, EVP_PKEY **out, struct ut_err *err)
{
    struct jwk_pub k;
    EVP_PKEY *pk = NULL;
    int rc;

    *out = NULL;
    rc = jwk_parse(jwk, &k, err);
    if (rc < 0)
        goto out;
    switch (k.fam) {
    case FAM_EC:
        rc = import_ec(&k, &pk, err);
        break;
    case FAM_RSA:
        rc = import_rsa(&k, &pk, err);
        break;
    case FAM_ED25519:
        pk = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, k.a, 32);
        if (pk == NULL) {
            ut_err_set(err, "JWK Ed25519 key cannot be imported");
            rc = -EKEYREJECTED;
        }
        break;
    case FAM_HMAC:
        rc = -EINVAL;
        break;
    }
out:
    ERR_clear_error();
    if (rc < 0)
        EVP_PKEY_free(pk);
    else
        *out = pk;
    return rc;
}

static const struct curve *pkey_curve(EVP_PKEY *key)
{
    char name[64];
    size_t n = 0;

    if (!EVP_PKEY_is_a(key, "EC") || !EVP_PKEY_get_group_name(key, name, sizeof(name), &n))
        return NULL;
    for (size_t i = 0; i < N_CURVES; i++)
        if (strcmp(name, curves[i].ossl) == 0 || strcmp(name, curves[i].nist) == 0)
            return &curves[i];
    return NULL;
}

/* base64url of the big-endian BIGNUM param name, left-padded to pad bytes
 * (pad 0: minimal). */
static json_t *bn_b64(EVP_PKEY *key, const char *name, size_t pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[AKM_JWK_RSA_MAX_BITS / 8];
    char txt[sizeof(buf) / 3 * 4 + 8];
    int n;

    if (!EVP_PKEY_get_bn_param(key, name, &bn))
        return NULL;
    n = BN_num_bytes(bn);
    if (pad == 0)
        pad = n > 0 ? (size_t)n : 1;
    if (n < 0 || (size_t)n > pad || pad > sizeof(buf) || BN_bn2binpad(bn, buf, (int)pad) < 0) {
        BN_free(bn);
        return NULL;
    }
    BN_free(bn);
    ut_b64_encode(buf, pad, txt, 1);
    return json_string(txt);
}

int akm_jwk_from_pkey(EVP_PKEY *key, json_t **out, struct ut_err *err)
{
    const struct curve *c;
    json_t *j = NULL;

    *out = NULL;
    if (key == NULL) {
        ut_err_set(err, "no key");
        return -EINVAL;
    }
    if ((c = pkey_curve(key)) != NULL) {
        j = json_pack("{s:s,s:s,s:o*,s:o*}", "kty", "EC", "crv", c->jwk, "x",
                      bn_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, c->len), "y",
                      bn_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, c->len));
        if (j != NULL && json_object_size(j) != 4) {
            json_decref(j);
            j = NULL;
        }
    } else if (EVP_PKEY_is_a(key, "RSA")) {
        if (EVP_PKEY_get_bits(key) > AKM_JWK_RSA_MAX_BITS) {
            ut_err_set(err, "RSA key over %d bits", AKM_JWK_RSA_MAX_BITS);
            return -EKEYREJECTED;
        }
        j = json_pack("{s:s,s:o*,s:o*}", "kty", "RSA", "n", bn_b64(key, OSSL_PKEY_PARAM_RSA_N, 0),
                      "e", bn_b64(key, OSSL_PKEY_PARAM_RSA_E, 0));
        if (j != NULL && json_object_size(j) != 3) {
            json_decref(j);
            j = NULL;
        }
    } else if (EVP_PKEY_is_a(key, "ED25519")) {
        unsigned char raw[32];
        char x[48];
        size_t n = sizeof(raw);

        if (EVP_PKEY_get_raw_public_key(key, raw, &n) && n == 32) {
            ut_b64_encode(raw, 32, x, 1);
            j = json_pack("{s:s,s:s,s:s}", "kty", "OKP", "crv", "Ed25519", "x", x);
        }
    } else {
        ut_err_set(err, "key type is not EC P-256/P-384/P-521, RSA or Ed25519");
        return -EKEYREJECTED;
    }
    ERR_clear_error();
    if (j == NULL) {
        ut_err_set(err, "cannot export the public key as a JWK");
        return -EIO;
    }
    *out = j;
    return 0;
}

/* ---- parsing ---- */

struct akm_jws {
    const struct alg *alg;
    json_t *header;    /* decoded protected header (owned) */
    const char *nonce; /* these four borrow from header */
    const char *url;
    const char *kid;
    const json_t *jwk;
    unsigned char *payload; /* NUL-terminated one past payload_len */
    size_t payload_len;
    unsigned char *sig;
    size_t sig_len;
    char *input; /* protected '.' payload, NUL-terminated */
    size_t input_len;
};

void akm_jws_free(struct akm_jws *j)
{
    if (j == NULL)
        return;
    json_decref(j->header);
    free(j->payload);
    free(j->sig);
    free(j->input);
    free(j);
}

/* The top-level members of a flattened JWS. */
static int check_members(const json_t *obj, const char **prot, const char **payload,
                         const char **sig, struct ut_err *err)
{
    static const char *const names[] = {"protected", "payload", "signature"};
    const char **vals[] = {prot, payload, sig};
    char sb[40];

    if (!json_is_object(obj)) {
        ut_err_set(err, "JWS is not a JSON object");
        return -EINVAL;
    }
    if (json_object_get(obj, "signatures")) {
        ut_err_set(err, "JWS uses the general serialization (\"signatures\"); ACME requires the "
                        "flattened one with a single signature (RFC 8555 §6.2)");
        return -EINVAL;
    }
    if (json_object_get(obj, "header")) {
        ut_err_set(err, "JWS has an unprotected \"header\"; ACME forbids it (RFC 8555 §6.2)");
        return -EINVAL;
    }
    for (size_t i = 0; i < 3; i++) {
        json_t *v = json_object_get(obj, names[i]);

        *vals[i] = json_string_value(v);
        if (*vals[i] == NULL) {
            ut_err_set(err, "JWS member \"%s\" is %s", names[i], v ? "not a string" : "missing");
            return -EINVAL;
        }
        /* obj may come from a parser that allowed "\u0000": never truncate */
        if (strlen(*vals[i]) != json_string_length(v)) {
            ut_err_set(err, "JWS member \"%s\" contains a NUL character", names[i]);
            return -EINVAL;
        }
    }
    if (json_object_size(obj) != 3) {
        /* jansson iteration does not modify the object */
        for (void *it = json_object_iter((json_t *)obj); it != NULL;
             it = json_object_iter_next((json_t *)obj, it)) {
            const char *key = json_object_iter_key(it);

            if (strcmp(key, "protected") != 0 && strcmp(key, "payload") != 0 &&
                strcmp(key, "signature") != 0) {
                ut_err_set(err, "JWS has the unexpected member \"%s\"", shown(key, sb));
                break;
            }
        }
        return -EINVAL;
    }
    return 0;
}

/* An optional string header parameter of at most max bytes. -EINVAL when
 * present but not a non-empty string within the cap. */
static int hdr_string(const json_t *h, const char *name, size_t max, const char **out,
                      struct ut_err *err)
{
    json_t *v;
    const char *s = str_member(h, name, &v);

    *out = s;
    if (v == NULL)
        return 0;
    if (s == NULL || *s == '\0' || strlen(s) > max) {
        ut_err_set(err, "JWS header \"%s\" must be a non-empty string of at most %zu bytes", name,
                   max);
        return -EINVAL;
    }
    return 0;
}

static int check_nonce(const json_t *h, struct ut_err *err)
{
    json_t *v = json_object_get(h, "nonce");
    const char *s = json_string_value(v);
    size_t n;
    unsigned char buf[AKM_JWS_NONCE_MAX];

    if (s == NULL) {
        ut_err_set(err, "JWS header \"nonce\" is %s", v ? "not a string" : "missing");
        return -EPROTO;
    }
    n = strlen(s);
    if (n == 0 || n > AKM_JWS_NONCE_MAX || ut_b64_decode(s, n, buf, &n, 1) < 0) {
        ut_err_set(err, "JWS header \"nonce\" is not 1..%d base64url characters",
                   AKM_JWS_NONCE_MAX);
        return -EPROTO;
    }
    return 0;
}

static int parse_header(struct akm_jws *j, enum akm_jws_kind kind, struct ut_err *err)
{
    const json_t *h = j->header;
    json_t *v;
    const char *alg, *jalg;
    char sb[40];
    int rc, want_mac = kind == AKM_JWS_EAB;

    alg = str_member(h, "alg", &v);
    if (alg == NULL) {
        ut_err_set(err, "JWS header \"alg\" is %s", v ? "not a string" : "missing");
        return -EINVAL;
    }
    j->alg = alg_find(alg);
    if (j->alg == NULL) {
        ut_err_set(err, "JWS alg \"%s\" is not supported", shown(alg, sb));
        return -ENOTSUP;
    }
    if (kind != AKM_JWS_BARE && (j->alg->fam == FAM_HMAC) != want_mac) {
        ut_err_set(err,
                   want_mac ? "JWS alg %s: external account binding needs HS256/384/512"
                            : "JWS alg %s: a MAC is not allowed here, sign with the account "
                              "key (RFC 8555 §6.2)",
                   alg);
        return -ENOTSUP;
    }
    if (json_object_get(h, "crit")) {
        ut_err_set(err, "JWS header \"crit\" is not supported");
        return -EINVAL;
    }
    v = json_object_get(h, "b64");
    if (v != NULL && !json_is_true(v)) {
        ut_err_set(err, "JWS header \"b64\" must be absent or true (RFC 7797 is not supported)");
        return -EINVAL;
    }
    for (const char *const *p = (const char *const[]){"jku", "x5u", "x5c", NULL}; *p; p++) {
        if (json_object_get(h, *p)) {
            ut_err_set(err, "JWS header \"%s\" is not supported: use \"jwk\" or \"kid\"", *p);
            return -EINVAL;
        }
    }

    v = json_object_get(h, "jwk");
    if (v != NULL && !json_is_object(v)) {
        ut_err_set(err, "JWS header \"jwk\" is not a JSON object");
        return -EINVAL;
    }
    j->jwk = v;
    if ((rc = hdr_string(h, "kid", AKM_JWS_URL_MAX, &j->kid, err)) < 0 ||
        (rc = hdr_string(h, "url", AKM_JWS_URL_MAX, &j->url, err)) < 0)
        return rc;
    if (json_object_get(h, "nonce") != NULL)
        j->nonce = json_string_value(json_object_get(h, "nonce"));
    switch (kind) {
    case AKM_JWS_REQUEST:
        if ((j->jwk != NULL) == (j->kid != NULL)) {
            ut_err_set(err, "JWS header must have exactly one of \"jwk\" and \"kid\" (has %s)",
                       j->jwk ? "both" : "neither");
            return -EINVAL;
        }
        break;
    case AKM_JWS_KEYCHANGE:
        if (j->jwk == NULL || j->kid != NULL) {
            ut_err_set(err, "keyChange inner JWS must have \"jwk\" and no \"kid\"");
            return -EINVAL;
        }
        break;
    case AKM_JWS_EAB:
        if (j->kid == NULL || j->jwk != NULL) {
            ut_err_set(err, "external account binding JWS must have \"kid\" and no \"jwk\"");
            return -EINVAL;
        }
        break;
    case AKM_JWS_BARE:
        break;
    }
    if (kind != AKM_JWS_BARE && j->url == NULL) {
        ut_err_set(err, "JWS header \"url\" is missing");
        return -EINVAL;
    }
    if (kind == AKM_JWS_REQUEST && (rc = check_nonce(h, err)) < 0)
        return rc;
    if ((kind == AKM_JWS_KEYCHANGE || kind == AKM_JWS_EAB) && json_object_get(h, "nonce") != NULL) {
        ut_err_set(err, "%s JWS must not have a \"nonce\"",
                   kind == AKM_JWS_EAB ? "external account binding" : "keyChange inner");
        return -EINVAL;
    }
    if (kind == AKM_JWS_BARE && json_object_get(h, "nonce") != NULL && j->nonce == NULL) {
        ut_err_set(err, "JWS header \"nonce\" is not a string");
        return -EINVAL;
    }
    jalg = str_member(j->jwk, "alg", &v);
    if (j->jwk != NULL && v != NULL && (jalg == NULL || strcmp(jalg, j->alg->name) != 0)) {
        ut_err_set(err, "JWK \"alg\" does not match the JWS alg %s", j->alg->name);
        return -ENOTSUP;
    }
    return 0;
}

static int parse_obj(const json_t *obj, enum akm_jws_kind kind, struct akm_jws **out,
                     struct ut_err *err)
{
    const char *prot, *payload, *sig;
    size_t pl, yl, sl, hlen = 0;
    unsigned char *hbuf = NULL;
    struct akm_jws *j = NULL;
    struct ut_err e2 = {{0}};
    int rc;

    *out = NULL;
    rc = check_members(obj, &prot, &payload, &sig, err);
    if (rc < 0)
        return rc;
    pl = strlen(prot);
    yl = strlen(payload);
    sl = strlen(sig);
    if (pl > ut_b64_enclen(AKM_JWS_PROTECTED_MAX, 1)) {
        ut_err_set(err, "JWS protected header is over %d bytes", AKM_JWS_PROTECTED_MAX);
        return -EMSGSIZE;
    }
    if (yl > AKM_JWS_BODY_MAX) {
        ut_err_set(err, "JWS payload is over %d bytes", AKM_JWS_BODY_MAX);
        return -EMSGSIZE;
    }
    /* only the cap here: an empty signature (alg "none", RFC 7515 §A.5) must
     * reach the alg check and be answered badSignatureAlgorithm */
    if (sl > ut_b64_enclen(AKM_JWS_SIG_MAX, 1)) {
        ut_err_set(err, "JWS signature is over %d bytes", AKM_JWS_SIG_MAX);
        return -EINVAL;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        rc = -ENOMEM;
        ut_err_set(err, "out of memory");
        goto out;
    }
    if ((rc = b64_alloc(prot, pl, &hbuf, &hlen)) < 0) {
        ut_err_set(err, rc == -ENOMEM ? "out of memory" : "JWS \"protected\" is not base64url");
        goto out;
    }
    j->header = http_parse_json(hbuf, hlen, &e2);
    if (j->header == NULL) {
        ut_err_set(err, "JWS protected header: %s", e2.msg);
        rc = -EINVAL;
        goto out;
    }
    if ((rc = parse_header(j, kind, err)) < 0)
        goto out;
    if ((rc = b64_alloc(payload, yl, &j->payload, &j->payload_len)) < 0 ||
        (rc = b64_alloc(sig, sl, &j->sig, &j->sig_len)) < 0) {
        ut_err_set(err, rc == -ENOMEM        ? "out of memory"
                        : j->payload == NULL ? "JWS \"payload\" is not base64url"
                                             : "JWS \"signature\" is not base64url");
        goto out;
    }
    /* An RSA signature's length is the key's modulus size, checked against
     * the key in akm_jws_verify: refusing short ones here would answer a
     * weak (1024-bit) account key with "malformed" instead of the
     * badPublicKey its import gives. */
    if (j->alg->siglen != 0 ? j->sig_len != j->alg->siglen : j->sig_len == 0) {
        ut_err_set(err, "JWS %s signature is %zu bytes, expected %zu", j->alg->name, j->sig_len,
                   j->alg->siglen ? j->alg->siglen : (size_t)AKM_JWK_RSA_MIN_BITS / 8);
        rc = -EINVAL;
        goto out;
    }
    j->input_len = pl + 1 + yl;
    j->input = malloc(j->input_len + 1);
    if (j->input == NULL) {
        ut_err_set(err, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    memcpy(j->input, prot, pl);
    j->input[pl] = '.';
    memcpy(j->input + pl + 1, payload, yl);
    j->input[j->input_len] = '\0';
    *out = j;
    j = NULL;
out:
    free(hbuf);
    akm_jws_free(j);
    return rc;
}

int akm_jws_parse_json(const json_t *obj, enum akm_jws_kind kind, struct akm_jws **out,
                       struct ut_err *err)
{
    return parse_obj(obj, kind, out, err);
}

int akm_jws_parse(const void *body, size_t len, struct akm_jws **out, struct ut_err *err)
{
    struct ut_err e2 = {{0}};
    json_t *obj;
    int rc;

    *out = NULL;
    if (body == NULL || len == 0) {
        ut_err_set(err, "JWS body is empty");
        return -EINVAL;
    }
    if (len > AKM_JWS_BODY_MAX) {
        ut_err_set(err, "JWS body is over %d bytes", AKM_JWS_BODY_MAX);
        return -EMSGSIZE;
    }
    obj = http_parse_json(body, len, &e2);
    if (obj == NULL) {
        ut_err_set(err, "JWS body: %s", e2.msg);
        return -EINVAL;
    }
    rc = parse_obj(obj, AKM_JWS_REQUEST, out, err);
    json_decref(obj);
    return rc;
}

const char *akm_jws_alg(const struct akm_jws *j)
{
    return j->alg->name;
}

const char *akm_jws_nonce(const struct akm_jws *j)
{
    return j->nonce;
}

const char *akm_jws_url(const struct akm_jws *j)
{
    return j->url;
}

const char *akm_jws_kid(const struct akm_jws *j)
{
    return j->kid;
}

const json_t *akm_jws_jwk(const struct akm_jws *j)
{
    return j->jwk;
}

const json_t *akm_jws_header(const struct akm_jws *j)
{
    return j->header;
}

const uint8_t *akm_jws_payload(const struct akm_jws *j, size_t *len)
{
    *len = j->payload_len;
    return j->payload;
}

int akm_jws_payload_empty(const struct akm_jws *j)
{
    return j->payload_len == 0;
}

int akm_jws_payload_json(const struct akm_jws *j, json_t **out, struct ut_err *err)
{
    struct ut_err e2 = {{0}};

    *out = NULL;
    if (j->payload_len == 0) {
        ut_err_set(err, "JWS payload is empty (POST-as-GET), a JSON object was expected");
        return -EINVAL;
    }
    *out = http_parse_json(j->payload, j->payload_len, &e2);
    if (*out == NULL) {
        ut_err_set(err, "JWS payload: %s", e2.msg);
        return -EINVAL;
    }
    return 0;
}

const char *akm_jws_signing_input(const struct akm_jws *j, size_t *len)
{
    *len = j->input_len;
    return j->input;
}

/* ---- verification ---- */

/* Does key fit alg? -ENOTSUP when not, -EKEYREJECTED for an RSA key size
 * out of policy. */
static int key_fits(const struct alg *a, EVP_PKEY *key, struct ut_err *err)
{
    const struct curve *c;
    int bits;

    switch (a->fam) {
    case FAM_EC:
        c = pkey_curve(key);
        if (c != NULL && strcmp(c->ossl, a->group) == 0)
            return 0;
        break;
    case FAM_RSA:
        if (!EVP_PKEY_is_a(key, "RSA"))
            break;
        bits = EVP_PKEY_get_bits(key);
        if (bits < AKM_JWK_RSA_MIN_BITS || bits > AKM_JWK_RSA_MAX_BITS) {
            ut_err_set(err, "RSA key is %d bits; %d..%d required", bits, AKM_JWK_RSA_MIN_BITS,
                       AKM_JWK_RSA_MAX_BITS);
            return -EKEYREJECTED;
        }
        return 0;
    case FAM_ED25519:
        if (EVP_PKEY_is_a(key, "ED25519"))
            return 0;
        break;
    case FAM_HMAC:
        break;
    }
    ut_err_set(err, "JWS alg %s does not fit the key (%s)", a->name,
               pkey_curve(key)                 ? pkey_curve(key)->jwk
               : EVP_PKEY_is_a(key, "RSA")     ? "RSA"
               : EVP_PKEY_is_a(key, "ED25519") ? "Ed25519"
                                               : "unsupported type");
    return -ENOTSUP;
}

/* Raw R || S (RFC 7518 §3.4) -> DER ECDSA-Sig-Value, via OpenSSL. */
static int ecdsa_der(const unsigned char *rs, size_t n, unsigned char **der, size_t *derlen)
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(rs, (int)(n / 2), NULL), *s = BN_bin2bn(rs + n / 2, (int)(n / 2), NULL);
    int l = -1;

    *der = NULL;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s)) {
        r = s = NULL; /* owned by es */
        l = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    if (l <= 0)
        return -ENOMEM;
    *derlen = (size_t)l;
    return 0;
}

int akm_jws_verify(const struct akm_jws *j, EVP_PKEY *key, struct ut_err *err)
{
    const struct alg *a = j->alg;
    unsigned char *der = NULL;
    const unsigned char *sig = j->sig;
    size_t siglen = j->sig_len;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    int rc, ok;

    if (key == NULL) {
        ut_err_set(err, "no key to verify the JWS with");
        return -EINVAL;
    }
    if (a->fam == FAM_HMAC) {
        ut_err_set(err, "JWS alg %s is a MAC, not a signature", a->name);
        return -ENOTSUP;
    }
    if ((rc = key_fits(a, key, err)) < 0)
        return rc;
    if (a->fam == FAM_RSA && siglen != (size_t)EVP_PKEY_get_size(key)) {
        ut_err_set(err, "JWS RS256 signature is %zu bytes, the key needs %d", siglen,
                   EVP_PKEY_get_size(key));
        return -EINVAL;
    }
    if (a->fam == FAM_EC) {
        if ((rc = ecdsa_der(j->sig, j->sig_len, &der, &siglen)) < 0) {
            ut_err_set(err, "out of memory");
            goto out;
        }
        sig = der;
    }
    md = EVP_MD_CTX_new();
    if (md == NULL || EVP_DigestVerifyInit_ex(md, &pctx, a->md, NULL, NULL, key, NULL) != 1 ||
        (a->fam == FAM_RSA && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1)) {
        ut_err_set(err, "cannot set up %s verification", a->name);
        rc = -EIO;
        goto out;
    }
    ok = EVP_DigestVerify(md, sig, siglen, (const unsigned char *)j->input, j->input_len);
    if (ok != 1) {
        ut_err_set(err, "JWS %s signature does not verify", a->name);
        rc = -EBADMSG;
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    return rc;
}

int akm_jws_verify_hmac(const struct akm_jws *j, const uint8_t *key, size_t keylen,
                        struct ut_err *err)
{
    const struct alg *a = j->alg;
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    int rc;

    if (a->fam != FAM_HMAC) {
        ut_err_set(err, "JWS alg %s is not a MAC", a->name);
        return -ENOTSUP;
    }
    if (key == NULL || keylen < a->siglen || keylen > AKM_JWS_HMAC_KEY_MAX) {
        ut_err_set(err, "%s key must be %zu..%d bytes (RFC 7518 §3.2), got %zu", a->name, a->siglen,
                   AKM_JWS_HMAC_KEY_MAX, key ? keylen : 0);
        return -EINVAL;
    }
    if (EVP_Q_mac(NULL, "HMAC", NULL, a->md, NULL, key, keylen, (const unsigned char *)j->input,
                  j->input_len, mac, sizeof(mac), &maclen) == NULL ||
        maclen != a->siglen) {
        ut_err_set(err, "%s computation failed", a->name);
        rc = -EIO;
        goto out;
    }
    /* sig_len == a->siglen was checked by the parser; the length is public */
    if (j->sig_len != maclen || CRYPTO_memcmp(mac, j->sig, maclen) != 0) {
        ut_err_set(err, "JWS %s MAC does not verify", a->name);
        rc = -EBADMSG;
        goto out;
    }
    rc = 0;
out:
    ERR_clear_error();
    ut_memzero(mac, sizeof(mac));
    return rc;
}
