/*
 * introspect.c - POST /introspect (RFC 7662) and POST /revoke (RFC 7009).
 * The caller authenticates as a confidential client. Any node accepts any
 * node's tokens: the key comes from the replicated signing_keys table (by
 * kid), the token's iss must be the issuer recorded with that key, exp
 * must be in the future and the jti must not be in revoked_tokens.
 *
 * Hot path: a per-thread cache of tokens found active (exact bytes -> the
 * reply body), dropped whenever the replica's change counter
 * (crdt_generation: new keys, revocations, anything replicated) moves;
 * a hit re-checks only exp against the clock (enough for a rotated-out
 * signing key too: its expiry is set past the exp of every token it can
 * have signed, see jwks.c). No lock shared between
 * workers, no SQLite read, no ECDSA verify, no JSON work on a hit.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ahdapa.h"
#include "util/log.h"

#define MOD "oauth"

#define TCACHE_N       256  /* active tokens cached per worker thread (direct-mapped) */
#define TCACHE_TOK_MAX 4096 /* longer tokens are not cached */

struct tentry {
    char *tok; /* owned, NUL-terminated */
    size_t len;
    json_int_t exp;
    char *body; /* owned: the introspection reply for an active token */
    size_t body_len;
};

struct tcache {
    uint64_t gen; /* crdt_generation() read before the entries were checked */
    struct ahdapa *a;
    struct tentry e[TCACHE_N];
};

static pthread_key_t tc_key;
static pthread_once_t tc_once = PTHREAD_ONCE_INIT;

static void tentry_clear(struct tentry *e)
{
    free(e->tok);
    free(e->body);
    memset(e, 0, sizeof(*e));
}

static void tc_clear(struct tcache *c)
{
    for (size_t i = 0; i < TCACHE_N; i++)
        if (c->e[i].tok)
            tentry_clear(&c->e[i]);
}

static void tc_free(void *p)
{
    if (p) {
        tc_clear(p);
        free(p);
    }
}

static void tc_init(void)
{
    (void)pthread_key_create(&tc_key, tc_free);
}

/* This thread's cache, emptied when the generation moved; NULL when out
 * of memory (then nothing is cached). */
static struct tcache *tc_get(struct ahdapa *a, uint64_t gen)
{
    struct tcache *c;

    pthread_once(&tc_once, tc_init);
    c = pthread_getspecific(tc_key);
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL)
            return NULL;
        if (pthread_setspecific(tc_key, c) != 0) {
            free(c);
            return NULL;
        }
    }
    if (c->gen != gen || c->a != a) {
        tc_clear(c);
        c->gen = gen;
        c->a = a;
    }
    return c;
}

static size_t tc_slot(const char *tok, size_t len)
{
    uint32_t h = 2166136261u;

    /* the signature (last 86 characters) is as good as random */
    for (size_t i = len > 32 ? len - 32 : 0; i < len; i++)
        h = (h ^ (unsigned char)tok[i]) * 16777619u;
    return h % TCACHE_N;
}

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
    struct tcache *tc;
    struct tentry *te = NULL;
    uint64_t gen;
    size_t len;
    char *body;

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
    len = strlen(tok);
    gen = crdt_generation(a->replica); /* before check_token reads keys and revocations */
    tc = len <= TCACHE_TOK_MAX ? tc_get(a, gen) : NULL;
    if (tc) {
        te = &tc->e[tc_slot(tok, len)];
        if (te->tok && te->len == len && memcmp(te->tok, tok, len) == 0) {
            if (te->exp > (json_int_t)time(NULL))
                http_reply(r, 200, "application/json", te->body, te->body_len);
            else
                http_reply(r, 200, "application/json", "{\"active\":false}", 16);
            goto out;
        }
    }
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
    body = res ? json_dumps(res, JSON_COMPACT) : NULL;
    if (body == NULL) { /* as http_reply_json: it logs and replies 500 */
        http_reply_json(r, 200, res);
        goto out;
    }
    json_decref(res);
    http_reply(r, 200, "application/json", body, strlen(body));
    if (te) {
        char *copy_tok = malloc(len + 1);

        if (copy_tok) {
            tentry_clear(te);
            memcpy(copy_tok, tok, len + 1);
            te->tok = copy_tok;
            te->len = len;
            te->exp = json_integer_value(json_object_get(claims, "exp"));
            te->body = body;
            te->body_len = strlen(body);
            body = NULL;
        }
    }
    free(body);
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
