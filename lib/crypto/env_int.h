/*
 * env_int.h - internals shared by the envelope files (not installed, not
 * part of the API). One concern per file:
 *   env_wire.c  byte layout: parse (pure, no crypto) and header writing
 *   env_kdf.c   HKDF-SHA256 labels, AES-256-GCM, SHA-256
 *   p256.c      ECDSA P-256 keys and fixed-length r||s signatures
 *   identity.c  cry_identity and cry_keystore
 *   replay.c    the per-peer nonce replay cache
 *   session.c   per-peer state: session keys, sliding counter window
 *   envelope.c  cry_env: seal/open, ordering of the checks, errors
 */
#ifndef CRY_ENV_INT_H
#define CRY_ENV_INT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "crypto/envelope.h"

/* ---- wire (docs/gossip-wire.md §2) ---- */

enum { ENV_T_KEM = 1, ENV_T_SESSION = 2, ENV_T_RESPONSE = 3 };
#define ENV_TM(t)              (1u << (t)) /* type mask bit */
#define ENV_FLAG_SESSION_OFFER 0x01u
#define ENV_FIXED              29 /* version..nonce */
#define ENV_LEN_FIELD          4
#define ENV_TAG                16
#define ENV_TRAILER            (ENV_TAG + CRY_P256_SIG_BYTES)
#define ENV_SESSION_EXTRA      (CRY_ENV_SID_BYTES + 8)
#define ENV_RESPONSE_EXTRA     (CRY_ENV_NONCE_BYTES + CRY_ENV_HASH_BYTES)

/* A parsed message: every pointer points into the input buffer. For
 * writing, the caller fills the same struct and env_header_write() lays it
 * out (ct/tag/sig are then unused). */
struct env_view {
    uint8_t type, flags;
    uint64_t ts;
    const uint8_t *nonce;
    const uint8_t *sender, *recipient;
    size_t sender_len, recipient_len;
    const uint8_t *kem_ct;               /* ENV_T_KEM */
    const uint8_t *sid;                  /* ENV_T_SESSION */
    uint64_t counter;                    /* ENV_T_SESSION, >= 1 */
    const uint8_t *req_nonce, *req_hash; /* ENV_T_RESPONSE */
    size_t aad_len;                      /* header = AAD = bytes [0, aad_len) */
    const uint8_t *ct;                   /* payload ciphertext */
    size_t ct_len;                       /* = payload length */
    const uint8_t *tag;
    size_t signed_len; /* bytes [0, signed_len) are signed */
    const uint8_t *sig;
};

/* Header length (incl. the length field) for a type and id lengths. */
size_t env_header_len(unsigned type, size_t sender_len, size_t recipient_len);
/* Syntax only: lengths, version, type (must be in type_mask), flags, id
 * bytes. Returns 0 or CRY_ENV_E_{TRUNCATED,MALFORMED,VERSION,TYPE}. The
 * caller has already checked len against the size cap. */
int env_parse(const uint8_t *msg, size_t len, unsigned type_mask, struct env_view *v);
/* Writes the header (env_header_len() bytes) for payload length plen. */
void env_header_write(uint8_t *out, const struct env_view *v, uint32_t plen);
/* 1 when b[0..n) is a valid node id (1..255 bytes 0x21..0x7e). */
int env_id_valid(const uint8_t *b, size_t n);

/* ---- kdf / aead / hash ---- */

struct env_algs {
    EVP_KDF *hkdf;
    EVP_CIPHER *gcm;
    EVP_MD *sha256;
};

#define ENV_KEY_BYTES 32
#define ENV_IV_BYTES  12
#define ENV_KIV_BYTES (ENV_KEY_BYTES + ENV_IV_BYTES)

int env_algs_init(struct env_algs *a);
void env_algs_free(struct env_algs *a);
/* HKDF-SHA256(ikm, salt, info) with info = "gossip-envelope/v1" 0x00 label
 * 0x00 u8(|S|) S u8(|R|) R extra. 0 or -EIO. */
int env_hkdf(const struct env_algs *a, const uint8_t *ikm, size_t ikm_len, const uint8_t *salt,
             size_t salt_len, const char *label, const uint8_t *s, size_t s_len, const uint8_t *r,
             size_t r_len, const uint8_t *extra, size_t extra_len, uint8_t *out, size_t out_len);
/* kiv = key(32) || iv(12). 0 or -EIO. */
int env_gcm_seal(const struct env_algs *a, const uint8_t kiv[ENV_KIV_BYTES], const uint8_t *aad,
                 size_t aad_len, const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[ENV_TAG]);
/* 0, CRY_ENV_E_DECRYPT (pt is zeroized then), or -EIO. */
int env_gcm_open(const struct env_algs *a, const uint8_t kiv[ENV_KIV_BYTES], const uint8_t *aad,
                 size_t aad_len, const uint8_t *ct, size_t len, const uint8_t tag[ENV_TAG],
                 uint8_t *pt);
int env_sha256(const struct env_algs *a, const uint8_t *p, size_t n,
               uint8_t out[CRY_ENV_HASH_BYTES]);
/* The exact bytes ECDSA signs: "gossip-envelope/v1 signature" 0x00 || h. */
#define ENV_SIG_CTX     "gossip-envelope/v1 signature"
#define ENV_SIG_MSG_LEN (sizeof(ENV_SIG_CTX) + CRY_ENV_HASH_BYTES)
void env_sig_msg(const uint8_t h[CRY_ENV_HASH_BYTES], uint8_t m[ENV_SIG_MSG_LEN]);

/* ---- P-256 ---- */

/* Key from a raw scalar; also returns the public point. -EINVAL when the
 * scalar is out of [1, n-1], -EIO on OpenSSL failure. */
int p256_from_priv(const uint8_t priv[CRY_P256_PRIV_BYTES], EVP_PKEY **out,
                   uint8_t pub[CRY_P256_PUB_BYTES]);
/* Public key from the 65-byte SEC1 point; -EINVAL when not on the curve. */
int p256_from_pub(const uint8_t pub[CRY_P256_PUB_BYTES], EVP_PKEY **out);
/* ECDSA-SHA256 over m; sig = r||s. 0 or -EIO. */
int p256_sign(EVP_PKEY *key, const uint8_t *m, size_t len, uint8_t sig[CRY_P256_SIG_BYTES]);
/* 0 when valid, CRY_ENV_E_SIGNATURE when not, -EIO/-ENOMEM on failure. */
int p256_verify(EVP_PKEY *key, const uint8_t *m, size_t len, const uint8_t sig[CRY_P256_SIG_BYTES]);

/* ---- identity / keystore internals ---- */

int cry_identity_sign_(const struct cry_identity *id, const uint8_t *m, size_t len,
                       uint8_t sig[CRY_P256_SIG_BYTES]);
int cry_identity_decaps_(const struct cry_identity *id, const uint8_t ct[CRY_XWING_CT_BYTES],
                         uint8_t ss[CRY_XWING_SS_BYTES]);
void cry_identity_id_(const struct cry_identity *id, const uint8_t **p, size_t *len);
/* Looks up a pinned peer. On success *sig_pub is a new reference
 * (EVP_PKEY_free it) and, when xwing_pk is non-NULL, the KEM key is copied
 * out. A reference stays valid when the pin is replaced or removed
 * meanwhile. 0 or -ENOENT. */
int cry_keystore_get_(struct cry_keystore *ks, const uint8_t *id, size_t id_len, EVP_PKEY **sig_pub,
                      uint8_t *xwing_pk);

/* ---- replay cache ---- */

/* Nonces of one peer, bounded to max entries. An entry is dropped when its
 * timestamp leaves the acceptance window or, when full, oldest-first; the
 * highest dropped timestamp becomes a watermark below which every nonce is
 * refused, so dropping never lets a replay through. Not locked: the
 * caller (session.c) holds the env lock. */
struct env_replay;
struct env_replay *env_replay_new(size_t max, const uint8_t key[16]);
void env_replay_free(struct env_replay *r);
/* Refuses (CRY_ENV_E_REPLAY) when nonce is present or ts <= watermark,
 * else records it. Entries with ts < horizon are dropped first. 0,
 * CRY_ENV_E_REPLAY or -ENOMEM. */
int env_replay_check_insert(struct env_replay *r, const uint8_t nonce[CRY_ENV_NONCE_BYTES],
                            uint64_t ts, uint64_t horizon);
size_t env_replay_count(const struct env_replay *r);

/* ---- per-peer state, sessions ---- */

struct env_window {
    uint64_t top; /* highest counter accepted, 0 = none */
    uint64_t bits[CRY_ENV_REPLAY_WINDOW / 64];
};
/* 0 (and marks ctr), CRY_ENV_E_COUNTER_REPLAY or CRY_ENV_E_COUNTER_OLD. */
int env_window_check_set(struct env_window *w, uint64_t ctr);

struct env_session {
    uint8_t sid[CRY_ENV_SID_BYTES];
    uint8_t secret[ENV_KEY_BYTES];
    uint64_t created_ms;
};

struct env_peers;
struct env_limits {
    uint64_t max_age_ms, max_skew_ms, session_age_ms, session_msgs;
    size_t replay_max;
};
struct env_peers *env_peers_new(const struct env_limits *lim);
/* Zeroizes every session secret. */
void env_peers_free(struct env_peers *ps);
/* Nonce replay check for a verified X-Wing request from peer id. */
int env_peers_nonce(struct env_peers *ps, const uint8_t *id, size_t id_len,
                    const uint8_t nonce[CRY_ENV_NONCE_BYTES], uint64_t ts, uint64_t now);
/* Records an incoming session offered by peer id (after its request opened). */
int env_peers_add_in(struct env_peers *ps, const uint8_t *id, size_t id_len,
                     const struct env_session *s);
/* For a verified session message: finds the session, checks age/limit and
 * the window, copies the secret to *s. 0 or CRY_ENV_E_{NO_SESSION,
 * SESSION_EXPIRED,COUNTER_REPLAY,COUNTER_OLD}. */
int env_peers_use_in(struct env_peers *ps, const uint8_t *id, size_t id_len,
                     const uint8_t sid[CRY_ENV_SID_BYTES], uint64_t ctr, uint64_t now,
                     struct env_session *s);
/* Confirms an outgoing session to peer id (its offer was answered); keeps
 * the newest. */
int env_peers_set_out(struct env_peers *ps, const uint8_t *id, size_t id_len,
                      const struct env_session *s);
/* Takes the next counter of a fresh outgoing session to peer id: 1 and
 * s and ctr filled, or 0 when there is none (or it is due for rekeying, in
 * which case it is forgotten). */
int env_peers_take_out(struct env_peers *ps, const uint8_t *id, size_t id_len, uint64_t now,
                       struct env_session *s, uint64_t *ctr);
void env_peers_drop_out(struct env_peers *ps, const uint8_t *id, size_t id_len);

#endif
