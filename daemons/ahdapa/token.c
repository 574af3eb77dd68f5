/*
 * token.c - POST /token (RFC 6749): client_credentials with
 * client_secret_basic or client_secret_post; RFC 9068 JWT access tokens
 * signed ES256 with this node's key. Also the client authentication used
 * by /introspect and /revoke.
 *
 * Hot path: no database write, no lock shared between workers. The client
 * and scope rows come from this thread's reader (cached statements), the
 * secret check is SHA-256 + constant-time compare, the digest and signing
 * contexts are per thread (jwt.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/rand.h>

#include "ahdapa.h"
#include "util/b64.h"
#include "util/hex.h"
#include "util/mem.h"

#define SECRET_MAX 512

struct http_form *ahdapa_form(struct http_req *r)
{
    const char *ct = http_req_header(r, "Content-Type");
    struct ut_err e = {{0}};
    struct http_form *f = NULL;
    const unsigned char *b;
    size_t n = 0;

    if (ct == NULL || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0 ||
        (ct[33] != '\0' && ct[33] != ';' && ct[33] != ' ')) {
        http_add_header(r, "Cache-Control", "no-store");
        http_reply_error(r, 400, "invalid_request",
                         "Content-Type must be application/x-www-form-urlencoded");
        return NULL;
    }
    b = http_req_body(r, &n);
    if (http_form_parse(b, n, &f, &e) < 0) {
        http_add_header(r, "Cache-Control", "no-store");
        http_reply_error(r, 400, "invalid_request", e.msg);
        return NULL;
    }
    return f;
}

static void reply_invalid_client(struct http_req *r, struct ahdapa *a, int challenge,
                                 const char *desc)
{
    char h[600];

    if (challenge) {
        snprintf(h, sizeof(h), "Basic realm=\"%s\"",
                 a->cfg->server.realm ? a->cfg->server.realm : "ahdapa");
        http_add_header(r, "WWW-Authenticate", h);
    }
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_error(r, 401, "invalid_client", desc);
}

static void reply_400(struct http_req *r, const char *code, const char *desc)
{
    http_add_header(r, "Cache-Control", "no-store");
    http_add_header(r, "Pragma", "no-cache");
    http_reply_error(r, 400, code, desc);
}

/* RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64. */
static int form_decode(const char *s, size_t n, char *out, size_t outlen)
{
    struct http_form *f = NULL;
    char buf[SECRET_MAX * 3 + 4];
    const char *v;
    int rc = -EINVAL;

    if (n + 3 > sizeof(buf))
        return -EINVAL;
    buf[0] = 'v';
    buf[1] = '=';
    memcpy(buf + 2, s, n);
    if (http_form_parse(buf, n + 2, &f, NULL) == 0 && (v = http_form_get(f, "v")) != NULL &&
        strlen(v) < outlen) {
        memcpy(out, v, strlen(v) + 1);
        rc = 0;
    }
    http_form_free(f);
    ut_memzero(buf, sizeof(buf));
    return rc;
}

json_t *ahdapa_client_auth(struct ahdapa *a, struct http_req *r, const struct http_form *f,
                           int allow_public)
{
    const char *hdr = http_req_header(r, "Authorization");
    const char *fid = http_form_get(f, "client_id"), *fsec = http_form_get(f, "client_secret");
    char id[AHDAPA_NAME_MAX * 3 + 1], secret[SECRET_MAX + 1];
    unsigned char dec[SECRET_MAX * 3 + AHDAPA_NAME_MAX * 3 + 8], want[32], got[32];
    const char *method, *stored, *hash;
    size_t n = 0;
    json_t *c;
    int basic = 0;

    secret[0] = '\0';
    if (hdr) {
        const char *p = hdr + 6, *colon;
        size_t plen;

        if (strncasecmp(hdr, "Basic ", 6) != 0) {
            reply_invalid_client(r, a, 1, "only HTTP Basic client authentication is supported");
            return NULL;
        }
        while (*p == ' ')
            p++;
        plen = strlen(p);
        if (plen > (sizeof(dec) - 4) / 3 * 4 || ut_b64_decode(p, plen, dec, &n, 0) < 0 ||
            (colon = memchr(dec, ':', n)) == NULL || memchr(dec, '\0', n) ||
            form_decode((const char *)dec, (size_t)(colon - (const char *)dec), id, sizeof(id)) <
                0 ||
            form_decode(colon + 1, n - (size_t)(colon + 1 - (const char *)dec), secret,
                        sizeof(secret)) < 0) {
            ut_memzero(dec, sizeof(dec));
            reply_invalid_client(r, a, 1, "malformed Basic credentials");
            return NULL;
        }
        ut_memzero(dec, sizeof(dec));
        if (fsec) {
            ut_memzero(secret, sizeof(secret));
            reply_400(r, "invalid_request", "more than one client authentication method");
            return NULL;
        }
        if (fid && strcmp(fid, id) != 0) {
            ut_memzero(secret, sizeof(secret));
            reply_400(r, "invalid_request", "client_id does not match the Basic credentials");
            return NULL;
        }
        method = "client_secret_basic";
        basic = 1;
    } else if (fsec) {
        if (fid == NULL) {
            reply_400(r, "invalid_request", "client_secret without client_id");
            return NULL;
        }
        if (strlen(fid) >= sizeof(id) || strlen(fsec) > SECRET_MAX) {
            reply_invalid_client(r, a, 0, "client authentication failed");
            return NULL;
        }
        snprintf(id, sizeof(id), "%s", fid);
        snprintf(secret, sizeof(secret), "%s", fsec);
        method = "client_secret_post";
    } else if (fid) {
        if (strlen(fid) >= sizeof(id)) {
            reply_invalid_client(r, a, 0, "client authentication failed");
            return NULL;
        }
        snprintf(id, sizeof(id), "%s", fid);
        method = "none";
    } else {
        reply_invalid_client(r, a, 1, "client authentication required");
        return NULL;
    }
    c = ahdapa_client_get(a, id);
    stored = json_string_value(json_object_get(c, "token_endpoint_auth_method"));
    hash = json_string_value(json_object_get(c, "client_secret_hash"));
    if (c == NULL || stored == NULL || strcmp(stored, method) != 0 ||
        (strcmp(method, "none") == 0 && !allow_public)) {
        json_decref(c);
        ut_memzero(secret, sizeof(secret));
        reply_invalid_client(r, a, basic, "client authentication failed");
        return NULL;
    }
    if (strcmp(method, "none") != 0) {
        int ok = hash && ut_hex_decode(hash, strlen(hash), want, sizeof(want)) == 0 &&
                 ahdapa_sha256(secret, strlen(secret), got) == 0 &&
                 ut_ct_eq(want, got, sizeof(got));

        ut_memzero(secret, sizeof(secret));
        if (!ok) {
            json_decref(c);
            reply_invalid_client(r, a, basic, "client authentication failed");
            return NULL;
        }
    }
    return c;
}

static int has_word(const char *list, const char *w, size_t n)
{
    for (const char *p = list; p && *p;) {
        size_t k = strcspn(p, " ");

        if (k == n && memcmp(p, w, n) == 0)
            return 1;
        p += k;
        while (*p == ' ')
            p++;
    }
    return 0;
}

static int grant_allowed(const json_t *c, const char *g)
{
    size_t i;
    json_t *v;

    json_array_foreach(json_object_get(c, "grant_types"), i,
                       v) if (json_string_value(v) &&
                              strcmp(json_string_value(v), g) == 0) return 1;
    return 0;
}

/* Adds the claims the definitions of the granted scopes release and the
 * client has values for. */
static void release_claims(struct ahdapa *a, const json_t *client, const char *scope, json_t *out)
{
    json_t *vals = json_object_get(client, "claims");
    sqlite3 *db;
    char name[AHDAPA_NAME_MAX + 1];

    if (json_object_size(vals) == 0 || (db = store_reader(a->store, NULL)) == NULL)
        return;
    for (const char *p = scope; *p;) {
        size_t k = strcspn(p, " ");
        uint8_t *v = NULL;
        size_t n = 0;

        if (k <= AHDAPA_NAME_MAX) {
            memcpy(name, p, k);
            name[k] = '\0';
            if (crdt_get(a->replica, db, "scopes", name, &v, &n, NULL) == 0) {
                json_t *def = json_loadb((const char *)v, n, 0, NULL), *cl;
                size_t i;

                json_array_foreach(json_object_get(def, "claims"), i, cl)
                {
                    const char *cn = json_string_value(cl);
                    json_t *val = cn ? json_object_get(vals, cn) : NULL;

                    if (val && json_object_get(out, cn) == NULL)
                        json_object_set(out, cn, val);
                }
                json_decref(def);
                free(v);
            }
        }
        p += k;
        while (*p == ' ')
            p++;
    }
}

/* The granted scope: the request's (each must be registered for the
 * client) or, when absent, the client's registered scope. NULL after
 * replying invalid_scope. */
static char *grant_scope(struct http_req *r, const json_t *c, const char *req)
{
    const char *allowed = json_string_value(json_object_get(c, "scope"));
    size_t len;
    char *out;

    if (allowed == NULL)
        allowed = "";
    if (req == NULL)
        return ut_xstrdup(allowed);
    len = strlen(req);
    out = malloc(len + 1);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (const char *p = req; *p;) {
        size_t k = strcspn(p, " ");

        if (k == 0 || !ahdapa_scope_token_ok(p, k)) {
            free(out);
            reply_400(r, "invalid_scope", "scope must be space-separated scope tokens");
            return NULL;
        }
        if (!has_word(allowed, p, k)) {
            free(out);
            reply_400(r, "invalid_scope", "a requested scope is not registered for this client");
            return NULL;
        }
        if (!has_word(out, p, k)) {
            size_t o = strlen(out);

            if (o)
                out[o++] = ' ';
            memcpy(out + o, p, k);
            out[o + k] = '\0';
        }
        p += k;
        if (*p == ' ')
            p++;
    }
    return out;
}

static void token(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    struct ahdapa_oauth *o = a->oauth;
    struct http_form *f = ahdapa_form(r);
    struct ut_err e = {{0}};
    const char *gt, *cid;
    json_t *c = NULL, *hdr = NULL, *cl = NULL;
    char *scope = NULL, *jwt = NULL, jti[24];
    unsigned char rnd[16];
    json_int_t ttl, now = (json_int_t)time(NULL);

    if (f == NULL)
        return;
    gt = http_form_get(f, "grant_type");
    if (gt == NULL || *gt == '\0') {
        reply_400(r, "invalid_request", "grant_type is required");
        goto out;
    }
    if ((c = ahdapa_client_auth(a, r, f, 1)) == NULL)
        goto out;
    if (strcmp(gt, "client_credentials") != 0) {
        reply_400(r, "unsupported_grant_type", "only client_credentials is supported");
        goto out;
    }
    if (strcmp(json_string_value(json_object_get(c, "client_type")), "confidential") != 0 ||
        !grant_allowed(c, gt)) {
        reply_400(r, "unauthorized_client", "client_credentials is not allowed for this client");
        goto out;
    }
    if ((scope = grant_scope(r, c, http_form_get(f, "scope"))) == NULL)
        goto out;
    ttl = json_integer_value(json_object_get(c, "access_token_ttl"));
    if (ttl < 1 || ttl > AHDAPA_TTL_MAX)
        ttl = AHDAPA_TTL_DEF;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        http_reply_error(r, 500, "server_error", "no randomness");
        goto out;
    }
    ut_b64_encode(rnd, sizeof(rnd), jti, 1);
    cid = json_string_value(json_object_get(c, "client_id"));
    hdr = json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", o->kid);
    cl = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "iss", a->issuer, "sub", cid, "aud",
                   a->issuer, "exp", now + ttl, "iat", now, "jti", jti, "client_id", cid, "scope",
                   scope);
    if (cl)
        release_claims(a, c, scope, cl);
    jwt = hdr && cl ? ahdapa_jwt_sign_es256(o->key, hdr, cl, &e) : NULL;
    if (jwt == NULL) {
        http_reply_error(r, 500, "server_error", "cannot sign the access token");
        goto out;
    }
    http_add_header(r, "Cache-Control", "no-store");
    http_add_header(r, "Pragma", "no-cache");
    http_reply_json(r, 200,
                    json_pack("{s:s,s:s,s:I,s:s}", "access_token", jwt, "token_type", "Bearer",
                              "expires_in", ttl, "scope", scope));
out:
    free(jwt);
    free(scope);
    json_decref(hdr);
    json_decref(cl);
    json_decref(c);
    http_form_free(f);
}

int ahdapa_token_routes(struct ahdapa *a, struct ut_err *err)
{
    return http_route(a->http, HTTP_POST, "/token", token, a, err);
}
