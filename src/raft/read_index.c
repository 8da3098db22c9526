/* Linearizable reads without log writes (thesis 6.4, ReadIndex):
 *   1. the leader must have committed an entry of its term (its no-op);
 *   2. it records read_index = commit;
 *   3. it confirms it is still the leader with a round of heartbeats sent
 *      AFTER the read arrived, acknowledged by a quorum of voters;
 *   4. the read is served once applied >= read_index.
 * Every heartbeat broadcast is a numbered round; reads that arrive while a
 * round is in flight wait for the next one, so one round serves every read
 * that arrived before it was sent (batching).
 *
 * Lease reads (thesis 6.4.1) skip step 3 while the leader heard from a quorum
 * in a round sent less than election_ticks ago: with check-quorum no other
 * leader can be elected before then, assuming bounded clock drift.
 */
#include "raft/quorum.h"
#include "raft/raft_int.h"

#include <stdlib.h>

static void read_push(struct raft *r, const struct raft_read *rd)
{
    ST_ASSERT(r->n_reads < r->cfg.reads_pending_max);
    r->reads[r->n_reads++] = *rd;
}

static bool reads_full(const struct raft *r)
{
    return r->n_reads + r->out[r->fill].n_reads >= r->cfg.reads_pending_max;
}

static bool single_voter(const struct raft *r)
{
    return raft_conf_voters(&r->conf) == 1 && raft_is_voter(r, r->cfg.id);
}

static void release(struct raft *r, const struct raft_read *rd, raft_index index, int status)
{
    if (rd->from == RAFT_NONE) {
        raft_out_read(r, rd->context, index, status);
        return;
    }
    struct raft_msg m = {.type = RAFT_MSG_READ_INDEX_RESP,
                         .to = rd->from,
                         .term = r->term,
                         .index = status == 0 ? index : 0,
                         .reject = status != 0,
                         .context = rd->context};
    raft_send(r, &m, false);
    if (status == 0) r->stats.reads_served++;
}

/* The newest round a quorum of voters acknowledged (0: none). */
static uint64_t quorum_round(const struct raft *r)
{
    uint64_t v[RAFT_MEMBERS_MAX];
    size_t n = 0;
    for (uint32_t i = 0; i < r->n_prs; i++) {
        const struct raft_progress *p = &r->prs[i];
        if (!raft_is_voter(r, p->id)) continue;
        v[n++] = p->id == r->cfg.id ? r->round : p->acked_round;
    }
    return quorum_index(v, n, raft_quorum(r));
}

uint64_t read_index_start_round(struct raft *r)
{
    r->round++;
    r->round_tick[r->round % ST_ARRAY_LEN(r->round_tick)] = r->ticks;
    /* Reads that were waiting for a round sent after their arrival get it. */
    for (size_t i = 0; i < r->n_reads; i++)
        if (r->reads[i].round == 0 && r->reads[i].index != 0) r->reads[i].round = r->round;
    return r->round;
}

bool read_index_lease_valid(const struct raft *r)
{
    /* A transfer we started makes voters ignore the lease (forced campaign). */
    if (r->lease_revoked || r->transferee != RAFT_NONE) return false;
    uint64_t q = quorum_round(r);
    if (q == 0 || r->round - q >= ST_ARRAY_LEN(r->round_tick)) return false;
    /* The quorum acknowledged a round sent at round_tick: none of them grants
     * a vote before election_ticks after receiving it. */
    return r->round_tick[q % ST_ARRAY_LEN(r->round_tick)] + r->cfg.election_ticks > r->ticks;
}

/* Releases the reads whose round a quorum confirmed, in arrival order. */
static void release_confirmed(struct raft *r)
{
    uint64_t q = quorum_round(r);
    size_t k = 0;
    for (size_t i = 0; i < r->n_reads; i++) {
        struct raft_read *rd = &r->reads[i];
        if (rd->index != 0 && rd->round != 0 && rd->round <= q)
            release(r, rd, rd->index, 0);
        else
            r->reads[k++] = *rd;
    }
    r->n_reads = k;
}

void read_index_on_round_ack(struct raft *r)
{
    release_confirmed(r);
}

static bool in_flight(const struct raft *r)
{
    return quorum_round(r) < r->round;
}

bool read_index_round_wanted(const struct raft *r)
{
    if (r->role != RAFT_LEADER) return false;
    bool waiting = false;
    for (size_t i = 0; i < r->n_reads; i++)
        waiting = waiting || (r->reads[i].round == 0 && r->reads[i].index != 0);
    /* One round at a time: reads arriving while a round is in flight wait
     * for the next one (started when it completes, or at the next tick). */
    return waiting && !in_flight(r);
}

void read_index_flush(struct raft *r)
{
    if (read_index_round_wanted(r)) replication_bcast_heartbeat(r);
}

static void admit(struct raft *r, uint64_t context, raft_id from, bool lease)
{
    struct raft_read rd = {.context = context, .from = from, .tick = r->ticks, .lease = lease};
    if (!replication_committed_in_term(r)) {
        read_push(r, &rd); /* index assigned when the no-op commits */
        return;
    }
    rd.index = r->log.commit;
    if (single_voter(r) || (lease && read_index_lease_valid(r))) {
        release(r, &rd, rd.index, 0);
        return;
    }
    read_push(r, &rd);
}

int raft_read_index(struct raft *r, uint64_t context, enum raft_read_mode mode)
{
    if (reads_full(r)) return ST_EBUSY;
    bool lease = mode == RAFT_READ_LEASE && r->cfg.lease_reads && r->cfg.check_quorum;
    if (r->role == RAFT_LEADER) {
        admit(r, context, RAFT_NONE, lease);
        return 0;
    }
    if (r->role != RAFT_FOLLOWER || r->leader == RAFT_NONE) return ST_ENOTLEADER;
    struct raft_read rd = {.context = context, .tick = r->ticks};
    read_push(r, &rd);
    struct raft_msg m = {
        .type = RAFT_MSG_READ_INDEX, .to = r->leader, .term = r->term, .context = context};
    raft_send(r, &m, false);
    return 0;
}

int read_index_step_request(struct raft *r, const struct raft_msg *m)
{
    if (reads_full(r)) {
        struct raft_read rd = {.context = m->context, .from = m->from};
        release(r, &rd, 0, ST_EBUSY);
        return 0;
    }
    admit(r, m->context, m->from, false);
    return 0;
}

int read_index_step_resp(struct raft *r, const struct raft_msg *m)
{
    if (r->role != RAFT_FOLLOWER || m->from != r->leader) return 0;
    for (size_t i = 0; i < r->n_reads; i++) {
        if (r->reads[i].from != RAFT_NONE || r->reads[i].context != m->context) continue;
        struct raft_read rd = r->reads[i];
        for (size_t j = i + 1; j < r->n_reads; j++)
            r->reads[j - 1] = r->reads[j];
        r->n_reads--;
        release(r, &rd, m->index, m->reject ? ST_ENOTLEADER : 0);
        return 0;
    }
    return 0; /* unknown or already failed context */
}

void read_index_on_term_commit(struct raft *r)
{
    for (size_t i = 0; i < r->n_reads; i++) {
        if (r->reads[i].index == 0) {
            r->reads[i].index = r->log.commit;
            r->reads[i].round = 0;
        }
    }
    if (single_voter(r)) {
        for (size_t i = 0; i < r->n_reads; i++)
            release(r, &r->reads[i], r->reads[i].index, 0);
        r->n_reads = 0;
    }
}

void read_index_fail_all(struct raft *r, int status)
{
    for (size_t i = 0; i < r->n_reads; i++)
        release(r, &r->reads[i], 0, status);
    r->n_reads = 0;
}

void read_index_tick(struct raft *r)
{
    /* A read whose answer was lost must not wait forever. */
    uint64_t limit = 2 * (uint64_t)r->cfg.election_ticks;
    size_t k = 0;
    for (size_t i = 0; i < r->n_reads; i++) {
        struct raft_read *rd = &r->reads[i];
        if (r->ticks - rd->tick >= limit)
            release(r, rd, 0, ST_ETIMEDOUT);
        else
            r->reads[k++] = *rd;
    }
    r->n_reads = k;
}
