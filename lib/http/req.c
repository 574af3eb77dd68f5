/*
 * req.c - request accessors and replies.
 *
 * Every function here runs on the worker thread that owns the request, during
 * the handler call (or the router's own 400/404/405 answers).
 */
#include "http/http_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "util/log.h"

/* ---- request target ---- */

/* Skips "http://authority" or "https://authority" of an absolute-form
 * target (RFC 9112 §3.2.2); returns where the path (or query) starts. */
static const char *skip_absolute_form(const char *u)
{
    size_t n;

    if (strncasecmp(u, "http://", 7) == 0)
        n = 7;
    else if (strncasecmp(u, "https://", 8) == 0)
        n = 8;
    else
        return u;
    u += n;
    return u + strcspn(u, "/?#");
}

int req_prepare(struct http_req *r, struct ut_err *err)
{
    const char *uri = evhttp_request_get_uri(r->ev), *p, *q, *qend;
    size_t rawlen, bad = 0, o = 0;
    long n;
    int rc;

    if (uri == NULL) {
        ut_err_set(err, "missing request target");
        return -EINVAL;
    }
    /* After an authority p is at '/', '?', '#' or the end; "http://host" and
     * "http://host?x" get the path "/" (rawlen 0 below). */
    p = skip_absolute_form(uri);
    if (p == uri && *p != '/') {
        ut_err_set(err, "request target must be an absolute path");
        return -EINVAL;
    }
    rawlen = strcspn(p, "?#");
    q = p + rawlen;

    /* The decoded path and the segments are each at most rawlen bytes. */
    r->path = malloc(rawlen + 2);
    r->segbuf = malloc(rawlen + 1);
    if (r->path == NULL || r->segbuf == NULL)
        goto nomem;
    if (rawlen == 0) {
        strcpy(r->path, "/");
    } else {
        n = http_pct_decode(p, rawlen, 0, r->path, &bad);
        if (n < 0) {
            ut_err_set(err, "path: %s at offset %zu",
                       n == -EILSEQ ? "NUL byte" : "invalid percent-escape", bad);
            return -EINVAL;
        }
        if (!http_utf8_valid((unsigned char *)r->path, (size_t)n)) {
            ut_err_set(err, "path: not valid UTF-8 once decoded");
            return -EINVAL;
        }
        r->path[n] = '\0';
    }

    /* "/" is the root with no segments; otherwise every '/' starts one. */
    r->nseg = 0;
    if (rawlen > 1) {
        for (size_t i = 0; i < rawlen; i++)
            r->nseg += p[i] == '/';
    }
    if (r->nseg) {
        const char *s = p + 1;

        r->segs = calloc(r->nseg, sizeof(*r->segs));
        r->params = calloc(r->nseg, sizeof(*r->params));
        if (r->segs == NULL || r->params == NULL)
            goto nomem;
        for (size_t i = 0; i < r->nseg; i++) {
            const char *e = memchr(s, '/', (size_t)(q - s));
            size_t len = e ? (size_t)(e - s) : (size_t)(q - s);

            /* Already validated above as part of the whole path. */
            n = http_pct_decode(s, len, 0, r->segbuf + o, &bad);
            if (n < 0) {
                ut_err_set(err, "path: invalid segment");
                return -EINVAL;
            }
            r->segs[i] = r->segbuf + o;
            o += (size_t)n;
            r->segbuf[o++] = '\0';
            s = e ? e + 1 : q;
        }
    }

    qend = q;
    if (*q == '?')
        qend = q + 1 + strcspn(q + 1, "#");
    rc = http_form_parse_as("query", *q == '?' ? q + 1 : q, *q == '?' ? (size_t)(qend - q - 1) : 0,
                            &r->query, err);
    if (rc < 0)
        return rc == -ENOMEM ? rc : -EINVAL;
    return 0;
nomem:
    ut_err_set(err, "out of memory");
    return -ENOMEM;
}

void req_cleanup(struct http_req *r)
{
    if (r->handed_off) /* the deferred copy owns the memory now */
        return;
    free(r->path);
    free(r->segbuf);
    free(r->segs);
    free(r->params);
    http_form_free(r->query);
    r->path = r->segbuf = NULL;
    r->segs = NULL;
    r->params = NULL;
    r->query = NULL;
}

/* ---- accessors ---- */

enum http_method http_req_method(const struct http_req *r)
{
    return r->method;
}

const char *http_req_path(const struct http_req *r)
{
    return r->path ? r->path : "/";
}

const char *http_req_param(const struct http_req *r, const char *name)
{
    for (size_t i = 0; i < r->nparams; i++) {
        if (strcmp(r->params[i].name, name) == 0)
            return r->params[i].value;
    }
    return NULL;
}

const char *http_req_query(const struct http_req *r, const char *name)
{
    return http_form_get(r->query, name);
}

const char *http_req_header(const struct http_req *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const char *http_req_peer(const struct http_req *r)
{
    return r->peer;
}

int http_req_is_tls(const struct http_req *r)
{
    return r->is_tls;
}

const struct http_server *http_req_server(const struct http_req *r)
{
    return r->srv;
}

const unsigned char *http_req_body(struct http_req *r, size_t *len)
{
    struct evbuffer *b = evhttp_request_get_input_buffer(r->ev);
    size_t n = b ? evbuffer_get_length(b) : 0;
    const unsigned char *p = NULL;

    /* evhttp caps the body at max_body_bytes before we ever get here. */
    if (n)
        p = evbuffer_pullup(b, -1);
    if (p == NULL) {
        n = 0;
        p = (const unsigned char *)"";
    }
    *len = n;
    return p;
}

/* ---- replies ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 406:
        return "Not Acceptable";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Status";
    }
}

/* Largest reply made contiguous before a TLS write (one TLS record). */
#define COALESCE_MAX (16 * 1024)

/*
 * evhttp leaves the status line + headers and the body in separate evbuffer
 * chains, and bufferevent_openssl calls SSL_write() once per chain: two TLS
 * records and two write(2) calls per small reply. The bytes are only queued
 * at this point (the write happens on the next loop turn), so joining them
 * now halves that. Plain sockets use writev() and need nothing.
 */
static void coalesce_output(struct http_req *r)
{
    struct evhttp_connection *evcon;
    struct evbuffer *out;

    if (!r->is_tls || (evcon = evhttp_request_get_connection(r->ev)) == NULL)
        return;
    out = bufferevent_get_output(evhttp_connection_get_bufferevent(evcon));
    if (evbuffer_get_length(out) <= COALESCE_MAX)
        evbuffer_pullup(out, -1);
}

static void remove_all(struct evkeyvalq *h, const char *name)
{
    while (evhttp_remove_header(h, name) == 0)
        ;
}

void http_add_header(struct http_req *r, const char *name, const char *value)
{
    if (r->replied || r->handed_off) {
        ut_log(UT_LOG_ERROR, "http", "header added after the reply; ignored",
               UT_LF_S("header", name));
        return;
    }
    /* evhttp refuses names and values with CR/LF (no header injection). */
    if (evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value) != 0)
        ut_log(UT_LOG_ERROR, "http", "invalid response header dropped", UT_LF_S("header", name));
}

void http_reply(struct http_req *r, int status, const char *content_type, const void *body,
                size_t len)
{
    struct evkeyvalq *h;
    struct evbuffer *out;
    char clen[32];
    int no_body;

    if (r->replied || r->handed_off) {
        ut_log(UT_LOG_ERROR, "http",
               r->handed_off ? "reply to a forwarded request ignored"
                             : "second reply to one request ignored",
               UT_LF_S("path", http_req_path(r)), UT_LF_I("status", status));
        return;
    }
    if (status < 200 || status > 599) {
        ut_log(UT_LOG_ERROR, "http", "handler used an invalid status", UT_LF_I("status", status));
        status = 500;
        content_type = "application/json";
        body = "{\"error\":\"server_error\"}";
        len = strlen(body);
    }
    r->replied = 1;
    if (body == NULL)
        len = 0;
    h = evhttp_request_get_output_headers(r->ev);
    remove_all(h, "Content-Type");
    remove_all(h, "Content-Length");
    remove_all(h, "Transfer-Encoding");
    /* RFC 9110 §8.6: no Content-Length (nor content) in 204 and 304. */
    no_body = status == 204 || status == 304;
    if (!no_body) {
        snprintf(clen, sizeof(clen), "%zu", len);
        evhttp_add_header(h, "Content-Type",
                          content_type ? content_type : "application/octet-stream");
        evhttp_add_header(h, "Content-Length", clen);
    }
    if (r->server_name) {
        remove_all(h, "Server");
        evhttp_add_header(h, "Server", r->server_name);
    }
    if (r->closing) { /* draining for shutdown: no more requests on this connection */
        remove_all(h, "Connection");
        evhttp_add_header(h, "Connection", "close");
    }
    /* HEAD gets the headers a GET would get, Content-Length included. */
    out = evhttp_request_get_output_buffer(r->ev);
    if (!no_body && r->method != HTTP_HEAD && len > 0 && evbuffer_add(out, body, len) != 0) {
        ut_log(UT_LOG_ERROR, "http", "out of memory building a reply");
        remove_all(h, "Content-Length");
        evhttp_add_header(h, "Content-Length", "0");
        status = 500;
    }
    /* A deferred reply may find its client gone: evhttp then detached the
     * request from the connection, and sending frees it. */
    if (evhttp_request_get_connection(r->ev) == NULL) {
        evhttp_send_reply(r->ev, status, reason_phrase(status), NULL);
        return;
    }
    evhttp_send_reply(r->ev, status, reason_phrase(status), NULL);
    coalesce_output(r);
}

void http_reply_json(struct http_req *r, int status, json_t *j)
{
    char *s;

    if (j == NULL) {
        ut_log(UT_LOG_ERROR, "http", "handler replied with a NULL JSON value",
               UT_LF_S("path", http_req_path(r)));
        http_reply_error(r, 500, "server_error", NULL);
        return;
    }
    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s == NULL) {
        ut_log(UT_LOG_ERROR, "http", "cannot serialize JSON reply",
               UT_LF_S("path", http_req_path(r)));
        http_reply_error(r, 500, "server_error", NULL);
        return;
    }
    http_reply(r, status, "application/json", s, strlen(s));
    free(s);
}

void http_reply_error(struct http_req *r, int status, const char *code, const char *desc)
{
    char c[128], d[UT_ERR_MAX];
    json_t *j;
    char *s;

    http_sanitize(code ? code : "server_error", strlen(code ? code : "server_error"), c, sizeof(c));
    j = json_object();
    if (j && json_object_set_new(j, "error", json_string(c)) == 0 && desc) {
        http_sanitize(desc, strlen(desc), d, sizeof(d));
        json_object_set_new(j, "error_description", json_string(d));
    }
    s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s == NULL) {
        static const char fallback[] = "{\"error\":\"server_error\"}";

        http_reply(r, status, "application/json", fallback, sizeof(fallback) - 1);
        return;
    }
    http_reply(r, status, "application/json", s, strlen(s));
    free(s);
}
