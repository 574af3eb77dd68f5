/*
 * hex.h - hexadecimal digits and strings.
 */
#ifndef UT_HEX_H
#define UT_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Value of one hex digit (either case), or -1. */
int ut_hexval(int c);
/* Decodes exactly 2*n hex digits into out[0..n). 0, or -EINVAL when hex
 * has another length or a non-hex character. */
int ut_hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t n);
/* Writes 2*n lower-case digits and a NUL into out. */
void ut_hex_encode(const uint8_t *in, size_t n, char *out);

#endif
