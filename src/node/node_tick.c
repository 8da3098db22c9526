/* Ticks: the core's clock, promotion of caught-up learners, the idle hard
 * state flush, snapshot and memory housekeeping, waiter expiry. */
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

/* --------------------------------------------------------------- ticks */

/* Called every tick on the leader: the core clears recent_active once per
 * election timeout, so a check on a fixed period could always land right
 * after the reset. Cheap when there are no learners. */
static void promote_learners(struct node *n)
{
    const struct raft_conf *conf = raft_conf_get(n->raft);
    bool any = false;
    for (uint32_t i = 0; i < conf->n && !any; i++)
        any = conf->members[i].role == RAFT_LEARNER;
    if (!any) return;
    struct raft_progress_info prog[RAFT_MEMBERS_MAX];
    size_t np = raft_progress_get(n->raft, prog, RAFT_MEMBERS_MAX);
    raft_index commit = raft_commit_index(n->raft);
    for (uint32_t i = 0; i < conf->n; i++) {
        const struct raft_member *m = &conf->members[i];
        if (m->role != RAFT_LEARNER) continue;
        for (size_t k = 0; k < np; k++) {
            if (prog[k].id != m->id) continue;
            /* Caught up: replicating (not probing or receiving a snapshot),
             * heard from recently, and close to the commit index. */
            if (!prog[k].recent_active || prog[k].state != RAFT_PROGRESS_REPLICATE ||
                prog[k].match == 0 || prog[k].match + n->cfg.promote_lag_entries < commit)
                break;
            struct raft_conf_change cc;
            memset(&cc, 0, sizeof cc);
            cc.op = RAFT_CONF_ADD_VOTER;
            cc.id = m->id;
            cc.context_len = m->context_len;
            memcpy(cc.context, m->context, m->context_len);
            raft_index idx = 0;
            int rc = raft_propose_conf_change(n->raft, &cc, &idx);
            if (rc != 0)
                ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": promoting learner %" PRIu64 ": %s",
                               n->cfg.id, m->id, st_strerror(rc));
            if (rc == 0) {
                n->m.learners_promoted++;
                ST_TRACE_INFO(MOD,
                              "node %" PRIu64 ": promoting learner %" PRIu64 " (match %" PRIu64
                              ", commit %" PRIu64 ") at index %" PRIu64,
                              n->cfg.id, m->id, prog[k].match, commit, idx);
            }
            return; /* one change at a time */
        }
    }
}

/* Writes a commit index the WAL lacks once the log has been quiet for a
 * while (a busy log carries it with its next batch). */
static void hard_state_flush_idle(struct node *n)
{
    if (memcmp(&n->hs_cur, &n->hs_written, sizeof n->hs_cur) == 0) return;
    if (++n->hs_idle_ticks < NODE_HS_IDLE_TICKS || n->persist_inflight || n->nospace) return;
    node_hard_state_flush(n);
}

void node_hard_state_flush(struct node *n)
{
    if (memcmp(&n->hs_cur, &n->hs_written, sizeof n->hs_cur) == 0 || !n->writer || n->nospace ||
        n->fatal)
        return;
    struct node_persist *p = node_persist_get(n);
    if (!p) return; /* out of memory: try again next tick */
    struct st_log_batch b;
    memset(&b, 0, sizeof b);
    b.hard_state = &n->hs_cur;
    p->submit_us = node_now_us();
    int rc = node_persist_write(n, p, &b, false);
    if (rc) {
        node_persist_release(n, p);
        if (rc != ST_EBUSY) node_fatal(n, rc, "cannot queue a WAL write");
        return;
    }
    n->m.write_batches++;
    n->hs_written = n->hs_cur;
    n->hs_idle_ticks = 0;
    node_persist_enqueue(n, p);
}

void node_tick_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    if (!n->running || n->stopping || n->fatal) return;
    raft_tick(n->raft);
    n->ticks++;
    hard_state_flush_idle(n);
    node_memory_trim_maybe(n);
    if (n->ticks % 64 == 0) node_memory_tick(n);
    uint64_t now = node_now_us();
    node_waiters_expire(n, now);
    node_watch_tick(n);
    if (!st_list_empty(&n->admin_retry)) node_client_retry_admin(n);
    node_auth_tick(n);
    node_session_tick(n);
    if (n->role == RAFT_LEADER) {
        promote_learners(n);
        if (n->purge_more || now - n->last_purge_us >= (uint64_t)n->cfg.purge_interval_ms * 1000u) {
            n->last_purge_us = now;
            n->purge_more = false;
            node_propose_purge(n);
        }
    }
    if (n->cfg.snapshot_interval_s &&
        now - n->last_snapshot_us >= (uint64_t)n->cfg.snapshot_interval_s * 1000000u) {
        n->last_snapshot_us = now;
        node_snapshot_maybe(n, true);
    }
}
