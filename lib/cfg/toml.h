/*
 * toml.h - TOML 1.0.0 parser (written here; passes the toml-test suite).
 *
 * The whole document is parsed into an immutable tree owned by the root.
 * Limits (each violation is a parse error, never a crash):
 *   - input size       TOML_MAX_INPUT bytes
 *   - nesting depth    TOML_MAX_DEPTH (arrays + inline tables + dotted keys)
 *   - integers         int64; anything that does not fit is an error
 * Input must be UTF-8; a leading BOM is accepted and skipped.
 *
 * Depth: the root table is depth 0 and every table or array is one deeper
 * than the table or array holding it, however it was written ([a.b]
 * headers, a.b = dotted keys, inline tables, arrays, [[aot]] elements);
 * a container deeper than TOML_MAX_DEPTH is an error naming the depth.
 * Other choices where TOML 1.0 leaves room: multi-line strings store a CRLF
 * line end as LF; a float literal too large for a double (1e400) is an
 * error; second 60 (leap second) is accepted in times.
 */
#ifndef CFG_TOML_H
#define CFG_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define TOML_MAX_INPUT (16u * 1024 * 1024)
#define TOML_MAX_DEPTH 64

enum toml_type {
    TOML_TABLE = 1,
    TOML_ARRAY,
    TOML_STRING,
    TOML_INTEGER,
    TOML_FLOAT,
    TOML_BOOL,
    TOML_DATETIME,       /* offset date-time */
    TOML_DATETIME_LOCAL, /* local date-time */
    TOML_DATE_LOCAL,
    TOML_TIME_LOCAL,
};

struct toml_value; /* opaque */

/* Parses data[0..len). On failure returns -EINVAL (or -E2BIG, -ENOMEM) and
 * sets err to "line L, column C: what was wrong". */
int toml_parse(const char *data, size_t len, struct toml_value **root, struct ut_err *err);
void toml_free(struct toml_value *root);

enum toml_type toml_type(const struct toml_value *v);
/* Human name of a type: "table", "array", "string", "integer", "float",
 * "boolean", "offset date-time", "local date-time", "local date", "local time". */
const char *toml_type_name(enum toml_type t);
/* 1-based line where the value (or table header) starts. The root is line
 * 1; a table named only as a parent ([a] of [a.b]) or by dotted keys gets
 * the line of the header or key that created it, and the line of its own
 * [header] once it has one; an array of tables gets its first [[header]]. */
int toml_line(const struct toml_value *v);

/* Tables keep keys in document order. The _len functions return 0 for a
 * value of another type; index accessors return NULL past the end. */
size_t toml_table_len(const struct toml_value *t);
/* Key i; *keylen (optional) gets its length (keys may contain NUL). */
const char *toml_table_key(const struct toml_value *t, size_t i, size_t *keylen);
const struct toml_value *toml_table_value(const struct toml_value *t, size_t i);
/* NULL when absent or when t is not a table. */
const struct toml_value *toml_table_get(const struct toml_value *t, const char *key);

size_t toml_array_len(const struct toml_value *a);
const struct toml_value *toml_array_at(const struct toml_value *a, size_t i);

/* The accessors below require the matching type (checked with assert). */
/* NUL-terminated; *len (optional) gets the length (strings may hold NUL). */
const char *toml_string(const struct toml_value *v, size_t *len);
int64_t toml_int(const struct toml_value *v);
double toml_float(const struct toml_value *v);
bool toml_bool(const struct toml_value *v);
/* Date/time kinds: canonical RFC 3339 text, 'T' separator, upper-case 'Z',
 * fraction kept as written (e.g. "1979-05-27T07:32:00.999-07:00"). */
const char *toml_datetime(const struct toml_value *v);

#endif
