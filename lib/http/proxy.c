/*
 * proxy.c - http_req_forward(): a request replayed to another server on the
 * worker's own event loop, the answer relayed as its reply (see http.h).
 *
 * Lifetime: a struct fwd owns a heap copy of the http_req (the handler's
 * stack copy is marked handed_off), the outbound evhttp_connection, one
 * event (the deadline, also activated by hand to finish) and the upstream's
 * body. Everything runs on the worker thread that accepted the request,
 * except fwd_cancel(), which server.c calls after joining that thread.
 *
 * libevent frees the outbound request right after its callback, and may run
 * that callback from inside evhttp_make_request() (a connect refused at
 * once); a connection must not be freed from inside its own request
 * callback either. So on_response() only copies what it needs and
 * activates the event; fwd_finish() replies and frees on a later loop turn.
 */
#include "http/http_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>

#include "util/log.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_BODY   (16u * 1024 * 1024)
#define MAX_RESP_HEADERS   (64 * 1024) /* upstream status line + headers */
#define MAX_EXTRA          16          /* entries of opts.headers */
#define MAX_NAME           64          /* a header name in opts.headers */
#define TARGET_MAX         8192        /* base path + request target */

enum fwd_state { FWD_PENDING, FWD_ANSWERED, FWD_FAILED, FWD_TIMEDOUT };

struct fwd {
    struct http_deferred d; /* first member: server.c hands it back to fwd_cancel */
    struct http_req req;    /* the heap copy; req.ev is the inbound request */
    struct evhttp_connection *evcon;
    struct event *ev; /* deadline; activated by hand when the answer is in */
    struct evbuffer *body;
    enum fwd_state state;
    int status;
    char reason[64];
    int have_err;
    enum evhttp_request_error err;
    size_t max_body;
    http_forward_fail_fn on_fail;
    void *arg;
    void (*release)(void *arg); /* set once the forward is under way */
    char upstream[320];         /* "http://host:port" for messages */
};

/* Never passed on in either direction (RFC 9110 §7.6.1), besides the names
 * a Connection header lists. */
static const char *const hop_by_hop[] = {
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    NULL,
};

static int in_list(const char *name, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++) {
        if (strcasecmp(name, list[i]) == 0)
            return 1;
    }
    return 0;
}

/* 1 when a Connection header of h lists name among its tokens. */
static int named_by_connection(struct evkeyvalq *h, const char *name)
{
    size_t nl = strlen(name);

    for (struct evkeyval *kv = h->tqh_first; kv; kv = kv->next.tqe_next) {
        const char *p = kv->value;

        if (strcasecmp(kv->key, "Connection") != 0)
            continue;
        while (*p) {
            size_t n;

            p += strspn(p, " \t,");
            n = strcspn(p, " \t,");
            if (n == nl && strncasecmp(p, name, n) == 0)
                return 1;
            p += n;
        }
    }
    return 0;
}

static void remove_all(struct evkeyvalq *h, const char *name)
{
    while (evhttp_remove_header(h, name) == 0)
        ;
}

static const char *err_text(const struct fwd *f)
{
    if (!f->have_err)
        return "cannot connect";
    switch (f->err) {
    case EVREQ_HTTP_TIMEOUT:
        return "timed out";
    case EVREQ_HTTP_EOF:
        return "connection closed before a complete answer";
    case EVREQ_HTTP_INVALID_HEADER:
        return "malformed answer";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "connection error";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "answer too large";
    default:
        return "request failed";
    }
}

/* ---- finishing (worker thread) ---- */

static void fwd_free(struct fwd *f)
{
    if (f->evcon)
        evhttp_connection_free(f->evcon); /* frees a request still queued, no callback */
    if (f->ev)
        event_free(f->ev);
    if (f->body)
        evbuffer_free(f->body);
    req_cleanup(&f->req);
    free(f);
}

/* The upstream's answer becomes the reply; its headers are already in the
 * inbound request's output headers (on_response). */
static void send_answer(struct fwd *f)
{
    struct http_req *r = &f->req;
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->ev);
    int no_body = f->status == 204 || f->status == 304, head = r->method == HTTP_HEAD;
    char clen[32];

    if (no_body)
        evbuffer_drain(f->body, evbuffer_get_length(f->body));
    if (!no_body && !head) {
        snprintf(clen, sizeof(clen), "%zu", evbuffer_get_length(f->body));
        remove_all(h, "Content-Length");
        evhttp_add_header(h, "Content-Length", clen);
    }
    if (!no_body && evhttp_find_header(h, "Content-Type") == NULL)
        evhttp_add_header(h, "Content-Type", "application/octet-stream");
    if (r->server_name) {
        remove_all(h, "Server");
        evhttp_add_header(h, "Server", r->server_name);
    }
    if (r->closing) {
        remove_all(h, "Connection");
        evhttp_add_header(h, "Connection", "close");
    }
    r->replied = 1;
    evhttp_send_reply(r->ev, f->status, f->reason[0] ? f->reason : NULL,
                      no_body || head ? NULL : f->body);
}

static void fwd_finish(struct fwd *f)
{
    char why[512];
    int status;

    http_worker_undefer_(f->req.w, &f->d);
    /* Before replying: a timed-out exchange is cut here, without callbacks. */
    if (f->evcon) {
        evhttp_connection_free(f->evcon);
        f->evcon = NULL;
    }
    if (f->state == FWD_ANSWERED) {
        send_answer(f);
    } else {
        status = f->state == FWD_TIMEDOUT ? 504 : 502;
        snprintf(why, sizeof(why), "%s: %s", f->upstream,
                 f->state == FWD_TIMEDOUT ? "no answer in time" : err_text(f));
        ut_log(UT_LOG_DEBUG, "http", "forward failed", UT_LF_S("path", http_req_path(&f->req)),
               UT_LF_S("why", why));
        if (f->on_fail)
            f->on_fail(&f->req, status, why, f->arg);
        /* on_fail may also have forwarded the request again: the new
         * forward owns it then (handed_off) and req_cleanup leaves it. */
        if (!f->req.replied && !f->req.handed_off)
            http_reply_error(&f->req, status, status == 504 ? "gateway_timeout" : "bad_gateway",
                             why);
    }
    if (f->release)
        f->release(f->arg);
    fwd_free(f);
}

/* The deadline, or activated by on_response once the exchange is over. */
static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct fwd *f = arg;

    if (f->state == FWD_PENDING)
        f->state = FWD_TIMEDOUT;
    fwd_finish(f);
}

/* Worker freed with this forward pending (server.c, after the join). */
static void fwd_cancel(struct http_deferred *d)
{
    struct fwd *f = (struct fwd *)d;

    if (f->evcon) {
        evhttp_connection_free(f->evcon);
        f->evcon = NULL;
    }
    /* A request whose client went away was detached from its connection
     * and is ours to free; any other goes with its connection. */
    if (evhttp_request_get_connection(f->req.ev) == NULL)
        evhttp_request_free(f->req.ev);
    if (f->release)
        f->release(f->arg);
    fwd_free(f);
}

/* ---- the outbound exchange (worker thread) ---- */

static void on_error(enum evhttp_request_error e, void *arg)
{
    struct fwd *f = arg;

    f->have_err = 1;
    f->err = e;
}

static void copy_answer(struct fwd *f, struct evhttp_request *up)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(up);
    struct evkeyvalq *out = evhttp_request_get_output_headers(f->req.ev);
    const char *line = evhttp_request_get_response_code_line(up);
    int head = f->req.method == HTTP_HEAD;

    /* The upstream's answer is the whole answer. */
    evhttp_clear_headers(out);
    for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        if (in_list(kv->key, hop_by_hop) || named_by_connection(in, kv->key))
            continue;
        /* Recomputed from the body, except for HEAD (no body to count). */
        if (!head && strcasecmp(kv->key, "Content-Length") == 0)
            continue;
        evhttp_add_header(out, kv->key, kv->value);
    }
    evbuffer_add_buffer(f->body, evhttp_request_get_input_buffer(up));
    f->status = evhttp_request_get_response_code(up);
    /* The reason phrase goes back out on our status line: printable only. */
    f->reason[0] = '\0';
    if (line) {
        size_t i;

        for (i = 0; line[i] && i < sizeof(f->reason) - 1; i++)
            f->reason[i] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
        f->reason[i] = '\0';
    }
}

/* libevent's request callback: up is NULL, or has code 0 after a failed
 * connect; it is freed by libevent when this returns. */
static void on_response(struct evhttp_request *up, void *arg)
{
    struct fwd *f = arg;
    int code = up ? evhttp_request_get_response_code(up) : 0;

    if (f->state != FWD_PENDING)
        return;
    if (code < 200 || code > 599) {
        f->state = f->have_err && f->err == EVREQ_HTTP_TIMEOUT ? FWD_TIMEDOUT : FWD_FAILED;
        if (code != 0 && !f->have_err) {
            f->have_err = 1;
            f->err = EVREQ_HTTP_INVALID_HEADER;
        }
    } else {
        copy_answer(f, up);
        f->state = FWD_ANSWERED;
    }
    event_active(f->ev, EV_TIMEOUT, 1);
}

static enum evhttp_cmd_type cmd_of(enum http_method m)
{
    switch (m) {
    case HTTP_POST:
        return EVHTTP_REQ_POST;
    case HTTP_PUT:
        return EVHTTP_REQ_PUT;
    case HTTP_DELETE:
        return EVHTTP_REQ_DELETE;
    case HTTP_HEAD:
        return EVHTTP_REQ_HEAD;
    case HTTP_PATCH:
        return EVHTTP_REQ_PATCH;
    case HTTP_OPTIONS:
        return EVHTTP_REQ_OPTIONS;
    default:
        return EVHTTP_REQ_GET;
    }
}

/* Extra header lines split into names (for the drop rule) and values. */
struct extra {
    size_t n;
    char name[MAX_EXTRA][MAX_NAME];
    const char *value[MAX_EXTRA];
};

static int parse_extra(const char *const *lines, struct extra *x, struct ut_err *err)
{
    x->n = 0;
    for (size_t i = 0; lines && lines[i]; i++) {
        const char *l = lines[i], *colon = strchr(l, ':');
        size_t nl = colon ? (size_t)(colon - l) : 0;

        if (x->n == MAX_EXTRA) {
            ut_err_set(err, "forward: more than %d extra headers", MAX_EXTRA);
            return -E2BIG;
        }
        if (colon == NULL || nl == 0 || nl >= MAX_NAME || strpbrk(l, "\r\n") ||
            strcspn(l, " \t") < nl) {
            ut_err_set(err, "forward: malformed extra header #%zu", i + 1);
            return -EINVAL;
        }
        memcpy(x->name[x->n], l, nl);
        x->name[x->n][nl] = '\0';
        x->value[x->n] = colon + 1 + strspn(colon + 1, " \t");
        x->n++;
    }
    return 0;
}

static int extra_names(const struct extra *x, const char *name)
{
    for (size_t i = 0; i < x->n; i++) {
        if (strcasecmp(x->name[i], name) == 0)
            return 1;
    }
    return 0;
}

/* Fills the outbound request: headers, Host, body. */
static int fill_request(struct http_req *r, struct evhttp_request *out, const char *hosthdr,
                        const struct extra *x, const char *const *drop)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(r->ev);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(out);
    struct evbuffer *ib = evhttp_request_get_input_buffer(r->ev);
    size_t len = ib ? evbuffer_get_length(ib) : 0;
    char clen[32];
    int rc = 0;

    for (struct evkeyval *kv = in->tqh_first; kv; kv = kv->next.tqe_next) {
        if (in_list(kv->key, hop_by_hop) || named_by_connection(in, kv->key) ||
            strcasecmp(kv->key, "Host") == 0 || strcasecmp(kv->key, "Content-Length") == 0 ||
            strcasecmp(kv->key, "Expect") == 0 || in_list(kv->key, drop) || extra_names(x, kv->key))
            continue;
        rc |= evhttp_add_header(oh, kv->key, kv->value);
    }
    rc |= evhttp_add_header(oh, "Host", hosthdr);
    for (size_t i = 0; i < x->n; i++)
        rc |= evhttp_add_header(oh, x->name[i], x->value[i]);
    rc |= evhttp_add_header(oh, "Connection", "close");
    if (len > 0 || r->method == HTTP_POST || r->method == HTTP_PUT || r->method == HTTP_PATCH) {
        snprintf(clen, sizeof(clen), "%zu", len);
        rc |= evhttp_add_header(oh, "Content-Length", clen);
    }
    /* A copy: the handler may still hold pointers into the inbound body. */
    if (len > 0) {
        const unsigned char *p = evbuffer_pullup(ib, -1);

        if (p == NULL || evbuffer_add(evhttp_request_get_output_buffer(out), p, len) != 0)
            rc = -1;
    }
    return rc ? -ENOMEM : 0;
}

/* Where the request target starts in an absolute-form URI (RFC 9112
 * §3.2.2), as req.c reads it. */
static const char *origin_form(const char *u)
{
    size_t n = 0;

    if (strncasecmp(u, "http://", 7) == 0)
        n = 7;
    else if (strncasecmp(u, "https://", 8) == 0)
        n = 8;
    if (n == 0)
        return u;
    u += n;
    return u + strcspn(u, "/?#");
}

struct upstream {
    char host[256];    /* for connecting: no brackets */
    char hosthdr[300]; /* Host header value */
    int port;
    char path[TARGET_MAX]; /* base path without its trailing '/', then the target */
    int numeric;
};

static int parse_base(const char *base_url, struct upstream *u, struct ut_err *err)
{
    struct evhttp_uri *p = base_url ? evhttp_uri_parse(base_url) : NULL;
    const char *scheme, *host, *path;
    unsigned char a[16];
    size_t hl, pl;
    int rc = -EINVAL;

    if (p == NULL) {
        ut_err_set(err, "forward: base URL \"%.200s\" does not parse", base_url ? base_url : "");
        return -EINVAL;
    }
    scheme = evhttp_uri_get_scheme(p);
    host = evhttp_uri_get_host(p);
    path = evhttp_uri_get_path(p);
    if (scheme && strcasecmp(scheme, "https") == 0) {
        ut_err_set(err, "forward: \"%.200s\": https upstreams are not supported", base_url);
        rc = -EPROTONOSUPPORT;
        goto out;
    }
    if (scheme == NULL || strcasecmp(scheme, "http") != 0 || host == NULL || host[0] == '\0' ||
        evhttp_uri_get_query(p) || evhttp_uri_get_fragment(p) || evhttp_uri_get_userinfo(p)) {
        ut_err_set(err, "forward: \"%.200s\": want http://host[:port][/path]", base_url);
        goto out;
    }
    hl = strlen(host);
    if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
        host++;
        hl -= 2;
    }
    if (hl >= sizeof(u->host)) {
        ut_err_set(err, "forward: \"%.200s\": host too long", base_url);
        goto out;
    }
    memcpy(u->host, host, hl);
    u->host[hl] = '\0';
    u->port = evhttp_uri_get_port(p);
    if (u->port <= 0)
        u->port = 80;
    u->numeric =
        evutil_inet_pton(AF_INET, u->host, a) == 1 || evutil_inet_pton(AF_INET6, u->host, a) == 1;
    snprintf(u->hosthdr, sizeof(u->hosthdr), "%s%s%s:%d", strchr(u->host, ':') ? "[" : "", u->host,
             strchr(u->host, ':') ? "]" : "", u->port);
    pl = path ? strlen(path) : 0;
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    if (pl >= sizeof(u->path)) {
        ut_err_set(err, "forward: \"%.200s\": path too long", base_url);
        goto out;
    }
    if (pl)
        memcpy(u->path, path, pl);
    u->path[pl] = '\0';
    rc = 0;
out:
    evhttp_uri_free(p);
    return rc;
}

int http_req_forward_opts(struct http_req *r, const char *base_url,
                          const struct http_forward_opts *o, struct ut_err *err)
{
    static const struct http_forward_opts none = {0};
    struct evhttp_request *out = NULL;
    struct event_base *base;
    struct evdns_base *dns = NULL;
    struct upstream u;
    struct extra x;
    struct fwd *f = NULL;
    struct timeval tv, iotv;
    const char *target;
    size_t bl, tl;
    int rc, ms;

    if (o == NULL)
        o = &none;
    if (r->replied || r->handed_off || r->w == NULL) {
        ut_err_set(err, "forward: the request was already answered or forwarded");
        return -EALREADY;
    }
    if (o->timeout_ms < 0) {
        ut_err_set(err, "forward: negative timeout");
        return -EINVAL;
    }
    if ((rc = parse_base(base_url, &u, err)) < 0 || (rc = parse_extra(o->headers, &x, err)) < 0)
        return rc;
    target = evhttp_request_get_uri(r->ev);
    if (target)
        target = origin_form(target);
    tl = target ? strcspn(target, "#") : 0;
    bl = strlen(u.path);
    if (tl == 0 || (target[0] != '/' && target[0] != '?')) {
        ut_err_set(err, "forward: request target is not an absolute path");
        return -EINVAL;
    }
    if (bl + tl + 2 > sizeof(u.path)) {
        ut_err_set(err, "forward: request target too long");
        return -E2BIG;
    }
    if (target[0] == '?')
        u.path[bl++] = '/';
    memcpy(u.path + bl, target, tl);
    u.path[bl + tl] = '\0';

    base = http_worker_base_(r->w);
    if (!u.numeric)
        dns = http_worker_dns_(r->w);
    ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    if ((f = calloc(1, sizeof(*f))) == NULL || (f->body = evbuffer_new()) == NULL ||
        (f->ev = evtimer_new(base, on_event, f)) == NULL ||
        (f->evcon = evhttp_connection_base_new(base, dns, u.host, (unsigned short)u.port)) ==
            NULL ||
        (out = evhttp_request_new(on_response, f)) == NULL)
        goto nomem;
    f->d.cancel = fwd_cancel;
    f->on_fail = o->on_fail;
    f->arg = o->arg;
    f->max_body = o->max_response_bytes ? o->max_response_bytes : DEFAULT_MAX_BODY;
    snprintf(f->upstream, sizeof(f->upstream), "http://%s", u.hosthdr);
    /* Per read/write/connect; the overall deadline is f->ev (a second later
     * here so that the deadline, with its 504, normally fires first). */
    iotv = tv;
    iotv.tv_sec += 1;
    evhttp_connection_set_timeout_tv(f->evcon, &iotv);
    evhttp_connection_set_retries(f->evcon, 0);
    evhttp_connection_set_max_headers_size(f->evcon, MAX_RESP_HEADERS);
    evhttp_connection_set_max_body_size(f->evcon, (ev_ssize_t)f->max_body);
    evhttp_request_set_error_cb(out, on_error);
    f->req.ev = r->ev;
    f->req.method = r->method;
    if (fill_request(r, out, u.hosthdr, &x, o->drop_headers) < 0)
        goto nomem;

    /* From here the reply belongs to f (on_response may run right inside
     * evhttp_make_request; it only records and activates f->ev). */
    f->req = *r;
    r->handed_off = 1;
    evtimer_add(f->ev, &tv);
    http_worker_defer_(r->w, &f->d);
    if (evhttp_make_request(f->evcon, out, cmd_of(r->method), u.path) != 0) {
        out = NULL; /* freed by libevent */
        http_worker_undefer_(r->w, &f->d);
        r->handed_off = 0;
        memset(&f->req, 0, sizeof(f->req)); /* r keeps its memory */
        ut_err_set(err, "forward to %s: cannot start the request", f->upstream);
        fwd_free(f);
        return -EIO;
    }
    f->release = o->release; /* from here the forward will end through fwd_finish/cancel */
    ut_log(UT_LOG_DEBUG, "http", "forwarding", UT_LF_S("path", http_req_path(r)),
           UT_LF_S("upstream", f->upstream));
    return 0;
nomem:
    if (out)
        evhttp_request_free(out);
    if (f) {
        memset(&f->req, 0, sizeof(f->req));
        fwd_free(f);
    }
    ut_err_set(err, "forward: out of memory");
    return -ENOMEM;
}

int http_req_forward(struct http_req *r, const char *base_url, const char *const *extra_headers,
                     int timeout_ms, struct ut_err *err)
{
    struct http_forward_opts o = {.headers = extra_headers, .timeout_ms = timeout_ms};

    return http_req_forward_opts(r, base_url, &o, err);
}
