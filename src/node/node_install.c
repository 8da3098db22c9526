/* Installing snapshots: loading a stored snapshot into a new kv (at start,
 * or off the loop for one the leader sent), adopting it in place of the
 * current kv (whose destruction also runs off the loop). */
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

/* Loads the stored snapshot at `index` into a new kv (*out, the caller's),
 * through rd when the caller opened it already (consumed; pre_info is its
 * info), else opening it. Touches neither the node nor its kv: runs on the
 * threadpool for a leader's snapshot, on the loop at start. */
static int kv_load_snapshot(const struct kv_config *kc, struct st_snap_store *snaps,
                            raft_index index, struct st_snap_reader *rd,
                            const struct st_snapshot_info *pre_info, struct kv **out,
                            struct st_snapshot_info *info, uint64_t *keys)
{
    int rc = 0;
    if (rd)
        *info = *pre_info;
    else
        rc = st_snap_read_open(snaps, index, &rd, info);
    if (rc) return rc;
    struct kv *kv;
    rc = kv_create(kc, &kv);
    if (rc) {
        st_snap_read_close(rd);
        return rc;
    }
    struct kv_restore *kr;
    rc = kv_restore_begin(kv, &kr);
    uint8_t *buf = rc ? NULL : malloc(NODE_SCRATCH_BYTES);
    if (rc == 0 && !buf) {
        kv_restore_abort(kr);
        rc = ST_ENOMEM;
    }
    if (rc) {
        kv_destroy(kv);
        st_snap_read_close(rd);
        return rc;
    }
    for (;;) {
        size_t got = 0;
        rc = st_snap_read(rd, buf, NODE_SCRATCH_BYTES, &got);
        if (rc || got == 0) break;
        rc = kv_restore_feed(kr, buf, got);
        if (rc) break;
    }
    free(buf);
    st_snap_read_close(rd);
    if (rc) {
        kv_restore_abort(kr);
        kv_destroy(kv);
        return rc;
    }
    struct kv_snapshot_info kinfo;
    rc = kv_restore_finish(kr, &kinfo);
    if (rc) {
        kv_destroy(kv);
        return rc;
    }
    free(kinfo.meta);
    *keys = kinfo.keys;
    *out = kv;
    return 0;
}

struct node_kv_free {
    uv_work_t work;
    struct node *n;
    struct kv *kv;
};

static void kv_free_work_cb(uv_work_t *req)
{
    struct node_kv_free *f = req->data;
    kv_destroy(f->kv);
}

static void kv_free_after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct node_kv_free *f = req->data;
    struct node *n = f->n;
    free(f);
    n->bg_pending--;
    if (n->stopping) node_stop_maybe_finish(n);
}

/* Frees a kv that nothing references any more on the threadpool: a large
 * state takes long to free (one free() per key). */
static void kv_destroy_later(struct node *n, struct kv *kv)
{
    struct node_kv_free *f = calloc(1, sizeof *f);
    if (f) {
        f->n = n;
        f->kv = kv;
        f->work.data = f;
        if (uv_queue_work(n->loop, &f->work, kv_free_work_cb, kv_free_after_cb) == 0) {
            n->bg_pending++;
            return;
        }
        free(f);
    }
    kv_destroy(kv);
}

/* Makes kv (loaded from the snapshot described by info) the node's state. */
void node_snapshot_adopt(struct node *n, struct kv *kv, const struct st_snapshot_info *info,
                         uint64_t keys)
{
    struct kv *old = n->kv;
    n->kv = kv;
    node_auth_invalidate(n); /* the auth cache was for the old kv's table */
    if (old) kv_destroy_later(n, old);
    n->applied = info->meta.index;
    n->applied_term = info->meta.term;
    node_watch_state_replaced(n, info->meta.index);
    n->conf_applied = info->meta.conf;
    n->snapshot_index = info->meta.index;
    n->applied_at_snapshot = info->meta.index;
    n->log_bytes_since_snapshot = 0;
    n->conf_dirty = true;
    node_memory_trim_schedule(n);
    ST_TRACE_INFO(MOD,
                  "node %" PRIu64 ": restored snapshot at index %" PRIu64 " (%" PRIu64 " keys)",
                  n->cfg.id, info->meta.index, keys);
}

/* Restores the kv from the stored snapshot at index, on the loop (at start,
 * and for a leader's snapshot that was not loaded ahead). */
int node_snapshot_restore(struct node *n, raft_index index)
{
    struct kv *kv = NULL;
    struct st_snapshot_info info;
    uint64_t keys = 0;
    struct st_snap_reader *rd = NULL;
    if (n->snap_in_rd && n->snap_in_rd_info.meta.index == index) {
        rd = n->snap_in_rd; /* opened when it was received */
        n->snap_in_rd = NULL;
    }
    int rc = kv_load_snapshot(&n->kv_cfg, n->storage->snaps, index, rd, &n->snap_in_rd_info, &kv,
                              &info, &keys);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": snapshot %" PRIu64 " restore failed: %s", n->cfg.id,
                       index, st_strerror(rc));
        return rc;
    }
    node_snapshot_adopt(n, kv, &info, keys);
    return 0;
}

/* ------------------------------------------- installing a snapshot off the loop
 *
 * A leader's snapshot arrives as a file (the transport stores it, fsynced,
 * before it hands over the RAFT_MSG_SNAPSHOT). Loading it into a kv takes
 * time proportional to the state, so the node holds the message, loads the
 * file into a NEW kv on the threadpool, and only then steps the message into
 * the core; the ready that installs the snapshot swaps the kvs (O(1)) and
 * the old one is freed on the threadpool. The loop keeps ticking, serving
 * reads from the old state and answering peers meanwhile. One load at a
 * time: another snapshot message while one loads is dropped (the leader
 * sends it again). */
void node_install_free(struct node *n)
{
    struct node_install *in = n->install;
    n->install = NULL;
    if (in->kv) kv_destroy_later(n, in->kv);
    free(in);
}

static void install_work_cb(uv_work_t *req)
{
    struct node_install *in = req->data;
    struct st_snapshot_info info;
    in->rc = kv_load_snapshot(&in->kv_cfg, in->snaps, in->meta.index, in->rd, &in->rd_info, &in->kv,
                              &info, &in->keys);
    in->rd = NULL; /* consumed */
}

static void install_after_cb(uv_work_t *req, int status)
{
    (void)status;
    struct node_install *in = req->data;
    struct node *n = in->n;
    n->bg_pending--;
    in->loaded = true;
    if (n->stopping || !n->running || n->fatal) {
        node_install_free(n);
        if (n->stopping) node_stop_maybe_finish(n);
        return;
    }
    if (in->rc)
        ST_TRACE_ERROR(
            MOD, "node %" PRIu64 ": snapshot %" PRIu64 " from %" PRIu64 " cannot be loaded: %s",
            n->cfg.id, in->meta.index, in->from, st_strerror(in->rc));
    else
        n->m.snapshots_loaded_off_loop++;
    /* Stepped either way: a failed load is retried on the loop by the ready
     * (and is fatal there, as a damaged snapshot file is). */
    int rc = raft_step(n->raft, &in->msg);
    if (rc || !raft_has_ready(n->raft)) {
        ST_TRACE_DEBUG(MOD, "node %" PRIu64 ": snapshot %" PRIu64 " not taken by the core: %s",
                       n->cfg.id, in->meta.index, st_strerror(rc));
        node_install_free(n);
    }
}

/* Returns true when msg was taken (held while its snapshot loads). */
bool node_install_begin(struct node *n, raft_id from, const struct raft_msg *msg)
{
    if (msg->snapshot->index <= n->applied) return false; /* stale: the core answers it */
    if (n->install) {
        if (!n->install->loaded) return true; /* one load at a time: dropped */
        node_install_free(n);
    }
    struct node_install *in = calloc(1, sizeof *in);
    if (!in) return false;
    in->n = n;
    in->from = from;
    in->meta = *msg->snapshot;
    in->msg = *msg;
    in->msg.snapshot = &in->meta;
    in->msg.entries = NULL;
    in->msg.n_entries = 0;
    in->snaps = n->storage->snaps;
    in->kv_cfg = n->kv_cfg;
    if (n->snap_in_rd && n->snap_in_rd_info.meta.index == in->meta.index) {
        in->rd = n->snap_in_rd; /* opened when it was received */
        in->rd_info = n->snap_in_rd_info;
        n->snap_in_rd = NULL;
    }
    in->work.data = in;
    if (uv_queue_work(n->loop, &in->work, install_work_cb, install_after_cb) != 0) {
        free(in);
        return false;
    }
    n->install = in;
    n->bg_pending++;
    ST_TRACE_INFO(MOD,
                  "node %" PRIu64 ": loading snapshot %" PRIu64 " from %" PRIu64 " off the loop",
                  n->cfg.id, msg->snapshot->index, from);
    return true;
}
