/* Out-of-memory paths of the kv, reached through the allocation seam
 * (kv_config.alloc_fail_cb): a failed apply or restore changes nothing, and
 * retrying after memory is back gives exactly the state of a run without
 * failures. */
#include "test.h"

#include "kvtest.h"
#include "util/assert.h"

struct failer {
    int armed;
    long countdown; /* allocations left before one fails */
    long calls;
};

static int fail_cb(void *ctx)
{
    struct failer *f = ctx;
    f->calls++;
    if (!f->armed) return 0;
    if (f->countdown-- == 0) {
        f->armed = 0; /* one failure, then memory is back */
        return 1;
    }
    return 0;
}

static struct kv *make(struct failer *f)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.buckets_initial = 4;
    cfg.rehash_buckets_per_op = 1;
    cfg.alloc_fail_cb = fail_cb;
    cfg.alloc_fail_ctx = f;
    struct kv *kv = NULL;
    if (kv_create(&cfg, &kv) != 0) return NULL;
    return kv;
}

/* A workload that grows, overwrites with larger values, adds TTLs (heap
 * growth), deletes (shrink), purges and records idempotency keys. Returns the command for step i.
 */
static void step_cmd(uint64_t i, struct kv_command *c, char *key, char *val)
{
    memset(c, 0, sizeof(*c));
    snprintf(key, 32, "k%llu", (unsigned long long)(i % 97));
    size_t vlen = (size_t)(i * 37 % 600);
    memset(val, 'a' + (int)(i % 26), vlen);
    c->req.node_id = 1;
    c->req.seq = i;
    c->timestamp_ms = 1000 + i;
    c->key = (const uint8_t *)key;
    c->key_len = (uint32_t)strlen(key);
    if (i % 11 == 0) {
        c->type = KV_CMD_PURGE_EXPIRED;
        c->key = NULL;
        c->key_len = 0;
        c->keys_max = 5;
    } else if (i % 5 == 0) {
        c->type = KV_CMD_DELETE;
    } else {
        c->type = KV_CMD_PUT;
        c->value = (const uint8_t *)val;
        c->value_len = (uint32_t)vlen;
        c->ttl_ms = i % 3 == 0 ? 20 : 0;
    }
    if (c->type != KV_CMD_PURGE_EXPIRED && i % 4 != 1) {
        /* Idempotency records: inserts, table growth, replays, trims. */
        static char idem[16];
        snprintf(idem, sizeof idem, "id%llu", (unsigned long long)(i % 61));
        c->idem_key = (const uint8_t *)idem;
        c->idem_key_len = (uint32_t)strlen(idem);
        c->idem_keys_max = 40;
        c->idem_ttl_ms = 50;
    }
}

#define STEPS 400

TEST(failed_apply_changes_nothing_and_retry_matches_a_clean_run)
{
    struct failer none = {0};
    struct kv *ref = make(&none);
    char key[32], val[700];
    struct kv_command c;
    struct kv_result r;
    for (uint64_t i = 1; i <= STEPS; i++) {
        step_cmd(i, &c, key, val);
        ASSERT_EQ(kvt_apply_cmd(ref, i, &c, &r), 0);
    }
    long total = none.calls;
    ASSERT_GE(total, 50);
    /* Fail each allocation of the run once, in turn (every 3rd to stay fast). */
    for (long n = 0; n < total; n += 3) {
        struct failer f = {0};
        struct kv *kv = make(&f);
        ASSERT_TRUE(kv != NULL);
        f.armed = 1;
        f.countdown = n;
        int failures = 0;
        for (uint64_t i = 1; i <= STEPS; i++) {
            step_cmd(i, &c, key, val);
            /* One apply makes at most a few allocations: digest only when the
             * armed failure can fire in this one (keeps the test fast). */
            int may_fail = f.armed && f.countdown <= 8;
            uint64_t before = may_fail ? kv_digest(kv) : 0;
            struct kv_stats sb;
            kv_stats(kv, &sb);
            int rc = kvt_apply_cmd(kv, i, &c, &r);
            if (rc == ST_ENOMEM) {
                failures++;
                ASSERT_TRUE(may_fail);
                ASSERT_EQ((long long)kv_digest(kv), (long long)before);
                struct kv_stats sa;
                kv_stats(kv, &sa);
                ASSERT_EQ(sa.keys, sb.keys);
                ASSERT_EQ(sa.keys_with_ttl, sb.keys_with_ttl);
                ASSERT_EQ(kv_applied_index(kv), i - 1);
                ASSERT_EQ(kv_check_invariants(kv), 0);
                rc = kvt_apply_cmd(kv, i, &c, &r); /* memory is back */
            }
            ASSERT_EQ(rc, 0);
        }
        ASSERT_LE(failures, 1);
        ASSERT_EQ((long long)kv_digest(kv), (long long)kv_digest(ref));
        kv_destroy(kv);
    }
    kv_destroy(ref);
}

TEST(failed_restore_keeps_the_old_state_at_every_allocation)
{
    struct failer none = {0};
    struct kv *src = make(&none);
    char key[32], val[700];
    struct kv_command c;
    struct kv_result r;
    for (uint64_t i = 1; i <= 200; i++) {
        step_cmd(i, &c, key, val);
        ASSERT_EQ(kvt_apply_cmd(src, i, &c, &r), 0);
    }
    struct kvt_sink s = {0};
    ASSERT_EQ(kv_snapshot_write(src, 200, "meta", 4, kvt_sink_cb, &s), 0);
    for (long n = 0;; n++) {
        struct failer f = {0};
        struct kv *dst = make(&f);
        ASSERT_EQ(kvt_put(dst, 1, 0, "old", "state", 0, KV_COND_NONE, 0, &r), 0);
        uint64_t before = kv_digest(dst);
        f.armed = 1;
        f.countdown = n;
        struct kv_restore *rs = NULL;
        int rc = kv_restore_begin(dst, &rs);
        if (rc == 0) {
            for (size_t off = 0; off < s.len && rc == 0; off += 100)
                rc = kv_restore_feed(rs, s.data + off, ST_MIN((size_t)100, s.len - off));
            if (rc == 0) {
                struct kv_snapshot_info info;
                rc = kv_restore_finish(rs, &info);
                if (rc == 0) free(info.meta);
            } else {
                kv_restore_abort(rs);
            }
        }
        int failed = f.armed == 0; /* the failure was consumed */
        if (failed && rc == 0) {
            /* An optional allocation (growing the table) failed: the restore
             * went on with longer chains. */
            ASSERT_EQ((long long)kv_digest(dst), (long long)kv_digest(src));
        } else if (failed) {
            ASSERT_EQ(rc, ST_ENOMEM);
            ASSERT_EQ((long long)kv_digest(dst), (long long)before);
            ASSERT_TRUE(kvt_has(dst, "old", "state", 0));
            /* and the kv is still usable */
            ASSERT_EQ(kvt_put(dst, 2, 0, "new", "x", 0, KV_COND_NONE, 0, &r), 0);
        } else {
            ASSERT_EQ(rc, 0);
            ASSERT_EQ((long long)kv_digest(dst), (long long)kv_digest(src));
            kv_destroy(dst);
            break; /* n is past the last allocation of a restore */
        }
        kv_destroy(dst);
        ASSERT_LE(n, 100000);
    }
    free(s.data);
    kv_destroy(src);
}

TEST(snapshot_write_and_create_report_enomem)
{
    struct failer f = {0};
    struct kv *kv = make(&f);
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 0, "a", "b", 0, KV_COND_NONE, 0, &r), 0);
    f.armed = 1;
    f.countdown = 0;
    struct kvt_sink s = {0};
    ASSERT_EQ(kv_snapshot_write(kv, 1, NULL, 0, kvt_sink_cb, &s), ST_ENOMEM);
    ASSERT_EQ(s.calls, 0);
    kv_destroy(kv);
    struct failer g = {.armed = 1, .countdown = 0};
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.alloc_fail_cb = fail_cb;
    cfg.alloc_fail_ctx = &g;
    struct kv *k2 = NULL;
    ASSERT_EQ(kv_create(&cfg, &k2), ST_ENOMEM);
    g.armed = 1;
    g.countdown = 1; /* the table */
    ASSERT_EQ(kv_create(&cfg, &k2), ST_ENOMEM);
}

TEST(restore_allocates_one_table_and_one_block_per_key)
{
    struct failer f = {0};
    struct kv *src = make(&f);
    struct kv_result r;
    char key[32];
    for (uint64_t i = 1; i <= 10000; i++) {
        snprintf(key, sizeof(key), "key%llu", (unsigned long long)i);
        ASSERT_EQ(kvt_put(src, i, 0, key, "v", 0, KV_COND_NONE, 0, &r), 0);
    }
    struct kvt_sink s = {0};
    ASSERT_EQ(kv_snapshot_write(src, 10000, NULL, 0, kvt_sink_cb, &s), 0);
    struct kv *dst = make(&f);
    f.calls = 0;
    struct kv_restore *rs = NULL;
    ASSERT_EQ(kv_restore_begin(dst, &rs), 0);
    ASSERT_EQ(kv_restore_feed(rs, s.data, s.len), 0);
    ASSERT_EQ(kv_restore_finish(rs, NULL), 0);
    /* context + presized table + one block per key + the ordered index's
     * nodes (leaves at least half full without deletes, a few inner ones):
     * no resize while filling (it used to shrink the presized table at the
     * first records, then grow; a regrowth would add 10000 / 16 calls). */
    ASSERT_GE(f.calls, 1 + 1 + 10000 + 10000 / 64);
    ASSERT_LE(f.calls, 1 + 1 + 10000 + 2 * 10000 / 64 + 16);
    struct kv_stats st;
    kv_stats(dst, &st);
    ASSERT_EQ(st.rehashing, 0);
    ASSERT_EQ(st.buckets, 16384);
    free(s.data);
    kv_destroy(src);
    kv_destroy(dst);
}

TEST(corrupt_record_length_is_caught_before_allocating_for_it)
{
    struct failer f = {0};
    struct kv *src = make(&f);
    struct kv_result r;
    ASSERT_EQ(kvt_put(src, 1, 0, "key", "value", 0, KV_COND_NONE, 0, &r), 0);
    struct kvt_sink s = {0};
    ASSERT_EQ(kv_snapshot_write(src, 1, NULL, 0, kvt_sink_cb, &s), 0);
    /* First record at 36 (fixed) + 16 (version 2: clock, idempotency
     * records) + 4 (header CRC); value_len at +4: make it ~64 MiB, still
     * under the hard limit. */
    s.data[36 + 16 + 4 + 4 + 3] ^= 0x04;
    struct kv *dst = make(&f);
    f.calls = 0;
    struct kv_restore *rs = NULL;
    ASSERT_EQ(kv_restore_begin(dst, &rs), 0);
    ASSERT_EQ(kv_restore_feed(rs, s.data, s.len), ST_ECORRUPT);
    kv_restore_abort(rs);
    ASSERT_EQ(f.calls, 2); /* the context and the table; no 64 MiB entry */
    free(s.data);
    kv_destroy(src);
    kv_destroy(dst);
}

TEST_MAIN()
