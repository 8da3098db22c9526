/* kv TXN apply: guards, then the success or failure ops (kv/txn.h).
 *
 * Every change goes through kv_apply_put / kv_apply_delete /
 * kv_state_remove, the paths single commands take, so whatever watches
 * those (the ordered index, the expiry heap, copy-on-write under a snapshot
 * cursor, change hooks) sees TXN changes alike. Deterministic: only the
 * state, the command and its timestamp (the log clock) decide. */
#include "kv/kv_int.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/strconv.h"

/* Redis's MAX_LONG_DOUBLE_CHARS: longer texts are not valid floats. */
#define TXN_LD_CHARS_MAX 5120u

void kv_txn_buf_free(struct kv_txn_buf *tb)
{
    free(tb->res);
    free(tb->bytes);
    free(tb->scratch);
    memset(tb, 0, sizeof *tb);
}

static int scratch_reserve(struct kv *kv, size_t n)
{
    struct kv_txn_buf *tb = &kv->txn;
    if (n <= tb->scratch_cap) return 0;
    size_t cap = tb->scratch_cap ? tb->scratch_cap : 256;
    while (cap < n)
        cap *= 2;
    uint8_t *p = kv_realloc(&kv->cfg, tb->scratch, cap);
    if (!p) return ST_ENOMEM;
    tb->scratch = p;
    tb->scratch_cap = cap;
    return 0;
}

/* ---------- results ---------- */

static struct kv_txn_res *res_next(struct kv *kv)
{
    struct kv_txn_buf *tb = &kv->txn;
    ST_ASSERT(tb->res_n < tb->res_cap);
    struct kv_txn_res *r = &tb->res[tb->res_n++];
    memset(r, 0, sizeof *r);
    return r;
}

static void res_int(struct kv *kv, int64_t v)
{
    struct kv_txn_res *r = res_next(kv);
    r->kind = KV_TXN_R_INT;
    r->num = v;
}

static void res_kind(struct kv *kv, uint8_t kind, uint8_t err)
{
    struct kv_txn_res *r = res_next(kv);
    r->kind = kind;
    r->err = err;
}

/* A bulk result: copied into tb->bytes; its offset stays in num until
 * kv_apply_txn fixes the pointers (the buffer may move meanwhile). */
static void res_bulk(struct kv *kv, const uint8_t *p, size_t len)
{
    struct kv_txn_buf *tb = &kv->txn;
    if (tb->bytes_len + len > tb->bytes_cap || !tb->bytes) {
        size_t cap = tb->bytes_cap ? tb->bytes_cap : 256;
        while (cap < tb->bytes_len + len)
            cap *= 2;
        uint8_t *b = kv_realloc(&kv->cfg, tb->bytes, cap);
        if (!b) {
            res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_NO_MEMORY);
            return;
        }
        tb->bytes = b;
        tb->bytes_cap = cap;
    }
    struct kv_txn_res *r = res_next(kv);
    r->kind = KV_TXN_R_BULK;
    r->num = (int64_t)tb->bytes_len;
    r->len = (uint32_t)len;
    if (len) memcpy(tb->bytes + tb->bytes_len, p, len);
    tb->bytes_len += len;
}

/* ---------- state helpers ---------- */

static struct kv_entry *live_find(struct kv *kv, const uint8_t *key, uint32_t len, uint64_t now)
{
    uint32_t h = kv_hash(kv, key, len);
    struct kv_entry *e = kv_state_find(&kv->st, h, key, len, NULL, NULL);
    return e && !entry_expired(e, now) ? e : NULL;
}

/* ms left of a live entry's TTL, 0 for none. */
static uint64_t ttl_left(const struct kv_entry *e, uint64_t now)
{
    uint64_t x = entry_expire(e);
    return x ? x - now : 0;
}

/* Writes key = val of type `type` (val never inside the kv's entries)
 * with ttl_ms (0 = none): the single-command PUT path. */
static int put_value(struct kv *kv, uint64_t index, uint64_t now, const uint8_t *key,
                     uint32_t key_len, const uint8_t *val, size_t val_len, uint64_t ttl_ms,
                     uint8_t type)
{
    struct kv_command pc;
    memset(&pc, 0, sizeof pc);
    pc.type = KV_CMD_PUT;
    pc.value_type = type;
    pc.timestamp_ms = now;
    pc.ttl_ms = ttl_ms;
    pc.key = key;
    pc.key_len = key_len;
    pc.value = val;
    pc.value_len = (uint32_t)val_len;
    struct kv_result pr;
    memset(&pr, 0, sizeof pr);
    return kv_apply_put(kv, index, &pc, &pr);
}

/* Removes key (live or expired); returns 1 if it was live. */
static int del_key(struct kv *kv, uint64_t index, uint64_t now, const uint8_t *key,
                   uint32_t key_len)
{
    struct kv_command dc;
    memset(&dc, 0, sizeof dc);
    dc.type = KV_CMD_DELETE;
    dc.timestamp_ms = now;
    dc.key = key;
    dc.key_len = key_len;
    struct kv_result dr;
    memset(&dr, 0, sizeof dr);
    kv_apply_delete(kv, index, &dc, &dr);
    return dr.status == KV_STATUS_OK;
}

/* Redis's string2ld. */
static int parse_ld(const uint8_t *p, size_t len, long double *out)
{
    char buf[TXN_LD_CHARS_MAX];
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, p, len);
    buf[len] = '\0';
    errno = 0;
    char *end = NULL;
    long double v = strtold(buf, &end);
    if (buf[0] == ' ' || (buf[0] >= '\t' && buf[0] <= '\r') || *end != '\0' ||
        (size_t)(end - buf) != len ||
        (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0)) || errno == EINVAL ||
        isnan(v))
        return 0;
    *out = v;
    return 1;
}

/* Redis's ld2string in LD_STR_HUMAN mode: %.17Lf without trailing zeros.
 * Returns the length, 0 if it does not fit. */
static size_t format_ld(char *buf, size_t cap, long double v)
{
    int n = snprintf(buf, cap, "%.17Lf", v);
    if (n < 0 || (size_t)n + 1 > cap) return 0;
    size_t l = (size_t)n;
    if (strchr(buf, '.')) {
        while (l > 0 && buf[l - 1] == '0')
            l--;
        if (l > 0 && buf[l - 1] == '.') l--;
    }
    if (l == 2 && buf[0] == '-' && buf[1] == '0') {
        buf[0] = '0';
        l = 1;
    }
    return l;
}

/* 1 (and the WRONGTYPE result given) if `check` and e is live and not of
 * type `want`. */
static int wrong_type(struct kv *kv, const struct kv_entry *e, uint8_t want, int check)
{
    if (!check || !e || entry_type(e) == want) return 0;
    res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_WRONGTYPE);
    return 1;
}

/* ---------- guards ---------- */

static int cmp_u64(uint64_t a, uint64_t b, uint8_t op)
{
    switch (op) {
    case KV_TXN_EQ:
        return a == b;
    case KV_TXN_NE:
        return a != b;
    case KV_TXN_LT:
        return a < b;
    default:
        return a > b;
    }
}

static int guard_holds(struct kv *kv, uint64_t now, const struct kv_txn_item *g)
{
    const struct kv_entry *e = live_find(kv, g->key, g->key_len, now);
    switch (g->kind) {
    case KV_TXN_T_VERSION:
        return cmp_u64(e ? e->version : 0, (uint64_t)g->num, g->flags);
    case KV_TXN_T_EXISTS:
        return cmp_u64(e != NULL, (uint64_t)g->num, g->flags);
    case KV_TXN_T_HAS_TTL:
        return e && cmp_u64(entry_expire(e) != 0, (uint64_t)g->num, g->flags);
    case KV_TXN_T_VALUE: {
        if (!e) return 0;
        size_t n = ST_MIN(e->value_len, g->val_len);
        int c = n ? memcmp(e->data + e->key_len, g->val, n) : 0;
        if (c == 0) c = e->value_len < g->val_len ? -1 : e->value_len > g->val_len ? 1 : 0;
        return cmp_u64(c < 0 ? 0 : c == 0 ? 1 : 2, 1, g->flags); /* c against 0 */
    }
    }
    return 0;
}

/* ---------- ops ---------- */

struct txn_ctx {
    struct kv *kv;
    uint64_t index;
    uint64_t now;
    uint32_t value_bytes_max;
};

static int op_put(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
    if (wrong_type(kv, e, KV_TYPE_STRING, o->flags & KV_TXN_F_STRING)) return 0;
    if (((o->flags & KV_TXN_F_NX) && e) || ((o->flags & KV_TXN_F_XX) && !e)) {
        res_kind(kv, KV_TXN_R_NIL, 0);
        return 0;
    }
    uint64_t ttl = (uint64_t)o->num;
    if (o->flags & KV_TXN_F_KEEPTTL) {
        ttl = e ? ttl_left(e, x->now) : 0;
    } else if (o->flags & KV_TXN_F_ABS) {
        if ((uint64_t)o->num <= x->now) { /* stored and expired at once */
            del_key(kv, x->index, x->now, o->key, o->key_len);
            res_kind(kv, KV_TXN_R_OK, 0);
            return 0;
        }
        ttl = (uint64_t)o->num - x->now;
    }
    int rc = put_value(kv, x->index, x->now, o->key, o->key_len, o->val, o->val_len, ttl,
                       KV_TYPE_STRING);
    if (rc) return rc;
    res_kind(kv, KV_TXN_R_OK, 0);
    return 0;
}

static int op_incrby(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
    if (wrong_type(kv, e, KV_TYPE_STRING, 1)) return 0;
    long long v = 0;
    if (e && !st_parse_ll(e->data + e->key_len, e->value_len, &v)) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_NOT_INTEGER);
        return 0;
    }
    long long inc = o->num;
    if ((inc < 0 && v < 0 && inc < LLONG_MIN - v) || (inc > 0 && v > 0 && inc > LLONG_MAX - v)) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_OVERFLOW);
        return 0;
    }
    v += inc;
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", v);
    int rc = put_value(kv, x->index, x->now, o->key, o->key_len, (const uint8_t *)buf, (size_t)n,
                       e ? ttl_left(e, x->now) : 0, KV_TYPE_STRING);
    if (rc) return rc;
    res_int(kv, v);
    return 0;
}

static int op_incrbyfloat(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
    if (wrong_type(kv, e, KV_TYPE_STRING, 1)) return 0;
    long double v = 0, inc = 0;
    if ((e && !parse_ld(e->data + e->key_len, e->value_len, &v)) ||
        !parse_ld(o->val, o->val_len, &inc)) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_NOT_FLOAT);
        return 0;
    }
    v += inc;
    if (isnan(v) || isinf(v)) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_NAN);
        return 0;
    }
    char buf[TXN_LD_CHARS_MAX];
    size_t n = format_ld(buf, sizeof buf, v);
    if (n == 0) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_NAN);
        return 0;
    }
    int rc = put_value(kv, x->index, x->now, o->key, o->key_len, (const uint8_t *)buf, n,
                       e ? ttl_left(e, x->now) : 0, KV_TYPE_STRING);
    if (rc) return rc;
    res_bulk(kv, (const uint8_t *)buf, n);
    return 0;
}

/* APPEND (offset = the old length) and SETRANGE: old bytes, zero padding up
 * to offset, then val over whatever was there. */
static int op_splice(struct txn_ctx *x, const struct kv_txn_item *o, int append)
{
    struct kv *kv = x->kv;
    const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
    if (wrong_type(kv, e, KV_TYPE_STRING, 1)) return 0;
    uint64_t old = e ? e->value_len : 0;
    uint64_t off = append ? old : (uint64_t)o->num;
    if (!append && o->val_len == 0) { /* Redis: nothing to write, nothing created */
        res_int(kv, (int64_t)old);
        return 0;
    }
    uint64_t len = ST_MAX(old, off + o->val_len);
    if (off + o->val_len > x->value_bytes_max) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_TOO_BIG);
        return 0;
    }
    int rc = scratch_reserve(kv, len ? len : 1);
    if (rc) return rc;
    uint8_t *b = kv->txn.scratch;
    if (old) memcpy(b, e->data + e->key_len, old);
    if (off > old) memset(b + old, 0, off - old);
    if (o->val_len) memcpy(b + off, o->val, o->val_len);
    rc = put_value(kv, x->index, x->now, o->key, o->key_len, b, len, e ? ttl_left(e, x->now) : 0,
                   KV_TYPE_STRING);
    if (rc) return rc;
    res_int(kv, (int64_t)len);
    return 0;
}

/* Rewrites a live entry's value as is with a new TTL (0 = none). */
static int reput(struct txn_ctx *x, const struct kv_entry *e, uint64_t ttl)
{
    struct kv *kv = x->kv;
    size_t kl = e->key_len, vl = e->value_len;
    int rc = scratch_reserve(kv, kl + vl + 1);
    if (rc) return rc;
    uint8_t *b = kv->txn.scratch;
    memcpy(b, e->data, kl + vl);
    return put_value(kv, x->index, x->now, b, (uint32_t)kl, b + kl, vl, ttl, entry_type(e));
}

static int op_expire(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
    if (!e) {
        res_int(kv, 0);
        return 0;
    }
    /* The new absolute time; 0 stands for "already past". */
    uint64_t when;
    if (o->flags & KV_TXN_F_ABS)
        when = o->num > 0 ? (uint64_t)o->num : 0;
    else if (o->num <= 0)
        when = 0;
    else
        when = (uint64_t)o->num > UINT64_MAX - x->now ? UINT64_MAX : x->now + (uint64_t)o->num;
    /* Redis 7: flags first; no TTL counts as an infinite one for GT/LT. */
    uint64_t cur = entry_expire(e);
    int ok = 1;
    if ((o->flags & KV_TXN_F_NX) && cur) ok = 0;
    if ((o->flags & KV_TXN_F_XX) && !cur) ok = 0;
    if ((o->flags & KV_TXN_F_GT) && (!cur || when <= cur)) ok = 0;
    if ((o->flags & KV_TXN_F_LT) && cur && when >= cur) ok = 0;
    if (!ok) {
        res_int(kv, 0);
        return 0;
    }
    if (when <= x->now) {
        del_key(kv, x->index, x->now, o->key, o->key_len);
    } else {
        int rc = reput(x, e, when - x->now);
        if (rc) return rc;
    }
    res_int(kv, 1);
    return 0;
}

static int op_persist(struct txn_ctx *x, const struct kv_txn_item *o)
{
    const struct kv_entry *e = live_find(x->kv, o->key, o->key_len, x->now);
    if (!e || !entry_expire(e)) {
        res_int(x->kv, 0);
        return 0;
    }
    int rc = reput(x, e, 0);
    if (rc) return rc;
    res_int(x->kv, 1);
    return 0;
}

static int op_rename(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    int nx = (o->flags & KV_TXN_F_NX) != 0;
    const struct kv_entry *src = live_find(kv, o->key, o->key_len, x->now);
    if (!src) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_NO_KEY);
        return 0;
    }
    int same = o->key_len == o->val_len && memcmp(o->key, o->val, o->key_len) == 0;
    if (same || (nx && live_find(kv, o->val, o->val_len, x->now))) {
        if (nx)
            res_int(kv, 0);
        else
            res_kind(kv, KV_TXN_R_OK, 0);
        return 0;
    }
    size_t vl = src->value_len;
    uint64_t ttl = ttl_left(src, x->now);
    uint8_t type = entry_type(src);
    int rc = scratch_reserve(kv, vl + 1);
    if (rc) return rc;
    memcpy(kv->txn.scratch, src->data + src->key_len, vl);
    del_key(kv, x->index, x->now, o->key, o->key_len);
    rc = put_value(kv, x->index, x->now, o->val, o->val_len, kv->txn.scratch, vl, ttl, type);
    if (rc) return rc;
    if (nx)
        res_int(kv, 1);
    else
        res_kind(kv, KV_TXN_R_OK, 0);
    return 0;
}

/* ---------- hashes (kv/hashval.h) ---------- */

/* Sets field = value in the list b[0..*len) (a count header, or *len 0 for
 * none yet); b has room for the result. Returns 1 if the field was added,
 * 0 if its value was replaced (in place: the order stays). */
static int hv_set(uint8_t *b, size_t *len, const uint8_t *f, uint32_t fl, const uint8_t *v,
                  uint32_t vl)
{
    struct kv_hval_field old;
    if (*len > 0 && kv_hval_find(b, *len, f, fl, &old)) {
        size_t off = (size_t)(old.value - b), tail = off + old.value_len;
        memmove(b + off + vl, b + tail, *len - tail);
        if (vl) memcpy(b + off, v, vl);
        put_u32(b + off - 4, vl);
        *len = *len - old.value_len + vl;
        return 0;
    }
    if (*len == 0) {
        kv_hval_put_count(b, 0);
        *len = KV_HVAL_HEADER_BYTES;
    }
    *len += kv_hval_put_field(b + *len, f, fl, v, vl);
    kv_hval_put_count(b, kv_hval_count(b, *len) + 1);
    return 1;
}

/* Copies e's list (NULL: none) into scratch with room for `more` bytes;
 * sets *len. 0 or ST_ENOMEM. */
static int hv_load(struct kv *kv, const struct kv_entry *e, size_t more, size_t *len)
{
    size_t old = e ? e->value_len : 0;
    int rc = scratch_reserve(kv, old + more + KV_HVAL_HEADER_BYTES);
    if (rc) return rc;
    if (old) memcpy(kv->txn.scratch, e->data + e->key_len, old);
    *len = old;
    return 0;
}

/* Stores scratch[0..len) as the hash of o->key (e: the live entry or
 * NULL, whose TTL stays), or HASH_TOO_BIG. Returns 0 or ST_ENOMEM; *stored
 * says whether it was. */
static int hv_store(struct txn_ctx *x, const struct kv_txn_item *o, const struct kv_entry *e,
                    size_t len, int *stored)
{
    *stored = 0;
    if (len > x->value_bytes_max) {
        res_kind(x->kv, KV_TXN_R_ERR, KV_TXN_E_HASH_TOO_BIG);
        return 0;
    }
    *stored = 1;
    return put_value(x->kv, x->index, x->now, o->key, o->key_len, x->kv->txn.scratch, len,
                     e ? ttl_left(e, x->now) : 0, KV_TYPE_HASH);
}

/* HSET, HSETNX, HINCRBY, HINCRBYFLOAT: read, change a copy, store. */
static int op_hset(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
    if (wrong_type(kv, e, KV_TYPE_HASH, 1)) return 0;
    const uint8_t *hv = e ? e->data + e->key_len : NULL;
    size_t hl = e ? e->value_len : 0, len = 0;
    struct kv_hval_field f, cur;
    size_t pos = 0;
    int stored = 0, rc;
    if (o->kind == KV_TXN_HSET) {
        rc = hv_load(kv, e, o->val_len, &len);
        if (rc) return rc;
        int64_t added = 0;
        while (kv_hval_next(o->val, o->val_len, &pos, &f))
            added += hv_set(kv->txn.scratch, &len, f.field, f.field_len, f.value, f.value_len);
        rc = hv_store(x, o, e, len, &stored);
        if (rc == 0 && stored) res_int(kv, added);
        return rc;
    }
    if (o->kind == KV_TXN_HSETNX) {
        kv_hval_next(o->val, o->val_len, &pos, &f);
        if (e && kv_hval_find(hv, hl, f.field, f.field_len, &cur)) {
            res_int(kv, 0);
            return 0;
        }
        rc = hv_load(kv, e, o->val_len, &len);
        if (rc) return rc;
        hv_set(kv->txn.scratch, &len, f.field, f.field_len, f.value, f.value_len);
        rc = hv_store(x, o, e, len, &stored);
        if (rc == 0 && stored) res_int(kv, 1);
        return rc;
    }
    char buf[TXN_LD_CHARS_MAX];
    size_t n;
    if (o->kind == KV_TXN_HINCRBY) {
        f.field = o->val;
        f.field_len = o->val_len;
        long long v = 0;
        if (e && kv_hval_find(hv, hl, f.field, f.field_len, &cur) &&
            !st_parse_ll(cur.value, cur.value_len, &v)) {
            res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_HASH_NOT_INTEGER);
            return 0;
        }
        long long inc = o->num;
        if ((inc < 0 && v < 0 && inc < LLONG_MIN - v) ||
            (inc > 0 && v > 0 && inc > LLONG_MAX - v)) {
            res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_OVERFLOW);
            return 0;
        }
        v += inc;
        n = (size_t)snprintf(buf, sizeof buf, "%lld", v);
        rc = hv_load(kv, e, kv_hval_field_bytes(f.field_len, n), &len);
        if (rc) return rc;
        hv_set(kv->txn.scratch, &len, f.field, f.field_len, (const uint8_t *)buf, (uint32_t)n);
        rc = hv_store(x, o, e, len, &stored);
        if (rc == 0 && stored) res_int(kv, v);
        return rc;
    }
    /* HINCRBYFLOAT: the list holds the field and the increment text. */
    kv_hval_next(o->val, o->val_len, &pos, &f);
    long double v = 0, inc = 0;
    if (!parse_ld(f.value, f.value_len, &inc)) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_NOT_FLOAT);
        return 0;
    }
    if (isinf(inc)) { /* Redis 7 checks the increment first */
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_INCR_NAN);
        return 0;
    }
    if (e && kv_hval_find(hv, hl, f.field, f.field_len, &cur) &&
        !parse_ld(cur.value, cur.value_len, &v)) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_HASH_NOT_FLOAT);
        return 0;
    }
    v += inc;
    n = isnan(v) || isinf(v) ? 0 : format_ld(buf, sizeof buf, v);
    if (n == 0) {
        res_kind(kv, KV_TXN_R_ERR, KV_TXN_E_NAN);
        return 0;
    }
    rc = hv_load(kv, e, kv_hval_field_bytes(f.field_len, n), &len);
    if (rc) return rc;
    hv_set(kv->txn.scratch, &len, f.field, f.field_len, (const uint8_t *)buf, (uint32_t)n);
    rc = hv_store(x, o, e, len, &stored);
    if (rc == 0 && stored) res_bulk(kv, (const uint8_t *)buf, n);
    return rc;
}

/* HDEL: the fields listed go; a hash left empty is deleted. */
static int op_hdel(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
    if (wrong_type(kv, e, KV_TYPE_HASH, 1)) return 0;
    if (!e) {
        res_int(kv, 0);
        return 0;
    }
    size_t len = 0;
    int rc = hv_load(kv, e, 0, &len);
    if (rc) return rc;
    uint8_t *b = kv->txn.scratch;
    int64_t removed = 0;
    size_t pos = 0;
    struct kv_hval_field f, cur;
    while (kv_hval_next(o->val, o->val_len, &pos, &f)) {
        if (!kv_hval_find(b, len, f.field, f.field_len, &cur)) continue;
        size_t off = (size_t)(cur.field - b) - 4;
        size_t end = (size_t)(cur.value - b) + cur.value_len;
        memmove(b + off, b + end, len - end);
        len -= end - off;
        kv_hval_put_count(b, kv_hval_count(b, len) - 1);
        removed++;
    }
    if (removed == 0) {
        res_int(kv, 0);
        return 0;
    }
    if (kv_hval_count(b, len) == 0) {
        del_key(kv, x->index, x->now, o->key, o->key_len);
    } else {
        int stored = 0;
        rc = hv_store(x, o, e, len, &stored); /* smaller than before: always stored */
        if (rc) return rc;
    }
    res_int(kv, removed);
    return 0;
}

/* Deletes every key starting with the prefix (every key for an empty one),
 * in key order through the ordered index; counts the live ones. */
static void op_del_prefix(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    struct kv_state *st = &kv->st;
    int64_t n = 0;
    for (;;) {
        struct kv_index_iter it;
        kv_index_seek(&st->idx, &it, o->key, o->key_len);
        struct kv_entry *e = kv_index_iter_entry(&it);
        if (!e || e->key_len < o->key_len ||
            (o->key_len && memcmp(e->data, o->key, o->key_len) != 0))
            break;
        if (!entry_expired(e, x->now)) n++;
        struct kv_entry **link = NULL;
        int t = 0;
        struct kv_entry *found = kv_state_find(st, e->hash, e->data, e->key_len, &link, &t);
        ST_ASSERT(found == e);
        kv_state_remove(st, e, link, t);
    }
    kv_maybe_resize(kv, 1);
    res_int(kv, n);
}

static int op_apply(struct txn_ctx *x, const struct kv_txn_item *o)
{
    struct kv *kv = x->kv;
    kv->st.ev_op = (uint8_t)(o->kind | (o->kind == KV_TXN_PUT && (o->flags & KV_TXN_F_KEEPTTL)
                                            ? KV_EVENT_OP_KEEPTTL
                                            : 0u));
    switch (o->kind) {
    case KV_TXN_GET: {
        const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
        if (wrong_type(kv, e, KV_TYPE_STRING, 1)) return 0;
        if (e)
            res_bulk(kv, e->data + e->key_len, e->value_len);
        else
            res_kind(kv, KV_TXN_R_NIL, 0);
        return 0;
    }
    case KV_TXN_PUT:
        return op_put(x, o);
    case KV_TXN_DEL:
        if (wrong_type(kv, live_find(kv, o->key, o->key_len, x->now), KV_TYPE_STRING,
                       o->flags & KV_TXN_F_STRING))
            return 0;
        res_int(kv, del_key(kv, x->index, x->now, o->key, o->key_len));
        return 0;
    case KV_TXN_DEL_PREFIX:
        op_del_prefix(x, o);
        return 0;
    case KV_TXN_INCRBY:
        return op_incrby(x, o);
    case KV_TXN_INCRBYFLOAT:
        return op_incrbyfloat(x, o);
    case KV_TXN_APPEND:
        return op_splice(x, o, 1);
    case KV_TXN_SETRANGE:
        return op_splice(x, o, 0);
    case KV_TXN_EXPIRE:
        return op_expire(x, o);
    case KV_TXN_PERSIST:
        return op_persist(x, o);
    case KV_TXN_RENAME:
        return op_rename(x, o);
    case KV_TXN_EXPIRY: {
        const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
        res_int(kv, !e ? -2 : entry_expire(e) ? (int64_t)entry_expire(e) : -1);
        return 0;
    }
    case KV_TXN_HSET:
    case KV_TXN_HSETNX:
    case KV_TXN_HINCRBY:
    case KV_TXN_HINCRBYFLOAT:
        return op_hset(x, o);
    case KV_TXN_HDEL:
        return op_hdel(x, o);
    case KV_TXN_HGET:
    case KV_TXN_HREAD: {
        const struct kv_entry *e = live_find(kv, o->key, o->key_len, x->now);
        if (wrong_type(kv, e, KV_TYPE_HASH, 1)) return 0;
        struct kv_hval_field f = {0};
        bool found =
            e && (o->kind == KV_TXN_HREAD ||
                  kv_hval_find(e->data + e->key_len, e->value_len, o->val, o->val_len, &f));
        if (!found)
            res_kind(kv, KV_TXN_R_NIL, 0);
        else if (o->kind == KV_TXN_HREAD)
            res_bulk(kv, e->data + e->key_len, e->value_len);
        else
            res_bulk(kv, f.value, f.value_len);
        return 0;
    }
    }
    ST_UNREACHABLE();
    return ST_EPROTO;
}

int kv_apply_txn(struct kv *kv, uint64_t index, const struct kv_command *c, struct kv_result *r)
{
    struct kv_txn_buf *tb = &kv->txn;
    struct txn_ctx x = {kv, index, c->timestamp_ms, c->txn_value_bytes_max};
    size_t pos = 0;
    struct kv_txn_item it;
    int ok = 1;
    for (uint32_t i = 0; i < c->txn_guards; i++) {
        int more = kv_txn_next(c, &pos, &it);
        ST_ASSERT(more);
        if (ok && !guard_holds(kv, x.now, &it)) ok = 0;
    }
    uint32_t n = ok ? c->txn_success : c->txn_failure;
    if (!ok)
        for (uint32_t i = 0; i < c->txn_success; i++) {
            int more = kv_txn_next(c, &pos, &it);
            ST_ASSERT(more);
        }
    /* Everything that can fail before the first op changes anything. */
    if (n > tb->res_cap) {
        struct kv_txn_res *res = kv_realloc(&kv->cfg, tb->res, (size_t)n * sizeof *res);
        if (!res) return ST_ENOMEM;
        tb->res = res;
        tb->res_cap = n;
    }
    tb->res_n = 0;
    tb->bytes_len = 0;
    for (uint32_t i = 0; i < n; i++) {
        int more = kv_txn_next(c, &pos, &it);
        ST_ASSERT(more);
        int rc = op_apply(&x, &it);
        if (rc) return rc;
        kv_state_rehash_step(&kv->st, kv->cfg.rehash_buckets_per_op);
    }
    ST_ASSERT(tb->res_n == n);
    for (uint32_t i = 0; i < n; i++) {
        struct kv_txn_res *res = &tb->res[i];
        if (res->kind == KV_TXN_R_BULK) {
            res->p = tb->bytes + res->num;
            res->num = 0;
        }
    }
    r->status = KV_STATUS_OK;
    r->version = index;
    r->txn_succeeded = ok;
    r->txn_n = n;
    r->txn_res = tb->res;
    return 0;
}
