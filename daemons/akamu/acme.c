/*
 * acme.c - RFC 8555 plumbing: problem documents (RFC 7807), replies with
 * Replay-Nonce and the index Link, URLs and ids, and the resources that
 * need no account: directory (§7.1.1), newNonce (§7.2), terms of service.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "acme.h"
#include "nonce.h"
#include "util/b64.h"
#include "util/log.h"

#define MOD "acme"

static const char terms_text[] =
    "akamu ACME service - terms of service\n\n"
    "Certificates are issued automatically to whoever proves control of the\n"
    "requested identifiers (RFC 8555). The operator of this service may revoke\n"
    "any certificate at any time. There is no warranty of any kind.\n";

int64_t akm_now(void)
{
    return (int64_t)time(NULL);
}

void akm_time_text(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void akm_url(const struct akamu *k, char *out, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(out, AKM_URL_MAX, "%s", k->base);

    if (n < 0 || n >= AKM_URL_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(out + n, AKM_URL_MAX - (size_t)n, fmt, ap);
    va_end(ap);
}

static int id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int akm_url_id(const struct akamu *k, const char *url, const char *prefix, char *out, size_t outsz)
{
    size_t bl = strlen(k->base), pl = strlen(prefix), n;
    const char *id;

    if (url == NULL || strncmp(url, k->base, bl) != 0 || strncmp(url + bl, prefix, pl) != 0)
        return -EINVAL;
    id = url + bl + pl;
    n = strlen(id);
    if (n == 0 || n >= outsz)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!id_char(id[i]))
            return -EINVAL;
    }
    memcpy(out, id, n + 1);
    return 0;
}

void akm_new_id(const struct akamu *k, char out[AKM_ID_LEN + 1])
{
    unsigned char rnd[12];
    char enc[17];

    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        abort(); /* no randomness: nothing safe to do */
    ut_b64_encode(rnd, sizeof(rnd), enc, 1);
    snprintf(out, AKM_ID_LEN + 1, "%.8s%.16s", k->tag, enc);
}

void akm_reply_headers(struct akamu *k, struct http_req *r)
{
    char nonce[AKM_NONCE_LEN + 1], link[AKM_URL_MAX + 32], dir[AKM_URL_MAX];

    akm_nonce_issue(k->nonces, nonce);
    http_add_header(r, "Replay-Nonce", nonce);
    akm_url(k, dir, "/acme/directory");
    snprintf(link, sizeof(link), "<%s>;rel=\"index\"", dir);
    http_add_header(r, "Link", link);
    http_add_header(r, "Cache-Control", "no-store");
}

static void reply_doc(struct http_req *r, int status, const char *ctype, json_t *doc)
{
    char *txt = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;

    json_decref(doc);
    if (txt == NULL) {
        http_reply(r, 500, "application/problem+json",
                   "{\"type\":\"" AKM_PROBLEM_NS "serverInternal\",\"status\":500}", 59);
        return;
    }
    http_reply(r, status, ctype, txt, strlen(txt));
    free(txt);
}

json_t *akm_problem_new(const char *type, int status, const char *fmt, ...)
{
    char detail[512], full[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), AKM_PROBLEM_NS "%s", type);
    return json_pack("{s:s, s:s, s:i}", "type", full, "detail", detail, "status", status);
}

void akm_problem_doc(struct akamu *k, struct http_req *r, int status, json_t *doc)
{
    akm_reply_headers(k, r);
    ut_log(UT_LOG_DEBUG, MOD, "problem", UT_LF_S("path", http_req_path(r)),
           UT_LF_S("type", json_string_value(json_object_get(doc, "type"))),
           UT_LF_S("detail", json_string_value(json_object_get(doc, "detail"))));
    reply_doc(r, status, "application/problem+json", doc);
}

void akm_problem(struct akamu *k, struct http_req *r, int status, const char *type, const char *fmt,
                 ...)
{
    char detail[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    akm_problem_doc(k, r, status, akm_problem_new(type, status, "%s", detail));
}

void akm_reply(struct akamu *k, struct http_req *r, int status, json_t *doc, const char *location)
{
    akm_reply_headers(k, r);
    if (location)
        http_add_header(r, "Location", location);
    reply_doc(r, status, "application/json", doc);
}

/* ---- directory, nonces, terms ---- */

static void directory(struct http_req *r, void *arg)
{
    struct akamu *k = arg;
    char u[8][AKM_URL_MAX];
    json_t *meta, *doc;

    akm_url(k, u[0], "/acme/new-nonce");
    akm_url(k, u[1], "/acme/new-account");
    akm_url(k, u[2], "/acme/new-order");
    akm_url(k, u[3], "/acme/revoke-cert");
    akm_url(k, u[4], "/acme/key-change");
    akm_url(k, u[5], "/acme/terms");
    akm_url(k, u[6], "/acme/crl");
    meta = json_pack("{s:s, s:b, s:s}", "termsOfService", u[5], "externalAccountRequired",
                     k->cfg->server.external_account_required, "crl", u[6]);
    doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "newNonce", u[0], "newAccount", u[1],
                    "newOrder", u[2], "revokeCert", u[3], "keyChange", u[4], "meta", meta);
    http_add_header(r, "Cache-Control", "public, max-age=0, no-cache");
    reply_doc(r, 200, "application/json", doc);
}

/* §7.2: HEAD answers 200, GET 204, both with a fresh nonce. */
static void new_nonce(struct http_req *r, void *arg)
{
    struct akamu *k = arg;

    akm_reply_headers(k, r);
    http_reply(r, http_req_method(r) == HTTP_HEAD ? 200 : 204, NULL, NULL, 0);
}

static void terms(struct http_req *r, void *arg)
{
    (void)arg;
    http_reply(r, 200, "text/plain; charset=utf-8", terms_text, sizeof(terms_text) - 1);
}

int akm_acme_routes(struct akamu *k, struct http_server *s, struct ut_err *err)
{
    int rc;

    if ((rc = http_route(s, HTTP_GET | HTTP_HEAD, "/acme/directory", directory, k, err)) < 0 ||
        (rc = http_route(s, HTTP_GET | HTTP_HEAD, "/acme/new-nonce", new_nonce, k, err)) < 0 ||
        (rc = http_route(s, HTTP_GET | HTTP_HEAD, "/acme/terms", terms, k, err)) < 0)
        return rc;
    return 0;
}
