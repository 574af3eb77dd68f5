/*
 * err.h - the error struct every fallible function may fill.
 *
 * Contract: functions return 0 on success or a negative errno-style code,
 * and, when given a non-NULL struct ut_err, write one line saying what was
 * wrong and which input caused it. Callers may pass NULL to ignore details.
 */
#ifndef UT_ERR_H
#define UT_ERR_H

#include <stddef.h>

#define UT_ERR_MAX 512

struct ut_err {
    char msg[UT_ERR_MAX];
};

/* Sets e->msg (truncated to UT_ERR_MAX-1 bytes). No-op when e is NULL. */
void ut_err_set(struct ut_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends "prefix: " to an existing message (for adding context). */
void ut_err_prefix(struct ut_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
