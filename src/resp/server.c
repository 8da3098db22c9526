/* The RESP front end's listener and connections. Contract in server.h.
 *
 * Invariant while parsing: the ring has a free slot for the next command
 * and one more for a protocol error's reply (commands are parsed while
 * count < RESP_PIPELINE_MAX - 1), so an error reply always finds a slot
 * and goes out after the replies before it.
 *
 * A connection is freed when its handle is closed and no node callback is
 * outstanding (inflight == 0): node callbacks carry slot pointers. */
#include "resp/resp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/outbudget.h"
#include "util/trace.h"
#include "util/url.h"

#define RESP_READ_CHUNK_BYTES (16u * 1024u)

void resp_server_config_default(struct resp_server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = "127.0.0.1:6379";
    cfg->connections_max = 10000;
    cfg->conn_out_bytes_max = 1u << 20;
    cfg->query_bytes_max = 0; /* from the node's limits */
    cfg->args_max = RESP_ARGS_MAX_DEFAULT;
}

uint64_t resp_now_ms(const struct resp_server *srv)
{
    return uv_now(srv->loop);
}

static void conn_flush(struct resp_conn *c);
static void budget_charge(struct resp_conn *c, size_t n);
static void conn_close(struct resp_conn *c);
static uint32_t input_process(struct resp_conn *c);
static void maybe_closed(struct resp_server *srv);
static void idle_cb(uv_idle_t *h);

/* ------------------------------------------------------------- slots */

static void slot_reset(struct resp_slot *s)
{
    if (s->out.cap > RESP_BUF_KEEP_BYTES) st_membuf_free(&s->out);
    if (s->keys.cap > RESP_BUF_KEEP_BYTES) st_membuf_free(&s->keys);
    st_membuf_reset(&s->out);
    st_membuf_reset(&s->keys);
    s->busy = false;
    s->done = false;
    s->pending = 0;
    s->cmd = 0;
    s->count = 0;
    s->status = 0;
    s->nkeys = 0;
    s->a1 = s->a2 = 0;
    s->proto = 0;
}

static void conn_free(struct resp_conn *c)
{
    struct resp_server *srv = c->srv;
    for (uint32_t i = 0; i < RESP_PIPELINE_MAX; i++) {
        st_membuf_free(&c->slots[i].out);
        st_membuf_free(&c->slots[i].keys);
    }
    st_membuf_free(&c->wpend);
    st_membuf_free(&c->wfly);
    st_membuf_free(&c->subs);
    resp_tls_free(c);
    resp_multi_free(c);
    free(c->rbuf);
    free(c);
    srv->n_allocated--;
    maybe_closed(srv);
}

void resp_slot_hold(struct resp_slot *s)
{
    s->pending++;
    s->conn->inflight++;
}

bool resp_slot_unhold(struct resp_slot *s)
{
    struct resp_conn *c = s->conn;
    ST_ASSERT(s->pending > 0 && c->inflight > 0);
    s->pending--;
    c->inflight--;
    if (!c->closing) return false;
    if (c->inflight == 0 && c->tcp.data == NULL) conn_free(c);
    return true;
}

static void mark_dirty(struct resp_conn *c)
{
    struct resp_server *srv = c->srv;
    if (st_list_linked(&c->dirty_link)) return;
    if (st_list_empty(&srv->dirty) && !srv->closing) uv_idle_start(&srv->idle, idle_cb);
    st_list_push_back(&srv->dirty, &c->dirty_link);
}

void resp_slot_done(struct resp_slot *s)
{
    struct resp_conn *c = s->conn;
    ST_ASSERT(s->busy && !s->done);
    s->done = true;
    if (s->op_class != RESP_OP_NONE) {
        s->op_class = RESP_OP_NONE;
        ST_ASSERT(c->ops_inflight > 0);
        c->ops_inflight--;
        if (c->ops_inflight == 0 && c->blocked && !c->closing && !c->in_input) mark_dirty(c);
    }
    if (c->closing) return;
    /* A completion inside the read callback is flushed there; later ones
     * (node callbacks) are flushed in the idle phase, so that one apply
     * batch's replies share a write. */
    if (!c->in_input && &c->slots[c->head] == s) mark_dirty(c);
}

void resp_conn_close(struct resp_conn *c)
{
    conn_close(c);
}

bool resp_conn_push(struct resp_conn *c, const struct st_membuf *msg)
{
    struct resp_server *srv = c->srv;
    if (c->closing) return false;
    /* After the last complete reply: the ring's tail when it is done (so a
     * SUBSCRIBE's confirmation precedes the messages), else the pending
     * output (RESP3: a push may come between replies). */
    struct resp_slot *tail =
        c->count > 0 ? &c->slots[(c->head + c->count - 1) % RESP_PIPELINE_MAX] : NULL;
    uint64_t queued = c->out_bytes + (tail && tail->done ? tail->out.len : 0) + msg->len;
    uint64_t now = resp_now_ms(srv);
    bool drop = queued > srv->pubsub_hard_bytes;
    if (queued > srv->pubsub_soft_bytes) {
        if (c->psoft_ms == 0)
            c->psoft_ms = now ? now : 1;
        else if (now - c->psoft_ms >= srv->pubsub_soft_s * 1000u)
            drop = true;
    } else {
        c->psoft_ms = 0;
    }
    if (drop) {
        ST_TRACE_WARN("resp", "subscriber %s dropped: pubsub output buffer limit (%llu bytes)",
                      c->addr, (unsigned long long)queued);
        srv->slow_dropped++;
        conn_close(c);
        return false;
    }
    if (tail && tail->done) {
        st_membuf_append(&tail->out, msg->data, msg->len);
    } else {
        st_membuf_append(&c->wpend, msg->data, msg->len);
        if (c->wpend.oom) {
            conn_close(c);
            return false;
        }
        budget_charge(c, msg->len);
    }
    if (!c->in_input) mark_dirty(c);
    return true;
}

void resp_conn_close_after(struct resp_conn *c)
{
    c->no_more = true;
}

/* ------------------------------------------------------------ output */

static void budget_charge(struct resp_conn *c, size_t n)
{
    c->out_bytes += n;
    struct st_outbudget *b = c->srv->cfg.out_budget;
    if (!b) return;
    if (c->out_bytes == n) c->out_stamp = st_outbudget_stamp(b);
    st_outbudget_charge(b, n);
}

static void budget_release(struct resp_conn *c, size_t n)
{
    ST_ASSERT(c->out_bytes >= n);
    c->out_bytes -= n;
    struct st_outbudget *b = c->srv->cfg.out_budget;
    if (!b) return;
    st_outbudget_release(b, n);
    if (n > 0) c->out_stamp = c->out_bytes ? st_outbudget_stamp(b) : 0;
}

/* The batch in wfly left (or failed): its buffers are reset and its bytes
 * released. false when the connection is closing or closed. */
static bool write_finished(struct resp_conn *c, int status)
{
    size_t n = c->wfly.len;
    if (c->wfly.cap > RESP_BUF_KEEP_BYTES) st_membuf_free(&c->wfly);
    st_membuf_reset(&c->wfly);
    if (c->tls_out.cap > RESP_BUF_KEEP_BYTES) st_membuf_free(&c->tls_out);
    st_membuf_reset(&c->tls_out);
    if (c->closing) return false; /* its bytes were released by conn_close */
    budget_release(c, n);
    if (status < 0) {
        conn_close(c);
        return false;
    }
    return true;
}

static void write_cb(uv_write_t *req, int status)
{
    struct resp_conn *c = req->data;
    c->writing = false;
    if (write_finished(c, status)) conn_flush(c);
}

static void start_reading(struct resp_conn *c);

/* Moves finished replies from the ring's head to wpend, starts a write if
 * none is in flight, resumes reading (and parsing of buffered commands)
 * when the ring and the output have room again. */
static void conn_flush(struct resp_conn *c)
{
    struct resp_server *srv = c->srv;
again:
    if (c->closing) return;
    while (c->count > 0) {
        struct resp_slot *s = &c->slots[c->head];
        if (!s->done) break;
        if (s->out.oom) {
            conn_close(c);
            return;
        }
        size_t n = s->out.len;
        st_membuf_append(&c->wpend, s->out.data, n);
        if (c->wpend.oom) {
            conn_close(c);
            return;
        }
        budget_charge(c, n);
        slot_reset(s);
        c->head = (c->head + 1) % RESP_PIPELINE_MAX;
        c->count--;
    }
    if (!c->writing && c->wpend.len > 0) {
        struct st_membuf t = c->wfly;
        c->wfly = c->wpend;
        c->wpend = t;
        uv_buf_t b = uv_buf_init(c->wfly.data, (unsigned)c->wfly.len);
        if (c->tls) { /* the ciphertext of wfly; wfly keeps the plaintext count */
            if (resp_tls_encrypt(c) != 0) {
                conn_close(c);
                return;
            }
            b = uv_buf_init(c->tls_out.data, (unsigned)c->tls_out.len);
        }
        /* Straight to the socket first: a uv_write that completes at once
         * still costs a pass through the loop's pending queue and, when
         * its queue drains, an epoll_ctl (libuv 1.44) per batch. */
        int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (w < 0) w = 0; /* EAGAIN, or an error that uv_write reports its way */
        if ((size_t)w == b.len) {
            if (!write_finished(c, 0)) return;
            goto again;
        }
        b.base += w;
        b.len -= (size_t)w;
        c->writing = true;
        c->wreq.data = c;
        int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb);
        if (rc < 0) {
            c->writing = false;
            conn_close(c);
            return;
        }
    }
    if (srv->cfg.out_budget && st_outbudget_over(srv->cfg.out_budget)) {
        st_outbudget_enforce(srv->cfg.out_budget);
        if (c->closing) return;
    }
    if (c->no_more) {
        if (c->count == 0 && !c->writing) conn_close(c);
        return;
    }
    if (c->out_bytes < srv->cfg.conn_out_bytes_max && c->count < RESP_PIPELINE_MAX - 1) {
        /* Commands buffered while the connection was paused. */
        if (c->rlen > 0 && !c->in_input && input_process(c) > 0) goto again;
        if (c->tls && !c->closing && !c->no_more && !c->blocked)
            resp_tls_pump(c); /* plaintext OpenSSL holds first */
        if (!c->closing && !c->no_more && !c->blocked) start_reading(c);
    }
}

static void idle_cb(uv_idle_t *h)
{
    struct resp_server *srv = h->data;
    while (!st_list_empty(&srv->dirty)) {
        struct st_list *e = srv->dirty.next;
        st_list_del(e);
        struct resp_conn *c = ST_CONTAINER_OF(e, struct resp_conn, dirty_link);
        conn_flush(c);
    }
    uv_idle_stop(&srv->idle);
}

/* ------------------------------------------------------------- input */

int resp_conn_rbuf_room(struct resp_conn *c)
{
    /* Keep unparsed bytes at the front. */
    if (c->rstart > 0) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rlen);
        c->rstart = 0;
    }
    if (c->rcap - c->rlen < RESP_READ_CHUNK_BYTES) {
        size_t want = c->rcap ? c->rcap * 2 : RESP_READ_CHUNK_BYTES;
        while (want - c->rlen < RESP_READ_CHUNK_BYTES)
            want *= 2;
        uint8_t *nb = realloc(c->rbuf, want);
        if (!nb) return ST_ENOMEM;
        c->rbuf = nb;
        c->rcap = want;
    }
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct resp_conn *c = h->data;
    (void)suggested;
    if (c->tls) {
        buf->base = (char *)c->tls_in;
        buf->len = RESP_TLS_IN_BYTES;
        return;
    }
    if (resp_conn_rbuf_room(c) != 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = (char *)c->rbuf + c->rlen;
    buf->len = c->rcap - c->rlen;
}

/* Answers a protocol error after the replies before it, then closes. */
static void protocol_error(struct resp_conn *c, const char *text)
{
    struct resp_server *srv = c->srv;
    srv->protocol_errors++;
    ST_ASSERT(c->count < RESP_PIPELINE_MAX);
    struct resp_slot *s = &c->slots[(c->head + c->count) % RESP_PIPELINE_MAX];
    c->count++;
    s->busy = true;
    struct resp_out o = resp_slot_out(s);
    char msg[RESP_ERR_BYTES_MAX + 8];
    snprintf(msg, sizeof msg, "ERR %s", text);
    resp_reply_error(&o, msg);
    s->done = true;
    c->no_more = true;
    c->rlen = 0;
}

/* Parses and dispatches every whole command in the read buffer while the
 * ring has room. */
static uint32_t input_process(struct resp_conn *c)
{
    struct resp_server *srv = c->srv;
    uint32_t dispatched = 0;
    c->in_input = true;
    while (!c->closing && !c->no_more && c->rlen > 0 && c->count < RESP_PIPELINE_MAX - 1) {
        uint32_t argc = 0;
        size_t used = 0;
        char err[RESP_ERR_BYTES_MAX];
        enum resp_parse_status st =
            resp_parse(c->rbuf + c->rstart, c->rlen, &srv->lim, srv->argv, &argc, &used, err);
        if (st == RESP_PARSE_ERROR) {
            protocol_error(c, err);
            break;
        }
        if (st == RESP_PARSE_MORE) {
            c->rstart += used;
            c->rlen -= used;
            if (used > 0) continue;
            if (c->rlen > srv->cfg.query_bytes_max)
                protocol_error(c, "Protocol error: query buffer limit reached");
            break;
        }
        const struct resp_cmd *k = NULL;
        uint8_t cls = resp_cmd_class(c, srv->argv, argc, &k);
        if (cls != RESP_OP_NONE && c->ops_inflight > 0 && c->ops_class != cls) {
            c->blocked = true; /* parsed again once the other class is done */
            break;
        }
        c->blocked = false;
        struct resp_slot *s = &c->slots[(c->head + c->count) % RESP_PIPELINE_MAX];
        c->count++;
        s->conn = c;
        s->busy = true;
        s->proto = (uint8_t)c->proto;
        if (cls != RESP_OP_NONE) {
            s->op_class = cls;
            c->ops_class = cls;
            c->ops_inflight++;
        }
        srv->commands_total++;
        c->last_cmd_ms = resp_now_ms(srv);
        resp_cmd_dispatch(c, s, k, srv->argv, argc);
        dispatched++;
        c->rstart += used;
        c->rlen -= used;
    }
    if (c->rlen == 0) {
        c->rstart = 0;
        /* A buffer grown for a large command is not kept by an idle
         * connection. */
        if (c->rcap > RESP_BUF_KEEP_BYTES) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
    }
    c->in_input = false;
    return dispatched;
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct resp_conn *c = stream->data;
    (void)buf;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0) return;
    if (c->no_more) return; /* discarding input after QUIT or an error */
    if (c->tls) {
        resp_tls_on_read(c, (size_t)nread);
        return;
    }
    resp_conn_input(c, (size_t)nread);
}

bool resp_conn_takes_input(const struct resp_conn *c)
{
    return !c->closing && !c->no_more && !c->blocked && c->count < RESP_PIPELINE_MAX - 1 &&
           c->out_bytes < c->srv->cfg.conn_out_bytes_max;
}

void resp_conn_input(struct resp_conn *c, size_t nread)
{
    uv_stream_t *stream = (uv_stream_t *)&c->tcp;
    c->rlen += nread;
    input_process(c);
    if (c->closing) return;
    struct resp_server *srv = c->srv;
    if (c->count >= RESP_PIPELINE_MAX - 1 || c->out_bytes >= srv->cfg.conn_out_bytes_max ||
        c->no_more || c->blocked) {
        uv_read_stop(stream);
        c->reading = false;
    }
    conn_flush(c);
}

static void start_reading(struct resp_conn *c)
{
    if (c->reading || c->closing) return;
    if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0) c->reading = true;
}

/* ------------------------------------------------------- connections */

static void conn_closed_cb(uv_handle_t *h)
{
    struct resp_conn *c = ST_CONTAINER_OF((uv_tcp_t *)(void *)h, struct resp_conn, tcp);
    h->data = NULL;
    if (c->inflight == 0) conn_free(c);
}

static void conn_close(struct resp_conn *c)
{
    if (c->closing) return;
    struct resp_server *srv = c->srv;
    c->closing = true;
    if (st_list_linked(&c->dirty_link)) st_list_del(&c->dirty_link);
    st_list_del(&c->link);
    resp_pubsub_conn_close(c);
    srv->n_conns--;
    /* Queued bytes leave the budget now; the write in flight (if any)
     * completes with an error or success, and is not released again. */
    budget_release(c, c->out_bytes);
    uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
}

static uint64_t budget_slowest_cb(void *ctx)
{
    struct resp_server *srv = ctx;
    uint64_t best = 0;
    struct st_list *e;
    ST_LIST_FOREACH(e, &srv->conns)
    {
        struct resp_conn *c = ST_CONTAINER_OF(e, struct resp_conn, link);
        if (c->out_bytes > 0 && (best == 0 || c->out_stamp < best)) best = c->out_stamp;
    }
    return best;
}

static void budget_drop_slowest_cb(void *ctx)
{
    struct resp_server *srv = ctx;
    struct resp_conn *slow = NULL;
    struct st_list *e;
    ST_LIST_FOREACH(e, &srv->conns)
    {
        struct resp_conn *c = ST_CONTAINER_OF(e, struct resp_conn, link);
        if (c->out_bytes > 0 && (!slow || c->out_stamp < slow->out_stamp)) slow = c;
    }
    if (!slow) return;
    ST_TRACE_WARN("resp", "client %s dropped: output buffer limit (%llu bytes unread)", slow->addr,
                  (unsigned long long)slow->out_bytes);
    srv->slow_dropped++;
    conn_close(slow);
}

static void peer_name(uv_tcp_t *t, int local, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    int rc = local ? uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len)
                   : uv_tcp_getpeername(t, (struct sockaddr *)&ss, &len);
    out[0] = '\0';
    if (rc) return;
    char ip[48] = "";
    int port;
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        uv_ip6_name(a, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        uv_ip4_name(a, ip, sizeof ip);
        port = ntohs(a->sin_port);
    }
    snprintf(out, cap, "%s:%d", ip, port);
}

static void rejected_closed_cb(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct resp_server *srv = listener->data;
    if (status < 0 || srv->closing) return;
    struct resp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        uv_tcp_t *t = malloc(sizeof *t);
        if (!t) return;
        uv_tcp_init(srv->loop, t);
        (void)uv_accept(listener, (uv_stream_t *)t);
        uv_close((uv_handle_t *)t, rejected_closed_cb);
        return;
    }
    uv_tcp_init(srv->loop, &c->tcp);
    c->tcp.data = c;
    c->srv = srv;
    srv->n_allocated++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
        return;
    }
    st_list_init(&c->dirty_link);
    st_list_init(&c->sub_link);
    st_membuf_init(&c->subs);
    st_list_push_back(&srv->conns, &c->link);
    srv->n_conns++;
    srv->connections_total++;
    c->id = ++srv->next_id;
    c->proto = 2;
    resp_auth_conn_init(c);
    c->created_ms = resp_now_ms(srv);
    c->last_cmd_ms = c->created_ms;
    c->last_cmd = "NULL";
    for (uint32_t i = 0; i < RESP_PIPELINE_MAX; i++) {
        c->slots[i].conn = c;
        st_membuf_init(&c->slots[i].out);
        st_membuf_init(&c->slots[i].keys);
    }
    st_membuf_init(&c->wpend);
    st_membuf_init(&c->wfly);
    st_membuf_init(&c->multi_q);
    st_membuf_init(&c->watch);
    uv_tcp_nodelay(&c->tcp, 1);
    peer_name(&c->tcp, 0, c->addr, sizeof c->addr);
    peer_name(&c->tcp, 1, c->laddr, sizeof c->laddr);
    if (srv->n_conns > srv->cfg.connections_max) {
        srv->connections_rejected++;
        struct resp_slot *s = &c->slots[0];
        c->count = 1;
        s->busy = true;
        struct resp_out o = resp_slot_out(s);
        resp_reply_error(&o, "ERR max number of clients reached");
        s->done = true;
        c->no_more = true;
        conn_flush(c);
        return;
    }
    if (srv->cfg.tls && resp_tls_start(c) != 0) {
        conn_close(c);
        return;
    }
    start_reading(c);
}

/* ------------------------------------------------------------ server */

static void maybe_closed(struct resp_server *srv)
{
    if (!srv->closing || srv->handles_open > 0 || srv->n_allocated > 0) return;
    if (srv->closed_cb) {
        resp_server_closed_cb cb = srv->closed_cb;
        srv->closed_cb = NULL;
        cb(srv, srv->closed_ctx);
    }
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct resp_server *srv = h->data;
    srv->handles_open--;
    maybe_closed(srv);
}

static void failed_listener_closed_cb(uv_handle_t *h)
{
    struct resp_server *srv = h->data;
    resp_pubsub_fini(srv);
    st_membuf_free(&srv->pbuf);
    free(srv->argv);
    st_membuf_free(&srv->hv);
    free(srv);
}

int resp_server_create(uv_loop_t *loop, struct node *n, const struct resp_server_config *cfg,
                       struct resp_server **out)
{
    *out = NULL;
    char host[64];
    uint16_t port;
    if (!cfg->listen || st_url_hostport_split(cfg->listen, host, sizeof host, &port) != 0)
        return ST_EINVAL;
    struct resp_server *srv = calloc(1, sizeof *srv);
    if (!srv) return ST_ENOMEM;
    srv->loop = loop;
    srv->node = n;
    srv->cfg = *cfg;
    snprintf(srv->listen, sizeof srv->listen, "%s", cfg->listen);
    srv->cfg.listen = srv->listen;
    const struct node_config *nc = node_config_get(n);
    int rc;
    if (srv->cfg.args_max == 0) srv->cfg.args_max = RESP_ARGS_MAX_DEFAULT;
    if (srv->cfg.connections_max == 0) srv->cfg.connections_max = 10000;
    if (srv->cfg.conn_out_bytes_max == 0) srv->cfg.conn_out_bytes_max = nc->conn_output_bytes_max;
    uint64_t bulk_max =
        nc->max_value_bytes > nc->max_key_bytes ? nc->max_value_bytes : nc->max_key_bytes;
    if (srv->cfg.query_bytes_max == 0) srv->cfg.query_bytes_max = 4 * bulk_max + (1u << 20);
    srv->lim.args_max = srv->cfg.args_max;
    srv->lim.bulk_bytes_max = bulk_max;
    srv->lim.inline_bytes_max = RESP_INLINE_BYTES_MAX;
    srv->argv = calloc(srv->lim.args_max, sizeof *srv->argv);
    if (!srv->argv) {
        free(srv);
        return ST_ENOMEM;
    }
    st_list_init(&srv->conns);
    st_list_init(&srv->dirty);
    srv->start_ms = uv_now(loop);
    srv->cfg.notify_keyspace_events = NULL; /* not kept: resp_pubsub_init copies the flags */
    rc = resp_pubsub_init(srv, cfg->notify_keyspace_events);
    if (rc != 0) {
        free(srv->argv);
        free(srv);
        return rc;
    }
    struct sockaddr_storage addr;
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        resp_pubsub_fini(srv);
        free(srv->argv);
        free(srv);
        return ST_EINVAL;
    }
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
    if (rc != 0) {
        ST_TRACE_ERROR("resp", "listen on %s: %s", srv->listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&srv->listener, failed_listener_closed_cb);
        return st_errno_to_code(-rc);
    }
    srv->handles_open = 2;
    uv_idle_init(loop, &srv->idle);
    srv->idle.data = srv;
    if (cfg->out_budget) {
        struct st_outbudget_user u = {budget_slowest_cb, budget_drop_slowest_cb, srv};
        rc = st_outbudget_register(cfg->out_budget, &u);
        if (rc) srv->cfg.out_budget = NULL;
    }
    *out = srv;
    return 0;
}

int resp_server_port(const struct resp_server *srv)
{
    struct sockaddr_storage bound;
    int len = sizeof bound;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len) != 0) return -1;
    return bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

void resp_server_close(struct resp_server *srv, resp_server_closed_cb cb, void *ctx)
{
    if (srv->closing) return;
    srv->closing = true;
    srv->closed_cb = cb;
    srv->closed_ctx = ctx;
    resp_pubsub_fini(srv);
    while (!st_list_empty(&srv->conns)) {
        struct resp_conn *c = ST_CONTAINER_OF(srv->conns.next, struct resp_conn, link);
        conn_close(c);
    }
    if (srv->cfg.out_budget) st_outbudget_unregister(srv->cfg.out_budget, srv);
    uv_idle_stop(&srv->idle);
    uv_close((uv_handle_t *)&srv->listener, handle_closed_cb);
    uv_close((uv_handle_t *)&srv->idle, handle_closed_cb);
}

void resp_server_destroy(struct resp_server *srv)
{
    if (!srv) return;
    st_membuf_free(&srv->pbuf);
    free(srv->argv);
    st_membuf_free(&srv->hv);
    free(srv);
}
