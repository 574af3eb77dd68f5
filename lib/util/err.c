#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void ut_err_set(struct ut_err *e, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

void ut_err_prefix(struct ut_err *e, const char *fmt, ...)
{
    char old[UT_ERR_MAX];
    char pre[UT_ERR_MAX];
    va_list ap;

    if (e == NULL)
        return;
    memcpy(old, e->msg, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(pre, sizeof(pre), fmt, ap);
    va_end(ap);
    /* Truncation is fine: the message is for humans and stays NUL-ended. */
    if (snprintf(e->msg, sizeof(e->msg), "%s: %s", pre, old) < 0)
        e->msg[0] = '\0';
}
