/*
 * http_test.h - helpers shared by the lib/http tests (header-only).
 */
#ifndef HTTP_TEST_H
#define HTTP_TEST_H

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* The value of header `name` in a raw response head ("HTTP/1.1 ...\r\n
 * Name: value\r\n..."), copied into val[vn]; NULL when absent. */
static inline const char *find_header(const char *head, const char *name, char *val, size_t vn)
{
    const char *p = head;
    size_t nl = strlen(name);

    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1, *e;

            while (*v == ' ')
                v++;
            e = strstr(v, "\r\n");
            snprintf(val, vn, "%.*s", (int)(e ? e - v : (long)strlen(v)), v);
            return val;
        }
    }
    return NULL;
}

#endif
