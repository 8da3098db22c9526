/* Client requests of the node runtime: the waiter pool, writes (PUT and
 * DELETE proposed as kv commands with request ids), reads (ReadIndex
 * rounds, lease, stale), membership and transfer requests, TTL purges. */
#include "node/node_int.h"

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MOD "node"
#define NODE_PURGE_KEYS_MAX 1000

/* --------------------------------------------------------------- lists */

/* Waiter lists are util/list.h lists: dlink on n->deadlines, llink on one
 * of the others. The helpers below return NULL at the end of a list. */

static struct node_waiter *dl_first(struct st_list *l)
{
    return st_list_empty(l) ? NULL : ST_CONTAINER_OF(l->next, struct node_waiter, dlink);
}

static struct node_waiter *dl_next(struct st_list *l, struct node_waiter *w)
{
    return w->dlink.next == l ? NULL : ST_CONTAINER_OF(w->dlink.next, struct node_waiter, dlink);
}

static struct node_waiter *ll_first(struct st_list *l)
{
    return st_list_empty(l) ? NULL : ST_CONTAINER_OF(l->next, struct node_waiter, llink);
}

static struct node_waiter *ll_next(struct st_list *l, struct node_waiter *w)
{
    return w->llink.next == l ? NULL : ST_CONTAINER_OF(w->llink.next, struct node_waiter, llink);
}

static void wlist_push(struct st_list *l, struct node_waiter *w, bool deadline)
{
    st_list_push_back(l, deadline ? &w->dlink : &w->llink);
}

static void wlist_remove(struct node_waiter *w, bool deadline)
{
    st_list_del(deadline ? &w->dlink : &w->llink);
}

/* Inserts into the indexed list keeping ascending index order. */
static void indexed_insert(struct node *n, struct node_waiter *w)
{
    struct st_list *after = n->indexed.prev;
    while (after != &n->indexed &&
           ST_CONTAINER_OF(after, struct node_waiter, llink)->index > w->index)
        after = after->prev;
    st_list_push_front(after, &w->llink); /* after `after`, or first */
    w->in_indexed = true;
}

/* --------------------------------------------------------------- pool */

int node_waiters_init(struct node *n)
{
    st_list_init(&n->free_waiters);
    st_list_init(&n->deadlines);
    st_list_init(&n->indexed);
    st_list_init(&n->transfers);
    st_list_init(&n->admin_retry);
    st_list_init(&n->rounds);
    st_list_init(&n->free_rounds);
    n->waiters_total = 0;
    n->waiters_used = 0;
    return 0;
}

void node_waiters_close(struct node *n)
{
    for (size_t i = 0; i < n->n_slabs; i++) {
        struct node_waiter *slab = n->slabs[i];
        for (size_t k = 0; k < NODE_WAITER_SLAB; k++)
            if (slab[k].key && slab[k].key != slab[k].key_inline) free(slab[k].key);
        free(slab);
    }
    free(n->slabs);
    n->slabs = NULL;
    n->n_slabs = 0;
    for (int m = 0; m < 2; m++) {
        free(n->batch[m]);
        n->batch[m] = NULL;
    }
    while (!st_list_empty(&n->free_rounds)) {
        struct st_list *e = n->free_rounds.next;
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): st_list_del moved the head past the freed e
        st_list_del(e);
        free(ST_CONTAINER_OF(e, struct node_read_round, link));
    }
}

static struct node_waiter *waiter_get(struct node *n, enum node_waiter_kind kind, uint64_t now_us)
{
    if (st_list_empty(&n->free_waiters)) {
        if (n->waiters_total + NODE_WAITER_SLAB > ST_MAX(n->cfg.waiters_max, NODE_WAITER_SLAB))
            return NULL;
        struct node_waiter **slabs = realloc(n->slabs, (n->n_slabs + 1) * sizeof *slabs);
        if (!slabs) return NULL;
        n->slabs = slabs;
        struct node_waiter *slab = calloc(NODE_WAITER_SLAB, sizeof *slab);
        if (!slab) return NULL;
        n->slabs[n->n_slabs++] = slab;
        for (size_t k = NODE_WAITER_SLAB; k-- > 0;)
            st_list_push_front(&n->free_waiters, &slab[k].llink);
        n->waiters_total += NODE_WAITER_SLAB;
    }
    struct node_waiter *w = ll_first(&n->free_waiters);
    st_list_del(&w->llink);
    memset(w, 0, offsetof(struct node_waiter, key_inline));
    st_list_init(&w->llink); /* released before any list holds it: del is harmless */
    st_list_init(&w->dlink);
    w->kind = (uint8_t)kind;
    w->deadline_us = now_us + (uint64_t)n->cfg.request_timeout_ms * 1000u;
    wlist_push(&n->deadlines, w, true);
    n->waiters_used++;
    return w;
}

static struct node_waiter **seq_bucket(struct node *n, uint64_t seq)
{
    uint64_t h = seq * 0x9e3779b97f4a7c15ull;
    return &n->seq_hash[(h >> 40) & (NODE_SEQ_BUCKETS - 1)];
}

static void hash_remove(struct node *n, struct node_waiter *w)
{
    struct node_waiter **pp = seq_bucket(n, w->seq);
    while (*pp && *pp != w)
        pp = &(*pp)->hnext;
    ST_ASSERT(*pp == w);
    *pp = w->hnext;
    w->hnext = NULL;
    w->in_hash = false;
}

static struct node_waiter *hash_find(struct node *n, uint64_t seq)
{
    for (struct node_waiter *w = *seq_bucket(n, seq); w; w = w->hnext)
        if (w->seq == seq) return w;
    return NULL;
}

static void round_free(struct node *n, struct node_read_round *r);

/* Unlinks w from everything and returns it to the pool. */
static void waiter_release(struct node *n, struct node_waiter *w)
{
    ST_ASSERT(w->kind != NODE_W_FREE);
    wlist_remove(w, true);
    if (w->in_hash) hash_remove(n, w);
    if (w->in_indexed) {
        wlist_remove(w, false);
        w->in_indexed = false;
    } else if (w->kind == NODE_W_TRANSFER) {
        wlist_remove(w, false);
    } else if (w->in_retry) {
        wlist_remove(w, false);
        w->in_retry = false;
    } else if (w->kind == NODE_W_READ && w->round) {
        struct node_read_round *r = w->round;
        wlist_remove(w, false);
        w->round = NULL;
        if (st_list_empty(&r->waiters) && r->issued) round_free(n, r);
    }
    if (w->orphan_term) {
        n->orphans--;
        w->orphan_term = 0;
    }
    if (w->mem_charge) {
        node_memory_release(n, w->mem_charge);
        w->mem_charge = 0;
    }
    free(w->cc);
    w->cc = NULL;
    if (w->key && w->key != w->key_inline)
        free(w->key); /* keys above NODE_KEY_INLINE bytes: rare */
    w->key = NULL;
    w->kind = NODE_W_FREE;
    st_list_push_front(&n->free_waiters, &w->llink);
    n->waiters_used--;
}

/* ------------------------------------------------------------ completion */

static void complete_write(struct node *n, struct node_waiter *w,
                           const struct node_write_result *res)
{
    node_write_cb cb = w->cb.w;
    void *ctx = w->ctx;
    waiter_release(n, w);
    if (res->status == 0 || res->status == ST_EPRECONDITION || res->status == ST_ENOENT)
        n->m.writes_ok++;
    else
        n->m.writes_failed++;
    cb(ctx, res);
}

static void fail_write(struct node *n, struct node_waiter *w, int status)
{
    struct node_write_result res = {.status = status};
    complete_write(n, w, &res);
}

static void complete_admin(struct node *n, struct node_waiter *w, int status, raft_index index)
{
    node_admin_cb cb = w->cb.a;
    void *ctx = w->ctx;
    waiter_release(n, w);
    struct node_admin_result res = {.status = status, .index = index, .cluster_id = n->cluster_id};
    cb(ctx, &res);
}

static void complete_read(struct node *n, struct node_waiter *w, int status)
{
    struct node_read_result res;
    memset(&res, 0, sizeof res);
    res.status = status;
    struct kv_view view;
    if (status == 0 && w->key_len > 0) { /* key_len 0: node_read_barrier */
        /* Expiry by the log clock of the state read: the same on every
         * replica at this index, and never earlier at a later index, so
         * reads in real-time order never see a key come back. */
        int rc = kv_get(n->kv, w->key, w->key_len, kv_clock_ms(n->kv), &view);
        if (rc == 0) {
            if (n->mem.access) node_memory_touch(n, kv_key_hash(n->kv, w->key, w->key_len));
            res.value = view.value;
            res.value_len = view.value_len;
            res.version = view.version;
            res.expire_at_ms = view.expire_at_ms;
            res.value_type = view.type;
        } else {
            res.status = ST_ENOENT;
        }
    }
    node_read_cb cb = w->cb.r;
    void *ctx = w->ctx;
    /* The view points into kv memory that nothing mutates during cb. */
    waiter_release(n, w);
    cb(ctx, &res);
}

static void fail_waiter(struct node *n, struct node_waiter *w, int status)
{
    switch (w->kind) {
    case NODE_W_WRITE:
        fail_write(n, w, status);
        break;
    case NODE_W_READ:
        complete_read(n, w, status);
        break;
    case NODE_W_ADMIN:
    case NODE_W_TRANSFER:
        complete_admin(n, w, status, 0);
        break;
    default:
        ST_UNREACHABLE();
    }
}

void node_waiters_fail_all(struct node *n, int status)
{
    /* Unissued read batches hold waiters that are also in the deadline list. */
    while (!st_list_empty(&n->deadlines))
        fail_waiter(n, dl_first(&n->deadlines), status);
    struct st_list *e, *tmp;
    ST_LIST_FOREACH_SAFE(e, tmp, &n->rounds)
    round_free(n, ST_CONTAINER_OF(e, struct node_read_round, link));
}

void node_waiters_expire(struct node *n, uint64_t now_us)
{
    struct node_waiter *w;
    while ((w = dl_first(&n->deadlines)) && w->deadline_us <= now_us) {
        n->m.requests_timed_out++;
        fail_waiter(n, w, ST_ETIMEDOUT);
    }
}

/* ------------------------------------------------------------- writes */

int node_propose_command(struct node *n, const struct kv_command *cmd, raft_index *index)
{
    size_t len = kv_command_encoded_len(cmd);
    struct raft_buf *buf = raft_buf_create(len);
    if (!buf) return ST_ENOMEM;
    size_t written = 0;
    int rc = kv_command_encode(cmd, buf->data, len, &written);
    if (rc == 0) rc = raft_propose(n->raft, buf, buf->data, (uint32_t)written, index, NULL);
    raft_buf_unref(buf);
    n->m.proposals++;
    if (rc) n->m.proposals_failed++;
    return rc;
}

static void waiter_hash_insert(struct node *n, struct node_waiter *w)
{
    struct node_waiter **b = seq_bucket(n, w->seq);
    w->hnext = *b;
    *b = w;
    w->in_hash = true;
}

/* Queues an encoded command for the leader (follower side). Every write of
 * one loop iteration leaves in one RAFT_MSG_PROPOSE (node_client_flush_
 * forwards), instead of one message per write from raft_propose(). */
static int forward_queue(struct node *n, struct raft_buf *buf, uint32_t len, uint64_t seq)
{
    if (n->n_fwd == n->cap_fwd) {
        size_t cap = n->cap_fwd ? n->cap_fwd * 2 : 64;
        struct node_fwd *f = realloc(n->fwd, cap * sizeof *f);
        if (!f) return ST_ENOMEM;
        n->fwd = f;
        n->cap_fwd = cap;
    }
    n->fwd[n->n_fwd++] = (struct node_fwd){buf, len, seq};
    return 0;
}

static int submit_write(struct node *n, struct kv_command *cmd, node_write_cb cb, void *ctx)
{
    if (!n->running || n->stopping) return ST_ECLOSED;
    if (n->fatal) return ST_EIO;
    if (n->nospace) { /* full-disk alarm: refused at once, nothing proposed */
        n->m.writes_refused_nospace++;
        return ST_ENOSPC;
    }
    struct node_waiter *w = waiter_get(n, NODE_W_WRITE, node_now_us());
    if (!w) return ST_EBUSY;
    w->seq = n->next_seq++;
    w->cb.w = cb;
    w->ctx = ctx;
    w->target = n->leader; /* forwarded writes: to whom */
    cmd->req.node_id = n->cfg.id;
    cmd->req.seq = w->seq;
    /* A forwarded command is stamped again by the leader (restamp_forwarded). */
    cmd->timestamp_ms = n->role == RAFT_LEADER ? node_stamp_ms(n) : node_wall_ms();
    raft_index index = 0;
    int rc = node_memory_admit(n, cmd, &w->mem_charge);
    if (rc) {
        waiter_release(n, w);
        return rc;
    }
    if (n->role == RAFT_FOLLOWER && n->leader != RAFT_NONE) {
        size_t len = kv_command_encoded_len(cmd);
        struct raft_buf *buf = raft_buf_create(len);
        size_t written = 0;
        rc = buf ? kv_command_encode(cmd, buf->data, len, &written) : ST_ENOMEM;
        if (rc == 0) rc = forward_queue(n, buf, (uint32_t)written, w->seq);
        if (rc) {
            raft_buf_unref(buf);
        } else {
            w->fwd_queued = true;
            n->m.proposals++;
        }
    } else {
        rc = node_propose_command(n, cmd, &index);
    }
    if (rc) {
        waiter_release(n, w);
        return rc;
    }
    waiter_hash_insert(n, w);
    if (index) {
        w->index = index;
        indexed_insert(n, w);
    }
    return 0;
}

int node_client_submit(struct node *n, struct kv_command *cmd, node_write_cb cb, void *ctx)
{
    return submit_write(n, cmd, cb, ctx);
}

void node_client_flush_forwards(struct node *n)
{
    /* Detach the queue: failing a waiter runs its callback, which may
     * queue new writes. */
    struct node_fwd *q = n->fwd;
    size_t count = n->n_fwd, cap = n->cap_fwd;
    n->fwd = NULL;
    n->n_fwd = 0;
    n->cap_fwd = 0;
    size_t i = 0;
    while (i < count) {
        /* A batch: as many entries as fit one message. */
        size_t j = i;
        uint64_t bytes = 0;
        while (j < count && j - i < NODE_FWD_BATCH_MAX &&
               (j == i || bytes + q[j].len <= n->fwd_bytes_max))
            bytes += q[j++].len;
        int rc = 0;
        if (n->role == RAFT_FOLLOWER && n->leader != RAFT_NONE) {
            struct raft_entry ents[NODE_FWD_BATCH_MAX];
            for (size_t k = i; k < j; k++) {
                /* index/term placeholders: see node_send_msg() in node_ready.c */
                ents[k - i] = (struct raft_entry){.term = 1,
                                                  .index = 1,
                                                  .type = RAFT_ENTRY_NORMAL,
                                                  .buf = q[k].buf,
                                                  .data = q[k].buf->data,
                                                  .len = q[k].len};
            }
            struct raft_msg m = {.type = RAFT_MSG_PROPOSE,
                                 .from = n->cfg.id,
                                 .to = n->leader,
                                 .term = raft_term_get(n->raft),
                                 .n_entries = (uint32_t)(j - i),
                                 .entries = ents};
            int trc = st_tr_send(n->tr, &m);
            if (trc != 0 && trc != ST_EBUSY && trc != ST_ENOENT)
                ST_TRACE_WARN(MOD, "node %" PRIu64 ": forwarding %zu writes to %" PRIu64 ": %s",
                              n->cfg.id, j - i, n->leader, st_strerror(trc));
            /* A refused send is a lost message: the waiters time out, or
             * fail at the next leader change. */
            n->m.forward_batches++;
        } else if (n->role != RAFT_LEADER) {
            rc = ST_ENOTLEADER;
        }
        for (size_t k = i; k < j; k++) {
            struct node_fwd *f = &q[k];
            struct node_waiter *w = hash_find(n, f->seq);
            if (w) {
                w->fwd_queued = false;
                w->target = n->leader;
                if (n->role == RAFT_LEADER) {
                    /* Became leader since: propose here, with an index,
                     * stamped with this leader's time. */
                    (void)kv_command_restamp(f->buf->data, f->len, node_stamp_ms(n));
                    raft_index index = 0;
                    int prc = raft_propose(n->raft, f->buf, f->buf->data, f->len, &index, NULL);
                    if (prc == 0 && index) {
                        w->index = index;
                        indexed_insert(n, w);
                    } else if (prc) {
                        n->m.proposals_failed++;
                        fail_write(n, w, prc);
                    }
                } else if (rc) {
                    n->m.proposals_failed++;
                    fail_write(n, w, rc);
                }
            }
            raft_buf_unref(f->buf);
        }
        i = j;
    }
    if (!n->fwd) { /* keep the array for the next batch */
        n->fwd = q;
        n->cap_fwd = cap;
    } else {
        free(q);
    }
}

void node_client_drop_forwards(struct node *n)
{
    for (size_t i = 0; i < n->n_fwd; i++)
        raft_buf_unref(n->fwd[i].buf);
    n->n_fwd = 0;
    free(n->fwd);
    n->fwd = NULL;
    n->cap_fwd = 0;
}

/* The idempotency key and this node's retention bounds, which the command
 * carries into the log (kv.h: every replica trims by the command's). */
_Static_assert(NODE_IDEM_KEY_BYTES_MAX == KV_IDEM_KEY_BYTES_MAX, "one idempotency key bound");
_Static_assert((int)NODE_VALUE_STRING == (int)KV_TYPE_STRING &&
                   (int)NODE_VALUE_HASH == (int)KV_TYPE_HASH,
               "node_value_type mirrors kv_value_type");

static int set_idem(const struct node *n, struct kv_command *cmd, const uint8_t *key, size_t len)
{
    if (len == 0) return 0;
    if (len > KV_IDEM_KEY_BYTES_MAX || !key) return ST_EINVAL;
    cmd->idem_key = key;
    cmd->idem_key_len = (uint32_t)len;
    cmd->idem_keys_max = n->cfg.idempotency_keys_max;
    cmd->idem_ttl_ms = (uint64_t)n->cfg.idempotency_ttl_s * 1000u;
    return 0;
}

int node_put(struct node *n, const struct node_put_args *a, node_write_cb cb, void *ctx)
{
    if (a->key_len == 0) return ST_EINVAL;
    if (a->key_len > n->cfg.max_key_bytes || a->value_len > n->cfg.max_value_bytes)
        return ST_ETOOBIG;
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_PUT;
    cmd.cond = a->cond == NODE_COND_IF_VERSION  ? KV_COND_IF_VERSION
               : a->cond == NODE_COND_IF_ABSENT ? KV_COND_IF_ABSENT
                                                : KV_COND_NONE;
    cmd.cond_version = a->cond_version;
    cmd.ttl_ms = a->ttl_ms;
    cmd.key = a->key;
    cmd.key_len = (uint32_t)a->key_len;
    cmd.value = a->value;
    cmd.value_len = (uint32_t)a->value_len;
    if (a->session_id) { /* attached to a session (node_session.h) */
        if (a->idem_key_len) return ST_EINVAL;
        cmd.type = KV_CMD_PUT_SESSION;
        cmd.session_id = a->session_id;
    }
    int rc = set_idem(n, &cmd, a->idem_key, a->idem_key_len);
    if (rc) return rc;
    return submit_write(n, &cmd, cb, ctx);
}

int node_delete(struct node *n, const uint8_t *key, size_t key_len, enum node_cond cond,
                uint64_t cond_version, node_write_cb cb, void *ctx)
{
    return node_delete_idem(n, key, key_len, cond, cond_version, NULL, 0, cb, ctx);
}

int node_delete_idem(struct node *n, const uint8_t *key, size_t key_len, enum node_cond cond,
                     uint64_t cond_version, const uint8_t *idem_key, size_t idem_key_len,
                     node_write_cb cb, void *ctx)
{
    if (key_len == 0) return ST_EINVAL;
    if (key_len > n->cfg.max_key_bytes) return ST_ETOOBIG;
    if (cond == NODE_COND_IF_ABSENT) return ST_EINVAL;
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_DELETE;
    cmd.cond = cond == NODE_COND_IF_VERSION ? KV_COND_IF_VERSION : KV_COND_NONE;
    cmd.cond_version = cond_version;
    cmd.key = key;
    cmd.key_len = (uint32_t)key_len;
    int rc = set_idem(n, &cmd, idem_key, idem_key_len);
    if (rc) return rc;
    return submit_write(n, &cmd, cb, ctx);
}

int node_propose_purge(struct node *n)
{
    if (n->nospace) return 0; /* nothing proposed while the disk is full */
    uint64_t now = node_stamp_ms(n);
    uint64_t due = kv_expiry_min(n->kv);
    if (due == 0 || due > now) return 0; /* nothing has expired: no log entry */
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_PURGE_EXPIRED;
    cmd.req.node_id = n->cfg.id;
    cmd.req.seq = 0; /* nobody waits for it */
    cmd.timestamp_ms = now;
    cmd.keys_max = NODE_PURGE_KEYS_MAX;
    raft_index index;
    int rc = node_propose_command(n, &cmd, &index);
    if (rc == 0) n->m.purges_proposed++;
    return rc;
}

void node_client_applied_kv(struct node *n, raft_index index, const struct kv_result *res)
{
    if (res->req.node_id != n->cfg.id || res->req.seq == 0) return;
    struct node_waiter *w = hash_find(n, res->req.seq);
    if (!w) return; /* timed out already, or proposed before a restart */
    struct node_write_result wr;
    memset(&wr, 0, sizeof wr);
    wr.index = res->replayed ? res->index : index;
    wr.version = res->version;
    wr.replayed = res->replayed != 0;
    switch (res->status) {
    case KV_STATUS_OK:
        wr.status = 0;
        wr.created = (res->type == KV_CMD_PUT || res->type == KV_CMD_PUT_SESSION) && res->created;
        wr.txn_succeeded = res->txn_succeeded != 0;
        wr.txn_n = res->txn_n;
        wr.txn_res = res->txn_res;
        break;
    case KV_STATUS_PRECONDITION_FAILED:
        wr.status = ST_EPRECONDITION;
        break;
    case KV_STATUS_NOT_FOUND:
        wr.status = ST_ENOENT;
        break;
    case KV_STATUS_REFUSED:
        wr.status = ST_EMEMLIMIT;
        break;
    case KV_STATUS_IDEMPOTENCY_MISMATCH:
        wr.status = ST_EIDEMPOTENCY;
        break;
    case KV_STATUS_NO_SESSION: /* node_session.h */
        wr.status = ST_ENOENT;
        break;
    case KV_STATUS_SESSION_LIMIT:
        wr.status = ST_ETOOBIG;
        break;
    }
    complete_write(n, w, &wr);
}

void node_client_applied_index(struct node *n, const struct raft_entry *e)
{
    if (n->orphans > 0) {
        struct node_waiter *w = dl_first(&n->deadlines);
        while (w) {
            struct node_waiter *next = dl_next(&n->deadlines, w);
            if (w->kind == NODE_W_WRITE && w->orphan_term && w->orphan_term <= e->term)
                fail_write(n, w, w->outcome_hidden ? ST_ETIMEDOUT : ST_ECANCELED);
            w = next;
        }
    }
    struct node_waiter *w;
    while ((w = ll_first(&n->indexed)) && w->index <= e->index) {
        if (w->kind == NODE_W_ADMIN && w->index == e->index && e->type == RAFT_ENTRY_CONF) {
            struct raft_conf_change cc;
            bool ours = raft_conf_change_decode(e->data, e->len, &cc) == 0 && cc.id == w->target &&
                        cc.op == w->admin_op;
            complete_admin(n, w, ours ? 0 : ST_ECANCELED, e->index);
            continue;
        }
        /* A write still pending once its index applied was overwritten by
         * another leader's entry: it will never apply. */
        fail_waiter(n, w, ST_ECANCELED);
    }
}

void node_client_snapshot_installed(struct node *n, raft_index index)
{
    /* A waiter with a known index inside the snapshot: its entry was ours or
     * another leader's, and the snapshot does not say which (the write may
     * have applied): "outcome unknown" (ST_ETIMEDOUT), never leadership_lost
     * (not applied), which invites a retry that would apply it twice. A
     * forwarded write (no index known here) may be inside it too: it keeps
     * waiting for its result, but can no longer be declared lost. Found by
     * the whole-server simulator (tests/wsim, seed 37): a follower cut off
     * from its leader's answers received the leader's snapshot, was elected,
     * and failed a forwarded write as leadership_lost that the snapshot held. */
    struct node_waiter *w;
    while ((w = ll_first(&n->indexed)) && w->index <= index)
        fail_waiter(n, w, ST_ETIMEDOUT);
    for (w = dl_first(&n->deadlines); w; w = dl_next(&n->deadlines, w))
        if (w->kind == NODE_W_WRITE && w->index == 0) w->outcome_hidden = true;
}

/* -------------------------------------------------------------- reads */

static struct node_read_round *round_new(struct node *n, uint8_t mode)
{
    struct node_read_round *r;
    if (!st_list_empty(&n->free_rounds)) {
        r = ST_CONTAINER_OF(n->free_rounds.next, struct node_read_round, link);
        st_list_del(&r->link);
    } else if (!(r = malloc(sizeof *r))) {
        return NULL;
    }
    memset(r, 0, sizeof *r);
    st_list_init(&r->waiters);
    st_list_init(&r->link);
    r->mode = mode;
    return r;
}

static void round_free(struct node *n, struct node_read_round *r)
{
    ST_ASSERT(st_list_empty(&r->waiters));
    if (r->issued) st_list_del(&r->link);
    st_list_push_front(&n->free_rounds, &r->link);
}

static int read_enqueue(struct node *n, const uint8_t *key, size_t key_len, enum node_consistency c,
                        node_read_cb cb, void *ctx);

int node_read_barrier(struct node *n, enum node_consistency c, node_read_cb cb, void *ctx)
{
    if (!n->running || n->stopping) return ST_ECLOSED;
    if (n->fatal) return ST_EIO;
    if (c == NODE_READ_STALE) {
        n->m.reads_stale++;
        struct node_read_result res = {.version = n->applied};
        cb(ctx, &res);
        return 0;
    }
    return read_enqueue(n, NULL, 0, c, cb, ctx);
}

int node_get(struct node *n, const uint8_t *key, size_t key_len, enum node_consistency c,
             node_read_cb cb, void *ctx)
{
    if (!n->running || n->stopping) return ST_ECLOSED;
    if (n->fatal) return ST_EIO;
    if (key_len == 0) return ST_EINVAL;
    if (key_len > n->cfg.max_key_bytes) return ST_ETOOBIG;
    if (c == NODE_READ_STALE) {
        n->m.reads_stale++;
        struct node_read_result res;
        memset(&res, 0, sizeof res);
        struct kv_view view;
        if (kv_get(n->kv, key, key_len, kv_clock_ms(n->kv), &view) == 0) {
            if (n->mem.access) node_memory_touch(n, kv_key_hash(n->kv, key, key_len));
            res.value = view.value;
            res.value_len = view.value_len;
            res.version = view.version;
            res.expire_at_ms = view.expire_at_ms;
            res.value_type = view.type;
        } else {
            res.status = ST_ENOENT;
        }
        cb(ctx, &res);
        return 0;
    }
    return read_enqueue(n, key, key_len, c, cb, ctx);
}

/* Queues a linearizable or lease read of key (key_len 0: a barrier). */
static int read_enqueue(struct node *n, const uint8_t *key, size_t key_len, enum node_consistency c,
                        node_read_cb cb, void *ctx)
{
    uint8_t mode = c == NODE_READ_LEASE ? RAFT_READ_LEASE : RAFT_READ_SAFE;
    if (!n->batch[mode] && !(n->batch[mode] = round_new(n, mode))) return ST_ENOMEM;
    struct node_waiter *w = waiter_get(n, NODE_W_READ, node_now_us());
    if (!w) return ST_EBUSY;
    if (key_len <= NODE_KEY_INLINE) {
        w->key = w->key_inline;
    } else if (!(w->key = malloc(key_len))) {
        waiter_release(n, w);
        return ST_ENOMEM;
    }
    if (key_len) memcpy(w->key, key, key_len);
    w->key_len = key_len;
    w->mode = mode;
    w->cb.r = cb;
    w->ctx = ctx;
    w->round = n->batch[mode];
    wlist_push(&n->batch[mode]->waiters, w, false);
    if (mode == RAFT_READ_LEASE)
        n->m.reads_lease++;
    else
        n->m.reads_linearizable++;
    return 0;
}

void node_client_issue_reads(struct node *n)
{
    for (uint8_t mode = 0; mode < 2; mode++) {
        struct node_read_round *r = n->batch[mode];
        if (!r || st_list_empty(&r->waiters)) continue;
        n->batch[mode] = NULL;
        r->ctx = ++n->read_ctx;
        r->leader = n->role == RAFT_LEADER ? n->cfg.id : n->leader;
        int rc = raft_read_index(n->raft, r->ctx, (enum raft_read_mode)mode);
        r->issued = true;
        st_list_push_front(&n->rounds, &r->link);
        n->m.read_rounds++;
        if (rc) {
            /* Every read of the round fails the same way (no leader, busy). */
            while (!st_list_empty(&r->waiters)) {
                struct node_waiter *w = ll_first(&r->waiters);
                bool last = w->llink.next == &r->waiters;
                complete_read(n, w, rc);
                if (last) break; /* the round was freed with its last waiter */
            }
        }
    }
}

static void serve_round(struct node *n, struct node_read_round *r, int status)
{
    while (!st_list_empty(&r->waiters)) {
        struct node_waiter *w = ll_first(&r->waiters);
        bool last = w->llink.next == &r->waiters;
        complete_read(n, w, status);
        if (last) return; /* the round was freed with its last waiter */
    }
    round_free(n, r);
}

/* The core gave up on round r: its request or answer was lost (a dropped
 * connection, a queue past its wait) or the leader did not hear a quorum
 * in time (ST_ETIMEDOUT), or a new leader took over (ST_ENOTLEADER). Its
 * reads join the next round, issued at the next pass under a new context,
 * to the leader known then; a stale answer to the old context finds no
 * round. Each read keeps its deadline, and fails with status after
 * NODE_READ_ROUNDS_MAX rounds; with no leader known at the next pass it
 * fails "not leader" at once, as a new read would. Found by the nemesis soak (seed 8244): a
 * follower's read sent as a partition healed failed after 200 ms with
 * "request timed out" on a healthy cluster. */
static void retry_round(struct node *n, struct node_read_round *r, int status)
{
    struct node_read_round *next = n->batch[r->mode];
    if (!next && (next = round_new(n, r->mode))) n->batch[r->mode] = next;
    while (!st_list_empty(&r->waiters)) {
        struct node_waiter *w = ll_first(&r->waiters);
        if (!next || w->read_attempts + 1 >= NODE_READ_ROUNDS_MAX) {
            bool last = w->llink.next == &r->waiters;
            complete_read(n, w, status);
            if (last) return; /* the round was freed with its last waiter */
            continue;
        }
        wlist_remove(w, false);
        w->read_attempts++;
        w->round = next;
        wlist_push(&next->waiters, w, false);
        n->m.read_retries++;
    }
    round_free(n, r);
}

void node_client_read_state(struct node *n, const struct raft_read_state *rs)
{
    struct st_list *e;
    ST_LIST_FOREACH(e, &n->rounds)
    {
        struct node_read_round *r = ST_CONTAINER_OF(e, struct node_read_round, link);
        if (r->ctx != rs->context) continue;
        /* A refusal from the same leader (it is busy, or stepped down
         * without a successor known here) is not retried: asking it again
         * at once would only add to its load. */
        bool new_leader =
            rs->status == ST_ENOTLEADER && n->leader != RAFT_NONE && n->leader != r->leader;
        if (rs->status == ST_ETIMEDOUT || new_leader) {
            retry_round(n, r, rs->status);
            return;
        }
        if (rs->status != 0) {
            serve_round(n, r, rs->status);
            return;
        }
        r->resolved = true;
        r->index = rs->index;
        return;
    }
}

void node_client_serve_reads(struct node *n)
{
    struct st_list *e, *tmp;
    ST_LIST_FOREACH_SAFE(e, tmp, &n->rounds)
    {
        struct node_read_round *r = ST_CONTAINER_OF(e, struct node_read_round, link);
        if (r->resolved && r->index <= n->applied) serve_round(n, r, 0);
    }
}

/* -------------------------------------------------------------- admin */

void node_client_leader_changed(struct node *n, raft_id leader)
{
    /* A write forwarded to a former leader (no index known here) may have
     * died with it. Mark it with the new leader's term; once an entry of
     * that term applies here, every entry of an older term that will ever
     * commit has applied before it (log terms never decrease), so a write
     * still pending then is lost for sure: node_client_applied_index()
     * fails it with leadership_lost. Waiting for that entry (the new
     * leader's no-op) rather than failing at once also means the other
     * nodes know the new leader when the client retries there. Writes
     * this node proposed as leader keep waiting: their index tells. */
    struct node_waiter *w = dl_first(&n->deadlines);
    if (leader != RAFT_NONE) {
        for (; w; w = dl_next(&n->deadlines, w)) {
            if (w->kind == NODE_W_WRITE && w->index == 0 && w->target != leader &&
                w->orphan_term == 0 && !w->fwd_queued) {
                w->orphan_term = n->term;
                n->orphans++;
            }
        }
    }
    w = ll_first(&n->transfers);
    while (w) {
        struct node_waiter *next = ll_next(&n->transfers, w);
        if (w->target == leader) complete_admin(n, w, 0, 0);
        w = next;
    }
}

static int admin_conf_change(struct node *n, uint8_t op, raft_id id, const char *ctx_text,
                             size_t ctx_len, node_admin_cb cb, void *ctx)
{
    if (!n->running || n->stopping) return ST_ECLOSED;
    if (n->fatal) return ST_EIO;
    if (n->role != RAFT_LEADER) return ST_ENOTLEADER;
    struct node_waiter *w = waiter_get(n, NODE_W_ADMIN, node_now_us());
    if (!w) return ST_EBUSY;
    w->cc = calloc(1, sizeof *w->cc);
    if (!w->cc) {
        waiter_release(n, w);
        return ST_ENOMEM;
    }
    w->cc->op = op;
    w->cc->id = id;
    w->cc->context_len = (uint16_t)ctx_len;
    memcpy(w->cc->context, ctx_text, ctx_len);
    raft_index index = 0;
    int rc = raft_propose_conf_change(n->raft, w->cc, &index);
    if (rc && rc != ST_ECONFCHANGE) {
        waiter_release(n, w);
        return rc;
    }
    w->cb.a = cb;
    w->ctx = ctx;
    w->admin_op = op;
    w->target = id;
    if (rc == ST_ECONFCHANGE) {
        /* Another change is uncommitted, or this leader has not committed
         * an entry of its term yet: wait (bounded by the request timeout). */
        w->in_retry = true;
        wlist_push(&n->admin_retry, w, false);
        return 0;
    }
    free(w->cc);
    w->cc = NULL;
    w->index = index;
    indexed_insert(n, w);
    return 0;
}

void node_client_retry_admin(struct node *n)
{
    struct node_waiter *w = ll_first(&n->admin_retry);
    while (w) {
        struct node_waiter *next = ll_next(&n->admin_retry, w);
        if (n->role != RAFT_LEADER) {
            complete_admin(n, w, ST_ENOTLEADER, 0);
        } else {
            raft_index index = 0;
            int rc = raft_propose_conf_change(n->raft, w->cc, &index);
            if (rc == 0) {
                wlist_remove(w, false);
                w->in_retry = false;
                free(w->cc);
                w->cc = NULL;
                w->index = index;
                indexed_insert(n, w);
            } else if (rc != ST_ECONFCHANGE) {
                complete_admin(n, w, rc, 0);
            }
        }
        w = next;
    }
}

int node_member_add_learner(struct node *n, raft_id id, const char *raft_addr,
                            const char *http_addr, node_admin_cb cb, void *ctx)
{
    if (id == RAFT_NONE || !raft_addr || !*raft_addr) return ST_EINVAL;
    char text[RAFT_MEMBER_CONTEXT_MAX];
    if (strlen(raft_addr) >= NODE_ADDR_MAX || (http_addr && strlen(http_addr) >= NODE_ADDR_MAX))
        return ST_EINVAL;
    size_t len = node_context_format(text, raft_addr, http_addr);
    if (n->running && n->role == RAFT_LEADER) {
        const struct raft_member *m = raft_conf_find(raft_conf_get(n->raft), id);
        if (m) {
            /* Idempotent retry of the same join (the joiner lost our
             * answer): still a learner, since a joiner runs only after it
             * got the answer. An existing voter is refused: a voter that
             * lost its data must be removed before it joins again (its
             * votes and log are gone). */
            if (m->role == RAFT_LEARNER && m->context_len == len &&
                memcmp(m->context, text, len) == 0) {
                struct node_admin_result res = {
                    .status = 0, .index = 0, .cluster_id = n->cluster_id};
                cb(ctx, &res);
                return 0;
            }
            return ST_EEXIST;
        }
    }
    return admin_conf_change(n, RAFT_CONF_ADD_LEARNER, id, text, len, cb, ctx);
}

int node_member_remove(struct node *n, raft_id id, node_admin_cb cb, void *ctx)
{
    if (n->running && n->role == RAFT_LEADER && !raft_conf_find(raft_conf_get(n->raft), id))
        return ST_ENOENT;
    return admin_conf_change(n, RAFT_CONF_REMOVE, id, "", 0, cb, ctx);
}

int node_transfer(struct node *n, raft_id to, node_admin_cb cb, void *ctx)
{
    if (!n->running || n->stopping) return ST_ECLOSED;
    if (n->role != RAFT_LEADER) return ST_ENOTLEADER;
    if (to == n->cfg.id) {
        struct node_admin_result res = {.status = 0, .cluster_id = n->cluster_id};
        cb(ctx, &res);
        return 0;
    }
    const struct raft_member *m = raft_conf_find(raft_conf_get(n->raft), to);
    if (!m) return ST_ENOENT;
    struct node_waiter *w = waiter_get(n, NODE_W_TRANSFER, node_now_us());
    if (!w) return ST_EBUSY;
    int rc = raft_transfer_leadership(n->raft, to);
    if (rc) {
        waiter_release(n, w);
        return rc;
    }
    w->cb.a = cb;
    w->ctx = ctx;
    w->target = to;
    wlist_push(&n->transfers, w, false);
    return 0;
}
