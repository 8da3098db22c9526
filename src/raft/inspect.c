/* Read-only accessors: identity, role, term, indexes, configuration,
 * snapshot, log entries, progress and statistics. None changes the core.
 */
#include "raft/raft_int.h"

#include <stdlib.h>
#include <string.h>

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
