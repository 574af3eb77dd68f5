/*
 * fuzz_gossip_payload.c - libFuzzer target for the gossip sync payload
 * decoder (lib/gossip/proto.c): every input goes through gsp_msg_decode
 * with the limits of a node with 64 KiB pages. A message that decodes is
 * encoded again (entries, vv, through, flags) and must decode to the same
 * thing: the encoder and the decoder agree on every limit.
 *
 * Seeds in fuzz/corpus/gossip_payload/: a request with a vv and entries, a
 * response with a vv hash, through ranges and "more", a zstd-compressed
 * page, a need_vv answer, the smallest valid message.
 */
#include "gossip/proto.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_PAGE 65536u

static void check_same(const struct gsp_msg *a, const struct gsp_msg *b)
{
    if (a->kind != b->kind || a->gen != b->gen || a->n_entries != b->n_entries ||
        a->has_vv != b->has_vv || a->has_vvh != b->has_vvh || a->has_pvh != b->has_pvh ||
        a->more != b->more || a->need_vv != b->need_vv || a->through.n != b->through.n ||
        (a->has_vv && a->vv.n != b->vv.n))
        abort();
    for (size_t i = 0; i < a->n_entries; i++) {
        const struct crdt_entry *x = &a->entries[i], *y = &b->entries[i];

        if (strcmp(x->tbl, y->tbl) || strcmp(x->key, y->key) || strcmp(x->origin, y->origin) ||
            x->hlc != y->hlc || x->seq != y->seq || x->deleted != y->deleted ||
            x->expires != y->expires || x->value_len != y->value_len ||
            (x->value_len && memcmp(x->value, y->value, x->value_len)))
            abort();
    }
    for (size_t i = 0; i < a->through.n; i++)
        if (strcmp(a->through.origin[i], b->through.origin[i]) ||
            a->through.seq[i] != b->through.seq[i] ||
            gsp_vv_get(&a->through_from, a->through.origin[i]) !=
                gsp_vv_get(&b->through_from, b->through.origin[i]))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gsp_msg m, again;
    struct gsp_msg_out mo = {0};
    struct ut_buf eb;
    uint8_t *out = NULL;
    size_t out_len = 0;

    if (gsp_msg_decode(data, size, gsp_max_plain(FZ_PAGE), &m, NULL) < 0)
        return 0;
    ut_buf_init(&eb, gsp_max_plain(FZ_PAGE));
    for (size_t i = 0; i < m.n_entries; i++)
        if (gsp_entry_encode(&eb, &m.entries[i]) < 0)
            abort(); /* the decoder let through what the encoder refuses */
    mo.kind = m.kind;
    mo.gen = m.gen;
    mo.vv = m.has_vv ? &m.vv : NULL;
    mo.vvh = m.has_vvh ? m.vvh : NULL;
    mo.pvh = m.has_pvh ? m.pvh : NULL;
    mo.entries = (const uint8_t *)eb.data;
    mo.entries_len = eb.len;
    mo.n_entries = m.n_entries;
    mo.through = &m.through;
    mo.through_from = &m.through_from;
    mo.more = m.more;
    mo.need_vv = m.need_vv;
    /* Decoded vv maps have no zero seqs, so the encoding is canonical. */
    if (gsp_msg_encode(&mo, size & 1 ? 0 : 4096, &out, &out_len, NULL, NULL) < 0 ||
        gsp_msg_decode(out, out_len, 2 * gsp_max_plain(FZ_PAGE), &again, NULL) < 0)
        abort();
    check_same(&m, &again);
    gsp_msg_free(&again);
    free(out);
    ut_buf_free(&eb);
    gsp_msg_free(&m);
    return 0;
}
