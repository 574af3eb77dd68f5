#include "gossip/nodekey.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <sys/stat.h>
#include <string.h>
#include <time.h>

#include "util/b64.h"
#include "util/log.h"
#include "util/mem.h"

#define SECRET_BYTES (CRY_XWING_SK_BYTES + CRY_P256_PRIV_BYTES)
#define GCM_IV       12
#define GCM_TAG      16
#define SEALED_BYTES (GCM_IV + SECRET_BYTES + GCM_TAG)

_Static_assert(GCM_IV + GCM_TAG == GSP_WRAP_OVERHEAD, "seal layout");
#define KEM_ALG "X-Wing"
#define SIG_ALG "ES256"

const char gsp_nodekey_schema_sql[] =
    "CREATE TABLE node_keys ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " node_id TEXT NOT NULL,"
    " kem_alg TEXT NOT NULL,"
    " kem_public_key BLOB NOT NULL,"
    " signing_alg TEXT NOT NULL,"
    " signing_public_key BLOB NOT NULL,"
    " secret BLOB NOT NULL," /* seed||scalar in clear, or iv||ct||tag */
    " wrap_key_id TEXT,"     /* NULL: secret is in clear */
    " created_at INTEGER NOT NULL);";

void gsp_wrapkey_init(struct gsp_wrapkey *w, const uint8_t key[GSP_WRAPKEY_BYTES])
{
    static const char label[] = "node_keys wrap id";
    uint8_t md[32];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();

    memcpy(w->key, key, GSP_WRAPKEY_BYTES);
    memset(md, 0, sizeof(md));
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
        EVP_DigestUpdate(c, label, sizeof(label) - 1) &&
        EVP_DigestUpdate(c, key, GSP_WRAPKEY_BYTES))
        EVP_DigestFinal_ex(c, md, &mdlen);
    EVP_MD_CTX_free(c);
    for (int i = 0; i < GSP_WRAPKEY_ID_LEN / 2; i++)
        snprintf(w->id + 2 * i, 3, "%02x", md[i]);
}

void gsp_wrapkey_clear(struct gsp_wrapkey *w)
{
    ut_memzero(w, sizeof(*w));
}

int gsp_wrapkey_read_file(const char *path, struct gsp_wrapkey *w, struct ut_err *err)
{
    char text[128];
    uint8_t raw[96];
    size_t n = 0, rawlen = 0;
    struct stat sb;
    FILE *f = fopen(path, "re");
    const char *p;
    int rc = -EINVAL;

    if (f == NULL) {
        rc = -errno;
        ut_err_set(err, "wrapping key file %s: %s", path, strerror(errno));
        return rc;
    }
    n = fread(text, 1, sizeof(text) - 1, f);
    if (fstat(fileno(f), &sb) == 0 && (sb.st_mode & 077))
        ut_log(UT_LOG_WARN, "gossip", "wrapping key file is readable by group or others",
               UT_LF_S("path", path));
    fclose(f);
    text[n] = '\0';
    p = text + strspn(text, " \t\r\n");
    n = strcspn(p, " \t\r\n");
    if (p[n + strspn(p + n, " \t\r\n")] != '\0' || n == 0 || n > 64 ||
        ut_b64_decode(p, n, raw, &rawlen, 0) < 0 || rawlen != GSP_WRAPKEY_BYTES) {
        ut_err_set(err, "wrapping key file %s: expected base64 of exactly 32 bytes", path);
        goto out;
    }
    gsp_wrapkey_init(w, raw);
    rc = 0;
out:
    ut_memzero(text, sizeof(text));
    ut_memzero(raw, sizeof(raw));
    return rc;
}

/* AES-256 key for wrapping: HKDF-SHA256(ikm = wrapping key, info). */
static int derive(const struct gsp_wrapkey *w, const char *info, uint8_t out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kc = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM p[4];
    int rc = -EIO;

    if (kc == NULL)
        goto out;
    p[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    p[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)w->key, GSP_WRAPKEY_BYTES);
    p[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
    p[3] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kc, out, 32, p) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(kc);
    EVP_KDF_free(kdf);
    return rc;
}

int gsp_wrap_seal(const struct gsp_wrapkey *w, const char *info, const void *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *out)
{
    EVP_CIPHER_CTX *c = NULL;
    uint8_t key[32];
    int n = 0, rc = -EINVAL;

    if (in_len > GSP_WRAP_MAX || aad_len > GSP_WRAP_MAX)
        return rc;
    rc = -EIO;
    if ((c = EVP_CIPHER_CTX_new()) == NULL || derive(w, info, key) < 0)
        goto out;
    /* out = iv || ct || tag */
    if (RAND_bytes(out, GCM_IV) != 1 || !EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, out) ||
        !EVP_EncryptUpdate(c, NULL, &n, aad, (int)aad_len) ||
        !EVP_EncryptUpdate(c, out + GCM_IV, &n, in, (int)in_len) ||
        !EVP_EncryptFinal_ex(c, out + GCM_IV + n, &n) ||
        !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, GCM_TAG, out + GCM_IV + in_len))
        goto out;
    rc = 0;
out:
    ut_memzero(key, sizeof(key));
    EVP_CIPHER_CTX_free(c);
    return rc;
}

int gsp_wrap_open(const struct gsp_wrapkey *w, const char *info, const void *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *out)
{
    EVP_CIPHER_CTX *c = NULL;
    uint8_t key[32];
    size_t ctlen;
    int n = 0, rc = -EINVAL;

    if (in_len < GSP_WRAP_OVERHEAD || in_len - GSP_WRAP_OVERHEAD > GSP_WRAP_MAX ||
        aad_len > GSP_WRAP_MAX)
        return rc;
    ctlen = in_len - GSP_WRAP_OVERHEAD;
    rc = -EIO;
    if ((c = EVP_CIPHER_CTX_new()) == NULL || derive(w, info, key) < 0)
        goto out;
    if (!EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, in) ||
        !EVP_DecryptUpdate(c, NULL, &n, aad, (int)aad_len) ||
        !EVP_DecryptUpdate(c, out, &n, in + GCM_IV, (int)ctlen) ||
        !EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, GCM_TAG, (void *)(in + GCM_IV + ctlen)))
        goto out;
    if (EVP_DecryptFinal_ex(c, out + n, &n) != 1) {
        ut_memzero(out, ctlen);
        rc = -EBADMSG;
        goto out;
    }
    rc = 0;
out:
    ut_memzero(key, sizeof(key));
    EVP_CIPHER_CTX_free(c);
    return rc;
}

/* AEAD over the node secret; aad binds the node id so a row cannot be
 * moved (format unchanged since node_keys v1). */
static int gcm(int enc, const struct gsp_wrapkey *w, const char *node_id, const uint8_t *in,
               size_t inlen, uint8_t *out)
{
    static const char info[] = "node_keys v1 wrap";
    char aad[300];
    int alen = snprintf(aad, sizeof(aad), "node_keys v1|%s", node_id);

    if (alen < 0 || (size_t)alen >= sizeof(aad))
        return -EIO;
    if (enc)
        return gsp_wrap_seal(w, info, aad, (size_t)alen, in, inlen, out);
    return gsp_wrap_open(w, info, aad, (size_t)alen, in, inlen, out);
}

struct job {
    const char *node_id;
    const struct gsp_wrapkey *wrap; /* load: current key; rewrap: old key */
    const struct gsp_wrapkey *new_key;
    struct cry_identity *id; /* out */
    int created;
    int sealed_now; /* load: a clear row was sealed under wrap */
};

static int insert_new(sqlite3 *db, struct job *j, struct ut_err *err)
{
    uint8_t pk[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];
    uint8_t secret[SECRET_BYTES], sealed[SEALED_BYTES];
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = cry_identity_generate(j->node_id, &j->id, err)) < 0)
        return rc;
    cry_identity_export_secret(j->id, secret, secret + CRY_XWING_SK_BYTES);
    cry_identity_public(j->id, pk, pub);
    if (j->wrap && (rc = gcm(1, j->wrap, j->node_id, secret, SECRET_BYTES, sealed)) < 0) {
        ut_err_set(err, "node_keys: cannot seal the new keys");
        goto out;
    }
    rc = sqlite3_prepare_v2(db,
                            "INSERT INTO node_keys (id, node_id, kem_alg, kem_public_key, "
                            "signing_alg, signing_public_key, secret, wrap_key_id, created_at) "
                            "VALUES (1, ?, '" KEM_ALG "', ?, '" SIG_ALG "', ?, ?, ?, ?)",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto sqlerr;
    sqlite3_bind_text(st, 1, j->node_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, pk, sizeof(pk), SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, pub, sizeof(pub), SQLITE_STATIC);
    if (j->wrap) {
        sqlite3_bind_blob(st, 4, sealed, sizeof(sealed), SQLITE_STATIC);
        sqlite3_bind_text(st, 5, j->wrap->id, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_blob(st, 4, secret, sizeof(secret), SQLITE_STATIC);
        sqlite3_bind_null(st, 5);
    }
    sqlite3_bind_int64(st, 6, (sqlite3_int64)time(NULL));
    if ((rc = sqlite3_step(st)) != SQLITE_DONE)
        goto sqlerr;
    j->created = 1;
    rc = 0;
    goto out;
sqlerr:
    ut_err_set(err, "node_keys: %s", sqlite3_errmsg(db));
    rc = -EIO;
out:
    sqlite3_finalize(st);
    ut_memzero(secret, sizeof(secret));
    if (rc < 0) {
        cry_identity_free(j->id);
        j->id = NULL;
    }
    return rc;
}

/* Reads the row's secret in clear into secret[]; checks the wrap state. */
static int read_secret(sqlite3_stmt *st, const char *node_id, const struct gsp_wrapkey *key,
                       uint8_t secret[SECRET_BYTES], struct ut_err *err)
{
    const void *blob = sqlite3_column_blob(st, 3);
    int len = sqlite3_column_bytes(st, 3);
    const char *wid = (const char *)sqlite3_column_text(st, 4);

    if (wid == NULL) {
        if (len != SECRET_BYTES || blob == NULL) {
            ut_err_set(err, "node_keys: stored secret has %d bytes, expected %d", len,
                       SECRET_BYTES);
            return -EBADMSG;
        }
        memcpy(secret, blob, SECRET_BYTES);
        return 0;
    }
    if (key == NULL || strcmp(key->id, wid) != 0) {
        ut_err_set(err, "node_keys: the node keys are wrapped with key id %s; %s", wid,
                   key ? "a different wrapping key was given" : "no wrapping key is available");
        return -EACCES;
    }
    if (len != SEALED_BYTES || blob == NULL) {
        ut_err_set(err, "node_keys: sealed secret has %d bytes, expected %d", len, SEALED_BYTES);
        return -EBADMSG;
    }
    if (gcm(0, key, node_id, blob, SEALED_BYTES, secret) < 0) {
        ut_err_set(err, "node_keys: sealed secret does not open with key id %s (corrupt row)", wid);
        return -EBADMSG;
    }
    return 0;
}

/* Stores secret sealed under key (or in clear when key is NULL). */
static int write_secret(sqlite3 *db, const char *node_id, const uint8_t secret[SECRET_BYTES],
                        const struct gsp_wrapkey *key, struct ut_err *err)
{
    uint8_t sealed[SEALED_BYTES];
    sqlite3_stmt *up = NULL;
    int rc = -EIO;

    if (key && gcm(1, key, node_id, secret, SECRET_BYTES, sealed) < 0) {
        ut_err_set(err, "node_keys: cannot seal with key id %s", key->id);
        goto out;
    }
    if (sqlite3_prepare_v2(db, "UPDATE node_keys SET secret = ?, wrap_key_id = ? WHERE id = 1", -1,
                           &up, NULL) != SQLITE_OK)
        goto sqlerr;
    if (key) {
        sqlite3_bind_blob(up, 1, sealed, sizeof(sealed), SQLITE_STATIC);
        sqlite3_bind_text(up, 2, key->id, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_blob(up, 1, secret, SECRET_BYTES, SQLITE_STATIC);
        sqlite3_bind_null(up, 2);
    }
    if (sqlite3_step(up) != SQLITE_DONE)
        goto sqlerr;
    rc = 0;
    goto out;
sqlerr:
    ut_err_set(err, "node_keys: %s", sqlite3_errmsg(db));
out:
    sqlite3_finalize(up);
    return rc;
}

static const char select_sql[] = "SELECT node_id, kem_public_key, signing_public_key, secret, "
                                 "wrap_key_id FROM node_keys WHERE id = 1";

static int load_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct job *j = arg;
    uint8_t secret[SECRET_BYTES];
    uint8_t pk[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES];
    sqlite3_stmt *st = NULL;
    const char *stored_id;
    int rc;

    if (sqlite3_prepare_v2(db, select_sql, -1, &st, NULL) != SQLITE_OK) {
        ut_err_set(err, "node_keys: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return insert_new(db, j, err);
    }
    if (rc != SQLITE_ROW) {
        ut_err_set(err, "node_keys: %s", sqlite3_errmsg(db));
        rc = -EIO;
        goto out;
    }
    stored_id = (const char *)sqlite3_column_text(st, 0);
    if (stored_id == NULL || strcmp(stored_id, j->node_id) != 0) {
        ut_err_set(err,
                   "node_keys: this database holds the keys of node id \"%s\", but the node "
                   "id is now \"%s\" (set [gossip] node_id to the old id, or use a new "
                   "database)",
                   stored_id ? stored_id : "", j->node_id);
        rc = -EEXIST;
        goto out;
    }
    if ((rc = read_secret(st, j->node_id, j->wrap, secret, err)) < 0)
        goto out;
    rc = cry_identity_load(j->node_id, secret, secret + CRY_XWING_SK_BYTES, &j->id, err);
    if (rc < 0)
        goto out;
    /* The stored public keys must be those of the secrets (corruption). */
    cry_identity_public(j->id, pk, pub);
    if (sqlite3_column_bytes(st, 1) != (int)sizeof(pk) ||
        sqlite3_column_bytes(st, 2) != (int)sizeof(pub) ||
        memcmp(sqlite3_column_blob(st, 1), pk, sizeof(pk)) != 0 ||
        memcmp(sqlite3_column_blob(st, 2), pub, sizeof(pub)) != 0) {
        ut_err_set(err, "node_keys: stored public keys do not match the private keys");
        cry_identity_free(j->id);
        j->id = NULL;
        rc = -EBADMSG;
        goto out;
    }
    /* A row still in clear is sealed as soon as a wrapping key exists. */
    if (j->wrap && sqlite3_column_type(st, 4) == SQLITE_NULL) {
        sqlite3_reset(st);
        if ((rc = write_secret(db, j->node_id, secret, j->wrap, err)) < 0)
            goto out;
        j->sealed_now = 1;
    }
    rc = 0;
out:
    ut_memzero(secret, sizeof(secret));
    sqlite3_finalize(st);
    if (rc < 0) {
        cry_identity_free(j->id);
        j->id = NULL;
    }
    return rc;
}

int gsp_nodekey_load(struct store *s, const char *node_id, const struct gsp_wrapkey *wrap,
                     struct cry_identity **out, int *created, struct ut_err *err)
{
    struct job j = {.node_id = node_id, .wrap = wrap};
    int rc;

    *out = NULL;
    rc = store_write(s, load_job, &j, err);
    if (rc < 0) {
        cry_identity_free(j.id); /* a commit failure after a successful job */
        return rc;
    }
    if (created)
        *created = j.created;
    if (j.created)
        ut_log(UT_LOG_INFO, "gossip", "generated node keys", UT_LF_S("node_id", node_id),
               UT_LF_S("kem_alg", KEM_ALG), UT_LF_S("signing_alg", SIG_ALG));
    if (j.sealed_now)
        ut_log(UT_LOG_INFO, "gossip", "node keys sealed at rest", UT_LF_S("wrap_id", wrap->id));
    *out = j.id;
    return 0;
}

static int rewrap_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct job *j = arg;
    uint8_t secret[SECRET_BYTES];
    sqlite3_stmt *st = NULL;
    char node_id[CRY_ENV_ID_MAX + 1];
    const char *wid;
    int rc;

    if (sqlite3_prepare_v2(db, select_sql, -1, &st, NULL) != SQLITE_OK) {
        ut_err_set(err, "node_keys: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    if (sqlite3_step(st) != SQLITE_ROW) {
        ut_err_set(err, "node_keys: no keys stored yet");
        rc = -ENOENT;
        goto out;
    }
    snprintf(node_id, sizeof(node_id), "%s", (const char *)sqlite3_column_text(st, 0));
    wid = (const char *)sqlite3_column_text(st, 4);
    if ((j->new_key && wid && strcmp(wid, j->new_key->id) == 0) || (!j->new_key && !wid)) {
        rc = 0; /* already as asked */
        goto out;
    }
    if ((rc = read_secret(st, node_id, j->wrap, secret, err)) < 0)
        goto out;
    sqlite3_reset(st);
    rc = write_secret(db, node_id, secret, j->new_key, err);
out:
    ut_memzero(secret, sizeof(secret));
    sqlite3_finalize(st);
    return rc;
}

int gsp_nodekey_rewrap(struct store *s, const struct gsp_wrapkey *old_key,
                       const struct gsp_wrapkey *new_key, struct ut_err *err)
{
    struct job j = {.wrap = old_key, .new_key = new_key};
    int rc = store_write(s, rewrap_job, &j, err);

    if (rc == 0)
        ut_log(UT_LOG_INFO, "gossip", "node keys re-wrapped",
               UT_LF_S("wrap_id", new_key ? new_key->id : "(clear)"));
    return rc;
}

int gsp_nodekey_wrap_id(struct store *s, char out[GSP_WRAPKEY_ID_LEN + 1], struct ut_err *err)
{
    sqlite3 *db = store_reader(s, err);
    sqlite3_stmt *st;
    int rc;

    out[0] = '\0';
    if (db == NULL)
        return -EIO;
    st = store_stmt(s, db, "SELECT wrap_key_id FROM node_keys WHERE id = 1", err);
    if (st == NULL)
        return -EIO;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, GSP_WRAPKEY_ID_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 0));
    rc = (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : -EIO;
    sqlite3_reset(st);
    return rc;
}
