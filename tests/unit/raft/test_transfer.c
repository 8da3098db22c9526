/* Leadership transfer (thesis 3.10). */
#include "fixture.h"

TEST(transfer_leadership)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    raft_term t = raft_term_get(fx_r(f, 1));
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 3), 0);
    fx_stabilize(f);
    /* 3 campaigned at once, without pre-vote, and the followers ignored the
     * leader lease for this forced campaign. */
    ASSERT_EQ(fx_leader(f), 3);
    ASSERT_EQ(raft_term_get(fx_r(f, 3)), t + 1);
    ASSERT_EQ(raft_leader(fx_r(f, 1)), 3);
    ASSERT_EQ(f->nodes[3].sent[RAFT_MSG_PREVOTE], 0);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_TIMEOUT_NOW], 1);
    ASSERT_EQ(fx_propose_str(f, 3, "new", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(f->nodes[1].sm, f->nodes[3].sm);
    fx_destroy(f);
}

TEST(transfer_catches_target_up_first)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 1);
    fx_isolate(f, 3, true);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "behind", NULL), 0);
    fx_stabilize(f);
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 3), 0);
    /* During the transfer the leader takes no proposals. */
    ASSERT_EQ(fx_propose_str(f, 1, "no", NULL), ST_ETRANSFER);
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_LEARNER, .id = 9};
    ASSERT_EQ(raft_propose_conf_change(fx_r(f, 1), &cc, NULL), ST_ETRANSFER);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_TIMEOUT_NOW], 0); /* not up to date yet */
    fx_isolate(f, 3, false);
    fx_run(f, 3);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_TIMEOUT_NOW], 1);
    ASSERT_EQ(fx_leader(f), 3);
    ASSERT_EQ(raft_last_index(fx_r(f, 3)), raft_last_index(fx_r(f, 1)));
    fx_destroy(f);
}

TEST(transfer_aborts_after_election_timeout)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 3, true);
    ASSERT_EQ(fx_propose_str(f, 1, "x", NULL), 0);
    fx_stabilize(f);
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 3), 0);
    ASSERT_EQ(fx_propose_str(f, 1, "no", NULL), ST_ETRANSFER);
    for (int i = 0; i < 9; i++) {
        fx_tick(f, 1, 1);
        fx_tick(f, 2, 1);
        fx_stabilize(f);
    }
    ASSERT_EQ(fx_propose_str(f, 1, "no", NULL), ST_ETRANSFER);
    fx_tick(f, 1, 1);
    ASSERT_EQ(fx_propose_str(f, 1, "yes", NULL), 0);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    fx_destroy(f);
}

TEST(transfer_refused_for_self_learner_or_non_member)
{
    struct fx *f = fx_create_ex(4, 3, 1, NULL);
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 1), ST_EINVAL);
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 4), ST_EINVAL);
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 9), ST_EINVAL);
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 2), 3), ST_ENOTLEADER);
    ASSERT_EQ(fx_propose_str(f, 1, "still-open", NULL), 0);
    fx_destroy(f);
}

TEST(timeout_now_ignored_by_learner)
{
    struct fx *f = fx_create_ex(4, 3, 1, NULL);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r4 = fx_r(f, 4);
    struct raft_msg m = {
        .type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 4, .term = raft_term_get(r4)};
    ASSERT_EQ(raft_step(r4, &m), ST_EPROTO);
    ASSERT_EQ(raft_role_get(r4), RAFT_FOLLOWER);
    fx_destroy(f);
}

TEST(forwarded_proposal_refused_during_transfer_is_counted)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 3, true);
    ASSERT_EQ(fx_propose_str(f, 1, "x", NULL), 0);
    fx_stabilize(f);
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 3), 0);
    struct raft_stats before, after;
    raft_stats_get(fx_r(f, 1), &before);
    ASSERT_EQ(fx_propose_str(f, 2, "forwarded", NULL), 0); /* 2 forwards it */
    fx_stabilize(f);
    raft_stats_get(fx_r(f, 1), &after);
    ASSERT_EQ(after.proposals_refused, before.proposals_refused + 1);
    ASSERT_EQ(after.msgs_dropped, before.msgs_dropped);
    fx_destroy(f);
}

TEST_MAIN()
