#include "util/buf.h"
#include "util/mem.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ut_buf_init(struct ut_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

static int reserve(struct ut_buf *b, size_t extra)
{
    size_t need, ncap;
    char *p;

    if (extra > b->max || b->len > b->max - extra)
        return -E2BIG;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    p = realloc(b->data, ncap);
    if (p == NULL)
        return -ENOMEM;
    b->data = p;
    b->cap = ncap;
    return 0;
}

int ut_buf_append(struct ut_buf *b, const void *p, size_t n)
{
    int rc;

    if ((rc = reserve(b, n)) < 0)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int ut_buf_putc(struct ut_buf *b, char c)
{
    return ut_buf_append(b, &c, 1);
}

int ut_buf_vprintf(struct ut_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    int n, rc;

    va_copy(cp, ap);
    n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        return -EINVAL;
    if ((rc = reserve(b, (size_t)n)) < 0)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int ut_buf_printf(struct ut_buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = ut_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void ut_buf_reset(struct ut_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *ut_buf_steal(struct ut_buf *b, size_t *len)
{
    char *p = b->data;

    if (p == NULL)
        p = calloc(1, 1);
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void ut_buf_free(struct ut_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void ut_buf_wipe_free(struct ut_buf *b)
{
    if (b->data)
        ut_memzero(b->data, b->cap);
    ut_buf_free(b);
}
