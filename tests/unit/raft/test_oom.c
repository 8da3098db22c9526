/* Out of memory: a failing allocator (raft_config.realloc_fn) reaches the
 * core's ENOMEM paths. Whatever fails, the core stays consistent (the
 * fixture checks every invariant after every step), leaks nothing (ASan),
 * and the cluster recovers once memory is back. */
#include "fixture.h"
#include "util/rng.h"

struct failing_heap {
    struct st_rng rng;
    uint32_t fail_per_mille; /* random failures */
    long countdown;          /* > 0: fail the countdown-th allocation */
    uint64_t allocs, failures;
};

static struct failing_heap heaps[FX_NODES_MAX + 1];

static void *failing_realloc(void *ctx, void *p, size_t n)
{
    struct failing_heap *h = ctx;
    if (n == 0) {
        free(p);
        return NULL;
    }
    h->allocs++;
    bool fail = false;
    if (h->countdown > 0 && --h->countdown == 0) fail = true;
    if (h->fail_per_mille && st_rng_below(&h->rng, 1000) < h->fail_per_mille) fail = true;
    if (fail) {
        h->failures++;
        return NULL; /* like realloc: p stays valid */
    }
    return realloc(p, n);
}

static void use_failing_heap(struct raft_config *c)
{
    struct failing_heap *h = &heaps[c->id];
    memset(h, 0, sizeof(*h));
    st_rng_init(&h->rng, 77 + c->id);
    c->realloc_fn = failing_realloc;
    c->alloc_ctx = h;
}

TEST(create_fails_cleanly_at_every_allocation)
{
    struct raft_conf conf;
    fx_conf_voters(&conf, 3, 0);
    int failed = 0, created = 0;
    for (long n = 1; n <= 40; n++) {
        struct raft_config cfg;
        fx_config(&cfg, 1);
        use_failing_heap(&cfg);
        heaps[1].countdown = n;
        struct raft_bootstrap_state st;
        memset(&st, 0, sizeof(st));
        st.initial_conf = &conf;
        struct raft *r = NULL;
        int rc = raft_create(&cfg, &st, &r);
        if (rc == ST_ENOMEM) {
            failed++;
            ASSERT_TRUE(r == NULL);
            continue;
        }
        ASSERT_EQ(rc, 0);
        created++;
        raft_check_invariants(r);
        raft_destroy(r);
    }
    ASSERT_GE(failed, 5);
    ASSERT_GE(created, 1);
}

static void run_scenario(struct fx *f, struct st_rng *g, int rounds)
{
    for (int i = 0; i < rounds; i++) {
        raft_id l = fx_leader(f);
        uint64_t dice = st_rng_below(g, 100);
        if (l && dice < 40) {
            fx_propose_str(f, l, "oom", NULL);
        } else if (l && dice < 50) {
            raft_read_index(fx_r(f, l), (uint64_t)i, RAFT_READ_SAFE);
        } else if (dice < 55) {
            raft_id id = 1 + st_rng_below(g, (uint64_t)f->n);
            if (f->nodes[id].up && f->nodes[id].applied) fx_snapshot(f, id);
        } else if (dice < 58) {
            memset(f->cut, 0, sizeof(f->cut));
            fx_isolate(f, 1 + st_rng_below(g, (uint64_t)f->n), true);
        } else if (dice < 62) {
            memset(f->cut, 0, sizeof(f->cut));
        } else if (l && dice < 64) {
            raft_transfer_leadership(fx_r(f, l), 1 + st_rng_below(g, (uint64_t)f->n));
        } else if (l && dice < 66) {
            raft_id id = 1 + st_rng_below(g, (uint64_t)f->n);
            const struct raft_member *m = raft_conf_find(raft_conf_get(fx_r(f, l)), id);
            fx_conf_change(f, l, m ? RAFT_CONF_REMOVE : RAFT_CONF_ADD_VOTER, id, NULL);
        }
        fx_run(f, 1);
    }
}

TEST(cluster_survives_random_allocation_failures)
{
    /* RAFT_OOM_SEEDS=n explores more seeds. */
    const char *env = getenv("RAFT_OOM_SEEDS");
    uint64_t seeds = env ? strtoull(env, NULL, 10) : 4;
    for (uint64_t seed = 1; seed <= seeds; seed++) {
        struct fx *f = fx_create_ex(4, 4, 0, use_failing_heap);
        f->report_snapshots = true; /* as the transport does */
        ASSERT_EQ(fx_elect(f, 1), 1);
        for (int i = 1; i <= 4; i++)
            heaps[i].fail_per_mille = 500; /* half of all growth fails */
        struct st_rng g;
        st_rng_init(&g, seed);
        run_scenario(f, &g, 600);
        uint64_t failures = 0;
        for (int i = 1; i <= 4; i++) {
            failures += heaps[i].failures;
            heaps[i].fail_per_mille = 0;
        }
        ASSERT_GE(failures, 5);
        /* Memory is back: the cluster converges. */
        memset(f->cut, 0, sizeof(f->cut));
        fx_run(f, 80);
        raft_id l = fx_leader(f);
        if (!l) {
            for (int i = 1; i <= 4; i++) {
                struct raft *r = fx_r(f, (raft_id)i);
                const struct raft_conf *cf = raft_conf_get(r);
                fprintf(stderr,
                        "DBG seed %d node %d %s t%llu leader %llu commit %llu last %llu lastterm "
                        "%llu voters %zu n %u:",
                        (int)seed, i, raft_role_name(raft_role_get(r)),
                        (unsigned long long)raft_term_get(r), (unsigned long long)raft_leader(r),
                        (unsigned long long)raft_commit_index(r),
                        (unsigned long long)raft_last_index(r),
                        (unsigned long long)(raft_entry_get(r, raft_last_index(r))
                                                 ? raft_entry_get(r, raft_last_index(r))->term
                                                 : 0),
                        raft_conf_voters(cf), cf->n);
                for (uint32_t k = 0; k < cf->n; k++)
                    fprintf(stderr, " %llu/%d", (unsigned long long)cf->members[k].id,
                            cf->members[k].role);
                fprintf(stderr, "\n");
            }
        }
        ASSERT_NE(l, RAFT_NONE);
        ASSERT_EQ(fx_propose_str(f, l, "after", NULL), 0);
        fx_run(f, 5);
        const struct raft_conf *conf = raft_conf_get(fx_r(f, l));
        for (int i = 1; i <= 4; i++) {
            if (!raft_conf_find(conf, (raft_id)i)) continue;
            ASSERT_EQ(f->nodes[i].sm, f->nodes[l].sm);
            ASSERT_EQ(f->nodes[i].applied, f->nodes[l].applied);
        }
        fx_destroy(f);
    }
}

TEST(propose_reports_enomem_and_keeps_nothing)
{
    struct fx *f = fx_create_ex(1, 1, 0, use_failing_heap);
    ASSERT_EQ(fx_elect(f, 1), 1);
    struct raft *r = fx_r(f, 1);
    /* Fill the log's ring to capacity so the next append must grow it. */
    int rc = 0;
    raft_index last = raft_last_index(r);
    for (int i = 0; i < 1000 && rc == 0; i++) {
        heaps[1].countdown = 1; /* the next allocation fails */
        rc = fx_propose_str(f, 1, "grow", NULL);
        if (rc == 0) {
            ASSERT_EQ(raft_last_index(r), last + 1);
            last++;
        }
        heaps[1].countdown = 0;
    }
    ASSERT_EQ(rc, ST_ENOMEM);
    ASSERT_EQ(raft_last_index(r), last); /* nothing half-appended */
    raft_check_invariants(r);
    ASSERT_EQ(fx_propose_str(f, 1, "then", NULL), 0);
    fx_stabilize(f);
    ASSERT_EQ(raft_commit_index(r), raft_last_index(r));
    fx_destroy(f);
}

TEST_MAIN()
