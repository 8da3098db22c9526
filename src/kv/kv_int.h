/* Internals of the kv state machine, shared by the files of src/kv/: the
 * entry layout, the table state, the snapshot cursor, the idempotency table,
 * struct kv, the snapshot stream's fixed sizes, and the functions that cross
 * files. Contracts of the public API in kv.h, formats in docs/KV.md.
 *
 * Files: kv.c (hashing, the table with incremental rehash, lifecycle and
 * reads), kv_expiry.c (the expiry heap), kv_idem.c (idempotency records),
 * kv_apply.c (applying commands), kv_snapshot.c (writing a snapshot, with
 * copy-on-write under an open cursor), kv_restore.c (streaming restore),
 * kv_index.c (the ordered index, kv_index.h), kv_list.c (kv_list.h).
 */
#ifndef ST_KV_INT_H
#define ST_KV_INT_H

#include "kv/kv.h"
#include "kv/hashval.h"
#include "kv/kv_index.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/assert.h"

#define KV_BUCKETS_DEFAULT 16u
#define KV_REHASH_PER_OP_DEFAULT 4u
#define KV_HEAP_NONE UINT32_MAX
/* A restore presizes its table to the key count, up to this many buckets;
 * larger tables grow by the normal incremental path. */
#define KV_RESTORE_PRESIZE_BUCKETS_MAX (1u << 24)

/* One allocation per key: a 27-byte header, the key, the value, and, only for
 * a key with an expiry, a 12-byte trailer (expiry time in ms, position in the
 * expiry heap; native byte order, unaligned). With the expiry out of line a
 * short key and a 100-byte value take glibc's 144-byte chunk instead of 160:
 * a tenth of a node's memory at 1M keys (docs/KV.md). Never use sizeof() of
 * this struct (it is padded); ENTRY_HDR is where the bytes start. */
struct kv_entry {
    struct kv_entry *next; /* bucket chain */
    uint64_t version;      /* raft index of the last write */
    uint32_t hash;         /* low 32 bits of the keyed hash */
    uint32_t value_len;
    uint16_t key_len;
    uint8_t flags; /* ENTRY_F_*: the expiry trailer follows the value; the value type */
    uint8_t data[];
};
#define ENTRY_F_TTL 1u  /* the expiry trailer follows the value */
#define ENTRY_F_HASH 2u /* the value is an encoded hash (kv/hashval.h), not a string */
#define ENTRY_HDR offsetof(struct kv_entry, data)
#define ENTRY_TTL_BYTES 12u
_Static_assert(offsetof(struct kv_entry, data) == 27, "kv_entry header is 27 bytes");
_Static_assert(KV_KEY_BYTES_HARD_MAX <= UINT16_MAX, "key_len is 16 bits");

static inline size_t entry_size(size_t key_len, size_t value_len, int with_ttl)
{
    return ENTRY_HDR + key_len + value_len + (with_ttl ? ENTRY_TTL_BYTES : 0);
}

/* An allocation of `usable` bytes is kept for an entry of `need` bytes when
 * it fits and wastes at most half. Every live entry satisfies it. */
static inline int kv_entry_fits(size_t usable, size_t need)
{
    return need <= usable && (need >= usable / 2 || usable <= 256);
}

static inline uint8_t *entry_trailer(const struct kv_entry *e)
{
    return (uint8_t *)(uintptr_t)(e->data + e->key_len + e->value_len);
}

/* 0 = never. */
static inline uint64_t entry_expire(const struct kv_entry *e)
{
    uint64_t v = 0;
    if (e->flags & ENTRY_F_TTL) memcpy(&v, entry_trailer(e), sizeof(v));
    return v;
}

/* KV_HEAP_NONE when e has no expiry or is out of the heap. */
static inline uint32_t entry_heap_idx(const struct kv_entry *e)
{
    uint32_t v = KV_HEAP_NONE;
    if (e->flags & ENTRY_F_TTL) memcpy(&v, entry_trailer(e) + 8, sizeof(v));
    return v;
}

static inline void entry_set_heap_idx(struct kv_entry *e, uint32_t i)
{
    ST_ASSERT(e->flags & ENTRY_F_TTL);
    memcpy(entry_trailer(e) + 8, &i, sizeof(i));
}

/* enum kv_value_type of e. */
static inline uint8_t entry_type(const struct kv_entry *e)
{
    return (e->flags & ENTRY_F_HASH) ? KV_TYPE_HASH : KV_TYPE_STRING;
}

/* Sets e's value type (the other flags stay). */
static inline void entry_set_type(struct kv_entry *e, uint8_t type)
{
    e->flags = (uint8_t)((e->flags & ~ENTRY_F_HASH) | (type == KV_TYPE_HASH ? ENTRY_F_HASH : 0));
}

/* Sets the expiry (0 = none) once key_len and value_len are final; the
 * allocation must have room for the trailer when expire != 0. The type
 * flag stays as it is. */
static inline void entry_set_expiry(struct kv_entry *e, uint64_t expire, uint32_t heap_idx)
{
    e->flags = (uint8_t)((e->flags & ~ENTRY_F_TTL) | (expire != 0 ? ENTRY_F_TTL : 0));
    if (!expire) return;
    memcpy(entry_trailer(e), &expire, sizeof(expire));
    entry_set_heap_idx(e, heap_idx);
}

struct kv_table {
    struct kv_entry **buckets;
    uint64_t size; /* power of two, or 0 when unused */
    uint64_t used;
};

/* Everything a restore replaces at once. */
struct kv_state {
    struct kv_table t[2]; /* t[1] is in use only while rehashing */
    uint64_t rehash_idx;  /* next t[0] bucket to migrate */
    int rehashing;
    struct kv_entry **heap; /* min-heap by (expiry, key) */
    uint32_t heap_len;
    uint32_t heap_cap;
    uint64_t entry_bytes;        /* sum of malloc_usable_size of entries */
    uint64_t used_bytes;         /* sum of kv_used_bytes_of() of entries (deterministic) */
    uint64_t hash_keys;          /* entries of type hash (a snapshot of any is version 4) */
    const struct kv_config *cfg; /* the owner's configuration (allocation seam) */
    /* The open kv_snapshot_begin cursor, NULL if none (then every path below
     * behaves as without snapshots). While set: no rehash step, no resize,
     * and an entry of the snapshot's state that is freed or rewritten before
     * the cursor emitted its bucket is handed to the cursor instead
     * (kv_entry_release, copy-on-write). */
    struct kv_snapshot_cursor *cow;
    /* kv_index: every entry of the tables, by key (kv_index.h). Inserted by
     * kv_state_link (after kv_index_reserve), removed by kv_state_remove,
     * swapped by apply_put when an entry is reallocated. */
    struct kv_index idx;
    /* Change events (kv.h): set by kv_apply for the command it applies
     * (ev_index 0 outside kv_apply: no events, e.g. while restoring). A
     * removal reports ev_reason (KV_EVENT_DELETE, EXPIRE or EVICT), or
     * KV_EVENT_EXPIRE for an entry already expired at ev_clock_ms. */
    uint64_t ev_index;
    uint64_t ev_clock_ms;
    enum kv_event_type ev_reason;
    uint8_t ev_op; /* kv_event.op of the changes being made */
};

struct snap_writer {
    uint8_t *buf;
    size_t len;
    uint32_t crc;    /* of the checksummed bytes up to buf[crc_done] */
    size_t crc_done; /* buf[crc_done, len) is not in crc yet (sw_crc) */
    kv_write_cb cb;
    void *ctx;
};

/* Walk phases: the tables (buckets emitted whole, so "visited" is exactly
 * "(table, bucket) before the cursor position"), then the entries retained
 * for the snapshot, then the trailer. */
enum cursor_phase {
    CUR_TABLE0 = 0, /* == table index */
    CUR_TABLE1 = 1,
    CUR_RETAINED = 2,
    CUR_TRAILER = 3,
};

struct kv_snapshot_cursor {
    const struct kv *kv;
    struct kv *registered; /* kv_snapshot_begin: counts in snapshots_open, kv->st.cow */
    struct snap_writer w;
    int err;
    int done;
    int table;       /* enum cursor_phase */
    uint64_t bucket; /* next bucket of st->t[table] to emit */
    /* The snapshot's state S is the kv at begin: entries with a higher
     * version were written after it and are skipped. */
    uint64_t version_max;
    /* Entries of S unlinked (deleted, purged, rewritten) from buckets not yet
     * emitted, chained by ->next; owned here, emitted after the tables, freed
     * when the cursor is done, fails or ends. */
    struct kv_entry *retained;
    uint64_t retained_n;
    uint64_t retained_bytes;      /* malloc_usable_size sum (not in entry_bytes) */
    const struct kv_entry *entry; /* CUR_RETAINED: next one to emit */
    uint64_t keys;                /* in S: the live count at begin */
    uint64_t written;
    /* Version 3, 4: the auth section of S, encoded at begin (the table is
     * small and bounded), emitted after the keys; NULL for version 2 (and
     * for 4 without users: then an empty section is emitted). */
    uint8_t *auth_sec;
    size_t auth_len;
    uint32_t version; /* the stream's format version */
    /* Version 5: the session section of S, likewise (kv_session.c). */
    uint8_t *sess_sec;
    size_t sess_len;
};

/* Idempotency records (kv.h, "Idempotency"): one allocation per record,
 * in a chained hash table by key and in a FIFO by insertion (= apply)
 * order, which the count bound trims from its old end. */
struct idem_rec {
    struct idem_rec *hnext;         /* bucket chain */
    struct idem_rec *older, *newer; /* FIFO */
    uint64_t hash;
    uint64_t expire_at_ms; /* log clock at insert + the command's ttl */
    uint64_t index;        /* the entry that recorded it */
    uint64_t version;      /* its kv_result.version */
    uint64_t req_digest;   /* kv_request_digest() of that command */
    uint8_t type, status, created, key_len;
    uint8_t key[];
};

struct idem_table {
    struct idem_rec **buckets;
    uint64_t size; /* power of two, or 0 before the first record */
    uint64_t count;
    struct idem_rec *oldest, *newest;
    uint64_t bytes; /* malloc_usable_size of the records */
};

/* The auth table (kv_auth.c): users sorted by name, at most
 * KV_AUTH_USERS_MAX. generation is local (kv_auth_generation). */
struct kv_auth_user;
struct kv_auth_table {
    struct kv_auth_user **users;
    uint32_t n, cap;
    uint64_t generation;
};

/* The session table (kv_session.c, kv_session.h): sessions by id. */
struct kv_session;
struct kv_session_table {
    struct kv_session **s;
    uint32_t n, cap;
};

/* TXN results (kv_txn.c): reused from apply to apply, so a TXN allocates
 * only when it needs more than any before it. res[0..res_n) and the
 * bytes they point into are valid until the next kv_apply. scratch holds
 * a value being built (APPEND, INCRBY, ...) or moved (RENAME, EXPIRE). */
struct kv_txn_buf {
    struct kv_txn_res *res;
    uint32_t res_n, res_cap;
    uint8_t *bytes;
    size_t bytes_len, bytes_cap;
    uint8_t *scratch;
    size_t scratch_cap;
};

struct kv {
    struct kv_config cfg;
    struct kv_txn_buf txn;
    struct kv_state st;
    struct idem_table idem;
    struct kv_auth_table auth;    /* kv_auth.c */
    struct kv_session_table sess; /* kv_session.c */
    /* The log clock: the largest command timestamp applied (or restored).
     * Monotonic, and equal on every replica at an index. */
    uint64_t clock_ms;
    uint64_t applied_index;
    int restoring;
    int snapshots_open; /* cursors from kv_snapshot_begin (at most one) */
};
/* ---------- helpers ---------- */

static inline void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline int entry_key_eq(const struct kv_entry *e, uint32_t h, const void *key, size_t len)
{
    return e->hash == h && e->key_len == len && memcmp(e->data, key, len) == 0;
}

static inline int entry_expired(const struct kv_entry *e, uint64_t now_ms)
{
    uint64_t x = entry_expire(e);
    return x != 0 && x <= now_ms;
}

static inline int64_t entry_cmp(const struct kv_entry *a, const struct kv_entry *b)
{
    uint64_t xa = entry_expire(a), xb = entry_expire(b);
    if (xa != xb) return xa < xb ? -1 : 1;
    size_t n = ST_MIN(a->key_len, b->key_len);
    int c = memcmp(a->data, b->data, n);
    if (c != 0) return c;
    return (int64_t)a->key_len - (int64_t)b->key_len;
}

/* ---------- allocation (with the test seam) ---------- */

static inline int alloc_denied(const struct kv_config *cfg)
{
    return cfg->alloc_fail_cb && cfg->alloc_fail_cb(cfg->alloc_fail_ctx);
}

static inline void *kv_malloc(const struct kv_config *cfg, size_t n)
{
    return alloc_denied(cfg) ? NULL : malloc(n);
}

static inline void *kv_calloc(const struct kv_config *cfg, size_t n, size_t size)
{
    return alloc_denied(cfg) ? NULL : calloc(n, size);
}

static inline void *kv_realloc(const struct kv_config *cfg, void *p, size_t n)
{
    return alloc_denied(cfg) ? NULL : realloc(p, n);
}

/* The first 8 bytes of a snapshot stream (kv_snapshot.c). */
extern const uint8_t kv_snap_magic[8];
#define SNAP_VERSION_1 1 /* read only: no log clock, no idempotency records */
#define SNAP_VERSION_2 2 /* written when the auth table is empty */
#define SNAP_VERSION_3 3 /* written when users exist but no hash or session */
#define SNAP_VERSION_AUTH SNAP_VERSION_3
#define SNAP_AUTH_HEADER_BYTES 8    /* version 3: user count, reserved */
#define SNAP_AUTH_RECORD_BYTES 12   /* version 3: a user's version and record length */
#define SNAP_FIXED_BYTES 36         /* magic, version, flags, applied index, key count, meta_len */
#define SNAP_FIXED2_BYTES 16        /* version 2: log clock, idempotency record count */
#define SNAP_RECORD_HEADER_BYTES 28 /* lengths, version, expiry, CRC of those 24 bytes */
#define SNAP_IDEM_HEADER_BYTES 44   /* fixed fields, CRC of the first 40 bytes */
#define SNAP_TRAILER_BYTES 12
#define SNAP_VERSION_4 4            /* written when a hash exists but no session */
#define SNAP_SESSION_HEADER_BYTES 8 /* version 5: session count, reserved */
_Static_assert(KV_SNAPSHOT_VERSION == 5, "docs/KV.md describes version 5");

/* ---------- functions that cross files ----------
 * All run on the owner's thread, like the public API (kv.h); none allocates
 * unless it says so. */

/* kv.c: hashing */
uint64_t kv_load_le64(const uint8_t *p); /* little-endian load, any alignment */
/* SipHash-1-3 of in[0, len) under the key (k0, k1). */
uint64_t kv_siphash13(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len);
/* The table hash of a key: low 32 bits of SipHash keyed by cfg.hash_seed. */
uint32_t kv_hash(const struct kv *kv, const void *key, size_t len);
/* Smallest power of two >= v (v >= 1). */
uint64_t kv_next_pow2(uint64_t v);

/* kv.c: change events. Reports `type` for e (its value with a PUT) to
 * st->cfg->event_cb, if any, when a command is being applied (ev_index). */
void kv_event_emit(const struct kv_state *st, enum kv_event_type type, const struct kv_entry *e);

/* kv.c: the table */
/* Keys in the table (both tables while rehashing). */
uint64_t kv_state_keys(const struct kv_state *st);
/* A snapshot cursor (st->cow) addresses buckets by (table, index): while
 * one is open no entry moves between buckets and the tables stay as they are
 * (kv_state_rehash_step, kv_state_rehash_finish_if_done and kv_maybe_resize
 * do nothing); chains may grow meanwhile, the rehash resumes once the cursor
 * is done. */
void kv_state_rehash_finish_if_done(struct kv_state *st);
/* Migrates up to n non-empty buckets (visiting at most 10n empty ones). */
void kv_state_rehash_step(struct kv_state *st, uint32_t n);
/* Grow at load 1, shrink below load 1/8 (to load ~1/2). Called before inserts
 * and after removals; never while a rehash runs. Failure to grow is not an
 * error (chains get longer); failure to allocate a smaller table neither. */
void kv_maybe_resize(struct kv *kv, int allow_shrink);
/* Finds key; returns the entry and the link pointing to it, or NULL. */
struct kv_entry *kv_state_find(const struct kv_state *st, uint32_t h, const void *key, size_t len,
                               struct kv_entry ***link_out, int *table_out);
/* Links e (not in the table, its key absent) into the bucket of e->hash and
 * into the ordered index (kv_index_reserve(&st->idx) must have succeeded)
 * and counts its bytes; the caller pushes it on the expiry heap if it has
 * one. */
void kv_state_link(struct kv_state *st, struct kv_entry *e);
/* Frees e (out of the table and the heap) and uncounts its bytes. */
void kv_entry_free(struct kv_state *st, struct kv_entry *e);
/* e, found in table t, has just left the table and the expiry heap (e->next
 * may be reused). Frees it, unless the open snapshot cursor still has to
 * emit it: then the cursor takes it (copy-on-write). */
void kv_entry_release(struct kv_state *st, struct kv_entry *e, int t);
/* Unlinks e (found with link in table t) and releases it. */
void kv_state_remove(struct kv_state *st, struct kv_entry *e, struct kv_entry **link, int t);
/* Frees every entry, the tables and the heap; st is unusable until
 * kv_state_init(). */
void kv_state_free(struct kv_state *st);
/* An empty state with `buckets` buckets (a power of two); ST_ENOMEM with
 * nothing allocated. */
int kv_state_init(struct kv_state *st, const struct kv_config *cfg, uint64_t buckets);

/* kv_expiry.c: the expiry heap (st->heap, by entry_cmp) */
void kv_heap_up(struct kv_state *st, uint32_t i);   /* restores order above i */
void kv_heap_down(struct kv_state *st, uint32_t i); /* restores order below i */
/* Room for one more heap slot: 0 or ST_ENOMEM (heap unchanged). */
int kv_heap_reserve(struct kv_state *st);
/* Requires kv_heap_reserve() to have succeeded. */
void kv_heap_push(struct kv_state *st, struct kv_entry *e);
/* Removes e (in the heap) and marks it KV_HEAP_NONE. */
void kv_heap_remove(struct kv_state *st, struct kv_entry *e);

/* kv_idem.c: idempotency records */
uint64_t kv_idem_hash(const struct kv *kv, const void *key, size_t len);
/* What a retry must repeat for the recorded result to be its answer: the
 * type, condition and payload, not the request id or the timestamp. */
uint64_t kv_request_digest(const struct kv_command *c);
/* The record of key with hash h, or NULL. */
struct idem_rec *kv_idem_find(const struct idem_table *tb, uint64_t h, const void *key, size_t len);
/* Inserts r (owned by tb from now on) as the newest; requires
 * kv_idem_reserve() to have succeeded. */
void kv_idem_link(struct idem_table *tb, struct idem_rec *r);
/* Unlinks and frees r. */
void kv_idem_drop(struct idem_table *tb, struct idem_rec *r);
/* Room for one more record: the first bucket array is required (ST_ENOMEM),
 * growing it later is optional (chains grow instead). Rehashing is O(count),
 * which the count bound keeps small. */
int kv_idem_reserve(const struct kv_config *cfg, struct idem_table *tb);
/* Drops the oldest records beyond keys_max, then up to
 * IDEM_AGE_DROPS_PER_APPLY of the oldest ones whose age ran out at clock.
 * Both depend only on the log: deterministic. */
void kv_idem_trim(struct idem_table *tb, uint64_t keys_max, uint64_t clock_ms);
/* Frees every record and the buckets; tb is empty (all zero) afterwards. */
void kv_idem_free(struct idem_table *tb);
/* Digest of a record's replicated fields (for kv_digest). */
uint64_t kv_idem_rec_digest(const struct idem_rec *r);

/* kv_auth.c: the auth table (kv_auth.h) */
/* Applies KV_CMD_AUTH_USER_PUT or _DELETE (decoded c) at index into *r.
 * Returns 0, ST_EPROTO (a malformed record: nothing changed) or ST_ENOMEM
 * (nothing changed). */
int kv_auth_apply(struct kv *kv, uint64_t index, const struct kv_command *c, struct kv_result *r);
/* Frees every user; the generation survives (it only grows). */
void kv_auth_free(struct kv_auth_table *t);
/* Order-independent digest of the table's replicated fields. */
uint64_t kv_auth_digest(const struct kv *kv);
/* The snapshot section of the table (docs/KV.md), malloc'd into *out
 * (caller frees). 0 or ST_ENOMEM. */
int kv_auth_section_encode(const struct kv *kv, uint8_t **out, size_t *out_len);
/* Appends a record read from a snapshot section to t (records come in
 * strictly increasing name order). 0, ST_ECORRUPT or ST_ENOMEM. */
int kv_auth_restore_record(const struct kv_config *cfg, struct kv_auth_table *t, uint64_t version,
                           uint64_t applied_index, const uint8_t *rec, size_t len);

/* kv_session.c: the session table (kv_session.h) */
/* Applies SESSION_CREATE, SESSION_DESTROY or PUT_SESSION (decoded c;
 * c->timestamp_ms is the log clock) at index into *r. Returns 0 or
 * ST_ENOMEM (nothing changed). */
int kv_session_apply(struct kv *kv, uint64_t index, const struct kv_command *c,
                     struct kv_result *r);
/* Frees every session; t is empty (all zero) afterwards. */
void kv_session_free(struct kv_session_table *t);
/* Order-independent digest of the table, 0 when empty. */
uint64_t kv_session_digest(const struct kv *kv);
/* The snapshot section (docs/KV.md), malloc'd into *out (caller frees).
 * 0 or ST_ENOMEM. */
int kv_session_section_encode(const struct kv *kv, uint8_t **out, size_t *out_len);
/* Restore: appends the session of a record's fixed bytes
 * (KV_SESSION_RECORD_FIXED_BYTES) to t, with room for its attachments,
 * which kv_session_restore_key fills one by one (i = 0..count); the name
 * goes into the returned session's name (the last of t). 0,
 * ST_ECORRUPT or ST_ENOMEM. */
int kv_session_restore_begin(const struct kv_config *cfg, struct kv_session_table *t,
                             uint64_t applied_index, const uint8_t fixed[24]);
int kv_session_restore_key(const struct kv_config *cfg, struct kv_session_table *t, uint32_t i,
                           uint64_t applied_index, uint64_t version, uint32_t key_len,
                           uint8_t **key_out);

/* kv_apply.c: single commands, also the building blocks of a TXN. A PUT's
 * value must not point into the kv's own entries. */
int kv_apply_put(struct kv *kv, uint64_t index, const struct kv_command *c, struct kv_result *r);
void kv_apply_delete(struct kv *kv, uint64_t index, const struct kv_command *c,
                     struct kv_result *r);

/* kv_txn.c: applies a decoded TXN (c->timestamp_ms is the log clock).
 * Returns 0, or ST_ENOMEM: before the first op nothing changed; from an op
 * on, the ops before it stay applied (the node stops on ST_ENOMEM). */
int kv_apply_txn(struct kv *kv, uint64_t index, const struct kv_command *c, struct kv_result *r);
/* Frees the TXN buffers. */
void kv_txn_buf_free(struct kv_txn_buf *tb);

/* kv_snapshot.c: copy-on-write under an open cursor */
/* 1 if e (in table t) belongs to the snapshot's state and sits in a bucket
 * the cursor has not emitted yet. Entries never move between buckets while
 * a cursor is open (rehash paused), so e's bucket is where it was at begin. */
int kv_cow_needs(const struct kv_state *st, const struct kv_entry *e, int t);
/* Hands e (unlinked, out of the heap) to the cursor. */
void kv_cow_retain(struct kv_state *st, struct kv_entry *e);

#endif
