/* Linearizable reads: ReadIndex (thesis 6.4) and leases (6.4.1). */
#include "fixture.h"

static const struct raft_read_state *find_read(struct fx *f, raft_id id, uint64_t ctx)
{
    struct fx_node *n = &f->nodes[id];
    for (size_t i = 0; i < n->n_reads; i++)
        if (n->reads[i].context == ctx) return &n->reads[i];
    return NULL;
}

static uint64_t heartbeats_sent(struct fx *f, raft_id id)
{
    return f->nodes[id].sent[RAFT_MSG_HEARTBEAT];
}

TEST(read_index_batched_one_round)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_stabilize(f);
    uint64_t hb = heartbeats_sent(f, 1);
    for (uint64_t c = 1; c <= 20; c++)
        ASSERT_EQ(raft_read_index(fx_r(f, 1), c, RAFT_READ_SAFE), 0);
    /* Nothing is released before a quorum confirms leadership. */
    ASSERT_EQ(f->nodes[1].n_reads, 0);
    fx_stabilize(f);
    /* One heartbeat round (one message per follower) served all 20. */
    ASSERT_EQ(heartbeats_sent(f, 1) - hb, 2);
    ASSERT_EQ(f->nodes[1].n_reads, 20);
    for (uint64_t c = 1; c <= 20; c++) {
        const struct raft_read_state *rs = find_read(f, 1, c);
        ASSERT_TRUE(rs != NULL);
        ASSERT_EQ(rs->status, 0);
        ASSERT_EQ(rs->index, raft_commit_index(fx_r(f, 1)));
    }
    struct raft_stats st;
    raft_stats_get(fx_r(f, 1), &st);
    ASSERT_EQ(st.reads_served, 20);
    fx_destroy(f);
}

TEST(read_arriving_during_a_round_waits_for_the_next)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r = fx_r(f, 1);
    ASSERT_EQ(raft_read_index(r, 1, RAFT_READ_SAFE), 0);
    struct raft_ready rd;
    raft_ready_get(r, &rd); /* round 1's heartbeats */
    struct raft_msg hb[2];
    size_t n = 0;
    for (size_t i = 0; i < rd.n_msgs; i++)
        if (rd.msgs[i].type == RAFT_MSG_HEARTBEAT) hb[n++] = rd.msgs[i];
    ASSERT_EQ(n, 2);
    raft_ready_ack(r, &rd);
    /* Read 2 arrives while round 1 is in flight. */
    ASSERT_EQ(raft_read_index(r, 2, RAFT_READ_SAFE), 0);
    /* Round 1 is acked by 2 (a quorum with the leader). */
    struct raft_msg ack = {.type = RAFT_MSG_HEARTBEAT_RESP,
                           .from = 2,
                           .to = 1,
                           .term = raft_term_get(r),
                           .context = hb[0].context};
    ASSERT_EQ(raft_step(r, &ack), 0);
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_reads, 1);
    ASSERT_EQ(rd.reads[0].context, 1);
    /* ...and read 2 got a fresh round of its own. */
    size_t hbs = 0;
    uint64_t round2 = 0;
    for (size_t i = 0; i < rd.n_msgs; i++)
        if (rd.msgs[i].type == RAFT_MSG_HEARTBEAT) {
            hbs++;
            round2 = rd.msgs[i].context;
        }
    ASSERT_EQ(hbs, 2);
    ASSERT_TRUE(round2 > hb[0].context);
    raft_ready_ack(r, &rd);
    ack.context = round2;
    ASSERT_EQ(raft_step(r, &ack), 0);
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_reads, 1);
    ASSERT_EQ(rd.reads[0].context, 2);
    raft_ready_ack(r, &rd);
    fx_destroy(f);
}

TEST(read_index_waits_for_leader_term_commit)
{
    struct fx *f = fx_create(3);
    raft_campaign(fx_r(f, 1));
    while (raft_role_get(fx_r(f, 1)) != RAFT_LEADER) {
        for (int i = 1; i <= 3; i++)
            while (fx_ready(f, (raft_id)i))
                ;
        ASSERT_TRUE(fx_deliver_one(f));
    }
    /* Leader, no-op not committed: the read is held (thesis 6.4 step 1). */
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 7, RAFT_READ_SAFE), 0);
    ASSERT_TRUE(raft_commit_index(fx_r(f, 1)) < raft_last_index(fx_r(f, 1)));
    fx_stabilize(f);
    const struct raft_read_state *rs = find_read(f, 1, 7);
    ASSERT_TRUE(rs != NULL);
    ASSERT_EQ(rs->status, 0);
    /* Its index is at least the no-op. */
    ASSERT_EQ(rs->index, raft_last_index(fx_r(f, 1)));
    fx_destroy(f);
}

TEST(read_index_requires_quorum)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 1, true);
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 5, RAFT_READ_SAFE), 0);
    fx_stabilize(f);
    fx_tick(f, 1, 3);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[1].n_reads, 0);
    fx_destroy(f);
}

TEST(reads_fail_on_leadership_loss)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 1, true);
    for (uint64_t c = 1; c <= 3; c++)
        ASSERT_EQ(raft_read_index(fx_r(f, 1), c, RAFT_READ_SAFE), 0);
    fx_stabilize(f);
    /* check-quorum makes it step down: every read is failed, none dropped. */
    for (int i = 0; i < 25; i++) {
        fx_tick(f, 1, 1);
        fx_stabilize(f);
    }
    ASSERT_NE(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    ASSERT_EQ(f->nodes[1].n_reads, 3);
    for (uint64_t c = 1; c <= 3; c++)
        ASSERT_EQ(find_read(f, 1, c)->status, ST_ENOTLEADER);
    fx_destroy(f);
}

TEST(read_index_from_follower)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(fx_propose_str(f, 1, "w", NULL), 0);
    fx_run(f, 1);
    ASSERT_EQ(raft_read_index(fx_r(f, 3), 42, RAFT_READ_SAFE), 0);
    fx_stabilize(f);
    const struct raft_read_state *rs = find_read(f, 3, 42);
    ASSERT_TRUE(rs != NULL);
    ASSERT_EQ(rs->status, 0);
    ASSERT_EQ(rs->index, raft_commit_index(fx_r(f, 1)));
    ASSERT_EQ(f->nodes[3].sent[RAFT_MSG_READ_INDEX], 1);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_READ_INDEX_RESP], 1);
    /* No leader known: refused at once. */
    struct fx *g = fx_create(3);
    ASSERT_EQ(raft_read_index(fx_r(g, 2), 1, RAFT_READ_SAFE), ST_ENOTLEADER);
    fx_destroy(g);
    fx_destroy(f);
}

TEST(follower_read_fails_when_leader_changes)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->cut[3][1] = true; /* the request is lost */
    ASSERT_EQ(raft_read_index(fx_r(f, 3), 9, RAFT_READ_SAFE), 0);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[3].n_reads, 0);
    f->cut[3][1] = false;
    fx_tick(f, 2, 11);
    fx_tick(f, 3, 11);
    raft_campaign(fx_r(f, 2));
    fx_stabilize(f);
    const struct raft_read_state *rs = find_read(f, 3, 9);
    ASSERT_TRUE(rs != NULL);
    ASSERT_EQ(rs->status, ST_ENOTLEADER);
    fx_destroy(f);
}

static bool drop_read_answers(struct fx *f, const struct raft_msg *m, void *arg)
{
    (void)f;
    (void)arg;
    return m->type != RAFT_MSG_READ_INDEX_RESP;
}

TEST(follower_read_times_out_when_answer_lost)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->filter = drop_read_answers;
    ASSERT_EQ(raft_read_index(fx_r(f, 3), 9, RAFT_READ_SAFE), 0);
    fx_stabilize(f);
    fx_run(f, 19);
    ASSERT_EQ(f->nodes[3].n_reads, 0);
    fx_run(f, 1);
    ASSERT_EQ(f->nodes[3].n_reads, 1);
    ASSERT_EQ(find_read(f, 3, 9)->status, ST_ETIMEDOUT);
    fx_destroy(f);
}

static void lease_cfg(struct raft_config *c)
{
    c->lease_reads = true;
}

TEST(lease_read)
{
    struct fx *f = fx_create_ex(3, 3, 0, lease_cfg);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2); /* heartbeat rounds acked: the lease is fresh */
    uint64_t hb = heartbeats_sent(f, 1);
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 1, RAFT_READ_LEASE), 0);
    /* Served at once, without a round. */
    fx_stabilize(f);
    ASSERT_EQ(heartbeats_sent(f, 1), hb);
    const struct raft_read_state *rs = find_read(f, 1, 1);
    ASSERT_TRUE(rs != NULL);
    ASSERT_EQ(rs->status, 0);
    ASSERT_EQ(rs->index, raft_commit_index(fx_r(f, 1)));
    /* Without contact for an election timeout the lease is gone: the read
     * falls back to the safe path (and is not answered while isolated). */
    fx_isolate(f, 1, true);
    fx_tick(f, 1, 12);
    fx_stabilize(f);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER); /* check-quorum: not yet */
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 2, RAFT_READ_LEASE), 0);
    fx_stabilize(f);
    ASSERT_TRUE(find_read(f, 1, 2) == NULL);
    fx_destroy(f);
}

TEST(lease_revoked_by_leadership_transfer)
{
    /* The transfer target's forced campaign ignores the followers' lease, so
     * the old leader must not serve lease reads once it sent TIMEOUT_NOW. */
    struct fx *f = fx_create_ex(3, 3, 0, lease_cfg);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    f->cut[3][1] = f->cut[3][2] = true; /* 3 hears but is not heard */
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 3), 0);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_TIMEOUT_NOW], 1);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 1, RAFT_READ_LEASE), 0);
    fx_stabilize(f);
    /* Not served from the lease: it took a heartbeat round (acked by 2). */
    const struct raft_read_state *rs = find_read(f, 1, 1);
    ASSERT_TRUE(rs != NULL);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_HEARTBEAT] > 0, 1);
    uint64_t hb = heartbeats_sent(f, 1);
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 2, RAFT_READ_LEASE), 0);
    fx_stabilize(f);
    ASSERT_GE(heartbeats_sent(f, 1), hb + 1);
    fx_destroy(f);
}

TEST(lease_mode_ignored_without_lease_reads)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    uint64_t hb = heartbeats_sent(f, 1);
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 1, RAFT_READ_LEASE), 0);
    fx_stabilize(f);
    ASSERT_EQ(heartbeats_sent(f, 1), hb + 2); /* a real round */
    ASSERT_EQ(find_read(f, 1, 1)->status, 0);
    fx_destroy(f);
}

TEST(single_voter_read_released_at_once)
{
    struct fx *f = fx_create(1);
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 3, RAFT_READ_SAFE), 0);
    fx_stabilize(f);
    ASSERT_EQ(find_read(f, 1, 3)->index, raft_commit_index(fx_r(f, 1)));
    fx_destroy(f);
}

TEST(reads_pending_max_busy)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 1, true);
    for (uint64_t c = 0; c < 64; c++)
        ASSERT_EQ(raft_read_index(fx_r(f, 1), c, RAFT_READ_SAFE), 0);
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 64, RAFT_READ_SAFE), ST_EBUSY);
    fx_isolate(f, 1, false);
    fx_run(f, 1);
    ASSERT_EQ(f->nodes[1].n_reads, 64);
    ASSERT_EQ(raft_read_index(fx_r(f, 1), 65, RAFT_READ_SAFE), 0);
    fx_destroy(f);
}

TEST(read_served_by_new_leader_sees_old_writes)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    raft_index idx;
    ASSERT_EQ(fx_propose_str(f, 1, "w", &idx), 0);
    fx_run(f, 1);
    fx_crash(f, 1);
    fx_run(f, 40);
    raft_id l = fx_leader(f);
    ASSERT_TRUE(l == 2 || l == 3);
    ASSERT_EQ(raft_read_index(fx_r(f, l), 77, RAFT_READ_SAFE), 0);
    fx_stabilize(f);
    ASSERT_GE(find_read(f, l, 77)->index, idx);
    fx_destroy(f);
}

TEST_MAIN()
