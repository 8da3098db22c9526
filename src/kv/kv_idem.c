/* kv idempotency records (kv.h, "Idempotency"): a chained hash table by
 * key and a FIFO by apply order, bounded in count and by the log clock. */
#include "kv/kv_int.h"

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/crc32c.h"

/* ---------- idempotency records ---------- */

/* Records dropped for age by one apply, at most: the rest go at the next
 * applies (a lookup treats an aged record as absent meanwhile). */
#define IDEM_AGE_DROPS_PER_APPLY 64u

uint64_t kv_idem_hash(const struct kv *kv, const void *key, size_t len)
{
    return kv_siphash13(kv->cfg.hash_seed ^ 0x1d8e4e27c47d124fULL,
                        kv->cfg.hash_seed ^ 0x5851f42d4c957f2dULL, key, len);
}

/* What a retry must repeat for the recorded result to be its answer: the
 * type, condition and payload, not the request id or the timestamp. */
uint64_t kv_request_digest(const struct kv_command *c)
{
    uint8_t meta[32];
    meta[0] = (uint8_t)c->type;
    meta[1] = (uint8_t)c->cond;
    meta[2] = meta[3] = 0;
    put_u32(meta + 4, c->key_len);
    put_u64(meta + 8, c->cond_version);
    put_u64(meta + 16, c->ttl_ms);
    put_u32(meta + 24, c->value_len);
    put_u32(meta + 28, 0);
    uint64_t h = kv_siphash13(0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, meta, sizeof(meta));
    /* A command's key and value are contiguous (command.h). */
    ST_ASSERT(c->value_len == 0 || c->value == c->key + c->key_len);
    return h ^ kv_siphash13(h, 0xa4093822299f31d0ULL, c->key, (size_t)c->key_len + c->value_len);
}

struct idem_rec *kv_idem_find(const struct idem_table *tb, uint64_t h, const void *key, size_t len)
{
    if (tb->size == 0) return NULL;
    for (struct idem_rec *r = tb->buckets[h & (tb->size - 1)]; r; r = r->hnext)
        if (r->hash == h && r->key_len == len && memcmp(r->key, key, len) == 0) return r;
    return NULL;
}

void kv_idem_link(struct idem_table *tb, struct idem_rec *r)
{
    struct idem_rec **b = &tb->buckets[r->hash & (tb->size - 1)];
    r->hnext = *b;
    *b = r;
    r->newer = NULL;
    r->older = tb->newest;
    if (tb->newest)
        tb->newest->newer = r;
    else
        tb->oldest = r;
    tb->newest = r;
    tb->count++;
    tb->bytes += malloc_usable_size(r);
}

void kv_idem_drop(struct idem_table *tb, struct idem_rec *r)
{
    ST_ASSERT((r->older == NULL) == (tb->oldest == r)); /* the age list: only the oldest has none */
    struct idem_rec **link = &tb->buckets[r->hash & (tb->size - 1)];
    while (*link != r)
        link = &(*link)->hnext;
    *link = r->hnext;
    if (r->older)
        r->older->newer = r->newer;
    else
        tb->oldest = r->newer;
    if (r->newer)
        r->newer->older = r->older;
    else
        tb->newest = r->older;
    tb->count--;
    tb->bytes -= malloc_usable_size(r);
    free(r);
}

/* Room for one more record: the first bucket array is required (ST_ENOMEM),
 * growing it later is optional (chains grow instead). Rehashing is O(count),
 * which the count bound keeps small. */
int kv_idem_reserve(const struct kv_config *cfg, struct idem_table *tb)
{
    if (tb->size && tb->count + 1 <= tb->size) return 0;
    uint64_t size = tb->size ? tb->size * 2 : 16;
    struct idem_rec **b = kv_calloc(cfg, size, sizeof(*b));
    if (!b) return tb->size ? 0 : ST_ENOMEM;
    for (struct idem_rec *r = tb->oldest; r; r = r->newer) {
        r->hnext = b[r->hash & (size - 1)];
        b[r->hash & (size - 1)] = r;
    }
    free(tb->buckets);
    tb->buckets = b;
    tb->size = size;
    return 0;
}

/* Drops the oldest records beyond keys_max, then up to
 * IDEM_AGE_DROPS_PER_APPLY of the oldest ones whose age ran out at clock.
 * Both depend only on the log: deterministic. */
void kv_idem_trim(struct idem_table *tb, uint64_t keys_max, uint64_t clock_ms)
{
    while (tb->count > keys_max)
        kv_idem_drop(tb, tb->oldest);
    for (uint32_t n = 0;
         n < IDEM_AGE_DROPS_PER_APPLY && tb->oldest && tb->oldest->expire_at_ms <= clock_ms; n++)
        kv_idem_drop(tb, tb->oldest);
}

void kv_idem_free(struct idem_table *tb)
{
    struct idem_rec *r = tb->oldest;
    while (r) {
        struct idem_rec *next = r->newer;
        free(r);
        r = next;
    }
    free(tb->buckets);
    memset(tb, 0, sizeof(*tb));
}

uint64_t kv_idem_rec_digest(const struct idem_rec *r)
{
    uint8_t meta[40];
    put_u64(meta, r->expire_at_ms);
    put_u64(meta + 8, r->index);
    put_u64(meta + 16, r->version);
    put_u64(meta + 24, r->req_digest);
    meta[32] = r->type;
    meta[33] = r->status;
    meta[34] = r->created;
    meta[35] = r->key_len;
    put_u32(meta + 36, 0);
    uint64_t h = kv_siphash13(0x452821e638d01377ULL, 0xbe5466cf34e90c6cULL, meta, sizeof(meta));
    return h ^ kv_siphash13(h, 0xc0ac29b7c97c50ddULL, r->key, r->key_len);
}
