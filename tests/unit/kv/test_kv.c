/* kv state machine: apply semantics (PUT, conditions, DELETE, TTL, purge),
 * incremental rehash under insert/delete mixes, determinism, malformed input. */
#include "test.h"

#include "kvtest.h"
#include "util/rng.h"

static struct kv *new_kv(void)
{
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return NULL;
    return kv;
}

TEST(put_then_get_returns_value_and_version_is_the_index)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 5, 1000, "a", "hello", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.version, 5);
    ASSERT_EQ(r.type, KV_CMD_PUT);
    ASSERT_EQ(r.req.node_id, 7);
    ASSERT_EQ(r.req.seq, 5);
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "a", 1, 1000, &v), 0);
    ASSERT_EQ(v.version, 5);
    ASSERT_EQ(v.expire_at_ms, 0);
    ASSERT_EQ(v.value_len, 5);
    ASSERT_MEMEQ(v.value, "hello", 5);
    ASSERT_EQ(kv_get(kv, "b", 1, 1000, &v), ST_ENOENT);
    ASSERT_EQ(kv_applied_index(kv), 5);
    ASSERT_EQ(r.created, 1);
    ASSERT_EQ(kvt_put(kv, 6, 1000, "a", "again", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(r.created, 0);
    kv_destroy(kv);
}

TEST(overwrite_grows_and_shrinks_value_in_place_or_not)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ASSERT_EQ(kvt_put(kv, 1, 0, "k", "small", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 2, 0, "k", big, 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_TRUE(kvt_has(kv, "k", big, 0));
    ASSERT_EQ(kvt_put(kv, 3, 0, "k", "tiny", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_TRUE(kvt_has(kv, "k", "tiny", 0));
    ASSERT_EQ(kvt_put(kv, 4, 0, "k", "", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_TRUE(kvt_has(kv, "k", "", 0));
    struct kv_stats s;
    kv_stats(kv, &s);
    ASSERT_EQ(s.keys, 1);
    ASSERT_LE(s.memory_bytes, 4096); /* the 5000-byte allocation was released */
    kv_destroy(kv);
}

TEST(if_version_put_succeeds_only_on_matching_version)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 0, "k", "v1", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 2, 0, "k", "v2", 0, KV_COND_IF_VERSION, 9, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.version, 1); /* current version reported */
    ASSERT_TRUE(kvt_has(kv, "k", "v1", 0));
    ASSERT_EQ(kvt_put(kv, 3, 0, "k", "v3", 0, KV_COND_IF_VERSION, 1, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.version, 3);
    ASSERT_TRUE(kvt_has(kv, "k", "v3", 0));
    /* IF_VERSION on an absent key fails with version 0. */
    ASSERT_EQ(kvt_put(kv, 4, 0, "nope", "x", 0, KV_COND_IF_VERSION, 3, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.version, 0);
    ASSERT_FALSE(kvt_has(kv, "nope", "x", 0));
    ASSERT_EQ(kv_applied_index(kv), 4); /* failed conditions still advance the index */
    kv_destroy(kv);
}

TEST(if_absent_put_creates_once)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 0, "k", "first", 0, KV_COND_IF_ABSENT, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(kvt_put(kv, 2, 0, "k", "second", 0, KV_COND_IF_ABSENT, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.version, 1);
    ASSERT_TRUE(kvt_has(kv, "k", "first", 0));
    kv_destroy(kv);
}

TEST(delete_semantics_with_and_without_condition)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_del(kv, 1, 0, "k", KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_NOT_FOUND);
    ASSERT_EQ(kvt_put(kv, 2, 0, "k", "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_del(kv, 3, 0, "k", KV_COND_IF_VERSION, 1, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.version, 2);
    ASSERT_TRUE(kvt_has(kv, "k", "v", 0));
    ASSERT_EQ(kvt_del(kv, 4, 0, "k", KV_COND_IF_VERSION, 2, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.version, 4);
    ASSERT_FALSE(kvt_has(kv, "k", "v", 0));
    ASSERT_EQ(kvt_del(kv, 5, 0, "k", KV_COND_IF_VERSION, 2, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.version, 0);
    struct kv_stats s;
    kv_stats(kv, &s);
    ASSERT_EQ(s.keys, 0);
    kv_destroy(kv);
}

TEST(ttl_expiry_is_invisible_to_reads_after_deadline_before_purge)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 1000, "k", "v", 500, KV_COND_NONE, 0, &r), 0);
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "k", 1, 1499, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 1500);
    ASSERT_EQ(kv_get(kv, "k", 1, 1500, &v), ST_ENOENT); /* expiry <= now: absent */
    struct kv_stats s;
    kv_stats(kv, &s);
    ASSERT_EQ(s.keys, 1); /* still stored until a purge */
    ASSERT_EQ(s.keys_with_ttl, 1);
    kv_destroy(kv);
}

TEST(conditions_at_apply_see_expiry_by_the_command_timestamp)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 1000, "k", "v", 100, KV_COND_NONE, 0, &r), 0);
    /* Before the deadline (command time 1099) the key is live. */
    ASSERT_EQ(kvt_put(kv, 2, 1099, "k", "w", 0, KV_COND_IF_ABSENT, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    /* At the deadline it is absent for IF_ABSENT and IF_VERSION. */
    ASSERT_EQ(kvt_put(kv, 3, 1100, "k", "w", 0, KV_COND_IF_VERSION, 1, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.version, 0);
    ASSERT_EQ(kvt_put(kv, 4, 1100, "k", "w", 0, KV_COND_IF_ABSENT, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.created, 1); /* replacing an expired key creates it anew */
    /* The new PUT without TTL cleared the expiry. */
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "k", 1, 999999, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 0);
    struct kv_stats s;
    kv_stats(kv, &s);
    ASSERT_EQ(s.keys_with_ttl, 0);
    /* DELETE of an expired key: NOT_FOUND and the key is gone. */
    ASSERT_EQ(kvt_put(kv, 5, 2000, "e", "v", 10, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_del(kv, 6, 2010, "e", KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_NOT_FOUND);
    kv_stats(kv, &s);
    ASSERT_EQ(s.keys, 1);
    ASSERT_EQ(s.keys_with_ttl, 0);
    kv_destroy(kv);
}

TEST(purge_deletes_exactly_the_keys_expired_at_its_timestamp)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    char key[16];
    uint64_t idx = 1;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        /* expiry = 1000 + 10*i, except every 10th key has no TTL */
        ASSERT_EQ(kvt_put(kv, idx++, 1000, key, "v", i % 10 == 0 ? 0 : (uint64_t)(10 * i),
                          KV_COND_NONE, 0, &r),
                  0);
    }
    ASSERT_EQ(kvt_purge(kv, idx++, 1500, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    /* i in 1..50 with i%10 != 0: 45 keys */
    ASSERT_EQ(r.purged, 45);
    ASSERT_EQ(r.purge_more, 0);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        int expect = i % 10 == 0 || 1000 + 10 * i > 1500;
        struct kv_view v;
        ASSERT_EQ(kv_get(kv, key, strlen(key), 0, &v) == 0, expect);
    }
    struct kv_stats s;
    kv_stats(kv, &s);
    ASSERT_EQ(s.keys, 55);
    ASSERT_EQ(s.keys_with_ttl, 45);
    kv_destroy(kv);
}

TEST(purge_with_keys_max_removes_smallest_expiry_then_key_first)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    /* Equal expiries: order by key bytes. */
    ASSERT_EQ(kvt_put(kv, 1, 0, "c", "v", 100, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 2, 0, "a", "v", 100, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 3, 0, "b", "v", 100, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 4, 0, "z", "v", 50, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kv_expiry_min(kv), 50);
    ASSERT_EQ(kvt_purge(kv, 5, 1000, 2, &r), 0);
    ASSERT_EQ(kv_expiry_min(kv), 100);
    ASSERT_EQ(r.purged, 2);
    ASSERT_EQ(r.purge_more, 1);
    ASSERT_FALSE(kvt_has(kv, "z", "v", 0));
    ASSERT_FALSE(kvt_has(kv, "a", "v", 0));
    ASSERT_TRUE(kvt_has(kv, "b", "v", 0));
    ASSERT_TRUE(kvt_has(kv, "c", "v", 0));
    ASSERT_EQ(kvt_purge(kv, 6, 1000, 2, &r), 0);
    ASSERT_EQ(r.purged, 2);
    ASSERT_EQ(r.purge_more, 0);
    ASSERT_EQ(kvt_purge(kv, 7, 1000, 2, &r), 0);
    ASSERT_EQ(r.purged, 0);
    ASSERT_EQ(kv_expiry_min(kv), 0);
    kv_destroy(kv);
}

TEST(ttl_change_on_overwrite_reorders_the_expiry_heap)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 0, "a", "v", 100, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 2, 0, "b", "v", 200, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 3, 0, "a", "v", 300, KV_COND_NONE, 0, &r), 0); /* a now after b */
    ASSERT_EQ(kvt_purge(kv, 4, 250, 0, &r), 0);
    ASSERT_EQ(r.purged, 1);
    ASSERT_TRUE(kvt_has(kv, "a", "v", 0));
    ASSERT_FALSE(kvt_has(kv, "b", "v", 0));
    kv_destroy(kv);
}

TEST(huge_ttl_saturates_instead_of_wrapping)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 1000, "k", "v", UINT64_MAX - 10, KV_COND_NONE, 0, &r), 0);
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "k", 1, 2000, &v), 0);
    ASSERT_EQ((long long)v.expire_at_ms, (long long)UINT64_MAX);
    kv_destroy(kv);
}

TEST(malformed_command_changes_nothing_and_returns_eproto)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 0, "k", "v", 0, KV_COND_NONE, 0, &r), 0);
    uint64_t before = kv_digest(kv);
    const uint8_t junk[] = {1, 1, 0, 0, 0, 0, 0, 0, 5};
    ASSERT_EQ(kv_apply(kv, 2, junk, sizeof(junk), &r), ST_EPROTO);
    ASSERT_EQ(r.req.node_id, 0);
    ASSERT_EQ(kv_apply(kv, 3, junk, 0, &r), ST_EPROTO);
    ASSERT_EQ(kv_digest(kv), before);
    ASSERT_EQ(kv_applied_index(kv), 3);
    ASSERT_TRUE(kvt_has(kv, "k", "v", 0));
    kv_destroy(kv);
}

TEST(binary_keys_with_zero_bytes_are_distinct)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    const uint8_t k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'}, k3[] = {'a'};
    const struct kv_command cs[] = {
        {.type = KV_CMD_PUT, .key = k1, .key_len = 3, .value = k1, .value_len = 3},
        {.type = KV_CMD_PUT, .key = k2, .key_len = 3, .value = k2, .value_len = 3},
        {.type = KV_CMD_PUT, .key = k3, .key_len = 1, .value = k3, .value_len = 1},
    };
    for (size_t i = 0; i < 3; i++)
        ASSERT_EQ(kvt_apply_cmd(kv, i + 1, &cs[i], &r), 0);
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, k1, 3, 0, &v), 0);
    ASSERT_MEMEQ(v.value, k1, 3);
    ASSERT_EQ(kv_get(kv, k2, 3, 0, &v), 0);
    ASSERT_MEMEQ(v.value, k2, 3);
    ASSERT_EQ(kv_get(kv, k3, 1, 0, &v), 0);
    ASSERT_EQ(v.value_len, 1);
    ASSERT_EQ(kv_get(kv, k1, 2, 0, &v), ST_ENOENT);
    ASSERT_EQ(kv_get(kv, "", 0, 0, &v), ST_ENOENT);
    kv_destroy(kv);
}

/* A reference model: a plain array of (key id -> value, alive). */
#define MODEL_KEYS 20000

TEST(incremental_rehash_keeps_every_key_under_insert_delete_mixes)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.rehash_buckets_per_op = 1; /* long rehash phases: most ops run mid-rehash */
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(&cfg, &kv), 0);
    static uint32_t model[MODEL_KEYS]; /* 0 = absent, else value number */
    memset(model, 0, sizeof(model));
    struct st_rng rng;
    st_rng_init(&rng, 12345);
    struct kv_result r;
    char key[32], val[32];
    uint64_t idx = 1;
    int saw_rehash = 0, saw_shrink = 0;
    uint64_t max_buckets = 0;
    for (int phase = 0; phase < 4; phase++) {
        /* even phases mostly insert, odd phases mostly delete */
        for (int i = 0; i < 40000; i++) {
            uint32_t k = (uint32_t)st_rng_below(&rng, MODEL_KEYS);
            snprintf(key, sizeof(key), "key-%u", k);
            int insert = st_rng_below(&rng, 100) < (phase % 2 == 0 ? 80u : 15u);
            if (insert) {
                uint32_t v = (uint32_t)idx;
                snprintf(val, sizeof(val), "v%u", v);
                ASSERT_EQ(kvt_put(kv, idx, 0, key, val, 0, KV_COND_NONE, 0, &r), 0);
                model[k] = v;
            } else {
                ASSERT_EQ(kvt_del(kv, idx, 0, key, KV_COND_NONE, 0, &r), 0);
                ASSERT_EQ(r.status, model[k] ? KV_STATUS_OK : KV_STATUS_NOT_FOUND);
                model[k] = 0;
            }
            idx++;
            struct kv_stats s;
            kv_stats(kv, &s);
            saw_rehash |= s.rehashing;
            if (s.buckets > max_buckets) max_buckets = s.buckets;
            if (s.buckets < max_buckets && !s.rehashing) saw_shrink = 1;
            if (i % 997 == 0) ASSERT_EQ(kv_check_invariants(kv), 0);
            /* Spot-check a random key every op, mid-rehash included. */
            uint32_t q = (uint32_t)st_rng_below(&rng, MODEL_KEYS);
            snprintf(key, sizeof(key), "key-%u", q);
            struct kv_view view;
            int found = kv_get(kv, key, strlen(key), 0, &view) == 0;
            ASSERT_EQ(found, model[q] != 0);
        }
        /* Full check at the end of each phase. */
        uint64_t live = 0;
        for (uint32_t k = 0; k < MODEL_KEYS; k++) {
            snprintf(key, sizeof(key), "key-%u", k);
            struct kv_view view;
            int found = kv_get(kv, key, strlen(key), 0, &view) == 0;
            ASSERT_EQ(found, model[k] != 0);
            if (found) {
                live++;
                snprintf(val, sizeof(val), "v%u", model[k]);
                ASSERT_EQ(view.value_len, strlen(val));
                ASSERT_MEMEQ(view.value, val, view.value_len);
                ASSERT_EQ(view.version, model[k]);
            }
        }
        struct kv_stats s;
        kv_stats(kv, &s);
        ASSERT_EQ(s.keys, live);
        ASSERT_EQ(kv_check_invariants(kv), 0);
    }
    ASSERT_TRUE(saw_rehash);
    ASSERT_TRUE(saw_shrink);
    kv_destroy(kv);
}

/* The memory target (1M keys of 100 bytes per node) rests on the entry
 * layout: an 8-byte key and a 100-byte value must fit one 144-byte malloc
 * chunk (136 usable bytes), which a 40-byte header did not. */
TEST(a_short_key_and_100_byte_value_take_at_most_136_bytes)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    char key[16], val[101];
    memset(val, 'v', 100);
    val[100] = 0;
    enum { N = 4096 };
    struct kv_stats s0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "k%07d", i);
        ASSERT_EQ(kvt_put(kv, (uint64_t)i + 1, 0, key, val, 0, KV_COND_NONE, 0, &r), 0);
    }
    kv_stats(kv, &s0);
    ASSERT_EQ(s0.keys, N);
    ASSERT_FALSE(s0.rehashing);
    /* memory_bytes = entries + bucket pointers + the ordered index + the kv
     * struct (no expiry heap in use); 1 KiB bounds the struct. A 40-byte
     * header: 152 each. */
    uint64_t entries = s0.memory_bytes - s0.buckets * sizeof(void *) - s0.index_bytes;
    ASSERT_LE(entries, (uint64_t)N * 136 + 1024);
    kv_destroy(kv);
}

/* Each write may add, change or drop a key's expiry and grow or shrink its
 * value (in place or into a new allocation): the expiry trailer moves with
 * the value. A model checks value, version and expiry after every write;
 * the invariant checker checks the heap's back-pointers. */
TEST(expiry_survives_every_value_size_and_ttl_transition)
{
    struct kv *kv = new_kv();
    enum { KEYS = 64 };
    struct {
        uint32_t len;
        uint64_t version, expire;
        char fill;
    } model[KEYS];
    memset(model, 0, sizeof(model));
    static const uint32_t sizes[] = {0, 1, 7, 12, 20, 100, 115, 116, 200, 600, 3000};
    static char val[3001];
    struct st_rng rng;
    st_rng_init(&rng, 777);
    struct kv_result r;
    char key[16];
    for (uint64_t idx = 1; idx <= 20000; idx++) {
        uint32_t k = (uint32_t)st_rng_below(&rng, KEYS);
        snprintf(key, sizeof(key), "key-%u", k);
        uint32_t len = sizes[st_rng_below(&rng, sizeof(sizes) / sizeof(sizes[0]))];
        /* none, the same expiry again (no heap move), or a new one */
        static const uint64_t ttls[] = {0, 0, 500, 1000};
        uint64_t ttl = st_rng_below(&rng, 5) == 0 ? 1 + st_rng_below(&rng, 1000000)
                                                  : ttls[st_rng_below(&rng, 4)];
        char fill = (char)('a' + idx % 26);
        memset(val, fill, len);
        val[len] = 0;
        ASSERT_EQ(kvt_put(kv, idx, 0, key, val, ttl, KV_COND_NONE, 0, &r), 0);
        ASSERT_EQ(r.status, KV_STATUS_OK);
        model[k].len = len;
        model[k].version = idx;
        model[k].expire = ttl;
        model[k].fill = fill;
        if (idx % 64 == 0 || idx < 200) ASSERT_EQ(kv_check_invariants(kv), 0);
        for (uint32_t q = 0; q < KEYS; q += 7) {
            if (!model[q].version) continue;
            snprintf(key, sizeof(key), "key-%u", q);
            struct kv_view v;
            ASSERT_EQ(kv_get(kv, key, strlen(key), 0, &v), 0);
            ASSERT_EQ(v.version, model[q].version);
            ASSERT_EQ(v.expire_at_ms, model[q].expire);
            ASSERT_EQ(v.value_len, model[q].len);
            for (uint32_t i = 0; i < v.value_len; i++)
                ASSERT_EQ(v.value[i], model[q].fill);
        }
    }
    /* The heap still orders every key with an expiry: a purge at t = 1e6
     * removes exactly those. */
    uint64_t with_ttl = 0;
    for (uint32_t q = 0; q < KEYS; q++)
        with_ttl += model[q].version && model[q].expire;
    ASSERT_EQ(kvt_purge(kv, 20001, 1000000, 0, &r), 0);
    ASSERT_EQ(r.purged, with_ttl);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

/* kv_prefetch is a cache hint: interleaved with applies (mid-rehash too)
 * and fed garbage, it leaves the state exactly as without it. */
TEST(prefetch_hints_change_nothing_and_ignore_malformed_commands)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.rehash_buckets_per_op = 1;
    struct kv *a = NULL, *b = NULL;
    ASSERT_EQ(kv_create(&cfg, &a), 0);
    ASSERT_EQ(kv_create(&cfg, &b), 0);
    struct kv_result r;
    char key[32], val[32];
    int saw_rehash = 0;
    const uint8_t junk[] = {0xff, 0x00, 0x13, 0x37, 0x01};
    for (uint64_t idx = 1; idx <= 5000; idx++) {
        snprintf(key, sizeof(key), "key-%llu", (unsigned long long)(idx * 7919 % 3000));
        snprintf(val, sizeof(val), "v%llu", (unsigned long long)idx);
        struct kv_command c = {.type = idx % 5 == 0 ? KV_CMD_DELETE : KV_CMD_PUT,
                               .req = {7, idx},
                               .key = (const uint8_t *)key,
                               .key_len = (uint32_t)strlen(key),
                               .value = (const uint8_t *)val,
                               .value_len = idx % 5 == 0 ? 0 : (uint32_t)strlen(val)};
        uint8_t buf[128];
        size_t len = 0;
        ASSERT_EQ(kv_command_encode(&c, buf, sizeof(buf), &len), 0);
        kv_prefetch(a, buf, len, 0);
        kv_prefetch(a, buf, len, 1);
        kv_prefetch(a, junk, sizeof(junk), 0);
        kv_prefetch(a, junk, 0, 1);
        ASSERT_EQ(kv_apply(a, idx, buf, len, &r), 0);
        ASSERT_EQ(kv_apply(b, idx, buf, len, &r), 0);
        struct kv_stats st;
        kv_stats(a, &st);
        saw_rehash |= st.rehashing;
    }
    ASSERT_TRUE(saw_rehash);
    ASSERT_EQ(kv_check_invariants(a), 0);
    ASSERT_EQ((long long)kv_digest(a), (long long)kv_digest(b));
    kv_destroy(a);
    kv_destroy(b);
}

TEST(same_commands_give_same_digest_and_different_ones_do_not)
{
    struct kv *a = new_kv(), *b = new_kv();
    struct kv_result r;
    char key[32];
    for (uint64_t i = 1; i <= 3000; i++) {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)(i % 1000));
        ASSERT_EQ(kvt_put(a, i, i, key, "v", i % 3 ? 50 : 0, KV_COND_NONE, 0, &r), 0);
        ASSERT_EQ(kvt_put(b, i, i, key, "v", i % 3 ? 50 : 0, KV_COND_NONE, 0, &r), 0);
    }
    ASSERT_EQ(kvt_purge(a, 3001, 2990, 100, &r), 0);
    ASSERT_EQ(kvt_purge(b, 3001, 2990, 100, &r), 0);
    ASSERT_EQ((long long)kv_digest(a), (long long)kv_digest(b));
    ASSERT_EQ(kvt_put(b, 3002, 0, "k1", "w", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_NE((long long)kv_digest(a), (long long)kv_digest(b));
    kv_destroy(a);
    kv_destroy(b);
}

/* --max-memory limits this accounting: key + value + a fixed overhead per
 * key, following every write, overwrite, delete, purge and eviction, and
 * independent of allocator and table layout. */
TEST(used_bytes_is_key_plus_value_plus_overhead_per_key_through_every_change)
{
    struct kv *kv;
    ASSERT_EQ(kv_create(NULL, &kv), 0);
    struct kv_result r;
    ASSERT_EQ(kv_used_bytes(kv), 0);
    ASSERT_EQ(kvt_put(kv, 1, 10, "alpha", "0123456789", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kv_used_bytes(kv), 5 + 10 + KV_ENTRY_USED_OVERHEAD_BYTES);
    ASSERT_EQ(kv_entry_used_bytes(kv, "alpha", 5), 5 + 10 + KV_ENTRY_USED_OVERHEAD_BYTES);
    ASSERT_EQ(kv_entry_used_bytes(kv, "beta", 4), 0);
    /* overwrite: larger (reallocated), smaller (in place), with a TTL */
    char big[500];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    ASSERT_EQ(kvt_put(kv, 2, 10, "alpha", big, 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kv_used_bytes(kv), kv_used_bytes_of(5, 499));
    ASSERT_EQ(kvt_put(kv, 3, 10, "alpha", "ab", 100, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kv_used_bytes(kv), kv_used_bytes_of(5, 2));
    ASSERT_EQ(kvt_put(kv, 4, 10, "beta", "b", 50, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 5, 10, "gamma", "g", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kv_used_bytes(kv),
              kv_used_bytes_of(5, 2) + kv_used_bytes_of(4, 1) + kv_used_bytes_of(5, 1));
    /* a failed condition changes nothing */
    ASSERT_EQ(kvt_put(kv, 6, 10, "gamma", big, 0, KV_COND_IF_ABSENT, 0, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(kv_used_bytes(kv),
              kv_used_bytes_of(5, 2) + kv_used_bytes_of(4, 1) + kv_used_bytes_of(5, 1));
    /* purge at 70 removes beta (expires 60), not alpha (110) */
    ASSERT_EQ(kvt_purge(kv, 7, 70, 0, &r), 0);
    ASSERT_EQ(r.purged, 1);
    ASSERT_EQ(kv_used_bytes(kv), kv_used_bytes_of(5, 2) + kv_used_bytes_of(5, 1));
    ASSERT_EQ(kvt_del(kv, 8, 70, "gamma", KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kv_used_bytes(kv), kv_used_bytes_of(5, 2));
    struct kv_stats stats;
    kv_stats(kv, &stats);
    ASSERT_EQ(stats.used_bytes, kv_used_bytes(kv));
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

/* EVICT removes a listed key only at the listed version: a key rewritten
 * after the leader chose it, or already gone, stays as it is. */
TEST(evict_removes_listed_keys_at_their_version_only)
{
    struct kv *kv;
    ASSERT_EQ(kv_create(NULL, &kv), 0);
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 10, "a", "1", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 2, 10, "b", "22", 1000, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 3, 10, "c", "333", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 4, 10, "c", "3333", 0, KV_COND_NONE, 0, &r), 0); /* c rewritten */
    struct kv_evict_key keys[] = {
        {(const uint8_t *)"a", 1, 1},   /* current: evicted */
        {(const uint8_t *)"b", 1, 2},   /* current, with a TTL: evicted */
        {(const uint8_t *)"c", 1, 3},   /* rewritten at 4 since: kept */
        {(const uint8_t *)"zzz", 3, 1}, /* absent: nothing */
    };
    uint64_t before = kv_used_bytes(kv);
    ASSERT_EQ(kvt_evict(kv, 5, keys, 4, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.type, KV_CMD_EVICT);
    ASSERT_EQ(r.evicted, 2);
    ASSERT_EQ(r.evicted_bytes, kv_used_bytes_of(1, 1) + kv_used_bytes_of(1, 2));
    ASSERT_EQ(kv_used_bytes(kv), before - r.evicted_bytes);
    ASSERT_TRUE(!kvt_has(kv, "a", "1", 10));
    ASSERT_TRUE(!kvt_has(kv, "b", "22", 10));
    ASSERT_TRUE(kvt_has(kv, "c", "3333", 10));
    ASSERT_EQ(kv_expiry_min(kv), 0); /* b left the expiry heap */
    ASSERT_EQ(kv_applied_index(kv), 5);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    /* The same EVICT applied on another replica gives the same state. */
    struct kv *kv2;
    ASSERT_EQ(kv_create(NULL, &kv2), 0);
    ASSERT_EQ(kvt_put(kv2, 1, 10, "a", "1", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv2, 2, 10, "b", "22", 1000, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv2, 3, 10, "c", "333", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv2, 4, 10, "c", "3333", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_evict(kv2, 5, keys, 4, &r), 0);
    ASSERT_EQ(kv_digest(kv2), kv_digest(kv));
    ASSERT_EQ(kv_used_bytes(kv2), kv_used_bytes(kv));
    kv_destroy(kv2);
    kv_destroy(kv);
}

/* A write the leader refused (--max-memory) is replaced by REFUSE with its
 * request id: it answers the proposer and changes nothing. */
TEST(refuse_answers_its_request_and_changes_nothing)
{
    struct kv *kv;
    ASSERT_EQ(kv_create(NULL, &kv), 0);
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 10, "a", "1", 0, KV_COND_NONE, 0, &r), 0);
    uint64_t digest = kv_digest(kv), used = kv_used_bytes(kv);
    /* stamped no later than the put: the log clock (in the digest) stays */
    struct kv_command c = {
        .type = KV_CMD_REFUSE, .req = {3, 44}, .timestamp_ms = 10, .reason = KV_REFUSE_MEMORY};
    ASSERT_EQ(kvt_apply_cmd(kv, 2, &c, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_REFUSED);
    ASSERT_EQ(r.req.node_id, 3);
    ASSERT_EQ(r.req.seq, 44);
    ASSERT_EQ(kv_digest(kv), digest);
    ASSERT_EQ(kv_used_bytes(kv), used);
    ASSERT_EQ(kv_applied_index(kv), 2);
    kv_destroy(kv);
}

TEST(sample_draws_stored_keys_and_soonest_starts_at_the_earliest_expiry)
{
    struct kv *kv;
    ASSERT_EQ(kv_create(NULL, &kv), 0);
    struct kv_result r;
    struct kv_sample s[16];
    ASSERT_EQ(kv_sample(kv, KV_SAMPLE_ALL, 1, s, 16), 0);
    char key[16];
    uint64_t idx = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        /* every tenth key has a TTL, k30 the shortest */
        uint64_t ttl = i % 10 == 0 ? (i == 30 ? 5 : 1000 + (uint64_t)i) : 0;
        ASSERT_EQ(kvt_put(kv, ++idx, 10, key, "v", ttl, KV_COND_NONE, 0, &r), 0);
    }
    size_t n = kv_sample(kv, KV_SAMPLE_ALL, 42, s, 16);
    ASSERT_EQ(n, 16);
    for (size_t i = 0; i < n; i++) {
        ASSERT_EQ(kv_entry_used_bytes(kv, s[i].key, s[i].key_len), s[i].used_bytes);
        ASSERT_EQ(s[i].hash, kv_key_hash(kv, s[i].key, s[i].key_len));
    }
    n = kv_sample(kv, KV_SAMPLE_TTL, 7, s, 16);
    ASSERT_EQ(n, 16);
    for (size_t i = 0; i < n; i++)
        ASSERT_TRUE(s[i].expire_at_ms != 0);
    n = kv_sample(kv, KV_SAMPLE_SOONEST, 0, s, 16);
    ASSERT_EQ(n, 10); /* every key with a TTL, once */
    ASSERT_EQ(s[0].key_len, 3);
    ASSERT_EQ(memcmp(s[0].key, "k30", 3), 0);
    ASSERT_EQ(s[0].expire_at_ms, 15);
    kv_destroy(kv);
}

TEST(kv_create_rejects_bad_config)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.buckets_initial = 12;
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(&cfg, &kv), ST_EINVAL);
}

TEST(idle_rehash_step_finishes_a_pending_rehash)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.rehash_buckets_per_op = 1;
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(&cfg, &kv), 0);
    struct kv_result r;
    char key[32];
    struct kv_stats s;
    uint64_t i = 1;
    do {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        ASSERT_EQ(kvt_put(kv, i, 0, key, "v", 0, KV_COND_NONE, 0, &r), 0);
        i++;
        kv_stats(kv, &s);
    } while (!s.rehashing || s.buckets < 1000);
    while (kv_rehash_step(kv, 16))
        ;
    kv_stats(kv, &s);
    ASSERT_EQ(s.rehashing, 0);
    for (uint64_t j = 1; j < i; j++) {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)j);
        ASSERT_TRUE(kvt_has(kv, key, "v", 0));
    }
    kv_destroy(kv);
}

TEST_MAIN()
