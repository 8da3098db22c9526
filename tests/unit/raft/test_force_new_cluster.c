/* Recovery from a lost quorum (raft_bootstrap_state.force_self): the node
 * keeps its log, appends conf entries that leave it alone, commits them
 * durably and leads; a later ordinary restart keeps that configuration. */
#include "fixture.h"

static int start_forced(struct fx *f, raft_id id, const struct raft_member *self)
{
    return fx_start_node_ex(f, id, NULL, self);
}

static void crash_all(struct fx *f)
{
    fx_drop_queue(f);
    for (int i = 1; i <= f->n; i++)
        if (f->nodes[i].up) fx_crash(f, (raft_id)i);
}

static bool alone(struct raft *r, raft_id id)
{
    const struct raft_conf *c = raft_conf_get(r);
    return c->n == 1 && c->members[0].id == id && c->members[0].role == RAFT_VOTER;
}

/* The conf change of the entry at index on node id's disk. */
static struct raft_conf_change disk_cc(struct fx *f, raft_id id, raft_index index)
{
    struct fx_node *n = &f->nodes[id];
    struct raft_conf_change cc;
    memset(&cc, 0, sizeof(cc));
    for (size_t i = 0; i < n->n_disk; i++) {
        const struct raft_entry *e = &n->disk[i];
        if (e->index != index) continue;
        if (e->type != RAFT_ENTRY_CONF) abort();
        if (raft_conf_change_decode(e->data, e->len, &cc) != 0) abort();
    }
    return cc;
}

static raft_index disk_last(struct fx *f, raft_id id)
{
    struct fx_node *n = &f->nodes[id];
    return n->n_disk ? n->disk[n->n_disk - 1].index : (n->has_snap ? n->snap.index : 0);
}

/* Runs ticks on the one live node until it leads (bounded). */
static void run_until_leader(struct fx *f, raft_id id)
{
    for (int k = 0; k < 100 && raft_role_get(fx_r(f, id)) != RAFT_LEADER; k++)
        fx_run(f, 1);
    ASSERT_EQ(raft_role_get(fx_r(f, id)), RAFT_LEADER);
}

TEST(force_new_cluster_keeps_every_entry_and_leads_alone)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "w", NULL), 0);
    fx_stabilize(f);
    /* One more entry reaches node 2 but neither its ack nor a commit comes
     * back: it is beyond node 2's commit index, yet it may have been
     * committed (and acknowledged) by the lost leader. */
    f->cut[1][3] = f->cut[2][1] = true;
    raft_index tail;
    ASSERT_EQ(fx_propose_str(f, 1, "tail", &tail), 0);
    fx_stabilize(f);
    ASSERT_EQ(disk_last(f, 2), tail);
    ASSERT_TRUE(f->nodes[2].hs.commit < tail);
    raft_term term = f->nodes[2].hs.term;
    crash_all(f);

    /* Nodes 1 and 3 are gone for good; node 2 is forced. */
    struct raft_member self = {.id = 2, .role = RAFT_VOTER};
    ASSERT_EQ(start_forced(f, 2, &self), 0);
    struct raft *r = fx_r(f, 2);
    ASSERT_TRUE(alone(r, 2));
    ASSERT_EQ(raft_last_index(r), tail + 2); /* REMOVE 1, REMOVE 3 */
    ASSERT_EQ(raft_commit_index(r), tail + 2);
    for (raft_index i = tail + 1; i <= tail + 2; i++) {
        ASSERT_EQ(raft_entry_get(r, i)->type, RAFT_ENTRY_CONF);
        ASSERT_EQ(raft_entry_get(r, i)->term, term);
    }
    /* Nothing is applied before it is durable; the first ready writes the
     * entries and the commit index, then they apply. */
    ASSERT_EQ(f->nodes[2].applied, 0);
    fx_stabilize(f);
    ASSERT_EQ(disk_last(f, 2), tail + 2);
    ASSERT_EQ(f->nodes[2].hs.commit, tail + 2);
    ASSERT_EQ(f->nodes[2].applied, tail + 2); /* the tail entry too */
    struct raft_conf_change cc = disk_cc(f, 2, tail + 1);
    ASSERT_EQ(cc.op, RAFT_CONF_REMOVE);
    ASSERT_EQ(cc.id, 1);
    cc = disk_cc(f, 2, tail + 2);
    ASSERT_EQ(cc.op, RAFT_CONF_REMOVE);
    ASSERT_EQ(cc.id, 3);

    run_until_leader(f, 2);
    raft_index idx;
    ASSERT_EQ(fx_propose_str(f, 2, "after", &idx), 0);
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[2].applied, idx);

    /* An ordinary restart: the forced configuration is in the log. */
    fx_crash(f, 2);
    fx_restart(f, 2);
    ASSERT_TRUE(alone(fx_r(f, 2), 2));
    ASSERT_EQ(raft_commit_index(fx_r(f, 2)), idx);
    run_until_leader(f, 2);
    /* New members join as usual. */
    ASSERT_EQ(fx_conf_change(f, 2, RAFT_CONF_ADD_LEARNER, 1, NULL), 0);
    fx_destroy(f);
}

TEST(force_new_cluster_promotes_a_learner_restarting_from_a_snapshot)
{
    struct fx *f = fx_create_ex(4, 3, 1, NULL);
    ASSERT_EQ(fx_elect(f, 1), 1);
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(fx_propose_str(f, 1, "s", NULL), 0);
    fx_stabilize(f);
    fx_run(f, 2);
    fx_snapshot(f, 4);
    ASSERT_TRUE(f->nodes[4].has_snap);
    raft_index last = disk_last(f, 4);
    uint64_t sm = f->nodes[4].sm;
    crash_all(f);

    struct raft_member self = {.id = 4, .role = RAFT_VOTER};
    ASSERT_EQ(start_forced(f, 4, &self), 0);
    ASSERT_TRUE(alone(fx_r(f, 4), 4));
    fx_stabilize(f);
    /* ADD_VOTER 4 first (never a configuration without a voter), then the
     * three voters go. */
    struct raft_conf_change cc = disk_cc(f, 4, last + 1);
    ASSERT_EQ(cc.op, RAFT_CONF_ADD_VOTER);
    ASSERT_EQ(cc.id, 4);
    for (raft_id id = 1; id <= 3; id++) {
        cc = disk_cc(f, 4, last + 1 + id);
        ASSERT_EQ(cc.op, RAFT_CONF_REMOVE);
        ASSERT_EQ(cc.id, id);
    }
    ASSERT_EQ(f->nodes[4].hs.commit, last + 4);
    ASSERT_EQ(f->nodes[4].applied, last + 4);
    ASSERT_NE(f->nodes[4].sm, sm); /* the conf entries applied on top */
    run_until_leader(f, 4);
    fx_destroy(f);
}

TEST(force_new_cluster_readds_a_removed_node_with_its_context)
{
    struct fx *f = fx_create(3);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_run(f, 2);
    ASSERT_EQ(fx_conf_change(f, 1, RAFT_CONF_REMOVE, 3, NULL), 0);
    fx_run(f, 3);
    ASSERT_FALSE(raft_conf_find(raft_conf_get(fx_r(f, 3)), 3));
    raft_index last = disk_last(f, 3);
    crash_all(f);

    struct raft_member self = {.id = 3, .role = RAFT_VOTER, .context_len = 3};
    memcpy(self.context, "ctx", 3);
    ASSERT_EQ(start_forced(f, 3, &self), 0);
    const struct raft_member *m = raft_conf_find(raft_conf_get(fx_r(f, 3)), 3);
    ASSERT_TRUE(m != NULL);
    ASSERT_EQ(m->context_len, 3);
    ASSERT_MEMEQ(m->context, "ctx", 3);
    ASSERT_TRUE(alone(fx_r(f, 3), 3));
    fx_stabilize(f);
    ASSERT_EQ(f->nodes[3].hs.commit, last + 3); /* ADD_VOTER 3, REMOVE 1, REMOVE 2 */
    run_until_leader(f, 3);
    fx_destroy(f);
}

TEST(force_new_cluster_on_a_lone_voter_appends_nothing)
{
    struct fx *f = fx_create(1);
    ASSERT_EQ(fx_elect(f, 1), 1);
    ASSERT_EQ(fx_propose_str(f, 1, "x", NULL), 0);
    fx_stabilize(f);
    raft_index last = disk_last(f, 1);
    crash_all(f);
    struct raft_member self = {.id = 1, .role = RAFT_VOTER};
    ASSERT_EQ(start_forced(f, 1, &self), 0);
    ASSERT_EQ(raft_last_index(fx_r(f, 1)), last);
    fx_destroy(f);
}

TEST(force_new_cluster_refused_without_durable_state_or_for_another_id)
{
    /* Node 3 starts empty (a joiner): nothing to keep. */
    struct fx *f = fx_create_ex(3, 2, 0, NULL);
    ASSERT_EQ(fx_elect(f, 1), 1);
    fx_stabilize(f);
    crash_all(f);
    struct raft_member self = {.id = 3, .role = RAFT_VOTER};
    ASSERT_EQ(start_forced(f, 3, &self), ST_EINVAL);
    self.id = 1; /* node 2 given node 1's identity */
    ASSERT_EQ(start_forced(f, 2, &self), ST_EINVAL);
    fx_destroy(f);
}

TEST_MAIN()
