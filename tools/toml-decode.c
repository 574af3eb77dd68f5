/*
 * toml-decode - the toml-test decoder interface for lib/cfg/toml.
 *
 * Reads a TOML document on stdin (raw bytes), writes it as toml-test
 * "tagged" JSON on stdout and exits 0; on invalid input writes one message
 * on stderr, nothing on stdout, and exits 1.
 */
#include "cfg/toml.h"
#include "util/buf.h"
#include "util/err.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int json_str(struct ut_buf *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;
    unsigned char c;
    char esc[6];
    int rc = 0;

    rc = ut_buf_putc(o, '"');
    for (i = 0; i < n && rc == 0; i++) {
        c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7F)
            continue;
        rc = ut_buf_append(o, s + run, i - run);
        run = i + 1;
        if (rc < 0)
            break;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            rc = ut_buf_append(o, esc, 2);
        } else if (c == '\n') {
            rc = ut_buf_append(o, "\\n", 2);
        } else if (c == '\t') {
            rc = ut_buf_append(o, "\\t", 2);
        } else {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            rc = ut_buf_append(o, esc, 6);
        }
    }
    if (rc == 0)
        rc = ut_buf_append(o, s + run, n - run);
    if (rc == 0)
        rc = ut_buf_putc(o, '"');
    return rc;
}

static const char *tag(enum toml_type t)
{
    switch (t) {
    case TOML_STRING:
        return "string";
    case TOML_INTEGER:
        return "integer";
    case TOML_FLOAT:
        return "float";
    case TOML_BOOL:
        return "bool";
    case TOML_DATETIME:
        return "datetime";
    case TOML_DATETIME_LOCAL:
        return "datetime-local";
    case TOML_DATE_LOCAL:
        return "date-local";
    case TOML_TIME_LOCAL:
        return "time-local";
    default:
        return "?";
    }
}

/* Recursion depth is bounded by TOML_MAX_DEPTH, which the parser enforces. */
static int emit(struct ut_buf *o, const struct toml_value *v)
{
    char num[64];
    const char *s;
    size_t i, n, len;
    double d;
    int rc = 0;

    switch (toml_type(v)) {
    case TOML_TABLE:
        rc = ut_buf_putc(o, '{');
        n = toml_table_len(v);
        for (i = 0; i < n && rc == 0; i++) {
            s = toml_table_key(v, i, &len);
            if (i > 0)
                rc = ut_buf_putc(o, ',');
            if (rc == 0)
                rc = json_str(o, s, len);
            if (rc == 0)
                rc = ut_buf_putc(o, ':');
            if (rc == 0)
                rc = emit(o, toml_table_value(v, i));
        }
        return rc ? rc : ut_buf_putc(o, '}');
    case TOML_ARRAY:
        rc = ut_buf_putc(o, '[');
        n = toml_array_len(v);
        for (i = 0; i < n && rc == 0; i++) {
            if (i > 0)
                rc = ut_buf_putc(o, ',');
            if (rc == 0)
                rc = emit(o, toml_array_at(v, i));
        }
        return rc ? rc : ut_buf_putc(o, ']');
    case TOML_STRING:
        s = toml_string(v, &len);
        break;
    case TOML_INTEGER:
        snprintf(num, sizeof(num), "%" PRId64, toml_int(v));
        s = num;
        len = strlen(s);
        break;
    case TOML_FLOAT:
        d = toml_float(v);
        if (isnan(d))
            s = "nan";
        else if (isinf(d))
            s = d < 0 ? "-inf" : "inf";
        else
            s = (snprintf(num, sizeof(num), "%.17g", d), num);
        len = strlen(s);
        break;
    case TOML_BOOL:
        s = toml_bool(v) ? "true" : "false";
        len = strlen(s);
        break;
    default:
        s = toml_datetime(v);
        len = strlen(s);
        break;
    }
    if ((rc = ut_buf_printf(o, "{\"type\":\"%s\",\"value\":", tag(toml_type(v)))) < 0)
        return rc;
    if ((rc = json_str(o, s, len)) < 0)
        return rc;
    return ut_buf_putc(o, '}');
}

int main(void)
{
    struct ut_buf in, out;
    struct toml_value *root = NULL;
    struct ut_err err = {{0}};
    char chunk[65536];
    size_t n;
    int rc, status = 1;

    /* One byte over the limit, so the parser sees and reports the size. */
    ut_buf_init(&in, (size_t)TOML_MAX_INPUT + 1);
    ut_buf_init(&out, (size_t)1 << 30);
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
        if (ut_buf_append(&in, chunk, n) < 0) {
            fprintf(stderr, "toml-decode: input larger than %u bytes\n", TOML_MAX_INPUT);
            goto out;
        }
    }
    if (ferror(stdin)) {
        perror("toml-decode: stdin");
        goto out;
    }
    if ((rc = toml_parse(in.data, in.len, &root, &err)) < 0) {
        fprintf(stderr, "toml-decode: %s\n", err.msg);
        goto out;
    }
    if (emit(&out, root) < 0 || ut_buf_putc(&out, '\n') < 0) {
        fputs("toml-decode: output too large\n", stderr);
        goto out;
    }
    if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        perror("toml-decode: stdout");
        goto out;
    }
    status = 0;
out:
    toml_free(root);
    ut_buf_free(&in);
    ut_buf_free(&out);
    return status;
}
