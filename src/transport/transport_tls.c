/* Mutual TLS on peer connections: the TLS handshake before the HELLO, the
 * certificate's node id, reads (ciphertext in, plaintext to the frame
 * parser) and writes (a frame's buffers encrypted into one ciphertext write)
 * through tls/ memory BIOs. Back-pressure and stats count plaintext frame
 * bytes, as without TLS; the ciphertext of a frame is written with the
 * frame's own completion, so inflight accounting is unchanged. */
#include "transport/transport_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "util/trace.h"

/* One ciphertext write: the frame it carries (NULL for TLS's own records:
 * handshake, tickets, alerts) and the bytes (cap allocated). Reused through
 * the connection's spares: libuv completes every write (cancelled ones
 * too) before the handle's close callback frees the connection. */
struct st_tr_tls_write {
    uv_write_t req;
    struct st_tr_conn *conn;
    struct st_tr_out *o;
    struct st_tr_tls_write *next; /* on conn->tls_spare */
    size_t len, cap;
    uint8_t data[];
};

/* A write buffer of at least len bytes: a spare when one is large enough
 * (the largest otherwise grown), else a new one. NULL: out of memory. */
static struct st_tr_tls_write *tls_write_get(struct st_tr_conn *c, size_t len)
{
    struct st_tr_tls_write **pp = &c->tls_spare, *w = NULL;
    for (; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->cap >= len) break;
    }
    if (*pp == NULL && c->tls_spare != NULL) pp = &c->tls_spare; /* grow the first */
    if (*pp != NULL) {
        w = *pp;
        *pp = w->next;
        c->tls_spare_n--;
        if (w->cap < len) {
            struct st_tr_tls_write *g = realloc(w, sizeof(*w) + len);
            if (g == NULL) {
                free(w);
                return NULL;
            }
            w = g;
            w->cap = len;
        }
        return w;
    }
    w = malloc(sizeof(*w) + len);
    if (w != NULL) w->cap = len;
    return w;
}

static void tls_write_put(struct st_tr_conn *c, struct st_tr_tls_write *w)
{
    if (c->tls_spare_n >= ST_TR_TLS_SPARE_MAX || w->cap > ST_TR_TLS_SPARE_BYTES) {
        free(w);
        return;
    }
    w->next = c->tls_spare;
    c->tls_spare = w;
    c->tls_spare_n++;
}

void st_tr_tls_free_spares(struct st_tr_conn *c)
{
    while (c->tls_spare != NULL) {
        struct st_tr_tls_write *w = c->tls_spare;
        c->tls_spare = w->next;
        free(w);
    }
    c->tls_spare_n = 0;
}

static void on_tls_write(uv_write_t *req, int status)
{
    struct st_tr_tls_write *w = ST_CONTAINER_OF(req, struct st_tr_tls_write, req);
    struct st_tr_conn *c = w->conn;
    struct st_tr_out *o = w->o;
    tls_write_put(c, w);
    if (o != NULL) {
        st_tr_out_written(o, status);
        return;
    }
    if (status < 0 && status != UV_ECANCELED) st_tr_conn_close(c, ST_ECONNECTION, true);
}

/* Writes what TLS produced, carrying o's completion (o may be NULL). */
static int tls_flush(struct st_tr_conn *c, struct st_tr_out *o)
{
    size_t len = st_tls_conn_output_len(c->tls);
    if (len == 0 && o == NULL) return 0;
    struct st_tr_tls_write *w = tls_write_get(c, len);
    if (w == NULL) return ST_ENOMEM;
    w->conn = c;
    w->o = o;
    w->len = st_tls_conn_take_output(c->tls, w->data, len);
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_tls_write);
    if (rv != 0) {
        tls_write_put(c, w);
        return uv_to_st(rv);
    }
    return 0;
}

int st_tr_tls_attach(struct st_tr_conn *c)
{
    struct st_tr *tr = c->tr;
    c->tls_rbuf = malloc(ST_TR_TLS_READ_BYTES);
    if (c->tls_rbuf == NULL) return ST_ENOMEM;
    int rv = st_tls_conn_create(c->outbound ? tr->tls_client : tr->tls_server, NULL, &c->tls);
    if (rv != 0) return rv;
    if (c->outbound && c->peer != NULL) st_tls_conn_set_session(c->tls, c->peer->tls_session);
    return 0;
}

void st_tr_tls_keep_session(struct st_tr_conn *c, struct st_tr_peer *p)
{
    if (c->tls == NULL || !c->outbound || p == NULL) return;
    void *s = st_tls_conn_take_session(c->tls);
    if (s == NULL) return;
    st_tls_session_free(p->tls_session);
    p->tls_session = s;
}

static void tls_refuse(struct st_tr_conn *c, int status, const char *why)
{
    struct st_tr *tr = c->tr;
    tr->stats.tls_failures++;
    char from[INET6_ADDRSTRLEN] = "?";
    if (!c->outbound) {
        const struct sockaddr *sa = (const struct sockaddr *)&c->src;
        if (sa->sa_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)(const void *)sa, from, sizeof from);
        else if (sa->sa_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)(const void *)sa, from, sizeof from);
    }
    if (c->outbound)
        ST_TRACE_WARN(MOD, "TLS with peer %" PRIu64 " (%s) failed: %s", c->peer ? c->peer->id : 0,
                      c->peer ? c->peer->addr : "?", why);
    else
        ST_TRACE_WARN(MOD, "TLS from %s refused: %s", from, why);
    st_tr_conn_close(c, status, true);
}

/* The TLS handshake just finished: check the certificate's node id. */
static void tls_up(struct st_tr_conn *c)
{
    uint64_t id = 0;
    if (st_tls_conn_peer_node_id(c->tls, &id) != 0) {
        tls_refuse(c, ST_EPERM, "the certificate names no node (CN stcache-node-<id>)");
        return;
    }
    if (c->outbound) {
        ST_ASSERT(c->peer != NULL);
        if (id != c->peer->id) {
            char why[128];
            snprintf(why, sizeof why, "the certificate names node %" PRIu64 ", we dialed %" PRIu64,
                     id, c->peer->id);
            tls_refuse(c, ST_EMISMATCH, why);
            return;
        }
        if (st_tls_conn_resumed(c->tls)) c->tr->stats.tls_resumed++;
        st_tr_conn_send_hello(c);
        return;
    }
    c->cert_id = id;
}

void st_tr_tls_pump(struct st_tr_conn *c)
{
    if (!st_tls_conn_established(c->tls)) {
        int rv = st_tls_conn_handshake(c->tls);
        int frv = tls_flush(c, NULL);
        if (frv != 0) {
            st_tr_conn_close(c, frv, true);
            return;
        }
        if (rv == ST_EBUSY) return;
        if (rv != 0) {
            tls_refuse(c, rv, st_tls_conn_reason(c->tls));
            return;
        }
        tls_up(c);
    }
    while ((c->state == CONN_HANDSHAKE || c->state == CONN_UP) && !c->read_paused) {
        struct raft_buf *b = c->rbuf;
        ST_ASSERT(c->rlen < b->cap);
        long n = st_tls_conn_read(c->tls, b->data + c->rlen, b->cap - c->rlen);
        int frv = tls_flush(c, NULL); /* tickets, key updates, alerts */
        if (frv != 0) {
            st_tr_conn_close(c, frv, true);
            return;
        }
        if (n == 0) return;
        if (n < 0) {
            if (n == ST_ECLOSED)
                st_tr_conn_close(c, ST_ECLOSED, true);
            else
                tls_refuse(c, (int)n, st_tls_conn_reason(c->tls));
            return;
        }
        st_tr_conn_plain(c, (size_t)n);
    }
}

void st_tr_tls_on_read(struct st_tr_conn *c, size_t n)
{
    int rv = st_tls_conn_feed(c->tls, c->tls_rbuf, n);
    if (rv != 0) {
        st_tr_conn_close(c, rv, true);
        return;
    }
    st_tr_tls_pump(c);
}

/* A frame's buffers (its header, then one per entry) become TLS records:
 * one SSL_write per buffer made one record each, with its own header, tag
 * and AEAD call (an append of 128 small entries was 129 records). Buffers
 * smaller than a record are gathered into c->tls_stage first, so a frame
 * takes about (its size / 16 KiB) + 1 records. */
int st_tr_tls_write(struct st_tr_conn *c, struct st_tr_out *o)
{
    ST_ASSERT(st_tls_conn_established(c->tls));
    if (c->tls_stage == NULL && (c->tls_stage = malloc(ST_TR_TLS_STAGE_BYTES)) == NULL)
        return ST_ENOMEM;
    size_t fill = 0;
    int rv = 0;
    for (uint32_t i = 0; i < o->nbufs && rv == 0; i++) {
        const uv_buf_t *b = &o->bufs[i];
        if (fill > 0 && fill + b->len > ST_TR_TLS_STAGE_BYTES) {
            rv = st_tls_conn_write(c->tls, c->tls_stage, fill);
            fill = 0;
        }
        if (rv != 0) break;
        if (b->len >= ST_TR_TLS_STAGE_BYTES) {
            rv = st_tls_conn_write(c->tls, b->base, b->len);
        } else {
            memcpy(c->tls_stage + fill, b->base, b->len);
            fill += b->len;
        }
    }
    if (rv == 0 && fill > 0) rv = st_tls_conn_write(c->tls, c->tls_stage, fill);
    if (rv != 0) return rv;
    return tls_flush(c, o);
}
