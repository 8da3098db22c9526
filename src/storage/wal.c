/* The durable log store: a write-ahead log of preallocated, append-only
 * segment files (docs/DISK-FORMAT.md).
 *
 * Write path (one thread):
 *
 *   append  -> records are encoded into `stage` (bytes destined for the
 *              current segment at offset `flushed`) and the in-memory index
 *              (runs) is updated at once, so read() sees them.
 *   sync    -> one pwrite of `stage`, one fdatasync, the directory fsync when
 *              a segment was created or removed (through a directory handle
 *              kept open: a sync opens nothing). A failure makes the store
 *              fatal: nothing is retried (the page cache may have dropped the
 *              data; fsyncgate).
 *   roll    -> when a record does not fit: flush and fdatasync the current
 *              segment, then create the next one (fallocate, header); when
 *              that fails cleanly (no space, memory or descriptor) the batch
 *              is undone and the store stays usable. So a
 *              segment has a successor only once it was completely durable;
 *              recovery may treat damage as a torn tail only in the last one.
 *
 * Recovery (open) reads every segment once, in full, into one raft_buf per
 * segment; records are checked and the entries handed to load() are slices of
 * those buffers (payloads are read once). Torn tail vs corruption: see
 * scan_segment().
 *
 * Locking: `mu` guards the index, the segment table and the stages. sync()
 * seals the stage under `mu` (swaps it with `wbuf`) and does its pwrite +
 * fdatasync without `mu`, so appends of the next group (st_log_writer's
 * encoder thread) and reads proceed meanwhile; a roll waits for the in-flight
 * sync first (`idle`), so writes to a segment stay in order. A batch is
 * appended entirely under `mu`, so a seal never splits it. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "storage/wal_int.h"
#include "util/assert.h"
#include "util/trace.h"
#include "wire/le.h"

/* ----------------------------------------------------------- index ops */

void wal_index_truncate(struct wal *w, raft_index from)
{
    while (w->n_runs > 0) {
        struct wal_run *r = &w->runs[w->n_runs - 1];
        if (r->first >= from) {
            w->n_runs--;
            continue;
        }
        if (r->first + r->count > from) r->count = (uint32_t)(from - r->first);
        break;
    }
    while (w->n_ents > 0 && w->ents[w->n_ents - 1].index >= from)
        w->n_ents--;
    w->last_index = from - 1;
    if (w->last_index < w->first_index) w->n_runs = 0; /* what is left lies below a snapshot mark */
}

/* The log is covered up to (index, term) by a snapshot. */
void wal_index_mark_snapshot(struct wal *w, raft_index index, raft_term term)
{
    if (index <= w->snap_index) return;
    w->snap_index = index;
    w->snap_term = term;
    if (index >= w->last_index) {
        w->n_runs = 0;
        w->n_ents = 0;
        w->last_index = index;
    } else {
        size_t k = 0;
        while (k < w->n_runs && w->runs[k].first + w->runs[k].count - 1 <= index)
            k++;
        if (k) memmove(w->runs, w->runs + k, (w->n_runs - k) * sizeof(*w->runs));
        w->n_runs -= k;
    }
    if (w->first_index < index + 1) w->first_index = index + 1;
}

/* ------------------------------------------------------------- writing */

static int stage_reserve(struct wal *w, size_t add)
{
    return grow((void **)&w->stage, &w->stage_cap, w->stage_len + add, 1);
}

/* Offset in the current segment where the next staged record goes. */
static uint64_t write_pos(struct wal *w)
{
    return cur_seg(w)->flushed + w->stage_len;
}

void wal_set_fatal(struct wal *w, const char *what, int rc)
{
    if (!w->fatal)
        ST_TRACE_ERROR("storage",
                       "wal %s: %s failed (%s); the store is stopped (a failed "
                       "sync is never retried)",
                       w->dir, what, st_strerror(rc));
    w->fatal = true;
}

/* Reserves room for a record of `len` payload bytes in the current segment,
 * rolling when needed; returns a pointer to the payload area in the stage. */
static int stage_record(struct wal *w, uint32_t len, uint8_t **payload)
{
    uint64_t size = st_rec_size(len);
    ST_ASSERT(size <= w->segment_bytes - ST_SEG_HEADER_BYTES);
    if (write_pos(w) + size > w->segment_bytes) {
        int rc = wal_roll(w);
        if (rc != 0) return rc;
    }
    int rc = stage_reserve(w, size);
    if (rc != 0) return rc;
    *payload = w->stage + w->stage_len + ST_REC_HEADER_BYTES;
    return 0;
}

static void stage_seal(struct wal *w, uint8_t type, uint32_t len)
{
    st_rec_seal(w->stage + w->stage_len, type, len, w->wseq);
    w->stage_len += st_rec_size(len);
}

static int stage_small(struct wal *w, uint8_t type, const uint64_t *vals, size_t n)
{
    uint8_t *p;
    int rc = stage_record(w, (uint32_t)(n * 8), &p);
    if (rc != 0) return rc;
    for (size_t i = 0; i < n; i++)
        le_put64(p + 8 * i, vals[i]);
    stage_seal(w, type, (uint32_t)(n * 8));
    return 0;
}

/* Largest ENTRIES payload that fits in an empty segment and the record bound. */
static uint64_t payload_room_max(const struct wal *w)
{
    uint64_t room =
        w->segment_bytes - ST_SEG_HEADER_BYTES - ST_REC_HEADER_BYTES - ST_REC_TRAILER_BYTES;
    return ST_MIN(room & ~7ull, (uint64_t)w->record_bytes_max);
}

static int stage_entries(struct wal *w, const struct raft_entry *e, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint64_t room = w->segment_bytes - write_pos(w);
        uint64_t overhead =
            ST_REC_HEADER_BYTES + ST_REC_TRAILER_BYTES + ST_REC_ENTRIES_HEADER_BYTES;
        room = room > overhead + 8 ? ((room - overhead) & ~7ull) : 0;
        room = ST_MIN(room, (uint64_t)w->record_bytes_max - ST_REC_ENTRIES_HEADER_BYTES);
        /* how many entries fit */
        size_t k = i;
        uint64_t bytes = 0;
        while (k < n && bytes + ST_REC_ENTRY_HEADER_BYTES + e[k].len <= room) {
            bytes += ST_REC_ENTRY_HEADER_BYTES + e[k].len;
            k++;
        }
        if (k == i) {
            int rc = wal_roll(w);
            if (rc != 0) return rc;
            continue;
        }
        uint32_t len = (uint32_t)(ST_REC_ENTRIES_HEADER_BYTES + bytes);
        uint8_t *p;
        int rc = stage_record(w, len, &p);
        if (rc != 0) return rc;
        uint64_t off = write_pos(w);
        le_put64(p, e[i].index);
        le_put32(p + 8, (uint32_t)(k - i));
        le_put32(p + 12, 0);
        uint8_t *q = p + ST_REC_ENTRIES_HEADER_BYTES;
        for (size_t j = i; j < k; j++) {
            le_put64(q, e[j].term);
            le_put32(q + 8, e[j].len);
            q[12] = e[j].type;
            q[13] = q[14] = q[15] = 0;
            if (e[j].len) memcpy(q + ST_REC_ENTRY_HEADER_BYTES, e[j].data, e[j].len);
            q += ST_REC_ENTRY_HEADER_BYTES + e[j].len;
        }
        stage_seal(w, ST_REC_ENTRIES, len);
        rc = grow((void **)&w->runs, &w->cap_runs, w->n_runs + 1, sizeof(*w->runs));
        if (rc != 0) return rc;
        w->runs[w->n_runs++] = (struct wal_run){.first = e[i].index,
                                                .count = (uint32_t)(k - i),
                                                .rec_len = len,
                                                .seg_seq = cur_seg(w)->seq,
                                                .off = off};
        w->last_index = e[k - 1].index;
        i = k;
    }
    return 0;
}

struct wal_undo {
    size_t n_segs;
    uint64_t end; /* write position in segs[n_segs-1] at batch start */
    size_t stage_len;
    uint64_t flushed;
    size_t n_runs;
    uint32_t last_run_count;
    raft_index first_index, last_index, snap_index;
    raft_term snap_term;
    struct raft_hard_state hs;
};

/* Undoes a batch that failed cleanly (ENOSPC/ENOMEM/ENFILE): removes segments it
 * created, zeroes what it flushed into the segment it started in. */
static int undo_batch(struct wal *w, const struct wal_undo *u)
{
    while (w->n_segs > u->n_segs) {
        struct wal_seg *s = cur_seg(w);
        char path[ST_STORAGE_PATH_MAX];
        wal_seg_path(w, s->seq, path, sizeof(path));
        w->fs.ops->close(w->fs.self, s->fd);
        w->fs.ops->unlink(w->fs.self, path);
        w->n_segs--;
        w->dir_dirty = true;
        w->stage_len = 0;
    }
    struct wal_seg *s = cur_seg(w);
    if (s->flushed > u->end) {
        /* a roll flushed part of this batch: cut the segment back to the batch start */
        size_t n = (size_t)(s->flushed - u->end);
        uint8_t *zero = calloc(1, n);
        if (!zero) {
            wal_set_fatal(w, "cut back", ST_ENOMEM);
            return ST_EFATAL;
        }
        int rc = w->fs.ops->pwrite(w->fs.self, s->fd, zero, n, u->end);
        free(zero);
        w->dio_valid = false; /* the kept partial block is stale */
        if (rc == 0) rc = w->fs.ops->fdatasync(w->fs.self, s->fd);
        if (rc != 0) {
            wal_set_fatal(w, "cut back", rc);
            return ST_EFATAL;
        }
        s->flushed = s->synced = u->end;
        w->stage_len = 0;
    } else if (s->flushed != u->flushed) {
        /* a roll flushed exactly the records staged before this batch: they
         * are in the file now, not in the stage */
        w->stage_len = 0;
    } else {
        w->stage_len = u->stage_len;
    }
    w->n_runs = u->n_runs;
    if (w->n_runs) w->runs[w->n_runs - 1].count = u->last_run_count;
    w->first_index = u->first_index;
    w->last_index = u->last_index;
    w->snap_index = u->snap_index;
    w->snap_term = u->snap_term;
    w->hs = u->hs;
    return 0;
}

static int wal_append_locked(struct wal *w, const struct st_log_batch *b)
{
    if (w->fatal) return ST_EFATAL;
    if (!w->loaded) return ST_EINVAL; /* load() first: it hands out what open read */
    /* Validate everything before staging anything. */
    raft_index first = w->first_index, last = w->last_index;
    if (b->snapshot_index > w->snap_index) {
        if (b->snapshot_index >= last) last = b->snapshot_index;
        if (first < b->snapshot_index + 1) first = b->snapshot_index + 1;
    }
    raft_index trunc = b->truncate_from;
    if (b->n_entries && b->entries[0].index <= last && (trunc == 0 || b->entries[0].index < trunc))
        trunc = b->entries[0].index;
    if (trunc > last) trunc = 0;
    if (trunc) {
        if (trunc < first) return ST_ECOMPACTED;
        last = trunc - 1;
    }
    uint64_t room_max = payload_room_max(w);
    for (size_t i = 0; i < b->n_entries; i++) {
        if (b->entries[i].index != last + 1 + i) return ST_EINVAL;
        if ((uint64_t)b->entries[i].len + ST_REC_ENTRY_HEADER_BYTES + ST_REC_ENTRIES_HEADER_BYTES >
            room_max)
            return ST_ETOOBIG;
    }

    struct wal_undo u = {
        .n_segs = w->n_segs,
        .end = write_pos(w),
        .stage_len = w->stage_len,
        .flushed = cur_seg(w)->flushed,
        .n_runs = w->n_runs,
        .last_run_count = w->n_runs ? w->runs[w->n_runs - 1].count : 0,
        .first_index = w->first_index,
        .last_index = w->last_index,
        .snap_index = w->snap_index,
        .snap_term = w->snap_term,
        .hs = w->hs,
    };
    int rc = 0;
    if (b->snapshot_index > w->snap_index) {
        uint64_t v[2] = {b->snapshot_index, b->snapshot_term};
        rc = stage_small(w, ST_REC_SNAPSHOT, v, 2);
        if (rc != 0) goto undo;
        wal_index_mark_snapshot(w, b->snapshot_index, b->snapshot_term);
    }
    if (trunc) {
        uint64_t v[1] = {trunc};
        rc = stage_small(w, ST_REC_TRUNCATE, v, 1);
        if (rc != 0) goto undo;
        wal_index_truncate(w, trunc);
    }
    if (b->n_entries) {
        rc = stage_entries(w, b->entries, b->n_entries);
        if (rc != 0) goto undo;
    }
    if (b->hard_state) {
        uint64_t v[3] = {b->hard_state->term, b->hard_state->vote, b->hard_state->commit};
        rc = stage_small(w, ST_REC_HARD_STATE, v, 3);
        if (rc != 0) goto undo;
        w->hs = *b->hard_state;
    }
    if (b->snapshot_index) wal_drop_segments_below(w, w->snap_index);
    return 0;
undo:
    if (rc == ST_EFATAL) return rc;
    {
        int urc = undo_batch(w, &u);
        return urc ? urc : rc;
    }
}

/* Cheap (O(1)) invariants, checked after every append in debug builds. */
static void wal_check_invariants(const struct wal *w)
{
    ST_ASSERT(w->n_segs > 0);
    const struct wal_seg *s = &w->segs[w->n_segs - 1];
    ST_ASSERT(s->flushed + w->stage_len <= w->segment_bytes);
    ST_ASSERT(s->synced <= s->flushed);
    ST_ASSERT(w->first_index <= w->last_index + 1);
    ST_ASSERT(w->snap_index < w->first_index);
    if (w->n_runs) {
        const struct wal_run *r = &w->runs[w->n_runs - 1];
        ST_ASSERT(r->count > 0 && r->first + r->count - 1 == w->last_index);
        ST_ASSERT(w->runs[0].first + w->runs[0].count > w->first_index);
    }
}

static int wal_append(void *self, const struct st_log_batch *b)
{
    struct wal *w = self;
    pthread_mutex_lock(&w->mu);
    w->appending = true;
    int rc = wal_append_locked(w, b);
    ST_DEBUG_ASSERT((wal_check_invariants(w), true));
    w->appending = false;
    pthread_cond_broadcast(&w->idle);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int wal_sync(void *self)
{
    struct wal *w = self;
    pthread_mutex_lock(&w->mu);
    while (w->inflight || w->appending) /* one sync at a time, whole batches */
        pthread_cond_wait(&w->idle, &w->mu);
    if (w->fatal) {
        pthread_mutex_unlock(&w->mu);
        return ST_EFATAL;
    }
    /* seal: the stage becomes wbuf; later appends go to a fresh stage */
    struct wal_seg *s = cur_seg(w);
    uint64_t seq = s->seq;
    int fd = s->fd;
    uint64_t off = s->flushed;
    uint8_t *tb = w->wbuf;
    size_t tcap = w->wbuf_cap;
    w->wbuf = w->stage;
    w->wbuf_cap = w->stage_cap;
    w->wbuf_len = w->stage_len;
    w->stage = tb;
    w->stage_cap = tcap;
    w->stage_len = 0;
    size_t len = w->wbuf_len;
    s->flushed += len;
    uint64_t end = s->flushed;
    bool need = end > s->synced;
    bool dir = w->dir_dirty;
    w->dir_dirty = false;
    w->wseq++; /* records staged from now on belong to the next write */
    w->inflight = true;
    pthread_mutex_unlock(&w->mu);

    const char *what = "write and fdatasync";
    int rc = wal_write_out(w, seq, fd, w->wbuf, len, off, need);
    if (rc == 0 && dir) {
        what = "directory fsync";
        rc = wal_dir_sync(w);
    }

    pthread_mutex_lock(&w->mu);
    w->inflight = false;
    w->wbuf_len = 0;
    if (need) w->syncs++;
    if (rc != 0) {
        wal_set_fatal(w, what, rc);
        rc = ST_EFATAL;
    } else {
        w->bytes_written += len;
        s = wal_seg_by_seq(w, seq); /* compaction may have moved the table */
        if (s && s->synced < end) s->synced = end;
    }
    pthread_cond_broadcast(&w->idle);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

static int wal_compact(void *self, raft_index index, raft_term term)
{
    struct st_log_batch b = {.snapshot_index = index, .snapshot_term = term};
    return wal_append(self, &b);
}

static void wal_bounds(void *self, raft_index *first, raft_index *last)
{
    struct wal *w = self;
    pthread_mutex_lock(&w->mu);
    *first = w->first_index;
    *last = w->last_index;
    pthread_mutex_unlock(&w->mu);
}

/* ---------------------------------------------------------------- read */

static int read_run(struct wal *w, const struct wal_run *r, raft_index lo, raft_index hi,
                    struct raft_entry *out)
{
    struct wal_seg *s = wal_seg_by_seq(w, r->seg_seq);
    ST_ASSERT(s);
    uint64_t size = st_rec_size(r->rec_len);
    struct raft_buf *buf = raft_buf_create(size);
    if (!buf) return ST_ENOMEM;
    int rc = 0;
    if (s == cur_seg(w) && r->off >= s->flushed) {
        memcpy(buf->data, w->stage + (r->off - s->flushed), size);
    } else if (s == cur_seg(w) && w->inflight && r->off >= s->flushed - w->wbuf_len) {
        memcpy(buf->data, w->wbuf + (r->off - (s->flushed - w->wbuf_len)), size);
    } else {
        rc = st_read_exact(&w->fs, s->fd, buf->data, size, r->off);
        if (rc != 0) goto fail;
    }
    struct st_rec_view v;
    if (st_rec_parse(buf->data, size, w->record_bytes_max, &v) != ST_REC_OK ||
        v.type != ST_REC_ENTRIES) {
        char path[ST_STORAGE_PATH_MAX];
        wal_seg_path(w, s->seq, path, sizeof(path));
        st_storage_errf(NULL, "wal: record at %s offset %" PRIu64 " no longer checks out", path,
                        r->off);
        rc = ST_ECORRUPT;
        goto fail;
    }
    const uint8_t *q = v.payload + ST_REC_ENTRIES_HEADER_BYTES;
    bool used = false;
    for (uint32_t i = 0; i < r->count; i++) {
        raft_index idx = r->first + i;
        uint32_t len = le_get32(q + 8);
        if (idx >= lo && idx < hi) {
            struct raft_entry *e = &out[idx - lo];
            e->index = idx;
            e->term = le_get64(q);
            e->type = q[12];
            e->len = len;
            e->data = len ? q + ST_REC_ENTRY_HEADER_BYTES : NULL;
            e->buf = buf;
            if (used) raft_buf_ref(buf);
            used = true;
        }
        q += ST_REC_ENTRY_HEADER_BYTES + len;
    }
    if (!used) raft_buf_unref(buf);
    return 0;
fail:
    raft_buf_unref(buf);
    return rc;
}

static int wal_read(void *self, raft_index lo, raft_index hi, struct raft_entry *out)
{
    struct wal *w = self;
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (lo >= hi) goto out;
    if (lo < w->first_index) {
        rc = ST_ECOMPACTED;
        goto out;
    }
    if (hi - 1 > w->last_index) {
        rc = ST_EUNAVAILABLE;
        goto out;
    }
    /* binary search for the run holding lo */
    size_t a = 0, z = w->n_runs;
    while (a + 1 < z) {
        size_t m = (a + z) / 2;
        if (w->runs[m].first <= lo)
            a = m;
        else
            z = m;
    }
    for (size_t i = a; i < w->n_runs && w->runs[i].first < hi; i++) {
        rc = read_run(w, &w->runs[i], lo, hi, out);
        if (rc != 0) {
            for (raft_index k = lo; k < w->runs[i].first && k < hi; k++)
                raft_buf_unref(out[k - lo].buf);
            goto out;
        }
    }
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

void wal_free(struct wal *w)
{
    if (w->prep_started) {
        pthread_mutex_lock(&w->mu);
        __atomic_store_n(&w->prep_stop, true, __ATOMIC_RELAXED);
        pthread_cond_signal(&w->prep_cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->prep, NULL);
    }
    if (w->spare_fd >= 0) {
        char sp[ST_STORAGE_PATH_MAX];
        wal_spare_path(w, sp, sizeof(sp));
        w->fs.ops->close(w->fs.self, w->spare_fd);
        (void)w->fs.ops->unlink(w->fs.self, sp);
    }
    wal_dio_close(w);
    if (w->dir_fd >= 0) w->fs.ops->close(w->fs.self, w->dir_fd);
    free(w->dio_tail);
    free(w->dio_buf);
    for (size_t i = 0; i < w->n_segs; i++) {
        w->fs.ops->close(w->fs.self, w->segs[i].fd);
        raft_buf_unref(w->segs[i].buf);
    }
    free(w->segs);
    free(w->runs);
    free(w->ents);
    free(w->stage);
    free(w->wbuf);
    pthread_cond_destroy(&w->idle);
    pthread_cond_destroy(&w->prep_cv);
    pthread_cond_destroy(&w->spare_cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

static void wal_close(void *self)
{
    wal_free(self);
}

void st_log_state_release(struct st_log_state *st)
{
    for (size_t i = 0; i < st->n_entries; i++)
        raft_buf_unref(st->entries[i].buf);
    free(st->entries);
    st->entries = NULL;
    st->n_entries = 0;
}

void st_wal_stats_get(const struct st_log_store *store, struct st_wal_stats *out)
{
    ST_ASSERT(store->ops == &wal_ops);
    struct wal *w = store->self;
    pthread_mutex_lock(&w->mu);
    out->segments = w->n_segs;
    out->bytes_written = w->bytes_written;
    out->syncs = w->syncs;
    out->spares_used = w->spares_used;
    out->direct_writes = __atomic_load_n(&w->direct_writes, __ATOMIC_RELAXED);
    out->direct_io = __atomic_load_n(&w->direct_io, __ATOMIC_RELAXED);
    out->open_scan_ns = w->open_scan_ns;
    out->open_bytes_scanned = w->open_bytes_scanned;
    pthread_mutex_unlock(&w->mu);
}

int st_wal_spare_wait(const struct st_log_store *store)
{
    ST_ASSERT(store->ops == &wal_ops);
    struct wal *w = store->self;
    pthread_mutex_lock(&w->mu);
    while (w->prep_started && w->spare_fd < 0 && !w->prep_failed)
        pthread_cond_wait(&w->spare_cv, &w->mu);
    int rc = w->spare_fd >= 0 ? 0 : ST_EUNAVAILABLE;
    pthread_mutex_unlock(&w->mu);
    return rc;
}

const struct st_log_store_ops wal_ops = {
    .load = wal_load,
    .append = wal_append,
    .sync = wal_sync,
    .compact = wal_compact,
    .read = wal_read,
    .bounds = wal_bounds,
    .close = wal_close,
};
