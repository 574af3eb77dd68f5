/*
 * driver.c - the HTTP side of the gossip engine (driver.h): the background
 * loop and the routes. The loop always runs: besides the exchanges (only
 * with run_loop, i.e. configured peers) it does the engine's periodic work
 * (gsp_engine_maintain: GC every min(tombstone_ttl / 8, 10 min), the
 * staleness check, persisting the last contact), which a node that is only
 * ever contacted by others needs too.
 */
#include "gossip/driver.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gossip/engine_int.h"
#include "gossip/members.h"
#include "util/log.h"
#include "util/mem.h"

/* Items handled per wake-up; the rest wait for the next pass. */
#define DUE_BATCH 64
/* Longest sleep when the engine names no deadline. */
#define IDLE_MS 1000

struct gsp_driver {
    struct gsp_engine *e;
    char *ca_file;
    char *header_name;
    char *metrics_prefix;
    int timeout_ms;
    int exchanges; /* run_loop: contact peers */
    pthread_t thread;
    int running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int woken;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Joins base and path without doubling the slash. */
static void join_url(char *out, size_t n, const char *base, const char *path)
{
    size_t bl = strlen(base);

    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    snprintf(out, n, "%.*s%s", (int)bl, base, path);
}

static void resolve(struct gsp_driver *d, struct http_client *c, const struct gsp_due *due)
{
    struct http_response resp = {0};
    struct ut_err err = {{0}};
    char url[600];

    join_url(url, sizeof(url), due->url, "/api/gossip/kem-info");
    if (http_client_do(c, "GET", url, NULL, NULL, 0, &resp, &err) < 0 || resp.status != 200) {
        ut_log(UT_LOG_DEBUG, "gossip", "cannot fetch kem-info", UT_LF_S("peer", due->url),
               UT_LF_I("status", resp.status), UT_LF_S("error", err.msg));
        goto out;
    }
    /* Resolves the URL and, with a certification verifier, pins a
     * certified peer (refusals are logged by the engine; the first
     * exchange then introduces us: gsp_due.introduce). */
    if (gsp_engine_resolve_kem_info(d->e, due->url, (const char *)resp.body, resp.body_len, &err) <
        0)
        ut_log(UT_LOG_WARN, "gossip", "peer kem-info unusable", UT_LF_S("peer", due->url),
               UT_LF_S("error", err.msg));
out:
    http_response_clear(&resp);
}

/* When this node has a certification, hands the peer our cluster_nodes
 * entry so it can pin us on it (POST /api/gossip/introduce): before the
 * first exchange with a peer we pinned on its certification, and after a
 * 403 (it does not know us); the next exchange then succeeds. Peers
 * without a verifier answer 404; nothing else happens. */
static void introduce(struct gsp_driver *d, struct http_client *c, const char *peer_url)
{
    struct http_response resp = {0};
    struct ut_err err = {{0}};
    const char *headers[] = {"Content-Type: application/json", NULL};
    char url[600], *entry = NULL;
    size_t len = 0;

    if (gsp_engine_introduction(d->e, &entry, &len) < 0)
        return;
    join_url(url, sizeof(url), peer_url, "/api/gossip/introduce");
    if (http_client_do(c, "POST", url, headers, entry, len, &resp, &err) < 0)
        ut_log(UT_LOG_DEBUG, "gossip", "introduction failed", UT_LF_S("peer", peer_url),
               UT_LF_S("error", err.msg));
    else if (resp.status == 200)
        ut_log(UT_LOG_INFO, "gossip", "introduced this node to peer", UT_LF_S("peer", peer_url));
    else
        ut_log(UT_LOG_DEBUG, "gossip", "introduction refused", UT_LF_S("peer", peer_url),
               UT_LF_I("status", resp.status));
    free(entry);
    http_response_clear(&resp);
}

static void exchange(struct gsp_driver *d, struct http_client *c, const struct gsp_due *due)
{
    struct http_response resp = {0};
    struct gsp_exchange *x = NULL;
    struct ut_err err = {{0}};
    char url[600], hdr[CRY_ENV_ID_MAX + 64];
    const char *headers[3];
    uint8_t *msg = NULL;
    size_t len = 0;

    if (due->url[0] == '\0')
        return;         /* a learned node without a URL: it contacts us */
    if (due->introduce) /* pinned on its certification: it may not know us */
        introduce(d, c, due->url);
    if (gsp_engine_begin(d->e, due->node_id, due->kind, &msg, &len, &x, &err) < 0)
        return; /* logged by the engine (no KEM key for peer...) */
    join_url(url, sizeof(url), due->url, "/api/gossip/sync");
    snprintf(hdr, sizeof(hdr), "%s: %s", d->header_name, gsp_engine_node_id(d->e));
    headers[0] = hdr;
    headers[1] = "Content-Type: application/octet-stream";
    headers[2] = NULL;
    if (http_client_do(c, "POST", url, headers, msg, len, &resp, &err) < 0) {
        gsp_engine_fail(d->e, x, 0, err.msg);
    } else if (resp.status != 200) {
        char why[64];
        snprintf(why, sizeof(why), "HTTP %ld", resp.status);
        gsp_engine_fail(d->e, x, (int)resp.status, why);
        if (resp.status == 403)
            introduce(d, c, due->url);
    } else {
        gsp_engine_finish(d->e, x, resp.body, resp.body_len, &err);
    }
    free(msg);
    http_response_clear(&resp);
}

static void *loop(void *arg)
{
    struct gsp_driver *d = arg;
    struct http_client_opts co = {.ca_file = d->ca_file,
                                  .timeout_ms = d->timeout_ms,
                                  .connect_timeout_ms =
                                      d->timeout_ms < 2000 ? d->timeout_ms : 2000};
    struct http_client *c = NULL;
    struct ut_err err = {{0}};
    struct gsp_due *due = calloc(DUE_BATCH, sizeof(*due));

    if (due == NULL || (d->exchanges && http_client_new(&c, &co, &err) < 0)) {
        ut_log(UT_LOG_ERROR, "gossip", "gossip loop cannot start", UT_LF_S("error", err.msg));
        free(due);
        return NULL;
    }
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        uint64_t next = 0, now, maint;
        size_t n = 0;

        d->woken = 0;
        pthread_mutex_unlock(&d->mu);
        maint = gsp_engine_maintain(d->e);
        if (d->exchanges)
            n = gsp_engine_due(d->e, due, DUE_BATCH, &next);
        if (next == 0 || maint < next)
            next = maint;
        for (size_t i = 0; i < n; i++) {
            if (due[i].kind == GSP_DUE_RESOLVE)
                resolve(d, c, &due[i]);
            else
                exchange(d, c, &due[i]);
        }
        pthread_mutex_lock(&d->mu);
        if (d->stop || d->woken || n > 0)
            continue; /* more may be due right away (GSP_DUE_MORE, pushes) */
        now = mono_ms();
        if (next == 0 || next > now + IDLE_MS)
            next = now + IDLE_MS;
        if (next > now) {
            struct timespec ts = {.tv_sec = (time_t)(next / 1000),
                                  .tv_nsec = (long)(next % 1000) * 1000000L};
            pthread_cond_timedwait(&d->cv, &d->mu, &ts);
        }
    }
    pthread_mutex_unlock(&d->mu);
    http_client_free(c);
    free(due);
    return NULL;
}

static void wake_cb(void *arg)
{
    gsp_driver_wake(arg);
}

int gsp_driver_start(struct gsp_driver **out, const struct gsp_driver_opts *o, struct ut_err *err)
{
    struct gsp_driver *d = calloc(1, sizeof(*d));
    pthread_condattr_t ca;
    int rc;

    *out = NULL;
    if (d == NULL)
        return -ENOMEM;
    d->e = o->engine;
    d->ca_file = o->ca_file ? ut_xstrdup(o->ca_file) : NULL;
    d->header_name = ut_xstrdup(o->header_name ? o->header_name : "X-Node-Id");
    d->metrics_prefix = ut_xstrdup(o->metrics_prefix ? o->metrics_prefix : "gossip");
    d->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    pthread_mutex_init(&d->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_REALTIME);
    pthread_cond_init(&d->cv, &ca);
    pthread_condattr_destroy(&ca);
    d->exchanges = o->run_loop;
    gsp_engine_set_wakeup(d->e, wake_cb, d);
    rc = pthread_create(&d->thread, NULL, loop, d);
    if (rc != 0) {
        ut_err_set(err, "cannot start the gossip thread: %s", strerror(rc));
        gsp_driver_stop(d);
        return -rc;
    }
    d->running = 1;
    *out = d;
    return 0;
}

void gsp_driver_wake(struct gsp_driver *d)
{
    pthread_mutex_lock(&d->mu);
    d->woken = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

void gsp_driver_reload_peers(struct gsp_driver *d, const char *const *urls, size_t n)
{
    struct ut_err err = {{0}};

    if (d == NULL)
        return;
    if (gsp_engine_set_peers(d->e, urls, n, &err) < 0) {
        ut_log(UT_LOG_ERROR, "gossip", "peer list reload refused", UT_LF_S("error", err.msg));
        return;
    }
    gsp_driver_wake(d);
    ut_log(UT_LOG_INFO, "gossip", "peer list reloaded", UT_LF_I("peers", n));
}

void gsp_driver_stop(struct gsp_driver *d)
{
    if (d == NULL)
        return;
    gsp_engine_set_wakeup(d->e, NULL, NULL);
    pthread_mutex_lock(&d->mu);
    d->stop = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    if (d->running)
        pthread_join(d->thread, NULL);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d->ca_file);
    free(d->header_name);
    free(d->metrics_prefix);
    free(d);
}

/* ---- routes ---- */

struct route_ctx {
    struct gsp_driver *d;
    gsp_admin_check_fn admin;
    void *admin_arg;
};

static void sync_handler(struct http_req *r, void *arg)
{
    struct route_ctx *rc = arg;
    struct ut_err err = {{0}};
    const unsigned char *body;
    uint8_t *resp = NULL;
    size_t len, rlen = 0;
    int status = 500;

    if (rc->d == NULL) {
        http_reply_error(r, 404, "not_found", "gossip is not enabled on this node");
        return;
    }
    body = http_req_body(r, &len);
    if (gsp_engine_handle(rc->d->e, body, len, http_req_header(r, rc->d->header_name), &resp, &rlen,
                          &status, &err) < 0) {
        http_reply_error(r, status >= 400 ? status : 400, "refused", err.msg);
        return;
    }
    http_reply(r, 200, "application/octet-stream", resp, rlen);
    free(resp);
}

static void status_handler(struct http_req *r, void *arg)
{
    struct route_ctx *rc = arg;

    if (!rc->admin(r, rc->admin_arg))
        return;
    if (rc->d == NULL) {
        http_reply_json(r, 200, json_pack("{s:b}", "enabled", 0));
        return;
    }
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_json(r, 200, gsp_engine_status(rc->d->e));
}

static void metrics_handler(struct http_req *r, void *arg)
{
    struct route_ctx *rc = arg;
    struct ut_buf b;

    if (!rc->admin(r, rc->admin_arg))
        return;
    ut_buf_init(&b, 4u << 20);
    if (rc->d)
        gsp_engine_metrics(rc->d->e, rc->d->metrics_prefix, &b);
    http_reply(r, 200, "text/plain; version=0.0.4", b.data ? b.data : "", b.len);
    ut_buf_free(&b);
}

static void seed_handler(struct http_req *r, void *arg)
{
    struct route_ctx *rc = arg;
    struct ut_err err = {{0}};
    const unsigned char *body;
    json_t *j = NULL;
    const char *url;
    char *doc = NULL;
    size_t len;
    int res;

    if (!rc->admin(r, rc->admin_arg))
        return;
    if (rc->d == NULL) {
        http_reply_error(r, 409, "gossip_disabled",
                         "this node runs in single-node mode (no [gossip] section)");
        return;
    }
    body = http_req_body(r, &len);
    if ((j = http_parse_json(body, len, &err)) == NULL) {
        http_reply_error(r, 400, "invalid_request", err.msg);
        return;
    }
    /* The body is the peer's kem-info document, optionally with "url". */
    url = json_string_value(json_object_get(j, "url"));
    doc = json_dumps(j, JSON_COMPACT);
    res = gsp_engine_seed(rc->d->e, doc, strlen(doc), url, &err);
    if (res < 0) {
        http_reply_error(r, res == -EPERM ? 403 : 400, "invalid_request", err.msg);
    } else {
        http_reply_json(r, 200,
                        json_pack("{s:s, s:b}", "node_id",
                                  json_string_value(json_object_get(j, "node_id")), "pinned", 1));
        gsp_driver_wake(rc->d);
    }
    free(doc);
    json_decref(j);
}

/* POST /api/gossip/introduce: no admin check, the body is its own proof
 * (a self-signed cluster_nodes entry carrying a certification). */
static void introduce_handler(struct http_req *r, void *arg)
{
    struct route_ctx *rc = arg;
    struct ut_err err = {{0}};
    const unsigned char *body;
    size_t len;
    int res;

    if (rc->d == NULL) {
        http_reply_error(r, 404, "not_found", "gossip is not enabled on this node");
        return;
    }
    body = http_req_body(r, &len);
    if (len > GSP_MEMBER_MAX) {
        http_reply_error(r, 413, "too_large", "an introduction is one cluster_nodes entry");
        return;
    }
    res = gsp_engine_introduce(rc->d->e, (const char *)body, len, &err);
    switch (res) {
    case 0:
        http_reply_json(r, 200, json_pack("{s:b}", "pinned", 1));
        gsp_driver_wake(rc->d);
        break;
    case -ENOTSUP:
        http_reply_error(r, 404, "not_found", err.msg);
        break;
    case -EINVAL:
        http_reply_error(r, 400, "invalid_request", err.msg);
        break;
    case -EPERM:
        http_reply_error(r, 403, "forbidden", err.msg);
        break;
    case -EEXIST:
        http_reply_error(r, 409, "conflict", err.msg);
        break;
    default:
        http_reply_error(r, 500, "server_error", err.msg[0] ? err.msg : "introduction failed");
        break;
    }
}

int gsp_driver_routes(struct gsp_driver *d, struct http_server *s, gsp_admin_check_fn admin,
                      void *admin_arg, struct ut_err *err)
{
    /* Lives as long as the server's routes: freed with the process. The
     * route table has no destructor hook, and there is one per listener. */
    static struct route_ctx ctxs[4];
    static int used;
    struct route_ctx *rc;
    int r;

    if (used >= 4) {
        ut_err_set(err, "too many gossip route sets");
        return -E2BIG;
    }
    rc = &ctxs[used++];
    *rc = (struct route_ctx){.d = d, .admin = admin, .admin_arg = admin_arg};
    if ((r = http_route(s, HTTP_POST, "/api/gossip/sync", sync_handler, rc, err)) < 0 ||
        (r = http_route(s, HTTP_GET, "/api/gossip/status", status_handler, rc, err)) < 0 ||
        (r = http_route(s, HTTP_GET, "/metrics", metrics_handler, rc, err)) < 0 ||
        (r = http_route(s, HTTP_POST, "/api/admin/nodes/seed", seed_handler, rc, err)) < 0 ||
        (r = http_route(s, HTTP_POST, "/api/gossip/introduce", introduce_handler, rc, err)) < 0)
        return r;
    return 0;
}
