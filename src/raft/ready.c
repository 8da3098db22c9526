/* The ready contract's core side: the outbox being filled (messages,
 * entries, reads; double-buffered in r->out[]) and the ready batch handed to
 * the runtime, with its acknowledgements (raft_ready_ack, raft_persisted,
 * raft_applied). See DESIGN.md §2 and the raft_ready_get() contract in
 * include/stcache/raft.h.
 */
#include "raft/raft_int.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- output */

static int msgvec_grow(const struct raft_config *c, struct raft_msgvec *v)
{
    if (v->n < v->cap) return 0;
    size_t cap = v->cap ? v->cap * 2 : 16;
    struct raft_msg *nv = raft_mem_realloc(c, v->v, cap * sizeof(*nv));
    if (!nv) return ST_ENOMEM;
    v->v = nv;
    size_t *eo = raft_mem_realloc(c, v->ent_off, cap * sizeof(*eo));
    if (!eo) return ST_ENOMEM;
    v->ent_off = eo;
    size_t *mo = raft_mem_realloc(c, v->meta_off, cap * sizeof(*mo));
    if (!mo) return ST_ENOMEM;
    v->meta_off = mo;
    v->cap = cap;
    return 0;
}

static int entries_grow(const struct raft_config *cfg, struct raft_entry **arr, size_t *cap,
                        size_t need)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    struct raft_entry *na = raft_mem_realloc(cfg, *arr, c * sizeof(*na));
    if (!na) return ST_ENOMEM;
    *arr = na;
    *cap = c;
    return 0;
}

static void entry_copy_ref(struct raft_entry *dst, const struct raft_entry *src)
{
    *dst = *src;
    if (dst->len == 0) {
        dst->buf = NULL;
        dst->data = NULL;
    } else {
        raft_buf_ref(dst->buf);
    }
}

/* Queues m; entries come from `ents` (array) or, when ents is NULL and n > 0,
 * from the log starting at `first`. Returns false when out of memory (the
 * message is dropped: Raft tolerates message loss). */
static bool send_impl(struct raft *r, const struct raft_msg *m, const struct raft_entry *ents,
                      raft_index first, size_t n, bool after)
{
    struct raft_out *o = &r->out[r->fill];
    struct raft_msgvec *v = after ? &o->after : &o->msgs;
    if (msgvec_grow(&r->cfg, v) != 0) return false;
    size_t ent_off = SIZE_MAX, meta_off = SIZE_MAX;
    if (n > 0) {
        if (entries_grow(&r->cfg, &o->pool, &o->cap_pool, o->n_pool + n) != 0) return false;
        ent_off = o->n_pool;
        for (size_t k = 0; k < n; k++) {
            const struct raft_entry *e = ents ? &ents[k] : log_get(&r->log, first + k);
            ST_ASSERT(e);
            entry_copy_ref(&o->pool[o->n_pool++], e);
        }
    }
    if (m->snapshot) {
        if (o->n_metas == o->cap_metas) {
            size_t c = o->cap_metas ? o->cap_metas * 2 : 2;
            struct raft_snapshot_meta *nm = raft_mem_realloc(&r->cfg, o->metas, c * sizeof(*nm));
            if (!nm) return false; /* the pool refs are released at ack */
            o->metas = nm;
            o->cap_metas = c;
        }
        meta_off = o->n_metas;
        o->metas[o->n_metas++] = *m->snapshot;
    }
    struct raft_msg *dst = &v->v[v->n];
    *dst = *m;
    dst->from = r->cfg.id;
    dst->n_entries = (uint32_t)n;
    dst->entries = NULL;
    dst->snapshot = NULL;
    v->ent_off[v->n] = ent_off;
    v->meta_off[v->n] = meta_off;
    v->n++;
    return true;
}

bool raft_send(struct raft *r, const struct raft_msg *m, bool after_persist)
{
    if (r->role == RAFT_LEADER && !r->term_durable) after_persist = true;
    return send_impl(r, m, m->entries, 0, m->n_entries, after_persist);
}

bool raft_send_log(struct raft *r, const struct raft_msg *m, raft_index first, size_t n,
                   bool after_persist)
{
    if (r->role == RAFT_LEADER && !r->term_durable) after_persist = true;
    return send_impl(r, m, NULL, first, n, after_persist);
}

void raft_out_read(struct raft *r, uint64_t context, raft_index index, int status)
{
    struct raft_out *o = &r->out[r->fill];
    /* Capacity is reserved by raft_read_index(): queue + batch <= max. */
    ST_ASSERT(o->n_reads < r->cfg.reads_pending_max);
    o->reads[o->n_reads++] = (struct raft_read_state){context, index, status};
    if (status == 0) r->stats.reads_served++;
}

static void out_clear(struct raft_out *o)
{
    for (size_t i = 0; i < o->n_pool; i++)
        raft_buf_unref(o->pool[i].buf);
    for (size_t i = 0; i < o->n_persist; i++)
        raft_buf_unref(o->persist[i].buf);
    for (size_t i = 0; i < o->n_committed; i++)
        raft_buf_unref(o->committed[i].buf);
    o->msgs.n = 0;
    o->after.n = 0;
    o->n_pool = 0;
    o->n_metas = 0;
    o->n_reads = 0;
    o->n_persist = 0;
    o->n_committed = 0;
    o->has_snapshot = false;
}

void raft_out_free(const struct raft_config *c, struct raft_out *o)
{
    out_clear(o);
    raft_mem_free(c, o->msgs.v);
    raft_mem_free(c, o->msgs.ent_off);
    raft_mem_free(c, o->msgs.meta_off);
    raft_mem_free(c, o->after.v);
    raft_mem_free(c, o->after.ent_off);
    raft_mem_free(c, o->after.meta_off);
    raft_mem_free(c, o->pool);
    raft_mem_free(c, o->metas);
    raft_mem_free(c, o->reads);
    raft_mem_free(c, o->persist);
    raft_mem_free(c, o->committed);
}

/* ----------------------------------------------------------------- ready */

static void current_hs(const struct raft *r, struct raft_hard_state *hs)
{
    hs->term = r->term;
    hs->vote = r->vote;
    hs->commit = r->log.commit;
}

static raft_index apply_limit(const struct raft *r)
{
    return ST_MIN(r->log.commit, r->log.stable);
}

/* The last index a ready hands out for persisting. A leader that needs other
 * voters for a quorum hands out only what an append has already carried to
 * someone: an entry waiting for a follower's replication window cannot commit
 * before it goes out, so writing it then costs no latency, and the leader
 * writes (and syncs) once per replication round like its followers, instead
 * of once per ready. A leader that is a quorum alone writes at once. */
static raft_index handout_limit(const struct raft *r)
{
    raft_index last = log_last(&r->log);
    if (r->role != RAFT_LEADER) return last;
    /* The limit, unless it is last anyway: then the quorum (counted over
     * the configuration) need not be, and this runs every loop iteration
     * (raft_has_ready). */
    raft_index lim = ST_MIN(last, ST_MAX(r->append_sent_max, r->log.handed));
    if (lim == last || (raft_is_voter(r, r->cfg.id) && raft_quorum(r) == 1)) return last;
    return lim;
}

bool raft_has_ready(const struct raft *r)
{
    if (r->ready_outstanding) return false;
    const struct raft_out *o = &r->out[r->fill];
    if (o->msgs.n || o->after.n || o->n_reads) return true;
    if (r->role == RAFT_LEADER && (r->bcast_pending || r->commit_bcast)) return true;
    if (r->snap_to_install || r->log.handed < handout_limit(r)) return true;
    if (r->log.applying < apply_limit(r)) return true;
    if (r->role != r->ss_role || r->leader != r->ss_leader || r->term != r->ss_term) return true;
    struct raft_hard_state hs;
    current_hs(r, &hs);
    if (hs.term != r->hs_handed.term || hs.vote != r->hs_handed.vote ||
        hs.commit != r->hs_handed.commit)
        return true;
    return read_index_round_wanted(r);
}

static void fix_msgs(const struct raft *r, struct raft_out *o, struct raft_msgvec *v)
{
    for (size_t i = 0; i < v->n; i++) {
        v->v[i].entries = v->ent_off[i] == SIZE_MAX ? NULL : &o->pool[v->ent_off[i]];
        struct raft_snapshot_meta *meta =
            v->meta_off[i] == SIZE_MAX ? NULL : &o->metas[v->meta_off[i]];
        /* A SNAPSHOT message names the latest snapshot as of this ready: the
         * application may have taken a newer one (and dropped the older
         * files) since the message was queued. Newer is as good: the
         * follower's ack at >= the index ends the snapshot state. */
        if (meta && r->has_snapshot && r->snap.index > meta->index) *meta = r->snap;
        v->v[i].snapshot = meta;
    }
}

void raft_ready_get(struct raft *r, struct raft_ready *rd)
{
    ST_ASSERT(!r->ready_outstanding);
    memset(rd, 0, sizeof(*rd));
    if (r->role == RAFT_LEADER) {
        read_index_flush(r);
        if (r->bcast_pending || r->commit_bcast) replication_bcast_append(r);
        r->bcast_pending = false;
        r->commit_bcast = false;
    }
    struct raft_out *o = &r->out[r->fill];

    rd->soft_state_changed =
        r->role != r->ss_role || r->leader != r->ss_leader || r->term != r->ss_term;
    rd->role = r->role;
    rd->leader = r->leader;
    rd->term = r->term;
    r->ss_role = r->role;
    r->ss_leader = r->leader;
    r->ss_term = r->term;

    if (r->snap_to_install) {
        o->has_snapshot = true;
        o->snapshot = r->snap;
        rd->snapshot = &o->snapshot;
        r->snap_to_install = false;
    }

    /* Entries to persist: everything not handed out yet, up to the limit. */
    raft_index last = handout_limit(r);
    if (r->log.handed < last) {
        size_t n = (size_t)(last - r->log.handed);
        if (entries_grow(&r->cfg, &o->persist, &o->cap_persist, n) == 0) {
            for (raft_index i = r->log.handed + 1; i <= last; i++)
                entry_copy_ref(&o->persist[o->n_persist++], log_get(&r->log, i));
            r->log.handed = last;
        } else {
            /* Out of memory: the entries wait for the next ready. The
             * acknowledgements queued for after this ready's write may cover
             * them, so they must not be sent: drop them (Raft tolerates
             * message loss; the leader retries). Their references go at ack. */
            o->after.n = 0;
        }
    }
    if (o->n_persist) {
        rd->entries = o->persist;
        rd->n_entries = o->n_persist;
        rd->persist_index = o->persist[o->n_persist - 1].index;
        rd->persist_term = o->persist[o->n_persist - 1].term;
    } else if (rd->snapshot) {
        rd->persist_index = rd->snapshot->index;
        rd->persist_term = rd->snapshot->term;
    }

    struct raft_hard_state hs;
    current_hs(r, &hs);
    /* The persisted commit never runs ahead of what this ready (or an earlier
     * one) persists. */
    hs.commit = ST_MIN(hs.commit, r->log.handed);
    if (hs.term != r->hs_handed.term || hs.vote != r->hs_handed.vote ||
        hs.commit != r->hs_handed.commit) {
        rd->hard_state_changed = true;
        rd->hard_state = hs;
        r->hs_handed = hs;
    }

    /* Committed entries, never beyond what is durable locally, and at most
     * committed_bytes_max bytes of payload (one entry at least). */
    raft_index lim = apply_limit(r);
    if (r->log.applying < lim && r->cfg.committed_bytes_max) {
        raft_index i = r->log.applying + 1;
        uint64_t bytes = log_get(&r->log, i)->len;
        while (i < lim && bytes + log_get(&r->log, i + 1)->len <= r->cfg.committed_bytes_max)
            bytes += log_get(&r->log, ++i)->len;
        lim = i;
    }
    if (r->log.applying < lim) {
        size_t n = (size_t)(lim - r->log.applying);
        if (entries_grow(&r->cfg, &o->committed, &o->cap_committed, n) == 0) {
            for (raft_index i = r->log.applying + 1; i <= lim; i++)
                entry_copy_ref(&o->committed[o->n_committed++], log_get(&r->log, i));
            r->log.applying = lim;
        }
    }
    rd->committed = o->committed;
    rd->n_committed = o->n_committed;

    fix_msgs(r, o, &o->msgs);
    fix_msgs(r, o, &o->after);
    rd->msgs = o->msgs.v;
    rd->n_msgs = o->msgs.n;
    rd->msgs_after_persist = o->after.v;
    rd->n_msgs_after_persist = o->after.n;
    rd->reads = o->reads;
    rd->n_reads = o->n_reads;

    r->ready_outstanding = true;
    r->fill ^= 1;
    ST_ASSERT(r->out[r->fill].msgs.n == 0 && r->out[r->fill].n_pool == 0);
}

void raft_ready_ack(struct raft *r, const struct raft_ready *rd)
{
    ST_ASSERT(r->ready_outstanding);
    struct raft_out *o = &r->out[r->fill ^ 1];
    if (o->has_snapshot) {
        /* The application restored the state machine to the snapshot. */
        r->log.applied = ST_MAX(r->log.applied, o->snapshot.index);
        r->log.applying = ST_MAX(r->log.applying, r->log.applied);
    }
    out_clear(o);
    r->ready_outstanding = false;
    log_release_some(&r->log, LOG_RELEASE_PER_CALL);
    (void)rd;
}

void raft_persisted(struct raft *r, raft_index index, raft_term term)
{
    if (index == 0 || index <= r->log.stable) return;
    /* An entry overwritten since that ready was produced is not durable. */
    if (!log_match_term(&r->log, index, term) || index > r->log.handed) return;
    r->log.stable = index;
    /* Entries of our term come in the ready that handed out the term, or a
     * later one: the term is durable. */
    if (term == r->term) r->term_durable = true;
    if (r->role == RAFT_LEADER) {
        struct raft_progress *self = raft_progress_find(r, r->cfg.id);
        ST_ASSERT(self);
        self->match = ST_MAX(self->match, index);
        replication_maybe_commit(r);
    }
}

void raft_applied(struct raft *r, raft_index index)
{
    ST_ASSERT(index <= r->log.applying);
    if (index > r->log.applied) r->log.applied = index;
}

void raft_report_unreachable(struct raft *r, raft_id peer)
{
    if (r->role != RAFT_LEADER) return;
    struct raft_progress *p = raft_progress_find(r, peer);
    /* Appends in flight are probably lost: fall back to probing. */
    if (p && p->id != r->cfg.id && p->state == RAFT_PROGRESS_REPLICATE) progress_to_probe(p);
}
