/* kv hashes (issue 18): the field list layout (kv/hashval.h), the hash
 * TXN ops and their format version 6, WRONGTYPE both ways, TTLs on hash
 * keys, the type through EXPIRE/RENAME/PERSIST, events, and the version 4
 * snapshot (a type byte per record) with its round trip; a state without
 * hashes still writes version 2 or 3. */
#include "test.h"

#include <stdio.h>

#include "kv/hashval.h"
#include "kv/kv_session.h"
#include "kv/kv_auth.h"
#include "kvtest.h"
#include "stcache/errors.h"

#define VMAX 1024u

static struct kv *new_kv(void)
{
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return NULL;
    return kv;
}

/* A field list of n fields from "f1", "v1", "f2", "v2", ... (v NULL:
 * names only, HDEL's list) into buf; returns its length. */
static uint32_t list(uint8_t *buf, int n, const char *const *fv, int names_only)
{
    kv_hval_put_count(buf, (uint32_t)n);
    size_t len = KV_HVAL_HEADER_BYTES;
    for (int i = 0; i < n; i++) {
        const char *f = fv[names_only ? i : 2 * i];
        const char *v = names_only ? "" : fv[2 * i + 1];
        len += kv_hval_put_field(buf + len, (const uint8_t *)f, strlen(f), (const uint8_t *)v,
                                 strlen(v));
    }
    return (uint32_t)len;
}

static struct kv_txn_item op(uint8_t kind, uint8_t flags, const char *key, const uint8_t *val,
                             uint32_t val_len, int64_t num)
{
    struct kv_txn_item it = {.kind = kind,
                             .flags = flags,
                             .key = (const uint8_t *)key,
                             .key_len = (uint32_t)strlen(key),
                             .val = val,
                             .val_len = val_len,
                             .num = num};
    return it;
}

static struct kv_txn_item ops(uint8_t kind, const char *key, const char *val, int64_t num)
{
    return op(kind, 0, key, (const uint8_t *)val, val ? (uint32_t)strlen(val) : 0, num);
}

static struct kv_txn_res one(struct kv *kv, uint64_t index, uint64_t ts, struct kv_txn_item o)
{
    struct kv_command c = {.type = KV_CMD_TXN,
                           .req = {7, index},
                           .timestamp_ms = ts,
                           .txn_success = 1,
                           .txn_value_bytes_max = VMAX,
                           .txn_items = &o};
    struct kv_result r;
    struct kv_txn_res bad = {.kind = 255};
    if (kvt_apply_cmd(kv, index, &c, &r) != 0 || r.txn_n != 1) return bad;
    return r.txn_res[0];
}

static int is_int(struct kv_txn_res r, int64_t v)
{
    return r.kind == KV_TXN_R_INT && r.num == v;
}

static int is_err(struct kv_txn_res r, uint8_t err)
{
    return r.kind == KV_TXN_R_ERR && r.err == err;
}

static int bulk_is(struct kv_txn_res r, const char *s)
{
    return r.kind == KV_TXN_R_BULK && r.len == strlen(s) && memcmp(r.p, s, r.len) == 0;
}

static struct kv_txn_res hset(struct kv *kv, uint64_t index, const char *key, int n,
                              const char *const *fv)
{
    uint8_t buf[2048];
    uint32_t len = list(buf, n, fv, 0);
    return one(kv, index, 1000, op(KV_TXN_HSET, 0, key, buf, len, 0));
}

/* "f=v,f=v" of key's hash, in its order. */
static const char *dump(struct kv *kv, const char *key, char *out, size_t cap)
{
    struct kv_view v;
    out[0] = '\0';
    if (kv_get(kv, key, strlen(key), 1000, &v) != 0) return "(none)";
    if (v.type != KV_TYPE_HASH) return "(string)";
    size_t pos = 0, o = 0;
    struct kv_hval_field f;
    while (kv_hval_next(v.value, v.value_len, &pos, &f))
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s=%.*s", o ? "," : "", (int)f.field_len,
                              (const char *)f.field, (int)f.value_len, (const char *)f.value);
    return out;
}

TEST(hash_ops_need_format_version_6_and_round_trip)
{
    uint8_t buf[256], enc[512];
    const char *fv[] = {"a", "1", "b", "2"};
    uint32_t len = list(buf, 2, fv, 0);
    struct kv_txn_item it[2] = {op(KV_TXN_HSET, 0, "h", buf, len, 0),
                                ops(KV_TXN_GET, "s", NULL, 0)};
    struct kv_command c = {.type = KV_CMD_TXN,
                           .req = {1, 1},
                           .timestamp_ms = 5,
                           .txn_success = 2,
                           .txn_value_bytes_max = VMAX,
                           .txn_items = it};
    size_t n = 0;
    ASSERT_EQ(kv_command_encode(&c, enc, sizeof enc, &n), 0);
    ASSERT_EQ(enc[0], KV_COMMAND_VERSION_HASH);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(enc, n, NULL, &d), 0);
    size_t pos = 0;
    struct kv_txn_item x;
    ASSERT_TRUE(kv_txn_next(&d, &pos, &x));
    ASSERT_EQ(x.kind, KV_TXN_HSET);
    ASSERT_EQ(x.val_len, len);
    ASSERT_EQ(memcmp(x.val, buf, len), 0);
    /* The same bytes labelled version 4 (TXN before hashes): refused. */
    enc[0] = KV_COMMAND_VERSION_TXN;
    ASSERT_EQ(kv_command_decode(enc, n, NULL, &d), ST_EPROTO);
    /* A TXN without hash ops stays version 4, and F_STRING needs 6. */
    it[0] = ops(KV_TXN_GET, "h", NULL, 0);
    ASSERT_EQ(kv_command_encode(&c, enc, sizeof enc, &n), 0);
    ASSERT_EQ(enc[0], KV_COMMAND_VERSION_TXN);
    it[0] = op(KV_TXN_DEL, KV_TXN_F_STRING, "h", NULL, 0, 0);
    ASSERT_EQ(kv_command_encode(&c, enc, sizeof enc, &n), 0);
    ASSERT_EQ(enc[0], KV_COMMAND_VERSION_HASH);
    /* Malformed lists are refused by the encoder and the decoder. */
    it[0] = op(KV_TXN_HSET, 0, "h", buf, len - 1, 0);
    ASSERT_EQ(kv_command_encode(&c, enc, sizeof enc, &n), ST_EINVAL);
    uint8_t empty[4] = {0};
    it[0] = op(KV_TXN_HSET, 0, "h", empty, 4, 0); /* count 0 */
    ASSERT_EQ(kv_command_encode(&c, enc, sizeof enc, &n), ST_EINVAL);
    it[0] = op(KV_TXN_HSETNX, 0, "h", buf, len, 0); /* two pairs */
    ASSERT_EQ(kv_command_encode(&c, enc, sizeof enc, &n), ST_EINVAL);
    it[0] = op(KV_TXN_HDEL, 0, "h", buf, len, 0); /* values in a name list */
    ASSERT_EQ(kv_command_encode(&c, enc, sizeof enc, &n), ST_EINVAL);
}

TEST(hset_hdel_keep_insertion_order_and_count_like_redis)
{
    struct kv *kv = new_kv();
    char out[256];
    const char *a[] = {"a", "1", "b", "2", "a", "3"}; /* a repeated: counted once, last wins */
    ASSERT_TRUE(is_int(hset(kv, 1, "h", 3, a), 2));
    ASSERT_EQ(strcmp(dump(kv, "h", out, sizeof out), "a=3,b=2"), 0);
    const char *b[] = {"c", "x", "a", "longer value"};
    ASSERT_TRUE(is_int(hset(kv, 2, "h", 2, b), 1));
    ASSERT_EQ(strcmp(dump(kv, "h", out, sizeof out), "a=longer value,b=2,c=x"), 0);
    uint8_t buf[128];
    const char *nx[] = {"b", "9"};
    uint32_t l = list(buf, 1, nx, 0);
    ASSERT_TRUE(is_int(one(kv, 3, 1000, op(KV_TXN_HSETNX, 0, "h", buf, l, 0)), 0));
    const char *nx2[] = {"d", ""};
    l = list(buf, 1, nx2, 0);
    ASSERT_TRUE(is_int(one(kv, 4, 1000, op(KV_TXN_HSETNX, 0, "h", buf, l, 0)), 1));
    ASSERT_EQ(strcmp(dump(kv, "h", out, sizeof out), "a=longer value,b=2,c=x,d="), 0);
    ASSERT_TRUE(bulk_is(one(kv, 5, 1000, ops(KV_TXN_HGET, "h", "c", 0)), "x"));
    ASSERT_EQ(one(kv, 6, 1000, ops(KV_TXN_HGET, "h", "zz", 0)).kind, KV_TXN_R_NIL);
    ASSERT_EQ(one(kv, 7, 1000, ops(KV_TXN_HGET, "none", "a", 0)).kind, KV_TXN_R_NIL);
    const char *d[] = {"b", "zz", "b", "a"};
    l = list(buf, 4, d, 1);
    ASSERT_TRUE(is_int(one(kv, 8, 1000, op(KV_TXN_HDEL, 0, "h", buf, l, 0)), 2));
    ASSERT_EQ(strcmp(dump(kv, "h", out, sizeof out), "c=x,d="), 0);
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "h", 1, 1000, &v), 0);
    ASSERT_EQ(v.version, 8);
    /* Nothing removed: nothing written (the version stays). */
    const char *d2[] = {"zz"};
    l = list(buf, 1, d2, 1);
    ASSERT_TRUE(is_int(one(kv, 9, 1000, op(KV_TXN_HDEL, 0, "h", buf, l, 0)), 0));
    ASSERT_EQ(kv_get(kv, "h", 1, 1000, &v), 0);
    ASSERT_EQ(v.version, 8);
    /* The last field gone: the key is gone. */
    const char *d3[] = {"c", "d"};
    l = list(buf, 2, d3, 1);
    ASSERT_TRUE(is_int(one(kv, 10, 1000, op(KV_TXN_HDEL, 0, "h", buf, l, 0)), 2));
    ASSERT_EQ(kv_get(kv, "h", 1, 1000, &v), ST_ENOENT);
    ASSERT_TRUE(is_int(one(kv, 11, 1000, op(KV_TXN_HDEL, 0, "h", buf, l, 0)), 0));
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(hincrby_and_hincrbyfloat_parse_format_and_refuse_like_redis)
{
    struct kv *kv = new_kv();
    ASSERT_TRUE(is_int(one(kv, 1, 1000, ops(KV_TXN_HINCRBY, "h", "n", 5)), 5));
    ASSERT_TRUE(is_int(one(kv, 2, 1000, ops(KV_TXN_HINCRBY, "h", "n", -7)), -2));
    const char *s[] = {"t", "abc", "max", "9223372036854775807", "f", "10.5"};
    ASSERT_TRUE(is_int(hset(kv, 3, "h", 3, s), 3));
    ASSERT_TRUE(
        is_err(one(kv, 4, 1000, ops(KV_TXN_HINCRBY, "h", "t", 1)), KV_TXN_E_HASH_NOT_INTEGER));
    ASSERT_TRUE(is_err(one(kv, 5, 1000, ops(KV_TXN_HINCRBY, "h", "max", 1)), KV_TXN_E_OVERFLOW));
    uint8_t buf[128];
    const char *f1[] = {"f", "0.1"};
    uint32_t l = list(buf, 1, f1, 0);
    ASSERT_TRUE(bulk_is(one(kv, 6, 1000, op(KV_TXN_HINCRBYFLOAT, 0, "h", buf, l, 0)), "10.6"));
    const char *f2[] = {"new", "5.0e3"};
    l = list(buf, 1, f2, 0);
    ASSERT_TRUE(bulk_is(one(kv, 7, 1000, op(KV_TXN_HINCRBYFLOAT, 0, "h", buf, l, 0)), "5000"));
    const char *f3[] = {"t", "1"};
    l = list(buf, 1, f3, 0);
    ASSERT_TRUE(is_err(one(kv, 8, 1000, op(KV_TXN_HINCRBYFLOAT, 0, "h", buf, l, 0)),
                       KV_TXN_E_HASH_NOT_FLOAT));
    const char *f4[] = {"f", "abc"};
    l = list(buf, 1, f4, 0);
    ASSERT_TRUE(
        is_err(one(kv, 9, 1000, op(KV_TXN_HINCRBYFLOAT, 0, "h", buf, l, 0)), KV_TXN_E_NOT_FLOAT));
    const char *f5[] = {"f", "1e308"};
    l = list(buf, 1, f5, 0);
    struct kv_txn_res big = one(kv, 10, 1000, op(KV_TXN_HINCRBYFLOAT, 0, "h", buf, l, 0));
    ASSERT_EQ(big.kind, KV_TXN_R_BULK); /* %.17Lf: 309 digits, no exponent */
    ASSERT_TRUE(big.len >= 300 && memchr(big.p, 'e', big.len) == NULL);
    const char *f6[] = {"f", "inf"};
    l = list(buf, 1, f6, 0);
    ASSERT_TRUE(
        is_err(one(kv, 11, 1000, op(KV_TXN_HINCRBYFLOAT, 0, "h", buf, l, 0)), KV_TXN_E_INCR_NAN));
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(wrong_type_both_ways_and_set_replaces_a_hash)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    const char *fv[] = {"a", "1"};
    ASSERT_TRUE(is_int(hset(kv, 1, "h", 1, fv), 1));
    ASSERT_EQ(kvt_put(kv, 2, 1000, "s", "str", 0, KV_COND_NONE, 0, &r), 0);
    /* string ops on the hash */
    ASSERT_TRUE(is_err(one(kv, 3, 1000, ops(KV_TXN_GET, "h", NULL, 0)), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(is_err(one(kv, 4, 1000, ops(KV_TXN_INCRBY, "h", NULL, 1)), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(is_err(one(kv, 5, 1000, ops(KV_TXN_INCRBYFLOAT, "h", "1", 0)), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(is_err(one(kv, 6, 1000, ops(KV_TXN_APPEND, "h", "x", 0)), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(is_err(one(kv, 7, 1000, ops(KV_TXN_SETRANGE, "h", "x", 1)), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(
        is_err(one(kv, 8, 1000, op(KV_TXN_PUT, KV_TXN_F_STRING, "h", (const uint8_t *)"v", 1, 0)),
               KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(is_err(one(kv, 9, 1000, op(KV_TXN_DEL, KV_TXN_F_STRING, "h", NULL, 0, 0)),
                       KV_TXN_E_WRONGTYPE));
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "h", 1, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_HASH);
    ASSERT_EQ(v.version, 1); /* none of them changed it */
    /* hash ops on the string */
    ASSERT_TRUE(is_err(hset(kv, 10, "s", 1, fv), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(is_err(one(kv, 11, 1000, ops(KV_TXN_HGET, "s", "a", 0)), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(is_err(one(kv, 12, 1000, ops(KV_TXN_HREAD, "s", NULL, 0)), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(is_err(one(kv, 13, 1000, ops(KV_TXN_HINCRBY, "s", "a", 1)), KV_TXN_E_WRONGTYPE));
    ASSERT_TRUE(bulk_is(one(kv, 14, 1000, ops(KV_TXN_GET, "s", NULL, 0)), "str"));
    /* SET (a plain PUT) replaces the hash with a string, as Redis's SET */
    ASSERT_EQ(one(kv, 15, 1000, ops(KV_TXN_PUT, "h", "now a string", 0)).kind, KV_TXN_R_OK);
    ASSERT_EQ(kv_get(kv, "h", 1, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_STRING);
    ASSERT_TRUE(is_int(hset(kv, 16, "h2", 1, fv), 1));
    ASSERT_EQ(kvt_put(kv, 17, 1000, "h2", "x", 0, KV_COND_NONE, 0, &r), 0); /* HTTP PUT too */
    ASSERT_EQ(kv_get(kv, "h2", 2, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_STRING);
    /* DEL takes either type */
    ASSERT_TRUE(is_int(hset(kv, 18, "h3", 1, fv), 1));
    ASSERT_TRUE(is_int(one(kv, 19, 1000, ops(KV_TXN_DEL, "h3", NULL, 0)), 1));
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(ttl_applies_to_a_hash_and_expire_rename_persist_keep_its_type)
{
    struct kv *kv = new_kv();
    const char *fv[] = {"a", "1"};
    ASSERT_TRUE(is_int(hset(kv, 1, "h", 1, fv), 1));
    ASSERT_TRUE(is_int(one(kv, 2, 1000, ops(KV_TXN_EXPIRE, "h", NULL, 500)), 1));
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "h", 1, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_HASH);
    ASSERT_EQ(v.expire_at_ms, 1500);
    /* a hash write keeps the TTL */
    const char *fv2[] = {"b", "2"};
    ASSERT_TRUE(is_int(hset(kv, 3, "h", 1, fv2), 1));
    ASSERT_TRUE(is_int(one(kv, 4, 1000, ops(KV_TXN_HINCRBY, "h", "c", 1)), 1));
    ASSERT_EQ(kv_get(kv, "h", 1, 1000, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 1500);
    ASSERT_TRUE(is_int(one(kv, 5, 1000, ops(KV_TXN_EXPIRY, "h", NULL, 0)), 1500));
    /* RENAME moves value, type and TTL */
    struct kv_txn_item rn = ops(KV_TXN_RENAME, "h", "g", 0);
    ASSERT_EQ(one(kv, 6, 1000, rn).kind, KV_TXN_R_OK);
    ASSERT_EQ(kv_get(kv, "g", 1, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_HASH);
    ASSERT_EQ(v.expire_at_ms, 1500);
    ASSERT_TRUE(is_int(one(kv, 7, 1000, ops(KV_TXN_PERSIST, "g", NULL, 0)), 1));
    ASSERT_EQ(kv_get(kv, "g", 1, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_HASH);
    ASSERT_EQ(v.expire_at_ms, 0);
    /* expiry: the hash is absent at its time, then purged */
    ASSERT_TRUE(is_int(one(kv, 8, 1000, ops(KV_TXN_EXPIRE, "g", NULL, 100)), 1));
    ASSERT_EQ(kv_get(kv, "g", 1, 1100, &v), ST_ENOENT);
    ASSERT_EQ(one(kv, 9, 1100, ops(KV_TXN_HREAD, "g", NULL, 0)).kind, KV_TXN_R_NIL);
    struct kv_result r;
    ASSERT_EQ(kvt_purge(kv, 10, 1200, 0, &r), 0);
    ASSERT_EQ(r.purged, 1);
    /* an expired hash is replaced by a new one, not extended */
    ASSERT_TRUE(is_int(hset(kv, 11, "x", 1, fv), 1));
    ASSERT_TRUE(is_int(one(kv, 12, 1000, ops(KV_TXN_EXPIRE, "x", NULL, 10)), 1));
    ASSERT_TRUE(is_int(one(kv, 13, 2000, ops(KV_TXN_HINCRBY, "x", "a", 1)), 1));
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(a_hash_is_bounded_by_the_txn_value_limit_as_a_whole)
{
    struct kv *kv = new_kv();
    char big[600];
    memset(big, 'v', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *fv[] = {"a", big};
    ASSERT_TRUE(is_int(hset(kv, 1, "h", 1, fv), 1));
    const char *fv2[] = {"b", big}; /* two of them exceed VMAX (1024) */
    ASSERT_TRUE(is_err(hset(kv, 2, "h", 1, fv2), KV_TXN_E_HASH_TOO_BIG));
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "h", 1, 1000, &v), 0);
    ASSERT_EQ(kv_hval_count(v.value, v.value_len), 1);
    ASSERT_EQ(v.version, 1);
    kv_destroy(kv);
}

struct evs {
    int n;
    uint8_t type[8];
    size_t value_len[8];
};

static void ev_cb(void *ctx, const struct kv_event *ev)
{
    struct evs *e = ctx;
    if (e->n < 8 && ev->type == KV_EVENT_PUT) {
        e->type[e->n] = ev->value_type;
        e->value_len[e->n] = ev->value ? ev->value_len : 0;
        e->n++;
    }
}

TEST(a_hash_write_reports_a_put_event_of_type_hash_without_value)
{
    struct evs e = {0};
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.event_cb = ev_cb;
    cfg.event_ctx = &e;
    struct kv *kv = NULL;
    ASSERT_EQ(kv_create(&cfg, &kv), 0);
    const char *fv[] = {"a", "1"};
    ASSERT_TRUE(is_int(hset(kv, 1, "h", 1, fv), 1));
    ASSERT_EQ(one(kv, 2, 1000, ops(KV_TXN_PUT, "s", "abc", 0)).kind, KV_TXN_R_OK);
    ASSERT_EQ(e.n, 2);
    ASSERT_EQ(e.type[0], KV_TYPE_HASH);
    ASSERT_EQ(e.value_len[0], 0);
    ASSERT_EQ(e.type[1], KV_TYPE_STRING);
    ASSERT_EQ(e.value_len[1], 3);
    kv_destroy(kv);
}

static uint32_t snap_version(const struct kvt_sink *s)
{
    return (uint32_t)s->data[8] | (uint32_t)s->data[9] << 8;
}

TEST(snapshot_version_4_carries_hashes_and_restores_them)
{
    struct kv *a = new_kv(), *b = new_kv(), *c = new_kv();
    struct kv_result r;
    struct kvt_sink s;
    ASSERT_EQ(kvt_put(a, 1, 1000, "s", "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(snap_version(&s), 2); /* no hash: readable by older releases */
    free(s.data);
    for (int i = 0; i < 200; i++) {
        char k[16], f[16];
        snprintf(k, sizeof k, "h%d", i % 50);
        snprintf(f, sizeof f, "f%d", i);
        const char *fv[] = {f, k};
        ASSERT_TRUE(is_int(hset(a, 2 + (uint64_t)i, k, 1, fv), 1));
    }
    ASSERT_TRUE(is_int(one(a, 300, 1000, ops(KV_TXN_EXPIRE, "h7", NULL, 5000)), 1));
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(snap_version(&s), 4);
    ASSERT_EQ(kvt_restore(b, s.data, s.len, 7), 0);
    ASSERT_EQ(kv_check_invariants(b), 0);
    ASSERT_EQ(kv_digest(b), kv_digest(a));
    struct kv_view v;
    ASSERT_EQ(kv_get(b, "h7", 2, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_HASH);
    ASSERT_EQ(v.expire_at_ms, 6000);
    ASSERT_EQ(kv_hval_count(v.value, v.value_len), 4);
    ASSERT_EQ(kv_get(b, "s", 1, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_STRING);
    /* The type is in the digest: the same bytes as a string differ. */
    ASSERT_EQ(kv_get(a, "h1", 2, 1000, &v), 0);
    uint8_t copy[256];
    memcpy(copy, v.value, v.value_len);
    size_t cl = v.value_len;
    struct kv_command pc = {.type = KV_CMD_PUT,
                            .req = {1, 1},
                            .timestamp_ms = 1000,
                            .key = (const uint8_t *)"h1",
                            .key_len = 2,
                            .value = copy,
                            .value_len = (uint32_t)cl};
    uint64_t before = kv_digest(b);
    ASSERT_EQ(kvt_apply_cmd(b, 301, &pc, &r), 0);
    ASSERT_TRUE(kv_digest(b) != before);
    /* A record whose type byte is not a known type is corrupt. */
    free(s.data);
    ASSERT_EQ(kvt_snap(a, &s), 0);
    size_t hdr = 36 + 16 + 1 + 4; /* fixed, fixed2, meta "m", header CRC */
    ASSERT_EQ(s.data[hdr + 3], 0);
    s.data[hdr + 2] = 7;
    ASSERT_TRUE(kvt_restore(c, s.data, s.len, s.len) != 0);
    free(s.data);
    /* All hashes gone: version 2 again. */
    ASSERT_EQ(kvt_purge(a, 302, 100000, 0, &r), 0); /* h7 */
    for (int i = 0; i < 50; i++) {
        char k[16];
        snprintf(k, sizeof k, "h%d", i);
        ASSERT_EQ(one(a, 303 + (uint64_t)i, 100000, ops(KV_TXN_DEL, k, NULL, 0)).kind,
                  KV_TXN_R_INT);
    }
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(snap_version(&s), 2);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
    kv_destroy(c);
}

TEST(snapshot_version_4_with_users_and_hashes_restores_both)
{
    struct kv *a = new_kv(), *b = new_kv();
    struct kv_result r;
    struct kv_auth_user u;
    memset(&u, 0, sizeof u);
    u.name_len = 5;
    memcpy(u.name, "alice", 5);
    u.role = 1;
    u.kdf_iterations = 4096;
    uint8_t rec[KV_AUTH_RECORD_BYTES_MAX];
    size_t len = 0;
    ASSERT_EQ(kv_auth_record_encode(&u, rec, sizeof rec, &len), 0);
    struct kv_command c = {.type = KV_CMD_AUTH_USER_PUT,
                           .req = {3, 1},
                           .timestamp_ms = 1000,
                           .value = rec,
                           .value_len = (uint32_t)len};
    ASSERT_EQ(kvt_apply_cmd(a, 1, &c, &r), 0);
    const char *fv[] = {"a", "1"};
    ASSERT_TRUE(is_int(hset(a, 2, "h", 1, fv), 1));
    struct kvt_sink s;
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(snap_version(&s), 4);
    ASSERT_EQ(kvt_restore(b, s.data, s.len, 3), 0);
    ASSERT_EQ(kv_digest(b), kv_digest(a));
    ASSERT_EQ(kv_auth_count(b), 1);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(snapshot_version_5_carries_hashes_beside_sessions)
{
    /* Sessions make the stream version 5, which keeps version 4's type
     * byte per record: a hash must come back a hash beside them. */
    struct kv *a = new_kv(), *b = new_kv();
    struct kv_result r;
    const char *fv[] = {"f", "1"};
    ASSERT_TRUE(is_int(hset(a, 1, "h", 1, fv), 1));
    struct kv_command c = {.type = KV_CMD_SESSION_CREATE,
                           .req = {5, 2},
                           .timestamp_ms = 1000,
                           .ttl_ms = 5000,
                           .keys_max = 16,
                           .value = (const uint8_t *)"s",
                           .value_len = 1};
    ASSERT_EQ(kvt_apply_cmd(a, 2, &c, &r), 0);
    struct kvt_sink s;
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(snap_version(&s), 5);
    ASSERT_EQ(kvt_restore(b, s.data, s.len, 5), 0);
    ASSERT_EQ(kv_digest(b), kv_digest(a));
    ASSERT_EQ(kv_session_count(b), 1);
    struct kv_view v;
    ASSERT_EQ(kv_get(b, "h", 1, 1000, &v), 0);
    ASSERT_EQ(v.type, KV_TYPE_HASH);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
}

TEST(two_replicas_one_restored_midway_agree_on_hashes)
{
    struct kv *a = new_kv(), *b = new_kv();
    uint64_t seed = 99;
    for (uint64_t idx = 1; idx <= 2000; idx++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t q = seed >> 24;
        char key[8], f[8], val[16];
        snprintf(key, sizeof key, "k%d", (int)(q & 7));
        snprintf(f, sizeof f, "f%d", (int)((q >> 3) & 15));
        snprintf(val, sizeof val, "%d", (int)((q >> 7) & 255));
        uint8_t buf[128];
        struct kv_txn_item o;
        switch ((q >> 15) % 6) {
        case 0:
        case 1: {
            const char *fv[] = {f, val};
            uint32_t l = list(buf, 1, fv, 0);
            o = op(KV_TXN_HSET, 0, key, buf, l, 0);
            break;
        }
        case 2: {
            const char *n[] = {f};
            uint32_t l = list(buf, 1, n, 1);
            o = op(KV_TXN_HDEL, 0, key, buf, l, 0);
            break;
        }
        case 3:
            o = ops(KV_TXN_HINCRBY, key, f, (int64_t)(q & 31) - 15);
            break;
        case 4:
            o = ops(KV_TXN_EXPIRE, key, NULL, (int64_t)(q & 3) * 40);
            break;
        default:
            o = ops(KV_TXN_PUT, key, val, 0);
        }
        struct kv_txn_res ra = one(a, idx, 1000 + idx * 10, o);
        struct kv_txn_res rb = one(b, idx, 1000 + idx * 10, o);
        ASSERT_EQ(ra.kind, rb.kind);
        ASSERT_EQ(ra.num, rb.num);
        if (idx == 1000) { /* b restarts from a's snapshot */
            struct kvt_sink s;
            ASSERT_EQ(kvt_snap(a, &s), 0);
            ASSERT_EQ(kvt_restore(b, s.data, s.len, 100), 0);
            free(s.data);
        }
    }
    ASSERT_EQ(kv_digest(a), kv_digest(b));
    ASSERT_EQ(kv_check_invariants(a), 0);
    ASSERT_EQ(kv_check_invariants(b), 0);
    kv_destroy(a);
    kv_destroy(b);
}

TEST_MAIN()
