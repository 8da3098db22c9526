/* The simulator's checkers: Raft's safety properties over the whole run, and
 * the ready contract of raft.h at every output.
 *
 * Global knowledge kept across the run (ground truth the nodes never see):
 *   committed[i]   the entry term of index i and the term of the leader that
 *                  first committed it (watermark commit_max; the bootstrap
 *                  entries 1..n are committed at term 0 by definition);
 *   hist[i]        what the first node to apply index i applied, with the
 *                  state machine chain hash after it;
 *   leader_of_term which node led each term (Election Safety);
 *   lm             (index, term) -> payload hash and previous term, from every
 *                  log ever seen (Log Matching, checked pairwise through it);
 *   votes          (voter, term) -> candidate granted;
 *   effect         the index at which each (client, seq) write took effect;
 *   floor          the newest write version a read must observe
 *                  (acknowledged writes and completed reads). */
#include "sim.h"

#include "util/assert.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return;
    size_t nc = *cap ? *cap : 64;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    ST_ASSERT(q);
    memset((char *)q + *cap * elem, 0, (nc - *cap) * elem);
    *p = q;
    *cap = nc;
}

int sim_check_init(struct sim *s)
{
    memset(&s->ck, 0, sizeof(s->ck));
    return 0;
}

void sim_check_close(struct sim *s)
{
    struct sim_checker *ck = &s->ck;
    free(ck->hist);
    free(ck->committed);
    free(ck->leader_of_term);
    free(ck->lm);
    free(ck->votes);
    for (int c = 0; c < SIM_CLIENTS_MAX; c++)
        free(ck->effect[c]);
    memset(ck, 0, sizeof(*ck));
}

void sim_check_bootstrap(struct sim *s, raft_index n)
{
    struct sim_checker *ck = &s->ck;
    grow((void **)&ck->committed, &ck->committed_cap, n + 1, sizeof(*ck->committed));
    for (raft_index i = 1; i <= n; i++)
        ck->committed[i] = (struct sim_commit){.entry_term = 1, .commit_term = 0};
    ck->commit_max = n;
}

raft_index sim_check_effect(struct sim *s, uint8_t client, uint32_t seq)
{
    struct sim_checker *ck = &s->ck;
    return seq < ck->effect_cap[client] ? ck->effect[client][seq] : 0;
}

/* ------------------------------------------------------ log matching */

static uint64_t lm_slot(raft_index index, raft_term term, size_t cap)
{
    return sim_hash_u64(sim_hash_u64(0, index), term) & (cap - 1);
}

static struct sim_lm_slot *lm_find(struct sim *s, raft_index index, raft_term term, bool insert)
{
    struct sim_checker *ck = &s->ck;
    if (insert && (ck->lm_n + 1) * 2 > ck->lm_cap) {
        size_t ocap = ck->lm_cap;
        struct sim_lm_slot *old = ck->lm;
        ck->lm_cap = ocap ? ocap * 2 : 1024;
        ck->lm = calloc(ck->lm_cap, sizeof(*ck->lm));
        ST_ASSERT(ck->lm);
        for (size_t i = 0; i < ocap; i++) {
            if (!old[i].index) continue;
            size_t k = lm_slot(old[i].index, old[i].term, ck->lm_cap);
            while (ck->lm[k].index)
                k = (k + 1) & (ck->lm_cap - 1);
            ck->lm[k] = old[i];
        }
        free(old);
    }
    if (!ck->lm_cap) return NULL;
    size_t k = lm_slot(index, term, ck->lm_cap);
    while (ck->lm[k].index) {
        if (ck->lm[k].index == index && ck->lm[k].term == term) return &ck->lm[k];
        k = (k + 1) & (ck->lm_cap - 1);
    }
    if (!insert) return NULL;
    ck->lm[k].index = index;
    ck->lm[k].term = term;
    ck->lm[k].fresh = true;
    ck->lm_n++;
    return &ck->lm[k];
}

/* One entry against the table. Entries enter the table only once they are
 * visible outside their node (durable, or sent): a leader may append entries
 * in memory and lose them in a crash together with a term that was never
 * durable (a single voter), and nobody can tell. */
static bool lm_check(struct sim *s, const struct sim_node *n, const struct raft_entry *e,
                     bool prev_known, raft_term prev, bool insert)
{
    uint64_t ph = sim_entry_hash(e);
    struct sim_lm_slot *sl = lm_find(s, e->index, e->term, insert);
    if (!sl) return true;
    if (sl->fresh) {
        sl->fresh = false;
        sl->payload_hash = ph;
    } else if (sl->payload_hash != ph) {
        sim_fail(s,
                 "log matching: n%" PRIu64 " holds a different entry at %" PRIu64 " term %" PRIu64
                 " than another log did",
                 n->id, e->index, e->term);
        return false;
    }
    if (prev_known) {
        if (!sl->prev_known) {
            sl->prev_known = true;
            sl->prev_term = prev;
        } else if (sl->prev_term != prev) {
            sim_fail(s,
                     "log matching: n%" PRIu64 " has %" PRIu64 "/%" PRIu64 " after term %" PRIu64
                     ", another log after term %" PRIu64,
                     n->id, e->index, e->term, prev, sl->prev_term);
            return false;
        }
    }
    return true;
}

void sim_check_visible(struct sim *s, const struct sim_node *n, const struct raft_entry *e,
                       size_t cnt, bool prev_known, raft_term prev)
{
    for (size_t i = 0; i < cnt; i++) {
        if (!lm_check(s, n, &e[i], prev_known, prev, true)) return;
        prev = e[i].term;
        prev_known = true;
    }
}

/* Every entry held in memory agrees with every entry ever made visible with
 * the same (index, term): same payload, same previous term. By induction
 * over the previous term this is Log Matching between every pair of logs. */
static void check_log_matching(struct sim *s, struct sim_node *n)
{
    struct raft *r = n->r;
    raft_index first = raft_first_index(r), last = raft_last_index(r);
    const struct raft_snapshot_meta *sn = raft_snapshot_get(r);
    bool prev_known = false;
    raft_term prev = 0;
    if (first == 1) {
        prev_known = true;
    } else if (sn && sn->index == first - 1) {
        prev_known = true;
        prev = sn->term;
    }
    for (raft_index i = first; i <= last && !s->res->failed; i++) {
        const struct raft_entry *e = raft_entry_get(r, i);
        if (!e || e->index != i) {
            sim_fail(s,
                     "n%" PRIu64 ": raft_entry_get(%" PRIu64 ") inside [%" PRIu64 ", %" PRIu64
                     "] returns %s",
                     n->id, i, first, last, e ? "a wrong index" : "NULL");
            return;
        }
        if (!lm_check(s, n, e, prev_known, prev, false)) return;
        prev = e->term;
        prev_known = true;
    }
}

/* The configuration node n must be using: its snapshot's plus every valid
 * conf entry after it ("takes effect when appended", thesis 4.1; a truncated
 * entry no longer counts). False when the log does not show it (compacted
 * without a snapshot in sight). */
static bool conf_from_log(struct sim_node *n, struct raft_conf *want)
{
    struct raft *r = n->r;
    const struct raft_snapshot_meta *sn = raft_snapshot_get(r);
    raft_index first = raft_first_index(r), last = raft_last_index(r), from;
    want->n = 0;
    if (sn && sn->index + 1 >= first) {
        *want = sn->conf;
        from = sn->index + 1;
    } else if (first == 1) {
        from = 1;
    } else {
        return false;
    }
    for (raft_index i = from; i <= last; i++) {
        const struct raft_entry *e = raft_entry_get(r, i);
        if (!e || e->type != RAFT_ENTRY_CONF) continue;
        struct raft_conf_change cc;
        if (raft_conf_change_decode(e->data, e->len, &cc) == 0)
            (void)raft_conf_apply(want, &cc); /* invalid changes are skipped */
    }
    return true;
}

static void check_conf(struct sim *s, struct sim_node *n)
{
    struct raft_conf *want = &s->scratch_conf;
    if (!conf_from_log(n, want)) return;
    const struct raft_conf *have = raft_conf_get(n->r);
    bool same = have->n == want->n;
    for (uint32_t i = 0; same && i < want->n; i++) {
        const struct raft_member *m = raft_conf_find(have, want->members[i].id);
        same = m && m->role == want->members[i].role;
    }
    if (!same)
        sim_fail(s,
                 "n%" PRIu64 ": configuration has %u members but its log and snapshot say %u"
                 " (conf not rebuilt after truncation or snapshot?)",
                 n->id, have->n, want->n);
}

void sim_check_node(struct sim *s, struct sim_node *n)
{
    check_log_matching(s, n);
    if (!s->opt.safety_only && !s->res->failed) check_conf(s, n);
}

/* --------------------------------------------------- leaders and commit */

/* Leader Completeness: every entry committed in a term before T is in the
 * log (or the snapshot) of a leader of term T. */
static void check_leader_has(struct sim *s, struct sim_node *l, raft_index from, raft_index to)
{
    struct sim_checker *ck = &s->ck;
    raft_term t = raft_term_get(l->r);
    raft_index first = raft_first_index(l->r);
    for (raft_index i = from; i <= to && !s->res->failed; i++) {
        const struct sim_commit *c = &ck->committed[i];
        if (c->commit_term >= t || i < first) continue;
        const struct raft_entry *e = raft_entry_get(l->r, i);
        if (!e || e->term != c->entry_term)
            sim_fail(s,
                     "leader completeness: n%" PRIu64 " leads term %" PRIu64
                     " without entry %" PRIu64 "/%" PRIu64 " committed in term %" PRIu64
                     " (it holds %s)",
                     l->id, t, i, c->entry_term, c->commit_term, e ? "another term" : "nothing");
    }
}

static bool durable_on(const struct sim_node *v, raft_index index, raft_term term)
{
    if (v->has_snap && v->snap.index > index) return true;
    raft_term dt;
    return sim_disk_term(v, index, &dt) && dt == term;
}

void sim_check_observe(struct sim *s, struct sim_node *n)
{
    struct sim_checker *ck = &s->ck;
    struct raft *r = n->r;
    enum raft_role role = raft_role_get(r);
    raft_term term = raft_term_get(r);
    raft_index commit = raft_commit_index(r);
    /* A leader may commit and step down in one input (its own removal). */
    bool was_leader = n->role == RAFT_LEADER && n->term == term;
    if (role == RAFT_LEADER) {
        grow((void **)&ck->leader_of_term, &ck->leader_of_term_cap, term + 1,
             sizeof(*ck->leader_of_term));
        if (ck->leader_of_term[term] == RAFT_NONE) {
            ck->leader_of_term[term] = n->id;
            s->res->counts.elections++;
            sim_trace(s, "n%" PRIu64 " is LEADER of term %" PRIu64, n->id, term);
        } else if (ck->leader_of_term[term] != n->id) {
            sim_fail(s, "election safety: n%" PRIu64 " and n%" PRIu64 " both lead term %" PRIu64,
                     ck->leader_of_term[term], n->id, term);
            return;
        }
        if (!was_leader) check_leader_has(s, n, 1, ck->commit_max);
    }
    if (role == RAFT_LEADER || was_leader) {
        if (was_leader && commit > n->commit && !s->opt.safety_only) {
            const struct raft_entry *e = raft_entry_get(r, commit);
            if (e && e->term != term)
                sim_fail(s,
                         "n%" PRIu64 " (leader of term %" PRIu64 ") advanced commit to %" PRIu64
                         " whose term is %" PRIu64 " (Figure 3.2: only by counting its own term)",
                         n->id, term, commit, e->term);
        }
        if (commit > ck->commit_max && !s->res->failed) {
            grow((void **)&ck->committed, &ck->committed_cap, commit + 1, sizeof(*ck->committed));
            for (raft_index i = ck->commit_max + 1; i <= commit; i++) {
                const struct raft_entry *e = raft_entry_get(r, i);
                if (!e) {
                    sim_fail(s, "n%" PRIu64 " commits %" PRIu64 " which it does not hold", n->id,
                             i);
                    return;
                }
                ck->committed[i] = (struct sim_commit){.entry_term = e->term, .commit_term = term};
            }
            /* Ground truth: the new commit point is durable on a quorum of
             * the configuration the leader's log says it uses. */
            const struct raft_conf *conf = &s->scratch_conf;
            if (!conf_from_log(n, &s->scratch_conf)) conf = raft_conf_get(r);
            size_t voters = 0, have = 0;
            raft_term et = ck->committed[commit].entry_term;
            for (uint32_t k = 0; k < conf->n; k++) {
                if (conf->members[k].role != RAFT_VOTER) continue;
                voters++;
                raft_id v = conf->members[k].id;
                if (v <= SIM_NODES_MAX && s->nodes[v].exists &&
                    durable_on(&s->nodes[v], commit, et))
                    have++;
            }
            if (have * 2 <= voters) {
                sim_fail(s,
                         "n%" PRIu64 " (leader of term %" PRIu64 ") committed %" PRIu64 "/%" PRIu64
                         " but it is durable on only %zu of %zu voters",
                         n->id, term, commit, et, have, voters);
                return;
            }
            raft_index from = ck->commit_max + 1;
            ck->commit_max = commit;
            /* Leaders of later terms must hold the newly committed entries. */
            for (raft_id id = 1; id <= SIM_NODES_MAX && !s->res->failed; id++) {
                struct sim_node *o = &s->nodes[id];
                if (o != n && o->exists && o->up && raft_role_get(o->r) == RAFT_LEADER &&
                    raft_term_get(o->r) > term)
                    check_leader_has(s, o, from, commit);
            }
        }
    } else if (commit > ck->commit_max) {
        sim_fail(s,
                 "n%" PRIu64 " (%s, term %" PRIu64 ") has commit %" PRIu64
                 " beyond anything a leader committed (%" PRIu64 ")",
                 n->id, raft_role_name(role), term, commit, ck->commit_max);
        return;
    }
    if (role != n->role || term != n->term)
        sim_trace(s, "n%" PRIu64 " now %s term %" PRIu64 " commit %" PRIu64, n->id,
                  raft_role_name(role), term, commit);
    n->role = role;
    n->term = term;
    n->commit = commit;
}

/* ------------------------------------------------------ state machine */

void sim_check_apply(struct sim *s, struct sim_node *n, const struct raft_entry *e,
                     const struct sim_sm *sm_after, const struct sim_cmd *cmd, bool effective)
{
    struct sim_checker *ck = &s->ck;
    raft_index i = e->index;
    if (i > ck->commit_max) {
        sim_fail(s, "n%" PRIu64 " applies %" PRIu64 " beyond the committed %" PRIu64, n->id, i,
                 ck->commit_max);
        return;
    }
    if (ck->committed[i].entry_term != e->term) {
        sim_fail(s,
                 "n%" PRIu64 " applies %" PRIu64 "/%" PRIu64 " but %" PRIu64 "/%" PRIu64
                 " was committed",
                 n->id, i, e->term, i, ck->committed[i].entry_term);
        return;
    }
    if (e->type == RAFT_ENTRY_NORMAL && cmd->client == UINT8_MAX) {
        sim_fail(s, "n%" PRIu64 " applies a corrupt command at %" PRIu64, n->id, i);
        return;
    }
    grow((void **)&ck->hist, &ck->hist_cap, i + 1, sizeof(*ck->hist));
    struct sim_hist *h = &ck->hist[i];
    uint64_t ph = sim_entry_hash(e);
    if (!h->set) {
        if (i > 1 && !ck->hist[i - 1].set) {
            sim_fail(s, "n%" PRIu64 " applies %" PRIu64 " first, before anyone applied %" PRIu64,
                     n->id, i, i - 1);
            return;
        }
        *h = (struct sim_hist){.set = true,
                               .type = e->type,
                               .term = e->term,
                               .payload_hash = ph,
                               .chain = sm_after->chain,
                               .version = sm_after->version};
        ck->hist_max = i;
        if (effective) {
            grow((void **)&ck->effect[cmd->client], &ck->effect_cap[cmd->client], cmd->seq + 1,
                 sizeof(raft_index));
            if (ck->effect[cmd->client][cmd->seq]) {
                sim_fail(s, "write client%u seq%u took effect twice (%" PRIu64 " and %" PRIu64 ")",
                         cmd->client, cmd->seq, ck->effect[cmd->client][cmd->seq], i);
                return;
            }
            ck->effect[cmd->client][cmd->seq] = i;
        }
        if (e->type == RAFT_ENTRY_CONF) {
            struct raft_conf_change cc;
            if (raft_conf_change_decode(e->data, e->len, &cc) == 0 &&
                raft_conf_apply(&ck->conf, &cc) == 0 && cc.op != RAFT_CONF_REMOVE &&
                cc.id <= SIM_NODES_MAX)
                ck->ever_member[cc.id] = true;
            if (i > s->n_initial) s->res->counts.conf_changes++;
        }
        return;
    }
    if (h->type != e->type || h->term != e->term || h->payload_hash != ph ||
        h->chain != sm_after->chain)
        sim_fail(s,
                 "state machine safety: n%" PRIu64 " applies %" PRIu64 "/%" PRIu64
                 " (type %u) but index %" PRIu64 " was applied as %" PRIu64 "/%" PRIu64
                 " (type %u)%s",
                 n->id, i, e->term, e->type, i, i, h->term, h->type,
                 h->payload_hash == ph ? " with a different history before it" : "");
}

void sim_check_restore(struct sim *s, struct sim_node *n, const struct sim_sm *sm)
{
    struct sim_checker *ck = &s->ck;
    if (sm->applied == 0) return;
    if (sm->applied >= ck->hist_cap || !ck->hist[sm->applied].set) {
        sim_fail(s, "n%" PRIu64 " restores a snapshot at %" PRIu64 " nobody applied", n->id,
                 sm->applied);
        return;
    }
    if (ck->hist[sm->applied].chain != sm->chain)
        sim_fail(s,
                 "state machine safety: n%" PRIu64 " restores a snapshot at %" PRIu64
                 " whose history differs",
                 n->id, sm->applied);
}

/* ------------------------------------------------------- ready contract */

void sim_check_send(struct sim *s, struct sim_node *n, const struct raft_msg *m)
{
    struct sim_checker *ck = &s->ck;
    if (s->opt.safety_only) return;
    if (m->type == RAFT_MSG_VOTE_RESP && !m->reject) {
        for (size_t i = 0; i < ck->votes_n; i++) {
            struct sim_vote *v = &ck->votes[i];
            if (v->voter == n->id && v->term == m->term && v->candidate != m->to) {
                sim_fail(s,
                         "n%" PRIu64 " granted its term-%" PRIu64 " vote to n%" PRIu64
                         " and to n%" PRIu64,
                         n->id, m->term, v->candidate, m->to);
                return;
            }
        }
        grow((void **)&ck->votes, &ck->votes_cap, ck->votes_n + 1, sizeof(*ck->votes));
        ck->votes[ck->votes_n++] = (struct sim_vote){n->id, m->term, m->to};
        if (n->hs.term != m->term || n->hs.vote != m->to) {
            sim_fail(s,
                     "n%" PRIu64 " sends a vote for n%" PRIu64 " in term %" PRIu64
                     " before it is durable (disk: term %" PRIu64 " vote %" PRIu64 ")",
                     n->id, m->to, m->term, n->hs.term, n->hs.vote);
            return;
        }
    }
    if (m->type == RAFT_MSG_VOTE &&
        (n->hs.term < m->term || (n->hs.term == m->term && n->hs.vote != n->id))) {
        sim_fail(s,
                 "n%" PRIu64 " campaigns in term %" PRIu64 " before its self-vote is durable"
                 " (disk: term %" PRIu64 " vote %" PRIu64 ")",
                 n->id, m->term, n->hs.term, n->hs.vote);
        return;
    }
    /* A term alone may travel before it is durable (a follower's reject),
     * but not a leader's: a leader whose term is lost in a crash can lead
     * the same term again and create different entries with the same
     * (index, term). Votes and acknowledgements of entries likewise. */
    if ((m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
         m->type == RAFT_MSG_SNAPSHOT || m->type == RAFT_MSG_TIMEOUT_NOW ||
         (m->type == RAFT_MSG_READ_INDEX_RESP && !m->reject)) &&
        m->term > n->hs.term) {
        sim_fail(s,
                 "n%" PRIu64 " sends %s as leader of term %" PRIu64
                 " before that term is durable (disk: term %" PRIu64 ")",
                 n->id, raft_msg_type_name(m->type), m->term, n->hs.term);
        return;
    }
    if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index > sim_disk_last(n)) {
        sim_fail(s,
                 "n%" PRIu64 " acknowledges index %" PRIu64 " to n%" PRIu64
                 " but its disk holds only up to %" PRIu64,
                 n->id, m->index, m->to, sim_disk_last(n));
        return;
    }
}

/* ---------------------------------------------------- clients and reads */

void sim_check_ack(struct sim *s, struct sim_node *n, uint8_t client, uint32_t seq)
{
    struct sim_checker *ck = &s->ck;
    raft_index e = sim_check_effect(s, client, seq);
    if (!e || e > n->sm.applied) {
        sim_fail(s, "client%u seq%u acknowledged by n%" PRIu64 " without having taken effect",
                 client, seq, n->id);
        return;
    }
    if (e > ck->floor) ck->floor = e;
    s->res->counts.writes_acked++;
}

/* Linearizability of a ReadIndex read: it observes the state at the node's
 * applied index A >= read index; that state must contain every write
 * acknowledged, and every write seen by a read completed, before the read
 * was issued (the floor), and only committed entries. */
void sim_check_read(struct sim *s, struct sim_node *n, raft_index read_index, raft_index floor)
{
    struct sim_checker *ck = &s->ck;
    if (read_index > ck->commit_max) {
        sim_fail(s, "n%" PRIu64 " serves a read at index %" PRIu64 " beyond the committed %" PRIu64,
                 n->id, read_index, ck->commit_max);
        return;
    }
    if (n->sm.version < floor) {
        sim_fail(s,
                 "stale read on n%" PRIu64 ": read index %" PRIu64 ", state version %" PRIu64
                 ", but write %" PRIu64 " was acknowledged (or seen) before the read began",
                 n->id, read_index, n->sm.version, floor);
        return;
    }
    if (n->sm.version > ck->floor) ck->floor = n->sm.version;
    s->res->counts.reads++;
}
