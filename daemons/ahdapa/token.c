/*
 * token.c - POST /token (RFC 6749): client_credentials with
 * client_secret_basic or client_secret_post; RFC 9068 JWT access tokens
 * signed ES256 with this node's active key (ahdapa_signer: one atomic load
 * per token, so a rotation never blocks a worker). Also the client authentication used
 * by /introspect and /revoke.
 *
 * Hot path: no database write, no lock shared between workers. Clients are
 * parsed once per worker thread into a small per-thread cache keyed by
 * client_id and dropped whenever the replica's change counter
 * (crdt_generation, an atomic read) moves, so the steady state touches
 * neither SQLite nor JSON parsing; the secret check is SHA-256 +
 * constant-time compare; the JWT and the reply are written from fixed
 * templates (jansson is only used for clients that release extra claims);
 * the digest and signing contexts are per thread (jwt.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
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
#define CCACHE_N   256 /* clients cached per worker thread (direct-mapped) */

/* ---- per-thread client cache ---- */

enum { M_NONE, M_POST, M_BASIC, M_OTHER };

struct centry {
    int used;
    char id[AHDAPA_NAME_MAX + 1];
    json_t *doc;  /* owned: the stored client document */
    int method;   /* token_endpoint_auth_method */
    int has_hash; /* hash holds a decoded client_secret_hash */
    unsigned char hash[32];
    int cc_ok;         /* confidential and allowed client_credentials */
    const char *cid;   /* the document's client_id (borrowed; may be NULL) */
    const char *scope; /* registered scope (borrowed from doc; "" when absent) */
    json_int_t ttl;    /* effective access token lifetime */
    int has_claims;    /* the client has claim values to release */
};

struct ccache {
    uint64_t gen; /* crdt_generation() the entries were read under */
    struct ahdapa *a;
    struct centry e[CCACHE_N];
};

static pthread_key_t cc_key;
static pthread_once_t cc_once = PTHREAD_ONCE_INIT;

static void centry_clear(struct centry *e)
{
    json_decref(e->doc);
    ut_memzero(e, sizeof(*e));
}

static void cc_clear(struct ccache *c)
{
    for (size_t i = 0; i < CCACHE_N; i++)
        if (c->e[i].used)
            centry_clear(&c->e[i]);
}

static void cc_free(void *p)
{
    if (p) {
        cc_clear(p);
        free(p);
    }
}

static void cc_init(void)
{
    (void)pthread_key_create(&cc_key, cc_free);
}

static int grant_allowed(const json_t *c, const char *g);

/* Fills e from doc (stolen). */
static void centry_fill(struct centry *e, const char *id, json_t *doc)
{
    const char *m = json_string_value(json_object_get(doc, "token_endpoint_auth_method"));
    const char *h = json_string_value(json_object_get(doc, "client_secret_hash"));
    const char *t = json_string_value(json_object_get(doc, "client_type"));

    e->used = 1;
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->doc = doc;
    e->method = m == NULL                               ? M_OTHER
                : strcmp(m, "none") == 0                ? M_NONE
                : strcmp(m, "client_secret_post") == 0  ? M_POST
                : strcmp(m, "client_secret_basic") == 0 ? M_BASIC
                                                        : M_OTHER;
    e->has_hash = h && ut_hex_decode(h, strlen(h), e->hash, sizeof(e->hash)) == 0;
    e->cc_ok = t && strcmp(t, "confidential") == 0 && grant_allowed(doc, "client_credentials");
    e->cid = json_string_value(json_object_get(doc, "client_id"));
    e->scope = json_string_value(json_object_get(doc, "scope"));
    if (e->scope == NULL)
        e->scope = "";
    e->ttl = json_integer_value(json_object_get(doc, "access_token_ttl"));
    if (e->ttl < 1 || e->ttl > AHDAPA_TTL_MAX)
        e->ttl = AHDAPA_TTL_DEF;
    e->has_claims = json_object_size(json_object_get(doc, "claims")) > 0;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The client id, through this thread's cache: a cache slot, or tmp (filled
 * when there is no cache; release it with centry_release), or NULL when
 * there is no such client (absence is not cached). */
static struct centry *client_lookup(struct ahdapa *a, const char *id, struct centry *tmp)
{
    uint64_t gen = crdt_generation(a->replica); /* before reading the rows */
    struct ccache *c;
    struct centry *e;
    json_t *doc;

    pthread_once(&cc_once, cc_init);
    c = pthread_getspecific(cc_key);
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c != NULL && pthread_setspecific(cc_key, c) != 0) {
            free(c);
            c = NULL;
        }
    }
    if (c == NULL) {
        doc = ahdapa_client_get(a, id);
        if (doc == NULL)
            return NULL;
        memset(tmp, 0, sizeof(*tmp));
        centry_fill(tmp, id, doc);
        return tmp;
    }
    if (c->gen != gen || c->a != a) {
        cc_clear(c);
        c->gen = gen;
        c->a = a;
    }
    e = &c->e[fnv1a(id) % CCACHE_N];
    if (e->used && strcmp(e->id, id) == 0)
        return e;
    doc = ahdapa_client_get(a, id);
    if (doc == NULL)
        return NULL;
    if (e->used)
        centry_clear(e);
    centry_fill(e, id, doc);
    return e;
}

static void centry_release(struct centry *e, struct centry *tmp)
{
    if (e == tmp)
        centry_clear(tmp);
}

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

/* Authenticates the client of a form request; returns its cache entry
 * (release with centry_release(e, tmp)) or NULL after replying. */
static struct centry *client_authenticate(struct ahdapa *a, struct http_req *r,
                                          const struct http_form *f, int allow_public,
                                          struct centry *tmp)
{
    const char *hdr = http_req_header(r, "Authorization");
    const char *fid = http_form_get(f, "client_id"), *fsec = http_form_get(f, "client_secret");
    char id[AHDAPA_NAME_MAX * 3 + 1], secret[SECRET_MAX + 1];
    unsigned char dec[SECRET_MAX * 3 + AHDAPA_NAME_MAX * 3 + 8], got[32];
    size_t n = 0, idlen;
    struct centry *c;
    int basic = 0, method;

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
        method = M_BASIC;
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
        method = M_POST;
    } else if (fid) {
        if (strlen(fid) >= sizeof(id)) {
            reply_invalid_client(r, a, 0, "client authentication failed");
            return NULL;
        }
        snprintf(id, sizeof(id), "%s", fid);
        method = M_NONE;
    } else {
        reply_invalid_client(r, a, 1, "client authentication required");
        return NULL;
    }
    idlen = strlen(id);
    c = idlen == 0 || idlen > AHDAPA_NAME_MAX ? NULL : client_lookup(a, id, tmp);
    if (c == NULL || c->method != method || (method == M_NONE && !allow_public)) {
        if (c)
            centry_release(c, tmp);
        ut_memzero(secret, sizeof(secret));
        reply_invalid_client(r, a, basic, "client authentication failed");
        return NULL;
    }
    if (method != M_NONE) {
        int ok = c->has_hash && ahdapa_sha256(secret, strlen(secret), got) == 0 &&
                 ut_ct_eq(c->hash, got, sizeof(got));

        ut_memzero(secret, sizeof(secret));
        if (!ok) {
            centry_release(c, tmp);
            reply_invalid_client(r, a, basic, "client authentication failed");
            return NULL;
        }
    }
    return c;
}

/* The returned document is shared with this thread's client cache: callers
 * only read it (and json_decref it). */
json_t *ahdapa_client_auth(struct ahdapa *a, struct http_req *r, const struct http_form *f,
                           int allow_public)
{
    struct centry tmp, *e = client_authenticate(a, r, f, allow_public, &tmp);
    json_t *doc;

    if (e == NULL)
        return NULL;
    doc = json_incref(e->doc);
    centry_release(e, &tmp);
    return doc;
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
 * client) or, when absent, the client's registered scope. Written to
 * buf[cap] when it fits, else to *heap (malloc'd, caller frees); the
 * registered scope itself is returned as is. NULL after replying
 * invalid_scope (or 500 when out of memory). */
static const char *grant_scope(struct http_req *r, const char *allowed, const char *req, char *buf,
                               size_t cap, char **heap)
{
    size_t len;
    char *out;

    *heap = NULL;
    if (req == NULL)
        return allowed;
    len = strlen(req);
    if (len + 1 <= cap) {
        out = buf;
    } else if ((out = *heap = malloc(len + 1)) == NULL) {
        http_reply_error(r, 500, "server_error", "out of memory");
        return NULL;
    }
    out[0] = '\0';
    for (const char *p = req; *p;) {
        size_t k = strcspn(p, " ");

        if (k == 0 || !ahdapa_scope_token_ok(p, k)) {
            free(*heap);
            *heap = NULL;
            reply_400(r, "invalid_scope", "scope must be space-separated scope tokens");
            return NULL;
        }
        if (!has_word(allowed, p, k)) {
            free(*heap);
            *heap = NULL;
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

/* Appends s as the body of a JSON string the way jansson's compact dump
 * writes it; ASCII only (-1 for other bytes, or when cap is too small:
 * the caller then takes the jansson path). Returns the new length. */
static long json_esc(char *dst, size_t cap, size_t o, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (o + 6 >= cap || c >= 0x80)
            return -1;
        if (c == '"' || c == '\\') {
            dst[o++] = '\\';
            dst[o++] = (char)c;
        } else if (c < 0x20) {
            dst[o++] = '\\';
            switch (c) {
            case '\b':
                dst[o++] = 'b';
                break;
            case '\f':
                dst[o++] = 'f';
                break;
            case '\n':
                dst[o++] = 'n';
                break;
            case '\r':
                dst[o++] = 'r';
                break;
            case '\t':
                dst[o++] = 't';
                break;
            default:
                dst[o++] = 'u';
                dst[o++] = '0';
                dst[o++] = '0';
                dst[o++] = hex[c >> 4];
                dst[o++] = hex[c & 15];
            }
        } else {
            dst[o++] = (char)c;
        }
    }
    return (long)o;
}

/* Appends fmt's output at buf[o]; -1 when it does not fit. */
static long put(char *buf, size_t cap, long o, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static long put(char *buf, size_t cap, long o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o < 0 || (size_t)o >= cap)
        return -1;
    va_start(ap, fmt);
    n = vsnprintf(buf + o, cap - (size_t)o, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - (size_t)o)
        return -1;
    return o + n;
}

#define FAST_JSON_MAX 3072 /* header or claims JSON built from the template */
#define FAST_TOK_MAX  (FAST_JSON_MAX / 3 * 4 * 2 + 96)
#define FAST_BODY_MAX (FAST_TOK_MAX + FAST_JSON_MAX + 128)

/* The RFC 9068 token and the reply built from fixed templates (no claims
 * to release). 1 when it replied 200, 0 when something does not fit the
 * template (the caller takes the jansson path), -1 after replying 500. */
static int token_fast(struct http_req *r, struct ahdapa *a, const struct ahdapa_signer *sg,
                      const struct centry *c, const char *scope, const char *jti, json_int_t now)
{
    char js[FAST_JSON_MAX], tok[FAST_TOK_MAX], body[FAST_BODY_MAX];
    long n, t, b;

    if (c->cid == NULL)
        return 0;
    /* header */
    n = put(js, sizeof(js), 0, "{\"alg\":\"ES256\",\"typ\":\"at+jwt\",\"kid\":\"");
    n = n < 0 ? -1 : json_esc(js, sizeof(js), (size_t)n, sg->kid);
    n = put(js, sizeof(js), n, "\"}");
    if (n < 0 || ut_b64_enclen((size_t)n, 1) + 1 > sizeof(tok))
        return 0;
    ut_b64_encode(js, (size_t)n, tok, 1);
    t = (long)strlen(tok);
    tok[t++] = '.';
    /* claims, in the order the jansson path writes them */
    n = put(js, sizeof(js), 0, "{\"iss\":\"");
    n = n < 0 ? -1 : json_esc(js, sizeof(js), (size_t)n, a->issuer);
    n = put(js, sizeof(js), n, "\",\"sub\":\"");
    n = n < 0 ? -1 : json_esc(js, sizeof(js), (size_t)n, c->cid);
    n = put(js, sizeof(js), n, "\",\"aud\":\"");
    n = n < 0 ? -1 : json_esc(js, sizeof(js), (size_t)n, a->issuer);
    n = put(js, sizeof(js), n, "\",\"exp\":%lld,\"iat\":%lld,\"jti\":\"%s\",\"client_id\":\"",
            (long long)(now + c->ttl), (long long)now, jti);
    n = n < 0 ? -1 : json_esc(js, sizeof(js), (size_t)n, c->cid);
    n = put(js, sizeof(js), n, "\",\"scope\":\"");
    n = n < 0 ? -1 : json_esc(js, sizeof(js), (size_t)n, scope);
    n = put(js, sizeof(js), n, "\"}");
    if (n < 0 || (size_t)t + ut_b64_enclen((size_t)n, 1) + 1 + 86 + 1 > sizeof(tok))
        return 0;
    ut_b64_encode(js, (size_t)n, tok + t, 1);
    t += (long)strlen(tok + t);
    if (ahdapa_jwt_sign_input(sg->key, tok, (size_t)t, tok + t + 1) < 0) {
        http_reply_error(r, 500, "server_error", "cannot sign the access token");
        return -1;
    }
    tok[t] = '.';
    /* reply: {"access_token","token_type","expires_in","scope"} */
    b = put(body, sizeof(body), 0,
            "{\"access_token\":\"%s\",\"token_type\":\"Bearer\","
            "\"expires_in\":%lld,\"scope\":\"",
            tok, (long long)c->ttl);
    b = b < 0 ? -1 : json_esc(body, sizeof(body), (size_t)b, scope);
    b = put(body, sizeof(body), b, "\"}");
    if (b < 0)
        return 0;
    http_add_header(r, "Cache-Control", "no-store");
    http_add_header(r, "Pragma", "no-cache");
    http_reply(r, 200, "application/json", body, (size_t)b);
    return 1;
}

static void token(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    const struct ahdapa_signer *sg; /* loaded once: kid and key always match */
    struct http_form *f = ahdapa_form(r);
    struct ut_err e = {{0}};
    struct centry tmp, *c = NULL;
    const char *gt, *cid, *scope;
    json_t *hdr = NULL, *cl = NULL;
    char *scope_heap = NULL, *jwt = NULL, jti[24], scope_buf[1024];
    unsigned char rnd[16];
    json_int_t ttl, now = (json_int_t)time(NULL);

    if (f == NULL)
        return;
    gt = http_form_get(f, "grant_type");
    if (gt == NULL || *gt == '\0') {
        reply_400(r, "invalid_request", "grant_type is required");
        goto out;
    }
    if ((c = client_authenticate(a, r, f, 1, &tmp)) == NULL)
        goto out;
    if (strcmp(gt, "client_credentials") != 0) {
        reply_400(r, "unsupported_grant_type", "only client_credentials is supported");
        goto out;
    }
    if (!c->cc_ok) {
        reply_400(r, "unauthorized_client", "client_credentials is not allowed for this client");
        goto out;
    }
    scope = grant_scope(r, c->scope, http_form_get(f, "scope"), scope_buf, sizeof(scope_buf),
                        &scope_heap);
    if (scope == NULL)
        goto out;
    ttl = c->ttl;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        http_reply_error(r, 500, "server_error", "no randomness");
        goto out;
    }
    ut_b64_encode(rnd, sizeof(rnd), jti, 1);
    sg = ahdapa_signer(a);
    if (!c->has_claims && token_fast(r, a, sg, c, scope, jti, now) != 0)
        goto out;
    cid = c->cid;
    hdr = json_pack("{s:s,s:s,s:s}", "alg", "ES256", "typ", "at+jwt", "kid", sg->kid);
    cl = json_pack("{s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s}", "iss", a->issuer, "sub", cid, "aud",
                   a->issuer, "exp", now + ttl, "iat", now, "jti", jti, "client_id", cid, "scope",
                   scope);
    if (cl)
        release_claims(a, c->doc, scope, cl);
    jwt = hdr && cl ? ahdapa_jwt_sign_es256(sg->key, hdr, cl, &e) : NULL;
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
    free(scope_heap);
    json_decref(hdr);
    json_decref(cl);
    if (c)
        centry_release(c, &tmp);
    http_form_free(f);
}

int ahdapa_token_routes(struct ahdapa *a, struct ut_err *err)
{
    return http_route(a->http, HTTP_POST, "/token", token, a, err);
}
