/*
 * forward.c - any node serves any ACME URL (issue #8): a request that needs
 * another node (a nonce it issued, an object it created that has not been
 * replicated here yet) is forwarded to that node's admin listener, which
 * runs the same ACME routes, and its answer is relayed (lib/http proxy.c,
 * asynchronous on the worker's event loop). docs/acme.md, "Forwarding and
 * nonces in a cluster".
 *
 * Tags. Nonces and object ids start with the issuing/creating node's tag:
 * base64url of the first 6 bytes of SHA-256(node id) (nonce.c computes the
 * same for this node). The tag -> admin URL map is built from the
 * replicated cluster_nodes table (row key = node id, "url" = the node's
 * gossip base URL, which is its admin listener). It is reloaded when the
 * replica's generation has moved since the last load: at most once a
 * second while lookups hit, at most every 50 ms on a miss (a tag nobody
 * knows must not cost a table scan per request).
 *
 * Hops. Requests forwarded here carry X-Akamu-Forwarded: <sender's node
 * id>, and X-Akamu-Nonce-Redeemed: <node id> once some node redeemed the
 * nonce. Both are believed only on the admin listener (the admin boundary:
 * whoever reaches it is trusted, docs/replication.md) and are stripped
 * from every request forwarded onwards, so a client cannot smuggle them
 * through the public listener. A request makes at most two hops: to the
 * nonce's issuer (nonce unspent), then from there to an object's owner
 * (nonce redeemed); a request that arrived with the nonce redeemed is
 * never forwarded again.
 *
 * Deadline. Every forwarded request carries X-Akamu-Forward-Deadline: the
 * sender's wall clock (unix ms) when it stops waiting. A node that gets it
 * later (it was stalled with the request queued) refuses it: the sender
 * already answered the client, maybe by doing the work itself.
 *
 * Work on an order (a challenge response, finalize; lease.c) goes to the
 * order's owner with akm_forward_work: when the owner does not answer,
 * lease.c decides (503 until its lease expires, else a takeover: the
 * handler runs again here on the request's heap copy, marked
 * AKM_HOP_TAKEOVER by a thread-local while it runs, so it neither redeems
 * the nonce again nor forwards: that copy is freed after the failure
 * callback returns).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "acme.h"
#include "gossip/members.h"
#include "nonce.h"
#include "util/b64.h"
#include "util/log.h"

#define MOD "forward"
/* A peer that is down answers at once (connection refused); these bound a
 * peer that hangs. The second hop gives up first, so that its own answer
 * (503 from the issuer, which spent the nonce) is what the client sees. */
#define FWD_TIMEOUT_MS      5000
#define FWD_HOP2_TIMEOUT_MS 4000
#define RELOAD_HIT_MS       1000
#define RELOAD_MISS_MS      50
#define HDR_FORWARDED       "X-Akamu-Forwarded"
#define HDR_NONCE_REDEEMED  "X-Akamu-Nonce-Redeemed"
#define HDR_DEADLINE        "X-Akamu-Forward-Deadline"
/* Past its deadline (+ this, for clock differences) a forwarded request
 * is refused: the sender has answered the client without it, possibly by
 * doing the work itself (a takeover, lease.c). */
#define DEADLINE_GRACE_MS  1000
#define DEADLINE_MARGIN_MS 250 /* our own answer's way back to the sender */

struct peer {
    char tag[AKM_TAG_LEN + 1];
    char node_id[CRY_ENV_ID_MAX + 1];
    char url[GSP_URL_MAX];
};

/* Nodes a forward of order work failed to reach lately (tag, CLOCK_MONOTONIC
 * ms): akm_successor passes over them, so that after the owner and its
 * successor failed, every node that tried them moves on to the same next
 * one. A ring: the oldest mark goes first. */
#define DOWN_MAX    16
#define DOWN_TTL_MS 10000

struct down {
    char tag[AKM_TAG_LEN + 1];
    int64_t at;
};

struct akm_fwd {
    pthread_mutex_t mu;
    int loaded;
    uint64_t gen;      /* crdt_generation() read before the last load */
    int64_t loaded_ms; /* CLOCK_MONOTONIC */
    struct peer *v;
    size_t n;
    struct down down[DOWN_MAX];
    size_t down_next;
};

/* A forward of order work: which work, and where it went. */
struct work_fwd {
    const struct akm_work *w;
    char tag[AKM_TAG_LEN + 1];
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The request being run again by akm_fwd_run_takeover on this thread. */
static _Thread_local const struct http_req *takeover_req;

int akm_fwd_new(struct akamu *k, struct ut_err *err)
{
    struct akm_fwd *f = calloc(1, sizeof(*f));
    int rc;

    if (f == NULL) {
        ut_err_set(err, "forwarding: out of memory");
        return -ENOMEM;
    }
    if ((rc = akm_leases_new(k, err)) < 0) {
        free(f);
        return rc;
    }
    pthread_mutex_init(&f->mu, NULL);
    k->fwd = f;
    return 0;
}

void akm_fwd_free(struct akamu *k)
{
    akm_leases_free(k);
    if (k->fwd == NULL)
        return;
    pthread_mutex_destroy(&k->fwd->mu);
    free(k->fwd->v);
    free(k->fwd);
    k->fwd = NULL;
}

void akm_node_tag(const char *node_id, char out[AKM_TAG_LEN + 1])
{
    unsigned char h[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)node_id, strlen(node_id), h);
    ut_b64_encode(h, AKM_NONCE_TAG_LEN, out, 1);
}

int akm_id_tag(const char *id, char out[AKM_TAG_LEN + 1])
{
    size_t n = id ? strlen(id) : 0;

    if (n != AKM_ID_LEN)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return -EINVAL;
    }
    memcpy(out, id, AKM_TAG_LEN);
    out[AKM_TAG_LEN] = '\0';
    return 0;
}

/* ---- the tag -> peer map ---- */

struct load {
    struct akamu *k;
    struct peer *v;
    size_t n, cap;
};

static int load_row(const char *id, json_t *doc, void *arg)
{
    struct load *l = arg;
    const char *url = json_string_value(json_object_get(doc, "url"));
    struct peer *p;

    if (id == NULL || strcmp(id, l->k->node_id) == 0 || url == NULL ||
        strncmp(url, "http://", 7) != 0 || strlen(url) >= GSP_URL_MAX ||
        strlen(id) > CRY_ENV_ID_MAX)
        return 0;
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 8;
        struct peer *nv = realloc(l->v, ncap * sizeof(*nv));

        if (nv == NULL)
            return 1; /* keep what we have */
        l->v = nv;
        l->cap = ncap;
    }
    p = &l->v[l->n++];
    akm_node_tag(id, p->tag);
    snprintf(p->node_id, sizeof(p->node_id), "%s", id);
    snprintf(p->url, sizeof(p->url), "%s", url);
    return 0;
}

static const struct peer *find(const struct akm_fwd *f, const char *tag)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->v[i].tag, tag) == 0)
            return &f->v[i];
    }
    return NULL;
}

/* The peer whose tag is tag, copied into *out: 0, or -ENOENT. */
static int lookup(struct akamu *k, const char *tag, struct peer *out)
{
    struct akm_fwd *f = k->fwd;
    struct load l = {.k = k};
    struct ut_err e = {{0}};
    const struct peer *p;
    uint64_t gen = crdt_generation(k->replica);
    int64_t now = mono_ms();
    int reload, ok;

    pthread_mutex_lock(&f->mu);
    p = find(f, tag);
    reload =
        !f->loaded || (gen != f->gen && now - f->loaded_ms >= (p ? RELOAD_HIT_MS : RELOAD_MISS_MS));
    if (p && !reload)
        *out = *p;
    pthread_mutex_unlock(&f->mu);
    if (!reload)
        return p ? 0 : -ENOENT;

    /* Outside the lock: a table scan on a reader connection. */
    ok = akm_each(k, GSP_MEMBERS_TABLE, NULL, NULL, NULL, 0, load_row, &l, &e) >= 0;
    if (!ok) {
        ut_log(UT_LOG_WARN, MOD, "cannot read the cluster node map", UT_LF_S("error", e.msg));
        free(l.v);
        l.v = NULL;
        l.n = 0;
    }
    pthread_mutex_lock(&f->mu);
    if (ok) { /* else keep the map we had */
        free(f->v);
        f->v = l.v;
        f->n = l.n;
    }
    f->loaded = 1;
    f->gen = gen;
    f->loaded_ms = now;
    p = find(f, tag);
    if (p)
        *out = *p;
    pthread_mutex_unlock(&f->mu);
    return p ? 0 : -ENOENT;
}

/* The score of a candidate: the first 8 bytes of SHA-256(order id || tag). */
static uint64_t rendezvous(const char *order_id, const char *tag)
{
    unsigned char h[SHA256_DIGEST_LENGTH];
    char in[AKM_ID_LEN + AKM_TAG_LEN + 1];
    int n = snprintf(in, sizeof(in), "%s%s", order_id, tag);
    uint64_t v = 0;

    SHA256((const unsigned char *)in, n > 0 && (size_t)n < sizeof(in) ? (size_t)n : 0, h);
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    return v;
}

/* Under f->mu: tag failed a forward of order work within DOWN_TTL_MS. */
static int is_down(const struct akm_fwd *f, const char *tag, int64_t now)
{
    for (size_t i = 0; i < DOWN_MAX; i++) {
        if (f->down[i].at && now - f->down[i].at < DOWN_TTL_MS && strcmp(f->down[i].tag, tag) == 0)
            return 1;
    }
    return 0;
}

static void mark_down(struct akm_fwd *f, const char *tag)
{
    int64_t now = mono_ms();
    size_t i;

    pthread_mutex_lock(&f->mu);
    for (i = 0; i < DOWN_MAX && strcmp(f->down[i].tag, tag) != 0; i++)
        ;
    if (i == DOWN_MAX)
        i = f->down_next++ % DOWN_MAX;
    snprintf(f->down[i].tag, sizeof(f->down[i].tag), "%s", tag);
    f->down[i].at = now;
    pthread_mutex_unlock(&f->mu);
}

int akm_successor(struct akamu *k, const char *order_id, const char *skip1, const char *skip2,
                  char out[AKM_TAG_LEN + 1])
{
    struct akm_fwd *f = k->fwd;
    struct peer unused;
    uint64_t best = 0, v;
    int64_t now = mono_ms();
    int found = 0;

    if (f == NULL)
        return -ENOENT;
    (void)lookup(k, k->tag, &unused); /* refreshes the map when it is due */
    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i <= f->n; i++) {
        const char *tag = i < f->n ? f->v[i].tag : k->tag; /* the map lacks this node */

        if ((skip1 && strcmp(tag, skip1) == 0) || (skip2 && strcmp(tag, skip2) == 0) ||
            (i < f->n && is_down(f, tag, now)))
            continue;
        v = rendezvous(order_id, tag);
        if (!found || v > best) {
            best = v;
            memcpy(out, tag, AKM_TAG_LEN + 1);
            found = 1;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return found ? 0 : -ENOENT;
}

/* ---- hops ---- */

enum akm_hop akm_fwd_hop(const struct akamu *k, struct http_req *r)
{
    if (takeover_req != NULL && takeover_req == r)
        return AKM_HOP_TAKEOVER;
    /* k->acme is set before either listener's workers start; a request
     * from any other server came in through the admin listener. */
    if (http_req_server(r) == k->acme)
        return AKM_HOP_CLIENT;
    if (http_req_header(r, HDR_NONCE_REDEEMED))
        return AKM_HOP_REDEEMED;
    if (http_req_header(r, HDR_FORWARDED))
        return AKM_HOP_NONCE;
    return AKM_HOP_CLIENT;
}

/* ---- failures: the peer did not answer ---- */

static void fail_nonce(struct http_req *r, int status, const char *why, void *arg)
{
    struct akamu *k = arg;

    ut_log(UT_LOG_DEBUG, MOD, "nonce issuer unreachable", UT_LF_S("path", http_req_path(r)),
           UT_LF_S("why", why));
    akm_problem(k, r, 400, "badNonce",
                "the node that issued this nonce cannot take it now (%s); use the fresh nonce",
                why);
}

static void fail_owner(struct http_req *r, int status, const char *why, void *arg)
{
    struct akamu *k = arg;

    ut_log(UT_LOG_DEBUG, MOD, "object owner unreachable", UT_LF_S("path", http_req_path(r)),
           UT_LF_S("why", why));
    http_add_header(r, "Retry-After", "2");
    akm_problem(k, r, 503, "serverInternal",
                "the node holding this object is unreachable and it has not been replicated "
                "here yet (%s)",
                why);
}

static void fail_work(struct http_req *r, int status, const char *why, void *arg)
{
    const struct work_fwd *wf = arg;

    (void)status;
    mark_down(wf->w->k->fwd, wf->tag);
    akm_work_unreachable(wf->w->k, r, wf->w, why);
}

void akm_fwd_run_takeover(struct akamu *k, struct http_req *r, http_handler fn)
{
    const struct http_req *was = takeover_req;

    takeover_req = r;
    fn(r, k);
    takeover_req = was;
}

int akm_fwd_late(struct akamu *k, struct http_req *r)
{
    const char *v;
    char *end;
    long long deadline;

    if (akm_fwd_hop(k, r) == AKM_HOP_CLIENT || akm_fwd_hop(k, r) == AKM_HOP_TAKEOVER ||
        (v = http_req_header(r, HDR_DEADLINE)) == NULL)
        return 0;
    deadline = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || akm_lease_now_ms(k) <= deadline + DEADLINE_GRACE_MS)
        return 0;
    ut_log(UT_LOG_WARN, MOD, "forwarded request past its deadline; refused",
           UT_LF_S("path", http_req_path(r)), UT_LF_S("from", http_req_header(r, HDR_FORWARDED)),
           UT_LF_I("late_ms", akm_lease_now_ms(k) - deadline));
    return 1;
}

/* on_fail/arg: the failure callback (NULL: by kind); release: as in
 * http_forward_opts (called when the forward went out and is over). */
static int forward_to(struct akamu *k, struct http_req *r, const char *tag, enum akm_fwd_kind kind,
                      http_forward_fail_fn on_fail, void *arg, void (*release)(void *),
                      const char *why)
{
    static const char *const drop[] = {HDR_FORWARDED, HDR_NONCE_REDEEMED, HDR_DEADLINE, NULL};
    char h_fwd[CRY_ENV_ID_MAX + 32], h_red[CRY_ENV_ID_MAX + 32], h_dl[64];
    const char *hdrs[4] = {h_fwd, h_dl, NULL, NULL};
    enum akm_hop hop = akm_fwd_hop(k, r);
    struct http_forward_opts o = {
        .headers = hdrs,
        .drop_headers = drop,
        .timeout_ms = hop == AKM_HOP_CLIENT ? FWD_TIMEOUT_MS : FWD_HOP2_TIMEOUT_MS,
        .on_fail = on_fail                 ? on_fail
                   : kind == AKM_FWD_NONCE ? fail_nonce
                                           : fail_owner,
        .arg = on_fail ? arg : k,
        .release = on_fail ? release : NULL,
    };
    struct ut_err e = {{0}};
    const char *dl;
    char *end;
    long long left;
    struct peer p;

    if (hop >= AKM_HOP_REDEEMED || (kind == AKM_FWD_NONCE && hop != AKM_HOP_CLIENT)) {
        ut_log(UT_LOG_DEBUG, MOD, "not forwarding a forwarded request",
               UT_LF_S("path", http_req_path(r)), UT_LF_S("why", why),
               UT_LF_S("from", http_req_header(r, HDR_FORWARDED)));
        return 0;
    }
    if (k->fwd == NULL || tag == NULL || strcmp(tag, k->tag) == 0)
        return 0;
    /* A request forwarded to us must be answered before its sender stops
     * waiting; a second forward (a failed owner, then the successor) may
     * only use what is left of that. */
    if (hop == AKM_HOP_NONCE && (dl = http_req_header(r, HDR_DEADLINE)) != NULL) {
        left = strtoll(dl, &end, 10) - akm_lease_now_ms(k) - DEADLINE_MARGIN_MS;
        if (end == dl || *end != '\0' || left < DEADLINE_MARGIN_MS) {
            ut_log(UT_LOG_DEBUG, MOD, "no time left to forward", UT_LF_S("path", http_req_path(r)),
                   UT_LF_S("why", why));
            return 0;
        }
        if (left < o.timeout_ms)
            o.timeout_ms = (int)left;
    }
    if (lookup(k, tag, &p) < 0) {
        ut_log(UT_LOG_DEBUG, MOD, "no node with this tag", UT_LF_S("tag", tag),
               UT_LF_S("why", why));
        return 0;
    }
    snprintf(h_fwd, sizeof(h_fwd), HDR_FORWARDED ": %s", k->node_id);
    snprintf(h_dl, sizeof(h_dl), HDR_DEADLINE ": %lld",
             (long long)(akm_lease_now_ms(k) + o.timeout_ms));
    if (kind == AKM_FWD_OWNER) {
        snprintf(h_red, sizeof(h_red), HDR_NONCE_REDEEMED ": %s", k->node_id);
        hdrs[2] = h_red;
    }
    if (http_req_forward_opts(r, p.url, &o, &e) < 0) {
        ut_log(UT_LOG_WARN, MOD, "cannot forward", UT_LF_S("peer", p.node_id),
               UT_LF_S("error", e.msg));
        return 0;
    }
    ut_log(UT_LOG_DEBUG, MOD, "forwarded", UT_LF_S("path", http_req_path(r)), UT_LF_S("why", why),
           UT_LF_S("peer", p.node_id), UT_LF_S("url", p.url));
    return 1;
}

int akm_forward(struct akamu *k, struct http_req *r, const char *tag, enum akm_fwd_kind kind,
                const char *why)
{
    return forward_to(k, r, tag, kind, NULL, NULL, NULL, why);
}

int akm_forward_work(struct akamu *k, struct http_req *r, const char *tag,
                     const struct akm_work *work, const char *why)
{
    /* work lives as long as k->leases, i.e. past every pending forward */
    struct work_fwd *wf = calloc(1, sizeof(*wf));
    int rc;

    if (wf == NULL || tag == NULL || strlen(tag) > AKM_TAG_LEN) {
        free(wf);
        return 0;
    }
    wf->w = work;
    memcpy(wf->tag, tag, strlen(tag) + 1);
    if ((rc = forward_to(k, r, tag, AKM_FWD_OWNER, fail_work, wf, free, why)) != 1)
        free(wf); /* not forwarded: release is never called */
    return rc;
}

int akm_forward_absent(struct akamu *k, struct http_req *r, const char *tbl, const char *id)
{
    char tag[AKM_TAG_LEN + 1];
    json_t *doc;

    if (akm_id_tag(id, tag) < 0 || strcmp(tag, k->tag) == 0 ||
        akm_fwd_hop(k, r) >= AKM_HOP_REDEEMED)
        return 0;
    if ((doc = akm_get(k, tbl, id)) != NULL) {
        json_decref(doc);
        return 0;
    }
    return akm_forward(k, r, tag, AKM_FWD_OWNER, tbl);
}
