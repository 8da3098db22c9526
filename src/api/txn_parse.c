/* POST /txn body parser (txn_parse.h). */
#include "api/txn_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/json.h"

struct parser {
    const struct api_txn_limits *lim;
    struct api_txn *t;
    uint32_t n, cap;
    char *arena;
    size_t arena_used, arena_cap;
    char *err;
    size_t errcap;
};

static int fail(struct parser *ps, int rc, const char *what)
{
    snprintf(ps->err, ps->errcap, "%s", what);
    return rc;
}

/* A string member copied (unescaped) into the arena. Returns 0 (absent:
 * *present 0), or ST_EINVAL for a non-string or a NUL byte. */
static int get_str(struct parser *ps, struct st_jsonr_span obj, const char *name, const uint8_t **p,
                   uint32_t *len, int *present)
{
    struct st_jsonr_span v;
    *present = 0;
    if (!st_jsonr_get(obj, name, &v)) return 0;
    if (st_jsonr_type(v) != ST_JSONR_STRING)
        return fail(ps, ST_EINVAL, "a key or value is no string");
    for (size_t i = 0; i + 6 <= v.len; i++)
        if (memcmp(v.p + i, "\\u0000", 6) == 0)
            return fail(ps, ST_EINVAL, "NUL bytes in keys and values are not supported here");
    char *dst = ps->arena + ps->arena_used;
    size_t room = ps->arena_cap - ps->arena_used;
    /* The unescaped string is shorter than its quoted text: it fits. */
    if (room < v.len || st_jsonr_copy(v, dst, room) != 0)
        return fail(ps, ST_EINVAL, "a string has a bad escape");
    size_t l = strlen(dst);
    ps->arena_used += l + 1;
    *p = (const uint8_t *)dst;
    *len = (uint32_t)l;
    *present = 1;
    return 0;
}

static int get_bool(struct st_jsonr_span obj, const char *name, int *out)
{
    struct st_jsonr_span v;
    bool b = false;
    *out = 0;
    if (!st_jsonr_get(obj, name, &v)) return 0;
    if (st_jsonr_bool(v, &b) != 0) return ST_EINVAL;
    *out = b;
    return 0;
}

static struct kv_txn_item *item_new(struct parser *ps)
{
    if (ps->n == ps->cap) return NULL; /* counted before: never */
    struct kv_txn_item *it = &ps->t->items[ps->n++];
    memset(it, 0, sizeof *it);
    return it;
}

static int key_of(struct parser *ps, struct st_jsonr_span obj, const char *name,
                  struct kv_txn_item *it, int required)
{
    int present;
    int rc = get_str(ps, obj, name, &it->key, &it->key_len, &present);
    if (rc) return rc;
    if (!present && required) return fail(ps, ST_EINVAL, "an operation has no \"key\"");
    if (required && it->key_len == 0) return fail(ps, ST_EINVAL, "empty keys are not supported");
    if (it->key_len > ps->lim->key_bytes_max)
        return fail(ps, ST_ETOOBIG, "a key is longer than --max-key-bytes");
    return 0;
}

static int parse_guard(struct parser *ps, struct st_jsonr_span g)
{
    if (st_jsonr_type(g) != ST_JSONR_OBJECT) return fail(ps, ST_EINVAL, "a compare is no object");
    struct kv_txn_item *it = item_new(ps);
    int rc = key_of(ps, g, "key", it, 1);
    if (rc) return rc;
    char target[16] = "", op[4] = "=";
    struct st_jsonr_span v;
    if (!st_jsonr_get(g, "target", &v) || st_jsonr_string(v, target, sizeof target) != 0)
        return fail(ps, ST_EINVAL, "a compare needs \"target\": version, value, exists or ttl");
    if (st_jsonr_get(g, "op", &v) && st_jsonr_string(v, op, sizeof op) != 0)
        return fail(ps, ST_EINVAL, "a compare's \"op\" is =, !=, < or >");
    if (strcmp(op, "=") == 0)
        it->flags = KV_TXN_EQ;
    else if (strcmp(op, "!=") == 0)
        it->flags = KV_TXN_NE;
    else if (strcmp(op, "<") == 0)
        it->flags = KV_TXN_LT;
    else if (strcmp(op, ">") == 0)
        it->flags = KV_TXN_GT;
    else
        return fail(ps, ST_EINVAL, "a compare's \"op\" is =, !=, < or >");
    if (strcmp(target, "version") == 0) {
        uint64_t ver = 0;
        it->kind = KV_TXN_T_VERSION;
        if (!st_jsonr_get(g, "version", &v) || st_jsonr_uint(v, &ver) != 0 || ver > INT64_MAX)
            return fail(ps, ST_EINVAL, "a version compare needs \"version\": N (0 = absent)");
        it->num = (int64_t)ver;
    } else if (strcmp(target, "value") == 0) {
        int present;
        it->kind = KV_TXN_T_VALUE;
        rc = get_str(ps, g, "value", &it->val, &it->val_len, &present);
        if (rc) return rc;
        if (!present) return fail(ps, ST_EINVAL, "a value compare needs \"value\"");
        if (it->val_len > ps->lim->value_bytes_max)
            return fail(ps, ST_ETOOBIG, "a value is longer than --max-value-bytes");
    } else if (strcmp(target, "exists") == 0 || strcmp(target, "ttl") == 0) {
        bool b;
        it->kind = target[0] == 'e' ? KV_TXN_T_EXISTS : KV_TXN_T_HAS_TTL;
        if (!st_jsonr_get(g, target, &v) || st_jsonr_bool(v, &b) != 0)
            return fail(ps, ST_EINVAL, "an exists or ttl compare needs a boolean of that name");
        if (it->flags != KV_TXN_EQ && it->flags != KV_TXN_NE)
            return fail(ps, ST_EINVAL, "exists and ttl compare with = or != only");
        it->num = b;
    } else {
        return fail(ps, ST_EINVAL, "a compare's \"target\" is version, value, exists or ttl");
    }
    return 0;
}

static int parse_op(struct parser *ps, struct st_jsonr_span o)
{
    if (st_jsonr_type(o) != ST_JSONR_OBJECT)
        return fail(ps, ST_EINVAL, "an operation is no object");
    struct kv_txn_item *it = item_new(ps);
    struct st_jsonr_span a, v;
    int rc;
    if (st_jsonr_get(o, "put", &a) && st_jsonr_type(a) == ST_JSONR_OBJECT) {
        it->kind = KV_TXN_PUT;
        int present, keep = 0, absent = 0, exists = 0;
        if ((rc = key_of(ps, a, "key", it, 1))) return rc;
        if ((rc = get_str(ps, a, "value", &it->val, &it->val_len, &present))) return rc;
        if (!present) return fail(ps, ST_EINVAL, "a put needs \"value\"");
        if (it->val_len > ps->lim->value_bytes_max)
            return fail(ps, ST_ETOOBIG, "a value is longer than --max-value-bytes");
        if (get_bool(a, "keep_ttl", &keep) || get_bool(a, "if_absent", &absent) ||
            get_bool(a, "if_exists", &exists))
            return fail(ps, ST_EINVAL, "keep_ttl, if_absent and if_exists are booleans");
        uint64_t ttl = 0;
        if (st_jsonr_get(a, "ttl_ms", &v) && (st_jsonr_uint(v, &ttl) != 0 || ttl > INT64_MAX))
            return fail(ps, ST_EINVAL, "\"ttl_ms\" is a number of milliseconds");
        if (keep && ttl) return fail(ps, ST_EINVAL, "keep_ttl and ttl_ms exclude each other");
        if (absent && exists)
            return fail(ps, ST_EINVAL, "if_absent and if_exists exclude each other");
        it->num = (int64_t)ttl;
        it->flags = (uint8_t)((keep ? KV_TXN_F_KEEPTTL : 0) | (absent ? KV_TXN_F_NX : 0) |
                              (exists ? KV_TXN_F_XX : 0));
    } else if (st_jsonr_get(o, "get", &a) && st_jsonr_type(a) == ST_JSONR_OBJECT) {
        it->kind = KV_TXN_GET;
        if ((rc = key_of(ps, a, "key", it, 1))) return rc;
    } else if (st_jsonr_get(o, "delete", &a) && st_jsonr_type(a) == ST_JSONR_OBJECT) {
        it->kind = KV_TXN_DEL;
        if ((rc = key_of(ps, a, "key", it, 1))) return rc;
    } else if (st_jsonr_get(o, "delete_prefix", &a) && st_jsonr_type(a) == ST_JSONR_OBJECT) {
        it->kind = KV_TXN_DEL_PREFIX;
        if ((rc = key_of(ps, a, "prefix", it, 0))) return rc;
        if (!st_jsonr_get(a, "prefix", &v))
            return fail(ps, ST_EINVAL, "a delete_prefix needs \"prefix\" (\"\" = every key)");
    } else if (st_jsonr_get(o, "incr", &a) && st_jsonr_type(a) == ST_JSONR_OBJECT) {
        it->kind = KV_TXN_INCRBY;
        int64_t by = 1;
        if ((rc = key_of(ps, a, "key", it, 1))) return rc;
        if (st_jsonr_get(a, "by", &v) && st_jsonr_int(v, &by) != 0)
            return fail(ps, ST_EINVAL, "\"by\" is an integer");
        it->num = by;
    } else {
        return fail(ps, ST_EINVAL,
                    "an operation is one of put, get, delete, delete_prefix, incr (an object)");
    }
    return 0;
}

static uint32_t array_len(struct st_jsonr_span arr)
{
    size_t cur = 0;
    struct st_jsonr_span el;
    uint32_t n = 0;
    while (n < UINT32_MAX && st_jsonr_array_next(arr, &cur, &el))
        n++;
    return n;
}

int api_txn_parse(const char *body, size_t len, const struct api_txn_limits *lim,
                  struct api_txn *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof *out);
    struct parser ps = {.lim = lim, .t = out, .err = err, .errcap = errcap};
    if (errcap) err[0] = '\0';
    if (st_jsonr_validate(body, len) != 0) return fail(&ps, ST_EINVAL, "the body is no JSON");
    struct st_jsonr_span root = st_jsonr_root(body, len);
    if (st_jsonr_type(root) != ST_JSONR_OBJECT)
        return fail(&ps, ST_EINVAL, "the body is no object");
    static const char *const lists[3] = {"compare", "success", "failure"};
    struct st_jsonr_span arr[3];
    uint32_t count[3];
    uint64_t total = 0;
    for (int i = 0; i < 3; i++) {
        arr[i].p = NULL;
        arr[i].len = 0;
        count[i] = 0;
        if (!st_jsonr_get(root, lists[i], &arr[i])) continue;
        if (st_jsonr_type(arr[i]) != ST_JSONR_ARRAY)
            return fail(&ps, ST_EINVAL, "compare, success and failure are arrays");
        count[i] = array_len(arr[i]);
        total += count[i];
    }
    if (total > lim->items_max)
        return fail(&ps, ST_ETOOBIG, "more compares and operations than --max-txn-ops");
    out->items = malloc((total ? total : 1) * sizeof *out->items);
    out->arena = malloc(len + 1);
    if (!out->items || !out->arena) return fail(&ps, ST_ENOMEM, "out of memory");
    ps.cap = (uint32_t)total;
    ps.arena = out->arena;
    ps.arena_cap = len + 1;
    for (int i = 0; i < 3; i++) {
        size_t cur = 0;
        struct st_jsonr_span el;
        while (count[i] && st_jsonr_array_next(arr[i], &cur, &el)) {
            int rc = i == 0 ? parse_guard(&ps, el) : parse_op(&ps, el);
            if (rc) return rc;
        }
    }
    out->guards = count[0];
    out->success = count[1];
    out->failure = count[2];
    return 0;
}

void api_txn_free(struct api_txn *t)
{
    free(t->items);
    free(t->arena);
    memset(t, 0, sizeof *t);
}

const char *api_txn_op_name(uint8_t kind)
{
    switch (kind) {
    case KV_TXN_PUT:
        return "put";
    case KV_TXN_GET:
        return "get";
    case KV_TXN_DEL:
        return "delete";
    case KV_TXN_DEL_PREFIX:
        return "delete_prefix";
    case KV_TXN_INCRBY:
        return "incr";
    default:
        return "other";
    }
}
