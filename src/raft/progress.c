/* Per-follower replication progress (etcd's tracker.Progress):
 *
 *   PROBE      one append per heartbeat interval until the follower answers;
 *              next is walked back with the conflict hints.
 *   REPLICATE  pipelined: next is optimistic (last sent + 1) and at most
 *              inflight_msgs_max appends are in flight.
 *   SNAPSHOT   nothing is sent until the snapshot lands (an APPEND_RESP at
 *              >= pending_snapshot) or raft_report_snapshot() says it failed.
 *
 *   PROBE --ack--> REPLICATE --reject/unreachable--> PROBE
 *   PROBE/REPLICATE --next compacted--> SNAPSHOT --ack/report--> PROBE
 */
#include "raft/raft_int.h"

#include <string.h>

void progress_reset(struct raft_progress *p, raft_id id, raft_index next, raft_index *ins_buf,
                    uint32_t ins_cap)
{
    memset(p, 0, sizeof(*p));
    p->id = id;
    p->next = next;
    p->state = RAFT_PROGRESS_PROBE;
    p->ins.buf = ins_buf;
    p->ins.cap = ins_cap;
}

static void inflights_reset(struct raft_inflights *in)
{
    in->start = 0;
    in->count = 0;
}

bool inflights_full(const struct raft_inflights *in)
{
    return in->count >= in->cap;
}

static void inflights_add(struct raft_inflights *in, raft_index last)
{
    ST_ASSERT(in->count < in->cap);
    in->buf[(in->start + in->count) % in->cap] = last;
    in->count++;
}

void inflights_free_to(struct raft_inflights *in, raft_index index)
{
    while (in->count > 0 && in->buf[in->start] <= index) {
        in->start = (in->start + 1) % in->cap;
        in->count--;
    }
}

void inflights_free_first(struct raft_inflights *in)
{
    if (in->count == 0) return;
    in->start = (in->start + 1) % in->cap;
    in->count--;
}

void progress_to_probe(struct raft_progress *p)
{
    /* After a snapshot the follower holds at least pending_snapshot. */
    if (p->state == RAFT_PROGRESS_SNAPSHOT)
        p->next = ST_MAX(p->match + 1, p->pending_snapshot + 1);
    else
        p->next = p->match + 1;
    p->state = RAFT_PROGRESS_PROBE;
    p->probe_sent = false;
    p->pending_snapshot = 0;
    inflights_reset(&p->ins);
}

void progress_to_replicate(struct raft_progress *p)
{
    p->state = RAFT_PROGRESS_REPLICATE;
    p->next = p->match + 1;
    p->probe_sent = false;
    p->pending_snapshot = 0;
    inflights_reset(&p->ins);
}

void progress_to_snapshot(struct raft_progress *p, raft_index snap_index)
{
    p->state = RAFT_PROGRESS_SNAPSHOT;
    p->pending_snapshot = snap_index;
    p->probe_sent = false;
    inflights_reset(&p->ins);
}

bool progress_update(struct raft_progress *p, raft_index index)
{
    bool moved = false;
    if (index > p->match) {
        p->match = index;
        moved = true;
        p->probe_sent = false;
    }
    if (p->next < index + 1) p->next = index + 1;
    return moved;
}

bool progress_decr_to(struct raft_progress *p, raft_index rejected, raft_index probe_next)
{
    if (p->state == RAFT_PROGRESS_REPLICATE) {
        /* A rejection of something already matched is stale. */
        if (rejected <= p->match) return false;
        p->next = p->match + 1;
        return true;
    }
    /* Probe: only the answer to the probe we sent (next - 1) counts, and a
     * rejection at or below match contradicts what the follower acknowledged
     * (only possible with a follower that lost acknowledged entries): ignore
     * it rather than resend the same probe in a hot loop; the next heartbeat
     * answer retries. */
    if (p->next == 0 || p->next - 1 != rejected || rejected <= p->match) return false;
    raft_index next = ST_MIN(rejected, probe_next);
    p->next = ST_MAX(next, p->match + 1);
    if (p->next < 1) p->next = 1;
    p->probe_sent = false;
    return true;
}

bool progress_paused(const struct raft_progress *p)
{
    switch (p->state) {
    case RAFT_PROGRESS_PROBE:
        return p->probe_sent;
    case RAFT_PROGRESS_REPLICATE:
        return inflights_full(&p->ins);
    default:
        return true;
    }
}

void progress_sent(struct raft_progress *p, raft_index last_sent, bool has_entries)
{
    if (p->state == RAFT_PROGRESS_REPLICATE) {
        /* Only appends carrying entries occupy the window: an empty one
         * (commit propagation) asks for nothing back that frees a slot. */
        if (has_entries) {
            p->next = last_sent + 1;
            inflights_add(&p->ins, last_sent);
        }
    } else if (p->state == RAFT_PROGRESS_PROBE) {
        p->probe_sent = true;
    }
}
