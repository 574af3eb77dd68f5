/*
 * members.c - signed cluster_nodes entries: canonical bytes, signing,
 * parsing and the acceptance rule (members.h).
 */
#include "gossip/members.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/sign.h"
#include "gossip/engine_int.h"
#include "gossip/nodeid.h"
#include "util/b64.h"
#include "util/buf.h"
#include "util/log.h"

#define KEM_ALG "X-Wing"
#define SIG_ALG "ES256"

static int put_str(struct ut_buf *b, const char *s)
{
    size_t n = strlen(s);
    uint8_t len[2] = {(uint8_t)(n >> 8), (uint8_t)n};

    if (n > 0xffff || ut_buf_append(b, len, 2) < 0 || ut_buf_append(b, s, n) < 0)
        return -E2BIG;
    return 0;
}

/* The canonical bytes both signatures cover (members.h). */
static int canonical(const char *node_id, const char *url, const uint8_t *kem_pk,
                     const uint8_t *sig_pub, uint64_t ts, struct ut_buf *b)
{
    uint8_t t[8];

    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(ts >> (56 - 8 * i));
    if (put_str(b, node_id) < 0 || put_str(b, url) < 0 || put_str(b, KEM_ALG) < 0 ||
        ut_buf_append(b, kem_pk, CRY_XWING_PK_BYTES) < 0 || put_str(b, SIG_ALG) < 0 ||
        ut_buf_append(b, sig_pub, CRY_P256_PUB_BYTES) < 0 || ut_buf_append(b, t, 8) < 0)
        return -E2BIG;
    return 0;
}

static void b64(const uint8_t *p, size_t n, char *out)
{
    ut_b64_encode(p, n, out, 1);
}

int gsp_member_make(const struct cry_identity *id, const struct cry_identity *prev, const char *url,
                    uint64_t ts, const char *cert, char **json, size_t *len, struct ut_err *err)
{
    uint8_t kem_pk[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES], sig[CRY_P256_SIG_BYTES];
    uint8_t ppub[CRY_P256_PUB_BYTES], psig[CRY_P256_SIG_BYTES];
    char kem64[((CRY_XWING_PK_BYTES + 2) / 3) * 4 + 1], pub64[96], sig64[96];
    char ppub64[96], psig64[96];
    struct ut_buf b;
    json_t *j = NULL;
    int rc;

    *json = NULL;
    *len = 0;
    if (url == NULL)
        url = "";
    if (strlen(url) >= GSP_URL_MAX) {
        ut_err_set(err, "cluster_nodes entry: url longer than %d bytes", GSP_URL_MAX - 1);
        return -EINVAL;
    }
    if (cert != NULL && cert[0] && !gsp_vouch_valid_(cert)) {
        ut_err_set(err, "cluster_nodes entry: the certification is not a usable string");
        return -EINVAL;
    }
    ut_buf_init(&b, 4096);
    cry_identity_public(id, kem_pk, pub);
    rc = canonical(cry_identity_node_id(id), url, kem_pk, pub, ts, &b);
    if (rc == 0)
        rc = cry_sign(id, GSP_MEMBER_SIG_CTX, (const uint8_t *)b.data, b.len, sig);
    if (rc == 0 && prev != NULL) {
        cry_identity_public(prev, NULL, ppub);
        rc = cry_sign(prev, GSP_MEMBER_ROT_CTX, (const uint8_t *)b.data, b.len, psig);
    }
    if (rc < 0) {
        ut_err_set(err, "cluster_nodes entry: signing failed (%d)", rc);
        goto out;
    }
    b64(kem_pk, sizeof(kem_pk), kem64);
    b64(pub, sizeof(pub), pub64);
    b64(sig, sizeof(sig), sig64);
    j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s}", "node_id", cry_identity_node_id(id),
                  "url", url, "kem_alg", KEM_ALG, "kem_public_key", kem64, "signing_alg", SIG_ALG,
                  "signing_public_key", pub64, "ts", (json_int_t)ts, "sig", sig64);
    if (j != NULL && prev != NULL) {
        b64(ppub, sizeof(ppub), ppub64);
        b64(psig, sizeof(psig), psig64);
        if (json_object_set_new(j, "prev_signing_public_key", json_string(ppub64)) < 0 ||
            json_object_set_new(j, "prev_sig", json_string(psig64)) < 0) {
            json_decref(j);
            j = NULL;
        }
    }
    if (j != NULL && cert != NULL && cert[0] &&
        json_object_set_new(j, "certification", json_string(cert)) < 0) {
        json_decref(j);
        j = NULL;
    }
    *json = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (*json == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    *len = strlen(*json);
out:
    json_decref(j);
    ut_buf_free(&b);
    return rc;
}

int gsp_json_b64_(json_t *o, const char *name, uint8_t *out, size_t n)
{
    const char *s = json_string_value(json_object_get(o, name));
    uint8_t tmp[CRY_XWING_PK_BYTES + 8];
    size_t sl, got = 0;

    if (s == NULL)
        return -EINVAL;
    sl = strlen(s);
    if (sl > ((sizeof(tmp) - 3) / 3) * 4 || ut_b64_decode(s, sl, tmp, &got, 1) < 0 || got != n)
        return -EINVAL;
    memcpy(out, tmp, n);
    return 0;
}

int gsp_member_parse(const uint8_t *value, size_t len, struct gsp_member *m, struct ut_err *err)
{
    json_t *j = NULL, *ts;
    const char *id, *url, *ka, *sa;
    struct ut_buf b;
    int rc = -EINVAL;

    memset(m, 0, sizeof(*m));
    ut_buf_init(&b, 4096);
    if (value == NULL || len == 0 || len > GSP_MEMBER_MAX) {
        ut_err_set(err, "cluster_nodes entry: %zu bytes", len);
        goto out;
    }
    j = json_loadb((const char *)value, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        ut_err_set(err, "cluster_nodes entry: not a JSON object");
        goto out;
    }
    id = json_string_value(json_object_get(j, "node_id"));
    url = json_string_value(json_object_get(j, "url"));
    ka = json_string_value(json_object_get(j, "kem_alg"));
    sa = json_string_value(json_object_get(j, "signing_alg"));
    ts = json_object_get(j, "ts");
    if (id == NULL || gsp_node_id_valid(id) < 0) {
        ut_err_set(err, "cluster_nodes entry: bad node_id");
        goto out;
    }
    if (url == NULL || strlen(url) >= GSP_URL_MAX || ka == NULL || strcmp(ka, KEM_ALG) != 0 ||
        sa == NULL || strcmp(sa, SIG_ALG) != 0 || !json_is_integer(ts) ||
        json_integer_value(ts) < 0) {
        ut_err_set(err, "cluster_nodes entry for \"%s\": bad url, algorithm or ts", id);
        goto out;
    }
    strcpy(m->node_id, id);
    strcpy(m->url, url);
    m->ts = (uint64_t)json_integer_value(ts);
    if (gsp_json_b64_(j, "kem_public_key", m->kem_pk, CRY_XWING_PK_BYTES) < 0 ||
        gsp_json_b64_(j, "signing_public_key", m->sig_pub, CRY_P256_PUB_BYTES) < 0 ||
        gsp_json_b64_(j, "sig", m->sig, CRY_P256_SIG_BYTES) < 0) {
        ut_err_set(err, "cluster_nodes entry for \"%s\": bad key or signature encoding", id);
        goto out;
    }
    if (json_object_get(j, "prev_signing_public_key") || json_object_get(j, "prev_sig")) {
        if (gsp_json_b64_(j, "prev_signing_public_key", m->prev_pub, CRY_P256_PUB_BYTES) < 0 ||
            gsp_json_b64_(j, "prev_sig", m->prev_sig, CRY_P256_SIG_BYTES) < 0) {
            ut_err_set(err, "cluster_nodes entry for \"%s\": bad rotation fields", id);
            goto out;
        }
        m->has_prev = 1;
    }
    if (json_object_get(j, "certification") != NULL) {
        const char *c = json_string_value(json_object_get(j, "certification"));

        if (c == NULL || !gsp_vouch_valid_(c)) {
            ut_err_set(err, "cluster_nodes entry for \"%s\": bad certification", id);
            goto out;
        }
        strcpy(m->cert, c);
    }
    if (canonical(m->node_id, m->url, m->kem_pk, m->sig_pub, m->ts, &b) < 0)
        goto out;
    if (cry_verify(m->sig_pub, GSP_MEMBER_SIG_CTX, (const uint8_t *)b.data, b.len, m->sig) != 0) {
        ut_err_set(err, "cluster_nodes entry for \"%s\": signature does not verify", id);
        rc = -EPERM;
        goto out;
    }
    if (m->has_prev && cry_verify(m->prev_pub, GSP_MEMBER_ROT_CTX, (const uint8_t *)b.data, b.len,
                                  m->prev_sig) != 0) {
        ut_err_set(err, "cluster_nodes entry for \"%s\": rotation signature does not verify", id);
        rc = -EPERM;
        goto out;
    }
    rc = 0;
out:
    json_decref(j);
    ut_buf_free(&b);
    return rc;
}

int gsp_member_check(const struct gsp_member *m, const uint8_t known_pub[CRY_P256_PUB_BYTES],
                     struct ut_err *err)
{
    if (known_pub == NULL || memcmp(known_pub, m->sig_pub, CRY_P256_PUB_BYTES) == 0)
        return 0;
    if (m->has_prev && memcmp(known_pub, m->prev_pub, CRY_P256_PUB_BYTES) == 0)
        return 0;
    ut_err_set(err,
               "cluster_nodes entry for \"%s\" is not signed by the key this node knows for it",
               m->node_id);
    return -EPERM;
}

/* ---- the engine's side: the member map, validation, adoption ---- */

struct gsp_member *gsp_member_find_(struct gsp_engine *e, const char *node_id)
{
    for (size_t i = 0; i < e->n_members; i++)
        if (strcmp(e->members[i].node_id, node_id) == 0)
            return &e->members[i];
    return NULL;
}

int gsp_member_store_(struct gsp_engine *e, const struct gsp_member *m)
{
    struct gsp_member *have = gsp_member_find_(e, m->node_id);

    if (have != NULL) {
        *have = *m;
        return 0;
    }
    if (e->n_members >= GSP_MAX_PEERS)
        return -E2BIG;
    if (e->n_members == e->cap_members) {
        size_t cap = e->cap_members ? e->cap_members * 2 : 8;
        struct gsp_member *nm = realloc(e->members, cap * sizeof(*nm));

        if (nm == NULL)
            return -ENOMEM;
        e->members = nm;
        e->cap_members = cap;
    }
    e->members[e->n_members++] = *m;
    return 0;
}

const uint8_t *gsp_known_key_(struct gsp_engine *e, const char *node_id)
{
    struct gsp_peer *p;
    struct gsp_member *m;

    if (strcmp(node_id, e->self_id) == 0)
        return e->self_pub;
    p = gsp_peer_find_(e, node_id);
    if (p != NULL && p->pinned)
        return p->sig_pub;
    m = gsp_member_find_(e, node_id);
    return m ? m->sig_pub : NULL;
}

size_t gsp_members_validate_(struct gsp_engine *e, const struct gsp_msg *m, const char *from,
                             uint8_t *refuse, struct gsp_member **acc, size_t *n_acc)
{
    struct ut_err first = {{0}};
    size_t refused = 0, cap = 0;
    struct gsp_member cand;

    *acc = NULL;
    *n_acc = 0;
    for (size_t i = 0; i < m->n_entries; i++) {
        const struct crdt_entry *ce = &m->entries[i];
        struct ut_err err = {{0}};
        struct gsp_member *held;
        int ok = 0;

        if (strcmp(ce->tbl, GSP_MEMBERS_TABLE) != 0)
            continue;
        /* Only the node itself writes its row: its origin, its key, a
         * value (nobody may delete a node's entry through replication). */
        if (ce->deleted || strcmp(ce->origin, ce->key) != 0) {
            ut_err_set(&err, "cluster_nodes entry for \"%.80s\" %s", ce->key,
                       ce->deleted ? "is a tombstone" : "was not written by that node");
        } else if (gsp_member_parse(ce->value, ce->value_len, &cand, &err) == 0) {
            if (strcmp(cand.node_id, ce->key) != 0) {
                ut_err_set(&err, "cluster_nodes row \"%.80s\" carries node_id \"%s\"", ce->key,
                           cand.node_id);
            } else {
                pthread_mutex_lock(&e->mu);
                held = gsp_member_find_(e, cand.node_id);
                if (held != NULL && cand.ts < held->ts) {
                    ut_err_set(&err, "cluster_nodes entry for \"%s\" is older than the one held",
                               cand.node_id);
                } else if (held != NULL && cand.ts == held->ts) {
                    /* The same entry again is fine (it merges as a no-op);
                     * another one with the same ts is not. */
                    ok = memcmp(held->sig, cand.sig, CRY_P256_SIG_BYTES) == 0 &&
                         memcmp(held->sig_pub, cand.sig_pub, CRY_P256_PUB_BYTES) == 0;
                    if (!ok)
                        ut_err_set(&err,
                                   "cluster_nodes entry for \"%s\" conflicts with the one "
                                   "held",
                                   cand.node_id);
                } else if (gsp_member_check(&cand, gsp_known_key_(e, cand.node_id), &err) == 0 &&
                           gsp_member_store_(e, &cand) == 0) {
                    ok = 2;
                }
                pthread_mutex_unlock(&e->mu);
            }
        }
        if (ok == 2) {
            if (*n_acc == cap) {
                size_t ncap = cap ? cap * 2 : 4;
                struct gsp_member *na = realloc(*acc, ncap * sizeof(*na));

                if (na != NULL) {
                    *acc = na;
                    cap = ncap;
                }
            }
            if (*n_acc < cap)
                (*acc)[(*n_acc)++] = cand;
        } else if (!ok) {
            refuse[i] = 1;
            if (refused++ == 0)
                first = err;
        }
    }
    if (refused > 0)
        ut_log(UT_LOG_WARN, e->log_module, "cluster_nodes entry refused", UT_LF_S("peer", from),
               UT_LF_I("count", refused), UT_LF_S("reason", first.msg));
    return refused;
}

void gsp_members_adopt_(struct gsp_engine *e, const struct gsp_member *ms, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct gsp_member *m = &ms[i];
        struct ut_err err = {{0}}, verr = {{0}};
        struct gsp_peer *p, *pu;
        int persist = 0, seeded, rc = 0, trusted, certified = 0, was_pinned, same;
        unsigned refused = 0;
        char url[GSP_URL_MAX] = "";

        if (strcmp(m->node_id, e->self_id) == 0)
            continue;
        if (m->url[0])
            gsp_url_norm_(m->url, url);
        /* The certification is checked before taking mu (the verifier may
         * be slow, e.g. RSA); it depends only on the entry. */
        if (e->vouch_verify != NULL)
            certified = gsp_vouch_check_(e, m->node_id, m->kem_pk, m->sig_pub, m->cert, &verr) == 0;
        pthread_mutex_lock(&e->mu);
        p = gsp_peer_find_(e, m->node_id);
        seeded = p != NULL && (p->src & PEER_SEEDED);
        /* Trusted: pinned by an administrator (then this entry is that
         * node's own key or its signed rotation); with a verifier, an
         * entry whose certification verifies (and allowed_node_ids, when
         * set, lists it); without one, learned and listed in
         * allowed_node_ids. Without either only seeds count. */
        if (seeded)
            trusted = 1;
        else if (e->vouch_verify != NULL)
            trusted = certified && gsp_allowed_(e, m->node_id, 1);
        else
            trusted = gsp_allowed_(e, m->node_id, 0);
        if (!trusted) {
            /* Already pinned with these keys (by its kem-info, say): an
             * entry that cannot vouch for it changes nothing. */
            same = p != NULL && p->pinned &&
                   memcmp(p->sig_pub, m->sig_pub, CRY_P256_PUB_BYTES) == 0 &&
                   memcmp(p->kem_pk, m->kem_pk, CRY_XWING_PK_BYTES) == 0;
            if (e->vouch_verify != NULL && !same)
                refused = certified ? VOUCH_LOGGED_NOT_ALLOWED : VOUCH_LOGGED_UNCERTIFIED;
            pthread_mutex_unlock(&e->mu);
            if (refused)
                gsp_vouch_refused_(e, m->node_id, url, refused,
                                   certified ? "not in allowed_node_ids" : verr.msg);
            continue;
        }
        if (p == NULL) {
            p = gsp_peer_add_(e);
            if (p == NULL) {
                pthread_mutex_unlock(&e->mu);
                continue;
            }
            snprintf(p->node_id, sizeof(p->node_id), "%s", m->node_id);
            p->next_round_ms = 0;
        }
        /* A configured URL that is this node's resolves here too. */
        pu = url[0] ? gsp_peer_find_url_(e, url) : NULL;
        if (pu != NULL && pu != p && pu->node_id[0] == '\0') {
            p->src |= pu->src;
            pu->src = 0;
            gsp_peer_gc_(e, pu);
        }
        if (!seeded)
            p->src |= PEER_LEARNED | (certified ? PEER_CERTIFIED : 0u);
        if (url[0] && (p->url[0] == '\0' || !(p->src & PEER_CONFIGURED)))
            snprintf(p->url, sizeof(p->url), "%s", url);
        was_pinned = p->pinned;
        if (!p->pinned || memcmp(p->sig_pub, m->sig_pub, CRY_P256_PUB_BYTES) != 0 ||
            memcmp(p->kem_pk, m->kem_pk, CRY_XWING_PK_BYTES) != 0) {
            rc = gsp_peer_pin_(e, p, m->kem_pk, m->sig_pub, &err);
            /* Seeds follow rotations in gossip_peers; so do certified
             * pins already stored there (the upsert never turns a seed
             * row into a certified one). */
            persist = rc == 0 && (seeded || (certified && was_pinned));
            if (rc == 0 && certified && !seeded && !was_pinned)
                p->introduce = e->vouch_cert != NULL;
            if (rc == 0 && certified && !seeded && !was_pinned)
                ut_log(UT_LOG_INFO, e->log_module, "certified peer pinned",
                       UT_LF_S("peer", gsp_peer_label_(p)), UT_LF_S("node_id", m->node_id),
                       UT_LF_S("source", "cluster_nodes"));
            else if (rc == 0)
                ut_log(UT_LOG_INFO, e->log_module,
                       seeded ? "peer keys rotated" : "learned peer pinned",
                       UT_LF_S("peer", m->node_id), UT_LF_S("url", p->url));
            else
                ut_log(UT_LOG_WARN, e->log_module, "cannot pin learned peer",
                       UT_LF_S("peer", m->node_id), UT_LF_S("error", err.msg));
        }
        if (rc < 0 && !p->pinned) {
            p->src &= ~(unsigned)(PEER_LEARNED | PEER_CERTIFIED);
            gsp_peer_gc_(e, p);
        }
        pthread_mutex_unlock(&e->mu);
        if (persist && gsp_peers_persist_(e, m->node_id, url, m->kem_pk, m->sig_pub,
                                          seeded ? NULL : m->cert, &err) < 0)
            ut_log(UT_LOG_WARN, e->log_module, "cannot store rotated peer keys",
                   UT_LF_S("peer", m->node_id), UT_LF_S("error", err.msg));
    }
    gsp_wake_(e);
}

struct publish_ctx {
    struct gsp_engine *e;
    const char *json;
    size_t len;
};

static int publish_job(sqlite3 *db, void *arg, struct ut_err *err)
{
    struct publish_ctx *c = arg;

    return crdt_put(c->e->replica, db, GSP_MEMBERS_TABLE, c->e->self_id, c->json, c->len, 0, err);
}

/* Publishes our own entry when cluster_nodes lacks it or it is stale
 * (URL or keys changed). Its ts is after the held one's, so it wins the
 * monotonic-ts check everywhere even when the wall clock stepped back. */
static int publish_self(struct gsp_engine *e, struct ut_err *err)
{
    struct gsp_member *held = gsp_member_find_(e, e->self_id), mine;
    struct publish_ctx c = {e, NULL, 0};
    uint64_t ts = gsp_now_(e);
    char *json = NULL;
    size_t len = 0;
    int rc;

    /* A held certification that still verifies is kept: certifications
     * may be randomized (ECDSA), and a new one at every start would
     * rewrite the entry every time for nothing. */
    if (held != NULL && strcmp(held->url, e->self_url) == 0 &&
        memcmp(held->sig_pub, e->self_pub, CRY_P256_PUB_BYTES) == 0 &&
        memcmp(held->kem_pk, e->self_kem, CRY_XWING_PK_BYTES) == 0 &&
        (e->vouch_cert == NULL ||
         gsp_vouch_check_(e, e->self_id, e->self_kem, e->self_pub, held->cert, NULL) == 0)) {
        /* Ours is the one published: kem-info serves the same string as
         * the entry, stable across restarts. */
        if (e->vouch_cert != NULL && strcmp(e->vouch_cert, held->cert) != 0) {
            char *keep = strdup(held->cert);

            if (keep == NULL)
                return -ENOMEM;
            free(e->vouch_cert);
            e->vouch_cert = keep;
        }
        return 0;
    }
    if (held != NULL && held->ts >= ts)
        ts = held->ts + 1;
    rc = gsp_member_make(e->id, NULL, e->self_url, ts, e->vouch_cert, &json, &len, err);
    if (rc < 0)
        return rc;
    c.json = json;
    c.len = len;
    rc = store_write(e->store, publish_job, &c, err);
    if (rc == 0)
        rc = gsp_member_parse((const uint8_t *)json, len, &mine, err);
    if (rc == 0)
        rc = gsp_member_store_(e, &mine);
    if (rc == 0) {
        free(e->self_entry);
        e->self_entry = json;
        e->self_entry_len = len;
        json = NULL;
    }
    free(json);
    return rc;
}

int gsp_members_init_(struct gsp_engine *e, struct ut_err *err)
{
    struct gsp_member *all = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *st;
    sqlite3 *db;
    int rc;

    db = store_reader(e->store, err);
    if (db == NULL)
        return -EIO;
    st = store_stmt(e->store, db, "SELECT key, value FROM " GSP_MEMBERS_TABLE " ORDER BY key", err);
    if (st == NULL)
        return -EIO;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        const uint8_t *v = sqlite3_column_blob(st, 1);
        struct gsp_member m;
        struct ut_err perr = {{0}};

        /* Rows were validated when they arrived; a row that does not parse
         * now (e.g. written by a future version) is skipped, not fatal. */
        if (key == NULL ||
            gsp_member_parse(v, (size_t)sqlite3_column_bytes(st, 1), &m, &perr) < 0 ||
            strcmp(m.node_id, key) != 0) {
            ut_log(UT_LOG_WARN, e->log_module, "cluster_nodes: ignoring a row",
                   UT_LF_S("node_id", key ? key : ""), UT_LF_S("reason", perr.msg));
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8;
            struct gsp_member *na = realloc(all, ncap * sizeof(*na));

            if (na == NULL) {
                rc = -ENOMEM;
                break;
            }
            all = na;
            cap = ncap;
        }
        all[n++] = m;
        gsp_member_store_(e, &m);
        if (strcmp(key, e->self_id) == 0) {
            /* Ours as held: what we introduce ourselves with. */
            size_t vl = (size_t)sqlite3_column_bytes(st, 1);
            char *copy = malloc(vl + 1);

            if (copy != NULL) {
                memcpy(copy, v, vl);
                copy[vl] = '\0';
                free(e->self_entry);
                e->self_entry = copy;
                e->self_entry_len = vl;
            }
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        ut_err_set(err, "cluster_nodes: reading: %s",
                   rc == -ENOMEM ? "out of memory" : sqlite3_errmsg(db));
        free(all);
        return rc == -ENOMEM ? rc : -EIO;
    }
    gsp_members_adopt_(e, all, n);
    free(all);
    return publish_self(e, err);
}
