/* Internals of the node runtime shared by node.c (lifecycle, ready
 * pipeline, transport), client.c (waiters, writes, reads, admin) and
 * metrics.c. Not for use outside src/node/. */
#ifndef ST_NODE_NODE_INT_H
#define ST_NODE_NODE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "kv/command.h"
#include "kv/kv.h"
#include "node/node.h"
#include "node/wal_inline.h"
#include "stcache/raft.h"
#include "stcache/storage.h"
#include "transport/transport.h"

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
    raft_id target;        /* ADMIN: member id; TRANSFER: the new leader; WRITE: the leader
                            * known when proposed */
    uint64_t deadline_us;
    union {
        node_write_cb w;
        node_read_cb r;
        node_admin_cb a;
    } cb;
    void *ctx;
    struct node_waiter *hnext;         /* seq hash chain */
    struct node_waiter *dprev, *dnext; /* deadline list */
    struct node_waiter *lprev, *lnext; /* indexed list, a read round, the transfer list, or free */
    struct node_read_round *round;     /* READ */
    struct raft_conf_change *cc;       /* ADMIN waiting to be proposed (heap), else NULL */
    bool in_retry;                     /* ADMIN: on the admin_retry list */
    uint8_t *key;                      /* READ: key_inline or malloc'd */
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

struct node_wlist {
    struct node_waiter *head, *tail;
};

/* One ReadIndex round: every linearizable read of a loop iteration. */
struct node_read_round {
    uint64_t ctx;
    uint8_t mode;
    bool issued;
    bool resolved;
    raft_index index;
    struct node_wlist waiters;
    struct node_read_round *prev, *next;
};

/* ------------------------------------------------------------ persistence
 *
 * One persist request per ready that had something to persist or had
 * messages to send after persistence. FIFO in submission order; the writer
 * completes them in order (seq), and so does the loop. */
struct node_persist {
    uint64_t seq;     /* writer sequence number; 0 = nothing written (msgs only) */
    raft_index index; /* raft_persisted() arguments (0: none) */
    raft_term term;
    uint64_t submit_us;
    struct raft_buf **bufs; /* references held until durable */
    size_t n_bufs, cap_bufs;
    struct raft_msg *msgs; /* msgs_after_persist, deep-copied (entries arrays + buf refs) */
    size_t n_msgs, cap_msgs;
    struct node_persist *next;
};

/* A snapshot being written incrementally (node.c). */
struct node_snap_job {
    struct kv_snapshot_cursor *cur;
    struct st_snap_writer *w;
    struct raft_snapshot_meta *meta; /* index, term, conf as of index (heap) */
    char *blob;                      /* kv meta blob (heap) */
    size_t blob_len;
    uint64_t t0;
};

/* A finished snapshot being made durable on the threadpool (node.c). */
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
    struct node_hist fsync; /* submit -> durable, per batch */
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
};

/* -------------------------------------------------------------- the node */

struct node {
    uv_loop_t *loop;
    struct node_config cfg;
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
    struct st_storage *storage;
    struct st_log_writer *writer;
    struct tr *tr;
    raft_index applied;
    raft_term applied_term;
    raft_index snapshot_index;      /* newest local snapshot */
    raft_index applied_at_snapshot; /* applied when the last snapshot was taken */
    uint64_t last_snapshot_us;
    struct raft_conf conf_applied; /* membership as of `applied` */
    raft_id leader;
    enum raft_role role;
    raft_term term;

    /* transport peers we told tr about, with their raft addresses */
    uint32_t n_tr_peers;
    struct node_peer_addr tr_peers[RAFT_MEMBERS_MAX];
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

    /* writer completions (written by the writer thread under wmu) */
    uv_mutex_t wmu;
    uint64_t w_done_seq;
    int w_status;
    uint64_t w_done_us;

    /* persist FIFO */
    struct node_persist *persist_head, *persist_tail;
    struct node_persist *persist_free;
    uint64_t persist_inflight;
    /* Hard state: the newest from the core, and the newest given to the WAL.
     * A change of the commit index alone is not worth an fdatasync (it is a
     * hint: a restarted node learns the commit from the leader); it rides
     * with the next batch that must sync, or is written once the log has
     * been quiet for NODE_HS_IDLE_TICKS. */
    struct raft_hard_state hs_cur, hs_written;
    uint32_t hs_idle_ticks;
    /* Free heap pages go back to the OS at this tick (0 = not due): set
     * after a snapshot compacts the log or replaces the kv, see
     * memory_trim_maybe. */
    uint64_t trim_at_tick;
    /* WAL writes on the loop thread (cfg.wal_inline_max_us), node/wal_inline.h */
    struct node_wal_inline wal_inline;
    bool wal_inline_done; /* a write_now completed in this ready */

    /* waiters */
    struct node_waiter **slabs;
    size_t n_slabs;
    struct node_waiter *free_waiters;
    size_t waiters_total, waiters_used;
    struct node_waiter *seq_hash[NODE_SEQ_BUCKETS];
    uint64_t next_seq;
    struct node_wlist deadlines;
    struct node_wlist indexed; /* by index, ascending */
    struct node_wlist transfers;
    size_t orphans;       /* writes with orphan_term set */
    struct node_fwd *fwd; /* follower: writes for the next PROPOSE batch */
    size_t n_fwd, cap_fwd;
    uint32_t fwd_bytes_max;        /* payload bytes per PROPOSE (the core's msg_bytes_max) */
    struct node_wlist admin_retry; /* conf changes refused with ST_ECONFCHANGE, retried per tick */

    /* reads */
    struct node_read_round *batch[2]; /* not yet issued, per raft_read_mode */
    struct node_read_round *rounds;   /* issued, list */
    struct node_read_round *free_rounds;
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

    /* inbound snapshot stream */
    struct st_snap_writer *snap_in;
    raft_id snap_in_from;
    struct raft_snapshot_meta snap_in_meta;

    /* periodic work, in ticks */
    uint64_t ticks;
    uint64_t last_purge_us;
    uint64_t stamp_last_ms; /* leader: the last timestamp stamped (node_stamp_ms) */
    bool purge_more; /* the last purge stopped at keys_max: propose again soon */
    uint64_t timeouts_checked_us;

    /* command encoding scratch */
    struct kv_limits limits;

    /* lifecycle callbacks */
    node_started_cb started_cb;
    void *started_ctx;
    node_stopped_cb stopped_cb;
    void *stopped_ctx;
    bool tr_closed;

    /* join */
    uint32_t join_attempts;
    struct node_httpc *join_req;

    uint64_t trailing; /* raft trailing_entries */
    void (*fatal_cb)(struct node *n, int code, void *ctx);
    void *fatal_ctx;

    struct node_metrics m;
};

/* node.c */
void node_process_readies(struct node *n);
void node_fatal(struct node *n, int code, const char *what);
uint64_t node_wall_ms(void);
/* The timestamp for a command this node appends as leader: its wall clock,
 * never below its previous stamp nor the log clock (docs/KV.md, "Time"). */
uint64_t node_stamp_ms(struct node *n);

/* client.c: waiter machinery used by node.c */
int node_waiters_init(struct node *n);
void node_waiters_close(struct node *n);
void node_waiters_fail_all(struct node *n, int status);
void node_waiters_expire(struct node *n, uint64_t now_us);
/* After kv_apply of a normal entry: complete our waiter, if any. */
void node_client_applied_kv(struct node *n, raft_index index, const struct kv_result *res);
/* After applying any entry at index: settles indexed waiters <= index. */
void node_client_applied_index(struct node *n, const struct raft_entry *e);
/* A read state from a ready. */
void node_client_read_state(struct node *n, const struct raft_read_state *rs);
/* Serves reads whose index <= applied. */
void node_client_serve_reads(struct node *n);
/* Issues batched ReadIndex rounds (once per loop iteration). */
void node_client_issue_reads(struct node *n);
/* Leadership notifications. */
void node_client_leader_changed(struct node *n, raft_id leader);
int node_propose_purge(struct node *n);
/* Sends the writes queued on a follower to the leader, batched (once per
 * pass of readies), or proposes them here if this node leads now. */
void node_client_flush_forwards(struct node *n);
/* Releases queued forwards (stop). */
void node_client_drop_forwards(struct node *n);
/* Retries conf changes that waited for a pending one (every tick). */
void node_client_retry_admin(struct node *n);

#endif
