/* Listing the kv in key order: a range [start, end) or a prefix, read from
 * the applied state in one call, through the ordered index (kv_index.h).
 *
 * Order: bytewise (memcmp over the common length, then the shorter key
 * first), the order the HTTP API promises. One call sees one state: the
 * kv's applied index, returned with the answer. Expired keys that no purge
 * has deleted yet are skipped as kv_get skips them (expiry <= now_ms; the
 * node passes the log clock), but count against the scan bound.
 *
 * Cost: O(log n) to find the start, then O(1) per key visited; the walk is
 * bounded by args.limit keys visited (live or expired), so one call never
 * stalls the loop for long whatever the range holds: the caller continues
 * after result.last_key. No allocation. */
#ifndef ST_KV_LIST_H
#define ST_KV_LIST_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"

struct kv_list_args {
    const uint8_t *start; /* first key >= start (start_len 0: from the first key) */
    size_t start_len;
    int start_after;    /* 1: strictly after start (a continuation) */
    const uint8_t *end; /* keys < end; end_len 0: no upper bound */
    size_t end_len;
    const uint8_t *prefix; /* only keys beginning with prefix (prefix_len 0: any) */
    size_t prefix_len;
    uint64_t limit; /* keys visited at most (>= 1) */
};

/* One listed key; pointers valid during the callback only. */
struct kv_list_item {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    uint64_t version;
    uint64_t expire_at_ms; /* 0 = never */
    uint8_t type;          /* enum kv_value_type */
};

/* Called for each live key in order; a nonzero return stops the walk and is
 * returned by kv_list. The callback must not change the kv. */
typedef int (*kv_list_cb)(void *ctx, const struct kv_list_item *it);

struct kv_list_result {
    uint64_t index; /* the kv's applied index: the state listed */
    uint64_t count; /* live keys passed to cb (or counted, cb NULL) */
    int more;       /* 1: keys in range remain after last_key */
    /* The last key visited (live or expired), NULL if none: the next call
     * continues with start = last_key, start_after = 1. Valid until the
     * next change of the kv. */
    const uint8_t *last_key;
    size_t last_key_len;
};

/* Walks the keys in range in order, calling cb (NULL: count only) for each
 * live one, visiting at most args->limit keys. Returns 0, ST_EINVAL (limit
 * 0), or cb's nonzero return. Read-only. */
int kv_list(const struct kv *kv, const struct kv_list_args *args, uint64_t now_ms, kv_list_cb cb,
            void *ctx, struct kv_list_result *out);

#endif
