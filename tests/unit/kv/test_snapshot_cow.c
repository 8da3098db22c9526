/* kv snapshot cursor under mutation (copy-on-write): a cursor begun at
 * state S must produce exactly S while puts, deletes, CAS, TTL changes,
 * purges, growth and rehash steps run between its steps; the live kv must
 * end as if no snapshot had run; ending a cursor early frees what it kept. */
#include <stdio.h>

#include "test.h"

#include "kvtest.h"
#include "util/assert.h"
#include "util/rng.h"

#define POOL_KEYS 200u
#define NAMES_MAX 8192u

/* Every key name a run used, to compare two kvs key by key. */
struct names {
    char (*v)[16];
    unsigned n;
};

static void names_add(struct names *nm, const char *key)
{
    ST_ASSERT(nm->n < NAMES_MAX);
    snprintf(nm->v[nm->n++], sizeof(nm->v[0]), "%s", key);
}

/* A random command applied to `a` and to `shadow` (which never has a cursor)
 * at the same index; both must give the same result. Returns 0 or an ST_E*. */
struct world {
    struct st_rng rng;
    struct kv *a, *shadow;
    uint64_t idx, ts;
    unsigned new_keys;
    struct names nm;
    uint8_t val[600];
};

static int same_result(const struct kv_result *x, const struct kv_result *y)
{
    return x->status == y->status && x->version == y->version && x->created == y->created &&
           x->purged == y->purged && x->purge_more == y->purge_more;
}

static int apply_both(struct world *w, const struct kv_command *c)
{
    struct kv_result r1, r2;
    w->idx++;
    int rc = kvt_apply_cmd(w->a, w->idx, c, &r1);
    if (rc != 0) return rc;
    rc = kvt_apply_cmd(w->shadow, w->idx, c, &r2);
    if (rc != 0) return rc;
    return same_result(&r1, &r2) ? 0 : ST_ECORRUPT;
}

static int put_key(struct world *w, const char *key, enum kv_cond cond, uint64_t cond_version)
{
    /* Sizes around the current one: equal (in place), smaller, bigger, a
     * different allocation class. */
    struct kv_view v;
    size_t cur = kv_get(w->a, key, strlen(key), 0, &v) == 0 ? v.value_len : 0;
    size_t len;
    switch (st_rng_below(&w->rng, 5)) {
    case 0:
        len = cur;
        break;
    case 1:
        len = cur > 0 ? (size_t)st_rng_below(&w->rng, cur) : 0;
        break;
    case 2: {
        size_t more = 1 + (size_t)st_rng_below(&w->rng, 40); /* ST_MIN evaluates twice */
        len = ST_MIN(cur + more, sizeof(w->val));
        break;
    }
    default:
        len = (size_t)st_rng_below(&w->rng, sizeof(w->val));
        break;
    }
    for (size_t i = 0; i < len; i++)
        w->val[i] = (uint8_t)(w->idx * 31 + i);
    uint64_t ttl = st_rng_chance(&w->rng, 1, 3) ? 1 + st_rng_below(&w->rng, 3000) : 0;
    struct kv_command c = {.type = KV_CMD_PUT,
                           .cond = cond,
                           .req = {9, w->idx + 1},
                           .timestamp_ms = w->ts,
                           .ttl_ms = ttl,
                           .cond_version = cond_version,
                           .key = (const uint8_t *)key,
                           .key_len = (uint32_t)strlen(key),
                           .value = w->val,
                           .value_len = (uint32_t)len};
    return apply_both(w, &c);
}

static int random_op(struct world *w)
{
    char key[16];
    w->ts += st_rng_below(&w->rng, 40);
    snprintf(key, sizeof(key), "k%u", (unsigned)st_rng_below(&w->rng, POOL_KEYS));
    struct kv_view v;
    int present = kv_get(w->a, key, strlen(key), 0, &v) == 0;
    uint64_t cur_version = present ? v.version : 0;
    uint64_t roll = st_rng_below(&w->rng, 100);
    if (roll < 40) return put_key(w, key, KV_COND_NONE, 0);
    if (roll < 47) return put_key(w, key, KV_COND_IF_ABSENT, 0);
    if (roll < 57) /* CAS, right or wrong version */
        return put_key(w, key, KV_COND_IF_VERSION,
                       st_rng_chance(&w->rng, 3, 4) ? cur_version : cur_version + 1);
    if (roll < 77) {
        struct kv_command c = {.type = KV_CMD_DELETE,
                               .cond =
                                   st_rng_chance(&w->rng, 1, 4) ? KV_COND_IF_VERSION : KV_COND_NONE,
                               .req = {9, w->idx + 1},
                               .timestamp_ms = w->ts,
                               .cond_version = cur_version,
                               .key = (const uint8_t *)key,
                               .key_len = (uint32_t)strlen(key)};
        return apply_both(w, &c);
    }
    if (roll < 85) {
        struct kv_command c = {.type = KV_CMD_PURGE_EXPIRED,
                               .req = {9, w->idx + 1},
                               .timestamp_ms = w->ts,
                               .keys_max = (uint32_t)st_rng_below(&w->rng, 8)};
        return apply_both(w, &c);
    }
    if (roll < 92) { /* a burst of new keys: what would be a resize */
        unsigned n = 1 + (unsigned)st_rng_below(&w->rng, 30);
        for (unsigned i = 0; i < n && w->nm.n < NAMES_MAX; i++) {
            snprintf(key, sizeof(key), "n%u", w->new_keys++);
            names_add(&w->nm, key);
            int rc = put_key(w, key, KV_COND_NONE, 0);
            if (rc != 0) return rc;
        }
        return 0;
    }
    if (roll < 96) {
        (void)kv_rehash_step(w->a, 1 + (uint32_t)st_rng_below(&w->rng, 8));
        return 0;
    }
    /* Time passes: keys expire without being purged. */
    w->ts += st_rng_below(&w->rng, 2000);
    return 0;
}

/* 0 if x and y hold the same keys with the same values, versions and
 * expiries (expired-not-purged keys included: read at time 0). */
static int same_keys(const struct kv *x, const struct kv *y, const struct names *nm)
{
    struct kv_stats sx, sy;
    kv_stats(x, &sx);
    kv_stats(y, &sy);
    if (sx.keys != sy.keys || sx.keys_with_ttl != sy.keys_with_ttl) return -1;
    if (kv_digest(x) != kv_digest(y)) return -2;
    for (unsigned i = 0; i < nm->n; i++) {
        const char *k = nm->v[i];
        struct kv_view vx, vy;
        int rx = kv_get(x, k, strlen(k), 0, &vx), ry = kv_get(y, k, strlen(k), 0, &vy);
        if (rx != ry) return -3;
        if (rx != 0) continue;
        if (vx.version != vy.version || vx.expire_at_ms != vy.expire_at_ms ||
            vx.value_len != vy.value_len || memcmp(vx.value, vy.value, vx.value_len) != 0)
            return -4;
    }
    return 0;
}

static int restore_into_new(const struct kv_config *cfg, const struct kvt_sink *s, struct kv **out,
                            struct kv_snapshot_info *info)
{
    struct kv *kv = NULL;
    int rc = kv_create(cfg, &kv);
    if (rc != 0) return rc;
    struct kv_restore *r = NULL;
    rc = kv_restore_begin(kv, &r);
    if (rc == 0) rc = kv_restore_feed(r, s->data, s->len);
    if (rc == 0) {
        rc = kv_restore_finish(r, info);
    } else if (r) {
        kv_restore_abort(r);
    }
    if (rc != 0) {
        kv_destroy(kv);
        return rc;
    }
    *out = kv;
    return 0;
}

struct run_stats {
    int rehashing_at_begin;
    int resize_held; /* the load passed 1 under the cursor: a resize waited */
};

/* One seed: build, snapshot S both ways (all at once = reference, cursor
 * under random mutation), compare. Returns 0 or a negative step code. */
static int run_seed(uint64_t seed, struct run_stats *rs)
{
    struct world w;
    memset(&w, 0, sizeof(w));
    st_rng_init(&w.rng, seed);
    w.nm.v = calloc(NAMES_MAX, sizeof(w.nm.v[0]));
    if (!w.nm.v) return ST_ENOMEM;
    char key[16];
    for (unsigned i = 0; i < POOL_KEYS; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        names_add(&w.nm, key);
    }
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.hash_seed = seed;
    cfg.buckets_initial = st_rng_chance(&w.rng, 1, 2) ? 4 : 16;
    cfg.rehash_buckets_per_op = 1 + (uint32_t)st_rng_below(&w.rng, 2);
    struct kvt_sink ref = {0}, inc = {0};
    struct kv *b = NULL, *d = NULL;
    struct kv_snapshot_cursor *cur = NULL;
    int rc = kv_create(&cfg, &w.a);
    if (rc == 0) rc = kv_create(&cfg, &w.shadow);
    unsigned ops = 100 + (unsigned)st_rng_below(&w.rng, 600);
    for (unsigned i = 0; i < ops && rc == 0; i++)
        rc = random_op(&w);
    /* Half the seeds begin in the middle of a rehash. */
    struct kv_stats st;
    kv_stats(w.a, &st);
    if (rc == 0 && st_rng_chance(&w.rng, 1, 2)) {
        for (unsigned i = 0; i < 2000 && rc == 0 && !st.rehashing; i++) {
            snprintf(key, sizeof(key), "n%u", w.new_keys++);
            names_add(&w.nm, key);
            rc = put_key(&w, key, KV_COND_NONE, 0);
            kv_stats(w.a, &st);
        }
    }
    rs->rehashing_at_begin = st.rehashing;
    uint64_t s_index = w.idx;
    if (rc == 0) rc = kv_snapshot_write(w.a, s_index, "m", 1, kvt_sink_cb, &ref);
    if (rc == 0) rc = restore_into_new(&cfg, &ref, &b, NULL); /* b = S */
    if (rc == 0) rc = kv_snapshot_begin(w.a, s_index, "m", 1, kvt_sink_cb, &inc, &cur);
    /* Mutations between steps of random small budgets; some mutations
     * continue after the cursor finished, before it is ended. */
    int step_rc = 1;
    unsigned after = 0;
    for (unsigned i = 0; rc == 0 && after < 20; i++) {
        if (step_rc == 1 && st_rng_chance(&w.rng, 1, 4)) {
            step_rc = kv_snapshot_next(cur, 1 + (size_t)st_rng_below(&w.rng, 3000));
            if (step_rc < 0) rc = step_rc;
        } else {
            rc = random_op(&w);
            if (step_rc == 0) after++;
        }
        kv_stats(w.a, &st);
        if (step_rc == 1 && !st.rehashing && st.keys > st.buckets) rs->resize_held = 1;
        if (rc == 0 && i % 16 == 0 && kv_check_invariants(w.a) != 0) rc = -100;
    }
    kv_snapshot_end(cur);
    if (rc == 0 && kv_check_invariants(w.a) != 0) rc = -101;
    struct kv_snapshot_info info = {0};
    if (rc == 0) rc = restore_into_new(&cfg, &inc, &d, &info);
    if (rc == 0 && (info.applied_index != s_index || info.meta_len != 1)) rc = -102;
    free(info.meta);
    if (rc == 0) {
        int c = same_keys(b, d, &w.nm); /* the snapshot holds exactly S */
        if (c != 0) rc = -110 + c;
    }
    if (rc == 0) {
        int c = same_keys(w.a, w.shadow, &w.nm); /* the live kv went on as without */
        if (c != 0) rc = -120 + c;
    }
    /* The rehash resumes once the cursor is gone. */
    for (unsigned i = 0; rc == 0 && i < 100000 && kv_rehash_step(w.a, 64); i++)
        ;
    if (rc == 0 && (kv_check_invariants(w.a) != 0 || kv_rehash_step(w.a, 1) != 0)) rc = -130;
    kv_destroy(w.a);
    kv_destroy(w.shadow);
    kv_destroy(b);
    kv_destroy(d);
    free(ref.data);
    free(inc.data);
    free(w.nm.v);
    return rc;
}

TEST(cursor_under_random_mutations_emits_exactly_the_state_at_begin)
{
    int seeds_rehashing = 0, seeds_resize_held = 0;
    for (uint64_t seed = 1; seed <= 300; seed++) {
        struct run_stats rs = {0};
        int rc = run_seed(seed, &rs);
        if (rc != 0) fprintf(stderr, "seed %llu: %d\n", (unsigned long long)seed, rc);
        ASSERT_EQ(rc, 0);
        seeds_rehashing += rs.rehashing_at_begin;
        seeds_resize_held += rs.resize_held;
    }
    ASSERT_GE(seeds_rehashing, 50);   /* the walk across both tables was covered */
    ASSERT_GE(seeds_resize_held, 20); /* and growth under an open cursor */
    fprintf(stderr, "seeds: %d began mid-rehash, %d grew past load 1 under the cursor\n",
            seeds_rehashing, seeds_resize_held);
}

/* A kv of n keys "c<i>" (value "v<i>", every third with a TTL), index = i. */
static struct kv *fill_small(const struct kv_config *cfg, unsigned n, uint64_t *idx)
{
    struct kv *kv = NULL;
    if (kv_create(cfg, &kv) != 0) return NULL;
    char key[16], val[16];
    struct kv_result r;
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "c%u", i);
        snprintf(val, sizeof(val), "v%u", i);
        if (kvt_put(kv, ++*idx, 100, key, val, i % 3 ? 0 : 500, KV_COND_NONE, 0, &r) != 0) {
            kv_destroy(kv);
            return NULL;
        }
    }
    return kv;
}

TEST(deletes_and_rewrites_under_a_cursor_are_retained_and_freed_by_an_early_end)
{
    uint64_t idx = 0;
    struct kv *a = fill_small(NULL, 2000, &idx);
    ASSERT_TRUE(a != NULL);
    struct kv_stats before, during, after;
    kv_stats(a, &before);
    struct kvt_sink s = {0};
    struct kv_snapshot_cursor *cur = NULL, *cur2 = NULL;
    ASSERT_EQ(kv_snapshot_begin(a, idx, NULL, 0, kvt_sink_cb, &s, &cur), 0);
    ASSERT_EQ(kv_snapshot_begin(a, idx, NULL, 0, kvt_sink_cb, &s, &cur2), ST_EBUSY);
    ASSERT_EQ(kv_snapshot_next(cur, 500), 1); /* a few buckets emitted */
    /* Rewrite every key with a same-size value (the in-place path), delete,
     * purge the TTL keys: the unvisited ones must be kept for the cursor. */
    struct kv_result r;
    char key[16];
    for (unsigned i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "c%u", i);
        if (i % 3 == 1) ASSERT_EQ(kvt_put(a, ++idx, 200, key, "xx", 0, KV_COND_NONE, 0, &r), 0);
        if (i % 3 == 2) ASSERT_EQ(kvt_del(a, ++idx, 200, key, KV_COND_NONE, 0, &r), 0);
    }
    ASSERT_EQ(kvt_purge(a, ++idx, 1000, 0, &r), 0);
    ASSERT_EQ(r.purged, 667);
    ASSERT_EQ(kv_check_invariants(a), 0);
    kv_stats(a, &during);
    ASSERT_EQ(during.keys, 667);
    ASSERT_EQ(during.keys_with_ttl, 0);
    /* The retained entries are counted: about as many bytes as before. */
    ASSERT_GE(during.memory_bytes, before.memory_bytes * 9 / 10);
    kv_snapshot_end(cur); /* early: LeakSanitizer checks the retained entries went */
    kv_stats(a, &after);
    ASSERT_LE(after.memory_bytes * 2, before.memory_bytes);
    ASSERT_EQ(kv_check_invariants(a), 0);
    /* A new cursor can start and completes with the new state. */
    free(s.data);
    memset(&s, 0, sizeof(s));
    ASSERT_EQ(kv_snapshot_begin(a, idx, NULL, 0, kvt_sink_cb, &s, &cur), 0);
    ASSERT_EQ(kv_snapshot_next(cur, 0), 0);
    kv_snapshot_end(cur);
    struct kv *b = NULL;
    struct kv_snapshot_info info;
    ASSERT_EQ(restore_into_new(NULL, &s, &b, &info), 0);
    ASSERT_EQ(info.keys, 667);
    ASSERT_EQ((long long)kv_digest(a), (long long)kv_digest(b));
    ASSERT_TRUE(kvt_has(b, "c1", "xx", 0));
    kv_destroy(b);
    free(s.data);
    kv_destroy(a);
}

TEST(rehash_in_progress_at_begin_pauses_and_resumes_after_the_cursor)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.buckets_initial = 4;
    cfg.rehash_buckets_per_op = 1;
    uint64_t idx = 0;
    struct kv *a = NULL;
    ASSERT_EQ(kv_create(&cfg, &a), 0);
    struct kv_result r;
    struct kv_stats st;
    char key[16];
    unsigned n = 0;
    do {
        snprintf(key, sizeof(key), "c%u", n++);
        ASSERT_EQ(kvt_put(a, ++idx, 100, key, "v", 0, KV_COND_NONE, 0, &r), 0);
        kv_stats(a, &st);
    } while (!(st.rehashing && n > 500));
    struct kvt_sink ref = {0}, s = {0};
    ASSERT_EQ(kv_snapshot_write(a, idx, NULL, 0, kvt_sink_cb, &ref), 0);
    uint64_t s_index = idx;
    uint64_t buckets = st.buckets;
    struct kv_snapshot_cursor *cur = NULL;
    ASSERT_EQ(kv_snapshot_begin(a, idx, NULL, 0, kvt_sink_cb, &s, &cur), 0);
    /* Delete every key (this would empty t[0] and end the rehash), then add
     * many more (this would start a resize): the tables must not change. */
    for (unsigned i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "c%u", i);
        ASSERT_EQ(kvt_del(a, ++idx, 100, key, KV_COND_NONE, 0, &r), 0);
    }
    for (unsigned i = 0; i < 4 * n; i++) {
        snprintf(key, sizeof(key), "d%u", i);
        ASSERT_EQ(kvt_put(a, ++idx, 100, key, "w", 0, KV_COND_NONE, 0, &r), 0);
    }
    ASSERT_EQ(kv_rehash_step(a, 1000), 1); /* paused */
    kv_stats(a, &st);
    ASSERT_TRUE(st.rehashing);
    ASSERT_EQ(st.buckets, buckets);
    ASSERT_EQ(kv_check_invariants(a), 0);
    int rc;
    while ((rc = kv_snapshot_next(cur, 100)) == 1)
        ;
    ASSERT_EQ(rc, 0);
    kv_snapshot_end(cur);
    struct kv *b = NULL, *c = NULL;
    ASSERT_EQ(restore_into_new(&cfg, &ref, &b, NULL), 0);
    ASSERT_EQ(restore_into_new(&cfg, &s, &c, NULL), 0);
    ASSERT_EQ(kv_applied_index(c), s_index);
    ASSERT_EQ((long long)kv_digest(b), (long long)kv_digest(c));
    ASSERT_TRUE(kvt_has(c, "c0", "v", 0));
    ASSERT_FALSE(kvt_has(c, "d0", "w", 0));
    /* Afterwards the rehash runs again and the table grows to the load. */
    while (kv_rehash_step(a, 64))
        ;
    ASSERT_EQ(kvt_put(a, ++idx, 100, "e", "x", 0, KV_COND_NONE, 0, &r), 0);
    while (kv_rehash_step(a, 64))
        ;
    kv_stats(a, &st);
    ASSERT_EQ(st.keys, 4 * (uint64_t)n + 1);
    ASSERT_GE(st.buckets, st.keys / 2);
    ASSERT_EQ(kv_check_invariants(a), 0);
    kv_destroy(b);
    kv_destroy(c);
    free(ref.data);
    free(s.data);
    kv_destroy(a);
}

/* A resize skipped while a cursor was open must happen when it ends, not
 * only at the next insert: a workload that then only overwrites (a fixed
 * key set) kept chains of two and more per bucket for good. */
TEST(growth_deferred_by_a_cursor_happens_when_it_ends_without_new_keys)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.buckets_initial = 16;
    struct kv *a = NULL;
    ASSERT_EQ(kv_create(&cfg, &a), 0);
    struct kv_result r;
    struct kv_stats st;
    uint64_t idx = 0;
    char key[16];
    struct kvt_sink s = {0};
    struct kv_snapshot_cursor *cur = NULL;
    ASSERT_EQ(kv_snapshot_begin(a, idx, NULL, 0, kvt_sink_cb, &s, &cur), 0);
    for (unsigned i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        ASSERT_EQ(kvt_put(a, ++idx, 100, key, "v", 0, KV_COND_NONE, 0, &r), 0);
    }
    kv_stats(a, &st);
    ASSERT_EQ(st.buckets, 16); /* paused under the cursor */
    int rc;
    while ((rc = kv_snapshot_next(cur, 100)) == 1)
        ;
    ASSERT_EQ(rc, 0);
    kv_snapshot_end(cur);
    /* Overwrites only, and idle steps. */
    for (unsigned i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "k%u", i);
        ASSERT_EQ(kvt_put(a, ++idx, 100, key, "w", 0, KV_COND_NONE, 0, &r), 0);
    }
    while (kv_rehash_step(a, 64))
        ;
    kv_stats(a, &st);
    ASSERT_EQ(st.keys, 1000);
    ASSERT_GE(st.buckets, st.keys); /* load <= 1 again */
    ASSERT_EQ(kv_check_invariants(a), 0);
    free(s.data);
    kv_destroy(a);
}

TEST(a_restore_waits_for_the_cursor_to_end)
{
    uint64_t idx = 0;
    struct kv *a = fill_small(NULL, 100, &idx);
    ASSERT_TRUE(a != NULL);
    struct kvt_sink s = {0}, ref = {0};
    ASSERT_EQ(kv_snapshot_write(a, idx, NULL, 0, kvt_sink_cb, &ref), 0);
    struct kv_snapshot_cursor *cur = NULL;
    ASSERT_EQ(kv_snapshot_begin(a, idx, NULL, 0, kvt_sink_cb, &s, &cur), 0);
    struct kv_result r;
    ASSERT_EQ(kvt_del(a, ++idx, 100, "c5", KV_COND_NONE, 0, &r), 0);
    struct kv_restore *rs = NULL;
    ASSERT_EQ(kv_restore_begin(a, &rs), ST_EBUSY);
    kv_snapshot_end(cur); /* the owner ends (aborts) the cursor first */
    ASSERT_EQ(kv_restore_begin(a, &rs), 0);
    ASSERT_EQ(kv_restore_feed(rs, ref.data, ref.len), 0);
    ASSERT_EQ(kv_restore_finish(rs, NULL), 0);
    ASSERT_TRUE(kvt_has(a, "c5", "v5", 0));
    ASSERT_EQ(kv_check_invariants(a), 0);
    free(s.data);
    free(ref.data);
    kv_destroy(a);
}

TEST_MAIN()
