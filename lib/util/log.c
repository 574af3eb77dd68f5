#include "util/log.h"
#include "util/buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* A log line longer than this is cut; logs are not a data channel. */
#define LOG_LINE_MAX 4096

static _Atomic int g_level = UT_LOG_INFO;
static _Atomic int g_fd = 2;
static _Atomic int g_ts = 1;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void ut_log_set_level(enum ut_log_level lvl)
{
    g_level = (int)lvl;
}

enum ut_log_level ut_log_get_level(void)
{
    return (enum ut_log_level)g_level;
}

void ut_log_set_fd(int fd)
{
    g_fd = fd;
}

void ut_log_set_timestamps(int on)
{
    g_ts = on;
}

int ut_log_level_parse(const char *s, enum ut_log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};

    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum ut_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = UT_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

static void put_prefix(struct ut_buf *b, enum ut_log_level lvl, const char *module)
{
    if (g_ts) {
        struct timespec ts;
        struct tm tm;
        char t[32];

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%S", &tm);
        ut_buf_printf(b, "%s.%03ldZ ", t, ts.tv_nsec / 1000000);
    }
    ut_buf_printf(b, "%s %s: ", level_names[lvl], module);
}

static void emit(struct ut_buf *b)
{
    const char *p;
    size_t left;

    if (b->data == NULL)
        return;
    /* The cap may have cut the newline; always end the line. */
    if (b->len == 0 || b->data[b->len - 1] != '\n') {
        if (ut_buf_putc(b, '\n') < 0)
            b->data[b->len - 1] = '\n';
    }
    p = b->data;
    left = b->len;
    while (left > 0) {
        ssize_t w = write(g_fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        p += w;
        left -= (size_t)w;
    }
}

static int is_secret_key(const char *k)
{
    static const char *const words[] = {"password", "secret", "token", "key", "cookie"};

    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasestr(k, words[i]) != NULL)
            return 1;
    return 0;
}

static void put_quoted(struct ut_buf *b, const char *s)
{
    ut_buf_putc(b, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            ut_buf_putc(b, '\\');
            ut_buf_putc(b, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            ut_buf_printf(b, "\\x%02x", c);
        } else {
            ut_buf_putc(b, (char)c);
        }
    }
    ut_buf_putc(b, '"');
}

void ut_log_(enum ut_log_level lvl, const char *module, const char *msg, ...)
{
    struct ut_buf b;
    va_list ap;

    if ((int)lvl < g_level)
        return;
    ut_buf_init(&b, LOG_LINE_MAX);
    put_prefix(&b, lvl, module);
    ut_buf_append(&b, msg, strlen(msg));
    va_start(ap, msg);
    for (;;) {
        struct ut_log_field f = va_arg(ap, struct ut_log_field);
        if (f.kind == 0 || f.key == NULL)
            break;
        ut_buf_printf(&b, " %s=", f.key);
        if (f.kind == 1 && is_secret_key(f.key))
            ut_buf_append(&b, "\"[redacted]\"", 12);
        else if (f.kind == 1)
            put_quoted(&b, f.s);
        else
            ut_buf_printf(&b, "%lld", f.i);
    }
    va_end(ap);
    emit(&b);
    ut_buf_free(&b);
}

void ut_logf(enum ut_log_level lvl, const char *module, const char *fmt, ...)
{
    struct ut_buf b;
    va_list ap;

    if ((int)lvl < g_level)
        return;
    ut_buf_init(&b, LOG_LINE_MAX);
    put_prefix(&b, lvl, module);
    va_start(ap, fmt);
    ut_buf_vprintf(&b, fmt, ap);
    va_end(ap);
    emit(&b);
    ut_buf_free(&b);
}
