/*
 * envelope.c - cry_env: seal and open gossip envelopes.
 *
 * The order of the checks in open is part of the design (docs/gossip-wire.md
 * §6): size cap, syntax, recipient, timestamp window, pinned sender, then
 * the signature, and only after the signature replay state and the KEM
 * decapsulation. So junk costs at most one SHA-256 and one ECDSA verify,
 * replay state only ever holds what a pinned peer signed, and nobody but a
 * pinned peer can make us run decapsulation (no KEM oracle).
 */
#include "crypto/env_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "util/mem.h"

struct cry_env {
    const struct cry_identity *id;
    struct cry_keystore *ks;
    const uint8_t *self; /* our node id, owned by id */
    size_t self_len;
    struct env_algs algs;
    struct env_peers *peers;
    size_t max_message;
    uint64_t max_age_ms, max_skew_ms;
    int sessions;
    cry_env_clock_fn clock;
    void *clock_arg;
    cry_env_rand_fn rand;
    void *rand_arg;
};

/* Requester's context: what it takes to check and open the one response. */
struct cry_env_req {
    uint8_t peer[CRY_ENV_ID_MAX];
    size_t peer_len;
    uint8_t nonce[CRY_ENV_NONCE_BYTES];
    uint8_t hash[CRY_ENV_HASH_BYTES];   /* SHA-256 of the request's signed range */
    uint8_t resp_secret[ENV_KEY_BYTES]; /* secret */
    int done, is_session, has_offer;
    struct env_session offer; /* secret; confirmed when the response opens */
};

/* Responder's context: what it takes to seal the one response. */
struct cry_env_inreq {
    char peer[CRY_ENV_ID_MAX + 1];
    size_t peer_len;
    uint8_t nonce[CRY_ENV_NONCE_BYTES];
    uint8_t hash[CRY_ENV_HASH_BYTES];
    uint8_t resp_secret[ENV_KEY_BYTES]; /* secret */
    int used, is_session;
};

const char *cry_env_errname(int err)
{
    switch (err) {
    case 0:
        return "ok";
    case CRY_ENV_E_TOO_LARGE:
        return "too_large";
    case CRY_ENV_E_TRUNCATED:
        return "truncated";
    case CRY_ENV_E_MALFORMED:
        return "malformed";
    case CRY_ENV_E_VERSION:
        return "version";
    case CRY_ENV_E_TYPE:
        return "type";
    case CRY_ENV_E_RECIPIENT:
        return "recipient";
    case CRY_ENV_E_UNKNOWN_SENDER:
        return "unknown_sender";
    case CRY_ENV_E_SIGNATURE:
        return "signature";
    case CRY_ENV_E_STALE:
        return "stale";
    case CRY_ENV_E_FUTURE:
        return "future";
    case CRY_ENV_E_REPLAY:
        return "replay";
    case CRY_ENV_E_DECRYPT:
        return "decrypt";
    case CRY_ENV_E_RESPONSE_BINDING:
        return "response_binding";
    case CRY_ENV_E_RESPONSE_REPLAY:
        return "response_replay";
    case CRY_ENV_E_NO_SESSION:
        return "no_session";
    case CRY_ENV_E_SESSION_EXPIRED:
        return "session_expired";
    case CRY_ENV_E_COUNTER_REPLAY:
        return "counter_replay";
    case CRY_ENV_E_COUNTER_OLD:
        return "counter_old";
    case CRY_ENV_E_UNKNOWN_PEER:
        return "unknown_peer";
    case -EINVAL:
        return "einval";
    case -ENOMEM:
        return "enomem";
    case -EIO:
        return "eio";
    case -E2BIG:
        return "e2big";
    case -EALREADY:
        return "ealready";
    case -ENOENT:
        return "enoent";
    default:
        return "unknown";
    }
}

static const char *describe(int rc)
{
    switch (rc) {
    case CRY_ENV_E_TOO_LARGE:
        return "message larger than the size cap";
    case CRY_ENV_E_TRUNCATED:
        return "message truncated";
    case CRY_ENV_E_MALFORMED:
        return "malformed message";
    case CRY_ENV_E_VERSION:
        return "unsupported envelope version";
    case CRY_ENV_E_TYPE:
        return "unexpected message type";
    case CRY_ENV_E_RECIPIENT:
        return "message addressed to another node";
    case CRY_ENV_E_UNKNOWN_SENDER:
        return "sender is not a pinned peer";
    case CRY_ENV_E_SIGNATURE:
        return "signature does not verify with the sender's pinned key";
    case CRY_ENV_E_STALE:
        return "timestamp too old";
    case CRY_ENV_E_FUTURE:
        return "timestamp too far in the future";
    case CRY_ENV_E_REPLAY:
        return "nonce replayed";
    case CRY_ENV_E_DECRYPT:
        return "payload does not decrypt";
    case CRY_ENV_E_RESPONSE_BINDING:
        return "response is not for this request";
    case CRY_ENV_E_RESPONSE_REPLAY:
        return "this request's response was already opened";
    case CRY_ENV_E_NO_SESSION:
        return "unknown session";
    case CRY_ENV_E_SESSION_EXPIRED:
        return "session expired";
    case CRY_ENV_E_COUNTER_REPLAY:
        return "session counter replayed";
    case CRY_ENV_E_COUNTER_OLD:
        return "session counter below the replay window";
    case CRY_ENV_E_UNKNOWN_PEER:
        return "recipient is not a pinned peer";
    case -ENOMEM:
        return "out of memory";
    case -E2BIG:
        return "peer table full";
    default:
        return "internal crypto failure";
    }
}

/* One line: what was refused and, once the ids parsed, from whom. */
static void refuse(struct ut_err *err, int rc, const struct env_view *v, const char *what)
{
    if (v != NULL && v->sender != NULL && env_id_valid(v->sender, v->sender_len))
        ut_err_set(err, "%s from \"%.*s\" refused: %s (%s)", what, (int)v->sender_len,
                   (const char *)v->sender, describe(rc), cry_env_errname(rc));
    else
        ut_err_set(err, "%s refused: %s (%s)", what, describe(rc), cry_env_errname(rc));
}

static uint64_t clock_realtime(void *arg)
{
    struct timespec ts;

    (void)arg;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int env_rand(struct cry_env *env, uint8_t *out, size_t n)
{
    if (env->rand != NULL)
        return env->rand(env->rand_arg, out, n) == 0 ? 0 : -EIO;
    return RAND_bytes(out, (int)n) == 1 ? 0 : -EIO;
}

int cry_env_new(const struct cry_identity *id, struct cry_keystore *ks,
                const struct cry_env_config *cfg, struct cry_env **out, struct ut_err *err)
{
    struct cry_env_config c = {0};
    struct env_limits lim;
    struct cry_env *env = NULL;
    int rc = -EINVAL;

    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (id == NULL || ks == NULL) {
        ut_err_set(err, "envelope endpoint needs an identity and a keystore");
        return -EINVAL;
    }
    if (cfg != NULL)
        c = *cfg;
    env = calloc(1, sizeof(*env));
    if (env == NULL)
        return -ENOMEM;
    env->id = id;
    env->ks = ks;
    cry_identity_id_(id, &env->self, &env->self_len);
    env->max_message = c.max_message == 0 || c.max_message > CRY_ENV_MAX_MESSAGE
                           ? CRY_ENV_MAX_MESSAGE
                           : c.max_message;
    env->max_age_ms = c.max_age_ms ? c.max_age_ms : CRY_ENV_DEF_MAX_AGE_MS;
    env->max_skew_ms = c.max_skew_ms ? c.max_skew_ms : CRY_ENV_DEF_MAX_SKEW_MS;
    env->sessions = c.sessions != 0;
    env->clock = c.clock ? c.clock : clock_realtime;
    env->clock_arg = c.clock_arg;
    env->rand = c.rand;
    env->rand_arg = c.rand_arg;
    lim.max_age_ms = env->max_age_ms;
    lim.max_skew_ms = env->max_skew_ms;
    lim.session_age_ms = c.session_max_age_ms ? c.session_max_age_ms : CRY_ENV_DEF_SESSION_AGE_MS;
    lim.session_msgs = c.session_max_msgs ? c.session_max_msgs : CRY_ENV_DEF_SESSION_MSGS;
    lim.replay_max = c.replay_max_per_peer ? c.replay_max_per_peer : CRY_ENV_DEF_REPLAY_PER_PEER;
    if (lim.max_age_ms > UINT64_MAX / 4 || lim.max_skew_ms > UINT64_MAX / 4 ||
        lim.session_age_ms > UINT64_MAX / 4) {
        ut_err_set(err, "envelope time limits out of range");
        goto out;
    }
    rc = env_algs_init(&env->algs);
    if (rc) {
        ut_err_set(err, "OpenSSL lacks HKDF, AES-256-GCM or SHA-256");
        goto out;
    }
    env->peers = env_peers_new(&lim);
    if (env->peers == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    *out = env;
    env = NULL;
    rc = 0;
out:
    cry_env_free(env);
    return rc;
}

void cry_env_free(struct cry_env *env)
{
    if (env == NULL)
        return;
    env_peers_free(env->peers);
    env_algs_free(&env->algs);
    free(env);
}

/*
 * Lays out header || AES-GCM(payload) || tag || signature into a new
 * buffer, and returns in hash the SHA-256 of the signed range (the
 * request "transcript" that responses and sessions bind to).
 */
static int seal_common(struct cry_env *env, const struct env_view *v,
                       const uint8_t kiv[ENV_KIV_BYTES], const uint8_t *payload, size_t plen,
                       uint8_t **msg, size_t *msg_len, uint8_t hash[CRY_ENV_HASH_BYTES])
{
    size_t hl = env_header_len(v->type, v->sender_len, v->recipient_len), total;
    uint8_t sm[ENV_SIG_MSG_LEN];
    uint8_t *m = NULL;
    int rc;

    /* hl <= 1659 and plen <= max_message <= 64 MiB: no overflow. */
    if (plen > env->max_message || hl + plen + ENV_TRAILER > env->max_message)
        return CRY_ENV_E_TOO_LARGE;
    total = hl + plen + ENV_TRAILER;
    m = malloc(total);
    if (m == NULL)
        return -ENOMEM;
    env_header_write(m, v, (uint32_t)plen);
    rc = env_gcm_seal(&env->algs, kiv, m, hl, payload, plen, m + hl, m + hl + plen);
    if (rc == 0)
        rc = env_sha256(&env->algs, m, hl + plen + ENV_TAG, hash);
    if (rc == 0) {
        env_sig_msg(hash, sm);
        rc = cry_identity_sign_(env->id, sm, sizeof(sm), m + hl + plen + ENV_TAG);
    }
    if (rc) {
        free(m);
        return rc;
    }
    *msg = m;
    *msg_len = total;
    return 0;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static int args_ok(const uint8_t *payload, size_t plen, uint8_t **msg, size_t *msg_len)
{
    if (msg == NULL || msg_len == NULL || (payload == NULL && plen != 0))
        return 0;
    *msg = NULL;
    *msg_len = 0;
    return 1;
}

int cry_env_seal_request(struct cry_env *env, const char *peer_id, const uint8_t *payload,
                         size_t payload_len, uint8_t **msg, size_t *msg_len,
                         struct cry_env_req **ctx, struct ut_err *err)
{
    uint8_t xwing_pk[CRY_XWING_PK_BYTES], ct[CRY_XWING_CT_BYTES];
    uint8_t ss[CRY_XWING_SS_BYTES], eseed[CRY_XWING_ESEED_BYTES];
    uint8_t kiv[ENV_KIV_BYTES], extra[ENV_SESSION_EXTRA + CRY_ENV_HASH_BYTES];
    uint8_t sessbuf[CRY_ENV_SID_BYTES + ENV_KEY_BYTES];
    struct env_session s;
    struct env_view v = {0};
    struct cry_env_req *req = NULL;
    EVP_PKEY *pinned = NULL;
    size_t peer_len = peer_id ? strnlen(peer_id, CRY_ENV_ID_MAX + 1) : 0;
    uint64_t ctr = 0;
    int rc = -EINVAL;

    if (ctx != NULL)
        *ctx = NULL;
    if (env == NULL || !args_ok(payload, payload_len, msg, msg_len) ||
        !env_id_valid((const uint8_t *)peer_id, peer_len)) {
        ut_err_set(err, "seal: bad arguments");
        return -EINVAL;
    }
    if (payload_len > env->max_message) {
        rc = CRY_ENV_E_TOO_LARGE;
        ut_err_set(err, "seal for \"%s\": payload of %zu bytes over the %zu byte cap", peer_id,
                   payload_len, env->max_message);
        return rc;
    }
    /* Refuse to talk to a peer we have not pinned, whichever the mode. */
    if (cry_keystore_get_(env->ks, (const uint8_t *)peer_id, peer_len, &pinned, xwing_pk) != 0) {
        ut_err_set(err, "seal: peer \"%s\" is not pinned (unknown_peer)", peer_id);
        return CRY_ENV_E_UNKNOWN_PEER;
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(req->peer, peer_id, peer_len);
    req->peer_len = peer_len;
    rc = env_rand(env, req->nonce, sizeof(req->nonce));
    if (rc)
        goto out;
    v.ts = env->clock(env->clock_arg);
    v.nonce = req->nonce;
    v.sender = env->self;
    v.sender_len = env->self_len;
    v.recipient = (const uint8_t *)peer_id;
    v.recipient_len = peer_len;

    if (env->sessions && env_peers_take_out(env->peers, req->peer, peer_len, v.ts, &s, &ctr)) {
        /* Session message: no KEM, keys from the session secret. */
        v.type = ENV_T_SESSION;
        v.sid = s.sid;
        v.counter = ctr;
        memcpy(extra, s.sid, CRY_ENV_SID_BYTES);
        put_be64(extra + CRY_ENV_SID_BYTES, ctr);
        rc = env_hkdf(&env->algs, s.secret, ENV_KEY_BYTES, req->nonce, CRY_ENV_NONCE_BYTES, "sreq",
                      env->self, env->self_len, req->peer, peer_len, extra, ENV_SESSION_EXTRA, kiv,
                      sizeof(kiv));
        if (rc == 0)
            rc = seal_common(env, &v, kiv, payload, payload_len, msg, msg_len, req->hash);
        if (rc)
            goto out;
        memcpy(extra + ENV_SESSION_EXTRA, req->hash, CRY_ENV_HASH_BYTES);
        rc = env_hkdf(&env->algs, s.secret, ENV_KEY_BYTES, req->nonce, CRY_ENV_NONCE_BYTES,
                      "sresp-secret", env->self, env->self_len, req->peer, peer_len, extra,
                      sizeof(extra), req->resp_secret, ENV_KEY_BYTES);
        req->is_session = 1;
        goto out;
    }

    /* Full X-Wing message to the peer's pinned KEM key. */
    rc = env_rand(env, eseed, sizeof(eseed));
    if (rc == 0 && cry_xwing_encaps(xwing_pk, eseed, ct, ss) != 0)
        rc = -EIO;
    if (rc)
        goto out;
    v.type = ENV_T_KEM;
    v.flags = env->sessions ? ENV_FLAG_SESSION_OFFER : 0;
    v.kem_ct = ct;
    rc = env_hkdf(&env->algs, ss, sizeof(ss), req->nonce, CRY_ENV_NONCE_BYTES, "req", env->self,
                  env->self_len, req->peer, peer_len, NULL, 0, kiv, sizeof(kiv));
    if (rc == 0)
        rc = seal_common(env, &v, kiv, payload, payload_len, msg, msg_len, req->hash);
    if (rc == 0)
        rc = env_hkdf(&env->algs, ss, sizeof(ss), req->nonce, CRY_ENV_NONCE_BYTES, "resp-secret",
                      env->self, env->self_len, req->peer, peer_len, req->hash, CRY_ENV_HASH_BYTES,
                      req->resp_secret, ENV_KEY_BYTES);
    if (rc == 0 && env->sessions) {
        rc = env_hkdf(&env->algs, ss, sizeof(ss), req->nonce, CRY_ENV_NONCE_BYTES, "session",
                      env->self, env->self_len, req->peer, peer_len, req->hash, CRY_ENV_HASH_BYTES,
                      sessbuf, sizeof(sessbuf));
        memcpy(req->offer.sid, sessbuf, CRY_ENV_SID_BYTES);
        memcpy(req->offer.secret, sessbuf + CRY_ENV_SID_BYTES, ENV_KEY_BYTES);
        req->offer.created_ms = v.ts;
        req->has_offer = rc == 0;
    }
out:
    if (rc && *msg) {
        free(*msg);
        *msg = NULL;
        *msg_len = 0;
    }
    if (rc == CRY_ENV_E_TOO_LARGE)
        ut_err_set(err, "seal for \"%s\": message over the %zu byte cap", peer_id,
                   env->max_message);
    else if (rc)
        ut_err_set(err, "seal for \"%s\" failed: %s", peer_id, describe(rc));
    if (rc == 0 && ctx != NULL) {
        *ctx = req;
        req = NULL;
    }
    cry_env_req_free(req);
    EVP_PKEY_free(pinned);
    ut_memzero(ss, sizeof(ss));
    ut_memzero(eseed, sizeof(eseed));
    ut_memzero(kiv, sizeof(kiv));
    ut_memzero(&s, sizeof(s));
    ut_memzero(sessbuf, sizeof(sessbuf));
    ERR_clear_error();
    return rc;
}

/* Timestamp window: not older than max_age, not ahead by more than max_skew. */
static int check_time(const struct cry_env *env, uint64_t ts, uint64_t now)
{
    if (ts > now && ts - now > env->max_skew_ms)
        return CRY_ENV_E_FUTURE;
    if (now > ts && now - ts > env->max_age_ms)
        return CRY_ENV_E_STALE;
    return 0;
}

/* Signature over the signed range with the sender's *pinned* key; hash
 * gets the SHA-256 of that range. */
static int check_sender(struct cry_env *env, const uint8_t *msg, const struct env_view *v,
                        uint8_t hash[CRY_ENV_HASH_BYTES])
{
    uint8_t sm[ENV_SIG_MSG_LEN];
    EVP_PKEY *pinned = NULL;
    int rc;

    if (cry_keystore_get_(env->ks, v->sender, v->sender_len, &pinned, NULL) != 0)
        return CRY_ENV_E_UNKNOWN_SENDER;
    rc = env_sha256(&env->algs, msg, v->signed_len, hash);
    if (rc == 0) {
        env_sig_msg(hash, sm);
        rc = p256_verify(pinned, sm, sizeof(sm), v->sig);
    }
    EVP_PKEY_free(pinned);
    return rc;
}

static int is_self(const struct cry_env *env, const uint8_t *id, size_t len)
{
    return len == env->self_len && memcmp(id, env->self, len) == 0;
}

int cry_env_open_request(struct cry_env *env, const uint8_t *msg, size_t msg_len, uint8_t **payload,
                         size_t *payload_len, struct cry_env_inreq **ctx, struct ut_err *err)
{
    uint8_t hash[CRY_ENV_HASH_BYTES], ss[CRY_XWING_SS_BYTES], kiv[ENV_KIV_BYTES];
    uint8_t extra[ENV_SESSION_EXTRA + CRY_ENV_HASH_BYTES];
    uint8_t sessbuf[CRY_ENV_SID_BYTES + ENV_KEY_BYTES];
    struct env_session s = {0}, offer = {0};
    struct cry_env_inreq *in = NULL;
    struct env_view v = {0};
    uint8_t *pt = NULL;
    uint64_t now;
    int rc = -EINVAL;

    if (ctx != NULL)
        *ctx = NULL;
    if (env == NULL || (msg == NULL && msg_len != 0) || payload == NULL || payload_len == NULL) {
        ut_err_set(err, "open: bad arguments");
        return -EINVAL;
    }
    *payload = NULL;
    *payload_len = 0;
    /* The cap comes first: nothing of an oversized input is even read. */
    if (msg_len > env->max_message) {
        rc = CRY_ENV_E_TOO_LARGE;
        goto out;
    }
    rc = env_parse(msg, msg_len, ENV_TM(ENV_T_KEM) | ENV_TM(ENV_T_SESSION), &v);
    if (rc)
        goto out;
    if (!is_self(env, v.recipient, v.recipient_len)) {
        rc = CRY_ENV_E_RECIPIENT;
        goto out;
    }
    now = env->clock(env->clock_arg);
    rc = check_time(env, v.ts, now);
    if (rc == 0)
        rc = check_sender(env, msg, &v, hash);
    if (rc)
        goto out;

    /* Authenticated from here on: the pinned sender signed all of it. */
    in = calloc(1, sizeof(*in));
    pt = malloc(v.ct_len ? v.ct_len : 1);
    if (in == NULL || pt == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (v.type == ENV_T_KEM) {
        rc = env_peers_nonce(env->peers, v.sender, v.sender_len, v.nonce, v.ts, now);
        if (rc == 0)
            rc = cry_identity_decaps_(env->id, v.kem_ct, ss);
        if (rc == 0)
            rc = env_hkdf(&env->algs, ss, sizeof(ss), v.nonce, CRY_ENV_NONCE_BYTES, "req", v.sender,
                          v.sender_len, env->self, env->self_len, NULL, 0, kiv, sizeof(kiv));
    } else {
        rc = env_peers_use_in(env->peers, v.sender, v.sender_len, v.sid, v.counter, now, &s);
        memcpy(extra, v.sid, CRY_ENV_SID_BYTES);
        put_be64(extra + CRY_ENV_SID_BYTES, v.counter);
        memcpy(extra + ENV_SESSION_EXTRA, hash, CRY_ENV_HASH_BYTES);
        if (rc == 0)
            rc = env_hkdf(&env->algs, s.secret, ENV_KEY_BYTES, v.nonce, CRY_ENV_NONCE_BYTES, "sreq",
                          v.sender, v.sender_len, env->self, env->self_len, extra,
                          ENV_SESSION_EXTRA, kiv, sizeof(kiv));
    }
    if (rc == 0)
        rc = env_gcm_open(&env->algs, kiv, msg, v.aad_len, v.ct, v.ct_len, v.tag, pt);
    if (rc)
        goto out;

    /* The response secret (and an offered session) bind to this request. */
    if (v.type == ENV_T_KEM) {
        rc = env_hkdf(&env->algs, ss, sizeof(ss), v.nonce, CRY_ENV_NONCE_BYTES, "resp-secret",
                      v.sender, v.sender_len, env->self, env->self_len, hash, CRY_ENV_HASH_BYTES,
                      in->resp_secret, ENV_KEY_BYTES);
        if (rc == 0 && (v.flags & ENV_FLAG_SESSION_OFFER)) {
            rc = env_hkdf(&env->algs, ss, sizeof(ss), v.nonce, CRY_ENV_NONCE_BYTES, "session",
                          v.sender, v.sender_len, env->self, env->self_len, hash,
                          CRY_ENV_HASH_BYTES, sessbuf, sizeof(sessbuf));
            memcpy(offer.sid, sessbuf, CRY_ENV_SID_BYTES);
            memcpy(offer.secret, sessbuf + CRY_ENV_SID_BYTES, ENV_KEY_BYTES);
            offer.created_ms = now;
            if (rc == 0)
                rc = env_peers_add_in(env->peers, v.sender, v.sender_len, &offer);
        }
    } else {
        rc = env_hkdf(&env->algs, s.secret, ENV_KEY_BYTES, v.nonce, CRY_ENV_NONCE_BYTES,
                      "sresp-secret", v.sender, v.sender_len, env->self, env->self_len, extra,
                      sizeof(extra), in->resp_secret, ENV_KEY_BYTES);
        in->is_session = 1;
    }
    if (rc)
        goto out;
    memcpy(in->peer, v.sender, v.sender_len);
    in->peer_len = v.sender_len;
    memcpy(in->nonce, v.nonce, CRY_ENV_NONCE_BYTES);
    memcpy(in->hash, hash, CRY_ENV_HASH_BYTES);
    *payload = pt;
    *payload_len = v.ct_len;
    pt = NULL;
    if (ctx != NULL) {
        *ctx = in;
        in = NULL;
    }
out:
    if (rc)
        refuse(err, rc, &v, "request");
    if (pt != NULL) {
        ut_memzero(pt, v.ct_len);
        free(pt);
    }
    cry_env_inreq_free(in);
    ut_memzero(ss, sizeof(ss));
    ut_memzero(kiv, sizeof(kiv));
    ut_memzero(&s, sizeof(s));
    ut_memzero(&offer, sizeof(offer));
    ut_memzero(sessbuf, sizeof(sessbuf));
    ERR_clear_error();
    return rc;
}

/* "resp" key: salt = response nonce, extra = request nonce || request hash. */
static int resp_key(struct cry_env *env, const uint8_t secret[ENV_KEY_BYTES],
                    const uint8_t *resp_nonce, const uint8_t *s, size_t s_len, const uint8_t *r,
                    size_t r_len, const uint8_t *req_nonce, const uint8_t *req_hash,
                    uint8_t kiv[ENV_KIV_BYTES])
{
    uint8_t extra[ENV_RESPONSE_EXTRA];

    memcpy(extra, req_nonce, CRY_ENV_NONCE_BYTES);
    memcpy(extra + CRY_ENV_NONCE_BYTES, req_hash, CRY_ENV_HASH_BYTES);
    return env_hkdf(&env->algs, secret, ENV_KEY_BYTES, resp_nonce, CRY_ENV_NONCE_BYTES, "resp", s,
                    s_len, r, r_len, extra, sizeof(extra), kiv, ENV_KIV_BYTES);
}

int cry_env_seal_response(struct cry_env *env, struct cry_env_inreq *ctx, const uint8_t *payload,
                          size_t payload_len, uint8_t **msg, size_t *msg_len, struct ut_err *err)
{
    uint8_t nonce[CRY_ENV_NONCE_BYTES], kiv[ENV_KIV_BYTES], hash[CRY_ENV_HASH_BYTES];
    struct env_view v = {0};
    int rc;

    if (env == NULL || ctx == NULL || !args_ok(payload, payload_len, msg, msg_len)) {
        ut_err_set(err, "seal response: bad arguments");
        return -EINVAL;
    }
    if (ctx->used) {
        ut_err_set(err, "seal response: request from \"%s\" already answered", ctx->peer);
        return -EALREADY;
    }
    rc = env_rand(env, nonce, sizeof(nonce));
    if (rc)
        goto out;
    v.type = ENV_T_RESPONSE;
    v.ts = env->clock(env->clock_arg);
    v.nonce = nonce;
    v.sender = env->self;
    v.sender_len = env->self_len;
    v.recipient = (const uint8_t *)ctx->peer;
    v.recipient_len = ctx->peer_len;
    v.req_nonce = ctx->nonce;
    v.req_hash = ctx->hash;
    rc = resp_key(env, ctx->resp_secret, nonce, env->self, env->self_len,
                  (const uint8_t *)ctx->peer, ctx->peer_len, ctx->nonce, ctx->hash, kiv);
    if (rc == 0)
        rc = seal_common(env, &v, kiv, payload, payload_len, msg, msg_len, hash);
    if (rc == 0) {
        ctx->used = 1;
        ut_memzero(ctx->resp_secret, sizeof(ctx->resp_secret));
    }
out:
    if (rc == CRY_ENV_E_TOO_LARGE)
        ut_err_set(err, "seal response for \"%s\": message over the %zu byte cap", ctx->peer,
                   env->max_message);
    else if (rc)
        ut_err_set(err, "seal response for \"%s\" failed: %s", ctx->peer, describe(rc));
    ut_memzero(kiv, sizeof(kiv));
    ERR_clear_error();
    return rc;
}

int cry_env_open_response(struct cry_env *env, struct cry_env_req *ctx, const uint8_t *msg,
                          size_t msg_len, uint8_t **payload, size_t *payload_len,
                          struct ut_err *err)
{
    uint8_t hash[CRY_ENV_HASH_BYTES], kiv[ENV_KIV_BYTES];
    struct env_view v = {0};
    uint8_t *pt = NULL;
    int rc;

    if (env == NULL || ctx == NULL || (msg == NULL && msg_len != 0) || payload == NULL ||
        payload_len == NULL) {
        ut_err_set(err, "open response: bad arguments");
        return -EINVAL;
    }
    *payload = NULL;
    *payload_len = 0;
    if (msg_len > env->max_message) {
        rc = CRY_ENV_E_TOO_LARGE;
        goto out;
    }
    rc = env_parse(msg, msg_len, ENV_TM(ENV_T_RESPONSE), &v);
    if (rc)
        goto out;
    if (!is_self(env, v.recipient, v.recipient_len)) {
        rc = CRY_ENV_E_RECIPIENT;
        goto out;
    }
    /* Bound to this request: same peer, its nonce, its transcript hash. */
    if (v.sender_len != ctx->peer_len || memcmp(v.sender, ctx->peer, ctx->peer_len) != 0 ||
        !ut_ct_eq(v.req_nonce, ctx->nonce, CRY_ENV_NONCE_BYTES) ||
        !ut_ct_eq(v.req_hash, ctx->hash, CRY_ENV_HASH_BYTES)) {
        rc = CRY_ENV_E_RESPONSE_BINDING;
        goto out;
    }
    if (ctx->done) {
        rc = CRY_ENV_E_RESPONSE_REPLAY;
        goto out;
    }
    rc = check_time(env, v.ts, env->clock(env->clock_arg));
    if (rc == 0)
        rc = check_sender(env, msg, &v, hash);
    if (rc == 0)
        rc = resp_key(env, ctx->resp_secret, v.nonce, v.sender, v.sender_len, env->self,
                      env->self_len, ctx->nonce, ctx->hash, kiv);
    if (rc)
        goto out;
    pt = malloc(v.ct_len ? v.ct_len : 1);
    if (pt == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = env_gcm_open(&env->algs, kiv, msg, v.aad_len, v.ct, v.ct_len, v.tag, pt);
    if (rc)
        goto out;
    /* The peer answered our offer, so it holds the session: use it. */
    if (ctx->has_offer)
        rc = env_peers_set_out(env->peers, ctx->peer, ctx->peer_len, &ctx->offer);
    if (rc)
        goto out;
    ctx->done = 1;
    ut_memzero(ctx->resp_secret, sizeof(ctx->resp_secret));
    ut_memzero(&ctx->offer, sizeof(ctx->offer));
    ctx->has_offer = 0;
    *payload = pt;
    *payload_len = v.ct_len;
    pt = NULL;
out:
    if (rc)
        refuse(err, rc, &v, "response");
    if (pt != NULL) {
        ut_memzero(pt, v.ct_len);
        free(pt);
    }
    ut_memzero(kiv, sizeof(kiv));
    ERR_clear_error();
    return rc;
}

int cry_env_req_is_session(const struct cry_env_req *ctx)
{
    return ctx->is_session;
}

void cry_env_req_free(struct cry_env_req *ctx)
{
    if (ctx == NULL)
        return;
    ut_memzero(ctx, sizeof(*ctx));
    free(ctx);
}

const char *cry_env_inreq_peer(const struct cry_env_inreq *ctx)
{
    return ctx->peer;
}

int cry_env_inreq_is_session(const struct cry_env_inreq *ctx)
{
    return ctx->is_session;
}

void cry_env_inreq_free(struct cry_env_inreq *ctx)
{
    if (ctx == NULL)
        return;
    ut_memzero(ctx, sizeof(*ctx));
    free(ctx);
}

void cry_env_session_drop(struct cry_env *env, const char *peer_id)
{
    size_t len = peer_id ? strnlen(peer_id, CRY_ENV_ID_MAX + 1) : 0;

    if (env != NULL && env_id_valid((const uint8_t *)peer_id, len))
        env_peers_drop_out(env->peers, (const uint8_t *)peer_id, len);
}
