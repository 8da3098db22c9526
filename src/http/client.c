#include "http/client.h"

#include "http/response.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "tls/tls.h"
#include "util/list.h"
#include "util/url.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Contracts in http/client.h. The response is read into one growing buffer
 * and parsed by http/response.h after every read. */
struct http_client {
    uv_loop_t *loop;
    uv_getaddrinfo_t gai;
    uv_connect_t connect;
    uv_write_t write;
    uv_tcp_t tcp;
    uv_timer_t timer;
    bool gai_pending;
    bool tcp_open;
    bool timer_open;
    int closing; /* handles still closing */
    bool done;   /* callback ran (or aborted) */
    http_client_cb cb;
    void *ctx;
    char *req; /* request bytes */
    size_t req_len;
    char *resp; /* response bytes (grows) */
    size_t resp_len, resp_cap;
    char port[8];
    char host[HTTP_CLIENT_HOST_BYTES_MAX];
    /* HTTPS: the context (borrowed), the connection, a ciphertext read
     * buffer; the request goes once the handshake is done. */
    struct st_tls_ctx *tls_ctx;
    struct st_tls_conn *tls;
    uint8_t *tls_in;
    bool req_sent;
};

#define CLIENT_TLS_IN_BYTES (17u * 1024u)

/* One ciphertext write (handshake, request, alerts): a few per request. */
struct client_tls_write {
    uv_write_t req;
    struct http_client *c;
    char data[];
};

static void client_maybe_free(struct http_client *c)
{
    if (c->gai_pending || c->closing > 0 || c->tcp_open || c->timer_open) return;
    free(c->req);
    free(c->resp);
    st_tls_conn_destroy(c->tls);
    free(c->tls_in);
    free(c);
}

static void client_closed_cb(uv_handle_t *h)
{
    struct http_client *c = h->data;
    c->closing--;
    client_maybe_free(c);
}

static void client_close_handles(struct http_client *c)
{
    if (c->tcp_open) {
        c->tcp_open = false;
        c->closing++;
        uv_close((uv_handle_t *)&c->tcp, client_closed_cb);
    }
    if (c->timer_open) {
        c->timer_open = false;
        c->closing++;
        uv_close((uv_handle_t *)&c->timer, client_closed_cb);
    }
    client_maybe_free(c);
}

static void client_finish(struct http_client *c, int status, const char *body, size_t body_len,
                          const char *head, size_t head_len)
{
    if (!c->done) {
        c->done = true;
        c->cb(c->ctx, status, body ? body : "", body ? body_len : 0, head ? head : "", head_len);
    }
    client_close_handles(c);
}

/* Room for at least 4 KiB more of response (and the NUL): 0, or -1 when
 * the response would exceed its bound or memory is short. */
static int client_reserve(struct http_client *c)
{
    if (c->resp_cap - c->resp_len < 4096 + 1) {
        size_t limit = HTTP_CLIENT_BODY_BYTES_MAX + 64 * 1024; /* body + head */
        size_t cap = c->resp_cap ? c->resp_cap * 2 : 8192;
        if (cap > limit) cap = limit;
        if (cap - c->resp_len < 4096 + 1) return -1;
        char *p = realloc(c->resp, cap);
        if (!p) return -1;
        c->resp = p;
        c->resp_cap = cap;
    }
    return 0;
}

static void client_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_client *c = h->data;
    (void)suggested;
    if (c->tls) {
        buf->base = (char *)c->tls_in;
        buf->len = CLIENT_TLS_IN_BYTES;
        return;
    }
    if (client_reserve(c) != 0) {
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    buf->base = c->resp + c->resp_len;
    buf->len = c->resp_cap - c->resp_len - 1; /* keep one byte for the NUL */
}

/* Parses what was read: finishes when the response is complete or bad. */
static void client_parse(struct http_client *c, bool eof)
{
    if (!c->resp) {
        client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
        return;
    }
    struct http_response r;
    int rc = http_response_parse(c->resp, c->resp_len, eof, HTTP_CLIENT_BODY_BYTES_MAX, &r);
    if (rc == 0 && r.complete) {
        char *body = c->resp + (r.body - c->resp);
        body[r.body_len] = '\0'; /* room reserved by the reader */
        client_finish(c, r.status, body, r.body_len, r.head, r.head_len);
    } else if (rc < 0) {
        client_finish(c, eof && rc == ST_EPROTO && c->resp_len == 0 ? ST_ECONNECTION : rc, NULL, 0,
                      NULL, 0);
    }
}

static void client_write_cb(uv_write_t *w, int status);

static void client_tls_written(uv_write_t *w, int status)
{
    struct client_tls_write *tw = ST_CONTAINER_OF(w, struct client_tls_write, req);
    struct http_client *c = tw->c;
    free(tw);
    if (c->done || status >= 0) return;
    client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
}

/* Writes what TLS produced. 0 or ST_ECONNECTION/ST_ENOMEM. */
static int client_tls_flush(struct http_client *c)
{
    size_t len = st_tls_conn_output_len(c->tls);
    if (len == 0) return 0;
    struct client_tls_write *w = malloc(sizeof(*w) + len);
    if (!w) return ST_ENOMEM;
    w->c = c;
    size_t got = st_tls_conn_take_output(c->tls, w->data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)got);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, client_tls_written) != 0) {
        free(w);
        return ST_ECONNECTION;
    }
    return 0;
}

/* Advances the handshake, sends the request once it is done, and reads
 * the plaintext that arrived. */
static void client_tls_pump(struct http_client *c, bool eof)
{
    if (!st_tls_conn_established(c->tls)) {
        int rv = st_tls_conn_handshake(c->tls);
        if (client_tls_flush(c) != 0) {
            client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
            return;
        }
        if (rv == ST_EBUSY && !eof) return;
        if (rv != 0) { /* the leader's certificate did not verify, or no TLS there */
            client_finish(c, rv == ST_EBUSY ? ST_ECONNECTION : rv, NULL, 0, NULL, 0);
            return;
        }
    }
    if (!c->req_sent) {
        c->req_sent = true;
        if (st_tls_conn_write(c->tls, c->req, c->req_len) != 0 || client_tls_flush(c) != 0) {
            client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
            return;
        }
    }
    bool got = false;
    for (;;) {
        if (client_reserve(c) != 0) {
            client_finish(c, ST_ETOOBIG, NULL, 0, NULL, 0);
            return;
        }
        long n = st_tls_conn_read(c->tls, c->resp + c->resp_len, c->resp_cap - c->resp_len - 1);
        if (client_tls_flush(c) != 0) {
            client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
            return;
        }
        if (n == ST_ECLOSED) {
            eof = true;
            break;
        }
        if (n < 0) {
            client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
            return;
        }
        if (n == 0) break;
        c->resp_len += (size_t)n;
        got = true;
    }
    if (got || eof) client_parse(c, eof);
}

static void client_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct http_client *c = s->data;
    (void)buf;
    if (c->done) return;
    if (nread == UV_ENOBUFS) {
        client_finish(c, ST_ETOOBIG, NULL, 0, NULL, 0);
        return;
    }
    if (nread == 0) return;
    bool eof = nread < 0;
    if (c->tls) {
        if (nread > 0 && st_tls_conn_feed(c->tls, c->tls_in, (size_t)nread) != 0) {
            client_finish(c, ST_ENOMEM, NULL, 0, NULL, 0);
            return;
        }
        client_tls_pump(c, eof);
        return;
    }
    if (nread > 0) c->resp_len += (size_t)nread;
    client_parse(c, eof);
}

static void client_write_cb(uv_write_t *w, int status)
{
    struct http_client *c = w->data;
    if (c->done) return;
    if (status < 0) {
        client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, client_alloc_cb, client_read_cb) != 0)
        client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
}

static void client_connect_cb(uv_connect_t *req, int status)
{
    struct http_client *c = req->data;
    if (c->done) return;
    if (status < 0) {
        client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
        return;
    }
    if (c->tls_ctx) {
        c->tls_in = malloc(CLIENT_TLS_IN_BYTES);
        if (!c->tls_in || st_tls_conn_create(c->tls_ctx, c->host, &c->tls) != 0 ||
            uv_read_start((uv_stream_t *)&c->tcp, client_alloc_cb, client_read_cb) != 0) {
            client_finish(c, ST_ENOMEM, NULL, 0, NULL, 0);
            return;
        }
        client_tls_pump(c, false); /* ClientHello */
        return;
    }
    uv_buf_t b = uv_buf_init(c->req, (unsigned)c->req_len);
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, client_write_cb) != 0)
        client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
}

static void client_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct http_client *c = req->data;
    c->gai_pending = false;
    if (c->done || status < 0 || !res) {
        if (res) uv_freeaddrinfo(res);
        if (!c->done)
            client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
        else
            client_maybe_free(c);
        return;
    }
    if (uv_tcp_init(c->loop, &c->tcp) != 0) {
        uv_freeaddrinfo(res);
        client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
        return;
    }
    c->tcp.data = c;
    c->tcp_open = true;
    c->connect.data = c;
    int rc = uv_tcp_connect(&c->connect, &c->tcp, res->ai_addr, client_connect_cb);
    uv_freeaddrinfo(res);
    if (rc != 0) client_finish(c, ST_ECONNECTION, NULL, 0, NULL, 0);
}

static void client_timer_cb(uv_timer_t *t)
{
    struct http_client *c = t->data;
    client_finish(c, ST_ETIMEDOUT, NULL, 0, NULL, 0);
}

int http_client_request(uv_loop_t *loop, const char *addr, const char *method, const char *path,
                        const char *content_type, const char *extra_headers, const void *body,
                        size_t body_len, uint32_t timeout_ms, http_client_cb cb, void *ctx,
                        struct http_client **out)
{
    return http_client_request_tls(NULL, loop, addr, method, path, content_type, extra_headers,
                                   body, body_len, timeout_ms, cb, ctx, out);
}

int http_client_request_tls(struct st_tls_ctx *tls, uv_loop_t *loop, const char *addr,
                            const char *method, const char *path, const char *content_type,
                            const char *extra_headers, const void *body, size_t body_len,
                            uint32_t timeout_ms, http_client_cb cb, void *ctx,
                            struct http_client **out)
{
    char host[HTTP_CLIENT_HOST_BYTES_MAX];
    uint16_t port;
    if (st_url_hostport_split(addr, host, sizeof host, &port) != 0 || !path || path[0] != '/')
        return ST_EINVAL;
    struct http_client *c = calloc(1, sizeof *c);
    if (!c) return ST_ENOMEM;
    c->loop = loop;
    c->cb = cb;
    c->ctx = ctx;
    c->tls_ctx = tls;
    snprintf(c->host, sizeof c->host, "%s", host);
    if (!extra_headers) extra_headers = "";
    size_t cap =
        strlen(method) + strlen(path) + strlen(addr) + strlen(extra_headers) + 256 + body_len;
    c->req = malloc(cap);
    if (!c->req) {
        free(c);
        return ST_ENOMEM;
    }
    int n = snprintf(c->req, cap,
                     "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s%s%s%sContent-Length: "
                     "%zu\r\n\r\n",
                     method, path, addr, extra_headers, content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "", body_len);
    ST_ASSERT(n > 0 && (size_t)n + body_len < cap);
    if (body_len) memcpy(c->req + n, body, body_len);
    c->req_len = (size_t)n + body_len;
    snprintf(c->port, sizeof c->port, "%u", port);

    if (uv_timer_init(loop, &c->timer) != 0) {
        free(c->req);
        free(c);
        return ST_ENOMEM;
    }
    c->timer.data = c;
    c->timer_open = true;
    uv_timer_start(&c->timer, client_timer_cb, timeout_ms, 0);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->gai.data = c;
    c->gai_pending = true;
    if (uv_getaddrinfo(loop, &c->gai, client_gai_cb, host, c->port, &hints) != 0) {
        c->gai_pending = false;
        c->done = true; /* no callback: the error is returned */
        client_close_handles(c);
        return ST_EINVAL;
    }
    if (out) *out = c;
    return 0;
}

void http_client_abort(struct http_client *c)
{
    if (c->done) return;
    c->done = true;
    if (c->gai_pending) uv_cancel((uv_req_t *)&c->gai);
    client_close_handles(c);
}
