/* kv idempotency records (issue 14, finding 9): a write retried with the
 * same Idempotency-Key is answered with the first result and applied once,
 * decided at apply from replicated state only; retention by count and by age
 * on the log clock; the table in snapshots (version 2) and in the digest;
 * version 1 snapshots still restore. */
#include "test.h"

#include "kvtest.h"
#include "util/assert.h"
#include "util/crc32c.h"

static struct kv *new_kv(void)
{
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return NULL;
    return kv;
}

struct idem {
    const char *key;
    uint32_t keys_max;
    uint64_t ttl_ms;
};

static int put_k(struct kv *kv, uint64_t index, uint64_t ts, const char *key, const char *value,
                 enum kv_cond cond, const struct idem *id, struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_PUT,
                           .cond = cond,
                           .req = {9, index},
                           .timestamp_ms = ts,
                           .key = (const uint8_t *)key,
                           .key_len = (uint32_t)strlen(key),
                           .value = (const uint8_t *)value,
                           .value_len = (uint32_t)strlen(value)};
    if (id) {
        c.idem_key = (const uint8_t *)id->key;
        c.idem_key_len = (uint32_t)strlen(id->key);
        c.idem_keys_max = id->keys_max;
        c.idem_ttl_ms = id->ttl_ms;
    }
    return kvt_apply_cmd(kv, index, &c, r);
}

static int del_k(struct kv *kv, uint64_t index, uint64_t ts, const char *key, const struct idem *id,
                 struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_DELETE,
                           .req = {9, index},
                           .timestamp_ms = ts,
                           .key = (const uint8_t *)key,
                           .key_len = (uint32_t)strlen(key),
                           .idem_key = (const uint8_t *)id->key,
                           .idem_key_len = (uint32_t)strlen(id->key),
                           .idem_keys_max = id->keys_max,
                           .idem_ttl_ms = id->ttl_ms};
    return kvt_apply_cmd(kv, index, &c, r);
}

static uint64_t version_of(const struct kv *kv, const char *key)
{
    struct kv_view v;
    return kv_get(kv, key, strlen(key), 0, &v) == 0 ? v.version : 0;
}

TEST(retry_with_the_same_key_is_answered_with_the_first_result_and_applied_once)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    struct idem a = {"req-a", 100, 60000};
    ASSERT_EQ(put_k(kv, 1, 1000, "k", "v1", KV_COND_NONE, &a, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.version, 1);
    ASSERT_EQ(r.created, 1);
    ASSERT_EQ(r.replayed, 0);
    ASSERT_EQ(r.index, 1);
    /* Another client writes in between. */
    ASSERT_EQ(put_k(kv, 2, 1001, "k", "other", KV_COND_NONE, NULL, &r), 0);
    /* The retry (a new entry, a new request id) is not applied. */
    ASSERT_EQ(put_k(kv, 3, 1002, "k", "v1", KV_COND_NONE, &a, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.replayed, 1);
    ASSERT_EQ(r.version, 1);
    ASSERT_EQ(r.created, 1);
    ASSERT_EQ(r.index, 1);
    ASSERT_EQ(r.req.node_id, 9); /* matched to the retry's waiter */
    ASSERT_EQ(r.req.seq, 3);
    ASSERT_TRUE(kvt_has(kv, "k", "other", 1002));
    ASSERT_EQ(version_of(kv, "k"), 2);
    ASSERT_EQ(kv_applied_index(kv), 3);

    /* A conditional create: the retry does not turn into a failed
     * condition (it would, applied a second time). */
    struct idem b = {"req-b", 100, 60000};
    ASSERT_EQ(put_k(kv, 4, 1003, "lock", "me", KV_COND_IF_ABSENT, &b, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(put_k(kv, 5, 1004, "lock", "me", KV_COND_IF_ABSENT, &b, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.replayed, 1);
    ASSERT_EQ(r.version, 4);

    /* A failed condition is a result too: replayed as such. */
    struct idem c = {"req-c", 100, 60000};
    ASSERT_EQ(put_k(kv, 6, 1005, "lock", "you", KV_COND_IF_ABSENT, &c, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(del_k(kv, 7, 1006, "lock", &(struct idem){"req-d", 100, 60000}, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(put_k(kv, 8, 1007, "lock", "you", KV_COND_IF_ABSENT, &c, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_PRECONDITION_FAILED);
    ASSERT_EQ(r.replayed, 1);
    ASSERT_EQ(version_of(kv, "lock"), 0); /* not created by the retry */

    /* A DELETE retried: OK again, not NOT_FOUND. */
    ASSERT_EQ(del_k(kv, 9, 1008, "lock", &(struct idem){"req-d", 100, 60000}, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_OK);
    ASSERT_EQ(r.replayed, 1);
    ASSERT_EQ(r.version, 7);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    struct kv_stats st;
    kv_stats(kv, &st);
    ASSERT_EQ(st.idem_records, 4);
    ASSERT_EQ(st.clock_ms, 1008);
    kv_destroy(kv);
}

TEST(a_key_reused_for_a_different_request_is_refused_and_changes_nothing)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    struct idem a = {"req-a", 100, 60000};
    ASSERT_EQ(put_k(kv, 1, 1000, "k", "v1", KV_COND_NONE, &a, &r), 0);
    uint64_t d = kv_digest(kv);
    ASSERT_EQ(put_k(kv, 2, 1000, "k", "v2", KV_COND_NONE, &a, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_IDEMPOTENCY_MISMATCH);
    ASSERT_EQ(r.replayed, 1);
    ASSERT_EQ(r.index, 1);
    ASSERT_EQ(put_k(kv, 3, 1000, "other", "v1", KV_COND_NONE, &a, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_IDEMPOTENCY_MISMATCH);
    ASSERT_EQ(put_k(kv, 4, 1000, "k", "v1", KV_COND_IF_ABSENT, &a, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_IDEMPOTENCY_MISMATCH);
    ASSERT_EQ(del_k(kv, 5, 1000, "k", &a, &r), 0);
    ASSERT_EQ(r.status, KV_STATUS_IDEMPOTENCY_MISMATCH);
    ASSERT_TRUE(kvt_has(kv, "k", "v1", 1000));
    ASSERT_EQ(kv_digest(kv), d); /* the index is not part of the digest */
    kv_destroy(kv);
}

TEST(retention_by_count_drops_the_oldest_records)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    char name[16];
    for (uint64_t i = 1; i <= 5; i++) {
        snprintf(name, sizeof name, "req-%llu", (unsigned long long)i);
        struct idem id = {name, 3, 60000};
        ASSERT_EQ(put_k(kv, i, 1000, "n", name, KV_COND_NONE, &id, &r), 0);
        ASSERT_EQ(r.replayed, 0);
    }
    struct kv_stats st;
    kv_stats(kv, &st);
    ASSERT_EQ(st.idem_records, 3);
    /* req-1 and req-2 are forgotten: applied again. req-5 is remembered. */
    struct idem one = {"req-1", 3, 60000}, five = {"req-5", 3, 60000};
    ASSERT_EQ(put_k(kv, 6, 1000, "n", "req-5", KV_COND_NONE, &five, &r), 0);
    ASSERT_EQ(r.replayed, 1);
    ASSERT_EQ(put_k(kv, 7, 1000, "n", "req-1", KV_COND_NONE, &one, &r), 0);
    ASSERT_EQ(r.replayed, 0);
    ASSERT_EQ(r.version, 7);
    kv_stats(kv, &st);
    ASSERT_EQ(st.idem_records, 3); /* req-1 again pushed req-3 out */
    struct idem three = {"req-3", 3, 60000};
    ASSERT_EQ(put_k(kv, 8, 1000, "n", "req-3", KV_COND_NONE, &three, &r), 0);
    ASSERT_EQ(r.replayed, 0);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(retention_by_age_follows_the_log_clock_not_the_retry_timestamp)
{
    struct kv *kv = new_kv();
    struct kv_result r;
    struct idem a = {"req-a", 100, 1000};
    ASSERT_EQ(put_k(kv, 1, 5000, "k", "v", KV_COND_NONE, &a, &r), 0);
    /* The log clock at 5999: still remembered. */
    ASSERT_EQ(put_k(kv, 2, 5999, "x", "1", KV_COND_NONE, NULL, &r), 0);
    ASSERT_EQ(put_k(kv, 3, 5999, "k", "v", KV_COND_NONE, &a, &r), 0);
    ASSERT_EQ(r.replayed, 1);
    /* An unrelated entry moves the log clock to 6000: the record's age ran
     * out and it is dropped at that entry, on every replica alike. */
    ASSERT_EQ(kvt_purge(kv, 4, 6000, 0, &r), 0);
    struct kv_stats st;
    kv_stats(kv, &st);
    ASSERT_EQ(st.idem_records, 0);
    ASSERT_EQ(st.clock_ms, 6000);
    /* A retry stamped by a slow clock (5500) cannot bring it back: the log
     * clock never goes backwards. It is applied as a new write. */
    ASSERT_EQ(put_k(kv, 5, 5500, "k", "v", KV_COND_NONE, &a, &r), 0);
    ASSERT_EQ(r.replayed, 0);
    ASSERT_EQ(r.version, 5);
    kv_stats(kv, &st);
    ASSERT_EQ(st.clock_ms, 6000);
    ASSERT_EQ(kv_clock_ms(kv), 6000);
    /* That record lives until 6000 + 1000 by the log clock. */
    ASSERT_EQ(put_k(kv, 6, 6999, "k", "v", KV_COND_NONE, &a, &r), 0);
    ASSERT_EQ(r.replayed, 1);
    ASSERT_EQ(put_k(kv, 7, 7000, "k", "v", KV_COND_NONE, &a, &r), 0);
    ASSERT_EQ(r.replayed, 0);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(snapshot_round_trip_carries_the_records_and_the_log_clock)
{
    struct kv *a = new_kv(), *b = new_kv();
    struct kv_result r;
    char name[32];
    uint64_t idx = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof name, "req-%d", i);
        struct idem id = {name, 200, 100000};
        ASSERT_EQ(put_k(a, ++idx, 1000 + (uint64_t)i, i % 2 ? "odd" : "even", name, KV_COND_NONE,
                        &id, &r),
                  0);
    }
    struct kvt_sink s;
    ASSERT_EQ(kvt_snap(a, &s), 0);
    ASSERT_EQ(kvt_restore(b, s.data, s.len, 7), 0);
    ASSERT_EQ(kv_check_invariants(b), 0);
    ASSERT_EQ(kv_digest(b), kv_digest(a));
    ASSERT_EQ(kv_clock_ms(b), 1299);
    struct kv_stats st;
    kv_stats(b, &st);
    ASSERT_EQ(st.idem_records, 200);
    /* Both replicas go on alike: a retry of a remembered write replays, a
     * forgotten one applies, and the count bound trims the same records. */
    struct idem last = {"req-299", 200, 100000}, first = {"req-0", 200, 100000};
    struct kv_result ra, rb;
    ASSERT_EQ(put_k(a, ++idx, 2000, "odd", "req-299", KV_COND_NONE, &last, &ra), 0);
    ASSERT_EQ(put_k(b, idx, 2000, "odd", "req-299", KV_COND_NONE, &last, &rb), 0);
    ASSERT_EQ(ra.replayed, 1);
    ASSERT_EQ(rb.replayed, 1);
    ASSERT_EQ(rb.version, 300);
    ASSERT_EQ(put_k(a, ++idx, 2000, "even", "req-0", KV_COND_NONE, &first, &ra), 0);
    ASSERT_EQ(put_k(b, idx, 2000, "even", "req-0", KV_COND_NONE, &first, &rb), 0);
    ASSERT_EQ(ra.replayed, 0);
    ASSERT_EQ(rb.replayed, 0);
    ASSERT_EQ(kv_digest(b), kv_digest(a));
    /* Every bit flip in a snapshot with records is caught; the old state stays. */
    struct kvt_sink small;
    struct kv *c = new_kv();
    ASSERT_EQ(put_k(c, 1, 10, "k", "v", KV_COND_NONE, &(struct idem){"i", 5, 50}, &r), 0);
    ASSERT_EQ(kvt_snap(c, &small), 0);
    uint64_t db = kv_digest(b);
    for (size_t bit = 0; bit < small.len * 8; bit++) {
        small.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        ASSERT_NE(kvt_restore(b, small.data, small.len, small.len), 0);
        small.data[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    ASSERT_EQ(kv_digest(b), db);
    ASSERT_EQ(kvt_restore(b, small.data, small.len, 3), 0);
    ASSERT_EQ(kv_digest(b), kv_digest(c));
    free(small.data);
    free(s.data);
    kv_destroy(a);
    kv_destroy(b);
    kv_destroy(c);
}

static void le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

TEST(a_version_1_snapshot_still_restores)
{
    /* Built byte by byte from docs/KV.md "Snapshot format (version 1)": one
     * key "k" = "val", version 3, no expiry, applied index 4. */
    uint8_t b[128];
    size_t n = 0;
    memcpy(b, "STKVSNAP", 8);
    le32(b + 8, 1);
    le32(b + 12, 0);
    le64(b + 16, 4);
    le64(b + 24, 1);
    le32(b + 32, 0);
    n = 36;
    le32(b + n, st_crc32c(0, b, n));
    n += 4;
    uint8_t *rec = b + n;
    le32(rec, 1);
    le32(rec + 4, 3);
    le64(rec + 8, 3);
    le64(rec + 16, 0);
    le32(rec + 24, st_crc32c(0, rec, 24));
    memcpy(rec + 28, "kval", 4);
    n += 32;
    le64(b + n, 1);
    n += 8;
    le32(b + n, st_crc32c(0, b, n));
    n += 4;
    struct kv *kv = new_kv();
    struct kv_result r;
    ASSERT_EQ(put_k(kv, 1, 10, "gone", "x", KV_COND_NONE, &(struct idem){"i", 5, 50}, &r), 0);
    ASSERT_EQ(kvt_restore(kv, b, n, 5), 0);
    ASSERT_TRUE(kvt_has(kv, "k", "val", 0));
    ASSERT_EQ(version_of(kv, "gone"), 0);
    struct kv_stats st;
    kv_stats(kv, &st);
    ASSERT_EQ(st.idem_records, 0);
    ASSERT_EQ(st.clock_ms, 0);
    ASSERT_EQ(kv_applied_index(kv), 4);
    ASSERT_EQ(kv_check_invariants(kv), 0);
    kv_destroy(kv);
}

TEST(the_digest_covers_the_records_and_the_log_clock)
{
    struct kv *a = new_kv(), *b = new_kv(), *c = new_kv();
    struct kv_result r;
    ASSERT_EQ(put_k(a, 1, 10, "k", "v", KV_COND_NONE, NULL, &r), 0);
    ASSERT_EQ(put_k(b, 1, 10, "k", "v", KV_COND_NONE, &(struct idem){"i", 5, 50}, &r), 0);
    ASSERT_EQ(put_k(c, 1, 10, "k", "v", KV_COND_NONE, NULL, &r), 0);
    ASSERT_EQ(kv_digest(a), kv_digest(c));
    ASSERT_NE(kv_digest(a), kv_digest(b));
    ASSERT_EQ(kvt_purge(c, 2, 11, 0, &r), 0); /* only the clock moves */
    ASSERT_NE(kv_digest(a), kv_digest(c));
    kv_destroy(a);
    kv_destroy(b);
    kv_destroy(c);
}

TEST(codec_round_trips_the_idempotency_block_and_rejects_bad_ones)
{
    struct kv_command c = {.type = KV_CMD_PUT,
                           .req = {1, 2},
                           .timestamp_ms = 3,
                           .key = (const uint8_t *)"key",
                           .key_len = 3,
                           .value = (const uint8_t *)"value",
                           .value_len = 5,
                           .idem_key = (const uint8_t *)"idem",
                           .idem_key_len = 4,
                           .idem_keys_max = 77,
                           .idem_ttl_ms = 88};
    uint8_t buf[256];
    size_t len = 0;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    ASSERT_EQ(len, kv_command_encoded_len(&c));
    ASSERT_EQ(buf[0], KV_COMMAND_VERSION_IDEM);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.idem_key_len, 4);
    ASSERT_MEMEQ(d.idem_key, "idem", 4);
    ASSERT_EQ(d.idem_keys_max, 77);
    ASSERT_EQ(d.idem_ttl_ms, 88);
    ASSERT_MEMEQ(d.key, "key", 3);
    ASSERT_MEMEQ(d.value, "value", 5);
    ASSERT_EQ(d.timestamp_ms, 3);
    /* Truncations, a reserved byte, a zero-length key in version 2. */
    for (size_t l = 0; l < len; l++)
        ASSERT_NE(kv_command_decode(buf, l, NULL, &d), 0);
    buf[KV_COMMAND_HEADER_BYTES + 1] = 1;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    buf[KV_COMMAND_HEADER_BYTES + 1] = 0;
    buf[KV_COMMAND_HEADER_BYTES] = 0;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    /* Bounds that encode refuses. */
    c.idem_keys_max = 0;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
    c.idem_keys_max = 1;
    c.idem_ttl_ms = 0;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
    c.idem_ttl_ms = 1;
    c.idem_key_len = KV_IDEM_KEY_BYTES_MAX + 1;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), ST_EINVAL);
    struct kv_command p = {.type = KV_CMD_PURGE_EXPIRED,
                           .idem_key = (const uint8_t *)"i",
                           .idem_key_len = 1,
                           .idem_keys_max = 1,
                           .idem_ttl_ms = 1};
    ASSERT_EQ(kv_command_encode(&p, buf, sizeof buf, &len), ST_EINVAL);
    /* Without a key: version 1, byte for byte as before. */
    c.idem_key_len = 0;
    c.idem_keys_max = 0;
    c.idem_ttl_ms = 0;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof buf, &len), 0);
    ASSERT_EQ(buf[0], 1);
    ASSERT_EQ(len, KV_COMMAND_HEADER_BYTES + 24 + 3 + 5);
}

TEST_MAIN()
