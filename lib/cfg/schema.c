#include "cfg/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mem.h"

/* A config file larger than this is certainly a mistake. */
#define CFG_MAX_FILE (1u << 20)

/* ---- small helpers ---- */

static char **slot_str(void *obj, size_t off)
{
    return (char **)((char *)obj + off);
}

static void set_str(void *obj, size_t off, const char *v)
{
    char **p = slot_str(obj, off);

    free(*p);
    *p = v ? ut_xstrdup(v) : NULL;
}

static void free_strv(struct cfg_strv *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    v->v = NULL;
    v->n = 0;
}

static void free_strmap(struct cfg_strmap *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->keys[i]);
        if (m->vals[i])
            ut_memzero(m->vals[i], strlen(m->vals[i]));
        free(m->vals[i]);
    }
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof(*m));
}

/* Text for "found ...": the type and, for scalars, a short rendering. */
static void describe(const struct toml_value *v, char *out, size_t n)
{
    enum toml_type t = toml_type(v);

    switch (t) {
    case TOML_STRING: {
        const char *s = toml_string(v, NULL);
        snprintf(out, n, "string \"%.40s%s\"", s, strlen(s) > 40 ? "..." : "");
        break;
    }
    case TOML_INTEGER:
        snprintf(out, n, "integer %" PRId64, toml_int(v));
        break;
    case TOML_FLOAT:
        snprintf(out, n, "float %g", toml_float(v));
        break;
    case TOML_BOOL:
        snprintf(out, n, "boolean %s", toml_bool(v) ? "true" : "false");
        break;
    default:
        snprintf(out, n, "%s", toml_type_name(t));
        break;
    }
}

static int has_nul(const struct toml_value *v)
{
    size_t len;
    const char *s = toml_string(v, &len);

    return strlen(s) != len;
}

/* Resolves p against dir unless absolute. Returns a new string. */
static char *resolve_path(const char *dir, const char *p)
{
    struct ut_buf b;

    if (p[0] == '/' || dir == NULL)
        return ut_xstrdup(p);
    ut_buf_init(&b, PATH_MAX * 2);
    if (ut_buf_printf(&b, "%s/%s", dir, p) < 0) {
        ut_buf_free(&b);
        return ut_xstrdup(p);
    }
    return ut_buf_steal(&b, NULL);
}

int cfg_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon, *h;
    size_t hl;
    char *end;
    long p;

    if (s == NULL || *s == '\0')
        return -EINVAL;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (rb == NULL || rb[1] != ':')
            return -EINVAL;
        h = s + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
        if (hl == 0)
            return -EINVAL;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        h = s;
        hl = (size_t)(colon - s);
        if (memchr(h, ':', hl) != NULL) /* bare IPv6 needs brackets */
            return -EINVAL;
    }
    if (hl >= hostlen)
        return -EINVAL;
    for (size_t i = 0; i < hl; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c == '/' || c == '@' || c >= 0x7f)
            return -EINVAL;
    }
    if (colon[1] == '\0')
        return -EINVAL;
    for (const char *q = colon + 1; *q; q++)
        if (*q < '0' || *q > '9')
            return -EINVAL;
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno || *end || p < 0 || p > 65535)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

/* http(s)://host[:port][/path] with no whitespace or control bytes. */
static int check_url(const char *s)
{
    const char *rest;

    if (strncmp(s, "https://", 8) == 0)
        rest = s + 8;
    else if (strncmp(s, "http://", 7) == 0)
        rest = s + 7;
    else
        return -EINVAL;
    if (*rest == '\0' || *rest == '/' || *rest == ':')
        return -EINVAL;
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            return -EINVAL;
    return 0;
}

static int enum_has(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;

    while (*p) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && memcmp(p, v, l) == 0)
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

struct ctx {
    const struct cfg_schema *s;
    const char *file;
    const char *dir;
    unsigned flags;
    void *obj;
    struct cfg_report *rep;
};

static void full_name(const struct cfg_key *k, char *out, size_t n)
{
    if (k->section[0])
        snprintf(out, n, "%s.%s", k->section, k->name);
    else
        snprintf(out, n, "%s", k->name);
}

static void type_error(struct ctx *c, const struct cfg_key *k, const struct toml_value *v,
                       const char *expected)
{
    char name[128], found[96];

    full_name(k, name, sizeof(name));
    describe(v, found, sizeof(found));
    cfg_report_error(c->rep, c->file, toml_line(v), "key '%s': expected %s, found %s", name,
                     expected, found);
}

static int bind_strv(struct ctx *c, const struct cfg_key *k, const struct toml_value *v, int urls)
{
    struct cfg_strv *sv = (struct cfg_strv *)((char *)c->obj + k->off);
    size_t n;

    if (toml_type(v) != TOML_ARRAY) {
        type_error(c, k, v, urls ? "array of http(s) URLs" : "array of strings");
        return -EINVAL;
    }
    n = toml_array_len(v);
    for (size_t i = 0; i < n; i++) {
        const struct toml_value *e = toml_array_at(v, i);
        if (toml_type(e) != TOML_STRING || has_nul(e) ||
            (urls && check_url(toml_string(e, NULL)) < 0)) {
            char want[64];
            snprintf(want, sizeof(want), "%s (element %zu)",
                     urls ? "an http:// or https:// URL" : "a string", i + 1);
            type_error(c, k, e, want);
            return -EINVAL;
        }
    }
    free_strv(sv);
    sv->v = ut_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        sv->v[i] = ut_xstrdup(toml_string(toml_array_at(v, i), NULL));
    sv->n = n;
    return 0;
}

static int bind_strmap(struct ctx *c, const struct cfg_key *k, const struct toml_value *v)
{
    struct cfg_strmap *m = (struct cfg_strmap *)((char *)c->obj + k->off);
    size_t n;

    if (toml_type(v) != TOML_TABLE) {
        type_error(c, k, v, "table of strings");
        return -EINVAL;
    }
    n = toml_table_len(v);
    for (size_t i = 0; i < n; i++) {
        const struct toml_value *e = toml_table_value(v, i);
        if (toml_type(e) != TOML_STRING || has_nul(e)) {
            char want[160];
            snprintf(want, sizeof(want), "a string for '%.100s'", toml_table_key(v, i, NULL));
            type_error(c, k, e, want);
            return -EINVAL;
        }
    }
    free_strmap(m);
    m->keys = ut_xcalloc(n ? n : 1, sizeof(char *));
    m->vals = ut_xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        m->keys[i] = ut_xstrdup(toml_table_key(v, i, NULL));
        m->vals[i] = ut_xstrdup(toml_string(toml_table_value(v, i), NULL));
    }
    m->n = n;
    return 0;
}

static int bind_dburl(struct ctx *c, const struct cfg_key *k, const struct toml_value *v,
                      const char *s)
{
    if (strcmp(s, "sqlite::memory:") == 0 || strncmp(s, "postgresql://", 13) == 0 ||
        strncmp(s, "postgres://", 11) == 0) {
        set_str(c->obj, k->off, s);
        return 0;
    }
    if (strncmp(s, "sqlite://", 9) == 0 && s[9] != '\0') {
        char *p = resolve_path(c->dir, s + 9);
        struct ut_buf b;
        ut_buf_init(&b, PATH_MAX * 2 + 16);
        ut_buf_printf(&b, "sqlite://%s", p);
        free(p);
        free(*slot_str(c->obj, k->off));
        *slot_str(c->obj, k->off) = ut_buf_steal(&b, NULL);
        return 0;
    }
    type_error(c, k, v, "a database URL (sqlite:///path, sqlite::memory: or postgresql://...)");
    return -EINVAL;
}

static int bind(struct ctx *c, const struct cfg_key *k, const struct toml_value *v)
{
    enum toml_type t = toml_type(v);
    char want[160];
    const char *s;

    switch (k->kind) {
    case CFG_K_BOOL:
        if (t != TOML_BOOL) {
            type_error(c, k, v, "boolean (true or false)");
            return -EINVAL;
        }
        *(bool *)((char *)c->obj + k->off) = toml_bool(v);
        return 0;
    case CFG_K_INT:
        if (t != TOML_INTEGER || toml_int(v) < k->min || toml_int(v) > k->max) {
            snprintf(want, sizeof(want), "integer in %" PRId64 "..%" PRId64, k->min, k->max);
            type_error(c, k, v, want);
            return -EINVAL;
        }
        *(int64_t *)((char *)c->obj + k->off) = toml_int(v);
        return 0;
    case CFG_K_STRV:
        return bind_strv(c, k, v, 0);
    case CFG_K_URLV:
        return bind_strv(c, k, v, 1);
    case CFG_K_STRMAP:
        return bind_strmap(c, k, v);
    default:
        break;
    }

    /* The remaining kinds are strings. */
    if (t != TOML_STRING || has_nul(v)) {
        type_error(c, k, v, "string");
        return -EINVAL;
    }
    s = toml_string(v, NULL);
    switch (k->kind) {
    case CFG_K_STR:
        if (k->max > 0 && (strlen(s) < (size_t)k->min || strlen(s) > (size_t)k->max)) {
            snprintf(want, sizeof(want), "string of %" PRId64 "..%" PRId64 " bytes", k->min,
                     k->max);
            type_error(c, k, v, want);
            return -EINVAL;
        }
        set_str(c->obj, k->off, s);
        return 0;
    case CFG_K_TOKEN: {
        size_t n = strlen(s);
        int ok = n >= (size_t)k->min && n <= (size_t)k->max;
        for (size_t i = 0; ok && i < n; i++)
            ok = (unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f;
        if (!ok) {
            snprintf(want, sizeof(want),
                     "%" PRId64 "..%" PRId64 " printable ASCII characters without spaces", k->min,
                     k->max);
            type_error(c, k, v, want);
            return -EINVAL;
        }
        set_str(c->obj, k->off, s);
        return 0;
    }
    case CFG_K_PATH: {
        if (*s == '\0') {
            type_error(c, k, v, "a non-empty path");
            return -EINVAL;
        }
        char *p = resolve_path(c->dir, s);
        free(*slot_str(c->obj, k->off));
        *slot_str(c->obj, k->off) = p;
        return 0;
    }
    case CFG_K_ENUM:
        if (!enum_has(k->choices, s)) {
            snprintf(want, sizeof(want), "one of %s", k->choices);
            type_error(c, k, v, want);
            return -EINVAL;
        }
        set_str(c->obj, k->off, s);
        return 0;
    case CFG_K_HOSTPORT: {
        char host[256];
        int port;
        if (cfg_split_hostport(s, host, sizeof(host), &port) < 0) {
            type_error(c, k, v, "\"host:port\" (port 0..65535; IPv6 as \"[addr]:port\")");
            return -EINVAL;
        }
        set_str(c->obj, k->off, s);
        return 0;
    }
    case CFG_K_URL:
        if (check_url(s) < 0) {
            type_error(c, k, v, "an http:// or https:// URL");
            return -EINVAL;
        }
        set_str(c->obj, k->off, s);
        return 0;
    case CFG_K_DBURL:
        return bind_dburl(c, k, v, s);
    default:
        return -EINVAL;
    }
}

static void apply_defaults(struct ctx *c)
{
    for (size_t i = 0; i < c->s->n_keys; i++) {
        const struct cfg_key *k = &c->s->keys[i];
        switch (k->kind) {
        case CFG_K_BOOL:
            *(bool *)((char *)c->obj + k->off) = k->def_i != 0;
            break;
        case CFG_K_INT:
            *(int64_t *)((char *)c->obj + k->off) = k->def_i;
            break;
        case CFG_K_STRV:
        case CFG_K_URLV:
        case CFG_K_STRMAP:
            break;
        case CFG_K_PATH:
            if (k->def_s)
                *slot_str(c->obj, k->off) = resolve_path(c->dir, k->def_s);
            break;
        case CFG_K_DBURL:
            if (k->def_s) {
                if (strncmp(k->def_s, "sqlite://", 9) == 0) {
                    char *p = resolve_path(c->dir, k->def_s + 9);
                    struct ut_buf b;
                    ut_buf_init(&b, PATH_MAX * 2 + 16);
                    ut_buf_printf(&b, "sqlite://%s", p);
                    free(p);
                    *slot_str(c->obj, k->off) = ut_buf_steal(&b, NULL);
                } else {
                    set_str(c->obj, k->off, k->def_s);
                }
            }
            break;
        default:
            if (k->def_s)
                set_str(c->obj, k->off, k->def_s);
            break;
        }
    }
}

static const struct cfg_key *find_key(const struct cfg_schema *s, const char *sec, const char *name)
{
    for (size_t i = 0; i < s->n_keys; i++)
        if (strcmp(s->keys[i].section, sec) == 0 && strcmp(s->keys[i].name, name) == 0)
            return &s->keys[i];
    return NULL;
}

static const struct cfg_section *find_section(const struct cfg_schema *s, const char *name)
{
    for (size_t i = 0; i < s->n_sections; i++)
        if (s->sections[i].name[0] && strcmp(s->sections[i].name, name) == 0)
            return &s->sections[i];
    return NULL;
}

/* Best suggestion among the keys of sec (and, at top level, section names). */
static const char *suggest(const struct cfg_schema *s, const char *sec, const char *name)
{
    const char *best = NULL;
    int bestd = 255;
    int limit = (int)strlen(name) / 3 + 1;

    if (limit < 2)
        limit = 2;
    for (size_t i = 0; i < s->n_keys; i++) {
        if (strcmp(s->keys[i].section, sec) != 0)
            continue;
        int d = cfg_edit_distance(name, s->keys[i].name);
        if (d < bestd) {
            bestd = d;
            best = s->keys[i].name;
        }
    }
    if (sec[0] == '\0') {
        for (size_t i = 0; i < s->n_sections; i++) {
            int d = cfg_edit_distance(name, s->sections[i].name);
            if (s->sections[i].name[0] && d < bestd) {
                bestd = d;
                best = s->sections[i].name;
            }
        }
    }
    return bestd <= limit ? best : NULL;
}

static void unknown(struct ctx *c, const char *sec, const char *name, const struct toml_value *v,
                    int is_section)
{
    const char *sug = suggest(c->s, sec, name);
    char full[256];
    char hint[160] = "";

    if (sec[0])
        snprintf(full, sizeof(full), "%s.%s", sec, name);
    else
        snprintf(full, sizeof(full), "%s", name);
    if (sug)
        snprintf(hint, sizeof(hint), " (did you mean '%s'?)", sug);
    if (c->flags & CFG_ALLOW_UNKNOWN)
        cfg_report_warn(c->rep, c->file, toml_line(v), "unknown %s '%s'%s, ignored",
                        is_section ? "section" : "key", full, hint);
    else
        cfg_report_error(c->rep, c->file, toml_line(v), "unknown %s '%s'%s",
                         is_section ? "section" : "key", full, hint);
}

static void walk_section(struct ctx *c, const struct cfg_section *sec, const struct toml_value *t)
{
    if (sec->present_off != CFG_NO_PRESENT)
        *(bool *)((char *)c->obj + sec->present_off) = true;
    for (size_t i = 0; i < toml_table_len(t); i++) {
        const char *name = toml_table_key(t, i, NULL);
        const struct toml_value *v = toml_table_value(t, i);
        const struct cfg_key *k = find_key(c->s, sec->name, name);
        if (k == NULL)
            unknown(c, sec->name, name, v, 0);
        else
            bind(c, k, v);
    }
}

static int read_file(const char *path, char **data, size_t *len, struct cfg_report *rep)
{
    FILE *f = fopen(path, "rb");
    struct ut_buf b;
    char chunk[8192];
    size_t n;
    int rc = 0;

    ut_buf_init(&b, CFG_MAX_FILE);
    if (f == NULL) {
        int e = errno;
        cfg_report_error(rep, path, 0, "cannot open config file: %s", strerror(e));
        return -e;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (ut_buf_append(&b, chunk, n) < 0) {
            cfg_report_error(rep, path, 0, "config file larger than %u bytes", CFG_MAX_FILE);
            rc = -E2BIG;
            goto out;
        }
    }
    if (ferror(f)) {
        cfg_report_error(rep, path, 0, "cannot read config file: %s", strerror(errno));
        rc = -EIO;
        goto out;
    }
    *data = ut_buf_steal(&b, len);
out:
    fclose(f);
    ut_buf_free(&b);
    return rc;
}

int cfg_schema_load(const struct cfg_schema *s, const char *path, unsigned flags, void *obj,
                    struct cfg_report *rep)
{
    struct toml_value *root = NULL;
    struct ut_err err = {{0}};
    struct ctx c;
    char *data = NULL, *abs = NULL, *dir = NULL, *slash;
    size_t len = 0;
    int rc;

    if ((rc = read_file(path, &data, &len, rep)) < 0)
        goto out;
    abs = realpath(path, NULL);
    if (abs == NULL)
        abs = ut_xstrdup(path);
    dir = ut_xstrdup(abs);
    slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");

    *slot_str(obj, 0) = ut_xstrdup(abs);
    c = (struct ctx){.s = s, .file = path, .dir = dir, .flags = flags, .obj = obj, .rep = rep};
    apply_defaults(&c);

    if ((rc = toml_parse(data, len, &root, &err)) < 0) {
        cfg_report_error(rep, path, 0, "invalid TOML: %s", err.msg);
        goto out;
    }
    for (size_t i = 0; i < toml_table_len(root); i++) {
        const char *name = toml_table_key(root, i, NULL);
        const struct toml_value *v = toml_table_value(root, i);
        const struct cfg_section *sec = find_section(s, name);
        const struct cfg_key *k = find_key(s, "", name);

        if (k != NULL) {
            bind(&c, k, v);
        } else if (sec != NULL) {
            if (toml_type(v) != TOML_TABLE) {
                char found[96];
                describe(v, found, sizeof(found));
                cfg_report_error(rep, path, toml_line(v), "'%s' must be a section ([%s]), found %s",
                                 name, name, found);
                continue;
            }
            walk_section(&c, sec, v);
        } else {
            unknown(&c, "", name, v, toml_type(v) == TOML_TABLE);
        }
    }
    rc = rep && rep->n_errors ? -EINVAL : 0;
out:
    toml_free(root);
    if (data)
        ut_memzero(data, len); /* configs may hold EAB keys */
    free(data);
    free(abs);
    free(dir);
    return rc;
}

void cfg_schema_free(const struct cfg_schema *s, void *obj)
{
    if (obj == NULL)
        return;
    free(*slot_str(obj, 0));
    for (size_t i = 0; i < s->n_keys; i++) {
        const struct cfg_key *k = &s->keys[i];
        switch (k->kind) {
        case CFG_K_BOOL:
        case CFG_K_INT:
            break;
        case CFG_K_STRV:
        case CFG_K_URLV:
            free_strv((struct cfg_strv *)((char *)obj + k->off));
            break;
        case CFG_K_STRMAP:
            free_strmap((struct cfg_strmap *)((char *)obj + k->off));
            break;
        default:
            free(*slot_str(obj, k->off));
            break;
        }
    }
}
