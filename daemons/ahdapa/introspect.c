/*
 * introspect.c - POST /introspect (RFC 7662) and POST /revoke (RFC 7009).
 * The caller authenticates as a confidential client. Any node accepts any
 * node's tokens: the key comes from the replicated signing_keys table (by
 * kid), the token's iss must be the issuer recorded with that key, exp
 * must be in the future and the jti must not be in revoked_tokens.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ahdapa.h"
#include "util/log.h"

#define MOD "oauth"

/* Verifies tok: 0 and *out (claims, caller decrefs) when it is a live
 * token of this cluster, else -1 (inactive for whatever reason). */
static int check_token(struct ahdapa *a, const char *tok, int check_revoked, json_t **out)
{
    struct ahdapa_jwt j;
    const char *kid, *typ, *iss, *key_iss, *jti;
    struct evp_pkey_st *key;
    json_int_t exp, now = (json_int_t)time(NULL);
    sqlite3 *db;
    uint8_t *v = NULL;
    size_t n = 0;

    if (ahdapa_jwt_parse(tok, strlen(tok), &j, NULL) < 0)
        return -1;
    kid = json_string_value(json_object_get(j.header, "kid"));
    typ = json_string_value(json_object_get(j.header, "typ"));
    iss = json_string_value(json_object_get(j.claims, "iss"));
    jti = json_string_value(json_object_get(j.claims, "jti"));
    exp = json_integer_value(json_object_get(j.claims, "exp"));
    if (kid == NULL || typ == NULL || strcasecmp(typ, "at+jwt") != 0 || iss == NULL ||
        jti == NULL || *jti == '\0' || strlen(jti) > CRDT_KEY_MAX ||
        !json_is_integer(json_object_get(j.claims, "exp")) || exp <= now ||
        ahdapa_verify_key(a, kid, &key, &key_iss) < 0 || strcmp(iss, key_iss) != 0 ||
        ahdapa_jwt_verify_es256(key, &j) < 0)
        goto inactive;
    if (check_revoked) {
        db = store_reader(a->store, NULL);
        if (db == NULL)
            goto inactive;
        if (crdt_get(a->replica, db, "revoked_tokens", jti, &v, &n, NULL) == 0) {
            free(v);
            goto inactive;
        }
    }
    *out = json_incref(j.claims);
    ahdapa_jwt_clear(&j);
    return 0;
inactive:
    ahdapa_jwt_clear(&j);
    return -1;
}

static void introspect(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    struct http_form *f = ahdapa_form(r);
    json_t *c = NULL, *claims = NULL, *res;
    const char *tok;
    static const char *const copy[] = {"scope", "client_id", "sub", "aud",
                                       "iss",   "exp",       "iat", "jti"};

    if (f == NULL)
        return;
    if ((c = ahdapa_client_auth(a, r, f, 0)) == NULL)
        goto out;
    tok = http_form_get(f, "token");
    if (tok == NULL || *tok == '\0') {
        http_reply_error(r, 400, "invalid_request", "token is required");
        goto out;
    }
    http_add_header(r, "Cache-Control", "no-store");
    if (check_token(a, tok, 1, &claims) < 0) {
        http_reply_json(r, 200, json_pack("{s:b}", "active", 0));
        goto out;
    }
    res = json_pack("{s:b,s:s}", "active", 1, "token_type", "Bearer");
    for (size_t i = 0; i < sizeof(copy) / sizeof(copy[0]); i++) {
        json_t *v = json_object_get(claims, copy[i]);

        if (v)
            json_object_set(res, copy[i], v);
    }
    http_reply_json(r, 200, res);
out:
    json_decref(claims);
    json_decref(c);
    http_form_free(f);
}

struct rjob {
    struct ahdapa *a;
    const char *jti;
    json_int_t exp;
};

static int revoke_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct rjob *j = arg;
    char val[64];

    snprintf(val, sizeof(val), "{\"exp\":%lld}", (long long)j->exp);
    /* kept until the token expires (plus a minute of clock slack) */
    return crdt_put(j->a->replica, db, "revoked_tokens", j->jti, val, strlen(val),
                    (int64_t)(j->exp + 60) * 1000, err);
}

static void revoke(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    struct http_form *f = ahdapa_form(r);
    struct ut_err e = {{0}};
    json_t *c = NULL, *claims = NULL;
    const char *tok, *hint, *owner, *me;

    if (f == NULL)
        return;
    if ((c = ahdapa_client_auth(a, r, f, 0)) == NULL)
        goto out;
    tok = http_form_get(f, "token");
    hint = http_form_get(f, "token_type_hint");
    if (tok == NULL || *tok == '\0') {
        http_reply_error(r, 400, "invalid_request", "token is required");
        goto out;
    }
    if (hint && strcmp(hint, "access_token") != 0 && strcmp(hint, "refresh_token") != 0) {
        http_reply_error(r, 400, "unsupported_token_type", "token_type_hint is not supported");
        goto out;
    }
    http_add_header(r, "Cache-Control", "no-store");
    /* RFC 7009 §2.2: invalid, expired or already revoked tokens: 200. */
    if (check_token(a, tok, 0, &claims) < 0) {
        http_reply(r, 200, "application/json", "{}", 2);
        goto out;
    }
    owner = json_string_value(json_object_get(claims, "client_id"));
    me = json_string_value(json_object_get(c, "client_id"));
    if (owner == NULL || me == NULL || strcmp(owner, me) != 0) {
        http_reply_error(r, 400, "unauthorized_client",
                         "the token was not issued to the authenticated client");
        goto out;
    }
    struct rjob j = {.a = a,
                     .jti = json_string_value(json_object_get(claims, "jti")),
                     .exp = json_integer_value(json_object_get(claims, "exp"))};
    if (store_write(a->store, revoke_job, &j, &e) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "revocation not stored", UT_LF_S("error", e.msg));
        http_reply_error(r, 503, "temporarily_unavailable", "cannot store the revocation");
        goto out;
    }
    ut_log(UT_LOG_INFO, MOD, "token revoked", UT_LF_S("client_id", me), UT_LF_S("jti", j.jti));
    http_reply(r, 200, "application/json", "{}", 2);
out:
    json_decref(claims);
    json_decref(c);
    http_form_free(f);
}

int ahdapa_introspect_routes(struct ahdapa *a, struct ut_err *err)
{
    if (http_route(a->http, HTTP_POST, "/introspect", introspect, a, err) < 0)
        return -EINVAL;
    return http_route(a->http, HTTP_POST, "/revoke", revoke, a, err);
}
