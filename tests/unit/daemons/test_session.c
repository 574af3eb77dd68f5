/* Unit tests for daemons/ahdapa/session.c: sealed session cookies. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ahdapa.h"
#include "util/b64.h"

#define NOW 1700000000

static const char *const groups[] = {"admins", "users"};

static void make_key(struct ahd_key *k, uint8_t fill)
{
    uint8_t raw[AHD_KEY_BYTES];

    memset(raw, fill, sizeof(raw));
    ahd_key_init(k, raw);
}

static void seal(const struct ahd_key *k, struct ahd_session *s, char *out, size_t n)
{
    assert_int_equal(ahd_session_new(s, "alice", groups, 2, NOW, NULL), 0);
    assert_int_equal(ahd_cookie_seal(k, s, out, n, NULL), 0);
}

static void test_roundtrip(void **state)
{
    struct ahd_key k1, k2;
    struct ahd_session s, o;
    const struct ahd_key *ring[2];
    char c[AHD_COOKIE_MAX + 1];

    (void)state;
    make_key(&k1, 1);
    make_key(&k2, 2);
    assert_memory_not_equal(k1.kid, k2.kid, AHD_KID_BYTES);
    assert_int_equal(strlen(k1.kid_hex), 16);
    seal(&k2, &s, c, sizeof(c));
    ring[0] = &k1;
    ring[1] = &k2;
    assert_int_equal(ahd_cookie_open(ring, 2, c, NOW + 1, &o, NULL), 0);
    assert_string_equal(o.sid, s.sid);
    assert_string_equal(o.sub, "alice");
    assert_string_equal(o.csrf, s.csrf);
    assert_int_equal(o.n_groups, 2);
    assert_true(ahd_session_has_group(&o, "admins"));
    assert_false(ahd_session_has_group(&o, "admin"));
    assert_int_equal(o.iat, NOW);
    assert_int_equal(o.exp, NOW + AHD_SESSION_SECS);
    /* Unique ids and tokens per session. */
    seal(&k2, &o, c, sizeof(c));
    assert_string_not_equal(o.sid, s.sid);
    assert_string_not_equal(o.csrf, s.csrf);
}

static void test_wrong_key_and_expiry(void **state)
{
    struct ahd_key k1, k2, k1b;
    struct ahd_session s, o;
    const struct ahd_key *ring[1];
    char c[AHD_COOKIE_MAX + 1];
    struct ut_err err = {{0}};

    (void)state;
    make_key(&k1, 1);
    make_key(&k2, 2);
    seal(&k1, &s, c, sizeof(c));
    ring[0] = &k2;
    assert_int_equal(ahd_cookie_open(ring, 1, c, NOW, &o, &err), -ENOKEY);
    assert_non_null(strstr(err.msg, "key"));
    /* Same key id, different AES key: authentication fails. */
    k1b = k2;
    memcpy(k1b.kid, k1.kid, AHD_KID_BYTES);
    ring[0] = &k1b;
    assert_int_equal(ahd_cookie_open(ring, 1, c, NOW, &o, NULL), -EBADMSG);
    ring[0] = &k1;
    assert_int_equal(ahd_cookie_open(ring, 1, c, NOW + AHD_SESSION_SECS - 1, &o, NULL), 0);
    assert_int_equal(ahd_cookie_open(ring, 1, c, NOW + AHD_SESSION_SECS, &o, &err), -ETIMEDOUT);
    assert_non_null(strstr(err.msg, "expired"));
    ahd_key_clear(&k1);
    assert_int_equal(k1.set, 0);
    ring[0] = &k1;
    assert_int_equal(ahd_cookie_open(ring, 1, c, NOW, &o, NULL), -ENOKEY);
}

static void test_tampering(void **state)
{
    struct ahd_key k;
    struct ahd_session s, o;
    const struct ahd_key *ring[1] = {&k};
    char c[AHD_COOKIE_MAX + 1], t[AHD_COOKIE_MAX + 1];
    uint8_t raw[AHD_COOKIE_MAX];
    size_t n = 0, len;

    (void)state;
    make_key(&k, 7);
    seal(&k, &s, c, sizeof(c));
    len = strlen(c);
    assert_int_equal(ut_b64_decode(c, len, raw, &n, 1), 0);
    /* Every single-bit flip of every byte after the key id is refused. */
    for (size_t i = 0; i < n; i++) {
        for (int b = 0; b < 8; b++) {
            raw[i] ^= (uint8_t)(1u << b);
            ut_b64_encode(raw, n, t, 1);
            assert_int_not_equal(ahd_cookie_open(ring, 1, t, NOW, &o, NULL), 0);
            raw[i] ^= (uint8_t)(1u << b);
        }
    }
    /* Truncation, extension, bad alphabet, empty, oversize. */
    for (size_t cut = 0; cut < len; cut += 7) {
        memcpy(t, c, cut);
        t[cut] = '\0';
        assert_int_not_equal(ahd_cookie_open(ring, 1, t, NOW, &o, NULL), 0);
    }
    snprintf(t, sizeof(t), "%sAA", c);
    assert_int_not_equal(ahd_cookie_open(ring, 1, t, NOW, &o, NULL), 0);
    snprintf(t, sizeof(t), "%s", c);
    t[5] = '+';
    assert_int_equal(ahd_cookie_open(ring, 1, t, NOW, &o, NULL), -EINVAL);
    assert_int_equal(ahd_cookie_open(ring, 1, "", NOW, &o, NULL), -EINVAL);
    memset(t, 'A', AHD_COOKIE_MAX);
    t[AHD_COOKIE_MAX] = '\0';
    assert_int_equal(ahd_cookie_open(ring, 1, t, NOW, &o, NULL), -EINVAL);
    assert_int_equal(ahd_cookie_open(ring, 1, c, NOW, &o, NULL), 0);
}

static void test_limits(void **state)
{
    struct ahd_session s;
    const char *many[AHD_GROUPS_MAX + 1];
    char longname[AHD_USERNAME_MAX + 2];

    (void)state;
    for (size_t i = 0; i <= AHD_GROUPS_MAX; i++)
        many[i] = "g";
    assert_int_equal(ahd_session_new(&s, "a", many, AHD_GROUPS_MAX + 1, NOW, NULL), -E2BIG);
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(ahd_session_new(&s, longname, groups, 2, NOW, NULL), -E2BIG);
    /* The largest session still fits the cookie cap. */
    {
        struct ahd_key k;
        char c[AHD_COOKIE_MAX + 1], g[AHD_GROUPS_MAX][AHD_GROUP_MAX + 1];
        const char *gp[AHD_GROUPS_MAX];
        int rc;

        make_key(&k, 3);
        for (size_t i = 0; i < AHD_GROUPS_MAX; i++) {
            memset(g[i], 'g', AHD_GROUP_MAX);
            g[i][AHD_GROUP_MAX] = '\0';
            gp[i] = g[i];
        }
        assert_int_equal(ahd_session_new(&s, "a", gp, AHD_GROUPS_MAX, NOW, NULL), 0);
        rc = ahd_cookie_seal(&k, &s, c, sizeof(c), NULL);
        assert_int_equal(rc, -E2BIG); /* refused cleanly, never truncated */
        assert_int_equal(ahd_session_new(&s, "a", gp, 8, NOW, NULL), 0);
        assert_int_equal(ahd_cookie_seal(&k, &s, c, sizeof(c), NULL), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_wrong_key_and_expiry),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
