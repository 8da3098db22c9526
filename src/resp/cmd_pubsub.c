/* Pub/sub on the Redis port: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE,
 * PUNSUBSCRIBE, PUBSUB, and keyspace notifications (docs/REDIS.md,
 * "Pub/sub" and "Keyspace notifications").
 *
 * Subscriptions are node-local, as in Redis: each connection keeps its
 * channels and patterns (at most RESP_SUBS_MAX) and the server a list of
 * the connections that have any. Keyspace notifications are fed from the
 * node's change events through one node watch (node.h, "watches": the
 * stream HTTP watches read) over every key, open while
 * notify-keyspace-events has K or E: every node applies every change in
 * log order, so a subscriber on any node sees each change once, in that
 * order. A message is appended to the subscriber's output as a push
 * (resp_conn_push): a subscriber that does not read is closed past the
 * pubsub output limits, never slowing apply or the other clients.
 *
 * PUBLISH goes through the log (node_publish: a kv command that changes
 * nothing), as Redis Cluster delivers a message to the subscribers of every
 * node: each node delivers it on apply, from the same watch, in log order
 * with the notifications. The watch is open while there are subscribers or
 * notify-keyspace-events has K or E. */
#include "node/node_txn.h" /* the kv_txn_op kinds of node_watch_event.op */
#include "resp/cmd.h"
#include "resp/cmd_scan.h"

#include <stdio.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/trace.h"

enum { SUB_CHANNEL = 0, SUB_PATTERN = 1 };

/* Redis's NOTIFY_* classes, and the letters of notify-keyspace-events. */
enum {
    NOTIFY_KEYSPACE = 1u << 0,  /* K */
    NOTIFY_KEYEVENT = 1u << 1,  /* E */
    NOTIFY_GENERIC = 1u << 2,   /* g */
    NOTIFY_STRING = 1u << 3,    /* $ */
    NOTIFY_LIST = 1u << 4,      /* l */
    NOTIFY_SET = 1u << 5,       /* s */
    NOTIFY_HASH = 1u << 6,      /* h */
    NOTIFY_ZSET = 1u << 7,      /* z */
    NOTIFY_EXPIRED = 1u << 8,   /* x */
    NOTIFY_EVICTED = 1u << 9,   /* e */
    NOTIFY_STREAM = 1u << 10,   /* t */
    NOTIFY_KEY_MISS = 1u << 11, /* m */
    NOTIFY_MODULE = 1u << 12,   /* d */
    NOTIFY_NEW = 1u << 13,      /* n */
    NOTIFY_ALL = NOTIFY_GENERIC | NOTIFY_STRING | NOTIFY_LIST | NOTIFY_SET | NOTIFY_HASH |
                 NOTIFY_ZSET | NOTIFY_EXPIRED | NOTIFY_EVICTED | NOTIFY_STREAM | NOTIFY_MODULE,
};

static const struct {
    char c;
    uint32_t flag;
} notify_letters[] = {
    {'g', NOTIFY_GENERIC},  {'$', NOTIFY_STRING},   {'l', NOTIFY_LIST},    {'s', NOTIFY_SET},
    {'h', NOTIFY_HASH},     {'z', NOTIFY_ZSET},     {'x', NOTIFY_EXPIRED}, {'e', NOTIFY_EVICTED},
    {'t', NOTIFY_STREAM},   {'d', NOTIFY_MODULE},   {'n', NOTIFY_NEW},     {'K', NOTIFY_KEYSPACE},
    {'E', NOTIFY_KEYEVENT}, {'m', NOTIFY_KEY_MISS},
};
#define N_LETTERS (sizeof notify_letters / sizeof notify_letters[0])

int resp_notify_flags_parse(const char *s, size_t len, uint32_t *flags)
{
    uint32_t f = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == 'A') {
            f |= NOTIFY_ALL;
            continue;
        }
        size_t j = 0;
        while (j < N_LETTERS && notify_letters[j].c != s[i])
            j++;
        if (j == N_LETTERS) return ST_EINVAL;
        f |= notify_letters[j].flag;
    }
    *flags = f;
    return 0;
}

/* Redis 7.0's keyspaceEventsFlagsToString. */
void resp_notify_flags_format(uint32_t flags, char *out, size_t cap)
{
    size_t n = 0;
    bool all = (flags & NOTIFY_ALL) == NOTIFY_ALL;
    if (all && n + 1 < cap) out[n++] = 'A';
    for (size_t j = 0; j < N_LETTERS; j++) {
        uint32_t f = notify_letters[j].flag;
        bool tail = f == NOTIFY_KEYSPACE || f == NOTIFY_KEYEVENT || f == NOTIFY_KEY_MISS;
        if (all && !tail) continue;
        if ((flags & f) && n + 1 < cap) out[n++] = notify_letters[j].c;
    }
    if (cap) out[n] = '\0';
}

/* ------------------------------------------------------ subscriptions */

/* One subscription record of c at *off: its kind, name and length; moves
 * *off past it. false at the end. */
struct sub_rec {
    int kind;
    const uint8_t *name;
    uint32_t len;
};

static bool sub_next(const struct resp_conn *c, size_t *off, struct sub_rec *r)
{
    if (*off >= c->subs.len) return false;
    const uint8_t *p = (const uint8_t *)c->subs.data + *off;
    memcpy(&r->len, p + 1, sizeof r->len);
    r->kind = p[0];
    r->name = p + 5;
    *off += 5 + (size_t)r->len;
    return true;
}

/* The record of (kind, name) in c->subs: its offset, or -1. */
static long sub_find(const struct resp_conn *c, int kind, const uint8_t *p, size_t len)
{
    size_t off = 0, at = 0;
    struct sub_rec r;
    while (sub_next(c, &off, &r)) {
        if (r.kind == kind && r.len == len && memcmp(r.name, p, len) == 0) return (long)at;
        at = off;
    }
    return -1;
}

static void kwatch_sync(struct resp_server *srv);

static void sub_linked_update(struct resp_conn *c)
{
    bool any = c->n_chan + c->n_pat > 0;
    if (any && !st_list_linked(&c->sub_link) && !c->closing)
        st_list_push_back(&c->srv->subscribers, &c->sub_link);
    else if (!any && st_list_linked(&c->sub_link))
        st_list_del(&c->sub_link);
    kwatch_sync(c->srv);
}

static bool sub_add(struct resp_conn *c, int kind, const uint8_t *p, size_t len)
{
    uint8_t h[5];
    uint32_t l = (uint32_t)len;
    h[0] = (uint8_t)kind;
    memcpy(h + 1, &l, sizeof l);
    st_membuf_append(&c->subs, h, sizeof h);
    st_membuf_append(&c->subs, p, len);
    if (c->subs.oom) return false;
    if (kind == SUB_CHANNEL)
        c->n_chan++;
    else
        c->n_pat++;
    sub_linked_update(c);
    return true;
}

static void sub_remove_at(struct resp_conn *c, size_t off)
{
    uint8_t *r = (uint8_t *)c->subs.data + off;
    uint32_t l;
    memcpy(&l, r + 1, sizeof l);
    if (r[0] == SUB_CHANNEL)
        c->n_chan--;
    else
        c->n_pat--;
    size_t n = 5 + l;
    memmove(r, r + n, c->subs.len - off - n);
    c->subs.len -= n;
    sub_linked_update(c);
}

bool resp_pubsub_mode(const struct resp_conn *c)
{
    return c->proto == 2 && c->n_chan + c->n_pat > 0;
}

void resp_pubsub_reset(struct resp_conn *c)
{
    st_membuf_free(&c->subs);
    c->n_chan = c->n_pat = 0;
    c->psoft_ms = 0;
    sub_linked_update(c);
}

void resp_pubsub_conn_close(struct resp_conn *c)
{
    if (!st_list_linked(&c->sub_link)) return;
    st_list_del(&c->sub_link);
    kwatch_sync(c->srv);
}

/* --------------------------------------------------------------- auth */

static const char KS_PREFIX[] = "__keyspace@0__:";
static const char KE_PREFIX[] = "__keyevent@0__:";
#define KS_LEN (sizeof KS_PREFIX - 1)
#define KE_LEN (sizeof KE_PREFIX - 1)

static bool has_prefix(const uint8_t *p, size_t len, const char *pre, size_t plen)
{
    return len >= plen && memcmp(p, pre, plen) == 0;
}

/* Whether c may receive what the channel or pattern carries: with --auth,
 * a keyspace channel needs read access to its key; a keyspace pattern to
 * every key beginning with its literal part; a keyevent channel, and any
 * pattern that may match keyspace or keyevent channels otherwise, read
 * access to every key (as the watch route's prefix rule). */
static bool sub_allowed(const struct resp_conn *c, int kind, const uint8_t *p, size_t len)
{
    struct node *n = c->srv->node;
    if (!node_auth_enabled(n)) return true;
    const uint8_t *all = (const uint8_t *)"";
    if (kind == SUB_CHANNEL) {
        if (has_prefix(p, len, KS_PREFIX, KS_LEN))
            return node_auth_key_allowed(n, &c->who, false, p + KS_LEN, len - KS_LEN);
        if (has_prefix(p, len, KE_PREFIX, KE_LEN))
            return node_auth_range_allowed(n, &c->who, all, 0, NULL, 0, NULL, 0);
        return true;
    }
    size_t lit = resp_glob_literal_prefix(p, len);
    if (lit >= KS_LEN && memcmp(p, KS_PREFIX, KS_LEN) == 0)
        return node_auth_range_allowed(n, &c->who, p + KS_LEN, lit - KS_LEN, NULL, 0, NULL, 0);
    bool may_ks = memcmp(p, KS_PREFIX, lit < KS_LEN ? lit : KS_LEN) == 0;
    bool may_ke = memcmp(p, KE_PREFIX, lit < KE_LEN ? lit : KE_LEN) == 0;
    if (!may_ks && !may_ke) return true;
    return node_auth_range_allowed(n, &c->who, all, 0, NULL, 0, NULL, 0);
}

/* ----------------------------------------------------------- commands */

static long long subs_count(const struct resp_conn *c)
{
    return (long long)c->n_chan + (long long)c->n_pat;
}

static void reply_sub(struct resp_out *o, const char *what, const uint8_t *p, size_t len,
                      long long count)
{
    resp_reply_push(o, 3);
    resp_reply_bulk_str(o, what);
    if (p)
        resp_reply_bulk(o, p, len);
    else
        resp_reply_null(o);
    resp_reply_integer(o, count);
}

static void subscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc, int kind)
{
    struct resp_out o = resp_slot_out(s);
    for (uint32_t i = 1; i < argc; i++) /* all or none, as Redis's ACL */
        if (!sub_allowed(c, kind, argv[i].p, argv[i].len)) {
            resp_reply_done_error(s, "NOPERM this user has no permissions to access one of the "
                                     "channels used as arguments");
            return;
        }
    for (uint32_t i = 1; i < argc; i++) {
        if (sub_find(c, kind, argv[i].p, argv[i].len) < 0) {
            if (c->n_chan + c->n_pat >= RESP_SUBS_MAX) {
                resp_reply_errorf(&o, "too many subscriptions on this connection (at most %u)",
                                  RESP_SUBS_MAX);
                break;
            }
            if (!sub_add(c, kind, argv[i].p, argv[i].len)) {
                resp_reply_error(&o, "ERR out of memory");
                break;
            }
        }
        reply_sub(&o, kind == SUB_CHANNEL ? "subscribe" : "psubscribe", argv[i].p, argv[i].len,
                  subs_count(c));
    }
    resp_slot_done(s);
}

static void unsubscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                        uint32_t argc, int kind)
{
    struct resp_out o = resp_slot_out(s);
    const char *what = kind == SUB_CHANNEL ? "unsubscribe" : "punsubscribe";
    if (argc > 1) {
        for (uint32_t i = 1; i < argc; i++) {
            long off = sub_find(c, kind, argv[i].p, argv[i].len);
            if (off >= 0) sub_remove_at(c, (size_t)off);
            reply_sub(&o, what, argv[i].p, argv[i].len, subs_count(c));
        }
        resp_slot_done(s);
        return;
    }
    /* Every one of the kind, in the order subscribed. */
    uint32_t had = kind == SUB_CHANNEL ? c->n_chan : c->n_pat;
    if (had == 0) reply_sub(&o, what, NULL, 0, subs_count(c));
    size_t off = 0, at = 0;
    struct sub_rec r;
    while (sub_next(c, &off, &r)) {
        if (r.kind != kind) {
            at = off;
            continue;
        }
        reply_sub(&o, what, r.name, r.len, subs_count(c) - 1); /* before the bytes go */
        sub_remove_at(c, at);
        off = at;
    }
    resp_slot_done(s);
}

void resp_cmd_subscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                        uint32_t argc)
{
    subscribe(c, s, argv, argc, SUB_CHANNEL);
}

void resp_cmd_psubscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                         uint32_t argc)
{
    subscribe(c, s, argv, argc, SUB_PATTERN);
}

void resp_cmd_unsubscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                          uint32_t argc)
{
    unsubscribe(c, s, argv, argc, SUB_CHANNEL);
}

void resp_cmd_punsubscribe(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                           uint32_t argc)
{
    unsubscribe(c, s, argv, argc, SUB_PATTERN);
}

/* This node's receivers of a message on the channel: its subscribers and
 * the pattern subscriptions that match it. */
static long long receivers_of(struct resp_server *srv, const uint8_t *ch, size_t chlen)
{
    long long n = 0;
    struct st_list *e;
    ST_LIST_FOREACH(e, &srv->subscribers)
    {
        struct resp_conn *c = ST_CONTAINER_OF(e, struct resp_conn, sub_link);
        size_t off = 0;
        struct sub_rec r;
        while (sub_next(c, &off, &r))
            if (r.kind == SUB_CHANNEL ? r.len == chlen && memcmp(r.name, ch, chlen) == 0
                                      : resp_glob_match(r.name, r.len, ch, chlen, 0))
                n++;
    }
    return n;
}

static void publish_cb(void *ctx, const struct node_write_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    if (res->status != 0) {
        resp_done_node_error(s, res->status, true);
        return;
    }
    size_t off = 0, len;
    const uint8_t *ch = resp_keys_next(s, &off, &len);
    struct resp_out o = resp_slot_out(s);
    resp_reply_integer(&o, receivers_of(s->conn->srv, ch, len));
    resp_slot_done(s);
}

void resp_cmd_publish(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc)
{
    (void)argc;
    struct node *n = c->srv->node;
    bool keyspace = has_prefix(argv[1].p, argv[1].len, "__keyspace@", 11) ||
                    has_prefix(argv[1].p, argv[1].len, "__keyevent@", 11);
    if (keyspace && node_auth_enabled(n) && !node_auth_is_admin(n, &c->who)) {
        /* Whoever may not change keys must not fake their notifications. */
        resp_reply_done_error(s, "NOPERM this user has no permissions to access one of the "
                                 "channels used as arguments");
        return;
    }
    if (!resp_keys_save(s, argv, 1, 2, 1)) {
        resp_reply_done_error(s, "ERR out of memory");
        return;
    }
    resp_slot_hold(s);
    int rc =
        node_publish(c->srv->node, argv[1].p, argv[1].len, argv[2].p, argv[2].len, publish_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        resp_done_node_error(s, rc, true);
    }
}

/* Whether channel name (p, len) is already in the first i records of the
 * listing buffer (u32 len, bytes). */
static bool listed(const struct st_membuf *b, const uint8_t *p, size_t len)
{
    size_t off = 0;
    while (off < b->len) {
        uint32_t l;
        memcpy(&l, b->data + off, sizeof l);
        if (l == len && memcmp(b->data + off + 4, p, len) == 0) return true;
        off += 4 + l;
    }
    return false;
}

/* The distinct subscriptions of `kind` on this node (matching pattern
 * when given) into b as (u32 len, bytes); their number. */
static size_t collect(struct resp_server *srv, int kind, const struct resp_arg *pat,
                      struct st_membuf *b)
{
    size_t n = 0;
    struct st_list *e;
    ST_LIST_FOREACH(e, &srv->subscribers)
    {
        struct resp_conn *c = ST_CONTAINER_OF(e, struct resp_conn, sub_link);
        size_t off = 0;
        struct sub_rec r;
        while (sub_next(c, &off, &r)) {
            if (r.kind != kind || listed(b, r.name, r.len)) continue;
            if (pat && !resp_glob_match(pat->p, pat->len, r.name, r.len, 0)) continue;
            st_membuf_append(b, &r.len, sizeof r.len);
            st_membuf_append(b, r.name, r.len);
            n++;
        }
    }
    return n;
}

void resp_cmd_pubsub(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    struct resp_server *srv = c->srv;
    struct resp_out o = resp_slot_out(s);
    const struct resp_arg *sub = &argv[1];
    if (resp_arg_is(sub, "channels") && argc <= 3) {
        st_membuf_reset(&s->keys); /* scratch: the slot's key copies are unused here */
        size_t n = collect(srv, SUB_CHANNEL, argc == 3 ? &argv[2] : NULL, &s->keys);
        if (s->keys.oom) {
            resp_reply_done_error(s, "ERR out of memory");
            return;
        }
        resp_reply_array(&o, n);
        size_t off = 0;
        while (off < s->keys.len) {
            uint32_t l;
            memcpy(&l, s->keys.data + off, sizeof l);
            resp_reply_bulk(&o, s->keys.data + off + 4, l);
            off += 4 + l;
        }
    } else if (resp_arg_is(sub, "numsub")) {
        resp_reply_array(&o, (size_t)(argc - 2) * 2);
        for (uint32_t i = 2; i < argc; i++) {
            long long k = 0;
            struct st_list *e;
            ST_LIST_FOREACH(e, &srv->subscribers)
            {
                struct resp_conn *x = ST_CONTAINER_OF(e, struct resp_conn, sub_link);
                if (sub_find(x, SUB_CHANNEL, argv[i].p, argv[i].len) >= 0) k++;
            }
            resp_reply_bulk(&o, argv[i].p, argv[i].len);
            resp_reply_integer(&o, k);
        }
    } else if (resp_arg_is(sub, "numpat") && argc == 2) {
        st_membuf_reset(&s->keys);
        size_t n = collect(srv, SUB_PATTERN, NULL, &s->keys);
        resp_reply_integer(&o, (long long)n);
    } else {
        resp_reply_errorf(&o, "unknown subcommand '%.*s'. Try PUBSUB HELP.",
                          sub->len > 128 ? 128 : (int)sub->len, (const char *)sub->p);
    }
    st_membuf_reset(&s->keys);
    resp_slot_done(s);
}

/* ----------------------------------------------------------- delivery */

/* Delivers (channel, msg) to every subscriber of this node whose channel
 * or pattern matches: "message" then the "pmessage"s of its patterns, in
 * the order subscribed. */
static void publish_local(struct resp_server *srv, const uint8_t *ch, size_t chlen,
                          const uint8_t *msg, size_t msglen)
{
    struct st_membuf *b = &srv->pbuf;
    struct st_list *e, *tmp;
    ST_LIST_FOREACH_SAFE(e, tmp, &srv->subscribers)
    {
        struct resp_conn *c = ST_CONTAINER_OF(e, struct resp_conn, sub_link);
        struct resp_out o = {b, c->proto};
        st_membuf_reset(b);
        size_t off = 0;
        struct sub_rec r;
        while (sub_next(c, &off, &r)) {
            if (r.kind == SUB_CHANNEL) {
                if (r.len != chlen || memcmp(r.name, ch, chlen) != 0) continue;
                resp_reply_push(&o, 3);
                resp_reply_bulk_str(&o, "message");
            } else {
                if (!resp_glob_match(r.name, r.len, ch, chlen, 0)) continue;
                resp_reply_push(&o, 4);
                resp_reply_bulk_str(&o, "pmessage");
                resp_reply_bulk(&o, r.name, r.len);
            }
            resp_reply_bulk(&o, ch, chlen);
            resp_reply_bulk(&o, msg, msglen);
        }
        if (b->len == 0) continue;
        if (b->oom) {
            st_membuf_free(b);
            continue;
        }
        (void)resp_conn_push(c, b); /* may close c (output limits): unlinks it */
    }
    if (b->cap > RESP_BUF_KEEP_BYTES) st_membuf_free(b);
}

/* -------------------------------------------------- keyspace notifications */

/* Redis's event name and class of a node change event, from the kind of
 * change and the transaction item that made it (docs/REDIS.md, "Keyspace
 * notifications"); NULL for changes Redis does not notify (FLUSHALL's
 * deletions) and for items this file does not know (e.g. ops added by
 * other data types: they map to nothing until named here). */
static const char *event_name(const struct node_watch_event *ev, uint32_t *cls)
{
    if (ev->type == NODE_EVENT_EXPIRE) {
        *cls = NOTIFY_EXPIRED;
        return "expired";
    }
    if (ev->type == NODE_EVENT_EVICT) {
        *cls = NOTIFY_EVICTED;
        return "evicted";
    }
    bool put = ev->type == NODE_EVENT_PUT;
    *cls = NOTIFY_GENERIC;
    switch (ev->op & ~NODE_EVENT_OP_KEEPTTL) {
    case 0: /* single commands: PUT, DELETE */
    case KV_TXN_PUT:
    case KV_TXN_DEL:
        if (!put) return "del";
        *cls = NOTIFY_STRING;
        return "set";
    case KV_TXN_INCRBY:
        *cls = NOTIFY_STRING;
        return put ? "incrby" : NULL;
    case KV_TXN_INCRBYFLOAT:
        *cls = NOTIFY_STRING;
        return put ? "incrbyfloat" : NULL;
    case KV_TXN_APPEND:
        *cls = NOTIFY_STRING;
        return put ? "append" : NULL;
    case KV_TXN_SETRANGE:
        *cls = NOTIFY_STRING;
        return put ? "setrange" : NULL;
    case KV_TXN_EXPIRE: /* a time already past deletes: Redis says "del" */
        return put ? "expire" : "del";
    case KV_TXN_PERSIST:
        return put ? "persist" : NULL;
    case KV_TXN_RENAME:
        return put ? "rename_to" : "rename_from";
    case KV_TXN_HSET:
    case KV_TXN_HSETNX:
        *cls = NOTIFY_HASH;
        return put ? "hset" : NULL;
    case KV_TXN_HDEL: /* the last field gone: "hdel", then "del" (notify_event) */
        *cls = NOTIFY_HASH;
        return "hdel";
    case KV_TXN_HINCRBY:
        *cls = NOTIFY_HASH;
        return put ? "hincrby" : NULL;
    case KV_TXN_HINCRBYFLOAT:
        *cls = NOTIFY_HASH;
        return put ? "hincrbyfloat" : NULL;
    default:
        return NULL;
    }
}

static void notify_one(struct resp_server *srv, const struct node_watch_event *ev, const char *name,
                       uint32_t cls)
{
    if (!name || !(srv->notify_flags & cls)) return;
    size_t nlen = strlen(name);
    /* The channel: on the stack for short keys. */
    char chbuf[256];
    if (srv->notify_flags & NOTIFY_KEYSPACE) {
        size_t chlen = KS_LEN + ev->key_len;
        if (chlen <= sizeof chbuf) {
            memcpy(chbuf, KS_PREFIX, KS_LEN);
            memcpy(chbuf + KS_LEN, ev->key, ev->key_len);
            publish_local(srv, (const uint8_t *)chbuf, chlen, (const uint8_t *)name, nlen);
        } else {
            struct st_membuf ch;
            st_membuf_init(&ch);
            st_membuf_append(&ch, KS_PREFIX, KS_LEN);
            st_membuf_append(&ch, ev->key, ev->key_len);
            if (!ch.oom)
                publish_local(srv, (const uint8_t *)ch.data, ch.len, (const uint8_t *)name, nlen);
            st_membuf_free(&ch);
        }
    }
    if (srv->notify_flags & NOTIFY_KEYEVENT) {
        memcpy(chbuf, KE_PREFIX, KE_LEN);
        memcpy(chbuf + KE_LEN, name, nlen);
        publish_local(srv, (const uint8_t *)chbuf, KE_LEN + nlen, ev->key, ev->key_len);
    }
}

/* One change: its event, and "expire" after a "set" that gave the key an
 * expiry (SET EX, SETEX: Redis notifies both). */
static void notify_event(struct resp_server *srv, const struct node_watch_event *ev)
{
    if (st_list_empty(&srv->subscribers)) return;
    uint32_t cls = 0;
    const char *name = event_name(ev, &cls);
    notify_one(srv, ev, name, cls);
    uint8_t op = ev->op & ~NODE_EVENT_OP_KEEPTTL;
    if (op == KV_TXN_HDEL && ev->type == NODE_EVENT_DELETE)
        notify_one(srv, ev, "del", NOTIFY_GENERIC);
    if (ev->type == NODE_EVENT_PUT && ev->expire_at_ms && (op == 0 || op == KV_TXN_PUT) &&
        !(ev->op & NODE_EVENT_OP_KEEPTTL))
        notify_one(srv, ev, "expire", NOTIFY_GENERIC);
}

static int kwatch_open(struct resp_server *srv);

static void kwatch_notify(void *ctx)
{
    struct resp_server *srv = ctx;
    struct node_watch_item it;
    while (srv->kwatch && node_watch_next(srv->kwatch, &it) == 1) {
        if (it.kind == NODE_WATCH_EVENT && it.ev.type == NODE_EVENT_MESSAGE) {
            if (!st_list_empty(&srv->subscribers))
                publish_local(srv, it.ev.key, it.ev.key_len, it.ev.value, it.ev.value_len);
        } else if (it.kind == NODE_WATCH_EVENT) {
            notify_event(srv, &it.ev);
        } else if (it.kind == NODE_WATCH_CANCELED) {
            node_watch_close(srv->kwatch);
            srv->kwatch = NULL;
            if (strcmp(it.reason, "shutting_down") == 0) return;
            /* The history overtook us (or a snapshot was installed): the
             * notifications of the changes in between are lost, as a
             * Redis subscriber loses them on a reconnect. */
            ST_TRACE_WARN("resp", "keyspace notifications: watch %s; resuming at the next change",
                          it.reason);
            (void)kwatch_open(srv);
            return;
        }
    }
}

static int kwatch_open(struct resp_server *srv)
{
    if (srv->kwatch) return 0;
    struct node_watch_args a = {NULL, 0, 0, 0, 0, 1};
    uint64_t oldest;
    int rc = node_watch_open(srv->node, &a, kwatch_notify, srv, &srv->kwatch, &oldest);
    if (rc != 0) {
        srv->kwatch = NULL;
        ST_TRACE_WARN("resp", "keyspace notifications: cannot watch: %s", st_strerror(rc));
        return rc;
    }
    /* Nothing new yet: arms the notify. */
    kwatch_notify(srv);
    return 0;
}

/* Opens the watch while someone may receive from it, closes it after. */
static int kwatch_want(struct resp_server *srv)
{
    if (srv->closing) return 0;
    if ((srv->notify_flags & (NOTIFY_KEYSPACE | NOTIFY_KEYEVENT)) ||
        !st_list_empty(&srv->subscribers))
        return kwatch_open(srv);
    if (srv->kwatch) {
        node_watch_close(srv->kwatch);
        srv->kwatch = NULL;
    }
    return 0;
}

static void kwatch_sync(struct resp_server *srv)
{
    (void)kwatch_want(srv); /* a refusal is logged; the next change retries */
}

static int notify_apply(struct resp_server *srv, uint32_t flags)
{
    srv->notify_flags = flags;
    return kwatch_want(srv);
}

int resp_notify_set(struct resp_server *srv, const char *s, size_t len)
{
    uint32_t flags;
    if (resp_notify_flags_parse(s, len, &flags) != 0) return ST_EINVAL;
    return notify_apply(srv, flags);
}

int resp_pubsub_init(struct resp_server *srv, const char *notify_flags)
{
    st_list_init(&srv->subscribers);
    st_membuf_init(&srv->pbuf);
    srv->pubsub_hard_bytes = RESP_PUBSUB_HARD_BYTES;
    srv->pubsub_soft_bytes = RESP_PUBSUB_SOFT_BYTES;
    srv->pubsub_soft_s = RESP_PUBSUB_SOFT_S;
    if (!notify_flags || !notify_flags[0]) return 0;
    uint32_t flags;
    if (resp_notify_flags_parse(notify_flags, strlen(notify_flags), &flags) != 0) return ST_EINVAL;
    (void)notify_apply(srv, flags); /* a watch refused is logged; CONFIG SET retries */
    return 0;
}

void resp_pubsub_fini(struct resp_server *srv)
{
    if (srv->kwatch) node_watch_close(srv->kwatch);
    srv->kwatch = NULL;
}
