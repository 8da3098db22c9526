/* The ordered index (kv_index.h) and listing (kv_list.h): randomized
 * operations against a reference (a sorted array), with the full invariant
 * check after every step for small trees and periodically for large ones;
 * then the kv paths that must keep it in step (put that reallocates,
 * delete, purge, evict, copy-on-write under a snapshot cursor, restore).
 * Seeded and deterministic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv_index.h"
#include "kv/kv_int.h"
#include "kv/kv_list.h"
#include "kvtest.h"
#include "test.h"

static const struct kv_config test_cfg; /* no allocation seam */
static uint64_t rnd_state;
static uint64_t rnd(void)
{
    uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static struct kv_entry *mk_entry(const uint8_t *key, size_t len)
{
    /* room for the padded struct too (the compiler's view of the type) */
    struct kv_entry *e = calloc(1, sizeof(struct kv_entry) + entry_size(len, 0, 0));
    e->key_len = (uint16_t)len;
    memcpy(e->data, key, len);
    return e;
}

/* Keys from a small alphabet with varied lengths, so prefixes nest and
 * shorter-first ordering is exercised. */
static size_t rnd_key(uint8_t *buf, uint64_t space)
{
    uint64_t v = rnd() % space;
    size_t len = 1 + (size_t)(v % 4);
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)("ab\0\xff"[(v >> (2 * i + 2)) & 3]);
    }
    return len;
}

static int ref_cmp(const void *a, const void *b)
{
    const struct kv_entry *x = *(struct kv_entry *const *)a, *y = *(struct kv_entry *const *)b;
    return kv_index_key_cmp(x->data, x->key_len, y);
}

/* The reference: entries sorted by key. */
struct ref {
    struct kv_entry **e;
    size_t n, cap;
};

static size_t ref_lower(const struct ref *r, const uint8_t *key, size_t len)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (kv_index_key_cmp(key, len, r->e[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void check_against(const struct kv_index *ix, const struct ref *r)
{
    ASSERT_EQ(kv_index_check(ix), 0);
    ASSERT_EQ(ix->count, r->n);
    struct kv_index_iter it;
    kv_index_seek(ix, &it, "", 0);
    for (size_t i = 0; i < r->n; i++) {
        ASSERT_TRUE(kv_index_iter_entry(&it) == r->e[i]);
        kv_index_iter_next(&it);
    }
    ASSERT_TRUE(kv_index_iter_entry(&it) == NULL);
}

static void random_ops(uint64_t seed, size_t steps, uint64_t space, size_t full_check_every)
{
    rnd_state = seed;
    struct kv_index ix;
    kv_index_init(&ix);
    struct ref r = {0};
    uint8_t key[8];
    for (size_t step = 0; step < steps; step++) {
        uint64_t op = rnd() % 100;
        size_t len = rnd_key(key, space);
        size_t p = ref_lower(&r, key, len);
        int present = p < r.n && kv_index_key_cmp(key, len, r.e[p]) == 0;
        ASSERT_TRUE(kv_index_find(&ix, key, len) == (present ? r.e[p] : NULL));
        /* Bias to inserts early, to deletes late: trees grow and shrink. */
        int grow = step < steps / 2 ? op < 65 : op < 35;
        if (!present && grow) {
            struct kv_entry *e = mk_entry(key, len);
            ASSERT_EQ(kv_index_reserve(&ix, &test_cfg), 0);
            kv_index_insert(&ix, e);
            if (r.n == r.cap) {
                r.cap = r.cap ? 2 * r.cap : 64;
                r.e = realloc(r.e, r.cap * sizeof(*r.e));
            }
            memmove(&r.e[p + 1], &r.e[p], (r.n - p) * sizeof(*r.e));
            r.e[p] = e;
            r.n++;
        } else if (present && op % 3 == 0) {
            /* Replace: a new allocation with the same key (as apply_put). */
            struct kv_entry *e = mk_entry(key, len);
            kv_index_replace(&ix, r.e[p], e);
            free(r.e[p]);
            r.e[p] = e;
        } else if (present) {
            kv_index_remove(&ix, r.e[p]);
            free(r.e[p]);
            memmove(&r.e[p], &r.e[p + 1], (r.n - p - 1) * sizeof(*r.e));
            r.n--;
        }
        if (r.n < 300 || step % full_check_every == 0) check_against(&ix, &r);
        /* A seek lands on the reference's lower bound. */
        size_t slen = rnd_key(key, space);
        struct kv_index_iter it;
        kv_index_seek(&ix, &it, key, slen);
        size_t q = ref_lower(&r, key, slen);
        ASSERT_TRUE(kv_index_iter_entry(&it) == (q < r.n ? r.e[q] : NULL));
    }
    check_against(&ix, &r);
    /* Delete everything in random order: the tree shrinks to nothing. */
    while (r.n > 0) {
        size_t p = rnd() % r.n;
        kv_index_remove(&ix, r.e[p]);
        free(r.e[p]);
        memmove(&r.e[p], &r.e[p + 1], (r.n - p - 1) * sizeof(*r.e));
        r.n--;
        if (r.n < 300 || r.n % full_check_every == 0) check_against(&ix, &r);
    }
    ASSERT_TRUE(ix.root == NULL && ix.height == 0);
    kv_index_free(&ix);
    ASSERT_EQ(ix.bytes, 0);
    free(r.e);
}

TEST(index_small_random_against_sorted_array)
{
    for (uint64_t seed = 1; seed <= 20; seed++)
        random_ops(seed, 3000, 1u << 10, 1);
}

TEST(index_large_random_against_sorted_array)
{
    /* 4 bytes over 4 symbols: up to 340 distinct keys; for size use a
     * binary key space instead. */
    rnd_state = 99;
    struct kv_index ix;
    kv_index_init(&ix);
    size_t n = getenv("ST_SANITIZED") ? 20000 : 200000;
    struct kv_entry **all = calloc(n, sizeof(*all));
    for (size_t i = 0; i < n; i++) {
        uint8_t k[8];
        uint64_t v = rnd();
        memcpy(k, &v, 8);
        all[i] = mk_entry(k, 1 + (size_t)(v % 8));
        if (kv_index_find(&ix, all[i]->data, all[i]->key_len)) {
            free(all[i]);
            all[i] = NULL;
            continue;
        }
        ASSERT_EQ(kv_index_reserve(&ix, &test_cfg), 0);
        kv_index_insert(&ix, all[i]);
        if (i % 20000 == 0) ASSERT_EQ(kv_index_check(&ix), 0);
    }
    ASSERT_EQ(kv_index_check(&ix), 0);
    ASSERT_LE(ix.height, 5);
    /* Sequential deletes from the front (a pattern that empties leaves one
     * side first): fill bounds hold, memory per key stays bounded. */
    struct ref r = {0};
    for (size_t i = 0; i < n; i++)
        if (all[i]) all[r.n++] = all[i];
    r.e = all;
    qsort(r.e, r.n, sizeof(*r.e), ref_cmp);
    check_against(&ix, &r);
    size_t half = r.n / 2;
    for (size_t i = 0; i < half; i++) {
        kv_index_remove(&ix, r.e[i]);
        free(r.e[i]);
        if (i % 10000 == 0) ASSERT_EQ(kv_index_check(&ix), 0);
    }
    memmove(r.e, &r.e[half], (r.n - half) * sizeof(*r.e));
    r.n -= half;
    check_against(&ix, &r);
    ASSERT_LE(ix.bytes / r.n, 4 * sizeof(void *) + 8); /* worst fill: a quarter */
    for (size_t i = 0; i < r.n; i++)
        free(r.e[i]);
    kv_index_free(&ix);
    free(all);
}

TEST(index_shorter_key_sorts_first_and_zero_bytes_count)
{
    struct kv_index ix;
    kv_index_init(&ix);
    const char *keys[] = {"b", "a\0", "a", "ab", "\xff", "a\xff"};
    size_t lens[] = {1, 2, 1, 2, 1, 2};
    struct kv_entry *e[6];
    for (int i = 0; i < 6; i++) {
        e[i] = mk_entry((const uint8_t *)keys[i], lens[i]);
        ASSERT_EQ(kv_index_reserve(&ix, &test_cfg), 0);
        kv_index_insert(&ix, e[i]);
    }
    int want[] = {2, 1, 3, 5, 0, 4}; /* a, a\0, ab, a\xff, b, \xff */
    struct kv_index_iter it;
    kv_index_seek(&ix, &it, "", 0);
    for (int i = 0; i < 6; i++) {
        ASSERT_TRUE(kv_index_iter_entry(&it) == e[want[i]]);
        kv_index_iter_next(&it);
    }
    ASSERT_TRUE(kv_index_iter_entry(&it) == NULL);
    kv_index_free(&ix);
    for (int i = 0; i < 6; i++)
        free(e[i]);
}

/* ---------- through the kv ---------- */

struct collect {
    char keys[4096];
    size_t len;
};

static int collect_cb(void *ctx, const struct kv_list_item *it)
{
    struct collect *c = ctx;
    memcpy(c->keys + c->len, it->key, it->key_len);
    c->len += it->key_len;
    c->keys[c->len++] = ',';
    c->keys[c->len] = 0;
    return 0;
}

static const char *list(const struct kv *kv, const char *prefix, const char *start, const char *end,
                        uint64_t limit, struct kv_list_result *res)
{
    static struct collect c;
    c.len = 0;
    c.keys[0] = 0;
    struct kv_list_args a = {
        .prefix = (const uint8_t *)prefix,
        .prefix_len = prefix ? strlen(prefix) : 0,
        .start = (const uint8_t *)start,
        .start_len = start ? strlen(start) : 0,
        .end = (const uint8_t *)end,
        .end_len = end ? strlen(end) : 0,
        .limit = limit,
    };
    ASSERT_EQ(kv_list(kv, &a, kv_clock_ms(kv), collect_cb, &c, res), 0);
    return c.keys;
}

TEST(list_prefix_range_limit_and_expired_keys)
{
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(NULL, &kv), 0);
    struct kv_result r;
    const char *keys[] = {"app/b", "app/a", "apq", "ap", "app/c", "b", "app/"};
    uint64_t idx = 1;
    for (size_t i = 0; i < 7; i++)
        ASSERT_EQ(kvt_put(kv, idx++, 1000, keys[i], "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, idx++, 1000, "app/bb", "v", 50, KV_COND_NONE, 0, &r), 0);
    struct kv_list_result res;
    ASSERT_STREQ(list(kv, "app/", NULL, NULL, 100, &res), "app/,app/a,app/b,app/bb,app/c,");
    ASSERT_EQ(res.index, idx - 1);
    ASSERT_EQ(res.count, 5);
    ASSERT_EQ(res.more, 0);
    ASSERT_STREQ(list(kv, NULL, "apq", NULL, 100, &res), "apq,b,");
    ASSERT_STREQ(list(kv, NULL, "ap", "app/b", 100, &res), "ap,app/,app/a,");
    ASSERT_STREQ(list(kv, NULL, NULL, NULL, 3, &res), "ap,app/,app/a,");
    ASSERT_EQ(res.more, 1);
    ASSERT_MEMEQ(res.last_key, "app/a", 5);
    /* Continuation: strictly after the last key. */
    struct collect c = {0};
    struct kv_list_args a = {.start = res.last_key,
                             .start_len = res.last_key_len,
                             .start_after = 1,
                             .limit = 100,
                             .prefix = (const uint8_t *)"app",
                             .prefix_len = 3};
    ASSERT_EQ(kv_list(kv, &a, kv_clock_ms(kv), collect_cb, &c, &res), 0);
    ASSERT_STREQ(c.keys, "app/b,app/bb,app/c,");
    /* An expired key is skipped before any purge, by the clock given. */
    ASSERT_EQ(kvt_put(kv, idx++, 1100, "zz", "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_STREQ(list(kv, "app/", NULL, NULL, 100, &res), "app/,app/a,app/b,app/c,");
    ASSERT_EQ(res.count, 4);
    /* count only (no callback) */
    struct kv_list_args all = {.limit = 100};
    ASSERT_EQ(kv_list(kv, &all, kv_clock_ms(kv), NULL, NULL, &res), 0);
    ASSERT_EQ(res.count, 8);
    all.limit = 0;
    ASSERT_EQ(kv_list(kv, &all, kv_clock_ms(kv), NULL, NULL, &res), ST_EINVAL);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

/* Every kv path that frees, moves or replaces an entry keeps the index in
 * step: kv_check_invariants checks the index against the tables. */
TEST(kv_paths_keep_the_index_in_step)
{
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(NULL, &kv), 0);
    rnd_state = 7;
    struct kv_result r;
    uint64_t idx = 1, ts = 1000;
    char key[16], val[400];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = 0;
    struct kvt_sink sink = {0};
    struct kv_snapshot_cursor *cur = NULL;
    for (int step = 0; step < 20000; step++) {
        snprintf(key, sizeof key, "k%04u", (unsigned)(rnd() % 3000));
        uint64_t op = rnd() % 100;
        if (op < 55) {
            /* Values of varying size: a grown value reallocates the entry. */
            size_t vl = (size_t)(rnd() % 3 == 0 ? 300 : 5);
            char c = val[vl];
            val[vl] = 0;
            ASSERT_EQ(
                kvt_put(kv, idx++, ts, key, val, rnd() % 4 == 0 ? 20 : 0, KV_COND_NONE, 0, &r), 0);
            val[vl] = c;
        } else if (op < 80) {
            ASSERT_EQ(kvt_del(kv, idx++, ts, key, KV_COND_NONE, 0, &r), 0);
        } else if (op < 88) {
            ts += 10;
            ASSERT_EQ(kvt_purge(kv, idx++, ts, 50, &r), 0);
        } else if (op < 93) {
            const struct kv_entry *e = kv_index_find(&kv->st.idx, key, strlen(key));
            struct kv_evict_key ek = {(const uint8_t *)key, (uint32_t)strlen(key),
                                      e ? e->version : 0};
            ASSERT_EQ(kvt_evict(kv, idx++, &ek, 1, &r), 0);
        } else if (op < 96 && !cur) {
            sink.len = 0;
            ASSERT_EQ(
                kv_snapshot_begin(kv, kv_applied_index(kv), NULL, 0, kvt_sink_cb, &sink, &cur), 0);
        } else if (cur) {
            int rc = kv_snapshot_next(cur, 2048);
            ASSERT_GE(rc, 0);
            if (rc == 0) {
                kv_snapshot_end(cur);
                cur = NULL;
                /* Restore into a second kv: its index is rebuilt. */
                struct kv *k2 = NULL;
                ASSERT_EQ(kv_create(NULL, &k2), 0);
                struct kv_restore *rs = NULL;
                ASSERT_EQ(kv_restore_begin(k2, &rs), 0);
                ASSERT_EQ(kv_restore_feed(rs, sink.data, sink.len), 0);
                ASSERT_EQ(kv_restore_finish(rs, NULL), 0);
                ASSERT_EQ(kv_check_invariants(k2), 0);
                kv_destroy(k2);
            }
        }
        if (step % 500 == 0) ASSERT_EQ(kv_check_invariants(kv), 0);
    }
    if (cur) kv_snapshot_end(cur);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    /* The listing equals the keys kv_get sees, in order. */
    struct kv_list_result res;
    struct kv_list_args a = {.limit = 100000};
    ASSERT_EQ(kv_list(kv, &a, kv_clock_ms(kv), NULL, NULL, &res), 0);
    uint64_t live = 0;
    for (unsigned i = 0; i < 3000; i++) {
        snprintf(key, sizeof key, "k%04u", i);
        struct kv_view v;
        live += kv_get(kv, key, strlen(key), kv_clock_ms(kv), &v) == 0;
    }
    ASSERT_EQ(res.count, live);
    free(sink.data);
    kv_destroy(kv);
}

TEST_MAIN()
