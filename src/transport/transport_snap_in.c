/* Inbound snapshot streams: BEGIN, CHUNKs and END frames of one stream at a
 * time per peer, checked (size, CRC) and delivered as one RAFT_MSG_SNAPSHOT
 * at the end; the ACK back to the sender. */
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

/* --------------------------------------------------- inbound snapshots */

void st_tr_snap_in_end(struct st_tr_peer *p, int status, bool notify, bool send_ack)
{
    struct st_tr *tr = p->tr;
    struct st_tr_snap_in *si = p->snap_in;
    ST_ASSERT(si != NULL);
    p->snap_in = NULL;
    if (si->ending) /* the receiver had its snapshot_end_cb(0) already */
        notify = false;
    if (status != 0) tr->stats.snapshots_failed++;
    if (status != 0)
        ST_TRACE_WARN(MOD, "snapshot from peer %" PRIu64 " failed at %" PRIu64 "/%" PRIu64 ": %s",
                      p->id, si->received, si->size, st_strerror(status));
    if (notify && tr->cbs.snapshot_end_cb != NULL)
        tr->cbs.snapshot_end_cb(tr->cbs.ctx, p->id, status);
    if (send_ack && p->conn != NULL && p->conn->state == CONN_UP) {
        uint8_t body[FRAME_SNAP_STATUS_SIZE];
        frame_status_encode(si->stream, status, body);
        st_tr_conn_send_ctrl(p->conn, FRAME_SNAP_ACK, body, sizeof(body), false);
    }
    wire_msg_close(&si->wm);
    free(si);
}

static void snap_send_ack(struct st_tr_conn *c, uint32_t stream, int status)
{
    uint8_t body[FRAME_SNAP_STATUS_SIZE];
    frame_status_encode(stream, status, body);
    st_tr_conn_send_ctrl(c, FRAME_SNAP_ACK, body, sizeof(body), false);
}

void st_tr_handle_snap_begin(struct st_tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct st_tr *tr = c->tr;
    struct st_tr_peer *p = c->peer;
    if (len < FRAME_SNAP_BEGIN_FIXED_SIZE || le_get32(body) == 0) {
        st_tr_protocol_error(c, "bad SNAP_BEGIN", ST_EPROTO);
        return;
    }
    uint32_t stream = le_get32(body);
    if (p->snap_in != NULL) /* a new stream supersedes an unfinished one */
        st_tr_snap_in_end(p, ST_ECANCELED, true, false);
    struct st_tr_snap_in *si = calloc(1, sizeof(*si));
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
        st_tr_protocol_error(c, "malformed SNAP_BEGIN", rv);
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

void st_tr_handle_snap_chunk(struct st_tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct st_tr *tr = c->tr;
    struct st_tr_peer *p = c->peer;
    if (len < FRAME_SNAP_CHUNK_FIXED_SIZE) {
        st_tr_protocol_error(c, "short SNAP_CHUNK", ST_EPROTO);
        return;
    }
    struct st_tr_snap_in *si = p->snap_in;
    if (si == NULL || si->stream != le_get32(body)) /* a stream we refused or aborted */
        return;
    uint64_t off = le_get64(body + 4);
    size_t n = len - FRAME_SNAP_CHUNK_FIXED_SIZE;
    const uint8_t *data = body + FRAME_SNAP_CHUNK_FIXED_SIZE;
    if (off != si->received || n > si->size - si->received) {
        st_tr_snap_in_end(p, ST_EPROTO, true, true);
        return;
    }
    si->crc = st_crc32c(si->crc, data, n);
    int rv = tr->cbs.snapshot_chunk_cb != NULL
                 ? tr->cbs.snapshot_chunk_cb(tr->cbs.ctx, p->id, off, data, n)
                 : 0;
    if (p->snap_in != si) /* the callback removed the peer or destroyed us */
        return;
    if (rv != 0 && rv != ST_TR_CB_PENDING) {
        st_tr_snap_in_end(p, rv < 0 ? rv : ST_ECANCELED, true, true);
        return;
    }
    si->received += n;
    if (rv == ST_TR_CB_PENDING) st_tr_conn_pause(c);
}

void st_tr_handle_snap_end(struct st_tr_conn *c, const uint8_t *body, uint32_t len)
{
    struct st_tr *tr = c->tr;
    struct st_tr_peer *p = c->peer;
    if (len != FRAME_SNAP_END_SIZE) {
        st_tr_protocol_error(c, "bad SNAP_END", ST_EPROTO);
        return;
    }
    struct st_tr_snap_in *si = p->snap_in;
    if (si == NULL || si->stream != le_get32(body)) return;
    if (le_get64(body + 4) != si->size || si->received != si->size ||
        le_get32(body + 12) != si->crc) {
        st_tr_snap_in_end(p, ST_ECORRUPT, true, true);
        return;
    }
    p->snap_in = NULL;
    int rv =
        tr->cbs.snapshot_end_cb != NULL ? tr->cbs.snapshot_end_cb(tr->cbs.ctx, p->id, 0) : ST_EPERM;
    if (rv == ST_TR_CB_PENDING) {
        if (p->removed || tr->destroying || c->state != CONN_UP || p->snap_in != NULL) {
            /* the callback removed the peer, destroyed us, or the link is gone */
            wire_msg_close(&si->wm);
            free(si);
            return;
        }
        si->ending = true;
        p->snap_in = si;
        st_tr_conn_pause(c);
        return;
    }
    st_tr_snap_in_complete(c, p, si, rv);
}

void st_tr_snap_in_complete(struct st_tr_conn *c, struct st_tr_peer *p, struct st_tr_snap_in *si,
                            int rv)
{
    struct st_tr *tr = p->tr;
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
    if (c != NULL && c->state == CONN_UP)
        snap_send_ack(c, si->stream, rv < 0 ? rv : (rv > 0 ? ST_EIO : 0));
    wire_msg_close(&si->wm);
    free(si);
}

void st_tr_handle_snap_abort(struct st_tr_conn *c, const uint8_t *body, uint32_t len)
{
    int32_t status;
    uint32_t stream;
    if (frame_status_decode(body, len, &stream, &status) != 0) {
        st_tr_protocol_error(c, "bad SNAP_ABORT", ST_EPROTO);
        return;
    }
    if (c->peer->snap_in != NULL && c->peer->snap_in->stream == stream)
        st_tr_snap_in_end(c->peer, status != 0 ? status : ST_ECANCELED, true, false);
}

void st_tr_snapshot_resume(struct st_tr *tr, raft_id from, int status)
{
    if (tr->destroying) return;
    struct st_tr_peer *p = peer_find(tr, from);
    if (p == NULL) return;
    struct st_tr_conn *c = p->conn;
    struct st_tr_snap_in *si = p->snap_in;
    if (si != NULL && si->ending) {
        p->snap_in = NULL;
        st_tr_snap_in_complete(c, p, si, status > 0 ? ST_EIO : status);
    } else if (si != NULL && status != 0) {
        st_tr_snap_in_end(p, status > 0 ? ST_EIO : status, true, true);
    }
    /* A callback above may have removed p or destroyed tr. */
    if (!tr->destroying && !p->removed && p->conn != NULL) st_tr_conn_resume(p->conn);
}
