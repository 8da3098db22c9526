/* Leader election (Raft §5.2, thesis 3.4) with pre-vote (thesis 9.6) and the
 * leader lease of check-quorum (thesis 4.2.3, 6.2).
 */
#include "raft/quorum.h"
#include "raft/raft_int.h"

void election_tick(struct raft *r)
{
    if (r->election_elapsed < UINT32_MAX) r->election_elapsed++;
    /* "If a follower receives no communication over a period of time called
     * the election timeout, then it assumes there is no viable leader"
     * (§5.2). Learners and removed servers never campaign; their clock keeps
     * running so the lease checks (thesis 4.2.3, 9.6) see they have not heard
     * from a leader (the OOM scenario test caught a removed server that
     * reset it and kept refusing the votes its re-admission needed). */
    if (r->election_elapsed >= r->randomized_timeout && raft_promotable(r)) {
        r->election_elapsed = 0;
        election_campaign(r, r->cfg.pre_vote, false);
    }
}

static void record_vote(struct raft *r, raft_id id, bool granted)
{
    for (uint32_t i = 0; i < r->n_votes; i++)
        if (r->votes[i].id == id) return; /* first answer counts */
    ST_ASSERT(r->n_votes < ST_ARRAY_LEN(r->votes));
    r->votes[r->n_votes++] = (struct raft_vote_rec){id, granted};
}

/* Returns 1 won, -1 lost, 0 pending. Only voters of our configuration count. */
static int tally(const struct raft *r)
{
    size_t granted = 0, rejected = 0;
    for (uint32_t i = 0; i < r->n_votes; i++) {
        if (!raft_is_voter(r, r->votes[i].id)) continue;
        if (r->votes[i].granted)
            granted++;
        else
            rejected++;
    }
    return (int)quorum_vote_result(raft_conf_voters(&r->conf), granted, rejected);
}

void election_campaign(struct raft *r, bool pre_vote, bool forced)
{
    if (!raft_promotable(r) || r->role == RAFT_LEADER) return;
    r->stats.elections_started++;
    raft_term vote_term;
    if (pre_vote) {
        raft_become_pre_candidate(r);
        vote_term = r->term + 1;
    } else {
        raft_become_candidate(r);
        vote_term = r->term;
    }
    record_vote(r, r->cfg.id, true);
    if (tally(r) == 1) {
        /* Single voter: no one to ask. */
        if (pre_vote)
            election_campaign(r, false, forced);
        else
            raft_become_leader(r);
        return;
    }
    uint8_t type = pre_vote ? RAFT_MSG_PREVOTE : RAFT_MSG_VOTE;
    for (uint32_t i = 0; i < r->conf.n; i++) {
        const struct raft_member *mb = &r->conf.members[i];
        if (mb->role != RAFT_VOTER || mb->id == r->cfg.id) continue;
        struct raft_msg m = {.type = type,
                             .to = mb->id,
                             .term = vote_term,
                             .index = log_last(&r->log),
                             .log_term = log_last_term(&r->log),
                             .context = forced ? RAFT_CONTEXT_TRANSFER : 0};
        /* A VOTE request implies our new term and self-vote: it must not leave
         * before they are durable, or a crash could let us vote twice. */
        raft_send(r, &m, !pre_vote);
    }
}

int election_step_vote(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE;
    /* Thesis 4.1: "servers process incoming RPC requests without consulting
     * their current configurations" -- a voter promoted by an entry this node
     * has not received yet must still be able to vote. A learner's vote never
     * counts: candidates tally only voters of their own configuration. */
    bool can_vote = r->vote == m->from || (r->vote == RAFT_NONE && r->leader == RAFT_NONE) ||
                    (pre && m->term > r->term);
    /* Thesis 9.6: grant a pre-vote only if we have not heard from a leader
     * within the election timeout. */
    if (pre && m->context != RAFT_CONTEXT_TRANSFER && r->leader != RAFT_NONE &&
        r->election_elapsed < r->cfg.election_ticks)
        can_vote = false;
    if (pre && r->role == RAFT_LEADER) can_vote = false;
    bool grant = can_vote && log_is_up_to_date(&r->log, m->index, m->log_term);
    struct raft_msg resp = {.type = pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP,
                            .to = m->from,
                            .term = grant ? m->term : r->term,
                            .reject = !grant};
    if (grant && !pre) {
        r->vote = m->from;
        r->election_elapsed = 0;
    }
    /* A granted vote depends on the vote being durable (hard state of this
     * ready); the pre-vote answer is kept with it for simplicity. */
    raft_send(r, &resp, grant);
    return 0;
}

int election_step_vote_resp(struct raft *r, const struct raft_msg *m)
{
    bool pre = m->type == RAFT_MSG_PREVOTE_RESP;
    if (pre ? r->role != RAFT_PRE_CANDIDATE : r->role != RAFT_CANDIDATE) return 0; /* late answer */
    raft_term expect = pre && !m->reject ? r->term + 1 : r->term;
    if (m->term != expect) return 0;
    if (!raft_is_voter(r, m->from)) return ST_EPROTO;
    record_vote(r, m->from, !m->reject);
    /* A vote granted means our VOTE request left, which it did only after
     * our term and self-vote were durable. */
    if (!pre && !m->reject) r->term_durable = true;
    switch (tally(r)) {
    case 1:
        if (pre)
            election_campaign(r, false, false);
        else
            raft_become_leader(r);
        break;
    case -1:
        raft_become_follower(r, r->term, RAFT_NONE);
        break;
    default:
        break;
    }
    return 0;
}
