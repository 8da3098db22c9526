/* Bad peer input is dropped and counted, never fatal; buffers; the ready
 * contract's bookkeeping. */
#include "fixture.h"

static uint64_t dropped(struct raft *r)
{
    struct raft_stats st;
    raft_stats_get(r, &st);
    return st.msgs_dropped;
}

TEST(raft_buf_refcounting)
{
    struct raft_buf *b = raft_buf_create(16);
    ASSERT_TRUE(b != NULL);
    ASSERT_EQ(b->refs, 1);
    ASSERT_EQ(b->cap, 16);
    raft_buf_ref(b);
    ASSERT_EQ(b->refs, 2);
    raft_buf_unref(b);
    ASSERT_EQ(b->refs, 1);
    raft_buf_unref(b); /* freed (ASan checks) */
    raft_buf_unref(NULL);
    struct raft_buf *z = raft_buf_create(0);
    ASSERT_TRUE(z != NULL);
    raft_buf_unref(z);
}

TEST(malformed_messages_dropped_and_counted)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 1);
    struct raft *r = fx_r(f, 2);
    raft_term t = raft_term_get(r);
    raft_index last = raft_last_index(r);
    uint64_t d0 = dropped(r);
    int n = 0;

    struct raft_msg m = {.type = 0, .from = 1, .to = 2, .term = t};
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++; /* unknown type */
    m.type = RAFT_MSG_TYPE_MAX;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    m = (struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 0, .to = 2, .term = t};
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++; /* from nobody */
    m.from = 1;
    m.to = 3;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++; /* misdirected */
    m.to = 2;
    m.term = 0;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++; /* no term */

    /* entries not contiguous */
    struct raft_entry e[2] = {{.term = t, .index = last + 1, .type = RAFT_ENTRY_NOOP},
                              {.term = t, .index = last + 3, .type = RAFT_ENTRY_NOOP}};
    m = (struct raft_msg){.type = RAFT_MSG_APPEND,
                          .from = 1,
                          .to = 2,
                          .term = t,
                          .index = last,
                          .log_term = t,
                          .n_entries = 2,
                          .entries = e};
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* entry term above the message term */
    e[1].index = last + 2;
    e[1].term = t + 1;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* terms going backwards */
    e[1].term = t;
    e[0].term = t;
    m.log_term = t;
    struct raft_entry back[2] = {{.term = t, .index = last + 1, .type = RAFT_ENTRY_NOOP},
                                 {.term = t - 1, .index = last + 2, .type = RAFT_ENTRY_NOOP}};
    m.entries = back;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* entries announced but absent */
    m.entries = NULL;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* payload outside its buffer */
    struct raft_buf *b = raft_buf_create(4);
    struct raft_entry bad = {.term = t,
                             .index = last + 1,
                             .type = RAFT_ENTRY_NORMAL,
                             .buf = b,
                             .data = b->data + 2,
                             .len = 4};
    m.entries = &bad;
    m.n_entries = 1;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* unknown entry type */
    bad.data = b->data;
    bad.type = 99;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* payload without buffer */
    bad.type = RAFT_ENTRY_NORMAL;
    bad.buf = NULL;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    raft_buf_unref(b);
    /* snapshot without meta */
    m = (struct raft_msg){.type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = t};
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* snapshot with an invalid conf */
    struct raft_snapshot_meta meta;
    memset(&meta, 0, sizeof(meta));
    meta.index = last + 5;
    meta.term = t;
    meta.conf.n = 2;
    meta.conf.members[0].id = 1;
    meta.conf.members[0].role = RAFT_VOTER;
    meta.conf.members[1].id = 1; /* duplicate */
    meta.conf.members[1].role = RAFT_VOTER;
    m.snapshot = &meta;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* entries on a message type that has none */
    m = (struct raft_msg){
        .type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = t, .n_entries = 1, .entries = e};
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;
    /* a forwarded proposal of a conf entry */
    struct raft_entry conf = {.type = RAFT_ENTRY_CONF};
    m = (struct raft_msg){
        .type = RAFT_MSG_PROPOSE, .from = 3, .to = 1, .term = t, .n_entries = 1, .entries = &conf};
    uint64_t d1 = dropped(fx_r(f, 1));
    ASSERT_EQ(raft_step(fx_r(f, 1), &m), ST_EPROTO);
    ASSERT_EQ(dropped(fx_r(f, 1)), d1 + 1);
    /* a vote request claiming a last log term above its term */
    m = (struct raft_msg){
        .type = RAFT_MSG_VOTE, .from = 3, .to = 2, .term = t, .index = 1, .log_term = t + 1};
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    n++;

    ASSERT_EQ(dropped(r), d0 + (uint64_t)n);
    /* Unharmed. */
    raft_check_invariants(r);
    ASSERT_EQ(raft_last_index(r), last);
    ASSERT_EQ(raft_term_get(r), t);
    ASSERT_EQ(raft_leader(r), 1);
    ASSERT_EQ(fx_propose_str(f, 1, "still fine", NULL), 0);
    fx_run(f, 2);
    ASSERT_EQ(f->nodes[1].sm, f->nodes[2].sm);
    fx_destroy(f);
}

TEST(messages_from_non_members_dropped)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r = fx_r(f, 1);
    raft_term t = raft_term_get(r);
    uint64_t d0 = dropped(r);
    struct raft_msg m = {.type = RAFT_MSG_APPEND_RESP, .from = 7, .to = 1, .term = t, .index = 3};
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    m.type = RAFT_MSG_HEARTBEAT_RESP;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    m.type = RAFT_MSG_READ_INDEX;
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    ASSERT_EQ(dropped(r), d0 + 3);
    /* A vote from a non-voter never counts. */
    struct raft *r2 = fx_r(f, 2);
    (void)r2;
    fx_destroy(f);
}

TEST(ack_beyond_leader_log_dropped)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r = fx_r(f, 1);
    struct raft_msg m = {.type = RAFT_MSG_APPEND_RESP,
                         .from = 2,
                         .to = 1,
                         .term = raft_term_get(r),
                         .index = raft_last_index(r) + 100};
    uint64_t d0 = dropped(r);
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    m.reject = true; /* a rejection of something never sent */
    ASSERT_EQ(raft_step(r, &m), ST_EPROTO);
    ASSERT_EQ(dropped(r), d0 + 2);
    raft_check_invariants(r);
    ASSERT_EQ(raft_commit_index(r), raft_last_index(r));
    fx_destroy(f);
}

TEST(stale_term_messages_counted)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 1);
    struct raft *r = fx_r(f, 2);
    raft_term t = raft_term_get(r);
    struct raft_stats st0, st1;
    raft_stats_get(r, &st0);
    struct raft_msg m = {
        .type = RAFT_MSG_VOTE, .from = 3, .to = 2, .term = t - 1, .index = 99, .log_term = t - 1};
    ASSERT_EQ(raft_step(r, &m), ST_ESTALE);
    m = (struct raft_msg){.type = RAFT_MSG_APPEND, .from = 3, .to = 2, .term = t - 1};
    ASSERT_EQ(raft_step(r, &m), ST_ESTALE);
    raft_stats_get(r, &st1);
    ASSERT_EQ(st1.msgs_stale, st0.msgs_stale + 2);
    /* The stale "leader" is told our term. */
    struct raft_ready rd;
    raft_ready_get(r, &rd);
    int told = 0;
    for (size_t i = 0; i < rd.n_msgs; i++)
        told +=
            rd.msgs[i].type == RAFT_MSG_APPEND_RESP && rd.msgs[i].to == 3 && rd.msgs[i].term == t;
    ASSERT_EQ(told, 1);
    raft_ready_ack(r, &rd);
    fx_destroy(f);
}

TEST(append_below_commit_never_overwrites)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 1);
    struct raft *r = fx_r(f, 2);
    raft_index commit = raft_commit_index(r);
    raft_term t = raft_term_get(r);
    ASSERT_EQ(raft_entry_get(r, commit)->term, t);
    /* A "leader" of a later term overwriting a committed entry. */
    struct raft_entry e = {.term = t + 1, .index = commit, .type = RAFT_ENTRY_NOOP};
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = 3,
                         .to = 2,
                         .term = t + 1,
                         .index = commit - 1,
                         .log_term = raft_entry_get(r, commit - 1)->term,
                         .n_entries = 1,
                         .entries = &e};
    /* Everything up to commit is settled: the follower just reports its
     * commit index and keeps its log. */
    ASSERT_EQ(raft_step(r, &m), 0);
    ASSERT_EQ(raft_commit_index(r), commit);
    ASSERT_EQ(raft_entry_get(r, commit)->term, t);
    raft_check_invariants(r);
    fx_destroy(f);
}

TEST(ready_hard_state_commit_never_ahead_of_persisted)
{
    /* A follower told commit = N in the same append that carries entries up
     * to N persists commit only with (or after) those entries. */
    struct fx *f = fx_create(3);
    struct raft *r = fx_r(f, 2);
    struct raft_entry e[2] = {{.term = 2, .index = 4, .type = RAFT_ENTRY_NOOP},
                              {.term = 2, .index = 5, .type = RAFT_ENTRY_NOOP}};
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = 1,
                         .to = 2,
                         .term = 2,
                         .index = 3,
                         .log_term = 1,
                         .commit = 5,
                         .n_entries = 2,
                         .entries = e};
    ASSERT_EQ(raft_step(r, &m), 0);
    struct raft_ready rd;
    raft_ready_get(r, &rd);
    ASSERT_TRUE(rd.hard_state_changed);
    ASSERT_EQ(rd.hard_state.commit, 5);
    ASSERT_EQ(rd.n_entries, 2);
    ASSERT_EQ(rd.entries[1].index, 5);
    /* committed but not durable: not applied yet */
    ASSERT_EQ(rd.n_committed, 0);
    ASSERT_EQ(rd.n_msgs_after_persist, 1);
    raft_ready_ack(r, &rd);
    raft_persisted(r, 5, 2);
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_committed, 2);
    raft_ready_ack(r, &rd);
    raft_applied(r, 5);
    ASSERT_EQ(raft_applied_index(r), 5);
    raft_check_invariants(r);
    fx_destroy(f);
}

static void tweak_committed_10_bytes(struct raft_config *c)
{
    c->committed_bytes_max = 10;
}

TEST(ready_hands_committed_entries_within_committed_bytes_max)
{
    /* A follower catching up on five entries of 4 bytes and one of 16,
     * with at most 10 bytes of committed entries per ready: 2, 2, then 1
     * (the next would pass the bound), then the large entry alone. Each
     * ready's entries follow the last one's. */
    struct fx *f = fx_create_ex(3, 3, 0, tweak_committed_10_bytes);
    struct raft *r = fx_r(f, 2);
    struct raft_buf *b = raft_buf_create(40);
    memset(b->data, 'x', 40);
    struct raft_entry e[6];
    for (int i = 0; i < 6; i++)
        e[i] = (struct raft_entry){.term = 2,
                                   .index = (raft_index)(4 + i),
                                   .type = RAFT_ENTRY_NORMAL,
                                   .buf = b,
                                   .data = b->data + 4 * i,
                                   .len = i < 5 ? 4 : 16};
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = 1,
                         .to = 2,
                         .term = 2,
                         .index = 3,
                         .log_term = 1,
                         .commit = 9,
                         .n_entries = 6,
                         .entries = e};
    ASSERT_EQ(raft_step(r, &m), 0);
    raft_buf_unref(b);
    struct raft_ready rd;
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_entries, 6);
    ASSERT_EQ(rd.n_committed, 0);
    raft_ready_ack(r, &rd);
    raft_persisted(r, 9, 2);
    static const size_t want[] = {2, 2, 1, 1};
    raft_index next = 4;
    for (size_t k = 0; k < 4; k++) {
        ASSERT_TRUE(raft_has_ready(r));
        raft_ready_get(r, &rd);
        ASSERT_EQ(rd.n_committed, want[k]);
        ASSERT_EQ(rd.committed[0].index, next);
        next += rd.n_committed;
        raft_ready_ack(r, &rd);
        raft_applied(r, next - 1);
        raft_check_invariants(r);
    }
    ASSERT_EQ(raft_applied_index(r), 9);
    ASSERT_FALSE(raft_has_ready(r));
    fx_destroy(f);

    /* A cluster under the bound applies everything, alike. */
    f = fx_create_ex(3, 3, 0, tweak_committed_10_bytes);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 20; i++) {
        struct raft_buf *p = raft_buf_create(7);
        memcpy(p->data, "payload", 7);
        ASSERT_EQ(raft_propose(fx_r(f, 1), p, p->data, 7, NULL, NULL), 0);
        raft_buf_unref(p);
    }
    fx_stabilize(f);
    for (int i = 2; i <= 3; i++) {
        ASSERT_EQ(f->nodes[i].applied, f->nodes[1].applied);
        ASSERT_EQ(f->nodes[i].sm, f->nodes[1].sm);
    }
    ASSERT_TRUE(f->nodes[1].n_applied_normal >= 20);
    fx_destroy(f);
}

TEST(ready_payload_outlives_core_until_ack)
{
    /* Entries handed out stay valid until ack even if the log moves on. */
    struct fx *f = fx_create(1);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r = fx_r(f, 1);
    struct raft_buf *b = raft_buf_create(5);
    memcpy(b->data, "hello", 5);
    ASSERT_EQ(raft_propose(r, b, b->data, 5, NULL, NULL), 0);
    raft_buf_unref(b); /* the core holds its own reference */
    struct raft_ready rd;
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_entries, 1);
    ASSERT_MEMEQ(rd.entries[0].data, "hello", 5);
    raft_persisted(r, rd.persist_index, rd.persist_term);
    raft_applied(r, 0);
    raft_ready_ack(r, &rd);
    raft_ready_get(r, &rd);
    ASSERT_EQ(rd.n_committed, 1);
    ASSERT_MEMEQ(rd.committed[0].data, "hello", 5);
    raft_ready_ack(r, &rd);
    raft_applied(r, raft_commit_index(r));
    raft_snapshot_taken(r, raft_commit_index(r));
    fx_destroy(f);
}

TEST(no_ready_when_idle)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_stabilize(f);
    for (int i = 1; i <= 3; i++)
        ASSERT_FALSE(raft_has_ready(fx_r(f, (raft_id)i)));
    fx_destroy(f);
}

TEST(names)
{
    ASSERT_STREQ(raft_role_name(RAFT_LEADER), "leader");
    ASSERT_STREQ(raft_role_name(RAFT_PRE_CANDIDATE), "pre-candidate");
    ASSERT_STREQ(raft_msg_type_name(RAFT_MSG_APPEND), "append");
    ASSERT_STREQ(raft_msg_type_name(RAFT_MSG_PROPOSE), "propose");
    ASSERT_STREQ(raft_msg_type_name(0), "unknown");
    ASSERT_STREQ(raft_msg_type_name(RAFT_MSG_TYPE_MAX), "unknown");
}

TEST_MAIN()
