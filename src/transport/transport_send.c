/* The send path: frames to write (struct st_tr_out, pooled for small frames,
 * payloads referenced not copied), the per-peer queue while no connection is
 * up, writes and their completion, back-pressure (drops reported once per
 * peer per loop round), the queue-wait sweep, and st_tr_send. */
#include "transport/transport_int.h"

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

void st_tr_out_free(struct st_tr_out *o)
{
    for (uint32_t i = 0; i < o->nrefs; i++)
        raft_buf_unref(o->refs[i]);
    struct st_tr *tr = o->tr;
    if (o->pooled && tr->out_pool_n < ST_TR_OUT_POOL_MAX && !tr->destroying) {
        st_list_push_back(&tr->out_pool, &o->link);
        tr->out_pool_n++;
        return;
    }
    free(o);
}

void st_tr_out_pool_drain(struct st_tr *tr)
{
    while (!st_list_empty(&tr->out_pool)) {
        struct st_list *l = tr->out_pool.next;
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc): st_list_del moved the head past the freed l
        st_list_del(l);
        free(ST_CONTAINER_OF(l, struct st_tr_out, link));
    }
    tr->out_pool_n = 0;
}

/* One allocation: struct, iovecs, refs, then `hdr_bytes` of header. */
struct st_tr_out *st_tr_out_alloc(struct st_tr *tr, uint8_t kind, uint32_t nbufs, uint32_t nrefs,
                                  size_t hdr_bytes)
{
    size_t size = sizeof(struct st_tr_out) + nbufs * sizeof(uv_buf_t) +
                  nrefs * sizeof(struct raft_buf *) + hdr_bytes;
    struct st_tr_out *o;
    bool pooled = size <= ST_TR_OUT_POOL_BLOCK_BYTES;
    if (pooled && !st_list_empty(&tr->out_pool)) {
        struct st_list *l = tr->out_pool.next;
        st_list_del(l);
        tr->out_pool_n--;
        o = ST_CONTAINER_OF(l, struct st_tr_out, link);
        memset(o, 0, sizeof(*o));
    } else {
        o = calloc(1, pooled ? ST_TR_OUT_POOL_BLOCK_BYTES : size);
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
static struct st_tr_out *out_ctrl(struct st_tr *tr, uint8_t type, const uint8_t *body, uint32_t len)
{
    struct st_tr_out *o = st_tr_out_alloc(tr, OUT_CTRL, 1, 0, FRAME_HEADER_SIZE + len);
    if (o == NULL) return NULL;
    memcpy(o->hdr + FRAME_HEADER_SIZE, body, len);
    frame_header_encode(o->hdr, type, o->hdr + FRAME_HEADER_SIZE, len);
    o->bufs[0] = uv_buf_init((char *)o->hdr, FRAME_HEADER_SIZE + len);
    o->bytes = FRAME_HEADER_SIZE + len;
    return o;
}

/* ----------------------------------------------------------------- writes */

void st_tr_out_written(struct st_tr_out *o, int status)
{
    struct st_tr_conn *c = o->conn;
    struct st_tr *tr = c->tr;
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
    struct st_tr_snap_out *snap = o->kind == OUT_SNAP_CHUNK ? o->snap : NULL;
    bool close_after = o->close_after;
    st_tr_out_free(o);
    if (status < 0 && status != UV_ECANCELED)
        st_tr_conn_close(c, ST_ECONNECTION, true);
    else if (close_after)
        st_tr_conn_close(c, ST_ECLOSED, true);
    if (snap != NULL) st_tr_snap_out_chunk_written(snap, status);
}

static void on_write(uv_write_t *req, int status)
{
    st_tr_out_written(ST_CONTAINER_OF(req, struct st_tr_out, req), status);
}

static void on_doom_timer(uv_timer_t *t)
{
    struct st_tr_conn *c = t->data;
    st_tr_conn_close(c, c->doom_status, true);
}

/* Closes c from the next loop iteration (we are inside an API call). */
void st_tr_conn_doom(struct st_tr_conn *c, int status)
{
    if (c->state == CONN_CLOSING || c->doom_status != 0) return;
    c->doom_status = status;
    uv_timer_start(&c->timer, on_doom_timer, 0, 0);
}

/* A message straight to the socket: 1 when all of it went (o is freed),
 * else 0 and the rest goes through uv_write (o->bufs advanced past what
 * went). A socket error is left to uv_write too, so that it is reported as
 * before (its callback, or its own return). A uv_write that completes at
 * once still costs a pass through the loop's pending queue and, when its
 * queue drains, an epoll_ctl (libuv 1.44): one per append on each side. */
static int try_write_msg(struct st_tr_conn *c, struct st_tr_out *o)
{
    int w = uv_try_write((uv_stream_t *)&c->tcp, o->bufs, o->nbufs);
    if (w < 0) return 0;
    size_t left = (size_t)w;
    uint32_t i = 0;
    while (i < o->nbufs && left >= o->bufs[i].len)
        left -= o->bufs[i++].len;
    if (i == o->nbufs) {
        c->inflight_msgs++;
        c->inflight_bytes += o->bytes;
        st_tr_out_written(o, 0);
        return 1;
    }
    o->bufs[i].base += left;
    o->bufs[i].len -= left;
    o->bufs += i;
    o->nbufs -= i;
    return 0;
}

int st_tr_conn_write(struct st_tr_conn *c, struct st_tr_out *o)
{
    o->conn = c;
    if (c->tls == NULL && o->kind == OUT_MSG && !o->close_after && try_write_msg(c, o)) return 0;
    int rv = c->tls != NULL
                 ? st_tr_tls_write(c, o)
                 : uv_write(&o->req, (uv_stream_t *)&c->tcp, o->bufs, o->nbufs, on_write);
    if (rv != 0) return rv;
    if (o->kind == OUT_MSG) {
        c->inflight_msgs++;
        c->inflight_bytes += o->bytes;
    }
    return 0;
}

/* Writes a control frame; on failure the connection is closed (deferred). */
void st_tr_conn_send_ctrl(struct st_tr_conn *c, uint8_t type, const uint8_t *body, uint32_t len,
                          bool close_after)
{
    if (c->state == CONN_CLOSING) return;
    struct st_tr_out *o = out_ctrl(c->tr, type, body, len);
    if (o == NULL) {
        st_tr_conn_doom(c, ST_ENOMEM);
        return;
    }
    o->close_after = close_after;
    if (st_tr_conn_write(c, o) != 0) {
        st_tr_out_free(o);
        st_tr_conn_doom(c, ST_ECONNECTION);
    }
}

/* Drops what is queued now; a callback that sends again to p queues anew
 * (the queue is detached first, so this always terminates). */
void st_tr_peer_drop_queue(struct st_tr_peer *p, int status, bool notify)
{
    struct st_tr *tr = p->tr;
    if (st_list_empty(&p->queue)) return;
    struct st_list dropped;
    st_list_init(&dropped);
    st_list_splice_back(&dropped, &p->queue);
    p->queue_msgs = 0;
    p->queue_bytes = 0;
    while (!st_list_empty(&dropped)) {
        struct st_tr_out *o = ST_CONTAINER_OF(dropped.next, struct st_tr_out, link);
        st_list_del(&o->link);
        tr->stats.msgs_dropped++;
        raft_id id = p->id;
        uint8_t type = o->msg_type;
        st_tr_out_free(o);
        if (notify && !tr->destroying && !p->removed && tr->cbs.send_failed_cb != NULL)
            tr->cbs.send_failed_cb(tr->cbs.ctx, id, type, status);
    }
}

/* Back-pressure drops are reported from the loop, once per peer per round. */
static void on_notify_timer(uv_timer_t *t)
{
    struct st_tr *tr = t->data;
    /* The callback may remove any peer (or destroy tr): rescan from the head
     * after each one; flags are cleared first, so this terminates. */
    bool again = true;
    while (again && !tr->destroying) {
        again = false;
        for (struct st_list *l = tr->peers.next; l != &tr->peers; l = l->next) {
            struct st_tr_peer *p = ST_CONTAINER_OF(l, struct st_tr_peer, link);
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
    struct st_tr *tr = t->data;
    uint64_t now = uv_now(tr->loop);
    uint64_t next = UINT64_MAX; /* earliest deadline still pending */
    bool again = true;
    while (again && !tr->destroying) { /* callbacks may remove peers: rescan */
        again = false;
        for (struct st_list *l = tr->peers.next; l != &tr->peers; l = l->next) {
            struct st_tr_peer *p = ST_CONTAINER_OF(l, struct st_tr_peer, link);
            if (st_list_empty(&p->queue)) continue;
            struct st_tr_out *head = ST_CONTAINER_OF(p->queue.next, struct st_tr_out, link);
            uint64_t deadline = head->queued_at_ms + tr->cfg.queue_wait_ms;
            if (deadline > now) {
                next = ST_MIN(next, deadline);
                continue;
            }
            ST_TRACE_DEBUG(MOD, "peer %" PRIu64 ": %u messages waited %u ms for a connection",
                           p->id, p->queue_msgs, tr->cfg.queue_wait_ms);
            st_tr_peer_drop_queue(p, ST_ECONNECTION, true);
            again = true;
            break;
        }
    }
    if (!tr->destroying && next != UINT64_MAX)
        uv_timer_start(&tr->sweep_timer, on_sweep_timer, next - now, 0);
}

int st_tr_send(struct st_tr *tr, const struct raft_msg *m)
{
    if (tr->destroying) return ST_ECLOSED;
    struct st_tr_peer *p = peer_find(tr, m->to);
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
    struct st_tr_conn *c = p->conn != NULL && p->conn->state == CONN_UP ? p->conn : NULL;
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
    struct st_tr_out *o =
        st_tr_out_alloc(tr, OUT_MSG, 1 + npay, npay, FRAME_HEADER_SIZE + hdr_part);
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
        rv = st_tr_conn_write(c, o);
        if (rv != 0) {
            tr->stats.msgs_dropped++;
            st_tr_out_free(o);
            st_tr_conn_doom(c, ST_ECONNECTION);
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
