/* Unit tests for daemons/akamu/ca.c: CA bootstrap (generate / load /
 * refuse), CSR checks, leaf issuance, certificate inspection, CRLs. Every
 * certificate and CRL is checked with the OpenSSL API and with the
 * openssl(1) command (verify -x509_strict, crl -CAfile). */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "util/log.h"

/* ------------------------------------------------------------------ */
/* fixture: keys made once, one P-256 CA and a second CA               */

static struct {
    char root[64];
    EVP_PKEY *rsa2048, *rsa1024, *p256, *p384, *p521, *k1, *ed, *ed448, *p256b;
    struct akm_ca *ca;    /* ec:P-256, generated in root/main */
    struct akm_ca *other; /* ed25519, generated in root/other, same CN */
    char ca_pem_path[128];
    char other_pem_path[128];
    int seq; /* unique sub-directories */
} F;

static void path_in(char *out, size_t n, const char *dir, const char *name)
{
    int w = snprintf(out, n, "%s/%s", dir, name);

    assert_true(w > 0 && (size_t)w < n);
}

/* A fresh directory under the fixture root. */
static void new_dir(char *out, size_t n)
{
    int w = snprintf(out, n, "%s/d%d", F.root, ++F.seq);

    assert_true(w > 0 && (size_t)w < n);
    assert_int_equal(mkdir(out, 0700), 0);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    return remove(p);
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Whole file into a malloc'd NUL-terminated buffer, or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* Runs a shell command; returns its exit status (-1 when it did not exit). */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    int st;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs a command and returns its stdout+stderr (malloc'd). */
static char *capture(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *capture(const char *fmt, ...)
{
    char cmd[2048];
    char *out = calloc(1, 65536);
    size_t n = 0, r;
    va_list ap;
    FILE *p;

    assert_non_null(out);
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof(cmd) - strlen(cmd) - 1);
    p = popen(cmd, "r");
    assert_non_null(p);
    while (n < 65535 && (r = fread(out + n, 1, 65535 - n, p)) > 0)
        n += r;
    pclose(p);
    return out;
}

static EVP_PKEY *keygen_ec(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);

    assert_non_null(k);
    return k;
}

static EVP_PKEY *keygen_rsa(size_t bits)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);

    assert_non_null(k);
    return k;
}

static EVP_PKEY *keygen_raw(const char *type)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, type);

    assert_non_null(k);
    return k;
}

static int open_ca_in(const char *dir, const char *type, const char *cn, struct akm_ca **out,
                      struct ut_err *err)
{
    char kp[256], cp[256];
    struct akm_ca_opts o = {0};

    path_in(kp, sizeof(kp), dir, "ca.key");
    path_in(cp, sizeof(cp), dir, "ca.pem");
    o.key_file = kp;
    o.cert_file = cp;
    o.key_type = type;
    o.ca_validity_years = 10;
    o.common_name = cn;
    return akm_ca_open(&o, out, err);
}

static int setup(void **state)
{
    char d[128];
    struct ut_err err = {{0}};

    (void)state;
    snprintf(F.root, sizeof(F.root), "/tmp/akm_ca_test_XXXXXX");
    if (mkdtemp(F.root) == NULL)
        return -1;
    F.rsa2048 = keygen_rsa(2048);
    F.rsa1024 = keygen_rsa(1024);
    F.p256 = keygen_ec("P-256");
    F.p256b = keygen_ec("P-256");
    F.p384 = keygen_ec("P-384");
    F.p521 = keygen_ec("P-521");
    F.k1 = keygen_ec("secp256k1");
    F.ed = keygen_raw("ED25519");
    F.ed448 = keygen_raw("ED448");
    snprintf(d, sizeof(d), "%s/main", F.root);
    mkdir(d, 0700);
    if (open_ca_in(d, "ec:P-256", "akamu CA test", &F.ca, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    path_in(F.ca_pem_path, sizeof(F.ca_pem_path), d, "ca.pem");
    snprintf(d, sizeof(d), "%s/other", F.root);
    mkdir(d, 0700);
    if (open_ca_in(d, "ed25519", "akamu CA test", &F.other, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return -1;
    }
    path_in(F.other_pem_path, sizeof(F.other_pem_path), d, "ca.pem");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    akm_ca_free(F.ca);
    akm_ca_free(F.other);
    EVP_PKEY_free(F.rsa2048);
    EVP_PKEY_free(F.rsa1024);
    EVP_PKEY_free(F.p256);
    EVP_PKEY_free(F.p256b);
    EVP_PKEY_free(F.p384);
    EVP_PKEY_free(F.p521);
    EVP_PKEY_free(F.k1);
    EVP_PKEY_free(F.ed);
    EVP_PKEY_free(F.ed448);
    nftw(F.root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ------------------------------------------------------------------ */
/* CSRs made with the X509_REQ API                                     */

struct csr_spec {
    EVP_PKEY *key;
    const EVP_MD *md; /* NULL: SHA-256, or none for Ed25519 */
    bool md_set;      /* use md even when NULL */
    const char *cn, *cn2;
    const char *san; /* openssl.cnf syntax: "DNS:a,IP:1.2.3.4" */
    bool san_twice;
    const char *bc; /* e.g. "critical,CA:TRUE" */
};

static bool is_ed(const EVP_PKEY *k)
{
    return EVP_PKEY_is_a(k, "ED25519") || EVP_PKEY_is_a(k, "ED448");
}

static uint8_t *make_csr(const struct csr_spec *s, size_t *len)
{
    X509_REQ *r = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_NAME *name;
    X509V3_CTX ctx;
    const EVP_MD *md = s->md_set ? s->md : is_ed(s->key) ? NULL : EVP_sha256();
    uint8_t *der = NULL;
    unsigned char *p;
    int n;

    assert_non_null(r);
    assert_int_equal(X509_REQ_set_version(r, X509_REQ_VERSION_1), 1);
    assert_int_equal(X509_REQ_set_pubkey(r, s->key), 1);
    name = X509_REQ_get_subject_name(r);
    if (s->cn)
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                    (const unsigned char *)s->cn, -1, -1, 0),
                         1);
    if (s->cn2)
        assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                    (const unsigned char *)s->cn2, -1, -1, 0),
                         1);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                                (const unsigned char *)"Ignored Org", -1, -1, 0),
                     1);
    X509V3_set_ctx(&ctx, NULL, NULL, r, NULL, 0);
    for (int i = 0; s->san && i < (s->san_twice ? 2 : 1); i++) {
        X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_subject_alt_name, s->san);

        assert_non_null(e);
        sk_X509_EXTENSION_push(exts, e);
    }
    if (s->bc) {
        X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &ctx, NID_basic_constraints, s->bc);

        assert_non_null(e);
        sk_X509_EXTENSION_push(exts, e);
    }
    if (sk_X509_EXTENSION_num(exts) > 0)
        assert_int_equal(X509_REQ_add_extensions(r, exts), 1);
    assert_true(X509_REQ_sign(r, s->key, md) > 0);
    n = i2d_X509_REQ(r, NULL);
    assert_true(n > 0);
    der = malloc((size_t)n + 16); /* room for trailing-garbage tests */
    assert_non_null(der);
    p = der;
    assert_int_equal(i2d_X509_REQ(r, &p), n);
    *len = (size_t)n;
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(r);
    return der;
}

static struct akm_csr *parse_ok(const struct csr_spec *s)
{
    struct ut_err err = {{0}};
    struct akm_csr *c = NULL;
    size_t len;
    uint8_t *der = make_csr(s, &len);
    int rc = akm_csr_parse(der, len, &c, &err);

    if (rc != 0)
        fail_msg("CSR refused: %s", err.msg);
    free(der);
    assert_non_null(c);
    return c;
}

/* Parses der and expects a refusal whose message contains want. */
static void refused_der(const uint8_t *der, size_t len, const char *want)
{
    struct ut_err err = {{0}};
    struct akm_csr *c = (struct akm_csr *)1;

    assert_int_equal(akm_csr_parse(der, len, &c, &err), -EINVAL);
    assert_null(c);
    if (strstr(err.msg, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
    assert_int_equal(ERR_peek_error(), 0); /* queue left empty */
}

static void refused(const struct csr_spec *s, const char *want)
{
    size_t len;
    uint8_t *der = make_csr(s, &len);

    refused_der(der, len, want);
    free(der);
}

/* ------------------------------------------------------------------ */
/* issuing and checking leaves                                         */

static void issue_ok(const struct akm_ca *ca, const struct akm_csr *c, const struct akm_name *names,
                     size_t n, int days, struct akm_issued *out)
{
    struct ut_err err = {{0}};
    struct akm_issue_req r = {0};

    r.csr = c;
    r.names = names;
    r.n_names = n;
    r.validity_days = days;
    if (akm_ca_issue(ca, &r, out, &err) != 0)
        fail_msg("issue failed: %s", err.msg);
    assert_non_null(out->der);
}

/* All names of c as the request list. */
static size_t csr_names(const struct akm_csr *c, struct akm_name *out)
{
    size_t i, n = akm_csr_n_names(c);

    for (i = 0; i < n; i++)
        out[i] = *akm_csr_name(c, i);
    return n;
}

static X509 *d2i_cert(const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);

    assert_non_null(x);
    return x;
}

static X509 *ca_x509(const struct akm_ca *ca)
{
    size_t len;
    const uint8_t *der = akm_ca_cert_der(ca, &len);

    return d2i_cert(der, len);
}

static void write_pem_cert(const char *path, const uint8_t *der, size_t len)
{
    X509 *x = d2i_cert(der, len);
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    X509_free(x);
}

/* X509_verify_cert with the CA as the only trust anchor, strict RFC 5280
 * checks, TLS server purpose, and (when given) a host name or IP. */
static int verify_api(const struct akm_ca *ca, const uint8_t *der, size_t len, const char *host,
                      const char *ip)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509 *root = ca_x509(ca), *leaf = d2i_cert(der, len);
    X509_VERIFY_PARAM *vp;
    int ok;

    assert_int_equal(X509_STORE_add_cert(st, root), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, st, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER), 1);
    vp = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_X509_STRICT);
    if (host)
        assert_int_equal(X509_VERIFY_PARAM_set1_host(vp, host, 0), 1);
    if (ip)
        assert_int_equal(X509_VERIFY_PARAM_set1_ip_asc(vp, ip), 1);
    ok = X509_verify_cert(ctx) == 1;
    if (!ok)
        print_message("X509_verify_cert: %s\n",
                      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    X509_free(root);
    X509_free(leaf);
    ERR_clear_error();
    return ok;
}

/* `openssl verify` exit status for the leaf against ca_pem_path. */
static int verify_cli(const char *ca_pem_path, const uint8_t *der, size_t len)
{
    char dir[128], leaf[192];

    new_dir(dir, sizeof(dir));
    path_in(leaf, sizeof(leaf), dir, "leaf.pem");
    write_pem_cert(leaf, der, len);
    return run("openssl verify -x509_strict -purpose sslserver -CAfile %s %s >/dev/null 2>&1",
               ca_pem_path, leaf);
}

/* SAN entries as "DNS:x" / "IP:y" joined by ',', rendered by OpenSSL's
 * GENERAL_NAME_print (IPv6 in its uncompressed upper-case form), so this
 * does not reuse the module's own text conversion. */
static void san_string(X509 *x, char *out, size_t n, int *crit)
{
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, crit, NULL);
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL, *q;
    long len;
    int i;

    assert_non_null(g);
    assert_non_null(b);
    for (i = 0; i < sk_GENERAL_NAME_num(g); i++) {
        if (i)
            BIO_puts(b, ",");
        assert_int_equal(GENERAL_NAME_print(b, sk_GENERAL_NAME_value(g, i)), 1);
    }
    len = BIO_get_mem_data(b, &p);
    assert_true(len >= 0 && (size_t)len < n);
    memcpy(out, p, (size_t)len);
    out[len] = '\0';
    while ((q = strstr(out, "IP Address:")) != NULL) { /* -> "IP:" */
        memmove(q + 3, q + 11, strlen(q + 11) + 1);
        q[2] = ':';
    }
    BIO_free(b);
    GENERAL_NAMES_free(g);
}

struct leaf_want {
    const struct akm_ca *ca;
    EVP_PKEY *key;
    const char *sans; /* exact "DNS:a,IP:b" */
    const char *cn;   /* NULL: empty subject */
    int days;
    bool rsa, client_auth;
};

static void check_leaf(const struct akm_issued *is, const struct leaf_want *w)
{
    X509 *x = d2i_cert(is->der, is->der_len), *ca = ca_x509(w->ca);
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    BASIC_CONSTRAINTS *bc;
    ASN1_BIT_STRING *ku;
    char sans[4096], cn[128], hex[40];
    int crit = -1, i;
    int64_t nb, na;
    struct tm tm;

    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    /* serial: 16 positive bytes, equal to what was returned */
    assert_int_equal(ASN1_STRING_type(sn), V_ASN1_INTEGER);
    assert_int_equal(ASN1_STRING_length(sn), AKM_SERIAL_BYTES);
    assert_memory_equal(ASN1_STRING_get0_data(sn), is->serial, AKM_SERIAL_BYTES);
    assert_true(is->serial[0] != 0 && is->serial[0] < 0x80);
    for (i = 0; i < AKM_SERIAL_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", is->serial[i]);
    assert_string_equal(hex, is->serial_hex);
    /* issuer, subject */
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(ca)), 0);
    if (w->cn) {
        assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn,
                                              sizeof(cn)) > 0);
        assert_string_equal(cn, w->cn);
        assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 1);
    } else {
        assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 0);
    }
    /* SAN exact, critical iff the subject is empty */
    san_string(x, sans, sizeof(sans), &crit);
    assert_string_equal(sans, w->sans);
    assert_int_equal(crit, w->cn ? 0 : 1);
    /* EKU */
    assert_true(X509_get_extension_flags(x) & EXFLAG_XKUSAGE);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_int_equal(!!(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT), w->client_auth);
    /* basicConstraints critical CA:FALSE */
    bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_int_equal(bc->ca, 0);
    BASIC_CONSTRAINTS_free(bc);
    /* keyUsage critical */
    ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
    assert_non_null(ku);
    assert_int_equal(crit, 1);
    ASN1_BIT_STRING_free(ku);
    assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    assert_int_equal(!!(X509_get_key_usage(x) & KU_KEY_ENCIPHERMENT), w->rsa);
    assert_false(X509_get_key_usage(x) & (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    assert_false(X509_check_ca(x));
    /* SKI present, AKI = CA SKI */
    assert_non_null(X509_get0_subject_key_id(x));
    assert_non_null(X509_get0_authority_key_id(x));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(ca)), 0);
    /* validity: days counted inclusively from notBefore */
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm), 1);
    nb = (int64_t)timegm(&tm);
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
    na = (int64_t)timegm(&tm);
    assert_int_equal(nb, is->not_before);
    assert_int_equal(na, is->not_after);
    assert_int_equal(na - nb, (int64_t)w->days * 86400 - 1);
    assert_true(nb <= (int64_t)time(NULL) - 59 && nb >= (int64_t)time(NULL) - 120);
    /* the CSR's key, and SKI = SHA-1 of its bits (RFC 5280 §4.2.1.2 (1)) */
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), w->key), 1);
    {
        const unsigned char *bits;
        unsigned char md[SHA_DIGEST_LENGTH];
        int nbits;

        assert_int_equal(X509_PUBKEY_get0_param(NULL, &bits, &nbits, NULL, X509_get_X509_PUBKEY(x)),
                         1);
        SHA1(bits, (size_t)nbits, md);
        assert_int_equal(ASN1_STRING_length(X509_get0_subject_key_id(x)), SHA_DIGEST_LENGTH);
        assert_memory_equal(ASN1_STRING_get0_data(X509_get0_subject_key_id(x)), md,
                            SHA_DIGEST_LENGTH);
    }
    /* no CRL DP unless asked */
    assert_int_equal(X509_get_ext_by_NID(x, NID_crl_distribution_points, -1), -1);
    X509_free(x);
    X509_free(ca);
}

/* ------------------------------------------------------------------ */
/* key generation                                                      */

static void test_keygen(void **state)
{
    static const char *const ok[] = {"ec:P-256", "ec:P-384", "rsa:2048", "ed25519"};
    static const char *const bad[] = {"rsa:1024", "ec:P-521", "ec:p-256", "dsa", "", "ed448"};
    struct ut_err err = {{0}};
    EVP_PKEY *k = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(akm_ca_keygen(ok[i], &k, &err), 0);
        assert_non_null(k);
        EVP_PKEY_free(k);
        k = NULL;
    }
    assert_int_equal(akm_ca_keygen("rsa:2048", &k, NULL), 0);
    assert_true(EVP_PKEY_is_a(k, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(k), 2048);
    EVP_PKEY_free(k);
    assert_int_equal(akm_ca_keygen("ec:P-384", &k, NULL), 0);
    assert_true(EVP_PKEY_is_a(k, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(k), 384);
    EVP_PKEY_free(k);
    assert_int_equal(akm_ca_keygen("ed25519", &k, NULL), 0);
    assert_true(EVP_PKEY_is_a(k, "ED25519"));
    EVP_PKEY_free(k);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        k = (EVP_PKEY *)1;
        assert_int_equal(akm_ca_keygen(bad[i], &k, &err), -EINVAL);
        assert_null(k);
        assert_non_null(strstr(err.msg, "unknown key type"));
    }
    assert_int_equal(akm_ca_keygen(NULL, &k, &err), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* bootstrap                                                           */

static void check_ca_cert(const struct akm_ca *ca, const char *cn, const EVP_MD *md)
{
    X509 *x = ca_x509(ca);
    BASIC_CONSTRAINTS *bc;
    ASN1_BIT_STRING *ku;
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    char buf[128];
    int crit = -1;
    struct tm tm;
    int64_t nb, na, now = (int64_t)time(NULL);

    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(ASN1_STRING_type(sn), V_ASN1_INTEGER);
    assert_int_equal(ASN1_STRING_length(sn), AKM_SERIAL_BYTES);
    assert_true(
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof(buf)) > 0);
    assert_string_equal(buf, cn);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, buf,
                                          sizeof(buf)) > 0);
    assert_string_equal(buf, "akamu");
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
    assert_int_equal(X509_verify(x, X509_get0_pubkey(x)), 1); /* self-signed */
    bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    assert_true(bc->ca);
    BASIC_CONSTRAINTS_free(bc);
    ku = X509_get_ext_d2i(x, NID_key_usage, &crit, NULL);
    assert_non_null(ku);
    assert_int_equal(crit, 1);
    ASN1_BIT_STRING_free(ku);
    assert_true(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_key_usage(x) & KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(x));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(x), X509_get0_subject_key_id(x)), 0);
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm), 1);
    nb = (int64_t)timegm(&tm);
    assert_int_equal(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
    na = (int64_t)timegm(&tm);
    assert_true(nb <= now - 3600 + 5 && nb >= now - 3600 - 60);
    assert_true(na >= now + 10 * 365 * 86400 - 3600 && na <= now + 10 * 366 * 86400 + 60);
    assert_int_equal(na, akm_ca_not_after(ca));
    assert_ptr_equal(akm_ca_digest(ca), md);
    assert_int_equal(EVP_PKEY_eq(akm_ca_pubkey(ca), X509_get0_pubkey(x)), 1);
    X509_free(x);
}

struct boot_case {
    const char *type;
    const EVP_MD *md;
};

/* Generates a CA of each type, checks files, profile, reopen, and that
 * leaves and CRLs it signs verify with openssl(1). */
static void test_bootstrap_types(void **state)
{
    struct boot_case cases[] = {
        {"ec:P-256", EVP_sha256()},
        {"ec:P-384", EVP_sha384()},
        {"rsa:2048", EVP_sha256()},
        {"ed25519", NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char dir[128], kp[192], cp[192], logp[192], line[80], fpr_hex[65];
        struct stat ks1, cs1, ks2, cs2;
        struct ut_err err = {{0}};
        struct akm_ca *ca = NULL, *again = NULL;
        struct akm_csr *csr;
        struct akm_issued is = {0};
        struct akm_name names[4];
        char *pem, *log, *out, *keypem;
        uint8_t fpr[AKM_FPR_BYTES], *crl = NULL;
        size_t n, crl_len, keylen;
        struct akm_revoked rv;
        int fd;

        memset(&rv, 0, sizeof(rv));
        new_dir(dir, sizeof(dir));
        path_in(kp, sizeof(kp), dir, "ca.key");
        path_in(cp, sizeof(cp), dir, "ca.pem");
        path_in(logp, sizeof(logp), dir, "log.txt");
        fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        ut_log_set_fd(fd);
        assert_int_equal(open_ca_in(dir, cases[i].type, NULL, &ca, &err), 0);
        ut_log_set_fd(2);
        close(fd);
        assert_true(akm_ca_generated(ca));
        assert_string_equal(akm_ca_key_type(ca), cases[i].type);
        /* files: key 0600, cert 0644, cert file = accessor PEM */
        assert_int_equal(stat(kp, &ks1), 0);
        assert_int_equal(stat(cp, &cs1), 0);
        assert_int_equal(ks1.st_mode & 07777, 0600);
        assert_int_equal(cs1.st_mode & 07777, 0644);
        pem = slurp(cp, NULL);
        assert_string_equal(pem, akm_ca_cert_pem(ca));
        free(pem);
        {
            char host[256], want[80];

            assert_int_equal(gethostname(host, sizeof(host)), 0);
            host[sizeof(host) - 1] = '\0';
            snprintf(want, AKM_CN_MAX + 1, "akamu CA %.*s", AKM_CN_MAX - 9, host);
            check_ca_cert(ca, want, cases[i].md);
        }
        /* fingerprint: SHA-256 of the DER, also as `openssl x509 -fingerprint` says */
        {
            const uint8_t *der = akm_ca_cert_der(ca, &n);
            unsigned int mdlen = 0;
            char *o, want[200];
            size_t k;

            assert_int_equal(EVP_Digest(der, n, fpr, &mdlen, EVP_sha256(), NULL), 1);
            assert_memory_equal(fpr, akm_ca_fingerprint(ca), AKM_FPR_BYTES);
            for (k = 0; k < AKM_FPR_BYTES; k++)
                snprintf(fpr_hex + 2 * k, 3, "%02x", fpr[k]);
            assert_string_equal(fpr_hex, akm_ca_fingerprint_hex(ca));
            for (k = 0; k < AKM_FPR_BYTES; k++)
                snprintf(want + 3 * k, 4, "%02X:", fpr[k]);
            want[3 * AKM_FPR_BYTES - 1] = '\0';
            o = capture("openssl x509 -in %s -noout -fingerprint -sha256", cp);
            if (strstr(o, want) == NULL)
                fail_msg("fingerprint %s not in: %s", want, o);
            free(o);
            assert_int_equal(
                run("openssl verify -x509_strict -CAfile %s %s >/dev/null 2>&1", cp, cp), 0);
        }
        /* the log names path, type and fingerprint, never the key */
        log = slurp(logp, NULL);
        keypem = slurp(kp, &keylen);
        assert_non_null(strstr(log, cp));
        assert_non_null(strstr(log, kp));
        assert_non_null(strstr(log, cases[i].type));
        assert_non_null(strstr(log, fpr_hex));
        assert_null(strstr(log, "PRIVATE"));
        assert_non_null(strstr(keypem, "-----BEGIN PRIVATE KEY-----\n"));
        /* a 40-byte piece of the key's base64 body must not be in the log */
        memcpy(line, keypem + 28, 40);
        line[40] = '\0';
        assert_null(strstr(log, line));
        free(log);
        /* reopen: same CA, files untouched */
        assert_int_equal(open_ca_in(dir, "rsa:4096" /* ignored */, NULL, &again, &err), 0);
        assert_false(akm_ca_generated(again));
        assert_memory_equal(akm_ca_fingerprint(again), fpr, AKM_FPR_BYTES);
        assert_string_equal(akm_ca_key_type(again), cases[i].type);
        assert_ptr_equal(akm_ca_digest(again), cases[i].md);
        assert_int_equal(stat(kp, &ks2), 0);
        assert_int_equal(stat(cp, &cs2), 0);
        assert_int_equal(ks1.st_ino, ks2.st_ino);
        assert_int_equal(cs1.st_ino, cs2.st_ino);
        assert_true(ks1.st_mtim.tv_sec == ks2.st_mtim.tv_sec &&
                    ks1.st_mtim.tv_nsec == ks2.st_mtim.tv_nsec);
        assert_true(cs1.st_mtim.tv_sec == cs2.st_mtim.tv_sec &&
                    cs1.st_mtim.tv_nsec == cs2.st_mtim.tv_nsec);
        pem = slurp(kp, NULL);
        assert_string_equal(pem, keypem);
        free(pem);
        free(keypem);
        /* a leaf signed by the reloaded CA verifies */
        csr = parse_ok(&(struct csr_spec){.key = F.p256, .san = "DNS:boot.example.com"});
        n = csr_names(csr, names);
        issue_ok(again, csr, names, n, 30, &is);
        check_leaf(&is, &(struct leaf_want){.ca = again,
                                            .key = F.p256,
                                            .sans = "DNS:boot.example.com",
                                            .cn = "boot.example.com",
                                            .days = 30});
        assert_true(verify_api(again, is.der, is.der_len, "boot.example.com", NULL));
        assert_int_equal(verify_cli(cp, is.der, is.der_len), 0);
        assert_int_not_equal(verify_cli(F.ca_pem_path, is.der, is.der_len), 0);
        /* and a CRL it signs */
        memcpy(rv.serial, is.serial, AKM_SERIAL_BYTES);
        rv.revoked_at = (int64_t)time(NULL) - 10;
        rv.reason = 1;
        assert_int_equal(akm_ca_crl(again, &rv, 1, (int64_t)time(NULL) - 5,
                                    (int64_t)time(NULL) + 86400, 7, &crl, &crl_len, &err),
                         0);
        path_in(line, sizeof(line), dir, "c.der");
        write_bytes(line, crl, crl_len);
        out = capture("openssl crl -inform DER -in %s -CAfile %s -noout", line, cp);
        if (strstr(out, "verify OK") == NULL)
            fail_msg("openssl crl: %s", out);
        free(out);
        free(crl);
        akm_issued_clear(&is);
        akm_csr_free(csr);
        akm_ca_free(again);
        akm_ca_free(ca);
    }
}

static void test_bootstrap_mismatch(void **state)
{
    char a[128], b[128], kp[192], cp[192];
    struct ut_err err = {{0}};
    struct akm_ca *ca = NULL;
    struct akm_ca_opts o = {0};

    (void)state;
    new_dir(a, sizeof(a));
    new_dir(b, sizeof(b));
    assert_int_equal(open_ca_in(a, "ec:P-256", NULL, &ca, &err), 0);
    akm_ca_free(ca);
    assert_int_equal(open_ca_in(b, "ec:P-256", NULL, &ca, &err), 0);
    akm_ca_free(ca);
    ca = NULL;
    path_in(kp, sizeof(kp), a, "ca.key");
    path_in(cp, sizeof(cp), b, "ca.pem");
    o.key_file = kp;
    o.cert_file = cp;
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_null(ca);
    assert_non_null(strstr(err.msg, "does not match"));
    assert_non_null(strstr(err.msg, kp));
    assert_non_null(strstr(err.msg, cp));
    assert_int_equal(ERR_peek_error(), 0);
    /* same path for both */
    o.cert_file = kp;
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    o.key_file = NULL;
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
}

static void test_bootstrap_only_one(void **state)
{
    char src[128], d[128], kp[192], cp[192], *before, *after;
    struct ut_err err = {{0}};
    struct akm_ca *ca = NULL;
    struct akm_ca_opts o = {0};
    size_t n;

    (void)state;
    new_dir(src, sizeof(src));
    assert_int_equal(open_ca_in(src, "ec:P-256", NULL, &ca, &err), 0);
    akm_ca_free(ca);
    ca = NULL;
    /* only the key */
    new_dir(d, sizeof(d));
    path_in(kp, sizeof(kp), src, "ca.key");
    before = slurp(kp, &n);
    path_in(kp, sizeof(kp), d, "ca.key");
    path_in(cp, sizeof(cp), d, "ca.pem");
    write_bytes(kp, before, n);
    o.key_file = kp;
    o.cert_file = cp;
    o.key_type = "ec:P-256";
    assert_int_equal(akm_ca_open(&o, &ca, &err), -ENOENT);
    assert_null(ca);
    assert_non_null(strstr(err.msg, kp));
    assert_non_null(strstr(err.msg, cp));
    assert_non_null(strstr(err.msg, "does not"));
    assert_false(exists(cp));
    after = slurp(kp, NULL);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* only the certificate */
    new_dir(d, sizeof(d));
    path_in(cp, sizeof(cp), src, "ca.pem");
    before = slurp(cp, &n);
    path_in(kp, sizeof(kp), d, "ca.key");
    path_in(cp, sizeof(cp), d, "ca.pem");
    write_bytes(cp, before, n);
    assert_int_equal(akm_ca_open(&o, &ca, &err), -ENOENT);
    assert_null(ca);
    assert_non_null(strstr(err.msg, "CA key file"));
    assert_non_null(strstr(err.msg, kp));
    assert_false(exists(kp));
    after = slurp(cp, NULL);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

static void test_bootstrap_generate_failures(void **state)
{
    char d[128], kp[192], cp[192];
    struct ut_err err = {{0}};
    struct akm_ca *ca = NULL;
    struct akm_ca_opts o = {0};

    (void)state;
    new_dir(d, sizeof(d));
    path_in(kp, sizeof(kp), d, "ca.key");
    path_in(cp, sizeof(cp), d, "ca.pem");
    o.key_file = kp;
    o.cert_file = cp;
    /* unknown type: nothing written */
    o.key_type = "rsa:1024";
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "unknown key type"));
    assert_false(exists(kp));
    assert_false(exists(cp));
    /* bad years, bad CN */
    o.key_type = "ec:P-256";
    o.ca_validity_years = 101;
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "ca_validity_years"));
    o.ca_validity_years = 0;
    o.common_name = "01234567890123456789012345678901234567890123456789012345678901234";
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_false(exists(kp));
    o.common_name = NULL;
    /* the certificate cannot be written: the new key is removed again */
    path_in(cp, sizeof(cp), d, "missing/ca.pem");
    assert_int_not_equal(akm_ca_open(&o, &ca, &err), 0);
    assert_null(ca);
    assert_non_null(strstr(err.msg, cp));
    assert_false(exists(kp));
    /* a dangling symlink is "missing" but never written through */
    path_in(cp, sizeof(cp), d, "ca.pem");
    path_in(kp, sizeof(kp), d, "link.key");
    assert_int_equal(symlink("/nonexistent/akm-target", kp), 0);
    o.key_file = kp;
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EEXIST);
    assert_false(exists(cp));
    /* a custom common name */
    path_in(kp, sizeof(kp), d, "ca.key");
    o.key_file = kp;
    o.common_name = "akamu CA node-7";
    o.ca_validity_years = 10;
    assert_int_equal(akm_ca_open(&o, &ca, &err), 0);
    check_ca_cert(ca, "akamu CA node-7", EVP_sha256());
    akm_ca_free(ca);
}

static void test_bootstrap_garbage(void **state)
{
    char d[128], kp[192], cp[192], *goodkey, *goodcert;
    struct ut_err err = {{0}};
    struct akm_ca *ca = NULL;
    struct akm_ca_opts o = {0};
    size_t kn, cn;

    (void)state;
    new_dir(d, sizeof(d));
    assert_int_equal(open_ca_in(d, "ec:P-256", NULL, &ca, &err), 0);
    akm_ca_free(ca);
    ca = NULL;
    path_in(kp, sizeof(kp), d, "ca.key");
    path_in(cp, sizeof(cp), d, "ca.pem");
    goodkey = slurp(kp, &kn);
    goodcert = slurp(cp, &cn);
    o.key_file = kp;
    o.cert_file = cp;
    /* garbage key */
    new_dir(d, sizeof(d));
    path_in(kp, sizeof(kp), d, "ca.key");
    path_in(cp, sizeof(cp), d, "ca.pem");
    write_bytes(kp, "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n", 62);
    write_bytes(cp, goodcert, cn);
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no PEM private key"));
    assert_non_null(strstr(err.msg, kp));
    /* empty key file */
    unlink(kp);
    write_bytes(kp, "", 0);
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no PEM private key"));
    /* garbage certificate */
    unlink(kp);
    unlink(cp);
    write_bytes(kp, goodkey, kn);
    write_bytes(cp, "hello, not a certificate\n", 25);
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "no PEM certificate"));
    assert_non_null(strstr(err.msg, cp));
    /* two certificates */
    unlink(cp);
    {
        char *two = malloc(2 * cn + 1);

        memcpy(two, goodcert, cn);
        memcpy(two + cn, goodcert, cn);
        write_bytes(cp, two, 2 * cn);
        free(two);
    }
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "more than one certificate"));
    /* a folder instead of a file */
    unlink(cp);
    assert_int_equal(mkdir(cp, 0700), 0);
    assert_int_equal(akm_ca_open(&o, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "not a regular file"));
    rmdir(cp);
    /* the good pair still loads (the control for all of the above) */
    write_bytes(cp, goodcert, cn);
    assert_int_equal(akm_ca_open(&o, &ca, &err), 0);
    akm_ca_free(ca);
    assert_int_equal(ERR_peek_error(), 0);
    free(goodkey);
    free(goodcert);
}

/* ---- externally made CA certificates (operator-provided) ---- */

struct ext_ca {
    EVP_PKEY *key;
    const char *bc, *ku; /* NULL: extension absent */
    bool ski;
    int64_t nb, na; /* offsets from now, seconds */
    bool encrypted;
};

static void add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *v)
{
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, v);

    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* Writes key + self-signed cert as described into a fresh dir; paths out. */
static void write_ext_ca(const struct ext_ca *s, char *kp, char *cp, size_t n)
{
    char d[128];
    X509 *x = X509_new();
    X509_NAME *name = X509_get_subject_name(x);
    X509V3_CTX ctx;
    int64_t now = (int64_t)time(NULL);
    FILE *f;

    new_dir(d, sizeof(d));
    path_in(kp, n, d, "ca.key");
    path_in(cp, n, d, "ca.pem");
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242), 1);
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(now + s->nb)));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(now + s->na)));
    assert_int_equal(X509_set_pubkey(x, s->key), 1);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"Operator CA", -1,
                               -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (s->bc)
        add_ext(x, &ctx, NID_basic_constraints, s->bc);
    if (s->ku)
        add_ext(x, &ctx, NID_key_usage, s->ku);
    if (s->ski)
        add_ext(x, &ctx, NID_subject_key_identifier, "hash");
    assert_true(X509_sign(x, s->key, is_ed(s->key) ? NULL : EVP_sha256()) > 0);
    f = fopen(cp, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(kp, "w");
    assert_non_null(f);
    if (s->encrypted)
        assert_int_equal(
            PEM_write_PKCS8PrivateKey(f, s->key, EVP_aes_256_cbc(), "pw", 2, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_PrivateKey(f, s->key, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    chmod(kp, 0600);
    X509_free(x);
}

static int open_ext(const struct ext_ca *s, struct akm_ca **ca, struct ut_err *err)
{
    char kp[192], cp[192];
    struct akm_ca_opts o = {0};

    write_ext_ca(s, kp, cp, sizeof(kp));
    o.key_file = kp;
    o.cert_file = cp;
    return akm_ca_open(&o, ca, err);
}

static void ext_refused(const struct ext_ca *s, const char *want)
{
    struct ut_err err = {{0}};
    struct akm_ca *ca = NULL;

    assert_int_equal(open_ext(s, &ca, &err), -EINVAL);
    assert_null(ca);
    if (strstr(err.msg, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
}

static void test_bootstrap_not_a_ca(void **state)
{
    const char *ku = "critical,keyCertSign,cRLSign";
    struct ut_err err = {{0}};
    struct akm_ca *ca = NULL;
    struct akm_csr *csr;
    struct akm_issued is = {0};
    struct akm_issue_req r = {0};
    struct akm_name nm = {AKM_NAME_DNS, "x.example.com"};

    (void)state;
    ext_refused(&(struct ext_ca){F.p256b, "critical,CA:FALSE", ku, true, -60, 86400, false},
                "basicConstraints CA:TRUE missing");
    ext_refused(&(struct ext_ca){F.p256b, NULL, ku, true, -60, 86400, false},
                "basicConstraints CA:TRUE missing");
    ext_refused(&(struct ext_ca){F.p256b, "critical,CA:TRUE", "critical,digitalSignature", true,
                                 -60, 86400, false},
                "keyCertSign missing");
    ext_refused(&(struct ext_ca){F.p256b, "critical,CA:TRUE", NULL, true, -60, 86400, false},
                "keyCertSign missing");
    ext_refused(&(struct ext_ca){F.p256b, "critical,CA:TRUE", ku, false, -60, 86400, false},
                "subjectKeyIdentifier");
    ext_refused(&(struct ext_ca){F.p256b, "critical,CA:TRUE", ku, true, -86400 * 10, -86400, false},
                "expired");
    ext_refused(&(struct ext_ca){F.p256b, "critical,CA:TRUE", ku, true, 86400, 86400 * 10, false},
                "not valid before");
    ext_refused(&(struct ext_ca){F.rsa1024, "critical,CA:TRUE", ku, true, -60, 86400, false},
                "shorter than 2048");
    ext_refused(&(struct ext_ca){F.k1, "critical,CA:TRUE", ku, true, -60, 86400, false},
                "not on P-256, P-384 or P-521");
    ext_refused(&(struct ext_ca){F.p256b, "critical,CA:TRUE", ku, true, -60, 86400, true},
                "encrypted");
    /* the control: a proper operator CA (P-384, 10 days left) loads ... */
    assert_int_equal(
        open_ext(&(struct ext_ca){F.p384, "critical,CA:TRUE", ku, true, -60, 86400 * 10, false},
                 &ca, &err),
        0);
    assert_false(akm_ca_generated(ca));
    assert_string_equal(akm_ca_key_type(ca), "ec:P-384");
    assert_ptr_equal(akm_ca_digest(ca), EVP_sha384());
    /* ... refuses a CSR carrying its own key ... */
    csr = parse_ok(&(struct csr_spec){.key = F.p384, .san = "DNS:x.example.com"});
    r.csr = csr;
    r.names = &nm;
    r.n_names = 1;
    r.validity_days = 90;
    assert_int_equal(akm_ca_issue(ca, &r, &is, &err), -EKEYREJECTED);
    assert_non_null(strstr(err.msg, "CA's own key"));
    assert_null(is.der);
    akm_csr_free(csr);
    /* ... and cuts leaf validity at its own notAfter */
    csr = parse_ok(&(struct csr_spec){.key = F.p256, .san = "DNS:x.example.com"});
    r.csr = csr;
    assert_int_equal(akm_ca_issue(ca, &r, &is, &err), 0);
    assert_int_equal(is.not_after, akm_ca_not_after(ca));
    assert_true(verify_api(ca, is.der, is.der_len, "x.example.com", NULL));
    akm_issued_clear(&is);
    akm_csr_free(csr);
    akm_ca_free(ca);
}

/* ------------------------------------------------------------------ */
/* CSRs                                                                */

static void test_csr_names(void **state)
{
    struct akm_csr *c;
    const struct akm_name *nm;

    (void)state;
    /* normalization, duplicates, CN already among SANs */
    c = parse_ok(&(struct csr_spec){
        .key = F.p256,
        .cn = "WWW.example.com",
        .san = "DNS:Example.COM,DNS:www.example.com,IP:192.0.2.1,IP:2001:DB8:0:0:0:0:0:1,"
               "DNS:example.com,IP:192.0.2.1,DNS:*.Example.com"});
    assert_int_equal(akm_csr_n_names(c), 5);
    nm = akm_csr_name(c, 0);
    assert_int_equal(nm->type, AKM_NAME_DNS);
    assert_string_equal(nm->value, "example.com");
    assert_string_equal(akm_csr_name(c, 1)->value, "www.example.com");
    nm = akm_csr_name(c, 2);
    assert_int_equal(nm->type, AKM_NAME_IP);
    assert_string_equal(nm->value, "192.0.2.1");
    nm = akm_csr_name(c, 3);
    assert_int_equal(nm->type, AKM_NAME_IP);
    assert_string_equal(nm->value, "2001:db8::1");
    assert_string_equal(akm_csr_name(c, 4)->value, "*.example.com");
    assert_null(akm_csr_name(c, 5));
    assert_int_equal(akm_csr_key_equals(c, F.p256), 1);
    assert_int_equal(akm_csr_key_equals(c, F.p256b), 0);
    assert_int_equal(akm_csr_key_equals(c, F.rsa2048), 0);
    assert_int_equal(akm_csr_key_equals(c, NULL), 0);
    assert_int_equal(EVP_PKEY_eq(akm_csr_pubkey(c), F.p256), 1);
    akm_csr_free(c);
    /* CN not among the SANs: added as a name after them */
    c = parse_ok(
        &(struct csr_spec){.key = F.ed, .cn = "Other.Example.org", .san = "DNS:a.example.org"});
    assert_int_equal(akm_csr_n_names(c), 2);
    assert_string_equal(akm_csr_name(c, 0)->value, "a.example.org");
    assert_string_equal(akm_csr_name(c, 1)->value, "other.example.org");
    assert_int_equal(akm_csr_name(c, 1)->type, AKM_NAME_DNS);
    akm_csr_free(c);
    /* CN only, and an IP literal CN */
    c = parse_ok(&(struct csr_spec){.key = F.p384, .cn = "solo.example.net"});
    assert_int_equal(akm_csr_n_names(c), 1);
    assert_string_equal(akm_csr_name(c, 0)->value, "solo.example.net");
    akm_csr_free(c);
    c = parse_ok(&(struct csr_spec){.key = F.p384, .cn = "10.0.0.1", .san = "IP:10.0.0.1"});
    assert_int_equal(akm_csr_n_names(c), 1);
    assert_int_equal(akm_csr_name(c, 0)->type, AKM_NAME_IP);
    akm_csr_free(c);
    c = parse_ok(&(struct csr_spec){.key = F.p384, .cn = "fe80::1"});
    assert_int_equal(akm_csr_name(c, 0)->type, AKM_NAME_IP);
    assert_string_equal(akm_csr_name(c, 0)->value, "fe80::1");
    akm_csr_free(c);
    /* exactly the cap is fine */
    {
        char san[8192] = "";
        size_t i;

        for (i = 0; i < AKM_MAX_NAMES; i++) {
            char one[40];

            snprintf(one, sizeof(one), "%sDNS:n%zu.example.com", i ? "," : "", i);
            strcat(san, one);
        }
        c = parse_ok(&(struct csr_spec){.key = F.p256, .san = san});
        assert_int_equal(akm_csr_n_names(c), AKM_MAX_NAMES);
        akm_csr_free(c);
    }
}

static void test_csr_keys_and_digests(void **state)
{
    EVP_PKEY *keys[4];
    struct akm_csr *c;
    size_t i;

    (void)state;
    keys[0] = F.rsa2048;
    keys[1] = F.p256;
    keys[2] = F.p384;
    keys[3] = F.ed;
    for (i = 0; i < 4; i++) {
        c = parse_ok(&(struct csr_spec){.key = keys[i], .san = "DNS:k.example.com"});
        assert_int_equal(akm_csr_key_equals(c, keys[i]), 1);
        akm_csr_free(c);
    }
    c = parse_ok(&(struct csr_spec){
        .key = F.rsa2048, .md = EVP_sha512(), .md_set = true, .san = "DNS:k.example.com"});
    akm_csr_free(c);
    c = parse_ok(&(struct csr_spec){
        .key = F.p384, .md = EVP_sha384(), .md_set = true, .san = "DNS:k.example.com"});
    akm_csr_free(c);
}

static void test_csr_refusals(void **state)
{
    char san[8192] = "";
    uint8_t *der, big[AKM_CSR_MAX_DER + 1];
    size_t len, i;

    (void)state;
    /* input framing */
    refused_der(NULL, 0, "empty");
    refused_der((const uint8_t *)"", 0, "empty");
    memset(big, 0x30, sizeof(big));
    refused_der(big, sizeof(big), "too large");
    refused_der((const uint8_t *)"\x30\x03\x02\x01\x00", 5, "not a DER PKCS#10");
    der = make_csr(&(struct csr_spec){.key = F.p256, .san = "DNS:a.example.com"}, &len);
    refused_der(der, len - 10, "not a DER PKCS#10"); /* truncated */
    refused_der(der, 1, "not a DER PKCS#10");
    der[len] = 0x00; /* trailing garbage */
    refused_der(der, len + 1, "trailing bytes");
    free(der);
    /* signature: flip a byte of an RSA signature, and of an ECDSA one */
    der = make_csr(&(struct csr_spec){.key = F.rsa2048, .san = "DNS:a.example.com"}, &len);
    der[len - 5] ^= 0x01;
    refused_der(der, len, "signature is invalid");
    free(der);
    der = make_csr(&(struct csr_spec){.key = F.ed, .san = "DNS:a.example.com"}, &len);
    der[len - 1] ^= 0x80;
    refused_der(der, len, "signature is invalid");
    free(der);
    /* a byte of the signed part (inside the SAN name: still valid DER) */
    der = make_csr(&(struct csr_spec){.key = F.p256, .san = "DNS:abcdefgh.example.com"}, &len);
    {
        uint8_t *p = memmem(der, len, "abcdefgh", 8);

        assert_non_null(p);
        p[0] = 'x';
    }
    refused_der(der, len, "signature is invalid");
    free(der);
    /* keys */
    refused(&(struct csr_spec){.key = F.rsa1024, .san = "DNS:a.example.com"}, "weak key");
    refused(&(struct csr_spec){.key = F.p521, .san = "DNS:a.example.com"}, "only P-256 and P-384");
    refused(&(struct csr_spec){.key = F.k1, .san = "DNS:a.example.com"}, "secp256k1");
    refused(&(struct csr_spec){.key = F.ed448, .san = "DNS:a.example.com"},
            "key type is not allowed");
    refused(
        &(struct csr_spec){
            .key = F.rsa2048, .md = EVP_sha1(), .md_set = true, .san = "DNS:a.example.com"},
        "signature algorithm");
    refused(
        &(struct csr_spec){
            .key = F.p256, .md = EVP_sha1(), .md_set = true, .san = "DNS:a.example.com"},
        "is not accepted");
    /* names */
    refused(&(struct csr_spec){.key = F.p256}, "no names");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:a.example.com,email:a@example.com"},
            "rfc822Name");
    refused(&(struct csr_spec){.key = F.p256, .san = "URI:https://example.com/"},
            "uniformResourceIdentifier");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:a.example.com,RID:1.2.3.4"},
            "registeredID");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:exa_mple.com"}, "invalid character");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:a..example.com"}, "empty label");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:example.com."}, "empty label");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:-a.example.com"}, "'-'");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:a.*.example.com"}, "invalid character");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:192.0.2.7"}, "is an IP address");
    refused(
        &(struct csr_spec){
            .key = F.p256,
            .san = "DNS:a234567890123456789012345678901234567890123456789012345678901234.com"},
        "longer than 63");
    refused(&(struct csr_spec){.key = F.p256, .cn = "a.example.com", .cn2 = "b.example.com"},
            "more than one commonName");
    refused(&(struct csr_spec){.key = F.p256, .cn = "My Web Server"},
            "neither a DNS name nor an IP");
    for (i = 0; i <= AKM_MAX_NAMES; i++) {
        char one[40];

        snprintf(one, sizeof(one), "%sDNS:n%zu.example.com", i ? "," : "", i);
        strcat(san, one);
    }
    refused(&(struct csr_spec){.key = F.p256, .san = san}, "too many names");
    /* extensions */
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:a.example.com", .bc = "critical,CA:TRUE"},
            "CA certificate");
    refused(&(struct csr_spec){.key = F.p256, .san = "DNS:a.example.com", .san_twice = true},
            "twice");
    /* CA:FALSE requested is fine */
    akm_csr_free(
        parse_ok(&(struct csr_spec){.key = F.p256, .san = "DNS:a.example.com", .bc = "CA:FALSE"}));
}

/* ------------------------------------------------------------------ */
/* issuance                                                            */

static void test_issue_key_types(void **state)
{
    EVP_PKEY *keys[4];
    size_t i;

    (void)state;
    keys[0] = F.rsa2048;
    keys[1] = F.p256;
    keys[2] = F.p384;
    keys[3] = F.ed;
    for (i = 0; i < 4; i++) {
        struct akm_csr *c = parse_ok(&(struct csr_spec){
            .key = keys[i],
            .cn = "www.example.com",
            .san = "DNS:www.example.com,DNS:example.com,IP:192.0.2.10,IP:2001:db8::10"});
        struct akm_name names[AKM_MAX_NAMES];
        size_t n = csr_names(c, names);
        struct akm_issued is = {0};

        issue_ok(F.ca, c, names, n, 90, &is);
        check_leaf(&is,
                   &(struct leaf_want){.ca = F.ca,
                                       .key = keys[i],
                                       .sans = "DNS:www.example.com,DNS:example.com,IP:192.0.2.10,"
                                               "IP:2001:DB8:0:0:0:0:0:10",
                                       .cn = "www.example.com",
                                       .days = 90,
                                       .rsa = i == 0});
        assert_true(verify_api(F.ca, is.der, is.der_len, "example.com", NULL));
        assert_true(verify_api(F.ca, is.der, is.der_len, NULL, "2001:db8::10"));
        assert_true(verify_api(F.ca, is.der, is.der_len, NULL, "192.0.2.10"));
        assert_false(verify_api(F.ca, is.der, is.der_len, "other.example.com", NULL));
        assert_false(verify_api(F.other, is.der, is.der_len, NULL, NULL));
        assert_int_equal(verify_cli(F.ca_pem_path, is.der, is.der_len), 0);
        assert_int_not_equal(verify_cli(F.other_pem_path, is.der, is.der_len), 0);
        akm_issued_clear(&is);
        assert_null(is.der);
        akm_csr_free(c);
    }
}

static void test_issue_serials(void **state)
{
    struct akm_csr *c = parse_ok(&(struct csr_spec){.key = F.p256, .san = "DNS:s.example.com"});
    uint8_t seen[16][AKM_SERIAL_BYTES];
    struct akm_name nm = {AKM_NAME_DNS, "s.example.com"};
    size_t i, j;

    (void)state;
    for (i = 0; i < 16; i++) {
        struct akm_issued is = {0};

        issue_ok(F.ca, c, &nm, 1, 7, &is);
        assert_true(is.serial[0] != 0 && (is.serial[0] & 0x80) == 0);
        memcpy(seen[i], is.serial, AKM_SERIAL_BYTES);
        for (j = 0; j < i; j++)
            assert_memory_not_equal(seen[i], seen[j], AKM_SERIAL_BYTES);
        akm_issued_clear(&is);
    }
    akm_csr_free(c);
}

static void test_issue_subject_rules(void **state)
{
    const char *longname = "a-very-long-label-that-goes-on-and-on-and-on.sub.example.com"; /* 61 */
    char lname[128];
    struct akm_csr *c = parse_ok(&(struct csr_spec){.key = F.p256, .san = "DNS:x.example.com"});
    struct akm_name names[3];
    struct akm_issued is = {0};
    char want[256];

    (void)state;
    /* first DNS name longer than 64: empty subject, critical SAN */
    snprintf(lname, sizeof(lname), "long1.%s", longname);
    assert_true(strlen(lname) > AKM_CN_MAX);
    names[0] = (struct akm_name){AKM_NAME_DNS, lname};
    names[1] = (struct akm_name){AKM_NAME_DNS, "short.example.com"};
    issue_ok(F.ca, c, names, 2, 90, &is);
    snprintf(want, sizeof(want), "DNS:%s,DNS:short.example.com", lname);
    check_leaf(
        &is, &(struct leaf_want){.ca = F.ca, .key = F.p256, .sans = want, .cn = NULL, .days = 90});
    assert_true(verify_api(F.ca, is.der, is.der_len, lname, NULL));
    assert_int_equal(verify_cli(F.ca_pem_path, is.der, is.der_len), 0);
    akm_issued_clear(&is);
    /* IP only: empty subject, critical SAN; upper-case DNS normalized; CN =
     * the first DNS name even when an IP comes first */
    names[0] = (struct akm_name){AKM_NAME_IP, "2001:DB8:0::7"};
    issue_ok(F.ca, c, names, 1, 1, &is);
    check_leaf(
        &is,
        &(struct leaf_want){
            .ca = F.ca, .key = F.p256, .sans = "IP:2001:DB8:0:0:0:0:0:7", .cn = NULL, .days = 1});
    assert_true(verify_api(F.ca, is.der, is.der_len, NULL, "2001:db8::7"));
    assert_int_equal(verify_cli(F.ca_pem_path, is.der, is.der_len), 0);
    akm_issued_clear(&is);
    names[1] = (struct akm_name){AKM_NAME_DNS, "MiXed.Example.COM"};
    names[2] = (struct akm_name){AKM_NAME_IP, "198.51.100.4"};
    issue_ok(F.ca, c, names, 3, 3650, &is);
    check_leaf(&is, &(struct leaf_want){.ca = F.ca,
                                        .key = F.p256,
                                        .sans = "IP:2001:DB8:0:0:0:0:0:7,DNS:mixed.example.com,"
                                                "IP:198.51.100.4",
                                        .cn = "mixed.example.com",
                                        .days = 3650});
    akm_issued_clear(&is);
    akm_csr_free(c);
}

static void test_issue_options(void **state)
{
    struct akm_csr *c = parse_ok(&(struct csr_spec){.key = F.rsa2048, .san = "DNS:o.example.com"});
    struct akm_name nm = {AKM_NAME_DNS, "o.example.com"};
    struct akm_issue_req r = {0};
    struct akm_issued is = {0};
    struct ut_err err = {{0}};
    CRL_DIST_POINTS *dps;
    DIST_POINT *dp;
    GENERAL_NAME *g;
    X509 *x;
    int64_t now = (int64_t)time(NULL) - 3600;

    (void)state;
    r.csr = c;
    r.names = &nm;
    r.n_names = 1;
    r.validity_days = 10;
    r.client_auth = true;
    r.crl_url = "http://acme.example.com/acme/crl";
    r.now = now;
    assert_int_equal(akm_ca_issue(F.ca, &r, &is, &err), 0);
    assert_int_equal(is.not_before, now - 60);
    assert_int_equal(is.not_after, now - 60 + 10 * 86400 - 1);
    x = d2i_cert(is.der, is.der_len);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    assert_true(X509_get_key_usage(x) & KU_KEY_ENCIPHERMENT);
    dps = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
    assert_non_null(dps);
    assert_int_equal(sk_DIST_POINT_num(dps), 1);
    dp = sk_DIST_POINT_value(dps, 0);
    assert_non_null(dp->distpoint);
    assert_int_equal(dp->distpoint->type, 0);
    g = sk_GENERAL_NAME_value(dp->distpoint->name.fullname, 0);
    assert_int_equal(g->type, GEN_URI);
    assert_string_equal((const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                        r.crl_url);
    CRL_DIST_POINTS_free(dps);
    X509_free(x);
    assert_true(verify_api(F.ca, is.der, is.der_len, "o.example.com", NULL));
    assert_int_equal(verify_cli(F.ca_pem_path, is.der, is.der_len), 0);
    akm_issued_clear(&is);
    akm_csr_free(c);
}

static void issue_refused(struct akm_issue_req *r, const char *want)
{
    struct akm_issued is = {0};
    struct ut_err err = {{0}};

    assert_int_equal(akm_ca_issue(F.ca, r, &is, &err), -EINVAL);
    assert_null(is.der);
    if (strstr(err.msg, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
}

static void test_issue_refusals(void **state)
{
    struct akm_csr *c = parse_ok(&(struct csr_spec){.key = F.p256, .san = "DNS:r.example.com"});
    struct akm_name names[AKM_MAX_NAMES + 1];
    struct akm_issue_req r = {0};
    size_t i;

    (void)state;
    for (i = 0; i <= AKM_MAX_NAMES; i++)
        names[i] = (struct akm_name){AKM_NAME_DNS, "r.example.com"};
    r.csr = c;
    r.names = names;
    r.n_names = 1;
    r.validity_days = 0;
    issue_refused(&r, "validity_days");
    r.validity_days = AKM_VALIDITY_MAX + 1;
    issue_refused(&r, "validity_days");
    r.validity_days = 90;
    r.n_names = 0;
    issue_refused(&r, "no names");
    r.n_names = AKM_MAX_NAMES + 1;
    issue_refused(&r, "too many names");
    r.n_names = 2;
    issue_refused(&r, "listed twice");
    names[1] = (struct akm_name){AKM_NAME_DNS, "R.EXAMPLE.COM"};
    issue_refused(&r, "listed twice");
    names[1] = (struct akm_name){AKM_NAME_DNS, "bad_name.example.com"};
    issue_refused(&r, "invalid character");
    names[1] = (struct akm_name){AKM_NAME_IP, "1.2.3"};
    issue_refused(&r, "not an IPv4 or IPv6");
    names[1] = (struct akm_name){AKM_NAME_IP, "fe80::1%eth0"};
    issue_refused(&r, "not an IPv4 or IPv6");
    names[1] = (struct akm_name){AKM_NAME_DNS, NULL};
    issue_refused(&r, "missing name");
    names[1] = (struct akm_name){(enum akm_name_type)7, "x.example.com"};
    issue_refused(&r, "unknown name type");
    r.n_names = 1;
    r.crl_url = "ftp://example.com/crl";
    issue_refused(&r, "http");
    r.crl_url = "http://example.com/a crl";
    issue_refused(&r, "space");
    r.crl_url = NULL;
    r.csr = NULL;
    issue_refused(&r, "no CSR");
    akm_csr_free(c);
}

/* ------------------------------------------------------------------ */
/* inspection, chain                                                   */

static void test_cert_info(void **state)
{
    struct akm_csr *c = parse_ok(
        &(struct csr_spec){.key = F.ed, .san = "DNS:i.example.com,IP:203.0.113.9,IP:2001:db8::9"});
    struct akm_name names[3];
    size_t n = csr_names(c, names);
    struct akm_issued is = {0}, is2 = {0};
    struct akm_cert_info info;
    struct ut_err err = {{0}};
    uint8_t *bad;

    (void)state;
    issue_ok(F.ca, c, names, n, 45, &is);
    assert_int_equal(akm_cert_info(is.der, is.der_len, &info, &err), 0);
    assert_int_equal(info.serial_len, AKM_SERIAL_BYTES);
    assert_memory_equal(info.serial, is.serial, AKM_SERIAL_BYTES);
    assert_string_equal(info.serial_hex, is.serial_hex);
    assert_int_equal(info.not_before, is.not_before);
    assert_int_equal(info.not_after, is.not_after);
    assert_int_equal(info.n_names, 3);
    assert_int_equal(info.names[0].type, AKM_NAME_DNS);
    assert_string_equal(info.names[0].value, "i.example.com");
    assert_int_equal(info.names[1].type, AKM_NAME_IP);
    assert_string_equal(info.names[1].value, "203.0.113.9");
    assert_string_equal(info.names[2].value, "2001:db8::9");
    assert_int_equal(EVP_PKEY_eq(info.pubkey, F.ed), 1);
    akm_cert_info_clear(&info);
    assert_null(info.pubkey);
    /* issued_by: ours yes; the other CA (same subject name!) no */
    assert_int_equal(akm_ca_issued_by(F.ca, is.der, is.der_len, &err), 0);
    assert_int_equal(akm_ca_issued_by(F.other, is.der, is.der_len, &err), -EPERM);
    issue_ok(F.other, c, names, n, 45, &is2);
    assert_int_equal(akm_ca_issued_by(F.other, is2.der, is2.der_len, &err), 0);
    assert_int_equal(akm_ca_issued_by(F.ca, is2.der, is2.der_len, &err), -EPERM);
    /* the CA certificate itself is not "issued by" a leaf check failure */
    /* tampered signature */
    bad = malloc(is.der_len + 1);
    memcpy(bad, is.der, is.der_len);
    bad[is.der_len - 3] ^= 0x01;
    assert_int_equal(akm_ca_issued_by(F.ca, bad, is.der_len, &err), -EPERM);
    assert_non_null(strstr(err.msg, "signature"));
    /* malformed */
    memcpy(bad, is.der, is.der_len);
    bad[is.der_len] = 0;
    assert_int_equal(akm_ca_issued_by(F.ca, bad, is.der_len + 1, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "trailing"));
    assert_int_equal(akm_cert_info(bad, is.der_len + 1, &info, &err), -EINVAL);
    assert_null(info.pubkey);
    assert_int_equal(akm_cert_info(bad, is.der_len / 2, &info, &err), -EINVAL);
    assert_int_equal(akm_cert_info(NULL, 0, &info, &err), -EINVAL);
    assert_int_equal(akm_ca_issued_by(F.ca, (const uint8_t *)"x", 1, &err), -EINVAL);
    assert_int_equal(ERR_peek_error(), 0);
    free(bad);
    akm_issued_clear(&is);
    akm_issued_clear(&is2);
    akm_csr_free(c);
}

static void test_chain_pem(void **state)
{
    struct akm_csr *c = parse_ok(&(struct csr_spec){.key = F.p256, .san = "DNS:c.example.com"});
    struct akm_name nm = {AKM_NAME_DNS, "c.example.com"};
    struct akm_issued is = {0};
    struct ut_err err = {{0}};
    char *pem = NULL;
    size_t pem_len = 0, ca_len;
    const uint8_t *ca_der = akm_ca_cert_der(F.ca, &ca_len);
    X509 *x1, *x2, *x3;
    BIO *b;
    unsigned char *d = NULL;
    int n;

    (void)state;
    issue_ok(F.ca, c, &nm, 1, 90, &is);
    assert_int_equal(akm_ca_chain_pem(F.ca, is.der, is.der_len, &pem, &pem_len, &err), 0);
    assert_int_equal(strlen(pem), pem_len);
    assert_non_null(strstr(pem, akm_ca_cert_pem(F.ca)));
    b = BIO_new_mem_buf(pem, (int)pem_len);
    x1 = PEM_read_bio_X509(b, NULL, NULL, NULL);
    x2 = PEM_read_bio_X509(b, NULL, NULL, NULL);
    x3 = PEM_read_bio_X509(b, NULL, NULL, NULL);
    ERR_clear_error();
    assert_non_null(x1);
    assert_non_null(x2);
    assert_null(x3);
    n = i2d_X509(x1, &d);
    assert_int_equal((size_t)n, is.der_len);
    assert_memory_equal(d, is.der, is.der_len);
    OPENSSL_free(d);
    d = NULL;
    /* byte for byte what PEM_write_bio_X509 writes, then the CA's PEM */
    {
        BIO *w = BIO_new(BIO_s_mem());
        char *wp;
        long wn;

        assert_non_null(w);
        assert_int_equal(PEM_write_bio_X509(w, x1), 1);
        wn = BIO_get_mem_data(w, &wp);
        assert_true(wn > 0 && (size_t)wn < pem_len);
        assert_memory_equal(pem, wp, (size_t)wn);
        assert_string_equal(pem + wn, akm_ca_cert_pem(F.ca));
        BIO_free(w);
    }
    n = i2d_X509(x2, &d);
    assert_int_equal((size_t)n, ca_len);
    assert_memory_equal(d, ca_der, ca_len);
    OPENSSL_free(d);
    X509_free(x1);
    X509_free(x2);
    BIO_free(b);
    /* `openssl verify -untrusted chain` with the leaf from the chain file */
    {
        char dir[128], p[192];

        new_dir(dir, sizeof(dir));
        path_in(p, sizeof(p), dir, "chain.pem");
        write_bytes(p, pem, pem_len);
        assert_int_equal(
            run("openssl verify -x509_strict -CAfile %s %s >/dev/null 2>&1", F.ca_pem_path, p), 0);
    }
    free(pem);
    pem = (char *)1;
    assert_int_equal(akm_ca_chain_pem(F.ca, is.der, 10, &pem, NULL, &err), -EINVAL);
    assert_null(pem);
    /* not one DER SEQUENCE filling the stored bytes: refused */
    {
        uint8_t bad[4] = {0x04, 0x02, 0x00, 0x00}, more[4] = {0x30, 0x01, 0x00, 0x00};

        assert_int_equal(akm_ca_chain_pem(F.ca, bad, sizeof(bad), &pem, NULL, &err), -EINVAL);
        assert_int_equal(akm_ca_chain_pem(F.ca, more, sizeof(more), &pem, NULL, &err), -EINVAL);
        assert_non_null(strstr(err.msg, "DER SEQUENCE"));
        assert_null(pem);
    }
    akm_issued_clear(&is);
    akm_csr_free(c);
}

/* ------------------------------------------------------------------ */
/* CRLs                                                                */

static void hex_upper(const uint8_t *s, size_t n, char *out)
{
    size_t i;

    for (i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02X", s[i]);
}

static void test_crl(void **state)
{
    struct akm_csr *c = parse_ok(&(struct csr_spec){.key = F.p256, .san = "DNS:v.example.com"});
    struct akm_name nm = {AKM_NAME_DNS, "v.example.com"};
    struct akm_issued is[4];
    struct akm_revoked rv[3];
    struct ut_err err = {{0}};
    int64_t now = (int64_t)time(NULL);
    uint8_t *crl = NULL;
    size_t crl_len = 0, i;
    char dir[128], dp[192], pp[192], lp[4][192], hex[3][40], *out;
    const unsigned char *p;
    X509_CRL *x;
    X509_REVOKED *found = NULL;
    ASN1_INTEGER *sn;
    FILE *f;

    (void)state;
    memset(is, 0, sizeof(is));
    memset(rv, 0, sizeof(rv));
    new_dir(dir, sizeof(dir));
    for (i = 0; i < 4; i++) {
        char name[16];

        issue_ok(F.ca, c, &nm, 1, 90, &is[i]);
        snprintf(name, sizeof(name), "leaf%zu.pem", i);
        path_in(lp[i], sizeof(lp[i]), dir, name);
        write_pem_cert(lp[i], is[i].der, is[i].der_len);
    }
    /* revoke leaves 0..2: keyCompromise, superseded, unspecified */
    for (i = 0; i < 3; i++) {
        memcpy(rv[i].serial, is[i].serial, AKM_SERIAL_BYTES);
        rv[i].revoked_at = now - 100 + (int64_t)i;
        hex_upper(is[i].serial, AKM_SERIAL_BYTES, hex[i]);
    }
    rv[0].reason = 1;
    rv[1].reason = 4;
    rv[2].reason = 0;
    assert_int_equal(akm_ca_crl(F.ca, rv, 3, now - 10, now + 86400, 42, &crl, &crl_len, &err), 0);
    path_in(dp, sizeof(dp), dir, "crl.der");
    write_bytes(dp, crl, crl_len);
    /* openssl crl verifies the signature (exit 0, "verify OK") */
    assert_int_equal(
        run("openssl crl -inform DER -in %s -CAfile %s -noout >/dev/null 2>&1", dp, F.ca_pem_path),
        0);
    out = capture("openssl crl -inform DER -in %s -CAfile %s -noout", dp, F.ca_pem_path);
    assert_non_null(strstr(out, "verify OK"));
    free(out);
    assert_int_not_equal(run("openssl crl -inform DER -in %s -CAfile %s -noout >/dev/null 2>&1", dp,
                             F.other_pem_path),
                         0);
    out = capture("openssl crl -inform DER -in %s -noout -text", dp);
    for (i = 0; i < 3; i++)
        if (strstr(out, hex[i]) == NULL)
            fail_msg("serial %s not in CRL text:\n%s", hex[i], out);
    assert_non_null(strstr(out, "Version 2"));
    assert_non_null(strstr(out, "Key Compromise"));
    assert_non_null(strstr(out, "Superseded"));
    assert_null(strstr(out, "Unspecified"));
    assert_non_null(strstr(out, "X509v3 CRL Number"));
    assert_non_null(strstr(out, "42"));
    assert_non_null(strstr(out, "X509v3 Authority Key Identifier"));
    free(out);
    /* with the API: signature, AKI, lookup */
    p = crl;
    x = d2i_X509_CRL(NULL, &p, (long)crl_len);
    assert_non_null(x);
    assert_int_equal(X509_CRL_get_version(x), X509_CRL_VERSION_2);
    assert_int_equal(X509_CRL_verify(x, akm_ca_pubkey(F.ca)), 1);
    sn = ASN1_INTEGER_new();
    {
        BIGNUM *bn = BN_bin2bn(is[1].serial, AKM_SERIAL_BYTES, NULL);

        BN_to_ASN1_INTEGER(bn, sn);
        BN_free(bn);
    }
    assert_int_equal(X509_CRL_get0_by_serial(x, &found, sn), 1);
    assert_non_null(found);
    ASN1_INTEGER_free(sn);
    X509_CRL_free(x);
    /* openssl verify -crl_check: revoked leaves fail, the fourth passes */
    path_in(pp, sizeof(pp), dir, "crl.pem");
    p = crl;
    x = d2i_X509_CRL(NULL, &p, (long)crl_len);
    f = fopen(pp, "w");
    assert_non_null(f);
    PEM_write_X509_CRL(f, x);
    fclose(f);
    X509_CRL_free(x);
    for (i = 0; i < 4; i++) {
        out = capture("openssl verify -crl_check -CRLfile %s -CAfile %s %s", pp, F.ca_pem_path,
                      lp[i]);
        if (i < 3 && strstr(out, "certificate revoked") == NULL)
            fail_msg("leaf %zu should be revoked: %s", i, out);
        if (i == 3 && strstr(out, ": OK") == NULL)
            fail_msg("leaf 3 should verify: %s", out);
        free(out);
    }
    free(crl);
    crl = NULL;
    /* empty CRL */
    assert_int_equal(akm_ca_crl(F.ca, NULL, 0, now, now + 3600, 1, &crl, &crl_len, &err), 0);
    path_in(dp, sizeof(dp), dir, "empty.der");
    write_bytes(dp, crl, crl_len);
    out = capture("openssl crl -inform DER -in %s -CAfile %s -noout -text", dp, F.ca_pem_path);
    assert_non_null(strstr(out, "verify OK"));
    assert_non_null(strstr(out, "No Revoked Certificates"));
    free(out);
    free(crl);
    for (i = 0; i < 4; i++)
        akm_issued_clear(&is[i]);
    akm_csr_free(c);
}

static void crl_refused(const struct akm_revoked *rv, size_t n, int64_t t1, int64_t t2,
                        const char *want)
{
    struct ut_err err = {{0}};
    uint8_t *crl = (uint8_t *)1;
    size_t len = 1;

    assert_int_equal(akm_ca_crl(F.ca, rv, n, t1, t2, 1, &crl, &len, &err), -EINVAL);
    assert_null(crl);
    assert_int_equal(len, 0);
    if (strstr(err.msg, want) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", want, err.msg);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_crl_refusals(void **state)
{
    struct akm_revoked rv[2];
    int64_t now = (int64_t)time(NULL);
    static const int bad_reasons[] = {-1, 7, 11, 255};
    size_t i;

    (void)state;
    memset(rv, 0, sizeof(rv));
    rv[0].serial[0] = 0x11;
    rv[1].serial[0] = 0x22;
    rv[0].revoked_at = rv[1].revoked_at = now;
    for (i = 0; i < sizeof(bad_reasons) / sizeof(bad_reasons[0]); i++) {
        rv[0].reason = bad_reasons[i];
        crl_refused(rv, 2, now, now + 60, "not a CRLReason");
    }
    rv[0].reason = 10; /* aACompromise: the last valid one */
    crl_refused(rv, 2, now, now, "nextUpdate");
    crl_refused(rv, 2, now, now - 1, "nextUpdate");
    crl_refused(rv, 2, -5, now, "nextUpdate");
    crl_refused(NULL, 2, now, now + 60, "no entries");
    memcpy(rv[1].serial, rv[0].serial, AKM_SERIAL_BYTES);
    crl_refused(rv, 2, now, now + 60, "listed twice");
    memset(rv[1].serial, 0, AKM_SERIAL_BYTES);
    crl_refused(rv, 2, now, now + 60, "serial is zero");
    rv[1].serial[0] = 0x22;
    rv[1].revoked_at = -1;
    crl_refused(rv, 2, now, now + 60, "revocation time");
    rv[1].revoked_at = now;
    /* the control */
    {
        uint8_t *crl = NULL;
        size_t len = 0;

        assert_int_equal(akm_ca_crl(F.ca, rv, 2, now, now + 60, UINT64_MAX, &crl, &len, NULL), 0);
        assert_true(len > 0);
        free(crl);
    }
}

int main(void)
{
    const struct CMUnitTest t[] = {
        cmocka_unit_test(test_keygen),
        cmocka_unit_test(test_bootstrap_types),
        cmocka_unit_test(test_bootstrap_mismatch),
        cmocka_unit_test(test_bootstrap_only_one),
        cmocka_unit_test(test_bootstrap_generate_failures),
        cmocka_unit_test(test_bootstrap_garbage),
        cmocka_unit_test(test_bootstrap_not_a_ca),
        cmocka_unit_test(test_csr_names),
        cmocka_unit_test(test_csr_keys_and_digests),
        cmocka_unit_test(test_csr_refusals),
        cmocka_unit_test(test_issue_key_types),
        cmocka_unit_test(test_issue_serials),
        cmocka_unit_test(test_issue_subject_rules),
        cmocka_unit_test(test_issue_options),
        cmocka_unit_test(test_issue_refusals),
        cmocka_unit_test(test_cert_info),
        cmocka_unit_test(test_chain_pem),
        cmocka_unit_test(test_crl),
        cmocka_unit_test(test_crl_refusals),
    };

    return cmocka_run_group_tests(t, setup, teardown);
}
