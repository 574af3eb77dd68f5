/*
 * buf.h - a growable byte buffer with a hard cap.
 *
 * Every buffer has a maximum size fixed at init; an append that would pass
 * it fails with -E2BIG and leaves the buffer unchanged, so a hostile input
 * can never make us allocate without bound. The data is always followed by
 * a NUL byte (not counted in len) so text can be used as a C string.
 */
#ifndef UT_BUF_H
#define UT_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct ut_buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap; /* allocated bytes, including the NUL slot */
    size_t max; /* largest len allowed */
};

void ut_buf_init(struct ut_buf *b, size_t max);
int ut_buf_append(struct ut_buf *b, const void *p, size_t n);
int ut_buf_putc(struct ut_buf *b, char c);
int ut_buf_printf(struct ut_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ut_buf_vprintf(struct ut_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Empties the buffer, keeping its memory. */
void ut_buf_reset(struct ut_buf *b);
/* Hands the data to the caller (free() it); the buffer becomes empty. */
char *ut_buf_steal(struct ut_buf *b, size_t *len);
/* Frees the memory; when wipe is nonzero the bytes are zeroized first. */
void ut_buf_free(struct ut_buf *b);
void ut_buf_wipe_free(struct ut_buf *b);

#endif
