/* Transport glue: the transport's peers follow the configuration (plus the
 * join seeds), and the transport's callbacks feed messages, peer state and
 * snapshot streams into the core. */
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
/* Received snapshot bytes collected on the loop while the previous ones are
 * written: past this the transport pauses the sender (ST_TR_CB_PENDING). With
 * the write in flight, at most twice this plus one chunk is held. */
#define NODE_SNAP_IN_HELD_BYTES (1u << 20)

/* ------------------------------------------------------------ conf/peers */

void node_member_addrs(const struct raft_member *m, char *raft_addr, char *http_addr)
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
            node_member_addrs(m, addr, http);
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
void node_reconcile_peers(struct node *n)
{
    n->conf_dirty = false;
    if (!n->tr || !n->raft) return;
    char addr[NODE_ADDR_MAX];
    /* Remove peers no longer wanted or whose address changed. */
    for (uint32_t i = 0; i < n->n_tr_peers;) {
        struct node_peer_addr *p = &n->st_tr_peers[i];
        if (want_peer(n, p->id, addr) && strcmp(addr, p->raft) == 0) {
            i++;
            continue;
        }
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": transport peer %" PRIu64 " (%s) removed", n->cfg.id,
                      p->id, p->raft);
        st_tr_peer_remove(n->tr, p->id);
        n->st_tr_peers[i] = n->st_tr_peers[--n->n_tr_peers];
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
            have = n->st_tr_peers[i].id == id;
        if (have || !want_peer(n, id, addr) || n->n_tr_peers == RAFT_MEMBERS_MAX) continue;
        int rc = st_tr_peer_add(n->tr, id, addr);
        if (rc != 0 && rc != ST_EEXIST) {
            ST_TRACE_WARN(MOD, "node %" PRIu64 ": cannot add transport peer %" PRIu64 " at %s: %s",
                          n->cfg.id, id, addr, st_strerror(rc));
            continue;
        }
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": transport peer %" PRIu64 " at %s", n->cfg.id, id,
                      addr);
        n->st_tr_peers[n->n_tr_peers].id = id;
        snprintf(n->st_tr_peers[n->n_tr_peers].raft, NODE_ADDR_MAX, "%s", addr);
        n->st_tr_peers[n->n_tr_peers].http[0] = '\0';
        n->n_tr_peers++;
    }
}

/* ------------------------------------------------------------ transport */

void node_tr_msg_cb(void *ctx, raft_id from, const struct raft_msg *msg)
{
    struct node *n = ctx;
    if (!n->running || n->stopping || n->fatal) return;
    if (msg->type == RAFT_MSG_SNAPSHOT && msg->snapshot && node_install_begin(n, from, msg)) return;
    /* While a snapshot loads the core's log ends before it: an append would
     * be rejected and make the leader send the snapshot again. Heartbeats
     * are still answered (the leader keeps its quorum). */
    if (msg->type == RAFT_MSG_APPEND && n->install && !n->install->loaded) return;
    if (msg->type == RAFT_MSG_PROPOSE) node_restamp_forwarded(n, msg);
    int rc = msg->type == RAFT_MSG_PROPOSE ? node_memory_step_forwarded(n, msg)
                                           : raft_step(n->raft, msg);
    if (rc && rc != ST_ESTALE)
        ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": %s from %" PRIu64 " dropped: %s", n->cfg.id,
                       raft_msg_type_name(msg->type), from, st_strerror(rc));
}

void node_tr_peer_state_cb(void *ctx, raft_id peer, bool connected)
{
    struct node *n = ctx;
    ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": peer %" PRIu64 " %s", n->cfg.id, peer,
                   connected ? "connected" : "disconnected");
}

void node_tr_send_failed_cb(void *ctx, raft_id peer, uint8_t type, int status)
{
    struct node *n = ctx;
    (void)type;
    (void)status;
    if (n->running && !n->stopping) raft_report_unreachable(n->raft, peer);
}

/* ------------------------------------------------ receiving a snapshot
 *
 * The transport hands chunks to node_tr_snap_chunk_cb on the loop; they are
 * copied into snap_in's fill buffer, and the other buffer is written by the
 * threadpool (node_snap_io_work_cb), so a write that blocks under dirty-page
 * throttling blocks a worker, not the loop. */

static void snap_in_after_cb(uv_work_t *req, int status);

/* A write into the received snapshot failed with rc. A disk that fails a
 * write is not asked again (DESIGN 3.8, as the WAL and the commit below):
 * refusing each copy the leader sends again would leave a member lost
 * without a word (wsim seed 10618: a joiner's disk failed every operation
 * after a power loss and nothing else of it touched the disk). Stops the
 * node on ST_EIO and ST_EFATAL; a full disk only refuses. */
static void snap_in_failed(struct node *n, int rc)
{
    if (rc == ST_EIO || rc == ST_EFATAL)
        node_fatal(n, rc, "writing a snapshot from the leader failed");
}

void node_snap_in_release(struct node *n)
{
    struct node_snap_io *io = n->snap_in;
    n->snap_in = NULL;
    n->snap_in_paused = n->snap_in_ending = false;
    if (!io) return;
    if (io->busy)
        io->orphan = true;
    else
        node_snap_io_free(io);
}

static void snap_in_commit_work_cb(uv_work_t *req)
{
    struct node_snap_in_commit *c = req->data;
    c->rc = st_snap_write_commit(c->w, &c->meta, &c->info); /* frees w whatever it returns */
    c->w = NULL;
}

/* The received snapshot is durable (or not): opened for the install, and
 * the transport delivers it (or acknowledges the failure). */
static void snap_in_commit_done(struct node *n, raft_id from, int rc,
                                const struct st_snapshot_info *info)
{
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot from %" PRIu64 " not stored: %s", n->cfg.id,
                       from, st_strerror(rc));
        /* A disk that fails a write or a sync is not asked again (the WAL's
         * rule, DESIGN 3.8): going on would refuse every later copy of the
         * snapshot forever, a member lost without a word. Stopping lets the
         * process restart from what the disk holds. A full disk is not an
         * error of the disk: the leader sends the snapshot again later. */
        if (rc == ST_EIO || rc == ST_EFATAL) {
            node_fatal(n, rc, "storing a snapshot from the leader failed");
            if (n->tr && !n->stopping) st_tr_snapshot_resume(n->tr, from, rc);
            return;
        }
    } else {
        if (n->snap_in_rd) st_snap_read_close(n->snap_in_rd);
        rc = st_snap_read_open(n->storage->snaps, info->meta.index, &n->snap_in_rd,
                               &n->snap_in_rd_info);
        if (rc) {
            n->snap_in_rd = NULL;
            ST_TRACE_WARN(MOD,
                          "node %" PRIu64 ": snapshot from %" PRIu64
                          " stored but cannot be opened (%s): refused, the leader sends it again",
                          n->cfg.id, from, st_strerror(rc));
        }
    }
    if (n->tr && !n->stopping) st_tr_snapshot_resume(n->tr, from, rc);
}

static void snap_in_commit_after_cb(uv_work_t *req, int status)
{
    (void)status; /* never canceled */
    struct node_snap_in_commit *c = req->data;
    struct node *n = c->n;
    n->bg_pending--;
    n->snap_in_commit = NULL;
    if (!n->stopping) snap_in_commit_done(n, c->from, c->rc, &c->info);
    free(c);
    if (n->stopping) node_stop_maybe_finish(n);
}

/* Moves the inbound stream on once no write runs: writes what waits, or
 * after the end makes the file durable, or resumes a paused transport. */
static void snap_in_next(struct node *n)
{
    struct node_snap_io *io = n->snap_in;
    ST_ASSERT(!io->busy); /* io: the stream in progress, never NULL here */
    raft_id from = n->snap_in_from;
    if (io->rc) {
        int rc = io->rc;
        snap_in_failed(n, rc);
        if (n->snap_in_ending) { /* the end is ours to finish */
            node_snap_in_release(n);
            st_tr_snapshot_resume(n->tr, from, rc);
        } else if (n->snap_in_paused) { /* ends the stream: the end callback releases it */
            n->snap_in_paused = false;
            st_tr_snapshot_resume(n->tr, from, rc);
        } /* else the next chunk returns the error */
        return;
    }
    if (io->len[io->fill] > 0) {
        node_snap_io_flush(n, n->snap_in, snap_in_after_cb);
        if (n->snap_in_paused && io->len[io->fill] == 0) { /* room again */
            n->snap_in_paused = false;
            st_tr_snapshot_resume(n->tr, from, 0);
        }
        return;
    }
    if (n->snap_in_paused) {
        n->snap_in_paused = false;
        st_tr_snapshot_resume(n->tr, from, 0);
        return;
    }
    if (!n->snap_in_ending) return;
    /* every byte is written: make the file durable off the loop */
    struct st_snap_writer *w = io->w;
    io->w = NULL;
    node_snap_in_release(n);
    struct node_snap_in_commit *c = calloc(1, sizeof *c);
    struct st_snapshot_info info;
    memset(&info, 0, sizeof info);
    if (c) {
        c->n = n;
        c->w = w;
        c->from = from;
        c->meta = n->snap_in_meta;
        c->work.data = c;
        if (uv_queue_work(n->loop, &c->work, snap_in_commit_work_cb, snap_in_commit_after_cb) ==
            0) {
            n->bg_pending++;
            n->snap_in_commit = c;
            return;
        }
        free(c);
    }
    int rc = st_snap_write_commit(w, &n->snap_in_meta, &info);
    snap_in_commit_done(n, from, rc, &info);
}

static void snap_in_after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct node_snap_io *io = req->data;
    struct node *n = io->n;
    n->bg_pending--;
    io->busy = false;
    io->len[1 - io->fill] = 0;
    if (io->orphan) {
        node_snap_io_free(io);
    } else if (!n->stopping) {
        ST_ASSERT(n->snap_in == io);
        snap_in_next(n);
    }
    if (n->stopping) node_stop_maybe_finish(n);
}

int node_tr_snap_begin_cb(void *ctx, raft_id from, const struct raft_msg *msg, uint64_t size)
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
                           " refused: %" PRIu64 " bytes announced, %" PRIu64 " bytes free in %s",
                           n->cfg.id, msg->snapshot->index, from, size, avail, n->cfg.data_dir);
            return ST_ENOSPC;
        }
    }
    /* Not while the same (or a newer) snapshot is being loaded: the leader
     * asks again once it is installed, if it still needs to. */
    if (n->install && !n->install->loaded && msg->snapshot->index <= n->install->meta.index)
        return ST_EBUSY;
    /* Not while the previous stream's last write or its fsync runs (the
     * leader retries). */
    if ((n->snap_in && (n->snap_in->busy || n->snap_in_ending)) || n->snap_in_commit)
        return ST_EBUSY;
    if (n->snap_in) node_snap_in_release(n);
    struct node_snap_io *io = calloc(1, sizeof *io);
    if (!io) return ST_ENOMEM;
    io->n = n;
    int rc = st_snap_write_begin(n->storage->snaps, &io->w);
    if (rc) {
        free(io);
        snap_in_failed(n, rc);
        return rc;
    }
    n->snap_in = io;
    n->snap_in_paused = n->snap_in_ending = false;
    n->snap_in_from = from;
    n->snap_in_meta = *msg->snapshot;
    ST_TRACE_INFO(
        MOD, "node %" PRIu64 ": receiving snapshot %" PRIu64 " (%" PRIu64 " bytes) from %" PRIu64,
        n->cfg.id, msg->snapshot->index, size, from);
    return 0;
}

int node_tr_snap_chunk_cb(void *ctx, raft_id from, uint64_t offset, const uint8_t *data, size_t len)
{
    struct node *n = ctx;
    (void)offset;
    struct node_snap_io *io = n->snap_in;
    if (!io || n->snap_in_from != from || n->snap_in_ending) return ST_EINVAL;
    /* io->rc is the worker's while a write runs (busy): read it only after */
    if (!io->busy && io->rc) { /* an earlier write failed */
        snap_in_failed(n, io->rc);
        return io->rc;
    }
    int rc = node_snap_io_append(io, data, len);
    if (rc) return rc;
    if (!io->busy) node_snap_io_flush(n, n->snap_in, snap_in_after_cb);
    if (io->busy && io->len[io->fill] >= NODE_SNAP_IN_HELD_BYTES) {
        n->snap_in_paused = true;
        return ST_TR_CB_PENDING;
    }
    return 0;
}

int node_tr_snap_end_cb(void *ctx, raft_id from, int status)
{
    struct node *n = ctx;
    struct node_snap_io *io = n->snap_in;
    if (!io || n->snap_in_from != from || n->snap_in_ending) return ST_EINVAL;
    if (status != 0) {
        ST_TRACE_WARN(MOD, "node %" PRIu64 ": snapshot from %" PRIu64 " aborted: %s", n->cfg.id,
                      from, st_strerror(status));
        node_snap_in_release(n);
        return status;
    }
    if (!io->busy && io->rc) { /* (a running write's error: snap_in_next sees it) */
        int rc = io->rc;
        node_snap_in_release(n);
        return rc;
    }
    /* Every byte arrived: once the last ones are written, the file is made
     * durable off the loop (snap_in_next), then st_tr_snapshot_resume(). */
    n->snap_in_ending = true;
    if (!io->busy) snap_in_next(n);
    return ST_TR_CB_PENDING;
}

void node_tr_snap_sent_cb(void *ctx, raft_id to, int status)
{
    struct node *n = ctx;
    if (!n->running || n->stopping) return;
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": snapshot to %" PRIu64 ": %s", n->cfg.id, to,
                  status == 0 ? "stored" : st_strerror(status));
    raft_report_snapshot(n->raft, to, status == 0);
}
