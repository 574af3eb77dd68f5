/* Unit tests for lib/http body helpers: form and JSON parsers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

static int parse_form(const char *s, struct http_form **f, struct ut_err *e)
{
    memset(e, 0, sizeof(*e));
    return http_form_parse(s, strlen(s), f, e);
}

static void test_form_basic(void **state)
{
    struct http_form *f = NULL;
    struct ut_err e;

    (void)state;
    assert_int_equal(parse_form("grant_type=client_credentials&scope=a+b%20c&x=%41%2b%7e", &f, &e),
                     0);
    assert_non_null(f);
    assert_int_equal(http_form_len(f), 3);
    assert_string_equal(http_form_name(f, 0), "grant_type");
    assert_string_equal(http_form_value(f, 0), "client_credentials");
    assert_string_equal(http_form_get(f, "scope"), "a b c");
    assert_string_equal(http_form_get(f, "x"), "A+~");
    assert_null(http_form_get(f, "missing"));
    assert_null(http_form_name(f, 3));
    assert_null(http_form_value(f, 99));
    http_form_free(f);
}

static void test_form_empty_and_bare(void **state)
{
    struct http_form *f = NULL;
    struct ut_err e;

    (void)state;
    assert_int_equal(http_form_parse(NULL, 0, &f, &e), 0);
    assert_int_equal(http_form_len(f), 0);
    http_form_free(f);
    assert_int_equal(parse_form("", &f, &e), 0);
    assert_int_equal(http_form_len(f), 0);
    http_form_free(f);
    /* Empty pairs are skipped; a bare name has the value "". */
    assert_int_equal(parse_form("&&a&b=&&c=1&", &f, &e), 0);
    assert_int_equal(http_form_len(f), 3);
    assert_string_equal(http_form_get(f, "a"), "");
    assert_string_equal(http_form_get(f, "b"), "");
    assert_string_equal(http_form_get(f, "c"), "1");
    http_form_free(f);
    /* '=' inside a value is data. */
    assert_int_equal(parse_form("a==b=", &f, &e), 0);
    assert_string_equal(http_form_get(f, "a"), "=b=");
    http_form_free(f);
}

static void test_form_errors(void **state)
{
    static const struct {
        const char *in;
        int rc;
        const char *msg;
    } cases[] = {
        {"a=1&a=2", -EINVAL, "form: duplicate field \"a\""},
        {"a=1&%61=2", -EINVAL, "form: duplicate field \"a\""},
        {"a=%zz", -EINVAL, "form: invalid percent-escape in value of \"a\" at offset 2"},
        {"a=%4", -EINVAL, "form: invalid percent-escape in value of \"a\" at offset 2"},
        {"a=1&b=%", -EINVAL, "form: invalid percent-escape in value of \"b\" at offset 6"},
        {"%g0=1", -EINVAL, "form: invalid percent-escape at offset 0"},
        {"a=x%00y", -EINVAL, "form: NUL byte in value of \"a\" at offset 3"},
        {"=x", -EINVAL, "form: empty field name at offset 0"},
        {"a=1&=x", -EINVAL, "form: empty field name at offset 4"},
        {"a=%C3%28", -EINVAL, "form: value of \"a\" is not valid UTF-8"},
        {"a=%ED%A0%80", -EINVAL, "form: value of \"a\" is not valid UTF-8"}, /* surrogate */
        {"a=%C0%AF", -EINVAL, "form: value of \"a\" is not valid UTF-8"},    /* overlong */
        {"%FF=1", -EINVAL, "form: field name at offset 0 is not valid UTF-8"},
    };
    struct http_form *f;
    struct ut_err e;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        f = (struct http_form *)&e; /* must be reset to NULL on failure */
        assert_int_equal(parse_form(cases[i].in, &f, &e), cases[i].rc);
        assert_null(f);
        assert_string_equal(e.msg, cases[i].msg);
    }
    /* A raw NUL byte inside the body. */
    assert_int_equal(http_form_parse("a=b\0c", 5, &f, &e), -EINVAL);
    assert_string_equal(e.msg, "form: NUL byte in value of \"a\" at offset 3");
    /* Names in messages are sanitized (no quotes, no control bytes). */
    assert_int_equal(parse_form("%22%0A=1&%22%0A=2", &f, &e), -EINVAL);
    assert_string_equal(e.msg, "form: duplicate field \"'?\"");
}

static void test_form_utf8_ok(void **state)
{
    struct http_form *f = NULL;
    struct ut_err e;

    (void)state;
    assert_int_equal(parse_form("n=%C3%A9t%C3%A9&e=%F0%9F%98%80&raw=\xc3\xa9", &f, &e), 0);
    assert_string_equal(http_form_get(f, "n"), "\xc3\xa9t\xc3\xa9");
    assert_string_equal(http_form_get(f, "e"), "\xf0\x9f\x98\x80");
    assert_string_equal(http_form_get(f, "raw"), "\xc3\xa9");
    http_form_free(f);
}

static void test_form_limits(void **state)
{
    struct http_form *f = NULL;
    struct ut_err e;
    char *s = malloc(70 * 1024);
    size_t o = 0;

    (void)state;
    assert_non_null(s);
    /* Exactly HTTP_FORM_MAX_FIELDS fields: fine; one more: refused. */
    for (int i = 0; i < HTTP_FORM_MAX_FIELDS; i++)
        o += (size_t)sprintf(s + o, "%sf%d=%d", i ? "&" : "", i, i);
    assert_int_equal(http_form_parse(s, o, &f, &e), 0);
    assert_int_equal(http_form_len(f), HTTP_FORM_MAX_FIELDS);
    assert_string_equal(http_form_get(f, "f63"), "63");
    http_form_free(f);
    o += (size_t)sprintf(s + o, "&extra=1");
    assert_int_equal(http_form_parse(s, o, &f, &e), -E2BIG);
    assert_null(f);
    assert_string_equal(e.msg, "form: more than 64 fields");

    /* Value cap: 32 KiB decoded (3 bytes of input per %XX byte). */
    memcpy(s, "v=", 2);
    memset(s + 2, 'x', 32 * 1024);
    assert_int_equal(http_form_parse(s, 2 + 32 * 1024, &f, &e), 0);
    assert_int_equal(strlen(http_form_get(f, "v")), 32 * 1024);
    http_form_free(f);
    s[2 + 32 * 1024] = 'x';
    assert_int_equal(http_form_parse(s, 3 + 32 * 1024, &f, &e), -E2BIG);
    assert_string_equal(e.msg, "form: value of \"v\" longer than 32768 bytes");

    /* Name cap: 128 bytes. */
    memset(s, 'n', 128);
    s[128] = '=';
    assert_int_equal(http_form_parse(s, 129, &f, &e), 0);
    http_form_free(f);
    memset(s, 'n', 129);
    s[129] = '=';
    assert_int_equal(http_form_parse(s, 130, &f, &e), -E2BIG);
    assert_string_equal(e.msg, "form: field name at offset 0 longer than 128 bytes");
    free(s);
}

static json_t *pj(const char *s, struct ut_err *e)
{
    memset(e, 0, sizeof(*e));
    return http_parse_json(s, strlen(s), e);
}

static void test_json_ok(void **state)
{
    struct ut_err e;
    json_t *j;

    (void)state;
    j = pj(" {\"a\": 1, \"b\": [true, null, {\"c\": \"d\"}], \"s\": \"[[[[\"} \n", &e);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "a")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "s")), "[[[[");
    json_decref(j);
}

static void test_json_errors(void **state)
{
    static const struct {
        const char *in;
        const char *msg;
    } cases[] = {
        {"[1,2]", "JSON: body must be an object, got an array"},
        {"{\"a\":1}x", "JSON: end of file expected near 'x' at line 1 column 8 (byte 8)"},
        {"{\"a\":1,\"a\":2}", "JSON: duplicate object key near ''a'' at line 1 column 10 "
                              "(byte 10)"},
        {"{\"a\":1,}", "JSON: string or '}' expected near '}' at line 1 column 8 (byte 8)"},
        {"{\"a\":\"\\u0000\"}", "JSON: \\u0000 is not allowed without JSON_ALLOW_NUL near "
                                "'\"\\u0000' at line 1 column 13 (byte 13)"},
        {"\"str\"", "JSON: '[' or '{' expected near ''str'' at line 1 column 5 (byte 5)"},
        {"{\n\"a\":\n}", "JSON: unexpected token near '}' at line 3 column 1 (byte 8)"},
    };
    struct ut_err e;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_null(pj(cases[i].in, &e));
        /* The '\' of "\u0000" is sanitized to '?' in the message. */
        if (strstr(cases[i].in, "u0000")) {
            assert_non_null(strstr(e.msg, "is not allowed without JSON_ALLOW_NUL"));
            assert_non_null(strstr(e.msg, "line 1 column 13 (byte 13)"));
            assert_null(strchr(e.msg, '\\'));
        } else {
            assert_string_equal(e.msg, cases[i].msg);
        }
    }
    assert_null(http_parse_json(NULL, 0, &e));
    assert_string_equal(e.msg, "JSON: empty body");
    /* Invalid UTF-8 inside a string. */
    assert_null(pj("{\"a\":\"\xff\"}", &e));
    assert_non_null(strstr(e.msg, "line 1"));
    /* NULL err is allowed. */
    assert_null(http_parse_json("x", 1, NULL));
}

static void test_json_depth(void **state)
{
    char buf[256];
    struct ut_err e;
    json_t *j;
    size_t o = 0;

    (void)state;
    /* HTTP_JSON_MAX_DEPTH levels: the object plus 31 nested arrays. */
    o += (size_t)sprintf(buf + o, "{\"a\":");
    for (int i = 1; i < HTTP_JSON_MAX_DEPTH; i++)
        buf[o++] = '[';
    for (int i = 1; i < HTTP_JSON_MAX_DEPTH; i++)
        buf[o++] = ']';
    buf[o++] = '}';
    j = http_parse_json(buf, o, &e);
    assert_non_null(j);
    json_decref(j);
    /* One more level is refused, naming where. */
    o = 0;
    o += (size_t)sprintf(buf + o, "{\"a\":");
    for (int i = 0; i < HTTP_JSON_MAX_DEPTH; i++)
        buf[o++] = '[';
    for (int i = 0; i < HTTP_JSON_MAX_DEPTH; i++)
        buf[o++] = ']';
    buf[o++] = '}';
    assert_null(http_parse_json(buf, o, &e));
    assert_string_equal(e.msg, "JSON: nested deeper than 32 levels at byte 36");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form_basic),  cmocka_unit_test(test_form_empty_and_bare),
        cmocka_unit_test(test_form_errors), cmocka_unit_test(test_form_utf8_ok),
        cmocka_unit_test(test_form_limits), cmocka_unit_test(test_json_ok),
        cmocka_unit_test(test_json_errors), cmocka_unit_test(test_json_depth),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
