/* Dialing: resolve a peer's address, try each resolved address in turn,
 * and reconnect with jittered exponential backoff (st_tr_reconnect_bound_ms). A
 * peer is dialed by the side with the lower id, and by the other side too
 * when no connection came up for ST_TR_REVERSE_DIAL_MS (transport.h). */
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

/* ----------------------------------------------------------------- dialing */

static void on_connect(uv_connect_t *req, int status)
{
    struct st_tr_conn *c = req->data;
    struct st_tr *tr = c->tr;
    if (c->state == CONN_CLOSING) return;
    if (status < 0) {
        ST_TRACE_DEBUG(MOD, "connect to peer %" PRIu64 " (%s): %s", c->peer->id, c->peer->addr,
                       uv_strerror(status));
        st_tr_conn_close(c, ST_ECONNECTION, true);
        return;
    }
    c->state = CONN_HANDSHAKE;
    st_tr_conn_set_options(c);
    int rv = uv_to_st(uv_read_start((uv_stream_t *)&c->tcp, st_tr_on_alloc, st_tr_on_read));
    if (rv == 0 && tr->tls_client != NULL) rv = st_tr_tls_attach(c);
    if (rv != 0) {
        st_tr_conn_close(c, rv, true);
        return;
    }
    if (c->tls != NULL) {
        st_tr_tls_pump(c); /* ClientHello; the HELLO follows once TLS is up */
        return;
    }
    st_tr_conn_send_hello(c);
}

void st_tr_conn_send_hello(struct st_tr_conn *c)
{
    struct st_tr *tr = c->tr;
    struct frame_hello h = {.proto_version = FRAME_PROTO_VERSION,
                            .cluster_id = tr->cfg.cluster_id,
                            .from_id = tr->cfg.self_id,
                            .to_id = c->peer->id};
    frame_versions_self(&h.versions);
    const char *adv = tr->cfg.advertise_addr[0] ? tr->cfg.advertise_addr : tr->cfg.listen_addr;
    h.addr_len = (uint16_t)strlen(adv);
    memcpy(h.addr, adv, h.addr_len);
    uint8_t body[FRAME_HELLO_BODY_MAX];
    size_t n = frame_hello_encode(&h, body);
    st_tr_conn_send_ctrl(c, FRAME_HELLO, body, (uint32_t)n, false);
}

void st_tr_peer_maybe_free(struct st_tr_peer *p)
{
    if (!p->removed || p->timer_open || p->gai_pending) return;
    struct st_tr *tr = p->tr;
    st_tr_peer_free_addrs(p);
    st_tls_session_free(p->tls_session);
    free(p);
    tr->live--;
    st_tr_maybe_free(tr);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct st_tr_peer *p = req->data;
    struct st_tr *tr = p->tr;
    p->gai_pending = false;
    if (p->removed || tr->destroying) {
        if (res != NULL) uv_freeaddrinfo(res);
        st_tr_peer_maybe_free(p);
        return;
    }
    if (p->conn != NULL) { /* the peer dialed us meanwhile */
        if (res != NULL) uv_freeaddrinfo(res);
        return;
    }
    if (status < 0 || res == NULL) {
        ST_TRACE_WARN(MOD, "peer %" PRIu64 ": cannot resolve %s: %s", p->id, p->addr,
                      uv_strerror(status));
        if (res != NULL) uv_freeaddrinfo(res);
        st_tr_peer_drop_queue(p, ST_ECONNECTION, true);
        st_tr_peer_schedule_dial(p);
        return;
    }
    p->ai_list = p->ai_next = res;
    st_tr_peer_dial_next(p);
}

void st_tr_peer_free_addrs(struct st_tr_peer *p)
{
    if (p->ai_list != NULL) uv_freeaddrinfo(p->ai_list);
    p->ai_list = p->ai_next = NULL;
}

/* Connects to the next resolved address; after the last, backs off. */
void st_tr_peer_dial_next(struct st_tr_peer *p)
{
    struct st_tr *tr = p->tr;
    ST_ASSERT(p->conn == NULL);
    struct addrinfo *ai = p->ai_next;
    if (ai == NULL) {
        st_tr_peer_free_addrs(p);
        st_tr_peer_schedule_dial(p);
        return;
    }
    p->ai_next = ai->ai_next;
    struct st_tr_conn *c = st_tr_conn_create(tr, true, p);
    if (c == NULL) {
        st_tr_peer_free_addrs(p);
        st_tr_peer_drop_queue(p, ST_ENOMEM, true);
        st_tr_peer_schedule_dial(p);
        return;
    }
    p->conn = c;
    int rv = uv_tcp_connect(&c->connect_req, &c->tcp, ai->ai_addr, on_connect);
    if (rv != 0) {
        ST_TRACE_DEBUG(MOD, "connect to peer %" PRIu64 ": %s", p->id, uv_strerror(rv));
        st_tr_conn_close(c, uv_to_st(rv), true); /* tries the next address */
    }
}

void st_tr_on_dial_timer(uv_timer_t *t)
{
    struct st_tr_peer *p = t->data;
    struct st_tr *tr = p->tr;
    if (p->removed || tr->destroying || p->conn != NULL || p->gai_pending) return;
    if (p->dialed_once) tr->stats.reconnects++;
    p->dialed_once = true;
    char host[ST_TR_ADDR_MAX + 1], port[8];
    uint16_t portnum;
    ST_ASSERT(st_url_hostport_split_any(p->addr, host, sizeof(host), &portnum) ==
              0); /* checked at add */
    snprintf(port, sizeof(port), "%u", (unsigned)portnum);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    p->gai.data = p;
    int rv = uv_getaddrinfo(tr->loop, &p->gai, on_resolved, host, port, &hints);
    if (rv != 0) {
        ST_TRACE_WARN(MOD, "peer %" PRIu64 ": getaddrinfo: %s", p->id, uv_strerror(rv));
        st_tr_peer_schedule_dial(p);
        return;
    }
    p->gai_pending = true;
}

uint32_t st_tr_reconnect_bound_ms(const struct st_tr_config *cfg, uint32_t prev_bound_ms,
                                  uint64_t down_for_ms)
{
    if (prev_bound_ms == 0 || down_for_ms < cfg->reconnect_fast_ms) return cfg->reconnect_base_ms;
    return (uint32_t)ST_MIN((uint64_t)prev_bound_ms * 2, (uint64_t)cfg->reconnect_max_ms);
}

/* Backoff with jitter (st_tr_reconnect_bound_ms): fast retries for the first
 * reconnect_fast_ms of an outage (a restarting peer is back within a second:
 * a bound that doubled meanwhile added ~0.45 s to a node's restart in the
 * benchmark), then d doubles up to reconnect_max_ms; the delay is uniform in
 * [d/2, d]. */
void st_tr_peer_schedule_dial(struct st_tr_peer *p)
{
    struct st_tr *tr = p->tr;
    uint64_t now = uv_now(tr->loop);
    if (p->down_since_ms == 0) p->down_since_ms = now;
    uint32_t d = st_tr_reconnect_bound_ms(&tr->cfg, p->backoff_ms, now - p->down_since_ms);
    p->backoff_ms = d;
    uint64_t delay = d / 2 + st_rng_below(&tr->rng, d / 2 + 1);
    if (!p->dialer) delay += ST_TR_REVERSE_DIAL_MS; /* the peer's own dial comes first */
    uv_timer_start(&p->timer, st_tr_on_dial_timer, delay, 0);
}
