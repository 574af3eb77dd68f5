/*
 * peers.c - the peer table: configured URLs, seeded (admin-pinned) nodes
 * persisted in the node-local table gossip_peers (with the certified pins
 * of vouch.c, re-checked at load), URL resolution, peer list reloads.
 * Learned nodes are added by members.c.
 *
 * A record is one node (node_id set) or one configured URL whose node id
 * is not known yet (node_id ""). Resolution merges the two. Records are
 * heap objects, so a pointer stays valid while an exchange is in flight
 * (a record is dropped only when nothing refers to it: gsp_peer_gc_).
 */
#include "gossip/engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/nodeid.h"
#include "util/b64.h"
#include "util/log.h"

/* certification: '' for an administrator's seed, else the certification
 * a certified pin was made on (re-checked at every start). Added after the
 * first release: older tables gain the column at start (add_cert_column). */
static const char peers_sql[] = "CREATE TABLE IF NOT EXISTS gossip_peers ("
                                " node_id TEXT PRIMARY KEY NOT NULL,"
                                " url TEXT NOT NULL DEFAULT '',"
                                " kem_public_key BLOB NOT NULL,"
                                " signing_public_key BLOB NOT NULL,"
                                " seeded_ms INTEGER NOT NULL,"
                                " certification TEXT NOT NULL DEFAULT '')";

int gsp_url_norm_(const char *url, char out[GSP_URL_MAX])
{
    size_t n = url ? strnlen(url, GSP_URL_MAX) : 0;

    if (n == 0 || n >= GSP_URL_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] < 0x21 || (unsigned char)url[i] > 0x7e)
            return -EINVAL;
    while (n > 1 && url[n - 1] == '/')
        n--;
    memcpy(out, url, n);
    out[n] = '\0';
    return 0;
}

int gsp_allowed_(const struct gsp_engine *e, const char *id, int empty)
{
    if (e->n_allowed == 0)
        return empty;
    for (size_t i = 0; i < e->n_allowed; i++)
        if (strcmp(e->allowed[i], id) == 0)
            return 1;
    return 0;
}

struct gsp_peer *gsp_peer_find_(struct gsp_engine *e, const char *node_id)
{
    if (node_id == NULL || node_id[0] == '\0')
        return NULL;
    for (size_t i = 0; i < e->n_peers; i++)
        if (strcmp(e->peers[i]->node_id, node_id) == 0)
            return e->peers[i];
    return NULL;
}

struct gsp_peer *gsp_peer_find_url_(struct gsp_engine *e, const char *url)
{
    if (url == NULL || url[0] == '\0')
        return NULL;
    for (size_t i = 0; i < e->n_peers; i++)
        if (strcmp(e->peers[i]->url, url) == 0)
            return e->peers[i];
    return NULL;
}

struct gsp_peer *gsp_peer_add_(struct gsp_engine *e)
{
    struct gsp_peer *p;

    if (e->n_peers >= GSP_MAX_PEERS)
        return NULL;
    if (e->n_peers == e->cap_peers) {
        size_t cap = e->cap_peers ? e->cap_peers * 2 : 8;
        struct gsp_peer **np = realloc(e->peers, cap * sizeof(*np));

        if (np == NULL)
            return NULL;
        e->peers = np;
        e->cap_peers = cap;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    e->peers[e->n_peers++] = p;
    return p;
}

static void peer_free(struct gsp_peer *p)
{
    gsp_vv_free(&p->pvv);
    free(p);
}

static void peer_remove(struct gsp_engine *e, struct gsp_peer *p)
{
    for (size_t i = 0; i < e->n_peers; i++) {
        if (e->peers[i] == p) {
            memmove(e->peers + i, e->peers + i + 1, (e->n_peers - i - 1) * sizeof(*e->peers));
            e->n_peers--;
            break;
        }
    }
    if (p->pinned)
        cry_keystore_unpin(e->ks, p->node_id);
    peer_free(p);
}

void gsp_peer_gc_(struct gsp_engine *e, struct gsp_peer *p)
{
    if (p != NULL && p->src == 0 && !p->inflight)
        peer_remove(e, p);
}

void gsp_peers_free_(struct gsp_engine *e)
{
    for (size_t i = 0; i < e->n_peers; i++)
        peer_free(e->peers[i]);
    free(e->peers);
    e->peers = NULL;
    e->n_peers = e->cap_peers = 0;
}

int gsp_peer_pin_(struct gsp_engine *e, struct gsp_peer *p, const uint8_t *kem,
                  const uint8_t *sig_pub, struct ut_err *err)
{
    int changed = p->pinned && (memcmp(p->kem_pk, kem, CRY_XWING_PK_BYTES) != 0 ||
                                memcmp(p->sig_pub, sig_pub, CRY_P256_PUB_BYTES) != 0);
    int rc = cry_keystore_pin(e->ks, p->node_id, kem, sig_pub, err);

    if (rc < 0)
        return rc;
    memcpy(p->kem_pk, kem, CRY_XWING_PK_BYTES);
    memcpy(p->sig_pub, sig_pub, CRY_P256_PUB_BYTES);
    p->pinned = 1;
    p->nokey_logged = 0;
    if (changed) /* sessions were keyed to the old keys */
        cry_env_session_drop(e->env, p->node_id);
    return 0;
}

/* ---- gossip_peers ---- */

/* Adds the certification column to a table made by an earlier version. */
static int add_cert_column(sqlite3 *db, struct ut_err *err)
{
    sqlite3_stmt *st = NULL;
    int has = 0;

    if (sqlite3_prepare_v2(db, "PRAGMA table_info(gossip_peers)", -1, &st, NULL) != SQLITE_OK) {
        ut_err_set(err, "gossip_peers: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(sqlite3_errcode(db));
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);

        has |= name != NULL && strcmp(name, "certification") == 0;
    }
    sqlite3_finalize(st);
    if (has)
        return 0;
    if (sqlite3_exec(db,
                     "ALTER TABLE gossip_peers ADD COLUMN certification TEXT NOT NULL DEFAULT ''",
                     NULL, NULL, NULL) != SQLITE_OK) {
        ut_err_set(err, "gossip_peers: adding the certification column: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(sqlite3_errcode(db));
    }
    return 0;
}

static int create_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    (void)arg;
    if (sqlite3_exec(db, peers_sql, NULL, NULL, NULL) != SQLITE_OK) {
        ut_err_set(err, "gossip_peers: %s", sqlite3_errmsg(db));
        return store_sqlite_errno(sqlite3_errcode(db));
    }
    return add_cert_column(db, err);
}

struct persist_ctx {
    struct gsp_engine *e;
    const char *node_id, *url;
    const uint8_t *kem, *sig;
    const char *cert; /* NULL: a seed */
    uint64_t now;
};

static int persist_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct persist_ctx *c = arg;
    /* A seed replaces any row; a certified pin never replaces a seed. */
    sqlite3_stmt *st =
        store_stmt(c->e->store, db,
                   "INSERT INTO gossip_peers(node_id, url, kem_public_key,"
                   " signing_public_key, seeded_ms, certification)"
                   " VALUES(?1, ?2, ?3, ?4, ?5, ?6)"
                   " ON CONFLICT(node_id) DO UPDATE SET"
                   " url = CASE WHEN excluded.url = '' THEN url ELSE excluded.url END,"
                   " kem_public_key = excluded.kem_public_key,"
                   " signing_public_key = excluded.signing_public_key,"
                   " seeded_ms = excluded.seeded_ms,"
                   " certification = excluded.certification"
                   " WHERE excluded.certification = '' OR gossip_peers.certification <> ''",
                   err);
    int rc;

    if (st == NULL)
        return -EIO;
    sqlite3_bind_text(st, 1, c->node_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->url ? c->url : "", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, c->kem, CRY_XWING_PK_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, c->sig, CRY_P256_PUB_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)c->now);
    sqlite3_bind_text(st, 6, c->cert ? c->cert : "", -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "gossip_peers: storing \"%s\": %s", c->node_id, sqlite3_errmsg(db));
        return store_sqlite_errno(rc);
    }
    return 0;
}

int gsp_peers_persist_(struct gsp_engine *e, const char *node_id, const char *url,
                       const uint8_t *kem, const uint8_t *sig_pub, const char *cert,
                       struct ut_err *err)
{
    struct persist_ctx c = {e,          node_id, url, kem, sig_pub, cert && cert[0] ? cert : NULL,
                            gsp_now_(e)};

    if (cert != NULL && cert[0] == '\0') {
        ut_err_set(err, "gossip_peers: a certified pin of \"%s\" without its certification",
                   node_id);
        return -EINVAL;
    }

    return store_write(e->store, persist_job, &c, err);
}

int gsp_peers_load_(struct gsp_engine *e, struct ut_err *err)
{
    sqlite3_stmt *st;
    sqlite3 *db;
    int rc, oom = 0;

    rc = store_write(e->store, create_job, NULL, err);
    if (rc < 0)
        return rc;
    db = store_reader(e->store, err);
    if (db == NULL)
        return -EIO;
    st = store_stmt(e->store, db,
                    "SELECT node_id, url, kem_public_key, signing_public_key, certification"
                    " FROM gossip_peers ORDER BY node_id",
                    err);
    if (st == NULL)
        return -EIO;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *url = (const char *)sqlite3_column_text(st, 1);
        const void *kem = sqlite3_column_blob(st, 2);
        const void *sig = sqlite3_column_blob(st, 3);
        const char *cert = (const char *)sqlite3_column_text(st, 4);
        struct ut_err perr = {{0}};
        struct gsp_peer *p;

        if (id == NULL || gsp_node_id_valid(id) < 0 || strcmp(id, e->self_id) == 0 || kem == NULL ||
            sqlite3_column_bytes(st, 2) != CRY_XWING_PK_BYTES || sig == NULL ||
            sqlite3_column_bytes(st, 3) != CRY_P256_PUB_BYTES) {
            ut_log(UT_LOG_WARN, e->log_module, "gossip_peers: ignoring a malformed row",
                   UT_LF_S("node_id", id ? id : ""));
            continue;
        }
        if (!gsp_allowed_(e, id, 1)) {
            ut_log(UT_LOG_WARN, e->log_module, "seeded peer not in allowed_node_ids; not trusted",
                   UT_LF_S("peer", id));
            continue;
        }
        /* A certified pin holds only while its certification verifies
         * (the cluster's CA may have changed since). */
        if (cert != NULL && cert[0] && gsp_vouch_check_(e, id, kem, sig, cert, &perr) < 0) {
            ut_log(UT_LOG_WARN, e->log_module,
                   "gossip_peers: stored certification no longer verifies; not trusted",
                   UT_LF_S("peer", id), UT_LF_S("reason", perr.msg));
            continue;
        }
        p = gsp_peer_add_(e);
        if (p == NULL) {
            oom = 1;
            break;
        }
        snprintf(p->node_id, sizeof(p->node_id), "%s", id);
        if (url != NULL && url[0])
            gsp_url_norm_(url, p->url);
        p->src = cert != NULL && cert[0] ? PEER_CERTIFIED : PEER_SEEDED;
        if (gsp_peer_pin_(e, p, kem, sig, &perr) < 0) {
            ut_log(UT_LOG_WARN, e->log_module, "gossip_peers: cannot pin stored keys",
                   UT_LF_S("peer", id), UT_LF_S("error", perr.msg));
            p->src = 0;
            gsp_peer_gc_(e, p);
        }
    }
    sqlite3_reset(st);
    if (oom) {
        ut_err_set(err, "gossip_peers: out of memory");
        return -ENOMEM;
    }
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "gossip_peers: reading: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    return 0;
}

/* Marks url configured: on the record already using it, else a new
 * unresolved record. Caller holds mu (or runs before the engine is
 * shared). */
static int configure_one(struct gsp_engine *e, const char *raw, struct ut_err *err)
{
    char url[GSP_URL_MAX];
    struct gsp_peer *p;

    if (gsp_url_norm_(raw, url) < 0) {
        ut_err_set(err, "gossip: peer URL \"%.80s\" is not usable", raw ? raw : "(null)");
        return -EINVAL;
    }
    if (e->self_url[0] && strcmp(url, e->self_url) == 0)
        return 0; /* our own URL in a shared peers list */
    p = gsp_peer_find_url_(e, url);
    if (p == NULL) {
        p = gsp_peer_add_(e);
        if (p == NULL) {
            ut_err_set(err, "gossip: peer table full");
            return -E2BIG;
        }
        snprintf(p->url, sizeof(p->url), "%s", url);
    }
    p->src |= PEER_CONFIGURED;
    return 0;
}

int gsp_peers_configure_(struct gsp_engine *e, const char *const *urls, size_t n,
                         struct ut_err *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = configure_one(e, urls[i], err);

        if (rc < 0)
            return rc;
    }
    return 0;
}

int gsp_engine_set_peers(struct gsp_engine *e, const char *const *urls, size_t n,
                         struct ut_err *err)
{
    char norm[GSP_URL_MAX];
    int rc = 0;

    if (n > 0 && urls == NULL) {
        ut_err_set(err, "gossip: peer list is NULL");
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (gsp_url_norm_(urls[i], norm) < 0) {
            ut_err_set(err, "gossip: peer URL \"%.80s\" is not usable",
                       urls[i] ? urls[i] : "(null)");
            return -EINVAL;
        }
    }
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n_peers; i++) {
        struct gsp_peer *p = e->peers[i];
        int keep = 0;

        for (size_t k = 0; k < n && !keep; k++)
            keep = gsp_url_norm_(urls[k], norm) == 0 && strcmp(norm, p->url) == 0;
        if (!keep)
            p->src &= ~(unsigned)PEER_CONFIGURED;
    }
    rc = gsp_peers_configure_(e, urls, n, err);
    for (size_t i = e->n_peers; i-- > 0;)
        gsp_peer_gc_(e, e->peers[i]);
    pthread_mutex_unlock(&e->mu);
    gsp_wake_(e);
    return rc;
}

/* Moves what `from` knows into `to` and drops `from` (both resolved to
 * the same node). Caller holds mu. */
static void merge_into(struct gsp_engine *e, struct gsp_peer *to, struct gsp_peer *from)
{
    to->src |= from->src;
    if (from->url[0] && ((from->src & PEER_CONFIGURED) || to->url[0] == '\0'))
        snprintf(to->url, sizeof(to->url), "%s", from->url);
    from->src = 0;
    from->pinned = 0; /* never pinned: it had no node id */
    gsp_peer_gc_(e, from);
}

int gsp_engine_resolve_url(struct gsp_engine *e, const char *url, const char *node_id,
                           struct ut_err *err)
{
    char norm[GSP_URL_MAX];
    struct gsp_peer *pu, *pi;
    int rc = 0;

    if (gsp_url_norm_(url, norm) < 0 || node_id == NULL || gsp_node_id_valid(node_id) < 0) {
        ut_err_set(err, "gossip: cannot resolve \"%.80s\" to \"%.80s\"", url ? url : "(null)",
                   node_id ? node_id : "(null)");
        return -EINVAL;
    }
    pthread_mutex_lock(&e->mu);
    pu = gsp_peer_find_url_(e, norm);
    pi = gsp_peer_find_(e, node_id);
    if (pu == NULL) {
        ut_err_set(err, "gossip: \"%s\" is not a configured peer URL", norm);
        rc = -ENOENT;
    } else if (pu == pi) {
        /* already known */
    } else if (pu->node_id[0] == '\0') {
        if (pi != NULL)
            merge_into(e, pi, pu);
        else
            snprintf(pu->node_id, sizeof(pu->node_id), "%s", node_id);
    } else if (pu->src & PEER_CONFIGURED) {
        /* The URL now answers with another id (node replaced): the
         * configuration follows the URL; the old record keeps its pins. */
        struct gsp_peer *np = pi ? pi : gsp_peer_add_(e);

        if (np == NULL) {
            rc = -E2BIG;
        } else {
            if (pi == NULL)
                snprintf(np->node_id, sizeof(np->node_id), "%s", node_id);
            snprintf(np->url, sizeof(np->url), "%s", norm);
            np->src |= PEER_CONFIGURED;
            pu->src &= ~(unsigned)PEER_CONFIGURED;
            pu->url[0] = '\0';
            gsp_peer_gc_(e, pu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (rc == 0)
        gsp_wake_(e);
    return rc;
}

/* ---- seeding ---- */

int gsp_engine_seed(struct gsp_engine *e, const char *kem_info_json, size_t len, const char *url,
                    struct ut_err *err)
{
    uint8_t kem[CRY_XWING_PK_BYTES], sig[CRY_P256_PUB_BYTES];
    char norm[GSP_URL_MAX] = "", id[CRY_ENV_ID_MAX + 1];
    const char *s, *ka, *sa;
    struct gsp_peer *p, *pu;
    json_t *j = NULL;
    int rc = -EINVAL;

    if (kem_info_json == NULL || len == 0 || len > GSP_KEM_INFO_MAX) {
        ut_err_set(err, "seed: kem-info document of %zu bytes", len);
        return -EINVAL;
    }
    j = json_loadb(kem_info_json, len, JSON_REJECT_DUPLICATES, NULL);
    s = json_string_value(json_object_get(j, "node_id"));
    ka = json_string_value(json_object_get(j, "kem_alg"));
    sa = json_string_value(json_object_get(j, "signing_alg"));
    if (!json_is_object(j) || s == NULL || gsp_node_id_valid(s) < 0) {
        ut_err_set(err, "seed: the kem-info document has no valid \"node_id\"");
        goto out;
    }
    snprintf(id, sizeof(id), "%s", s);
    if (ka == NULL || strcmp(ka, "X-Wing") != 0 || sa == NULL || strcmp(sa, "ES256") != 0) {
        ut_err_set(err, "seed \"%s\": kem_alg must be \"X-Wing\" and signing_alg \"ES256\"", id);
        goto out;
    }
    if (gsp_json_b64_(j, "kem_public_key", kem, sizeof(kem)) < 0 ||
        gsp_json_b64_(j, "signing_public_key", sig, sizeof(sig)) < 0) {
        ut_err_set(err,
                   "seed \"%s\": kem_public_key must be base64url of %d bytes and "
                   "signing_public_key of %d bytes",
                   id, CRY_XWING_PK_BYTES, CRY_P256_PUB_BYTES);
        goto out;
    }
    if (strcmp(id, e->self_id) == 0) {
        ut_err_set(err, "seed \"%s\": that is this node's own id", id);
        goto out;
    }
    if (!gsp_allowed_(e, id, 1)) {
        ut_err_set(err, "seed \"%s\": not listed in allowed_node_ids", id);
        rc = -EPERM;
        goto out;
    }
    if (url != NULL && url[0] && gsp_url_norm_(url, norm) < 0) {
        ut_err_set(err, "seed \"%s\": url \"%.80s\" is not usable", id, url);
        goto out;
    }
    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, id);
    pu = norm[0] ? gsp_peer_find_url_(e, norm) : NULL;
    if (p == NULL && pu != NULL && pu->node_id[0] == '\0') {
        p = pu; /* the configured URL of this very node */
        snprintf(p->node_id, sizeof(p->node_id), "%s", id);
    } else if (p != NULL && pu != NULL && pu != p && pu->node_id[0] == '\0') {
        merge_into(e, p, pu);
    }
    if (p == NULL && (p = gsp_peer_add_(e)) != NULL)
        snprintf(p->node_id, sizeof(p->node_id), "%s", id);
    if (p == NULL) {
        pthread_mutex_unlock(&e->mu);
        ut_err_set(err, "seed \"%s\": peer table full", id);
        rc = -E2BIG;
        goto out;
    }
    rc = gsp_peer_pin_(e, p, kem, sig, err);
    if (rc == 0) {
        p->src |= PEER_SEEDED;
        if (norm[0])
            snprintf(p->url, sizeof(p->url), "%s", norm);
        p->next_round_ms = 0; /* contact it at once */
        p->backoff_until_ms = 0;
        p->backoff_ms = 0;
    } else {
        gsp_peer_gc_(e, p);
        rc = -EINVAL;
    }
    pthread_mutex_unlock(&e->mu);
    if (rc < 0)
        goto out;
    rc = gsp_peers_persist_(e, id, norm, kem, sig, NULL, err);
    if (rc < 0)
        goto out;
    ut_log(UT_LOG_INFO, e->log_module, "peer seeded", UT_LF_S("peer", id), UT_LF_S("url", norm));
    gsp_wake_(e);
out:
    json_decref(j);
    return rc;
}
