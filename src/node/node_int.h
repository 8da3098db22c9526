/* Internals of the node runtime shared by the files of src/node/. Not for
 * use outside src/node/.
 *
 * Files: node.c (clocks, create/destroy, start, stop), node_ready.c (the
 * ready pipeline: persist, send, apply, advance; the loop hooks),
 * node_persist.c (writes to the log store and the full-disk alarm),
 * node_snapshot.c (making snapshots off the loop, compaction, heap trims),
 * node_install.c (loading and adopting snapshots), node_tick.c (ticks),
 * node_transport.c (peers and transport callbacks), node_join.c (joining,
 * join seeds), node_info.c (inspection), requests.c (waiters, writes, reads,
 * admin), memory.c (memory limit, eviction), metrics.c, config.c. */
#ifndef ST_NODE_NODE_INT_H
#define ST_NODE_NODE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "kv/command.h"
#include "kv/kv.h"
#include "node/node.h"
#include "node/wal_inline.h"
#include "node/watch_history.h"
#include "stcache/raft.h"
#include "stcache/storage.h"
#include "transport/transport.h"
#include "util/list.h"
#include "util/rng.h"

/* ---------------------------------------------------------------- waiters
 *
 * A waiter is one pending client request. They come from a pool (grown in
 * slabs of NODE_WAITER_SLAB, never beyond cfg.waiters_max, recycled through
 * a free list): no malloc per request in the steady state.
 *
 *   FREE --node_put/get/...--> pending in:
 *        the deadline list (all kinds, insertion order = deadline order)
 *        + WRITE: the seq hash (completed when an entry with our request id
 *                 applies); the indexed list when the leader gave an index
 *                 (canceled when another entry applies at that index)
 *        + ADMIN: the indexed list (completed when its index applies)
 *        + READ:  a read round (served when applied >= round index)
 *        + TRANSFER: the transfer list (completed when `to` leads)
 *   pending --complete/fail/timeout--> FREE (unlinked from everything first,
 *        then the callback runs, so a callback may start new requests). */
enum node_waiter_kind {
    NODE_W_FREE = 0,
    NODE_W_WRITE,
    NODE_W_READ,
    NODE_W_ADMIN,
    NODE_W_TRANSFER,
};

#define NODE_WAITER_SLAB 256
#define NODE_KEY_INLINE 48
#define NODE_SEQ_BUCKETS 4096 /* power of two */

struct node_read_round;

struct node_waiter {
    uint8_t kind;
    uint8_t mode;     /* READ: enum raft_read_mode */
    uint8_t admin_op; /* ADMIN: enum raft_conf_op */
    bool in_hash;
    bool in_indexed;
    bool fwd_queued;       /* WRITE: in the forward batch, not sent yet */
    uint64_t seq;          /* WRITE: our request id's sequence number */
    raft_index index;      /* WRITE/ADMIN: index given by the core as leader */
    raft_term orphan_term; /* WRITE forwarded to a leader that fell: the new leader's term */
    /* WRITE forwarded (index 0) when a leader's snapshot was installed here:
     * its entry may be inside the snapshot, where its result cannot be seen,
     * so failing it can only say "outcome unknown", never "not applied". */
    bool outcome_hidden;
    raft_id target; /* ADMIN: member id; TRANSFER: the new leader; WRITE: the leader
                     * known when proposed */
    uint64_t deadline_us;
    union {
        node_write_cb w;
        node_read_cb r;
        node_admin_cb a;
    } cb;
    void *ctx;
    struct node_waiter *hnext; /* seq hash chain */
    struct st_list dlink;      /* n->deadlines */
    struct st_list llink;      /* n->indexed, a read round, n->transfers, n->admin_retry, or free */
    struct node_read_round *round; /* READ */
    struct raft_conf_change *cc;   /* ADMIN waiting to be proposed (heap), else NULL */
    uint64_t mem_charge;           /* WRITE: bytes counted in mem.writes_pending_bytes */
    bool in_retry;                 /* ADMIN: on the admin_retry list */
    uint8_t read_attempts;         /* READ: ReadIndex rounds it was in, past the first */
    uint8_t *key;                  /* READ: key_inline or malloc'd */
    size_t key_len;
    uint8_t key_inline[NODE_KEY_INLINE];
};

/* A write queued on a follower for the next PROPOSE batch to the leader. */
struct node_fwd {
    struct raft_buf *buf; /* one reference, the encoded command */
    uint32_t len;
    uint64_t seq; /* its waiter (looked up again at flush) */
};
#define NODE_FWD_BATCH_MAX 256 /* entries per PROPOSE message */
/* WAL batches submitted and not yet durable past which readies wait: the
 * writer's queue (4096 batches) must never fill (a refused submit is fatal).
 * Reached only when the disk stalls, e.g. while a segment roll waits for a
 * file descriptor; raft then holds the entries and bounds proposals. */
#define NODE_PERSIST_INFLIGHT_MAX 1024

/* ReadIndex rounds one read may be in: a round the core gave up on (its
 * request or answer was lost on the way, or no quorum was heard in time:
 * ST_ETIMEDOUT, after 2 election timeouts) or lost to a leader change (a
 * new leader is known) passes its reads to the next round, as etcd retries
 * ReadIndex, until their deadline or this many rounds. */
#define NODE_READ_ROUNDS_MAX 32

/* One ReadIndex round: every linearizable read of a loop iteration. */
struct node_read_round {
    uint64_t ctx;
    raft_id leader; /* the leader known when it was issued (this node if leader) */
    uint8_t mode;
    bool issued;
    bool resolved;
    raft_index index;
    struct st_list waiters; /* node_waiter.llink */
    struct st_list link;    /* n->rounds once issued, else n->free_rounds (or unlinked) */
};

/* ------------------------------------------------------------ persistence
 *
 * One persist request per ready that had something to persist or had
 * messages to send after persistence. FIFO in submission order; the writer
 * completes them in order (seq), and so does the loop. */
struct node_persist {
    uint64_t seq; /* writer sequence number; 0 = nothing submitted (msgs only, or held) */
    /* The WAL batch, copied (entry structs in ents, payloads referenced by
     * bufs), so that it can be submitted again after the disk was full: a
     * held request waits, in FIFO order, for node_nospace_retry(). */
    bool has_batch;
    bool held;
    struct st_log_batch batch;
    struct raft_hard_state hs;
    struct raft_entry *ents;
    size_t cap_ents;
    raft_index index; /* raft_persisted() arguments (0: none) */
    raft_term term;
    uint64_t submit_us;
    struct raft_buf **bufs; /* references held until durable */
    size_t n_bufs, cap_bufs;
    struct raft_msg *msgs; /* msgs_after_persist, deep-copied (entries arrays + buf refs) */
    size_t n_msgs, cap_msgs;
    struct node_persist *next;
};

/* A received snapshot being made durable on the threadpool
 * (node_transport.c). */
struct node_snap_in_commit {
    uv_work_t work;
    struct node *n;
    struct st_snap_writer *w; /* consumed by the work */
    raft_id from;
    struct raft_snapshot_meta meta;
    struct st_snapshot_info info;
    int rc;
};

/* The file side of a snapshot job: the cursor's bytes of one step are
 * collected in buf[fill] on the loop, then written by one threadpool work
 * while the next step fills the other buffer (at most one write in flight,
 * so the file is written in order and at most two steps are held). Heap
 * object: a job abandoned while a write runs leaves it to the work's
 * completion, which then aborts the writer and frees it (node_snapshot.c). */
struct node_snap_io {
    uv_work_t work;
    struct node *n;
    struct st_snap_writer *w;
    uint8_t *buf[2];
    size_t len[2], cap[2];
    int fill;    /* the buffer the cursor appends to */
    bool busy;   /* the other buffer is being written */
    bool orphan; /* its job was released while busy */
    int rc;      /* first write error */
};

/* A snapshot being written incrementally (node_snapshot.c). */
struct node_snap_job {
    struct kv_snapshot_cursor *cur;
    struct st_snap_writer *w;
    struct node_snap_io *io;
    struct raft_snapshot_meta *meta; /* index, term, conf as of index (heap) */
    char *blob;                      /* kv meta blob (heap) */
    size_t blob_len;
    uint64_t t0;
};

/* A finished snapshot being made durable on the threadpool (node_snapshot.c). */
struct node_snap_commit {
    uv_work_t work;
    struct node *n;
    struct st_snap_writer *w;
    struct raft_snapshot_meta *meta;
    struct st_snapshot_info info;
    int rc;
    uint64_t t0;
    uint64_t written_us; /* time the kv was held (applies waited) */
};

/* A leader's snapshot being loaded into a new kv on the threadpool
 * (node_install.c). */
struct node_install {
    uv_work_t work;
    struct node *n;
    raft_id from;
    struct raft_snapshot_meta meta; /* of the held RAFT_MSG_SNAPSHOT */
    struct raft_msg msg;            /* the held message; msg.snapshot = &meta */
    struct st_snap_store *snaps;
    struct st_snap_reader *rd; /* opened when received (NULL: open it), consumed by the work */
    struct st_snapshot_info rd_info;
    struct kv_config kv_cfg;
    struct kv *kv; /* the loaded state (NULL until loaded, or on failure) */
    uint64_t keys;
    int rc;
    bool loaded; /* the work finished and the message was stepped */
};

/* ------------------------------------------------ memory limit (memory.c) */

#define NODE_MEM_FWD_BATCHES 64

struct node_memory {
    /* Access clocks (LRU), direct-mapped by kv_key_hash: slot = hash << 32 |
     * clock; lossy (a colliding key takes the slot). Local to this node,
     * never replicated. NULL unless an eviction policy is set. */
    uint64_t *access;
    size_t access_cap;             /* power of two */
    uint32_t clock;                /* next access clock */
    struct st_rng rng;             /* sampling */
    uint64_t writes_pending_bytes; /* growth of writes proposed here, not yet answered */
    uint64_t evict_pending_bytes;  /* bytes listed in our EVICTs not yet applied */
    uint32_t evict_inflight;       /* our EVICTs not yet applied (leader) */
    struct kv_evict_key *keys;     /* scratch: KV_EVICT_KEYS_MAX */
    /* Leader: growth admitted for batches of forwarded writes, by the last
     * index of each batch, until it applies (a ring; when full the oldest
     * is forgotten: an underestimate, never a refusal). */
    struct {
        raft_index last;
        uint64_t bytes;
    } fwd[NODE_MEM_FWD_BATCHES];
    uint32_t fwd_head, fwd_n;
    uint64_t fwd_pending_bytes;
};

/* ---------------------------------------------------------------- metrics */

#define NODE_HIST_BUCKETS 14
extern const uint64_t node_hist_bounds_us[NODE_HIST_BUCKETS];

struct node_hist {
    uint64_t counts[NODE_HIST_BUCKETS + 1]; /* last: +Inf */
    uint64_t sum_us;
    uint64_t n;
};
void node_hist_add(struct node_hist *h, uint64_t us);

struct node_metrics {
    struct node_hist fsync;     /* submit -> durable, per batch */
    struct node_hist loop_busy; /* busy time of one loop iteration */
    uint64_t loop_busy_max_us;
    /* The loop thread's CPU time in that longest iteration: far below
     * loop_busy_max_us means it waited (preempted, or blocked in a system
     * call), not computed. And the most CPU time of any one iteration. */
    uint64_t loop_busy_max_cpu_us;
    uint64_t loop_cpu_max_us;
    struct node_hist route_latency[NODE_ROUTE_COUNT];
    uint64_t route_status[NODE_ROUTE_COUNT][6]; /* by status class: 1xx..5xx, index = class */
    uint64_t proposals;
    uint64_t proposals_failed;
    uint64_t writes_ok;
    uint64_t writes_failed;
    uint64_t reads_linearizable;
    uint64_t reads_lease;
    uint64_t reads_stale;
    uint64_t read_rounds;
    uint64_t read_retries; /* reads passed on to a later round */
    uint64_t requests_timed_out;
    uint64_t entries_applied;
    uint64_t snapshots_taken;
    uint64_t snapshots_installed;
    uint64_t memory_trims;
    uint64_t memory_trim_us;
    uint64_t write_batches;
    uint64_t wal_inline_batches;
    uint64_t learners_promoted;
    uint64_t purges_proposed;
    uint64_t readies;
    uint64_t forward_batches;
    uint64_t nospace_alarms; /* times the full-disk alarm was raised */
    uint64_t snapshots_loaded_off_loop;
    uint64_t writes_refused_nospace;
    uint64_t evicted_keys;          /* keys removed by applied EVICT entries */
    uint64_t evictions_proposed;    /* EVICT entries this node proposed as leader */
    uint64_t writes_refused_memory; /* writes refused by --max-memory (507) */
};

/* -------------------------------------------------------------- the node */

struct node_auth;

struct node {
    uv_loop_t *loop;
    struct node_config cfg;
    struct node_auth *auth; /* node_auth.c: NULL without --auth and an admin token file */
    char advertise_raft[NODE_ADDR_MAX];
    char advertise_http[NODE_ADDR_MAX];

    /* state */
    bool started;
    bool running; /* raft core exists and the loop handles are active */
    bool stopping;
    bool fatal; /* storage failed: refuse everything, stop */
    uint64_t cluster_id;
    struct raft *raft;
    struct kv *kv;
    struct st_dir_lock dir_lock; /* DATA/LOCK, held from node_start to stop */
    struct st_storage *storage;
    struct st_log_writer *writer;
    struct st_tr *tr;
    /* Client-port TLS (node_tls.c): the HTTPS/Redis server context and the
     * client context this node calls other members' client ports with;
     * both NULL without --cert-file. */
    struct st_tls_ctx *client_tls_server;
    struct st_tls_ctx *client_tls_client;
    raft_index applied;
    raft_term applied_term;
    raft_index snapshot_index;      /* newest local snapshot */
    raft_index applied_at_snapshot; /* applied when the last snapshot was taken */
    /* Payload bytes of the entries applied after the newest snapshot (begun
     * or installed): the bytes trigger (cfg.snapshot_log_bytes). */
    uint64_t log_bytes_since_snapshot;
    uint64_t last_snapshot_us;
    struct raft_conf conf_applied; /* membership as of `applied` */
    raft_id leader;
    enum raft_role role;
    raft_term term;

    /* transport peers we told tr about, with their raft addresses */
    uint32_t n_tr_peers;
    struct node_peer_addr st_tr_peers[RAFT_MEMBERS_MAX];
    /* members learned from a join reply, until our log teaches us */
    uint32_t n_seed_peers;
    struct node_peer_addr seed_peers[RAFT_MEMBERS_MAX];
    bool conf_dirty;

    /* loop handles */
    uv_timer_t tick_timer;
    uv_check_t check;
    uv_prepare_t prepare;
    uv_idle_t idle;
    uv_async_t persist_async;
    uv_timer_t join_timer;
    uv_timer_t fatal_timer; /* reports a fatal error from a fresh iteration */
    int fatal_code;
    int handles_open;
    bool processing;
    uint64_t pass_applied_bytes; /* committed payload applied in this pass */

    /* writer completions (written by the writer thread under wmu) */
    uv_mutex_t wmu;
    uint64_t w_done_seq;
    int w_status;           /* a fatal writer status (never ST_ENOSPC) */
    uint64_t w_nospace_seq; /* first batch that failed for lack of space since the
                             * last resume (0: none); it and every later one failed */
    /* Full-disk alarm: raised when a WAL batch fails with ST_ENOSPC, cleared
     * once the batches held since have been written. Client writes are
     * refused meanwhile (ST_ENOSPC); reads go on. */
    bool nospace;
    uint64_t nospace_since_us;
    uv_timer_t nospace_timer;
    uint64_t w_done_us;

    /* persist FIFO */
    struct node_persist *persist_head, *persist_tail;
    struct node_persist *persist_free;
    uint64_t persist_inflight;
    uint64_t persist_last_seq; /* newest writer sequence number handed out */
    /* Hard state: the newest from the core, and the newest given to the WAL.
     * A change of the commit index alone is not worth an fdatasync (it is a
     * hint: a restarted node learns the commit from the leader); it rides
     * with the next batch that must sync, or is written once the log has
     * been quiet for NODE_HS_IDLE_TICKS. */
    struct raft_hard_state hs_cur, hs_written;
    uint32_t hs_idle_ticks;
    raft_index recovered_commit; /* commit index after recovery (node_recovered_commit) */
    /* Free heap pages go back to the OS at this tick (0 = not due): set
     * after a snapshot compacts the log or replaces the kv, see
     * node_memory_trim_maybe. */
    uint64_t trim_at_tick;
    uint64_t last_apply_tick; /* ticks when entries were last applied */
    /* WAL writes on the loop thread (cfg.wal_inline_max_us), node/wal_inline.h */
    struct node_wal_inline wal_inline;
    bool wal_inline_done; /* a write_now completed in this ready */

    /* waiters */
    struct node_waiter **slabs;
    size_t n_slabs;
    struct st_list free_waiters; /* node_waiter.llink */
    size_t waiters_total, waiters_used;
    struct node_waiter *seq_hash[NODE_SEQ_BUCKETS];
    uint64_t next_seq;
    struct st_list deadlines; /* node_waiter.dlink, by deadline (FIFO, one timeout) */
    struct st_list indexed;   /* node_waiter.llink, by index, ascending */
    struct st_list transfers; /* node_waiter.llink */
    size_t orphans;           /* writes with orphan_term set */
    struct node_fwd *fwd;     /* follower: writes for the next PROPOSE batch */
    size_t n_fwd, cap_fwd;
    uint32_t fwd_bytes_max; /* payload bytes per PROPOSE (the core's msg_bytes_max) */
    /* node_waiter.llink: conf changes refused with ST_ECONFCHANGE, retried per tick */
    struct st_list admin_retry;

    /* reads */
    struct node_read_round *batch[2]; /* not yet issued, per raft_read_mode */
    struct st_list rounds;            /* node_read_round.link: issued, newest first */
    struct st_list free_rounds;       /* node_read_round.link */
    uint64_t read_ctx;

    /* outbound snapshot job (applies go on while it runs: kv copy-on-write) */
    struct node_snap_job snap_job;
    bool snap_active;
    /* Tests only: while snap_steps_limited, the job takes a loop-pass step
     * only when snap_steps_left > 0 (each step uses one), so a test keeps a
     * job open across writes however fast or slow the disk is. */
    bool snap_steps_limited;
    uint64_t snap_steps_left;
    struct node_snap_commit *snap_commit; /* in flight on the threadpool, or NULL */
    /* node_snapshot_now() callers waiting for the running job or commit */
    struct {
        node_snapshot_cb cb;
        void *ctx;
    } snap_waiters[NODE_SNAP_WAITERS_MAX];
    uint32_t n_snap_waiters;

    /* A leader's snapshot loaded off the loop, then swapped in by the ready
     * that installs it; kvs replaced or discarded are freed on the
     * threadpool (bg_pending counts those works, stop waits for them). */
    struct node_install *install;
    uint32_t bg_pending;
    uint64_t loop_last_ns, loop_idle_last_ns; /* loop_busy_observe */
    uint64_t loop_cpu_last_ns;                /* the loop thread's CPU clock, same */
    struct kv_config kv_cfg;                  /* the kv's configuration (for the kvs of installs) */

    /* inbound snapshot stream */
    /* Inbound snapshot stream (node_transport.c): chunks are collected in
     * snap_in's buffers on the loop and written by the threadpool (one write
     * in flight). While a write runs and NODE_SNAP_IN_HELD_BYTES wait behind
     * it, the transport is paused (snap_in_paused); the end waits for the
     * last write, then the file is made durable on the threadpool
     * (snap_in_commit) before the transport delivers the message. */
    struct node_snap_io *snap_in;
    raft_id snap_in_from;
    struct raft_snapshot_meta snap_in_meta;
    bool snap_in_paused; /* a chunk answered ST_TR_CB_PENDING */
    bool snap_in_ending; /* the end answered ST_TR_CB_PENDING */
    struct node_snap_in_commit *snap_in_commit;
    /* The last snapshot received from a leader, opened for reading as soon
     * as it was stored: installing it then needs no new descriptor (without
     * one the transfer is refused and the leader sends it again, instead of
     * the install failing the node). NULL once used or replaced. */
    struct st_snap_reader *snap_in_rd;
    struct st_snapshot_info snap_in_rd_info;

    /* periodic work, in ticks */
    uint64_t ticks;
    uint64_t last_purge_us;
    uint64_t stamp_last_ms; /* leader: the last timestamp stamped (node_stamp_ms) */
    bool purge_more;        /* the last purge stopped at keys_max: propose again soon */
    /* sessions (node_session.c): the leader's deadlines, in id order, for
     * term sess_term; swapped with sess_tmp at every walk */
    struct node_sess_dl *sess_dl, *sess_tmp;
    uint32_t sess_n, sess_cap;
    uint64_t sess_term;
    uint64_t sess_walk_ms; /* the last walk of the table */
    uint64_t timeouts_checked_us;

    /* command encoding scratch */
    struct kv_limits limits;

    /* lifecycle callbacks */
    node_started_cb started_cb;
    void *started_ctx;
    node_stopped_cb stopped_cb;
    void *stopped_ctx;
    bool st_tr_closed;

    /* join */
    uint32_t join_attempts;
    struct http_client *join_req;

    uint64_t trailing;       /* raft trailing_entries */
    uint64_t trailing_bytes; /* raft trailing_bytes */
    void (*fatal_cb)(struct node *n, int code, void *ctx);
    void *fatal_ctx;

    struct node_memory mem;
    /* Watches (watch.c): the history of change events and the open watches
     * (struct node_watch.link); closes during a notify pass are deferred. */
    struct watch_history whist;
    struct st_list watches;
    uint32_t watches_n;
    bool watch_notifying;
    uint64_t watch_events_sent;
    uint64_t watch_canceled_slow;

    struct node_metrics m;
};

/* memory.c: --max-memory and --eviction-policy */
int node_memory_init(struct node *n);
void node_memory_close(struct node *n);
/* Records an access (read or write) to the key with this kv_key_hash. */
void node_memory_touch(struct node *n, uint32_t hash);
/* Every tick: sizes the access table to the key count. */
void node_memory_tick(struct node *n);
void node_memory_leader_changed(struct node *n, bool leader);
/* After kv_apply: access clocks, evicted keys, our EVICTs in flight. */
void node_memory_applied(struct node *n, const struct kv_result *res);
uint64_t node_memory_used(const struct node *n);
/* Before proposing a write here: 0 (admitted; *charge bytes are counted as
 * pending until node_memory_release), or ST_EMEMLIMIT. May propose an EVICT
 * first (leader, eviction policy). */
int node_memory_admit(struct node *n, const struct kv_command *cmd, uint64_t *charge);
void node_memory_release(struct node *n, uint64_t charge);
/* Leader: steps a PROPOSE forwarded by a follower into the core, with each
 * PUT the limit refuses replaced by a REFUSE command carrying its request
 * id (the follower answers 507), evicting first under an eviction policy.
 * Returns raft_step's result. */
int node_memory_step_forwarded(struct node *n, const struct raft_msg *m);
/* After applying up to `applied`: forwarded growth that applied. */
void node_memory_applied_index(struct node *n, raft_index applied);
/* After applying as leader: evict if used memory is past the limit (writes
 * forwarded by followers are admitted there, evicted for here). */
void node_memory_check_leader(struct node *n);

/* ------------------------------------------------ runtime files (node*.c)
 * All run on the loop thread unless they say otherwise. */

#define NODE_SCRATCH_BYTES (64u * 1024u)
#define NODE_READIES_PER_PASS 64
/* Bytes of committed payload one ready hands out (raft committed_bytes_max)
 * and one pass of the readies applies, at most: a follower catching up on a
 * long log applies it a slice per loop iteration (two passes), not all of
 * what arrived at once. Applying grows the state, and on a VM whose fresh
 * pages cost the host a fault each (~15 us per 4 KiB here) 1 MiB of 4 KiB
 * values applied in one go was 30-60 ms of loop
 * (bench/reliability/snapshot_stall.py). */
#define NODE_APPLY_BYTES_PER_READY (64u * 1024u)
#define NODE_APPLY_BYTES_PER_PASS (32u * 1024u)
/* A WAL batch larger than this is written by the writer threads, never
 * inline on the loop (node/wal_inline.h): copying and writing it would hold
 * the loop for milliseconds per MiB. */
#define NODE_WAL_INLINE_BYTES_MAX (256u * 1024u)
#define NODE_HS_IDLE_TICKS 10     /* quiet ticks before a commit-only hard state is written */
#define NODE_TRIM_DELAY_TICKS 100 /* from a snapshot to malloc_trim (compaction released) */
#define NODE_TRIM_QUIET_TICKS 50  /* ...and no entry applied for this long */
#define NODE_JOIN_RETRY_MS 300
#define NODE_JOIN_ATTEMPTS_MAX 200
#define NODE_LOOP_SLOW_US 50000                       /* a loop iteration this long is traced */
#define NODE_SNAPSHOT_DISK_MARGIN_BYTES (64ull << 20) /* kept free when receiving a snapshot */

/* node.c */
void node_fatal(struct node *n, int code, const char *what);
uint64_t node_wall_ms(void);
/* The timestamp for a command this node appends as leader: its wall clock,
 * never below its previous stamp nor the log clock (docs/KV.md, "Time"). */
uint64_t node_stamp_ms(struct node *n);
/* Leader: stamps the forwarded commands of a PROPOSE with this node's time
 * before the core appends them (a follower's clock never enters the log). */
void node_restamp_forwarded(struct node *n, const struct raft_msg *m);
/* Opens storage, restores, creates the core, writer and transport, and
 * starts the handles. initial_conf: brand-new cluster membership or NULL.
 * 0 or an ST_E* code (what was opened is closed again by node_stop). */
int node_open_and_run(struct node *n, const struct raft_conf *initial_conf);
/* Reports the outcome of node_start() to its callback (once). */
void node_started(struct node *n, int status);
/* Finishes node_stop() once every handle, the transport and the background
 * jobs are done; call after each of them ends. */
void node_stop_maybe_finish(struct node *n);

/* node_ready.c */
void node_process_readies(struct node *n);
/* Whether node_process_readies(n) would do anything now. False means that
 * a loop iteration with no timer due, no I/O, no idle handle and no pending
 * callback changes nothing but the loop metrics node_prepare_cb records
 * (the whole-server simulator skips such iterations). Callable at any
 * time on the loop thread; reads only. */
bool node_has_work(const struct node *n);
/* Sends one message of a ready through the transport (or drops it). */
void node_send_msg(struct node *n, const struct raft_msg *m);
/* Hands a batch to the WAL, written inline when the policy allows
 * (node/wal_inline.h) or queued for the writer's threads; *seq identifies
 * the write. 0 or an ST_E* code. */
int node_wal_write(struct node *n, const struct st_log_batch *b, uint64_t *seq);
/* libuv check/prepare callbacks of the loop (ready processing, loop time). */
void node_check_cb(uv_check_t *h);
void node_prepare_cb(uv_prepare_t *h);

/* node_persist.c: the queue of log-store writes, in order */
/* Queues a WAL batch holding only the hard state when the WAL lacks the
 * current one (a commit index that moved without entries). Behind every
 * batch queued before it; nothing on a full disk, after a fatal error or
 * without a writer. Failures are those of node_persist_write (fatal). */
void node_hard_state_flush(struct node *n);
/* A free persist request; NULL without memory. */
struct node_persist *node_persist_get(struct node *n);
/* Returns p (and what it holds) to the free list. */
void node_persist_release(struct node *n, struct node_persist *p);
/* Appends p to the in-flight queue. */
void node_persist_enqueue(struct node *n, struct node_persist *p);
/* p keeps a reference on b until it completes. 0 or ST_ENOMEM. */
int node_persist_hold_buf(struct node_persist *p, struct raft_buf *b);
/* p keeps a copy of m, sent once p is durable. 0 or ST_ENOMEM. */
int node_persist_copy_msg(struct node_persist *p, const struct raft_msg *m);
/* Starts writing batch b for p (inline_ok: may write on this thread). 0, or
 * an ST_E* code (ST_ENOSPC raises the full-disk alarm instead of failing). */
int node_persist_write(struct node *n, struct node_persist *p, const struct st_log_batch *b,
                       bool inline_ok);
/* Completes every persist request the writer has finished, in order. */
void node_persist_drain(struct node *n);
/* Writer thread: record what is durable, wake the loop. */
void node_writer_cb(void *ctx, const struct st_log_writer_result *res);
/* The loop side of node_writer_cb's wake-up. */
void node_persist_async_cb(uv_async_t *h);

/* node_snapshot.c: making snapshots */
/* Answers every node_snapshot_now() caller (the list is taken first: a
 * callback may ask again). */
void node_snap_waiters_notify(struct node *n, int status, raft_index index);
/* Releases the running job's cursor, buffers and files (abandoned). */
void node_snap_job_release(struct node *n);
/* Appends to io's fill buffer (grown as needed): 0 or ST_ENOMEM. */
int node_snap_io_append(struct node_snap_io *io, const void *data, size_t len);
/* Aborts io's writer (if any) and frees io; not while io->busy. */
void node_snap_io_free(struct node_snap_io *io);
/* Threadpool: writes the buffer handed over (1 - fill); the first error
 * stays in io->rc. */
void node_snap_io_work_cb(uv_work_t *req);
/* Hands io's fill buffer to the threadpool (node_snap_io_work_cb, then
 * after_cb on the loop, which must clear busy and the written buffer's
 * length) and switches to the other buffer; counted in bg_pending. If the
 * threadpool refuses, writes it here: nothing is lost, the loop stalls once. */
void node_snap_io_flush(struct node *n, struct node_snap_io *io, uv_after_work_cb after_cb);
/* Releases the inbound snapshot stream's writer and buffers (aborting its
 * file); a write in flight finishes first and frees them. */
void node_snap_in_release(struct node *n);
/* A malloc_trim() is due NODE_TRIM_DELAY_TICKS from now (after a snapshot
 * or a restore); node_memory_trim_maybe() runs it, off the loop, once
 * nothing was applied for NODE_TRIM_QUIET_TICKS. */
void node_memory_trim_schedule(struct node *n);
void node_memory_trim_maybe(struct node *n);
/* Writes up to `budget` bytes of the running job (0: all of it). Returns 1
 * while more remains, 0 when the job ended. Once every byte went to the
 * snapshot writer the cursor is released, and the files are made durable on
 * the threadpool (sync: here, and *rc_out tells the outcome). */
int node_snapshot_step(struct node *n, size_t budget, bool sync, int *rc_out);
/* The count and bytes triggers (staggered per node id, see node_snapshot.c). */
bool node_snapshot_due(const struct node *n, uint64_t threshold);
bool node_snapshot_due_bytes(const struct node *n);
/* Starts a job when a trigger says so and none runs. */
void node_snapshot_maybe(struct node *n, bool interval_due);

/* node_install.c: loading snapshots */
/* Makes kv (loaded from the snapshot described by info; ownership moves to
 * the node) the node's state; the old kv is freed off the loop. */
void node_snapshot_adopt(struct node *n, struct kv *kv, const struct st_snapshot_info *info,
                         uint64_t keys);
/* Restores the kv from the stored snapshot at index, on the loop (at start,
 * and for a leader's snapshot that was not loaded ahead). 0 or ST_E*. */
int node_snapshot_restore(struct node *n, raft_index index);
/* Frees a held install (its message and the kv loaded for it). */
void node_install_free(struct node *n);
/* Returns true when msg was taken (held while its snapshot loads off the
 * loop; stepped into the core once loaded). */
bool node_install_begin(struct node *n, raft_id from, const struct raft_msg *msg);

/* node_tick.c */
void node_tick_cb(uv_timer_t *t);

/* node_transport.c */
/* Makes the transport's peer set equal to the members of the current and
 * the applied configuration (plus join-reply seeds), with their addresses. */
void node_reconcile_peers(struct node *n);
/* Callbacks given to the transport (struct st_tr_callbacks, ctx: the node). */
void node_tr_msg_cb(void *ctx, raft_id from, const struct raft_msg *msg);
void node_tr_peer_state_cb(void *ctx, raft_id peer, bool connected);
void node_tr_send_failed_cb(void *ctx, raft_id peer, uint8_t type, int status);
int node_tr_snap_begin_cb(void *ctx, raft_id from, const struct raft_msg *msg, uint64_t size);
int node_tr_snap_chunk_cb(void *ctx, raft_id from, uint64_t offset, const uint8_t *data,
                          size_t len);
int node_tr_snap_end_cb(void *ctx, raft_id from, int status);
void node_tr_snap_sent_cb(void *ctx, raft_id to, int status);

/* node_join.c */
/* DATA/join-peers: written from the join answer, read at start. 0 or ST_E*. */
int node_seeds_save(struct node *n);
int node_seeds_load(struct node *n);
/* Asks the next seed to add this node (retried by a timer). */
void node_join_send(struct node *n);

/* requests.c: waiter machinery used by the runtime files */
int node_waiters_init(struct node *n);
void node_waiters_close(struct node *n);
void node_waiters_fail_all(struct node *n, int status);
void node_waiters_expire(struct node *n, uint64_t now_us);
/* After kv_apply of a normal entry: complete our waiter, if any. */
void node_client_applied_kv(struct node *n, raft_index index, const struct kv_result *res);
/* After applying any entry at index: settles indexed waiters <= index. */
void node_client_applied_index(struct node *n, const struct raft_entry *e);
/* A leader's snapshot up to index was installed: the entries it covers are
 * never applied one by one here, so a request waiting for one of them can
 * no longer learn its result (node_client_applied_index). */
void node_client_snapshot_installed(struct node *n, raft_index index);
/* A read state from a ready. */
void node_client_read_state(struct node *n, const struct raft_read_state *rs);
/* Serves reads whose index <= applied. */
void node_client_serve_reads(struct node *n);
/* Issues batched ReadIndex rounds (once per loop iteration). */
void node_client_issue_reads(struct node *n);
/* Leadership notifications. */
void node_client_leader_changed(struct node *n, raft_id leader);
int node_propose_purge(struct node *n);
/* Encodes and proposes cmd (leader or forwarded by the core). */
int node_propose_command(struct node *n, const struct kv_command *cmd, raft_index *index);
/* A client write of any command type (requests.c): a waiter with a request
 * id, proposed here or forwarded to the leader; cb runs once. Errors as
 * node_put's. node_txn (node_txn.c) uses it. */
int node_client_submit(struct node *n, struct kv_command *cmd, node_write_cb cb, void *ctx);

/* node_auth.c (node/auth.h). init: at start, reads --initial-admin-token-file
 * (0, or an error with a one-line reason in why); free: at destroy;
 * invalidate: the kv was replaced (install); tick: every tick, the leader
 * proposes the initial admin while the table is empty. */
int node_auth_init(struct node *n, char *why, size_t why_cap);
void node_auth_free(struct node *n);
void node_auth_invalidate(struct node *n);
void node_auth_tick(struct node *n);
/* node_session.c: the leader's session deadlines, every tick; freed at
 * node destruction. */
void node_session_tick(struct node *n);
void node_session_free(struct node *n);
/* The Authorization header line of --join-token-file, or NULL. */
const char *node_auth_join_header(const struct node *n);
/* Sends the writes queued on a follower to the leader, batched (once per
 * pass of readies), or proposes them here if this node leads now. */
void node_client_flush_forwards(struct node *n);
/* Releases queued forwards (stop). */
void node_client_drop_forwards(struct node *n);
/* Retries conf changes that waited for a pending one (every tick). */
void node_client_retry_admin(struct node *n);

/* node_tls.c: builds the client-port TLS contexts from the configuration
 * (nothing without --cert-file); 0, or ST_EINVAL (a file is bad: logged)
 * / ST_ENOMEM. close frees them. */
int node_client_tls_init(struct node *n);
void node_client_tls_close(struct node *n);
/* watch.c */
/* The history and list (node_create) and their release (node_destroy). */
int node_watch_init(struct node *n);
void node_watch_fini(struct node *n);
/* kv change events (the kv's event_cb, kv_cfg.event_ctx = n). */
void node_watch_kv_event(void *ctx, const struct kv_event *ev);
/* After an apply batch: cancels watches left behind, notifies waiting ones. */
void node_watch_applied(struct node *n);
/* Every tick: progress markers due. */
void node_watch_tick(struct node *n);
/* A snapshot at index replaced the state: history reset, watches canceled. */
void node_watch_state_replaced(struct node *n, uint64_t index);
/* node_stop: every watch canceled ("shutting_down"). */
void node_watch_stop(struct node *n);

#endif
