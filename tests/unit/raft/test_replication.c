/* Log replication, commitment and flow control. */
#include "fixture.h"

static void no_prevote_no_cq_small_msgs(struct raft_config *c)
{
    c->pre_vote = false;
    c->check_quorum = false;
    c->msg_bytes_max = 1;
}

static void no_check_quorum(struct raft_config *c)
{
    c->check_quorum = false;
}

static bool same_sm(struct fx *f)
{
    for (int i = 2; i <= f->n; i++) {
        if (f->nodes[i].applied != f->nodes[1].applied || f->nodes[i].sm != f->nodes[1].sm)
            return false;
    }
    return true;
}

TEST(replication_reaches_all_and_applies_in_order)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    char s[32];
    for (int i = 0; i < 20; i++) {
        snprintf(s, sizeof s, "cmd-%d", i);
        ASSERT_EQ(fx_propose_str(f, 1, s, NULL), 0);
        if (i % 3 == 0) fx_stabilize(f);
    }
    fx_run(f, 2);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), raft_last_index(fx_r(f, 1)));
    ASSERT_TRUE(same_sm(f));
    ASSERT_EQ(f->nodes[2].n_applied_normal, 20);
    fx_destroy(f);
}

static uint32_t strip_term4_entries(struct fx *f, const struct raft_msg *m)
{
    (void)f;
    uint32_t n = 0;
    while (n < m->n_entries && m->entries[n].term != 4)
        n++;
    return n;
}

static bool drop_appends_from_5(struct fx *f, const struct raft_msg *m, void *arg)
{
    (void)f;
    (void)arg;
    return !(m->from == 5 && m->type == RAFT_MSG_APPEND);
}

TEST(commit_requires_current_term_entry)
{
    /* Figure 3.7 of the thesis, with 5 bootstrap entries in front. */
    struct fx *f = fx_create_ex(5, 5, 0, no_prevote_no_cq_small_msgs);
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), 6); /* noop of term 2 */
    /* (a) S1 (term 2) gets entry 7 to S2 only. */
    fx_isolate(f, 1, true);
    f->cut[1][2] = f->cut[2][1] = false;
    raft_index idx;
    ASSERT_EQ(fx_propose_str(f, 1, "a", &idx), 0);
    ASSERT_EQ(idx, 7);
    fx_stabilize(f);
    ASSERT_EQ(raft_last_index(fx_r(f, 2)), 7);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), 6);
    /* (b) S1 crashes; S5 is elected in term 3 by S3, S4 and appends entry 7
     * of term 3 that nobody receives. */
    fx_crash(f, 1);
    f->filter = drop_appends_from_5;
    ASSERT_EQ(fx_elect(f, 5), 5);
    ASSERT_EQ(raft_term_get(fx_r(f, 5)), 3);
    ASSERT_EQ(raft_entry_get(fx_r(f, 5), 7)->term, 3);
    /* (c) S5 crashes, S1 restarts and is elected in term 4; it replicates
     * entry 7 (term 2) to S3: a majority holds it... */
    fx_crash(f, 5);
    fx_isolate(f, 5, true);
    fx_restart(f, 1);
    fx_isolate(f, 1, false);
    fx_isolate(f, 5, true);
    f->trim = strip_term4_entries;
    raft_campaign(fx_r(f, 1));
    fx_stabilize(f);
    if (raft_role_get(fx_r(f, 1)) != RAFT_LEADER) {
        raft_campaign(fx_r(f, 1)); /* term 3 was taken by S5's voters */
        fx_stabilize(f);
    }
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    ASSERT_EQ(raft_term_get(fx_r(f, 1)), 4);
    fx_run(f, 3);
    ASSERT_TRUE(raft_entry_get(fx_r(f, 3), 7) != NULL);
    ASSERT_EQ(raft_entry_get(fx_r(f, 3), 7)->term, 2);
    ASSERT_EQ(raft_entry_get(fx_r(f, 2), 7)->term, 2);
    /* ...but it is not committed by counting replicas (it could still be
     * overwritten by S5, Figure 3.7 (d)). */
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), 6);
    /* (e) once the term-4 entry reaches a majority, both commit. */
    f->trim = NULL;
    fx_run(f, 3);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), 8);
    ASSERT_EQ(raft_commit_index(fx_r(f, 3)), 8);
    fx_destroy(f);
}

static uint64_t rejects_from_1;
static bool count_rejects(struct fx *f, const struct raft_msg *m, void *arg)
{
    (void)f;
    (void)arg;
    if (m->type == RAFT_MSG_APPEND_RESP && m->reject && m->from == 1) rejects_from_1++;
    return true;
}

TEST(follower_conflict_fast_backtrack)
{
    struct fx *f = fx_create_ex(3, 3, 0, no_check_quorum);
    ASSERT_EQ(fx_elect(f, 1), 1);
    /* The old leader writes 60 entries nobody receives. */
    fx_isolate(f, 1, true);
    for (int i = 0; i < 60; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "lost", NULL), 0);
    fx_stabilize(f);
    /* The others elect 2, which commits 10 entries. */
    fx_run(f, 25);
    raft_id l = fx_leader(f) == 1 ? raft_leader(fx_r(f, 3)) : fx_leader(f);
    ASSERT_TRUE(l == 2 || l == 3);
    for (int i = 0; i < 10; i++)
        ASSERT_EQ(fx_propose_str(f, l, "kept", NULL), 0);
    fx_stabilize(f);
    /* A fresh leadership starts probing 1 at its last index, far beyond the
     * point where the logs diverge. */
    fx_crash(f, l);
    fx_restart(f, l);
    fx_run(f, 30);
    l = raft_leader(fx_r(f, 2));
    ASSERT_TRUE(l == 2 || l == 3);
    rejects_from_1 = 0;
    f->filter = count_rejects;
    fx_isolate(f, 1, false);
    fx_run(f, 5);
    /* One rejection names the conflicting term's first index: the leader
     * jumps over all 60 entries at once instead of one per round trip. */
    ASSERT_GE(rejects_from_1, 1);
    ASSERT_LE(rejects_from_1, 2);
    ASSERT_EQ(raft_last_index(fx_r(f, 1)), raft_last_index(fx_r(f, l)));
    ASSERT_TRUE(same_sm(f));
    ASSERT_EQ(f->nodes[1].n_applied_normal, 10);
    fx_destroy(f);
}

TEST(follower_reject_hint_is_last_index_when_log_shorter)
{
    struct fx *f = fx_create(3);
    struct raft *r = fx_r(f, 2);
    struct raft_msg m = {
        .type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 2, .index = 40, .log_term = 2};
    ASSERT_EQ(raft_step(r, &m), 0);
    struct raft_ready rd;
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_msgs, 1);
    ASSERT_TRUE(rd.msgs[0].reject);
    ASSERT_EQ(rd.msgs[0].index, 40);
    ASSERT_EQ(rd.msgs[0].reject_hint, 3);
    ASSERT_EQ(rd.msgs[0].hint_term, 0);
    raft_ready_ack(r, &rd);
    fx_destroy(f);
}

static uint64_t appends_to_2, entries_to_2, max_payload;
static bool drop_resp_from_2(struct fx *f, const struct raft_msg *m, void *arg)
{
    (void)f;
    (void)arg;
    if (m->type == RAFT_MSG_APPEND && m->to == 2 && m->n_entries > 0) {
        appends_to_2++;
        entries_to_2 += m->n_entries;
        uint64_t b = 0;
        for (uint32_t i = 0; i < m->n_entries; i++)
            b += m->entries[i].len;
        max_payload = b > max_payload ? b : max_payload;
    }
    return !(m->from == 2 && (m->type == RAFT_MSG_APPEND_RESP));
}

TEST(inflight_window_bounds_appends)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2); /* 2 is in replicate state */
    appends_to_2 = 0;
    f->filter = drop_resp_from_2;
    for (int i = 0; i < 30; i++) {
        ASSERT_EQ(fx_propose_str(f, 1, "p", NULL), 0);
        fx_stabilize(f); /* one ready per proposal: one append each if allowed */
    }
    /* inflight_msgs_max = 4: no more appends until 2 answers. */
    ASSERT_EQ(appends_to_2, 4);
    /* Node 3 answered, so everything commits regardless. */
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), raft_last_index(fx_r(f, 1)));
    f->filter = NULL;
    fx_run(f, 5);
    ASSERT_EQ(raft_last_index(fx_r(f, 2)), raft_last_index(fx_r(f, 1)));
    ASSERT_TRUE(same_sm(f));
    fx_destroy(f);
}

static bool observe_only(struct fx *f, const struct raft_msg *m, void *arg)
{
    drop_resp_from_2(f, m, arg);
    return true;
}

static void window_of_one(struct raft_config *c)
{
    c->inflight_msgs_max = 1;
}

/* The server's setting (--raft-inflight 1): what is proposed while the one
 * append is unanswered goes out as ONE append when the window frees. */
TEST(inflight_window_of_one_coalesces_what_waits)
{
    struct fx *f = fx_create_ex(3, 3, 0, window_of_one);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    appends_to_2 = entries_to_2 = 0;
    f->filter = drop_resp_from_2;
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(fx_propose_str(f, 1, "p", NULL), 0);
        fx_stabilize(f);
    }
    ASSERT_EQ(appends_to_2, 1);
    ASSERT_EQ(entries_to_2, 1);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), raft_last_index(fx_r(f, 1))); /* 3 answered */
    /* A heartbeat answer frees the slot (the lost answer): the 9 waiting
     * entries leave in one append. */
    appends_to_2 = entries_to_2 = 0;
    f->filter = observe_only;
    fx_run(f, 3);
    ASSERT_EQ(appends_to_2, 1);
    ASSERT_EQ(entries_to_2, 9);
    ASSERT_EQ(raft_last_index(fx_r(f, 2)), raft_last_index(fx_r(f, 1)));
    ASSERT_TRUE(same_sm(f));
    fx_destroy(f);
}

static bool drop_append_resps(struct fx *f, const struct raft_msg *m, void *arg)
{
    (void)f;
    (void)arg;
    return m->type != RAFT_MSG_APPEND_RESP;
}

static raft_index disk_last(const struct fx *f, raft_id id)
{
    const struct fx_node *n = &f->nodes[id];
    return n->n_disk ? n->disk[n->n_disk - 1].index : 0;
}

/* A leader that needs a follower for a quorum writes an entry when an append
 * carries it, not before: what waits for the replication window cannot
 * commit any sooner for being on the leader's disk, and writing it with the
 * append makes one leader write per round (with every ready, the leader
 * synced about twice per follower sync). */
TEST(leader_writes_entries_when_an_append_carries_them)
{
    struct fx *f = fx_create_ex(3, 3, 0, window_of_one);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    f->filter = drop_append_resps; /* both windows stay full */
    raft_index first;
    ASSERT_EQ(fx_propose_str(f, 1, "p", &first), 0);
    fx_stabilize(f);
    ASSERT_EQ(disk_last(f, 1), first); /* went out at once, written at once */
    for (int i = 0; i < 9; i++) {
        ASSERT_EQ(fx_propose_str(f, 1, "p", NULL), 0);
        fx_stabilize(f);
    }
    ASSERT_EQ(raft_last_index(fx_r(f, 1)), first + 9);
    ASSERT_EQ(disk_last(f, 1), first); /* the 9 wait with the window */
    ASSERT_TRUE(raft_commit_index(fx_r(f, 1)) < first);
    /* The followers answer (a heartbeat answer frees the window): the 9 go
     * out in one append, are written, and commit. */
    f->filter = NULL;
    fx_run(f, 3);
    ASSERT_EQ(disk_last(f, 1), first + 9);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), first + 9);
    ASSERT_EQ(f->nodes[1].applied, first + 9);
    ASSERT_TRUE(same_sm(f));
    fx_destroy(f);
}

static void small_msgs(struct raft_config *c)
{
    c->msg_bytes_max = 100;
}

TEST(msg_bytes_max_bounds_batches)
{
    struct fx *f = fx_create_ex(3, 3, 0, small_msgs);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    appends_to_2 = entries_to_2 = max_payload = 0;
    f->filter = observe_only;
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(fx_propose_size(f, 1, 30), 0);
    fx_stabilize(f);
    ASSERT_EQ(entries_to_2, 20);
    ASSERT_LE(max_payload, 100);
    ASSERT_EQ(max_payload, 90);
    ASSERT_GE(appends_to_2, 7);
    /* One entry larger than a message is refused outright. */
    ASSERT_EQ(fx_propose_size(f, 1, 101), ST_ETOOBIG);
    fx_destroy(f);
}

TEST(proposals_batched_in_one_append)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    appends_to_2 = entries_to_2 = 0;
    f->filter = observe_only;
    for (int i = 0; i < 50; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "batched", NULL), 0);
    fx_stabilize(f);
    ASSERT_EQ(appends_to_2, 1);
    ASSERT_EQ(entries_to_2, 50);
    fx_destroy(f);
}

TEST(single_node_commits_only_after_persist)
{
    struct fx *f = fx_create(1);
    f->nodes[1].manual_disk = true;
    raft_campaign(fx_r(f, 1));
    fx_stabilize(f);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    raft_index idx;
    ASSERT_EQ(fx_propose_str(f, 1, "durable", &idx), 0);
    fx_stabilize(f);
    /* Handed to the disk but not durable: not committed, not applied. */
    ASSERT_TRUE(raft_commit_index(fx_r(f, 1)) < idx);
    ASSERT_TRUE(f->nodes[1].applied < idx);
    fx_disk_flush(f, 1);
    fx_stabilize(f);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), idx);
    ASSERT_EQ(f->nodes[1].applied, idx);
    fx_destroy(f);
}

TEST(leader_applies_only_what_it_persisted)
{
    /* The followers make an entry committed (10.2.1: the leader's write
     * overlaps the replication) but the leader applies it only once its own
     * disk has it. */
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->nodes[1].manual_disk = true;
    raft_index idx;
    ASSERT_EQ(fx_propose_str(f, 1, "x", &idx), 0);
    fx_stabilize(f);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), idx);
    ASSERT_TRUE(f->nodes[1].applied < idx);
    ASSERT_TRUE(f->nodes[1].hs.commit <= idx);
    fx_disk_flush(f, 1);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[1].applied, idx);
    fx_destroy(f);
}

TEST(follower_acks_only_after_persist)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->nodes[2].manual_disk = true;
    f->nodes[3].manual_disk = true;
    raft_index idx;
    ASSERT_EQ(fx_propose_str(f, 1, "x", &idx), 0);
    fx_stabilize(f);
    ASSERT_TRUE(raft_commit_index(fx_r(f, 1)) < idx);
    fx_disk_flush(f, 2);
    fx_stabilize(f);
    ASSERT_EQ(raft_commit_index(fx_r(f, 1)), idx);
    fx_destroy(f);
}

TEST(persisted_report_of_overwritten_entry_is_ignored)
{
    struct fx *f = fx_create(3);
    struct raft *r = fx_r(f, 3);
    /* Leader 1 (term 2) sends entry 4 of term 2. */
    struct raft_entry e = {.term = 2, .index = 4, .type = RAFT_ENTRY_NOOP};
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = 1,
                         .to = 3,
                         .term = 2,
                         .index = 3,
                         .log_term = 1,
                         .commit = 3,
                         .n_entries = 1,
                         .entries = &e};
    ASSERT_EQ(raft_step(r, &m), 0);
    struct raft_ready rd;
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.persist_index, 4);
    ASSERT_EQ(rd.persist_term, 2);
    raft_ready_ack(r, &rd);
    /* Before that write completes, leader 2 of term 3 overwrites index 4. */
    struct raft_entry e3 = {.term = 3, .index = 4, .type = RAFT_ENTRY_NOOP};
    struct raft_msg m3 = {.type = RAFT_MSG_APPEND,
                          .from = 2,
                          .to = 3,
                          .term = 3,
                          .index = 3,
                          .log_term = 1,
                          .commit = 3,
                          .n_entries = 1,
                          .entries = &e3};
    ASSERT_EQ(raft_step(r, &m3), 0);
    raft_persisted(r, 4, 2); /* the old write completes */
    raft_check_invariants(r);
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_entries, 1);
    ASSERT_EQ(rd.entries[0].term, 3);
    raft_ready_ack(r, &rd);
    /* Index 4 of term 3 is not durable: a commit to 4 is not applied yet. */
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 3, .term = 3, .commit = 4};
    raft_step(r, &hb);
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_committed, 0);
    raft_ready_ack(r, &rd);
    raft_persisted(r, 4, 3);
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_committed, 1);
    ASSERT_EQ(rd.committed[0].term, 3);
    raft_ready_ack(r, &rd);
    fx_destroy(f);
}

static void bounded_uncommitted(struct raft_config *c)
{
    c->uncommitted_bytes_max = 100;
}

TEST(uncommitted_bound)
{
    struct fx *f = fx_create_ex(3, 3, 0, bounded_uncommitted);
    ASSERT_EQ(fx_elect(f, 1), 1);
    f->cut[1][2] = f->cut[1][3] = true; /* no quorum: nothing commits */
    int ok = 0, busy = 0;
    for (int i = 0; i < 10; i++) {
        int rc = fx_propose_size(f, 1, 30);
        if (rc == 0)
            ok++;
        else if (rc == ST_EBUSY)
            busy++;
        fx_stabilize(f);
    }
    ASSERT_EQ(ok, 3);
    ASSERT_EQ(busy, 7);
    struct raft_stats st;
    raft_stats_get(fx_r(f, 1), &st);
    ASSERT_EQ(st.proposals_refused, 7);
    /* Once they commit, proposals are accepted again. */
    f->cut[1][2] = f->cut[1][3] = false;
    fx_run(f, 3);
    ASSERT_EQ(fx_propose_size(f, 1, 30), 0);
    fx_destroy(f);
}

TEST(forward_proposal)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    raft_index idx = 99;
    ASSERT_EQ(fx_propose_str(f, 3, "from-follower", &idx), 0);
    ASSERT_EQ(idx, 0);
    fx_stabilize(f);
    fx_run(f, 2);
    ASSERT_EQ(f->nodes[1].n_applied_normal, 1);
    ASSERT_EQ(f->nodes[3].n_applied_normal, 1);
    ASSERT_TRUE(same_sm(f));
    fx_destroy(f);
}

static void no_forward(struct raft_config *c)
{
    c->forward_proposals = false;
}

TEST(proposal_refused_without_leader_or_forwarding)
{
    struct fx *f = fx_create_ex(3, 3, 0, no_forward);
    ASSERT_EQ(fx_propose_str(f, 2, "x", NULL), ST_ENOTLEADER); /* no leader yet */
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(fx_propose_str(f, 2, "x", NULL), ST_ENOTLEADER);
    fx_destroy(f);
}

TEST(heartbeat_commit_bounded_by_match)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_isolate(f, 3, true);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "x", NULL), 0);
    fx_stabilize(f);
    raft_index commit = raft_commit_index(fx_r(f, 1));
    raft_index match3 = 0;
    struct raft_progress_info pi[8];
    size_t n = raft_progress_get(fx_r(f, 1), pi, 8);
    for (size_t i = 0; i < n; i++)
        if (pi[i].id == 3) match3 = pi[i].match;
    ASSERT_TRUE(match3 < commit);
    /* The heartbeat to 3 carries min(commit, match). */
    raft_tick(fx_r(f, 1));
    struct raft_ready rd;
    raft_ready_get(fx_r(f, 1), &rd);
    int seen = 0;
    for (size_t i = 0; i < rd.n_msgs; i++) {
        if (rd.msgs[i].type == RAFT_MSG_HEARTBEAT && rd.msgs[i].to == 3) {
            ASSERT_EQ(rd.msgs[i].commit, match3);
            seen++;
        }
    }
    ASSERT_EQ(seen, 1);
    raft_ready_ack(fx_r(f, 1), &rd);
    fx_destroy(f);
}

TEST(lost_append_in_replicate_state_recovers)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    f->cut[1][2] = true;
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(fx_propose_str(f, 1, "y", NULL), 0);
        fx_stabilize(f);
    }
    f->cut[1][2] = false;
    fx_run(f, 6);
    ASSERT_EQ(raft_last_index(fx_r(f, 2)), raft_last_index(fx_r(f, 1)));
    ASSERT_TRUE(same_sm(f));
    fx_destroy(f);
}

TEST_MAIN()

/* Issue 14 finding 9: a follower that reported "leadership lost" to its
 * client must be able to trust that its forwarded proposal never applies
 * later. A PROPOSE carries the term it was forwarded in, and a leader of a
 * later term drops it, even when it is the same node leading again. */
TEST(forwarded_proposal_of_older_term_dropped_by_later_leader)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    raft_term t_old = raft_term_get(fx_r(f, 3));
    const char *s = "forwarded-then-replayed";
    struct raft_buf *b = raft_buf_create(strlen(s));
    ASSERT_TRUE(b != NULL);
    memcpy(b->data, s, strlen(s));
    struct raft_entry e = {.type = RAFT_ENTRY_NORMAL,
                           .index = 1,
                           .term = 1,
                           .buf = b,
                           .data = b->data,
                           .len = (uint32_t)strlen(s)};
    struct raft_msg m = {
        .type = RAFT_MSG_PROPOSE, .from = 3, .to = 1, .term = t_old, .n_entries = 1, .entries = &e};
    /* Leadership moves away and comes back: node 1 leads a later term. */
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 1), 2), 0);
    fx_stabilize(f);
    ASSERT_EQ(fx_leader(f), 2);
    ASSERT_EQ(raft_transfer_leadership(fx_r(f, 2), 1), 0);
    fx_stabilize(f);
    ASSERT_EQ(fx_leader(f), 1);
    ASSERT_TRUE(raft_term_get(fx_r(f, 1)) > t_old);
    fx_run(f, 2);
    raft_index last = raft_last_index(fx_r(f, 1));
    uint64_t applied = f->nodes[1].n_applied_normal;
    struct raft_stats before, after;
    raft_stats_get(fx_r(f, 1), &before);
    /* The message of the old term arrives late. */
    ASSERT_EQ(raft_step(fx_r(f, 1), &m), ST_ESTALE);
    fx_run(f, 3);
    ASSERT_EQ(raft_last_index(fx_r(f, 1)), last);
    ASSERT_EQ(f->nodes[1].n_applied_normal, applied);
    raft_stats_get(fx_r(f, 1), &after);
    ASSERT_EQ(after.proposals_refused, before.proposals_refused + 1);
    ASSERT_EQ(raft_role_get(fx_r(f, 1)), RAFT_LEADER);
    /* The same message in the leader's own term is appended. */
    m.term = raft_term_get(fx_r(f, 1));
    ASSERT_EQ(raft_step(fx_r(f, 1), &m), 0);
    fx_run(f, 3);
    ASSERT_EQ(raft_last_index(fx_r(f, 1)), last + 1);
    ASSERT_EQ(f->nodes[1].n_applied_normal, applied + 1);
    /* Term 0 is malformed for a PROPOSE (a follower always knows a term). */
    m.term = 0;
    ASSERT_EQ(raft_step(fx_r(f, 1), &m), ST_EPROTO);
    raft_buf_unref(b);
    ASSERT_TRUE(same_sm(f));
    fx_destroy(f);
}
