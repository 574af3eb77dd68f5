/*
 * client.c - outbound HTTP(S) over one reused libcurl easy handle.
 *
 * Threads: an http_client belongs to one thread at a time (the easy handle
 * and its connection cache are not shareable). Keep-alive comes from reusing
 * the handle: curl_easy_reset() between requests clears the options but
 * keeps live connections and TLS sessions.
 *
 * Security: certificate and host name verification are always on (there is
 * no option to turn them off), only http/https are spoken, redirects are
 * never followed, and a response larger than max_response_bytes aborts the
 * transfer. Error messages name the method and the URL without its query,
 * user info or fragment (those may carry secrets).
 */
#include "http/http.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "util/buf.h"

#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_MAX_BYTES  (16u * 1024 * 1024)

struct http_client {
    CURL *curl;
    char *ca_file;
    long connect_ms, timeout_ms;
    size_t max_bytes;
    long last_connects;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_rc;

static void curl_init_once(void)
{
    g_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int http_client_new(struct http_client **out, const struct http_client_opts *o, struct ut_err *err)
{
    struct http_client *c;

    *out = NULL;
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_rc != CURLE_OK) {
        ut_err_set(err, "http client: curl_global_init: %s", curl_easy_strerror(g_curl_rc));
        return -EIO;
    }
    if (o && (o->connect_timeout_ms < 0 || o->timeout_ms < 0)) {
        ut_err_set(err, "http client: negative timeout");
        return -EINVAL;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL)
        goto nomem;
    if (o && o->ca_file && o->ca_file[0] && (c->ca_file = strdup(o->ca_file)) == NULL)
        goto nomem;
    if ((c->curl = curl_easy_init()) == NULL)
        goto nomem;
    c->connect_ms = o && o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS;
    c->timeout_ms = o && o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->max_bytes = o && o->max_response_bytes ? o->max_response_bytes : DEFAULT_MAX_BYTES;
    *out = c;
    return 0;
nomem:
    http_client_free(c);
    ut_err_set(err, "http client: out of memory");
    return -ENOMEM;
}

void http_client_free(struct http_client *c)
{
    if (c == NULL)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->ca_file);
    free(c);
}

long http_client_last_connects(const struct http_client *c)
{
    return c ? c->last_connects : 0;
}

void http_response_clear(struct http_response *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    free(resp->content_type);
    memset(resp, 0, sizeof(*resp));
}

struct sink {
    struct ut_buf b;
    int over; /* the cap was hit */
    int oom;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct sink *k = arg;
    size_t len = size * n; /* size is always 1 */
    int rc = ut_buf_append(&k->b, p, len);

    if (rc == 0)
        return len;
    if (rc == -E2BIG)
        k->over = 1;
    else
        k->oom = 1;
    return 0; /* anything short of len aborts with CURLE_WRITE_ERROR */
}

/* "https://host:port/path" of url for messages: no user info, query or
 * fragment. Returns 0 when url parses with an http or https scheme. */
static int url_check(const char *url, char *shown, size_t shownsz)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL;
    int rc = -EINVAL;

    snprintf(shown, shownsz, "(invalid URL)");
    if (u == NULL)
        return -ENOMEM;
    if (url && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        curl_url_get(u, CURLUPART_PATH, &path, 0);
        snprintf(shown, shownsz, "%s://%s%s%s%s", scheme, host, port ? ":" : "", port ? port : "",
                 path ? path : "");
        if (strcasecmp(scheme, "http") == 0 || strcasecmp(scheme, "https") == 0)
            rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

static int method_ok(const char *m)
{
    size_t n = m ? strlen(m) : 0;

    if (n == 0 || n > 16)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i] < 'A' || m[i] > 'Z')
            return 0;
    }
    return 1;
}

static int map_curl_error(CURLcode res)
{
    switch (res) {
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        return -EINVAL;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    default:
        return -EIO;
    }
}

int http_client_do(struct http_client *c, const char *method, const char *url,
                   const char *const *headers, const void *body, size_t body_len,
                   struct http_response *resp, struct ut_err *err)
{
    CURL *h = c->curl;
    struct curl_slist *hl = NULL, *tmp;
    struct sink sink;
    char shown[512], errbuf[CURL_ERROR_SIZE];
    const char *ctype = NULL;
    int rc = 0, have_expect = 0;
    long status = 0, connects = 0;
    CURLcode res;

    memset(resp, 0, sizeof(*resp));
    ut_buf_init(&sink.b, c->max_bytes);
    sink.over = sink.oom = 0;
    errbuf[0] = '\0';
    c->last_connects = 0;
    if (url_check(url, shown, sizeof(shown)) < 0) {
        ut_err_set(err, "%s %s: only http and https URLs are allowed", method ? method : "?",
                   shown);
        return -EINVAL;
    }
    if (!method_ok(method)) {
        ut_err_set(err, "request to %s: bad method", shown);
        return -EINVAL;
    }
    for (size_t i = 0; headers && headers[i]; i++) {
        /* curl sends header lines verbatim: refuse CR/LF (injection). */
        if (strpbrk(headers[i], "\r\n") || strchr(headers[i], ':') == NULL) {
            ut_err_set(err, "%s %s: malformed request header #%zu", method, shown, i + 1);
            rc = -EINVAL;
            goto out;
        }
        if (strncasecmp(headers[i], "Expect:", 7) == 0)
            have_expect = 1;
        if ((tmp = curl_slist_append(hl, headers[i])) == NULL)
            goto nomem;
        hl = tmp;
    }
    /* No "Expect: 100-continue" round trip (and its 1 s stall) for bodies. */
    if (!have_expect) {
        if ((tmp = curl_slist_append(hl, "Expect:")) == NULL)
            goto nomem;
        hl = tmp;
    }

    curl_easy_reset(h); /* keeps live connections and the TLS session cache */
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    if (c->ca_file) {
        /* Only these anchors: also drop the built-in CA directory. */
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
        curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    }
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->max_bytes);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        if (strcmp(method, "POST") == 0 || body_len > 0) {
            /* Not copied: body outlives curl_easy_perform(). */
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body_len ? body : "");
        }
    }

    res = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
    c->last_connects = connects;
    if (res != CURLE_OK) {
        if (sink.over || res == CURLE_FILESIZE_EXCEEDED) {
            ut_err_set(err, "%s %s: response larger than %zu bytes", method, shown, c->max_bytes);
            rc = -EFBIG;
        } else if (sink.oom) {
            goto nomem;
        } else {
            ut_err_set(err, "%s %s: %s", method, shown,
                       errbuf[0] ? errbuf : curl_easy_strerror(res));
            rc = map_curl_error(res);
        }
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype);
    if (ctype && (resp->content_type = strdup(ctype)) == NULL)
        goto nomem;
    resp->status = status;
    resp->body = (unsigned char *)ut_buf_steal(&sink.b, &resp->body_len);
    if (resp->body == NULL)
        goto nomem;
    goto out;
nomem:
    ut_err_set(err, "%s %s: out of memory", method, shown);
    rc = -ENOMEM;
out:
    /* The handle must not keep pointers into this call's stack or lists. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_slist_free_all(hl);
    ut_buf_free(&sink.b);
    if (rc < 0)
        http_response_clear(resp);
    return rc;
}
