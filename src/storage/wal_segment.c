/* WAL segment files: naming, creation with a header (wal_seg_create), the roll
 * to a new segment when a record does not fit, removal of compacted ones,
 * and the spare segment a helper thread zero-fills ahead of the roll (cfg
 * spare_segments) so a roll renames instead of allocating on the write path.
 */
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

void wal_seg_path(const struct wal *w, uint64_t seq, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%016" PRIx64 ".wal", w->dir, seq);
}

/* fsync of the WAL directory, through the handle kept open. */
int wal_dir_sync(struct wal *w)
{
    return w->fs.ops->sync_dir_fd(w->fs.self, w->dir_fd);
}

void wal_spare_path(const struct wal *w, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" WAL_SPARE_NAME, w->dir);
}

/* The helper's work: the spare file, segment_bytes of zeros, synced a chunk
 * at a time (a whole segment's writeback at once would stall the WAL's own
 * syncs on the shared disk for tens of ms). ST_ECANCELED when asked to stop. */
static int spare_make(struct wal *w, const uint8_t *zero, int *fd_out)
{
    char path[ST_STORAGE_PATH_MAX];
    wal_spare_path(w, path, sizeof(path));
    int fd;
    int rc = w->fs.ops->open(w->fs.self, path, ST_FS_RDWR | ST_FS_CREATE | ST_FS_TRUNC, &fd);
    if (rc != 0) return rc;
    /* zeros written around the page cache when the WAL uses direct I/O: no
     * 64 MiB of page copies and writeback on a core the nodes need */
    int dfd = -1;
    if (__atomic_load_n(&w->direct_io, __ATOMIC_RELAXED) &&
        w->fs.ops->open(w->fs.self, path, ST_FS_RDWR | ST_FS_DIRECT, &dfd) != 0)
        dfd = -1;
    for (uint64_t off = 0; off < w->segment_bytes && rc == 0; off += WAL_ZERO_CHUNK) {
        if (__atomic_load_n(&w->prep_stop, __ATOMIC_RELAXED)) {
            rc = ST_ECANCELED;
            break;
        }
        size_t n = (size_t)ST_MIN((uint64_t)WAL_ZERO_CHUNK, w->segment_bytes - off);
        if (dfd >= 0 && n % WAL_DIO_ALIGN == 0) {
            rc = w->fs.ops->pwrite_sync(w->fs.self, dfd, zero, n, off);
        } else {
            rc = w->fs.ops->pwrite(w->fs.self, fd, zero, n, off);
            if (rc == 0) rc = w->fs.ops->fdatasync(w->fs.self, fd);
        }
    }
    if (dfd >= 0) w->fs.ops->close(w->fs.self, dfd);
    if (rc != 0) {
        w->fs.ops->close(w->fs.self, fd);
        (void)w->fs.ops->unlink(w->fs.self, path);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

void *wal_prep_main(void *arg)
{
    struct wal *w = arg;
    /* Zeros from an untouched anonymous mapping: page aligned (direct I/O)
     * and backed by the kernel's zero page, so they add nothing to RSS. */
    uint8_t *zero = mmap(NULL, WAL_ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (zero == MAP_FAILED) zero = NULL;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->prep_stop && (w->spare_fd >= 0 || w->prep_failed))
            pthread_cond_wait(&w->prep_cv, &w->mu);
        if (w->prep_stop) break;
        pthread_mutex_unlock(&w->mu);
        int fd = -1;
        int rc = zero ? spare_make(w, zero, &fd) : ST_ENOMEM;
        pthread_mutex_lock(&w->mu);
        if (rc == 0) {
            w->spare_fd = fd;
        } else if (rc != ST_ECANCELED) {
            /* Not fatal: segments are fallocated as without spares (for
             * good, unless only a descriptor was missing). */
            ST_TRACE_WARN("storage", "wal: cannot prepare a spare segment in %s: %s", w->dir,
                          st_strerror(rc));
            w->prep_failed = true;
            w->prep_enfile = rc == ST_ENFILE;
        }
        pthread_cond_broadcast(&w->spare_cv);
    }
    pthread_mutex_unlock(&w->mu);
    if (zero) munmap(zero, WAL_ZERO_CHUNK);
    return NULL;
}

/* st_wal_open of an empty WAL (no helper thread yet): a spare made on this
 * thread, for wal_seg_create to take as the first segment. */
void wal_first_segment_zeroed(struct wal *w)
{
    uint8_t *zero = mmap(NULL, WAL_ZERO_CHUNK, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int fd = -1;
    int rc = zero == MAP_FAILED ? ST_ENOMEM : spare_make(w, zero, &fd);
    if (zero != MAP_FAILED) munmap(zero, WAL_ZERO_CHUNK);
    if (rc != 0) {
        ST_TRACE_WARN("storage", "wal: cannot zero-fill the first segment in %s: %s", w->dir,
                      st_strerror(rc));
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->spare_segments = true; /* spare_take reads it */
    w->spare_fd = fd;
    pthread_mutex_unlock(&w->mu);
}

/* Under mu: the spare for segment `path`, renamed in; -1 when none is ready
 * (or the rename failed). Wakes the helper for the next one either way. */
static int spare_take(struct wal *w, const char *path)
{
    if (!w->spare_segments) return -1;
    int fd = w->spare_fd;
    w->spare_fd = -1;
    if (w->prep_failed && w->prep_enfile) w->prep_failed = w->prep_enfile = false;
    pthread_cond_signal(&w->prep_cv);
    if (fd < 0) return -1;
    char sp[ST_STORAGE_PATH_MAX];
    wal_spare_path(w, sp, sizeof(sp));
    int rc = w->fs.ops->rename(w->fs.self, sp, path);
    if (rc != 0) {
        ST_TRACE_WARN("storage", "wal: cannot rename the spare segment to %s: %s", path,
                      st_strerror(rc));
        w->fs.ops->close(w->fs.self, fd);
        (void)w->fs.ops->unlink(w->fs.self, sp);
        return -1;
    }
    w->spares_used++;
    return fd;
}

/* Creates segment `seq` with a header describing the current state. On
 * failure nothing remains (the file is removed). */
int wal_seg_create(struct wal *w, uint64_t seq)
{
    char path[ST_STORAGE_PATH_MAX];
    wal_seg_path(w, seq, path, sizeof(path));
    int rc = grow((void **)&w->segs, &w->cap_segs, w->n_segs + 1, sizeof(*w->segs));
    if (rc != 0) return rc;
    /* A spare is segment_bytes of zeros already: what a fallocated file
     * reads as, so recovery cannot tell the two apart. */
    int fd = spare_take(w, path);
    if (fd < 0) {
        rc = w->fs.ops->open(w->fs.self, path, ST_FS_RDWR | ST_FS_CREATE | ST_FS_TRUNC, &fd);
        if (rc != 0) return rc;
        rc = w->fs.ops->fallocate(w->fs.self, fd, 0, w->segment_bytes);
        if (rc != 0) goto fail_file;
    }
    struct st_seg_header h = {
        .seq = seq,
        .first_index = w->last_index + 1,
        .segment_bytes = w->segment_bytes,
        .snap_index = w->snap_index,
        .snap_term = w->snap_term,
        .hs = w->hs,
        .wseq = w->wseq,
    };
    uint8_t hb[ST_SEG_HEADER_BYTES];
    st_seg_header_encode(&h, hb);
    rc = w->fs.ops->pwrite(w->fs.self, fd, hb, sizeof(hb), 0);
    if (rc != 0) goto fail_file;
    w->segs[w->n_segs++] = (struct wal_seg){
        .seq = seq, .fd = fd, .first_index = h.first_index, .flushed = ST_SEG_HEADER_BYTES};
    w->dir_dirty = true;
    w->bytes_written += ST_SEG_HEADER_BYTES;
    return 0;
fail_file:
    w->fs.ops->close(w->fs.self, fd);
    w->fs.ops->unlink(w->fs.self, path);
    return rc;
}

/* Moves to a new segment: the current one is flushed and made durable first
 * (a segment with a successor is always complete on disk). */
int wal_roll(struct wal *w)
{
    while (w->inflight)
        pthread_cond_wait(&w->idle, &w->mu);
    if (w->fatal) return ST_EFATAL;
    struct wal_seg *s = cur_seg(w);
    if (s->synced < s->flushed + w->stage_len) {
        int rc = wal_write_out(w, s->seq, s->fd, w->stage, w->stage_len, s->flushed, true);
        w->syncs++;
        if (rc != 0) {
            wal_set_fatal(w, "write and fdatasync", rc);
            return ST_EFATAL;
        }
        s->flushed += w->stage_len;
        w->bytes_written += w->stage_len;
        w->stage_len = 0;
        s->synced = s->flushed;
    }
    wal_dio_close(w); /* the segment is complete: no more writes to it */
    int rc = wal_seg_create(w, s->seq + 1);
    /* Clean failures (nothing was created; the batch is undone): a full disk,
     * no memory, no descriptor. */
    if (rc != 0 && rc != ST_ENOSPC && rc != ST_ENOMEM && rc != ST_ENFILE) {
        wal_set_fatal(w, "segment creation", rc);
        return ST_EFATAL;
    }
    return rc;
}
/* Removes whole segments whose entries are all <= index (never the current). */
void wal_drop_segments_below(struct wal *w, raft_index index)
{
    size_t k = 0;
    while (k + 1 < w->n_segs && w->segs[k + 1].first_index <= index + 1)
        k++;
    for (size_t i = 0; i < k; i++) {
        char path[ST_STORAGE_PATH_MAX];
        wal_seg_path(w, w->segs[i].seq, path, sizeof(path));
        w->fs.ops->close(w->fs.self, w->segs[i].fd);
        int rc = w->fs.ops->unlink(w->fs.self, path);
        if (rc != 0)
            ST_TRACE_WARN("storage", "wal: cannot remove compacted segment %s: %s", path,
                          st_strerror(rc));
        raft_buf_unref(w->segs[i].buf);
        w->dir_dirty = true;
    }
    if (k) {
        memmove(w->segs, w->segs + k, (w->n_segs - k) * sizeof(*w->segs));
        w->n_segs -= k;
    }
}
struct wal_seg *wal_seg_by_seq(struct wal *w, uint64_t seq)
{
    if (w->n_segs == 0 || seq < w->segs[0].seq) return NULL;
    uint64_t i = seq - w->segs[0].seq;
    return i < w->n_segs ? &w->segs[i] : NULL;
}
