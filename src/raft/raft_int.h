/* Internals of the Raft core, shared by the files of src/raft/.
 *
 * Role state machine (only the raft_become_* family changes r->role):
 *
 *            raft_become_follower(): a higher term is seen, a leader of our
 *            term speaks, or the (pre-)vote is lost
 *      +-------------------------------------+-------------------------+
 *      v                                     |                         |
 *  +----------+  election timeout, pre_vote  +---------------+         |
 *  | FOLLOWER |----------------------------->| PRE_CANDIDATE |--+      |
 *  +----------+  raft_become_pre_candidate() | term kept     |<-+ timeout:
 *      |                                     +---------------+   new round
 *      | election timeout without                    |
 *      | pre_vote, or TIMEOUT_NOW                    | quorum of pre-votes
 *      | (forced: no pre-vote)                       v raft_become_candidate()
 *      |                                     +---------------+
 *      +------------------------------------>|   CANDIDATE   |--+ timeout:
 *        raft_become_candidate()             | term+1, votes |<-+ term+1
 *                                            | for itself    |
 *                                            +---------------+
 *                                                    | quorum of votes
 *                                                    v raft_become_leader()
 *                                            +---------------+
 *   FOLLOWER <-- raft_become_follower():     |    LEADER     |  appends a NOOP
 *   a higher term, check-quorum failed       +---------------+  of its term
 *   (thesis 6.2), or its own removal committed (thesis 4.2.2)   (thesis 8)
 *
 * Learners and removed servers never leave FOLLOWER (raft_promotable()).
 *
 * What each role guarantees:
 *   FOLLOWER      leader is the node whose APPEND/HEARTBEAT/SNAPSHOT of this
 *                 term we accepted (RAFT_NONE if none yet); vote is durable
 *                 before any VOTE_RESP that grants it is sent.
 *   PRE_CANDIDATE term unchanged, no vote cast: a partitioned node never
 *                 inflates terms (thesis 9.6).
 *   CANDIDATE     term bumped and self-vote recorded in the same ready; the
 *                 VOTE requests go out only after that ready is durable.
 *   LEADER        leader == self; holds a progress for every member; commits
 *                 only entries of its own term by counting (Figure 3.2).
 */
#ifndef ST_RAFT_INT_H
#define ST_RAFT_INT_H

#include "stcache/raft.h"
#include "util/assert.h"
#include "util/rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Progress slots: every member, plus the leader itself once it removed itself,
 * plus removed members still being told of their removal (evicted first when
 * slots run out). */
#define RAFT_PRS_MAX (RAFT_MEMBERS_MAX + 4)

/* msg.context of a VOTE/PREVOTE sent by a campaign that TIMEOUT_NOW forced:
 * voters then ignore the leader lease (thesis 4.2.3, 3.10). */
#define RAFT_CONTEXT_TRANSFER UINT64_C(0x5452414e53464552) /* "TRANSFER" */

/* --------------------------------------------------------------- memory */

/* Every allocation of the core goes through the configured allocator. */
static inline void *raft_mem_realloc(const struct raft_config *c, void *p, size_t n)
{
    if (c->realloc_fn) return c->realloc_fn(c->alloc_ctx, p, n);
    if (n == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, n);
}

static inline void *raft_mem_calloc(const struct raft_config *c, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size) return NULL;
    size_t bytes = n * size;
    void *p = raft_mem_realloc(c, NULL, bytes > 0 ? bytes : 1);
    if (p) memset(p, 0, bytes);
    return p;
}

static inline void raft_mem_free(const struct raft_config *c, void *p)
{
    if (p) raft_mem_realloc(c, p, 0);
}

/* ------------------------------------------------------------------ log */

/* The in-memory log: entries (prev_index, prev_index + n] in a ring.
 * Invariants: applied <= applying <= commit; stable <= last; handed <= last;
 * commit <= last; terms non-decreasing; index of slot k is prev_index+1+k. */
struct raft_log {
    const struct raft_config *cfg; /* allocator */
    struct raft_entry *ents;       /* ring of cap slots (power of two) */
    size_t cap;
    size_t head; /* slot of the first entry */
    size_t n;
    raft_index prev_index; /* last compacted index (0 = none) */
    raft_term prev_term;
    raft_index stable; /* reported durable by raft_persisted() */
    raft_index handed; /* handed out for persisting in a ready */
    raft_index commit;
    raft_index applying; /* handed out in ready.committed */
    raft_index applied;  /* reported by raft_applied() */
    /* Payload references of compacted entries, released a bounded number at
     * a time (log_release_some): compacting after a snapshot drops tens of
     * thousands of entries at once, and releasing all their buffers in one
     * go stalled the caller's loop for milliseconds. */
    struct raft_buf **garbage;
    size_t n_garbage, cap_garbage;
};

#define LOG_RELEASE_PER_CALL 2048

void log_init(struct raft_log *l, const struct raft_config *cfg);
void log_close(struct raft_log *l);
/* Releases up to max references of compacted entries. */
void log_release_some(struct raft_log *l, size_t max);
raft_index log_first(const struct raft_log *l);
raft_index log_last(const struct raft_log *l);
raft_term log_last_term(const struct raft_log *l);
/* Term of entry `index`; 0 and false when unknown (compacted or beyond last). */
bool log_term(const struct raft_log *l, raft_index index, raft_term *term);
/* Term or 0 when unknown. */
raft_term log_term_or0(const struct raft_log *l, raft_index index);
bool log_match_term(const struct raft_log *l, raft_index index, raft_term term);
struct raft_entry *log_get(const struct raft_log *l, raft_index index);
/* Makes room for n more entries; 0 or ST_ENOMEM (nothing changed). */
int log_reserve(struct raft_log *l, size_t n);
/* Appends a copy of e (index must be last+1), taking a buffer reference.
 * Room must have been reserved. */
void log_append(struct raft_log *l, const struct raft_entry *e);
/* Drops entries >= index (index > commit). */
void log_truncate_from(struct raft_log *l, raft_index index);
/* Drops entries <= index (index <= applied). */
void log_compact_to(struct raft_log *l, raft_index index);
/* Drops every entry; the log restarts after (index, term). */
void log_reset(struct raft_log *l, raft_index index, raft_term term);
bool log_is_up_to_date(const struct raft_log *l, raft_index last_index, raft_term last_term);
/* First index of the run of entries with the term of `index`, going back no
 * further than the first entry in memory. */
raft_index log_term_start(const struct raft_log *l, raft_index index);
/* Largest index <= index whose term <= term (0 if none known). */
raft_index log_last_index_with_term_le(const struct raft_log *l, raft_index index, raft_term term);

/* ------------------------------------------------------------ progress */

struct raft_inflights {
    raft_index *buf; /* last index of each append in flight, oldest first */
    uint32_t start;
    uint32_t count;
    uint32_t cap;
};

struct raft_progress {
    raft_id id;
    raft_index match;
    raft_index next;
    uint8_t state;               /* enum raft_progress_state */
    bool probe_sent;             /* probe: one append per heartbeat until it answers */
    bool recent_active;          /* heard from during the current check-quorum window */
    raft_index pending_snapshot; /* snapshot state: the index of the snapshot sent */
    uint64_t acked_round;        /* highest heartbeat round acknowledged (ReadIndex) */
    bool departed;               /* removed from conf: still replicated to until it
                                    holds the removal and hears it committed (so it
                                    stops campaigning); never counted in a quorum */
    raft_index removed_at;       /* departed: index of the conf entry removing it */
    struct raft_inflights ins;
};

void progress_reset(struct raft_progress *p, raft_id id, raft_index next, raft_index *ins_buf,
                    uint32_t ins_cap);
void progress_to_probe(struct raft_progress *p);
void progress_to_replicate(struct raft_progress *p);
void progress_to_snapshot(struct raft_progress *p, raft_index snap_index);
/* Records an ack of `index`; returns true if match moved. */
bool progress_update(struct raft_progress *p, raft_index index);
/* Applies a rejection of `rejected` with a leader-computed next probe index;
 * returns false for a stale rejection. */
bool progress_decr_to(struct raft_progress *p, raft_index rejected, raft_index probe_next);
bool progress_paused(const struct raft_progress *p);
void progress_sent(struct raft_progress *p, raft_index last_sent, bool has_entries);
void inflights_free_to(struct raft_inflights *in, raft_index index);
bool inflights_full(const struct raft_inflights *in);
void inflights_free_first(struct raft_inflights *in);

/* --------------------------------------------------------------- output */

/* One batch of output. Two exist: the one being filled and the one handed to
 * the application by raft_ready_get() (valid until raft_ready_ack()). */
struct raft_msgvec {
    struct raft_msg *v;
    size_t *ent_off;  /* offset of the entries in the pool, SIZE_MAX if none */
    size_t *meta_off; /* offset of the snapshot meta, SIZE_MAX if none */
    size_t n;
    size_t cap;
};

struct raft_out {
    struct raft_msgvec msgs;
    struct raft_msgvec after; /* msgs_after_persist */
    struct raft_entry *pool;  /* entries referenced by messages (refs held) */
    size_t n_pool, cap_pool;
    struct raft_snapshot_meta *metas;
    size_t n_metas, cap_metas;
    struct raft_read_state *reads; /* capacity reads_pending_max, preallocated */
    size_t n_reads;
    struct raft_entry *persist; /* ready.entries (refs held) */
    size_t n_persist, cap_persist;
    struct raft_entry *committed; /* ready.committed (refs held) */
    size_t n_committed, cap_committed;
    bool has_snapshot;
    struct raft_snapshot_meta snapshot;
};

/* --------------------------------------------------------------- reads */

struct raft_read {
    uint64_t context;
    raft_id from;     /* RAFT_NONE: local; else the follower that asked */
    raft_index index; /* 0 until the leader committed an entry of its term */
    uint64_t round;   /* heartbeat round that must be acked by a quorum */
    uint64_t tick;    /* when it was queued (follower-side timeout) */
    bool lease;
};

/* --------------------------------------------------------------- state */

struct raft_vote_rec {
    raft_id id;
    bool granted;
};

struct raft {
    struct raft_config cfg;
    struct st_rng rng;

    raft_term term;
    raft_id vote;
    raft_id leader;
    enum raft_role role;
    /* The hard state of the current term is known durable. False from
     * raft_become_candidate() until a peer grants a vote (our VOTE requests
     * left only after the disk) or an entry of this term is reported
     * persisted. A leader's messages wait in msgs_after_persist until then:
     * a single voter wins at once, and its appends must not announce a term
     * a crash could erase (the sim caught two leaderships of one term). */
    bool term_durable;

    struct raft_log log;

    /* Membership. conf = base_conf + every valid conf entry in the log, in
     * order: a configuration takes effect when appended (thesis 4.1). */
    struct raft_conf conf;
    raft_index conf_index;      /* index of the last conf entry in conf; 0: none */
    struct raft_conf base_conf; /* as of log.prev_index */

    bool has_snapshot;
    struct raft_snapshot_meta snap;
    bool snap_to_install; /* follower restored: hand out in the next ready */

    /* Leader state. */
    struct raft_progress prs[RAFT_PRS_MAX];
    uint32_t n_prs;
    raft_index *ins_pool; /* RAFT_PRS_MAX * inflight_msgs_max */
    bool ins_slot_used[RAFT_PRS_MAX];
    raft_index pending_conf_index;
    uint64_t uncommitted_bytes;
    raft_id transferee;
    uint32_t transfer_elapsed;
    /* Set once this leadership sent TIMEOUT_NOW: the target's forced campaign
     * ignores the followers' lease, so ours no longer holds. */
    bool lease_revoked;
    /* The highest index an append of this leadership carried to anyone. A
     * leader that needs other voters for a quorum hands entries out for
     * persisting only up to here (ready.c handout_limit). */
    raft_index append_sent_max;
    bool bcast_pending;      /* send appends at the next ready (batching) */
    bool commit_bcast;       /* commit moved: tell replicating followers */
    uint64_t round;          /* last heartbeat round started */
    uint64_t round_tick[64]; /* tick at which round r started, at [r % 64] */

    /* Candidate state. */
    struct raft_vote_rec votes[RAFT_MEMBERS_MAX + 1]; /* voters + self */
    uint32_t n_votes;

    /* Clock. */
    uint64_t ticks;
    uint32_t election_elapsed;
    uint32_t heartbeat_elapsed;
    uint32_t randomized_timeout;

    /* Reads waiting for a leader confirmation (leader) or an answer (follower). */
    struct raft_read *reads;
    size_t n_reads;

    /* Output. */
    struct raft_out out[2];
    int fill; /* out[fill] is being filled */
    bool ready_outstanding;
    struct raft_hard_state hs_handed;
    enum raft_role ss_role;
    raft_id ss_leader;
    raft_term ss_term;

    struct raft_stats stats;
};

/* role.c: the only functions that change r->role */
void raft_become_follower(struct raft *r, raft_term term, raft_id leader);
void raft_become_pre_candidate(struct raft *r);
void raft_become_candidate(struct raft *r);
void raft_become_leader(struct raft *r);

/* raft.c: helpers shared by the core */
void raft_reset_randomized_timeout(struct raft *r);
bool raft_promotable(const struct raft *r);
bool raft_is_voter(const struct raft *r, raft_id id);
struct raft_progress *raft_progress_find(struct raft *r, raft_id id);
size_t raft_quorum(const struct raft *r);

/* ready.c: the outbox */
/* Queues a message (entries are copied by struct, buffers referenced).
 * after_persist selects msgs_after_persist. Returns false if dropped for lack
 * of memory. */
bool raft_send(struct raft *r, const struct raft_msg *m, bool after_persist);
/* Same, with entries [first, first + n) taken from the log. */
bool raft_send_log(struct raft *r, const struct raft_msg *m, raft_index first, size_t n,
                   bool after_persist);
/* Pushes a read answer for the application into the batch being filled. */
void raft_out_read(struct raft *r, uint64_t context, raft_index index, int status);
/* Frees what an outbox holds (its arrays and the references of its entries,
 * snapshot metas and reads). c supplies the allocator. Only from
 * raft_destroy(); the outbox is unusable afterwards. */
void raft_out_free(const struct raft_config *c, struct raft_out *o);

/* election.c */
void election_tick(struct raft *r);
void election_campaign(struct raft *r, bool pre_vote, bool forced);
int election_step_vote(struct raft *r, const struct raft_msg *m);
int election_step_vote_resp(struct raft *r, const struct raft_msg *m);

/* replication.c */
int replication_append_local(struct raft *r, uint8_t type, struct raft_buf *buf,
                             const uint8_t *data, uint32_t len, raft_index *index);
bool replication_send_append(struct raft *r, struct raft_progress *p, bool allow_empty);
void replication_bcast_append(struct raft *r);
void replication_bcast_heartbeat(struct raft *r);
bool replication_maybe_commit(struct raft *r);
void replication_commit_to(struct raft *r, raft_index index);
int replication_step_append(struct raft *r, const struct raft_msg *m);
int replication_step_heartbeat(struct raft *r, const struct raft_msg *m);
int replication_step_append_resp(struct raft *r, const struct raft_msg *m);
int replication_step_heartbeat_resp(struct raft *r, const struct raft_msg *m);
int replication_step_propose(struct raft *r, const struct raft_msg *m);
void replication_leader_tick(struct raft *r);
void replication_send_timeout_now(struct raft *r, raft_id to);
bool replication_quorum_active(const struct raft *r);
bool replication_committed_in_term(const struct raft *r);

/* membership.c */
/* Recomputes conf from base_conf and the conf entries in the log. */
void membership_rebuild(struct raft *r);
/* Applies the conf entries among [from, to] to conf (they were just appended). */
void membership_on_append(struct raft *r, raft_index from, raft_index to);
/* The configuration as of `index` (>= log.prev_index). */
void membership_conf_at(const struct raft *r, raft_index index, struct raft_conf *out);
/* Leader: creates/drops progress to mirror conf. */
void membership_sync_progress(struct raft *r);
/* Leader, commit moved: tells departed members their removal committed and
 * drops their progress. */
void membership_release_departed(struct raft *r);
/* Leader, end of a check-quorum window: forgets departed members that did
 * not answer during it (bounded lingering). */
void membership_drop_inactive_departed(struct raft *r);
/* Builds the bootstrap conf entries of initial_conf. */
int membership_bootstrap(struct raft *r, const struct raft_conf *initial);
/* Appends the conf entries that leave this node alone in its configuration
 * (raft_bootstrap_state.force_self) and commits up to them; 0, ST_ENOMEM. */
int membership_force_alone(struct raft *r, const struct raft_member *self);
bool membership_conf_valid(const struct raft_conf *c);

/* snapshot.c */
int snapshot_step(struct raft *r, const struct raft_msg *m);
/* Sends the latest snapshot meta to p and waits for the outcome; false when
 * out of memory (nothing changed). */
bool snapshot_send(struct raft *r, struct raft_progress *p);

/* read_index.c */
int read_index_step_request(struct raft *r, const struct raft_msg *m);
int read_index_step_resp(struct raft *r, const struct raft_msg *m);
void read_index_on_round_ack(struct raft *r);
void read_index_on_term_commit(struct raft *r);
/* Fails every pending read (role change): local ones in ready.reads with
 * ST_ENOTLEADER, forwarded ones with a reject to their follower. */
void read_index_fail_all(struct raft *r, int status);
void read_index_tick(struct raft *r);
/* Leader: starts a heartbeat round, returns its number. */
uint64_t read_index_start_round(struct raft *r);
/* Ready time: gives a heartbeat round to reads that wait for one. */
void read_index_flush(struct raft *r);
bool read_index_round_wanted(const struct raft *r);
bool read_index_lease_valid(const struct raft *r);

#endif
