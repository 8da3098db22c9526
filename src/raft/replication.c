/* Log replication (Raft §5.3, thesis 3.5), commitment (§5.4.2, Figure 3.7)
 * and the leader's tick (heartbeats, check-quorum, transfer timeout).
 */
#include "raft/quorum.h"
#include "raft/raft_int.h"

#include <stdlib.h>

bool replication_committed_in_term(const struct raft *r)
{
    return log_term_or0(&r->log, r->log.commit) == r->term;
}

int replication_append_local(struct raft *r, uint8_t type, struct raft_buf *buf,
                             const uint8_t *data, uint32_t len, raft_index *index)
{
    ST_ASSERT(r->role == RAFT_LEADER);
    int rc = log_reserve(&r->log, 1);
    if (rc) return rc;
    struct raft_entry e = {.term = r->term,
                           .index = log_last(&r->log) + 1,
                           .type = type,
                           .buf = buf,
                           .data = data,
                           .len = len};
    log_append(&r->log, &e);
    struct raft_progress *self = raft_progress_find(r, r->cfg.id);
    if (self) self->next = e.index + 1;
    if (type == RAFT_ENTRY_CONF) membership_on_append(r, e.index, e.index);
    r->uncommitted_bytes += len;
    /* Appends go out at the next ready: proposals arriving in between share
     * one message per follower (batching). */
    r->bcast_pending = true;
    *index = e.index;
    return 0;
}

/* Sends one append (or a snapshot) to p if its flow control allows. */
bool replication_send_append(struct raft *r, struct raft_progress *p, bool allow_empty)
{
    if (p->id == r->cfg.id || progress_paused(p)) return false;
    raft_index prev = p->next - 1;
    raft_term prev_term;
    if (!log_term(&r->log, prev, &prev_term)) {
        /* The entries the follower needs were compacted away. */
        ST_ASSERT(prev < r->log.prev_index);
        return snapshot_send(r, p);
    }
    raft_index last = log_last(&r->log);
    size_t n = 0;
    uint64_t bytes = 0;
    for (raft_index i = p->next; i <= last; i++) {
        uint32_t len = log_get(&r->log, i)->len;
        /* At least one entry, then stay within msg_bytes_max. */
        if (n > 0 && bytes + len > r->cfg.msg_bytes_max) break;
        bytes += len;
        n++;
    }
    if (n == 0 && !allow_empty) return false;
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .to = p->id,
                         .term = r->term,
                         .index = prev,
                         .log_term = prev_term,
                         .commit = r->log.commit};
    /* Out of memory: nothing changes; heartbeat answers retry. */
    if (!raft_send_log(r, &m, p->next, n, false)) return false;
    if (n > 0 && prev + n > r->append_sent_max) r->append_sent_max = prev + n;
    progress_sent(p, prev + n, n > 0);
    return true;
}

void replication_bcast_append(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct raft_progress *p = &r->prs[i];
        if (p->id == r->cfg.id) continue;
        if (p->state == RAFT_PROGRESS_PROBE) {
            replication_send_append(r, p, true);
        } else if (p->state == RAFT_PROGRESS_REPLICATE) {
            bool sent = false;
            while (replication_send_append(r, p, false))
                sent = true;
            /* Commit moved but nothing new to send: an empty append tells. */
            if (!sent && r->commit_bcast) replication_send_append(r, p, true);
        }
    }
}

void replication_bcast_heartbeat(struct raft *r)
{
    uint64_t round = read_index_start_round(r);
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct raft_progress *p = &r->prs[i];
        if (p->id == r->cfg.id) continue;
        /* Never tell a follower to commit past what it is known to hold. */
        struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT,
                             .to = p->id,
                             .term = r->term,
                             .commit = ST_MIN(p->match, r->log.commit),
                             .context = round};
        raft_send(r, &m, false);
    }
}

bool replication_maybe_commit(struct raft *r)
{
    raft_index m[RAFT_MEMBERS_MAX];
    size_t n = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        const struct raft_progress *p = &r->prs[i];
        if (!raft_is_voter(r, p->id)) continue;
        /* The leader's own log counts only once durable (raft_persisted). */
        m[n++] = p->id == r->cfg.id ? ST_MIN(p->match, r->log.stable) : p->match;
    }
    if (n == 0) return false;
    raft_index idx = quorum_index(m, n, raft_quorum(r));
    /* Figure 3.2 / §5.4.2: "Raft never commits log entries from previous
     * terms by counting replicas"; only an entry of the current term. */
    if (idx <= r->log.commit || log_term_or0(&r->log, idx) != r->term) return false;
    replication_commit_to(r, idx);
    return true;
}

void replication_commit_to(struct raft *r, raft_index index)
{
    if (index <= r->log.commit) return;
    ST_ASSERT(index <= log_last(&r->log));
    bool had_term_commit = r->role == RAFT_LEADER && replication_committed_in_term(r);
    if (r->role == RAFT_LEADER) {
        for (raft_index i = r->log.commit + 1; i <= index; i++) {
            uint32_t len = log_get(&r->log, i)->len;
            r->uncommitted_bytes = r->uncommitted_bytes > len ? r->uncommitted_bytes - len : 0;
        }
    }
    r->log.commit = index;
    if (r->role != RAFT_LEADER) return;
    r->commit_bcast = true;
    if (!had_term_commit && replication_committed_in_term(r)) read_index_on_term_commit(r);
    membership_release_departed(r);
    /* Thesis 4.2.2: a leader removed from the configuration steps down once
     * the entry removing it is committed -- after telling the others. */
    if (!raft_is_voter(r, r->cfg.id) && r->conf_index <= r->log.commit) {
        replication_bcast_append(r);
        replication_bcast_heartbeat(r);
        raft_become_follower(r, r->term, RAFT_NONE);
    }
}

static void send_append_resp(struct raft *r, const struct raft_msg *m, raft_index index)
{
    struct raft_msg resp = {
        .type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term, .index = index};
    /* Acknowledging entries: only once they (and our term) are durable. */
    raft_send(r, &resp, true);
}

int replication_step_append(struct raft *r, const struct raft_msg *m)
{
    struct raft_log *l = &r->log;
    if (m->index < l->commit) {
        /* Everything up to commit matches the leader already. */
        send_append_resp(r, m, l->commit);
        return 0;
    }
    if (!log_match_term(l, m->index, m->log_term)) {
        /* Reject with a hint for fast backtracking (thesis 3.5 end): the
         * follower's last index when its log is shorter, else the first
         * index of the conflicting term. */
        struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP,
                                .to = m->from,
                                .term = r->term,
                                .index = m->index,
                                .reject = true};
        if (m->index > log_last(l)) {
            resp.reject_hint = log_last(l);
            resp.hint_term = 0;
        } else {
            resp.hint_term = log_term_or0(l, m->index);
            resp.reject_hint = log_term_start(l, m->index);
        }
        raft_send(r, &resp, false);
        return 0;
    }
    /* Find the first new or conflicting entry (§5.3: "If an existing entry
     * conflicts with a new one, delete the existing entry and all that
     * follow it"). */
    uint32_t k = 0;
    for (; k < m->n_entries; k++) {
        const struct raft_entry *e = &m->entries[k];
        if (e->index > log_last(l) || !log_match_term(l, e->index, e->term)) break;
    }
    if (k < m->n_entries) {
        raft_index from = m->entries[k].index;
        if (from <= l->commit) {
            /* A leader contradicting committed entries: refuse, loudly. */
            return ST_EPROTO;
        }
        if (log_reserve(l, m->n_entries - k) != 0)
            return ST_ENOMEM; /* nothing changed; the leader will retry */
        if (from <= log_last(l)) {
            log_truncate_from(l, from);
            /* The conf falls back to the latest conf entry still in the log. */
            if (r->conf_index >= from) membership_rebuild(r);
        }
        for (uint32_t j = k; j < m->n_entries; j++)
            log_append(l, &m->entries[j]);
        membership_on_append(r, from, log_last(l));
    }
    raft_index last_new = m->index + m->n_entries;
    replication_commit_to(r, ST_MIN(m->commit, last_new));
    send_append_resp(r, m, last_new);
    return 0;
}

int replication_step_heartbeat(struct raft *r, const struct raft_msg *m)
{
    replication_commit_to(r, ST_MIN(m->commit, log_last(&r->log)));
    struct raft_msg resp = {
        .type = RAFT_MSG_HEARTBEAT_RESP, .to = m->from, .term = r->term, .context = m->context};
    raft_send(r, &resp, false);
    return 0;
}

void replication_send_timeout_now(struct raft *r, raft_id to)
{
    struct raft_msg m = {.type = RAFT_MSG_TIMEOUT_NOW, .to = to, .term = r->term};
    r->lease_revoked = true;
    raft_send(r, &m, false);
}

int replication_step_append_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *p = raft_progress_find(r, m->from);
    if (!p || p->id == r->cfg.id) return ST_EPROTO;
    p->recent_active = true;
    struct raft_log *l = &r->log;
    if (m->reject) {
        if (m->index > log_last(l) + 1) return ST_EPROTO;
        raft_index probe_next;
        if (m->hint_term == 0) {
            probe_next = m->reject_hint + 1;
        } else {
            /* If we hold entries of hint_term, the follower may share them:
             * resume after our last one; otherwise skip the whole term. */
            raft_index idx =
                log_last_index_with_term_le(l, ST_MIN(m->index, log_last(l)), m->hint_term);
            if (idx > 0 && log_term_or0(l, idx) == m->hint_term)
                probe_next = idx + 1;
            else
                probe_next = m->reject_hint;
        }
        if (probe_next < 1) probe_next = 1;
        if (progress_decr_to(p, m->index, probe_next)) {
            if (p->state == RAFT_PROGRESS_REPLICATE) progress_to_probe(p);
            replication_send_append(r, p, true);
        }
        return 0;
    }
    if (m->index > log_last(l)) return ST_EPROTO;
    bool moved = progress_update(p, m->index);
    if (p->state == RAFT_PROGRESS_REPLICATE) {
        inflights_free_to(&p->ins, m->index);
    } else if (p->state == RAFT_PROGRESS_PROBE && moved) {
        progress_to_replicate(p);
    } else if (p->state == RAFT_PROGRESS_SNAPSHOT && p->match >= p->pending_snapshot) {
        /* The snapshot landed. */
        progress_to_probe(p);
        progress_to_replicate(p);
    }
    if (moved && replication_maybe_commit(r)) {
        if (r->role != RAFT_LEADER) return 0; /* stepped down after committing its own removal */
    }
    if (moved && p->departed) {
        membership_release_departed(r);
        return 0; /* p may be gone */
    }
    while (replication_send_append(r, p, false))
        ;
    if (m->from == r->transferee && p->match == log_last(l))
        replication_send_timeout_now(r, m->from);
    return 0;
}

int replication_step_heartbeat_resp(struct raft *r, const struct raft_msg *m)
{
    struct raft_progress *p = raft_progress_find(r, m->from);
    if (!p || p->id == r->cfg.id) return ST_EPROTO;
    p->recent_active = true;
    p->probe_sent = false;
    /* An append may have been lost with a full window: free one slot so the
     * empty append below can discover the gap (etcd does the same). */
    if (p->state == RAFT_PROGRESS_REPLICATE && inflights_full(&p->ins))
        inflights_free_first(&p->ins);
    if (p->match < log_last(&r->log)) replication_send_append(r, p, true);
    if (m->context > p->acked_round && m->context <= r->round) {
        p->acked_round = m->context;
        read_index_on_round_ack(r);
    }
    return 0;
}

int replication_step_propose(struct raft *r, const struct raft_msg *m)
{
    /* Refusals (transfer, uncommitted bound) are counted in
     * proposals_refused; the proposer's client times out and retries. The
     * message itself was fine, so raft_step() reports success. */
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        raft_index idx;
        if (raft_propose(r, e->buf, e->data, e->len, &idx, NULL) != 0) break;
    }
    return 0;
}

bool replication_quorum_active(const struct raft *r)
{
    size_t active = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        const struct raft_progress *p = &r->prs[i];
        if (!raft_is_voter(r, p->id)) continue;
        if (p->id == r->cfg.id || p->recent_active) active++;
    }
    return active >= raft_quorum(r);
}

void replication_leader_tick(struct raft *r)
{
    r->election_elapsed++;
    r->heartbeat_elapsed++;
    if (r->transferee != RAFT_NONE && ++r->transfer_elapsed >= r->cfg.election_ticks) {
        /* Thesis 3.10: abort a transfer that did not complete within an
         * election timeout, and accept proposals again. */
        r->transferee = RAFT_NONE;
        r->transfer_elapsed = 0;
    }
    if (r->election_elapsed >= r->cfg.election_ticks) {
        r->election_elapsed = 0;
        if (r->cfg.check_quorum) {
            /* Thesis 6.2: "a leader steps down if an election timeout elapses
             * without a successful round of heartbeats to a majority". */
            if (!replication_quorum_active(r)) {
                raft_become_follower(r, r->term, RAFT_NONE);
                return;
            }
        }
        membership_drop_inactive_departed(r);
        for (uint32_t i = 0; i < r->n_prs; i++)
            if (r->prs[i].id != r->cfg.id) r->prs[i].recent_active = false;
    }
    if (r->heartbeat_elapsed >= r->cfg.heartbeat_ticks) {
        r->heartbeat_elapsed = 0;
        replication_bcast_heartbeat(r);
    }
}
