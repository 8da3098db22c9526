/* The watch history (watch_history.h). */
#include "node/watch_history.h"

#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"

int watch_history_init(struct watch_history *h, uint64_t bytes_max, uint64_t entries_max,
                       uint64_t first_version)
{
    ST_ASSERT(bytes_max >= 1 && entries_max >= 1);
    memset(h, 0, sizeof(*h));
    h->buf = malloc((size_t)bytes_max);
    h->slots = malloc((size_t)entries_max * sizeof(*h->slots));
    if (!h->buf || !h->slots) {
        watch_history_free(h);
        return ST_ENOMEM;
    }
    h->bytes_max = bytes_max;
    h->entries_max = entries_max;
    h->first_version = first_version;
    return 0;
}

void watch_history_free(struct watch_history *h)
{
    free(h->buf);
    free(h->slots);
    memset(h, 0, sizeof(*h));
}

static struct watch_slot *slot_at(const struct watch_history *h, uint64_t seq)
{
    return &h->slots[seq % h->entries_max];
}

/* Drops the oldest event: every version up to its own is no longer whole. */
static void drop_oldest(struct watch_history *h)
{
    ST_ASSERT(h->tail_seq < h->head_seq);
    uint64_t v = slot_at(h, h->tail_seq)->version;
    if (v + 1 > h->first_version) h->first_version = v + 1;
    h->tail_seq++;
    h->dropped++;
}

void watch_history_reset(struct watch_history *h, uint64_t first_version)
{
    h->tail_seq = h->head_seq;
    if (first_version > h->first_version) h->first_version = first_version;
}

void watch_history_append(struct watch_history *h, const struct kv_event *ev)
{
    uint64_t len = (uint64_t)ev->key_len + ev->value_len;
    if (len > h->bytes_max) {
        /* It cannot be held: nothing up to and including its version is. */
        watch_history_reset(h, ev->version + 1);
        h->dropped++;
        return;
    }
    uint64_t off = h->wpos;
    if (off % h->bytes_max + len > h->bytes_max) off += h->bytes_max - off % h->bytes_max;
    while (h->tail_seq < h->head_seq && (h->head_seq - h->tail_seq >= h->entries_max ||
                                         off + len - slot_at(h, h->tail_seq)->off > h->bytes_max))
        drop_oldest(h);
    struct watch_slot *s = slot_at(h, h->head_seq);
    s->version = ev->version;
    s->expire_at_ms = ev->expire_at_ms;
    s->off = off;
    s->value_len = (uint32_t)ev->value_len;
    s->key_len = (uint16_t)ev->key_len;
    s->type = (uint8_t)ev->type;
    s->value_type = ev->value_type;
    s->op = ev->op;
    uint8_t *p = h->buf + off % h->bytes_max;
    if (ev->key_len) memcpy(p, ev->key, ev->key_len);
    if (ev->value_len) memcpy(p + ev->key_len, ev->value, ev->value_len);
    h->wpos = off + len;
    h->head_seq++;
}

uint64_t watch_history_version(const struct watch_history *h, uint64_t seq)
{
    ST_ASSERT(seq >= h->tail_seq && seq < h->head_seq);
    return slot_at(h, seq)->version;
}

uint64_t watch_history_seek(const struct watch_history *h, uint64_t version)
{
    uint64_t lo = h->tail_seq, hi = h->head_seq; /* versions never decrease along seq */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (slot_at(h, mid)->version < version)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int watch_history_get(const struct watch_history *h, uint64_t seq, struct kv_event *out)
{
    if (seq < h->tail_seq) return ST_ECOMPACTED;
    if (seq >= h->head_seq) return ST_ENOENT;
    const struct watch_slot *s = slot_at(h, seq);
    const uint8_t *p = h->buf + s->off % h->bytes_max;
    out->type = (enum kv_event_type)s->type;
    out->value_type = s->value_type;
    out->key = p;
    out->key_len = s->key_len;
    out->value = s->type == KV_EVENT_PUT || s->type == KV_EVENT_MESSAGE ? p + s->key_len : NULL;
    out->value_len = s->value_len;
    out->version = s->version;
    out->expire_at_ms = s->expire_at_ms;
    out->op = s->op;
    return 0;
}
