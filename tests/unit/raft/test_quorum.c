/* raft/quorum.c: majority sizes, the majority-acknowledged index (commit
 * index, read rounds) and vote outcomes, on their own and through a cluster
 * (commit needs a majority, not all). Configurations are single: the core has
 * no joint consensus, so there is no joint case to check. */
#include "fixture.h"

#include "raft/quorum.h"

TEST(majority_is_more_than_half_of_the_voters)
{
    ASSERT_EQ(quorum_majority(1), 1);
    ASSERT_EQ(quorum_majority(2), 2);
    ASSERT_EQ(quorum_majority(3), 2);
    ASSERT_EQ(quorum_majority(4), 3);
    ASSERT_EQ(quorum_majority(5), 3);
    ASSERT_EQ(quorum_majority(7), 4);
    /* any two majorities intersect: 2 * majority > voters */
    for (size_t n = 1; n <= 64; n++)
        ASSERT_TRUE(2 * quorum_majority(n) > n);
}

TEST(index_is_the_largest_value_a_majority_acknowledged)
{
    uint64_t a[] = {5, 9, 7};
    ASSERT_EQ(quorum_index(a, 3, quorum_majority(3)), 7);
    uint64_t b[] = {1, 10, 10, 2, 3};
    ASSERT_EQ(quorum_index(b, 5, quorum_majority(5)), 3);
    uint64_t c[] = {4, 4, 4, 4};
    ASSERT_EQ(quorum_index(c, 4, quorum_majority(4)), 4);
    uint64_t d[] = {8, 2, 6, 0};
    ASSERT_EQ(quorum_index(d, 4, quorum_majority(4)), 2);
    uint64_t e[] = {42};
    ASSERT_EQ(quorum_index(e, 1, quorum_majority(1)), 42);
    /* order of the input does not matter; the array ends sorted descending */
    uint64_t f[] = {3, 1, 2, 5, 4};
    ASSERT_EQ(quorum_index(f, 5, 3), 3);
    for (size_t i = 1; i < 5; i++)
        ASSERT_TRUE(f[i - 1] >= f[i]);
}

TEST(index_without_enough_values_is_zero)
{
    ASSERT_EQ(quorum_index(NULL, 0, 1), 0);
    uint64_t a[] = {9, 9};
    ASSERT_EQ(quorum_index(a, 2, 3), 0);
}

TEST(vote_is_won_by_a_majority_and_lost_when_one_is_impossible)
{
    ASSERT_EQ(quorum_vote_result(1, 1, 0), QUORUM_VOTE_WON);
    ASSERT_EQ(quorum_vote_result(3, 1, 0), QUORUM_VOTE_PENDING);
    ASSERT_EQ(quorum_vote_result(3, 2, 0), QUORUM_VOTE_WON);
    ASSERT_EQ(quorum_vote_result(3, 1, 1), QUORUM_VOTE_PENDING);
    ASSERT_EQ(quorum_vote_result(3, 1, 2), QUORUM_VOTE_LOST);
    ASSERT_EQ(quorum_vote_result(4, 2, 1), QUORUM_VOTE_PENDING);
    ASSERT_EQ(quorum_vote_result(4, 2, 2), QUORUM_VOTE_LOST);
    ASSERT_EQ(quorum_vote_result(5, 3, 2), QUORUM_VOTE_WON);
    ASSERT_EQ(quorum_vote_result(5, 2, 2), QUORUM_VOTE_PENDING);
    ASSERT_EQ(quorum_vote_result(5, 2, 3), QUORUM_VOTE_LOST);
    /* a two-voter cluster needs both */
    ASSERT_EQ(quorum_vote_result(2, 1, 0), QUORUM_VOTE_PENDING);
    ASSERT_EQ(quorum_vote_result(2, 1, 1), QUORUM_VOTE_LOST);
}

TEST(commit_needs_a_majority_of_voters_not_all)
{
    struct fx *f = fx_create(5);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 1);
    /* two of five followers cut off: 3 of 5 still commit */
    for (int i = 1; i <= 5; i++) {
        f->cut[4][i] = f->cut[i][4] = true;
        f->cut[5][i] = f->cut[i][5] = true;
    }
    raft_index idx = 0;
    ASSERT_EQ(fx_propose_str(f, 1, "x", &idx), 0);
    fx_stabilize(f);
    ASSERT_GE(raft_commit_index(fx_r(f, 1)), idx);
    /* a third one cut off: 2 of 5 cannot commit */
    for (int i = 1; i <= 5; i++)
        f->cut[3][i] = f->cut[i][3] = true;
    raft_index idx2 = 0;
    ASSERT_EQ(fx_propose_str(f, 1, "y", &idx2), 0);
    fx_stabilize(f);
    ASSERT_TRUE(raft_commit_index(fx_r(f, 1)) < idx2);
    fx_destroy(f);
}

TEST_MAIN()
