/*
 * sign.h - ECDSA P-256 signatures over application data with the node's
 * identity key, outside the envelope (e.g. the self-signed cluster_nodes
 * entries of lib/gossip).
 *
 * Domain separation: what is signed is always ctx || 0x00 || m, where ctx
 * is a short label naming the purpose ("gossip-node-entry/v1", ...). Labels
 * starting with "gossip-envelope" are refused, so these helpers can never
 * produce a signature the envelope code would accept (the envelope signs
 * "gossip-envelope/v1 signature" 0x00 || hash).
 *
 * Signatures are r||s (CRY_P256_SIG_BYTES), SHA-256, like the envelope's.
 */
#ifndef CRY_SIGN_H
#define CRY_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/envelope.h"

#define CRY_SIGN_CTX_MAX 64 /* longest label, bytes */

/* Signs ctx || 0x00 || m with id's P-256 key. 0, -EINVAL (bad label),
 * -ENOMEM, -EIO. */
int cry_sign(const struct cry_identity *id, const char *ctx, const uint8_t *m, size_t len,
             uint8_t sig[CRY_P256_SIG_BYTES]);
/* Verifies a signature made by cry_sign with the key pub (65-byte SEC1
 * uncompressed point). 0 when valid, CRY_ENV_E_SIGNATURE when not,
 * -EINVAL for a bad label or a pub that is not a valid point, -ENOMEM,
 * -EIO. */
int cry_verify(const uint8_t pub[CRY_P256_PUB_BYTES], const char *ctx, const uint8_t *m, size_t len,
               const uint8_t sig[CRY_P256_SIG_BYTES]);

#endif
