/*
 * Session cookies: AES-256-GCM sealed JSON (format in ahdapa.h). Pure
 * functions of their inputs apart from the random nonce and ids, so the
 * parser can be fuzzed and unit-tested without a store or a server.
 */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ahdapa.h"
#include "util/b64.h"
#include "util/mem.h"

#define VERSION   1
#define NONCE_LEN 12
#define TAG_LEN   16
#define HDR_LEN   (1 + AHD_KID_BYTES + NONCE_LEN)
#define RAW_MAX   (AHD_COOKIE_MAX * 3 / 4 + 3)

static const char cookie_info[] = "ahdapa session cookie v1";
static const char kid_info[] = "ahdapa session key id v1";

void ahd_key_init(struct ahd_key *k, const uint8_t raw[AHD_KEY_BYTES])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();

    memset(k, 0, sizeof(*k));
    HMAC(EVP_sha256(), raw, AHD_KEY_BYTES, (const uint8_t *)cookie_info, sizeof(cookie_info) - 1,
         k->aes, &mdlen);
    if (c == NULL || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(c, kid_info, sizeof(kid_info) - 1) != 1 ||
        EVP_DigestUpdate(c, raw, AHD_KEY_BYTES) != 1 || EVP_DigestFinal_ex(c, md, NULL) != 1)
        abort(); /* SHA-256 cannot fail short of memory exhaustion */
    EVP_MD_CTX_free(c);
    memcpy(k->kid, md, AHD_KID_BYTES);
    for (int i = 0; i < AHD_KID_BYTES; i++)
        snprintf(k->kid_hex + 2 * i, 3, "%02x", k->kid[i]);
    k->set = 1;
}

void ahd_key_clear(struct ahd_key *k)
{
    ut_memzero(k, sizeof(*k));
}

static void rand_b64(char *out, size_t nbytes)
{
    uint8_t buf[32];

    if (RAND_bytes(buf, (int)nbytes) != 1)
        abort(); /* no randomness: nothing safe to do */
    ut_b64_encode(buf, nbytes, out, 1);
}

int ahd_session_new(struct ahd_session *s, const char *sub, const char *const *groups,
                    size_t n_groups, int64_t now, struct ut_err *err)
{
    memset(s, 0, sizeof(*s));
    if (strlen(sub) > AHD_USERNAME_MAX || n_groups > AHD_GROUPS_MAX) {
        ut_err_set(err, "session: user name or group list too long");
        return -E2BIG;
    }
    for (size_t i = 0; i < n_groups; i++) {
        if (strlen(groups[i]) > AHD_GROUP_MAX) {
            ut_err_set(err, "session: group name too long");
            return -E2BIG;
        }
        snprintf(s->groups[i], sizeof(s->groups[i]), "%s", groups[i]);
    }
    s->n_groups = n_groups;
    snprintf(s->sub, sizeof(s->sub), "%s", sub);
    rand_b64(s->sid, 16);  /* 22 chars */
    rand_b64(s->csrf, 32); /* 43 chars */
    s->iat = now;
    s->exp = now + AHD_SESSION_SECS;
    return 0;
}

int ahd_session_has_group(const struct ahd_session *s, const char *group)
{
    for (size_t i = 0; i < s->n_groups; i++)
        if (strcmp(s->groups[i], group) == 0)
            return 1;
    return 0;
}

static void make_aad(uint8_t *aad, const uint8_t *kid)
{
    memcpy(aad, AHD_COOKIE_NAME, sizeof(AHD_COOKIE_NAME) - 1);
    aad[sizeof(AHD_COOKIE_NAME) - 1] = VERSION;
    memcpy(aad + sizeof(AHD_COOKIE_NAME), kid, AHD_KID_BYTES);
}
#define AAD_LEN (sizeof(AHD_COOKIE_NAME) + AHD_KID_BYTES)

/* AES-256-GCM in one direction; enc 1 seals (tag written), 0 opens (tag
 * checked). Returns 0 or -EBADMSG. */
static int gcm(int enc, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad,
               const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, rc = -EBADMSG;

    if (c == NULL || EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) != 1 ||
        EVP_CipherUpdate(c, NULL, &len, aad, (int)AAD_LEN) != 1 ||
        (n > 0 && EVP_CipherUpdate(c, out, &len, in, (int)n) != 1))
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(c, out + (n > 0 ? len : 0), &len) != 1)
        goto out;
    if (enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(c);
    return rc;
}

static json_t *session_json(const struct ahd_session *s)
{
    json_t *g = json_array();

    for (size_t i = 0; i < s->n_groups; i++)
        json_array_append_new(g, json_string(s->groups[i]));
    return json_pack("{s:s, s:s, s:o, s:s, s:I, s:I}", "sid", s->sid, "sub", s->sub, "groups", g,
                     "csrf", s->csrf, "iat", (json_int_t)s->iat, "exp", (json_int_t)s->exp);
}

int ahd_cookie_seal(const struct ahd_key *k, const struct ahd_session *s, char *out, size_t outlen,
                    struct ut_err *err)
{
    uint8_t raw[RAW_MAX], aad[AAD_LEN];
    json_t *j = session_json(s);
    char *pt = j ? json_dumps(j, JSON_COMPACT) : NULL;
    size_t n = pt ? strlen(pt) : 0, total;
    int rc = -E2BIG;

    json_decref(j);
    if (pt == NULL) {
        ut_err_set(err, "session: cannot encode the session");
        rc = -ENOMEM;
        goto out;
    }
    total = HDR_LEN + n + TAG_LEN;
    if (total > sizeof(raw) || ut_b64_enclen(total, 1) + 1 > outlen ||
        ut_b64_enclen(total, 1) > AHD_COOKIE_MAX) {
        ut_err_set(err, "session: cookie would exceed %d bytes", AHD_COOKIE_MAX);
        goto out;
    }
    raw[0] = VERSION;
    memcpy(raw + 1, k->kid, AHD_KID_BYTES);
    if (RAND_bytes(raw + 1 + AHD_KID_BYTES, NONCE_LEN) != 1) {
        ut_err_set(err, "session: no randomness for the nonce");
        rc = -EIO;
        goto out;
    }
    make_aad(aad, k->kid);
    if ((rc = gcm(1, k->aes, raw + 1 + AHD_KID_BYTES, aad, (const uint8_t *)pt, n, raw + HDR_LEN,
                  raw + HDR_LEN + n)) < 0) {
        ut_err_set(err, "session: sealing failed");
        goto out;
    }
    ut_b64_encode(raw, total, out, 1);
out:
    if (pt) {
        ut_memzero(pt, n);
        free(pt);
    }
    ut_memzero(raw, sizeof(raw));
    return rc;
}

/* Copies a JSON string of 1..max bytes without NUL inside. */
static int copy_str(json_t *v, char *dst, size_t max)
{
    size_t n;

    if (!json_is_string(v) || (n = json_string_length(v)) == 0 || n > max ||
        strlen(json_string_value(v)) != n)
        return -1;
    memcpy(dst, json_string_value(v), n + 1);
    return 0;
}

static int get_str(json_t *o, const char *name, char *dst, size_t max)
{
    return copy_str(json_object_get(o, name), dst, max);
}

static int parse_payload(const uint8_t *pt, size_t n, struct ahd_session *s, struct ut_err *err)
{
    json_t *j = json_loadb((const char *)pt, n, JSON_REJECT_DUPLICATES, NULL), *g, *iat, *exp;
    size_t i;
    int rc = -EBADMSG;

    memset(s, 0, sizeof(*s));
    if (!json_is_object(j) || get_str(j, "sid", s->sid, AHD_SID_MAX) < 0 ||
        get_str(j, "sub", s->sub, AHD_USERNAME_MAX) < 0 ||
        get_str(j, "csrf", s->csrf, AHD_CSRF_MAX) < 0) {
        ut_err_set(err, "session cookie: payload lacks sid, sub or csrf");
        goto out;
    }
    g = json_object_get(j, "groups");
    iat = json_object_get(j, "iat");
    exp = json_object_get(j, "exp");
    if (!json_is_array(g) || json_array_size(g) > AHD_GROUPS_MAX || !json_is_integer(iat) ||
        !json_is_integer(exp)) {
        ut_err_set(err, "session cookie: payload has bad groups, iat or exp");
        goto out;
    }
    for (i = 0; i < json_array_size(g); i++) {
        if (copy_str(json_array_get(g, i), s->groups[i], AHD_GROUP_MAX) < 0) {
            ut_err_set(err, "session cookie: group %zu is not a short string", i);
            goto out;
        }
    }
    s->n_groups = i;
    s->iat = json_integer_value(iat);
    s->exp = json_integer_value(exp);
    rc = 0;
out:
    json_decref(j);
    return rc;
}

int ahd_cookie_open(const struct ahd_key *const *keys, size_t nk, const char *cookie, int64_t now,
                    struct ahd_session *out, struct ut_err *err)
{
    uint8_t raw[RAW_MAX], pt[RAW_MAX], aad[AAD_LEN];
    const struct ahd_key *k = NULL;
    struct ahd_session s;
    size_t len = strlen(cookie), n = 0;
    int rc = -EINVAL;

    if (len == 0 || len > AHD_COOKIE_MAX || ut_b64_decode(cookie, len, raw, &n, 1) < 0 ||
        n < HDR_LEN + TAG_LEN || raw[0] != VERSION) {
        ut_err_set(err, "session cookie: malformed (%zu chars)", len);
        return -EINVAL;
    }
    for (size_t i = 0; i < nk && k == NULL; i++)
        if (keys[i] && keys[i]->set && memcmp(keys[i]->kid, raw + 1, AHD_KID_BYTES) == 0)
            k = keys[i];
    if (k == NULL) {
        ut_err_set(err, "session cookie: sealed under a key this node does not hold");
        rc = -ENOKEY;
        goto out;
    }
    n -= HDR_LEN + TAG_LEN;
    make_aad(aad, k->kid);
    if (gcm(0, k->aes, raw + 1 + AHD_KID_BYTES, aad, raw + HDR_LEN, n, pt, raw + HDR_LEN + n) < 0) {
        ut_err_set(err, "session cookie: authentication failed (tampered or wrong key)");
        rc = -EBADMSG;
        goto out;
    }
    if ((rc = parse_payload(pt, n, &s, err)) < 0)
        goto out;
    if (s.exp <= now) {
        ut_err_set(err, "session cookie: expired");
        rc = -ETIMEDOUT;
        goto out;
    }
    *out = s;
    rc = 0;
out:
    ut_memzero(pt, sizeof(pt));
    return rc;
}
