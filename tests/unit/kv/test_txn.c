/* kv TXN (kv/txn.h): the codec (round trip, canonical form, malformed
 * input), every op with Redis's edge cases, guards choosing the branch,
 * and determinism (two replicas applying the same log are identical). */
#include "test.h"

#include <stdio.h>

#include "kvtest.h"

#define VMAX 1024u

static struct kv *new_kv(void)
{
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return NULL;
    return kv;
}

static struct kv_txn_item G(uint8_t target, uint8_t cmp, const char *key, const char *val,
                            int64_t num) {
    struct kv_txn_item it = {.kind = target,
                             .flags = cmp,
                             .key = (const uint8_t *)key,
                             .key_len = (uint32_t)strlen(key),
                             .val = (const uint8_t *)val,
                             .val_len = val ? (uint32_t)strlen(val) : 0,
                             .num = num};
    return it;
}

static struct kv_txn_item
O(uint8_t op, uint8_t flags, const char *key, const char *val, int64_t num) {
    return G(op, flags, key, val, num);
}

static struct kv_command
txn_cmd(uint64_t ts, const struct kv_txn_item *items, uint32_t guards, uint32_t success,
        uint32_t failure)
{
    struct kv_command c = {.type = KV_CMD_TXN,
                           .req = {7, 1},
                           .timestamp_ms = ts,
                           .txn_guards = guards,
                           .txn_success = success,
                           .txn_failure = failure,
                           .txn_value_bytes_max = VMAX,
                           .txn_items = items};
    return c;
}

static int txn(struct kv *kv, uint64_t index, uint64_t ts, const struct kv_txn_item *items,
               uint32_t guards, uint32_t success, uint32_t failure, struct kv_result *r)
{
    struct kv_command c = txn_cmd(ts, items, guards, success, failure);
    return kvt_apply_cmd(kv, index, &c, r);
}

/* One op, no guards. */
static struct kv_txn_res one(struct kv *kv, uint64_t index, uint64_t ts, struct kv_txn_item op)
{
    struct kv_result r;
    struct kv_txn_res bad = {.kind = 255};
    if (txn(kv, index, ts, &op, 0, 1, 0, &r) != 0 || r.txn_n != 1) return bad;
    return r.txn_res[0];
}

static int bulk_is(struct kv_txn_res res, const char *s)
{
    return res.kind == KV_TXN_R_BULK && res.len == strlen(s) && memcmp(res.p, s, res.len) == 0;
}

TEST(codec_round_trip_keeps_every_item_and_is_canonical)
{
    struct kv_txn_item items[] = {
        G(KV_TXN_T_VERSION, KV_TXN_EQ, "a", NULL, 5), G(KV_TXN_T_VALUE, KV_TXN_NE, "b", "xyz", 0),
        O(KV_TXN_PUT, KV_TXN_F_NX, "a", "v", 1000),   O(KV_TXN_RENAME, 0, "a", "b", 0),
        O(KV_TXN_DEL_PREFIX, 0, "", NULL, 0),
    };
    struct kv_command c = txn_cmd(99, items, 2, 2, 1);
    uint8_t buf[512];
    size_t len = 0;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    ASSERT_EQ(len, kv_command_encoded_len(&c));
    ASSERT_EQ(buf[0], KV_COMMAND_VERSION_TXN);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.type, KV_CMD_TXN);
    ASSERT_EQ(d.txn_guards, 2);
    ASSERT_EQ(d.txn_success, 2);
    ASSERT_EQ(d.txn_failure, 1);
    ASSERT_EQ(d.txn_value_bytes_max, VMAX);
    size_t pos = 0;
    struct kv_txn_item it;
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(kv_txn_next(&d, &pos, &it), 1);
        ASSERT_EQ(it.kind, items[i].kind);
        ASSERT_EQ(it.flags, items[i].flags);
        ASSERT_EQ(it.num, items[i].num);
        ASSERT_EQ(it.key_len, items[i].key_len);
        ASSERT_EQ(it.val_len, items[i].val_len);
        if (it.key_len) ASSERT_MEMEQ(it.key, items[i].key, it.key_len);
        if (it.val_len) ASSERT_MEMEQ(it.val, items[i].val, it.val_len);
    }
    ASSERT_EQ(kv_txn_next(&d, &pos, &it), 0);
    /* Every truncation and a trailing byte are malformed. */
    for (size_t l = 0; l < len; l++)
        ASSERT_NE(kv_command_decode(buf, l, NULL, &d), 0);
    buf[len] = 0;
    ASSERT_EQ(kv_command_decode(buf, len + 1, NULL, &d), ST_EPROTO);
    /* A TXN in an older format version is refused (one encoding). */
    buf[0] = KV_COMMAND_VERSION_IDEM;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
}

TEST(codec_refuses_malformed_items)
{
    uint8_t buf[256];
    size_t len = 0;
    struct kv_txn_item bad[] = {
        O(KV_TXN_PUT, KV_TXN_F_NX | KV_TXN_F_XX, "a", "v", 0), /* NX and XX */
        O(KV_TXN_GET, KV_TXN_F_NX, "a", NULL, 0),              /* a flag GET does not take */
        O(KV_TXN_GET, 0, "", NULL, 0),                         /* empty key */
        O(KV_TXN_RENAME, 0, "a", "", 0),                       /* no new name */
        O(KV_TXN_EXPIRE, KV_TXN_F_GT | KV_TXN_F_LT, "a", NULL, 1),
        O(KV_TXN_EXPIRE, KV_TXN_F_NX | KV_TXN_F_GT, "a", NULL, 1),
        O(KV_TXN_OP_MAX + 1, 0, "a", NULL, 0),
        O(KV_TXN_SETRANGE, 0, "a", "x", -1),
        O(KV_TXN_PUT, KV_TXN_F_KEEPTTL, "a", "v", 5),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct kv_command c = txn_cmd(1, &bad[i], 0, 1, 0);
        ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
        /* The same bytes built by hand are refused by decode. */
        struct kv_txn_item ok = O(KV_TXN_GET, 0, "a", NULL, 0);
        struct kv_command g = txn_cmd(1, &ok, 0, 1, 0);
        ASSERT_EQ(kv_command_encode(&g, buf, sizeof buf, &len), 0);
        struct kv_command d;
        ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    }
    struct kv_txn_item g = G(KV_TXN_T_EXISTS, KV_TXN_EQ, "a", NULL, 2); /* exists is 0 or 1 */
    struct kv_command c = txn_cmd(1, &g, 1, 0, 0);
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
    struct kv_txn_item get = O(KV_TXN_GET, 0, "a", NULL, 0);
    c = txn_cmd(1, &get, 0, 1, 0);
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    struct kv_command d;
    buf[KV_COMMAND_HEADER_BYTES + KV_TXN_FIXED_BYTES] = KV_TXN_OP_MAX + 1; /* unknown op */
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    buf[KV_COMMAND_HEADER_BYTES + KV_TXN_FIXED_BYTES + 2] = 1; /* reserved byte */
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    memset(buf + KV_COMMAND_HEADER_BYTES, 0, 4); /* value_bytes_max 0 */
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    /* A value_bytes_max above the hard bound, which no proposer writes: it
     * let one entry build values of any size (found by fuzz_kv_cmd: a
     * RENAME of a 512 MiB SETRANGE result), so decode refuses it. */
    uint32_t over = KV_VALUE_BYTES_HARD_MAX + 1;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    memcpy(buf + KV_COMMAND_HEADER_BYTES, &over, 4); /* little-endian host */
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    c.txn_value_bytes_max = over;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
}

TEST(guards_choose_the_branch_and_results_follow_it)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 1000, "a", "10", 0, KV_COND_NONE, 0, &r), 0);
    struct kv_txn_item items[] = {
        G(KV_TXN_T_VERSION, KV_TXN_EQ, "a", NULL, 1),
        G(KV_TXN_T_VALUE, KV_TXN_EQ, "a", "10", 0),
        G(KV_TXN_T_EXISTS, KV_TXN_EQ, "b", NULL, 0),
        G(KV_TXN_T_HAS_TTL, KV_TXN_EQ, "a", NULL, 0),
        O(KV_TXN_PUT, 0, "b", "x", 0),
        O(KV_TXN_GET, 0, "a", NULL, 0),
        O(KV_TXN_GET, 0, "nope", NULL, 0),
    };
    ASSERT_EQ(txn(kv, 2, 1000, items, 4, 2, 1, &r), 0);
    ASSERT_EQ(r.type, KV_CMD_TXN);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.version, 2);
    ASSERT_EQ(r.txn_succeeded, 1);
    ASSERT_EQ(r.txn_n, 2);
    ASSERT_EQ(r.txn_res[0].kind, KV_TXN_R_OK);
    ASSERT_TRUE(bulk_is(r.txn_res[1], "10"));
    ASSERT_TRUE(kvt_has(kv, "b", "x", 1000));
    /* Now a's version is still 1 but b exists: the failure branch. */
    ASSERT_EQ(txn(kv, 3, 1000, items, 4, 2, 1, &r), 0);
    ASSERT_EQ(r.txn_succeeded, 0);
    ASSERT_EQ(r.txn_n, 1);
    ASSERT_EQ(r.txn_res[0].kind, KV_TXN_R_NIL);
    /* Comparisons: version > 0, value < "2" (bytewise "10" < "2"). */
    struct kv_txn_item cmp[] = {
        G(KV_TXN_T_VERSION, KV_TXN_GT, "a", NULL, 0), G(KV_TXN_T_VALUE, KV_TXN_LT, "a", "2", 0),
        G(KV_TXN_T_VERSION, KV_TXN_NE, "zz", NULL, 1), /* absent: version 0 */
    };
    ASSERT_EQ(txn(kv, 4, 1000, cmp, 3, 0, 0, &r), 0);
    ASSERT_EQ(r.txn_succeeded, 1);
    struct kv_txn_item vabs = G(KV_TXN_T_VALUE, KV_TXN_NE, "zz", "x", 0);
    ASSERT_EQ(txn(kv, 5, 1000, &vabs, 1, 0, 0, &r), 0);
    ASSERT_EQ(r.txn_succeeded, 0); /* a value guard on an absent key never holds */
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(incrby_parses_like_redis_and_refuses_overflow)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    struct kv_txn_res x = one(kv, 1, 1000, O(KV_TXN_INCRBY, 0, "n", NULL, 5));
    ASSERT_EQ(x.kind, KV_TXN_R_INT);
    ASSERT_EQ(x.num, 5);
    ASSERT_TRUE(kvt_has(kv, "n", "5", 1000));
    x = one(kv, 2, 1000, O(KV_TXN_INCRBY, 0, "n", NULL, -7));
    ASSERT_EQ(x.num, -2);
    ASSERT_TRUE(kvt_has(kv, "n", "-2", 1000));
    const char *bad[] = {"", " 1", "1 ", "+1", "01", "1.0", "abc", "99999999999999999999", "-"};
    uint64_t idx = 3;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_EQ(kvt_put(kv, idx++, 1000, "s", bad[i], 0, KV_COND_NONE, 0, &r), 0);
        x = one(kv, idx++, 1000, O(KV_TXN_INCRBY, 0, "s", NULL, 1));
        ASSERT_EQ(x.kind, KV_TXN_R_ERR);
        ASSERT_EQ(x.err, KV_TXN_E_NOT_INTEGER);
        ASSERT_TRUE(kvt_has(kv, "s", bad[i], 1000)); /* unchanged */
    }
    ASSERT_EQ(kvt_put(kv, idx++, 1000, "m", "9223372036854775807", 0, KV_COND_NONE, 0, &r), 0);
    x = one(kv, idx++, 1000, O(KV_TXN_INCRBY, 0, "m", NULL, 1));
    ASSERT_EQ(x.kind, KV_TXN_R_ERR);
    ASSERT_EQ(x.err, KV_TXN_E_OVERFLOW);
    ASSERT_EQ(kvt_put(kv, idx++, 1000, "m", "-9223372036854775808", 0, KV_COND_NONE, 0, &r), 0);
    x = one(kv, idx++, 1000, O(KV_TXN_INCRBY, 0, "m", NULL, -1));
    ASSERT_EQ(x.err, KV_TXN_E_OVERFLOW);
    x = one(kv, idx++, 1000, O(KV_TXN_INCRBY, 0, "m", NULL, 0));
    ASSERT_EQ(x.kind, KV_TXN_R_INT);
    ASSERT_EQ(x.num, INT64_MIN);
    /* The TTL is kept. */
    ASSERT_EQ(kvt_put(kv, idx++, 1000, "t", "1", 5000, KV_COND_NONE, 0, &r), 0);
    one(kv, idx++, 2000, O(KV_TXN_INCRBY, 0, "t", NULL, 1));
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "t", 1, 2000, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 6000);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(incrbyfloat_formats_like_redis)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(kvt_put(kv, 1, 1000, "f", "10.50", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_TRUE(bulk_is(one(kv, 2, 1000, O(KV_TXN_INCRBYFLOAT, 0, "f", "0.1", 0)), "10.6"));
    ASSERT_TRUE(bulk_is(one(kv, 3, 1000, O(KV_TXN_INCRBYFLOAT, 0, "f", "-5", 0)), "5.6"));
    ASSERT_TRUE(bulk_is(one(kv, 4, 1000, O(KV_TXN_INCRBYFLOAT, 0, "g", "3.0e3", 0)), "3000"));
    ASSERT_TRUE(bulk_is(one(kv, 5, 1000, O(KV_TXN_INCRBYFLOAT, 0, "h", "-0.0", 0)), "0"));
    struct kv_txn_res x = one(kv, 6, 1000, O(KV_TXN_INCRBYFLOAT, 0, "f", "abc", 0));
    ASSERT_EQ(x.err, KV_TXN_E_NOT_FLOAT);
    x = one(kv, 7, 1000, O(KV_TXN_INCRBYFLOAT, 0, "f", "inf", 0));
    ASSERT_EQ(x.err, KV_TXN_E_NAN);
    x = one(kv, 8, 1000, O(KV_TXN_INCRBYFLOAT, 0, "f", " 1", 0));
    ASSERT_EQ(x.err, KV_TXN_E_NOT_FLOAT);
    ASSERT_TRUE(kvt_has(kv, "f", "5.6", 1000));
    kv_destroy(kv);
}

TEST(append_and_setrange_pad_bound_and_keep_ttl)
{
    struct kv *kv = new_kv();
    struct kv_txn_res x = one(kv, 1, 1000, O(KV_TXN_APPEND, 0, "a", "Hello", 0));
    ASSERT_EQ(x.num, 5);
    x = one(kv, 2, 1000, O(KV_TXN_APPEND, 0, "a", " World", 0));
    ASSERT_EQ(x.num, 11);
    ASSERT_TRUE(kvt_has(kv, "a", "Hello World", 1000));
    x = one(kv, 3, 1000, O(KV_TXN_SETRANGE, 0, "a", "Redis", 6));
    ASSERT_EQ(x.num, 11);
    ASSERT_TRUE(kvt_has(kv, "a", "Hello Redis", 1000));
    x = one(kv, 4, 1000, O(KV_TXN_SETRANGE, 0, "p", "x", 3));
    ASSERT_EQ(x.num, 4);
    struct kv_view v;
    ASSERT_EQ(kv_get(kv, "p", 1, 1000, &v), 0);
    ASSERT_EQ(v.value_len, 4);
    ASSERT_MEMEQ(v.value, "\0\0\0x", 4);
    x = one(kv, 5, 1000, O(KV_TXN_SETRANGE, 0, "q", "", 3)); /* empty: no key made */
    ASSERT_EQ(x.num, 0);
    ASSERT_EQ(kv_get(kv, "q", 1, 1000, &v), ST_ENOENT);
    x = one(kv, 6, 1000, O(KV_TXN_SETRANGE, 0, "q", "x", VMAX));
    ASSERT_EQ(x.kind, KV_TXN_R_ERR);
    ASSERT_EQ(x.err, KV_TXN_E_TOO_BIG);
    ASSERT_EQ(kv_get(kv, "q", 1, 1000, &v), ST_ENOENT);
    kv_destroy(kv);
}

TEST(put_options_nx_xx_keepttl_and_past_absolute_time)
{
    struct kv *kv = new_kv();
    struct kv_view v;
    ASSERT_EQ(one(kv, 1, 1000, O(KV_TXN_PUT, KV_TXN_F_XX, "k", "v", 0)).kind, KV_TXN_R_NIL);
    ASSERT_EQ(kv_get(kv, "k", 1, 1000, &v), ST_ENOENT);
    ASSERT_EQ(one(kv, 2, 1000, O(KV_TXN_PUT, KV_TXN_F_NX, "k", "v", 3000)).kind, KV_TXN_R_OK);
    ASSERT_EQ(one(kv, 3, 1000, O(KV_TXN_PUT, KV_TXN_F_NX, "k", "w", 0)).kind, KV_TXN_R_NIL);
    ASSERT_EQ(one(kv, 4, 2000, O(KV_TXN_PUT, KV_TXN_F_KEEPTTL | KV_TXN_F_XX, "k", "w", 0)).kind,
              KV_TXN_R_OK);
    ASSERT_EQ(kv_get(kv, "k", 1, 2000, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 4000);
    ASSERT_MEMEQ(v.value, "w", 1);
    ASSERT_EQ(one(kv, 5, 2000, O(KV_TXN_PUT, KV_TXN_F_ABS, "k", "z", 9000)).kind, KV_TXN_R_OK);
    ASSERT_EQ(kv_get(kv, "k", 1, 2000, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 9000);
    ASSERT_EQ(one(kv, 6, 2000, O(KV_TXN_PUT, KV_TXN_F_ABS, "k", "z", 1500)).kind, KV_TXN_R_OK);
    ASSERT_EQ(kv_get(kv, "k", 1, 2000, &v), ST_ENOENT); /* stored and expired at once */
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(expire_flags_follow_redis_7)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    struct kv_view v;
    ASSERT_EQ(kvt_put(kv, 1, 1000, "k", "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(one(kv, 2, 1000, O(KV_TXN_EXPIRE, KV_TXN_F_XX, "k", NULL, 100)).num, 0);
    ASSERT_EQ(one(kv, 3, 1000, O(KV_TXN_EXPIRE, KV_TXN_F_GT, "k", NULL, 100)).num, 0);
    ASSERT_EQ(one(kv, 4, 1000, O(KV_TXN_EXPIRE, KV_TXN_F_LT, "k", NULL, 100)).num, 1);
    ASSERT_EQ(kv_get(kv, "k", 1, 1000, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 1100);
    ASSERT_EQ(v.version, 4); /* an expiry change is a change (WATCH sees it) */
    ASSERT_EQ(one(kv, 5, 1000, O(KV_TXN_EXPIRE, KV_TXN_F_NX, "k", NULL, 500)).num, 0);
    ASSERT_EQ(one(kv, 6, 1000, O(KV_TXN_EXPIRE, KV_TXN_F_GT, "k", NULL, 50)).num, 0);
    ASSERT_EQ(one(kv, 7, 1000, O(KV_TXN_EXPIRE, KV_TXN_F_GT, "k", NULL, 500)).num, 1);
    ASSERT_EQ(one(kv, 8, 1000, O(KV_TXN_EXPIRE, KV_TXN_F_ABS | KV_TXN_F_XX, "k", NULL, 7000)).num,
              1);
    ASSERT_EQ(kv_get(kv, "k", 1, 1000, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 7000);
    ASSERT_EQ(one(kv, 9, 1000, O(KV_TXN_PERSIST, 0, "k", NULL, 0)).num, 1);
    ASSERT_EQ(one(kv, 10, 1000, O(KV_TXN_PERSIST, 0, "k", NULL, 0)).num, 0);
    ASSERT_EQ(kv_get(kv, "k", 1, 1000, &v), 0);
    ASSERT_EQ(v.expire_at_ms, 0);
    ASSERT_EQ(one(kv, 11, 1000, O(KV_TXN_EXPIRE, 0, "k", NULL, -1)).num, 1); /* deletes */
    ASSERT_EQ(kv_get(kv, "k", 1, 1000, &v), ST_ENOENT);
    ASSERT_EQ(one(kv, 12, 1000, O(KV_TXN_EXPIRE, 0, "k", NULL, 10)).num, 0);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(rename_moves_value_and_ttl)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    struct kv_view v;
    struct kv_txn_res x = one(kv, 1, 1000, O(KV_TXN_RENAME, 0, "a", "b", 0));
    ASSERT_EQ(x.kind, KV_TXN_R_ERR);
    ASSERT_EQ(x.err, KV_TXN_E_NO_KEY);
    ASSERT_EQ(kvt_put(kv, 2, 1000, "a", "1", 5000, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 3, 1000, "b", "2", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(one(kv, 4, 1000, O(KV_TXN_RENAME, KV_TXN_F_NX, "a", "b", 0)).num, 0);
    ASSERT_EQ(one(kv, 5, 1000, O(KV_TXN_RENAME, KV_TXN_F_NX, "a", "a", 0)).num, 0);
    ASSERT_EQ(one(kv, 6, 1000, O(KV_TXN_RENAME, 0, "a", "a", 0)).kind, KV_TXN_R_OK);
    ASSERT_EQ(one(kv, 7, 2000, O(KV_TXN_RENAME, 0, "a", "b", 0)).kind, KV_TXN_R_OK);
    ASSERT_EQ(kv_get(kv, "a", 1, 2000, &v), ST_ENOENT);
    ASSERT_EQ(kv_get(kv, "b", 1, 2000, &v), 0);
    ASSERT_MEMEQ(v.value, "1", 1);
    ASSERT_EQ(v.expire_at_ms, 6000);
    ASSERT_EQ(one(kv, 8, 2000, O(KV_TXN_RENAME, KV_TXN_F_NX, "b", "c", 0)).num, 1);
    ASSERT_TRUE(kvt_has(kv, "c", "1", 2000));
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(del_prefix_and_flush_use_the_ordered_index)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    const char *keys[] = {"a", "ab", "abc", "abd", "b", "ac"};
    for (uint64_t i = 0; i < 6; i++)
        ASSERT_EQ(kvt_put(kv, i + 1, 1000, keys[i], "v", 0, KV_COND_NONE, 0, &r), 0);
    ASSERT_EQ(kvt_put(kv, 7, 1000, "abz", "v", 10, KV_COND_NONE, 0, &r), 0); /* expires */
    struct kv_txn_res x = one(kv, 8, 2000, O(KV_TXN_DEL_PREFIX, 0, "ab", NULL, 0));
    ASSERT_EQ(x.num, 3); /* ab abc abd; the expired abz goes uncounted */
    struct kv_stats s;
    kv_stats(kv, &s);
    ASSERT_EQ(s.keys, 3);
    ASSERT_EQ(one(kv, 9, 2000, O(KV_TXN_DEL, 0, "a", NULL, 0)).num, 1);
    ASSERT_EQ(one(kv, 10, 2000, O(KV_TXN_DEL, 0, "a", NULL, 0)).num, 0);
    ASSERT_EQ(one(kv, 11, 2000, O(KV_TXN_DEL_PREFIX, 0, "", NULL, 0)).num, 2);
    kv_stats(kv, &s);
    ASSERT_EQ(s.keys, 0);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(ops_see_earlier_ops_and_errors_do_not_stop_the_rest)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    struct kv_txn_item ops[] = {
        O(KV_TXN_PUT, 0, "x", "abc", 0),   O(KV_TXN_INCRBY, 0, "x", NULL, 1),
        O(KV_TXN_GET, 0, "x", NULL, 0),    O(KV_TXN_PUT, 0, "y", "1", 0),
        O(KV_TXN_INCRBY, 0, "y", NULL, 9), O(KV_TXN_GET, 0, "y", NULL, 0),
    };
    ASSERT_EQ(txn(kv, 1, 1000, ops, 0, 6, 0, &r), 0);
    ASSERT_EQ(r.txn_n, 6);
    ASSERT_EQ(r.txn_res[1].kind, KV_TXN_R_ERR);
    ASSERT_TRUE(bulk_is(r.txn_res[2], "abc"));
    ASSERT_EQ(r.txn_res[4].num, 10);
    ASSERT_TRUE(bulk_is(r.txn_res[5], "10"));
    kv_destroy(kv);
}

/* Two replicas applying the same random TXN log end byte-identical. */
TEST(two_replicas_applying_random_txns_agree)
{
    struct kv *a = new_kv(), *b = new_kv();
    uint64_t seed = 12345;
    char keys[8][4], vals[8][8];
    for (int i = 0; i < 8; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        snprintf(vals[i], sizeof vals[i], "%d", i * 7);
    }
    for (uint64_t idx = 1; idx <= 3000; idx++) {
        struct kv_txn_item items[4];
        uint32_t n = 0;
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t rnd = seed >> 20;
        uint32_t guards = rnd & 1;
        if (guards)
            items[n++] = G(KV_TXN_T_EXISTS, KV_TXN_EQ, keys[(rnd >> 1) & 7], NULL,
                           (int64_t)((rnd >> 4) & 1));
        for (int k = 0; k < 3; k++) {
            uint64_t q = rnd >> (5 + 9 * k);
            const char *key = keys[q & 7], *key2 = keys[(q >> 3) & 7];
            uint8_t op = (uint8_t)(1 + (q >> 6) % KV_TXN_OP_MAX);
            struct kv_txn_item o = O(op, 0, key, NULL, 0);
            if (op == KV_TXN_PUT) o = O(op, 0, key, vals[(q >> 3) & 7], (int64_t)((q & 3) * 100));
            if (op == KV_TXN_INCRBY) o.num = (int64_t)(q & 15) - 7;
            if (op == KV_TXN_INCRBYFLOAT) o.val = (const uint8_t *)"1.5", o.val_len = 3;
            if (op == KV_TXN_APPEND || op == KV_TXN_SETRANGE)
                o.val = (const uint8_t *)"z", o.val_len = 1,
                o.num = op == KV_TXN_SETRANGE ? (int64_t)(q & 7) : 0;
            if (op == KV_TXN_EXPIRE) o.num = (int64_t)(q & 7) * 50 - 50;
            if (op == KV_TXN_RENAME) o.val = (const uint8_t *)key2, o.val_len = 2;
            if (op == KV_TXN_DEL_PREFIX) o.key_len = 1; /* "k": everything */
            /* hash ops: fields f0..f3 */
            static const uint8_t hset2[] = {2,   0, 0, 0, 2,   0,   0,   0,  'f', '0',
                                            1,   0, 0, 0, '1', 2,   0,   0,  0,   'f',
                                            '1', 3, 0, 0, 0,   '2', '.', '5'};
            static const uint8_t hset1[] = {1, 0, 0, 0, 2, 0, 0, 0, 'f', '2', 1, 0, 0, 0, '7'};
            static const uint8_t hfloat[] = {1,   0, 0, 0, 2, 0,   0,   0,  'f',
                                             '1', 3, 0, 0, 0, '0', '.', '5'};
            static const uint8_t hdel2[] = {2, 0, 0, 0, 2, 0, 0,   0,   'f', '0', 0, 0,
                                            0, 0, 2, 0, 0, 0, 'f', '2', 0,   0,   0, 0};
            if (op == KV_TXN_HSET) o.val = hset2, o.val_len = sizeof hset2;
            if (op == KV_TXN_HSETNX) o.val = hset1, o.val_len = sizeof hset1;
            if (op == KV_TXN_HINCRBYFLOAT) o.val = hfloat, o.val_len = sizeof hfloat;
            if (op == KV_TXN_HDEL) o.val = hdel2, o.val_len = sizeof hdel2;
            if (op == KV_TXN_HINCRBY || op == KV_TXN_HGET)
                o.val = (const uint8_t *)((q & 1) ? "f0" : "f2"), o.val_len = 2,
                o.num = op == KV_TXN_HINCRBY ? (int64_t)(q & 7) : 0;
            items[n++] = o;
        }
        uint64_t ts = 1000 + idx * 10;
        struct kv_result ra, rb;
        ASSERT_EQ(txn(a, idx, ts, items, guards, 3 - guards, guards, &ra), 0);
        ASSERT_EQ(txn(b, idx, ts, items, guards, 3 - guards, guards, &rb), 0);
        ASSERT_EQ(ra.txn_n, rb.txn_n);
        for (uint32_t i = 0; i < ra.txn_n; i++) {
            ASSERT_EQ(ra.txn_res[i].kind, rb.txn_res[i].kind);
            ASSERT_EQ(ra.txn_res[i].num, rb.txn_res[i].num);
        }
    }
    ASSERT_EQ(kv_digest(a), kv_digest(b));
    ASSERT_EQ(kv_check_invariants(a), 0);
    ASSERT_EQ(kv_check_invariants(b), 0);
    kv_destroy(a);
    kv_destroy(b);
}

TEST_MAIN()
