/* The node's client request machinery through its C API (no HTTP): many
 * concurrent writes through the waiter pool, the pool bound, ReadIndex
 * batching (many reads, one round), refusals without a leader. */
#include "harness.h"

#include "kv/kv.h"
#include "node/node_int.h" /* NODE_FWD_BATCH_MAX, node->storage */
#include "stcache/storage.h"
#include "util/assert.h" /* ST_MIN */

#define MANY 1000

struct wcount {
    int done;
    int ok;
    int created;
    uint64_t max_version;
    int status_other;
};

static void write_cb(void *ctx, const struct node_write_result *res)
{
    struct wcount *c = ctx;
    c->done++;
    if (res->status == 0) {
        c->ok++;
        c->created += res->created;
        if (res->version > c->max_version) c->max_version = res->version;
    } else {
        c->status_other = res->status;
    }
}

struct rcount {
    int done;
    int found;
    int absent;
    int failed;
    int last_status;
};

static void read_cb(void *ctx, const struct node_read_result *res)
{
    struct rcount *c = ctx;
    c->done++;
    if (res->status == 0 && res->value_len >= 5 && memcmp(res->value, "v", 1) == 0)
        c->found++;
    else if (res->status == ST_ENOENT)
        c->absent++;
    else {
        c->failed++;
        c->last_status = res->status;
    }
}

struct until_n {
    int *counter;
    int n;
};

static bool cond_count(void *arg)
{
    struct until_n *u = arg;
    return *u->counter >= u->n;
}

struct metrics_buf {
    char text[32768];
    size_t len;
};

static void metrics_append(void *actx, const void *p, size_t len)
{
    struct metrics_buf *b = actx;
    if (b->len + len < sizeof b->text) {
        memcpy(b->text + b->len, p, len);
        b->len += len;
        b->text[b->len] = '\0';
    }
}

static uint64_t metric(struct node *n, const char *name)
{
    static struct metrics_buf b;
    b.len = 0;
    b.text[0] = '\0';
    node_metrics_write(n, metrics_append, &b);
    char pat[128];
    snprintf(pat, sizeof pat, "\n%s ", name);
    const char *p = strstr(b.text, pat);
    return p ? strtoull(p + strlen(pat), NULL, 10) : UINT64_MAX;
}

static struct hnode nodes[3];

static void start_peers(int n, uint32_t waiters_max)
{
    h_init();
    memset(nodes, 0, sizeof nodes);
    char list[1024] = "";
    for (int i = 0; i < n; i++) {
        h_mkdtemp(nodes[i].dir, sizeof nodes[i].dir);
        h_config(&nodes[i], (raft_id)i + 1);
        if (waiters_max) nodes[i].cfg.waiters_max = waiters_max;
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
    struct hcond c = {nodes, n, 0, 0};
    ASSERT_TRUE(h_run_until(h_cond_converged, &c));
}

static void stop_all(int n)
{
    for (int i = 0; i < n; i++)
        h_stop(&nodes[i]);
    for (int i = 0; i < n; i++)
        h_rmrf(nodes[i].dir);
    h_fini();
}

static int follower_of(int n)
{
    struct node_info info;
    node_info_get(nodes[0].node, &info);
    for (int i = 0; i < n; i++)
        if (nodes[i].cfg.id != info.leader) return i;
    return -1;
}

TEST(a_thousand_concurrent_writes_through_a_follower_all_complete)
{
    start_peers(3, 0);
    int f = follower_of(3);
    struct wcount wc = {0};
    char key[32];
    uint64_t batches_before = metric(nodes[f].node, "stcache_forward_batches_total");
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof key, "k%d", i);
        struct node_put_args a = {.key = (const uint8_t *)key,
                                  .key_len = strlen(key),
                                  .value = (const uint8_t *)"value",
                                  .value_len = 5};
        ASSERT_EQ(node_put(nodes[f].node, &a, write_cb, &wc), 0);
    }
    struct until_n u = {&wc.done, MANY};
    ASSERT_TRUE(h_run_until(cond_count, &u));
    ASSERT_EQ(wc.ok, MANY);
    ASSERT_EQ(wc.created, MANY);
    ASSERT_TRUE(wc.max_version >= MANY);
    /* Forwarded in batches: 1000 writes of one loop iteration leave in
     * ceil(1000 / 256) PROPOSE messages. */
    ASSERT_EQ(metric(nodes[f].node, "stcache_forward_batches_total") - batches_before,
              (MANY + NODE_FWD_BATCH_MAX - 1) / NODE_FWD_BATCH_MAX);
    stop_all(3);
}

TEST(reads_issued_together_share_one_read_index_round)
{
    start_peers(3, 0);
    int f = follower_of(3);
    struct wcount wc = {0};
    struct node_put_args a = {.key = (const uint8_t *)"shared",
                              .key_len = 6,
                              .value = (const uint8_t *)"value",
                              .value_len = 5};
    ASSERT_EQ(node_put(nodes[f].node, &a, write_cb, &wc), 0);
    struct until_n u = {&wc.done, 1};
    ASSERT_TRUE(h_run_until(cond_count, &u));
    ASSERT_EQ(wc.ok, 1);
    uint64_t rounds_before = metric(nodes[f].node, "stcache_read_index_rounds_total");
    struct rcount rc = {0};
    for (int i = 0; i < 500; i++)
        ASSERT_EQ(node_get(nodes[f].node, (const uint8_t *)"shared", 6, NODE_READ_LINEARIZABLE,
                           read_cb, &rc),
                  0);
    ASSERT_EQ(
        node_get(nodes[f].node, (const uint8_t *)"nope", 4, NODE_READ_LINEARIZABLE, read_cb, &rc),
        0);
    struct until_n ur = {&rc.done, 501};
    ASSERT_TRUE(h_run_until(cond_count, &ur));
    ASSERT_EQ(rc.found, 500);
    ASSERT_EQ(rc.absent, 1);
    ASSERT_EQ(metric(nodes[f].node, "stcache_read_index_rounds_total") - rounds_before, 1);
    stop_all(3);
}

TEST(the_waiter_pool_is_bounded_and_refuses_beyond_it)
{
    start_peers(1, 256);
    struct wcount wc = {0};
    char key[32];
    int accepted = 0, busy = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "b%d", i);
        struct node_put_args a = {.key = (const uint8_t *)key,
                                  .key_len = strlen(key),
                                  .value = (const uint8_t *)"value",
                                  .value_len = 5};
        int r = node_put(nodes[0].node, &a, write_cb, &wc);
        if (r == 0)
            accepted++;
        else if (r == ST_EBUSY)
            busy++;
    }
    ASSERT_EQ(accepted, 256);
    ASSERT_EQ(busy, 44);
    struct until_n u = {&wc.done, accepted};
    ASSERT_TRUE(h_run_until(cond_count, &u));
    ASSERT_EQ(wc.ok, 256);
    /* Completed waiters return to the pool: room again. */
    struct node_put_args a = {.key = (const uint8_t *)"again",
                              .key_len = 5,
                              .value = (const uint8_t *)"value",
                              .value_len = 5};
    ASSERT_EQ(node_put(nodes[0].node, &a, write_cb, &wc), 0);
    u.n = accepted + 1;
    ASSERT_TRUE(h_run_until(cond_count, &u));
    stop_all(1);
}

TEST(without_a_leader_requests_fail_at_once_and_stale_reads_still_work)
{
    h_init();
    memset(nodes, 0, sizeof nodes);
    /* Node 1 of a static 2-node cluster whose node 2 never starts: no
     * leader can be elected: writes are refused, reads fail, stale reads work. */
    h_mkdtemp(nodes[0].dir, sizeof nodes[0].dir);
    h_config(&nodes[0], 1);
    nodes[0].cfg.request_timeout_ms = 100;
    char list[300];
    snprintf(list, sizeof list, "1=%s,2=127.0.0.1:9", nodes[0].cfg.raft_listen);
    char err[200];
    ASSERT_EQ(node_config_set(&nodes[0].cfg, "peers", list, err, sizeof err), 0);
    ASSERT_EQ(h_start(&nodes[0]), 0);
    struct wcount wc = {0};
    struct node_put_args a = {.key = (const uint8_t *)"x",
                              .key_len = 1,
                              .value = (const uint8_t *)"value",
                              .value_len = 5};
    ASSERT_EQ(node_put(nodes[0].node, &a, write_cb, &wc), ST_ENOTLEADER);
    struct rcount rc = {0};
    ASSERT_EQ(
        node_get(nodes[0].node, (const uint8_t *)"x", 1, NODE_READ_LINEARIZABLE, read_cb, &rc), 0);
    struct until_n ur = {&rc.done, 1};
    ASSERT_TRUE(h_run_until(cond_count, &ur));
    ASSERT_EQ(rc.failed, 1);
    ASSERT_EQ(rc.last_status, ST_ENOTLEADER);
    /* A stale read is served locally at once, leader or not. */
    ASSERT_EQ(node_get(nodes[0].node, (const uint8_t *)"x", 1, NODE_READ_STALE, read_cb, &rc), 0);
    ASSERT_EQ(rc.done, 2);
    ASSERT_EQ(rc.absent, 1);
    h_stop(&nodes[0]);
    h_rmrf(nodes[0].dir);
    h_fini();
}

static bool cond_snapshotting(void *arg)
{
    struct node_info info;
    node_info_get(((struct hnode *)arg)->node, &info);
    return info.snapshotting;
}

/* One write whose outcome and timing (job running or not) is recorded. */
struct wrec {
    struct hnode *hn;
    int *counter;
    int status;
    uint64_t version;
    bool done;
    bool during_job; /* completed while the snapshot was still being written */
};

static void wrec_cb(void *ctx, const struct node_write_result *res)
{
    struct wrec *w = ctx;
    w->done = true;
    w->status = res->status;
    w->version = res->version;
    w->during_job = w->hn->node->snap_active; /* the kv cursor is open */
    (*w->counter)++;
}

struct rval {
    int done;
    int status;
    uint64_t version;
    char value[128];
    size_t value_len;
};

static void rval_cb(void *ctx, const struct node_read_result *res)
{
    struct rval *r = ctx;
    r->done++;
    r->status = res->status;
    r->version = res->version;
    r->value_len = res->status == 0 ? ST_MIN(res->value_len, sizeof r->value) : 0;
    if (r->value_len) memcpy(r->value, res->value, r->value_len);
}

static bool read_key(struct node *n, const char *key, struct rval *r)
{
    memset(r, 0, sizeof *r);
    if (node_get(n, (const uint8_t *)key, strlen(key), NODE_READ_STALE, rval_cb, r) != 0)
        return false;
    struct until_n u = {&r->done, 1};
    return h_run_until(cond_count, &u);
}

#define BIG_KEYS 20100
#define LATE_OPS 500

TEST(a_large_snapshot_is_written_across_loop_passes_while_writes_complete)
{
    h_init();
    memset(nodes, 0, sizeof nodes);
    h_mkdtemp(nodes[0].dir, sizeof nodes[0].dir);
    h_config(&nodes[0], 1);
    nodes[0].cfg.mode = NODE_START_BOOTSTRAP;
    nodes[0].cfg.snapshot_threshold = 20000;
    nodes[0].cfg.snapshot_step_bytes = 64; /* about one record per loop pass */
    ASSERT_EQ(h_start(&nodes[0]), 0);
    /* The job may take 300 steps (of its ~40k) while the writes below run:
     * records are emitted between applies, and the job cannot end before
     * the writes do, however slow the disk (it did on a loaded CI machine,
     * when each step was free to run). */
    nodes[0].node->snap_steps_limited = true;
    nodes[0].node->snap_steps_left = 150;
    struct hcond c = {nodes, 1, 0, 0};
    ASSERT_TRUE(h_run_until(h_cond_converged, &c));
    static char value[100], small[50];
    memset(value, 'v', sizeof value);
    memset(small, 'w', sizeof small);
    static struct wrec big[BIG_KEYS], late[LATE_OPS];
    memset(big, 0, sizeof big);
    memset(late, 0, sizeof late);
    int big_done = 0, late_done = 0;
    char key[32];
    /* One loop iteration: one append, one commit. The threshold is crossed
     * inside that batch of committed entries: the snapshot starts there and
     * the rest of the batch is applied while it is written. */
    for (int i = 0; i < BIG_KEYS; i++) {
        snprintf(key, sizeof key, "big%d", i);
        struct node_put_args a = {.key = (const uint8_t *)key,
                                  .key_len = strlen(key),
                                  .value = (const uint8_t *)value,
                                  .value_len = sizeof value};
        big[i] = (struct wrec){.hn = &nodes[0], .counter = &big_done};
        ASSERT_EQ(node_put(nodes[0].node, &a, wrec_cb, &big[i]), 0);
    }
    ASSERT_TRUE(h_run_until(cond_snapshotting, &nodes[0]));
    struct until_n u = {&big_done, BIG_KEYS};
    ASSERT_TRUE(h_run_until(cond_count, &u));
    ASSERT_TRUE(big[BIG_KEYS - 1].during_job); /* the tail did not wait for the job */
    nodes[0].node->snap_steps_left += 150;
    /* While the job runs: overwrite (smaller values), delete, create. */
    for (int i = 0; i < LATE_OPS; i++) {
        late[i] = (struct wrec){.hn = &nodes[0], .counter = &late_done};
        if (i < 200) {
            snprintf(key, sizeof key, "big%d", i);
            struct node_put_args a = {.key = (const uint8_t *)key,
                                      .key_len = strlen(key),
                                      .value = (const uint8_t *)small,
                                      .value_len = sizeof small};
            ASSERT_EQ(node_put(nodes[0].node, &a, wrec_cb, &late[i]), 0);
        } else if (i < 300) {
            snprintf(key, sizeof key, "big%d", i);
            ASSERT_EQ(node_delete(nodes[0].node, (const uint8_t *)key, strlen(key), NODE_COND_NONE,
                                  0, wrec_cb, &late[i]),
                      0);
        } else {
            snprintf(key, sizeof key, "late%d", i);
            struct node_put_args a = {.key = (const uint8_t *)key,
                                      .key_len = strlen(key),
                                      .value = (const uint8_t *)small,
                                      .value_len = sizeof small};
            ASSERT_EQ(node_put(nodes[0].node, &a, wrec_cb, &late[i]), 0);
        }
    }
    u = (struct until_n){&late_done, LATE_OPS};
    ASSERT_TRUE(h_run_until(cond_count, &u));
    for (int i = 0; i < LATE_OPS; i++) {
        ASSERT_EQ(late[i].status, 0);
        ASSERT_TRUE(late[i].during_job); /* written while the snapshot was */
    }
    nodes[0].node->snap_steps_limited = false; /* now let it finish */
    ASSERT_TRUE(h_run_until(h_cond_no_snapshot_job, &nodes[0]));
    struct node_info info;
    node_info_get(nodes[0].node, &info);
    uint64_t s_index = info.snapshot_index;
    ASSERT_TRUE(s_index >= 20000 && s_index < big[BIG_KEYS - 1].version);
    ASSERT_EQ(metric(nodes[0].node, "stcache_snapshots_taken_total"), 1);
    /* The stored snapshot holds exactly the state at its index: the puts
     * up to it, none of the writes applied while it was written. */
    struct st_snap_reader *rd = NULL;
    struct st_snapshot_info sinfo;
    ASSERT_EQ(st_snap_read_open(nodes[0].node->storage->snaps, 0, &rd, &sinfo), 0);
    ASSERT_EQ(sinfo.meta.index, s_index);
    struct kv *k = NULL;
    ASSERT_EQ(kv_create(NULL, &k), 0);
    struct kv_restore *kr = NULL;
    ASSERT_EQ(kv_restore_begin(k, &kr), 0);
    static uint8_t buf[65536];
    size_t got;
    do {
        ASSERT_EQ(st_snap_read(rd, buf, sizeof buf, &got), 0);
        ASSERT_EQ(kv_restore_feed(kr, buf, got), 0);
    } while (got > 0);
    st_snap_read_close(rd);
    ASSERT_EQ(kv_restore_finish(kr, NULL), 0);
    ASSERT_EQ(kv_applied_index(k), s_index);
    uint64_t expect_keys = 0;
    for (int i = 0; i < BIG_KEYS; i++) {
        snprintf(key, sizeof key, "big%d", i);
        struct kv_view v;
        int in_s = big[i].version <= s_index;
        expect_keys += (uint64_t)in_s;
        ASSERT_EQ(kv_get(k, key, strlen(key), 0, &v), in_s ? 0 : ST_ENOENT);
        if (in_s) {
            ASSERT_EQ(v.version, big[i].version);
            ASSERT_EQ(v.value_len, sizeof value);
            ASSERT_MEMEQ(v.value, value, sizeof value);
        }
    }
    struct kv_stats ks;
    kv_stats(k, &ks);
    ASSERT_EQ(ks.keys, expect_keys);
    ASSERT_TRUE(expect_keys > 19000 && expect_keys < BIG_KEYS);
    kv_destroy(k);
    /* Restart: the snapshot plus the tail bring everything back. */
    h_stop(&nodes[0]);
    nodes[0].cfg.mode = NODE_START_RESTART;
    ASSERT_EQ(h_start(&nodes[0]), 0);
    ASSERT_TRUE(h_run_until(h_cond_converged, &c));
    struct rval r;
    ASSERT_TRUE(read_key(nodes[0].node, "big20099", &r));
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.version, big[BIG_KEYS - 1].version);
    ASSERT_TRUE(read_key(nodes[0].node, "big0", &r));
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.version, late[0].version);
    ASSERT_EQ(r.value_len, sizeof small);
    ASSERT_TRUE(read_key(nodes[0].node, "big250", &r));
    ASSERT_EQ(r.status, ST_ENOENT);
    ASSERT_TRUE(read_key(nodes[0].node, "late499", &r));
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.version, late[LATE_OPS - 1].version);
    ASSERT_TRUE(read_key(nodes[0].node, "big300", &r));
    ASSERT_EQ(r.status, 0);
    ASSERT_EQ(r.value_len, sizeof value);
    stop_all(1);
}

TEST_MAIN()
