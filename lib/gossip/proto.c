/*
 * proto.c - encoding and strict decoding of the sync payload (proto.h).
 *
 * Encoding uses libcbor's low-level encoders straight into capped buffers
 * (no item trees: a page of 10k entries is one pass). Decoding is a pull
 * reader over libcbor's streaming decoder, one item per call, driven by
 * the fixed schema, so nesting is bounded by the schema itself (map ->
 * array -> entry array, depth 3) and nothing is allocated per item: every
 * string and value is copied once into one arena whose size is bounded by
 * the input (a CBOR string of n bytes takes at least n+1 input bytes).
 */
#include "gossip/proto.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <openssl/evp.h>
#include <zstd.h>

#include "crypto/envelope.h"

size_t gsp_max_plain(size_t page_bytes)
{
    return page_bytes + GSP_MAX_VALUE + GSP_MAX_KEY + GSP_PAYLOAD_SLACK;
}

/* ---- version vectors ---- */

void gsp_vv_free(struct gsp_vv *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->n; i++)
        free(v->origin[i]);
    free(v->origin);
    free(v->seq);
    memset(v, 0, sizeof(*v));
}

/* Index of origin, or where it would be inserted (*found = 0). */
static size_t vv_find(const struct gsp_vv *v, const char *origin, int *found)
{
    size_t lo = 0, hi = v->n;

    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->origin[mid], origin);

        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

uint64_t gsp_vv_get(const struct gsp_vv *v, const char *origin)
{
    int found;
    size_t i;

    if (v == NULL || v->n == 0 || origin == NULL)
        return 0;
    i = vv_find(v, origin, &found);
    return found ? v->seq[i] : 0;
}

static int vv_put(struct gsp_vv *v, const char *origin, uint64_t seq, int raise)
{
    int found;
    size_t i = vv_find(v, origin, &found);
    char *dup;

    if (found) {
        if (!raise || seq > v->seq[i])
            v->seq[i] = seq;
        return 0;
    }
    if (v->n >= GSP_MAX_ORIGINS)
        return -E2BIG;
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        char **no = realloc(v->origin, cap * sizeof(*no));
        uint64_t *ns;

        if (no == NULL)
            return -ENOMEM;
        v->origin = no;
        ns = realloc(v->seq, cap * sizeof(*ns));
        if (ns == NULL)
            return -ENOMEM;
        v->seq = ns;
        v->cap = cap;
    }
    dup = strdup(origin);
    if (dup == NULL)
        return -ENOMEM;
    memmove(v->origin + i + 1, v->origin + i, (v->n - i) * sizeof(*v->origin));
    memmove(v->seq + i + 1, v->seq + i, (v->n - i) * sizeof(*v->seq));
    v->origin[i] = dup;
    v->seq[i] = seq;
    v->n++;
    return 0;
}

int gsp_vv_set(struct gsp_vv *v, const char *origin, uint64_t seq)
{
    return vv_put(v, origin, seq, 0);
}

int gsp_vv_raise(struct gsp_vv *v, const char *origin, uint64_t seq)
{
    return vv_put(v, origin, seq, 1);
}

int gsp_vv_copy(struct gsp_vv *dst, const struct gsp_vv *src)
{
    struct gsp_vv t = {0};
    int rc = 0;

    if (dst == src)
        return 0;
    for (size_t i = 0; src != NULL && i < src->n && rc == 0; i++)
        rc = gsp_vv_set(&t, src->origin[i], src->seq[i]);
    if (rc < 0) {
        gsp_vv_free(&t);
        return rc;
    }
    gsp_vv_free(dst);
    *dst = t;
    return 0;
}

int gsp_vv_from_crdt(struct gsp_vv *dst, const struct crdt_vv *src)
{
    struct gsp_vv t = {0};
    int rc = 0;

    for (size_t i = 0; i < src->n && rc == 0; i++)
        rc = gsp_vv_set(&t, src->origin[i], src->seq[i]);
    if (rc < 0) {
        gsp_vv_free(&t);
        return rc;
    }
    gsp_vv_free(dst);
    *dst = t;
    return 0;
}

int gsp_vv_le(const struct gsp_vv *a, const struct gsp_vv *b)
{
    for (size_t i = 0; a != NULL && i < a->n; i++)
        if (a->seq[i] > gsp_vv_get(b, a->origin[i]))
            return 0;
    return 1;
}

/* ---- encoding helpers ---- */

/* Appends a CBOR head (major type start) produced by one of libcbor's
 * encoders: they need at most 9 bytes. */
#define HEAD(b, call)                                                                              \
    do {                                                                                           \
        unsigned char h_[9];                                                                       \
        size_t n_ = (call);                                                                        \
        if (n_ == 0)                                                                               \
            return -EINVAL;                                                                        \
        if (ut_buf_append((b), h_, n_) < 0)                                                        \
            return -E2BIG;                                                                         \
    } while (0)

static int put_uint(struct ut_buf *b, uint64_t v)
{
    HEAD(b, cbor_encode_uint(v, h_, sizeof(h_)));
    return 0;
}

static int put_text(struct ut_buf *b, const char *s, size_t n)
{
    HEAD(b, cbor_encode_string_start(n, h_, sizeof(h_)));
    return ut_buf_append(b, s, n) < 0 ? -E2BIG : 0;
}

static int put_bytes(struct ut_buf *b, const void *p, size_t n)
{
    HEAD(b, cbor_encode_bytestring_start(n, h_, sizeof(h_)));
    return n == 0 || ut_buf_append(b, p, n) == 0 ? 0 : -E2BIG;
}

static int put_bool(struct ut_buf *b, int v)
{
    HEAD(b, cbor_encode_bool(v != 0, h_, sizeof(h_)));
    return 0;
}

static int put_null(struct ut_buf *b)
{
    HEAD(b, cbor_encode_null(h_, sizeof(h_)));
    return 0;
}

static int put_map(struct ut_buf *b, size_t n)
{
    HEAD(b, cbor_encode_map_start(n, h_, sizeof(h_)));
    return 0;
}

static int put_array(struct ut_buf *b, size_t n)
{
    HEAD(b, cbor_encode_array_start(n, h_, sizeof(h_)));
    return 0;
}

static size_t vv_nonzero(const struct gsp_vv *v)
{
    size_t n = 0;

    for (size_t i = 0; v != NULL && i < v->n; i++)
        n += v->seq[i] != 0;
    return n;
}

/* The canonical map of a vv: origins in strcmp order, zero seqs left out. */
static int put_vv(struct ut_buf *b, const struct gsp_vv *v)
{
    int rc = put_map(b, vv_nonzero(v));

    for (size_t i = 0; rc == 0 && v != NULL && i < v->n; i++) {
        if (v->seq[i] == 0)
            continue;
        rc = put_text(b, v->origin[i], strlen(v->origin[i]));
        if (rc == 0)
            rc = put_uint(b, v->seq[i]);
    }
    return rc;
}

static size_t through_count(const struct gsp_vv *t, const struct gsp_vv *from)
{
    size_t n = 0;

    for (size_t i = 0; t != NULL && i < t->n; i++)
        n += t->seq[i] > gsp_vv_get(from, t->origin[i]);
    return n;
}

/* origin -> [from, through] for every origin with through > from. */
static int put_through(struct ut_buf *b, const struct gsp_vv *t, const struct gsp_vv *from)
{
    int rc = put_map(b, through_count(t, from));

    for (size_t i = 0; rc == 0 && i < t->n; i++) {
        uint64_t f = gsp_vv_get(from, t->origin[i]);

        if (t->seq[i] <= f)
            continue;
        rc = put_text(b, t->origin[i], strlen(t->origin[i]));
        if (rc == 0)
            rc = put_array(b, 2);
        if (rc == 0)
            rc = put_uint(b, f);
        if (rc == 0)
            rc = put_uint(b, t->seq[i]);
    }
    return rc;
}

void gsp_vv_hash(const struct gsp_vv *v, uint8_t out[GSP_VVH_BYTES])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    struct ut_buf b;

    ut_buf_init(&b, (size_t)GSP_MAX_ORIGINS * (GSP_MAX_ORIGIN + 16) + 16);
    memset(out, 0, GSP_VVH_BYTES);
    if (put_vv(&b, v) == 0 && EVP_Digest(b.data, b.len, md, &mdlen, EVP_sha256(), NULL) == 1 &&
        mdlen >= GSP_VVH_BYTES)
        memcpy(out, md, GSP_VVH_BYTES);
    /* A failure leaves all zeroes: never equal to a real hash we compare
     * against, because callers treat all-zero as "unknown". */
    ut_buf_free(&b);
}

static int tbl_ok(const char *s, size_t n)
{
    if (n == 0 || n > GSP_MAX_TBL || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return 0;
    return 1;
}

static int origin_ok(const char *s, size_t n)
{
    if (n == 0 || n > GSP_MAX_ORIGIN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
            return 0;
    return 1;
}

static int key_ok(const char *s, size_t n)
{
    return n > 0 && n <= GSP_MAX_KEY && memchr(s, '\0', n) == NULL;
}

int gsp_entry_encode(struct ut_buf *b, const struct crdt_entry *e)
{
    size_t before = b->len, tl, kl, ol;
    int rc;

    if (e->tbl == NULL || e->key == NULL || e->origin == NULL)
        return -EINVAL;
    tl = strlen(e->tbl);
    kl = strlen(e->key);
    ol = strlen(e->origin);
    if (!tbl_ok(e->tbl, tl) || !key_ok(e->key, kl) || !origin_ok(e->origin, ol) || e->seq == 0 ||
        e->seq >= GSP_SEQ_LIMIT || e->hlc == 0 || e->expires < 0 ||
        (!e->deleted && e->value_len > GSP_MAX_VALUE) ||
        (!e->deleted && e->value == NULL && e->value_len))
        return -EINVAL;
    rc = put_array(b, 8);
    if (rc == 0)
        rc = put_text(b, e->tbl, tl);
    if (rc == 0)
        rc = put_text(b, e->key, kl);
    if (rc == 0)
        rc = e->deleted ? put_null(b) : put_bytes(b, e->value, e->value_len);
    if (rc == 0)
        rc = put_uint(b, e->hlc);
    if (rc == 0)
        rc = put_text(b, e->origin, ol);
    if (rc == 0)
        rc = put_uint(b, e->seq);
    if (rc == 0)
        rc = put_bool(b, e->deleted);
    if (rc == 0)
        rc = put_uint(b, (uint64_t)e->expires);
    if (rc < 0)
        b->len = before; /* all or nothing */
    if (b->data != NULL)
        b->data[b->len] = '\0';
    return rc;
}

int gsp_msg_encode(const struct gsp_msg_out *o, size_t zstd_threshold, uint8_t **out,
                   size_t *out_len, int *compressed, struct ut_err *err)
{
    struct ut_buf b;
    size_t n_keys = 3, bound, zlen;
    uint8_t *z = NULL;
    int has_through = through_count(o->through, o->through_from) > 0;
    int rc;

    *out = NULL;
    *out_len = 0;
    if (compressed)
        *compressed = 0;
    if (o->n_entries > GSP_MAX_ENTRIES || (o->vv && o->vvh)) {
        ut_err_set(err, "gossip payload: %s",
                   o->vv && o->vvh ? "both vv and its hash" : "too many entries");
        return -EINVAL;
    }
    n_keys += (o->vv != NULL) + (o->vvh != NULL) + (o->pvh != NULL) + (o->n_entries > 0) +
              has_through + (o->more != 0) + (o->need_vv != 0);
    /* Header byte first; the cap is the hard envelope cap. */
    ut_buf_init(&b, CRY_ENV_MAX_MESSAGE);
    rc = ut_buf_putc(&b, GSP_HDR_CBOR) < 0 ? -E2BIG : 0;
    if (rc == 0)
        rc = put_map(&b, n_keys);
    if (rc == 0)
        rc = put_uint(&b, GSP_K_VERSION) < 0 ? -E2BIG : put_uint(&b, GSP_PROTO_VERSION);
    if (rc == 0)
        rc = put_uint(&b, GSP_K_KIND) < 0 ? -E2BIG : put_uint(&b, o->kind);
    if (rc == 0)
        rc = put_uint(&b, GSP_K_GEN) < 0 ? -E2BIG : put_uint(&b, o->gen);
    if (rc == 0 && o->vv)
        rc = put_uint(&b, GSP_K_VV) < 0 ? -E2BIG : put_vv(&b, o->vv);
    if (rc == 0 && o->vvh)
        rc = put_uint(&b, GSP_K_VVH) < 0 ? -E2BIG : put_bytes(&b, o->vvh, GSP_VVH_BYTES);
    if (rc == 0 && o->pvh)
        rc = put_uint(&b, GSP_K_PVH) < 0 ? -E2BIG : put_bytes(&b, o->pvh, GSP_VVH_BYTES);
    if (rc == 0 && o->n_entries > 0) {
        rc = put_uint(&b, GSP_K_ENTRIES) < 0 ? -E2BIG : put_array(&b, o->n_entries);
        if (rc == 0 && ut_buf_append(&b, o->entries, o->entries_len) < 0)
            rc = -E2BIG;
    }
    if (rc == 0 && has_through)
        rc =
            put_uint(&b, GSP_K_THROUGH) < 0 ? -E2BIG : put_through(&b, o->through, o->through_from);
    if (rc == 0 && o->more)
        rc = put_uint(&b, GSP_K_MORE) < 0 ? -E2BIG : put_bool(&b, 1);
    if (rc == 0 && o->need_vv)
        rc = put_uint(&b, GSP_K_NEED_VV) < 0 ? -E2BIG : put_bool(&b, 1);
    if (rc < 0) {
        ut_err_set(err, "gossip payload: encoding failed (%s)",
                   rc == -E2BIG ? "larger than the message cap" : "bad field");
        goto out;
    }
    if (b.len - 1 > zstd_threshold) {
        bound = ZSTD_compressBound(b.len - 1);
        z = malloc(bound + 1);
        if (z == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        zlen = ZSTD_compress(z + 1, bound, b.data + 1, b.len - 1, GSP_ZSTD_LEVEL);
        if (!ZSTD_isError(zlen) && zlen < b.len - 1) {
            z[0] = GSP_HDR_ZSTD;
            *out = z;
            *out_len = zlen + 1;
            z = NULL;
            if (compressed)
                *compressed = 1;
            goto out;
        }
    }
    *out = (uint8_t *)ut_buf_steal(&b, out_len);
    if (*out == NULL)
        rc = -ENOMEM;
out:
    free(z);
    ut_buf_free(&b);
    return rc;
}

/* ---- decoding ---- */

enum tok_type { T_NONE = 0, T_UINT, T_NEG, T_BYTES, T_TEXT, T_ARRAY, T_MAP, T_BOOL, T_NULL, T_BAD };

struct tok {
    enum tok_type t;
    uint64_t u;
    const uint8_t *p;
    size_t len;
};

struct rd {
    const uint8_t *p;
    size_t len, pos;
    struct tok tok;
    char *arena; /* copies go here */
    size_t arena_len, arena_cap;
};

static void cb_u8(void *c, uint8_t v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_UINT, .u = v};
}
static void cb_u16(void *c, uint16_t v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_UINT, .u = v};
}
static void cb_u32(void *c, uint32_t v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_UINT, .u = v};
}
static void cb_u64(void *c, uint64_t v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_UINT, .u = v};
}
static void cb_n8(void *c, uint8_t v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_NEG, .u = v};
}
static void cb_n16(void *c, uint16_t v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_NEG, .u = v};
}
static void cb_n32(void *c, uint32_t v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_NEG, .u = v};
}
static void cb_n64(void *c, uint64_t v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_NEG, .u = v};
}
static void cb_bytes(void *c, cbor_data p, size_t n)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_BYTES, .p = p, .len = n};
}
static void cb_text(void *c, cbor_data p, size_t n)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_TEXT, .p = p, .len = n};
}
static void cb_array(void *c, size_t n)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_ARRAY, .u = n};
}
static void cb_map(void *c, size_t n)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_MAP, .u = n};
}
static void cb_bool(void *c, bool v)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_BOOL, .u = v ? 1 : 0};
}
static void cb_null(void *c)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_NULL};
}
/* Everything the schema never uses: indefinite lengths, tags, floats,
 * undefined, break. */
static void cb_bad(void *c)
{
    ((struct rd *)c)->tok = (struct tok){.t = T_BAD};
}
static void cb_bad_u64(void *c, uint64_t v)
{
    (void)v;
    cb_bad(c);
}
static void cb_bad_float(void *c, float v)
{
    (void)v;
    cb_bad(c);
}
static void cb_bad_double(void *c, double v)
{
    (void)v;
    cb_bad(c);
}

static const struct cbor_callbacks rd_callbacks = {
    .uint8 = cb_u8,
    .uint16 = cb_u16,
    .uint32 = cb_u32,
    .uint64 = cb_u64,
    .negint8 = cb_n8,
    .negint16 = cb_n16,
    .negint32 = cb_n32,
    .negint64 = cb_n64,
    .byte_string_start = cb_bad,
    .byte_string = cb_bytes,
    .string = cb_text,
    .string_start = cb_bad,
    .indef_array_start = cb_bad,
    .array_start = cb_array,
    .indef_map_start = cb_bad,
    .map_start = cb_map,
    .tag = cb_bad_u64,
    .float2 = cb_bad_float,
    .float4 = cb_bad_float,
    .float8 = cb_bad_double,
    .undefined = cb_bad,
    .null = cb_null,
    .boolean = cb_bool,
    .indef_break = cb_bad,
};

/* Reads the next item; -EBADMSG at the end of input, on malformed CBOR or
 * an item type the schema never uses. */
static int rd_next(struct rd *r, struct tok *t)
{
    struct cbor_decoder_result res;

    if (r->pos >= r->len)
        return -EBADMSG;
    r->tok = (struct tok){.t = T_NONE};
    res = cbor_stream_decode(r->p + r->pos, r->len - r->pos, &rd_callbacks, r);
    if (res.status != CBOR_DECODER_FINISHED || res.read == 0 || r->tok.t == T_NONE ||
        r->tok.t == T_BAD)
        return -EBADMSG;
    r->pos += res.read;
    *t = r->tok;
    return 0;
}

static int rd_uint(struct rd *r, uint64_t *v)
{
    struct tok t;
    int rc = rd_next(r, &t);

    if (rc < 0 || t.t != T_UINT)
        return -EBADMSG;
    *v = t.u;
    return 0;
}

static int rd_bool(struct rd *r, int *v)
{
    struct tok t;
    int rc = rd_next(r, &t);

    if (rc < 0 || t.t != T_BOOL)
        return -EBADMSG;
    *v = (int)t.u;
    return 0;
}

/* Copies n bytes into the arena, NUL-terminated. The arena is sized so
 * this cannot overflow (see the file comment); checked anyway. */
static char *arena_put(struct rd *r, const uint8_t *p, size_t n)
{
    char *s;

    if (n + 1 > r->arena_cap - r->arena_len)
        return NULL;
    s = r->arena + r->arena_len;
    if (n > 0)
        memcpy(s, p, n);
    s[n] = '\0';
    r->arena_len += n + 1;
    return s;
}

/* A text item checked by ok(), copied. */
static int rd_text(struct rd *r, int (*ok)(const char *, size_t), const char **out)
{
    struct tok t;

    if (rd_next(r, &t) < 0 || t.t != T_TEXT || !ok((const char *)t.p, t.len))
        return -EBADMSG;
    *out = arena_put(r, t.p, t.len);
    return *out ? 0 : -EBADMSG;
}

static int rd_vv(struct rd *r, struct gsp_vv *v, const char *what, struct ut_err *err)
{
    struct tok t;
    const char *prev = NULL;

    if (rd_next(r, &t) < 0 || t.t != T_MAP) {
        ut_err_set(err, "gossip payload: %s is not a map", what);
        return -EBADMSG;
    }
    if (t.u > GSP_MAX_ORIGINS) {
        ut_err_set(err, "gossip payload: %s has %llu origins (at most %u)", what,
                   (unsigned long long)t.u, GSP_MAX_ORIGINS);
        return -E2BIG;
    }
    for (uint64_t i = 0; i < t.u; i++) {
        const char *o;
        uint64_t seq;
        int rc;

        if (rd_text(r, origin_ok, &o) < 0 || rd_uint(r, &seq) < 0 || seq == 0 ||
            seq >= GSP_SEQ_LIMIT) {
            ut_err_set(err, "gossip payload: %s: bad origin or seq at #%llu", what,
                       (unsigned long long)i);
            return -EBADMSG;
        }
        /* Canonical: strictly increasing origins (no duplicates). */
        if (prev != NULL && strcmp(prev, o) >= 0) {
            ut_err_set(err, "gossip payload: %s: origins out of order at #%llu", what,
                       (unsigned long long)i);
            return -EBADMSG;
        }
        prev = o;
        /* Appending in order: gsp_vv_set finds the end and inserts there. */
        rc = gsp_vv_set(v, o, seq);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int rd_through(struct rd *r, struct gsp_msg *m, struct ut_err *err)
{
    struct tok t, a;
    const char *prev = NULL;

    if (rd_next(r, &t) < 0 || t.t != T_MAP) {
        ut_err_set(err, "gossip payload: through is not a map");
        return -EBADMSG;
    }
    if (t.u > GSP_MAX_ORIGINS) {
        ut_err_set(err, "gossip payload: through has %llu origins (at most %u)",
                   (unsigned long long)t.u, GSP_MAX_ORIGINS);
        return -E2BIG;
    }
    for (uint64_t i = 0; i < t.u; i++) {
        const char *o;
        uint64_t from, to;
        int rc;

        if (rd_text(r, origin_ok, &o) < 0 || rd_next(r, &a) < 0 || a.t != T_ARRAY || a.u != 2 ||
            rd_uint(r, &from) < 0 || rd_uint(r, &to) < 0 || to <= from || to >= GSP_SEQ_LIMIT ||
            (prev != NULL && strcmp(prev, o) >= 0)) {
            ut_err_set(err, "gossip payload: through: bad range or order at #%llu",
                       (unsigned long long)i);
            return -EBADMSG;
        }
        prev = o;
        rc = gsp_vv_set(&m->through, o, to);
        if (rc == 0)
            rc = gsp_vv_set(&m->through_from, o, from);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int rd_hash(struct rd *r, uint8_t out[GSP_VVH_BYTES])
{
    struct tok t;

    if (rd_next(r, &t) < 0 || t.t != T_BYTES || t.len != GSP_VVH_BYTES)
        return -EBADMSG;
    memcpy(out, t.p, GSP_VVH_BYTES);
    return 0;
}

static int rd_entry(struct rd *r, struct crdt_entry *e, size_t idx, struct ut_err *err)
{
    struct tok t;
    uint64_t exp = 0;
    int del = 0, ok;

    memset(e, 0, sizeof(*e));
    ok = rd_next(r, &t) == 0 && t.t == T_ARRAY && t.u == 8 && rd_text(r, tbl_ok, &e->tbl) == 0 &&
         rd_text(r, key_ok, &e->key) == 0 && rd_next(r, &t) == 0;
    if (ok && t.t == T_BYTES) {
        if (t.len > GSP_MAX_VALUE) {
            ut_err_set(err, "gossip payload: entry #%zu: value of %zu bytes (at most %u)", idx,
                       t.len, (unsigned)GSP_MAX_VALUE);
            return -E2BIG;
        }
        e->value = (const uint8_t *)arena_put(r, t.p, t.len);
        e->value_len = t.len;
        ok = e->value != NULL;
    } else if (ok) {
        ok = t.t == T_NULL;
    }
    ok = ok && rd_uint(r, &e->hlc) == 0 && e->hlc != 0 && e->hlc < GSP_SEQ_LIMIT &&
         rd_text(r, origin_ok, &e->origin) == 0 && rd_uint(r, &e->seq) == 0 && e->seq != 0 &&
         e->seq < GSP_SEQ_LIMIT && rd_bool(r, &del) == 0 && rd_uint(r, &exp) == 0 &&
         exp <= (uint64_t)INT64_MAX;
    /* A tombstone has no value; a live row has one (maybe empty). */
    if (!ok || del != (e->value == NULL)) {
        ut_err_set(err, "gossip payload: entry #%zu is malformed", idx);
        return -EBADMSG;
    }
    e->deleted = del;
    e->expires = (int64_t)exp;
    return 0;
}

static int rd_entries(struct rd *r, struct gsp_msg *m, struct ut_err *err)
{
    struct tok t;
    int rc;

    if (rd_next(r, &t) < 0 || t.t != T_ARRAY) {
        ut_err_set(err, "gossip payload: entries is not an array");
        return -EBADMSG;
    }
    if (t.u > GSP_MAX_ENTRIES) {
        ut_err_set(err, "gossip payload: %llu entries (at most %u)", (unsigned long long)t.u,
                   GSP_MAX_ENTRIES);
        return -E2BIG;
    }
    /* Each entry takes at least 9 bytes: refuse a count the input cannot
     * hold before allocating for it. */
    if (t.u > (r->len - r->pos) / 9) {
        ut_err_set(err, "gossip payload: %llu entries in %zu bytes", (unsigned long long)t.u,
                   r->len - r->pos);
        return -EBADMSG;
    }
    if (t.u == 0)
        return 0;
    m->entries = calloc((size_t)t.u, sizeof(*m->entries));
    if (m->entries == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < t.u; i++) {
        rc = rd_entry(r, &m->entries[i], i, err);
        if (rc < 0)
            return rc;
        m->n_entries++;
    }
    return 0;
}

static int decode_cbor(struct rd *r, struct gsp_msg *m, struct ut_err *err)
{
    uint32_t seen = 0;
    uint64_t key, ver = 0;
    struct tok t;
    int rc;

    if (rd_next(r, &t) < 0 || t.t != T_MAP) {
        ut_err_set(err, "gossip payload: not a CBOR map");
        return -EBADMSG;
    }
    if (t.u > GSP_K_MAX + 1) {
        ut_err_set(err, "gossip payload: %llu keys", (unsigned long long)t.u);
        return -EBADMSG;
    }
    for (uint64_t i = 0; i < t.u; i++) {
        if (rd_uint(r, &key) < 0 || key > GSP_K_MAX) {
            ut_err_set(err, "gossip payload: unknown or malformed key at #%llu",
                       (unsigned long long)i);
            return -EBADMSG;
        }
        if (seen & (1u << key)) {
            ut_err_set(err, "gossip payload: key %llu repeated", (unsigned long long)key);
            return -EBADMSG;
        }
        seen |= 1u << key;
        rc = 0;
        switch ((enum gsp_key)key) {
        case GSP_K_VERSION:
            rc = rd_uint(r, &ver);
            if (rc == 0 && ver != GSP_PROTO_VERSION) {
                ut_err_set(err, "gossip payload: version %llu (this node speaks %d)",
                           (unsigned long long)ver, GSP_PROTO_VERSION);
                return -EBADMSG;
            }
            break;
        case GSP_K_KIND: {
            uint64_t k = 0;
            rc = rd_uint(r, &k);
            if (rc == 0 && k > GSP_MSG_RESPONSE)
                rc = -EBADMSG;
            m->kind = (unsigned)k;
            break;
        }
        case GSP_K_GEN:
            rc = rd_uint(r, &m->gen);
            break;
        case GSP_K_VV:
            rc = rd_vv(r, &m->vv, "vv", err);
            if (rc < 0)
                return rc;
            m->has_vv = 1;
            break;
        case GSP_K_VVH:
            rc = rd_hash(r, m->vvh);
            m->has_vvh = 1;
            break;
        case GSP_K_PVH:
            rc = rd_hash(r, m->pvh);
            m->has_pvh = 1;
            break;
        case GSP_K_ENTRIES:
            rc = rd_entries(r, m, err);
            if (rc < 0)
                return rc;
            break;
        case GSP_K_THROUGH:
            rc = rd_through(r, m, err);
            if (rc < 0)
                return rc;
            break;
        case GSP_K_MORE:
            rc = rd_bool(r, &m->more);
            break;
        case GSP_K_NEED_VV:
            rc = rd_bool(r, &m->need_vv);
            break;
        }
        if (rc < 0) {
            ut_err_set(err, "gossip payload: bad value for key %llu", (unsigned long long)key);
            return rc;
        }
    }
    if (!(seen & (1u << GSP_K_VERSION)) || !(seen & (1u << GSP_K_KIND))) {
        ut_err_set(err, "gossip payload: version or kind missing");
        return -EBADMSG;
    }
    if (m->has_vv && m->has_vvh) {
        ut_err_set(err, "gossip payload: both vv and vv hash");
        return -EBADMSG;
    }
    if (r->pos != r->len) {
        ut_err_set(err, "gossip payload: %zu trailing bytes", r->len - r->pos);
        return -EBADMSG;
    }
    return 0;
}

int gsp_msg_decode(const uint8_t *p, size_t len, size_t max_plain, struct gsp_msg *m,
                   struct ut_err *err)
{
    struct rd r = {0};
    uint8_t *plain = NULL;
    size_t plain_len;
    int rc;

    memset(m, 0, sizeof(*m));
    if (p == NULL || len < 2) {
        ut_err_set(err, "gossip payload: %zu bytes is too short", len);
        return -EBADMSG;
    }
    if (p[0] == GSP_HDR_CBOR) {
        plain_len = len - 1;
        if (plain_len > max_plain) {
            ut_err_set(err, "gossip payload: %zu bytes (at most %zu)", plain_len, max_plain);
            return -E2BIG;
        }
        r.p = p + 1;
    } else if (p[0] == GSP_HDR_ZSTD) {
        unsigned long long csize = ZSTD_getFrameContentSize(p + 1, len - 1);
        size_t fsize = ZSTD_findFrameCompressedSize(p + 1, len - 1);

        if (csize == ZSTD_CONTENTSIZE_ERROR || csize == ZSTD_CONTENTSIZE_UNKNOWN ||
            ZSTD_isError(fsize) || fsize != len - 1 || csize == 0) {
            ut_err_set(err, "gossip payload: not one zstd frame with its content size");
            return -EBADMSG;
        }
        if (csize > max_plain) {
            ut_err_set(err, "gossip payload: zstd frame inflates to %llu bytes (at most %zu)",
                       csize, max_plain);
            return -E2BIG;
        }
        plain_len = (size_t)csize;
        plain = malloc(plain_len);
        if (plain == NULL)
            return -ENOMEM;
        /* The declared size is the output capacity: a frame that inflates
         * to more fails here instead of growing anything. */
        if (ZSTD_decompress(plain, plain_len, p + 1, len - 1) != plain_len) {
            ut_err_set(err, "gossip payload: zstd frame does not inflate to its declared size");
            rc = -EBADMSG;
            goto out;
        }
        r.p = plain;
        m->compressed = 1;
    } else {
        ut_err_set(err, "gossip payload: unknown header byte 0x%02x", p[0]);
        return -EBADMSG;
    }
    r.len = plain_len;
    r.arena_cap = plain_len + 1;
    r.arena = malloc(r.arena_cap);
    if (r.arena == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    m->arena = r.arena;
    m->plain_len = plain_len;
    rc = decode_cbor(&r, m, err);
out:
    free(plain);
    if (rc < 0)
        gsp_msg_free(m);
    return rc;
}

void gsp_msg_free(struct gsp_msg *m)
{
    if (m == NULL)
        return;
    gsp_vv_free(&m->vv);
    gsp_vv_free(&m->through);
    gsp_vv_free(&m->through_from);
    free(m->entries);
    free(m->arena);
    memset(m, 0, sizeof(*m));
}
