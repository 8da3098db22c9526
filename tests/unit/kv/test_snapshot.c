/* kv snapshots: streaming round trip, determinism, corruption detection with
 * the old state kept, truncation, and the write callback's errors. */
#include "test.h"

#include "kvtest.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/rng.h"
#include "wire/le.h"

static struct kv *fill(uint64_t n_keys, uint64_t seed, uint64_t *last_index)
{
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return NULL;
    struct st_rng rng;
    st_rng_init(&rng, seed);
    char key[48], val[200];
    struct kv_result r;
    uint64_t idx = 0;
    for (uint64_t i = 0; i < n_keys; i++) {
        snprintf(key, sizeof(key), "key:%llu", (unsigned long long)i);
        size_t vlen = (size_t)st_rng_below(&rng, sizeof(val) - 1);
        for (size_t j = 0; j < vlen; j++)
            val[j] = (char)('a' + (i + j) % 26);
        val[vlen] = 0;
        uint64_t ttl = i % 4 == 0 ? 1000 + i : 0;
        if (kvt_put(kv, ++idx, 5000, key, val, ttl, KV_COND_NONE, 0, &r) != 0) {
            kv_destroy(kv);
            return NULL;
        }
    }
    *last_index = idx;
    return kv;
}

static int write_all(const struct kv *kv, uint64_t applied, const char *meta, struct kvt_sink *s)
{
    memset(s, 0, sizeof(*s));
    return kv_snapshot_write(kv, applied, meta, meta ? strlen(meta) : 0, kvt_sink_cb, s);
}

/* Feeds `len` bytes in chunks of `chunk` and finishes. */
static int restore_chunks(struct kv *kv, const uint8_t *data, size_t len, size_t chunk,
                          struct kv_snapshot_info *info)
{
    struct kv_restore *r = NULL;
    int rc = kv_restore_begin(kv, &r);
    if (rc != 0) return rc;
    for (size_t off = 0; off < len; off += chunk) {
        rc = kv_restore_feed(r, data + off, ST_MIN(chunk, len - off));
        if (rc != 0) {
            kv_restore_abort(r);
            return rc;
        }
    }
    return kv_restore_finish(r, info);
}

TEST(snapshot_round_trip_100k_keys_in_small_chunks)
{
    uint64_t last = 0;
    struct kv *a = fill(100000, 1, &last);
    ASSERT_TRUE(a != NULL);
    struct kvt_sink s;
    ASSERT_EQ(write_all(a, last, "members: 1,2,3", &s), 0);
    ASSERT_LE(s.max_chunk, KV_SNAPSHOT_CHUNK_BYTES);
    ASSERT_GE(s.calls, 10); /* streamed, not one blob */
    struct kv *b = NULL;
    ASSERT_EQ(kv_create(NULL, &b), 0);
    struct kv_result r;
    ASSERT_EQ(kvt_put(b, 1, 0, "old", "state", 0, KV_COND_NONE, 0, &r), 0);
    struct kv_snapshot_info info;
    ASSERT_EQ(restore_chunks(b, s.data, s.len, 1000, &info), 0);
    ASSERT_EQ(info.applied_index, last);
    ASSERT_EQ(info.keys, 100000);
    ASSERT_EQ(info.meta_len, strlen("members: 1,2,3"));
    ASSERT_MEMEQ(info.meta, "members: 1,2,3", info.meta_len);
    free(info.meta);
    ASSERT_EQ(kv_applied_index(b), last);
    ASSERT_EQ(kv_check_invariants(b), 0);
    ASSERT_EQ(kv_check_invariants(a), 0);
    ASSERT_EQ((long long)kv_digest(a), (long long)kv_digest(b));
    ASSERT_FALSE(kvt_has(b, "old", "state", 0));
    struct kv_stats sa, sb;
    kv_stats(a, &sa);
    kv_stats(b, &sb);
    ASSERT_EQ(sb.keys, 100000);
    ASSERT_EQ(sb.keys_with_ttl, sa.keys_with_ttl);
    /* Used memory is a function of the state: a restored replica agrees. */
    ASSERT_EQ(sb.used_bytes, sa.used_bytes);
    ASSERT_TRUE(sa.used_bytes > 100000 * KV_ENTRY_USED_OVERHEAD_BYTES);
    /* Reads agree key by key. */
    char key[48];
    for (uint64_t i = 0; i < 100000; i += 97) {
        snprintf(key, sizeof(key), "key:%llu", (unsigned long long)i);
        struct kv_view va, vb;
        ASSERT_EQ(kv_get(a, key, strlen(key), 0, &va), 0);
        ASSERT_EQ(kv_get(b, key, strlen(key), 0, &vb), 0);
        ASSERT_EQ(va.value_len, vb.value_len);
        ASSERT_MEMEQ(va.value, vb.value, va.value_len);
        ASSERT_EQ(va.version, vb.version);
        ASSERT_EQ(va.expire_at_ms, vb.expire_at_ms);
    }
    /* The restored replica keeps applying like the original: same purge. */
    ASSERT_EQ(kvt_purge(a, last + 1, 30000, 500, &r), 0);
    uint64_t purged_a = r.purged;
    ASSERT_EQ(kvt_purge(b, last + 1, 30000, 500, &r), 0);
    ASSERT_EQ(r.purged, purged_a);
    ASSERT_EQ((long long)kv_digest(a), (long long)kv_digest(b));
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(two_replicas_fed_the_same_commands_write_identical_snapshots)
{
    uint64_t la = 0, lb = 0;
    struct kv *a = fill(20000, 9, &la), *b = fill(20000, 9, &lb);
    ASSERT_TRUE(a && b);
    struct kv_result r;
    /* Deletes and a purge too, so shrinking and the heap are exercised. */
    char key[48];
    for (uint64_t i = 0; i < 20000; i += 3) {
        snprintf(key, sizeof(key), "key:%llu", (unsigned long long)i);
        ASSERT_EQ(kvt_del(a, ++la, 0, key, KV_COND_NONE, 0, &r), 0);
        ASSERT_EQ(kvt_del(b, ++lb, 0, key, KV_COND_NONE, 0, &r), 0);
    }
    ASSERT_EQ(kvt_purge(a, ++la, 9000, 100, &r), 0);
    ASSERT_EQ(kvt_purge(b, ++lb, 9000, 100, &r), 0);
    struct kvt_sink sa, sb;
    ASSERT_EQ(write_all(a, la, "m", &sa), 0);
    ASSERT_EQ(write_all(b, lb, "m", &sb), 0);
    ASSERT_EQ(sa.len, sb.len);
    ASSERT_MEMEQ(sa.data, sb.data, sa.len);
    /* And a different history gives different bytes. */
    ASSERT_EQ(kvt_put(b, ++lb, 0, "extra", "x", 0, KV_COND_NONE, 0, &r), 0);
    struct kvt_sink sc;
    ASSERT_EQ(write_all(b, lb, "m", &sc), 0);
    ASSERT_TRUE(sc.len != sa.len || memcmp(sc.data, sa.data, sa.len) != 0);
    free(sa.data);
    free(sb.data);
    free(sc.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(every_single_bit_flip_is_detected_and_old_state_kept)
{
    uint64_t last = 0;
    struct kv *a = fill(40, 3, &last);
    ASSERT_TRUE(a != NULL);
    struct kvt_sink s;
    ASSERT_EQ(write_all(a, last, "meta", &s), 0);
    struct kv *b = NULL;
    ASSERT_EQ(kv_create(NULL, &b), 0);
    struct kv_result r;
    ASSERT_EQ(kvt_put(b, 1, 0, "old", "state", 0, KV_COND_NONE, 0, &r), 0);
    uint64_t before = kv_digest(b);
    uint8_t *bad = malloc(s.len);
    ASSERT_TRUE(bad != NULL);
    for (size_t byte = 0; byte < s.len; byte++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(bad, s.data, s.len);
            bad[byte] ^= (uint8_t)(1u << bit);
            int rc = restore_chunks(b, bad, s.len, 7, NULL);
            if (rc == 0) {
                fprintf(stderr, "undetected flip at byte %zu bit %d\n", byte, bit);
                ASSERT_TRUE(0);
            }
            ASSERT_TRUE(rc == ST_ECORRUPT || rc == ST_ENOMEM || rc == ST_ETOOBIG);
        }
    }
    ASSERT_EQ((long long)kv_digest(b), (long long)before);
    ASSERT_TRUE(kvt_has(b, "old", "state", 0));
    ASSERT_EQ(kv_applied_index(b), 1);
    free(bad);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(truncated_or_extended_snapshot_is_rejected)
{
    uint64_t last = 0;
    struct kv *a = fill(50, 4, &last);
    struct kvt_sink s;
    ASSERT_EQ(write_all(a, last, NULL, &s), 0);
    struct kv *b = NULL;
    ASSERT_EQ(kv_create(NULL, &b), 0);
    for (size_t n = 0; n < s.len; n += 13)
        ASSERT_EQ(restore_chunks(b, s.data, n, 64, NULL), ST_ECORRUPT);
    ASSERT_EQ(restore_chunks(b, s.data, s.len - 1, 64, NULL), ST_ECORRUPT);
    uint8_t *longer = malloc(s.len + 1);
    memcpy(longer, s.data, s.len);
    longer[s.len] = 0;
    ASSERT_EQ(restore_chunks(b, longer, s.len + 1, 64, NULL), ST_ECORRUPT);
    struct kv_stats st;
    kv_stats(b, &st);
    ASSERT_EQ(st.keys, 0);
    /* The intact one still restores after all those failures. */
    ASSERT_EQ(restore_chunks(b, s.data, s.len, s.len, NULL), 0);
    ASSERT_EQ((long long)kv_digest(a), (long long)kv_digest(b));
    free(longer);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(empty_kv_snapshot_round_trips)
{
    struct kv *a = NULL, *b = NULL;
    ASSERT_EQ(kv_create(NULL, &a), 0);
    ASSERT_EQ(kv_create(NULL, &b), 0);
    struct kvt_sink s;
    ASSERT_EQ(write_all(a, 0, NULL, &s), 0);
    ASSERT_EQ(s.len, 36 + 16 + 4 + 12); /* header (version 2), header CRC, trailer */
    struct kv_snapshot_info info;
    ASSERT_EQ(restore_chunks(b, s.data, s.len, 1, &info), 0);
    ASSERT_EQ(info.keys, 0);
    ASSERT_TRUE(info.meta == NULL);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

static int failing_cb(void *ctx, const void *data, size_t len)
{
    int *calls = ctx;
    return ++*calls == 3 ? ST_EIO : 0;
}

TEST(write_callback_error_stops_the_snapshot)
{
    uint64_t last = 0;
    struct kv *a = fill(5000, 5, &last);
    int calls = 0;
    ASSERT_EQ(kv_snapshot_write(a, last, NULL, 0, failing_cb, &calls), ST_EIO);
    ASSERT_EQ(calls, 3);
    char big[10];
    ASSERT_EQ(kv_snapshot_write(a, last, big, KV_SNAPSHOT_META_BYTES_MAX + 1, failing_cb, &calls),
              ST_EINVAL);
    kv_destroy(a);
}

TEST(only_one_restore_at_a_time_and_abort_releases_it)
{
    struct kv *b = NULL;
    ASSERT_EQ(kv_create(NULL, &b), 0);
    struct kv_restore *r1 = NULL, *r2 = NULL;
    ASSERT_EQ(kv_restore_begin(b, &r1), 0);
    ASSERT_EQ(kv_restore_begin(b, &r2), ST_EBUSY);
    ASSERT_EQ(kv_restore_feed(r1, "STKVSNAP", 8), 0);
    kv_restore_abort(r1);
    ASSERT_EQ(kv_restore_begin(b, &r2), 0);
    ASSERT_EQ(kv_restore_feed(r2, "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", 40), ST_ECORRUPT);
    ASSERT_EQ(kv_restore_feed(r2, "X", 1), ST_ECORRUPT); /* poisoned */
    ASSERT_EQ(kv_restore_finish(r2, NULL), ST_ECORRUPT);
    kv_destroy(b);
}

TEST(snapshot_taken_mid_rehash_restores_all_keys)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.rehash_buckets_per_op = 1;
    struct kv *a = NULL;
    ASSERT_EQ(kv_create(&cfg, &a), 0);
    struct kv_result r;
    char key[32];
    struct kv_stats st;
    uint64_t i = 0;
    do {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        ASSERT_EQ(kvt_put(a, ++i, 0, key, "v", 0, KV_COND_NONE, 0, &r), 0);
        kv_stats(a, &st);
    } while (!(st.rehashing && st.keys > 3000));
    struct kvt_sink s;
    ASSERT_EQ(write_all(a, i, NULL, &s), 0);
    struct kv *b = NULL;
    ASSERT_EQ(kv_create(NULL, &b), 0);
    ASSERT_EQ(restore_chunks(b, s.data, s.len, 333, NULL), 0);
    ASSERT_EQ((long long)kv_digest(a), (long long)kv_digest(b));
    for (uint64_t j = 0; j < i; j++) {
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)j);
        ASSERT_TRUE(kvt_has(b, key, "v", 0));
    }
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(restore_presize_is_capped_by_the_config_and_restores_all_keys)
{
    uint64_t last = 0;
    struct kv *a = fill(3000, 7, &last);
    ASSERT_TRUE(a != NULL);
    struct kvt_sink s;
    ASSERT_EQ(write_all(a, last, "m", &s), 0);
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.restore_presize_buckets_max = 3; /* not a power of two */
    struct kv *b = NULL;
    ASSERT_EQ(kv_create(&cfg, &b), ST_EINVAL);
    cfg.restore_presize_buckets_max = 1u << 25; /* above the hard cap */
    ASSERT_EQ(kv_create(&cfg, &b), ST_EINVAL);
    cfg.restore_presize_buckets_max = 64;
    ASSERT_EQ(kv_create(&cfg, &b), 0);
    ASSERT_EQ(restore_chunks(b, s.data, s.len, 1000, NULL), 0);
    struct kv_stats st;
    kv_stats(b, &st);
    ASSERT_EQ(st.keys, 3000);
    ASSERT_TRUE(st.buckets >= 64); /* grown past the presize as the records came */
    ASSERT_EQ(kv_check_invariants(b), 0);
    ASSERT_EQ((long long)kv_digest(a), (long long)kv_digest(b));
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

/* A header that claims far more keys than follow: the restore presizes to
 * 2^24 buckets, fails, and frees its few entries (through the index, not by
 * walking 2^24 buckets); ASan's leak check holds the frees to account. */
TEST(a_failed_restore_of_a_header_claiming_many_keys_frees_its_entries)
{
    uint64_t last = 0;
    struct kv *a = fill(10, 3, &last);
    ASSERT_TRUE(a != NULL);
    struct kvt_sink s;
    ASSERT_EQ(write_all(a, last, NULL, &s), 0);
    /* Key count (offset 24) raised; the header CRC (after the fixed part
     * and the meta) recomputed, so the records are read and the stream
     * ends short. */
    le_put64(s.data + 24, 1u << 30);
    le_put32(s.data + 52, st_crc32c(0, s.data, 52));
    struct kv *b = NULL;
    ASSERT_EQ(kv_create(NULL, &b), 0);
    ASSERT_EQ(restore_chunks(b, s.data, s.len, 1000, NULL), ST_ECORRUPT);
    ASSERT_EQ(kv_applied_index(b), 0);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(incremental_snapshot_is_byte_identical_and_reads_work_between_steps)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.rehash_buckets_per_op = 1;
    struct kv *a = NULL;
    ASSERT_EQ(kv_create(&cfg, &a), 0);
    struct kv_result r;
    char key[32];
    struct kv_stats st;
    uint64_t i = 0;
    do { /* stop mid-rehash so the walk crosses both tables */
        snprintf(key, sizeof(key), "k%llu", (unsigned long long)i);
        i++;
        ASSERT_EQ(kvt_put(a, i, 0, key, "value", i % 2 ? 100 : 0, KV_COND_NONE, 0, &r), 0);
        kv_stats(a, &st);
    } while (!(st.rehashing && st.keys > 20000));
    struct kvt_sink whole;
    ASSERT_EQ(write_all(a, i, "meta", &whole), 0);
    struct kvt_sink inc = {0};
    struct kv_snapshot_cursor *cur = NULL;
    ASSERT_EQ(kv_snapshot_begin(a, i, "meta", 4, kvt_sink_cb, &inc, &cur), 0);
    struct kv_restore *rs = NULL;
    ASSERT_EQ(kv_restore_begin(a, &rs), ST_EBUSY); /* no restore under a cursor */
    int steps = 0, rc;
    while ((rc = kv_snapshot_next(cur, 1000)) == 1) {
        steps++;
        ASSERT_TRUE(kvt_has(a, "k7", "value", 0)); /* reads between steps */
    }
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(kv_snapshot_next(cur, 1000), 0); /* done stays done */
    kv_snapshot_end(cur);
    ASSERT_GE(steps, 100);
    ASSERT_EQ(inc.len, whole.len);
    ASSERT_MEMEQ(inc.data, whole.data, whole.len);
    ASSERT_LE(inc.max_chunk, KV_SNAPSHOT_CHUNK_BYTES);
    /* After end, mutation and restore are allowed again. */
    ASSERT_EQ(kvt_put(a, ++i, 0, "after", "x", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kv_restore_begin(a, &rs), 0);
    kv_restore_abort(rs);
    free(whole.data);
    free(inc.data);
    kv_destroy(a);
}

static int fail_second_cb(void *ctx, const void *data, size_t len)
{
    int *calls = ctx;
    (void)data;
    (void)len;
    return ++*calls >= 2 ? ST_ENOSPC : 0;
}

TEST(incremental_snapshot_callback_error_is_sticky)
{
    uint64_t last = 0;
    struct kv *a = fill(3000, 8, &last);
    int calls = 0;
    struct kv_snapshot_cursor *cur = NULL;
    ASSERT_EQ(kv_snapshot_begin(a, last, NULL, 0, fail_second_cb, &calls, &cur), 0);
    int rc;
    while ((rc = kv_snapshot_next(cur, 4096)) == 1)
        ;
    ASSERT_EQ(rc, ST_ENOSPC);
    ASSERT_EQ(kv_snapshot_next(cur, 4096), ST_ENOSPC);
    kv_snapshot_end(cur);
    ASSERT_EQ(kv_snapshot_begin(a, last, "x", 0, NULL, NULL, &cur), ST_EINVAL);
    kv_destroy(a);
}

TEST_MAIN()
