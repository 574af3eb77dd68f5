/*
 * test_akamu_validate.c - the validation pool against real servers:
 * pebble-challtestsrv (DNS, http-01, tls-alpn-01, started here on free
 * loopback ports, driven through its management API) and small HTTP and
 * TLS servers in this file for what challtestsrv cannot do (silence,
 * oversized bodies, bad acmeIdentifier certificates, no ALPN, IP
 * identifiers).
 *
 * Every wait has a deadline, so a broken pool fails a test instead of
 * hanging it. AKM_VA_TEST_VERBOSE=1 shows challtestsrv's own log.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "acme.h"
#include "http/http.h"
#include "util/b64.h"
#include "util/log.h"
#include "validate.h"

#define WAIT_SECS 20 /* upper bound for any one result; never reached when things work */
#define THUMB     "Q0FfdGVzdF90aHVtYnByaW50X3BhZGRpbmdfeHh4eHh4eA"

static struct akamu g_k;

/* ---- pebble-challtestsrv ---- */

static struct {
    pid_t pid;
    int mgmt, dns, http, https, alpn;
    struct http_client *client;
    char resolver[32];
} g_cts;

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A loopback port free for TCP (and UDP when udp is set) right now. */
static int free_port(int udp)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t l = sizeof(a);
        int t = socket(AF_INET, SOCK_STREAM, 0), u = -1, port = -1;

        if (t >= 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(t, (struct sockaddr *)&a, &l) == 0) {
            port = ntohs(a.sin_port);
            if (udp) {
                u = socket(AF_INET, SOCK_DGRAM, 0);
                if (u < 0 || bind(u, (struct sockaddr *)&a, sizeof(a)) != 0)
                    port = -1;
            }
        }
        if (t >= 0)
            close(t);
        if (u >= 0)
            close(u);
        if (port > 0)
            return port;
    }
    return -1;
}

/* POSTs a JSON body to the management API; returns the HTTP status or
 * a negative transport error. */
static int mgmt(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int mgmt(const char *path, const char *fmt, ...)
{
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    struct http_response resp;
    struct ut_err err = {{0}};
    char url[128], body[1024];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", g_cts.mgmt, path);
    rc = http_client_do(g_cts.client, "POST", url, hdr, body, strlen(body), &resp, &err);
    if (rc < 0)
        return rc;
    rc = (int)resp.status;
    http_response_clear(&resp);
    return rc;
}

#define MGMT(path, ...) assert_int_equal(mgmt(path, __VA_ARGS__), 200)

static int cts_start(void)
{
    const char *bin =
        getenv("AKM_CHALLTESTSRV") ? getenv("AKM_CHALLTESTSRV") : "/usr/bin/pebble-challtestsrv";
    char m[32], d[32], h[32], hs[32], t[32];
    char *argv[] = {(char *)bin, "-management",  m,  "-dns01",     d, "-http01",
                    h,           "-https01",     hs, "-tlsalpn01", t, "-defaultIPv4",
                    "127.0.0.1", "-defaultIPv6", "", NULL};
    pid_t parent;
    struct http_client_opts co = {.connect_timeout_ms = 1000, .timeout_ms = 5000};
    int64_t until;
    int st;

    g_cts.mgmt = free_port(0);
    g_cts.dns = free_port(1);
    g_cts.http = free_port(0);
    g_cts.https = free_port(0);
    g_cts.alpn = free_port(0);
    snprintf(m, sizeof(m), "127.0.0.1:%d", g_cts.mgmt);
    snprintf(d, sizeof(d), "127.0.0.1:%d", g_cts.dns);
    snprintf(h, sizeof(h), "127.0.0.1:%d", g_cts.http);
    snprintf(hs, sizeof(hs), "127.0.0.1:%d", g_cts.https);
    snprintf(t, sizeof(t), "127.0.0.1:%d", g_cts.alpn);
    snprintf(g_cts.resolver, sizeof(g_cts.resolver), "127.0.0.1:%d", g_cts.dns);
    if (access(bin, X_OK) != 0) {
        fprintf(stderr, "%s: not found (Debian package pebble); set AKM_CHALLTESTSRV\n", bin);
        return -1;
    }
    /* fork+exec rather than posix_spawn: the child must die with us even
     * when this process is killed before the teardown (PR_SET_PDEATHSIG;
     * no threads exist yet, so the child may do more than exec). */
    parent = getpid();
    if ((g_cts.pid = fork()) < 0) {
        fprintf(stderr, "fork: %s\n", strerror(errno));
        return -1;
    }
    if (g_cts.pid == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(127);
        if (getenv("AKM_VA_TEST_VERBOSE") == NULL && null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(bin, argv);
        _exit(127);
    }
    if (http_client_new(&g_cts.client, &co, NULL) < 0)
        return -1;
    /* Ready when the management API answers (it starts last). */
    for (until = mono_ms() + 15000; mono_ms() < until; usleep(50 * 1000)) {
        if (mgmt("/set-default-ipv4", "{\"ip\":\"127.0.0.1\"}") == 200)
            return 0;
        if (waitpid(g_cts.pid, &st, WNOHANG) == g_cts.pid) {
            fprintf(stderr, "pebble-challtestsrv exited (status %d)\n", st);
            g_cts.pid = 0;
            return -1;
        }
    }
    fprintf(stderr, "pebble-challtestsrv did not answer on 127.0.0.1:%d\n", g_cts.mgmt);
    return -1;
}

static void cts_stop(void)
{
    int st;

    if (g_cts.pid > 0) {
        kill(g_cts.pid, SIGTERM);
        for (int64_t until = mono_ms() + 5000; mono_ms() < until; usleep(20 * 1000))
            if (waitpid(g_cts.pid, &st, WNOHANG) == g_cts.pid) {
                g_cts.pid = 0;
                break;
            }
        if (g_cts.pid > 0) {
            kill(g_cts.pid, SIGKILL);
            waitpid(g_cts.pid, &st, 0);
            g_cts.pid = 0;
        }
    }
    http_client_free(g_cts.client);
    g_cts.client = NULL;
}

/* ---- results ---- */

struct result {
    char chall[AKM_ID_LEN + 1];
    int ok;
    int k_ok; /* the callback got opts.k */
    json_t *problem;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct result r[256];
    int n;
} g_rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void on_done(struct akamu *k, const struct akm_va_job *j, int ok, json_t *problem)
{
    pthread_mutex_lock(&g_rec.mu); /* no cmocka asserts here: not the test's thread */
    if (g_rec.n < (int)(sizeof(g_rec.r) / sizeof(g_rec.r[0]))) {
        struct result *r = &g_rec.r[g_rec.n++];
        snprintf(r->chall, sizeof(r->chall), "%s", j->chall_id);
        r->ok = ok;
        r->k_ok = k == &g_k;
        r->problem = problem;
    } else {
        json_decref(problem);
    }
    pthread_cond_broadcast(&g_rec.cv);
    pthread_mutex_unlock(&g_rec.mu);
}

static struct result *find_result(const char *chall)
{
    for (int i = 0; i < g_rec.n; i++)
        if (strcmp(g_rec.r[i].chall, chall) == 0)
            return &g_rec.r[i];
    return NULL;
}

/* The result of chall, waiting up to secs. */
static struct result *wait_result(const char *chall, int secs)
{
    struct timespec until;
    struct result *r;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += secs;
    pthread_mutex_lock(&g_rec.mu);
    while ((r = find_result(chall)) == NULL)
        if (pthread_cond_timedwait(&g_rec.cv, &g_rec.mu, &until) == ETIMEDOUT)
            break;
    r = find_result(chall);
    pthread_mutex_unlock(&g_rec.mu);
    return r;
}

static const char *ptype(const struct result *r)
{
    const char *t = json_string_value(json_object_get(r->problem, "type"));

    return t && strncmp(t, AKM_PROBLEM_NS, strlen(AKM_PROBLEM_NS)) == 0 ? t + strlen(AKM_PROBLEM_NS)
                                                                        : "(none)";
}

static const char *pdetail(const struct result *r)
{
    const char *d = json_string_value(json_object_get(r->problem, "detail"));

    return d ? d : "";
}

/* Waits for chall and checks it: ok, or the problem type and a piece of
 * its detail. */
static void expect(const char *chall, int ok, const char *type, const char *part)
{
    struct result *r = wait_result(chall, WAIT_SECS);

    if (r == NULL)
        fail_msg("%s: no result within %d s", chall, WAIT_SECS);
    print_message("    %s: %s %s %s\n", chall, r->ok ? "valid" : "invalid", ptype(r), pdetail(r));
    assert_true(r->k_ok);
    assert_int_equal(r->ok, ok);
    if (ok) {
        assert_null(r->problem);
        return;
    }
    assert_non_null(r->problem);
    assert_string_equal(ptype(r), type);
    assert_int_equal(json_integer_value(json_object_get(r->problem, "status")),
                     strcmp(type, "incorrectResponse") == 0 || strcmp(type, "unauthorized") == 0 ||
                             strcmp(type, "caa") == 0
                         ? 403
                         : 400);
    if (part && strstr(pdetail(r), part) == NULL)
        fail_msg("%s: detail \"%s\" lacks \"%s\"", chall, pdetail(r), part);
}

/* ---- jobs and pools ---- */

static void make_job(struct akm_va_job *j, const char *chall, const char *type, const char *id_type,
                     const char *value, const char *token)
{
    memset(j, 0, sizeof(*j));
    snprintf(j->chall_id, sizeof(j->chall_id), "%s", chall);
    snprintf(j->type, sizeof(j->type), "%s", type);
    snprintf(j->id_type, sizeof(j->id_type), "%s", id_type);
    snprintf(j->value, sizeof(j->value), "%s", value);
    snprintf(j->token, sizeof(j->token), "%s", token);
    snprintf(j->key_auth, sizeof(j->key_auth), "%s.%s", token, THUMB);
}

static void key_auth(const char *token, char *out, size_t n)
{
    snprintf(out, n, "%s.%s", token, THUMB);
}

static void digest_b64(const char *ka, char out[44])
{
    unsigned char h[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)ka, strlen(ka), h);
    ut_b64_encode(h, sizeof(h), out, 1);
}

struct pool_opts {
    int threads, queue_max, timeout_ms, http_port, alpn_port;
    const char *resolver;
};

static struct akm_va *pool(struct pool_opts p)
{
    struct akm_va_opts o = {
        .threads = p.threads,
        .queue_max = p.queue_max,
        .timeout_ms = p.timeout_ms ? p.timeout_ms : 5000,
        .resolver = p.resolver ? p.resolver : g_cts.resolver,
        .http_port = p.http_port ? p.http_port : g_cts.http,
        .tls_alpn_port = p.alpn_port ? p.alpn_port : g_cts.alpn,
        .done = on_done,
        .k = &g_k,
    };
    struct ut_err err = {{0}};
    struct akm_va *va = NULL;

    if (akm_va_new(&va, &o, &err) < 0)
        fail_msg("akm_va_new: %s", err.msg);
    return va;
}

static void submit(struct akm_va *va, const char *chall, const char *type, const char *id_type,
                   const char *value, const char *token)
{
    struct akm_va_job j;
    struct ut_err err = {{0}};

    make_job(&j, chall, type, id_type, value, token);
    if (akm_va_submit(va, &j, &err) < 0)
        fail_msg("akm_va_submit %s: %s", chall, err.msg);
}

/* One job on a fresh pool, then its result checked. */
static void check1(struct pool_opts p, const char *type, const char *id_type, const char *value,
                   const char *token, int ok, const char *ptype_, const char *part)
{
    static int seq;
    struct akm_va *va = pool(p);
    char chall[AKM_ID_LEN + 1];

    snprintf(chall, sizeof(chall), "chall%04d", ++seq);
    submit(va, chall, type, id_type, value, token);
    expect(chall, ok, ptype_, part);
    akm_va_free(va);
}

#define P(...) ((struct pool_opts){__VA_ARGS__})

/* ---- a small HTTP/TLS server ---- */

enum srv_mode {
    SRV_SERVE,   /* 200 with body */
    SRV_SILENT,  /* reads the request, answers nothing until released */
    SRV_BIG,     /* 200 with 100 KiB and no Content-Length */
    SRV_HEADERS, /* 200 with 64 KiB of header lines */
};

struct tsrv {
    int fd, port, wake[2];
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int mode, release, stop, accepted;
    int status; /* SRV_SERVE: 0 means 200 */
    char body[256];
    char host[256], path[256], sni[256]; /* what the last client sent */
    SSL_CTX *tls;                        /* NULL: plain HTTP */
};

static void srv_http(struct tsrv *s, int fd)
{
    char req[8192], resp[512];
    size_t n = 0;
    ssize_t r;
    char *h, *e;
    int mode;

    while (n < sizeof(req) - 1 && (r = read(fd, req + n, sizeof(req) - 1 - n)) > 0) {
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[n] = '\0';
    pthread_mutex_lock(&s->mu);
    if (sscanf(req, "GET %255s ", s->path) != 1)
        s->path[0] = '\0';
    s->host[0] = '\0';
    if ((h = strcasestr(req, "\r\nHost: ")) != NULL && (e = strstr(h + 8, "\r\n")) != NULL)
        snprintf(s->host, sizeof(s->host), "%.*s", (int)(e - h - 8), h + 8);
    mode = s->mode;
    if (mode == SRV_SILENT) {
        while (!s->release && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
        return; /* closes without a word */
    }
    if (mode == SRV_SERVE)
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 %d X\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n%s",
                 s->status ? s->status : 200, strlen(s->body), s->body);
    else if (mode == SRV_BIG) /* the body ends when the connection does */
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n");
    else /* the header lines follow */
        snprintf(resp, sizeof(resp), "HTTP/1.1 200 OK\r\n");
    pthread_mutex_unlock(&s->mu);
    if (write(fd, resp, strlen(resp)) < 0)
        return;
    if (mode == SRV_BIG) {
        static char big[100 * 1024];
        memset(big, 'a', sizeof(big));
        (void)!write(fd, big, sizeof(big)); /* the client gives up early: EPIPE is fine */
    }
    for (int i = 0; mode == SRV_HEADERS && i < 1024; i++) {
        static const char line[64] =
            "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        if (write(fd, line, sizeof(line)) < 0)
            break;
    }
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    for (unsigned int i = 0; i < inlen; i += 1u + in[i])
        if (in[i] == 10 && i + 11 <= inlen && memcmp(in + i + 1, "acme-tls/1", 10) == 0) {
            *out = in + i + 1;
            *outlen = 10;
            return SSL_TLSEXT_ERR_OK;
        }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* Runs on the ClientHello, before the server's first flight: the SNI is
 * recorded before the client can finish (with TLS 1.3 the client is done
 * before SSL_accept returns here). */
static int on_sni(SSL *ssl, int *alert, void *arg)
{
    struct tsrv *s = arg;
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

    (void)alert;
    pthread_mutex_lock(&s->mu);
    snprintf(s->sni, sizeof(s->sni), "%s", sni ? sni : "");
    pthread_mutex_unlock(&s->mu);
    return SSL_TLSEXT_ERR_OK;
}

static void srv_tls(struct tsrv *s, int fd)
{
    SSL *ssl = SSL_new(s->tls);

    if (ssl == NULL)
        return;
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1)
        SSL_shutdown(ssl);
    SSL_free(ssl);
}

static void *srv_main(void *arg)
{
    struct tsrv *s = arg;

    for (;;) {
        struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN},
                              {.fd = s->wake[0], .events = POLLIN}};
        struct timeval tv = {.tv_sec = 5};
        int cfd;

        if (poll(p, 2, -1) < 0 || p[1].revents)
            return NULL;
        if ((cfd = accept(s->fd, NULL, NULL)) < 0)
            continue;
        setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        pthread_mutex_lock(&s->mu);
        s->accepted++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        if (s->tls)
            srv_tls(s, cfd);
        else
            srv_http(s, cfd);
        close(cfd);
    }
}

/* On 127.0.0.1, or ::1 when v6 is set. */
static struct tsrv *srv_start_af(int mode, const char *body, SSL_CTX *tls, int v6)
{
    struct tsrv *s = calloc(1, sizeof(*s));
    struct sockaddr_storage ss;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    socklen_t l = v6 ? sizeof(*a6) : sizeof(*a4);

    assert_non_null(s);
    s->mode = mode;
    s->tls = tls;
    if (tls) {
        SSL_CTX_set_tlsext_servername_callback(tls, on_sni);
        SSL_CTX_set_tlsext_servername_arg(tls, s);
    }
    snprintf(s->body, sizeof(s->body), "%s", body ? body : "");
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    assert_int_equal(pipe(s->wake), 0);
    memset(&ss, 0, sizeof(ss));
    if (v6) {
        a6->sin6_family = AF_INET6;
        a6->sin6_addr = in6addr_loopback;
    } else {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    s->fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&ss, l), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&ss, &l), 0);
    s->port = ntohs(v6 ? a6->sin6_port : a4->sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
    return s;
}

static struct tsrv *srv_start(int mode, const char *body, SSL_CTX *tls)
{
    return srv_start_af(mode, body, tls, 0);
}

/* Waits until the server has accepted n connections (10 s at most). */
static void srv_wait_accepted(struct tsrv *s, int n)
{
    int64_t until = mono_ms() + 10000;

    pthread_mutex_lock(&s->mu);
    while (s->accepted < n && mono_ms() < until) {
        pthread_mutex_unlock(&s->mu);
        usleep(10 * 1000);
        pthread_mutex_lock(&s->mu);
    }
    assert_true(s->accepted >= n);
    pthread_mutex_unlock(&s->mu);
}

static void srv_release(struct tsrv *s, int new_mode)
{
    pthread_mutex_lock(&s->mu);
    s->mode = new_mode;
    s->release = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void srv_stop(struct tsrv *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(write(s->wake[1], "x", 1), 1);
    pthread_join(s->th, NULL);
    close(s->fd);
    close(s->wake[0]);
    close(s->wake[1]);
    SSL_CTX_free(s->tls);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- tls-alpn-01 certificates ---- */

enum { EXT_NONE, EXT_CRITICAL, EXT_NONCRITICAL };

struct certspec {
    const char *dns, *dns2, *ip; /* SAN entries */
    int ext;
    const char *ka; /* digested into the acmeIdentifier */
    int alpn;       /* the server negotiates acme-tls/1 */
};

static EVP_PKEY *g_key;

static SSL_CTX *tls_ctx(struct certspec cs)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    const char *dns[2] = {cs.dns, cs.dns2};
    SSL_CTX *ctx;

    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1729);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"acme test", -1, -1,
                               0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, name);
    X509_NAME_free(name);
    X509_set_pubkey(x, g_key);
    for (int i = 0; i < 2; i++) {
        if (dns[i]) {
            GENERAL_NAME *g = GENERAL_NAME_new();
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            ASN1_STRING_set(s, dns[i], -1);
            GENERAL_NAME_set0_value(g, GEN_DNS, s);
            sk_GENERAL_NAME_push(gens, g);
        }
    }
    if (cs.ip) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        GENERAL_NAME_set0_value(g, GEN_IPADD, a2i_IPADDRESS(cs.ip));
        sk_GENERAL_NAME_push(gens, g);
    }
    assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT), 1);
    GENERAL_NAMES_free(gens);
    if (cs.ext != EXT_NONE) {
        unsigned char h[SHA256_DIGEST_LENGTH], *der = NULL;
        ASN1_OCTET_STRING *inner = ASN1_OCTET_STRING_new(), *outer = ASN1_OCTET_STRING_new();
        ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
        X509_EXTENSION *ext;
        int dl;

        SHA256((const unsigned char *)cs.ka, strlen(cs.ka), h);
        ASN1_OCTET_STRING_set(inner, h, sizeof(h));
        dl = i2d_ASN1_OCTET_STRING(inner, &der);
        ASN1_OCTET_STRING_set(outer, der, dl);
        ext = X509_EXTENSION_create_by_OBJ(NULL, oid, cs.ext == EXT_CRITICAL, outer);
        assert_non_null(ext);
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
        ASN1_OBJECT_free(oid);
        ASN1_OCTET_STRING_free(inner);
        ASN1_OCTET_STRING_free(outer);
        OPENSSL_free(der);
    }
    assert_true(X509_sign(x, g_key, EVP_sha256()) > 0);
    ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, g_key), 1);
    if (cs.alpn)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    X509_free(x);
    return ctx;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    pthread_condattr_t ca;

    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_k.base, sizeof(g_k.base), "http://acme.test");
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g_rec.cv, &ca);
    pthread_condattr_destroy(&ca);
    g_key = EVP_EC_gen("P-256");
    if (g_key == NULL)
        return -1;
    return cts_start();
}

static int group_teardown(void **state)
{
    (void)state;
    cts_stop();
    EVP_PKEY_free(g_key);
    for (int i = 0; i < g_rec.n; i++)
        json_decref(g_rec.r[i].problem);
    return 0;
}

/* ---- tests: options and submission ---- */

static void test_new_rejects_bad_opts(void **state)
{
    struct akm_va_opts o = {.done = on_done, .k = &g_k};
    struct ut_err err = {{0}};
    struct akm_va *va = (struct akm_va *)1;

    (void)state;
    o.resolver = "resolver.example";
    assert_int_equal(akm_va_new(&va, &o, &err), -EINVAL);
    assert_null(va);
    assert_non_null(strstr(err.msg, "resolver.example"));
    o.resolver = "127.0.0.1:99999";
    assert_int_equal(akm_va_new(&va, &o, &err), -EINVAL);
    o.resolver = NULL;
    o.threads = -1;
    assert_int_equal(akm_va_new(&va, &o, &err), -EINVAL);
    o.threads = 0;
    o.done = NULL;
    assert_int_equal(akm_va_new(&va, &o, &err), -EINVAL);
    /* All the accepted resolver spellings. */
    o.done = on_done;
    o.resolver = "::1";
    assert_int_equal(akm_va_new(&va, &o, &err), 0);
    akm_va_free(va);
    o.resolver = "[::1]:5353";
    assert_int_equal(akm_va_new(&va, &o, &err), 0);
    akm_va_free(va);
    o.resolver = "10.0.0.1";
    assert_int_equal(akm_va_new(&va, &o, &err), 0);
    akm_va_free(va);
}

static void test_submit_rejects_bad_jobs(void **state)
{
    struct akm_va *va = pool(P(.threads = 1));
    struct ut_err err = {{0}};
    struct akm_va_job j;

    (void)state;
    make_job(&j, "bad1", "http-02", "dns", "a.test", "tok");
    assert_int_equal(akm_va_submit(va, &j, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "http-02"));
    make_job(&j, "bad2", "http-01", "email", "a.test", "tok");
    assert_int_equal(akm_va_submit(va, &j, &err), -EINVAL);
    make_job(&j, "bad3", "http-01", "dns", "a.test", "../../etc/passwd");
    assert_int_equal(akm_va_submit(va, &j, &err), -EINVAL);
    make_job(&j, "bad4", "http-01", "dns", "a.test", "tok");
    snprintf(j.key_auth, sizeof(j.key_auth), "other.%s", THUMB);
    assert_int_equal(akm_va_submit(va, &j, &err), -EINVAL);
    make_job(&j, "bad5", "http-01", "dns", "a.test", "tok");
    memset(j.value, 'a', sizeof(j.value)); /* unterminated */
    assert_int_equal(akm_va_submit(va, &j, &err), -EINVAL);
    akm_va_free(va);
    /* Identifier syntax is the job's business: a "malformed" problem. */
    check1(P(), "http-01", "dns", "bad_name.test", "tokMal", 0, "malformed", "domain name");
    check1(P(), "http-01", "ip", "300.1.2.3", "tokMal", 0, "malformed", "IP address");
}

/* ---- tests: http-01 ---- */

static void test_http01_valid(void **state)
{
    char ka[160];

    (void)state;
    key_auth("tokHttpValid", ka, sizeof(ka));
    MGMT("/add-http01", "{\"token\":\"tokHttpValid\",\"content\":\"%s\"}", ka);
    check1(P(), "http-01", "dns", "http-valid.test", "tokHttpValid", 1, NULL, NULL);
}

static void test_http01_trailing_whitespace(void **state)
{
    char ka[160];

    (void)state;
    key_auth("tokHttpWs", ka, sizeof(ka));
    MGMT("/add-http01", "{\"token\":\"tokHttpWs\",\"content\":\"%s\\r\\n \\t\\n\"}", ka);
    check1(P(), "http-01", "dns", "http-ws.test", "tokHttpWs", 1, NULL, NULL);
    /* Leading whitespace is not allowed. */
    MGMT("/add-http01", "{\"token\":\"tokHttpLead\",\"content\":\" tokHttpLead.%s\"}", THUMB);
    check1(P(), "http-01", "dns", "http-ws.test", "tokHttpLead", 0, "incorrectResponse",
           "not the key authorization");
}

static void test_http01_wrong_content(void **state)
{
    (void)state;
    MGMT("/add-http01", "{\"token\":\"tokHttpWrong\",\"content\":\"tokHttpWrong.other\"}");
    check1(P(), "http-01", "dns", "http-wrong.test", "tokHttpWrong", 0, "incorrectResponse",
           "got \"tokHttpWrong.other\"");
}

static void test_http01_not_found(void **state)
{
    char ka[160], want[256];
    struct tsrv *s;

    (void)state;
    key_auth("tokHttpNone", ka, sizeof(ka));
    s = srv_start(SRV_SERVE, ka, NULL); /* the right body, the wrong status */
    s->status = 404;
    snprintf(want, sizeof(want),
             "http-01: GET http://127.0.0.1:%d/.well-known/acme-challenge/tokHttpNone: "
             "status 404, want 200 (127.0.0.1; body \"tokHttpNone.",
             s->port);
    check1(P(.http_port = s->port), "http-01", "ip", "127.0.0.1", "tokHttpNone", 0,
           "incorrectResponse", want);
    srv_stop(s);
}

static void test_http01_refused(void **state)
{
    int port = free_port(0);
    char want[256];

    (void)state;
    snprintf(want, sizeof(want),
             "http-01: GET http://http-refused.test:%d/.well-known/acme-challenge/tokRef: "
             "connection refused (127.0.0.1)",
             port);
    check1(P(.http_port = port), "http-01", "dns", "http-refused.test", "tokRef", 0, "connection",
           want);
}

/* AAAA first: ::1 has nothing on the port, so the A address is used. */
static void test_http01_ipv6_fallback(void **state)
{
    char ka[160];

    (void)state;
    key_auth("tokHttpV6", ka, sizeof(ka));
    MGMT("/add-http01", "{\"token\":\"tokHttpV6\",\"content\":\"%s\"}", ka);
    MGMT("/add-aaaa", "{\"host\":\"dual.test\",\"addresses\":[\"::1\"]}");
    check1(P(), "http-01", "dns", "dual.test", "tokHttpV6", 1, NULL, NULL);
    /* Only the AAAA address, and nothing there: the failure names it. */
    MGMT("/add-aaaa", "{\"host\":\"v6only.test\",\"addresses\":[\"::1\"]}");
    MGMT("/add-a", "{\"host\":\"v6only.test\",\"addresses\":[\"127.0.0.2\"]}");
    check1(P(.http_port = free_port(0)), "http-01", "dns", "v6only.test", "tokHttpV6", 0,
           "connection", "(::1); connection refused (127.0.0.2)");
}

static void test_http01_dns_failures(void **state)
{
    (void)state;
    MGMT("/set-servfail", "{\"host\":\"servfail.test\"}");
    check1(P(), "http-01", "dns", "servfail.test", "tokDns", 0, "dns",
           "no address for servfail.test (A: SERVFAIL; AAAA: SERVFAIL)");
    /* No default address: an empty answer. */
    MGMT("/set-default-ipv4", "{\"ip\":\"\"}");
    check1(P(), "http-01", "dns", "nothing.test", "tokDns", 0, "dns", "A: no A records");
    MGMT("/set-default-ipv4", "{\"ip\":\"127.0.0.1\"}");
    /* Only the configured resolver is asked: nothing listens there. */
    {
        char r[32];
        snprintf(r, sizeof(r), "127.0.0.1:%d", free_port(1));
        check1(P(.resolver = r, .timeout_ms = 2000), "http-01", "dns", "http-valid.test",
               "tokHttpValid", 0, "dns", "no address for http-valid.test");
    }
}

static void test_http01_redirects(void **state)
{
    char ka[160];

    (void)state;
    /* Same port, another host and path: followed. */
    key_auth("tokRedir", ka, sizeof(ka));
    MGMT("/add-http01", "{\"token\":\"tokRedirTarget\",\"content\":\"%s\"}", ka);
    MGMT("/add-redirect",
         "{\"path\":\"/.well-known/acme-challenge/tokRedir\",\"targetURL\":"
         "\"http://target.test:%d/.well-known/acme-challenge/tokRedirTarget\"}",
         g_cts.http);
    check1(P(), "http-01", "dns", "redir.test", "tokRedir", 1, NULL, NULL);
    /* https on the port standing in for 443 (challtestsrv's -https01 here), with a
     * self-signed certificate: followed, the certificate unchecked. */
    MGMT("/add-redirect",
         "{\"path\":\"/.well-known/acme-challenge/tokRedirHttps\",\"targetURL\":"
         "\"https://target.test:%d/.well-known/acme-challenge/tokRedirHttpsT\"}",
         g_cts.https);
    key_auth("tokRedirHttps", ka, sizeof(ka));
    MGMT("/add-http01", "{\"token\":\"tokRedirHttpsT\",\"content\":\"%s\"}", ka);
    check1(P(.alpn_port = g_cts.https), "http-01", "dns", "redir.test", "tokRedirHttps", 1, NULL,
           NULL);
    /* ... and not on any other port. */
    check1(P(), "http-01", "dns", "redir.test", "tokRedirHttps", 0, "unauthorized",
           "https is only followed to port");
    /* Another port: refused. */
    MGMT("/add-redirect",
         "{\"path\":\"/.well-known/acme-challenge/tokRedirPort\",\"targetURL\":"
         "\"http://target.test:%d/.well-known/acme-challenge/tokRedirTarget\"}",
         g_cts.http + 1);
    check1(P(), "http-01", "dns", "redir.test", "tokRedirPort", 0, "unauthorized",
           "only followed to port");
    /* Another scheme. */
    MGMT("/add-redirect", "{\"path\":\"/.well-known/acme-challenge/tokRedirFtp\",\"targetURL\":"
                          "\"ftp://target.test/x\"}");
    check1(P(), "http-01", "dns", "redir.test", "tokRedirFtp", 0, "unauthorized",
           "only http and https");
    /* A loop ends after 10 redirects. */
    MGMT("/add-redirect",
         "{\"path\":\"/.well-known/acme-challenge/tokRedirLoop\",\"targetURL\":"
         "\"http://loop.test:%d/.well-known/acme-challenge/tokRedirLoop\"}",
         g_cts.http);
    check1(P(), "http-01", "dns", "redir.test", "tokRedirLoop", 0, "unauthorized",
           "more than 10 redirects");
}

static void test_http01_ip_identifier(void **state)
{
    char ka[160], want[64];
    struct tsrv *s;

    (void)state;
    key_auth("tokIp", ka, sizeof(ka));
    s = srv_start(SRV_SERVE, ka, NULL);
    check1(P(.http_port = s->port), "http-01", "ip", "127.0.0.1", "tokIp", 1, NULL, NULL);
    snprintf(want, sizeof(want), "127.0.0.1:%d", s->port);
    assert_string_equal(s->host, want);
    assert_string_equal(s->path, "/.well-known/acme-challenge/tokIp");
    srv_stop(s);
}

static void test_http01_ipv6_identifier(void **state)
{
    char ka[160], want[64];
    struct tsrv *s;

    (void)state;
    key_auth("tokIp6", ka, sizeof(ka));
    s = srv_start_af(SRV_SERVE, ka, NULL, 1);
    check1(P(.http_port = s->port), "http-01", "ip", "::1", "tokIp6", 1, NULL, NULL);
    snprintf(want, sizeof(want), "[::1]:%d", s->port);
    assert_string_equal(s->host, want);
    srv_stop(s);
}

static void test_http01_response_caps(void **state)
{
    struct tsrv *s = srv_start(SRV_BIG, NULL, NULL);

    (void)state;
    check1(P(.http_port = s->port), "http-01", "ip", "127.0.0.1", "tokBig", 0, "incorrectResponse",
           "response body larger than 8192 bytes");
    srv_stop(s);
    s = srv_start(SRV_HEADERS, NULL, NULL);
    check1(P(.http_port = s->port), "http-01", "ip", "127.0.0.1", "tokBig", 0, "incorrectResponse",
           "response headers larger than 16384 bytes");
    srv_stop(s);
}

static void test_http01_timeout(void **state)
{
    struct tsrv *s = srv_start(SRV_SILENT, NULL, NULL);
    int64_t t0 = mono_ms();

    (void)state;
    /* check1 waits WAIT_SECS at most: finishing at all is the point. */
    check1(P(.http_port = s->port, .timeout_ms = 500), "http-01", "ip", "127.0.0.1", "tokSlow", 0,
           "connection", "timeout (no complete response within 500 ms)");
    print_message("    timed out after %lld ms\n", (long long)(mono_ms() - t0));
    srv_release(s, SRV_SILENT);
    srv_stop(s);
}

/* ---- tests: the pool ---- */

static void test_queue_full(void **state)
{
    char ka[160];
    struct tsrv *s;
    struct akm_va *va;
    struct akm_va_job j;
    struct ut_err err = {{0}};

    (void)state;
    key_auth("tokQueue", ka, sizeof(ka));
    s = srv_start(SRV_SILENT, ka, NULL);
    va = pool(P(.threads = 1, .queue_max = 1, .http_port = s->port, .timeout_ms = 15000));
    submit(va, "queueA", "http-01", "ip", "127.0.0.1", "tokQueue");
    srv_wait_accepted(s, 1); /* A is on the worker, not in the queue */
    submit(va, "queueB", "http-01", "ip", "127.0.0.1", "tokQueue");
    make_job(&j, "queueC", "http-01", "ip", "127.0.0.1", "tokQueue");
    assert_int_equal(akm_va_submit(va, &j, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "queue full"));
    srv_release(s, SRV_SERVE); /* A's connection closes unanswered, B gets the body */
    expect("queueA", 0, "connection", "connection closed without a response");
    expect("queueB", 1, NULL, NULL);
    assert_int_equal(akm_va_submit(va, &j, &err), 0); /* room again */
    expect("queueC", 1, NULL, NULL);
    akm_va_free(va);
    srv_stop(s);
}

static void test_free_with_job_in_flight(void **state)
{
    struct tsrv *s = srv_start(SRV_SILENT, NULL, NULL);
    struct akm_va *va;
    int64_t t0;

    (void)state;
    va = pool(P(.threads = 2, .http_port = s->port, .timeout_ms = 60000));
    submit(va, "inflight1", "http-01", "ip", "127.0.0.1", "tokFree");
    submit(va, "inflight2", "http-01", "ip", "127.0.0.1", "tokFree");
    submit(va, "queued3", "http-01", "ip", "127.0.0.1", "tokFree");
    srv_wait_accepted(s, 1);
    t0 = mono_ms();
    akm_va_free(va);
    print_message("    akm_va_free took %lld ms\n", (long long)(mono_ms() - t0));
    assert_true(mono_ms() - t0 < 10000); /* the job's own timeout is 60 s */
    /* Aborted and queued jobs end without a callback (acme.h). */
    pthread_mutex_lock(&g_rec.mu);
    assert_null(find_result("inflight1"));
    assert_null(find_result("inflight2"));
    assert_null(find_result("queued3"));
    pthread_mutex_unlock(&g_rec.mu);
    srv_release(s, SRV_SILENT);
    srv_stop(s);
}

/* ---- tests: dns-01 ---- */

static void test_dns01_valid(void **state)
{
    char ka[160], d[44];

    (void)state;
    key_auth("tokDnsValid", ka, sizeof(ka));
    digest_b64(ka, d);
    MGMT("/set-txt", "{\"host\":\"_acme-challenge.dns-valid.test.\",\"value\":\"%s\"}", d);
    check1(P(), "dns-01", "dns", "dns-valid.test", "tokDnsValid", 1, NULL, NULL);
    /* Among other records. */
    key_auth("tokDnsMulti", ka, sizeof(ka));
    digest_b64(ka, d);
    MGMT("/set-txt", "{\"host\":\"_acme-challenge.dns-multi.test.\",\"value\":\"v=spf1 -all\"}");
    MGMT("/set-txt", "{\"host\":\"_acme-challenge.dns-multi.test.\",\"value\":\"%s\"}", d);
    check1(P(), "dns-01", "dns", "dns-multi.test", "tokDnsMulti", 1, NULL, NULL);
}

static void test_dns01_wrong(void **state)
{
    char ka[160], d[44];

    (void)state;
    key_auth("tokDnsOther", ka, sizeof(ka));
    digest_b64(ka, d); /* another challenge's digest */
    MGMT("/set-txt", "{\"host\":\"_acme-challenge.dns-wrong.test.\",\"value\":\"%s\"}", d);
    check1(P(), "dns-01", "dns", "dns-wrong.test", "tokDnsWrong", 0, "incorrectResponse", d);
}

static void test_dns01_missing(void **state)
{
    (void)state;
    check1(P(), "dns-01", "dns", "dns-none.test", "tokDnsNone", 0, "dns",
           "dns-01: TXT _acme-challenge.dns-none.test: no TXT records");
    MGMT("/set-servfail", "{\"host\":\"_acme-challenge.dns-sf.test.\"}");
    check1(P(), "dns-01", "dns", "dns-sf.test", "tokDnsSf", 0, "dns", "SERVFAIL");
    check1(P(), "dns-01", "ip", "127.0.0.1", "tokDnsIp", 0, "malformed", "IP identifier");
}

/* ---- tests: tls-alpn-01 ---- */

static void test_tlsalpn_challtestsrv(void **state)
{
    char ka[160];

    (void)state;
    key_auth("tokAlpn", ka, sizeof(ka));
    MGMT("/add-tlsalpn01", "{\"host\":\"alpn-valid.test\",\"content\":\"%s\"}", ka);
    check1(P(), "tls-alpn-01", "dns", "alpn-valid.test", "tokAlpn", 1, NULL, NULL);
    /* Another key authorization's digest. */
    MGMT("/add-tlsalpn01", "{\"host\":\"alpn-wrong.test\",\"content\":\"%s\"}", ka);
    check1(P(), "tls-alpn-01", "dns", "alpn-wrong.test", "tokAlpnWrong", 0, "incorrectResponse",
           "not SHA-256 of the key authorization");
    /* challtestsrv refuses the handshake for a name it does not know. */
    check1(P(), "tls-alpn-01", "dns", "alpn-unknown.test", "tokAlpn", 0, "tls",
           "TLS handshake failed");
    check1(P(.alpn_port = free_port(0)), "tls-alpn-01", "dns", "alpn-valid.test", "tokAlpn", 0,
           "connection", "connection refused (127.0.0.1)");
}

static void alpn_case(struct certspec cs, const char *id_type, const char *value, int ok,
                      const char *type, const char *part, const char *want_sni)
{
    struct tsrv *s = srv_start_af(SRV_SERVE, NULL, tls_ctx(cs), strchr(value, ':') != NULL);
    char sni[256];

    check1(P(.alpn_port = s->port), "tls-alpn-01", id_type, value, "tokOwn", ok, type, part);
    pthread_mutex_lock(&s->mu);
    snprintf(sni, sizeof(sni), "%s", s->sni);
    pthread_mutex_unlock(&s->mu);
    if (want_sni)
        assert_string_equal(sni, want_sni);
    srv_stop(s);
}

static void test_tlsalpn_certificates(void **state)
{
    char ka[160];

    (void)state;
    key_auth("tokOwn", ka, sizeof(ka));
    alpn_case((struct certspec){.dns = "own.test", .ext = EXT_CRITICAL, .ka = ka, .alpn = 1}, "dns",
              "own.test", 1, NULL, NULL, "own.test");
    alpn_case((struct certspec){.dns = "own.test", .ext = EXT_NONE, .ka = ka, .alpn = 1}, "dns",
              "own.test", 0, "incorrectResponse", "no acmeIdentifier extension", NULL);
    alpn_case((struct certspec){.dns = "own.test", .ext = EXT_NONCRITICAL, .ka = ka, .alpn = 1},
              "dns", "own.test", 0, "incorrectResponse", "not critical", NULL);
    alpn_case((struct certspec){.dns = "own.test", .ext = EXT_CRITICAL, .ka = "x.y", .alpn = 1},
              "dns", "own.test", 0, "incorrectResponse", "not SHA-256", NULL);
    alpn_case(
        (struct certspec){
            .dns = "own.test", .dns2 = "other.test", .ext = EXT_CRITICAL, .ka = ka, .alpn = 1},
        "dns", "own.test", 0, "incorrectResponse", "2 entries", NULL);
    alpn_case((struct certspec){.dns = "other.test", .ext = EXT_CRITICAL, .ka = ka, .alpn = 1},
              "dns", "own.test", 0, "incorrectResponse", "not the dNSName own.test", NULL);
    alpn_case((struct certspec){.dns = "own.test", .ext = EXT_CRITICAL, .ka = ka, .alpn = 0}, "dns",
              "own.test", 0, "tls", "did not negotiate the ALPN protocol acme-tls/1", NULL);
    /* RFC 8738: an iPAddress SAN, the reverse name as SNI. */
    alpn_case((struct certspec){.ip = "127.0.0.1", .ext = EXT_CRITICAL, .ka = ka, .alpn = 1}, "ip",
              "127.0.0.1", 1, NULL, NULL, "1.0.0.127.in-addr.arpa");
    alpn_case((struct certspec){.dns = "127.0.0.1", .ext = EXT_CRITICAL, .ka = ka, .alpn = 1}, "ip",
              "127.0.0.1", 0, "incorrectResponse", "not the iPAddress 127.0.0.1", NULL);
    alpn_case((struct certspec){.ip = "::1", .ext = EXT_CRITICAL, .ka = ka, .alpn = 1}, "ip", "::1",
              1, NULL, NULL,
              "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa");
    alpn_case((struct certspec){.ip = "127.0.0.1", .ext = EXT_CRITICAL, .ka = ka, .alpn = 1}, "ip",
              "::1", 0, "incorrectResponse", "not the iPAddress ::1", NULL);
}

/* A server that accepts TCP but never speaks TLS. */
static void test_tlsalpn_timeout(void **state)
{
    struct tsrv *s = srv_start(SRV_SILENT, NULL, NULL);

    (void)state;
    check1(P(.alpn_port = s->port, .timeout_ms = 500), "tls-alpn-01", "ip", "127.0.0.1",
           "tokAlpnSlow", 0, "connection", "timeout in the TLS handshake");
    srv_release(s, SRV_SILENT);
    srv_stop(s);
}

/* ---- tests: CAA ---- */

static void test_caa(void **state)
{
    static const char *const ids[] = {"ca.test", NULL};
    struct akm_va *va = pool(P());
    struct ut_err err = {{0}};
    json_t *p = NULL;
    char ka[160];

    (void)state;
    /* Nothing set: no check. */
    assert_int_equal(akm_va_caa_check(va, "caa-other.test", 0, &p), 0);
    assert_int_equal(akm_va_set_caa(va, ids, &err), 0);
    MGMT("/add-caa", "{\"host\":\"caa-ok.test\",\"policies\":[{\"tag\":\"issue\",\"value\":"
                     "\"ca.test; accounturi=x\"}]}");
    MGMT("/add-caa", "{\"host\":\"caa-other.test\",\"policies\":[{\"tag\":\"issue\",\"value\":"
                     "\"other.example\"}]}");
    MGMT("/add-caa", "{\"host\":\"caa-wild.test\",\"policies\":[{\"tag\":\"issue\",\"value\":"
                     "\"CA.test\"},{\"tag\":\"issuewild\",\"value\":\";\"}]}");
    MGMT("/add-caa", "{\"host\":\"caa-iodef.test\",\"policies\":[{\"tag\":\"iodef\",\"value\":"
                     "\"mailto:x@caa-iodef.test\"}]}");
    assert_int_equal(akm_va_caa_check(va, "nocaa.test", 0, &p), 0);
    assert_int_equal(akm_va_caa_check(va, "caa-ok.test", 0, &p), 0);
    assert_int_equal(akm_va_caa_check(va, "caa-iodef.test", 0, &p), 0);
    assert_int_equal(akm_va_caa_check(va, "caa-other.test", 0, &p), -EPERM);
    assert_string_equal(json_string_value(json_object_get(p, "type")), AKM_PROBLEM_NS "caa");
    assert_non_null(strstr(json_string_value(json_object_get(p, "detail")), "caa-other.test"));
    json_decref(p);
    /* The tree is climbed to the parent's record. */
    assert_int_equal(akm_va_caa_check(va, "www.sub.caa-other.test", 0, &p), -EPERM);
    json_decref(p);
    assert_int_equal(akm_va_caa_check(va, "www.caa-ok.test", 0, &p), 0);
    /* issuewild for wildcards only. */
    assert_int_equal(akm_va_caa_check(va, "caa-wild.test", 0, &p), 0);
    assert_int_equal(akm_va_caa_check(va, "caa-wild.test", 1, &p), -EPERM);
    json_decref(p);
    assert_int_equal(akm_va_caa_check(va, "caa-ok.test", 1, &p), 0);
    /* A failed lookup is not permission. */
    MGMT("/set-servfail", "{\"host\":\"caa-sf.test\"}");
    assert_int_equal(akm_va_caa_check(va, "caa-sf.test", 0, &p), -EAGAIN);
    assert_string_equal(json_string_value(json_object_get(p, "type")), AKM_PROBLEM_NS "dns");
    json_decref(p);
    /* In the pool: a valid http-01 challenge, but CAA names another CA. */
    key_auth("tokCaa", ka, sizeof(ka));
    MGMT("/add-http01", "{\"token\":\"tokCaa\",\"content\":\"%s\"}", ka);
    submit(va, "caa1", "http-01", "dns", "caa-other.test", "tokCaa");
    expect("caa1", 0, "caa", "CAA issue at caa-other.test does not name this CA");
    submit(va, "caa2", "http-01", "dns", "caa-ok.test", "tokCaa");
    expect("caa2", 1, NULL, NULL);
    /* Too late to change. */
    assert_int_equal(akm_va_set_caa(va, ids, &err), -EBUSY);
    akm_va_free(va);
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_new_rejects_bad_opts),
        cmocka_unit_test(test_submit_rejects_bad_jobs),
        cmocka_unit_test(test_http01_valid),
        cmocka_unit_test(test_http01_trailing_whitespace),
        cmocka_unit_test(test_http01_wrong_content),
        cmocka_unit_test(test_http01_not_found),
        cmocka_unit_test(test_http01_refused),
        cmocka_unit_test(test_http01_ipv6_fallback),
        cmocka_unit_test(test_http01_dns_failures),
        cmocka_unit_test(test_http01_redirects),
        cmocka_unit_test(test_http01_ip_identifier),
        cmocka_unit_test(test_http01_ipv6_identifier),
        cmocka_unit_test(test_http01_response_caps),
        cmocka_unit_test(test_http01_timeout),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_free_with_job_in_flight),
        cmocka_unit_test(test_dns01_valid),
        cmocka_unit_test(test_dns01_wrong),
        cmocka_unit_test(test_dns01_missing),
        cmocka_unit_test(test_tlsalpn_challtestsrv),
        cmocka_unit_test(test_tlsalpn_certificates),
        cmocka_unit_test(test_tlsalpn_timeout),
        cmocka_unit_test(test_caa),
    };

    return cmocka_run_group_tests(t, group_setup, group_teardown);
}
