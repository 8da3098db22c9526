/* TCP peer transport on libuv: creation, start and listening address, the
 * peer table, destruction. Objects, lifetimes and connection states are
 * described in transport_int.h; contract in transport.h, bytes in
 * docs/WIRE-FORMAT.md. */
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
#include "util/url.h"
#include "wire/le.h"
#include "wire/msg.h"

void st_tr_maybe_free(struct st_tr *tr)
{
    if (!tr->destroying || tr->live > 0) return;
    wire_msg_close(&tr->wm);
    st_tr_out_pool_drain(tr);
    st_tls_ctx_destroy(tr->tls_server);
    st_tls_ctx_destroy(tr->tls_client);
    void (*cb)(void *) = tr->done_cb;
    void *arg = tr->done_arg;
    free(tr);
    if (cb != NULL) cb(arg);
}

/* -------------------------------------------------------------------- API */

void st_tr_config_default(struct st_tr_config *cfg, raft_id self_id, uint64_t cluster_id,
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

int st_tr_create(uv_loop_t *loop, const struct st_tr_config *cfg, const struct st_tr_callbacks *cbs,
                 struct st_tr **out)
{
    char host[ST_TR_ADDR_MAX + 1];
    uint16_t port;
    if (cfg->self_id == RAFT_NONE || cfg->frame_bytes_max < 4096 ||
        cfg->snapshot_chunk_bytes == 0 ||
        (uint64_t)cfg->snapshot_chunk_bytes + FRAME_SNAP_CHUNK_FIXED_SIZE > cfg->frame_bytes_max ||
        cfg->send_queue_msgs_max == 0 || cfg->send_queue_bytes_max == 0 ||
        cfg->reconnect_base_ms == 0 || cfg->reconnect_max_ms < cfg->reconnect_base_ms ||
        cfg->handshake_timeout_ms == 0 || cfg->queue_wait_ms == 0 ||
        memchr(cfg->listen_addr, '\0', sizeof(cfg->listen_addr)) == NULL ||
        memchr(cfg->advertise_addr, '\0', sizeof(cfg->advertise_addr)) == NULL ||
        st_url_hostport_split_any(cfg->listen_addr, host, sizeof(host), &port) != 0)
        return ST_EINVAL;
    bool tls = cfg->tls_cert_file != NULL || cfg->tls_key_file != NULL || cfg->tls_ca_file != NULL;
    if (tls &&
        (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL || cfg->tls_ca_file == NULL))
        return ST_EINVAL; /* mutual TLS needs all three */
    struct st_tr *tr = calloc(1, sizeof(*tr));
    if (tr == NULL) return ST_ENOMEM;
    if (tls) {
        struct st_tls_files f = {cfg->tls_cert_file, cfg->tls_key_file, cfg->tls_ca_file};
        char reason[ST_TLS_REASON_MAX];
        int rv =
            st_tls_ctx_create(ST_TLS_SERVER, ST_TLS_VERIFY_REQUIRE, &f, &tr->tls_server, reason);
        if (rv == 0)
            rv = st_tls_ctx_create(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, &f, &tr->tls_client,
                                   reason);
        if (rv != 0) {
            ST_TRACE_ERROR(MOD, "peer TLS: %s", reason);
            st_tls_ctx_destroy(tr->tls_server);
            free(tr);
            return rv;
        }
        if (st_tls_ctx_key_file_too_open(tr->tls_server, reason))
            ST_TRACE_WARN(MOD, "peer %s", reason);
    }
    tr->loop = loop;
    tr->cfg = *cfg;
    tr->cfg.tls_cert_file = tr->cfg.tls_key_file = tr->cfg.tls_ca_file = NULL; /* not kept */
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
    ST_ASSERT(uv_timer_init(loop, &tr->turn_timer) == 0);
    tr->turn_timer.data = tr;
    tr->live += 3; /* the three timers */
    *out = tr;
    return 0;
}

int st_tr_start(struct st_tr *tr)
{
    if (tr->listener_open || tr->destroying) return ST_EINVAL;
    /* A write to a connection the peer reset must be an EPIPE error on that
     * connection, not a process-killing signal. */
    signal(SIGPIPE, SIG_IGN);
    char host[ST_TR_ADDR_MAX + 1], port[8];
    uint16_t portnum;
    if (st_url_hostport_split_any(tr->cfg.listen_addr, host, sizeof(host), &portnum) != 0)
        return ST_EINVAL;
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
    if (rv == 0) rv = uv_listen((uv_stream_t *)&tr->listener, ST_TR_BACKLOG, st_tr_on_connection);
    if (rv != 0) {
        ST_TRACE_ERROR(MOD, "cannot listen on %s: %s", tr->cfg.listen_addr, uv_strerror(rv));
        return rv == UV_EADDRINUSE ? ST_EEXIST : uv_to_st(rv);
    }
    if (tr->cfg.advertise_addr[0] == '\0') { /* the listen address, with the bound port */
        bool v6 = strchr(host, ':') != NULL;
        snprintf(tr->cfg.advertise_addr, sizeof(tr->cfg.advertise_addr), "%s%.200s%s:%d",
                 v6 ? "[" : "", host, v6 ? "]" : "", st_tr_listen_port(tr));
    }
    ST_TRACE_INFO(MOD, "node %" PRIu64 " listening on %s (port %d)", tr->cfg.self_id,
                  tr->cfg.listen_addr, st_tr_listen_port(tr));
    return 0;
}

int st_tr_tls_reload(struct st_tr *tr, char *reason, size_t cap)
{
    char why[ST_TLS_REASON_MAX] = "peer TLS is not configured";
    int rv = ST_EINVAL;
    if (tr->tls_server != NULL) {
        /* Both or neither: check the files with the server context first;
         * the client's reads the same files. */
        rv = st_tls_ctx_reload(tr->tls_server, why);
        if (rv == 0) rv = st_tls_ctx_reload(tr->tls_client, why);
    }
    if (rv == 0) {
        ST_TRACE_INFO(MOD, "peer TLS certificates reloaded");
        if (st_tls_ctx_key_file_too_open(tr->tls_server, why)) ST_TRACE_WARN(MOD, "peer %s", why);
    } else if (reason != NULL && cap > 0) {
        snprintf(reason, cap, "%s", why);
    }
    return rv;
}

int st_tr_listen_port(const struct st_tr *tr)
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
    struct st_tr_peer *p = h->data;
    p->timer_open = false;
    st_tr_peer_maybe_free(p);
}

/* A new peer entry; the caller starts its dialing. */
struct st_tr_peer *st_tr_peer_new(struct st_tr *tr, raft_id id, const char *addr)
{
    struct st_tr_peer *p = calloc(1, sizeof(*p));
    if (p == NULL) return NULL;
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
    return p;
}

/* The first dial: at once by the dialer; by the other side only if no
 * connection came up after ST_TR_REVERSE_DIAL_MS (see transport.h). */
static void peer_start(struct st_tr_peer *p)
{
    uv_timer_start(&p->timer, st_tr_on_dial_timer, p->dialer ? 0 : ST_TR_REVERSE_DIAL_MS, 0);
}

int st_tr_peer_add(struct st_tr *tr, raft_id id, const char *addr)
{
    char host[ST_TR_ADDR_MAX + 1];
    uint16_t port;
    if (tr->destroying) return ST_ECLOSED;
    if (id == RAFT_NONE || id == tr->cfg.self_id || addr == NULL || strlen(addr) > ST_TR_ADDR_MAX ||
        st_url_hostport_split_any(addr, host, sizeof(host), &port) != 0)
        return ST_EINVAL;
    struct st_tr_peer *p = peer_find(tr, id);
    if (p != NULL && !p->learned) return ST_EEXIST;
    if (p != NULL) {
        /* A peer that dialed us before we knew it is one now: it keeps its
         * connection, and is dialed again if that one ends. */
        p->learned = false;
        tr->learned--;
        p->dialer = tr->cfg.self_id < id;
        snprintf(p->addr, sizeof(p->addr), "%s", addr);
        if (p->conn == NULL) peer_start(p);
        return 0;
    }
    if ((p = st_tr_peer_new(tr, id, addr)) == NULL) return ST_ENOMEM;
    peer_start(p);
    return 0;
}

/* Removal without callbacks, except the snapshot ends when notify_snap
 * (st_tr_peer_remove: the node may hold files for them). */
static void peer_remove(struct st_tr_peer *p, bool notify_snap)
{
    struct st_tr *tr = p->tr;
    p->removed = true;
    st_list_del(&p->link);
    if (p->snap_out != NULL) st_tr_snap_out_finish(p->snap_out, ST_ECANCELED, notify_snap, true);
    if (p->snap_in != NULL) st_tr_snap_in_end(p, ST_ECANCELED, notify_snap, false);
    st_tr_peer_drop_queue(p, ST_ECLOSED, false);
    if (p->conn != NULL) st_tr_conn_close(p->conn, ST_ECLOSED, false);
    ST_ASSERT(p->conn == NULL);
    if (p->gai_pending)
        uv_cancel((uv_req_t *)&p->gai); /* its callback still comes, with a cancel status */
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, on_peer_timer_closed);
    (void)tr;
}

int st_tr_peer_remove(struct st_tr *tr, raft_id id)
{
    struct st_tr_peer *p = peer_find(tr, id);
    if (p == NULL || p->learned) return ST_ENOENT;
    peer_remove(p, true);
    return 0;
}

void st_tr_peer_forget(struct st_tr_peer *p)
{
    ST_ASSERT(p->learned);
    p->learned = false;
    p->tr->learned--;
    peer_remove(p, true);
}

bool st_tr_peer_connected(const struct st_tr *tr, raft_id id)
{
    const struct st_tr_peer *p = peer_find(tr, id);
    return p != NULL && p->conn != NULL && p->conn->state == CONN_UP;
}

/* ---------------------------------------------------------------- destroy */

static void on_tr_handle_closed(uv_handle_t *h)
{
    struct st_tr *tr = h->data;
    tr->live--;
    st_tr_maybe_free(tr);
}

void st_tr_destroy(struct st_tr *tr, void (*done_cb)(void *arg), void *done_arg)
{
    ST_ASSERT(!tr->destroying);
    tr->destroying = true;
    tr->done_cb = done_cb;
    tr->done_arg = done_arg;
    tr->live++; /* hold tr while tearing down */
    while (!st_list_empty(&tr->peers))
        peer_remove(ST_CONTAINER_OF(tr->peers.next, struct st_tr_peer, link), false);
    for (struct st_list *l = tr->conns.next; l != &tr->conns; l = l->next)
        st_tr_conn_close(ST_CONTAINER_OF(l, struct st_tr_conn, link), ST_ECLOSED, false);
    if (tr->listener_open) uv_close((uv_handle_t *)&tr->listener, on_tr_handle_closed);
    uv_close((uv_handle_t *)&tr->notify_timer, on_tr_handle_closed);
    uv_close((uv_handle_t *)&tr->sweep_timer, on_tr_handle_closed);
    uv_close((uv_handle_t *)&tr->turn_timer, on_tr_handle_closed);
    tr->live--;
    st_tr_maybe_free(tr);
}

void st_tr_stats_get(const struct st_tr *tr, struct st_tr_stats *out)
{
    *out = tr->stats;
}

int st_tr_peer_fd(const struct st_tr *tr, raft_id id)
{
    const struct st_tr_peer *p = peer_find(tr, id);
    uv_os_fd_t fd;
    if (p == NULL || p->conn == NULL || p->conn->state != CONN_UP ||
        uv_fileno((const uv_handle_t *)&p->conn->tcp, &fd) != 0)
        return -1;
    return fd;
}
