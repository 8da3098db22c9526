/* Internals of the write-ahead log, shared by the files of src/storage/wal*:
 * the segment table, the index of entry runs, struct wal, its bounds, and
 * the functions that cross files. The design (write path, recovery,
 * locking) is described at the top of wal.c; formats in docs/DISK-FORMAT.md.
 *
 * Files: wal.c (the index, staging, append, sync, read, close, the ops
 * table), wal_segment.c (segment files: create, roll, remove, spare
 * segments made by the helper thread), wal_dio.c (direct I/O writes),
 * wal_recovery.c (open: list, scan with torn tail vs corruption, load).
 */
#ifndef ST_STORAGE_WAL_INT_H
#define ST_STORAGE_WAL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "stcache/storage.h"
#include "storage/common.h"
#include "storage/record.h"
#include "util/assert.h"

#define WAL_SEGMENT_BYTES_DEFAULT (64ull << 20)
#define WAL_RECORD_BYTES_MAX_DEFAULT (64u << 20)
#define WAL_SEGMENTS_MAX 100000
/* The largest index recovery accepts from disk (segment headers, records):
 * far beyond any real log, and low enough that index + 1 and first + count
 * never wrap. A larger one is corruption. */
#define WAL_INDEX_MAX (UINT64_C(1) << 62)
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
    bool appending;      /* an append waits in wal_roll(): do not seal half a batch */
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

/* CLOCK_MONOTONIC in ns (times the open scan). */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

#define WAL_SPARE_NAME "spare.wal.tmp"
#define WAL_ZERO_CHUNK (1u << 20)
#define WAL_DIO_BUF (256u << 10) /* bounce buffer: resident up to the largest write */
#define WAL_DIO_ALIGN ((uint64_t)ST_FS_DIRECT_ALIGN)

/* The segment being written: the last one (there is one once open). */
static inline struct wal_seg *cur_seg(struct wal *w)
{
    ST_ASSERT(w->n_segs > 0);
    return &w->segs[w->n_segs - 1];
}

/* Grows the array *arr of *cap elements of elem bytes to hold need:
 * 0, or ST_ENOMEM with *arr and *cap unchanged. */
static inline int grow(void **arr, size_t *cap, size_t need, size_t elem)
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

/* ---------------------------------------------------------------- across files
 * Unless said otherwise: called with w->mu held, on the thread that writes
 * (append, sync, roll), or during open/close when no other thread runs. */

/* wal.c */
/* The ops table of a WAL store (st_wal_open hands it out). */
extern const struct st_log_store_ops wal_ops;
/* Drops the index entries >= from (a truncated suffix). */
void wal_index_truncate(struct wal *w, raft_index from);
/* The log is covered up to (index, term) by a snapshot. */
void wal_index_mark_snapshot(struct wal *w, raft_index index, raft_term term);
/* Makes the store fatal (every later call fails), tracing `what` and rc the
 * first time. Never undone: a failed write or sync is not retried. */
void wal_set_fatal(struct wal *w, const char *what, int rc);
/* Stops the helper thread, closes every descriptor and frees w. Any state. */
void wal_free(struct wal *w);
/* ops->load: see st_log_store_ops in stcache/storage.h (wal_recovery.c). */
int wal_load(void *self, raft_index after, struct st_log_state *out, struct st_errbuf *err);

/* wal_segment.c */
/* The path of segment seq (or of the spare) into out[cap]. */
void wal_seg_path(const struct wal *w, uint64_t seq, char *out, size_t cap);
void wal_spare_path(const struct wal *w, char *out, size_t cap);
/* fsync of the WAL directory, through the handle kept open. */
int wal_dir_sync(struct wal *w);
/* The helper thread (pthread start routine, arg: the wal): keeps one spare
 * segment ready until prep_stop. */
void *wal_prep_main(void *arg);
/* st_wal_open of an empty WAL (no helper thread yet): a spare made on this
 * thread, for wal_seg_create to take as the first segment. Without mu. */
void wal_first_segment_zeroed(struct wal *w);
/* Creates segment `seq` with a header describing the current state. On
 * failure nothing remains (the file is removed). */
int wal_seg_create(struct wal *w, uint64_t seq);
/* Moves to a new segment: the current one is flushed and made durable first
 * (a segment with a successor is always complete on disk). */
int wal_roll(struct wal *w);
/* Removes whole segments whose entries are all <= index (never the current). */
void wal_drop_segments_below(struct wal *w, raft_index index);
/* The segment with sequence number seq, or NULL. */
struct wal_seg *wal_seg_by_seq(struct wal *w, uint64_t seq);

/* wal_dio.c */
/* Closes the O_DIRECT descriptor, if any (direct I/O stays on). */
void wal_dio_close(struct wal *w);
/* Writes len bytes at off of segment `seq` (buffered fd `fd`) and, when
 * `sync`, makes them durable: direct I/O when on, else pwrite + fdatasync.
 * Failures are the caller's to make fatal. Without mu when called by a
 * sync in flight (see struct wal). */
int wal_write_out(struct wal *w, uint64_t seq, int fd, const uint8_t *data, size_t len,
                  uint64_t off, bool sync);

#endif
