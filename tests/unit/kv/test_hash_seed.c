/* The kv's SipHash key comes from the cluster id (issue 14, finding 11): the
 * same id gives the same bucket placement on every replica (identical
 * snapshot bytes), another cluster gets another placement (a fixed key let
 * colliding keys be computed once for every deployment), and the logical
 * state, hence the digest, does not depend on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/command.h"
#include "kv/kv.h"
#include "test.h"
#include "kvtest.h"

static struct kv *build(uint64_t cluster_id)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.hash_seed = kv_hash_seed_for_cluster(cluster_id);
    struct kv *kv;
    ASSERT_EQ(kv_create(&cfg, &kv), 0);
    for (int i = 0; i < 200; i++) {
        char key[32], val[32];
        snprintf(key, sizeof key, "key-%d", i);
        snprintf(val, sizeof val, "value-%d", i);
        struct kv_result r;
        ASSERT_EQ(kvt_put(kv, (uint64_t)i + 1, 1000, key, val, 0, KV_COND_NONE, 0, &r), 0);
    }
    return kv;
}

static void snap(struct kv *kv, struct kvt_sink *out)
{
    memset(out, 0, sizeof *out);
    ASSERT_EQ(kv_snapshot_write(kv, 200, "m", 1, kvt_sink_cb, out), 0);
}

TEST(seed_is_derived_from_the_cluster_id)
{
    ASSERT_EQ(kv_hash_seed_for_cluster(42), kv_hash_seed_for_cluster(42));
    ASSERT_NE(kv_hash_seed_for_cluster(42), kv_hash_seed_for_cluster(43));
    ASSERT_NE(kv_hash_seed_for_cluster(42), 0);
    ASSERT_NE(kv_hash_seed_for_cluster(42), 42);
}

TEST(same_cluster_same_placement_other_cluster_other_placement_same_digest)
{
    struct kv *a = build(0x1234), *a2 = build(0x1234), *b = build(0x5678);
    struct kvt_sink sa, sa2, sb;
    snap(a, &sa);
    snap(a2, &sa2);
    snap(b, &sb);
    /* the snapshot walks the table in bucket order: equal bytes, equal placement */
    ASSERT_EQ(sa.len, sa2.len);
    ASSERT_MEMEQ(sa.data, sa2.data, sa.len);
    ASSERT_EQ(sa.len, sb.len);
    ASSERT_TRUE(memcmp(sa.data, sb.data, sa.len) != 0);
    ASSERT_EQ(kv_digest(a), kv_digest(a2));
    ASSERT_EQ(kv_digest(a), kv_digest(b));
    free(sa.data);
    free(sa2.data);
    free(sb.data);
    kv_destroy(a);
    kv_destroy(a2);
    kv_destroy(b);
}

TEST_MAIN()
