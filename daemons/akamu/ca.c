/*
 * ca.c - akamu's certificate authority (see ca.h): CA bootstrap, CSR
 * checks, leaf issuance, certificate inspection and CRLs, all through the
 * OpenSSL 3 X.509 API.
 *
 * Memory: buffers handed to callers are malloc'd (free()); OpenSSL objects
 * never leave this file except the borrowed/owned EVP_PKEYs ca.h names.
 * Every public function ends with ERR_clear_error() so OpenSSL's per-thread
 * error queue does not leak failures into unrelated code.
 */
#include "ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "util/b64.h"
#include "util/hex.h"
#include "util/log.h"
#include "util/mem.h"

#define MOD "ca"

/* Seconds since the epoch that ASN1_TIME can carry: 1970 .. 9999-12-31. */
#define TIME_MIN 0
#define TIME_MAX INT64_C(253402300799)

#define RSA_MIN_BITS     2048
#define RSA_MAX_BITS     8192  /* CSR keys */
#define CA_RSA_MAX_BITS  16384 /* CA keys loaded from disk */
#define CSR_MAX_EXTS     64    /* requested extensions */
#define CSR_MAX_RAW_SANS (4 * AKM_MAX_NAMES)
#define LEAF_BACKDATE    60   /* seconds */
#define CA_BACKDATE      3600 /* seconds */
#define SHOWN_MAX        64   /* bytes of untrusted text quoted in a message */

struct akm_names_ {
    size_t n;
    struct akm_name v[AKM_MAX_NAMES];
    char text[AKM_MAX_NAMES][AKM_NAME_MAX + 1]; /* v[i].value points here */
};

struct akm_ca {
    EVP_PKEY *key;     /* private; never leaves this file */
    X509 *cert;        /* its public key is akm_ca_pubkey() */
    const EVP_MD *md;  /* NULL for Ed25519 */
    char key_type[24]; /* "ec:P-256", "rsa:3072", ... */
    uint8_t *der;
    size_t der_len;
    char *pem;
    uint8_t fpr[AKM_FPR_BYTES];
    char fpr_hex[2 * AKM_FPR_BYTES + 1];
    int64_t not_after;
    bool generated;
};

struct akm_csr {
    X509_REQ *req;
    EVP_PKEY *pub; /* borrowed from req */
    struct akm_names_ names;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

/* OpenSSL's reason for the latest error, for messages ("unknown error"
 * when the queue is empty). Static strings: safe to keep after clearing. */
static const char *ossl_why(void)
{
    const char *r = ERR_reason_error_string(ERR_peek_last_error());

    return r ? r : "unknown error";
}

/* Copies untrusted text into out for a message: at most SHOWN_MAX bytes,
 * bytes outside printable ASCII (and '"') become '?'. */
static const char *shown(const void *p, size_t n, char out[SHOWN_MAX + 4])
{
    const unsigned char *s = p;
    size_t i, k = n > SHOWN_MAX ? SHOWN_MAX : n;

    for (i = 0; i < k; i++)
        out[i] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? (char)s[i] : '?';
    if (k < n) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
    return out;
}

static int asn1_to_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return -EINVAL;
    *out = (int64_t)timegm(&tm);
    return 0;
}

static int time_ok(int64_t t)
{
    return t >= TIME_MIN && t <= TIME_MAX;
}

/* "2026-01-02T03:04:05Z" for messages. */
static const char *iso_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "%lld", (long long)t);
    return out;
}

/* 128 random bits, top bit clear (positive) and first byte non-zero, so
 * the DER INTEGER always has exactly AKM_SERIAL_BYTES content octets. */
static int random_serial(uint8_t s[AKM_SERIAL_BYTES])
{
    do {
        if (RAND_bytes(s, AKM_SERIAL_BYTES) != 1)
            return -EIO;
        s[0] &= 0x7f;
    } while (s[0] == 0);
    return 0;
}

/* Serial bytes (big-endian magnitude) as an ASN1_INTEGER; NULL on failure. */
static ASN1_INTEGER *serial_to_asn1(const uint8_t *s, size_t n)
{
    BIGNUM *bn = BN_bin2bn(s, (int)n, NULL);
    ASN1_INTEGER *a = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;

    BN_free(bn);
    return a;
}

/* i2d into a malloc'd buffer (callers free() it, not OPENSSL_free). */
static int der_of_x509(X509 *x, uint8_t **out, size_t *len)
{
    int n = i2d_X509(x, NULL);
    unsigned char *p;

    if (n <= 0)
        return -EIO;
    *out = malloc((size_t)n);
    if (*out == NULL)
        return -ENOMEM;
    p = *out;
    if (i2d_X509(x, &p) != n) {
        free(*out);
        *out = NULL;
        return -EIO;
    }
    *len = (size_t)n;
    return 0;
}

/* The contents of a memory BIO as a malloc'd NUL-terminated string. */
static int bio_to_string(BIO *b, char **out, size_t *len)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);

    if (n < 0 || (n > 0 && p == NULL))
        return -EIO;
    *out = malloc((size_t)n + 1);
    if (*out == NULL)
        return -ENOMEM;
    if (n > 0)
        memcpy(*out, p, (size_t)n);
    (*out)[n] = '\0';
    if (len)
        *len = (size_t)n;
    return 0;
}

/* Parses exactly one DER certificate of len bytes. NULL on any failure,
 * including trailing bytes; *why says which. */
static X509 *parse_cert_der(const uint8_t *der, size_t len, const char **why)
{
    const unsigned char *p = der;
    X509 *x;

    if (der == NULL || len == 0) {
        *why = "empty certificate";
        return NULL;
    }
    if (len > AKM_CERT_MAX_DER) {
        *why = "certificate too large";
        return NULL;
    }
    x = d2i_X509(NULL, &p, (long)len);
    if (x == NULL) {
        *why = "not a DER certificate";
        return NULL;
    }
    if (p != der + len) {
        *why = "trailing bytes after the certificate";
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ------------------------------------------------------------------ */
/* names                                                               */

/* Checks the DNS name s[0..n) and writes it lower-cased and NUL-ended into
 * out (AKM_NAME_MAX + 1 bytes). Returns NULL when valid, else the problem.
 * Valid: LDH labels of 1..63 bytes not starting or ending with '-', no
 * trailing dot, at most AKM_NAME_MAX bytes, optionally "*." as the whole
 * first label, and not an IPv4 literal. */
static const char *dns_normalize(const void *p, size_t n, char *out)
{
    const char *s = p;
    size_t i = 0, start;
    struct in_addr a4;

    if (n == 0)
        return "empty DNS name";
    if (n > AKM_NAME_MAX)
        return "DNS name longer than 253 bytes";
    if (n >= 2 && s[0] == '*' && s[1] == '.') {
        out[0] = '*';
        out[1] = '.';
        i = 2;
    }
    for (start = i; i <= n; i++) {
        char c = i < n ? s[i] : '.';

        if (c == '.') {
            if (i == start)
                return "empty label in DNS name";
            if (i - start > 63)
                return "DNS label longer than 63 bytes";
            if (out[start] == '-' || out[i - 1] == '-')
                return "DNS label starts or ends with '-'";
            if (i < n)
                out[i] = '.';
            start = i + 1;
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return "invalid character in DNS name (only letters, digits, '-' and a leading "
                   "\"*.\")";
        out[i] = c;
    }
    out[n] = '\0';
    if (inet_pton(AF_INET, out, &a4) == 1)
        return "DNS name is an IP address";
    return NULL;
}

/* Canonical text of a 4- or 16-byte address (RFC 5952 for IPv6). */
static int ip_bytes_to_text(const uint8_t *b, size_t n, char *out, size_t outlen)
{
    int af = n == 4 ? AF_INET : n == 16 ? AF_INET6 : -1;

    if (af < 0 || inet_ntop(af, b, out, (socklen_t)outlen) == NULL)
        return -EINVAL;
    return 0;
}

/* Text -> 4 or 16 bytes; *n gets the size. Only inet_pton's strict forms
 * (dotted quad, RFC 4291 text without zone). */
static int ip_text_to_bytes(const char *s, uint8_t b[16], size_t *n)
{
    if (inet_pton(AF_INET, s, b) == 1) {
        *n = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, s, b) == 1) {
        *n = 16;
        return 0;
    }
    return -EINVAL;
}

/* Adds a normalized name. 0 added, 1 already present, -E2BIG when full. */
static int names_add(struct akm_names_ *s, enum akm_name_type t, const char *text)
{
    size_t i;

    for (i = 0; i < s->n; i++)
        if (s->v[i].type == t && strcmp(s->v[i].value, text) == 0)
            return 1;
    if (s->n == AKM_MAX_NAMES)
        return -E2BIG;
    snprintf(s->text[s->n], sizeof(s->text[s->n]), "%s", text);
    s->v[s->n].type = t;
    s->v[s->n].value = s->text[s->n];
    s->n++;
    return 0;
}

/* Normalizes a name given as text (issue requests, CSR commonName) into
 * canon (AKM_NAME_MAX + 1 bytes). NULL when valid, else the problem. */
static const char *name_normalize(enum akm_name_type t, const char *v, char *canon)
{
    uint8_t b[16];
    size_t n;

    if (v == NULL)
        return "missing name";
    if (t == AKM_NAME_DNS)
        return dns_normalize(v, strnlen(v, AKM_NAME_MAX + 1), canon);
    if (t != AKM_NAME_IP)
        return "unknown name type";
    if (strnlen(v, INET6_ADDRSTRLEN) >= INET6_ADDRSTRLEN || ip_text_to_bytes(v, b, &n) < 0 ||
        ip_bytes_to_text(b, n, canon, AKM_NAME_MAX + 1) < 0)
        return "not an IPv4 or IPv6 address";
    return NULL;
}

/* ------------------------------------------------------------------ */
/* key types                                                           */

enum kkind { KK_NONE = 0, KK_RSA, KK_EC, KK_ED25519 };

struct key_type {
    const char *name;  /* config spelling */
    enum kkind kind;   /* what to generate */
    const char *curve; /* EC group */
    size_t bits;       /* RSA modulus */
};

static const struct key_type key_types[] = {
    {"ec:P-256", KK_EC, "P-256", 0},  {"ec:P-384", KK_EC, "P-384", 0},
    {"rsa:2048", KK_RSA, NULL, 2048}, {"rsa:3072", KK_RSA, NULL, 3072},
    {"rsa:4096", KK_RSA, NULL, 4096}, {"ed25519", KK_ED25519, NULL, 0},
};

static const struct key_type *key_type_find(const char *name)
{
    size_t i;

    for (i = 0; name && i < sizeof(key_types) / sizeof(key_types[0]); i++)
        if (strcmp(key_types[i].name, name) == 0)
            return &key_types[i];
    return NULL;
}

/* What a public key is. For EC keys *nid gets the curve (NID_undef for
 * explicit parameters or unknown curves); for RSA *bits the size. */
static enum kkind key_kind(const EVP_PKEY *k, int *nid, int *bits)
{
    char group[64];
    size_t glen = 0;

    *nid = NID_undef;
    *bits = EVP_PKEY_get_bits(k);
    if (EVP_PKEY_is_a(k, "RSA"))
        return KK_RSA;
    if (EVP_PKEY_is_a(k, "ED25519"))
        return KK_ED25519;
    if (EVP_PKEY_is_a(k, "EC")) {
        if (EVP_PKEY_get_group_name(k, group, sizeof(group), &glen) == 1) {
            *nid = OBJ_sn2nid(group);
            if (*nid == NID_undef)
                *nid = EC_curve_nist2nid(group);
        }
        return KK_EC;
    }
    return KK_NONE;
}

int akm_ca_keygen(const char *key_type, EVP_PKEY **out, struct ut_err *err)
{
    const struct key_type *t = key_type_find(key_type);
    EVP_PKEY *k = NULL;

    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (t == NULL) {
        char s[SHOWN_MAX + 4];

        ut_err_set(err,
                   "unknown key type \"%s\" (ec:P-256, ec:P-384, rsa:2048, rsa:3072, rsa:4096, "
                   "ed25519)",
                   key_type ? shown(key_type, strlen(key_type), s) : "(null)");
        return -EINVAL;
    }
    if (t->kind == KK_EC)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", t->curve);
    else if (t->kind == KK_RSA)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", t->bits);
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (k == NULL) {
        ut_err_set(err, "cannot generate a %s key: %s", t->name, ossl_why());
        ERR_clear_error();
        return -EIO;
    }
    *out = k;
    return 0;
}

/* For a CA key: the digest to sign with and its key_type spelling. NULL
 * when usable, else why not. */
static const char *ca_key_usable(const EVP_PKEY *k, const EVP_MD **md, char *type, size_t tlen)
{
    int nid, bits;

    switch (key_kind(k, &nid, &bits)) {
    case KK_RSA:
        if (bits < RSA_MIN_BITS)
            return "RSA key shorter than 2048 bits";
        if (bits > CA_RSA_MAX_BITS)
            return "RSA key longer than 16384 bits";
        *md = EVP_sha256();
        snprintf(type, tlen, "rsa:%d", bits);
        return NULL;
    case KK_EC:
        if (nid == NID_X9_62_prime256v1) {
            *md = EVP_sha256();
            snprintf(type, tlen, "ec:P-256");
        } else if (nid == NID_secp384r1) {
            *md = EVP_sha384();
            snprintf(type, tlen, "ec:P-384");
        } else if (nid == NID_secp521r1) {
            *md = EVP_sha512();
            snprintf(type, tlen, "ec:P-521");
        } else {
            return "EC key not on P-256, P-384 or P-521";
        }
        return NULL;
    case KK_ED25519:
        *md = NULL;
        snprintf(type, tlen, "ed25519");
        return NULL;
    default:
        return "unsupported key type (RSA, EC or Ed25519 only)";
    }
}

/* ------------------------------------------------------------------ */
/* files                                                               */

/* 1 when path is an existing regular file, 0 when it does not exist. */
static int file_exists(const char *path, const char *what, struct ut_err *err)
{
    struct stat st;
    int e;

    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            ut_err_set(err, "%s %s is not a regular file", what, path);
            return -EINVAL;
        }
        return 1;
    }
    e = errno;
    if (e == ENOENT)
        return 0;
    ut_err_set(err, "cannot access %s %s: %s", what, path, strerror(e));
    return -e;
}

/* Reads a whole small file (at most AKM_CA_FILE_MAX bytes) into a malloc'd
 * NUL-terminated buffer. *mode gets its permission bits. The caller
 * zeroizes the buffer when it holds a key. */
static int read_file(const char *path, const char *what, char **out, size_t *len, mode_t *mode,
                     struct ut_err *err)
{
    struct stat st;
    char *buf = NULL;
    size_t got = 0;
    int fd, rc = 0;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        ut_err_set(err, "cannot open %s %s: %s", what, path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        ut_err_set(err, "cannot stat %s %s: %s", what, path, strerror(-rc));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > AKM_CA_FILE_MAX) {
        ut_err_set(err, "%s %s is not a regular file of at most %d bytes", what, path,
                   AKM_CA_FILE_MAX);
        rc = -EINVAL;
        goto out;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            ut_err_set(err, "cannot read %s %s: %s", what, path, strerror(-rc));
            goto out;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    *mode = st.st_mode & 07777;
    buf = NULL;
out:
    if (buf) {
        ut_memzero(buf, (size_t)st.st_size + 1);
        free(buf);
    }
    close(fd);
    return rc;
}

/* Creates path (which must not exist: O_EXCL, and O_NOFOLLOW so a planted
 * symlink is never followed) with exactly mode, writes data and fsyncs it
 * and its folder. On failure the half-written file is removed (it is ours:
 * O_EXCL guarantees we created it). */
static int write_new_file(const char *path, const char *what, const void *data, size_t len,
                          mode_t mode, struct ut_err *err)
{
    const char *p = data;
    const char *slash;
    char dir[4096];
    int fd, dfd, rc = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        rc = -errno;
        ut_err_set(err, "cannot create %s %s: %s", what, path, strerror(-rc));
        return rc;
    }
    if (fchmod(fd, mode) < 0) {
        rc = -errno;
        ut_err_set(err, "cannot chmod %s %s: %s", what, path, strerror(-rc));
        goto out;
    }
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            rc = w < 0 ? -errno : -EIO;
            ut_err_set(err, "cannot write %s %s: %s", what, path, strerror(-rc));
            goto out;
        }
        p += w;
        len -= (size_t)w;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        ut_err_set(err, "cannot sync %s %s: %s", what, path, strerror(-rc));
    }
out:
    if (close(fd) < 0 && rc == 0) {
        rc = -errno;
        ut_err_set(err, "cannot close %s %s: %s", what, path, strerror(-rc));
    }
    if (rc < 0) {
        unlink(path);
        return rc;
    }
    /* Make the new directory entry durable too (best effort). */
    slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* pem_password_cb that refuses: an encrypted key must never prompt on the
 * daemon's terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1;
}

/* ------------------------------------------------------------------ */
/* the CA                                                              */

/* The checks every CA certificate (loaded or just generated) must pass. */
static int check_ca_cert(X509 *x, const char *path, int64_t now, struct ut_err *err)
{
    BASIC_CONSTRAINTS *bc = NULL;
    uint32_t flags, ku;
    int64_t nb, na;
    char t[32];
    int rc = -EINVAL;

    if (X509_get_version(x) != X509_VERSION_3) {
        ut_err_set(err, "CA certificate %s is not X.509 v3", path);
        goto out;
    }
    flags = X509_get_extension_flags(x);
    if (flags & EXFLAG_INVALID) {
        ut_err_set(err, "CA certificate %s has malformed extensions", path);
        goto out;
    }
    bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    if (bc == NULL || !bc->ca) {
        ut_err_set(err, "%s is not a CA certificate (basicConstraints CA:TRUE missing)", path);
        goto out;
    }
    ku = X509_get_key_usage(x);
    if (!(flags & EXFLAG_KUSAGE) || !(ku & KU_KEY_CERT_SIGN)) {
        ut_err_set(err, "%s is not a CA certificate (keyUsage keyCertSign missing)", path);
        goto out;
    }
    if (X509_get0_subject_key_id(x) == NULL) {
        ut_err_set(err, "CA certificate %s has no subjectKeyIdentifier (RFC 5280 §4.2.1.2)", path);
        goto out;
    }
    if (asn1_to_unix(X509_get0_notBefore(x), &nb) < 0 ||
        asn1_to_unix(X509_get0_notAfter(x), &na) < 0) {
        ut_err_set(err, "CA certificate %s has unreadable validity dates", path);
        goto out;
    }
    if (na <= now) {
        ut_err_set(err, "CA certificate %s expired on %s", path, iso_time(na, t));
        goto out;
    }
    if (nb > now) {
        ut_err_set(err, "CA certificate %s is not valid before %s (check the clock)", path,
                   iso_time(nb, t));
        goto out;
    }
    if (!(ku & KU_CRL_SIGN))
        ut_log(UT_LOG_WARN, MOD,
               "CA certificate lacks keyUsage cRLSign: relying parties may reject its CRLs",
               UT_LF_S("cert_file", path));
    rc = 0;
out:
    BASIC_CONSTRAINTS_free(bc);
    return rc;
}

/* Fills the derived fields (DER, PEM, fingerprint, notAfter). */
static int ca_finish(struct akm_ca *ca)
{
    BIO *b = NULL;
    unsigned int n = 0;
    int rc;

    rc = der_of_x509(ca->cert, &ca->der, &ca->der_len);
    if (rc < 0)
        return rc;
    if (EVP_Digest(ca->der, ca->der_len, ca->fpr, &n, EVP_sha256(), NULL) != 1 ||
        n != AKM_FPR_BYTES)
        return -EIO;
    ut_hex_encode(ca->fpr, AKM_FPR_BYTES, ca->fpr_hex);
    if (asn1_to_unix(X509_get0_notAfter(ca->cert), &ca->not_after) < 0)
        return -EIO;
    b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return -ENOMEM;
    if (PEM_write_bio_X509(b, ca->cert) != 1)
        rc = -EIO;
    else
        rc = bio_to_string(b, &ca->pem, NULL);
    BIO_free(b);
    return rc;
}

static int ca_load(struct akm_ca *ca, const struct akm_ca_opts *o, struct ut_err *err)
{
    char *kbuf = NULL, *cbuf = NULL;
    size_t klen = 0, clen = 0;
    mode_t kmode = 0, cmode = 0;
    BIO *b = NULL;
    X509 *extra = NULL;
    const char *why;
    int rc;

    rc = read_file(o->key_file, "CA key file", &kbuf, &klen, &kmode, err);
    if (rc < 0)
        goto out;
    rc = read_file(o->cert_file, "CA certificate file", &cbuf, &clen, &cmode, err);
    if (rc < 0)
        goto out;
    rc = -EINVAL;
    if (strstr(kbuf, "ENCRYPTED") != NULL) {
        ut_err_set(err,
                   "CA key file %s is encrypted; akamu needs an unencrypted key (protect "
                   "it with file permissions)",
                   o->key_file);
        goto out;
    }
    b = BIO_new_mem_buf(kbuf, (int)klen);
    if (b == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    ca->key = PEM_read_bio_PrivateKey(b, NULL, no_passphrase, NULL);
    BIO_free(b);
    b = NULL;
    if (ca->key == NULL) {
        ut_err_set(err, "CA key file %s: no PEM private key found (%s)", o->key_file, ossl_why());
        goto out;
    }
    b = BIO_new_mem_buf(cbuf, (int)clen);
    if (b == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    ca->cert = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    if (ca->cert == NULL) {
        ut_err_set(err, "CA certificate file %s: no PEM certificate found (%s)", o->cert_file,
                   ossl_why());
        goto out;
    }
    extra = PEM_read_bio_X509(b, NULL, no_passphrase, NULL);
    if (extra != NULL) {
        ut_err_set(err,
                   "CA certificate file %s holds more than one certificate; it must hold only "
                   "the CA's own",
                   o->cert_file);
        goto out;
    }
    why = ca_key_usable(ca->key, &ca->md, ca->key_type, sizeof(ca->key_type));
    if (why != NULL) {
        ut_err_set(err, "CA key file %s: %s", o->key_file, why);
        goto out;
    }
    if (EVP_PKEY_eq(X509_get0_pubkey(ca->cert), ca->key) != 1) {
        ut_err_set(err, "CA key file %s does not match CA certificate %s", o->key_file,
                   o->cert_file);
        goto out;
    }
    rc = check_ca_cert(ca->cert, o->cert_file, (int64_t)time(NULL), err);
    if (rc < 0)
        goto out;
    if (kmode & 077)
        ut_log(UT_LOG_WARN, MOD, "CA private key file is accessible by group or others (chmod 600)",
               UT_LF_S("priv_file", o->key_file));
    rc = 0;
out:
    X509_free(extra);
    BIO_free(b);
    if (kbuf) {
        ut_memzero(kbuf, klen);
        free(kbuf);
    }
    free(cbuf);
    return rc;
}

/* Adds an extension given in openssl.cnf syntax (fixed strings only: names
 * from requests are always added through typed structures instead). */
static int add_ext_conf(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    int ok = e != NULL && X509_add_ext(x, e, -1) == 1;

    X509_EXTENSION_free(e);
    return ok ? 0 : -EIO;
}

/* Builds the self-signed CA certificate for key. */
static int make_ca_cert(struct akm_ca *ca, const char *cn, int years, int64_t now,
                        struct ut_err *err)
{
    uint8_t serial[AKM_SERIAL_BYTES];
    ASN1_INTEGER *sn = NULL;
    X509_NAME *name;
    X509V3_CTX ctx;
    struct tm tm;
    time_t t = (time_t)now;
    int64_t na;
    X509 *x;
    int rc = -EIO;

    x = X509_new();
    if (x == NULL)
        return -ENOMEM;
    if (gmtime_r(&t, &tm) == NULL)
        goto out;
    tm.tm_year += years;
    na = (int64_t)timegm(&tm);
    if (random_serial(serial) < 0 || (sn = serial_to_asn1(serial, sizeof(serial))) == NULL)
        goto out;
    name = X509_get_subject_name(x);
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_serialNumber(x, sn) != 1 ||
        ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(now - CA_BACKDATE)) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) == NULL ||
        X509_set_pubkey(x, ca->key) != 1 ||
        X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                   -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_UTF8,
                                   (const unsigned char *)"akamu", -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, name) != 1) {
        ut_err_set(err, "cannot build the CA certificate (common name \"%s\"): %s", cn, ossl_why());
        goto out;
    }
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    /* The SKI must exist before the AKI, which copies it (self-signed). */
    if (add_ext_conf(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext_conf(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") < 0 ||
        add_ext_conf(x, &ctx, NID_subject_key_identifier, "hash") < 0 ||
        add_ext_conf(x, &ctx, NID_authority_key_identifier, "keyid:always") < 0) {
        ut_err_set(err, "cannot add the CA certificate extensions: %s", ossl_why());
        goto out;
    }
    if (X509_sign(x, ca->key, ca->md) <= 0) {
        ut_err_set(err, "cannot sign the CA certificate: %s", ossl_why());
        goto out;
    }
    ca->cert = x;
    x = NULL;
    rc = 0;
out:
    ASN1_INTEGER_free(sn);
    X509_free(x);
    return rc;
}

/* The private key as PKCS#8 PEM in a secure-memory BIO (its buffers are
 * cleansed when freed), written to a new 0600 file. */
static int write_key_file(EVP_PKEY *key, const char *path, struct ut_err *err)
{
    BIO *b = BIO_new(BIO_s_secmem());
    char *p = NULL;
    long n;
    int rc;

    if (b == NULL)
        return -ENOMEM;
    if (PEM_write_bio_PKCS8PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        (n = BIO_get_mem_data(b, &p)) <= 0) {
        ut_err_set(err, "cannot encode the CA key: %s", ossl_why());
        rc = -EIO;
    } else {
        rc = write_new_file(path, "CA key file", p, (size_t)n, 0600, err);
    }
    BIO_free(b);
    return rc;
}

static int ca_generate(struct akm_ca *ca, const struct akm_ca_opts *o, struct ut_err *err)
{
    const char *type = o->key_type ? o->key_type : AKM_CA_DEFAULT_KEY;
    int years = o->ca_validity_years ? o->ca_validity_years : 10;
    int64_t now = (int64_t)time(NULL);
    char cn[AKM_CN_MAX + 1];
    char host[256];
    const char *why;
    int rc;

    if (years < 1 || years > 100) {
        ut_err_set(err, "ca_validity_years %d out of range 1..100", years);
        return -EINVAL;
    }
    if (o->common_name != NULL) {
        size_t n = strlen(o->common_name);

        if (n == 0 || n > AKM_CN_MAX) {
            ut_err_set(err, "CA common name must have 1..%d bytes", AKM_CN_MAX);
            return -EINVAL;
        }
        memcpy(cn, o->common_name, n + 1);
    } else {
        if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        /* "akamu CA " is 9 bytes: the host name gets the rest of the 64. */
        snprintf(cn, sizeof(cn), "akamu CA %.*s", AKM_CN_MAX - 9, host);
    }
    rc = akm_ca_keygen(type, &ca->key, err);
    if (rc < 0) {
        ut_err_prefix(err, "CA key file %s", o->key_file);
        return rc;
    }
    why = ca_key_usable(ca->key, &ca->md, ca->key_type, sizeof(ca->key_type));
    if (why != NULL) { /* cannot happen for the types keygen knows */
        ut_err_set(err, "generated CA key: %s", why);
        return -EIO;
    }
    rc = make_ca_cert(ca, cn, years, now, err);
    if (rc < 0)
        return rc;
    rc = check_ca_cert(ca->cert, o->cert_file, now, err);
    if (rc < 0)
        return rc;
    rc = ca_finish(ca);
    if (rc < 0) {
        ut_err_set(err, "cannot encode the CA certificate");
        return rc;
    }
    rc = write_key_file(ca->key, o->key_file, err);
    if (rc < 0)
        return rc;
    rc = write_new_file(o->cert_file, "CA certificate file", ca->pem, strlen(ca->pem), 0644, err);
    if (rc < 0) {
        /* Never leave a key without its certificate: that state refuses to
         * start. We created the key file a moment ago (O_EXCL). */
        unlink(o->key_file);
        return rc;
    }
    ca->generated = true;
    ut_log(UT_LOG_INFO, MOD, "generated CA private key and self-signed certificate",
           UT_LF_S("priv_file", o->key_file), UT_LF_S("cert_file", o->cert_file),
           UT_LF_S("type", ca->key_type), UT_LF_S("subject_cn", cn), UT_LF_S("sha256", ca->fpr_hex),
           UT_LF_I("years", years));
    return 0;
}

int akm_ca_open(const struct akm_ca_opts *o, struct akm_ca **out, struct ut_err *err)
{
    struct akm_ca *ca = NULL;
    int ek, ec, rc = -EINVAL;

    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (o == NULL || o->key_file == NULL || o->cert_file == NULL || o->key_file[0] == '\0' ||
        o->cert_file[0] == '\0') {
        ut_err_set(err, "CA key_file and cert_file must be set");
        return -EINVAL;
    }
    if (strcmp(o->key_file, o->cert_file) == 0) {
        ut_err_set(err, "CA key_file and cert_file are the same file %s", o->key_file);
        return -EINVAL;
    }
    ek = file_exists(o->key_file, "CA key file", err);
    if (ek < 0)
        return ek;
    ec = file_exists(o->cert_file, "CA certificate file", err);
    if (ec < 0)
        return ec;
    if (ek != ec) {
        if (ek)
            ut_err_set(err,
                       "CA key file %s exists but CA certificate file %s does not; refusing to "
                       "start (restore the certificate, or move the key away to create a new CA)",
                       o->key_file, o->cert_file);
        else
            ut_err_set(err,
                       "CA certificate file %s exists but CA key file %s does not; refusing to "
                       "start (restore the key, or move the certificate away to create a new CA)",
                       o->cert_file, o->key_file);
        return -ENOENT;
    }
    ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return -ENOMEM;
    if (ek) {
        rc = ca_load(ca, o, err);
        if (rc == 0) {
            rc = ca_finish(ca);
            if (rc < 0)
                ut_err_set(err, "CA certificate %s cannot be re-encoded", o->cert_file);
        }
        if (rc == 0 && o->key_type != NULL && strcmp(o->key_type, ca->key_type) != 0)
            ut_log(UT_LOG_INFO, MOD,
                   "the existing CA key is not of the configured key_type (which only applies "
                   "when generating)",
                   UT_LF_S("type", ca->key_type), UT_LF_S("configured", o->key_type));
        if (rc == 0)
            ut_log(UT_LOG_INFO, MOD, "CA loaded", UT_LF_S("cert_file", o->cert_file),
                   UT_LF_S("type", ca->key_type), UT_LF_S("sha256", ca->fpr_hex),
                   UT_LF_I("not_after", ca->not_after));
    } else {
        rc = ca_generate(ca, o, err);
    }
    ERR_clear_error();
    if (rc < 0) {
        akm_ca_free(ca);
        return rc;
    }
    /* Fill OpenSSL's per-certificate extension cache now, while we are the
     * only user, so later concurrent readers only read it. */
    (void)X509_check_purpose(ca->cert, -1, 0);
    *out = ca;
    return 0;
}

void akm_ca_free(struct akm_ca *ca)
{
    if (ca == NULL)
        return;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    free(ca->der);
    free(ca->pem);
    free(ca);
}

bool akm_ca_generated(const struct akm_ca *ca)
{
    return ca->generated;
}

const char *akm_ca_cert_pem(const struct akm_ca *ca)
{
    return ca->pem;
}

const uint8_t *akm_ca_cert_der(const struct akm_ca *ca, size_t *len)
{
    if (len)
        *len = ca->der_len;
    return ca->der;
}

const uint8_t *akm_ca_fingerprint(const struct akm_ca *ca)
{
    return ca->fpr;
}

const char *akm_ca_fingerprint_hex(const struct akm_ca *ca)
{
    return ca->fpr_hex;
}

EVP_PKEY *akm_ca_pubkey(const struct akm_ca *ca)
{
    return X509_get0_pubkey(ca->cert);
}

const EVP_MD *akm_ca_digest(const struct akm_ca *ca)
{
    return ca->md;
}

const char *akm_ca_key_type(const struct akm_ca *ca)
{
    return ca->key_type;
}

int64_t akm_ca_not_after(const struct akm_ca *ca)
{
    return ca->not_after;
}

/* ------------------------------------------------------------------ */
/* signing other things (ca.h)                                         */

int akm_ca_sign(const struct akm_ca *ca, const uint8_t *msg, size_t len, uint8_t **sig,
                size_t *sig_len, struct ut_err *err)
{
    EVP_MD_CTX *ctx = NULL;
    uint8_t *out = NULL;
    size_t n = 0;
    int rc = -EIO;

    *sig = NULL;
    *sig_len = 0;
    if (ca == NULL || msg == NULL || len == 0 || msg[0] == 0x30) {
        ut_err_set(err, "CA signature: refusing an empty or DER-looking message");
        return -EINVAL;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (EVP_DigestSignInit(ctx, NULL, ca->md, NULL, ca->key) != 1 ||
        EVP_DigestSign(ctx, NULL, &n, msg, len) != 1) {
        ut_err_set(err, "CA signature: %s", ossl_why());
        goto out;
    }
    out = malloc(n);
    if (out == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if (EVP_DigestSign(ctx, out, &n, msg, len) != 1) {
        ut_err_set(err, "CA signature: %s", ossl_why());
        goto out;
    }
    *sig = out;
    *sig_len = n;
    out = NULL;
    rc = 0;
out:
    free(out);
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int akm_ca_verify(const struct akm_ca *ca, const uint8_t *msg, size_t len, const uint8_t *sig,
                  size_t sig_len, struct ut_err *err)
{
    EVP_MD_CTX *ctx;
    int rc = -EPERM;

    if (ca == NULL || msg == NULL || len == 0 || sig == NULL || sig_len == 0) {
        ut_err_set(err, "CA signature check: empty message or signature");
        return -EINVAL;
    }
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return -ENOMEM;
    if (EVP_DigestVerifyInit(ctx, NULL, ca->md, NULL, X509_get0_pubkey(ca->cert)) == 1 &&
        EVP_DigestVerify(ctx, sig, sig_len, msg, len) == 1)
        rc = 0;
    else
        ut_err_set(err, "signature does not verify with this CA's key");
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

/* ------------------------------------------------------------------ */
/* CSRs                                                                */

/* Adds a DNS name from the CSR (where: "subjectAltName" or "commonName"). */
static int csr_add_dns(struct akm_csr *c, const void *p, size_t n, const char *where,
                       struct ut_err *err)
{
    char canon[AKM_NAME_MAX + 1], s[SHOWN_MAX + 4];
    const char *why = dns_normalize(p, n, canon);
    int rc;

    if (why != NULL) {
        ut_err_set(err, "CSR %s DNS name \"%s\": %s", where, shown(p, n, s), why);
        return -EINVAL;
    }
    rc = names_add(&c->names, AKM_NAME_DNS, canon);
    if (rc == -E2BIG) {
        ut_err_set(err, "CSR has too many names (more than %d)", AKM_MAX_NAMES);
        return -EINVAL;
    }
    return 0;
}

static int csr_add_ip(struct akm_csr *c, const uint8_t *b, size_t n, struct ut_err *err)
{
    char canon[AKM_NAME_MAX + 1];

    if (ip_bytes_to_text(b, n, canon, sizeof(canon)) < 0) {
        ut_err_set(err, "CSR subjectAltName iPAddress has %zu bytes (4 or 16 expected)", n);
        return -EINVAL;
    }
    if (names_add(&c->names, AKM_NAME_IP, canon) == -E2BIG) {
        ut_err_set(err, "CSR has too many names (more than %d)", AKM_MAX_NAMES);
        return -EINVAL;
    }
    return 0;
}

static const char *gen_type_name(int type)
{
    switch (type) {
    case GEN_OTHERNAME:
        return "otherName";
    case GEN_EMAIL:
        return "rfc822Name (email)";
    case GEN_X400:
        return "x400Address";
    case GEN_DIRNAME:
        return "directoryName";
    case GEN_EDIPARTY:
        return "ediPartyName";
    case GEN_URI:
        return "uniformResourceIdentifier";
    case GEN_RID:
        return "registeredID";
    default:
        return "unknown";
    }
}

static int csr_sans(struct akm_csr *c, const GENERAL_NAMES *gens, struct ut_err *err)
{
    int i, n = sk_GENERAL_NAME_num(gens);
    int rc;

    if (n > CSR_MAX_RAW_SANS) {
        ut_err_set(err, "CSR has too many names (%d subjectAltName entries)", n);
        return -EINVAL;
    }
    for (i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_STRING *s;

        if (g->type == GEN_DNS) {
            s = g->d.dNSName;
            rc = csr_add_dns(c, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s),
                             "subjectAltName", err);
        } else if (g->type == GEN_IPADD) {
            s = g->d.iPAddress;
            rc = csr_add_ip(c, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), err);
        } else {
            ut_err_set(err,
                       "CSR subjectAltName entry of type %s is not allowed (only dNSName and "
                       "iPAddress)",
                       gen_type_name(g->type));
            rc = -EINVAL;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* How many extension-request attributes (PKCS#9 and the old Microsoft one)
 * the request has, or -1 when one of them is not single-valued. */
static int csr_ext_attrs(const X509_REQ *req)
{
    static const int nids[] = {NID_ext_req, NID_ms_ext_req};
    int count = 0;
    size_t k;

    for (k = 0; k < sizeof(nids) / sizeof(nids[0]); k++) {
        int idx = -1;

        while ((idx = X509_REQ_get_attr_by_NID(req, nids[k], idx)) >= 0) {
            if (X509_ATTRIBUTE_count(X509_REQ_get_attr(req, idx)) != 1)
                return -1;
            count++;
        }
    }
    return count;
}

static int csr_extensions(struct akm_csr *c, struct ut_err *err)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    char oid[80];
    int i, j, n, attrs, rc = -EINVAL;

    attrs = csr_ext_attrs(c->req);
    if (attrs == 0)
        return 0;
    if (attrs < 0 || attrs > 1) {
        ut_err_set(err, "CSR extension request attribute is malformed or repeated");
        return -EINVAL;
    }
    exts = X509_REQ_get_extensions(c->req);
    if (exts == NULL) {
        ut_err_set(err, "CSR extension request is malformed");
        return -EINVAL;
    }
    n = sk_X509_EXTENSION_num(exts);
    if (n > CSR_MAX_EXTS) {
        ut_err_set(err, "CSR requests too many extensions (%d, max %d)", n, CSR_MAX_EXTS);
        goto out;
    }
    for (i = 0; i < n; i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        const ASN1_OBJECT *obj = X509_EXTENSION_get_object(e);
        int nid = OBJ_obj2nid(obj);

        for (j = 0; j < i; j++) {
            if (OBJ_cmp(obj, X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, j))) == 0) {
                OBJ_obj2txt(oid, sizeof(oid), obj, 0);
                ut_err_set(err, "CSR requests extension %s twice", oid);
                goto out;
            }
        }
        if (nid == NID_subject_alt_name) {
            GENERAL_NAMES *gens = X509V3_EXT_d2i(e);

            if (gens == NULL) {
                ut_err_set(err, "CSR subjectAltName extension is malformed");
                goto out;
            }
            rc = csr_sans(c, gens, err);
            GENERAL_NAMES_free(gens);
            if (rc < 0)
                goto out;
            rc = -EINVAL;
        } else if (nid == NID_basic_constraints) {
            BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(e);
            int ca = bc ? bc->ca : -1;

            BASIC_CONSTRAINTS_free(bc);
            if (ca < 0) {
                ut_err_set(err, "CSR basicConstraints extension is malformed");
                goto out;
            }
            if (ca) {
                ut_err_set(err, "CSR requests a CA certificate (basicConstraints CA:TRUE)");
                goto out;
            }
        }
        /* Anything else is ignored: we never copy requested extensions. */
    }
    rc = 0;
out:
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

/* The subject commonName, when present, is one more requested name (see
 * akm_csr_parse in ca.h). */
static int csr_common_name(struct akm_csr *c, struct ut_err *err)
{
    const X509_NAME *subj = X509_REQ_get_subject_name(c->req);
    unsigned char *u = NULL;
    char text[AKM_NAME_MAX + 1], canon[AKM_NAME_MAX + 1], s[SHOWN_MAX + 4];
    uint8_t ip[16];
    size_t iplen;
    int i, n, rc = -EINVAL;

    i = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (i < 0)
        return 0;
    if (X509_NAME_get_index_by_NID(subj, NID_commonName, i) >= 0) {
        ut_err_set(err, "CSR subject has more than one commonName");
        return -EINVAL;
    }
    n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, i)));
    if (n < 0) {
        ut_err_set(err, "CSR commonName is not a valid string");
        goto out;
    }
    if (n == 0) {
        ut_err_set(err, "CSR commonName is empty");
        goto out;
    }
    if (n > AKM_NAME_MAX) {
        ut_err_set(err, "CSR commonName is longer than %d bytes", AKM_NAME_MAX);
        goto out;
    }
    memcpy(text, u, (size_t)n);
    text[n] = '\0';
    if (memchr(u, '\0', (size_t)n) == NULL && ip_text_to_bytes(text, ip, &iplen) == 0) {
        if (ip_bytes_to_text(ip, iplen, canon, sizeof(canon)) < 0)
            goto out;
        if (names_add(&c->names, AKM_NAME_IP, canon) == -E2BIG) {
            ut_err_set(err, "CSR has too many names (more than %d)", AKM_MAX_NAMES);
            goto out;
        }
        rc = 0;
        goto out;
    }
    if (dns_normalize(u, (size_t)n, canon) != NULL) {
        ut_err_set(err, "CSR commonName \"%s\" is neither a DNS name nor an IP address",
                   shown(u, (size_t)n, s));
        goto out;
    }
    rc = csr_add_dns(c, u, (size_t)n, "commonName", err);
out:
    OPENSSL_free(u);
    return rc;
}

/* Key policy for certificate keys. */
static int csr_check_key(const EVP_PKEY *k, struct ut_err *err)
{
    int nid, bits;

    switch (key_kind(k, &nid, &bits)) {
    case KK_RSA:
        if (bits < RSA_MIN_BITS) {
            ut_err_set(err, "CSR has a weak key: RSA %d bits (at least %d required)", bits,
                       RSA_MIN_BITS);
            return -EINVAL;
        }
        if (bits > RSA_MAX_BITS) {
            ut_err_set(err, "CSR RSA key is too large: %d bits (at most %d)", bits, RSA_MAX_BITS);
            return -EINVAL;
        }
        return 0;
    case KK_EC:
        if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1) {
            ut_err_set(err, "CSR EC key is on curve %s; only P-256 and P-384 are allowed",
                       nid == NID_undef ? "(explicit parameters)" : OBJ_nid2sn(nid));
            return -EINVAL;
        }
        return 0;
    case KK_ED25519:
        return 0;
    default:
        ut_err_set(err, "CSR key type is not allowed (RSA, EC P-256/P-384 or Ed25519 only)");
        return -EINVAL;
    }
}

/* Signature algorithms accepted on CSRs: no SHA-1/MD5, no RSA-PSS. */
static int csr_check_sigalg(const X509_REQ *req, const EVP_PKEY *k, struct ut_err *err)
{
    const X509_ALGOR *alg = NULL;
    const ASN1_OBJECT *obj = NULL;
    char oid[80];
    int nid, bits, knid;
    enum kkind need, have = key_kind(k, &knid, &bits);

    X509_REQ_get0_signature(req, NULL, &alg);
    X509_ALGOR_get0(&obj, NULL, NULL, alg);
    nid = OBJ_obj2nid(obj);
    switch (nid) {
    case NID_sha256WithRSAEncryption:
    case NID_sha384WithRSAEncryption:
    case NID_sha512WithRSAEncryption:
        need = KK_RSA;
        break;
    case NID_ecdsa_with_SHA256:
    case NID_ecdsa_with_SHA384:
    case NID_ecdsa_with_SHA512:
        need = KK_EC;
        break;
    case NID_ED25519:
        need = KK_ED25519;
        break;
    default:
        OBJ_obj2txt(oid, sizeof(oid), obj, 0);
        ut_err_set(err,
                   "CSR signature algorithm %s is not accepted (SHA-256/384/512 with RSA or "
                   "ECDSA, or Ed25519)",
                   oid);
        return -EINVAL;
    }
    if (need != have) {
        ut_err_set(err, "CSR signature algorithm %s does not fit its key type", OBJ_nid2sn(nid));
        return -EINVAL;
    }
    return 0;
}

int akm_csr_parse(const uint8_t *der, size_t len, struct akm_csr **out, struct ut_err *err)
{
    struct akm_csr *c = NULL;
    const unsigned char *p = der;
    unsigned char *re = NULL;
    int relen, rc = -EINVAL;

    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (der == NULL || len == 0) {
        ut_err_set(err, "CSR is empty");
        return -EINVAL;
    }
    if (len > AKM_CSR_MAX_DER) {
        ut_err_set(err, "CSR is too large (%zu bytes, at most %d)", len, AKM_CSR_MAX_DER);
        return -EINVAL;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->req = d2i_X509_REQ(NULL, &p, (long)len);
    if (c->req == NULL) {
        ut_err_set(err, "CSR is not a DER PKCS#10 request (%s)", ossl_why());
        goto out;
    }
    if (p != der + len) {
        ut_err_set(err, "CSR has %zu trailing bytes after the request", (size_t)(der + len - p));
        goto out;
    }
    relen = i2d_X509_REQ(c->req, &re);
    if (relen < 0 || (size_t)relen != len || memcmp(re, der, len) != 0) {
        ut_err_set(err, "CSR is not canonical DER");
        goto out;
    }
    if (X509_REQ_get_version(c->req) != X509_REQ_VERSION_1) {
        ut_err_set(err, "CSR version is not 1 (PKCS#10 v1.7)");
        goto out;
    }
    c->pub = X509_REQ_get0_pubkey(c->req);
    if (c->pub == NULL) {
        ut_err_set(err, "CSR public key cannot be decoded (%s)", ossl_why());
        goto out;
    }
    /* Key policy first: it bounds the cost of the signature check. */
    rc = csr_check_key(c->pub, err);
    if (rc < 0)
        goto out;
    rc = csr_check_sigalg(c->req, c->pub, err);
    if (rc < 0)
        goto out;
    if (X509_REQ_verify(c->req, c->pub) != 1) {
        ut_err_set(err, "CSR signature is invalid");
        rc = -EINVAL;
        goto out;
    }
    rc = csr_extensions(c, err);
    if (rc < 0)
        goto out;
    rc = csr_common_name(c, err);
    if (rc < 0)
        goto out;
    if (c->names.n == 0) {
        ut_err_set(err, "CSR has no names (no subjectAltName dNSName/iPAddress, no commonName)");
        rc = -EINVAL;
        goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    OPENSSL_free(re);
    akm_csr_free(c);
    ERR_clear_error();
    return rc;
}

void akm_csr_free(struct akm_csr *c)
{
    if (c == NULL)
        return;
    X509_REQ_free(c->req);
    free(c);
}

size_t akm_csr_n_names(const struct akm_csr *c)
{
    return c->names.n;
}

const struct akm_name *akm_csr_name(const struct akm_csr *c, size_t i)
{
    return i < c->names.n ? &c->names.v[i] : NULL;
}

EVP_PKEY *akm_csr_pubkey(const struct akm_csr *c)
{
    return c->pub;
}

int akm_csr_key_equals(const struct akm_csr *c, const EVP_PKEY *k)
{
    int r;

    if (c == NULL || k == NULL)
        return 0;
    r = EVP_PKEY_eq(c->pub, k) == 1;
    ERR_clear_error();
    return r;
}

/* ------------------------------------------------------------------ */
/* issuance                                                            */

static GENERAL_NAMES *build_gens(const struct akm_names_ *s)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    size_t i;

    if (gens == NULL)
        return NULL;
    for (i = 0; i < s->n; i++) {
        GENERAL_NAME *g = GENERAL_NAME_new();
        ASN1_STRING *v = NULL;
        uint8_t ip[16];
        size_t iplen = 0;
        int ok = 0;

        if (g == NULL)
            goto fail;
        if (s->v[i].type == AKM_NAME_DNS) {
            v = ASN1_IA5STRING_new();
            ok = v && ASN1_STRING_set(v, s->v[i].value, -1) == 1;
            if (ok)
                GENERAL_NAME_set0_value(g, GEN_DNS, v);
        } else {
            v = ASN1_OCTET_STRING_new();
            ok = v && ip_text_to_bytes(s->v[i].value, ip, &iplen) == 0 &&
                 ASN1_OCTET_STRING_set(v, ip, (int)iplen) == 1;
            if (ok)
                GENERAL_NAME_set0_value(g, GEN_IPADD, v);
        }
        if (!ok) {
            ASN1_STRING_free(v);
            GENERAL_NAME_free(g);
            goto fail;
        }
        if (sk_GENERAL_NAME_push(gens, g) <= 0) {
            GENERAL_NAME_free(g);
            goto fail;
        }
    }
    return gens;
fail:
    GENERAL_NAMES_free(gens);
    return NULL;
}

/* cRLDistributionPoints with one fullName URI. */
static int add_crl_dp(X509 *x, const char *url)
{
    CRL_DIST_POINTS *dps = CRL_DIST_POINTS_new();
    DIST_POINT *dp = DIST_POINT_new();
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *u = ASN1_IA5STRING_new();
    int rc = -EIO;

    if (dps == NULL || dp == NULL || g == NULL || u == NULL ||
        (dp->distpoint = DIST_POINT_NAME_new()) == NULL ||
        (dp->distpoint->name.fullname = GENERAL_NAMES_new()) == NULL ||
        ASN1_STRING_set(u, url, -1) != 1)
        goto out;
    dp->distpoint->type = 0; /* fullName */
    GENERAL_NAME_set0_value(g, GEN_URI, u);
    u = NULL;
    if (sk_GENERAL_NAME_push(dp->distpoint->name.fullname, g) <= 0)
        goto out;
    g = NULL;
    if (sk_DIST_POINT_push(dps, dp) <= 0)
        goto out;
    dp = NULL;
    if (X509_add1_ext_i2d(x, NID_crl_distribution_points, dps, 0, X509V3_ADD_DEFAULT) == 1)
        rc = 0;
out:
    ASN1_IA5STRING_free(u);
    GENERAL_NAME_free(g);
    DIST_POINT_free(dp);
    CRL_DIST_POINTS_free(dps);
    return rc;
}

static const char *url_problem(const char *url)
{
    size_t i, n = strnlen(url, AKM_CRL_URL_MAX + 1);

    if (n > AKM_CRL_URL_MAX)
        return "longer than 1024 bytes";
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return "not an http:// or https:// URL";
    for (i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f)
            return "has a space, control or non-ASCII byte";
    return NULL;
}

/* Checks req and fills names (normalized, no duplicates). */
static int issue_check(const struct akm_issue_req *r, struct akm_names_ *names, struct ut_err *err)
{
    char canon[AKM_NAME_MAX + 1], s[SHOWN_MAX + 4];
    const char *why;
    size_t i;

    if (r->csr == NULL) {
        ut_err_set(err, "issue: no CSR");
        return -EINVAL;
    }
    if (r->n_names == 0 || r->names == NULL) {
        ut_err_set(err, "issue: no names to certify");
        return -EINVAL;
    }
    if (r->n_names > AKM_MAX_NAMES) {
        ut_err_set(err, "issue: too many names (%zu, at most %d)", r->n_names, AKM_MAX_NAMES);
        return -EINVAL;
    }
    if (r->validity_days < 1 || r->validity_days > AKM_VALIDITY_MAX) {
        ut_err_set(err, "issue: validity_days %d out of range 1..%d", r->validity_days,
                   AKM_VALIDITY_MAX);
        return -EINVAL;
    }
    if (r->crl_url != NULL && (why = url_problem(r->crl_url)) != NULL) {
        ut_err_set(err, "issue: CRL URL \"%s\" %s",
                   shown(r->crl_url, strnlen(r->crl_url, AKM_CRL_URL_MAX + 1), s), why);
        return -EINVAL;
    }
    if (r->now != 0 && !time_ok(r->now)) {
        ut_err_set(err, "issue: time %lld out of range", (long long)r->now);
        return -EINVAL;
    }
    for (i = 0; i < r->n_names; i++) {
        const char *v = r->names[i].value;

        why = name_normalize(r->names[i].type, v, canon);
        if (why != NULL) {
            ut_err_set(err, "issue: name \"%s\": %s",
                       v ? shown(v, strnlen(v, AKM_NAME_MAX + 1), s) : "(null)", why);
            return -EINVAL;
        }
        if (names_add(names, r->names[i].type, canon) != 0) {
            ut_err_set(err, "issue: name \"%s\" listed twice", canon);
            return -EINVAL;
        }
    }
    return 0;
}

/* The CSR's SubjectPublicKeyInfo, as encoded, into the new certificate.
 * X509_set_pubkey would encode the CSR's EVP_PKEY and decode it again
 * through freshly built OpenSSL 3 encoder/decoder contexts (the largest
 * single cost of an issuance); the bytes are the same. The certificate's
 * X509_PUBKEY is new and empty, so nothing cached in it goes stale. */
static int copy_spki(X509 *x, X509_REQ *req)
{
    X509_PUBKEY *from = X509_REQ_get_X509_PUBKEY(req), *to = X509_get_X509_PUBKEY(x);
    const ASN1_OBJECT *obj;
    const void *pval;
    X509_ALGOR *alg;
    const unsigned char *bits;
    unsigned char *enc = NULL;
    ASN1_OBJECT *aobj = NULL;
    void *param = NULL;
    int ptype, nbits;

    if (from == NULL || to == NULL ||
        X509_PUBKEY_get0_param(NULL, &bits, &nbits, &alg, from) != 1 || nbits <= 0)
        return -1;
    X509_ALGOR_get0(&obj, &ptype, &pval, alg);
    if ((aobj = OBJ_dup(obj)) == NULL || (enc = OPENSSL_memdup(bits, (size_t)nbits)) == NULL)
        goto fail;
    if (ptype == V_ASN1_OBJECT) {
        if ((param = OBJ_dup(pval)) == NULL)
            goto fail;
    } else if (ptype != V_ASN1_UNDEF && ptype != V_ASN1_NULL) {
        if ((param = ASN1_STRING_dup(pval)) == NULL)
            goto fail;
    }
    if (X509_PUBKEY_set0_param(to, aobj, ptype, param, enc, nbits) != 1)
        goto fail;
    return 0;
fail:
    ASN1_OBJECT_free(aobj);
    if (ptype == V_ASN1_OBJECT)
        ASN1_OBJECT_free(param);
    else
        ASN1_STRING_free(param);
    OPENSSL_free(enc);
    return -1;
}

int akm_ca_issue(const struct akm_ca *ca, const struct akm_issue_req *r, struct akm_issued *out,
                 struct ut_err *err)
{
    struct akm_names_ *names = NULL;
    GENERAL_NAMES *gens = NULL;
    ASN1_INTEGER *sn = NULL;
    X509 *x = NULL;
    X509V3_CTX ctx;
    const char *cn = NULL;
    int64_t now, nb, na;
    bool rsa;
    size_t i;
    int rc = -EINVAL;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    if (ca == NULL || r == NULL) {
        ut_err_set(err, "issue: no CA or request");
        return -EINVAL;
    }
    names = calloc(1, sizeof(*names));
    if (names == NULL)
        return -ENOMEM;
    rc = issue_check(r, names, err);
    if (rc < 0)
        goto out;
    if (EVP_PKEY_eq(r->csr->pub, X509_get0_pubkey(ca->cert)) == 1) {
        ut_err_set(err, "CSR public key is the CA's own key");
        rc = -EKEYREJECTED;
        goto out;
    }
    rsa = EVP_PKEY_is_a(r->csr->pub, "RSA");
    now = r->now ? r->now : (int64_t)time(NULL);
    nb = now - LEAF_BACKDATE;
    na = nb + (int64_t)r->validity_days * 86400 - 1;
    if (na > ca->not_after)
        na = ca->not_after; /* never outlive the issuer */
    if (na <= nb) {
        ut_err_set(err, "issue: the CA certificate has expired");
        rc = -EINVAL;
        goto out;
    }
    for (i = 0; i < names->n && cn == NULL; i++)
        if (names->v[i].type == AKM_NAME_DNS)
            cn = names->v[i].value;
    if (cn != NULL && strlen(cn) > AKM_CN_MAX)
        cn = NULL; /* too long for a CN: empty subject, critical SAN */
    rc = -EIO;
    if (random_serial(out->serial) < 0 ||
        (sn = serial_to_asn1(out->serial, AKM_SERIAL_BYTES)) == NULL ||
        (gens = build_gens(names)) == NULL || (x = X509_new()) == NULL) {
        ut_err_set(err, "issue: cannot build the certificate: %s", ossl_why());
        goto out;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || X509_set_serialNumber(x, sn) != 1 ||
        X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) != 1 ||
        ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) == NULL || copy_spki(x, r->csr->req) < 0 ||
        (cn != NULL &&
         X509_NAME_add_entry_by_NID(X509_get_subject_name(x), NID_commonName, MBSTRING_ASC,
                                    (const unsigned char *)cn, -1, -1, 0) != 1)) {
        ut_err_set(err, "issue: cannot fill the certificate: %s", ossl_why());
        goto out;
    }
    X509V3_set_ctx(&ctx, ca->cert, x, NULL, NULL, 0);
    if (add_ext_conf(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext_conf(x, &ctx, NID_key_usage,
                     rsa ? "critical,digitalSignature,keyEncipherment"
                         : "critical,digitalSignature") < 0 ||
        add_ext_conf(x, &ctx, NID_ext_key_usage,
                     r->client_auth ? "serverAuth,clientAuth" : "serverAuth") < 0 ||
        add_ext_conf(x, &ctx, NID_subject_key_identifier, "hash") < 0 ||
        add_ext_conf(x, &ctx, NID_authority_key_identifier, "keyid:always") < 0 ||
        X509_add1_ext_i2d(x, NID_subject_alt_name, gens, cn == NULL, X509V3_ADD_DEFAULT) != 1 ||
        (r->crl_url != NULL && add_crl_dp(x, r->crl_url) < 0)) {
        ut_err_set(err, "issue: cannot add the certificate extensions: %s", ossl_why());
        goto out;
    }
    if (X509_sign(x, ca->key, ca->md) <= 0) {
        ut_err_set(err, "issue: cannot sign the certificate: %s", ossl_why());
        goto out;
    }
    if (X509_verify(x, X509_get0_pubkey(ca->cert)) != 1) {
        ut_err_set(err, "issue: the new certificate's signature does not verify");
        goto out;
    }
    rc = der_of_x509(x, &out->der, &out->der_len);
    if (rc < 0) {
        ut_err_set(err, "issue: cannot encode the certificate");
        goto out;
    }
    ut_hex_encode(out->serial, AKM_SERIAL_BYTES, out->serial_hex);
    out->not_before = nb;
    out->not_after = na;
    rc = 0;
out:
    if (rc < 0)
        akm_issued_clear(out);
    X509_free(x);
    GENERAL_NAMES_free(gens);
    ASN1_INTEGER_free(sn);
    free(names);
    ERR_clear_error();
    return rc;
}

void akm_issued_clear(struct akm_issued *i)
{
    if (i == NULL)
        return;
    free(i->der);
    memset(i, 0, sizeof(*i));
}

/* 1 when der is one DER SEQUENCE filling exactly len bytes: the shape of
 * a certificate, checked from its header alone (ASN1_get_object) without
 * parsing it: a full d2i_X509 decodes the subject key through OpenSSL 3's
 * decoder, the largest cost of a download. */
static int der_sequence_fills(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    long body = 0;
    int tag = 0, cls = 0, ret;

    if (der == NULL || len == 0 || len > LONG_MAX)
        return 0;
    ret = ASN1_get_object(&p, &body, &tag, &cls, (long)len);
    ERR_clear_error();
    return ret == V_ASN1_CONSTRUCTED && tag == V_ASN1_SEQUENCE && cls == V_ASN1_UNIVERSAL &&
           (size_t)(p - der) + (size_t)body == len;
}

int akm_ca_chain_pem(const struct akm_ca *ca, const uint8_t *leaf_der, size_t len, char **pem_out,
                     size_t *pem_len, struct ut_err *err)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----\n",
                      end[] = "-----END CERTIFICATE-----\n";
    size_t b64len, lines, ca_len, total, o = 0;
    char *b64 = NULL, *pem = NULL;

    if (pem_out == NULL)
        return -EINVAL;
    *pem_out = NULL;
    if (ca == NULL)
        return -EINVAL;
    /* The stored DER is what this CA (or a peer under the same CA) issued;
     * its shape is checked, the PEM is its base64 in 64-column lines as
     * PEM_write_bio_X509 writes it (tests/unit compares the two). */
    if (len == 0 || len > AKM_CERT_MAX_DER || !der_sequence_fills(leaf_der, len)) {
        ut_err_set(err, "chain: the stored certificate is not one DER SEQUENCE (%zu bytes)", len);
        return -EINVAL;
    }
    b64len = ut_b64_enclen(len, 0);
    lines = (b64len + 63) / 64;
    ca_len = strlen(ca->pem);
    total = sizeof(begin) - 1 + b64len + lines + sizeof(end) - 1 + ca_len;
    if ((b64 = malloc(b64len + 1)) == NULL || (pem = malloc(total + 1)) == NULL) {
        free(b64);
        return -ENOMEM;
    }
    ut_b64_encode(leaf_der, len, b64, 0);
    memcpy(pem + o, begin, sizeof(begin) - 1);
    o += sizeof(begin) - 1;
    for (size_t i = 0; i < b64len; i += 64) {
        size_t n = b64len - i < 64 ? b64len - i : 64;

        memcpy(pem + o, b64 + i, n);
        o += n;
        pem[o++] = '\n';
    }
    memcpy(pem + o, end, sizeof(end) - 1);
    o += sizeof(end) - 1;
    memcpy(pem + o, ca->pem, ca_len);
    o += ca_len;
    pem[o] = '\0';
    free(b64);
    *pem_out = pem;
    if (pem_len)
        *pem_len = o;
    return 0;
}

/* ------------------------------------------------------------------ */
/* inspecting certificates                                             */

static int info_names(X509 *x, struct akm_names_ *s, struct ut_err *err)
{
    GENERAL_NAMES *gens;
    char canon[AKM_NAME_MAX + 1];
    int i, n, crit = -1, rc = 0;

    gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (gens == NULL) {
        if (crit == -1)
            return 0; /* no SAN */
        ut_err_set(err, "certificate subjectAltName is malformed or repeated");
        return -EINVAL;
    }
    n = sk_GENERAL_NAME_num(gens);
    for (i = 0; i < n && rc == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_STRING *v;

        if (g->type == GEN_DNS) {
            v = g->d.dNSName;
            if (dns_normalize(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v), canon)) {
                ut_err_set(err, "certificate has an invalid dNSName");
                rc = -EINVAL;
                break;
            }
            rc = names_add(s, AKM_NAME_DNS, canon);
        } else if (g->type == GEN_IPADD) {
            v = g->d.iPAddress;
            if (ip_bytes_to_text(ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v), canon,
                                 sizeof(canon)) < 0) {
                ut_err_set(err, "certificate has an invalid iPAddress");
                rc = -EINVAL;
                break;
            }
            rc = names_add(s, AKM_NAME_IP, canon);
        }
        if (rc == 1)
            rc = 0; /* a duplicate: keep one */
        if (rc == -E2BIG) {
            ut_err_set(err, "certificate has more than %d names", AKM_MAX_NAMES);
            rc = -EINVAL;
        }
    }
    GENERAL_NAMES_free(gens);
    return rc;
}

int akm_cert_info(const uint8_t *der, size_t len, struct akm_cert_info *out, struct ut_err *err)
{
    const ASN1_INTEGER *sn;
    const char *why = NULL;
    X509 *x = NULL;
    int rc = -EINVAL;

    if (out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    x = parse_cert_der(der, len, &why);
    if (x == NULL) {
        ut_err_set(err, "%s", why);
        goto out;
    }
    sn = X509_get0_serialNumber(x);
    if (ASN1_STRING_type(sn) == V_ASN1_NEG_INTEGER || ASN1_STRING_length(sn) <= 0 ||
        ASN1_STRING_length(sn) > AKM_SERIAL_MAX) {
        ut_err_set(err, "certificate serial is negative, empty or longer than %d bytes",
                   AKM_SERIAL_MAX);
        goto out;
    }
    out->serial_len = (size_t)ASN1_STRING_length(sn);
    memcpy(out->serial, ASN1_STRING_get0_data(sn), out->serial_len);
    ut_hex_encode(out->serial, out->serial_len, out->serial_hex);
    if (asn1_to_unix(X509_get0_notBefore(x), &out->not_before) < 0 ||
        asn1_to_unix(X509_get0_notAfter(x), &out->not_after) < 0) {
        ut_err_set(err, "certificate validity dates are unreadable");
        goto out;
    }
    out->priv_ = calloc(1, sizeof(*out->priv_));
    if (out->priv_ == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    rc = info_names(x, out->priv_, err);
    if (rc < 0)
        goto out;
    out->n_names = out->priv_->n;
    out->names = out->priv_->v;
    out->pubkey = X509_get_pubkey(x);
    if (out->pubkey == NULL) {
        ut_err_set(err, "certificate public key cannot be decoded (%s)", ossl_why());
        rc = -EINVAL;
        goto out;
    }
    rc = 0;
out:
    if (rc < 0)
        akm_cert_info_clear(out);
    X509_free(x);
    ERR_clear_error();
    return rc;
}

void akm_cert_info_clear(struct akm_cert_info *i)
{
    if (i == NULL)
        return;
    EVP_PKEY_free(i->pubkey);
    free(i->priv_);
    memset(i, 0, sizeof(*i));
}

int akm_ca_issued_by(const struct akm_ca *ca, const uint8_t *der, size_t len, struct ut_err *err)
{
    const char *why = NULL;
    X509 *x;
    int rc;

    if (ca == NULL)
        return -EINVAL;
    x = parse_cert_der(der, len, &why);
    if (x == NULL) {
        ut_err_set(err, "%s", why);
        ERR_clear_error();
        return -EINVAL;
    }
    if (X509_check_issued(ca->cert, x) != X509_V_OK) {
        ut_err_set(err, "certificate was not issued by this CA (issuer or key identifier differ)");
        rc = -EPERM;
    } else if (X509_verify(x, X509_get0_pubkey(ca->cert)) != 1) {
        ut_err_set(err, "certificate signature does not verify with this CA's key");
        rc = -EPERM;
    } else {
        rc = 0;
    }
    X509_free(x);
    ERR_clear_error();
    return rc;
}

/* ------------------------------------------------------------------ */
/* CRLs                                                                */

/* One revoked entry; -EINVAL (with message) for bad input. */
static int crl_entry(X509_CRL *crl, const struct akm_revoked *e, size_t i, struct ut_err *err)
{
    static const uint8_t zero[AKM_SERIAL_BYTES];
    X509_REVOKED *rev = NULL;
    ASN1_INTEGER *sn = NULL;
    ASN1_TIME *t = NULL;
    ASN1_ENUMERATED *reason = NULL;
    int rc = -EINVAL;

    if (e->reason < 0 || e->reason > 10 || e->reason == 7) {
        ut_err_set(err, "CRL entry %zu: reason %d is not a CRLReason (0..10 except 7)", i,
                   e->reason);
        return -EINVAL;
    }
    if (!time_ok(e->revoked_at)) {
        ut_err_set(err, "CRL entry %zu: revocation time out of range", i);
        return -EINVAL;
    }
    if (memcmp(e->serial, zero, sizeof(zero)) == 0) {
        ut_err_set(err, "CRL entry %zu: serial is zero", i);
        return -EINVAL;
    }
    rc = -EIO;
    if ((rev = X509_REVOKED_new()) == NULL ||
        (sn = serial_to_asn1(e->serial, AKM_SERIAL_BYTES)) == NULL ||
        (t = ASN1_TIME_set(NULL, (time_t)e->revoked_at)) == NULL ||
        X509_REVOKED_set_serialNumber(rev, sn) != 1 || X509_REVOKED_set_revocationDate(rev, t) != 1)
        goto out;
    if (e->reason != 0) { /* RFC 5280 §5.3.1: absent rather than unspecified */
        if ((reason = ASN1_ENUMERATED_new()) == NULL ||
            ASN1_ENUMERATED_set(reason, e->reason) != 1 ||
            X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, reason, 0, 0) != 1)
            goto out;
    }
    if (X509_CRL_add0_revoked(crl, rev) != 1)
        goto out;
    rev = NULL;
    rc = 0;
out:
    if (rc == -EIO)
        ut_err_set(err, "CRL entry %zu: %s", i, ossl_why());
    X509_REVOKED_free(rev);
    ASN1_INTEGER_free(sn);
    ASN1_TIME_free(t);
    ASN1_ENUMERATED_free(reason);
    return rc;
}

int akm_ca_crl(const struct akm_ca *ca, const struct akm_revoked *list, size_t n,
               int64_t this_update, int64_t next_update, uint64_t crl_number, uint8_t **der_out,
               size_t *der_len, struct ut_err *err)
{
    STACK_OF(X509_REVOKED) * revs;
    X509_CRL *crl = NULL;
    ASN1_TIME *t1 = NULL, *t2 = NULL;
    ASN1_INTEGER *num = NULL;
    X509_EXTENSION *aki = NULL;
    X509V3_CTX ctx;
    unsigned char *p;
    size_t i;
    int len, rc = -EINVAL;

    if (der_out == NULL || der_len == NULL)
        return -EINVAL;
    *der_out = NULL;
    *der_len = 0;
    if (ca == NULL || (n > 0 && list == NULL)) {
        ut_err_set(err, "CRL: no CA or no entries");
        return -EINVAL;
    }
    if (n > AKM_CRL_MAX_ENTRY) {
        ut_err_set(err, "CRL: %zu entries (at most %d)", n, AKM_CRL_MAX_ENTRY);
        return -EINVAL;
    }
    if (!time_ok(this_update) || !time_ok(next_update) || next_update <= this_update) {
        ut_err_set(err, "CRL: nextUpdate must follow thisUpdate (both within 1970..9999)");
        return -EINVAL;
    }
    rc = -EIO;
    if ((crl = X509_CRL_new()) == NULL || X509_CRL_set_version(crl, X509_CRL_VERSION_2) != 1 ||
        X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca->cert)) != 1 ||
        (t1 = ASN1_TIME_set(NULL, (time_t)this_update)) == NULL ||
        (t2 = ASN1_TIME_set(NULL, (time_t)next_update)) == NULL ||
        X509_CRL_set1_lastUpdate(crl, t1) != 1 || X509_CRL_set1_nextUpdate(crl, t2) != 1) {
        ut_err_set(err, "CRL: cannot fill the header: %s", ossl_why());
        goto out;
    }
    for (i = 0; i < n; i++) {
        rc = crl_entry(crl, &list[i], i, err);
        if (rc < 0)
            goto out;
    }
    rc = -EIO;
    if (X509_CRL_sort(crl) != 1) {
        ut_err_set(err, "CRL: cannot sort the entries");
        goto out;
    }
    revs = X509_CRL_get_REVOKED(crl);
    for (i = 1; i < n; i++) {
        if (ASN1_INTEGER_cmp(
                X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, (int)i - 1)),
                X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revs, (int)i))) == 0) {
            ut_err_set(err, "CRL: a serial is listed twice");
            rc = -EINVAL;
            goto out;
        }
    }
    X509V3_set_ctx(&ctx, ca->cert, NULL, NULL, crl, 0);
    aki = X509V3_EXT_nconf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
    if (aki == NULL || X509_CRL_add_ext(crl, aki, -1) != 1 || (num = ASN1_INTEGER_new()) == NULL ||
        ASN1_INTEGER_set_uint64(num, crl_number) != 1 ||
        X509_CRL_add1_ext_i2d(crl, NID_crl_number, num, 0, 0) != 1) {
        ut_err_set(err, "CRL: cannot add the extensions: %s", ossl_why());
        goto out;
    }
    if (X509_CRL_sign(crl, ca->key, ca->md) <= 0) {
        ut_err_set(err, "CRL: cannot sign: %s", ossl_why());
        goto out;
    }
    len = i2d_X509_CRL(crl, NULL);
    if (len <= 0) {
        ut_err_set(err, "CRL: cannot encode");
        goto out;
    }
    *der_out = malloc((size_t)len);
    if (*der_out == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    p = *der_out;
    if (i2d_X509_CRL(crl, &p) != len) {
        free(*der_out);
        *der_out = NULL;
        ut_err_set(err, "CRL: cannot encode");
        goto out;
    }
    *der_len = (size_t)len;
    rc = 0;
out:
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(num);
    ASN1_TIME_free(t1);
    ASN1_TIME_free(t2);
    X509_CRL_free(crl);
    ERR_clear_error();
    return rc;
}
