/*
 * mlkem_internal.h - private interfaces shared by mlkem.c, mlkem_keccak.c,
 * mlkem_openssl.c, xwing.c and the crypto unit tests. Not part of the API.
 *
 * Keccak: ML-KEM needs SHA3-256 (H), SHA3-512 (G), SHAKE256 (J, PRF) and
 * SHAKE128 squeezed block by block (SampleNTT). OpenSSL 3.0 can only squeeze
 * a SHAKE once (EVP_DigestFinalXOF), and every EVP call costs a provider
 * lookup, so ML-KEM uses this small Keccak-f[1600] sponge instead. It is
 * constant time (no data-dependent branches or table indexes) and checked
 * against OpenSSL's SHA3/SHAKE in tests/unit/crypto/test_kem.c.
 */
#ifndef CRY_MLKEM_INTERNAL_H
#define CRY_MLKEM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/kem.h"

/*
 * CRY_DECLASSIFY(p, n) tells valgrind memcheck that n bytes at p are public
 * (defined) although they were computed from secrets. Only the constant-time
 * test build (tests/crypto/ct_valgrind, -DCRY_CT_VALGRIND) defines it; in
 * the library it is a no-op. Use it only for values the algorithm publishes
 * anyway (rho, which is part of ek).
 */
#ifdef CRY_CT_VALGRIND
#include <valgrind/memcheck.h>
#define CRY_DECLASSIFY(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#else
#define CRY_DECLASSIFY(p, n) ((void)(p), (void)(n))
#endif

#define CRY_SHA3_256_RATE 136
#define CRY_SHA3_512_RATE 72
#define CRY_SHAKE128_RATE 168
#define CRY_SHAKE256_RATE 136

/* Sponge state. Absorb, then cry_keccak_finish() once, then squeeze any
 * number of times; mixing the two phases is a caller bug. The state holds
 * secret data when the input was secret: wipe it with cry_keccak_wipe(). */
struct cry_keccak {
    uint64_t s[25];
    size_t rate; /* bytes per block */
    size_t pos;  /* bytes absorbed into / squeezed from the current block */
};

void cry_keccak_f1600(uint64_t s[25]);
void cry_keccak_init(struct cry_keccak *k, size_t rate);
void cry_keccak_absorb(struct cry_keccak *k, const uint8_t *in, size_t len);
/* Pads with domain byte ds (0x06 SHA3, 0x1f SHAKE) and switches to squeezing. */
void cry_keccak_finish(struct cry_keccak *k, uint8_t ds);
void cry_keccak_squeeze(struct cry_keccak *k, uint8_t *out, size_t len);
void cry_keccak_wipe(struct cry_keccak *k);

void cry_sha3_256(uint8_t out[32], const uint8_t *in, size_t len);
void cry_sha3_512(uint8_t out[64], const uint8_t *in, size_t len);
void cry_shake128(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen);
void cry_shake256(uint8_t *out, size_t outlen, const uint8_t *in, size_t inlen);

/* Builtin ML-KEM-768 (FIPS 203 Alg. 16-18, the *_internal forms). No input
 * checks: the public wrappers in mlkem.c run them. Always compiled, also
 * when the OpenSSL backend is selected, so tests can compare the two. */
void cry_mlkem768_builtin_keygen(const uint8_t d[32], const uint8_t z[32],
                                 uint8_t ek[CRY_MLKEM768_EK_BYTES],
                                 uint8_t dk[CRY_MLKEM768_DK_BYTES]);
void cry_mlkem768_builtin_encaps(const uint8_t ek[CRY_MLKEM768_EK_BYTES], const uint8_t m[32],
                                 uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES]);
void cry_mlkem768_builtin_decaps(const uint8_t dk[CRY_MLKEM768_DK_BYTES],
                                 const uint8_t ct[CRY_MLKEM768_CT_BYTES],
                                 uint8_t ss[CRY_MLKEM_SS_BYTES]);

/* Decapsulation through the selected backend WITHOUT the §7.3 hash check,
 * for a dk the caller has just generated itself (X-Wing re-expands its key
 * on every decapsulation; checking it again would only cost time). */
int cry_mlkem768_decaps_unchecked(const uint8_t dk[CRY_MLKEM768_DK_BYTES],
                                  const uint8_t ct[CRY_MLKEM768_CT_BYTES],
                                  uint8_t ss[CRY_MLKEM_SS_BYTES]);

#ifdef CRY_HAVE_OPENSSL_MLKEM
/* OpenSSL >= 3.5 backend (mlkem_openssl.c): 0 or -EIO. No input checks. */
int cry_mlkem768_ossl_keygen(const uint8_t d[32], const uint8_t z[32],
                             uint8_t ek[CRY_MLKEM768_EK_BYTES], uint8_t dk[CRY_MLKEM768_DK_BYTES]);
int cry_mlkem768_ossl_encaps(const uint8_t ek[CRY_MLKEM768_EK_BYTES], const uint8_t m[32],
                             uint8_t ct[CRY_MLKEM768_CT_BYTES], uint8_t ss[CRY_MLKEM_SS_BYTES]);
int cry_mlkem768_ossl_decaps(const uint8_t dk[CRY_MLKEM768_DK_BYTES],
                             const uint8_t ct[CRY_MLKEM768_CT_BYTES],
                             uint8_t ss[CRY_MLKEM_SS_BYTES]);
#endif

#endif
