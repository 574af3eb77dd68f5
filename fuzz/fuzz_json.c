/*
 * fuzz_json.c - libFuzzer target for http_parse_json.
 *
 * On success the value must be an object; it is serialized compactly and
 * parsed again, which must succeed and give an equal value (nothing the
 * parser accepts may be unrepresentable, e.g. too deep or with NULs).
 */
#include "http/http.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ut_err err = {{0}};
    json_t *j, *k;
    char *s;

    j = http_parse_json(data, size, &err);
    if (j == NULL) {
        if (err.msg[0] == '\0')
            __builtin_trap();
        return 0;
    }
    if (!json_is_object(j))
        __builtin_trap();
    s = json_dumps(j, JSON_COMPACT);
    if (s == NULL)
        __builtin_trap();
    k = http_parse_json(s, strlen(s), &err);
    if (k == NULL || !json_equal(j, k))
        __builtin_trap();
    json_decref(k);
    free(s);
    json_decref(j);
    return 0;
}
