/*
 * jws.h - ACME request authentication (RFC 8555 §6.2): the flattened JSON
 * JWS serialization (RFC 7515 §7.2.2), public JWK import and export
 * (RFC 7517, RFC 7518 §6, RFC 8037), RFC 7638 thumbprints, and the HMAC
 * check of External Account Binding (RFC 8555 §7.3.4).
 *
 * Algorithms. Signatures (the request and keyChange paths): ES256 (P-256),
 * ES384 (P-384), ES512 (P-521), RS256 (RSA 2048..8192 bits, PKCS#1 v1.5)
 * and EdDSA (Ed25519 only). MACs (the EAB path only): HS256, HS384, HS512.
 * "none" is never accepted.
 *
 * Error contract: every function returns 0 (or the documented positive
 * value) or a negative errno, and fills err with one line naming the bad
 * input. Each code maps to one RFC 8555 §6.7 problem type, which is what
 * akm_jws_problem() returns:
 *   -EINVAL        malformed              bad base64url, JSON, structure, header
 *                                         fields, a JWK member that is not a
 *                                         base64url string, a wrong signature length
 *   -EMSGSIZE      malformed              body, protected header or payload over
 *                                         its cap
 *   -EBADMSG       malformed              well-formed, but the signature or MAC
 *                                         does not verify
 *   -EPROTO        badNonce               request JWS without a usable "nonce"
 *                                         (absent, not a string, empty, too long,
 *                                         not base64url); freshness is the nonce
 *                                         store's job and is not checked here
 *   -ENOTSUP       badSignatureAlgorithm  "alg" unknown, "none", a MAC on a
 *                                         signature path or a signature on the
 *                                         MAC path, or "alg" not fitting the key
 *                                         (ES256 needs P-256, and so on)
 *   -EKEYREJECTED  badPublicKey           unsupported kty/crv, wrong coordinate
 *                                         length, point not on the curve, RSA
 *                                         size/exponent out of policy, leading
 *                                         zero octets, private members present
 *   -ENOMEM, -EIO  serverInternal
 * A badSignatureAlgorithm answer must list the supported algorithms
 * (RFC 8555 §6.2): see akm_jws_algs_json().
 *
 * Strictness (documented departures from "be liberal"): a request JWS must
 * have exactly the members "protected", "payload" and "signature"; the
 * unprotected "header", the general serialization ("signatures"), detached
 * content and any other member are refused. Base64url must be unpadded,
 * canonical and use only [A-Za-z0-9_-]. JSON is strict (http_parse_json):
 * duplicate keys, trailing data and "\u0000" are refused, depth is capped.
 * "crit" is refused (no extension is understood), so is "b64" unless true,
 * and so are the alternative key sources "jku", "x5u" and "x5c". Other
 * unknown header parameters are ignored (RFC 7515 §4).
 *
 * Thread safety: no shared state; a parsed struct akm_jws is read-only and
 * may be used from several threads.
 */
#ifndef AKAMU_JWS_H
#define AKAMU_JWS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/types.h>

#include "util/err.h"

/* Caps. The body cap also bounds the encoded payload of an inner JWS. */
#define AKM_JWS_BODY_MAX      (64 * 1024) /* request body, bytes */
#define AKM_JWS_PROTECTED_MAX (8 * 1024)  /* decoded protected header, bytes */
#define AKM_JWS_URL_MAX       2048        /* "url" and "kid", bytes */
#define AKM_JWS_NONCE_MAX     128         /* "nonce", base64url characters */
#define AKM_JWS_SIG_MAX       1024        /* decoded signature (RSA-8192), bytes */
#define AKM_JWK_RSA_MIN_BITS  2048
#define AKM_JWK_RSA_MAX_BITS  8192
#define AKM_JWS_HMAC_KEY_MAX  1024 /* EAB key, bytes */
#define AKM_JWK_THUMB_LEN     43   /* base64url of a SHA-256 digest */

/* What a JWS is for: decides which algorithms and header parameters the
 * parser demands or refuses. "url" is only exposed: comparing it with the
 * request URL (RFC 8555 §6.4, "unauthorized") is the caller's job. */
enum akm_jws_kind {
    /* An ACME request body (RFC 8555 §6.2): signature alg; exactly one of
     * "jwk" and "kid"; "url" and "nonce" required. */
    AKM_JWS_REQUEST,
    /* The inner JWS of keyChange (RFC 8555 §7.3.5): signature alg; "jwk"
     * required and "kid" refused; "url" required; "nonce" refused. */
    AKM_JWS_KEYCHANGE,
    /* The externalAccountBinding JWS (RFC 8555 §7.3.4): HS256/384/512;
     * "kid" (the EAB key id) required, "jwk" and "nonce" refused; "url"
     * required. Verify with akm_jws_verify_hmac(). */
    AKM_JWS_EAB,
    /* Plain RFC 7515: only "alg" is required, any supported alg (signature
     * or MAC) is accepted, "jwk"/"kid"/"url"/"nonce" are optional and only
     * type-checked. For test vectors and tools; never for authenticating a
     * request. */
    AKM_JWS_BARE,
};

enum akm_jws_problem {
    AKM_JWS_PROB_NONE = 0,        /* rc >= 0 */
    AKM_JWS_PROB_MALFORMED,       /* -EINVAL, -EMSGSIZE, -EBADMSG, other */
    AKM_JWS_PROB_BAD_NONCE,       /* -EPROTO */
    AKM_JWS_PROB_BAD_SIG_ALG,     /* -ENOTSUP */
    AKM_JWS_PROB_BAD_PUBLIC_KEY,  /* -EKEYREJECTED */
    AKM_JWS_PROB_SERVER_INTERNAL, /* -ENOMEM, -EIO */
};

/* The problem type for a return code of this module (see the table above). */
enum akm_jws_problem akm_jws_problem(int rc);
/* "urn:ietf:params:acme:error:malformed" and so on; NULL for NONE. */
const char *akm_jws_problem_type(enum akm_jws_problem p);
/* ["ES256","ES384","ES512","RS256","EdDSA"]: the "algorithms" member of a
 * badSignatureAlgorithm problem. New reference, NULL on out-of-memory. */
json_t *akm_jws_algs_json(void);

/* ---- parsing ---- */

struct akm_jws; /* opaque; owns copies of everything it exposes */

/* Parses an ACME request body (AKM_JWS_REQUEST). len == 0, len over
 * AKM_JWS_BODY_MAX (-EMSGSIZE), or a body that is not a JSON object is
 * malformed. On success *out must be freed with akm_jws_free(); on failure
 * *out is NULL. The signature is NOT checked: call akm_jws_verify(). */
int akm_jws_parse(const void *body, size_t len, struct akm_jws **out, struct ut_err *err);
/* Same, for a JWS that is already a JSON object inside a parsed document
 * (the EAB and keyChange inner JWS), with the rules of kind. obj is only
 * read: *out does not keep a reference to it. */
int akm_jws_parse_json(const json_t *obj, enum akm_jws_kind kind, struct akm_jws **out,
                       struct ut_err *err);
void akm_jws_free(struct akm_jws *j);

/* Accessors. Strings and JSON are borrowed from j and live until
 * akm_jws_free(j). Absent members give NULL. */
const char *akm_jws_alg(const struct akm_jws *j);
const char *akm_jws_nonce(const struct akm_jws *j);
const char *akm_jws_url(const struct akm_jws *j);
const char *akm_jws_kid(const struct akm_jws *j);
/* The "jwk" header member, unvalidated as a key: pass it to
 * akm_jwk_to_pkey(). If it has an "alg" member, the parser has already
 * checked it equals the JWS "alg". */
const json_t *akm_jws_jwk(const struct akm_jws *j);
/* The whole decoded protected header. */
const json_t *akm_jws_header(const struct akm_jws *j);
/* The decoded payload; *len may be 0 (POST-as-GET, RFC 8555 §6.3). The
 * buffer is NUL-terminated one past *len for convenience, but may itself
 * contain NUL bytes. */
const uint8_t *akm_jws_payload(const struct akm_jws *j, size_t *len);
int akm_jws_payload_empty(const struct akm_jws *j);
/* The payload parsed as a JSON object with http_parse_json() rules. An
 * empty payload is -EINVAL (a POST-as-GET has no JSON). New reference. */
int akm_jws_payload_json(const struct akm_jws *j, json_t **out, struct ut_err *err);
/* ASCII(protected || '.' || payload) as received: what was signed.
 * NUL-terminated. */
const char *akm_jws_signing_input(const struct akm_jws *j, size_t *len);

/* ---- verification ---- */

/* Checks the signature with key (borrowed). -ENOTSUP when alg is a MAC or
 * does not fit the key type/curve; -EKEYREJECTED for an RSA key outside
 * 2048..8192 bits; -EINVAL for an RSA signature not exactly the modulus
 * size; -EBADMSG when it does not verify. ECDSA signatures are the raw
 * R || S of RFC 7518 §3.4. */
int akm_jws_verify(const struct akm_jws *j, EVP_PKEY *key, struct ut_err *err);
/* Checks an HS256/384/512 MAC (constant-time compare). -ENOTSUP when alg is
 * not a MAC; -EINVAL when keylen is below the hash size (RFC 7518 §3.2) or
 * over AKM_JWS_HMAC_KEY_MAX; -EBADMSG on mismatch.
 *
 * EAB (RFC 8555 §7.3.4), with outer = the newAccount request:
 *   akm_jws_payload_json(outer) -> "externalAccountBinding" -> eab object;
 *   akm_jws_parse_json(eab, AKM_JWS_EAB); check akm_jws_url(inner) equals
 *   akm_jws_url(outer); look up the key of akm_jws_kid(inner);
 *   akm_jws_verify_hmac(inner, key); then akm_jws_payload_json(inner) must
 *   be the same key as akm_jws_jwk(outer): akm_jwk_equal() == 1. */
int akm_jws_verify_hmac(const struct akm_jws *j, const uint8_t *key, size_t keylen,
                        struct ut_err *err);

/* ---- keys ---- */

/* Imports a public JWK: kty "EC" (crv P-256/P-384/P-521; x and y exactly the
 * field size; point on the curve), "RSA" (n of 2048..8192 bits and odd;
 * e odd with 2^16 < e < 2^32; no leading zero octets, RFC 7518 §2; no
 * factor below 752) or "OKP" (crv Ed25519, x 32 bytes; the point is not
 * decoded here, a bad one just never verifies). The RSA checks are cheap
 * by design: the key arrives before any authentication. Private members (d, p, q, dp, dq, qi, oth,
 * k) are refused. Optional members (kid, use, alg, ...) are ignored. *out is a new key; free with
 * EVP_PKEY_free(). */
int akm_jwk_to_pkey(const json_t *jwk, EVP_PKEY **out, struct ut_err *err);
/* The public JWK of key (EC P-256/384/521, RSA up to 8192 bits, Ed25519):
 * only the RFC 7638 required members, fixed-length EC coordinates, minimal
 * RSA integers, so the thumbprint of the result is canonical. New
 * reference in *out. */
int akm_jwk_from_pkey(EVP_PKEY *key, json_t **out, struct ut_err *err);
/* RFC 7638 SHA-256 thumbprint, base64url, NUL-terminated. Applies the same
 * JSON-level checks as akm_jwk_to_pkey() (supported kty/crv, lengths, no
 * leading zeros, no private members) but not the curve/modulus arithmetic:
 * use it on keys that have been imported once already. */
int akm_jwk_thumbprint(const json_t *jwk, char out[AKM_JWK_THUMB_LEN + 1], struct ut_err *err);
/* 1 when a and b are the same public key (same RFC 7638 canonical form,
 * so member order and optional members do not matter), 0 when they differ,
 * a negative code when either is not a valid public JWK. */
int akm_jwk_equal(const json_t *a, const json_t *b, struct ut_err *err);

#endif
