/*
 * b64.h - base64 (RFC 4648 §4) and base64url without padding (§5, as JOSE
 * and ACME use it).
 */
#ifndef UT_B64_H
#define UT_B64_H

#include <stddef.h>

/* Encoded length, excluding the NUL. */
size_t ut_b64_enclen(size_t n, int url);
/* Writes NUL-terminated text into out (ut_b64_enclen()+1 bytes). */
void ut_b64_encode(const void *in, size_t n, char *out, int url);
/* Decodes text of length n into out (at least n*3/4+3 bytes); *outlen gets
 * the size. Standard: '=' padding required when url==0. url: no padding,
 * '-' '_' alphabet. Whitespace is an error. Returns 0 or -EINVAL. */
int ut_b64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, int url);

#endif
