/* Membership: single-server changes (thesis 4.1) with the fix Ongaro posted
 * to raft-dev in 2015: "the leader may not append a new configuration entry
 * until it has committed an entry from its current term".
 *
 * "The new configuration takes effect on each server as soon as it is added
 * to that server's log" (thesis 4.1): conf is base_conf (the configuration as
 * of the compaction point) plus every conf entry in the log, in order. When a
 * suffix is truncated the conf falls back to the latest conf entry still in
 * the log, else the snapshot's/base conf (rebuilt by membership_rebuild()).
 *
 * Conf entry payload (little-endian):
 *   op u8 | id u64 | context_len u16 | context bytes
 */
#include "raft/raft_int.h"

#include <string.h>

size_t raft_conf_change_encode(const struct raft_conf_change *cc, uint8_t *out)
{
    ST_ASSERT(cc->context_len <= RAFT_MEMBER_CONTEXT_MAX);
    size_t o = 0;
    out[o++] = cc->op;
    for (int i = 0; i < 8; i++)
        out[o++] = (uint8_t)(cc->id >> (8 * i));
    out[o++] = (uint8_t)(cc->context_len & 0xff);
    out[o++] = (uint8_t)(cc->context_len >> 8);
    memcpy(out + o, cc->context, cc->context_len);
    o += cc->context_len;
    return o;
}

int raft_conf_change_decode(const uint8_t *data, size_t len, struct raft_conf_change *cc)
{
    if (!data || len < 11) return ST_EPROTO;
    memset(cc, 0, sizeof(*cc));
    cc->op = data[0];
    cc->id = 0;
    for (int i = 0; i < 8; i++)
        cc->id |= (uint64_t)data[1 + i] << (8 * i);
    uint16_t clen = (uint16_t)(data[9] | (data[10] << 8));
    if (clen > RAFT_MEMBER_CONTEXT_MAX || len != 11u + clen) return ST_EPROTO;
    if (cc->op < RAFT_CONF_ADD_VOTER || cc->op > RAFT_CONF_REMOVE || cc->id == RAFT_NONE)
        return ST_EPROTO;
    cc->context_len = clen;
    memcpy(cc->context, data + 11, clen);
    return 0;
}

const struct raft_member *raft_conf_find(const struct raft_conf *conf, raft_id id)
{
    for (uint32_t i = 0; i < conf->n; i++)
        if (conf->members[i].id == id) return &conf->members[i];
    return NULL;
}

size_t raft_conf_voters(const struct raft_conf *conf)
{
    size_t n = 0;
    for (uint32_t i = 0; i < conf->n; i++)
        n += conf->members[i].role == RAFT_VOTER;
    return n;
}

int raft_conf_apply(struct raft_conf *conf, const struct raft_conf_change *cc)
{
    if (cc->id == RAFT_NONE || cc->context_len > RAFT_MEMBER_CONTEXT_MAX) return ST_EINVAL;
    struct raft_member *m = NULL;
    for (uint32_t i = 0; i < conf->n; i++)
        if (conf->members[i].id == cc->id) m = &conf->members[i];
    switch (cc->op) {
    case RAFT_CONF_ADD_VOTER:
    case RAFT_CONF_ADD_LEARNER: {
        uint8_t role = cc->op == RAFT_CONF_ADD_VOTER ? RAFT_VOTER : RAFT_LEARNER;
        if (m) {
            /* Promotion of a learner; anything else is a no-op change. A voter
             * is never demoted in place (remove it, then add a learner). */
            if (!(m->role == RAFT_LEARNER && role == RAFT_VOTER)) return ST_EINVAL;
            m->role = RAFT_VOTER;
            if (cc->context_len) {
                m->context_len = cc->context_len;
                memcpy(m->context, cc->context, cc->context_len);
            }
            return 0;
        }
        if (conf->n >= RAFT_MEMBERS_MAX) return ST_EINVAL;
        m = &conf->members[conf->n++];
        memset(m, 0, sizeof(*m));
        m->id = cc->id;
        m->role = role;
        m->context_len = cc->context_len;
        memcpy(m->context, cc->context, cc->context_len);
        return 0;
    }
    case RAFT_CONF_REMOVE: {
        if (!m) return ST_EINVAL;
        if (m->role == RAFT_VOTER && raft_conf_voters(conf) == 1)
            return ST_EINVAL; /* a configuration without voters can never commit */
        size_t i = (size_t)(m - conf->members);
        memmove(&conf->members[i], &conf->members[i + 1],
                (conf->n - i - 1) * sizeof(conf->members[0]));
        conf->n--;
        return 0;
    }
    default:
        return ST_EINVAL;
    }
}

bool membership_conf_valid(const struct raft_conf *c)
{
    if (c->n > RAFT_MEMBERS_MAX) return false;
    for (uint32_t i = 0; i < c->n; i++) {
        const struct raft_member *m = &c->members[i];
        if (m->id == RAFT_NONE || (m->role != RAFT_VOTER && m->role != RAFT_LEARNER) ||
            m->context_len > RAFT_MEMBER_CONTEXT_MAX)
            return false;
        for (uint32_t j = 0; j < i; j++)
            if (c->members[j].id == m->id) return false;
    }
    return true;
}

/* Applies one log entry to conf if it is a valid conf entry. Invalid conf
 * entries are no-ops on every node alike (deterministic). */
static bool apply_entry(struct raft_conf *conf, const struct raft_entry *e)
{
    if (e->type != RAFT_ENTRY_CONF) return false;
    struct raft_conf_change cc;
    if (raft_conf_change_decode(e->data, e->len, &cc) != 0) return false;
    return raft_conf_apply(conf, &cc) == 0;
}

void membership_conf_at(const struct raft *r, raft_index index, struct raft_conf *out)
{
    ST_ASSERT(index >= r->log.prev_index);
    *out = r->base_conf;
    raft_index last = ST_MIN(index, log_last(&r->log));
    for (raft_index i = r->log.prev_index + 1; i <= last; i++)
        apply_entry(out, log_get(&r->log, i));
}

void membership_rebuild(struct raft *r)
{
    r->conf = r->base_conf;
    r->conf_index = 0;
    for (raft_index i = r->log.prev_index + 1; i <= log_last(&r->log); i++)
        if (apply_entry(&r->conf, log_get(&r->log, i))) r->conf_index = i;
    membership_sync_progress(r);
}

void membership_on_append(struct raft *r, raft_index from, raft_index to)
{
    bool changed = false;
    for (raft_index i = from; i <= to; i++) {
        if (apply_entry(&r->conf, log_get(&r->log, i))) {
            r->conf_index = i;
            changed = true;
        }
    }
    if (changed) membership_sync_progress(r);
}

static raft_index *ins_alloc(struct raft *r)
{
    for (uint32_t k = 0; k < RAFT_PRS_MAX; k++) {
        if (!r->ins_slot_used[k]) {
            r->ins_slot_used[k] = true;
            return r->ins_pool + (size_t)k * r->cfg.inflight_msgs_max;
        }
    }
    ST_UNREACHABLE();
}

static void ins_free(struct raft *r, raft_index *buf)
{
    size_t k = (size_t)(buf - r->ins_pool) / r->cfg.inflight_msgs_max;
    ST_ASSERT(k < RAFT_PRS_MAX && r->ins_slot_used[k]);
    r->ins_slot_used[k] = false;
}

static void progress_drop(struct raft *r, uint32_t i)
{
    ins_free(r, r->prs[i].ins.buf);
    r->prs[i] = r->prs[--r->n_prs];
}

/* A free progress slot, evicting a departed member if need be: members and
 * the leader itself always fit (RAFT_PRS_MAX > RAFT_MEMBERS_MAX). */
static struct raft_progress *progress_slot(struct raft *r)
{
    if (r->n_prs == RAFT_PRS_MAX) {
        for (uint32_t i = 0; i < r->n_prs; i++) {
            if (r->prs[i].departed) {
                progress_drop(r, i);
                break;
            }
        }
    }
    ST_ASSERT(r->n_prs < RAFT_PRS_MAX);
    return &r->prs[r->n_prs++];
}

void membership_sync_progress(struct raft *r)
{
    /* Followers and candidates keep no progress. */
    if (r->role != RAFT_LEADER) {
        for (uint32_t i = 0; i < r->n_prs; i++)
            ins_free(r, r->prs[i].ins.buf);
        r->n_prs = 0;
        return;
    }
    /* Removed members are not dropped at once: they keep receiving the log
     * until they hold the entry removing them, and are then told it is
     * committed (membership_release_departed), so they stop campaigning. */
    for (uint32_t i = 0; i < r->n_prs; i++) {
        struct raft_progress *p = &r->prs[i];
        bool member = raft_conf_find(&r->conf, p->id) || p->id == r->cfg.id;
        if (!member && !p->departed) {
            p->departed = true;
            p->removed_at = r->conf_index;
        } else if (member && p->departed) {
            /* Removed, then added again under the same id: a new server
             * (typically one that lost its disk), never the old one's
             * pipeline, which may wait forever on acknowledgements the old
             * incarnation will not send. It probes like a new member. */
            progress_reset(p, p->id, log_last(&r->log) + 1, p->ins.buf, r->cfg.inflight_msgs_max);
            r->bcast_pending = true;
        }
    }
    membership_release_departed(r);
    /* New members start probing at our last index (thesis 4.2.1: they catch
     * up like any lagging follower). The leader keeps its own progress even
     * when it removed itself, until it steps down. */
    raft_index last = log_last(&r->log);
    for (uint32_t i = 0; i < r->conf.n; i++) {
        raft_id id = r->conf.members[i].id;
        if (raft_progress_find(r, id)) continue;
        struct raft_progress *p = progress_slot(r);
        progress_reset(p, id, last + 1, ins_alloc(r), r->cfg.inflight_msgs_max);
        if (id == r->cfg.id) {
            p->match = r->log.stable;
            p->state = RAFT_PROGRESS_REPLICATE;
        }
        r->bcast_pending = true;
    }
    if (!raft_progress_find(r, r->cfg.id)) {
        struct raft_progress *p = progress_slot(r);
        progress_reset(p, r->cfg.id, last + 1, ins_alloc(r), r->cfg.inflight_msgs_max);
        p->match = r->log.stable;
        p->state = RAFT_PROGRESS_REPLICATE;
    }
}

void membership_release_departed(struct raft *r)
{
    if (r->role != RAFT_LEADER) return;
    for (uint32_t i = 0; i < r->n_prs;) {
        struct raft_progress *p = &r->prs[i];
        if (!p->departed || p->removed_at > r->log.commit || p->match < p->removed_at) {
            i++;
            continue;
        }
        /* It holds its removal, which is committed: a last word with the
         * commit, and it is on its own. */
        struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT,
                             .to = p->id,
                             .term = r->term,
                             .commit = ST_MIN(p->match, r->log.commit)};
        raft_send(r, &m, false);
        progress_drop(r, i);
    }
}

void membership_drop_inactive_departed(struct raft *r)
{
    for (uint32_t i = 0; i < r->n_prs;) {
        if (r->prs[i].departed && !r->prs[i].recent_active)
            progress_drop(r, i);
        else
            i++;
    }
}

int membership_bootstrap(struct raft *r, const struct raft_conf *initial)
{
    if (!membership_conf_valid(initial) || initial->n == 0 || raft_conf_voters(initial) == 0)
        return ST_EINVAL;
    int rc = log_reserve(&r->log, initial->n);
    if (rc) return rc;
    for (uint32_t i = 0; i < initial->n; i++) {
        const struct raft_member *m = &initial->members[i];
        struct raft_conf_change cc;
        memset(&cc, 0, sizeof(cc));
        cc.op = m->role == RAFT_VOTER ? RAFT_CONF_ADD_VOTER : RAFT_CONF_ADD_LEARNER;
        cc.id = m->id;
        cc.context_len = m->context_len;
        memcpy(cc.context, m->context, m->context_len);
        struct raft_buf *b = raft_buf_create(RAFT_CONF_CHANGE_ENCODED_MAX);
        if (!b) return ST_ENOMEM;
        struct raft_entry e = {.term = 1,
                               .index = (raft_index)i + 1,
                               .type = RAFT_ENTRY_CONF,
                               .buf = b,
                               .data = b->data};
        e.len = (uint32_t)raft_conf_change_encode(&cc, b->data);
        log_append(&r->log, &e);
        raft_buf_unref(b);
    }
    membership_on_append(r, 1, initial->n);
    r->log.commit = initial->n;
    return 0;
}

/* etcd's --force-new-cluster does the same in its server: conf changes
 * appended after the local log in the current term, committed, written to
 * the WAL before the node runs. Order matters: adding this node as a voter
 * first means no REMOVE ever takes away the last voter (raft_conf_apply). */
int membership_force_alone(struct raft *r, const struct raft_member *self)
{
    struct raft_conf_change ccs[RAFT_MEMBERS_MAX + 1];
    size_t n = 0;
    const struct raft_member *me = raft_conf_find(&r->conf, r->cfg.id);
    if (!me || me->role != RAFT_VOTER) {
        struct raft_conf_change *cc = &ccs[n++];
        memset(cc, 0, sizeof(*cc));
        cc->op = RAFT_CONF_ADD_VOTER;
        cc->id = r->cfg.id;
        if (!me) {
            ST_ASSERT(self->context_len <= RAFT_MEMBER_CONTEXT_MAX);
            cc->context_len = self->context_len;
            memcpy(cc->context, self->context, self->context_len);
        }
    }
    for (uint32_t i = 0; i < r->conf.n; i++) {
        if (r->conf.members[i].id == r->cfg.id) continue;
        struct raft_conf_change *cc = &ccs[n++];
        memset(cc, 0, sizeof(*cc));
        cc->op = RAFT_CONF_REMOVE;
        cc->id = r->conf.members[i].id;
    }
    if (n == 0) return 0;
    int rc = log_reserve(&r->log, n);
    if (rc) return rc;
    raft_index first = log_last(&r->log) + 1;
    for (size_t i = 0; i < n; i++) {
        struct raft_buf *b = raft_buf_create(RAFT_CONF_CHANGE_ENCODED_MAX);
        if (!b) return ST_ENOMEM; /* raft_create fails: the core is destroyed */
        struct raft_entry e = {.term = r->term,
                               .index = first + i,
                               .type = RAFT_ENTRY_CONF,
                               .buf = b,
                               .data = b->data};
        e.len = (uint32_t)raft_conf_change_encode(&ccs[i], b->data);
        log_append(&r->log, &e);
        raft_buf_unref(b);
    }
    membership_on_append(r, first, log_last(&r->log));
    ST_ASSERT(r->conf.n == 1 && r->conf.members[0].id == r->cfg.id &&
              r->conf.members[0].role == RAFT_VOTER);
    r->log.commit = log_last(&r->log);
    return 0;
}
