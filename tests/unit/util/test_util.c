/* Unit tests for lib/util: buffers, base64, logging, constant-time compare. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/b64.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/mem.h"

static void test_buf_cap(void **state)
{
    struct ut_buf b;

    (void)state;
    ut_buf_init(&b, 8);
    assert_int_equal(ut_buf_append(&b, "abcd", 4), 0);
    assert_int_equal(ut_buf_printf(&b, "%d", 1234), 0);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "abcd1234");
    /* Over the cap: refused, buffer unchanged. */
    assert_int_equal(ut_buf_putc(&b, 'x'), -E2BIG);
    assert_int_equal(ut_buf_printf(&b, "%s", "y"), -E2BIG);
    assert_int_equal(b.len, 8);
    assert_string_equal(b.data, "abcd1234");
    /* A size_t overflow in the request is refused, not wrapped. */
    assert_int_equal(ut_buf_append(&b, "", SIZE_MAX), -E2BIG);
    ut_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    ut_buf_free(&b);
}

static void test_buf_steal(void **state)
{
    struct ut_buf b;
    size_t len = 99;
    char *p;

    (void)state;
    ut_buf_init(&b, 1024);
    p = ut_buf_steal(&b, &len); /* empty buffer still gives a string */
    assert_non_null(p);
    assert_int_equal(len, 0);
    free(p);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ut_buf_printf(&b, "%02d", i), 0);
    p = ut_buf_steal(&b, &len);
    assert_int_equal(len, 200);
    assert_int_equal(strncmp(p, "000102", 6), 0);
    assert_null(b.data);
    free(p);
}

/* RFC 4648 §10 test vectors. */
static void test_b64_rfc4648(void **state)
{
    static const char *const in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const std[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    char out[32];
    unsigned char dec[32];
    size_t n;

    (void)state;
    for (int i = 0; i < 7; i++) {
        size_t l = strlen(in[i]);
        assert_int_equal(ut_b64_enclen(l, 0), strlen(std[i]));
        ut_b64_encode(in[i], l, out, 0);
        assert_string_equal(out, std[i]);
        ut_b64_encode(in[i], l, out, 1);
        assert_string_equal(out, url[i]);
        assert_int_equal(ut_b64_decode(std[i], strlen(std[i]), dec, &n, 0), 0);
        assert_int_equal(n, l);
        assert_memory_equal(dec, in[i], l);
        assert_int_equal(ut_b64_decode(url[i], strlen(url[i]), dec, &n, 1), 0);
        assert_int_equal(n, l);
        assert_memory_equal(dec, in[i], l);
    }
}

static void test_b64_reject(void **state)
{
    unsigned char dec[32];
    size_t n;

    (void)state;
    assert_int_equal(ut_b64_decode("Zg=", 3, dec, &n, 0), -EINVAL);  /* bad length */
    assert_int_equal(ut_b64_decode("Zh==", 4, dec, &n, 0), -EINVAL); /* non-zero pad bits */
    assert_int_equal(ut_b64_decode("Zm9v YQ==", 9, dec, &n, 0), -EINVAL);
    assert_int_equal(ut_b64_decode("Zm+v", 4, dec, &n, 1), -EINVAL); /* '+' not url */
    assert_int_equal(ut_b64_decode("Zg==", 4, dec, &n, 1), -EINVAL); /* padding in url */
    assert_int_equal(ut_b64_decode("Z", 1, dec, &n, 1), -EINVAL);
    assert_int_equal(ut_b64_decode("-_8", 3, dec, &n, 1), 0);
    assert_int_equal(n, 2);
    assert_int_equal(dec[0], 0xfb);
    assert_int_equal(dec[1], 0xff);
}

static void test_hex(void **state)
{
    uint8_t b[3];
    char s[7];

    (void)state;
    assert_int_equal(ut_hex_decode("00fFa1", 6, b, 3), 0);
    assert_int_equal(b[0], 0x00);
    assert_int_equal(b[1], 0xff);
    assert_int_equal(b[2], 0xa1);
    ut_hex_encode(b, 3, s);
    assert_string_equal(s, "00ffa1");
    assert_int_equal(ut_hex_decode("0g", 2, b, 1), -EINVAL);
    assert_int_equal(ut_hex_decode("abc", 3, b, 1), -EINVAL);
    assert_int_equal(ut_hexval('x'), -1);
}

static void test_ct_eq(void **state)
{
    (void)state;
    assert_true(ut_ct_eq("abcdef", "abcdef", 6));
    assert_false(ut_ct_eq("abcdef", "abcdeg", 6));
    assert_false(ut_ct_eq("xbcdef", "abcdef", 6));
    assert_true(ut_ct_eq("", "", 0));
}

static void test_memzero(void **state)
{
    unsigned char k[32];

    (void)state;
    memset(k, 0xa5, sizeof(k));
    ut_memzero(k, sizeof(k));
    for (size_t i = 0; i < sizeof(k); i++)
        assert_int_equal(k[i], 0);
}

static char *capture_log(void (*fn)(void))
{
    char path[] = "/tmp/test-log-XXXXXX";
    int fd = mkstemp(path);
    char *text = calloc(1, 8192);
    ssize_t n;

    assert_true(fd >= 0);
    ut_log_set_fd(fd);
    ut_log_set_timestamps(0);
    fn();
    ut_log_set_fd(2);
    ut_log_set_timestamps(1);
    lseek(fd, 0, SEEK_SET);
    n = read(fd, text, 8191);
    assert_true(n >= 0);
    close(fd);
    unlink(path);
    return text;
}

static void log_spec_line(void)
{
    ut_log(UT_LOG_INFO, "gossip", "first-contact merge complete",
           UT_LF_S("peer", "http://node2.acme.internal:8081"), UT_LF_I("accounts", 142),
           UT_LF_I("orders", 891), UT_LF_I("certificates", 734), UT_LF_I("authorizations", 1023),
           UT_LF_I("cluster_nodes", 2));
}

static void test_log_spec_shape(void **state)
{
    char *t;

    (void)state;
    t = capture_log(log_spec_line);
    assert_string_equal(t, "INFO gossip: first-contact merge complete "
                           "peer=\"http://node2.acme.internal:8081\" accounts=142 orders=891 "
                           "certificates=734 authorizations=1023 cluster_nodes=2\n");
    free(t);
}

static void log_quoting_and_secrets(void)
{
    ut_log(UT_LOG_WARN, "http", "odd", UT_LF_S("path", "a \"b\"\\\n"),
           UT_LF_S("client_secret", "hunter2"), UT_LF_S("password", "pw"));
    ut_log(UT_LOG_DEBUG, "http", "hidden at info level");
    ut_logf(UT_LOG_ERROR, "store", "cannot open %s", "/x");
}

static void test_log_quoting_redaction_level(void **state)
{
    char *t;

    (void)state;
    ut_log_set_level(UT_LOG_INFO);
    t = capture_log(log_quoting_and_secrets);
    assert_string_equal(t, "WARN http: odd path=\"a \\\"b\\\"\\\\\\x0a\" "
                           "client_secret=\"[redacted]\" password=\"[redacted]\"\n"
                           "ERROR store: cannot open /x\n");
    assert_null(strstr(t, "hunter2"));
    free(t);
}

static void log_long(void)
{
    char big[10000];

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ut_logf(UT_LOG_INFO, "t", "%s", big);
    ut_log(UT_LOG_INFO, "t", "after");
}

static void test_log_cap(void **state)
{
    char *t;

    (void)state;
    t = capture_log(log_long);
    /* A message over the line cap is dropped to the prefix; the logger
     * never allocates without bound and the next line is intact. */
    assert_non_null(strstr(t, "INFO t: after\n"));
    assert_true(strlen(t) < 4200);
    free(t);
}

static void test_log_level_parse(void **state)
{
    enum ut_log_level l;

    (void)state;
    assert_int_equal(ut_log_level_parse("DEBUG", &l), 0);
    assert_int_equal(l, UT_LOG_DEBUG);
    assert_int_equal(ut_log_level_parse("warning", &l), 0);
    assert_int_equal(l, UT_LOG_WARN);
    assert_int_equal(ut_log_level_parse("loud", &l), -EINVAL);
}

static void test_err(void **state)
{
    struct ut_err e;

    (void)state;
    ut_err_set(&e, "bad value %d", 7);
    ut_err_prefix(&e, "key '%s'", "x");
    assert_string_equal(e.msg, "key 'x': bad value 7");
    ut_err_set(NULL, "ignored"); /* must not crash */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_cap),
        cmocka_unit_test(test_buf_steal),
        cmocka_unit_test(test_b64_rfc4648),
        cmocka_unit_test(test_b64_reject),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_ct_eq),
        cmocka_unit_test(test_memzero),
        cmocka_unit_test(test_log_spec_shape),
        cmocka_unit_test(test_log_quoting_redaction_level),
        cmocka_unit_test(test_log_cap),
        cmocka_unit_test(test_log_level_parse),
        cmocka_unit_test(test_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
