/*
 * fuzz_form.c - libFuzzer target for http_form_parse (x-www-form-urlencoded).
 *
 * On success every field is checked through the public accessors, then the
 * form is re-encoded (every byte as %XX) and parsed again: the second parse
 * must succeed and give the same fields in the same order.
 */
#include "http/http.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t encode(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *s; s++) {
        out[o++] = '%';
        out[o++] = hex[(unsigned char)*s >> 4];
        out[o++] = hex[(unsigned char)*s & 15];
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_form *f = NULL, *g = NULL;
    struct ut_err err = {{0}};
    char *enc;
    size_t n, o = 0;

    if (http_form_parse(data, size, &f, &err) < 0) {
        if (f != NULL || err.msg[0] == '\0')
            __builtin_trap();
        return 0;
    }
    n = http_form_len(f);
    if (n > HTTP_FORM_MAX_FIELDS || http_form_name(f, n) || http_form_value(f, n))
        __builtin_trap();
    /* Decoded text is never longer than the input: 3x covers re-encoding. */
    enc = malloc(3 * size + n + 1);
    if (enc == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        const char *k = http_form_name(f, i), *v = http_form_value(f, i);

        if (k == NULL || v == NULL || k[0] == '\0' || strlen(v) > 32 * 1024)
            __builtin_trap();
        if (http_form_get(f, k) != v) /* names are unique */
            __builtin_trap();
        if (i)
            enc[o++] = '&';
        o += encode(k, enc + o);
        enc[o++] = '=';
        o += encode(v, enc + o);
    }
    if (http_form_parse(enc, o, &g, &err) < 0 || http_form_len(g) != n)
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(http_form_name(f, i), http_form_name(g, i)) != 0 ||
            strcmp(http_form_value(f, i), http_form_value(g, i)) != 0)
            __builtin_trap();
    }
    free(enc);
    http_form_free(g);
    http_form_free(f);
    return 0;
}
