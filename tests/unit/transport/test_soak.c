/* Randomized soak of three transports in one loop (seeded choices; the
 * interleaving with the kernel is not deterministic, the properties are):
 * random sends, transport restarts on the same port, peer removals and
 * re-additions, snapshot streams. Checked throughout:
 *   - per (sender, receiver) pair, messages arrive in send order, never
 *     duplicated (loss is allowed: Raft tolerates it);
 *   - every message is delivered with from/to as addressed;
 *   - every accepted snapshot begin gets exactly one end;
 * and at the end, once everything is healed, every pair delivers again
 * (liveness), and all memory and handles are released (ASan, loop close). */
#include <fcntl.h>
#include <unistd.h>

#include <uv.h>

#include "test.h"
#include "transport/transport.h"
#include "util/assert.h"
#include "util/rng.h"
#include "util/trace.h"

#define N 3
#define CLUSTER 0x50AC

static uv_loop_t loop;
static uv_timer_t watchdog;
static bool watchdog_fired;

static void on_watchdog(uv_timer_t *t)
{
    watchdog_fired = true;
}

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        watchdog_fired = false;                                                                    \
        uv_timer_start(&watchdog, on_watchdog, 20000, 0);                                          \
        while (!(cond) && !watchdog_fired) {                                                       \
            uv_run(&loop, UV_RUN_NOWAIT);                                                          \
            if (!(cond)) uv_run(&loop, UV_RUN_ONCE);                                               \
        }                                                                                          \
        uv_timer_stop(&watchdog);                                                                  \
        if (!(cond)) ST_TEST_FAIL_("watchdog: still not true: %s", #cond);                         \
    } while (0)

struct node {
    raft_id id;
    int port;
    char addr[64];
    struct st_tr *tr;
    bool done;
    bool peer_added[N + 1];
    int snap_open; /* accepted begins without their end */
    int snap_sending;
};

static struct node nodes[N + 1];
/* Persist across restarts: sequence numbers sent and last seen, per pair. */
static uint64_t next_seq[N + 1][N + 1];
static uint64_t last_seen[N + 1][N + 1];
static uint64_t delivered[N + 1][N + 1];
static uint64_t violations;

static void msg_cb(void *ctx, raft_id from, const struct raft_msg *m)
{
    struct node *n = ctx;
    if (m->from != from || m->to != n->id || from < 1 || from > N) {
        violations++;
        return;
    }
    if (m->type != RAFT_MSG_HEARTBEAT && m->type != RAFT_MSG_APPEND) return;
    for (uint32_t i = 0; i < m->n_entries; i++) /* payload byte k of entry i: ctx + i + k */
        for (uint32_t k = 0; k < m->entries[i].len; k++)
            if (m->entries[i].data[k] != (uint8_t)(m->context + i + k)) {
                violations++;
                break;
            }
    /* context = sequence number (from 1) */
    if (m->context <= last_seen[from][n->id]) violations++;
    last_seen[from][n->id] = m->context;
    delivered[from][n->id]++;
}

static int snap_begin(void *ctx, raft_id from, const struct raft_msg *m, uint64_t size)
{
    struct node *n = ctx;
    n->snap_open++;
    return 0;
}

static int snap_chunk(void *ctx, raft_id from, uint64_t off, const uint8_t *d, size_t len)
{
    return 0;
}

static int snap_end(void *ctx, raft_id from, int status)
{
    struct node *n = ctx;
    n->snap_open--;
    if (n->snap_open < 0) violations++;
    return 0;
}

static void snap_sent(void *ctx, raft_id to, int status)
{
    struct node *n = ctx;
    n->snap_sending--;
    if (n->snap_sending < 0) violations++;
}

static void done_cb(void *arg)
{
    struct node *n = arg;
    n->done = true;
}

static void node_start(struct node *n)
{
    struct st_tr_config cfg;
    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", n->port);
    st_tr_config_default(&cfg, n->id, CLUSTER, listen);
    cfg.seed = n->id * 7919 + (uint64_t)n->port;
    cfg.reconnect_base_ms = 2;
    cfg.reconnect_max_ms = 20;
    cfg.send_queue_msgs_max = 64;
    cfg.snapshot_chunk_bytes = 16 * 1024;
    struct st_tr_callbacks cbs = {.ctx = n,
                                  .msg_cb = msg_cb,
                                  .snapshot_begin_cb = snap_begin,
                                  .snapshot_chunk_cb = snap_chunk,
                                  .snapshot_end_cb = snap_end,
                                  .snapshot_sent_cb = snap_sent};
    ST_ASSERT(st_tr_create(&loop, &cfg, &cbs, &n->tr) == 0);
    ST_ASSERT(st_tr_start(n->tr) == 0);
    n->port = st_tr_listen_port(n->tr);
    snprintf(n->addr, sizeof(n->addr), "127.0.0.1:%d", n->port);
    memset(n->peer_added, 0, sizeof(n->peer_added));
    n->snap_open = 0;
    n->snap_sending = 0;
}

static void node_stop(struct node *n)
{
    n->done = false;
    st_tr_destroy(n->tr, done_cb, n);
    n->tr = NULL;
    RUN_UNTIL(n->done);
}

static void add_peer(struct node *n, raft_id p)
{
    if (n->peer_added[p]) return;
    ST_ASSERT(st_tr_peer_add(n->tr, p, nodes[p].addr) == 0);
    n->peer_added[p] = true;
}

static struct st_rng payload_rng;

/* A heartbeat, or an APPEND of up to 3 entries from empty to 50 KB (frames
 * above 32 KiB take the dedicated-buffer path on the receiver). */
static void send_one(raft_id from, raft_id to)
{
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = from, .to = to, .term = 1};
    m.context = ++next_seq[from][to];
    struct raft_entry ents[3];
    struct raft_buf *bufs[3] = {NULL, NULL, NULL};
    if (st_rng_below(&payload_rng, 3) == 0) {
        m.type = RAFT_MSG_APPEND;
        m.n_entries = (uint32_t)st_rng_below(&payload_rng, 4);
        m.entries = ents;
        for (uint32_t i = 0; i < m.n_entries; i++) {
            uint32_t len = (uint32_t)st_rng_below(&payload_rng, 4) == 0
                               ? (uint32_t)st_rng_below(&payload_rng, 50000)
                               : (uint32_t)st_rng_below(&payload_rng, 100);
            bufs[i] = raft_buf_create(len ? len : 1);
            for (uint32_t k = 0; k < len; k++)
                bufs[i]->data[k] = (uint8_t)(m.context + i + k);
            ents[i] = (struct raft_entry){.term = 1,
                                          .index = m.context * 4 + i,
                                          .type = RAFT_ENTRY_NORMAL,
                                          .buf = bufs[i],
                                          .data = bufs[i]->data,
                                          .len = len};
        }
    }
    int rv = st_tr_send(nodes[from].tr, &m);
    ST_ASSERT(rv == 0 || rv == ST_EBUSY || rv == ST_ENOENT);
    for (int i = 0; i < 3; i++)
        raft_buf_unref(bufs[i]); /* the transport holds its own references */
}

static bool all_connected(void)
{
    for (raft_id i = 1; i <= N; i++)
        for (raft_id j = 1; j <= N; j++)
            if (i != j && !st_tr_peer_connected(nodes[i].tr, j)) return false;
    return true;
}

static uint64_t snapshot_file_size;
static char snapshot_path[64];

TEST(random_sends_restarts_and_membership_changes_keep_per_pair_order)
{
    st_trace_set_level(ST_TRACE_ERROR); /* hundreds of connects and losses */
    ST_ASSERT(uv_loop_init(&loop) == 0);
    uv_timer_init(&loop, &watchdog);
    snprintf(snapshot_path, sizeof(snapshot_path), "/tmp/stcache-soak-%d", (int)getpid());
    snapshot_file_size = 200 * 1024 + 17;
    int fd = open(snapshot_path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ASSERT_TRUE(fd >= 0);
    static uint8_t zero[200 * 1024 + 17];
    ASSERT_EQ(write(fd, zero, sizeof(zero)), (ssize_t)sizeof(zero));
    close(fd);
    for (raft_id i = 1; i <= N; i++) {
        nodes[i].id = i;
        nodes[i].port = 0;
        node_start(&nodes[i]);
    }
    for (raft_id i = 1; i <= N; i++)
        for (raft_id j = 1; j <= N; j++)
            if (i != j) add_peer(&nodes[i], j);

    struct st_rng rng;
    /* ST_SOAK_SEED=<n> explores other schedules; CI runs the fixed one. */
    const char *seed_env = getenv("ST_SOAK_SEED");
    uint64_t seed = seed_env != NULL ? strtoull(seed_env, NULL, 10) : 20261123;
    st_rng_init(&rng, seed);
    st_rng_init(&payload_rng, seed + 1);
    int restarts = 0, removals = 0, snapshots = 0;
    for (int step = 0; step < 400; step++) {
        uint64_t dice = st_rng_below(&rng, 100);
        raft_id a = 1 + (raft_id)st_rng_below(&rng, N);
        raft_id b = 1 + (raft_id)((a + st_rng_below(&rng, N - 1)) % N);
        if (b == a) b = a % N + 1;
        if (dice < 70) {
            int k = 1 + (int)st_rng_below(&rng, 20);
            for (int i = 0; i < k; i++)
                send_one(a, b);
        } else if (dice < 78) { /* restart a on the same port */
            node_stop(&nodes[a]);
            node_start(&nodes[a]);
            for (raft_id j = 1; j <= N; j++)
                if (j != a) add_peer(&nodes[a], j);
            restarts++;
        } else if (dice < 88) { /* a removes b, or adds it back */
            if (nodes[a].peer_added[b]) {
                ASSERT_EQ(st_tr_peer_remove(nodes[a].tr, b), 0);
                nodes[a].peer_added[b] = false;
                removals++;
            } else {
                add_peer(&nodes[a], b);
            }
        } else if (dice < 93) { /* a snapshot stream over a (re)connected pair */
            add_peer(&nodes[a], b);
            add_peer(&nodes[b], a);
            RUN_UNTIL(st_tr_peer_connected(nodes[a].tr, b));
            static struct raft_snapshot_meta meta = {.index = 10, .term = 1};
            struct raft_msg m = {
                .type = RAFT_MSG_SNAPSHOT, .from = a, .to = b, .term = 1, .snapshot = &meta};
            int rv = st_tr_send_snapshot(nodes[a].tr, &m, snapshot_path, snapshot_file_size);
            ASSERT_TRUE(rv == 0 || rv == ST_EBUSY); /* EBUSY: one is already running */
            if (rv == 0) {
                nodes[a].snap_sending++;
                snapshots++;
            }
        }
        /* Let the loop make a random amount of progress. */
        int spins = (int)st_rng_below(&rng, 6);
        for (int s = 0; s < spins; s++)
            uv_run(&loop, UV_RUN_NOWAIT);
        ASSERT_EQ(violations, 0);
    }
    /* Heal: everybody knows everybody; then every pair delivers again. */
    for (raft_id i = 1; i <= N; i++)
        for (raft_id j = 1; j <= N; j++)
            if (i != j) add_peer(&nodes[i], j);
    RUN_UNTIL(all_connected());
    uint64_t target[N + 1][N + 1];
    for (raft_id i = 1; i <= N; i++)
        for (raft_id j = 1; j <= N; j++)
            if (i != j) {
                send_one(i, j);
                target[i][j] = next_seq[i][j];
            }
    for (raft_id i = 1; i <= N; i++)
        for (raft_id j = 1; j <= N; j++)
            if (i != j) RUN_UNTIL(last_seen[i][j] == target[i][j]);
    RUN_UNTIL(nodes[1].snap_sending == 0 && nodes[2].snap_sending == 0 &&
              nodes[3].snap_sending == 0);
    ASSERT_EQ(violations, 0);
    uint64_t total = 0;
    for (raft_id i = 1; i <= N; i++)
        for (raft_id j = 1; j <= N; j++)
            total += delivered[i][j];
    fprintf(stderr, "  soak (seed %llu): %llu delivered, %d restarts, %d removals, %d snapshots\n",
            (unsigned long long)seed, (unsigned long long)total, restarts, removals, snapshots);
    ASSERT_GE(restarts, 10);
    ASSERT_GE(removals, 10);
    ASSERT_GE(snapshots, 1);
    /* A receiver may learn of a lost connection after its sender did. */
    RUN_UNTIL(nodes[1].snap_open == 0 && nodes[2].snap_open == 0 && nodes[3].snap_open == 0);
    for (raft_id i = 1; i <= N; i++)
        node_stop(&nodes[i]);
    unlink(snapshot_path);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

TEST_MAIN()
