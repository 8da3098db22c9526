/* The ready pipeline (DESIGN.md §2): for each ready of the core, persist,
 * send what may go before durability, apply committed entries to kv and
 * answer clients, then acknowledge; plus the loop's prepare/check/idle
 * hooks that run it. */
#include "node/node.h"

#include "kv/command.h"
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

/* ------------------------------------------------------------- sending */

void node_send_msg(struct node *n, const struct raft_msg *m)
{
    if (m->type == RAFT_MSG_SNAPSHOT) {
        char path[NODE_PATH_MAX + 128];
        struct st_snapshot_info info;
        ST_ASSERT(m->snapshot);
        int rc = st_snap_data_path(n->storage->snaps, m->snapshot->index, path, sizeof path, &info);
        if (rc == 0) rc = st_tr_send_snapshot(n->tr, m, path, info.data_bytes);
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
        rc = st_tr_send(n->tr, &copy);
        if (ents != stack) free(ents);
    } else {
        rc = st_tr_send(n->tr, m);
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
        n->pass_applied_bytes += e->len;
        if (e->type == RAFT_ENTRY_NORMAL && e->len > 0 && e->data[0] > KV_COMMAND_VERSION) {
            /* A command of a newer format (a member of a later release
             * wrote it, docs/ARCHITECTURE.md "Versions and upgrades"):
             * skipping it would leave this replica's state different from
             * the others' for good. Stop before it instead; a build that
             * reads the format applies it from the log on restart. */
            ST_TRACE_ERROR(MOD,
                           "node %" PRIu64 ": entry %" PRIu64 " is kv command format %u; this "
                           "build reads formats up to %u: upgrade this node (it stops rather "
                           "than skip the entry and diverge)",
                           n->cfg.id, e->index, (unsigned)e->data[0], (unsigned)KV_COMMAND_VERSION);
            node_fatal(n, ST_EPROTO, "an entry of a newer kv command format");
            return;
        }
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
        if (((n->cfg.snapshot_interval_s == 0 && node_snapshot_due(n, n->cfg.snapshot_threshold)) ||
             node_snapshot_due_bytes(n)) &&
            n->running && !n->fatal)
            node_snapshot_maybe(n, false);
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

/* The payload bytes of a batch. */
static uint64_t batch_bytes(const struct st_log_batch *b)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < b->n_entries; i++)
        bytes += b->entries[i].len;
    return bytes;
}

/* Hands a batch to the WAL: a lone entry is written and synced right here
 * when the writer is idle and the disk has been quick
 * (st_log_writer_write_now: no thread hand-offs, which at low load cost
 * more than the write; the policy is node/wal_inline.h), else queued for the
 * writer's threads (group commit while this thread goes on). */
int node_wal_write(struct node *n, const struct st_log_batch *b, uint64_t *seq)
{
    /* Not while a snapshot is written, made durable, received or loaded:
     * the disk is busy with it, and one inline fdatasync then took 25-50 ms
     * on the loop (1 GiB state, bench/reliability/snapshot_stall.py) before
     * the policy noticed. */
    bool snapshotting =
        n->snap_active || n->snap_commit || n->snap_in || n->snap_in_commit || n->install;
    if (n->cfg.wal_inline_always || (!snapshotting && batch_bytes(b) <= NODE_WAL_INLINE_BYTES_MAX &&
                                     node_wal_inline_ok(&n->wal_inline, node_now_us(), b->n_entries,
                                                        n->waiters_used, n->role == RAFT_LEADER))) {
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
            node_snap_job_release(n);
            node_snap_waiters_notify(n, ST_ECANCELED, 0);
        }
        int rc = 0;
        struct node_install *in = n->install;
        if (in && in->loaded && in->kv && in->meta.index == rd.snapshot->index) {
            struct st_snapshot_info info;
            memset(&info, 0, sizeof info);
            info.meta = in->meta;
            node_snapshot_adopt(n, in->kv, &info, in->keys);
            in->kv = NULL;
            node_install_free(n);
        } else {
            if (in && in->loaded) node_install_free(n);
            rc = node_snapshot_restore(n, rd.snapshot->index);
        }
        if (rc) {
            node_fatal(n, rc, "cannot install the leader's snapshot");
            raft_ready_ack(n->raft, &rd);
            return;
        }
        n->m.snapshots_installed++;
        node_client_snapshot_installed(n, rd.snapshot->index);
        b.snapshot_index = rd.snapshot->index;
        b.snapshot_term = rd.snapshot->term;
        /* The core discarded its whole log: drop every persisted entry
         * above the snapshot too (raft.h, struct raft_ready). */
        b.truncate_from = rd.snapshot->index + 1;
    }
    /* 2. Messages that may precede durability, first: a leader's appends
     * overlap its own disk write (thesis 10.2.1), also when that write
     * blocks this thread (node_wal_write). */
    for (size_t i = 0; i < rd.n_msgs; i++)
        node_send_msg(n, &rd.msgs[i]);
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
    bool hs_must_sync =
        n->hs_cur.term != n->hs_written.term || n->hs_cur.vote != n->hs_written.vote;
    bool write = b.snapshot_index || b.n_entries || hs_must_sync;
    if (write && memcmp(&n->hs_cur, &n->hs_written, sizeof n->hs_cur) != 0) {
        b.hard_state = &n->hs_cur;
        n->hs_written = n->hs_cur;
    }
    if (write) n->hs_idle_ticks = 0;
    if (write || rd.n_msgs_after_persist) {
        struct node_persist *p = node_persist_get(n);
        int rc = p ? 0 : ST_ENOMEM;
        if (p) {
            p->index = rd.persist_index;
            p->term = rd.persist_term;
            p->submit_us = node_now_us();
            for (size_t i = 0; i < rd.n_entries && rc == 0; i++)
                rc = node_persist_hold_buf(p, rd.entries[i].buf);
            for (size_t i = 0; i < rd.n_msgs_after_persist && rc == 0; i++)
                rc = node_persist_copy_msg(p, &rd.msgs_after_persist[i]);
            if (rc == 0 && write) {
                rc = node_persist_write(n, p, &b, true);
                n->m.write_batches++;
            }
        }
        if (rc) {
            if (p) node_persist_release(n, p);
            raft_ready_ack(n->raft, &rd);
            node_fatal(n, rc, "cannot queue a WAL write");
            return;
        }
        node_persist_enqueue(n, p);
    }
    /* 5. Apply what is committed; complete waiting clients. */
    raft_index applied_before = n->applied;
    apply_committed(n, rd.committed, rd.n_committed);
    if (n->applied > applied_before) node_watch_applied(n);
    /* 6. Read states: serve once applied reaches their index. */
    for (size_t i = 0; i < rd.n_reads; i++)
        node_client_read_state(n, &rd.reads[i]);
    raft_ready_ack(n->raft, &rd);
    if (n->applied > applied_before || rd.snapshot) raft_applied(n->raft, n->applied);
    if (n->applied > applied_before && n->mem.fwd_n) node_memory_applied_index(n, n->applied);
    if (n->applied > applied_before && n->role == RAFT_LEADER) node_memory_check_leader(n);
    node_client_serve_reads(n);
    /* msgs-only requests at the head complete at once, and so does a batch
     * node_wal_write made durable on this thread. */
    if (n->persist_head && (n->persist_head->seq == 0 || n->wal_inline_done)) node_persist_drain(n);
    n->wal_inline_done = false;
}

static void idle_cb(uv_idle_t *h)
{
    (void)h; /* only keeps the loop from blocking; node_check_cb does the work */
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
    n->pass_applied_bytes = 0;
    for (int i = 0; i < NODE_READIES_PER_PASS && raft_has_ready(n->raft) && !n->fatal &&
                    n->persist_inflight < NODE_PERSIST_INFLIGHT_MAX &&
                    n->pass_applied_bytes < NODE_APPLY_BYTES_PER_PASS;
         i++)
        process_one_ready(n);
    if (n->conf_dirty) node_reconcile_peers(n);
    /* a loaded snapshot the core did not install (a newer state got here
     * first) */
    if (n->install && n->install->loaded && n->applied >= n->install->meta.index)
        node_install_free(n);
    if (n->snap_active && !n->fatal && (!n->snap_steps_limited || n->snap_steps_left > 0)) {
        if (n->snap_steps_limited) n->snap_steps_left--;
        (void)node_snapshot_step(n, n->cfg.snapshot_step_bytes ? n->cfg.snapshot_step_bytes : 1,
                                 false, NULL);
    }
    n->processing = false;
#if defined(ST_DEBUG_CHECKS) && ST_DEBUG_CHECKS
    node_check_invariants(n);
#endif
    if (n->fatal || n->stopping) return;
    /* readies held back by NODE_PERSIST_INFLIGHT_MAX resume when the writer
     * reports (node_persist_async_cb), not by spinning */
    bool more = (raft_has_ready(n->raft) && n->persist_inflight < NODE_PERSIST_INFLIGHT_MAX) ||
                n->n_fwd || (n->snap_active && !n->snap_job.io->busy) ||
                (n->batch[0] && !st_list_empty(&n->batch[0]->waiters)) ||
                (n->batch[1] && !st_list_empty(&n->batch[1]->waiters));
    if (more && !uv_is_active((uv_handle_t *)&n->idle))
        uv_idle_start(&n->idle, idle_cb);
    else if (!more && uv_is_active((uv_handle_t *)&n->idle))
        uv_idle_stop(&n->idle);
}

/* Kept in step with node_process_readies above: each thing it would do. */
bool node_has_work(const struct node *n)
{
    if (!n->running || n->stopping || n->processing || n->fatal) return false;
    if (n->n_fwd) return true;
    for (int mode = 0; mode < 2; mode++)
        if (n->batch[mode] && !st_list_empty(&n->batch[mode]->waiters)) return true;
    if (n->persist_inflight < NODE_PERSIST_INFLIGHT_MAX && raft_has_ready(n->raft)) return true;
    if (n->conf_dirty) return true;
    if (n->install && n->install->loaded && n->applied >= n->install->meta.index) return true;
    return n->snap_active && (!n->snap_steps_limited || n->snap_steps_left > 0);
}

void node_check_cb(uv_check_t *h)
{
    node_process_readies(h->data);
}

/* Loop iterations: the time between two prepare phases minus the time the
 * loop slept in the poll is how long the loop was busy (callbacks, readies)
 * in that iteration; a long one delays heartbeats, reads and writes alike.
 * Measured here, after the readies, into stcache_loop_iteration_seconds. The
 * thread's CPU clock over the same span tells computing from waiting (a
 * preempted loop, or a system call that blocked). */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void loop_busy_observe(struct node *n)
{
    uint64_t now = uv_hrtime();
    uint64_t idle = uv_metrics_idle_time(n->loop);
    uint64_t cpu = thread_cpu_ns();
    if (n->loop_last_ns) {
        uint64_t span = now - n->loop_last_ns, slept = idle - n->loop_idle_last_ns;
        uint64_t busy_us = (span > slept ? span - slept : 0) / 1000;
        uint64_t cpu_us = cpu > n->loop_cpu_last_ns ? (cpu - n->loop_cpu_last_ns) / 1000 : 0;
        node_hist_add(&n->m.loop_busy, busy_us);
        if (busy_us > n->m.loop_busy_max_us) {
            n->m.loop_busy_max_us = busy_us;
            n->m.loop_busy_max_cpu_us = cpu_us;
        }
        if (cpu_us > n->m.loop_cpu_max_us) n->m.loop_cpu_max_us = cpu_us;
        if (busy_us >= NODE_LOOP_SLOW_US)
            ST_TRACE_WARN(MOD,
                          "node %" PRIu64 ": a loop iteration took %" PRIu64 " ms (%" PRIu64
                          " ms of it on the CPU)",
                          n->cfg.id, busy_us / 1000, cpu_us / 1000);
    }
    n->loop_last_ns = now;
    n->loop_idle_last_ns = idle;
    n->loop_cpu_last_ns = cpu;
}

void node_prepare_cb(uv_prepare_t *h)
{
    node_process_readies(h->data);
    loop_busy_observe(h->data);
}
