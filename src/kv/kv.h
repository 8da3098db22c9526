/* kv: the replicated state machine of stcache.
 *
 * A hash table of binary-safe keys and values. Each key carries a version (the
 * raft index of the entry that last wrote it: the HTTP ETag) and an optional
 * absolute expiry time in ms (0 = none). The table resizes by incremental
 * rehashing (two tables; every mutation migrates a few buckets) so no single
 * operation stalls on a resize. An expiry heap ordered by (expiry, key) makes
 * PURGE_EXPIRED cost O(purged * log n) and deterministic on every replica.
 *
 * Determinism: the same sequence of kv_apply() calls gives the same logical
 * state (keys, values, versions, expiries) and the same results on every
 * replica built with the same kv_config (hash_seed, buckets_initial,
 * rehash_buckets_per_op; keep them equal cluster-wide). No local clock,
 * configuration or randomness enters the state: time comes from the command
 * timestamps in the log. The table layout, hence the record order of a
 * snapshot, also depends on local events (a snapshot cursor pauses the
 * rehash; a replica restored from a snapshot starts from a presized table);
 * kv_digest() compares states independently of order.
 *
 * TTL semantics (docs/KV.md):
 *   - PUT with ttl_ms > 0 sets expiry = command timestamp + ttl_ms.
 *   - At apply, a key whose expiry <= the command's timestamp is treated as
 *     absent by conditions and DELETE (and is removed when touched).
 *   - PURGE_EXPIRED(now) deletes keys whose expiry <= now, the smallest
 *     (expiry, key) first, at most keys_max of them.
 *   - Reads (kv_get) treat a key whose expiry <= the reader's now_ms as absent,
 *     even before the purge that deletes it has applied.
 *
 * Idempotency (docs/KV.md): a PUT or DELETE may carry an idempotency key.
 * The first command with a key is applied and its result (status, version,
 * created, index) recorded under the key; a later command with the same key
 * is not applied: it gets the recorded result (replayed = 1), or
 * KV_STATUS_IDEMPOTENCY_MISMATCH if its type, condition or payload differ.
 * Records live until the log clock passes insert clock + the command's
 * idem_ttl_ms, and the table keeps at most the inserting command's
 * idem_keys_max records (the oldest go first). Both bounds come from the
 * log, so every replica keeps the same records.
 *
 * The log clock (kv_clock_ms) is the largest command timestamp applied:
 * monotonic, equal on every replica at an index, carried by snapshots.
 *
 * Threading: none. A struct kv is used from one thread. */
#ifndef ST_KV_KV_H
#define ST_KV_KV_H

#include <stddef.h>
#include <stdint.h>

#include "kv/command.h"

struct kv;

/* ---- change events (a side output: never part of the replicated state) ----
 * Every change kv_apply makes to a key is reported, in apply order, to the
 * configuration's event_cb, on the kv's thread, during kv_apply: a put (key,
 * new value, version = the entry's index, expiry), a delete, an expiry (a
 * purge, or a dead key removed or overwritten by a later command) and an
 * eviction. One command may report several events, all with its index as
 * version, in the order it made the changes. Nothing is reported by a
 * restore or for commands that change nothing (a failed condition). The
 * pointers are valid during the call only. The callback must not call into
 * the kv. Puts are reported by the code that writes an entry (apply_put;
 * kv_event_emit in kv_int.h), removals by kv_state_remove itself, so every
 * command that removes keys through it reports them. */
/* The type of a key's value (Redis's TYPE). A hash's value bytes are its
 * encoded field list (kv/hashval.h, docs/KV.md). */
enum kv_value_type {
    KV_TYPE_STRING = 0,
    KV_TYPE_HASH = 1,
};

enum kv_event_type {
    KV_EVENT_PUT = 1,
    KV_EVENT_DELETE = 2,
    KV_EVENT_EXPIRE = 3,
    KV_EVENT_EVICT = 4,
    /* Not a change: a KV_CMD_PUBLISH applied (channel in key, message in
     * value). Delivered among the changes, in log order. */
    KV_EVENT_MESSAGE = 5,
};

struct kv_event {
    enum kv_event_type type;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value; /* PUT of a string and MESSAGE only (NULL otherwise) */
    size_t value_len;
    uint8_t value_type;    /* PUT: enum kv_value_type (a hash's put has no value) */
    uint64_t version;      /* the index of the command that made the change */
    uint64_t expire_at_ms; /* PUT: the new expiry, 0 = none */
    /* What made the change inside a KV_CMD_TXN: the enum kv_txn_op (txn.h)
     * of the item being applied, with KV_EVENT_OP_KEEPTTL set for a PUT
     * item that kept the key's expiry; 0 for the other commands (the type
     * says it all). Lets front ends name the change (Redis's keyspace
     * events: incrby, append, expire, rename_from, ...). */
    uint8_t op;
};
#define KV_EVENT_OP_KEEPTTL 0x80u

typedef void (*kv_event_cb)(void *ctx, const struct kv_event *ev);

struct kv_config {
    uint64_t hash_seed;             /* must be equal on every replica; 0 is a valid seed */
    uint32_t buckets_initial;       /* power of two >= 4; 0 = default (16) */
    uint32_t rehash_buckets_per_op; /* buckets migrated per mutation; 0 = default (4) */
    /* A restore presizes its table to the snapshot header's key count, to
     * at most this many buckets (a power of two, 4 to 2^24; 0 = default,
     * 2^24) and at least buckets_initial. Changes memory and speed only,
     * not the state restored. The fuzz drivers lower it: a fuzzed count
     * would otherwise allocate (and ASan poison) 128 MiB per input. */
    uint32_t restore_presize_buckets_max;
    /* Test seam (NULL in production): called before every allocation the kv
     * makes; a nonzero return makes that allocation fail, to reach the
     * ST_ENOMEM paths. */
    int (*alloc_fail_cb)(void *ctx);
    void *alloc_fail_ctx;
    /* Change events (above); NULL = none. Not part of the state: replicas
     * with and without it stay identical. */
    kv_event_cb event_cb;
    void *event_ctx;
};

enum kv_status {
    KV_STATUS_OK = 0,
    KV_STATUS_PRECONDITION_FAILED = 1, /* condition not met; nothing changed */
    KV_STATUS_NOT_FOUND = 2,           /* DELETE of an absent/expired key; nothing changed */
    KV_STATUS_REFUSED = 3,             /* REFUSE: the leader refused the write; nothing changed */
    /* An idempotency key recorded for a different request; nothing changed.
     * Never recorded itself. */
    KV_STATUS_IDEMPOTENCY_MISMATCH = 4,
    /* PUT_SESSION, SESSION_DESTROY: no such session; nothing changed. */
    KV_STATUS_NO_SESSION = 8,
    /* SESSION_CREATE: sessions_max reached; PUT_SESSION: the session holds
     * KV_SESSION_KEYS_MAX live attachments. Nothing changed. */
    KV_STATUS_SESSION_LIMIT = 9,
};

/* The outcome of one applied command, for the waiting client. */
struct kv_result {
    enum kv_status status;
    enum kv_cmd_type type;
    struct kv_request_id req;
    /* OK: the index just applied (the key's new version for PUT, the
     * session id for SESSION_CREATE).
     * PRECONDITION_FAILED: the key's current version, 0 if absent.
     * NOT_FOUND: 0. */
    uint64_t version;
    int created;            /* PUT OK: 1 if the key was absent or expired before (HTTP 201) */
    uint64_t purged;        /* PURGE_EXPIRED, SESSION_DESTROY: keys deleted */
    int purge_more;         /* PURGE_EXPIRED: 1 if keys_max stopped it with expired keys left */
    uint32_t key_hash;      /* PUT, DELETE: kv_key_hash() of the key */
    uint64_t evicted;       /* EVICT: keys removed (listed keys rewritten or gone are kept) */
    uint64_t evicted_bytes; /* EVICT: their used bytes (kv_used_bytes_of) */
    /* 1: the command's idempotency key was recorded by an earlier entry and
     * this result is that entry's (nothing applied now). */
    int replayed;
    uint64_t index; /* the entry whose result this is (the recording one if replayed) */
    /* TXN: 1 if every guard held (the success ops ran), 0 if the failure
     * ops ran; txn_res[0..txn_n) are the results of the ops that ran, in
     * order, valid until the next kv_apply (kv/txn.h). */
    int txn_succeeded;
    uint32_t txn_n;
    const struct kv_txn_res *txn_res;
};

/* Used memory, the deterministic accounting that --max-memory limits: every
 * key counts key + value + KV_ENTRY_USED_OVERHEAD_BYTES (about what an
 * entry costs besides its bytes: its 27-byte header, the allocator's
 * overhead and rounding, its bucket slot and expiry-heap slot). A function
 * of the logical state only, so every replica agrees on it at every index,
 * whatever its allocator, table layout or history (restored or applied). */
#define KV_ENTRY_USED_OVERHEAD_BYTES 64u
static inline uint64_t kv_used_bytes_of(size_t key_len, size_t value_len)
{
    return (uint64_t)key_len + value_len + KV_ENTRY_USED_OVERHEAD_BYTES;
}

/* A live entry as seen by kv_get(). Pointers stay valid until the next
 * mutation of the kv (kv_apply, restore finish, kv_destroy). */
struct kv_view {
    const uint8_t *value;
    size_t value_len;
    uint64_t version;
    uint64_t expire_at_ms; /* 0 = never */
    uint8_t type;          /* enum kv_value_type */
};

struct kv_stats {
    uint64_t keys; /* live and not-yet-purged keys */
    uint64_t keys_with_ttl;
    uint64_t memory_bytes; /* entries (allocator usable size) + bucket tables + expiry heap
                            * + ordered index (kv_index.h) */
    uint64_t used_bytes;   /* the deterministic accounting (kv_used_bytes_of per key) */
    uint64_t buckets;      /* total of both tables */
    int rehashing;
    uint64_t applied_index; /* highest index passed to kv_apply or restored */
    uint64_t idem_records;  /* idempotency records held */
    uint64_t idem_bytes;    /* their memory (included in memory_bytes) */
    uint64_t clock_ms;      /* the log clock */
    uint64_t index_bytes;   /* the ordered index (included in memory_bytes) */
};

/* Fills cfg with defaults (seed 0). */
void kv_config_default(struct kv_config *cfg);

/* The hash_seed of a cluster's kv: a SipHash of the cluster id under a
 * fixed key, so every replica of one cluster hashes alike while bucket
 * placement differs between clusters (colliding keys cannot be computed
 * once for every deployment, as with a fixed seed). Not a secret from
 * whoever knows the cluster id (GET /cluster shows it). */
uint64_t kv_hash_seed_for_cluster(uint64_t cluster_id);

/* Allocates an empty kv. cfg may be NULL (defaults). The caller owns *out and
 * frees it with kv_destroy(). Returns 0, ST_EINVAL, ST_ENOMEM. */
int kv_create(const struct kv_config *cfg, struct kv **out);
void kv_destroy(struct kv *kv);

/* Applies the command data[0..len) (encoded by kv_command_encode) at raft index
 * `index` (> 0). Returns 0 and fills *result (status OK, PRECONDITION_FAILED or
 * NOT_FOUND: all deterministic outcomes), or:
 *   ST_EPROTO  malformed command: nothing changed (every replica rejects it the
 *              same way; the node may skip the entry), *result has the request
 *              id zeroed;
 *   ST_ENOMEM  out of memory: nothing changed; the replica can no longer follow
 *              the log deterministically and should stop.
 * `data` is not retained. */
int kv_apply(struct kv *kv, uint64_t index, const void *data, size_t len, struct kv_result *result);

/* A hint that the command `data` is about to be applied: loads its key's
 * bucket slot (stage 0) or the first entry of that bucket's chain (stage 1,
 * best issued a few commands after stage 0) into the cache, so that a batch
 * of applies overlaps its cache misses instead of taking them one by one.
 * Changes nothing; malformed commands are ignored. */
void kv_prefetch(const struct kv *kv, const void *data, size_t len, int stage);

/* Looks up a key. Returns 0 and fills *out, or ST_ENOENT if the key is absent
 * or expired (expiry <= now_ms). Does not modify the kv. */
int kv_get(const struct kv *kv, const void *key, size_t key_len, uint64_t now_ms,
           struct kv_view *out);

void kv_stats(const struct kv *kv, struct kv_stats *out);

/* Whole-state checker (O(n), for tests and debug builds): bucket placement
 * and hashes, per-table counts, migrated buckets empty, the expiry heap's
 * order and back-pointers, versions <= applied index, memory accounting.
 * Returns 0 or ST_ECORRUPT. */
int kv_check_invariants(const struct kv *kv);

/* The smallest expiry of any stored key (ms), 0 if no key has one. A leader
 * can propose PURGE_EXPIRED only when this is <= its clock. */
uint64_t kv_expiry_min(const struct kv *kv);

/* Used memory: the sum of kv_used_bytes_of() over the stored keys (expired
 * ones not yet purged included). Equal on every replica at equal indexes. */
uint64_t kv_used_bytes(const struct kv *kv);

/* kv_used_bytes_of() of the stored entry of key (expired or not), 0 if none. */
uint64_t kv_entry_used_bytes(const struct kv *kv, const void *key, size_t key_len);

/* The kv's 32-bit hash of key (the one its table uses): lets the node keep
 * per-key side data (access clocks) keyed alike. */
uint32_t kv_key_hash(const struct kv *kv, const void *key, size_t key_len);

/* ---- eviction candidates (the leader's choice, never the state's) ----
 * A sampled stored key. Pointers stay valid until the next mutation. */
struct kv_sample {
    const uint8_t *key;
    uint32_t key_len;
    uint32_t hash; /* kv_key_hash() */
    uint64_t version;
    uint64_t expire_at_ms; /* 0 = never */
    uint64_t used_bytes;   /* kv_used_bytes_of() */
};

enum kv_sample_from {
    KV_SAMPLE_ALL = 0,     /* any key, by random buckets */
    KV_SAMPLE_TTL = 1,     /* keys with an expiry, uniformly */
    KV_SAMPLE_SOONEST = 2, /* keys with an expiry from the front of the expiry heap:
                            * out[0] is the soonest to expire, the rest early ones */
};

/* Fills up to cap samples (fewer if the kv holds fewer candidates; the same
 * key may appear twice) drawn with the caller's random seed `rnd`. Changes
 * nothing; O(cap) plus empty buckets probed (bounded). Returns the count. */
size_t kv_sample(const struct kv *kv, enum kv_sample_from from, uint64_t rnd, struct kv_sample *out,
                 size_t cap);

/* Highest index applied or restored (0 for an empty kv). */
uint64_t kv_applied_index(const struct kv *kv);

/* The log clock: the largest timestamp_ms of any command applied, or the one
 * a snapshot restored (0 for an empty kv). Never decreases. */
uint64_t kv_clock_ms(const struct kv *kv);

/* Order-independent 64-bit digest of the logical state (keys, values,
 * versions, expiries, idempotency records, log clock): equal states give
 * equal digests whatever their history. */
uint64_t kv_digest(const struct kv *kv);

/* Does up to `buckets` steps of pending incremental rehash outside mutations
 * (e.g. from an idle callback). Returns 1 if a rehash is still in progress. */
int kv_rehash_step(struct kv *kv, uint32_t buckets);

/* ---- snapshots (format in docs/KV.md) ----
 *
 * kv_snapshot_write() streams the whole state to write_cb in chunks of at most
 * KV_SNAPSHOT_CHUNK_BYTES (plus single records larger than that, which are
 * passed as several chunks): it never builds the snapshot in memory. The
 * header records `applied_index` and `meta` (opaque to kv, at most
 * KV_SNAPSHOT_META_BYTES_MAX; the node stores cluster membership there). The
 * kv must not be mutated during the call. A nonzero return of write_cb stops
 * the write and is returned as is. */
/* The newest version, 5, is written when the session table is not empty:
 * a type byte per record, the auth section (possibly of no user), then the
 * session section; 4 when a hash exists (type bytes and the auth section);
 * 3 when only users exist; 2 otherwise, so that a cluster that uses none of
 * them stays readable by older releases. Versions 1 to 4 are still read. */
#define KV_SNAPSHOT_VERSION 5
#define KV_SNAPSHOT_CHUNK_BYTES (64u * 1024u)
#define KV_SNAPSHOT_META_BYTES_MAX (64u * 1024u)

typedef int (*kv_write_cb)(void *ctx, const void *data, size_t len);

int kv_snapshot_write(const struct kv *kv, uint64_t applied_index, const void *meta,
                      size_t meta_len, kv_write_cb write_cb, void *ctx);

/* The same snapshot, produced incrementally so the loop can keep serving
 * (reads, heartbeats, applies) while it is written: ~0.5 s per million small
 * keys in one piece otherwise.
 *
 *   kv_snapshot_begin -> kv_snapshot_next (until it returns 0) -> kv_snapshot_end
 *
 * The snapshot is the state S at begin (the kv's applied index then), even
 * though the kv keeps changing: kv_apply and kv_rehash_step may be called
 * between the steps (copy-on-write at entry granularity: an entry of S that
 * is deleted, purged or rewritten before the cursor emitted its bucket is
 * kept by the cursor and emitted after the table walk; entries written after
 * begin are skipped; the rehash pauses until the cursor is done). The extra
 * memory is at most the entries of S changed meanwhile; it is freed when
 * next returns 0 or an error, or at end. Record order is therefore not the
 * order kv_snapshot_write would give, but the bytes restore to exactly S.
 * At most one such cursor per kv (ST_EBUSY); a restore gets ST_EBUSY until
 * kv_snapshot_end (a restore must end the cursor first: it replaces S).
 * begin writes the header (through write_cb when a chunk fills); each next
 * emits about bytes_budget bytes of records (0 = everything; whole buckets,
 * so a step may exceed it by one chain) and returns 1 if more remain, 0 once
 * the trailer is written and flushed, or the callback's / an ST_E* error
 * (sticky). kv_snapshot_end releases the cursor in every case (an early end
 * aborts the snapshot). begin returns 0, ST_EBUSY, ST_EINVAL or ST_ENOMEM;
 * the caller owns *out. */
struct kv_snapshot_cursor;
int kv_snapshot_begin(struct kv *kv, uint64_t applied_index, const void *meta, size_t meta_len,
                      kv_write_cb write_cb, void *ctx, struct kv_snapshot_cursor **out);
int kv_snapshot_next(struct kv_snapshot_cursor *cur, size_t bytes_budget);
void kv_snapshot_end(struct kv_snapshot_cursor *cur);

/* Streaming restore. kv_restore_begin() allocates a restore context; feed it
 * the snapshot bytes in chunks of any size; kv_restore_finish() verifies the
 * trailer (count and CRC32C) and only then replaces the kv's state (the old
 * state is freed). On any error the kv keeps its previous state untouched.
 *
 *   begin --feed*--> finish (consumes the context, success or not)
 *                \--> abort  (consumes the context)
 *
 * kv_restore_feed() returns 0, ST_ECORRUPT (bad magic, version, CRC, lengths),
 * ST_ETOOBIG (meta or record over the hard limits) or ST_ENOMEM; after an error
 * the context is poisoned (later feeds return the same error) and the caller
 * must call kv_restore_abort() or kv_restore_finish() (which returns it). Only
 * one restore may be in progress per kv (ST_EBUSY, also while a snapshot cursor
 * is open); kv_apply must not be called while one is in progress. */
struct kv_restore;

struct kv_snapshot_info {
    uint64_t applied_index;
    uint64_t keys;
    void *meta; /* malloc'd copy, owned by the caller (free()); NULL if meta_len == 0 */
    size_t meta_len;
};

int kv_restore_begin(struct kv *kv, struct kv_restore **out);
int kv_restore_feed(struct kv_restore *r, const void *data, size_t len);
/* On success fills *info (may be NULL: meta then discarded). */
int kv_restore_finish(struct kv_restore *r, struct kv_snapshot_info *info);
void kv_restore_abort(struct kv_restore *r);

#endif
