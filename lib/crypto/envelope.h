/*
 * envelope.h - sealed gossip envelopes: seal/open of one gossip message
 * between two nodes with X-Wing (ML-KEM-768 + X25519), HKDF-SHA256,
 * AES-256-GCM and an ECDSA P-256 signature. The wire format, every label
 * and the threat model are in docs/gossip-wire.md; this header is the API.
 *
 * Objects:
 *   cry_identity  our node: node id, X-Wing secret seed, P-256 signing key.
 *                 Immutable after creation; zeroized on free.
 *   cry_keystore  the pinned peers: node id -> (X-Wing public key, P-256
 *                 public key). Filled by the caller (gossip layer, from the
 *                 database); lib/crypto never reads the database itself.
 *                 A sender is accepted only if its id is pinned here, and
 *                 its signature is checked against the pinned key, never
 *                 against a key carried in a message.
 *   cry_env       one endpoint: identity + keystore + clock + limits +
 *                 per-peer state (nonce replay cache, session keys).
 *   cry_env_req   the requester's context of one sent request, needed to
 *                 open the matching response (and nothing else).
 *   cry_env_inreq the responder's context of one opened request, needed to
 *                 seal the matching response.
 *
 * Threads: cry_env, cry_keystore and cry_identity may be used from any
 * number of threads at once. A cry_env_req / cry_env_inreq belongs to one
 * thread at a time.
 *
 * Returns: 0, or a negative code: either one of the CRY_ENV_E_* refusal
 * reasons below (the message was refused; each reason has its own code),
 * or -EINVAL (caller misuse: bad argument), -ENOMEM, -EIO (OpenSSL or
 * random source failure), -E2BIG (a table of ours is full). cry_env_errname()
 * names any of them for logs. Functions taking a struct ut_err write one
 * line saying what was wrong (peer ids are printable ASCII, so they may be
 * quoted in the message once the parser has accepted them).
 */
#ifndef CRY_ENVELOPE_H
#define CRY_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/kem.h"
#include "util/err.h"

#define CRY_ENV_VERSION 1

#define CRY_P256_PRIV_BYTES 32 /* big-endian scalar, 1 <= d < n */
#define CRY_P256_PUB_BYTES  65 /* SEC1 uncompressed point 0x04 || X || Y */
#define CRY_P256_SIG_BYTES  64 /* r || s, each 32 bytes big-endian */

#define CRY_ENV_NONCE_BYTES   16
#define CRY_ENV_SID_BYTES     16 /* session id */
#define CRY_ENV_HASH_BYTES    32 /* SHA-256 of a request's signed range */
#define CRY_ENV_ID_MAX        255
#define CRY_ENV_MAX_MESSAGE   (64u * 1024 * 1024) /* hard cap on any input */
#define CRY_ENV_MAX_PEERS     4096                /* pinned ids / peer states */
#define CRY_ENV_REPLAY_WINDOW 1024                /* session counter window, bits */

/* Defaults of struct cry_env_config (a 0 field means "default"). */
#define CRY_ENV_DEF_MAX_AGE_MS      300000u /* oldest timestamp accepted */
#define CRY_ENV_DEF_MAX_SKEW_MS     30000u  /* how far ahead of us a sender may be */
#define CRY_ENV_DEF_SESSION_AGE_MS  300000u /* rekey sessions at least this often */
#define CRY_ENV_DEF_SESSION_MSGS    (1u << 20)
#define CRY_ENV_DEF_REPLAY_PER_PEER 65536u

/*
 * Refusal reasons. Distinct from every errno value (they start at -1000),
 * stable (they appear in logs and metrics by name), never reused.
 */
enum cry_env_error {
    CRY_ENV_E_TOO_LARGE = -1000,        /* input longer than the configured cap */
    CRY_ENV_E_TRUNCATED = -1001,        /* input shorter than its header says */
    CRY_ENV_E_MALFORMED = -1002,        /* bad id bytes, reserved flags, trailing bytes */
    CRY_ENV_E_VERSION = -1003,          /* unknown protocol version */
    CRY_ENV_E_TYPE = -1004,             /* unknown type or wrong type for this call */
    CRY_ENV_E_RECIPIENT = -1005,        /* recipient id is not ours */
    CRY_ENV_E_UNKNOWN_SENDER = -1006,   /* sender id not pinned in the keystore */
    CRY_ENV_E_SIGNATURE = -1007,        /* signature does not verify with the pinned key */
    CRY_ENV_E_STALE = -1008,            /* timestamp older than max_age */
    CRY_ENV_E_FUTURE = -1009,           /* timestamp further ahead than max_skew */
    CRY_ENV_E_REPLAY = -1010,           /* nonce already seen (or older than what we can track) */
    CRY_ENV_E_DECRYPT = -1011,          /* AEAD tag mismatch after a valid signature */
    CRY_ENV_E_RESPONSE_BINDING = -1012, /* response is for another request or peer */
    CRY_ENV_E_RESPONSE_REPLAY = -1013,  /* a response for this request was already opened */
    CRY_ENV_E_NO_SESSION = -1014,       /* session id unknown (peer restarted, rekeyed) */
    CRY_ENV_E_SESSION_EXPIRED = -1015,  /* session past its age or message limit */
    CRY_ENV_E_COUNTER_REPLAY = -1016,   /* session counter already seen */
    CRY_ENV_E_COUNTER_OLD = -1017,      /* session counter below the sliding window */
    CRY_ENV_E_UNKNOWN_PEER = -1018,     /* seal: recipient id not pinned in the keystore */
};

/* Short stable token for logs/metrics: "truncated", "signature", ... also
 * for 0 ("ok") and the errno codes above ("einval", ...). Never NULL. */
const char *cry_env_errname(int err);

/* ---- identity ---------------------------------------------------------- */

struct cry_identity;

/* New random identity (X-Wing seed and P-256 scalar from RAND_priv_bytes).
 * node_id: 1..255 printable ASCII bytes (0x21..0x7e), copied. */
int cry_identity_generate(const char *node_id, struct cry_identity **out, struct ut_err *err);
/* Identity from stored secrets (the node_keys row). -EINVAL when the scalar
 * is 0 or >= the group order. The inputs are copied; the caller wipes its own. */
int cry_identity_load(const char *node_id, const uint8_t xwing_seed[CRY_XWING_SK_BYTES],
                      const uint8_t p256_priv[CRY_P256_PRIV_BYTES], struct cry_identity **out,
                      struct ut_err *err);
/* The secrets, for storing (encrypted) in node_keys. Caller wipes them. */
void cry_identity_export_secret(const struct cry_identity *id,
                                uint8_t xwing_seed[CRY_XWING_SK_BYTES],
                                uint8_t p256_priv[CRY_P256_PRIV_BYTES]);
/* The public keys, as served by /api/gossip/kem-info and pinned by peers. */
void cry_identity_public(const struct cry_identity *id, uint8_t xwing_pk[CRY_XWING_PK_BYTES],
                         uint8_t p256_pub[CRY_P256_PUB_BYTES]);
const char *cry_identity_node_id(const struct cry_identity *id);
/* Zeroizes every secret and frees. NULL is a no-op. */
void cry_identity_free(struct cry_identity *id);

/* ---- pinned peer keys --------------------------------------------------- */

struct cry_keystore;

int cry_keystore_new(struct cry_keystore **out);
void cry_keystore_free(struct cry_keystore *ks);
/* Pins (or replaces: key rotation) the keys of peer_id. Both keys are
 * validated here (ML-KEM encapsulation key check, P-256 point on curve), so
 * a bad key is refused at seeding time, not at the first message.
 * -EINVAL for a bad id or key, -E2BIG past CRY_ENV_MAX_PEERS ids. */
int cry_keystore_pin(struct cry_keystore *ks, const char *peer_id,
                     const uint8_t xwing_pk[CRY_XWING_PK_BYTES],
                     const uint8_t p256_pub[CRY_P256_PUB_BYTES], struct ut_err *err);
/* Removes the pin: messages from peer_id are refused from now on
 * (CRY_ENV_E_UNKNOWN_SENDER). 0, or -ENOENT when it was not pinned. */
int cry_keystore_unpin(struct cry_keystore *ks, const char *peer_id);
/* 1 when peer_id is pinned, else 0. */
int cry_keystore_has(struct cry_keystore *ks, const char *peer_id);

/* ---- endpoint ------------------------------------------------------------ */

/* Milliseconds since the Unix epoch. Injectable so tests can move time. */
typedef uint64_t (*cry_env_clock_fn)(void *arg);
/* Fills out[0..n) with random bytes, 0 or negative. Tests/fuzzing only:
 * production leaves it NULL (OpenSSL RAND_bytes). */
typedef int (*cry_env_rand_fn)(void *arg, uint8_t *out, size_t n);

struct cry_env_config {
    size_t max_message;          /* input/output cap; 0 or > CRY_ENV_MAX_MESSAGE = the hard cap */
    uint64_t max_age_ms;         /* 0 = CRY_ENV_DEF_MAX_AGE_MS */
    uint64_t max_skew_ms;        /* 0 = CRY_ENV_DEF_MAX_SKEW_MS */
    int sessions;                /* nonzero: seal_request uses per-peer session keys */
    uint64_t session_max_age_ms; /* 0 = CRY_ENV_DEF_SESSION_AGE_MS */
    uint64_t session_max_msgs;   /* 0 = CRY_ENV_DEF_SESSION_MSGS */
    size_t replay_max_per_peer;  /* nonces remembered per peer; 0 = default */
    cry_env_clock_fn clock;      /* NULL = CLOCK_REALTIME */
    void *clock_arg;
    cry_env_rand_fn rand; /* NULL = RAND_bytes */
    void *rand_arg;
};

struct cry_env;
struct cry_env_req;
struct cry_env_inreq;

/* The env borrows id and ks: both must outlive it. cfg may be NULL
 * (all defaults); it is copied. */
int cry_env_new(const struct cry_identity *id, struct cry_keystore *ks,
                const struct cry_env_config *cfg, struct cry_env **out, struct ut_err *err);
/* Zeroizes all session keys and frees. NULL is a no-op. */
void cry_env_free(struct cry_env *env);

/*
 * Requester side. Seals payload for peer_id and returns the message in
 * *msg (malloc'd, free() it) and, when ctx is non-NULL, a context for the
 * response (free it with cry_env_req_free). With sessions enabled and a
 * confirmed, fresh session to peer_id, the message is a small session
 * message; otherwise a full X-Wing message (which also offers a session
 * when sessions are enabled; it is confirmed when its response opens).
 */
int cry_env_seal_request(struct cry_env *env, const char *peer_id, const uint8_t *payload,
                         size_t payload_len, uint8_t **msg, size_t *msg_len,
                         struct cry_env_req **ctx, struct ut_err *err);
/* Opens the response to ctx's request. Succeeds at most once per ctx
 * (later: CRY_ENV_E_RESPONSE_REPLAY); a failure leaves ctx usable, so junk
 * injected by a third party cannot make the real response unopenable.
 * *payload is malloc'd (free() it; wipe it first if it is secret); it is
 * non-NULL even for an empty payload. */
int cry_env_open_response(struct cry_env *env, struct cry_env_req *ctx, const uint8_t *msg,
                          size_t msg_len, uint8_t **payload, size_t *payload_len,
                          struct ut_err *err);
/* 1 when ctx's request was a session message, 0 when it was a full X-Wing one. */
int cry_env_req_is_session(const struct cry_env_req *ctx);
void cry_env_req_free(struct cry_env_req *ctx);

/*
 * Responder side. Opens a request (X-Wing or session message). On success
 * *payload as above and, when ctx is non-NULL, the context to answer it.
 * The sender's id is cry_env_inreq_peer(*ctx).
 */
int cry_env_open_request(struct cry_env *env, const uint8_t *msg, size_t msg_len, uint8_t **payload,
                         size_t *payload_len, struct cry_env_inreq **ctx, struct ut_err *err);
/* Seals the one response to ctx's request (-EALREADY the second time). */
int cry_env_seal_response(struct cry_env *env, struct cry_env_inreq *ctx, const uint8_t *payload,
                          size_t payload_len, uint8_t **msg, size_t *msg_len, struct ut_err *err);
const char *cry_env_inreq_peer(const struct cry_env_inreq *ctx);
int cry_env_inreq_is_session(const struct cry_env_inreq *ctx);
void cry_env_inreq_free(struct cry_env_inreq *ctx);

/* Forgets the outgoing session to peer_id, so the next request is a full
 * X-Wing message. Call it when the peer refused a session message (it
 * restarted and lost its sessions: CRY_ENV_E_NO_SESSION on its side). */
void cry_env_session_drop(struct cry_env *env, const char *peer_id);

/* Bytes a sealed message of each kind adds to the payload, for ids of the
 * given lengths (for capacity planning and tests). */
size_t cry_env_overhead_kem(size_t sender_len, size_t recipient_len);
size_t cry_env_overhead_session(size_t sender_len, size_t recipient_len);
size_t cry_env_overhead_response(size_t sender_len, size_t recipient_len);

#endif
