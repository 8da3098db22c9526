/* The watch history: the node's most recent kv change events (kv.h, "change
 * events"), in apply order, for watches to read from (node_watch_*,
 * docs/HTTP-API.md "Watches"). A side output of apply: it is not replicated
 * state, and each node keeps its own from what it applied.
 *
 * Layout: a ring of fixed slots (entries_max; one per event: type, version,
 * expiry, where its bytes are) and a ring of bytes (bytes_max; each event's
 * key then value, contiguous: an event that would straddle the end starts
 * again at offset 0, the skipped tail counting as its own). Both are
 * allocated once at init (pages are touched as the ring first fills).
 * Events are numbered by a sequence number (seq) that only grows; the
 * history holds seq in [tail_seq, head_seq).
 *
 * Appending never fails: the oldest events go until the new one fits in
 * both rings. An event larger than the byte ring empties the history (it
 * cannot be kept). `first_version` is the smallest version from which every
 * event is still held: it rises past the version of every event dropped,
 * and a reset (the node installed a snapshot: events before it never
 * passed through this node) sets it. A watch asking for an older version
 * gets ST_ECOMPACTED.
 *
 * Threading: none (the node's loop). */
#ifndef ST_NODE_WATCH_HISTORY_H
#define ST_NODE_WATCH_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"

struct watch_slot {
    uint64_t version;
    uint64_t expire_at_ms;
    uint64_t off; /* monotonic byte offset of the key (the ring offset is off % bytes_max) */
    uint32_t value_len;
    uint16_t key_len;
    uint8_t type : 4;       /* enum kv_event_type */
    uint8_t value_type : 4; /* PUT: enum kv_value_type */
    uint8_t op;             /* kv_event.op */
};

struct watch_history {
    uint8_t *buf;
    uint64_t bytes_max;
    struct watch_slot *slots;
    uint64_t entries_max;
    uint64_t head_seq; /* the next event's number */
    uint64_t tail_seq; /* the oldest held (== head_seq when empty) */
    uint64_t wpos;     /* monotonic byte offset where the next event's bytes may go */
    uint64_t first_version;
    uint64_t dropped; /* events dropped to make room (counter) */
};

/* Allocates the rings. bytes_max >= 1, entries_max >= 1. The history starts
 * empty with first_version (the next version the node will apply). Returns
 * 0 or ST_ENOMEM (nothing held). */
int watch_history_init(struct watch_history *h, uint64_t bytes_max, uint64_t entries_max,
                       uint64_t first_version);
void watch_history_free(struct watch_history *h);

/* Records ev (copied). Its version must be >= every version recorded. */
void watch_history_append(struct watch_history *h, const struct kv_event *ev);

/* Drops everything; every event from first_version on will be recorded. */
void watch_history_reset(struct watch_history *h, uint64_t first_version);

/* The seq of the first held event with version >= version (head_seq if
 * none). Requires version >= first_version to find every such event. */
uint64_t watch_history_seek(const struct watch_history *h, uint64_t version);

/* The event numbered seq into *out (pointers into the ring: valid until the
 * next append or reset). 0, ST_ECOMPACTED (seq < tail_seq: dropped) or
 * ST_ENOENT (seq >= head_seq: not yet). */
int watch_history_get(const struct watch_history *h, uint64_t seq, struct kv_event *out);

/* The version of the event numbered seq, which must be held. */
uint64_t watch_history_version(const struct watch_history *h, uint64_t seq);

#endif
