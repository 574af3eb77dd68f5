#include "util/b64.h"

#include <errno.h>
#include <stdint.h>

static const char std_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char url_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t ut_b64_enclen(size_t n, int url)
{
    if (url)
        return (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
    return ((n + 2) / 3) * 4;
}

void ut_b64_encode(const void *in, size_t n, char *out, int url)
{
    const unsigned char *p = in;
    const char *a = url ? url_alpha : std_alpha;
    size_t i, o = 0;

    for (i = 0; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        out[o++] = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        if (!url) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = a[v >> 18];
        out[o++] = a[(v >> 12) & 63];
        out[o++] = a[(v >> 6) & 63];
        if (!url)
            out[o++] = '=';
    }
    out[o] = '\0';
}

static int val(char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

int ut_b64_decode(const char *in, size_t n, unsigned char *out, size_t *outlen, int url)
{
    size_t i, o = 0, pad = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (!url) {
        if (n % 4 != 0)
            return -EINVAL;
        while (pad < 2 && n > 0 && in[n - 1] == '=') {
            n--;
            pad++;
        }
    } else if (n % 4 == 1) {
        return -EINVAL;
    }
    for (i = 0; i < n; i++) {
        int v = val(in[i], url);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    /* Leftover bits must be zero (canonical encoding). */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -EINVAL;
    *outlen = o;
    return 0;
}
