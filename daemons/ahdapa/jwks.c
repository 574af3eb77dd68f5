/*
 * jwks.c - this node's token signing key, its rotation, and the cluster's
 * public keys.
 *
 * The private key (P-256) is generated at first start and kept node-local
 * in oauth_active_key (migration 5) as SEC1 DER, sealed with gsp_wrap_seal
 * under the same wrapping key as the node's gossip keys (the stored cluster
 * key, else [gossip] wrapping_key_file): in clear only while neither
 * exists. A clear row is sealed by the first start that has a wrapping key,
 * or when PUT /api/admin/keys/cluster sets one (ahdapa_signing_key_rewrap,
 * in the same transaction as the node keys). The clear PEM row of
 * migration 4 (oauth_signing_key) is moved there, and deleted, at start.
 * Jobs that overwrite or delete key material run with PRAGMA secure_delete
 * on, so the freed cells are zeroed rather than left in the file.
 *
 * The public JWK goes into the replicated signing_keys table as
 *   {"kid","node_id","iss","jwk":{...},"expires":0}
 * so GET /jwks and /introspect on any node know every node's key.
 *
 * Rotation (POST /api/admin/keys/signing/rotate) stores a new key, publishes
 * it and sets the previous key's "expires" (unix ms) to now + AHDAPA_TTL_MAX
 * + ROTATE_SLACK_SECS, the longest any token it signed can live: until then
 * those tokens verify on every node; afterwards /jwks omits the key,
 * /introspect answers active:false, and the next rotation or start
 * tombstones the row. The hot path takes no lock: workers load the active
 * signer with one atomic load per token (ahdapa_signer), and a replaced
 * signer stays allocated until shutdown (a worker may still be using it;
 * jwt.c's per-thread signing context is keyed by the EVP_PKEY pointer, which
 * is therefore never reused while serving). Rotations are serialized by
 * rotate_mu, which nothing else takes.
 *
 * Verification keys are cached per worker thread and dropped whenever the
 * replica's generation moves (no lock shared between workers).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "ahdapa.h"
#include "gossip/nodekey.h"
#include "util/log.h"
#include "util/mem.h"

#define MOD               "oauth"
#define DER_MAX           512 /* SEC1 DER of a P-256 key: about 121 bytes */
#define AAD_MAX           (32 + CRY_ENV_ID_MAX + AHDAPA_KID_MAX)
#define ROTATE_SLACK_SECS 60 /* tokens whose signing straddles the rotation */
#define SWEEP_MAX         64 /* expired signing_keys rows tombstoned per job */

/* HKDF info of the sealing key; aad = "oauth_active_key v1|" node_id "|" kid
 * (the kid is derived from the node id and the public key, so a sealed row
 * copied to another node or relabelled does not open). */
static const char wrap_info[] = "ahdapa oauth_active_key v1 wrap";

static pthread_mutex_t rotate_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- keys and rows ---- */

static int is_p256(EVP_PKEY *k)
{
    char g[32];
    size_t n = 0;

    return EVP_PKEY_get_base_id(k) == EVP_PKEY_EC &&
           EVP_PKEY_get_group_name(k, g, sizeof(g), &n) == 1 && strcmp(g, "prime256v1") == 0;
}

/* k's SEC1 DER into der[DER_MAX]; its length, or 0. */
static size_t der_of(EVP_PKEY *k, uint8_t der[DER_MAX])
{
    unsigned char *buf = NULL;
    int n = i2d_PrivateKey(k, &buf);
    size_t len = 0;

    if (n > 0 && n <= DER_MAX) {
        memcpy(der, buf, (size_t)n);
        len = (size_t)n;
    }
    if (buf)
        OPENSSL_clear_free(buf, n > 0 ? (size_t)n : 0);
    return len;
}

/* The P-256 private key of a SEC1 DER (nothing after it), or NULL. */
static EVP_PKEY *key_of_der(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *k = d2i_PrivateKey(EVP_PKEY_EC, NULL, &p, (long)len);

    if (k && (p != der + len || !is_p256(k))) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

/* Sets PRAGMA secure_delete on db (on = 0/1; -1 leaves it) and returns the
 * previous setting (-1 when unknown), for the jobs that overwrite or delete
 * key material. Not transactional: restore it before the job returns. */
static int secure_delete(sqlite3 *db, int on)
{
    sqlite3_stmt *st = NULL;
    int prev = -1;

    if (sqlite3_prepare_v2(db, "PRAGMA secure_delete", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        prev = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (on >= 0)
        (void)sqlite3_exec(db, on ? "PRAGMA secure_delete=1" : "PRAGMA secure_delete=0", NULL, NULL,
                           NULL);
    return prev;
}

/* The active key as stored, opened: DER in clear. Zeroize after use. */
struct row {
    char kid[AHDAPA_KID_MAX];
    char wrap_id[GSP_WRAPKEY_ID_LEN + 1]; /* "" when stored in clear */
    uint8_t der[DER_MAX];
    size_t der_len;
};

static int aad_of(const char *node_id, const char *kid, char aad[AAD_MAX])
{
    int n = snprintf(aad, AAD_MAX, "oauth_active_key v1|%s|%s", node_id, kid);

    return n < 0 || n >= AAD_MAX ? -1 : n;
}

/* Reads oauth_active_key; a sealed row is opened with whichever of
 * keys[0..n) (NULL entries skipped) has its wrap id. 1 (r filled), 0 (no
 * row), -EACCES (sealed under a key not given: err names its id), -EBADMSG
 * (damaged), or a store error. */
static int row_read(struct ahdapa *a, sqlite3 *db, const struct gsp_wrapkey *const *keys, size_t n,
                    struct row *r, struct ut_err *err)
{
    sqlite3_stmt *st =
        store_stmt(a->store, db, "SELECT kid, secret, wrap_key_id FROM oauth_active_key", err);
    const struct gsp_wrapkey *w = NULL;
    const char *kid, *wid;
    const uint8_t *blob;
    char aad[AAD_MAX];
    int len, alen, any = 0, rc;

    memset(r, 0, sizeof(*r));
    if (st == NULL)
        return -EIO;
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = 0;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        ut_err_set(err, "oauth_active_key: %s", sqlite3_errmsg(db));
        rc = store_sqlite_errno(rc);
        goto out;
    }
    kid = (const char *)sqlite3_column_text(st, 0);
    blob = sqlite3_column_blob(st, 1);
    len = sqlite3_column_bytes(st, 1);
    wid = (const char *)sqlite3_column_text(st, 2);
    rc = -EBADMSG;
    if (kid == NULL || *kid == '\0' || strlen(kid) >= sizeof(r->kid) || blob == NULL) {
        ut_err_set(err, "oauth_active_key: damaged row (no kid or no secret)");
        goto out;
    }
    snprintf(r->kid, sizeof(r->kid), "%s", kid);
    if (wid == NULL) {
        if (len > DER_MAX) {
            ut_err_set(err, "oauth_active_key: stored key has %d bytes, at most %d expected", len,
                       DER_MAX);
            goto out;
        }
        memcpy(r->der, blob, (size_t)len);
        r->der_len = (size_t)len;
        rc = 1;
        goto out;
    }
    snprintf(r->wrap_id, sizeof(r->wrap_id), "%s", wid);
    for (size_t i = 0; i < n; i++) {
        any |= keys[i] != NULL;
        if (keys[i] && strcmp(keys[i]->id, wid) == 0)
            w = keys[i];
    }
    if (w == NULL) {
        ut_err_set(err, "oauth_active_key: the token signing key is sealed with key id %s; %s", wid,
                   any ? "a different wrapping key was given" : "no wrapping key is available");
        rc = -EACCES;
        goto out;
    }
    if (len < GSP_WRAP_OVERHEAD || len - GSP_WRAP_OVERHEAD > DER_MAX ||
        (alen = aad_of(a->node_id, kid, aad)) < 0 ||
        gsp_wrap_open(w, wrap_info, aad, (size_t)alen, blob, (size_t)len, r->der) < 0) {
        ut_err_set(err,
                   "oauth_active_key: the sealed token signing key does not open with key id %s "
                   "(damaged row, or another node id)",
                   wid);
        goto out;
    }
    r->der_len = (size_t)len - GSP_WRAP_OVERHEAD;
    rc = 1;
out:
    sqlite3_reset(st);
    return rc;
}

/* Stores r as the active key, its DER sealed under w (NULL: in clear);
 * "created" is kept when the kid is the stored one. */
static int row_write(struct ahdapa *a, sqlite3 *db, const struct row *r,
                     const struct gsp_wrapkey *w, struct ut_err *err)
{
    uint8_t sealed[DER_MAX + GSP_WRAP_OVERHEAD];
    char aad[AAD_MAX];
    sqlite3_stmt *st;
    int alen, rc = -EIO;

    if (w && ((alen = aad_of(a->node_id, r->kid, aad)) < 0 ||
              gsp_wrap_seal(w, wrap_info, aad, (size_t)alen, r->der, r->der_len, sealed) < 0)) {
        ut_err_set(err, "oauth_active_key: cannot seal the token signing key with key id %s",
                   w->id);
        goto out;
    }
    st = store_stmt(a->store, db,
                    "INSERT INTO oauth_active_key (id, kid, secret, wrap_key_id, created) "
                    "VALUES (1, ?1, ?2, ?3, ?4) ON CONFLICT(id) DO UPDATE SET "
                    "kid = excluded.kid, secret = excluded.secret, "
                    "wrap_key_id = excluded.wrap_key_id, "
                    "created = CASE WHEN kid = excluded.kid THEN created ELSE excluded.created END",
                    err);
    if (st == NULL)
        goto out;
    sqlite3_bind_text(st, 1, r->kid, -1, SQLITE_STATIC);
    if (w) {
        sqlite3_bind_blob(st, 2, sealed, (int)(r->der_len + GSP_WRAP_OVERHEAD), SQLITE_STATIC);
        sqlite3_bind_text(st, 3, w->id, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_blob(st, 2, r->der, (int)r->der_len, SQLITE_STATIC);
        sqlite3_bind_null(st, 3);
    }
    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* no pointer to our buffers stays in the cache */
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "storing oauth_active_key: %s", sqlite3_errmsg(db));
        rc = store_sqlite_errno(rc);
        goto out;
    }
    rc = 0;
out:
    ut_memzero(sealed, sizeof(sealed));
    return rc;
}

/* Takes the clear PEM row of migration 4 (oauth_signing_key), if any:
 * *key filled and the row deleted. 1, 0 (none) or negative. */
static int legacy_take(struct ahdapa *a, sqlite3 *db, EVP_PKEY **key, struct ut_err *err)
{
    sqlite3_stmt *st =
        store_stmt(a->store, db, "SELECT private_pem FROM oauth_signing_key WHERE id = 1", err);
    const char *pem;
    BIO *b;
    int rc;

    *key = NULL;
    if (st == NULL)
        return -EIO;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        pem = (const char *)sqlite3_column_text(st, 0);
        b = pem ? BIO_new_mem_buf(pem, sqlite3_column_bytes(st, 0)) : NULL;
        *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_ROW) {
        ut_err_set(err, "reading oauth_signing_key: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(rc);
    }
    if (*key == NULL || !is_p256(*key)) {
        EVP_PKEY_free(*key);
        *key = NULL;
        ut_err_set(err, "oauth_signing_key: stored key is not a P-256 private key in PEM");
        return -EBADMSG;
    }
    st = store_stmt(a->store, db, "DELETE FROM oauth_signing_key", err);
    rc = st ? sqlite3_step(st) : SQLITE_ERROR;
    if (st)
        sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        EVP_PKEY_free(*key);
        *key = NULL;
        ut_err_set(err, "deleting oauth_signing_key: %s", sqlite3_errmsg(db));
        return st ? store_sqlite_errno(rc) : -EIO;
    }
    return 1;
}

/* The signing_keys document of (k, kid), expires in unix ms (0: active);
 * malloc'd, or NULL. */
static char *key_doc(struct ahdapa *a, EVP_PKEY *k, const char *kid, json_int_t expires_ms)
{
    json_t *jwk = ahdapa_jwk_public(k, kid), *doc;
    char *txt;

    if (jwk == NULL)
        return NULL;
    doc = json_pack("{s:s,s:s,s:s,s:o,s:I}", "kid", kid, "node_id", a->node_id, "iss", a->issuer,
                    "jwk", jwk, "expires", expires_ms);
    txt = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    return txt;
}

/* signing_keys[kid] = doc, unless stored already (a restart writes nothing). */
static int publish(struct ahdapa *a, sqlite3 *db, const char *kid, const char *doc,
                   struct ut_err *err)
{
    uint8_t *cur = NULL;
    size_t n = 0;
    int same;

    if (crdt_get(a->replica, db, "signing_keys", kid, &cur, &n, NULL) == 0) {
        same = n == strlen(doc) && memcmp(cur, doc, n) == 0;
        free(cur);
        if (same)
            return 0;
    }
    return crdt_put(a->replica, db, "signing_keys", kid, doc, strlen(doc), 0, err);
}

/* A signing_keys "expires" (unix ms; 0 or absent: never) that has passed. */
static int key_expired(json_int_t expires_ms, json_int_t now_ms)
{
    return expires_ms > 0 && expires_ms <= now_ms;
}

/* Tombstones signing_keys rows (any node's) whose expires has passed: no
 * token they signed is still valid. Idempotent on every node. At most
 * SWEEP_MAX a call; the count or negative. */
static int sweep(struct ahdapa *a, sqlite3 *db, struct ut_err *err)
{
    char kids[SWEEP_MAX][AHDAPA_KID_MAX];
    sqlite3_stmt *st = store_stmt(a->store, db,
                                  "SELECT key FROM signing_keys WHERE json_valid(value) AND "
                                  "json_type(value, '$.expires') = 'integer' AND "
                                  "json_extract(value, '$.expires') BETWEEN 1 AND ?1 LIMIT ?2",
                                  err);
    int n = 0, rc;

    if (st == NULL)
        return -EIO;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)time(NULL) * 1000);
    sqlite3_bind_int(st, 2, SWEEP_MAX);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *k = (const char *)sqlite3_column_text(st, 0);

        if (k && strlen(k) < AHDAPA_KID_MAX)
            snprintf(kids[n++], AHDAPA_KID_MAX, "%s", k);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "reading signing_keys: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(rc);
    }
    for (int i = 0; i < n; i++)
        if ((rc = crdt_delete(a->replica, db, "signing_keys", kids[i], err)) < 0)
            return rc;
    return n;
}

/* ---- start ---- */

struct init_job {
    struct ahdapa *a;
    EVP_PKEY *key; /* out */
    char kid[AHDAPA_KID_MAX];
    const char *state;                    /* "loaded", "converted" or "generated" */
    char wrap_id[GSP_WRAPKEY_ID_LEN + 1]; /* the key it is sealed under, "" in clear */
    int sealed_now;                       /* a clear key was sealed by this start */
    int swept;
};

static int init_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct init_job *j = arg;
    struct ahdapa *a = j->a;
    struct gsp_wrapkey w;
    const struct gsp_wrapkey *cur = NULL;
    struct row r;
    char *doc = NULL;
    int sd = secure_delete(db, 1), rc;

    memset(&r, 0, sizeof(r));
    if ((rc = ahdapa_wrapkey_current(a, db, &w, err)) < 0)
        goto out;
    cur = rc == 1 ? &w : NULL;
    if ((rc = row_read(a, db, &cur, 1, &r, err)) < 0)
        goto out;
    if (rc == 1) {
        j->state = "loaded";
        if ((j->key = key_of_der(r.der, r.der_len)) == NULL) {
            ut_err_set(err, "oauth_active_key: stored key is not a P-256 private key");
            rc = -EBADMSG;
            goto out;
        }
        if ((rc = ahdapa_jwk_kid(a->node_id, j->key, j->kid)) < 0) {
            ut_err_set(err, "cannot derive the kid of the token signing key");
            goto out;
        }
        if (strcmp(j->kid, r.kid) != 0) {
            ut_err_set(err,
                       "oauth_active_key: stored kid %s is not the kid of the stored key "
                       "under node id \"%s\"",
                       r.kid, a->node_id);
            rc = -EBADMSG;
            goto out;
        }
        if (cur && r.wrap_id[0] == '\0') {
            if ((rc = row_write(a, db, &r, cur, err)) < 0)
                goto out;
            j->sealed_now = 1;
        }
    } else {
        if ((rc = legacy_take(a, db, &j->key, err)) < 0)
            goto out;
        j->state = rc == 1 ? "converted" : "generated";
        if (rc == 0 && (j->key = ahdapa_p256_generate()) == NULL) {
            ut_err_set(err, "cannot generate the token signing key");
            rc = -EIO;
            goto out;
        }
        if ((rc = ahdapa_jwk_kid(a->node_id, j->key, j->kid)) < 0) {
            ut_err_set(err, "cannot derive the kid of the token signing key");
            goto out;
        }
        snprintf(r.kid, sizeof(r.kid), "%s", j->kid);
        if ((r.der_len = der_of(j->key, r.der)) == 0) {
            ut_err_set(err, "cannot encode the token signing key");
            rc = -EIO;
            goto out;
        }
        if ((rc = row_write(a, db, &r, cur, err)) < 0)
            goto out;
    }
    if (cur)
        snprintf(j->wrap_id, sizeof(j->wrap_id), "%s", cur->id);
    if ((doc = key_doc(a, j->key, j->kid, 0)) == NULL) {
        ut_err_set(err, "cannot build the signing_keys document");
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = publish(a, db, j->kid, doc, err)) < 0 || (rc = sweep(a, db, err)) < 0)
        goto out;
    j->swept = rc;
    rc = 0;
out:
    free(doc);
    ut_memzero(&r, sizeof(r));
    gsp_wrapkey_clear(&w);
    secure_delete(db, sd);
    if (rc < 0) {
        EVP_PKEY_free(j->key);
        j->key = NULL;
    }
    return rc;
}

int ahdapa_signing_key_init(struct ahdapa *a, struct ut_err *err)
{
    struct init_job j = {.a = a};
    struct ahdapa_signer *s = NULL;
    int rc = store_write(a->store, init_job, &j, err);

    if (rc == 0 && (s = calloc(1, sizeof(*s))) == NULL) {
        ut_err_set(err, "oauth: out of memory");
        rc = -ENOMEM;
    }
    if (rc < 0) {
        EVP_PKEY_free(j.key); /* the job succeeded but its commit failed */
        return rc;
    }
    s->key = j.key;
    memcpy(s->kid, j.kid, sizeof(s->kid));
    atomic_store_explicit(&a->oauth->signer, s, memory_order_release);
    if (j.sealed_now)
        ut_log(UT_LOG_INFO, MOD, "token signing key sealed at rest", UT_LF_S("wrap_id", j.wrap_id));
    ut_log(UT_LOG_INFO, MOD, "token signing key", UT_LF_S("kid", s->kid), UT_LF_S("alg", "ES256"),
           UT_LF_S("state", j.state), UT_LF_S("wrap_id", j.wrap_id[0] ? j.wrap_id : "(clear)"));
    if (j.swept)
        ut_log(UT_LOG_INFO, MOD, "expired signing keys removed", UT_LF_I("count", j.swept));
    return 0;
}

const struct ahdapa_signer *ahdapa_signer(struct ahdapa *a)
{
    return atomic_load_explicit(&a->oauth->signer, memory_order_acquire);
}

void ahdapa_signing_key_free(struct ahdapa *a)
{
    struct ahdapa_signer *s, *older;

    if (a->oauth == NULL)
        return;
    s = atomic_exchange_explicit(&a->oauth->signer, NULL, memory_order_acq_rel);
    for (; s; s = older) {
        older = s->older;
        EVP_PKEY_free(s->key);
        free(s);
    }
}

/* ---- PUT /api/admin/keys/cluster: re-seal ---- */

struct rewrap_job {
    struct ahdapa *a;
    const struct gsp_wrapkey *old_key, *new_key;
    int changed;
};

static int rewrap_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct rewrap_job *j = arg;
    const struct gsp_wrapkey *keys[2] = {j->old_key, j->new_key};
    struct row r;
    int sd = secure_delete(db, 1), rc;

    if ((rc = row_read(j->a, db, keys, 2, &r, err)) <= 0)
        goto out; /* 0: no key stored yet, nothing to re-seal */
    rc = 0;
    if (j->new_key ? strcmp(r.wrap_id, j->new_key->id) == 0 : r.wrap_id[0] == '\0')
        goto out; /* already as asked */
    if ((rc = row_write(j->a, db, &r, j->new_key, err)) == 0)
        j->changed = 1;
out:
    ut_memzero(&r, sizeof(r));
    secure_delete(db, sd);
    return rc;
}

int ahdapa_signing_key_rewrap(struct ahdapa *a, const struct gsp_wrapkey *old_key,
                              const struct gsp_wrapkey *new_key, struct ut_err *err)
{
    struct rewrap_job j = {.a = a, .old_key = old_key, .new_key = new_key};
    int rc = store_write(a->store, rewrap_job, &j, err);

    if (rc == 0 && j.changed)
        ut_log(UT_LOG_INFO, MOD, "token signing key re-wrapped",
               UT_LF_S("wrap_id", new_key ? new_key->id : "(clear)"));
    return rc;
}

/* ---- POST /api/admin/keys/signing/rotate ---- */

struct rotate_job {
    struct ahdapa *a;
    const struct ahdapa_signer *fresh, *old;
    json_int_t old_expires_ms;
    int swept;
};

static int rotate_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct rotate_job *j = arg;
    struct ahdapa *a = j->a;
    struct gsp_wrapkey w;
    struct row r;
    char *doc = NULL, *prev = NULL;
    int sd = secure_delete(db, 1), have, rc;

    memset(&r, 0, sizeof(r));
    if ((rc = have = ahdapa_wrapkey_current(a, db, &w, err)) < 0)
        goto out;
    snprintf(r.kid, sizeof(r.kid), "%s", j->fresh->kid);
    if ((r.der_len = der_of(j->fresh->key, r.der)) == 0) {
        ut_err_set(err, "cannot encode the new token signing key");
        rc = -EIO;
        goto out;
    }
    if ((rc = row_write(a, db, &r, have == 1 ? &w : NULL, err)) < 0)
        goto out;
    doc = key_doc(a, j->fresh->key, j->fresh->kid, 0);
    prev = key_doc(a, j->old->key, j->old->kid, j->old_expires_ms);
    if (doc == NULL || prev == NULL) {
        ut_err_set(err, "cannot build the signing_keys documents");
        rc = -ENOMEM;
        goto out;
    }
    /* The previous key's row also carries the expiry as its GC hint. */
    if ((rc = crdt_put(a->replica, db, "signing_keys", j->fresh->kid, doc, strlen(doc), 0, err)) <
            0 ||
        (rc = crdt_put(a->replica, db, "signing_keys", j->old->kid, prev, strlen(prev),
                       (int64_t)j->old_expires_ms, err)) < 0 ||
        (rc = sweep(a, db, err)) < 0)
        goto out;
    j->swept = rc;
    rc = 0;
out:
    free(doc);
    free(prev);
    ut_memzero(&r, sizeof(r));
    gsp_wrapkey_clear(&w);
    secure_delete(db, sd);
    return rc;
}

static void rotate(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    struct ahdapa_signer *s = NULL, *old;
    struct rotate_job j = {.a = a};
    struct ut_err err = {{0}};
    json_int_t expires = (json_int_t)time(NULL) + AHDAPA_TTL_MAX + ROTATE_SLACK_SECS;
    int locked, done = 0;

    if (!ahdapa_require_admin(a, r))
        return;
    pthread_mutex_lock(&rotate_mu);
    locked = 1;
    old = atomic_load_explicit(&a->oauth->signer, memory_order_acquire);
    if ((s = calloc(1, sizeof(*s))) == NULL || (s->key = ahdapa_p256_generate()) == NULL ||
        ahdapa_jwk_kid(a->node_id, s->key, s->kid) < 0 || strcmp(s->kid, old->kid) == 0) {
        ut_err_set(&err, "cannot generate a new P-256 key");
        goto out;
    }
    j.fresh = s;
    j.old = old;
    j.old_expires_ms = expires * 1000;
    if (store_write(a->store, rotate_job, &j, &err) < 0)
        goto out;
    /* Committed: from now on new tokens carry the new kid. The old signer
     * stays allocated (workers may hold it) and is freed at shutdown. */
    s->older = old;
    atomic_store_explicit(&a->oauth->signer, s, memory_order_release);
    pthread_mutex_unlock(&rotate_mu);
    locked = 0;
    ut_log(UT_LOG_INFO, MOD, "token signing key rotated", UT_LF_S("kid", s->kid),
           UT_LF_S("previous", old->kid), UT_LF_I("previous_expires", expires));
    if (j.swept)
        ut_log(UT_LOG_INFO, MOD, "expired signing keys removed", UT_LF_I("count", j.swept));
    http_add_header(r, "Cache-Control", "no-store");
    http_reply_json(r, 200,
                    json_pack("{s:s,s:s,s:I}", "kid", s->kid, "previous_kid", old->kid,
                              "previous_expires", expires));
    done = 1;
out:
    if (locked)
        pthread_mutex_unlock(&rotate_mu);
    if (!done) {
        ut_log(UT_LOG_ERROR, MOD, "token signing key not rotated", UT_LF_S("error", err.msg));
        http_reply_error(r, 500, "server_error", "the token signing key could not be rotated");
        if (s)
            ahdapa_pkey_free(s->key);
        free(s);
    }
}

/* ---- per-thread verification key cache ---- */

#define VCACHE_N 16

struct vkey {
    char kid[AHDAPA_KID_MAX];
    char *iss;
    EVP_PKEY *key;
    json_int_t expires_ms; /* 0: none; checked on every hit */
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
    json_t *doc;
    json_int_t exp, now_ms = (json_int_t)time(NULL) * 1000;
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
            /* a retired key expires without the generation moving */
            if (key_expired(c->k[i].expires_ms, now_ms))
                return -ENOENT;
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
    exp = json_integer_value(json_object_get(doc, "expires"));
    if (doc == NULL || !json_is_string(json_object_get(doc, "iss")) || key_expired(exp, now_ms) ||
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
    slot->expires_ms = exp;
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

        if (json_is_object(jwk) && !key_expired(exp, now_ms))
            json_array_append(keys, jwk);
        json_decref(doc);
    }
    sqlite3_reset(st);
    http_add_header(r, "Cache-Control", "public, max-age=60");
    http_reply_json(r, 200, json_pack("{s:o}", "keys", keys));
}

int ahdapa_jwks_routes(struct ahdapa *a, struct ut_err *err)
{
    int rc = http_route(a->http, HTTP_GET, "/jwks", jwks, a, err);

    if (rc < 0)
        return rc;
    return http_route(a->http, HTTP_POST, "/api/admin/keys/signing/rotate", rotate, a, err);
}
