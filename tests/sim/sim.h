/* The deterministic cluster simulator that proves the Raft core (tests/sim/).
 *
 * One seed is one exact run: a single-threaded discrete-event simulation of
 * 3, 5 or 7 nodes (plus the learners added mid-run) around real struct raft
 * cores. Everything that is not the core is simulated here, faithfully to the
 * ready contract of include/stcache/raft.h:
 *
 *   network  seeded drops, duplicates, delays (hence reordering), symmetric
 *            and asymmetric partitions that come and heal; a SNAPSHOT message
 *            carries the sender's state machine image ("streamed");
 *   disk     per node: durable hard state, snapshot (meta + state machine
 *            image) and log; readies are persisted in order with a random
 *            latency, msgs_after_persist leave only once their ready is
 *            durable, raft_persisted() reports completion; a crash loses
 *            every write not yet complete, a restart is raft_create() from
 *            what is durable;
 *   state    a register map plus a client table: every write is a unique
 *   machine  (client, seq), applied at most once, so loss and duplication
 *            show; its image is hashed as a chain over the applied sequence;
 *   clients  submit writes (retrying with the same (client, seq) until
 *            acknowledged) and ReadIndex reads on any node;
 *   chaos    crashes/restarts, partitions, network weather, membership
 *            changes (add learner, promote, remove voter, remove the leader),
 *            leadership transfers, forced campaigns, snapshots.
 *
 * After every step the checkers (sim_check.c) verify the safety properties
 * and the ready contract; the run ends with a fault-free phase in which a
 * leader must emerge and every pending write must commit within a bound.
 *
 * Ownership: a struct sim is created by sim_run() and destroyed before it
 * returns; every message, write and log entry holds its own raft_buf
 * references and releases them when freed. */
#ifndef ST_SIM_H
#define ST_SIM_H

#include "stcache/raft.h"
#include "util/rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SIM_NODES_MAX 32 /* node ids 1..SIM_NODES_MAX per run; never reused */
#define SIM_CLIENTS_MAX 8
#define SIM_KEYS 8
#define SIM_READS_MAX 16  /* pending reads per node (= reads_pending_max) */
#define SIM_TICK_MS 10    /* every node ticks every 10 ms of simulated time */
#define SIM_TRACE_RING 48 /* transcript lines kept for failure reports */
#define SIM_MSG_MAX 512   /* failure message */

/* ---------------------------------------------------------------- options */

struct sim_options {
    uint32_t nodes;       /* 3, 5 or 7; 0 = chosen per seed */
    uint64_t steps;       /* steps of the fault phase */
    bool verbose;         /* print the transcript */
    bool membership;      /* membership-heavy profile */
    bool safety_only;     /* disable the direct ready-contract checks */
    bool no_invariants;   /* skip raft_check_invariants() (mutation analysis only) */
    const char *mutation; /* simulator-side mutation (see sim_mutation_known) */
};

/* Simulator-side mutations: break the runtime half of the ready contract. */
bool sim_mutation_known(const char *name);

/* ------------------------------------------------------------- counters */

struct sim_counts {
    uint64_t steps;
    uint64_t elections; /* distinct (term, leader) pairs observed */
    uint64_t commits;   /* entries committed (global watermark) */
    uint64_t writes_acked;
    uint64_t reads;         /* reads served and checked */
    uint64_t snapshots;     /* snapshots taken */
    uint64_t snap_installs; /* snapshots installed from a leader */
    uint64_t conf_changes;  /* conf entries committed (beyond the bootstrap) */
    uint64_t crashes;
    uint64_t partitions;
    uint64_t transfers;
    uint64_t msgs;
    uint64_t liveness_ms; /* simulated time the final phase needed */
};

struct sim_result {
    bool failed;
    char msg[SIM_MSG_MAX];
    uint64_t hash; /* transcript hash: equal for equal seeds */
    uint32_t nodes;
    struct sim_counts counts;
};

/* Runs one seed. Returns 0, or -1 if the simulator itself could not run
 * (allocation failure); a failed check is res->failed. */
int sim_run(uint64_t seed, const struct sim_options *opt, struct sim_result *res);

/* ------------------------------------------------------- state machine */

/* A write command: 'W' | client u8 | key u8 | pad_len u8 | seq u32 | value u64
 * | pad bytes derived from value. value = client << 32 | seq (unique). */
#define SIM_CMD_HDR 16
#define SIM_CMD_PAD_MAX 120

struct sim_cmd {
    uint8_t client;
    uint8_t key;
    uint8_t pad_len;
    uint32_t seq;
    uint64_t value;
};

size_t sim_cmd_encode(const struct sim_cmd *c, uint8_t *out);
int sim_cmd_decode(const uint8_t *data, size_t len, struct sim_cmd *c);

struct sim_sm {
    raft_index applied;
    raft_term applied_term;
    raft_index version; /* index of the last effective write (0: none) */
    uint64_t chain;     /* hash chain over every applied (index, term, type, payload) */
    uint64_t writes;    /* effective writes */
    uint32_t last_seq[SIM_CLIENTS_MAX];
    uint64_t value[SIM_KEYS];
};

/* --------------------------------------------------------------- network */

struct sim_msg {
    struct raft_msg m;       /* entries/snapshot point into this object */
    struct sim_sm snap_data; /* SNAPSHOT: the sender's image at meta.index */
    uint32_t from_inc;       /* sender incarnation (transport feedback) */
};

/* ------------------------------------------------------------------ disk */

/* One ready waiting for the disk, in production order. */
struct sim_write {
    uint64_t id;
    bool hs_changed;
    struct raft_hard_state hs;
    struct raft_entry *ents; /* refs held */
    size_t n_ents;
    raft_index persist_index;
    raft_term persist_term;
    struct sim_msg **after; /* msgs_after_persist, owned */
    size_t n_after;
    int64_t done_at;
};

/* ----------------------------------------------------------------- nodes */

struct sim_read {
    uint64_t ctx;
    uint8_t client;
    bool answered;
    raft_index index;
    raft_index floor; /* linearizability floor when the read was issued */
};

struct sim_node {
    raft_id id;
    bool exists; /* created in this run */
    bool up;
    bool destroyed; /* decommissioned after its removal committed */
    bool initial;   /* member of the initial configuration */
    uint32_t inc;   /* incarnation: bumped at every crash */
    struct raft *r;
    struct raft_config cfg;

    /* durable ("the disk") */
    struct raft_hard_state hs;
    bool has_snap;
    struct raft_snapshot_meta snap;
    struct sim_sm snap_sm;
    struct raft_entry *log; /* contiguous, refs held */
    size_t log_n, log_cap;

    /* volatile */
    struct sim_write *wq; /* pending disk writes, oldest first */
    size_t wq_n, wq_cap;
    int64_t disk_busy_until;
    uint64_t write_ids;
    struct sim_sm sm;
    struct sim_read reads[SIM_READS_MAX];
    size_t n_reads;
    bool stash_valid; /* last snapshot received from the network */
    struct sim_sm stash;
    raft_term stash_term;
    raft_index snap_every; /* take a snapshot after this many applied entries */

    /* observation (checker) */
    enum raft_role role;
    raft_term term;
    raft_index commit;
    bool touched;
};

/* ---------------------------------------------------------------- events */

enum sim_event_type {
    SIM_EV_TICK = 1,
    SIM_EV_DELIVER,
    SIM_EV_DISK,
    SIM_EV_CLIENT,
    SIM_EV_CHAOS,
    SIM_EV_RESTART,
    SIM_EV_HEAL,
    SIM_EV_REPORT, /* transport feedback to a sender (snapshot sent / unreachable) */
    SIM_EV_CRASH,  /* a new leader dies young (Figure 8 material) */
};

struct sim_event {
    int64_t at;
    uint64_t seq;
    uint8_t type;
    uint8_t node; /* node id (TICK/DISK/RESTART) or client (CLIENT) */
    uint32_t inc;
    uint64_t arg; /* DISK: write id; REPORT: peer | snapshot << 32 | ok << 33 */
    struct sim_msg *msg;
};

/* --------------------------------------------------------------- clients */

struct sim_client {
    uint32_t seq; /* current (or last) write */
    bool write_pending;
    struct sim_cmd cmd;
    uint32_t submitted[SIM_NODES_MAX + 1]; /* node incarnation + 1 it went to */
    int64_t write_retry_at;
    raft_id hint;
    bool read_pending;
    uint64_t read_ctx;
    int64_t read_deadline;
    bool final_write_done; /* final phase: one write and one read each */
    bool final_read_done;
};

/* ------------------------------------------------------------- checker */

struct sim_hist { /* applied history, by index (first applier) */
    bool set;
    uint8_t type;
    raft_term term;
    uint64_t payload_hash;
    uint64_t chain;
    raft_index version;
};

struct sim_commit { /* committed entries (global watermark) */
    raft_term entry_term;
    raft_term commit_term; /* term of the leader that committed it first (0: bootstrap) */
};

struct sim_lm_slot {  /* log matching: (index, term) -> content */
    raft_index index; /* 0: empty slot */
    raft_term term;
    uint64_t payload_hash;
    raft_term prev_term;
    bool prev_known;
    bool fresh; /* inserted, content not recorded yet */
};

struct sim_vote { /* granted votes: (voter, term) -> candidate */
    raft_id voter;
    raft_term term;
    raft_id candidate;
};

struct sim_checker {
    struct sim_hist *hist;
    size_t hist_cap;
    raft_index hist_max;
    struct sim_commit *committed;
    size_t committed_cap;
    raft_index commit_max;
    raft_id *leader_of_term;
    size_t leader_of_term_cap;
    struct sim_lm_slot *lm;
    size_t lm_cap, lm_n;
    struct sim_vote *votes;
    size_t votes_n, votes_cap;
    raft_index *effect[SIM_CLIENTS_MAX]; /* effect index of (client, seq) */
    size_t effect_cap[SIM_CLIENTS_MAX];
    raft_index floor;      /* linearizability floor */
    struct raft_conf conf; /* committed configuration */
    bool ever_member[SIM_NODES_MAX + 1];
};

/* ------------------------------------------------------------- the sim */

struct sim_profile {
    uint32_t drop_pct, dup_pct; /* current network weather */
    uint32_t drop_max_pct, dup_max_pct;
    uint32_t delay_min_ms, delay_jitter_ms;
    uint32_t long_delay_pct; /* chance of a 50-400 ms delay */
    uint32_t disk_min_ms, disk_jitter_ms;
    uint32_t chaos_min_ms, chaos_jitter_ms;
    uint32_t w_crash, w_partition, w_heal, w_weather, w_conf, w_transfer, w_campaign, w_snapshot,
        w_decommission;
    uint32_t clients;
    uint32_t client_think_ms;
    uint32_t read_pct;
    uint32_t min_voters, max_voters;
    uint32_t kill_leader_pct; /* chance that a new leader crashes within 40 ms */
};

struct sim {
    uint64_t seed;
    struct sim_options opt;
    struct st_rng rng;
    struct sim_result *res;
    struct sim_profile prof;
    uint32_t n_initial;
    struct sim_node nodes[SIM_NODES_MAX + 1]; /* by id; [0] unused */
    raft_id next_id;
    struct raft_conf initial_conf;
    struct raft_config base_cfg;

    int64_t now;
    uint64_t step;
    struct sim_event *heap;
    size_t heap_n, heap_cap;
    uint64_t ev_seq;

    bool blocked[SIM_NODES_MAX + 1][SIM_NODES_MAX + 1]; /* [from][to] */
    bool final_phase;
    struct sim_client clients[SIM_CLIENTS_MAX];
    uint64_t read_ctx_next;

    struct sim_checker ck;
    struct raft_conf scratch_conf;

    /* transcript */
    uint64_t hash;
    char ring[SIM_TRACE_RING][200];
    uint32_t ring_pos, ring_n;
    bool mut_send_early;   /* mutation: msgs_after_persist sent at once */
    bool mut_ack_unstable; /* mutation: raft_persisted() before the disk */
};

/* sim.c */
extern struct sim *sim_current; /* the run in progress (crash handler) */
void sim_print_ring(const struct sim *s, FILE *f);
/* Term of node n's durable entry at index; false when its disk cannot tell. */
bool sim_disk_term(const struct sim_node *n, raft_index index, raft_term *term);
raft_index sim_disk_last(const struct sim_node *n);
__attribute__((format(printf, 2, 3))) void sim_trace(struct sim *s, const char *fmt, ...);
__attribute__((format(printf, 2, 3))) void sim_fail(struct sim *s, const char *fmt, ...);
uint64_t sim_hash_bytes(uint64_t h, const void *p, size_t n);
uint64_t sim_hash_u64(uint64_t h, uint64_t v);
uint64_t sim_entry_hash(const struct raft_entry *e);
void sim_sm_apply(struct sim_sm *sm, const struct raft_entry *e, struct sim_cmd *cmd_out,
                  bool *effective);
const char *sim_role_short(enum raft_role role);

/* sim_check.c */
int sim_check_init(struct sim *s);
void sim_check_close(struct sim *s);
/* Records the bootstrap entries (1..n, term 1) as committed. */
void sim_check_bootstrap(struct sim *s, raft_index n);
/* After any input to node n and before its ready is processed. */
void sim_check_observe(struct sim *s, struct sim_node *n);
/* Entries become visible outside node n (durable on its disk, or sent):
 * they enter the log-matching table. prev: the term of the entry before. */
void sim_check_visible(struct sim *s, const struct sim_node *n, const struct raft_entry *e,
                       size_t cnt, bool prev_known, raft_term prev);
/* Whole-node checks after a step: log matching, membership. */
void sim_check_node(struct sim *s, struct sim_node *n);
/* Node n applies e (state machine already advanced into *sm_after). */
void sim_check_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e,
                     const struct sim_sm *sm_after, const struct sim_cmd *cmd, bool effective);
/* Node n restored its state machine from a snapshot image. */
void sim_check_restore(struct sim *s, struct sim_node *n, const struct sim_sm *sm);
/* A message leaves node n (ready.msgs at once, or after its persist). */
void sim_check_send(struct sim *s, struct sim_node *n, const struct raft_msg *m);
/* A read issued with floor `floor` is served on node n. */
void sim_check_read(struct sim *s, struct sim_node *n, raft_index read_index, raft_index floor);
/* The write (client, seq) was acknowledged by node n. */
void sim_check_ack(struct sim *s, struct sim_node *n, uint8_t client, uint32_t seq);
raft_index sim_check_effect(struct sim *s, uint8_t client, uint32_t seq);

#endif
