/* kv expiry: the min-heap of entries with a TTL, ordered by (expiry, key),
 * a total order since keys are unique, so purges happen in the same order on
 * every replica. */
#include "kv/kv_int.h"

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/crc32c.h"

/* ---------- expiry heap (total order: keys are unique) ---------- */

static void heap_set(struct kv_state *st, uint32_t i, struct kv_entry *e)
{
    st->heap[i] = e;
    entry_set_heap_idx(e, i);
}

void kv_heap_up(struct kv_state *st, uint32_t i)
{
    struct kv_entry *e = st->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (entry_cmp(st->heap[parent], e) <= 0) break;
        heap_set(st, i, st->heap[parent]);
        i = parent;
    }
    heap_set(st, i, e);
}

void kv_heap_down(struct kv_state *st, uint32_t i)
{
    struct kv_entry *e = st->heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        const struct kv_entry *best = e;
        if (l < st->heap_len && entry_cmp(st->heap[l], best) < 0) {
            m = l;
            best = st->heap[l];
        }
        if (r < st->heap_len && entry_cmp(st->heap[r], best) < 0) m = r;
        if (m == i) break;
        heap_set(st, i, st->heap[m]);
        i = m;
    }
    heap_set(st, i, e);
}

int kv_heap_reserve(struct kv_state *st)
{
    if (st->heap_len < st->heap_cap) return 0;
    uint32_t cap = st->heap_cap ? st->heap_cap * 2 : 64;
    struct kv_entry **h = kv_realloc(st->cfg, st->heap, (size_t)cap * sizeof(*h));
    if (!h) return ST_ENOMEM;
    st->heap = h;
    st->heap_cap = cap;
    return 0;
}

/* Requires kv_heap_reserve() to have succeeded. */
void kv_heap_push(struct kv_state *st, struct kv_entry *e)
{
    ST_ASSERT(st->heap_len < st->heap_cap);
    uint32_t i = st->heap_len++;
    heap_set(st, i, e);
    kv_heap_up(st, i);
}

void kv_heap_remove(struct kv_state *st, struct kv_entry *e)
{
    uint32_t i = entry_heap_idx(e);
    ST_ASSERT(i < st->heap_len && st->heap[i] == e);
    entry_set_heap_idx(e, KV_HEAP_NONE);
    st->heap_len--;
    if (i == st->heap_len) return;
    struct kv_entry *last = st->heap[st->heap_len];
    heap_set(st, i, last);
    if (i > 0 && entry_cmp(last, st->heap[(i - 1) / 2]) < 0)
        kv_heap_up(st, i);
    else
        kv_heap_down(st, i);
}

uint64_t kv_expiry_min(const struct kv *kv)
{
    return kv->st.heap_len ? entry_expire(kv->st.heap[0]) : 0;
}
