/* Snapshots, compaction and restarts. */
#include "fixture.h"
#include "raft/raft_int.h" /* LOG_RELEASE_PER_CALL */

TEST(snapshot_taken_compacts_keeping_trailing_entries)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "s", NULL), 0);
    fx_run(f, 2);
    struct raft *r = fx_r(f, 1);
    raft_index applied = f->nodes[1].applied;
    ASSERT_EQ(applied, raft_last_index(r));
    raft_index first = fx_snapshot(f, 1);
    /* trailing_entries = 5 in the fixture */
    ASSERT_EQ(first, applied - 5 + 1);
    ASSERT_EQ(raft_first_index(r), first);
    ASSERT_TRUE(raft_entry_get(r, first - 1) == NULL);
    ASSERT_TRUE(raft_entry_get(r, first) != NULL);
    const struct raft_snapshot_meta *m = raft_snapshot_get(r);
    ASSERT_EQ(m->index, applied);
    ASSERT_EQ(m->term, raft_term_get(r));
    ASSERT_EQ(raft_conf_voters(&m->conf), 3);
    /* Not beyond applied, not backwards. */
    ASSERT_EQ(raft_snapshot_taken(r, applied + 1), first);
    ASSERT_EQ(raft_snapshot_taken(r, applied - 1), first);
    ASSERT_EQ(raft_snapshot_get(r)->index, applied);
    fx_destroy(f);
}

static void tweak_trailing_bytes(struct raft_config *c)
{
    c->trailing_entries = 100;
    c->trailing_bytes = 25; /* two entries of 10 bytes */
}

TEST(snapshot_taken_keeps_no_more_trailing_bytes_than_configured)
{
    struct fx *f = fx_create_ex(3, 3, 0, tweak_trailing_bytes);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "0123456789", NULL), 0);
    fx_run(f, 2);
    struct raft *r = fx_r(f, 1);
    raft_index applied = f->nodes[1].applied;
    ASSERT_EQ(applied, raft_last_index(r));
    /* 100 trailing entries by count, but 25 bytes keep only the last two. */
    raft_index first = fx_snapshot(f, 1);
    ASSERT_EQ(first, applied - 2 + 1);
    ASSERT_EQ(raft_first_index(r), first);
    ASSERT_TRUE(raft_term_at(r, first - 1) != 0); /* the compaction point's term */
    ASSERT_EQ(raft_term_at(r, first - 2), 0);
    fx_destroy(f);
}

TEST(snapshot_records_conf_as_of_its_index)
{
    struct fx *f = fx_create_ex(4, 3, 0, NULL);
    ASSERT_EQ(fx_elect(f, 1), 1);
    raft_index idx;
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_ADD_LEARNER, 4, &idx), 0);
    fx_run(f, 2);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "c", NULL), 0);
    fx_run(f, 2);
    fx_snapshot(f, 1);
    const struct raft_snapshot_meta *m = raft_snapshot_get(fx_r(f, 1));
    ASSERT_EQ(m->conf.n, 4);
    ASSERT_EQ(raft_conf_find(&m->conf, 4)->role, RAFT_LEARNER);
    /* The conf survives compaction of the conf entries themselves. */
    ASSERT_TRUE(raft_first_index(fx_r(f, 1)) > idx);
    ASSERT_EQ(raft_conf_get(fx_r(f, 1))->n, 4);
    fx_destroy(f);
}

TEST(snapshot_sent_to_lagging_follower)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 3, true);
    for (int i = 0; i < 30; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "lag", NULL), 0);
    fx_run(f, 2);
    fx_snapshot(f, 1);
    ASSERT_TRUE(raft_first_index(fx_r(f, 1)) > raft_last_index(fx_r(f, 3)) + 1);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "after", NULL), 0);
    fx_isolate(f, 3, false);
    fx_run(f, 5);
    ASSERT_GE(f->nodes[1].sent[RAFT_MSG_SNAPSHOT], 1);
    ASSERT_TRUE(f->nodes[3].has_snap);
    ASSERT_EQ(raft_last_index(fx_r(f, 3)), raft_last_index(fx_r(f, 1)));
    ASSERT_EQ(f->nodes[3].applied, f->nodes[1].applied);
    ASSERT_EQ(f->nodes[3].sm, f->nodes[1].sm);
    ASSERT_EQ(raft_snapshot_get(fx_r(f, 3))->index, raft_snapshot_get(fx_r(f, 1))->index);
    /* It is in replicate state again. */
    struct raft_progress_info pi[8];
    size_t n = raft_progress_get(fx_r(f, 1), pi, 8);
    for (size_t i = 0; i < n; i++)
        if (pi[i].id == 3) ASSERT_EQ(pi[i].state, RAFT_PROGRESS_REPLICATE);
    fx_destroy(f);
}

TEST(lagging_follower_within_trailing_entries_needs_no_snapshot)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 1);
    fx_isolate(f, 3, true);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "few", NULL), 0);
    fx_run(f, 2);
    fx_snapshot(f, 1);
    fx_isolate(f, 3, false);
    fx_run(f, 4);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_SNAPSHOT], 0);
    ASSERT_EQ(f->nodes[3].sm, f->nodes[1].sm);
    fx_destroy(f);
}

TEST(snapshot_fast_forwards_when_follower_has_the_entry)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 1);
    struct raft *r3 = fx_r(f, 3);
    struct raft *r1 = fx_r(f, 1);
    /* 3 receives one more entry but not its commit. */
    raft_index last = raft_last_index(r3);
    raft_term t = raft_term_get(r1);
    struct raft_entry e = {.term = t, .index = last + 1, .type = RAFT_ENTRY_NOOP};
    struct raft_msg a = {.type = RAFT_MSG_APPEND,
                         .from = 1,
                         .to = 3,
                         .term = t,
                         .index = last,
                         .log_term = t,
                         .commit = last,
                         .n_entries = 1,
                         .entries = &e};
    ASSERT_EQ(raft_step(r3, &a), 0);
    fx_stabilize(f);
    raft_index last3 = raft_last_index(r3);
    ASSERT_EQ(last3, last + 1);
    ASSERT_TRUE(raft_commit_index(r3) < last3);
    struct raft_snapshot_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.index = last3;
    meta.term = t;
    meta.conf = *raft_conf_get(r3);
    struct raft_msg m = {
        .type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 3, .term = t, .snapshot = &meta};
    ASSERT_EQ(raft_step(r3, &m), 0);
    ASSERT_EQ(raft_commit_index(r3), last3);
    ASSERT_TRUE(raft_snapshot_get(r3) == NULL); /* nothing installed */
    struct raft_ready rd;
    raft_ready_get(r3, &rd);
    ASSERT_TRUE(rd.snapshot == NULL);
    ASSERT_EQ(rd.n_msgs_after_persist, 1);
    ASSERT_EQ(rd.msgs_after_persist[0].type, RAFT_MSG_APPEND_RESP);
    ASSERT_EQ(rd.msgs_after_persist[0].index, last3);
    raft_ready_ack(r3, &rd);
    fx_destroy(f);
}

TEST(snapshot_replaces_conflicting_log)
{
    struct fx *f = fx_create(3);
    struct raft *r3 = fx_r(f, 3);
    /* 3 holds a divergent uncommitted entry 4 of term 2. */
    struct raft_entry e = {.term = 2, .index = 4, .type = RAFT_ENTRY_NOOP};
    struct raft_msg a = {.type = RAFT_MSG_APPEND,
                         .from = 2,
                         .to = 3,
                         .term = 2,
                         .index = 3,
                         .log_term = 1,
                         .commit = 3,
                         .n_entries = 1,
                         .entries = &e};
    ASSERT_EQ(raft_step(r3, &a), 0);
    fx_stabilize(f);
    struct raft_snapshot_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.index = 10;
    meta.term = 3;
    fx_conf_voters(&meta.conf, 3, 0);
    struct raft_msg m = {
        .type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 3, .term = 3, .snapshot = &meta};
    ASSERT_EQ(raft_step(r3, &m), 0);
    raft_check_invariants(r3);
    ASSERT_EQ(raft_last_index(r3), 10);
    ASSERT_EQ(raft_first_index(r3), 11);
    ASSERT_EQ(raft_commit_index(r3), 10);
    struct raft_ready rd;
    raft_ready_get(r3, &rd);
    ASSERT_TRUE(rd.snapshot != NULL);
    ASSERT_EQ(rd.snapshot->index, 10);
    ASSERT_EQ(rd.persist_index, 10);
    ASSERT_EQ(rd.persist_term, 3);
    ASSERT_EQ(rd.n_committed, 0);
    ASSERT_EQ(rd.n_msgs_after_persist, 1); /* the ack waits for the disk */
    ASSERT_EQ(rd.msgs_after_persist[0].index, 10);
    ASSERT_TRUE(rd.hard_state_changed);
    ASSERT_EQ(rd.hard_state.commit, 10);
    raft_ready_ack(r3, &rd);
    raft_persisted(r3, 10, 3);
    ASSERT_EQ(raft_applied_index(r3), 10);
    raft_check_invariants(r3);
    fx_destroy(f);
}

static bool drop_acks_from_3(struct fx *f, const struct raft_msg *m, void *arg)
{
    (void)f;
    (void)arg;
    return !(m->from == 3 && m->type == RAFT_MSG_APPEND_RESP && !m->reject);
}

TEST(report_snapshot_failure_returns_to_probe)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 3, true);
    for (int i = 0; i < 30; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "z", NULL), 0);
    fx_run(f, 2);
    fx_snapshot(f, 1);
    /* The snapshot goes out but its acknowledgement never arrives. */
    f->cut[3][1] = false;
    f->cut[1][3] = false;
    f->filter = drop_acks_from_3;
    fx_run(f, 2);
    struct raft_progress_info pi[8];
    size_t n = raft_progress_get(fx_r(f, 1), pi, 8);
    uint8_t st = 255;
    for (size_t i = 0; i < n; i++)
        if (pi[i].id == 3) st = pi[i].state;
    ASSERT_EQ(st, RAFT_PROGRESS_SNAPSHOT);
    uint64_t sent = f->nodes[1].sent[RAFT_MSG_SNAPSHOT];
    fx_run(f, 3);
    ASSERT_EQ(f->nodes[1].sent[RAFT_MSG_SNAPSHOT], sent); /* waits, no resend */
    raft_report_snapshot(fx_r(f, 1), 3, false);
    n = raft_progress_get(fx_r(f, 1), pi, 8);
    for (size_t i = 0; i < n; i++)
        if (pi[i].id == 3) st = pi[i].state;
    ASSERT_EQ(st, RAFT_PROGRESS_PROBE);
    /* Healed: the next attempt succeeds. */
    f->filter = NULL;
    fx_run(f, 5);
    ASSERT_EQ(f->nodes[3].sm, f->nodes[1].sm);
    fx_destroy(f);
}

TEST(restart_from_bootstrap_state)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 12; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "persist-me", NULL), 0);
    fx_run(f, 2);
    uint64_t sm = f->nodes[1].sm;
    raft_index commit = raft_commit_index(fx_r(f, 1));
    raft_term term = raft_term_get(fx_r(f, 1));
    for (int i = 1; i <= 3; i++)
        fx_crash(f, (raft_id)i);
    for (int i = 1; i <= 3; i++)
        fx_restart(f, (raft_id)i);
    /* The hard state brings the commit index back (DESIGN 3.9): committed
     * entries are applied again without waiting for a leader. */
    for (int i = 1; i <= 3; i++) {
        struct raft *r = fx_r(f, (raft_id)i);
        ASSERT_EQ(raft_term_get(r), term);
        ASSERT_EQ(raft_commit_index(r), commit);
        ASSERT_EQ(raft_role_get(r), RAFT_FOLLOWER);
    }
    fx_stabilize(f);
    for (int i = 1; i <= 3; i++)
        ASSERT_EQ(f->nodes[i].sm, sm);
    fx_run(f, 40);
    raft_id l = fx_leader(f);
    ASSERT_NE(l, RAFT_NONE);
    ASSERT_TRUE(raft_term_get(fx_r(f, l)) > term);
    ASSERT_EQ(fx_propose_str(f, l, "again", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(f->nodes[1].sm, f->nodes[2].sm);
    ASSERT_EQ(f->nodes[2].sm, f->nodes[3].sm);
    fx_destroy(f);
}

TEST(restart_from_snapshot_plus_entries)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "snap", NULL), 0);
    fx_run(f, 2);
    fx_snapshot(f, 2);
    for (int i = 0; i < 4; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "tail", NULL), 0);
    fx_run(f, 2);
    uint64_t sm = f->nodes[2].sm;
    raft_index snap = f->nodes[2].snap.index;
    /* The disk holds trailing entries the snapshot covers: accepted. */
    ASSERT_TRUE(f->nodes[2].disk[0].index <= snap);
    fx_crash(f, 2);
    fx_restart(f, 2);
    ASSERT_EQ(raft_snapshot_get(fx_r(f, 2))->index, snap);
    ASSERT_EQ(raft_first_index(fx_r(f, 2)), snap + 1);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[2].sm, sm);
    ASSERT_EQ(raft_conf_voters(raft_conf_get(fx_r(f, 2))), 3);
    fx_destroy(f);
}

TEST(create_rejects_inconsistent_state)
{
    struct raft_config cfg;
    raft_config_default(&cfg, 1);
    struct raft *r = NULL;
    struct raft_bootstrap_state st;
    memset(&st, 0, sizeof(st));
    struct raft_entry ents[3] = {
        {.term = 1, .index = 1, .type = RAFT_ENTRY_NOOP},
        {.term = 1, .index = 2, .type = RAFT_ENTRY_NOOP},
        {.term = 1, .index = 4, .type = RAFT_ENTRY_NOOP},
    };
    st.hard_state.term = 1;
    st.entries = ents;
    st.n_entries = 3; /* gap */
    ASSERT_EQ(raft_create(&cfg, &st, &r), ST_EINVAL);
    st.n_entries = 2;
    st.hard_state.commit = 3; /* beyond the log */
    ASSERT_EQ(raft_create(&cfg, &st, &r), ST_EINVAL);
    st.hard_state.commit = 2;
    st.hard_state.term = 0; /* entries of a term above the current term */
    ASSERT_EQ(raft_create(&cfg, &st, &r), ST_EINVAL);
    st.hard_state.term = 1;
    st.applied = 3;
    ASSERT_EQ(raft_create(&cfg, &st, &r), ST_EINVAL);
    st.applied = 0;
    ASSERT_EQ(raft_create(&cfg, &st, &r), 0);
    ASSERT_EQ(raft_commit_index(r), 2);
    raft_check_invariants(r);
    raft_destroy(r);
    /* bad configs */
    cfg.heartbeat_ticks = cfg.election_ticks;
    ASSERT_EQ(raft_create(&cfg, &st, &r), ST_EINVAL);
    raft_config_default(&cfg, 1);
    cfg.lease_reads = true;
    cfg.check_quorum = false;
    ASSERT_EQ(raft_create(&cfg, &st, &r), ST_EINVAL);
    raft_config_default(&cfg, 0);
    ASSERT_EQ(raft_create(&cfg, &st, &r), ST_EINVAL);
}

/* A node crashed after storing a snapshot it received (the transport stores
 * it before the core sees the message) and before the ready that installed
 * it, with the sender's term, was durable: its disk holds a snapshot of a
 * later term than its hard state. It must start (it refused with EINVAL and
 * could never restart; the simulator found it, seed 906105 of the membership
 * profile), at the snapshot's term with no vote, and persist that term. */
TEST(restart_with_a_snapshot_newer_than_the_hard_state)
{
    struct raft_config cfg;
    raft_config_default(&cfg, 4);
    struct raft_snapshot_meta sm;
    memset(&sm, 0, sizeof(sm));
    sm.index = 32;
    sm.term = 4;
    sm.conf.n = 3;
    for (uint32_t i = 0; i < 3; i++) {
        sm.conf.members[i].id = i + 1;
        sm.conf.members[i].role = RAFT_VOTER;
    }
    struct raft_bootstrap_state st;
    memset(&st, 0, sizeof(st));
    st.snapshot = &sm;
    st.applied = 32; /* hard state: term 0, no vote, commit 0 (a new node) */
    struct raft *r = NULL;
    ASSERT_EQ(raft_create(&cfg, &st, &r), 0);
    ASSERT_EQ(raft_term_get(r), 4);
    ASSERT_EQ(raft_commit_index(r), 32);
    ASSERT_EQ(raft_last_index(r), 32);
    raft_check_invariants(r);
    ASSERT_TRUE(raft_has_ready(r));
    struct raft_ready rd;
    raft_ready_get(r, &rd);
    ASSERT_TRUE(rd.hard_state_changed);
    ASSERT_EQ(rd.hard_state.term, 4);
    ASSERT_EQ(rd.hard_state.vote, RAFT_NONE);
    raft_ready_ack(r, &rd);
    raft_destroy(r);
}

TEST(joiner_without_conf_waits_for_the_leader)
{
    struct fx *f = fx_create_ex(4, 3, 0, NULL);
    fx_tick(f, 4, 200);
    struct raft_stats st;
    raft_stats_get(fx_r(f, 4), &st);
    ASSERT_EQ(st.elections_started, 0);
    ASSERT_EQ(raft_conf_get(fx_r(f, 4))->n, 0);
    fx_destroy(f);
}

TEST(snapshot_message_names_latest_snapshot)
{
    /* A SNAPSHOT queued before the application took a newer snapshot goes
     * out naming the newer one: the older files may be gone by then (the
     * unit chaos test installed a stale state machine this way). */
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 3, true);
    for (int i = 0; i < 30; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "n", NULL), 0);
    fx_run(f, 2);
    struct raft *r1 = fx_r(f, 1);
    raft_index a = f->nodes[1].applied;
    raft_snapshot_taken(r1, a - 3);
    raft_report_unreachable(r1, 3);
    struct raft_msg hb = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .from = 3, .to = 1, .term = raft_term_get(r1)};
    ASSERT_EQ(raft_step(r1, &hb), 0); /* queues a SNAPSHOT of a - 3 */
    raft_snapshot_taken(r1, a);
    struct raft_ready rd;
    raft_ready_get(r1, &rd);
    int seen = 0;
    for (size_t i = 0; i < rd.n_msgs; i++) {
        if (rd.msgs[i].type == RAFT_MSG_SNAPSHOT) {
            ASSERT_EQ(rd.msgs[i].snapshot->index, a);
            seen++;
        }
    }
    ASSERT_EQ(seen, 1);
    raft_ready_ack(r1, &rd);
    fx_destroy(f);
}

static size_t count_released(struct raft_buf **held, const uint32_t *before, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += held[i]->refs < before[i];
    return k;
}

/* Compacting after a snapshot drops tens of thousands of entries at once;
 * releasing all their payload buffers in that call stalled the node's loop
 * for milliseconds (write p99). They are released a bounded number per tick
 * or ready, and all of them soon after. */
TEST(compaction_releases_payloads_a_bounded_number_per_call)
{
    enum { N = LOG_RELEASE_PER_CALL + 1000 };
    static struct raft_buf *held[N + 64];
    static uint32_t before[N + 64];
    struct fx *f = fx_create(1);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < N; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "p", NULL), 0);
    fx_run(f, 2);
    struct raft *r = fx_r(f, 1);
    raft_index applied = f->nodes[1].applied;
    ASSERT_EQ(applied, raft_last_index(r));
    size_t nh = 0;
    for (raft_index i = raft_first_index(r); i + 5 <= applied && nh < N + 64; i++) {
        const struct raft_entry *e = raft_entry_get(r, i);
        if (!e || !e->buf) continue;
        raft_buf_ref(e->buf);
        held[nh] = e->buf;
        before[nh] = e->buf->refs;
        nh++;
    }
    ASSERT_TRUE(nh > LOG_RELEASE_PER_CALL);
    raft_snapshot_taken(r, applied);
    ASSERT_EQ(count_released(held, before, nh), 0);
    raft_tick(r);
    size_t k = count_released(held, before, nh);
    ASSERT_TRUE(k > 0 && k <= LOG_RELEASE_PER_CALL);
    for (int i = 0; i < 8; i++)
        raft_tick(r);
    ASSERT_EQ(count_released(held, before, nh), nh);
    for (size_t i = 0; i < nh; i++)
        raft_buf_unref(held[i]);
    fx_destroy(f);
}

TEST_MAIN()
