/*
 * Tests for http_req_forward (lib/http/proxy.c): two servers in one
 * process on 127.0.0.1, a "front" whose handlers forward to an "upstream",
 * spoken to with raw sockets so every byte of the relayed answer can be
 * checked. Failure cases use a port nobody listens on (refused) and a
 * socket that listens but never accepts (no answer: timeout).
 *
 * cmocka asserts only run on the main thread; handlers record what they
 * saw in atomics and the main thread checks them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_test.h"

#include "http/http.h"
#include "util/log.h"

#define BIG (1024 * 1024 + 17) /* an upstream answer bigger than one read */

static struct http_server *g_up, *g_front;
static char g_big[BIG];

/* What the front's handlers forward to; set by the test before a request. */
static struct {
    char url[128];
    int timeout_ms;
    int use_cb; /* 1: on_fail replies 503; 2: on_fail forwards again to refwd_url */
    char refwd_url[128];
} g_t;
static atomic_int g_forwarded, g_fail_calls, g_fail_status, g_https_rc, g_second_rc;
static atomic_int g_released; /* release hook calls */
static char g_fail_why[256];

/* ---- upstream handlers ---- */

static const char *method_name(enum http_method m)
{
    switch (m) {
    case HTTP_GET:
        return "GET";
    case HTTP_POST:
        return "POST";
    case HTTP_PUT:
        return "PUT";
    case HTTP_DELETE:
        return "DELETE";
    case HTTP_HEAD:
        return "HEAD";
    case HTTP_PATCH:
        return "PATCH";
    default:
        return "OTHER";
    }
}

static void up_echo(struct http_req *r, void *arg)
{
    size_t len;
    const unsigned char *b = http_req_body(r, &len);
    json_t *j =
        json_pack("{s:s,s:s,s:s?,s:I,s:s%,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?}", "method",
                  method_name(http_req_method(r)), "path", http_req_path(r), "a",
                  http_req_query(r, "a"), "len", (json_int_t)len, "body", (const char *)b,
                  len > 256 ? (size_t)0 : len, "x_test", http_req_header(r, "X-Test"), "x_extra",
                  http_req_header(r, "X-Extra"), "x_drop", http_req_header(r, "X-Drop"),
                  "x_private", http_req_header(r, "X-Private"), "host", http_req_header(r, "Host"),
                  "ctype", http_req_header(r, "Content-Type"), "te", http_req_header(r, "TE"));

    http_add_header(r, "X-Up", "1");
    http_add_header(r, "Keep-Alive", "timeout=5"); /* hop-by-hop: must not come through */
    http_reply_json(r, 201, j);
}

static void up_big(struct http_req *r, void *arg)
{
    http_add_header(r, "X-Big", "yes");
    http_reply(r, 200, "application/octet-stream", g_big, sizeof(g_big));
}

static void up_status(struct http_req *r, void *arg)
{
    int code = atoi(http_req_param(r, "code"));
    static const char doc[] = "{\"type\":\"urn:ietf:params:acme:error:badNonce\"}";

    http_add_header(r, "Replay-Nonce", "up-nonce");
    if (code == 204 || code == 304)
        http_reply(r, code, NULL, NULL, 0);
    else
        http_reply(r, code, "application/problem+json", doc, sizeof(doc) - 1);
}

/* Sum of the body bytes, to check a big request body arrived intact. */
static void up_sum(struct http_req *r, void *arg)
{
    size_t len;
    const unsigned char *b = http_req_body(r, &len);
    unsigned long long sum = 0;

    for (size_t i = 0; i < len; i++)
        sum = sum * 31 + b[i];
    http_reply_json(r, 200, json_pack("{s:I,s:I}", "len", (json_int_t)len, "sum", (json_int_t)sum));
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ---- front handlers ---- */

static void on_release(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_released, 1);
}

static void on_fail(struct http_req *r, int status, const char *why, void *arg)
{
    struct http_forward_opts again = {.timeout_ms = 5000, .release = on_release};
    struct ut_err e = {{0}};
    char body[512];

    snprintf(g_fail_why, sizeof(g_fail_why), "%s", why);
    atomic_store(&g_fail_status, status);
    atomic_fetch_add(&g_fail_calls, 1);
    /* Forwarding the failed request again: the new forward owns it. */
    if (g_t.use_cb == 2 && http_req_forward_opts(r, g_t.refwd_url, &again, &e) == 0)
        return;
    snprintf(body, sizeof(body), "custom %d %s %s", status, why, http_req_path(r));
    http_add_header(r, "X-Custom", "1");
    http_reply(r, 503, "text/plain", body, strlen(body));
}

static void h_fwd(struct http_req *r, void *arg)
{
    static const char *const extra[] = {"X-Extra: yes", "X-Hop: front", NULL};
    static const char *const drop[] = {"X-Drop", NULL};
    struct http_forward_opts o = {.headers = extra,
                                  .drop_headers = drop,
                                  .timeout_ms = g_t.timeout_ms,
                                  .on_fail = g_t.use_cb ? on_fail : NULL,
                                  .release = on_release};
    struct ut_err e = {{0}};

    if (http_req_forward_opts(r, g_t.url, &o, &e) < 0) {
        http_reply(r, 500, "text/plain", e.msg, strlen(e.msg));
        return;
    }
    atomic_fetch_add(&g_forwarded, 1);
}

static void h_https(struct http_req *r, void *arg)
{
    struct ut_err e = {{0}};
    int rc = http_req_forward(r, "https://127.0.0.1:1", NULL, 0, &e);

    atomic_store(&g_https_rc, rc);
    http_reply(r, 500, "text/plain", e.msg, strlen(e.msg));
}

/* Forwards, then misbehaves: a second forward and a reply, both refused. */
static void h_twice(struct http_req *r, void *arg)
{
    struct ut_err e = {{0}};

    if (http_req_forward(r, g_t.url, NULL, 0, &e) < 0) {
        http_reply(r, 500, "text/plain", e.msg, strlen(e.msg));
        return;
    }
    atomic_store(&g_second_rc, http_req_forward(r, g_t.url, NULL, 0, &e));
    http_reply(r, 418, "text/plain", "late", 4); /* ignored, logged */
}

static struct http_server *start(int front, int timeout_secs)
{
    struct http_server_opts o = {.listen = "127.0.0.1:0",
                                 .threads = 2,
                                 .max_body_bytes = 4 * 1024 * 1024,
                                 .timeout_secs = timeout_secs,
                                 .server_name = front ? "front" : "upstream"};
    const int any = HTTP_GET | HTTP_POST | HTTP_PUT | HTTP_PATCH | HTTP_DELETE;
    struct http_server *s = NULL;
    struct ut_err e = {{0}};
    int rc = 0;

    if (http_server_new(&s, &o, &e) < 0)
        fail_msg("http_server_new: %s", e.msg);
    if (front) {
        rc |= http_route(s, any, "/echo", h_fwd, NULL, &e);
        rc |= http_route(s, any, "/echo/{x}", h_fwd, NULL, &e);
        rc |= http_route(s, HTTP_GET | HTTP_HEAD, "/big", h_fwd, NULL, &e);
        rc |= http_route(s, HTTP_POST, "/status/{code}", h_fwd, NULL, &e);
        rc |= http_route(s, HTTP_POST, "/sum", h_fwd, NULL, &e);
        rc |= http_route(s, HTTP_GET, "/https", h_https, NULL, &e);
        rc |= http_route(s, HTTP_GET, "/twice", h_twice, NULL, &e);
    } else {
        rc |= http_route(s, any, "/echo", up_echo, NULL, &e);
        rc |= http_route(s, any, "/echo/{x}", up_echo, NULL, &e);
        rc |= http_route(s, HTTP_GET | HTTP_HEAD, "/big", up_big, NULL, &e);
        rc |= http_route(s, HTTP_POST, "/status/{code}", up_status, NULL, &e);
        rc |= http_route(s, HTTP_POST, "/sum", up_sum, NULL, &e);
        rc |= http_route(s, HTTP_GET, "/twice", up_echo, NULL, &e);
    }
    if (rc != 0)
        fail_msg("http_route: %s", e.msg);
    if (http_server_start(s, &e) < 0)
        fail_msg("http_server_start: %s", e.msg);
    return s;
}

static void target(const char *url, int timeout_ms, int use_cb)
{
    snprintf(g_t.url, sizeof(g_t.url), "%s", url);
    g_t.timeout_ms = timeout_ms;
    g_t.use_cb = use_cb;
}

static void target_up(void)
{
    char u[64];

    snprintf(u, sizeof(u), "http://127.0.0.1:%d", http_server_port(g_up));
    target(u, 5000, 0);
}

/* ---- raw client ---- */

struct resp {
    int status;
    char head[8192];
    char *body; /* malloc'd, NUL-terminated */
    size_t body_len;
    int eof_only; /* the connection closed without any answer */
};

static int raw_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {30, 0}; /* a guard against hanging forever */
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    const char *s = p;

    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* Reads everything until the server closes (requests say Connection:
 * close) and splits it into head and body. Returns -1 on a read error. */
static int read_all(int fd, struct resp *r)
{
    size_t cap = 64 * 1024, len = 0;
    char *buf = malloc(cap), *end;
    ssize_t n;

    memset(r, 0, sizeof(*r));
    assert_non_null(buf);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    if (len == 0) {
        r->eof_only = 1;
        free(buf);
        r->body = calloc(1, 1);
        return 0;
    }
    end = strstr(buf, "\r\n\r\n");
    assert_non_null(end);
    assert_true((size_t)(end - buf) + 4 < sizeof(r->head));
    memcpy(r->head, buf, (size_t)(end - buf) + 4);
    assert_int_equal(sscanf(r->head, "HTTP/1.%*d %d", &r->status), 1);
    r->body_len = len - (size_t)(end - buf) - 4;
    r->body = malloc(r->body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, end + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return 0;
}

/* One request on a fresh connection; head is the request line + headers
 * without the final CRLF (Connection: close is added). */
static void roundtrip(int port, const char *head, const void *body, size_t blen, struct resp *r)
{
    int fd = raw_connect(port);
    char cl[64];

    raw_send(fd, head, strlen(head));
    if (body) {
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", blen);
        raw_send(fd, cl, strlen(cl));
    }
    if (strstr(head, "Connection: close") == NULL)
        raw_send(fd, "Connection: close\r\n", 19);
    raw_send(fd, "\r\n", 2);
    if (body && blen)
        raw_send(fd, body, blen);
    assert_int_equal(read_all(fd, r), 0);
    close(fd);
}

static json_t *body_json(const struct resp *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body, r->body_len, 0, &je);

    if (j == NULL)
        fail_msg("not JSON: %s (%.200s)", je.text, r->body);
    return j;
}

static const char *jstr(json_t *j, const char *k)
{
    return json_string_value(json_object_get(j, k));
}

/* A port with nothing listening (bound once, then closed). */
static int dead_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t sl = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A socket that listens (connections complete in the backlog) but is
 * never accepted from: requests to it get no answer. */
static int blackhole(int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t sl = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* ---- tests ---- */

static void test_forward_basic(void **state)
{
    struct resp r;
    char v[256], head[512];
    json_t *j;

    target_up();
    snprintf(head, sizeof(head),
             "POST /echo/a%%2Fb?a=1%%202 HTTP/1.1\r\nHost: front\r\n"
             "Content-Type: application/jose+json\r\nX-Test: t1\r\nX-Extra: forged\r\n"
             "X-Drop: d\r\nConnection: close\r\nConnection: X-Private\r\nX-Private: p\r\n"
             "TE: trailers\r\n");
    roundtrip(http_server_port(g_front), head, "{\"k\":1}", 7, &r);
    assert_int_equal(r.status, 201);
    j = body_json(&r);
    assert_string_equal(jstr(j, "method"), "POST");
    assert_string_equal(jstr(j, "path"), "/echo/a/b"); /* %2F reached the upstream raw */
    assert_string_equal(jstr(j, "a"), "1 2");
    assert_string_equal(jstr(j, "body"), "{\"k\":1}");
    assert_string_equal(jstr(j, "ctype"), "application/jose+json");
    assert_string_equal(jstr(j, "x_test"), "t1");
    assert_string_equal(jstr(j, "x_extra"), "yes"); /* the caller's value, not the client's */
    assert_null(jstr(j, "x_drop"));
    assert_null(jstr(j, "x_private")); /* named by Connection: hop-by-hop */
    assert_null(jstr(j, "te"));
    snprintf(v, sizeof(v), "127.0.0.1:%d", http_server_port(g_up));
    assert_string_equal(jstr(j, "host"), v);
    json_decref(j);
    /* The answer's headers: end-to-end ones through, hop-by-hop ones not. */
    assert_non_null(find_header(r.head, "X-Up", v, sizeof(v)));
    assert_string_equal(v, "1");
    assert_null(find_header(r.head, "Keep-Alive", v, sizeof(v)));
    assert_non_null(find_header(r.head, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "application/json");
    assert_non_null(find_header(r.head, "Server", v, sizeof(v)));
    assert_string_equal(v, "front");
    assert_non_null(find_header(r.head, "Content-Length", v, sizeof(v)));
    assert_int_equal(strtoul(v, NULL, 10), r.body_len);
    resp_free(&r);

    /* GET, PUT, DELETE keep their method; a query on the root of a path. */
    roundtrip(http_server_port(g_front), "GET /echo?a=x HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 201);
    j = body_json(&r);
    assert_string_equal(jstr(j, "method"), "GET");
    assert_string_equal(jstr(j, "a"), "x");
    assert_int_equal(json_integer_value(json_object_get(j, "len")), 0);
    json_decref(j);
    resp_free(&r);
    roundtrip(http_server_port(g_front), "PUT /echo HTTP/1.1\r\nHost: f\r\n", "abc", 3, &r);
    j = body_json(&r);
    assert_string_equal(jstr(j, "method"), "PUT");
    assert_string_equal(jstr(j, "body"), "abc");
    json_decref(j);
    resp_free(&r);
    roundtrip(http_server_port(g_front), "DELETE /echo HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    j = body_json(&r);
    assert_string_equal(jstr(j, "method"), "DELETE");
    json_decref(j);
    resp_free(&r);
}

/* A host name resolves on the worker's asynchronous resolver (/etc/hosts). */
static void test_forward_by_name(void **state)
{
    struct resp r;
    char u[64];
    json_t *j;

    snprintf(u, sizeof(u), "http://localhost:%d/", http_server_port(g_up));
    target(u, 5000, 0);
    roundtrip(http_server_port(g_front), "GET /echo?a=n HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 201);
    j = body_json(&r);
    assert_string_equal(jstr(j, "a"), "n");
    assert_string_equal(jstr(j, "path"), "/echo"); /* base path "/" adds nothing */
    json_decref(j);
    resp_free(&r);
}

static void test_forward_status_codes(void **state)
{
    struct resp r;
    char v[64];

    target_up();
    roundtrip(http_server_port(g_front), "POST /status/409 HTTP/1.1\r\nHost: f\r\n", "", 0, &r);
    assert_int_equal(r.status, 409);
    assert_string_equal(r.body, "{\"type\":\"urn:ietf:params:acme:error:badNonce\"}");
    assert_non_null(find_header(r.head, "Replay-Nonce", v, sizeof(v)));
    assert_string_equal(v, "up-nonce");
    assert_non_null(find_header(r.head, "Content-Type", v, sizeof(v)));
    assert_string_equal(v, "application/problem+json");
    resp_free(&r);

    /* 204: no body, no Content-Length. */
    roundtrip(http_server_port(g_front), "POST /status/204 HTTP/1.1\r\nHost: f\r\n", "", 0, &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
    assert_null(find_header(r.head, "Content-Length", v, sizeof(v)));
    assert_non_null(find_header(r.head, "Replay-Nonce", v, sizeof(v)));
    resp_free(&r);
}

static void test_forward_big_and_head(void **state)
{
    size_t n = 3 * 1024 * 1024 + 5;
    unsigned char *up = malloc(n);
    unsigned long long sum = 0;
    struct resp r;
    char v[64];
    json_t *j;

    target_up();
    /* A big answer comes through whole. */
    roundtrip(http_server_port(g_front), "GET /big HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, sizeof(g_big));
    assert_memory_equal(r.body, g_big, sizeof(g_big));
    assert_non_null(find_header(r.head, "X-Big", v, sizeof(v)));
    resp_free(&r);

    /* HEAD: the upstream's Content-Length, no body. */
    roundtrip(http_server_port(g_front), "HEAD /big HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    assert_non_null(find_header(r.head, "Content-Length", v, sizeof(v)));
    assert_int_equal(strtoul(v, NULL, 10), sizeof(g_big));
    resp_free(&r);

    /* A big request body reaches the upstream intact. */
    assert_non_null(up);
    for (size_t i = 0; i < n; i++) {
        up[i] = (unsigned char)(i * 7 + (i >> 11));
        sum = sum * 31 + up[i];
    }
    roundtrip(http_server_port(g_front), "POST /sum HTTP/1.1\r\nHost: f\r\n", up, n, &r);
    assert_int_equal(r.status, 200);
    j = body_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "len")), n);
    assert_true((unsigned long long)json_integer_value(json_object_get(j, "sum")) ==
                (unsigned long long)(json_int_t)sum);
    json_decref(j);
    resp_free(&r);
    free(up);
}

static void test_forward_upstream_down(void **state)
{
    char u[64];
    struct resp r;
    json_t *j;

    snprintf(u, sizeof(u), "http://127.0.0.1:%d", dead_port());
    /* Default: 502 JSON. */
    target(u, 5000, 0);
    roundtrip(http_server_port(g_front), "POST /echo HTTP/1.1\r\nHost: f\r\n", "x", 1, &r);
    assert_int_equal(r.status, 502);
    j = body_json(&r);
    assert_string_equal(jstr(j, "error"), "bad_gateway");
    assert_non_null(strstr(jstr(j, "error_description"), u));
    json_decref(j);
    resp_free(&r);

    /* With a callback: its reply, on the request it was handed. */
    atomic_store(&g_fail_calls, 0);
    target(u, 5000, 1);
    roundtrip(http_server_port(g_front), "POST /echo/q?a=1 HTTP/1.1\r\nHost: f\r\n", "x", 1, &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(atomic_load(&g_fail_calls), 1);
    assert_int_equal(atomic_load(&g_fail_status), 502);
    assert_non_null(strstr(r.body, "custom 502"));
    assert_non_null(strstr(r.body, "/echo/q")); /* http_req_path works in the callback */
    resp_free(&r);

    /* on_fail may forward the request again (to a live upstream): the
     * second forward answers; each forward released exactly once. */
    atomic_store(&g_released, 0);
    target(u, 5000, 2);
    snprintf(g_t.refwd_url, sizeof(g_t.refwd_url), "http://127.0.0.1:%d", http_server_port(g_up));
    roundtrip(http_server_port(g_front), "POST /echo/again HTTP/1.1\r\nHost: f\r\n", "y", 1, &r);
    assert_int_equal(r.status, 201);
    j = body_json(&r);
    assert_string_equal(jstr(j, "path"), "/echo/again");
    assert_string_equal(jstr(j, "body"), "y");
    json_decref(j);
    resp_free(&r);
    for (int i = 0; i < 100 && atomic_load(&g_released) < 2; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&g_released), 2);

    /* Refused synchronously: https, and a bad URL; the handler replies
     * (and release is never called). */
    atomic_store(&g_released, 0);
    roundtrip(http_server_port(g_front), "GET /https HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 500);
    assert_int_equal(atomic_load(&g_https_rc), -EPROTONOSUPPORT);
    assert_non_null(strstr(r.body, "https"));
    resp_free(&r);
    target("ftp://x", 5000, 0);
    roundtrip(http_server_port(g_front), "GET /echo HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 500);
    assert_non_null(strstr(r.body, "want http://"));
    resp_free(&r);
    assert_int_equal(atomic_load(&g_released), 0);
}

static void test_forward_timeout(void **state)
{
    int port, fd = blackhole(&port);
    char u[64];
    struct resp r;
    json_t *j;

    snprintf(u, sizeof(u), "http://127.0.0.1:%d", port);
    target(u, 300, 0);
    roundtrip(http_server_port(g_front), "POST /echo HTTP/1.1\r\nHost: f\r\n", "x", 1, &r);
    assert_int_equal(r.status, 504);
    j = body_json(&r);
    assert_string_equal(jstr(j, "error"), "gateway_timeout");
    json_decref(j);
    resp_free(&r);

    atomic_store(&g_fail_calls, 0);
    target(u, 300, 1);
    roundtrip(http_server_port(g_front), "POST /echo HTTP/1.1\r\nHost: f\r\n", "x", 1, &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(atomic_load(&g_fail_status), 504);
    resp_free(&r);
    close(fd);
}

static void test_forward_misuse(void **state)
{
    struct resp r;
    json_t *j;

    target_up();
    atomic_store(&g_second_rc, 0);
    roundtrip(http_server_port(g_front), "GET /twice HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 201); /* the upstream's, not the handler's late 418 */
    assert_int_equal(atomic_load(&g_second_rc), -EALREADY);
    j = body_json(&r);
    assert_string_equal(jstr(j, "path"), "/twice");
    json_decref(j);
    resp_free(&r);
}

/* The client hangs up while its forward is pending: the late reply must
 * find the request detached, not freed. */
static void test_client_gone(void **state)
{
    int port, hole = blackhole(&port), fd;
    char u[64];
    struct resp r;
    static const char req[] = "POST /echo HTTP/1.1\r\nHost: f\r\nContent-Length: 1\r\n\r\nx";

    snprintf(u, sizeof(u), "http://127.0.0.1:%d", port);
    atomic_store(&g_fail_calls, 0);
    atomic_store(&g_forwarded, 0);
    target(u, 200, 1);
    fd = raw_connect(http_server_port(g_front));
    raw_send(fd, req, sizeof(req) - 1);
    for (int i = 0; i < 500 && atomic_load(&g_forwarded) == 0; i++)
        sleep_ms(10);
    close(fd);
    for (int i = 0; i < 1000 && atomic_load(&g_fail_calls) == 0; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&g_fail_calls), 1);
    /* The server still works. */
    target_up();
    roundtrip(http_server_port(g_front), "GET /echo HTTP/1.1\r\nHost: f\r\n", NULL, 0, &r);
    assert_int_equal(r.status, 201);
    resp_free(&r);
    close(hole);
}

struct pending {
    int port;
    struct resp r;
    int rc;
};

static void *pending_main(void *arg)
{
    struct pending *p = arg;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port)};
    static const char req[] =
        "POST /echo HTTP/1.1\r\nHost: f\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx";
    struct timeval tv = {30, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1)) {
        p->rc = -1;
    } else {
        p->rc = read_all(fd, &p->r);
    }
    close(fd);
    return NULL;
}

/* Stopping a server with a forward pending past its drain deadline cancels
 * it cleanly: no reply, the connection closed, nothing leaked (ASan). */
static void test_stop_with_pending_forward(void **state)
{
    int port, hole = blackhole(&port);
    struct http_server *front = start(1, 1);
    struct pending p = {.port = http_server_port(front)};
    pthread_t t;
    char u[64];

    snprintf(u, sizeof(u), "http://127.0.0.1:%d", port);
    target(u, 20000, 0);
    atomic_store(&g_forwarded, 0);
    assert_int_equal(pthread_create(&t, NULL, pending_main, &p), 0);
    for (int i = 0; i < 1000 && atomic_load(&g_forwarded) == 0; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&g_forwarded), 1);
    atomic_store(&g_released, 0);
    http_server_stop(front); /* drains for timeout_secs (1), then cuts */
    pthread_join(t, NULL);
    assert_int_equal(p.rc, 0);
    assert_true(p.r.eof_only);
    http_server_free(front); /* cancels the forward: released */
    assert_int_equal(atomic_load(&g_released), 1);
    resp_free(&p.r);
    close(hole);
}

/* A forward that completes within the drain window still answers. */
static void test_stop_lets_forward_finish(void **state)
{
    struct http_server *front = start(1, 10);
    struct pending p = {.port = http_server_port(front)};
    int port, hole = blackhole(&port);
    pthread_t t;
    char u[64];

    /* The upstream does not answer; the forward's own 300 ms deadline
     * answers 504 while the server drains. */
    snprintf(u, sizeof(u), "http://127.0.0.1:%d", port);
    target(u, 300, 0);
    atomic_store(&g_forwarded, 0);
    assert_int_equal(pthread_create(&t, NULL, pending_main, &p), 0);
    for (int i = 0; i < 1000 && atomic_load(&g_forwarded) == 0; i++)
        sleep_ms(10);
    http_server_stop(front);
    pthread_join(t, NULL);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.r.status, 504);
    resp_free(&p.r);
    http_server_free(front);
    close(hole);
}

static int group_setup(void **state)
{
    for (size_t i = 0; i < sizeof(g_big); i++)
        g_big[i] = (char)('a' + i % 26);
    ut_log_set_level(UT_LOG_ERROR);
    g_up = start(0, 20);
    g_front = start(1, 20);
    return 0;
}

static int group_teardown(void **state)
{
    http_server_free(g_front);
    http_server_free(g_up);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_basic),
        cmocka_unit_test(test_forward_by_name),
        cmocka_unit_test(test_forward_status_codes),
        cmocka_unit_test(test_forward_big_and_head),
        cmocka_unit_test(test_forward_upstream_down),
        cmocka_unit_test(test_forward_timeout),
        cmocka_unit_test(test_forward_misuse),
        cmocka_unit_test(test_client_gone),
        cmocka_unit_test(test_stop_with_pending_forward),
        cmocka_unit_test(test_stop_lets_forward_finish),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
