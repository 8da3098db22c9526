/* The node runtime: one stcache server process (or one node of an
 * in-process test cluster) on one libuv loop.
 *
 * It is the only module that knows raft/, storage/, transport/ and kv/
 * together. It drives the consensus core (raft.h) with ticks, peer messages
 * and client requests, and after every batch of loop events processes the
 * core's readies exactly per raft.h's contract (see docs/ARCHITECTURE.md,
 * "The ready pipeline"):
 *
 *   loop iteration:  timers (tick) -> IO (peers, clients, disk completions)
 *                    -> check/prepare: node_process_readies()
 *   ready:  1. snapshot -> kv restore from the snapshot store
 *           2. hard state + entries -> storage async writer (group commit,
 *              fdatasync off the loop); raft_buf refs held until completion
 *           3. msgs -> transport now (leader's appends overlap its own write)
 *           4. msgs_after_persist -> queued with the write, sent on completion
 *           5. committed -> kv_apply, complete the waiting client requests
 *           6. reads -> released once applied >= index
 *           7. raft_ready_ack
 *   writer thread completion -> uv_async_send -> loop: raft_persisted()
 *
 * Lifecycle:
 *   node_create (allocates, loop not touched) -> node_start (opens the data
 *   directory, starts transport, timers; joins a cluster asynchronously in
 *   --join mode) -> ... -> node_stop (fails pending requests with
 *   ST_ECLOSED, closes handles, flushes and closes the WAL; stopped_cb once
 *   every handle is closed) -> node_destroy.
 *
 * Client operations (node_put/node_delete/node_get/...) return 0 when the
 * request was accepted: then its callback runs exactly once, on the loop
 * thread, possibly before the call returns (stale reads, immediate
 * failures); or a negative code when it was refused at once (no callback).
 *
 * Threading: everything on the loop thread except the storage writer's own
 * thread, which only posts completions through a uv_async_t. */
#ifndef ST_NODE_NODE_H
#define ST_NODE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "node/config.h"
#include "stcache/raft.h"
#include "stcache/storage.h"

struct node;

/* ------------------------------------------------------------ lifecycle */

typedef void (*node_started_cb)(struct node *n, int status, void *ctx);
typedef void (*node_stopped_cb)(struct node *n, void *ctx);

/* Allocates a node for cfg (copied; must pass node_config_validate()).
 * Returns 0 and *out, ST_EINVAL, ST_ENOMEM. */
int node_create(uv_loop_t *loop, const struct node_config *cfg, struct node **out);

/* Opens (or creates, per cfg->mode) the data directory, restores the kv
 * from the newest snapshot, replays the WAL tail into the core, starts the
 * transport and the timers. Returns a negative code on a synchronous failure
 * (a one-line reason is traced): node_stop() it, then destroy it once
 * stopped_cb ran (its handles are closed on the loop).
 * Otherwise started_cb(status) follows once the node runs (in --join mode
 * after a member accepted us; status < 0 if joining failed). */
int node_start(struct node *n, node_started_cb started_cb, void *ctx);

/* Stops: fails every pending request with ST_ECLOSED, closes the transport
 * and timers, waits for the writer to drain, closes the WAL. stopped_cb runs
 * on the loop once everything is closed. Idempotent. */
void node_stop(struct node *n, node_stopped_cb stopped_cb, void *ctx);
void node_destroy(struct node *n);

/* The bound ports (after start; useful with port 0 in tests). */
int node_raft_port(const struct node *n);

/* Called once if storage fails (WAL write/fsync error, out of memory while
 * applying): the node has already failed its pending requests and refuses
 * new ones; the owner should stop it (the server exits with status 1). */
void node_on_fatal(struct node *n, void (*cb)(struct node *n, int code, void *ctx), void *ctx);

const struct node_config *node_config_get(const struct node *n);
uint64_t node_cluster_id(const struct node *n);

/* Re-reads the peer TLS certificate, key and CA files (SIGHUP: rotation).
 * 0: new peer connections use them, established ones are kept; otherwise
 * the old ones stay in use and `reason` (cap bytes) says what failed:
 * ST_EINVAL (bad file, key mismatch, or no peer TLS configured), ST_ENOMEM.
 * Loop thread, between node_start and node_stop. */
int node_tls_reload(struct node *n, char *reason, size_t cap);

struct st_tls_ctx;
/* Client-port TLS (--cert-file): the server context the HTTP API and the
 * Redis port serve with, and the client context for this node's own calls
 * to other members' client ports (presents --cert-file, verifies against
 * --trusted-ca-file). NULL without client TLS. Borrowed: valid until
 * node_destroy. */
struct st_tls_ctx *node_client_tls_server(const struct node *n);
struct st_tls_ctx *node_client_tls_client(const struct node *n);

/* -------------------------------------------------------- client writes */

enum node_cond {
    NODE_COND_NONE = 0,
    NODE_COND_IF_VERSION, /* If-Match: "<version>" */
    NODE_COND_IF_ABSENT,  /* If-None-Match: * */
};

struct kv_txn_res;
struct node_write_result {
    int status;       /* 0, ST_EPRECONDITION, ST_ENOENT (delete of absent),
                       * ST_ETIMEDOUT, ST_ENOTLEADER (no leader), ST_ECLOSED,
                       * ST_ECANCELED (lost to a leadership change), ... */
    uint64_t version; /* new version (0 ok), current version (precondition) */
    bool created;     /* PUT: the key did not exist before */
    uint64_t index;   /* raft index of the applied entry (the recording one if replayed) */
    bool replayed;    /* an Idempotency-Key retry: the first application's result */
    /* node_txn (node_txn.h): whether the guards held, and the results of
     * the ops that ran (kv/txn.h), valid during the callback only. */
    bool txn_succeeded;
    uint32_t txn_n;
    const struct kv_txn_res *txn_res;
};
typedef void (*node_write_cb)(void *ctx, const struct node_write_result *res);

#define NODE_IDEM_KEY_BYTES_MAX 128u /* == KV_IDEM_KEY_BYTES_MAX */

struct node_put_args {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    uint64_t ttl_ms; /* 0 = no expiry */
    enum node_cond cond;
    uint64_t cond_version;
    /* Optional Idempotency-Key (1..KV_IDEM_KEY_BYTES_MAX bytes, copied): a
     * write with a key recorded in the replicated state is not applied
     * again; it completes with the recorded result (replayed), or with
     * ST_EIDEMPOTENCY if the key was recorded for a different request. */
    const uint8_t *idem_key;
    size_t idem_key_len;
    /* Optional session (node_session.h), 0 = none: the key is attached to
     * it and deleted when it ends, unless rewritten since. The write
     * completes with ST_ENOENT (nothing written) when the session does not
     * exist, ST_ETOOBIG when it holds NODE_SESSION_KEYS_MAX keys. Not
     * with an idempotency key (ST_EINVAL). */
    uint64_t session_id;
};

/* Proposes a PUT (copied at once). ST_ETOOBIG for key/value over the limits,
 * ST_EINVAL for an empty key or an idempotency key over the limit,
 * ST_EBUSY when the waiter pool is exhausted, ST_ECLOSED when stopping. */
int node_put(struct node *n, const struct node_put_args *args, node_write_cb cb, void *ctx);
int node_delete(struct node *n, const uint8_t *key, size_t key_len, enum node_cond cond,
                uint64_t cond_version, node_write_cb cb, void *ctx);
/* node_delete with an optional idempotency key (as node_put_args). */
int node_delete_idem(struct node *n, const uint8_t *key, size_t key_len, enum node_cond cond,
                     uint64_t cond_version, const uint8_t *idem_key, size_t idem_key_len,
                     node_write_cb cb, void *ctx);

/* --------------------------------------------------------- client reads */

enum node_consistency {
    NODE_READ_LINEARIZABLE = 0, /* ReadIndex (thesis 6.4) */
    NODE_READ_LEASE,            /* leader lease (requires check-quorum) */
    NODE_READ_STALE,            /* local state, at once */
};

/* The type of a key's value (kv's enum kv_value_type, for the front ends
 * that do not see kv/): a hash's value is its kv/hashval.h field list. */
enum node_value_type {
    NODE_VALUE_STRING = 0,
    NODE_VALUE_HASH = 1,
};

struct node_read_result {
    int status;           /* 0, ST_ENOENT, ST_ENOTLEADER, ST_ETIMEDOUT, ST_ECLOSED */
    const uint8_t *value; /* valid during the callback only */
    size_t value_len;
    uint64_t version;
    uint64_t expire_at_ms; /* 0 = never */
    uint8_t value_type;    /* enum node_value_type */
};
typedef void (*node_read_cb)(void *ctx, const struct node_read_result *res);

/* The key is copied. Linearizable/lease reads of one loop iteration share
 * one ReadIndex round. */
int node_get(struct node *n, const uint8_t *key, size_t key_len, enum node_consistency c,
             node_read_cb cb, void *ctx);

/* ---- ordered listing (node_list.c; semantics in src/kv/kv_list.h) ----
 * A read of many keys: node_read_barrier waits, with the consistency of
 * node_get (one ReadIndex round shared with the gets of the loop
 * iteration, a lease, or none), until the applied state may be read, then
 * calls cb with status 0 (or the error a get would have); from inside cb
 * (or at any time for a stale read) node_list walks that state in key
 * order and returns with its applied index. Same errors as node_get, but
 * no key. */
int node_read_barrier(struct node *n, enum node_consistency c, node_read_cb cb, void *ctx);

struct node_list_args {
    const uint8_t *start; /* first key >= start (start_len 0: from the first key) */
    size_t start_len;
    int start_after;    /* 1: strictly after start (a continuation) */
    const uint8_t *end; /* keys < end; end_len 0: no upper bound */
    size_t end_len;
    const uint8_t *prefix; /* only keys beginning with prefix (prefix_len 0: any) */
    size_t prefix_len;
    uint64_t limit; /* keys visited at most (live or expired-unpurged), >= 1 */
};
struct node_list_item {
    const uint8_t *key; /* valid during the callback only */
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    uint64_t version;
    uint64_t expire_at_ms; /* 0 = never */
    uint8_t value_type;    /* enum node_value_type */
};
/* Nonzero stops the walk (returned by node_list). Must not call into the
 * node. */
typedef int (*node_list_cb)(void *ctx, const struct node_list_item *it);
struct node_list_result {
    uint64_t index;          /* the applied index of the state listed */
    uint64_t count;          /* live keys passed to cb (counted when cb is NULL) */
    int more;                /* keys in range remain after last_key */
    const uint8_t *last_key; /* the last key visited, NULL if none; valid until the loop runs */
    size_t last_key_len;
};
/* Synchronous walk of the applied state (expiry by the log clock, as
 * node_get). Returns 0, ST_EINVAL (limit 0), ST_ECLOSED, or cb's return. */
int node_list(struct node *n, const struct node_list_args *args, node_list_cb cb, void *ctx,
              struct node_list_result *out);

/* ------------------------------------------------------------- cluster */

struct node_member_info {
    raft_id id;
    bool voter;
    char raft[NODE_ADDR_MAX];
    char http[NODE_ADDR_MAX];
};

struct node_info {
    raft_id id;
    raft_id leader; /* RAFT_NONE if unknown */
    enum raft_role role;
    raft_term term;
    raft_index commit;
    raft_index applied;
    raft_index first_index;
    raft_index last_index;
    raft_index snapshot_index;
    uint64_t cluster_id;
    uint32_t n_members;
    struct node_member_info members[RAFT_MEMBERS_MAX];
    char leader_http[NODE_ADDR_MAX]; /* "" if unknown */
    bool started;
    bool stopping;
    bool snapshotting;      /* a snapshot is being written or made durable */
    bool alarm_nospace;     /* the disk is full: writes refused (node_unready_reason) */
    uint64_t memory_trims;  /* free heap returned to the OS (after snapshots) */
    uint64_t used_memory;   /* kv used bytes (deterministic: equal on replicas at equal applied) */
    uint64_t max_memory;    /* --max-memory (0 = no limit) */
    uint64_t log_clock_ms;  /* the applied state's log clock: expiry is judged by it */
    uint64_t wall_clock_ms; /* this node's CLOCK_REALTIME, for comparison */
    uint64_t keys;          /* keys in the applied state (expired, not yet purged, included) */
    uint64_t keys_with_ttl;
};
void node_info_get(const struct node *n, struct node_info *out);
/* The applied state's log clock (node_info.log_clock_ms) alone, O(1): the
 * time expiry is judged by (docs/KV.md, "Time"); 0 before the first entry. */
uint64_t node_log_clock_ms(const struct node *n);

/* The build's versions (`stcache version`, GET /cluster, the
 * stcache_build_info metric). release is the project VERSION of
 * CMakeLists.txt; commit is `git describe --always --dirty` at configure time
 * ("unknown" outside a git tree); the rest are the format versions this build
 * writes (docs/DISK-FORMAT.md, docs/WIRE-FORMAT.md, docs/KV.md). Static
 * storage, callable any time from any thread. */
struct node_version {
    const char *release;
    const char *commit;
    const char *compiler;
    uint32_t wal_segment;          /* WAL segment header */
    uint32_t snapshot_meta;        /* snapshot meta file */
    uint32_t identity;             /* the data directory's identity file */
    uint32_t kv_snapshot;          /* kv snapshot body, written */
    uint32_t kv_snapshot_read_min; /* oldest kv snapshot body still read */
    uint32_t kv_command;           /* kv command encoding in log entries */
    uint32_t frame;                /* transport frame header */
    uint32_t handshake;            /* transport HELLO protocol */
    uint32_t wire_msg;             /* Raft message encoding */
};
const struct node_version *node_version_get(void);

/* The order-independent digest of the state machine (kv_digest) and the
 * applied index it describes: replicas with equal applied indexes must have
 * equal digests. O(keys) on the loop: for tests and operators, not for
 * polling. */
uint64_t node_state_digest(const struct node *n, raft_index *applied);

/* Readiness (GET /readyz, and /health, its alias): the node runs, a leader
 * is known, it has applied what it knows committed (within
 * NODE_READY_LAG_ENTRIES_MAX: commits arrive between two apply passes under
 * load, and a snapshot being written must not make a serving node look
 * unready), and no alarm (storage failure, full disk) is raised. Returns NULL
 * when ready, else a short reason ("starting", "stopping", "storage_failed",
 * "no_space", "no_leader", "catching_up"). */
#define NODE_READY_LAG_ENTRIES_MAX 10000u
const char *node_unready_reason(const struct node *n);
bool node_healthy(const struct node *n); /* node_unready_reason(n) == NULL */
/* The commit index the node recovered from its data directory at start
 * (its forced configuration included; 0 before storage is open, and for a
 * node that joined empty). A node whose applied index reached it serves
 * all it had acknowledged before the restart (systemd readiness). */
raft_index node_recovered_commit(const struct node *n);

/* Liveness (GET /livez): the process runs its loop and its store has not
 * failed. Independent of leaders, snapshots and alarms that clear by
 * themselves, so a liveness probe never restarts a node that is merely busy
 * or partitioned. */
bool node_live(const struct node *n);

/* Membership changes (leader only: ST_ENOTLEADER on a follower, whose
 * caller may proxy to node_info.leader_http). The callback runs once the
 * change is applied (status 0) or failed. */
struct node_admin_result {
    int status;
    raft_index index;
    uint64_t cluster_id;
};
typedef void (*node_admin_cb)(void *ctx, const struct node_admin_result *res);

int node_member_add_learner(struct node *n, raft_id id, const char *raft_addr,
                            const char *http_addr, node_admin_cb cb, void *ctx);
int node_member_remove(struct node *n, raft_id id, node_admin_cb cb, void *ctx);
/* Starts a leadership transfer; the callback runs once `to` leads (status
 * 0) or after the request timeout (ST_ETIMEDOUT). */
int node_transfer(struct node *n, raft_id to, node_admin_cb cb, void *ctx);
/* Takes a snapshot now: starts a snapshot job at the applied index (or
 * joins the one running, or the one being made durable), written a slice
 * per loop pass like every snapshot, so the loop never stalls on it. cb runs
 * once on the loop when it is durable (status 0, index = its index; when
 * nothing was applied since the newest snapshot, at once with that one) or
 * failed (status < 0: the store's error, ST_ECANCELED when the leader's
 * snapshot replaced it, ST_ECLOSED at stop). Returns 0, or at once ST_ECLOSED
 * (stopping), ST_EIO (storage failed), ST_EBUSY (NODE_SNAP_WAITERS_MAX
 * requests already wait). */
#define NODE_SNAP_WAITERS_MAX 16
typedef void (*node_snapshot_cb)(void *ctx, int status, raft_index index);
int node_snapshot_now(struct node *n, node_snapshot_cb cb, void *ctx);

/* ------------------------------------------------------------- backups */

/* A backup file (docs/DISK-FORMAT.md, "Backup file"): a 32-byte header
 * (magic, version, meta length, cluster id, data bytes), the snapshot meta
 * (index, term, configuration, data size and CRC), the snapshot's kv body,
 * and a CRC32C of every byte before it. */
#define NODE_BACKUP_MAGIC "STCBKUP1"
#define NODE_BACKUP_VERSION 1u
#define NODE_BACKUP_HEADER_BYTES 32u
#define NODE_BACKUP_CHUNK_BYTES (256u * 1024u) /* one threadpool read, one HTTP piece */

struct node_backup_meta {
    uint64_t cluster_id;
    struct st_snapshot_info snap; /* index, term, conf, data bytes, data CRC */
    uint64_t total_bytes;         /* of the whole file */
};

/* GET /snapshot. node_backup_open waits for a linearizable read barrier
 * (so the state covers every write acknowledged before the call, on any
 * node), takes a snapshot (node_snapshot_now: written a slice per loop pass)
 * and, once it is durable, opens its data
 * file and calls cb on the loop with a backup (status 0; the caller owns it
 * and must node_backup_close it) or an error (status < 0, b NULL: the
 * barrier's: ST_ENOTLEADER, ST_ETIMEDOUT; the snapshot's or the open's).
 * Returns 0 or node_get's errors, or ST_ENOMEM (cb never runs then). The backup is independent of
 * the node once open (it may outlive a stop).
 *
 * node_backup_read produces the next piece of the file: cb runs once, on the
 * loop (at once for the header and the trailer, after a threadpool read for
 * the data) with 0 and up to NODE_BACKUP_CHUNK_BYTES (data valid during cb),
 * len 0 at the end, or a negative status (ST_EIO, ST_ECORRUPT: the
 * snapshot's data does not match its checksum). One read at a time. Returns
 * 0 or the threadpool's error (cb not called). node_backup_close may be
 * called at any time, also with a read in flight (it then completes
 * without cb). */
struct node_backup;
typedef void (*node_backup_open_cb)(void *ctx, int status, struct node_backup *b);
typedef void (*node_backup_read_cb)(void *ctx, int status, const void *data, size_t len);
int node_backup_open(struct node *n, node_backup_open_cb cb, void *ctx);
const struct node_backup_meta *node_backup_meta_get(const struct node_backup *b);
int node_backup_read(struct node_backup *b, node_backup_read_cb cb, void *ctx);
void node_backup_close(struct node_backup *b);

/* Offline check of a backup file (`stcache snapshot inspect`, and save and
 * restore before they trust one): the header, the meta, the size, the data's
 * CRC, the trailing CRC, and the kv body restored into a scratch kv (so a
 * restore from it would succeed). Returns 0 and fills *out, or ST_ECORRUPT
 * / ST_EINVAL (an unknown version) with *bad_offset (the byte offset where
 * the damage is found, or the start of the range whose checksum fails) and
 * why (a sentence), or the fs error (why names it). */
struct node_backup_report {
    struct node_backup_meta meta;
    uint64_t keys;     /* in the kv body */
    uint64_t kv_index; /* the applied index the kv body records */
    uint32_t file_crc; /* the trailing CRC32C */
};
/* `stcache snapshot restore` (offline): builds data_dir (missing or empty:
 * ST_EEXIST otherwise) for member `id` of a NEW cluster whose voters are
 * peers (id must be one), from the backup at path (checked whole first:
 * nothing is created for a damaged one; errors as node_backup_check). The
 * directory holds the backup's state as a snapshot at the backup's index
 * and term with the new configuration, and an identity with cluster_id, or
 * when 0 node_backup_restore_cluster_id(): the same on every member, so the
 * restore may run on each machine on its own, and never the backup's own
 * cluster id, so no node of the old cluster can talk to the new one.
 * `stcache server` then starts from it like from any data directory.
 * Returns 0, *cluster_id_out and *out; else why (and *bad_offset). After a
 * failure or a crash midway (after the directory was created) remove the
 * directory and restore again: a rerun refuses it (it holds data). */
uint64_t node_backup_restore_cluster_id(const struct node_backup_report *r,
                                        const struct node_peer_addr *peers, uint32_t n_peers);
int node_backup_restore(const char *path, const char *data_dir, raft_id id,
                        const struct node_peer_addr *peers, uint32_t n_peers, uint64_t cluster_id,
                        struct node_backup_report *out, uint64_t *cluster_id_out,
                        uint64_t *bad_offset, char *why, size_t why_cap);

/* The raft and HTTP addresses of member m (HTTP "" when unknown), each into
 * NODE_ADDR_MAX bytes (node_transport.c). */
void node_member_addrs(const struct raft_member *m, char *raft_addr, char *http_addr);

int node_backup_check(const char *path, struct node_backup_report *out, uint64_t *bad_offset,
                      char *why, size_t why_cap);

/* ---- watches (watch.c; docs/HTTP-API.md "Watches") ----
 * A watch reads the node's change events (kv.h) from its watch history
 * (watch_history.h, bounded by --watch-history-bytes and
 * --watch-history-entries) in log order, from from_version (inclusive) on,
 * filtered by key or prefix. The front end pulls items with
 * node_watch_next; when it returns 0 (nothing now) the node calls notify
 * once, on the loop, when there is something to pull: new events, a
 * progress marker due (progress_ms after the last item), or a cancel.
 * notify may call node_watch_next and node_watch_close (of its own watch).
 *
 * Progress: an item {applied N} means every event of a version <= N was
 * delivered (resuming from N + 1 repeats nothing and misses nothing).
 *
 * Cancel: a watch whose next event left the history before it was pulled
 * (a reader slower than the writes) is canceled with reason "slow"; every
 * watch is canceled with "compacted" when the node installs a leader's
 * snapshot (the events before it never passed through this node) and with
 * "shutting_down" by node_stop. A canceled watch returns its CANCELED item
 * on every call; version is where to resume (every event of an older
 * version was delivered). A watch lives, and its memory stays, until
 * node_watch_close, also after node_stop (before node_destroy). */
struct node_watch;

struct node_watch_args {
    const uint8_t *key; /* the prefix (or the key when exact) (copied) */
    size_t key_len;
    int exact;             /* 1: only this key; 0: keys beginning with key (len 0: all) */
    uint64_t from_version; /* the first version to deliver; 0 = the next one applied */
    uint32_t progress_ms;  /* a progress item after this long without one; 0 = none */
    /* 1: also NODE_EVENT_MESSAGE items (pub/sub messages, key = channel,
     * value = message), whatever the key filter; 0: changes only. */
    int messages;
};

enum node_watch_kind {
    NODE_WATCH_EVENT = 1,
    NODE_WATCH_PROGRESS = 2,
    NODE_WATCH_CANCELED = 3,
};

/* The kinds of change (equal to kv.h's enum kv_event_type). */
enum node_event_type {
    NODE_EVENT_PUT = 1,
    NODE_EVENT_DELETE = 2,
    NODE_EVENT_EXPIRE = 3,
    NODE_EVENT_EVICT = 4,
    NODE_EVENT_MESSAGE = 5, /* a PUBLISH (node_publish): only watches with `messages` */
};
/* "put", "delete", "expire", "evict". */
const char *node_event_type_name(enum node_event_type t);

struct node_watch_event {
    enum node_event_type type;
    const uint8_t *key; /* pointers valid until the next apply: use them at once */
    size_t key_len;
    const uint8_t *value; /* PUT of a string only */
    size_t value_len;
    uint8_t value_type; /* PUT: enum node_value_type (a hash's put has no value) */
    uint64_t version;
    uint64_t expire_at_ms; /* PUT: 0 = none */
    /* kv.h's kv_event.op: the kv_txn_op item (node_txn.h) that made the
     * change inside a transaction, with NODE_EVENT_OP_KEEPTTL for a PUT
     * that kept the expiry; 0 outside transactions. */
    uint8_t op;
};
#define NODE_EVENT_OP_KEEPTTL 0x80u

struct node_watch_item {
    enum node_watch_kind kind;
    struct node_watch_event ev; /* EVENT */
    uint64_t applied;           /* PROGRESS: every event up to this version was delivered */
    const char *reason;         /* CANCELED: "slow", "compacted", "shutting_down" */
    uint64_t version;           /* CANCELED: resume from here */
};

typedef void (*node_watch_notify_cb)(void *ctx);

/* Opens a watch. Returns 0 and *out (the caller closes it), or
 * ST_ECOMPACTED (from_version is older than the history: *oldest is the
 * oldest version a watch may start from), ST_EBUSY (--watch-max watches
 * open), ST_ECLOSED (stopping), ST_ENOMEM. */
int node_watch_open(struct node *n, const struct node_watch_args *a, node_watch_notify_cb notify,
                    void *ctx, struct node_watch **out, uint64_t *oldest);
/* 1 and *it, or 0 (nothing now: notify will run). */
int node_watch_next(struct node_watch *w, struct node_watch_item *it);
/* Frees the watch; notify never runs after. */
void node_watch_close(struct node_watch *w);

struct node_watch_stats {
    uint64_t watches;        /* open now */
    uint64_t history_events; /* held */
    uint64_t history_first;  /* the oldest version a watch may start from */
    uint64_t events_sent;    /* events pulled by watches */
    uint64_t canceled_slow;  /* watches canceled for falling behind */
};
void node_watch_stats_get(const struct node *n, struct node_watch_stats *out);

/* ------------------------------------------------------------- metrics */

/* Route labels for the request counters (the HTTP layer records). */
enum node_route {
    NODE_ROUTE_KV_GET = 0,
    NODE_ROUTE_KV_PUT,
    NODE_ROUTE_KV_DELETE,
    NODE_ROUTE_CLUSTER,
    NODE_ROUTE_ADMIN,
    NODE_ROUTE_HEALTH,
    NODE_ROUTE_METRICS,
    NODE_ROUTE_OTHER,
    NODE_ROUTE_COUNT
};
const char *node_route_name(enum node_route r);
/* Records one finished request: its route, HTTP status and latency. */
void node_metrics_request(struct node *n, enum node_route r, int http_status, uint64_t latency_us);

/* Appends the Prometheus text exposition of every metric to out via
 * append(actx, bytes, len). */
void node_metrics_write(const struct node *n, void (*append)(void *actx, const void *p, size_t len),
                        void *actx);

/* Monotonic microseconds (for latency measurements). */
uint64_t node_now_us(void);

#endif
