/*
 * nodekey.h - this node's gossip identity, kept in the node_keys table.
 *
 * On first start a node generates its X-Wing (ML-KEM-768 + X25519) key and
 * its ECDSA P-256 signing key and stores them in node_keys (one row; the
 * private halves never leave the node). Later starts load the same keys.
 *
 * At rest: the two secrets (X-Wing seed, P-256 scalar: 64 bytes) are stored
 * in clear until a wrapping key exists; then they are sealed with
 * AES-256-GCM under HKDF-SHA256(wrapping key, info "node_keys v1 wrap")
 * with "node_keys v1|" + the row's node id as associated data; the row records the
 * wrapping key's id. gsp_nodekey_rewrap() moves a row from clear (or one
 * key) to another key in one transaction. Loading a wrapped row without the
 * right key is an error naming the key id it needs. See docs/operations.md.
 */
#ifndef GSP_NODEKEY_H
#define GSP_NODEKEY_H

#include <stdint.h>

#include "crypto/envelope.h"
#include "store/store.h"
#include "util/err.h"

/* The migration SQL each daemon includes in its schema. */
extern const char gsp_nodekey_schema_sql[];

#define GSP_WRAPKEY_BYTES  32
#define GSP_WRAPKEY_ID_LEN 16 /* hex chars */

/* A wrapping key and its public id (hex of the first 8 bytes of
 * SHA-256("node_keys wrap id" || key)); the id is safe to log and store. */
struct gsp_wrapkey {
    uint8_t key[GSP_WRAPKEY_BYTES];
    char id[GSP_WRAPKEY_ID_LEN + 1];
};

void gsp_wrapkey_init(struct gsp_wrapkey *w, const uint8_t key[GSP_WRAPKEY_BYTES]);
/* Zeroizes w. */
void gsp_wrapkey_clear(struct gsp_wrapkey *w);
/* Reads a wrapping key file: standard base64 of exactly 32 bytes, with
 * optional surrounding whitespace (e.g. `openssl rand -base64 32 > f`).
 * A file readable by group or others is accepted with a warning. */
int gsp_wrapkey_read_file(const char *path, struct gsp_wrapkey *w, struct ut_err *err);

/* Sealing a secret at rest under a wrapping key: node_keys below, and the
 * daemons' own secrets (ahdapa's token signing key). out = iv (12) ||
 * AES-256-GCM ciphertext || tag (16), GSP_WRAP_OVERHEAD bytes longer than
 * in; the AES key is HKDF-SHA256(ikm = w->key, no salt, info), one info
 * string per kind of secret; aad (a label and the owning row's identity)
 * is authenticated, so a sealed value moved to another row or purpose does
 * not open. in_len at most GSP_WRAP_MAX. 0, -EINVAL (size), -EIO (crypto
 * or no randomness). */
#define GSP_WRAP_OVERHEAD 28
#define GSP_WRAP_MAX      65536
int gsp_wrap_seal(const struct gsp_wrapkey *w, const char *info, const void *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *out);
/* Opens what gsp_wrap_seal made with the same w, info and aad: out gets
 * in_len - GSP_WRAP_OVERHEAD bytes. -EBADMSG when it does not authenticate
 * (another key, info or aad, or altered bytes; out is zeroized), -EINVAL
 * (size), -EIO. */
int gsp_wrap_open(const struct gsp_wrapkey *w, const char *info, const void *aad, size_t aad_len,
                  const uint8_t *in, size_t in_len, uint8_t *out);

/* Loads this node's identity, creating and storing it on first start.
 * wrap: the current wrapping key or NULL; a row still in clear is sealed
 * under wrap in the same transaction. *created (optional) is set to 1
 * when the keys were generated now. Errors: the stored row belongs to
 * another node id (-EEXIST), it is wrapped and wrap is NULL or another key
 * (-EACCES), it is corrupt (-EBADMSG). */
int gsp_nodekey_load(struct store *s, const char *node_id, const struct gsp_wrapkey *wrap,
                     struct cry_identity **out, int *created, struct ut_err *err);

/* Re-seals the stored secrets: from clear or old_key (NULL = currently in
 * clear) to new_key (NULL = store in clear). Idempotent when the row is
 * already under new_key. */
int gsp_nodekey_rewrap(struct store *s, const struct gsp_wrapkey *old_key,
                       const struct gsp_wrapkey *new_key, struct ut_err *err);

/* The id of the key the row is wrapped with ("" when in clear), for status
 * output. 0 or negative. */
int gsp_nodekey_wrap_id(struct store *s, char out[GSP_WRAPKEY_ID_LEN + 1], struct ut_err *err);

#endif
