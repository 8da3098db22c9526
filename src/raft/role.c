/* Role transitions: the raft_become_* family, the only code that changes
 * r->role (diagram and per-role guarantees in raft_int.h).
 */
#include "raft/raft_int.h"

#include <stdlib.h>
#include <string.h>

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
