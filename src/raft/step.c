/* Message intake: validation of what a peer sent, the term rules (Figure
 * 3.1 "Rules for Servers", pre-vote and the leader lease, thesis 4.2.3 and
 * 9.6) and dispatch to the file that handles each message type.
 */
#include "raft/raft_int.h"

#include <stdlib.h>
#include <string.h>

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
