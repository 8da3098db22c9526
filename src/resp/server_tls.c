/* TLS on the Redis port through tls/ memory BIOs (contract in resp_int.h).
 * The loop never waits on TLS: ciphertext read from the socket is fed to
 * OpenSSL, plaintext is pulled into the read buffer while the pipeline takes
 * input, and each write's replies are encrypted into one reused buffer (no
 * allocation per reply). TLS's own records (handshake, tickets, alerts)
 * leave in writes of their own, in order with the replies. */
#include "resp/resp_int.h"

#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/trace.h"

struct tls_ctl_write {
    uv_write_t req;
    struct resp_conn *conn;
    char data[];
};

int resp_tls_start(struct resp_conn *c)
{
    st_membuf_init(&c->tls_out);
    c->tls_in = malloc(RESP_TLS_IN_BYTES);
    if (!c->tls_in) return ST_ENOMEM;
    return st_tls_conn_create(c->srv->cfg.tls, NULL, &c->tls);
}

void resp_tls_free(struct resp_conn *c)
{
    st_tls_conn_destroy(c->tls);
    c->tls = NULL;
    free(c->tls_in);
    c->tls_in = NULL;
    st_membuf_free(&c->tls_out);
}

static void on_ctl_written(uv_write_t *req, int status)
{
    struct tls_ctl_write *w = ST_CONTAINER_OF(req, struct tls_ctl_write, req);
    struct resp_conn *c = w->conn;
    free(w);
    if (status < 0 && status != UV_ECANCELED) resp_conn_close(c);
}

/* Writes what TLS produced outside replies. 0, or a negative code. */
static int tls_flush_ctl(struct resp_conn *c)
{
    size_t len = st_tls_conn_output_len(c->tls);
    if (len == 0 || c->closing) return 0;
    struct tls_ctl_write *w = malloc(sizeof(*w) + len);
    if (!w) return ST_ENOMEM;
    w->conn = c;
    size_t got = st_tls_conn_take_output(c->tls, w->data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_ctl_written) != 0) {
        free(w);
        return ST_ECONNECTION;
    }
    return 0;
}

static void tls_fail(struct resp_conn *c)
{
    ST_TRACE_DEBUG("resp", "TLS with client %s failed: %s", c->addr, st_tls_conn_reason(c->tls));
    (void)tls_flush_ctl(c); /* the alert */
    resp_conn_close(c);
}

void resp_tls_on_read(struct resp_conn *c, size_t n)
{
    if (st_tls_conn_feed(c->tls, c->tls_in, n) != 0) {
        resp_conn_close(c);
        return;
    }
    resp_tls_pump(c);
}

void resp_tls_pump(struct resp_conn *c)
{
    if (c->tls_pumping || c->closing) return;
    c->tls_pumping = true;
    if (!st_tls_conn_established(c->tls)) {
        int rv = st_tls_conn_handshake(c->tls);
        if (rv != 0 && rv != ST_EBUSY) {
            c->tls_pumping = false;
            tls_fail(c);
            return;
        }
        if (tls_flush_ctl(c) != 0) {
            c->tls_pumping = false;
            resp_conn_close(c);
            return;
        }
        if (rv == ST_EBUSY) {
            c->tls_pumping = false;
            return;
        }
    }
    while (resp_conn_takes_input(c)) {
        if (resp_conn_rbuf_room(c) != 0) {
            resp_conn_close(c);
            break;
        }
        long n = st_tls_conn_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (tls_flush_ctl(c) != 0) {
            resp_conn_close(c);
            break;
        }
        if (n == 0) break;
        if (n == ST_ECLOSED) { /* close_notify: the client is done */
            resp_conn_close(c);
            break;
        }
        if (n < 0) {
            c->tls_pumping = false;
            tls_fail(c);
            return;
        }
        resp_conn_input(c, (size_t)n);
    }
    c->tls_pumping = false;
}

int resp_tls_encrypt(struct resp_conn *c)
{
    int rv = st_tls_conn_write(c->tls, c->wfly.data, c->wfly.len);
    if (rv != 0) return rv;
    st_membuf_reset(&c->tls_out);
    char chunk[16 * 1024];
    size_t n;
    while ((n = st_tls_conn_take_output(c->tls, chunk, sizeof chunk)) > 0)
        st_membuf_append(&c->tls_out, chunk, n);
    return c->tls_out.oom ? ST_ENOMEM : 0;
}
