/* RESP commands that are kv transactions (node_txn.h): the read-modify-
 * write string and key commands (SET with XX/GET/KEEPTTL, GETSET, GETDEL,
 * GETEX, MSET, MSETNX, APPEND, SETRANGE, INCR family, INCRBYFLOAT, RENAME,
 * RENAMENX, EXPIRE family, PERSIST, FLUSHDB, FLUSHALL) and MULTI/EXEC/
 * DISCARD/WATCH/UNWATCH.
 *
 * A command is compiled into ops (compile()) and a reply recipe (struct
 * txr); the ops of one command, or of every command queued by MULTI, go to
 * the log as ONE TXN entry, decided at apply on every replica alike, and
 * the recipe turns the op results into Redis's reply. WATCH records the
 * version each key has at a linearizable point (0 = absent); EXEC guards
 * the TXN with "version still equal" for every watched key and answers a
 * null array when one changed, as Redis does. */
#include "resp/cmd.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_txn.h"
#include "stcache/errors.h"
#include "util/assert.h"

/* Ops of a single command that fit on the stack (MSET of more keys
 * allocates). */
#define TXN_STACK_ITEMS 16u

/* How a command's reply is made from its op results. */
enum txr_kind {
    TXR_FIRST = 1,  /* the first result as it is (bulk, nil, integer, ok, error) */
    TXR_OK,         /* +OK unless an op failed */
    TXR_SET,        /* OK -> +OK, nil (NX/XX failed) -> null */
    TXR_NX_INT,     /* OK -> 1, nil -> 0 (SETNX) */
    TXR_SUM,        /* sum of integers (DEL) */
    TXR_MGET,       /* array of the GETs */
    TXR_EXISTS,     /* count of GETs that found a value */
    TXR_STRLEN,     /* length of the GET's value */
    TXR_TYPE,       /* "string" or "none" */
    TXR_GETRANGE,   /* a range of the GET's value (a1, a2) */
    TXR_MSETNX,     /* 1 if the guards held, else 0 */
    TXR_TTL,        /* from EXPIRY: a1 = 1000 (TTL) or 1 (PTTL), relative */
    TXR_EXPIRETIME, /* from EXPIRY: a1 = 1000 or 1, absolute */
    TXR_ERR,        /* err: an error found when compiling, no ops */
    TXR_HMGET,      /* array of the HGETs (WRONGTYPE: that error) */
    TXR_HEXISTS,    /* HGET found -> 1, else 0 */
    TXR_HSTRLEN,    /* length of the HGET's value */
    TXR_HREAD,      /* HREAD's hash as HLEN, HGETALL, HKEYS, HVALS (a1: resp_hash_whole) */
    TXR_HSET_OK,    /* HMSET: +OK unless an error */
};

struct txr {
    uint8_t kind;
    uint32_t first, n; /* its results: res[first, first + n) */
    long long a1, a2;
    char err[96]; /* TXR_ERR: the error line */
};

/* The ops being built: grows from a stack array to the heap if needed. */
struct txb {
    struct kv_txn_item *items;
    uint32_t n, cap;
    bool heap;
    bool oom;
    uint32_t limit; /* --max-txn-ops */
    /* The field lists of hash ops (kv/hashval.h): an op's val is NULL and
     * its num the list's offset in hv until txb_fix sets the pointers
     * (hv may move while it grows). */
    struct st_membuf *hv;
    uint32_t field_bytes_max; /* --max-key-bytes bounds hash field names too */
};

static void txb_init(struct txb *b, struct kv_txn_item *stack, struct resp_conn *c)
{
    memset(b, 0, sizeof *b);
    b->items = stack;
    b->cap = TXN_STACK_ITEMS;
    b->limit = node_config_get(c->srv->node)->max_txn_ops;
    b->hv = &c->srv->hv;
    st_membuf_reset(b->hv);
    b->field_bytes_max = node_config_get(c->srv->node)->max_key_bytes;
}

static bool op_has_list(uint8_t kind)
{
    return kind == KV_TXN_HSET || kind == KV_TXN_HSETNX || kind == KV_TXN_HDEL ||
           kind == KV_TXN_HINCRBYFLOAT;
}

/* Points the hash ops' val at their lists, once hv is complete. */
static void txb_fix(struct txb *b, uint32_t guards)
{
    for (uint32_t i = guards; i < b->n; i++) {
        struct kv_txn_item *it = &b->items[i];
        if (!op_has_list(it->kind)) continue;
        it->val = (const uint8_t *)b->hv->data + it->num;
        it->num = 0;
    }
}

static struct kv_txn_item *txb_add(struct txb *b)
{
    if (b->n == b->cap) {
        if (b->oom || b->cap >= b->limit) {
            b->oom = true;
            return NULL;
        }
        uint32_t cap = b->cap * 2 > b->limit ? b->limit : b->cap * 2;
        struct kv_txn_item *p =
            b->heap ? realloc(b->items, cap * sizeof *p) : malloc(cap * sizeof *p);
        if (!p) {
            b->oom = true;
            return NULL;
        }
        if (!b->heap) memcpy(p, b->items, b->n * sizeof *p);
        b->items = p;
        b->cap = cap;
        b->heap = true;
    }
    struct kv_txn_item *it = &b->items[b->n++];
    memset(it, 0, sizeof *it);
    return it;
}

static void txb_free(struct txb *b)
{
    if (b->heap) free(b->items);
}

static void op(struct txb *b, uint8_t kind, uint8_t flags, const struct resp_arg *key,
               const struct resp_arg *val, int64_t num)
{
    struct kv_txn_item *it = txb_add(b);
    if (!it) return;
    it->kind = kind;
    it->flags = flags;
    it->key = key ? key->p : NULL;
    it->key_len = key ? (uint32_t)key->len : 0;
    it->val = val ? val->p : NULL;
    it->val_len = val ? (uint32_t)val->len : 0;
    it->num = num;
}

/* ---------------------------------------------------------- compile */

static const char *const E_SYNTAX = "ERR syntax error";
static const char *const E_NOT_INT = "ERR value is not an integer or out of range";
static const char *const E_FIELD_TOO_BIG = "ERR hash field too large (--max-key-bytes)";

/* Adds a hash op whose list holds argv[from, argc) by `step` (2: field
 * value pairs; 1: field names, empty values). */
static const char *hash_list_op(struct txb *b, uint8_t kind, const struct resp_arg *argv,
                                uint32_t from, uint32_t argc, uint32_t step)
{
    struct st_membuf *hv = b->hv;
    size_t at = hv->len;
    uint8_t hdr[KV_HVAL_HEADER_BYTES];
    kv_hval_put_count(hdr, (argc - from) / step);
    st_membuf_append(hv, hdr, sizeof hdr);
    for (uint32_t i = from; i + step - 1 < argc; i += step) {
        const struct resp_arg *f = &argv[i];
        if (f->len > b->field_bytes_max) return E_FIELD_TOO_BIG;
        uint8_t len[4];
        kv_hval_put_count(len, (uint32_t)f->len); /* a u32 like the count */
        st_membuf_append(hv, len, sizeof len);
        st_membuf_append(hv, f->p, f->len);
        size_t vl = step == 2 ? argv[i + 1].len : 0;
        kv_hval_put_count(len, (uint32_t)vl);
        st_membuf_append(hv, len, sizeof len);
        if (vl) st_membuf_append(hv, argv[i + 1].p, vl);
    }
    if (hv->oom) {
        b->oom = true;
        return NULL;
    }
    struct kv_txn_item *it = txb_add(b);
    if (!it) return NULL;
    it->kind = kind;
    it->key = argv[1].p;
    it->key_len = (uint32_t)argv[1].len;
    it->val_len = (uint32_t)(hv->len - at);
    it->num = (int64_t)at; /* txb_fix */
    return NULL;
}

/* The hash commands (one key; argv[1]); NULL if a0 is not one. *known is
 * set when it is. */
static const char *compile_hash(const struct resp_arg *argv, uint32_t argc, struct txb *b,
                                struct txr *r, bool *known)
{
    const struct resp_arg *a0 = &argv[0];
    *known = true;
    r->kind = TXR_FIRST;
    if (resp_arg_is(a0, "hset") || resp_arg_is(a0, "hmset")) {
        if (argc < 4 || argc % 2 != 0)
            return resp_arg_is(a0, "hset") ? "ERR wrong number of arguments for 'hset' command"
                                           : "ERR wrong number of arguments for 'hmset' command";
        if (resp_arg_is(a0, "hmset")) r->kind = TXR_HSET_OK;
        return hash_list_op(b, KV_TXN_HSET, argv, 2, argc, 2);
    }
    if (resp_arg_is(a0, "hsetnx")) return hash_list_op(b, KV_TXN_HSETNX, argv, 2, argc, 2);
    if (resp_arg_is(a0, "hdel")) return hash_list_op(b, KV_TXN_HDEL, argv, 2, argc, 1);
    if (resp_arg_is(a0, "hincrbyfloat"))
        return hash_list_op(b, KV_TXN_HINCRBYFLOAT, argv, 2, argc, 2);
    if (resp_arg_is(a0, "hincrby")) {
        long long v;
        if (!resp_parse_ll(argv[3].p, argv[3].len, &v)) return E_NOT_INT;
        if (argv[2].len > b->field_bytes_max) return E_FIELD_TOO_BIG;
        op(b, KV_TXN_HINCRBY, 0, &argv[1], &argv[2], v);
        return NULL;
    }
    if (resp_arg_is(a0, "hget") || resp_arg_is(a0, "hexists") || resp_arg_is(a0, "hstrlen")) {
        op(b, KV_TXN_HGET, 0, &argv[1], &argv[2], 0);
        r->kind = resp_arg_is(a0, "hget")      ? TXR_FIRST
                  : resp_arg_is(a0, "hexists") ? TXR_HEXISTS
                                               : TXR_HSTRLEN;
        return NULL;
    }
    if (resp_arg_is(a0, "hmget")) {
        for (uint32_t i = 2; i < argc; i++)
            op(b, KV_TXN_HGET, 0, &argv[1], &argv[i], 0);
        r->kind = TXR_HMGET;
        return NULL;
    }
    int whole = resp_hash_whole_kind(a0);
    if (whole >= 0) {
        op(b, KV_TXN_HREAD, 0, &argv[1], NULL, 0);
        r->kind = TXR_HREAD;
        r->a1 = whole;
        return NULL;
    }
    *known = false;
    return NULL;
}

/* The time argument of an expiry option: *ms relative (abs false) or
 * absolute (abs true) in ms. Returns NULL or the error text. */
static const char *expire_time(const struct resp_arg *a, bool seconds, bool abs, bool allow_le0,
                               const char *errbuf_cmd, char *errbuf, size_t cap, int64_t *ms)
{
    long long v;
    if (!resp_parse_ll(a->p, a->len, &v)) return E_NOT_INT;
    snprintf(errbuf, cap, "ERR invalid expire time in '%s' command", errbuf_cmd);
    if (!allow_le0 && v <= 0) return errbuf;
    if (seconds && (v > LLONG_MAX / 1000 || v < LLONG_MIN / 1000)) return errbuf;
    long long m = seconds ? v * 1000 : v;
    if (!abs) {
        long long now = (long long)resp_wall_ms();
        if (m > LLONG_MAX - now) return errbuf; /* Redis: the absolute time overflows */
    }
    *ms = m;
    return NULL;
}

/* SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]. */
static const char *compile_set(const struct resp_arg *argv, uint32_t argc, struct txb *b,
                               struct txr *r, char *eb, size_t ecap)
{
    bool nx = false, xx = false, get = false, keepttl = false;
    const struct resp_arg *exp = NULL;
    bool exp_sec = false, exp_abs = false;
    for (uint32_t i = 3; i < argc; i++) {
        const struct resp_arg *a = &argv[i];
        if (resp_arg_is(a, "nx") && !xx) {
            nx = true;
        } else if (resp_arg_is(a, "xx") && !nx) {
            xx = true;
        } else if (resp_arg_is(a, "get")) {
            get = true;
        } else if (resp_arg_is(a, "keepttl") && !exp) {
            keepttl = true;
        } else if ((resp_arg_is(a, "ex") || resp_arg_is(a, "px") || resp_arg_is(a, "exat") ||
                    resp_arg_is(a, "pxat")) &&
                   !keepttl && !exp && i + 1 < argc) {
            exp_sec = resp_arg_is(a, "ex") || resp_arg_is(a, "exat");
            exp_abs = resp_arg_is(a, "exat") || resp_arg_is(a, "pxat");
            exp = &argv[++i];
        } else {
            return E_SYNTAX;
        }
    }
    int64_t ms = 0;
    if (exp) {
        const char *e = expire_time(exp, exp_sec, exp_abs, false, "set", eb, ecap, &ms);
        if (e) return e;
    }
    if (get) op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
    /* SET .. GET on a hash: WRONGTYPE, nothing set (Redis). */
    uint8_t f = (uint8_t)((nx ? KV_TXN_F_NX : 0) | (xx ? KV_TXN_F_XX : 0) |
                          (keepttl ? KV_TXN_F_KEEPTTL : 0) | (exp && exp_abs ? KV_TXN_F_ABS : 0) |
                          (get ? KV_TXN_F_STRING : 0));
    op(b, KV_TXN_PUT, f, &argv[1], &argv[2], ms);
    r->kind = get ? TXR_FIRST : TXR_SET;
    return NULL;
}

/* GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]. */
static const char *compile_getex(const struct resp_arg *argv, uint32_t argc, struct txb *b,
                                 struct txr *r, char *eb, size_t ecap)
{
    r->kind = TXR_FIRST;
    if (argc == 2) {
        op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
        return NULL;
    }
    const struct resp_arg *a = &argv[2];
    if (resp_arg_is(a, "persist") && argc == 3) {
        op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
        op(b, KV_TXN_PERSIST, 0, &argv[1], NULL, 0);
        return NULL;
    }
    bool sec = resp_arg_is(a, "ex") || resp_arg_is(a, "exat");
    bool abs = resp_arg_is(a, "exat") || resp_arg_is(a, "pxat");
    if (!(sec || abs || resp_arg_is(a, "px")) || argc != 4) return E_SYNTAX;
    int64_t ms = 0;
    const char *e = expire_time(&argv[3], sec, abs, false, "getex", eb, ecap, &ms);
    if (e) return e;
    op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
    op(b, KV_TXN_EXPIRE, abs ? KV_TXN_F_ABS : 0, &argv[1], NULL, ms);
    return NULL;
}

/* EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT key time [NX|XX|GT|LT ...]. */
static const char *compile_expire(const struct resp_arg *argv, uint32_t argc, struct txb *b,
                                  struct txr *r, char *eb, size_t ecap)
{
    bool sec = resp_arg_is(&argv[0], "expire") || resp_arg_is(&argv[0], "expireat");
    bool abs = resp_arg_is(&argv[0], "expireat") || resp_arg_is(&argv[0], "pexpireat");
    uint8_t f = abs ? KV_TXN_F_ABS : 0;
    for (uint32_t i = 3; i < argc; i++) {
        if (resp_arg_is(&argv[i], "nx"))
            f |= KV_TXN_F_NX;
        else if (resp_arg_is(&argv[i], "xx"))
            f |= KV_TXN_F_XX;
        else if (resp_arg_is(&argv[i], "gt"))
            f |= KV_TXN_F_GT;
        else if (resp_arg_is(&argv[i], "lt"))
            f |= KV_TXN_F_LT;
        else {
            snprintf(eb, ecap, "ERR Unsupported option %.*s",
                     argv[i].len > 64 ? 64 : (int)argv[i].len, (const char *)argv[i].p);
            return eb;
        }
    }
    if ((f & KV_TXN_F_NX) && (f & (KV_TXN_F_XX | KV_TXN_F_GT | KV_TXN_F_LT)))
        return "ERR NX and XX, GT or LT options at the same time are not compatible";
    if ((f & KV_TXN_F_GT) && (f & KV_TXN_F_LT))
        return "ERR GT and LT options at the same time are not compatible";
    char name[16];
    snprintf(name, sizeof name, "%.*s", argv[0].len > 15 ? 15 : (int)argv[0].len,
             (const char *)argv[0].p);
    for (char *p = name; *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    int64_t ms = 0;
    const char *e = expire_time(&argv[2], sec, abs, true, name, eb, ecap, &ms);
    if (e) return e;
    op(b, KV_TXN_EXPIRE, f, &argv[1], NULL, ms);
    r->kind = TXR_FIRST;
    return NULL;
}

/* Appends the ops of one command (argv[0] is its name; the arity is
 * checked) to b and sets *r. Returns NULL, or the error the command
 * answers (no ops added). eb holds a formatted error. */
static const char *compile(const struct resp_arg *argv, uint32_t argc, struct txb *b, struct txr *r,
                           char *eb, size_t ecap)
{
    const struct resp_arg *a0 = &argv[0];
    long long v;
    r->kind = TXR_FIRST;
    if (resp_arg_is(a0, "set")) return compile_set(argv, argc, b, r, eb, ecap);
    if (resp_arg_is(a0, "getex")) return compile_getex(argv, argc, b, r, eb, ecap);
    if (resp_arg_is(a0, "expire") || resp_arg_is(a0, "pexpire") || resp_arg_is(a0, "expireat") ||
        resp_arg_is(a0, "pexpireat"))
        return compile_expire(argv, argc, b, r, eb, ecap);
    bool known;
    const char *he = compile_hash(argv, argc, b, r, &known);
    if (known) return he;
    r->kind = TXR_FIRST;
    if (resp_arg_is(a0, "get")) {
        op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
    } else if (resp_arg_is(a0, "getset")) { /* on a hash: WRONGTYPE, nothing set */
        op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
        op(b, KV_TXN_PUT, KV_TXN_F_STRING, &argv[1], &argv[2], 0);
    } else if (resp_arg_is(a0, "getdel")) {
        op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
        op(b, KV_TXN_DEL, KV_TXN_F_STRING, &argv[1], NULL, 0);
    } else if (resp_arg_is(a0, "setnx")) {
        op(b, KV_TXN_PUT, KV_TXN_F_NX, &argv[1], &argv[2], 0);
        r->kind = TXR_NX_INT;
    } else if (resp_arg_is(a0, "setex") || resp_arg_is(a0, "psetex")) {
        bool sec = resp_arg_is(a0, "setex");
        int64_t ms = 0;
        const char *e =
            expire_time(&argv[2], sec, false, false, sec ? "setex" : "psetex", eb, ecap, &ms);
        if (e) return e;
        op(b, KV_TXN_PUT, 0, &argv[1], &argv[3], ms);
        r->kind = TXR_OK;
    } else if (resp_arg_is(a0, "mset")) {
        if (argc % 2 == 0) return "ERR wrong number of arguments for 'mset' command";
        for (uint32_t i = 1; i + 1 < argc; i += 2)
            op(b, KV_TXN_PUT, 0, &argv[i], &argv[i + 1], 0);
        r->kind = TXR_OK;
    } else if (resp_arg_is(a0, "append")) {
        op(b, KV_TXN_APPEND, 0, &argv[1], &argv[2], 0);
    } else if (resp_arg_is(a0, "setrange")) {
        if (!resp_parse_ll(argv[2].p, argv[2].len, &v)) return E_NOT_INT;
        if (v < 0) return "ERR offset is out of range";
        op(b, KV_TXN_SETRANGE, 0, &argv[1], &argv[3], v);
    } else if (resp_arg_is(a0, "incr") || resp_arg_is(a0, "decr")) {
        op(b, KV_TXN_INCRBY, 0, &argv[1], NULL, resp_arg_is(a0, "incr") ? 1 : -1);
    } else if (resp_arg_is(a0, "incrby") || resp_arg_is(a0, "decrby")) {
        if (!resp_parse_ll(argv[2].p, argv[2].len, &v)) return E_NOT_INT;
        if (resp_arg_is(a0, "decrby")) {
            if (v == LLONG_MIN) return "ERR decrement would overflow";
            v = -v;
        }
        op(b, KV_TXN_INCRBY, 0, &argv[1], NULL, v);
    } else if (resp_arg_is(a0, "incrbyfloat")) {
        op(b, KV_TXN_INCRBYFLOAT, 0, &argv[1], &argv[2], 0);
    } else if (resp_arg_is(a0, "rename") || resp_arg_is(a0, "renamenx")) {
        op(b, KV_TXN_RENAME, resp_arg_is(a0, "renamenx") ? KV_TXN_F_NX : 0, &argv[1], &argv[2], 0);
    } else if (resp_arg_is(a0, "persist")) {
        op(b, KV_TXN_PERSIST, 0, &argv[1], NULL, 0);
    } else if (resp_arg_is(a0, "flushdb") || resp_arg_is(a0, "flushall")) {
        if (argc > 2 ||
            (argc == 2 && !resp_arg_is(&argv[1], "async") && !resp_arg_is(&argv[1], "sync")))
            return E_SYNTAX;
        op(b, KV_TXN_DEL_PREFIX, 0, NULL, NULL, 0);
        r->kind = TXR_OK;
    } else if (resp_arg_is(a0, "del") || resp_arg_is(a0, "unlink")) {
        for (uint32_t i = 1; i < argc; i++)
            op(b, KV_TXN_DEL, 0, &argv[i], NULL, 0);
        r->kind = TXR_SUM;
    } else if (resp_arg_is(a0, "mget") || resp_arg_is(a0, "exists")) {
        for (uint32_t i = 1; i < argc; i++)
            op(b, KV_TXN_GET, 0, &argv[i], NULL, 0);
        r->kind = resp_arg_is(a0, "mget") ? TXR_MGET : TXR_EXISTS;
    } else if (resp_arg_is(a0, "strlen") || resp_arg_is(a0, "type")) {
        op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
        r->kind = resp_arg_is(a0, "strlen") ? TXR_STRLEN : TXR_TYPE;
    } else if (resp_arg_is(a0, "ttl") || resp_arg_is(a0, "pttl") || resp_arg_is(a0, "expiretime") ||
               resp_arg_is(a0, "pexpiretime")) {
        op(b, KV_TXN_EXPIRY, 0, &argv[1], NULL, 0);
        bool rel = resp_arg_is(a0, "ttl") || resp_arg_is(a0, "pttl");
        r->kind = rel ? TXR_TTL : TXR_EXPIRETIME;
        r->a1 = resp_arg_is(a0, "ttl") || resp_arg_is(a0, "expiretime") ? 1000 : 1;
    } else if (resp_arg_is(a0, "getrange") || resp_arg_is(a0, "substr")) {
        if (!resp_parse_ll(argv[2].p, argv[2].len, &r->a1) ||
            !resp_parse_ll(argv[3].p, argv[3].len, &r->a2))
            return E_NOT_INT;
        op(b, KV_TXN_GET, 0, &argv[1], NULL, 0);
        r->kind = TXR_GETRANGE;
    } else {
        return "ERR command not supported inside MULTI by stcache (docs/REDIS.md)";
    }
    return NULL;
}

/* Whether compile() knows the command (MULTI queues only those). */
static bool compilable(const struct resp_arg *a0)
{
    static const char *const names[] = {
        "append",       "decr",        "decrby",      "del",      "exists", "expire",   "expireat",
        "flushall",     "flushdb",     "get",         "getdel",   "getex",  "getrange", "getset",
        "incr",         "incrby",      "incrbyfloat", "mget",     "mset",   "persist",  "pexpire",
        "pexpireat",    "psetex",      "rename",      "renamenx", "set",    "setex",    "setnx",
        "setrange",     "strlen",      "substr",      "type",     "unlink", "ttl",      "pttl",
        "expiretime",   "pexpiretime", "hset",        "hmset",    "hsetnx", "hdel",     "hincrby",
        "hincrbyfloat", "hget",        "hexists",     "hstrlen",  "hmget",  "hlen",     "hgetall",
        "hkeys",        "hvals",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (resp_arg_is(a0, names[i])) return true;
    return false;
}

/* ------------------------------------------------------------ replies */

static void reply_res(struct resp_out *o, const struct kv_txn_res *x)
{
    switch (x->kind) {
    case KV_TXN_R_NIL:
        resp_reply_null(o);
        break;
    case KV_TXN_R_OK:
        resp_reply_simple(o, "OK");
        break;
    case KV_TXN_R_INT:
        resp_reply_integer(o, x->num);
        break;
    case KV_TXN_R_BULK:
        resp_reply_bulk(o, x->p, x->len);
        break;
    default: {
        char msg[160];
        snprintf(msg, sizeof msg, "%s %s", kv_txn_err_prefix(x->err), kv_txn_err_text(x->err));
        resp_reply_error(o, msg);
    }
    }
}

/* clock: the log clock the TTLs are relative to. */
static void render(struct resp_out *o, const struct txr *r, const struct kv_txn_res *res,
                   bool succeeded, uint64_t clock)
{
    const struct kv_txn_res *x = &res[r->first];
    bool found = r->n > 0 && x->kind == KV_TXN_R_BULK;
    bool wrong = r->n > 0 && x->kind == KV_TXN_R_ERR && x->err == KV_TXN_E_WRONGTYPE;
    switch (r->kind) {
    case TXR_ERR:
        resp_reply_error(o, r->err);
        return;
    case TXR_MSETNX:
        resp_reply_integer(o, succeeded ? 1 : 0);
        return;
    case TXR_TTL:
    case TXR_EXPIRETIME:
        if (x->num < 0) {
            resp_reply_integer(o, x->num);
        } else if (r->kind == TXR_EXPIRETIME) {
            resp_reply_integer(o, x->num / r->a1);
        } else {
            long long left = (uint64_t)x->num > clock ? (long long)((uint64_t)x->num - clock) : 0;
            resp_reply_integer(o, r->a1 == 1 ? left : (left + 500) / 1000);
        }
        return;
    case TXR_FIRST:
        reply_res(o, x);
        return;
    case TXR_OK:
    case TXR_SET:
    case TXR_NX_INT:
    case TXR_HSET_OK:
        for (uint32_t i = 0; i < r->n; i++)
            if (res[r->first + i].kind == KV_TXN_R_ERR) {
                reply_res(o, &res[r->first + i]);
                return;
            }
        if (r->kind == TXR_NX_INT)
            resp_reply_integer(o, x->kind == KV_TXN_R_OK);
        else if (r->kind == TXR_SET && x->kind == KV_TXN_R_NIL)
            resp_reply_null(o);
        else
            resp_reply_simple(o, "OK");
        return;
    case TXR_SUM:
    case TXR_EXISTS: {
        long long sum = 0;
        for (uint32_t i = 0; i < r->n; i++) {
            const struct kv_txn_res *y = &res[r->first + i];
            sum += r->kind == TXR_SUM ? y->num
                                      : y->kind == KV_TXN_R_BULK ||
                                            (y->kind == KV_TXN_R_ERR &&
                                             y->err == KV_TXN_E_WRONGTYPE); /* a hash exists */
        }
        resp_reply_integer(o, sum);
        return;
    }
    case TXR_MGET:
        resp_reply_array(o, r->n);
        for (uint32_t i = 0; i < r->n; i++) {
            const struct kv_txn_res *y = &res[r->first + i];
            if (y->kind == KV_TXN_R_ERR && y->err == KV_TXN_E_WRONGTYPE)
                resp_reply_null(o); /* MGET: nil for a hash */
            else
                reply_res(o, y);
        }
        return;
    case TXR_HMGET:
        if (wrong) {
            reply_res(o, x);
            return;
        }
        resp_reply_array(o, r->n);
        for (uint32_t i = 0; i < r->n; i++)
            reply_res(o, &res[r->first + i]);
        return;
    case TXR_STRLEN:
    case TXR_HSTRLEN:
        if (wrong)
            reply_res(o, x);
        else
            resp_reply_integer(o, found ? (long long)x->len : 0);
        return;
    case TXR_HEXISTS:
        if (wrong)
            reply_res(o, x);
        else
            resp_reply_integer(o, found ? 1 : 0);
        return;
    case TXR_HREAD:
        if (wrong)
            reply_res(o, x);
        else
            resp_hash_reply_whole(o, (int)r->a1, found ? x->p : NULL, found ? x->len : 0);
        return;
    case TXR_TYPE:
        resp_reply_simple(o, found ? "string" : wrong ? "hash" : "none");
        return;
    case TXR_GETRANGE:
        if (wrong) {
            reply_res(o, x);
            return;
        }
        resp_reply_range(o, found ? x->p : NULL, found ? x->len : 0, r->a1, r->a2);
        return;
    }
}

/* ------------------------------------------------ single commands */

enum { TXN_ONE = 1, TXN_EXEC };

/* The slot keeps its recipes in s->keys (struct txr each, s->nkeys). */
static void txn_cb(void *ctx, const struct node_write_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_slot_unhold(s)) return;
    struct resp_out o = resp_slot_out(s);
    if (res->status != 0) {
        resp_reply_node_error(&o, res->status, true);
        resp_slot_done(s);
        return;
    }
    const struct txr *rs = (const struct txr *)(const void *)s->keys.data;
    if (s->cmd == TXN_EXEC) {
        if (!res->txn_succeeded) { /* a watched key changed */
            resp_reply_null_array(&o);
            resp_slot_done(s);
            return;
        }
        resp_reply_array(&o, s->nkeys);
    }
    uint64_t clock = node_log_clock_ms(s->conn->srv->node);
    for (uint32_t i = 0; i < s->nkeys; i++)
        render(&o, &rs[i], res->txn_res, res->txn_succeeded, clock);
    resp_slot_done(s);
}

/* Proposes b's ops (after `guards` guards) for slot s, whose recipes are
 * in s->keys; replies at once on a refusal. */
static void txn_submit(struct resp_conn *c, struct resp_slot *s, struct txb *b, uint32_t guards,
                       bool exec)
{
    struct resp_out o = resp_slot_out(s);
    if (b->oom || s->keys.oom) {
        resp_reply_error(&o, b->oom && b->n >= b->limit
                                 ? "ERR transaction too large (--max-txn-ops)"
                                 : "ERR out of memory");
        resp_slot_done(s);
        return;
    }
    if (b->hv->oom) {
        resp_reply_error(&o, "ERR out of memory");
        resp_slot_done(s);
        return;
    }
    txb_fix(b, guards);
    s->cmd = exec ? TXN_EXEC : TXN_ONE;
    struct node_txn_args a = {b->items, guards, b->n - guards, 0};
    resp_slot_hold(s);
    int rc = node_txn(c->srv->node, &a, txn_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        if (rc == ST_ETOOBIG)
            resp_reply_error(&o, "ERR key, value or transaction too large (--max-key-bytes, "
                                 "--max-value-bytes, --max-txn-ops, --max-txn-bytes)");
        else if (rc == ST_EINVAL)
            resp_reply_error(&o, "ERR empty keys are not supported");
        else
            resp_reply_node_error(&o, rc, true);
        resp_slot_done(s);
    }
}

void resp_cmd_txn(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                  uint32_t argc)
{
    struct kv_txn_item stack[TXN_STACK_ITEMS];
    struct txb b;
    txb_init(&b, stack, c);
    struct txr r = {0};
    char eb[128];
    const char *err = compile(argv, argc, &b, &r, eb, sizeof eb);
    if (err) {
        txb_free(&b);
        resp_reply_done_error(s, err);
        return;
    }
    r.first = 0;
    r.n = b.n;
    st_membuf_reset(&s->keys);
    st_membuf_append(&s->keys, &r, sizeof r);
    s->nkeys = 1;
    txn_submit(c, s, &b, 0, false);
    txb_free(&b);
}

/* MSETNX k v [k v ...]: guards "absent" on every key, then the puts. */
void resp_cmd_msetnx(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                     uint32_t argc)
{
    if (argc % 2 == 0) {
        resp_reply_arity(s, "msetnx");
        return;
    }
    struct kv_txn_item stack[TXN_STACK_ITEMS];
    struct txb b;
    txb_init(&b, stack, c);
    for (uint32_t i = 1; i + 1 < argc; i += 2)
        op(&b, KV_TXN_T_EXISTS, KV_TXN_EQ, &argv[i], NULL, 0);
    uint32_t guards = b.n;
    for (uint32_t i = 1; i + 1 < argc; i += 2)
        op(&b, KV_TXN_PUT, 0, &argv[i], &argv[i + 1], 0);
    struct txr r = {.kind = TXR_MSETNX};
    st_membuf_reset(&s->keys);
    st_membuf_append(&s->keys, &r, sizeof r);
    s->nkeys = 1;
    txn_submit(c, s, &b, guards, false);
    txb_free(&b);
}

/* ------------------------------------------------------- MULTI/EXEC */

static void multi_clear(struct resp_conn *c)
{
    c->in_multi = false;
    c->multi_dirty = false;
    c->multi_n = 0;
    if (c->multi_q.cap > RESP_BUF_KEEP_BYTES)
        st_membuf_free(&c->multi_q);
    else
        st_membuf_reset(&c->multi_q);
}

static void watch_clear(struct resp_conn *c)
{
    c->watch_n = 0;
    if (c->watch.cap > RESP_BUF_KEEP_BYTES)
        st_membuf_free(&c->watch);
    else
        st_membuf_reset(&c->watch);
}

void resp_multi_reset(struct resp_conn *c)
{
    multi_clear(c);
    watch_clear(c);
}

void resp_multi_free(struct resp_conn *c)
{
    st_membuf_free(&c->multi_q);
    st_membuf_free(&c->watch);
}

bool resp_multi_queues(const struct resp_conn *c, const struct resp_arg *argv)
{
    if (!c->in_multi) return false;
    const struct resp_arg *a0 = &argv[0];
    return !(resp_arg_is(a0, "exec") || resp_arg_is(a0, "discard") || resp_arg_is(a0, "multi") ||
             resp_arg_is(a0, "watch") || resp_arg_is(a0, "quit") || resp_arg_is(a0, "reset"));
}

void resp_multi_queue(struct resp_conn *c, struct resp_slot *s, const struct resp_cmd *k,
                      const struct resp_arg *argv, uint32_t argc)
{
    const struct node_config *cfg = node_config_get(c->srv->node);
    const char *err = NULL;
    if (!k || !compilable(&argv[0])) {
        err = k ? "ERR command not supported inside MULTI by stcache (docs/REDIS.md)" : NULL;
    } else {
        uint64_t bytes = c->multi_q.len + 4;
        for (uint32_t i = 0; i < argc; i++)
            bytes += 4 + argv[i].len;
        if (c->multi_n >= cfg->max_txn_ops || bytes > node_txn_bytes_max(c->srv->node))
            err = "ERR transaction too large (--max-txn-ops, --max-txn-bytes)";
    }
    if (!k || err) {
        c->multi_dirty = true; /* EXEC answers EXECABORT */
        if (err) resp_reply_done_error(s, err);
        return; /* the caller answered an unknown command */
    }
    uint32_t n = argc;
    st_membuf_append(&c->multi_q, &n, sizeof n);
    for (uint32_t i = 0; i < argc; i++) {
        uint32_t len = (uint32_t)argv[i].len;
        st_membuf_append(&c->multi_q, &len, sizeof len);
        st_membuf_append(&c->multi_q, argv[i].p, len);
    }
    if (c->multi_q.oom) {
        c->multi_dirty = true;
        resp_reply_done_error(s, "ERR out of memory");
        return;
    }
    c->multi_n++;
    struct resp_out o = resp_slot_out(s);
    resp_reply_simple(&o, "QUEUED");
    resp_slot_done(s);
}

void resp_cmd_multi(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    (void)argv;
    (void)argc;
    if (c->in_multi) {
        resp_reply_done_error(s, "ERR MULTI calls can not be nested");
        return;
    }
    multi_clear(c);
    c->in_multi = true;
    resp_reply_done_ok(s);
}

void resp_cmd_discard(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc)
{
    (void)argv;
    (void)argc;
    if (!c->in_multi) {
        resp_reply_done_error(s, "ERR DISCARD without MULTI");
        return;
    }
    resp_multi_reset(c);
    resp_reply_done_ok(s);
}

void resp_cmd_unwatch(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                      uint32_t argc)
{
    (void)argv;
    (void)argc;
    watch_clear(c);
    resp_reply_done_ok(s);
}

/* Reads one (u32 len, bytes) field of a queue record. */
static const uint8_t *field(const char *base, size_t *off, uint32_t *len)
{
    memcpy(len, base + *off, sizeof *len);
    const uint8_t *p = (const uint8_t *)base + *off + sizeof *len;
    *off += sizeof *len + *len;
    return p;
}

void resp_cmd_exec(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                   uint32_t argc)
{
    (void)argv;
    (void)argc;
    if (!c->in_multi) {
        resp_reply_done_error(s, "ERR EXEC without MULTI");
        return;
    }
    if (c->multi_dirty) {
        resp_multi_reset(c);
        resp_reply_done_error(s, "EXECABORT Transaction discarded because of previous errors.");
        return;
    }
    struct resp_server *srv = c->srv;
    struct kv_txn_item stack[TXN_STACK_ITEMS];
    struct txb b;
    txb_init(&b, stack, c);
    /* Guards: every watched key still has the version WATCH saw. */
    size_t off = 0;
    for (uint32_t i = 0; i < c->watch_n; i++) {
        uint64_t ver;
        memcpy(&ver, c->watch.data + off, sizeof ver);
        off += sizeof ver;
        uint32_t len;
        const uint8_t *p = field(c->watch.data, &off, &len);
        struct resp_arg key = {p, len};
        op(&b, KV_TXN_T_VERSION, KV_TXN_EQ, &key, NULL, (int64_t)ver);
    }
    uint32_t guards = b.n;
    st_membuf_reset(&s->keys);
    s->nkeys = 0;
    /* Each queued command: argv spans point into c->multi_q, which stays
     * as it is until node_txn copied the ops. */
    struct resp_arg *qargv = srv->argv; /* lim.args_max entries, free during dispatch */
    off = 0;
    for (uint32_t i = 0; i < c->multi_n; i++) {
        uint32_t n;
        memcpy(&n, c->multi_q.data + off, sizeof n);
        off += sizeof n;
        for (uint32_t j = 0; j < n; j++) {
            uint32_t len;
            const uint8_t *p = field(c->multi_q.data, &off, &len);
            qargv[j].p = p;
            qargv[j].len = len;
        }
        struct txr r = {0};
        char eb[128];
        r.first = b.n - guards;
        const char *err = compile(qargv, n, &b, &r, eb, sizeof eb);
        if (err) {
            r.kind = TXR_ERR;
            snprintf(r.err, sizeof r.err, "%s", err);
            b.n = guards + r.first;
        }
        r.n = b.n - guards - r.first;
        st_membuf_append(&s->keys, &r, sizeof r);
        s->nkeys++;
    }
    /* An empty transaction without watches needs no log entry. */
    if (b.n == 0) {
        struct resp_out o = resp_slot_out(s);
        resp_reply_array(&o, s->nkeys);
        /* Only commands that failed to compile: each answers its error. */
        for (uint32_t i = 0; i < s->nkeys; i++)
            resp_reply_error(&o, ((const struct txr *)(const void *)s->keys.data)[i].err);
        resp_multi_reset(c);
        resp_slot_done(s);
        txb_free(&b);
        return;
    }
    txn_submit(c, s, &b, guards, true);
    txb_free(&b);
    resp_multi_reset(c);
}

/* WATCH key [key ...]: the versions at a linearizable point. */
static void watch_cb(void *ctx, const struct node_read_result *res);

struct watch_read {
    uint64_t version;
    bool found;
};

static void watch_local_cb(void *ctx, const struct node_read_result *res)
{
    struct watch_read *w = ctx;
    w->found = res->status == 0;
    w->version = res->status == 0 ? res->version : 0;
}

static void watch_finish(struct resp_slot *s)
{
    struct resp_conn *c = s->conn;
    size_t off = 0;
    uint32_t limit = node_config_get(c->srv->node)->max_txn_ops;
    for (uint32_t i = 0; i < s->nkeys; i++) {
        size_t len;
        const uint8_t *k = resp_keys_next(s, &off, &len);
        if (c->watch_n >= limit) {
            resp_reply_done_error(s, "ERR too many watched keys (--max-txn-ops)");
            return;
        }
        struct watch_read w = {0, false};
        if (len > 0 && len <= node_config_get(c->srv->node)->max_key_bytes)
            (void)node_get(c->srv->node, k, len, NODE_READ_STALE, watch_local_cb, &w);
        uint32_t l = (uint32_t)len;
        st_membuf_append(&c->watch, &w.version, sizeof w.version);
        st_membuf_append(&c->watch, &l, sizeof l);
        st_membuf_append(&c->watch, k, len);
        c->watch_n++;
    }
    if (c->watch.oom) {
        watch_clear(c);
        resp_reply_done_error(s, "ERR out of memory");
        return;
    }
    resp_reply_done_ok(s);
}

static void watch_cb(void *ctx, const struct node_read_result *res)
{
    struct resp_slot *s = ctx;
    if (resp_barrier_passed(s, res)) watch_finish(s);
}

void resp_cmd_watch(struct resp_conn *c, struct resp_slot *s, const struct resp_arg *argv,
                    uint32_t argc)
{
    if (c->in_multi) {
        resp_reply_done_error(s, "ERR WATCH inside MULTI is not allowed");
        return;
    }
    if (!resp_keys_save(s, argv, 1, argc, 1)) {
        resp_reply_done_error(s, "ERR out of memory");
        return;
    }
    if (c->readonly) {
        watch_finish(s);
        return;
    }
    resp_slot_hold(s);
    int rc = node_read_barrier(c->srv->node, NODE_READ_LINEARIZABLE, watch_cb, s);
    if (rc < 0) {
        resp_slot_unhold(s);
        resp_done_node_error(s, rc, false);
    }
}
