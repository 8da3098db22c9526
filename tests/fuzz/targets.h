/* Fuzz target bodies, shared by the libFuzzer drivers (tests/fuzz/fuzz_*.c,
 * clang + STCACHE_FUZZ=ON) and the deterministic smoke tests that CI runs
 * (tests/unit/wire/test_fuzz_smoke.c, tests/unit/transport/test_fuzz_smoke.c).
 *
 * Properties checked on every input, beyond "no crash, no over-read" (the
 * input sits in an exact-size heap buffer so ASan sees any over-read):
 *   - decoders return 0 or their documented error, nothing else;
 *   - whatever decodes re-encodes to exactly the same bytes (the encoding is
 *     canonical), so no two byte strings mean the same message;
 *   - references taken on the frame buffer are exactly one per payload entry
 *     and all are dropped by release. */
#ifndef ST_FUZZ_TARGETS_H
#define ST_FUZZ_TARGETS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/raft.h"
#include "transport/frame.h"
#include "util/assert.h"
#include "util/url.h"
#include "wire/msg.h"

static inline int fuzz_msg_target(const uint8_t *data, size_t size)
{
    struct raft_buf *frame = raft_buf_create(size);
    if (frame == NULL) return 0;
    if (size > 0) memcpy(frame->data, data, size);
    struct wire_msg wm;
    wire_msg_init(&wm);
    int rv = wire_msg_decode(&wm, frame, frame->data, size);
    ST_ASSERT(rv == 0 || rv == ST_EPROTO || rv == ST_ENOMEM);
    if (rv == 0) {
        uint32_t with_payload = 0;
        for (uint32_t i = 0; i < wm.msg.n_entries; i++)
            with_payload += wm.msg.entries[i].len > 0;
        ST_ASSERT(wm.refs_held == with_payload && frame->refs == 1 + with_payload);
        ST_ASSERT(wire_msg_size(&wm.msg) == size && size > 0);
        uint8_t *out = malloc(size);
        ST_ASSERT(out != NULL);
        size_t written = 0;
        ST_ASSERT(wire_msg_encode(&wm.msg, out, size, &written) == 0);
        ST_ASSERT(written == size && memcmp(out, data, size) == 0);
        free(out);
    } else {
        ST_ASSERT(frame->refs == 1);
    }
    wire_msg_close(&wm);
    ST_ASSERT(frame->refs == 1);
    raft_buf_unref(frame);

    /* The snapshot meta decoder on its own, on a private exact-size copy. */
    uint8_t *copy = malloc(size ? size : 1);
    ST_ASSERT(copy != NULL);
    if (size > 0) memcpy(copy, data, size);
    struct raft_snapshot_meta *meta = malloc(sizeof(*meta));
    ST_ASSERT(meta != NULL);
    size_t used = 0;
    int mrv = wire_snapshot_meta_decode(copy, size, meta, &used);
    ST_ASSERT(mrv == 0 || mrv == ST_EPROTO);
    if (mrv == 0) {
        ST_ASSERT(used <= size);
        uint8_t *out = malloc(used);
        size_t written = 0;
        ST_ASSERT(out != NULL);
        ST_ASSERT(wire_snapshot_meta_encode(meta, out, used, &written) == 0);
        ST_ASSERT(written == used && memcmp(out, copy, used) == 0);
        free(out);
    }
    free(meta);
    free(copy);
    return rv;
}

static inline int fuzz_frame_target(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    ST_ASSERT(copy != NULL);
    if (size > 0) memcpy(copy, data, size);
    int result = 0;
    if (size >= FRAME_HEADER_SIZE) {
        struct frame_header h;
        int rv = frame_header_decode(copy, 1u << 20, &h);
        ST_ASSERT(rv == 0 || rv == ST_EPROTO || rv == ST_ETOOBIG);
        if (rv == 0 && size - FRAME_HEADER_SIZE >= h.body_len) {
            rv = frame_check(copy, &h, copy + FRAME_HEADER_SIZE);
            ST_ASSERT(rv == 0 || rv == ST_EPROTO);
            result = rv == 0;
        }
    }
    struct frame_hello hello;
    if (frame_hello_decode(copy, size, &hello) == 0) {
        uint8_t out[FRAME_HELLO_BODY_MAX];
        size_t n = frame_hello_encode(&hello, out);
        /* Equal, but for the bytes of a longer versions block that this
         * release ignores (and its block_len). */
        size_t fixed = FRAME_HELLO_FIXED_SIZE + hello.addr_len;
        ST_ASSERT(n <= size && memcmp(out, copy, fixed) == 0);
        ST_ASSERT(hello.versions.present
                      ? memcmp(out + fixed + 2, copy + fixed + 2, n - fixed - 2) == 0
                      : n == size);
        ST_ASSERT(strlen(hello.addr) == hello.addr_len);
    }
    struct frame_hello_ack ack;
    if (frame_hello_ack_decode(copy, size, &ack) == 0) {
        uint8_t out[FRAME_HELLO_ACK_BODY_MAX];
        size_t n = frame_hello_ack_encode(&ack, out);
        ST_ASSERT(n <= size && memcmp(out, copy, FRAME_HELLO_ACK_SIZE) == 0);
        ST_ASSERT(ack.versions.present
                      ? memcmp(out + FRAME_HELLO_ACK_SIZE + 2, copy + FRAME_HELLO_ACK_SIZE + 2,
                               n - FRAME_HELLO_ACK_SIZE - 2) == 0
                      : n == size);
        ST_ASSERT(ack.status <= 0);
    }
    int32_t status;
    uint32_t stream;
    if (frame_status_decode(copy, size, &stream, &status) == 0) {
        uint8_t out[FRAME_SNAP_STATUS_SIZE];
        ST_ASSERT(status <= 0 && stream != 0);
        ST_ASSERT(frame_status_encode(stream, status, out) == size && memcmp(out, copy, size) == 0);
    }
    /* Address parsing on the input as a string. */
    char addr[300], host[64];
    size_t alen = size < sizeof(addr) - 1 ? size : sizeof(addr) - 1;
    memcpy(addr, copy, alen);
    addr[alen] = '\0';
    uint16_t port;
    if (st_url_hostport_split_any(addr, host, sizeof(host), &port) == 0)
        ST_ASSERT(host[0] != '\0' && strlen(host) < sizeof(host));
    free(copy);
    return result;
}

#endif
