/*
 * engine_int.h - internals shared by the gossip engine's files (not a
 * public header):
 *   engine.c   life cycle, scheduling (due), one exchange (begin/finish/
 *              fail, handle), building pages and applying them
 *   peers.c    the peer table, gossip_peers persistence, seeding, URL
 *              resolution, SIGHUP peer lists
 *   members.c  signed cluster_nodes entries (members.h) and the engine's
 *              side of them: validating incoming entries, publishing ours,
 *              pinning learned nodes (allowed_node_ids), following rotations
 *   vouch.c    certified pinning (engine.h, "Vouching"): kem-info
 *              documents, introductions, the refusal log
 *   stats.c    counters, status JSON, Prometheus text
 *   contact.c  last contact, staleness after a long absence, re-sync
 *              passes, periodic GC (docs/replication.md section 8)
 *   proto.c    the CBOR payload (proto.h)
 *
 * Locking: one engine mutex (mu) guards the peer table, the member map,
 * the cached own version vector and every counter. It is never held
 * across store_write() (the writer thread runs the change callback, which
 * must not wait for mu) nor across sealing/opening envelopes or database
 * reads. The change callback only bumps an atomic epoch and calls the
 * driver's wake-up under wake_mu.
 */
#ifndef GSP_ENGINE_INT_H
#define GSP_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "gossip/engine.h"
#include "gossip/members.h"
#include "gossip/proto.h"

#define GSP_MAX_COUNT_TABLES 16
#define GSP_MAX_REASONS      32
#define GSP_REASON_LEN       24
#define GSP_MAX_PEERS        CRY_ENV_MAX_PEERS
#define GSP_KEM_INFO_MAX     (16u * 1024)
#define GSP_REFUSAL_LOG_MS   10000u /* responder refusals: one WARN line per reason per 10 s */

struct gsp_counters {
    uint64_t pushes, rounds, skips, exchanges, failures, served;
    uint64_t bytes_out, bytes_in, entries_sent, entries_received, entries_applied;
    uint64_t last_success_ms;
    size_t n_ref;
    struct {
        char reason[GSP_REASON_LEN];
        uint64_t n;
    } ref[GSP_MAX_REASONS];
};

/* Where a peer record comes from (bits of gsp_peer.src). A record with no
 * bit left is dropped (when no exchange is in flight). */
enum { PEER_CONFIGURED = 1, PEER_SEEDED = 2, PEER_LEARNED = 4, PEER_CERTIFIED = 8 };

struct gsp_peer {
    char node_id[CRY_ENV_ID_MAX + 1]; /* "" until the URL is resolved */
    char url[GSP_URL_MAX];            /* "" when unknown: it can only contact us */
    unsigned src;
    /* pinned keys (copies of what is in the keystore) */
    int pinned;
    uint8_t kem_pk[CRY_XWING_PK_BYTES];
    uint8_t sig_pub[CRY_P256_PUB_BYTES];
    /* the peer's version vector as last stated by it (or raised by what
     * our responses declared complete) */
    struct gsp_vv pvv;
    int pvv_known;
    uint8_t pvv_hash[GSP_VVH_BYTES];
    uint64_t peer_gen;
    /* the hash of what the peer believes our vv is (vv hash shortcut) */
    uint8_t acked_hash[GSP_VVH_BYTES];
    int acked;
    /* scheduling */
    int inflight;   /* an exchange we started is not finished yet */
    int more;       /* run another exchange as soon as allowed */
    int last_ok;    /* our last exchange with it succeeded */
    int first_done; /* first-contact line logged (this process) */
    int nokey_logged;
    int fail_logged;
    int introduce;   /* pinned on its certification: introduce us before the next exchange */
    int self_warned; /* "peer knows more of our own writes" logged */
    uint64_t next_round_ms, backoff_until_ms, backoff_ms, dirty_since_ms, resolve_next_ms;
    uint64_t seen_epoch; /* change epoch our last push to it started from */
    unsigned skips_in_row;
    struct gsp_counters c;
};

struct gsp_engine {
    pthread_mutex_t mu;
    struct store *store;
    struct crdt_replica *replica;
    const struct cry_identity *id;
    char self_id[CRY_ENV_ID_MAX + 1];
    char self_url[GSP_URL_MAX];
    uint8_t self_kem[CRY_XWING_PK_BYTES];
    uint8_t self_pub[CRY_P256_PUB_BYTES];
    char **allowed;
    size_t n_allowed;
    char **count_tables;
    size_t n_count;
    char log_module[32];
    char header_name[64];
    uint64_t interval_ms, push_delay_ms, retry_ms;
    size_t page_bytes, zstd_threshold, max_plain;
    unsigned skip_max;
    gsp_clock_fn clock;
    void *clock_arg;
    struct cry_keystore *ks;
    struct cry_env *env;

    struct gsp_peer **peers;
    size_t n_peers, cap_peers;
    struct gsp_member *members; /* newest accepted cluster_nodes entry per node */
    size_t n_members, cap_members;

    /* our own version vector, cached per crdt_generation() */
    struct gsp_vv self_vv;
    uint64_t self_vv_gen;
    int self_vv_ok;
    uint8_t self_vv_hash[GSP_VVH_BYTES];

    atomic_uint_fast64_t change_epoch;
    /* Time of the first change not yet seen by due() (0: none): a push is
     * due push_delay_ms after the change, not after due() noticed it. */
    atomic_uint_fast64_t pending_since_ms;
    pthread_mutex_t wake_mu;
    void (*wake)(void *arg);
    void *wake_arg;

    struct gsp_counters total;
    uint64_t refusal_log_ms[GSP_MAX_REASONS];
    char refusal_log_reason[GSP_MAX_REASONS][GSP_REASON_LEN];

    /* contact.c (under mu unless noted): when we last completed an
     * exchange with anyone; whether we were out of contact for longer
     * than the tombstone TTL ("armed": peers' GC marks decide whether we
     * must re-sync); the re-sync pass, if one is open. */
    uint64_t ttl_ms, margin_ms, gc_every_ms, gc_next_ms;
    uint64_t last_contact_ms; /* 0: never (a new node) */
    uint64_t lc_saved_ms;     /* the value last persisted */
    uint64_t lc_saved_at_ms;  /* when */
    int state_ready;          /* gossip_state loaded: persist on free */
    int armed;
    uint64_t armed_lc_ms;                 /* last contact when armed; 0: a new node's first sync */
    struct gsp_vv ref_vv;                 /* our vv when armed (before any exchange since) */
    int pass;                             /* a re-sync pass is open */
    int pass_busy;                        /* a thread is writing a transition */
    char pass_source[CRY_ENV_ID_MAX + 1]; /* "" : any eligible peer */
    struct gsp_vv pass_vv;                /* what the source declared complete this pass */
    int pass_fresh, pass_moved; /* pass (re)started / pass_vv raised since the last look */
    uint64_t resyncs, resync_dropped, resync_yields;

    /* vouching (read-only after gsp_engine_new) */
    char *vouch_cert; /* ours, or NULL */
    gsp_vouch_fn vouch_verify;
    void *vouch_arg;
    char *self_entry; /* our cluster_nodes value as held, or NULL */
    size_t self_entry_len;
    /* node ids whose refusal was logged (bits VOUCH_LOGGED_*), under mu */
    struct gsp_vouch_logged *vlogged;
    size_t n_vlogged, cap_vlogged;
};

enum { VOUCH_LOGGED_UNCERTIFIED = 1, VOUCH_LOGGED_NOT_ALLOWED = 2 };
struct gsp_vouch_logged {
    char node_id[CRY_ENV_ID_MAX + 1];
    unsigned kinds;
};

uint64_t gsp_now_(struct gsp_engine *e);
/* The label used in log lines: the URL when known, else the node id. */
const char *gsp_peer_label_(const struct gsp_peer *p);

/* ---- peers.c (callers hold mu unless noted) ---- */

struct gsp_peer *gsp_peer_find_(struct gsp_engine *e, const char *node_id);
struct gsp_peer *gsp_peer_find_url_(struct gsp_engine *e, const char *url);
/* A new empty record (not pinned); NULL when the table is full. */
struct gsp_peer *gsp_peer_add_(struct gsp_engine *e);
/* Drops p when nothing refers to it any more (src 0, nothing in flight). */
void gsp_peer_gc_(struct gsp_engine *e, struct gsp_peer *p);
void gsp_peers_free_(struct gsp_engine *e);
/* 1 when allowed_node_ids lists id; when it is empty: `empty`. */
int gsp_allowed_(const struct gsp_engine *e, const char *id, int empty);
/* Pins keys for p (keystore + copies); caller holds mu. */
int gsp_peer_pin_(struct gsp_engine *e, struct gsp_peer *p, const uint8_t *kem,
                  const uint8_t *sig_pub, struct ut_err *err);
/* Stores (or replaces) a row in gossip_peers (no lock held). cert NULL:
 * a seed (replaces any row); else a certified pin, which never replaces a
 * seed row. */
int gsp_peers_persist_(struct gsp_engine *e, const char *node_id, const char *url,
                       const uint8_t *kem, const uint8_t *sig_pub, const char *cert,
                       struct ut_err *err);
/* Calls the driver's wake-up (no lock held). */
void gsp_wake_(struct gsp_engine *e);
/* Normalises a URL (no trailing '/') into out; -EINVAL when unusable. */
int gsp_url_norm_(const char *url, char out[GSP_URL_MAX]);
/* Creates gossip_peers if needed and pins every stored seed (no lock). */
int gsp_peers_load_(struct gsp_engine *e, struct ut_err *err);
/* Adds the configured URLs (no lock: called from gsp_engine_new). */
int gsp_peers_configure_(struct gsp_engine *e, const char *const *urls, size_t n,
                         struct ut_err *err);

/* ---- membership (members.c) ---- */

/* The key we trust for node id: its pin, else its accepted entry. NULL
 * when none. Caller holds mu. */
const uint8_t *gsp_known_key_(struct gsp_engine *e, const char *node_id);
struct gsp_member *gsp_member_find_(struct gsp_engine *e, const char *node_id);
/* Records an accepted entry in the member map (caller holds mu). */
int gsp_member_store_(struct gsp_engine *e, const struct gsp_member *m);
/* Acts on accepted entries after they were committed: pins learned nodes
 * (allowed_node_ids), follows rotations of pinned ones, learns URLs.
 * Takes mu itself; persists rotated seeds with store_write. */
void gsp_members_adopt_(struct gsp_engine *e, const struct gsp_member *ms, size_t n);
/* Loads cluster_nodes at start and publishes our own entry when it
 * changed (no lock held; called from gsp_engine_new). */
int gsp_members_init_(struct gsp_engine *e, struct ut_err *err);
/* Validates the cluster_nodes entries of an incoming message: refuse[i]
 * is set for an entry that must not be applied; accepted ones are copied
 * to *acc (malloc'd, *n_acc). Takes mu itself. Returns the number refused. */
size_t gsp_members_validate_(struct gsp_engine *e, const struct gsp_msg *m, const char *from,
                             uint8_t *refuse, struct gsp_member **acc, size_t *n_acc);

/* ---- vouching (vouch.c) ---- */

/* 1 when s is a usable certification string (1..GSP_VOUCH_MAX printable
 * ASCII characters, no space, '"' or '\\'). */
int gsp_vouch_valid_(const char *s);
/* Checks cert (NULL or "": none) for node_id's keys with the verifier
 * (no lock held). 0 certified, -ENOTSUP without a verifier, else negative
 * with the reason in err. */
int gsp_vouch_check_(struct gsp_engine *e, const char *node_id, const uint8_t *kem,
                     const uint8_t *sig_pub, const char *cert, struct ut_err *err);
/* Counts a refusal ("uncertified" or "not_allowed") on node_id's record
 * (if any) and the totals, and logs it at WARN once per node id and kind
 * per start. label: the URL when known, else "" or NULL (the node id is
 * shown). Takes mu itself. */
void gsp_vouch_refused_(struct gsp_engine *e, const char *node_id, const char *label, unsigned kind,
                        const char *why);

/* ---- contact.c (no lock held unless noted) ---- */

/* Pseudo-origins in a stated version vector: never node ids (a replica
 * origin cannot start with '~'). */
#define GSP_VV_GC_MARK "~gc"     /* the sender's crdt_gc_mark (unix ms) */
#define GSP_VV_RESYNC  "~resync" /* 1: the sender is re-syncing */

/* Loads gossip_state (creating it), decides whether this start is after a
 * long absence or a new node's first sync (from gsp_engine_new). */
int gsp_contact_init_(struct gsp_engine *e, struct ut_err *err);
/* Persists the last contact (gsp_engine_free). */
void gsp_contact_fini_(struct gsp_engine *e);
/* What we state as our vv to peer: real (our vv), or the pass vector when
 * peer is the source of our re-sync, plus the pseudo-origins. */
int gsp_stated_vv_(struct gsp_engine *e, const char *peer, const struct gsp_vv *real,
                   struct gsp_vv *out);
/* Before applying a message from peer, whose stated vv is pv (NULL:
 * unknown): arms the staleness check when the last contact is older than
 * the TTL, opens a re-sync pass with peer as the source when it purged
 * what we may have missed (WARN line). Returns the apply flags for its
 * entries: CRDT_APPLY_SOURCE from the source of our pass, else
 * CRDT_APPLY_UNSEEN while armed (catching up) from a peer that is not
 * re-syncing, else 0. */
unsigned gsp_contact_pre_(struct gsp_engine *e, const char *peer, const struct gsp_vv *pv);
/* Raises the pass vector by the through ranges of a message the source
 * sent (after it was applied); stop: origins clamped for clock skew. */
void gsp_pass_raise_(struct gsp_engine *e, const char *peer, const struct gsp_msg *m,
                     const struct gsp_vv *stop);
/* After a successful exchange with peer, whose stated vv is pv: switches,
 * yields or completes a re-sync pass, disarms, ends a new node's first
 * sync, records the contact. requester: we asked (then resp_more/skew
 * describe the response; a pass completes only there). */
void gsp_contact_post_(struct gsp_engine *e, const char *peer, const struct gsp_vv *pv,
                       int requester, int resp_more, size_t skew);
/* 1 when peer is the source of an open pass (caller holds mu). */
int gsp_pass_source_locked_(const struct gsp_engine *e, const char *peer);
/* The driver's periodic work: GC every crdt_gc_interval_ms (logged
 * "gc purged=N": INFO when N > 0, else DEBUG), arming the staleness check
 * while out of contact, persisting the last contact. Returns when to call
 * again (unix ms, engine clock). Any thread. */
uint64_t gsp_engine_maintain(struct gsp_engine *e);
/* 1 when a[o] <= b[o] for every real (non-pseudo) origin of a. */
int gsp_vv_le_real_(const struct gsp_vv *a, const struct gsp_vv *b);

/* ---- stats.c ---- */

void gsp_count_refusal_(struct gsp_counters *c, const char *reason);
/* Counts on the peer (if any) and on the totals (caller holds mu). */
void gsp_refuse_(struct gsp_engine *e, struct gsp_peer *p, const char *reason);

/* members.c: the base64url string field name of o, exactly n bytes, into
 * out (kem-info documents and cluster_nodes entries). 0 or -EINVAL. */
int gsp_json_b64_(json_t *o, const char *name, uint8_t *out, size_t n);

#endif
