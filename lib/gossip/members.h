/*
 * members.h - the self-signed entries of the replicated cluster_nodes
 * table (docs/replication.md, "Trust model").
 *
 * Row key = node id; value = JSON
 *   {"node_id", "url", "kem_alg": "X-Wing", "kem_public_key": b64url,
 *    "signing_alg": "ES256", "signing_public_key": b64url, "ts": unix ms,
 *    "sig": b64url(r||s)
 *    [, "prev_signing_public_key": b64url, "prev_sig": b64url]
 *    [, "certification": string]}
 * sig is the node's own P-256 signature (cry_sign, context
 * GSP_MEMBER_SIG_CTX) over the canonical bytes
 *   u16 len || node_id, u16 len || url, u16 len || kem_alg,
 *   kem_public_key (1216), u16 len || signing_alg,
 *   signing_public_key (65), u64 ts       (all big-endian)
 * A key rotation also carries the previous signing key and its signature
 * (context GSP_MEMBER_ROT_CTX) over the same bytes.
 *
 * "certification" (engine.h, "Vouching") is outside the canonical bytes:
 * it is itself an authority's signature over the node id and both keys,
 * so it needs no other cover, and entries made before it existed (and
 * nodes that do not know it) stay valid. Whoever relays an entry could
 * strip it; only trusted members relay, and without it the node is just
 * not pinned by certification.
 *
 * Acceptance of a remote entry for node X (gsp_member_check): it must be
 * self-consistent (sig verifies with the key it carries) and, when we
 * already know a key for X (pinned, or from an earlier accepted entry),
 * either carry that key or be a rotation whose prev key is that key. So
 * only X's own key can change X's entry; no other member can.
 */
#ifndef GSP_MEMBERS_H
#define GSP_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/envelope.h"
#include "gossip/engine.h"
#include "util/err.h"

#define GSP_MEMBERS_TABLE  "cluster_nodes"
#define GSP_MEMBER_SIG_CTX "gossip-node-entry/v1"
#define GSP_MEMBER_ROT_CTX "gossip-node-rotation/v1"
#define GSP_MEMBER_MAX     8192 /* largest value accepted, bytes */
#define GSP_URL_MAX        512  /* including the NUL */

struct gsp_member {
    char node_id[CRY_ENV_ID_MAX + 1];
    char url[GSP_URL_MAX];
    uint8_t kem_pk[CRY_XWING_PK_BYTES];
    uint8_t sig_pub[CRY_P256_PUB_BYTES];
    uint64_t ts;
    uint8_t sig[CRY_P256_SIG_BYTES];
    int has_prev;
    uint8_t prev_pub[CRY_P256_PUB_BYTES];
    uint8_t prev_sig[CRY_P256_SIG_BYTES];
    char cert[GSP_VOUCH_MAX + 1]; /* "" when the entry carries none */
};

/* Builds and signs the entry of identity id (its url may be "" or NULL).
 * prev: the identity being rotated away from (NULL normally): the entry
 * then also carries prev's key and signature. cert: the certification to
 * carry (NULL or "": none). *json is malloc'd text. */
int gsp_member_make(const struct cry_identity *id, const struct cry_identity *prev, const char *url,
                    uint64_t ts, const char *cert, char **json, size_t *len, struct ut_err *err);

/* Parses a value and checks its own signatures (sig with the key it
 * carries; prev_sig with the prev key). -EINVAL (malformed, including a
 * "certification" that is no usable string) or -EPERM (a signature does
 * not verify), with a message. The certification is not checked here. */
int gsp_member_parse(const uint8_t *value, size_t len, struct gsp_member *m, struct ut_err *err);

/* May m (already parsed) be taken for its node, given the key we trust for
 * that node (NULL: none yet)? 0 or -EPERM. */
int gsp_member_check(const struct gsp_member *m, const uint8_t known_pub[CRY_P256_PUB_BYTES],
                     struct ut_err *err);

#endif
