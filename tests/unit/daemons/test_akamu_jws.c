/* Unit tests for daemons/akamu/jws.c: RFC 8555 §6.2 flattened JWS parsing,
 * JWK import/export, RFC 7638 thumbprints, signature and EAB MAC checks.
 *
 * External vectors (public RFC test data, copied verbatim):
 *   RFC 7515 A.1 (HS256), A.2 (RS256), A.3 (ES256), A.5 (alg none), A.7 (flattened
 *   with an unprotected header), RFC 7797 §4 (b64:false), RFC 7638 §3.1 (RSA
 *   thumbprint), RFC 8037 A.1-A.4 (Ed25519 key, thumbprint, JWS). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "jws.h"
#include "http/http.h"
#include "util/b64.h"

/* ---- RFC vectors ---- */

/* RFC 7515 A.1-A.3 share this payload:
 * {"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true} */
#define RFC7515_PAYLOAD                                                                            \
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVl" \
    "fQ"

/* RFC 7515 A.1: {"typ":"JWT",\r\n "alg":"HS256"}, the oct key, the MAC. */
#define RFC7515_A1_PROTECTED "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
#define RFC7515_A1_KEY                                                                             \
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
#define RFC7515_A1_SIG "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

/* RFC 7515 A.2: {"alg":"RS256"}, the RSA public key (n, e), the signature. */
#define RFC7515_A2_PROTECTED "eyJhbGciOiJSUzI1NiJ9"
#define RFC7515_A2_N                                                                               \
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-"                        \
    "4qPCJrcS2mJPMEzP1Pt0Bm4d4"                                                                    \
    "QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-"                       \
    "bSf63kpaSHSXndS5z5rexMd"                                                                      \
    "bBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_"                  \
    "I5IhlJH7aGhyxXFvUK"                                                                           \
    "-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
#define RFC7515_A2_SIG                                                                             \
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_"        \
    "O8W2Fp5jujG"                                                                                  \
    "bds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"                                               \
    "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe"                                             \
    "7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"                                                    \
    "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI"                                        \
    "8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"

/* RFC 7515 A.3: {"alg":"ES256"}, the P-256 key (with its private "d"), the
 * signature (raw R || S). */
#define RFC7515_A3_PROTECTED "eyJhbGciOiJFUzI1NiJ9"
#define RFC7515_A3_JWK                                                                             \
    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","     \
    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\","                                       \
    "\"d\":\"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI\"}"
#define RFC7515_A3_SIG                                                                             \
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"

/* RFC 7515 A.7: the A.3 JWS in the flattened serialization, with an
 * unprotected header (which RFC 8555 §6.2 forbids). */
#define RFC7515_A7                                                                                 \
    "{\"payload\":\"" RFC7515_PAYLOAD "\",\"protected\":\"" RFC7515_A3_PROTECTED "\","             \
    "\"header\":{\"kid\":\"e9bc097a-ce51-4036-9562-d2ade882db0d\"},"                               \
    "\"signature\":\"" RFC7515_A3_SIG "\"}"

/* RFC 7797 §4: {"alg":"HS256","b64":false,"crit":["b64"]}, payload "$.02"
 * unencoded, A.1 key. */
#define RFC7797_PROTECTED "eyJhbGciOiJIUzI1NiIsImI2NCI6ZmFsc2UsImNyaXQiOlsiYjY0Il19"
#define RFC7797_SIG       "A5dxf2s96_n5FLueVuW1Z_vh161FwXZC4YLPff6dmDY"

/* RFC 7638 §3.1: RSA key (with optional members) and its thumbprint. */
#define RFC7638_N                                                                                  \
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_"      \
    "BJECPeb"                                                                                      \
    "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_"            \
    "FDW2QvzqY368"                                                                                 \
    "QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-"                        \
    "bFTWhAI4vMQFh6WeZu0fM4lF"                                                                     \
    "d2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
#define RFC7638_THUMB "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

/* RFC 8037 A.1/A.2: Ed25519 key; A.3: thumbprint; A.4: {"alg":"EdDSA"},
 * payload "Example of Ed25519 signing", signature. */
#define RFC8037_D         "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
#define RFC8037_X         "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
#define RFC8037_THUMB     "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
#define RFC8037_PROTECTED "eyJhbGciOiJFZERTQSJ9"
#define RFC8037_PAYLOAD   "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
#define RFC8037_SIG                                                                                \
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"

#define NONCE "oFvnlFP1wIhRlYS2jTaXbA"
#define URL   "https://acme.example/acme/new-account"
#define KID   "https://acme.example/acme/acct/evOfKhNU60wg"

/* ---- fixtures ---- */

static EVP_PKEY *k_p256, *k_p384, *k_p521, *k_rsa, *k_ed;

static int setup(void **state)
{
    (void)state;
    k_p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    k_p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    k_p521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    k_rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    k_ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return k_p256 && k_p384 && k_p521 && k_rsa && k_ed ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(k_p256);
    EVP_PKEY_free(k_p384);
    EVP_PKEY_free(k_p521);
    EVP_PKEY_free(k_rsa);
    EVP_PKEY_free(k_ed);
    return 0;
}

/* ---- helpers ---- */

static char *b64u(const void *p, size_t n)
{
    char *s = malloc(ut_b64_enclen(n, 1) + 1);

    assert_non_null(s);
    ut_b64_encode(p, n, s, 1);
    return s;
}

static unsigned char *unb64u(const char *s, size_t *n)
{
    unsigned char *b = malloc(strlen(s) + 4);

    assert_non_null(b);
    assert_int_equal(ut_b64_decode(s, strlen(s), b, n, 1), 0);
    return b;
}

static char *flat(const char *prot, const char *payload, const char *sig)
{
    char *s = NULL;

    assert_true(asprintf(&s, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", prot,
                         payload, sig) > 0);
    return s;
}

static json_t *jparse(const char *s)
{
    json_error_t je;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &je);

    if (j == NULL)
        fail_msg("test JSON: %s: %s", je.text, s);
    return j;
}

static const char *md_of(const char *alg)
{
    if (strcmp(alg, "EdDSA") == 0)
        return NULL;
    return strstr(alg, "256") ? "SHA256" : strstr(alg, "384") ? "SHA384" : "SHA512";
}

/* Signs input the JOSE way: raw R || S for ECDSA (RFC 7518 §3.4). */
static size_t sign_input(EVP_PKEY *key, const char *alg, const char *in, size_t n,
                         unsigned char sig[1100])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char der[1100];
    size_t dl = sizeof(der);

    assert_non_null(c);
    assert_int_equal(EVP_DigestSignInit_ex(c, NULL, md_of(alg), NULL, NULL, key, NULL), 1);
    assert_int_equal(EVP_DigestSign(c, der, &dl, (const unsigned char *)in, n), 1);
    EVP_MD_CTX_free(c);
    if (alg[0] == 'E' && alg[1] == 'S') {
        size_t half = strstr(alg, "256") ? 32 : strstr(alg, "384") ? 48 : 66;
        const unsigned char *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)dl);

        assert_non_null(es);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)half), (int)half);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + half, (int)half), (int)half);
        ECDSA_SIG_free(es);
        return 2 * half;
    }
    memcpy(sig, der, dl);
    return dl;
}

/* A flattened JWS over hdr (stolen) and payload (len bytes); key NULL with
 * an HS* alg signs with the MAC key mac/maclen. Returns malloc'd JSON text. */
static char *make_jws_mac(EVP_PKEY *key, const unsigned char *mac, size_t maclen, json_t *hdr,
                          const void *payload, size_t len)
{
    const char *alg = json_string_value(json_object_get(hdr, "alg"));
    char *htxt = json_dumps(hdr, JSON_COMPACT), *prot, *pay, *input, *s64, *out;
    unsigned char sig[1100];
    size_t sl;

    assert_non_null(htxt);
    prot = b64u(htxt, strlen(htxt));
    pay = b64u(payload, len);
    assert_true(asprintf(&input, "%s.%s", prot, pay) > 0);
    if (key != NULL) {
        sl = sign_input(key, alg ? alg : "ES256", input, strlen(input), sig);
    } else {
        assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, md_of(alg), NULL, mac, maclen,
                                  (unsigned char *)input, strlen(input), sig, sizeof(sig), &sl));
    }
    s64 = b64u(sig, sl);
    out = flat(prot, pay, s64);
    free(htxt);
    free(prot);
    free(pay);
    free(input);
    free(s64);
    json_decref(hdr);
    return out;
}

static char *make_jws(EVP_PKEY *key, json_t *hdr, const char *payload)
{
    return make_jws_mac(key, NULL, 0, hdr, payload, strlen(payload));
}

static json_t *pub_jwk(EVP_PKEY *key)
{
    json_t *j = NULL;
    struct ut_err e = {{0}};

    assert_int_equal(akm_jwk_from_pkey(key, &j, &e), 0);
    return j;
}

static json_t *hdr_jwk(EVP_PKEY *key, const char *alg)
{
    return json_pack("{s:s,s:s,s:s,s:o}", "alg", alg, "nonce", NONCE, "url", URL, "jwk",
                     pub_jwk(key));
}

static json_t *hdr_kid(const char *alg)
{
    return json_pack("{s:s,s:s,s:s,s:s}", "alg", alg, "nonce", NONCE, "url", URL, "kid", KID);
}

/* Parses a request body; on failure checks that err names something. */
static int parse_req(const char *body, size_t len, struct akm_jws **out)
{
    struct ut_err e = {{0}};
    int rc = akm_jws_parse(body, len, out, &e);

    if (rc < 0) {
        assert_null(*out);
        assert_true(e.msg[0] != '\0');
    } else {
        assert_non_null(*out);
    }
    return rc;
}

static int parse_kind(const char *body, enum akm_jws_kind kind, struct akm_jws **out)
{
    struct ut_err e = {{0}};
    json_t *o = http_parse_json(body, strlen(body), &e);
    int rc;

    *out = NULL;
    if (o == NULL)
        return -EINVAL;
    rc = akm_jws_parse_json(o, kind, out, &e);
    json_decref(o);
    if (rc < 0) {
        assert_null(*out);
        assert_true(e.msg[0] != '\0');
    }
    return rc;
}

/* Parse (request rules) expecting rc, with err mentioning what. */
static void req_fails(const char *body, int rc, const char *what)
{
    struct ut_err e = {{0}};
    struct akm_jws *j = NULL;

    assert_int_equal(akm_jws_parse(body, strlen(body), &j, &e), rc);
    assert_null(j);
    if (strstr(e.msg, what) == NULL)
        fail_msg("error \"%s\" does not mention \"%s\"", e.msg, what);
}

/* Parse (request rules) and free: the return code. */
static int req_rc(const char *body)
{
    struct akm_jws *j = NULL;
    int rc = parse_req(body, strlen(body), &j);

    akm_jws_free(j);
    return rc;
}

/* Parse with kind and verify with key (or the MAC key): the first failure. */
static int check(const char *body, enum akm_jws_kind kind, EVP_PKEY *key, const unsigned char *mac,
                 size_t maclen)
{
    struct ut_err e = {{0}};
    struct akm_jws *j = NULL;
    int rc =
        kind == AKM_JWS_REQUEST ? parse_req(body, strlen(body), &j) : parse_kind(body, kind, &j);

    if (rc == 0)
        rc = key ? akm_jws_verify(j, key, &e) : akm_jws_verify_hmac(j, mac, maclen, &e);
    if (rc < 0)
        assert_true(e.msg[0] != '\0' || j == NULL);
    akm_jws_free(j);
    return rc;
}

static int jwk_rc(const char *text)
{
    struct ut_err e = {{0}};
    json_t *j = jparse(text);
    EVP_PKEY *pk = (EVP_PKEY *)1;
    int rc = akm_jwk_to_pkey(j, &pk, &e);

    if (rc < 0) {
        assert_null(pk);
        assert_true(e.msg[0] != '\0');
    }
    EVP_PKEY_free(pk);
    json_decref(j);
    return rc;
}

static EVP_PKEY *jwk_key(const char *text)
{
    struct ut_err e = {{0}};
    json_t *j = jparse(text);
    EVP_PKEY *pk = NULL;

    if (akm_jwk_to_pkey(j, &pk, &e) != 0)
        fail_msg("akm_jwk_to_pkey: %s", e.msg);
    json_decref(j);
    return pk;
}

/* Every single-character change of each part of a valid JWS must make
 * parse-or-verify fail. */
static void tamper_all(const char *prot, const char *payload, const char *sig,
                       enum akm_jws_kind kind, EVP_PKEY *key, const unsigned char *mac,
                       size_t maclen)
{
    const char *parts[3] = {prot, payload, sig};
    int n = 0;

    for (int p = 0; p < 3; p++) {
        char *c = strdup(parts[p]);

        assert_non_null(c);
        for (size_t i = 0; c[i] != '\0'; i++) {
            const char *v[3] = {prot, payload, sig};
            char orig = c[i], *body;

            c[i] = orig == 'A' ? 'B' : 'A';
            v[p] = c;
            body = flat(v[0], v[1], v[2]);
            if (check(body, kind, key, mac, maclen) == 0)
                fail_msg("tampered part %d at %zu still verifies", p, i);
            free(body);
            c[i] = orig;
            n++;
        }
        free(c);
    }
    assert_true(n > 20);
}

/* ---- RFC vectors ---- */

static void test_rfc7515_a3_es256(void **state)
{
    char *body = flat(RFC7515_A3_PROTECTED, RFC7515_PAYLOAD, RFC7515_A3_SIG);
    json_t *priv = jparse(RFC7515_A3_JWK), *pub = json_deep_copy(priv);
    EVP_PKEY *key;
    struct akm_jws *j = NULL;
    size_t n;

    (void)state;
    /* the RFC's JWK carries "d": refused as an account key */
    assert_int_equal(jwk_rc(RFC7515_A3_JWK), -EKEYREJECTED);
    json_object_del(pub, "d");
    {
        char *t = json_dumps(pub, JSON_COMPACT);
        key = jwk_key(t);
        free(t);
    }
    assert_int_equal(parse_kind(body, AKM_JWS_BARE, &j), 0);
    assert_string_equal(akm_jws_alg(j), "ES256");
    assert_string_equal(akm_jws_signing_input(j, &n), RFC7515_A3_PROTECTED "." RFC7515_PAYLOAD);
    assert_int_equal(n, strlen(RFC7515_A3_PROTECTED "." RFC7515_PAYLOAD));
    assert_memory_equal(akm_jws_payload(j, &n), "{\"iss\":\"joe\",\r\n \"exp\":1300819380", 32);
    assert_int_equal(akm_jws_verify(j, key, NULL), 0);
    akm_jws_free(j);
    /* the RFC's key is not the right one for another P-256 key's signature */
    assert_int_equal(check(body, AKM_JWS_BARE, k_p256, NULL, 0), -EBADMSG);
    /* the request rules want url, nonce and jwk/kid, which the vector lacks */
    assert_int_equal(req_rc(body), -EINVAL);
    tamper_all(RFC7515_A3_PROTECTED, RFC7515_PAYLOAD, RFC7515_A3_SIG, AKM_JWS_BARE, key, NULL, 0);
    /* A.7: the same JWS with an unprotected header */
    assert_int_equal(check(RFC7515_A7, AKM_JWS_BARE, key, NULL, 0), -EINVAL);
    req_fails(RFC7515_A7, -EINVAL, "unprotected \"header\"");
    EVP_PKEY_free(key);
    json_decref(priv);
    json_decref(pub);
    free(body);
}

static void test_rfc7515_a2_rs256(void **state)
{
    char *body = flat(RFC7515_A2_PROTECTED, RFC7515_PAYLOAD, RFC7515_A2_SIG);
    EVP_PKEY *key = jwk_key("{\"kty\":\"RSA\",\"n\":\"" RFC7515_A2_N "\",\"e\":\"AQAB\"}");

    (void)state;
    assert_int_equal(EVP_PKEY_get_bits(key), 2048);
    assert_int_equal(check(body, AKM_JWS_BARE, key, NULL, 0), 0);
    assert_int_equal(check(body, AKM_JWS_BARE, k_rsa, NULL, 0), -EBADMSG);
    tamper_all(RFC7515_A2_PROTECTED, RFC7515_PAYLOAD, RFC7515_A2_SIG, AKM_JWS_BARE, key, NULL, 0);
    EVP_PKEY_free(key);
    free(body);
}

static void test_rfc7515_a1_hs256(void **state)
{
    char *body = flat(RFC7515_A1_PROTECTED, RFC7515_PAYLOAD, RFC7515_A1_SIG);
    size_t kl;
    unsigned char *k = unb64u(RFC7515_A1_KEY, &kl);
    struct akm_jws *j = NULL;

    (void)state;
    assert_int_equal(kl, 64);
    assert_int_equal(check(body, AKM_JWS_BARE, NULL, k, kl), 0);
    /* wrong key, a one-bit change */
    k[0] ^= 1;
    assert_int_equal(check(body, AKM_JWS_BARE, NULL, k, kl), -EBADMSG);
    k[0] ^= 1;
    /* key shorter than the hash output (RFC 7518 §3.2) */
    assert_int_equal(check(body, AKM_JWS_BARE, NULL, k, 31), -EINVAL);
    assert_int_equal(check(body, AKM_JWS_BARE, NULL, NULL, 0), -EINVAL);
    tamper_all(RFC7515_A1_PROTECTED, RFC7515_PAYLOAD, RFC7515_A1_SIG, AKM_JWS_BARE, NULL, k, kl);
    /* a MAC is not a signature: refused by the signature path */
    assert_int_equal(parse_kind(body, AKM_JWS_BARE, &j), 0);
    assert_int_equal(akm_jws_verify(j, k_p256, NULL), -ENOTSUP);
    akm_jws_free(j);
    /* ...and by the request and keyChange rules, before anything else */
    assert_int_equal(req_rc(body), -ENOTSUP);
    assert_int_equal(parse_kind(body, AKM_JWS_KEYCHANGE, &j), -ENOTSUP);
    free(k);
    free(body);
}

/* RFC 7515 A.5: an unsecured JWS ({"alg":"none"}, empty signature) is
 * badSignatureAlgorithm on every path, not malformed. */
static void test_rfc7515_a5_none(void **state)
{
    char *body = flat("eyJhbGciOiJub25lIn0", RFC7515_PAYLOAD, "");
    json_t *h = hdr_kid("none");
    char *prot, *req, *htxt = json_dumps(h, JSON_COMPACT);
    struct akm_jws *j = NULL;

    (void)state;
    assert_int_equal(parse_kind(body, AKM_JWS_BARE, &j), -ENOTSUP);
    assert_int_equal(parse_kind(body, AKM_JWS_EAB, &j), -ENOTSUP);
    assert_int_equal(req_rc(body), -ENOTSUP);
    /* with a full ACME header */
    prot = b64u(htxt, strlen(htxt));
    req = flat(prot, "e30", "");
    req_fails(req, -ENOTSUP, "none");
    free(req);
    free(prot);
    free(htxt);
    json_decref(h);
    free(body);
}

static void test_rfc7797_b64_false(void **state)
{
    /* the detached-style payload "$.02" is not base64url; header checks come
     * first and refuse "crit"/"b64" */
    char *body = flat(RFC7797_PROTECTED, "$.02", RFC7797_SIG);
    char *body2 = flat(RFC7797_PROTECTED, "JC4wMg", RFC7797_SIG);
    struct ut_err e = {{0}};
    json_t *o = jparse(body);
    struct akm_jws *j = NULL;

    (void)state;
    assert_int_equal(akm_jws_parse_json(o, AKM_JWS_BARE, &j, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "crit"));
    assert_int_equal(check(body2, AKM_JWS_BARE, NULL, (const unsigned char *)"x", 1), -EINVAL);
    json_decref(o);
    free(body);
    free(body2);
}

static void test_rfc7638_thumbprint(void **state)
{
    const char *jwk = "{\"kty\":\"RSA\",\"n\":\"" RFC7638_N "\",\"e\":\"AQAB\",\"alg\":\"RS256\","
                      "\"kid\":\"2011-04-29\"}";
    char th[AKM_JWK_THUMB_LEN + 1], th2[AKM_JWK_THUMB_LEN + 1];
    json_t *j = jparse(jwk), *back;
    EVP_PKEY *key = jwk_key(jwk);

    (void)state;
    assert_int_equal(akm_jwk_thumbprint(j, th, NULL), 0);
    assert_string_equal(th, RFC7638_THUMB);
    /* export of the imported key: the same canonical members */
    back = pub_jwk(key);
    assert_int_equal(akm_jwk_thumbprint(back, th2, NULL), 0);
    assert_string_equal(th2, RFC7638_THUMB);
    assert_string_equal(json_string_value(json_object_get(back, "n")), RFC7638_N);
    assert_int_equal(akm_jwk_equal(j, back, NULL), 1);
    json_decref(back);
    back = jparse("{}");
    assert_int_equal(akm_jwk_equal(j, back, NULL), -EINVAL);
    json_decref(back);
    json_decref(j);
    EVP_PKEY_free(key);
}

static void test_rfc8037_ed25519(void **state)
{
    const char *pub = "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"" RFC8037_X "\"}";
    char *body = flat(RFC8037_PROTECTED, RFC8037_PAYLOAD, RFC8037_SIG);
    char th[AKM_JWK_THUMB_LEN + 1];
    json_t *j = jparse(pub), *back;
    EVP_PKEY *key = jwk_key(pub);
    struct akm_jws *jws = NULL;
    size_t n;

    (void)state;
    assert_int_equal(akm_jwk_thumbprint(j, th, NULL), 0);
    assert_string_equal(th, RFC8037_THUMB);
    assert_int_equal(jwk_rc("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"d\":\"" RFC8037_D
                            "\",\"x\":\"" RFC8037_X "\"}"),
                     -EKEYREJECTED);
    back = pub_jwk(key);
    assert_string_equal(json_string_value(json_object_get(back, "x")), RFC8037_X);
    assert_int_equal(akm_jwk_equal(j, back, NULL), 1);
    assert_int_equal(parse_kind(body, AKM_JWS_BARE, &jws), 0);
    assert_memory_equal(akm_jws_payload(jws, &n), "Example of Ed25519 signing", 26);
    assert_int_equal(n, 26);
    assert_int_equal(akm_jws_verify(jws, key, NULL), 0);
    assert_int_equal(akm_jws_verify(jws, k_ed, NULL), -EBADMSG);
    assert_int_equal(akm_jws_verify(jws, k_p256, NULL), -ENOTSUP);
    akm_jws_free(jws);
    tamper_all(RFC8037_PROTECTED, RFC8037_PAYLOAD, RFC8037_SIG, AKM_JWS_BARE, key, NULL, 0);
    json_decref(back);
    json_decref(j);
    EVP_PKEY_free(key);
    free(body);
}

/* ---- round trips with generated keys ---- */

static void roundtrip(EVP_PKEY *key, const char *alg)
{
    struct ut_err e = {{0}};
    json_t *jwk = pub_jwk(key), *p = NULL;
    char *body = make_jws(key, hdr_jwk(key, alg), "{\"termsOfServiceAgreed\":true}");
    struct akm_jws *j = NULL;
    EVP_PKEY *imp = NULL;
    char t1[AKM_JWK_THUMB_LEN + 1], t2[AKM_JWK_THUMB_LEN + 1];
    size_t n;

    assert_int_equal(parse_req(body, strlen(body), &j), 0);
    assert_string_equal(akm_jws_alg(j), alg);
    assert_string_equal(akm_jws_nonce(j), NONCE);
    assert_string_equal(akm_jws_url(j), URL);
    assert_null(akm_jws_kid(j));
    assert_non_null(akm_jws_jwk(j));
    assert_false(akm_jws_payload_empty(j));
    assert_int_equal(akm_jws_payload_json(j, &p, &e), 0);
    assert_true(json_is_true(json_object_get(p, "termsOfServiceAgreed")));
    json_decref(p);
    if (akm_jwk_to_pkey(akm_jws_jwk(j), &imp, &e) != 0)
        fail_msg("%s: %s", alg, e.msg);
    if (akm_jws_verify(j, imp, &e) != 0)
        fail_msg("%s: %s", alg, e.msg);
    assert_int_equal(akm_jws_verify(j, key, NULL), 0);
    assert_int_equal(akm_jwk_thumbprint(akm_jws_jwk(j), t1, NULL), 0);
    assert_int_equal(akm_jwk_thumbprint(jwk, t2, NULL), 0);
    assert_string_equal(t1, t2);
    assert_int_equal(strlen(t1), AKM_JWK_THUMB_LEN);
    assert_int_equal(akm_jwk_equal(akm_jws_jwk(j), jwk, NULL), 1);
    assert_int_equal(EVP_PKEY_eq(imp, key), 1);
    akm_jws_free(j);
    free(body);

    /* kid + POST-as-GET */
    body = make_jws(key, hdr_kid(alg), "");
    assert_int_equal(parse_req(body, strlen(body), &j), 0);
    assert_string_equal(akm_jws_kid(j), KID);
    assert_null(akm_jws_jwk(j));
    assert_true(akm_jws_payload_empty(j));
    assert_non_null(akm_jws_payload(j, &n));
    assert_int_equal(n, 0);
    assert_int_equal(akm_jws_payload_json(j, &p, NULL), -EINVAL);
    assert_null(p);
    assert_int_equal(akm_jws_verify(j, imp, NULL), 0);
    akm_jws_free(j);
    free(body);
    EVP_PKEY_free(imp);
    json_decref(jwk);
}

static void test_roundtrip_es256(void **state)
{
    (void)state;
    roundtrip(k_p256, "ES256");
}

static void test_roundtrip_es384(void **state)
{
    (void)state;
    roundtrip(k_p384, "ES384");
}

static void test_roundtrip_es512(void **state)
{
    (void)state;
    roundtrip(k_p521, "ES512");
}

static void test_roundtrip_rs256(void **state)
{
    (void)state;
    roundtrip(k_rsa, "RS256");
}

static void test_roundtrip_eddsa(void **state)
{
    (void)state;
    roundtrip(k_ed, "EdDSA");
}

static void test_wrong_key_same_type(void **state)
{
    EVP_PKEY *other[] = {EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"),
                         EVP_PKEY_Q_keygen(NULL, NULL, "ED25519")};
    char *b1 = make_jws(k_p256, hdr_kid("ES256"), "{}");
    char *b2 = make_jws(k_ed, hdr_kid("EdDSA"), "{}");

    (void)state;
    assert_int_equal(check(b1, AKM_JWS_REQUEST, other[0], NULL, 0), -EBADMSG);
    assert_int_equal(check(b2, AKM_JWS_REQUEST, other[1], NULL, 0), -EBADMSG);
    EVP_PKEY_free(other[0]);
    EVP_PKEY_free(other[1]);
    free(b1);
    free(b2);
}

/* EC coordinates are always the full field size, even with leading zeros:
 * for each curve, find keys whose x, and whose y, is shorter than that. */
static void test_from_pkey_fixed_length(void **state)
{
    static const struct {
        const char *crv;
        int len;
    } c[] = {{"P-256", 32}, {"P-384", 48}, {"P-521", 66}};

    (void)state;
    for (size_t ci = 0; ci < sizeof(c) / sizeof(c[0]); ci++) {
        int found = 0; /* bit 0: a short x seen, bit 1: a short y seen */
        size_t txt = ut_b64_enclen((size_t)c[ci].len, 1);

        for (int i = 0; i < 40000 && found != 3; i++) {
            EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", c[ci].crv), *back = NULL;
            BIGNUM *x = NULL, *y = NULL;
            int bit;
            json_t *j;

            assert_non_null(k);
            assert_int_equal(EVP_PKEY_get_bn_param(k, "qx", &x), 1);
            assert_int_equal(EVP_PKEY_get_bn_param(k, "qy", &y), 1);
            bit = (BN_num_bytes(x) < c[ci].len ? 1 : 0) | (BN_num_bytes(y) < c[ci].len ? 2 : 0);
            if (bit & ~found) {
                found |= bit;
                j = pub_jwk(k);
                assert_string_equal(json_string_value(json_object_get(j, "crv")), c[ci].crv);
                assert_int_equal(strlen(json_string_value(json_object_get(j, "x"))), txt);
                assert_int_equal(strlen(json_string_value(json_object_get(j, "y"))), txt);
                assert_int_equal(akm_jwk_to_pkey(j, &back, NULL), 0);
                assert_int_equal(EVP_PKEY_eq(back, k), 1);
                EVP_PKEY_free(back);
                json_decref(j);
            }
            BN_free(x);
            BN_free(y);
            EVP_PKEY_free(k);
        }
        if (found != 3)
            fail_msg("%s: no key with a short x and one with a short y", c[ci].crv);
    }
}

/* ---- structure errors ---- */

static void test_body_errors(void **state)
{
    char *good = make_jws(k_p256, hdr_kid("ES256"), "{}");
    json_t *g = jparse(good);
    const char *prot = json_string_value(json_object_get(g, "protected"));
    const char *pay = json_string_value(json_object_get(g, "payload"));
    const char *sig = json_string_value(json_object_get(g, "signature"));
    char *s, *big;
    struct akm_jws *j = NULL;

    (void)state;
    assert_int_equal(check(good, AKM_JWS_REQUEST, k_p256, NULL, 0), 0);
    /* empty, not JSON, not an object */
    assert_int_equal(akm_jws_parse("", 0, &j, NULL), -EINVAL);
    assert_int_equal(akm_jws_parse(NULL, 0, &j, NULL), -EINVAL);
    assert_int_equal(req_rc(" "), -EINVAL);
    assert_int_equal(req_rc("[]"), -EINVAL);
    assert_int_equal(req_rc("\"x\""), -EINVAL);
    assert_int_equal(req_rc("42"), -EINVAL);
    assert_int_equal(req_rc("null"), -EINVAL);
    assert_int_equal(req_rc("{"), -EINVAL);
    assert_int_equal(req_rc("{}"), -EINVAL);
    /* trailing garbage after the object */
    assert_true(asprintf(&s, "%s x", good) > 0);
    assert_int_equal(req_rc(s), -EINVAL);
    free(s);
    /* duplicate top-level member */
    assert_true(asprintf(&s,
                         "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\","
                         "\"payload\":\"%s\"}",
                         prot, pay, sig, pay) > 0);
    assert_int_equal(req_rc(s), -EINVAL);
    free(s);
    /* general serialization */
    assert_true(asprintf(&s,
                         "{\"payload\":\"%s\",\"signatures\":[{\"protected\":\"%s\","
                         "\"signature\":\"%s\"}]}",
                         pay, prot, sig) > 0);
    req_fails(s, -EINVAL, "general serialization");
    free(s);
    assert_true(asprintf(&s,
                         "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\","
                         "\"signatures\":[]}",
                         prot, pay, sig) > 0);
    req_fails(s, -EINVAL, "general serialization");
    free(s);
    /* unprotected header, even empty */
    assert_true(asprintf(&s,
                         "{\"protected\":\"%s\",\"header\":{},\"payload\":\"%s\","
                         "\"signature\":\"%s\"}",
                         prot, pay, sig) > 0);
    req_fails(s, -EINVAL, "unprotected \"header\"");
    free(s);
    /* any other extra member */
    assert_true(asprintf(&s,
                         "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\","
                         "\"x\":1}",
                         prot, pay, sig) > 0);
    req_fails(s, -EINVAL, "unexpected member \"x\"");
    free(s);
    /* missing or mistyped members; detached payload */
    assert_true(asprintf(&s, "{\"protected\":\"%s\",\"signature\":\"%s\"}", prot, sig) > 0);
    assert_int_equal(req_rc(s), -EINVAL);
    free(s);
    assert_true(asprintf(&s, "{\"protected\":\"%s\",\"payload\":\"%s\"}", prot, pay) > 0);
    assert_int_equal(req_rc(s), -EINVAL);
    free(s);
    assert_true(
        asprintf(&s, "{\"protected\":\"%s\",\"payload\":{},\"signature\":\"%s\"}", prot, sig) > 0);
    assert_int_equal(req_rc(s), -EINVAL);
    free(s);
    assert_true(
        asprintf(&s, "{\"protected\":null,\"payload\":\"%s\",\"signature\":\"%s\"}", pay, sig) > 0);
    assert_int_equal(req_rc(s), -EINVAL);
    free(s);
    assert_true(
        asprintf(&s, "{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":[]}", prot, pay) > 0);
    assert_int_equal(req_rc(s), -EINVAL);
    free(s);
    /* an object from a parser that allowed NUL: the part must not be cut */
    {
        json_t *o = json_loads(good, 0, NULL);
        char *p2 = malloc(strlen(pay) + 8);

        assert_non_null(o);
        assert_non_null(p2);
        memcpy(p2, pay, strlen(pay));
        memcpy(p2 + strlen(pay), "\0AAAA", 5);
        json_object_set_new(o, "payload", json_stringn(p2, strlen(pay) + 5));
        assert_int_equal(akm_jws_parse_json(o, AKM_JWS_REQUEST, &j, NULL), -EINVAL);
        assert_null(j);
        free(p2);
        json_decref(o);
    }
    /* body over 64 KiB */
    big = malloc(AKM_JWS_BODY_MAX + 2);
    assert_non_null(big);
    memset(big, ' ', AKM_JWS_BODY_MAX + 1);
    memcpy(big, good, strlen(good));
    big[AKM_JWS_BODY_MAX + 1] = '\0';
    assert_int_equal(parse_req(big, AKM_JWS_BODY_MAX + 1, &j), -EMSGSIZE);
    /* ...but trailing whitespace within the cap is fine */
    assert_int_equal(parse_req(big, AKM_JWS_BODY_MAX, &j), 0);
    akm_jws_free(j);
    free(big);
    json_decref(g);
    free(good);
}

/* base64url strictness, applied to each of the three parts. */
static void test_base64url_errors(void **state)
{
    char *good = make_jws(k_p256, hdr_kid("ES256"), "{\"a\":1}");
    json_t *g = jparse(good);
    const char *orig[3] = {json_string_value(json_object_get(g, "protected")),
                           json_string_value(json_object_get(g, "payload")),
                           json_string_value(json_object_get(g, "signature"))};
    /* suffixes and in-place substitutions that must all be refused */
    /* "@" stands for "A"s up to a length of 1 mod 4, which no base64 has */
    static const char *const bad_suffix[] = {"=", "==", "A=", "@", ".", " ", "\\n"};
    static const char bad_char[] = {'+', '/', '=', '.', ' ', '*', '~'};

    (void)state;
    for (int p = 0; p < 3; p++) {
        for (size_t i = 0; i < sizeof(bad_suffix) / sizeof(bad_suffix[0]); i++) {
            const char *v[3] = {orig[0], orig[1], orig[2]};
            char *c, *body;

            if (strcmp(bad_suffix[i], "@") == 0) {
                size_t l = strlen(orig[p]);

                c = malloc(l + 5);
                assert_non_null(c);
                memcpy(c, orig[p], l);
                while (l % 4 != 1)
                    c[l++] = 'A';
                c[l] = '\0';
            } else {
                assert_true(asprintf(&c, "%s%s", orig[p], bad_suffix[i]) > 0);
            }
            v[p] = c;
            body = flat(v[0], v[1], v[2]);
            if (check(body, AKM_JWS_REQUEST, k_p256, NULL, 0) != -EINVAL)
                fail_msg("part %d with suffix \"%s\" not refused as malformed", p, bad_suffix[i]);
            free(body);
            free(c);
        }
        for (size_t i = 0; i < sizeof(bad_char); i++) {
            const char *v[3] = {orig[0], orig[1], orig[2]};
            char *c = strdup(orig[p]), *body;

            assert_non_null(c);
            c[3] = bad_char[i];
            v[p] = c;
            body = flat(v[0], v[1], v[2]);
            if (check(body, AKM_JWS_REQUEST, k_p256, NULL, 0) != -EINVAL)
                fail_msg("part %d with '%c' not refused as malformed", p, bad_char[i]);
            free(body);
            free(c);
        }
    }
    /* standard-alphabet padding of the RFC vector's payload ("fQ" -> "fQ==") */
    {
        char *body = flat(RFC7515_A3_PROTECTED, RFC7515_PAYLOAD "==", RFC7515_A3_SIG);
        struct akm_jws *j = NULL;

        assert_int_equal(parse_kind(body, AKM_JWS_BARE, &j), -EINVAL);
        free(body);
        /* non-canonical trailing bits: "fQ" -> "fR" decodes to the same byte */
        body = flat(RFC7515_A3_PROTECTED, "eyJpc3MiOiJqb2UifR", RFC7515_A3_SIG);
        assert_int_equal(parse_kind(body, AKM_JWS_BARE, &j), -EINVAL);
        free(body);
    }
    json_decref(g);
    free(good);
}

static void test_protected_errors(void **state)
{
    static const char *const bad[] = {
        "",                                      /* empty */
        "[]",                                    /* not an object */
        "\"ES256\"",                             /* not an object */
        "{\"alg\":\"ES256\",\"alg\":\"ES256\"}", /* duplicate keys */
        "{\"alg\":\"ES256\"} x",                 /* trailing data */
        "{\"alg\":\"ES\\u0000256\"}",            /* NUL escape */
        "{alg:\"ES256\"}",                       /* not JSON */
        "\xff\xfe",                              /* not UTF-8 */
    };
    unsigned char sig[64] = {1};
    char *s64 = b64u(sig, sizeof(sig));

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *p = b64u(bad[i], strlen(bad[i])), *body = flat(p, "", s64);

        if (req_rc(body) != -EINVAL)
            fail_msg("protected header #%zu not refused", i);
        free(p);
        free(body);
    }
    free(s64);
}

static void test_header_size(void **state)
{
    json_t *h;
    char *body, *pad;
    size_t base, n;
    struct akm_jws *j = NULL;

    (void)state;
    /* find the padding that makes the header exactly AKM_JWS_PROTECTED_MAX */
    h = hdr_kid("ES256");
    json_object_set_new(h, "x", json_string(""));
    {
        char *t = json_dumps(h, JSON_COMPACT);
        base = strlen(t);
        free(t);
    }
    json_decref(h);
    n = AKM_JWS_PROTECTED_MAX - base;
    pad = malloc(n + 2);
    assert_non_null(pad);
    memset(pad, 'a', n + 1);
    pad[n] = '\0';
    h = hdr_kid("ES256");
    json_object_set_new(h, "x", json_string(pad));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(check(body, AKM_JWS_REQUEST, k_p256, NULL, 0), 0);
    free(body);
    /* one byte more */
    pad[n] = 'a';
    pad[n + 1] = '\0';
    h = hdr_kid("ES256");
    json_object_set_new(h, "x", json_string(pad));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(parse_req(body, strlen(body), &j), -EMSGSIZE);
    free(body);
    free(pad);
    /* huge: 40 KiB of header */
    pad = malloc(40000);
    assert_non_null(pad);
    memset(pad, 'b', 39999);
    pad[39999] = '\0';
    h = hdr_kid("ES256");
    json_object_set_new(h, "x", json_string(pad));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(req_rc(body), -EMSGSIZE);
    free(body);
    free(pad);
}

/* ---- header rules (request kind) ---- */

struct hcase {
    const char *set; /* JSON object merged into the header, or NULL */
    const char *del; /* a member to delete, or NULL */
    int rc;          /* of parse-then-verify */
};

static void run_hcases(const struct hcase *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *h = hdr_jwk(k_p256, "ES256");
        char *body;
        int rc;

        if (c[i].set) {
            json_t *p = jparse(c[i].set);
            json_object_update(h, p);
            json_decref(p);
        }
        if (c[i].del)
            json_object_del(h, c[i].del);
        body = make_jws(k_p256, h, "{}");
        rc = check(body, AKM_JWS_REQUEST, k_p256, NULL, 0);
        if (rc != c[i].rc)
            fail_msg("header case #%zu (set %s, del %s): rc %d, want %d", i,
                     c[i].set ? c[i].set : "-", c[i].del ? c[i].del : "-", rc, c[i].rc);
        free(body);
    }
}

static void test_header_errors(void **state)
{
    static const struct hcase cases[] = {
        {NULL, NULL, 0},
        {"{\"kid\":\"" KID "\"}", NULL, -EINVAL}, /* both jwk and kid */
        {NULL, "jwk", -EINVAL},                   /* neither */
        {NULL, "nonce", -EPROTO},
        {"{\"nonce\":5}", NULL, -EPROTO},
        {"{\"nonce\":null}", NULL, -EPROTO},
        {"{\"nonce\":\"\"}", NULL, -EPROTO},
        {"{\"nonce\":\"abc+/\"}", NULL, -EPROTO},
        {"{\"nonce\":\"abcd=\"}", NULL, -EPROTO},
        {NULL, "url", -EINVAL},
        {"{\"url\":\"\"}", NULL, -EINVAL},
        {"{\"url\":7}", NULL, -EINVAL},
        {NULL, "alg", -EINVAL},
        {"{\"alg\":null}", NULL, -EINVAL},
        {"{\"alg\":[\"ES256\"]}", NULL, -EINVAL},
        {"{\"alg\":\"none\"}", NULL, -ENOTSUP},
        {"{\"alg\":\"HS256\"}", NULL, -ENOTSUP},
        {"{\"alg\":\"HS384\"}", NULL, -ENOTSUP},
        {"{\"alg\":\"HS512\"}", NULL, -ENOTSUP},
        {"{\"alg\":\"PS256\"}", NULL, -ENOTSUP},
        {"{\"alg\":\"RS512\"}", NULL, -ENOTSUP},
        {"{\"alg\":\"es256\"}", NULL, -ENOTSUP},
        {"{\"alg\":\"\"}", NULL, -ENOTSUP},
        {"{\"crit\":[\"exp\"]}", NULL, -EINVAL},
        {"{\"crit\":[]}", NULL, -EINVAL},
        {"{\"b64\":false}", NULL, -EINVAL},
        {"{\"b64\":0}", NULL, -EINVAL},
        {"{\"b64\":true}", NULL, 0},
        {"{\"jku\":\"https://x.example/k\"}", NULL, -EINVAL},
        {"{\"x5u\":\"https://x.example/c\"}", NULL, -EINVAL},
        {"{\"x5c\":[\"AA\"]}", NULL, -EINVAL},
        {"{\"jwk\":\"key\"}", NULL, -EINVAL},
        {"{\"jwk\":[]}", NULL, -EINVAL},
        {"{\"typ\":\"JWT\",\"cty\":\"x\",\"future\":{\"a\":1}}", NULL, 0}, /* unknown: ignored */
    };
    static const struct hcase kid_cases[] = {
        {"{\"kid\":\"\"}", "jwk", -EINVAL},
        {"{\"kid\":1}", "jwk", -EINVAL},
        {"{\"kid\":null}", "jwk", -EINVAL},
    };

    (void)state;
    run_hcases(cases, sizeof(cases) / sizeof(cases[0]));
    run_hcases(kid_cases, sizeof(kid_cases) / sizeof(kid_cases[0]));
}

static void test_header_field_caps(void **state)
{
    char *s = malloc(AKM_JWS_URL_MAX + 2), *body;
    json_t *h;

    (void)state;
    assert_non_null(s);
    memset(s, 'A', AKM_JWS_URL_MAX + 1);
    s[AKM_JWS_URL_MAX + 1] = '\0';
    h = hdr_jwk(k_p256, "ES256");
    json_object_set_new(h, "url", json_string(s));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(req_rc(body), -EINVAL);
    free(body);
    h = hdr_kid("ES256");
    json_object_set_new(h, "kid", json_string(s));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(req_rc(body), -EINVAL);
    free(body);
    /* at the cap: fine */
    s[AKM_JWS_URL_MAX] = '\0';
    h = hdr_kid("ES256");
    json_object_set_new(h, "kid", json_string(s));
    json_object_set_new(h, "url", json_string(s));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(check(body, AKM_JWS_REQUEST, k_p256, NULL, 0), 0);
    free(body);
    /* nonce: AKM_JWS_NONCE_MAX base64url characters at most */
    s[AKM_JWS_NONCE_MAX] = '\0';
    h = hdr_kid("ES256");
    json_object_set_new(h, "nonce", json_string(s));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(req_rc(body), 0);
    free(body);
    s[AKM_JWS_NONCE_MAX] = 'A';
    s[AKM_JWS_NONCE_MAX + 1] = '\0';
    h = hdr_kid("ES256");
    json_object_set_new(h, "nonce", json_string(s));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(req_rc(body), -EPROTO);
    free(body);
    free(s);
}

/* jwk "alg", when present, must equal the JWS alg. */
static void test_jwk_alg_member(void **state)
{
    json_t *h = hdr_jwk(k_p256, "ES256");
    char *body;

    (void)state;
    json_object_set_new(json_object_get(h, "jwk"), "alg", json_string("ES256"));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(check(body, AKM_JWS_REQUEST, k_p256, NULL, 0), 0);
    free(body);
    h = hdr_jwk(k_p256, "ES256");
    json_object_set_new(json_object_get(h, "jwk"), "alg", json_string("ES384"));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(req_rc(body), -ENOTSUP);
    free(body);
    h = hdr_jwk(k_p256, "ES256");
    json_object_set_new(json_object_get(h, "jwk"), "alg", json_integer(1));
    body = make_jws(k_p256, h, "{}");
    assert_int_equal(req_rc(body), -ENOTSUP);
    free(body);
}

/* ---- signatures: lengths, values, alg/key mismatch ---- */

static void test_signature_errors(void **state)
{
    char *good = make_jws(k_p256, hdr_kid("ES256"), "{}");
    json_t *g = jparse(good);
    const char *prot = json_string_value(json_object_get(g, "protected"));
    const char *pay = json_string_value(json_object_get(g, "payload"));
    size_t sl;
    unsigned char *sig = unb64u(json_string_value(json_object_get(g, "signature")), &sl), z[200];
    char *s64, *body;
    struct akm_jws *j = NULL;

    (void)state;
    assert_int_equal(sl, 64);
    /* truncated and extended (e.g. a DER signature would be ~70 bytes) */
    for (size_t n = 1; n < 72; n++) {
        if (n == 64)
            continue;
        memset(z, 0x11, sizeof(z));
        memcpy(z, sig, n < sl ? n : sl);
        s64 = b64u(z, n);
        body = flat(prot, pay, s64);
        assert_int_equal(req_rc(body), -EINVAL);
        free(body);
        free(s64);
    }
    /* empty signature */
    body = flat(prot, pay, "");
    assert_int_equal(req_rc(body), -EINVAL);
    free(body);
    /* r = 0, s = 0, r = s = 0xff.. (>= n), r and s swapped */
    {
        unsigned char v[4][64];

        memset(v[0], 0, 64);
        memcpy(v[0] + 32, sig + 32, 32);
        memcpy(v[1], sig, 32);
        memset(v[1] + 32, 0, 32);
        memset(v[2], 0xff, 64);
        memcpy(v[3], sig + 32, 32);
        memcpy(v[3] + 32, sig, 32);
        for (int i = 0; i < 4; i++) {
            s64 = b64u(v[i], 64);
            body = flat(prot, pay, s64);
            assert_int_equal(check(body, AKM_JWS_REQUEST, k_p256, NULL, 0), -EBADMSG);
            free(body);
            free(s64);
        }
    }
    free(sig);
    json_decref(g);
    free(good);

    /* RS256: the signature must be exactly the modulus size */
    good = make_jws(k_rsa, hdr_kid("RS256"), "{}");
    g = jparse(good);
    prot = json_string_value(json_object_get(g, "protected"));
    pay = json_string_value(json_object_get(g, "payload"));
    sig = unb64u(json_string_value(json_object_get(g, "signature")), &sl);
    assert_int_equal(sl, 256);
    s64 = b64u(sig, 255);
    body = flat(prot, pay, s64);
    {
        struct akm_jws *short_sig = NULL;

        /* Parsed (the length belongs to the key), refused by verify. */
        assert_int_equal(parse_req(body, strlen(body), &short_sig), 0);
        assert_int_equal(akm_jws_verify(short_sig, k_rsa, NULL), -EINVAL);
        akm_jws_free(short_sig);
    }
    free(body);
    free(s64);
    {
        unsigned char big[300];

        memset(big, 0, sizeof(big));
        memcpy(big + 1, sig, 256); /* leading zero octet: 257 bytes */
        s64 = b64u(big, 257);
        body = flat(prot, pay, s64);
        assert_int_equal(parse_req(body, strlen(body), &j), 0);
        assert_int_equal(akm_jws_verify(j, k_rsa, NULL), -EINVAL);
        akm_jws_free(j);
        free(body);
        free(s64);
    }
    /* over AKM_JWS_SIG_MAX */
    {
        unsigned char *huge = calloc(1, AKM_JWS_SIG_MAX + 1);

        assert_non_null(huge);
        s64 = b64u(huge, AKM_JWS_SIG_MAX + 1);
        body = flat(prot, pay, s64);
        assert_int_equal(req_rc(body), -EINVAL);
        free(body);
        free(s64);
        free(huge);
    }
    free(sig);
    json_decref(g);
    free(good);
}

static void test_alg_key_mismatch(void **state)
{
    struct {
        EVP_PKEY **signer;
        const char *alg;
        EVP_PKEY **verifier;
    } c[] = {
        {&k_p256, "ES256", &k_p384}, {&k_p384, "ES384", &k_p256}, {&k_p521, "ES512", &k_p384},
        {&k_p256, "ES256", &k_rsa},  {&k_p256, "ES256", &k_ed},   {&k_rsa, "RS256", &k_p256},
        {&k_rsa, "RS256", &k_ed},    {&k_ed, "EdDSA", &k_p256},   {&k_ed, "EdDSA", &k_rsa},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        char *body = make_jws(*c[i].signer, hdr_kid(c[i].alg), "{}");

        assert_int_equal(check(body, AKM_JWS_REQUEST, *c[i].signer, NULL, 0), 0);
        if (check(body, AKM_JWS_REQUEST, *c[i].verifier, NULL, 0) != -ENOTSUP)
            fail_msg("case %zu: %s verified with a wrong key type", i, c[i].alg);
        free(body);
    }
    /* a P-256 JWK in the header with alg ES384 */
    {
        json_t *h = hdr_jwk(k_p256, "ES384");
        char *body = make_jws(k_p384, h, "{}");
        struct akm_jws *j = NULL;
        EVP_PKEY *imp = NULL;

        assert_int_equal(parse_req(body, strlen(body), &j), 0);
        assert_int_equal(akm_jwk_to_pkey(akm_jws_jwk(j), &imp, NULL), 0);
        assert_int_equal(akm_jws_verify(j, imp, NULL), -ENOTSUP);
        EVP_PKEY_free(imp);
        akm_jws_free(j);
        free(body);
    }
    /* an RSA-1024 key handed to verify directly */
    {
        EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
        char *body = make_jws(small, hdr_kid("RS256"), "{}");
        struct akm_jws *j = NULL;

        /* 128-byte signature: parsed; the weak key is what verify refuses. */
        assert_int_equal(parse_req(body, strlen(body), &j), 0);
        assert_int_equal(akm_jws_verify(j, small, NULL), -EKEYREJECTED);
        akm_jws_free(j);
        j = NULL;
        free(body);
        body = make_jws(k_rsa, hdr_kid("RS256"), "{}");
        assert_int_equal(parse_req(body, strlen(body), &j), 0);
        assert_int_equal(akm_jws_verify(j, small, NULL), -EKEYREJECTED);
        akm_jws_free(j);
        free(body);
        EVP_PKEY_free(small);
    }
}

/* ---- JWK import errors ---- */

static char *jwk_text(EVP_PKEY *key)
{
    json_t *j = pub_jwk(key);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

    json_decref(j);
    assert_non_null(s);
    return s;
}

/* jwk of key with member name replaced by the base64url of bytes. */
static int jwk_with(EVP_PKEY *key, const char *name, const unsigned char *b, size_t n)
{
    json_t *j = pub_jwk(key);
    char *v = b64u(b, n), *s;
    int rc;

    json_object_set_new(j, name, json_string(v));
    s = json_dumps(j, JSON_COMPACT);
    rc = jwk_rc(s);
    free(s);
    free(v);
    json_decref(j);
    return rc;
}

static void test_jwk_ec_errors(void **state)
{
    json_t *j = pub_jwk(k_p256);
    size_t xl, yl;
    unsigned char *x = unb64u(json_string_value(json_object_get(j, "x")), &xl);
    unsigned char *y = unb64u(json_string_value(json_object_get(j, "y")), &yl);
    unsigned char buf[80];
    /* the P-256 field prime */
    static const unsigned char p256[32] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
                                           0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                           0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    char *s = jwk_text(k_p256);

    (void)state;
    assert_int_equal(jwk_rc(s), 0);
    free(s);
    /* point not on the curve */
    memcpy(buf, y, 32);
    buf[31] ^= 1;
    assert_int_equal(jwk_with(k_p256, "y", buf, 32), -EKEYREJECTED);
    /* all-zero point, coordinate == p */
    memset(buf, 0, 32);
    assert_int_equal(jwk_with(k_p256, "x", buf, 32), -EKEYREJECTED);
    assert_int_equal(jwk_with(k_p256, "x", p256, 32), -EKEYREJECTED);
    /* wrong coordinate lengths: 31, 33 (with and without a leading zero) */
    assert_int_equal(jwk_with(k_p256, "x", x + 1, 31), -EKEYREJECTED);
    buf[0] = 0;
    memcpy(buf + 1, x, 32);
    assert_int_equal(jwk_with(k_p256, "x", buf, 33), -EKEYREJECTED);
    assert_int_equal(jwk_with(k_p256, "y", buf, 33), -EKEYREJECTED);
    /* P-384-sized coordinates on a P-256 key */
    memset(buf, 1, 48);
    assert_int_equal(jwk_with(k_p256, "x", buf, 48), -EKEYREJECTED);
    /* private members, a symmetric key */
    assert_int_equal(jwk_with(k_p256, "d", x, 32), -EKEYREJECTED);
    assert_int_equal(jwk_rc("{\"kty\":\"oct\",\"k\":\"" RFC7515_A1_KEY "\"}"), -EKEYREJECTED);
    assert_int_equal(jwk_rc("{\"kty\":\"oct\"}"), -EKEYREJECTED);
    /* unsupported curves and types */
    assert_int_equal(jwk_rc("{\"kty\":\"EC\",\"crv\":\"P-192\",\"x\":\"AA\",\"y\":\"AA\"}"),
                     -EKEYREJECTED);
    assert_int_equal(jwk_rc("{\"kty\":\"EC\",\"crv\":\"secp256k1\",\"x\":\"AA\",\"y\":\"AA\"}"),
                     -EKEYREJECTED);
    assert_int_equal(jwk_rc("{\"kty\":\"EC\",\"crv\":\"Ed25519\",\"x\":\"AA\",\"y\":\"AA\"}"),
                     -EKEYREJECTED);
    assert_int_equal(jwk_rc("{\"kty\":\"ec\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}"),
                     -EKEYREJECTED);
    /* structure: missing/mistyped members, bad base64url */
    assert_int_equal(jwk_rc("{\"crv\":\"P-256\"}"), -EINVAL);
    assert_int_equal(jwk_rc("{\"kty\":1}"), -EINVAL);
    assert_int_equal(jwk_rc("{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"AA\"}"), -EINVAL);
    assert_int_equal(jwk_rc("{\"kty\":\"EC\",\"crv\":256,\"x\":\"AA\",\"y\":\"AA\"}"), -EINVAL);
    assert_int_equal(jwk_rc("[]"), -EINVAL);
    {
        json_t *c = json_deep_copy(j);
        char *t;

        json_object_del(c, "y");
        t = json_dumps(c, JSON_COMPACT);
        assert_int_equal(jwk_rc(t), -EINVAL);
        free(t);
        json_object_set_new(c, "y", json_integer(3));
        t = json_dumps(c, JSON_COMPACT);
        assert_int_equal(jwk_rc(t), -EINVAL);
        free(t);
        /* padding and the standard alphabet */
        assert_true(asprintf(&t, "%s=", json_string_value(json_object_get(j, "y"))) > 0);
        json_object_set_new(c, "y", json_string(t));
        free(t);
        t = json_dumps(c, JSON_COMPACT);
        assert_int_equal(jwk_rc(t), -EINVAL);
        free(t);
        t = strdup(json_string_value(json_object_get(j, "y")));
        t[5] = '+';
        json_object_set_new(c, "y", json_string(t));
        free(t);
        t = json_dumps(c, JSON_COMPACT);
        assert_int_equal(jwk_rc(t), -EINVAL);
        free(t);
        json_decref(c);
    }
    /* the thumbprint applies the same JSON-level rules */
    {
        char th[AKM_JWK_THUMB_LEN + 1];
        json_t *c = json_deep_copy(j);

        json_object_set_new(c, "d", json_string("AA"));
        assert_int_equal(akm_jwk_thumbprint(c, th, NULL), -EKEYREJECTED);
        assert_string_equal(th, "");
        json_decref(c);
    }
    free(x);
    free(y);
    json_decref(j);
}

/* An RSA JWK from raw n and e bytes. */
static int rsa_rc(const unsigned char *n, size_t nl, const unsigned char *e, size_t el)
{
    char *n64 = b64u(n, nl), *e64 = b64u(e, el), *s;
    int rc;

    assert_true(asprintf(&s, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", n64, e64) > 0);
    rc = jwk_rc(s);
    free(s);
    free(n64);
    free(e64);
    return rc;
}

static void test_jwk_rsa_errors(void **state)
{
    json_t *j = pub_jwk(k_rsa);
    size_t nl;
    unsigned char *n = unb64u(json_string_value(json_object_get(j, "n")), &nl), buf[1100];
    static const unsigned char e65537[] = {1, 0, 1}, e3[] = {3}, e_even[] = {1, 0, 2},
                               e_lead[] = {0, 1, 0, 1}, e_big[] = {1, 0, 0, 0, 1}, e_17[] = {0x11};
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    BIGNUM *m = BN_new(), *three = BN_new();
    BN_CTX *bc = BN_CTX_new();
    char *s;

    (void)state;
    assert_int_equal(nl, 256);
    assert_int_equal(rsa_rc(n, nl, e65537, 3), 0);
    /* 1024-bit key: badPublicKey */
    s = jwk_text(small);
    assert_int_equal(jwk_rc(s), -EKEYREJECTED);
    free(s);
    /* truncated modulus (2040 bits) */
    assert_int_equal(rsa_rc(n + 1, nl - 1, e65537, 3), -EKEYREJECTED);
    /* exponents: 3 and 17 (below 2^16+1), even, leading zero, 5 bytes */
    assert_int_equal(rsa_rc(n, nl, e3, 1), -EKEYREJECTED);
    assert_int_equal(rsa_rc(n, nl, e_17, 1), -EKEYREJECTED);
    assert_int_equal(rsa_rc(n, nl, e_even, 3), -EKEYREJECTED);
    assert_int_equal(rsa_rc(n, nl, e_lead, 4), -EKEYREJECTED);
    assert_int_equal(rsa_rc(n, nl, e_big, 5), -EKEYREJECTED);
    /* modulus with a leading zero octet, even modulus */
    buf[0] = 0;
    memcpy(buf + 1, n, nl);
    assert_int_equal(rsa_rc(buf, nl + 1, e65537, 3), -EKEYREJECTED);
    memcpy(buf, n, nl);
    buf[nl - 1] &= 0xfe;
    assert_int_equal(rsa_rc(buf, nl, e65537, 3), -EKEYREJECTED);
    /* over 8192 bits */
    memset(buf, 0xff, 1025);
    assert_int_equal(rsa_rc(buf, 1025, e65537, 3), -EKEYREJECTED);
    /* 2048-bit odd modulus with a small factor (3, then 751) */
    assert_non_null(m);
    assert_non_null(three);
    assert_non_null(bc);
    assert_int_equal(BN_rand(m, 2046, BN_RAND_TOP_TWO, BN_RAND_BOTTOM_ODD), 1);
    assert_int_equal(BN_set_word(three, 3), 1);
    assert_int_equal(BN_mul(m, m, three, bc), 1);
    assert_int_equal(BN_num_bits(m), 2048);
    assert_int_equal(BN_bn2binpad(m, buf, 256), 256);
    assert_int_equal(rsa_rc(buf, 256, e65537, 3), -EKEYREJECTED);
    assert_int_equal(BN_rand(m, 2038, BN_RAND_TOP_TWO, BN_RAND_BOTTOM_ODD), 1);
    assert_int_equal(BN_set_word(three, 751), 1);
    assert_int_equal(BN_mul(m, m, three, bc), 1);
    assert_int_equal(BN_num_bits(m), 2048);
    assert_int_equal(BN_bn2binpad(m, buf, 256), 256);
    assert_int_equal(rsa_rc(buf, 256, e65537, 3), -EKEYREJECTED);
    /* structure */
    assert_int_equal(jwk_rc("{\"kty\":\"RSA\",\"e\":\"AQAB\"}"), -EINVAL);
    assert_int_equal(jwk_rc("{\"kty\":\"RSA\",\"n\":\"" RFC7638_N "\"}"), -EINVAL);
    assert_int_equal(jwk_rc("{\"kty\":\"RSA\",\"n\":\"" RFC7638_N "\",\"e\":\"AQAB=\"}"), -EINVAL);
    assert_int_equal(jwk_rc("{\"kty\":\"RSA\",\"n\":\"" RFC7638_N "\",\"e\":65537}"), -EINVAL);
    /* private members of an RSA JWK */
    {
        static const char *const priv[] = {"d", "p", "q", "dp", "dq", "qi", "oth"};

        for (size_t i = 0; i < sizeof(priv) / sizeof(priv[0]); i++)
            assert_int_equal(jwk_with(k_rsa, priv[i], e65537, 3), -EKEYREJECTED);
    }
    BN_free(m);
    BN_free(three);
    BN_CTX_free(bc);
    EVP_PKEY_free(small);
    free(n);
    json_decref(j);
}

static void test_jwk_okp_errors(void **state)
{
    unsigned char b[40] = {0};

    (void)state;
    assert_int_equal(jwk_with(k_ed, "x", b, 31), -EKEYREJECTED);
    assert_int_equal(jwk_with(k_ed, "x", b, 33), -EKEYREJECTED);
    assert_int_equal(jwk_rc("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"" RFC8037_X "\"}"),
                     -EKEYREJECTED);
    assert_int_equal(jwk_rc("{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"" RFC8037_X "\"}"),
                     -EKEYREJECTED);
    assert_int_equal(jwk_rc("{\"kty\":\"OKP\",\"x\":\"" RFC8037_X "\"}"), -EINVAL);
    assert_int_equal(jwk_rc("{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}"), -EINVAL);
}

/* ---- keyChange and EAB inner JWS ---- */

static void test_keychange(void **state)
{
    EVP_PKEY *newkey = k_p384;
    json_t *inner_hdr, *payload, *outer_payload;
    char *inner, *outer, *t;
    struct akm_jws *o = NULL, *i = NULL;
    json_t *op = NULL;
    EVP_PKEY *imp = NULL;
    struct ut_err e = {{0}};

    (void)state;
    /* inner: signed by the new key, jwk = new key, url = keyChange URL, no nonce */
    inner_hdr = json_pack("{s:s,s:s,s:o}", "alg", "ES384", "url", "https://acme.example/key-change",
                          "jwk", pub_jwk(newkey));
    payload = json_pack("{s:s,s:o}", "account", KID, "oldKey", pub_jwk(k_p256));
    t = json_dumps(payload, JSON_COMPACT);
    inner = make_jws(newkey, inner_hdr, t);
    free(t);
    json_decref(payload);
    outer_payload = jparse(inner);
    t = json_dumps(outer_payload, JSON_COMPACT);
    json_decref(outer_payload);
    {
        json_t *h = hdr_kid("ES256");
        json_object_set_new(h, "url", json_string("https://acme.example/key-change"));
        outer = make_jws(k_p256, h, t);
    }
    free(t);

    assert_int_equal(parse_req(outer, strlen(outer), &o), 0);
    assert_int_equal(akm_jws_verify(o, k_p256, NULL), 0);
    assert_int_equal(akm_jws_payload_json(o, &op, NULL), 0);
    if (akm_jws_parse_json(op, AKM_JWS_KEYCHANGE, &i, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(akm_jws_url(i), akm_jws_url(o));
    assert_null(akm_jws_nonce(i));
    assert_int_equal(akm_jwk_to_pkey(akm_jws_jwk(i), &imp, NULL), 0);
    assert_int_equal(akm_jws_verify(i, imp, NULL), 0);
    {
        json_t *ip = NULL, *old = pub_jwk(k_p256);

        assert_int_equal(akm_jws_payload_json(i, &ip, NULL), 0);
        assert_int_equal(akm_jwk_equal(json_object_get(ip, "oldKey"), old, NULL), 1);
        assert_int_equal(akm_jwk_equal(akm_jws_jwk(i), old, NULL), 0);
        json_decref(ip);
        json_decref(old);
    }
    /* the inner JWS is not a valid request (no nonce) */
    assert_int_equal(req_rc(inner), -EPROTO);
    EVP_PKEY_free(imp);
    akm_jws_free(i);
    akm_jws_free(o);
    json_decref(op);
    free(inner);
    free(outer);

    /* keyChange rules */
    {
        struct {
            json_t *h;
            int rc;
        } c[] = {
            {json_pack("{s:s,s:s,s:o,s:s}", "alg", "ES384", "url", URL, "jwk", pub_jwk(newkey),
                       "nonce", NONCE),
             -EINVAL},
            {json_pack("{s:s,s:s,s:s}", "alg", "ES384", "url", URL, "kid", KID), -EINVAL},
            {json_pack("{s:s,s:s,s:o,s:s}", "alg", "ES384", "url", URL, "jwk", pub_jwk(newkey),
                       "kid", KID),
             -EINVAL},
            {json_pack("{s:s,s:o}", "alg", "ES384", "jwk", pub_jwk(newkey)), -EINVAL},
            {json_pack("{s:s,s:s,s:o}", "alg", "none", "url", URL, "jwk", pub_jwk(newkey)),
             -ENOTSUP},
            {json_pack("{s:s,s:s,s:o}", "alg", "ES384", "url", URL, "jwk", pub_jwk(newkey)), 0},
        };

        for (size_t k = 0; k < sizeof(c) / sizeof(c[0]); k++) {
            char *b = make_jws(newkey, c[k].h, "{}");

            if (check(b, AKM_JWS_KEYCHANGE, newkey, NULL, 0) != c[k].rc)
                fail_msg("keyChange case %zu", k);
            free(b);
        }
    }
}

static char *eab_jws(const char *alg, const unsigned char *key, size_t kl, json_t *hdr_extra,
                     const char *payload)
{
    json_t *h = json_pack("{s:s,s:s,s:s}", "alg", alg, "kid", "eab-key-1", "url", URL);

    if (hdr_extra) {
        json_object_update(h, hdr_extra);
        json_decref(hdr_extra);
    }
    return make_jws_mac(NULL, key, kl, h, payload, strlen(payload));
}

static void test_eab(void **state)
{
    unsigned char key[64];
    static const char *const macs[] = {"HS256", "HS384", "HS512"};
    char *acct_jwk = jwk_text(k_p256), *inner, *outer, *t;
    struct akm_jws *o = NULL, *i = NULL;
    json_t *op = NULL, *ip = NULL;
    struct ut_err e = {{0}};

    (void)state;
    for (size_t k = 0; k < sizeof(key); k++)
        key[k] = (unsigned char)(k * 7 + 1);

    /* the full newAccount flow: outer signed by the account key, inner
     * MAC'd by the EAB key over the account JWK */
    inner = eab_jws("HS256", key, 32, NULL, acct_jwk);
    assert_true(
        asprintf(&t, "{\"termsOfServiceAgreed\":true,\"externalAccountBinding\":%s}", inner) > 0);
    outer = make_jws(k_p256, hdr_jwk(k_p256, "ES256"), t);
    free(t);
    assert_int_equal(parse_req(outer, strlen(outer), &o), 0);
    assert_int_equal(akm_jws_payload_json(o, &op, NULL), 0);
    if (akm_jws_parse_json(json_object_get(op, "externalAccountBinding"), AKM_JWS_EAB, &i, &e) != 0)
        fail_msg("%s", e.msg);
    assert_string_equal(akm_jws_kid(i), "eab-key-1");
    assert_string_equal(akm_jws_url(i), akm_jws_url(o));
    assert_int_equal(akm_jws_verify_hmac(i, key, 32, NULL), 0);
    assert_int_equal(akm_jws_verify_hmac(i, key + 1, 32, NULL), -EBADMSG);
    assert_int_equal(akm_jws_verify_hmac(i, key, 33, NULL), -EBADMSG);
    assert_int_equal(akm_jws_verify_hmac(i, key, 31, NULL), -EINVAL);
    assert_int_equal(akm_jws_verify(i, k_p256, NULL), -ENOTSUP);
    assert_int_equal(akm_jws_payload_json(i, &ip, NULL), 0);
    assert_int_equal(akm_jwk_equal(ip, akm_jws_jwk(o), NULL), 1);
    {
        json_t *other = pub_jwk(k_p384);
        assert_int_equal(akm_jwk_equal(ip, other, NULL), 0);
        json_decref(other);
    }
    /* the outer signature path refuses the MAC'd JWS as a request */
    assert_int_equal(req_rc(inner), -ENOTSUP);
    json_decref(ip);
    json_decref(op);
    akm_jws_free(i);
    akm_jws_free(o);
    free(outer);
    free(inner);

    /* every MAC alg, key-length rules */
    for (size_t k = 0; k < 3; k++) {
        size_t need = k == 0 ? 32 : k == 1 ? 48 : 64;

        inner = eab_jws(macs[k], key, need, NULL, acct_jwk);
        assert_int_equal(check(inner, AKM_JWS_EAB, NULL, key, need), 0);
        assert_int_equal(check(inner, AKM_JWS_EAB, NULL, key, need - 1), -EINVAL);
        key[need - 1] ^= 0x80;
        assert_int_equal(check(inner, AKM_JWS_EAB, NULL, key, need), -EBADMSG);
        key[need - 1] ^= 0x80;
        free(inner);
    }
    /* truncated MAC */
    {
        unsigned char mac[32] = {0};
        char *m64 = b64u(mac, 16),
             *prot = b64u("{\"alg\":\"HS256\",\"kid\":\"k\",\"url\":\"u\"}",
                          strlen("{\"alg\":\"HS256\",\"kid\":\"k\",\"url\":\"u\"}"));
        char *b = flat(prot, "e30", m64);

        assert_int_equal(check(b, AKM_JWS_EAB, NULL, key, 32), -EINVAL);
        free(b);
        free(m64);
        free(prot);
    }
    /* EAB header rules */
    inner = eab_jws("HS256", key, 32, json_pack("{s:s}", "nonce", NONCE), acct_jwk);
    assert_int_equal(check(inner, AKM_JWS_EAB, NULL, key, 32), -EINVAL);
    free(inner);
    inner = eab_jws("HS256", key, 32, json_pack("{s:o}", "jwk", pub_jwk(k_p256)), acct_jwk);
    assert_int_equal(check(inner, AKM_JWS_EAB, NULL, key, 32), -EINVAL);
    free(inner);
    inner = eab_jws("none", key, 32, NULL, acct_jwk);
    {
        json_t *g = jparse(inner);
        char *b = flat(json_string_value(json_object_get(g, "protected")),
                       json_string_value(json_object_get(g, "payload")), "AA");
        struct akm_jws *x = NULL;

        assert_int_equal(parse_kind(b, AKM_JWS_EAB, &x), -ENOTSUP);
        free(b);
        json_decref(g);
    }
    free(inner);
    {
        json_t *h = json_pack("{s:s,s:s}", "alg", "HS256", "url", URL); /* no kid */
        char *b = make_jws_mac(NULL, key, 32, h, "{}", 2);

        assert_int_equal(check(b, AKM_JWS_EAB, NULL, key, 32), -EINVAL);
        free(b);
        h = json_pack("{s:s,s:s}", "alg", "HS256", "kid", "k"); /* no url */
        b = make_jws_mac(NULL, key, 32, h, "{}", 2);
        assert_int_equal(check(b, AKM_JWS_EAB, NULL, key, 32), -EINVAL);
        free(b);
    }
    /* an EAB signed with an asymmetric key */
    {
        json_t *h = json_pack("{s:s,s:s,s:s}", "alg", "ES256", "kid", "k", "url", URL);
        char *b = make_jws(k_p256, h, "{}");

        assert_int_equal(check(b, AKM_JWS_EAB, NULL, key, 32), -ENOTSUP);
        free(b);
    }
    free(acct_jwk);
}

/* ---- misc API ---- */

static void test_problem_mapping(void **state)
{
    json_t *a = akm_jws_algs_json();
    char *s;

    (void)state;
    assert_int_equal(akm_jws_problem(0), AKM_JWS_PROB_NONE);
    assert_int_equal(akm_jws_problem(1), AKM_JWS_PROB_NONE);
    assert_int_equal(akm_jws_problem(-EINVAL), AKM_JWS_PROB_MALFORMED);
    assert_int_equal(akm_jws_problem(-EMSGSIZE), AKM_JWS_PROB_MALFORMED);
    assert_int_equal(akm_jws_problem(-EBADMSG), AKM_JWS_PROB_MALFORMED);
    assert_int_equal(akm_jws_problem(-EPROTO), AKM_JWS_PROB_BAD_NONCE);
    assert_int_equal(akm_jws_problem(-ENOTSUP), AKM_JWS_PROB_BAD_SIG_ALG);
    assert_int_equal(akm_jws_problem(-EKEYREJECTED), AKM_JWS_PROB_BAD_PUBLIC_KEY);
    assert_int_equal(akm_jws_problem(-ENOMEM), AKM_JWS_PROB_SERVER_INTERNAL);
    assert_int_equal(akm_jws_problem(-EIO), AKM_JWS_PROB_SERVER_INTERNAL);
    assert_null(akm_jws_problem_type(AKM_JWS_PROB_NONE));
    assert_string_equal(akm_jws_problem_type(AKM_JWS_PROB_MALFORMED),
                        "urn:ietf:params:acme:error:malformed");
    assert_string_equal(akm_jws_problem_type(AKM_JWS_PROB_BAD_NONCE),
                        "urn:ietf:params:acme:error:badNonce");
    assert_string_equal(akm_jws_problem_type(AKM_JWS_PROB_BAD_SIG_ALG),
                        "urn:ietf:params:acme:error:badSignatureAlgorithm");
    assert_string_equal(akm_jws_problem_type(AKM_JWS_PROB_BAD_PUBLIC_KEY),
                        "urn:ietf:params:acme:error:badPublicKey");
    assert_string_equal(akm_jws_problem_type(AKM_JWS_PROB_SERVER_INTERNAL),
                        "urn:ietf:params:acme:error:serverInternal");
    s = json_dumps(a, JSON_COMPACT);
    assert_string_equal(s, "[\"ES256\",\"ES384\",\"ES512\",\"RS256\",\"EdDSA\"]");
    free(s);
    json_decref(a);
}

static void test_jwk_equal(void **state)
{
    json_t *a = pub_jwk(k_p256), *b, *c = pub_jwk(k_rsa), *d = pub_jwk(k_ed);
    char *s;

    (void)state;
    /* member order and optional members do not matter */
    s = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
    b = jparse(s);
    free(s);
    json_object_set_new(b, "kid", json_string("k1"));
    json_object_set_new(b, "use", json_string("sig"));
    assert_int_equal(akm_jwk_equal(a, b, NULL), 1);
    assert_int_equal(akm_jwk_equal(a, a, NULL), 1);
    assert_int_equal(akm_jwk_equal(a, c, NULL), 0);
    assert_int_equal(akm_jwk_equal(c, d, NULL), 0);
    assert_int_equal(akm_jwk_equal(d, d, NULL), 1);
    /* one bit of y */
    {
        char *y = strdup(json_string_value(json_object_get(a, "y")));
        y[0] = y[0] == 'A' ? 'B' : 'A';
        json_object_set_new(b, "y", json_string(y));
        free(y);
    }
    assert_int_equal(akm_jwk_equal(a, b, NULL), 0);
    json_object_set_new(b, "d", json_string("AA"));
    assert_int_equal(akm_jwk_equal(a, b, NULL), -EKEYREJECTED);
    assert_int_equal(akm_jwk_equal(a, NULL, NULL), -EINVAL);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
}

static void test_from_pkey_errors(void **state)
{
    EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
    EVP_PKEY *k1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "secp256k1");
    json_t *j = (json_t *)1;

    (void)state;
    assert_non_null(x);
    assert_int_equal(akm_jwk_from_pkey(x, &j, NULL), -EKEYREJECTED);
    assert_null(j);
    if (k1 != NULL) /* a curve we do not support */
        assert_int_equal(akm_jwk_from_pkey(k1, &j, NULL), -EKEYREJECTED);
    assert_int_equal(akm_jwk_from_pkey(NULL, &j, NULL), -EINVAL);
    EVP_PKEY_free(x);
    EVP_PKEY_free(k1);
}

static void test_payload_forms(void **state)
{
    struct akm_jws *j = NULL;
    json_t *p = NULL;
    size_t n;
    static const unsigned char bin[] = {0, 1, 2, 0xff, 0};
    char *body;

    (void)state;
    /* binary payload with NUL bytes: exposed raw, not JSON */
    body = make_jws_mac(k_p256, NULL, 0, hdr_kid("ES256"), bin, sizeof(bin));
    assert_int_equal(parse_req(body, strlen(body), &j), 0);
    assert_memory_equal(akm_jws_payload(j, &n), bin, sizeof(bin));
    assert_int_equal(n, sizeof(bin));
    assert_int_equal(akm_jws_payload_json(j, &p, NULL), -EINVAL);
    assert_int_equal(akm_jws_verify(j, k_p256, NULL), 0);
    akm_jws_free(j);
    free(body);
    /* duplicate keys in the payload JSON */
    body = make_jws(k_p256, hdr_kid("ES256"), "{\"a\":1,\"a\":2}");
    assert_int_equal(parse_req(body, strlen(body), &j), 0);
    assert_int_equal(akm_jws_payload_json(j, &p, NULL), -EINVAL);
    assert_null(p);
    assert_int_equal(json_object_size(akm_jws_header(j)), 4);
    akm_jws_free(j);
    free(body);
    /* payload over the cap in an inner JWS */
    {
        char *big = malloc(AKM_JWS_BODY_MAX + 2), *b;
        json_t *o;
        struct ut_err e = {{0}};

        assert_non_null(big);
        memset(big, 'A', AKM_JWS_BODY_MAX + 1);
        big[AKM_JWS_BODY_MAX + 1] = '\0';
        b = flat("eyJhbGciOiJFUzI1NiJ9", big, "AA");
        o = jparse(b);
        assert_int_equal(akm_jws_parse_json(o, AKM_JWS_BARE, &j, &e), -EMSGSIZE);
        json_decref(o);
        free(b);
        free(big);
    }
    akm_jws_free(NULL);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_rfc7515_a3_es256),    cmocka_unit_test(test_rfc7515_a2_rs256),
        cmocka_unit_test(test_rfc7515_a1_hs256),    cmocka_unit_test(test_rfc7515_a5_none),
        cmocka_unit_test(test_rfc7797_b64_false),   cmocka_unit_test(test_rfc7638_thumbprint),
        cmocka_unit_test(test_rfc8037_ed25519),     cmocka_unit_test(test_roundtrip_es256),
        cmocka_unit_test(test_roundtrip_es384),     cmocka_unit_test(test_roundtrip_es512),
        cmocka_unit_test(test_roundtrip_rs256),     cmocka_unit_test(test_roundtrip_eddsa),
        cmocka_unit_test(test_wrong_key_same_type), cmocka_unit_test(test_from_pkey_fixed_length),
        cmocka_unit_test(test_body_errors),         cmocka_unit_test(test_base64url_errors),
        cmocka_unit_test(test_protected_errors),    cmocka_unit_test(test_header_size),
        cmocka_unit_test(test_header_errors),       cmocka_unit_test(test_header_field_caps),
        cmocka_unit_test(test_jwk_alg_member),      cmocka_unit_test(test_signature_errors),
        cmocka_unit_test(test_alg_key_mismatch),    cmocka_unit_test(test_jwk_ec_errors),
        cmocka_unit_test(test_jwk_rsa_errors),      cmocka_unit_test(test_jwk_okp_errors),
        cmocka_unit_test(test_keychange),           cmocka_unit_test(test_eab),
        cmocka_unit_test(test_problem_mapping),     cmocka_unit_test(test_jwk_equal),
        cmocka_unit_test(test_from_pkey_errors),    cmocka_unit_test(test_payload_forms),
    };
    return cmocka_run_group_tests(t, setup, teardown);
}
