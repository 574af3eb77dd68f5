/*
 * validate.c - the challenge validation pool (acme.h): http-01 (RFC 8555
 * §8.3), dns-01 (§8.4), tls-alpn-01 (RFC 8737), IP identifiers (RFC 8738)
 * and a CAA check (RFC 8659, validate.h).
 *
 * Threads: akm_va_new starts o->threads workers taking jobs from a bounded
 * FIFO (one mutex, one condvar). A job runs start to end on one worker with
 * blocking I/O under one deadline, timeout_ms from when the worker took it:
 * lookups, connects, handshakes and transfers all get what is left of it.
 * Waits are sliced (STOP_SLICE_MS; libcurl's own loop wakes at least once a
 * second) so akm_va_free can abort jobs in flight; those end without a
 * callback, like the ones still queued, and are resubmitted at the next
 * start (acme.h). Workers block asynchronous signals.
 *
 * Resolution: c-ares, a fresh channel per lookup round (channels are not
 * thread-safe in 1.18), never the hosts file or a search list. With
 * o->resolver only that server is asked and a SERVFAIL ends the lookup at
 * once; else the system configuration.
 *
 * Addresses: the first AAAA, then the first A address. The next one is
 * tried only when connecting to the previous one failed (refused,
 * unreachable, no connection within its share of the time: half of what
 * is left when another address remains). Once connected, that answer is
 * final.
 *
 * http-01 redirects: at most MAX_REDIRECTS, each target re-resolved and
 * pinned the same way (CURLOPT_RESOLVE, so curl never resolves by itself).
 * A target must be http on http_port or https on tls_alpn_port: 80 and 443
 * in production (the ports the challenges themselves use, and the only
 * ones Let's Encrypt follows redirects to), in tests the ports the test
 * chose. Anything else is "unauthorized" (it would let a client point the
 * CA at arbitrary services, RFC 8555 §10.4). HTTPS certificates are not
 * checked: the key authorization in the body is the proof.
 *
 * Problems (RFC 8555 §6.7) and statuses: dns, connection, tls, malformed
 * 400; incorrectResponse, unauthorized, caa 403; serverInternal 500.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ares.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "acme.h"
#include "util/b64.h"
#include "util/log.h"
#include "validate.h"

#define MOD "validation"

#define DEFAULT_THREADS    4
#define DEFAULT_QUEUE      256
#define DEFAULT_TIMEOUT_MS 10000
#define MAX_THREADS        256
#define MAX_QUEUE          65536
#define MAX_TIMEOUT_MS     600000
#define HTTP_BODY_MAX      8192 /* any http-01 response body; the key authorization is < 160 */
#define HTTP_HEADERS_MAX   16384
#define MAX_REDIRECTS      10
#define STOP_SLICE_MS      100
#define DETAIL_MAX         512
#define WHAT_MAX           (AKM_URL_MAX + 64)
#define TXT_MAX            1024 /* a TXT record's text compared (the digest is 43) */
#define SHOW_MAX           64   /* bytes of a wrong answer quoted in a detail */
#define CAA_IDS_MAX        16

#define ACME_TLS_1     "acme-tls/1"
#define OID_ACME_IDENT "1.3.6.1.5.5.7.1.31" /* id-pe-acmeIdentifier, RFC 8737 §3 */

/* DNS types and class (RFC 1035, RFC 3596, RFC 8659). */
enum { QT_A = 1, QT_TXT = 16, QT_AAAA = 28, QT_CAA = 257, QC_IN = 1 };

struct akm_va {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct akm_va_job *q; /* ring of qcap waiting jobs */
    size_t qcap, qhead, qlen;
    int submitted; /* akm_va_set_caa is refused once this is set */
    atomic_int stop;
    pthread_t *threads;
    int nthreads;
    int timeout_ms, http_port, tls_alpn_port;
    int has_server; /* o->resolver given: server is the only one asked */
    struct ares_addr_port_node server;
    char **caa_ids; /* NULL: no CAA check; written only before the first submit */
    SSL_CTX *tls;
    akm_va_done_fn done;
    struct akamu *k;
};

/* One validation in progress. Validators return 1 (valid), 0 (invalid:
 * ptype and detail say why) or -ECANCELED (the pool is stopping). */
struct vctx {
    struct akm_va *va;
    const struct akm_va_job *j;
    int64_t deadline; /* CLOCK_MONOTONIC ms */
    const char *ptype;
    char what[WHAT_MAX]; /* what is being tried, the detail's prefix */
    char detail[DETAIL_MAX];
};

struct addr {
    int family;
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } u;
    char text[INET6_ADDRSTRLEN];
};
struct addrs {
    int n;
    struct addr a[2];
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t left_ms(const struct vctx *c)
{
    int64_t l = c->deadline - now_ms();

    return l > 0 ? l : 0;
}

static int stopping(const struct akm_va *va)
{
    return atomic_load(&va->stop);
}

static int problem_status(const char *type)
{
    if (strcmp(type, "incorrectResponse") == 0 || strcmp(type, "unauthorized") == 0 ||
        strcmp(type, "caa") == 0)
        return 403;
    if (strcmp(type, "serverInternal") == 0)
        return 500;
    return 400;
}

/* out = a ": " b, cut to n - 1 bytes (a long redirect URL may cut the
 * message short; the detail stays one line). */
static void join(char *out, size_t n, const char *a, const char *b)
{
    size_t al = strnlen(a, n - 1), bl;

    memcpy(out, a, al);
    if (al + 2 < n) {
        memcpy(out + al, ": ", 2);
        al += 2;
    }
    bl = strnlen(b, n - 1 - al);
    memcpy(out + al, b, bl);
    out[al + bl] = '\0';
}

/* Records the failure as "<what>: <message>"; returns 0 for the validator
 * to pass on. */
static int fail(struct vctx *c, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(struct vctx *c, const char *type, const char *fmt, ...)
{
    char msg[DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    c->ptype = type;
    join(c->detail, sizeof(c->detail), c->what, msg);
    return 0;
}

static int pass(struct vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pass(struct vctx *c, const char *fmt, ...)
{
    char msg[DETAIL_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    join(c->detail, sizeof(c->detail), c->what, msg);
    return 1;
}

/* Up to SHOW_MAX bytes of untrusted text, printable ASCII only, for a
 * detail (a short quote is enough to debug a wrong answer). */
static void show(const void *p, size_t n, char out[SHOW_MAX + 4])
{
    const unsigned char *s = p;
    size_t i, m = n > SHOW_MAX ? SHOW_MAX : n;

    for (i = 0; i < m; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' ? (char)s[i] : '?';
    if (n > m) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
}

static void sha256_b64url(const char *s, char out[44])
{
    unsigned char h[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)s, strlen(s), h);
    ut_b64_encode(h, sizeof(h), out, 1);
}

/* ---- identifiers ---- */

static int parse_ip(const char *s, struct addr *a)
{
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, s, &a->u.v4) == 1)
        a->family = AF_INET;
    else if (inet_pton(AF_INET6, s, &a->u.v6) == 1)
        a->family = AF_INET6;
    else
        return -EINVAL;
    inet_ntop(a->family, &a->u, a->text, sizeof(a->text));
    return 0;
}

/* A host name as certificates carry them: LDH labels of 1..63, at most 253
 * characters, no trailing dot. */
static int dns_name_ok(const char *s)
{
    size_t n = strlen(s), label = 0;

    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || (ch == '-' && label > 0)) {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    return label > 0 && s[n - 1] != '-';
}

/* RFC 8738 §6: the reverse-mapping name of an IP identifier, the SNI of
 * its tls-alpn-01 handshake. */
static void reverse_name(const struct addr *a, char *out, size_t outsz)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;

    if (a->family == AF_INET) {
        const unsigned char *b = (const unsigned char *)&a->u.v4;
        snprintf(out, outsz, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]);
        return;
    }
    for (int i = 15; i >= 0 && n + 4 < outsz; i--) {
        unsigned char b = a->u.v6.s6_addr[i];
        out[n++] = hex[b & 15];
        out[n++] = '.';
        out[n++] = hex[b >> 4];
        out[n++] = '.';
    }
    snprintf(out + n, outsz - n, "ip6.arpa");
}

/* ---- DNS (c-ares) ---- */

struct dnsq {
    int type;
    int status;
    int done;
    unsigned char *abuf; /* the answer, when status is ARES_SUCCESS */
    int alen;
};

static void dns_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    struct dnsq *q = arg;

    (void)timeouts;
    q->done = 1;
    q->status = status;
    if (status == ARES_SUCCESS && abuf && alen > 0) {
        if ((q->abuf = malloc((size_t)alen)) == NULL) {
            q->status = ARES_ENOMEM;
            return;
        }
        memcpy(q->abuf, abuf, (size_t)alen);
        q->alen = alen;
    }
}

static void dnsq_clear(struct dnsq *q, int n)
{
    for (int i = 0; i < n; i++) {
        free(q[i].abuf);
        q[i].abuf = NULL;
    }
}

static const char *qtype_name(int t)
{
    return t == QT_A ? "A" : t == QT_AAAA ? "AAAA" : t == QT_TXT ? "TXT" : "CAA";
}

static const char *dns_status_text(int st, int type, char *buf, size_t n)
{
    switch (st) {
    case ARES_ENOTFOUND:
        return "NXDOMAIN";
    case ARES_ENODATA:
        snprintf(buf, n, "no %s records", qtype_name(type));
        return buf;
    case ARES_ESERVFAIL:
        return "SERVFAIL";
    case ARES_EREFUSED:
        return "REFUSED";
    case ARES_ETIMEOUT:
        return "timeout";
    case ARES_ECONNREFUSED:
        return "the resolver refused the connection";
    case ARES_EBADRESP:
        return "malformed answer";
    default:
        return ares_strerror(st);
    }
}

/* Runs the n queries for name on one channel until all have answered, the
 * deadline passed (those still waiting get ARES_ETIMEOUT) or the pool
 * stops. 0 (statuses in q), -ECANCELED, or -ENOMEM/-EIO with c's problem
 * set. */
static int dns_run(struct vctx *c, const char *name, struct dnsq *q, int n)
{
    struct akm_va *va = c->va;
    struct ares_options o;
    ares_channel ch;
    int rc, timed_out = 0, cancelled = 0, pending;
    int64_t left = left_ms(c);

    memset(&o, 0, sizeof(o));
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_EDNS;
    if (va->has_server)
        o.flags |= ARES_FLAG_NOCHECKRESP;
    /* Two tries per server, the second waiting twice as long: 3/4 of what
     * is left, the rest for what comes after the lookup. */
    o.timeout = (int)(left / 4 < 100 ? 100 : left / 4 > 5000 ? 5000 : left / 4);
    o.tries = 2;
    rc = ares_init_options(&ch, &o, ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        fail(c, "serverInternal", "resolver setup: %s", ares_strerror(rc));
        return -EIO;
    }
    if (va->has_server && (rc = ares_set_servers_ports(ch, &va->server)) != ARES_SUCCESS) {
        ares_destroy(ch);
        fail(c, "serverInternal", "resolver setup: %s", ares_strerror(rc));
        return -EIO;
    }
    for (int i = 0; i < n; i++) {
        q[i].done = 0;
        q[i].abuf = NULL;
        q[i].alen = 0;
        q[i].status = ARES_ETIMEOUT;
        ares_query(ch, name, QC_IN, q[i].type, dns_cb, &q[i]);
    }
    for (;;) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd pfd[ARES_GETSOCK_MAXNUM];
        struct timeval maxtv, tv, *tvp;
        unsigned bits;
        int np = 0, ms, ready;

        pending = 0;
        for (int i = 0; i < n; i++)
            pending += !q[i].done;
        if (pending == 0)
            break;
        if (stopping(va) || (left = left_ms(c)) == 0) {
            cancelled = stopping(va);
            timed_out = !cancelled;
            ares_cancel(ch); /* calls back every query left with ARES_ECANCELLED */
            continue;
        }
        /* Not ARES_GETSOCK_WRITABLE: it shifts a signed 1 into bit 31. */
        bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = (short)(((bits >> i) & 1u ? POLLIN : 0) |
                               ((bits >> (i + ARES_GETSOCK_MAXNUM)) & 1u ? POLLOUT : 0));
            if (ev) {
                pfd[np].fd = socks[i];
                pfd[np].events = ev;
                pfd[np].revents = 0;
                np++;
            }
        }
        ms = (int)(left < STOP_SLICE_MS ? left : STOP_SLICE_MS);
        maxtv.tv_sec = ms / 1000;
        maxtv.tv_usec = (ms % 1000) * 1000;
        tvp = ares_timeout(ch, &maxtv, &tv);
        ms = (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000);
        ready = poll(pfd, (nfds_t)np, ms);
        if (ready <= 0) {
            ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD); /* timeouts */
            continue;
        }
        for (int i = 0; i < np; i++) {
            int rd = pfd[i].revents & (POLLIN | POLLERR | POLLHUP);
            int wr = pfd[i].revents & (POLLOUT | POLLERR | POLLHUP);
            if (rd || wr)
                ares_process_fd(ch, rd ? pfd[i].fd : ARES_SOCKET_BAD,
                                wr ? pfd[i].fd : ARES_SOCKET_BAD);
        }
    }
    ares_destroy(ch);
    if (cancelled) {
        dnsq_clear(q, n);
        return -ECANCELED;
    }
    for (int i = 0; i < n; i++) {
        if (q[i].status == ARES_ENOMEM) {
            dnsq_clear(q, n);
            fail(c, "serverInternal", "out of memory");
            return -ENOMEM;
        }
        if (timed_out && q[i].status == ARES_ECANCELLED)
            q[i].status = ARES_ETIMEOUT;
    }
    return 0;
}

/* host: an IP literal (no lookup) or a name (AAAA and A in one round).
 * 1 with as filled, 0 ("dns" problem), -ECANCELED. */
static int resolve_host(struct vctx *c, const char *host, struct addrs *as)
{
    struct dnsq q[2] = {{.type = QT_AAAA}, {.type = QT_A}};
    char b0[32], b1[32];
    int rc;

    memset(as, 0, sizeof(*as));
    if (parse_ip(host, &as->a[0]) == 0) {
        as->n = 1;
        return 1;
    }
    if ((rc = dns_run(c, host, q, 2)) < 0)
        return rc == -ECANCELED ? rc : 0;
    if (q[0].status == ARES_SUCCESS) {
        struct ares_addr6ttl t6[4];
        int n6 = 4;
        if (ares_parse_aaaa_reply(q[0].abuf, q[0].alen, NULL, t6, &n6) == ARES_SUCCESS && n6 > 0) {
            struct addr *a = &as->a[as->n++];
            a->family = AF_INET6;
            memcpy(&a->u.v6, &t6[0].ip6addr, sizeof(a->u.v6));
            inet_ntop(AF_INET6, &a->u.v6, a->text, sizeof(a->text));
        } else {
            q[0].status = ARES_ENODATA; /* e.g. only a CNAME */
        }
    }
    if (q[1].status == ARES_SUCCESS) {
        struct ares_addrttl t4[4];
        int n4 = 4;
        if (ares_parse_a_reply(q[1].abuf, q[1].alen, NULL, t4, &n4) == ARES_SUCCESS && n4 > 0) {
            struct addr *a = &as->a[as->n++];
            a->family = AF_INET;
            memcpy(&a->u.v4, &t4[0].ipaddr, sizeof(a->u.v4));
            inet_ntop(AF_INET, &a->u.v4, a->text, sizeof(a->text));
        } else {
            q[1].status = ARES_ENODATA;
        }
    }
    dnsq_clear(q, 2);
    if (as->n > 0)
        return 1;
    return fail(c, "dns", "no address for %s (A: %s; AAAA: %s)", host,
                dns_status_text(q[1].status, QT_A, b1, sizeof(b1)),
                dns_status_text(q[0].status, QT_AAAA, b0, sizeof(b0)));
}

/* ---- sockets ---- */

/* Waits for events on fd until `until` (monotonic ms) in slices that
 * notice the pool stopping. 1 ready, 0 timed out, -ECANCELED. */
static int wait_fd(struct vctx *c, int fd, short events, int64_t until)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int64_t left = until - now_ms();
        int r;

        if (stopping(c->va))
            return -ECANCELED;
        if (left <= 0)
            return 0;
        r = poll(&p, 1, (int)(left < STOP_SLICE_MS ? left : STOP_SLICE_MS));
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return 1; /* let the caller's next call report the error */
    }
}

/* A non-blocking TCP connection to a:port within until. fd, or -errno
 * (-ETIMEDOUT when until passed, -ECANCELED). */
static int tcp_connect(struct vctx *c, const struct addr *a, int port, int64_t until)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd, rc, soerr = 0;
    socklen_t sl = sizeof(soerr);

    memset(&ss, 0, sizeof(ss));
    if (a->family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        s4->sin_addr = a->u.v4;
        len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        s6->sin6_addr = a->u.v6;
        len = sizeof(*s6);
    }
    if ((fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&ss, len) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        rc = -errno;
        close(fd);
        return rc;
    }
    if ((rc = wait_fd(c, fd, POLLOUT, until)) <= 0) {
        close(fd);
        return rc < 0 ? rc : -ETIMEDOUT;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr != 0) {
        close(fd);
        return -soerr;
    }
    return fd;
}

static const char *connect_error_text(int err, char *buf, size_t n)
{
    switch (err) {
    case ECONNREFUSED:
        return "connection refused";
    case ETIMEDOUT:
        return "timeout";
    case ECONNRESET:
        return "connection reset";
    case ENETUNREACH:
        return "network unreachable";
    case EHOSTUNREACH:
        return "host unreachable";
    case EADDRNOTAVAIL:
        return "address not available";
    default:
        snprintf(buf, n, "%s", strerror(err));
        return buf;
    }
}

/* Appends "<msg> (<addr>)" to a "; "-separated list of per-address
 * failures. */
static void note_failure(char *errs, size_t n, const char *msg, const struct addr *a)
{
    size_t l = strlen(errs);

    snprintf(errs + l, n - l, "%s%s (%s)", l ? "; " : "", msg, a->text);
}

/* ---- http-01 ---- */

struct fetch {
    struct akm_va *va;
    char body[HTTP_BODY_MAX + 1];
    size_t len, hlen;
    int overflow, hoverflow;
    CURLcode rc;
    long status, oserr;
    curl_off_t connect_us;
    char errbuf[CURL_ERROR_SIZE];
    char location[AKM_URL_MAX];
};

static size_t on_body(char *p, size_t sz, size_t nmemb, void *arg)
{
    struct fetch *f = arg;
    size_t n = sz * nmemb;

    if (n > HTTP_BODY_MAX - f->len) {
        f->overflow = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    memcpy(f->body + f->len, p, n);
    f->len += n;
    return n;
}

static size_t on_header(char *p, size_t sz, size_t nmemb, void *arg)
{
    struct fetch *f = arg;
    size_t n = sz * nmemb;

    (void)p;
    if (n > HTTP_HEADERS_MAX - f->hlen) {
        f->hoverflow = 1;
        return 0; /* CURLE_WRITE_ERROR */
    }
    f->hlen += n;
    return n;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return stopping(arg) ? 1 : 0;
}

static pthread_once_t g_lib_once = PTHREAD_ONCE_INIT;
static int g_lib_rc;

static void lib_init_once(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        g_lib_rc = -EIO;
    else if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS)
        g_lib_rc = -EIO;
}

/* One GET of url, connecting to a: host:port is pinned to a unless host
 * is an IP literal, so curl resolves nothing itself. f gets the outcome. */
static void http_get(struct vctx *c, const char *url, const char *host, int port,
                     const struct addr *a, int64_t connect_ms, struct fetch *f)
{
    struct curl_slist *pin = NULL;
    char entry[512];
    char *loc = NULL;
    struct addr lit;
    CURL *e;
    int v6 = a->family == AF_INET6;

    f->va = c->va;
    f->len = 0;
    f->hlen = 0;
    f->overflow = 0;
    f->hoverflow = 0;
    f->status = 0;
    f->oserr = 0;
    f->connect_us = 0;
    f->errbuf[0] = '\0';
    f->location[0] = '\0';
    if ((e = curl_easy_init()) == NULL) {
        f->rc = CURLE_OUT_OF_MEMORY;
        return;
    }
    snprintf(entry, sizeof(entry), "%s:%d:%s%s%s", host, port, v6 ? "[" : "", a->text,
             v6 ? "]" : "");
    if (parse_ip(host, &lit) < 0 && (pin = curl_slist_append(NULL, entry)) == NULL) {
        curl_easy_cleanup(e);
        f->rc = CURLE_OUT_OF_MEMORY;
        return;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_RESOLVE, pin);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never a proxy from the environment */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "akamu-validation/1 (RFC 8555)");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_ms > 0 ? connect_ms : 1));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(left_ms(c) > 0 ? left_ms(c) : 1));
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)HTTP_BODY_MAX);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, c->va);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    f->rc = curl_easy_perform(e);
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &f->status);
    curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &f->oserr);
    curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &f->connect_us);
    if (curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
        snprintf(f->location, sizeof(f->location), "%s", loc);
    f->body[f->len] = '\0';
    curl_easy_cleanup(e);
    curl_slist_free_all(pin);
}

/* Whether the attempt failed before a connection existed (then the next
 * address may be tried). */
static int connect_failed(const struct fetch *f)
{
    return f->rc == CURLE_COULDNT_CONNECT ||
           (f->rc == CURLE_OPERATION_TIMEDOUT && f->connect_us == 0 && f->status == 0);
}

static void fetch_error_text(const struct vctx *c, const struct fetch *f, const char **type,
                             char *buf, size_t n)
{
    char eb[64];

    *type = "connection";
    switch (f->rc) {
    case CURLE_COULDNT_CONNECT:
        snprintf(buf, n, "%s",
                 f->oserr ? connect_error_text((int)f->oserr, eb, sizeof(eb)) : f->errbuf);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        if (f->connect_us == 0)
            snprintf(buf, n, "timeout connecting");
        else
            snprintf(buf, n, "timeout (no complete response within %d ms)", c->va->timeout_ms);
        break;
    case CURLE_GOT_NOTHING:
        snprintf(buf, n, "connection closed without a response");
        break;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        snprintf(buf, n, "%s",
                 f->oserr ? connect_error_text((int)f->oserr, eb, sizeof(eb)) : f->errbuf);
        break;
    case CURLE_WRITE_ERROR:
    case CURLE_FILESIZE_EXCEEDED:
        *type = "incorrectResponse";
        if (f->hoverflow)
            snprintf(buf, n, "response headers larger than %d bytes", HTTP_HEADERS_MAX);
        else
            snprintf(buf, n, "response body larger than %d bytes", HTTP_BODY_MAX);
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
        *type = "tls";
        snprintf(buf, n, "TLS handshake failed: %.200s", f->errbuf[0] ? f->errbuf : "unknown");
        break;
    case CURLE_OUT_OF_MEMORY:
        *type = "serverInternal";
        snprintf(buf, n, "out of memory");
        break;
    default:
        snprintf(buf, n, "%s", f->errbuf[0] ? f->errbuf : curl_easy_strerror(f->rc));
        break;
    }
}

/* Checks a redirect target against the rule at the top of this file and
 * makes it the next hop. 1, or 0 ("unauthorized" problem). */
static int follow(struct vctx *c, const char *loc, char *url, char *host, size_t hostsz, int *port)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *h = NULL, *p = NULL;
    int ok = 0, want;
    size_t hl;

    if (u == NULL)
        return fail(c, "serverInternal", "out of memory");
    if (strlen(loc) >= AKM_URL_MAX - 1) {
        fail(c, "unauthorized", "redirect to a URL longer than %d bytes", AKM_URL_MAX - 2);
        goto out;
    }
    if (curl_url_set(u, CURLUPART_URL, loc, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        fail(c, "unauthorized", "redirect to an unusable URL \"%.200s\"", loc);
        goto out;
    }
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        fail(c, "unauthorized", "redirect to %.200s: only http and https are followed", loc);
        goto out;
    }
    want = strcasecmp(scheme, "http") == 0 ? c->va->http_port : c->va->tls_alpn_port;
    if (atoi(p) != want) {
        fail(c, "unauthorized", "redirect to %.200s: %s is only followed to port %d", loc, scheme,
             want);
        goto out;
    }
    hl = strlen(h);
    if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') /* IPv6 literal */
        snprintf(host, hostsz, "%.*s", (int)(hl - 2), h + 1);
    else
        snprintf(host, hostsz, "%s", h);
    if (hl >= hostsz || host[0] == '\0') {
        fail(c, "unauthorized", "redirect to %.200s: bad host", loc);
        goto out;
    }
    snprintf(url, AKM_URL_MAX, "%s", loc);
    *port = want;
    ok = 1;
out:
    curl_free(scheme);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return ok;
}

static int http01(struct vctx *c)
{
    const struct akm_va_job *j = c->j;
    struct fetch *f = calloc(1, sizeof(*f));
    char url[AKM_URL_MAX], host[256], errs[DETAIL_MAX], msg[256], got[SHOW_MAX + 4];
    int port = c->va->http_port, rc = 0, v6 = strchr(j->value, ':') != NULL;
    size_t len, kl = strlen(j->key_auth);

    if (f == NULL) {
        snprintf(c->what, sizeof(c->what), "http-01");
        return fail(c, "serverInternal", "out of memory");
    }
    snprintf(url, sizeof(url), "http://%s%s%s:%d/.well-known/acme-challenge/%s", v6 ? "[" : "",
             j->value, v6 ? "]" : "", port, j->token);
    snprintf(host, sizeof(host), "%s", j->value);
    for (int hop = 0;; hop++) {
        struct addrs as;
        int i;

        if (hop == 0)
            snprintf(c->what, sizeof(c->what), "http-01: GET %s", url);
        else
            snprintf(c->what, sizeof(c->what), "http-01: GET %s (redirect %d)", url, hop);
        if ((rc = resolve_host(c, host, &as)) <= 0)
            goto out;
        errs[0] = '\0';
        for (i = 0; i < as.n; i++) {
            int64_t left = left_ms(c);
            if (left == 0) {
                rc = fail(c, "connection", "timeout after %d ms%s%s", c->va->timeout_ms,
                          errs[0] ? "; " : "", errs);
                goto out;
            }
            http_get(c, url, host, port, &as.a[i], i + 1 < as.n ? left / 2 : left, f);
            if (f->rc == CURLE_ABORTED_BY_CALLBACK && stopping(c->va)) {
                rc = -ECANCELED;
                goto out;
            }
            if (!connect_failed(f))
                break;
            {
                const char *t;
                fetch_error_text(c, f, &t, msg, sizeof(msg));
                note_failure(errs, sizeof(errs), msg, &as.a[i]);
            }
        }
        if (i == as.n) {
            rc = fail(c, "connection", "%s", errs);
            goto out;
        }
        if (f->rc != CURLE_OK) {
            const char *t;
            fetch_error_text(c, f, &t, msg, sizeof(msg));
            rc = fail(c, t, "%s (%s)", msg, as.a[i].text);
            goto out;
        }
        if (f->status == 301 || f->status == 302 || f->status == 303 || f->status == 307 ||
            f->status == 308) {
            if (f->location[0] == '\0') {
                rc = fail(c, "unauthorized", "status %ld without a Location (%s)", f->status,
                          as.a[i].text);
                goto out;
            }
            if (hop == MAX_REDIRECTS) {
                rc = fail(c, "unauthorized", "more than %d redirects", MAX_REDIRECTS);
                goto out;
            }
            if ((rc = follow(c, f->location, url, host, sizeof(host), &port)) == 0)
                goto out;
            continue;
        }
        if (f->status != 200) {
            show(f->body, f->len, got);
            rc = fail(c, "incorrectResponse", "status %ld, want 200 (%s; body \"%s\")", f->status,
                      as.a[i].text, got);
            goto out;
        }
        len = f->len;
        while (len > 0 && (f->body[len - 1] == ' ' || f->body[len - 1] == '\t' ||
                           f->body[len - 1] == '\r' || f->body[len - 1] == '\n'))
            len--;
        if (len != kl || memcmp(f->body, j->key_auth, kl) != 0) {
            show(f->body, f->len, got);
            rc = fail(c, "incorrectResponse",
                      "the body is not the key authorization (%s; got \"%s\", want \"%s\")",
                      as.a[i].text, got, j->key_auth);
            goto out;
        }
        rc = pass(c, "key authorization found (%s)", as.a[i].text);
        goto out;
    }
out:
    free(f);
    return rc;
}

/* ---- dns-01 ---- */

static int dns01(struct vctx *c)
{
    const struct akm_va_job *j = c->j;
    struct dnsq q = {.type = QT_TXT};
    struct ares_txt_ext *txt = NULL;
    char name[300], want[44], st[32], found[DETAIL_MAX / 2], got[SHOW_MAX + 4];
    char rec[TXT_MAX + 1];
    size_t rl = 0, fl = 0;
    int rc, n = 0, match = 0;

    snprintf(name, sizeof(name), "_acme-challenge.%s", j->value);
    snprintf(c->what, sizeof(c->what), "dns-01: TXT %s", name);
    if (strcmp(j->id_type, "ip") == 0)
        return fail(c, "malformed", "dns-01 cannot validate an IP identifier (RFC 8738 §7)");
    sha256_b64url(j->key_auth, want);
    if ((rc = dns_run(c, name, &q, 1)) < 0)
        return rc == -ECANCELED ? rc : 0;
    if (q.status != ARES_SUCCESS)
        return fail(c, "dns", "%s", dns_status_text(q.status, QT_TXT, st, sizeof(st)));
    rc = ares_parse_txt_reply_ext(q.abuf, q.alen, &txt);
    dnsq_clear(&q, 1);
    if (rc != ARES_SUCCESS)
        return fail(c, "dns", "%s", dns_status_text(rc, QT_TXT, st, sizeof(st)));
    found[0] = '\0';
    /* A record may come as several strings: they are one text (RFC 7208
     * §3.3 does the same), compared whole. */
    for (struct ares_txt_ext *t = txt;; t = t->next) {
        if (t == NULL || t->record_start || n == 0) {
            if (n > 0) {
                if (rl == strlen(want) && memcmp(rec, want, rl) == 0)
                    match = 1;
                if (n <= 3 && fl < sizeof(found) - 1) {
                    show(rec, rl > TXT_MAX ? TXT_MAX : rl, got);
                    fl += (size_t)snprintf(found + fl, sizeof(found) - fl, "%s\"%s\"",
                                           fl ? ", " : "", got);
                    if (fl >= sizeof(found))
                        fl = sizeof(found) - 1;
                }
            }
            if (t == NULL)
                break;
            n++;
            rl = 0;
        }
        if (rl <= TXT_MAX && t->length <= TXT_MAX - rl) {
            memcpy(rec + rl, t->txt, t->length);
            rl += t->length;
        } else {
            rl = TXT_MAX + 1; /* too long to be the digest */
        }
    }
    ares_free_data(txt);
    if (match)
        return pass(c, "found %s", want);
    if (n == 0)
        return fail(c, "dns", "no TXT records");
    return fail(c, "incorrectResponse", "no record is %s (found %d: %s%s)", want, n, found,
                n > 3 ? ", ..." : "");
}

/* ---- tls-alpn-01 ---- */

static const char *ssl_error_text(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0)
        return "no reason given";
    ERR_error_string_n(e, buf, n);
    return buf;
}

/* RFC 8737 §3 and RFC 8738 §6 on the presented certificate: exactly one
 * subjectAltName entry, the identifier; a critical id-pe-acmeIdentifier
 * holding an OCTET STRING of SHA-256(key authorization). */
static int check_cert(struct vctx *c, X509 *x, const struct addr *ip)
{
    const struct akm_va_job *j = c->j;
    unsigned char want[SHA256_DIGEST_LENGTH];
    GENERAL_NAMES *gens;
    GENERAL_NAME *g;
    ASN1_OBJECT *oid = NULL;
    ASN1_OCTET_STRING *inner = NULL;
    X509_EXTENSION *ext;
    const unsigned char *p;
    int crit = 0, idx, rc = 0, n;

    gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (gens == NULL)
        return fail(c, "incorrectResponse", "%s",
                    crit == -1   ? "the certificate has no subjectAltName"
                    : crit == -2 ? "the certificate has two subjectAltName extensions"
                                 : "the certificate's subjectAltName does not parse");
    n = sk_GENERAL_NAME_num(gens);
    g = n == 1 ? sk_GENERAL_NAME_value(gens, 0) : NULL;
    if (g == NULL) {
        rc = fail(c, "incorrectResponse", "the subjectAltName has %d entries, want exactly 1", n);
    } else if (ip == NULL) {
        const ASN1_IA5STRING *s = g->type == GEN_DNS ? g->d.dNSName : NULL;
        size_t vl = strlen(j->value);
        if (s == NULL || (size_t)ASN1_STRING_length(s) != vl ||
            strncasecmp((const char *)ASN1_STRING_get0_data(s), j->value, vl) != 0 ||
            memchr(ASN1_STRING_get0_data(s), 0, vl) != NULL)
            rc = fail(c, "incorrectResponse", "the subjectAltName is not the dNSName %s", j->value);
        else
            rc = 1;
    } else {
        const ASN1_OCTET_STRING *s = g->type == GEN_IPADD ? g->d.iPAddress : NULL;
        int al = ip->family == AF_INET ? 4 : 16;
        if (s == NULL || ASN1_STRING_length(s) != al ||
            memcmp(ASN1_STRING_get0_data(s), &ip->u, (size_t)al) != 0)
            rc = fail(c, "incorrectResponse", "the subjectAltName is not the iPAddress %s",
                      ip->text);
        else
            rc = 1;
    }
    GENERAL_NAMES_free(gens);
    if (rc != 1)
        return rc;
    rc = 0;
    if ((oid = OBJ_txt2obj(OID_ACME_IDENT, 1)) == NULL) {
        rc = fail(c, "serverInternal", "out of memory");
        goto out;
    }
    if ((idx = X509_get_ext_by_OBJ(x, oid, -1)) < 0) {
        rc = fail(c, "incorrectResponse", "the certificate has no acmeIdentifier extension (%s)",
                  OID_ACME_IDENT);
        goto out;
    }
    if (X509_get_ext_by_OBJ(x, oid, idx) >= 0) {
        rc = fail(c, "incorrectResponse", "the certificate has two acmeIdentifier extensions");
        goto out;
    }
    ext = X509_get_ext(x, idx);
    if (!X509_EXTENSION_get_critical(ext)) {
        rc = fail(c, "incorrectResponse", "the acmeIdentifier extension is not critical");
        goto out;
    }
    p = ASN1_STRING_get0_data(X509_EXTENSION_get_data(ext));
    n = ASN1_STRING_length(X509_EXTENSION_get_data(ext));
    if ((inner = d2i_ASN1_OCTET_STRING(NULL, &p, n)) == NULL ||
        p != ASN1_STRING_get0_data(X509_EXTENSION_get_data(ext)) + n) {
        rc = fail(c, "incorrectResponse", "the acmeIdentifier value is not one OCTET STRING");
        goto out;
    }
    SHA256((const unsigned char *)j->key_auth, strlen(j->key_auth), want);
    if (ASN1_STRING_length(inner) != (int)sizeof(want) ||
        CRYPTO_memcmp(ASN1_STRING_get0_data(inner), want, sizeof(want)) != 0) {
        rc = fail(c, "incorrectResponse",
                  "the acmeIdentifier is not SHA-256 of the key authorization");
        goto out;
    }
    rc = 1;
out:
    ASN1_OCTET_STRING_free(inner);
    ASN1_OBJECT_free(oid);
    return rc;
}

/* Handshake on a connected fd, then the checks. 1, 0 or -ECANCELED. */
static int alpn_handshake(struct vctx *c, int fd, const char *sni, const struct addr *a,
                          const struct addr *ip)
{
    static const unsigned char protos[] = "\x0a" ACME_TLS_1;
    const unsigned char *sel = NULL;
    unsigned int sl = 0;
    char eb[256];
    SSL *s = SSL_new(c->va->tls);
    X509 *x = NULL;
    int rc;

    if (s == NULL || SSL_set_fd(s, fd) != 1 || SSL_set_tlsext_host_name(s, sni) != 1 ||
        SSL_set_alpn_protos(s, protos, sizeof(protos) - 1) != 0) {
        rc = fail(c, "serverInternal", "TLS setup: %s", ssl_error_text(eb, sizeof(eb)));
        goto out;
    }
    SSL_set_connect_state(s);
    for (;;) {
        int r, e, w;
        ERR_clear_error();
        errno = 0;
        if ((r = SSL_do_handshake(s)) == 1)
            break;
        e = SSL_get_error(s, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            w = wait_fd(c, fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, c->deadline);
            if (w < 0) {
                rc = w;
                goto out;
            }
            if (w == 0) {
                rc = fail(c, "connection", "timeout in the TLS handshake after %d ms (%s)",
                          c->va->timeout_ms, a->text);
                goto out;
            }
            continue;
        }
        if (e == SSL_ERROR_SYSCALL && (errno == ECONNRESET || errno == EPIPE))
            rc = fail(c, "connection", "connection reset in the TLS handshake (%s)", a->text);
        else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN)
            rc = fail(c, "tls", "the server closed the connection in the TLS handshake (%s)",
                      a->text);
        else
            rc = fail(c, "tls", "TLS handshake failed: %s (%s)", ssl_error_text(eb, sizeof(eb)),
                      a->text);
        goto out;
    }
    SSL_get0_alpn_selected(s, &sel, &sl);
    if (sl != sizeof(ACME_TLS_1) - 1 || memcmp(sel, ACME_TLS_1, sl) != 0) {
        rc = fail(c, "tls", "the server did not negotiate the ALPN protocol %s (%s)", ACME_TLS_1,
                  a->text);
        goto out;
    }
    if ((x = SSL_get1_peer_certificate(s)) == NULL) {
        rc = fail(c, "tls", "the server presented no certificate (%s)", a->text);
        goto out;
    }
    if ((rc = check_cert(c, x, ip)) == 1)
        rc = pass(c, "acmeIdentifier matches (%s)", a->text);
out:
    X509_free(x);
    SSL_free(s); /* no close_notify: the server has nothing more to say */
    return rc;
}

static int tlsalpn01(struct vctx *c)
{
    const struct akm_va_job *j = c->j;
    struct addrs as = {0};
    struct addr ip = {0};
    char rev[80], errs[DETAIL_MAX], eb[64];
    const char *sni = j->value;
    int port = c->va->tls_alpn_port, is_ip = strcmp(j->id_type, "ip") == 0, rc, fd = -1, i;

    if (is_ip) {
        parse_ip(j->value, &ip); /* checked by run() */
        reverse_name(&ip, rev, sizeof(rev));
        sni = rev;
        as.n = 1;
        as.a[0] = ip;
    }
    snprintf(c->what, sizeof(c->what), "tls-alpn-01: %s%s%s:%d (SNI %s)",
             is_ip && ip.family == AF_INET6 ? "[" : "", j->value,
             is_ip && ip.family == AF_INET6 ? "]" : "", port, sni);
    if (!is_ip && (rc = resolve_host(c, j->value, &as)) <= 0)
        return rc;
    errs[0] = '\0';
    for (i = 0; i < as.n; i++) {
        int64_t left = left_ms(c);
        fd = tcp_connect(c, &as.a[i], port, now_ms() + (i + 1 < as.n ? left / 2 : left));
        if (fd == -ECANCELED)
            return fd;
        if (fd >= 0)
            break;
        note_failure(errs, sizeof(errs), connect_error_text(-fd, eb, sizeof(eb)), &as.a[i]);
    }
    if (fd < 0)
        return fail(c, "connection", "%s", errs);
    rc = alpn_handshake(c, fd, sni, &as.a[i], is_ip ? &ip : NULL);
    close(fd);
    return rc;
}

/* ---- CAA (RFC 8659) ---- */

/* Whether an issue/issuewild value names one of ids: the issuer domain
 * name before any ';' parameters (RFC 8659 §4.2), case-insensitive.
 * Parameters (RFC 8657 accounturi, validationmethods) are not evaluated. */
static int caa_names_us(char *const *ids, const unsigned char *v, size_t n)
{
    size_t b = 0, e;

    while (b < n && (v[b] == ' ' || v[b] == '\t'))
        b++;
    e = b;
    while (e < n && v[e] != ';' && v[e] != ' ' && v[e] != '\t')
        e++;
    if (e == b)
        return 0; /* ";" alone: no CA may issue */
    for (int i = 0; ids[i]; i++)
        if (strlen(ids[i]) == e - b && strncasecmp(ids[i], (const char *)v + b, e - b) == 0)
            return 1;
    return 0;
}

static int tag_is(const struct ares_caa_reply *r, const char *tag)
{
    return r->plength == strlen(tag) &&
           strncasecmp((const char *)r->property, tag, r->plength) == 0;
}

static int caa_evaluate(struct vctx *c, const char *at, struct ares_caa_reply *set, int wildcard)
{
    int n_issue = 0, n_wild = 0, ok_issue = 0, ok_wild = 0;
    char got[SHOW_MAX + 4];

    for (struct ares_caa_reply *r = set; r; r = r->next) {
        if (tag_is(r, "issue")) {
            n_issue++;
            ok_issue |= caa_names_us(c->va->caa_ids, r->value, r->length);
        } else if (tag_is(r, "issuewild")) {
            n_wild++;
            ok_wild |= caa_names_us(c->va->caa_ids, r->value, r->length);
        } else if ((r->critical & 0x80) && !tag_is(r, "iodef")) {
            show(r->property, r->plength, got);
            return fail(c, "caa", "CAA at %s has the unknown critical property \"%s\"", at, got);
        }
    }
    if (wildcard && n_wild > 0) {
        if (!ok_wild)
            return fail(c, "caa", "CAA issuewild at %s does not name this CA (%s)", at,
                        c->va->caa_ids[0]);
        return 1;
    }
    if (n_issue > 0 && !ok_issue)
        return fail(c, "caa", "CAA issue at %s does not name this CA (%s)", at, c->va->caa_ids[0]);
    return 1;
}

/* 1 (allowed), 0 ("caa" or "dns" problem), -ECANCELED. */
static int caa_run(struct vctx *c, const char *domain, int wildcard)
{
    const char *name = domain;
    char st[32];

    snprintf(c->what, sizeof(c->what), "caa: %s%s", wildcard ? "*." : "", domain);
    while (name && *name) {
        struct dnsq q = {.type = QT_CAA};
        struct ares_caa_reply *set = NULL;
        int rc;

        if ((rc = dns_run(c, name, &q, 1)) < 0)
            return rc == -ECANCELED ? rc : 0;
        if (q.status == ARES_SUCCESS) {
            rc = ares_parse_caa_reply(q.abuf, q.alen, &set);
            dnsq_clear(&q, 1);
            if (rc == ARES_SUCCESS && set) {
                rc = caa_evaluate(c, name, set, wildcard);
                ares_free_data(set);
                if (rc == 1)
                    return pass(c, "CAA at %s allows issuance", name);
                return rc;
            }
            if (rc != ARES_ENODATA)
                return fail(c, "dns", "CAA %s: %s", name,
                            dns_status_text(rc, QT_CAA, st, sizeof(st)));
        } else if (q.status != ARES_ENODATA && q.status != ARES_ENOTFOUND) {
            return fail(c, "dns", "CAA %s: %s", name,
                        dns_status_text(q.status, QT_CAA, st, sizeof(st)));
        }
        name = strchr(name, '.');
        name = name ? name + 1 : NULL;
    }
    return pass(c, "no CAA records");
}

int akm_va_caa_check(struct akm_va *va, const char *domain, int wildcard, json_t **problem)
{
    struct akm_va_job j;
    struct vctx c = {.va = va, .j = &j, .deadline = now_ms() + va->timeout_ms};
    int rc;

    memset(&j, 0, sizeof(j));
    *problem = NULL;
    if (va->caa_ids == NULL)
        return 0;
    rc = caa_run(&c, domain, wildcard);
    if (rc == 1)
        return 0;
    if (rc < 0)
        return rc;
    *problem = akm_problem_new(c.ptype, problem_status(c.ptype), "%s", c.detail);
    return strcmp(c.ptype, "caa") == 0 ? -EPERM : -EAGAIN;
}

int akm_va_set_caa(struct akm_va *va, const char *const *identities, struct ut_err *err)
{
    char **ids = NULL;
    int n = 0, rc = 0;

    while (identities && identities[n])
        n++;
    if (n > CAA_IDS_MAX) {
        ut_err_set(err, "validation: %d CAA identities, at most %d", n, CAA_IDS_MAX);
        return -EINVAL;
    }
    for (int i = 0; i < n; i++) {
        if (!dns_name_ok(identities[i])) {
            ut_err_set(err, "validation: CAA identity \"%.100s\" is not a domain name",
                       identities[i]);
            return -EINVAL;
        }
    }
    if (n > 0) {
        if ((ids = calloc((size_t)n + 1, sizeof(*ids))) == NULL)
            goto nomem;
        for (int i = 0; i < n; i++)
            if ((ids[i] = strdup(identities[i])) == NULL)
                goto nomem;
    }
    pthread_mutex_lock(&va->lock);
    if (va->submitted) {
        rc = -EBUSY;
    } else {
        char **old = va->caa_ids;
        va->caa_ids = ids;
        ids = old;
    }
    pthread_mutex_unlock(&va->lock);
    if (rc < 0)
        ut_err_set(err, "validation: CAA identities can only be set before the first job");
    goto out;
nomem:
    ut_err_set(err, "validation: out of memory");
    rc = -ENOMEM;
out:
    for (int i = 0; ids && ids[i]; i++)
        free(ids[i]);
    free(ids);
    return rc;
}

/* ---- the pool ---- */

static void run(struct akm_va *va, const struct akm_va_job *j)
{
    struct vctx c = {.va = va, .j = j, .deadline = now_ms() + va->timeout_ms};
    json_t *problem = NULL;
    struct addr ip;
    int rc, is_ip = strcmp(j->id_type, "ip") == 0;

    snprintf(c.what, sizeof(c.what), "%s: %s", j->type, j->value);
    if (is_ip ? parse_ip(j->value, &ip) < 0 : !dns_name_ok(j->value))
        rc = fail(&c, "malformed", "not a valid %s identifier",
                  is_ip ? "IP address" : "domain name");
    else if (strcmp(j->type, "http-01") == 0)
        rc = http01(&c);
    else if (strcmp(j->type, "dns-01") == 0)
        rc = dns01(&c);
    else
        rc = tlsalpn01(&c);
    /* akm_va_job has no wildcard flag (yet): "issue" is evaluated, so an
     * "issuewild" set is not honoured for wildcard authorizations. */
    if (rc == 1 && va->caa_ids && !is_ip) {
        char proof[DETAIL_MAX];
        snprintf(proof, sizeof(proof), "%s", c.detail);
        if ((rc = caa_run(&c, j->value, 0)) == 1)
            snprintf(c.detail, sizeof(c.detail), "%s", proof);
    }
    if (rc < 0)
        return; /* stopping: dropped like the jobs still queued */
    if (rc == 0)
        problem = akm_problem_new(c.ptype, problem_status(c.ptype), "%s", c.detail);
    ut_log(UT_LOG_INFO, MOD, rc == 1 ? "challenge validated" : "challenge failed",
           UT_LF_S("challenge", j->chall_id), UT_LF_S("type", j->type),
           UT_LF_S("identifier", j->value), UT_LF_S("detail", c.detail));
    va->done(va->k, j, rc == 1, problem);
}

static void *worker(void *arg)
{
    struct akm_va *va = arg;
    struct akm_va_job j;

    for (;;) {
        pthread_mutex_lock(&va->lock);
        while (!stopping(va) && va->qlen == 0)
            pthread_cond_wait(&va->wake, &va->lock);
        if (stopping(va)) {
            pthread_mutex_unlock(&va->lock);
            return NULL;
        }
        j = va->q[va->qhead];
        va->qhead = (va->qhead + 1) % va->qcap;
        va->qlen--;
        pthread_mutex_unlock(&va->lock);
        run(va, &j);
    }
}

/* "ip", "ip:port", "[v6]" or "[v6]:port"; a bare v6 address has no port. */
static int parse_resolver(const char *s, struct ares_addr_port_node *n)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(s, ':');
    long port = 53;
    size_t hl;

    memset(n, 0, sizeof(*n));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || (size_t)(end - s - 1) >= sizeof(host))
            return -EINVAL;
        hl = (size_t)(end - s - 1);
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        colon = end[1] == ':' ? end + 1 : NULL;
        if (end[1] != '\0' && colon == NULL)
            return -EINVAL;
    } else if (colon && strchr(s, ':') == colon) {
        hl = (size_t)(colon - s);
        if (hl >= sizeof(host))
            return -EINVAL;
        memcpy(host, s, hl);
        host[hl] = '\0';
    } else {
        if (strlen(s) >= sizeof(host))
            return -EINVAL;
        snprintf(host, sizeof(host), "%s", s);
        colon = NULL;
    }
    if (colon) {
        char *end;
        port = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
            return -EINVAL;
    }
    if (inet_pton(AF_INET, host, &n->addr.addr4) == 1)
        n->family = AF_INET;
    else if (inet_pton(AF_INET6, host, &n->addr.addr6) == 1)
        n->family = AF_INET6;
    else
        return -EINVAL;
    n->udp_port = (int)port;
    n->tcp_port = (int)port;
    return 0;
}

static void pool_free(struct akm_va *va)
{
    for (int i = 0; va->caa_ids && va->caa_ids[i]; i++)
        free(va->caa_ids[i]);
    free(va->caa_ids);
    SSL_CTX_free(va->tls);
    pthread_cond_destroy(&va->wake);
    pthread_mutex_destroy(&va->lock);
    free(va->threads);
    free(va->q);
    free(va);
}

int akm_va_new(struct akm_va **out, const struct akm_va_opts *o, struct ut_err *err)
{
    struct akm_va *va;
    sigset_t all, old;
    int rc = 0;

    *out = NULL;
    if (o->done == NULL) {
        ut_err_set(err, "validation: no done callback");
        return -EINVAL;
    }
    if (o->threads < 0 || o->threads > MAX_THREADS || o->queue_max < 0 ||
        o->queue_max > MAX_QUEUE || o->timeout_ms < 0 || o->timeout_ms > MAX_TIMEOUT_MS) {
        ut_err_set(err,
                   "validation: threads %d (0..%d), queue_max %d (0..%d), timeout_ms %d "
                   "(0..%d): out of range",
                   o->threads, MAX_THREADS, o->queue_max, MAX_QUEUE, o->timeout_ms, MAX_TIMEOUT_MS);
        return -EINVAL;
    }
    if (o->http_port < 0 || o->http_port > 65535 || o->tls_alpn_port < 0 ||
        o->tls_alpn_port > 65535) {
        ut_err_set(err, "validation: http_port %d / tls_alpn_port %d: not a port", o->http_port,
                   o->tls_alpn_port);
        return -EINVAL;
    }
    pthread_once(&g_lib_once, lib_init_once);
    if (g_lib_rc < 0) {
        ut_err_set(err, "validation: libcurl or c-ares global initialization failed");
        return g_lib_rc;
    }
    if ((va = calloc(1, sizeof(*va))) == NULL) {
        ut_err_set(err, "validation: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&va->lock, NULL);
    pthread_cond_init(&va->wake, NULL);
    atomic_init(&va->stop, 0);
    va->done = o->done;
    va->k = o->k;
    va->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    va->http_port = o->http_port ? o->http_port : 80;
    va->tls_alpn_port = o->tls_alpn_port ? o->tls_alpn_port : 443;
    va->qcap = (size_t)(o->queue_max ? o->queue_max : DEFAULT_QUEUE);
    if (o->resolver) {
        if (parse_resolver(o->resolver, &va->server) < 0) {
            ut_err_set(err, "validation: resolver \"%.100s\": expected \"ip\" or \"ip:port\"",
                       o->resolver);
            rc = -EINVAL;
            goto fail;
        }
        va->has_server = 1;
    }
    if ((va->tls = SSL_CTX_new(TLS_client_method())) == NULL ||
        SSL_CTX_set_min_proto_version(va->tls, TLS1_2_VERSION) != 1) {
        ut_err_set(err, "validation: TLS client context: %s",
                   ERR_reason_error_string(ERR_get_error()));
        rc = -EIO;
        goto fail;
    }
    SSL_CTX_set_verify(va->tls, SSL_VERIFY_NONE, NULL); /* self-signed by design */
    va->q = calloc(va->qcap, sizeof(*va->q));
    va->nthreads = o->threads ? o->threads : DEFAULT_THREADS;
    va->threads = calloc((size_t)va->nthreads, sizeof(*va->threads));
    if (va->q == NULL || va->threads == NULL) {
        ut_err_set(err, "validation: out of memory");
        rc = -ENOMEM;
        goto fail;
    }
    /* Workers take no asynchronous signals (SIGPIPE from a peer's reset
     * included); faults still reach their handlers. */
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGTRAP);
    sigdelset(&all, SIGABRT);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 0; i < va->nthreads; i++) {
        if ((rc = pthread_create(&va->threads[i], NULL, worker, va)) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            ut_err_set(err, "validation: starting worker %d: %s", i, strerror(rc));
            va->nthreads = i;
            akm_va_free(va);
            return -rc;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *out = va;
    return 0;
fail:
    pool_free(va);
    return rc;
}

static int field_ok(const char *f, size_t n)
{
    return memchr(f, '\0', n) != NULL && f[0] != '\0';
}

int akm_va_submit(struct akm_va *va, const struct akm_va_job *j, struct ut_err *err)
{
    const char *id = field_ok(j->chall_id, sizeof(j->chall_id)) ? j->chall_id : "?";
    size_t tl;
    int rc = 0;

    if (!field_ok(j->chall_id, sizeof(j->chall_id)) || !field_ok(j->type, sizeof(j->type)) ||
        !field_ok(j->id_type, sizeof(j->id_type)) || !field_ok(j->value, sizeof(j->value)) ||
        !field_ok(j->token, sizeof(j->token)) || !field_ok(j->key_auth, sizeof(j->key_auth))) {
        ut_err_set(err, "validation: job %.24s: an empty or unterminated field", id);
        return -EINVAL;
    }
    if (strcmp(j->type, "http-01") != 0 && strcmp(j->type, "dns-01") != 0 &&
        strcmp(j->type, "tls-alpn-01") != 0) {
        ut_err_set(err, "validation: job %s: unknown challenge type \"%s\"", id, j->type);
        return -EINVAL;
    }
    if (strcmp(j->id_type, "dns") != 0 && strcmp(j->id_type, "ip") != 0) {
        ut_err_set(err, "validation: job %s: unknown identifier type \"%s\"", id, j->id_type);
        return -EINVAL;
    }
    /* The token goes into a URL path: base64url only (RFC 8555 §8.1). */
    tl = strlen(j->token);
    if (strspn(j->token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
        tl) {
        ut_err_set(err, "validation: job %s: token \"%.63s\" is not base64url", id, j->token);
        return -EINVAL;
    }
    if (strncmp(j->key_auth, j->token, tl) != 0 || j->key_auth[tl] != '.') {
        ut_err_set(err, "validation: job %s: key_auth does not start with the token and '.'", id);
        return -EINVAL;
    }
    pthread_mutex_lock(&va->lock);
    if (stopping(va)) {
        rc = -ESHUTDOWN;
    } else if (va->qlen == va->qcap) {
        rc = -EBUSY;
    } else {
        va->q[(va->qhead + va->qlen) % va->qcap] = *j;
        va->qlen++;
        va->submitted = 1;
        pthread_cond_signal(&va->wake);
    }
    pthread_mutex_unlock(&va->lock);
    if (rc == -EBUSY)
        ut_err_set(err, "validation: queue full (%zu waiting)", va->qcap);
    else if (rc < 0)
        ut_err_set(err, "validation: the pool is stopping");
    return rc;
}

void akm_va_free(struct akm_va *va)
{
    if (va == NULL)
        return;
    pthread_mutex_lock(&va->lock);
    atomic_store(&va->stop, 1);
    pthread_cond_broadcast(&va->wake);
    pthread_mutex_unlock(&va->lock);
    for (int i = 0; i < va->nthreads; i++)
        pthread_join(va->threads[i], NULL);
    pool_free(va);
}
