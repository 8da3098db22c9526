/* The simulated network of the whole-server simulator: an implementation of
 * the transport API (include/stcache/transport.h) that the simulator links in
 * place of src/transport (a link seam: node/ is the real code, unchanged).
 *
 * Messages are encoded with the real wire codec when sent, held in flight
 * with a delivery time drawn from the simulator's seeded generator, and
 * decoded and handed to the receiver's msg_cb when the simulator delivers
 * them. Loss, delay, reordering and partitions are decided by the
 * simulator (sim_net_* below); nothing here reads a clock or a socket.
 * Snapshots are streamed chunk by chunk from the sender's (simulated) file
 * system through the receiver's snapshot callbacks, with the receiver's
 * ST_TR_CB_PENDING pauses honoured, as the real transport does. */
#include "wsim.h"

#include "stcache/errors.h"
#include "util/assert.h"
#include "wire/msg.h"

#include <stdlib.h>
#include <string.h>

#define NET_CHUNK_BYTES (64u * 1024u)

struct st_tr {
    raft_id id;
    struct st_tr_callbacks cbs;
    bool peer[WSIM_NODES_MAX + 1];
    /* A sender that is not a peer, learned from its message: as the real
     * transport's learned peer, it may be answered until the connection
     * ends (conn_end), and st_tr_peer_add() makes it a peer. */
    bool learned[WSIM_NODES_MAX + 1];
    bool connected[WSIM_NODES_MAX + 1];
    struct st_tr_stats stats;
    bool started;
};

struct packet {
    uint64_t at_ms;
    uint64_t seq;
    uint64_t epoch; /* of the connection it was sent on (sim_net_connections) */
    raft_id from, to;
    struct raft_buf *frame; /* the encoded message; decoded in place at delivery */
    size_t len;
};

/* A snapshot stream from -> to: begin, chunks, end, then the message. */
struct stream {
    bool active;
    raft_id from, to;
    uint8_t *msg_bytes; /* the RAFT_MSG_SNAPSHOT, encoded */
    size_t msg_len;
    uint64_t epoch;
    char path[512];
    uint64_t size, off;
    bool begun, ended, paused, end_pending;
};

static struct {
    struct st_tr *tr[WSIM_NODES_MAX + 1]; /* by node id; NULL when down */
    /* In flight: a binary min-heap by (at_ms, seq), the delivery order. */
    struct packet *q;
    size_t n, cap;
    struct packet *due; /* sim_net_step's scratch: the packets due now */
    size_t due_cap;
    uint64_t seq;
    struct stream streams[WSIM_NODES_MAX + 1][WSIM_NODES_MAX + 1];
    struct wire_msg wm;
    bool wm_init;
    /* sim_net_connections(true): messages travel on connections, as on
     * TCP: a message is sent only if the receiver is up (it accepts a
     * sender it does not know as a learned peer), and is lost if the
     * connection ends before it arrives (either side removes the other or
     * stops). epoch[a][b] (a < b) counts the ends. */
    bool connections;
    uint64_t epoch[WSIM_NODES_MAX + 1][WSIM_NODES_MAX + 1];
} net;

static uint64_t *conn_epoch(raft_id a, raft_id b)
{
    return a < b ? &net.epoch[a][b] : &net.epoch[b][a];
}

static void conn_end(raft_id a, raft_id b)
{
    if (net.connections) ++*conn_epoch(a, b);
    if (net.tr[a]) net.tr[a]->learned[b] = false;
    if (net.tr[b]) net.tr[b]->learned[a] = false;
}

void sim_net_connections(bool on)
{
    net.connections = on;
}

/* ------------------------------------------------- the in-flight heap */

static bool packet_before(const struct packet *x, const struct packet *y)
{
    return x->at_ms != y->at_ms ? x->at_ms < y->at_ms : x->seq < y->seq;
}

static void heap_push(const struct packet *p)
{
    if (net.n == net.cap) {
        net.cap = net.cap ? 2 * net.cap : 256;
        net.q = realloc(net.q, net.cap * sizeof *net.q);
        ST_ASSERT(net.q != NULL);
    }
    size_t i = net.n++;
    while (i > 0 && packet_before(p, &net.q[(i - 1) / 2])) {
        net.q[i] = net.q[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    net.q[i] = *p;
}

/* Removes the first packet in delivery order into *out. */
static void heap_pop(struct packet *out)
{
    ST_ASSERT(net.n > 0);
    *out = net.q[0];
    struct packet last = net.q[--net.n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= net.n) break;
        if (c + 1 < net.n && packet_before(&net.q[c + 1], &net.q[c])) c++;
        if (!packet_before(&net.q[c], &last)) break;
        net.q[i] = net.q[c];
        i = c;
    }
    if (net.n) net.q[i] = last;
}

/* ------------------------------------------------------------- the API */

void st_tr_config_default(struct st_tr_config *cfg, raft_id self_id, uint64_t cluster_id,
                          const char *listen_addr)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->self_id = self_id;
    cfg->cluster_id = cluster_id;
    snprintf(cfg->listen_addr, sizeof cfg->listen_addr, "%s", listen_addr ? listen_addr : "");
}

int st_tr_create(uv_loop_t *loop, const struct st_tr_config *cfg, const struct st_tr_callbacks *cbs,
                 struct st_tr **out)
{
    (void)loop;
    if (cfg->self_id == 0 || cfg->self_id > WSIM_NODES_MAX) return ST_EINVAL;
    struct st_tr *tr = calloc(1, sizeof *tr);
    if (!tr) return ST_ENOMEM;
    tr->id = cfg->self_id;
    tr->cbs = *cbs;
    *out = tr;
    return 0;
}

int st_tr_start(struct st_tr *tr)
{
    ST_ASSERT(net.tr[tr->id] == NULL);
    net.tr[tr->id] = tr;
    tr->started = true;
    return 0;
}

int st_tr_listen_port(const struct st_tr *tr)
{
    return (int)(17000 + tr->id);
}

static void streams_drop_of(raft_id id);

void st_tr_destroy(struct st_tr *tr, void (*done_cb)(void *arg), void *done_arg)
{
    if (tr) {
        for (raft_id b = 1; b <= WSIM_NODES_MAX; b++)
            conn_end(tr->id, b);
        if (net.tr[tr->id] == tr) net.tr[tr->id] = NULL;
        streams_drop_of(tr->id);
        free(tr);
    }
    if (done_cb) done_cb(done_arg);
}

int st_tr_peer_add(struct st_tr *tr, raft_id id, const char *addr)
{
    (void)addr;
    if (id == 0 || id > WSIM_NODES_MAX) return ST_EINVAL;
    tr->peer[id] = true;
    tr->learned[id] = false;
    return 0;
}

int st_tr_peer_remove(struct st_tr *tr, raft_id id)
{
    if (id == 0 || id > WSIM_NODES_MAX || !tr->peer[id]) return ST_ENOENT;
    tr->peer[id] = false;
    tr->connected[id] = false;
    conn_end(tr->id, id);
    return 0;
}

bool st_tr_peer_connected(const struct st_tr *tr, raft_id id)
{
    return id > 0 && id <= WSIM_NODES_MAX && tr->connected[id];
}

int st_tr_send(struct st_tr *tr, const struct raft_msg *msg)
{
    raft_id to = msg->to;
    if (to == 0 || to > WSIM_NODES_MAX || (!tr->peer[to] && !tr->learned[to])) return ST_ENOENT;
    uint64_t len = wire_msg_size(msg);
    ST_ASSERT(len > 0);
    struct raft_buf *b = raft_buf_create(len);
    ST_ASSERT(b != NULL);
    size_t w = 0;
    ST_ASSERT(wire_msg_encode(msg, b->data, len, &w) == 0 && w == len);
    tr->stats.msgs_sent++;
    tr->stats.bytes_sent += len;
    uint64_t delay = 0;
    /* The real transport accepts a dialer it does not know (a learned peer):
     * a message is refused only when the receiver is down. */
    bool refused = net.connections && !net.tr[to];
    bool read_msg = msg->type == RAFT_MSG_READ_INDEX || msg->type == RAFT_MSG_READ_INDEX_RESP;
    if (refused || !wsim_link_send(tr->id, to, &delay) ||
        (read_msg && wsim_lose_read_msg())) { /* lost */
        raft_buf_unref(b);
        tr->stats.msgs_dropped++;
        return 0;
    }
    heap_push(&(struct packet){.at_ms = wsim_now_ms() + delay,
                               .seq = ++net.seq,
                               .epoch = *conn_epoch(tr->id, to),
                               .from = tr->id,
                               .to = to,
                               .frame = b,
                               .len = len});
    return 0;
}

int st_tr_send_snapshot(struct st_tr *tr, const struct raft_msg *msg, const char *path,
                        uint64_t size)
{
    raft_id to = msg->to;
    if (to == 0 || to > WSIM_NODES_MAX || !tr->peer[to]) return ST_ENOENT;
    struct stream *s = &net.streams[tr->id][to];
    if (s->active) return ST_EBUSY;
    uint64_t len = wire_msg_size(msg);
    if (len == 0) return ST_EINVAL;
    memset(s, 0, sizeof *s);
    s->msg_bytes = malloc(len);
    ST_ASSERT(s->msg_bytes != NULL);
    ST_ASSERT(wire_msg_encode(msg, s->msg_bytes, len, &s->msg_len) == 0);
    snprintf(s->path, sizeof s->path, "%s", path);
    s->size = size;
    s->epoch = *conn_epoch(tr->id, to);
    s->from = tr->id;
    s->to = to;
    s->active = true;
    return 0;
}

void st_tr_snapshot_resume(struct st_tr *tr, raft_id from, int status)
{
    if (from == 0 || from > WSIM_NODES_MAX) return;
    struct stream *s = &net.streams[from][tr->id];
    if (!s->active || !s->paused) return;
    s->paused = false;
    if (status != 0) {
        bool was_end = s->end_pending;
        s->end_pending = false;
        if (!was_end && tr->cbs.snapshot_end_cb) tr->cbs.snapshot_end_cb(tr->cbs.ctx, from, status);
        struct st_tr *snd = net.tr[from];
        s->active = false;
        free(s->msg_bytes);
        s->msg_bytes = NULL;
        if (snd && snd->cbs.snapshot_sent_cb)
            snd->cbs.snapshot_sent_cb(snd->cbs.ctx, tr->id, status);
        return;
    }
    /* A pending end that succeeded: delivered by the next sim_net_step. */
}

int st_tr_tls_reload(struct st_tr *tr, char *reason, size_t cap)
{
    (void)tr;
    if (reason && cap) snprintf(reason, cap, "no TLS in the simulator");
    return ST_EINVAL;
}

void st_tr_stats_get(const struct st_tr *tr, struct st_tr_stats *out)
{
    *out = tr->stats;
}

int st_tr_peer_fd(const struct st_tr *tr, raft_id id)
{
    (void)tr;
    (void)id;
    return -1;
}

/* ------------------------------------------------------ the simulator side */

static void streams_drop_of(raft_id id)
{
    for (raft_id a = 1; a <= WSIM_NODES_MAX; a++)
        for (raft_id b = 1; b <= WSIM_NODES_MAX; b++) {
            struct stream *s = &net.streams[a][b];
            if (!s->active || (a != id && b != id)) continue;
            struct st_tr *rcv = net.tr[b], *snd = net.tr[a];
            if (s->begun && !s->ended && rcv && b != id && rcv->cbs.snapshot_end_cb &&
                !s->end_pending)
                rcv->cbs.snapshot_end_cb(rcv->cbs.ctx, a, ST_ECONNECTION);
            s->active = false;
            free(s->msg_bytes);
            s->msg_bytes = NULL;
            if (snd && a != id && snd->cbs.snapshot_sent_cb)
                snd->cbs.snapshot_sent_cb(snd->cbs.ctx, b, ST_ECONNECTION);
        }
}

/* Delivers an encoded message; the caller keeps its reference to frame (a
 * decoded message's entries take their own). */
static void deliver(raft_id from, raft_id to, struct raft_buf *frame, size_t len)
{
    struct st_tr *rcv = net.tr[to];
    if (!rcv) return;
    if (!rcv->peer[from]) rcv->learned[from] = true;
    if (!net.wm_init) {
        wire_msg_init(&net.wm);
        net.wm_init = true;
    }
    int rc = wire_msg_decode(&net.wm, frame, frame->data, len);
    ST_ASSERT(rc == 0);
    rcv->stats.msgs_received++;
    rcv->stats.bytes_received += len;
    if (net.wm.msg.from == from && net.wm.msg.to == to && rcv->cbs.msg_cb) {
        raft_id prev = wsim_current_set(to);
        rcv->cbs.msg_cb(rcv->cbs.ctx, from, &net.wm.msg);
        wsim_current_set(prev);
    }
    wire_msg_release(&net.wm);
}

static void stream_fail(struct stream *s, int status)
{
    struct st_tr *rcv = net.tr[s->to], *snd = net.tr[s->from];
    if (s->begun && !s->ended && rcv && rcv->cbs.snapshot_end_cb)
        rcv->cbs.snapshot_end_cb(rcv->cbs.ctx, s->from, status);
    s->active = false;
    free(s->msg_bytes);
    s->msg_bytes = NULL;
    if (snd && snd->cbs.snapshot_sent_cb) snd->cbs.snapshot_sent_cb(snd->cbs.ctx, s->to, status);
}

static void stream_step_as_receiver(struct stream *s);

/* One step of a stream: begin, one chunk, or the end, run as the receiver
 * (the sender's callbacks too: they read no clock). */
static void stream_step(struct stream *s)
{
    raft_id prev = wsim_current_set(s->to);
    stream_step_as_receiver(s);
    wsim_current_set(prev);
}

static void stream_step_as_receiver(struct stream *s)
{
    struct st_tr *rcv = net.tr[s->to], *snd = net.tr[s->from];
    if (!snd) return; /* dropped by streams_drop_of */
    if (!rcv || !wsim_link_up(s->from, s->to) || s->epoch != *conn_epoch(s->from, s->to)) {
        stream_fail(s, ST_ECONNECTION);
        return;
    }
    if (s->paused) return;
    if (s->ended) { /* the end was pending and resumed with 0: deliver */
        struct raft_buf *frame = raft_buf_create(s->msg_len);
        ST_ASSERT(frame != NULL);
        memcpy(frame->data, s->msg_bytes, s->msg_len);
        deliver(s->from, s->to, frame, s->msg_len);
        raft_buf_unref(frame);
        s->active = false;
        free(s->msg_bytes);
        s->msg_bytes = NULL;
        snd->stats.snapshots_sent++;
        if (snd->cbs.snapshot_sent_cb) snd->cbs.snapshot_sent_cb(snd->cbs.ctx, s->to, 0);
        return;
    }
    if (!s->begun) {
        if (!net.wm_init) {
            wire_msg_init(&net.wm);
            net.wm_init = true;
        }
        ST_ASSERT(wire_msg_decode(&net.wm, NULL, s->msg_bytes, s->msg_len) == 0);
        int rc = rcv->cbs.snapshot_begin_cb
                     ? rcv->cbs.snapshot_begin_cb(rcv->cbs.ctx, s->from, &net.wm.msg, s->size)
                     : ST_ECANCELED;
        wire_msg_release(&net.wm);
        if (rc < 0) {
            s->active = false;
            free(s->msg_bytes);
            s->msg_bytes = NULL;
            if (snd->cbs.snapshot_sent_cb) snd->cbs.snapshot_sent_cb(snd->cbs.ctx, s->to, rc);
            return;
        }
        s->begun = true;
        return;
    }
    if (s->off < s->size) {
        static uint8_t chunk[NET_CHUNK_BYTES];
        size_t want =
            s->size - s->off < NET_CHUNK_BYTES ? (size_t)(s->size - s->off) : NET_CHUNK_BYTES;
        size_t got = 0;
        int rc = wsim_read_file(s->from, s->path, s->off, chunk, want, &got);
        if (rc || got != want) {
            stream_fail(s, rc ? rc : ST_EIO);
            return;
        }
        uint64_t off = s->off;
        s->off += got;
        rc = rcv->cbs.snapshot_chunk_cb(rcv->cbs.ctx, s->from, off, chunk, got);
        if (rc == ST_TR_CB_PENDING) {
            s->paused = true;
        } else if (rc < 0) {
            s->ended = true; /* the receiver refused: no end callback for it */
            stream_fail(s, rc);
        }
        return;
    }
    s->ended = true;
    int rc = rcv->cbs.snapshot_end_cb(rcv->cbs.ctx, s->from, 0);
    if (rc == ST_TR_CB_PENDING) {
        s->paused = true;
        s->end_pending = true;
        return;
    }
    if (rc < 0) {
        stream_fail(s, rc);
        return;
    }
    s->paused = false;
    stream_step_as_receiver(s); /* deliver now */
}

void sim_net_step(void)
{
    uint64_t now = wsim_now_ms();
    /* Delivery may send more: take the due ones out first, in order. */
    size_t k = 0;
    while (net.n && net.q[0].at_ms <= now) {
        if (k == net.due_cap) {
            net.due_cap = net.due_cap ? 2 * net.due_cap : 64;
            net.due = realloc(net.due, net.due_cap * sizeof *net.due);
            ST_ASSERT(net.due != NULL);
        }
        heap_pop(&net.due[k++]);
    }
    for (size_t i = 0; i < k; i++) {
        const struct packet *p = &net.due[i];
        if (wsim_link_up(p->from, p->to) && p->epoch == *conn_epoch(p->from, p->to))
            deliver(p->from, p->to, p->frame, p->len);
        raft_buf_unref(p->frame);
    }
    for (raft_id a = 1; a <= WSIM_NODES_MAX; a++)
        for (raft_id b = 1; b <= WSIM_NODES_MAX; b++)
            if (net.streams[a][b].active) stream_step(&net.streams[a][b]);
    /* Connection state as the nodes see it: up while the link is. */
    for (raft_id a = 1; a <= WSIM_NODES_MAX; a++) {
        struct st_tr *tr = net.tr[a];
        if (!tr) continue;
        for (raft_id b = 1; b <= WSIM_NODES_MAX; b++) {
            bool up = tr->peer[b] && net.tr[b] && wsim_link_up(a, b) && wsim_link_up(b, a);
            if (up == tr->connected[b]) continue;
            tr->connected[b] = up;
            if (up) tr->stats.connects++;
            raft_id prev = wsim_current_set(a);
            if (tr->cbs.peer_state_cb) tr->cbs.peer_state_cb(tr->cbs.ctx, b, up);
            wsim_current_set(prev);
        }
    }
}

bool sim_net_busy(void)
{
    for (raft_id a = 1; a <= WSIM_NODES_MAX; a++)
        for (raft_id b = 1; b <= WSIM_NODES_MAX; b++)
            if (net.streams[a][b].active) return true;
    return net.n > 0;
}

void sim_net_close(void)
{
    for (size_t i = 0; i < net.n; i++)
        raft_buf_unref(net.q[i].frame);
    free(net.q);
    net.q = NULL;
    net.n = net.cap = 0;
    free(net.due);
    net.due = NULL;
    net.due_cap = 0;
    for (raft_id a = 1; a <= WSIM_NODES_MAX; a++)
        for (raft_id b = 1; b <= WSIM_NODES_MAX; b++) {
            free(net.streams[a][b].msg_bytes);
            net.streams[a][b] = (struct stream){0};
        }
    if (net.wm_init) wire_msg_close(&net.wm);
    net.wm_init = false;
}
