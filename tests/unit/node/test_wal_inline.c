/* When a node writes a WAL batch on its loop thread instead of the writer
 * threads (node/wal_inline.h): a lone write on a quick disk goes inline;
 * concurrent load, a slow disk and a stalled disk do not. */
#include "test.h"

#include "node/wal_inline.h"

#define MAX_US 2000u
#define QUICK_US 100u

static void quick_syncs(struct node_wal_inline *p, int count, uint64_t *now)
{
    for (int i = 0; i < count; i++) {
        *now += 300;
        node_wal_inline_observe(p, QUICK_US, *now);
    }
}

/* A policy that has seen 50 quick syncs, the clock after them in *now. */
static struct node_wal_inline warmed(uint64_t *now)
{
    struct node_wal_inline p;
    node_wal_inline_init(&p, MAX_US);
    *now = 1000000;
    quick_syncs(&p, 50, now);
    return p;
}

TEST(a_lone_write_on_a_quick_disk_goes_inline)
{
    struct node_wal_inline p;
    node_wal_inline_init(&p, MAX_US);
    uint64_t now = 1000000;
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 1)); /* nothing observed yet */
    quick_syncs(&p, 50, &now);
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 1));
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 0)); /* a follower: no client of its own */
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 0, 0)); /* a vote or term alone */
}

/* The bug this policy replaced: one batch over the limit switched inline
 * writes off for a whole second. On a shared virtual disk whose fdatasync p99
 * is a few ms, that kept them off most of the time, and a single client's
 * writes took two thread hand-offs per hop (p50 0.44 -> 0.38 ms with them on). */
TEST(one_slow_sync_among_quick_ones_keeps_inline_writes_on)
{
    uint64_t now;
    struct node_wal_inline p = warmed(&now);
    now += 3000;
    node_wal_inline_observe(&p, 3 * MAX_US / 2 + 1000, now); /* 4 ms: over the limit */
    ASSERT_TRUE(node_wal_inline_ok(&p, now + 1, 1, 1));
    quick_syncs(&p, 1, &now);
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 1));
}

TEST(a_slow_disk_turns_inline_writes_off_and_a_quick_one_back_on)
{
    uint64_t now;
    struct node_wal_inline p = warmed(&now);
    int slow = 0;
    while (node_wal_inline_ok(&p, now, 1, 1)) {
        ASSERT_LE(++slow, 16); /* off within a few slow batches */
        now += 4000;
        node_wal_inline_observe(&p, 3000, now); /* 3 ms each: under the stall limit */
    }
    ASSERT_GE(slow, 2); /* but not on the first one */
    int quick = 0;
    while (!node_wal_inline_ok(&p, now, 1, 1)) {
        ASSERT_LE(++quick, 32); /* and back on within a few dozen quick ones */
        quick_syncs(&p, 1, &now);
    }
}

TEST(a_stalled_sync_turns_inline_writes_off_for_a_second)
{
    uint64_t now;
    struct node_wal_inline p = warmed(&now);
    now += 20000;
    uint64_t stalled_at = now;
    node_wal_inline_observe(&p, (uint64_t)MAX_US * NODE_WAL_INLINE_STALL_FACTOR + 1, now);
    quick_syncs(&p, 100, &now); /* the average is quick again ... */
    ASSERT_TRUE(now < stalled_at + NODE_WAL_INLINE_STALL_OFF_US);
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 1, 1)); /* ... but a stall is not forgotten */
    ASSERT_FALSE(node_wal_inline_ok(&p, stalled_at + NODE_WAL_INLINE_STALL_OFF_US - 1, 1, 1));
    ASSERT_TRUE(node_wal_inline_ok(&p, stalled_at + NODE_WAL_INLINE_STALL_OFF_US, 1, 1));
}

TEST(concurrent_load_keeps_batches_on_the_writer_threads)
{
    uint64_t now;
    struct node_wal_inline p = warmed(&now);
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 2, 2));  /* a group of writes */
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 1, 2));  /* another client waits */
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 0, 1));  /* a client waits on a later batch */
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 40, 0)); /* a follower given a big append */
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 1));
}

TEST(a_limit_of_zero_never_goes_inline)
{
    struct node_wal_inline p;
    node_wal_inline_init(&p, 0);
    ASSERT_FALSE(node_wal_inline_ok(&p, 1000000, 1, 1));
    ASSERT_FALSE(node_wal_inline_ok(&p, 1000000, 0, 0));
}

TEST_MAIN()
