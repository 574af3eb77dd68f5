/*
 * server.c - listening socket, TLS context, worker threads, graceful stop.
 *
 * Threads: one listening socket is opened in http_server_start(); each worker
 * gets its own dup() of it, its own event_base and its own evhttp, and runs
 * its loop on its own thread. Nothing is shared between workers at run time
 * except the read-only route table, the SSL_CTX (thread-safe for SSL_new)
 * and the server options. A worker's state is only touched by that worker's
 * thread, except in http_server_stop(), which first makes the worker drain
 * and exit, joins it, and only then frees its objects.
 *
 * Graceful stop: the stopping thread schedules on_stop() on every worker with
 * event_base_once() (libevent's evthread notification wakes the loop). The
 * worker then removes its listener, closes the keep-alive connections that
 * are idle, marks every further reply "Connection: close", and lets its loop
 * run dry: event_base_dispatch() returns by itself once the last connection
 * is gone. A worker that has not finished after timeout_secs is cut short
 * with event_base_loopbreak() and its remaining connections are closed.
 */
#include "http/http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "util/log.h"

#define MAX_THREADS         256
#define DEFAULT_HEADER_MAX  (16 * 1024)
#define DEFAULT_BODY_MAX    (1024 * 1024)
#define DEFAULT_TIMEOUT     30
#define ACCEPT_RETRY_USEC   100000 /* pause after accept() fails (EMFILE...) */
#define ACCEPT_WARN_EVERY_S 10

/*
 * A connection that has delivered at least one request to us. Tracked so
 * that a stop can close the idle keep-alive ones at once instead of waiting
 * for their timeout. Connections that never completed a request are not
 * tracked: they are either mid-request (and must be allowed to finish) or
 * idle since accept (closed by the timeout or the stop deadline).
 */
struct conn {
    struct evhttp_connection *evcon;
    struct worker *w;
    struct conn *hnext;
    int busy; /* a request reached a handler and its reply is not fully written */
};

struct worker {
    struct http_server *srv;
    pthread_t tid;
    int running; /* thread created */
    int done;    /* loop returned; guarded by srv->mu */
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound; /* NULL once stopping */
    struct event *resume_ev;
    time_t last_accept_warn;
    int stopping;
    struct conn **tab; /* hash of struct conn by evcon; power-of-two size */
    size_t tabsz, nconn;
    struct http_deferred *deferred; /* replies pending on a later loop turn */
    struct evdns_base *dns;         /* made on first use (proxy.c) */
    int dns_failed;
};

enum { SRV_NEW, SRV_RUNNING, SRV_STOPPED };

struct http_server {
    char *listen, *cert_file, *key_file, *server_name;
    int threads;
    size_t max_header, max_body;
    int timeout;
    struct router rt;
    SSL_CTX *ssl;
    int port;
    int state;
    struct worker *w;
    int nw;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a worker's loop returns */
    int ndone;
    char addr_text[INET6_ADDRSTRLEN + 16];
};

/* ---- process-wide setup ---- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_thread_rc;
/* The worker running on this thread (for callbacks whose argument libevent
 * fixes to the evhttp, like the listener error callback). */
static _Thread_local struct worker *tls_worker;

static void ev_log(int severity, const char *msg)
{
    enum ut_log_level lvl = severity == EVENT_LOG_DEBUG  ? UT_LOG_DEBUG
                            : severity == EVENT_LOG_MSG  ? UT_LOG_INFO
                            : severity == EVENT_LOG_WARN ? UT_LOG_WARN
                                                         : UT_LOG_ERROR;

    ut_log(lvl, "http", "libevent", UT_LF_S("msg", msg));
}

static void global_init(void)
{
    /* Must precede every event_base_new(): bases created afterwards get locks
     * and a notification fd, which http_server_stop() relies on. */
    g_thread_rc = evthread_use_pthreads();
    event_set_log_callback(ev_log);
}

/* ---- connection tracking (worker thread only) ---- */

static size_t conn_slot(const struct worker *w, const struct evhttp_connection *evcon)
{
    uint64_t x = (uint64_t)(uintptr_t)evcon;

    x ^= x >> 29;
    x *= 0x9e3779b97f4a7c15ull;
    return (size_t)(x >> 32) & (w->tabsz - 1);
}

static struct conn *conn_find(const struct worker *w, const struct evhttp_connection *evcon)
{
    if (w->tab == NULL)
        return NULL;
    for (struct conn *c = w->tab[conn_slot(w, evcon)]; c; c = c->hnext) {
        if (c->evcon == evcon)
            return c;
    }
    return NULL;
}

static void conn_grow(struct worker *w)
{
    size_t nsz = w->tabsz ? w->tabsz * 2 : 64, osz = w->tabsz;
    struct conn **ntab = calloc(nsz, sizeof(*ntab)), **otab = w->tab;

    if (ntab == NULL)
        return; /* keep the old table; chains just get longer */
    w->tab = ntab;
    w->tabsz = nsz;
    for (size_t i = 0; i < osz; i++) {
        struct conn *c = otab[i], *next;

        for (; c; c = next) {
            size_t k = conn_slot(w, c->evcon);

            next = c->hnext;
            c->hnext = ntab[k];
            ntab[k] = c;
        }
    }
    free(otab);
}

static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    struct conn *c = arg;
    struct worker *w = c->w;
    struct conn **pp = &w->tab[conn_slot(w, evcon)];

    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == c) {
            *pp = c->hnext;
            w->nconn--;
            break;
        }
    }
    free(c);
}

/* Returns the record for evcon, creating it on first sight; NULL only when
 * out of memory (the connection then just is not tracked). */
static struct conn *conn_track(struct worker *w, struct evhttp_connection *evcon)
{
    struct conn *c = conn_find(w, evcon);
    size_t k;

    if (c) {
        /* Normally already set; re-arming costs nothing and keeps the
         * record's lifetime tied to this evcon whatever happened before. */
        evhttp_connection_set_closecb(evcon, on_conn_close, c);
        return c;
    }
    if (w->nconn >= w->tabsz)
        conn_grow(w);
    if (w->tab == NULL || (c = calloc(1, sizeof(*c))) == NULL)
        return NULL;
    c->evcon = evcon;
    c->w = w;
    k = conn_slot(w, evcon);
    c->hnext = w->tab[k];
    w->tab[k] = c;
    w->nconn++;
    /* Called exactly once, from evhttp_connection_free(). */
    evhttp_connection_set_closecb(evcon, on_conn_close, c);
    return c;
}

/* ---- request entry point (worker thread) ---- */

static enum http_method map_method(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return HTTP_GET;
    case EVHTTP_REQ_POST:
        return HTTP_POST;
    case EVHTTP_REQ_PUT:
        return HTTP_PUT;
    case EVHTTP_REQ_DELETE:
        return HTTP_DELETE;
    case EVHTTP_REQ_HEAD:
        return HTTP_HEAD;
    case EVHTTP_REQ_PATCH:
        return HTTP_PATCH;
    case EVHTTP_REQ_OPTIONS:
        return HTTP_OPTIONS;
    default:
        return 0;
    }
}

/* The reply has been fully handed to the kernel (or TLS layer). evhttp
 * evaluates "Connection: close" on this request right after this callback,
 * so adding it here closes a keep-alive connection once we are stopping. */
static void on_complete(struct evhttp_request *ev, void *arg)
{
    struct conn *c = arg;

    c->busy = 0;
    if (c->w->stopping)
        evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
}

/*
 * Message framing that could desynchronize us from a proxy in front (request
 * smuggling, RFC 9112 §6.1, §6.3): evhttp takes the first Content-Length,
 * prefers chunked over it, and does not read a body for GET/HEAD/DELETE/
 * OPTIONS (the bytes would be parsed as the next request). Such requests get
 * 400 and the connection is closed after the reply.
 */
static const char *framing_problem(struct evhttp_request *ev, enum http_method m)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
    struct evkeyval *kv;
    int ncl = 0, nte = 0, body = 0;

    for (kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
        if (evutil_ascii_strcasecmp(kv->key, "Content-Length") == 0) {
            ncl++;
            body |= strcmp(kv->value, "0") != 0;
        } else if (evutil_ascii_strcasecmp(kv->key, "Transfer-Encoding") == 0) {
            nte++;
            body = 1;
            if (evutil_ascii_strcasecmp(kv->value, "chunked") != 0)
                return "unsupported Transfer-Encoding";
        }
    }
    if (ncl > 1 || nte > 1 || (ncl && nte))
        return "conflicting Content-Length / Transfer-Encoding headers";
    if (body && (m == HTTP_GET || m == HTTP_HEAD || m == HTTP_DELETE || m == HTTP_OPTIONS))
        return "request body not allowed with this method";
    return NULL;
}

static void on_request(struct evhttp_request *ev, void *arg)
{
    struct worker *w = arg;
    struct http_server *s = w->srv;
    struct evhttp_connection *evcon = evhttp_request_get_connection(ev);
    struct http_req r;
    struct ut_err e = {{0}};
    struct conn *c;
    const char *why;
    int rc;

    memset(&r, 0, sizeof(r));
    r.ev = ev;
    r.srv = s;
    r.w = w;
    r.method = map_method(evhttp_request_get_command(ev));
    r.is_tls = s->ssl != NULL;
    r.closing = w->stopping;
    r.server_name = s->server_name;
    if (evcon) {
        char *addr = NULL;
        ev_uint16_t port = 0;

        evhttp_connection_get_peer(evcon, &addr, &port);
        if (addr) {
            /* "::ffff:1.2.3.4" on the dual-stack socket reads as 1.2.3.4 */
            if (strncmp(addr, "::ffff:", 7) == 0 && strchr(addr + 7, '.'))
                addr += 7;
            snprintf(r.peer, sizeof(r.peer), "%s", addr);
        }
        if ((c = conn_track(w, evcon)) != NULL) {
            c->busy = 1;
            evhttp_request_set_on_complete_cb(ev, on_complete, c);
        }
    }
    if (r.method == 0) { /* evhttp only lets allowed methods through */
        http_reply_error(&r, 501, "not_implemented", "method not supported");
        goto out;
    }
    if ((why = framing_problem(ev, r.method)) != NULL) {
        r.closing = 1;
        http_reply_error(&r, 400, "invalid_request", why);
        goto out;
    }
    rc = req_prepare(&r, &e);
    if (rc == -ENOMEM) {
        ut_log(UT_LOG_ERROR, "http", "out of memory parsing a request");
        http_reply_error(&r, 500, "server_error", NULL);
    } else if (rc < 0) {
        http_reply_error(&r, 400, "invalid_request", e.msg);
    } else {
        router_dispatch(&s->rt, &r);
    }
    if (!r.replied && !r.handed_off) {
        ut_log(UT_LOG_ERROR, "http", "handler did not reply", UT_LF_S("path", http_req_path(&r)));
        http_reply_error(&r, 500, "server_error", NULL);
    }
out:
    req_cleanup(&r);
}

/*
 * Every worker's epoll reports the shared socket readable and the listener
 * would accept() in a loop until EAGAIN, so one worker could grab a whole
 * burst of connections (a keep-alive client opening 32 at once would then be
 * served by a single thread). Taking one connection per wakeup and re-arming
 * on the next loop turn lets the workers share the burst.
 */
static void pause_accepting(struct worker *w)
{
    if (w->bound == NULL)
        return;
    evconnlistener_disable(evhttp_bound_socket_get_listener(w->bound));
    event_active(w->resume_ev, EV_TIMEOUT, 1);
}

/* evhttp asks for one bufferevent per accepted connection (fd set later);
 * this is also our only hook on accept. Options 0 as evhttp's own default:
 * evhttp closes the fd itself. */
static struct bufferevent *make_plain_bev(struct event_base *base, void *arg)
{
    struct worker *w = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);

    pause_accepting(w);
    return bev; /* NULL: evhttp tries bufferevent_socket_new() itself */
}

static struct bufferevent *make_tls_bev(struct event_base *base, void *arg)
{
    struct worker *w = arg;
    struct bufferevent *bev;
    SSL *ssl = SSL_new(w->srv->ssl);

    pause_accepting(w);

    /* Returning NULL would make evhttp fall back to a plaintext bufferevent
     * on the TLS port; only possible when out of memory, so stop instead. */
    if (ssl == NULL) {
        ut_log(UT_LOG_ERROR, "http", "SSL_new failed; aborting");
        abort();
    }
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        ut_log(UT_LOG_ERROR, "http", "bufferevent_openssl_socket_new failed; aborting");
        abort();
    }
    /* A peer closing without close_notify is an EOF, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

/* Re-arms the listener after pause_accepting() or an accept error. */
static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    if (w->bound && !w->stopping)
        evconnlistener_enable(evhttp_bound_socket_get_listener(w->bound));
}

/* accept() failed with a non-transient error (EMFILE, ENFILE, ENOMEM...):
 * the socket stays readable, so pause instead of spinning on it. */
static void on_accept_error(struct evconnlistener *lev, void *arg)
{
    struct worker *w = tls_worker;
    int e = EVUTIL_SOCKET_ERROR();
    struct timeval tv = {0, ACCEPT_RETRY_USEC};
    time_t now = time(NULL);

    if (w == NULL)
        return;
    if (now - w->last_accept_warn >= ACCEPT_WARN_EVERY_S) {
        w->last_accept_warn = now;
        ut_log(UT_LOG_WARN, "http", "accept failed; pausing the listener",
               UT_LF_S("error", strerror(e)));
    }
    evconnlistener_disable(lev);
    event_add(w->resume_ev, &tv);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    w->stopping = 1;
    if (w->bound) {
        evhttp_del_accept_socket(w->http, w->bound); /* closes this worker's dup */
        w->bound = NULL;
    }
    event_del(w->resume_ev);
    /* Idle keep-alive connections: nothing in flight, nothing received. */
    for (size_t i = 0; i < w->tabsz; i++) {
        struct conn *c = w->tab[i], *next;

        for (; c; c = next) {
            struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);

            next = c->hnext; /* on_conn_close() frees only c */
            if (!c->busy && evbuffer_get_length(bufferevent_get_input(bev)) == 0)
                evhttp_connection_free(c->evcon);
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    tls_worker = w;
    event_base_dispatch(w->base); /* returns after on_stop once the last connection closed */
    pthread_mutex_lock(&w->srv->mu);
    w->done = 1;
    w->srv->ndone++;
    pthread_cond_broadcast(&w->srv->cv);
    pthread_mutex_unlock(&w->srv->mu);
    return NULL;
}

/* ---- setup ---- */

static char *dup_opt(const char *s, int *oom)
{
    char *d;

    if (s == NULL || s[0] == '\0')
        return NULL;
    if ((d = strdup(s)) == NULL)
        *oom = 1;
    return d;
}

/* Splits "host:port", "[v6]:port" or ":port". host is "" for all addresses. */
static int parse_listen(const char *s, char *host, size_t hostsz, char *port, size_t portsz,
                        struct ut_err *err)
{
    const char *colon, *h = s;
    size_t hlen;
    char *end;
    long pn;

    if (s == NULL || s[0] == '\0') {
        ut_err_set(err, "listen address is empty");
        return -EINVAL;
    }
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');

        if (rb == NULL || rb[1] != ':') {
            ut_err_set(err, "listen \"%s\": expected [v6-address]:port", s);
            return -EINVAL;
        }
        h = s + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            ut_err_set(err, "listen \"%s\": expected host:port or :port", s);
            return -EINVAL;
        }
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen)) {
            ut_err_set(err, "listen \"%s\": write IPv6 addresses as [addr]:port", s);
            return -EINVAL;
        }
    }
    errno = 0;
    pn = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || errno || pn < 0 || pn > 65535) {
        ut_err_set(err, "listen \"%s\": bad port", s);
        return -EINVAL;
    }
    if (hlen >= hostsz) {
        ut_err_set(err, "listen \"%s\": host too long", s);
        return -EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, portsz, "%ld", pn);
    return 0;
}

static int bind_one(int family, const struct sockaddr *sa, socklen_t salen, int dual)
{
    int fd, one = 1, zero = 0, e;

    fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Every worker accepts on a dup of this non-blocking socket; the losers
     * of a race get EAGAIN, which the listener treats as retriable. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (dual && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) ||
        bind(fd, sa, salen) < 0 || listen(fd, SOMAXCONN) < 0) {
        e = errno;
        close(fd);
        return -e;
    }
    /* Inherited by accepted sockets on Linux: replies go out at once. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int open_listener(struct http_server *s, struct ut_err *err)
{
    char host[256], port[8], ip[INET6_ADDRSTRLEN];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = -EINVAL, rc;

    if ((rc = parse_listen(s->listen, host, sizeof(host), port, sizeof(port), err)) < 0)
        return rc;
    if (host[0] == '\0') {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT};
        struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY)};

        a6.sin6_port = a4.sin_port = htons((uint16_t)atoi(port));
        fd = bind_one(AF_INET6, (struct sockaddr *)&a6, sizeof(a6), 1);
        if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL)
            fd = bind_one(AF_INET, (struct sockaddr *)&a4, sizeof(a4), 0);
    } else {
        struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
                                 .ai_family = AF_UNSPEC,
                                 .ai_socktype = SOCK_STREAM},
                        *res = NULL;
        int g = getaddrinfo(host, port, &hints, &res);

        if (g != 0) {
            ut_err_set(err, "listen \"%s\": %s", s->listen,
                       g == EAI_SYSTEM ? strerror(errno) : gai_strerror(g));
            return -EINVAL;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            fd = bind_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, 0);
            if (fd >= 0)
                break;
        }
        freeaddrinfo(res);
    }
    if (fd < 0) {
        ut_err_set(err, "listen \"%s\": %s", s->listen, strerror(-fd));
        return fd;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            s->port = ntohs(a->sin6_port);
            snprintf(s->addr_text, sizeof(s->addr_text), "[%s]:%d", ip, s->port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;

            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
            s->port = ntohs(a->sin_port);
            snprintf(s->addr_text, sizeof(s->addr_text), "%s:%d", ip, s->port);
        }
    }
    return fd;
}

static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_error(); /* the earliest: the root cause */
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    return r ? r : "unknown OpenSSL error";
}

/* Never prompt on a terminal for a passphrase: encrypted keys just fail. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

static int check_readable(const char *what, const char *path, struct ut_err *err)
{
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        ut_err_set(err, "TLS %s file \"%s\": %s", what, path, strerror(errno));
        return -errno;
    }
    fclose(f);
    return 0;
}

static int tls_init(struct http_server *s, struct ut_err *err)
{
    SSL_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;
    BIO *bio = NULL;
    int rc = 0;

    if ((rc = check_readable("certificate", s->cert_file, err)) < 0 ||
        (rc = check_readable("key", s->key_file, err)) < 0)
        return rc;
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ut_err_set(err, "TLS: cannot create context: %s", ssl_reason());
        rc = -ENOMEM;
        goto out;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    /* TLS 1.2: forward-secret AEAD suites only (1.3 suites are all fine). */
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL") != 1) {
        ut_err_set(err, "TLS: cipher list rejected: %s", ssl_reason());
        rc = -EINVAL;
        goto out;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    if (SSL_CTX_use_certificate_chain_file(ctx, s->cert_file) != 1) {
        ut_err_set(err, "TLS certificate file \"%s\": %s", s->cert_file, ssl_reason());
        rc = -EINVAL;
        goto out;
    }
    ERR_clear_error();
    if ((bio = BIO_new_file(s->key_file, "r")) == NULL ||
        (key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL)) == NULL) {
        ut_err_set(err, "TLS key file \"%s\": no usable PEM private key (%s)", s->key_file,
                   ssl_reason());
        rc = -EINVAL;
        goto out;
    }
    ERR_clear_error();
    if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ut_err_set(err, "TLS key file \"%s\" does not match certificate file \"%s\"", s->key_file,
                   s->cert_file);
        rc = -EINVAL;
        goto out;
    }
    s->ssl = ctx;
    ctx = NULL;
out:
    ERR_clear_error();
    EVP_PKEY_free(key);
    BIO_free(bio);
    SSL_CTX_free(ctx);
    return rc;
}

static int worker_init(struct http_server *s, struct worker *w, int lfd, struct ut_err *err)
{
    int fd = -1;

    w->srv = s;
    if ((w->base = event_base_new()) == NULL || (w->http = evhttp_new(w->base)) == NULL ||
        (w->resume_ev = evtimer_new(w->base, on_accept_resume, w)) == NULL) {
        ut_err_set(err, "listen \"%s\": cannot create event loop", s->listen);
        return -ENOMEM;
    }
    evhttp_set_gencb(w->http, on_request, w);
    evhttp_set_bevcb(w->http, s->ssl ? make_tls_bev : make_plain_bev, w);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD | EVHTTP_REQ_PATCH |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)s->max_header);
    evhttp_set_max_body_size(w->http, (ev_ssize_t)s->max_body);
    evhttp_set_timeout(w->http, s->timeout);
    /* An over-long body is read and discarded before the 413 goes out, so
     * the client sees the answer instead of a reset (bounded by timeout). */
    evhttp_set_flags(w->http, EVHTTP_SERVER_LINGERING_CLOSE);
    if ((fd = fcntl(lfd, F_DUPFD_CLOEXEC, 0)) < 0) {
        ut_err_set(err, "listen \"%s\": dup: %s", s->listen, strerror(errno));
        return -errno;
    }
    /* Owns fd from here on (closed when the bound socket is deleted). */
    if ((w->bound = evhttp_accept_socket_with_handle(w->http, fd)) == NULL) {
        close(fd);
        ut_err_set(err, "listen \"%s\": cannot watch the socket", s->listen);
        return -ENOMEM;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(w->bound), on_accept_error);
    return 0;
}

/* ---- deferred replies (worker thread, except cancel in worker_free) ---- */

void http_worker_defer_(struct worker *w, struct http_deferred *d)
{
    d->prev = NULL;
    d->next = w->deferred;
    if (w->deferred)
        w->deferred->prev = d;
    w->deferred = d;
}

void http_worker_undefer_(struct worker *w, struct http_deferred *d)
{
    if (d->prev)
        d->prev->next = d->next;
    else if (w->deferred == d)
        w->deferred = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
}

struct event_base *http_worker_base_(struct worker *w)
{
    return w->base;
}

struct evdns_base *http_worker_dns_(struct worker *w)
{
    if (w->dns == NULL && !w->dns_failed) {
        /* Reads /etc/resolv.conf and /etc/hosts; with DISABLE_WHEN_INACTIVE
         * its sockets leave the loop when no lookup is pending, so an idle
         * resolver never keeps a draining worker alive. */
        w->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (w->dns == NULL) {
            w->dns_failed = 1;
            ut_log(UT_LOG_WARN, "http", "no asynchronous resolver; names resolve synchronously");
        }
    }
    return w->dns;
}

/* Only once the worker's thread is gone (or never started). */
static void worker_free(struct worker *w)
{
    /* Replies still pending (the loop was cut at the stop deadline): their
     * outbound work goes first, then the connections they answer. */
    while (w->deferred) {
        struct http_deferred *d = w->deferred;

        http_worker_undefer_(w, d);
        d->cancel(d);
    }
    if (w->dns)
        evdns_base_free(w->dns, 0);
    if (w->http)
        evhttp_free(w->http); /* closes what is left; on_conn_close() untracks */
    if (w->resume_ev)
        event_free(w->resume_ev);
    for (size_t i = 0; i < w->tabsz; i++) {
        struct conn *c = w->tab[i], *next;

        for (; c; c = next) {
            next = c->hnext;
            free(c);
        }
    }
    free(w->tab);
    if (w->base)
        event_base_free(w->base);
    memset(w, 0, sizeof(*w));
}

/* Drains and joins every running worker, then frees all workers. */
static void workers_shutdown(struct http_server *s)
{
    struct timespec deadline;
    int nrun = 0;

    for (int i = 0; i < s->nw; i++) {
        struct worker *w = &s->w[i];

        if (!w->running)
            continue;
        nrun++;
        if (event_base_once(w->base, -1, EV_TIMEOUT, on_stop, w, NULL) != 0)
            event_base_loopbreak(w->base);
    }
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += s->timeout;
    pthread_mutex_lock(&s->mu);
    while (s->ndone < nrun) {
        if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT)
            break;
    }
    /* Past the deadline: cut the stragglers (bases are freed after join). */
    for (int i = 0; i < s->nw; i++) {
        if (s->w[i].running && !s->w[i].done) {
            ut_log(UT_LOG_WARN, "http", "stop deadline passed; closing connections",
                   UT_LF_I("worker", i));
            event_base_loopbreak(s->w[i].base);
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->nw; i++) {
        if (s->w[i].running)
            pthread_join(s->w[i].tid, NULL);
        worker_free(&s->w[i]);
    }
    free(s->w);
    s->w = NULL;
    s->nw = 0;
    s->ndone = 0;
}

/* ---- public API ---- */

int http_server_new(struct http_server **out, const struct http_server_opts *o, struct ut_err *err)
{
    struct http_server *s = NULL;
    pthread_condattr_t ca;
    char host[256], port[8];
    int oom = 0, rc;

    *out = NULL;
    pthread_once(&g_once, global_init);
    if (g_thread_rc != 0) {
        ut_err_set(err, "http: libevent thread support unavailable");
        return -ENOSYS;
    }
    if (o == NULL) {
        ut_err_set(err, "http: no options");
        return -EINVAL;
    }
    if ((rc = parse_listen(o->listen, host, sizeof(host), port, sizeof(port), err)) < 0)
        return rc;
    if ((o->cert_file && o->cert_file[0]) != (o->key_file && o->key_file[0])) {
        ut_err_set(err, "listen \"%s\": TLS needs both cert_file and key_file", o->listen);
        return -EINVAL;
    }
    if (o->threads < 0 || o->threads > MAX_THREADS || o->timeout_secs < 0) {
        ut_err_set(err, "listen \"%s\": threads must be 0..%d and timeout_secs >= 0", o->listen,
                   MAX_THREADS);
        return -EINVAL;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        ut_err_set(err, "http: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    s->listen = dup_opt(o->listen, &oom);
    s->cert_file = dup_opt(o->cert_file, &oom);
    s->key_file = dup_opt(o->key_file, &oom);
    s->server_name = dup_opt(o->server_name, &oom);
    if (oom) {
        http_server_free(s);
        ut_err_set(err, "http: out of memory");
        return -ENOMEM;
    }
    s->threads = o->threads;
    if (s->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);

        s->threads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
    }
    s->max_header = o->max_header_bytes ? o->max_header_bytes : DEFAULT_HEADER_MAX;
    s->max_body = o->max_body_bytes ? o->max_body_bytes : DEFAULT_BODY_MAX;
    if (s->max_header > (size_t)SSIZE_MAX)
        s->max_header = SSIZE_MAX;
    if (s->max_body > (size_t)SSIZE_MAX)
        s->max_body = SSIZE_MAX;
    s->timeout = o->timeout_secs ? o->timeout_secs : DEFAULT_TIMEOUT;
    *out = s;
    return 0;
}

int http_route(struct http_server *s, int methods, const char *pattern, http_handler h, void *arg,
               struct ut_err *err)
{
    if (s->state != SRV_NEW) {
        ut_err_set(err, "route \"%s\": routes must be added before http_server_start",
                   pattern ? pattern : "");
        return -EBUSY;
    }
    return router_add(&s->rt, methods, pattern, h, arg, err);
}

int http_server_start(struct http_server *s, struct ut_err *err)
{
    struct sigaction sa;
    int fd = -1, rc = 0;

    if (s->state != SRV_NEW) {
        ut_err_set(err, "listen \"%s\": server already started", s->listen);
        return -EALREADY;
    }
    /* A peer resetting a connection must not kill the process via SIGPIPE
     * (libevent writes with plain write/writev). Only a default disposition
     * is changed; daemons set it in ut_sig_block() anyway. */
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGPIPE, SIG_IGN);
    if (s->cert_file && (rc = tls_init(s, err)) < 0)
        goto out;
    if ((fd = open_listener(s, err)) < 0) {
        rc = fd;
        goto out;
    }
    s->nw = s->threads;
    if ((s->w = calloc((size_t)s->nw, sizeof(*s->w))) == NULL) {
        ut_err_set(err, "listen \"%s\": out of memory", s->listen);
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < s->nw; i++) {
        if ((rc = worker_init(s, &s->w[i], fd, err)) < 0)
            goto out;
    }
    for (int i = 0; i < s->nw; i++) {
        if ((rc = pthread_create(&s->w[i].tid, NULL, worker_main, &s->w[i])) != 0) {
            ut_err_set(err, "listen \"%s\": cannot start worker thread: %s", s->listen,
                       strerror(rc));
            rc = -rc;
            goto out;
        }
        s->w[i].running = 1;
    }
    s->state = SRV_RUNNING;
    ut_logf(UT_LOG_INFO, "http", "listening on %s://%s (%d threads)", s->ssl ? "https" : "http",
            s->addr_text, s->nw);
out:
    if (fd >= 0)
        close(fd); /* every worker holds its own dup */
    if (rc < 0) {
        workers_shutdown(s);
        SSL_CTX_free(s->ssl);
        s->ssl = NULL;
        s->port = 0;
    }
    return rc;
}

int http_server_port(const struct http_server *s)
{
    return s ? s->port : 0;
}

void http_server_stop(struct http_server *s)
{
    if (s == NULL || s->state != SRV_RUNNING)
        return;
    if (tls_worker && tls_worker->srv == s) { /* would wait for itself */
        ut_log(UT_LOG_ERROR, "http", "http_server_stop called from a worker thread; ignored");
        return;
    }
    workers_shutdown(s);
    s->state = SRV_STOPPED;
    ut_logf(UT_LOG_INFO, "http", "stopped listening on %s", s->addr_text);
}

void http_server_free(struct http_server *s)
{
    if (s == NULL)
        return;
    http_server_stop(s);
    if (s->state == SRV_RUNNING) /* called from a worker: leak, do not crash */
        return;
    router_free(&s->rt);
    SSL_CTX_free(s->ssl);
    free(s->listen);
    free(s->cert_file);
    free(s->key_file);
    free(s->server_name);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}
