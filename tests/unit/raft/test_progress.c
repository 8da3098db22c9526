/* Per-follower progress states, durability across restarts, and the
 * double-buffered ready. */
#include "fixture.h"

static const struct raft_progress_info *progress_of(struct raft *r, raft_id id,
                                                    struct raft_progress_info *buf)
{
    struct raft_progress_info pi[16];
    size_t n = raft_progress_get(r, pi, 16);
    for (size_t i = 0; i < n; i++)
        if (pi[i].id == id) {
            *buf = pi[i];
            return buf;
        }
    return NULL;
}

static uint64_t appends_to_3;
static bool count_appends_to_3(struct fx *f, const struct raft_msg *m, void *arg)
{
    (void)f;
    (void)arg;
    if (m->type == RAFT_MSG_APPEND && m->to == 3) appends_to_3++;
    return true;
}

TEST(probe_sends_one_append_per_heartbeat)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 1);
    /* 3 stops answering: unreachable puts it back to probe. */
    f->cut[3][1] = true;
    raft_report_unreachable(fx_r(f, 1), 3);
    struct raft_progress_info p;
    ASSERT_EQ(progress_of(fx_r(f, 1), 3, &p)->state, RAFT_PROGRESS_PROBE);
    appends_to_3 = 0;
    f->filter = count_appends_to_3;
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "p", NULL), 0);
    fx_stabilize(f);
    /* 3 (probe) gets one probe, then nothing more until it answers. */
    ASSERT_EQ(appends_to_3, 1);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "q", NULL), 0);
    fx_stabilize(f);
    ASSERT_EQ(appends_to_3, 1);
    /* A heartbeat interval later (its answer lost), still only one per
     * heartbeat: here none, since no heartbeat answer came back. */
    fx_tick(f, 1, 1);
    fx_stabilize(f);
    ASSERT_EQ(appends_to_3, 1);
    f->cut[3][1] = false;
    fx_run(f, 3);
    ASSERT_EQ(progress_of(fx_r(f, 1), 3, &p)->state, RAFT_PROGRESS_REPLICATE);
    ASSERT_EQ(p.match, raft_last_index(fx_r(f, 1)));
    fx_destroy(f);
}

TEST(progress_reports_recent_activity)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    struct raft_progress_info p;
    ASSERT_TRUE(progress_of(fx_r(f, 1), 2, &p)->recent_active);
    ASSERT_EQ(raft_progress_get(fx_r(f, 2), &p, 1), 0); /* leader only */
    fx_crash(f, 3);
    fx_run(f, 21);
    ASSERT_FALSE(progress_of(fx_r(f, 1), 3, &p)->recent_active);
    ASSERT_TRUE(progress_of(fx_r(f, 1), 2, &p)->recent_active);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER); /* 2 of 3 is a quorum */
    fx_destroy(f);
}

TEST(vote_survives_restart)
{
    struct fx *f = fx_create(3);
    struct raft *r3 = fx_r(f, 3);
    struct raft_msg v = {
        .type = RAFT_MSG_VOTE, .from = 1, .to = 3, .term = 5, .index = 3, .log_term = 1};
    ASSERT_EQ(raft_step(r3, &v), 0);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[3].hs.vote, 1);
    ASSERT_EQ(f->nodes[3].hs.term, 5);
    fx_crash(f, 3);
    fx_restart(f, 3);
    r3 = fx_r(f, 3);
    /* Another candidate of the same term is refused: one vote per term. */
    struct raft_msg v2 = {
        .type = RAFT_MSG_VOTE, .from = 2, .to = 3, .term = 5, .index = 3, .log_term = 1};
    ASSERT_EQ(raft_step(r3, &v2), 0);
    struct raft_ready rd;
    raft_ready_get(r3, &rd);
    int rejected = 0, granted = 0;
    for (size_t i = 0; i < rd.n_msgs; i++)
        rejected += rd.msgs[i].type == RAFT_MSG_VOTE_RESP && rd.msgs[i].reject;
    for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
        granted +=
            rd.msgs_after_persist[i].type == RAFT_MSG_VOTE_RESP && !rd.msgs_after_persist[i].reject;
    ASSERT_EQ(rejected, 1);
    ASSERT_EQ(granted, 0);
    raft_ready_ack(r3, &rd);
    /* The same candidate asking again gets its vote again. */
    ASSERT_EQ(raft_step(r3, &v), 0);
    raft_ready_get(r3, &rd);
    ASSERT_EQ(rd.n_msgs_after_persist, 1);
    ASSERT_FALSE(rd.msgs_after_persist[0].reject);
    raft_ready_ack(r3, &rd);
    fx_destroy(f);
}

TEST(unflushed_writes_are_lost_on_crash_and_not_counted)
{
    /* A follower that crashes before its disk write completes never acked
     * the entries: the leader did not count them. */
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->nodes[2].manual_disk = true;
    f->nodes[3].manual_disk = true;
    raft_index idx;
    ASSERT_EQ(fx_propose_str(f, 1, "v", &idx), 0);
    fx_stabilize(f);
    ASSERT_TRUE(raft_commit_index(fx_r(f, 1)) < idx);
    fx_crash(f, 2);
    f->nodes[2].manual_disk = false;
    fx_restart(f, 2);
    fx_disk_flush(f, 3);
    fx_run(f, 3);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), idx);
    ASSERT_EQ(raft_last_index(fx_r(f, 2)), idx); /* re-replicated */
    fx_destroy(f);
}

TEST(ready_may_stay_outstanding_while_stepping)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r = fx_r(f, 1);
    ASSERT_EQ(fx_propose_str(f, 1, "first", NULL), 0);
    struct raft_ready rd;
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_entries, 1);
    const struct raft_entry *held = &rd.entries[0];
    /* More input while the ready is with the application. */
    ASSERT_FALSE(raft_has_ready(r));
    ASSERT_EQ(fx_propose_str(f, 1, "second", NULL), 0);
    raft_tick(r);
    raft_check_invariants(r);
    ASSERT_MEMEQ(held->data, "first", 5); /* still valid */
    raft_persisted(r, rd.persist_index, rd.persist_term);
    for (size_t i = 0; i < rd.n_msgs; i++)
        fx_enqueue(f, &rd.msgs[i]);
    raft_ready_ack(r, &rd);
    ASSERT_TRUE(raft_has_ready(r));
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_entries, 1);
    ASSERT_MEMEQ(rd.entries[0].data, "second", 6);
    raft_persisted(r, rd.persist_index, rd.persist_term);
    for (size_t i = 0; i < rd.n_msgs; i++)
        fx_enqueue(f, &rd.msgs[i]);
    raft_ready_ack(r, &rd);
    fx_stabilize(f);
    fx_run(f, 2);
    ASSERT_EQ(f->nodes[2].n_applied_normal, 2);
    fx_destroy(f);
}

TEST(follower_snapshot_install_survives_restart)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 3, true);
    for (int i = 0; i < 30; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "r", NULL), 0);
    fx_run(f, 2);
    fx_snapshot(f, 1);
    fx_isolate(f, 3, false);
    fx_run(f, 4);
    ASSERT_TRUE(f->nodes[3].has_snap);
    uint64_t sm = f->nodes[3].sm;
    fx_crash(f, 3);
    fx_restart(f, 3);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[3].sm, sm);
    ASSERT_EQ(raft_last_index(fx_r(f, 3)), raft_last_index(fx_r(f, 1)));
    ASSERT_EQ(fx_propose_str(f, 1, "more", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(f->nodes[3].sm, f->nodes[1].sm);
    fx_destroy(f);
}

TEST(read_index_request_to_non_leader_rejected)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r2 = fx_r(f, 2);
    struct raft_msg m = {
        .type = RAFT_MSG_READ_INDEX, .from = 3, .to = 2, .term = raft_term_get(r2), .context = 5};
    ASSERT_EQ(raft_step(r2, &m), 0);
    struct raft_ready rd;
    raft_ready_get(r2, &rd);
    ASSERT_EQ(rd.n_msgs, 1);
    ASSERT_EQ(rd.msgs[0].type, RAFT_MSG_READ_INDEX_RESP);
    ASSERT_TRUE(rd.msgs[0].reject);
    ASSERT_EQ(rd.msgs[0].context, 5);
    raft_ready_ack(r2, &rd);
    fx_destroy(f);
}

TEST(leader_steps_down_on_higher_term_response)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r = fx_r(f, 1);
    raft_term t = raft_term_get(r);
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT_RESP, .from = 2, .to = 1, .term = t + 3};
    ASSERT_EQ(raft_step(r, &m), 0);
    ASSERT_EQ(raft_role_get(r), RAFT_FOLLOWER);
    ASSERT_EQ(raft_term_get(r), t + 3);
    ASSERT_EQ(raft_leader(r), RAFT_NONE);
    ASSERT_EQ(raft_propose(r, NULL, NULL, 0, NULL, NULL), ST_ENOTLEADER);
    fx_destroy(f);
}

TEST(many_nodes_converge_under_churn)
{
    /* Seven nodes, a partition that moves, proposals all along: at the end
     * every replica applied the same sequence. */
    struct fx *f = fx_create(7);
    int proposed = 0;
    for (int round = 0; round < 400; round++) {
        if (round % 50 == 0) {
            memset(f->cut, 0, sizeof(f->cut));
            if (round < 300) {
                fx_isolate(f, (raft_id)(1 + (round / 50) % 7), true);
                fx_isolate(f, (raft_id)(1 + (round / 50 + 3) % 7), true);
            }
        }
        raft_id l = fx_leader(f);
        if (l && round % 3 == 0 && fx_propose_str(f, l, "churn", NULL) == 0) proposed++;
        fx_run(f, 1);
    }
    fx_run(f, 30);
    raft_id l = fx_leader(f);
    ASSERT_NE(l, RAFT_NONE);
    ASSERT_GE(proposed, 50);
    for (int i = 1; i <= 7; i++) {
        ASSERT_EQ(f->nodes[i].applied, f->nodes[l].applied);
        ASSERT_EQ(f->nodes[i].sm, f->nodes[l].sm);
    }
    fx_destroy(f);
}

TEST_MAIN()
