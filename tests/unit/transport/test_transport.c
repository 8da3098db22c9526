/* TCP transport, 2-3 transports in one libuv loop on 127.0.0.1 ephemeral
 * ports. Every wait is event-driven: the loop runs until a condition holds,
 * with a watchdog timer that fails the test instead of hanging (never a
 * sleep, never a timing assertion). */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "stcache/api.h"
#include "stcache/errors.h"
#include "test.h"
#include "transport/frame.h"
#include "transport/transport.h"
#include "transport/transport_int.h"
#include "util/assert.h"
#include "wire/le.h"
#include "wire/msg.h"

/* test_transport_tls.c includes this file with ST_TR_TEST_TLS defined: every
 * test then runs over mutual TLS, except those whose fake peers speak the
 * plaintext protocol on a raw socket (PLAIN_TEST). */
#ifdef ST_TR_TEST_TLS
#define PLAIN_TEST(name) __attribute__((unused)) static void test_##name(void)
static const char *tls_dir = ""; /* certificates of nodes 1..5 (test_transport_tls.c) */
static char tls_paths[3][320];
#else
#define PLAIN_TEST(name) TEST(name)
#endif

#define WATCHDOG_MS 20000
#define CLUSTER 0xC1u

static uv_loop_t loop;
static uv_timer_t watchdog;
static bool watchdog_fired;

static void on_watchdog(uv_timer_t *t)
{
    watchdog_fired = true;
}

static void loop_setup(void)
{
    ST_ASSERT(uv_loop_init(&loop) == 0);
    uv_timer_init(&loop, &watchdog);
}

#define RUN_UNTIL(cond)                                                                            \
    do {                                                                                           \
        watchdog_fired = false;                                                                    \
        uv_timer_start(&watchdog, on_watchdog, WATCHDOG_MS, 0);                                    \
        /* NOWAIT first: ONCE runs due timers, then blocks in poll even if a                       \
         * timer callback just made cond true. */                                                  \
        while (!(cond) && !watchdog_fired) {                                                       \
            uv_run(&loop, UV_RUN_NOWAIT);                                                          \
            if (!(cond)) uv_run(&loop, UV_RUN_ONCE);                                               \
        }                                                                                          \
        uv_timer_stop(&watchdog);                                                                  \
        if (!(cond)) ST_TEST_FAIL_("watchdog: still not true: %s", #cond);                         \
    } while (0)

/* ------------------------------------------------------------- endpoints */

struct ep {
    struct st_tr *tr;
    raft_id id;
    int port;
    bool done;
    char addr[64];
    uint64_t n_msgs;
    uint64_t n_append;
    uint64_t next_seq[8]; /* per sender: expected context of the next APPEND */
    bool order_ok;
    uint64_t payload_bytes;
    /* Entries kept past the callback (as the core does), checked later. */
    struct raft_entry kept[32];
    uint64_t kept_seed[32];
    int n_kept;
    uint64_t n_up, n_down;
    uint64_t send_failed;
    uint64_t send_busy; /* back-pressure reports */
    bool resend_on_fail;
    raft_id remove_on_busy;    /* send_failed_cb(EBUSY) removes this peer */
    bool remove_peer_in_begin; /* snapshot_begin_cb removes the sender */
    bool destroy_in_end;       /* snapshot_end_cb(0) destroys the transport */
    /* inbound snapshot */
    uint64_t snap_begins, snap_ends, snap_chunks, snap_bytes, snap_size;
    int snap_end_status;
    int snap_refuse;          /* begin returns this */
    uint64_t snap_fail_chunk; /* chunk_cb fails at this chunk number (1-based), 0 = never */
    int snap_fail_status;
    bool snap_destroy_at_fail; /* instead of failing: destroy this transport */
    bool snap_defer;           /* chunk and end callbacks answer ST_TR_CB_PENDING */
    int snap_deferred;         /* calls answered ST_TR_CB_PENDING, not yet resumed */
    int snap_deferred_max;
    bool snap_content_ok;
    size_t chunk_max;
    bool snap_in_progress;
    uint64_t hb_during_snap;
    struct ep *hb_sender; /* on each chunk, this endpoint sends us a heartbeat */
    uint64_t snapshots_delivered;
    struct raft_snapshot_meta delivered_meta;
    /* outbound snapshot */
    uint64_t snap_sent_n;
    int snap_sent_status;
};

static uint8_t pattern_byte(uint64_t off)
{
    return (uint8_t)((off * 2654435761u) >> 13);
}

static void ep_msg_cb(void *ctx, raft_id from, const struct raft_msg *m)
{
    struct ep *e = ctx;
    e->n_msgs++;
    ST_ASSERT(m->from == from && m->to == e->id);
    if (m->type == RAFT_MSG_APPEND) {
        e->n_append++;
        if (m->context != e->next_seq[from]) e->order_ok = false;
        e->next_seq[from] = m->context + 1;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *en = &m->entries[i];
            e->payload_bytes += en->len;
            if (en->index != m->index + 1 + i) e->order_ok = false;
            for (uint32_t k = 0; k < en->len; k++)
                if (en->data[k] != (uint8_t)(m->context + i + k)) e->order_ok = false;
            /* zero-copy: the payload lies inside its owner buffer, and that
             * buffer holds this one frame only (its body, or the whole frame
             * for big frames), never a shared read buffer. */
            if (en->len > 0 && (en->buf == NULL || en->data < en->buf->data ||
                                en->data + en->len > en->buf->data + en->buf->cap))
                e->order_ok = false;
            uint64_t body = wire_msg_size(m);
            if (en->len > 0 && en->buf != NULL && en->buf->cap != body &&
                en->buf->cap != body + FRAME_HEADER_SIZE)
                e->order_ok = false;
            if (en->len > 0 && e->n_kept < 32 && m->context % 7 == 3) {
                raft_buf_ref(en->buf);
                e->kept[e->n_kept] = *en;
                e->kept_seed[e->n_kept++] = m->context + i;
            }
        }
    } else if (m->type == RAFT_MSG_HEARTBEAT) {
        if (e->snap_in_progress) e->hb_during_snap++;
    } else if (m->type == RAFT_MSG_SNAPSHOT) {
        e->snapshots_delivered++;
        e->delivered_meta = *m->snapshot;
    }
}

static void ep_peer_state_cb(void *ctx, raft_id peer, bool up)
{
    struct ep *e = ctx;
    if (up)
        e->n_up++;
    else
        e->n_down++;
}

static void send_heartbeat(struct ep *from, raft_id to, uint64_t ctx);

static void ep_send_failed_cb(void *ctx, raft_id peer, uint8_t type, int status)
{
    struct ep *e = ctx;
    if (status == ST_EBUSY)
        e->send_busy++;
    else
        e->send_failed++;
    if (status == ST_EBUSY && e->remove_on_busy != 0) {
        ST_ASSERT(st_tr_peer_remove(e->tr, e->remove_on_busy) == 0);
        e->remove_on_busy = 0;
    }
    if (e->resend_on_fail) /* a node that retries at once must not loop us forever */
        send_heartbeat(e, peer, e->send_failed);
}

static int ep_snap_begin(void *ctx, raft_id from, const struct raft_msg *m, uint64_t size)
{
    struct ep *e = ctx;
    ST_ASSERT(m->type == RAFT_MSG_SNAPSHOT && m->snapshot != NULL);
    if (e->snap_refuse != 0) return e->snap_refuse;
    if (e->remove_peer_in_begin) ST_ASSERT(st_tr_peer_remove(e->tr, from) == 0);
    e->snap_begins++;
    e->snap_chunks = e->snap_bytes = 0;
    e->snap_size = size;
    e->snap_content_ok = true;
    e->snap_in_progress = true;
    return 0;
}

static void ep_done(void *arg);

static int ep_snap_chunk(void *ctx, raft_id from, uint64_t off, const uint8_t *data, size_t len)
{
    struct ep *e = ctx;
    e->snap_chunks++;
    if (off != e->snap_bytes) e->snap_content_ok = false;
    for (size_t i = 0; i < len; i++)
        if (data[i] != pattern_byte(off + i)) {
            e->snap_content_ok = false;
            break;
        }
    e->snap_bytes += len;
    if (len > e->chunk_max) e->chunk_max = len;
    if (e->hb_sender != NULL) send_heartbeat(e->hb_sender, e->id, e->snap_chunks);
    if (e->snap_defer) {
        e->snap_deferred++;
        if (e->snap_deferred > e->snap_deferred_max) e->snap_deferred_max = e->snap_deferred;
        return ST_TR_CB_PENDING;
    }
    if (e->snap_fail_chunk != 0 && e->snap_chunks == e->snap_fail_chunk) {
        if (e->snap_destroy_at_fail) { /* the receiver dies inside its own callback */
            st_tr_destroy(e->tr, ep_done, e);
            e->tr = NULL;
            return 0;
        }
        return e->snap_fail_status;
    }
    return 0;
}

static int ep_snap_end(void *ctx, raft_id from, int status)
{
    struct ep *e = ctx;
    e->snap_ends++;
    e->snap_end_status = status;
    e->snap_in_progress = false;
    if (status == 0 && e->snap_defer) {
        e->snap_deferred++;
        return ST_TR_CB_PENDING;
    }
    if (status == 0 && e->destroy_in_end) {
        st_tr_destroy(e->tr, ep_done, e);
        e->tr = NULL;
    }
    return 0;
}

static void ep_snap_sent(void *ctx, raft_id to, int status)
{
    struct ep *e = ctx;
    e->snap_sent_n++;
    e->snap_sent_status = status;
}

static void ep_done(void *arg)
{
    struct ep *e = arg;
    e->done = true;
}

/* With ST_TR_TEST_TLS: node id's certificate (the paths stay valid until
 * the next call; st_tr_create reads them). */
static void ep_tls(struct st_tr_config *cfg, raft_id id)
{
#ifdef ST_TR_TEST_TLS
    snprintf(tls_paths[0], sizeof tls_paths[0], "%s/node-%" PRIu64 ".crt", tls_dir, id);
    snprintf(tls_paths[1], sizeof tls_paths[1], "%s/node-%" PRIu64 ".key", tls_dir, id);
    snprintf(tls_paths[2], sizeof tls_paths[2], "%s/ca.crt", tls_dir);
    cfg->tls_cert_file = tls_paths[0];
    cfg->tls_key_file = tls_paths[1];
    cfg->tls_ca_file = tls_paths[2];
#else
    (void)cfg;
    (void)id;
#endif
}

static void ep_config(struct st_tr_config *cfg, raft_id id, uint64_t cluster, int port)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    st_tr_config_default(cfg, id, cluster, addr);
    cfg->reconnect_base_ms = 5;
    cfg->reconnect_max_ms = 40;
    cfg->handshake_timeout_ms = 5000;
    ep_tls(cfg, id);
}

static void ep_start_cfg(struct ep *e, const struct st_tr_config *cfg)
{
    struct st_tr_callbacks cbs = {
        .ctx = e,
        .msg_cb = ep_msg_cb,
        .peer_state_cb = ep_peer_state_cb,
        .send_failed_cb = ep_send_failed_cb,
        .snapshot_begin_cb = ep_snap_begin,
        .snapshot_chunk_cb = ep_snap_chunk,
        .snapshot_end_cb = ep_snap_end,
        .snapshot_sent_cb = ep_snap_sent,
    };
    memset(e, 0, sizeof(*e));
    e->order_ok = true;
    e->id = cfg->self_id;
    ST_ASSERT(st_tr_create(&loop, cfg, &cbs, &e->tr) == 0);
    ST_ASSERT(st_tr_start(e->tr) == 0);
    e->port = st_tr_listen_port(e->tr);
    ST_ASSERT(e->port > 0);
    snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", e->port);
}

static void ep_start(struct ep *e, raft_id id, uint64_t cluster, int port)
{
    struct st_tr_config cfg;
    ep_config(&cfg, id, cluster, port);
    ep_start_cfg(e, &cfg);
}

/* The kept entries still hold their bytes after much more traffic. */
static bool ep_release_kept(struct ep *e)
{
    bool ok = true;
    for (int j = 0; j < e->n_kept; j++) {
        for (uint32_t k = 0; k < e->kept[j].len; k++)
            ok = ok && e->kept[j].data[k] == (uint8_t)(e->kept_seed[j] + k);
        raft_buf_unref(e->kept[j].buf);
    }
    e->n_kept = 0;
    return ok;
}

static void ep_destroy(struct ep *e)
{
    ST_ASSERT(ep_release_kept(e));
    e->done = false;
    st_tr_destroy(e->tr, ep_done, e);
    e->tr = NULL;
    RUN_UNTIL(e->done);
}

static void link_peers(struct ep *a, struct ep *b)
{
    ST_ASSERT(st_tr_peer_add(a->tr, b->id, b->addr) == 0);
    ST_ASSERT(st_tr_peer_add(b->tr, a->id, a->addr) == 0);
}

static void loop_teardown(void)
{
    uv_close((uv_handle_t *)&watchdog, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rv = uv_loop_close(&loop);
    if (rv != 0) ST_TEST_FAIL_("uv_loop_close: %s (a handle leaked)", uv_strerror(rv));
}

static void send_heartbeat(struct ep *from, raft_id to, uint64_t ctx)
{
    struct raft_msg m = {
        .type = RAFT_MSG_HEARTBEAT, .from = from->id, .to = to, .term = 1, .context = ctx};
    st_tr_send(from->tr, &m);
}

/* An APPEND whose context is a per-destination sequence number and whose
 * entries carry a recognisable pattern, all slices of one raft_buf. */
static int send_append(struct ep *from, raft_id to, uint64_t seq, uint32_t n_entries,
                       uint32_t entry_len)
{
    struct raft_entry ents[8];
    ST_ASSERT(n_entries <= 8);
    size_t total = (size_t)n_entries * entry_len;
    struct raft_buf *b = raft_buf_create(total ? total : 1);
    for (uint32_t i = 0; i < n_entries; i++) {
        for (uint32_t k = 0; k < entry_len; k++)
            b->data[i * entry_len + k] = (uint8_t)(seq + i + k);
        ents[i] = (struct raft_entry){.term = 1,
                                      .index = seq * 10 + 1 + i,
                                      .type = RAFT_ENTRY_NORMAL,
                                      .buf = b,
                                      .data = b->data + i * entry_len,
                                      .len = entry_len};
    }
    struct raft_msg m = {.type = RAFT_MSG_APPEND,
                         .from = from->id,
                         .to = to,
                         .term = 1,
                         .index = seq * 10,
                         .context = seq,
                         .n_entries = n_entries,
                         .entries = ents};
    int rv = st_tr_send(from->tr, &m);
    raft_buf_unref(b); /* the transport holds its own references */
    return rv;
}

/* ----------------------------------------------------------------- tests */

TEST(messages_are_delivered_in_order_across_three_transports)
{
    loop_setup();
    struct ep e[3];
    for (int i = 0; i < 3; i++)
        ep_start(&e[i], (raft_id)i + 1, CLUSTER, 0);
    link_peers(&e[0], &e[1]);
    link_peers(&e[0], &e[2]);
    link_peers(&e[1], &e[2]);
    /* Sent before any connection exists: queued, then flushed in order. */
    const uint64_t n = 300;
    for (uint64_t s = 0; s < n; s++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (i != j)
                    ASSERT_EQ(send_append(&e[i], (raft_id)(j + 1), s, (uint32_t)(s % 4),
                                          (uint32_t)(s % 97)),
                              0);
    RUN_UNTIL(e[0].n_append == 2 * n && e[1].n_append == 2 * n && e[2].n_append == 2 * n);
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(e[i].order_ok);
        ASSERT_EQ(e[i].n_up, 2);
        ASSERT_TRUE(st_tr_peer_connected(e[i].tr, (raft_id)((i + 1) % 3 + 1)));
        struct st_tr_stats st;
        st_tr_stats_get(e[i].tr, &st);
        ASSERT_EQ(st.msgs_sent, 2 * n);
        ASSERT_EQ(st.msgs_received, 2 * n);
        ASSERT_EQ(st.msgs_dropped, 0);
        ASSERT_EQ(st.protocol_errors, 0);
        ASSERT_EQ(st.connects, 2); /* one connection per pair, seen from both ends */
    }
    /* Large payloads take the dedicated-buffer path (frames > 32 KiB). */
    ASSERT_EQ(send_append(&e[0], 2, n, 8, 100000), 0);
    ASSERT_EQ(send_append(&e[0], 2, n + 1, 1, 1), 0);
    RUN_UNTIL(e[1].n_append == 2 * n + 2);
    ASSERT_TRUE(e[1].order_ok);
    /* Appends larger than the socket takes at once: the first goes in part
     * straight to the socket and the rest through uv_write, the others
     * queue behind it, all intact and in order. */
    for (uint64_t s = n + 2; s < n + 6; s++)
        ASSERT_EQ(send_append(&e[0], 2, s, 8, 256u << 10), 0);
    RUN_UNTIL(e[1].n_append == 2 * n + 6);
    ASSERT_TRUE(e[1].order_ok);
    for (int i = 0; i < 3; i++) {
        ASSERT_GE(e[i].n_kept, 20);
        ASSERT_TRUE(ep_release_kept(&e[i]));
    }
    for (int i = 0; i < 3; i++)
        ep_destroy(&e[i]);
    loop_teardown();
}

TEST(a_connection_reads_at_most_a_turns_budget_per_loop_turn)
{
    /* A burst of appends (8 of 1 MiB) over one connection: libuv reads a
     * readable socket up to 32 times per loop turn, and a follower catching
     * up took 2-4 MiB of appends in one turn (each byte then persisted and
     * applied in the same turn: 20-40 ms of loop). A turn now reads at most
     * ST_TR_READ_TURN_BYTES (plus the read that crosses it); the rest waits
     * for the next turn, and every append arrives intact and in order. */
    loop_setup();
    struct ep e[2];
    ep_start(&e[0], 1, CLUSTER, 0);
    ep_start(&e[1], 2, CLUSTER, 0);
    link_peers(&e[0], &e[1]);
    ASSERT_EQ(send_append(&e[0], 2, 0, 1, 1), 0);
    RUN_UNTIL(e[1].n_append == 1);
    const uint64_t n = 8;
    for (uint64_t s = 1; s <= n; s++)
        ASSERT_EQ(send_append(&e[0], 2, s, 8, 128u << 10), 0);
    struct st_tr_stats st;
    st_tr_stats_get(e[1].tr, &st);
    uint64_t start = st.bytes_received, before = start, most = 0;
    for (int turn = 0; e[1].n_append < n + 1 && turn < 1000000; turn++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        st_tr_stats_get(e[1].tr, &st);
        if (st.bytes_received - before > most) most = st.bytes_received - before;
        before = st.bytes_received;
    }
    ASSERT_EQ(e[1].n_append, n + 1);
    ASSERT_TRUE(e[1].order_ok);
    ASSERT_LE(most, 2 * (uint64_t)ST_TR_READ_TURN_BYTES);
    ASSERT_GE(st.read_turn_pauses, 1);
    /* ... and a resumed connection has a whole budget again, though its
     * next turn may fall in the same millisecond (turns are counted per
     * uv_now()): a pause follows a budget's worth of reading, never a
     * single read. (+ 1: the first append's bytes may count in the first
     * turn.) */
    ASSERT_LE(st.read_turn_pauses, (st.bytes_received - start) / ST_TR_READ_TURN_BYTES + 1);
    ASSERT_EQ(st.protocol_errors, 0);
    for (int i = 0; i < 2; i++)
        ASSERT_TRUE(ep_release_kept(&e[i]));
    for (int i = 0; i < 2; i++)
        ep_destroy(&e[i]);
    loop_teardown();
}

static int sockopt(int fd, int level, int name)
{
    int v = 0;
    socklen_t len = sizeof(v);
    ST_ASSERT(getsockopt(fd, level, name, &v, &len) == 0);
    return v;
}

TEST(connections_use_nodelay_and_keepalive)
{
    /* Nagle + delayed ACK would hold small Raft messages back for tens of ms. */
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    int fa = st_tr_peer_fd(a.tr, 2), fb = st_tr_peer_fd(b.tr, 1);
    ASSERT_TRUE(fa >= 0 && fb >= 0);
    ASSERT_NE(sockopt(fa, IPPROTO_TCP, TCP_NODELAY), 0); /* dialed */
    ASSERT_NE(sockopt(fb, IPPROTO_TCP, TCP_NODELAY), 0); /* accepted */
    ASSERT_NE(sockopt(fa, SOL_SOCKET, SO_KEEPALIVE), 0);
    ASSERT_NE(sockopt(fb, SOL_SOCKET, SO_KEEPALIVE), 0);
    ASSERT_EQ(st_tr_peer_fd(a.tr, 9), -1);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(dialer_reconnects_after_the_peer_restarts)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    int port = b.port;
    ep_destroy(&b);
    RUN_UNTIL(a.n_down == 1);
    ASSERT_FALSE(st_tr_peer_connected(a.tr, 2));
    /* Messages sent while the peer is down queue or are reported lost, never stuck. */
    ep_start(&b, 2, CLUSTER, port);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, a.addr), 0);
    RUN_UNTIL(a.n_up == 2 && b.n_up == 1);
    struct st_tr_stats st;
    st_tr_stats_get(a.tr, &st);
    ASSERT_GE(st.reconnects, 1);
    for (uint64_t s = 0; s < 10; s++) {
        ASSERT_EQ(send_append(&a, 2, s, 1, 5), 0);
        ASSERT_EQ(send_append(&b, 1, s, 2, 3), 0);
    }
    RUN_UNTIL(a.n_append == 10 && b.n_append == 10);
    ASSERT_TRUE(a.order_ok && b.order_ok);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(acceptor_takes_the_new_connection_when_the_dialer_restarts)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    ep_destroy(&a); /* the dialer goes away and comes back on another port */
    RUN_UNTIL(b.n_down == 1);
    ep_start(&a, 1, CLUSTER, 0);
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, b.addr), 0);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 2);
    ASSERT_EQ(send_append(&b, 1, 0, 1, 1), 0);
    RUN_UNTIL(a.n_append == 1);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

static bool refused_both(struct ep *a, struct ep *b, uint64_t n)
{
    struct st_tr_stats sa, sb;
    st_tr_stats_get(a->tr, &sa);
    st_tr_stats_get(b->tr, &sb);
    /* With TLS a dialer drops an acceptor whose certificate names another
     * node before any HELLO: a TLS failure, not a refused HELLO. */
    return sa.handshakes_refused + sa.tls_failures >= n &&
           sb.handshakes_refused + sb.tls_failures >= n;
}

TEST(handshake_refuses_a_peer_from_another_cluster)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER + 1, 0);
    link_peers(&a, &b);
    RUN_UNTIL(refused_both(&a, &b, 3));
    struct st_tr_stats sa;
    st_tr_stats_get(a.tr, &sa);
    ASSERT_EQ(a.n_up + b.n_up, 0);
    ASSERT_FALSE(st_tr_peer_connected(a.tr, 2));
    ASSERT_GE(sa.reconnects, 2); /* it keeps retrying with backoff */
    /* Messages for the refused peer are reported lost, not kept forever, even
     * when the failure callback sends again right away. */
    a.resend_on_fail = true;
    ASSERT_EQ(send_append(&a, 2, 0, 0, 0), 0);
    RUN_UNTIL(a.send_failed >= 3);
    a.resend_on_fail = false;
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(handshake_refuses_a_wrong_node_id)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    /* a expects node 5 at b's address: b (id 2) refuses (with TLS a drops
     * b first: its certificate names node 2). */
    ASSERT_EQ(st_tr_peer_add(a.tr, 5, b.addr), 0);
    struct st_tr_stats sa;
    RUN_UNTIL((st_tr_stats_get(a.tr, &sa), sa.handshakes_refused + sa.tls_failures >= 2));
    ASSERT_EQ(a.n_up + b.n_up, 0);
    ASSERT_FALSE(st_tr_peer_connected(a.tr, 5));
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

/* A node restarted from a state older than the addition of a member does
 * not know it; when that member (a larger id) became leader, nobody dialed:
 * the larger id never dialed and an unknown dialer was refused, so the node
 * never heard of its leader (nemesis seed 8369). */
TEST(a_larger_id_dials_a_smaller_one_that_does_not_know_it)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, a.addr), 0); /* a does not know b */
    ASSERT_EQ(send_append(&b, 1, 0, 1, 4), 0);
    RUN_UNTIL(a.n_append == 1 && a.n_up == 1 && b.n_up == 1);
    ASSERT_TRUE(a.order_ok);
    /* a answers the peer it learned from the HELLO, over that connection. */
    ASSERT_TRUE(st_tr_peer_connected(a.tr, 2));
    ASSERT_EQ(send_append(&a, 2, 0, 1, 3), 0);
    RUN_UNTIL(b.n_append == 1);
    ASSERT_TRUE(b.order_ok);
    /* It is forgotten with its connection: nothing to send to, nothing to
     * remove, and adding it later is a plain add. */
    ep_destroy(&b);
    RUN_UNTIL(a.n_down == 1);
    ASSERT_EQ(send_append(&a, 2, 1, 1, 3), ST_ENOENT);
    ASSERT_EQ(st_tr_peer_remove(a.tr, 2), ST_ENOENT);
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, "127.0.0.1:1"), 0);
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, "127.0.0.1:1"), ST_EEXIST);
    ep_destroy(&a);
    loop_teardown();
}

/* A learned peer whose link a newer connection replaces (its process
 * restarted) stays a peer: the replaced link's end used to forget it while
 * the new connection was attached to it, freed a moment later. */
TEST(a_learned_peer_whose_link_is_replaced_stays_a_peer)
{
    loop_setup();
    struct ep a, b1, b2;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b1, 2, CLUSTER, 0);
    ASSERT_EQ(st_tr_peer_add(b1.tr, 1, a.addr), 0);
    RUN_UNTIL(a.n_up == 1 && b1.n_up == 1);
    /* node 2 again, from another port, while the first link is still open
     * (and idle: it may be replaced without TLS too) */
    ep_start(&b2, 2, CLUSTER, 0);
    ASSERT_EQ(st_tr_peer_add(b2.tr, 1, a.addr), 0);
    RUN_UNTIL(b2.n_up == 1 && b1.n_down == 1);
    ep_destroy(&b1);
    ASSERT_TRUE(st_tr_peer_connected(a.tr, 2));
    ASSERT_EQ(send_append(&a, 2, 0, 1, 3), 0);
    RUN_UNTIL(b2.n_append == 1);
    ASSERT_EQ(send_append(&b2, 1, 0, 1, 3), 0);
    RUN_UNTIL(a.n_append == 1);
    ep_destroy(&b2);
    RUN_UNTIL(a.n_down == 2);
    ASSERT_EQ(send_append(&a, 2, 1, 1, 3), ST_ENOENT);
    ep_destroy(&a);
    loop_teardown();
}

TEST(an_unknown_dialer_becomes_a_peer_when_added_and_keeps_its_connection)
{
    loop_setup();
    struct ep b, c;
    ep_start(&b, 2, CLUSTER, 0);
    ep_start(&c, 3, CLUSTER, 0);
    /* b dials c (the smaller id), c does not know b yet. */
    ASSERT_EQ(st_tr_peer_add(b.tr, 3, c.addr), 0);
    RUN_UNTIL(b.n_up == 1 && c.n_up == 1);
    ASSERT_EQ(st_tr_peer_add(c.tr, 2, b.addr), 0);
    ASSERT_EQ(st_tr_peer_add(c.tr, 2, b.addr), ST_EEXIST);
    for (uint64_t s = 0; s < 5; s++) {
        ASSERT_EQ(send_append(&b, 3, s, 1, 5), 0);
        ASSERT_EQ(send_append(&c, 2, s, 2, 3), 0);
    }
    RUN_UNTIL(b.n_append == 5 && c.n_append == 5);
    ASSERT_TRUE(b.order_ok && c.order_ok);
    ASSERT_EQ(b.n_down + c.n_down, 0); /* the same connection all along */
    /* Now a peer: removed like any other, and its link goes. */
    ASSERT_EQ(st_tr_peer_remove(c.tr, 2), 0);
    RUN_UNTIL(b.n_down == 1);
    ep_destroy(&b);
    ep_destroy(&c);
    loop_teardown();
}

/* At most ST_TR_LEARNED_MAX dialers that are not peers at a time (with
 * TLS the test certificates name nodes 1-5 only). */
PLAIN_TEST(dialers_that_are_not_peers_are_bounded)
{
    loop_setup();
    struct ep a, d[ST_TR_LEARNED_MAX + 1];
    ep_start(&a, 1, CLUSTER, 0);
    for (int i = 0; i < ST_TR_LEARNED_MAX + 1; i++) {
        ep_start(&d[i], (raft_id)i + 2, CLUSTER, 0);
        ASSERT_EQ(st_tr_peer_add(d[i].tr, 1, a.addr), 0);
    }
    struct st_tr_stats sa;
    RUN_UNTIL(a.n_up == ST_TR_LEARNED_MAX &&
              (st_tr_stats_get(a.tr, &sa), sa.handshakes_refused >= 1));
    ASSERT_EQ(a.n_up, ST_TR_LEARNED_MAX);
    /* One of the connected ones leaves: the refused one gets in on its next
     * dial. */
    int gone = -1;
    for (int i = 0; i < ST_TR_LEARNED_MAX + 1 && gone < 0; i++)
        if (st_tr_peer_connected(d[i].tr, 1)) gone = i;
    ASSERT_TRUE(gone >= 0);
    ep_destroy(&d[gone]);
    RUN_UNTIL(a.n_up == ST_TR_LEARNED_MAX + 1);
    for (int i = 0; i < ST_TR_LEARNED_MAX + 1; i++)
        if (i != gone) ep_destroy(&d[i]);
    ep_destroy(&a);
    loop_teardown();
}

/* ------------------------------------------------ raw sockets (fake peers) */

struct raw {
    uv_tcp_t server, conn;
    bool server_open, conn_open, connected, eof, closed;
    uint8_t in[1 << 16];
    size_t in_len;
    /* fake acceptor: answer the first HELLO with this ack, then maybe stop reading */
    bool answer_hello;
    uint64_t ack_node_id;
    bool stop_reading;
    bool hello_seen;
    struct frame_hello hello;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t out[1 << 16];
    bool writing;
};

static void raw_alloc(uv_handle_t *h, size_t s, uv_buf_t *buf)
{
    struct raw *r = h->data;
    *buf = uv_buf_init((char *)r->in + r->in_len, (unsigned)(sizeof(r->in) - r->in_len));
}

static void raw_write_done(uv_write_t *req, int status)
{
    struct raw *r = req->data;
    r->writing = false;
}

static void raw_write(struct raw *r, const uint8_t *data, size_t len)
{
    ST_ASSERT(len <= sizeof(r->out) && !r->writing);
    r->writing = true;
    r->wreq.data = r;
    memcpy(r->out, data, len);
    uv_buf_t b = uv_buf_init((char *)r->out, (unsigned)len);
    ST_ASSERT(uv_write(&r->wreq, (uv_stream_t *)&r->conn, &b, 1, raw_write_done) == 0);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    if (n < 0) {
        r->eof = true;
        uv_read_stop(s);
        return;
    }
    r->in_len += (size_t)n;
    if (r->in_len == sizeof(r->in)) r->in_len = 0; /* we only look at the beginning */
    if (r->answer_hello && !r->hello_seen && r->in_len >= FRAME_HEADER_SIZE) {
        uint32_t body = le_get32(r->in);
        if (r->in_len < FRAME_HEADER_SIZE + body) return;
        ST_ASSERT(frame_hello_decode(r->in + FRAME_HEADER_SIZE, body, &r->hello) == 0);
        r->hello_seen = true;
        struct frame_hello_ack ack = {.proto_version = FRAME_PROTO_VERSION,
                                      .status = 0,
                                      .cluster_id = CLUSTER,
                                      .node_id = r->ack_node_id};
        uint8_t frame[FRAME_HEADER_SIZE + FRAME_HELLO_ACK_SIZE] = {0};
        size_t len = frame_hello_ack_encode(&ack, frame + FRAME_HEADER_SIZE);
        frame_header_encode(frame, FRAME_HELLO_ACK, frame + FRAME_HEADER_SIZE, (uint32_t)len);
        raw_write(r, frame, sizeof(frame));
        if (r->stop_reading) uv_read_stop(s);
    }
}

static void raw_on_conn(uv_stream_t *server, int status)
{
    struct raw *r = server->data;
    ST_ASSERT(status == 0 && !r->conn_open);
    uv_tcp_init(&loop, &r->conn);
    r->conn.data = r;
    r->conn_open = true;
    ST_ASSERT(uv_accept(server, (uv_stream_t *)&r->conn) == 0);
    r->connected = true;
    uv_read_start((uv_stream_t *)&r->conn, raw_alloc, raw_read);
}

static int raw_listen(struct raw *r)
{
    memset(r, 0, sizeof(*r));
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(&loop, &r->server);
    r->server.data = r;
    r->server_open = true;
    ST_ASSERT(uv_tcp_bind(&r->server, (const struct sockaddr *)&sa, 0) == 0);
    ST_ASSERT(uv_listen((uv_stream_t *)&r->server, 8, raw_on_conn) == 0);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    uv_tcp_getsockname(&r->server, (struct sockaddr *)&ss, &len);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void raw_on_connect(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    ST_ASSERT(status == 0);
    r->connected = true;
    uv_read_start((uv_stream_t *)&r->conn, raw_alloc, raw_read);
}

static void raw_dial(struct raw *r, int port)
{
    memset(r, 0, sizeof(*r));
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(&loop, &r->conn);
    r->conn.data = r;
    r->conn_open = true;
    r->creq.data = r;
    ST_ASSERT(uv_tcp_connect(&r->creq, &r->conn, (const struct sockaddr *)&sa, raw_on_connect) ==
              0);
    RUN_UNTIL(r->connected);
}

static void raw_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = true;
}

static void raw_close(struct raw *r)
{
    if (r->conn_open) uv_close((uv_handle_t *)&r->conn, raw_closed);
    if (r->server_open) uv_close((uv_handle_t *)&r->server, NULL);
    if (r->conn_open) RUN_UNTIL(r->closed);
    r->conn_open = r->server_open = false;
}

static size_t hello_frame(uint8_t *out, uint64_t cluster, raft_id from, raft_id to)
{
    struct frame_hello h = {.proto_version = FRAME_PROTO_VERSION,
                            .cluster_id = cluster,
                            .from_id = from,
                            .to_id = to,
                            .addr_len = 3};
    memcpy(h.addr, "raw", 3);
    size_t len = frame_hello_encode(&h, out + FRAME_HEADER_SIZE);
    frame_header_encode(out, FRAME_HELLO, out + FRAME_HEADER_SIZE, (uint32_t)len);
    return FRAME_HEADER_SIZE + len;
}

static uint64_t protocol_errors(struct ep *e)
{
    struct st_tr_stats st;
    st_tr_stats_get(e->tr, &st);
    return st.protocol_errors;
}

PLAIN_TEST(garbage_on_the_port_closes_only_that_connection)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);

    /* 1. Random bytes instead of a handshake. */
    struct raw r;
    raw_dial(&r, b.port);
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    raw_write(&r, junk, sizeof(junk));
    RUN_UNTIL(r.eof);
    ASSERT_EQ(protocol_errors(&b), 1);
    raw_close(&r);

    /* 2. A frame header announcing more than frame_bytes_max. */
    raw_dial(&r, b.port);
    uint8_t big[FRAME_HEADER_SIZE];
    frame_header_start(big, FRAME_HELLO, 0x7FFFFFFFu);
    raw_write(&r, big, sizeof(big));
    RUN_UNTIL(r.eof);
    ASSERT_EQ(protocol_errors(&b), 2);
    raw_close(&r);

    /* 3. Before the handshake, anything larger than a HELLO is refused at
     *    once, long before frame_bytes_max: nothing is buffered for it. */
    raw_dial(&r, b.port);
    frame_header_start(big, FRAME_HELLO, FRAME_HELLO_BODY_MAX + 1);
    raw_write(&r, big, sizeof(big));
    RUN_UNTIL(r.eof);
    ASSERT_EQ(protocol_errors(&b), 3);
    raw_close(&r);

    /* 4. A valid HELLO frame with one bit flipped: CRC mismatch. */
    raw_dial(&r, b.port);
    uint8_t hello[FRAME_HEADER_SIZE + FRAME_HELLO_FIXED_SIZE + 8];
    size_t n = hello_frame(hello, CLUSTER, 1, 2);
    hello[n - 1] ^= 0x01;
    raw_write(&r, hello, n);
    RUN_UNTIL(r.eof);
    ASSERT_EQ(protocol_errors(&b), 4);
    raw_close(&r);

    /* The real peer link never noticed. */
    ASSERT_TRUE(st_tr_peer_connected(a.tr, 2) && st_tr_peer_connected(b.tr, 1));
    ASSERT_EQ(a.n_down + b.n_down, 0);
    ASSERT_EQ(send_append(&a, 2, 0, 2, 10), 0);
    RUN_UNTIL(b.n_append == 1);
    ASSERT_TRUE(b.order_ok);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

PLAIN_TEST(bad_crc_after_the_handshake_closes_the_connection)
{
    loop_setup();
    struct ep b;
    ep_start(&b, 2, CLUSTER, 0);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, "127.0.0.1:1"), 0);
    struct raw r;
    raw_dial(&r, b.port); /* pretends to be node 1 */
    uint8_t hello[FRAME_HEADER_SIZE + FRAME_HELLO_FIXED_SIZE + 8];
    size_t hello_len = hello_frame(hello, CLUSTER, 1, 2);
    raw_write(&r, hello, hello_len);
    RUN_UNTIL(b.n_up == 1 && r.in_len >= FRAME_HEADER_SIZE + FRAME_HELLO_ACK_SIZE);
    struct frame_hello_ack ack;
    RUN_UNTIL(r.in_len >= FRAME_HEADER_SIZE + le_get32(r.in));
    ASSERT_EQ(frame_hello_ack_decode(r.in + FRAME_HEADER_SIZE, le_get32(r.in), &ack), 0);
    ASSERT_EQ(ack.status, 0);
    ASSERT_EQ(ack.node_id, 2);
    ASSERT_TRUE(ack.versions.present); /* the acceptor announces its release */
    ASSERT_EQ(ack.versions.wire_msg, WIRE_MSG_VERSION);
    /* A Raft message frame with a corrupted body. */
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 3};
    uint8_t frame[FRAME_HEADER_SIZE + 128];
    size_t len;
    ASSERT_EQ(wire_msg_encode(&m, frame + FRAME_HEADER_SIZE, 128, &len), 0);
    frame_header_encode(frame, FRAME_MSG, frame + FRAME_HEADER_SIZE, (uint32_t)len);
    frame[FRAME_HEADER_SIZE + 30] ^= 0x40;
    raw_write(&r, frame, FRAME_HEADER_SIZE + len);
    RUN_UNTIL(r.eof && b.n_down == 1);
    ASSERT_EQ(protocol_errors(&b), 1);
    ASSERT_EQ(b.n_msgs, 0);
    raw_close(&r);
    ep_destroy(&b);
    loop_teardown();
}

PLAIN_TEST(handshake_refuses_a_release_two_minors_away)
{
    loop_setup();
    struct ep b;
    ep_start(&b, 2, CLUSTER, 0);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, "127.0.0.1:1"), 0);
    struct raw r;
    raw_dial(&r, b.port); /* node 1, but from a release two minors ahead */
    struct frame_hello h = {.proto_version = FRAME_PROTO_VERSION,
                            .cluster_id = CLUSTER,
                            .from_id = 1,
                            .to_id = 2,
                            .addr_len = 3};
    memcpy(h.addr, "raw", 3);
    frame_versions_self(&h.versions);
    h.versions.release_minor += 2;
    uint8_t hello[FRAME_HEADER_SIZE + FRAME_HELLO_BODY_MAX];
    size_t len = frame_hello_encode(&h, hello + FRAME_HEADER_SIZE);
    frame_header_encode(hello, FRAME_HELLO, hello + FRAME_HEADER_SIZE, (uint32_t)len);
    raw_write(&r, hello, FRAME_HEADER_SIZE + len);
    RUN_UNTIL(r.eof);
    struct frame_hello_ack ack;
    ASSERT_GE(r.in_len, (size_t)FRAME_HEADER_SIZE + FRAME_HELLO_ACK_SIZE);
    ASSERT_EQ(frame_hello_ack_decode(r.in + FRAME_HEADER_SIZE, le_get32(r.in), &ack), 0);
    ASSERT_EQ(ack.status, ST_EPROTO);
    struct st_tr_stats st;
    st_tr_stats_get(b.tr, &st);
    ASSERT_EQ(st.handshakes_refused, 1);
    ASSERT_EQ(b.n_up, 0);
    raw_close(&r);

    /* One minor ahead is a rolling upgrade: accepted. */
    raw_dial(&r, b.port);
    h.versions.release_minor -= 1;
    len = frame_hello_encode(&h, hello + FRAME_HEADER_SIZE);
    frame_header_encode(hello, FRAME_HELLO, hello + FRAME_HEADER_SIZE, (uint32_t)len);
    raw_write(&r, hello, FRAME_HEADER_SIZE + len);
    RUN_UNTIL(b.n_up == 1);
    raw_close(&r);
    ep_destroy(&b);
    loop_teardown();
}

static struct raft_msg snapshot_msg(raft_id from, raft_id to);

/* Appends a MSG frame carrying m to out at *pos. */
static void put_msg_frame(uint8_t *out, size_t cap, size_t *pos, const struct raft_msg *m)
{
    size_t n;
    ST_ASSERT(wire_msg_encode(m, out + *pos + FRAME_HEADER_SIZE, cap - *pos - FRAME_HEADER_SIZE,
                              &n) == 0);
    frame_header_encode(out + *pos, FRAME_MSG, out + *pos + FRAME_HEADER_SIZE, (uint32_t)n);
    *pos += FRAME_HEADER_SIZE + n;
}

PLAIN_TEST(bad_frames_after_the_handshake)
{
    loop_setup();
    struct ep b;
    struct st_tr_config cfg;
    ep_config(&cfg, 2, CLUSTER, 0);
    cfg.frame_bytes_max = 1u << 20;
    cfg.snapshot_chunk_bytes = 64u << 10;
    ep_start_cfg(&b, &cfg);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, "127.0.0.1:1"), 0);
    static struct raw r;
    static uint8_t buf[1 << 16];
    raw_dial(&r, b.port); /* claims to be node 1 */
    size_t pos = hello_frame(buf, CLUSTER, 1, 2);
    raw_write(&r, buf, pos);
    RUN_UNTIL(b.n_up == 1 && !r.writing);

    /* Misdirected messages and a SNAPSHOT smuggled into a MSG frame are
     * dropped and counted; the connection stays; a good message passes. */
    pos = 0;
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 5, .to = 2, .term = 1};
    put_msg_frame(buf, sizeof(buf), &pos, &m);
    m.from = 1;
    m.to = 9;
    put_msg_frame(buf, sizeof(buf), &pos, &m);
    struct raft_msg sm = snapshot_msg(1, 2);
    put_msg_frame(buf, sizeof(buf), &pos, &sm);
    m.to = 2;
    put_msg_frame(buf, sizeof(buf), &pos, &m);
    raw_write(&r, buf, pos);
    RUN_UNTIL(b.n_msgs == 1 && !r.writing);
    ASSERT_EQ(protocol_errors(&b), 3);
    ASSERT_TRUE(st_tr_peer_connected(b.tr, 1));

    /* A 40 KiB frame (read into its own buffer) with a corrupted payload. */
    struct raft_buf *pay = raft_buf_create(40000);
    memset(pay->data, 'x', 40000);
    struct raft_entry e = {.term = 1,
                           .index = 1,
                           .type = RAFT_ENTRY_NORMAL,
                           .buf = pay,
                           .data = pay->data,
                           .len = 40000};
    struct raft_msg app = {
        .type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 1, .n_entries = 1, .entries = &e};
    pos = 0;
    put_msg_frame(buf, sizeof(buf), &pos, &app);
    raft_buf_unref(pay);
    buf[pos - 100] ^= 0x10;
    raw_write(&r, buf, pos);
    RUN_UNTIL(r.eof && b.n_down == 1);
    ASSERT_EQ(protocol_errors(&b), 4);
    ASSERT_EQ(b.n_append, 0);
    raw_close(&r);

    /* After the handshake the bound is frame_bytes_max. */
    raw_dial(&r, b.port);
    pos = hello_frame(buf, CLUSTER, 1, 2);
    frame_header_start(buf + pos, FRAME_MSG, cfg.frame_bytes_max + 1);
    raw_write(&r, buf, pos + FRAME_HEADER_SIZE);
    RUN_UNTIL(r.eof && b.n_down == 2);
    ASSERT_EQ(protocol_errors(&b), 5);
    raw_close(&r);
    ep_destroy(&b);
    loop_teardown();
}

PLAIN_TEST(dialer_refuses_an_acceptor_with_an_unexpected_id)
{
    loop_setup();
    struct raw r;
    int port = raw_listen(&r);
    r.answer_hello = true;
    r.ack_node_id = 9; /* we expect node 2 there */
    struct ep a;
    ep_start(&a, 1, CLUSTER, 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, addr), 0);
    struct st_tr_stats st;
    RUN_UNTIL(r.eof && (st_tr_stats_get(a.tr, &st), st.handshakes_refused == 1));
    ASSERT_EQ(r.hello.from_id, 1);
    ASSERT_EQ(r.hello.to_id, 2);
    ASSERT_EQ(r.hello.cluster_id, CLUSTER);
    ASSERT_STREQ(r.hello.addr, a.addr);
    ASSERT_TRUE(r.hello.versions.present); /* the dialer announces its release */
    ASSERT_EQ(r.hello.versions.release_major, STCACHE_RAFT_VERSION_MAJOR);
    ASSERT_EQ(r.hello.versions.release_minor, STCACHE_RAFT_VERSION_MINOR);
    ASSERT_EQ(a.n_up, 0);
    ep_destroy(&a);
    raw_close(&r);
    loop_teardown();
}

PLAIN_TEST(back_pressure_drops_messages_when_the_peer_does_not_read)
{
    loop_setup();
    struct raw r;
    int port = raw_listen(&r);
    r.answer_hello = true;
    r.ack_node_id = 2;
    r.stop_reading = true;
    struct ep a;
    struct st_tr_config cfg;
    ep_config(&cfg, 1, CLUSTER, 0);
    cfg.send_queue_msgs_max = 64;
    cfg.send_queue_bytes_max = 1u << 20;
    ep_start_cfg(&a, &cfg);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, addr), 0);
    RUN_UNTIL(a.n_up == 1);
    int busy = 0, ok = 0;
    for (int i = 0; i < 20000 && busy < 10; i++) {
        int rv = send_append(&a, 2, (uint64_t)i, 1, 64 * 1024);
        ASSERT_TRUE(rv == 0 || rv == ST_EBUSY);
        if (rv == 0)
            ok++;
        else
            busy++;
        uv_run(&loop, UV_RUN_NOWAIT); /* let writes progress into the kernel */
    }
    ASSERT_EQ(busy, 10);
    ASSERT_GE(ok, 16);
    RUN_UNTIL(a.send_busy >= 1); /* reported through the callback too, from the loop */
    ASSERT_LE(a.send_busy, 10);
    struct st_tr_stats st;
    st_tr_stats_get(a.tr, &st);
    ASSERT_EQ(st.msgs_dropped, 10);
    ASSERT_TRUE((uint64_t)ok - st.msgs_sent <= 64); /* in flight stays bounded */
    /* The peer dies: every message still in flight is reported lost. */
    uint64_t inflight = (uint64_t)ok - st.msgs_sent;
    ASSERT_GE(inflight, 1);
    raw_close(&r);
    RUN_UNTIL(a.n_down == 1);
    st_tr_stats_get(a.tr, &st);
    ASSERT_EQ(a.send_failed + st.msgs_sent, (uint64_t)ok);
    ep_destroy(&a);
    loop_teardown();
}

/* -------------------------------------------------------------- snapshots */

static char snap_dir[64];

static void write_snapshot_file(const char *path, uint64_t size)
{
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ST_ASSERT(fd >= 0);
    uint8_t buf[65536];
    for (uint64_t off = 0; off < size;) {
        size_t n = (size_t)ST_MIN((uint64_t)sizeof(buf), size - off);
        for (size_t i = 0; i < n; i++)
            buf[i] = pattern_byte(off + i);
        ST_ASSERT(write(fd, buf, n) == (ssize_t)n);
        off += n;
    }
    close(fd);
}

static struct raft_snapshot_meta snap_meta;

static struct raft_msg snapshot_msg(raft_id from, raft_id to)
{
    memset(&snap_meta, 0, sizeof(snap_meta));
    snap_meta.index = 12345;
    snap_meta.term = 7;
    snap_meta.conf.n = 3;
    for (uint32_t i = 0; i < 3; i++) {
        snap_meta.conf.members[i].id = i + 1;
        snap_meta.conf.members[i].role = RAFT_VOTER;
        snap_meta.conf.members[i].context_len = (uint16_t)snprintf(
            snap_meta.conf.members[i].context, RAFT_MEMBER_CONTEXT_MAX, "127.0.0.1:%u", 7000 + i);
    }
    struct raft_msg m = {
        .type = RAFT_MSG_SNAPSHOT, .from = from, .to = to, .term = 7, .snapshot = &snap_meta};
    return m;
}

static void snap_setup(char *path, size_t cap, uint64_t size)
{
    snprintf(snap_dir, sizeof(snap_dir), "/tmp/stcache-tr-XXXXXX");
    ST_ASSERT(mkdtemp(snap_dir) != NULL);
    snprintf(path, cap, "%s/snap", snap_dir);
    write_snapshot_file(path, size);
}

static void snap_cleanup(const char *path)
{
    unlink(path);
    rmdir(snap_dir);
}

TEST(snapshot_streams_a_multi_mib_file_in_bounded_chunks)
{
    loop_setup();
    char path[128];
    const uint64_t size = 5 * 1024 * 1024 + 12345;
    snap_setup(path, sizeof(path), size);
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    b.hb_sender = &a; /* ordinary traffic while the stream runs */
    struct raft_msg m = snapshot_msg(1, 2);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), ST_EBUSY); /* one stream per peer */
    RUN_UNTIL(a.snap_sent_n == 1);
    ASSERT_EQ(a.snap_sent_status, 0);
    ASSERT_EQ(b.snap_begins, 1);
    ASSERT_EQ(b.snap_ends, 1);
    ASSERT_EQ(b.snap_end_status, 0);
    ASSERT_EQ(b.snap_size, size);
    ASSERT_EQ(b.snap_bytes, size);
    ASSERT_TRUE(b.snap_content_ok);
    /* Bounded memory: at most one chunk per frame, ceil(size / chunk) frames. */
    const uint64_t chunk = 256 * 1024;
    ASSERT_EQ(b.chunk_max, chunk);
    ASSERT_EQ(b.snap_chunks, (size + chunk - 1) / chunk);
    /* The RAFT_MSG_SNAPSHOT is delivered once stored, with its meta. */
    ASSERT_EQ(b.snapshots_delivered, 1);
    ASSERT_EQ(b.delivered_meta.index, 12345);
    ASSERT_EQ(b.delivered_meta.conf.n, 3);
    ASSERT_STREQ(b.delivered_meta.conf.members[2].context, "127.0.0.1:7002");
    /* Heartbeats sent during the stream arrived before it ended. */
    ASSERT_GE(b.hb_during_snap, b.snap_chunks / 2);
    struct st_tr_stats sa, sb;
    st_tr_stats_get(a.tr, &sa);
    st_tr_stats_get(b.tr, &sb);
    ASSERT_EQ(sa.snapshots_sent, 1);
    ASSERT_EQ(sa.snapshot_bytes_sent, size);
    ASSERT_EQ(sb.snapshots_received, 1);
    /* The receiver never buffered more than one chunk frame. */
    ASSERT_EQ(sb.frame_buffer_bytes_max, FRAME_HEADER_SIZE + FRAME_SNAP_CHUNK_FIXED_SIZE + chunk);
    ASSERT_EQ(sa.snapshots_failed + sb.snapshots_failed, 0);
    ep_destroy(&a);
    ep_destroy(&b);
    snap_cleanup(path);
    loop_teardown();
}

/* Runs the loop until the sender has put `bytes` more on the wire than
 * `base`, then a few more turns: long enough for a reading receiver to see
 * them. */
static void run_until_sent(struct ep *from, uint64_t base, uint64_t bytes)
{
    struct st_tr_stats st;
    RUN_UNTIL((st_tr_stats_get(from->tr, &st), st.bytes_sent >= base + bytes));
    for (int i = 0; i < 50; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
}

TEST(snapshot_receiver_writing_off_the_loop_pauses_the_peer_until_resumed)
{
    loop_setup();
    char path[128];
    const uint64_t size = 3 * 256 * 1024 + 999; /* four chunks */
    snap_setup(path, sizeof(path), size);
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    b.snap_defer = true;
    struct raft_msg m = snapshot_msg(1, 2);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    uint64_t msgs0 = b.n_msgs;
    for (uint64_t k = 1; k <= 4; k++) {
        RUN_UNTIL(b.snap_deferred == 1);
        ASSERT_EQ(b.snap_chunks, k);
        /* While the chunk is "being written", the peer is not read: a
         * heartbeat sent now waits, and so does the next chunk. */
        uint64_t msgs = b.n_msgs;
        struct st_tr_stats st;
        st_tr_stats_get(a.tr, &st);
        send_heartbeat(&a, 2, 100 + k);
        run_until_sent(&a, st.bytes_sent, 1);
        ASSERT_EQ(b.n_msgs, msgs);
        ASSERT_EQ(b.snap_chunks, k);
        b.snap_deferred = 0;
        st_tr_snapshot_resume(b.tr, 1, 0);
    }
    /* The end is deferred too: stored "later", delivered only on resume. */
    RUN_UNTIL(b.snap_ends == 1);
    ASSERT_EQ(b.snap_end_status, 0);
    ASSERT_EQ(b.snap_bytes, size);
    ASSERT_TRUE(b.snap_content_ok);
    ASSERT_EQ(b.snapshots_delivered, 0);
    ASSERT_EQ(a.snap_sent_n, 0);
    ASSERT_EQ(b.snap_deferred_max, 1); /* never two chunks taken at once */
    struct st_tr_stats sb;
    st_tr_stats_get(b.tr, &sb);
    ASSERT_EQ(sb.read_pauses, 5); /* four chunks and the end */
    b.snap_deferred = 0;
    st_tr_snapshot_resume(b.tr, 1, 0);
    ASSERT_EQ(b.snapshots_delivered, 1);
    ASSERT_EQ(b.delivered_meta.index, 12345);
    RUN_UNTIL(b.n_msgs == msgs0 + 4 + 1); /* the held heartbeats all arrive */
    RUN_UNTIL(a.snap_sent_n == 1);
    ASSERT_EQ(a.snap_sent_status, 0);
    ASSERT_EQ(b.snap_ends, 1);
    st_tr_snapshot_resume(b.tr, 1, 0); /* nothing paused: harmless */

    /* A write that fails ends the stream on both sides with its status. */
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    RUN_UNTIL(b.snap_deferred == 1);
    b.snap_deferred = 0;
    st_tr_snapshot_resume(b.tr, 1, ST_ENOSPC);
    ASSERT_EQ(b.snap_ends, 2);
    ASSERT_EQ(b.snap_end_status, ST_ENOSPC);
    RUN_UNTIL(a.snap_sent_n == 2);
    ASSERT_EQ(a.snap_sent_status, ST_ENOSPC);
    /* and the link still carries messages */
    uint64_t msgs = b.n_msgs;
    send_heartbeat(&a, 2, 7);
    RUN_UNTIL(b.n_msgs == msgs + 1);
    ep_destroy(&a);
    ep_destroy(&b);
    snap_cleanup(path);
    loop_teardown();
}

TEST(snapshot_aborted_by_the_receiver_is_reported_and_restartable)
{
    loop_setup();
    char path[128];
    const uint64_t size = 2 * 1024 * 1024;
    snap_setup(path, sizeof(path), size);
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    b.snap_fail_chunk = 3;
    b.snap_fail_status = ST_ENOSPC;
    struct raft_msg m = snapshot_msg(1, 2);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    RUN_UNTIL(a.snap_sent_n == 1);
    ASSERT_EQ(a.snap_sent_status, ST_ENOSPC);
    ASSERT_EQ(b.snap_ends, 1);
    ASSERT_EQ(b.snap_end_status, ST_ENOSPC);
    ASSERT_EQ(b.snapshots_delivered, 0);
    /* A refusal at begin is reported too. */
    b.snap_refuse = ST_EBUSY;
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    RUN_UNTIL(a.snap_sent_n == 2);
    ASSERT_EQ(a.snap_sent_status, ST_EBUSY);
    /* The connection survived; a fresh attempt goes through. */
    b.snap_refuse = 0;
    b.snap_fail_chunk = 0;
    ASSERT_TRUE(st_tr_peer_connected(a.tr, 2));
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    RUN_UNTIL(a.snap_sent_n == 3);
    ASSERT_EQ(a.snap_sent_status, 0);
    ASSERT_EQ(b.snapshots_delivered, 1);
    ASSERT_TRUE(b.snap_content_ok);
    ASSERT_EQ(a.n_down + b.n_down, 0);
    ep_destroy(&a);
    ep_destroy(&b);
    snap_cleanup(path);
    loop_teardown();
}

TEST(snapshot_failed_by_a_dying_connection_is_reported_to_the_sender)
{
    loop_setup();
    char path[128];
    const uint64_t size = 3 * 1024 * 1024;
    snap_setup(path, sizeof(path), size);
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    b.snap_fail_chunk = 2;
    b.snap_destroy_at_fail = true;
    struct raft_msg m = snapshot_msg(1, 2);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    RUN_UNTIL(b.done && a.snap_sent_n == 1);
    ASSERT_EQ(b.snap_chunks, 2);
    ASSERT_EQ(b.snap_ends, 0); /* st_tr_destroy calls no callback */
    ASSERT_EQ(a.snap_sent_status, ST_ECONNECTION);
    ASSERT_EQ(b.snapshots_delivered, 0);
    /* A missing file fails the stream too (on open, asynchronously). */
    struct ep c;
    ep_start(&c, 3, CLUSTER, 0);
    link_peers(&a, &c);
    RUN_UNTIL(c.n_up == 1 && st_tr_peer_connected(a.tr, 3));
    m.to = 3;
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, "/nonexistent/stcache/snap", size), 0);
    RUN_UNTIL(a.snap_sent_n == 2);
    ASSERT_EQ(a.snap_sent_status, ST_ENOENT);
    /* A file shorter than announced: the sender aborts, the receiver is told. */
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size + 1000), 0);
    RUN_UNTIL(a.snap_sent_n == 3 && c.snap_ends == 1);
    ASSERT_EQ(a.snap_sent_status, ST_EIO);
    ASSERT_EQ(c.snap_end_status, ST_EIO);
    ASSERT_EQ(c.snapshots_delivered, 0);
    ep_destroy(&a);
    ep_destroy(&c);
    snap_cleanup(path);
    loop_teardown();
}

TEST(peer_remove_stops_traffic_and_peer_add_restores_it)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    ASSERT_EQ(st_tr_peer_remove(a.tr, 2), 0);
    ASSERT_EQ(st_tr_peer_remove(a.tr, 2), ST_ENOENT);
    ASSERT_EQ(send_append(&a, 2, 0, 1, 1), ST_ENOENT);
    RUN_UNTIL(b.n_down == 1);
    ASSERT_EQ(a.n_down, 0); /* removal is silent */
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, b.addr), 0);
    RUN_UNTIL(a.n_up == 2 && b.n_up == 2);
    ASSERT_EQ(send_append(&a, 2, 0, 1, 1), 0);
    RUN_UNTIL(b.n_append == 1);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(api_rejects_bad_arguments)
{
    loop_setup();
    struct ep a;
    ep_start(&a, 1, CLUSTER, 0);
    ASSERT_EQ(st_tr_peer_add(a.tr, 1, "127.0.0.1:1"), ST_EINVAL); /* self */
    ASSERT_EQ(st_tr_peer_add(a.tr, 0, "127.0.0.1:1"), ST_EINVAL); /* none */
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, "127.0.0.1"), ST_EINVAL);   /* no port */
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, "127.0.0.1:99999"), ST_EINVAL);
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, "::1:80"), ST_EINVAL); /* IPv6 needs brackets */
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, "[::1]:80"), 0);
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, "127.0.0.1:80"), ST_EEXIST);
    struct raft_msg m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 3, .term = 1};
    ASSERT_EQ(st_tr_send(a.tr, &m), ST_ENOENT);
    m.to = 2;
    m.type = RAFT_MSG_TYPE_MAX;
    ASSERT_EQ(st_tr_send(a.tr, &m), ST_EINVAL);
    m = snapshot_msg(1, 2);
    ASSERT_EQ(st_tr_send(a.tr, &m), ST_EINVAL);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, "/x", 1), ST_ECONNECTION);
    struct raft_buf *big = raft_buf_create(65u << 20);
    struct raft_entry e = {.term = 1,
                           .index = 1,
                           .type = RAFT_ENTRY_NORMAL,
                           .buf = big,
                           .data = big->data,
                           .len = big->cap};
    struct raft_msg app = {
        .type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 1, .n_entries = 1, .entries = &e};
    ASSERT_EQ(st_tr_send(a.tr, &app), ST_ETOOBIG);
    raft_buf_unref(big);
    ep_destroy(&a);

    struct st_tr_config cfg;
    struct st_tr *tr;
    st_tr_config_default(&cfg, 1, CLUSTER, "nonsense");
    ASSERT_EQ(st_tr_create(&loop, &cfg, NULL, &tr), ST_EINVAL);
    st_tr_config_default(&cfg, 0, CLUSTER, "127.0.0.1:0");
    ASSERT_EQ(st_tr_create(&loop, &cfg, NULL, &tr), ST_EINVAL);
    st_tr_config_default(&cfg, 1, CLUSTER, "127.0.0.1:0");
    cfg.snapshot_chunk_bytes = cfg.frame_bytes_max;
    ASSERT_EQ(st_tr_create(&loop, &cfg, NULL, &tr), ST_EINVAL);
    loop_teardown();
}

TEST(ipv6_loopback_addresses_work)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    struct st_tr_config cfg;
    st_tr_config_default(&cfg, 2, CLUSTER, "[::1]:0");
    ep_tls(&cfg, 2);
    cfg.reconnect_base_ms = 5;
    cfg.reconnect_max_ms = 40;
    struct st_tr_callbacks cbs = {
        .ctx = &b, .msg_cb = ep_msg_cb, .peer_state_cb = ep_peer_state_cb};
    memset(&b, 0, sizeof(b));
    b.id = 2;
    b.order_ok = true;
    ASSERT_EQ(st_tr_create(&loop, &cfg, &cbs, &b.tr), 0);
    if (st_tr_start(b.tr) != 0) { /* no IPv6 on this machine: skip that half */
        fprintf(stderr, "  (no IPv6 loopback: skipped)\n");
        ep_destroy(&b);
        ep_destroy(&a);
        loop_teardown();
        return;
    }
    snprintf(b.addr, sizeof(b.addr), "[::1]:%d", st_tr_listen_port(b.tr));
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, b.addr), 0);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, a.addr), 0);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    ASSERT_EQ(send_append(&a, 2, 0, 1, 4), 0);
    RUN_UNTIL(b.n_append == 1);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(hostnames_resolve_and_every_address_is_tried)
{
    /* localhost may resolve to ::1 first while the peer listens on IPv4. */
    loop_setup();
    struct ep a, c;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&c, 3, CLUSTER, 0);
    char host_addr[64];
    snprintf(host_addr, sizeof(host_addr), "localhost:%d", c.port);
    ASSERT_EQ(st_tr_peer_add(a.tr, 3, host_addr), 0);
    ASSERT_EQ(st_tr_peer_add(c.tr, 1, a.addr), 0);
    RUN_UNTIL(a.n_up == 1 && c.n_up == 1);
    ASSERT_EQ(send_append(&a, 3, 0, 1, 4), 0);
    RUN_UNTIL(c.n_append == 1);
    ep_destroy(&a);
    ep_destroy(&c);
    loop_teardown();
}

/* ------------------------------------------------ peers (issue 16, item 3) */

PLAIN_TEST(a_refused_hello_reveals_no_cluster_id_and_no_node_id)
{
    loop_setup();
    struct ep b;
    ep_start(&b, 2, CLUSTER, 0);
    /* a stranger: wrong cluster; then a right cluster but addressed to
     * another node id (an unknown dialer id is accepted: a member not
     * known yet) */
    const uint64_t cases[2][3] = {{CLUSTER + 7, 1, 2}, {CLUSTER, 9, 7}};
    for (int i = 0; i < 2; i++) {
        struct raw r;
        raw_dial(&r, b.port);
        uint8_t hello[FRAME_HEADER_SIZE + FRAME_HELLO_FIXED_SIZE + 8];
        size_t n = hello_frame(hello, cases[i][0], cases[i][1], cases[i][2]);
        raw_write(&r, hello, n);
        RUN_UNTIL(r.eof);
        /* the fixed body, then the versions block (docs/WIRE-FORMAT.md §3) */
        ASSERT_TRUE(r.in_len > FRAME_HEADER_SIZE + FRAME_HELLO_ACK_SIZE);
        struct frame_hello_ack ack;
        ASSERT_EQ(
            frame_hello_ack_decode(r.in + FRAME_HEADER_SIZE, r.in_len - FRAME_HEADER_SIZE, &ack),
            0);
        ASSERT_TRUE(ack.versions.present);
        ASSERT_TRUE(ack.status < 0);
        ASSERT_EQ(ack.cluster_id, 0); /* before issue 16: CLUSTER */
        ASSERT_EQ(ack.node_id, 0);    /* before issue 16: 2 */
        raw_close(&r);
    }
    ep_destroy(&b);
    loop_teardown();
}

PLAIN_TEST(a_live_link_is_not_replaced_by_a_stranger_claiming_the_peer_id)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    ASSERT_EQ(send_append(&a, 2, 0, 1, 1), 0); /* the link is live */
    RUN_UNTIL(b.n_append == 1);
    struct raw r;
    raw_dial(&r, b.port); /* knows the cluster id and claims to be node 1 */
    uint8_t hello[FRAME_HEADER_SIZE + FRAME_HELLO_FIXED_SIZE + 8];
    size_t n = hello_frame(hello, CLUSTER, 1, 2);
    raw_write(&r, hello, n);
    RUN_UNTIL(r.eof);
    struct frame_hello_ack ack;
    ASSERT_EQ(frame_hello_ack_decode(r.in + FRAME_HEADER_SIZE, FRAME_HELLO_ACK_SIZE, &ack), 0);
    ASSERT_TRUE(ack.status < 0);
    raw_close(&r);
    ASSERT_EQ(b.n_down, 0); /* before issue 16: the stranger's connection won */
    ASSERT_EQ(send_append(&a, 2, 1, 1, 1), 0);
    RUN_UNTIL(b.n_append == 2);
    ASSERT_EQ(a.n_down + b.n_down, 0);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

/* idle connections from 127.0.0.2 (another source address on loopback) */
struct flood {
    uv_tcp_t conn[100];
    uv_connect_t req[100];
    int connected, closed, eof;
    char sink[64];
};

static void flood_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct flood *f = h->data;
    *buf = uv_buf_init(f->sink, sizeof f->sink);
}

static void flood_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct flood *f = s->data;
    if (n < 0) {
        f->eof++;
        uv_read_stop(s);
    }
}

static void flood_connected(uv_connect_t *req, int status)
{
    struct flood *f = req->data;
    f->connected++;
    if (status == 0) uv_read_start(req->handle, flood_alloc, flood_read);
}

static void flood_closed(uv_handle_t *h)
{
    struct flood *f = h->data;
    f->closed++;
}

PLAIN_TEST(a_flood_of_idle_connections_from_one_address_does_not_keep_a_peer_out)
{
    loop_setup();
    struct ep a, b;
    struct st_tr_config cfg;
    ep_config(&cfg, 2, CLUSTER, 0);
    cfg.handshake_timeout_ms = 60000; /* the flood is not timed out during the test */
    ep_start_cfg(&b, &cfg);
    static struct flood f;
    memset(&f, 0, sizeof(f));
    struct sockaddr_in src, dst;
    uv_ip4_addr("127.0.0.2", 0, &src);
    uv_ip4_addr("127.0.0.1", b.port, &dst);
    for (int i = 0; i < 100; i++) {
        uv_tcp_init(&loop, &f.conn[i]);
        f.conn[i].data = &f;
        f.req[i].data = &f;
        ST_ASSERT(uv_tcp_bind(&f.conn[i], (const struct sockaddr *)&src, 0) == 0);
        ST_ASSERT(uv_tcp_connect(&f.req[i], &f.conn[i], (const struct sockaddr *)&dst,
                                 flood_connected) == 0);
    }
    RUN_UNTIL(f.connected == 100);
    /* Until issue 16, b kept the first 64 and closed the 36 others; now it
     * keeps the newest ST_TR_INBOUND_PER_ADDR_MAX: either way, at least 36
     * are closed once b has seen them all. */
    RUN_UNTIL(f.eof >= 36);
    ep_start(&a, 1, CLUSTER, 0); /* the real peer, from 127.0.0.1 */
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1); /* before issue 16: refused until the flood timed out */
    for (int i = 0; i < 100; i++)
        uv_close((uv_handle_t *)&f.conn[i], flood_closed);
    RUN_UNTIL(f.closed == 100);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

TEST(silent_connection_is_closed_by_the_handshake_timeout)
{
    loop_setup();
    struct ep b;
    struct st_tr_config cfg;
    ep_config(&cfg, 2, CLUSTER, 0);
    cfg.handshake_timeout_ms = 30;
    ep_start_cfg(&b, &cfg);
    struct raw r;
    raw_dial(&r, b.port); /* connects, then says nothing */
    RUN_UNTIL(r.eof);
    ASSERT_EQ(b.n_up, 0);
    raw_close(&r);
    ep_destroy(&b);
    loop_teardown();
}

TEST(queue_for_a_peer_not_yet_connected_is_bounded_and_flushed_in_order)
{
    loop_setup();
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    struct st_tr_config cfg;
    ep_config(&cfg, 2, CLUSTER, 0);
    cfg.send_queue_msgs_max = 50;
    ep_start_cfg(&b, &cfg);
    /* b is the acceptor: it queues until a dials in. */
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, a.addr), 0);
    int ok = 0, busy = 0;
    for (uint64_t s = 0; s < 80; s++) {
        int rv = send_append(&b, 1, (uint64_t)ok, 1, 10);
        if (rv == 0)
            ok++;
        else if (rv == ST_EBUSY)
            busy++;
    }
    ASSERT_EQ(ok, 50);
    ASSERT_EQ(busy, 30);
    RUN_UNTIL(b.send_busy == 1); /* coalesced into one report */
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, b.addr), 0);
    RUN_UNTIL(a.n_append == 50);
    ASSERT_TRUE(a.order_ok);
    ep_destroy(&a);
    ep_destroy(&b);
    loop_teardown();
}

/* Offset of the n-th complete frame (0-based) in buf, or -1. */
static long frame_offset(const uint8_t *buf, size_t len, int n)
{
    size_t pos = 0;
    for (int i = 0;; i++) {
        if (len - pos < FRAME_HEADER_SIZE) return -1;
        size_t total = FRAME_HEADER_SIZE + le_get32(buf + pos);
        if (len - pos < total) return -1;
        if (i == n) return (long)pos;
        pos += total;
    }
}

PLAIN_TEST(snapshot_ack_of_another_stream_is_ignored)
{
    loop_setup();
    char path[128];
    snap_setup(path, sizeof(path), 100);
    struct raw r;
    int port = raw_listen(&r); /* a fake receiver, node 2 */
    r.answer_hello = true;
    r.ack_node_id = 2;
    struct ep a;
    ep_start(&a, 1, CLUSTER, 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    ASSERT_EQ(st_tr_peer_add(a.tr, 2, addr), 0);
    RUN_UNTIL(a.n_up == 1);
    struct raft_msg m = snapshot_msg(1, 2);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, 100), 0);
    /* HELLO, SNAP_BEGIN, SNAP_CHUNK, SNAP_END have arrived. */
    RUN_UNTIL(frame_offset(r.in, r.in_len, 3) >= 0);
    long begin = frame_offset(r.in, r.in_len, 1), end = frame_offset(r.in, r.in_len, 3);
    ASSERT_EQ(r.in[begin + 4], FRAME_SNAP_BEGIN);
    ASSERT_EQ(r.in[end + 4], FRAME_SNAP_END);
    uint32_t stream = le_get32(r.in + begin + FRAME_HEADER_SIZE);
    ASSERT_NE(stream, 0);
    ASSERT_EQ(le_get32(r.in + end + FRAME_HEADER_SIZE), stream);
    /* A success for another stream, then the real answer: a failure. */
    uint8_t frames[2 * (FRAME_HEADER_SIZE + FRAME_SNAP_STATUS_SIZE)], body[FRAME_SNAP_STATUS_SIZE];
    frame_status_encode(stream + 1, 0, body);
    frame_header_encode(frames, FRAME_SNAP_ACK, body, sizeof(body));
    memcpy(frames + FRAME_HEADER_SIZE, body, sizeof(body));
    uint8_t *second = frames + FRAME_HEADER_SIZE + FRAME_SNAP_STATUS_SIZE;
    frame_status_encode(stream, ST_ECORRUPT, body);
    frame_header_encode(second, FRAME_SNAP_ACK, body, sizeof(body));
    memcpy(second + FRAME_HEADER_SIZE, body, sizeof(body));
    raw_write(&r, frames, sizeof(frames));
    RUN_UNTIL(a.snap_sent_n == 1);
    ASSERT_EQ(a.snap_sent_status, ST_ECORRUPT);
    ASSERT_EQ(protocol_errors(&a), 0);
    ep_destroy(&a);
    raw_close(&r);
    snap_cleanup(path);
    loop_teardown();
}

TEST(peer_removed_during_a_snapshot_stream_ends_it_on_both_sides)
{
    loop_setup();
    char path[128];
    const uint64_t size = 4 * 1024 * 1024;
    snap_setup(path, sizeof(path), size);
    struct ep a, b;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&b, 2, CLUSTER, 0);
    link_peers(&a, &b);
    RUN_UNTIL(a.n_up == 1 && b.n_up == 1);
    struct raft_msg m = snapshot_msg(1, 2);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    RUN_UNTIL(b.snap_chunks >= 1);
    ASSERT_EQ(st_tr_peer_remove(a.tr, 2), 0);
    /* The sender hears about it synchronously (documented exception)... */
    ASSERT_EQ(a.snap_sent_n, 1);
    ASSERT_EQ(a.snap_sent_status, ST_ECANCELED);
    /* ...the receiver when the connection goes. */
    RUN_UNTIL(b.snap_ends == 1);
    ASSERT_TRUE(b.snap_end_status < 0);
    ASSERT_EQ(b.snapshots_delivered, 0);
    ep_destroy(&a);
    ep_destroy(&b);
    snap_cleanup(path);
    loop_teardown();
}

TEST(callbacks_may_remove_peers_and_destroy_the_transport)
{
    loop_setup();
    /* 1. A back-pressure report that removes the next peer to report. */
    struct ep b;
    struct st_tr_config cfg;
    ep_config(&cfg, 5, CLUSTER, 0);
    cfg.send_queue_msgs_max = 1;
    ep_start_cfg(&b, &cfg);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, "127.0.0.1:1"), 0); /* acceptor side: never dialed */
    ASSERT_EQ(st_tr_peer_add(b.tr, 2, "127.0.0.1:1"), 0);
    for (raft_id to = 1; to <= 2; to++) {
        ASSERT_EQ(send_append(&b, to, 0, 0, 0), 0);
        ASSERT_EQ(send_append(&b, to, 1, 0, 0), ST_EBUSY);
    }
    b.remove_on_busy = 2;
    RUN_UNTIL(b.send_busy >= 1);
    uv_run(&loop, UV_RUN_NOWAIT);
    ASSERT_EQ(b.send_busy, 1); /* none for the removed peer */
    ASSERT_EQ(st_tr_send(b.tr, &(struct raft_msg){.type = RAFT_MSG_HEARTBEAT, .from = 5, .to = 2}),
              ST_ENOENT);
    ep_destroy(&b);

    /* 2. snapshot_begin_cb removes the sender: the accepted stream still ends once. */
    char path[128];
    const uint64_t size = 1024 * 1024;
    snap_setup(path, sizeof(path), size);
    struct ep a, c;
    ep_start(&a, 1, CLUSTER, 0);
    ep_start(&c, 2, CLUSTER, 0);
    link_peers(&a, &c);
    RUN_UNTIL(a.n_up == 1 && c.n_up == 1);
    c.remove_peer_in_begin = true;
    struct raft_msg m = snapshot_msg(1, 2);
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    RUN_UNTIL(a.snap_sent_n == 1 && c.snap_ends == 1);
    ASSERT_EQ(c.snap_end_status, ST_ECANCELED);
    ASSERT_TRUE(a.snap_sent_status < 0);
    ASSERT_EQ(c.snapshots_delivered, 0);

    /* 3. snapshot_end_cb destroys the receiver: the message is not delivered. */
    c.remove_peer_in_begin = false;
    ASSERT_EQ(st_tr_peer_add(c.tr, 1, a.addr), 0);
    RUN_UNTIL(a.n_up == 2 && c.n_up == 2);
    c.destroy_in_end = true;
    ASSERT_EQ(st_tr_send_snapshot(a.tr, &m, path, size), 0);
    RUN_UNTIL(c.done && a.snap_sent_n == 2);
    ASSERT_EQ(c.snap_ends, 2);
    ASSERT_EQ(c.snapshots_delivered, 0);
    ASSERT_TRUE(a.snap_sent_status < 0);
    ep_destroy(&a);
    snap_cleanup(path);
    loop_teardown();
}

TEST(messages_do_not_wait_forever_for_a_peer_that_never_connects)
{
    loop_setup();
    struct ep b;
    struct st_tr_config cfg;
    ep_config(&cfg, 2, CLUSTER, 0);
    cfg.queue_wait_ms = 20;
    ep_start_cfg(&b, &cfg);
    ASSERT_EQ(st_tr_peer_add(b.tr, 1, "127.0.0.1:1"), 0); /* smaller id: it would dial us */
    for (uint64_t s = 0; s < 5; s++)
        ASSERT_EQ(send_append(&b, 1, s, 1, 10), 0);
    RUN_UNTIL(b.send_failed == 5);
    struct st_tr_stats st;
    st_tr_stats_get(b.tr, &st);
    ASSERT_EQ(st.msgs_dropped, 5);
    /* The queue is empty again: new messages are accepted and wait anew. */
    ASSERT_EQ(send_append(&b, 1, 5, 1, 10), 0);
    RUN_UNTIL(b.send_failed == 6);
    ep_destroy(&b);
    loop_teardown();
}

/* A restarting peer is redialled at the base rate for the first
 * reconnect_fast_ms of an outage; only then does the bound double up to
 * reconnect_max_ms (it used to double from the first failure, so a peer down
 * for 0.3 s was found up to ~0.4 s after it came back). */
TEST(reconnect_bound_stays_fast_early_in_an_outage_then_doubles_to_the_max)
{
    struct st_tr_config cfg;
    st_tr_config_default(&cfg, 1, 1, "127.0.0.1:0");
    ASSERT_EQ(cfg.reconnect_base_ms, 50u);
    ASSERT_EQ(st_tr_reconnect_bound_ms(&cfg, 0, 0), 50u);
    uint32_t d = 0;
    uint64_t t = 0;
    for (int i = 0; i < 40; i++) { /* dials every 50 ms for 2 s */
        d = st_tr_reconnect_bound_ms(&cfg, d, t);
        ASSERT_EQ(d, 50u);
        t += d;
    }
    ASSERT_EQ(t, (uint64_t)cfg.reconnect_fast_ms);
    d = st_tr_reconnect_bound_ms(&cfg, d, t);
    ASSERT_EQ(d, 100u);
    for (int i = 0; i < 20; i++)
        d = st_tr_reconnect_bound_ms(&cfg, d, t += d);
    ASSERT_EQ(d, cfg.reconnect_max_ms);
    /* a new outage (prev 0) starts at the base again */
    ASSERT_EQ(st_tr_reconnect_bound_ms(&cfg, 0, 10000), 50u);
    cfg.reconnect_fast_ms = 0; /* plain exponential backoff */
    ASSERT_EQ(st_tr_reconnect_bound_ms(&cfg, 50, 0), 100u);
}

#ifndef ST_TR_TEST_TLS
TEST_MAIN()
#endif
