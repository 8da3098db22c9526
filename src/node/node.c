/* The node runtime: lifecycle, the ready pipeline, storage and transport
 * glue, snapshots and membership. Client requests live in client.c. */
#include "node/node.h"

#include "http/client.h"
#include "util/json.h"
#include "node/node_int.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MOD "node"
#define NODE_SCRATCH_BYTES (64u * 1024u)
#define NODE_READIES_PER_PASS 64
#define NODE_HS_IDLE_TICKS 10 /* quiet ticks before a commit-only hard state is written */
#define NODE_TRIM_DELAY_TICKS 100 /* from a snapshot to malloc_trim (compaction released) */
#define NODE_TRIM_QUIET_TICKS 50  /* ...and no entry applied for this long */
#define NODE_JOIN_RETRY_MS 300
#define NODE_JOIN_ATTEMPTS_MAX 200
#define NODE_LOOP_SLOW_US 50000 /* a loop iteration this long is traced */
#define NODE_SNAPSHOT_DISK_MARGIN_BYTES (64ull << 20) /* kept free when receiving a snapshot */

uint64_t node_now_us(void)
{
    return uv_hrtime() / 1000u;
}

uint64_t node_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t node_stamp_ms(struct node *n)
{
    uint64_t t = ST_MAX(node_wall_ms(), n->stamp_last_ms);
    if (n->kv) t = ST_MAX(t, kv_clock_ms(n->kv));
    n->stamp_last_ms = t;
    return t;
}

/* Leader: stamps the forwarded commands of a PROPOSE with this node's time
 * before the core appends them. A follower's clock never enters the log, so
 * a follower with a fast clock cannot make a live key look expired at apply
 * (issue 14, finding 10). The payloads are views into the frame just
 * received, which nothing else references yet. */
static void restamp_forwarded(struct node *n, const struct raft_msg *m)
{
    if (raft_role_get(n->raft) != RAFT_LEADER) return; /* the core drops it */
    uint64_t t = node_stamp_ms(n);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (!e->buf || e->len == 0 || e->data < e->buf->data ||
            (size_t)(e->data - e->buf->data) + e->len > e->buf->cap)
            continue; /* not a view into its buffer: the core drops the message */
        uint8_t *p = e->buf->data + (e->data - e->buf->data);
        (void)kv_command_restamp(p, e->len, t); /* a malformed one fails at apply */
    }
}

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, &v, sizeof v);
        close(fd);
        if (r == (ssize_t)sizeof v && v != 0) return v;
    }
    /* Fallback: time and pid mixed (splitmix64 finaliser). */
    v = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ node_wall_ms();
    v ^= v >> 30;
    v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 27;
    v *= 0x94d049bb133111ebull;
    v ^= v >> 31;
    return v ? v : 1;
}

/* ------------------------------------------------------------ lifecycle */

int node_create(uv_loop_t *loop, const struct node_config *cfg, struct node **out)
{
    char err[200];
    if (node_config_validate(cfg, err, sizeof err) != 0) {
        ST_TRACE_ERROR(MOD, "bad configuration: %s", err);
        return ST_EINVAL;
    }
    struct node *n = calloc(1, sizeof *n);
    if (!n) return ST_ENOMEM;
    n->loop = loop;
    n->cfg = *cfg;
    node_wal_inline_init(&n->wal_inline, cfg->wal_inline_max_us);
    snprintf(n->advertise_raft, sizeof n->advertise_raft, "%s",
             cfg->advertise_raft[0] ? cfg->advertise_raft : cfg->raft_listen);
    snprintf(n->advertise_http, sizeof n->advertise_http, "%s",
             cfg->advertise_http[0] ? cfg->advertise_http : cfg->http_listen);
    n->limits.key_bytes_max = cfg->max_key_bytes;
    n->limits.value_bytes_max = cfg->max_value_bytes;
    if (uv_mutex_init(&n->wmu) != 0) {
        free(n);
        return ST_ENOMEM;
    }
    int rc = node_waiters_init(n);
    if (rc == 0) {
        rc = node_memory_init(n);
        if (rc) node_waiters_close(n);
    }
    if (rc) {
        uv_mutex_destroy(&n->wmu);
        free(n);
        return rc;
    }
    /* Request ids must never repeat across restarts of this node: entries
     * replayed from the log carry old ids (see docs/ARCHITECTURE.md). */
    n->next_seq = (random_u64() >> 2) | 1;
    n->role = RAFT_FOLLOWER;
    n->dir_lock.fd = -1;
    *out = n;
    return 0;
}

void node_destroy(struct node *n)
{
    if (!n) return;
    ST_ASSERT(!n->running);
    st_dir_lock_release(&n->dir_lock);
    node_waiters_close(n);
    node_memory_close(n);
    struct node_persist *p = n->persist_free;
    while (p) {
        struct node_persist *next = p->next;
        free(p->bufs);
        free(p->msgs);
        free(p->ents);
        free(p);
        p = next;
    }
    uv_mutex_destroy(&n->wmu);
    free(n);
}

int node_raft_port(const struct node *n)
{
    return n->tr ? tr_listen_port(n->tr) : 0;
}

/* ------------------------------------------------------------ conf/peers */

static void member_addrs(const struct raft_member *m, char *raft_addr, char *http_addr)
{
    node_context_parse(m->context, m->context_len, raft_addr, http_addr);
}

static bool want_peer(const struct node *n, raft_id id, char *addr)
{
    const struct raft_conf *confs[2] = {raft_conf_get(n->raft), &n->conf_applied};
    char http[NODE_ADDR_MAX];
    for (int c = 0; c < 2; c++) {
        const struct raft_member *m = raft_conf_find(confs[c], id);
        if (m) {
            member_addrs(m, addr, http);
            return addr[0] != '\0';
        }
    }
    for (uint32_t i = 0; i < n->n_seed_peers; i++) {
        if (n->seed_peers[i].id == id) {
            snprintf(addr, NODE_ADDR_MAX, "%s", n->seed_peers[i].raft);
            return true;
        }
    }
    return false;
}

/* Makes the transport's peer set equal to the members of the current and
 * the applied configuration (plus join-reply seeds), with their addresses. */
static void reconcile_peers(struct node *n)
{
    n->conf_dirty = false;
    if (!n->tr || !n->raft) return;
    char addr[NODE_ADDR_MAX];
    /* Remove peers no longer wanted or whose address changed. */
    for (uint32_t i = 0; i < n->n_tr_peers;) {
        struct node_peer_addr *p = &n->tr_peers[i];
        if (want_peer(n, p->id, addr) && strcmp(addr, p->raft) == 0) {
            i++;
            continue;
        }
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": transport peer %" PRIu64 " (%s) removed", n->cfg.id,
                      p->id, p->raft);
        tr_peer_remove(n->tr, p->id);
        n->tr_peers[i] = n->tr_peers[--n->n_tr_peers];
    }
    /* Add the missing ones. */
    raft_id ids[3 * RAFT_MEMBERS_MAX];
    size_t n_ids = 0;
    const struct raft_conf *confs[2] = {raft_conf_get(n->raft), &n->conf_applied};
    for (int c = 0; c < 2; c++)
        for (uint32_t i = 0; i < confs[c]->n; i++)
            ids[n_ids++] = confs[c]->members[i].id;
    for (uint32_t i = 0; i < n->n_seed_peers; i++)
        ids[n_ids++] = n->seed_peers[i].id;
    for (size_t k = 0; k < n_ids; k++) {
        raft_id id = ids[k];
        if (id == n->cfg.id) continue;
        bool have = false;
        for (uint32_t i = 0; i < n->n_tr_peers && !have; i++)
            have = n->tr_peers[i].id == id;
        if (have || !want_peer(n, id, addr) || n->n_tr_peers == RAFT_MEMBERS_MAX) continue;
        int rc = tr_peer_add(n->tr, id, addr);
        if (rc != 0 && rc != ST_EEXIST) {
            ST_TRACE_WARN(MOD, "node %" PRIu64 ": cannot add transport peer %" PRIu64 " at %s: %s",
                          n->cfg.id, id, addr, st_strerror(rc));
            continue;
        }
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": transport peer %" PRIu64 " at %s", n->cfg.id, id,
                      addr);
        n->tr_peers[n->n_tr_peers].id = id;
        snprintf(n->tr_peers[n->n_tr_peers].raft, NODE_ADDR_MAX, "%s", addr);
        n->tr_peers[n->n_tr_peers].http[0] = '\0';
        n->n_tr_peers++;
    }
}

/* ------------------------------------------------------------ snapshots */

/* The cursor's output: appended to the io buffer being filled (written
 * by the threadpool, snapshot_step). */
static int snap_sink_cb(void *ctx, const void *data, size_t len)
{
    struct node_snap_job *job = ctx;
    struct node_snap_io *io = job->io;
    int f = io->fill;
    if (io->len[f] + len > io->cap[f]) {
        size_t cap = io->cap[f] ? io->cap[f] : 64u << 10;
        while (cap < io->len[f] + len)
            cap *= 2;
        uint8_t *b = realloc(io->buf[f], cap);
        if (!b) return ST_ENOMEM;
        io->buf[f] = b;
        io->cap[f] = cap;
    }
    memcpy(io->buf[f] + io->len[f], data, len);
    io->len[f] += len;
    return 0;
}

static void snap_io_free(struct node_snap_io *io)
{
    if (io->w) st_snap_write_abort(io->w);
    free(io->buf[0]);
    free(io->buf[1]);
    free(io);
}

static void snap_io_work_cb(uv_work_t *req)
{
    struct node_snap_io *io = req->data;
    int b = 1 - io->fill; /* the buffer handed over */
    if (io->rc == 0) io->rc = st_snap_write(io->w, io->buf[b], io->len[b]);
}

static void stop_maybe_finish(struct node *n);

static void snap_io_after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct node_snap_io *io = req->data;
    struct node *n = io->n;
    n->bg_pending--;
    io->busy = false;
    io->len[1 - io->fill] = 0;
    if (io->orphan) snap_io_free(io);
    if (n->stopping) stop_maybe_finish(n);
}

/* Hands the filled buffer to the threadpool. Returns 0 or the error (then
 * written synchronously: nothing is lost, the step just stalls once). */
static void snap_io_flush(struct node *n, struct node_snap_io *io)
{
    io->fill = 1 - io->fill;
    io->busy = true;
    io->work.data = io;
    if (uv_queue_work(n->loop, &io->work, snap_io_work_cb, snap_io_after_cb) == 0) {
        n->bg_pending++;
        return;
    }
    snap_io_work_cb(&io->work);
    io->busy = false;
    io->len[1 - io->fill] = 0;
}

/* The kv meta blob: membership with addresses, human-readable. */
static size_t snapshot_meta_blob(const struct node *n, char *out, size_t cap)
{
    size_t off = 0;
    int w = snprintf(out, cap, "stcache-node-meta 1\ncluster_id %016" PRIx64 "\nmembers %u\n",
                     n->cluster_id, n->conf_applied.n);
    if (w < 0 || (size_t)w >= cap) return 0;
    off = (size_t)w;
    for (uint32_t i = 0; i < n->conf_applied.n; i++) {
        const struct raft_member *m = &n->conf_applied.members[i];
        w = snprintf(out + off, cap - off, "%" PRIu64 " %s %.*s\n", m->id,
                     m->role == RAFT_VOTER ? "voter" : "learner", (int)m->context_len, m->context);
        if (w < 0 || (size_t)w >= cap - off) return off;
        off += (size_t)w;
    }
    return off;
}

static struct node_persist *persist_get(struct node *n);
static void persist_enqueue(struct node *n, struct node_persist *p);
static int persist_write(struct node *n, struct node_persist *p, const struct st_log_batch *b,
                         bool inline_ok);

/* ------------------------------------------------------------ snapshots
 *
 * A snapshot is written incrementally (kv snapshot cursor): a job starts at
 * `applied`, and every pass of readies writes about NODE_SNAP_STEP_BYTES
 * (cfg.snapshot_step_bytes) of it, so the loop keeps sending heartbeats,
 * serving reads and applying committed entries meanwhile: the cursor emits
 * the kv as it was at the job's index whatever is applied after it
 * (copy-on-write inside the kv, docs/KV.md), and the meta (membership) is
 * taken at the start. Nothing waits for the job. POST /snapshot runs a job
 * to completion at once. A snapshot installed from the leader abandons a
 * running job first (the kv refuses a restore under an open cursor).
 *
 *   idle --snapshot_start--> active --step*--> done: commit (threadpool), compact
 *                                         \--> failed/abandoned: released
 */

/* Answers every node_snapshot_now() caller (the list is taken first: a
 * callback may ask again). */
static void snap_waiters_notify(struct node *n, int status, raft_index index)
{
    uint32_t k = n->n_snap_waiters;
    if (k == 0) return;
    struct {
        node_snapshot_cb cb;
        void *ctx;
    } w[NODE_SNAP_WAITERS_MAX];
    memcpy(w, n->snap_waiters, k * sizeof w[0]);
    n->n_snap_waiters = 0;
    for (uint32_t i = 0; i < k; i++)
        w[i].cb(w[i].ctx, status, index);
}

static void snap_job_release(struct node *n)
{
    struct node_snap_job *job = &n->snap_job;
    if (job->cur) kv_snapshot_end(job->cur);
    if (job->io) {
        if (job->io->busy)
            job->io->orphan = true; /* its completion aborts the writer and frees it */
        else
            snap_io_free(job->io);
        job->w = NULL; /* the io's */
    }
    if (job->w) st_snap_write_abort(job->w);
    free(job->blob);
    free(job->meta);
    memset(job, 0, sizeof *job);
    n->snap_active = false;
}

/* After a snapshot the heap has large free stretches: the compacted log's
 * payloads (released over the following ticks, raft_int.h) and, after a
 * restore, the whole previous kv. glibc returns only the top of the heap by
 * itself; free pages in the middle stay resident until malloc_trim() gives
 * them back (MADV_DONTNEED). Its cost is a walk of the free lists, a few
 * ms at rest but tens of ms on a large heap churned by writes (it holds the
 * arena while it madvises), so it runs NODE_TRIM_DELAY_TICKS later, when the
 * release is done, and only once nothing was applied for
 * NODE_TRIM_QUIET_TICKS: under a steady write load the freed log memory is
 * reused by the next entries anyway (RSS stays within the state and the log
 * bound), and the trim would stall the loop that serves the load. */
static void memory_trim_schedule(struct node *n)
{
    n->trim_at_tick = n->ticks + NODE_TRIM_DELAY_TICKS;
}

/* The trim runs on the threadpool: it takes 10 ms and more on a large heap
 * (512 MiB here), which the loop need not wait for; the loop only waits if
 * it allocates in the arena being trimmed at that moment. */
struct node_trim {
    uv_work_t work;
    struct node *n;
    uint64_t took_us;
};

static void memory_trim_work_cb(uv_work_t *req)
{
    struct node_trim *t = req->data;
    uint64_t t0 = node_now_us();
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
    t->took_us = node_now_us() - t0;
}

static void memory_trim_after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct node_trim *t = req->data;
    struct node *n = t->n;
    n->bg_pending--;
    n->m.memory_trims++;
    n->m.memory_trim_us += t->took_us;
    ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": free heap returned to the OS in %" PRIu64 " us",
                   n->cfg.id, t->took_us);
    free(t);
    if (n->stopping) stop_maybe_finish(n);
}

static void memory_trim_maybe(struct node *n)
{
    if (!n->trim_at_tick || n->ticks < n->trim_at_tick) return;
    if (n->ticks - n->last_apply_tick < NODE_TRIM_QUIET_TICKS) return; /* busy: later */
    n->trim_at_tick = 0;
    struct node_trim *t = calloc(1, sizeof *t);
    if (!t) return;
    t->n = n;
    t->work.data = t;
    if (uv_queue_work(n->loop, &t->work, memory_trim_work_cb, memory_trim_after_cb) != 0) {
        free(t);
        return;
    }
    n->bg_pending++;
}

/* Compaction after a snapshot at idx: the core keeps trailing entries for
 * lagging followers (bounded by count and bytes) and tells us the first
 * index it still needs; the WAL may drop the rest, whole segments at a time
 * (a restart then reads back only what the core would hold). */
static raft_index snapshot_compact(struct node *n, raft_index idx)
{
    raft_index first = raft_snapshot_taken(n->raft, idx);
    raft_term cterm = first > 1 ? raft_term_at(n->raft, first - 1) : 0;
    if (first > 1 && cterm != 0 && n->writer) {
        struct st_log_batch b;
        memset(&b, 0, sizeof b);
        b.snapshot_index = first - 1;
        b.snapshot_term = cterm;
        struct node_persist *p = persist_get(n);
        if (p) {
            int rc = persist_write(n, p, &b, false);
            if (rc) {
                ST_TRACE_WARN(MOD, "snapshot: WAL compaction not queued: %s", st_strerror(rc));
                p->seq = 0;
            }
            p->submit_us = node_now_us();
            persist_enqueue(n, p);
        }
    }
    return first;
}

/* The end of a snapshot: the files are durable (or failed). */
static void snapshot_committed(struct node *n, const struct raft_snapshot_meta *meta,
                               const struct st_snapshot_info *info, int rc, uint64_t took_us,
                               uint64_t written_us)
{
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot at %" PRIu64 " failed: %s", n->cfg.id,
                       meta->index, st_strerror(rc));
        snap_waiters_notify(n, rc, 0);
        return;
    }
    if (meta->index <= n->snapshot_index) { /* overtaken by an installed one */
        snap_waiters_notify(n, 0, n->snapshot_index);
        return;
    }
    n->snapshot_index = meta->index;
    n->last_snapshot_us = node_now_us();
    n->m.snapshots_taken++;
    raft_index first = snapshot_compact(n, meta->index);
    memory_trim_schedule(n);
    ST_TRACE_INFO(MOD,
                  "node %" PRIu64 ": snapshot at index %" PRIu64 " (%" PRIu64
                  " bytes, written in %" PRIu64 " us, durable after %" PRIu64
                  " us), log kept from %" PRIu64,
                  n->cfg.id, meta->index, info->data_bytes, written_us, took_us, first);
    snap_waiters_notify(n, 0, meta->index);
}


/* Threadpool: fsync the data and meta, rename, fsync the directory. The
 * store serializes its shared state; nothing else touches this writer. */
static void snap_commit_work_cb(uv_work_t *req)
{
    struct node_snap_commit *c = req->data;
    c->rc = st_snap_write_commit(c->w, c->meta, &c->info);
    c->w = NULL;
}

static void snap_commit_after_cb(uv_work_t *req, int status)
{
    struct node_snap_commit *c = req->data;
    struct node *n = c->n;
    (void)status; /* never canceled */
    n->snap_commit = NULL;
    if (n->stopping) {
        if (c->rc == 0)
            ST_TRACE_INFO(MOD, "node %" PRIu64 ": snapshot at %" PRIu64 " stored while stopping",
                          n->cfg.id, c->meta->index);
    } else {
        snapshot_committed(n, c->meta, &c->info, c->rc, node_now_us() - c->t0, c->written_us);
    }
    free(c->meta);
    free(c);
    if (n->stopping) stop_maybe_finish(n);
}

/* Writes up to `budget` bytes of the running job (0: all of it). Returns 1
 * while more remains, 0 when the job ended. Once every byte went to the
 * snapshot writer the cursor is released, and the files are made durable on
 * the threadpool (sync: here, and *rc_out tells the outcome). */
static int snapshot_step(struct node *n, size_t budget, bool sync, int *rc_out)
{
    struct node_snap_job *job = &n->snap_job;
    struct node_snap_io *io = job->io;
    if (io->busy) return 1; /* the previous step's bytes are being written */
    int rc = io->rc;
    if (rc == 0 && job->cur) {
        rc = kv_snapshot_next(job->cur, budget);
        if (rc == 0) { /* every byte is in the buffers: the state may move on */
            kv_snapshot_end(job->cur);
            job->cur = NULL;
        }
        if (rc >= 0 && io->len[io->fill] > 0) {
            snap_io_flush(n, io);
            return 1;
        }
        if (rc == 1) return 1;
    }
    if (rc_out) *rc_out = rc;
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot at %" PRIu64 " failed: %s", n->cfg.id,
                       job->meta->index, st_strerror(rc));
        n->applied_at_snapshot = job->meta->index; /* no retry before the next threshold */
        snap_job_release(n);
        snap_waiters_notify(n, rc, 0);
        return 0;
    }
    /* the cursor ended and its last bytes are written */
    struct st_snap_writer *w = io->w;
    io->w = NULL;
    job->w = NULL;
    struct raft_snapshot_meta *meta = job->meta;
    uint64_t t0 = job->t0;
    uint64_t written_us = node_now_us() - t0;
    job->w = NULL;
    job->meta = NULL;
    snap_job_release(n);
    n->applied_at_snapshot = meta->index;
    struct node_snap_commit *c = sync ? NULL : calloc(1, sizeof *c);
    if (c) {
        c->n = n;
        c->w = w;
        c->meta = meta;
        c->t0 = t0;
        c->written_us = written_us;
        c->work.data = c;
        if (uv_queue_work(n->loop, &c->work, snap_commit_work_cb, snap_commit_after_cb) == 0) {
            n->snap_commit = c;
            return 0;
        }
        free(c);
    }
    struct st_snapshot_info info;
    memset(&info, 0, sizeof info);
    rc = st_snap_write_commit(w, meta, &info); /* frees w whatever it returns */
    snapshot_committed(n, meta, &info, rc, node_now_us() - t0, written_us);
    free(meta);
    if (rc_out) *rc_out = rc;
    return 0;
}

/* Starts a snapshot job at `applied` (nothing if one runs or nothing new
 * was applied since the last snapshot). */
static int snapshot_start(struct node *n)
{
    if (n->snap_active || n->snap_commit || n->applied == 0 || n->applied <= n->snapshot_index)
        return 0;
    struct node_snap_job *job = &n->snap_job;
    memset(job, 0, sizeof *job);
    job->t0 = node_now_us();
    job->blob = malloc(KV_SNAPSHOT_META_BYTES_MAX);
    job->meta = malloc(sizeof *job->meta);
    job->io = calloc(1, sizeof *job->io);
    int rc = job->blob && job->meta && job->io ? 0 : ST_ENOMEM;
    if (rc == 0) rc = st_snap_write_begin(n->storage->snaps, &job->w);
    if (rc == 0) {
        job->io->n = n;
        job->io->w = job->w;
        job->meta->index = n->applied;
        job->meta->term = n->applied_term;
        job->meta->conf = n->conf_applied;
        job->blob_len = snapshot_meta_blob(n, job->blob, KV_SNAPSHOT_META_BYTES_MAX);
        rc = kv_snapshot_begin(n->kv, n->applied, job->blob, job->blob_len, snap_sink_cb, job,
                               &job->cur);
    }
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": cannot start a snapshot: %s", n->cfg.id,
                       st_strerror(rc));
        snap_job_release(n);
        return rc;
    }
    n->snap_active = true;
    /* The job holds the kv as of applied: only what follows counts now. */
    n->log_bytes_since_snapshot = 0;
    return 0;
}

int node_snapshot_now(struct node *n, node_snapshot_cb cb, void *ctx)
{
    if (!n->running || n->stopping) return ST_ECLOSED;
    if (n->fatal) return ST_EIO;
    if (n->n_snap_waiters == NODE_SNAP_WAITERS_MAX) return ST_EBUSY;
    if (!n->snap_commit) {
        int rc = snapshot_start(n);
        if (rc) return rc;
        if (!n->snap_active) { /* nothing applied since the newest snapshot */
            cb(ctx, 0, n->snapshot_index);
            return 0;
        }
    }
    n->snap_waiters[n->n_snap_waiters].cb = cb;
    n->snap_waiters[n->n_snap_waiters].ctx = ctx;
    n->n_snap_waiters++;
    return 0;
}

/* A snapshot is due when the applied index crosses a multiple of the
 * threshold shifted by a quarter of it per node id (ids 1..4 -> 0, 1/4, 1/2,
 * 3/4): the members of a cluster apply the same indexes, and without the
 * shift all of them wrote their snapshot (and compacted) at the same moment,
 * stalling a whole quorum at once; write p99 at 128 clients was set by it.
 * The spacing stays about one threshold per node. */
static bool snapshot_due(const struct node *n, uint64_t threshold)
{
    if (threshold == 0) return false;
    if (n->cfg.snapshot_interval_s) /* the seed's rule: N entries since the last */
        return n->applied - n->applied_at_snapshot >= threshold;
    uint64_t shift = ((n->cfg.id - 1) % 4) * (threshold / 4);
    return (n->applied + shift) / threshold > (n->applied_at_snapshot + shift) / threshold;
}

/* The bytes trigger: the log applied since the last snapshot holds
 * cfg.snapshot_log_bytes of payload, less an eighth of it per node id
 * (ids 1..4 -> 8/8, 7/8, 6/8, 5/8) for the reason the count trigger is
 * staggered. It ignores --snapshot-interval: it bounds memory (the log in
 * memory, the WAL on disk and what a restart reads back). */
static bool snapshot_due_bytes(const struct node *n)
{
    uint64_t limit = n->cfg.snapshot_log_bytes;
    if (limit == 0) return false;
    limit -= ((n->cfg.id - 1) % 4) * (limit / 8);
    return n->log_bytes_since_snapshot >= limit;
}

static void snapshot_maybe(struct node *n, bool interval_due)
{
    if (n->snap_active || n->snap_commit) return;
    if (!snapshot_due_bytes(n)) {
        if (!snapshot_due(n, n->cfg.snapshot_threshold)) return;
        if (n->cfg.snapshot_interval_s != 0 && !interval_due) return;
    }
    (void)snapshot_start(n);
}

/* Loads the stored snapshot at `index` into a new kv (*out, the caller's),
 * through rd when the caller opened it already (consumed; pre_info is its
 * info), else opening it. Touches neither the node nor its kv: runs on the
 * threadpool for a leader's snapshot, on the loop at start. */
static int kv_load_snapshot(const struct kv_config *kc, struct st_snap_store *snaps,
                            raft_index index, struct st_snap_reader *rd,
                            const struct st_snapshot_info *pre_info, struct kv **out,
                            struct st_snapshot_info *info, uint64_t *keys)
{
    int rc = 0;
    if (rd)
        *info = *pre_info;
    else
        rc = st_snap_read_open(snaps, index, &rd, info);
    if (rc) return rc;
    struct kv *kv;
    rc = kv_create(kc, &kv);
    if (rc) {
        st_snap_read_close(rd);
        return rc;
    }
    struct kv_restore *kr;
    rc = kv_restore_begin(kv, &kr);
    uint8_t *buf = rc ? NULL : malloc(NODE_SCRATCH_BYTES);
    if (rc == 0 && !buf) {
        kv_restore_abort(kr);
        rc = ST_ENOMEM;
    }
    if (rc) {
        kv_destroy(kv);
        st_snap_read_close(rd);
        return rc;
    }
    for (;;) {
        size_t got = 0;
        rc = st_snap_read(rd, buf, NODE_SCRATCH_BYTES, &got);
        if (rc || got == 0) break;
        rc = kv_restore_feed(kr, buf, got);
        if (rc) break;
    }
    free(buf);
    st_snap_read_close(rd);
    if (rc) {
        kv_restore_abort(kr);
        kv_destroy(kv);
        return rc;
    }
    struct kv_snapshot_info kinfo;
    rc = kv_restore_finish(kr, &kinfo);
    if (rc) {
        kv_destroy(kv);
        return rc;
    }
    free(kinfo.meta);
    *keys = kinfo.keys;
    *out = kv;
    return 0;
}

struct node_kv_free {
    uv_work_t work;
    struct node *n;
    struct kv *kv;
};

static void kv_free_work_cb(uv_work_t *req)
{
    struct node_kv_free *f = req->data;
    kv_destroy(f->kv);
}


static void kv_free_after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct node_kv_free *f = req->data;
    struct node *n = f->n;
    free(f);
    n->bg_pending--;
    if (n->stopping) stop_maybe_finish(n);
}

/* Frees a kv that nothing references any more on the threadpool: a large
 * state takes long to free (one free() per key). */
static void kv_destroy_later(struct node *n, struct kv *kv)
{
    struct node_kv_free *f = calloc(1, sizeof *f);
    if (f) {
        f->n = n;
        f->kv = kv;
        f->work.data = f;
        if (uv_queue_work(n->loop, &f->work, kv_free_work_cb, kv_free_after_cb) == 0) {
            n->bg_pending++;
            return;
        }
        free(f);
    }
    kv_destroy(kv);
}

/* Makes kv (loaded from the snapshot described by info) the node's state. */
static void snapshot_adopt(struct node *n, struct kv *kv, const struct st_snapshot_info *info,
                           uint64_t keys)
{
    struct kv *old = n->kv;
    n->kv = kv;
    if (old) kv_destroy_later(n, old);
    n->applied = info->meta.index;
    n->applied_term = info->meta.term;
    n->conf_applied = info->meta.conf;
    n->snapshot_index = info->meta.index;
    n->applied_at_snapshot = info->meta.index;
    n->log_bytes_since_snapshot = 0;
    n->conf_dirty = true;
    memory_trim_schedule(n);
    ST_TRACE_INFO(MOD,
                  "node %" PRIu64 ": restored snapshot at index %" PRIu64 " (%" PRIu64 " keys)",
                  n->cfg.id, info->meta.index, keys);
}

/* Restores the kv from the stored snapshot at index, on the loop (at start,
 * and for a leader's snapshot that was not loaded ahead). */
static int snapshot_restore(struct node *n, raft_index index)
{
    struct kv *kv = NULL;
    struct st_snapshot_info info;
    uint64_t keys = 0;
    struct st_snap_reader *rd = NULL;
    if (n->snap_in_rd && n->snap_in_rd_info.meta.index == index) {
        rd = n->snap_in_rd; /* opened when it was received */
        n->snap_in_rd = NULL;
    }
    int rc = kv_load_snapshot(&n->kv_cfg, n->storage->snaps, index, rd, &n->snap_in_rd_info, &kv,
                              &info, &keys);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot %" PRIu64 " restore failed: %s", n->cfg.id,
                       index, st_strerror(rc));
        return rc;
    }
    snapshot_adopt(n, kv, &info, keys);
    return 0;
}

/* ------------------------------------------- installing a snapshot off the loop
 *
 * A leader's snapshot arrives as a file (the transport stores it, fsynced,
 * before it hands over the RAFT_MSG_SNAPSHOT). Loading it into a kv takes
 * time proportional to the state, so the node holds the message, loads the
 * file into a NEW kv on the threadpool, and only then steps the message into
 * the core; the ready that installs the snapshot swaps the kvs (O(1)) and
 * the old one is freed on the threadpool. The loop keeps ticking, serving
 * reads from the old state and answering peers meanwhile. One load at a
 * time: another snapshot message while one loads is dropped (the leader
 * sends it again). */
static void install_free(struct node *n)
{
    struct node_install *in = n->install;
    n->install = NULL;
    if (in->kv) kv_destroy_later(n, in->kv);
    free(in);
}

static void install_work_cb(uv_work_t *req)
{
    struct node_install *in = req->data;
    struct st_snapshot_info info;
    in->rc = kv_load_snapshot(&in->kv_cfg, in->snaps, in->meta.index, in->rd, &in->rd_info,
                              &in->kv, &info, &in->keys);
    in->rd = NULL; /* consumed */
}

static void install_after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct node_install *in = req->data;
    struct node *n = in->n;
    n->bg_pending--;
    in->loaded = true;
    if (n->stopping || !n->running || n->fatal) {
        install_free(n);
        if (n->stopping) stop_maybe_finish(n);
        return;
    }
    if (in->rc)
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot %" PRIu64 " from %" PRIu64
                       " cannot be loaded: %s", n->cfg.id, in->meta.index, in->from,
                       st_strerror(in->rc));
    else
        n->m.snapshots_loaded_off_loop++;
    /* Stepped either way: a failed load is retried on the loop by the ready
     * (and is fatal there, as a damaged snapshot file is). */
    int rc = raft_step(n->raft, &in->msg);
    if (rc || !raft_has_ready(n->raft)) {
        ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": snapshot %" PRIu64 " not taken by the core: %s",
                       n->cfg.id, in->meta.index, st_strerror(rc));
        install_free(n);
    }
}

/* Returns true when msg was taken (held while its snapshot loads). */
static bool install_begin(struct node *n, raft_id from, const struct raft_msg *msg)
{
    if (msg->snapshot->index <= n->applied) return false; /* stale: the core answers it */
    if (n->install) {
        if (!n->install->loaded) return true; /* one load at a time: dropped */
        install_free(n);
    }
    struct node_install *in = calloc(1, sizeof *in);
    if (!in) return false;
    in->n = n;
    in->from = from;
    in->meta = *msg->snapshot;
    in->msg = *msg;
    in->msg.snapshot = &in->meta;
    in->msg.entries = NULL;
    in->msg.n_entries = 0;
    in->snaps = n->storage->snaps;
    in->kv_cfg = n->kv_cfg;
    if (n->snap_in_rd && n->snap_in_rd_info.meta.index == in->meta.index) {
        in->rd = n->snap_in_rd; /* opened when it was received */
        in->rd_info = n->snap_in_rd_info;
        n->snap_in_rd = NULL;
    }
    in->work.data = in;
    if (uv_queue_work(n->loop, &in->work, install_work_cb, install_after_cb) != 0) {
        free(in);
        return false;
    }
    n->install = in;
    n->bg_pending++;
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": loading snapshot %" PRIu64 " from %" PRIu64
                  " off the loop", n->cfg.id, msg->snapshot->index, from);
    return true;
}

/* ------------------------------------------------------------- persist */

static struct node_persist *persist_get(struct node *n)
{
    struct node_persist *p = n->persist_free;
    if (p) {
        n->persist_free = p->next;
    } else {
        p = calloc(1, sizeof *p);
        if (!p) return NULL;
    }
    p->seq = 0;
    p->index = 0;
    p->term = 0;
    p->n_bufs = 0;
    p->n_msgs = 0;
    p->has_batch = false;
    p->held = false;
    p->next = NULL;
    return p;
}

static void persist_release(struct node *n, struct node_persist *p)
{
    for (size_t i = 0; i < p->n_bufs; i++)
        raft_buf_unref(p->bufs[i]);
    p->n_bufs = 0;
    for (size_t i = 0; i < p->n_msgs; i++) {
        struct raft_msg *m = &p->msgs[i];
        for (uint32_t k = 0; k < m->n_entries; k++)
            raft_buf_unref(m->entries[k].buf);
        free(m->entries);
        free(m->snapshot);
    }
    p->n_msgs = 0;
    p->next = n->persist_free;
    n->persist_free = p;
}

static void persist_enqueue(struct node *n, struct node_persist *p)
{
    p->next = NULL;
    if (n->persist_tail)
        n->persist_tail->next = p;
    else
        n->persist_head = p;
    n->persist_tail = p;
    if (p->seq) n->persist_inflight++;
}

static int persist_hold_buf(struct node_persist *p, struct raft_buf *b)
{
    if (!b) return 0;
    if (p->n_bufs > 0 && p->bufs[p->n_bufs - 1] == b) return 0;
    if (p->n_bufs == p->cap_bufs) {
        size_t cap = p->cap_bufs ? p->cap_bufs * 2 : 16;
        struct raft_buf **nb = realloc(p->bufs, cap * sizeof *nb);
        if (!nb) return ST_ENOMEM;
        p->bufs = nb;
        p->cap_bufs = cap;
    }
    raft_buf_ref(b);
    p->bufs[p->n_bufs++] = b;
    return 0;
}

static int persist_copy_msg(struct node_persist *p, const struct raft_msg *m)
{
    if (p->n_msgs == p->cap_msgs) {
        size_t cap = p->cap_msgs ? p->cap_msgs * 2 : 8;
        struct raft_msg *nm = realloc(p->msgs, cap * sizeof *nm);
        if (!nm) return ST_ENOMEM;
        p->msgs = nm;
        p->cap_msgs = cap;
    }
    struct raft_msg *c = &p->msgs[p->n_msgs];
    *c = *m;
    c->snapshot = NULL;
    c->entries = NULL;
    c->n_entries = 0;
    if (m->snapshot) {
        /* A new leader sends everything after its term is durable,
         * snapshots included. */
        struct raft_snapshot_meta *meta = malloc(sizeof *meta);
        if (!meta) return ST_ENOMEM;
        *meta = *m->snapshot;
        c->snapshot = meta;
    }
    if (m->n_entries) {
        c->entries = malloc(m->n_entries * sizeof *c->entries);
        if (!c->entries) {
            free(c->snapshot);
            return ST_ENOMEM;
        }
        c->n_entries = m->n_entries;
        memcpy(c->entries, m->entries, m->n_entries * sizeof *c->entries);
        for (uint32_t k = 0; k < m->n_entries; k++)
            if (c->entries[k].buf) raft_buf_ref(c->entries[k].buf);
    }
    p->n_msgs++;
    return 0;
}

static void send_msg(struct node *n, const struct raft_msg *m);

/* ------------------------------------------------------------ full disk
 *
 * A WAL batch that fails with ST_ENOSPC was not written at all, and the
 * writer fails every later one the same way (st_log_writer_resume). Nothing
 * is lost: every persist request keeps a copy of its batch, and those that
 * failed, and every one made while the alarm is raised, are held in the FIFO
 * in their order. Every NODE_NOSPACE_RETRY_MS, once the writer has reported
 * every batch it was given, the writer is resumed and the held batches are
 * submitted again, in order; the alarm clears when they have been written.
 * Meanwhile the core sees a slow disk (nothing acknowledged, no vote sent
 * before its term is durable), clients' writes are refused with ST_ENOSPC
 * and reads are served. A failed fsync stays fatal (DESIGN 3.8). */
#define NODE_NOSPACE_RETRY_MS 500

static bool persist_any_held(const struct node *n)
{
    for (const struct node_persist *p = n->persist_head; p; p = p->next)
        if (p->held) return true;
    return false;
}

static void nospace_retry(struct node *n);

static void nospace_timer_cb(uv_timer_t *t)
{
    nospace_retry(t->data);
}

static void nospace_raise(struct node *n)
{
    if (n->nospace) return;
    n->nospace = true;
    n->nospace_since_us = node_now_us();
    n->m.nospace_alarms++;
    ST_TRACE_ERROR(MOD,
                   "node %" PRIu64 ": ALARM no_space: the disk of %s is full; writes are "
                   "refused until space is freed (retrying every %u ms)",
                   n->cfg.id, n->cfg.data_dir, NODE_NOSPACE_RETRY_MS);
    uv_timer_start(&n->nospace_timer, nospace_timer_cb, NODE_NOSPACE_RETRY_MS,
                   NODE_NOSPACE_RETRY_MS);
    /* A leader that cannot write hands leadership to a voter that can, when
     * one is caught up; the cluster then goes on writing without it. */
    if (n->role == RAFT_LEADER) {
        const struct raft_conf *conf = raft_conf_get(n->raft);
        for (uint32_t i = 0; i < conf->n; i++) {
            const struct raft_member *m = &conf->members[i];
            if (m->id == n->cfg.id || m->role != RAFT_VOTER) continue;
            if (raft_transfer_leadership(n->raft, m->id) == 0) {
                ST_TRACE_INFO(MOD, "node %" PRIu64 ": handing leadership to %" PRIu64
                              " while the disk is full", n->cfg.id, m->id);
                break;
            }
        }
    }
}

static void nospace_clear(struct node *n)
{
    n->nospace = false;
    uv_timer_stop(&n->nospace_timer);
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": alarm no_space cleared after %" PRIu64 " ms", n->cfg.id,
                  (node_now_us() - n->nospace_since_us) / 1000);
}

static void nospace_retry(struct node *n)
{
    if (!n->running || n->stopping || n->fatal || !n->writer) return;
    uv_mutex_lock(&n->wmu);
    bool idle = n->w_done_seq >= n->persist_last_seq;
    if (idle) n->w_nospace_seq = 0;
    uv_mutex_unlock(&n->wmu);
    if (!idle) return; /* results still to come: next time */
    st_log_writer_resume(n->writer);
    for (struct node_persist *p = n->persist_head; p; p = p->next) {
        if (!p->held) continue;
        int rc = st_log_writer_submit(n->writer, &p->batch, &p->seq);
        if (rc == ST_EBUSY) {
            p->seq = 0; /* the rest waits for the next retry, still in order */
            break;
        }
        if (rc) {
            node_fatal(n, rc, "cannot queue a WAL write");
            return;
        }
        n->persist_last_seq = p->seq;
        p->held = false;
        p->submit_us = node_now_us();
        n->persist_inflight++;
    }
}

/* Gives a persist request its batch: copied into p (entry structs; the
 * payloads are already referenced by p->bufs), then written (wal_write) or,
 * while the disk is full, held. Returns 0 or a fatal code. */
static int wal_write(struct node *n, const struct st_log_batch *b, uint64_t *seq);

static int persist_write(struct node *n, struct node_persist *p, const struct st_log_batch *b,
                         bool inline_ok)
{
    if (b->n_entries > p->cap_ents) {
        size_t cap = p->cap_ents ? p->cap_ents : 16;
        while (cap < b->n_entries)
            cap *= 2;
        struct raft_entry *e = realloc(p->ents, cap * sizeof *e);
        if (!e) return ST_ENOMEM;
        p->ents = e;
        p->cap_ents = cap;
    }
    p->batch = *b;
    if (b->n_entries) memcpy(p->ents, b->entries, b->n_entries * sizeof *b->entries);
    p->batch.entries = b->n_entries ? p->ents : NULL;
    if (b->hard_state) {
        p->hs = *b->hard_state;
        p->batch.hard_state = &p->hs;
    }
    p->has_batch = true;
    if (n->nospace) { /* held requests exist only while the alarm is raised */
        p->held = true;
        p->seq = 0;
        return 0;
    }
    int rc = inline_ok ? wal_write(n, &p->batch, &p->seq)
                       : st_log_writer_submit(n->writer, &p->batch, &p->seq);
    if (rc == 0) n->persist_last_seq = p->seq;
    return rc;
}

/* Completes every persist request the writer has finished, in order. */
static void persist_drain(struct node *n)
{
    uint64_t done, nospace_seq;
    int status;
    uint64_t done_us;
    uv_mutex_lock(&n->wmu);
    done = n->w_done_seq;
    status = n->w_status;
    nospace_seq = n->w_nospace_seq;
    done_us = n->w_done_us;
    uv_mutex_unlock(&n->wmu);
    if (status != 0 && !n->fatal) {
        node_fatal(n, status, "the WAL writer failed");
        return;
    }
    raft_index pi = 0;
    raft_term pt = 0;
    bool completed = false;
    if (nospace_seq) {
        /* The disk is full: the batch nospace_seq and every later one
         * reported so far were not written (the writer halts after the
         * first). They wait, in order, for nospace_retry(). */
        for (struct node_persist *q = n->persist_head; q; q = q->next) {
            if (!q->seq || q->seq < nospace_seq || q->seq > done) continue;
            q->seq = 0;
            q->held = true;
            n->persist_inflight--;
        }
        nospace_raise(n);
    }
    while (n->persist_head && !n->persist_head->held && n->persist_head->seq <= done) {
        struct node_persist *p = n->persist_head;
        completed = completed || p->seq != 0;
        n->persist_head = p->next;
        if (!n->persist_head) n->persist_tail = NULL;
        if (p->seq) {
            n->persist_inflight--;
            uint64_t took = done_us > p->submit_us ? done_us - p->submit_us : 0;
            node_hist_add(&n->m.fsync, took);
            node_wal_inline_observe(&n->wal_inline, took, done_us);
        }
        for (size_t i = 0; i < p->n_msgs && n->tr && !n->stopping; i++)
            send_msg(n, &p->msgs[i]);
        if (p->index) {
            pi = p->index;
            pt = p->term;
        }
        persist_release(n, p);
    }
    if (pi && n->raft && !n->stopping) raft_persisted(n->raft, pi, pt);
    if (n->nospace && completed && nospace_seq == 0 && !persist_any_held(n)) nospace_clear(n);
}

/* Writer thread: record what is durable, wake the loop. */
static void writer_cb(void *ctx, const struct st_log_writer_result *res)
{
    struct node *n = ctx;
    uint64_t now = node_now_us();
    uv_mutex_lock(&n->wmu);
    if (res->status == ST_ENOSPC) {
        /* this result covers (w_done_seq, res->seq]: the first of them failed */
        if (n->w_nospace_seq == 0) n->w_nospace_seq = n->w_done_seq + 1;
    } else if (res->status != 0 && n->w_status == 0) {
        n->w_status = res->status;
    }
    if (res->seq > n->w_done_seq) n->w_done_seq = res->seq;
    n->w_done_us = now;
    uv_mutex_unlock(&n->wmu);
    /* inline (write_now on the loop): process_one_ready drains it */
    if (!res->on_caller_thread) uv_async_send(&n->persist_async);
}

static void persist_async_cb(uv_async_t *h)
{
    struct node *n = h->data;
    if (!n->running || n->stopping) return;
    persist_drain(n);
}

/* ------------------------------------------------------------- sending */

static void send_msg(struct node *n, const struct raft_msg *m)
{
    if (m->type == RAFT_MSG_SNAPSHOT) {
        char path[NODE_PATH_MAX + 128];
        struct st_snapshot_info info;
        ST_ASSERT(m->snapshot);
        int rc = st_snap_data_path(n->storage->snaps, m->snapshot->index, path, sizeof path, &info);
        if (rc == 0) rc = tr_send_snapshot(n->tr, m, path, info.data_bytes);
        if (rc) {
            ST_TRACE_DEBUG(MOD,
                           "node %" PRIu64 ": snapshot %" PRIu64 " to %" PRIu64 " not sent: %s",
                           n->cfg.id, m->snapshot->index, m->to, st_strerror(rc));
            if (rc != ST_EBUSY) raft_report_snapshot(n->raft, m->to, false);
        } else {
            ST_TRACE_INFO(MOD,
                          "node %" PRIu64 ": streaming snapshot %" PRIu64 " (%" PRIu64
                          " bytes) to %" PRIu64,
                          n->cfg.id, m->snapshot->index, info.data_bytes, m->to);
        }
        return;
    }
    int rc;
    if (m->type == RAFT_MSG_PROPOSE && m->n_entries > 0 && m->entries[0].index == 0) {
        /* Workaround (requested from wire/, see notes/requests.md): the
         * codec refuses entries with index/term 0, which is what a
         * forwarded proposal carries; the leader ignores both (it appends
         * the payloads at its own index), so send placeholders. */
        struct raft_entry stack[16];
        struct raft_entry *ents = m->n_entries <= 16 ? stack : malloc(m->n_entries * sizeof *ents);
        if (!ents) return;
        struct raft_msg copy = *m;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            ents[i] = m->entries[i];
            ents[i].index = 1;
            ents[i].term = 1;
        }
        copy.entries = ents;
        rc = tr_send(n->tr, &copy);
        if (ents != stack) free(ents);
    } else {
        rc = tr_send(n->tr, m);
    }
    if (rc && rc != ST_EBUSY && rc != ST_ENOENT)
        ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": send %s to %" PRIu64 ": %s", n->cfg.id,
                       raft_msg_type_name(m->type), m->to, st_strerror(rc));
}

/* ------------------------------------------------------------ applying */

static void apply_conf_entry(struct node *n, const struct raft_entry *e)
{
    struct raft_conf_change cc;
    if (raft_conf_change_decode(e->data, e->len, &cc) != 0) {
        ST_TRACE_WARN(MOD, "node %" PRIu64 ": undecodable conf entry at %" PRIu64, n->cfg.id,
                      e->index);
        return;
    }
    if (raft_conf_apply(&n->conf_applied, &cc) != 0)
        ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": conf change at %" PRIu64 " had no effect", n->cfg.id,
                       e->index);
    n->conf_dirty = true;
    const char *op = cc.op == RAFT_CONF_ADD_VOTER     ? "voter"
                     : cc.op == RAFT_CONF_ADD_LEARNER ? "learner"
                                                      : "removed";
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": member %" PRIu64 " %s (%.*s) at index %" PRIu64,
                  n->cfg.id, cc.id, op, (int)cc.context_len, cc.context, e->index);
    if (cc.op == RAFT_CONF_REMOVE && cc.id == n->cfg.id)
        ST_TRACE_WARN(MOD, "node %" PRIu64 ": this node was removed from the cluster", n->cfg.id);
}

/* Applies a batch with the kv's cache misses overlapped: each command's
 * bucket is prefetched NODE_PREFETCH_BUCKET commands ahead and its chain's
 * first entry NODE_PREFETCH_ENTRY ahead (bench/kv: 1.3x per apply at 100k
 * and 1M keys). */
#define NODE_PREFETCH_BUCKET 8
#define NODE_PREFETCH_ENTRY 4

static void apply_prefetch(struct node *n, const struct raft_entry *e, int stage)
{
    if (e->type == RAFT_ENTRY_NORMAL && e->len > 0 && e->index > n->applied)
        kv_prefetch(n->kv, e->data, e->len, stage);
}

static void apply_committed(struct node *n, const struct raft_entry *ents, size_t count)
{
    if (count) n->last_apply_tick = n->ticks;
    if (count > 1) {
        for (size_t j = 0; j < count && j < NODE_PREFETCH_BUCKET; j++)
            apply_prefetch(n, &ents[j], 0);
        for (size_t j = 0; j < count && j < NODE_PREFETCH_ENTRY; j++)
            apply_prefetch(n, &ents[j], 1);
    }
    for (size_t i = 0; i < count; i++) {
        const struct raft_entry *e = &ents[i];
        if (i + NODE_PREFETCH_BUCKET < count) apply_prefetch(n, &ents[i + NODE_PREFETCH_BUCKET], 0);
        if (i + NODE_PREFETCH_ENTRY < count) apply_prefetch(n, &ents[i + NODE_PREFETCH_ENTRY], 1);
        if (e->index <= n->applied) continue;
        ST_ASSERT(e->index == n->applied + 1);
        if (e->type == RAFT_ENTRY_NORMAL && e->len > 0) {
            struct kv_result res;
            int rc = kv_apply(n->kv, e->index, e->data, e->len, &res);
            if (rc == ST_ENOMEM) {
                node_fatal(n, rc, "out of memory applying an entry");
                return;
            }
            if (rc == 0) {
                if (res.type == KV_CMD_PURGE_EXPIRED && res.purge_more) n->purge_more = true;
                node_memory_applied(n, &res);
                node_client_applied_kv(n, e->index, &res);
            } else
                ST_TRACE_WARN(MOD, "node %" PRIu64 ": entry %" PRIu64 " skipped: %s", n->cfg.id,
                              e->index, st_strerror(rc));
        } else if (e->type == RAFT_ENTRY_CONF) {
            apply_conf_entry(n, e);
        }
        n->applied = e->index;
        n->applied_term = e->term;
        n->log_bytes_since_snapshot += e->len;
        n->m.entries_applied++;
        node_client_applied_index(n, e);
        /* The thresholds are checked per entry: a snapshot starts exactly at
         * one, and the rest of the batch is applied under its cursor. */
        if (((n->cfg.snapshot_interval_s == 0 && snapshot_due(n, n->cfg.snapshot_threshold)) ||
             snapshot_due_bytes(n)) &&
            n->running && !n->fatal)
            snapshot_maybe(n, false);
    }
}

/* ------------------------------------------------------------- readies */

static void soft_state(struct node *n, const struct raft_ready *rd)
{
    bool leader_changed = rd->leader != n->leader;
    if (rd->role != n->role || leader_changed || rd->term != n->term)
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": %s, term %" PRIu64 ", leader %" PRIu64, n->cfg.id,
                      raft_role_name(rd->role), rd->term, rd->leader);
    if ((rd->role == RAFT_LEADER) != (n->role == RAFT_LEADER) || rd->term != n->term)
        node_memory_leader_changed(n, rd->role == RAFT_LEADER);
    n->role = rd->role;
    n->leader = rd->leader;
    n->term = rd->term;
    if (leader_changed) node_client_leader_changed(n, rd->leader);
}

/* Hands a batch to the WAL: a lone entry is written and synced right here
 * when the writer is idle and the disk has been quick
 * (st_log_writer_write_now: no thread hand-offs, which at low load cost
 * more than the write; the policy is node/wal_inline.h), else queued for the
 * writer's threads (group commit while this thread goes on). */
static int wal_write(struct node *n, const struct st_log_batch *b, uint64_t *seq)
{
    /* Not while a snapshot is written, made durable, received or loaded:
     * the disk is busy with it, and one inline fdatasync then took 25-50 ms
     * on the loop (1 GiB state, bench/reliability/snapshot_stall.py) before
     * the policy noticed. */
    bool snapshotting = n->snap_active || n->snap_commit || n->snap_in || n->install;
    if (!snapshotting && node_wal_inline_ok(&n->wal_inline, node_now_us(), b->n_entries, n->waiters_used,
                           n->role == RAFT_LEADER)) {
        int rc = st_log_writer_write_now(n->writer, b, seq);
        if (rc == 0) {
            n->wal_inline_done = true;
            n->m.wal_inline_batches++;
            return 0;
        }
        if (rc != ST_EBUSY) return rc;
    }
    return st_log_writer_submit(n->writer, b, seq);
}

static void process_one_ready(struct node *n)
{
    struct raft_ready rd;
    raft_ready_get(n->raft, &rd);
    n->m.readies++;
    if (rd.soft_state_changed) soft_state(n, &rd);

    struct st_log_batch b;
    memset(&b, 0, sizeof b);
    /* 1. A snapshot from the leader: restore the kv from the copy the
     * transport stored, and mark the log as covered by it. */
    if (rd.snapshot) {
        if (n->snap_active) {
            ST_TRACE_INFO(MOD, "node %" PRIu64 ": local snapshot abandoned for the leader's",
                          n->cfg.id);
            snap_job_release(n);
            snap_waiters_notify(n, ST_ECANCELED, 0);
        }
        int rc = 0;
        struct node_install *in = n->install;
        if (in && in->loaded && in->kv && in->meta.index == rd.snapshot->index) {
            struct st_snapshot_info info;
            memset(&info, 0, sizeof info);
            info.meta = in->meta;
            snapshot_adopt(n, in->kv, &info, in->keys);
            in->kv = NULL;
            install_free(n);
        } else {
            if (in && in->loaded) install_free(n);
            rc = snapshot_restore(n, rd.snapshot->index);
        }
        if (rc) {
            node_fatal(n, rc, "cannot install the leader's snapshot");
            raft_ready_ack(n->raft, &rd);
            return;
        }
        n->m.snapshots_installed++;
        b.snapshot_index = rd.snapshot->index;
        b.snapshot_term = rd.snapshot->term;
        /* The core discarded its whole log: drop every persisted entry
         * above the snapshot too (raft.h, struct raft_ready). */
        b.truncate_from = rd.snapshot->index + 1;
    }
    /* 2. Messages that may precede durability, first: a leader's appends
     * overlap its own disk write (thesis 10.2.1), also when that write
     * blocks this thread (wal_write). */
    for (size_t i = 0; i < rd.n_msgs; i++)
        send_msg(n, &rd.msgs[i]);
    /* 3. Hard state and entries to the WAL (group commit). */
    if (rd.n_entries) {
        b.entries = rd.entries;
        b.n_entries = rd.n_entries;
        for (size_t i = 0; i < rd.n_entries; i++)
            if (rd.entries[i].type == RAFT_ENTRY_CONF) n->conf_dirty = true;
    }
    /* A new term or vote must be durable before anything that depends on it
     * is sent; a new commit index alone is not (etcd's MustSync): it is
     * written with the next batch that syncs anyway. */
    if (rd.hard_state_changed) n->hs_cur = rd.hard_state;
    bool hs_must_sync = n->hs_cur.term != n->hs_written.term || n->hs_cur.vote != n->hs_written.vote;
    bool write = b.snapshot_index || b.n_entries || hs_must_sync;
    if (write && memcmp(&n->hs_cur, &n->hs_written, sizeof n->hs_cur) != 0) {
        b.hard_state = &n->hs_cur;
        n->hs_written = n->hs_cur;
    }
    if (write) n->hs_idle_ticks = 0;
    if (write || rd.n_msgs_after_persist) {
        struct node_persist *p = persist_get(n);
        int rc = p ? 0 : ST_ENOMEM;
        if (p) {
            p->index = rd.persist_index;
            p->term = rd.persist_term;
            p->submit_us = node_now_us();
            for (size_t i = 0; i < rd.n_entries && rc == 0; i++)
                rc = persist_hold_buf(p, rd.entries[i].buf);
            for (size_t i = 0; i < rd.n_msgs_after_persist && rc == 0; i++)
                rc = persist_copy_msg(p, &rd.msgs_after_persist[i]);
            if (rc == 0 && write) {
                rc = persist_write(n, p, &b, true);
                n->m.write_batches++;
            }
        }
        if (rc) {
            if (p) persist_release(n, p);
            raft_ready_ack(n->raft, &rd);
            node_fatal(n, rc, "cannot queue a WAL write");
            return;
        }
        persist_enqueue(n, p);
    }
    /* 5. Apply what is committed; complete waiting clients. */
    raft_index applied_before = n->applied;
    apply_committed(n, rd.committed, rd.n_committed);
    /* 6. Read states: serve once applied reaches their index. */
    for (size_t i = 0; i < rd.n_reads; i++)
        node_client_read_state(n, &rd.reads[i]);
    raft_ready_ack(n->raft, &rd);
    if (n->applied > applied_before || rd.snapshot) raft_applied(n->raft, n->applied);
    if (n->applied > applied_before && n->mem.fwd_n) node_memory_applied_index(n, n->applied);
    if (n->applied > applied_before && n->role == RAFT_LEADER) node_memory_check_leader(n);
    node_client_serve_reads(n);
    /* msgs-only requests at the head complete at once, and so does a batch
     * wal_write made durable on this thread. */
    if (n->persist_head && (n->persist_head->seq == 0 || n->wal_inline_done)) persist_drain(n);
    n->wal_inline_done = false;
}

static void idle_cb(uv_idle_t *h)
{
    (void)h; /* only keeps the loop from blocking; check_cb does the work */
}

#if defined(ST_DEBUG_CHECKS) && ST_DEBUG_CHECKS
/* Cheap whole-runtime invariants (ST_DEBUG_CHECKS builds): O(persist
 * FIFO), which holds at most a few batches per fsync. */
static void node_check_invariants(const struct node *n)
{
    ST_ASSERT(n->applied <= raft_commit_index(n->raft) || n->applied <= n->snapshot_index);
    ST_ASSERT(n->snapshot_index <= n->applied);
    ST_ASSERT(n->waiters_used <= n->waiters_total);
    ST_ASSERT(n->orphans <= n->waiters_used);
    uint64_t last_seq = 0, inflight = 0;
    for (const struct node_persist *p = n->persist_head; p; p = p->next) {
        if (p->seq) {
            ST_ASSERT(p->seq > last_seq); /* readies persist in the order produced */
            last_seq = p->seq;
            inflight++;
        }
        if (!p->next) ST_ASSERT(p == n->persist_tail);
    }
    ST_ASSERT(inflight == n->persist_inflight);
}
#endif

void node_process_readies(struct node *n)
{
    if (!n->running || n->stopping || n->processing || n->fatal) return;
    n->processing = true;
    if (n->n_fwd) node_client_flush_forwards(n);
    node_client_issue_reads(n);
    for (int i = 0; i < NODE_READIES_PER_PASS && raft_has_ready(n->raft) && !n->fatal &&
                    n->persist_inflight < NODE_PERSIST_INFLIGHT_MAX;
         i++)
        process_one_ready(n);
    if (n->conf_dirty) reconcile_peers(n);
    /* a loaded snapshot the core did not install (a newer state got here
     * first) */
    if (n->install && n->install->loaded && n->applied >= n->install->meta.index)
        install_free(n);
    if (n->snap_active && !n->fatal && (!n->snap_steps_limited || n->snap_steps_left > 0)) {
        if (n->snap_steps_limited) n->snap_steps_left--;
        (void)snapshot_step(n, n->cfg.snapshot_step_bytes ? n->cfg.snapshot_step_bytes : 1, false,
                            NULL);
    }
    n->processing = false;
#if defined(ST_DEBUG_CHECKS) && ST_DEBUG_CHECKS
    node_check_invariants(n);
#endif
    if (n->fatal || n->stopping) return;
    /* readies held back by NODE_PERSIST_INFLIGHT_MAX resume when the writer
     * reports (persist_async_cb), not by spinning */
    bool more = (raft_has_ready(n->raft) && n->persist_inflight < NODE_PERSIST_INFLIGHT_MAX) ||
                n->n_fwd || (n->snap_active && !n->snap_job.io->busy) ||
                (n->batch[0] && n->batch[0]->waiters.head) ||
                (n->batch[1] && n->batch[1]->waiters.head);
    if (more && !uv_is_active((uv_handle_t *)&n->idle))
        uv_idle_start(&n->idle, idle_cb);
    else if (!more && uv_is_active((uv_handle_t *)&n->idle))
        uv_idle_stop(&n->idle);
}

static void check_cb(uv_check_t *h)
{
    node_process_readies(h->data);
}

/* Loop iterations: the time between two prepare phases minus the time the
 * loop slept in the poll is how long the loop was busy (callbacks, readies)
 * in that iteration; a long one delays heartbeats, reads and writes alike.
 * Measured here, after the readies, into stcache_loop_iteration_seconds. */
static void loop_busy_observe(struct node *n)
{
    uint64_t now = uv_hrtime();
    uint64_t idle = uv_metrics_idle_time(n->loop);
    if (n->loop_last_ns) {
        uint64_t span = now - n->loop_last_ns, slept = idle - n->loop_idle_last_ns;
        uint64_t busy_us = (span > slept ? span - slept : 0) / 1000;
        node_hist_add(&n->m.loop_busy, busy_us);
        if (busy_us > n->m.loop_busy_max_us) n->m.loop_busy_max_us = busy_us;
        if (busy_us >= NODE_LOOP_SLOW_US)
            ST_TRACE_WARN(MOD, "node %" PRIu64 ": a loop iteration took %" PRIu64 " ms",
                          n->cfg.id, busy_us / 1000);
    }
    n->loop_last_ns = now;
    n->loop_idle_last_ns = idle;
}

static void prepare_cb(uv_prepare_t *h)
{
    node_process_readies(h->data);
    loop_busy_observe(h->data);
}

/* --------------------------------------------------------------- ticks */

/* Called every tick on the leader: the core clears recent_active once per
 * election timeout, so a check on a fixed period could always land right
 * after the reset. Cheap when there are no learners. */
static void promote_learners(struct node *n)
{
    const struct raft_conf *conf = raft_conf_get(n->raft);
    bool any = false;
    for (uint32_t i = 0; i < conf->n && !any; i++)
        any = conf->members[i].role == RAFT_LEARNER;
    if (!any) return;
    struct raft_progress_info prog[RAFT_MEMBERS_MAX];
    size_t np = raft_progress_get(n->raft, prog, RAFT_MEMBERS_MAX);
    raft_index commit = raft_commit_index(n->raft);
    for (uint32_t i = 0; i < conf->n; i++) {
        const struct raft_member *m = &conf->members[i];
        if (m->role != RAFT_LEARNER) continue;
        for (size_t k = 0; k < np; k++) {
            if (prog[k].id != m->id) continue;
            /* Caught up: replicating (not probing or receiving a snapshot),
             * heard from recently, and close to the commit index. */
            if (!prog[k].recent_active || prog[k].state != RAFT_PROGRESS_REPLICATE ||
                prog[k].match == 0 || prog[k].match + n->cfg.promote_lag_entries < commit)
                break;
            struct raft_conf_change cc;
            memset(&cc, 0, sizeof cc);
            cc.op = RAFT_CONF_ADD_VOTER;
            cc.id = m->id;
            cc.context_len = m->context_len;
            memcpy(cc.context, m->context, m->context_len);
            raft_index idx = 0;
            int rc = raft_propose_conf_change(n->raft, &cc, &idx);
            if (rc != 0)
                ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": promoting learner %" PRIu64 ": %s",
                               n->cfg.id, m->id, st_strerror(rc));
            if (rc == 0) {
                n->m.learners_promoted++;
                ST_TRACE_INFO(MOD,
                              "node %" PRIu64 ": promoting learner %" PRIu64 " (match %" PRIu64
                              ", commit %" PRIu64 ") at index %" PRIu64,
                              n->cfg.id, m->id, prog[k].match, commit, idx);
            }
            return; /* one change at a time */
        }
    }
}

/* Writes a commit index the WAL lacks once the log has been quiet for a
 * while (a busy log carries it with its next batch). */
static void hard_state_flush_idle(struct node *n)
{
    if (memcmp(&n->hs_cur, &n->hs_written, sizeof n->hs_cur) == 0) return;
    if (++n->hs_idle_ticks < NODE_HS_IDLE_TICKS || n->persist_inflight || n->nospace) return;
    struct node_persist *p = persist_get(n);
    if (!p) return; /* out of memory: try again next tick */
    struct st_log_batch b;
    memset(&b, 0, sizeof b);
    b.hard_state = &n->hs_cur;
    p->submit_us = node_now_us();
    int rc = persist_write(n, p, &b, false);
    if (rc) {
        persist_release(n, p);
        if (rc != ST_EBUSY) node_fatal(n, rc, "cannot queue a WAL write");
        return;
    }
    n->m.write_batches++;
    n->hs_written = n->hs_cur;
    n->hs_idle_ticks = 0;
    persist_enqueue(n, p);
}

static void tick_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    if (!n->running || n->stopping || n->fatal) return;
    raft_tick(n->raft);
    n->ticks++;
    hard_state_flush_idle(n);
    memory_trim_maybe(n);
    if (n->ticks % 64 == 0) node_memory_tick(n);
    uint64_t now = node_now_us();
    node_waiters_expire(n, now);
    if (n->admin_retry.head) node_client_retry_admin(n);
    if (n->role == RAFT_LEADER) {
        promote_learners(n);
        if (n->purge_more || now - n->last_purge_us >= (uint64_t)n->cfg.purge_interval_ms * 1000u) {
            n->last_purge_us = now;
            n->purge_more = false;
            node_propose_purge(n);
        }
    }
    if (n->cfg.snapshot_interval_s &&
        now - n->last_snapshot_us >= (uint64_t)n->cfg.snapshot_interval_s * 1000000u) {
        n->last_snapshot_us = now;
        snapshot_maybe(n, true);
    }
}

/* ------------------------------------------------------------ transport */

static void tr_msg_cb(void *ctx, raft_id from, const struct raft_msg *msg)
{
    struct node *n = ctx;
    if (!n->running || n->stopping || n->fatal) return;
    if (msg->type == RAFT_MSG_SNAPSHOT && msg->snapshot && install_begin(n, from, msg)) return;
    /* While a snapshot loads the core's log ends before it: an append would
     * be rejected and make the leader send the snapshot again. Heartbeats
     * are still answered (the leader keeps its quorum). */
    if (msg->type == RAFT_MSG_APPEND && n->install && !n->install->loaded) return;
    if (msg->type == RAFT_MSG_PROPOSE) restamp_forwarded(n, msg);
    int rc = msg->type == RAFT_MSG_PROPOSE ? node_memory_step_forwarded(n, msg)
                                           : raft_step(n->raft, msg);
    if (rc && rc != ST_ESTALE)
        ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": %s from %" PRIu64 " dropped: %s", n->cfg.id,
                       raft_msg_type_name(msg->type), from, st_strerror(rc));
}

static void tr_peer_state_cb(void *ctx, raft_id peer, bool connected)
{
    struct node *n = ctx;
    ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": peer %" PRIu64 " %s", n->cfg.id, peer,
                   connected ? "connected" : "disconnected");
}

static void tr_send_failed_cb(void *ctx, raft_id peer, uint8_t type, int status)
{
    struct node *n = ctx;
    (void)type;
    (void)status;
    if (n->running && !n->stopping) raft_report_unreachable(n->raft, peer);
}

static int tr_snap_begin_cb(void *ctx, raft_id from, const struct raft_msg *msg, uint64_t size)
{
    struct node *n = ctx;
    if (!n->running || n->stopping || n->fatal || !msg->snapshot) return ST_ECLOSED;
    if (size > n->cfg.snapshot_recv_bytes_max) {
        ST_TRACE_ERROR(MOD,
                       "node %" PRIu64 ": snapshot %" PRIu64 " from %" PRIu64 " refused: %" PRIu64
                       " bytes announced, more than --snapshot-recv-bytes-max %" PRIu64,
                       n->cfg.id, msg->snapshot->index, from, size, n->cfg.snapshot_recv_bytes_max);
        return ST_ETOOBIG;
    }
    struct statvfs sv;
    if (!n->cfg.fs && statvfs(n->cfg.data_dir, &sv) == 0) {
        uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        if (size + NODE_SNAPSHOT_DISK_MARGIN_BYTES > avail) {
            ST_TRACE_ERROR(MOD,
                           "node %" PRIu64 ": snapshot %" PRIu64 " from %" PRIu64
                           " refused: %" PRIu64 " bytes announced, %" PRIu64
                           " bytes free in %s",
                           n->cfg.id, msg->snapshot->index, from, size, avail, n->cfg.data_dir);
            return ST_ENOSPC;
        }
    }
    /* Not while the same (or a newer) snapshot is being loaded: the leader
     * asks again once it is installed, if it still needs to. */
    if (n->install && !n->install->loaded && msg->snapshot->index <= n->install->meta.index)
        return ST_EBUSY;
    if (n->snap_in) {
        st_snap_write_abort(n->snap_in);
        n->snap_in = NULL;
    }
    int rc = st_snap_write_begin(n->storage->snaps, &n->snap_in);
    if (rc) return rc;
    n->snap_in_from = from;
    n->snap_in_meta = *msg->snapshot;
    ST_TRACE_INFO(
        MOD, "node %" PRIu64 ": receiving snapshot %" PRIu64 " (%" PRIu64 " bytes) from %" PRIu64,
        n->cfg.id, msg->snapshot->index, size, from);
    return 0;
}

static int tr_snap_chunk_cb(void *ctx, raft_id from, uint64_t offset, const uint8_t *data,
                            size_t len)
{
    struct node *n = ctx;
    (void)offset;
    if (!n->snap_in || n->snap_in_from != from) return ST_EINVAL;
    return st_snap_write(n->snap_in, data, len);
}

static int tr_snap_end_cb(void *ctx, raft_id from, int status)
{
    struct node *n = ctx;
    if (!n->snap_in || n->snap_in_from != from) return ST_EINVAL;
    struct st_snap_writer *w = n->snap_in;
    n->snap_in = NULL;
    if (status != 0) {
        st_snap_write_abort(w);
        ST_TRACE_WARN(MOD, "node %" PRIu64 ": snapshot from %" PRIu64 " aborted: %s", n->cfg.id,
                      from, st_strerror(status));
        return status;
    }
    struct st_snapshot_info info;
    int rc = st_snap_write_commit(w, &n->snap_in_meta, &info);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot from %" PRIu64 " not stored: %s", n->cfg.id,
                       from, st_strerror(rc));
        return rc;
    }
    if (n->snap_in_rd) st_snap_read_close(n->snap_in_rd);
    rc = st_snap_read_open(n->storage->snaps, info.meta.index, &n->snap_in_rd,
                           &n->snap_in_rd_info);
    if (rc) {
        n->snap_in_rd = NULL;
        ST_TRACE_WARN(MOD,
                      "node %" PRIu64 ": snapshot from %" PRIu64
                      " stored but cannot be opened (%s): refused, the leader sends it again",
                      n->cfg.id, from, st_strerror(rc));
    }
    return rc;
}

static void tr_snap_sent_cb(void *ctx, raft_id to, int status)
{
    struct node *n = ctx;
    if (!n->running || n->stopping) return;
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": snapshot to %" PRIu64 ": %s", n->cfg.id, to,
                  status == 0 ? "stored" : st_strerror(status));
    raft_report_snapshot(n->raft, to, status == 0);
}

/* --------------------------------------------------------------- start */

static void handle_closed_cb(uv_handle_t *h);

static int handles_init(struct node *n)
{
    uv_timer_init(n->loop, &n->tick_timer);
    uv_check_init(n->loop, &n->check);
    uv_prepare_init(n->loop, &n->prepare);
    uv_idle_init(n->loop, &n->idle);
    uv_timer_init(n->loop, &n->join_timer);
    uv_timer_init(n->loop, &n->fatal_timer);
    uv_timer_init(n->loop, &n->nospace_timer);
    n->fatal_timer.data = n;
    n->nospace_timer.data = n;
    n->tick_timer.data = n;
    n->check.data = n;
    n->prepare.data = n;
    n->idle.data = n;
    n->join_timer.data = n;
    n->handles_open = 7;
    if (uv_async_init(n->loop, &n->persist_async, persist_async_cb) != 0) return ST_ENOMEM;
    n->persist_async.data = n;
    n->handles_open++;
    return 0;
}

/* ------------------------------------------------------------ join seeds
 *
 * A node that joined knows the cluster's members from the join answer only
 * until its log or a snapshot teaches it the configuration. Killed in
 * between, it restarted with no member to accept or dial and refused its
 * leader forever ("unknown peer id"). The answer's members are therefore
 * kept in DATA/join-peers (written before the node first talks to a peer)
 * and loaded again on every restart; the configuration, once known, takes
 * precedence over them (want_peer). Format: one line per member,
 * "ID RAFT_ADDR HTTP_ADDR" ("-" for an unknown HTTP address). */
#define NODE_JOIN_PEERS_FILE "join-peers"

static int seeds_save(struct node *n)
{
    char buf[RAFT_MEMBERS_MAX * (2 * NODE_ADDR_MAX + 32)];
    size_t off = 0;
    for (uint32_t i = 0; i < n->n_seed_peers; i++) {
        const struct node_peer_addr *p = &n->seed_peers[i];
        int w = snprintf(buf + off, sizeof buf - off, "%" PRIu64 " %s %s\n", p->id, p->raft,
                         p->http[0] ? p->http : "-");
        if (w < 0 || (size_t)w >= sizeof buf - off) return ST_ETOOBIG;
        off += (size_t)w;
    }
    return st_small_file_write(n->cfg.fs, n->cfg.data_dir, NODE_JOIN_PEERS_FILE, buf, off);
}

static int seeds_load(struct node *n)
{
    char buf[RAFT_MEMBERS_MAX * (2 * NODE_ADDR_MAX + 32) + 1];
    char errtext[256] = "";
    struct st_errbuf eb = {errtext, sizeof errtext};
    size_t len = 0;
    int rc = st_small_file_read(n->cfg.fs, n->cfg.data_dir, NODE_JOIN_PEERS_FILE, buf,
                                sizeof buf - 1, &len, &eb);
    if (rc == ST_ENOENT) return 0;
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": %s/%s: %s%s%s", n->cfg.id, n->cfg.data_dir,
                       NODE_JOIN_PEERS_FILE, st_strerror(rc), errtext[0] ? ": " : "", errtext);
        return rc;
    }
    buf[len] = '\0';
    n->n_seed_peers = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line && n->n_seed_peers < RAFT_MEMBERS_MAX;
         line = strtok_r(NULL, "\n", &save)) {
        struct node_peer_addr *p = &n->seed_peers[n->n_seed_peers];
        unsigned long long id;
        char raft[NODE_ADDR_MAX], http[NODE_ADDR_MAX];
        if (sscanf(line, "%llu %79s %79s", &id, raft, http) != 3 || id == 0) {
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": %s/%s: malformed line '%.80s'", n->cfg.id,
                           n->cfg.data_dir, NODE_JOIN_PEERS_FILE, line);
            return ST_ECORRUPT;
        }
        p->id = id;
        snprintf(p->raft, sizeof p->raft, "%s", raft);
        snprintf(p->http, sizeof p->http, "%s", strcmp(http, "-") == 0 ? "" : http);
        n->n_seed_peers++;
    }
    if (n->n_seed_peers)
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": %u member(s) known from the join answer", n->cfg.id,
                      n->n_seed_peers);
    return 0;
}

/* Opens storage, restores, creates the core, writer and transport, and
 * starts the handles. initial_conf: brand-new cluster membership or NULL. */
static int open_and_run(struct node *n, const struct raft_conf *initial_conf)
{
    char errtext[256] = "";
    struct st_errbuf eb = {errtext, sizeof errtext};
    struct st_storage_config sc;
    memset(&sc, 0, sizeof sc);
    sc.fs = n->cfg.fs;
    sc.dir = n->cfg.data_dir;
    sc.node_id = n->cfg.id;
    sc.cluster_id = n->cluster_id;
    sc.segment_bytes = n->cfg.wal_segment_bytes;
    struct st_storage_state state;
    memset(&state, 0, sizeof state);
    int rc = st_storage_open(&sc, &n->storage, &state, &eb);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": cannot open data directory %s: %s%s%s", n->cfg.id,
                       n->cfg.data_dir, st_strerror(rc), errtext[0] ? ": " : "", errtext);
        n->storage = NULL;
        return rc;
    }
    /* Before any peer is talked to: a join's members, or those of an earlier
     * join when restarting. */
    rc = n->n_seed_peers ? seeds_save(n) : seeds_load(n);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": cannot %s the join members in %s: %s", n->cfg.id,
                       n->n_seed_peers ? "store" : "load", n->cfg.data_dir, st_strerror(rc));
        goto fail_state;
    }
    struct kv_config kc;
    kv_config_default(&kc);
    /* The cluster id is known here in every start mode: read from DATA/meta
     * (restart), chosen (bootstrap, peers) or learnt from the join reply
     * (open_and_run runs after it); nothing was restored into a kv before. */
    ST_ASSERT(n->cluster_id != 0);
    kc.hash_seed = kv_hash_seed_for_cluster(n->cluster_id);
    n->kv_cfg = kc;
    rc = kv_create(&kc, &n->kv);
    if (rc) goto fail_state;
    if (state.has_snapshot) {
        rc = snapshot_restore(n, state.snapshot.meta.index);
        if (rc) goto fail_state;
    }
    struct raft_config rcfg;
    raft_config_default(&rcfg, n->cfg.id);
    rcfg.seed = n->cfg.seed ? n->cfg.seed : random_u64();
    rcfg.election_ticks = n->cfg.election_ticks;
    rcfg.heartbeat_ticks = n->cfg.heartbeat_ticks;
    rcfg.inflight_msgs_max = n->cfg.raft_inflight ? n->cfg.raft_inflight : 1;
    rcfg.pre_vote = true;
    rcfg.check_quorum = true;
    rcfg.lease_reads = true;
    rcfg.forward_proposals = true;
    /* One entry must hold the largest command the limits allow. */
    uint64_t cmd_max = (uint64_t)n->cfg.max_value_bytes + n->cfg.max_key_bytes + 4096;
    if (rcfg.msg_bytes_max < cmd_max) rcfg.msg_bytes_max = (uint32_t)ST_MIN(cmd_max, UINT32_MAX);
    n->fwd_bytes_max = rcfg.msg_bytes_max;
    if (rcfg.uncommitted_bytes_max && rcfg.uncommitted_bytes_max < 8 * cmd_max)
        rcfg.uncommitted_bytes_max = 8 * cmd_max;
    /* Trailing log behind a snapshot (DESIGN 3.7): half the threshold,
     * within [8, 1024], so a small threshold still forces snapshot streaming
     * to a far-behind follower (tests) while a large one keeps plenty. */
    n->trailing = n->cfg.snapshot_threshold / 2;
    if (n->trailing < 8) n->trailing = 8;
    if (n->trailing > 1024) n->trailing = 1024;
    rcfg.trailing_entries = n->trailing;
    /* ... and at most a quarter of --snapshot-log-bytes of payload: the log
     * in memory stays below 1.25 x snapshot_log_bytes (plus one entry). */
    n->trailing_bytes = n->cfg.snapshot_log_bytes / 4;
    rcfg.trailing_bytes = n->trailing_bytes;
    struct raft_bootstrap_state bs;
    memset(&bs, 0, sizeof bs);
    bs.hard_state = state.log.hard_state;
    n->hs_cur = n->hs_written = bs.hard_state;
    bs.snapshot = state.has_snapshot ? &state.snapshot.meta : NULL;
    bs.entries = state.log.entries;
    bs.n_entries = state.log.n_entries;
    bool empty = !state.has_snapshot && state.log.n_entries == 0;
    bs.initial_conf = empty ? initial_conf : NULL;
    bs.applied = state.has_snapshot ? state.snapshot.meta.index : 0;
    rc = raft_create(&rcfg, &bs, &n->raft);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": the durable state is inconsistent: %s", n->cfg.id,
                       st_strerror(rc));
        goto fail_state;
    }
    ST_TRACE_INFO(MOD,
                  "node %" PRIu64 ": cluster %016" PRIx64 ", term %" PRIu64 ", commit %" PRIu64
                  ", log (%" PRIu64 ", %" PRIu64 "], snapshot %" PRIu64,
                  n->cfg.id, n->cluster_id, bs.hard_state.term, bs.hard_state.commit,
                  state.log.first_index - 1, state.log.last_index, bs.applied);
    st_storage_state_release(&state);

    struct st_log_writer_config wc;
    memset(&wc, 0, sizeof wc);
    rc = st_log_writer_create(&n->storage->log, &wc, writer_cb, n, &n->writer);
    if (rc) return rc;

    struct tr_config tc;
    tr_config_default(&tc, n->cfg.id, n->cluster_id, n->cfg.raft_listen);
    snprintf(tc.advertise_addr, sizeof tc.advertise_addr, "%s", n->advertise_raft);
    tc.seed = rcfg.seed ^ 0x5eedull;
    struct tr_callbacks cbs = {
        .ctx = n,
        .msg_cb = tr_msg_cb,
        .peer_state_cb = tr_peer_state_cb,
        .send_failed_cb = tr_send_failed_cb,
        .snapshot_begin_cb = tr_snap_begin_cb,
        .snapshot_chunk_cb = tr_snap_chunk_cb,
        .snapshot_end_cb = tr_snap_end_cb,
        .snapshot_sent_cb = tr_snap_sent_cb,
    };
    rc = tr_create(n->loop, &tc, &cbs, &n->tr);
    if (rc) return rc;
    rc = tr_start(n->tr);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": cannot listen on %s: %s", n->cfg.id,
                       n->cfg.raft_listen, st_strerror(rc));
        return rc;
    }
    n->running = true;
    n->last_snapshot_us = node_now_us();
    n->last_purge_us = node_now_us();
    reconcile_peers(n);
    uv_timer_start(&n->tick_timer, tick_cb, n->cfg.tick_ms, n->cfg.tick_ms);
    uv_check_start(&n->check, check_cb);
    uv_prepare_start(&n->prepare, prepare_cb);
    n->started = true;
    /* A single voter elects itself at once instead of waiting a timeout. */
    const struct raft_conf *conf = raft_conf_get(n->raft);
    if (conf->n == 1 && conf->members[0].id == n->cfg.id && conf->members[0].role == RAFT_VOTER)
        raft_campaign(n->raft);
    return 0;

fail_state:
    st_storage_state_release(&state);
    return rc;
}

static void started(struct node *n, int status)
{
    if (n->started_cb) n->started_cb(n, status, n->started_ctx);
}

static void join_send(struct node *n);

static void join_timer_cb(uv_timer_t *t)
{
    join_send(t->data);
}

static void join_retry(struct node *n, const char *why)
{
    if (++n->join_attempts >= NODE_JOIN_ATTEMPTS_MAX) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": giving up joining via %s: %s", n->cfg.id,
                       n->cfg.join_http, why);
        started(n, ST_ECONNECTION);
        return;
    }
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": join via %s: %s; retrying", n->cfg.id, n->cfg.join_http,
                  why);
    uv_timer_start(&n->join_timer, join_timer_cb, NODE_JOIN_RETRY_MS, 0);
}

static int join_parse_reply(struct node *n, const char *body, size_t len)
{
    struct st_jsonr_span doc = {body, len}, v, members, m;
    char hex[32];
    if (st_jsonr_validate(body, len) != 0 || !st_jsonr_get(doc, "cluster_id", &v) ||
        st_jsonr_string(v, hex, sizeof hex) != 0)
        return ST_EPROTO;
    char *end;
    errno = 0;
    unsigned long long cid = strtoull(hex, &end, 16);
    if (errno || *end || cid == 0) return ST_EPROTO;
    n->cluster_id = cid;
    n->n_seed_peers = 0;
    if (st_jsonr_get(doc, "members", &members)) {
        size_t cur = 0;
        while (st_jsonr_array_next(members, &cur, &m) && n->n_seed_peers < RAFT_MEMBERS_MAX) {
            struct node_peer_addr *p = &n->seed_peers[n->n_seed_peers];
            uint64_t id;
            if (!st_jsonr_get(m, "id", &v) || st_jsonr_uint(v, &id) != 0 || !st_jsonr_get(m, "raft", &v) ||
                st_jsonr_string(v, p->raft, sizeof p->raft) != 0)
                continue;
            p->id = id;
            p->http[0] = '\0';
            if (st_jsonr_get(m, "http", &v)) (void)st_jsonr_string(v, p->http, sizeof p->http);
            if (id != n->cfg.id) n->n_seed_peers++;
        }
    }
    return 0;
}

static void join_reply_cb(void *ctx, int status, const char *body, size_t len, const char *head,
                          size_t head_len)
{
    (void)head;
    (void)head_len;
    struct node *n = ctx;
    n->join_req = NULL;
    if (n->stopping) return;
    if (status == 200 || status == 201) {
        int rc = join_parse_reply(n, body, len);
        if (rc) {
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": bad join reply from %s: %.*s", n->cfg.id,
                           n->cfg.join_http, (int)ST_MIN(len, 200), body);
            started(n, rc);
            return;
        }
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": joined cluster %016" PRIx64 " as a learner via %s",
                      n->cfg.id, n->cluster_id, n->cfg.join_http);
        rc = open_and_run(n, NULL);
        started(n, rc);
        return;
    }
    char why[256];
    if (status < 0)
        snprintf(why, sizeof why, "%s", st_strerror(status));
    else
        snprintf(why, sizeof why, "HTTP %d %.*s", status, (int)ST_MIN(len, 160), body);
    if (status < 0 || status >= 500) {
        join_retry(n, why);
        return;
    }
    ST_TRACE_ERROR(MOD, "node %" PRIu64 ": join refused by %s: %s", n->cfg.id, n->cfg.join_http,
                   why);
    started(n, ST_EINVAL);
}

static void join_send(struct node *n)
{
    char body[3 * NODE_ADDR_MAX + 64];
    int len = snprintf(body, sizeof body, "{\"id\":%" PRIu64 ",\"raft\":\"%s\",\"http\":\"%s\"}",
                       n->cfg.id, n->advertise_raft, n->advertise_http);
    int rc = http_client_request(n->loop, n->cfg.join_http, "POST", "/cluster/members",
                                "application/json", NULL, body, (size_t)len,
                                n->cfg.request_timeout_ms, join_reply_cb, n, &n->join_req);
    if (rc) join_retry(n, st_strerror(rc));
}

int node_start(struct node *n, node_started_cb cb, void *ctx)
{
    n->started_cb = cb;
    n->started_ctx = ctx;
    /* idle time in the poll, for loop_busy_observe (no effect if set before) */
    (void)uv_loop_configure(n->loop, UV_METRICS_IDLE_TIME);
    int rc = handles_init(n);
    if (rc) return rc;
    char errtext[256] = "";
    struct st_errbuf eb = {errtext, sizeof errtext};
    /* Before anything in DATA is read: two processes on one directory would
     * each believe they own its log (two leaders of different terms, one of
     * them acknowledging writes the other's log then overwrites). */
    rc = st_dir_lock_acquire(n->cfg.fs, n->cfg.data_dir, &n->dir_lock, &eb);
    if (rc) {
        if (rc == ST_EBUSY)
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": %s", n->cfg.id, errtext);
        else
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": data directory %s: %s%s%s", n->cfg.id,
                           n->cfg.data_dir, st_strerror(rc), errtext[0] ? ": " : "", errtext);
        return rc;
    }
    errtext[0] = '\0';
    uint64_t nid = 0, cid = 0;
    rc = st_identity_read(n->cfg.fs ? n->cfg.fs : st_fs_posix(), n->cfg.data_dir, &nid, &cid, &eb);
    if (rc == 0) {
        if (nid != n->cfg.id) {
            ST_TRACE_ERROR(MOD, "data directory %s belongs to node %" PRIu64 ", not %" PRIu64,
                           n->cfg.data_dir, nid, n->cfg.id);
            return ST_EMISMATCH;
        }
        if (n->cfg.mode != NODE_START_RESTART)
            ST_TRACE_INFO(MOD,
                          "node %" PRIu64 ": %s holds a node: restarting from it (the start "
                          "mode flag is ignored)",
                          n->cfg.id, n->cfg.data_dir);
        n->cluster_id = cid;
        rc = open_and_run(n, NULL);
        if (rc == 0) started(n, 0);
        return rc;
    }
    if (rc != ST_ENOENT) {
        ST_TRACE_ERROR(MOD, "data directory %s: %s%s%s", n->cfg.data_dir, st_strerror(rc),
                       errtext[0] ? ": " : "", errtext);
        return rc;
    }
    enum node_start_mode mode = n->cfg.mode;
    if (mode == NODE_START_RESTART && n->cfg.bootstrap_if_empty) mode = NODE_START_BOOTSTRAP;
    struct raft_conf *conf = calloc(1, sizeof *conf);
    if (!conf) return ST_ENOMEM;
    switch (mode) {
    case NODE_START_RESTART:
        ST_TRACE_ERROR(MOD,
                       "data directory %s is empty: start a new cluster with --bootstrap, "
                       "join one with --join HTTP_ADDR, or use --peers",
                       n->cfg.data_dir);
        free(conf);
        return ST_ENOENT;
    case NODE_START_BOOTSTRAP:
        n->cluster_id = random_u64();
        conf->n = 1;
        conf->members[0].id = n->cfg.id;
        conf->members[0].role = RAFT_VOTER;
        conf->members[0].context_len = (uint16_t)node_context_format(
            conf->members[0].context, n->advertise_raft, n->advertise_http);
        break;
    case NODE_START_PEERS:
        n->cluster_id = node_cluster_id_from_peers(n->cfg.peers, n->cfg.n_peers);
        for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
            struct raft_member *m = &conf->members[conf->n++];
            m->id = n->cfg.peers[i].id;
            m->role = RAFT_VOTER;
            m->context_len = (uint16_t)node_context_format(m->context, n->cfg.peers[i].raft,
                                                           n->cfg.peers[i].http);
        }
        break;
    case NODE_START_JOIN:
        free(conf);
        join_send(n);
        return 0;
    }
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": new cluster %016" PRIx64 " with %u member(s) in %s",
                  n->cfg.id, n->cluster_id, conf->n, n->cfg.data_dir);
    rc = open_and_run(n, conf);
    free(conf);
    if (rc == 0) started(n, 0);
    return rc;
}

/* ---------------------------------------------------------------- stop */

static void stop_maybe_finish(struct node *n)
{
    if (n->handles_open > 0 || !n->tr_closed || n->snap_commit || n->bg_pending) return;
    if (n->install) install_free(n); /* loaded, never installed */
    if (n->bg_pending) return;
    if (n->snap_in) {
        st_snap_write_abort(n->snap_in);
        n->snap_in = NULL;
    }
    if (n->snap_in_rd) {
        st_snap_read_close(n->snap_in_rd);
        n->snap_in_rd = NULL;
    }
    if (n->raft) {
        raft_destroy(n->raft);
        n->raft = NULL;
    }
    if (n->kv) {
        kv_destroy(n->kv);
        n->kv = NULL;
    }
    if (n->storage) {
        st_storage_close(n->storage);
        n->storage = NULL;
    }
    st_dir_lock_release(&n->dir_lock); /* last: nothing in DATA is open now */
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": stopped", n->cfg.id);
    if (n->stopped_cb) n->stopped_cb(n, n->stopped_ctx);
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct node *n = h->data;
    n->handles_open--;
    stop_maybe_finish(n);
}

static void tr_done_cb(void *arg)
{
    struct node *n = arg;
    n->tr = NULL;
    n->tr_closed = true;
    stop_maybe_finish(n);
}

void node_stop(struct node *n, node_stopped_cb cb, void *ctx)
{
    if (n->stopping) return;
    n->stopping = true;
    n->stopped_cb = cb;
    n->stopped_ctx = ctx;
    if (n->join_req) {
        http_client_abort(n->join_req);
        n->join_req = NULL;
    }
    node_waiters_fail_all(n, ST_ECLOSED);
    node_client_drop_forwards(n);
    if (n->snap_active) snap_job_release(n);
    snap_waiters_notify(n, ST_ECLOSED, 0);
    /* Drain the writer: every queued batch is written and synced (its
     * callback runs on the writer thread while we join it). */
    if (n->writer) {
        st_log_writer_destroy(n->writer);
        n->writer = NULL;
    }
    while (n->persist_head) {
        struct node_persist *p = n->persist_head;
        n->persist_head = p->next;
        persist_release(n, p);
    }
    n->persist_tail = NULL;
    n->running = false;
    if (n->handles_open > 0) {
        uv_close((uv_handle_t *)&n->tick_timer, handle_closed_cb);
        uv_close((uv_handle_t *)&n->check, handle_closed_cb);
        uv_close((uv_handle_t *)&n->prepare, handle_closed_cb);
        uv_close((uv_handle_t *)&n->idle, handle_closed_cb);
        uv_close((uv_handle_t *)&n->join_timer, handle_closed_cb);
        uv_close((uv_handle_t *)&n->fatal_timer, handle_closed_cb);
        uv_close((uv_handle_t *)&n->nospace_timer, handle_closed_cb);
        if (n->handles_open == 8) uv_close((uv_handle_t *)&n->persist_async, handle_closed_cb);
    }
    if (n->tr)
        tr_destroy(n->tr, tr_done_cb, n);
    else
        n->tr_closed = true;
    stop_maybe_finish(n);
}

static void fatal_timer_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    if (n->fatal_cb && !n->stopping) n->fatal_cb(n, n->fatal_code, n->fatal_ctx);
}

void node_fatal(struct node *n, int code, const char *what)
{
    if (n->fatal) return;
    n->fatal = true;
    ST_TRACE_ERROR(MOD, "node %" PRIu64 ": fatal: %s: %s; the node stops serving", n->cfg.id, what,
                   st_strerror(code));
    node_waiters_fail_all(n, ST_EIO);
    /* Tell the owner from a fresh loop iteration: it will likely stop the
     * node, which must not happen in the middle of a ready. */
    n->fatal_code = code;
    if (n->handles_open > 0 && !n->stopping) uv_timer_start(&n->fatal_timer, fatal_timer_cb, 0, 0);
}

void node_on_fatal(struct node *n, void (*cb)(struct node *n, int code, void *ctx), void *ctx)
{
    n->fatal_cb = cb;
    n->fatal_ctx = ctx;
}

/* ---------------------------------------------------------------- info */

void node_info_get(const struct node *n, struct node_info *out)
{
    memset(out, 0, sizeof *out);
    out->id = n->cfg.id;
    out->cluster_id = n->cluster_id;
    out->started = n->started;
    out->stopping = n->stopping;
    if (!n->raft) return;
    out->leader = n->leader;
    out->role = n->role;
    out->term = raft_term_get(n->raft);
    out->commit = raft_commit_index(n->raft);
    out->applied = n->applied;
    out->first_index = raft_first_index(n->raft);
    out->last_index = raft_last_index(n->raft);
    out->snapshot_index = n->snapshot_index;
    out->snapshotting = n->snap_active || n->snap_commit;
    out->alarm_nospace = n->nospace;
    out->memory_trims = n->m.memory_trims;
    out->used_memory = node_memory_used(n);
    out->max_memory = n->cfg.max_memory;
    out->log_clock_ms = n->kv ? kv_clock_ms(n->kv) : 0;
    out->wall_clock_ms = node_wall_ms();
    const struct raft_conf *conf = raft_conf_get(n->raft);
    for (uint32_t i = 0; i < conf->n && i < RAFT_MEMBERS_MAX; i++) {
        const struct raft_member *m = &conf->members[i];
        struct node_member_info *mi = &out->members[out->n_members++];
        mi->id = m->id;
        mi->voter = m->role == RAFT_VOTER;
        member_addrs(m, mi->raft, mi->http);
        if (m->id == n->cfg.id && !mi->http[0])
            snprintf(mi->http, sizeof mi->http, "%s", n->advertise_http);
        if (m->id == n->leader) snprintf(out->leader_http, sizeof out->leader_http, "%s", mi->http);
    }
    if (n->leader && !out->leader_http[0]) {
        for (uint32_t i = 0; i < n->n_seed_peers; i++)
            if (n->seed_peers[i].id == n->leader)
                snprintf(out->leader_http, sizeof out->leader_http, "%s", n->seed_peers[i].http);
        for (uint32_t i = 0; i < n->cfg.n_peers; i++)
            if (n->cfg.peers[i].id == n->leader && n->cfg.peers[i].http[0])
                snprintf(out->leader_http, sizeof out->leader_http, "%s", n->cfg.peers[i].http);
    }
}

uint64_t node_state_digest(const struct node *n, raft_index *applied)
{
    *applied = n->applied;
    return n->kv ? kv_digest(n->kv) : 0;
}

const char *node_unready_reason(const struct node *n)
{
    if (n->fatal) return "storage_failed";
    if (n->stopping) return "stopping";
    if (n->nospace) return "no_space";
    if (!n->running) return "starting";
    if (n->leader == RAFT_NONE) return "no_leader";
    raft_index commit = raft_commit_index(n->raft);
    if (n->applied + NODE_READY_LAG_ENTRIES_MAX < commit) return "catching_up";
    return NULL;
}

bool node_healthy(const struct node *n)
{
    return node_unready_reason(n) == NULL;
}

bool node_live(const struct node *n)
{
    return !n->fatal;
}

const struct node_config *node_config_get(const struct node *n)
{
    return &n->cfg;
}

uint64_t node_cluster_id(const struct node *n)
{
    return n->cluster_id;
}
