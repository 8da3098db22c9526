/* HTTP server: TLS on a connection through tls/ memory BIOs (contract in
 * server_int.h). The loop never waits on TLS: ciphertext read from the
 * socket is fed to the connection, plaintext is pulled into the read buffer
 * only while the request pipeline has room for it (the same back-pressure
 * as without TLS: what is not pulled stays in OpenSSL's buffers, bounded by
 * one read buffer of ciphertext, and is pulled when reading resumes). */
#include "http/server_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

#define PLAIN_BODY "{\"error\":\"this port speaks TLS: use https://\",\"code\":400}"
static const char plain_resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 57\r\nConnection: close\r\n\r\n" PLAIN_BODY;
_Static_assert(sizeof(PLAIN_BODY) - 1 == 57, "Content-Length of the plain-HTTP 400 body");

/* One write of TLS's own records (handshake, session tickets, alerts): a
 * few per connection, never one per response. */
struct tls_ctl_write {
    uv_write_t req;
    struct http_conn *conn;
    char data[];
};

int http_conn_tls_start(struct http_conn *c)
{
    c->tls_in = malloc(HTTP_TLS_IN_BYTES);
    if (!c->tls_in) return ST_ENOMEM;
    return st_tls_conn_create(c->srv->cfg.tls, NULL, &c->tls);
}

void http_conn_tls_free(struct http_conn *c)
{
    st_tls_conn_destroy(c->tls);
    c->tls = NULL;
    free(c->tls_in);
    c->tls_in = NULL;
    free(c->tls_out);
    c->tls_out = NULL;
    c->tls_out_cap = 0;
}

static void on_ctl_written(uv_write_t *req, int status)
{
    struct tls_ctl_write *w = ST_CONTAINER_OF(req, struct tls_ctl_write, req);
    struct http_conn *c = w->conn;
    free(w);
    if (status < 0 && status != UV_ECANCELED && !c->closing) http_conn_close(c);
}

/* Writes what TLS produced outside responses. 0, or a negative code. */
static int tls_flush_ctl(struct http_conn *c)
{
    size_t len = st_tls_conn_output_len(c->tls);
    if (len == 0 || c->closing) return 0;
    struct tls_ctl_write *w = malloc(sizeof(*w) + len);
    if (!w) return ST_ENOMEM;
    w->conn = c;
    size_t got = st_tls_conn_take_output(c->tls, w->data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned int)got);
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_ctl_written);
    if (rv != 0) {
        free(w);
        return ST_ECONNECTION;
    }
    return 0;
}

static void tls_fail(struct http_conn *c, const char *why)
{
    c->srv->stats.tls_failures++;
    ST_TRACE_DEBUG("http", "TLS with a client failed: %s", why);
    (void)tls_flush_ctl(c); /* the alert, so the client learns why */
    http_conn_close(c);
}

/* A client that talks plain HTTP to the TLS port: a TLS record starts with
 * its content type (20..24), a request line with a letter. */
static int plain_http(struct http_conn *c, const uint8_t *data, size_t n)
{
    if (c->tls_seen || n == 0) return 0;
    c->tls_seen = 1;
    if (!((data[0] >= 'A' && data[0] <= 'Z') || (data[0] >= 'a' && data[0] <= 'z'))) return 0;
    c->srv->stats.tls_plain_refused++;
    uv_buf_t b = uv_buf_init((char *)(uintptr_t)plain_resp, sizeof plain_resp - 1);
    (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    http_conn_finish(c);
    return 1;
}

void http_conn_tls_on_read(struct http_conn *c, size_t n)
{
    if (plain_http(c, c->tls_in, n)) return;
    if (st_tls_conn_feed(c->tls, c->tls_in, n) != 0) {
        http_conn_close(c);
        return;
    }
    http_conn_tls_pump(c);
}

/* The handshake just finished: the verified client's name, if any. */
static void tls_up(struct http_conn *c)
{
    if (st_tls_conn_peer_name(c->tls, c->tls_user, sizeof c->tls_user) != 0) c->tls_user[0] = '\0';
}

void http_conn_tls_pump(struct http_conn *c)
{
    if (c->tls_pumping || c->closing || c->lingering) return;
    c->tls_pumping = 1;
    if (!st_tls_conn_established(c->tls)) {
        int rv = st_tls_conn_handshake(c->tls);
        if (rv != 0 && rv != ST_EBUSY) {
            c->tls_pumping = 0;
            tls_fail(c, st_tls_conn_reason(c->tls));
            return;
        }
        if (tls_flush_ctl(c) != 0) {
            c->tls_pumping = 0;
            http_conn_close(c);
            return;
        }
        if (rv == ST_EBUSY) {
            c->tls_pumping = 0;
            return;
        }
        tls_up(c);
    }
    size_t cap = c->srv->cfg.read_buf_bytes;
    if (!c->rbuf && !(c->rbuf = malloc(cap))) {
        c->tls_pumping = 0;
        http_conn_close(c);
        return;
    }
    /* Only as much as the pipeline takes: the same conditions that make
     * http_conn_update_reading stop reading the socket. */
    while (!c->closing && !c->lingering && !c->no_more && !c->eof &&
           c->count < c->srv->cfg.pipeline_max && !http_conn_out_full(c)) {
        if (c->rstart > 0 && c->rstart + c->rlen == cap) {
            memmove(c->rbuf, c->rbuf + c->rstart, c->rlen);
            c->rstart = 0;
        }
        size_t off = c->rstart + c->rlen;
        if (off == cap) break;
        long n = st_tls_conn_read(c->tls, c->rbuf + off, cap - off);
        if (tls_flush_ctl(c) != 0) { /* tickets, key updates */
            http_conn_close(c);
            break;
        }
        if (n == 0) break;
        if (n == ST_ECLOSED) { /* close_notify: as the client's EOF */
            c->tls_pumping = 0;
            http_conn_eof(c);
            return;
        }
        if (n < 0) {
            c->tls_pumping = 0;
            tls_fail(c, st_tls_conn_reason(c->tls));
            return;
        }
        c->rlen += (size_t)n;
        http_conn_process(c);
    }
    c->tls_pumping = 0;
}

int http_conn_tls_encrypt(struct http_conn *c, const uv_buf_t *bufs, uint32_t n, size_t *len)
{
    for (uint32_t i = 0; i < n; i++) {
        int rv = st_tls_conn_write(c->tls, bufs[i].base, bufs[i].len);
        if (rv != 0) return rv;
    }
    size_t out = st_tls_conn_output_len(c->tls);
    if (http_buf_reserve(&c->tls_out, &c->tls_out_cap, out) != 0) return ST_ENOMEM;
    *len = st_tls_conn_take_output(c->tls, c->tls_out, out);
    return 0;
}

int http_conn_write_raw(struct http_conn *c, const char *data, size_t len)
{
    if (!c->tls) {
        uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned int)len);
        int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        return w == (int)len ? 0 : ST_EBUSY;
    }
    int rv = st_tls_conn_write(c->tls, data, len);
    return rv != 0 ? rv : tls_flush_ctl(c);
}
