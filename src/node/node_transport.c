/* Transport glue: the transport's peers follow the configuration (plus the
 * join seeds), and the transport's callbacks feed messages, peer state and
 * snapshot streams into the core. */
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

/* ------------------------------------------------------------ conf/peers */

void node_member_addrs(const struct raft_member *m, char *raft_addr, char *http_addr)
{
    node_context_parse(m->context, m->context_len, raft_addr, http_addr);
}

static bool want_peer(const struct node *n, raft_id id, char *addr)
{
    const struct raft_conf *confs[2] = {raft_conf_get(n->raft), &n->conf_applied};
    char http[NODE_ADDR_MAX];
    for (int c = 0; c < 2; c++) {
        const struct raft_member *m = raft_conf_find(confs[c], id);
        if (m) {
            node_member_addrs(m, addr, http);
            return addr[0] != '\0';
        }
    }
    for (uint32_t i = 0; i < n->n_seed_peers; i++) {
        if (n->seed_peers[i].id == id) {
            snprintf(addr, NODE_ADDR_MAX, "%s", n->seed_peers[i].raft);
            return true;
        }
    }
    return false;
}

/* Makes the transport's peer set equal to the members of the current and
 * the applied configuration (plus join-reply seeds), with their addresses. */
void node_reconcile_peers(struct node *n)
{
    n->conf_dirty = false;
    if (!n->tr || !n->raft) return;
    char addr[NODE_ADDR_MAX];
    /* Remove peers no longer wanted or whose address changed. */
    for (uint32_t i = 0; i < n->n_tr_peers;) {
        struct node_peer_addr *p = &n->tr_peers[i];
        if (want_peer(n, p->id, addr) && strcmp(addr, p->raft) == 0) {
            i++;
            continue;
        }
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": transport peer %" PRIu64 " (%s) removed", n->cfg.id,
                      p->id, p->raft);
        tr_peer_remove(n->tr, p->id);
        n->tr_peers[i] = n->tr_peers[--n->n_tr_peers];
    }
    /* Add the missing ones. */
    raft_id ids[3 * RAFT_MEMBERS_MAX];
    size_t n_ids = 0;
    const struct raft_conf *confs[2] = {raft_conf_get(n->raft), &n->conf_applied};
    for (int c = 0; c < 2; c++)
        for (uint32_t i = 0; i < confs[c]->n; i++)
            ids[n_ids++] = confs[c]->members[i].id;
    for (uint32_t i = 0; i < n->n_seed_peers; i++)
        ids[n_ids++] = n->seed_peers[i].id;
    for (size_t k = 0; k < n_ids; k++) {
        raft_id id = ids[k];
        if (id == n->cfg.id) continue;
        bool have = false;
        for (uint32_t i = 0; i < n->n_tr_peers && !have; i++)
            have = n->tr_peers[i].id == id;
        if (have || !want_peer(n, id, addr) || n->n_tr_peers == RAFT_MEMBERS_MAX) continue;
        int rc = tr_peer_add(n->tr, id, addr);
        if (rc != 0 && rc != ST_EEXIST) {
            ST_TRACE_WARN(MOD, "node %" PRIu64 ": cannot add transport peer %" PRIu64 " at %s: %s",
                          n->cfg.id, id, addr, st_strerror(rc));
            continue;
        }
        ST_TRACE_INFO(MOD, "node %" PRIu64 ": transport peer %" PRIu64 " at %s", n->cfg.id, id,
                      addr);
        n->tr_peers[n->n_tr_peers].id = id;
        snprintf(n->tr_peers[n->n_tr_peers].raft, NODE_ADDR_MAX, "%s", addr);
        n->tr_peers[n->n_tr_peers].http[0] = '\0';
        n->n_tr_peers++;
    }
}

/* ------------------------------------------------------------ transport */

void node_tr_msg_cb(void *ctx, raft_id from, const struct raft_msg *msg)
{
    struct node *n = ctx;
    if (!n->running || n->stopping || n->fatal) return;
    if (msg->type == RAFT_MSG_SNAPSHOT && msg->snapshot && node_install_begin(n, from, msg)) return;
    /* While a snapshot loads the core's log ends before it: an append would
     * be rejected and make the leader send the snapshot again. Heartbeats
     * are still answered (the leader keeps its quorum). */
    if (msg->type == RAFT_MSG_APPEND && n->install && !n->install->loaded) return;
    if (msg->type == RAFT_MSG_PROPOSE) node_restamp_forwarded(n, msg);
    int rc = msg->type == RAFT_MSG_PROPOSE ? node_memory_step_forwarded(n, msg)
                                           : raft_step(n->raft, msg);
    if (rc && rc != ST_ESTALE)
        ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": %s from %" PRIu64 " dropped: %s", n->cfg.id,
                       raft_msg_type_name(msg->type), from, st_strerror(rc));
}

void node_tr_peer_state_cb(void *ctx, raft_id peer, bool connected)
{
    struct node *n = ctx;
    ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": peer %" PRIu64 " %s", n->cfg.id, peer,
                   connected ? "connected" : "disconnected");
}

void node_tr_send_failed_cb(void *ctx, raft_id peer, uint8_t type, int status)
{
    struct node *n = ctx;
    (void)type;
    (void)status;
    if (n->running && !n->stopping) raft_report_unreachable(n->raft, peer);
}

int node_tr_snap_begin_cb(void *ctx, raft_id from, const struct raft_msg *msg, uint64_t size)
{
    struct node *n = ctx;
    if (!n->running || n->stopping || n->fatal || !msg->snapshot) return ST_ECLOSED;
    if (size > n->cfg.snapshot_recv_bytes_max) {
        ST_TRACE_ERROR(MOD,
                       "node %" PRIu64 ": snapshot %" PRIu64 " from %" PRIu64 " refused: %" PRIu64
                       " bytes announced, more than --snapshot-recv-bytes-max %" PRIu64,
                       n->cfg.id, msg->snapshot->index, from, size, n->cfg.snapshot_recv_bytes_max);
        return ST_ETOOBIG;
    }
    struct statvfs sv;
    if (!n->cfg.fs && statvfs(n->cfg.data_dir, &sv) == 0) {
        uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
        if (size + NODE_SNAPSHOT_DISK_MARGIN_BYTES > avail) {
            ST_TRACE_ERROR(MOD,
                           "node %" PRIu64 ": snapshot %" PRIu64 " from %" PRIu64
                           " refused: %" PRIu64 " bytes announced, %" PRIu64
                           " bytes free in %s",
                           n->cfg.id, msg->snapshot->index, from, size, avail, n->cfg.data_dir);
            return ST_ENOSPC;
        }
    }
    /* Not while the same (or a newer) snapshot is being loaded: the leader
     * asks again once it is installed, if it still needs to. */
    if (n->install && !n->install->loaded && msg->snapshot->index <= n->install->meta.index)
        return ST_EBUSY;
    if (n->snap_in) {
        st_snap_write_abort(n->snap_in);
        n->snap_in = NULL;
    }
    int rc = st_snap_write_begin(n->storage->snaps, &n->snap_in);
    if (rc) return rc;
    n->snap_in_from = from;
    n->snap_in_meta = *msg->snapshot;
    ST_TRACE_INFO(
        MOD, "node %" PRIu64 ": receiving snapshot %" PRIu64 " (%" PRIu64 " bytes) from %" PRIu64,
        n->cfg.id, msg->snapshot->index, size, from);
    return 0;
}

int node_tr_snap_chunk_cb(void *ctx, raft_id from, uint64_t offset, const uint8_t *data,
                            size_t len)
{
    struct node *n = ctx;
    (void)offset;
    if (!n->snap_in || n->snap_in_from != from) return ST_EINVAL;
    return st_snap_write(n->snap_in, data, len);
}

int node_tr_snap_end_cb(void *ctx, raft_id from, int status)
{
    struct node *n = ctx;
    if (!n->snap_in || n->snap_in_from != from) return ST_EINVAL;
    struct st_snap_writer *w = n->snap_in;
    n->snap_in = NULL;
    if (status != 0) {
        st_snap_write_abort(w);
        ST_TRACE_WARN(MOD, "node %" PRIu64 ": snapshot from %" PRIu64 " aborted: %s", n->cfg.id,
                      from, st_strerror(status));
        return status;
    }
    struct st_snapshot_info info;
    int rc = st_snap_write_commit(w, &n->snap_in_meta, &info);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot from %" PRIu64 " not stored: %s", n->cfg.id,
                       from, st_strerror(rc));
        return rc;
    }
    if (n->snap_in_rd) st_snap_read_close(n->snap_in_rd);
    rc = st_snap_read_open(n->storage->snaps, info.meta.index, &n->snap_in_rd,
                           &n->snap_in_rd_info);
    if (rc) {
        n->snap_in_rd = NULL;
        ST_TRACE_WARN(MOD,
                      "node %" PRIu64 ": snapshot from %" PRIu64
                      " stored but cannot be opened (%s): refused, the leader sends it again",
                      n->cfg.id, from, st_strerror(rc));
    }
    return rc;
}

void node_tr_snap_sent_cb(void *ctx, raft_id to, int status)
{
    struct node *n = ctx;
    if (!n->running || n->stopping) return;
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": snapshot to %" PRIu64 ": %s", n->cfg.id, to,
                  status == 0 ? "stored" : st_strerror(status));
    raft_report_snapshot(n->raft, to, status == 0);
}
