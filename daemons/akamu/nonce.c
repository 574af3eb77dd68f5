/*
 * nonce.c - see nonce.h. Issue and redeem share one mutex: both are a few
 * hundred nanoseconds and ACME request rates are far below what that
 * serializes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "nonce.h"
#include "util/b64.h"
#include "util/mem.h"

#define MAC_LEN 18
#define RAW_LEN (AKM_NONCE_TAG_LEN + 8 + MAC_LEN) /* 32 bytes -> 43 chars */
#define WINDOW  ((uint64_t)(AKM_NONCE_WINDOW))

struct akm_nonces {
    pthread_mutex_t lock;
    uint8_t key[32];
    uint8_t tag[AKM_NONCE_TAG_LEN];
    char tag_text[9];
    uint64_t next; /* next counter to issue; counters start at 1 */
    uint8_t *used; /* WINDOW bits: bit (c % WINDOW) is counter c's */
};

static void mac(const struct akm_nonces *n, const uint8_t *msg, uint8_t out[MAC_LEN])
{
    uint8_t full[32];
    unsigned int len = sizeof(full);

    HMAC(EVP_sha256(), n->key, sizeof(n->key), msg, AKM_NONCE_TAG_LEN + 8, full, &len);
    memcpy(out, full, MAC_LEN);
}

int akm_nonces_new(struct akm_nonces **out, const char *node_id, struct ut_err *err)
{
    struct akm_nonces *n = ut_xcalloc(1, sizeof(*n));
    uint8_t h[SHA256_DIGEST_LENGTH];

    *out = NULL;
    if (RAND_bytes(n->key, sizeof(n->key)) != 1) {
        ut_err_set(err, "nonces: no randomness for the nonce key");
        free(n);
        return -EIO;
    }
    SHA256((const unsigned char *)node_id, strlen(node_id), h);
    memcpy(n->tag, h, AKM_NONCE_TAG_LEN);
    ut_b64_encode(n->tag, AKM_NONCE_TAG_LEN, n->tag_text, 1);
    n->used = ut_xcalloc(WINDOW / 8, 1);
    n->next = 1;
    pthread_mutex_init(&n->lock, NULL);
    *out = n;
    return 0;
}

void akm_nonces_free(struct akm_nonces *n)
{
    if (n == NULL)
        return;
    pthread_mutex_destroy(&n->lock);
    OPENSSL_cleanse(n->key, sizeof(n->key));
    free(n->used);
    free(n);
}

const char *akm_nonces_tag(const struct akm_nonces *n)
{
    return n->tag_text;
}

void akm_nonce_issue(struct akm_nonces *n, char out[AKM_NONCE_LEN + 1])
{
    uint8_t raw[RAW_LEN];
    uint64_t c;

    pthread_mutex_lock(&n->lock);
    c = n->next++;
    n->used[(c % WINDOW) / 8] &= (uint8_t) ~(1u << (c % 8)); /* bit now belongs to c */
    pthread_mutex_unlock(&n->lock);
    memcpy(raw, n->tag, AKM_NONCE_TAG_LEN);
    for (int i = 0; i < 8; i++)
        raw[AKM_NONCE_TAG_LEN + i] = (uint8_t)(c >> (56 - 8 * i));
    mac(n, raw, raw + AKM_NONCE_TAG_LEN + 8);
    ut_b64_encode(raw, sizeof(raw), out, 1);
}

static int decode(const char *nonce, uint8_t raw[RAW_LEN])
{
    uint8_t buf[RAW_LEN + 3];
    size_t len;

    if (nonce == NULL || strnlen(nonce, AKM_NONCE_LEN + 1) != AKM_NONCE_LEN)
        return -EINVAL;
    if (ut_b64_decode(nonce, AKM_NONCE_LEN, buf, &len, 1) < 0 || len != RAW_LEN)
        return -EINVAL;
    memcpy(raw, buf, RAW_LEN);
    return 0;
}

int akm_nonce_tag(const char *nonce, char out[9])
{
    uint8_t raw[RAW_LEN];

    if (decode(nonce, raw) < 0)
        return -EINVAL;
    ut_b64_encode(raw, AKM_NONCE_TAG_LEN, out, 1);
    return 0;
}

int akm_nonce_redeem(struct akm_nonces *n, const char *nonce, struct ut_err *err)
{
    uint8_t raw[RAW_LEN], want[MAC_LEN];
    uint64_t c = 0;
    int rc = 0;

    if (decode(nonce, raw) < 0) {
        ut_err_set(err, "nonce: not a nonce issued by this server (malformed)");
        return -EINVAL;
    }
    if (CRYPTO_memcmp(raw, n->tag, AKM_NONCE_TAG_LEN) != 0) {
        ut_err_set(err, "nonce: issued by another node");
        return -EXDEV;
    }
    mac(n, raw, want);
    if (CRYPTO_memcmp(want, raw + AKM_NONCE_TAG_LEN + 8, MAC_LEN) != 0) {
        ut_err_set(err, "nonce: unknown (forged, or issued before a restart)");
        return -EBADMSG;
    }
    for (int i = 0; i < 8; i++)
        c = c << 8 | raw[AKM_NONCE_TAG_LEN + i];
    pthread_mutex_lock(&n->lock);
    if (c == 0 || c >= n->next) {
        /* A valid MAC on a counter never issued: cannot happen with our key. */
        ut_err_set(err, "nonce: unknown counter");
        rc = -EBADMSG;
    } else if (n->next - c > WINDOW) {
        ut_err_set(err, "nonce: too old (more than %u newer nonces were issued since)",
                   (unsigned)WINDOW);
        rc = -ESTALE;
    } else if (n->used[(c % WINDOW) / 8] & (1u << (c % 8))) {
        ut_err_set(err, "nonce: already used");
        rc = -EALREADY;
    } else {
        n->used[(c % WINDOW) / 8] |= (uint8_t)(1u << (c % 8));
    }
    pthread_mutex_unlock(&n->lock);
    return rc;
}
