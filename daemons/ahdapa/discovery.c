/*
 * discovery.c - GET /.well-known/oauth-authorization-server (RFC 8414) and
 * /.well-known/openid-configuration: exactly what this server implements
 * (client_credentials at /token, JWT access tokens, /jwks, /introspect,
 * /revoke; no authorization endpoint, no ID tokens yet).
 */
#include <stdio.h>

#include "ahdapa.h"

static json_t *strs(const char *const *v, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *url(const struct ahdapa *a, const char *path)
{
    char u[sizeof(a->issuer) + 32];

    snprintf(u, sizeof(u), "%s%s", a->issuer, path);
    return json_string(u);
}

static void metadata(struct http_req *r, void *arg)
{
    static const char *const grants[] = {"client_credentials"};
    static const char *const auth[] = {"client_secret_basic", "client_secret_post"};
    static const char *const algs[] = {"ES256"};
    struct ahdapa *a = arg;
    json_t *scopes = json_array(), *m;
    sqlite3 *db = store_reader(a->store, NULL);
    sqlite3_stmt *st =
        db ? store_stmt(a->store, db, "SELECT key FROM scopes ORDER BY key", NULL) : NULL;

    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(scopes, json_string((const char *)sqlite3_column_text(st, 0)));
    if (st)
        sqlite3_reset(st);
    m = json_object();
    json_object_set_new(m, "issuer", json_string(a->issuer));
    json_object_set_new(m, "token_endpoint", url(a, "/token"));
    json_object_set_new(m, "jwks_uri", url(a, "/jwks"));
    json_object_set_new(m, "introspection_endpoint", url(a, "/introspect"));
    json_object_set_new(m, "revocation_endpoint", url(a, "/revoke"));
    json_object_set_new(m, "scopes_supported", scopes);
    /* RFC 8414 requires the member; no authorization endpoint exists yet. */
    json_object_set_new(m, "response_types_supported", json_array());
    json_object_set_new(m, "grant_types_supported", strs(grants, 1));
    json_object_set_new(m, "token_endpoint_auth_methods_supported", strs(auth, 2));
    json_object_set_new(m, "introspection_endpoint_auth_methods_supported", strs(auth, 2));
    json_object_set_new(m, "revocation_endpoint_auth_methods_supported", strs(auth, 2));
    json_object_set_new(m, "access_token_signing_alg_values_supported", strs(algs, 1));
    http_add_header(r, "Cache-Control", "public, max-age=300");
    http_reply_json(r, 200, m);
}

int ahdapa_discovery_routes(struct ahdapa *a, struct ut_err *err)
{
    int rc =
        http_route(a->http, HTTP_GET, "/.well-known/oauth-authorization-server", metadata, a, err);

    return rc < 0 ? rc
                  : http_route(a->http, HTTP_GET, "/.well-known/openid-configuration", metadata, a,
                               err);
}
