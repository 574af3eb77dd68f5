/* libFuzzer target: daemons/akamu/jws.c. The input is an ACME request body
 * and goes through akm_jws_parse() (request rules); when it is a JSON
 * object it also goes through akm_jws_parse_json() with the keyChange, EAB
 * and bare rules. Every parsed JWS is verified (a fixed P-256 key, a fixed
 * MAC key) and, when it carries a "jwk", the key is imported, exported,
 * thumbprinted and used to verify. Invariants that abort on violation:
 *   - akm_jwk_to_pkey() accepts only what akm_jwk_thumbprint() accepts;
 *   - thumbprint(jwk) == thumbprint(from_pkey(to_pkey(jwk))) and
 *     akm_jwk_equal(jwk, from_pkey(to_pkey(jwk))) == 1 (canonical form);
 *   - every failure maps to a problem type. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../daemons/akamu/jws.h"
#include "http/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t mac_key[64] = "fuzz-eab-key-0123456789abcdef0123456789abcdef0123456789abcdef";
static EVP_PKEY *fixed_key; /* made once, lives for the process */

static void must_map(int rc)
{
    if (rc < 0 && (akm_jws_problem(rc) == AKM_JWS_PROB_NONE ||
                   akm_jws_problem_type(akm_jws_problem(rc)) == NULL))
        abort();
}

static void exercise(const struct akm_jws *j)
{
    const json_t *jwk = akm_jws_jwk(j);
    char t1[AKM_JWK_THUMB_LEN + 1], t2[AKM_JWK_THUMB_LEN + 1];
    EVP_PKEY *pk = NULL;
    json_t *p = NULL, *back = NULL;
    size_t n;
    int trc;

    (void)akm_jws_payload(j, &n);
    (void)akm_jws_signing_input(j, &n);
    (void)akm_jws_payload_empty(j);
    if (akm_jws_payload_json(j, &p, NULL) == 0)
        json_decref(p);
    must_map(akm_jws_verify_hmac(j, mac_key, sizeof(mac_key), NULL));
    if (fixed_key != NULL)
        must_map(akm_jws_verify(j, fixed_key, NULL));
    if (jwk == NULL)
        return;
    trc = akm_jwk_thumbprint(jwk, t1, NULL);
    must_map(trc);
    if (akm_jwk_to_pkey(jwk, &pk, NULL) != 0)
        return;
    if (trc != 0)
        abort();
    must_map(akm_jws_verify(j, pk, NULL));
    if (akm_jwk_from_pkey(pk, &back, NULL) != 0 || akm_jwk_thumbprint(back, t2, NULL) != 0 ||
        strcmp(t1, t2) != 0 || akm_jwk_equal(jwk, back, NULL) != 1)
        abort();
    json_decref(back);
    EVP_PKEY_free(pk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum akm_jws_kind kinds[] = {AKM_JWS_KEYCHANGE, AKM_JWS_EAB, AKM_JWS_BARE};
    struct akm_jws *j = NULL;
    json_t *obj;
    int rc;

    if (fixed_key == NULL)
        fixed_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    rc = akm_jws_parse(data, size, &j, NULL);
    must_map(rc);
    if (rc == 0) {
        exercise(j);
        akm_jws_free(j);
    }
    if (size > AKM_JWS_BODY_MAX)
        return 0;
    obj = http_parse_json(data, size, NULL);
    if (obj == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        rc = akm_jws_parse_json(obj, kinds[i], &j, NULL);
        must_map(rc);
        if (rc == 0) {
            exercise(j);
            akm_jws_free(j);
        }
    }
    json_decref(obj);
    return 0;
}
