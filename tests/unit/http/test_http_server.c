/*
 * Tests for lib/http: a real server on 127.0.0.1 port 0, spoken to with the
 * lib/http client (libcurl) and with raw sockets where the exact bytes on the
 * wire matter (headers, partial requests, keep-alive, shutdown).
 *
 * cmocka asserts only run on the main thread; handlers and client threads
 * record what they saw and the main thread checks it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
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
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "http_test.h"

#include "http/http.h"
#include "util/log.h"

static char g_dir[64];      /* temp dir with certificates and the log */
static char g_cert[128];    /* self-signed for 127.0.0.1 / localhost */
static char g_key[128];     /* its key */
static char g_key2[128];    /* an unrelated key */
static char g_garbage[128]; /* not PEM */
static char g_log[128];
static int g_log_fd = -1;

/* ---- handlers ---- */

static void h_health(struct http_req *r, void *arg)
{
    http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_item(struct http_req *r, void *arg)
{
    http_reply_json(r, 200,
                    json_pack("{s:s,s:s}", "route", "param", "id", http_req_param(r, "id")));
}

static void h_item_special(struct http_req *r, void *arg)
{
    http_reply_json(r, 200, json_pack("{s:s}", "route", "literal"));
}

static void h_item_put(struct http_req *r, void *arg)
{
    http_reply_json(r, 200, json_pack("{s:s,s:s}", "route", "put", "id", http_req_param(r, "id")));
}

static void h_item_delete(struct http_req *r, void *arg)
{
    http_reply(r, 204, NULL, NULL, 0);
}

static void h_items_post(struct http_req *r, void *arg)
{
    struct ut_err e = {{0}};
    size_t len;
    const unsigned char *b = http_req_body(r, &len);
    json_t *j = http_parse_json(b, len, &e);

    if (j == NULL) {
        http_reply_error(r, 400, "invalid_request", e.msg);
        return;
    }
    http_reply_json(r, 201, j);
}

static void h_form(struct http_req *r, void *arg)
{
    struct ut_err e = {{0}};
    struct http_form *f;
    size_t len;
    const unsigned char *b = http_req_body(r, &len);
    json_t *j;

    if (http_form_parse(b, len, &f, &e) < 0) {
        http_reply_error(r, 400, "invalid_request", e.msg);
        return;
    }
    j = json_object();
    for (size_t i = 0; i < http_form_len(f); i++)
        json_object_set_new(j, http_form_name(f, i), json_string(http_form_value(f, i)));
    http_form_free(f);
    http_reply_json(r, 200, j);
}

static void h_query(struct http_req *r, void *arg)
{
    http_reply_json(
        r, 200, json_pack("{s:s?,s:s?}", "a", http_req_query(r, "a"), "b", http_req_query(r, "b")));
}

static void h_two(struct http_req *r, void *arg)
{
    http_reply_json(
        r, 200, json_pack("{s:s,s:s}", "x", http_req_param(r, "x"), "y", http_req_param(r, "y")));
}

static void h_echo(struct http_req *r, void *arg)
{
    http_reply_json(r, 200,
                    json_pack("{s:s,s:s}", "path", http_req_path(r), "p", http_req_param(r, "p")));
}

static void h_info(struct http_req *r, void *arg)
{
    const char *t = http_req_header(r, "X-Test");

    http_add_header(r, "X-Reply", "yes");
    http_reply_json(r, 200,
                    json_pack("{s:b,s:s,s:s,s:s?}", "tls", http_req_is_tls(r), "peer",
                              http_req_peer(r), "method",
                              http_req_method(r) == HTTP_POST ? "POST" : "other", "x_test", t));
}

static void h_noreply(struct http_req *r, void *arg)
{
}

static void h_twice(struct http_req *r, void *arg)
{
    http_reply(r, 200, "text/plain", "first", 5);
    http_reply(r, 500, "text/plain", "second", 6); /* ignored, logged */
}

static void h_big(struct http_req *r, void *arg)
{
    static char big[64 * 1024];

    memset(big, 'x', sizeof(big));
    http_reply(r, 200, "text/plain", big, sizeof(big));
}

static void h_redirect(struct http_req *r, void *arg)
{
    http_add_header(r, "Location", "/healthz");
    http_reply(r, 302, "text/plain", "moved", 5);
}

/* Blocks its worker until the test posts g_release (test-only behaviour). */
static sem_t g_entered, g_release;

static void h_block(struct http_req *r, void *arg)
{
    sem_post(&g_entered);
    sem_wait(&g_release);
    http_reply(r, 200, "text/plain", "done", 4);
}

static const struct {
    int methods;
    const char *pattern;
    http_handler h;
} routes[] = {
    {HTTP_GET | HTTP_HEAD, "/healthz", h_health},
    {HTTP_GET, "/items/{id}", h_item},
    {HTTP_GET, "/items/special", h_item_special},
    {HTTP_PUT, "/items/{id}", h_item_put},
    {HTTP_DELETE, "/items/{id}", h_item_delete},
    {HTTP_POST, "/items", h_items_post},
    {HTTP_POST, "/form", h_form},
    {HTTP_GET, "/query", h_query},
    {HTTP_GET, "/a/{x}/b/{y}", h_two},
    {HTTP_GET, "/echo/{p}", h_echo},
    {HTTP_GET | HTTP_POST, "/info", h_info},
    {HTTP_GET, "/noreply", h_noreply},
    {HTTP_GET, "/twice", h_twice},
    {HTTP_GET, "/big", h_big},
    {HTTP_GET, "/redirect", h_redirect},
    {HTTP_GET, "/block", h_block},
    {HTTP_GET, "/dir/", h_health},
};

static struct http_server *start(const struct http_server_opts *o)
{
    struct http_server *s = NULL;
    struct ut_err e = {{0}};

    if (http_server_new(&s, o, &e) < 0)
        fail_msg("http_server_new: %s", e.msg);
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (http_route(s, routes[i].methods, routes[i].pattern, routes[i].h, NULL, &e) < 0)
            fail_msg("http_route: %s", e.msg);
    }
    if (http_server_start(s, &e) < 0)
        fail_msg("http_server_start: %s", e.msg);
    assert_true(http_server_port(s) > 0);
    return s;
}

static struct http_server *start_plain(int threads)
{
    struct http_server_opts o = {.listen = "127.0.0.1:0",
                                 .threads = threads,
                                 .max_header_bytes = 2048,
                                 .max_body_bytes = 4096,
                                 .timeout_secs = 20,
                                 .server_name = "test-srv"};

    return start(&o);
}

static struct http_server *start_tls(int threads)
{
    struct http_server_opts o = {.listen = "127.0.0.1:0",
                                 .cert_file = g_cert,
                                 .key_file = g_key,
                                 .threads = threads,
                                 .timeout_secs = 20};

    return start(&o);
}

/* ---- client helpers ---- */

struct res {
    int rc;
    long status;
    char body[8192];
    char ctype[128];
    char err[UT_ERR_MAX];
};

static void do_req(struct http_client *c, const char *method, const char *url,
                   const char *const *hdrs, const char *body, struct res *out)
{
    struct http_response resp;
    struct ut_err e = {{0}};

    memset(out, 0, sizeof(*out));
    out->rc = http_client_do(c, method, url, hdrs, body, body ? strlen(body) : 0, &resp, &e);
    snprintf(out->err, sizeof(out->err), "%s", e.msg);
    if (out->rc == 0) {
        out->status = resp.status;
        snprintf(out->body, sizeof(out->body), "%s", resp.body ? (char *)resp.body : "");
        snprintf(out->ctype, sizeof(out->ctype), "%s", resp.content_type ? resp.content_type : "");
        /* The body is always NUL-terminated, even when empty. */
        if (resp.body == NULL || resp.body[resp.body_len] != '\0')
            out->rc = -999;
    }
    http_response_clear(&resp);
}

static struct http_client *client(const char *ca)
{
    struct http_client_opts o = {.ca_file = ca, .timeout_ms = 20000};
    struct http_client *c = NULL;
    struct ut_err e = {{0}};

    if (http_client_new(&c, &o, &e) < 0)
        fail_msg("http_client_new: %s", e.msg);
    return c;
}

static void url(char *buf, size_t n, const char *scheme, struct http_server *s, const char *path)
{
    snprintf(buf, n, "%s://127.0.0.1:%d%s", scheme, http_server_port(s), path);
}

/* ---- raw socket helpers ---- */

struct raw {
    int fd;
    char buf[128 * 1024];
    size_t len;
};

struct raw_resp {
    int status;
    char head[8192];
    char body[70 * 1024];
    size_t body_len;
};

static void raw_open(struct raw *c, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {30, 0}; /* only a guard against hanging forever */

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
}

static int raw_try_connect(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static void raw_send(struct raw *c, const void *p, size_t n)
{
    const char *s = p;

    while (n > 0) {
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);

        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

static void raw_sends(struct raw *c, const char *s)
{
    raw_send(c, s, strlen(s));
}

/* Reads more bytes; 0 on EOF, -1 on error/timeout. */
static ssize_t raw_fill(struct raw *c)
{
    ssize_t n;

    if (c->len == sizeof(c->buf))
        return -1;
    n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n > 0)
        c->len += (size_t)n;
    return n < 0 ? -1 : n;
}

/* Reads one response (Content-Length framed). head_only for HEAD requests.
 * Returns 0, or -1 when the connection ended first. */
static int raw_read(struct raw *c, struct raw_resp *r, int head_only)
{
    char *end, cl[32];
    size_t hlen, blen = 0;

    memset(r, 0, sizeof(*r));
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
        if (raw_fill(c) <= 0)
            return -1;
    }
    hlen = (size_t)(end - c->buf) + 4;
    assert_true(hlen < sizeof(r->head));
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.%*d %d", &r->status), 1);
    if (!head_only && find_header(r->head, "Content-Length", cl, sizeof(cl)))
        blen = strtoul(cl, NULL, 10);
    assert_true(blen < sizeof(r->body));
    while (c->len < hlen + blen) {
        if (raw_fill(c) <= 0)
            return -1;
    }
    memcpy(r->body, c->buf + hlen, blen);
    r->body_len = blen;
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    return 0;
}

/* 1 when the peer closed (after any buffered bytes), 0 if more data came. */
static int raw_eof(struct raw *c)
{
    if (c->len)
        return 0;
    return raw_fill(c) == 0;
}

static void raw_close(struct raw *c)
{
    close(c->fd);
    c->fd = -1;
}

static int log_contains(const char *needle)
{
    char buf[64 * 1024];
    int fd = open(g_log, O_RDONLY);
    ssize_t n;

    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return strstr(buf, needle) != NULL;
}

static void log_reset(void)
{
    assert_int_equal(ftruncate(g_log_fd, 0), 0); /* O_APPEND: next write lands at 0 */
}

/* ---- tests: routing and replies ---- */

static void test_routing(void **state)
{
    struct http_server *s = start_plain(2);
    struct http_client *c = client(NULL);
    char u[256];
    struct res r;

    url(u, sizeof(u), "http", s, "/healthz");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    assert_string_equal(r.ctype, "application/json");

    url(u, sizeof(u), "http", s, "/items/42");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"route\":\"param\",\"id\":\"42\"}");

    /* The literal beats the parameter, whatever the registration order. */
    url(u, sizeof(u), "http", s, "/items/special");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"route\":\"literal\"}");

    url(u, sizeof(u), "http", s, "/items/7");
    do_req(c, "PUT", u, NULL, "", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"route\":\"put\",\"id\":\"7\"}");
    do_req(c, "DELETE", u, NULL, NULL, &r);
    assert_int_equal(r.status, 204);
    assert_string_equal(r.body, "");

    url(u, sizeof(u), "http", s, "/a/one/b/two");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_string_equal(r.body, "{\"x\":\"one\",\"y\":\"two\"}");

    /* Percent-decoding per segment: %2F stays inside the parameter. */
    url(u, sizeof(u), "http", s, "/echo/a%20b%2Fc");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"path\":\"/echo/a b/c\",\"p\":\"a b/c\"}");

    url(u, sizeof(u), "http", s, "/query?a=1&b=x+y%21");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_string_equal(r.body, "{\"a\":\"1\",\"b\":\"x y!\"}");
    url(u, sizeof(u), "http", s, "/query");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_string_equal(r.body, "{\"a\":null,\"b\":null}");

    url(u, sizeof(u), "http", s, "/info");
    do_req(c, "POST", u, (const char *const[]){"X-Test: hello", NULL}, "", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(
        r.body, "{\"tls\":false,\"peer\":\"127.0.0.1\",\"method\":\"POST\",\"x_test\":\"hello\"}");

    http_client_free(c);
    http_server_free(s);
}

static void test_not_found_and_method(void **state)
{
    struct http_server *s = start_plain(1);
    struct http_client *c = client(NULL);
    struct raw_resp rr;
    struct raw k;
    char u[256], v[128];
    struct res r;

    url(u, sizeof(u), "http", s, "/nope");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body,
                        "{\"error\":\"not_found\",\"error_description\":\"no such resource\"}");
    assert_string_equal(r.ctype, "application/json");
    /* A trailing slash or an empty parameter is another path. */
    url(u, sizeof(u), "http", s, "/healthz/");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    url(u, sizeof(u), "http", s, "/a//b/x");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    /* A pattern with a trailing slash matches only that form. */
    url(u, sizeof(u), "http", s, "/dir/");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    url(u, sizeof(u), "http", s, "/dir");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    url(u, sizeof(u), "http", s, "/dir//");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 404);

    raw_open(&k, http_server_port(s));
    /* Known path, wrong method: 405 with the resource's methods. */
    raw_sends(&k, "POST /items/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 405);
    assert_non_null(find_header(rr.head, "Allow", v, sizeof(v)));
    assert_string_equal(v, "GET, HEAD, PUT, DELETE");
    assert_string_equal(rr.body, "{\"error\":\"method_not_allowed\",\"error_description\":"
                                 "\"method not allowed for this resource\"}");
    /* The literal resource only has GET: no fall-through to /items/{id}. */
    raw_sends(&k, "DELETE /items/special HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 405);
    find_header(rr.head, "Allow", v, sizeof(v));
    assert_string_equal(v, "GET, HEAD");
    /* HEAD on a GET route: same headers, no body. */
    raw_sends(&k, "HEAD /items/42 HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(raw_read(&k, &rr, 1), 0);
    assert_int_equal(rr.status, 200);
    find_header(rr.head, "Content-Length", v, sizeof(v));
    assert_string_equal(v, "27"); /* {"route":"param","id":"42"} */
    find_header(rr.head, "Content-Type", v, sizeof(v));
    assert_string_equal(v, "application/json");
    find_header(rr.head, "Server", v, sizeof(v));
    assert_string_equal(v, "test-srv");
    /* ...and the next response on the same connection parses cleanly. */
    raw_sends(&k, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 200);
    assert_string_equal(rr.body, "{\"status\":\"ok\"}");
    /* Handler headers are sent. */
    raw_sends(&k, "GET /info HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_non_null(find_header(rr.head, "X-Reply", v, sizeof(v)));
    assert_string_equal(v, "yes");
    /* TRACE is not among the allowed methods: evhttp says 501. */
    raw_sends(&k, "TRACE /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 501);
    raw_close(&k);

    http_client_free(c);
    http_server_free(s);
}

static void test_bad_paths(void **state)
{
    static const char *bad[] = {
        "GET /echo/%00 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /echo/%zz HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /echo/abc%4 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /echo/%C3%28 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /query?a=1&a=2 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /query?a=%zz HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    static const char *why[] = {
        "path: NUL byte at offset 6",
        "path: invalid percent-escape at offset 6",
        "path: invalid percent-escape at offset 9",
        "path: not valid UTF-8 once decoded",
        "query: duplicate field 'a'",
        "query: invalid percent-escape in value of 'a' at offset 2",
    };
    struct http_server *s = start_plain(1);
    struct raw_resp rr;
    struct raw k;
    char want[512];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        raw_open(&k, http_server_port(s));
        raw_sends(&k, bad[i]);
        assert_int_equal(raw_read(&k, &rr, 0), 0);
        assert_int_equal(rr.status, 400);
        snprintf(want, sizeof(want), "{\"error\":\"invalid_request\",\"error_description\":\"%s\"}",
                 why[i]);
        assert_string_equal(rr.body, want);
        raw_close(&k);
    }
    /* absolute-form targets are accepted and routed by their path */
    raw_open(&k, http_server_port(s));
    raw_sends(&k, "GET http://example.org/items/9?x=1 HTTP/1.1\r\nHost: example.org\r\n\r\n");
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 200);
    assert_string_equal(rr.body, "{\"route\":\"param\",\"id\":\"9\"}");
    raw_close(&k);
    http_server_free(s);
}

static void test_framing(void **state)
{
    static const struct {
        const char *req;
        const char *why;
    } cases[] = {
        {"GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
         "request body not allowed with this method"},
        {"DELETE /items/1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         "request body not allowed with this method"},
        /* evhttp refuses this one itself (its own HTML 400) */
        {"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
         "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
         NULL},
        {"POST /items HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         "2\r\n{}\r\n0\r\n\r\n",
         NULL},
        {"POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
         "conflicting Content-Length / Transfer-Encoding headers"},
    };
    struct http_server *s = start_plain(1);
    struct raw_resp rr;
    struct raw k;
    char want[256], v[32];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        raw_open(&k, http_server_port(s));
        raw_sends(&k, cases[i].req);
        assert_int_equal(raw_read(&k, &rr, 0), 0);
        assert_int_equal(rr.status, 400);
        if (cases[i].why) {
            snprintf(want, sizeof(want),
                     "{\"error\":\"invalid_request\",\"error_description\":\"%s\"}", cases[i].why);
            assert_string_equal(rr.body, want);
        }
        /* The rest of the bytes is never parsed as another request. */
        find_header(rr.head, "Connection", v, sizeof(v));
        assert_string_equal(v, "close");
        assert_true(raw_eof(&k));
        raw_close(&k);
    }
    /* An explicit empty body is fine; chunked POST bodies work. */
    raw_open(&k, http_server_port(s));
    raw_sends(&k, "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
                  "POST /items HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "4\r\n{\"a\"\r\n3\r\n:2}\r\n0\r\n\r\n");
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 200);
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 201);
    assert_string_equal(rr.body, "{\"a\":2}");
    raw_close(&k);
    http_server_free(s);
}

static void test_handler_mistakes(void **state)
{
    struct http_server *s = start_plain(1);
    struct http_client *c = client(NULL);
    char u[256];
    struct res r;

    log_reset();
    url(u, sizeof(u), "http", s, "/noreply");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 500);
    assert_string_equal(r.body, "{\"error\":\"server_error\"}");
    url(u, sizeof(u), "http", s, "/twice");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "first");
    http_client_free(c);
    http_server_free(s);
    assert_true(log_contains("handler did not reply"));
    assert_true(log_contains("second reply to one request ignored"));
}

/* ---- tests: bodies ---- */

static void test_json_and_form_bodies(void **state)
{
    struct http_server *s = start_plain(2);
    struct http_client *c = client(NULL);
    const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    char u[256];
    struct res r;

    url(u, sizeof(u), "http", s, "/items");
    do_req(c, "POST", u, json_hdr, "{\"name\": \"x\", \"n\": [1, 2]}", &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "{\"name\":\"x\",\"n\":[1,2]}");
    do_req(c, "POST", u, json_hdr, "[1,2]", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\":\"invalid_request\",\"error_description\":"
                                "\"JSON: body must be an object, got an array\"}");
    do_req(c, "POST", u, json_hdr, "{\"a\":1,\"a\":2}", &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "duplicate object key"));
    do_req(c, "POST", u, json_hdr, "{\"a\":", &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "at line 1 column 5 (byte 5)"));
    do_req(c, "POST", u, json_hdr, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(
        r.body, "{\"error\":\"invalid_request\",\"error_description\":\"JSON: empty body\"}");

    url(u, sizeof(u), "http", s, "/form");
    do_req(c, "POST", u, NULL, "grant_type=client_credentials&scope=read+write%21", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body,
                        "{\"grant_type\":\"client_credentials\",\"scope\":\"read write!\"}");
    do_req(c, "POST", u, NULL, "a=1&a=2", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\":\"invalid_request\",\"error_description\":"
                                "\"form: duplicate field 'a'\"}");
    do_req(c, "POST", u, NULL, "a=%G0", &r);
    assert_int_equal(r.status, 400);
    assert_string_equal(r.body, "{\"error\":\"invalid_request\",\"error_description\":"
                                "\"form: invalid percent-escape in value of 'a' at offset 2\"}");
    http_client_free(c);
    http_server_free(s);
}

static void test_body_limit(void **state)
{
    struct http_server *s = start_plain(2); /* max_body_bytes 4096 */
    struct http_client *c = client(NULL);
    char *big = malloc(64 * 1024 + 1), u[256], v[64];
    struct raw_resp rr;
    struct raw k;
    struct res r;

    memset(big, 'a', 64 * 1024);
    big[64 * 1024] = '\0';
    url(u, sizeof(u), "http", s, "/form");
    /* At the cap: accepted (form value "aaa...") */
    big[0] = 'v';
    big[1] = '=';
    big[4096] = '\0';
    do_req(c, "POST", u, NULL, big, &r);
    assert_int_equal(r.status, 200);
    /* One byte over: 413, and the server carries on. */
    big[4096] = 'a';
    big[4097] = '\0';
    do_req(c, "POST", u, NULL, big, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 413);
    big[4097] = 'a';
    do_req(c, "POST", u, NULL, big, &r); /* 64 KiB */
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 413);
    url(u, sizeof(u), "http", s, "/healthz");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);

    /* On the wire: the whole body is read, then 413 + close (no reset). */
    raw_open(&k, http_server_port(s));
    raw_sends(&k, "POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 65536\r\n\r\n");
    raw_send(&k, big, 64 * 1024);
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 413);
    assert_non_null(find_header(rr.head, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(raw_eof(&k));
    raw_close(&k);
    /* Chunked bodies are capped too. */
    raw_open(&k, http_server_port(s));
    raw_sends(&k, "POST /form HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n");
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 413);
    raw_close(&k);
    free(big);
    http_client_free(c);
    http_server_free(s);
}

static void test_header_limit(void **state)
{
    struct http_server *s = start_plain(1); /* max_header_bytes 2048 */
    struct http_client *c = client(NULL);
    char hdr[4096], u[256];
    const char *const hdrs[] = {hdr, NULL};
    struct res r;

    url(u, sizeof(u), "http", s, "/info");
    snprintf(hdr, sizeof(hdr), "X-Test: %01000d", 0);
    do_req(c, "GET", u, hdrs, NULL, &r);
    assert_int_equal(r.status, 200);
    snprintf(hdr, sizeof(hdr), "X-Test: %03000d", 0);
    do_req(c, "GET", u, hdrs, NULL, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(r.status, 400);
    url(u, sizeof(u), "http", s, "/healthz");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    http_client_free(c);
    http_server_free(s);
}

/* ---- tests: connections ---- */

static void test_keepalive(void **state)
{
    struct http_server *s = start_plain(2);
    struct http_client *c = client(NULL);
    struct raw_resp rr;
    struct raw k;
    char u[256];
    struct res r;

    url(u, sizeof(u), "http", s, "/healthz");
    for (int i = 0; i < 5; i++) {
        do_req(c, "GET", u, NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        /* Only the first request opens a connection. */
        assert_int_equal(http_client_last_connects(c), i == 0 ? 1 : 0);
    }
    /* Pipelined requests on one socket come back in order. */
    raw_open(&k, http_server_port(s));
    raw_sends(&k, "GET /items/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /items/2 HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /items/3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    for (int i = 1; i <= 3; i++) {
        char want[64];

        assert_int_equal(raw_read(&k, &rr, 0), 0);
        snprintf(want, sizeof(want), "{\"route\":\"param\",\"id\":\"%d\"}", i);
        assert_string_equal(rr.body, want);
    }
    assert_true(raw_eof(&k)); /* Connection: close honoured */
    raw_close(&k);
    http_client_free(c);
    http_server_free(s);
}

struct conc {
    struct http_server *s;
    const char *scheme;
    const char *ca;
    int id;
    atomic_int *bad;
};

#define CONC_THREADS 8
#define CONC_REQS    40

static void *conc_main(void *arg)
{
    struct conc *t = arg;
    struct http_client_opts o = {.ca_file = t->ca, .timeout_ms = 20000};
    struct http_client *c = NULL;
    struct ut_err e;
    char u[256], want[128];
    struct res r;

    if (http_client_new(&c, &o, &e) < 0) {
        atomic_fetch_add(t->bad, CONC_REQS);
        return NULL;
    }
    for (int i = 0; i < CONC_REQS; i++) {
        snprintf(u, sizeof(u), "%s://127.0.0.1:%d/items/t%d-%d", t->scheme, http_server_port(t->s),
                 t->id, i);
        snprintf(want, sizeof(want), "{\"route\":\"param\",\"id\":\"t%d-%d\"}", t->id, i);
        do_req(c, "GET", u, NULL, NULL, &r);
        if (r.rc != 0 || r.status != 200 || strcmp(r.body, want) != 0)
            atomic_fetch_add(t->bad, 1);
    }
    http_client_free(c);
    return NULL;
}

static void run_concurrent(struct http_server *s, const char *scheme, const char *ca)
{
    pthread_t th[CONC_THREADS];
    struct conc t[CONC_THREADS];
    atomic_int bad = 0;

    for (int i = 0; i < CONC_THREADS; i++) {
        t[i] = (struct conc){.s = s, .scheme = scheme, .ca = ca, .id = i, .bad = &bad};
        assert_int_equal(pthread_create(&th[i], NULL, conc_main, &t[i]), 0);
    }
    for (int i = 0; i < CONC_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&bad), 0);
}

static void test_concurrent(void **state)
{
    struct http_server *s = start_plain(4);

    run_concurrent(s, "http", NULL);
    http_server_free(s);
}

struct stopper {
    struct http_server *s;
    pthread_t th;
};

static void *stop_main(void *arg)
{
    struct stopper *st = arg;

    http_server_stop(st->s);
    return NULL;
}

static void test_graceful_stop(void **state)
{
    struct http_server *s;
    struct raw idle, busy, probe;
    struct raw_resp rr;
    struct stopper st;
    char v[32];
    int port;

    s = start_plain(1);
    port = http_server_port(s);
    log_reset();
    /* idle: one request done, connection kept alive. */
    raw_open(&idle, port);
    raw_sends(&idle, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(raw_read(&idle, &rr, 0), 0);
    /* busy: a request whose body is half sent. */
    raw_open(&busy, port);
    raw_sends(&busy, "POST /items HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\n\r\n{\"a\":");
    /* probe: answered by the single worker, so busy was accepted before. */
    raw_open(&probe, port);
    raw_sends(&probe, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(raw_read(&probe, &rr, 0), 0);

    st.s = s;
    assert_int_equal(pthread_create(&st.th, NULL, stop_main, &st), 0);
    /* Idle keep-alive connections are closed at once... */
    assert_true(raw_eof(&idle));
    assert_true(raw_eof(&probe));
    /* ...no new connections are accepted... */
    assert_int_equal(raw_try_connect(port), -ECONNREFUSED);
    /* ...but the request in flight completes, then its connection closes. */
    raw_sends(&busy, " 1}");
    assert_int_equal(raw_read(&busy, &rr, 0), 0);
    assert_int_equal(rr.status, 201);
    assert_string_equal(rr.body, "{\"a\":1}");
    assert_non_null(find_header(rr.head, "Connection", v, sizeof(v)));
    assert_string_equal(v, "close");
    assert_true(raw_eof(&busy));
    pthread_join(st.th, NULL);
    /* Everything finished by itself: no deadline was needed. */
    assert_false(log_contains("stop deadline passed"));
    raw_close(&idle);
    raw_close(&busy);
    raw_close(&probe);
    http_server_stop(s); /* second stop: no-op */
    http_server_free(s);
}

static void test_stop_waits_for_handler(void **state)
{
    struct http_server *s = start_plain(2);
    struct http_client *c = client(NULL);
    struct stopper st;
    struct raw k;
    struct raw_resp rr;

    log_reset();
    raw_open(&k, http_server_port(s));
    raw_sends(&k, "GET /block HTTP/1.1\r\nHost: t\r\n\r\n");
    sem_wait(&g_entered);
    st.s = s;
    assert_int_equal(pthread_create(&st.th, NULL, stop_main, &st), 0);
    sem_post(&g_release);
    assert_int_equal(raw_read(&k, &rr, 0), 0);
    assert_int_equal(rr.status, 200);
    assert_string_equal(rr.body, "done");
    assert_true(raw_eof(&k));
    pthread_join(st.th, NULL);
    assert_false(log_contains("stop deadline passed"));
    raw_close(&k);
    http_client_free(c);
    http_server_free(s);
}

/* ---- tests: TLS ---- */

static void test_tls(void **state)
{
    struct http_server *s = start_tls(2);
    struct http_client *c = client(g_cert), *sys = client(NULL);
    char u[256];
    struct res r;

    url(u, sizeof(u), "https", s, "/info");
    for (int i = 0; i < 3; i++) {
        do_req(c, "GET", u, NULL, NULL, &r);
        assert_int_equal(r.rc, 0);
        assert_int_equal(r.status, 200);
        assert_string_equal(
            r.body, "{\"tls\":true,\"peer\":\"127.0.0.1\",\"method\":\"other\",\"x_test\":null}");
        assert_int_equal(http_client_last_connects(c), i == 0 ? 1 : 0); /* keep-alive */
    }
    url(u, sizeof(u), "https", s, "/items");
    do_req(c, "POST", u, NULL, "{\"k\":\"v\"}", &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.body, "{\"k\":\"v\"}");
    /* The self-signed certificate is not in the system store. */
    url(u, sizeof(u), "https", s, "/healthz");
    do_req(sys, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.rc, -EPROTO);
    assert_non_null(strstr(r.err, "GET https://127.0.0.1:"));
    /* Plain HTTP to the TLS port gets no HTTP answer. */
    url(u, sizeof(u), "http", s, "/healthz");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_true(r.rc < 0);
    run_concurrent(s, "https", g_cert);
    http_client_free(c);
    http_client_free(sys);
    http_server_free(s);
}

static void expect_start_error(const struct http_server_opts *o, const char *needle1,
                               const char *needle2)
{
    struct http_server *s = NULL;
    struct ut_err e = {{0}};

    assert_int_equal(http_server_new(&s, o, &e), 0);
    assert_true(http_server_start(s, &e) < 0);
    if (strstr(e.msg, needle1) == NULL || (needle2 && strstr(e.msg, needle2) == NULL))
        fail_msg("unexpected error: %s", e.msg);
    assert_int_equal(http_server_port(s), 0);
    http_server_free(s);
}

static void test_tls_bad_files(void **state)
{
    struct http_server_opts o = {.listen = "127.0.0.1:0", .threads = 1};
    char want[512];

    o.cert_file = g_cert;
    o.key_file = g_key2;
    snprintf(want, sizeof(want), "TLS key file \"%s\" does not match certificate file \"%s\"",
             g_key2, g_cert);
    expect_start_error(&o, want, NULL);

    o.key_file = g_key;
    o.cert_file = "/nonexistent/cert.pem";
    expect_start_error(&o, "TLS certificate file \"/nonexistent/cert.pem\": No such file", NULL);

    o.cert_file = g_garbage;
    snprintf(want, sizeof(want), "TLS certificate file \"%s\": ", g_garbage);
    expect_start_error(&o, want, "no start line");

    o.cert_file = g_cert;
    o.key_file = g_garbage;
    snprintf(want, sizeof(want), "TLS key file \"%s\": no usable PEM private key", g_garbage);
    expect_start_error(&o, want, NULL);

    o.key_file = "/nonexistent/key.pem";
    expect_start_error(&o, "TLS key file \"/nonexistent/key.pem\": No such file", NULL);
}

/* ---- tests: setup errors and addresses ---- */

static void test_setup_errors(void **state)
{
    static const char *bad_listen[] = {"nonsense",   "127.0.0.1:99999", "::1:80", "[::1]80",
                                       "127.0.0.1:", "127.0.0.1:8x",    ""};
    struct http_server_opts o = {.listen = "127.0.0.1:0", .threads = 1};
    struct http_server *s = NULL, *s2 = NULL;
    struct ut_err e = {{0}};
    char addr[64], want[128];

    for (size_t i = 0; i < sizeof(bad_listen) / sizeof(bad_listen[0]); i++) {
        o.listen = bad_listen[i];
        assert_int_equal(http_server_new(&s, &o, &e), -EINVAL);
        assert_null(s);
        assert_non_null(strstr(e.msg, bad_listen[i][0] ? bad_listen[i] : "empty"));
    }
    o.listen = "127.0.0.1:0";
    o.cert_file = g_cert; /* without key_file */
    assert_int_equal(http_server_new(&s, &o, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "both cert_file and key_file"));
    o.cert_file = NULL;

    /* Route registration errors. */
    assert_int_equal(http_server_new(&s, &o, &e), 0);
    assert_int_equal(http_route(s, HTTP_GET, "/x/{id}", h_health, NULL, &e), 0);
    assert_int_equal(http_route(s, HTTP_GET | HTTP_POST, "/x/{other}", h_health, NULL, &e),
                     -EEXIST);
    assert_string_equal(e.msg, "route GET /x/{other}: already registered as \"/x/{id}\"");
    assert_int_equal(http_route(s, HTTP_POST, "/x/{other}", h_health, NULL, &e), 0);
    assert_int_equal(http_route(s, HTTP_GET, "x", h_health, NULL, &e), -EINVAL);
    assert_int_equal(http_route(s, HTTP_GET, "/a//b", h_health, NULL, &e), -EINVAL);
    assert_int_equal(http_route(s, HTTP_GET, "/a//", h_health, NULL, &e), -EINVAL);
    assert_int_equal(http_route(s, HTTP_GET, "/a/{}", h_health, NULL, &e), -EINVAL);
    assert_int_equal(http_route(s, HTTP_GET, "/a/{x}/{x}", h_health, NULL, &e), -EINVAL);
    assert_string_equal(e.msg, "route pattern \"/a/{x}/{x}\": parameter {x} repeated");
    assert_int_equal(http_route(s, HTTP_GET, "/a/b%20", h_health, NULL, &e), -EINVAL);
    assert_int_equal(http_route(s, 0, "/a", h_health, NULL, &e), -EINVAL);
    assert_int_equal(http_route(s, HTTP_GET, "/a", NULL, NULL, &e), -EINVAL);
    assert_int_equal(http_server_start(s, &e), 0);
    assert_int_equal(http_route(s, HTTP_GET, "/late", h_health, NULL, &e), -EBUSY);
    assert_int_equal(http_server_start(s, &e), -EALREADY);

    /* Address in use: the message names the address. */
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", http_server_port(s));
    o.listen = addr;
    assert_int_equal(http_server_new(&s2, &o, &e), 0);
    assert_int_equal(http_server_start(s2, &e), -EADDRINUSE);
    snprintf(want, sizeof(want), "listen \"%s\": Address already in use", addr);
    assert_string_equal(e.msg, want);
    http_server_free(s2);
    http_server_free(s);

    /* Freed without ever starting. */
    o.listen = "127.0.0.1:0";
    assert_int_equal(http_server_new(&s, &o, &e), 0);
    http_server_free(s);
}

static int have_ipv6_loopback(void)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;

    ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void test_any_address(void **state)
{
    struct http_server_opts o = {.listen = ":0", .threads = 2};
    struct http_server *s = start(&o);
    struct http_client *c = client(NULL);
    char u[256];
    struct res r;

    /* ":port" listens on every address (dual-stack); IPv4 peers read as such. */
    url(u, sizeof(u), "http", s, "/info");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"peer\":\"127.0.0.1\""));
    http_server_free(s);

    /* An IPv6 literal, when the host has IPv6 loopback. */
    if (have_ipv6_loopback()) {
        o.listen = "[::1]:0";
        s = start(&o);
        snprintf(u, sizeof(u), "http://[::1]:%d/info", http_server_port(s));
        do_req(c, "GET", u, NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "\"peer\":\"::1\""));
        http_server_free(s);
    }
    http_client_free(c);
}

/* ---- tests: client ---- */

static void test_client(void **state)
{
    struct http_server *s = start_plain(1);
    struct http_client_opts o = {.max_response_bytes = 1024};
    struct http_client *c = client(NULL), *small = NULL;
    struct ut_err e = {{0}};
    char u[256];
    struct res r;

    assert_int_equal(http_client_new(&small, &o, &e), 0);
    /* Response cap: the transfer is aborted with an error. */
    url(u, sizeof(u), "http", s, "/big");
    do_req(small, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.rc, -EFBIG);
    assert_non_null(strstr(r.err, "response larger than 1024 bytes"));
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.rc, 0);
    assert_int_equal(strlen(r.body), sizeof(r.body) - 1); /* truncated by the test only */
    /* Redirects are reported, not followed. */
    url(u, sizeof(u), "http", s, "/redirect");
    do_req(c, "GET", u, NULL, NULL, &r);
    assert_int_equal(r.status, 302);
    assert_string_equal(r.body, "moved");
    /* HEAD */
    url(u, sizeof(u), "http", s, "/healthz");
    do_req(c, "HEAD", u, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");
    /* Only http and https. */
    do_req(c, "GET", "file:///etc/passwd", NULL, NULL, &r);
    assert_int_equal(r.rc, -EINVAL);
    do_req(c, "GET", "ftp://127.0.0.1/x", NULL, NULL, &r);
    assert_int_equal(r.rc, -EINVAL);
    do_req(c, "GET", "not a url", NULL, NULL, &r);
    assert_int_equal(r.rc, -EINVAL);
    /* Header injection is refused. */
    do_req(c, "GET", u, (const char *const[]){"X-A: 1\r\nX-B: 2", NULL}, NULL, &r);
    assert_int_equal(r.rc, -EINVAL);
    do_req(c, "get", u, NULL, NULL, &r);
    assert_int_equal(r.rc, -EINVAL);
    /* Transport errors name the URL without query or user info. */
    do_req(c, "GET", "http://user:pw@127.0.0.1:1/p?token=secret", NULL, NULL, &r);
    assert_int_equal(r.rc, -ECONNREFUSED);
    assert_non_null(strstr(r.err, "GET http://127.0.0.1:1/p: "));
    assert_null(strstr(r.err, "secret"));
    assert_null(strstr(r.err, "pw"));
    http_client_free(small);
    http_client_free(c);
    http_server_free(s);
}

/* ---- setup ---- */

static int run(const char *cmd)
{
    int rc = system(cmd);

    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc;
}

static int group_setup(void **state)
{
    char cmd[1024];
    FILE *f;

    snprintf(g_dir, sizeof(g_dir), "/tmp/http-test-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        return -1;
    snprintf(g_cert, sizeof(g_cert), "%s/cert.pem", g_dir);
    snprintf(g_key, sizeof(g_key), "%s/key.pem", g_dir);
    snprintf(g_key2, sizeof(g_key2), "%s/key2.pem", g_dir);
    snprintf(g_garbage, sizeof(g_garbage), "%s/garbage.pem", g_dir);
    snprintf(g_log, sizeof(g_log), "%s/log", g_dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
             "-keyout %s -out %s 2>/dev/null && "
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s 2>/dev/null",
             g_key, g_cert, g_key2);
    if (run(cmd) != 0)
        return -1;
    if ((f = fopen(g_garbage, "w")) == NULL)
        return -1;
    fputs("this is not a certificate\n", f);
    fclose(f);
    g_log_fd = open(g_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (g_log_fd < 0)
        return -1;
    ut_log_set_fd(g_log_fd);
    sem_init(&g_entered, 0, 0);
    sem_init(&g_release, 0, 0);
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[256];

    ut_log_set_fd(2);
    if (g_log_fd >= 0)
        close(g_log_fd);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    run(cmd);
    sem_destroy(&g_entered);
    sem_destroy(&g_release);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_not_found_and_method),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_handler_mistakes),
        cmocka_unit_test(test_json_and_form_bodies),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_graceful_stop),
        cmocka_unit_test(test_stop_waits_for_handler),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_tls_bad_files),
        cmocka_unit_test(test_setup_errors),
        cmocka_unit_test(test_any_address),
        cmocka_unit_test(test_client),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
