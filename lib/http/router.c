/*
 * router.c - pattern routes ("/a/{id}/b"), 404 / 405 answers.
 *
 * Matching works on path segments that were split on '/' *before*
 * percent-decoding, so an encoded "%2F" never acts as a separator. Among the
 * patterns matching a path, the most specific wins: comparing left to right,
 * the first position where one has a literal and the other a parameter
 * decides. Routes with the same shape (literals in the same places) form one
 * resource; its method masks are merged for the Allow header, and a method
 * that none of them accepts gets 405 even if a less specific pattern would
 * accept it (so "DELETE /users/me" never falls through to "/users/{id}").
 */
#include "http/http_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALL_METHODS                                                                                \
    (HTTP_GET | HTTP_POST | HTTP_PUT | HTTP_DELETE | HTTP_HEAD | HTTP_PATCH | HTTP_OPTIONS)

static const struct {
    enum http_method m;
    const char *name;
} method_names[] = {
    {HTTP_GET, "GET"},     {HTTP_HEAD, "HEAD"},     {HTTP_POST, "POST"},       {HTTP_PUT, "PUT"},
    {HTTP_PATCH, "PATCH"}, {HTTP_DELETE, "DELETE"}, {HTTP_OPTIONS, "OPTIONS"},
};

const char *http_method_name(enum http_method m)
{
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (method_names[i].m == m)
            return method_names[i].name;
    }
    return "?";
}

void http_methods_str(int mask, char *out, size_t outsz)
{
    size_t o = 0;

    if (outsz == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        int n;

        if (!(mask & (int)method_names[i].m))
            continue;
        n = snprintf(out + o, outsz - o, "%s%s", o ? ", " : "", method_names[i].name);
        if (n < 0 || (size_t)n >= outsz - o)
            break;
        o += (size_t)n;
    }
}

static void route_clear(struct route *r)
{
    for (size_t i = 0; i < r->nseg; i++) {
        free(r->segs[i].lit);
        free(r->segs[i].name);
    }
    free(r->segs);
    free(r->pattern);
    memset(r, 0, sizeof(*r));
}

static int name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Literal segments are compared with decoded path segments, so they must be
 * plain text: no braces, no '%', nothing outside visible ASCII. */
static int lit_char_ok(char c)
{
    return c > 0x20 && c < 0x7f && c != '{' && c != '}' && c != '%' && c != '?' && c != '#';
}

static int parse_pattern(struct route *r, const char *pattern, struct ut_err *err)
{
    const char *p;
    int rc = 0;

    if (pattern == NULL || pattern[0] != '/') {
        ut_err_set(err, "route pattern \"%s\": must start with '/'", pattern ? pattern : "");
        return -EINVAL;
    }
    r->segs = calloc(HTTP_ROUTE_MAX_SEGS, sizeof(*r->segs));
    r->pattern = strdup(pattern);
    if (r->segs == NULL || r->pattern == NULL) {
        ut_err_set(err, "route pattern \"%s\": out of memory", pattern);
        return -ENOMEM;
    }
    p = pattern + 1;
    if (*p == '\0') /* "/" has no segments */
        return 0;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        struct route_seg *s;

        /* A trailing '/' ("/ui/") is a final empty literal segment, which
         * matches only a request path with the same trailing slash. */
        if (n == 0 && !(e == NULL && r->nseg > 0)) {
            ut_err_set(err, "route pattern \"%s\": empty segment", pattern);
            return -EINVAL;
        }
        if (r->nseg == HTTP_ROUTE_MAX_SEGS) {
            ut_err_set(err, "route pattern \"%s\": more than %d segments", pattern,
                       HTTP_ROUTE_MAX_SEGS);
            return -E2BIG;
        }
        s = &r->segs[r->nseg++];
        if (p[0] == '{') {
            if (n < 3 || p[n - 1] != '}' || n - 2 > HTTP_ROUTE_MAX_NAME) {
                ut_err_set(err, "route pattern \"%s\": bad parameter segment", pattern);
                return -EINVAL;
            }
            for (size_t i = 1; i < n - 1; i++) {
                if (!name_char_ok(p[i])) {
                    ut_err_set(err, "route pattern \"%s\": bad parameter name", pattern);
                    return -EINVAL;
                }
            }
            if ((s->name = strndup(p + 1, n - 2)) == NULL) {
                rc = -ENOMEM;
                break;
            }
            for (size_t i = 0; i + 1 < r->nseg; i++) {
                if (r->segs[i].name && strcmp(r->segs[i].name, s->name) == 0) {
                    ut_err_set(err, "route pattern \"%s\": parameter {%s} repeated", pattern,
                               s->name);
                    return -EINVAL;
                }
            }
        } else {
            for (size_t i = 0; i < n; i++) {
                if (!lit_char_ok(p[i])) {
                    ut_err_set(err, "route pattern \"%s\": bad character in literal segment",
                               pattern);
                    return -EINVAL;
                }
            }
            if ((s->lit = strndup(p, n)) == NULL) {
                rc = -ENOMEM;
                break;
            }
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    if (rc == -ENOMEM)
        ut_err_set(err, "route pattern \"%s\": out of memory", pattern);
    return rc;
}

/* Same shape: same length, literals equal and parameters in the same places. */
static int same_shape(const struct route *a, const struct route *b)
{
    if (a->nseg != b->nseg)
        return 0;
    for (size_t i = 0; i < a->nseg; i++) {
        if ((a->segs[i].lit == NULL) != (b->segs[i].lit == NULL))
            return 0;
        if (a->segs[i].lit && strcmp(a->segs[i].lit, b->segs[i].lit) != 0)
            return 0;
    }
    return 1;
}

int router_add(struct router *rt, int methods, const char *pattern, http_handler h, void *arg,
               struct ut_err *err)
{
    struct route r = {0};
    char ms[64];
    int rc;

    if (h == NULL || methods == 0 || (methods & ~ALL_METHODS)) {
        ut_err_set(err, "route \"%s\": bad method mask 0x%x or no handler", pattern ? pattern : "",
                   (unsigned)methods);
        return -EINVAL;
    }
    if ((rc = parse_pattern(&r, pattern, err)) < 0)
        goto out;
    r.methods = methods;
    r.h = h;
    r.arg = arg;
    for (size_t i = 0; i < rt->n; i++) {
        if (same_shape(&rt->v[i], &r) && (rt->v[i].methods & methods)) {
            http_methods_str(rt->v[i].methods & methods, ms, sizeof(ms));
            ut_err_set(err, "route %s %s: already registered as \"%s\"", ms, pattern,
                       rt->v[i].pattern);
            rc = -EEXIST;
            goto out;
        }
    }
    if (rt->n == rt->cap) {
        size_t ncap = rt->cap ? rt->cap * 2 : 16;
        struct route *nv = realloc(rt->v, ncap * sizeof(*nv));

        if (nv == NULL) {
            ut_err_set(err, "route \"%s\": out of memory", pattern);
            rc = -ENOMEM;
            goto out;
        }
        rt->v = nv;
        rt->cap = ncap;
    }
    rt->v[rt->n++] = r;
    return 0;
out:
    route_clear(&r);
    return rc;
}

void router_free(struct router *rt)
{
    for (size_t i = 0; i < rt->n; i++)
        route_clear(&rt->v[i]);
    free(rt->v);
    memset(rt, 0, sizeof(*rt));
}

static int route_matches(const struct route *rt, const struct http_req *r)
{
    if (rt->nseg != r->nseg)
        return 0;
    for (size_t i = 0; i < rt->nseg; i++) {
        if (rt->segs[i].lit) {
            if (strcmp(rt->segs[i].lit, r->segs[i]) != 0)
                return 0;
        } else if (r->segs[i][0] == '\0') { /* a parameter needs a non-empty segment */
            return 0;
        }
    }
    return 1;
}

/* >0 when a is more specific than b, <0 when less, 0 for the same shape. */
static int specificity(const struct route *a, const struct route *b)
{
    for (size_t i = 0; i < a->nseg; i++) {
        int la = a->segs[i].lit != NULL, lb = b->segs[i].lit != NULL;

        if (la != lb)
            return la - lb;
    }
    return 0;
}

void router_dispatch(const struct router *rt, struct http_req *r)
{
    const struct route *best = NULL, *run = NULL, *get = NULL;
    int mask = 0;
    char allow[96];

    for (size_t i = 0; i < rt->n; i++) {
        const struct route *c = &rt->v[i];
        int s;

        if (!route_matches(c, r))
            continue;
        s = best ? specificity(c, best) : 1;
        if (s > 0) {
            best = c;
            mask = 0;
            run = get = NULL;
        } else if (s < 0) {
            continue;
        }
        mask |= c->methods;
        if (c->methods & (int)r->method)
            run = c;
        if (c->methods & HTTP_GET)
            get = c;
    }
    if (best == NULL) {
        http_reply_error(r, 404, "not_found", "no such resource");
        return;
    }
    if (run == NULL && r->method == HTTP_HEAD && get != NULL)
        run = get; /* replies to HEAD never carry a body (see http_reply) */
    if (run == NULL) {
        if (mask & HTTP_GET)
            mask |= HTTP_HEAD;
        http_methods_str(mask, allow, sizeof(allow));
        http_add_header(r, "Allow", allow);
        http_reply_error(r, 405, "method_not_allowed", "method not allowed for this resource");
        return;
    }
    r->nparams = 0;
    for (size_t i = 0; i < run->nseg; i++) {
        if (run->segs[i].lit == NULL) {
            r->params[r->nparams].name = run->segs[i].name;
            r->params[r->nparams].value = r->segs[i];
            r->nparams++;
        }
    }
    run->h(r, run->arg);
}
