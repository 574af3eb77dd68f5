/* Unit tests for daemons/ahdapa/jwt.c: ES256 compact JWS parse, sign,
 * verify, JWK conversions and the kid derivation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ahdapa.h"
#include "util/b64.h"

static struct evp_pkey_st *key;

static int setup(void **state)
{
    (void)state;
    key = ahdapa_p256_generate();
    return key ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ahdapa_pkey_free(key);
    ahdapa_jwt_thread_cleanup();
    return 0;
}

static char *sign_sample(void)
{
    json_t *h = json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", "k1");
    json_t *c = json_pack("{s:s,s:i,s:s}", "iss", "https://as", "exp", 2000000000, "scope", "a b");
    char *t = ahdapa_jwt_sign_es256(key, h, c, NULL);

    json_decref(h);
    json_decref(c);
    assert_non_null(t);
    return t;
}

static void test_roundtrip(void **state)
{
    struct ahdapa_jwt j;
    char *t = sign_sample();

    (void)state;
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, NULL), 0);
    assert_string_equal(json_string_value(json_object_get(j.header, "typ")), "at+jwt");
    assert_string_equal(json_string_value(json_object_get(j.claims, "scope")), "a b");
    assert_int_equal(ahdapa_jwt_verify_es256(key, &j), 0);
    /* twice: the per-thread verify context is reused */
    assert_int_equal(ahdapa_jwt_verify_es256(key, &j), 0);
    ahdapa_jwt_clear(&j);
    free(t);
}

static void test_tamper(void **state)
{
    struct ahdapa_jwt j;
    char *t = sign_sample();
    char *dot = strchr(t, '.');
    struct evp_pkey_st *other = ahdapa_p256_generate();

    (void)state;
    /* the signature of another token over this header.payload */
    json_t *h = json_pack("{s:s}", "alg", "ES256"), *c = json_pack("{s:s}", "scope", "admin");
    char *t2 = ahdapa_jwt_sign_es256(key, h, c, NULL);
    json_decref(h);
    json_decref(c);
    assert_non_null(t2);
    memcpy(strrchr(t2, '.') + 1, strrchr(t, '.') + 1, 86);
    (void)dot;
    assert_int_equal(ahdapa_jwt_parse(t2, strlen(t2), &j, NULL), 0);
    assert_int_equal(ahdapa_jwt_verify_es256(key, &j), -EBADMSG);
    ahdapa_jwt_clear(&j);
    free(t2);
    free(t);
    /* another key */
    t = sign_sample();
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, NULL), 0);
    assert_int_equal(ahdapa_jwt_verify_es256(other, &j), -EBADMSG);
    /* a flipped signature byte */
    j.sig[10] ^= 1;
    assert_int_equal(ahdapa_jwt_verify_es256(key, &j), -EBADMSG);
    ahdapa_jwt_clear(&j);
    ahdapa_pkey_free(other);
    free(t);
}

static char *make(const char *hdr, const char *payload, int siglen)
{
    static char buf[4096];
    unsigned char sig[80];
    size_t n;

    memset(sig, 1, sizeof(sig));
    ut_b64_encode(hdr, strlen(hdr), buf, 1);
    n = strlen(buf);
    buf[n++] = '.';
    ut_b64_encode(payload, strlen(payload), buf + n, 1);
    n = strlen(buf);
    buf[n++] = '.';
    ut_b64_encode(sig, (size_t)siglen, buf + n, 1);
    return buf;
}

static void test_malformed(void **state)
{
    struct ahdapa_jwt j;
    struct ut_err e = {{0}};
    const char *bad[] = {
        "",
        "a",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "..",
        "...",
        make("{\"alg\":\"ES256\"}", "{}", 63),
        make("{\"alg\":\"ES256\"}", "{}", 65),
    };
    char *t;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *s = bad[i];
        assert_int_equal(ahdapa_jwt_parse(s, strlen(s), &j, &e), -EINVAL);
        assert_null(j.header);
        assert_null(j.claims);
    }
    t = make("{\"alg\":\"none\"}", "{}", 64);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "ES256"));
    t = make("{\"alg\":\"HS256\"}", "{}", 64);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), -EINVAL);
    t = make("{\"alg\":\"ES256\",\"crit\":[\"x\"]}", "{}", 64);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), -EINVAL);
    t = make("{\"alg\":\"ES256\",\"kid\":5}", "{}", 64);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), -EINVAL);
    t = make("{\"alg\":\"ES256\",\"alg\":\"ES256\"}", "{}", 64);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), -EINVAL);
    t = make("{\"alg\":\"ES256\"}", "[1]", 64);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), -EINVAL);
    t = make("{\"alg\":\"ES256\"}", "{\"a\":1} x", 64);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), -EINVAL);
    t = make("{\"alg\":\"ES256\"}", "{\"a\":1}", 64);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), 0);
    ahdapa_jwt_clear(&j);
    /* padding or standard alphabet is not base64url */
    t = make("{\"alg\":\"ES256\"}", "{\"a\":1}", 64);
    t[2] = '+';
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, &e), -EINVAL);
    /* too long */
    char *big = malloc(AHDAPA_JWT_MAX + 2);
    memset(big, 'A', AHDAPA_JWT_MAX + 1);
    big[AHDAPA_JWT_MAX + 1] = '\0';
    assert_int_equal(ahdapa_jwt_parse(big, strlen(big), &j, &e), -EINVAL);
    free(big);
}

static void test_jwk(void **state)
{
    json_t *jwk;
    struct evp_pkey_st *pub;
    struct ahdapa_jwt j;
    char kid[AHDAPA_KID_MAX], kid2[AHDAPA_KID_MAX], *t = sign_sample();

    (void)state;
    assert_int_equal(ahdapa_jwk_kid("127.0.0.1:8080", key, kid), 0);
    assert_int_equal(strlen(kid), 11);
    assert_int_equal(ahdapa_jwk_kid("127.0.0.1:8081", key, kid2), 0);
    assert_string_not_equal(kid, kid2);
    jwk = ahdapa_jwk_public(key, kid);
    assert_non_null(jwk);
    assert_null(json_object_get(jwk, "d"));
    assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
    pub = ahdapa_jwk_to_pkey(jwk, NULL);
    assert_non_null(pub);
    assert_int_equal(ahdapa_jwt_parse(t, strlen(t), &j, NULL), 0);
    assert_int_equal(ahdapa_jwt_verify_es256(pub, &j), 0);
    ahdapa_jwt_clear(&j);
    ahdapa_pkey_free(pub);
    /* a point off the curve, wrong sizes, wrong kty */
    json_object_set_new(jwk, "y", json_string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE"));
    assert_null(ahdapa_jwk_to_pkey(jwk, NULL));
    json_object_set_new(jwk, "y", json_string("AAAA"));
    assert_null(ahdapa_jwk_to_pkey(jwk, NULL));
    json_object_set_new(jwk, "kty", json_string("RSA"));
    assert_null(ahdapa_jwk_to_pkey(jwk, NULL));
    json_decref(jwk);
    free(t);
}

static void test_sha256(void **state)
{
    unsigned char h[32];
    static const unsigned char abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                          0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                          0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                          0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};

    (void)state;
    assert_int_equal(ahdapa_sha256("abc", 3, h), 0);
    assert_memory_equal(h, abc, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip), cmocka_unit_test(test_tamper),
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_jwk),
        cmocka_unit_test(test_sha256),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
