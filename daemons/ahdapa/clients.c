/*
 * clients.c - the admin API for OAuth clients (admin session + CSRF):
 *   POST/GET /api/admin/clients, GET/PUT/DELETE /api/admin/clients/{client_id}
 *
 * Stored in the replicated `clients` table as JSON:
 *   {"client_id","client_name","client_type","redirect_uris","grant_types",
 *    "token_endpoint_auth_method","scope","access_token_ttl","claims",
 *    "client_secret_hash" (confidential only: hex SHA-256 of the secret),
 *    "created_at","updated_at"}
 * The secret (256 random bits, base64url) is generated here, returned once
 * by POST as "client_secret", and never stored in clear.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "ahdapa.h"
#include "util/b64.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/mem.h"

#define MOD         "oauth"
#define URIS_MAX    32
#define URI_MAX     2048
#define NAME_MAX_TX 200

void ahdapa_reply_bad(struct http_req *r, const char *fmt, ...)
{
    char msg[UT_ERR_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    http_reply_error(r, 400, "invalid_request", msg);
}

int ahdapa_scope_token_ok(const char *s, size_t n)
{
    if (n == 0 || n > AHDAPA_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        /* NQCHAR = %x21 / %x23-5B / %x5D-7E */
        if (c < 0x21 || c > 0x7e || c == 0x22 || c == 0x5c)
            return 0;
    }
    return 1;
}

json_t *ahdapa_client_get(struct ahdapa *a, const char *client_id)
{
    sqlite3 *db = store_reader(a->store, NULL);
    uint8_t *v = NULL;
    size_t n = 0;
    json_t *j;

    if (db == NULL || client_id == NULL || *client_id == '\0' ||
        strlen(client_id) > AHDAPA_NAME_MAX ||
        crdt_get(a->replica, db, "clients", client_id, &v, &n, NULL) < 0)
        return NULL;
    j = json_loadb((const char *)v, n, 0, NULL);
    free(v);
    if (!json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static int id_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > AHDAPA_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("-._~", s[i]))
            return 0;
    return 1;
}

static int uri_ok(const char *u)
{
    size_t n = strlen(u), i = 0;

    if (n == 0 || n > URI_MAX || !isalpha((unsigned char)u[0]))
        return 0;
    while (i < n && (isalnum((unsigned char)u[i]) || strchr("+-.", u[i])))
        i++;
    if (i >= n || u[i] != ':' || i + 1 >= n)
        return 0;
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)u[k] <= 0x20 || u[k] == 0x7f || u[k] == '#')
            return 0;
    if ((i == 4 && strncasecmp(u, "http", 4) == 0) || (i == 5 && strncasecmp(u, "https", 5) == 0))
        return strncmp(u + i, "://", 3) == 0 && u[i + 3] != '\0' && u[i + 3] != '/';
    return 1;
}

static const char *const grant_values[] = {"client_credentials", "authorization_code",
                                           "refresh_token"};
static const char *const auth_values[] = {"none", "client_secret_post", "client_secret_basic"};
static const char *const reserved_claims[] = {
    "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "auth_time", "acr"};

static int in_set(const char *s, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s, v[i]) == 0)
            return 1;
    return 0;
}

#define N(x) (sizeof(x) / sizeof((x)[0]))

/* Validates body for create (old NULL) or replace (old = stored doc) and
 * returns the new stored document (without secret/timestamps), or NULL
 * after replying 400. */
static json_t *validate(struct http_req *r, json_t *body, const char *path_id, const json_t *old)
{
    static const char *const known[] = {
        "client_id",     "client_name",      "client_type",
        "redirect_uris", "grant_types",      "token_endpoint_auth_method",
        "scope",         "access_token_ttl", "claims"};
    const char *key, *id, *name, *type, *method, *scope;
    json_t *v, *uris, *grants, *claims, *doc;
    json_int_t ttl = AHDAPA_TTL_DEF;
    size_t i;

    json_object_foreach(body, key, v)
    {
        if (!in_set(key, known, N(known))) {
            if (strcmp(key, "client_secret") == 0 || strcmp(key, "client_secret_hash") == 0)
                ahdapa_reply_bad(r, "field \"%s\" is not accepted: the server generates secrets",
                                 key);
            else
                ahdapa_reply_bad(r, "unknown field \"%s\"", key);
            return NULL;
        }
    }
    v = json_object_get(body, "client_id");
    if (v && (!json_is_string(v) || !id_ok(json_string_value(v)))) {
        ahdapa_reply_bad(r, "field \"client_id\" must be 1..%d characters of A-Z a-z 0-9 - . _ ~",
                         AHDAPA_NAME_MAX);
        return NULL;
    }
    id = v ? json_string_value(v) : path_id;
    if (path_id && v && strcmp(path_id, id) != 0) {
        ahdapa_reply_bad(r, "field \"client_id\" does not match the URL");
        return NULL;
    }
    v = json_object_get(body, "client_name");
    name = json_string_value(v);
    if (name == NULL || *name == '\0' || strlen(name) > NAME_MAX_TX) {
        ahdapa_reply_bad(r, "field \"client_name\" is required: a string of 1..%d bytes",
                         NAME_MAX_TX);
        return NULL;
    }
    v = json_object_get(body, "client_type");
    if (v && (!json_is_string(v) || (strcmp(json_string_value(v), "public") != 0 &&
                                     strcmp(json_string_value(v), "confidential") != 0))) {
        ahdapa_reply_bad(r, "field \"client_type\" must be \"public\" or \"confidential\"");
        return NULL;
    }
    type = v ? json_string_value(v) : "confidential";
    if (old && strcmp(type, json_string_value(json_object_get(old, "client_type"))) != 0) {
        ahdapa_reply_bad(r, "field \"client_type\" cannot change (create a new client)");
        return NULL;
    }
    v = json_object_get(body, "token_endpoint_auth_method");
    if (v && (!json_is_string(v) || !in_set(json_string_value(v), auth_values, N(auth_values)))) {
        ahdapa_reply_bad(r, "field \"token_endpoint_auth_method\" must be \"none\", "
                            "\"client_secret_post\" or \"client_secret_basic\"");
        return NULL;
    }
    method =
        v ? json_string_value(v) : (strcmp(type, "public") == 0 ? "none" : "client_secret_basic");
    if ((strcmp(type, "public") == 0) != (strcmp(method, "none") == 0)) {
        ahdapa_reply_bad(r, "field \"token_endpoint_auth_method\": \"none\" is for public "
                            "clients only, and public clients must use \"none\"");
        return NULL;
    }
    uris = json_object_get(body, "redirect_uris");
    if (uris && (!json_is_array(uris) || json_array_size(uris) > URIS_MAX)) {
        ahdapa_reply_bad(r, "field \"redirect_uris\" must be an array of at most %d URIs",
                         URIS_MAX);
        return NULL;
    }
    json_array_foreach(uris, i, v)
    {
        if (!json_is_string(v) || !uri_ok(json_string_value(v))) {
            ahdapa_reply_bad(r,
                             "field \"redirect_uris\"[%zu] must be an absolute URI without "
                             "fragment (http/https with a host)",
                             i);
            return NULL;
        }
    }
    grants = json_object_get(body, "grant_types");
    if (grants && (!json_is_array(grants) || json_array_size(grants) == 0)) {
        ahdapa_reply_bad(r, "field \"grant_types\" must be a non-empty array");
        return NULL;
    }
    json_array_foreach(grants, i, v)
    {
        if (!json_is_string(v) || !in_set(json_string_value(v), grant_values, N(grant_values))) {
            ahdapa_reply_bad(r,
                             "field \"grant_types\"[%zu] must be \"client_credentials\", "
                             "\"authorization_code\" or \"refresh_token\"",
                             i);
            return NULL;
        }
        for (size_t k = 0; k < i; k++)
            if (json_equal(v, json_array_get(grants, k))) {
                ahdapa_reply_bad(r, "field \"grant_types\"[%zu] is a duplicate", i);
                return NULL;
            }
        if (strcmp(json_string_value(v), "client_credentials") == 0 &&
            strcmp(type, "public") == 0) {
            ahdapa_reply_bad(r, "field \"grant_types\": client_credentials needs a confidential "
                                "client");
            return NULL;
        }
        if (strcmp(json_string_value(v), "authorization_code") == 0 && json_array_size(uris) == 0) {
            ahdapa_reply_bad(r, "field \"redirect_uris\" is required for authorization_code");
            return NULL;
        }
    }
    v = json_object_get(body, "scope");
    scope = v ? json_string_value(v) : "";
    if (scope == NULL || strlen(scope) > 4096) {
        ahdapa_reply_bad(r, "field \"scope\" must be a string of space-separated scope names");
        return NULL;
    }
    for (const char *p = scope; *p;) {
        size_t n = strcspn(p, " ");

        if (!ahdapa_scope_token_ok(p, n)) {
            ahdapa_reply_bad(r,
                             "field \"scope\" must be scope names (printable ASCII without "
                             "'\"' or '\\\\', 1..%d bytes) separated by single spaces",
                             AHDAPA_NAME_MAX);
            return NULL;
        }
        p += n;
        if (*p == ' ' && *++p == '\0') {
            ahdapa_reply_bad(r, "field \"scope\" has a trailing space");
            return NULL;
        }
    }
    v = json_object_get(body, "access_token_ttl");
    if (v) {
        ttl = json_is_integer(v) ? json_integer_value(v) : -1;
        if (ttl < 1 || ttl > AHDAPA_TTL_MAX) {
            ahdapa_reply_bad(r, "field \"access_token_ttl\" must be an integer in 1..%d seconds",
                             AHDAPA_TTL_MAX);
            return NULL;
        }
    }
    claims = json_object_get(body, "claims");
    if (claims && !json_is_object(claims)) {
        ahdapa_reply_bad(r, "field \"claims\" must be an object of claim name -> value");
        return NULL;
    }
    json_object_foreach(claims, key, v)
    {
        if (!ahdapa_scope_token_ok(key, strlen(key)) ||
            in_set(key, reserved_claims, N(reserved_claims)) || json_is_null(v)) {
            ahdapa_reply_bad(r, "field \"claims\": \"%s\" is reserved, invalid or null", key);
            return NULL;
        }
    }
    if (grants == NULL)
        grants = json_pack("[s]", strcmp(type, "public") == 0 ? "authorization_code"
                                                              : "client_credentials");
    else
        json_incref(grants);
    if (strcmp(type, "public") == 0 && json_array_size(uris) == 0 &&
        json_object_get(body, "grant_types") == NULL) {
        /* the default grant of a public client is authorization_code */
        json_decref(grants);
        ahdapa_reply_bad(r, "field \"redirect_uris\" is required for a public client");
        return NULL;
    }
    doc =
        json_pack("{s:s?,s:s,s:s,s:o,s:o,s:s,s:s,s:I,s:o}", "client_id", id, "client_name", name,
                  "client_type", type, "redirect_uris", uris ? json_incref(uris) : json_array(),
                  "grant_types", grants, "token_endpoint_auth_method", method, "scope", scope,
                  "access_token_ttl", ttl, "claims", claims ? json_incref(claims) : json_object());
    if (doc && json_is_null(json_object_get(doc, "client_id")))
        json_object_del(doc, "client_id");
    return doc;
}

static json_t *public_view(json_t *doc)
{
    json_t *c = json_deep_copy(doc);

    json_object_del(c, "client_secret_hash");
    return c;
}

struct cjob {
    struct ahdapa *a;
    const char *id;
    json_t *doc; /* create/replace: in/out */
    int mode;    /* 0 create, 1 replace, 2 delete */
};

static int client_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct cjob *j = arg;
    uint8_t *v = NULL;
    size_t n = 0;
    json_t *old = NULL;
    char *txt;
    int rc;

    rc = crdt_get(j->a->replica, db, "clients", j->id, &v, &n, NULL);
    if (rc == 0) {
        old = json_loadb((const char *)v, n, 0, NULL);
        free(v);
    }
    if (j->mode == 0 && rc == 0) {
        json_decref(old);
        ut_err_set(err, "client \"%s\" already exists", j->id);
        return -EEXIST;
    }
    if (j->mode != 0 && rc < 0) {
        ut_err_set(err, "no client \"%s\"", j->id);
        return -ENOENT;
    }
    if (j->mode == 2) {
        json_decref(old);
        return crdt_delete(j->a->replica, db, "clients", j->id, err);
    }
    if (j->mode == 1) {
        json_t *h = json_object_get(old, "client_secret_hash");
        json_t *c = json_object_get(old, "created_at");

        if (!json_equal(json_object_get(old, "client_type"),
                        json_object_get(j->doc, "client_type"))) {
            json_decref(old);
            ut_err_set(err, "field \"client_type\" cannot change (create a new client)");
            return -EINVAL;
        }
        if (h)
            json_object_set(j->doc, "client_secret_hash", h);
        if (c)
            json_object_set(j->doc, "created_at", c);
    }
    json_decref(old);
    txt = json_dumps(j->doc, JSON_COMPACT);
    if (txt == NULL) {
        ut_err_set(err, "out of memory");
        return -ENOMEM;
    }
    rc = crdt_put(j->a->replica, db, "clients", j->id, txt, strlen(txt), 0, err);
    free(txt);
    return rc;
}

static json_t *body_json(struct http_req *r)
{
    struct ut_err e = {{0}};
    size_t n = 0;
    const unsigned char *b = http_req_body(r, &n);
    json_t *j = http_parse_json(b, n, &e);

    if (j == NULL)
        ahdapa_reply_bad(r, "request body: %s", e.msg);
    return j;
}

static void reply_job_error(struct http_req *r, int rc, const struct ut_err *e)
{
    if (rc == -EEXIST)
        http_reply_error(r, 409, "conflict", e->msg);
    else if (rc == -ENOENT)
        http_reply_error(r, 404, "not_found", e->msg);
    else if (rc == -EINVAL)
        http_reply_error(r, 400, "invalid_request", e->msg);
    else
        http_reply_error(r, 500, "server_error", "cannot write the client");
}

static void clients_create(struct http_req *r, struct ahdapa *a)
{
    struct ut_err e = {{0}};
    json_t *body = body_json(r), *doc, *out;
    char uuid[37], secret[48] = "";
    unsigned char rnd[32], h[32];
    char hex[65];
    int rc;

    if (body == NULL)
        return;
    doc = validate(r, body, NULL, NULL);
    json_decref(body);
    if (doc == NULL)
        return;
    if (json_object_get(doc, "client_id") == NULL) {
        if (RAND_bytes(rnd, 16) != 1)
            goto fail;
        rnd[6] = (unsigned char)((rnd[6] & 0x0f) | 0x40);
        rnd[8] = (unsigned char)((rnd[8] & 0x3f) | 0x80);
        snprintf(uuid, sizeof(uuid),
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", rnd[0],
                 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10],
                 rnd[11], rnd[12], rnd[13], rnd[14], rnd[15]);
        json_object_set_new(doc, "client_id", json_string(uuid));
    }
    if (strcmp(json_string_value(json_object_get(doc, "client_type")), "confidential") == 0) {
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            goto fail;
        ut_b64_encode(rnd, sizeof(rnd), secret, 1);
        ut_memzero(rnd, sizeof(rnd));
        if (ahdapa_sha256(secret, strlen(secret), h) < 0)
            goto fail;
        ut_hex_encode(h, sizeof(h), hex);
        json_object_set_new(doc, "client_secret_hash", json_string(hex));
    }
    json_object_set_new(doc, "created_at", json_integer((json_int_t)time(NULL)));
    json_object_set_new(doc, "updated_at", json_integer((json_int_t)time(NULL)));
    struct cjob j = {
        .a = a, .id = json_string_value(json_object_get(doc, "client_id")), .doc = doc};
    rc = store_write(a->store, client_job, &j, &e);
    if (rc < 0) {
        reply_job_error(r, rc, &e);
        json_decref(doc);
        ut_memzero(secret, sizeof(secret));
        return;
    }
    ut_log(UT_LOG_INFO, MOD, "client created", UT_LF_S("client_id", j.id));
    out = public_view(doc);
    json_decref(doc);
    if (secret[0])
        json_object_set_new(out, "client_secret", json_string(secret));
    ut_memzero(secret, sizeof(secret));
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_json(r, 201, out);
    return;
fail:
    json_decref(doc);
    http_reply_error(r, 500, "server_error", "random or hash failure");
}

static void clients_list(struct http_req *r, struct ahdapa *a)
{
    sqlite3 *db = store_reader(a->store, NULL);
    sqlite3_stmt *st =
        db ? store_stmt(a->store, db, "SELECT value FROM clients ORDER BY key", NULL) : NULL;
    json_t *arr = json_array();

    if (st == NULL) {
        json_decref(arr);
        http_reply_error(r, 500, "server_error", "cannot read clients");
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *doc = json_loadb((const char *)sqlite3_column_blob(st, 0),
                                 (size_t)sqlite3_column_bytes(st, 0), 0, NULL);
        if (json_is_object(doc))
            json_array_append_new(arr, public_view(doc));
        json_decref(doc);
    }
    sqlite3_reset(st);
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_json(r, 200, json_pack("{s:o}", "clients", arr));
}

static void clients_coll(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;

    if (!ahdapa_require_admin(a, r))
        return;
    if (http_req_method(r) == HTTP_POST)
        clients_create(r, a);
    else
        clients_list(r, a);
}

static void clients_item(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    const char *id = http_req_param(r, "client_id");
    struct ut_err e = {{0}};
    json_t *doc, *body;
    int rc;

    if (!ahdapa_require_admin(a, r))
        return;
    if (!id_ok(id)) {
        http_reply_error(r, 404, "not_found", "no such client");
        return;
    }
    if (http_req_method(r) == HTTP_GET) {
        doc = ahdapa_client_get(a, id);
        if (doc == NULL) {
            http_reply_error(r, 404, "not_found", "no such client");
            return;
        }
        http_add_header(r, "Cache-Control", "no-store");
        http_reply_json(r, 200, public_view(doc));
        json_decref(doc);
        return;
    }
    if (http_req_method(r) == HTTP_DELETE) {
        struct cjob j = {.a = a, .id = id, .mode = 2};

        rc = store_write(a->store, client_job, &j, &e);
        if (rc < 0) {
            reply_job_error(r, rc, &e);
            return;
        }
        ut_log(UT_LOG_INFO, MOD, "client deleted", UT_LF_S("client_id", id));
        http_reply(r, 204, NULL, NULL, 0);
        return;
    }
    /* PUT: replace the mutable fields; the secret and client_type stay. */
    json_t *old = ahdapa_client_get(a, id);
    if (old == NULL) {
        http_reply_error(r, 404, "not_found", "no such client");
        return;
    }
    body = body_json(r);
    doc = body ? validate(r, body, id, old) : NULL;
    json_decref(body);
    json_decref(old);
    if (doc == NULL)
        return;
    json_object_set_new(doc, "updated_at", json_integer((json_int_t)time(NULL)));
    struct cjob j = {.a = a, .id = id, .doc = doc, .mode = 1};
    rc = store_write(a->store, client_job, &j, &e);
    if (rc < 0) {
        reply_job_error(r, rc, &e);
        json_decref(doc);
        return;
    }
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_json(r, 200, public_view(doc));
    json_decref(doc);
}

int ahdapa_clients_routes(struct ahdapa *a, struct ut_err *err)
{
    if (http_route(a->http, HTTP_GET | HTTP_POST, "/api/admin/clients", clients_coll, a, err) < 0)
        return -EINVAL;
    return http_route(a->http, HTTP_GET | HTTP_PUT | HTTP_DELETE, "/api/admin/clients/{client_id}",
                      clients_item, a, err);
}
