/*
 * kem.h - ML-KEM-768 (FIPS 203) and the X-Wing hybrid KEM
 * (draft-connolly-cfrg-xwing-kem: ML-KEM-768 + X25519, SHA3-256 combiner).
 *
 * Deterministic entry points take their randomness as arguments (d, z, m,
 * seed, eseed) so they can be tested against vectors; the *_rand variants
 * draw it from OpenSSL's RAND_bytes and wipe it after use.
 *
 * Backends: ML-KEM is implemented here (mlkem.c). When the build finds
 * OpenSSL >= 3.5 (CRY_HAVE_OPENSSL_MLKEM), the same functions call
 * OpenSSL's ML-KEM-768 instead; the API and outputs are identical.
 *
 * Constant time: no branch or memory index depends on secret data (keys,
 * m, shared secrets, the implicit-rejection choice). tests/crypto checks
 * it with valgrind memcheck client requests.
 *
 * Return values: 0, or -EINVAL when an input fails the FIPS 203 checks
 * (encapsulation key: coefficients < q after ByteDecode/ByteEncode round
 * trip; decapsulation key: H(ek) stored in dk matches), or -EIO when the
 * random source or OpenSSL fails. Outputs are undefined on error.
 * Decapsulation of a malformed ciphertext is NOT an error: it returns 0
 * with the implicit-rejection secret, as FIPS 203 requires.
 *
 * Lengths: keys and ciphertexts are fixed-size arrays, so the length part of
 * the FIPS 203 checks (an ek, dk or ct of any other length is invalid) is
 * the caller's job when it takes them from the wire.
 */
#ifndef CRY_KEM_H
#define CRY_KEM_H

#include <stdint.h>

#define CRY_MLKEM768_EK_BYTES 1184
#define CRY_MLKEM768_DK_BYTES 2400
#define CRY_MLKEM768_CT_BYTES 1088
#define CRY_MLKEM_SS_BYTES    32
#define CRY_MLKEM_SEED_BYTES  32

#define CRY_XWING_SK_BYTES    32 /* the seed itself */
#define CRY_XWING_PK_BYTES    1216
#define CRY_XWING_CT_BYTES    1120
#define CRY_XWING_SS_BYTES    32
#define CRY_XWING_ESEED_BYTES 64

int cry_mlkem768_keygen(const uint8_t d[32], const uint8_t z[32], uint8_t ek[CRY_MLKEM768_EK_BYTES],
                        uint8_t dk[CRY_MLKEM768_DK_BYTES]);
int cry_mlkem768_encaps(const uint8_t ek[CRY_MLKEM768_EK_BYTES], const uint8_t m[32],
                        uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES]);
int cry_mlkem768_decaps(const uint8_t dk[CRY_MLKEM768_DK_BYTES],
                        const uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES]);
/* FIPS 203 §7.2 / §7.3 input checks on their own (0 or -EINVAL). */
int cry_mlkem768_check_ek(const uint8_t ek[CRY_MLKEM768_EK_BYTES]);
int cry_mlkem768_check_dk(const uint8_t dk[CRY_MLKEM768_DK_BYTES]);

int cry_mlkem768_keygen_rand(uint8_t ek[CRY_MLKEM768_EK_BYTES], uint8_t dk[CRY_MLKEM768_DK_BYTES]);
int cry_mlkem768_encaps_rand(const uint8_t ek[CRY_MLKEM768_EK_BYTES],
                             uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES]);

/* X-Wing: sk is the 32-byte seed; pk = ML-KEM ek || X25519 public key.
 * ct = ML-KEM ct || X25519 ephemeral public key. Encapsulation runs the
 * ML-KEM ek check (-EINVAL). A low-order X25519 input (ct_X or pk_X) gives
 * the all-zero X25519 value that RFC 7748 and the draft use, not an error,
 * so decapsulation fails only if OpenSSL does (-EIO). */
int cry_xwing_keygen(const uint8_t seed[CRY_XWING_SK_BYTES], uint8_t pk[CRY_XWING_PK_BYTES]);
int cry_xwing_encaps(const uint8_t pk[CRY_XWING_PK_BYTES],
                     const uint8_t eseed[CRY_XWING_ESEED_BYTES], uint8_t ct[CRY_XWING_CT_BYTES],
                     uint8_t ss[CRY_XWING_SS_BYTES]);
int cry_xwing_decaps(const uint8_t sk[CRY_XWING_SK_BYTES], const uint8_t ct[CRY_XWING_CT_BYTES],
                     uint8_t ss[CRY_XWING_SS_BYTES]);
int cry_xwing_keygen_rand(uint8_t sk[CRY_XWING_SK_BYTES], uint8_t pk[CRY_XWING_PK_BYTES]);
int cry_xwing_encaps_rand(const uint8_t pk[CRY_XWING_PK_BYTES], uint8_t ct[CRY_XWING_CT_BYTES],
                          uint8_t ss[CRY_XWING_SS_BYTES]);

/* Name of the ML-KEM backend in use: "builtin" or "openssl". */
const char *cry_mlkem_backend(void);

#endif
