/* stcache durable storage: the write-ahead log, hard state, snapshots, node
 * identity, and the file-system seam they all go through.
 *
 * Layout of a data directory (docs/DISK-FORMAT.md has every byte):
 *
 *     DATA/LOCK                       held (flock) by the one process using DATA; holds its PID
 *     DATA/meta                       identity: magic, version, node id, cluster id, CRC32C
 *     DATA/join-peers                 members learnt from a join answer (small file)
 *     DATA/wal/<seq:016x>.wal         WAL segments, preallocated, append-only
 *     DATA/snap/<term:016x>-<index:016x>/{meta,data}   snapshots (newest N kept)
 *
 * Pieces, from the bottom:
 *
 *   struct st_fs          every file operation, behind function pointers: the
 *                         real one (st_fs_posix) and an in-memory one that
 *                         models the page cache and injects faults and power
 *                         loss (st_fs_sim_*), for crash tests.
 *   struct st_log_store   the log store interface (hashicorp/raft's LogStore +
 *                         StableStore in one): load, append, sync, compact,
 *                         read, close. Two implementations pass the same tests:
 *                         st_mem_log_create (memory) and st_wal_open (durable).
 *   struct st_log_writer  group commit on a thread of its own: the node submits
 *                         batches; the writer takes ALL queued batches, writes
 *                         them, does ONE fdatasync, and calls back (on the
 *                         writer thread) with what is now durable.
 *   struct st_snap_store  snapshot files: streaming writer and reader, rotation.
 *   st_identity_*         DATA/meta: node id and cluster id.
 *   st_storage_open       all of the above for one data directory, returning
 *                         what a node restarts from.
 *
 * Threads: a log store is used by one thread at a time for append/sync/
 * compact (the writer thread once a st_log_writer runs on it); read and
 * bounds may be called concurrently from one other thread (the node's loop).
 * Stores never take or drop raft_buf references except in load and read,
 * which run on the caller's thread and hand back buffers with one reference
 * each (DESIGN: raft_buf refcounts are single-threaded).
 *
 * Errors: 0 or a negative ST_E* code (stcache/errors.h). Every refusal to
 * start (corruption, foreign directory, identity mismatch, gap in the log) is
 * also written as a trace line naming the file and the byte offset, and copied
 * into the caller's error buffer when one is given (struct st_errbuf).
 */
#ifndef STCACHE_STORAGE_H
#define STCACHE_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stcache/api.h"
#include "stcache/errors.h"
#include "stcache/raft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Optional human-readable reason for a failure; filled when buf != NULL. */
struct st_errbuf {
    char *buf;
    size_t cap;
};

/* =================================================================== fs */

/* Open flags for st_fs.open (a small portable subset). */
enum st_fs_open_flags {
    ST_FS_READ = 0,        /* read only */
    ST_FS_RDWR = 1 << 0,   /* read and write */
    ST_FS_CREATE = 1 << 1, /* create if missing */
    ST_FS_EXCL = 1 << 2,   /* with CREATE: fail with ST_EEXIST if present */
    ST_FS_TRUNC = 1 << 3,  /* truncate to 0 on open */
    /* Direct I/O: reads and writes bypass the page cache (O_DIRECT). Buffer
     * addresses, offsets and lengths must be multiples of ST_FS_DIRECT_ALIGN
     * (ST_EINVAL otherwise, nothing transferred). open fails with ST_EINVAL
     * where the file system has no direct I/O (tmpfs). */
    ST_FS_DIRECT = 1 << 4,
};

#define ST_FS_DIRECT_ALIGN 4096u

/* Called once per directory entry (not "." or ".."); return nonzero to stop. */
typedef int (*st_fs_list_cb)(void *ctx, const char *name);

/* The file-system seam. Every function returns 0 or a negative ST_E* code
 * (errno translated once, inside the implementation). File handles are small
 * non-negative ints chosen by the implementation. Durability contract, which
 * the simulated fs enforces on a crash:
 *   - data written with pwrite is durable only after fdatasync/fsync of that
 *     file returns 0;
 *   - a created, renamed or removed name is durable only after sync_dir of its
 *     parent directory returns 0;
 *   - after a failed fdatasync/fsync the state of the file is unknown (never
 *     retry and assume success). */
struct st_fs_ops {
    int (*open)(void *self, const char *path, int flags, int *fd_out);
    int (*close)(void *self, int fd);
    /* Reads up to len bytes at off; *n_out < len only at end of file. */
    int (*pread)(void *self, int fd, void *buf, size_t len, uint64_t off, size_t *n_out);
    /* Writes all len bytes at off or fails (ST_ENOSPC, ST_EIO, ...); a failed
     * write may have written any prefix. */
    int (*pwrite)(void *self, int fd, const void *buf, size_t len, uint64_t off);
    int (*fdatasync)(void *self, int fd);
    /* pwrite, then durable as after fdatasync, in one call where the platform
     * has one (Linux: pwritev2 with RWF_DSYNC; with a FUA-capable disk and a
     * direct fd, one device write and no separate cache flush). Same
     * contract as pwrite + fdatasync, failures included. */
    int (*pwrite_sync)(void *self, int fd, const void *buf, size_t len, uint64_t off);
    int (*fsync)(void *self, int fd);
    /* Reserves [off, off+len) (file size grows to at least off+len, new bytes read as zero). */
    int (*fallocate)(void *self, int fd, uint64_t off, uint64_t len);
    int (*ftruncate)(void *self, int fd, uint64_t len);
    int (*fsize)(void *self, int fd, uint64_t *size_out);
    int (*rename)(void *self, const char *from, const char *to);
    int (*unlink)(void *self, const char *path);
    int (*mkdir)(void *self, const char *path); /* ST_EEXIST if present */
    int (*rmdir)(void *self, const char *path);
    /* fsync of a directory: makes creations, renames and removals in it durable. */
    int (*sync_dir)(void *self, const char *path);
    /* ST_ENOENT if the directory does not exist. Order of names is unspecified. */
    int (*list_dir)(void *self, const char *path, st_fs_list_cb cb, void *ctx);
    /* 0 if path exists; *is_dir set when is_dir != NULL. ST_ENOENT otherwise. */
    int (*stat)(void *self, const char *path, bool *is_dir);
    /* Optional (NULL: none): starts writing back the dirty pages of
     * [off, off + len) without waiting for them (sync_file_range WRITE), so
     * that a later fsync of a large file finds little left to write. A hint:
     * it makes nothing durable and its failure is ignored. */
    int (*writeback)(void *self, int fd, uint64_t off, uint64_t len);
    /* Opens directory `path` for sync_dir_fd (close with close). Lets a store
     * keep its directory's handle, so that making a name durable needs no new
     * descriptor (none may be left: ST_ENFILE). */
    int (*open_dir)(void *self, const char *path, int *fd_out);
    /* sync_dir through a handle from open_dir; same contract as sync_dir. */
    int (*sync_dir_fd)(void *self, int fd);
    /* Takes an exclusive lock on file `path` (created if missing; its parent
     * must exist), held until *fd_out is closed, and records the caller's
     * process id in the file. ST_EBUSY when another holder has it (another
     * process, or another open of the same path in this one): nothing is
     * held then, and *holder_pid_out is the id recorded by the holder (0 if
     * unknown). POSIX: flock(LOCK_EX | LOCK_NB), released by the kernel when
     * the process dies. */
    int (*lock)(void *self, const char *path, int *fd_out, uint64_t *holder_pid_out);
};

struct st_fs {
    const struct st_fs_ops *ops;
    void *self;
};

/* The real file system (POSIX, Linux fallocate/fdatasync). Static; never freed. */
ST_API const struct st_fs *st_fs_posix(void);

/* ---- the simulated, fault-injecting fs (tests and the cluster simulator) --
 *
 * Files live in memory. The sim keeps, per file, the durable content (as of
 * its last fsync/fdatasync) and the writes made since; per directory, the
 * durable set of names (as of its last sync_dir). Faults:
 *   - crash point: the Nth mutating or syncing operation (pwrite, fdatasync,
 *     fsync, sync_dir, fallocate, ftruncate, rename, unlink, mkdir, rmdir, open
 *     with CREATE) and every later one fail with ST_EIO, as if power failed
 *     while it ran; st_fs_sim_crash() then rebuilds what a disk would hold;
 *   - space quota: pwrite/fallocate beyond it fail with ST_ENOSPC (writing
 *     nothing), until the quota is raised;
 *   - fail the next fdatasync/fsync with ST_EIO;
 *   - flip a bit in a file (durable content and current content alike).
 * Thread-safe (one mutex), so a st_log_writer thread may use it. */
struct st_fs_sim;

/* A new, empty simulated disk: 0 and *out (free with st_fs_sim_destroy), or
 * ST_ENOMEM. */
ST_API int st_fs_sim_create(struct st_fs_sim **out);
/* Frees the sim and every file in it; nothing may use its fs view after. */
ST_API void st_fs_sim_destroy(struct st_fs_sim *sim);
/* The seam view of the sim; valid until st_fs_sim_destroy. */
ST_API const struct st_fs *st_fs_sim_fs(struct st_fs_sim *sim);

/* Number of crash-able operations performed so far (see above). */
ST_API uint64_t st_fs_sim_op_count(const struct st_fs_sim *sim);
/* Arms a crash at operation number op (1-based, counted from creation);
 * 0 disarms. */
ST_API void st_fs_sim_crash_at(struct st_fs_sim *sim, uint64_t op);
ST_API bool st_fs_sim_crashed(const struct st_fs_sim *sim);

enum st_fs_sim_crash_mode {
    ST_FS_SIM_LOSE_UNSYNCED = 0, /* only durable data and names survive */
    ST_FS_SIM_KEEP_TORN = 1,     /* unsynced writes survive in order; the write
                                    interrupted by the crash keeps torn_bytes bytes */
};
/* Simulates the power loss and the reboot: every file and directory is rebuilt
 * from its durable state (plus, in KEEP_TORN mode, the unsynced writes in
 * order and a prefix of the interrupted one), open handles are invalidated,
 * the crash point is disarmed and the op counter keeps counting. Callable
 * without an armed crash (power loss "now"). Returns the size of the write
 * the crash interrupted (0 if the crash did not hit a pwrite). */
ST_API size_t st_fs_sim_crash(struct st_fs_sim *sim, enum st_fs_sim_crash_mode mode,
                              size_t torn_bytes);

/* pwrite/fallocate fail with ST_ENOSPC once the total file bytes would
 * exceed quota_bytes (UINT64_MAX: unlimited, the default). */
ST_API void st_fs_sim_set_quota(struct st_fs_sim *sim, uint64_t quota_bytes);
/* The next n fdatasync/fsync calls fail with ST_EIO (data stays unsynced). */
ST_API void st_fs_sim_fail_syncs(struct st_fs_sim *sim, uint32_t n);
/* Flips bit `bit` (0..7) of byte `off` of path, in durable and current content.
 * ST_ENOENT / ST_EINVAL when path or offset do not exist. */
ST_API int st_fs_sim_flip_bit(struct st_fs_sim *sim, const char *path, uint64_t off, unsigned bit);
/* Opening exactly `path` fails with ST_EPERM from now on (an unreadable
 * file); NULL clears. */
ST_API void st_fs_sim_deny(struct st_fs_sim *sim, const char *path);
/* Direct I/O (ST_FS_DIRECT) of the simulated disk: transfers must be
 * multiples of `align` (ST_FS_DIRECT_ALIGN by default; more, as a disk with
 * larger blocks would, makes them fail with ST_EINVAL); 0: opening with
 * ST_FS_DIRECT fails with ST_EINVAL, as on a file system without it. */
ST_API void st_fs_sim_set_direct_align(struct st_fs_sim *sim, uint32_t align);
/* At most n handles open at once (open, open_dir and lock fail with
 * ST_ENFILE beyond, as with EMFILE); the default is the sim's table size. */
ST_API void st_fs_sim_set_fds_max(struct st_fs_sim *sim, uint32_t n);
/* Handles open now. */
ST_API uint32_t st_fs_sim_fds_open(struct st_fs_sim *sim);
/* Current size of a file, or ST_ENOENT. */
ST_API int st_fs_sim_file_size(struct st_fs_sim *sim, const char *path, uint64_t *size_out);

/* ============================================================ log store */

/* One unit of work for a log store, applied in this order:
 *   1. snapshot_index (if != 0): the log is now covered up to snapshot_index
 *      (term snapshot_term) by a durable snapshot: entries <= it are no longer
 *      returned; whole WAL segments below it are removed; if the log ended
 *      before it, the log becomes empty and continues at snapshot_index + 1.
 *      The snapshot itself must already be committed in the snapshot store.
 *   2. truncate_from (if != 0), or else entries[0].index when it is <= the
 *      last index: every entry at or above it is discarded (conflicting
 *      suffix, Raft figure 3.1). The discard is durable no later than any
 *      entry written after it (same sync).
 *   3. entries: contiguous, entries[0].index == last index + 1 after step 1-2.
 *   4. hard_state (if != NULL): replaces the stored hard state.
 * Nothing is durable until a sync returns 0. The store copies what it keeps
 * (payload bytes included) before append returns; it never touches
 * entries[i].buf's reference count. */
struct st_log_batch {
    raft_index snapshot_index;
    raft_term snapshot_term;
    raft_index truncate_from;
    const struct raft_entry *entries;
    size_t n_entries;
    const struct raft_hard_state *hard_state;
};

/* What load returns. entries[i].buf each hold one reference owned by this
 * struct (several entries may share one buf); release with
 * st_log_state_release() on the thread that will use the buffers. */
struct st_log_state {
    struct raft_hard_state hard_state; /* zero if never written */
    /* The log covers (first_index - 1, last_index]; entries has
     * last_index - first_index + 1 elements. Empty: last_index == first_index - 1. */
    raft_index first_index;
    raft_index last_index;
    raft_term prev_term; /* term of first_index - 1 when known from a snapshot mark, else 0 */
    struct raft_entry *entries;
    size_t n_entries;
};
/* Drops the entries' references and frees the array (entries = NULL, n_entries =
 * 0); the bounds and hard state stay. Safe to call twice. */
ST_API void st_log_state_release(struct st_log_state *st);

struct st_log_store_ops {
    /* Loads everything durable, skipping entries <= after_index (the snapshot
     * the caller restores; 0 for none). Called once, right after open and
     * before any append (the WAL refuses appends before it: ST_EINVAL).
     * ST_EUNAVAILABLE (with a message) when the log has a gap after
     * after_index (its first entry is > after_index + 1 and it is not empty). */
    int (*load)(void *self, raft_index after_index, struct st_log_state *out,
                struct st_errbuf *err);
    /* Stages a batch (see struct st_log_batch). ST_EINVAL for a non-contiguous
     * batch; ST_ENOSPC when the disk is full, or ST_ENFILE when a file (a new
     * segment) cannot be opened for want of descriptors: nothing of the batch
     * is kept and the store stays usable (the same batch may be retried);
     * ST_EFATAL once a sync has failed. */
    int (*append)(void *self, const struct st_log_batch *b);
    /* Makes everything appended so far durable (one fdatasync, plus the
     * directory when segments were created). A failure is fatal for the store:
     * this and every later append/sync return ST_EFATAL. */
    int (*sync)(void *self);
    /* Same as an append of a batch with only snapshot_index/term set. */
    int (*compact)(void *self, raft_index index, raft_term term);
    /* Reads entries [lo, hi) into out[0 .. hi-lo), each with its own buf
     * reference (caller's thread; release with raft_buf_unref). ST_ECOMPACTED
     * if lo < first index, ST_EUNAVAILABLE if hi - 1 > last index. Reads what
     * was appended (durable or not). */
    int (*read)(void *self, raft_index lo, raft_index hi, struct raft_entry *out);
    /* Current first and last index (appended, not necessarily durable). */
    void (*bounds)(void *self, raft_index *first, raft_index *last);
    /* Releases the store (no sync). */
    void (*close)(void *self);
};

struct st_log_store {
    const struct st_log_store_ops *ops;
    void *self;
};

/* In-memory store: everything "durable" at once; for tests, simulation and
 * examples/inmem. Fills *out (release with out->ops->close); returns 0 or
 * ST_ENOMEM. load returns an empty log the first time; sync never fails. */
ST_API int st_mem_log_create(struct st_log_store *out);

/* ---------------------------------------------------------------- WAL */

struct st_wal_config {
    const struct st_fs *fs;    /* NULL: st_fs_posix() */
    const char *dir;           /* the wal directory (created if missing) */
    uint64_t segment_bytes;    /* preallocated size per segment; 0: 64 MiB */
    uint32_t record_bytes_max; /* largest record; 0: 64 MiB (<= segment_bytes - header) */
    /* 1: a helper thread keeps the next segment ready, written full of zeros
     * and synced (DIR/spare.wal.tmp, renamed in at the roll). Appends then
     * overwrite initialized blocks, and fdatasync has no extent metadata to
     * write (a fallocated segment's blocks are "unwritten": ext4 writes the
     * inode synchronously in every sync that touches a new block; 4 KiB
     * appends synced one by one: 230 -> 150 us with three writers). 0: each
     * segment is fallocated at the roll. Needs a thread-safe fs (posix). */
    int spare_segments;
    /* 1: appends to the current segment use direct I/O (ST_FS_DIRECT) and
     * one write-and-sync call (pwrite_sync): no page-cache copy and no
     * writeback pass per sync. The partial last block is kept in memory and
     * rewritten whole, padded with zeros (what the segment holds past its end
     * anyway). Falls back to buffered writes, with a trace line, where the fs
     * refuses direct I/O. Needs segment_bytes a multiple of ST_FS_DIRECT_ALIGN
     * (off otherwise). A sync of 4 KiB here: 38-44 -> 24-26 us of CPU. */
    int direct_io;
};

/* Opens (creating if needed) the WAL in cfg->dir: scans every segment once,
 * rebuilds the in-memory index, cuts a torn tail of the last segment (trace
 * line) and refuses to start (ST_ECORRUPT, message naming file and offset) on
 * a bad record elsewhere, a missing segment or a gap. Call ops->load next. */
ST_API int st_wal_open(const struct st_wal_config *cfg, struct st_log_store *out,
                       struct st_errbuf *err);

struct st_wal_stats {
    uint64_t segments;
    uint64_t bytes_written; /* since open */
    uint64_t syncs;         /* fdatasync calls since open */
    uint64_t open_scan_ns;  /* time spent scanning at open (startup measurement) */
    uint64_t open_bytes_scanned;
    uint64_t spares_used;   /* segments that were zero-filled spares (spare_segments) */
    uint64_t direct_writes; /* appends written with direct I/O (direct_io) */
    bool direct_io;         /* direct I/O in use (configured and not given up) */
};
/* Only for a store made by st_wal_open. */
ST_API void st_wal_stats_get(const struct st_log_store *store, struct st_wal_stats *out);
/* Blocks until a spare segment is ready: 0, or ST_EUNAVAILABLE when there
 * will be none (spare_segments off, or preparing one failed: the WAL then
 * fallocates as without spares). For tests and benchmarks. */
ST_API int st_wal_spare_wait(const struct st_log_store *store);

/* ====================================================== async group commit */

struct st_log_writer;

struct st_log_writer_result {
    /* Every batch with sequence number <= seq (and > the previous result's
     * seq) is finished with this status. */
    uint64_t seq;
    int status; /* 0, ST_ENOSPC (those batches were not kept), ST_EFATAL */
    /* What is durable after this result (unchanged when status != 0). */
    raft_index durable_index; /* last durable entry's index (0: none) */
    raft_term durable_term;
    struct raft_hard_state hard_state;
    /* true: delivered by st_log_writer_write_now on the caller's thread,
     * before it returns; false: on the writer's own thread. */
    bool on_caller_thread;
};

/* Called on the WRITER thread, once per group commit, in seq order (or on
 * the caller's thread inside st_log_writer_write_now). Must not block for
 * long and must not call back into the writer's submit. */
typedef void (*st_log_writer_cb)(void *ctx, const struct st_log_writer_result *res);

struct st_log_writer_config {
    uint32_t queue_batches_max; /* submit returns ST_EBUSY past it; 0: 4096 */
    uint32_t group_bytes_max;   /* payload bytes per group commit; 0: 16 MiB */
};

/* Starts the writer thread on `store` (borrowed: stays the caller's, must
 * outlive the writer; nobody else may append to it meanwhile). */
ST_API int st_log_writer_create(struct st_log_store *store, const struct st_log_writer_config *cfg,
                                st_log_writer_cb cb, void *ctx, struct st_log_writer **out);
/* Queues a batch; returns its sequence number (1, 2, ...) in *seq_out.
 * The writer copies the batch descriptor, the hard state and the entry
 * structs; the payload bytes (entries[i].data) must stay valid until a result
 * with seq >= *seq_out was delivered (the caller holds raft_buf references).
 * ST_EBUSY when the queue is full, ST_EFATAL after a fatal sync failure,
 * ST_ECLOSED after stop. */
ST_API int st_log_writer_submit(struct st_log_writer *w, const struct st_log_batch *b,
                                uint64_t *seq_out);
/* The same batch written and synced on the CALLING thread, when the writer
 * is idle (nothing queued, encoding or syncing): no hand-off to the writer's
 * threads and back, which at low load costs more than the write itself.
 * The callback runs on the calling thread before this returns (with
 * on_caller_thread set), with the batch's sequence number in *seq_out and
 * its status (a failed batch is reported like one submitted). Returns 0 once
 * the batch was attempted, ST_EBUSY when the writer is not idle (submit it
 * instead: order is kept either way), ST_EFATAL or ST_ECLOSED as submit. The
 * caller's thread blocks for one append and one fdatasync. Exception: when
 * the store has no descriptor for a new segment (ST_ENFILE), the batch is
 * queued as by submit (ahead of anything submitted since), 0 is returned and
 * its result comes later from the writer's thread (on_caller_thread false);
 * its payload must then stay valid as for submit. */
ST_API int st_log_writer_write_now(struct st_log_writer *w, const struct st_log_batch *b,
                                   uint64_t *seq_out);
/* After a batch failed cleanly (ST_ENOSPC: nothing of it was kept, the store
 * is usable), the writer is halted: every later batch, queued or submitted
 * afterwards, fails with the same status without touching the store, so no
 * batch is ever written after one that was lost. Resuming lets batches be
 * written again; call it only once every submitted batch has been reported,
 * then resubmit the failed ones in their order (the node does this when the
 * disk has room again). No effect on a fatal writer. */
ST_API void st_log_writer_resume(struct st_log_writer *w);
/* Finishes every queued batch (its callbacks run), stops and joins the
 * thread, frees the writer. The store stays open. */
ST_API void st_log_writer_destroy(struct st_log_writer *w);
/* Groups appended to the store and waiting for the syncer (the next sync
 * takes them all). For tests. */
ST_API size_t st_log_writer_queued_groups(struct st_log_writer *w);
/* Appends retried because the store had no file descriptor (ST_ENFILE):
 * such a batch is retried, with a pause, until it goes through (an open is
 * no sync); it fails only when the writer stops first. */
ST_API uint64_t st_log_writer_enfile_retries(struct st_log_writer *w);

/* ============================================================ snapshots */

struct st_snapshot_info {
    struct raft_snapshot_meta meta;
    uint64_t data_bytes;
    uint32_t data_crc; /* CRC32C of the data bytes */
};

struct st_snap_store;
struct st_snap_writer;
struct st_snap_reader;

/* Opens DATA/snap-like directory `dir` (created if missing), removes leftover
 * temporary directories of interrupted writers, keeps the newest `retain`
 * (0: 2) after each commit. Validates the newest snapshot (meta CRC, data
 * CRC); a damaged one is skipped with a warning and the previous one becomes
 * "latest" (st_snap_store_skipped() tells how many were skipped). */
ST_API int st_snap_store_open(const struct st_fs *fs, const char *dir, uint32_t retain,
                              struct st_snap_store **out, struct st_errbuf *err);
/* Closes the store (open readers and writers must be finished first). */
ST_API void st_snap_store_destroy(struct st_snap_store *s);
/* The newest valid snapshot; ST_ENOENT when there is none. */
ST_API int st_snap_store_latest(struct st_snap_store *s, struct st_snapshot_info *out);
/* Number of damaged newer snapshots skipped at open. */
ST_API uint32_t st_snap_store_skipped(const struct st_snap_store *s);

/* Streaming writer: begin -> write* -> commit | abort. commit fsyncs the data
 * and meta, renames the temp directory to its final name, fsyncs the parent,
 * then drops old snapshots beyond `retain`. commit and abort free the writer
 * whatever they return. The data may come from the state machine or from a
 * leader over the network. begin: 0 and *out, or the fs error / ST_ENOMEM.
 * write: appends len bytes; 0 or the fs error (ST_ENOSPC, ST_EIO: abort
 * then). commit: 0 and *info_out (may be NULL) once durable, or the fs error
 * (nothing committed). */
ST_API int st_snap_write_begin(struct st_snap_store *s, struct st_snap_writer **out);
ST_API int st_snap_write(struct st_snap_writer *w, const void *data, size_t len);
ST_API int st_snap_write_commit(struct st_snap_writer *w, const struct raft_snapshot_meta *meta,
                                struct st_snapshot_info *info_out);
ST_API void st_snap_write_abort(struct st_snap_writer *w);

/* Streaming reader of the snapshot at `index` (0: latest). st_snap_read
 * returns *n_out == 0 at the end, and ST_ECORRUPT at the end if the data's
 * CRC32C does not match. open: 0, ST_ENOENT (no such snapshot), the fs error
 * or ST_ENOMEM; read: 0, ST_ECORRUPT, the fs error. Close every opened reader. */
ST_API int st_snap_read_open(struct st_snap_store *s, raft_index index, struct st_snap_reader **out,
                             struct st_snapshot_info *info_out);
ST_API int st_snap_read(struct st_snap_reader *r, void *buf, size_t cap, size_t *n_out);
ST_API void st_snap_read_close(struct st_snap_reader *r);

/* Path of the data file of the snapshot at `index` (0: latest), for a
 * transport that streams it itself (sendfile); the file is immutable but may
 * be removed by rotation once two newer snapshots exist: open it promptly. */
ST_API int st_snap_data_path(struct st_snap_store *s, raft_index index, char *path, size_t cap,
                             struct st_snapshot_info *info_out);

/* ============================================================= identity */

/* DATA/meta. If the directory has no meta file and holds nothing else, it is
 * initialised with (node_id, cluster_id) (fsynced, directory fsynced).
 * Otherwise the stored ids must equal the given ones (ST_EMISMATCH with a
 * message naming both); 0 for either id accepts what is stored. A directory
 * with foreign files and no meta, or a meta with a bad magic/version/CRC, is
 * refused (ST_EMISMATCH / ST_ECORRUPT). Creates `dir` if missing. */
ST_API int st_identity_ensure(const struct st_fs *fs, const char *dir, uint64_t node_id,
                              uint64_t cluster_id, struct st_errbuf *err);
/* Reads DATA/meta; ST_ENOENT if absent. */
ST_API int st_identity_read(const struct st_fs *fs, const char *dir, uint64_t *node_id,
                            uint64_t *cluster_id, struct st_errbuf *err);

/* ========================================================== small files */

/* A small file of the data directory written whole: DATA/NAME holds the
 * payload and its CRC32C (4 bytes, little-endian, after it), replaced
 * atomically (NAME.tmp, fsync, rename, directory fsync), so a reader finds
 * the previous content, the new one, or (never written) none. For the node's
 * own records, such as the members a joining node learnt (DATA/join-peers). */
#define ST_SMALL_FILE_BYTES_MAX (64u * 1024u)

/* Returns 0, ST_ETOOBIG (len > ST_SMALL_FILE_BYTES_MAX), ST_ENOMEM or the
 * fs error (nothing replaced then). */
ST_API int st_small_file_write(const struct st_fs *fs, const char *dir, const char *name,
                               const void *data, size_t len);
/* Copies the payload into buf (cap bytes) and sets *len. ST_ENOENT if the
 * file does not exist, ST_ECORRUPT (with a message) if its checksum or size
 * is wrong, ST_ETOOBIG if the payload exceeds cap. */
ST_API int st_small_file_read(const struct st_fs *fs, const char *dir, const char *name, void *buf,
                              size_t cap, size_t *len, struct st_errbuf *err);

/* ========================================================= directory lock */

/* One process per data directory. */
struct st_dir_lock {
    const struct st_fs *fs;
    int fd; /* -1: not held */
};

#define ST_DIR_LOCK_NAME "LOCK"

/* Creates `dir` with its missing parents (mode 0700, each creation made
 * durable), then takes the lock DIR/LOCK for as long as `out` is held. Call
 * before anything in the directory is read. ST_EBUSY (message naming the
 * directory and the holder's PID) when another process, or another holder
 * in this one, uses the directory. On success release with
 * st_dir_lock_release; on failure nothing is held. */
ST_API int st_dir_lock_acquire(const struct st_fs *fs, const char *dir, struct st_dir_lock *out,
                               struct st_errbuf *err);
/* Releases the lock (no-op when not held). */
ST_API void st_dir_lock_release(struct st_dir_lock *l);

/* ============================================== one data directory, together */

struct st_storage_config {
    const struct st_fs *fs; /* NULL: st_fs_posix() */
    const char *dir;        /* DATA */
    uint64_t node_id;
    uint64_t cluster_id;
    uint64_t segment_bytes;    /* 0: 64 MiB */
    uint32_t snapshots_retain; /* 0: 2 */
};

struct st_storage {
    struct st_log_store log;     /* the WAL in DATA/wal */
    struct st_snap_store *snaps; /* DATA/snap */
};

/* What a node restarts from (feeds struct raft_bootstrap_state). */
struct st_storage_state {
    bool has_snapshot;
    struct st_snapshot_info snapshot; /* valid when has_snapshot */
    struct st_log_state log;          /* entries after the snapshot */
};

/* Checks identity, opens the snapshot store and the WAL, loads. If the newest
 * snapshot is damaged, falls back to the previous one with a warning when the
 * WAL still holds every entry after it; otherwise refuses (ST_ECORRUPT with a
 * message). A newest snapshot that the WAL neither marks nor holds entries
 * after (stored, and the process stopped before the WAL batch that marks
 * it) is marked in the WAL, durably, so that the log goes on after it. On
 * success the caller owns *out (st_storage_close) and state
 * (st_storage_state_release). */
ST_API int st_storage_open(const struct st_storage_config *cfg, struct st_storage **out,
                           struct st_storage_state *state, struct st_errbuf *err);
/* Drops the state's entry references (on the thread that will not use them
 * any more, once raft_create took its own). */
ST_API void st_storage_state_release(struct st_storage_state *state);
/* Closes the WAL (no sync: what was synced is durable) and the snapshot
 * store, frees s. A st_log_writer on s->log must be destroyed first. */
ST_API void st_storage_close(struct st_storage *s);

#ifdef __cplusplus
}
#endif

#endif
