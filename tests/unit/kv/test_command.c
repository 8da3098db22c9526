/* kv command codec: round trips, canonical encoding, and every malformed input
 * rejected with ST_EPROTO / ST_ETOOBIG. */
#include "test.h"

#include "kv/command.h"
#include "stcache/errors.h"
#include "util/assert.h"

static size_t encode(const struct kv_command *c, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    int rc = kv_command_encode(c, buf, cap, &len);
    if (rc != 0) return 0;
    return len;
}

TEST(put_round_trip_keeps_every_field)
{
    const uint8_t key[] = {'a', 0, 'b'};
    const uint8_t value[] = {0, 1, 2, 255};
    struct kv_command c = {.type = KV_CMD_PUT,
                           .cond = KV_COND_IF_VERSION,
                           .req = {3, 99},
                           .timestamp_ms = 1700000000123ULL,
                           .ttl_ms = 5000,
                           .cond_version = 42,
                           .key = key,
                           .key_len = 3,
                           .value = value,
                           .value_len = 4};
    uint8_t buf[128];
    size_t len = encode(&c, buf, sizeof(buf));
    ASSERT_EQ(len, kv_command_encoded_len(&c));
    ASSERT_EQ(len, KV_COMMAND_HEADER_BYTES + 24 + 3 + 4);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.type, KV_CMD_PUT);
    ASSERT_EQ(d.cond, KV_COND_IF_VERSION);
    ASSERT_EQ(d.req.node_id, 3);
    ASSERT_EQ(d.req.seq, 99);
    ASSERT_EQ(d.timestamp_ms, 1700000000123ULL);
    ASSERT_EQ(d.ttl_ms, 5000);
    ASSERT_EQ(d.cond_version, 42);
    ASSERT_EQ(d.key_len, 3);
    ASSERT_MEMEQ(d.key, key, 3);
    ASSERT_EQ(d.value_len, 4);
    ASSERT_MEMEQ(d.value, value, 4);
    ASSERT_TRUE(d.key == buf + KV_COMMAND_HEADER_BYTES + 24); /* no copy */
}

TEST(delete_and_purge_round_trip)
{
    struct kv_command c = {.type = KV_CMD_DELETE,
                           .req = {1, 2},
                           .timestamp_ms = 9,
                           .key = (const uint8_t *)"k",
                           .key_len = 1};
    uint8_t buf[64];
    size_t len = encode(&c, buf, sizeof(buf));
    ASSERT_EQ(len, KV_COMMAND_HEADER_BYTES + 12 + 1);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.type, KV_CMD_DELETE);
    ASSERT_EQ(d.key[0], 'k');
    struct kv_command p = {
        .type = KV_CMD_PURGE_EXPIRED, .req = {1, 3}, .timestamp_ms = 77, .keys_max = 1000};
    len = encode(&p, buf, sizeof(buf));
    ASSERT_EQ(len, KV_COMMAND_HEADER_BYTES + 4);
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.type, KV_CMD_PURGE_EXPIRED);
    ASSERT_EQ(d.timestamp_ms, 77);
    ASSERT_EQ(d.keys_max, 1000);
}

TEST(encode_rejects_ill_formed_commands)
{
    uint8_t buf[64];
    size_t len;
    struct kv_command c = {.type = KV_CMD_PUT, .key = (const uint8_t *)"k", .key_len = 0};
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof(buf), &len), ST_EINVAL); /* empty key */
    c.key_len = 1;
    c.cond = (enum kv_cond)9;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof(buf), &len), ST_EINVAL);
    struct kv_command d = {.type = KV_CMD_DELETE,
                           .cond = KV_COND_IF_ABSENT,
                           .key = (const uint8_t *)"k",
                           .key_len = 1};
    ASSERT_EQ(kv_command_encode(&d, buf, sizeof(buf), &len), ST_EINVAL);
    struct kv_command t = {.type = (enum kv_cmd_type)0};
    ASSERT_EQ(kv_command_encode(&t, buf, sizeof(buf), &len), ST_EINVAL);
    c.cond = KV_COND_NONE;
    ASSERT_EQ(kv_command_encode(&c, buf, 10, &len), ST_ETOOBIG);
}

TEST(decode_rejects_every_truncation_of_a_valid_command)
{
    struct kv_command c = {.type = KV_CMD_PUT,
                           .key = (const uint8_t *)"key",
                           .key_len = 3,
                           .value = (const uint8_t *)"value",
                           .value_len = 5};
    uint8_t buf[128];
    size_t len = encode(&c, buf, sizeof(buf));
    struct kv_command d;
    for (size_t n = 0; n < len; n++)
        ASSERT_EQ(kv_command_decode(buf, n, NULL, &d), ST_EPROTO);
    uint8_t longer[129];
    memcpy(longer, buf, len);
    longer[len] = 0;
    ASSERT_EQ(kv_command_decode(longer, len + 1, NULL, &d), ST_EPROTO); /* trailing byte */
}

TEST(decode_rejects_bad_header_fields)
{
    struct kv_command c = {.type = KV_CMD_DELETE, .key = (const uint8_t *)"key", .key_len = 3};
    uint8_t buf[64], bad[64];
    size_t len = encode(&c, buf, sizeof(buf));
    struct kv_command d;
    const size_t offsets[] = {0, 1, 2, 3, 4, 7};
    const uint8_t values[] = {KV_COMMAND_VERSION + 1, 9, 7, 1, 1, 1};
    for (size_t i = 0; i < ST_ARRAY_LEN(offsets); i++) {
        memcpy(bad, buf, len);
        bad[offsets[i]] = values[i];
        ASSERT_EQ(kv_command_decode(bad, len, NULL, &d), ST_EPROTO);
    }
    /* DELETE with IF_ABSENT, PURGE with a condition. */
    memcpy(bad, buf, len);
    bad[2] = KV_COND_IF_ABSENT;
    ASSERT_EQ(kv_command_decode(bad, len, NULL, &d), ST_EPROTO);
    /* cond_version without IF_VERSION: not canonical. */
    memcpy(bad, buf, len);
    bad[KV_COMMAND_HEADER_BYTES] = 5;
    ASSERT_EQ(kv_command_decode(bad, len, NULL, &d), ST_EPROTO);
    /* key_len that disagrees with the length. */
    memcpy(bad, buf, len);
    bad[KV_COMMAND_HEADER_BYTES + 8] = 4;
    ASSERT_EQ(kv_command_decode(bad, len, NULL, &d), ST_EPROTO);
    /* zero-length key. */
    struct kv_command z = {.type = KV_CMD_DELETE, .key = (const uint8_t *)"k", .key_len = 1};
    len = encode(&z, buf, sizeof(buf));
    buf[KV_COMMAND_HEADER_BYTES + 8] = 0;
    ASSERT_EQ(kv_command_decode(buf, len - 1, NULL, &d), ST_EPROTO);
}

static const struct kv_evict_key evict_keys3[] = {
    {(const uint8_t *)"a", 1, 7},
    {(const uint8_t *)"bb", 2, 9},
    {(const uint8_t *)"ccc", 3, UINT64_MAX},
};

TEST(evict_round_trip_lists_every_key_with_its_version)
{
    struct kv_command c = {.type = KV_CMD_EVICT,
                           .req = {3, 0},
                           .timestamp_ms = 42,
                           .evict_n = 3,
                           .evict_keys = evict_keys3};
    uint8_t buf[128];
    size_t len = encode(&c, buf, sizeof(buf));
    ASSERT_EQ(len, KV_COMMAND_HEADER_BYTES + 4 + 3 * 12 + 6);
    ASSERT_EQ(buf[0], KV_COMMAND_VERSION_EVICT);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.type, KV_CMD_EVICT);
    ASSERT_EQ(d.evict_n, 3);
    ASSERT_EQ(d.timestamp_ms, 42);
    size_t pos = 0;
    struct kv_evict_key k;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(kv_evict_next(&d, &pos, &k), 1);
        ASSERT_EQ(k.key_len, evict_keys3[i].key_len);
        ASSERT_EQ(memcmp(k.key, evict_keys3[i].key, k.key_len), 0);
        ASSERT_EQ(k.version, evict_keys3[i].version);
    }
    ASSERT_EQ(kv_evict_next(&d, &pos, &k), 0);
    /* Every truncation and a trailing byte are refused. */
    for (size_t cut = 0; cut < len; cut++)
        ASSERT_EQ(kv_command_decode(buf, cut, NULL, &d), ST_EPROTO);
    uint8_t longer[129];
    memcpy(longer, buf, len);
    longer[len] = 0;
    ASSERT_EQ(kv_command_decode(longer, len + 1, NULL, &d), ST_EPROTO);
    /* EVICT needs format version 2; a count of 0 or one the list disagrees
     * with, and a condition, are malformed. */
    uint8_t bad[128];
    memcpy(bad, buf, len);
    bad[0] = 1;
    ASSERT_EQ(kv_command_decode(bad, len, NULL, &d), ST_EPROTO);
    memcpy(bad, buf, len);
    bad[KV_COMMAND_HEADER_BYTES] = 0;
    ASSERT_EQ(kv_command_decode(bad, len, NULL, &d), ST_EPROTO);
    memcpy(bad, buf, len);
    bad[KV_COMMAND_HEADER_BYTES] = 2;
    ASSERT_EQ(kv_command_decode(bad, len, NULL, &d), ST_EPROTO);
    memcpy(bad, buf, len);
    bad[2] = KV_COND_IF_VERSION;
    ASSERT_EQ(kv_command_decode(bad, len, NULL, &d), ST_EPROTO);
    /* Encode refuses an empty list and an empty key. */
    c.evict_n = 0;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof(buf), &len), ST_EINVAL);
    struct kv_evict_key empty = {(const uint8_t *)"", 0, 1};
    c.evict_n = 1;
    c.evict_keys = &empty;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof(buf), &len), ST_EINVAL);
}

TEST(refuse_round_trip_and_apply_changes_nothing)
{
    struct kv_command c = {
        .type = KV_CMD_REFUSE, .req = {2, 99}, .timestamp_ms = 5, .reason = KV_REFUSE_MEMORY};
    uint8_t buf[64];
    size_t len = encode(&c, buf, sizeof(buf));
    ASSERT_EQ(len, KV_COMMAND_HEADER_BYTES + 4);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.type, KV_CMD_REFUSE);
    ASSERT_EQ(d.reason, KV_REFUSE_MEMORY);
    ASSERT_EQ(d.req.seq, 99);
    buf[0] = 1; /* version 1 has no REFUSE */
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    c.reason = 7;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof(buf), &len), ST_EINVAL);
}

TEST(publish_round_trip_at_its_own_version_only)
{
    struct kv_command c = {.type = KV_CMD_PUBLISH,
                           .req = {1, 7},
                           .timestamp_ms = 9,
                           .key = (const uint8_t *)"ch",
                           .key_len = 2,
                           .value = (const uint8_t *)"msg",
                           .value_len = 3};
    uint8_t buf[64];
    size_t len = encode(&c, buf, sizeof(buf));
    ASSERT_EQ(len, KV_COMMAND_HEADER_BYTES + 8 + 5);
    ASSERT_EQ(buf[0], KV_COMMAND_VERSION_PUBLISH);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.type, KV_CMD_PUBLISH);
    ASSERT_TRUE(d.key_len == 2 && memcmp(d.key, "ch", 2) == 0);
    ASSERT_TRUE(d.value_len == 3 && memcmp(d.value, "msg", 3) == 0);
    ASSERT_EQ(kv_command_decode(buf, len - 1, NULL, &d), ST_EPROTO);
    buf[0] = KV_COMMAND_VERSION_TXN; /* only its own version */
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
    buf[0] = KV_COMMAND_VERSION_PUBLISH;
    struct kv_limits lim = {1, 1024};
    ASSERT_EQ(kv_command_decode(buf, len, &lim, &d), ST_ETOOBIG);
    c.cond = KV_COND_IF_ABSENT;
    ASSERT_EQ(kv_command_encode(&c, buf, sizeof(buf), &len), ST_EINVAL);
}

TEST(older_commands_keep_format_version_1)
{
    struct kv_command c = {.type = KV_CMD_PUT, .key = (const uint8_t *)"k", .key_len = 1};
    uint8_t buf[128];
    ASSERT_EQ(encode(&c, buf, sizeof(buf)) > 0, 1);
    ASSERT_EQ(buf[0], 1); /* still readable by a version-1 node */
    struct kv_command d;
    size_t len = encode(&c, buf, sizeof(buf));
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0);
    ASSERT_EQ(d.type, KV_CMD_PUT);
    /* one encoding per command: the same bytes labelled with a later
     * version are refused (every replica alike) */
    buf[0] = KV_COMMAND_VERSION_EVICT;
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), ST_EPROTO);
}

TEST(decode_enforces_configured_limits_with_etoobig)
{
    uint8_t key[1025];
    memset(key, 'k', sizeof(key));
    struct kv_command c = {.type = KV_CMD_PUT,
                           .key = key,
                           .key_len = 1025,
                           .value = (const uint8_t *)"v",
                           .value_len = 1};
    static uint8_t buf[2048];
    size_t len = encode(&c, buf, sizeof(buf));
    ASSERT_NE(len, 0);
    struct kv_limits lim;
    kv_limits_default(&lim);
    struct kv_command d;
    ASSERT_EQ(kv_command_decode(buf, len, &lim, &d), ST_ETOOBIG);
    ASSERT_EQ(kv_command_decode(buf, len, NULL, &d), 0); /* hard limits only */
    c.key_len = 10;
    len = encode(&c, buf, sizeof(buf));
    lim.value_bytes_max = 0;
    ASSERT_EQ(kv_command_decode(buf, len, &lim, &d), ST_ETOOBIG);
    lim.value_bytes_max = 1;
    ASSERT_EQ(kv_command_decode(buf, len, &lim, &d), 0);
}

TEST(decode_survives_random_garbage)
{
    uint8_t buf[256];
    uint64_t x = 88172645463325252ULL;
    int accepted = 0;
    for (int i = 0; i < 20000; i++) {
        size_t len = (size_t)(i % 200);
        for (size_t j = 0; j < len; j++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[j] = (uint8_t)x;
        }
        if (len > 0) buf[0] = 1; /* valid version so the deeper checks run */
        struct kv_command d;
        int rc = kv_command_decode(buf, len, NULL, &d);
        ASSERT_TRUE(rc == 0 || rc == ST_EPROTO || rc == ST_ETOOBIG);
        if (rc == 0) {
            accepted++;
            ASSERT_EQ(kv_command_encoded_len(&d), len); /* accepted means canonical */
        }
    }
    (void)accepted;
}

TEST_MAIN()
