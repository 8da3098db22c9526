/* Outbound snapshot streams (st_tr_send_snapshot): the snapshot file read in
 * chunks off the loop (uv_fs) and written as CHUNK frames on the peer's
 * connection, one chunk in flight, until END and the receiver's ACK. */
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

/* ------------------------------------------------- outbound snapshots */

void st_tr_handle_snap_ack(struct st_tr_conn *c, const uint8_t *body, uint32_t len)
{
    int32_t status;
    uint32_t stream;
    if (frame_status_decode(body, len, &stream, &status) != 0) {
        st_tr_protocol_error(c, "bad SNAP_ACK", ST_EPROTO);
        return;
    }
    struct st_tr_snap_out *s = c->peer->snap_out;
    if (s == NULL || s->stream != stream) /* stale: a stream we abandoned */
        return;
    if (status == 0 && s->offset < s->size) {
        st_tr_protocol_error(c, "SNAP_ACK(0) before the stream ended", ST_EPROTO);
        return;
    }
    st_tr_snap_out_finish(s, status, true, false);
}
static void snap_out_maybe_free(struct st_tr_snap_out *s)
{
    if (!s->finished || s->fs_pending || s->write_pending) return;
    struct st_tr *tr = s->tr;
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
    st_tr_maybe_free(tr);
}

void st_tr_snap_out_finish(struct st_tr_snap_out *s, int status, bool notify, bool send_abort)
{
    if (s->finished) return;
    struct st_tr *tr = s->tr;
    s->finished = true;
    struct st_tr_peer *p = s->peer;
    s->peer = NULL;
    if (p != NULL) {
        ST_ASSERT(p->snap_out == s);
        p->snap_out = NULL;
        if (send_abort && p->conn != NULL && p->conn->state == CONN_UP) {
            uint8_t body[FRAME_SNAP_STATUS_SIZE];
            frame_status_encode(s->stream, status, body);
            st_tr_conn_send_ctrl(p->conn, FRAME_SNAP_ABORT, body, sizeof(body), false);
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

static struct st_tr_conn *snap_out_conn(struct st_tr_snap_out *s)
{
    if (s->peer == NULL || s->peer->conn == NULL || s->peer->conn->state != CONN_UP) return NULL;
    return s->peer->conn;
}

static void on_snap_read(uv_fs_t *req);

static void snap_out_next(struct st_tr_snap_out *s)
{
    struct st_tr *tr = s->tr;
    struct st_tr_conn *c = snap_out_conn(s);
    if (c == NULL) {
        st_tr_snap_out_finish(s, ST_ECONNECTION, true, false);
        return;
    }
    if (s->offset == s->size) {
        uint8_t body[FRAME_SNAP_END_SIZE];
        le_put32(body, s->stream);
        le_put64(body + 4, s->size);
        le_put32(body + 12, s->crc);
        st_tr_conn_send_ctrl(c, FRAME_SNAP_END, body, sizeof(body), false);
        return; /* wait for SNAP_ACK */
    }
    size_t n = (size_t)ST_MIN((uint64_t)tr->cfg.snapshot_chunk_bytes, s->size - s->offset);
    uv_buf_t b = uv_buf_init((char *)s->chunk + FRAME_HEADER_SIZE + FRAME_SNAP_CHUNK_FIXED_SIZE,
                             (unsigned)n);
    s->fs.data = s;
    int rv = uv_fs_read(tr->loop, &s->fs, s->fd, &b, 1, (int64_t)s->offset, on_snap_read);
    if (rv != 0) {
        st_tr_snap_out_finish(s, uv_to_st(rv), true, true);
        return;
    }
    s->fs_pending = true;
}

static void on_snap_read(uv_fs_t *req)
{
    struct st_tr_snap_out *s = req->data;
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
        st_tr_snap_out_finish(s, ST_EIO, true, true);
        return;
    }
    struct st_tr_conn *c = snap_out_conn(s);
    if (c == NULL) {
        st_tr_snap_out_finish(s, ST_ECONNECTION, true, false);
        return;
    }
    size_t n = (size_t)r;
    uint8_t *body = s->chunk + FRAME_HEADER_SIZE;
    le_put32(body, s->stream);
    le_put64(body + 4, s->offset);
    s->crc = st_crc32c(s->crc, body + FRAME_SNAP_CHUNK_FIXED_SIZE, n);
    uint32_t body_len = (uint32_t)(FRAME_SNAP_CHUNK_FIXED_SIZE + n);
    frame_header_encode(s->chunk, FRAME_SNAP_CHUNK, body, body_len);
    struct st_tr_out *o = st_tr_out_alloc(s->tr, OUT_SNAP_CHUNK, 1, 0, 0);
    if (o == NULL) {
        st_tr_snap_out_finish(s, ST_ENOMEM, true, true);
        return;
    }
    o->snap = s;
    o->to = s->to;
    o->bytes = FRAME_HEADER_SIZE + body_len;
    o->bufs[0] = uv_buf_init((char *)s->chunk, (unsigned)o->bytes);
    s->chunk_len = n;
    if (st_tr_conn_write(c, o) != 0) {
        st_tr_out_free(o);
        st_tr_conn_close(c, ST_ECONNECTION, true); /* fails the stream too */
        return;
    }
    s->write_pending = true;
}

void st_tr_snap_out_chunk_written(struct st_tr_snap_out *s, int status)
{
    s->write_pending = false;
    if (s->finished) {
        snap_out_maybe_free(s);
        return;
    }
    if (status < 0) {
        st_tr_snap_out_finish(s, ST_ECONNECTION, true, false);
        return;
    }
    s->offset += s->chunk_len;
    s->tr->stats.snapshot_bytes_sent += s->chunk_len;
    snap_out_next(s);
}

static void on_snap_open(uv_fs_t *req)
{
    struct st_tr_snap_out *s = req->data;
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
        st_tr_snap_out_finish(s, uv_to_st((int)r), true, false);
        return;
    }
    struct st_tr_conn *c = snap_out_conn(s);
    if (c == NULL) {
        st_tr_snap_out_finish(s, ST_ECONNECTION, true, false);
        return;
    }
    st_tr_conn_send_ctrl(c, FRAME_SNAP_BEGIN, s->begin_body, (uint32_t)s->begin_len, false);
    snap_out_next(s);
}

int st_tr_send_snapshot(struct st_tr *tr, const struct raft_msg *m, const char *path, uint64_t size)
{
    if (tr->destroying) return ST_ECLOSED;
    if (m->type != RAFT_MSG_SNAPSHOT || m->snapshot == NULL || path == NULL) return ST_EINVAL;
    struct st_tr_peer *p = peer_find(tr, m->to);
    if (p == NULL) return ST_ENOENT;
    if (p->conn == NULL || p->conn->state != CONN_UP) return ST_ECONNECTION;
    if (p->snap_out != NULL) return ST_EBUSY;
    size_t mlen;
    int rv = wire_msg_header_size(m, &mlen);
    if (rv != 0) return rv;
    struct st_tr_snap_out *s = calloc(1, sizeof(*s));
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
