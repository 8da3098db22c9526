/* stcache's Raft consensus core: a deterministic protocol state machine.
 *
 * The core does no IO. It has no clock (time is a count of raft_tick() calls),
 * no randomness of its own (election jitter comes from a seed given at
 * creation), no threads and no syscalls. It is driven by its inputs:
 *
 *     raft_tick()                one logical clock step
 *     raft_step(msg)             a message from a peer
 *     raft_propose(data)         a new command for the replicated log
 *     raft_propose_conf_change() a membership change
 *     raft_read_index(ctx)       a linearizable read request
 *     raft_transfer_leadership() hand leadership to another voter
 *     raft_persisted()           the application's disk caught up (async)
 *     raft_applied()             the state machine caught up
 *     raft_snapshot_taken()      a state machine snapshot exists at an index
 *     raft_report_unreachable(), raft_report_snapshot()  transport feedback
 *
 * and answers with a batch of work, the ready (struct raft_ready), in the
 * spirit of etcd's Tick/Step/Ready/Advance. The application's loop is:
 *
 *     if (raft_has_ready(r)) {
 *         struct raft_ready rd;
 *         raft_ready_get(r, &rd);
 *         1. if rd.snapshot: install it (state machine restore), durably
 *         2. start persisting rd.hard_state (if rd.hard_state_changed) and
 *            rd.entries (truncating any suffix from rd.entries[0].index): one
 *            batch, one fdatasync (group commit)
 *         3. send rd.msgs now (a leader's appends overlap its own disk write,
 *            Raft thesis 10.2.1)
 *         4. keep rd.msgs_after_persist (encode/copy them) and send them only
 *            once step 2 is durable: votes and a follower's acknowledgements
 *            of its own log must never precede the disk
 *         5. apply rd.committed to the state machine; serve rd.reads once the
 *            applied index reaches each read's index
 *         6. raft_ready_ack(r, &rd): the batch's pointers become invalid
 *     }
 *     ... later, when the disk write of a ready completes:
 *         raft_persisted(r, rd.persist_index, rd.persist_term)
 *
 * Readies must be persisted in the order they were produced. Several readies
 * may be outstanding on the disk at once; raft_persisted() reports the newest
 * that completed (it implies all earlier ones).
 *
 * "Committed" means durable on a quorum, the leader's own disk counted only
 * through raft_persisted(), so a single-node cluster commits nothing before
 * its fdatasync returns.
 *
 * Memory and ownership:
 *   - Entry payloads are raft_buf slices: a refcounted owner plus (data, len)
 *     into it, so one received frame can back many entries without copies.
 *     The core takes its own references for what it keeps.
 *   - Everything reachable from a struct raft_ready is owned by the core and
 *     valid until raft_ready_ack(); take references (raft_buf_ref) to keep a
 *     payload longer.
 *   - Messages passed to raft_step() remain the caller's; the core references
 *     what it keeps.
 *   - Not thread-safe: one thread drives a struct raft, and only that thread
 *     may take or drop raft_buf references.
 *
 * Errors are values: bad or stale peer input is dropped and counted
 * (raft_stats), never fatal. Internal invariants are asserted.
 */
#ifndef STCACHE_RAFT_H
#define STCACHE_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stcache/api.h"
#include "stcache/buf.h" /* struct raft_buf: entry payloads */
#include "stcache/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t raft_id; /* node id; 0 means "none" */
typedef uint64_t raft_term;
typedef uint64_t raft_index;

#define RAFT_NONE ((raft_id)0)
/* Bounds on members and their opaque context (the application's addresses). */
#define RAFT_MEMBERS_MAX 64
#define RAFT_MEMBER_CONTEXT_MAX 192

/* --------------------------------------------------------------- entries */

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 1, /* application command */
    RAFT_ENTRY_CONF = 2,   /* membership change, payload = raft_conf_change_encode() */
    RAFT_ENTRY_NOOP = 3,   /* appended by every new leader (thesis 6.4, 8) */
};

struct raft_entry {
    raft_term term;
    raft_index index;
    uint8_t type;         /* enum raft_entry_type */
    struct raft_buf *buf; /* owner of the payload bytes; NULL when len == 0 */
    const uint8_t *data;  /* payload: points into buf->data */
    uint32_t len;
};

/* ------------------------------------------------------------ membership */

enum raft_role_in_conf { RAFT_VOTER = 1, RAFT_LEARNER = 2 };

struct raft_member {
    raft_id id;
    uint8_t role; /* enum raft_role_in_conf */
    /* Opaque to the core (the server keeps its peer and HTTP addresses here). */
    uint16_t context_len;
    char context[RAFT_MEMBER_CONTEXT_MAX];
};

struct raft_conf {
    uint32_t n;
    struct raft_member members[RAFT_MEMBERS_MAX];
};

enum raft_conf_op {
    RAFT_CONF_ADD_VOTER = 1,   /* add as voter, or promote a learner */
    RAFT_CONF_ADD_LEARNER = 2, /* add a non-voting member that receives the log */
    RAFT_CONF_REMOVE = 3,      /* remove a voter or a learner */
};

struct raft_conf_change {
    uint8_t op; /* enum raft_conf_op */
    raft_id id;
    uint16_t context_len;
    char context[RAFT_MEMBER_CONTEXT_MAX];
};

/* Payload codec for RAFT_ENTRY_CONF entries (defined by the core: it must
 * read them). Pure functions, callable anywhere, any thread.
 * encode: writes cc into out (room for RAFT_CONF_CHANGE_ENCODED_MAX bytes)
 * and returns the encoded size; cc->context_len <= RAFT_MEMBER_CONTEXT_MAX
 * (asserted). decode: fills *cc from data; ST_EPROTO when the bytes are not a
 * conf change (short, bad length, unknown op, id 0). */
#define RAFT_CONF_CHANGE_ENCODED_MAX (1 + 8 + 2 + RAFT_MEMBER_CONTEXT_MAX)
ST_API size_t raft_conf_change_encode(const struct raft_conf_change *cc, uint8_t *out);
ST_API int raft_conf_change_decode(const uint8_t *data, size_t len, struct raft_conf_change *cc);

/* Applies cc to conf in place (pure function): 0, or ST_EINVAL if it makes no
 * sense (removing an absent member, adding a voter twice, more than
 * RAFT_MEMBERS_MAX members, unknown op); conf is unchanged on error. */
ST_API int raft_conf_apply(struct raft_conf *conf, const struct raft_conf_change *cc);
/* The member with that id, pointing into conf, or NULL. */
ST_API const struct raft_member *raft_conf_find(const struct raft_conf *conf, raft_id id);
/* Number of RAFT_VOTER members. */
ST_API size_t raft_conf_voters(const struct raft_conf *conf);

/* ------------------------------------------------------------- snapshots */

/* What the core knows of a snapshot: the bytes are the application's. */
struct raft_snapshot_meta {
    raft_index index;      /* last entry covered */
    raft_term term;        /* term of that entry */
    struct raft_conf conf; /* membership as of index (DESIGN §3.3) */
};

/* ------------------------------------------------------------------ state */

/* Must be durable before anything derived from it is sent. */
struct raft_hard_state {
    raft_term term;
    raft_id vote;
    raft_index commit; /* persisted so a restart is not needlessly stale (DESIGN §3.9) */
};

enum raft_role { RAFT_FOLLOWER = 0, RAFT_PRE_CANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };
/* Static names ("follower", "leader", ...; "unknown" when out of range): never NULL,
 * never freed. */
ST_API const char *raft_role_name(enum raft_role role);

/* --------------------------------------------------------------- messages */

enum raft_msg_type {
    RAFT_MSG_APPEND = 1,  /* AppendEntries (also carries commit) */
    RAFT_MSG_APPEND_RESP, /* ack or reject with a conflict hint */
    RAFT_MSG_VOTE,        /* RequestVote */
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_PREVOTE, /* pre-vote (thesis 9.6), term = the term it would use */
    RAFT_MSG_PREVOTE_RESP,
    RAFT_MSG_HEARTBEAT, /* carries commit and a read context */
    RAFT_MSG_HEARTBEAT_RESP,
    RAFT_MSG_SNAPSHOT,        /* InstallSnapshot: delivered once the bytes have arrived */
    RAFT_MSG_TIMEOUT_NOW,     /* leadership transfer: campaign at once */
    RAFT_MSG_READ_INDEX,      /* follower -> leader: give me a read index for ctx */
    RAFT_MSG_READ_INDEX_RESP, /* leader -> follower: index (0 and reject when refused) */
    RAFT_MSG_PROPOSE,         /* follower -> leader: forwarded proposal entries */
    RAFT_MSG_TYPE_MAX
};
/* Static name of a message type ("append", ...; "unknown" when out of
 * range). Inline, so that code which only carries messages (a transport)
 * needs no link to the core for its traces. Any thread. */
static inline const char *raft_msg_type_name(int type)
{
    switch (type) { /* a switch, not a designated table: the header is C++ too */
    case RAFT_MSG_APPEND:
        return "append";
    case RAFT_MSG_APPEND_RESP:
        return "append_resp";
    case RAFT_MSG_VOTE:
        return "vote";
    case RAFT_MSG_VOTE_RESP:
        return "vote_resp";
    case RAFT_MSG_PREVOTE:
        return "prevote";
    case RAFT_MSG_PREVOTE_RESP:
        return "prevote_resp";
    case RAFT_MSG_HEARTBEAT:
        return "heartbeat";
    case RAFT_MSG_HEARTBEAT_RESP:
        return "heartbeat_resp";
    case RAFT_MSG_SNAPSHOT:
        return "snapshot";
    case RAFT_MSG_TIMEOUT_NOW:
        return "timeout_now";
    case RAFT_MSG_READ_INDEX:
        return "read_index";
    case RAFT_MSG_READ_INDEX_RESP:
        return "read_index_resp";
    case RAFT_MSG_PROPOSE:
        return "propose";
    default:
        return "unknown";
    }
}

struct raft_msg {
    uint8_t type; /* enum raft_msg_type */
    raft_id from;
    raft_id to;
    raft_term term;
    /* APPEND: index/log_term of the entry before entries[0].
     * VOTE/PREVOTE: the candidate's last index/log_term.
     * APPEND_RESP: on success the last index matched; on reject, the index
     *   that was rejected, with reject_hint/hint_term (fast backtracking).
     * SNAPSHOT: unused (see snapshot). READ_INDEX_RESP: the read index. */
    raft_index index;
    raft_term log_term;
    raft_index commit;
    bool reject;
    raft_index reject_hint; /* follower's last index, or first index of hint_term */
    raft_term hint_term;    /* term of the conflicting entry at reject_hint (0: none) */
    uint64_t context;       /* heartbeat round / read request context */
    uint32_t n_entries;
    struct raft_entry *entries;
    struct raft_snapshot_meta *snapshot; /* SNAPSHOT only: in a ready, the core's latest
                                          * snapshot as of raft_ready_get() (send those
                                          * bytes) */
};

/* ----------------------------------------------------------------- ready */

struct raft_read_state {
    uint64_t context; /* as given to raft_read_index() */
    raft_index index; /* serve once applied >= index */
    int status;       /* 0, or ST_ENOTLEADER / ST_ETIMEDOUT ... when the read failed */
};

struct raft_ready {
    /* Role/leader change since the last ready (leadership notifications). */
    bool soft_state_changed;
    enum raft_role role;
    raft_id leader;
    raft_term term;

    bool hard_state_changed;
    struct raft_hard_state hard_state;

    /* Install before persisting entries; NULL when none. The log is empty up
     * to snapshot->index afterwards. The core hands a snapshot out only when
     * its log did not contain snapshot->index with snapshot->term, and it then
     * discards its whole log: the application must drop every persisted entry
     * too (also those above snapshot->index), so a restart loads the snapshot
     * plus the entries of later readies only. */
    const struct raft_snapshot_meta *snapshot;

    /* Entries to persist. If n_entries > 0, any persisted entry with index >=
     * entries[0].index must be discarded first (suffix truncation). A leader
     * that needs other voters for a quorum hands out a proposal only in the
     * ready whose msgs carry it to a follower (one write per replication
     * round; it could not commit sooner); a single voter, at once. */
    struct raft_entry *entries;
    size_t n_entries;

    /* The position to report to raft_persisted() once this ready is durable
     * (0/0 when the ready persists nothing). */
    raft_index persist_index;
    raft_term persist_term;

    struct raft_msg *msgs; /* send at once */
    size_t n_msgs;
    struct raft_msg *msgs_after_persist; /* send only once this ready is durable */
    size_t n_msgs_after_persist;

    /* Committed entries to apply, in order. Never beyond what is durable locally. */
    struct raft_entry *committed;
    size_t n_committed;

    struct raft_read_state *reads;
    size_t n_reads;
};

/* ---------------------------------------------------------------- config */

struct raft_config {
    raft_id id;
    uint64_t seed;            /* election jitter; the core's only randomness */
    uint32_t election_ticks;  /* base election timeout; randomized in [e, 2e) */
    uint32_t heartbeat_ticks; /* leader heartbeat interval; < election_ticks */
    bool pre_vote;
    bool check_quorum;
    bool lease_reads;           /* allow RAFT_READ_LEASE; requires check_quorum */
    bool forward_proposals;     /* follower proposals go to the leader (else ST_ENOTLEADER) */
    uint32_t inflight_msgs_max; /* appends in flight per follower */
    uint32_t msg_bytes_max;     /* payload bytes per append */
    uint64_t
        uncommitted_bytes_max; /* leader refuses proposals past this (ST_EBUSY); 0 = no bound */
    /* Payload bytes of the committed entries one ready hands out at most
     * (one entry at least, however large; 0 = no bound): the rest comes in
     * the next readies, so an
     * application that applies each ready before taking the next bounds the
     * work of one step, e.g. a follower catching up on a long log. */
    uint64_t committed_bytes_max;
    uint64_t trailing_entries; /* entries kept behind a snapshot for lagging followers */
    /* Payload bytes of those trailing entries at most (0 = bounded by count
     * only): with large entries a count alone kept up to trailing_entries
     * payloads in memory after every snapshot. */
    uint64_t trailing_bytes;
    uint32_t reads_pending_max; /* outstanding read requests (ST_EBUSY past it) */
    /* Optional allocator for the core's own memory (tests inject failures to
     * reach the ENOMEM paths); NULL means the C library. Called as
     * realloc_fn(alloc_ctx, NULL, n) to allocate, (ctx, p, n) to resize,
     * (ctx, p, 0) to free. Payload buffers (raft_buf) are not affected. */
    void *(*realloc_fn)(void *ctx, void *ptr, size_t size);
    void *alloc_ctx;
};

/* Fills *cfg with sensible defaults for node `id` (election 10 ticks,
 * heartbeat 1, pre-vote and check-quorum on, 4 appends in flight, 1 MiB per
 * message, ...); set seed and adjust fields before raft_create(). Never fails. */
ST_API void raft_config_default(struct raft_config *cfg, raft_id id);

/* What a node restarts from: everything it had made durable. */
struct raft_bootstrap_state {
    struct raft_hard_state hard_state;
    const struct raft_snapshot_meta *snapshot; /* NULL if none */
    /* Entries following the snapshot (or index 1), contiguous; the core takes
     * references to their buffers. */
    const struct raft_entry *entries;
    size_t n_entries;
    /* Membership for a brand-new cluster with no snapshot and no log (the
     * bootstrap node, or every node of a static --peers start); NULL otherwise.
     * Like etcd's bootstrap, the core writes it into the log: one RAFT_ENTRY_CONF
     * entry per member (ADD_VOTER/ADD_LEARNER with its context) at indexes 1..n,
     * term 1, already committed, handed out in the first ready to persist and
     * apply. Every node given the same initial_conf writes identical entries, and
     * a node that joins later learns the membership from the log. Ignored when
     * the snapshot or the entries are not empty (the log already holds it). */
    const struct raft_conf *initial_conf;
    raft_index applied; /* state machine already contains up to here (snapshot index) */
    /* Recovery from a lost quorum (etcd's --force-new-cluster); NULL for an
     * ordinary restart. When set, the node must restart from a snapshot or
     * entries of its own (ST_EINVAL otherwise, and when force_self->id is not
     * cfg->id). After those entries the core appends RAFT_ENTRY_CONF entries
     * that leave this node the only member: ADD_VOTER for itself when it is not
     * a voter (with force_self's context when it is not a member at all),
     * then one REMOVE per other member, in the current term, and marks
     * everything up to the last of them committed. They are handed out in the
     * first ready to persist (with the hard state carrying the new commit
     * index) and then to apply, like a bootstrap's entries; the node then
     * campaigns alone. The whole local log is kept and committed: an entry
     * beyond the recovered commit index may have been committed, and
     * acknowledged, by the lost leader. Nothing is appended when the node
     * already is the only member. */
    const struct raft_member *force_self;
};

/* -------------------------------------------------------------------- API */

/* Calling rules for every function below taking a struct raft: one thread
 * drives a core (not thread-safe, no locks inside), and no function may be
 * called from inside another (there are no callbacks). Every pointer argument
 * must be valid unless NULL is said to be allowed. Broken preconditions that
 * are said to be "asserted" stop the process through the assertion hook
 * (stcache/assert.h); they are bugs in the caller, not errors to handle. */

struct raft;

/* Creates a core from durable state. cfg and st are read during the call
 * only (the core copies the config and the snapshot meta, and takes its own
 * raft_buf reference on every entry of st->entries: the caller releases its
 * own afterwards). Returns 0 and *out (free with raft_destroy), or ST_EINVAL
 * (invalid config: id 0, heartbeat_ticks >= election_ticks, ...; st or out
 * NULL; an invalid snapshot meta; entries not contiguous after the snapshot
 * or with decreasing terms; hard_state.commit beyond the log; applied beyond
 * commit) or ST_ENOMEM (nothing allocated then). */
ST_API int raft_create(const struct raft_config *cfg, const struct raft_bootstrap_state *st,
                       struct raft **out);
/* Frees the core and drops every raft_buf reference it holds. NULL is a
 * no-op. Callable at any time, also with a ready outstanding (its pointers
 * become invalid). */
ST_API void raft_destroy(struct raft *r);

/* One logical clock step: elections, heartbeats, check-quorum, read and
 * transfer timeouts are all counted in ticks. Callable at any time. */
ST_API void raft_tick(struct raft *r);
/* Feeds a peer message. m and its entries remain the caller's: the core takes
 * raft_buf references on what it keeps. Callable at any time, also while a
 * ready is outstanding. Returns 0; ST_EPROTO/ST_ESTALE for dropped input (the
 * message is ignored and counted in raft_stats, the core is unharmed);
 * ST_EINVAL for m == NULL; ST_ENOMEM when it could not be taken (nothing
 * changed: the sender retries). */
ST_API int raft_step(struct raft *r, const struct raft_msg *m);

/* Appends a command: len bytes at data, inside buf (buf may be NULL only when
 * len == 0). The core takes its own reference on buf; the caller keeps and
 * releases its own. On a leader returns 0 and the entry's index/term in
 * *index, *term (either may be NULL); the command is committed once a ready's
 * committed carries that index with that term (another term there: lost to a
 * leader change). On a follower with forward_proposals, forwards it to the
 * leader and returns 0 with *index = 0 (no way to follow it). Errors:
 * ST_ENOTLEADER (see raft_leader()), ST_ETRANSFER during a leadership
 * transfer, ST_EBUSY past uncommitted_bytes_max, ST_ETOOBIG past
 * msg_bytes_max, ST_EINVAL (buf or data NULL with len > 0), ST_ENOMEM; nothing
 * is appended on error. */
ST_API int raft_propose(struct raft *r, struct raft_buf *buf, const uint8_t *data, uint32_t len,
                        raft_index *index, raft_term *term);

/* Proposes a membership change (cc read during the call only); it takes
 * effect on each member as soon as it is in that member's log (thesis 4.1).
 * Returns 0 and the entry's index in *index (may be NULL), or ST_ENOTLEADER,
 * ST_ETRANSFER (transfer running), ST_ECONFCHANGE while another change is
 * uncommitted or before the leader committed an entry of its term
 * (single-server change safety, Ongaro 2015), ST_EINVAL if it would not apply
 * (raft_conf_apply) or cc is NULL, ST_ENOMEM. */
ST_API int raft_propose_conf_change(struct raft *r, const struct raft_conf_change *cc,
                                    raft_index *index);

enum raft_read_mode { RAFT_READ_SAFE = 0, RAFT_READ_LEASE = 1 };
/* Requests a linearizable read index (ReadIndex, thesis 6.4; RAFT_READ_LEASE
 * only when lease_reads and check_quorum are on, else as SAFE). The answer
 * arrives in a later ready's reads with the same context: serve the read once
 * the applied index reaches its index, or fail it with its status. Works on
 * followers (asks the leader). Returns 0, ST_ENOTLEADER when no leader is
 * known (candidates too), ST_EBUSY past reads_pending_max. */
ST_API int raft_read_index(struct raft *r, uint64_t context, enum raft_read_mode mode);

/* Leader only: catch voter `to` up and make it campaign (thesis 3.10);
 * proposals fail with ST_ETRANSFER until it ends (success, or an election
 * timeout). Returns 0, ST_ENOTLEADER, ST_EINVAL for self or a non-voter. */
ST_API int raft_transfer_leadership(struct raft *r, raft_id to);

/* Starts a campaign now (tests and tools; with pre_vote, a pre-campaign).
 * Returns 0 (also when already leader), ST_EINVAL when this node may not
 * campaign (not a voter of its configuration). */
ST_API int raft_campaign(struct raft *r);

/* The ready calls. Preconditions, asserted:
 *   - raft_ready_get() only when no ready is outstanding (every earlier one
 *     was given back with raft_ready_ack());
 *   - raft_ready_ack() only with a ready outstanding, passing that ready;
 *   - raft_has_ready() may be called at any time; it returns false while a
 *     ready is outstanding, and otherwise true when raft_ready_get() would
 *     hand out anything (entries, hard state, messages, committed entries,
 *     reads, a snapshot, a role change).
 * Between get and ack the core may be driven as usual (tick, step, propose,
 * persisted, applied): new work goes into the next ready. Everything a ready
 * points to is owned by the core and valid until its ack; rd is filled by
 * get (its previous content is ignored) and only read by ack. */
ST_API bool raft_has_ready(const struct raft *r);
ST_API void raft_ready_get(struct raft *r, struct raft_ready *rd);
ST_API void raft_ready_ack(struct raft *r, const struct raft_ready *rd);

/* Everything up to (index, term) produced by readies so far is durable: pass
 * a ready's persist_index/persist_term once its write returned (before or
 * after its ack). Reports of an older position, or of an entry that was
 * overwritten since (another term at index), are ignored. Callable at any
 * time. */
ST_API void raft_persisted(struct raft *r, raft_index index, raft_term term);
/* The state machine has applied every committed entry handed out up to index
 * (>= the previous call; index <= the last committed entry handed out:
 * asserted). Snapshots (raft_snapshot_taken) and compaction follow it. */
ST_API void raft_applied(struct raft *r, raft_index index);
/* The application saved a snapshot at `index` (<= applied); the core keeps
 * the meta for followers and compacts its log, keeping at most
 * trailing_entries entries and trailing_bytes payload bytes behind it.
 * Returns the first index still kept (the WAL may drop entries below it;
 * raft_term_at(r, first - 1) is the term to mark there). An index beyond
 * applied, before the log or not newer than the current snapshot is ignored
 * (the first index is returned unchanged). */
ST_API raft_index raft_snapshot_taken(struct raft *r, raft_index index);

/* Transport feedback, callable at any time; ignored unless this node leads
 * and knows the peer. unreachable: messages to peer were lost (the leader
 * probes instead of pipelining). snapshot: the snapshot sent to peer was
 * stored (ok) or failed (sent again later). */
ST_API void raft_report_unreachable(struct raft *r, raft_id peer);
ST_API void raft_report_snapshot(struct raft *r, raft_id peer, bool ok);

/* ------------------------------------------------------------ inspection */

/* Read-only views of the core, callable at any time; pointers returned stay
 * valid until the next call that drives the core (tick, step, propose,
 * persisted, applied, snapshot_taken, ready_get/ack) or raft_destroy. */

ST_API raft_id raft_self(const struct raft *r);
ST_API raft_id raft_leader(const struct raft *r);
ST_API enum raft_role raft_role_get(const struct raft *r);
ST_API raft_term raft_term_get(const struct raft *r);
ST_API raft_index raft_commit_index(const struct raft *r);
ST_API raft_index raft_applied_index(const struct raft *r);
ST_API raft_index raft_first_index(const struct raft *r);
ST_API raft_index raft_last_index(const struct raft *r);
ST_API const struct raft_conf *raft_conf_get(const struct raft *r);
ST_API const struct raft_snapshot_meta *raft_snapshot_get(const struct raft *r); /* NULL if none */
/* Entry at index if held in memory, else NULL. */
ST_API const struct raft_entry *raft_entry_get(const struct raft *r, raft_index index);
/* Term of the entry at index when the core knows it (held in memory, or the
 * last compacted index), else 0. */
ST_API raft_term raft_term_at(const struct raft *r, raft_index index);

enum raft_progress_state {
    RAFT_PROGRESS_PROBE = 0,
    RAFT_PROGRESS_REPLICATE,
    RAFT_PROGRESS_SNAPSHOT
};
struct raft_progress_info {
    raft_id id;
    raft_index match;
    raft_index next;
    uint8_t state;      /* enum raft_progress_state */
    bool recent_active; /* heard from within the last election timeout */
};
/* Leader only: fills up to cap entries (one per member), returns the count;
 * 0 on a non-leader. */
ST_API size_t raft_progress_get(const struct raft *r, struct raft_progress_info *out, size_t cap);

struct raft_stats {
    uint64_t msgs_dropped; /* malformed, misdirected or from unknown peers */
    uint64_t msgs_stale;   /* lower term */
    uint64_t leader_changes;
    uint64_t elections_started;
    uint64_t proposals;
    uint64_t proposals_refused;
    uint64_t reads_served;
};
/* Copies the counters (monotonic since raft_create) into *out. */
ST_API void raft_stats_get(const struct raft *r, struct raft_stats *out);

/* Asserts every internal invariant (walks the whole in-memory log: O(log
 * length)); for tests and debugging. A violation stops the process through
 * the assertion hook (stcache/assert.h). */
ST_API void raft_check_invariants(const struct raft *r);

#ifdef __cplusplus
}
#endif

#endif
