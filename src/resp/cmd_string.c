/* RESP string and key reads (GET, MGET, EXISTS, TTL family, STRLEN,
 * GETRANGE, TYPE, DBSIZE) and plain writes (SET without read-modify-write
 * options, SETNX, SETEX, PSETEX, DEL, UNLINK). A command over several keys
 * reads them all after ONE linearizable barrier (a ReadIndex read): once it
 * returns, the local state is at least as new as the read index, so reading
 * the other keys locally at that moment is linearizable too. */
#include "resp/cmd.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

/* --------------------------------------------------------------- reads */

/* What a one-key read replies (s->cmd). */
enum {
    READ_GET = 0,
    READ_TTL,
    READ_PTTL,
    READ_EXPIRETIME,
    READ_PEXPIRETIME,
    READ_STRLEN,
    READ_GETRANGE,
    READ_TYPE
};

/* GETRANGE's reply over a value of len bytes (Redis 7.0's getrangeCommand). */
void resp_reply_range(struct resp_out *o, const uint8_t *v, size_t len, long long start,
                      long long end)
{
    long long n = (long long)len;
    if (start < 0 && end < 0 && start > end) {
        resp_reply_bulk(o, "", 0);
        return;
    }
    if (start < 0) start = n + start;
    if (end < 0) end = n + end;
    if (start < 0) start = 0;
    if (end < 0) end = 0;
    if (end >= n) end = n - 1;
    if (start > end || n == 0) {
        resp_reply_bulk(o, "", 0);
        return;
    }
    resp_reply_bulk(o, v + start, (size_t)(end - start + 1));
}

/* The reply of a one-key read; found == false: no such key. type: the
 * value's enum node_value_type. */
static void read_reply(struct resp_slot *s, struct resp_out *o, bool found, const uint8_t *v,
                       size_t len, uint64_t expire_at_ms, uint8_t type)
{
    if (found && type != NODE_VALUE_STRING &&
        (s->cmd == READ_GET || s->cmd == READ_STRLEN || s->cmd == READ_GETRANGE)) {
        resp_reply_error(o, RESP_E_WRONGTYPE);
        return;
    }
    uint64_t clock = found && expire_at_ms ? node_log_clock_ms(s->conn->srv->node) : 0;
    long long left_ms = expire_at_ms > clock ? (long long)(expire_at_ms - clock) : 0;
    switch (s->cmd) {
    case READ_GET:
        if (found)
            resp_reply_bulk(o, v, len);
        else
            resp_reply_null(o);
        break;
    case READ_TTL:
    case READ_PTTL:
        if (!found)
            resp_reply_integer(o, -2);
        else if (!expire_at_ms)
            resp_reply_integer(o, -1);
        else
            resp_reply_integer(o, s->cmd == READ_PTTL ? left_ms : (left_ms + 500) / 1000);
        break;
    case READ_EXPIRETIME:
    case READ_PEXPIRETIME:
        if (!found)
            resp_reply_integer(o, -2);
        else if (!expire_at_ms)
            resp_reply_integer(o, -1);
        else
            resp_reply_integer(o, s->cmd == READ_PEXPIRETIME ? (long long)expire_at_ms
                                                             : (long long)(expire_at_ms / 1000));
        break;
    case READ_STRLEN:
        resp_reply_integer(o, found ? (long long)len : 0);
        break;
    case READ_GETRANGE:
        resp_reply_range(o, v, found ? len : 0, s->a1, s->a2);
        break;
    case READ_TYPE:
        resp_reply_simple(o, !found ? "none" : type == NODE_VALUE_STRING ? "string" : "hash");
        break;
    default:
        ST_ASSERT(!"unknown read kind");
    }
}

static void get_cb(void *ctx, const struct node_read_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    struct resp_out o = resp_slot_out(s);
    if (res->status == 0 || res->status == ST_ENOENT)
        read_reply(s, &o, res->status == 0, res->value, res->value_len, res->expire_at_ms,
                   res->value_type);
    else
        resp_reply_node_error(&o, res->status, false);
    resp_slot_done(s);
}

static void read_one(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *key,
                     uint8_t kind)
{
    s->cmd = kind;
    if (key->len == 0 || key->len > node_config_get(c->srv->node)->max_key_bytes) {
        /* No such key can exist. */
        struct resp_out o = resp_slot_out(s);
        read_reply(s, &o, false, NULL, 0, 0, NODE_VALUE_STRING);
        resp_slot_done(s);
        return;
    }
    resp_slot_hold(s);
    int rc = node_get(c->srv->node, key->p, key->len, resp_read_mode(c), get_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        resp_done_node_error(s, rc, false);
    }
}

void resp_cmd_get(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc)
{
    (void)argc;
    read_one(c, s, &argv[1], READ_GET);
}

void resp_cmd_ttl(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc)
{
    (void)argc;
    uint8_t kind = resp_arg_is(&argv[0], "ttl")           ? READ_TTL
                   : resp_arg_is(&argv[0], "pttl")        ? READ_PTTL
                   : resp_arg_is(&argv[0], "expiretime")  ? READ_EXPIRETIME
                   : resp_arg_is(&argv[0], "pexpiretime") ? READ_PEXPIRETIME
                   : resp_arg_is(&argv[0], "strlen")      ? READ_STRLEN
                                                          : READ_TYPE;
    read_one(c, s, &argv[1], kind);
}

void resp_cmd_getrange(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc)
{
    (void)argc;
    if (!resp_parse_ll(argv[2].p, argv[2].len, &s->a1) ||
        !resp_parse_ll(argv[3].p, argv[3].len, &s->a2)) {
        resp_reply_not_integer(s);
        return;
    }
    read_one(c, s, &argv[1], READ_GETRANGE);
}

/* Multi-key reads: after the barrier, every key is read locally. */
enum { MULTI_MGET = 1, MULTI_EXISTS, MULTI_DBSIZE };

struct local_read {
    bool found;
    bool is_string; /* MGET answers nil for a hash, as Redis does */
    const uint8_t *value;
    size_t value_len;
};

static void local_cb(void *ctx, const struct node_read_result *res)
{
    struct local_read *lr = ctx;
    lr->found = res->status == 0;
    lr->is_string = res->value_type == NODE_VALUE_STRING;
    lr->value = res->value;
    lr->value_len = res->value_len;
}

static void multi_finish(struct resp_slot *s)
{
    struct resp_conn *c = s->conn;
    struct node *n = c->srv->node;
    struct resp_out o = resp_slot_out(s);
    if (s->cmd == MULTI_DBSIZE) {
        struct node_info *ni = malloc(sizeof *ni);
        if (!ni) {
            resp_reply_error(&o, "ERR out of memory");
        } else {
            node_info_get(n, ni);
            resp_reply_integer(&o, (long long)ni->keys);
            free(ni);
        }
        resp_slot_done(s);
        return;
    }
    if (s->cmd == MULTI_MGET) resp_reply_array(&o, s->nkeys);
    long long count = 0;
    size_t off = 0;
    for (uint32_t i = 0; i < s->nkeys; i++) {
        size_t len;
        const uint8_t *k = resp_keys_next(s, &off, &len);
        struct local_read lr = {false, false, NULL, 0};
        /* A stale read is answered at once, inside the call. */
        if (len > 0 && node_get(n, k, len, NODE_READ_STALE, local_cb, &lr) != 0) lr.found = false;
        if (s->cmd == MULTI_MGET) {
            if (lr.found && lr.is_string)
                resp_reply_bulk(&o, lr.value, lr.value_len);
            else
                resp_reply_null(&o);
        } else if (lr.found) {
            count++;
        }
    }
    if (s->cmd == MULTI_EXISTS) resp_reply_integer(&o, count);
    resp_slot_done(s);
}

static void barrier_cb(void *ctx, const struct node_read_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_barrier_passed(s, res)) multi_finish(s);
}

/* A linearizable barrier: a ReadIndex read of a key nothing writes
 * (a NUL byte: the RESP front end never reads it for a client), then
 * multi_finish. In READONLY mode, multi_finish at once. */
static void barrier_then_finish(struct resp_conn *c, struct resp_slot *s)
{
    if (c->readonly) {
        multi_finish(s);
        return;
    }
    static const uint8_t barrier_key[1] = {0};
    resp_slot_hold(s);
    int rc = node_get(c->srv->node, barrier_key, 1, NODE_READ_LINEARIZABLE, barrier_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        resp_done_node_error(s, rc, false);
    }
}

static void multi_read(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                       uint32_t argc, uint8_t kind)
{
    s->cmd = kind;
    if (!resp_keys_save(s, argv, 1, argc, 1)) {
        resp_reply_done_error(s, "ERR out of memory");
        return;
    }
    barrier_then_finish(c, s);
}

void resp_cmd_mget(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    multi_read(c, s, argv, argc, MULTI_MGET);
}

void resp_cmd_exists(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    multi_read(c, s, argv, argc, MULTI_EXISTS);
}

void resp_cmd_dbsize(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    (void)argv;
    (void)argc;
    s->cmd = MULTI_DBSIZE;
    s->nkeys = 0;
    barrier_then_finish(c, s);
}

/* -------------------------------------------------------------- writes */

enum { WRITE_OK = 1, WRITE_SETNX_INT, WRITE_NX_NULL, WRITE_DEL_COUNT };

static void write_finish(struct resp_slot *s)
{
    struct resp_out o = resp_slot_out(s);
    if (s->status != 0) {
        resp_reply_node_error(&o, s->status, true);
    } else if (s->cmd == WRITE_DEL_COUNT || s->cmd == WRITE_SETNX_INT) {
        resp_reply_integer(&o, s->count);
    } else if (s->cmd == WRITE_NX_NULL && s->count == 0) {
        resp_reply_null(&o);
    } else {
        resp_reply_simple(&o, "OK");
    }
    resp_slot_done(s);
}

static void write_cb(void *ctx, const struct node_write_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    if (res->status == 0)
        s->count++;
    else if (res->status == ST_EPRECONDITION || res->status == ST_ENOENT)
        ; /* NX on an existing key, DEL of an absent key */
    else if (s->status == 0)
        s->status = res->status;
    if (s->pending == 0) write_finish(s);
}

/* Proposes one PUT for slot s; the caller finishes when nothing is
 * pending. Returns false if refused at once (s->status set). */
static bool put_one(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *key,
                    const struct resp_arg *val, uint64_t ttl_ms, enum node_cond cond)
{
    ST_ASSERT(key != NULL && val != NULL);
    struct node_put_args a;
    memset(&a, 0, sizeof a);
    a.key = key->p;
    a.key_len = key->len;
    a.value = val->p;
    a.value_len = val->len;
    a.ttl_ms = ttl_ms;
    a.cond = cond;
    resp_slot_hold(s);
    int rc = node_put(c->srv->node, &a, write_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        if (s->status == 0) s->status = rc;
        return false;
    }
    return true;
}

static bool del_one(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *key)
{
    if (key->len == 0 || key->len > node_config_get(c->srv->node)->max_key_bytes)
        return true; /* no such key can exist: nothing to delete */
    resp_slot_hold(s);
    int rc = node_delete(c->srv->node, key->p, key->len, NODE_COND_NONE, 0, write_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        if (s->status == 0) s->status = rc;
        return false;
    }
    return true;
}

/* After issuing: finish now if every callback already ran. */
static void write_issued(struct resp_slot *s)
{
    if (s->pending == 0 && !s->done) write_finish(s);
}

/* Expiry of SET/SETEX/PSETEX in ms from now; *gone when the absolute time
 * is already past (the key must not exist afterwards). Returns false after
 * replying the error. */
static bool expire_arg(struct resp_slot *s, const struct resp_arg *a, bool seconds, bool absolute,
                       const char *cmd, uint64_t *ttl_ms, bool *gone)
{
    long long v;
    *gone = false;
    if (!resp_parse_ll(a->p, a->len, &v)) {
        resp_reply_not_integer(s);
        return false;
    }
    if (v <= 0 || (seconds && v > LLONG_MAX / 1000)) {
        struct resp_out o = resp_slot_out(s);
        resp_reply_errorf(&o, "invalid expire time in '%s' command", cmd);
        resp_slot_done(s);
        return false;
    }
    long long ms = seconds ? v * 1000 : v;
    long long now = (long long)resp_wall_ms();
    if (!absolute && ms > LLONG_MAX - now) {
        /* Redis refuses a relative time whose absolute one overflows. */
        struct resp_out o = resp_slot_out(s);
        resp_reply_errorf(&o, "invalid expire time in '%s' command", cmd);
        resp_slot_done(s);
        return false;
    }
    if (absolute) {
        if (ms <= now) {
            *gone = true;
            *ttl_ms = 0;
            return true;
        }
        ms -= now;
    }
    *ttl_ms = (uint64_t)ms;
    return true;
}

void resp_cmd_set(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc)
{
    bool nx = false, xx = false, get = false, keepttl = false, has_exp = false;
    bool exp_sec = false, exp_abs = false;
    const struct resp_arg *exp = NULL;
    for (uint32_t i = 3; i < argc; i++) {
        const struct resp_arg *a = &argv[i];
        bool has_next = i + 1 < argc;
        if (resp_arg_is(a, "nx") && !xx) {
            nx = true;
        } else if (resp_arg_is(a, "xx") && !nx) {
            xx = true;
        } else if (resp_arg_is(a, "get")) {
            get = true;
        } else if (resp_arg_is(a, "keepttl") && !has_exp) {
            keepttl = true;
        } else if ((resp_arg_is(a, "ex") || resp_arg_is(a, "px") || resp_arg_is(a, "exat") ||
                    resp_arg_is(a, "pxat")) &&
                   !keepttl && !has_exp && has_next) {
            has_exp = true;
            exp_sec = resp_arg_is(a, "ex") || resp_arg_is(a, "exat");
            exp_abs = resp_arg_is(a, "exat") || resp_arg_is(a, "pxat");
            exp = &argv[++i];
        } else {
            resp_reply_syntax(s);
            return;
        }
    }
    uint64_t ttl_ms = 0;
    bool gone = false;
    if (exp && !expire_arg(s, exp, exp_sec, exp_abs, "set", &ttl_ms, &gone)) return;
    if (xx || get || keepttl || (gone && nx)) {
        /* Read-modify-write options: a transaction decided at apply
         * (cmd_txn.c); a plain SET stays a PUT (the fast path). */
        resp_cmd_txn(c, s, argv, argc);
        return;
    }
    s->cmd = nx ? WRITE_NX_NULL : WRITE_OK;
    if (gone) {
        /* Redis stores the key and it expires at once. */
        s->cmd = WRITE_OK;
        del_one(c, s, &argv[1]);
    } else {
        put_one(c, s, &argv[1], &argv[2], ttl_ms, nx ? NODE_COND_IF_ABSENT : NODE_COND_NONE);
    }
    write_issued(s);
}

void resp_cmd_setnx(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    (void)argc;
    s->cmd = WRITE_SETNX_INT;
    put_one(c, s, &argv[1], &argv[2], 0, NODE_COND_IF_ABSENT);
    write_issued(s);
}

void resp_cmd_setex(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    (void)argc;
    bool sec = resp_arg_is(&argv[0], "setex");
    uint64_t ttl_ms;
    bool gone;
    if (!expire_arg(s, &argv[2], sec, false, sec ? "setex" : "psetex", &ttl_ms, &gone)) return;
    s->cmd = WRITE_OK;
    put_one(c, s, &argv[1], &argv[3], ttl_ms, NODE_COND_NONE);
    write_issued(s);
}

void resp_cmd_del(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc)
{
    s->cmd = WRITE_DEL_COUNT;
    for (uint32_t i = 1; i < argc; i++)
        if (!del_one(c, s, &argv[i])) break;
    write_issued(s);
}
