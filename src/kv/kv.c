/* kv state machine: keyed hashing, the hash table with incremental rehash,
 * lifecycle, reads, sampling, digests and the invariant checker. The other
 * files of the module are listed in kv_int.h. Contracts in kv.h, formats in
 * docs/KV.md. */
#include "kv/kv_int.h"

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/crc32c.h"

/* ---------- hashing: SipHash-1-3 keyed by the configured seed ---------- */

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL64(v1, 13);                                                                       \
        v1 ^= v0;                                                                                  \
        v0 = ROTL64(v0, 32);                                                                       \
        v2 += v3;                                                                                  \
        v3 = ROTL64(v3, 16);                                                                       \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL64(v3, 21);                                                                       \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL64(v1, 17);                                                                       \
        v1 ^= v2;                                                                                  \
        v2 = ROTL64(v2, 32);                                                                       \
    } while (0)

uint64_t kv_load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

uint64_t kv_siphash13(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    size_t blocks = len / 8;
    for (size_t i = 0; i < blocks; i++) {
        uint64_t m = kv_load_le64(in + 8 * i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    const uint8_t *tail = in + 8 * blocks;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)tail[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint32_t kv_hash(const struct kv *kv, const void *key, size_t len)
{
    return (uint32_t)kv_siphash13(kv->cfg.hash_seed, kv->cfg.hash_seed ^ 0x9e3779b97f4a7c15ULL, key,
                                  len);
}

uint64_t kv_hash_seed_for_cluster(uint64_t cluster_id)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(cluster_id >> (8 * i));
    /* the key spells "stcache", "kv seed"; replicas of different builds
     * must derive the same seed (kv_config: equal cluster-wide) */
    return kv_siphash13(0x73746361636865ULL, 0x6b762073656564ULL, b, sizeof(b));
}

/* ---------- tables and incremental rehash ---------- */

static int table_alloc(const struct kv_config *cfg, struct kv_table *t, uint64_t size)
{
    ST_ASSERT(size >= 4 && (size & (size - 1)) == 0 && size <= (1ULL << 32));
    t->buckets = kv_calloc(cfg, size, sizeof(*t->buckets));
    if (!t->buckets) return ST_ENOMEM;
    t->size = size;
    t->used = 0;
    return 0;
}

uint64_t kv_state_keys(const struct kv_state *st)
{
    return st->t[0].used + st->t[1].used;
}

/* A snapshot cursor (st->cow) addresses buckets by (table, index): while
 * one is open no entry moves between buckets and the tables stay as they are
 * (kv_state_rehash_step, kv_state_rehash_finish_if_done and kv_maybe_resize
 * do nothing); chains may grow meanwhile, the rehash resumes once the cursor
 * is done. */
void kv_state_rehash_finish_if_done(struct kv_state *st)
{
    if (st->cow) return;
    if (st->rehashing && st->t[0].used == 0) {
        free(st->t[0].buckets);
        st->t[0] = st->t[1];
        st->t[1] = (struct kv_table){0};
        st->rehashing = 0;
        st->rehash_idx = 0;
    }
}

/* Migrates up to n non-empty buckets (visiting at most 10n empty ones). */
void kv_state_rehash_step(struct kv_state *st, uint32_t n)
{
    if (!st->rehashing || st->cow) return;
    uint64_t empty_visits = (uint64_t)n * 10;
    while (n > 0 && st->t[0].used > 0) {
        ST_ASSERT(st->rehash_idx < st->t[0].size);
        struct kv_entry *e = st->t[0].buckets[st->rehash_idx];
        if (!e) {
            st->rehash_idx++;
            if (--empty_visits == 0) break;
            continue;
        }
        while (e) {
            struct kv_entry *next = e->next;
            uint64_t b = e->hash & (st->t[1].size - 1);
            e->next = st->t[1].buckets[b];
            st->t[1].buckets[b] = e;
            st->t[0].used--;
            st->t[1].used++;
            e = next;
        }
        st->t[0].buckets[st->rehash_idx++] = NULL;
        n--;
    }
    kv_state_rehash_finish_if_done(st);
}

static int rehash_start(struct kv_state *st, uint64_t size)
{
    ST_ASSERT(!st->rehashing);
    if (size == st->t[0].size) return 0;
    int rc = table_alloc(st->cfg, &st->t[1], size);
    if (rc != 0) return rc;
    st->rehashing = 1;
    st->rehash_idx = 0;
    kv_state_rehash_finish_if_done(st); /* empty t[0]: switch at once */
    return 0;
}

uint64_t kv_next_pow2(uint64_t v)
{
    uint64_t p = 4;
    while (p < v)
        p <<= 1;
    return p;
}

/* Grow at load 1, shrink below load 1/8 (to load ~1/2). Called before inserts
 * and after removals; never while a rehash runs. Failure to grow is not an
 * error (chains get longer); failure to allocate a smaller table neither. */
void kv_maybe_resize(struct kv *kv, int allow_shrink)
{
    struct kv_state *st = &kv->st;
    if (st->rehashing || st->cow) return;
    uint64_t keys = kv_state_keys(st);
    if (keys >= st->t[0].size && st->t[0].size < (1ULL << 32)) {
        /* Straight to load < 1: growth deferred under a cursor may be
         * several doublings behind. */
        uint64_t size = ST_MAX(st->t[0].size * 2, kv_next_pow2(keys + 1));
        (void)rehash_start(st, ST_MIN(size, 1ULL << 32));
    } else if (allow_shrink && st->t[0].size > kv->cfg.buckets_initial &&
               keys < st->t[0].size / 8) {
        uint64_t size = ST_MAX(kv_next_pow2(keys * 2), (uint64_t)kv->cfg.buckets_initial);
        (void)rehash_start(st, size);
    }
}

/* Finds key; returns the entry and the link pointing to it, or NULL. */
struct kv_entry *kv_state_find(const struct kv_state *st, uint32_t h, const void *key, size_t len,
                               struct kv_entry ***link_out, int *table_out)
{
    for (int t = 0; t <= st->rehashing; t++) {
        const struct kv_table *tb = &st->t[t];
        if (tb->size == 0) continue;
        struct kv_entry **link = &tb->buckets[h & (tb->size - 1)];
        for (struct kv_entry *e = *link; e; link = &e->next, e = e->next) {
            if (entry_key_eq(e, h, key, len)) {
                if (link_out) *link_out = link;
                if (table_out) *table_out = t;
                return e;
            }
        }
    }
    return NULL;
}

void kv_state_link(struct kv_state *st, struct kv_entry *e)
{
    struct kv_table *tb = st->rehashing ? &st->t[1] : &st->t[0];
    uint64_t b = e->hash & (tb->size - 1);
    e->next = tb->buckets[b];
    tb->buckets[b] = e;
    tb->used++;
    st->used_bytes += kv_used_bytes_of(e->key_len, e->value_len);
    st->hash_keys += entry_type(e) == KV_TYPE_HASH;
    kv_index_insert(&st->idx, e); /* kv_index */
}

void kv_entry_free(struct kv_state *st, struct kv_entry *e)
{
    st->entry_bytes -= malloc_usable_size(e);
    free(e);
}

/* e, found in table t, has just left the table and the expiry heap (e->next
 * may be reused). Frees it, unless the open snapshot cursor still has to
 * emit it: then the cursor takes it (copy-on-write). */
void kv_entry_release(struct kv_state *st, struct kv_entry *e, int t)
{
    ST_ASSERT(entry_heap_idx(e) == KV_HEAP_NONE);
    if (st->cow && kv_cow_needs(st, e, t))
        kv_cow_retain(st, e);
    else
        kv_entry_free(st, e);
}

void kv_event_emit(const struct kv_state *st, enum kv_event_type type, const struct kv_entry *e)
{
    if (!st->ev_index || !st->cfg->event_cb) return;
    struct kv_event ev = {
        .type = type,
        .key = e->data,
        .key_len = e->key_len,
        .version = st->ev_index,
        .op = st->ev_op,
    };
    if (type == KV_EVENT_PUT) {
        ev.value_type = entry_type(e);
        if (ev.value_type == KV_TYPE_STRING) { /* a hash's put carries no value */
            ev.value = e->data + e->key_len;
            ev.value_len = e->value_len;
        }
        ev.expire_at_ms = entry_expire(e);
    }
    st->cfg->event_cb(st->cfg->event_ctx, &ev);
}

/* Unlinks e (found with link in table t) and releases it. */
void kv_state_remove(struct kv_state *st, struct kv_entry *e, struct kv_entry **link, int t)
{
    ST_ASSERT(*link == e);
    kv_event_emit(st, entry_expired(e, st->ev_clock_ms) ? KV_EVENT_EXPIRE : st->ev_reason, e);
    *link = e->next;
    st->t[t].used--;
    st->used_bytes -= kv_used_bytes_of(e->key_len, e->value_len);
    st->hash_keys -= entry_type(e) == KV_TYPE_HASH;
    if (entry_heap_idx(e) != KV_HEAP_NONE) kv_heap_remove(st, e);
    kv_index_remove(&st->idx, e); /* kv_index: before e may be freed */
    kv_entry_release(st, e, t);
    kv_state_rehash_finish_if_done(st);
}

void kv_state_free(struct kv_state *st)
{
    /* Every entry is in the index: the entries are freed through it, not by
     * walking the buckets, whose number may be far above the keys' (a
     * restore presizes its table from the snapshot header, up to
     * KV_RESTORE_PRESIZE_BUCKETS_MAX, and may fail after a few records). The
     * iterator reads only the index's nodes, never the entries it passed. */
    ST_ASSERT(st->idx.count == kv_state_keys(st));
    struct kv_index_iter it;
    kv_index_seek(&st->idx, &it, "", 0); /* the first entry */
    for (struct kv_entry *e; (e = kv_index_iter_entry(&it)) != NULL; kv_index_iter_next(&it))
        free(e);
    for (int t = 0; t < 2; t++)
        free(st->t[t].buckets);
    free(st->heap);
    kv_index_free(&st->idx); /* kv_index */
    memset(st, 0, sizeof(*st));
}

int kv_state_init(struct kv_state *st, const struct kv_config *cfg, uint64_t buckets)
{
    memset(st, 0, sizeof(*st));
    st->cfg = cfg;
    return table_alloc(cfg, &st->t[0], buckets);
}

/* ---------- public: lifecycle and reads ---------- */

void kv_config_default(struct kv_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->hash_seed = 0;
    cfg->buckets_initial = KV_BUCKETS_DEFAULT;
    cfg->rehash_buckets_per_op = KV_REHASH_PER_OP_DEFAULT;
    cfg->restore_presize_buckets_max = KV_RESTORE_PRESIZE_BUCKETS_MAX;
}

int kv_create(const struct kv_config *cfg, struct kv **out)
{
    struct kv_config c;
    kv_config_default(&c);
    if (cfg) {
        c = *cfg;
        if (c.buckets_initial == 0) c.buckets_initial = KV_BUCKETS_DEFAULT;
        if (c.rehash_buckets_per_op == 0) c.rehash_buckets_per_op = KV_REHASH_PER_OP_DEFAULT;
        if (c.restore_presize_buckets_max == 0)
            c.restore_presize_buckets_max = KV_RESTORE_PRESIZE_BUCKETS_MAX;
    }
    if (c.buckets_initial < 4 || (c.buckets_initial & (c.buckets_initial - 1)) != 0)
        return ST_EINVAL;
    if (c.restore_presize_buckets_max < 4 ||
        (c.restore_presize_buckets_max & (c.restore_presize_buckets_max - 1)) != 0 ||
        c.restore_presize_buckets_max > KV_RESTORE_PRESIZE_BUCKETS_MAX)
        return ST_EINVAL;
    struct kv *kv = alloc_denied(&c) ? NULL : calloc(1, sizeof(*kv));
    if (!kv) return ST_ENOMEM;
    kv->cfg = c;
    if (kv_state_init(&kv->st, &kv->cfg, c.buckets_initial) != 0) {
        free(kv);
        return ST_ENOMEM;
    }
    *out = kv;
    return 0;
}

void kv_destroy(struct kv *kv)
{
    if (!kv) return;
    ST_ASSERT(!kv->restoring && kv->snapshots_open == 0);
    kv_state_free(&kv->st);
    kv_idem_free(&kv->idem);
    kv_auth_free(&kv->auth);
    kv_session_free(&kv->sess);
    kv_txn_buf_free(&kv->txn);
    free(kv);
}

int kv_get(const struct kv *kv, const void *key, size_t key_len, uint64_t now_ms,
           struct kv_view *out)
{
    if (key_len == 0 || key_len > KV_KEY_BYTES_HARD_MAX) return ST_ENOENT;
    uint32_t h = kv_hash(kv, key, key_len);
    const struct kv_entry *e = kv_state_find(&kv->st, h, key, key_len, NULL, NULL);
    if (!e || entry_expired(e, now_ms)) return ST_ENOENT;
    out->value = e->data + e->key_len;
    out->value_len = e->value_len;
    out->version = e->version;
    out->expire_at_ms = entry_expire(e);
    out->type = entry_type(e);
    return 0;
}

/* Whole-state checker: O(n). */
int kv_check_invariants(const struct kv *kv)
{
    const struct kv_state *st = &kv->st;
#define KV_CHECK(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) return ST_ECORRUPT;                                                           \
    } while (0)
    KV_CHECK(st->t[0].size >= 4 && (st->t[0].size & (st->t[0].size - 1)) == 0);
    KV_CHECK(st->rehashing ? st->t[1].size >= 4 : st->t[1].size == 0);
    KV_CHECK(!st->rehashing || st->rehash_idx <= st->t[0].size);
    uint64_t with_ttl = 0, bytes = 0, used_bytes = 0, hash_keys = 0;
    for (int t = 0; t <= st->rehashing; t++) {
        const struct kv_table *tb = &st->t[t];
        uint64_t used = 0;
        for (uint64_t i = 0; i < tb->size; i++) {
            /* Buckets before the rehash position have been migrated. */
            KV_CHECK(!(t == 0 && st->rehashing && i < st->rehash_idx) || !tb->buckets[i]);
            for (const struct kv_entry *e = tb->buckets[i]; e; e = e->next) {
                used++;
                bytes += malloc_usable_size((void *)(uintptr_t)e);
                KV_CHECK(kv_entry_fits(
                    malloc_usable_size((void *)(uintptr_t)e),
                    entry_size(e->key_len, e->value_len, (e->flags & ENTRY_F_TTL) != 0)));
                used_bytes += kv_used_bytes_of(e->key_len, e->value_len);
                KV_CHECK((e->hash & (tb->size - 1)) == i);
                KV_CHECK(e->hash == kv_hash(kv, e->data, e->key_len));
                KV_CHECK(e->key_len >= 1 && e->key_len <= KV_KEY_BYTES_HARD_MAX);
                KV_CHECK(e->version >= 1 && e->version <= kv->applied_index);
                KV_CHECK((e->flags & ~(ENTRY_F_TTL | ENTRY_F_HASH)) == 0);
                KV_CHECK(((e->flags & ENTRY_F_TTL) != 0) == (entry_expire(e) != 0));
                hash_keys += entry_type(e) == KV_TYPE_HASH;
                if (entry_type(e) == KV_TYPE_HASH)
                    KV_CHECK(kv_hval_check(e->data + e->key_len, e->value_len, NULL) == 0);
                if (e->flags & ENTRY_F_TTL) {
                    with_ttl++;
                    uint32_t hi = entry_heap_idx(e);
                    KV_CHECK(hi < st->heap_len && st->heap[hi] == e);
                }
            }
        }
        KV_CHECK(used == tb->used);
    }
    KV_CHECK(with_ttl == st->heap_len && st->heap_len <= st->heap_cap);
    for (uint32_t i = 1; i < st->heap_len; i++)
        KV_CHECK(entry_cmp(st->heap[(i - 1) / 2], st->heap[i]) < 0);
    KV_CHECK(bytes == st->entry_bytes);
    KV_CHECK(used_bytes == st->used_bytes);
    KV_CHECK(hash_keys == st->hash_keys);
    /* kv_index: well formed, and holding exactly the tables' entries. */
    KV_CHECK(kv_index_check(&st->idx) == 0 && st->idx.count == kv_state_keys(st));
    for (int t = 0; t <= st->rehashing; t++)
        for (uint64_t i = 0; i < st->t[t].size; i++)
            for (const struct kv_entry *e = st->t[t].buckets[i]; e; e = e->next)
                KV_CHECK(kv_index_find(&st->idx, e->data, e->key_len) == e);
    /* Idempotency records: FIFO in strictly increasing index, each in its
     * bucket once, counts and bytes as accounted. */
    const struct idem_table *it = &kv->idem;
    uint64_t in = 0, ibytes = 0, prev_index = 0;
    const struct idem_rec *older = NULL;
    for (const struct idem_rec *r = it->oldest; r; older = r, r = r->newer) {
        in++;
        ibytes += malloc_usable_size((void *)(uintptr_t)r);
        KV_CHECK(r->older == older && r->index > prev_index && r->index <= kv->applied_index);
        KV_CHECK(r->key_len >= 1 && r->key_len <= KV_IDEM_KEY_BYTES_MAX);
        KV_CHECK(r->hash == kv_idem_hash(kv, r->key, r->key_len));
        KV_CHECK(kv_idem_find(it, r->hash, r->key, r->key_len) == r);
        prev_index = r->index;
    }
    KV_CHECK(it->newest == older && in == it->count && ibytes == it->bytes);
    KV_CHECK(it->size == 0 ? it->count == 0 : (it->size & (it->size - 1)) == 0);
    const struct kv_snapshot_cursor *cur = st->cow;
    KV_CHECK(!cur || (kv->snapshots_open == 1 && cur->registered == kv));
    if (cur && cur->table < CUR_RETAINED) {
        /* Every entry of S is emitted, still in an unvisited bucket, or
         * retained: their sum is S's key count. */
        uint64_t rn = 0, rbytes = 0, unvisited = 0;
        for (const struct kv_entry *e = cur->retained; e; e = e->next) {
            rn++;
            rbytes += malloc_usable_size((void *)(uintptr_t)e);
            KV_CHECK(e->version <= cur->version_max && entry_heap_idx(e) == KV_HEAP_NONE);
        }
        KV_CHECK(rn == cur->retained_n && rbytes == cur->retained_bytes);
        for (int t = cur->table; t <= st->rehashing; t++) {
            const struct kv_table *tb = &st->t[t];
            for (uint64_t i = t == cur->table ? cur->bucket : 0; i < tb->size; i++)
                for (const struct kv_entry *e = tb->buckets[i]; e; e = e->next)
                    unvisited += e->version <= cur->version_max;
        }
        KV_CHECK(cur->written + unvisited + rn == cur->keys);
    }
#undef KV_CHECK
    return 0;
}

uint64_t kv_applied_index(const struct kv *kv)
{
    return kv->applied_index;
}

uint64_t kv_clock_ms(const struct kv *kv)
{
    return kv->clock_ms;
}

void kv_stats(const struct kv *kv, struct kv_stats *out)
{
    const struct kv_state *st = &kv->st;
    out->keys = kv_state_keys(st);
    out->keys_with_ttl = st->heap_len;
    out->buckets = st->t[0].size + st->t[1].size;
    out->memory_bytes = st->entry_bytes + out->buckets * sizeof(struct kv_entry *) +
                        (uint64_t)st->heap_cap * sizeof(struct kv_entry *) + sizeof(*kv) +
                        (st->cow ? st->cow->retained_bytes : 0) + kv->idem.bytes + st->idx.bytes +
                        kv->idem.size * sizeof(struct idem_rec *);
    out->used_bytes = st->used_bytes;
    out->rehashing = st->rehashing;
    out->applied_index = kv->applied_index;
    out->idem_records = kv->idem.count;
    out->idem_bytes = kv->idem.bytes + kv->idem.size * sizeof(struct idem_rec *);
    out->clock_ms = kv->clock_ms;
    out->index_bytes = st->idx.bytes;
}

uint64_t kv_used_bytes(const struct kv *kv)
{
    return kv->st.used_bytes;
}

uint64_t kv_entry_used_bytes(const struct kv *kv, const void *key, size_t key_len)
{
    if (key_len == 0 || key_len > KV_KEY_BYTES_HARD_MAX) return 0;
    const struct kv_entry *e =
        kv_state_find(&kv->st, kv_hash(kv, key, key_len), key, key_len, NULL, NULL);
    return e ? kv_used_bytes_of(e->key_len, e->value_len) : 0;
}

uint32_t kv_key_hash(const struct kv *kv, const void *key, size_t key_len)
{
    return kv_hash(kv, key, key_len);
}

static void sample_fill(struct kv_sample *s, const struct kv_entry *e)
{
    s->key = e->data;
    s->key_len = e->key_len;
    s->hash = e->hash;
    s->version = e->version;
    s->expire_at_ms = entry_expire(e);
    s->used_bytes = kv_used_bytes_of(e->key_len, e->value_len);
}

static uint64_t sample_rnd(uint64_t *x)
{
    /* splitmix64: the caller's seed spread over the draws */
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

size_t kv_sample(const struct kv *kv, enum kv_sample_from from, uint64_t rnd, struct kv_sample *out,
                 size_t cap)
{
    const struct kv_state *st = &kv->st;
    size_t n = 0;
    if (from == KV_SAMPLE_SOONEST) {
        for (uint32_t i = 0; i < st->heap_len && n < cap; i++)
            sample_fill(&out[n++], st->heap[i]);
        return n;
    }
    if (from == KV_SAMPLE_TTL) {
        while (st->heap_len && n < cap)
            sample_fill(&out[n++], st->heap[sample_rnd(&rnd) % st->heap_len]);
        return n;
    }
    if (kv_state_keys(st) == 0) return 0;
    /* Random buckets of the tables in proportion to their keys; an empty
     * bucket costs a probe (at load >= 1/8 about 8 per key at worst). */
    size_t probes = cap * 64;
    while (n < cap && probes-- > 0) {
        uint64_t r = sample_rnd(&rnd);
        int t = st->rehashing && (r >> 32) % kv_state_keys(st) < st->t[1].used ? 1 : 0;
        const struct kv_table *tb = &st->t[t];
        if (tb->size == 0 || tb->used == 0) continue;
        const struct kv_entry *e = tb->buckets[r & (tb->size - 1)];
        for (; e && n < cap; e = e->next)
            sample_fill(&out[n++], e);
    }
    return n;
}

int kv_rehash_step(struct kv *kv, uint32_t buckets)
{
    ST_ASSERT(!kv->restoring);
    kv_state_rehash_step(&kv->st, buckets); /* nothing while a snapshot cursor is open */
    return kv->st.rehashing;
}

static uint64_t entry_digest(const struct kv_entry *e)
{
    uint8_t meta[24];
    put_u64(meta, e->version);
    put_u64(meta + 8, entry_expire(e));
    put_u32(meta + 16, e->key_len);
    put_u32(meta + 20, e->value_len);
    uint64_t h = kv_siphash13(0x0123456789abcdefULL, 0xfedcba9876543210ULL, meta, sizeof(meta));
    if (entry_type(e) == KV_TYPE_HASH) h = ~h; /* strings digest as before types existed */
    return h ^ kv_siphash13(h, 0x5bd1e9955bd1e995ULL, e->data, (size_t)e->key_len + e->value_len);
}

uint64_t kv_digest(const struct kv *kv)
{
    uint64_t sum = 0;
    for (int t = 0; t < 2; t++) {
        const struct kv_table *tb = &kv->st.t[t];
        for (uint64_t i = 0; i < tb->size; i++)
            for (const struct kv_entry *e = tb->buckets[i]; e; e = e->next)
                sum += entry_digest(e);
    }
    /* The idempotency table and the log clock are replicated state too. */
    uint64_t isum = 0;
    for (const struct idem_rec *r = kv->idem.oldest; r; r = r->newer)
        isum += kv_idem_rec_digest(r);
    uint8_t tail[24];
    put_u64(tail, kv->idem.count);
    put_u64(tail + 8, kv->clock_ms);
    put_u64(tail + 16, isum);
    return (sum ^ kv_state_keys(&kv->st)) +
           kv_siphash13(0x3f84d5b5b5470917ULL, 0x9216d5d98979fb1bULL, tail, sizeof(tail)) +
           kv_auth_digest(kv) +   /* 0 for an empty auth table: digests of older states hold */
           kv_session_digest(kv); /* likewise */
}
