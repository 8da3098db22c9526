/* The whole-server simulator: see wsim.h for the seams, docs/TESTING.md for
 * what it checks and how to replay a seed.
 *
 *   wsim [--seeds N] [--seed S] [--ms SIM_MS] [--quiet-ms MS] [--trace] [--more-faults]
 *
 * One run: 3 nodes started with static peers, each on its own simulated disk;
 * clients that put unique values and read linearizably through the node
 * request API (node.h), each to a node of its choice; a seeded fault schedule
 * (partitions of one node, one-way cuts, loss and delay, a crash that loses
 * every unsynced write, followed by a restart from the disk; with
 * --more-faults also a full disk, failing syncs and exhausted descriptors on
 * one node, and a second crash soon after a restart); then every fault heals
 * and a quiet period follows. Checked:
 *   - no acknowledged write is lost: every acknowledged put is visible in the
 *     final state or overwritten by a write with a later version;
 *   - linearizable reads: a read never returns a version older than a put
 *     acknowledged before the read began, and what it returns is a value
 *     some put wrote at that version;
 *   - no write applied twice: a value is seen at one version only;
 *   - replicas are byte-identical at equal applied indexes (state digest);
 *   - liveness: once healed, every node converges and writes succeed.
 * A failure prints the seed and the command that replays it; a run is a pure
 * function of its seed (the determinism check runs one seed twice and
 * compares the trace hashes). */
#include "wsim.h"

#include "node/node.h"
#include "node/node_int.h"
#include "stcache/errors.h"
#include "stcache/storage.h"
#include "util/assert.h"
#include "util/trace.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define NODES 3
#define KEYS 6
#define CLIENTS 6
#define OPS_MAX 200000
#define SIM_MONO_BASE_NS 1000000000000ull       /* the monotonic clock at ms 0 */
#define SIM_WALL_BASE_NS 1796601600000000000ull /* 2026-12-01T00:00:00Z */

/* ------------------------------------------------------------ the clock */

static volatile uint64_t g_now_ns;

uint64_t wsim_now_ms(void)
{
    return g_now_ns / 1000000u;
}

int clock_gettime(clockid_t clk, struct timespec *ts)
{
    uint64_t ns;
    switch (clk) {
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_BOOTTIME:
        ns = SIM_MONO_BASE_NS + g_now_ns;
        break;
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
        ns = SIM_WALL_BASE_NS + g_now_ns;
        break;
    default: /* CPU clocks: the real ones */
        return (int)syscall(SYS_clock_gettime, clk, ts);
    }
    ts->tv_sec = (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
    return 0;
}

uint64_t uv_hrtime(void)
{
    return SIM_MONO_BASE_NS + g_now_ns;
}

/* ------------------------------------------------------- the threadpool */

#define WORK_MAX 4096
static struct {
    uv_work_t *req[WORK_MAX];
    uv_after_work_cb after[WORK_MAX];
    size_t head, n;
} g_work;

int uv_queue_work(uv_loop_t *loop, uv_work_t *req, uv_work_cb work_cb, uv_after_work_cb after_cb)
{
    (void)loop;
    if (g_work.n == WORK_MAX) return UV_ENOMEM;
    req->loop = loop;
    work_cb(req);
    size_t i = (g_work.head + g_work.n++) % WORK_MAX;
    g_work.req[i] = req;
    g_work.after[i] = after_cb;
    return 0;
}

/* Runs deferred completions in order; true if any ran. */
static bool work_drain(void)
{
    bool any = false;
    while (g_work.n) {
        uv_work_t *req = g_work.req[g_work.head];
        uv_after_work_cb cb = g_work.after[g_work.head];
        g_work.head = (g_work.head + 1) % WORK_MAX;
        g_work.n--;
        if (cb) cb(req, 0);
        any = true;
    }
    return any;
}

/* ------------------------------------------------------------ randomness */

static uint64_t g_rng;

static uint64_t rnd(void)
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
    return n ? rnd() % n : 0;
}

/* ---------------------------------------------------- trace hash (replay) */

static uint64_t g_hash;

static void hash_u64(uint64_t v)
{
    g_hash ^= v;
    g_hash *= 0x100000001B3ull;
    g_hash ^= g_hash >> 29;
}

/* ------------------------------------------------------------ the network */

static struct {
    bool cut[NODES + 1][NODES + 1]; /* a -> b down */
    uint32_t loss_permille;
    uint32_t delay_min_ms, delay_max_ms;
} g_link;

bool wsim_link_up(raft_id a, raft_id b)
{
    return a <= NODES && b <= NODES && !g_link.cut[a][b];
}

bool wsim_link_send(raft_id a, raft_id b, uint64_t *delay_ms)
{
    if (!wsim_link_up(a, b)) return false;
    if (g_link.loss_permille && rnd_below(1000) < g_link.loss_permille) return false;
    *delay_ms = g_link.delay_min_ms + rnd_below(g_link.delay_max_ms - g_link.delay_min_ms + 1);
    return true;
}

/* -------------------------------------------------------------- the nodes */

struct wnode {
    raft_id id;
    struct node_config cfg;
    struct node *node;
    struct st_fs_sim *disk;
    bool up;      /* started and not stopping */
    bool stopped; /* the stop finished */
    int start_status;
    uint32_t crashes;
    bool fatal; /* the node stopped on a storage error (a simulated power loss) */
};

static uv_loop_t g_loop;
static struct wnode g_nodes[NODES + 1];
static bool g_trace;

int wsim_read_file(raft_id id, const char *path, uint64_t off, void *buf, size_t len, size_t *got)
{
    if (id == 0 || id > NODES || !g_nodes[id].disk) return ST_ENOENT;
    const struct st_fs *fs = st_fs_sim_fs(g_nodes[id].disk);
    int fd = -1;
    int rc = fs->ops->open(fs->self, path, ST_FS_READ, &fd);
    if (rc) return rc;
    rc = fs->ops->pread(fs->self, fd, buf, len, off, got);
    fs->ops->close(fs->self, fd);
    return rc;
}

static void started_cb(struct node *n, int status, void *ctx)
{
    (void)n;
    struct wnode *w = ctx;
    w->start_status = status;
}

static void fatal_cb(struct node *n, int code, void *ctx)
{
    (void)n;
    (void)code;
    struct wnode *w = ctx;
    w->fatal = true;
}

static void node_up(struct wnode *w, enum node_start_mode mode)
{
    w->cfg.mode = mode;
    w->fatal = false;
    int rc = node_create(&g_loop, &w->cfg, &w->node);
    if (rc == 0) {
        node_on_fatal(w->node, fatal_cb, w);
        rc = node_start(w->node, started_cb, w);
    }
    if (rc) {
        fprintf(stderr, "wsim: node %" PRIu64 " does not start: %s\n", w->id, st_strerror(rc));
        exit(2);
    }
    w->up = true;
    w->stopped = false;
}

static void stopped_cb(struct node *n, void *ctx)
{
    (void)n;
    struct wnode *w = ctx;
    w->stopped = true;
}

static void quiesce(void);

/* Stops the node, then loses what its disk had not synced (a power loss
 * right after the process died), and starts it again from the disk. */
static void node_crash_restart(struct wnode *w)
{
    w->up = false;
    node_stop(w->node, stopped_cb, w);
    while (!w->stopped)
        quiesce();
    node_destroy(w->node);
    w->node = NULL;
    st_fs_sim_crash(w->disk, ST_FS_SIM_LOSE_UNSYNCED, 0);
    w->crashes++;
    hash_u64(0xC0000000ull | w->id);
    node_up(w, NODE_START_RESTART);
}

static bool node_busy(const struct wnode *w)
{
    /* A node that stopped on a storage error completes nothing more; one
     * that is stopping is awaited by its stopped callback instead. */
    return w->node && w->up && !w->fatal &&
           (w->node->persist_inflight > 0 || w->node->bg_pending > 0);
}

/* Runs the loop until nothing is left to do at this instant: deferred
 * threadpool completions, WAL batches in the writer threads (awaited: the
 * outcome then never depends on how fast a thread ran). */
static void quiesce(void)
{
    for (int idle_passes = 0; idle_passes < 2;) {
        uv_run(&g_loop, UV_RUN_NOWAIT);
        bool did = work_drain();
        bool busy = false;
        for (int i = 1; i <= NODES; i++)
            busy |= node_busy(&g_nodes[i]);
        if (busy) {
            struct timespec ts = {0, 20000};
            syscall(SYS_nanosleep, &ts, NULL); /* a real wait for a writer thread */
            idle_passes = 0;
            continue;
        }
        idle_passes = did ? 0 : idle_passes + 1;
    }
}

/* -------------------------------------------------------------- clients */

enum op_kind { OP_PUT, OP_GET };
enum op_state { OP_PENDING, OP_OK, OP_FAIL };

struct op {
    enum op_kind kind;
    enum op_state state;
    int key;
    uint32_t client;
    uint64_t invoke_ms, complete_ms;
    uint64_t value_id; /* put: unique; get: what was read (0 = absent) */
    uint64_t version;  /* put: new version; get: version read (0 = absent) */
    int status;
    raft_id node;
};

static struct op *g_ops;
static size_t g_n_ops;

struct client {
    uint32_t id;
    bool busy;
    size_t op; /* index in g_ops while busy */
    uint64_t next_ms;
};
static struct client g_clients[CLIENTS];
static uint64_t g_next_value = 1;

static void key_name(int k, char *out)
{
    snprintf(out, 8, "k%d", k);
}

static void op_done(struct client *c, int status, uint64_t version, uint64_t value_id)
{
    struct op *o = &g_ops[c->op];
    o->complete_ms = wsim_now_ms();
    o->status = status;
    o->state = status == 0 || (o->kind == OP_GET && status == ST_ENOENT) ? OP_OK : OP_FAIL;
    if (o->state == OP_OK) {
        o->version = status == ST_ENOENT ? 0 : version;
        if (o->kind == OP_GET) o->value_id = status == ST_ENOENT ? 0 : value_id;
    }
    hash_u64(((uint64_t)c->op << 20) ^ ((uint64_t)(uint32_t)status << 8) ^ o->version);
    c->busy = false;
    c->next_ms = wsim_now_ms() + 1 + rnd_below(20);
}

static void put_cb(void *ctx, const struct node_write_result *res)
{
    op_done(ctx, res->status, res->version, 0);
}

static void get_cb(void *ctx, const struct node_read_result *res)
{
    uint64_t v = 0;
    if (res->status == 0) {
        char buf[32];
        size_t n = res->value_len < sizeof buf - 1 ? res->value_len : sizeof buf - 1;
        memcpy(buf, res->value, n);
        buf[n] = 0;
        v = strtoull(buf + 1, NULL, 10); /* "v<id>" */
    }
    op_done(ctx, res->status, res->version, v);
}

static void client_issue(struct client *c)
{
    if (g_n_ops == OPS_MAX) return;
    raft_id id = 1 + rnd_below(NODES);
    struct wnode *w = &g_nodes[id];
    struct op *o = &g_ops[g_n_ops];
    memset(o, 0, sizeof *o);
    o->kind = rnd_below(100) < 60 ? OP_PUT : OP_GET;
    o->key = (int)rnd_below(KEYS);
    o->client = c->id;
    o->invoke_ms = wsim_now_ms();
    o->node = id;
    o->state = OP_PENDING;
    c->op = g_n_ops++;
    c->busy = true;
    if (!w->up) {
        op_done(c, ST_ECONNECTION, 0, 0);
        return;
    }
    char key[8];
    key_name(o->key, key);
    int rc;
    if (o->kind == OP_PUT) {
        char val[32];
        o->value_id = g_next_value++;
        int vn = snprintf(val, sizeof val, "v%" PRIu64, o->value_id);
        struct node_put_args a = {.key = (const uint8_t *)key,
                                  .key_len = strlen(key),
                                  .value = (const uint8_t *)val,
                                  .value_len = (size_t)vn};
        rc = node_put(w->node, &a, put_cb, c);
    } else {
        rc =
            node_get(w->node, (const uint8_t *)key, strlen(key), NODE_READ_LINEARIZABLE, get_cb, c);
    }
    if (rc) op_done(c, rc, 0, 0);
}

/* ------------------------------------------------------------- faults */

static uint64_t g_fault_until;
/* Kinds 0-5 always; 6-9 (a full disk, failing syncs, no descriptors left, a
 * second crash right after a restart) with --more-faults only, so that a
 * seed of the default schedule keeps replaying the run it named when it was
 * recorded (tests/wsim/CMakeLists.txt). */
#define FAULT_KINDS_BASE 6
#define FAULT_KINDS 10
#define SIM_FDS_DEFAULT 256 /* the simulated disk's handle table (fs_sim.c) */
static uint32_t g_faults[FAULT_KINDS];
static bool g_more_faults;
static uint64_t g_crash_again_ms[NODES + 1]; /* kind 9: when, 0 = none */

static void heal(void)
{
    memset(g_link.cut, 0, sizeof g_link.cut);
    for (int i = 1; i <= NODES; i++) {
        if (!g_nodes[i].disk) continue;
        st_fs_sim_crash_at(g_nodes[i].disk, 0);
        st_fs_sim_set_quota(g_nodes[i].disk, UINT64_MAX);
        st_fs_sim_fail_syncs(g_nodes[i].disk, 0);
        st_fs_sim_set_fds_max(g_nodes[i].disk, SIM_FDS_DEFAULT);
    }
    g_link.loss_permille = 0;
    g_link.delay_min_ms = 1;
    g_link.delay_max_ms = 3;
}

static void fault_pick(void)
{
    heal();
    uint64_t kind = rnd_below(g_more_faults ? FAULT_KINDS : FAULT_KINDS_BASE);
    raft_id x = 1 + rnd_below(NODES), y = 1 + rnd_below(NODES);
    switch (kind) {
    case 0: /* one node alone */
        for (raft_id o = 1; o <= NODES; o++)
            g_link.cut[x][o] = g_link.cut[o][x] = true;
        break;
    case 1: /* one-way */
        if (x != y) g_link.cut[x][y] = true;
        break;
    case 2: /* loss */
        g_link.loss_permille = 50 + (uint32_t)rnd_below(250);
        break;
    case 3: /* delay and reordering */
        g_link.delay_min_ms = 1;
        g_link.delay_max_ms = 5 + (uint32_t)rnd_below(60);
        break;
    case 4: /* crash and restart */
        if (g_nodes[x].up) node_crash_restart(&g_nodes[x]);
        break;
    case 5: /* power loss at one of the next disk operations: every later
             * one fails, the node stops on the error, and restarts from
             * what was synced (node_fatal_restart) */
        st_fs_sim_crash_at(g_nodes[x].disk,
                           st_fs_sim_op_count(g_nodes[x].disk) + 1 + rnd_below(64));
        break;
    case 6: /* a full disk: no file may grow (writes into preallocated WAL
             * space still land; a new segment or snapshot cannot) */
        st_fs_sim_set_quota(g_nodes[x].disk, 0);
        break;
    case 7: /* the next syncs fail (EIO): the node must stop, never go on
             * as if the data were durable; it restarts from what was synced */
        st_fs_sim_fail_syncs(g_nodes[x].disk, 1 + (uint32_t)rnd_below(3));
        break;
    case 8: /* no descriptor left: opening a segment, a snapshot or the
             * directory fails with EMFILE */
        st_fs_sim_set_fds_max(g_nodes[x].disk, st_fs_sim_fds_open(g_nodes[x].disk));
        break;
    case 9: /* crash and restart, then crash again 5-60 ms into the new run:
             * the short run's writes are still in flight when the node
             * comes back a second time (request ids must not repeat) */
        if (g_nodes[x].up) {
            node_crash_restart(&g_nodes[x]);
            g_crash_again_ms[x] = wsim_now_ms() + 5 + rnd_below(56);
        }
        break;
    }
    g_faults[kind]++;
    hash_u64(0xFA000000ull | (kind << 8) | x);
    if (g_trace)
        printf("%" PRIu64 " ms: fault %s, node %" PRIu64 " (and %" PRIu64 ")\n", wsim_now_ms(),
               (const char *[]){"alone", "one-way", "loss", "delay", "crash", "power-loss",
                                "disk-full", "sync-fails", "no-fds", "double-crash"}[kind],
               x, y);
    g_fault_until = wsim_now_ms() + 100 + rnd_below(1500);
}

/* ------------------------------------------------------------- checks */

static int g_failures;
static uint64_t g_seed;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "wsim: seed %" PRIu64 ": ", g_seed);                                       \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        g_failures++;                                                                              \
    } while (0)

/* A put that failed with one of these was not applied, and never will be
 * (node.h): ST_ECANCELED (lost to a leadership change, decided once an
 * entry of the new term applied), ST_ENOTLEADER, ST_EBUSY, and the
 * simulator's ST_ECONNECTION (never sent). */
static bool put_surely_failed(const struct op *o)
{
    return o->kind == OP_PUT && o->state == OP_FAIL &&
           (o->status == ST_ECANCELED || o->status == ST_ENOTLEADER || o->status == ST_EBUSY ||
            o->status == ST_ECONNECTION);
}

static int check_history(void)
{
    int before = g_failures;
    /* Nothing reads a value whose put surely failed. */
    for (size_t i = 0; i < g_n_ops; i++) {
        struct op *r = &g_ops[i];
        if (r->kind != OP_GET || r->state != OP_OK || r->value_id == 0) continue;
        for (size_t j = 0; j < g_n_ops; j++)
            if (g_ops[j].kind == OP_PUT && g_ops[j].value_id == r->value_id &&
                put_surely_failed(&g_ops[j]))
                FAIL("key k%d: read op %zu (node %" PRIu64 ", %" PRIu64 "-%" PRIu64
                     " ms) returned v%" PRIu64 " at version %" PRIu64
                     " of put op %zu (node %" PRIu64 ", %" PRIu64 "-%" PRIu64
                     " ms), which failed with %s (not applied)",
                     r->key, i, r->node, r->invoke_ms, r->complete_ms, r->value_id, r->version, j,
                     g_ops[j].node, g_ops[j].invoke_ms, g_ops[j].complete_ms,
                     st_strerror(g_ops[j].status));
    }
    for (int k = 0; k < KEYS; k++) {
        /* A value is written by one put; the version it was seen at must
         * be one version (no put applied twice). */
        for (size_t i = 0; i < g_n_ops; i++) {
            struct op *r = &g_ops[i];
            if (r->key != k || r->state != OP_OK) continue;
            uint64_t vid = r->value_id, ver = r->version;
            if (vid == 0) continue;
            for (size_t j = 0; j < g_n_ops; j++) {
                struct op *o = &g_ops[j];
                if (o->key != k || o->state != OP_OK || o->value_id != vid) continue;
                if (o->version != ver)
                    FAIL("key k%d: value v%" PRIu64 " seen at versions %" PRIu64 " and %" PRIu64
                         " (applied twice?)",
                         k, vid, ver, o->version);
            }
        }
        /* Reads: never older than a put acknowledged before they began. */
        for (size_t i = 0; i < g_n_ops; i++) {
            struct op *r = &g_ops[i];
            if (r->key != k || r->kind != OP_GET || r->state != OP_OK) continue;
            for (size_t j = 0; j < g_n_ops; j++) {
                struct op *w = &g_ops[j];
                if (w->key != k || w->kind != OP_PUT || w->state != OP_OK) continue;
                if (w->complete_ms < r->invoke_ms && w->version > r->version)
                    FAIL("key k%d: read (op %zu, %" PRIu64 "-%" PRIu64 " ms, node %" PRIu64
                         ") returned version %" PRIu64 ", but put op %zu was acknowledged at "
                         "version %" PRIu64 " at %" PRIu64 " ms (stale read)",
                         k, i, r->invoke_ms, r->complete_ms, r->node, r->version, j, w->version,
                         w->complete_ms);
            }
        }
    }
    return g_failures - before;
}

struct final_read {
    bool done;
    int status;
    uint64_t version, value_id;
};

static void final_cb(void *ctx, const struct node_read_result *res)
{
    struct final_read *f = ctx;
    f->done = true;
    f->status = res->status;
    f->version = res->version;
    if (res->status == 0) {
        char buf[32];
        size_t n = res->value_len < sizeof buf - 1 ? res->value_len : sizeof buf - 1;
        memcpy(buf, res->value, n);
        buf[n] = 0;
        f->value_id = strtoull(buf + 1, NULL, 10);
    }
}

static void step(void);

static void check_final(void)
{
    /* Every node converges: equal applied index and state digest. */
    uint64_t dig[NODES + 1];
    raft_index applied[NODES + 1];
    bool same = false;
    for (int t = 0; t < 20000 && !same; t++) {
        step();
        same = true;
        for (int i = 1; i <= NODES; i++) {
            dig[i] = node_state_digest(g_nodes[i].node, &applied[i]);
            if (applied[i] != applied[1] ||
                g_nodes[i].node->applied < raft_commit_index(g_nodes[i].node->raft))
                same = false;
        }
    }
    (void)dig;
    if (!same) {
        FAIL("replicas did not converge after healing: applied %" PRIu64 " %" PRIu64 " %" PRIu64,
             applied[1], applied[2], applied[3]);
        return;
    }
    for (int i = 2; i <= NODES; i++)
        if (dig[i] != dig[1])
            FAIL("state digests differ at applied index %" PRIu64 ": node 1 %016" PRIx64
                 ", node %d %016" PRIx64,
                 applied[1], dig[1], i, dig[i]);
    hash_u64(applied[1]);
    hash_u64(dig[1]);
    /* No acknowledged write lost: the final version of each key is at least
     * that of every acknowledged put, and an acknowledged put at exactly the
     * final version wrote the final value. */
    for (int k = 0; k < KEYS; k++) {
        struct final_read f = {0};
        char key[8];
        key_name(k, key);
        if (node_get(g_nodes[1].node, (const uint8_t *)key, strlen(key), NODE_READ_STALE, final_cb,
                     &f) != 0 ||
            !f.done) {
            FAIL("final read of k%d failed", k);
            continue;
        }
        uint64_t fv = f.status == 0 ? f.version : 0;
        for (size_t j = 0; j < g_n_ops; j++)
            if (f.status == 0 && g_ops[j].value_id == f.value_id && put_surely_failed(&g_ops[j]))
                FAIL("key k%d: final value v%" PRIu64 " is from put op %zu, which failed with %s",
                     k, f.value_id, j, st_strerror(g_ops[j].status));
        for (size_t j = 0; j < g_n_ops; j++) {
            struct op *w = &g_ops[j];
            if (w->key != k || w->kind != OP_PUT || w->state != OP_OK) continue;
            if (w->version > fv)
                FAIL("key k%d: put op %zu acknowledged at version %" PRIu64
                     " is lost (final version %" PRIu64 ")",
                     k, j, w->version, fv);
            if (w->version == fv && w->value_id != f.value_id)
                FAIL("key k%d: final version %" PRIu64 " holds v%" PRIu64
                     ", but put op %zu wrote v%" PRIu64 " there",
                     k, fv, f.value_id, j, w->value_id);
        }
    }
}

/* ------------------------------------------------------------- the run */

static void step(void)
{
    g_now_ns += 1000000u;
    sim_net_step();
    quiesce();
    for (int i = 1; i <= NODES; i++) {
        if (g_nodes[i].fatal && g_nodes[i].up) node_crash_restart(&g_nodes[i]);
        if (g_crash_again_ms[i] && wsim_now_ms() >= g_crash_again_ms[i]) {
            g_crash_again_ms[i] = 0;
            if (g_nodes[i].up) node_crash_restart(&g_nodes[i]);
        }
    }
}

static uint64_t g_sim_ms = 20000, g_quiet_ms = 5000;

static int run(uint64_t seed)
{
    g_seed = seed;
    g_rng = seed * 0x2545F4914F6CDD1Dull + 1;
    g_hash = 0xcbf29ce484222325ull;
    g_now_ns = 0;
    g_n_ops = 0;
    g_next_value = 1;
    g_failures = 0;
    memset(g_faults, 0, sizeof g_faults);
    memset(g_crash_again_ms, 0, sizeof g_crash_again_ms);
    heal();
    ST_ASSERT(uv_loop_init(&g_loop) == 0);
    for (raft_id i = 1; i <= NODES; i++) {
        struct wnode *w = &g_nodes[i];
        memset(w, 0, sizeof *w);
        w->id = i;
        ST_ASSERT(st_fs_sim_create(&w->disk) == 0);
        node_config_default(&w->cfg);
        w->cfg.id = i;
        snprintf(w->cfg.data_dir, sizeof w->cfg.data_dir, "/data");
        snprintf(w->cfg.raft_listen, sizeof w->cfg.raft_listen, "10.0.0.%" PRIu64 ":7000", i);
        snprintf(w->cfg.http_listen, sizeof w->cfg.http_listen, "10.0.0.%" PRIu64 ":8000", i);
        w->cfg.fs = st_fs_sim_fs(w->disk);
        w->cfg.wal_inline_always = true;
        /* Small segments: more segment rolls, and a disk that stays small
         * (the simulated disk holds every byte in memory twice). */
        w->cfg.max_value_bytes = 64u << 10;
        w->cfg.wal_segment_bytes = 1u << 20;
        w->cfg.tick_ms = 10;
        w->cfg.election_ticks = 20;
        w->cfg.heartbeat_ticks = 2;
        w->cfg.request_timeout_ms = 3000;
        w->cfg.snapshot_threshold = 64 + rnd_below(256);
        w->cfg.seed = seed * 7919 + i;
        w->cfg.n_peers = NODES;
        for (raft_id p = 1; p <= NODES; p++) {
            w->cfg.peers[p - 1].id = p;
            snprintf(w->cfg.peers[p - 1].raft, sizeof w->cfg.peers[p - 1].raft,
                     "10.0.0.%" PRIu64 ":7000", p);
            snprintf(w->cfg.peers[p - 1].http, sizeof w->cfg.peers[p - 1].http,
                     "10.0.0.%" PRIu64 ":8000", p);
        }
        char err[200];
        if (node_config_validate(&w->cfg, err, sizeof err) != 0) {
            fprintf(stderr, "wsim: config: %s\n", err);
            exit(2);
        }
    }
    for (raft_id i = 1; i <= NODES; i++)
        node_up(&g_nodes[i], NODE_START_PEERS);
    for (uint32_t c = 0; c < CLIENTS; c++)
        g_clients[c] = (struct client){.id = c, .next_ms = 50 + rnd_below(100)};
    g_fault_until = 1000;
    /* Faults, then healed, then quiet. */
    uint64_t end = g_sim_ms + g_quiet_ms;
    uint64_t acked_quiet = 0;
    for (uint64_t t = 0; t < end; t++) {
        uint64_t now = wsim_now_ms();
        if (now < g_sim_ms && now >= g_fault_until) fault_pick();
        if (now == g_sim_ms) heal();
        for (uint32_t c = 0; c < CLIENTS; c++) {
            struct client *cl = &g_clients[c];
            if (!cl->busy && now >= cl->next_ms) client_issue(cl);
        }
        step();
    }
    for (size_t i = 0; i < g_n_ops; i++)
        if (g_ops[i].kind == OP_PUT && g_ops[i].state == OP_OK &&
            g_ops[i].invoke_ms >= g_sim_ms + g_quiet_ms / 2)
            acked_quiet++;
    if (acked_quiet == 0) FAIL("no write succeeded in the second half of the quiet period");
    /* Pending ops complete (or time out) before the checks. */
    for (int t = 0; t < 10000; t++) {
        bool pending = false;
        for (uint32_t c = 0; c < CLIENTS; c++)
            pending |= g_clients[c].busy;
        if (!pending) break;
        step();
    }
    check_final();
    check_history();
    size_t ok = 0;
    for (size_t i = 0; i < g_n_ops; i++)
        ok += g_ops[i].state == OP_OK;
    if (g_trace || g_failures)
        printf("seed %" PRIu64
               ": %zu ops (%zu ok), faults: alone %u, one-way %u, loss %u, delay %u,"
               " crash %u, power loss %u, disk full %u, sync fails %u, no fds %u, double crash %u;"
               " restarts %u;"
               " trace %016" PRIx64 "%s\n",
               seed, g_n_ops, ok, g_faults[0], g_faults[1], g_faults[2], g_faults[3], g_faults[4],
               g_faults[5], g_faults[6], g_faults[7], g_faults[8], g_faults[9],
               g_nodes[1].crashes + g_nodes[2].crashes + g_nodes[3].crashes, g_hash,
               g_failures ? " FAILED" : "");
    /* Tear down. */
    for (raft_id i = 1; i <= NODES; i++) {
        struct wnode *w = &g_nodes[i];
        w->up = false;
        node_stop(w->node, stopped_cb, w);
        while (!w->stopped)
            quiesce();
        node_destroy(w->node);
        w->node = NULL;
    }
    quiesce();
    sim_net_close();
    uv_run(&g_loop, UV_RUN_DEFAULT);
    ST_ASSERT(uv_loop_close(&g_loop) == 0);
    for (raft_id i = 1; i <= NODES; i++) {
        st_fs_sim_destroy(g_nodes[i].disk);
        g_nodes[i].disk = NULL;
    }
    return g_failures;
}

int main(int argc, char **argv)
{
    uint64_t first = 1, n = 1;
    bool check_determinism = false, stop_at_first = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            first = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seeds") && i + 1 < argc)
            n = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--ms") && i + 1 < argc)
            g_sim_ms = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--quiet-ms") && i + 1 < argc)
            g_quiet_ms = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--trace"))
            g_trace = true;
        else if (!strcmp(argv[i], "--determinism"))
            check_determinism = true;
        else if (!strcmp(argv[i], "--stop-at-first"))
            stop_at_first = true;
        else if (!strcmp(argv[i], "--more-faults"))
            g_more_faults = true;
        else {
            fprintf(stderr, "usage: wsim [--seed S] [--seeds N] [--ms SIM_MS] [--quiet-ms MS] "
                            "[--trace] [--determinism] [--stop-at-first] [--more-faults]\n");
            return 2;
        }
    }
    st_trace_set_level(getenv("STCACHE_TEST_TRACE") ? ST_TRACE_DEBUG : ST_TRACE_OFF);
    if (getenv("ST_SANITIZED") && n > 5) {
        n /= 5;
        printf("wsim: sanitizer build: %" PRIu64 " seeds\n", n);
    }
    g_ops = calloc(OPS_MAX, sizeof *g_ops);
    if (!g_ops) return 2;
    int failed = 0;
    for (uint64_t s = first; s < first + n; s++) {
        int f = run(s);
        if (check_determinism && !f) {
            uint64_t h1 = g_hash;
            f = run(s);
            if (!f && g_hash != h1) {
                fprintf(stderr,
                        "wsim: seed %" PRIu64 ": not deterministic (%016" PRIx64 " then %016" PRIx64
                        ")\n",
                        s, h1, g_hash);
                f = 1;
            }
        }
        if (f) {
            failed++;
            fprintf(stderr,
                    "wsim: replay: %s --seed %" PRIu64 " --ms %" PRIu64 " --quiet-ms %" PRIu64
                    "%s --trace\n",
                    argv[0], s, g_sim_ms, g_quiet_ms, g_more_faults ? " --more-faults" : "");
            if (stop_at_first) {
                n = s - first + 1;
                break;
            }
        }
    }
    printf("wsim: %" PRIu64 " seeds from %" PRIu64 ", %d failed\n", n, first, failed);
    free(g_ops);
    return failed ? 1 : 0;
}
