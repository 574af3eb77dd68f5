/* libFuzzer target: the access-token parser of daemons/ahdapa/jwt.c
 * (compact JWS split, base64url, JSON header/payload, alg checks). */
#include <stddef.h>
#include <stdint.h>

#include "../daemons/ahdapa/ahdapa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ahdapa_jwt j;

    if (ahdapa_jwt_parse((const char *)data, size, &j, NULL) == 0)
        ahdapa_jwt_clear(&j);
    return 0;
}
