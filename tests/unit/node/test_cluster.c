/* Several real nodes in ONE process (one loop, loopback TCP, temp dirs):
 * election, replication, follower write forwarding, follower linearizable
 * reads, joining (directly and through a follower), learner promotion,
 * snapshot streaming to a new member, member removal, and clean failure of
 * requests that cannot commit. */
#include "harness.h"

#include "node/node_int.h"           /* write_batches, hs_written */
#include "transport/transport_int.h" /* a peer's send queue */
#include "stcache/storage.h"

static struct hnode nodes[H_NODES_MAX];
static int n_nodes;

static void cluster_init(int n)
{
    h_init();
    memset(nodes, 0, sizeof nodes);
    n_nodes = n;
    for (int i = 0; i < n; i++) {
        h_mkdtemp(nodes[i].dir, sizeof nodes[i].dir);
        h_config(&nodes[i], (raft_id)i + 1);
    }
}

static void cluster_start_peers(int n)
{
    char list[1024] = "";
    for (int i = 0; i < n; i++) {
        char item[200];
        snprintf(item, sizeof item, "%s%d=%s/%s", i ? "," : "", i + 1, nodes[i].cfg.raft_listen,
                 nodes[i].cfg.http_listen);
        strncat(list, item, sizeof list - strlen(list) - 1);
    }
    for (int i = 0; i < n; i++) {
        char err[200];
        ASSERT_EQ(node_config_set(&nodes[i].cfg, "peers", list, err, sizeof err), 0);
        ASSERT_EQ(h_start(&nodes[i]), 0);
    }
}

static void cluster_fini(void)
{
    for (int i = 0; i < n_nodes; i++)
        h_stop(&nodes[i]);
    for (int i = 0; i < n_nodes; i++)
        h_rmrf(nodes[i].dir);
    h_fini();
}

static raft_id converge_not(int n, raft_id not_leader)
{
    struct hcond c = {nodes, n, 0, not_leader};
    ASSERT_TRUE(h_run_until(h_cond_converged, &c));
    return c.leader;
}

static raft_id converge(int n)
{
    struct hcond c = {nodes, n, 0, 0};
    ASSERT_TRUE(h_run_until(h_cond_converged, &c));
    return c.leader;
}

static int follower_index(raft_id leader, int skip)
{
    for (int i = 0; i < n_nodes; i++) {
        if (i == skip) continue; /* skip = -1: none */
        if (nodes[i].running && nodes[i].cfg.id != leader) return i;
    }
    return -1;
}

struct member_cond {
    struct hnode *h;
    raft_id id;
    bool voter;
    int members;
};

static bool cond_member(void *arg)
{
    struct member_cond *c = arg;
    struct node_info info;
    node_info_get(c->h->node, &info);
    if (c->members && (int)info.n_members != c->members) return false;
    for (uint32_t i = 0; i < info.n_members; i++)
        if (info.members[i].id == c->id) return info.members[i].voter == c->voter;
    return false;
}

struct last_cond {
    struct hnode *h;
    raft_index last;
    struct hresp *resp;
};

static bool cond_log_grew(void *arg)
{
    struct last_cond *c = arg;
    struct node_info info;
    node_info_get(c->h->node, &info);
    return info.last_index > c->last || c->resp->done;
}

TEST(three_nodes_elect_replicate_forward_and_serve_follower_reads)
{
    cluster_init(3);
    cluster_start_peers(3);
    raft_id leader = converge(3);
    int f1 = follower_index(leader, -1);
    int f2 = follower_index(leader, f1);
    ASSERT_TRUE(f1 >= 0 && f2 >= 0);
    struct hresp r;
    /* A write sent to a follower is forwarded inside the cluster and
     * answered by that follower once it applies the entry. */
    h_http(&nodes[f1], "PUT", "/kv/city", NULL, "Lisbon", &r);
    ASSERT_EQ(r.status, 201);
    /* The other follower serves a linearizable read (ReadIndex via the
     * leader): it must see the write that completed before. */
    h_http(&nodes[f2], "GET", "/kv/city", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "Lisbon");
    h_http(&nodes[h_index_of(nodes, 3, leader)], "GET", "/kv/city", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "Lisbon");
    h_http(&nodes[f2], "GET", "/kv/city?consistency=lease", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "Lisbon");
    /* The write was answered by f1 after f1 applied it: f1's local state
     * has it even for a stale read. */
    h_http(&nodes[f1], "GET", "/kv/city?consistency=stale", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "Lisbon");
    /* Many writes through both followers, then every node agrees. */
    char path[64], val[64];
    for (int i = 0; i < 30; i++) {
        snprintf(path, sizeof path, "/kv/k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        h_http(&nodes[i % 2 ? f1 : f2], "PUT", path, NULL, val, &r);
        ASSERT_EQ(r.status, 201);
    }
    for (int n = 0; n < 3; n++) {
        h_http(&nodes[n], "GET", "/kv/k29", NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, "v29");
    }
    h_http(&nodes[f2], "GET", "/cluster", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    char lead[32];
    snprintf(lead, sizeof lead, "\"leader\":%llu", (unsigned long long)leader);
    ASSERT_TRUE(strstr(r.body, lead) != NULL);
    ASSERT_TRUE(strstr(r.body, "\"role\":\"follower\"") != NULL);
    cluster_fini();
}

static bool cond_commit_in_wal(void *arg)
{
    raft_index want = *(raft_index *)arg;
    for (int i = 0; i < n_nodes; i++)
        if (nodes[i].node->hs_written.commit < want) return false;
    return true;
}

/* A change of the commit index alone is not synced (etcd's MustSync): a
 * follower used to write (and fdatasync) twice per replicated write, once
 * for the entry and once for the commit index the next heartbeat carried.
 * The commit reaches the WAL with the next entry batch, or by itself once
 * the log has been quiet for a few ticks, and survives a restart. */
TEST(a_commit_index_change_alone_costs_no_wal_batch_but_reaches_the_wal)
{
    cluster_init(3);
    cluster_start_peers(3);
    raft_id leader = converge(3);
    int li = h_index_of(nodes, 3, leader);
    uint64_t before[3];
    for (int i = 0; i < 3; i++)
        before[i] = nodes[i].node->m.write_batches;
    enum { WRITES = 40 };
    struct hresp r;
    char path[64];
    for (int i = 0; i < WRITES; i++) {
        snprintf(path, sizeof path, "/kv/w%d", i);
        h_http(&nodes[li], "PUT", path, NULL, "v", &r);
        ASSERT_EQ(r.status, 201);
    }
    struct node_info info;
    node_info_get(nodes[li].node, &info);
    raft_index last = info.commit;
    struct hcond c = {nodes, 3, 0, 0};
    ASSERT_TRUE(h_run_until(h_cond_converged, &c));
    ASSERT_TRUE(h_run_until(cond_commit_in_wal, &last));
    for (int i = 0; i < 3; i++) {
        uint64_t batches = nodes[i].node->m.write_batches - before[i];
        /* one per write, plus the idle commit write and a little slack for
         * a heartbeat round that raced a write */
        ASSERT_TRUE(batches >= WRITES);
        ASSERT_TRUE(batches <= WRITES + WRITES / 4);
    }
    uint64_t cluster_id = nodes[0].node->cluster_id;
    for (int i = 0; i < 3; i++)
        h_stop(&nodes[i]);
    for (int i = 0; i < 3; i++) {
        struct st_storage_config sc = {
            .dir = nodes[i].dir, .node_id = nodes[i].cfg.id, .cluster_id = cluster_id};
        struct st_storage *s = NULL;
        struct st_storage_state st;
        struct st_errbuf err;
        ASSERT_EQ(st_storage_open(&sc, &s, &st, &err), 0);
        ASSERT_TRUE(st.log.hard_state.commit >= last);
        st_storage_state_release(&st);
        st_storage_close(s);
    }
    cluster_fini();
}

struct snap_cond {
    raft_index at_least;
};

static bool cond_all_snapshotted(void *arg)
{
    struct snap_cond *c = arg;
    for (int i = 0; i < n_nodes; i++) {
        struct node_info info;
        node_info_get(nodes[i].node, &info);
        if (info.snapshot_index < c->at_least || info.snapshotting) return false;
    }
    return true;
}

/* The members apply the same indexes: with one threshold they all wrote a
 * snapshot and compacted at the same moment (a quorum stalled at once).
 * Node id k snapshots where the applied index crosses a multiple of the
 * threshold shifted by ((k-1) mod 4) quarters of it. */
TEST(members_snapshot_at_staggered_indexes)
{
    enum { T = 40 };
    cluster_init(3);
    for (int i = 0; i < 3; i++)
        nodes[i].cfg.snapshot_threshold = T;
    cluster_start_peers(3);
    raft_id leader = converge(3);
    int li = h_index_of(nodes, 3, leader);
    struct hresp r;
    char path[64];
    for (int i = 0; i < T + 5; i++) {
        snprintf(path, sizeof path, "/kv/s%d", i);
        h_http(&nodes[li], "PUT", path, NULL, "v", &r);
        ASSERT_EQ(r.status, 201);
    }
    struct snap_cond c = {1};
    ASSERT_TRUE(h_run_until(cond_all_snapshotted, &c));
    raft_index seen[3];
    for (int i = 0; i < 3; i++) {
        struct node_info info;
        node_info_get(nodes[i].node, &info);
        uint64_t shift = ((nodes[i].cfg.id - 1) % 4) * (T / 4);
        seen[i] = info.snapshot_index;
        ASSERT_EQ((info.snapshot_index + shift) % T, 0);
    }
    ASSERT_TRUE(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2]);
    cluster_fini();
}

TEST(leadership_transfer_and_removal_of_the_leader)
{
    cluster_init(3);
    cluster_start_peers(3);
    raft_id leader = converge(3);
    int f1 = follower_index(leader, -1);
    struct hresp r;
    char path[64];
    /* Transfer requested at a follower is proxied to the leader. */
    snprintf(path, sizeof path, "/cluster/transfer?to=%llu", (unsigned long long)nodes[f1].cfg.id);
    h_http(&nodes[f1], "POST", path, NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    leader = converge(3);
    ASSERT_EQ(leader, nodes[f1].cfg.id);
    /* Remove the leader itself: it steps down, the others elect. */
    snprintf(path, sizeof path, "/cluster/members/%llu", (unsigned long long)leader);
    h_http(&nodes[f1], "DELETE", path, NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    int old = f1;
    h_stop(&nodes[old]);
    raft_id leader2 = converge_not(3, leader);
    ASSERT_NE(leader2, leader);
    int f = follower_index(leader2, -1);
    ASSERT_TRUE(f >= 0);
    struct member_cond mc = {&nodes[f], leader2, true, 2};
    ASSERT_TRUE(h_run_until(cond_member, &mc));
    h_http(&nodes[f], "PUT", "/kv/after-removal", NULL, "ok", &r);
    ASSERT_EQ(r.status, 201);
    cluster_fini();
}

static bool cond_nothing_queued_for_node_1(void *arg)
{
    (void)arg;
    for (int i = 1; i <= 2; i++) {
        const struct st_tr_peer *p = peer_find(nodes[i].node->tr, 1);
        if (p != NULL && p->queue_msgs > 0) return false;
    }
    return true;
}

/* A node restarted from a state older than the addition of a member with a
 * larger id that then became leader did not know its leader, and never
 * heard from it: only the smaller id of a pair dialed, and a dialer that was
 * not a known peer was refused (nemesis seed 8369). */
TEST(a_node_behind_the_addition_of_its_new_leader_catches_up)
{
    cluster_init(4);
    cluster_start_peers(3);
    converge(3);
    h_stop(&nodes[0]); /* node 1 knows members 1-3 only */
    converge(3);
    struct hresp r;
    nodes[3].cfg.mode = NODE_START_JOIN;
    snprintf(nodes[3].cfg.join_http, sizeof nodes[3].cfg.join_http, "%s", nodes[1].cfg.http_listen);
    ASSERT_EQ(h_start(&nodes[3]), 0);
    struct member_cond mc = {&nodes[1], 4, true, 4};
    ASSERT_TRUE(h_run_until(cond_member, &mc));
    converge(4);
    h_http(&nodes[1], "POST", "/cluster/transfer?to=4", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(converge(4), 4);
    h_http(&nodes[3], "PUT", "/kv/after-the-join", NULL, "seen", &r);
    ASSERT_EQ(r.status, 201);
    /* What nodes 2 and 3 queued for node 1 (entries adding node 4, sent
     * while one of them led) is dropped after queue_wait_ms: node 1 must
     * hear of node 4 from node 4. */
    ASSERT_TRUE(h_run_until(cond_nothing_queued_for_node_1, NULL));
    nodes[0].cfg.mode = NODE_START_RESTART;
    ASSERT_EQ(h_start(&nodes[0]), 0);
    converge(4); /* node 1 follows the leader it did not know and applies */
    h_http(&nodes[0], "GET", "/kv/after-the-join?consistency=stale", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "seen");
    struct member_cond mc1 = {&nodes[0], 4, true, 4};
    ASSERT_TRUE(h_run_until(cond_member, &mc1));
    cluster_fini();
}

TEST(join_as_learner_promotion_and_join_through_a_follower)
{
    cluster_init(3);
    nodes[0].cfg.mode = NODE_START_BOOTSTRAP;
    ASSERT_EQ(h_start(&nodes[0]), 0);
    converge(1);
    struct hresp r;
    h_http(&nodes[0], "PUT", "/kv/early", NULL, "bird", &r);
    ASSERT_EQ(r.status, 201);
    /* Node 2 joins via node 1, is added as a learner, caught up, promoted. */
    nodes[1].cfg.mode = NODE_START_JOIN;
    snprintf(nodes[1].cfg.join_http, sizeof nodes[1].cfg.join_http, "%s", nodes[0].cfg.http_listen);
    ASSERT_EQ(h_start(&nodes[1]), 0);
    struct member_cond mc = {&nodes[0], 2, true, 2};
    ASSERT_TRUE(h_run_until(cond_member, &mc));
    converge(2);
    h_http(&nodes[1], "GET", "/kv/early", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "bird");
    /* Joining again under the id of a voter is refused. */
    char body[200];
    snprintf(body, sizeof body, "{\"id\":2,\"raft\":\"%s\",\"http\":\"%s\"}",
             nodes[1].cfg.raft_listen, nodes[1].cfg.http_listen);
    h_http(&nodes[0], "POST", "/cluster/members", NULL, body, &r);
    ASSERT_EQ(r.status, 409);
    /* Node 3 joins through node 2 (a follower): proxied to the leader. */
    nodes[2].cfg.mode = NODE_START_JOIN;
    snprintf(nodes[2].cfg.join_http, sizeof nodes[2].cfg.join_http, "%s", nodes[1].cfg.http_listen);
    ASSERT_EQ(h_start(&nodes[2]), 0);
    struct member_cond mc3 = {&nodes[0], 3, true, 3};
    ASSERT_TRUE(h_run_until(cond_member, &mc3));
    converge(3);
    h_http(&nodes[2], "PUT", "/kv/late", NULL, "joiner", &r);
    ASSERT_EQ(r.status, 201);
    h_http(&nodes[0], "GET", "/kv/late", NULL, NULL, &r);
    ASSERT_STREQ(r.body, "joiner");
    /* A joined node restarts from its data directory. */
    h_stop(&nodes[2]);
    nodes[2].cfg.mode = NODE_START_RESTART;
    ASSERT_EQ(h_start(&nodes[2]), 0);
    converge(3);
    h_http(&nodes[2], "GET", "/kv/late?consistency=stale", NULL, NULL, &r);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body, "joiner");
    cluster_fini();
}

static bool cond_started(void *arg)
{
    return ((struct hnode *)arg)->started;
}

TEST(a_refused_join_fails_the_start_with_a_reason)
{
    cluster_init(2);
    nodes[0].cfg.mode = NODE_START_BOOTSTRAP;
    ASSERT_EQ(h_start(&nodes[0]), 0);
    converge(1);
    /* Node "2" claims id 1, a voter already: the member answers 409 and
     * the joiner gives up at once (no retry on a 4xx). */
    nodes[1].cfg.id = 1;
    nodes[1].cfg.mode = NODE_START_JOIN;
    snprintf(nodes[1].cfg.join_http, sizeof nodes[1].cfg.join_http, "%s", nodes[0].cfg.http_listen);
    ASSERT_EQ(h_start(&nodes[1]), 0);
    ASSERT_TRUE(h_run_until(cond_started, &nodes[1]));
    ASSERT_EQ(nodes[1].start_status, ST_EINVAL);
    /* Nothing was created for the refused joiner. */
    char meta[200];
    snprintf(meta, sizeof meta, "%s/meta", nodes[1].dir);
    ASSERT_NE(access(meta, F_OK), 0);
    cluster_fini();
}

/* A joiner that loses power at any file operation of its start, then starts
 * again with its unchanged command line (--join), becomes a voter. Its data
 * directory must never hold a node (DATA/meta) without the members of its
 * join answer (DATA/join-peers): a nemesis run killed a joiner in that
 * window, and restarted, it refused every peer ("unknown peer id"). The
 * first round counts the operations of a clean start; each later round
 * crashes at one of them. */
TEST(a_joiner_crashed_at_any_step_of_its_start_restarts_and_joins)
{
    uint64_t ops = 0;
    for (uint64_t k = 0; k == 0 || k <= ops; k++) {
        cluster_init(2);
        nodes[0].cfg.mode = NODE_START_BOOTSTRAP;
        ASSERT_EQ(h_start(&nodes[0]), 0);
        converge(1);
        struct st_fs_sim *sim = NULL;
        ASSERT_EQ(st_fs_sim_create(&sim), 0);
        nodes[1].cfg.fs = st_fs_sim_fs(sim);
        nodes[1].cfg.mode = NODE_START_JOIN;
        snprintf(nodes[1].cfg.join_http, sizeof nodes[1].cfg.join_http, "%s",
                 nodes[0].cfg.http_listen);
        st_fs_sim_crash_at(sim, k);
        /* A crash at the directory's creation fails node_start itself. */
        int rc = h_start(&nodes[1]);
        if (rc == 0) ASSERT_TRUE(h_run_until(cond_started, &nodes[1]));
        if (k == 0) {
            ASSERT_EQ(rc, 0);
            ASSERT_EQ(nodes[1].start_status, 0);
            ops = st_fs_sim_op_count(sim);
            ASSERT_TRUE(ops > 0);
        } else {
            h_stop(&nodes[1]);
            (void)st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
            ASSERT_EQ(h_start(&nodes[1]), 0);
        }
        struct member_cond mc = {&nodes[0], 2, true, 2};
        if (!h_run_until(cond_member, &mc)) {
            fprintf(stderr, "crash at operation %llu of %llu: node 2 never became a voter\n",
                    (unsigned long long)k, (unsigned long long)ops);
            ASSERT_TRUE(false);
        }
        cluster_fini();
        st_fs_sim_destroy(sim);
    }
}

TEST(a_new_member_behind_a_compacted_log_gets_a_snapshot)
{
    cluster_init(2);
    nodes[0].cfg.mode = NODE_START_BOOTSTRAP;
    nodes[0].cfg.snapshot_threshold = 20; /* keeps 10 trailing entries */
    ASSERT_EQ(h_start(&nodes[0]), 0);
    converge(1);
    struct hresp r;
    char path[64], val[64];
    for (int i = 0; i < 60; i++) {
        snprintf(path, sizeof path, "/kv/s%d", i);
        snprintf(val, sizeof val, "value-%d", i);
        h_http(&nodes[0], "PUT", path, NULL, val, &r);
        ASSERT_EQ(r.status, 201);
    }
    ASSERT_TRUE(h_run_until(h_cond_no_snapshot_job, &nodes[0]));
    struct node_info info;
    node_info_get(nodes[0].node, &info);
    ASSERT_TRUE(info.first_index > 1); /* the log start was compacted away */
    nodes[1].cfg.mode = NODE_START_JOIN;
    snprintf(nodes[1].cfg.join_http, sizeof nodes[1].cfg.join_http, "%s", nodes[0].cfg.http_listen);
    ASSERT_EQ(h_start(&nodes[1]), 0);
    struct member_cond mc = {&nodes[0], 2, true, 2};
    ASSERT_TRUE(h_run_until(cond_member, &mc));
    converge(2);
    node_info_get(nodes[1].node, &info);
    ASSERT_TRUE(info.snapshot_index > 0); /* it installed a snapshot */
    for (int i = 0; i < 60; i += 7) {
        snprintf(path, sizeof path, "/kv/s%d?consistency=stale", i);
        snprintf(val, sizeof val, "value-%d", i);
        h_http(&nodes[1], "GET", path, NULL, NULL, &r);
        ASSERT_EQ(r.status, 200);
        ASSERT_STREQ(r.body, val);
    }
    cluster_fini();
}

TEST(writes_without_a_quorum_fail_cleanly_with_503)
{
    cluster_init(3);
    for (int i = 0; i < 3; i++)
        nodes[i].cfg.request_timeout_ms = 300;
    cluster_start_peers(3);
    raft_id leader = converge(3);
    int li = h_index_of(nodes, 3, leader);
    int f1 = follower_index(leader, -1);
    int f2 = follower_index(leader, f1);
    h_stop(&nodes[f1]);
    h_stop(&nodes[f2]);
    struct hresp r;
    h_http(&nodes[li], "PUT", "/kv/lonely", NULL, "v", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_TRUE(strstr(r.body, "\"code\":") != NULL);
    cluster_fini();
}

TEST(a_write_forwarded_to_a_leader_that_died_fails_at_the_leader_change)
{
    cluster_init(3);
    for (int i = 0; i < 3; i++) {
        nodes[i].cfg.tick_ms = 5;
        nodes[i].cfg.election_ticks = 100;       /* followers keep believing for a while */
        nodes[i].cfg.request_timeout_ms = 25000; /* longer than the watchdog */
    }
    cluster_start_peers(3);
    raft_id leader = converge(3);
    int f1 = follower_index(leader, -1);
    h_stop(&nodes[h_index_of(nodes, 3, leader)]);
    /* f1 still names the dead leader and forwards the write into the void;
     * when the survivors elect a new leader the write fails at once with
     * leadership_lost instead of hanging until the request timeout. */
    struct hresp r;
    h_http(&nodes[f1], "PUT", "/kv/orphan", NULL, "v", &r);
    ASSERT_EQ(r.status, 503);
    ASSERT_TRUE(strstr(r.body, "leadership_lost") != NULL);
    /* The cluster serves writes again through the same node. */
    converge_not(3, leader);
    h_http(&nodes[f1], "PUT", "/kv/orphan", NULL, "v2", &r);
    ASSERT_TRUE(r.status == 200 || r.status == 201);
    cluster_fini();
}

TEST(stopping_a_node_fails_its_pending_requests_cleanly)
{
    cluster_init(3);
    /* A long election timeout keeps the leader leading (check-quorum) for
     * a while after its followers stop, so the write is appended. */
    for (int i = 0; i < 3; i++) {
        nodes[i].cfg.tick_ms = 5;
        nodes[i].cfg.election_ticks = 200;
    }
    cluster_start_peers(3);
    raft_id leader = converge(3);
    int li = h_index_of(nodes, 3, leader);
    int f1 = follower_index(leader, -1);
    int f2 = follower_index(leader, f1);
    h_stop(&nodes[f1]);
    h_stop(&nodes[f2]);
    /* The write cannot commit (no quorum, 5 s timeout); the node stops
     * while it waits and must answer 503 shutting_down, not hang. */
    struct hresp r;
    memset(&r, 0, sizeof r);
    ASSERT_EQ(http_client_request(h_loop, nodes[li].cfg.http_listen, "PUT", "/kv/pending", NULL,
                                  NULL, "v", 1, 20000, h_http_cb, &r, NULL),
              0);
    struct node_info info;
    node_info_get(nodes[li].node, &info);
    raft_index last = info.last_index;
    struct last_cond lc = {&nodes[li], last, &r};
    /* Run until the proposal is in the leader's log (the request arrived). */
    ASSERT_TRUE(h_run_until(cond_log_grew, &lc));
    ASSERT_FALSE(r.done);
    h_stop(&nodes[li]);
    ASSERT_TRUE(h_run_until(h_cond_resp, &r));
    ASSERT_EQ(r.status, 503);
    ASSERT_TRUE(strstr(r.body, "shutting_down") != NULL);
    cluster_fini();
}

TEST_MAIN()
