/*
 * jwks.c - this node's token signing key and the cluster's public keys.
 *
 * The private key (P-256) is generated at first start and kept node-local
 * in oauth_signing_key (migration 4); its public JWK is published into the
 * replicated signing_keys table as
 *   {"kid","node_id","iss","jwk":{...},"expires":0}
 * so GET /jwks and /introspect on any node know every node's key.
 * Verification keys are cached per worker thread and dropped whenever the
 * replica's generation moves (no lock shared between workers).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ahdapa.h"
#include "util/log.h"
#include "util/mem.h"

#define MOD "oauth"

struct key_job {
    struct ahdapa *a;
    char *pem;       /* in: new key's PEM (generated) or NULL; out: stored PEM */
    const char *kid; /* in (new key) */
    const char *doc; /* in: signing_keys document to publish */
};

static int load_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct key_job *j = arg;
    sqlite3_stmt *st;
    int rc;

    st = store_stmt(j->a->store, db, "SELECT private_pem FROM oauth_signing_key WHERE id = 1", err);
    if (st == NULL)
        return -EIO;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        free(j->pem);
        j->pem = ut_xstrdup((const char *)sqlite3_column_text(st, 0));
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "reading oauth_signing_key: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(rc);
    }
    if (j->pem == NULL)
        return 0; /* nothing stored, nothing to store */
    st = store_stmt(j->a->store, db,
                    "INSERT INTO oauth_signing_key (id, kid, private_pem, created) "
                    "VALUES (1, ?1, ?2, ?3)",
                    err);
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, j->kid, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->pem, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "storing oauth_signing_key: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(rc);
    }
    return 0;
}

static int publish_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct key_job *j = arg;
    uint8_t *cur = NULL;
    size_t n = 0;
    int same;

    if (crdt_get(j->a->replica, db, "signing_keys", j->kid, &cur, &n, NULL) == 0) {
        same = n == strlen(j->doc) && memcmp(cur, j->doc, n) == 0;
        free(cur);
        if (same)
            return 0;
    }
    return crdt_put(j->a->replica, db, "signing_keys", j->kid, j->doc, strlen(j->doc), 0, err);
}

static char *pem_of(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL, *data;
    long n;

    if (b && PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1) {
        n = BIO_get_mem_data(b, &data);
        p = malloc((size_t)n + 1);
        if (p) {
            memcpy(p, data, (size_t)n);
            p[n] = '\0';
        }
    }
    BIO_free(b);
    return p;
}

static EVP_PKEY *key_of_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;

    BIO_free(b);
    return k;
}

int ahdapa_signing_key_init(struct ahdapa *a, struct ut_err *err)
{
    struct ahdapa_oauth *o = a->oauth;
    struct key_job j = {.a = a};
    json_t *doc;
    char *txt;
    int rc, created = 0;

    if ((rc = store_write(a->store, load_job, &j, err)) < 0)
        return rc;
    if (j.pem == NULL) {
        EVP_PKEY *k = ahdapa_p256_generate();

        if (k == NULL || (j.pem = pem_of(k)) == NULL || ahdapa_jwk_kid(a->node_id, k, o->kid) < 0) {
            EVP_PKEY_free(k);
            ut_err_set(err, "cannot generate the token signing key");
            return -EIO;
        }
        EVP_PKEY_free(k);
        j.kid = o->kid;
        if ((rc = store_write(a->store, load_job, &j, err)) < 0) {
            free(j.pem);
            return rc;
        }
        created = 1;
    }
    o->key = key_of_pem(j.pem);
    OPENSSL_cleanse(j.pem, strlen(j.pem));
    free(j.pem);
    if (o->key == NULL || EVP_PKEY_get_base_id(o->key) != EVP_PKEY_EC ||
        ahdapa_jwk_kid(a->node_id, o->key, o->kid) < 0) {
        ut_err_set(err, "oauth_signing_key: stored key is not a P-256 private key");
        return -EINVAL;
    }
    doc = json_pack("{s:s,s:s,s:s,s:o,s:i}", "kid", o->kid, "node_id", a->node_id, "iss", a->issuer,
                    "jwk", ahdapa_jwk_public(o->key, o->kid), "expires", 0);
    txt = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (txt == NULL) {
        ut_err_set(err, "cannot build the signing_keys document");
        return -ENOMEM;
    }
    j = (struct key_job){.a = a, .kid = o->kid, .doc = txt};
    rc = store_write(a->store, publish_job, &j, err);
    free(txt);
    if (rc < 0)
        return rc;
    ut_log(UT_LOG_INFO, MOD, "token signing key", UT_LF_S("kid", o->kid), UT_LF_S("alg", "ES256"),
           UT_LF_S("state", created ? "generated" : "loaded"));
    return 0;
}

/* ---- per-thread verification key cache ---- */

#define VCACHE_N 16

struct vkey {
    char kid[AHDAPA_KID_MAX];
    char *iss;
    EVP_PKEY *key;
};

struct vcache {
    uint64_t gen;
    struct ahdapa *a;
    int n, next;
    struct vkey k[VCACHE_N];
};

static pthread_key_t vc_key;
static pthread_once_t vc_once = PTHREAD_ONCE_INIT;

static void vc_clear(struct vcache *c)
{
    for (int i = 0; i < c->n; i++) {
        EVP_PKEY_free(c->k[i].key);
        free(c->k[i].iss);
    }
    c->n = c->next = 0;
}

static void vc_free(void *p)
{
    if (p) {
        vc_clear(p);
        free(p);
    }
}

static void vc_init(void)
{
    (void)pthread_key_create(&vc_key, vc_free);
}

int ahdapa_verify_key(struct ahdapa *a, const char *kid, struct evp_pkey_st **key, const char **iss)
{
    struct vcache *c;
    uint64_t gen = crdt_generation(a->replica);
    uint8_t *val = NULL;
    size_t n = 0;
    sqlite3 *db;
    json_t *doc, *exp;
    struct vkey *slot;
    EVP_PKEY *pk;

    if (kid == NULL || *kid == '\0' || strlen(kid) >= AHDAPA_KID_MAX)
        return -EINVAL;
    pthread_once(&vc_once, vc_init);
    c = pthread_getspecific(vc_key);
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL || pthread_setspecific(vc_key, c) != 0) {
            free(c);
            return -ENOMEM;
        }
    }
    if (c->gen != gen || c->a != a) {
        vc_clear(c);
        c->gen = gen;
        c->a = a;
    }
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->k[i].kid, kid) == 0) {
            *key = c->k[i].key;
            *iss = c->k[i].iss;
            return 0;
        }
    }
    if ((db = store_reader(a->store, NULL)) == NULL ||
        crdt_get(a->replica, db, "signing_keys", kid, &val, &n, NULL) < 0)
        return -ENOENT;
    doc = json_loadb((const char *)val, n, JSON_REJECT_DUPLICATES, NULL);
    free(val);
    exp = json_object_get(doc, "expires");
    if (doc == NULL || !json_is_string(json_object_get(doc, "iss")) ||
        (json_integer_value(exp) > 0 && json_integer_value(exp) < (json_int_t)time(NULL) * 1000) ||
        (pk = ahdapa_jwk_to_pkey(json_object_get(doc, "jwk"), NULL)) == NULL) {
        json_decref(doc);
        return -ENOENT;
    }
    if (c->n < VCACHE_N) {
        slot = &c->k[c->n++];
    } else {
        slot = &c->k[c->next];
        c->next = (c->next + 1) % VCACHE_N;
        EVP_PKEY_free(slot->key);
        free(slot->iss);
    }
    snprintf(slot->kid, sizeof(slot->kid), "%s", kid);
    slot->iss = ut_xstrdup(json_string_value(json_object_get(doc, "iss")));
    slot->key = pk;
    json_decref(doc);
    *key = slot->key;
    *iss = slot->iss;
    return 0;
}

/* ---- GET /jwks ---- */

static void jwks(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    json_t *keys = json_array();
    sqlite3_stmt *st;
    sqlite3 *db;
    json_int_t now_ms = (json_int_t)time(NULL) * 1000;

    db = store_reader(a->store, NULL);
    st = db ? store_stmt(a->store, db, "SELECT value FROM signing_keys ORDER BY key", NULL) : NULL;
    if (st == NULL) {
        json_decref(keys);
        http_reply_error(r, 500, "server_error", "cannot read signing_keys");
        return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *doc = json_loadb((const char *)sqlite3_column_blob(st, 0),
                                 (size_t)sqlite3_column_bytes(st, 0), 0, NULL);
        json_t *jwk = json_object_get(doc, "jwk");
        json_int_t exp = json_integer_value(json_object_get(doc, "expires"));

        if (json_is_object(jwk) && (exp <= 0 || exp > now_ms))
            json_array_append(keys, jwk);
        json_decref(doc);
    }
    sqlite3_reset(st);
    http_add_header(r, "Cache-Control", "public, max-age=60");
    http_reply_json(r, 200, json_pack("{s:o}", "keys", keys));
}

int ahdapa_jwks_routes(struct ahdapa *a, struct ut_err *err)
{
    return http_route(a->http, HTTP_GET, "/jwks", jwks, a, err);
}
