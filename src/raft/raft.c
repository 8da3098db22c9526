/* The Raft core: creation, the role transitions (the raft_become_* family is
 * the only code that changes r->role; see the diagram in raft_int.h), message
 * dispatch with the term rules, ticks, the ready batch and inspection.
 */
#include "raft/quorum.h"
#include "raft/raft_int.h"

#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------- names */

const char *raft_role_name(enum raft_role role)
{
    switch (role) {
    case RAFT_FOLLOWER:
        return "follower";
    case RAFT_PRE_CANDIDATE:
        return "pre-candidate";
    case RAFT_CANDIDATE:
        return "candidate";
    case RAFT_LEADER:
        return "leader";
    }
    return "unknown";
}

const char *raft_msg_type_name(int type)
{
    static const char *const names[] = {
        [RAFT_MSG_APPEND] = "append",
        [RAFT_MSG_APPEND_RESP] = "append_resp",
        [RAFT_MSG_VOTE] = "vote",
        [RAFT_MSG_VOTE_RESP] = "vote_resp",
        [RAFT_MSG_PREVOTE] = "prevote",
        [RAFT_MSG_PREVOTE_RESP] = "prevote_resp",
        [RAFT_MSG_HEARTBEAT] = "heartbeat",
        [RAFT_MSG_HEARTBEAT_RESP] = "heartbeat_resp",
        [RAFT_MSG_SNAPSHOT] = "snapshot",
        [RAFT_MSG_TIMEOUT_NOW] = "timeout_now",
        [RAFT_MSG_READ_INDEX] = "read_index",
        [RAFT_MSG_READ_INDEX_RESP] = "read_index_resp",
        [RAFT_MSG_PROPOSE] = "propose",
    };
    if (type <= 0 || type >= RAFT_MSG_TYPE_MAX) return "unknown";
    return names[type];
}

void raft_config_default(struct raft_config *cfg, raft_id id)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->id = id;
    cfg->seed = id;
    cfg->election_ticks = 10;
    cfg->heartbeat_ticks = 1;
    cfg->pre_vote = true;
    cfg->check_quorum = true;
    cfg->lease_reads = false;
    cfg->forward_proposals = true;
    cfg->inflight_msgs_max = 4;
    cfg->msg_bytes_max = 1u << 20;
    cfg->uncommitted_bytes_max = UINT64_C(64) << 20;
    cfg->trailing_entries = 1024;
    cfg->reads_pending_max = 1024;
}

/* --------------------------------------------------------------- helpers */

bool raft_is_voter(const struct raft *r, raft_id id)
{
    const struct raft_member *m = raft_conf_find(&r->conf, id);
    return m && m->role == RAFT_VOTER;
}

bool raft_promotable(const struct raft *r)
{
    /* A learner or a removed node never campaigns... */
    if (raft_is_voter(r, r->cfg.id)) return true;
    /* ...but thesis 4.2.2: "a server that is not part of its own latest
     * configuration should still start new elections, as it might still be
     * needed until the Cnew entry is committed". */
    if (r->conf_index <= r->log.commit) return false;
    struct raft_conf committed;
    membership_conf_at(r, r->log.commit, &committed);
    const struct raft_member *m = raft_conf_find(&committed, r->cfg.id);
    return m && m->role == RAFT_VOTER;
}

size_t raft_quorum(const struct raft *r)
{
    return quorum_majority(raft_conf_voters(&r->conf));
}

struct raft_progress *raft_progress_find(struct raft *r, raft_id id)
{
    for (uint32_t i = 0; i < r->n_prs; i++)
        if (r->prs[i].id == id) return &r->prs[i];
    return NULL;
}

void raft_reset_randomized_timeout(struct raft *r)
{
    /* Raft §5.2 / thesis 3.4: randomized in [election, 2 * election). */
    r->randomized_timeout =
        r->cfg.election_ticks + (uint32_t)st_rng_below(&r->rng, r->cfg.election_ticks);
}

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

static void out_free(const struct raft_config *c, struct raft_out *o)
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

/* ----------------------------------------------------------------- roles */

static void set_leader(struct raft *r, raft_id leader)
{
    if (leader != RAFT_NONE && leader != r->leader) r->stats.leader_changes++;
    r->leader = leader;
}

static void reset_common(struct raft *r, raft_term term)
{
    if (term != r->term) {
        r->term = term;
        r->vote = RAFT_NONE;
    }
    r->election_elapsed = 0;
    r->heartbeat_elapsed = 0;
    r->transferee = RAFT_NONE;
    r->transfer_elapsed = 0;
    r->n_votes = 0;
    raft_reset_randomized_timeout(r);
}

void raft_become_follower(struct raft *r, raft_term term, raft_id leader)
{
    ST_ASSERT(term >= r->term);
    bool was_leader = r->role == RAFT_LEADER;
    raft_id old_leader = r->leader;
    reset_common(r, term);
    r->role = RAFT_FOLLOWER;
    set_leader(r, leader);
    /* Pending reads were bound to a leadership that is gone: fail them
     * loudly, never drop them. */
    if (was_leader || old_leader != leader) read_index_fail_all(r, ST_ENOTLEADER);
    r->bcast_pending = false;
    r->commit_bcast = false;
    membership_sync_progress(r);
}

void raft_become_pre_candidate(struct raft *r)
{
    ST_ASSERT(r->role != RAFT_LEADER);
    /* Thesis 9.6: the pre-candidate keeps its term and casts no vote. */
    reset_common(r, r->term);
    r->role = RAFT_PRE_CANDIDATE;
    set_leader(r, RAFT_NONE);
    read_index_fail_all(r, ST_ENOTLEADER);
}

void raft_become_candidate(struct raft *r)
{
    ST_ASSERT(r->role != RAFT_LEADER);
    reset_common(r, r->term + 1);
    r->vote = r->cfg.id;
    r->term_durable = false;
    r->role = RAFT_CANDIDATE;
    set_leader(r, RAFT_NONE);
    read_index_fail_all(r, ST_ENOTLEADER);
}

void raft_become_leader(struct raft *r)
{
    ST_ASSERT(r->role == RAFT_CANDIDATE);
    reset_common(r, r->term);
    r->role = RAFT_LEADER;
    set_leader(r, r->cfg.id);
    r->lease_revoked = false;
    r->uncommitted_bytes = 0;
    r->append_sent_max = 0;
    /* A conf entry of an earlier term may still be uncommitted. */
    r->pending_conf_index = r->conf_index;
    membership_sync_progress(r);
    /* Thesis 8 / §5.4.2: a new leader appends a no-op of its term; committing
     * it commits everything before it and lets ReadIndex start (thesis 6.4). */
    raft_index idx;
    int rc = replication_append_local(r, RAFT_ENTRY_NOOP, NULL, NULL, 0, &idx);
    ST_ASSERT(rc == 0 || rc == ST_ENOMEM);
    if (rc != 0) {
        /* Without its no-op the leader could never commit or serve reads. */
        raft_become_follower(r, r->term, RAFT_NONE);
        return;
    }
    replication_maybe_commit(r);
}

/* -------------------------------------------------------------- creation */

static int config_check(const struct raft_config *c)
{
    if (c->id == RAFT_NONE || c->election_ticks < 2 || c->heartbeat_ticks == 0 ||
        c->heartbeat_ticks >= c->election_ticks || c->inflight_msgs_max == 0 ||
        c->inflight_msgs_max > 4096 || c->msg_bytes_max == 0 || c->reads_pending_max == 0 ||
        c->reads_pending_max > (1u << 20))
        return ST_EINVAL;
    /* Lease reads are only safe with check-quorum (DESIGN §3.5). */
    if (c->lease_reads && !c->check_quorum) return ST_EINVAL;
    return 0;
}

int raft_create(const struct raft_config *cfg, const struct raft_bootstrap_state *st,
                struct raft **out)
{
    int rc = config_check(cfg);
    if (rc) return rc;
    if (!st || !out) return ST_EINVAL;
    struct raft *r = raft_mem_calloc(cfg, 1, sizeof(*r));
    if (!r) return ST_ENOMEM;
    r->cfg = *cfg;
    st_rng_init(&r->rng, cfg->seed);
    log_init(&r->log, &r->cfg);
    rc = ST_ENOMEM;
    r->ins_pool =
        raft_mem_calloc(&r->cfg, (size_t)RAFT_PRS_MAX * cfg->inflight_msgs_max, sizeof(raft_index));
    r->reads = raft_mem_calloc(&r->cfg, cfg->reads_pending_max, sizeof(*r->reads));
    r->out[0].reads =
        raft_mem_calloc(&r->cfg, cfg->reads_pending_max, sizeof(struct raft_read_state));
    r->out[1].reads =
        raft_mem_calloc(&r->cfg, cfg->reads_pending_max, sizeof(struct raft_read_state));
    if (!r->ins_pool || !r->reads || !r->out[0].reads || !r->out[1].reads) goto fail_r;

    rc = ST_EINVAL;
    const struct raft_hard_state *hs = &st->hard_state;
    r->term = hs->term;
    r->vote = hs->vote;
    r->role = RAFT_FOLLOWER;
    r->term_durable = true; /* it comes from the disk */
    if (st->snapshot) {
        const struct raft_snapshot_meta *sm = st->snapshot;
        if (sm->index == 0 || sm->term == 0 || !membership_conf_valid(&sm->conf)) goto fail_r;
        /* A snapshot of a later term than the hard state: the node crashed
         * between storing a received snapshot (the transport does that
         * before the core sees the message) and persisting the ready that
         * installed it, which carried the sender's term. It never voted in
         * a term above hs->term (a vote is durable before it is sent), so
         * moving up to the snapshot's term with no vote is safe; the first
         * ready persists it. */
        if (sm->term > r->term) {
            r->term = sm->term;
            r->vote = RAFT_NONE;
            r->term_durable = false;
        }
        r->has_snapshot = true;
        r->snap = *sm;
        r->base_conf = sm->conf;
        log_reset(&r->log, sm->index, sm->term);
    }
    if (st->n_entries > 0) {
        if (!st->entries) goto fail_r;
        rc = log_reserve(&r->log, st->n_entries);
        if (rc) goto fail_r;
        rc = ST_EINVAL;
        raft_term prev_term = r->log.prev_term;
        size_t skip = 0;
        /* The WAL may still hold the trailing entries a snapshot covers:
         * skip them, checking they agree with the snapshot. */
        while (skip < st->n_entries && st->entries[skip].index <= r->log.prev_index) {
            const struct raft_entry *e = &st->entries[skip];
            if ((skip > 0 && e->index != st->entries[skip - 1].index + 1) ||
                (e->index == r->log.prev_index && e->term != r->log.prev_term))
                goto fail_r;
            skip++;
        }
        for (size_t i = skip; i < st->n_entries; i++) {
            const struct raft_entry *e = &st->entries[i];
            if (e->index != r->log.prev_index + 1 + (i - skip) || e->term < prev_term ||
                e->term > hs->term || e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_NOOP ||
                (e->len > 0 && (!e->buf || !e->data)))
                goto fail_r;
            prev_term = e->term;
            log_append(&r->log, e);
        }
    }
    if (!st->snapshot && st->n_entries == 0 && st->initial_conf) {
        rc = membership_bootstrap(r, st->initial_conf);
        if (rc) goto fail_r;
        rc = ST_EINVAL;
        if (r->term < 1) {
            r->term = 1;
            r->vote = RAFT_NONE;
        }
    } else {
        membership_rebuild(r);
        if (hs->commit > log_last(&r->log)) goto fail_r;
        r->log.commit = ST_MAX(hs->commit, r->log.prev_index);
        r->log.stable = log_last(&r->log);
        r->log.handed = log_last(&r->log);
    }
    raft_index applied = ST_MAX(st->applied, r->log.prev_index);
    if (applied > r->log.commit) goto fail_r;
    r->log.applied = applied;
    r->log.applying = applied;
    /* What the disk holds; a bootstrap's term bump differs and is handed out. */
    r->hs_handed = *hs;
    r->leader = RAFT_NONE;
    r->ss_role = RAFT_FOLLOWER;
    r->ss_leader = RAFT_NONE;
    r->ss_term = r->term;
    raft_reset_randomized_timeout(r);
    *out = r;
    return 0;

fail_r:
    raft_destroy(r);
    return rc;
}

void raft_destroy(struct raft *r)
{
    if (!r) return;
    struct raft_config cfg = r->cfg; /* r is freed last */
    out_free(&cfg, &r->out[0]);
    out_free(&cfg, &r->out[1]);
    log_close(&r->log);
    raft_mem_free(&cfg, r->reads);
    raft_mem_free(&cfg, r->ins_pool);
    raft_mem_free(&cfg, r);
}

/* ------------------------------------------------------------------ tick */

void raft_tick(struct raft *r)
{
    r->ticks++;
    log_release_some(&r->log, LOG_RELEASE_PER_CALL);
    if (r->role == RAFT_LEADER)
        replication_leader_tick(r);
    else
        election_tick(r);
    read_index_tick(r);
}

/* ------------------------------------------------------------------ step */

static bool entry_sane(const struct raft_entry *e)
{
    if (e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_NOOP) return false;
    if (e->len == 0) return true;
    if (!e->buf || !e->data || e->buf->refs == 0) return false;
    /* The payload must lie inside its owner. */
    return e->data >= e->buf->data && (size_t)(e->data - e->buf->data) <= e->buf->cap &&
           e->len <= e->buf->cap - (size_t)(e->data - e->buf->data);
}

static int msg_validate(const struct raft *r, const struct raft_msg *m)
{
    if (m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG_TYPE_MAX) return ST_EPROTO;
    if (m->from == RAFT_NONE || m->from == r->cfg.id || m->to != r->cfg.id) return ST_EPROTO;
    /* A forwarded PROPOSE carries the term it was forwarded in (never 0: a
     * follower that knows a leader knows its term); a READ_INDEX may be
     * sent before the sender knows any term. */
    if (m->type != RAFT_MSG_READ_INDEX && m->term == 0) return ST_EPROTO;
    if (m->n_entries > 0) {
        if (m->type != RAFT_MSG_APPEND && m->type != RAFT_MSG_PROPOSE) return ST_EPROTO;
        if (!m->entries) return ST_EPROTO;
        for (uint32_t i = 0; i < m->n_entries; i++)
            if (!entry_sane(&m->entries[i])) return ST_EPROTO;
    }
    if (m->type == RAFT_MSG_APPEND) {
        raft_term prev = m->log_term;
        if (m->log_term > m->term) return ST_EPROTO;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            /* Contiguous after index, terms non-decreasing and not above the
             * leader's term. */
            if (e->index != m->index + 1 + i || e->term < prev || e->term > m->term)
                return ST_EPROTO;
            prev = e->term;
        }
        if (m->index == 0 && m->log_term != 0) return ST_EPROTO;
    }
    if (m->type == RAFT_MSG_PROPOSE) {
        if (m->n_entries == 0) return ST_EPROTO;
        for (uint32_t i = 0; i < m->n_entries; i++)
            if (m->entries[i].type != RAFT_ENTRY_NORMAL) return ST_EPROTO;
    }
    if (m->type == RAFT_MSG_SNAPSHOT) {
        const struct raft_snapshot_meta *s = m->snapshot;
        if (!s || s->index == 0 || s->term == 0 || s->term > m->term ||
            !membership_conf_valid(&s->conf))
            return ST_EPROTO;
    }
    if ((m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) && m->log_term > m->term)
        return ST_EPROTO;
    return 0;
}

static int dropped(struct raft *r)
{
    r->stats.msgs_dropped++;
    return ST_EPROTO;
}

static int stale(struct raft *r)
{
    r->stats.msgs_stale++;
    return ST_ESTALE;
}

/* Term rules (Raft Figure 2 "all servers", etcd's Step). Returns 1 when the
 * message should be processed further, or a result to return. */
static int step_term(struct raft *r, const struct raft_msg *m)
{
    if (m->type == RAFT_MSG_PROPOSE && m->term < r->term) {
        /* A proposal forwarded in an older term. Its follower may have told
         * its client "leadership lost; retry" since (it does once an entry
         * of a later term applies there), so appending it now could apply
         * the write twice, after the retry. Only a leader of the term the
         * follower forwarded in may append it (issue 14, finding 9). */
        r->stats.proposals_refused += m->n_entries;
        return stale(r);
    }
    if (m->type == RAFT_MSG_PROPOSE || m->type == RAFT_MSG_READ_INDEX)
        return 1; /* forwarded requests: handled by role, not by a later term */
    if (m->term > r->term) {
        if (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE) {
            bool forced = m->context == RAFT_CONTEXT_TRANSFER;
            /* Leader lease (thesis 4.2.3): a server that heard from a current
             * leader within the minimum election timeout does not update its
             * term or grant its vote, unless leadership transfer forced the
             * campaign. */
            bool in_lease = r->cfg.check_quorum && r->leader != RAFT_NONE &&
                            r->election_elapsed < r->cfg.election_ticks;
            if (!forced && in_lease) return stale(r);
        }
        if (m->type == RAFT_MSG_PREVOTE) return 1; /* a pre-vote never changes our term */
        if (m->type == RAFT_MSG_PREVOTE_RESP && !m->reject)
            return 1; /* granted pre-votes carry the term we would use */
        bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
                           m->type == RAFT_MSG_SNAPSHOT;
        raft_become_follower(r, m->term, from_leader ? m->from : RAFT_NONE);
        return 1;
    }
    if (m->term < r->term) {
        if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
            m->type == RAFT_MSG_SNAPSHOT) {
            /* A stale leader: answer with our term so it steps down (Figure
             * 3.1: "reply false if term < currentTerm", with the term). etcd
             * answers only with check-quorum or pre-vote (issue 5451), but a
             * leader that removed itself is never contacted by the new
             * leadership, so without this answer it would lead its stale term
             * forever (sim seed 302277). */
            struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term};
            raft_send(r, &resp, false);
        } else if (m->type == RAFT_MSG_PREVOTE) {
            /* Tell the pre-candidate about our term so it can catch up. */
            struct raft_msg resp = {
                .type = RAFT_MSG_PREVOTE_RESP, .to = m->from, .term = r->term, .reject = true};
            raft_send(r, &resp, false);
        }
        return stale(r);
    }
    return 1;
}

static int step_leader_only(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_APPEND_RESP:
        return replication_step_append_resp(r, m);
    case RAFT_MSG_HEARTBEAT_RESP:
        return replication_step_heartbeat_resp(r, m);
    case RAFT_MSG_READ_INDEX:
        return read_index_step_request(r, m);
    case RAFT_MSG_PROPOSE:
        return replication_step_propose(r, m);
    default:
        return 0;
    }
}

/* Per-type handling after the term rules. Returns ST_EPROTO (uncounted) for
 * input that makes no sense here. */
static int step_by_type(struct raft *r, const struct raft_msg *m)
{
    switch (m->type) {
    case RAFT_MSG_VOTE:
    case RAFT_MSG_PREVOTE:
        return election_step_vote(r, m);
    case RAFT_MSG_VOTE_RESP:
    case RAFT_MSG_PREVOTE_RESP:
        return election_step_vote_resp(r, m);
    case RAFT_MSG_APPEND:
    case RAFT_MSG_HEARTBEAT:
    case RAFT_MSG_SNAPSHOT:
        if (r->role == RAFT_LEADER) {
            /* Two leaders in one term would break Election Safety. */
            return ST_EPROTO;
        }
        if (r->role != RAFT_FOLLOWER || r->leader != m->from)
            raft_become_follower(r, m->term, m->from);
        r->election_elapsed = 0;
        if (m->type == RAFT_MSG_APPEND) return replication_step_append(r, m);
        if (m->type == RAFT_MSG_HEARTBEAT) return replication_step_heartbeat(r, m);
        return snapshot_step(r, m);
    case RAFT_MSG_TIMEOUT_NOW:
        if (r->role == RAFT_LEADER || !raft_promotable(r)) return ST_EPROTO;
        /* Thesis 3.10: the target starts an election at once, without
         * pre-vote, marked so voters ignore the leader lease. */
        election_campaign(r, false, true);
        return 0;
    case RAFT_MSG_READ_INDEX_RESP:
        return read_index_step_resp(r, m);
    case RAFT_MSG_APPEND_RESP:
    case RAFT_MSG_HEARTBEAT_RESP:
    case RAFT_MSG_READ_INDEX:
    case RAFT_MSG_PROPOSE:
        if (r->role != RAFT_LEADER) {
            if (m->type == RAFT_MSG_READ_INDEX) {
                struct raft_msg resp = {.type = RAFT_MSG_READ_INDEX_RESP,
                                        .to = m->from,
                                        .term = r->term,
                                        .reject = true,
                                        .context = m->context};
                raft_send(r, &resp, false);
                return 0;
            }
            if (m->type == RAFT_MSG_PROPOSE) r->stats.proposals_refused += m->n_entries;
            return 0; /* late answers to a former leadership */
        }
        if (!raft_progress_find(r, m->from)) return ST_EPROTO; /* requires membership */
        return step_leader_only(r, m);
    default:
        return ST_EPROTO;
    }
}

int raft_step(struct raft *r, const struct raft_msg *m)
{
    if (!m) return ST_EINVAL;
    if (msg_validate(r, m) != 0) return dropped(r);
    int rc = step_term(r, m);
    if (rc != 1) return rc;
    rc = step_by_type(r, m);
    /* Every message dropped as malformed, misdirected or from a non-member
     * is counted here, once. */
    if (rc == ST_EPROTO) r->stats.msgs_dropped++;
    return rc;
}

/* ------------------------------------------------------------- proposals */

int raft_propose(struct raft *r, struct raft_buf *buf, const uint8_t *data, uint32_t len,
                 raft_index *index, raft_term *term)
{
    if (len > 0 && (!buf || !data)) return ST_EINVAL;
    if (len > r->cfg.msg_bytes_max) {
        r->stats.proposals_refused++;
        return ST_ETOOBIG;
    }
    if (r->role != RAFT_LEADER) {
        if (r->role != RAFT_FOLLOWER || r->leader == RAFT_NONE || !r->cfg.forward_proposals) {
            r->stats.proposals_refused++;
            return ST_ENOTLEADER;
        }
        struct raft_entry e = {.type = RAFT_ENTRY_NORMAL, .buf = buf, .data = data, .len = len};
        struct raft_msg m = {.type = RAFT_MSG_PROPOSE,
                             .to = r->leader,
                             .term = r->term,
                             .n_entries = 1,
                             .entries = &e};
        raft_send(r, &m, false);
        r->stats.proposals++;
        if (index) *index = 0;
        if (term) *term = 0;
        return 0;
    }
    if (r->transferee != RAFT_NONE) {
        r->stats.proposals_refused++;
        return ST_ETRANSFER;
    }
    /* Bound the uncommitted tail (DESIGN §3.6); an empty tail accepts any
     * single proposal so a large entry cannot block forever. */
    if (r->cfg.uncommitted_bytes_max && r->uncommitted_bytes > 0 &&
        r->uncommitted_bytes + len > r->cfg.uncommitted_bytes_max) {
        r->stats.proposals_refused++;
        return ST_EBUSY;
    }
    raft_index idx;
    int rc = replication_append_local(r, RAFT_ENTRY_NORMAL, buf, data, len, &idx);
    if (rc) return rc;
    r->stats.proposals++;
    if (index) *index = idx;
    if (term) *term = r->term;
    return 0;
}

int raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc, raft_index *index)
{
    if (!cc) return ST_EINVAL;
    if (r->role != RAFT_LEADER) return ST_ENOTLEADER;
    if (r->transferee != RAFT_NONE) return ST_ETRANSFER;
    /* Ongaro, raft-dev 2015: not before an entry of the current term is
     * committed, and one change at a time. */
    if (!replication_committed_in_term(r) || r->pending_conf_index > r->log.commit)
        return ST_ECONFCHANGE;
    struct raft_conf probe = r->conf;
    if (cc->context_len > RAFT_MEMBER_CONTEXT_MAX || raft_conf_apply(&probe, cc) != 0)
        return ST_EINVAL;
    struct raft_buf *b = raft_buf_create(RAFT_CONF_CHANGE_ENCODED_MAX);
    if (!b) return ST_ENOMEM;
    uint32_t len = (uint32_t)raft_conf_change_encode(cc, b->data);
    raft_index idx;
    int rc = replication_append_local(r, RAFT_ENTRY_CONF, b, b->data, len, &idx);
    raft_buf_unref(b);
    if (rc) return rc;
    r->pending_conf_index = idx;
    if (index) *index = idx;
    return 0;
}

int raft_transfer_leadership(struct raft *r, raft_id to)
{
    if (r->role != RAFT_LEADER) return ST_ENOTLEADER;
    if (to == r->cfg.id || !raft_is_voter(r, to)) return ST_EINVAL;
    struct raft_progress *p = raft_progress_find(r, to);
    ST_ASSERT(p);
    r->transferee = to;
    r->transfer_elapsed = 0;
    /* Thesis 3.10: bring the target up to date, then TIMEOUT_NOW. */
    if (p->match == log_last(&r->log))
        replication_send_timeout_now(r, to);
    else
        replication_send_append(r, p, true);
    return 0;
}

int raft_campaign(struct raft *r)
{
    if (r->role == RAFT_LEADER) return 0;
    if (!raft_promotable(r)) return ST_EINVAL;
    election_campaign(r, r->cfg.pre_vote, false);
    return 0;
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
    if (r->role != RAFT_LEADER || (raft_is_voter(r, r->cfg.id) && raft_quorum(r) == 1))
        return last;
    return ST_MIN(last, ST_MAX(r->append_sent_max, r->log.handed));
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

    /* Committed entries, never beyond what is durable locally. */
    raft_index lim = apply_limit(r);
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

/* ------------------------------------------------------------ inspection */

raft_id raft_self(const struct raft *r)
{
    return r->cfg.id;
}

raft_id raft_leader(const struct raft *r)
{
    return r->leader;
}

enum raft_role raft_role_get(const struct raft *r)
{
    return r->role;
}

raft_term raft_term_get(const struct raft *r)
{
    return r->term;
}

raft_index raft_commit_index(const struct raft *r)
{
    return r->log.commit;
}

raft_index raft_applied_index(const struct raft *r)
{
    return r->log.applied;
}

raft_index raft_first_index(const struct raft *r)
{
    return log_first(&r->log);
}

raft_index raft_last_index(const struct raft *r)
{
    return log_last(&r->log);
}

const struct raft_conf *raft_conf_get(const struct raft *r)
{
    return &r->conf;
}

const struct raft_snapshot_meta *raft_snapshot_get(const struct raft *r)
{
    return r->has_snapshot ? &r->snap : NULL;
}

const struct raft_entry *raft_entry_get(const struct raft *r, raft_index index)
{
    return log_get(&r->log, index);
}

raft_term raft_term_at(const struct raft *r, raft_index index)
{
    return log_term_or0(&r->log, index);
}

size_t raft_progress_get(const struct raft *r, struct raft_progress_info *out, size_t cap)
{
    if (r->role != RAFT_LEADER) return 0;
    size_t n = 0;
    for (uint32_t i = 0; i < r->n_prs && n < cap; i++) {
        const struct raft_progress *p = &r->prs[i];
        out[n++] = (struct raft_progress_info){
            .id = p->id,
            .match = p->match,
            .next = p->next,
            .state = p->state,
            .recent_active = p->recent_active,
        };
    }
    return n;
}

void raft_stats_get(const struct raft *r, struct raft_stats *out)
{
    *out = r->stats;
}

/* ------------------------------------------------------------ invariants */

void raft_check_invariants(const struct raft *r)
{
    const struct raft_log *l = &r->log;
    raft_index last = log_last(l);
    /* Log: contiguous indexes, non-decreasing terms, terms <= current term. */
    raft_term prev = l->prev_term;
    for (raft_index i = l->prev_index + 1; i <= last; i++) {
        const struct raft_entry *e = log_get(l, i);
        ST_ASSERT(e && e->index == i);
        ST_ASSERT(e->term >= prev && e->term <= r->term);
        ST_ASSERT(e->type >= RAFT_ENTRY_NORMAL && e->type <= RAFT_ENTRY_NOOP);
        ST_ASSERT(e->len == 0 || (e->buf && e->buf->refs > 0 && e->data));
        prev = e->term;
    }
    ST_ASSERT(l->commit <= last);
    ST_ASSERT(l->commit >= l->prev_index);
    ST_ASSERT(l->applied <= l->applying);
    ST_ASSERT(l->applying <= l->commit);
    ST_ASSERT(l->applying <= ST_MAX(l->stable, l->prev_index));
    ST_ASSERT(l->stable <= last && l->handed <= last);
    ST_ASSERT(l->stable <= l->handed);
    ST_ASSERT(l->applied >= l->prev_index || r->snap_to_install || r->ready_outstanding);
    if (r->has_snapshot) {
        ST_ASSERT(r->snap.index >= l->prev_index);
        ST_ASSERT(r->snap.index <= last);
        ST_ASSERT(r->snap.index <= l->commit);
        ST_ASSERT(log_match_term(l, r->snap.index, r->snap.term));
    } else {
        ST_ASSERT(l->prev_index == 0);
    }
    /* Roles. */
    switch (r->role) {
    case RAFT_LEADER:
        ST_ASSERT(r->leader == r->cfg.id);
        ST_ASSERT(r->vote == r->cfg.id);
        ST_ASSERT(r->n_prs >= 1);
        break;
    case RAFT_CANDIDATE:
        ST_ASSERT(r->leader == RAFT_NONE && r->vote == r->cfg.id);
        ST_ASSERT(r->n_prs == 0);
        break;
    case RAFT_PRE_CANDIDATE:
        ST_ASSERT(r->leader == RAFT_NONE);
        ST_ASSERT(r->n_prs == 0);
        break;
    case RAFT_FOLLOWER:
        ST_ASSERT(r->leader != r->cfg.id);
        ST_ASSERT(r->n_prs == 0);
        break;
    default:
        ST_UNREACHABLE();
    }
    ST_ASSERT(r->transferee == RAFT_NONE || r->role == RAFT_LEADER);
    /* Progress. */
    for (uint32_t i = 0; i < r->n_prs; i++) {
        const struct raft_progress *p = &r->prs[i];
        ST_ASSERT(p->id != RAFT_NONE);
        ST_ASSERT(raft_conf_find(&r->conf, p->id) || p->id == r->cfg.id || p->departed);
        ST_ASSERT(!p->departed || !raft_conf_find(&r->conf, p->id));
        ST_ASSERT(p->match <= last);
        ST_ASSERT(p->next >= 1 && p->next <= last + 1);
        ST_ASSERT(p->match < p->next);
        ST_ASSERT(p->ins.count <= p->ins.cap);
        ST_ASSERT(p->state <= RAFT_PROGRESS_SNAPSHOT);
        ST_ASSERT(p->state != RAFT_PROGRESS_SNAPSHOT || p->pending_snapshot > 0);
        for (uint32_t j = 0; j < i; j++)
            ST_ASSERT(r->prs[j].id != p->id);
        if (p->id == r->cfg.id) ST_ASSERT(p->match <= l->stable || p->match <= l->prev_index);
    }
    for (uint32_t i = 0; i < r->conf.n && r->role == RAFT_LEADER; i++) {
        bool found = false;
        for (uint32_t j = 0; j < r->n_prs; j++)
            found = found || r->prs[j].id == r->conf.members[i].id;
        ST_ASSERT(found);
    }
    /* Membership. */
    ST_ASSERT(membership_conf_valid(&r->conf));
    ST_ASSERT(membership_conf_valid(&r->base_conf));
    ST_ASSERT(r->conf_index == 0 || (r->conf_index > l->prev_index && r->conf_index <= last));
    ST_ASSERT(r->pending_conf_index <= last || r->role != RAFT_LEADER);
    /* Reads. */
    ST_ASSERT(r->n_reads + r->out[r->fill].n_reads <= r->cfg.reads_pending_max);
}
