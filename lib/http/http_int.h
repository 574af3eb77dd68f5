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
struct event_base;
struct evdns_base;
struct worker; /* server.c: one event loop thread */

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
 * with it. Exception: a deferred reply (proxy.c) moves the state into a heap
 * copy that lives until the reply is sent; the stack copy is then marked
 * handed_off (it still reads the same memory until the handler returns, but
 * replies through it are ignored and req_cleanup leaves the memory alone).
 */
struct http_req {
    struct evhttp_request *ev;
    struct http_server *srv; /* the server that accepted it */
    struct worker *w;        /* the worker running it */
    int handed_off;          /* ownership moved to a deferred reply */
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
/* Frees what req_prepare allocated (nothing when handed_off). */
void req_cleanup(struct http_req *r);

/*
 * Deferred replies (server.c keeps the list, proxy.c makes them). A request
 * whose reply is sent on a later loop turn registers here so that a worker
 * freed with the reply still pending (stop deadline passed, loop broken)
 * can cancel it: cancel() runs on the stopping thread after the worker's
 * thread was joined and before the worker's evhttp and event_base are
 * freed; it must release its own libevent objects and memory, and must not
 * reply (the inbound connection is about to be closed).
 */
struct http_deferred {
    struct http_deferred *prev, *next;
    void (*cancel)(struct http_deferred *d);
};
void http_worker_defer_(struct worker *w, struct http_deferred *d);
void http_worker_undefer_(struct worker *w, struct http_deferred *d);
struct event_base *http_worker_base_(struct worker *w);
/* The worker's asynchronous resolver, made on first use; NULL when it
 * cannot be made (the caller then resolves synchronously). */
struct evdns_base *http_worker_dns_(struct worker *w);
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
