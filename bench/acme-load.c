/*
 * acme-load: RFC 8555 issuance load against one ACME server (issue #7).
 *
 *   acme-load --directory URL [--ca-file PEM | --insecure] --accounts N
 *             --duration SECS --http-port P [--names-suffix .bench.test]
 *             [--poll-ms 20] [--keys 4] [--grace 10] [--server-pid PID[,PID...]]
 *             [--label NAME] [--save-cert FILE]
 *
 * N threads, one ACME account each (ES256, created before the measured
 * window), each with its own libcurl easy handle (HTTP/1.1 keep-alive, so
 * every server is driven the same way). Each thread loops over one issuance
 * at a time for a fresh name o<thread>-<n><suffix>:
 *   newOrder -> POST-as-GET the authorization -> publish the http-01 key
 *   authorization in our own HTTP server -> respond {} -> poll the
 *   authorization every --poll-ms until valid -> finalize with a CSR (a
 *   P-256 key from the thread's pre-generated pool, CN and SAN = the name)
 *   -> poll the order every --poll-ms while processing -> POST-as-GET the
 *   certificate.
 * Retry-After is ignored: polls are always --poll-ms apart (the servers
 * answer "1" second or more, which would measure the hint, not the server).
 * The server's name resolution must send the names to 127.0.0.1, where our
 * http-01 server listens on --http-port (bench/acme.sh uses
 * pebble-challtestsrv as both servers' DNS).
 *
 * A request without an answer within 10 s fails its issuance (a hung server
 * then shows as errors, not as a hung run).
 *
 * Nonces: each request uses the Replay-Nonce of the previous response (one
 * HEAD newNonce when there is none); a badNonce answer is counted and the
 * request retried once with the nonce that answer carried.
 *
 * The window: all threads create their accounts, then the clock starts;
 * after --duration no thread starts a new issuance, and the ones in flight
 * may finish within --grace seconds (then they are abandoned). "issuances"
 * and the rate count certificates downloaded inside the window; latencies
 * and the CPU per issuance use every completed issuance, CPU from the start
 * of the window until the last thread stopped (so no half-done issuance is
 * charged to the others). With --server-pid the server's utime+stime
 * (/proc/PID/stat) over those spans and its VmRSS/VmHWM at the end are
 * reported; several comma-separated PIDs (a cluster's nodes): the sum of
 * their CPU and the largest VmRSS/VmHWM among them. The generator's own
 * CPU (getrusage) always is reported, since it shares the machine.
 *
 * Output: human lines on stderr while running (the first few problem
 * documents in full), then on stdout one "RESULT k=v ..." line with a fixed
 * set of keys and one JSON object line with the same figures. Exit status
 * 0 when at least one certificate was issued, 1 otherwise, 2 on usage.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/thread.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util/b64.h"
#include "util/buf.h"

#define MAX_BODY     (256 * 1024) /* largest response body we keep */
#define MAX_URL      1024
#define MAX_NONCE    256
#define MAX_NAME     253
#define MAX_TOKEN    256
#define MAX_PROBLEMS 5   /* problem documents printed in full */
#define MAP_BUCKETS  256 /* challenge map: power of two */
#define MAX_PIDS     8   /* --server-pid: a cluster's nodes */
#define ERROR_PAUSE  50  /* ms after a failed issuance, so a dead server is not spun on */
#define CHALL_PREFIX "/.well-known/acme-challenge/"

struct opts {
    const char *directory;
    const char *ca_file;
    const char *suffix;
    const char *label;
    const char *save_cert;
    int insecure;
    int accounts;
    double duration;
    int http_port;
    int poll_ms;
    int keys;
    double grace;
    long server_pid[MAX_PIDS]; /* --server-pid: the server's processes */
    int n_pids;
};

static struct opts g_o = {
    .suffix = ".bench.test",
    .label = "acme-load",
    .poll_ms = 20,
    .keys = 4,
    .grace = 10,
};

/* Directory URLs, read once before the threads start. */
static char g_new_nonce[MAX_URL], g_new_account[MAX_URL], g_new_order[MAX_URL];

/* The window (CLOCK_MONOTONIC seconds), written by main before the "go"
 * barrier and only read afterwards. */
static double g_t_start, g_t_end, g_t_hard;
static pthread_barrier_t g_ready, g_go;

static pthread_mutex_t g_print_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int g_problems_printed;
static atomic_long g_chall_hits, g_chall_misses;

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&t, &t) < 0 && errno == EINTR)
        ;
}

/* Copies src into dst[cap]; returns 0, or -E2BIG (dst emptied) when it does
 * not fit. */
static int copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;

    if (src == NULL || n >= cap) {
        dst[0] = '\0';
        return -E2BIG;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

/* ---- the challenge map: token -> key authorization ----
 * Filled and emptied by the worker threads, read by the http-01 server's
 * thread; one mutex guards it all (at most one entry per worker). */

struct tok {
    struct tok *next;
    char *token;
    char *keyauth;
};

static struct tok *g_map[MAP_BUCKETS];
static pthread_mutex_t g_map_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned map_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h & (MAP_BUCKETS - 1);
}

static int map_put(const char *token, const char *keyauth)
{
    struct tok *t = calloc(1, sizeof(*t));
    unsigned h = map_hash(token, strlen(token));

    if (t == NULL || (t->token = strdup(token)) == NULL || (t->keyauth = strdup(keyauth)) == NULL) {
        if (t) {
            free(t->token);
            free(t);
        }
        return -ENOMEM;
    }
    pthread_mutex_lock(&g_map_lock);
    t->next = g_map[h];
    g_map[h] = t;
    pthread_mutex_unlock(&g_map_lock);
    return 0;
}

static void map_del(const char *token)
{
    struct tok **pp, *t = NULL;
    unsigned h = map_hash(token, strlen(token));

    pthread_mutex_lock(&g_map_lock);
    for (pp = &g_map[h]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->token, token) == 0) {
            t = *pp;
            *pp = t->next;
            break;
        }
    }
    pthread_mutex_unlock(&g_map_lock);
    if (t) {
        free(t->token);
        free(t->keyauth);
        free(t);
    }
}

/* Appends the key authorization of token[n] to out; returns 0, or -ENOENT. */
static int map_get(const char *token, size_t n, struct evbuffer *out)
{
    int rc = -ENOENT;
    unsigned h = map_hash(token, n);

    pthread_mutex_lock(&g_map_lock);
    for (struct tok *t = g_map[h]; t; t = t->next) {
        if (strlen(t->token) == n && memcmp(t->token, token, n) == 0) {
            rc = evbuffer_add(out, t->keyauth, strlen(t->keyauth)) == 0 ? 0 : -ENOMEM;
            break;
        }
    }
    pthread_mutex_unlock(&g_map_lock);
    return rc;
}

static void map_clear(void)
{
    for (size_t i = 0; i < MAP_BUCKETS; i++) {
        while (g_map[i]) {
            struct tok *t = g_map[i];

            g_map[i] = t->next;
            free(t->token);
            free(t->keyauth);
            free(t);
        }
    }
}

/* ---- the http-01 server: libevent evhttp on its own thread ---- */

static void chall_cb(struct evhttp_request *req, void *arg)
{
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    size_t plen = strlen(CHALL_PREFIX);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);

    (void)arg;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET && path &&
        strncmp(path, CHALL_PREFIX, plen) == 0 &&
        map_get(path + plen, strlen(path + plen), out) == 0) {
        atomic_fetch_add(&g_chall_hits, 1);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/plain");
        evhttp_send_reply(req, 200, "OK", out);
        return;
    }
    atomic_fetch_add(&g_chall_misses, 1);
    evhttp_send_error(req, 404, NULL);
}

/* Runs on the loop's own thread once main activates the stop event: a
 * loopbreak from main could come before the loop started, and the loop
 * clears the flag when it starts; an activated event is not lost. */
static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void *chall_thread(void *arg)
{
    event_base_dispatch(arg);
    return NULL;
}

/* ---- HTTP client: one libcurl easy handle per thread ---- */

struct resp {
    long status;
    struct ut_buf body; /* capped at MAX_BODY */
    char nonce[MAX_NONCE];
    char location[MAX_URL];
    char ctype[128];
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;

    /* returning less than given aborts the transfer (body over MAX_BODY) */
    return ut_buf_append(&r->body, p, size * n) == 0 ? size * n : 0;
}

/* Copies the value of header line p[n] into dst when its name is name
 * (case-insensitive; HTTP/2 names are lower case). */
static void header_value(const char *p, size_t n, const char *name, char *dst, size_t cap)
{
    size_t k = strlen(name);

    if (n <= k + 1 || strncasecmp(p, name, k) != 0 || p[k] != ':')
        return;
    p += k + 1;
    n -= k + 1;
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == '\r' || p[n - 1] == '\n' || p[n - 1] == ' '))
        n--;
    if (n >= cap)
        n = 0; /* too long to be real: drop it */
    memcpy(dst, p, n);
    dst[n] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t len = size * n;

    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) { /* a new response (after 1xx) */
        r->nonce[0] = r->location[0] = r->ctype[0] = '\0';
        return len;
    }
    header_value(p, len, "Replay-Nonce", r->nonce, sizeof(r->nonce));
    header_value(p, len, "Location", r->location, sizeof(r->location));
    header_value(p, len, "Content-Type", r->ctype, sizeof(r->ctype));
    return len;
}

static CURL *client_new(struct resp *r)
{
    CURL *c = curl_easy_init();

    if (c == NULL)
        return NULL;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L); /* a hung server costs 10 s, not the run */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    if (g_o.insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (g_o.ca_file) {
        curl_easy_setopt(c, CURLOPT_CAINFO, g_o.ca_file);
    }
    return c;
}

/* One request; method "GET", "HEAD" or "POST" (body as JOSE). Returns 0
 * when a response arrived (r->status set), -EIO on transport failure (the
 * curl message in errbuf). */
static int http_do(CURL *c, struct resp *r, struct curl_slist *jose, const char *method,
                   const char *url, const char *body, char *errbuf, size_t errcap)
{
    CURLcode cc;

    r->status = 0;
    ut_buf_reset(&r->body);
    r->nonce[0] = r->location[0] = r->ctype[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, jose);
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    }
    if ((cc = curl_easy_perform(c)) != CURLE_OK) {
        snprintf(errbuf, errcap, "%s %s: %s", method, url, curl_easy_strerror(cc));
        return -EIO;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    return 0;
}

/* ---- ES256 JWS ---- */

/* Raw R||S (RFC 7518 §3.4) of SHA-256 ECDSA over in[n]. Returns 0 or -EIO. */
static int es256_sign(EVP_PKEY *k, const char *in, size_t n, unsigned char out[64])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[96];
    const unsigned char *p = der;
    size_t dl = sizeof(der);
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r, *s;
    int rc = -EIO;

    if (md == NULL || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) != 1 ||
        EVP_DigestSign(md, der, &dl, (const unsigned char *)in, n) != 1)
        goto out;
    if ((sig = d2i_ECDSA_SIG(NULL, &p, (long)dl)) == NULL)
        goto out;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, out, 32) != 32 || BN_bn2binpad(s, out + 32, 32) != 32)
        goto out;
    rc = 0;
out:
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    return rc;
}

/* The public JWK of a P-256 key, members in RFC 7638 order (so the same
 * text serves the header and the thumbprint), into out[cap]. */
static int jwk_text(EVP_PKEY *k, char *out, size_t cap)
{
    unsigned char pt[65];
    size_t len = 0;
    char x[48], y[48];
    int n;

    if (EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &len) != 1 ||
        len != 65 || pt[0] != 4)
        return -EIO;
    ut_b64_encode(pt + 1, 32, x, 1);
    ut_b64_encode(pt + 33, 32, y, 1);
    n = snprintf(out, cap, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x, y);
    return n > 0 && (size_t)n < cap ? 0 : -E2BIG;
}

/* ---- a worker: one account, one connection, one issuance at a time ---- */

struct lat {
    double *v;
    size_t n, cap;
};

struct worker {
    int id;
    pthread_t th;
    CURL *curl;
    struct curl_slist *jose;
    struct resp r;
    EVP_PKEY *acct;
    EVP_PKEY **keys; /* CSR keys, used round-robin */
    char jwk[256];
    char thumb[48];
    char kid[MAX_URL];
    char nonce[MAX_NONCE]; /* the next one to use; empty: ask newNonce */
    char err[512];         /* last transport error */
    long seq;
    int ok_account;
    int saved;
    /* results */
    struct lat total, valid, final;
    long in_window, completed, started, errors, bad_nonce, requests, polls;
};

static int lat_add(struct lat *l, double v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        double *p = realloc(l->v, cap * sizeof(*p));

        if (p == NULL)
            return -ENOMEM;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return 0;
}

/* Prints one failed step: what, the status and the body (a problem
 * document, usually) for the first MAX_PROBLEMS failures of the run. */
static void fail(struct worker *w, const char *what)
{
    w->errors++;
    if (atomic_fetch_add(&g_problems_printed, 1) >= MAX_PROBLEMS)
        return;
    pthread_mutex_lock(&g_print_lock);
    if (w->err[0])
        fprintf(stderr, "acme-load: thread %d: %s: %s\n", w->id, what, w->err);
    else
        fprintf(stderr, "acme-load: thread %d: %s: HTTP %ld %s\n  %.1000s\n", w->id, what,
                w->r.status, w->r.ctype, w->r.body.data ? w->r.body.data : "");
    pthread_mutex_unlock(&g_print_lock);
}

static int is_bad_nonce(const struct resp *r)
{
    json_t *doc;
    const char *type;
    int bad;

    if (r->status != 400 || strncmp(r->ctype, "application/problem+json", 24) != 0 ||
        r->body.data == NULL)
        return 0;
    if ((doc = json_loadb(r->body.data, r->body.len, 0, NULL)) == NULL)
        return 0;
    type = json_string_value(json_object_get(doc, "type"));
    bad = type && strcmp(type, "urn:ietf:params:acme:error:badNonce") == 0;
    json_decref(doc);
    return bad;
}

/* Builds the flattened JWS of payload (NULL: POST-as-GET, empty payload)
 * for url, with "jwk" (use_jwk) or "kid", and w->nonce. Returns the
 * malloc'd text or NULL. */
static char *jws_body(struct worker *w, const char *url, const char *payload, int use_jwk)
{
    json_t *hdr = NULL, *jws = NULL, *jwk = NULL;
    char *htxt = NULL, *h64 = NULL, *p64 = NULL, *input = NULL, *out = NULL;
    char s64[96];
    unsigned char sig[64];
    size_t plen = payload ? strlen(payload) : 0, hlen;

    hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", w->nonce, "url", url);
    if (hdr == NULL)
        goto out;
    if (use_jwk) {
        if ((jwk = json_loads(w->jwk, 0, NULL)) == NULL || json_object_set(hdr, "jwk", jwk) < 0)
            goto out;
    } else if (json_object_set_new(hdr, "kid", json_string(w->kid)) < 0) {
        goto out;
    }
    if ((htxt = json_dumps(hdr, JSON_COMPACT)) == NULL)
        goto out;
    hlen = strlen(htxt);
    if ((h64 = malloc(ut_b64_enclen(hlen, 1) + 1)) == NULL ||
        (p64 = malloc(ut_b64_enclen(plen, 1) + 1)) == NULL)
        goto out;
    ut_b64_encode(htxt, hlen, h64, 1);
    ut_b64_encode(payload ? payload : "", plen, p64, 1);
    if ((input = malloc(strlen(h64) + strlen(p64) + 2)) == NULL)
        goto out;
    sprintf(input, "%s.%s", h64, p64);
    if (es256_sign(w->acct, input, strlen(input), sig) < 0)
        goto out;
    ut_b64_encode(sig, sizeof(sig), s64, 1);
    jws = json_pack("{s:s, s:s, s:s}", "protected", h64, "payload", p64, "signature", s64);
    if (jws)
        out = json_dumps(jws, JSON_COMPACT);
out:
    json_decref(jwk);
    json_decref(hdr);
    json_decref(jws);
    free(htxt);
    free(h64);
    free(p64);
    free(input);
    return out;
}

/* A signed POST (payload NULL: POST-as-GET). On return w->r holds the
 * response and w->nonce the nonce it carried. Returns 0 when a response
 * arrived (any status), negative otherwise (w->err says why). */
static int acme_post(struct worker *w, const char *url, const char *payload, int use_jwk)
{
    int attempt, rc = -EIO;
    char *body;

    for (attempt = 0; attempt < 2; attempt++) {
        w->err[0] = '\0';
        if (w->nonce[0] == '\0') {
            w->requests++;
            if (http_do(w->curl, &w->r, w->jose, "HEAD", g_new_nonce, NULL, w->err,
                        sizeof(w->err)) < 0)
                return -EIO;
            if (copy_str(w->nonce, sizeof(w->nonce), w->r.nonce) < 0 || w->nonce[0] == '\0') {
                snprintf(w->err, sizeof(w->err), "newNonce: no Replay-Nonce (HTTP %ld)",
                         w->r.status);
                return -EPROTO;
            }
        }
        if ((body = jws_body(w, url, payload, use_jwk)) == NULL) {
            snprintf(w->err, sizeof(w->err), "cannot build the JWS for %s", url);
            return -ENOMEM;
        }
        w->requests++;
        rc = http_do(w->curl, &w->r, w->jose, "POST", url, body, w->err, sizeof(w->err));
        free(body);
        w->nonce[0] = '\0';
        if (rc < 0)
            return rc;
        copy_str(w->nonce, sizeof(w->nonce), w->r.nonce);
        if (!is_bad_nonce(&w->r))
            return 0;
        w->bad_nonce++;
    }
    return 0; /* the second badNonce is the caller's failure */
}

/* Parses w->r's body as a JSON object; NULL when it is not one. */
static json_t *resp_json(struct worker *w)
{
    json_t *o = NULL;

    if (w->r.body.data)
        o = json_loadb(w->r.body.data, w->r.body.len, 0, NULL);
    if (o && !json_is_object(o)) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

static const char *jstr(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

static int create_account(struct worker *w)
{
    if (acme_post(w, g_new_account, "{\"termsOfServiceAgreed\":true}", 1) < 0) {
        fail(w, "newAccount");
        return -EIO;
    }
    if ((w->r.status != 201 && w->r.status != 200) ||
        copy_str(w->kid, sizeof(w->kid), w->r.location) < 0 || w->kid[0] == '\0') {
        fail(w, "newAccount");
        return -EPROTO;
    }
    return 0;
}

/* The base64url DER of a CSR for name, signed by key, into out[cap]. */
static int make_csr(EVP_PKEY *key, const char *name, char *out, size_t cap)
{
    X509_REQ *req = X509_REQ_new();
    X509_EXTENSION *san = NULL;
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    unsigned char *der = NULL;
    char sanv[MAX_NAME + 8];
    int len, rc = -EIO;

    snprintf(sanv, sizeof(sanv), "DNS:%s", name);
    if (req == NULL || exts == NULL || X509_REQ_set_version(req, 0) != 1 ||
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                                   (const unsigned char *)name, -1, -1, 0) != 1)
        goto out;
    if ((san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, sanv)) == NULL ||
        sk_X509_EXTENSION_push(exts, san) <= 0)
        goto out;
    san = NULL; /* owned by exts now */
    if (X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_set_pubkey(req, key) != 1 ||
        X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto out;
    if ((len = i2d_X509_REQ(req, &der)) <= 0)
        goto out;
    rc = -E2BIG;
    if (ut_b64_enclen((size_t)len, 1) >= cap)
        goto out;
    ut_b64_encode(der, (size_t)len, out, 1);
    rc = 0;
out:
    OPENSSL_free(der);
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return rc;
}

/* Polls url (POST-as-GET) every --poll-ms while its "status" is one of
 * wait1/wait2; returns the last object (caller frees), or NULL on failure
 * or past the hard deadline (counted and printed by fail()). */
static json_t *poll_status(struct worker *w, const char *url, const char *wait1, const char *wait2,
                           const char *what)
{
    for (;;) {
        json_t *o;
        const char *st;

        sleep_ms(g_o.poll_ms);
        w->polls++;
        if (acme_post(w, url, NULL, 0) < 0 || w->r.status != 200 || (o = resp_json(w)) == NULL) {
            fail(w, what);
            return NULL;
        }
        st = jstr(o, "status");
        if (st == NULL || (strcmp(st, wait1) != 0 && strcmp(st, wait2) != 0))
            return o;
        if (now_s() > g_t_hard) {
            snprintf(w->err, sizeof(w->err), "%s: still %s at the end of the grace period", what,
                     st);
            json_decref(o);
            fail(w, what);
            return NULL;
        }
        json_decref(o);
    }
}

static void save_cert(struct worker *w)
{
    FILE *f;

    if (g_o.save_cert == NULL || w->id != 0 || w->saved)
        return;
    if ((f = fopen(g_o.save_cert, "w")) == NULL)
        return;
    fwrite(w->r.body.data, 1, w->r.body.len, f);
    w->saved = fclose(f) == 0;
}

/* One issuance. Returns 0 (certificate downloaded) or negative (counted in
 * w->errors, the first problems printed). */
static int issue_one(struct worker *w)
{
    char name[MAX_NAME + 1], payload[MAX_NAME + 64], token[MAX_TOKEN], keyauth[MAX_TOKEN + 64];
    char order_url[MAX_URL], authz_url[MAX_URL], chall_url[MAX_URL], fin_url[MAX_URL];
    char cert_url[MAX_URL], csr[2048];
    char *fin = NULL;
    json_t *o = NULL, *az = NULL, *ch;
    double t0 = now_s(), tv = 0, tf = 0, t1;
    const char *st;
    size_t i;
    int published = 0, rc = -EPROTO;

    w->started++;
    token[0] = '\0';
    if (snprintf(name, sizeof(name), "o%d-%ld%s", w->id, w->seq++, g_o.suffix) >= (int)sizeof(name))
        return -E2BIG;
    snprintf(payload, sizeof(payload), "{\"identifiers\":[{\"type\":\"dns\",\"value\":\"%s\"}]}",
             name);
    if (acme_post(w, g_new_order, payload, 0) < 0 || w->r.status != 201 ||
        (o = resp_json(w)) == NULL || copy_str(order_url, sizeof(order_url), w->r.location) < 0 ||
        copy_str(authz_url, sizeof(authz_url),
                 json_string_value(json_array_get(json_object_get(o, "authorizations"), 0))) < 0 ||
        copy_str(fin_url, sizeof(fin_url), jstr(o, "finalize")) < 0) {
        fail(w, "newOrder");
        goto out;
    }
    json_decref(o);
    o = NULL;

    if (acme_post(w, authz_url, NULL, 0) < 0 || w->r.status != 200 || (az = resp_json(w)) == NULL ||
        (st = jstr(az, "status")) == NULL) {
        fail(w, "authorization");
        goto out;
    }
    if (strcmp(st, "pending") == 0) {
        json_t *http01 = NULL;

        json_array_foreach(json_object_get(az, "challenges"), i, ch)
        {
            if (http01 == NULL && jstr(ch, "type") && strcmp(jstr(ch, "type"), "http-01") == 0)
                http01 = ch;
        }
        ch = http01;
        if (ch == NULL || copy_str(chall_url, sizeof(chall_url), jstr(ch, "url")) < 0 ||
            copy_str(token, sizeof(token), jstr(ch, "token")) < 0 || token[0] == '\0') {
            fail(w, "authorization: no http-01 challenge");
            goto out;
        }
        snprintf(keyauth, sizeof(keyauth), "%s.%s", token, w->thumb);
        if (map_put(token, keyauth) < 0)
            goto out;
        published = 1;
        tv = now_s();
        if (acme_post(w, chall_url, "{}", 0) < 0 || w->r.status != 200) {
            fail(w, "challenge response");
            goto out;
        }
        json_decref(az);
        if ((az = poll_status(w, authz_url, "pending", "processing", "authorization poll")) == NULL)
            goto out;
        st = jstr(az, "status");
        tv = now_s() - tv;
    }
    if (st == NULL || strcmp(st, "valid") != 0) {
        snprintf(w->err, sizeof(w->err), "authorization %s: %.400s", st ? st : "(no status)",
                 w->r.body.data ? w->r.body.data : "");
        fail(w, "validation");
        goto out;
    }
    map_del(token);
    published = 0;

    if (make_csr(w->keys[w->seq % (long)g_o.keys], name, csr, sizeof(csr)) < 0) {
        snprintf(w->err, sizeof(w->err), "cannot build a CSR for %s", name);
        fail(w, "csr");
        goto out;
    }
    if ((fin = malloc(strlen(csr) + 16)) == NULL)
        goto out;
    sprintf(fin, "{\"csr\":\"%s\"}", csr);
    tf = now_s();
    if (acme_post(w, fin_url, fin, 0) < 0) {
        fail(w, "finalize");
        goto out;
    }
    if (w->r.status == 403) { /* orderNotReady: the order lags its authorization */
        if ((o = poll_status(w, order_url, "pending", "pending", "order poll")) == NULL)
            goto out;
        json_decref(o);
        o = NULL;
        if (acme_post(w, fin_url, fin, 0) < 0) {
            fail(w, "finalize");
            goto out;
        }
    }
    if (w->r.status != 200 || (o = resp_json(w)) == NULL) {
        fail(w, "finalize");
        goto out;
    }
    if ((st = jstr(o, "status")) && strcmp(st, "processing") == 0) {
        json_decref(o);
        if ((o = poll_status(w, order_url, "processing", "processing", "order poll")) == NULL)
            goto out;
    }
    if ((st = jstr(o, "status")) == NULL || strcmp(st, "valid") != 0 ||
        copy_str(cert_url, sizeof(cert_url), jstr(o, "certificate")) < 0) {
        snprintf(w->err, sizeof(w->err), "order %s: %.400s", st ? st : "(no status)",
                 w->r.body.data ? w->r.body.data : "");
        fail(w, "finalize");
        goto out;
    }
    tf = now_s() - tf;
    if (acme_post(w, cert_url, NULL, 0) < 0 || w->r.status != 200 || w->r.body.data == NULL ||
        strncmp(w->r.body.data, "-----BEGIN CERTIFICATE-----", 27) != 0) {
        fail(w, "certificate");
        goto out;
    }
    t1 = now_s();
    save_cert(w);
    w->completed++;
    if (t1 <= g_t_end)
        w->in_window++;
    if (lat_add(&w->total, (t1 - t0) * 1000) < 0 || lat_add(&w->valid, tv * 1000) < 0 ||
        lat_add(&w->final, tf * 1000) < 0)
        goto out;
    rc = 0;
out:
    if (published)
        map_del(token);
    json_decref(o);
    json_decref(az);
    free(fin);
    return rc;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    w->ok_account = create_account(w) == 0;
    pthread_barrier_wait(&g_ready);
    pthread_barrier_wait(&g_go); /* main has set the window */
    if (!w->ok_account)
        return NULL;
    while (now_s() < g_t_end) {
        if (issue_one(w) < 0)
            sleep_ms(ERROR_PAUSE);
    }
    return NULL;
}

static int worker_init(struct worker *w, int id)
{
    w->id = id;
    ut_buf_init(&w->r.body, MAX_BODY);
    if ((w->curl = client_new(&w->r)) == NULL ||
        (w->jose = curl_slist_append(NULL, "Content-Type: application/jose+json")) == NULL ||
        (w->jose = curl_slist_append(w->jose, "Expect:")) == NULL)
        return -ENOMEM;
    if ((w->acct = EVP_EC_gen("P-256")) == NULL || jwk_text(w->acct, w->jwk, sizeof(w->jwk)) < 0)
        return -EIO;
    {
        unsigned char d[32];
        unsigned int dl = 0;

        if (EVP_Digest(w->jwk, strlen(w->jwk), d, &dl, EVP_sha256(), NULL) != 1 || dl != 32)
            return -EIO;
        ut_b64_encode(d, 32, w->thumb, 1);
    }
    if ((w->keys = calloc((size_t)g_o.keys, sizeof(*w->keys))) == NULL)
        return -ENOMEM;
    for (int i = 0; i < g_o.keys; i++)
        if ((w->keys[i] = EVP_EC_gen("P-256")) == NULL)
            return -EIO;
    return 0;
}

static void worker_free(struct worker *w)
{
    if (w->keys)
        for (int i = 0; i < g_o.keys; i++)
            EVP_PKEY_free(w->keys[i]);
    free(w->keys);
    EVP_PKEY_free(w->acct);
    curl_slist_free_all(w->jose);
    if (w->curl)
        curl_easy_cleanup(w->curl);
    ut_buf_free(&w->r.body);
    free(w->total.v);
    free(w->valid.v);
    free(w->final.v);
}

/* ---- directory, /proc, statistics ---- */

static int read_directory(void)
{
    struct resp r = {0};
    CURL *c;
    json_t *d = NULL;
    char err[512];
    int rc = -EPROTO;

    ut_buf_init(&r.body, MAX_BODY);
    if ((c = client_new(&r)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (http_do(c, &r, NULL, "GET", g_o.directory, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "acme-load: directory: %s\n", err);
        rc = -EIO;
        goto out;
    }
    if (r.status != 200 || r.body.data == NULL ||
        (d = json_loadb(r.body.data, r.body.len, 0, NULL)) == NULL ||
        copy_str(g_new_nonce, sizeof(g_new_nonce), jstr(d, "newNonce")) < 0 ||
        copy_str(g_new_account, sizeof(g_new_account), jstr(d, "newAccount")) < 0 ||
        copy_str(g_new_order, sizeof(g_new_order), jstr(d, "newOrder")) < 0) {
        fprintf(stderr, "acme-load: directory %s: HTTP %ld, not an ACME directory\n", g_o.directory,
                r.status);
        goto out;
    }
    rc = 0;
out:
    json_decref(d);
    if (c)
        curl_easy_cleanup(c);
    ut_buf_free(&r.body);
    return rc;
}

/* utime+stime of pid in ms, or -1. */
static double proc_cpu_ms(long pid)
{
    char path[64], line[2048], *p;
    unsigned long ut, st;
    FILE *f;
    int ok;

    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    p = fgets(line, sizeof(line), f);
    fclose(f);
    /* the command name may hold spaces and ')': fields start after the last ')' */
    if (p == NULL || (p = strrchr(line, ')')) == NULL)
        return -1;
    ok = sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2;
    return ok ? (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK) : -1;
}

/* A "VmXXX:" value of pid in KiB, or -1. */
static long proc_mem_kib(long pid, const char *key)
{
    char path[64], line[256];
    size_t k = strlen(key);
    long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if ((f = fopen(path, "r")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            v = strtol(line + k + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* The server's CPU: the sum over its processes (a cluster: every node),
 * or -1 when one cannot be read. */
static double pids_cpu_ms(void)
{
    double sum = 0, v;

    for (int i = 0; i < g_o.n_pids; i++) {
        if ((v = proc_cpu_ms(g_o.server_pid[i])) < 0)
            return -1;
        sum += v;
    }
    return sum;
}

/* The largest VmRSS/VmHWM among the server's processes (per node). */
static long pids_mem_max_kib(const char *key)
{
    long max = -1, v;

    for (int i = 0; i < g_o.n_pids; i++)
        if ((v = proc_mem_kib(g_o.server_pid[i], key)) > max)
            max = v;
    return max;
}

static double self_cpu_ms(void)
{
    struct rusage u;

    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000.0 +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0..100) of sorted v[n]; 0 when empty. */
static double pct(const double *v, size_t n, double q)
{
    size_t i;

    if (n == 0)
        return 0;
    i = (size_t)((q / 100.0) * (double)n + 0.999999);
    if (i < 1)
        i = 1;
    return v[(i > n ? n : i) - 1];
}

/* Concatenates and sorts one latency kind of every worker. */
static int merge(struct worker *ws, int n, size_t off, struct lat *out)
{
    for (int i = 0; i < n; i++) {
        const struct lat *l = (const struct lat *)((const char *)&ws[i] + off);

        for (size_t j = 0; j < l->n; j++)
            if (lat_add(out, l->v[j]) < 0)
                return -ENOMEM;
    }
    if (out->n)
        qsort(out->v, out->n, sizeof(double), cmp_double);
    return 0;
}

/* ---- main ---- */

static void usage(void)
{
    fprintf(stderr,
            "usage: acme-load --directory URL [--ca-file PEM | --insecure] --accounts N\n"
            "                 --duration SECS --http-port P [--names-suffix .bench.test]\n"
            "                 [--poll-ms 20] [--keys 4] [--grace 10] [--server-pid PID[,PID...]]\n"
            "                 [--label NAME] [--save-cert FILE]\n");
}

/* Parses a whole decimal number in [lo, hi] into *out. */
static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -EINVAL;
    *out = v;
    return 0;
}

/* "PID[,PID...]" (at most MAX_PIDS) into g_o.server_pid. */
static int parse_pids(const char *v)
{
    char buf[256], *save = NULL, *t;
    long n;

    if (strlen(v) >= sizeof(buf))
        return -EINVAL;
    snprintf(buf, sizeof(buf), "%s", v);
    g_o.n_pids = 0;
    for (t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (g_o.n_pids == MAX_PIDS || parse_long(t, 1, LONG_MAX, &n) < 0)
            return -EINVAL;
        g_o.server_pid[g_o.n_pids++] = n;
    }
    return g_o.n_pids ? 0 : -EINVAL;
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        char *end;

        if (strcmp(a, "--insecure") == 0) {
            g_o.insecure = 1;
            continue;
        }
        if (v == NULL)
            return -EINVAL;
        i++;
        if (strcmp(a, "--directory") == 0)
            g_o.directory = v;
        else if (strcmp(a, "--ca-file") == 0)
            g_o.ca_file = v;
        else if (strcmp(a, "--names-suffix") == 0)
            g_o.suffix = v;
        else if (strcmp(a, "--label") == 0)
            g_o.label = v;
        else if (strcmp(a, "--save-cert") == 0)
            g_o.save_cert = v;
        else if (strcmp(a, "--duration") == 0 || strcmp(a, "--grace") == 0) {
            double d = strtod(v, &end);

            if (*end || end == v || !(d > 0 && d <= 3600))
                return -EINVAL;
            *(a[2] == 'd' ? &g_o.duration : &g_o.grace) = d;
        } else if (strcmp(a, "--accounts") == 0 && parse_long(v, 1, 4096, &n) == 0)
            g_o.accounts = (int)n;
        else if (strcmp(a, "--http-port") == 0 && parse_long(v, 1, 65535, &n) == 0)
            g_o.http_port = (int)n;
        else if (strcmp(a, "--poll-ms") == 0 && parse_long(v, 1, 5000, &n) == 0)
            g_o.poll_ms = (int)n;
        else if (strcmp(a, "--keys") == 0 && parse_long(v, 1, 1024, &n) == 0)
            g_o.keys = (int)n;
        else if (strcmp(a, "--server-pid") == 0 && parse_pids(v) == 0)
            ;
        else
            return -EINVAL;
    }
    if (g_o.directory == NULL || g_o.accounts == 0 || g_o.duration == 0 || g_o.http_port == 0 ||
        strlen(g_o.suffix) > 200)
        return -EINVAL;
    return 0;
}

int main(int argc, char **argv)
{
    struct worker *ws = NULL;
    struct event_base *base = NULL;
    struct evhttp *http = NULL;
    struct event *stop = NULL;
    pthread_t chall_th;
    int chall_started = 0, nthreads = 0, rc = 1, barriers = 0;
    double cpu0 = -1, cpu_end = -1, cpu_done = -1, self0, self1, t_done;
    long in_window = 0, completed = 0, started = 0, errors = 0, bad_nonce = 0, requests = 0;
    long polls = 0, accounts_ok = 0, rss = -1, hwm = -1;
    struct lat tot = {0}, val = {0}, fin = {0};
    json_t *j = NULL;
    char *jtxt = NULL;

    if (parse_args(argc, argv) < 0) {
        usage();
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || evthread_use_pthreads() < 0) {
        fprintf(stderr, "acme-load: library initialisation failed\n");
        return 1;
    }

    /* the http-01 server first: validation may start as soon as threads run */
    if ((base = event_base_new()) == NULL || (http = evhttp_new(base)) == NULL ||
        evhttp_bind_socket(http, "127.0.0.1", (ev_uint16_t)g_o.http_port) < 0) {
        fprintf(stderr, "acme-load: cannot listen on 127.0.0.1:%d\n", g_o.http_port);
        goto out;
    }
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(http, chall_cb, NULL);
    if ((stop = event_new(base, -1, 0, stop_cb, base)) == NULL ||
        pthread_create(&chall_th, NULL, chall_thread, base) != 0)
        goto out;
    chall_started = 1;

    if (read_directory() < 0)
        goto out;
    if ((ws = calloc((size_t)g_o.accounts, sizeof(*ws))) == NULL)
        goto out;
    for (int i = 0; i < g_o.accounts; i++)
        if (worker_init(&ws[i], i) < 0) {
            fprintf(stderr, "acme-load: cannot set up thread %d\n", i);
            goto out;
        }
    if (pthread_barrier_init(&g_ready, NULL, (unsigned)g_o.accounts + 1) != 0 ||
        pthread_barrier_init(&g_go, NULL, (unsigned)g_o.accounts + 1) != 0)
        goto out;
    barriers = 1;
    for (; nthreads < g_o.accounts; nthreads++)
        if (pthread_create(&ws[nthreads].th, NULL, worker_main, &ws[nthreads]) != 0) {
            /* the barriers count every thread: without all of them we cannot go on */
            fprintf(stderr, "acme-load: pthread_create failed\n");
            exit(1);
        }

    pthread_barrier_wait(&g_ready); /* every account created (or failed) */
    for (int i = 0; i < nthreads; i++)
        accounts_ok += ws[i].ok_account;
    fprintf(stderr, "acme-load: %s: %ld/%d accounts, measuring for %.1f s\n", g_o.label,
            accounts_ok, g_o.accounts, g_o.duration);
    if (g_o.n_pids)
        cpu0 = pids_cpu_ms();
    self0 = self_cpu_ms();
    g_t_start = now_s();
    g_t_end = g_t_start + g_o.duration;
    g_t_hard = g_t_end + g_o.grace;
    pthread_barrier_wait(&g_go);

    sleep_ms((int)(g_o.duration * 1000));
    if (g_o.n_pids)
        cpu_end = pids_cpu_ms();
    for (int i = 0; i < nthreads; i++)
        pthread_join(ws[i].th, NULL);
    nthreads = 0;
    t_done = now_s();
    self1 = self_cpu_ms();
    if (g_o.n_pids) {
        cpu_done = pids_cpu_ms();
        rss = pids_mem_max_kib("VmRSS");
        hwm = pids_mem_max_kib("VmHWM");
    }

    for (int i = 0; i < g_o.accounts; i++) {
        in_window += ws[i].in_window;
        completed += ws[i].completed;
        started += ws[i].started;
        errors += ws[i].errors;
        bad_nonce += ws[i].bad_nonce;
        requests += ws[i].requests;
        polls += ws[i].polls;
    }
    if (merge(ws, g_o.accounts, offsetof(struct worker, total), &tot) < 0 ||
        merge(ws, g_o.accounts, offsetof(struct worker, valid), &val) < 0 ||
        merge(ws, g_o.accounts, offsetof(struct worker, final), &fin) < 0)
        goto out;

    {
        double rate = (double)in_window / g_o.duration;
        double scpu_win = cpu0 >= 0 && cpu_end >= 0 ? cpu_end - cpu0 : -1;
        double scpu = cpu0 >= 0 && cpu_done >= 0 ? cpu_done - cpu0 : -1;
        double per = scpu >= 0 && completed ? scpu / (double)completed : -1;
        double gen_per = completed ? (self1 - self0) / (double)completed : -1;

        printf("RESULT label=%s accounts=%d duration_s=%.1f issuances=%ld rate=%.2f "
               "p50_ms=%.1f p99_ms=%.1f valid_p50_ms=%.1f final_p50_ms=%.1f completed=%ld "
               "started=%ld bad_nonce=%ld errors=%ld requests=%ld polls=%ld "
               "server_cpu_ms=%.0f server_cpu_pct=%.1f cpu_ms_per_issuance=%.3f "
               "server_rss_kib=%ld server_hwm_kib=%ld gen_cpu_ms_per_issuance=%.3f "
               "drain_s=%.2f chall_hits=%ld chall_misses=%ld\n",
               g_o.label, g_o.accounts, g_o.duration, in_window, rate, pct(tot.v, tot.n, 50),
               pct(tot.v, tot.n, 99), pct(val.v, val.n, 50), pct(fin.v, fin.n, 50), completed,
               started, bad_nonce, errors, requests, polls, scpu,
               scpu_win >= 0 ? scpu_win / g_o.duration / 10.0 : -1, per, rss, hwm, gen_per,
               t_done - g_t_end, atomic_load(&g_chall_hits), atomic_load(&g_chall_misses));
        j = json_pack(
            "{s:s, s:i, s:f, s:I, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I, "
            "s:I, s:f, s:f, s:f, s:I, s:I, s:f}",
            "label", g_o.label, "accounts", g_o.accounts, "duration_s", g_o.duration, "issuances",
            (json_int_t)in_window, "rate", rate, "p50_ms", pct(tot.v, tot.n, 50), "p99_ms",
            pct(tot.v, tot.n, 99), "valid_p50_ms", pct(val.v, val.n, 50), "final_p50_ms",
            pct(fin.v, fin.n, 50), "completed", (json_int_t)completed, "started",
            (json_int_t)started, "bad_nonce", (json_int_t)bad_nonce, "errors", (json_int_t)errors,
            "requests", (json_int_t)requests, "polls", (json_int_t)polls, "server_cpu_ms", scpu,
            "cpu_ms_per_issuance", per, "gen_cpu_ms_per_issuance", gen_per, "server_rss_kib",
            (json_int_t)rss, "server_hwm_kib", (json_int_t)hwm, "drain_s", t_done - g_t_end);
        if (j == NULL || (jtxt = json_dumps(j, JSON_COMPACT)) == NULL)
            goto out;
        printf("%s\n", jtxt);
    }
    rc = completed > 0 ? 0 : 1;
out:
    fflush(stdout);
    for (int i = 0; i < nthreads; i++)
        pthread_join(ws[i].th, NULL);
    if (chall_started) {
        event_active(stop, 0, 0);
        pthread_join(chall_th, NULL);
    }
    if (ws)
        for (int i = 0; i < g_o.accounts; i++)
            worker_free(&ws[i]);
    free(ws);
    if (barriers) {
        pthread_barrier_destroy(&g_ready);
        pthread_barrier_destroy(&g_go);
    }
    if (stop)
        event_free(stop);
    if (http)
        evhttp_free(http);
    if (base)
        event_base_free(base);
    map_clear();
    free(tot.v);
    free(val.v);
    free(fin.v);
    free(jtxt);
    json_decref(j);
    curl_global_cleanup();
    return rc;
}
