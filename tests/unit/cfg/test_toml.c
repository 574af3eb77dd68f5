/*
 * test_toml.c - lib/cfg/toml: limits, errors and accessors that the
 * toml-test suite does not cover.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg/toml.h"

static struct toml_value *parse_ok(const char *doc)
{
    struct toml_value *root = NULL;
    struct ut_err err = {{0}};
    int rc = toml_parse(doc, strlen(doc), &root, &err);

    if (rc != 0)
        fail_msg("parse failed (%d): %s\n--- input:\n%.400s", rc, err.msg, doc);
    assert_non_null(root);
    return root;
}

/* Parses doc, which must fail with -EINVAL and a message holding want. */
static void parse_bad(const char *doc, const char *want)
{
    struct toml_value *root = (struct toml_value *)&root;
    struct ut_err err = {{0}};
    int rc = toml_parse(doc, strlen(doc), &root, &err);

    if (rc != -EINVAL)
        fail_msg("want -EINVAL, got %d for input %.200s", rc, doc);
    assert_null(root);
    if (strstr(err.msg, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err.msg, want);
}

static char *nested(const char *open, const char *mid, const char *close, int n)
{
    size_t lo = strlen(open), lc = strlen(close), lm = strlen(mid);
    char *s = malloc(4 + n * (lo + lc) + lm + 2);
    char *p = s;
    int i;

    assert_non_null(s);
    memcpy(p, "a = ", 4);
    p += 4;
    for (i = 0; i < n; i++, p += lo)
        memcpy(p, open, lo);
    memcpy(p, mid, lm);
    p += lm;
    for (i = 0; i < n; i++, p += lc)
        memcpy(p, close, lc);
    *p++ = '\n';
    *p = '\0';
    return s;
}

/* Writes pre "k.k.k" (n parts) post into buf. */
static void key_chain(char *buf, const char *pre, int n, const char *post)
{
    int i;

    strcpy(buf, pre);
    strcat(buf, "k");
    for (i = 1; i < n; i++)
        strcat(buf, ".k");
    strcat(buf, post);
}

static void test_int_overflow_rejected(void **state)
{
    static const char *const docs[] = {
        "a = 9223372036854775808\n",
        "a = -9223372036854775809\n",
        "a = 0x8000000000000000\n",
        "a = 0o1000000000000000000000\n",
        "a = 0b10000000000000000000000000000000000000000000000000000000000000000\n",
        "a = 99999999999999999999999999\n",
        "a = 0xFFFFFFFFFFFFFFFF\n",
        "a = +9_223_372_036_854_775_808\n",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
        parse_bad(docs[i], "line 1, column 5: invalid value '");
    parse_bad("a = 9223372036854775808\n", "'9223372036854775808'");
    parse_bad("a = 0x8000000000000000\n", "64 bits");
}

static void test_int_limits_accepted(void **state)
{
    struct toml_value *root =
        parse_ok("max = 9223372036854775807\n"
                 "min = -9223372036854775808\n"
                 "hex = 0x7FFF_FFFF_FFFF_FFFF\n"
                 "oct = 0o777777777777777777777\n"
                 "bin = 0b111111111111111111111111111111111111111111111111111111"
                 "111111111\n"
                 "zero = -0\n");

    (void)state;
    assert_int_equal(toml_int(toml_table_get(root, "max")), INT64_MAX);
    assert_int_equal(toml_int(toml_table_get(root, "min")), INT64_MIN);
    assert_int_equal(toml_int(toml_table_get(root, "hex")), INT64_MAX);
    assert_int_equal(toml_int(toml_table_get(root, "oct")), INT64_MAX);
    assert_int_equal(toml_int(toml_table_get(root, "bin")), INT64_MAX);
    assert_int_equal(toml_int(toml_table_get(root, "zero")), 0);
    toml_free(root);
}

static void test_deep_nesting_rejected(void **state)
{
    char *doc;

    (void)state;
    doc = nested("[", "", "]", 1000);
    parse_bad(doc, "depth");
    free(doc);
    doc = nested("{b = ", "1", "}", 1000);
    parse_bad(doc, "depth of 64");
    free(doc);
    doc = nested("[{b = ", "1", "}]", 1000);
    parse_bad(doc, "depth");
    free(doc);
    /* Unclosed: must still stop at the limit, not recurse to the end. */
    doc = nested("[", "", "", 100000);
    parse_bad(doc, "depth");
    free(doc);
}

static void test_depth_limit_boundary(void **state)
{
    struct toml_value *root;
    const struct toml_value *v;
    char *doc, key[2 * TOML_MAX_DEPTH + 32];
    int i;

    (void)state;
    /* "a" is the array at depth 1, so 64 brackets reach exactly the limit. */
    doc = nested("[", "", "]", TOML_MAX_DEPTH);
    root = parse_ok(doc);
    v = toml_table_get(root, "a");
    for (i = 1; i < TOML_MAX_DEPTH; i++)
        v = toml_array_at(v, 0);
    assert_int_equal(toml_type(v), TOML_ARRAY);
    assert_int_equal(toml_array_len(v), 0);
    toml_free(root);
    free(doc);
    doc = nested("[", "", "]", TOML_MAX_DEPTH + 1);
    parse_bad(doc, "line 1, column 69: nesting deeper than the maximum depth of 64");
    free(doc);

    doc = nested("{b = ", "1", "}", TOML_MAX_DEPTH);
    root = parse_ok(doc);
    toml_free(root);
    free(doc);
    doc = nested("{b = ", "1", "}", TOML_MAX_DEPTH + 1);
    parse_bad(doc, "depth");
    free(doc);

    /* Dotted keys and headers count too: each key part but the last is a
     * table, and a header's last part is one as well. */
    key_chain(key, "", TOML_MAX_DEPTH + 1, " = 1\n");
    root = parse_ok(key);
    toml_free(root);
    key_chain(key, "", TOML_MAX_DEPTH + 2, " = 1\n");
    parse_bad(key, "depth");
    key_chain(key, "[", TOML_MAX_DEPTH, "]\nx = 1\n");
    root = parse_ok(key);
    toml_free(root);
    key_chain(key, "[", TOML_MAX_DEPTH + 1, "]\n");
    parse_bad(key, "depth");
    key_chain(key, "[[", TOML_MAX_DEPTH - 1, "]]\n");
    root = parse_ok(key);
    toml_free(root);
    key_chain(key, "[[", TOML_MAX_DEPTH, "]]\n");
    parse_bad(key, "depth");
}

static void test_error_lines(void **state)
{
    (void)state;
    parse_bad("a = 1\nb = 2\n\nc = @\n", "line 4, column 5: expected a value, found '@'");
    parse_bad("a = 1\nb = 2\na = 3\n", "line 3, column 1: duplicate key 'a'");
    parse_bad("[t]\nx = 1\n\n[t]\n", "line 4, column 2: table 't' is already defined");
    parse_bad("s = \"\"\"\nline\nline\n", "line 1, column 5: unterminated string");
    parse_bad("a = [\n1,\n2\n3]\n", "line 4, column 1: expected ',' or ']'");
    parse_bad("# comment\r\nk = \"\\q\"\r\n", "line 2, column 6: invalid escape '\\q'");
    parse_bad("x = 2021-02-29\n", "line 1, column 5: invalid date/time '2021-02-29'");
    parse_bad("\xEF\xBB\xBFk = 1\nv = \"\xC0\xAF\"\n", "line 2, column 6: invalid UTF-8");
    parse_bad("k = \"\xED\xA0\x80\"\n", "surrogate");
    parse_bad("k = \"\xF4\x90\x80\x80\"\n", "above U+10FFFF");
    parse_bad("k = \"\xE0\x80\xAF\"\n", "overlong");
    /* Columns count characters, not bytes. */
    parse_bad("\"\xC3\xA9\xC3\xA9\" = tru\n", "line 1, column 8: invalid value 'tru'");
    parse_bad("a = 1 b = 2\n",
              "line 1, column 7: expected a newline after a key/value pair, found 'b'");
}

static void test_accessors(void **state)
{
    struct toml_value *root = parse_ok("# config\n"
                                       "zeta = 'z'\n"
                                       "alpha = true\n"
                                       "mid = 1.5\n"
                                       "\n"
                                       "[server]\n"
                                       "listen = [\n"
                                       "  \"a\",\n"
                                       "  \"b\",\n"
                                       "]\n"
                                       "when = 1979-05-27 07:32:00z\n"
                                       "tls.cert = \"c.pem\"\n"
                                       "\n"
                                       "[[peer]]\n"
                                       "url = \"https://x\"\n"
                                       "[[peer]]\n"
                                       "url = \"https://y\"\n"
                                       "opts = { retries = 3, t = 07:32:00, d = 2000-02-29 }\n");
    const struct toml_value *server, *peers, *v;
    const char *k;
    size_t len;

    (void)state;
    assert_int_equal(toml_type(root), TOML_TABLE);
    assert_int_equal(toml_line(root), 1);
    assert_int_equal(toml_table_len(root), 5);
    assert_string_equal(toml_table_key(root, 0, &len), "zeta");
    assert_int_equal(len, 4);
    assert_string_equal(toml_table_key(root, 1, NULL), "alpha");
    assert_string_equal(toml_table_key(root, 2, NULL), "mid");
    assert_string_equal(toml_table_key(root, 3, NULL), "server");
    assert_string_equal(toml_table_key(root, 4, NULL), "peer");
    assert_null(toml_table_key(root, 5, NULL));
    assert_null(toml_table_value(root, 5));
    assert_string_equal(toml_string(toml_table_value(root, 0), NULL), "z");
    assert_true(toml_bool(toml_table_get(root, "alpha")));
    assert_true(toml_float(toml_table_get(root, "mid")) == 1.5);
    assert_int_equal(toml_line(toml_table_get(root, "mid")), 4);
    assert_null(toml_table_get(root, "missing"));
    assert_null(toml_table_get(toml_table_get(root, "mid"), "x"));
    assert_null(toml_table_get(NULL, "x"));

    server = toml_table_get(root, "server");
    assert_non_null(server);
    assert_int_equal(toml_line(server), 6);
    v = toml_table_get(server, "listen");
    assert_int_equal(toml_type(v), TOML_ARRAY);
    assert_int_equal(toml_line(v), 7);
    assert_int_equal(toml_array_len(v), 2);
    assert_int_equal(toml_line(toml_array_at(v, 1)), 9);
    assert_string_equal(toml_string(toml_array_at(v, 1), &len), "b");
    assert_null(toml_array_at(v, 2));
    v = toml_table_get(server, "when");
    assert_int_equal(toml_type(v), TOML_DATETIME);
    assert_string_equal(toml_datetime(v), "1979-05-27T07:32:00Z");
    v = toml_table_get(server, "tls");
    assert_int_equal(toml_type(v), TOML_TABLE);
    assert_int_equal(toml_line(v), 12);
    assert_string_equal(toml_string(toml_table_get(v, "cert"), NULL), "c.pem");

    peers = toml_table_get(root, "peer");
    assert_int_equal(toml_type(peers), TOML_ARRAY);
    assert_int_equal(toml_array_len(peers), 2);
    assert_int_equal(toml_line(peers), 14);
    assert_int_equal(toml_line(toml_array_at(peers, 0)), 14);
    assert_int_equal(toml_line(toml_array_at(peers, 1)), 16);
    v = toml_table_get(toml_array_at(peers, 1), "opts");
    assert_int_equal(toml_line(v), 18);
    assert_int_equal(toml_int(toml_table_get(v, "retries")), 3);
    assert_int_equal(toml_type(toml_table_get(v, "t")), TOML_TIME_LOCAL);
    assert_string_equal(toml_datetime(toml_table_get(v, "t")), "07:32:00");
    assert_int_equal(toml_type(toml_table_get(v, "d")), TOML_DATE_LOCAL);
    k = toml_table_key(v, 2, NULL);
    assert_string_equal(k, "d");

    assert_string_equal(toml_type_name(TOML_BOOL), "boolean");
    assert_string_equal(toml_type_name(TOML_DATETIME), "offset date-time");
    assert_string_equal(toml_type_name(TOML_TIME_LOCAL), "local time");
    toml_free(root);
}

static void test_implicit_table_line(void **state)
{
    struct toml_value *root = parse_ok("[a.b.c]\nx = 1\n\n[a]\ny = 2\n");
    const struct toml_value *a = toml_table_get(root, "a");

    (void)state;
    assert_int_equal(toml_line(a), 4);
    assert_int_equal(toml_line(toml_table_get(a, "b")), 1);
    toml_free(root);
    parse_bad("[a.b.c]\n[a]\nb.d = 1\n[a.b]\n", "line 4, column 4: table 'a.b' is already defined");
}

static void test_big_table(void **state)
{
    char *doc = malloc(40 * 5000 + 1), *p = doc, key[32];
    struct toml_value *root;
    int i;

    (void)state;
    assert_non_null(doc);
    for (i = 0; i < 5000; i++)
        p += sprintf(p, "key%d = %d\n", i, i);
    root = parse_ok(doc);
    assert_int_equal(toml_table_len(root), 5000);
    for (i = 0; i < 5000; i += 7) {
        snprintf(key, sizeof(key), "key%d", i);
        assert_int_equal(toml_int(toml_table_get(root, key)), i);
        assert_string_equal(toml_table_key(root, (size_t)i, NULL), key);
    }
    assert_null(toml_table_get(root, "key5000"));
    toml_free(root);
    sprintf(p, "key4321 = 1\n");
    parse_bad(doc, "line 5001, column 1: duplicate key 'key4321'");
    free(doc);
}

static void test_input_too_large(void **state)
{
    size_t n = (size_t)TOML_MAX_INPUT + 1;
    char *doc = malloc(n);
    struct toml_value *root = NULL;
    struct ut_err err = {{0}};

    (void)state;
    assert_non_null(doc);
    memset(doc, ' ', n);
    doc[0] = '#';
    assert_int_equal(toml_parse(doc, n, &root, &err), -E2BIG);
    assert_null(root);
    assert_non_null(strstr(err.msg, "limit"));
    /* Exactly at the limit is fine. */
    assert_int_equal(toml_parse(doc, n - 1, &root, &err), 0);
    assert_int_equal(toml_table_len(root), 0);
    toml_free(root);
    free(doc);
}

static void test_embedded_nul(void **state)
{
    struct toml_value *root = parse_ok("s = \"a\\u0000b\"\n\"k\\u0000ey\" = 'v'\n");
    const struct toml_value *v = toml_table_get(root, "s");
    const char *s, *k;
    size_t len;

    (void)state;
    s = toml_string(v, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "a\0b", 4);
    k = toml_table_key(root, 1, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(k, "k\0ey", 5);
    toml_free(root);
}

static void test_strings_and_floats(void **state)
{
    struct toml_value *root = parse_ok("\xEF\xBB\xBF"
                                       "ml = \"\"\"\r\nline1\r\nline2 \\\r\n   cont\"\"\"\n"
                                       "lit = '''\n\\n ''x'' '''\n"
                                       "esc = \"\\u00e9\\U0001F600\\t\"\n"
                                       "f1 = -0.0\nf2 = 1e-400\nf3 = 6.02_2e2_3\nf4 = -inf\n");
    const char *s;
    size_t len;

    (void)state;
    s = toml_string(toml_table_get(root, "ml"), &len);
    assert_string_equal(s, "line1\nline2 cont");
    assert_string_equal(toml_string(toml_table_get(root, "lit"), NULL), "\\n ''x'' ");
    assert_string_equal(toml_string(toml_table_get(root, "esc"), NULL),
                        "\xC3\xA9\xF0\x9F\x98\x80\t");
    assert_true(toml_float(toml_table_get(root, "f2")) == 0.0);
    assert_true(toml_float(toml_table_get(root, "f3")) == 6.022e23);
    assert_true(toml_float(toml_table_get(root, "f4")) < -1e308);
    toml_free(root);
    parse_bad("f = 1e400\n", "out of range");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_overflow_rejected), cmocka_unit_test(test_int_limits_accepted),
        cmocka_unit_test(test_deep_nesting_rejected), cmocka_unit_test(test_depth_limit_boundary),
        cmocka_unit_test(test_error_lines),           cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_implicit_table_line),   cmocka_unit_test(test_big_table),
        cmocka_unit_test(test_input_too_large),       cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_strings_and_floats),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
