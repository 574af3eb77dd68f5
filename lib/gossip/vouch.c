/*
 * vouch.c - certified pinning (engine.h, "Vouching"): a node whose gossip
 * keys carry a certification the daemon's verifier accepts is pinned
 * without an administrator, from its kem-info document (a configured URL)
 * or its introduction (POST /api/gossip/introduce); members.c does the
 * same for cluster_nodes entries. Refusals are counted and logged once per
 * node and kind per start.
 *
 * The engine never interprets a certification: it is an opaque string the
 * daemon makes (its own) and checks (the others'), so lib/ knows nothing
 * of CAs.
 */
#include "gossip/engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/nodeid.h"
#include "util/log.h"

int gsp_vouch_valid_(const char *s)
{
    size_t n = s ? strnlen(s, GSP_VOUCH_MAX + 1) : 0;

    if (n == 0 || n > GSP_VOUCH_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return 0;
    return 1;
}

int gsp_vouch_check_(struct gsp_engine *e, const char *node_id, const uint8_t *kem,
                     const uint8_t *sig_pub, const char *cert, struct ut_err *err)
{
    if (e->vouch_verify == NULL) {
        ut_err_set(err, "no certification verifier");
        return -ENOTSUP;
    }
    if (cert == NULL || cert[0] == '\0') {
        ut_err_set(err, "no certification");
        return -EPERM;
    }
    if (!gsp_vouch_valid_(cert)) {
        ut_err_set(err, "malformed certification");
        return -EINVAL;
    }
    return e->vouch_verify(e->vouch_arg, node_id, kem, sig_pub, cert, err) == 0 ? 0 : -EPERM;
}

/* Marks (node_id, kind) as logged; 1 when it was not yet. Caller holds mu.
 * Past GSP_MAX_PEERS distinct ids (introductions are unauthenticated, so
 * anyone may mint ids) nothing more is logged; the counters still count. */
static int first_log(struct gsp_engine *e, const char *node_id, unsigned kind)
{
    struct gsp_vouch_logged *l;

    for (size_t i = 0; i < e->n_vlogged; i++) {
        if (strcmp(e->vlogged[i].node_id, node_id) == 0) {
            int first = !(e->vlogged[i].kinds & kind);

            e->vlogged[i].kinds |= kind;
            return first;
        }
    }
    if (e->n_vlogged >= GSP_MAX_PEERS)
        return 0;
    if (e->n_vlogged == e->cap_vlogged) {
        size_t cap = e->cap_vlogged ? e->cap_vlogged * 2 : 8;

        l = realloc(e->vlogged, cap * sizeof(*l));
        if (l == NULL)
            return 0;
        e->vlogged = l;
        e->cap_vlogged = cap;
    }
    l = &e->vlogged[e->n_vlogged++];
    snprintf(l->node_id, sizeof(l->node_id), "%s", node_id);
    l->kinds = kind;
    return 1;
}

void gsp_vouch_refused_(struct gsp_engine *e, const char *node_id, const char *label, unsigned kind,
                        const char *why)
{
    int log_it;

    if (label == NULL || label[0] == '\0')
        label = node_id; /* as gsp_peer_label_: the URL when known */
    pthread_mutex_lock(&e->mu);
    gsp_refuse_(e, gsp_peer_find_(e, node_id),
                kind == VOUCH_LOGGED_NOT_ALLOWED ? "not_allowed" : "uncertified");
    log_it = first_log(e, node_id, kind);
    pthread_mutex_unlock(&e->mu);
    if (!log_it)
        return;
    if (kind == VOUCH_LOGGED_NOT_ALLOWED)
        ut_log(UT_LOG_WARN, e->log_module, "peer refused: not in allowed_node_ids",
               UT_LF_S("peer", label), UT_LF_S("node_id", node_id));
    else
        ut_log(UT_LOG_WARN, e->log_module,
               "peer refused: gossip keys not certified by this cluster's CA",
               UT_LF_S("peer", label), UT_LF_S("node_id", node_id),
               UT_LF_S("reason", why ? why : ""));
}

/* Pins node_id on a certification that verified (allowed_node_ids already
 * checked), like a seed: the record (merged with the unresolved record of
 * url, if any) gets PEER_CERTIFIED, and the pin is stored in gossip_peers
 * with the certification. Seeded or already pinned with the same keys: 0
 * and nothing changes; pinned with other keys: -EEXIST (a rotation is
 * followed through cluster_nodes, where the old key must sign it). */
static int certified_pin(struct gsp_engine *e, const char *node_id, const char *url,
                         const uint8_t *kem, const uint8_t *sig_pub, const char *cert,
                         const char *source, struct ut_err *err)
{
    char norm[GSP_URL_MAX] = "", label[GSP_URL_MAX];
    struct gsp_peer *p, *pu;
    int rc = 0;

    if (url != NULL && url[0])
        gsp_url_norm_(url, norm);
    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, node_id);
    if (p != NULL && p->pinned) {
        if (memcmp(p->kem_pk, kem, CRY_XWING_PK_BYTES) == 0 &&
            memcmp(p->sig_pub, sig_pub, CRY_P256_PUB_BYTES) == 0) {
            rc = 1;
        } else {
            ut_err_set(err, "\"%s\" is already pinned with other keys", node_id);
            rc = -EEXIST;
        }
        goto unlock;
    }
    pu = norm[0] ? gsp_peer_find_url_(e, norm) : NULL;
    if (p == NULL && pu != NULL && pu->node_id[0] == '\0') {
        p = pu;
        snprintf(p->node_id, sizeof(p->node_id), "%s", node_id);
    } else if (p != NULL && pu != NULL && pu != p && pu->node_id[0] == '\0') {
        p->src |= pu->src;
        if (pu->src & PEER_CONFIGURED)
            snprintf(p->url, sizeof(p->url), "%s", pu->url);
        pu->src = 0;
        gsp_peer_gc_(e, pu);
    }
    if (p == NULL && (p = gsp_peer_add_(e)) != NULL)
        snprintf(p->node_id, sizeof(p->node_id), "%s", node_id);
    if (p == NULL) {
        ut_err_set(err, "\"%s\": peer table full", node_id);
        rc = -E2BIG;
        goto unlock;
    }
    rc = gsp_peer_pin_(e, p, kem, sig_pub, err);
    if (rc < 0) {
        gsp_peer_gc_(e, p);
        goto unlock;
    }
    p->src |= PEER_CERTIFIED;
    /* It introduced itself: it knows us. Else tell it who we are before
     * the first exchange (gsp_due.introduce). */
    p->introduce = e->vouch_cert != NULL && strcmp(source, "introduction") != 0;
    if (norm[0] && p->url[0] == '\0')
        snprintf(p->url, sizeof(p->url), "%s", norm);
    p->next_round_ms = 0; /* contact it at once */
    p->backoff_until_ms = 0;
    p->backoff_ms = 0;
    snprintf(label, sizeof(label), "%s", gsp_peer_label_(p));
    snprintf(norm, sizeof(norm), "%s", p->url);
unlock:
    pthread_mutex_unlock(&e->mu);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    ut_log(UT_LOG_INFO, e->log_module, "certified peer pinned", UT_LF_S("peer", label),
           UT_LF_S("node_id", node_id), UT_LF_S("source", source));
    rc = gsp_peers_persist_(e, node_id, norm, kem, sig_pub, cert, err);
    gsp_wake_(e);
    return rc;
}

/* Screens a node that asks to be pinned on its certification: allowed,
 * certified. 0, or -EPERM after counting and logging the refusal. */
static int vouch_admit(struct gsp_engine *e, const char *node_id, const char *label,
                       const uint8_t *kem, const uint8_t *sig_pub, const char *cert,
                       struct ut_err *err)
{
    struct ut_err verr = {{0}};

    if (!gsp_allowed_(e, node_id, 1)) {
        gsp_vouch_refused_(e, node_id, label, VOUCH_LOGGED_NOT_ALLOWED, NULL);
        ut_err_set(err, "\"%s\" is not listed in allowed_node_ids", node_id);
        return -EPERM;
    }
    if (gsp_vouch_check_(e, node_id, kem, sig_pub, cert, &verr) < 0) {
        gsp_vouch_refused_(e, node_id, label, VOUCH_LOGGED_UNCERTIFIED, verr.msg);
        ut_err_set(err, "gossip keys of \"%s\" not certified: %s", node_id, verr.msg);
        return -EPERM;
    }
    return 0;
}

static int is_pinned(struct gsp_engine *e, const char *node_id)
{
    struct gsp_peer *p;
    int r;

    pthread_mutex_lock(&e->mu);
    p = gsp_peer_find_(e, node_id);
    r = p != NULL && p->pinned;
    pthread_mutex_unlock(&e->mu);
    return r;
}

int gsp_engine_resolve_kem_info(struct gsp_engine *e, const char *url, const char *doc, size_t len,
                                struct ut_err *err)
{
    uint8_t kem[CRY_XWING_PK_BYTES], sig[CRY_P256_PUB_BYTES];
    char id[CRY_ENV_ID_MAX + 1], norm[GSP_URL_MAX];
    const char *s, *cert;
    json_t *j = NULL;
    int rc = -EINVAL;

    if (doc == NULL || len == 0 || len > GSP_KEM_INFO_MAX) {
        ut_err_set(err, "kem-info document of %zu bytes", len);
        return -EINVAL;
    }
    if (gsp_url_norm_(url, norm) < 0) {
        ut_err_set(err, "peer URL \"%.80s\" is not usable", url ? url : "(null)");
        return -EINVAL;
    }
    j = json_loadb(doc, len, JSON_REJECT_DUPLICATES, NULL);
    s = json_string_value(json_object_get(j, "node_id"));
    if (s == NULL || gsp_node_id_valid(s) < 0) {
        ut_err_set(err, "the kem-info document has no valid \"node_id\"");
        goto out;
    }
    snprintf(id, sizeof(id), "%s", s);
    rc = gsp_engine_resolve_url(e, norm, id, err);
    if (rc < 0 || e->vouch_verify == NULL || strcmp(id, e->self_id) == 0 || is_pinned(e, id))
        goto out;
    if (gsp_json_b64_(j, "kem_public_key", kem, sizeof(kem)) < 0 ||
        gsp_json_b64_(j, "signing_public_key", sig, sizeof(sig)) < 0) {
        ut_err_set(err, "kem-info of \"%s\": bad kem_public_key or signing_public_key", id);
        rc = -EINVAL;
        goto out;
    }
    cert = json_string_value(json_object_get(j, "certification"));
    /* Refusals are counted and logged there; the URL is resolved either
     * way, so the spec's "no KEM key for peer" follows until it is pinned. */
    if (vouch_admit(e, id, norm, kem, sig, cert, err) == 0) {
        rc = certified_pin(e, id, norm, kem, sig, cert, "kem-info", err);
        if (rc == 0)
            rc = is_pinned(e, id); /* 1: pinned now */
    }
    if (rc == -EEXIST)
        rc = 0; /* pinned meanwhile (seed, entry): nothing to do */
out:
    json_decref(j);
    return rc;
}

json_t *gsp_engine_kem_info(struct gsp_engine *e)
{
    json_t *j = gsp_kem_info_json(e->id);

    if (j != NULL && e->vouch_cert != NULL &&
        json_object_set_new(j, "certification", json_string(e->vouch_cert)) < 0) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int gsp_engine_introduce(struct gsp_engine *e, const char *body, size_t len, struct ut_err *err)
{
    struct gsp_member *m = NULL;
    int rc;

    if (e->vouch_verify == NULL) {
        ut_err_set(err, "this node does not pin on certifications");
        return -ENOTSUP;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    rc = gsp_member_parse((const uint8_t *)body, len, m, err);
    if (rc < 0) {
        rc = -EINVAL;
        goto out;
    }
    if (strcmp(m->node_id, e->self_id) == 0) {
        ut_err_set(err, "\"%s\" is this node's own id", m->node_id);
        rc = -EINVAL;
        goto out;
    }
    if (is_pinned(e, m->node_id)) {
        /* Same keys: nothing to do; other keys: refused (-EEXIST). */
        rc = certified_pin(e, m->node_id, m->url, m->kem_pk, m->sig_pub, m->cert, "introduction",
                           err);
        goto out;
    }
    rc = vouch_admit(e, m->node_id, m->url, m->kem_pk, m->sig_pub, m->cert, err);
    if (rc == 0)
        rc = certified_pin(e, m->node_id, m->url, m->kem_pk, m->sig_pub, m->cert, "introduction",
                           err);
out:
    free(m);
    return rc;
}

int gsp_engine_introduction(struct gsp_engine *e, char **json, size_t *len)
{
    *json = NULL;
    *len = 0;
    if (e->vouch_cert == NULL || e->self_entry == NULL)
        return -ENOENT;
    *json = malloc(e->self_entry_len + 1);
    if (*json == NULL)
        return -ENOMEM;
    memcpy(*json, e->self_entry, e->self_entry_len + 1);
    *len = e->self_entry_len;
    return 0;
}
