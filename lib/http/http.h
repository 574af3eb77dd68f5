/*
 * http.h - HTTP/1.1 server on libevent evhttp, plain or TLS (OpenSSL).
 *
 * Threads: http_server_start() opens the listening socket once and starts
 * `threads` workers (default: one per core); each worker has its own
 * event_base and evhttp bound to that same socket, so the kernel spreads
 * accepts across them. A handler runs on the worker that accepted the
 * connection and must not block for long (no sleeps, no outbound calls
 * without a timeout).
 *
 * Limits: headers > max_header_bytes -> 400 by evhttp; bodies >
 * max_body_bytes -> 413 (the rest of the body is read and discarded first,
 * so the client sees the answer); a connection idle or slow for timeout_secs
 * is closed. Requests with ambiguous framing (two Content-Length headers,
 * Content-Length with Transfer-Encoding, a body on GET/HEAD/DELETE/OPTIONS)
 * get 400 and the connection is closed.
 *
 * Routes: patterns are literal segments and "{name}" parameters matching
 * one non-empty segment, e.g. "/api/admin/clients/{client_id}"; a trailing
 * '/' ("/ui/") matches only paths with that trailing slash. An exact
 * literal beats a parameter. Unknown path -> 404 JSON; known path with a
 * wrong method -> 405 with Allow. Segments are split before %-decoding
 * ("%2F" stays inside a parameter); %00, malformed escapes, non-UTF-8 paths
 * and bad query strings get 400 JSON before any handler runs. HEAD runs the
 * GET handler when no HEAD route exists (the body is dropped).
 */
#ifndef HTTP_HTTP_H
#define HTTP_HTTP_H

#include <jansson.h>
#include <stddef.h>

#include "util/err.h"

struct http_server; /* opaque */
struct http_req;    /* opaque; valid only during the handler call (see http_req_forward) */

enum http_method {
    HTTP_GET = 1 << 0,
    HTTP_POST = 1 << 1,
    HTTP_PUT = 1 << 2,
    HTTP_DELETE = 1 << 3,
    HTTP_HEAD = 1 << 4,
    HTTP_PATCH = 1 << 5,
    HTTP_OPTIONS = 1 << 6,
};

typedef void (*http_handler)(struct http_req *req, void *arg);

struct http_server_opts {
    const char *listen;    /* "host:port", "[v6]:port" or ":port" */
    const char *cert_file; /* both set: TLS (1.2 and 1.3 only) */
    const char *key_file;
    int threads;             /* 0: number of online CPUs */
    size_t max_header_bytes; /* 0: 16 KiB */
    size_t max_body_bytes;   /* 0: 1 MiB */
    int timeout_secs;        /* 0: 30 */
    const char *server_name; /* Server header on handler replies; NULL: none */
};

int http_server_new(struct http_server **out, const struct http_server_opts *o, struct ut_err *err);
/* Register before start. methods is a mask of enum http_method. */
int http_route(struct http_server *s, int methods, const char *pattern, http_handler h, void *arg,
               struct ut_err *err);
/* Binds and starts the workers; returns once listening. Fails with a message
 * naming the address (in use, permission, bad cert/key file...). Sets SIGPIPE
 * to SIG_IGN if it still has the default disposition (peers resetting
 * connections must not kill the process). */
int http_server_start(struct http_server *s, struct ut_err *err);
/* The port actually bound (useful with port 0 in tests). */
int http_server_port(const struct http_server *s);
/* Graceful: stop accepting, close idle keep-alive connections, let
 * in-flight requests finish (their replies carry "Connection: close"; up to
 * timeout_secs, then the rest is cut), join the workers. Safe to call once
 * from any thread except a worker (from a worker it logs an error and does
 * nothing); later calls are no-ops. */
void http_server_stop(struct http_server *s);
/* Stops first if needed. */
void http_server_free(struct http_server *s);

/* ---- request accessors ---- */
enum http_method http_req_method(const struct http_req *r);
const char *http_req_path(const struct http_req *r);                    /* decoded path, no query */
const char *http_req_param(const struct http_req *r, const char *name); /* route {name} */
const char *http_req_query(const struct http_req *r, const char *name); /* ?name=, decoded */
const char *http_req_header(const struct http_req *r, const char *name);
const char *http_req_peer(const struct http_req *r); /* remote address text */
int http_req_is_tls(const struct http_req *r);
/* The server whose listener accepted r (to tell listeners apart when one
 * handler is routed on several servers). */
const struct http_server *http_req_server(const struct http_req *r);
/* The body (not NUL-terminated; *len 0 when absent). Pointer valid during
 * the handler. */
const unsigned char *http_req_body(struct http_req *r, size_t *len);

/* ---- replies (exactly one per request) ----
 * A handler that returns without replying gets a 500 sent for it (unless
 * it handed the request to http_req_forward); a second reply is ignored
 * (both are logged). Content-Type and Content-Length are
 * always set, except for 204 and 304 which never carry a body. */
void http_add_header(struct http_req *r, const char *name, const char *value);
void http_reply(struct http_req *r, int status, const char *content_type, const void *body,
                size_t len);
/* Serializes j (compact) with Content-Type application/json; steals j. */
void http_reply_json(struct http_req *r, int status, json_t *j);
/* {"error": code, "error_description": desc} (RFC 6749 shape). */
void http_reply_error(struct http_req *r, int status, const char *code, const char *desc);

/* ---- forwarding a request to another server (proxy.c) ----
 *
 * http_req_forward() replays r to base_url asynchronously, on the worker's
 * own event loop (the handler returns at once; no thread blocks): the same
 * method, request target (raw path and query, appended to base_url's own
 * path), body and end-to-end headers, plus `headers`. The upstream's
 * status, headers (minus hop-by-hop ones; Content-Length recomputed,
 * except for HEAD which keeps the upstream's) and body then become r's
 * reply. Only plain http:// base URLs (internal listeners); https:// is
 * refused with -EPROTONOSUPPORT. Host names resolve asynchronously.
 *
 * Request headers not passed on: hop-by-hop ones (Connection and the names
 * it lists, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade,
 * Proxy-*), Host (set to the upstream's), Content-Length (recomputed),
 * Expect, every name in drop_headers, and every name that `headers` sets
 * (so a client cannot smuggle a value for a header the caller sets).
 *
 * Ownership: on 0 the reply is pending. The handler must return without
 * replying (replies through r are ignored and logged); it may still read r
 * until it returns. r's state lives on in a heap copy until the reply is
 * sent. On a negative return (bad URL, https, out of memory; err says
 * which) nothing happened and the handler still owns r and must reply.
 *
 * Failure after 0 (connection refused or reset, malformed or oversized
 * answer, the deadline passed): on_fail runs on the worker with that copy
 * of r and must reply through it (http_reply & co.; http_req_* accessors
 * work). status is the suggested one: 504 when timeout_ms passed, else
 * 502; why is a short text naming the upstream and the cause. Without
 * on_fail, or when it does not reply, r gets http_reply_error(status,
 * "bad_gateway" | "gateway_timeout", why).
 *
 * Shutdown: http_server_stop() lets pending forwards finish like any
 * in-flight request (up to timeout_secs); past that deadline they are
 * cancelled without a reply and their connections closed.
 */
typedef void (*http_forward_fail_fn)(struct http_req *r, int status, const char *why, void *arg);

struct http_forward_opts {
    const char *const *headers;      /* extra "Name: value" lines, NULL-terminated, or NULL */
    const char *const *drop_headers; /* request header names not to pass on, or NULL */
    int timeout_ms;                  /* the whole exchange; 0: 10000 */
    size_t max_response_bytes;       /* upstream body cap; 0: 16 MiB (over it: 502) */
    http_forward_fail_fn on_fail;    /* NULL: 502/504 JSON error */
    void *arg;
    /* After a 0 return: called once with arg when the forward is over
     * (answered, failed after on_fail, or cancelled at shutdown), so arg
     * may be per-request memory. Never called after a negative return. */
    void (*release)(void *arg);
};
int http_req_forward_opts(struct http_req *r, const char *base_url,
                          const struct http_forward_opts *o, struct ut_err *err);
/* The same with only extra headers and a timeout (0: 10000 ms). */
int http_req_forward(struct http_req *r, const char *base_url, const char *const *extra_headers,
                     int timeout_ms, struct ut_err *err);

/* ---- body helpers (also fuzzed) ---- */
/* Parses a JSON object body. Errors: not JSON, not an object, too deep
 * (more than HTTP_JSON_MAX_DEPTH nested arrays/objects), trailing data,
 * duplicate keys, "\u0000" in strings. The message names the line, column
 * and byte offset. Returns a new reference or NULL with err set. */
#define HTTP_JSON_MAX_DEPTH 32
json_t *http_parse_json(const void *body, size_t len, struct ut_err *err);

/* application/x-www-form-urlencoded: name=value&... with %XX and '+'.
 * Duplicate names are an error (RFC 6749 §3.1). At most HTTP_FORM_MAX_FIELDS.
 * Also errors: a malformed %-escape, a NUL byte (raw or %00), an empty name,
 * a decoded name over 128 bytes or value over 32 KiB, names or values that
 * are not valid UTF-8. Empty pairs ("a=1&&b=2") are skipped; "a" alone has
 * the value "". The query string of a request is parsed by the same rules. */
#define HTTP_FORM_MAX_FIELDS 64
struct http_form; /* opaque */
int http_form_parse(const void *body, size_t len, struct http_form **out, struct ut_err *err);
const char *http_form_get(const struct http_form *f, const char *name);
size_t http_form_len(const struct http_form *f);
const char *http_form_name(const struct http_form *f, size_t i);
const char *http_form_value(const struct http_form *f, size_t i);
void http_form_free(struct http_form *f);

/* ---- outbound client (libcurl) ---- */
struct http_client; /* opaque; one per thread (curl easy handle reuse) */
struct http_client_opts {
    const char *ca_file;       /* trust anchors; NULL: system store */
    int connect_timeout_ms;    /* 0: 5000 */
    int timeout_ms;            /* 0: 30000 */
    size_t max_response_bytes; /* 0: 16 MiB */
};
struct http_response {
    long status;
    unsigned char *body; /* malloc'd, NUL-terminated; free with http_response_clear */
    size_t body_len;
    char *content_type; /* malloc'd or NULL */
};
int http_client_new(struct http_client **out, const struct http_client_opts *o, struct ut_err *err);
void http_client_free(struct http_client *c);
/* headers: NULL-terminated array of "Name: value" lines, or NULL. Returns 0
 * when an HTTP response arrived (any status), negative on transport error.
 * *resp is overwritten on entry (not freed) and left empty on error. Redirects
 * are not followed; only http and https URLs are accepted. */
int http_client_do(struct http_client *c, const char *method, const char *url,
                   const char *const *headers, const void *body, size_t body_len,
                   struct http_response *resp, struct ut_err *err);
void http_response_clear(struct http_response *resp);
/* New connections the last http_client_do() opened: 0 when it reused a
 * kept-alive one (for tests and diagnostics). */
long http_client_last_connects(const struct http_client *c);

#endif
