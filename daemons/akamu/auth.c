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

/* Imported account keys, per worker thread (no lock, no sharing of an
 * EVP_PKEY across threads): importing a JWK costs a point decode and a
 * public-key check (a scalar multiplication), more than the signature
 * check itself. A slot is found by account id and used only while the
 * stored account's thumbprint is the one it was imported under, so a
 * keyChange (new thumbprint) misses at once; status is always read from
 * the stored account. Least recently used slot is replaced. The thread's
 * keys are freed by the key's destructor when the thread ends. */
#define KEY_SLOTS 64

struct key_slot {
    char id[AKM_ID_LEN + 1];
    char thumb[64];
    EVP_PKEY *key;
    uint64_t used;
};

struct key_cache {
    struct key_slot s[KEY_SLOTS];
    uint64_t tick;
};

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_ok;

static void cache_free(void *p)
{
    struct key_cache *kc = p;

    for (size_t i = 0; i < KEY_SLOTS; i++)
        EVP_PKEY_free(kc->s[i].key);
    free(kc);
}

static void cache_init(void)
{
    cache_ok = pthread_key_create(&cache_key, cache_free) == 0;
}

static struct key_cache *thread_cache(void)
{
    struct key_cache *kc;

    if (pthread_once(&cache_once, cache_init) != 0 || !cache_ok)
        return NULL;
    if ((kc = pthread_getspecific(cache_key)) == NULL && (kc = calloc(1, sizeof(*kc))) != NULL &&
        pthread_setspecific(cache_key, kc) != 0) {
        free(kc);
        kc = NULL;
    }
    return kc;
}

/* The account's key as a new reference: from this thread's cache when
 * (id, thumbprint) match, else imported from jwk and remembered. */
static int account_key(const char *id, const char *thumb, const json_t *jwk, EVP_PKEY **out,
                       struct ut_err *err)
{
    struct key_cache *kc = thread_cache();
    struct key_slot *victim = NULL;
    int rc;

    if (kc && thumb && strlen(thumb) < sizeof(kc->s[0].thumb) && strlen(id) <= AKM_ID_LEN) {
        for (size_t i = 0; i < KEY_SLOTS; i++) {
            struct key_slot *sl = &kc->s[i];

            if (sl->key && strcmp(sl->id, id) == 0 && strcmp(sl->thumb, thumb) == 0 &&
                EVP_PKEY_up_ref(sl->key) == 1) {
                sl->used = ++kc->tick;
                *out = sl->key;
                return 0;
            }
            if (victim == NULL || sl->used < victim->used)
                victim = sl;
        }
    }
    if ((rc = akm_jwk_to_pkey(jwk, out, err)) < 0 || victim == NULL)
        return rc;
    if (EVP_PKEY_up_ref(*out) != 1)
        return 0;
    EVP_PKEY_free(victim->key);
    victim->key = *out;
    snprintf(victim->id, sizeof(victim->id), "%s", id);
    snprintf(victim->thumb, sizeof(victim->thumb), "%s", thumb);
    victim->used = ++kc->tick;
    return 0;
}

static int by_kid(struct akamu *k, struct http_req *r, const char *kid, struct akm_ctx *c)
{
    struct ut_err e = {{0}};
    const char *status;
    const json_t *jwk;
    int rc;

    if (akm_url_id(k, kid, "/acme/acct/", c->account_id, sizeof(c->account_id)) < 0 ||
        (c->account = akm_get(k, "accounts", c->account_id)) == NULL) {
        akm_problem(k, r, 400, "accountDoesNotExist", "kid \"%.200s\": no such account", kid);
        return -1;
    }
    status = json_string_value(json_object_get(c->account, "status"));
    if (status == NULL || strcmp(status, "valid") != 0) {
        akm_problem(k, r, 401, "unauthorized", "account %s is %s", c->account_id,
                    status ? status : "unusable");
        return -1;
    }
    jwk = json_object_get(c->account, "jwk");
    if ((rc = account_key(c->account_id,
                          json_string_value(json_object_get(c->account, "thumbprint")), jwk,
                          &c->key, &e)) < 0) {
        akm_problem(k, r, 500, "serverInternal", "account %s: stored key unusable: %s",
                    c->account_id, e.msg);
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

/* The account of a kid that another node created and that is not here
 * yet: 1 forwarded to that node, else 0. */
static int kid_elsewhere(struct akamu *k, struct http_req *r, const char *kid)
{
    char id[AKM_ID_LEN + 1];

    if (akm_url_id(k, kid, "/acme/acct/", id, sizeof(id)) < 0)
        return 0;
    return akm_forward_absent(k, r, "accounts", id);
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
        if (kid_elsewhere(k, r, kid) == 1 || by_kid(k, r, kid, c) < 0)
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
