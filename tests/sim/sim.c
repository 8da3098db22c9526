/* The simulated cluster: nodes, disks, network, clients and chaos around
 * real Raft cores, driven by one seeded event queue (see sim.h). */
#include "sim.h"

#include "util/assert.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sim *sim_current;

#define SIM_LIVENESS_TICKS 600 /* bound on the final, fault-free phase */
#define SIM_ELECTION_TICKS 10
#define SIM_READY_LOOPS_MAX 256 /* readies in a row before we call it a livelock */

/* ------------------------------------------------------------- hashing */

uint64_t sim_hash_bytes(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t sim_hash_u64(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

uint64_t sim_entry_hash(const struct raft_entry *e)
{
    /* Word at a time: this runs over every entry in memory after every step. */
    uint64_t h = sim_hash_u64(0x9ae16a3b2f90404full, (uint64_t)e->type << 32 | e->len);
    size_t i = 0;
    for (; i + 8 <= e->len; i += 8) {
        uint64_t w;
        memcpy(&w, e->data + i, 8);
        h = (h ^ w) * 0x9fb21c651e98df25ull;
        h ^= h >> 29;
    }
    uint64_t tail = 0;
    if (e->len > i) memcpy(&tail, e->data + i, e->len - i);
    return sim_hash_u64(h, tail);
}

const char *sim_role_short(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "F";
    case RAFT_PRE_CANDIDATE:
        return "P";
    case RAFT_CANDIDATE:
        return "C";
    case RAFT_LEADER:
        return "L";
    }
    return "?";
}

/* ---------------------------------------------------------- transcript */

void sim_trace(struct sim *s, const char *fmt, ...)
{
    char *line = s->ring[s->ring_pos];
    int off = snprintf(line, sizeof s->ring[0], "%8" PRId64 " #%-6" PRIu64 " ", s->now, s->step);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof s->ring[0] - (size_t)off, fmt, ap);
    va_end(ap);
    s->hash = sim_hash_bytes(s->hash, line, strlen(line));
    if (s->opt.verbose) printf("%s\n", line);
    s->ring_pos = (s->ring_pos + 1) % SIM_TRACE_RING;
    if (s->ring_n < SIM_TRACE_RING) s->ring_n++;
}

void sim_fail(struct sim *s, const char *fmt, ...)
{
    if (s->res->failed) return;
    s->res->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->res->msg, sizeof s->res->msg, fmt, ap);
    va_end(ap);
    sim_trace(s, "FAIL %s", s->res->msg);
}

/* ------------------------------------------------------- state machine */

size_t sim_cmd_encode(const struct sim_cmd *c, uint8_t *out)
{
    out[0] = 'W';
    out[1] = c->client;
    out[2] = c->key;
    out[3] = c->pad_len;
    for (int i = 0; i < 4; i++)
        out[4 + i] = (uint8_t)(c->seq >> (8 * i));
    for (int i = 0; i < 8; i++)
        out[8 + i] = (uint8_t)(c->value >> (8 * i));
    for (uint32_t j = 0; j < c->pad_len; j++)
        out[SIM_CMD_HDR + j] = (uint8_t)(c->value * 31 + j);
    return SIM_CMD_HDR + c->pad_len;
}

int sim_cmd_decode(const uint8_t *data, size_t len, struct sim_cmd *c)
{
    if (len < SIM_CMD_HDR || data[0] != 'W') return -1;
    c->client = data[1];
    c->key = data[2];
    c->pad_len = data[3];
    c->seq = 0;
    for (int i = 0; i < 4; i++)
        c->seq |= (uint32_t)data[4 + i] << (8 * i);
    c->value = 0;
    for (int i = 0; i < 8; i++)
        c->value |= (uint64_t)data[8 + i] << (8 * i);
    if (len != SIM_CMD_HDR + (size_t)c->pad_len || c->client >= SIM_CLIENTS_MAX ||
        c->key >= SIM_KEYS || c->value != ((uint64_t)c->client << 32 | c->seq))
        return -1;
    for (uint32_t j = 0; j < c->pad_len; j++)
        if (data[SIM_CMD_HDR + j] != (uint8_t)(c->value * 31 + j)) return -1;
    return 0;
}

/* Applies e; *effective tells whether a write took effect (not a duplicate).
 * A corrupt command payload fails the run. */
void sim_sm_apply(struct sim_sm *sm, const struct raft_entry *e, struct sim_cmd *cmd,
                  bool *effective)
{
    *effective = false;
    memset(cmd, 0, sizeof(*cmd));
    sm->applied = e->index;
    sm->applied_term = e->term;
    sm->chain =
        sim_hash_u64(sim_hash_u64(sim_hash_u64(sm->chain, e->index), e->term), sim_entry_hash(e));
    if (e->type != RAFT_ENTRY_NORMAL) return;
    if (sim_cmd_decode(e->data, e->len, cmd) != 0) {
        cmd->client = UINT8_MAX;
        return;
    }
    if (cmd->seq > sm->last_seq[cmd->client]) {
        sm->last_seq[cmd->client] = cmd->seq;
        sm->value[cmd->key] = cmd->value;
        sm->version = e->index;
        sm->writes++;
        *effective = true;
    }
}

/* ------------------------------------------------------------ helpers */

static uint64_t rnd(struct sim *s, uint64_t bound)
{
    return bound ? st_rng_below(&s->rng, bound) : 0;
}

static bool chance(struct sim *s, uint32_t pct)
{
    return pct && st_rng_below(&s->rng, 100) < pct;
}

static struct sim_node *node_get(struct sim *s, raft_id id)
{
    if (id == RAFT_NONE || id > SIM_NODES_MAX || !s->nodes[id].exists) return NULL;
    return &s->nodes[id];
}

static struct sim_node *node_up(struct sim *s, raft_id id)
{
    struct sim_node *n = node_get(s, id);
    return n && n->up ? n : NULL;
}

/* A random node that is up, or NULL. */
static struct sim_node *random_up(struct sim *s)
{
    raft_id ids[SIM_NODES_MAX] = {0};
    size_t k = 0;
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++)
        if (node_up(s, id)) ids[k++] = id;
    return k ? &s->nodes[ids[rnd(s, k)]] : NULL;
}

/* A random up node of the committed configuration (what a client knows of
 * the cluster), else any up node, else NULL. */
static struct sim_node *random_member(struct sim *s)
{
    raft_id ids[SIM_NODES_MAX] = {0};
    size_t k = 0;
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++)
        if (node_up(s, id) && raft_conf_find(&s->ck.conf, id)) ids[k++] = id;
    return k ? &s->nodes[ids[rnd(s, k)]] : random_up(s);
}

/* The up leader with the highest term (ties: lowest id), or NULL. */
static struct sim_node *sim_leader(struct sim *s)
{
    struct sim_node *best = NULL;
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++) {
        struct sim_node *n = node_up(s, id);
        if (n && raft_role_get(n->r) == RAFT_LEADER &&
            (!best || raft_term_get(n->r) > raft_term_get(best->r)))
            best = n;
    }
    return best;
}

static void *xrealloc(struct sim *s, void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    ST_ASSERT(q); /* the simulator does not model its own allocation failures */
    (void)s;
    return q;
}

static void ent_copy(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    if (dst->buf) raft_buf_ref(dst->buf);
}

static void ents_release(struct raft_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        raft_buf_unref(e[i].buf);
}

/* -------------------------------------------------------------- events */

static void heap_push(struct sim *s, struct sim_event ev)
{
    if (s->heap_n == s->heap_cap) {
        s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 256;
        s->heap = xrealloc(s, s->heap, s->heap_cap * sizeof(*s->heap));
    }
    ev.seq = s->ev_seq++;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        const struct sim_event *pe = &s->heap[p];
        if (pe->at < ev.at || (pe->at == ev.at && pe->seq < ev.seq)) break;
        s->heap[i] = *pe;
        i = p;
    }
    s->heap[i] = ev;
}

static bool ev_less(const struct sim_event *a, const struct sim_event *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static struct sim_event heap_pop(struct sim *s)
{
    ST_ASSERT(s->heap_n > 0);
    struct sim_event top = s->heap[0];
    struct sim_event last = s->heap[--s->heap_n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        const struct sim_event *cand = &last;
        if (l < s->heap_n && ev_less(&s->heap[l], cand)) {
            m = l;
            cand = &s->heap[l];
        }
        if (l + 1 < s->heap_n && ev_less(&s->heap[l + 1], cand)) m = l + 1;
        if (m == i) break;
        s->heap[i] = s->heap[m];
        i = m;
    }
    if (s->heap_n) s->heap[i] = last;
    return top;
}

static void schedule(struct sim *s, int64_t at, uint8_t type, uint8_t node, uint32_t inc,
                     uint64_t arg, struct sim_msg *msg)
{
    heap_push(s, (struct sim_event){
                     .at = at, .type = type, .node = node, .inc = inc, .arg = arg, .msg = msg});
}

/* ------------------------------------------------------------ messages */

static void msg_free(struct sim_msg *sm)
{
    if (!sm) return;
    ents_release(sm->m.entries, sm->m.n_entries);
    free(sm->m.entries);
    free(sm->m.snapshot);
    free(sm);
}

static struct sim_msg *msg_dup(struct sim *s, const struct raft_msg *m)
{
    struct sim_msg *c = xrealloc(s, NULL, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->m = *m;
    c->m.entries = NULL;
    c->m.snapshot = NULL;
    if (m->n_entries) {
        c->m.entries = xrealloc(s, NULL, m->n_entries * sizeof(*m->entries));
        for (uint32_t i = 0; i < m->n_entries; i++)
            ent_copy(&c->m.entries[i], &m->entries[i]);
    }
    if (m->snapshot) {
        c->m.snapshot = xrealloc(s, NULL, sizeof(*m->snapshot));
        *c->m.snapshot = *m->snapshot;
    }
    return c;
}

static struct sim_msg *msg_clone(struct sim *s, const struct sim_msg *src)
{
    struct sim_msg *c = msg_dup(s, &src->m);
    c->snap_data = src->snap_data;
    c->from_inc = src->from_inc;
    return c;
}

static void trace_msg(struct sim *s, const char *what, const struct raft_msg *m)
{
    char ents[48] = "";
    if (m->n_entries)
        snprintf(ents, sizeof ents, " e[%" PRIu64 "..%" PRIu64 "]", m->entries[0].index,
                 m->entries[m->n_entries - 1].index);
    char snap[48] = "";
    if (m->snapshot)
        snprintf(snap, sizeof snap, " snap(%" PRIu64 "/%" PRIu64 ")", m->snapshot->index,
                 m->snapshot->term);
    sim_trace(s,
              "%s n%" PRIu64 ">n%" PRIu64 " %s t%" PRIu64 " i%" PRIu64 "/%" PRIu64 " c%" PRIu64
              "%s%s%s ctx%" PRIu64,
              what, m->from, m->to, raft_msg_type_name(m->type), m->term, m->index, m->log_term,
              m->commit, m->reject ? " REJECT" : "", ents, snap, m->context);
}

static void report_later(struct sim *s, raft_id sender, uint32_t inc, raft_id to, bool snapshot,
                         bool ok)
{
    uint64_t arg = to | (uint64_t)snapshot << 32 | (uint64_t)ok << 33;
    schedule(s, s->now + 1 + (int64_t)rnd(s, 5), SIM_EV_REPORT, (uint8_t)sender, inc, arg, NULL);
}

/* Hands a message from node n to the network. */
static void net_send(struct sim *s, struct sim_node *n, const struct raft_msg *m)
{
    sim_check_send(s, n, m);
    s->res->counts.msgs++;
    if (m->from != n->id) {
        sim_fail(s, "n%" PRIu64 " sent a message with from=%" PRIu64, n->id, m->from);
        return;
    }
    struct sim_node *to = node_get(s, m->to);
    if (!to) {
        trace_msg(s, "lost(no such node)", m);
        return;
    }
    if (m->type == RAFT_MSG_APPEND && m->n_entries)
        sim_check_visible(s, n, m->entries, m->n_entries, true, m->log_term);
    struct sim_msg *c = msg_dup(s, m);
    c->from_inc = n->inc;
    if (m->type == RAFT_MSG_SNAPSHOT) {
        if (!m->snapshot) {
            sim_fail(s, "n%" PRIu64 " sent SNAPSHOT without meta", n->id);
            msg_free(c);
            return;
        }
        /* The transport streams the sender's snapshot file. */
        if (!n->has_snap || n->snap.index != m->snapshot->index ||
            n->snap.term != m->snapshot->term) {
            sim_fail(s,
                     "n%" PRIu64 " sent SNAPSHOT %" PRIu64 "/%" PRIu64
                     " but its disk holds snapshot %" PRIu64 "/%" PRIu64,
                     n->id, m->snapshot->index, m->snapshot->term, n->has_snap ? n->snap.index : 0,
                     n->has_snap ? n->snap.term : 0);
            msg_free(c);
            return;
        }
        c->snap_data = n->snap_sm;
    }
    bool snap = m->type == RAFT_MSG_SNAPSHOT;
    if (s->blocked[m->from][m->to] || chance(s, s->prof.drop_pct)) {
        trace_msg(s, s->blocked[m->from][m->to] ? "cut" : "drop", m);
        if (snap)
            report_later(s, n->id, n->inc, m->to, true, false);
        else if (s->blocked[m->from][m->to] && chance(s, 20))
            report_later(s, n->id, n->inc, m->to, false, false);
        msg_free(c);
        return;
    }
    int copies = chance(s, s->prof.dup_pct) ? 2 : 1;
    for (int k = 0; k < copies; k++) {
        int64_t delay = s->prof.delay_min_ms + (int64_t)rnd(s, s->prof.delay_jitter_ms + 1);
        if (chance(s, s->prof.long_delay_pct)) delay += 50 + (int64_t)rnd(s, 350);
        struct sim_msg *x = k == 0 ? c : msg_clone(s, c);
        schedule(s, s->now + delay, SIM_EV_DELIVER, (uint8_t)m->to, 0, 0, x);
    }
    trace_msg(s, copies == 2 ? "send x2" : "send", m);
}

/* ---------------------------------------------------------------- disk */

raft_index sim_disk_last(const struct sim_node *n)
{
    raft_index last = n->has_snap ? n->snap.index : 0;
    if (n->log_n && n->log[n->log_n - 1].index > last) last = n->log[n->log_n - 1].index;
    return last;
}

/* Term of the durable entry at index; false when the disk cannot tell. */
bool sim_disk_term(const struct sim_node *n, raft_index index, raft_term *term)
{
    if (n->log_n && index >= n->log[0].index && index <= n->log[n->log_n - 1].index) {
        *term = n->log[index - n->log[0].index].term;
        return true;
    }
    if (n->has_snap && index == n->snap.index) {
        *term = n->snap.term;
        return true;
    }
    return false;
}

static void disk_truncate_from(struct sim_node *n, raft_index index)
{
    while (n->log_n && n->log[n->log_n - 1].index >= index) {
        raft_buf_unref(n->log[n->log_n - 1].buf);
        n->log_n--;
    }
}

/* Drops durable entries below index (compaction). */
static void disk_drop_below(struct sim_node *n, raft_index index)
{
    if (!n->log_n) return;
    size_t k = 0;
    while (k < n->log_n && n->log[k].index < index)
        raft_buf_unref(n->log[k++].buf);
    memmove(n->log, n->log + k, (n->log_n - k) * sizeof(*n->log));
    n->log_n -= k;
}

static void disk_write_entries(struct sim *s, struct sim_node *n, const struct raft_entry *e,
                               size_t cnt)
{
    if (!cnt) return;
    raft_index first = e[0].index;
    if (n->has_snap && first <= n->snap.index) {
        sim_fail(s, "n%" PRIu64 ": persisting entry %" PRIu64 " inside snapshot %" PRIu64, n->id,
                 first, n->snap.index);
        return;
    }
    if (first > sim_disk_last(n) + 1) {
        sim_fail(s, "n%" PRIu64 ": persisting entry %" PRIu64 " leaves a gap after %" PRIu64, n->id,
                 first, sim_disk_last(n));
        return;
    }
    raft_term prev = 0;
    bool prev_known = first == 1 || sim_disk_term(n, first - 1, &prev);
    sim_check_visible(s, n, e, cnt, prev_known, prev);
    disk_truncate_from(n, first);
    if (n->log_n + cnt > n->log_cap) {
        n->log_cap = (n->log_n + cnt) * 2;
        n->log = xrealloc(s, n->log, n->log_cap * sizeof(*n->log));
    }
    for (size_t i = 0; i < cnt; i++) {
        if (e[i].index != first + i) {
            sim_fail(s, "n%" PRIu64 ": ready entries not contiguous at %" PRIu64, n->id,
                     e[i].index);
            return;
        }
        ent_copy(&n->log[n->log_n++], &e[i]);
    }
}

static void write_free(struct sim_write *w)
{
    ents_release(w->ents, w->n_ents);
    free(w->ents);
    for (size_t i = 0; i < w->n_after; i++)
        msg_free(w->after[i]);
    free(w->after);
}

/* Makes the oldest pending write durable. Returns it (caller frees). */
static struct sim_write disk_complete_head(struct sim *s, struct sim_node *n)
{
    struct sim_write w = n->wq[0];
    memmove(n->wq, n->wq + 1, (n->wq_n - 1) * sizeof(*n->wq));
    n->wq_n--;
    if (w.hs_changed) n->hs = w.hs;
    disk_write_entries(s, n, w.ents, w.n_ents);
    return w;
}

static void send_after(struct sim *s, struct sim_node *n, struct sim_write *w)
{
    for (size_t i = 0; i < w->n_after && !s->res->failed; i++)
        net_send(s, n, &w->after[i]->m);
}

/* -------------------------------------------------------------- nodes */

static void process_ready(struct sim *s, struct sim_node *n);

static void after_input(struct sim *s, struct sim_node *n)
{
    n->touched = true;
    if (s->res->failed || !n->up) return;
    sim_check_observe(s, n);
    process_ready(s, n);
}

static void node_config(struct sim *s, struct sim_node *n)
{
    n->cfg = s->base_cfg;
    n->cfg.id = n->id;
    n->cfg.seed = sim_hash_u64(sim_hash_u64(s->seed, n->id), n->inc);
}

static void node_schedule_tick(struct sim *s, struct sim_node *n)
{
    schedule(s, s->now + 1 + (int64_t)rnd(s, SIM_TICK_MS), SIM_EV_TICK, (uint8_t)n->id, n->inc, 0,
             NULL);
}

/* raft_create() from what the disk holds. */
static int node_boot(struct sim *s, struct sim_node *n)
{
    node_config(s, n);
    struct raft_bootstrap_state bs;
    memset(&bs, 0, sizeof(bs));
    bs.hard_state = n->hs;
    bs.snapshot = n->has_snap ? &n->snap : NULL;
    size_t k = 0;
    while (k < n->log_n && n->has_snap && n->log[k].index <= n->snap.index)
        k++;
    bs.entries = n->log_n > k ? n->log + k : NULL;
    bs.n_entries = n->log_n - k;
    bs.applied = n->has_snap ? n->snap.index : 0;
    if (n->initial && !n->has_snap && n->log_n == 0) bs.initial_conf = &s->initial_conf;
    int rc = raft_create(&n->cfg, &bs, &n->r);
    if (rc != 0) {
        sim_fail(s, "n%" PRIu64 ": raft_create from its disk failed: %s", n->id, st_strerror(rc));
        n->r = NULL;
        return rc;
    }
    n->up = true;
    n->sm = n->has_snap ? n->snap_sm : (struct sim_sm){0};
    n->role = RAFT_FOLLOWER;
    n->term = 0;
    n->commit = 0;
    n->stash_valid = false;
    n->n_reads = 0;
    n->disk_busy_until = s->now;
    sim_trace(s,
              "n%" PRIu64 " boot inc%u hs(t%" PRIu64 " v%" PRIu64 " c%" PRIu64 ") snap %" PRIu64
              "/%" PRIu64 " log %" PRIu64 "..%" PRIu64,
              n->id, n->inc, n->hs.term, n->hs.vote, n->hs.commit, n->has_snap ? n->snap.index : 0,
              n->has_snap ? n->snap.term : 0, bs.n_entries ? bs.entries[0].index : 0,
              bs.n_entries ? bs.entries[bs.n_entries - 1].index : 0);
    sim_check_restore(s, n, &n->sm);
    node_schedule_tick(s, n);
    after_input(s, n);
    return 0;
}

static void node_new(struct sim *s, raft_id id, bool initial)
{
    struct sim_node *n = &s->nodes[id];
    memset(n, 0, sizeof(*n));
    n->id = id;
    n->exists = true;
    n->initial = initial;
    n->snap_every = 4 + rnd(s, 60);
    node_boot(s, n);
}

/* Power loss: everything not yet durable is gone. */
static void node_crash(struct sim *s, struct sim_node *n)
{
    if (!n->up) return;
    for (size_t i = 0; i < n->wq_n; i++)
        write_free(&n->wq[i]);
    n->wq_n = 0;
    raft_destroy(n->r);
    n->r = NULL;
    n->up = false;
    n->inc++;
    n->n_reads = 0;
    n->stash_valid = false;
    n->role = RAFT_FOLLOWER;
}

static void node_free_disk(struct sim_node *n)
{
    ents_release(n->log, n->log_n);
    free(n->log);
    n->log = NULL;
    n->log_n = n->log_cap = 0;
    free(n->wq);
    n->wq = NULL;
    n->wq_cap = 0;
}

static void take_snapshot(struct sim *s, struct sim_node *n)
{
    if (!n->up || n->sm.applied == 0 || (n->has_snap && n->snap.index >= n->sm.applied)) return;
    raft_index at = n->sm.applied;
    raft_index keep = raft_snapshot_taken(n->r, at);
    const struct raft_snapshot_meta *meta = raft_snapshot_get(n->r);
    if (!meta || meta->index != at || meta->term != n->sm.applied_term) {
        sim_fail(s,
                 "n%" PRIu64 ": after raft_snapshot_taken(%" PRIu64
                 ") the core's snapshot is %" PRIu64 "/%" PRIu64 " (expected term %" PRIu64 ")",
                 n->id, at, meta ? meta->index : 0, meta ? meta->term : 0, n->sm.applied_term);
        return;
    }
    if (keep > at + 1) {
        sim_fail(s, "n%" PRIu64 ": raft_snapshot_taken(%" PRIu64 ") keeps from %" PRIu64, n->id, at,
                 keep);
        return;
    }
    n->has_snap = true;
    n->snap = *meta;
    n->snap_sm = n->sm;
    disk_drop_below(n, keep);
    s->res->counts.snapshots++;
    sim_trace(s, "n%" PRIu64 " snapshot at %" PRIu64 "/%" PRIu64 " keep %" PRIu64, n->id, at,
              meta->term, keep);
    after_input(s, n);
}

/* ready.snapshot: restore the state machine and make it durable at once
 * (raft.h step 1). Earlier writes are flushed first: the disk is ordered. */
static void install_snapshot(struct sim *s, struct sim_node *n,
                             const struct raft_snapshot_meta *meta)
{
    while (n->wq_n && !s->res->failed) {
        struct sim_write w = disk_complete_head(s, n);
        send_after(s, n, &w);
        write_free(&w);
    }
    const struct sim_sm *data = NULL;
    if (n->stash_valid && n->stash.applied == meta->index && n->stash_term == meta->term)
        data = &n->stash;
    else if (n->has_snap && n->snap.index == meta->index && n->snap.term == meta->term)
        data = &n->snap_sm;
    if (!data) {
        sim_fail(s,
                 "n%" PRIu64 ": core installs snapshot %" PRIu64 "/%" PRIu64
                 " that the transport never delivered",
                 n->id, meta->index, meta->term);
        return;
    }
    if (meta->index < n->sm.applied) {
        sim_fail(s, "n%" PRIu64 ": snapshot %" PRIu64 " installed below applied %" PRIu64, n->id,
                 meta->index, n->sm.applied);
        return;
    }
    struct sim_sm img = *data;
    n->sm = img;
    n->snap_sm = img;
    n->snap = *meta;
    n->has_snap = true;
    /* Keep the durable suffix only where it matches the core's log. */
    disk_drop_below(n, meta->index + 1);
    size_t keep = 0;
    while (keep < n->log_n) {
        const struct raft_entry *ce = raft_entry_get(n->r, n->log[keep].index);
        if (!ce || ce->term != n->log[keep].term) break;
        keep++;
    }
    if (keep < n->log_n) disk_truncate_from(n, n->log[keep].index);
    s->res->counts.snap_installs++;
    sim_trace(s, "n%" PRIu64 " install snapshot %" PRIu64 "/%" PRIu64, n->id, meta->index,
              meta->term);
    sim_check_restore(s, n, &n->sm);
}

static void client_on_apply(struct sim *s, struct sim_node *n, const struct sim_cmd *cmd)
{
    if (cmd->client >= s->prof.clients) return;
    struct sim_client *cl = &s->clients[cmd->client];
    if (!cl->write_pending || cl->cmd.seq != cmd->seq || cl->submitted[n->id] != n->inc + 1) return;
    cl->write_pending = false;
    if (s->final_phase) cl->final_write_done = true;
    sim_check_ack(s, n, cmd->client, cmd->seq);
    sim_trace(s, "client%u write seq%u acked by n%" PRIu64 " (effect %" PRIu64 ")", cmd->client,
              cmd->seq, n->id, sim_check_effect(s, cmd->client, cmd->seq));
}

static void apply_committed(struct sim *s, struct sim_node *n, const struct raft_entry *e,
                            size_t cnt)
{
    for (size_t i = 0; i < cnt && !s->res->failed; i++) {
        if (e[i].index != n->sm.applied + 1) {
            sim_fail(s,
                     "n%" PRIu64 ": committed entry %" PRIu64 " handed out after applied %" PRIu64,
                     n->id, e[i].index, n->sm.applied);
            return;
        }
        raft_term dt;
        if (!s->opt.safety_only && (!sim_disk_term(n, e[i].index, &dt) || dt != e[i].term)) {
            sim_fail(s,
                     "n%" PRIu64 ": applying %" PRIu64 "/%" PRIu64
                     " which is not durable locally (durable last %" PRIu64 ")",
                     n->id, e[i].index, e[i].term, sim_disk_last(n));
            return;
        }
        struct sim_cmd cmd;
        bool effective;
        sim_sm_apply(&n->sm, &e[i], &cmd, &effective);
        sim_check_apply(s, n, &e[i], &n->sm, &cmd, effective);
        if (e[i].type == RAFT_ENTRY_NORMAL && !s->res->failed) client_on_apply(s, n, &cmd);
    }
}

static struct sim_read *read_find(struct sim_node *n, uint64_t ctx)
{
    for (size_t i = 0; i < n->n_reads; i++)
        if (n->reads[i].ctx == ctx) return &n->reads[i];
    return NULL;
}

static void read_remove(struct sim_node *n, struct sim_read *rd)
{
    *rd = n->reads[--n->n_reads];
}

static void serve_reads(struct sim *s, struct sim_node *n)
{
    for (size_t i = 0; i < n->n_reads && !s->res->failed;) {
        struct sim_read *rd = &n->reads[i];
        if (!rd->answered || rd->index > n->sm.applied) {
            i++;
            continue;
        }
        sim_check_read(s, n, rd->index, rd->floor);
        struct sim_client *cl = &s->clients[rd->client];
        sim_trace(s,
                  "client%u read ctx%" PRIu64 " served by n%" PRIu64 " index %" PRIu64
                  " applied %" PRIu64 " version %" PRIu64 " (floor %" PRIu64 ")",
                  rd->client, rd->ctx, n->id, rd->index, n->sm.applied, n->sm.version, rd->floor);
        if (cl->read_pending && cl->read_ctx == rd->ctx) {
            cl->read_pending = false;
            if (s->final_phase) cl->final_read_done = true;
        }
        read_remove(n, rd);
    }
}

static void trace_ready(struct sim *s, struct sim_node *n, const struct raft_ready *rd)
{
    char hs[80] = "", ss[64] = "", ents[48] = "", com[48] = "", snap[48] = "";
    if (rd->hard_state_changed)
        snprintf(hs, sizeof hs, " hs(t%" PRIu64 " v%" PRIu64 " c%" PRIu64 ")", rd->hard_state.term,
                 rd->hard_state.vote, rd->hard_state.commit);
    if (rd->soft_state_changed)
        snprintf(ss, sizeof ss, " %s t%" PRIu64 " leader n%" PRIu64, raft_role_name(rd->role),
                 rd->term, rd->leader);
    if (rd->n_entries)
        snprintf(ents, sizeof ents, " ents[%" PRIu64 "..%" PRIu64 "]", rd->entries[0].index,
                 rd->entries[rd->n_entries - 1].index);
    if (rd->n_committed)
        snprintf(com, sizeof com, " apply[%" PRIu64 "..%" PRIu64 "]", rd->committed[0].index,
                 rd->committed[rd->n_committed - 1].index);
    if (rd->snapshot)
        snprintf(snap, sizeof snap, " snap(%" PRIu64 "/%" PRIu64 ")", rd->snapshot->index,
                 rd->snapshot->term);
    sim_trace(s,
              "n%" PRIu64 " ready%s%s%s%s%s msgs %zu after %zu reads %zu persist(%" PRIu64
              "/%" PRIu64 ")",
              n->id, ss, hs, snap, ents, com, rd->n_msgs, rd->n_msgs_after_persist, rd->n_reads,
              rd->persist_index, rd->persist_term);
}

static void process_ready(struct sim *s, struct sim_node *n)
{
    for (int loops = 0; n->up && !s->res->failed && raft_has_ready(n->r); loops++) {
        if (loops == SIM_READY_LOOPS_MAX) {
            sim_fail(s, "n%" PRIu64 ": %d readies in a row (livelock)", n->id, loops);
            return;
        }
        struct raft_ready rd;
        raft_ready_get(n->r, &rd);
        trace_ready(s, n, &rd);
        if (rd.snapshot) install_snapshot(s, n, rd.snapshot);
        if (s->res->failed) return;
        if (rd.hard_state_changed || rd.n_entries || rd.n_msgs_after_persist || rd.persist_index) {
            if (n->wq_n == n->wq_cap) {
                n->wq_cap = n->wq_cap ? n->wq_cap * 2 : 8;
                n->wq = xrealloc(s, n->wq, n->wq_cap * sizeof(*n->wq));
            }
            struct sim_write *w = &n->wq[n->wq_n++];
            memset(w, 0, sizeof(*w));
            w->hs_changed = rd.hard_state_changed;
            w->hs = rd.hard_state;
            if (rd.n_entries) {
                w->ents = xrealloc(s, NULL, rd.n_entries * sizeof(*w->ents));
                for (size_t i = 0; i < rd.n_entries; i++)
                    ent_copy(&w->ents[i], &rd.entries[i]);
                w->n_ents = rd.n_entries;
            }
            w->persist_index = rd.persist_index;
            w->persist_term = rd.persist_term;
            if (rd.n_msgs_after_persist) {
                w->after = xrealloc(s, NULL, rd.n_msgs_after_persist * sizeof(*w->after));
                for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
                    w->after[i] = msg_dup(s, &rd.msgs_after_persist[i]);
                w->n_after = rd.n_msgs_after_persist;
            }
            int64_t lat = 0;
            if (rd.hard_state_changed || rd.n_entries)
                lat = s->prof.disk_min_ms + (int64_t)rnd(s, s->prof.disk_jitter_ms + 1);
            int64_t done = s->now + lat;
            if (done < n->disk_busy_until) done = n->disk_busy_until;
            n->disk_busy_until = done;
            w->done_at = done;
            w->id = ++n->write_ids;
            schedule(s, done, SIM_EV_DISK, (uint8_t)n->id, n->inc, w->id, NULL);
            if (s->mut_send_early) {
                /* Mutation: the runtime sends msgs_after_persist before the disk. */
                for (size_t i = 0; i < w->n_after; i++)
                    msg_free(w->after[i]);
                w->n_after = 0;
                for (size_t i = 0; i < rd.n_msgs_after_persist; i++)
                    net_send(s, n, &rd.msgs_after_persist[i]);
            }
        }
        for (size_t i = 0; i < rd.n_msgs && !s->res->failed; i++)
            net_send(s, n, &rd.msgs[i]);
        apply_committed(s, n, rd.committed, rd.n_committed);
        for (size_t i = 0; i < rd.n_reads; i++) {
            struct sim_read *r = read_find(n, rd.reads[i].context);
            if (!r) {
                sim_trace(s, "n%" PRIu64 " read state for unknown ctx%" PRIu64, n->id,
                          rd.reads[i].context);
                continue;
            }
            if (rd.reads[i].status != 0) {
                sim_trace(s, "client%u read ctx%" PRIu64 " failed on n%" PRIu64 ": %s", r->client,
                          r->ctx, n->id, st_strerror(rd.reads[i].status));
                struct sim_client *cl = &s->clients[r->client];
                if (cl->read_pending && cl->read_ctx == r->ctx) cl->read_pending = false;
                read_remove(n, r);
                continue;
            }
            r->answered = true;
            r->index = rd.reads[i].index;
        }
        raft_ready_ack(n->r, &rd);
        if (s->res->failed) return;
        raft_applied(n->r, n->sm.applied);
        if (s->mut_ack_unstable && rd.persist_index)
            raft_persisted(n->r, rd.persist_index, rd.persist_term);
        serve_reads(s, n);
        if (n->sm.applied >= (n->has_snap ? n->snap.index : 0) + n->snap_every) take_snapshot(s, n);
        if (!s->res->failed && n->up) sim_check_observe(s, n);
    }
}

/* -------------------------------------------------------------- events */

static void ev_disk(struct sim *s, const struct sim_event *ev)
{
    struct sim_node *n = node_up(s, ev->node);
    if (!n || n->inc != ev->inc || !n->wq_n || n->wq[0].id != ev->arg)
        return; /* crashed meanwhile, or flushed by a snapshot install */
    struct sim_write w = disk_complete_head(s, n);
    if (!s->res->failed) {
        if (w.persist_index && !s->mut_ack_unstable)
            raft_persisted(n->r, w.persist_index, w.persist_term);
        sim_trace(s,
                  "n%" PRIu64 " durable persist(%" PRIu64 "/%" PRIu64 ") hs(t%" PRIu64 " v%" PRIu64
                  ") log..%" PRIu64,
                  n->id, w.persist_index, w.persist_term, n->hs.term, n->hs.vote, sim_disk_last(n));
        send_after(s, n, &w);
    }
    write_free(&w);
    after_input(s, n);
}

static void ev_deliver(struct sim *s, struct sim_event *ev)
{
    struct sim_msg *c = ev->msg;
    const struct raft_msg *m = &c->m;
    struct sim_node *n = node_up(s, m->to);
    bool snap = m->type == RAFT_MSG_SNAPSHOT;
    /* A link that failed while the message was in flight loses it half of
     * the time: some packets were already past the break. */
    if (!n || (s->blocked[m->from][m->to] && chance(s, 50))) {
        trace_msg(s, n ? "cut" : "lost(down)", m);
        if (snap) report_later(s, m->from, c->from_inc, m->to, true, false);
        msg_free(c);
        return;
    }
    if (snap) {
        n->stash = c->snap_data;
        n->stash_term = m->snapshot->term;
        n->stash_valid = true;
    }
    trace_msg(s, "recv", m);
    int rc = raft_step(n->r, m);
    if (rc != 0) sim_trace(s, "n%" PRIu64 " step: %s", n->id, st_strerror(rc));
    if (snap) report_later(s, m->from, c->from_inc, m->to, true, true);
    msg_free(c);
    after_input(s, n);
}

static void ev_report(struct sim *s, const struct sim_event *ev)
{
    struct sim_node *n = node_up(s, ev->node);
    if (!n || n->inc != ev->inc) return;
    raft_id to = ev->arg & 0xffffffffu;
    bool snap = (ev->arg >> 32) & 1, ok = (ev->arg >> 33) & 1;
    if (snap) {
        sim_trace(s, "n%" PRIu64 " report snapshot to n%" PRIu64 " %s", n->id, to,
                  ok ? "ok" : "failed");
        raft_report_snapshot(n->r, to, ok);
    } else {
        sim_trace(s, "n%" PRIu64 " report n%" PRIu64 " unreachable", n->id, to);
        raft_report_unreachable(n->r, to);
    }
    after_input(s, n);
}

/* ------------------------------------------------------------- clients */

static void client_submit(struct sim *s, uint8_t c)
{
    struct sim_client *cl = &s->clients[c];
    struct sim_node *n = node_up(s, cl->hint);
    if (!n || chance(s, 20)) n = random_member(s);
    if (!n) {
        cl->write_retry_at = s->now + 20;
        return;
    }
    uint8_t buf_data[SIM_CMD_HDR + SIM_CMD_PAD_MAX];
    size_t len = sim_cmd_encode(&cl->cmd, buf_data);
    struct raft_buf *b = raft_buf_create(len);
    ST_ASSERT(b);
    memcpy(b->data, buf_data, len);
    raft_index idx = 0;
    raft_term term = 0;
    int rc = raft_propose(n->r, b, b->data, (uint32_t)len, &idx, &term);
    raft_buf_unref(b);
    sim_trace(s, "client%u propose seq%u key%u on n%" PRIu64 ": %s idx %" PRIu64 " t%" PRIu64, c,
              cl->cmd.seq, cl->cmd.key, n->id, rc ? st_strerror(rc) : "ok", idx, term);
    if (rc == 0) {
        cl->submitted[n->id] = n->inc + 1;
        cl->write_retry_at = s->now + 300 + (int64_t)rnd(s, 300);
        cl->hint = idx ? n->id : raft_leader(n->r);
    } else {
        if (rc == ST_ETOOBIG)
            sim_fail(s, "n%" PRIu64 " refused a %zu-byte command as too big", n->id, len);
        cl->hint = raft_leader(n->r);
        cl->write_retry_at = s->now + 10 + (int64_t)rnd(s, 40);
    }
    after_input(s, n);
}

static void client_read(struct sim *s, uint8_t c)
{
    struct sim_client *cl = &s->clients[c];
    /* Half of the reads go where the client's writes went: often a leader,
     * sometimes a deposed one that has not noticed yet. */
    struct sim_node *n = chance(s, 50) ? node_up(s, cl->hint) : NULL;
    if (!n) n = chance(s, 90) ? random_member(s) : random_up(s);
    if (!n || n->n_reads == SIM_READS_MAX) return;
    uint64_t ctx = ++s->read_ctx_next;
    bool lease = s->base_cfg.lease_reads && chance(s, 50);
    int rc = raft_read_index(n->r, ctx, lease ? RAFT_READ_LEASE : RAFT_READ_SAFE);
    sim_trace(s, "client%u %s read ctx%" PRIu64 " on n%" PRIu64 ": %s (floor %" PRIu64 ")", c,
              lease ? "lease" : "safe", ctx, n->id, rc ? st_strerror(rc) : "ok", s->ck.floor);
    if (rc == 0) {
        struct sim_read *r = &n->reads[n->n_reads++];
        memset(r, 0, sizeof(*r));
        r->ctx = ctx;
        r->client = c;
        r->floor = s->ck.floor;
        cl->read_pending = true;
        cl->read_ctx = ctx;
        cl->read_deadline = s->now + 1000;
    }
    after_input(s, n);
}

static void ev_client(struct sim *s, const struct sim_event *ev)
{
    uint8_t c = ev->node;
    struct sim_client *cl = &s->clients[c];
    if (cl->write_pending) {
        if (s->now >= cl->write_retry_at) client_submit(s, c);
    } else if (s->final_phase ? !cl->final_write_done : chance(s, 60)) {
        cl->seq++;
        cl->write_pending = true;
        memset(cl->submitted, 0, sizeof cl->submitted);
        cl->cmd = (struct sim_cmd){.client = c,
                                   .key = (uint8_t)rnd(s, SIM_KEYS),
                                   .pad_len = (uint8_t)rnd(s, SIM_CMD_PAD_MAX + 1),
                                   .seq = cl->seq,
                                   .value = (uint64_t)c << 32 | cl->seq};
        client_submit(s, c);
    }
    if (cl->read_pending && s->now >= cl->read_deadline)
        cl->read_pending = false; /* gave up; the node still checks it if served */
    if (!s->res->failed && !cl->read_pending &&
        (s->final_phase ? !cl->final_read_done : chance(s, s->prof.read_pct)))
        client_read(s, c);
    schedule(s, s->now + 1 + (int64_t)rnd(s, s->prof.client_think_ms), SIM_EV_CLIENT, c, 0, 0,
             NULL);
}

/* --------------------------------------------------------------- chaos */

static void heal(struct sim *s)
{
    memset(s->blocked, 0, sizeof s->blocked);
}

static void crash_node(struct sim *s, struct sim_node *n);

static void chaos_crash(struct sim *s)
{
    /* Half of the crashes hit a node with writes in flight: that is where
     * durability bugs hide. */
    struct sim_node *n = NULL;
    if (chance(s, 50)) {
        raft_id ids[SIM_NODES_MAX];
        size_t k = 0;
        for (raft_id id = 1; id <= SIM_NODES_MAX; id++)
            if (node_up(s, id) && s->nodes[id].wq_n) ids[k++] = id;
        if (k) n = &s->nodes[ids[rnd(s, k)]];
    }
    if (!n) n = random_up(s);
    if (n) crash_node(s, n);
}

/* Crashes n now and schedules its restart. */
static void crash_node(struct sim *s, struct sim_node *n)
{
    sim_trace(s, "CRASH n%" PRIu64 " (%zu writes lost)", n->id, n->wq_n);
    node_crash(s, n);
    s->res->counts.crashes++;
    /* Down for long, for an election or two, or a quick reboot. */
    uint32_t how = (uint32_t)rnd(s, 10);
    int64_t down = how < 2   ? 500 + (int64_t)rnd(s, 2000)
                   : how < 5 ? 1 + (int64_t)rnd(s, 30)
                             : 20 + (int64_t)rnd(s, 400);
    schedule(s, s->now + down, SIM_EV_RESTART, (uint8_t)n->id, n->inc, 0, NULL);
}

static void chaos_partition(struct sim *s)
{
    raft_id ids[SIM_NODES_MAX] = {0};
    size_t k = 0;
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++)
        if (node_get(s, id) && !s->nodes[id].destroyed) ids[k++] = id;
    if (k < 2) return;
    uint32_t kind = (uint32_t)rnd(s, 4);
    if (kind == 0 || kind == 1) { /* symmetric split; kind 1 isolates the leader */
        bool side[SIM_NODES_MAX + 1] = {false};
        struct sim_node *l = sim_leader(s);
        for (size_t i = 0; i < k; i++)
            side[ids[i]] = kind == 1 && l ? ids[i] == l->id : chance(s, 40);
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++)
                if (side[ids[i]] != side[ids[j]]) s->blocked[ids[i]][ids[j]] = true;
        sim_trace(s, "PARTITION symmetric%s", kind == 1 ? " (leader isolated)" : "");
    } else { /* asymmetric: some one-way links fail */
        uint32_t cuts = 1 + (uint32_t)rnd(s, k);
        for (uint32_t c = 0; c < cuts; c++) {
            raft_id a = ids[rnd(s, k)], b = ids[rnd(s, k)];
            if (a != b) {
                s->blocked[a][b] = true;
                sim_trace(s, "PARTITION one-way n%" PRIu64 " -/-> n%" PRIu64, a, b);
            }
        }
    }
    s->res->counts.partitions++;
    schedule(s, s->now + 100 + (int64_t)rnd(s, 1500), SIM_EV_HEAL, 0, 0, 0, NULL);
}

static void chaos_conf(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    if (!l) return;
    const struct raft_conf *conf = raft_conf_get(l->r);
    size_t voters = raft_conf_voters(conf);
    raft_id learners[RAFT_MEMBERS_MAX], vs[RAFT_MEMBERS_MAX];
    size_t nl = 0, nv = 0;
    for (uint32_t i = 0; i < conf->n; i++) {
        const struct raft_member *m = &conf->members[i];
        struct sim_node *mn = node_get(s, m->id);
        if (m->role == RAFT_LEARNER && mn && !mn->destroyed)
            learners[nl++] = m->id;
        else if (m->role == RAFT_VOTER)
            vs[nv++] = m->id;
    }
    struct raft_conf_change cc;
    memset(&cc, 0, sizeof(cc));
    uint32_t what = (uint32_t)rnd(s, 8);
    bool create = false;
    if (what < 3 && s->next_id <= SIM_NODES_MAX && conf->n < s->prof.max_voters + 2) {
        cc.op = RAFT_CONF_ADD_LEARNER;
        cc.id = s->next_id;
        create = true;
    } else if (what < 5 && nl && voters < s->prof.max_voters) {
        cc.op = RAFT_CONF_ADD_VOTER;
        cc.id = learners[rnd(s, nl)];
    } else if (what < 7 && voters > s->prof.min_voters && nv) {
        cc.op = RAFT_CONF_REMOVE;
        cc.id = vs[rnd(s, nv)];
    } else if (nl) {
        cc.op = RAFT_CONF_REMOVE;
        cc.id = learners[rnd(s, nl)];
    } else {
        return;
    }
    cc.context_len = (uint16_t)snprintf(cc.context, sizeof cc.context, "node-%" PRIu64, cc.id);
    raft_index idx = 0;
    int rc = raft_propose_conf_change(l->r, &cc, &idx);
    static const char *ops[] = {"?", "add-voter", "add-learner", "remove"};
    sim_trace(s, "CONF n%" PRIu64 " proposes %s n%" PRIu64 ": %s idx %" PRIu64, l->id, ops[cc.op],
              cc.id, rc ? st_strerror(rc) : "ok", idx);
    if (rc == 0 && create) {
        s->next_id++;
        node_new(s, cc.id, false);
    }
    after_input(s, l);
}

static void chaos_transfer(struct sim *s)
{
    struct sim_node *l = sim_leader(s);
    if (!l) return;
    const struct raft_conf *conf = raft_conf_get(l->r);
    raft_id vs[RAFT_MEMBERS_MAX];
    size_t nv = 0;
    for (uint32_t i = 0; i < conf->n; i++)
        if (conf->members[i].role == RAFT_VOTER && conf->members[i].id != l->id)
            vs[nv++] = conf->members[i].id;
    if (!nv) return;
    raft_id to = vs[rnd(s, nv)];
    int rc = raft_transfer_leadership(l->r, to);
    sim_trace(s, "TRANSFER n%" PRIu64 " -> n%" PRIu64 ": %s", l->id, to,
              rc ? st_strerror(rc) : "ok");
    s->res->counts.transfers += rc == 0;
    after_input(s, l);
}

/* Shuts down for good one node (all with `all`) whose removal committed. */
static void chaos_decommission(struct sim *s, bool all)
{
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++) {
        struct sim_node *n = node_get(s, id);
        if (!n || n->destroyed || !s->ck.ever_member[id] || raft_conf_find(&s->ck.conf, id))
            continue;
        sim_trace(s, "DECOMMISSION n%" PRIu64 " (removal committed)", id);
        node_crash(s, n);
        node_free_disk(n);
        n->destroyed = true;
        if (!all) return;
    }
}

static void ev_chaos(struct sim *s)
{
    if (s->final_phase) return;
    const struct sim_profile *p = &s->prof;
    uint32_t w[] = {p->w_crash,    p->w_partition, p->w_heal,     p->w_weather,     p->w_conf,
                    p->w_transfer, p->w_campaign,  p->w_snapshot, p->w_decommission};
    uint32_t total = 0;
    for (size_t i = 0; i < ST_ARRAY_LEN(w); i++)
        total += w[i];
    uint32_t x = (uint32_t)rnd(s, total);
    size_t pick = 0;
    while (x >= w[pick])
        x -= w[pick++];
    switch (pick) {
    case 0:
        chaos_crash(s);
        break;
    case 1:
        chaos_partition(s);
        break;
    case 2:
        sim_trace(s, "HEAL");
        heal(s);
        break;
    case 3:
        s->prof.drop_pct = (uint32_t)rnd(s, p->drop_max_pct + 1);
        s->prof.dup_pct = (uint32_t)rnd(s, p->dup_max_pct + 1);
        sim_trace(s, "WEATHER drop %u%% dup %u%%", s->prof.drop_pct, s->prof.dup_pct);
        break;
    case 4:
        chaos_conf(s);
        break;
    case 5:
        chaos_transfer(s);
        break;
    case 6: {
        struct sim_node *n = random_up(s);
        if (n) {
            int rc = raft_campaign(n->r);
            sim_trace(s, "CAMPAIGN n%" PRIu64 ": %s", n->id, rc ? st_strerror(rc) : "ok");
            after_input(s, n);
        }
        break;
    }
    case 7: {
        struct sim_node *n = random_up(s);
        if (n) take_snapshot(s, n);
        break;
    }
    case 8:
        chaos_decommission(s, false);
        break;
    }
    schedule(s, s->now + p->chaos_min_ms + (int64_t)rnd(s, p->chaos_jitter_ms + 1), SIM_EV_CHAOS, 0,
             0, 0, NULL);
}

/* ----------------------------------------------------------- the run */

static void profile_init(struct sim *s)
{
    struct sim_profile *p = &s->prof;
    memset(p, 0, sizeof(*p));
    p->drop_max_pct = (uint32_t)rnd(s, 30);
    p->dup_max_pct = (uint32_t)rnd(s, 10);
    p->drop_pct = (uint32_t)rnd(s, p->drop_max_pct + 1);
    p->dup_pct = (uint32_t)rnd(s, p->dup_max_pct + 1);
    p->delay_min_ms = 1 + (uint32_t)rnd(s, 5);
    p->delay_jitter_ms = (uint32_t)rnd(s, 40);
    p->long_delay_pct = (uint32_t)rnd(s, 4);
    p->disk_min_ms = 1 + (uint32_t)rnd(s, 4);
    p->disk_jitter_ms = (uint32_t)rnd(s, 25);
    p->chaos_min_ms = 10 + (uint32_t)rnd(s, 40);
    p->chaos_jitter_ms = 20 + (uint32_t)rnd(s, 120);
    p->w_crash = 2 + (uint32_t)rnd(s, 10);
    p->w_partition = 2 + (uint32_t)rnd(s, 10);
    p->w_heal = 3;
    p->w_weather = 3;
    p->w_conf = s->opt.membership ? 20 + (uint32_t)rnd(s, 20) : (uint32_t)rnd(s, 6);
    p->w_transfer = (uint32_t)rnd(s, 6);
    p->w_campaign = (uint32_t)rnd(s, 3);
    p->w_snapshot = (uint32_t)rnd(s, 6);
    p->w_decommission = s->opt.membership ? 5 : 1;
    p->kill_leader_pct = chance(s, 50) ? (uint32_t)rnd(s, 40) : 0;
    p->clients = 2 + (uint32_t)rnd(s, SIM_CLIENTS_MAX - 1);
    p->client_think_ms = 2 + (uint32_t)rnd(s, 30);
    p->read_pct = 10 + (uint32_t)rnd(s, 50);
    p->min_voters = s->opt.membership && chance(s, 30) ? 1 : 2;
    p->max_voters = s->n_initial + 2;

    struct raft_config *c = &s->base_cfg;
    raft_config_default(c, 1);
    c->election_ticks = SIM_ELECTION_TICKS;
    c->heartbeat_ticks = 1 + (uint32_t)rnd(s, 3);
    c->pre_vote = chance(s, 75);
    c->check_quorum = chance(s, 75);
    /* Lease reads are sound here: simulated clocks do not drift. */
    c->lease_reads = c->check_quorum && chance(s, 40);
    c->forward_proposals = chance(s, 50);
    c->inflight_msgs_max = 1 + (uint32_t)rnd(s, 8);
    c->msg_bytes_max = 256 + (uint32_t)rnd(s, 4096);
    c->uncommitted_bytes_max = chance(s, 30) ? 2048 + rnd(s, 32768) : 0;
    c->trailing_entries = chance(s, 50) ? rnd(s, 4) : rnd(s, 30);
    c->reads_pending_max = SIM_READS_MAX / 2;
}

static void start_final_phase(struct sim *s)
{
    s->final_phase = true;
    heal(s);
    s->prof.drop_pct = s->prof.dup_pct = 0;
    s->prof.long_delay_pct = 0;
    if (s->prof.delay_jitter_ms > 10) s->prof.delay_jitter_ms = 10;
    sim_trace(s, "FINAL PHASE: faults healed, every node restarted, no drops");
    chaos_decommission(s, true);
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++) {
        struct sim_node *n = node_get(s, id);
        if (n && !n->destroyed && !n->up) node_boot(s, n);
    }
}

/* The final phase ends when one leader is followed by every member, has
 * committed its whole log, every member applied it, and every client got
 * one write and one read through. */
static bool liveness_reached(struct sim *s)
{
    for (uint32_t c = 0; c < s->prof.clients; c++)
        if (!s->clients[c].final_write_done || !s->clients[c].final_read_done) return false;
    struct sim_node *l = sim_leader(s);
    if (!l) return false;
    raft_index commit = raft_commit_index(l->r);
    if (commit != raft_last_index(l->r)) return false;
    const struct raft_conf *conf = raft_conf_get(l->r);
    for (uint32_t i = 0; i < conf->n; i++) {
        struct sim_node *m = node_up(s, conf->members[i].id);
        if (!m || raft_leader(m->r) != l->id || m->sm.applied < commit) return false;
    }
    return true;
}

static void dump_state(struct sim *s)
{
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++) {
        struct sim_node *n = node_get(s, id);
        if (!n) continue;
        if (!n->up) {
            sim_trace(s, "state n%" PRIu64 " %s", id, n->destroyed ? "destroyed" : "down");
            continue;
        }
        const struct raft_conf *conf = raft_conf_get(n->r);
        char cs[160] = "";
        size_t o = 0;
        for (uint32_t i = 0; i < conf->n && o + 12 < sizeof cs; i++)
            o += (size_t)snprintf(cs + o, sizeof cs - o, "%s%" PRIu64,
                                  conf->members[i].role == RAFT_VOTER ? " v" : " l",
                                  conf->members[i].id);
        sim_trace(s,
                  "state n%" PRIu64 " %s t%" PRIu64 " leader n%" PRIu64 " log %" PRIu64 "..%" PRIu64
                  " commit %" PRIu64 " applied %" PRIu64 " conf[%s ]",
                  id, raft_role_name(raft_role_get(n->r)), raft_term_get(n->r), raft_leader(n->r),
                  raft_first_index(n->r), raft_last_index(n->r), raft_commit_index(n->r),
                  n->sm.applied, cs);
    }
}

static void step_event(struct sim *s, struct sim_event *ev)
{
    switch (ev->type) {
    case SIM_EV_TICK: {
        struct sim_node *n = node_up(s, ev->node);
        if (!n || n->inc != ev->inc) return;
        raft_tick(n->r);
        after_input(s, n);
        schedule(s, s->now + SIM_TICK_MS, SIM_EV_TICK, ev->node, ev->inc, 0, NULL);
        break;
    }
    case SIM_EV_DELIVER:
        ev_deliver(s, ev);
        break;
    case SIM_EV_DISK:
        ev_disk(s, ev);
        break;
    case SIM_EV_REPORT:
        ev_report(s, ev);
        break;
    case SIM_EV_CLIENT:
        ev_client(s, ev);
        break;
    case SIM_EV_CHAOS:
        ev_chaos(s);
        break;
    case SIM_EV_RESTART: {
        struct sim_node *n = node_get(s, ev->node);
        if (!n || n->up || n->destroyed || n->inc != ev->inc) return;
        sim_trace(s, "RESTART n%" PRIu64, n->id);
        node_boot(s, n);
        break;
    }
    case SIM_EV_CRASH: {
        struct sim_node *n = node_up(s, ev->node);
        if (!n || n->inc != ev->inc || s->final_phase) return;
        crash_node(s, n);
        break;
    }
    case SIM_EV_HEAL:
        sim_trace(s, "HEAL (scheduled)");
        heal(s);
        break;
    default:
        ST_UNREACHABLE();
    }
}

static void after_step(struct sim *s)
{
    for (raft_id id = 1; id <= SIM_NODES_MAX && !s->res->failed; id++) {
        struct sim_node *n = &s->nodes[id];
        if (!n->exists || !n->up) {
            n->touched = false;
            continue;
        }
        if (!s->opt.no_invariants) raft_check_invariants(n->r);
        if (n->touched) sim_check_node(s, n);
        n->touched = false;
    }
}

static void sim_teardown(struct sim *s)
{
    for (raft_id id = 1; id <= SIM_NODES_MAX; id++) {
        struct sim_node *n = &s->nodes[id];
        if (!n->exists) continue;
        node_crash(s, n);
        node_free_disk(n);
    }
    for (size_t i = 0; i < s->heap_n; i++)
        msg_free(s->heap[i].msg);
    free(s->heap);
    sim_check_close(s);
}

bool sim_mutation_known(const char *name)
{
    return !strcmp(name, "send-before-persist") || !strcmp(name, "persisted-before-disk");
}

int sim_run(uint64_t seed, const struct sim_options *opt, struct sim_result *res)
{
    struct sim *s = calloc(1, sizeof(*s));
    if (!s) return -1;
    memset(res, 0, sizeof(*res));
    s->seed = seed;
    s->opt = *opt;
    s->res = res;
    s->hash = 0xcbf29ce484222325ull;
    st_rng_init(&s->rng, seed);
    static const uint32_t sizes[] = {3, 5, 7};
    s->n_initial = opt->nodes ? opt->nodes : sizes[seed % 3];
    res->nodes = s->n_initial;
    if (opt->mutation) {
        s->mut_send_early = !strcmp(opt->mutation, "send-before-persist");
        s->mut_ack_unstable = !strcmp(opt->mutation, "persisted-before-disk");
    }
    sim_current = s;
    if (sim_check_init(s) != 0) {
        free(s);
        return -1;
    }
    profile_init(s);
    s->next_id = s->n_initial + 1;
    for (raft_id id = 1; id <= s->n_initial; id++) {
        struct raft_member *m = &s->initial_conf.members[s->initial_conf.n++];
        m->id = id;
        m->role = RAFT_VOTER;
        m->context_len = (uint16_t)snprintf(m->context, sizeof m->context, "node-%" PRIu64, id);
    }
    sim_trace(s,
              "seed %" PRIu64
              " nodes %u clients %u drop<=%u%% dup<=%u%% delay %u+%u ms disk %u+%u ms"
              " pre_vote %d check_quorum %d lease %d forward %d inflight %u bytes %u"
              " uncommitted %" PRIu64 " trailing %" PRIu64 " heartbeat %u",
              seed, s->n_initial, s->prof.clients, s->prof.drop_max_pct, s->prof.dup_max_pct,
              s->prof.delay_min_ms, s->prof.delay_jitter_ms, s->prof.disk_min_ms,
              s->prof.disk_jitter_ms, s->base_cfg.pre_vote, s->base_cfg.check_quorum,
              s->base_cfg.lease_reads, s->base_cfg.forward_proposals, s->base_cfg.inflight_msgs_max,
              s->base_cfg.msg_bytes_max, s->base_cfg.uncommitted_bytes_max,
              s->base_cfg.trailing_entries, s->base_cfg.heartbeat_ticks);
    sim_check_bootstrap(s, s->n_initial);
    for (raft_id id = 1; id <= s->n_initial && !res->failed; id++)
        node_new(s, id, true);
    for (uint32_t c = 0; c < s->prof.clients; c++)
        schedule(s, 50 + (int64_t)rnd(s, 100), SIM_EV_CLIENT, (uint8_t)c, 0, 0, NULL);
    schedule(s, 300 + (int64_t)rnd(s, 300), SIM_EV_CHAOS, 0, 0, 0, NULL);
    after_step(s);

    int64_t final_start = 0, deadline = 0;
    while (!res->failed) {
        if (!s->final_phase && s->step >= opt->steps) {
            start_final_phase(s);
            after_step(s);
            final_start = s->now;
            deadline = s->now + (int64_t)SIM_LIVENESS_TICKS * SIM_TICK_MS;
            for (uint32_t c = 0; c < s->prof.clients; c++) {
                s->clients[c].final_write_done = false;
                s->clients[c].final_read_done = false;
            }
        }
        if (s->final_phase) {
            if (liveness_reached(s)) {
                res->counts.liveness_ms = (uint64_t)(s->now - final_start);
                sim_trace(s, "LIVE after %" PRId64 " ms: leader, all committed and applied",
                          s->now - final_start);
                break;
            }
            if (s->now > deadline) {
                dump_state(s);
                sim_fail(s,
                         "liveness: no stable leader with everything committed, applied and "
                         "acknowledged %d ticks after the faults healed",
                         SIM_LIVENESS_TICKS);
                break;
            }
        }
        struct sim_event ev = heap_pop(s);
        s->now = ev.at;
        s->step++;
        step_event(s, &ev);
        after_step(s);
    }
    if (res->failed && !opt->verbose) {
        printf("  last transcript lines of seed %" PRIu64 ":\n", seed);
        sim_print_ring(s, stdout);
    }
    res->counts.steps = s->step;
    res->counts.commits = s->ck.commit_max;
    res->hash = s->hash;
    sim_teardown(s);
    sim_current = NULL;
    free(s);
    return 0;
}

/* Prints the last transcript lines (failure reports, crash handler). */
void sim_print_ring(const struct sim *s, FILE *f)
{
    uint32_t start = (s->ring_pos + SIM_TRACE_RING - s->ring_n) % SIM_TRACE_RING;
    for (uint32_t i = 0; i < s->ring_n; i++)
        fprintf(f, "    %s\n", s->ring[(start + i) % SIM_TRACE_RING]);
}
