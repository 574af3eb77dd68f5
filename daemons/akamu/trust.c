/*
 * trust.c - the CA vouches for gossip keys (docs/replication.md, "Trust
 * model": CA-certified pinning). Every node of an akamu cluster holds the
 * CA private key, so at start a node certifies its own gossip keys with
 * it, and pins any peer whose keys carry a certification by the same CA.
 *
 * Signed bytes (big-endian length):
 *   "akamu-gossip-keys/v1"          20 bytes, no NUL (domain label; it
 *                                   starts with 'a', never 0x30, so it can
 *                                   never pass for a TBSCertificate/CRL)
 *   u16 len || node_id              the node id, UTF-8
 *   X-Wing public key               CRY_XWING_PK_BYTES (1216)
 *   P-256 public key                CRY_P256_PUB_BYTES (65, SEC1 uncompressed)
 * Signature: the CA key's own scheme (akm_ca_sign: ECDSA DER with the CA
 * digest, Ed25519, or RSA PKCS#1 v1.5).
 *
 * Certification string (opaque to lib/gossip, printable, no spaces):
 *   "v1." b64url(SHA-256 of the CA's SubjectPublicKeyInfo DER) "." b64url(sig)
 * The key fingerprint only tells "another CA" from "bad signature" in the
 * refusal message; trust rests on the signature, checked with this node's
 * CA public key. A renewed CA certificate over the same key keeps working.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "akamu.h"
#include "ca.h"
#include "util/b64.h"
#include "util/buf.h"
#include "util/hex.h"

#define LABEL     "akamu-gossip-keys/v1"
#define CERT_VER  "v1."
#define FPR_BYTES 32
#define SIG_MAX   2048 /* RSA up to 16384 bits */
#define FPR_B64   43   /* unpadded base64url of 32 bytes */
#define SHOWN_HEX 16   /* fingerprint hex digits quoted in a message */

static int signed_bytes(const char *node_id, const uint8_t *kem, const uint8_t *sig_pub,
                        struct ut_buf *b)
{
    size_t n = strlen(node_id);
    uint8_t len[2] = {(uint8_t)(n >> 8), (uint8_t)n};

    if (n == 0 || n > 0xffff || ut_buf_append(b, LABEL, sizeof(LABEL) - 1) < 0 ||
        ut_buf_append(b, len, 2) < 0 || ut_buf_append(b, node_id, n) < 0 ||
        ut_buf_append(b, kem, CRY_XWING_PK_BYTES) < 0 ||
        ut_buf_append(b, sig_pub, CRY_P256_PUB_BYTES) < 0)
        return -E2BIG;
    return 0;
}

/* SHA-256 of the CA public key's SubjectPublicKeyInfo DER. */
static int key_fpr(const struct akm_ca *ca, uint8_t out[FPR_BYTES])
{
    unsigned char *der = NULL;
    unsigned int olen = 0;
    int n = i2d_PUBKEY(akm_ca_pubkey(ca), &der);
    int rc = -EIO;

    if (n > 0 && EVP_Digest(der, (size_t)n, out, &olen, EVP_sha256(), NULL) == 1 &&
        olen == FPR_BYTES)
        rc = 0;
    OPENSSL_free(der);
    return rc;
}

int akm_trust_certify(const struct akm_ca *ca, const struct cry_identity *id, char **out,
                      struct ut_err *err)
{
    uint8_t kem[CRY_XWING_PK_BYTES], pub[CRY_P256_PUB_BYTES], fpr[FPR_BYTES];
    uint8_t *sig = NULL;
    size_t sig_len = 0;
    struct ut_buf b;
    char *s = NULL;
    int rc;

    *out = NULL;
    ut_buf_init(&b, 4096);
    cry_identity_public(id, kem, pub);
    rc = signed_bytes(cry_identity_node_id(id), kem, pub, &b);
    if (rc == 0)
        rc = key_fpr(ca, fpr);
    if (rc < 0) {
        ut_err_set(err, "certifying the gossip keys: cannot build the signed bytes");
        goto out;
    }
    rc = akm_ca_sign(ca, (const uint8_t *)b.data, b.len, &sig, &sig_len, err);
    if (rc < 0)
        goto out;
    if (sig_len > SIG_MAX) {
        ut_err_set(err, "certifying the gossip keys: %zu-byte CA signature", sig_len);
        rc = -E2BIG;
        goto out;
    }
    s = malloc(sizeof(CERT_VER) + FPR_B64 + 1 + ut_b64_enclen(sig_len, 1) + 1);
    if (s == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(s, CERT_VER, sizeof(CERT_VER) - 1);
    ut_b64_encode(fpr, sizeof(fpr), s + sizeof(CERT_VER) - 1, 1);
    strcat(s, ".");
    ut_b64_encode(sig, sig_len, s + strlen(s), 1);
    *out = s;
    rc = 0;
out:
    free(sig);
    ut_buf_free(&b);
    return rc;
}

int akm_trust_verify(void *arg, const char *node_id, const uint8_t kem[CRY_XWING_PK_BYTES],
                     const uint8_t sig_pub[CRY_P256_PUB_BYTES], const char *cert,
                     struct ut_err *err)
{
    const struct akm_ca *ca = arg;
    uint8_t fpr[FPR_BYTES], theirs[FPR_BYTES + 3], sig[SIG_MAX + 3];
    char hex[2 * FPR_BYTES + 1];
    const char *dot;
    size_t got = 0, sig_len = 0, sl;
    struct ut_buf b;
    int rc = -EINVAL;

    ut_buf_init(&b, 4096);
    if (cert == NULL || strncmp(cert, CERT_VER, sizeof(CERT_VER) - 1) != 0) {
        ut_err_set(err, "certification: not a \"v1\" akamu certification");
        goto out;
    }
    cert += sizeof(CERT_VER) - 1;
    dot = strchr(cert, '.');
    if (dot == NULL || dot - cert != FPR_B64 || ut_b64_decode(cert, FPR_B64, theirs, &got, 1) < 0 ||
        got != FPR_BYTES) {
        ut_err_set(err, "certification: bad CA key fingerprint");
        goto out;
    }
    sl = strlen(dot + 1);
    if (sl == 0 || sl > ut_b64_enclen(SIG_MAX, 1) ||
        ut_b64_decode(dot + 1, sl, sig, &sig_len, 1) < 0 || sig_len == 0) {
        ut_err_set(err, "certification: bad signature encoding");
        goto out;
    }
    if (key_fpr(ca, fpr) < 0) {
        ut_err_set(err, "certification: cannot fingerprint this node's CA key");
        rc = -EIO;
        goto out;
    }
    if (memcmp(fpr, theirs, FPR_BYTES) != 0) {
        ut_hex_encode(theirs, SHOWN_HEX / 2, hex);
        ut_err_set(err, "certified by another CA (key sha256 %s...)", hex);
        rc = -EPERM;
        goto out;
    }
    if (signed_bytes(node_id, kem, sig_pub, &b) < 0) {
        ut_err_set(err, "certification: node id \"%.64s\" unusable", node_id);
        goto out;
    }
    rc = akm_ca_verify(ca, (const uint8_t *)b.data, b.len, sig, sig_len, err);
    if (rc == -EPERM)
        ut_err_set(err, "CA signature over the node id and keys does not verify");
out:
    ut_buf_free(&b);
    return rc;
}
