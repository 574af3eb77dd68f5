/*
 * ca.h - akamu's certificate authority, on OpenSSL 3 (no hand-written
 * ASN.1 anywhere):
 *   - the CA key and certificate: loaded from PEM files, or generated on
 *     first start (akm_ca_open);
 *   - CSR checks for ACME finalize (RFC 8555 §7.4) (akm_csr_parse);
 *   - leaf issuance with an RFC 5280 server-certificate profile
 *     (akm_ca_issue) and the PEM chain for download (RFC 8555 §7.4.2);
 *   - leaf inspection for revokeCert (RFC 8555 §7.6) (akm_cert_info,
 *     akm_ca_issued_by);
 *   - v2 CRLs (RFC 5280 §5) (akm_ca_crl).
 *
 * Errors: 0 or a negative errno; a struct ut_err (may be NULL) gets one line
 * naming the input at fault (file path, CSR check, name). The OpenSSL error
 * queue is left empty by every function. Private key material is never
 * logged nor put in a message.
 *
 * Threads: a struct akm_ca, struct akm_csr and struct akm_cert_info are
 * read-only once built, so any number of threads may issue certificates,
 * build CRLs or read accessors concurrently on the same objects.
 *
 * ACME problem types (RFC 8555 §6.7) for the caller:
 *   akm_csr_parse      -EINVAL          -> badCSR (message fits "detail")
 *                      -ENOMEM          -> serverInternal
 *   name comparison with the order (the caller's job, using
 *   akm_csr_n_names/akm_csr_name): different set -> badCSR; a name the
 *   account is not authorized for -> unauthorized.
 *   CSR key == account key (akm_csr_key_equals) -> badCSR.
 *   akm_ca_issue       -EKEYREJECTED    -> badCSR (CSR carries the CA's key)
 *                      anything else    -> serverInternal (caller bug or
 *                                          OpenSSL failure)
 *   akm_cert_info      -EINVAL          -> malformed (revokeCert body)
 *   akm_ca_issued_by   -EPERM / -EINVAL -> malformed/unauthorized per §7.6
 */
#ifndef AKAMU_CA_H
#define AKAMU_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "util/err.h"

#define AKM_SERIAL_BYTES   16          /* serials we assign: 128 bits, positive */
#define AKM_SERIAL_MAX     20          /* longest serial accepted (RFC 5280 §4.1.2.2) */
#define AKM_FPR_BYTES      32          /* SHA-256 */
#define AKM_MAX_NAMES      100         /* names per CSR / certificate */
#define AKM_NAME_MAX       253         /* longest DNS name (RFC 1035); IP text is shorter */
#define AKM_CSR_MAX_DER    (64 * 1024) /* largest CSR accepted */
#define AKM_CERT_MAX_DER   (64 * 1024) /* largest certificate accepted */
#define AKM_CA_FILE_MAX    (1 << 20)   /* largest CA key/cert PEM file read */
#define AKM_CRL_MAX_ENTRY  (1 << 20)   /* most entries in one CRL */
#define AKM_CN_MAX         64          /* ub-common-name (RFC 5280 App. A) */
#define AKM_CRL_URL_MAX    1024        /* longest CRL distribution point URL */
#define AKM_VALIDITY_MAX   3650        /* days, as the config allows */
#define AKM_CA_DEFAULT_KEY "ec:P-256"

/* ---- CA key and certificate ---- */

struct akm_ca_opts {
    const char *key_file;  /* PEM private key (PKCS#8 or traditional, unencrypted) */
    const char *cert_file; /* PEM certificate: exactly one, the CA's */
    /* Only used when generating: "ec:P-256" (NULL = this), "ec:P-384",
     * "rsa:2048", "rsa:3072", "rsa:4096", "ed25519". */
    const char *key_type;
    int ca_validity_years;   /* only used when generating; 1..100, 0 = 10 */
    const char *common_name; /* only used when generating; NULL = "akamu CA <hostname>";
                                at most AKM_CN_MAX bytes of UTF-8 */
};

struct akm_ca;

/*
 * Opens the CA:
 *   - both files exist: loads them. Refused when the key does not match the
 *     certificate (the message names both files), the certificate is not a
 *     CA (v3, basicConstraints CA:TRUE, keyUsage with keyCertSign, a
 *     subjectKeyIdentifier), is expired or not yet valid, or the key is of
 *     a type or size we do not sign with (RSA >= 2048 bits, EC P-256/P-384/
 *     P-521, Ed25519). The certificate need not be self-signed (an
 *     intermediate is fine; its issuer chain is then the operator's job).
 *   - neither exists: generates a key of o->key_type and a self-signed CA
 *     certificate (v3, random 128-bit serial, CN + O=akamu, valid from
 *     now-1h for ca_validity_years, basicConstraints critical CA:TRUE
 *     pathlen:0, keyUsage critical keyCertSign+cRLSign+digitalSignature,
 *     SKI, AKI) and writes them: the key with mode 0600, both with O_EXCL so
 *     no existing file is ever replaced (a concurrent starter loses with
 *     -EEXIST). Logs paths, type and SHA-256 fingerprint, never the key.
 *   - only one exists: refused (-ENOENT naming the missing file); nothing is
 *     written.
 * *out is NULL on error. Returns 0, -EINVAL, -ENOENT, -EEXIST, -ENOMEM,
 * -EIO or another -errno from the file system.
 */
int akm_ca_open(const struct akm_ca_opts *o, struct akm_ca **out, struct ut_err *err);
void akm_ca_free(struct akm_ca *ca);

/* 1 when akm_ca_open generated the key and certificate, 0 when it loaded them. */
bool akm_ca_generated(const struct akm_ca *ca);
/* The CA certificate as NUL-terminated PEM (one CERTIFICATE block). */
const char *akm_ca_cert_pem(const struct akm_ca *ca);
/* The CA certificate as DER; *len gets its size. */
const uint8_t *akm_ca_cert_der(const struct akm_ca *ca, size_t *len);
/* SHA-256 of the certificate DER: AKM_FPR_BYTES bytes, and as 64 lower-case
 * hex digits (the form logged at start). */
const uint8_t *akm_ca_fingerprint(const struct akm_ca *ca);
const char *akm_ca_fingerprint_hex(const struct akm_ca *ca);
/* The CA public key (borrowed; public part only, valid while ca lives). */
EVP_PKEY *akm_ca_pubkey(const struct akm_ca *ca);
/* The digest used to sign: SHA-256 for P-256 and RSA, SHA-384 for P-384,
 * SHA-512 for P-521, NULL for Ed25519 (signs the message itself). */
const EVP_MD *akm_ca_digest(const struct akm_ca *ca);
/* The key actually in use, in key_type syntax ("ec:P-384", "rsa:3072", ...). */
const char *akm_ca_key_type(const struct akm_ca *ca);
/* The CA certificate's notAfter, seconds since the epoch. */
int64_t akm_ca_not_after(const struct akm_ca *ca);

/* Signing other things than certificates and CRLs with the CA key (the
 * gossip key certifications of trust.c). The signature: ECDSA (DER) with
 * akm_ca_digest(), Ed25519 (pure), or RSA PKCS#1 v1.5 with akm_ca_digest().
 * The caller domain-separates msg with a label of its own; a msg starting
 * with 0x30 (a DER SEQUENCE, so possibly a TBSCertificate or TBSCertList)
 * is refused, so these signatures can never pass for a certificate's or a
 * CRL's. akm_ca_sign: *sig malloc'd; 0, -EINVAL, -ENOMEM, -EIO.
 * akm_ca_verify: 0 when sig is the CA key's signature over msg, -EPERM when
 * not, -EINVAL for bad arguments. */
int akm_ca_sign(const struct akm_ca *ca, const uint8_t *msg, size_t len, uint8_t **sig,
                size_t *sig_len, struct ut_err *err);
int akm_ca_verify(const struct akm_ca *ca, const uint8_t *msg, size_t len, const uint8_t *sig,
                  size_t sig_len, struct ut_err *err);

/* Generates a key of one of the key_type values listed in struct
 * akm_ca_opts. *out is owned by the caller (EVP_PKEY_free). 0, -EINVAL
 * (unknown type), -EIO. */
int akm_ca_keygen(const char *key_type, EVP_PKEY **out, struct ut_err *err);

/* ---- names ---- */

enum akm_name_type {
    AKM_NAME_DNS = 1, /* lower-case LDH labels, optionally "*." first */
    AKM_NAME_IP = 2,  /* IPv4 dotted quad, or IPv6 in RFC 5952 text (RFC 8738) */
};

struct akm_name {
    enum akm_name_type type;
    const char *value;
};

/* ---- CSRs (RFC 8555 §7.4, RFC 2986) ---- */

struct akm_csr;

/*
 * Parses a DER PKCS#10 request (the caller base64url-decodes the "csr"
 * field; at most AKM_CSR_MAX_DER bytes) and checks, each failure with its
 * own message:
 *   - DER: one request, no trailing bytes, canonical encoding, version 1;
 *   - key: RSA 2048..8192 bits ("weak key" below), EC on P-256 or P-384
 *     (named curve), or Ed25519; nothing else;
 *   - signature: sha256/384/512 with RSA (PKCS#1 v1.5) or ECDSA, or Ed25519;
 *     the self-signature must verify;
 *   - names: subjectAltName dNSName and iPAddress entries only (email, URI,
 *     otherName, ... are refused); DNS names are lower-cased and must be
 *     LDH labels (a leading "*." wildcard label allowed); IPs are 4 or 16
 *     bytes, rendered canonically. Duplicates are dropped. At least one and
 *     at most AKM_MAX_NAMES names.
 *   - subject commonName (at most one): it is a requested name like the
 *     SANs. Rule: it is normalized the same way (an IP literal becomes an IP
 *     name) and added to the names when not already among them, so comparing
 *     the name list with the order covers it (Boulder likewise requires CN in
 *     SANs). Other subject attributes are ignored (never copied).
 *   - requested extensions: never copied into the certificate, so unknown
 *     ones are ignored, except basicConstraints CA:TRUE (refused) and an
 *     extension requested twice (refused).
 * Names keep the CSR's order (SANs first, then the CN when it was new).
 * Returns 0, -EINVAL (badCSR) or -ENOMEM; *out is NULL on error.
 */
int akm_csr_parse(const uint8_t *der, size_t len, struct akm_csr **out, struct ut_err *err);
void akm_csr_free(struct akm_csr *c);

size_t akm_csr_n_names(const struct akm_csr *c);
/* Name i (0-based), or NULL when i >= akm_csr_n_names(). Owned by c. */
const struct akm_name *akm_csr_name(const struct akm_csr *c, size_t i);
/* The request's public key (borrowed, valid while c lives). */
EVP_PKEY *akm_csr_pubkey(const struct akm_csr *c);
/* 1 when the CSR's key is the same public key as k (EVP_PKEY_eq), else 0.
 * RFC 8555 §11.1: the certificate key must not be the account key. */
int akm_csr_key_equals(const struct akm_csr *c, const EVP_PKEY *k);

/* ---- issuance ---- */

struct akm_issue_req {
    const struct akm_csr *csr;    /* supplies the subject public key only */
    const struct akm_name *names; /* the subjectAltName entries, in this order */
    size_t n_names;               /* 1..AKM_MAX_NAMES, no duplicates */
    int validity_days;            /* 1..AKM_VALIDITY_MAX */
    const char *crl_url;          /* http(s) URL for cRLDistributionPoints, or NULL */
    /* Also id-kp-clientAuth in extendedKeyUsage. Off by default: browsers'
     * root programs are moving server certificates to serverAuth only. */
    bool client_auth;
    int64_t now; /* 0: the current time (tests pass a fixed one) */
};

struct akm_issued {
    uint8_t serial[AKM_SERIAL_BYTES];
    char serial_hex[2 * AKM_SERIAL_BYTES + 1]; /* lower-case, 32 digits */
    int64_t not_before, not_after;
    uint8_t *der; /* malloc'd certificate; akm_issued_clear frees it */
    size_t der_len;
};

/*
 * Issues a leaf certificate for req->csr's key with the RFC 5280 profile:
 * v3; serial: 128 random bits with the top bit clear and a non-zero first
 * byte (so always 16 positive octets); issuer = the CA's subject; subject
 * CN = the first DNS name when there is one of at most AKM_CN_MAX bytes,
 * else empty (and the SAN is then critical, §4.2.1.6); validity from
 * now - 60 s for validity_days, counted inclusively (notAfter = notBefore +
 * days*86400 - 1, RFC 5280 §4.1.2.5), cut at the CA's notAfter;
 * subjectAltName = req->names; keyUsage critical digitalSignature
 * (+keyEncipherment for RSA keys); extendedKeyUsage serverAuth
 * (+clientAuth); basicConstraints critical CA:FALSE; SKI; AKI keyid of the
 * CA; cRLDistributionPoints when crl_url is set. Signed with the CA key and
 * the signature checked before returning.
 * Names are validated again (same rules as akm_csr_parse; DNS names are
 * lower-cased, IPs written canonically). The caller must already have
 * checked them against the order. Returns 0, -EINVAL (bad request),
 * -EKEYREJECTED (the CSR's key is the CA's), -ENOMEM, -EIO. On error *out
 * is zeroed.
 */
int akm_ca_issue(const struct akm_ca *ca, const struct akm_issue_req *req, struct akm_issued *out,
                 struct ut_err *err);
void akm_issued_clear(struct akm_issued *i);

/* application/pem-certificate-chain (RFC 8555 §7.4.2): the leaf (DER, at
 * most AKM_CERT_MAX_DER bytes) as PEM followed by the CA certificate.
 * *pem_out is malloc'd and NUL-terminated; *pem_len (may be NULL) gets its
 * length. 0, -EINVAL (not a certificate), -ENOMEM. */
int akm_ca_chain_pem(const struct akm_ca *ca, const uint8_t *leaf_der, size_t len, char **pem_out,
                     size_t *pem_len, struct ut_err *err);

/* ---- inspecting certificates (revokeCert, RFC 8555 §7.6) ---- */

struct akm_names_; /* storage behind akm_cert_info.names */

struct akm_cert_info {
    uint8_t serial[AKM_SERIAL_MAX]; /* big-endian magnitude, no sign byte */
    size_t serial_len;
    char serial_hex[2 * AKM_SERIAL_MAX + 1]; /* lower-case hex of serial[0..serial_len) */
    int64_t not_before, not_after;
    size_t n_names;               /* DNS and IP SAN entries; other types skipped */
    const struct akm_name *names; /* owned by the info */
    EVP_PKEY *pubkey;             /* owned reference: verify revocation JWS with it */
    struct akm_names_ *priv_;
};

/* Parses a DER certificate (at most AKM_CERT_MAX_DER bytes, no trailing
 * bytes). Does not check who issued it: see akm_ca_issued_by. 0, -EINVAL,
 * -ENOMEM; on error *out is zeroed. Free with akm_cert_info_clear. */
int akm_cert_info(const uint8_t *der, size_t len, struct akm_cert_info *out, struct ut_err *err);
void akm_cert_info_clear(struct akm_cert_info *i);

/* 0 when the DER certificate names this CA as issuer and its signature
 * verifies with the CA key; -EPERM when not; -EINVAL when it does not
 * parse. Validity dates are not checked (expired certificates may still be
 * revoked). */
int akm_ca_issued_by(const struct akm_ca *ca, const uint8_t *der, size_t len, struct ut_err *err);

/* ---- CRLs (RFC 5280 §5) ---- */

struct akm_revoked {
    uint8_t serial[AKM_SERIAL_BYTES];
    int64_t revoked_at; /* seconds since the epoch */
    int reason;         /* CRLReason 0..10 except 7; 0 (unspecified) adds no reasonCode */
};

/*
 * Builds a v2 CRL signed by the CA: issuer = CA subject, thisUpdate,
 * nextUpdate (> thisUpdate), the entries (sorted by serial; at most
 * AKM_CRL_MAX_ENTRY; a serial twice is refused) each with a reasonCode
 * extension unless reason is 0, and the AKI and cRLNumber extensions.
 * *der_out is malloc'd. 0, -EINVAL, -ENOMEM, -EIO.
 */
int akm_ca_crl(const struct akm_ca *ca, const struct akm_revoked *list, size_t n,
               int64_t this_update, int64_t next_update, uint64_t crl_number, uint8_t **der_out,
               size_t *der_len, struct ut_err *err);

#endif
