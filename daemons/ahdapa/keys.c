/*
 * The session key ring at rest and PUT /api/admin/keys/cluster.
 *
 * Node-local table auth_keys (migration 3): name "local" (random, made on
 * first start) and "cluster" (set by an admin). Raw keys never leave this
 * table: only the cluster key's id goes into the replicated cluster_keys
 * table. Setting the cluster key also re-seals this node's gossip keys and
 * its token signing key under it, in the same transaction (nested
 * store_writes).
 */
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ahdapa.h"
#include "gossip/nodekey.h"
#include "util/b64.h"
#include "util/log.h"
#include "util/mem.h"

#define MOD "auth"

static const char select_sql[] = "SELECT key FROM auth_keys WHERE name = ?1";
static const char upsert_sql[] =
    "INSERT INTO auth_keys (name, key, key_id, set_at) VALUES (?1, ?2, ?3, ?4) "
    "ON CONFLICT(name) DO UPDATE SET key = excluded.key, key_id = excluded.key_id, "
    "set_at = excluded.set_at";

/* 1 and raw filled when the row exists, 0 when not, negative on error.
 * db: a write job's connection, or NULL for this thread's reader. */
static int read_key(struct store *s, sqlite3 *db, const char *name, uint8_t raw[AHD_KEY_BYTES],
                    struct ut_err *err)
{
    sqlite3_stmt *st;
    int rc;

    if (db == NULL)
        db = store_reader(s, err);
    st = db ? store_stmt(s, db, select_sql, err) : NULL;
    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = 0;
    } else if (rc != SQLITE_ROW) {
        ut_err_set(err, "auth_keys: %s", sqlite3_errmsg(db));
        rc = store_sqlite_errno(rc);
    } else if (sqlite3_column_bytes(st, 0) != AHD_KEY_BYTES) {
        ut_err_set(err, "auth_keys: key '%s' is not %d bytes", name, AHD_KEY_BYTES);
        rc = -EBADMSG;
    } else {
        memcpy(raw, sqlite3_column_blob(st, 0), AHD_KEY_BYTES);
        rc = 1;
    }
    sqlite3_reset(st);
    return rc;
}

struct put_job {
    struct ahdapa *a;
    const char *name;
    const uint8_t *raw;
    const char *key_id;
    const struct gsp_wrapkey *old_wrap, *new_wrap; /* cluster only */
};

static int put_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct put_job *j = arg;
    sqlite3_stmt *st = store_stmt(j->a->store, db, upsert_sql, err);
    char doc[128];
    int64_t now = (int64_t)time(NULL);
    int rc;

    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, j->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, j->raw, AHD_KEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, j->key_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "auth_keys: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(rc);
    }
    if (j->new_wrap == NULL)
        return 0;
    snprintf(doc, sizeof(doc), "{\"key_id\":\"%s\",\"set_at\":%lld}", j->key_id, (long long)now);
    if ((rc = crdt_put(j->a->replica, db, "cluster_keys", j->key_id, doc, strlen(doc), 0, err)) < 0)
        return rc;
    /* Nested: run in this transaction, so the key, the node keys and the
     * token signing key move together (or not at all). */
    if ((rc = gsp_nodekey_rewrap(j->a->store, j->old_wrap, j->new_wrap, err)) < 0)
        return rc;
    return ahdapa_signing_key_rewrap(j->a, j->old_wrap, j->new_wrap, err);
}

int ahdapa_auth_wrapkey(struct store *s, struct gsp_wrapkey *out)
{
    uint8_t raw[AHD_KEY_BYTES];
    struct ut_err err = {{0}};
    int rc = read_key(s, NULL, "cluster", raw, &err);

    memset(out, 0, sizeof(*out));
    if (rc < 0)
        ut_log(UT_LOG_ERROR, MOD, "cannot read the cluster key", UT_LF_S("error", err.msg));
    if (rc == 1)
        gsp_wrapkey_init(out, raw);
    ut_memzero(raw, sizeof(raw));
    return rc;
}

int ahdapa_wrapkey_current(struct ahdapa *a, sqlite3 *db, struct gsp_wrapkey *w, struct ut_err *err)
{
    uint8_t raw[AHD_KEY_BYTES];
    int rc = read_key(a->store, db, "cluster", raw, err);

    memset(w, 0, sizeof(*w));
    if (rc == 1)
        gsp_wrapkey_init(w, raw);
    ut_memzero(raw, sizeof(raw));
    if (rc != 0)
        return rc;
    if (a->cfg->gossip.wrapping_key_file == NULL)
        return 0;
    if ((rc = gsp_wrapkey_read_file(a->cfg->gossip.wrapping_key_file, w, err)) < 0)
        return rc;
    return 1;
}

int ahd_keys_load(struct ahdapa *a, struct ahd_key *local, struct ahd_key *cluster,
                  struct ut_err *err)
{
    uint8_t raw[AHD_KEY_BYTES];
    int rc;

    if ((rc = read_key(a->store, NULL, "local", raw, err)) == 0) {
        struct ahd_key k;
        struct put_job j = {.a = a, .name = "local", .raw = raw};

        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            ut_err_set(err, "auth: no randomness for the node-local session key");
            rc = -EIO;
            goto out;
        }
        ahd_key_init(&k, raw);
        j.key_id = k.kid_hex;
        rc = store_write(a->store, put_job, &j, err);
        ahd_key_clear(&k);
    }
    if (rc < 0)
        goto out;
    ahd_key_init(local, raw);
    if ((rc = read_key(a->store, NULL, "cluster", raw, err)) < 0)
        goto out;
    if (rc == 1)
        ahd_key_init(cluster, raw);
    rc = 0;
out:
    ut_memzero(raw, sizeof(raw));
    return rc;
}

/* The key the node keys are sealed with now: NULL (clear), the stored
 * cluster key or the [gossip] wrapping_key_file key, by id. */
static int current_wrap(struct ahdapa *a, struct gsp_wrapkey *w, const struct gsp_wrapkey **cur,
                        struct ut_err *err)
{
    char id[GSP_WRAPKEY_ID_LEN + 1];
    int rc;

    *cur = NULL;
    if ((rc = gsp_nodekey_wrap_id(a->store, id, err)) < 0)
        return rc;
    if (id[0] == '\0')
        return 0;
    if (ahdapa_auth_wrapkey(a->store, w) == 1 && strcmp(w->id, id) == 0) {
        *cur = w;
        return 0;
    }
    gsp_wrapkey_clear(w);
    if (a->cfg->gossip.wrapping_key_file &&
        gsp_wrapkey_read_file(a->cfg->gossip.wrapping_key_file, w, err) == 0 &&
        strcmp(w->id, id) == 0) {
        *cur = w;
        return 0;
    }
    ut_err_set(err, "node keys are sealed under key %s, which this node does not hold", id);
    return -EACCES;
}

static int parse_key(struct http_req *r, uint8_t raw[AHD_KEY_BYTES])
{
    const char *ct = http_req_header(r, "Content-Type");
    const unsigned char *body;
    uint8_t buf[64];
    size_t len, n = 0;
    struct ut_err err = {{0}};
    json_t *j;
    const char *k;
    int rc = -1;

    if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0) {
        http_reply_error(r, 415, "invalid_request", "Content-Type must be application/json");
        return -1;
    }
    body = http_req_body(r, &len);
    if (len > 4096) {
        http_reply_error(r, 413, "invalid_request", "body larger than 4096 bytes");
        return -1;
    }
    if ((j = http_parse_json(body, len, &err)) == NULL) {
        http_reply_error(r, 400, "invalid_request", err.msg);
        return -1;
    }
    k = json_string_value(json_object_get(j, "key"));
    if (k == NULL || strlen(k) > 64 || ut_b64_decode(k, strlen(k), buf, &n, 0) < 0 ||
        n != AHD_KEY_BYTES) {
        http_reply_error(r, 400, "invalid_request",
                         "\"key\" must be the standard base64 of exactly 32 bytes");
        goto out;
    }
    memcpy(raw, buf, AHD_KEY_BYTES);
    rc = 0;
out:
    ut_memzero(buf, sizeof(buf));
    json_decref(j);
    return rc;
}

static void put_cluster(struct http_req *r, void *arg)
{
    struct ahdapa *a = arg;
    uint8_t raw[AHD_KEY_BYTES];
    struct gsp_wrapkey neww, oldw;
    struct ahd_key k;
    struct ut_err err = {{0}};
    struct put_job j = {.a = a, .name = "cluster", .raw = raw, .new_wrap = &neww};

    memset(&oldw, 0, sizeof(oldw));
    memset(&neww, 0, sizeof(neww));
    memset(&k, 0, sizeof(k));
    if (!ahdapa_require_admin(a, r) || parse_key(r, raw) < 0)
        goto out;
    ahd_key_init(&k, raw);
    gsp_wrapkey_init(&neww, raw);
    j.key_id = k.kid_hex;
    if (current_wrap(a, &oldw, &j.old_wrap, &err) < 0 ||
        store_write(a->store, put_job, &j, &err) < 0) {
        ut_log(UT_LOG_ERROR, MOD, "cluster key not set", UT_LF_S("error", err.msg));
        http_reply_error(r, 500, "server_error", "the cluster key could not be stored");
        goto out;
    }
    ahd_auth_set_cluster_key(a, &k);
    ut_log(UT_LOG_INFO, MOD, "cluster key set", UT_LF_S("key_id", k.kid_hex));
    http_reply_json(r, 200, json_pack("{s:s}", "key_id", k.kid_hex));
out:
    ut_memzero(raw, sizeof(raw));
    ahd_key_clear(&k);
    gsp_wrapkey_clear(&neww);
    gsp_wrapkey_clear(&oldw);
}

int ahd_keys_routes(struct ahdapa *a, struct ut_err *err)
{
    return http_route(a->http, HTTP_PUT, "/api/admin/keys/cluster", put_cluster, a, err);
}
