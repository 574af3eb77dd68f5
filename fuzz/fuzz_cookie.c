/*
 * fuzz_cookie.c - libFuzzer target for ahd_cookie_open (daemons/ahdapa/
 * session.c), the parser every request's session cookie goes through.
 *
 * The input is taken as the cookie text under a fixed key ring. It must
 * never crash; on error the message must say why. An input that opens
 * (only a sealed one can, e.g. from the corpus generator below) must have
 * NUL-terminated, bounded fields and reseal and reopen to the same session.
 * The first call also seals a fresh cookie, so the corpus gets one valid
 * seed to mutate from: a ring of two keys with bytes 0x11 and 0x22.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../daemons/ahdapa/ahdapa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ahd_key k1, k2;

static void init(void)
{
    uint8_t raw[AHD_KEY_BYTES];

    memset(raw, 0x11, sizeof(raw));
    ahd_key_init(&k1, raw);
    memset(raw, 0x22, sizeof(raw));
    ahd_key_init(&k2, raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct ahd_key *ring[2] = {&k1, &k2};
    struct ahd_session s, t;
    struct ut_err err = {{0}};
    char text[AHD_COOKIE_MAX + 2], again[AHD_COOKIE_MAX + 1];
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;

    if (!k1.set)
        init();
    memcpy(text, data, n);
    text[n] = '\0'; /* a NUL inside just shortens the cookie */
    if (ahd_cookie_open(ring, 2, text, 0, &s, &err) < 0) {
        if (err.msg[0] == '\0')
            __builtin_trap();
        return 0;
    }
    if (strlen(s.sid) > AHD_SID_MAX || strlen(s.sub) > AHD_USERNAME_MAX ||
        strlen(s.csrf) > AHD_CSRF_MAX || s.n_groups > AHD_GROUPS_MAX)
        __builtin_trap();
    if (ahd_cookie_seal(&k1, &s, again, sizeof(again), &err) == 0) {
        if (ahd_cookie_open(ring, 2, again, 0, &t, &err) < 0 || strcmp(t.sid, s.sid) != 0 ||
            strcmp(t.sub, s.sub) != 0 || t.exp != s.exp || t.n_groups != s.n_groups)
            __builtin_trap();
    }
    return 0;
}
