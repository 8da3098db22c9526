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

#include "stcache/storage.h"
#include "storage/common.h"
#include "storage/record.h"
#include "util/assert.h"
#include "util/trace.h"
#include "wire/le.h"

#define WAL_SEGMENT_BYTES_DEFAULT (64ull << 20)
#define WAL_RECORD_BYTES_MAX_DEFAULT (64u << 20)
#define WAL_SEGMENTS_MAX 100000
#define WAL_LOAD_CHUNK_BYTES (64u << 20) /* payload bytes per buffer handed out by load */

struct wal_seg {
    uint64_t seq;
    int fd;
    raft_index first_index; /* from the header */
    uint64_t flushed;       /* bytes written to the file (header included) */
    uint64_t synced;        /* bytes known durable */
    struct raft_buf *buf;   /* between open and load: its live entries (seg_buf_shrink) */
};

/* One ENTRIES record still (partly) in the log. Sorted by first, contiguous. */
struct wal_run {
    raft_index first;
    uint32_t count;
    uint32_t rec_len; /* payload bytes of the record */
    uint64_t seg_seq;
    uint64_t off; /* record offset in its segment */
};

struct wal {
    struct st_fs fs;
    char dir[ST_STORAGE_PATH_MAX - 64];
    uint64_t segment_bytes;
    uint32_t record_bytes_max;
    pthread_mutex_t mu;

    struct wal_seg *segs;
    size_t n_segs, cap_segs;
    struct wal_run *runs;
    size_t n_runs, cap_runs;

    raft_index first_index; /* entries are [first_index, last_index] */
    raft_index last_index;
    raft_index snap_index;
    raft_term snap_term;
    struct raft_hard_state hs;
    uint64_t wseq;

    uint8_t *stage; /* records appended since the last seal */
    size_t stage_len, stage_cap;
    uint8_t *wbuf; /* sealed by an in-flight sync: [flushed - wbuf_len, flushed) */
    size_t wbuf_len, wbuf_cap;
    bool inflight;       /* a sync is writing wbuf (mu not held) */
    bool appending;      /* an append waits in roll(): do not seal half a batch */
    pthread_cond_t idle; /* signalled when it ends */
    bool dir_dirty;
    int dir_fd; /* the directory, open for the WAL's life: a directory fsync
                   needs no new descriptor (none may be left) */
    bool fatal;
    bool loaded;

    /* between open and load: entries parsed from the segment buffers */
    struct raft_entry *ents;
    size_t n_ents, cap_ents;

    uint64_t bytes_written;
    uint64_t syncs;
    uint64_t open_scan_ns;
    uint64_t open_bytes_scanned;

    /* Spare segment (cfg spare_segments): the helper thread `prep` writes
     * WAL_SPARE_NAME full of zeros and syncs it while no spare exists; the
     * roll renames it in. Under mu: spare_fd, prep_failed, prep_stop (also
     * read without mu by the helper between chunks). */
    bool spare_segments;
    bool prep_started;
    bool prep_stop;
    bool prep_failed;
    bool prep_enfile; /* prep_failed for want of a descriptor: tried again at the next roll */
    int spare_fd;     /* -1: none ready */
    pthread_t prep;
    pthread_cond_t prep_cv;  /* to the helper: a spare was taken, or stop */
    pthread_cond_t spare_cv; /* from the helper: a spare is ready, or it failed */
    uint64_t spares_used;

    /* Direct I/O (cfg direct_io), touched only by whoever writes: the sync in
     * flight (mu not held, `inflight`) or a roll/undo under mu with none in
     * flight. dio_fd is an O_DIRECT fd of segment dio_seq; dio_tail holds the
     * bytes [align_down(dio_end), dio_end) of that segment (dio_valid) so a
     * write starting at dio_end can begin at the block boundary. */
    bool direct_io;
    int dio_fd; /* -1: none open */
    uint64_t dio_seq;
    uint64_t dio_end;
    bool dio_valid;
    uint8_t *dio_tail; /* ST_FS_DIRECT_ALIGN bytes, aligned */
    uint8_t *dio_buf;  /* WAL_DIO_BUF bytes, aligned */
    uint64_t direct_writes;
};

static const struct st_log_store_ops wal_ops;
struct wal_seg;
static struct wal_seg *seg_by_seq(struct wal *w, uint64_t seq);

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void seg_path(const struct wal *w, uint64_t seq, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%016" PRIx64 ".wal", w->dir, seq);
}

/* fsync of the WAL directory, through the handle kept open. */
static int dir_sync(struct wal *w)
{
    return w->fs.ops->sync_dir_fd(w->fs.self, w->dir_fd);
}

#define WAL_SPARE_NAME "spare.wal.tmp"
#define WAL_ZERO_CHUNK (1u << 20)
#define WAL_DIO_BUF (256u << 10) /* bounce buffer: resident up to the largest write */
#define WAL_DIO_ALIGN ((uint64_t)ST_FS_DIRECT_ALIGN)

static void spare_path(const struct wal *w, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" WAL_SPARE_NAME, w->dir);
}

/* The helper's work: the spare file, segment_bytes of zeros, synced a chunk
 * at a time (a whole segment's writeback at once would stall the WAL's own
 * syncs on the shared disk for tens of ms). ST_ECANCELED when asked to stop. */
static int spare_make(struct wal *w, const uint8_t *zero, int *fd_out)
{
    char path[ST_STORAGE_PATH_MAX];
    spare_path(w, path, sizeof(path));
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

static void *prep_main(void *arg)
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
 * thread, for seg_create to take as the first segment. */
static void first_segment_zeroed(struct wal *w)
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
    spare_path(w, sp, sizeof(sp));
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

static struct wal_seg *cur_seg(struct wal *w)
{
    ST_ASSERT(w->n_segs > 0);
    return &w->segs[w->n_segs - 1];
}

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p) return ST_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

/* ----------------------------------------------------------- index ops */

static void index_truncate(struct wal *w, raft_index from)
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
static void index_mark_snapshot(struct wal *w, raft_index index, raft_term term)
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

static void set_fatal(struct wal *w, const char *what, int rc)
{
    if (!w->fatal)
        ST_TRACE_ERROR("storage",
                       "wal %s: %s failed (%s); the store is stopped (a failed "
                       "sync is never retried)",
                       w->dir, what, st_strerror(rc));
    w->fatal = true;
}

/* ------------------------------------------------------- direct I/O */

static void dio_close(struct wal *w)
{
    if (w->dio_fd >= 0) w->fs.ops->close(w->fs.self, w->dio_fd);
    w->dio_fd = -1;
    w->dio_valid = false;
}

/* Direct I/O refused (or impossible): buffered writes from now on. */
static void dio_give_up(struct wal *w, int rc)
{
    ST_TRACE_INFO("storage", "wal: no direct I/O in %s (%s): buffered writes and fdatasync",
                  w->dir, st_strerror(rc));
    dio_close(w);
    __atomic_store_n(&w->direct_io, false, __ATOMIC_RELAXED); /* the helper reads it */
}

/* Makes dio_fd/dio_tail describe segment `seq` up to `off` (fd: the
 * segment's buffered fd, to read the partial block back). 0, 1 when direct
 * I/O was given up, or the error of reading the block back. */
static int dio_prepare(struct wal *w, uint64_t seq, int fd, uint64_t off)
{
    if (w->dio_fd >= 0 && w->dio_seq != seq) dio_close(w);
    if (w->dio_fd < 0) {
        char path[ST_STORAGE_PATH_MAX];
        seg_path(w, seq, path, sizeof(path));
        int rc = w->fs.ops->open(w->fs.self, path, ST_FS_RDWR | ST_FS_DIRECT, &w->dio_fd);
        if (rc != 0) { /* no direct I/O here (or no fd): the buffered fd works */
            w->dio_fd = -1;
            if (rc != ST_ENFILE) dio_give_up(w, rc); /* else: direct I/O again next time */
            return 1;
        }
        w->dio_seq = seq;
        w->dio_valid = false;
    }
    if (!w->dio_valid || w->dio_end != off) {
        size_t t = (size_t)(off % WAL_DIO_ALIGN);
        int rc = t ? st_read_exact(&w->fs, fd, w->dio_tail, t, off - t) : 0;
        if (rc != 0) return rc;
        w->dio_end = off;
        w->dio_valid = true;
    }
    return 0;
}

/* Writes data at off (== dio_end) with direct I/O: whole blocks, starting
 * with the kept partial block, the last one padded with zeros. A write larger
 * than the bounce buffer goes in pieces and ends with one fdatasync (a FUA
 * write would make only its own piece durable). */
static int dio_write(struct wal *w, const uint8_t *data, size_t len, uint64_t off, bool sync)
{
    bool pieces = false;
    while (len > 0) {
        size_t t = (size_t)(off % WAL_DIO_ALIGN);
        size_t n = ST_MIN(len, (size_t)WAL_DIO_BUF - t);
        size_t total = t + n;
        size_t padded = (size_t)((total + WAL_DIO_ALIGN - 1) / WAL_DIO_ALIGN * WAL_DIO_ALIGN);
        memcpy(w->dio_buf, w->dio_tail, t);
        memcpy(w->dio_buf + t, data, n);
        memset(w->dio_buf + total, 0, padded - total);
        bool last = n == len;
        pieces |= !last;
        int rc = sync && last && !pieces
                     ? w->fs.ops->pwrite_sync(w->fs.self, w->dio_fd, w->dio_buf, padded, off - t)
                     : w->fs.ops->pwrite(w->fs.self, w->dio_fd, w->dio_buf, padded, off - t);
        if (rc != 0) {
            w->dio_valid = false;
            return rc;
        }
        size_t nt = total % WAL_DIO_ALIGN;
        memcpy(w->dio_tail, w->dio_buf + total - nt, nt);
        off += n;
        data += n;
        len -= n;
        w->dio_end = off;
    }
    __atomic_fetch_add(&w->direct_writes, 1, __ATOMIC_RELAXED); /* stats read it */
    if (sync && pieces) return w->fs.ops->fdatasync(w->fs.self, w->dio_fd);
    return 0;
}

/* Writes len bytes at off of segment `seq` (buffered fd `fd`) and, when
 * `sync`, makes them durable: direct I/O when on, else pwrite + fdatasync.
 * Failures are the caller's to make fatal. */
static int write_out(struct wal *w, uint64_t seq, int fd, const uint8_t *data, size_t len,
                     uint64_t off, bool sync)
{
    if (w->direct_io && len) {
        int rc = dio_prepare(w, seq, fd, off);
        if (rc < 0) return rc;
        if (rc == 0) {
            rc = dio_write(w, data, len, off, sync);
            /* EINVAL: the kernel refused the transfer (alignment) before
             * doing any of it; buffered writes need none */
            if (rc != ST_EINVAL) return rc;
            dio_give_up(w, rc);
        }
    }
    int rc = len ? w->fs.ops->pwrite(w->fs.self, fd, data, len, off) : 0;
    if (rc == 0 && sync) rc = w->fs.ops->fdatasync(w->fs.self, fd);
    return rc;
}

/* Creates segment `seq` with a header describing the current state. On
 * failure nothing remains (the file is removed). */
static int seg_create(struct wal *w, uint64_t seq)
{
    char path[ST_STORAGE_PATH_MAX];
    seg_path(w, seq, path, sizeof(path));
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
static int roll(struct wal *w)
{
    while (w->inflight)
        pthread_cond_wait(&w->idle, &w->mu);
    if (w->fatal) return ST_EFATAL;
    struct wal_seg *s = cur_seg(w);
    if (s->synced < s->flushed + w->stage_len) {
        int rc = write_out(w, s->seq, s->fd, w->stage, w->stage_len, s->flushed, true);
        w->syncs++;
        if (rc != 0) {
            set_fatal(w, "write and fdatasync", rc);
            return ST_EFATAL;
        }
        s->flushed += w->stage_len;
        w->bytes_written += w->stage_len;
        w->stage_len = 0;
        s->synced = s->flushed;
    }
    dio_close(w); /* the segment is complete: no more writes to it */
    int rc = seg_create(w, s->seq + 1);
    /* Clean failures (nothing was created; the batch is undone): a full disk,
     * no memory, no descriptor. */
    if (rc != 0 && rc != ST_ENOSPC && rc != ST_ENOMEM && rc != ST_ENFILE) {
        set_fatal(w, "segment creation", rc);
        return ST_EFATAL;
    }
    return rc;
}

/* Reserves room for a record of `len` payload bytes in the current segment,
 * rolling when needed; returns a pointer to the payload area in the stage. */
static int stage_record(struct wal *w, uint32_t len, uint8_t **payload)
{
    uint64_t size = st_rec_size(len);
    ST_ASSERT(size <= w->segment_bytes - ST_SEG_HEADER_BYTES);
    if (write_pos(w) + size > w->segment_bytes) {
        int rc = roll(w);
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
            int rc = roll(w);
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

/* Removes whole segments whose entries are all <= index (never the current). */
static void drop_segments_below(struct wal *w, raft_index index)
{
    size_t k = 0;
    while (k + 1 < w->n_segs && w->segs[k + 1].first_index <= index + 1)
        k++;
    for (size_t i = 0; i < k; i++) {
        char path[ST_STORAGE_PATH_MAX];
        seg_path(w, w->segs[i].seq, path, sizeof(path));
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
        seg_path(w, s->seq, path, sizeof(path));
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
            set_fatal(w, "cut back", ST_ENOMEM);
            return ST_EFATAL;
        }
        int rc = w->fs.ops->pwrite(w->fs.self, s->fd, zero, n, u->end);
        free(zero);
        w->dio_valid = false; /* the kept partial block is stale */
        if (rc == 0) rc = w->fs.ops->fdatasync(w->fs.self, s->fd);
        if (rc != 0) {
            set_fatal(w, "cut back", rc);
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
        index_mark_snapshot(w, b->snapshot_index, b->snapshot_term);
    }
    if (trunc) {
        uint64_t v[1] = {trunc};
        rc = stage_small(w, ST_REC_TRUNCATE, v, 1);
        if (rc != 0) goto undo;
        index_truncate(w, trunc);
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
    if (b->snapshot_index) drop_segments_below(w, w->snap_index);
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
    int rc = write_out(w, seq, fd, w->wbuf, len, off, need);
    if (rc == 0 && dir) {
        what = "directory fsync";
        rc = dir_sync(w);
    }

    pthread_mutex_lock(&w->mu);
    w->inflight = false;
    w->wbuf_len = 0;
    if (need) w->syncs++;
    if (rc != 0) {
        set_fatal(w, what, rc);
        rc = ST_EFATAL;
    } else {
        w->bytes_written += len;
        s = seg_by_seq(w, seq); /* compaction may have moved the table */
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

static struct wal_seg *seg_by_seq(struct wal *w, uint64_t seq)
{
    if (w->n_segs == 0 || seq < w->segs[0].seq) return NULL;
    uint64_t i = seq - w->segs[0].seq;
    return i < w->n_segs ? &w->segs[i] : NULL;
}

static int read_run(struct wal *w, const struct wal_run *r, raft_index lo, raft_index hi,
                    struct raft_entry *out)
{
    struct wal_seg *s = seg_by_seq(w, r->seg_seq);
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
        seg_path(w, s->seq, path, sizeof(path));
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

/* ---------------------------------------------------------------- open */

struct list_ctx {
    uint64_t *seqs;
    size_t n, cap;
    char foreign[256];
    int rc;
    bool spare_seen;
};

static int list_cb(void *ctx, const char *name)
{
    struct list_ctx *l = ctx;
    size_t len = strlen(name);
    uint64_t seq = 0;
    if (strcmp(name, WAL_SPARE_NAME) == 0) { /* a spare of a previous run */
        l->spare_seen = true;
        return 0;
    }
    bool ok = len == 20 && strcmp(name + 16, ".wal") == 0;
    for (size_t i = 0; ok && i < 16; i++) {
        char c = name[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) ok = false;
        seq = seq * 16 + (uint64_t)(d < 0 ? 0 : d);
    }
    if (!ok) {
        snprintf(l->foreign, sizeof(l->foreign), "%s", name);
        return 1;
    }
    if (grow((void **)&l->seqs, &l->cap, l->n + 1, sizeof(uint64_t)) != 0) {
        l->rc = ST_ENOMEM;
        return 1;
    }
    l->seqs[l->n++] = seq;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Offset just past the last nonzero byte of p[0, n). */
static uint64_t last_nonzero(const uint8_t *p, uint64_t n)
{
    uint64_t i = n;
    while (i >= 8) {
        uint64_t v;
        memcpy(&v, p + i - 8, 8);
        if (v) break;
        i -= 8;
    }
    while (i > 0 && p[i - 1] == 0)
        i--;
    return i;
}

static int add_loaded_entries(struct wal *w, struct raft_buf *buf, const struct st_rec_view *v,
                              const char *path, uint64_t off, struct st_errbuf *err,
                              raft_index *first_out, uint32_t *count_out)
{
    if (v->len < ST_REC_ENTRIES_HEADER_BYTES) goto bad;
    raft_index first = le_get64(v->payload);
    uint32_t count = le_get32(v->payload + 8);
    if (count == 0 || first != w->last_index + 1) {
        st_storage_errf(err,
                        "wal: %s offset %" PRIu64 ": entries start at %" PRIu64
                        ", expected %" PRIu64 " (gap or reordering)",
                        path, off, first, w->last_index + 1);
        return ST_ECORRUPT;
    }
    int rc = grow((void **)&w->ents, &w->cap_ents, w->n_ents + count, sizeof(*w->ents));
    if (rc != 0) return rc;
    const uint8_t *q = v->payload + ST_REC_ENTRIES_HEADER_BYTES;
    const uint8_t *end = v->payload + v->len;
    for (uint32_t i = 0; i < count; i++) {
        if ((uint64_t)(end - q) < ST_REC_ENTRY_HEADER_BYTES) goto bad;
        uint32_t len = le_get32(q + 8);
        if ((uint64_t)(end - q) - ST_REC_ENTRY_HEADER_BYTES < len) goto bad;
        w->ents[w->n_ents++] = (struct raft_entry){
            .term = le_get64(q),
            .index = first + i,
            .type = q[12],
            .buf = buf,
            .data = len ? q + ST_REC_ENTRY_HEADER_BYTES : NULL,
            .len = len,
        };
        q += ST_REC_ENTRY_HEADER_BYTES + len;
    }
    w->last_index = first + count - 1;
    *first_out = first;
    *count_out = count;
    return 0;
bad:
    st_storage_errf(err, "wal: %s offset %" PRIu64 ": malformed entries record", path, off);
    return ST_ECORRUPT;
}

/* Scans one segment already read into s->buf (file_size bytes). Torn tail vs
 * corruption: segments are preallocated with zeros and written strictly in
 * order, so the durable part of a segment is a sequence of valid records and
 * everything after the last write is zero. At the first record R that does
 * not check out, let L be the offset just past the last nonzero byte of the
 * file. If R's header is intact and L < end(R) (its trailer was never
 * written), or R's header is damaged and L < R + header size, R is where the
 * last write was torn: only the last segment may end so, and the tail is cut.
 * Anything else -- a complete record with a bad CRC, valid bytes after a bad
 * record, damage in a non-last segment -- is corruption: refuse to start. */
static int scan_segment(struct wal *w, struct wal_seg *s, uint64_t file_size, bool last_seg,
                        struct st_errbuf *err)
{
    char path[ST_STORAGE_PATH_MAX];
    seg_path(w, s->seq, path, sizeof(path));
    const uint8_t *p = s->buf->data;
    uint64_t L = last_nonzero(p, file_size);
    uint64_t off = ST_SEG_HEADER_BYTES;
    uint64_t prev_wseq = 0;
    while (off < L) {
        struct st_rec_view v;
        enum st_rec_check c = st_rec_parse(p + off, file_size - off, w->record_bytes_max, &v);
        if (c == ST_REC_OK && v.wseq < prev_wseq)
            c = ST_REC_BAD_BODY; /* a stale record cannot follow a newer write */
        if (c != ST_REC_OK) {
            bool torn = v.size ? L < off + v.size : L < off + ST_REC_HEADER_BYTES;
            if (c == ST_REC_SHORT && v.size == 0)
                torn = true; /* fewer bytes than a header before the end of file */
            if (!torn || !last_seg) {
                st_storage_errf(err,
                                "wal: corrupt record in %s at offset %" PRIu64 " (%s; %" PRIu64
                                " bytes follow up to the last nonzero byte)%s",
                                path, off,
                                c == ST_REC_BAD_HEADER ? "bad header"
                                : c == ST_REC_SHORT    ? "truncated record"
                                                       : "bad checksum",
                                L - off,
                                last_seg ? "" : "; not the last segment, so not a torn write");
                return ST_ECORRUPT;
            }
            ST_TRACE_WARN("storage",
                          "wal: torn tail cut in %s at offset %" PRIu64 " (%" PRIu64
                          " bytes of an unfinished write)",
                          path, off, L - off);
            uint8_t *zero = calloc(1, (size_t)(L - off));
            if (!zero) return ST_ENOMEM;
            int rc = w->fs.ops->pwrite(w->fs.self, s->fd, zero, (size_t)(L - off), off);
            free(zero);
            if (rc == 0) rc = w->fs.ops->fdatasync(w->fs.self, s->fd);
            if (rc != 0) {
                st_storage_errf(err, "wal: cannot cut the torn tail of %s: %s", path,
                                st_strerror(rc));
                return rc;
            }
            memset(s->buf->data + off, 0, (size_t)(L - off));
            break;
        }
        prev_wseq = v.wseq;
        if (v.wseq > w->wseq) w->wseq = v.wseq;
        int rc = 0;
        switch (v.type) {
        case ST_REC_ENTRIES: {
            raft_index first;
            uint32_t count;
            rc = add_loaded_entries(w, s->buf, &v, path, off, err, &first, &count);
            if (rc != 0) return rc;
            rc = grow((void **)&w->runs, &w->cap_runs, w->n_runs + 1, sizeof(*w->runs));
            if (rc != 0) return rc;
            w->runs[w->n_runs++] = (struct wal_run){
                .first = first, .count = count, .rec_len = v.len, .seg_seq = s->seq, .off = off};
            break;
        }
        case ST_REC_HARD_STATE:
            if (v.len != 24) goto malformed;
            w->hs.term = le_get64(v.payload);
            w->hs.vote = le_get64(v.payload + 8);
            w->hs.commit = le_get64(v.payload + 16);
            break;
        case ST_REC_TRUNCATE: {
            if (v.len != 8) goto malformed;
            raft_index from = le_get64(v.payload);
            if (from < w->first_index && from > w->snap_index) {
                /* Reaches back into a segment that compaction removed (its
                 * entries all lie at or below a later snapshot mark). */
                w->first_index = from;
                w->last_index = from - 1;
                w->n_runs = 0;
                w->n_ents = 0;
            }
            if (from < w->first_index || from > w->last_index + 1) {
                st_storage_errf(err,
                                "wal: %s offset %" PRIu64 ": truncation at %" PRIu64
                                " outside the log [%" PRIu64 ", %" PRIu64 "]",
                                path, off, from, w->first_index, w->last_index);
                return ST_ECORRUPT;
            }
            index_truncate(w, from);
            break;
        }
        case ST_REC_SNAPSHOT:
            if (v.len != 16) goto malformed;
            index_mark_snapshot(w, le_get64(v.payload), le_get64(v.payload + 8));
            {
                size_t k = 0;
                while (k < w->n_ents && w->ents[k].index <= w->snap_index)
                    k++;
                if (k) memmove(w->ents, w->ents + k, (w->n_ents - k) * sizeof(*w->ents));
                w->n_ents -= k;
            }
            break;
        default:
            goto malformed;
        }
        off += v.size;
        continue;
    malformed:
        st_storage_errf(err, "wal: %s offset %" PRIu64 ": malformed record of type %u", path, off,
                        v.type);
        return ST_ECORRUPT;
    }
    s->flushed = s->synced = off;
    return 0;
}

/* After the scan of s: the entries it holds that are still in the log (a
 * suffix of w->ents) move into a buffer of their own size and the
 * whole-file buffer is released. Opening then holds one segment file at a
 * time plus the live entries, not every segment whole: a preallocated
 * segment is mostly zeros, and after compaction most of the first segment
 * holds entries a snapshot covers. */
static int seg_buf_shrink(struct wal *w, struct wal_seg *s)
{
    size_t k = w->n_ents;
    uint64_t bytes = 0;
    while (k > 0 && w->ents[k - 1].buf == s->buf) {
        k--;
        bytes += w->ents[k].len;
    }
    struct raft_buf *nb = NULL;
    if (k < w->n_ents) {
        nb = raft_buf_create(bytes);
        if (!nb) return ST_ENOMEM;
        uint8_t *q = nb->data;
        for (size_t i = k; i < w->n_ents; i++) {
            struct raft_entry *e = &w->ents[i];
            if (e->len) {
                memcpy(q, e->data, e->len);
                e->data = q;
                q += e->len;
            }
            e->buf = nb;
        }
    }
    raft_buf_unref(s->buf);
    s->buf = nb;
    return 0;
}

/* Reads segment `seq` entirely, checks its header and scans it. */
static int open_segment(struct wal *w, uint64_t seq, bool first_seg, bool last_seg,
                        struct st_errbuf *err)
{
    char path[ST_STORAGE_PATH_MAX];
    seg_path(w, seq, path, sizeof(path));
    int fd;
    int rc = w->fs.ops->open(w->fs.self, path, ST_FS_RDWR, &fd);
    if (rc != 0) {
        st_storage_errf(err, "wal: cannot open %s: %s", path, st_strerror(rc));
        return rc;
    }
    uint64_t size = 0;
    rc = w->fs.ops->fsize(w->fs.self, fd, &size);
    if (rc != 0) goto fail_fd;
    if (size > UINT32_MAX) {
        st_storage_errf(err, "wal: %s is too large (%" PRIu64 " bytes)", path, size);
        rc = ST_ECORRUPT;
        goto fail_fd;
    }
    struct raft_buf *buf = raft_buf_create(size);
    if (!buf) {
        rc = ST_ENOMEM;
        goto fail_fd;
    }
    rc = st_read_exact(&w->fs, fd, buf->data, size, 0);
    if (rc != 0) {
        st_storage_errf(err, "wal: cannot read %s: %s", path, st_strerror(rc));
        goto fail_buf;
    }
    w->open_bytes_scanned += size;
    struct st_seg_header h;
    rc = size >= ST_SEG_HEADER_BYTES ? st_seg_header_decode(buf->data, &h) : ST_ECORRUPT;
    if (rc != 0) {
        /* A last segment whose creation was interrupted holds nothing but a
         * partial header: remove it (nothing in it was ever acknowledged). */
        if (last_seg && last_nonzero(buf->data, size) < ST_SEG_HEADER_BYTES) {
            ST_TRACE_WARN("storage", "wal: removing %s, whose creation was interrupted", path);
            raft_buf_unref(buf);
            w->fs.ops->close(w->fs.self, fd);
            rc = w->fs.ops->unlink(w->fs.self, path);
            if (rc == 0) rc = dir_sync(w);
            return rc == 0 ? 1 : rc;
        }
        st_storage_errf(err, "wal: %s: %s segment header at offset 0", path,
                        rc == ST_EINVAL ? "unsupported version in" : "bad magic or checksum in");
        rc = ST_ECORRUPT;
        goto fail_buf;
    }
    if (h.seq != seq) {
        st_storage_errf(err, "wal: %s: header says segment %" PRIu64 ", file name says %" PRIu64,
                        path, h.seq, seq);
        rc = ST_ECORRUPT;
        goto fail_buf;
    }
    if (first_seg) {
        w->first_index = h.first_index;
        w->last_index = h.first_index - 1;
        w->hs = h.hs;
        w->wseq = h.wseq;
        if (h.snap_index) {
            index_mark_snapshot(w, h.snap_index, h.snap_term);
        }
    } else if (h.first_index != w->last_index + 1) {
        st_storage_errf(err,
                        "wal: %s offset 0: segment starts at index %" PRIu64
                        " but the previous one ends at %" PRIu64 " (missing data)",
                        path, h.first_index, w->last_index);
        rc = ST_ECORRUPT;
        goto fail_buf;
    }
    rc = grow((void **)&w->segs, &w->cap_segs, w->n_segs + 1, sizeof(*w->segs));
    if (rc != 0) goto fail_buf;
    struct wal_seg *s = &w->segs[w->n_segs++];
    *s = (struct wal_seg){.seq = seq, .fd = fd, .first_index = h.first_index, .buf = buf};
    if (h.wseq > w->wseq) w->wseq = h.wseq;
    rc = scan_segment(w, s, size, last_seg, err);
    if (rc == 0) rc = seg_buf_shrink(w, s);
    if (rc != 0) return rc; /* the segment is in the table: wal_close frees it */
    if (last_seg && size < w->segment_bytes) {
        rc = w->fs.ops->fallocate(w->fs.self, fd, 0, w->segment_bytes);
        if (rc != 0) st_storage_errf(err, "wal: cannot preallocate %s: %s", path, st_strerror(rc));
    }
    return rc;
fail_buf:
    raft_buf_unref(buf);
fail_fd:
    w->fs.ops->close(w->fs.self, fd);
    if (rc == 0) rc = ST_EIO;
    return rc;
}

static void wal_free(struct wal *w)
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
        spare_path(w, sp, sizeof(sp));
        w->fs.ops->close(w->fs.self, w->spare_fd);
        (void)w->fs.ops->unlink(w->fs.self, sp);
    }
    dio_close(w);
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

int st_wal_open(const struct st_wal_config *cfg, struct st_log_store *out, struct st_errbuf *err)
{
    struct wal *w = calloc(1, sizeof(*w));
    if (!w) return ST_ENOMEM;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->idle, NULL);
    pthread_cond_init(&w->prep_cv, NULL);
    pthread_cond_init(&w->spare_cv, NULL);
    w->spare_fd = -1;
    w->dio_fd = -1;
    w->dir_fd = -1;
    w->fs = cfg->fs ? *cfg->fs : *st_fs_posix();
    w->segment_bytes = cfg->segment_bytes ? cfg->segment_bytes : WAL_SEGMENT_BYTES_DEFAULT;
    w->record_bytes_max =
        cfg->record_bytes_max ? cfg->record_bytes_max : WAL_RECORD_BYTES_MAX_DEFAULT;
    w->first_index = 1;
    w->last_index = 0;
    w->wseq = 1;
    int rc;
    if (w->segment_bytes < 4096 || w->segment_bytes > UINT32_MAX ||
        snprintf(w->dir, sizeof(w->dir), "%s", cfg->dir) >= (int)sizeof(w->dir)) {
        st_storage_errf(err, "wal: bad configuration (segment_bytes %" PRIu64 ", dir %s)",
                        w->segment_bytes, cfg->dir);
        rc = ST_EINVAL;
        goto fail;
    }
    if (w->record_bytes_max > w->segment_bytes - ST_SEG_HEADER_BYTES - 64)
        w->record_bytes_max = (uint32_t)(w->segment_bytes - ST_SEG_HEADER_BYTES - 64);
    rc = st_mkdir_durable(&w->fs, w->dir);
    if (rc != 0) {
        st_storage_errf(err, "wal: cannot create directory %s: %s", w->dir, st_strerror(rc));
        goto fail;
    }
    rc = w->fs.ops->open_dir(w->fs.self, w->dir, &w->dir_fd);
    if (rc != 0) {
        w->dir_fd = -1;
        st_storage_errf(err, "wal: cannot open directory %s: %s", w->dir, st_strerror(rc));
        goto fail;
    }
    struct list_ctx l = {0};
    rc = w->fs.ops->list_dir(w->fs.self, w->dir, list_cb, &l);
    if (rc == 0) rc = l.rc;
    if (rc == 0 && l.foreign[0]) {
        st_storage_errf(err, "wal: %s holds a file that is not a WAL segment: %s", w->dir,
                        l.foreign);
        rc = ST_EMISMATCH;
    }
    if (rc != 0) {
        if (rc != ST_EMISMATCH)
            st_storage_errf(err, "wal: cannot list %s: %s", w->dir, st_strerror(rc));
        free(l.seqs);
        goto fail;
    }
    if (l.spare_seen) { /* never trusted: it may be half written */
        char sp[ST_STORAGE_PATH_MAX];
        spare_path(w, sp, sizeof(sp));
        rc = w->fs.ops->unlink(w->fs.self, sp);
        if (rc != 0) {
            st_storage_errf(err, "wal: cannot remove %s: %s", sp, st_strerror(rc));
            free(l.seqs);
            goto fail;
        }
    }
    if (l.n) qsort(l.seqs, l.n, sizeof(uint64_t), cmp_u64);
    for (size_t i = 1; i < l.n; i++) {
        if (l.seqs[i] != l.seqs[i - 1] + 1) {
            st_storage_errf(err,
                            "wal: %s: segment %016" PRIx64 ".wal is missing (after %016" PRIx64
                            ".wal, before %016" PRIx64 ".wal)",
                            w->dir, l.seqs[i - 1] + 1, l.seqs[i - 1], l.seqs[i]);
            free(l.seqs);
            rc = ST_ECORRUPT;
            goto fail;
        }
    }
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < l.n; i++) {
        rc = open_segment(w, l.seqs[i], i == 0, i + 1 == l.n, err);
        if (rc == 1) { /* an interrupted creation was removed */
            rc = 0;
            break;
        }
        if (rc != 0) {
            free(l.seqs);
            goto fail;
        }
    }
    w->open_scan_ns = now_ns() - t0;
    uint64_t next_seq = l.n ? l.seqs[l.n - 1] + 1 : 1;
    free(l.seqs);
    if (cfg->direct_io && w->segment_bytes % WAL_DIO_ALIGN == 0) {
        w->dio_tail = aligned_alloc(WAL_DIO_ALIGN, WAL_DIO_ALIGN);
        w->dio_buf = aligned_alloc(WAL_DIO_ALIGN, WAL_DIO_BUF);
        w->direct_io = w->dio_tail && w->dio_buf; /* no memory: buffered */
    }
    if (w->n_segs == 0) {
        /* A new WAL's first segment is zero-filled like a spare, here on the
         * opening thread (nothing waits on this WAL yet): fallocated, each
         * of its first 64 MiB of syncs would also convert an extent and
         * write the inode (4 KiB synced appends here: 101-110 -> 160-210 us,
         * 41 -> 68-95 us of CPU). If that fails it is fallocated. */
        if (cfg->spare_segments) first_segment_zeroed(w);
        rc = seg_create(w, next_seq);
        if (rc == 0) {
            rc = w->fs.ops->fdatasync(w->fs.self, cur_seg(w)->fd);
            if (rc == 0) rc = dir_sync(w);
            cur_seg(w)->synced = cur_seg(w)->flushed;
            w->dir_dirty = false;
        }
        if (rc != 0) {
            st_storage_errf(err, "wal: cannot create the first segment in %s: %s", w->dir,
                            st_strerror(rc));
            goto fail;
        }
    }
    w->wseq++; /* new writes are newer than anything on disk */
    if (cfg->spare_segments) {
        w->spare_segments = true;
        if (pthread_create(&w->prep, NULL, prep_main, w) == 0) {
            w->prep_started = true;
        } else {
            ST_TRACE_WARN("storage", "wal: no spare-segment thread; segments are fallocated");
            w->prep_failed = true;
        }
    }
    out->ops = &wal_ops;
    out->self = w;
    return 0;
fail:
    wal_free(w);
    return rc;
}

static int wal_load(void *self, raft_index after, struct st_log_state *out, struct st_errbuf *err)
{
    struct wal *w = self;
    memset(out, 0, sizeof(*out));
    if (w->loaded) return ST_EINVAL;
    w->loaded = true;
    if (w->first_index > after + 1) {
        st_storage_errf(err,
                        "wal: %s starts at index %" PRIu64 " but the snapshot ends at %" PRIu64
                        ": entries %" PRIu64 "..%" PRIu64 " are missing",
                        w->dir, w->first_index, after, after + 1, w->first_index - 1);
        return ST_EUNAVAILABLE;
    }
    out->hard_state = w->hs;
    raft_index first = after + 1 > w->first_index ? after + 1 : w->first_index;
    out->first_index = first;
    out->last_index = w->last_index >= first ? w->last_index : first - 1;
    out->prev_term = first - 1 == w->snap_index ? w->snap_term : 0;
    size_t n = (size_t)(out->last_index + 1 - first);
    if (n) {
        out->entries = malloc(n * sizeof(*out->entries));
        if (!out->entries) return ST_ENOMEM;
        /* w->ents is contiguous and ends at last_index */
        ST_ASSERT(w->n_ents >= n && w->ents[w->n_ents - 1].index == w->last_index);
        const struct raft_entry *src = w->ents + (w->n_ents - n);
        /* The payloads after `after` move into buffers of their own size
         * (up to WAL_LOAD_CHUNK_BYTES each, or one entry): the segment
         * buffers also hold the entries the snapshot covers. */
        for (size_t i = 0; i < n;) {
            uint64_t bytes = src[i].len;
            size_t k = i + 1;
            while (k < n && bytes + src[k].len <= WAL_LOAD_CHUNK_BYTES)
                bytes += src[k++].len;
            struct raft_buf *chunk = raft_buf_create(bytes);
            if (!chunk) {
                for (size_t j = 0; j < i; j++)
                    raft_buf_unref(out->entries[j].buf);
                free(out->entries);
                out->entries = NULL;
                return ST_ENOMEM;
            }
            uint8_t *q = chunk->data;
            for (size_t j = i; j < k; j++) {
                out->entries[j] = src[j];
                out->entries[j].buf = chunk;
                raft_buf_ref(chunk);
                if (src[j].len) {
                    memcpy(q, src[j].data, src[j].len);
                    out->entries[j].data = q;
                    q += src[j].len;
                }
            }
            raft_buf_unref(chunk); /* the entries hold the references */
            i = k;
        }
        if (first > 1 && w->n_ents > n) out->prev_term = w->ents[w->n_ents - n - 1].term;
    }
    out->n_entries = n;
    /* the store keeps no payloads in memory after load */
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_segs; i++) {
        raft_buf_unref(w->segs[i].buf);
        w->segs[i].buf = NULL;
    }
    free(w->ents);
    w->ents = NULL;
    w->n_ents = w->cap_ents = 0;
    pthread_mutex_unlock(&w->mu);
    return 0;
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

static const struct st_log_store_ops wal_ops = {
    .load = wal_load,
    .append = wal_append,
    .sync = wal_sync,
    .compact = wal_compact,
    .read = wal_read,
    .bounds = wal_bounds,
    .close = wal_close,
};
