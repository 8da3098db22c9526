/* Persisting readies: the queue of writes to the log store (entries and
 * hard state, at most one in flight, messages held until durable), the
 * writer's completions, and the full-disk alarm (writes refused while the
 * disk is full, retried in order once it has room). */
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

static void nospace_retry(struct node *n);

/* ------------------------------------------------------------- persist */

struct node_persist *node_persist_get(struct node *n)
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

void node_persist_release(struct node *n, struct node_persist *p)
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

void node_persist_enqueue(struct node *n, struct node_persist *p)
{
    p->next = NULL;
    if (n->persist_tail)
        n->persist_tail->next = p;
    else
        n->persist_head = p;
    n->persist_tail = p;
    if (p->seq) n->persist_inflight++;
}

int node_persist_hold_buf(struct node_persist *p, struct raft_buf *b)
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

int node_persist_copy_msg(struct node_persist *p, const struct raft_msg *m)
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
                ST_TRACE_INFO(MOD,
                              "node %" PRIu64 ": handing leadership to %" PRIu64
                              " while the disk is full",
                              n->cfg.id, m->id);
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
        int rc = n->cfg.wal_inline_always ? node_wal_write(n, &p->batch, &p->seq)
                                          : st_log_writer_submit(n->writer, &p->batch, &p->seq);
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
        if (n->cfg.wal_inline_always) uv_async_send(&n->persist_async);
        p->submit_us = node_now_us();
        n->persist_inflight++;
    }
}

/* Gives a persist request its batch: copied into p (entry structs; the
 * payloads are already referenced by p->bufs), then written (node_wal_write) or,
 * while the disk is full, held. Returns 0 or a fatal code. */

int node_persist_write(struct node *n, struct node_persist *p, const struct st_log_batch *b,
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
    /* The simulator's nodes write everything on the loop thread (hard-state
     * flushes and compactions too): a thread's speed must not shape a run.
     * Outside a ready nothing drains such a write: the loop's next turn
     * does, woken as the writer's thread would wake it. */
    int rc = inline_ok || n->cfg.wal_inline_always
                 ? node_wal_write(n, &p->batch, &p->seq)
                 : st_log_writer_submit(n->writer, &p->batch, &p->seq);
    if (rc == 0) n->persist_last_seq = p->seq;
    if (rc == 0 && !inline_ok && n->cfg.wal_inline_always) uv_async_send(&n->persist_async);
    return rc;
}

/* Completes every persist request the writer has finished, in order. */
void node_persist_drain(struct node *n)
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
            node_send_msg(n, &p->msgs[i]);
        if (p->index) {
            pi = p->index;
            pt = p->term;
        }
        node_persist_release(n, p);
    }
    if (pi && n->raft && !n->stopping) raft_persisted(n->raft, pi, pt);
    if (n->nospace && completed && nospace_seq == 0 && !persist_any_held(n)) nospace_clear(n);
}

/* Writer thread: record what is durable, wake the loop. */
void node_writer_cb(void *ctx, const struct st_log_writer_result *res)
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

void node_persist_async_cb(uv_async_t *h)
{
    struct node *n = h->data;
    if (!n->running || n->stopping) return;
    node_persist_drain(n);
}
