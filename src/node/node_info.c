/* Inspection of a running node: info, state digest, readiness and health.
 */
#include "node/node.h"

#include "node/node_int.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MOD "node"

/* ---------------------------------------------------------------- info */

uint64_t node_log_clock_ms(const struct node *n)
{
    return n->kv ? kv_clock_ms(n->kv) : 0;
}

void node_info_get(const struct node *n, struct node_info *out)
{
    memset(out, 0, sizeof *out);
    out->id = n->cfg.id;
    out->cluster_id = n->cluster_id;
    out->started = n->started;
    out->stopping = n->stopping;
    if (!n->raft) return;
    out->leader = n->leader;
    out->role = n->role;
    out->term = raft_term_get(n->raft);
    out->commit = raft_commit_index(n->raft);
    out->applied = n->applied;
    out->first_index = raft_first_index(n->raft);
    out->last_index = raft_last_index(n->raft);
    out->snapshot_index = n->snapshot_index;
    out->snapshotting = n->snap_active || n->snap_commit;
    out->alarm_nospace = n->nospace;
    out->memory_trims = n->m.memory_trims;
    out->used_memory = node_memory_used(n);
    out->max_memory = n->cfg.max_memory;
    out->log_clock_ms = n->kv ? kv_clock_ms(n->kv) : 0;
    out->wall_clock_ms = node_wall_ms();
    if (n->kv) {
        struct kv_stats ks;
        kv_stats(n->kv, &ks);
        out->keys = ks.keys;
        out->keys_with_ttl = ks.keys_with_ttl;
    }
    const struct raft_conf *conf = raft_conf_get(n->raft);
    for (uint32_t i = 0; i < conf->n && i < RAFT_MEMBERS_MAX; i++) {
        const struct raft_member *m = &conf->members[i];
        struct node_member_info *mi = &out->members[out->n_members++];
        mi->id = m->id;
        mi->voter = m->role == RAFT_VOTER;
        node_member_addrs(m, mi->raft, mi->http);
        if (m->id == n->cfg.id && !mi->http[0])
            snprintf(mi->http, sizeof mi->http, "%s", n->advertise_http);
        if (m->id == n->leader) snprintf(out->leader_http, sizeof out->leader_http, "%s", mi->http);
    }
    if (n->leader && !out->leader_http[0]) {
        for (uint32_t i = 0; i < n->n_seed_peers; i++)
            if (n->seed_peers[i].id == n->leader)
                snprintf(out->leader_http, sizeof out->leader_http, "%s", n->seed_peers[i].http);
        for (uint32_t i = 0; i < n->cfg.n_peers; i++)
            if (n->cfg.peers[i].id == n->leader && n->cfg.peers[i].http[0])
                snprintf(out->leader_http, sizeof out->leader_http, "%s", n->cfg.peers[i].http);
    }
}

uint64_t node_state_digest(const struct node *n, raft_index *applied)
{
    *applied = n->applied;
    return n->kv ? kv_digest(n->kv) : 0;
}

const char *node_unready_reason(const struct node *n)
{
    if (n->fatal) return "storage_failed";
    if (n->stopping) return "stopping";
    if (n->nospace) return "no_space";
    if (!n->running) return "starting";
    if (n->leader == RAFT_NONE) return "no_leader";
    raft_index commit = raft_commit_index(n->raft);
    if (n->applied + NODE_READY_LAG_ENTRIES_MAX < commit) return "catching_up";
    return NULL;
}

bool node_healthy(const struct node *n)
{
    return node_unready_reason(n) == NULL;
}

raft_index node_recovered_commit(const struct node *n)
{
    return n->recovered_commit;
}

bool node_live(const struct node *n)
{
    return !n->fatal;
}

const struct node_config *node_config_get(const struct node *n)
{
    return &n->cfg;
}

uint64_t node_cluster_id(const struct node *n)
{
    return n->cluster_id;
}
