/*
 * http_int.h - private glue between server.c, router.c, req.c and body.c.
 *
 * Nothing here is part of the public API; the layout of struct http_req may
 * change freely.
 */
#ifndef HTTP_HTTP_INT_H
#define HTTP_HTTP_INT_H

#include <stddef.h>

#include "http/http.h"

struct evhttp_request;

/* Hard limits of the router (checked at registration). */
#define HTTP_ROUTE_MAX_SEGS 32
#define HTTP_ROUTE_MAX_NAME 64

/* One segment of a route pattern: a literal, or a parameter when lit is
 * NULL (then name is the parameter name without braces). */
struct route_seg {
    char *lit;
    char *name;
};

struct route {
    int methods; /* mask of enum http_method */
    http_handler h;
    void *arg;
    char *pattern; /* as registered, for messages */
    size_t nseg;
    struct route_seg *segs;
};

/* Registration happens before the workers start; afterwards the table is
 * read-only and shared by all worker threads without locking. */
struct router {
    struct route *v;
    size_t n, cap;
};

int router_add(struct router *rt, int methods, const char *pattern, http_handler h, void *arg,
               struct ut_err *err);
/* Matches r->segs against the table, fills r->params and runs the handler, or
 * replies 404/405 itself. */
void router_dispatch(const struct router *rt, struct http_req *r);
void router_free(struct router *rt);

struct http_param {
    const char *name;  /* points into the route pattern */
    const char *value; /* points into http_req.segbuf */
};

/*
 * Per-request state. Lives on the dispatching worker's stack for exactly the
 * duration of the handler call; every pointer handed to the handler dies
 * with it.
 */
struct http_req {
    struct evhttp_request *ev;
    enum http_method method;
    int is_tls;
    int closing;             /* server is draining: reply with Connection: close */
    const char *server_name; /* NULL: no Server header */
    char *path;              /* decoded path, malloc'd */
    char *segbuf;            /* decoded segments, NUL separated, malloc'd */
    const char **segs;       /* nseg pointers into segbuf, malloc'd */
    size_t nseg;
    struct http_param *params; /* up to nseg entries, malloc'd */
    size_t nparams;
    struct http_form *query; /* parsed query string, never NULL after prepare */
    char peer[64];
    int replied;
};

/* Parses the request target of r->ev: decodes the path into segments and
 * parses the query. On failure returns -EINVAL with err naming the problem
 * (the caller answers 400). */
int req_prepare(struct http_req *r, struct ut_err *err);
void req_cleanup(struct http_req *r);
/* Allow header value for a method mask ("GET, HEAD, POST"). */
void http_methods_str(int mask, char *out, size_t outsz);
const char *http_method_name(enum http_method m);

/*
 * Percent-decodes in[0..len) into out (which must hold len bytes; the result
 * is never longer than the input and is not NUL-terminated). '+' becomes a
 * space when plus_is_space. Returns the decoded length, or -EINVAL for a
 * malformed escape and -EILSEQ for a NUL byte (raw or %00); *bad is then the
 * offset of the offending byte.
 */
long http_pct_decode(const char *in, size_t len, int plus_is_space, char *out, size_t *bad);

/* Copies s[0..len) into out as printable ASCII for error messages and
 * RFC 6749 error_description values: '"' becomes '\'', '\\', controls and
 * non-ASCII bytes become '?'; truncated with "..." to fit outsz. */
void http_sanitize(const char *s, size_t len, char *out, size_t outsz);
/* 1 when s[0..len) is strict UTF-8 (no overlongs, surrogates, > U+10FFFF). */
int http_utf8_valid(const unsigned char *s, size_t len);
/* http_form_parse with messages starting "<label>: " instead of "form: ". */
int http_form_parse_as(const char *label, const void *body, size_t len, struct http_form **out,
                       struct ut_err *err);

#endif
