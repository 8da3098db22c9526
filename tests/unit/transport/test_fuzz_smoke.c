/* Deterministic fuzz smoke of the transport's decoders: the frame/handshake
 * fuzz target body on seeded mutations, then mutated byte streams thrown at a
 * live transport over TCP (structure-aware: bodies mutated and CRCs fixed up
 * half of the time, so the garbage reaches the handshake, message and
 * snapshot parsers). The transport must survive every stream and keep its
 * real peer link working. */
#include <uv.h>

#include "fuzz/targets.h"
#include "test.h"
#include "transport/transport.h"
#include "util/crc32c.h"
#include "util/rng.h"
#include "wire/le.h"

#define CLUSTER 0xF022u
#define STREAM_MAX 8192

static size_t put_frame(uint8_t *out, uint8_t type, const uint8_t *body, uint32_t len)
{
    memcpy(out + FRAME_HEADER_SIZE, body, len);
    frame_header_encode(out, type, out + FRAME_HEADER_SIZE, len);
    return FRAME_HEADER_SIZE + len;
}

/* A valid stream from "node 1" to node 2: HELLO, messages, a small snapshot. */
static size_t valid_stream(uint8_t *out)
{
    size_t pos = 0;
    uint8_t body[2048];
    struct frame_hello h = {.proto_version = FRAME_PROTO_VERSION,
                            .cluster_id = CLUSTER,
                            .from_id = 1,
                            .to_id = 2,
                            .addr_len = 9};
    memcpy(h.addr, "fuzz:7000", 9);
    size_t hello_len = frame_hello_encode(&h, body);
    pos += put_frame(out + pos, FRAME_HELLO, body, (uint32_t)hello_len);
    static struct raft_buf *pay;
    if (pay == NULL) {
        pay = raft_buf_create(64);
        memset(pay->data, 'p', 64);
    }
    struct raft_entry ents[2] = {
        {.term = 1,
         .index = 5,
         .type = RAFT_ENTRY_NORMAL,
         .buf = pay,
         .data = pay->data,
         .len = 30},
        {.term = 1, .index = 6, .type = RAFT_ENTRY_NOOP},
    };
    struct raft_msg app = {.type = RAFT_MSG_APPEND,
                           .from = 1,
                           .to = 2,
                           .term = 1,
                           .index = 4,
                           .n_entries = 2,
                           .entries = ents};
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 1};
    size_t n;
    ST_ASSERT(wire_msg_encode(&app, body, sizeof(body), &n) == 0);
    pos += put_frame(out + pos, FRAME_MSG, body, (uint32_t)n);
    ST_ASSERT(wire_msg_encode(&hb, body, sizeof(body), &n) == 0);
    pos += put_frame(out + pos, FRAME_MSG, body, (uint32_t)n);
    static struct raft_snapshot_meta meta = {
        .index = 9, .term = 1, .conf = {.n = 1, .members = {{.id = 1, .role = 1}}}};
    struct raft_msg sm = {
        .type = RAFT_MSG_SNAPSHOT, .from = 1, .to = 2, .term = 1, .snapshot = &meta};
    le_put32(body, 1); /* stream id */
    le_put64(body + 4, 10);
    ST_ASSERT(wire_msg_encode(&sm, body + 12, sizeof(body) - 12, &n) == 0);
    pos += put_frame(out + pos, FRAME_SNAP_BEGIN, body, (uint32_t)(12 + n));
    le_put32(body, 1);
    le_put64(body + 4, 0);
    memcpy(body + 12, "0123456789", 10);
    pos += put_frame(out + pos, FRAME_SNAP_CHUNK, body, 22);
    le_put32(body, 1);
    le_put64(body + 4, 10);
    le_put32(body + 12, st_crc32c(0, "0123456789", 10));
    pos += put_frame(out + pos, FRAME_SNAP_END, body, 16);
    return pos;
}

/* Re-computes the CRC of every frame whose header still parses. */
static void fix_crcs(uint8_t *s, size_t len)
{
    size_t pos = 0;
    while (len - pos >= FRAME_HEADER_SIZE) {
        uint32_t body = le_get32(s + pos);
        if (body > len - pos - FRAME_HEADER_SIZE) return;
        uint32_t crc = st_crc32c(st_crc32c(0, s + pos, 8), s + pos + FRAME_HEADER_SIZE, body);
        le_put32(s + pos + 8, crc);
        pos += FRAME_HEADER_SIZE + body;
    }
}

static size_t mutate_stream(struct st_rng *rng, uint8_t *s, size_t len)
{
    int rounds = 1 + (int)st_rng_below(rng, 3);
    for (int r = 0; r < rounds && len > 0; r++) {
        size_t at = st_rng_below(rng, len);
        switch (st_rng_below(rng, 4)) {
        case 0:
            s[at] ^= (uint8_t)(1u << st_rng_below(rng, 8));
            break;
        case 1:
            s[at] = (uint8_t)st_rng_next(rng);
            break;
        case 2:
            if (at + 4 <= len) le_put32(s + at, (uint32_t)st_rng_below(rng, 64));
            break;
        default:
            len = at; /* truncate */
            break;
        }
    }
    if (st_rng_below(rng, 2) == 0) fix_crcs(s, len);
    return len;
}

TEST(frame_decoders_survive_mutations)
{
    struct st_rng rng;
    st_rng_init(&rng, 7);
    static uint8_t base[STREAM_MAX], buf[STREAM_MAX];
    size_t blen = valid_stream(base);
    int ok = 0;
    for (int iter = 0; iter < 60000; iter++) {
        /* Start at a random frame-ish offset of the valid stream. */
        size_t off = st_rng_below(&rng, 4) == 0 ? st_rng_below(&rng, blen) : 0;
        size_t len = ST_MIN(blen - off, (size_t)st_rng_below(&rng, 600));
        memcpy(buf, base + off, len);
        len = mutate_stream(&rng, buf, len);
        ok += fuzz_frame_target(buf, len);
        ok += fuzz_frame_target(buf + ST_MIN(len, (size_t)FRAME_HEADER_SIZE),
                                len - ST_MIN(len, (size_t)FRAME_HEADER_SIZE));
    }
    ASSERT_GE(ok, 100); /* some inputs still pass the CRC check */
}

/* ------------------------------------------------- live transport streams */

static uv_loop_t loop;
static uv_timer_t watchdog;
static bool watchdog_fired;

static void on_watchdog(uv_timer_t *t)
{
    watchdog_fired = true;
}

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        watchdog_fired = false;                                                                    \
        uv_timer_start(&watchdog, on_watchdog, 20000, 0);                                          \
        /* NOWAIT first: ONCE runs due timers, then blocks in poll even if a                       \
         * timer callback just made cond true. */                                                  \
        while (!(cond) && !watchdog_fired) {                                                       \
            uv_run(&loop, UV_RUN_NOWAIT);                                                          \
            if (!(cond)) uv_run(&loop, UV_RUN_ONCE);                                               \
        }                                                                                          \
        uv_timer_stop(&watchdog);                                                                  \
        if (!(cond)) ST_TEST_FAIL_("watchdog: still not true: %s", #cond);                         \
    } while (0)

struct sink {
    raft_id id;
    uint64_t msgs, bad, ups, snap_open, sum;
    bool done;
};

static void sink_msg(void *ctx, raft_id from, const struct raft_msg *m)
{
    struct sink *s = ctx;
    s->msgs++;
    if (m->from != from || m->to != s->id) s->bad++;
    for (uint32_t i = 0; i < m->n_entries; i++) /* touch every payload byte (ASan) */
        for (uint32_t k = 0; k < m->entries[i].len; k++)
            s->sum += m->entries[i].data[k];
}

static void sink_state(void *ctx, raft_id peer, bool up)
{
    struct sink *s = ctx;
    s->ups += up;
}

static int sink_snap_begin(void *ctx, raft_id from, const struct raft_msg *m, uint64_t size)
{
    struct sink *s = ctx;
    s->snap_open++;
    return 0;
}

static int sink_snap_chunk(void *ctx, raft_id from, uint64_t off, const uint8_t *d, size_t n)
{
    return 0;
}

static int sink_snap_end(void *ctx, raft_id from, int status)
{
    struct sink *s = ctx;
    s->snap_open--;
    return 0;
}

static void sink_done(void *arg)
{
    struct sink *s = arg;
    s->done = true;
}

static struct st_tr *sink_start(struct sink *s, raft_id id)
{
    memset(s, 0, sizeof(*s));
    s->id = id;
    struct st_tr_config cfg;
    st_tr_config_default(&cfg, id, CLUSTER, "127.0.0.1:0");
    cfg.reconnect_base_ms = 5;
    cfg.reconnect_max_ms = 20;
    struct st_tr_callbacks cbs = {.ctx = s,
                                  .msg_cb = sink_msg,
                                  .peer_state_cb = sink_state,
                                  .snapshot_begin_cb = sink_snap_begin,
                                  .snapshot_chunk_cb = sink_snap_chunk,
                                  .snapshot_end_cb = sink_snap_end};
    struct st_tr *tr;
    ST_ASSERT(st_tr_create(&loop, &cfg, &cbs, &tr) == 0);
    ST_ASSERT(st_tr_start(tr) == 0);
    return tr;
}

struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    uint8_t data[STREAM_MAX];
    uint8_t rbuf[256];
    size_t len;
    bool eof, closed;
};

static void raw_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    struct raw *r = h->data;
    *b = uv_buf_init((char *)r->rbuf, sizeof(r->rbuf));
}

static void raw_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct raw *r = st->data;
    if (n < 0) {
        r->eof = true;
        uv_read_stop(st);
    }
}

static void raw_shutdown_done(uv_shutdown_t *req, int status) {}

static void raw_written(uv_write_t *req, int status)
{
    struct raw *r = req->data;
    if (status == 0) uv_shutdown(&r->sreq, (uv_stream_t *)&r->tcp, raw_shutdown_done);
}

static void raw_connected(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    if (status != 0) {
        r->eof = true;
        return;
    }
    uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read);
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)r->len);
    r->wreq.data = r;
    if (uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, raw_written) != 0) r->eof = true;
}

static void raw_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = true;
}

TEST(mutated_streams_against_a_live_transport)
{
    ST_ASSERT(uv_loop_init(&loop) == 0);
    uv_timer_init(&loop, &watchdog);
    struct sink b, c;
    struct st_tr *tb = sink_start(&b, 2);
    struct st_tr *tc = sink_start(&c, 3);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", st_tr_listen_port(tc));
    ASSERT_EQ(st_tr_peer_add(tb, 3, addr), 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", st_tr_listen_port(tb));
    ASSERT_EQ(st_tr_peer_add(tc, 2, addr), 0);
    ASSERT_EQ(st_tr_peer_add(tb, 1, "127.0.0.1:1"), 0); /* the identity the raw streams claim */
    RUN_UNTIL(b.ups >= 1 && c.ups == 1);

    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", st_tr_listen_port(tb), &sa);
    struct st_rng rng;
    st_rng_init(&rng, 99);
    static uint8_t base[STREAM_MAX];
    size_t blen = valid_stream(base);
    static struct raw r;
    for (int iter = 0; iter < 150; iter++) {
        memset(&r, 0, sizeof(r));
        memcpy(r.data, base, blen);
        r.len = iter == 0 ? blen : mutate_stream(&rng, r.data, blen);
        uv_tcp_init(&loop, &r.tcp);
        r.tcp.data = r.creq.data = &r;
        ASSERT_EQ(uv_tcp_connect(&r.creq, &r.tcp, (const struct sockaddr *)&sa, raw_connected), 0);
        RUN_UNTIL(r.eof); /* the transport closed it, or we shut down and it answered EOF */
        uv_close((uv_handle_t *)&r.tcp, raw_closed);
        RUN_UNTIL(r.closed);
        if (iter == 0) /* the unmutated stream is fully accepted */
            RUN_UNTIL(b.msgs == 3);
    }
    ASSERT_EQ(b.bad, 0);
    ASSERT_EQ(b.snap_open, 0); /* every accepted snapshot begin got exactly one end */
    struct st_tr_stats st;
    st_tr_stats_get(tb, &st);
    ASSERT_GE(st.protocol_errors, 20);
    /* The real link still works both ways. */
    RUN_UNTIL(st_tr_peer_connected(tb, 3) && st_tr_peer_connected(tc, 2));
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 3, .term = 1};
    uint64_t before = c.msgs;
    ASSERT_EQ(st_tr_send(tb, &hb), 0);
    RUN_UNTIL(c.msgs == before + 1);
    hb.from = 3;
    hb.to = 2;
    before = b.msgs;
    ASSERT_EQ(st_tr_send(tc, &hb), 0);
    RUN_UNTIL(b.msgs == before + 1);

    st_tr_destroy(tb, sink_done, &b);
    st_tr_destroy(tc, sink_done, &c);
    RUN_UNTIL(b.done && c.done);
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

TEST_MAIN()
