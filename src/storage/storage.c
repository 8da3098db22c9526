/* One data directory: identity, snapshots, WAL, opened in that order. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/storage.h"
#include "storage/common.h"
#include "util/trace.h"

int st_storage_open(const struct st_storage_config *cfg, struct st_storage **out,
                    struct st_storage_state *state, struct st_errbuf *err)
{
    const struct st_fs *fs = cfg->fs ? cfg->fs : st_fs_posix();
    memset(state, 0, sizeof(*state));
    int rc = st_identity_ensure(fs, cfg->dir, cfg->node_id, cfg->cluster_id, err);
    if (rc != 0) return rc;
    struct st_storage *s = calloc(1, sizeof(*s));
    if (!s) return ST_ENOMEM;
    char path[ST_STORAGE_PATH_MAX];
    rc = st_path_join(path, sizeof(path), cfg->dir, "snap");
    if (rc == 0) rc = st_snap_store_open(fs, path, cfg->snapshots_retain, &s->snaps, err);
    if (rc != 0) goto fail;
    struct st_snapshot_info snap;
    rc = st_snap_store_latest(s->snaps, &snap);
    state->has_snapshot = rc == 0;
    if (rc == 0)
        state->snapshot = snap;
    else if (rc != ST_ENOENT)
        goto fail_snaps;
    raft_index after = state->has_snapshot ? snap.meta.index : 0;
    rc = st_path_join(path, sizeof(path), cfg->dir, "wal");
    if (rc != 0) goto fail_snaps;
    /* Spare segments need the thread-safe posix fs; the simulated one runs
     * single-threaded and deterministic. Direct I/O on both (the simulated fs
     * checks the alignment the kernel would). */
    bool posix = !cfg->fs || cfg->fs->ops == st_fs_posix()->ops;
    struct st_wal_config wc = {.fs = fs,
                               .dir = path,
                               .segment_bytes = cfg->segment_bytes,
                               .spare_segments = posix,
                               .direct_io = 1};
    rc = st_wal_open(&wc, &s->log, err);
    if (rc != 0) goto fail_snaps;
    rc = s->log.ops->load(s->log.self, after, &state->log, err);
    if (rc != 0) {
        if (rc == ST_EUNAVAILABLE && st_snap_store_skipped(s->snaps)) {
            st_storage_errf(err,
                            "%s: the newest snapshot is damaged and the WAL no longer holds "
                            "the entries after the previous one (index %" PRIu64 "); refusing to "
                            "start: restore the snapshot or rebuild this node from its peers",
                            cfg->dir, after);
            rc = ST_ECORRUPT;
        }
        goto fail_log;
    }
    if (state->has_snapshot && state->log.n_entries == 0 &&
        state->log.prev_term != state->snapshot.meta.term) {
        /* The newest snapshot is not marked in the WAL: a leader's snapshot
         * stored (by the transport, fsynced) and the process stopped before
         * the WAL batch that marks it. The log would then resume at the
         * WAL's old end and refuse the entries after the snapshot (EINVAL),
         * at every restart (wsim seed 1498 of membership_clock_c). Mark it
         * now, durably. */
        rc =
            s->log.ops->compact(s->log.self, state->snapshot.meta.index, state->snapshot.meta.term);
        if (rc == 0) rc = s->log.ops->sync(s->log.self);
        if (rc != 0) {
            st_storage_errf(err, "%s: cannot mark snapshot %" PRIu64 " in the WAL: %s", cfg->dir,
                            state->snapshot.meta.index, st_strerror(rc));
            st_log_state_release(&state->log);
            goto fail_log;
        }
        state->log.prev_term = state->snapshot.meta.term;
    }
    if (st_snap_store_skipped(s->snaps))
        ST_TRACE_WARN("storage",
                      "%s: started from an older snapshot (index %" PRIu64
                      ") because newer ones are damaged; the WAL covers the rest",
                      cfg->dir, after);
    *out = s;
    return 0;
fail_log:
    s->log.ops->close(s->log.self);
fail_snaps:
    st_snap_store_destroy(s->snaps);
fail:
    free(s);
    return rc;
}

void st_storage_state_release(struct st_storage_state *state)
{
    st_log_state_release(&state->log);
}

void st_storage_close(struct st_storage *s)
{
    if (!s) return;
    s->log.ops->close(s->log.self);
    st_snap_store_destroy(s->snaps);
    free(s);
}
