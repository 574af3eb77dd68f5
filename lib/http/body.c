/*
 * body.c - request body parsers: JSON objects and x-www-form-urlencoded.
 *
 * Both are fed hostile bytes straight off the network (and are fuzzed), so
 * every length is checked before use, nothing recurses on input depth, and
 * every failure leaves no allocation behind.
 */
#include "util/hex.h"
#include "http/http_int.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decoded field name longer than this is refused (OAuth names are short). */
#define FORM_MAX_NAME 128
/* A decoded value longer than this is refused; assertions and request
 * objects fit comfortably, a multi-megabyte value is an attack. */
#define FORM_MAX_VALUE (32 * 1024)

struct form_field {
    char *name; /* NUL-terminated, points into arena */
    char *value;
};

struct http_form {
    size_t n;
    char *arena; /* all decoded names and values, NUL separated */
    struct form_field f[HTTP_FORM_MAX_FIELDS];
};

long http_pct_decode(const char *in, size_t len, int plus_is_space, char *out, size_t *bad)
{
    size_t i = 0, o = 0;

    if (len > (size_t)LONG_MAX) {
        *bad = 0;
        return -EINVAL;
    }
    while (i < len) {
        unsigned char c = (unsigned char)in[i];

        if (c == '%') {
            int hi, lo;

            if (len - i < 3 || (hi = ut_hexval((unsigned char)in[i + 1])) < 0 ||
                (lo = ut_hexval((unsigned char)in[i + 2])) < 0) {
                *bad = i;
                return -EINVAL;
            }
            c = (unsigned char)(hi << 4 | lo);
            if (c == 0) {
                *bad = i;
                return -EILSEQ;
            }
            i += 3;
        } else {
            if (c == 0) {
                *bad = i;
                return -EILSEQ;
            }
            if (c == '+' && plus_is_space)
                c = ' ';
            i++;
        }
        out[o++] = (char)c;
    }
    return (long)o;
}

void http_sanitize(const char *s, size_t len, char *out, size_t outsz)
{
    size_t o = 0;

    if (outsz == 0)
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (o + 1 >= outsz) {
            if (outsz >= 4) {
                memcpy(out + outsz - 4, "...", 3);
                o = outsz - 1;
            }
            break;
        }
        if (c == '"')
            c = '\'';
        else if (c < 0x20 || c >= 0x7f || c == '\\')
            c = '?';
        out[o++] = (char)c;
    }
    out[o] = '\0';
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF). */
int http_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;

        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (len - i - 1 < n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

int http_form_parse(const void *body, size_t len, struct http_form **out, struct ut_err *err)
{
    return http_form_parse_as("form", body, len, out, err);
}

int http_form_parse_as(const char *label, const void *body, size_t len, struct http_form **out,
                       struct ut_err *err)
{
    const char *p = body, *end;
    struct http_form *f = NULL;
    char *w;
    int rc = 0;

    *out = NULL;
    if (p == NULL)
        len = 0;
    end = p + len;
    /* Decoded text is never longer than the input; +2 NULs per field. */
    if (len > SIZE_MAX - 2 * HTTP_FORM_MAX_FIELDS - 1) {
        ut_err_set(err, "%s: body too large", label);
        return -E2BIG;
    }
    f = calloc(1, sizeof(*f));
    if (f == NULL || (f->arena = malloc(len + 2 * HTTP_FORM_MAX_FIELDS + 1)) == NULL) {
        ut_err_set(err, "%s: out of memory", label);
        rc = -ENOMEM;
        goto out;
    }
    w = f->arena;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        const char *name_end = eq ? eq : seg_end;
        const char *val = eq ? eq + 1 : seg_end;
        size_t off = (size_t)(p - (const char *)body), bad = 0;
        char shown[48];
        long nl, vl;

        if (seg_end == p) { /* empty pair: "a=1&&b=2" or a trailing '&' */
            p = amp ? amp + 1 : end;
            continue;
        }
        if (f->n == HTTP_FORM_MAX_FIELDS) {
            ut_err_set(err, "%s: more than %d fields", label, HTTP_FORM_MAX_FIELDS);
            rc = -E2BIG;
            goto out;
        }
        if (name_end == p) {
            ut_err_set(err, "%s: empty field name at offset %zu", label, off);
            rc = -EINVAL;
            goto out;
        }
        nl = http_pct_decode(p, (size_t)(name_end - p), 1, w, &bad);
        if (nl < 0) {
            ut_err_set(err, "%s: %s at offset %zu", label,
                       nl == -EILSEQ ? "NUL byte" : "invalid percent-escape", off + bad);
            rc = -EINVAL;
            goto out;
        }
        if (nl > FORM_MAX_NAME) {
            ut_err_set(err, "%s: field name at offset %zu longer than %d bytes", label, off,
                       FORM_MAX_NAME);
            rc = -E2BIG;
            goto out;
        }
        http_sanitize(w, (size_t)nl, shown, sizeof(shown));
        if (!http_utf8_valid((const unsigned char *)w, (size_t)nl)) {
            ut_err_set(err, "%s: field name at offset %zu is not valid UTF-8", label, off);
            rc = -EINVAL;
            goto out;
        }
        w[nl] = '\0';
        for (size_t i = 0; i < f->n; i++) {
            if (strcmp(f->f[i].name, w) == 0) {
                ut_err_set(err, "%s: duplicate field \"%s\"", label, shown);
                rc = -EINVAL;
                goto out;
            }
        }
        f->f[f->n].name = w;
        w += nl + 1;
        vl = http_pct_decode(val, (size_t)(seg_end - val), 1, w, &bad);
        if (vl < 0) {
            ut_err_set(err, "%s: %s in value of \"%s\" at offset %zu", label,
                       vl == -EILSEQ ? "NUL byte" : "invalid percent-escape", shown,
                       (size_t)(val - (const char *)body) + bad);
            rc = -EINVAL;
            goto out;
        }
        if (vl > FORM_MAX_VALUE) {
            ut_err_set(err, "%s: value of \"%s\" longer than %d bytes", label, shown,
                       FORM_MAX_VALUE);
            rc = -E2BIG;
            goto out;
        }
        if (!http_utf8_valid((const unsigned char *)w, (size_t)vl)) {
            ut_err_set(err, "%s: value of \"%s\" is not valid UTF-8", label, shown);
            rc = -EINVAL;
            goto out;
        }
        w[vl] = '\0';
        f->f[f->n].value = w;
        w += vl + 1;
        f->n++;
        p = amp ? amp + 1 : end;
    }
    *out = f;
    f = NULL;
out:
    http_form_free(f);
    return rc;
}

const char *http_form_get(const struct http_form *f, const char *name)
{
    if (f == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->f[i].name, name) == 0)
            return f->f[i].value;
    }
    return NULL;
}

size_t http_form_len(const struct http_form *f)
{
    return f ? f->n : 0;
}

const char *http_form_name(const struct http_form *f, size_t i)
{
    return f && i < f->n ? f->f[i].name : NULL;
}

const char *http_form_value(const struct http_form *f, size_t i)
{
    return f && i < f->n ? f->f[i].value : NULL;
}

void http_form_free(struct http_form *f)
{
    if (f == NULL)
        return;
    free(f->arena);
    free(f);
}

/* Finds the first point where [/{ nesting exceeds max, without parsing
 * (jansson's own limit is 2048, far beyond what any of our APIs accept).
 * Only has to be right for well-formed JSON: anything else fails later. */
static int json_too_deep(const unsigned char *s, size_t len, int max, size_t *at)
{
    int depth = 0, in_str = 0;

    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];

        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
            continue;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max) {
                *at = i;
                return 1;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 0;
}

static const char *json_kind(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "not an object";
    }
}

json_t *http_parse_json(const void *body, size_t len, struct ut_err *err)
{
    json_error_t je;
    json_t *j;
    size_t at = 0;
    char text[sizeof(je.text)];

    if (body == NULL || len == 0) {
        ut_err_set(err, "JSON: empty body");
        return NULL;
    }
    if (json_too_deep(body, len, HTTP_JSON_MAX_DEPTH, &at)) {
        ut_err_set(err, "JSON: nested deeper than %d levels at byte %zu", HTTP_JSON_MAX_DEPTH, at);
        return NULL;
    }
    /* Without JSON_DECODE_ANY only arrays and objects are accepted at the top;
     * trailing data (other than whitespace) is an error by default; "\u0000"
     * is refused since JSON_ALLOW_NUL is not given. */
    j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        http_sanitize(je.text, strnlen(je.text, sizeof(je.text)), text, sizeof(text));
        ut_err_set(err, "JSON: %s at line %d column %d (byte %d)", text, je.line, je.column,
                   je.position);
        return NULL;
    }
    if (!json_is_object(j)) {
        ut_err_set(err, "JSON: body must be an object, got %s", json_kind(j));
        json_decref(j);
        return NULL;
    }
    return j;
}
