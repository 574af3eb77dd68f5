/*
 * toml.c - TOML 1.0.0 parser: a hand-written recursive-descent parser that
 * builds the whole tree in one pass over the input.
 *
 * Recursion happens only for arrays and inline tables, and every container
 * is checked against TOML_MAX_DEPTH before it is entered, so the C stack
 * stays bounded whatever the input. The input is checked for valid UTF-8
 * once up front; after that the parser works on bytes and only has to look
 * for ASCII structure and control characters.
 */
#include "util/hex.h"
#include "cfg/toml.h"
#include "util/buf.h"

#include <assert.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How a table or array came to exist; decides what may extend it later. */
enum kind {
    K_NONE = 0,
    K_IMPLICIT, /* table created as a parent in a [header] path */
    K_EXPLICIT, /* table defined by its own [header] or [[header]] */
    K_DOTTED,   /* table created or defined by dotted keys */
    K_INLINE,   /* inline table: closed for good */
    K_STATIC,   /* array value: closed for good */
    K_AOT,      /* array of tables, appended to by [[header]] */
};

/* Tables switch to a hash index at this many keys; below it a scan is faster. */
#define INDEX_MIN 8

struct tkv {
    char *key;
    size_t klen;
    struct toml_value *val;
};

struct toml_value {
    enum toml_type type;
    int line;
    unsigned char kind;
    unsigned char depth;
    union {
        struct {
            struct tkv *kv;
            size_t len, cap;
            uint32_t *idx; /* entry index + 1, 0 = free slot; NULL below INDEX_MIN */
            size_t icap;   /* power of two */
        } t;
        struct {
            struct toml_value **v;
            size_t len, cap;
        } a;
        struct {
            char *s; /* strings and the canonical text of date/times */
            size_t len;
        } s;
        int64_t i;
        double f;
        bool b;
    } u;
};

struct keypart {
    size_t off, len; /* decoded bytes in parser.kbuf */
    size_t pos;      /* where the part starts in the input */
};

struct parser {
    const char *s;
    size_t n;
    size_t pos;
    size_t lc_pos; /* line cache: byte lc_pos is on line lc_line */
    int lc_line;
    struct ut_buf sbuf;                     /* decoded string values */
    struct ut_buf kbuf;                     /* decoded parts of the key being parsed */
    struct keypart key[TOML_MAX_DEPTH + 1]; /* n parts make n - 1 tables + a value */
    size_t nkey;
    locale_t cloc; /* "C" locale for strtod_l, created on first float */
    struct ut_err *err;
    char tok[96];    /* describe() output */
    char kname[160]; /* key_name() output */
};

/* ---- values ---- */

static struct toml_value *new_value(enum toml_type type, int line, int depth, enum kind kind)
{
    struct toml_value *v = calloc(1, sizeof(*v));

    if (v == NULL)
        return NULL;
    v->type = type;
    v->line = line;
    v->depth = (unsigned char)depth;
    v->kind = (unsigned char)kind;
    return v;
}

void toml_free(struct toml_value *v)
{
    size_t i;

    if (v == NULL)
        return;
    switch (v->type) {
    case TOML_TABLE:
        for (i = 0; i < v->u.t.len; i++) {
            free(v->u.t.kv[i].key);
            toml_free(v->u.t.kv[i].val);
        }
        free(v->u.t.kv);
        free(v->u.t.idx);
        break;
    case TOML_ARRAY:
        for (i = 0; i < v->u.a.len; i++)
            toml_free(v->u.a.v[i]);
        free(v->u.a.v);
        break;
    case TOML_STRING:
    case TOML_DATETIME:
    case TOML_DATETIME_LOCAL:
    case TOML_DATE_LOCAL:
    case TOML_TIME_LOCAL:
        free(v->u.s.s);
        break;
    default:
        break;
    }
    free(v);
}

static uint64_t hash_key(const char *k, size_t n)
{
    uint64_t h = 14695981039346656037ull;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ull;
    }
    return h;
}

static struct toml_value *table_find(const struct toml_value *t, const char *k, size_t klen)
{
    const struct tkv *e;
    size_t i, mask;

    if (t->u.t.idx == NULL) {
        for (i = 0; i < t->u.t.len; i++) {
            e = &t->u.t.kv[i];
            if (e->klen == klen && memcmp(e->key, k, klen) == 0)
                return e->val;
        }
        return NULL;
    }
    mask = t->u.t.icap - 1;
    for (i = hash_key(k, klen) & mask; t->u.t.idx[i] != 0; i = (i + 1) & mask) {
        e = &t->u.t.kv[t->u.t.idx[i] - 1];
        if (e->klen == klen && memcmp(e->key, k, klen) == 0)
            return e->val;
    }
    return NULL;
}

static void index_put(struct toml_value *t, size_t entry)
{
    const struct tkv *e = &t->u.t.kv[entry];
    size_t mask = t->u.t.icap - 1;
    size_t i;

    for (i = hash_key(e->key, e->klen) & mask; t->u.t.idx[i] != 0; i = (i + 1) & mask)
        ;
    t->u.t.idx[i] = (uint32_t)(entry + 1);
}

/* Keeps the load factor at or below 1/2. On allocation failure the index is
 * dropped, and lookups fall back to a linear scan, which is still correct. */
static void index_update(struct toml_value *t)
{
    size_t ncap, i;
    uint32_t *idx;

    if (t->u.t.len < INDEX_MIN)
        return;
    if (t->u.t.idx != NULL && t->u.t.len * 2 <= t->u.t.icap) {
        index_put(t, t->u.t.len - 1);
        return;
    }
    ncap = t->u.t.icap ? t->u.t.icap * 2 : 32;
    idx = calloc(ncap, sizeof(*idx));
    free(t->u.t.idx);
    t->u.t.idx = idx;
    t->u.t.icap = idx ? ncap : 0;
    if (idx == NULL)
        return;
    for (i = 0; i < t->u.t.len; i++)
        index_put(t, i);
}

/* Appends key -> v. Takes ownership of key and v, also on failure. */
static int table_add(struct toml_value *t, char *key, size_t klen, struct toml_value *v)
{
    struct tkv *kv;
    size_t ncap;

    if (t->u.t.len == t->u.t.cap) {
        ncap = t->u.t.cap ? t->u.t.cap * 2 : 4;
        kv = realloc(t->u.t.kv, ncap * sizeof(*kv));
        if (kv == NULL) {
            free(key);
            toml_free(v);
            return -ENOMEM;
        }
        t->u.t.kv = kv;
        t->u.t.cap = ncap;
    }
    t->u.t.kv[t->u.t.len].key = key;
    t->u.t.kv[t->u.t.len].klen = klen;
    t->u.t.kv[t->u.t.len].val = v;
    t->u.t.len++;
    index_update(t);
    return 0;
}

/* Takes ownership of v, also on failure. */
static int array_push(struct toml_value *a, struct toml_value *v)
{
    struct toml_value **nv;
    size_t ncap;

    if (a->u.a.len == a->u.a.cap) {
        ncap = a->u.a.cap ? a->u.a.cap * 2 : 4;
        nv = realloc(a->u.a.v, ncap * sizeof(*nv));
        if (nv == NULL) {
            toml_free(v);
            return -ENOMEM;
        }
        a->u.a.v = nv;
        a->u.a.cap = ncap;
    }
    a->u.a.v[a->u.a.len++] = v;
    return 0;
}

/* ---- positions and errors ---- */

static int line_of(const char *s, size_t pos)
{
    const char *p = s, *end = s + pos, *nl;
    int line = 1;

    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        line++;
        p = nl + 1;
    }
    return line;
}

/* Line of pos; cheap when called with increasing positions, as the parser does. */
static int line_at(struct parser *ps, size_t pos)
{
    const char *p, *end, *nl;

    if (pos < ps->lc_pos) {
        ps->lc_pos = 0;
        ps->lc_line = 1;
    }
    p = ps->s + ps->lc_pos;
    end = ps->s + pos;
    while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        ps->lc_line++;
        p = nl + 1;
    }
    ps->lc_pos = pos;
    return ps->lc_line;
}

static int vfail(struct parser *ps, int rc, size_t pos, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

/* Sets "line L, column C: what" for byte pos and returns rc. */
static int vfail(struct parser *ps, int rc, size_t pos, const char *fmt, va_list ap)
{
    char what[UT_ERR_MAX];
    size_t bol;
    int col = 1;

    if (pos > ps->n)
        pos = ps->n;
    bol = pos;
    while (bol > 0 && ps->s[bol - 1] != '\n')
        bol--;
    for (; bol < pos; bol++)
        if (((unsigned char)ps->s[bol] & 0xC0) != 0x80)
            col++;
    vsnprintf(what, sizeof(what), fmt, ap);
    ut_err_set(ps->err, "line %d, column %d: %s", line_of(ps->s, pos), col, what);
    return rc;
}

static int fail(struct parser *ps, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *ps, size_t pos, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = vfail(ps, -EINVAL, pos, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_rc(struct parser *ps, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_rc(struct parser *ps, int rc, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rc = vfail(ps, rc, ps->pos, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail_nomem(struct parser *ps)
{
    return fail_rc(ps, -ENOMEM, "out of memory");
}

static int fail_buf(struct parser *ps, int rc)
{
    if (rc == -ENOMEM)
        return fail_nomem(ps);
    return fail_rc(ps, rc, "value too large");
}

static int fail_depth(struct parser *ps, size_t pos)
{
    return fail(ps, pos, "nesting deeper than the maximum depth of %d", TOML_MAX_DEPTH);
}

/* Appends p[0..n) to out, quoted with ' and with unprintable bytes escaped,
 * cut to a char boundary near max bytes. */
static void quote_bytes(char *out, size_t outsz, const char *p, size_t n, size_t max, char q)
{
    size_t o = 0, i;
    unsigned char c;

    if (n > max) {
        while (max > 0 && ((unsigned char)p[max] & 0xC0) == 0x80)
            max--;
    }
    out[o++] = q;
    for (i = 0; i < n && i < max && o + 8 < outsz; i++) {
        c = (unsigned char)p[i];
        if (c == (unsigned char)q) {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7F) {
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02X", c);
        } else {
            out[o++] = (char)c;
        }
    }
    if (i < n && o + 5 < outsz) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = q;
    out[o] = '\0';
}

static int is_delim(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '=' || c == '#' ||
           c == '[' || c == ']' || c == '{' || c == '}';
}

/* Names the input at pos for an error message: 'token', newline or end of input. */
static const char *describe(struct parser *ps, size_t pos)
{
    size_t end;

    if (pos >= ps->n)
        return "end of input";
    if (ps->s[pos] == '\n' || (ps->s[pos] == '\r' && pos + 1 < ps->n && ps->s[pos + 1] == '\n'))
        return "newline";
    end = pos + 1;
    if (!is_delim((unsigned char)ps->s[pos]))
        while (end < ps->n && end - pos < 40 && !is_delim((unsigned char)ps->s[end]))
            end++;
    quote_bytes(ps->tok, sizeof(ps->tok), ps->s + pos, end - pos, 32, '\'');
    return ps->tok;
}

static int is_bare(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* Renders key parts [0, upto) as a dotted key for messages. */
static const char *key_name(struct parser *ps, size_t upto)
{
    char part[72];
    size_t o = 0, i, j, len;
    const char *k;
    bool bare;

    ps->kname[0] = '\0';
    for (i = 0; i < upto && o + 4 < sizeof(ps->kname); i++) {
        k = ps->kbuf.data + ps->key[i].off;
        len = ps->key[i].len;
        bare = len > 0;
        for (j = 0; j < len; j++)
            bare = bare && is_bare((unsigned char)k[j]);
        if (bare)
            snprintf(part, sizeof(part), "%.*s", (int)(len > 60 ? 60 : len), k);
        else
            quote_bytes(part, sizeof(part), k, len, 48, '"');
        o += (size_t)snprintf(ps->kname + o, sizeof(ps->kname) - o, "%s%s", i ? "." : "", part);
        if (o >= sizeof(ps->kname))
            o = sizeof(ps->kname) - 1;
    }
    return ps->kname;
}

static const char *a_type(const struct toml_value *v)
{
    switch (v->type) {
    case TOML_TABLE:
        return v->kind == K_INLINE ? "an inline table" : "a table";
    case TOML_ARRAY:
        return v->kind == K_AOT ? "an array of tables" : "an array";
    case TOML_STRING:
        return "a string";
    case TOML_INTEGER:
        return "an integer";
    case TOML_FLOAT:
        return "a float";
    case TOML_BOOL:
        return "a boolean";
    case TOML_DATETIME:
        return "an offset date-time";
    case TOML_DATETIME_LOCAL:
        return "a local date-time";
    case TOML_DATE_LOCAL:
        return "a local date";
    case TOML_TIME_LOCAL:
        return "a local time";
    }
    return "a value";
}

/* ---- input checks ---- */

static int check_utf8(struct parser *ps)
{
    const unsigned char *s = (const unsigned char *)ps->s;
    size_t i = 0, len, k;
    uint32_t cp, min;

    while (i < ps->n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if (s[i] >= 0xC2 && s[i] <= 0xDF) {
            len = 2, min = 0x80, cp = s[i] & 0x1F;
        } else if (s[i] >= 0xE0 && s[i] <= 0xEF) {
            len = 3, min = 0x800, cp = s[i] & 0x0F;
        } else if (s[i] >= 0xF0 && s[i] <= 0xF4) {
            len = 4, min = 0x10000, cp = s[i] & 0x07;
        } else {
            return fail(ps, i, "invalid UTF-8 byte 0x%02X", s[i]);
        }
        for (k = 1; k < len; k++) {
            if (i + k >= ps->n || (s[i + k] & 0xC0) != 0x80)
                return fail(ps, i, "invalid UTF-8 sequence starting with byte 0x%02X", s[i]);
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min)
            return fail(ps, i, "overlong UTF-8 encoding of U+%04X", (unsigned)cp);
        if (cp >= 0xD800 && cp <= 0xDFFF)
            return fail(ps, i, "UTF-8 encoded surrogate U+%04X", (unsigned)cp);
        if (cp > 0x10FFFF)
            return fail(ps, i, "UTF-8 code point above U+10FFFF");
        i += len;
    }
    return 0;
}

static bool is_control(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7F;
}

static int fail_control(struct parser *ps, size_t pos, const char *where)
{
    unsigned char c = (unsigned char)ps->s[pos];

    if (c == '\r')
        return fail(ps, pos, "carriage return not followed by a line feed %s", where);
    if (c == '\n')
        return fail(ps, pos, "newline not allowed %s", where);
    return fail(ps, pos, "control character U+%04X not allowed %s", c, where);
}

/* A control character other than a newline (LF or CRLF) at pos. */
static bool is_stray_control(const struct parser *ps, size_t pos)
{
    if (pos >= ps->n || !is_control((unsigned char)ps->s[pos]) || ps->s[pos] == '\n')
        return false;
    return !(ps->s[pos] == '\r' && pos + 1 < ps->n && ps->s[pos + 1] == '\n');
}

/* ---- whitespace, comments, newlines ---- */

static void skip_ws(struct parser *ps)
{
    while (ps->pos < ps->n && (ps->s[ps->pos] == ' ' || ps->s[ps->pos] == '\t'))
        ps->pos++;
}

/* At '#': skips to (not past) the end of the line. */
static int skip_comment(struct parser *ps)
{
    unsigned char c;

    for (ps->pos++; ps->pos < ps->n; ps->pos++) {
        c = (unsigned char)ps->s[ps->pos];
        if (c == '\n')
            break;
        if (c == '\r' && ps->pos + 1 < ps->n && ps->s[ps->pos + 1] == '\n')
            break;
        if (is_control(c))
            return fail_control(ps, ps->pos, "in a comment");
    }
    return 0;
}

/* Consumes a newline (LF or CRLF) at pos if there is one. */
static bool eat_newline(struct parser *ps)
{
    if (ps->pos < ps->n && ps->s[ps->pos] == '\n') {
        ps->pos++;
        return true;
    }
    if (ps->pos + 1 < ps->n && ps->s[ps->pos] == '\r' && ps->s[ps->pos + 1] == '\n') {
        ps->pos += 2;
        return true;
    }
    return false;
}

/* Skips whitespace, comments and newlines (inside arrays). */
static int skip_ws_nl(struct parser *ps)
{
    int rc;

    for (;;) {
        skip_ws(ps);
        if (ps->pos >= ps->n)
            return 0;
        if (ps->s[ps->pos] == '#') {
            if ((rc = skip_comment(ps)) < 0)
                return rc;
        } else if (!eat_newline(ps)) {
            return 0;
        }
    }
}

/* After a key/value pair or header: optional comment, then newline or end. */
static int expect_eol(struct parser *ps, const char *after)
{
    int rc;

    skip_ws(ps);
    if (ps->pos < ps->n && ps->s[ps->pos] == '#' && (rc = skip_comment(ps)) < 0)
        return rc;
    if (ps->pos >= ps->n || eat_newline(ps))
        return 0;
    if (is_stray_control(ps, ps->pos))
        return fail_control(ps, ps->pos, "here");
    return fail(ps, ps->pos, "expected a newline after %s, found %s", after, describe(ps, ps->pos));
}

/* ---- strings ---- */

static int put_utf8(struct ut_buf *out, uint32_t cp)
{
    char b[4];
    size_t n;

    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return ut_buf_append(out, b, n);
}

/* At the backslash of an escape in a basic string; appends its meaning. */
static int parse_escape(struct parser *ps, struct ut_buf *out, bool multi)
{
    size_t start = ps->pos, ndig, i, n;
    uint32_t cp = 0;
    char c;
    int h, rc;

    if (++ps->pos >= ps->n)
        return fail(ps, start, "unterminated string");
    c = ps->s[ps->pos];
    switch (c) {
    case 'b':
        c = '\b';
        break;
    case 't':
        c = '\t';
        break;
    case 'n':
        c = '\n';
        break;
    case 'f':
        c = '\f';
        break;
    case 'r':
        c = '\r';
        break;
    case '"':
    case '\\':
        break;
    case 'u':
    case 'U':
        ndig = c == 'u' ? 4 : 8;
        for (i = 1; i <= ndig; i++) {
            if (ps->pos + i >= ps->n || (h = ut_hexval((unsigned char)ps->s[ps->pos + i])) < 0) {
                quote_bytes(ps->tok, sizeof(ps->tok), ps->s + start, ps->pos + i - start, 12, '\'');
                return fail(ps, start, "escape %s needs %zu hex digits", ps->tok, ndig);
            }
            cp = (cp << 4) | (uint32_t)h;
        }
        if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return fail(ps, start, "escape '%.*s' is not a Unicode scalar value", (int)ndig + 2,
                        ps->s + start);
        ps->pos += ndig + 1;
        if ((rc = put_utf8(out, cp)) < 0)
            return fail_buf(ps, rc);
        return 0;
    default:
        if (!multi || !(c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            for (n = 2; start + n < ps->n && ((unsigned char)ps->s[start + n] & 0xC0) == 0x80;)
                n++;
            quote_bytes(ps->tok, sizeof(ps->tok), ps->s + start, n, 8, '\'');
            return fail(ps, start, "invalid escape %s", ps->tok);
        }
        /* Line-ending backslash: only whitespace may follow it on its line;
         * it eats that, the newline, and all whitespace and newlines after. */
        skip_ws(ps);
        if (!eat_newline(ps))
            return fail(ps, start, "only whitespace may follow a line-ending backslash, found %s",
                        describe(ps, ps->pos));
        for (;;) {
            skip_ws(ps);
            if (!eat_newline(ps))
                return 0;
        }
    }
    ps->pos++;
    if ((rc = ut_buf_putc(out, c)) < 0)
        return fail_buf(ps, rc);
    return 0;
}

/* At the opening quote(s); parses a basic or literal string, single-line or
 * multi-line, appending the decoded bytes to out. In multi-line strings a
 * CRLF is stored as a single LF. */
static int parse_string(struct parser *ps, struct ut_buf *out, char q, bool multi)
{
    size_t start = ps->pos, run, nq;
    unsigned char c;
    int rc;

    ps->pos += multi ? 3 : 1;
    if (multi)
        eat_newline(ps);
    for (;;) {
        run = ps->pos;
        while (ps->pos < ps->n) {
            c = (unsigned char)ps->s[ps->pos];
            if (c == (unsigned char)q || (c == '\\' && q == '"') || (c < 0x20 && c != '\t') ||
                c == 0x7F)
                break;
            ps->pos++;
        }
        if ((rc = ut_buf_append(out, ps->s + run, ps->pos - run)) < 0)
            return fail_buf(ps, rc);
        if (ps->pos >= ps->n)
            return fail(ps, start, "unterminated string");
        c = (unsigned char)ps->s[ps->pos];
        if (c == (unsigned char)q) {
            if (!multi) {
                ps->pos++;
                return 0;
            }
            for (nq = 0; ps->pos + nq < ps->n && ps->s[ps->pos + nq] == q && nq < 6; nq++)
                ;
            if (nq >= 6)
                return fail(ps, ps->pos, "too many quotes closing a multi-line string");
            if (nq >= 3) {
                if ((rc = ut_buf_append(out, ps->s + ps->pos, nq - 3)) < 0)
                    return fail_buf(ps, rc);
                ps->pos += nq;
                return 0;
            }
            if ((rc = ut_buf_append(out, ps->s + ps->pos, nq)) < 0)
                return fail_buf(ps, rc);
            ps->pos += nq;
        } else if (c == '\\') {
            if ((rc = parse_escape(ps, out, multi)) < 0)
                return rc;
        } else if (multi && (c == '\n' || c == '\r')) {
            if (!eat_newline(ps))
                return fail_control(ps, ps->pos, "in a string");
            if ((rc = ut_buf_putc(out, '\n')) < 0)
                return fail_buf(ps, rc);
        } else if (c == '\n' || (c == '\r' && ps->pos + 1 < ps->n && ps->s[ps->pos + 1] == '\n')) {
            return fail(ps, start, "unterminated string (newline before the closing quote)");
        } else {
            return fail_control(ps, ps->pos, "in a string");
        }
    }
}

static bool at_triple(const struct parser *ps, char q)
{
    return ps->pos + 2 < ps->n && ps->s[ps->pos] == q && ps->s[ps->pos + 1] == q &&
           ps->s[ps->pos + 2] == q;
}

/* ---- keys ---- */

static int parse_simple_key(struct parser *ps)
{
    struct keypart *kp;
    size_t start = ps->pos;
    char c;
    int rc;

    if (ps->nkey > TOML_MAX_DEPTH)
        return fail_depth(ps, start);
    kp = &ps->key[ps->nkey];
    kp->off = ps->kbuf.len;
    kp->pos = start;
    c = start < ps->n ? ps->s[start] : '\0';
    if (c == '"' || c == '\'') {
        if (at_triple(ps, c))
            return fail(ps, start, "a multi-line string cannot be a key");
        if ((rc = parse_string(ps, &ps->kbuf, c, false)) < 0)
            return rc;
    } else {
        while (ps->pos < ps->n && is_bare((unsigned char)ps->s[ps->pos]))
            ps->pos++;
        if (ps->pos == start) {
            if (is_stray_control(ps, start))
                return fail_control(ps, start, "here");
            return fail(ps, start, "expected a key, found %s", describe(ps, start));
        }
        if ((rc = ut_buf_append(&ps->kbuf, ps->s + start, ps->pos - start)) < 0)
            return fail_buf(ps, rc);
    }
    kp->len = ps->kbuf.len - kp->off;
    ps->nkey++;
    return 0;
}

/* Parses a (possibly dotted) key into ps->key[0..nkey). */
static int parse_key(struct parser *ps)
{
    int rc;

    ps->nkey = 0;
    ut_buf_reset(&ps->kbuf);
    for (;;) {
        if ((rc = parse_simple_key(ps)) < 0)
            return rc;
        skip_ws(ps);
        if (ps->pos >= ps->n || ps->s[ps->pos] != '.')
            return 0;
        ps->pos++;
        skip_ws(ps);
    }
}

static char *key_dup(const struct parser *ps, size_t i)
{
    char *k = malloc(ps->key[i].len + 1);

    if (k == NULL)
        return NULL;
    memcpy(k, ps->kbuf.data + ps->key[i].off, ps->key[i].len);
    k[ps->key[i].len] = '\0';
    return k;
}

static struct toml_value *find_part(const struct parser *ps, const struct toml_value *t, size_t i)
{
    return table_find(t, ps->kbuf.data + ps->key[i].off, ps->key[i].len);
}

/* Adds an empty table of the given kind under key part i of t. */
static int add_table(struct parser *ps, struct toml_value *t, size_t i, enum kind kind, int line,
                     struct toml_value **out)
{
    struct toml_value *v;
    char *k;
    int rc;

    if (t->depth + 1 > TOML_MAX_DEPTH)
        return fail_depth(ps, ps->key[i].pos);
    v = new_value(TOML_TABLE, line, t->depth + 1, kind);
    k = key_dup(ps, i);
    if (v == NULL || k == NULL) {
        free(k);
        toml_free(v);
        return fail_nomem(ps);
    }
    if ((rc = table_add(t, k, ps->key[i].len, v)) < 0)
        return fail_nomem(ps);
    *out = v;
    return 0;
}

/* ---- headers ---- */

/* Handles "[a.b.c]" or "[[a.b.c]]" whose key is in ps->key; *cur becomes
 * the table that following key/value pairs go into. */
static int open_table(struct parser *ps, struct toml_value *root, bool aot, int line,
                      struct toml_value **cur)
{
    struct toml_value *t = root, *v, *elem;
    size_t i, last = ps->nkey - 1;
    char *k;
    int rc;

    for (i = 0; i < last; i++) {
        v = find_part(ps, t, i);
        if (v == NULL) {
            if ((rc = add_table(ps, t, i, K_IMPLICIT, line, &v)) < 0)
                return rc;
        } else if (v->type == TOML_ARRAY && v->kind == K_AOT) {
            v = v->u.a.v[v->u.a.len - 1];
        } else if (v->type != TOML_TABLE || v->kind == K_INLINE) {
            return fail(ps, ps->key[i].pos, "cannot define a table inside '%s': it is %s",
                        key_name(ps, i + 1), a_type(v));
        }
        t = v;
    }
    v = find_part(ps, t, last);
    if (!aot) {
        if (v == NULL) {
            if ((rc = add_table(ps, t, last, K_EXPLICIT, line, &v)) < 0)
                return rc;
        } else if (v->type == TOML_TABLE && v->kind == K_IMPLICIT) {
            v->kind = K_EXPLICIT;
            v->line = line;
        } else if (v->type == TOML_TABLE && v->kind != K_INLINE) {
            return fail(ps, ps->key[last].pos, "table '%s' is already defined",
                        key_name(ps, ps->nkey));
        } else {
            return fail(ps, ps->key[last].pos, "cannot define table '%s': it is already %s",
                        key_name(ps, ps->nkey), a_type(v));
        }
        *cur = v;
        return 0;
    }
    if (v == NULL) {
        if (t->depth + 2 > TOML_MAX_DEPTH)
            return fail_depth(ps, ps->key[last].pos);
        v = new_value(TOML_ARRAY, line, t->depth + 1, K_AOT);
        k = key_dup(ps, last);
        if (v == NULL || k == NULL) {
            free(k);
            toml_free(v);
            return fail_nomem(ps);
        }
        if ((rc = table_add(t, k, ps->key[last].len, v)) < 0)
            return fail_nomem(ps);
    } else if (v->type != TOML_ARRAY || v->kind != K_AOT) {
        return fail(ps, ps->key[last].pos, "cannot append a table to '%s': it is already %s",
                    key_name(ps, ps->nkey), a_type(v));
    }
    elem = new_value(TOML_TABLE, line, v->depth + 1, K_EXPLICIT);
    if (elem == NULL || array_push(v, elem) < 0)
        return fail_nomem(ps);
    *cur = elem;
    return 0;
}

static int parse_header(struct parser *ps, struct toml_value *root, struct toml_value **cur)
{
    size_t start = ps->pos;
    bool aot = ps->pos + 1 < ps->n && ps->s[ps->pos + 1] == '[';
    int line = line_at(ps, start);
    int rc;

    ps->pos += aot ? 2 : 1;
    skip_ws(ps);
    if ((rc = parse_key(ps)) < 0)
        return rc;
    if (ps->pos >= ps->n || ps->s[ps->pos] != ']' ||
        (aot && (ps->pos + 1 >= ps->n || ps->s[ps->pos + 1] != ']')))
        return fail(ps, ps->pos, "expected '%s' to close the table header, found %s",
                    aot ? "]]" : "]", describe(ps, ps->pos));
    ps->pos += aot ? 2 : 1;
    if ((rc = open_table(ps, root, aot, line, cur)) < 0)
        return rc;
    return expect_eol(ps, "a table header");
}

/* ---- scalars ---- */

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_digit_base(unsigned char c, int base)
{
    if (base == 16)
        return ut_hexval(c) >= 0;
    return c >= '0' && c < '0' + base;
}

/* Scans DIGIT *( ["_"] DIGIT ) from p[*i]: underscores only between digits. */
static bool scan_digits(const char *p, size_t m, size_t *i, int base)
{
    size_t j = *i;

    if (j >= m || !is_digit_base((unsigned char)p[j], base))
        return false;
    for (j++; j < m; j++) {
        if (p[j] == '_') {
            if (j + 1 >= m || !is_digit_base((unsigned char)p[j + 1], base))
                return false;
            j++;
        } else if (!is_digit_base((unsigned char)p[j], base)) {
            break;
        }
    }
    *i = j;
    return true;
}

static bool is_tokch(unsigned char c)
{
    return is_bare(c) || c == '+' || c == '.' || c == ':';
}

static int two(const char *p)
{
    return (p[0] - '0') * 10 + (p[1] - '0');
}

/* True when t[i..i+ndig) are all decimal digits within len. */
static bool digits_at(const char *t, size_t len, size_t i, size_t ndig)
{
    size_t k;

    if (i + ndig > len)
        return false;
    for (k = 0; k < ndig; k++)
        if (!is_digit((unsigned char)t[i + k]))
            return false;
    return true;
}

/* Parses "HH:MM:SS[.frac]" at t[*i]. */
static const char *scan_time(const char *t, size_t len, size_t *i)
{
    size_t j = *i;

    if (!digits_at(t, len, j, 2) || j + 2 >= len || t[j + 2] != ':' || !digits_at(t, len, j + 3, 2))
        return "expected HH:MM:SS";
    if (j + 5 >= len || t[j + 5] != ':' || !digits_at(t, len, j + 6, 2))
        return "seconds are required (HH:MM:SS)";
    if (two(t + j) > 23)
        return "hour out of range";
    if (two(t + j + 3) > 59)
        return "minute out of range";
    if (two(t + j + 6) > 60)
        return "second out of range";
    j += 8;
    if (j < len && t[j] == '.') {
        if (!digits_at(t, len, j + 1, 1))
            return "expected digits after the decimal point";
        for (j++; j < len && is_digit((unsigned char)t[j]); j++)
            ;
    }
    *i = j;
    return NULL;
}

static int days_in_month(int y, int m)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return mdays[m - 1];
}

static int parse_datetime(struct parser *ps, size_t start, const char *t, size_t len,
                          struct toml_value *v)
{
    const char *why = NULL;
    size_t i = 0;
    int y, m, d;
    char *s;

    if (len >= 3 && t[2] == ':') {
        v->type = TOML_TIME_LOCAL;
        why = scan_time(t, len, &i);
    } else if (len < 10 || !digits_at(t, len, 0, 4) || t[4] != '-' || !digits_at(t, len, 5, 2) ||
               t[7] != '-' || !digits_at(t, len, 8, 2)) {
        why = "expected YYYY-MM-DD";
    } else {
        y = two(t) * 100 + two(t + 2);
        m = two(t + 5);
        d = two(t + 8);
        if (m < 1 || m > 12)
            why = "month out of range";
        else if (d < 1 || d > days_in_month(y, m))
            why = "day out of range";
        i = 10;
        v->type = TOML_DATE_LOCAL;
        if (why == NULL && i < len) {
            if (t[i] != 'T' && t[i] != 't' && t[i] != ' ') {
                why = "expected 'T' between date and time";
            } else {
                i++;
                v->type = TOML_DATETIME_LOCAL;
                why = scan_time(t, len, &i);
            }
        }
        if (why == NULL && i < len) {
            v->type = TOML_DATETIME;
            if (t[i] == 'Z' || t[i] == 'z') {
                i++;
            } else if ((t[i] == '+' || t[i] == '-') && digits_at(t, len, i + 1, 2) && i + 3 < len &&
                       t[i + 3] == ':' && digits_at(t, len, i + 4, 2)) {
                if (two(t + i + 1) > 23 || two(t + i + 4) > 59)
                    why = "time zone offset out of range";
                i += 6;
            } else {
                why = "expected a time zone offset (Z or +HH:MM)";
            }
        }
    }
    if (why == NULL && i != len)
        why = "unexpected characters after it";
    if (why != NULL) {
        quote_bytes(ps->tok, sizeof(ps->tok), t, len, 40, '\'');
        return fail(ps, start, "invalid date/time %s: %s", ps->tok, why);
    }
    s = malloc(len + 1);
    if (s == NULL)
        return fail_nomem(ps);
    memcpy(s, t, len);
    s[len] = '\0';
    if (len > 10 && v->type != TOML_TIME_LOCAL)
        s[10] = 'T';
    if (s[len - 1] == 'z')
        s[len - 1] = 'Z';
    v->u.s.s = s;
    v->u.s.len = len;
    return 0;
}

static int bad_number(struct parser *ps, size_t start, const char *t, size_t len, const char *why)
{
    quote_bytes(ps->tok, sizeof(ps->tok), t, len, 40, '\'');
    return fail(ps, start, "invalid value %s: %s", ps->tok, why);
}

static int parse_float(struct parser *ps, size_t start, const char *t, size_t len,
                       struct toml_value *v)
{
    size_t i = 0, j;
    bool frac = false, exp = false;
    char *end;
    double d;
    int rc;

    if (t[0] == '+' || t[0] == '-')
        i++;
    j = i;
    if (!scan_digits(t, len, &i, 10))
        return bad_number(ps, start, t, len, "malformed float");
    if (t[j] == '0' && i > j + 1)
        return bad_number(ps, start, t, len, "leading zeros are not allowed");
    if (i < len && t[i] == '.') {
        i++;
        frac = true;
        if (!scan_digits(t, len, &i, 10))
            return bad_number(ps, start, t, len, "expected digits after the decimal point");
    }
    if (i < len && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        exp = true;
        if (i < len && (t[i] == '+' || t[i] == '-'))
            i++;
        if (!scan_digits(t, len, &i, 10))
            return bad_number(ps, start, t, len, "expected digits in the exponent");
    }
    if (i != len || !(frac || exp))
        return bad_number(ps, start, t, len, "malformed float");
    ut_buf_reset(&ps->sbuf);
    for (i = 0; i < len; i++)
        if (t[i] != '_' && (rc = ut_buf_putc(&ps->sbuf, t[i])) < 0)
            return fail_buf(ps, rc);
    if (ps->cloc == (locale_t)0) {
        ps->cloc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
        if (ps->cloc == (locale_t)0)
            return fail_nomem(ps);
    }
    d = strtod_l(ps->sbuf.data, &end, ps->cloc);
    if (end != ps->sbuf.data + ps->sbuf.len)
        return bad_number(ps, start, t, len, "malformed float");
    if (isinf(d))
        return bad_number(ps, start, t, len, "float out of range");
    v->type = TOML_FLOAT;
    v->u.f = d;
    return 0;
}

static int parse_integer(struct parser *ps, size_t start, const char *t, size_t len,
                         struct toml_value *v)
{
    uint64_t acc = 0, limit = INT64_MAX;
    size_t i = 0, j;
    bool neg = false;
    int base = 10, dv;

    if (t[0] == '+' || t[0] == '-') {
        neg = t[0] == '-';
        if (neg)
            limit = (uint64_t)INT64_MAX + 1;
        i++;
    }
    if (len - i >= 2 && t[i] == '0' && (t[i + 1] == 'x' || t[i + 1] == 'o' || t[i + 1] == 'b')) {
        if (i > 0)
            return bad_number(ps, start, t, len, "a sign is not allowed with a base prefix");
        base = t[1] == 'x' ? 16 : t[1] == 'o' ? 8 : 2;
        i = 2;
    }
    j = i;
    if (!scan_digits(t, len, &i, base) || i != len)
        return bad_number(ps, start, t, len, "malformed integer");
    if (base == 10 && t[j] == '0' && len > j + 1)
        return bad_number(ps, start, t, len, "leading zeros are not allowed");
    for (i = j; i < len; i++) {
        if (t[i] == '_')
            continue;
        dv = ut_hexval((unsigned char)t[i]);
        if (acc > (limit - (uint64_t)dv) / (uint64_t)base)
            return bad_number(ps, start, t, len, "integer does not fit in 64 bits");
        acc = acc * (uint64_t)base + (uint64_t)dv;
    }
    v->type = TOML_INTEGER;
    if (neg)
        v->u.i = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    else
        v->u.i = (int64_t)acc;
    return 0;
}

/* Booleans, numbers and date/times: everything that is not a string, array
 * or inline table. */
static int parse_bare_value(struct parser *ps, struct toml_value *v)
{
    size_t start = ps->pos, len, i;
    const char *t = ps->s + start;
    bool sign;

    while (ps->pos < ps->n && is_tokch((unsigned char)ps->s[ps->pos]))
        ps->pos++;
    len = ps->pos - start;
    /* A date followed by a space and a time is one local or offset date-time. */
    if (len == 10 && t[4] == '-' && ps->pos + 3 < ps->n && ps->s[ps->pos] == ' ' &&
        is_digit((unsigned char)ps->s[ps->pos + 1]) &&
        is_digit((unsigned char)ps->s[ps->pos + 2]) && ps->s[ps->pos + 3] == ':') {
        for (ps->pos++; ps->pos < ps->n && is_tokch((unsigned char)ps->s[ps->pos]);)
            ps->pos++;
        len = ps->pos - start;
    }
    if (len == 0) {
        if (is_stray_control(ps, start))
            return fail_control(ps, start, "here");
        return fail(ps, start, "expected a value, found %s", describe(ps, start));
    }
    if (len == 4 && memcmp(t, "true", 4) == 0) {
        v->type = TOML_BOOL;
        v->u.b = true;
        return 0;
    }
    if (len == 5 && memcmp(t, "false", 5) == 0) {
        v->type = TOML_BOOL;
        v->u.b = false;
        return 0;
    }
    sign = t[0] == '+' || t[0] == '-';
    if (len - sign == 3 && (memcmp(t + sign, "inf", 3) == 0 || memcmp(t + sign, "nan", 3) == 0)) {
        v->type = TOML_FLOAT;
        if (t[sign] == 'i')
            v->u.f = t[0] == '-' ? -HUGE_VAL : HUGE_VAL;
        else
            v->u.f = t[0] == '-' ? -NAN : NAN;
        return 0;
    }
    if ((len >= 3 && t[2] == ':') || (len >= 5 && digits_at(t, len, 0, 4) && t[4] == '-'))
        return parse_datetime(ps, start, t, len, v);
    if (len == sign || !is_digit((unsigned char)t[sign]))
        return bad_number(ps, start, t, len,
                          "expected a string, number, boolean, date/time, array or inline table "
                          "(strings need quotes)");
    if (len - sign >= 2 && t[sign] == '0' &&
        (t[sign + 1] == 'x' || t[sign + 1] == 'o' || t[sign + 1] == 'b'))
        return parse_integer(ps, start, t, len, v);
    for (i = 0; i < len; i++)
        if (t[i] == '.' || t[i] == 'e' || t[i] == 'E')
            return parse_float(ps, start, t, len, v);
    return parse_integer(ps, start, t, len, v);
}

/* ---- values, arrays, inline tables ---- */

static int parse_keyval(struct parser *ps, struct toml_value *t);

/* Parses the value at ps->pos. depth is the depth it gets if it is a
 * container; deeper ones are refused before they are entered. */
static int parse_value(struct parser *ps, int depth, struct toml_value **out)
{
    struct toml_value *v, *elem;
    size_t start = ps->pos;
    int line = line_at(ps, start);
    int rc;
    char c = start < ps->n ? ps->s[start] : '\0';

    if ((c == '[' || c == '{') && depth > TOML_MAX_DEPTH)
        return fail_depth(ps, start);
    v = new_value(TOML_STRING, line, depth, K_NONE);
    if (v == NULL)
        return fail_nomem(ps);
    if (c == '"' || c == '\'') {
        ut_buf_reset(&ps->sbuf);
        if ((rc = parse_string(ps, &ps->sbuf, c, at_triple(ps, c))) < 0)
            goto out;
        v->u.s.s = malloc(ps->sbuf.len + 1);
        if (v->u.s.s == NULL) {
            rc = fail_nomem(ps);
            goto out;
        }
        memcpy(v->u.s.s, ps->sbuf.data ? ps->sbuf.data : "", ps->sbuf.len);
        v->u.s.s[ps->sbuf.len] = '\0';
        v->u.s.len = ps->sbuf.len;
    } else if (c == '[') {
        v->type = TOML_ARRAY;
        v->kind = K_STATIC;
        ps->pos++;
        for (;;) {
            if ((rc = skip_ws_nl(ps)) < 0)
                goto out;
            if (ps->pos < ps->n && ps->s[ps->pos] == ']')
                break;
            if ((rc = parse_value(ps, depth + 1, &elem)) < 0)
                goto out;
            if ((rc = array_push(v, elem)) < 0) {
                rc = fail_nomem(ps);
                goto out;
            }
            if ((rc = skip_ws_nl(ps)) < 0)
                goto out;
            if (ps->pos < ps->n && ps->s[ps->pos] == ',') {
                ps->pos++;
                continue;
            }
            if (ps->pos < ps->n && ps->s[ps->pos] == ']')
                break;
            if (is_stray_control(ps, ps->pos))
                rc = fail_control(ps, ps->pos, "here");
            else
                rc = fail(ps, ps->pos, "expected ',' or ']' after an array element, found %s",
                          describe(ps, ps->pos));
            goto out;
        }
        ps->pos++;
    } else if (c == '{') {
        v->type = TOML_TABLE;
        v->kind = K_INLINE; /* its own pairs are added directly, not through a kind check */
        ps->pos++;
        skip_ws(ps);
        if (ps->pos < ps->n && ps->s[ps->pos] == '}') {
            ps->pos++;
        } else {
            for (;;) {
                skip_ws(ps);
                if ((rc = parse_keyval(ps, v)) < 0)
                    goto out;
                skip_ws(ps);
                if (ps->pos < ps->n && ps->s[ps->pos] == ',') {
                    ps->pos++;
                    skip_ws(ps);
                    if (ps->pos < ps->n && ps->s[ps->pos] == '}') {
                        rc = fail(ps, ps->pos, "trailing comma not allowed in an inline table");
                        goto out;
                    }
                    continue;
                }
                if (ps->pos < ps->n && ps->s[ps->pos] == '}') {
                    ps->pos++;
                    break;
                }
                if (is_stray_control(ps, ps->pos))
                    rc = fail_control(ps, ps->pos, "here");
                else
                    rc = fail(ps, ps->pos,
                              "expected ',' or '}' after a key/value pair in an inline table "
                              "(which must stay on one line), found %s",
                              describe(ps, ps->pos));
                goto out;
            }
        }
    } else {
        if ((rc = parse_bare_value(ps, v)) < 0)
            goto out;
    }
    *out = v;
    v = NULL;
    rc = 0;
out:
    toml_free(v);
    return rc;
}

/* Parses "key = value" into table t, creating tables for dotted keys. */
static int parse_keyval(struct parser *ps, struct toml_value *t)
{
    struct toml_value *v = NULL, *sub;
    size_t i, last, klen;
    char *k = NULL;
    int line = line_at(ps, ps->pos);
    int rc;

    if ((rc = parse_key(ps)) < 0)
        goto out;
    if (ps->pos >= ps->n || ps->s[ps->pos] != '=') {
        rc = fail(ps, ps->pos, "expected '=' after key '%s', found %s", key_name(ps, ps->nkey),
                  describe(ps, ps->pos));
        goto out;
    }
    ps->pos++;
    skip_ws(ps);
    last = ps->nkey - 1;
    for (i = 0; i < last; i++) {
        sub = find_part(ps, t, i);
        if (sub == NULL) {
            if ((rc = add_table(ps, t, i, K_DOTTED, line, &sub)) < 0)
                goto out;
        } else if (sub->type == TOML_TABLE && (sub->kind == K_DOTTED || sub->kind == K_IMPLICIT)) {
            sub->kind = K_DOTTED;
        } else if (sub->type == TOML_TABLE && sub->kind == K_EXPLICIT) {
            rc = fail(ps, ps->key[i].pos,
                      "cannot add to table '%s' with dotted keys: it is defined by a [header]",
                      key_name(ps, i + 1));
            goto out;
        } else {
            rc = fail(ps, ps->key[i].pos, "cannot use '%s' as a table: it is already %s",
                      key_name(ps, i + 1), a_type(sub));
            goto out;
        }
        t = sub;
    }
    if (find_part(ps, t, last) != NULL) {
        rc = fail(ps, ps->key[last].pos, "duplicate key '%s'", key_name(ps, ps->nkey));
        goto out;
    }
    klen = ps->key[last].len;
    if ((k = key_dup(ps, last)) == NULL) {
        rc = fail_nomem(ps);
        goto out;
    }
    /* The value may hold inline tables whose keys reuse ps->key. */
    if ((rc = parse_value(ps, t->depth + 1, &v)) < 0)
        goto out;
    rc = table_add(t, k, klen, v);
    k = NULL;
    v = NULL;
    if (rc < 0)
        rc = fail_nomem(ps);
out:
    free(k);
    toml_free(v);
    return rc;
}

static int parse_document(struct parser *ps, struct toml_value *root)
{
    struct toml_value *cur = root;
    unsigned char c;
    int rc;

    for (;;) {
        skip_ws(ps);
        if (ps->pos >= ps->n)
            return 0;
        c = (unsigned char)ps->s[ps->pos];
        if (c == '[') {
            rc = parse_header(ps, root, &cur);
        } else if (c == '#' || c == '\n' || c == '\r') {
            rc = expect_eol(ps, "a comment");
        } else {
            if ((rc = parse_keyval(ps, cur)) < 0)
                return rc;
            rc = expect_eol(ps, "a key/value pair");
        }
        if (rc < 0)
            return rc;
    }
}

int toml_parse(const char *data, size_t len, struct toml_value **root, struct ut_err *err)
{
    struct parser ps;
    struct toml_value *r = NULL;
    int rc;

    *root = NULL;
    memset(&ps, 0, sizeof(ps));
    ps.err = err;
    ps.lc_line = 1;
    ut_buf_init(&ps.sbuf, TOML_MAX_INPUT);
    ut_buf_init(&ps.kbuf, TOML_MAX_INPUT);
    if (len > TOML_MAX_INPUT) {
        ut_err_set(err, "line 1, column 1: input is %zu bytes, more than the limit of %u", len,
                   TOML_MAX_INPUT);
        rc = -E2BIG;
        goto out;
    }
    if (data == NULL && len > 0) {
        ut_err_set(err, "line 1, column 1: no input buffer");
        rc = -EINVAL;
        goto out;
    }
    ps.s = data ? data : "";
    ps.n = len;
    if (ps.n >= 3 && memcmp(ps.s, "\xEF\xBB\xBF", 3) == 0) {
        ps.s += 3;
        ps.n -= 3;
    }
    if ((rc = check_utf8(&ps)) < 0)
        goto out;
    r = new_value(TOML_TABLE, 1, 0, K_EXPLICIT);
    if (r == NULL) {
        rc = fail_nomem(&ps);
        goto out;
    }
    if ((rc = parse_document(&ps, r)) < 0)
        goto out;
    *root = r;
    r = NULL;
out:
    toml_free(r);
    ut_buf_free(&ps.sbuf);
    ut_buf_free(&ps.kbuf);
    if (ps.cloc != (locale_t)0)
        freelocale(ps.cloc);
    return rc;
}

/* ---- accessors ---- */

enum toml_type toml_type(const struct toml_value *v)
{
    return v->type;
}

const char *toml_type_name(enum toml_type t)
{
    switch (t) {
    case TOML_TABLE:
        return "table";
    case TOML_ARRAY:
        return "array";
    case TOML_STRING:
        return "string";
    case TOML_INTEGER:
        return "integer";
    case TOML_FLOAT:
        return "float";
    case TOML_BOOL:
        return "boolean";
    case TOML_DATETIME:
        return "offset date-time";
    case TOML_DATETIME_LOCAL:
        return "local date-time";
    case TOML_DATE_LOCAL:
        return "local date";
    case TOML_TIME_LOCAL:
        return "local time";
    }
    return "unknown";
}

int toml_line(const struct toml_value *v)
{
    return v->line;
}

size_t toml_table_len(const struct toml_value *t)
{
    return t != NULL && t->type == TOML_TABLE ? t->u.t.len : 0;
}

const char *toml_table_key(const struct toml_value *t, size_t i, size_t *keylen)
{
    assert(t->type == TOML_TABLE);
    if (i >= t->u.t.len)
        return NULL;
    if (keylen != NULL)
        *keylen = t->u.t.kv[i].klen;
    return t->u.t.kv[i].key;
}

const struct toml_value *toml_table_value(const struct toml_value *t, size_t i)
{
    assert(t->type == TOML_TABLE);
    if (i >= t->u.t.len)
        return NULL;
    return t->u.t.kv[i].val;
}

const struct toml_value *toml_table_get(const struct toml_value *t, const char *key)
{
    if (t == NULL || t->type != TOML_TABLE || key == NULL)
        return NULL;
    return table_find(t, key, strlen(key));
}

size_t toml_array_len(const struct toml_value *a)
{
    return a != NULL && a->type == TOML_ARRAY ? a->u.a.len : 0;
}

const struct toml_value *toml_array_at(const struct toml_value *a, size_t i)
{
    assert(a->type == TOML_ARRAY);
    if (i >= a->u.a.len)
        return NULL;
    return a->u.a.v[i];
}

const char *toml_string(const struct toml_value *v, size_t *len)
{
    assert(v->type == TOML_STRING);
    if (len != NULL)
        *len = v->u.s.len;
    return v->u.s.s;
}

int64_t toml_int(const struct toml_value *v)
{
    assert(v->type == TOML_INTEGER);
    return v->u.i;
}

double toml_float(const struct toml_value *v)
{
    assert(v->type == TOML_FLOAT);
    return v->u.f;
}

bool toml_bool(const struct toml_value *v)
{
    assert(v->type == TOML_BOOL);
    return v->u.b;
}

const char *toml_datetime(const struct toml_value *v)
{
    assert(v->type == TOML_DATETIME || v->type == TOML_DATETIME_LOCAL ||
           v->type == TOML_DATE_LOCAL || v->type == TOML_TIME_LOCAL);
    return v->u.s.s;
}
