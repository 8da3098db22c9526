/* Generic HTTP/1.1 server on libuv + http-parser. Contracts in server.h.
 *
 * Per connection: one read buffer holding only not-yet-parsed bytes (parsed
 * bytes are copied into the request's slot as they arrive), a ring of
 * pipeline_max request slots, one uv_write in flight at a time carrying every
 * consecutive finished response from the head of the ring.
 *
 * Invariant while parsing: the ring has a free slot. When a complete request
 * fills the last slot the parser is paused and reading stops; both resume when
 * the head response has been written. So a parse error always finds a slot for
 * its error response, which therefore goes out after the earlier responses.
 *
 * A connection is freed when both of its handles are closed and no request is
 * with the handler (in_handler == 0). */
#include "http/server_int.h"

#include <ctype.h>
#include <http_parser.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/fdlimit.h"
#include "util/list.h"
#include "util/outbudget.h"
#include "util/trace.h"

/* ---------- small helpers ---------- */

int http_ascii_casecmp_n(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen) return 1;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return 1;
    return 0;
}

void http_server_config_default(struct http_server_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->port = 0;
    cfg->backlog = 511;
    cfg->head_bytes_max = 16u * 1024u;
    cfg->headers_max = 64;
    cfg->body_bytes_max = 2u * 1024u * 1024u;
    cfg->idle_timeout_ms = 60000;
    cfg->request_timeout_ms = 30000;
    cfg->connections_max = 1024;
    cfg->pipeline_max = 16;
    cfg->read_buf_bytes = 16u * 1024u;
    cfg->conn_out_bytes_max = 1u << 20;
}

/* ---------- the global output bound ---------- */

/* The connection stalled longest (smallest stamp). */
static struct http_conn *server_slowest(struct http_server *srv)
{
    struct http_conn *worst = NULL;
    struct st_list *e;
    ST_LIST_FOREACH(e, &srv->conns)
    {
        struct http_conn *c = ST_CONTAINER_OF(e, struct http_conn, link);
        if (c->closing || c->out_bytes == 0) continue;
        http_conn_out_check_progress(c);
        if (!worst || c->out_stamp < worst->out_stamp) worst = c;
    }
    return worst;
}

static uint64_t budget_slowest_cb(void *ctx)
{
    struct http_conn *c = server_slowest(ctx);
    return c ? c->out_stamp : 0;
}

static void budget_drop_slowest_cb(void *ctx)
{
    struct http_server *srv = ctx;
    struct http_conn *c = server_slowest(srv);
    if (!c) return;
    srv->stats.slow_dropped++;
    ST_TRACE_WARN("http",
                  "dropping the slowest reader: %" PRIu64 " response bytes queued, %" PRIu64
                  " queued for all clients (bound %" PRIu64 ")",
                  c->out_bytes, srv->budget->used_bytes, srv->budget->max_bytes);
    http_conn_close(c);
}

/* ---------- accepting ---------- */

#define REFUSE_IP_BODY "{\"error\":\"too many connections from this address\",\"code\":503}"
static const char refuse_ip_resp[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Content-Length: 61\r\nConnection: close\r\n\r\n" REFUSE_IP_BODY;
_Static_assert(sizeof(REFUSE_IP_BODY) - 1 == 61, "Content-Length of the per-address 503 body");
#define REFUSE_BODY "{\"error\":\"too many connections\",\"code\":503}"
static const char refuse_resp[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Content-Length: 43\r\nConnection: close\r\n\r\n" REFUSE_BODY;
_Static_assert(sizeof(REFUSE_BODY) - 1 == 43, "Content-Length of the 503 body");

struct http_reject {
    uv_tcp_t tcp;
};

static void on_reject_closed(uv_handle_t *h)
{
    free(h->data);
}

static void reject_connection(struct http_server *srv)
{
    struct http_reject *r = malloc(sizeof(*r));
    if (!r) return;
    uv_tcp_init(srv->loop, &r->tcp);
    r->tcp.data = r;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&r->tcp) == 0) {
        uv_buf_t b = uv_buf_init((char *)(uintptr_t)refuse_resp, sizeof(refuse_resp) - 1);
        (void)uv_try_write((uv_stream_t *)&r->tcp, &b, 1);
    }
    uv_close((uv_handle_t *)&r->tcp, on_reject_closed);
    srv->stats.connections_rejected++;
}

/* Answers an accepted connection that is not admitted with a 503 and closes
 * it. Not counted in conns_open: it never held a share of connections_max. */
static void conn_refuse(struct http_conn *c, const char *resp, size_t len)
{
    if (c->srv->cfg.tls) { /* a TLS client could not read it */
        http_conn_close(c);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)resp, (unsigned int)len);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    http_conn_close(c);
}

/* The client address as 16 bytes (IPv4 as ::ffff:a.b.c.d); all zero when
 * unknown (those then share one count). */
static void conn_peer(struct http_conn *c)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    memset(c->peer, 0, sizeof c->peer);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
        c->peer[10] = 0xff;
        c->peer[11] = 0xff;
        memcpy(c->peer + 12, &in->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        memcpy(c->peer, &((const struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    }
}

/* The connection idle longest that may be closed to admit a new one: no
 * request with the handler, no queued output (a request still being
 * received counts as idle since its last byte), or NULL. */
static struct http_conn *server_longest_idle(struct http_server *srv)
{
    struct http_conn *best = NULL;
    struct st_list *e;
    ST_LIST_FOREACH(e, &srv->conns)
    {
        struct http_conn *c = ST_CONTAINER_OF(e, struct http_conn, link);
        if (!c->admitted || c->closing || c->lingering || c->out_bytes > 0 ||
            c->count != (c->cur ? 1u : 0u))
            continue;
        if (!best || c->active_ms < best->active_ms) best = c;
    }
    return best;
}

/* Applies conns_per_ip_max, then connections_max (closing the connection
 * idle longest to make room). Returns 1 if c is admitted, 0 if it was
 * refused (answered 503, closing). */
static int conn_admit(struct http_server *srv, struct http_conn *c)
{
    uint32_t per_ip = srv->cfg.conns_per_ip_max;
    if (per_ip > 0) {
        conn_peer(c);
        if (http_ipcount_get(&srv->ipcount, c->peer) >= per_ip) {
            srv->stats.connections_rejected_per_ip++;
            conn_refuse(c, refuse_ip_resp, sizeof refuse_ip_resp - 1);
            return 0;
        }
    }
    if (srv->conns_open >= srv->cfg.connections_max) {
        struct http_conn *victim = server_longest_idle(srv);
        if (!victim) {
            srv->stats.connections_rejected++;
            conn_refuse(c, refuse_resp, sizeof refuse_resp - 1);
            return 0;
        }
        srv->stats.idle_evicted++;
        http_conn_close(victim);
    }
    if (per_ip > 0) {
        if (http_ipcount_add(&srv->ipcount, c->peer) != 0) {
            srv->stats.connections_rejected++;
            conn_refuse(c, refuse_resp, sizeof refuse_resp - 1);
            return 0;
        }
        c->peer_counted = 1;
    }
    c->admitted = 1;
    srv->conns_open++;
    return 1;
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct http_server *srv = listener->data;
    if (status < 0) {
        /* Out of descriptors. libuv refuses the backlog itself with a
         * descriptor it keeps in reserve (uv__emfile_trick) and calls back
         * with UV_EMFILE/UV_ENFILE only when it has none left; then it
         * accepts again at once, so the backlog must be refused here or
         * the loop spins on the readable listener. */
        uint32_t refused = 0;
        uv_os_fd_t lfd;
        if ((status == UV_EMFILE || status == UV_ENFILE) &&
            uv_fileno((const uv_handle_t *)listener, &lfd) == 0)
            refused = st_accept_refuse_pending(lfd);
        srv->stats.accept_failures++;
        srv->stats.connections_refused_nofile += refused;
        uint64_t now = uv_now(srv->loop);
        if (srv->accept_warned_ms == 0 || now - srv->accept_warned_ms >= 1000) {
            srv->accept_warned_ms = now;
            ST_TRACE_WARN("http", "accept: %s (%u pending connection(s) refused)",
                          uv_strerror(status), refused);
        }
        return;
    }
    if (srv->closing) return;
    size_t sz = sizeof(struct http_conn) + (size_t)srv->cfg.pipeline_max * sizeof(struct http_slot);
    struct http_conn *c = calloc(1, sz);
    if (!c) {
        reject_connection(srv);
        return;
    }
    c->srv = srv;
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    st_list_init(&c->dirty_link);
    st_list_push_front(&srv->conns, &c->link);
    srv->conns_alive++;
    srv->stats.connections++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        http_conn_close(c);
        return;
    }
    if (!conn_admit(srv, c)) return;
    srv->stats.connections_accepted++;
    if (srv->cfg.tls && http_conn_tls_start(c) != 0) {
        http_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    http_conn_touch(c);
    http_conn_update_reading(c);
}

/* ---------- server ---------- */

static void on_failed_listener_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    http_ipcount_free(&srv->ipcount);
    free(srv);
}

int http_server_create(uv_loop_t *loop, const struct http_server_config *cfg,
                       http_handler_cb handler, void *handler_ctx, struct http_server **out)
{
    if (!loop || !cfg || !handler || !out || !cfg->host) return ST_EINVAL;
    if (cfg->pipeline_max == 0 || cfg->pipeline_max > HTTP_PIPELINE_MAX_LIMIT ||
        cfg->head_bytes_max < 64 || cfg->headers_max == 0 || cfg->connections_max == 0 ||
        cfg->read_buf_bytes < 256 || strlen(cfg->host) >= 64)
        return ST_EINVAL;
    /* A client that resets while its response is written must not kill the
     * process: writes then fail with EPIPE instead. */
    signal(SIGPIPE, SIG_IGN);
    struct http_server *srv = calloc(1, sizeof(*srv));
    if (!srv) return ST_ENOMEM;
    srv->loop = loop;
    st_membuf_init(&srv->err_body);
    st_list_init(&srv->conns);
    st_list_init(&srv->dirty);
    srv->cfg = *cfg;
    memcpy(srv->host, cfg->host, strlen(cfg->host) + 1);
    srv->cfg.host = srv->host;
    if (srv->cfg.backlog <= 0) srv->cfg.backlog = 511;
    srv->handler = handler;
    srv->handler_ctx = handler_ctx;
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(srv->host, cfg->port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(srv->host, cfg->port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        free(srv);
        return ST_EINVAL;
    }
    if (srv->cfg.conns_per_ip_max > 0 &&
        http_ipcount_init(&srv->ipcount, srv->cfg.connections_max) != 0) {
        free(srv);
        return ST_ENOMEM;
    }
    uv_tcp_init(loop, &srv->listener);
    srv->listener.data = srv;
    srv->listener_open = 1;
    rc = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&addr, 0);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&srv->listener, srv->cfg.backlog, on_connection);
    if (rc != 0) {
        ST_TRACE_ERROR("http", "listen on %s:%u: %s", srv->host, cfg->port, uv_strerror(rc));
        /* The handle must be closed before the memory goes: freed by the
         * close callback when the loop next runs. */
        uv_close((uv_handle_t *)&srv->listener, on_failed_listener_closed);
        *out = NULL;
        return st_errno_to_code(-rc);
    }
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
    srv->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                            : ntohs(((struct sockaddr_in *)&bound)->sin_port);
    srv->listening = 1;
    uv_idle_init(loop, &srv->flush_idle);
    srv->flush_idle.data = srv;
    srv->idle_open = 1;
    uv_timer_init(loop, &srv->trim_timer);
    srv->trim_timer.data = srv;
    srv->trim_open = 1;
    if (cfg->out_budget) {
        struct st_outbudget_user u = {budget_slowest_cb, budget_drop_slowest_cb, srv};
        if (st_outbudget_register(cfg->out_budget, &u) != 0) {
            /* Not fatal: this server then answers to no global bound. */
            ST_TRACE_WARN("http", "too many front ends on one output budget: unbounded");
        } else {
            srv->budget = cfg->out_budget;
        }
    }
    *out = srv;
    return 0;
}

uint16_t http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void http_server_stats(const struct http_server *srv, struct http_server_stats *out)
{
    *out = srv->stats;
}

void http_server_maybe_closed(struct http_server *srv)
{
    if (!srv->closing || srv->listener_open || srv->idle_open || srv->trim_open ||
        srv->conns_alive > 0 || !srv->closed_cb)
        return;
    http_server_closed_cb cb = srv->closed_cb;
    srv->closed_cb = NULL;
    cb(srv, srv->closed_ctx);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    srv->listener_open = 0;
    http_server_maybe_closed(srv);
}

static void on_idle_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    srv->idle_open = 0;
    http_server_maybe_closed(srv);
}

static void on_trim_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    srv->trim_open = 0;
    http_server_maybe_closed(srv);
}

void http_server_close(struct http_server *srv, http_server_closed_cb closed_cb, void *ctx)
{
    if (srv->closing) return;
    srv->closing = 1;
    srv->closed_cb = closed_cb;
    srv->closed_ctx = ctx;
    if (srv->listener_open && !uv_is_closing((uv_handle_t *)&srv->listener))
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    struct st_list *e, *tmp;
    ST_LIST_FOREACH_SAFE(e, tmp, &srv->conns)
    http_conn_close(ST_CONTAINER_OF(e, struct http_conn, link));
    ST_LIST_FOREACH_SAFE(e, tmp, &srv->dirty)
    st_list_del(e); /* all closing: nothing to flush */
    if (srv->idle_open && !uv_is_closing((uv_handle_t *)&srv->flush_idle)) {
        srv->idle_active = 0;
        uv_close((uv_handle_t *)&srv->flush_idle, on_idle_closed);
    }
    if (srv->trim_open && !uv_is_closing((uv_handle_t *)&srv->trim_timer))
        uv_close((uv_handle_t *)&srv->trim_timer, on_trim_closed);
    if (srv->budget) {
        /* Every connection is closing: nothing of ours is charged any more. */
        ST_ASSERT(srv->stats.out_bytes == 0);
        st_outbudget_unregister(srv->budget, srv);
        srv->budget = NULL;
    }
}

void http_server_destroy(struct http_server *srv)
{
    if (!srv) return;
    ST_ASSERT(!srv->listener_open && !srv->idle_open && !srv->trim_open && srv->conns_alive == 0);
    st_membuf_free(&srv->err_body);
    http_ipcount_free(&srv->ipcount);
    free(srv);
}
