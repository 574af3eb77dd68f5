/*
 * kem_test_util.h - helpers shared by the lib/crypto KEM tests: hex
 * decoding, loading vector files given on the command line, and reference
 * hashes from OpenSSL's EVP (independent of the builtin Keccak).
 * Include after <cmocka.h>.
 */
#ifndef KEM_TEST_UTIL_H
#define KEM_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include "util/hex.h"

/* Directory given as argv[1]: the shared/vectors folder. */
static const char *vectors_dir __attribute__((unused));

/* Decodes string field `name` of JSON object t into exactly n bytes; fails
 * the test (naming the case id) when absent, not hex or of another length. */
static inline void kt_hex_field(json_t *t, const char *name, uint8_t *out, size_t n, int id)
{
    const char *s = json_string_value(json_object_get(t, name));

    if (s == NULL)
        fail_msg("case %d: field %s missing", id, name);
    if (strlen(s) != 2 * n)
        fail_msg("case %d: field %s has %zu hex digits, want %zu", id, name, strlen(s), 2 * n);
    if (ut_hex_decode(s, strlen(s), out, n) < 0)
        fail_msg("case %d: field %s is not hex", id, name);
}

/* Loads vectors_dir/rel; fails the test if it cannot. Caller json_decref()s. */
static inline json_t *kt_load(const char *rel)
{
    char path[4096];
    json_error_t err;
    json_t *root;

    if (vectors_dir == NULL)
        fail_msg("usage: test VECTORS_DIR (the shared/vectors folder)");
    snprintf(path, sizeof(path), "%s/%s", vectors_dir, rel);
    root = json_load_file(path, 0, &err);
    if (root == NULL)
        fail_msg("%s: %s (line %d)", path, err.text, err.line);
    return root;
}

/* EVP digest of the concatenation a || b (b may be NULL). XOFs take outlen. */
static inline void kt_evp(const char *alg, uint8_t *out, size_t outlen, const uint8_t *a,
                          size_t alen, const uint8_t *b, size_t blen)
{
    EVP_MD *md = EVP_MD_fetch(NULL, alg, NULL);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int xof;

    assert_non_null(md);
    assert_non_null(ctx);
    xof = (EVP_MD_get_flags(md) & EVP_MD_FLAG_XOF) != 0;
    assert_int_equal(EVP_DigestInit_ex(ctx, md, NULL), 1);
    assert_int_equal(EVP_DigestUpdate(ctx, a, alen), 1);
    if (b != NULL)
        assert_int_equal(EVP_DigestUpdate(ctx, b, blen), 1);
    if (xof) {
        assert_int_equal(EVP_DigestFinalXOF(ctx, out, outlen), 1);
    } else {
        unsigned int len = 0;

        assert_int_equal((size_t)EVP_MD_get_size(md), outlen);
        assert_int_equal(EVP_DigestFinal_ex(ctx, out, &len), 1);
    }
    EVP_MD_CTX_free(ctx);
    EVP_MD_free(md);
}

#endif
