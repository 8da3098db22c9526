/* Watches: the node's change events (kv.h) kept in the watch history
 * (watch_history.h) and pulled by the open watches (node.h, "watches").
 *
 * Delivery never holds apply back: apply only appends to the history (a
 * copy into a preallocated ring); a watch reads the ring at its own pace,
 * and one that the ring overtook is canceled ("slow"). So the memory of
 * watches is the history plus what each front end holds per watch (one
 * piece of output in flight), however slow their clients. */
#include "node/node_int.h"

#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"

_Static_assert((int)NODE_EVENT_PUT == (int)KV_EVENT_PUT &&
                   (int)NODE_EVENT_EVICT == (int)KV_EVENT_EVICT &&
                   (int)NODE_EVENT_DELETE == (int)KV_EVENT_DELETE &&
                   (int)NODE_EVENT_EXPIRE == (int)KV_EVENT_EXPIRE &&
                   (int)NODE_EVENT_MESSAGE == (int)KV_EVENT_MESSAGE,
               "node_event_type mirrors kv_event_type");
_Static_assert(NODE_EVENT_OP_KEEPTTL == KV_EVENT_OP_KEEPTTL, "node event op mirrors kv's");

struct node_watch {
    struct st_list link; /* n->watches */
    struct node *n;
    node_watch_notify_cb notify;
    void *ctx;
    uint64_t from_version;
    uint64_t next_seq; /* the next history event to look at */
    /* Every matching event of a version < pos was delivered: where a
     * canceled watch resumes. */
    uint64_t pos;
    uint64_t last_item_us;
    uint32_t progress_ms;
    bool waiting;         /* next returned 0: notify when something comes */
    bool closed;          /* closed during a notify pass: freed after it */
    const char *canceled; /* the reason, NULL while live */
    int exact;
    int messages;
    size_t key_len;
    uint8_t key[];
};

const char *node_event_type_name(enum node_event_type t)
{
    switch (t) {
    case NODE_EVENT_PUT:
        return "put";
    case NODE_EVENT_DELETE:
        return "delete";
    case NODE_EVENT_EXPIRE:
        return "expire";
    case NODE_EVENT_EVICT:
        return "evict";
    case NODE_EVENT_MESSAGE:
        return "message";
    }
    return "unknown";
}

int node_watch_init(struct node *n)
{
    st_list_init(&n->watches);
    uint64_t bytes = n->cfg.watch_history_bytes ? n->cfg.watch_history_bytes : 16u << 20;
    uint64_t entries = n->cfg.watch_history_entries ? n->cfg.watch_history_entries : 100000;
    return watch_history_init(&n->whist, bytes, entries, 1);
}

void node_watch_fini(struct node *n)
{
    /* The front ends close their watches before the node is destroyed; a
     * leftover one is freed here and must not be used again. */
    struct st_list *e, *tmp;
    ST_LIST_FOREACH_SAFE(e, tmp, &n->watches)
    {
        st_list_del(e);
        free(ST_CONTAINER_OF(e, struct node_watch, link));
    }
    watch_history_free(&n->whist);
}

void node_watch_kv_event(void *ctx, const struct kv_event *ev)
{
    struct node *n = ctx;
    watch_history_append(&n->whist, ev);
}

static void watch_cancel(struct node_watch *w, const char *reason)
{
    if (w->canceled) return;
    w->canceled = reason;
    if (strcmp(reason, "slow") == 0) w->n->watch_canceled_slow++;
}

/* Calls notify of every waiting watch for which pred holds; watches closed
 * meanwhile are freed after the pass. */
static void notify_pass(struct node *n, bool (*pred)(const struct node_watch *w, uint64_t now),
                        uint64_t now)
{
    if (st_list_empty(&n->watches)) return;
    n->watch_notifying = true;
    struct st_list *e;
    ST_LIST_FOREACH(e, &n->watches)
    {
        struct node_watch *w = ST_CONTAINER_OF(e, struct node_watch, link);
        if (w->closed || !w->waiting || !pred(w, now)) continue;
        w->waiting = false;
        w->notify(w->ctx);
    }
    n->watch_notifying = false;
    struct st_list *tmp;
    ST_LIST_FOREACH_SAFE(e, tmp, &n->watches)
    {
        struct node_watch *w = ST_CONTAINER_OF(e, struct node_watch, link);
        if (!w->closed) continue;
        st_list_del(e);
        free(w);
    }
}

static bool has_news(const struct node_watch *w, uint64_t now)
{
    (void)now;
    return w->canceled || w->next_seq < w->n->whist.head_seq;
}

static bool progress_due(const struct node_watch *w, uint64_t now)
{
    return w->canceled ||
           (w->progress_ms && now - w->last_item_us >= (uint64_t)w->progress_ms * 1000u);
}

void node_watch_applied(struct node *n)
{
    struct st_list *e;
    ST_LIST_FOREACH(e, &n->watches)
    {
        struct node_watch *w = ST_CONTAINER_OF(e, struct node_watch, link);
        if (w->next_seq < n->whist.tail_seq) watch_cancel(w, "slow");
    }
    notify_pass(n, has_news, 0);
}

void node_watch_tick(struct node *n)
{
    notify_pass(n, progress_due, node_now_us());
}

void node_watch_state_replaced(struct node *n, uint64_t index)
{
    watch_history_reset(&n->whist, index + 1);
    struct st_list *e;
    ST_LIST_FOREACH(e, &n->watches)
    {
        struct node_watch *w = ST_CONTAINER_OF(e, struct node_watch, link);
        if (w->from_version <= index) watch_cancel(w, "compacted");
        w->next_seq = n->whist.head_seq;
    }
    notify_pass(n, has_news, 0);
}

void node_watch_stop(struct node *n)
{
    struct st_list *e;
    ST_LIST_FOREACH(e, &n->watches)
    {
        watch_cancel(ST_CONTAINER_OF(e, struct node_watch, link), "shutting_down");
    }
    notify_pass(n, has_news, 0);
}

int node_watch_open(struct node *n, const struct node_watch_args *a, node_watch_notify_cb notify,
                    void *ctx, struct node_watch **out, uint64_t *oldest)
{
    *oldest = n->whist.first_version;
    if (n->stopping || n->fatal) return ST_ECLOSED;
    if (n->watches_n >= n->cfg.watch_max) return ST_EBUSY;
    uint64_t next = n->applied + 1;
    uint64_t from = a->from_version ? a->from_version : next;
    if (from < n->whist.first_version) return ST_ECOMPACTED;
    struct node_watch *w = calloc(1, sizeof(*w) + a->key_len);
    if (!w) return ST_ENOMEM;
    w->n = n;
    w->notify = notify;
    w->ctx = ctx;
    w->from_version = from;
    w->next_seq = watch_history_seek(&n->whist, from);
    w->pos = from;
    w->last_item_us = 0; /* a first progress item once caught up: where the watch starts */
    w->progress_ms = a->progress_ms;
    w->exact = a->exact;
    w->messages = a->messages;
    w->key_len = a->key_len;
    if (a->key_len) memcpy(w->key, a->key, a->key_len);
    st_list_push_back(&n->watches, &w->link);
    n->watches_n++;
    *out = w;
    return 0;
}

static bool watch_match(const struct node_watch *w, const struct kv_event *ev)
{
    if (ev->type == KV_EVENT_MESSAGE) return w->messages != 0;
    if (w->exact) return ev->key_len == w->key_len && memcmp(ev->key, w->key, w->key_len) == 0;
    return ev->key_len >= w->key_len && memcmp(ev->key, w->key, w->key_len) == 0;
}

/* What pos becomes once the watch looked at every event before next_seq. */
static uint64_t pos_at(const struct node_watch *w)
{
    const struct watch_history *h = &w->n->whist;
    uint64_t p =
        w->next_seq < h->head_seq ? watch_history_version(h, w->next_seq) : w->n->applied + 1;
    return p > w->pos ? p : w->pos;
}

int node_watch_next(struct node_watch *w, struct node_watch_item *it)
{
    struct node *n = w->n;
    const struct watch_history *h = &n->whist;
    memset(it, 0, sizeof(*it));
    if (!w->canceled && w->next_seq < h->tail_seq) watch_cancel(w, "slow");
    if (w->canceled) {
        it->kind = NODE_WATCH_CANCELED;
        it->reason = w->canceled;
        it->version = w->pos;
        return 1;
    }
    struct kv_event ev;
    while (w->next_seq < h->head_seq) {
        int rc = watch_history_get(h, w->next_seq, &ev);
        ST_ASSERT(rc == 0);
        w->next_seq++;
        if (ev.version < w->from_version || !watch_match(w, &ev)) {
            w->pos = pos_at(w);
            continue;
        }
        it->kind = NODE_WATCH_EVENT;
        it->ev.type = (enum node_event_type)ev.type;
        it->ev.key = ev.key;
        it->ev.key_len = ev.key_len;
        it->ev.value = ev.value;
        it->ev.value_len = ev.value_len;
        it->ev.value_type = ev.value_type;
        it->ev.version = ev.version;
        it->ev.expire_at_ms = ev.expire_at_ms;
        it->ev.op = ev.op;
        w->pos = pos_at(w);
        w->last_item_us = node_now_us();
        n->watch_events_sent++;
        return 1;
    }
    w->pos = pos_at(w);
    uint64_t now = node_now_us();
    if (w->progress_ms && now - w->last_item_us >= (uint64_t)w->progress_ms * 1000u) {
        w->last_item_us = now;
        it->kind = NODE_WATCH_PROGRESS;
        it->applied = n->applied;
        return 1;
    }
    w->waiting = true;
    return 0;
}

void node_watch_close(struct node_watch *w)
{
    if (!w) return;
    struct node *n = w->n;
    ST_ASSERT(n->watches_n > 0);
    n->watches_n--;
    if (n->watch_notifying) {
        w->closed = true;
        w->waiting = false;
        return;
    }
    st_list_del(&w->link);
    free(w);
}

void node_watch_stats_get(const struct node *n, struct node_watch_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->watches = n->watches_n;
    out->history_events = n->whist.head_seq - n->whist.tail_seq;
    out->history_first = n->whist.first_version;
    out->events_sent = n->watch_events_sent;
    out->canceled_slow = n->watch_canceled_slow;
}
