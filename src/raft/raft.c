/* The Raft core's lifecycle: names, the default configuration, shared
 * helpers (voters, quorum, progress lookup, election jitter), creation,
 * destruction, the tick and the whole-state invariant checker.
 *
 * The rest of the core, one idea per file: role.c (the raft_become_* family,
 * the only code that changes r->role; see the diagram in raft_int.h), step.c
 * (message validation, the term rules and dispatch), propose.c (what the
 * application asks: proposals, configuration changes, leadership transfer,
 * campaigns), ready.c (the outbox and the ready batch), inspect.c (read-only
 * accessors), quorum.c (majority arithmetic).
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
        if (st->force_self) {
            if (st->force_self->id != cfg->id || (!st->snapshot && st->n_entries == 0) ||
                r->term == 0)
                goto fail_r;
            rc = membership_force_alone(r, st->force_self);
            if (rc) goto fail_r;
            rc = ST_EINVAL;
        }
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
    raft_out_free(&cfg, &r->out[0]);
    raft_out_free(&cfg, &r->out[1]);
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
