/*
 * auth.c - the RFC 8555 §6 request pipeline every POST goes through, in
 * this order: media type, JWS syntax (jws.c), nonce (single use, §6.5),
 * "url" (§6.4), key source (jwk or kid, §6.2), signature, payload.
 * The nonce is spent before the signature is checked, as in Boulder: a
 * forged request costs its sender a nonce and nothing else.
 *
 * In a cluster (forward.c) three steps may hand the request to another
 * node instead, each before anything here depends on state that node has:
 * a nonce issued by another node goes, unspent, to its issuer (which
 * redeems it and runs the request; an unknown issuer is badNonce); then,
 * with the nonce redeemed here, an object named in the path, and the
 * account named by "kid", that another node created and that has not been
 * replicated here yet go to their creator with X-Akamu-Nonce-Redeemed,
 * which skips the nonce there. A request that starts work on an order (a
 * challenge response, finalize: AKM_AUTH_WORK) then goes to the order's
 * owner (lease.c), even when the objects are here.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "acme.h"
#include "jws.h"
#include "nonce.h"

static const char *short_type(enum akm_jws_problem p)
{
    switch (p) {
    case AKM_JWS_PROB_BAD_NONCE:
        return "badNonce";
    case AKM_JWS_PROB_BAD_SIG_ALG:
        return "badSignatureAlgorithm";
    case AKM_JWS_PROB_BAD_PUBLIC_KEY:
        return "badPublicKey";
    case AKM_JWS_PROB_SERVER_INTERNAL:
        return "serverInternal";
    default:
        return "malformed";
    }
}

/* Replies the problem of a jws.c return code. */
static void jws_problem(struct akamu *k, struct http_req *r, int rc, const char *msg)
{
    enum akm_jws_problem p = akm_jws_problem(rc);
    int status = p == AKM_JWS_PROB_SERVER_INTERNAL ? 500 : 400;
    json_t *doc = akm_problem_new(short_type(p), status, "%s", msg);

    if (p == AKM_JWS_PROB_BAD_SIG_ALG && doc)
        json_object_set_new(doc, "algorithms", akm_jws_algs_json());
    akm_problem_doc(k, r, status, doc);
}

void akm_ctx_clear(struct akm_ctx *c)
{
    akm_jws_free(c->jws);
    json_decref(c->payload);
    json_decref(c->account);
    EVP_PKEY_free(c->key);
    memset(c, 0, sizeof(*c));
}

/* The request's own URL as the client must have signed it. */
static void request_url(struct akamu *k, struct http_req *r, char out[AKM_URL_MAX])
{
    akm_url(k, out, "%s", http_req_path(r));
}

/* Accounts, per worker thread (no lock, nothing shared across threads):
 * the stored document and its imported key. Importing a JWK costs a point
 * decode and a public-key check (a scalar multiplication), more than the
 * signature check itself, and reading the account costs an SQLite read and
 * a JSON parse on every request. A slot serves while the accounts table's
 * counter (crdt_table_generation: any committed write, merge, GC or
 * re-sync touching accounts) is the one read before the slot was filled;
 * accounts change rarely, so it holds across the other tables' writes. The
 * key also stays with its (id, thumbprint) across a refill, so only a
 * keyChange re-imports. Least recently used slot is replaced; the thread's
 * slots are freed by the key's destructor when the thread ends. The cached
 * document is handed out as a reference: callers only read c->account. */
#define ACCT_SLOTS 64

struct acct_slot {
    char id[AKM_ID_LEN + 1];
    char thumb[64];
    EVP_PKEY *key;
    json_t *doc;  /* NULL: only the key is known */
    uint64_t gen; /* accounts table counter when doc was read */
    uint64_t used;
};

struct acct_cache {
    struct acct_slot s[ACCT_SLOTS];
    uint64_t tick;
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_ok;

static void cache_free(void *p)
{
    struct acct_cache *ac = p;

    for (size_t i = 0; i < ACCT_SLOTS; i++) {
        EVP_PKEY_free(ac->s[i].key);
        json_decref(ac->s[i].doc);
    }
    free(ac);
}

static void cache_init(void)
{
    cache_ok = pthread_key_create(&cache_key, cache_free) == 0;
}

static struct acct_cache *thread_cache(void)
{
    struct acct_cache *ac;

    if (pthread_once(&cache_once, cache_init) != 0 || !cache_ok)
        return NULL;
    if ((ac = pthread_getspecific(cache_key)) == NULL && (ac = calloc(1, sizeof(*ac))) != NULL &&
        pthread_setspecific(cache_key, ac) != 0) {
        free(ac);
        ac = NULL;
    }
    return ac;
}

static struct acct_slot *slot_of(struct acct_cache *ac, const char *id)
{
    for (size_t i = 0; ac && i < ACCT_SLOTS; i++) {
        if (ac->s[i].key && strcmp(ac->s[i].id, id) == 0)
            return &ac->s[i];
    }
    return NULL;
}

static struct acct_slot *victim_of(struct acct_cache *ac)
{
    struct acct_slot *v = &ac->s[0];

    for (size_t i = 1; i < ACCT_SLOTS; i++) {
        if (ac->s[i].used < v->used)
            v = &ac->s[i];
    }
    return v;
}

/* The accounts table counter (one atomic load), or 0 without a replica
 * (no caching then). */
static uint64_t accounts_gen(struct akamu *k, int *ok)
{
    *ok = k->replica != NULL && k->accounts_h >= 0;
    return *ok ? crdt_table_generation(k->replica, k->accounts_h) : 0;
}

/* A cached account of this generation: c->account and c->key as new
 * references. 1 hit, 0 miss. */
static int cached_account(struct akamu *k, struct akm_ctx *c)
{
    struct acct_cache *ac = thread_cache();
    struct acct_slot *sl;
    int ok;
    uint64_t gen = accounts_gen(k, &ok);

    if (!ok || (sl = slot_of(ac, c->account_id)) == NULL || sl->doc == NULL || sl->gen != gen ||
        EVP_PKEY_up_ref(sl->key) != 1)
        return 0;
    sl->used = ++ac->tick;
    c->key = sl->key;
    c->account = json_incref(sl->doc);
    return 1;
}

/* After a miss: c->account was read (the table counter gen read before
 * it); c->key gets the account's key, re-imported only when (id,
 * thumbprint) is not cached, and the slot remembers both. */
static int fill_account(struct akamu *k, struct akm_ctx *c, uint64_t gen, int gen_ok,
                        struct ut_err *err)
{
    struct acct_cache *ac = thread_cache();
    const char *thumb = json_string_value(json_object_get(c->account, "thumbprint"));
    const json_t *jwk = json_object_get(c->account, "jwk");
    struct acct_slot *sl = slot_of(ac, c->account_id);
    int rc;

    if (sl && thumb && strcmp(sl->thumb, thumb) == 0 && EVP_PKEY_up_ref(sl->key) == 1) {
        c->key = sl->key;
    } else {
        if ((rc = akm_jwk_to_pkey(jwk, &c->key, err)) < 0)
            return rc;
        if (ac == NULL || thumb == NULL || strlen(thumb) >= sizeof(sl->thumb) ||
            EVP_PKEY_up_ref(c->key) != 1)
            return 0;
        if (sl == NULL)
            sl = victim_of(ac);
        EVP_PKEY_free(sl->key);
        sl->key = c->key;
        snprintf(sl->id, sizeof(sl->id), "%s", c->account_id);
        snprintf(sl->thumb, sizeof(sl->thumb), "%s", thumb);
    }
    json_decref(sl->doc);
    sl->doc = gen_ok ? json_incref(c->account) : NULL;
    sl->gen = gen;
    sl->used = ++ac->tick;
    return 0;
}

/* The account of kid: 0 with c->account and c->key, 1 forwarded to the
 * node that created it (not replicated here yet), -1 replied. */
static int by_kid(struct akamu *k, struct http_req *r, const char *kid, struct akm_ctx *c)
{
    struct ut_err e = {{0}};
    const char *status;
    uint64_t gen;
    int rc, gen_ok;

    if (akm_url_id(k, kid, "/acme/acct/", c->account_id, sizeof(c->account_id)) < 0) {
        akm_problem(k, r, 400, "accountDoesNotExist", "kid \"%.200s\": no such account", kid);
        return -1;
    }
    if (!cached_account(k, c)) {
        gen = accounts_gen(k, &gen_ok); /* before the read: a later change shows */
        if ((c->account = akm_get(k, "accounts", c->account_id)) == NULL) {
            /* another node's account not replicated here yet: to its creator */
            if (akm_forward_absent(k, r, "accounts", c->account_id) == 1)
                return 1;
            akm_problem(k, r, 400, "accountDoesNotExist", "kid \"%.200s\": no such account", kid);
            return -1;
        }
        if ((rc = fill_account(k, c, gen, gen_ok, &e)) < 0) {
            akm_problem(k, r, 500, "serverInternal", "account %s: stored key unusable: %s",
                        c->account_id, e.msg);
            return -1;
        }
    }
    status = json_string_value(json_object_get(c->account, "status"));
    if (status == NULL || strcmp(status, "valid") != 0) {
        akm_problem(k, r, 401, "unauthorized", "account %s is %s", c->account_id,
                    status ? status : "unusable");
        return -1;
    }
    snprintf(c->thumbprint, sizeof(c->thumbprint), "%s",
             json_string_value(json_object_get(c->account, "thumbprint"))
                 ? json_string_value(json_object_get(c->account, "thumbprint"))
                 : "");
    return 0;
}

/* The nonce step: 0 redeemed (or already redeemed by the node that
 * forwarded us the request), 1 forwarded to its issuer, -1 replied. */
static int nonce_step(struct akamu *k, struct http_req *r, enum akm_hop hop, struct akm_ctx *c)
{
    const char *nonce = akm_jws_nonce(c->jws);
    char tag[AKM_TAG_LEN + 1];
    struct ut_err e = {{0}};
    int rc;

    if (hop >= AKM_HOP_REDEEMED)
        return 0;
    rc = akm_nonce_redeem(k->nonces, nonce, &e);
    if (rc == -EXDEV && akm_nonce_tag(nonce, tag) == 0) {
        if (akm_forward(k, r, tag, AKM_FWD_NONCE, "nonce") == 1)
            return 1;
        akm_problem(k, r, 400, "badNonce", "%s, unknown here or no longer in the cluster", e.msg);
        return -1;
    }
    if (rc < 0) {
        akm_problem(k, r, 400, "badNonce", "%s", e.msg);
        return -1;
    }
    return 0;
}

int akm_auth(struct akamu *k, struct http_req *r, unsigned modes, struct akm_ctx *c)
{
    return akm_auth_at(k, r, modes, NULL, NULL, c);
}

int akm_auth_at(struct akamu *k, struct http_req *r, unsigned modes, const char *tbl,
                const char *id, struct akm_ctx *c)
{
    const char *ct = http_req_header(r, "Content-Type");
    char url[AKM_URL_MAX];
    struct ut_err e = {{0}};
    const unsigned char *body;
    const char *kid, *signed_url;
    enum akm_hop hop = akm_fwd_hop(k, r);
    size_t len;
    int rc;

    memset(c, 0, sizeof(*c));
    if (akm_fwd_late(k, r)) {
        akm_problem(k, r, 503, "serverInternal",
                    "forwarded request arrived after its sender stopped waiting");
        return -1;
    }
    if (ct == NULL || strncasecmp(ct, "application/jose+json", 21) != 0 ||
        (ct[21] != '\0' && ct[21] != ';' && ct[21] != ' ')) {
        akm_problem(k, r, 415, "malformed", "Content-Type must be application/jose+json, not %.80s",
                    ct ? ct : "(none)");
        return -1;
    }
    body = http_req_body(r, &len);
    if (len > AKM_BODY_MAX) {
        akm_problem(k, r, 413, "malformed", "request body of %zu bytes is over the %d byte limit",
                    len, AKM_BODY_MAX);
        return -1;
    }
    if ((rc = akm_jws_parse(body, len, &c->jws, &e)) < 0) {
        jws_problem(k, r, rc, e.msg);
        goto fail;
    }
    if ((rc = nonce_step(k, r, hop, c)) != 0)
        goto fail;
    request_url(k, r, url);
    signed_url = akm_jws_url(c->jws);
    if (signed_url == NULL || strcmp(signed_url, url) != 0) {
        akm_problem(k, r, 401, "unauthorized",
                    "the JWS \"url\" (%.300s) is not this request's URL (%.300s)",
                    signed_url ? signed_url : "", url);
        goto fail;
    }
    /* The object's creator also holds the account that made it. */
    if (tbl && id && akm_forward_absent(k, r, tbl, id) == 1)
        goto fail;
    /* Work on an order goes to its owner (lease.c): the lease holder, else
     * the order's creator. A POST-as-GET is a read, served from here. */
    if (tbl && id && (modes & AKM_AUTH_WORK) && !akm_jws_payload_empty(c->jws) &&
        akm_route_work(k, r, tbl, id) == 1)
        goto fail;
    kid = akm_jws_kid(c->jws);
    if (kid) {
        if (!(modes & AKM_AUTH_KID)) {
            akm_problem(k, r, 400, "malformed", "this resource needs a \"jwk\", not a \"kid\"");
            goto fail;
        }
        if (by_kid(k, r, kid, c) != 0)
            goto fail;
    } else {
        if (!(modes & AKM_AUTH_JWK)) {
            akm_problem(k, r, 400, "malformed",
                        "this resource needs the account URL as \"kid\", not a \"jwk\"");
            goto fail;
        }
        c->jwk = akm_jws_jwk(c->jws);
        if ((rc = akm_jwk_to_pkey(c->jwk, &c->key, &e)) < 0 ||
            (rc = akm_jwk_thumbprint(c->jwk, c->thumbprint, &e)) < 0) {
            jws_problem(k, r, rc, e.msg);
            goto fail;
        }
    }
    if ((rc = akm_jws_verify(c->jws, c->key, &e)) < 0) {
        jws_problem(k, r, rc, e.msg);
        goto fail;
    }
    if (!akm_jws_payload_empty(c->jws) &&
        (rc = akm_jws_payload_json(c->jws, &c->payload, &e)) < 0) {
        akm_problem(k, r, 400, "malformed", "payload: %s", e.msg);
        goto fail;
    }
    return 0;
fail:
    akm_ctx_clear(c);
    return -1;
}

int akm_require_post_as_get(struct akamu *k, struct http_req *r, const struct akm_ctx *c)
{
    if (akm_jws_payload_empty(c->jws))
        return 1;
    akm_problem(k, r, 400, "malformed", "this resource takes POST-as-GET (an empty payload)");
    return 0;
}
