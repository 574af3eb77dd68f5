/*
 * fuzz_toml.c - libFuzzer target for lib/cfg/toml: parse, and on success
 * walk every value through the public accessors, then free the tree.
 */
#include "cfg/toml.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

/* Recursion is bounded by TOML_MAX_DEPTH, which the parser enforces. */
static void walk(const struct toml_value *v, int depth)
{
    const struct toml_value *c;
    const char *s;
    size_t i, n, len;

    if (depth > TOML_MAX_DEPTH + 1)
        __builtin_trap();
    sink += (size_t)toml_line(v) + strlen(toml_type_name(toml_type(v)));
    switch (toml_type(v)) {
    case TOML_TABLE:
        n = toml_table_len(v);
        for (i = 0; i < n; i++) {
            s = toml_table_key(v, i, &len);
            c = toml_table_value(v, i);
            if (s == NULL || c == NULL || s[len] != '\0')
                __builtin_trap();
            /* Keys holding NUL are not reachable by a C-string lookup. */
            if (memchr(s, '\0', len) == NULL && toml_table_get(v, s) != c)
                __builtin_trap();
            walk(c, depth + 1);
        }
        if (toml_table_key(v, n, NULL) != NULL)
            __builtin_trap();
        break;
    case TOML_ARRAY:
        n = toml_array_len(v);
        for (i = 0; i < n; i++)
            walk(toml_array_at(v, i), depth + 1);
        break;
    case TOML_STRING:
        s = toml_string(v, &len);
        if (s[len] != '\0')
            __builtin_trap();
        sink += len;
        break;
    case TOML_INTEGER:
        sink += (size_t)toml_int(v);
        break;
    case TOML_FLOAT:
        sink += toml_float(v) > 0;
        break;
    case TOML_BOOL:
        sink += toml_bool(v);
        break;
    default:
        sink += strlen(toml_datetime(v));
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct toml_value *root = NULL;
    struct ut_err err;

    if (toml_parse((const char *)data, size, &root, &err) == 0) {
        walk(root, 0);
        toml_free(root);
    } else if (root != NULL || strncmp(err.msg, "line ", 5) != 0) {
        __builtin_trap();
    }
    return 0;
}
