/* What the application asks of the core: proposals (local or forwarded to
 * the leader), configuration changes, leadership transfer (thesis 3.10) and
 * campaigns.
 */
#include "raft/raft_int.h"

#include <stdlib.h>
#include <string.h>

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
