/* Problem reports of a config load, and the edit distance behind
 * did-you-mean suggestions. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cfg/schema.h"

/* Stop collecting after this many problems; the rest are noise. */
#define CFG_MAX_PROBLEMS 50

void cfg_report_init(struct cfg_report *r)
{
    memset(r, 0, sizeof(*r));
    ut_buf_init(&r->text, 64 * 1024);
}

void cfg_report_free(struct cfg_report *r)
{
    ut_buf_free(&r->text);
    r->n_errors = r->n_warnings = 0;
}

__attribute__((format(printf, 5, 0))) static void vreport(struct cfg_report *rep, const char *file,
                                                          int line, const char *what,
                                                          const char *fmt, va_list ap)
{
    if (rep == NULL || rep->n_errors + rep->n_warnings >= CFG_MAX_PROBLEMS)
        return;
    if (line > 0)
        ut_buf_printf(&rep->text, "%s:%d: %s", file, line, what);
    else
        ut_buf_printf(&rep->text, "%s: %s", file, what);
    ut_buf_vprintf(&rep->text, fmt, ap);
    ut_buf_putc(&rep->text, '\n');
}

void cfg_report_error(struct cfg_report *rep, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vreport(rep, file, line, "", fmt, ap);
    va_end(ap);
    if (rep)
        rep->n_errors++;
}

void cfg_report_warn(struct cfg_report *rep, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vreport(rep, file, line, "warning: ", fmt, ap);
    va_end(ap);
    if (rep)
        rep->n_warnings++;
}

int cfg_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int row[65];

    if (la > 64 || lb > 64)
        return 255;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cur = row[j];
            int cost = a[i - 1] == b[j - 1] ? 0 : 1;
            int best = prev + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    return row[lb] > 255 ? 255 : row[lb];
}
