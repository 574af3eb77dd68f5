/*
 * log.h - the one logger.
 *
 * Line shape (one write(2) per line, so threads never interleave):
 *   2026-11-22T10:00:00.123Z INFO gossip: first-contact merge complete peer="https://h:8081"
 * accounts=3 String field values are always double-quoted with \" \\ and control bytes escaped;
 * integer values are bare. Fields whose key names a secret (password, secret, token, key, cookie)
 * are written as "[redacted]": the logger is the last line of defence, callers must still not pass
 * secrets.
 */
#ifndef UT_LOG_H
#define UT_LOG_H

#include <stdint.h>

enum ut_log_level { UT_LOG_DEBUG = 0, UT_LOG_INFO, UT_LOG_WARN, UT_LOG_ERROR };

struct ut_log_field {
    const char *key; /* NULL ends the list */
    int kind;        /* 0 end, 1 string, 2 integer */
    const char *s;
    long long i;
};

#define UT_LF_S(k, v) ((struct ut_log_field){.key = (k), .kind = 1, .s = (v)})
#define UT_LF_I(k, v) ((struct ut_log_field){.key = (k), .kind = 2, .i = (long long)(v)})
#define UT_LF_END     ((struct ut_log_field){.key = 0, .kind = 0})

/* ut_log(UT_LOG_INFO, "gossip", "first-contact merge complete",
 *        UT_LF_S("peer", url), UT_LF_I("accounts", n)); */
#define ut_log(lvl, mod, ...) ut_log_((lvl), (mod), __VA_ARGS__, UT_LF_END)
void ut_log_(enum ut_log_level lvl, const char *module, const char *msg, ...);

/* printf-style message without fields. */
void ut_logf(enum ut_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void ut_log_set_level(enum ut_log_level lvl);
enum ut_log_level ut_log_get_level(void);
/* "debug", "info", "warn", "error" (case-insensitive). 0 or -EINVAL. */
int ut_log_level_parse(const char *s, enum ut_log_level *out);
/* Redirects output to fd (default 2). For tests. */
void ut_log_set_fd(int fd);
/* Drops the timestamp prefix (for tests that compare whole lines). */
void ut_log_set_timestamps(int on);

#endif
