/* A tiny in-memory cluster for scenario tests of the Raft core.
 *
 * The test drives everything explicitly: fx_tick() advances one node's clock,
 * fx_stabilize() runs every node's ready loop and delivers queued messages
 * until the cluster is quiet. Each node has a "disk" (hard state, snapshot
 * meta and log entries) maintained exactly as the ready contract says, and a
 * "state machine" that is a running hash of the applied payloads, so tests
 * can restart nodes from what they made durable and compare replicas.
 *
 * Persistence is synchronous by default. With manual_disk set on a node its
 * readies stay "in flight" (hard state, entries and msgs_after_persist held
 * back, lost if the node crashes) until fx_disk_flush(); this is how tests
 * check what may and may not leave before the disk.
 */
#ifndef ST_TEST_RAFT_FIXTURE_H
#define ST_TEST_RAFT_FIXTURE_H

#include "stcache/raft.h"
#include "test.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FX_NODES_MAX 7
#define FX_QUEUE_MAX 8192
#define FX_DISK_MAX 4096
#define FX_READS_MAX 256
#define FX_PEND_MAX 64
#define FX_HELD_MAX 1024

struct fx_msg {
    struct raft_msg m;
    struct raft_entry *ents;         /* owned copy, refs held */
    struct raft_snapshot_meta *meta; /* owned copy */
    uint64_t snap_sm;                /* state machine carried by a snapshot */
};

struct fx_pending_persist {
    raft_index index;
    raft_term term;
    bool has_hs; /* what the write carries: lost if the node crashes first */
    struct raft_hard_state hs;
    struct raft_entry *ents; /* owned copies, refs held */
    size_t n_ents;
    size_t first_after; /* held msgs_after_persist in fx_node.held [first, end) */
    size_t end_after;
};

struct fx_node {
    struct raft *r;
    raft_id id;
    bool up;
    struct raft_config cfg;
    /* disk */
    struct raft_hard_state hs;
    bool has_snap;
    struct raft_snapshot_meta snap;
    uint64_t snap_sm;
    /* state machines carried by SNAPSHOT messages received, by (index, term) */
    struct {
        raft_index index;
        raft_term term;
        uint64_t sm;
    } incoming[8];
    unsigned n_incoming;
    struct raft_entry disk[FX_DISK_MAX]; /* entries after the snapshot, refs held */
    size_t n_disk;
    raft_index disk_first;
    /* state machine */
    raft_index applied;
    uint64_t sm;
    raft_term *trace_terms; /* optional: term of each applied index (debugging) */
    size_t trace_cap;
    uint64_t n_applied_normal;
    /* reads answered */
    struct raft_read_state reads[FX_READS_MAX];
    size_t n_reads;
    /* manual disk: readies in flight */
    bool manual_disk;
    struct fx_pending_persist pend[FX_PEND_MAX];
    size_t n_pend;
    struct fx_msg held[FX_HELD_MAX];
    size_t n_held;
    /* counters of what this node sent */
    uint64_t sent[RAFT_MSG_TYPE_MAX];
};

struct fx {
    struct fx_node nodes[FX_NODES_MAX + 1]; /* index = id */
    int n;
    struct fx_msg q[FX_QUEUE_MAX];
    size_t qh, qn;
    bool cut[FX_NODES_MAX + 1][FX_NODES_MAX + 1]; /* cut[a][b]: a -> b dropped */
    /* optional filter: return false to drop */
    bool (*filter)(struct fx *f, const struct raft_msg *m, void *arg);
    void *filter_arg;
    /* optional: how many of an APPEND's entries get through (a prefix) */
    uint32_t (*trim)(struct fx *f, const struct raft_msg *m);
    uint64_t delivered;
    /* Emulate the transport's raft_report_snapshot(): ok once a SNAPSHOT is
     * delivered, failed when it is dropped. Off by default. */
    bool report_snapshots;
};

static inline void fx_snapshot_outcome(struct fx *f, const struct raft_msg *m, bool ok)
{
    if (!f->report_snapshots || m->type != RAFT_MSG_SNAPSHOT) return;
    struct fx_node *src = &f->nodes[m->from];
    if (src->up) raft_report_snapshot(src->r, m->to, ok);
}

static inline struct raft *fx_r(struct fx *f, raft_id id)
{
    return f->nodes[id].r;
}

static inline uint64_t fx_hash(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static inline void fx_msg_copy(struct fx_msg *dst, const struct raft_msg *m)
{
    memset(dst, 0, sizeof(*dst));
    dst->m = *m;
    if (m->n_entries) {
        dst->ents = calloc(m->n_entries, sizeof(struct raft_entry));
        if (!dst->ents) abort();
        for (uint32_t i = 0; i < m->n_entries; i++) {
            dst->ents[i] = m->entries[i];
            if (dst->ents[i].buf) raft_buf_ref(dst->ents[i].buf);
        }
    }
    dst->m.entries = dst->ents;
    if (m->snapshot) {
        dst->meta = malloc(sizeof(*dst->meta));
        if (!dst->meta) abort();
        *dst->meta = *m->snapshot;
    }
    dst->m.snapshot = dst->meta;
}

static inline void fx_msg_free(struct fx_msg *x)
{
    for (uint32_t i = 0; x->ents && i < x->m.n_entries; i++)
        raft_buf_unref(x->ents[i].buf);
    free(x->ents);
    free(x->meta);
    memset(x, 0, sizeof(*x));
}

static inline void fx_enqueue(struct fx *f, const struct raft_msg *m)
{
    struct fx_node *src = &f->nodes[m->from];
    src->sent[m->type]++;
    if (m->to < 1 || m->to > (raft_id)f->n) return;
    if (f->cut[m->from][m->to] || (f->filter && !f->filter(f, m, f->filter_arg))) {
        fx_snapshot_outcome(f, m, false);
        return;
    }
    if (f->qn >= FX_QUEUE_MAX) abort();
    struct fx_msg *x = &f->q[(f->qh + f->qn) % FX_QUEUE_MAX];
    struct raft_msg mm = *m;
    if (f->trim && m->type == RAFT_MSG_APPEND) mm.n_entries = f->trim(f, m);
    fx_msg_copy(x, &mm);
    if (m->type == RAFT_MSG_SNAPSHOT) x->snap_sm = src->snap_sm;
    f->qn++;
}

/* Moves a held message to the network queue (the disk became durable). */
static inline void fx_enqueue_owned(struct fx *f, struct fx_msg *x)
{
    f->nodes[x->m.from].sent[x->m.type]++;
    if (f->cut[x->m.from][x->m.to] || x->m.to < 1 || x->m.to > (raft_id)f->n ||
        (f->filter && !f->filter(f, &x->m, f->filter_arg))) {
        fx_msg_free(x);
        return;
    }
    if (f->qn >= FX_QUEUE_MAX) abort();
    f->q[(f->qh + f->qn) % FX_QUEUE_MAX] = *x;
    f->qn++;
    memset(x, 0, sizeof(*x));
}

/* --- disk ---------------------------------------------------------------- */

static inline void fx_disk_truncate(struct fx_node *n, raft_index from)
{
    while (n->n_disk > 0 && n->disk[n->n_disk - 1].index >= from) {
        raft_buf_unref(n->disk[n->n_disk - 1].buf);
        n->n_disk--;
    }
}

static inline void fx_disk_reset(struct fx_node *n)
{
    fx_disk_truncate(n, 0);
    n->n_disk = 0;
}

static inline void fx_disk_write_snapshot(struct fx_node *n, const struct raft_snapshot_meta *m)
{
    fx_disk_reset(n);
    n->has_snap = true;
    n->snap = *m;
    n->disk_first = m->index + 1;
}

static inline void fx_disk_write_entries(struct fx_node *n, const struct raft_entry *ents,
                                         size_t count)
{
    if (count == 0) return;
    fx_disk_truncate(n, ents[0].index);
    if (n->n_disk == 0) n->disk_first = ents[0].index;
    for (size_t i = 0; i < count; i++) {
        if (n->n_disk >= FX_DISK_MAX) abort();
        n->disk[n->n_disk] = ents[i];
        if (ents[i].buf) raft_buf_ref(ents[i].buf);
        n->n_disk++;
    }
}

static inline void fx_disk_write(struct fx_node *n, const struct raft_ready *rd)
{
    if (rd->snapshot) fx_disk_write_snapshot(n, rd->snapshot);
    fx_disk_write_entries(n, rd->entries, rd->n_entries);
    if (rd->hard_state_changed) n->hs = rd->hard_state;
}

static inline void fx_pending_free(struct fx_pending_persist *p)
{
    for (size_t i = 0; i < p->n_ents; i++)
        raft_buf_unref(p->ents[i].buf);
    free(p->ents);
    p->ents = NULL;
    p->n_ents = 0;
}

/* Drops disk entries below first (after raft_snapshot_taken). */
static inline void fx_disk_compact(struct fx_node *n, raft_index first)
{
    size_t k = 0;
    while (k < n->n_disk && n->disk[k].index < first)
        raft_buf_unref(n->disk[k++].buf);
    memmove(n->disk, n->disk + k, (n->n_disk - k) * sizeof(n->disk[0]));
    n->n_disk -= k;
    if (n->n_disk) n->disk_first = n->disk[0].index;
}

/* --- ready loop ---------------------------------------------------------- */

static inline void fx_apply(struct fx_node *n, const struct raft_entry *e)
{
    if (e->index != n->applied + 1) abort(); /* applied out of order: a core bug */
    n->applied = e->index;
    if (n->trace_terms && e->index < n->trace_cap) n->trace_terms[e->index] = e->term;
    uint8_t hdr[9];
    hdr[0] = e->type;
    for (int i = 0; i < 8; i++)
        hdr[1 + i] = (uint8_t)(e->term >> (8 * i));
    n->sm = fx_hash(n->sm, hdr, sizeof hdr);
    n->sm = fx_hash(n->sm, e->data, e->len);
    if (e->type == RAFT_ENTRY_NORMAL) n->n_applied_normal++;
}

static inline void fx_disk_flush(struct fx *f, raft_id id);

/* One ready of node id; returns false if it had none. */
static inline bool fx_ready(struct fx *f, raft_id id)
{
    struct fx_node *n = &f->nodes[id];
    if (!n->up || !raft_has_ready(n->r)) return false;
    struct raft_ready rd;
    raft_ready_get(n->r, &rd);
    if (rd.snapshot) {
        /* Install the state machine the snapshot message carried, durably,
         * after the writes already in flight (the disk is ordered). */
        if (n->manual_disk) fx_disk_flush(f, id);
        bool found = false;
        for (unsigned k = 0; k < 8 && !found; k++) {
            if (n->incoming[k].index == rd.snapshot->index &&
                n->incoming[k].term == rd.snapshot->term) {
                n->sm = n->incoming[k].sm;
                found = true;
            }
        }
        if (!found) /* a snapshot stepped in directly by a test: no bytes */
            n->sm = 0xdeadull ^ rd.snapshot->index;
        n->applied = rd.snapshot->index;
        n->snap_sm = n->sm;
        fx_disk_write_snapshot(n, rd.snapshot);
    }
    for (size_t i = 0; i < rd.n_msgs; i++)
        fx_enqueue(f, &rd.msgs[i]);
    if (!n->manual_disk) {
        fx_disk_write_entries(n, rd.entries, rd.n_entries);
        if (rd.hard_state_changed) n->hs = rd.hard_state;
        for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
            fx_enqueue(f, &rd.msgs_after_persist[i]);
    } else {
        if (n->n_pend >= FX_PEND_MAX || n->n_held + rd.n_msgs_after_persist > FX_HELD_MAX)
            abort(); /* the test must flush more often */
        struct fx_pending_persist *p = &n->pend[n->n_pend++];
        memset(p, 0, sizeof(*p));
        p->index = rd.persist_index;
        p->term = rd.persist_term;
        p->has_hs = rd.hard_state_changed;
        p->hs = rd.hard_state;
        if (rd.n_entries) {
            p->ents = calloc(rd.n_entries, sizeof(struct raft_entry));
            if (!p->ents) abort();
            for (size_t i = 0; i < rd.n_entries; i++) {
                p->ents[i] = rd.entries[i];
                if (p->ents[i].buf) raft_buf_ref(p->ents[i].buf);
            }
            p->n_ents = rd.n_entries;
        }
        p->first_after = n->n_held;
        for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
            fx_msg_copy(&n->held[n->n_held++], &rd.msgs_after_persist[i]);
        p->end_after = n->n_held;
    }
    for (size_t i = 0; i < rd.n_committed; i++)
        fx_apply(n, &rd.committed[i]);
    for (size_t i = 0; i < rd.n_reads; i++) {
        if (n->n_reads < FX_READS_MAX) n->reads[n->n_reads++] = rd.reads[i];
    }
    raft_index applied = n->applied;
    raft_index pi = rd.persist_index;
    raft_term pt = rd.persist_term;
    raft_ready_ack(n->r, &rd);
    if (!n->manual_disk && pi) raft_persisted(n->r, pi, pt);
    if (rd.n_committed) raft_applied(n->r, applied);
    raft_check_invariants(n->r);
    return true;
}

/* Completes the node's in-flight disk writes: releases held messages and
 * reports the newest durable position. */
static inline void fx_disk_flush(struct fx *f, raft_id id)
{
    struct fx_node *n = &f->nodes[id];
    raft_index pi = 0;
    raft_term pt = 0;
    for (size_t k = 0; k < n->n_pend; k++) {
        struct fx_pending_persist *p = &n->pend[k];
        fx_disk_write_entries(n, p->ents, p->n_ents);
        if (p->has_hs) n->hs = p->hs;
        fx_pending_free(p);
        for (size_t i = p->first_after; i < p->end_after; i++)
            fx_enqueue_owned(f, &n->held[i]);
        if (p->index) {
            pi = p->index;
            pt = p->term;
        }
    }
    n->n_pend = 0;
    n->n_held = 0;
    if (pi) raft_persisted(n->r, pi, pt);
    raft_check_invariants(n->r);
}

static inline bool fx_deliver_one(struct fx *f)
{
    if (f->qn == 0) return false;
    struct fx_msg x = f->q[f->qh];
    f->qh = (f->qh + 1) % FX_QUEUE_MAX;
    f->qn--;
    struct fx_node *dst = &f->nodes[x.m.to];
    if (dst->up && !f->cut[x.m.from][x.m.to]) {
        if (x.m.type == RAFT_MSG_SNAPSHOT && x.m.snapshot) {
            /* the bytes arrive with the message */
            unsigned k = dst->n_incoming++ % 8;
            dst->incoming[k].index = x.m.snapshot->index;
            dst->incoming[k].term = x.m.snapshot->term;
            dst->incoming[k].sm = x.snap_sm;
        }
        raft_step(dst->r, &x.m);
        raft_check_invariants(dst->r);
        f->delivered++;
        fx_snapshot_outcome(f, &x.m, true);
    } else {
        fx_snapshot_outcome(f, &x.m, false);
    }
    fx_msg_free(&x);
    return true;
}

/* Runs readies and deliveries until nothing moves (bounded). */
static inline void fx_stabilize(struct fx *f)
{
    for (int guard = 0; guard < 100000; guard++) {
        bool any = false;
        for (int i = 1; i <= f->n; i++)
            while (fx_ready(f, (raft_id)i))
                any = true;
        if (fx_deliver_one(f)) any = true;
        if (!any) return;
    }
    abort();
}

static inline void fx_drop_queue(struct fx *f)
{
    while (f->qn) {
        fx_msg_free(&f->q[f->qh]);
        f->qh = (f->qh + 1) % FX_QUEUE_MAX;
        f->qn--;
    }
}

/* --- setup --------------------------------------------------------------- */

static inline void fx_config(struct raft_config *c, raft_id id)
{
    raft_config_default(c, id);
    c->seed = 1000 + id;
    c->election_ticks = 10;
    c->heartbeat_ticks = 1;
    c->trailing_entries = 5;
    c->reads_pending_max = 64;
}

/* Starts node id from its disk; force_self: raft_bootstrap_state's (lost
 * quorum recovery), NULL normally. Returns raft_create's code. */
static inline int fx_start_node_ex(struct fx *f, raft_id id, const struct raft_conf *initial,
                                   const struct raft_member *force_self)
{
    struct fx_node *n = &f->nodes[id];
    struct raft_bootstrap_state st;
    memset(&st, 0, sizeof(st));
    st.hard_state = n->hs;
    st.snapshot = n->has_snap ? &n->snap : NULL;
    st.entries = n->n_disk ? n->disk : NULL;
    st.n_entries = n->n_disk;
    st.initial_conf = initial;
    st.applied = n->has_snap ? n->snap.index : 0;
    st.force_self = force_self;
    n->applied = st.applied;
    n->sm = n->has_snap ? n->snap_sm : 0;
    int rc = raft_create(&n->cfg, &st, &n->r);
    if (rc != 0) return rc;
    n->up = true;
    raft_check_invariants(n->r);
    return 0;
}

static inline void fx_start_node(struct fx *f, raft_id id, const struct raft_conf *initial)
{
    if (fx_start_node_ex(f, id, initial, NULL) != 0) abort();
}

static inline void fx_conf_voters(struct raft_conf *c, int voters, int learners)
{
    memset(c, 0, sizeof(*c));
    for (int i = 1; i <= voters + learners; i++) {
        c->members[c->n].id = (raft_id)i;
        c->members[c->n].role = i <= voters ? RAFT_VOTER : RAFT_LEARNER;
        c->n++;
    }
}

/* n nodes; the first `voters` are voters of the initial configuration, the
 * next `learners` learners, the rest start empty (joiners). tweak may edit
 * each config. */
static inline struct fx *fx_create_ex(int n, int voters, int learners,
                                      void (*tweak)(struct raft_config *c))
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f) abort();
    f->n = n;
    struct raft_conf conf;
    fx_conf_voters(&conf, voters, learners);
    for (int i = 1; i <= n; i++) {
        struct fx_node *nd = &f->nodes[i];
        nd->id = (raft_id)i;
        fx_config(&nd->cfg, (raft_id)i);
        if (tweak) tweak(&nd->cfg);
        fx_start_node(f, (raft_id)i, i <= voters + learners ? &conf : NULL);
    }
    fx_stabilize(f);
    return f;
}

static inline struct fx *fx_create(int n)
{
    return fx_create_ex(n, n, 0, NULL);
}

static inline void fx_crash(struct fx *f, raft_id id)
{
    struct fx_node *n = &f->nodes[id];
    raft_destroy(n->r);
    n->r = NULL;
    n->up = false;
    /* Unflushed writes are lost with the process. */
    for (size_t i = 0; i < n->n_held; i++)
        fx_msg_free(&n->held[i]);
    for (size_t k = 0; k < n->n_pend; k++)
        fx_pending_free(&n->pend[k]);
    n->n_held = 0;
    n->n_pend = 0;
}

static inline void fx_restart(struct fx *f, raft_id id)
{
    fx_start_node(f, id, NULL);
}

static inline void fx_destroy(struct fx *f)
{
    fx_drop_queue(f);
    for (int i = 1; i <= f->n; i++) {
        struct fx_node *n = &f->nodes[i];
        if (n->up) fx_crash(f, (raft_id)i);
        fx_disk_reset(n);
        free(n->trace_terms);
    }
    free(f);
}

static inline void fx_tick(struct fx *f, raft_id id, int times)
{
    for (int i = 0; i < times; i++) {
        if (f->nodes[id].up) {
            raft_tick(f->nodes[id].r);
            raft_check_invariants(f->nodes[id].r);
        }
    }
}

/* Ticks every live node once per round, stabilizing after each tick. */
static inline void fx_run(struct fx *f, int rounds)
{
    for (int k = 0; k < rounds; k++) {
        for (int i = 1; i <= f->n; i++)
            fx_tick(f, (raft_id)i, 1);
        fx_stabilize(f);
    }
}

/* Makes id campaign and stabilizes; returns the leader afterwards. */
static inline raft_id fx_elect(struct fx *f, raft_id id)
{
    raft_campaign(f->nodes[id].r);
    fx_stabilize(f);
    return raft_leader(f->nodes[id].r);
}

/* The application snapshots its state machine at its applied index. */
static inline raft_index fx_snapshot(struct fx *f, raft_id id)
{
    struct fx_node *n = &f->nodes[id];
    raft_index first = raft_snapshot_taken(n->r, n->applied);
    const struct raft_snapshot_meta *m = raft_snapshot_get(n->r);
    if (m && m->index == n->applied) {
        n->has_snap = true;
        n->snap = *m;
        n->snap_sm = n->sm;
    }
    fx_disk_compact(n, first);
    raft_check_invariants(n->r);
    return first;
}

static inline raft_id fx_leader(struct fx *f)
{
    raft_id found = RAFT_NONE;
    raft_term best = 0;
    for (int i = 1; i <= f->n; i++) {
        struct fx_node *n = &f->nodes[i];
        if (n->up && raft_role_get(n->r) == RAFT_LEADER && raft_term_get(n->r) >= best) {
            best = raft_term_get(n->r);
            found = (raft_id)i;
        }
    }
    return found;
}

static inline void fx_isolate(struct fx *f, raft_id id, bool cut)
{
    for (int i = 1; i <= f->n; i++) {
        f->cut[id][i] = cut;
        f->cut[i][id] = cut;
    }
}

static inline int fx_propose_str(struct fx *f, raft_id id, const char *s, raft_index *idx)
{
    size_t len = strlen(s);
    struct raft_buf *b = raft_buf_create(len);
    if (!b) abort();
    memcpy(b->data, s, len);
    int rc = raft_propose(f->nodes[id].r, b, b->data, (uint32_t)len, idx, NULL);
    raft_buf_unref(b);
    return rc;
}

static inline int fx_propose_size(struct fx *f, raft_id id, size_t len)
{
    struct raft_buf *b = raft_buf_create(len);
    if (!b) abort();
    memset(b->data, 'x', len);
    int rc = raft_propose(f->nodes[id].r, b, b->data, (uint32_t)len, NULL, NULL);
    raft_buf_unref(b);
    return rc;
}

static inline int fx_conf_change(struct fx *f, raft_id leader, uint8_t op, raft_id id,
                                 raft_index *idx)
{
    struct raft_conf_change cc;
    memset(&cc, 0, sizeof(cc));
    cc.op = op;
    cc.id = id;
    return raft_propose_conf_change(f->nodes[leader].r, &cc, idx);
}

#endif
