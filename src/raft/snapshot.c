/* Snapshots and log compaction (thesis chapter 5). The bytes are the
 * application's: the core records what a snapshot covers (index, term and
 * the configuration as of index, DESIGN §3.3) and tells a lagging follower
 * to install one when the entries it needs were compacted away.
 */
#include "raft/raft_int.h"

raft_index raft_snapshot_taken(struct raft *r, raft_index index)
{
    struct raft_log *l = &r->log;
    if (index > l->applied || index < l->prev_index || index > log_last(l) ||
        (r->has_snapshot && index <= r->snap.index))
        return log_first(l);
    r->snap.index = index;
    r->snap.term = log_term_or0(l, index);
    membership_conf_at(r, index, &r->snap.conf);
    r->has_snapshot = true;
    /* Keep trailing_entries behind the snapshot so a follower that lags a
     * little catches up from the log instead of a snapshot (DESIGN §3.7),
     * but no more than trailing_bytes of payload: the entries up to index
     * are applied and durable, and held only for such followers. */
    raft_index keep_from = index > r->cfg.trailing_entries ? index - r->cfg.trailing_entries : 0;
    if (r->cfg.trailing_bytes) {
        uint64_t bytes = 0;
        raft_index k = index; /* entries (k, index] are kept */
        while (k > keep_from && k > l->prev_index) {
            const struct raft_entry *e = log_get(l, k);
            if (bytes + e->len > r->cfg.trailing_bytes) break;
            bytes += e->len;
            k--;
        }
        if (k > keep_from) keep_from = k;
    }
    if (keep_from > l->prev_index) {
        struct raft_conf base;
        membership_conf_at(r, keep_from, &base);
        r->base_conf = base;
        log_compact_to(l, keep_from);
        if (r->conf_index <= keep_from) r->conf_index = 0;
    }
    return log_first(l);
}

bool snapshot_send(struct raft *r, struct raft_progress *p)
{
    ST_ASSERT(r->has_snapshot);
    struct raft_msg m = {.type = RAFT_MSG_SNAPSHOT,
                         .to = p->id,
                         .term = r->term,
                         .index = r->snap.index,
                         .log_term = r->snap.term,
                         .commit = r->log.commit,
                         .snapshot = &r->snap};
    /* Only a snapshot actually handed to the transport waits for its
     * outcome; out of memory, the next heartbeat answer retries. */
    if (!raft_send(r, &m, false)) return false;
    progress_to_snapshot(p, r->snap.index);
    return true;
}

int snapshot_step(struct raft *r, const struct raft_msg *m)
{
    const struct raft_snapshot_meta *s = m->snapshot;
    struct raft_log *l = &r->log;
    struct raft_msg resp = {.type = RAFT_MSG_APPEND_RESP, .to = m->from, .term = r->term};
    if (s->index <= l->commit) {
        /* Already covered by our committed log. */
        resp.index = l->commit;
        raft_send(r, &resp, true);
        return 0;
    }
    if (log_match_term(l, s->index, s->term)) {
        /* We hold the entry the snapshot ends with: our log up to there is
         * the leader's (Log Matching). Just fast-forward commit. */
        replication_commit_to(r, s->index);
        resp.index = s->index;
        raft_send(r, &resp, true);
        return 0;
    }
    /* Discard the whole log and adopt the snapshot, with its configuration
     * (thesis 5.2: "the follower discards its entire log; it is all
     * superseded by the snapshot"). */
    log_reset(l, s->index, s->term);
    l->commit = s->index;
    l->applying = s->index;
    l->handed = s->index; /* the ready carrying the snapshot persists it */
    l->stable = ST_MIN(l->stable, s->index - 1);
    r->has_snapshot = true;
    r->snap = *s;
    r->snap_to_install = true;
    r->base_conf = s->conf;
    membership_rebuild(r);
    resp.index = s->index;
    raft_send(r, &resp, true);
    return 0;
}

void raft_report_snapshot(struct raft *r, raft_id peer, bool ok)
{
    if (r->role != RAFT_LEADER) return;
    struct raft_progress *p = raft_progress_find(r, peer);
    if (!p || p->state != RAFT_PROGRESS_SNAPSHOT) return;
    if (!ok) p->pending_snapshot = 0;
    /* Either way wait for the follower's answer or the next heartbeat before
     * probing again (etcd: MsgAppFlowPaused). */
    progress_to_probe(p);
    p->probe_sent = true;
}
