/*
 * identity.c - our node's keys (cry_identity) and the pinned keys of our
 * peers (cry_keystore).
 *
 * The identity is immutable once built, so any number of threads may sign
 * and decapsulate with it at once (each call uses its own OpenSSL
 * contexts). The keystore is a small array under a rwlock: clusters have a
 * handful of nodes and lookups far outnumber pins. Parsed P-256 keys are
 * reference counted so a lookup survives a concurrent re-pin or unpin.
 */
#include "crypto/env_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "util/mem.h"

struct cry_identity {
    char id[CRY_ENV_ID_MAX + 1];
    size_t id_len;
    uint8_t xwing_seed[CRY_XWING_SK_BYTES]; /* secret */
    uint8_t p256_priv[CRY_P256_PRIV_BYTES]; /* secret */
    uint8_t xwing_pk[CRY_XWING_PK_BYTES];
    uint8_t p256_pub[CRY_P256_PUB_BYTES];
    EVP_PKEY *sign; /* private key; OpenSSL clears it on free */
};

static int id_check(const char *node_id, size_t *len, struct ut_err *err)
{
    size_t n = node_id ? strnlen(node_id, CRY_ENV_ID_MAX + 1) : 0;

    if (!env_id_valid((const uint8_t *)node_id, n)) {
        ut_err_set(err, "node id must be 1..%d printable ASCII bytes without spaces",
                   CRY_ENV_ID_MAX);
        return -EINVAL;
    }
    *len = n;
    return 0;
}

int cry_identity_load(const char *node_id, const uint8_t xwing_seed[CRY_XWING_SK_BYTES],
                      const uint8_t p256_priv[CRY_P256_PRIV_BYTES], struct cry_identity **out,
                      struct ut_err *err)
{
    struct cry_identity *id = NULL;
    size_t len;
    int rc;

    *out = NULL;
    rc = id_check(node_id, &len, err);
    if (rc)
        return rc;
    id = calloc(1, sizeof(*id));
    if (id == NULL)
        return -ENOMEM;
    memcpy(id->id, node_id, len);
    id->id_len = len;
    memcpy(id->xwing_seed, xwing_seed, CRY_XWING_SK_BYTES);
    memcpy(id->p256_priv, p256_priv, CRY_P256_PRIV_BYTES);
    rc = cry_xwing_keygen(id->xwing_seed, id->xwing_pk);
    if (rc) {
        ut_err_set(err, "X-Wing key derivation failed for node \"%s\"", id->id);
        goto out;
    }
    rc = p256_from_priv(id->p256_priv, &id->sign, id->p256_pub);
    if (rc) {
        ut_err_set(err, "%s P-256 signing key for node \"%s\"",
                   rc == -EINVAL ? "out-of-range" : "cannot import", id->id);
        goto out;
    }
    *out = id;
    id = NULL;
out:
    ERR_clear_error();
    cry_identity_free(id);
    return rc;
}

int cry_identity_generate(const char *node_id, struct cry_identity **out, struct ut_err *err)
{
    uint8_t seed[CRY_XWING_SK_BYTES], priv[CRY_P256_PRIV_BYTES];
    size_t len;
    int rc;

    *out = NULL;
    rc = id_check(node_id, &len, err);
    if (rc)
        return rc;
    /* A random 256-bit string is >= n (or 0) with probability < 2^-32:
     * draw again rather than reduce, so the scalar stays uniform. */
    for (int tries = 0; tries < 16; tries++) {
        if (RAND_priv_bytes(seed, sizeof(seed)) != 1 || RAND_priv_bytes(priv, sizeof(priv)) != 1) {
            ut_err_set(err, "random source failed");
            rc = -EIO;
            break;
        }
        rc = cry_identity_load(node_id, seed, priv, out, err);
        if (rc != -EINVAL)
            break;
    }
    ut_memzero(seed, sizeof(seed));
    ut_memzero(priv, sizeof(priv));
    return rc;
}

void cry_identity_export_secret(const struct cry_identity *id,
                                uint8_t xwing_seed[CRY_XWING_SK_BYTES],
                                uint8_t p256_priv[CRY_P256_PRIV_BYTES])
{
    memcpy(xwing_seed, id->xwing_seed, CRY_XWING_SK_BYTES);
    memcpy(p256_priv, id->p256_priv, CRY_P256_PRIV_BYTES);
}

void cry_identity_public(const struct cry_identity *id, uint8_t xwing_pk[CRY_XWING_PK_BYTES],
                         uint8_t p256_pub[CRY_P256_PUB_BYTES])
{
    if (xwing_pk)
        memcpy(xwing_pk, id->xwing_pk, CRY_XWING_PK_BYTES);
    if (p256_pub)
        memcpy(p256_pub, id->p256_pub, CRY_P256_PUB_BYTES);
}

const char *cry_identity_node_id(const struct cry_identity *id)
{
    return id->id;
}

void cry_identity_id_(const struct cry_identity *id, const uint8_t **p, size_t *len)
{
    *p = (const uint8_t *)id->id;
    *len = id->id_len;
}

void cry_identity_free(struct cry_identity *id)
{
    if (id == NULL)
        return;
    EVP_PKEY_free(id->sign);
    ut_memzero(id, sizeof(*id));
    free(id);
}

int cry_identity_sign_(const struct cry_identity *id, const uint8_t *m, size_t len,
                       uint8_t sig[CRY_P256_SIG_BYTES])
{
    return p256_sign(id->sign, m, len, sig);
}

int cry_identity_decaps_(const struct cry_identity *id, const uint8_t ct[CRY_XWING_CT_BYTES],
                         uint8_t ss[CRY_XWING_SS_BYTES])
{
    return cry_xwing_decaps(id->xwing_seed, ct, ss) ? -EIO : 0;
}

/* ---- keystore ---- */

struct ks_entry {
    char id[CRY_ENV_ID_MAX + 1];
    size_t id_len;
    uint8_t xwing_pk[CRY_XWING_PK_BYTES];
    EVP_PKEY *sig_pub;
};

struct cry_keystore {
    pthread_rwlock_t lock;
    struct ks_entry *e;
    size_t n, cap;
};

int cry_keystore_new(struct cry_keystore **out)
{
    struct cry_keystore *ks = calloc(1, sizeof(*ks));

    *out = NULL;
    if (ks == NULL)
        return -ENOMEM;
    if (pthread_rwlock_init(&ks->lock, NULL) != 0) {
        free(ks);
        return -ENOMEM;
    }
    *out = ks;
    return 0;
}

void cry_keystore_free(struct cry_keystore *ks)
{
    if (ks == NULL)
        return;
    for (size_t i = 0; i < ks->n; i++)
        EVP_PKEY_free(ks->e[i].sig_pub);
    free(ks->e);
    pthread_rwlock_destroy(&ks->lock);
    free(ks);
}

/* Index of id, or ks->n. Caller holds the lock. */
static size_t ks_find(const struct cry_keystore *ks, const uint8_t *id, size_t len)
{
    size_t i;

    for (i = 0; i < ks->n; i++)
        if (ks->e[i].id_len == len && memcmp(ks->e[i].id, id, len) == 0)
            break;
    return i;
}

int cry_keystore_pin(struct cry_keystore *ks, const char *peer_id,
                     const uint8_t xwing_pk[CRY_XWING_PK_BYTES],
                     const uint8_t p256_pub[CRY_P256_PUB_BYTES], struct ut_err *err)
{
    EVP_PKEY *pk = NULL;
    struct ks_entry *e;
    size_t len, i;
    int rc;

    rc = id_check(peer_id, &len, err);
    if (rc)
        return rc;
    if (cry_mlkem768_check_ek(xwing_pk) != 0) {
        ut_err_set(err, "peer \"%s\": X-Wing public key fails the ML-KEM-768 key check", peer_id);
        return -EINVAL;
    }
    rc = p256_from_pub(p256_pub, &pk);
    ERR_clear_error();
    if (rc) {
        ut_err_set(err, "peer \"%s\": %s", peer_id,
                   rc == -EINVAL ? "P-256 public key is not a valid uncompressed point"
                                 : "cannot import P-256 public key");
        return rc;
    }
    pthread_rwlock_wrlock(&ks->lock);
    i = ks_find(ks, (const uint8_t *)peer_id, len);
    if (i == ks->n) {
        if (ks->n == CRY_ENV_MAX_PEERS) {
            ut_err_set(err, "keystore full (%d peers)", CRY_ENV_MAX_PEERS);
            rc = -E2BIG;
            goto out;
        }
        if (ks->n == ks->cap) {
            size_t cap = ks->cap ? ks->cap * 2 : 8;
            struct ks_entry *ne = realloc(ks->e, cap * sizeof(*ne));

            if (ne == NULL) {
                rc = -ENOMEM;
                goto out;
            }
            ks->e = ne;
            ks->cap = cap;
        }
        e = &ks->e[ks->n++];
        memset(e, 0, sizeof(*e));
        memcpy(e->id, peer_id, len);
        e->id_len = len;
    } else {
        e = &ks->e[i];
        EVP_PKEY_free(e->sig_pub); /* lookups in flight hold their own reference */
    }
    memcpy(e->xwing_pk, xwing_pk, CRY_XWING_PK_BYTES);
    e->sig_pub = pk;
    pk = NULL;
out:
    pthread_rwlock_unlock(&ks->lock);
    EVP_PKEY_free(pk);
    return rc;
}

int cry_keystore_unpin(struct cry_keystore *ks, const char *peer_id)
{
    size_t len = peer_id ? strnlen(peer_id, CRY_ENV_ID_MAX + 1) : 0;
    size_t i;
    int rc = -ENOENT;

    if (len == 0)
        return -ENOENT;
    pthread_rwlock_wrlock(&ks->lock);
    i = ks_find(ks, (const uint8_t *)peer_id, len);
    if (i < ks->n) {
        EVP_PKEY_free(ks->e[i].sig_pub);
        ks->e[i] = ks->e[ks->n - 1];
        ks->n--;
        rc = 0;
    }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}

int cry_keystore_has(struct cry_keystore *ks, const char *peer_id)
{
    size_t len = peer_id ? strnlen(peer_id, CRY_ENV_ID_MAX + 1) : 0;
    int found;

    if (len == 0)
        return 0;
    pthread_rwlock_rdlock(&ks->lock);
    found = ks_find(ks, (const uint8_t *)peer_id, len) < ks->n;
    pthread_rwlock_unlock(&ks->lock);
    return found;
}

int cry_keystore_get_(struct cry_keystore *ks, const uint8_t *id, size_t id_len, EVP_PKEY **sig_pub,
                      uint8_t *xwing_pk)
{
    size_t i;
    int rc = -ENOENT;

    *sig_pub = NULL;
    pthread_rwlock_rdlock(&ks->lock);
    i = ks_find(ks, id, id_len);
    if (i < ks->n && EVP_PKEY_up_ref(ks->e[i].sig_pub) == 1) {
        *sig_pub = ks->e[i].sig_pub;
        if (xwing_pk)
            memcpy(xwing_pk, ks->e[i].xwing_pk, CRY_XWING_PK_BYTES);
        rc = 0;
    }
    pthread_rwlock_unlock(&ks->lock);
    return rc;
}
