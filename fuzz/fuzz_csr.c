/* libFuzzer target: the CSR checks of daemons/akamu/ca.c (DER PKCS#10
 * parse, key policy, signature, SAN/CN extraction and normalization) and
 * every accessor of a parsed CSR, including key comparison against a fixed
 * key. A crash, a leak or a sanitizer report is a failure. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "../daemons/akamu/ca.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Made once; reachable for the process lifetime (not a leak). */
static EVP_PKEY *fixed_key(void)
{
    static EVP_PKEY *k;

    if (k == NULL)
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct akm_csr *c = NULL;
    struct ut_err err;
    size_t i, n;

    if (akm_csr_parse(data, size, &c, &err) != 0) {
        if (c != NULL || err.msg[0] == '\0' || memchr(err.msg, '\0', sizeof(err.msg)) == NULL)
            __builtin_trap();
        return 0;
    }
    n = akm_csr_n_names(c);
    if (n == 0 || n > AKM_MAX_NAMES)
        __builtin_trap();
    for (i = 0; i < n; i++) {
        const struct akm_name *nm = akm_csr_name(c, i);

        if (nm == NULL || (nm->type != AKM_NAME_DNS && nm->type != AKM_NAME_IP) ||
            strlen(nm->value) == 0 || strlen(nm->value) > AKM_NAME_MAX)
            __builtin_trap();
    }
    if (akm_csr_name(c, n) != NULL || akm_csr_pubkey(c) == NULL)
        __builtin_trap();
    if (akm_csr_key_equals(c, akm_csr_pubkey(c)) != 1)
        __builtin_trap();
    (void)akm_csr_key_equals(c, fixed_key());
    akm_csr_free(c);
    if (ERR_peek_error() != 0)
        __builtin_trap();
    return 0;
}
