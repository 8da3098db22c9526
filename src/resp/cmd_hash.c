/* RESP hash reads: HGET, HMGET, HEXISTS, HSTRLEN, HLEN, HGETALL, HKEYS,
 * HVALS, HSCAN. Each reads the key's whole value (its encoded field list,
 * kv/hashval.h, through node/node_txn.h) with one node_get, linearizable
 * unless the connection is READONLY, and answers from it; a string key
 * answers WRONGTYPE. The hash writes (HSET, HSETNX, HDEL, HINCRBY,
 * HINCRBYFLOAT, HMSET) are TXN ops compiled in cmd_txn.c, so MULTI/EXEC
 * takes them alike; so are these reads inside MULTI (HSCAN excepted).
 * Every read is O(hash size): hashes are bounded by --max-value-bytes. */
#include "resp/cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_txn.h"
#include "resp/cmd_scan.h"
#include "stcache/errors.h"
#include "util/assert.h"

#define HSCAN_COUNT_DEFAULT 10
#define HSCAN_NOVALUES 0x80u /* in s->cmd */

enum {
    H_GET = 0,
    H_MGET,
    H_EXISTS,
    H_STRLEN,
    H_LEN, /* the "whole" kinds: H_LEN.. */
    H_GETALL,
    H_KEYS,
    H_VALS,
    H_SCAN,
};

int resp_hash_whole_kind(const struct resp_arg *a0)
{
    if (resp_arg_is(a0, "hlen")) return H_LEN;
    if (resp_arg_is(a0, "hgetall")) return H_GETALL;
    if (resp_arg_is(a0, "hkeys")) return H_KEYS;
    if (resp_arg_is(a0, "hvals")) return H_VALS;
    return -1;
}

void resp_hash_reply_whole(struct resp_out *o, int kind, const uint8_t *hv, size_t len)
{
    uint32_t n = hv ? kv_hval_count(hv, len) : 0;
    if (kind == H_LEN) {
        resp_reply_integer(o, n);
        return;
    }
    if (kind == H_GETALL)
        resp_reply_map(o, n);
    else
        resp_reply_array(o, n);
    size_t pos = 0;
    struct kv_hval_field f;
    while (hv && kv_hval_next(hv, len, &pos, &f)) {
        if (kind != H_VALS) resp_reply_bulk(o, f.field, f.field_len);
        if (kind != H_KEYS) resp_reply_bulk(o, f.value, f.value_len);
    }
}

/* HSCAN over hv: s->a1 the cursor (a field position), s->a2 COUNT, the
 * MATCH pattern the first saved key (empty: none). */
static void reply_scan(struct resp_slot *s, struct resp_out *o, const uint8_t *hv, size_t len)
{
    size_t off = 0, pat_len = 0;
    const uint8_t *pat = resp_keys_next(s, &off, &pat_len);
    bool novalues = (s->cmd & HSCAN_NOVALUES) != 0;
    uint64_t n = hv ? kv_hval_count(hv, len) : 0;
    uint64_t from = (uint64_t)s->a1, to = from + (uint64_t)s->a2;
    if (to > n || to < from) to = n;
    /* two passes: the count first */
    size_t matched = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            resp_reply_array(o, 2);
            char cur[24];
            snprintf(cur, sizeof cur, "%llu", (unsigned long long)(to >= n ? 0 : to));
            resp_reply_bulk_str(o, cur);
            resp_reply_array(o, novalues ? matched : 2 * matched);
        }
        size_t pos = 0;
        struct kv_hval_field f;
        for (uint64_t i = 0; hv && i < to && kv_hval_next(hv, len, &pos, &f); i++) {
            if (i < from) continue;
            if (pat_len && !resp_glob_match(pat, pat_len, f.field, f.field_len, 0)) continue;
            if (pass == 0) {
                matched++;
                continue;
            }
            resp_reply_bulk(o, f.field, f.field_len);
            if (!novalues) resp_reply_bulk(o, f.value, f.value_len);
        }
    }
}

/* The reply of s->cmd over the hash hv[0..len) (NULL: no such key). */
static void hash_reply(struct resp_slot *s, struct resp_out *o, const uint8_t *hv, size_t len)
{
    uint8_t kind = s->cmd & (uint8_t)~HSCAN_NOVALUES;
    struct kv_hval_field f;
    size_t off = 0, fl = 0;
    switch (kind) {
    case H_GET:
    case H_EXISTS:
    case H_STRLEN: {
        const uint8_t *field = resp_keys_next(s, &off, &fl);
        bool found = hv && kv_hval_find(hv, len, field, fl, &f);
        if (kind == H_GET) {
            if (found)
                resp_reply_bulk(o, f.value, f.value_len);
            else
                resp_reply_null(o);
        } else {
            resp_reply_integer(o, !found ? 0 : kind == H_EXISTS ? 1 : (long long)f.value_len);
        }
        return;
    }
    case H_MGET:
        resp_reply_array(o, s->nkeys);
        for (uint32_t i = 0; i < s->nkeys; i++) {
            const uint8_t *field = resp_keys_next(s, &off, &fl);
            if (hv && kv_hval_find(hv, len, field, fl, &f))
                resp_reply_bulk(o, f.value, f.value_len);
            else
                resp_reply_null(o);
        }
        return;
    case H_SCAN:
        reply_scan(s, o, hv, len);
        return;
    default:
        resp_hash_reply_whole(o, kind, hv, len);
    }
}

static void hash_cb(void *ctx, const struct node_read_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    struct resp_out o = resp_slot_out(s);
    if (res->status == 0 && res->value_type != NODE_VALUE_HASH)
        resp_reply_error(&o, RESP_E_WRONGTYPE);
    else if (res->status == 0 || res->status == ST_ENOENT)
        hash_reply(s, &o, res->status == 0 ? res->value : NULL,
                   res->status == 0 ? res->value_len : 0);
    else
        resp_reply_node_error(&o, res->status, false);
    resp_slot_done(s);
}

/* Reads key for s (its kind in s->cmd, its fields or pattern in s->keys). */
static void hash_read(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *key)
{
    if (s->keys.oom) {
        resp_reply_done_error(s, "ERR out of memory");
        return;
    }
    if (key->len == 0 || key->len > node_config_get(c->srv->node)->max_key_bytes) {
        struct resp_out o = resp_slot_out(s); /* no such key can exist */
        hash_reply(s, &o, NULL, 0);
        resp_slot_done(s);
        return;
    }
    resp_slot_hold(s);
    int rc = node_get(c->srv->node, key->p, key->len, resp_read_mode(c), hash_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        resp_done_node_error(s, rc, false);
    }
}

void resp_cmd_hread(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    const struct resp_arg *a0 = &argv[0];
    int whole = resp_hash_whole_kind(a0);
    if (whole >= 0) {
        s->cmd = (uint8_t)whole;
        resp_keys_save(s, argv, 2, argc, 1);
    } else {
        s->cmd = resp_arg_is(a0, "hget")      ? H_GET
                 : resp_arg_is(a0, "hmget")   ? H_MGET
                 : resp_arg_is(a0, "hexists") ? H_EXISTS
                                              : H_STRLEN;
        resp_keys_save(s, argv, 2, argc, 1);
    }
    hash_read(c, s, &argv[1]);
}

/* HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]: the cursor is
 * a field position in the hash's order (docs/REDIS.md). */
void resp_cmd_hscan(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    long long cur = 0, count = HSCAN_COUNT_DEFAULT;
    if (!resp_parse_ll(argv[2].p, argv[2].len, &cur) || cur < 0) {
        resp_reply_done_error(s, "ERR invalid cursor");
        return;
    }
    const struct resp_arg *pat = NULL;
    bool novalues = false;
    for (uint32_t i = 3; i < argc; i++) {
        if (resp_arg_is(&argv[i], "novalues")) {
            novalues = true;
            continue;
        }
        if (i + 1 >= argc) {
            resp_reply_syntax(s);
            return;
        }
        if (resp_arg_is(&argv[i], "match")) {
            pat = &argv[++i];
        } else if (resp_arg_is(&argv[i], "count")) {
            if (!resp_parse_ll(argv[i + 1].p, argv[i + 1].len, &count)) {
                resp_reply_not_integer(s);
                return;
            }
            if (count < 1) {
                resp_reply_syntax(s);
                return;
            }
            i++;
        } else {
            resp_reply_syntax(s);
            return;
        }
    }
    /* "*" matches everything: kept as no pattern */
    bool all = !pat || (pat->len == 1 && pat->p[0] == '*');
    struct resp_arg none = {(const uint8_t *)"", 0};
    resp_keys_save(s, all ? &none : pat, 0, 1, 1);
    s->cmd = (uint8_t)(H_SCAN | (novalues ? HSCAN_NOVALUES : 0));
    s->a1 = cur;
    s->a2 = count;
    hash_read(c, s, &argv[1]);
}
