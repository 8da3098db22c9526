/* The whole-server simulator: see wsim.h for the seams, docs/TESTING.md for
 * what it checks and how to replay a seed.
 *
 *   wsim [--seeds N] [--seed S] [--ms SIM_MS] [--quiet-ms MS] [--trace] [--more-faults]
 *        [--membership] [--clock-faults] [--lose-reads PERMILLE]
 *
 * One run: 3 nodes started with static peers, each on its own simulated disk;
 * clients that put unique values and read linearizably through the node
 * request API (node.h), each to a node of its choice; a seeded fault schedule
 * (partitions of one node, one-way cuts, loss and delay, a crash that loses
 * every unsynced write, followed by a restart from the disk; with
 * --more-faults also a full disk, failing syncs and exhausted descriptors on
 * one node, and a second crash soon after a restart; with --membership
 * also membership changes through the admin API: a voter removed, wiped and
 * joining again, node 4 or 5 added and removed, leadership transfers; with
 * --clock-faults each node's wall clock skewed or jumping by minutes, and
 * two more keys whose puts all carry a TTL); then every fault heals
 * and a quiet period follows. Checked:
 *   - no acknowledged write is lost: every acknowledged put is visible in the
 *     final state or overwritten by a write with a later version;
 *   - linearizable reads: a read never returns a version older than a put
 *     acknowledged before the read began, and what it returns is a value
 *     some put wrote at that version;
 *   - no write applied twice: a value is seen at one version only;
 *   - TTL keys (--clock-faults), by the log clock: a value is read with one
 *     expiry wherever it is read, a read never returns a key expired by the
 *     log clock it was served at, and a key is absent only if a put on it
 *     may have expired by then;
 *   - replicas are byte-identical at equal applied indexes (state digest;
 *     with --membership, the members of the final configuration);
 *   - liveness: once healed, every node converges and writes succeed; with
 *     --lose-reads (ReadIndex requests and answers lost throughout), every
 *     read in the second half of the quiet period succeeds.
 * A failure prints the seed and the command that replays it; a run is a pure
 * function of its seed (the determinism check runs one seed twice, or
 * --repeat N times, and compares the trace hashes and history digests). */
#include "wsim.h"

#include "http/client.h"
#include "node/node.h"
#include "node/node_int.h"
#include "util/json.h"
#include "util/membuf.h"
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

#define NODES 3              /* the voters a run starts with */
#define SLOTS WSIM_NODES_MAX /* node ids a run may use (4 and 5: --membership) */
#define KEYS 6
#define KEYS_TTL 2 /* with --clock-faults: keys k6 and k7, every put with a TTL */
#define CLIENTS 6
#define OPS_MAX 200000
#define SIM_MONO_BASE_NS 1000000000000ull       /* the monotonic clock at ms 0 */
#define SIM_WALL_BASE_NS 1796601600000000000ull /* 2026-12-01T00:00:00Z */

/* ------------------------------------------------------------ the clock */

static volatile uint64_t g_now_ns;
/* The node whose code runs now on this thread (0: none, or a writer
 * thread), set around each node's loop turn and each call into a node, and
 * each node's CLOCK_REALTIME offset (clock faults; 0 without them). */
static _Thread_local raft_id g_cur;
static int64_t g_wall_off_ms[WSIM_NODES_MAX + 1];

raft_id wsim_current_set(raft_id id)
{
    raft_id prev = g_cur;
    g_cur = id;
    return prev;
}

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
        ns = SIM_WALL_BASE_NS + g_now_ns + (uint64_t)(g_wall_off_ms[g_cur] * 1000000);
        break;
    case CLOCK_THREAD_CPUTIME_ID:
    case CLOCK_PROCESS_CPUTIME_ID:
        /* Simulated too: the node reads its thread's CPU clock every loop
         * iteration (loop_busy_observe), and as a real system call it was
         * half of a seed's run time. */
        ns = g_now_ns;
        break;
    default:
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
    raft_id node[WORK_MAX]; /* whose work: its completion runs as that node */
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
    g_work.node[i] = g_cur;
    return 0;
}

/* Runs deferred completions in order; true if any ran. */
static bool work_drain(void)
{
    bool any = false;
    while (g_work.n) {
        uv_work_t *req = g_work.req[g_work.head];
        uv_after_work_cb cb = g_work.after[g_work.head];
        raft_id prev = wsim_current_set(g_work.node[g_work.head]);
        g_work.head = (g_work.head + 1) % WORK_MAX;
        g_work.n--;
        if (cb) cb(req, 0);
        wsim_current_set(prev);
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
    bool cut[SLOTS + 1][SLOTS + 1]; /* a -> b down */
    uint32_t loss_permille;
    uint32_t delay_min_ms, delay_max_ms;
} g_link;

bool wsim_link_up(raft_id a, raft_id b)
{
    return a <= SLOTS && b <= SLOTS && !g_link.cut[a][b];
}

bool wsim_link_send(raft_id a, raft_id b, uint64_t *delay_ms)
{
    if (!wsim_link_up(a, b)) return false;
    if (g_link.loss_permille && rnd_below(1000) < g_link.loss_permille) return false;
    *delay_ms = g_link.delay_min_ms + rnd_below(g_link.delay_max_ms - g_link.delay_min_ms + 1);
    return true;
}

/* --lose-reads PERMILLE: ReadIndex requests and answers lost at this rate
 * throughout the run, quiet period included, where every read must still
 * succeed (a read whose round was lost is retried in a new one). Off by
 * default: no draw from the generator, so the other seeds keep their runs. */
static uint32_t g_lose_reads_permille;

bool wsim_lose_read_msg(void)
{
    return g_lose_reads_permille && rnd_below(1000) < g_lose_reads_permille;
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
    bool fatal;  /* the node stopped on a storage error (a simulated power loss) */
    bool joiner; /* started with --join (a wiped node, or node 4 or 5) */
    /* The start failed on its disk (a full disk, failing syncs, no
     * descriptors: opening may write, see st_storage_open): started again
     * at this time, as a supervisor restarts a process that exited. */
    uint64_t start_again_ms;
    enum node_start_mode start_mode;
};

/* One loop for every node; with --membership or --clock-faults one loop
 * per node (g_loops[id]), run in turn with g_cur set, so that each node
 * reads its own wall clock (a different interleaving from the shared
 * loop's: the seeds of the default schedule keep their runs). */
static uv_loop_t g_loop;
static uv_loop_t g_loops[SLOTS + 1];
static bool g_own_loops;
static struct wnode g_nodes[SLOTS + 1];
/* Node ids clients and faults pick from: NODES, or SLOTS with --membership. */
static raft_id g_slots = NODES;

static uv_loop_t *loop_of(raft_id id)
{
    return g_own_loops ? &g_loops[id] : &g_loop;
}
static bool g_trace;

int wsim_read_file(raft_id id, const char *path, uint64_t off, void *buf, size_t len, size_t *got)
{
    if (id == 0 || id > SLOTS || !g_nodes[id].disk) return ST_ENOENT;
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

static void node_down(struct wnode *w);

static void node_up(struct wnode *w, enum node_start_mode mode)
{
    w->cfg.mode = mode;
    w->fatal = false;
    w->start_status = 1; /* pending */
    raft_id prev = wsim_current_set(w->id);
    int rc = node_create(loop_of(w->id), &w->cfg, &w->node);
    if (rc == 0) {
        node_on_fatal(w->node, fatal_cb, w);
        rc = node_start(w->node, started_cb, w);
    }
    wsim_current_set(prev);
    if (rc == ST_EFATAL || rc == ST_EIO || rc == ST_ENOSPC || rc == ST_ENFILE) {
        node_down(w); /* stopped (its handles closed), then destroyed */
        w->start_again_ms = wsim_now_ms() + 100;
        w->start_mode = mode;
        hash_u64(0xD0000000ull | w->id);
        return;
    }
    if (rc) {
        fprintf(stderr, "wsim: node %" PRIu64 " does not start: %s\n", w->id, st_strerror(rc));
        exit(2);
    }
    w->start_again_ms = 0;
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
/* What every node did, summed over its runs (node_down): with the ops'
 * timing, the history digest that --trace prints. */
static uint64_t g_node_work[5];

static void node_down(struct wnode *w)
{
    w->up = false;
    if (!w->node) return;
    struct st_tr_stats ts = {0};
    if (w->node->tr) st_tr_stats_get(w->node->tr, &ts);
    g_node_work[0] += w->node->m.readies;
    g_node_work[1] += w->node->m.write_batches;
    g_node_work[2] += w->node->m.entries_applied;
    g_node_work[3] += ts.msgs_sent;
    g_node_work[4] += ts.msgs_received;
    w->up = false;
    raft_id prev = wsim_current_set(w->id);
    node_stop(w->node, stopped_cb, w);
    wsim_current_set(prev);
    while (!w->stopped)
        quiesce();
    node_destroy(w->node);
    w->node = NULL;
}

static void node_crash_restart(struct wnode *w)
{
    node_down(w);
    st_fs_sim_crash(w->disk, ST_FS_SIM_LOSE_UNSYNCED, 0);
    w->crashes++;
    hash_u64(0xC0000000ull | w->id);
    /* A joiner restarts with its flags (--join): an empty directory asks
     * again, one that holds the node restarts from it. */
    node_up(w, w->joiner ? NODE_START_JOIN : NODE_START_RESTART);
}

static bool node_busy(const struct wnode *w)
{
    /* A node that stopped on a storage error completes nothing more; one
     * that is stopping is awaited by its stopped callback instead. */
    return w->node && w->up && !w->fatal &&
           (w->node->persist_inflight > 0 || w->node->bg_pending > 0);
}

/* Whether one iteration of loop, whose nodes are first..last, would change
 * nothing now: no timer due at this instant, no idle handle, pending
 * callback or closing handle (uv_backend_timeout), and no node with work
 * for its prepare and check callbacks (node_has_work) or a batch in a
 * writer thread (node_busy: its I/O, the thread's wake-up, is the only
 * I/O there is). Such an
 * iteration would only read the clock and record loop metrics: skipping
 * it changes no run (the history digest of --trace is the same) and was
 * most of a seed's CPU time, as most steps of most loops have nothing to
 * do. */
static bool loop_idle(uv_loop_t *loop, raft_id first, raft_id last)
{
    if (!uv_loop_alive(loop)) return true; /* uv_run would only read the clock */
    int t = uv_backend_timeout(loop);
    if (t == 0) return false;
    uint64_t now_ms = (SIM_MONO_BASE_NS + g_now_ns) / 1000000u;
    if (t > 0 && uv_now(loop) + (uint64_t)t <= now_ms) return false;
    for (raft_id i = first; i <= last; i++) {
        const struct wnode *w = &g_nodes[i];
        if (w->node && (node_busy(w) || node_has_work(w->node))) return false;
    }
    return true;
}

/* One iteration of loop, or only its clock if it has nothing to do (timers
 * started between iterations count from the loop's clock); true if it ran. */
static bool loop_turn(uv_loop_t *loop, raft_id first, raft_id last)
{
    if (loop_idle(loop, first, last)) {
        uv_update_time(loop);
        return false;
    }
    uv_run(loop, UV_RUN_NOWAIT);
    return true;
}

/* Runs the loop until nothing is left to do at this instant: deferred
 * threadpool completions, WAL batches in the writer threads (awaited: the
 * outcome then never depends on how fast a thread ran). */
static void quiesce(void)
{
    for (int idle_passes = 0; idle_passes < 2;) {
        bool ran = false;
        if (g_own_loops) {
            for (raft_id i = 1; i <= SLOTS; i++) {
                raft_id prev = wsim_current_set(i);
                ran |= loop_turn(&g_loops[i], i, i);
                wsim_current_set(prev);
            }
        } else {
            ran = loop_turn(&g_loop, 1, SLOTS);
        }
        bool did = work_drain();
        bool busy = false;
        for (int i = 1; i <= SLOTS; i++)
            busy |= node_busy(&g_nodes[i]);
        if (busy) {
            struct timespec ts = {0, 20000};
            syscall(SYS_nanosleep, &ts, NULL); /* a real wait for a writer thread */
            idle_passes = 0;
            continue;
        }
        if (!ran && !did) break; /* the next pass would skip every loop too */
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
    uint64_t ttl_ms;    /* put: its TTL (TTL keys only) */
    uint64_t expire_ms; /* get: the expiry read (0 = none) */
    /* The log clock of the node asked: put, at the invocation (a lower
     * bound of the clock its entry applies at: it goes after every entry
     * applied anywhere then); get, when it was served (what its expiry
     * was judged by). */
    uint64_t log_ms;
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
static int g_keys = KEYS; /* KEYS + KEYS_TTL with --clock-faults */
static uint64_t g_next_value = 1;

static void key_name(int k, char *out)
{
    snprintf(out, 8, "k%u", (unsigned)(uint8_t)k); /* k < KEYS + KEYS_TTL */
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
    struct client *c = ctx;
    struct op *o = &g_ops[c->op];
    const struct wnode *w = &g_nodes[o->node];
    o->log_ms = w->node ? node_log_clock_ms(w->node) : 0;
    o->expire_ms = res->status == 0 ? res->expire_at_ms : 0;
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
    raft_id id = 1 + rnd_below(g_slots);
    struct wnode *w = &g_nodes[id];
    struct op *o = &g_ops[g_n_ops];
    memset(o, 0, sizeof *o);
    o->kind = rnd_below(100) < 60 ? OP_PUT : OP_GET;
    o->key = (int)rnd_below(g_keys);
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
    raft_id prev = wsim_current_set(id);
    o->log_ms = node_log_clock_ms(w->node);
    if (o->kind == OP_PUT && o->key >= KEYS) o->ttl_ms = 50 + rnd_below(5000);
    if (o->kind == OP_PUT) {
        char val[32];
        o->value_id = g_next_value++;
        int vn = snprintf(val, sizeof val, "v%" PRIu64, o->value_id);
        struct node_put_args a = {.key = (const uint8_t *)key,
                                  .key_len = strlen(key),
                                  .value = (const uint8_t *)val,
                                  .value_len = (size_t)vn,
                                  .ttl_ms = o->ttl_ms};
        rc = node_put(w->node, &a, put_cb, c);
    } else {
        rc =
            node_get(w->node, (const uint8_t *)key, strlen(key), NODE_READ_LINEARIZABLE, get_cb, c);
    }
    wsim_current_set(prev);
    if (rc) op_done(c, rc, 0, 0);
}

/* ------------------------------------------------------------- faults */

static uint64_t g_fault_until;
/* Kinds 0-5 always; 6-9 (a full disk, failing syncs, no descriptors left, a
 * second crash right after a restart) with --more-faults only, so that a
 * seed of the default schedule keeps replaying the run it named when it was
 * recorded (tests/wsim/CMakeLists.txt). */
#define FAULT_KINDS_BASE 6
#define FAULT_KINDS_MORE 10
/* 10-11 (a node's wall clock skewed, or jumping) with --clock-faults; 12-15
 * (remove a voter, wipe it and let it rejoin; add node 4 or 5; remove it;
 * transfer the leadership) with --membership. */
#define FAULT_KINDS 16
#define WALL_SKEW_MS_MAX 300000          /* +-5 minutes */
#define WALL_JUMP_MS_MAX 600000          /* +-10 minutes at a time */
#define WALL_OFFSET_MS_MAX (3600 * 1000) /* never more than an hour off */
static const char *const g_fault_names[FAULT_KINDS] = {
    "alone",     "one-way",    "loss",        "delay",        "crash",      "power-loss",
    "disk-full", "sync-fails", "no-fds",      "double-crash", "clock-skew", "clock-jump",
    "rejoin",    "add-node",   "remove-node", "transfer"};
static uint64_t g_faults_total[FAULT_KINDS]; /* over every seed of this invocation */
#define SIM_FDS_DEFAULT 256                  /* the simulated disk's handle table (fs_sim.c) */
static uint32_t g_faults[FAULT_KINDS];
static bool g_more_faults;
static uint64_t g_crash_again_ms[SLOTS + 1]; /* kind 9: when, 0 = none */

/* ------------------------------------------- membership: the client port */

/* A joiner's POST /cluster/members (node_join.c) goes through
 * http_client_request_tls(), which this file defines (so http/client.c is
 * not linked in): the request reaches the member at addr after the link's
 * delay (ST_ECONNECTION if the link or the member is down), which calls
 * what the API's route calls, node_member_add_learner(), proxied to its
 * leader as a follower's API proxies it (503 without one), and answers as
 * the API's admin_done_cb does: the cluster id and the members. */
#define HTTP_REQS_MAX 8

struct http_client {
    bool used;
    bool aborted;     /* the joiner stopped: no callback */
    bool at_member;   /* waiting for the member's admin callback */
    bool answered;    /* the answer is on its way back, due at at_ms */
    raft_id from, to; /* the joiner, the member that answers */
    uint64_t at_ms;
    char body[256];
    size_t body_len;
    http_client_cb cb;
    void *ctx;
    int status; /* HTTP status, or < 0 */
    struct st_membuf reply;
};
static struct http_client g_http[HTTP_REQS_MAX];

static raft_id http_addr_node(const char *addr)
{
    static const char prefix[] = "10.0.0.";
    if (strncmp(addr, prefix, sizeof prefix - 1) != 0) return RAFT_NONE;
    char *end = NULL;
    unsigned long id = strtoul(addr + sizeof prefix - 1, &end, 10);
    if (id == 0 || id > SLOTS || strcmp(end, ":8000") != 0) return RAFT_NONE;
    return id;
}

int http_client_request_tls(struct st_tls_ctx *tls, uv_loop_t *loop, const char *addr,
                            const char *method, const char *path, const char *content_type,
                            const char *extra_headers, const void *body, size_t body_len,
                            uint32_t timeout_ms, http_client_cb cb, void *ctx,
                            struct http_client **out)
{
    (void)tls;
    (void)loop;
    (void)content_type;
    (void)extra_headers;
    (void)timeout_ms;
    raft_id to = http_addr_node(addr);
    if (!to || strcmp(method, "POST") != 0 || strcmp(path, "/cluster/members") != 0 ||
        body_len >= sizeof g_http[0].body)
        return ST_EINVAL;
    for (size_t i = 0; i < HTTP_REQS_MAX; i++) {
        struct http_client *c = &g_http[i];
        if (c->used) continue;
        st_membuf_reset(&c->reply);
        c->used = true;
        c->aborted = c->at_member = c->answered = false;
        c->from = g_cur;
        c->to = to;
        c->at_ms = wsim_now_ms() + 1 + rnd_below(5);
        memcpy(c->body, body, body_len);
        c->body_len = body_len;
        c->cb = cb;
        c->ctx = ctx;
        if (out) *out = c;
        return 0;
    }
    return ST_ENOMEM;
}

void http_client_abort(struct http_client *c)
{
    c->aborted = true;
    if (!c->at_member) c->used = false;
}

static void http_answer(struct http_client *c, int status)
{
    c->at_member = false;
    c->answered = true;
    c->status = status;
    c->at_ms = wsim_now_ms() + 1 + rnd_below(5);
    if (c->aborted) c->used = false;
}

/* ST_E* -> what the API's respond_code answers (>= 500: the joiner retries). */
static int http_status_of(int rc)
{
    switch (rc) {
    case ST_EINVAL:
        return 400;
    case ST_ENOENT:
        return 404;
    case ST_EEXIST:
        return 409;
    case ST_ENOSPC:
        return 507;
    case ST_EIO:
        return 500;
    default:
        return 503;
    }
}

static void http_admin_cb(void *ctx, const struct node_admin_result *res)
{
    struct http_client *c = ctx;
    if (res->status != 0 || c->aborted) {
        http_answer(c, http_status_of(res->status));
        return;
    }
    struct node_info info;
    node_info_get(g_nodes[c->to].node, &info);
    struct st_json w;
    st_json_init(&w, &c->reply);
    st_json_object_begin(&w);
    char cid[32];
    snprintf(cid, sizeof cid, "%016" PRIx64, res->cluster_id);
    st_json_key(&w, "cluster_id");
    st_json_cstr(&w, cid);
    st_json_key(&w, "members");
    st_json_array_begin(&w);
    for (uint32_t i = 0; i < info.n_members; i++) {
        st_json_object_begin(&w);
        st_json_key(&w, "id");
        st_json_uint(&w, info.members[i].id);
        st_json_key(&w, "raft");
        st_json_cstr(&w, info.members[i].raft);
        st_json_key(&w, "http");
        st_json_cstr(&w, info.members[i].http);
        st_json_object_end(&w);
    }
    st_json_array_end(&w);
    st_json_object_end(&w);
    http_answer(c, st_json_finish(&w) == 0 ? 200 : 500);
}

/* The request arrives at the member c->to. */
static void http_arrive(struct http_client *c)
{
    const struct wnode *m = &g_nodes[c->to];
    if (!m->up || !m->node || !wsim_link_up(c->from, c->to) || !wsim_link_up(c->to, c->from)) {
        http_answer(c, ST_ECONNECTION);
        return;
    }
    struct st_jsonr_span doc = {c->body, c->body_len}, v;
    uint64_t id = 0;
    char raft_addr[NODE_ADDR_MAX] = "", http_addr[NODE_ADDR_MAX] = "";
    if (st_jsonr_validate(c->body, c->body_len) != 0 || !st_jsonr_get(doc, "id", &v) ||
        st_jsonr_uint(v, &id) != 0 || !st_jsonr_get(doc, "raft", &v) ||
        st_jsonr_string(v, raft_addr, sizeof raft_addr) != 0 || !st_jsonr_get(doc, "http", &v) ||
        st_jsonr_string(v, http_addr, sizeof http_addr) != 0) {
        http_answer(c, 400);
        return;
    }
    /* A follower proxies to its leader (api.c, proxy_to_leader). */
    struct node_info info;
    node_info_get(m->node, &info);
    if (info.role != RAFT_LEADER) {
        raft_id l = info.leader;
        if (l == RAFT_NONE || l > SLOTS || !g_nodes[l].up || !g_nodes[l].node ||
            !wsim_link_up(c->to, l) || !wsim_link_up(l, c->to)) {
            http_answer(c, 503);
            return;
        }
        c->to = l;
    }
    c->at_member = true;
    raft_id prev = wsim_current_set(c->to);
    int rc =
        node_member_add_learner(g_nodes[c->to].node, id, raft_addr, http_addr, http_admin_cb, c);
    wsim_current_set(prev);
    if (rc) http_answer(c, http_status_of(rc));
}

static void http_step(void)
{
    for (size_t i = 0; i < HTTP_REQS_MAX; i++) {
        struct http_client *c = &g_http[i];
        if (!c->used || c->at_member || wsim_now_ms() < c->at_ms) continue;
        if (!c->answered) {
            http_arrive(c);
            continue;
        }
        c->used = false;
        if (c->aborted) continue;
        int status = c->status;
        if (status > 0 && (!wsim_link_up(c->to, c->from) || !g_nodes[c->from].up))
            status = ST_ECONNECTION;
        raft_id prev = wsim_current_set(c->from);
        c->cb(c->ctx, status, c->reply.data ? c->reply.data : "", c->reply.len, "", 0);
        wsim_current_set(prev);
    }
}

/* ---------------------------------------------- membership: the operator */

/* One membership change at a time, as an operator makes them, through the
 * node's admin API (what the routes of /cluster/members and
 * /cluster/transfer call), always sent to the current leader:
 *   - remove a voter (never below 2 voters), stop it, wipe its disk, and
 *     start it again empty with --join: it joins as a learner, is caught up
 *     (appends or a snapshot) and promoted (docs/OPERATIONS.md, "One node
 *     lost with its disk");
 *   - add node 4 or 5 (--join, an empty disk), and later remove it;
 *   - transfer the leadership to a voter.
 * A change whose outcome is unknown (timed out, leadership lost) is sent
 * again; a member already gone answers ST_ENOENT, which is success. */
enum mop_kind { MOP_NONE, MOP_REMOVE, MOP_JOIN, MOP_TRANSFER };

static struct {
    enum mop_kind kind;
    raft_id target;
    bool rejoin;   /* MOP_REMOVE: wipe the node and let it join again */
    bool inflight; /* an admin call awaits its callback */
    bool done;
    int status;
    uint64_t next_ms; /* when to send (again) */
} g_mop;
static bool g_membership, g_clock_faults;

static void mop_cb(void *ctx, const struct node_admin_result *res)
{
    (void)ctx;
    g_mop.inflight = false;
    g_mop.done = true;
    g_mop.status = res->status;
}

/* The up node that leads in the highest term, and its configuration. */
static struct wnode *leader_find(struct node_info *info)
{
    struct wnode *best = NULL;
    raft_term term = 0;
    for (raft_id i = 1; i <= SLOTS; i++) {
        struct wnode *w = &g_nodes[i];
        if (!w->up || !w->node || w->fatal) continue;
        struct node_info in;
        node_info_get(w->node, &in);
        if (in.started && in.role == RAFT_LEADER && in.term >= term) {
            best = w;
            term = in.term;
            *info = in;
        }
    }
    return best;
}

static const struct node_member_info *conf_find(const struct node_info *info, raft_id id)
{
    for (uint32_t i = 0; i < info->n_members; i++)
        if (info->members[i].id == id) return &info->members[i];
    return NULL;
}

static void node_join_empty(struct wnode *w)
{
    if (w->disk) st_fs_sim_destroy(w->disk);
    ST_ASSERT(st_fs_sim_create(&w->disk) == 0);
    w->cfg.fs = st_fs_sim_fs(w->disk);
    w->cfg.n_peers = 0;
    /* --join names a member: the leader, or else any other node up. */
    struct node_info info;
    const struct wnode *l = leader_find(&info);
    raft_id seed = l ? l->id : RAFT_NONE;
    for (raft_id i = 1; i <= SLOTS && !seed; i++)
        if (i != w->id && g_nodes[i].up) seed = i;
    snprintf(w->cfg.join_http, sizeof w->cfg.join_http, "10.0.0.%" PRIu64 ":8000", seed);
    w->joiner = true;
    node_up(w, NODE_START_JOIN);
    /* A third of the joiners are killed 1-40 ms after they start: before
     * their join was answered, or after it and before the leader's first
     * append or snapshot taught them the configuration (issue 17: such a
     * joiner refused every peer on restart). */
    if (rnd_below(3) == 0) g_crash_again_ms[w->id] = wsim_now_ms() + 1 + rnd_below(40);
}

/* The target is out of the configuration: stop it, wipe its disk, and
 * start it empty with --join (rejoin) or leave its slot free. */
static void mop_removed(void)
{
    struct wnode *w = &g_nodes[g_mop.target];
    hash_u64(0xDE000000ull | w->id);
    if (g_trace)
        printf("%" PRIu64 " ms: node %" PRIu64 " removed; %s\n", wsim_now_ms(), w->id,
               g_mop.rejoin ? "wiped, joining again" : "stopped, disk dropped");
    if (w->node) node_down(w);
    g_crash_again_ms[w->id] = 0;
    if (g_mop.rejoin) {
        node_join_empty(w);
        g_mop.kind = MOP_JOIN;
    } else {
        st_fs_sim_destroy(w->disk);
        w->disk = NULL;
        w->joiner = false;
        g_mop.kind = MOP_NONE;
    }
}

static void operator_step(void)
{
    uint64_t now = wsim_now_ms();
    struct node_info info;
    switch (g_mop.kind) {
    case MOP_NONE:
        return;
    case MOP_REMOVE:
    case MOP_TRANSFER: {
        if (g_mop.done) {
            g_mop.done = false;
            if (g_mop.kind == MOP_TRANSFER) {
                g_mop.kind = MOP_NONE;
            } else if (g_mop.status != 0) {
                g_mop.next_ms = now + 100;
            } else {
                mop_removed();
            }
            return;
        }
        if (g_mop.inflight || now < g_mop.next_ms) return;
        struct wnode *l = leader_find(&info);
        if (!l) {
            if (g_mop.kind == MOP_TRANSFER) g_mop.kind = MOP_NONE;
            g_mop.next_ms = now + 100;
            return;
        }
        g_mop.inflight = true;
        raft_id prev = wsim_current_set(l->id);
        int rc = g_mop.kind == MOP_TRANSFER
                     ? node_transfer(l->node, g_mop.target, mop_cb, NULL)
                     : node_member_remove(l->node, g_mop.target, mop_cb, NULL);
        wsim_current_set(prev);
        if (rc == 0) return;
        g_mop.inflight = false;
        if (g_mop.kind == MOP_TRANSFER)
            g_mop.kind = MOP_NONE;
        else if (rc == ST_ENOENT)
            mop_removed();
        else
            g_mop.next_ms = now + 100;
        return;
    }
    case MOP_JOIN: {
        struct wnode *w = &g_nodes[g_mop.target];
        if (w->start_status < 0) { /* gave up: try again, empty */
            node_down(w);
            node_join_empty(w);
            return;
        }
        if (now % 50 != 0 || w->start_status != 0) return;
        const struct node_member_info *m = leader_find(&info) ? conf_find(&info, w->id) : NULL;
        if (m && m->voter) {
            hash_u64(0xAD000000ull | w->id);
            if (g_trace)
                printf("%" PRIu64 " ms: node %" PRIu64 " is a voter\n", wsim_now_ms(), w->id);
            g_mop.kind = MOP_NONE;
        }
        return;
    }
    }
}

/* Starts a membership change of kind (12 remove-rejoin, 13 add, 14
 * remove-added, 15 transfer); false if none applies now. */
static bool mop_start(uint64_t kind)
{
    if (g_mop.kind != MOP_NONE) return false;
    struct node_info info;
    if (!leader_find(&info)) return false;
    raft_id voters[RAFT_MEMBERS_MAX] = {0}, nv = 0;
    for (uint32_t i = 0; i < info.n_members && nv < RAFT_MEMBERS_MAX; i++)
        if (info.members[i].voter) voters[nv++] = info.members[i].id;
    if (nv == 0) return false;
    memset(&g_mop, 0, sizeof g_mop);
    switch (kind) {
    case 12:
        if (nv < 3) return false;
        g_mop.kind = MOP_REMOVE;
        g_mop.target = voters[rnd_below(nv)];
        g_mop.rejoin = true;
        break;
    case 13:
        for (raft_id id = NODES + 1; id <= SLOTS && g_mop.kind == MOP_NONE; id++)
            if (!g_nodes[id].disk && !conf_find(&info, id)) {
                g_mop.kind = MOP_JOIN;
                g_mop.target = id;
                node_join_empty(&g_nodes[id]);
            }
        return g_mop.kind != MOP_NONE;
    case 14:
        for (raft_id id = NODES + 1; id <= SLOTS && g_mop.kind == MOP_NONE; id++) {
            const struct node_member_info *m = conf_find(&info, id);
            if (g_nodes[id].disk && m && (!m->voter || nv >= 3)) {
                g_mop.kind = MOP_REMOVE;
                g_mop.target = id;
            }
        }
        return g_mop.kind != MOP_NONE;
    case 15:
        g_mop.kind = MOP_TRANSFER;
        g_mop.target = voters[rnd_below(nv)];
        break;
    }
    return g_mop.kind != MOP_NONE;
}

static void heal(void)
{
    memset(g_link.cut, 0, sizeof g_link.cut);
    for (int i = 1; i <= SLOTS; i++) {
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
    uint64_t kind;
    if (!g_clock_faults && !g_membership) {
        kind = rnd_below(g_more_faults ? FAULT_KINDS_MORE : FAULT_KINDS_BASE);
    } else {
        uint64_t kinds[FAULT_KINDS] = {0}, n = 0;
        for (uint64_t k = 0; k < FAULT_KINDS; k++)
            if (k < FAULT_KINDS_BASE || (k < FAULT_KINDS_MORE && g_more_faults) ||
                ((k == 10 || k == 11) && g_clock_faults) || (k >= 12 && g_membership))
                kinds[n++] = k;
        kind = kinds[rnd_below(n)];
    }
    raft_id x = 1 + rnd_below(g_slots), y = 1 + rnd_below(g_slots);
    bool applied = true;
    if (kind >= 5 && kind <= 8 && !g_nodes[x].disk) applied = false; /* no node x now */
    /* (The default schedule counts a crash of a node down as applied: its
     * trace hashes stay those recorded.) */
    if ((kind == 4 || kind == 9) && !g_nodes[x].up && g_membership) applied = false;
    switch (applied ? kind : FAULT_KINDS) {
    case 0: /* one node alone */
        for (raft_id o = 1; o <= g_slots; o++)
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
    case 10: { /* node x's wall clock set off by up to +-5 minutes */
        int64_t off = (int64_t)rnd_below(2 * WALL_SKEW_MS_MAX + 1) - WALL_SKEW_MS_MAX;
        g_wall_off_ms[x] = off;
        break;
    }
    case 11: { /* node x's wall clock jumps forward or back, up to 10 minutes */
        int64_t d = 1 + (int64_t)rnd_below(WALL_JUMP_MS_MAX);
        int64_t off = g_wall_off_ms[x] + (rnd_below(2) ? d : -d);
        g_wall_off_ms[x] = off > WALL_OFFSET_MS_MAX
                               ? WALL_OFFSET_MS_MAX
                               : (off < -WALL_OFFSET_MS_MAX ? -WALL_OFFSET_MS_MAX : off);
        break;
    }
    case 12:
    case 13:
    case 14:
    case 15:
        applied = mop_start(kind);
        if (applied) x = g_mop.target;
        break;
    }
    if (applied) {
        g_faults[kind]++;
        hash_u64(0xFA000000ull | (kind << 8) | x);
    }
    if (g_trace && applied)
        printf("%" PRIu64 " ms: fault %s, node %" PRIu64 " (and %" PRIu64 ")%s\n", wsim_now_ms(),
               g_fault_names[kind], x, y, kind >= 10 && kind <= 11 ? " (wall clock moved)" : "");
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

/* Whether key k may have been absent (expired) at log clock t while the
 * read or final state of op `at` saw it: some put on k that may have
 * applied before (not surely failed, invoked before `at` completed, not
 * acknowledged below version `ver_min`) may have expired by t. A put's
 * expiry is at least the log clock of the node it was sent to at its
 * invocation plus its TTL (its entry applies after everything applied
 * then), exactly what a read of its value returned if one did. */
static bool may_have_expired(int k, uint64_t t, uint64_t before_ms, uint64_t ver_min)
{
    for (size_t j = 0; j < g_n_ops; j++) {
        const struct op *p = &g_ops[j];
        if (p->key != k || p->kind != OP_PUT || put_surely_failed(p) || p->invoke_ms > before_ms ||
            (p->state == OP_OK && p->version < ver_min))
            continue;
        uint64_t exp = p->log_ms + p->ttl_ms;
        for (size_t i = 0; i < g_n_ops; i++)
            if (g_ops[i].kind == OP_GET && g_ops[i].state == OP_OK &&
                g_ops[i].value_id == p->value_id && g_ops[i].expire_ms) {
                exp = g_ops[i].expire_ms;
                break;
            }
        if (exp <= t) return true;
    }
    return false;
}

/* Puts of one key in order of acknowledgement, with the highest version
 * acknowledged so far: "the newest put acknowledged before t" is a binary
 * search (check_history was O(ops^2) per key, a third of a seed's time). */
struct acked_put {
    uint64_t complete_ms;
    size_t op;     /* g_ops index */
    size_t max_op; /* the op with the highest version among [0, this] */
};

static int acked_put_cmp(const void *a, const void *b)
{
    const struct acked_put *x = a, *y = b;
    if (x->complete_ms != y->complete_ms) return x->complete_ms < y->complete_ms ? -1 : 1;
    return x->op < y->op ? -1 : x->op > y->op;
}

/* The puts of key k acknowledged before t: acked[0, return). */
static size_t acked_before(const struct acked_put *acked, size_t n, uint64_t t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (acked[mid].complete_ms < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Reads of a TTL key: never an older version than a put acknowledged before
 * the read began; absent only if that put (or a later one) may have expired
 * by the read's log clock. Each earlier acknowledged put is judged. */
static void check_ttl_reads(int k, const struct acked_put *acked, size_t n)
{
    for (size_t i = 0; i < g_n_ops; i++) {
        const struct op *r = &g_ops[i];
        if (r->key != k || r->kind != OP_GET || r->state != OP_OK) continue;
        size_t before = acked_before(acked, n, r->invoke_ms);
        for (size_t a = 0; a < before; a++) {
            size_t j = acked[a].op;
            const struct op *w = &g_ops[j];
            if (w->version <= r->version) continue;
            if (r->version == 0 && may_have_expired(k, r->log_ms, r->complete_ms, w->version))
                continue;
            FAIL("key k%d: read (op %zu, %" PRIu64 "-%" PRIu64 " ms, node %" PRIu64
                 ", log clock %" PRIu64 ") returned version %" PRIu64
                 ", but put op %zu (ttl %" PRIu64 " ms, log clock >= %" PRIu64
                 ") was acknowledged at version %" PRIu64 " at %" PRIu64
                 " ms and cannot have expired (stale read)",
                 k, i, r->invoke_ms, r->complete_ms, r->node, r->log_ms, r->version, j, w->ttl_ms,
                 w->log_ms, w->version, w->complete_ms);
        }
    }
}

static int check_history(void)
{
    int before = g_failures;
    /* Each value is written by one put (value ids are dense from 1). */
    size_t nv = (size_t)g_next_value;
    size_t *put_of = malloc(nv * sizeof *put_of);       /* value -> its put */
    size_t *first_ok = malloc(nv * sizeof *first_ok);   /* value -> first op that saw it */
    size_t *first_get = malloc(nv * sizeof *first_get); /* value -> first read of it */
    struct acked_put *acked = malloc((g_n_ops + 1) * sizeof *acked);
    if (!put_of || !first_ok || !first_get || !acked) {
        fprintf(stderr, "wsim: out of memory in the checker\n");
        exit(2);
    }
    for (size_t v = 0; v < nv; v++)
        put_of[v] = first_ok[v] = first_get[v] = SIZE_MAX;
    for (size_t i = 0; i < g_n_ops; i++)
        if (g_ops[i].kind == OP_PUT && g_ops[i].value_id < nv) put_of[g_ops[i].value_id] = i;
    for (size_t i = 0; i < g_n_ops; i++) {
        struct op *r = &g_ops[i];
        if (r->state != OP_OK || r->value_id == 0) continue;
        uint64_t vid = r->value_id;
        size_t p = vid < nv ? put_of[vid] : SIZE_MAX;
        if (p == SIZE_MAX || g_ops[p].key != r->key) {
            FAIL("key k%d: op %zu (node %" PRIu64 ", %" PRIu64 "-%" PRIu64 " ms) saw v%" PRIu64
                 ", which no put of this key wrote",
                 r->key, i, r->node, r->invoke_ms, r->complete_ms, vid);
            continue;
        }
        /* Nothing reads a value whose put surely failed. */
        if (r->kind == OP_GET && put_surely_failed(&g_ops[p]))
            FAIL("key k%d: read op %zu (node %" PRIu64 ", %" PRIu64 "-%" PRIu64
                 " ms) returned v%" PRIu64 " at version %" PRIu64 " of put op %zu (node %" PRIu64
                 ", %" PRIu64 "-%" PRIu64 " ms), which failed with %s (not applied)",
                 r->key, i, r->node, r->invoke_ms, r->complete_ms, vid, r->version, p,
                 g_ops[p].node, g_ops[p].invoke_ms, g_ops[p].complete_ms,
                 st_strerror(g_ops[p].status));
        /* A value is seen at one version only (no put applied twice). */
        size_t f = first_ok[vid];
        if (f == SIZE_MAX)
            first_ok[vid] = i;
        else if (g_ops[f].version != r->version)
            FAIL("key k%d: value v%" PRIu64 " seen at versions %" PRIu64 " and %" PRIu64
                 " (applied twice?)",
                 r->key, vid, g_ops[f].version, r->version);
        if (r->kind != OP_GET) continue;
        /* Its expiry is the log clock at its index plus its TTL: the same
         * on every replica. */
        size_t g = first_get[vid];
        if (g == SIZE_MAX)
            first_get[vid] = i;
        else if (g_ops[g].expire_ms != r->expire_ms)
            FAIL("key k%d: value v%" PRIu64 " read with expiry %" PRIu64 " (op %zu, node %" PRIu64
                 ") and %" PRIu64 " (op %zu, node %" PRIu64 ")",
                 r->key, vid, g_ops[g].expire_ms, g, g_ops[g].node, r->expire_ms, i, r->node);
        if (r->expire_ms && r->expire_ms <= r->log_ms)
            FAIL("key k%d: read op %zu (node %" PRIu64 ") returned v%" PRIu64 " expired at %" PRIu64
                 " by its log clock %" PRIu64,
                 r->key, i, r->node, vid, r->expire_ms, r->log_ms);
    }
    for (int k = 0; k < g_keys; k++) {
        size_t n = 0;
        for (size_t j = 0; j < g_n_ops; j++)
            if (g_ops[j].key == k && g_ops[j].kind == OP_PUT && g_ops[j].state == OP_OK)
                acked[n++] = (struct acked_put){.complete_ms = g_ops[j].complete_ms, .op = j};
        qsort(acked, n, sizeof *acked, acked_put_cmp);
        for (size_t j = 0; j < n; j++)
            acked[j].max_op =
                j > 0 && g_ops[acked[j - 1].max_op].version >= g_ops[acked[j].op].version
                    ? acked[j - 1].max_op
                    : acked[j].op;
        if (k >= KEYS) {
            check_ttl_reads(k, acked, n);
            continue;
        }
        /* Reads: never older than a put acknowledged before they began. */
        for (size_t i = 0; i < g_n_ops; i++) {
            struct op *r = &g_ops[i];
            if (r->key != k || r->kind != OP_GET || r->state != OP_OK) continue;
            size_t b = acked_before(acked, n, r->invoke_ms);
            if (b == 0) continue;
            const struct op *w = &g_ops[acked[b - 1].max_op];
            if (w->version > r->version)
                FAIL("key k%d: read (op %zu, %" PRIu64 "-%" PRIu64 " ms, node %" PRIu64
                     ") returned version %" PRIu64 ", but put op %zu was acknowledged at "
                     "version %" PRIu64 " at %" PRIu64 " ms (stale read)",
                     k, i, r->invoke_ms, r->complete_ms, r->node, r->version, acked[b - 1].max_op,
                     w->version, w->complete_ms);
        }
    }
    free(put_of);
    free(first_ok);
    free(first_get);
    free(acked);
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
    /* Every member converges: equal applied index and state digest. The
     * members are nodes 1-3, or with --membership those of the leader's
     * configuration once the operator is done (a removed node is not
     * checked; a wiped one only as the member it became again). */
    uint64_t dig[SLOTS + 1] = {0};
    raft_index applied[SLOTS + 1] = {0};
    bool member[SLOTS + 1] = {false};
    raft_id ref = 1; /* the lowest member: the others are compared to it */
    bool same = false;
    for (int t = 0; t < 20000 && !same; t++) {
        step();
        same = true;
        if (g_membership) {
            struct node_info info;
            memset(member, 0, sizeof member);
            if (g_mop.kind != MOP_NONE || !leader_find(&info)) {
                same = false;
                continue;
            }
            ref = 0;
            for (uint32_t m = 0; m < info.n_members; m++)
                if (info.members[m].id <= SLOTS) member[info.members[m].id] = true;
            for (raft_id i = SLOTS; i >= 1; i--)
                if (member[i]) ref = i;
            for (raft_id i = 1; i <= SLOTS; i++)
                if (member[i] && (!g_nodes[i].up || !g_nodes[i].node || g_nodes[i].start_status))
                    same = false;
            if (!same || !ref) {
                same = false;
                continue;
            }
        } else {
            for (raft_id i = 1; i <= NODES; i++)
                member[i] = true;
        }
        for (raft_id i = 1; i <= SLOTS; i++) {
            if (!member[i]) continue;
            dig[i] = node_state_digest(g_nodes[i].node, &applied[i]);
            if (applied[i] != applied[ref] ||
                g_nodes[i].node->applied < raft_commit_index(g_nodes[i].node->raft))
                same = false;
        }
    }
    if (!same) {
        FAIL("replicas did not converge after healing: applied %" PRIu64 " %" PRIu64 " %" PRIu64
             " %" PRIu64 " %" PRIu64 " (0: not a member, or down)%s",
             applied[1], applied[2], applied[3], applied[4], applied[5],
             g_mop.kind != MOP_NONE ? "; a membership change is unfinished" : "");
        return;
    }
    for (raft_id i = 1; i <= SLOTS; i++)
        if (member[i] && dig[i] != dig[ref])
            FAIL("state digests differ at applied index %" PRIu64 ": node %" PRIu64 " %016" PRIx64
                 ", node %" PRIu64 " %016" PRIx64,
                 applied[ref], ref, dig[ref], i, dig[i]);
    hash_u64(applied[ref]);
    hash_u64(dig[ref]);
    /* No acknowledged write lost: the final version of each key is at least
     * that of every acknowledged put, and an acknowledged put at exactly the
     * final version wrote the final value. */
    for (int k = 0; k < g_keys; k++) {
        struct final_read f = {0};
        char key[8];
        key_name(k, key);
        raft_id prev = wsim_current_set(ref);
        int rc = node_get(g_nodes[ref].node, (const uint8_t *)key, strlen(key), NODE_READ_STALE,
                          final_cb, &f);
        uint64_t final_log_ms = node_log_clock_ms(g_nodes[ref].node);
        wsim_current_set(prev);
        if (rc != 0 || !f.done) {
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
            if (w->version > fv && fv == 0 && k >= KEYS &&
                may_have_expired(k, final_log_ms, UINT64_MAX, w->version))
                continue;
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
    if (g_membership) http_step();
    quiesce();
    if (g_membership) operator_step();
    for (int i = 1; i <= SLOTS; i++) {
        if (g_nodes[i].fatal && g_nodes[i].up) node_crash_restart(&g_nodes[i]);
        if (g_nodes[i].start_again_ms && wsim_now_ms() >= g_nodes[i].start_again_ms)
            node_up(&g_nodes[i], g_nodes[i].start_mode);
        if (g_crash_again_ms[i] && wsim_now_ms() >= g_crash_again_ms[i]) {
            g_crash_again_ms[i] = 0;
            if (g_nodes[i].up) node_crash_restart(&g_nodes[i]);
        }
    }
}

static uint64_t g_sim_ms = 20000, g_quiet_ms = 5000;

/* A digest of the whole history, timing included, and of the work the
 * nodes did (readies, write batches, entries applied, messages): what
 * --trace prints after a run so that two builds of the simulator can be
 * compared seed by seed (a change meant to make it faster must not change
 * what a seed runs). Not part of the trace hash. */
static uint64_t history_digest(void)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < g_n_ops; i++) {
        const struct op *o = &g_ops[i];
        const uint64_t v[] = {(uint64_t)o->kind, (uint64_t)o->state, (uint64_t)o->key,
                              o->client,         o->invoke_ms,       o->complete_ms,
                              o->value_id,       o->version,         (uint64_t)o->status,
                              o->node,           o->ttl_ms,          o->expire_ms,
                              o->log_ms};
        for (size_t k = 0; k < sizeof v / sizeof v[0]; k++)
            h = (h ^ v[k]) * 0x100000001B3ull;
    }
    for (size_t k = 0; k < sizeof g_node_work / sizeof g_node_work[0]; k++)
        h = (h ^ g_node_work[k]) * 0x100000001B3ull;
    return h;
}

static int run(uint64_t seed)
{
    g_seed = seed;
    g_rng = seed * 0x2545F4914F6CDD1Dull + 1;
    g_hash = 0xcbf29ce484222325ull;
    g_now_ns = 0;
    g_n_ops = 0;
    g_next_value = 1;
    g_failures = 0;
    memset(g_node_work, 0, sizeof g_node_work);
    memset(g_faults, 0, sizeof g_faults);
    memset(g_crash_again_ms, 0, sizeof g_crash_again_ms);
    memset(g_wall_off_ms, 0, sizeof g_wall_off_ms);
    memset(&g_mop, 0, sizeof g_mop);
    for (size_t i = 0; i < HTTP_REQS_MAX; i++)
        g_http[i].used = false;
    g_own_loops = g_membership || g_clock_faults;
    sim_net_connections(g_membership);
    g_slots = g_membership ? SLOTS : NODES;
    g_keys = g_clock_faults ? KEYS + KEYS_TTL : KEYS;
    heal();
    ST_ASSERT(uv_loop_init(&g_loop) == 0);
    for (raft_id i = 1; i <= SLOTS && g_own_loops; i++)
        ST_ASSERT(uv_loop_init(&g_loops[i]) == 0);
    for (raft_id i = 1; i <= g_slots; i++) {
        struct wnode *w = &g_nodes[i];
        memset(w, 0, sizeof *w);
        w->id = i;
        /* Nodes 4 and 5 get a disk when they are added. */
        if (i <= NODES) ST_ASSERT(st_fs_sim_create(&w->disk) == 0);
        node_config_default(&w->cfg);
        w->cfg.id = i;
        snprintf(w->cfg.data_dir, sizeof w->cfg.data_dir, "/data");
        snprintf(w->cfg.raft_listen, sizeof w->cfg.raft_listen, "10.0.0.%" PRIu64 ":7000", i);
        snprintf(w->cfg.http_listen, sizeof w->cfg.http_listen, "10.0.0.%" PRIu64 ":8000", i);
        w->cfg.fs = w->disk ? st_fs_sim_fs(w->disk) : NULL; /* 4, 5: node_join_empty */
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
        w->cfg.n_peers = i <= NODES ? NODES : 0;
        if (i > NODES) {
            w->cfg.mode = NODE_START_JOIN;
            snprintf(w->cfg.join_http, sizeof w->cfg.join_http, "10.0.0.1:8000");
        }
        for (raft_id p = 1; p <= w->cfg.n_peers; p++) {
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
    /* Once healed, every read succeeds: a lost ReadIndex message (or, with
     * --lose-reads, many) costs a read a retry, never its success. */
    for (size_t i = 0; i < g_n_ops; i++) {
        const struct op *o = &g_ops[i];
        if (o->kind == OP_GET && o->invoke_ms >= g_sim_ms + g_quiet_ms / 2 && o->state != OP_OK &&
            o->status != ST_ECONNECTION /* sent to a node slot that is down */) {
            FAIL("a read at node %" PRIu64 " invoked at %" PRIu64
                 " ms in the quiet period failed: %s",
                 (uint64_t)o->node, o->invoke_ms, st_strerror(o->status));
            break;
        }
    }
    check_final();
    check_history();
    size_t ok = 0;
    for (size_t i = 0; i < g_n_ops; i++)
        ok += g_ops[i].state == OP_OK;
    if (g_trace || g_failures) {
        uint32_t restarts = 0;
        for (raft_id i = 1; i <= SLOTS; i++)
            restarts += g_nodes[i].crashes;
        printf("seed %" PRIu64 ": %zu ops (%zu ok), faults:", seed, g_n_ops, ok);
        uint64_t kinds = g_membership || g_clock_faults ? FAULT_KINDS : FAULT_KINDS_MORE;
        for (uint64_t k = 0; k < kinds; k++)
            printf("%s %s %u", k ? "," : "", g_fault_names[k], g_faults[k]);
        printf("; restarts %u; trace %016" PRIx64 "%s\n", restarts, g_hash,
               g_failures ? " FAILED" : "");
    }
    for (uint64_t k = 0; k < FAULT_KINDS; k++)
        g_faults_total[k] += g_faults[k];
    /* Tear down. */
    for (raft_id i = 1; i <= SLOTS; i++)
        if (g_nodes[i].node) node_down(&g_nodes[i]);
    if (g_trace) printf("seed %" PRIu64 ": history %016" PRIx64 "\n", seed, history_digest());
    quiesce();
    sim_net_close();
    uv_run(&g_loop, UV_RUN_DEFAULT);
    ST_ASSERT(uv_loop_close(&g_loop) == 0);
    for (raft_id i = 1; i <= SLOTS && g_own_loops; i++) {
        uv_run(&g_loops[i], UV_RUN_DEFAULT);
        ST_ASSERT(uv_loop_close(&g_loops[i]) == 0);
    }
    for (raft_id i = 1; i <= SLOTS; i++) {
        if (g_nodes[i].disk) st_fs_sim_destroy(g_nodes[i].disk);
        g_nodes[i].disk = NULL;
    }
    return g_failures;
}

int main(int argc, char **argv)
{
    uint64_t first = 1, n = 1;
    bool check_determinism = false, stop_at_first = false;
    unsigned repeats = 2; /* --determinism: runs of each seed compared */
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
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeats = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--stop-at-first"))
            stop_at_first = true;
        else if (!strcmp(argv[i], "--more-faults"))
            g_more_faults = true;
        else if (!strcmp(argv[i], "--membership"))
            g_membership = true;
        else if (!strcmp(argv[i], "--clock-faults"))
            g_clock_faults = true;
        else if (!strcmp(argv[i], "--lose-reads") && i + 1 < argc)
            g_lose_reads_permille = (uint32_t)strtoul(argv[++i], NULL, 10);
        else {
            fprintf(stderr,
                    "usage: wsim [--seed S] [--seeds N] [--ms SIM_MS] [--quiet-ms MS] "
                    "[--trace] [--determinism [--repeat N]] [--stop-at-first] [--more-faults] "
                    "[--membership] [--clock-faults] [--lose-reads PERMILLE]\n");
            return 2;
        }
    }
    st_trace_set_level(getenv("STCACHE_TEST_TRACE") ? ST_TRACE_DEBUG : ST_TRACE_OFF);
    if (getenv("ST_SANITIZED") && n > 5) {
        n = n / 5 < 25 ? n / 5 : 25;
        printf("wsim: sanitizer build: %" PRIu64 " seeds\n", n);
    }
    char lose_reads_arg[16] = "";
    if (g_lose_reads_permille)
        snprintf(lose_reads_arg, sizeof lose_reads_arg, "%" PRIu32, g_lose_reads_permille);
    g_ops = calloc(OPS_MAX, sizeof *g_ops);
    if (!g_ops) return 2;
    int failed = 0;
    for (uint64_t s = first; s < first + n; s++) {
        int f = run(s);
        /* The trace hash and the history digest (timing included) of the
         * first run, against each later one. */
        uint64_t h1 = g_hash, d1 = history_digest();
        for (unsigned r = 1; check_determinism && !f && r < repeats; r++) {
            f = run(s);
            if (!f && (g_hash != h1 || history_digest() != d1)) {
                fprintf(stderr,
                        "wsim: seed %" PRIu64 ": not deterministic (run %u: trace %016" PRIx64
                        ", history %016" PRIx64 "; run 1: %016" PRIx64 ", %016" PRIx64 ")\n",
                        s, r + 1, g_hash, history_digest(), h1, d1);
                f = 1;
            }
        }
        if (f) {
            failed++;
            fprintf(stderr,
                    "wsim: replay: %s --seed %" PRIu64 " --ms %" PRIu64 " --quiet-ms %" PRIu64
                    "%s%s%s%s%s --trace\n",
                    argv[0], s, g_sim_ms, g_quiet_ms, g_more_faults ? " --more-faults" : "",
                    g_membership ? " --membership" : "", g_clock_faults ? " --clock-faults" : "",
                    lose_reads_arg[0] ? " --lose-reads " : "", lose_reads_arg);
            if (stop_at_first) {
                n = s - first + 1;
                break;
            }
        }
    }
    if (g_membership || g_clock_faults) {
        printf("wsim: faults applied:");
        for (uint64_t k = 0; k < FAULT_KINDS; k++)
            printf("%s %s %" PRIu64, k ? "," : "", g_fault_names[k], g_faults_total[k]);
        printf("\n");
    }
    printf("wsim: %" PRIu64 " seeds from %" PRIu64 ", %d failed\n", n, first, failed);
    for (size_t i = 0; i < HTTP_REQS_MAX; i++)
        st_membuf_free(&g_http[i].reply);
    free(g_ops);
    return failed ? 1 : 0;
}
