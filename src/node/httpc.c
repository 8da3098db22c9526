#include "node/httpc.h"

#include "node/config.h"
#include "stcache/errors.h"
#include "util/assert.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct node_httpc {
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
    node_httpc_cb cb;
    void *ctx;
    char *req; /* request bytes */
    size_t req_len;
    char *resp; /* response bytes (grows) */
    size_t resp_len, resp_cap;
    char port[8];
};

static void httpc_maybe_free(struct node_httpc *c)
{
    if (c->gai_pending || c->closing > 0 || c->tcp_open || c->timer_open) return;
    free(c->req);
    free(c->resp);
    free(c);
}

static void httpc_closed_cb(uv_handle_t *h)
{
    struct node_httpc *c = h->data;
    c->closing--;
    httpc_maybe_free(c);
}

static void httpc_close_handles(struct node_httpc *c)
{
    if (c->tcp_open) {
        c->tcp_open = false;
        c->closing++;
        uv_close((uv_handle_t *)&c->tcp, httpc_closed_cb);
    }
    if (c->timer_open) {
        c->timer_open = false;
        c->closing++;
        uv_close((uv_handle_t *)&c->timer, httpc_closed_cb);
    }
    httpc_maybe_free(c);
}

static void httpc_finish(struct node_httpc *c, int status, const char *body, size_t body_len)
{
    if (!c->done) {
        c->done = true;
        size_t head_len = body && c->resp ? (size_t)(body - c->resp) - 4 : 0;
        c->cb(c->ctx, status, body ? body : "", body ? body_len : 0, head_len ? c->resp : "",
              head_len);
    }
    httpc_close_handles(c);
}

/* Parses the response so far; returns 1 when complete (status/body set),
 * 0 when more bytes are needed, negative on error. at_eof: the peer closed. */
static int httpc_parse(struct node_httpc *c, bool at_eof, int *status, const char **body,
                       size_t *body_len)
{
    char *end = NULL;
    for (size_t i = 0; i + 3 < c->resp_len; i++) {
        if (memcmp(c->resp + i, "\r\n\r\n", 4) == 0) {
            end = c->resp + i;
            break;
        }
    }
    if (!end) return at_eof ? ST_EPROTO : 0;
    size_t head_len = (size_t)(end - c->resp);
    if (head_len < 12 || memcmp(c->resp, "HTTP/1.", 7) != 0) return ST_EPROTO;
    int st = atoi(c->resp + 9);
    if (st < 100 || st > 999) return ST_EPROTO;
    long long clen = -1;
    const char *p = c->resp;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        if ((size_t)(nl - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = atoll(p + 15);
        if ((size_t)(nl - p) > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0)
            return ST_EPROTO;
        p = nl + 1;
    }
    size_t body_off = head_len + 4;
    size_t have = c->resp_len - body_off;
    if (clen >= 0) {
        if ((unsigned long long)clen > NODE_HTTPC_BODY_MAX) return ST_ETOOBIG;
        if (have < (size_t)clen) return at_eof ? ST_EPROTO : 0;
        have = (size_t)clen;
    } else if (!at_eof) {
        return 0;
    }
    *status = st;
    *body = c->resp + body_off;
    *body_len = have;
    c->resp[body_off + have] = '\0'; /* room reserved by the reader */
    return 1;
}

static void httpc_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct node_httpc *c = h->data;
    (void)suggested;
    if (c->resp_cap - c->resp_len < 4096 + 1) {
        size_t limit = NODE_HTTPC_BODY_MAX + 64 * 1024; /* body + head */
        size_t cap = c->resp_cap ? c->resp_cap * 2 : 8192;
        if (cap > limit) cap = limit;
        if (cap - c->resp_len < 4096 + 1) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        char *p = realloc(c->resp, cap);
        if (!p) {
            buf->base = NULL;
            buf->len = 0;
            return;
        }
        c->resp = p;
        c->resp_cap = cap;
    }
    buf->base = c->resp + c->resp_len;
    buf->len = c->resp_cap - c->resp_len - 1; /* keep one byte for the NUL */
}

static void httpc_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct node_httpc *c = s->data;
    (void)buf;
    if (c->done) return;
    if (nread == UV_ENOBUFS) {
        httpc_finish(c, ST_ETOOBIG, NULL, 0);
        return;
    }
    bool eof = nread < 0;
    if (nread > 0) c->resp_len += (size_t)nread;
    if (nread == 0) return;
    int status = 0;
    const char *body = NULL;
    size_t body_len = 0;
    int rc = c->resp ? httpc_parse(c, eof, &status, &body, &body_len) : ST_ECONNECTION;
    if (rc == 1)
        httpc_finish(c, status, body, body_len);
    else if (rc < 0)
        httpc_finish(c, eof && rc == ST_EPROTO && c->resp_len == 0 ? ST_ECONNECTION : rc, NULL, 0);
}

static void httpc_write_cb(uv_write_t *w, int status)
{
    struct node_httpc *c = w->data;
    if (c->done) return;
    if (status < 0) {
        httpc_finish(c, ST_ECONNECTION, NULL, 0);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, httpc_alloc_cb, httpc_read_cb) != 0)
        httpc_finish(c, ST_ECONNECTION, NULL, 0);
}

static void httpc_connect_cb(uv_connect_t *req, int status)
{
    struct node_httpc *c = req->data;
    if (c->done) return;
    if (status < 0) {
        httpc_finish(c, ST_ECONNECTION, NULL, 0);
        return;
    }
    uv_buf_t b = uv_buf_init(c->req, (unsigned)c->req_len);
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, httpc_write_cb) != 0)
        httpc_finish(c, ST_ECONNECTION, NULL, 0);
}

static void httpc_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct node_httpc *c = req->data;
    c->gai_pending = false;
    if (c->done || status < 0 || !res) {
        if (res) uv_freeaddrinfo(res);
        if (!c->done)
            httpc_finish(c, ST_ECONNECTION, NULL, 0);
        else
            httpc_maybe_free(c);
        return;
    }
    if (uv_tcp_init(c->loop, &c->tcp) != 0) {
        uv_freeaddrinfo(res);
        httpc_finish(c, ST_ECONNECTION, NULL, 0);
        return;
    }
    c->tcp.data = c;
    c->tcp_open = true;
    c->connect.data = c;
    int rc = uv_tcp_connect(&c->connect, &c->tcp, res->ai_addr, httpc_connect_cb);
    uv_freeaddrinfo(res);
    if (rc != 0) httpc_finish(c, ST_ECONNECTION, NULL, 0);
}

static void httpc_timer_cb(uv_timer_t *t)
{
    struct node_httpc *c = t->data;
    httpc_finish(c, ST_ETIMEDOUT, NULL, 0);
}

int node_httpc_request(uv_loop_t *loop, const char *addr, const char *method, const char *path,
                       const char *content_type, const char *extra_headers, const void *body,
                       size_t body_len, uint32_t timeout_ms, node_httpc_cb cb, void *ctx,
                       struct node_httpc **out)
{
    char host[NODE_ADDR_MAX];
    uint16_t port;
    if (node_addr_split(addr, host, sizeof host, &port) != 0 || !path || path[0] != '/')
        return ST_EINVAL;
    struct node_httpc *c = calloc(1, sizeof *c);
    if (!c) return ST_ENOMEM;
    c->loop = loop;
    c->cb = cb;
    c->ctx = ctx;
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
    uv_timer_start(&c->timer, httpc_timer_cb, timeout_ms, 0);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->gai.data = c;
    c->gai_pending = true;
    if (uv_getaddrinfo(loop, &c->gai, httpc_gai_cb, host, c->port, &hints) != 0) {
        c->gai_pending = false;
        c->done = true; /* no callback: the error is returned */
        httpc_close_handles(c);
        return ST_EINVAL;
    }
    if (out) *out = c;
    return 0;
}

void node_httpc_abort(struct node_httpc *c)
{
    if (c->done) return;
    c->done = true;
    if (c->gai_pending) uv_cancel((uv_req_t *)&c->gai);
    httpc_close_handles(c);
}
