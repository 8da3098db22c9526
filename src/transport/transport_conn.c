/* Connections: creation and close, the HELLO handshake (both sides, with
 * refusals), inbound frames parsed from the read buffer and dispatched, and
 * accepting inbound connections. States in transport_int.h. */
#include "transport/transport_int.h"

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/api.h"
#include "transport/frame.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/fdlimit.h"
#include "util/list.h"
#include "util/rng.h"
#include "util/trace.h"
#include "wire/le.h"
#include "wire/msg.h"

static void conn_up(struct st_tr_conn *c);

/* ------------------------------------------------------------ connections */

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct st_tr_conn *c = h->data;
    ST_ASSERT(c->handles_open > 0);
    if (--c->handles_open > 0) return;
    struct st_tr *tr = c->tr;
    ST_ASSERT(c->inflight_msgs == 0);
    if (c->rbuf != NULL && c->rbuf != c->scratch) raft_buf_unref(c->rbuf);
    raft_buf_unref(c->scratch);
    st_tls_conn_destroy(c->tls);
    free(c->tls_rbuf);
    st_tr_tls_free_spares(c);
    free(c->tls_stage);
    st_list_del(&c->link);
    free(c);
    tr->live--;
    st_tr_maybe_free(tr);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct st_tr_conn *c = t->data;
    ST_TRACE_WARN(MOD, "connection %s peer %" PRIu64 ": handshake timed out",
                  c->outbound ? "to" : "from", c->peer ? c->peer->id : 0);
    st_tr_conn_close(c, ST_ETIMEDOUT, true);
}

struct st_tr_conn *st_tr_conn_create(struct st_tr *tr, bool outbound, struct st_tr_peer *peer)
{
    struct st_tr_conn *c = calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    c->scratch = raft_buf_create(ST_TR_SCRATCH_BYTES);
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
    c->created_ms = c->last_rx_ms = uv_now(tr->loop);
    uint32_t deadline_ms = tr->cfg.handshake_timeout_ms;
    if (!outbound && deadline_ms > ST_TR_INBOUND_HANDSHAKE_MS)
        deadline_ms = ST_TR_INBOUND_HANDSHAKE_MS;
    uv_timer_start(&c->timer, on_conn_timer, deadline_ms, 0);
    return c;
}

/* Raft traffic is small messages that must not wait for Nagle's algorithm
 * (a heartbeat held back by a delayed ACK costs tens of ms), and a peer that
 * vanished without a FIN must eventually fail the connection. */
void st_tr_conn_set_options(struct st_tr_conn *c)
{
    uv_tcp_nodelay(&c->tcp, 1);
    uv_tcp_keepalive(&c->tcp, 1, ST_TR_KEEPALIVE_S);
}

/* Terminal: stops IO, closes handles, detaches from the peer and fails what
 * depended on this connection (through callbacks when notify). */
void st_tr_conn_close(struct st_tr_conn *c, int status, bool notify)
{
    if (c->state == CONN_CLOSING) return;
    struct st_tr *tr = c->tr;
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
    struct st_tr_peer *p = c->peer;
    if (was_up) st_tr_tls_keep_session(c, p);
    c->peer = NULL;
    if (p == NULL || p->conn != c) return;
    p->conn = NULL;
    if (was_up)
        ST_TRACE_INFO(MOD, "peer %" PRIu64 " (%s): connection lost: %s", p->id, p->addr,
                      st_strerror(status));
    if (p->snap_out != NULL) st_tr_snap_out_finish(p->snap_out, ST_ECONNECTION, c->notify, false);
    if (p->snap_in != NULL) st_tr_snap_in_end(p, ST_ECONNECTION, c->notify, false);
    st_tr_peer_drop_queue(p, ST_ECONNECTION, c->notify);
    /* A callback above may have removed p or destroyed tr. */
    if (was_up && c->notify && !p->removed && !tr->destroying && tr->cbs.peer_state_cb != NULL)
        tr->cbs.peer_state_cb(tr->cbs.ctx, p->id, false);
    if (p->removed || tr->destroying) return;
    if (p->learned) {
        if (!p->replacing) st_tr_peer_forget(p);       /* known only through this connection */
    } else if (connect_failed && p->ai_next != NULL) { /* try the next resolved address */
        st_tr_peer_dial_next(p);
    } else {
        st_tr_peer_free_addrs(p);
        st_tr_peer_schedule_dial(p);
    }
}

void st_tr_protocol_error(struct st_tr_conn *c, const char *what, int rv)
{
    struct st_tr *tr = c->tr;
    tr->stats.protocol_errors++;
    ST_TRACE_WARN(MOD, "connection %s peer %" PRIu64 ": %s (%s): closing it",
                  c->outbound ? "to" : "from", c->peer ? c->peer->id : 0, what, st_strerror(rv));
    st_tr_conn_close(c, rv, true);
}

static void refuse(struct st_tr_conn *c, int status, const char *fmt_reason, uint64_t a, uint64_t b)
{
    struct st_tr *tr = c->tr;
    tr->stats.handshakes_refused++;
    ST_TRACE_WARN(MOD, "handshake refused (%s): %s (%" PRIu64 " vs %" PRIu64 ")",
                  st_strerror(status), fmt_reason, a, b);
    if (c->outbound) {
        st_tr_conn_close(c, status, true);
        return;
    }
    /* A refusal reveals nothing: no cluster id, no node id (the dialer may
     * be anyone; docs/WIRE-FORMAT.md). The versions block stays: it is what
     * a dialer of another release needs to say why it was refused. */
    struct frame_hello_ack ack = {
        .proto_version = FRAME_PROTO_VERSION, .status = status, .cluster_id = 0, .node_id = 0};
    frame_versions_self(&ack.versions);
    uint8_t body[FRAME_HELLO_ACK_BODY_MAX];
    size_t n = frame_hello_ack_encode(&ack, body);
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->state = CONN_REFUSING;
    st_tr_conn_send_ctrl(c, FRAME_HELLO_ACK, body, (uint32_t)n, true);
}

/* The release compatibility check of the handshake (frame.h,
 * frame_versions_compatible); traces the peer's versions. */
static bool versions_ok(const struct frame_versions *v, const char *who)
{
    struct frame_versions self;
    frame_versions_self(&self);
    if (v->present)
        ST_TRACE_DEBUG(MOD, "%s runs release %u.%u.%u, wire format %u", who, v->release_major,
                       v->release_minor, v->release_patch, v->wire_msg);
    return frame_versions_compatible(&self, v);
}

static void handle_hello(struct st_tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct st_tr *tr = c->tr;
    struct frame_hello h;
    int rv = frame_hello_decode(body, len, &h);
    if (rv != 0) {
        st_tr_protocol_error(c, "malformed HELLO", rv);
        return;
    }
    if (h.proto_version != FRAME_PROTO_VERSION) {
        refuse(c, ST_EPROTO, "protocol version", h.proto_version, FRAME_PROTO_VERSION);
        return;
    }
    if (!versions_ok(&h.versions, "dialer")) {
        refuse(c, ST_EPROTO, "release of the dialer (major * 1000 + minor, ours)",
               (uint64_t)h.versions.release_major * 1000 + h.versions.release_minor,
               (uint64_t)STCACHE_RAFT_VERSION_MAJOR * 1000 + STCACHE_RAFT_VERSION_MINOR);
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
    if (c->tls != NULL && h.from_id != c->cert_id) {
        refuse(c, ST_EMISMATCH,
               "dialer claims another node id than its certificate's (claim, cert)", h.from_id,
               c->cert_id);
        return;
    }
    struct st_tr_peer *p = peer_find(tr, h.from_id);
    if (p == NULL) {
        /* A member we do not know yet: one added while we were behind, now
         * perhaps the leader we must follow to learn of it (nemesis seed
         * 8369). It lives with this connection only, and never is dialed;
         * st_tr_peer_add() makes it a peer. With TLS its certificate names
         * the id (above). */
        if (h.from_id == RAFT_NONE || h.from_id == tr->cfg.self_id) {
            refuse(c, ST_EMISMATCH, "dialer id not valid (dialer, self)", h.from_id,
                   tr->cfg.self_id);
            return;
        }
        if (tr->learned >= ST_TR_LEARNED_MAX) {
            refuse(c, ST_EMISMATCH, "too many peers not known yet (dialer, limit)", h.from_id,
                   ST_TR_LEARNED_MAX);
            return;
        }
        if ((p = st_tr_peer_new(tr, h.from_id, h.addr)) == NULL) {
            refuse(c, ST_ENOMEM, "no memory for a peer (dialer, self)", h.from_id, tr->cfg.self_id);
            return;
        }
        p->learned = true;
        p->dialer = false;
        tr->learned++;
        ST_TRACE_INFO(MOD, "peer %" PRIu64 " (%s), not a member we know of yet, dialed us", p->id,
                      p->addr);
    } else if (p->conn != NULL && p->conn->state != CONN_UP) {
        /* Both sides are dialing: the dial of the smaller id wins. */
        if (p->dialer) {
            refuse(c, ST_EMISMATCH, "our own dial to this peer is under way (dialer, self)",
                   h.from_id, tr->cfg.self_id);
            return;
        }
        struct st_tr_conn *ours = p->conn;
        p->conn = NULL; /* detached first: what is queued waits for this connection */
        st_tr_conn_close(ours, ST_ECANCELED, false);
    } else if (p->conn != NULL && c->tls == NULL &&
               uv_now(tr->loop) - p->conn->last_rx_ms < ST_TR_REPLACE_IDLE_MS) {
        /* Without TLS anyone can claim an id: a live link is not given up
         * for a stranger's connection (docs/SECURITY.md). */
        refuse(c, ST_EMISMATCH, "peer already connected and its link is live (peer, self)",
               h.from_id, tr->cfg.self_id);
        return;
    }
    ST_TRACE_INFO(MOD, "peer %" PRIu64 " connected from its advertised address %s", p->id, h.addr);
    if (p->conn != NULL) {   /* the dialer restarted or saw the old connection die first */
        p->replacing = true; /* a learned peer is not forgotten with its old connection */
        st_tr_conn_close(p->conn, ST_ECONNECTION, true);
        p->replacing = false;
        if (p->removed || tr->destroying || c->state == CONN_CLOSING) {
            /* peer_state_cb removed the peer or destroyed the transport */
            st_tr_conn_close(c, ST_ECLOSED, false);
            return;
        }
    }
    ST_ASSERT(c->counted_inbound);
    c->counted_inbound = false;
    tr->inbound_pending--;
    c->peer = p;
    p->conn = c;
    struct frame_hello_ack ack = {.proto_version = FRAME_PROTO_VERSION,
                                  .status = 0,
                                  .cluster_id = tr->cfg.cluster_id,
                                  .node_id = tr->cfg.self_id};
    frame_versions_self(&ack.versions);
    uint8_t abody[FRAME_HELLO_ACK_BODY_MAX];
    size_t n = frame_hello_ack_encode(&ack, abody);
    st_tr_conn_send_ctrl(c, FRAME_HELLO_ACK, abody, (uint32_t)n, false);
    conn_up(c);
}

static void handle_hello_ack(struct st_tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct st_tr *tr = c->tr;
    struct frame_hello_ack a;
    int rv = frame_hello_ack_decode(body, len, &a);
    if (rv != 0) {
        st_tr_protocol_error(c, "malformed HELLO_ACK", rv);
        return;
    }
    ST_ASSERT(c->peer != NULL); /* an outbound connection always has its peer */
    uint64_t expect = c->peer->id;
    if (a.status != 0) {
        tr->stats.handshakes_refused++;
        ST_TRACE_WARN(MOD, "peer %" PRIu64 " (%s) refused our handshake: %s", expect, c->peer->addr,
                      st_strerror(a.status));
        st_tr_conn_close(c, a.status, true);
        return;
    }
    if (!versions_ok(&a.versions, "acceptor")) {
        refuse(c, ST_EPROTO, "release of the acceptor (major * 1000 + minor, ours)",
               (uint64_t)a.versions.release_major * 1000 + a.versions.release_minor,
               (uint64_t)STCACHE_RAFT_VERSION_MAJOR * 1000 + STCACHE_RAFT_VERSION_MINOR);
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

static void conn_up(struct st_tr_conn *c)
{
    struct st_tr *tr = c->tr;
    struct st_tr_peer *p = c->peer;
    c->state = CONN_UP;
    uv_timer_stop(&c->timer);
    p->backoff_ms = 0;
    p->down_since_ms = 0;
    st_tr_peer_free_addrs(p);
    tr->stats.connects++;
    ST_TRACE_INFO(MOD, "peer %" PRIu64 " (%s): connection up (%s%s)", p->id, p->addr,
                  c->outbound ? "dialed" : "accepted",
                  c->tls == NULL                ? ""
                  : st_tls_conn_resumed(c->tls) ? ", mutual TLS, resumed"
                                                : ", mutual TLS");
    while (!st_list_empty(&p->queue)) {
        struct st_tr_out *o = ST_CONTAINER_OF(p->queue.next, struct st_tr_out, link);
        st_list_del(&o->link);
        p->queue_msgs--;
        p->queue_bytes -= o->bytes;
        if (st_tr_conn_write(c, o) != 0) {
            tr->stats.msgs_dropped++;
            st_tr_out_free(o);
            st_tr_conn_doom(c, ST_ECONNECTION);
        }
    }
    if (tr->cbs.peer_state_cb != NULL) tr->cbs.peer_state_cb(tr->cbs.ctx, p->id, true);
}

/* --------------------------------------------------------- inbound frames */

static void handle_msg(struct st_tr_conn *c, struct raft_buf *frame, const uint8_t *body,
                       uint32_t len)
{
    struct st_tr *tr = c->tr;
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
        st_tr_protocol_error(c, "malformed Raft message", rv);
        return;
    }
    const struct raft_msg *m = &tr->wm.msg;
    ST_ASSERT(c->peer != NULL); /* CONN_UP: the handshake attached the peer */
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

/* One complete, length-checked frame at `hdr` inside `frame`. */
static void process_frame(struct st_tr_conn *c, struct raft_buf *frame, const uint8_t *hdr)
{
    struct frame_header h;
    int rv = frame_header_decode(hdr, c->tr->cfg.frame_bytes_max, &h);
    ST_ASSERT(rv == 0); /* checked when the header arrived */
    const uint8_t *body = hdr + FRAME_HEADER_SIZE;
    if (frame_check(hdr, &h, body) != 0) {
        st_tr_protocol_error(c, "frame CRC mismatch", ST_EPROTO);
        return;
    }
    switch (c->state) {
    case CONN_HANDSHAKE:
        if (!c->outbound && h.type == FRAME_HELLO)
            handle_hello(c, body, h.body_len);
        else if (c->outbound && h.type == FRAME_HELLO_ACK)
            handle_hello_ack(c, body, h.body_len);
        else
            st_tr_protocol_error(c, "unexpected frame during the handshake", ST_EPROTO);
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
        st_tr_handle_snap_begin(c, body, h.body_len);
        break;
    case FRAME_SNAP_CHUNK:
        st_tr_handle_snap_chunk(c, body, h.body_len);
        break;
    case FRAME_SNAP_END:
        st_tr_handle_snap_end(c, body, h.body_len);
        break;
    case FRAME_SNAP_ABORT:
        st_tr_handle_snap_abort(c, body, h.body_len);
        break;
    case FRAME_SNAP_ACK:
        st_tr_handle_snap_ack(c, body, h.body_len);
        break;
    default:
        st_tr_protocol_error(c, "unexpected frame type", ST_EPROTO);
        break;
    }
}

void st_tr_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct st_tr_conn *c = h->data;
    if (c->tls != NULL) {
        *buf = uv_buf_init((char *)c->tls_rbuf, ST_TR_TLS_READ_BYTES);
        return;
    }
    struct raft_buf *b = c->rbuf;
    ST_ASSERT(c->rlen < b->cap); /* b: scratch or a frame buffer, never NULL */
    /* A big frame's buffer is read a turn's budget at a time at most. */
    size_t room = ST_MIN(b->cap - c->rlen, (size_t)ST_TR_READ_TURN_BYTES);
    *buf = uv_buf_init((char *)b->data + c->rlen, (unsigned)room);
}

static void conn_parse(struct st_tr_conn *c);
static void turn_account(struct st_tr_conn *c, size_t n);

void st_tr_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct st_tr_conn *c = stream->data;
    struct st_tr *tr = c->tr;
    if (nread == 0) return;
    if (nread < 0) {
        if (nread != UV_EOF) ST_TRACE_DEBUG(MOD, "read: %s", uv_strerror((int)nread));
        st_tr_conn_close(c, nread == UV_EOF ? ST_ECLOSED : ST_ECONNECTION, true);
        return;
    }
    if (c->state == CONN_CLOSING || c->state == CONN_REFUSING) return;
    tr->stats.bytes_received += (uint64_t)nread;
    c->last_rx_ms = uv_now(tr->loop);
    if (c->tls != NULL)
        st_tr_tls_on_read(c, (size_t)nread);
    else
        st_tr_conn_plain(c, (size_t)nread);
    turn_account(c, (size_t)nread);
}

/* The turn timer: reads resume on the connections that used their turn. */
static void on_turn_timer(uv_timer_t *t)
{
    struct st_tr *tr = t->data;
    for (struct st_list *l = tr->conns.next; l != &tr->conns; l = l->next) {
        struct st_tr_conn *c = ST_CONTAINER_OF(l, struct st_tr_conn, link);
        if (!c->turn_paused) continue;
        c->turn_paused = false;
        /* A new loop turn, though perhaps the same millisecond: a whole
         * budget again (else the first read would pause it once more). */
        c->turn_ms = uv_now(tr->loop);
        c->turn_bytes = 0;
        if (c->state != CONN_UP || c->read_paused) continue; /* st_tr_conn_resume reads */
        int rv = uv_read_start((uv_stream_t *)&c->tcp, st_tr_on_alloc, st_tr_on_read);
        if (rv != 0) st_tr_conn_close(c, uv_to_st(rv), true);
    }
}

/* Counts n bytes read into this loop turn's budget (ST_TR_READ_TURN_BYTES);
 * past it, reads stop until the next turn. */
static void turn_account(struct st_tr_conn *c, size_t n)
{
    struct st_tr *tr = c->tr;
    uint64_t now = uv_now(tr->loop);
    if (c->turn_ms != now) {
        c->turn_ms = now;
        c->turn_bytes = 0;
    }
    c->turn_bytes += n;
    if (c->turn_bytes < ST_TR_READ_TURN_BYTES || c->state != CONN_UP || c->read_paused ||
        c->turn_paused)
        return;
    c->turn_paused = true;
    tr->stats.read_turn_pauses++;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (!uv_is_active((uv_handle_t *)&tr->turn_timer))
        uv_timer_start(&tr->turn_timer, on_turn_timer, 0, 0);
}

void st_tr_conn_plain(struct st_tr_conn *c, size_t n)
{
    c->rlen += n;
    if (c->rbuf != c->scratch) { /* a dedicated buffer holding exactly one frame */
        struct raft_buf *big = c->rbuf;
        if (c->rlen < big->cap) return;
        c->rbuf = c->scratch;
        c->rpos = c->rlen = 0;
        process_frame(c, big, big->data);
        raft_buf_unref(big); /* decoded entries hold their own references */
        return;
    }
    conn_parse(c);
}

/* Processes the complete frames buffered in the scratch buffer, until one
 * pauses the connection or closes it, and keeps the partial frame at the
 * front of the buffer. */
static void conn_parse(struct st_tr_conn *c)
{
    struct st_tr *tr = c->tr;
    struct raft_buf *s = c->scratch;
    while ((c->state == CONN_HANDSHAKE || c->state == CONN_UP) && !c->read_paused) {
        size_t have = c->rlen - c->rpos;
        if (have < FRAME_HEADER_SIZE) break;
        const uint8_t *hdr = s->data + c->rpos;
        struct frame_header h;
        /* Before the handshake only a HELLO/HELLO_ACK may come: an
         * unauthenticated peer cannot make us buffer a big frame. */
        uint32_t body_max =
            c->state == CONN_HANDSHAKE ? ST_TR_HANDSHAKE_BODY_MAX : tr->cfg.frame_bytes_max;
        int rv = frame_header_decode(hdr, body_max, &h);
        if (rv != 0) {
            st_tr_protocol_error(
                c, rv == ST_ETOOBIG ? "frame larger than frame_bytes_max" : "bad frame header", rv);
            return;
        }
        size_t total = FRAME_HEADER_SIZE + (size_t)h.body_len;
        if (have >= total) {
            c->rpos += total;
            process_frame(c, s, hdr);
            continue;
        }
        if (total > ST_TR_SCRATCH_BYTES / 2) { /* read the rest straight into its own buffer */
            struct raft_buf *big = raft_buf_create(total);
            if (total > tr->stats.frame_buffer_bytes_max) tr->stats.frame_buffer_bytes_max = total;
            if (big == NULL) {
                st_tr_conn_close(c, ST_ENOMEM, true);
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

void st_tr_conn_pause(struct st_tr_conn *c)
{
    if (c->read_paused) return;
    c->read_paused = true;
    c->tr->stats.read_pauses++;
    uv_read_stop((uv_stream_t *)&c->tcp);
}

void st_tr_conn_resume(struct st_tr_conn *c)
{
    if (!c->read_paused) return;
    c->read_paused = false;
    if (c->state != CONN_UP) return;
    conn_parse(c);
    if (c->tls != NULL && c->state == CONN_UP && !c->read_paused) st_tr_tls_pump(c);
    if (c->state == CONN_UP && !c->read_paused && !c->turn_paused) {
        int rv = uv_read_start((uv_stream_t *)&c->tcp, st_tr_on_alloc, st_tr_on_read);
        if (rv != 0) st_tr_conn_close(c, uv_to_st(rv), true);
    }
}

/* -------------------------------------------------------------- listening */

/* Same source host (the port differs per connection). */
static bool same_source(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)(const void *)a)->sin_addr,
                      &((const struct sockaddr_in *)(const void *)b)->sin_addr,
                      sizeof(struct in_addr)) == 0;
    if (a->ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)(const void *)a)->sin6_addr,
                      &((const struct sockaddr_in6 *)(const void *)b)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return false;
}

/* Keeps the unauthenticated inbound connections within their bounds after
 * `c` joined them: over ST_TR_INBOUND_PER_ADDR_MAX from c's source, or over
 * ST_TR_INBOUND_PENDING_MAX in all, the OLDEST goes. Closing the newest
 * instead would let a flood that holds its connections idle keep every real
 * peer out; closing the oldest means a flood must outpace the handshake of
 * a real peer (milliseconds) and still loses to the per-address bound. */
static void inbound_limit(struct st_tr *tr, struct st_tr_conn *c)
{
    for (;;) {
        uint32_t same = 0;
        struct st_tr_conn *oldest_same = NULL, *oldest = NULL;
        for (struct st_list *l = tr->conns.next; l != &tr->conns; l = l->next) {
            struct st_tr_conn *o = ST_CONTAINER_OF(l, struct st_tr_conn, link);
            if (!o->counted_inbound) continue;
            if (oldest == NULL || o->created_ms < oldest->created_ms) oldest = o;
            if (!same_source(&o->src, &c->src)) continue;
            same++;
            if (oldest_same == NULL || o->created_ms < oldest_same->created_ms) oldest_same = o;
        }
        struct st_tr_conn *victim = NULL;
        if (same > ST_TR_INBOUND_PER_ADDR_MAX)
            victim = oldest_same;
        else if (tr->inbound_pending > ST_TR_INBOUND_PENDING_MAX)
            victim = oldest;
        if (victim == NULL) return;
        tr->stats.inbound_evicted++;
        uint64_t now = uv_now(tr->loop);
        if (tr->accept_warned_ms == 0 || now - tr->accept_warned_ms >= 1000) {
            tr->accept_warned_ms = now;
            ST_TRACE_WARN(MOD,
                          "accept: %u unauthenticated connections (%u from one address): "
                          "closing the oldest",
                          tr->inbound_pending, same);
        }
        st_tr_conn_close(victim, ST_EBUSY, false);
    }
}

void st_tr_on_connection(uv_stream_t *server, int status)
{
    struct st_tr *tr = server->data;
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
            ST_TRACE_WARN(MOD, "accept: %s (%u pending connection(s) refused)", uv_strerror(status),
                          refused);
        }
        return;
    }
    if (tr->destroying) return;
    struct st_tr_conn *c = st_tr_conn_create(tr, false, NULL);
    if (c == NULL) {
        ST_TRACE_ERROR(MOD, "accept: out of memory");
        return;
    }
    c->counted_inbound = true;
    tr->inbound_pending++;
    int rv = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rv != 0) {
        st_tr_conn_close(c, uv_to_st(rv), false);
        return;
    }
    int len = sizeof(c->src);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->src, &len) != 0)
        memset(&c->src, 0, sizeof(c->src));
    inbound_limit(tr, c);
    st_tr_conn_set_options(c);
    rv = uv_to_st(uv_read_start((uv_stream_t *)&c->tcp, st_tr_on_alloc, st_tr_on_read));
    if (rv == 0 && tr->tls_server != NULL) rv = st_tr_tls_attach(c);
    if (rv != 0) st_tr_conn_close(c, rv, false);
}
