/* TCP peer transport on libuv. Contract in transport.h, bytes in
 * docs/WIRE-FORMAT.md.
 *
 * Objects and lifetimes (every one counted in tr->live; tr is freed by
 * tr_destroy() once live reaches 0):
 *   struct tr_conn   one TCP connection (two handles: tcp + timer). Freed in
 *                    the close callback of its last handle; libuv cancels
 *                    its pending writes (callbacks with UV_ECANCELED) first.
 *   struct tr_peer   a configured peer. Owns a dial/backoff timer and a
 *                    getaddrinfo request; freed once both are finished after
 *                    removal.
 *   struct tr_snap_out  an outbound snapshot stream; freed once finished and
 *                    no file read or chunk write is outstanding.
 *   listener         the listening handle.
 *
 * Connection states (conn->state):
 *
 *     outbound: CONNECTING --connect ok, HELLO sent--> HANDSHAKE --HELLO_ACK ok--> UP
 *     inbound:  HANDSHAKE --HELLO ok, ACK sent--> UP
 *               HANDSHAKE --HELLO refused, ACK(err) sent--> REFUSING --ack written--> CLOSING
 *     any --error, EOF, timeout, garbage, conn_close()--> CLOSING (terminal)
 *
 * Only an UP connection is attached as peer->conn for an inbound peer; an
 * outbound connection is attached from CONNECTING on (so a peer is dialed
 * once at a time).
 *
 * Inbound buffering: frames are parsed from a per-connection scratch buffer
 * (TR_SCRATCH_BYTES). A frame larger than half of it gets a dedicated
 * raft_buf of exactly its size, read into directly (no copy) and handed to
 * the decoder, so its entries reference it zero-copy. A small frame carrying
 * entry payloads is copied once into an exact-size raft_buf before decoding,
 * so what the core keeps never pins a whole 64 KiB scratch buffer. */
#include "transport/transport.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/frame.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/fdlimit.h"
#include "util/list.h"
#include "util/rng.h"
#include "util/trace.h"
#include "wire/le.h"
#include "wire/msg.h"

#define TR_SCRATCH_BYTES (64u * 1024u)
#define TR_INBOUND_PENDING_MAX 64 /* unauthenticated inbound connections */
#define TR_BACKLOG 128
#define TR_HANDSHAKE_BODY_MAX (FRAME_HELLO_FIXED_SIZE + FRAME_HELLO_ADDR_MAX)
#define TR_KEEPALIVE_S 5 /* idle seconds before TCP keepalive probes (half-open links) */
/* Frames whose whole tr_out allocation fits in a pool block (heartbeats,
 * votes, responses, appends with a few entries) reuse blocks from a free
 * list instead of calling malloc per message. */
#define TR_OUT_POOL_BLOCK_BYTES 512
#define TR_OUT_POOL_MAX 256
#define MOD "transport"

enum conn_state { CONN_CONNECTING, CONN_HANDSHAKE, CONN_UP, CONN_REFUSING, CONN_CLOSING };
enum out_kind { OUT_MSG, OUT_CTRL, OUT_SNAP_CHUNK };

struct tr_snap_out;
struct tr_snap_in;
struct tr_conn;

/* One frame to write: header bytes inline, payloads referenced. */
struct tr_out {
    struct st_list link; /* in peer->queue while not written; pool free list */
    struct tr *tr;
    bool pooled; /* a TR_OUT_POOL_BLOCK_BYTES block */
    uv_write_t req;
    struct tr_conn *conn;
    raft_id to;
    uint8_t kind;
    uint8_t msg_type;
    bool close_after;      /* a refusal: close the connection once written */
    uint64_t bytes;        /* frame bytes */
    uint64_t queued_at_ms; /* uv_now() when queued for a connection */
    uint32_t nbufs;
    uv_buf_t *bufs;
    uint32_t nrefs;
    struct raft_buf **refs;
    struct tr_snap_out *snap; /* OUT_SNAP_CHUNK */
    uint8_t *hdr;             /* frame header (+ header part or control body) */
};

struct tr_conn {
    struct st_list link; /* tr->conns */
    struct tr *tr;
    struct tr_peer *peer;
    bool outbound;
    bool notify;          /* closing: report losses through callbacks */
    bool counted_inbound; /* counted in tr->inbound_pending */
    int doom_status;      /* deferred close requested from inside an API call */
    enum conn_state state;
    enum conn_state state_before_close;
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect+handshake deadline, deferred close */
    int handles_open;
    uv_connect_t connect_req;
    struct raft_buf *scratch; /* parse buffer */
    struct raft_buf *rbuf;    /* scratch, or a dedicated buffer for one big frame */
    size_t rpos, rlen;
    uint32_t inflight_msgs; /* OUT_MSG frames given to uv_write, not completed */
    uint64_t inflight_bytes;
};

struct tr_snap_out {
    struct tr *tr;
    struct tr_peer *peer; /* NULL once detached */
    raft_id to;
    uint32_t stream; /* non-zero, unique per transport */
    uv_fs_t fs;
    bool fs_pending;
    bool write_pending;
    bool finished;
    uv_file fd;
    char *path;
    uint64_t size, offset;
    uint32_t crc;
    size_t chunk_len;
    uint8_t *chunk; /* frame header + offset + chunk_bytes */
    uint8_t *begin_body;
    size_t begin_len;
};

struct tr_snap_in {
    uint32_t stream;
    uint64_t size, received;
    uint32_t crc;
    struct wire_msg wm; /* the RAFT_MSG_SNAPSHOT, delivered at the end */
};

struct tr_peer {
    struct st_list link; /* tr->peers, while not removed */
    struct tr *tr;
    raft_id id;
    char addr[TR_ADDR_MAX + 1];
    bool dialer; /* we dial it: self < id */
    bool removed;
    bool dialed_once;
    struct tr_conn *conn;
    struct st_list queue; /* tr_out waiting for a connection */
    uint32_t queue_msgs;
    uint64_t queue_bytes;
    uint32_t backoff_ms;
    uint64_t down_since_ms; /* first failed dial of this outage (0: none) */
    uv_timer_t timer;
    bool timer_open;
    uv_getaddrinfo_t gai;
    bool gai_pending;
    struct addrinfo *ai_list; /* resolved addresses of the current dial round */
    struct addrinfo *ai_next; /* the next one to try if a connect fails */
    struct tr_snap_out *snap_out;
    struct tr_snap_in *snap_in;
    bool busy_notify;      /* back-pressure drops to report (coalesced) */
    uint8_t busy_msg_type; /* the last one dropped */
};

struct tr {
    uv_loop_t *loop;
    struct tr_config cfg;
    struct tr_callbacks cbs;
    struct st_rng rng;
    uv_tcp_t listener;
    bool listener_open;
    uint64_t accept_warned_ms; /* last "accept failed" trace line (one a second at most) */
    uv_timer_t notify_timer; /* reports back-pressure drops outside API calls */
    uv_timer_t sweep_timer;  /* drops messages that waited queue_wait_ms for a connection */
    struct st_list peers;
    struct st_list conns;
    uint32_t inbound_pending;
    struct wire_msg wm;
    struct st_list out_pool; /* free pooled tr_out blocks */
    uint32_t out_pool_n;
    struct tr_stats stats;
    uint32_t live;
    uint32_t snap_stream_seq;
    bool destroying;
    void (*done_cb)(void *arg);
    void *done_arg;
};

static void conn_close(struct tr_conn *c, int status, bool notify);
static void conn_up(struct tr_conn *c);
static void peer_schedule_dial(struct tr_peer *p);
static void peer_dial_next(struct tr_peer *p);
static void peer_free_addrs(struct tr_peer *p);
static void snap_out_finish(struct tr_snap_out *s, int status, bool notify, bool send_abort);
static void snap_in_end(struct tr_peer *p, int status, bool notify, bool send_ack);
static void snap_out_chunk_written(struct tr_snap_out *s, int status);
static void out_pool_drain(struct tr *tr);

/* ---------------------------------------------------------------- helpers */

static int uv_to_st(int uverr)
{
    return uverr < 0 ? st_errno_to_code(-uverr) : 0;
}

static void tr_maybe_free(struct tr *tr)
{
    if (!tr->destroying || tr->live > 0) return;
    wire_msg_close(&tr->wm);
    out_pool_drain(tr);
    void (*cb)(void *) = tr->done_cb;
    void *arg = tr->done_arg;
    free(tr);
    if (cb != NULL) cb(arg);
}

static struct tr_peer *peer_find(const struct tr *tr, raft_id id)
{
    for (struct st_list *l = tr->peers.next; l != &tr->peers; l = l->next) {
        struct tr_peer *p = ST_CONTAINER_OF(l, struct tr_peer, link);
        if (p->id == id) return p;
    }
    return NULL;
}

static char *uv_base(const uint8_t *p)
{
    return (char *)(uintptr_t)p; /* libuv's buffers are not const; we never write through them */
}

static void out_free(struct tr_out *o)
{
    for (uint32_t i = 0; i < o->nrefs; i++)
        raft_buf_unref(o->refs[i]);
    struct tr *tr = o->tr;
    if (o->pooled && tr->out_pool_n < TR_OUT_POOL_MAX && !tr->destroying) {
        st_list_push_back(&tr->out_pool, &o->link);
        tr->out_pool_n++;
        return;
    }
    free(o);
}

static void out_pool_drain(struct tr *tr)
{
    while (!st_list_empty(&tr->out_pool)) {
        struct st_list *l = tr->out_pool.next;
        st_list_del(l);
        free(ST_CONTAINER_OF(l, struct tr_out, link));
    }
    tr->out_pool_n = 0;
}

/* One allocation: struct, iovecs, refs, then `hdr_bytes` of header. */
static struct tr_out *out_alloc(struct tr *tr, uint8_t kind, uint32_t nbufs, uint32_t nrefs,
                                size_t hdr_bytes)
{
    size_t size = sizeof(struct tr_out) + nbufs * sizeof(uv_buf_t) +
                  nrefs * sizeof(struct raft_buf *) + hdr_bytes;
    struct tr_out *o;
    bool pooled = size <= TR_OUT_POOL_BLOCK_BYTES;
    if (pooled && !st_list_empty(&tr->out_pool)) {
        struct st_list *l = tr->out_pool.next;
        st_list_del(l);
        tr->out_pool_n--;
        o = ST_CONTAINER_OF(l, struct tr_out, link);
        memset(o, 0, sizeof(*o));
    } else {
        o = calloc(1, pooled ? TR_OUT_POOL_BLOCK_BYTES : size);
        if (o == NULL) return NULL;
    }
    st_list_init(&o->link);
    o->tr = tr;
    o->pooled = pooled;
    o->kind = kind;
    o->nbufs = nbufs;
    o->bufs = (uv_buf_t *)(void *)(o + 1);
    o->refs = (struct raft_buf **)(void *)(o->bufs + nbufs);
    o->hdr = (uint8_t *)(o->refs + nrefs);
    return o;
}

/* A control frame with a contiguous body. */
static struct tr_out *out_ctrl(struct tr *tr, uint8_t type, const uint8_t *body, uint32_t len)
{
    struct tr_out *o = out_alloc(tr, OUT_CTRL, 1, 0, FRAME_HEADER_SIZE + len);
    if (o == NULL) return NULL;
    memcpy(o->hdr + FRAME_HEADER_SIZE, body, len);
    frame_header_encode(o->hdr, type, o->hdr + FRAME_HEADER_SIZE, len);
    o->bufs[0] = uv_buf_init((char *)o->hdr, FRAME_HEADER_SIZE + len);
    o->bytes = FRAME_HEADER_SIZE + len;
    return o;
}

/* ----------------------------------------------------------------- writes */

static void on_write(uv_write_t *req, int status)
{
    struct tr_out *o = ST_CONTAINER_OF(req, struct tr_out, req);
    struct tr_conn *c = o->conn;
    struct tr *tr = c->tr;
    if (status == 0) tr->stats.bytes_sent += o->bytes;
    if (o->kind == OUT_MSG) {
        ST_ASSERT(c->inflight_msgs > 0 && c->inflight_bytes >= o->bytes);
        c->inflight_msgs--;
        c->inflight_bytes -= o->bytes;
        if (status == 0) {
            tr->stats.msgs_sent++;
        } else {
            tr->stats.msgs_dropped++;
            if (c->notify && tr->cbs.send_failed_cb != NULL)
                tr->cbs.send_failed_cb(tr->cbs.ctx, o->to, o->msg_type, ST_ECONNECTION);
        }
    }
    struct tr_snap_out *snap = o->kind == OUT_SNAP_CHUNK ? o->snap : NULL;
    bool close_after = o->close_after;
    out_free(o);
    if (status < 0 && status != UV_ECANCELED)
        conn_close(c, ST_ECONNECTION, true);
    else if (close_after)
        conn_close(c, ST_ECLOSED, true);
    if (snap != NULL) snap_out_chunk_written(snap, status);
}

static void on_doom_timer(uv_timer_t *t)
{
    struct tr_conn *c = t->data;
    conn_close(c, c->doom_status, true);
}

/* Closes c from the next loop iteration (we are inside an API call). */
static void conn_doom(struct tr_conn *c, int status)
{
    if (c->state == CONN_CLOSING || c->doom_status != 0) return;
    c->doom_status = status;
    uv_timer_start(&c->timer, on_doom_timer, 0, 0);
}

static int conn_write(struct tr_conn *c, struct tr_out *o)
{
    o->conn = c;
    int rv = uv_write(&o->req, (uv_stream_t *)&c->tcp, o->bufs, o->nbufs, on_write);
    if (rv != 0) return rv;
    if (o->kind == OUT_MSG) {
        c->inflight_msgs++;
        c->inflight_bytes += o->bytes;
    }
    return 0;
}

/* Writes a control frame; on failure the connection is closed (deferred). */
static void conn_send_ctrl(struct tr_conn *c, uint8_t type, const uint8_t *body, uint32_t len,
                           bool close_after)
{
    if (c->state == CONN_CLOSING) return;
    struct tr_out *o = out_ctrl(c->tr, type, body, len);
    if (o == NULL) {
        conn_doom(c, ST_ENOMEM);
        return;
    }
    o->close_after = close_after;
    if (conn_write(c, o) != 0) {
        out_free(o);
        conn_doom(c, ST_ECONNECTION);
    }
}

/* Drops what is queued now; a callback that sends again to p queues anew
 * (the queue is detached first, so this always terminates). */
static void peer_drop_queue(struct tr_peer *p, int status, bool notify)
{
    struct tr *tr = p->tr;
    if (st_list_empty(&p->queue)) return;
    struct st_list dropped;
    st_list_init(&dropped);
    st_list_splice_back(&dropped, &p->queue);
    p->queue_msgs = 0;
    p->queue_bytes = 0;
    while (!st_list_empty(&dropped)) {
        struct tr_out *o = ST_CONTAINER_OF(dropped.next, struct tr_out, link);
        st_list_del(&o->link);
        tr->stats.msgs_dropped++;
        raft_id id = p->id;
        uint8_t type = o->msg_type;
        out_free(o);
        if (notify && !tr->destroying && !p->removed && tr->cbs.send_failed_cb != NULL)
            tr->cbs.send_failed_cb(tr->cbs.ctx, id, type, status);
    }
}

/* ------------------------------------------------------------ connections */

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct tr_conn *c = h->data;
    ST_ASSERT(c->handles_open > 0);
    if (--c->handles_open > 0) return;
    struct tr *tr = c->tr;
    ST_ASSERT(c->inflight_msgs == 0);
    if (c->rbuf != NULL && c->rbuf != c->scratch) raft_buf_unref(c->rbuf);
    raft_buf_unref(c->scratch);
    st_list_del(&c->link);
    free(c);
    tr->live--;
    tr_maybe_free(tr);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct tr_conn *c = t->data;
    ST_TRACE_WARN(MOD, "connection %s peer %" PRIu64 ": handshake timed out",
                  c->outbound ? "to" : "from", c->peer ? c->peer->id : 0);
    conn_close(c, ST_ETIMEDOUT, true);
}

static struct tr_conn *conn_create(struct tr *tr, bool outbound, struct tr_peer *peer)
{
    struct tr_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->scratch = raft_buf_create(TR_SCRATCH_BYTES);
    if (c->scratch == NULL) {
        free(c);
        return NULL;
    }
    c->rbuf = c->scratch;
    c->tr = tr;
    c->outbound = outbound;
    c->peer = peer;
    c->notify = true;
    c->state = outbound ? CONN_CONNECTING : CONN_HANDSHAKE;
    ST_ASSERT(uv_tcp_init(tr->loop, &c->tcp) == 0); /* cannot fail on unix for AF_UNSPEC */
    ST_ASSERT(uv_timer_init(tr->loop, &c->timer) == 0);
    c->tcp.data = c;
    c->timer.data = c;
    c->connect_req.data = c;
    c->handles_open = 2;
    st_list_push_back(&tr->conns, &c->link);
    tr->live++;
    uv_timer_start(&c->timer, on_conn_timer, tr->cfg.handshake_timeout_ms, 0);
    return c;
}

/* Raft traffic is small messages that must not wait for Nagle's algorithm
 * (a heartbeat held back by a delayed ACK costs tens of ms), and a peer that
 * vanished without a FIN must eventually fail the connection. */
static void conn_set_options(struct tr_conn *c)
{
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, TR_KEEPALIVE_S);
}

/* Terminal: stops IO, closes handles, detaches from the peer and fails what
 * depended on this connection (through callbacks when notify). */
static void conn_close(struct tr_conn *c, int status, bool notify)
{
    if (c->state == CONN_CLOSING) return;
    struct tr *tr = c->tr;
    bool was_up = c->state == CONN_UP;
    c->state_before_close = c->state;
    c->state = CONN_CLOSING;
    c->notify = notify && !tr->destroying;
    if (c->counted_inbound) {
        c->counted_inbound = false;
        tr->inbound_pending--;
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    bool connect_failed = c->state_before_close == CONN_CONNECTING;
    struct tr_peer *p = c->peer;
    c->peer = NULL;
    if (p == NULL || p->conn != c) return;
    p->conn = NULL;
    if (was_up)
        ST_TRACE_INFO(MOD, "peer %" PRIu64 " (%s): connection lost: %s", p->id, p->addr,
                      st_strerror(status));
    if (p->snap_out != NULL) snap_out_finish(p->snap_out, ST_ECONNECTION, c->notify, false);
    if (p->snap_in != NULL) snap_in_end(p, ST_ECONNECTION, c->notify, false);
    peer_drop_queue(p, ST_ECONNECTION, c->notify);
    /* A callback above may have removed p or destroyed tr. */
    if (was_up && c->notify && !p->removed && !tr->destroying && tr->cbs.peer_state_cb != NULL)
        tr->cbs.peer_state_cb(tr->cbs.ctx, p->id, false);
    if (p->dialer && !p->removed && !tr->destroying) {
        if (connect_failed && p->ai_next != NULL) { /* try the next resolved address */
            peer_dial_next(p);
        } else {
            peer_free_addrs(p);
            peer_schedule_dial(p);
        }
    }
}

static void protocol_error(struct tr_conn *c, const char *what, int rv)
{
    struct tr *tr = c->tr;
    tr->stats.protocol_errors++;
    ST_TRACE_WARN(MOD, "connection %s peer %" PRIu64 ": %s (%s): closing it",
                  c->outbound ? "to" : "from", c->peer ? c->peer->id : 0, what, st_strerror(rv));
    conn_close(c, rv, true);
}

static void refuse(struct tr_conn *c, int status, const char *fmt_reason, uint64_t a, uint64_t b)
{
    struct tr *tr = c->tr;
    tr->stats.handshakes_refused++;
    ST_TRACE_WARN(MOD, "handshake refused (%s): %s (%" PRIu64 " vs %" PRIu64 ")",
                  st_strerror(status), fmt_reason, a, b);
    if (c->outbound) {
        conn_close(c, status, true);
        return;
    }
    struct frame_hello_ack ack = {.proto_version = FRAME_PROTO_VERSION,
                                  .status = status,
                                  .cluster_id = tr->cfg.cluster_id,
                                  .node_id = tr->cfg.self_id};
    uint8_t body[FRAME_HELLO_ACK_SIZE];
    size_t n = frame_hello_ack_encode(&ack, body);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->state = CONN_REFUSING;
    conn_send_ctrl(c, FRAME_HELLO_ACK, body, (uint32_t)n, true);
}

static void handle_hello(struct tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct tr *tr = c->tr;
    struct frame_hello h;
    int rv = frame_hello_decode(body, len, &h);
    if (rv != 0) {
        protocol_error(c, "malformed HELLO", rv);
        return;
    }
    if (h.proto_version != FRAME_PROTO_VERSION) {
        refuse(c, ST_EPROTO, "protocol version", h.proto_version, FRAME_PROTO_VERSION);
        return;
    }
    if (h.cluster_id != tr->cfg.cluster_id) {
        refuse(c, ST_EMISMATCH, "cluster id of the dialer differs from ours", h.cluster_id,
               tr->cfg.cluster_id);
        return;
    }
    if (h.to_id != tr->cfg.self_id) {
        refuse(c, ST_EMISMATCH, "dialer expects another node id at this address", h.to_id,
               tr->cfg.self_id);
        return;
    }
    struct tr_peer *p = peer_find(tr, h.from_id);
    if (p == NULL) {
        refuse(c, ST_EMISMATCH, "unknown peer id (dialer, self)", h.from_id, tr->cfg.self_id);
        return;
    }
    if (p->dialer) {
        refuse(c, ST_EMISMATCH, "a peer with a larger id must not dial us (dialer, self)",
               h.from_id, tr->cfg.self_id);
        return;
    }
    ST_TRACE_INFO(MOD, "peer %" PRIu64 " connected from its advertised address %s", p->id, h.addr);
    if (p->conn != NULL) /* the dialer restarted or saw the old connection die first */
        conn_close(p->conn, ST_ECONNECTION, true);
    ST_ASSERT(c->counted_inbound);
    c->counted_inbound = false;
    tr->inbound_pending--;
    c->peer = p;
    p->conn = c;
    struct frame_hello_ack ack = {.proto_version = FRAME_PROTO_VERSION,
                                  .status = 0,
                                  .cluster_id = tr->cfg.cluster_id,
                                  .node_id = tr->cfg.self_id};
    uint8_t abody[FRAME_HELLO_ACK_SIZE];
    size_t n = frame_hello_ack_encode(&ack, abody);
    conn_send_ctrl(c, FRAME_HELLO_ACK, abody, (uint32_t)n, false);
    conn_up(c);
}

static void handle_hello_ack(struct tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct tr *tr = c->tr;
    struct frame_hello_ack a;
    int rv = frame_hello_ack_decode(body, len, &a);
    if (rv != 0) {
        protocol_error(c, "malformed HELLO_ACK", rv);
        return;
    }
    uint64_t expect = c->peer->id;
    if (a.status != 0) {
        tr->stats.handshakes_refused++;
        ST_TRACE_WARN(MOD, "peer %" PRIu64 " (%s) refused our handshake: %s", expect, c->peer->addr,
                      st_strerror(a.status));
        conn_close(c, a.status, true);
        return;
    }
    if (a.cluster_id != tr->cfg.cluster_id) {
        refuse(c, ST_EMISMATCH, "acceptor's cluster id differs from ours", a.cluster_id,
               tr->cfg.cluster_id);
        return;
    }
    if (a.node_id != expect) {
        refuse(c, ST_EMISMATCH, "node id at the peer's address is not the expected one", a.node_id,
               expect);
        return;
    }
    conn_up(c);
}

static void conn_up(struct tr_conn *c)
{
    struct tr *tr = c->tr;
    struct tr_peer *p = c->peer;
    c->state = CONN_UP;
    uv_timer_stop(&c->timer);
    p->backoff_ms = 0;
    p->down_since_ms = 0;
    peer_free_addrs(p);
    tr->stats.connects++;
    ST_TRACE_INFO(MOD, "peer %" PRIu64 " (%s): connection up (%s)", p->id, p->addr,
                  c->outbound ? "dialed" : "accepted");
    while (!st_list_empty(&p->queue)) {
        struct tr_out *o = ST_CONTAINER_OF(p->queue.next, struct tr_out, link);
        st_list_del(&o->link);
        p->queue_msgs--;
        p->queue_bytes -= o->bytes;
        if (conn_write(c, o) != 0) {
            tr->stats.msgs_dropped++;
            out_free(o);
            conn_doom(c, ST_ECONNECTION);
        }
    }
    if (tr->cbs.peer_state_cb != NULL) tr->cbs.peer_state_cb(tr->cbs.ctx, p->id, true);
}

/* --------------------------------------------------------- inbound frames */

static void handle_msg(struct tr_conn *c, struct raft_buf *frame, const uint8_t *body, uint32_t len)
{
    struct tr *tr = c->tr;
    struct raft_buf *own = NULL;
    /* A small frame with payloads sits in the scratch buffer: copy it out so
     * the entries the core keeps pin only their own bytes. */
    if (frame == c->scratch && len >= WIRE_MSG_FIXED_SIZE && le_get32(body + 4) > 0) {
        own = raft_buf_create(len);
        if (own == NULL) {
            tr->stats.msgs_dropped++;
            return;
        }
        memcpy(own->data, body, len);
        frame = own;
        body = own->data;
    }
    int rv = wire_msg_decode(&tr->wm, frame, body, len);
    if (rv != 0) {
        raft_buf_unref(own);
        if (rv == ST_ENOMEM) {
            tr->stats.msgs_dropped++;
            return;
        }
        protocol_error(c, "malformed Raft message", rv);
        return;
    }
    const struct raft_msg *m = &tr->wm.msg;
    raft_id from = c->peer->id;
    if (m->type == RAFT_MSG_SNAPSHOT || m->from != from || m->to != tr->cfg.self_id) {
        tr->stats.protocol_errors++;
        ST_TRACE_WARN(MOD, "peer %" PRIu64 ": dropped misdirected %s from %" PRIu64 " to %" PRIu64,
                      from, raft_msg_type_name(m->type), m->from, m->to);
    } else {
        tr->stats.msgs_received++;
        if (tr->cbs.msg_cb != NULL) tr->cbs.msg_cb(tr->cbs.ctx, from, m);
    }
    wire_msg_release(&tr->wm);
    raft_buf_unref(own);
}

/* --------------------------------------------------- inbound snapshots */

static void snap_in_end(struct tr_peer *p, int status, bool notify, bool send_ack)
{
    struct tr *tr = p->tr;
    struct tr_snap_in *si = p->snap_in;
    ST_ASSERT(si != NULL);
    p->snap_in = NULL;
    if (status != 0) tr->stats.snapshots_failed++;
    if (status != 0)
        ST_TRACE_WARN(MOD, "snapshot from peer %" PRIu64 " failed at %" PRIu64 "/%" PRIu64 ": %s",
                      p->id, si->received, si->size, st_strerror(status));
    if (notify && tr->cbs.snapshot_end_cb != NULL)
        tr->cbs.snapshot_end_cb(tr->cbs.ctx, p->id, status);
    if (send_ack && p->conn != NULL && p->conn->state == CONN_UP) {
        uint8_t body[FRAME_SNAP_STATUS_SIZE];
        frame_status_encode(si->stream, status, body);
        conn_send_ctrl(p->conn, FRAME_SNAP_ACK, body, sizeof(body), false);
    }
    wire_msg_close(&si->wm);
    free(si);
}

static void snap_send_ack(struct tr_conn *c, uint32_t stream, int status)
{
    uint8_t body[FRAME_SNAP_STATUS_SIZE];
    frame_status_encode(stream, status, body);
    conn_send_ctrl(c, FRAME_SNAP_ACK, body, sizeof(body), false);
}

static void handle_snap_begin(struct tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct tr *tr = c->tr;
    struct tr_peer *p = c->peer;
    if (len < FRAME_SNAP_BEGIN_FIXED_SIZE || le_get32(body) == 0) {
        protocol_error(c, "bad SNAP_BEGIN", ST_EPROTO);
        return;
    }
    uint32_t stream = le_get32(body);
    if (p->snap_in != NULL) /* a new stream supersedes an unfinished one */
        snap_in_end(p, ST_ECANCELED, true, false);
    struct tr_snap_in *si = calloc(1, sizeof(*si));
    if (si == NULL) {
        snap_send_ack(c, stream, ST_ENOMEM);
        return;
    }
    wire_msg_init(&si->wm);
    si->stream = stream;
    si->size = le_get64(body + 4);
    int rv = wire_msg_decode(&si->wm, NULL, body + FRAME_SNAP_BEGIN_FIXED_SIZE,
                             len - FRAME_SNAP_BEGIN_FIXED_SIZE);
    const struct raft_msg *m = &si->wm.msg;
    if (rv == 0 && (m->type != RAFT_MSG_SNAPSHOT || m->from != p->id || m->to != tr->cfg.self_id))
        rv = ST_EPROTO;
    if (rv != 0) {
        wire_msg_close(&si->wm);
        free(si);
        protocol_error(c, "malformed SNAP_BEGIN", rv);
        return;
    }
    rv = tr->cbs.snapshot_begin_cb != NULL
             ? tr->cbs.snapshot_begin_cb(tr->cbs.ctx, p->id, m, si->size)
             : ST_EPERM;
    if (rv != 0) {
        if (rv > 0) /* not an ST_E* code: still a refusal */
            rv = ST_EINVAL;
        tr->stats.snapshots_failed++;
        ST_TRACE_WARN(MOD, "snapshot from peer %" PRIu64 " refused: %s", p->id, st_strerror(rv));
        wire_msg_close(&si->wm);
        free(si);
        snap_send_ack(c, stream, rv);
        return;
    }
    if (p->removed || tr->destroying || c->state != CONN_UP) {
        /* The callback removed the peer or destroyed us: end what it accepted. */
        tr->stats.snapshots_failed++;
        if (!tr->destroying && tr->cbs.snapshot_end_cb != NULL)
            tr->cbs.snapshot_end_cb(tr->cbs.ctx, p->id, ST_ECANCELED);
        wire_msg_close(&si->wm);
        free(si);
        return;
    }
    ST_TRACE_INFO(MOD, "snapshot from peer %" PRIu64 ": %" PRIu64 " bytes at index %" PRIu64, p->id,
                  si->size, m->snapshot->index);
    p->snap_in = si;
}

static void handle_snap_chunk(struct tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct tr *tr = c->tr;
    struct tr_peer *p = c->peer;
    if (len < FRAME_SNAP_CHUNK_FIXED_SIZE) {
        protocol_error(c, "short SNAP_CHUNK", ST_EPROTO);
        return;
    }
    struct tr_snap_in *si = p->snap_in;
    if (si == NULL || si->stream != le_get32(body)) /* a stream we refused or aborted */
        return;
    uint64_t off = le_get64(body + 4);
    size_t n = len - FRAME_SNAP_CHUNK_FIXED_SIZE;
    const uint8_t *data = body + FRAME_SNAP_CHUNK_FIXED_SIZE;
    if (off != si->received || n > si->size - si->received) {
        snap_in_end(p, ST_EPROTO, true, true);
        return;
    }
    si->crc = st_crc32c(si->crc, data, n);
    int rv = tr->cbs.snapshot_chunk_cb != NULL
                 ? tr->cbs.snapshot_chunk_cb(tr->cbs.ctx, p->id, off, data, n)
                 : 0;
    if (p->snap_in != si) /* the callback removed the peer or destroyed us */
        return;
    if (rv != 0) {
        snap_in_end(p, rv < 0 ? rv : ST_ECANCELED, true, true);
        return;
    }
    si->received += n;
}

static void handle_snap_end(struct tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct tr *tr = c->tr;
    struct tr_peer *p = c->peer;
    if (len != FRAME_SNAP_END_SIZE) {
        protocol_error(c, "bad SNAP_END", ST_EPROTO);
        return;
    }
    struct tr_snap_in *si = p->snap_in;
    if (si == NULL || si->stream != le_get32(body)) return;
    if (le_get64(body + 4) != si->size || si->received != si->size ||
        le_get32(body + 12) != si->crc) {
        snap_in_end(p, ST_ECORRUPT, true, true);
        return;
    }
    p->snap_in = NULL;
    int rv =
        tr->cbs.snapshot_end_cb != NULL ? tr->cbs.snapshot_end_cb(tr->cbs.ctx, p->id, 0) : ST_EPERM;
    if (rv == 0) {
        tr->stats.snapshots_received++;
        tr->stats.msgs_received++;
        /* Not to a node that removed the peer or destroyed us meanwhile. */
        if (tr->cbs.msg_cb != NULL && !p->removed && !tr->destroying)
            tr->cbs.msg_cb(tr->cbs.ctx, p->id, &si->wm.msg);
    } else {
        tr->stats.snapshots_failed++;
        ST_TRACE_WARN(MOD, "snapshot from peer %" PRIu64 " not stored: %s", p->id, st_strerror(rv));
    }
    if (c->state == CONN_UP) snap_send_ack(c, si->stream, rv < 0 ? rv : (rv > 0 ? ST_EIO : 0));
    wire_msg_close(&si->wm);
    free(si);
}

static void handle_snap_abort(struct tr_conn *c, const uint8_t *body, uint32_t len)
{
    int32_t status;
    uint32_t stream;
    if (frame_status_decode(body, len, &stream, &status) != 0) {
        protocol_error(c, "bad SNAP_ABORT", ST_EPROTO);
        return;
    }
    if (c->peer->snap_in != NULL && c->peer->snap_in->stream == stream)
        snap_in_end(c->peer, status != 0 ? status : ST_ECANCELED, true, false);
}

static void handle_snap_ack(struct tr_conn *c, const uint8_t *body, uint32_t len)
{
    int32_t status;
    uint32_t stream;
    if (frame_status_decode(body, len, &stream, &status) != 0) {
        protocol_error(c, "bad SNAP_ACK", ST_EPROTO);
        return;
    }
    struct tr_snap_out *s = c->peer->snap_out;
    if (s == NULL || s->stream != stream) /* stale: a stream we abandoned */
        return;
    if (status == 0 && s->offset < s->size) {
        protocol_error(c, "SNAP_ACK(0) before the stream ended", ST_EPROTO);
        return;
    }
    snap_out_finish(s, status, true, false);
}

/* One complete, length-checked frame at `hdr` inside `frame`. */
static void process_frame(struct tr_conn *c, struct raft_buf *frame, const uint8_t *hdr)
{
    struct frame_header h;
    int rv = frame_header_decode(hdr, c->tr->cfg.frame_bytes_max, &h);
    ST_ASSERT(rv == 0); /* checked when the header arrived */
    const uint8_t *body = hdr + FRAME_HEADER_SIZE;
    if (frame_check(hdr, &h, body) != 0) {
        protocol_error(c, "frame CRC mismatch", ST_EPROTO);
        return;
    }
    switch (c->state) {
    case CONN_HANDSHAKE:
        if (!c->outbound && h.type == FRAME_HELLO)
            handle_hello(c, body, h.body_len);
        else if (c->outbound && h.type == FRAME_HELLO_ACK)
            handle_hello_ack(c, body, h.body_len);
        else
            protocol_error(c, "unexpected frame during the handshake", ST_EPROTO);
        return;
    case CONN_UP:
        break;
    default:
        return;
    }
    switch (h.type) {
    case FRAME_MSG:
        handle_msg(c, frame, body, h.body_len);
        break;
    case FRAME_SNAP_BEGIN:
        handle_snap_begin(c, body, h.body_len);
        break;
    case FRAME_SNAP_CHUNK:
        handle_snap_chunk(c, body, h.body_len);
        break;
    case FRAME_SNAP_END:
        handle_snap_end(c, body, h.body_len);
        break;
    case FRAME_SNAP_ABORT:
        handle_snap_abort(c, body, h.body_len);
        break;
    case FRAME_SNAP_ACK:
        handle_snap_ack(c, body, h.body_len);
        break;
    default:
        protocol_error(c, "unexpected frame type", ST_EPROTO);
        break;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct tr_conn *c = h->data;
    struct raft_buf *b = c->rbuf;
    ST_ASSERT(b != NULL && c->rlen < b->cap);
    *buf = uv_buf_init((char *)b->data + c->rlen, (unsigned)(b->cap - c->rlen));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct tr_conn *c = stream->data;
    struct tr *tr = c->tr;
    if (nread == 0) return;
    if (nread < 0) {
        if (nread != UV_EOF) ST_TRACE_DEBUG(MOD, "read: %s", uv_strerror((int)nread));
        conn_close(c, nread == UV_EOF ? ST_ECLOSED : ST_ECONNECTION, true);
        return;
    }
    if (c->state == CONN_CLOSING || c->state == CONN_REFUSING) return;
    tr->stats.bytes_received += (uint64_t)nread;
    c->rlen += (size_t)nread;
    if (c->rbuf != c->scratch) { /* a dedicated buffer holding exactly one frame */
        struct raft_buf *big = c->rbuf;
        if (c->rlen < big->cap) return;
        c->rbuf = c->scratch;
        c->rpos = c->rlen = 0;
        process_frame(c, big, big->data);
        raft_buf_unref(big); /* decoded entries hold their own references */
        return;
    }
    struct raft_buf *s = c->scratch;
    while (c->state == CONN_HANDSHAKE || c->state == CONN_UP) {
        size_t have = c->rlen - c->rpos;
        if (have < FRAME_HEADER_SIZE) break;
        const uint8_t *hdr = s->data + c->rpos;
        struct frame_header h;
        /* Before the handshake only a HELLO/HELLO_ACK may come: an
         * unauthenticated peer cannot make us buffer a big frame. */
        uint32_t body_max =
            c->state == CONN_HANDSHAKE ? TR_HANDSHAKE_BODY_MAX : tr->cfg.frame_bytes_max;
        int rv = frame_header_decode(hdr, body_max, &h);
        if (rv != 0) {
            protocol_error(
                c, rv == ST_ETOOBIG ? "frame larger than frame_bytes_max" : "bad frame header", rv);
            return;
        }
        size_t total = FRAME_HEADER_SIZE + (size_t)h.body_len;
        if (have >= total) {
            c->rpos += total;
            process_frame(c, s, hdr);
            continue;
        }
        if (total > TR_SCRATCH_BYTES / 2) { /* read the rest straight into its own buffer */
            struct raft_buf *big = raft_buf_create(total);
            if (total > tr->stats.frame_buffer_bytes_max) tr->stats.frame_buffer_bytes_max = total;
            if (big == NULL) {
                conn_close(c, ST_ENOMEM, true);
                return;
            }
            memcpy(big->data, hdr, have);
            c->rbuf = big;
            c->rpos = 0;
            c->rlen = have;
            return;
        }
        break;
    }
    if (c->state != CONN_HANDSHAKE && c->state != CONN_UP) return;
    /* Keep the partial frame at the front so the next read has room for it. */
    size_t have = c->rlen - c->rpos;
    if (c->rpos > 0) {
        memmove(s->data, s->data + c->rpos, have);
        c->rpos = 0;
        c->rlen = have;
    }
    ST_ASSERT(c->rlen < s->cap);
}

/* ----------------------------------------------------------------- dialing */

static void on_connect(uv_connect_t *req, int status)
{
    struct tr_conn *c = req->data;
    struct tr *tr = c->tr;
    if (c->state == CONN_CLOSING) return;
    if (status < 0) {
        ST_TRACE_DEBUG(MOD, "connect to peer %" PRIu64 " (%s): %s", c->peer->id, c->peer->addr,
                       uv_strerror(status));
        conn_close(c, ST_ECONNECTION, true);
        return;
    }
    c->state = CONN_HANDSHAKE;
    conn_set_options(c);
    int rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rv != 0) {
        conn_close(c, uv_to_st(rv), true);
        return;
    }
    struct frame_hello h = {.proto_version = FRAME_PROTO_VERSION,
                            .cluster_id = tr->cfg.cluster_id,
                            .from_id = tr->cfg.self_id,
                            .to_id = c->peer->id};
    const char *adv = tr->cfg.advertise_addr[0] ? tr->cfg.advertise_addr : tr->cfg.listen_addr;
    h.addr_len = (uint16_t)strlen(adv);
    memcpy(h.addr, adv, h.addr_len);
    uint8_t body[FRAME_HELLO_FIXED_SIZE + FRAME_HELLO_ADDR_MAX];
    size_t n = frame_hello_encode(&h, body);
    conn_send_ctrl(c, FRAME_HELLO, body, (uint32_t)n, false);
}

static void peer_maybe_free(struct tr_peer *p)
{
    if (!p->removed || p->timer_open || p->gai_pending) return;
    struct tr *tr = p->tr;
    peer_free_addrs(p);
    free(p);
    tr->live--;
    tr_maybe_free(tr);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tr_peer *p = req->data;
    struct tr *tr = p->tr;
    p->gai_pending = false;
    if (p->removed || tr->destroying) {
        if (res != NULL) uv_freeaddrinfo(res);
        peer_maybe_free(p);
        return;
    }
    if (status < 0 || res == NULL) {
        ST_TRACE_WARN(MOD, "peer %" PRIu64 ": cannot resolve %s: %s", p->id, p->addr,
                      uv_strerror(status));
        if (res != NULL) uv_freeaddrinfo(res);
        peer_drop_queue(p, ST_ECONNECTION, true);
        peer_schedule_dial(p);
        return;
    }
    p->ai_list = p->ai_next = res;
    peer_dial_next(p);
}

static void peer_free_addrs(struct tr_peer *p)
{
    if (p->ai_list != NULL) uv_freeaddrinfo(p->ai_list);
    p->ai_list = p->ai_next = NULL;
}

/* Connects to the next resolved address; after the last, backs off. */
static void peer_dial_next(struct tr_peer *p)
{
    struct tr *tr = p->tr;
    ST_ASSERT(p->conn == NULL);
    struct addrinfo *ai = p->ai_next;
    if (ai == NULL) {
        peer_free_addrs(p);
        peer_schedule_dial(p);
        return;
    }
    p->ai_next = ai->ai_next;
    struct tr_conn *c = conn_create(tr, true, p);
    if (c == NULL) {
        peer_free_addrs(p);
        peer_drop_queue(p, ST_ENOMEM, true);
        peer_schedule_dial(p);
        return;
    }
    p->conn = c;
    int rv = uv_tcp_connect(&c->connect_req, &c->tcp, ai->ai_addr, on_connect);
    if (rv != 0) {
        ST_TRACE_DEBUG(MOD, "connect to peer %" PRIu64 ": %s", p->id, uv_strerror(rv));
        conn_close(c, uv_to_st(rv), true); /* tries the next address */
    }
}

static void on_dial_timer(uv_timer_t *t)
{
    struct tr_peer *p = t->data;
    struct tr *tr = p->tr;
    if (p->removed || tr->destroying || p->conn != NULL || p->gai_pending) return;
    if (p->dialed_once) tr->stats.reconnects++;
    p->dialed_once = true;
    char host[TR_ADDR_MAX + 1], port[8];
    uint16_t portnum;
    ST_ASSERT(frame_addr_split(p->addr, host, sizeof(host), &portnum) == 0); /* checked at add */
    snprintf(port, sizeof(port), "%u", (unsigned)portnum);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    p->gai.data = p;
    int rv = uv_getaddrinfo(tr->loop, &p->gai, on_resolved, host, port, &hints);
    if (rv != 0) {
        ST_TRACE_WARN(MOD, "peer %" PRIu64 ": getaddrinfo: %s", p->id, uv_strerror(rv));
        peer_schedule_dial(p);
        return;
    }
    p->gai_pending = true;
}

uint32_t tr_reconnect_bound_ms(const struct tr_config *cfg, uint32_t prev_bound_ms,
                               uint64_t down_for_ms)
{
    if (prev_bound_ms == 0 || down_for_ms < cfg->reconnect_fast_ms) return cfg->reconnect_base_ms;
    return (uint32_t)ST_MIN((uint64_t)prev_bound_ms * 2, (uint64_t)cfg->reconnect_max_ms);
}

/* Backoff with jitter (tr_reconnect_bound_ms): fast retries for the first
 * reconnect_fast_ms of an outage (a restarting peer is back within a second:
 * a bound that doubled meanwhile added ~0.45 s to a node's restart in the
 * benchmark), then d doubles up to reconnect_max_ms; the delay is uniform in
 * [d/2, d]. */
static void peer_schedule_dial(struct tr_peer *p)
{
    struct tr *tr = p->tr;
    uint64_t now = uv_now(tr->loop);
    if (p->down_since_ms == 0) p->down_since_ms = now;
    uint32_t d = tr_reconnect_bound_ms(&tr->cfg, p->backoff_ms, now - p->down_since_ms);
    p->backoff_ms = d;
    uint64_t delay = d / 2 + st_rng_below(&tr->rng, d / 2 + 1);
    uv_timer_start(&p->timer, on_dial_timer, delay, 0);
}

/* -------------------------------------------------------------- listening */

static void on_connection(uv_stream_t *server, int status)
{
    struct tr *tr = server->data;
    if (status < 0) {
        /* Out of descriptors (libuv calls back only once its own reserve
         * descriptor is gone, see http/server.c): pending peers are refused
         * (they redial with backoff), or the loop spins on the listener. */
        uint32_t refused = 0;
        uv_os_fd_t lfd;
        if ((status == UV_EMFILE || status == UV_ENFILE) &&
            uv_fileno((const uv_handle_t *)server, &lfd) == 0)
            refused = st_accept_refuse_pending(lfd);
        tr->stats.accept_failures++;
        uint64_t now = uv_now(tr->loop);
        if (tr->accept_warned_ms == 0 || now - tr->accept_warned_ms >= 1000) {
            tr->accept_warned_ms = now;
            ST_TRACE_WARN(MOD, "accept: %s (%u pending connection(s) refused)",
                          uv_strerror(status), refused);
        }
        return;
    }
    if (tr->destroying) return;
    struct tr_conn *c = conn_create(tr, false, NULL);
    if (c == NULL) {
        ST_TRACE_ERROR(MOD, "accept: out of memory");
        return;
    }
    c->counted_inbound = true;
    tr->inbound_pending++;
    int rv = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rv == 0 && tr->inbound_pending > TR_INBOUND_PENDING_MAX) {
        ST_TRACE_WARN(MOD, "accept: %u unauthenticated connections: closing the new one",
                      tr->inbound_pending);
        rv = UV_EBUSY;
    }
    if (rv == 0) {
        conn_set_options(c);
        rv = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    if (rv != 0) conn_close(c, uv_to_st(rv), false);
}

/* -------------------------------------------------------------------- API */

void tr_config_default(struct tr_config *cfg, raft_id self_id, uint64_t cluster_id,
                       const char *listen_addr)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->self_id = self_id;
    cfg->cluster_id = cluster_id;
    if (listen_addr != NULL)
        snprintf(cfg->listen_addr, sizeof(cfg->listen_addr), "%s", listen_addr);
    cfg->seed = self_id;
    cfg->frame_bytes_max = 64u << 20;
    cfg->send_queue_msgs_max = 4096;
    cfg->send_queue_bytes_max = 64u << 20;
    cfg->snapshot_chunk_bytes = 256u << 10;
    cfg->reconnect_base_ms = 50;
    cfg->reconnect_max_ms = 5000;
    cfg->reconnect_fast_ms = 2000;
    cfg->handshake_timeout_ms = 5000;
    cfg->queue_wait_ms = 2000;
}

int tr_create(uv_loop_t *loop, const struct tr_config *cfg, const struct tr_callbacks *cbs,
              struct tr **out)
{
    char host[TR_ADDR_MAX + 1];
    uint16_t port;
    if (cfg->self_id == RAFT_NONE || cfg->frame_bytes_max < 4096 ||
        cfg->snapshot_chunk_bytes == 0 ||
        (uint64_t)cfg->snapshot_chunk_bytes + FRAME_SNAP_CHUNK_FIXED_SIZE > cfg->frame_bytes_max ||
        cfg->send_queue_msgs_max == 0 || cfg->send_queue_bytes_max == 0 ||
        cfg->reconnect_base_ms == 0 || cfg->reconnect_max_ms < cfg->reconnect_base_ms ||
        cfg->handshake_timeout_ms == 0 || cfg->queue_wait_ms == 0 ||
        memchr(cfg->listen_addr, '\0', sizeof(cfg->listen_addr)) == NULL ||
        memchr(cfg->advertise_addr, '\0', sizeof(cfg->advertise_addr)) == NULL ||
        frame_addr_split(cfg->listen_addr, host, sizeof(host), &port) != 0)
        return ST_EINVAL;
    struct tr *tr = calloc(1, sizeof(*tr));
    if (tr == NULL) return ST_ENOMEM;
    tr->loop = loop;
    tr->cfg = *cfg;
    if (cbs != NULL) tr->cbs = *cbs;
    st_rng_init(&tr->rng, cfg->seed);
    st_list_init(&tr->peers);
    st_list_init(&tr->conns);
    st_list_init(&tr->out_pool);
    wire_msg_init(&tr->wm);
    ST_ASSERT(uv_timer_init(loop, &tr->notify_timer) == 0);
    tr->notify_timer.data = tr;
    ST_ASSERT(uv_timer_init(loop, &tr->sweep_timer) == 0);
    tr->sweep_timer.data = tr;
    tr->live += 2; /* the two timers */
    *out = tr;
    return 0;
}

int tr_start(struct tr *tr)
{
    if (tr->listener_open || tr->destroying) return ST_EINVAL;
    /* A write to a connection the peer reset must be an EPIPE error on that
     * connection, not a process-killing signal. */
    signal(SIGPIPE, SIG_IGN);
    char host[TR_ADDR_MAX + 1], port[8];
    uint16_t portnum;
    if (frame_addr_split(tr->cfg.listen_addr, host, sizeof(host), &portnum) != 0) return ST_EINVAL;
    snprintf(port, sizeof(port), "%u", (unsigned)portnum);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    uv_getaddrinfo_t req;
    int rv = uv_getaddrinfo(tr->loop, &req, NULL, host, port, &hints); /* synchronous */
    if (rv != 0) {
        ST_TRACE_ERROR(MOD, "cannot resolve listen address %s: %s", tr->cfg.listen_addr,
                       uv_strerror(rv));
        return ST_EINVAL;
    }
    ST_ASSERT(uv_tcp_init(tr->loop, &tr->listener) == 0);
    tr->listener.data = tr;
    tr->listener_open = true;
    tr->live++;
    rv = uv_tcp_bind(&tr->listener, req.addrinfo->ai_addr, 0);
    uv_freeaddrinfo(req.addrinfo);
    if (rv == 0) rv = uv_listen((uv_stream_t *)&tr->listener, TR_BACKLOG, on_connection);
    if (rv != 0) {
        ST_TRACE_ERROR(MOD, "cannot listen on %s: %s", tr->cfg.listen_addr, uv_strerror(rv));
        return rv == UV_EADDRINUSE ? ST_EEXIST : uv_to_st(rv);
    }
    if (tr->cfg.advertise_addr[0] == '\0') { /* the listen address, with the bound port */
        bool v6 = strchr(host, ':') != NULL;
        snprintf(tr->cfg.advertise_addr, sizeof(tr->cfg.advertise_addr), "%s%.200s%s:%d",
                 v6 ? "[" : "", host, v6 ? "]" : "", tr_listen_port(tr));
    }
    ST_TRACE_INFO(MOD, "node %" PRIu64 " listening on %s (port %d)", tr->cfg.self_id,
                  tr->cfg.listen_addr, tr_listen_port(tr));
    return 0;
}

int tr_listen_port(const struct tr *tr)
{
    if (!tr->listener_open) return 0;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&tr->listener, (struct sockaddr *)&ss, &len) != 0) return 0;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

static void on_peer_timer_closed(uv_handle_t *h)
{
    struct tr_peer *p = h->data;
    p->timer_open = false;
    peer_maybe_free(p);
}

int tr_peer_add(struct tr *tr, raft_id id, const char *addr)
{
    char host[TR_ADDR_MAX + 1];
    uint16_t port;
    if (tr->destroying) return ST_ECLOSED;
    if (id == RAFT_NONE || id == tr->cfg.self_id || addr == NULL || strlen(addr) > TR_ADDR_MAX ||
        frame_addr_split(addr, host, sizeof(host), &port) != 0)
        return ST_EINVAL;
    if (peer_find(tr, id) != NULL) return ST_EEXIST;
    struct tr_peer *p = calloc(1, sizeof(*p));
    if (p == NULL) return ST_ENOMEM;
    p->tr = tr;
    p->id = id;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->dialer = tr->cfg.self_id < id;
    st_list_init(&p->queue);
    ST_ASSERT(uv_timer_init(tr->loop, &p->timer) == 0);
    p->timer.data = p;
    p->timer_open = true;
    st_list_push_back(&tr->peers, &p->link);
    tr->live++;
    if (p->dialer) uv_timer_start(&p->timer, on_dial_timer, 0, 0);
    return 0;
}

/* Removal without callbacks, except the snapshot ends when notify_snap
 * (tr_peer_remove: the node may hold files for them). */
static void peer_remove(struct tr_peer *p, bool notify_snap)
{
    struct tr *tr = p->tr;
    p->removed = true;
    st_list_del(&p->link);
    if (p->snap_out != NULL) snap_out_finish(p->snap_out, ST_ECANCELED, notify_snap, true);
    if (p->snap_in != NULL) snap_in_end(p, ST_ECANCELED, notify_snap, false);
    peer_drop_queue(p, ST_ECLOSED, false);
    if (p->conn != NULL) conn_close(p->conn, ST_ECLOSED, false);
    ST_ASSERT(p->conn == NULL);
    if (p->gai_pending)
        uv_cancel((uv_req_t *)&p->gai); /* its callback still comes, with a cancel status */
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_peer_timer_closed);
    (void)tr;
}

int tr_peer_remove(struct tr *tr, raft_id id)
{
    struct tr_peer *p = peer_find(tr, id);
    if (p == NULL) return ST_ENOENT;
    peer_remove(p, true);
    return 0;
}

bool tr_peer_connected(const struct tr *tr, raft_id id)
{
    const struct tr_peer *p = peer_find(tr, id);
    return p != NULL && p->conn != NULL && p->conn->state == CONN_UP;
}

/* Back-pressure drops are reported from the loop, once per peer per round. */
static void on_notify_timer(uv_timer_t *t)
{
    struct tr *tr = t->data;
    /* The callback may remove any peer (or destroy tr): rescan from the head
     * after each one; flags are cleared first, so this terminates. */
    bool again = true;
    while (again && !tr->destroying) {
        again = false;
        for (struct st_list *l = tr->peers.next; l != &tr->peers; l = l->next) {
            struct tr_peer *p = ST_CONTAINER_OF(l, struct tr_peer, link);
            if (!p->busy_notify) continue;
            p->busy_notify = false;
            if (tr->cbs.send_failed_cb != NULL)
                tr->cbs.send_failed_cb(tr->cbs.ctx, p->id, p->busy_msg_type, ST_EBUSY);
            again = true;
            break;
        }
    }
}

/* Messages do not wait for a connection forever (a lower-id peer that never
 * dials back, a dialer in a long backoff): past queue_wait_ms the queue of a
 * disconnected peer is dropped and reported, so the node learns the peer is
 * unreachable and a returning peer is not flooded with stale messages. */
static void on_sweep_timer(uv_timer_t *t)
{
    struct tr *tr = t->data;
    uint64_t now = uv_now(tr->loop);
    uint64_t next = UINT64_MAX; /* earliest deadline still pending */
    bool again = true;
    while (again && !tr->destroying) { /* callbacks may remove peers: rescan */
        again = false;
        for (struct st_list *l = tr->peers.next; l != &tr->peers; l = l->next) {
            struct tr_peer *p = ST_CONTAINER_OF(l, struct tr_peer, link);
            if (st_list_empty(&p->queue)) continue;
            struct tr_out *head = ST_CONTAINER_OF(p->queue.next, struct tr_out, link);
            uint64_t deadline = head->queued_at_ms + tr->cfg.queue_wait_ms;
            if (deadline > now) {
                next = ST_MIN(next, deadline);
                continue;
            }
            ST_TRACE_DEBUG(MOD, "peer %" PRIu64 ": %u messages waited %u ms for a connection",
                           p->id, p->queue_msgs, tr->cfg.queue_wait_ms);
            peer_drop_queue(p, ST_ECONNECTION, true);
            again = true;
            break;
        }
    }
    if (!tr->destroying && next != UINT64_MAX)
        uv_timer_start(&tr->sweep_timer, on_sweep_timer, next - now, 0);
}

int tr_send(struct tr *tr, const struct raft_msg *m)
{
    if (tr->destroying) return ST_ECLOSED;
    struct tr_peer *p = peer_find(tr, m->to);
    if (p == NULL) return ST_ENOENT;
    if (m->type == RAFT_MSG_SNAPSHOT) return ST_EINVAL;
    size_t hdr_part;
    int rv = wire_msg_header_size(m, &hdr_part);
    if (rv != 0) return rv;
    uint32_t npay = 0;
    uint64_t body = hdr_part;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        if (m->entries[i].len == 0) continue;
        if (m->entries[i].buf == NULL) /* zero-copy needs an owner to reference */
            return ST_EINVAL;
        npay++;
        body += m->entries[i].len;
    }
    if (body > tr->cfg.frame_bytes_max) return ST_ETOOBIG;
    uint64_t bytes = FRAME_HEADER_SIZE + body;
    struct tr_conn *c = p->conn != NULL && p->conn->state == CONN_UP ? p->conn : NULL;
    uint64_t q_msgs = p->queue_msgs + (c ? c->inflight_msgs : 0);
    uint64_t q_bytes = p->queue_bytes + (c ? c->inflight_bytes : 0);
    /* A single message larger than the byte bound may go through an empty queue. */
    if (q_msgs + 1 > tr->cfg.send_queue_msgs_max ||
        (q_msgs > 0 && q_bytes + bytes > tr->cfg.send_queue_bytes_max)) {
        tr->stats.msgs_dropped++;
        ST_TRACE_DEBUG(MOD,
                       "peer %" PRIu64 ": send queue full (%" PRIu64 " msgs, %" PRIu64
                       " bytes): dropped %s",
                       p->id, q_msgs, q_bytes, raft_msg_type_name(m->type));
        p->busy_notify = true;
        p->busy_msg_type = m->type;
        if (!uv_is_active((uv_handle_t *)&tr->notify_timer))
            uv_timer_start(&tr->notify_timer, on_notify_timer, 0, 0);
        return ST_EBUSY;
    }
    struct tr_out *o = out_alloc(tr, OUT_MSG, 1 + npay, npay, FRAME_HEADER_SIZE + hdr_part);
    if (o == NULL) return ST_ENOMEM;
    o->to = m->to;
    o->msg_type = m->type;
    o->bytes = bytes;
    size_t written;
    rv = wire_msg_encode_header(m, o->hdr + FRAME_HEADER_SIZE, hdr_part, &written);
    ST_ASSERT(rv == 0 && written == hdr_part);
    uint32_t crc = frame_header_start(o->hdr, FRAME_MSG, (uint32_t)body);
    crc = st_crc32c(crc, o->hdr + FRAME_HEADER_SIZE, hdr_part);
    o->bufs[0] = uv_buf_init((char *)o->hdr, (unsigned)(FRAME_HEADER_SIZE + hdr_part));
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (e->len == 0) continue;
        crc = st_crc32c(crc, e->data, e->len);
        o->bufs[1 + k] = uv_buf_init(uv_base(e->data), e->len);
        raft_buf_ref(e->buf);
        o->refs[k++] = e->buf;
    }
    o->nrefs = k;
    frame_header_set_crc(o->hdr, crc);
    if (c != NULL) {
        rv = conn_write(c, o);
        if (rv != 0) {
            tr->stats.msgs_dropped++;
            out_free(o);
            conn_doom(c, ST_ECONNECTION);
            return ST_ECONNECTION;
        }
        return 0;
    }
    o->queued_at_ms = uv_now(tr->loop);
    st_list_push_back(&p->queue, &o->link);
    p->queue_msgs++;
    p->queue_bytes += bytes;
    if (!uv_is_active((uv_handle_t *)&tr->sweep_timer))
        uv_timer_start(&tr->sweep_timer, on_sweep_timer, tr->cfg.queue_wait_ms, 0);
    return 0;
}

/* ------------------------------------------------- outbound snapshots */

static void snap_out_maybe_free(struct tr_snap_out *s)
{
    if (!s->finished || s->fs_pending || s->write_pending) return;
    struct tr *tr = s->tr;
    if (s->fd >= 0) {
        uv_fs_t req;
        uv_fs_close(tr->loop, &req, s->fd, NULL); /* synchronous: a local file */
        uv_fs_req_cleanup(&req);
    }
    free(s->path);
    free(s->chunk);
    free(s->begin_body);
    free(s);
    tr->live--;
    tr_maybe_free(tr);
}

static void snap_out_finish(struct tr_snap_out *s, int status, bool notify, bool send_abort)
{
    if (s->finished) return;
    struct tr *tr = s->tr;
    s->finished = true;
    struct tr_peer *p = s->peer;
    s->peer = NULL;
    if (p != NULL) {
        ST_ASSERT(p->snap_out == s);
        p->snap_out = NULL;
        if (send_abort && p->conn != NULL && p->conn->state == CONN_UP) {
            uint8_t body[FRAME_SNAP_STATUS_SIZE];
            frame_status_encode(s->stream, status, body);
            conn_send_ctrl(p->conn, FRAME_SNAP_ABORT, body, sizeof(body), false);
        }
    }
    if (status == 0) {
        tr->stats.snapshots_sent++;
        ST_TRACE_INFO(MOD, "snapshot to peer %" PRIu64 ": %" PRIu64 " bytes stored", s->to,
                      s->size);
    } else {
        tr->stats.snapshots_failed++;
        ST_TRACE_WARN(MOD, "snapshot to peer %" PRIu64 " failed at %" PRIu64 "/%" PRIu64 ": %s",
                      s->to, s->offset, s->size, st_strerror(status));
    }
    if (notify && tr->cbs.snapshot_sent_cb != NULL)
        tr->cbs.snapshot_sent_cb(tr->cbs.ctx, s->to, status);
    snap_out_maybe_free(s);
}

static struct tr_conn *snap_out_conn(struct tr_snap_out *s)
{
    if (s->peer == NULL || s->peer->conn == NULL || s->peer->conn->state != CONN_UP) return NULL;
    return s->peer->conn;
}

static void on_snap_read(uv_fs_t *req);

static void snap_out_next(struct tr_snap_out *s)
{
    struct tr *tr = s->tr;
    struct tr_conn *c = snap_out_conn(s);
    if (c == NULL) {
        snap_out_finish(s, ST_ECONNECTION, true, false);
        return;
    }
    if (s->offset == s->size) {
        uint8_t body[FRAME_SNAP_END_SIZE];
        le_put32(body, s->stream);
        le_put64(body + 4, s->size);
        le_put32(body + 12, s->crc);
        conn_send_ctrl(c, FRAME_SNAP_END, body, sizeof(body), false);
        return; /* wait for SNAP_ACK */
    }
    size_t n = (size_t)ST_MIN((uint64_t)tr->cfg.snapshot_chunk_bytes, s->size - s->offset);
    uv_buf_t b = uv_buf_init((char *)s->chunk + FRAME_HEADER_SIZE + FRAME_SNAP_CHUNK_FIXED_SIZE,
                             (unsigned)n);
    s->fs.data = s;
    int rv = uv_fs_read(tr->loop, &s->fs, s->fd, &b, 1, (int64_t)s->offset, on_snap_read);
    if (rv != 0) {
        snap_out_finish(s, uv_to_st(rv), true, true);
        return;
    }
    s->fs_pending = true;
}

static void on_snap_read(uv_fs_t *req)
{
    struct tr_snap_out *s = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    s->fs_pending = false;
    if (s->finished) {
        snap_out_maybe_free(s);
        return;
    }
    if (r <= 0) { /* 0: the file is shorter than announced */
        ST_TRACE_ERROR(MOD, "snapshot %s: read at %" PRIu64 ": %s", s->path, s->offset,
                       r < 0 ? uv_strerror((int)r) : "unexpected end of file");
        snap_out_finish(s, ST_EIO, true, true);
        return;
    }
    struct tr_conn *c = snap_out_conn(s);
    if (c == NULL) {
        snap_out_finish(s, ST_ECONNECTION, true, false);
        return;
    }
    size_t n = (size_t)r;
    uint8_t *body = s->chunk + FRAME_HEADER_SIZE;
    le_put32(body, s->stream);
    le_put64(body + 4, s->offset);
    s->crc = st_crc32c(s->crc, body + FRAME_SNAP_CHUNK_FIXED_SIZE, n);
    uint32_t body_len = (uint32_t)(FRAME_SNAP_CHUNK_FIXED_SIZE + n);
    frame_header_encode(s->chunk, FRAME_SNAP_CHUNK, body, body_len);
    struct tr_out *o = out_alloc(s->tr, OUT_SNAP_CHUNK, 1, 0, 0);
    if (o == NULL) {
        snap_out_finish(s, ST_ENOMEM, true, true);
        return;
    }
    o->snap = s;
    o->to = s->to;
    o->bytes = FRAME_HEADER_SIZE + body_len;
    o->bufs[0] = uv_buf_init((char *)s->chunk, (unsigned)o->bytes);
    s->chunk_len = n;
    if (conn_write(c, o) != 0) {
        out_free(o);
        conn_close(c, ST_ECONNECTION, true); /* fails the stream too */
        return;
    }
    s->write_pending = true;
}

static void snap_out_chunk_written(struct tr_snap_out *s, int status)
{
    s->write_pending = false;
    if (s->finished) {
        snap_out_maybe_free(s);
        return;
    }
    if (status < 0) {
        snap_out_finish(s, ST_ECONNECTION, true, false);
        return;
    }
    s->offset += s->chunk_len;
    s->tr->stats.snapshot_bytes_sent += s->chunk_len;
    snap_out_next(s);
}

static void on_snap_open(uv_fs_t *req)
{
    struct tr_snap_out *s = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    s->fs_pending = false;
    if (r >= 0) s->fd = (uv_file)r;
    if (s->finished) {
        snap_out_maybe_free(s);
        return;
    }
    if (r < 0) {
        ST_TRACE_ERROR(MOD, "snapshot %s: open: %s", s->path, uv_strerror((int)r));
        snap_out_finish(s, uv_to_st((int)r), true, false);
        return;
    }
    struct tr_conn *c = snap_out_conn(s);
    if (c == NULL) {
        snap_out_finish(s, ST_ECONNECTION, true, false);
        return;
    }
    conn_send_ctrl(c, FRAME_SNAP_BEGIN, s->begin_body, (uint32_t)s->begin_len, false);
    snap_out_next(s);
}

int tr_send_snapshot(struct tr *tr, const struct raft_msg *m, const char *path, uint64_t size)
{
    if (tr->destroying) return ST_ECLOSED;
    if (m->type != RAFT_MSG_SNAPSHOT || m->snapshot == NULL || path == NULL) return ST_EINVAL;
    struct tr_peer *p = peer_find(tr, m->to);
    if (p == NULL) return ST_ENOENT;
    if (p->conn == NULL || p->conn->state != CONN_UP) return ST_ECONNECTION;
    if (p->snap_out != NULL) return ST_EBUSY;
    size_t mlen;
    int rv = wire_msg_header_size(m, &mlen);
    if (rv != 0) return rv;
    struct tr_snap_out *s = calloc(1, sizeof(*s));
    if (s == NULL) return ST_ENOMEM;
    s->tr = tr;
    s->peer = p;
    s->to = p->id;
    s->fd = -1;
    s->size = size;
    s->path = strdup(path);
    s->begin_len = FRAME_SNAP_BEGIN_FIXED_SIZE + mlen;
    s->begin_body = malloc(s->begin_len);
    s->chunk = malloc(FRAME_HEADER_SIZE + FRAME_SNAP_CHUNK_FIXED_SIZE +
                      (size_t)tr->cfg.snapshot_chunk_bytes);
    if (s->path == NULL || s->begin_body == NULL || s->chunk == NULL) {
        rv = ST_ENOMEM;
        goto err_free;
    }
    if (++tr->snap_stream_seq == 0) /* 0 is not a stream id */
        tr->snap_stream_seq = 1;
    s->stream = tr->snap_stream_seq;
    le_put32(s->begin_body, s->stream);
    le_put64(s->begin_body + 4, size);
    size_t written;
    rv = wire_msg_encode(m, s->begin_body + FRAME_SNAP_BEGIN_FIXED_SIZE, mlen, &written);
    ST_ASSERT(rv == 0 && written == mlen);
    s->fs.data = s;
    rv = uv_fs_open(tr->loop, &s->fs, path, O_RDONLY, 0, on_snap_open);
    if (rv != 0) {
        rv = uv_to_st(rv);
        goto err_free;
    }
    s->fs_pending = true;
    p->snap_out = s;
    tr->live++;
    ST_TRACE_INFO(MOD, "snapshot to peer %" PRIu64 ": streaming %s (%" PRIu64 " bytes)", p->id,
                  path, size);
    return 0;

err_free:
    free(s->chunk);
    free(s->begin_body);
    free(s->path);
    free(s);
    return rv;
}

/* ---------------------------------------------------------------- destroy */

static void on_tr_handle_closed(uv_handle_t *h)
{
    struct tr *tr = h->data;
    tr->live--;
    tr_maybe_free(tr);
}

void tr_destroy(struct tr *tr, void (*done_cb)(void *arg), void *done_arg)
{
    ST_ASSERT(!tr->destroying);
    tr->destroying = true;
    tr->done_cb = done_cb;
    tr->done_arg = done_arg;
    tr->live++; /* hold tr while tearing down */
    while (!st_list_empty(&tr->peers))
        peer_remove(ST_CONTAINER_OF(tr->peers.next, struct tr_peer, link), false);
    for (struct st_list *l = tr->conns.next; l != &tr->conns; l = l->next)
        conn_close(ST_CONTAINER_OF(l, struct tr_conn, link), ST_ECLOSED, false);
    if (tr->listener_open) uv_close((uv_handle_t *)&tr->listener, on_tr_handle_closed);
    uv_close((uv_handle_t *)&tr->notify_timer, on_tr_handle_closed);
    uv_close((uv_handle_t *)&tr->sweep_timer, on_tr_handle_closed);
    tr->live--;
    tr_maybe_free(tr);
}

void tr_stats_get(const struct tr *tr, struct tr_stats *out)
{
    *out = tr->stats;
}

int tr_peer_fd(const struct tr *tr, raft_id id)
{
    const struct tr_peer *p = peer_find(tr, id);
    uv_os_fd_t fd;
    if (p == NULL || p->conn == NULL || p->conn->state != CONN_UP ||
        uv_fileno((const uv_handle_t *)&p->conn->tcp, &fd) != 0)
        return -1;
    return fd;
}
