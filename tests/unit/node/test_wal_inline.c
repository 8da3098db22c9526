/* When a node writes a WAL batch on its loop thread instead of the writer
 * threads (node/wal_inline.h): a lone write or a follower's append on a quick
 * disk goes inline; concurrent load, a slow disk and a stalled disk do not. */
#include "test.h"

#include "node/wal_inline.h"

#define MAX_US 2000u
#define QUICK_US 100u
#define LEADER true
#define FOLLOWER false

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
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 1, LEADER)); /* nothing observed yet */
    quick_syncs(&p, 50, &now);
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 1, LEADER));
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 0, FOLLOWER)); /* no client of its own */
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 0, 0, LEADER));   /* a vote or term alone */
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
    ASSERT_TRUE(node_wal_inline_ok(&p, now + 1, 1, 1, LEADER));
    quick_syncs(&p, 1, &now);
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 1, LEADER));
}

TEST(a_slow_disk_turns_inline_writes_off_and_a_quick_one_back_on)
{
    uint64_t now;
    struct node_wal_inline p = warmed(&now);
    int slow = 0;
    while (node_wal_inline_ok(&p, now, 1, 1, LEADER)) {
        ASSERT_LE(++slow, 16); /* off within a few slow batches */
        now += 4000;
        node_wal_inline_observe(&p, 3000, now); /* 3 ms each: under the stall limit */
    }
    ASSERT_GE(slow, 2); /* but not on the first one */
    int quick = 0;
    while (!node_wal_inline_ok(&p, now, 1, 1, LEADER)) {
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
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 1, 1, LEADER)); /* ... but a stall is not forgotten */
    ASSERT_FALSE(
        node_wal_inline_ok(&p, stalled_at + NODE_WAL_INLINE_STALL_OFF_US - 1, 1, 1, LEADER));
    ASSERT_TRUE(node_wal_inline_ok(&p, stalled_at + NODE_WAL_INLINE_STALL_OFF_US, 1, 1, LEADER));
}

TEST(concurrent_load_keeps_batches_on_the_writer_threads)
{
    uint64_t now;
    struct node_wal_inline p = warmed(&now);
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 2, 2, LEADER)); /* a group of writes */
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 1, 2, LEADER)); /* another client waits */
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 0, 1, LEADER)); /* a client waits on a later batch */
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 40, 1, FOLLOWER)); /* an append, a client waits */
    ASSERT_FALSE(node_wal_inline_ok(&p, now, 40, 0, LEADER));   /* forwarded writes */
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 1, 1, LEADER));
}

/* A follower's append of many entries, with no client waiting on the node:
 * its loop has nothing else to do until it can answer, so the two hand-offs
 * to the writer threads and back were pure cost (at 16 clients -5 to -17%
 * CPU per write once inline). The disk rules still apply, and a leader's
 * batches of forwarded writes stay on the writer threads. */
TEST(a_followers_append_goes_inline_while_no_client_waits)
{
    uint64_t now;
    struct node_wal_inline p = warmed(&now);
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 40, 0, FOLLOWER));
    ASSERT_TRUE(node_wal_inline_ok(&p, now, 4096, 0, FOLLOWER));
    now += 20000;
    node_wal_inline_observe(&p, (uint64_t)MAX_US * NODE_WAL_INLINE_STALL_FACTOR + 1, now);
    ASSERT_FALSE(node_wal_inline_ok(&p, now + 1, 40, 0, FOLLOWER)); /* a stalled disk */
}

TEST(a_limit_of_zero_never_goes_inline)
{
    struct node_wal_inline p;
    node_wal_inline_init(&p, 0);
    ASSERT_FALSE(node_wal_inline_ok(&p, 1000000, 1, 1, LEADER));
    ASSERT_FALSE(node_wal_inline_ok(&p, 1000000, 0, 0, LEADER));
    ASSERT_FALSE(node_wal_inline_ok(&p, 1000000, 40, 0, FOLLOWER));
}

TEST_MAIN()
