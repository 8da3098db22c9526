/* --max-memory and --eviction-policy (issue 14, finding 5).
 *
 * Used memory is the kv's deterministic accounting (kv_used_bytes: key +
 * value + a fixed overhead per key), so every replica agrees on it at every
 * index. The limit is enforced where a write is proposed, never where it is
 * applied: apply never refuses on local configuration (docs/KV.md,
 * determinism).
 *
 *   write proposed here, PUT growing used by d > 0 bytes:
 *     projected = used + writes_pending + d - evict_pending
 *     projected <= max                 -> proposed
 *     noeviction, or nothing evictable -> refused: ST_EMEMLIMIT (HTTP 507)
 *     leader, eviction policy          -> EVICT(victims) proposed first, then
 *                                         the write: the EVICT has the lower
 *                                         index, so it applies first
 *     follower, eviction policy        -> forwarded; the leader evicts after
 *                                         applying it (memory_check_leader)
 *
 * Victims are chosen by the leader alone from its own statistics and sent
 * as a KV_CMD_EVICT entry listing (key, version): every replica evicts the
 * same keys at the same index and stays byte-identical. The access clocks
 * (LRU) live in a lossy direct-mapped table here, never in the kv, so they
 * touch neither the replicated state nor its digest. Keys listed in an
 * EVICT not yet applied are marked in that table and not chosen again.
 */
#include "node/node_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/trace.h"

#define MOD "node"

#define MEM_LRU_SAMPLES 16    /* keys sampled per LRU victim (Redis: 5) */
#define MEM_TTL_CANDIDATES 64 /* heap front scanned per volatile-ttl victim */
/* A power of two; 128 KiB: few set overflows for small states. */
#define MEM_ACCESS_SLOTS_MIN 16384u
#define MEM_ACCESS_SLOTS_MAX (1u << 22)
#define MEM_CLOCK_EVICTING UINT32_MAX /* slot clock: listed in an EVICT in flight */

static bool policy_evicts(const struct node *n)
{
    return n->cfg.max_memory && n->cfg.eviction_policy != NODE_EVICT_NONE;
}

/* -------------------------------------------------------- access table */

static uint64_t *access_slot(struct node *n, uint32_t hash);

static void access_grow(struct node *n, size_t cap)
{
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return; /* keep the smaller table: LRU gets coarser, nothing breaks */
    uint64_t *old = n->mem.access;
    size_t old_cap = n->mem.access_cap;
    n->mem.access = slots;
    n->mem.access_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i]) *access_slot(n, (uint32_t)(old[i] >> 32)) = old[i];
    free(old);
}

int node_memory_init(struct node *n)
{
    memset(&n->mem, 0, sizeof n->mem);
    st_rng_init(&n->mem.rng, n->cfg.seed ? n->cfg.seed ^ 0x5eedULL : (uint64_t)node_now_us());
    n->mem.clock = 1;
    if (!policy_evicts(n)) return 0;
    access_grow(n, MEM_ACCESS_SLOTS_MIN);
    n->mem.keys = calloc(KV_EVICT_KEYS_MAX, sizeof *n->mem.keys);
    if (n->mem.access && n->mem.keys) return 0;
    node_memory_close(n);
    return ST_ENOMEM;
}

void node_memory_close(struct node *n)
{
    free(n->mem.access);
    free(n->mem.keys);
    n->mem.access = NULL;
    n->mem.keys = NULL;
    n->mem.access_cap = 0;
}

/* The table is 4-way set associative: a key lives in one of the 4 slots of
 * set (hash / 4); a new key takes a free slot or the set's oldest one. */
#define MEM_WAYS 4

static uint64_t *access_set(struct node *n, uint32_t hash)
{
    return &n->mem.access[(hash & (n->mem.access_cap - 1)) & ~(size_t)(MEM_WAYS - 1)];
}

/* The slot holding hash, or the one a new entry for it replaces. */
static uint64_t *access_slot(struct node *n, uint32_t hash)
{
    uint64_t *set = access_set(n, hash);
    uint64_t *victim = NULL;
    uint32_t victim_age = 0;
    for (int i = 0; i < MEM_WAYS; i++) {
        if (set[i] && (uint32_t)(set[i] >> 32) == hash) return &set[i];
        uint32_t c = (uint32_t)set[i];
        uint32_t age = !set[i] ? UINT32_MAX : c == MEM_CLOCK_EVICTING ? 0 : n->mem.clock - c;
        if (!victim || age > victim_age) {
            victim = &set[i];
            victim_age = age;
        }
    }
    return victim;
}

void node_memory_touch(struct node *n, uint32_t hash)
{
    if (!n->mem.access) return;
    uint32_t c = n->mem.clock++;
    if (n->mem.clock == MEM_CLOCK_EVICTING) n->mem.clock = 1;
    *access_slot(n, hash) = (uint64_t)hash << 32 | c;
}

/* The key's access clock: 0 (oldest) when unknown, MEM_CLOCK_EVICTING when
 * listed in an EVICT in flight. */
static uint32_t access_clock(struct node *n, uint32_t hash)
{
    uint64_t v = *access_slot(n, hash);
    return v && (uint32_t)(v >> 32) == hash ? (uint32_t)v : 0;
}

/* Age in accesses, wrap-safe. */
static uint32_t access_age(struct node *n, uint32_t clock)
{
    return n->mem.clock - clock;
}

static void access_forget(struct node *n, uint32_t hash)
{
    uint64_t *slot = access_slot(n, hash);
    if (*slot && (uint32_t)(*slot >> 32) == hash) *slot = 0;
}

void node_memory_tick(struct node *n)
{
    if (!n->mem.access) return;
    struct kv_stats ks;
    kv_stats(n->kv, &ks);
    size_t want = n->mem.access_cap;
    while (want < MEM_ACCESS_SLOTS_MAX && want < ks.keys * 2)
        want *= 2;
    if (want > n->mem.access_cap) access_grow(n, want);
}

/* -------------------------------------------------------- accounting */

void node_memory_leader_changed(struct node *n, bool leader)
{
    /* EVICTs of a former term may never apply: forget them, and their marks. */
    n->mem.evict_inflight = 0;
    n->mem.evict_pending_bytes = 0;
    n->mem.fwd_head = n->mem.fwd_n = 0;
    n->mem.fwd_pending_bytes = 0;
    if (leader && n->mem.access)
        for (size_t i = 0; i < n->mem.access_cap; i++)
            if ((uint32_t)n->mem.access[i] == MEM_CLOCK_EVICTING) n->mem.access[i] = 0;
}

void node_memory_applied(struct node *n, const struct kv_result *res)
{
    switch (res->type) {
    case KV_CMD_PUT:
    case KV_CMD_PUT_SESSION:
        if (res->status == KV_STATUS_OK) node_memory_touch(n, res->key_hash);
        break;
    case KV_CMD_EVICT:
        n->m.evicted_keys += res->evicted;
        if (res->req.node_id == n->cfg.id && n->mem.evict_inflight > 0) {
            n->mem.evict_inflight--;
            n->mem.evict_pending_bytes =
                n->mem.evict_inflight == 0 || n->mem.evict_pending_bytes < res->evicted_bytes
                    ? 0
                    : n->mem.evict_pending_bytes - res->evicted_bytes;
        }
        break;
    default:
        break;
    }
}

uint64_t node_memory_used(const struct node *n)
{
    return n->kv ? kv_used_bytes(n->kv) : 0;
}

static uint64_t projected(const struct node *n, uint64_t add)
{
    uint64_t p = node_memory_used(n) + n->mem.writes_pending_bytes + n->mem.fwd_pending_bytes + add;
    return p > n->mem.evict_pending_bytes ? p - n->mem.evict_pending_bytes : 0;
}

/* -------------------------------------------------------- victims */

/* One victim for the policy, marked; false when none is left. */
static bool victim_pick(struct node *n, struct kv_sample *out)
{
    struct kv_sample s[MEM_TTL_CANDIDATES];
    enum node_eviction_policy p = n->cfg.eviction_policy;
    size_t got;
    int best = -1;
    if (p == NODE_EVICT_VOLATILE_TTL) {
        got = kv_sample(n->kv, KV_SAMPLE_SOONEST, 0, s, MEM_TTL_CANDIDATES);
        for (size_t i = 0; i < got; i++) {
            if (access_clock(n, s[i].hash) == MEM_CLOCK_EVICTING) continue;
            if (best < 0 || s[i].expire_at_ms < s[best].expire_at_ms) best = (int)i;
        }
    } else {
        enum kv_sample_from from = p == NODE_EVICT_VOLATILE_LRU ? KV_SAMPLE_TTL : KV_SAMPLE_ALL;
        size_t want = p == NODE_EVICT_ALLKEYS_RANDOM ? 4 : MEM_LRU_SAMPLES;
        got = kv_sample(n->kv, from, st_rng_next(&n->mem.rng), s, want);
        uint32_t best_age = 0;
        for (size_t i = 0; i < got; i++) {
            uint32_t c = access_clock(n, s[i].hash);
            if (c == MEM_CLOCK_EVICTING) continue;
            if (p == NODE_EVICT_ALLKEYS_RANDOM) {
                best = (int)i;
                break;
            }
            uint32_t age = access_age(n, c);
            if (c == 0) age = UINT32_MAX; /* never seen: the oldest */
            if (best < 0 || age > best_age) {
                best = (int)i;
                best_age = age;
            }
        }
    }
    if (best < 0) return false;
    *out = s[best];
    *access_slot(n, out->hash) = (uint64_t)out->hash << 32 | MEM_CLOCK_EVICTING;
    return true;
}

/* Proposes one EVICT freeing at least `need` bytes (plus a little slack so
 * that a stream of writes does not need one EVICT each). Returns the bytes
 * its keys use (0: nothing evictable, or the proposal failed). */
static uint64_t evict_propose(struct node *n, uint64_t need)
{
    uint64_t slack = n->cfg.max_memory / 256;
    uint64_t goal = need + slack;
    struct kv_evict_key *keys = n->mem.keys;
    uint32_t count = 0;
    uint64_t freed = 0, cmd_bytes = 0;
    struct kv_sample s;
    /* Bounded: a sample can miss (every key drawn already marked), and a
     * few misses in a row mean nothing is left to choose. */
    uint32_t misses = 0;
    while (freed < goal && count < KV_EVICT_KEYS_MAX) {
        if (!victim_pick(n, &s)) {
            if (++misses == 8) break;
            continue;
        }
        misses = 0;
        if (cmd_bytes + s.key_len + 12 > n->fwd_bytes_max / 2) {
            access_forget(n, s.hash); /* not listed after all */
            break;
        }
        keys[count++] = (struct kv_evict_key){s.key, s.key_len, s.version};
        freed += s.used_bytes;
        cmd_bytes += s.key_len + 12;
    }
    if (count == 0 || freed < need) {
        /* Not enough to free: unmark what was picked (nothing proposed). */
        for (uint32_t i = 0; i < count; i++)
            access_forget(n, kv_key_hash(n->kv, keys[i].key, keys[i].key_len));
        return 0;
    }
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_EVICT;
    cmd.req.node_id = n->cfg.id;
    cmd.req.seq = 0;                     /* nobody waits for it */
    cmd.timestamp_ms = node_stamp_ms(n); /* the leader's clock, never below the log clock */
    cmd.evict_n = count;
    cmd.evict_keys = keys;
    raft_index index = 0;
    int rc = node_propose_command(n, &cmd, &index);
    if (rc) {
        ST_TRACE_WARN(MOD, "node %" PRIu64 ": eviction of %u keys not proposed: %s", n->cfg.id,
                      count, st_strerror(rc));
        for (uint32_t i = 0; i < count; i++)
            access_forget(n, kv_key_hash(n->kv, keys[i].key, keys[i].key_len));
        return 0;
    }
    n->mem.evict_inflight++;
    n->mem.evict_pending_bytes += freed;
    n->m.evictions_proposed++;
    return freed;
}

/* An upper bound of the used bytes a TXN's ops may add (kv/txn.h): what
 * they write, as if every key were new; ops that only remove or read add
 * nothing. Both branches count (which one runs is known at apply only). */
static uint64_t txn_growth(const struct kv_command *cmd)
{
    uint64_t d = 0;
    uint32_t n = cmd->txn_guards + cmd->txn_success + cmd->txn_failure;
    size_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct kv_txn_item it;
        if (cmd->txn_items)
            it = cmd->txn_items[i];
        else if (!kv_txn_next(cmd, &pos, &it))
            break;
        if (i < cmd->txn_guards) continue;
        switch (it.kind) {
        case KV_TXN_PUT:
        case KV_TXN_APPEND:
            d += kv_used_bytes_of(it.key_len, it.val_len);
            break;
        case KV_TXN_SETRANGE:
            d += kv_used_bytes_of(it.key_len, (uint64_t)it.num + it.val_len);
            break;
        case KV_TXN_INCRBY:
        case KV_TXN_INCRBYFLOAT:
            d += kv_used_bytes_of(it.key_len, 64);
            break;
        case KV_TXN_RENAME:
            d += it.val_len; /* the value moves; the new key may be longer */
            break;
        default:
            break;
        }
    }
    return d;
}

/* The growth cmd brings (0 if none) if admitted, or ST_EMEMLIMIT. */
static int admit(struct node *n, const struct kv_command *cmd, uint64_t extra, uint64_t *charge)
{
    *charge = 0;
    if (!n->cfg.max_memory ||
        (cmd->type != KV_CMD_PUT && cmd->type != KV_CMD_PUT_SESSION && cmd->type != KV_CMD_TXN))
        return 0;
    uint64_t add, old;
    if (cmd->type == KV_CMD_TXN) {
        add = txn_growth(cmd);
        old = 0;
    } else {
        add = kv_used_bytes_of(cmd->key_len, cmd->value_len);
        old = kv_entry_used_bytes(n->kv, cmd->key, cmd->key_len);
    }
    if (add <= old) return 0; /* shrinks or keeps the size: always admitted */
    uint64_t d = add - old;
    uint64_t p = projected(n, d + extra);
    if (p > n->cfg.max_memory) {
        if (add > n->cfg.max_memory || !policy_evicts(n)) goto refuse;
        if (n->role == RAFT_LEADER) {
            if (evict_propose(n, p - n->cfg.max_memory) == 0) goto refuse;
        } else if (n->role != RAFT_FOLLOWER) {
            goto refuse; /* no leader to evict: as noeviction */
        }
        /* A follower forwards: the leader evicts after applying it. */
    }
    *charge = d;
    return 0;
refuse:
    n->m.writes_refused_memory++;
    return ST_EMEMLIMIT;
}

int node_memory_admit(struct node *n, const struct kv_command *cmd, uint64_t *charge)
{
    int rc = admit(n, cmd, 0, charge);
    n->mem.writes_pending_bytes += *charge;
    return rc;
}

int node_memory_step_forwarded(struct node *n, const struct raft_msg *m)
{
    if (!n->cfg.max_memory || n->role != RAFT_LEADER || m->n_entries == 0)
        return raft_step(n->raft, m);
    struct raft_entry stack[64];
    struct raft_entry *ents = m->n_entries <= 64 ? stack : malloc(m->n_entries * sizeof *ents);
    if (!ents) return raft_step(n->raft, m);
    /* REFUSE commands for the writes refused, in one buffer (small). */
    uint8_t refuse_len = KV_COMMAND_HEADER_BYTES + 4;
    struct raft_buf *rbuf = NULL;
    uint32_t n_refused = 0;
    uint64_t growth = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        ents[i] = m->entries[i];
        struct kv_command cmd;
        if (kv_command_decode(ents[i].data, ents[i].len, NULL, &cmd) != 0) continue;
        uint64_t charge = 0;
        if (admit(n, &cmd, growth, &charge) == 0) {
            growth += charge;
            continue;
        }
        if (!rbuf && !(rbuf = raft_buf_create((size_t)refuse_len * m->n_entries))) continue;
        struct kv_command rc = {.type = KV_CMD_REFUSE,
                                .req = cmd.req,
                                .timestamp_ms = cmd.timestamp_ms,
                                .reason = KV_REFUSE_MEMORY};
        uint8_t *dst = rbuf->data + (size_t)refuse_len * n_refused++;
        size_t len = 0;
        if (kv_command_encode(&rc, dst, refuse_len, &len) != 0) continue;
        ents[i].buf = rbuf;
        ents[i].data = dst;
        ents[i].len = (uint32_t)len;
    }
    struct raft_msg copy = *m;
    copy.entries = ents;
    raft_index last_before = raft_last_index(n->raft);
    int rc = raft_step(n->raft, &copy);
    raft_index last_after = raft_last_index(n->raft);
    if (growth && last_after > last_before) {
        uint32_t slot = (n->mem.fwd_head + n->mem.fwd_n) % NODE_MEM_FWD_BATCHES;
        if (n->mem.fwd_n == NODE_MEM_FWD_BATCHES) { /* forget the oldest */
            n->mem.fwd_pending_bytes -= n->mem.fwd[n->mem.fwd_head].bytes;
            n->mem.fwd_head = (n->mem.fwd_head + 1) % NODE_MEM_FWD_BATCHES;
            n->mem.fwd_n--;
        }
        n->mem.fwd[slot].last = last_after;
        n->mem.fwd[slot].bytes = growth;
        n->mem.fwd_n++;
        n->mem.fwd_pending_bytes += growth;
    }
    raft_buf_unref(rbuf); /* the core took references to what it appended */
    if (ents != stack) free(ents);
    return rc;
}

void node_memory_applied_index(struct node *n, raft_index applied)
{
    while (n->mem.fwd_n && n->mem.fwd[n->mem.fwd_head].last <= applied) {
        n->mem.fwd_pending_bytes -= n->mem.fwd[n->mem.fwd_head].bytes;
        n->mem.fwd_head = (n->mem.fwd_head + 1) % NODE_MEM_FWD_BATCHES;
        n->mem.fwd_n--;
    }
}

void node_memory_release(struct node *n, uint64_t charge)
{
    n->mem.writes_pending_bytes =
        n->mem.writes_pending_bytes > charge ? n->mem.writes_pending_bytes - charge : 0;
}

void node_memory_check_leader(struct node *n)
{
    if (!policy_evicts(n) || n->role != RAFT_LEADER) return;
    uint64_t p = projected(n, 0);
    if (p > n->cfg.max_memory) (void)evict_propose(n, p - n->cfg.max_memory);
}
