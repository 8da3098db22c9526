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
#include "http/server.h"

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

#define HTTP_PIPELINE_MAX_LIMIT 64u
/* How long a finished connection keeps draining the client's input. */
#define HTTP_LINGER_MS 2000u

enum slot_state {
    SLOT_FREE = 0,
    SLOT_PARSING, /* receiving the request */
    SLOT_HANDLER, /* with the handler */
    SLOT_READY,   /* response in out, waiting for its turn */
    SLOT_WRITING, /* response in a uv_write */
};

struct hdr_span {
    uint32_t name_off, name_len, value_off, value_len;
};

struct http_conn;

struct http_slot {
    struct http_request req; /* first: req <-> slot */
    struct http_conn *conn;
    enum slot_state state;
    int close_after; /* close the connection once this response is written */
    int http10;      /* the request was HTTP/1.0 */
    /* Head: "<url>\0<name>\0<value>\0...", at most head_bytes_max + NULs. */
    char *head;
    uint32_t head_len, head_cap;
    uint32_t head_bytes; /* request line + header bytes received (without our NULs) */
    uint32_t url_len;
    int url_done;
    struct hdr_span *hdrs; /* headers_max entries */
    uint32_t n_hdrs;
    int in_value; /* last header callback was a value */
    uint8_t *body;
    size_t body_len, body_cap;
    char *out; /* serialized response */
    size_t out_len, out_cap;
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    http_parser parser;
    struct http_server *srv;
    struct st_list link;       /* on srv->conns */
    struct st_list dirty_link; /* on srv->dirty while it has responses to flush */
    int handles_open;
    int closing; /* uv_close called */
    int reading;
    int eof;     /* client sent FIN */
    int no_more; /* no further requests are parsed (error, Connection: close) */
    int in_execute;
    int lingering; /* final response sent, FIN sent, discarding input until EOF */
    int writing;
    uint32_t write_slots; /* slots in the in-flight uv_write */
    int err_status;       /* set by a parser callback that rejects the request */
    const char *err_msg;
    char *rbuf;
    size_t rstart, rlen;   /* unparsed bytes: rbuf[rstart, rstart + rlen) */
    struct http_slot *cur; /* slot being parsed, NULL between requests */
    uint64_t cur_start_ms; /* loop time when cur began (request_timeout_ms) */
    uint64_t active_ms;    /* loop time of the last activity (idle_timeout_ms) */
    uint64_t timer_due_ms; /* when the armed timer fires (valid while active) */
    uint32_t head, count;  /* ring */
    uint32_t in_handler;
    /* Sum of out_len over READY and WRITING slots: charged to the server's
     * stats.out_bytes and out_budget; 0 once closing. */
    uint64_t out_bytes;
    int out_paused; /* out_bytes >= conn_out_bytes_max stopped the reading */
    /* Stall stamp (util/outbudget.h): taken when out_bytes leaves 0 and on
     * every sign that the client takes bytes; the smallest is dropped first. */
    uint64_t out_stamp;
    uint64_t out_progress_ms; /* loop time of the same events (idle_timeout_ms) */
    size_t wq_seen;           /* libuv write queue bytes when last looked at */
    struct http_slot slots[];
};

struct http_server {
    uv_loop_t *loop;
    struct http_server_config cfg;
    char host[64];
    uv_tcp_t listener;
    int listening;
    int listener_open;
    uv_idle_t flush_idle; /* flushes dirty connections once per loop iteration */
    int idle_open;
    int idle_active;
    struct st_list dirty; /* connections to flush (http_conn.dirty_link), newest first */
    int closing;
    http_handler_cb handler;
    void *handler_ctx;
    http_server_closed_cb closed_cb;
    void *closed_ctx;
    struct st_list conns;        /* every allocated connection (http_conn.link), newest first */
    uint64_t conns_alive;        /* allocated connections (open or draining) */
    struct st_outbudget *budget; /* cfg.out_budget, registered while the server lives */
    uv_timer_t trim_timer;
    int trim_open;
    uint64_t freed_bytes;  /* large buffers of closed connections freed since the last trim */
    uint64_t last_trim_ms; /* loop time of the last trim */
    int memory_trimmed;    /* last_trim_ms is valid */
    uint16_t port;
    uint64_t accept_warned_ms; /* last "accept failed" trace line (one a second at most) */
    struct http_server_stats stats;
};

static void conn_close(struct http_conn *c);
static void conn_free(struct http_conn *c);
static void dirty_unlink(struct http_conn *c);
static void conn_process(struct http_conn *c);
static void conn_parse_error(struct http_conn *c, enum http_errno e);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static int conn_flush(struct http_conn *c);
static void conn_kick(struct http_conn *c);
static void on_flush_idle(uv_idle_t *h);
static void conn_update_reading(struct http_conn *c);
static void server_maybe_closed(struct http_server *srv);

/* ---------- small helpers ---------- */

static int ascii_casecmp_n(const char *a, size_t alen, const char *b)
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

/* ---------- slots ---------- */

static struct http_slot *slot_of(struct http_request *req)
{
    return (struct http_slot *)(void *)req;
}

/* Returns the bytes of large buffers (above HTTP_BUF_KEEP_BYTES) it
 * released: small ones are reused by the next connections anyway. */
static size_t slot_free_buffers(struct http_slot *s)
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
static struct http_slot *slot_take(struct http_conn *c)
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
            slot_free_buffers(s);
            return NULL;
        }
        s->head_cap = cap;
    }
    c->count++;
    s->state = SLOT_PARSING;
    s->conn = c;
    s->close_after = 0;
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
static void conn_out_stamp(struct http_conn *c)
{
    c->out_progress_ms = uv_now(c->srv->loop);
    if (c->srv->budget) c->out_stamp = st_outbudget_stamp(c->srv->budget);
}

/* libuv reports a write only once all of it went out: a client reading a
 * large batch shows its progress as a shrinking write queue. */
static void conn_out_check_progress(struct http_conn *c)
{
    if (!c->writing) return;
    size_t wq = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (wq < c->wq_seen) conn_out_stamp(c);
    c->wq_seen = wq;
}

static void conn_out_charge(struct http_conn *c, size_t bytes)
{
    if (c->out_bytes == 0) conn_out_stamp(c);
    c->out_bytes += bytes;
    c->srv->stats.out_bytes += bytes;
    if (c->srv->budget) st_outbudget_charge(c->srv->budget, bytes);
}

static void conn_out_release(struct http_conn *c, size_t bytes)
{
    ST_ASSERT(bytes <= c->out_bytes);
    c->out_bytes -= bytes;
    c->srv->stats.out_bytes -= bytes;
    if (c->srv->budget) st_outbudget_release(c->srv->budget, bytes);
}

/* 1 while the connection's queued output keeps it from parsing and reading. */
static int conn_out_full(const struct http_conn *c)
{
    uint64_t max = c->srv->cfg.conn_out_bytes_max;
    return max > 0 && c->out_bytes >= max;
}

/* Releases the head slot after its response was written (or dropped). */
static void slot_release_head(struct http_conn *c)
{
    uint32_t max = c->srv->cfg.pipeline_max;
    struct http_slot *s = &c->slots[c->head];
    ST_ASSERT(c->count > 0 && s->state != SLOT_HANDLER);
    if (s->state == SLOT_READY || s->state == SLOT_WRITING) conn_out_release(c, s->out_len);
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

static int buf_reserve(char **data, size_t *cap, size_t need)
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

static int slot_serialize(struct http_slot *s, int status, const char *content_type,
                          const struct http_header *extra, size_t n_extra, const void *body,
                          size_t body_len)
{
    const struct http_request *req = &s->req;
    int no_body_status = status == 204 || status == 304 || (status >= 100 && status < 200);
    size_t est = 160 + (content_type ? strlen(content_type) : 0);
    for (size_t i = 0; i < n_extra; i++)
        if (extra[i].name && extra[i].value)
            est += strlen(extra[i].name) + strlen(extra[i].value) + 4;
    int send_body = !no_body_status && req->verb != HTTP_VERB_HEAD;
    size_t need = est + (send_body ? body_len : 0);
    if (need > HTTP_BUF_KEEP_BYTES && need > s->out_cap) {
        /* Exactly what is needed: the buffer is released after use, and a
         * doubled one would hold up to twice the queued bytes. */
        char *d = realloc(s->out, need);
        if (!d) return ST_ENOMEM;
        s->out = d;
        s->out_cap = need;
    }
    if (buf_reserve(&s->out, &s->out_cap, need) != 0) return ST_ENOMEM;
    /* Assembled by hand: snprintf's format parsing was most of the cost of
     * a response head (est above bounds every piece). */
    char *p = s->out;
    size_t room = s->out_cap;
    size_t len = put_str(p, "HTTP/1.1 ");
    len += put_u64(p + len, (uint64_t)status);
    p[len++] = ' ';
    len += put_str(p + len, http_status_text(status));
    len += put_str(p + len, "\r\n");
    if (!no_body_status) {
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
        memcpy(p + len, body, body_len);
        len += body_len;
    }
    s->out_len = len;
    return 0;
}

/* Writes a JSON-escaped copy of msg (truncated to fit) into dst. */
static size_t json_escape_small(char *dst, size_t cap, const char *msg)
{
    size_t n = 0;
    for (const char *m = msg; *m && n + 7 < cap; m++) {
        unsigned char ch = (unsigned char)*m;
        if (ch == '"' || ch == '\\') {
            dst[n++] = '\\';
            dst[n++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            n += (size_t)snprintf(dst + n, cap - n, "\\u%04x", ch);
        } else {
            dst[n++] = (char)ch;
        }
    }
    dst[n] = 0;
    return n;
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
        if (c->handles_open == 0 && c->in_handler == 0) conn_free(c); /* the last reference */
        return 0;
    }
    if (c->srv->closing) s->close_after = 1;
    int rc = slot_serialize(s, status, content_type, extra_headers, n_extra, body, body_len);
    s->state = SLOT_READY;
    if (rc != 0) {
        ST_TRACE_WARN("http", "out of memory building a %zu-byte response: closing", body_len);
        s->out_len = 0;
        conn_close(c);
        return rc;
    }
    conn_out_charge(c, s->out_len);
    conn_kick(c);
    /* Over the global bound: the slowest readers go now, before more
     * responses pile up (possibly this connection: req is consumed anyway). */
    if (c->srv->budget && st_outbudget_over(c->srv->budget)) st_outbudget_enforce(c->srv->budget);
    return 0;
}

int http_response_error(struct http_request *req, int status, int code, const char *message)
{
    char esc[512], body[600];
    json_escape_small(esc, sizeof(esc), message ? message : "");
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"code\":%d}", esc, code);
    return http_response_send(req, status, "application/json", NULL, 0, body, (size_t)n);
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
        if (ascii_casecmp_n(s->head + h->name_off, h->name_len, name) == 0) {
            if (len) *len = h->value_len;
            return s->head + h->value_off;
        }
    }
    return NULL;
}

/* ---------- connection lifecycle ---------- */

static void on_trim_timer(uv_timer_t *t)
{
    struct http_server *srv = t->data;
    srv->freed_bytes = 0;
    srv->last_trim_ms = uv_now(srv->loop);
    srv->memory_trimmed = 1;
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
    srv->stats.memory_trims++;
}

/* glibc keeps freed heap pages below the top of the heap resident: after
 * many connections with large queued responses closed, that is most of what
 * they held (the slow-reader finding: all 524 MiB stayed). Past
 * HTTP_TRIM_FREED_BYTES of large buffers released by closing connections, a
 * trim runs HTTP_TRIM_DELAY_MS later, so a burst of closes shares one trim
 * (a walk of the free lists), and at most one per HTTP_TRIM_INTERVAL_MS
 * (connection churn must not turn into trimming all the time). */
static void server_note_freed(struct http_server *srv, size_t bytes)
{
    srv->freed_bytes += bytes;
    if (srv->freed_bytes < HTTP_TRIM_FREED_BYTES || !srv->trim_open || srv->closing ||
        uv_is_active((uv_handle_t *)&srv->trim_timer))
        return;
    uint64_t now = uv_now(srv->loop), delay = HTTP_TRIM_DELAY_MS;
    if (srv->memory_trimmed && srv->last_trim_ms + HTTP_TRIM_INTERVAL_MS > now + delay)
        delay = srv->last_trim_ms + HTTP_TRIM_INTERVAL_MS - now;
    uv_timer_start(&srv->trim_timer, on_trim_timer, delay, 0);
}

static void conn_free(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    dirty_unlink(c);
    st_list_del(&c->link);
    size_t freed = 0;
    for (uint32_t i = 0; i < srv->cfg.pipeline_max; i++)
        freed += slot_free_buffers(&c->slots[i]);
    free(c->rbuf);
    free(c);
    srv->conns_alive--;
    server_note_freed(srv, freed);
    server_maybe_closed(srv);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    ST_ASSERT(c->handles_open > 0);
    if (--c->handles_open > 0) return;
    c->srv->stats.connections--;
    /* Requests still with the handler keep the connection memory alive. */
    for (uint32_t i = 0; i < c->srv->cfg.pipeline_max; i++)
        if (c->slots[i].state != SLOT_HANDLER) c->slots[i].state = SLOT_FREE;
    if (c->in_handler == 0) conn_free(c);
}

static void conn_close(struct http_conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    c->reading = 0;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    /* Queued responses are discarded: their bytes leave the budget and their
     * buffers are freed now, so a drop relieves memory at once rather than
     * in the close callbacks (a burst of completions may come first). Safe
     * for a WRITING batch too: uv_close() has closed the descriptor, and
     * libuv only hands a cancelled write back (UV_ECANCELED), never reading
     * its data again. */
    if (c->out_bytes > 0) {
        size_t freed = 0;
        for (uint32_t i = 0; i < c->srv->cfg.pipeline_max; i++) {
            struct http_slot *s = &c->slots[i];
            if ((s->state != SLOT_READY && s->state != SLOT_WRITING) || !s->out) continue;
            if (s->out_cap > HTTP_BUF_KEEP_BYTES) freed += s->out_cap;
            free(s->out);
            s->out = NULL;
            s->out_cap = 0;
            s->out_len = 0;
        }
        conn_out_release(c, c->out_bytes);
        server_note_freed(c->srv, freed);
    }
}

static void conn_touch(struct http_conn *c);
static void conn_arm(struct http_conn *c);

/* The connection timer: idle_timeout_ms after the last activity, or earlier
 * when a request being received reaches request_timeout_ms. */
static void on_conn_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;
    const struct http_server_config *cfg = &c->srv->cfg;
    if (c->cur && cfg->request_timeout_ms > 0 &&
        uv_now(c->srv->loop) - c->cur_start_ms >= cfg->request_timeout_ms) {
        /* Too slow to send its request (slowloris): 408, then close. */
        c->srv->stats.request_timeouts++;
        c->err_status = 408;
        c->err_msg = "request not received in time";
        conn_parse_error(c, HPE_OK);
        return;
    }
    /* A client that has taken none of its queued responses for the idle
     * timeout has stopped reading: it would hold them (within the bounds)
     * for as long as it keeps the connection open. Only while a write is
     * pending: responses waiting behind a request still with the handler
     * are not the client's doing. */
    if (c->writing && cfg->idle_timeout_ms > 0) {
        conn_out_check_progress(c);
        if (uv_now(c->srv->loop) - c->out_progress_ms >= cfg->idle_timeout_ms) {
            c->srv->stats.stalled_closed++;
            ST_TRACE_INFO("http",
                          "closing a connection that read nothing of its %" PRIu64
                          " queued response bytes for %u ms",
                          c->out_bytes, cfg->idle_timeout_ms);
            conn_close(c);
            return;
        }
    }
    /* Busy: a request is with the handler or a response is queued. Only a
     * connection that is idle, stuck mid-request or not reading (above) is
     * closed. The timer is not re-armed on every activity (conn_touch), so
     * it may fire early: then it is armed again for what is left. */
    uint32_t busy = c->count - (c->cur ? 1u : 0u);
    if (busy > 0 || cfg->idle_timeout_ms == 0) {
        conn_touch(c);
        return;
    }
    if (uv_now(c->srv->loop) - c->active_ms < cfg->idle_timeout_ms) {
        conn_arm(c); /* fired early (see conn_touch) */
        return;
    }
    c->srv->stats.idle_closed++;
    conn_close(c);
}

/* Records activity and makes sure the timer fires no later than the next
 * deadline (idle or request). An armed timer that fires at or before it is
 * left alone: re-arming on every read and write (a timer-heap removal and
 * insertion each) was a visible share of the loop's CPU per request; an
 * early firing re-arms for what is left. */
static void conn_arm(struct http_conn *c)
{
    const struct http_server_config *cfg = &c->srv->cfg;
    if (c->closing || c->lingering) return;
    uint64_t now = uv_now(c->srv->loop);
    uint64_t ms = cfg->idle_timeout_ms;
    if (ms > 0) {
        uint64_t idle_deadline = c->active_ms + ms;
        ms = idle_deadline > now ? idle_deadline - now : 1;
    }
    if (c->cur && cfg->request_timeout_ms > 0) {
        uint64_t deadline = c->cur_start_ms + cfg->request_timeout_ms;
        uint64_t rem = deadline > now ? deadline - now : 0;
        if (ms == 0 || rem < ms) ms = rem;
    }
    if (ms == 0 && cfg->idle_timeout_ms == 0 && !(c->cur && cfg->request_timeout_ms > 0)) {
        uv_timer_stop(&c->timer);
        return;
    }
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due_ms <= now + ms) return;
    c->timer_due_ms = now + ms;
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

static void conn_touch(struct http_conn *c)
{
    c->active_ms = uv_now(c->srv->loop);
    conn_arm(c);
}

static void on_shutdown_done(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;
    if (status < 0 && !c->closing) conn_close(c);
}

static void on_linger_timer(uv_timer_t *t)
{
    conn_close(t->data);
}

/* After the final response of a connection: send FIN, then read and discard
 * what the client still sends (the rest of a rejected body, pipelined requests
 * after "Connection: close") until its EOF or HTTP_LINGER_MS. Closing with
 * unread input would make the kernel send a RST that can destroy the response
 * before the client reads it. */
static void conn_finish(struct http_conn *c)
{
    if (c->closing || c->lingering) return;
    if (c->eof) {
        conn_close(c);
        return;
    }
    c->lingering = 1;
    c->no_more = 1;
    if (!c->in_execute) c->rstart = c->rlen = 0; /* else conn_process drops them (no_more) */
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown_done) != 0) {
        conn_close(c);
        return;
    }
    uint64_t ms = HTTP_LINGER_MS;
    if (c->srv->cfg.idle_timeout_ms > 0 && c->srv->cfg.idle_timeout_ms < ms)
        ms = c->srv->cfg.idle_timeout_ms;
    uv_timer_start(&c->timer, on_linger_timer, ms, 0);
    if (!c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            conn_close(c);
            return;
        }
        c->reading = 1;
    }
}

/* Called after slots were released: finish or close the connection, or
 * resume parsing (which flushes again at its end). */
static void conn_after_release(struct http_conn *c, int finish)
{
    if (c->closing) return;
    if (finish) {
        conn_finish(c);
        return;
    }
    if ((c->eof && c->count == 0) || (c->srv->closing && c->count == 0)) {
        conn_close(c);
        return;
    }
    conn_touch(c);
    conn_process(c);
}

/* A response became ready or a write completed: write what can go. While the
 * parser runs (pipelined requests answered synchronously) nothing is written
 * yet: conn_process flushes once at its end, so those responses leave in one
 * batch. */
static void conn_kick(struct http_conn *c)
{
    if (c->in_execute || c->closing || st_list_linked(&c->dirty_link)) return;
    struct http_server *srv = c->srv;
    st_list_push_front(&srv->dirty, &c->dirty_link);
    if (!srv->idle_active) {
        uv_idle_start(&srv->flush_idle, on_flush_idle);
        srv->idle_active = 1;
    }
}

static void dirty_unlink(struct http_conn *c)
{
    st_list_del(&c->dirty_link); /* harmless when not linked */
}

/* Runs in the idle phase of the loop iteration after responses became ready
 * (an idle handle, unlike a check handle, also keeps the poll from blocking):
 * every connection whose responses became ready (handlers completing in
 * order, writes finishing) writes them now, several per write when pipelined. */
static void on_flush_idle(uv_idle_t *h)
{
    struct http_server *srv = h->data;
    while (!st_list_empty(&srv->dirty)) {
        struct http_conn *c = ST_CONTAINER_OF(srv->dirty.next, struct http_conn, dirty_link);
        dirty_unlink(c);
        if (c->closing) continue;
        int finish = conn_flush(c);
        conn_after_release(c, finish);
    }
    uv_idle_stop(&srv->flush_idle);
    srv->idle_active = 0;
}

static void on_write_done(uv_write_t *w, int status)
{
    struct http_conn *c = w->data;
    c->writing = 0;
    uint32_t n = c->write_slots;
    c->write_slots = 0;
    if (status < 0 || c->closing) {
        conn_close(c);
        return;
    }
    conn_out_stamp(c); /* the client took the whole batch */
    int finish = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct http_slot *s = &c->slots[c->head];
        ST_ASSERT(s->state == SLOT_WRITING);
        finish |= s->close_after;
        slot_release_head(c);
    }
    if (finish) {
        conn_finish(c);
        return;
    }
    conn_kick(c);
}

/* Sends every consecutive READY response at the head of the ring in one
 * write: uv_try_write first, the rest with uv_write. Releases the slots that
 * went out at once. Returns 1 if a close_after response went out (the caller
 * finishes the connection), 0 otherwise. May close the connection on a write
 * error. */
static int conn_flush(struct http_conn *c)
{
    if (c->writing || c->closing) return 0;
    uv_buf_t bufs[HTTP_PIPELINE_MAX_LIMIT];
    uint32_t max = c->srv->cfg.pipeline_max, n = 0;
    for (uint32_t k = 0; k < c->count; k++) {
        struct http_slot *s = &c->slots[(c->head + k) % max];
        if (s->state != SLOT_READY) break;
        bufs[n++] = uv_buf_init(s->out, (unsigned int)s->out_len);
        if (s->close_after) break;
    }
    if (n == 0) return 0;
    c->srv->stats.write_batches++;
    int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w == UV_EAGAIN || w == UV_ENOSYS) w = 0;
    if (w < 0) {
        conn_close(c);
        return 0;
    }
    if (w > 0) conn_out_stamp(c);
    size_t rem = (size_t)w;
    uint32_t done = 0;
    while (done < n && rem >= bufs[done].len) {
        rem -= bufs[done].len;
        done++;
    }
    int finish = 0;
    for (uint32_t i = 0; i < done; i++) {
        finish |= c->slots[c->head].close_after;
        slot_release_head(c);
    }
    if (done == n) return finish;
    ST_ASSERT(!finish); /* close_after ends a batch */
    bufs[done].base += rem;
    bufs[done].len -= rem;
    for (uint32_t k = 0; k < n - done; k++)
        c->slots[(c->head + k) % max].state = SLOT_WRITING;
    c->write_slots = n - done;
    c->writing = 1;
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs + done, n - done, on_write_done);
    if (rc != 0) {
        c->writing = 0;
        conn_close(c);
        return 0;
    }
    c->wq_seen = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    c->out_progress_ms = uv_now(c->srv->loop); /* the stall clock starts with the write */
    return 0;
}

/* ---------- parsing ---------- */

static int reject(struct http_conn *c, int status, const char *msg)
{
    c->err_status = status;
    c->err_msg = msg;
    return -1;
}

static int head_append(struct http_conn *c, struct http_slot *s, const char *at, size_t len,
                       int status_if_full)
{
    /* The NUL terminators have their own reserve in head_cap (2 per header
     * + 1 for the URL + slack), so only received bytes count against the bound. */
    if ((uint64_t)s->head_bytes + len > c->srv->cfg.head_bytes_max)
        return reject(c, status_if_full,
                      status_if_full == 414 ? "request line too long"
                                            : "request headers too large");
    ST_ASSERT((uint64_t)s->head_len + len + 3 <= s->head_cap);
    memcpy(s->head + s->head_len, at, len);
    s->head_len += (uint32_t)len;
    s->head_bytes += (uint32_t)len;
    s->head[s->head_len] = 0; /* every span is NUL-terminated at all times (trailers too) */
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    ST_ASSERT(c->cur == NULL);
    struct http_slot *s = slot_take(c);
    if (!s) return reject(c, 503, "out of memory");
    c->cur = s;
    c->cur_start_ms = uv_now(c->srv->loop);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    int rc = head_append(c, s, at, len, 414);
    if (rc == 0) s->url_len += (uint32_t)len;
    return rc;
}

static void end_url(struct http_slot *s)
{
    if (!s->url_done) {
        s->head[s->head_len++] = 0;
        s->url_done = 1;
    }
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    end_url(s);
    if (s->n_hdrs == 0 || s->in_value) {
        if (s->n_hdrs > 0) s->head[s->head_len++] = 0; /* end of the previous value */
        if (s->n_hdrs == c->srv->cfg.headers_max) return reject(c, 431, "too many request headers");
        struct hdr_span *h = &s->hdrs[s->n_hdrs++];
        h->name_off = s->head_len;
        h->name_len = 0;
        h->value_off = 0;
        h->value_len = 0;
        s->in_value = 0;
    }
    int rc = head_append(c, s, at, len, 431);
    if (rc == 0) s->hdrs[s->n_hdrs - 1].name_len += (uint32_t)len;
    return rc;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    struct hdr_span *h = &s->hdrs[s->n_hdrs - 1];
    if (!s->in_value) {
        s->head[s->head_len++] = 0; /* end of the name */
        h->value_off = s->head_len;
        s->in_value = 1;
    }
    int rc = head_append(c, s, at, len, 431);
    if (rc == 0) h->value_len += (uint32_t)len;
    return rc;
}

static enum http_verb verb_of(unsigned m)
{
    switch (m) {
    case HTTP_GET:
        return HTTP_VERB_GET;
    case HTTP_HEAD:
        return HTTP_VERB_HEAD;
    case HTTP_PUT:
        return HTTP_VERB_PUT;
    case HTTP_POST:
        return HTTP_VERB_POST;
    case HTTP_DELETE:
        return HTTP_VERB_DELETE;
    default:
        return HTTP_VERB_OTHER;
    }
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    struct http_request *req = &s->req;
    end_url(s);
    if (s->n_hdrs > 0 && s->in_value)
        s->head[s->head_len++] = 0;
    else if (s->n_hdrs > 0) { /* a name without value callback: empty value */
        s->head[s->head_len++] = 0;
        s->hdrs[s->n_hdrs - 1].value_off = s->head_len;
        s->head[s->head_len++] = 0;
    }
    req->verb = verb_of(p->method);
    req->method = http_method_str((enum http_method)p->method);
    /* Split the URL: path '?' query '#' fragment. */
    char *url = s->head;
    if (s->url_len == 0 || url[0] != '/')
        return reject(c, 400, "request target must be an absolute path");
    char *hash = memchr(url, '#', s->url_len);
    size_t url_len = hash ? (size_t)(hash - url) : s->url_len;
    if (hash) *hash = 0;
    char *q = memchr(url, '?', url_len);
    req->path = url;
    if (q) {
        *q = 0;
        req->path_len = (size_t)(q - url);
        req->query = q + 1;
        req->query_len = url_len - req->path_len - 1;
    } else {
        req->path_len = url_len;
    }
    for (uint32_t i = 0; i < s->n_hdrs; i++) {
        const struct hdr_span *h = &s->hdrs[i];
        const char *name = s->head + h->name_off;
        if (ascii_casecmp_n(name, h->name_len, "If-Match") == 0) {
            req->if_match = s->head + h->value_off;
            req->if_match_len = h->value_len;
        } else if (ascii_casecmp_n(name, h->name_len, "If-None-Match") == 0) {
            req->if_none_match = s->head + h->value_off;
            req->if_none_match_len = h->value_len;
        }
    }
    if (p->flags & F_CONTENTLENGTH) {
        req->has_content_length = 1;
        req->content_length = p->content_length;
        if (p->content_length > c->srv->cfg.body_bytes_max)
            return reject(c, 413, "request body too large");
        if (p->content_length > 0 &&
            buf_reserve((char **)&s->body, &s->body_cap, (size_t)p->content_length) != 0)
            return reject(c, 503, "out of memory");
    }
    /* Expect: 100-continue, answered only when no earlier response is due
     * (an interim response must not overtake them). */
    size_t elen = 0;
    const char *expect = http_request_header(req, "Expect", &elen);
    if (expect && ascii_casecmp_n(expect, elen, "100-continue") == 0 && c->count == 1 &&
        !c->writing) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)(uintptr_t)cont, sizeof(cont) - 1);
        int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (w != (int)(sizeof(cont) - 1)) return reject(c, 503, "cannot send 100 Continue");
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    if (s->body_len + len > c->srv->cfg.body_bytes_max)
        return reject(c, 413, "request body too large");
    if (buf_reserve((char **)&s->body, &s->body_cap, s->body_len + len) != 0)
        return reject(c, 503, "out of memory");
    memcpy(s->body + s->body_len, at, len);
    s->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_server *srv = c->srv;
    struct http_slot *s = c->cur;
    struct http_request *req = &s->req;
    c->cur = NULL;
    req->body = s->body_len ? s->body : (const uint8_t *)"";
    req->body_len = s->body_len;
    req->keep_alive = http_should_keep_alive(p) && !p->upgrade && !srv->closing;
    s->http10 = p->http_major == 1 && p->http_minor == 0;
    if (!req->keep_alive) {
        s->close_after = 1;
        c->no_more = 1;
    }
    s->state = SLOT_HANDLER;
    c->in_handler++;
    srv->stats.requests++;
    srv->handler(req, srv->handler_ctx);
    /* The handler may have completed it (and even closed the connection). */
    if (c->closing || c->no_more || c->count == srv->cfg.pipeline_max || conn_out_full(c))
        http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* A request the server answers itself (malformed, too large): 4xx, close. */
static void conn_parse_error(struct http_conn *c, enum http_errno e)
{
    int status = c->err_status;
    const char *msg = c->err_msg;
    if (!status) {
        status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
        msg = e == HPE_HEADER_OVERFLOW ? "request headers too large" : http_errno_description(e);
    }
    c->no_more = 1;
    c->srv->stats.requests_bad++;
    struct http_slot *s = c->cur;
    c->cur = NULL;
    if (!s) {
        if (c->count == c->srv->cfg.pipeline_max || !(s = slot_take(c))) {
            conn_close(c);
            return;
        }
    }
    s->close_after = 1;
    s->state = SLOT_HANDLER;
    c->in_handler++;
    ST_TRACE_DEBUG("http", "bad request: %d %s", status, msg);
    http_response_error(&s->req, status, status, msg);
}

/* Parses buffered input into requests (handing each to the handler), then
 * writes the responses that are ready in one batch; repeats while that freed
 * ring slots and input is waiting. Not reentrant: a call from inside (a
 * handler answering synchronously) returns at once and the outer loop
 * picks the work up. */
static void conn_process(struct http_conn *c)
{
    if (c->in_execute) return;
    for (;;) {
        c->in_execute = 1;
        while (c->rlen > 0 && !c->closing && !c->no_more && c->count < c->srv->cfg.pipeline_max &&
               !conn_out_full(c)) {
            if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) http_parser_pause(&c->parser, 0);
            size_t n =
                http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->rstart, c->rlen);
            ST_ASSERT(n <= c->rlen);
            c->rstart += n;
            c->rlen -= n;
            enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
            if (e == HPE_PAUSED) continue;
            if (c->closing) break;
            if (e != HPE_OK) {
                conn_parse_error(c, e);
                break;
            }
            if (c->rlen > 0 && n == 0) { /* no progress without error: defensive */
                conn_parse_error(c, HPE_UNKNOWN);
                break;
            }
        }
        if (c->no_more || c->rlen == 0) {
            c->rstart = 0;
            c->rlen = 0; /* nothing after a final request is ever parsed */
        }
        c->in_execute = 0;
        if (c->closing) return;
        uint32_t before = c->count;
        int finish = conn_flush(c);
        if (c->closing) return;
        if (finish) {
            conn_finish(c);
            return;
        }
        if (c->count < before) {
            if ((c->eof && c->count == 0) || (c->srv->closing && c->count == 0)) {
                conn_close(c);
                return;
            }
            conn_touch(c);
            if (c->rlen > 0 && !c->no_more) continue; /* slots were freed: parse what is waiting */
        }
        break;
    }
    conn_update_reading(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    size_t cap = c->srv->cfg.read_buf_bytes;
    if (!c->rbuf) {
        c->rbuf = malloc(cap);
        if (!c->rbuf) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
    }
    if (c->rstart > 0 && c->rstart + c->rlen == cap) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rlen);
        c->rstart = 0;
    }
    size_t off = c->rstart + c->rlen;
    *buf = uv_buf_init(c->rbuf + off, (unsigned int)(cap - off));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = stream->data;
    if (nread == 0) return;
    if (c->lingering) {
        if (nread < 0) conn_close(c); /* the client's EOF (or an error): done */
        return;                       /* discard */
    }
    if (nread == UV_EOF) {
        c->eof = 1;
        uv_read_stop(stream);
        c->reading = 0;
        if (c->cur && c->cur->state == SLOT_PARSING) {
            /* A partial request: it will never complete. It is the ring's tail. */
            c->cur->state = SLOT_FREE;
            c->count--;
            if (c->count == 0) c->head = 0;
            c->cur = NULL;
        }
        if (c->count == 0) conn_close(c);
        return;
    }
    if (nread < 0) {
        conn_close(c);
        return;
    }
    ST_ASSERT(buf->base == c->rbuf + c->rstart + c->rlen);
    c->rlen += (size_t)nread;
    conn_process(c);
    conn_touch(c); /* after parsing: a request may have begun (its deadline counts) */
}

static void conn_update_reading(struct http_conn *c)
{
    if (c->closing || c->lingering) return;
    int full = conn_out_full(c);
    if (full && !c->out_paused) c->srv->stats.out_paused++;
    c->out_paused = full;
    int want = !c->no_more && !c->eof && c->count < c->srv->cfg.pipeline_max &&
               c->rlen < c->srv->cfg.read_buf_bytes && !full;
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            conn_close(c);
            return;
        }
        c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
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
        conn_out_check_progress(c);
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
    conn_close(c);
}

/* ---------- accepting ---------- */

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
#define REJECT_BODY "{\"error\":\"too many connections\",\"code\":503}"
        static const char resp[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Content-Length: 43\r\nConnection: close\r\n\r\n" REJECT_BODY;
        _Static_assert(sizeof(REJECT_BODY) - 1 == 43, "Content-Length of the 503 body");
#undef REJECT_BODY
        uv_buf_t b = uv_buf_init((char *)(uintptr_t)resp, sizeof(resp) - 1);
        (void)uv_try_write((uv_stream_t *)&r->tcp, &b, 1);
    }
    uv_close((uv_handle_t *)&r->tcp, on_reject_closed);
    srv->stats.connections_rejected++;
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
    if (srv->stats.connections >= srv->cfg.connections_max) {
        reject_connection(srv);
        return;
    }
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
        conn_close(c);
        return;
    }
    srv->stats.connections_accepted++;
    uv_tcp_nodelay(&c->tcp, 1);
    conn_touch(c);
    conn_update_reading(c);
}

/* ---------- server ---------- */

static void on_failed_listener_closed(uv_handle_t *h)
{
    free(h->data);
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

static void server_maybe_closed(struct http_server *srv)
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
    server_maybe_closed(srv);
}

static void on_idle_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    srv->idle_open = 0;
    server_maybe_closed(srv);
}

static void on_trim_closed(uv_handle_t *h)
{
    struct http_server *srv = h->data;
    srv->trim_open = 0;
    server_maybe_closed(srv);
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
    conn_close(ST_CONTAINER_OF(e, struct http_conn, link));
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
    free(srv);
}
