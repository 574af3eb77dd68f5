/*
 * proto.h - the gossip sync payload: the CBOR message carried inside a
 * sealed envelope, its strict decoder, and the small version-vector type
 * the engine keeps per peer. Byte-by-byte definition: docs/replication.md
 * ("Payload").
 *
 * Payload = 1 header byte + body:
 *   0x00  body is the CBOR message
 *   0x01  body is one zstd frame (with its content size) of the CBOR message
 * The CBOR message is a definite-length map with small unsigned keys
 * (enum gsp_key); entries are arrays
 *   [tbl, key, value bytes | null, hlc, origin, seq, deleted, expires].
 * Indefinite lengths, tags, floats, duplicate or unknown keys are refused.
 */
#ifndef GSP_PROTO_H
#define GSP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "crdt/crdt.h"
#include "util/buf.h"
#include "util/err.h"

#define GSP_PROTO_VERSION 1
#define GSP_HDR_CBOR      0x00
#define GSP_HDR_ZSTD      0x01

enum gsp_key {
    GSP_K_VERSION = 0, /* uint, = GSP_PROTO_VERSION (required) */
    GSP_K_KIND = 1,    /* uint: 0 request, 1 response (required) */
    GSP_K_GEN = 2,     /* uint: sender's crdt_generation() (informational) */
    GSP_K_VV = 3,      /* map origin -> seq: the sender's version vector */
    GSP_K_VVH = 4,     /* bstr(8): hash of the sender's vv, sent instead of GSP_K_VV */
    GSP_K_PVH = 5,     /* bstr(8), request: hash of the vv the requester holds for the responder */
    GSP_K_ENTRIES = 6, /* array of entries, per origin in seq order */
    GSP_K_THROUGH = 7, /* map origin -> [from, through]: "with all of origin up to from,
                        * you now have all of it up to through" */
    GSP_K_MORE = 8,    /* bool: the sender's page was full */
    GSP_K_NEED_VV = 9, /* bool, response: "your vv hash is unknown here; send it in full" */
};
#define GSP_K_MAX GSP_K_NEED_VV

enum gsp_msg_kind { GSP_MSG_REQUEST = 0, GSP_MSG_RESPONSE = 1 };

/* Decoder limits. Entry strings follow lib/crdt's own limits. */
#define GSP_MAX_ENTRIES   65536u /* entries per message */
#define GSP_MAX_ORIGINS   4096u  /* origins in a vv / through map */
#define GSP_MAX_TBL       CRDT_TABLE_NAME_MAX
#define GSP_MAX_KEY       CRDT_KEY_MAX
#define GSP_MAX_VALUE     CRDT_VALUE_MAX
#define GSP_MAX_ORIGIN    CRDT_ORIGIN_MAX
#define GSP_PAYLOAD_SLACK (64u * 1024) /* map, vv and through around the entries */
#define GSP_VVH_BYTES     8
#define GSP_SEQ_LIMIT     (UINT64_C(1) << 63) /* seqs and stamps stay below (SQLite INTEGER) */
#define GSP_ZSTD_LEVEL    1

/* Largest decoded (decompressed) message a node with page cap page_bytes
 * accepts: a full page, plus one entry that may overflow it, plus slack.
 * Anything larger is refused before it is inflated (zstd bombs). */
size_t gsp_max_plain(size_t page_bytes);

/* ---- version vectors ---- */

/* origin -> seq, sorted by origin (strcmp), origins owned. Zeroed = empty. */
struct gsp_vv {
    size_t n, cap;
    char **origin;
    uint64_t *seq;
};
void gsp_vv_free(struct gsp_vv *v);
uint64_t gsp_vv_get(const struct gsp_vv *v, const char *origin); /* 0 when absent */
/* Sets origin to seq (inserting). 0 or -ENOMEM, -E2BIG past GSP_MAX_ORIGINS. */
int gsp_vv_set(struct gsp_vv *v, const char *origin, uint64_t seq);
/* Sets origin to max(current, seq). */
int gsp_vv_raise(struct gsp_vv *v, const char *origin, uint64_t seq);
/* dst = src (dst's old content freed). */
int gsp_vv_copy(struct gsp_vv *dst, const struct gsp_vv *src);
int gsp_vv_from_crdt(struct gsp_vv *dst, const struct crdt_vv *src);
/* 1 when a[o] <= b[o] for every origin o of a (a is "dominated" by b). */
int gsp_vv_le(const struct gsp_vv *a, const struct gsp_vv *b);
/* First 8 bytes of SHA-256 over the canonical CBOR encoding of v (the same
 * bytes as GSP_K_VV on the wire). Origins with seq 0 are left out, so an
 * absent origin and a 0 hash alike. */
void gsp_vv_hash(const struct gsp_vv *v, uint8_t out[GSP_VVH_BYTES]);

/* ---- decoding ---- */

struct gsp_msg {
    unsigned kind;
    uint64_t gen;
    int has_vv;
    struct gsp_vv vv;
    int has_vvh;
    uint8_t vvh[GSP_VVH_BYTES];
    int has_pvh;
    uint8_t pvh[GSP_VVH_BYTES];
    struct crdt_entry *entries; /* strings and values point into arena */
    size_t n_entries;
    struct gsp_vv through;      /* origin -> through */
    struct gsp_vv through_from; /* the same origins -> from (may be 0) */
    int more;
    int need_vv;
    int compressed;   /* header byte was GSP_HDR_ZSTD */
    size_t plain_len; /* CBOR bytes */
    char *arena;      /* owned copies of every string (NUL-terminated) and value */
};

/* Decodes a payload of len bytes. max_plain: the largest CBOR message
 * accepted (compressed or not; gsp_max_plain()). The result owns all its
 * memory (p may be freed). 0, or -EBADMSG (malformed: err names the field),
 * -E2BIG (a limit), -ENOMEM. On error *m is empty (gsp_msg_free is safe). */
int gsp_msg_decode(const uint8_t *p, size_t len, size_t max_plain, struct gsp_msg *m,
                   struct ut_err *err);
void gsp_msg_free(struct gsp_msg *m);

/* ---- encoding ---- */

/* Appends one entry array to b (a page of pre-encoded entries). -E2BIG
 * when b's cap is reached (b unchanged), -EINVAL for an entry the decoder
 * would refuse (names too long, seq out of range...). */
int gsp_entry_encode(struct ut_buf *b, const struct crdt_entry *e);

struct gsp_msg_out {
    unsigned kind;
    uint64_t gen;
    const struct gsp_vv *vv; /* NULL: not sent */
    const uint8_t *vvh;      /* NULL: not sent */
    const uint8_t *pvh;      /* NULL: not sent */
    const uint8_t *entries;  /* n_entries pre-encoded entry arrays (gsp_entry_encode) */
    size_t entries_len;
    size_t n_entries;
    const struct gsp_vv *through;      /* NULL or empty: not sent */
    const struct gsp_vv *through_from; /* from of each origin of through (absent: 0) */
    int more;
    int need_vv;
};
/* Builds the payload (header byte + CBOR, zstd-compressed when the CBOR is
 * larger than zstd_threshold and compression makes it smaller). *out is
 * malloc'd. *compressed (optional) tells which form was chosen. */
int gsp_msg_encode(const struct gsp_msg_out *o, size_t zstd_threshold, uint8_t **out,
                   size_t *out_len, int *compressed, struct ut_err *err);

#endif
