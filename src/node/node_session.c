/* node sessions: proposals of the session commands, the leader's
 * in-memory deadlines (keepalives reset them, the tick proposes the expiry
 * of those that pass) and views of the applied table. Contracts in
 * node_session.h. */
#include "node/node_session.h"

#include <stdlib.h>
#include <string.h>

#include "kv/kv_session.h"
#include "node/node_int.h"
#include "stcache/errors.h"
#include "util/assert.h"

_Static_assert(NODE_SESSION_TTL_MS_MIN == KV_SESSION_TTL_MS_MIN &&
                   NODE_SESSION_TTL_MS_MAX == KV_SESSION_TTL_MS_MAX &&
                   NODE_SESSION_NAME_BYTES_MAX == KV_SESSION_NAME_BYTES_MAX &&
                   NODE_SESSION_KEYS_MAX == KV_SESSION_KEYS_MAX,
               "one set of session bounds");

/* One session's deadline on the leader. */
struct node_sess_dl {
    uint64_t id;
    uint64_t deadline_ms; /* node_now_us() / 1000 scale */
    uint64_t proposed_ms; /* when its expiry was proposed, 0 = not yet */
};

static uint64_t now_ms(void)
{
    return node_now_us() / 1000u;
}

/* ---------- proposals ---------- */

int node_session_create(struct node *n, uint64_t ttl_ms, const uint8_t *name, size_t name_len,
                        node_write_cb cb, void *ctx)
{
    if (ttl_ms < NODE_SESSION_TTL_MS_MIN || ttl_ms > NODE_SESSION_TTL_MS_MAX ||
        name_len > NODE_SESSION_NAME_BYTES_MAX || (name_len && !name))
        return ST_EINVAL;
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_SESSION_CREATE;
    cmd.ttl_ms = ttl_ms;
    cmd.keys_max = n->cfg.max_sessions; /* every replica refuses by the proposer's bound */
    cmd.value = name;
    cmd.value_len = (uint32_t)name_len;
    return node_client_submit(n, &cmd, cb, ctx);
}

int node_session_destroy(struct node *n, uint64_t id, node_write_cb cb, void *ctx)
{
    if (id == 0) return ST_EINVAL;
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_SESSION_DESTROY;
    cmd.session_id = id;
    cmd.reason = KV_SESSION_END_DESTROYED;
    return node_client_submit(n, &cmd, cb, ctx);
}

/* Proposes the expiry of session id (nobody waits for it). */
static int propose_expiry(struct node *n, uint64_t id)
{
    if (n->nospace) return ST_ENOSPC; /* nothing proposed while the disk is full */
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_SESSION_DESTROY;
    cmd.req.node_id = n->cfg.id;
    cmd.req.seq = 0;
    cmd.timestamp_ms = node_stamp_ms(n);
    cmd.session_id = id;
    cmd.reason = KV_SESSION_END_EXPIRED;
    raft_index index = 0;
    return node_propose_command(n, &cmd, &index);
}

/* ---------- the leader's deadlines ---------- */

static struct node_sess_dl *dl_find(const struct node *n, uint64_t id)
{
    uint32_t lo = 0, hi = n->sess_n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (n->sess_dl[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n->sess_n && n->sess_dl[lo].id == id ? &n->sess_dl[lo] : NULL;
}

/* Room for count deadlines in both arrays: 0 or ST_ENOMEM. */
static int dl_reserve(struct node *n, uint32_t count)
{
    if (count <= n->sess_cap) return 0;
    uint32_t cap = n->sess_cap ? n->sess_cap : 16;
    while (cap < count)
        cap *= 2;
    struct node_sess_dl *a = realloc(n->sess_dl, (size_t)cap * sizeof *a);
    if (!a) return ST_ENOMEM;
    n->sess_dl = a;
    struct node_sess_dl *b = realloc(n->sess_tmp, (size_t)cap * sizeof *b);
    if (!b) return ST_ENOMEM;
    n->sess_tmp = b;
    n->sess_cap = cap;
    return 0;
}

void node_session_tick(struct node *n)
{
    uint64_t term = raft_term_get(n->raft);
    if (n->role != RAFT_LEADER || term != n->sess_term) {
        /* Deadlines belong to one leadership: a new one starts afresh. */
        n->sess_n = 0;
        n->sess_term = term;
        if (n->role != RAFT_LEADER) return;
    }
    uint32_t count = kv_session_count(n->kv);
    if (count == 0) {
        n->sess_n = 0;
        return;
    }
    uint64_t now = now_ms();
    /* The walk is O(sessions): every NODE_SESSION_WALK_MS, not every tick
     * (expiry is that much less precise; renewals are not delayed). */
    if (n->sess_n && now - n->sess_walk_ms < NODE_SESSION_WALK_MS) return;
    n->sess_walk_ms = now;
    if (dl_reserve(n, count) != 0) return; /* out of memory: the next tick tries again */
    /* Merge the applied table (id order) with the deadlines (id order):
     * sessions ended are dropped, sessions new to this leader get a full
     * TTL from now. O(sessions) per tick, bounded by --max-sessions. */
    uint32_t j = 0, m = 0;
    for (uint32_t i = 0; i < count; i++) {
        const struct kv_session *s = kv_session_at(n->kv, i);
        while (j < n->sess_n && n->sess_dl[j].id < s->id)
            j++;
        if (j < n->sess_n && n->sess_dl[j].id == s->id)
            n->sess_tmp[m] = n->sess_dl[j];
        else
            n->sess_tmp[m] = (struct node_sess_dl){s->id, now + s->ttl_ms, 0};
        m++;
    }
    struct node_sess_dl *t = n->sess_dl;
    n->sess_dl = n->sess_tmp;
    n->sess_tmp = t;
    n->sess_n = m;
    for (uint32_t i = 0; i < m; i++) {
        struct node_sess_dl *d = &n->sess_dl[i];
        if (d->deadline_ms > now) continue;
        if (d->proposed_ms && now - d->proposed_ms < NODE_SESSION_RETRY_MS) continue;
        if (propose_expiry(n, d->id) == 0) d->proposed_ms = now ? now : 1;
    }
}

void node_session_free(struct node *n)
{
    free(n->sess_dl);
    free(n->sess_tmp);
    n->sess_dl = n->sess_tmp = NULL;
    n->sess_n = n->sess_cap = 0;
}

int node_session_renew(struct node *n, uint64_t id, uint64_t *ttl_ms)
{
    if (n->role != RAFT_LEADER) return ST_ENOTLEADER;
    const struct kv_session *s = kv_session_find(n->kv, id);
    if (!s) {
        /* Created by an entry committed but not applied here yet. */
        if (id > kv_applied_index(n->kv) && id <= raft_commit_index(n->raft)) return ST_EBUSY;
        return ST_ENOENT;
    }
    *ttl_ms = s->ttl_ms;
    struct node_sess_dl *d = n->sess_term == raft_term_get(n->raft) ? dl_find(n, id) : NULL;
    if (d) {
        if (d->proposed_ms) return ST_ENOENT; /* its end is in the log already */
        d->deadline_ms = now_ms() + s->ttl_ms;
    }
    /* Not seen by this leader yet: its first tick gives it now + TTL. */
    return 0;
}

int64_t node_session_remaining_ms(const struct node *n, uint64_t id)
{
    if (n->role != RAFT_LEADER || n->sess_term != raft_term_get(n->raft)) return -1;
    const struct node_sess_dl *d = dl_find(n, id);
    if (!d) return -1;
    uint64_t now = now_ms();
    return d->deadline_ms > now ? (int64_t)(d->deadline_ms - now) : 0;
}

/* ---------- views of the applied table ---------- */

static void view_of(const struct kv_session *s, struct node_session_view *out)
{
    out->id = s->id;
    out->ttl_ms = s->ttl_ms;
    out->name = (const uint8_t *)s->name;
    out->name_len = s->name_len;
    out->n_keys = s->n_keys;
}

uint32_t node_session_count(const struct node *n)
{
    return kv_session_count(n->kv);
}

void node_session_at(const struct node *n, uint32_t i, struct node_session_view *out)
{
    view_of(kv_session_at(n->kv, i), out);
}

int node_session_get(const struct node *n, uint64_t id, struct node_session_view *out)
{
    const struct kv_session *s = kv_session_find(n->kv, id);
    if (!s) return ST_ENOENT;
    view_of(s, out);
    return 0;
}

int node_session_key(const struct node *n, uint64_t id, uint32_t k, const uint8_t **key,
                     size_t *key_len, uint64_t *version)
{
    const struct kv_session *s = kv_session_find(n->kv, id);
    if (!s || k >= s->n_keys) return ST_ENOENT;
    *key = s->keys[k]->key;
    *key_len = s->keys[k]->key_len;
    *version = s->keys[k]->version;
    return 0;
}
