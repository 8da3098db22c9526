/* Test fixture for the HTTP server: the server runs in its own uv loop on a
 * thread; the test thread talks to it with blocking sockets and runs code on
 * the loop thread with fx_run(). Waiting is always for an event (a response,
 * EOF, a predicate re-evaluated at every loop iteration), never a sleep.
 * Socket receive timeouts (10 s) only turn a hang into a failure. */
#ifndef HTTP_TEST_FIXTURE_H
#define HTTP_TEST_FIXTURE_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "http/server.h"
#include "stcache/errors.h"
#include "util/crc32c.h"

enum fx_mode {
    FX_ECHO = 0,      /* answer at once */
    FX_BATCH_REVERSE, /* hold until `batch` requests, then answer newest first */
    FX_DEFER,         /* answer everything held on the next loop iteration, newest first */
    FX_HOLD,          /* hold until the test releases them */
    FX_DEFER_FIFO,    /* like FX_DEFER, oldest first (in order, like commits) */
};

#define FX_HELD_MAX 4096

struct fx {
    uv_loop_t loop;
    uv_async_t async;
    uv_prepare_t prep;
    uv_timer_t defer_timer;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct http_server_config cfg;
    struct http_server *srv;
    uint16_t port;
    int ready;
    int create_rc;
    /* one command at a time from the test thread */
    void (*cmd)(struct fx *, void *);
    void *cmd_arg;
    int cmd_done;
    /* a predicate evaluated at every loop iteration */
    int (*pred)(struct fx *, void *);
    void *pred_arg;
    int pred_true;
    int closed;
    /* handler state: loop thread only (read by the test through fx_run) */
    enum fx_mode mode;
    int batch;
    struct http_request *held[FX_HELD_MAX];
    int n_held;
    int handled;
    int send_rc_last;
    /* "/stream?N&A": a streaming response of N bytes (FX_STREAM_PIECE per
     * piece, each made on a later loop iteration), aborted after A bytes
     * when A > 0. Loop thread only. */
    uv_timer_t stream_timer;
    struct http_request *stream_req;
    uint64_t stream_total, stream_sent, stream_abort_at;
    int stream_pieces, stream_orphaned, stream_finished;
    uint64_t stream_out_bytes_max; /* largest stats.out_bytes seen when asked for a piece */
};

#define FX_STREAM_PIECE (64u * 1024u)

/* Waits on f->cv (f->mu held). A hang becomes a failure after 60 s: this
 * bound is a safety net, never the synchronisation itself. */
static inline void fx_cond_wait(struct fx *f)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    if (pthread_cond_timedwait(&f->cv, &f->mu, &ts) == ETIMEDOUT) {
        fprintf(stderr, "fixture: event not seen within 60 s\n");
        abort();
    }
}

static inline uint8_t fx_stream_byte(uint64_t off)
{
    return (uint8_t)(off * 131u + off / 7919u);
}

static inline void fx_stream_piece(uv_timer_t *t)
{
    struct fx *f = t->data;
    struct http_request *req = f->stream_req;
    if (f->stream_abort_at && f->stream_sent >= f->stream_abort_at) {
        f->stream_req = NULL;
        f->stream_finished = 1;
        http_response_stream_abort(req);
        return;
    }
    static uint8_t piece[FX_STREAM_PIECE];
    uint64_t left = f->stream_total - f->stream_sent;
    size_t n = left < FX_STREAM_PIECE ? (size_t)left : FX_STREAM_PIECE;
    for (size_t i = 0; i < n; i++)
        piece[i] = fx_stream_byte(f->stream_sent + i);
    f->stream_sent += n;
    f->stream_pieces++;
    int rc = http_response_stream_write(req, piece, n);
    if (rc != 0) {
        f->stream_req = NULL;
        f->stream_finished = 1;
        f->send_rc_last = rc < 0 ? rc : 0;
    }
}

static inline void fx_stream_more(struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    struct http_server_stats st;
    http_server_stats(f->srv, &st);
    if (st.out_bytes > f->stream_out_bytes_max) f->stream_out_bytes_max = st.out_bytes;
    if (http_request_orphaned(req)) {
        f->stream_orphaned = 1;
        f->stream_req = NULL;
        f->stream_finished = 1;
        uv_timer_stop(&f->stream_timer);
        http_response_stream_abort(req);
        return;
    }
    uv_timer_start(&f->stream_timer, fx_stream_piece, 0, 0);
}

static inline void fx_answer(struct fx *f, struct http_request *req)
{
    char body[512];
    const struct http_request *r = req;
    if (strcmp(r->path, "/big") == 0 || strcmp(r->path, "/huge") == 0) {
        size_t n = strcmp(r->path, "/big") == 0 ? 3u * 1024u * 1024u + 17u : 32u * 1024u * 1024u;
        char *big = malloc(n);
        for (size_t i = 0; i < n; i++)
            big[i] = (char)('a' + i % 23);
        f->send_rc_last = http_response_send(req, 200, "application/octet-stream", NULL, 0, big, n);
        free(big);
        return;
    }
    if (strcmp(r->path, "/stream") == 0) {
        uint64_t total = 0, abort_at = 0;
        if (r->query) {
            char *end;
            total = strtoull(r->query, &end, 10);
            if (*end == '&') abort_at = strtoull(end + 1, NULL, 10);
        }
        f->stream_req = req;
        f->stream_total = total;
        f->stream_sent = 0;
        f->stream_abort_at = abort_at;
        f->stream_pieces = f->stream_orphaned = f->stream_finished = 0;
        f->send_rc_last = http_response_stream_begin(req, 200, "application/octet-stream", NULL, 0,
                                                     total, fx_stream_more, f);
        if (total == 0) f->stream_finished = 1;
        return;
    }
    if (strcmp(r->path, "/etag") == 0) {
        const struct http_header hs[] = {{"ETag", "\"42\""},
                                         {"X-Evil", "a\r\nInjected: yes"},
                                         {"Bad Name", "v"},
                                         {"X-Ok", "fine"}};
        f->send_rc_last = http_response_send(req, 201, "text/plain", hs, 4, "made", 4);
        return;
    }
    if (strcmp(r->path, "/user") == 0) { /* the verified client certificate's name */
        const char *u = r->tls_user ? r->tls_user : "-";
        f->send_rc_last = http_response_send(req, 200, "text/plain", NULL, 0, u, strlen(u));
        return;
    }
    if (strcmp(r->path, "/error") == 0) {
        f->send_rc_last = http_response_error(req, 404, -8, "no \"such\" key\n");
        return;
    }
    size_t ka = 0;
    const char *xa = http_request_header(req, "x-any", &ka);
    int n = snprintf(body, sizeof(body), "%s %s q=%s im=%s inm=%s len=%zu crc=%08x ka=%d xa=%s",
                     r->method, r->path, r->query ? r->query : "-", r->if_match ? r->if_match : "-",
                     r->if_none_match ? r->if_none_match : "-", r->body_len,
                     st_crc32c(0, r->body, r->body_len), r->keep_alive, xa ? xa : "-");
    f->send_rc_last = http_response_send(req, 200, "text/plain", NULL, 0, body, (size_t)n);
}

static inline void fx_answer_held_reverse(struct fx *f)
{
    while (f->n_held > 0)
        fx_answer(f, f->held[--f->n_held]);
}

static inline void fx_defer_cb(uv_timer_t *t)
{
    struct fx *f = t->data;
    if (f->mode == FX_DEFER_FIFO) {
        for (int i = 0; i < f->n_held; i++)
            fx_answer(f, f->held[i]);
        f->n_held = 0;
    } else {
        fx_answer_held_reverse(f);
    }
}

static inline void fx_handler(struct http_request *req, void *ctx)
{
    struct fx *f = ctx;
    f->handled++;
    if (f->mode != FX_ECHO && f->n_held == FX_HELD_MAX) {
        fprintf(stderr, "fixture: more than %d requests held\n", FX_HELD_MAX);
        abort();
    }
    switch (f->mode) {
    case FX_ECHO:
        fx_answer(f, req);
        break;
    case FX_BATCH_REVERSE:
        f->held[f->n_held++] = req;
        if (f->n_held == f->batch) fx_answer_held_reverse(f);
        break;
    case FX_DEFER:
    case FX_DEFER_FIFO:
        f->held[f->n_held++] = req;
        uv_timer_start(&f->defer_timer, fx_defer_cb, 0, 0);
        break;
    case FX_HOLD:
        f->held[f->n_held++] = req;
        break;
    }
}

static inline void fx_on_async(uv_async_t *a)
{
    struct fx *f = a->data;
    pthread_mutex_lock(&f->mu);
    void (*cmd)(struct fx *, void *) = f->cmd;
    void *arg = f->cmd_arg;
    pthread_mutex_unlock(&f->mu);
    if (cmd && !f->cmd_done) {
        cmd(f, arg);
        pthread_mutex_lock(&f->mu);
        f->cmd = NULL;
        f->cmd_done = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
    }
}

static inline void fx_on_prepare(uv_prepare_t *p)
{
    struct fx *f = p->data;
    /* pred and pred_arg are set by the test thread (fx_wait): read them under
     * the mutex; the predicate itself runs here, on the loop thread. */
    pthread_mutex_lock(&f->mu);
    int (*pred)(struct fx *, void *) = f->pred_true ? NULL : f->pred;
    void *pred_arg = f->pred_arg;
    pthread_mutex_unlock(&f->mu);
    if (pred && pred(f, pred_arg)) {
        pthread_mutex_lock(&f->mu);
        f->pred_true = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
    }
}

static inline void fx_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static inline void fx_server_closed(struct http_server *srv, void *ctx)
{
    struct fx *f = ctx;
    f->closed = 1;
    uv_close((uv_handle_t *)&f->async, fx_handle_closed);
    uv_close((uv_handle_t *)&f->prep, fx_handle_closed);
    uv_close((uv_handle_t *)&f->defer_timer, fx_handle_closed);
    uv_close((uv_handle_t *)&f->stream_timer, fx_handle_closed);
}

static void *fx_thread(void *arg)
{
    struct fx *f = arg;
    uv_loop_init(&f->loop);
    uv_async_init(&f->loop, &f->async, fx_on_async);
    f->async.data = f;
    uv_prepare_init(&f->loop, &f->prep);
    f->prep.data = f;
    uv_prepare_start(&f->prep, fx_on_prepare);
    uv_timer_init(&f->loop, &f->defer_timer);
    f->defer_timer.data = f;
    uv_timer_init(&f->loop, &f->stream_timer);
    f->stream_timer.data = f;
    int rc = http_server_create(&f->loop, &f->cfg, fx_handler, f, &f->srv);
    pthread_mutex_lock(&f->mu);
    f->create_rc = rc;
    f->port = rc == 0 ? http_server_port(f->srv) : 0;
    f->ready = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    if (rc != 0) {
        fx_server_closed(NULL, f);
    }
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Starts a server with cfg (NULL: defaults). */
static inline struct fx *fx_start(const struct http_server_config *cfg, enum fx_mode mode)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (cfg)
        f->cfg = *cfg;
    else
        http_server_config_default(&f->cfg);
    f->cfg.host = "127.0.0.1";
    f->cfg.port = 0;
    f->mode = mode;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    pthread_create(&f->thread, NULL, fx_thread, f);
    pthread_mutex_lock(&f->mu);
    while (!f->ready)
        fx_cond_wait(f);
    pthread_mutex_unlock(&f->mu);
    return f;
}

/* Runs fn(f, arg) on the loop thread and waits for it. */
static inline void fx_run(struct fx *f, void (*fn)(struct fx *, void *), void *arg)
{
    pthread_mutex_lock(&f->mu);
    f->cmd = fn;
    f->cmd_arg = arg;
    f->cmd_done = 0;
    pthread_mutex_unlock(&f->mu);
    uv_async_send(&f->async);
    pthread_mutex_lock(&f->mu);
    while (!f->cmd_done)
        fx_cond_wait(f);
    pthread_mutex_unlock(&f->mu);
}

static inline void fx_noop(struct fx *f, void *arg)
{
    (void)f;
    (void)arg;
}

/* Waits until pred(f, arg) holds on the loop thread (checked every iteration). */
static inline void fx_wait(struct fx *f, int (*pred)(struct fx *, void *), void *arg)
{
    pthread_mutex_lock(&f->mu);
    f->pred = pred;
    f->pred_arg = arg;
    f->pred_true = 0;
    pthread_mutex_unlock(&f->mu);
    fx_run(f, fx_noop, NULL); /* wake the loop so the predicate is evaluated */
    pthread_mutex_lock(&f->mu);
    while (!f->pred_true)
        fx_cond_wait(f);
    f->pred = NULL;
    pthread_mutex_unlock(&f->mu);
}

static inline void fx_get_stats_cmd(struct fx *f, void *arg)
{
    http_server_stats(f->srv, arg);
}

static inline struct http_server_stats fx_stats(struct fx *f)
{
    struct http_server_stats s;
    fx_run(f, fx_get_stats_cmd, &s);
    return s;
}

static inline void fx_release_cmd(struct fx *f, void *arg)
{
    (void)arg;
    fx_answer_held_reverse(f);
}

struct fx_mode_arg {
    enum fx_mode mode;
    int batch;
};

static inline void fx_set_mode_cmd(struct fx *f, void *arg)
{
    const struct fx_mode_arg *m = arg;
    f->mode = m->mode;
    f->batch = m->batch;
}

static inline void fx_set_mode(struct fx *f, enum fx_mode mode, int batch)
{
    struct fx_mode_arg m = {mode, batch};
    fx_run(f, fx_set_mode_cmd, &m);
}

static inline void fx_close_cmd(struct fx *f, void *arg)
{
    (void)arg;
    http_server_close(f->srv, fx_server_closed, f);
}

/* Closes the server (answering any held request first), joins, frees. */
static inline struct http_server_stats fx_stop(struct fx *f)
{
    struct http_server_stats s = {0};
    if (f->create_rc == 0) {
        fx_run(f, fx_release_cmd, NULL);
        s = fx_stats(f);
        fx_run(f, fx_close_cmd, NULL);
    }
    pthread_join(f->thread, NULL);
    if (f->srv) http_server_destroy(f->srv);
    int rc = uv_loop_close(&f->loop);
    if (rc != 0) {
        fprintf(stderr, "loop close: %s\n", uv_strerror(rc));
        abort();
    }
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
    return s;
}

/* ---------- blocking client ---------- */

struct client {
    int fd;
    char *buf;
    size_t len, cap;
    /* TLS (test_server_tls.c): when set, bytes go through these instead of
     * the socket (blocking; <0 on error, 0 on EOF). */
    void *tls;
    ssize_t (*tls_send)(void *tls, const void *data, size_t len);
    ssize_t (*tls_recv)(void *tls, void *buf, size_t cap);
};

struct resp {
    int status;
    char headers[4096];
    char *body;
    size_t body_len;
    int conn_close;
};

static inline int cl_connect(struct client *c, uint16_t port)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    c->cap = 8u * 1024u * 1024u;
    c->buf = malloc(c->cap);
    return connect(c->fd, (struct sockaddr *)&a, sizeof(a));
}

static inline void cl_close(struct client *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    free(c->buf);
    c->buf = NULL;
}

static inline void cl_reset(struct client *c)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    cl_close(c);
}

static inline int cl_send(struct client *c, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = c->tls ? c->tls_send(c->tls, p, len) : send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static inline int cl_sends(struct client *c, const char *s)
{
    return cl_send(c, s, strlen(s));
}

/* Reads more bytes; returns bytes read, 0 on EOF, -1 on error/timeout. */
static inline ssize_t cl_fill(struct client *c)
{
    if (c->len == c->cap) return -1;
    for (;;) {
        ssize_t n = c->tls ? c->tls_recv(c->tls, c->buf + c->len, c->cap - c->len)
                           : recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n > 0) c->len += (size_t)n;
        return n;
    }
}

static inline const char *find_hdr(const char *headers, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = headers; *p; p++) {
        if ((p == headers || p[-1] == '\n') && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            p += nl + 1;
            while (*p == ' ')
                p++;
            return p;
        }
    }
    return NULL;
}

/* Reads one response (r->body must be freed). Returns 0, or -1 on EOF/error. */
static inline int cl_read(struct client *c, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    char *end;
    for (;;) {
        end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (end) break;
        if (cl_fill(c) <= 0) return -1;
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    if (head_len >= sizeof(r->headers)) return -1;
    memcpy(r->headers, c->buf, head_len);
    r->headers[head_len] = 0;
    char *status_end = NULL;
    if (strncmp(r->headers, "HTTP/1.1 ", 9) != 0) return -1;
    r->status = (int)strtol(r->headers + 9, &status_end, 10);
    if (status_end == r->headers + 9) return -1;
    const char *cl = find_hdr(r->headers, "Content-Length");
    size_t blen = cl ? (size_t)strtoull(cl, NULL, 10) : 0;
    const char *conn = find_hdr(r->headers, "Connection");
    r->conn_close = conn && strncasecmp(conn, "close", 5) == 0;
    while (c->len < head_len + blen)
        if (cl_fill(c) <= 0) return -1;
    r->body = malloc(blen + 1);
    memcpy(r->body, c->buf + head_len, blen);
    r->body[blen] = 0;
    r->body_len = blen;
    memmove(c->buf, c->buf + head_len + blen, c->len - head_len - blen);
    c->len -= head_len + blen;
    return 0;
}

/* 1 if the server closed the connection (EOF or reset) with no more data. */
static inline int cl_wait_eof(struct client *c)
{
    for (;;) {
        ssize_t n = cl_fill(c);
        if (n == 0) return c->len == 0;
        if (n < 0) return errno == ECONNRESET && c->len == 0;
    }
}

#endif
