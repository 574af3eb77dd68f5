/*
 * mem.h - secret-safe memory helpers.
 */
#ifndef UT_MEM_H
#define UT_MEM_H

#include <stddef.h>

/* Zeroizes p[0..n) in a way the compiler may not elide (keys, passwords). */
void ut_memzero(void *p, size_t n);
/* Constant-time equality of two n-byte strings: 1 when equal, else 0.
 * Time depends only on n, never on where the bytes differ. */
int ut_ct_eq(const void *a, const void *b, size_t n);
/* Like strdup/malloc but abort()s on out-of-memory for tiny, bounded
 * allocations where failure handling would only add dead code. */
void *ut_xcalloc(size_t n, size_t sz);
char *ut_xstrdup(const char *s);

#endif
