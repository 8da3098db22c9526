/* Making snapshots: the incremental job (kv snapshot cursor) written by the
 * threadpool a step per pass of readies, its commit (fsync, rename) off the
 * loop, log compaction, the heap trim after it, and the triggers (count,
 * bytes, interval, POST /snapshot). */
#include "node/node.h"

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

/* ------------------------------------------------------------ snapshots */

/* The cursor's output: appended to the io buffer being filled (written
 * by the threadpool, node_snapshot_step). */
int node_snap_io_append(struct node_snap_io *io, const void *data, size_t len)
{
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

static int snap_sink_cb(void *ctx, const void *data, size_t len)
{
    struct node_snap_job *job = ctx;
    return node_snap_io_append(job->io, data, len);
}

void node_snap_io_free(struct node_snap_io *io)
{
    if (io->w) st_snap_write_abort(io->w);
    free(io->buf[0]);
    free(io->buf[1]);
    free(io);
}

void node_snap_io_work_cb(uv_work_t *req)
{
    struct node_snap_io *io = req->data;
    int b = 1 - io->fill; /* the buffer handed over */
    if (io->rc == 0) io->rc = st_snap_write(io->w, io->buf[b], io->len[b]);
}

static void snap_io_after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct node_snap_io *io = req->data;
    struct node *n = io->n;
    n->bg_pending--;
    io->busy = false;
    io->len[1 - io->fill] = 0;
    if (io->orphan) node_snap_io_free(io);
    if (n->stopping) node_stop_maybe_finish(n);
}

void node_snap_io_flush(struct node *n, struct node_snap_io *io, uv_after_work_cb after_cb)
{
    io->fill = 1 - io->fill;
    io->busy = true;
    io->work.data = io;
    if (uv_queue_work(n->loop, &io->work, node_snap_io_work_cb, after_cb) == 0) {
        n->bg_pending++;
        return;
    }
    node_snap_io_work_cb(&io->work);
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
void node_snap_waiters_notify(struct node *n, int status, raft_index index)
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

void node_snap_job_release(struct node *n)
{
    struct node_snap_job *job = &n->snap_job;
    if (job->cur) kv_snapshot_end(job->cur);
    if (job->io) {
        if (job->io->busy)
            job->io->orphan = true; /* its completion aborts the writer and frees it */
        else
            node_snap_io_free(job->io);
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
void node_memory_trim_schedule(struct node *n)
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
    if (n->stopping) node_stop_maybe_finish(n);
}

void node_memory_trim_maybe(struct node *n)
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
        struct node_persist *p = node_persist_get(n);
        if (p) {
            int rc = node_persist_write(n, p, &b, false);
            if (rc) {
                ST_TRACE_WARN(MOD, "snapshot: WAL compaction not queued: %s", st_strerror(rc));
                p->seq = 0;
            }
            p->submit_us = node_now_us();
            node_persist_enqueue(n, p);
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
        node_snap_waiters_notify(n, rc, 0);
        return;
    }
    if (meta->index <= n->snapshot_index) { /* overtaken by an installed one */
        node_snap_waiters_notify(n, 0, n->snapshot_index);
        return;
    }
    n->snapshot_index = meta->index;
    n->last_snapshot_us = node_now_us();
    n->m.snapshots_taken++;
    raft_index first = snapshot_compact(n, meta->index);
    node_memory_trim_schedule(n);
    ST_TRACE_INFO(MOD,
                  "node %" PRIu64 ": snapshot at index %" PRIu64 " (%" PRIu64
                  " bytes, written in %" PRIu64 " us, durable after %" PRIu64
                  " us), log kept from %" PRIu64,
                  n->cfg.id, meta->index, info->data_bytes, written_us, took_us, first);
    node_snap_waiters_notify(n, 0, meta->index);
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
    if (n->stopping) node_stop_maybe_finish(n);
}

/* Writes up to `budget` bytes of the running job (0: all of it). Returns 1
 * while more remains, 0 when the job ended. Once every byte went to the
 * snapshot writer the cursor is released, and the files are made durable on
 * the threadpool (sync: here, and *rc_out tells the outcome). */
int node_snapshot_step(struct node *n, size_t budget, bool sync, int *rc_out)
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
            node_snap_io_flush(n, io, snap_io_after_cb);
            return 1;
        }
        if (rc == 1) return 1;
    }
    if (rc_out) *rc_out = rc;
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot at %" PRIu64 " failed: %s", n->cfg.id,
                       job->meta->index, st_strerror(rc));
        n->applied_at_snapshot = job->meta->index; /* no retry before the next threshold */
        node_snap_job_release(n);
        node_snap_waiters_notify(n, rc, 0);
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
    node_snap_job_release(n);
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
        node_snap_job_release(n);
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
bool node_snapshot_due(const struct node *n, uint64_t threshold)
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
bool node_snapshot_due_bytes(const struct node *n)
{
    uint64_t limit = n->cfg.snapshot_log_bytes;
    if (limit == 0) return false;
    limit -= ((n->cfg.id - 1) % 4) * (limit / 8);
    return n->log_bytes_since_snapshot >= limit;
}

void node_snapshot_maybe(struct node *n, bool interval_due)
{
    if (n->snap_active || n->snap_commit) return;
    if (!node_snapshot_due_bytes(n)) {
        if (!node_snapshot_due(n, n->cfg.snapshot_threshold)) return;
        if (n->cfg.snapshot_interval_s != 0 && !interval_due) return;
    }
    (void)snapshot_start(n);
}
