/*
 * nonce.h - RFC 8555 §6.5 anti-replay nonces: issued by this node, each
 * redeemable once, checked without a database.
 *
 * A nonce is 43 characters of base64url: tag(6) || counter(8, big endian) ||
 * HMAC-SHA256(key, tag || counter)[0..18). The tag (first 6 bytes of
 * SHA-256 of the node id) says which node issued it, so in a cluster a node
 * can send a foreign nonce to its issuer (Boulder's nonce prefixes) instead
 * of answering badNonce. The key is random per process: a restart
 * invalidates every outstanding nonce (clients retry on badNonce, RFC 8555
 * §6.5). Single use: a bitmap remembers the last AKM_NONCE_WINDOW counters;
 * a nonce older than that is refused as stale.
 */
#ifndef AKAMU_NONCE_H
#define AKAMU_NONCE_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define AKM_NONCE_LEN     43         /* characters, no padding */
#define AKM_NONCE_TAG_LEN 6          /* bytes */
#define AKM_NONCE_WINDOW  (1u << 20) /* outstanding nonces remembered */

struct akm_nonces; /* opaque; thread-safe */

int akm_nonces_new(struct akm_nonces **out, const char *node_id, struct ut_err *err);
void akm_nonces_free(struct akm_nonces *n);
/* Writes a fresh NUL-terminated nonce into out[AKM_NONCE_LEN + 1]. */
void akm_nonce_issue(struct akm_nonces *n, char out[AKM_NONCE_LEN + 1]);
/* Redeems a nonce. 0: valid and now used. Errors (err says which):
 * -EINVAL malformed, -EXDEV issued by another node (see akm_nonce_tag),
 * -EBADMSG not ours (bad MAC: forged or from before a restart),
 * -EALREADY already used, -ESTALE older than the window. */
int akm_nonce_redeem(struct akm_nonces *n, const char *nonce, struct ut_err *err);
/* The issuing node's tag of a well-formed nonce, as 8 base64url characters
 * (out[9]); -EINVAL when malformed. */
int akm_nonce_tag(const char *nonce, char out[9]);
/* This node's tag in the same form. */
const char *akm_nonces_tag(const struct akm_nonces *n);

#endif
