/*
 * env_wire.c - the envelope byte layout (docs/gossip-wire.md §2).
 *
 * Parsing is pure (no crypto, no allocation) and checks, in this order:
 * the fixed prefix is there, version, type, flags, id lengths and bytes,
 * the type-specific fields, then that the length field accounts for
 * exactly every remaining byte. All integers are big-endian.
 */
#include "crypto/env_int.h"

#include <string.h>

static uint64_t get_be64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static size_t type_extra(unsigned type)
{
    switch (type) {
    case ENV_T_KEM:
        return CRY_XWING_CT_BYTES;
    case ENV_T_SESSION:
        return ENV_SESSION_EXTRA;
    case ENV_T_RESPONSE:
        return ENV_RESPONSE_EXTRA;
    default:
        return 0;
    }
}

int env_id_valid(const uint8_t *b, size_t n)
{
    if (n == 0 || n > CRY_ENV_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x21 || b[i] > 0x7e)
            return 0;
    return 1;
}

size_t env_header_len(unsigned type, size_t sender_len, size_t recipient_len)
{
    return ENV_FIXED + sender_len + recipient_len + type_extra(type) + ENV_LEN_FIELD;
}

int env_parse(const uint8_t *msg, size_t len, unsigned type_mask, struct env_view *v)
{
    size_t off, plen;

    memset(v, 0, sizeof(*v));
    if (len < ENV_FIXED)
        return CRY_ENV_E_TRUNCATED;
    if (msg[0] != CRY_ENV_VERSION)
        return CRY_ENV_E_VERSION;
    v->type = msg[1];
    if (type_extra(v->type) == 0 || !(type_mask & ENV_TM(v->type)))
        return CRY_ENV_E_TYPE;
    v->flags = msg[2];
    if (v->flags & ~(v->type == ENV_T_KEM ? ENV_FLAG_SESSION_OFFER : 0u))
        return CRY_ENV_E_MALFORMED;
    v->sender_len = msg[3];
    v->recipient_len = msg[4];
    if (v->sender_len == 0 || v->recipient_len == 0)
        return CRY_ENV_E_MALFORMED;
    v->ts = get_be64(msg + 5);
    v->nonce = msg + 13;
    off = ENV_FIXED;
    /* Every length below is at most 255 + 255 + 1120 + 4: no overflow. */
    if (len < env_header_len(v->type, v->sender_len, v->recipient_len))
        return CRY_ENV_E_TRUNCATED;
    v->sender = msg + off;
    off += v->sender_len;
    v->recipient = msg + off;
    off += v->recipient_len;
    if (!env_id_valid(v->sender, v->sender_len) || !env_id_valid(v->recipient, v->recipient_len))
        return CRY_ENV_E_MALFORMED;
    switch (v->type) {
    case ENV_T_KEM:
        v->kem_ct = msg + off;
        off += CRY_XWING_CT_BYTES;
        break;
    case ENV_T_SESSION:
        v->sid = msg + off;
        v->counter = get_be64(msg + off + CRY_ENV_SID_BYTES);
        off += ENV_SESSION_EXTRA;
        if (v->counter == 0)
            return CRY_ENV_E_MALFORMED;
        break;
    default:
        v->req_nonce = msg + off;
        v->req_hash = msg + off + CRY_ENV_NONCE_BYTES;
        off += ENV_RESPONSE_EXTRA;
        break;
    }
    plen = (size_t)msg[off] << 24 | (size_t)msg[off + 1] << 16 | (size_t)msg[off + 2] << 8 |
           (size_t)msg[off + 3];
    off += ENV_LEN_FIELD;
    v->aad_len = off;
    /* len - off >= 0 here; compare without adding to plen (no overflow). */
    if (len - off < ENV_TRAILER || len - off - ENV_TRAILER < plen)
        return CRY_ENV_E_TRUNCATED;
    if (len - off - ENV_TRAILER > plen)
        return CRY_ENV_E_MALFORMED; /* trailing bytes */
    v->ct = msg + off;
    v->ct_len = plen;
    v->tag = msg + off + plen;
    v->signed_len = off + plen + ENV_TAG;
    v->sig = msg + v->signed_len;
    return 0;
}

void env_header_write(uint8_t *out, const struct env_view *v, uint32_t plen)
{
    size_t off = ENV_FIXED;

    out[0] = CRY_ENV_VERSION;
    out[1] = v->type;
    out[2] = v->flags;
    out[3] = (uint8_t)v->sender_len;
    out[4] = (uint8_t)v->recipient_len;
    put_be64(out + 5, v->ts);
    memcpy(out + 13, v->nonce, CRY_ENV_NONCE_BYTES);
    memcpy(out + off, v->sender, v->sender_len);
    off += v->sender_len;
    memcpy(out + off, v->recipient, v->recipient_len);
    off += v->recipient_len;
    switch (v->type) {
    case ENV_T_KEM:
        memcpy(out + off, v->kem_ct, CRY_XWING_CT_BYTES);
        off += CRY_XWING_CT_BYTES;
        break;
    case ENV_T_SESSION:
        memcpy(out + off, v->sid, CRY_ENV_SID_BYTES);
        put_be64(out + off + CRY_ENV_SID_BYTES, v->counter);
        off += ENV_SESSION_EXTRA;
        break;
    default:
        memcpy(out + off, v->req_nonce, CRY_ENV_NONCE_BYTES);
        memcpy(out + off + CRY_ENV_NONCE_BYTES, v->req_hash, CRY_ENV_HASH_BYTES);
        off += ENV_RESPONSE_EXTRA;
        break;
    }
    out[off] = (uint8_t)(plen >> 24);
    out[off + 1] = (uint8_t)(plen >> 16);
    out[off + 2] = (uint8_t)(plen >> 8);
    out[off + 3] = (uint8_t)plen;
}

size_t cry_env_overhead_kem(size_t sender_len, size_t recipient_len)
{
    return env_header_len(ENV_T_KEM, sender_len, recipient_len) + ENV_TRAILER;
}

size_t cry_env_overhead_session(size_t sender_len, size_t recipient_len)
{
    return env_header_len(ENV_T_SESSION, sender_len, recipient_len) + ENV_TRAILER;
}

size_t cry_env_overhead_response(size_t sender_len, size_t recipient_len)
{
    return env_header_len(ENV_T_RESPONSE, sender_len, recipient_len) + ENV_TRAILER;
}
