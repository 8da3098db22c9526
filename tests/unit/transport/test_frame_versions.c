/* The versions block of HELLO and HELLO_ACK (docs/WIRE-FORMAT.md §3): round
 * trips, a peer without the block, a longer block from a later release, and
 * the release compatibility rule (docs/ARCHITECTURE.md). */
#include <string.h>

#include "stcache/api.h"
#include "stcache/errors.h"
#include "test.h"
#include "transport/frame.h"
#include "wire/le.h"
#include "wire/msg.h"

static struct frame_hello sample_hello(void)
{
    struct frame_hello h = {.proto_version = FRAME_PROTO_VERSION,
                            .cluster_id = 0xC1,
                            .from_id = 1,
                            .to_id = 2,
                            .addr_len = 9};
    memcpy(h.addr, "host:7001", 9);
    frame_versions_self(&h.versions);
    return h;
}

TEST(hello_carries_this_release_and_wire_version)
{
    struct frame_hello h = sample_hello(), d;
    uint8_t body[FRAME_HELLO_BODY_MAX];
    size_t n = frame_hello_encode(&h, body);
    ASSERT_EQ(n, (size_t)FRAME_HELLO_FIXED_SIZE + 9 + FRAME_VERSIONS_SIZE);
    ASSERT_EQ(frame_hello_decode(body, n, &d), 0);
    ASSERT_TRUE(d.versions.present);
    ASSERT_EQ(d.versions.release_major, STCACHE_RAFT_VERSION_MAJOR);
    ASSERT_EQ(d.versions.release_minor, STCACHE_RAFT_VERSION_MINOR);
    ASSERT_EQ(d.versions.release_patch, STCACHE_RAFT_VERSION_PATCH);
    ASSERT_EQ(d.versions.wire_msg, WIRE_MSG_VERSION);
    ASSERT_STREQ(d.addr, "host:7001");
}

TEST(hello_without_versions_block_decodes_as_an_older_peer)
{
    struct frame_hello h = sample_hello(), d;
    h.versions.present = false;
    uint8_t body[FRAME_HELLO_BODY_MAX];
    size_t n = frame_hello_encode(&h, body);
    ASSERT_EQ(n, (size_t)FRAME_HELLO_FIXED_SIZE + 9);
    ASSERT_EQ(frame_hello_decode(body, n, &d), 0);
    ASSERT_FALSE(d.versions.present);
    ASSERT_EQ(d.to_id, 2);
}

TEST(hello_with_a_longer_versions_block_keeps_the_known_fields)
{
    struct frame_hello h = sample_hello(), d;
    uint8_t body[FRAME_HELLO_BODY_MAX];
    size_t n = frame_hello_encode(&h, body);
    size_t blk = FRAME_HELLO_FIXED_SIZE + 9;
    /* A later release appends 6 bytes to the block. */
    le_put16(body + blk, FRAME_VERSIONS_KNOWN_SIZE + 6);
    memset(body + n, 0xAB, 6);
    ASSERT_EQ(frame_hello_decode(body, n + 6, &d), 0);
    ASSERT_TRUE(d.versions.present);
    ASSERT_EQ(d.versions.wire_msg, WIRE_MSG_VERSION);
}

TEST(hello_with_a_bad_versions_block_is_a_protocol_error)
{
    struct frame_hello h = sample_hello(), d;
    uint8_t body[FRAME_HELLO_BODY_MAX];
    size_t n = frame_hello_encode(&h, body);
    size_t blk = FRAME_HELLO_FIXED_SIZE + 9;
    ASSERT_EQ(frame_hello_decode(body, blk + 1, &d), ST_EPROTO); /* one stray byte */
    ASSERT_EQ(frame_hello_decode(body, n - 1, &d), ST_EPROTO);   /* truncated block */
    le_put16(body + blk, FRAME_VERSIONS_KNOWN_SIZE - 2);         /* too short to hold the fields */
    ASSERT_EQ(frame_hello_decode(body, n - 2, &d), ST_EPROTO);
    le_put16(body + blk, FRAME_VERSIONS_LEN_MAX + 1);
    ASSERT_EQ(frame_hello_decode(body, blk + 2 + FRAME_VERSIONS_LEN_MAX + 1, &d), ST_EPROTO);
}

TEST(hello_ack_carries_versions_and_accepts_an_older_ack)
{
    struct frame_hello_ack a = {.proto_version = FRAME_PROTO_VERSION,
                                .status = ST_EMISMATCH,
                                .cluster_id = 7,
                                .node_id = 3},
                           d;
    frame_versions_self(&a.versions);
    uint8_t body[FRAME_HELLO_ACK_BODY_MAX];
    size_t n = frame_hello_ack_encode(&a, body);
    ASSERT_EQ(n, (size_t)FRAME_HELLO_ACK_SIZE + FRAME_VERSIONS_SIZE);
    ASSERT_EQ(frame_hello_ack_decode(body, n, &d), 0);
    ASSERT_TRUE(d.versions.present);
    ASSERT_EQ(d.versions.release_minor, STCACHE_RAFT_VERSION_MINOR);
    ASSERT_EQ(d.status, ST_EMISMATCH);
    ASSERT_EQ(frame_hello_ack_decode(body, FRAME_HELLO_ACK_SIZE, &d), 0);
    ASSERT_FALSE(d.versions.present);
    ASSERT_EQ(frame_hello_ack_decode(body, FRAME_HELLO_ACK_SIZE + 1, &d), ST_EPROTO);
}

TEST(releases_one_minor_apart_interoperate_and_others_are_refused)
{
    struct frame_versions self = {.present = true, .release_major = 1, .release_minor = 4};
    struct frame_versions v = self;
    ASSERT_TRUE(frame_versions_compatible(&self, &v));
    v.release_minor = 5;
    ASSERT_TRUE(frame_versions_compatible(&self, &v));
    v.release_minor = 3;
    ASSERT_TRUE(frame_versions_compatible(&self, &v));
    v.release_minor = 6;
    ASSERT_FALSE(frame_versions_compatible(&self, &v));
    v.release_minor = 2;
    ASSERT_FALSE(frame_versions_compatible(&self, &v));
    v.release_minor = 4;
    v.release_major = 2;
    ASSERT_FALSE(frame_versions_compatible(&self, &v));
    v.present = false; /* a peer from before the block existed */
    ASSERT_TRUE(frame_versions_compatible(&self, &v));
}

TEST_MAIN()
