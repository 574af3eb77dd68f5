/*
 * scopes.c - the admin API for scope definitions (admin session + CSRF):
 *   POST/GET /api/admin/scopes, GET/PUT/DELETE /api/admin/scopes/{name}
 * A definition maps a scope name to the claims it releases:
 *   {"name","description","claims":[claim names]}
 * stored in the replicated `scopes` table.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ahdapa.h"
#include "util/log.h"

#define MOD        "oauth"
#define CLAIMS_MAX 64
#define DESC_MAX   1024

static const char *const reserved[] = {"iss", "sub",       "aud",   "exp",       "nbf", "iat",
                                       "jti", "client_id", "scope", "auth_time", "acr"};

static json_t *validate(struct http_req *r, json_t *body, const char *path_name)
{
    const char *key, *name, *desc;
    json_t *v, *claims;
    size_t i;

    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "name") != 0 && strcmp(key, "description") != 0 &&
            strcmp(key, "claims") != 0) {
            ahdapa_reply_bad(r, "unknown field \"%s\"", key);
            return NULL;
        }
    }
    v = json_object_get(body, "name");
    if (v && (!json_is_string(v) ||
              !ahdapa_scope_token_ok(json_string_value(v), strlen(json_string_value(v))))) {
        ahdapa_reply_bad(r,
                         "field \"name\" must be a scope name (printable ASCII without space, "
                         "'\"' or '\\\\', 1..%d bytes)",
                         AHDAPA_NAME_MAX);
        return NULL;
    }
    if (v == NULL && path_name == NULL) {
        ahdapa_reply_bad(r, "field \"name\" is required");
        return NULL;
    }
    name = v ? json_string_value(v) : path_name;
    if (path_name && strcmp(name, path_name) != 0) {
        ahdapa_reply_bad(r, "field \"name\" does not match the URL");
        return NULL;
    }
    v = json_object_get(body, "description");
    desc = v ? json_string_value(v) : "";
    if (desc == NULL || strlen(desc) > DESC_MAX) {
        ahdapa_reply_bad(r, "field \"description\" must be a string of at most %d bytes", DESC_MAX);
        return NULL;
    }
    claims = json_object_get(body, "claims");
    if (claims && (!json_is_array(claims) || json_array_size(claims) > CLAIMS_MAX)) {
        ahdapa_reply_bad(r, "field \"claims\" must be an array of at most %d claim names",
                         CLAIMS_MAX);
        return NULL;
    }
    json_array_foreach(claims, i, v)
    {
        const char *c = json_string_value(v);
        int bad = c == NULL || !ahdapa_scope_token_ok(c, strlen(c));

        for (size_t k = 0; !bad && k < sizeof(reserved) / sizeof(reserved[0]); k++)
            bad = strcmp(c, reserved[k]) == 0;
        for (size_t k = 0; !bad && k < i; k++)
            bad = json_equal(v, json_array_get(claims, k));
        if (bad) {
            ahdapa_reply_bad(r,
                             "field \"claims\"[%zu] must be a claim name, not a duplicate nor a "
                             "registered JWT claim",
                             i);
            return NULL;
        }
    }
    return json_pack("{s:s,s:s,s:o}", "name", name, "description", desc, "claims",
                     claims ? json_incref(claims) : json_array());
}

struct sjob {
    struct ahdapa *a;
    const char *name;
    const char *txt; /* NULL: delete */
    int create;
};

static int scope_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct sjob *j = arg;
    uint8_t *v = NULL;
    size_t n = 0;
    int have = crdt_get(j->a->replica, db, "scopes", j->name, &v, &n, NULL) == 0;

    free(v);
    if (j->create && have) {
        ut_err_set(err, "scope \"%s\" already exists", j->name);
        return -EEXIST;
    }
    if (j->txt == NULL) {
        if (!have) {
            ut_err_set(err, "no scope \"%s\"", j->name);
            return -ENOENT;
        }
        return crdt_delete(j->a->replica, db, "scopes", j->name, err);
    }
    return crdt_put(j->a->replica, db, "scopes", j->name, j->txt, strlen(j->txt), 0, err);
}

static void reply_rc(struct http_req *r, int rc, const struct ut_err *e)
{
    if (rc == -EEXIST)
        http_reply_error(r, 409, "conflict", e->msg);
    else if (rc == -ENOENT)
        http_reply_error(r, 404, "not_found", e->msg);
    else
        http_reply_error(r, 500, "server_error", "cannot write the scope");
}

static void store_scope(struct http_req *r, struct ahdapa *a, const char *path_name)
{
    struct ut_err e = {{0}};
    size_t n = 0;
    const unsigned char *b = http_req_body(r, &n);
    json_t *body = http_parse_json(b, n, &e), *doc;
    char *txt;
    int rc;

    if (body == NULL) {
        ahdapa_reply_bad(r, "request body: %s", e.msg);
        return;
    }
    doc = validate(r, body, path_name);
    json_decref(body);
    if (doc == NULL)
        return;
    txt = json_dumps(doc, JSON_COMPACT);
    struct sjob j = {.a = a,
                     .name = json_string_value(json_object_get(doc, "name")),
                     .txt = txt,
                     .create = path_name == NULL};
    rc = txt ? store_write(a->store, scope_job, &j, &e) : -ENOMEM;
    free(txt);
    if (rc < 0) {
        reply_rc(r, rc, &e);
    } else {
        ut_log(UT_LOG_INFO, MOD, "scope stored", UT_LF_S("scope", j.name));
        http_reply_json(r, path_name ? 200 : 201, json_incref(doc));
    }
    json_decref(doc);
}

static void scopes_coll(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    sqlite3 *db;
    sqlite3_stmt *st;
    json_t *arr;

    if (!ahdapa_require_admin(a, r))
        return;
    if (http_req_method(r) == HTTP_POST) {
        store_scope(r, a, NULL);
        return;
    }
    db = store_reader(a->store, NULL);
    st = db ? store_stmt(a->store, db, "SELECT value FROM scopes ORDER BY key", NULL) : NULL;
    if (st == NULL) {
        http_reply_error(r, 500, "server_error", "cannot read scopes");
        return;
    }
    arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *doc = json_loadb((const char *)sqlite3_column_blob(st, 0),
                                 (size_t)sqlite3_column_bytes(st, 0), 0, NULL);
        if (doc)
            json_array_append_new(arr, doc);
    }
    sqlite3_reset(st);
    http_reply_json(r, 200, json_pack("{s:o}", "scopes", arr));
}

static void scopes_item(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    const char *name = http_req_param(r, "name");
    struct ut_err e = {{0}};
    uint8_t *v = NULL;
    size_t n = 0;
    sqlite3 *db;
    int rc;

    if (!ahdapa_require_admin(a, r))
        return;
    if (!ahdapa_scope_token_ok(name, strlen(name))) {
        http_reply_error(r, 404, "not_found", "no such scope");
        return;
    }
    switch (http_req_method(r)) {
    case HTTP_PUT:
        store_scope(r, a, name);
        return;
    case HTTP_DELETE: {
        struct sjob j = {.a = a, .name = name};

        rc = store_write(a->store, scope_job, &j, &e);
        if (rc < 0)
            reply_rc(r, rc, &e);
        else
            http_reply(r, 204, NULL, NULL, 0);
        return;
    }
    default:
        db = store_reader(a->store, NULL);
        if (db == NULL || crdt_get(a->replica, db, "scopes", name, &v, &n, NULL) < 0) {
            http_reply_error(r, 404, "not_found", "no such scope");
            return;
        }
        http_reply(r, 200, "application/json", v, n);
        free(v);
    }
}

int ahdapa_scopes_routes(struct ahdapa *a, struct ut_err *err)
{
    if (http_route(a->http, HTTP_GET | HTTP_POST, "/api/admin/scopes", scopes_coll, a, err) < 0)
        return -EINVAL;
    return http_route(a->http, HTTP_GET | HTTP_PUT | HTTP_DELETE, "/api/admin/scopes/{name}",
                      scopes_item, a, err);
}
