/* Randomized crash/partition/loss runs of a small cluster with slow disks:
 * every node's writes stay in flight until a random flush and are lost if it
 * crashes first. After every round the safety properties are checked:
 *   - Election Safety: at most one leader per term;
 *   - Leader Completeness / State Machine Safety: an entry at a committed
 *     index is the same on every node that holds it, and replicas that
 *     applied the same index hold the same state;
 * and at the end, with the faults healed, the cluster converges. */
#include "fixture.h"
#include "util/rng.h"

#define CHAOS_INDEX_MAX 40000
#define CHAOS_TERM_MAX 8192

struct chaos {
    raft_id leader_of_term[CHAOS_TERM_MAX];
    raft_term committed_term[CHAOS_INDEX_MAX];
    uint64_t sm_at[CHAOS_INDEX_MAX];
    bool sm_known[CHAOS_INDEX_MAX];
    raft_id sm_by[CHAOS_INDEX_MAX];
};

static void drop_one(struct fx *f)
{
    if (f->qn == 0) return;
    fx_snapshot_outcome(f, &f->q[f->qh].m, false);
    fx_msg_free(&f->q[f->qh]);
    f->qh = (f->qh + 1) % FX_QUEUE_MAX;
    f->qn--;
}

static int check_safety(struct fx *f, struct chaos *c)
{
    for (int i = 1; i <= f->n; i++) {
        struct fx_node *n = &f->nodes[i];
        if (!n->up) continue;
        struct raft *r = n->r;
        if (raft_role_get(r) == RAFT_LEADER) {
            raft_term t = raft_term_get(r);
            if (t >= CHAOS_TERM_MAX) return 0;
            if (c->leader_of_term[t] && c->leader_of_term[t] != (raft_id)i) return -1;
            c->leader_of_term[t] = (raft_id)i;
        }
        raft_index commit = raft_commit_index(r);
        raft_index from = raft_first_index(r);
        if (commit > 64 && commit - 64 > from) from = commit - 64;
        for (raft_index k = from; k <= commit && k < CHAOS_INDEX_MAX; k++) {
            const struct raft_entry *e = raft_entry_get(r, k);
            if (!e) continue;
            if (c->committed_term[k] && c->committed_term[k] != e->term) return -2;
            c->committed_term[k] = e->term;
        }
        if (n->applied < CHAOS_INDEX_MAX) {
            if (c->sm_known[n->applied] && c->sm_at[n->applied] != n->sm) {
                struct fx_node *o = &f->nodes[c->sm_by[n->applied]];
                fprintf(stderr, "DBG node %d vs %d at applied %llu\n", i, (int)c->sm_by[n->applied],
                        (unsigned long long)n->applied);
                for (raft_index k = 1; k <= n->applied; k++)
                    if (n->trace_terms[k] != o->trace_terms[k]) {
                        fprintf(stderr, "DBG first diff at %llu: %llu vs %llu\n",
                                (unsigned long long)k, (unsigned long long)n->trace_terms[k],
                                (unsigned long long)o->trace_terms[k]);
                        break;
                    }
                return -3;
            }
            c->sm_known[n->applied] = true;
            c->sm_by[n->applied] = (raft_id)i;
            c->sm_at[n->applied] = n->sm;
        }
    }
    return 0;
}

static int up_count(struct fx *f)
{
    int k = 0;
    for (int i = 1; i <= f->n; i++)
        k += f->nodes[i].up;
    return k;
}

static int random_conf_change(struct fx *f, struct st_rng *g, int nodes)
{
    raft_id l = fx_leader(f);
    if (!l) return -1;
    const struct raft_conf *conf = raft_conf_get(fx_r(f, l));
    raft_id id = 1 + st_rng_below(g, (uint64_t)nodes);
    const struct raft_member *m = raft_conf_find(conf, id);
    uint8_t op;
    if (!m)
        op = st_rng_chance(g, 1, 2) ? RAFT_CONF_ADD_LEARNER : RAFT_CONF_ADD_VOTER;
    else if (m->role == RAFT_LEARNER)
        op = st_rng_chance(g, 2, 3) ? RAFT_CONF_ADD_VOTER : RAFT_CONF_REMOVE;
    else if (raft_conf_voters(conf) > 3)
        op = RAFT_CONF_REMOVE;
    else
        return -1;
    return fx_conf_change(f, l, op, id, NULL); /* refusals are part of the game */
}

static void chaos_run_ex(uint64_t seed, int nodes, int rounds, bool membership);

static void chaos_run(uint64_t seed, int nodes, int rounds)
{
    chaos_run_ex(seed, nodes, rounds, false);
}

static void chaos_run_ex(uint64_t seed, int nodes, int rounds, bool membership)
{
    struct st_rng g;
    st_rng_init(&g, seed);
    struct chaos *c = calloc(1, sizeof(*c));
    ASSERT_TRUE(c != NULL);
    struct fx *f = fx_create(nodes);
    f->report_snapshots = true;
    for (int i = 1; i <= nodes; i++) {
        f->nodes[i].trace_terms = calloc(CHAOS_INDEX_MAX, sizeof(raft_term));
        f->nodes[i].trace_cap = CHAOS_INDEX_MAX;
    }
    for (int i = 1; i <= nodes; i++)
        f->nodes[i].manual_disk = true;
    int proposals = 0, conf_changes = 0;
    for (int round = 0; round < rounds; round++) {
        raft_id id = 1 + st_rng_below(&g, (uint64_t)nodes);
        struct fx_node *n = &f->nodes[id];
        uint64_t dice = st_rng_below(&g, 1000);
        if (dice < 400) {
            fx_tick(f, id, 1);
        } else if (dice < 700) {
            raft_id l = fx_leader(f);
            if (l && fx_propose_str(f, l, "chaos", NULL) == 0) proposals++;
        } else if (dice < 710 && n->up && up_count(f) > nodes / 2 + 1) {
            fx_crash(f, id);
        } else if (dice < 760 && !n->up) {
            fx_restart(f, id);
            n->manual_disk = true;
        } else if (dice < 775) {
            memset(f->cut, 0, sizeof(f->cut));
            if (st_rng_chance(&g, 1, 2)) fx_isolate(f, id, true);
        } else if (dice < 790 && n->up && n->applied > 0) {
            fx_snapshot(f, id);
        } else if (dice < 800 && n->up) {
            raft_id to = 1 + st_rng_below(&g, (uint64_t)nodes);
            if (to != id) raft_transfer_leadership(n->r, to);
        } else if (dice < 815 && membership) {
            if (random_conf_change(f, &g, nodes) == 0) conf_changes++;
        }
        /* readies, some deliveries (a few lost), some disk completions */
        for (int i = 1; i <= nodes; i++)
            while (fx_ready(f, (raft_id)i))
                ;
        int deliveries = (int)st_rng_below(&g, 12);
        for (int k = 0; k < deliveries; k++) {
            if (st_rng_chance(&g, 1, 20))
                drop_one(f);
            else
                fx_deliver_one(f);
        }
        for (int i = 1; i <= nodes; i++) {
            struct fx_node *x = &f->nodes[i];
            if (x->up && (st_rng_chance(&g, 1, 3) || x->n_pend > 40 || x->n_held > 800))
                fx_disk_flush(f, (raft_id)i);
        }
        int rc = check_safety(f, c);
        if (rc != 0)
            fprintf(stderr, "seed %llu round %d: safety %d\n", (unsigned long long)seed, round, rc);
        ASSERT_EQ(rc, 0);
    }
    /* Heal everything; the cluster must converge. */
    memset(f->cut, 0, sizeof(f->cut));
    for (int i = 1; i <= nodes; i++) {
        if (!f->nodes[i].up) fx_restart(f, (raft_id)i);
        f->nodes[i].manual_disk = false;
    }
    for (int i = 1; i <= nodes; i++)
        fx_disk_flush(f, (raft_id)i);
    fx_run(f, 80);
    raft_id l = fx_leader(f);
    ASSERT_NE(l, RAFT_NONE);
    ASSERT_EQ(fx_propose_str(f, l, "final", NULL), 0);
    fx_run(f, 5);
    /* Every member of the final configuration converges; removed nodes may
     * stay behind. */
    const struct raft_conf *conf = raft_conf_get(fx_r(f, l));
    for (int i = 1; i <= nodes; i++) {
        if (!raft_conf_find(conf, (raft_id)i)) continue;
        ASSERT_EQ(f->nodes[i].applied, f->nodes[l].applied);
        ASSERT_EQ(f->nodes[i].sm, f->nodes[l].sm);
    }
    ASSERT_EQ(check_safety(f, c), 0);
    /* Progress, not a bound on availability: with ~40 crashes, partitions
     * and conf changes per run some seeds have long leaderless stretches. */
    ASSERT_GE(proposals, rounds / 40);
    if (membership) ASSERT_GE(conf_changes, 1);
    fx_destroy(f);
    free(c);
}

/* RAFT_CHAOS_SEEDS=n runs n seeds per test instead of the few below. */
static uint64_t seeds_or(uint64_t dflt)
{
    const char *env = getenv("RAFT_CHAOS_SEEDS");
    return env ? strtoull(env, NULL, 10) : dflt;
}

TEST(chaos_three_nodes_slow_disks_crashes_partitions)
{
    for (uint64_t seed = 1; seed <= seeds_or(6); seed++)
        chaos_run(seed, 3, 4000);
}

TEST(chaos_five_nodes_slow_disks_crashes_partitions)
{
    for (uint64_t seed = 100; seed < 100 + seeds_or(4); seed++)
        chaos_run(seed, 5, 4000);
}

TEST(chaos_five_nodes_with_membership_changes)
{
    for (uint64_t seed = 200; seed < 200 + seeds_or(4); seed++)
        chaos_run_ex(seed, 5, 4000, true);
}

TEST_MAIN()
