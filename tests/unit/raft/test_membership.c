/* Membership: single-server changes with the 2015 fix, learners, removal. */
#include "fixture.h"

static bool is_voter(struct raft *r, raft_id id)
{
    const struct raft_member *m = raft_conf_find(raft_conf_get(r), id);
    return m && m->role == RAFT_VOTER;
}

static bool is_member(struct raft *r, raft_id id)
{
    return raft_conf_find(raft_conf_get(r), id) != NULL;
}

TEST(conf_change_codec_roundtrip_and_validation)
{
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_VOTER, .id = 0x0102030405060708ull};
    cc.context_len = 5;
    memcpy(cc.context, "hello", 5);
    uint8_t buf[RAFT_CONF_CHANGE_ENCODED_MAX];
    size_t n = raft_conf_change_encode(&cc, buf);
    ASSERT_EQ(n, 16);
    ASSERT_EQ(buf[0], 1);
    ASSERT_EQ(buf[1], 0x08); /* little-endian id */
    ASSERT_EQ(buf[9], 5);
    struct raft_conf_change out;
    ASSERT_EQ(raft_conf_change_decode(buf, n, &out), 0);
    ASSERT_EQ(out.op, cc.op);
    ASSERT_EQ(out.id, cc.id);
    ASSERT_EQ(out.context_len, 5);
    ASSERT_MEMEQ(out.context, "hello", 5);
    /* every truncation is refused, and so is trailing garbage */
    for (size_t k = 0; k < n; k++)
        ASSERT_EQ(raft_conf_change_decode(buf, k, &out), ST_EPROTO);
    buf[n] = 0;
    ASSERT_EQ(raft_conf_change_decode(buf, n + 1, &out), ST_EPROTO);
    buf[0] = 9;
    ASSERT_EQ(raft_conf_change_decode(buf, n, &out), ST_EPROTO);
    buf[0] = 1;
    buf[9] = 0xff; /* context_len 0x00ff... > max with byte 10 */
    buf[10] = 0xff;
    ASSERT_EQ(raft_conf_change_decode(buf, n, &out), ST_EPROTO);
    ASSERT_EQ(raft_conf_change_decode(NULL, 0, &out), ST_EPROTO);
}

TEST(conf_apply_rules)
{
    struct raft_conf c;
    memset(&c, 0, sizeof(c));
    struct raft_conf_change cc = {.op = RAFT_CONF_ADD_VOTER, .id = 1};
    ASSERT_EQ(raft_conf_apply(&c, &cc), 0);
    ASSERT_EQ(raft_conf_apply(&c, &cc), ST_EINVAL); /* already a voter */
    cc = (struct raft_conf_change){.op = RAFT_CONF_ADD_LEARNER, .id = 2};
    ASSERT_EQ(raft_conf_apply(&c, &cc), 0);
    ASSERT_EQ(raft_conf_voters(&c), 1);
    cc.op = RAFT_CONF_ADD_VOTER; /* promotion */
    ASSERT_EQ(raft_conf_apply(&c, &cc), 0);
    ASSERT_EQ(raft_conf_voters(&c), 2);
    ASSERT_EQ(raft_conf_find(&c, 2)->role, RAFT_VOTER);
    cc = (struct raft_conf_change){.op = RAFT_CONF_REMOVE, .id = 7};
    ASSERT_EQ(raft_conf_apply(&c, &cc), ST_EINVAL);
    cc.id = 1;
    ASSERT_EQ(raft_conf_apply(&c, &cc), 0);
    cc.id = 2; /* the last voter */
    ASSERT_EQ(raft_conf_apply(&c, &cc), ST_EINVAL);
    cc = (struct raft_conf_change){.op = 42, .id = 3};
    ASSERT_EQ(raft_conf_apply(&c, &cc), ST_EINVAL);
    cc = (struct raft_conf_change){.op = RAFT_CONF_ADD_LEARNER, .id = 0};
    ASSERT_EQ(raft_conf_apply(&c, &cc), ST_EINVAL);
    for (raft_id id = 10; c.n < RAFT_MEMBERS_MAX; id++) {
        cc = (struct raft_conf_change){.op = RAFT_CONF_ADD_LEARNER, .id = id};
        ASSERT_EQ(raft_conf_apply(&c, &cc), 0);
    }
    cc.id = 1000;
    ASSERT_EQ(raft_conf_apply(&c, &cc), ST_EINVAL); /* too many */
}

TEST(bootstrap_writes_membership_into_the_log)
{
    struct fx *f = fx_create_ex(4, 3, 1, NULL);
    struct raft *r = fx_r(f, 2);
    ASSERT_EQ(raft_last_index(r), 4);
    ASSERT_EQ(raft_commit_index(r), 4);
    for (raft_index i = 1; i <= 4; i++) {
        const struct raft_entry *e = raft_entry_get(r, i);
        ASSERT_EQ(e->type, RAFT_ENTRY_CONF);
        ASSERT_EQ(e->term, 1);
    }
    ASSERT_EQ(raft_conf_voters(raft_conf_get(r)), 3);
    ASSERT_EQ(raft_conf_find(raft_conf_get(r), 4)->role, RAFT_LEARNER);
    ASSERT_EQ(f->nodes[2].applied, 4); /* handed out, persisted and applied */
    ASSERT_EQ(f->nodes[2].hs.commit, 4);
    fx_destroy(f);
}

TEST(conf_change_refused_before_term_commit)
{
    struct fx *f = fx_create(3);
    raft_campaign(fx_r(f, 1));
    /* Step the cluster only until 1 leads, then hold the followers' disks so
     * its no-op cannot commit. */
    while (raft_role_get(fx_r(f, 1)) != RAFT_LEADER) {
        for (int i = 1; i <= 3; i++)
            while (fx_ready(f, (raft_id)i))
                ;
        ASSERT_TRUE(fx_deliver_one(f));
    }
    f->nodes[2].manual_disk = true;
    f->nodes[3].manual_disk = true;
    fx_stabilize(f);
    /* Leader, but its no-op is not committed: the 2015 fix says wait. */
    ASSERT_TRUE(raft_commit_index(fx_r(f, 1)) < raft_last_index(fx_r(f, 1)));
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 4, NULL), ST_ECONFCHANGE);
    fx_disk_flush(f, 2);
    fx_stabilize(f);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), raft_last_index(fx_r(f, 1)));
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 4, NULL), 0);
    fx_destroy(f);
}

TEST(one_conf_change_at_a_time)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->cut[1][2] = f->cut[1][3] = true;
    raft_index idx;
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 4, &idx), 0);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 5, NULL), ST_ECONFCHANGE);
    /* a change that makes no sense is refused as such once allowed */
    f->cut[1][2] = f->cut[1][3] = false;
    fx_run(f, 2);
    ASSERT_GE(raft_commit_index(fx_r(f, 1)), idx);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 9, NULL), ST_EINVAL);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 5, NULL), 0);
    ASSERT_EQ(fx_conf_change(f, 2, RAFT_CONF_ADD_LEARNER, 6, NULL), ST_ENOTLEADER);
    fx_destroy(f);
}

TEST(conf_takes_effect_on_append_not_commit)
{
    struct fx *f = fx_create_ex(4, 3, 0, NULL);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->cut[2][1] = f->cut[3][1] = true; /* acks lost: nothing commits */
    raft_index idx;
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_VOTER, 4, &idx), 0);
    /* The leader uses the new configuration at once: 4 has a progress. */
    ASSERT_TRUE(is_voter(fx_r(f, 1), 4));
    struct raft_progress_info pi[8];
    size_t n = raft_progress_get(fx_r(f, 1), pi, 8);
    bool has4 = false;
    for (size_t i = 0; i < n; i++)
        has4 = has4 || pi[i].id == 4;
    ASSERT_TRUE(has4);
    fx_stabilize(f);
    /* So do the followers, before any commit. */
    ASSERT_TRUE(raft_commit_index(fx_r(f, 2)) < idx);
    ASSERT_TRUE(is_voter(fx_r(f, 2), 4));
    /* The joiner received the whole log and knows the membership. */
    ASSERT_EQ(raft_last_index(fx_r(f, 4)), idx);
    ASSERT_TRUE(is_voter(fx_r(f, 4), 1) && is_voter(fx_r(f, 4), 3) && is_voter(fx_r(f, 4), 4));
    fx_destroy(f);
}

TEST(conf_reverts_on_truncation)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    /* Entry reaches 3 only. */
    fx_isolate(f, 1, true);
    f->cut[1][3] = false;
    raft_index idx;
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 4, &idx), 0);
    fx_stabilize(f);
    ASSERT_TRUE(is_member(fx_r(f, 3), 4));
    ASSERT_FALSE(is_member(fx_r(f, 2), 4));
    /* A leader 2 of a higher term, elected without 3, overwrites idx. */
    struct raft *r3 = fx_r(f, 3);
    raft_term t = raft_term_get(r3) + 1;
    struct raft_entry e = {.term = t, .index = idx, .type = RAFT_ENTRY_NOOP};
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = 2,
                         .to = 3,
                         .term = t,
                         .index = idx - 1,
                         .log_term = raft_entry_get(r3, idx - 1)->term,
                         .commit = idx - 1,
                         .n_entries = 1,
                         .entries = &e};
    ASSERT_EQ(raft_step(r3, &m), 0);
    raft_check_invariants(r3);
    ASSERT_EQ(raft_entry_get(r3, idx)->type, RAFT_ENTRY_NOOP);
    /* The conf falls back to the latest conf entry still in the log. */
    ASSERT_FALSE(is_member(r3, 4));
    ASSERT_EQ(raft_conf_voters(raft_conf_get(r3)), 3);
    fx_destroy(f);
}

TEST(learner_does_not_vote)
{
    /* Voters {1, 2}, learner 3. With 2 down, 1 cannot win with the
     * learner's answer: learners never count for a quorum. */
    struct fx *f = fx_create_ex(3, 2, 1, NULL);
    fx_crash(f, 2);
    raft_campaign(fx_r(f, 1));
    fx_stabilize(f);
    fx_run(f, 40);
    ASSERT_NE(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_PREVOTE] + f->nodes[1].sent[RAFT_MSG_VOTE] > 0, 1);
    /* Votes are only requested from voters. */
    ASSERT_EQ(f->nodes[3].sent[RAFT_MSG_PREVOTE_RESP] + f->nodes[3].sent[RAFT_MSG_VOTE_RESP], 0);
    fx_destroy(f);
}

TEST(learner_receives_the_log)
{
    struct fx *f = fx_create_ex(4, 3, 1, NULL);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "l", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(f->nodes[4].applied, raft_commit_index(fx_r(f, 1)));
    ASSERT_EQ(f->nodes[4].sm, f->nodes[1].sm);
    fx_destroy(f);
}

TEST(promote_learner)
{
    struct fx *f = fx_create_ex(4, 3, 1, NULL);
    ASSERT_EQ(fx_elect(f, 1), 1);
    raft_index idx;
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_VOTER, 4, &idx), 0);
    fx_run(f, 2);
    for (int i = 1; i <= 4; i++)
        ASSERT_TRUE(is_voter(fx_r(f, (raft_id)i), 4));
    /* 4 is now a voter: with 1 and 2 gone, 3 and 4 are not a quorum of 4... */
    fx_crash(f, 1);
    fx_crash(f, 2);
    fx_run(f, 40);
    ASSERT_EQ(fx_leader(f), RAFT_NONE);
    /* ...and with 2 back, 4 can be elected. */
    fx_restart(f, 2);
    raft_tick(fx_r(f, 4));
    fx_run(f, 40);
    raft_id l = fx_leader(f);
    ASSERT_TRUE(l == 2 || l == 3 || l == 4);
    fx_destroy(f);
}

TEST(add_voter_joins_and_catches_up)
{
    struct fx *f = fx_create_ex(4, 3, 0, NULL); /* node 4 starts empty */
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "before", NULL), 0);
    fx_stabilize(f);
    ASSERT_EQ(raft_last_index(fx_r(f, 4)), 0);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_VOTER, 4, NULL), 0);
    fx_run(f, 3);
    ASSERT_EQ(raft_last_index(fx_r(f, 4)), raft_last_index(fx_r(f, 1)));
    ASSERT_EQ(f->nodes[4].sm, f->nodes[1].sm);
    ASSERT_EQ(raft_conf_voters(raft_conf_get(fx_r(f, 4))), 4);
    fx_destroy(f);
}

TEST(remove_leader_steps_down)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->cut[2][1] = f->cut[3][1] = true;
    raft_index idx;
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 1, &idx), 0);
    fx_stabilize(f);
    /* Not committed yet: it keeps leading (thesis 4.2.2), without counting
     * itself in majorities. */
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    ASSERT_FALSE(is_voter(fx_r(f, 1), 1));
    f->cut[2][1] = f->cut[3][1] = false;
    fx_run(f, 2);
    ASSERT_NE(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    ASSERT_GE(raft_commit_index(fx_r(f, 2)), idx);
    /* The rest elect a leader; the removed node never campaigns again. */
    struct raft_stats before;
    raft_stats_get(fx_r(f, 1), &before);
    fx_run(f, 60);
    raft_id l = fx_leader(f);
    ASSERT_TRUE(l == 2 || l == 3);
    struct raft_stats after;
    raft_stats_get(fx_r(f, 1), &after);
    ASSERT_EQ(after.elections_started, before.elections_started);
    ASSERT_EQ(fx_propose_str(f, l, "after", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(f->nodes[2].sm, f->nodes[3].sm);
    fx_destroy(f);
}

TEST(removed_follower_stops_campaigning)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 3, NULL), 0);
    fx_run(f, 2);
    ASSERT_FALSE(is_member(fx_r(f, 3), 3));
    fx_isolate(f, 3, true);
    fx_tick(f, 3, 100);
    fx_stabilize(f);
    struct raft_stats st;
    raft_stats_get(fx_r(f, 3), &st);
    ASSERT_EQ(st.elections_started, 0);
    ASSERT_EQ(raft_campaign(fx_r(f, 3)), ST_EINVAL);
    /* The two remaining voters commit on their own. */
    ASSERT_EQ(fx_propose_str(f, 1, "two", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), raft_last_index(fx_r(f, 1)));
    fx_destroy(f);
}

TEST(removed_by_uncommitted_entry_still_campaigns)
{
    /* Thesis 4.2.2: a server not in its latest (uncommitted) configuration
     * must still campaign: it may be the only one able to win. Found by the
     * simulator (seed 301299): without this the cluster deadlocked. */
    struct fx *f = fx_create(2);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->cut[1][2] = true; /* the removal of 1 stays on 1 */
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 1, NULL), 0);
    fx_run(f, 25); /* check-quorum: 1 steps down */
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_FOLLOWER);
    ASSERT_FALSE(is_member(fx_r(f, 1), 1));
    f->cut[1][2] = false;
    /* 2 cannot win (1's log is longer); 1 can, with 2's vote alone (quorum
     * of its latest configuration {2}); it commits its removal, steps down,
     * and 2 takes over alone. */
    fx_run(f, 100);
    ASSERT_EQ(fx_leader(f), 2);
    ASSERT_FALSE(is_member(fx_r(f, 2), 1));
    ASSERT_EQ(raft_conf_voters(raft_conf_get(fx_r(f, 2))), 1);
    ASSERT_EQ(fx_propose_str(f, 2, "alone", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(raft_commit_index(fx_r(f, 2)), raft_last_index(fx_r(f, 2)));
    fx_destroy(f);
}

TEST(remove_follower_reduces_quorum)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 3, NULL), 0);
    fx_run(f, 2);
    fx_crash(f, 3);
    /* {1, 2}: both are needed now, and suffice. */
    ASSERT_EQ(fx_propose_str(f, 1, "q", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), raft_last_index(fx_r(f, 1)));
    struct raft_progress_info pi[8];
    ASSERT_EQ(raft_progress_get(fx_r(f, 1), pi, 8), 2);
    fx_destroy(f);
}

TEST(full_membership_with_departed_members_fits)
{
    /* 64 members, then removals and additions while the removed ones (which
     * never answer) still linger: progress slots are recycled, no assert. */
    struct fx *f = fx_create(1);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (raft_id id = 100; raft_conf_get(fx_r(f, 1))->n < RAFT_MEMBERS_MAX; id++) {
        ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, id, NULL), 0);
        fx_stabilize(f);
    }
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 999, NULL), ST_EINVAL);
    for (raft_id k = 0; k < 10; k++) {
        ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 100 + k, NULL), 0);
        fx_stabilize(f);
        ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 500 + k, NULL), 0);
        fx_stabilize(f);
        raft_check_invariants(fx_r(f, 1));
    }
    ASSERT_EQ(raft_conf_get(fx_r(f, 1))->n, RAFT_MEMBERS_MAX);
    struct raft_progress_info pi[RAFT_MEMBERS_MAX + 8];
    ASSERT_LE(raft_progress_get(fx_r(f, 1), pi, sizeof(pi) / sizeof(pi[0])), RAFT_MEMBERS_MAX + 4);
    fx_run(f, 25); /* silent departed members are forgotten */
    ASSERT_EQ(raft_progress_get(fx_r(f, 1), pi, sizeof(pi) / sizeof(pi[0])), RAFT_MEMBERS_MAX);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    fx_destroy(f);
}

TEST(removed_member_readded_with_same_id_catches_up)
{
    /* A member loses its disk (a StatefulSet pod on a new volume keeps its
     * id): it is removed while down, then joins again empty under the same
     * id before the leader forgot its departed progress. The leader must
     * treat it as a new member (probe from the end of its log), not resume
     * the old incarnation's progress, whose pipeline never drains: before,
     * the rejoined node received nothing at all. */
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "before", NULL), 0);
    fx_stabilize(f);
    fx_crash(f, 3);
    for (int i = 0; i < 40; i++) /* sent to 3, never acknowledged */
        ASSERT_EQ(fx_propose_str(f, 1, "down", NULL), 0);
    fx_stabilize(f);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 3, NULL), 0);
    fx_stabilize(f);
    ASSERT_FALSE(is_member(fx_r(f, 1), 3));
    /* 3 comes back with an empty disk and joins under the same id. */
    struct fx_node *n3 = &f->nodes[3];
    fx_disk_reset(n3);
    memset(&n3->hs, 0, sizeof(n3->hs));
    n3->has_snap = false;
    fx_start_node(f, 3, NULL);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 3, NULL), 0);
    fx_run(f, 5);
    ASSERT_TRUE(is_member(fx_r(f, 3), 3));
    ASSERT_EQ(raft_last_index(fx_r(f, 3)), raft_last_index(fx_r(f, 1)));
    ASSERT_EQ(f->nodes[3].sm, f->nodes[1].sm);
    fx_destroy(f);
}

static void plain_raft(struct raft_config *c)
{
    c->check_quorum = false;
    c->pre_vote = false;
}

TEST(self_removed_stale_leader_steps_down_when_told_the_term)
{
    /* 1 removes itself; 2 and 3 get the entry but 1 never hears back. They
     * elect 2, which never contacts 1 (not a member). Without check-quorum
     * 1 would lead its stale term forever, accepting doomed proposals; the
     * answer to its stale heartbeat carries the new term (sim seed 302277). */
    struct fx *f = fx_create_ex(3, 3, 0, plain_raft);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->cut[2][1] = f->cut[3][1] = true;
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 1, NULL), 0);
    fx_stabilize(f);
    ASSERT_FALSE(is_member(fx_r(f, 2), 1));
    raft_campaign(fx_r(f, 2));
    fx_stabilize(f);
    ASSERT_EQ(raft_role_get(fx_r(f, 2)), RAFT_LEADER);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER); /* stale, unaware */
    f->cut[2][1] = f->cut[3][1] = false;
    fx_run(f, 3);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_FOLLOWER);
    ASSERT_EQ(raft_term_get(fx_r(f, 1)), raft_term_get(fx_r(f, 2)));
    ASSERT_EQ(fx_propose_str(f, 1, "doomed", NULL), ST_ENOTLEADER);
    fx_destroy(f);
}

TEST(removed_server_lease_expires)
{
    /* A removed server does not campaign, but its clock keeps running: once
     * it has not heard from a leader for an election timeout it grants the
     * (pre-)votes a cluster that re-admitted it may need. */
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 3, NULL), 0);
    fx_run(f, 2);
    ASSERT_FALSE(is_member(fx_r(f, 3), 3));
    fx_isolate(f, 3, true);
    struct raft *r3 = fx_r(f, 3);
    for (int t = 0; t < 45; t++) {
        raft_tick(r3);
        if (t < 25) continue;
        struct raft_msg pv = {.type = RAFT_MSG_PREVOTE,
                              .from = 2,
                              .to = 3,
                              .term = raft_term_get(r3) + 1,
                              .index = raft_last_index(r3),
                              .log_term = raft_entry_get(r3, raft_last_index(r3))->term};
        ASSERT_EQ(raft_step(r3, &pv), 0);
        struct raft_ready rd;
        raft_ready_get(r3, &rd);
        int granted = 0;
        for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
            granted += rd.msgs_after_persist[i].type == RAFT_MSG_PREVOTE_RESP &&
                       !rd.msgs_after_persist[i].reject;
        ASSERT_EQ(granted, 1);
        raft_ready_ack(r3, &rd);
    }
    fx_destroy(f);
}

TEST_MAIN()
