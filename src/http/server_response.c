/* HTTP server: the ring of request slots and response serialization. */
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
#include "util/json.h"
#include "util/list.h"
#include "util/outbudget.h"
#include "util/trace.h"

/* ---------- slots ---------- */

static struct http_slot *slot_of(struct http_request *req)
{
    return (struct http_slot *)(void *)req;
}

/* Returns the bytes of large buffers (above HTTP_BUF_KEEP_BYTES) it
 * released: small ones are reused by the next connections anyway. */
size_t http_slot_free_buffers(struct http_slot *s)
{
    size_t freed = (s->body_cap > HTTP_BUF_KEEP_BYTES ? s->body_cap : 0) +
                   (s->out_cap > HTTP_BUF_KEEP_BYTES ? s->out_cap : 0);
    free(s->head);
    free(s->hdrs);
    free(s->body);
    free(s->out);
    s->head = NULL;
    s->hdrs = NULL;
    s->body = NULL;
    s->out = NULL;
    s->head_cap = 0;
    s->body_cap = s->out_cap = 0;
    return freed;
}

/* Takes the next ring slot for a new request; the ring must not be full. */
struct http_slot *http_slot_take(struct http_conn *c)
{
    const struct http_server_config *cfg = &c->srv->cfg;
    ST_ASSERT(c->count < cfg->pipeline_max);
    struct http_slot *s = &c->slots[(c->head + c->count) % cfg->pipeline_max];
    ST_ASSERT(s->state == SLOT_FREE);
    s->conn = c;
    if (!s->head) {
        uint32_t cap = cfg->head_bytes_max + 2 * cfg->headers_max + 8;
        s->head = malloc(cap);
        s->hdrs = malloc((size_t)cfg->headers_max * sizeof(*s->hdrs));
        if (!s->head || !s->hdrs) {
            http_slot_free_buffers(s);
            return NULL;
        }
        s->head_cap = cap;
    }
    c->count++;
    s->state = SLOT_PARSING;
    s->conn = c;
    s->close_after = 0;
    s->streaming = 0;
    s->chunked = 0;
    s->head_len = 0;
    s->head_bytes = 0;
    s->url_len = 0;
    s->url_done = 0;
    s->n_hdrs = 0;
    s->in_value = 0;
    s->body_len = 0;
    s->out_len = 0;
    memset(&s->req, 0, sizeof(s->req));
    s->req.server = c->srv;
    s->req.method = "";
    s->req.path = "";
    s->req.body = (const uint8_t *)"";
    return s;
}

/* Output accounting (server.h, "Output bounds"). */
/* The client took bytes (or its queue just began). */
void http_conn_out_stamp(struct http_conn *c)
{
    c->out_progress_ms = uv_now(c->srv->loop);
    if (c->srv->budget) c->out_stamp = st_outbudget_stamp(c->srv->budget);
}

/* libuv reports a write only once all of it went out: a client reading a
 * large batch shows its progress as a shrinking write queue. */
void http_conn_out_check_progress(struct http_conn *c)
{
    if (!c->writing) return;
    size_t wq = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (wq < c->wq_seen) http_conn_out_stamp(c);
    c->wq_seen = wq;
}

static void conn_out_charge(struct http_conn *c, size_t bytes)
{
    if (c->out_bytes == 0) http_conn_out_stamp(c);
    c->out_bytes += bytes;
    c->srv->stats.out_bytes += bytes;
    if (c->srv->budget) st_outbudget_charge(c->srv->budget, bytes);
}

void http_conn_out_release(struct http_conn *c, size_t bytes)
{
    ST_ASSERT(bytes <= c->out_bytes);
    c->out_bytes -= bytes;
    c->srv->stats.out_bytes -= bytes;
    if (c->srv->budget) st_outbudget_release(c->srv->budget, bytes);
}

/* 1 while the connection's queued output keeps it from parsing and reading. */
int http_conn_out_full(const struct http_conn *c)
{
    uint64_t max = c->srv->cfg.conn_out_bytes_max;
    return max > 0 && c->out_bytes >= max;
}

/* Releases the head slot after its response was written (or dropped). */
void http_slot_release_head(struct http_conn *c)
{
    uint32_t max = c->srv->cfg.pipeline_max;
    struct http_slot *s = &c->slots[c->head];
    ST_ASSERT(c->count > 0 && s->state != SLOT_HANDLER);
    if (s->state == SLOT_READY || s->state == SLOT_WRITING) http_conn_out_release(c, s->out_len);
    if (s->streaming) {
        /* A piece of a stream went out: the slot stays at the head, its
         * producer is asked for the next one. */
        s->state = SLOT_STREAM;
        s->out_len = 0;
        s->stream_more(&s->req, s->stream_ctx);
        return;
    }
    s->state = SLOT_FREE;
    if (s->body_cap > HTTP_BUF_KEEP_BYTES) {
        free(s->body);
        s->body = NULL;
        s->body_cap = 0;
    }
    if (s->out_cap > HTTP_BUF_KEEP_BYTES) {
        free(s->out);
        s->out = NULL;
        s->out_cap = 0;
    }
    c->head = (c->head + 1) % max;
    c->count--;
    if (c->count == 0) c->head = 0; /* sequential keep-alive requests reuse slot 0's buffers */
}

int http_buf_reserve(char **data, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < need)
        ncap *= 2;
    char *d = realloc(*data, ncap);
    if (!d) return ST_ENOMEM;
    *data = d;
    *cap = ncap;
    return 0;
}

/* ---------- response serialization ---------- */

static int header_ok(const char *s, int is_name)
{
    if (!s || (is_name && !*s)) return 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\r' || ch == '\n' || ch == 0x7f || (ch < 0x20 && ch != '\t')) return 0;
        if (is_name && (ch == ':' || ch == ' ' || ch == '\t')) return 0;
    }
    return 1;
}

static size_t put_str(char *p, const char *str)
{
    size_t n = strlen(str);
    memcpy(p, str, n);
    return n;
}

static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

/* body NULL with body_len > 0: the head of a streaming response (the body
 * follows in pieces). */
static int slot_serialize(struct http_slot *s, int status, const char *content_type,
                          const struct http_header *extra, size_t n_extra, const void *body,
                          uint64_t body_len)
{
    const struct http_request *req = &s->req;
    int no_body_status = status == 204 || status == 304 || (status >= 100 && status < 200);
    size_t est = 160 + (content_type ? strlen(content_type) : 0);
    for (size_t i = 0; i < n_extra; i++)
        if (extra[i].name && extra[i].value)
            est += strlen(extra[i].name) + strlen(extra[i].value) + 4;
    int send_body = !no_body_status && req->verb != HTTP_VERB_HEAD && body != NULL;
    size_t need = est + (send_body ? (size_t)body_len : 0);
    if (need > HTTP_BUF_KEEP_BYTES && need > s->out_cap) {
        /* Exactly what is needed: the buffer is released after use, and a
         * doubled one would hold up to twice the queued bytes. */
        char *d = realloc(s->out, need);
        if (!d) return ST_ENOMEM;
        s->out = d;
        s->out_cap = need;
    }
    if (http_buf_reserve(&s->out, &s->out_cap, need) != 0) return ST_ENOMEM;
    /* Assembled by hand: snprintf's format parsing was most of the cost of
     * a response head (est above bounds every piece). */
    char *p = s->out;
    size_t room = s->out_cap;
    size_t len = put_str(p, "HTTP/1.1 ");
    len += put_u64(p + len, (uint64_t)status);
    p[len++] = ' ';
    len += put_str(p + len, http_status_text(status));
    len += put_str(p + len, "\r\n");
    if (!no_body_status && s->chunked) {
        len += put_str(p + len, "Transfer-Encoding: chunked\r\n");
    } else if (!no_body_status) {
        len += put_str(p + len, "Content-Length: ");
        len += put_u64(p + len, body_len);
        len += put_str(p + len, "\r\n");
    }
    if (content_type && header_ok(content_type, 0)) {
        len += put_str(p + len, "Content-Type: ");
        len += put_str(p + len, content_type);
        len += put_str(p + len, "\r\n");
    }
    for (size_t i = 0; i < n_extra; i++) {
        if (!extra[i].name || !extra[i].value || !header_ok(extra[i].name, 1) ||
            !header_ok(extra[i].value, 0))
            continue; /* skipped as in the estimate; never let a handler inject a line */
        len += put_str(p + len, extra[i].name);
        len += put_str(p + len, ": ");
        len += put_str(p + len, extra[i].value);
        len += put_str(p + len, "\r\n");
    }
    if (s->close_after)
        len += put_str(p + len, "Connection: close\r\n");
    else if (s->http10)
        len += put_str(p + len, "Connection: keep-alive\r\n");
    len += put_str(p + len, "\r\n");
    ST_ASSERT(len < room);
    if (send_body && body_len) {
        ST_ASSERT(len + body_len <= room);
        memcpy(p + len, body, (size_t)body_len);
        len += (size_t)body_len;
    }
    s->out_len = len;
    return 0;
}

int http_response_send(struct http_request *req, int status, const char *content_type,
                       const struct http_header *extra_headers, size_t n_extra, const void *body,
                       size_t body_len)
{
    struct http_slot *s = slot_of(req);
    struct http_conn *c = s->conn;
    ST_ASSERT(s->state == SLOT_HANDLER);
    ST_ASSERT(status >= 200 && status <= 999); /* final responses only */
    ST_ASSERT(c->in_handler > 0);
    c->in_handler--;
    if (c->closing) {
        /* The client is gone: discard. The ring no longer matters. */
        s->state = SLOT_FREE;
        c->srv->stats.responses_discarded++;
        if (c->handles_open == 0 && c->in_handler == 0) http_conn_free(c); /* the last reference */
        return 0;
    }
    if (c->srv->closing) s->close_after = 1;
    int rc = slot_serialize(s, status, content_type, extra_headers, n_extra, body, body_len);
    s->state = SLOT_READY;
    if (rc != 0) {
        ST_TRACE_WARN("http", "out of memory building a %zu-byte response: closing", body_len);
        s->out_len = 0;
        http_conn_close(c);
        return rc;
    }
    conn_out_charge(c, s->out_len);
    http_conn_kick(c);
    /* Over the global bound: the slowest readers go now, before more
     * responses pile up (possibly this connection: req is consumed anyway). */
    if (c->srv->budget && st_outbudget_over(c->srv->budget)) st_outbudget_enforce(c->srv->budget);
    return 0;
}

/* 1 when writing s completes its response (the slot is then released): a
 * stream piece that is not the last keeps the slot and the connection. */
int http_slot_done(const struct http_slot *s)
{
    return !s->streaming;
}

/* The producer gave its last piece or gave up: the request leaves it. */
static void stream_consumed(struct http_slot *s)
{
    struct http_conn *c = s->conn;
    ST_ASSERT(s->streaming && c->in_handler > 0);
    s->streaming = 0;
    c->in_handler--;
}

/* The client of c is gone: every producer with a piece queued (now dropped)
 * is told, so that it stops (called by http_conn_close). */
void http_conn_streams_orphan(struct http_conn *c)
{
    for (uint32_t i = 0; i < c->srv->cfg.pipeline_max; i++) {
        struct http_slot *s = &c->slots[i];
        if (!s->streaming || s->state == SLOT_STREAM) continue;
        s->state = SLOT_STREAM;
        s->out_len = 0;
        s->stream_more(&s->req, s->stream_ctx);
    }
}

/* Completes a streaming request whose connection is closing. */
static void stream_discard(struct http_slot *s)
{
    struct http_conn *c = s->conn;
    stream_consumed(s);
    s->state = SLOT_FREE;
    c->srv->stats.responses_discarded++;
    if (c->handles_open == 0 && c->in_handler == 0) http_conn_free(c); /* the last reference */
}

int http_response_stream_begin(struct http_request *req, int status, const char *content_type,
                               const struct http_header *extra_headers, size_t n_extra,
                               uint64_t content_length, http_stream_more_cb more, void *ctx)
{
    struct http_slot *s = slot_of(req);
    struct http_conn *c = s->conn;
    ST_ASSERT(s->state == SLOT_HANDLER && more != NULL);
    ST_ASSERT(status >= 200 && status <= 999 && status != 204 && status != 304);
    if (content_length == 0 || req->verb == HTTP_VERB_HEAD || c->closing)
        return http_response_send(req, status, content_type, extra_headers, n_extra, NULL,
                                  content_length == HTTP_STREAM_CHUNKED ? 0 : content_length);
    s->close_after = 1;
    c->no_more = 1;
    s->chunked = content_length == HTTP_STREAM_CHUNKED;
    int rc = slot_serialize(s, status, content_type, extra_headers, n_extra, NULL, content_length);
    ST_ASSERT(c->in_handler > 0);
    s->state = SLOT_READY;
    if (rc != 0) {
        c->in_handler--;
        s->out_len = 0;
        http_conn_close(c);
        return rc;
    }
    s->streaming = 1;
    s->stream_left = content_length;
    s->stream_more = more;
    s->stream_ctx = ctx;
    conn_out_charge(c, s->out_len);
    http_conn_kick(c);
    return 0;
}

/* A chunk: its size in hex, CRLF, the bytes, CRLF (RFC 9112 7.1). */
#define CHUNK_FRAME_BYTES 20u

int http_response_stream_write(struct http_request *req, const void *data, size_t len)
{
    struct http_slot *s = slot_of(req);
    struct http_conn *c = s->conn;
    ST_ASSERT(s->streaming && s->state == SLOT_STREAM);
    ST_ASSERT(len > 0 && len <= s->stream_left);
    if (c->closing) {
        stream_discard(s);
        return ST_ECONNECTION;
    }
    if (s->chunked) {
        if (http_buf_reserve(&s->out, &s->out_cap, len + CHUNK_FRAME_BYTES) != 0) {
            ST_TRACE_WARN("http", "out of memory for a %zu-byte chunk: closing", len);
            stream_consumed(s);
            s->state = SLOT_READY; /* dropped by the close */
            http_conn_close(c);
            return ST_ENOMEM;
        }
        int n = snprintf(s->out, CHUNK_FRAME_BYTES, "%zx\r\n", len);
        memcpy(s->out + n, data, len);
        memcpy(s->out + (size_t)n + len, "\r\n", 2);
        s->out_len = (size_t)n + len + 2;
        s->state = SLOT_READY;
        conn_out_charge(c, s->out_len);
        http_conn_kick(c);
        if (c->srv->budget && st_outbudget_over(c->srv->budget))
            st_outbudget_enforce(c->srv->budget);
        return 0;
    }
    if (http_buf_reserve(&s->out, &s->out_cap, len) != 0) {
        ST_TRACE_WARN("http", "out of memory for a %zu-byte piece of a response: closing", len);
        stream_consumed(s);
        s->state = SLOT_READY; /* dropped by the close */
        http_conn_close(c);
        return ST_ENOMEM;
    }
    memcpy(s->out, data, len);
    s->out_len = len;
    s->stream_left -= len;
    s->state = SLOT_READY;
    int done = s->stream_left == 0;
    if (done) stream_consumed(s); /* released as an ordinary response once written */
    conn_out_charge(c, len);
    http_conn_kick(c);
    if (c->srv->budget && st_outbudget_over(c->srv->budget)) st_outbudget_enforce(c->srv->budget);
    return done;
}

void http_response_stream_abort(struct http_request *req)
{
    struct http_slot *s = slot_of(req);
    struct http_conn *c = s->conn;
    ST_ASSERT(s->streaming && s->state == SLOT_STREAM);
    if (c->closing) {
        stream_discard(s);
        return;
    }
    stream_consumed(s);
    s->state = SLOT_READY; /* an empty piece, dropped by the close */
    http_conn_close(c);
}

int http_response_stream_end(struct http_request *req)
{
    struct http_slot *s = slot_of(req);
    struct http_conn *c = s->conn;
    ST_ASSERT(s->streaming && s->chunked && s->state == SLOT_STREAM);
    if (c->closing) {
        stream_discard(s);
        return ST_ECONNECTION;
    }
    if (http_buf_reserve(&s->out, &s->out_cap, 8) != 0) {
        stream_consumed(s);
        s->state = SLOT_READY;
        http_conn_close(c);
        return ST_ENOMEM;
    }
    memcpy(s->out, "0\r\n\r\n", 5);
    s->out_len = 5;
    s->state = SLOT_READY;
    stream_consumed(s); /* released as an ordinary response once written */
    conn_out_charge(c, s->out_len);
    http_conn_kick(c);
    return 1;
}

int http_response_error(struct http_request *req, int status, int code, const char *message)
{
    /* Built in the server's reused buffer: no allocation once it is warm. */
    struct st_membuf *b = &slot_of(req)->conn->srv->err_body;
    struct st_json w;
    st_membuf_reset(b);
    st_json_init(&w, b);
    st_json_object_begin(&w);
    st_json_key(&w, "error");
    st_json_cstr(&w, message ? message : "");
    st_json_key(&w, "code");
    st_json_int(&w, code);
    st_json_object_end(&w);
    if (st_json_finish(&w) != 0) /* out of memory: the status alone still answers */
        return http_response_send(req, status, "application/json", NULL, 0, "{}", 2);
    return http_response_send(req, status, "application/json", NULL, 0, b->data, b->len);
}

int http_request_orphaned(const struct http_request *req)
{
    const struct http_slot *s = (const struct http_slot *)(const void *)req;
    return s->conn->closing;
}

const char *http_request_header(const struct http_request *req, const char *name, size_t *len)
{
    const struct http_slot *s = (const struct http_slot *)(const void *)req;
    for (uint32_t i = 0; i < s->n_hdrs; i++) {
        const struct hdr_span *h = &s->hdrs[i];
        if (http_ascii_casecmp_n(s->head + h->name_off, h->name_len, name) == 0) {
            if (len) *len = h->value_len;
            return s->head + h->value_off;
        }
    }
    return NULL;
}
