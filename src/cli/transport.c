/* The CLI's blocking HTTP/1.1 transport: one request per connection, every
 * wait bounded by poll() against a deadline; responses parsed by
 * http/response.h. Contracts in cli/transport.h. */
#include "cli/transport.h"

#include "stcache/errors.h"
#include "tls/tls.h"
#include "util/assert.h"

#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int cli_buf_reserve(struct cli_buf *b, size_t extra, size_t bytes_max)
{
    if (extra > bytes_max || b->len > bytes_max - extra) return ST_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return ST_ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int cli_buf_printf(struct cli_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return ST_EINVAL;
    int rc = cli_buf_reserve(b, (size_t)n, CLI_RESPONSE_BYTES_MAX);
    if (rc != 0) return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void cli_buf_free(struct cli_buf *b)
{
    free(b->data);
    *b = (struct cli_buf){0};
}

int64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events on fd until deadline. Returns 0, ST_ETIMEDOUT or ST_EIO. */
static int transport_wait_fd(int fd, short events, int64_t deadline_ms)
{
    for (;;) {
        int64_t left = deadline_ms - cli_now_ms();
        if (left <= 0) return ST_ETIMEDOUT;
        struct pollfd pfd = {.fd = fd, .events = events};
        int n = poll(&pfd, 1, (int)ST_MIN(left, (int64_t)60000));
        if (n > 0) return 0;
        if (n < 0 && errno != EINTR) return st_errno_to_code(errno);
    }
}

/* Connects to ep before deadline. Returns a connected blocking-mode-free fd
 * (non-blocking, owned by the caller) or a negative code; *why gets text. */
static int transport_connect(const struct cli_endpoint *ep, int64_t deadline_ms, const char **why)
{
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)ep->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(ep->host, port, &hints, &res);
    if (gai != 0) {
        *why = gai_strerror(gai);
        return ST_ECONNECTION;
    }
    int rc = ST_ECONNECTION;
    *why = "no address";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            *why = strerror(errno);
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            rc = fd;
            break;
        }
        if (errno != EINPROGRESS) {
            *why = strerror(errno);
            close(fd);
            continue;
        }
        int64_t connect_deadline_ms =
            ST_MIN(deadline_ms, cli_now_ms() + CLI_CONNECT_TIMEOUT_MS_MAX);
        int wrc = transport_wait_fd(fd, POLLOUT, connect_deadline_ms);
        if (wrc != 0) {
            *why = wrc == ST_ETIMEDOUT ? "connect timed out" : st_strerror(wrc);
            close(fd);
            rc = wrc == ST_ETIMEDOUT ? ST_ETIMEDOUT : ST_ECONNECTION;
            continue;
        }
        int err = 0;
        socklen_t elen = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) err = errno;
        if (err != 0) {
            *why = strerror(err);
            close(fd);
            rc = ST_ECONNECTION;
            continue;
        }
        rc = fd;
        break;
    }
    freeaddrinfo(res);
    return rc;
}

static int transport_send_all(int fd, const char *data, size_t len, int64_t deadline_ms)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = transport_wait_fd(fd, POLLOUT, deadline_ms);
            if (rc != 0) return rc;
            continue;
        }
        return ST_ECONNECTION;
    }
    return 0;
}

/* A connection: the socket, and TLS over it for an endpoint with a TLS
 * context (https). */
struct conn {
    int fd;
    struct st_tls_conn *tls;
};

/* The *why of a TLS failure: outlives the call that returns it (until the
 * next failure; the CLI is single-threaded). */
static char tls_why[ST_TLS_REASON_MAX + 64];

static const char *conn_tls_why(const struct conn *c, const char *what)
{
    snprintf(tls_why, sizeof tls_why, "%s: %s", what, st_tls_conn_reason(c->tls));
    return tls_why;
}

static void conn_close(struct conn *c)
{
    st_tls_conn_destroy(c->tls);
    c->tls = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
}

/* Sends what TLS produced. */
static int conn_tls_flush(struct conn *c, int64_t deadline_ms)
{
    char buf[16 * 1024];
    size_t n;
    while ((n = st_tls_conn_take_output(c->tls, buf, sizeof buf)) > 0) {
        int rc = transport_send_all(c->fd, buf, n, deadline_ms);
        if (rc != 0) return rc;
    }
    return 0;
}

/* Up to cap bytes of ciphertext into the TLS connection: >0 fed, 0 EOF,
 * negative: the wait failed. */
static long conn_tls_fill(struct conn *c, int64_t deadline_ms)
{
    char buf[16 * 1024];
    for (;;) {
        int rc = transport_wait_fd(c->fd, POLLIN, deadline_ms);
        if (rc != 0) return rc;
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n <= 0) return 0;
        if (st_tls_conn_feed(c->tls, buf, (size_t)n) != 0) return ST_ENOMEM;
        return (long)n;
    }
}

/* Connects to ep, and for a TLS endpoint completes the handshake (the
 * server's certificate verified against the CA and ep->host). */
static int conn_open(struct conn *c, const struct cli_endpoint *ep, int64_t deadline_ms,
                     const char **why)
{
    c->tls = NULL;
    c->fd = transport_connect(ep, deadline_ms, why);
    if (c->fd < 0) return c->fd;
    if (!ep->tls) return 0;
    int rc = st_tls_conn_create(ep->tls, ep->host, &c->tls);
    if (rc != 0) {
        *why = "out of memory";
        goto fail;
    }
    for (;;) {
        int hs = st_tls_conn_handshake(c->tls);
        rc = conn_tls_flush(c, deadline_ms);
        if (rc != 0) {
            *why = rc == ST_ETIMEDOUT ? "TLS handshake timed out" : "connection lost";
            goto fail;
        }
        if (hs == 0) return 0;
        if (hs != ST_EBUSY) {
            *why = conn_tls_why(c, "TLS handshake failed");
            rc = hs == ST_EPERM ? ST_EPERM : ST_EPROTO;
            goto fail;
        }
        long n = conn_tls_fill(c, deadline_ms);
        if (n <= 0) {
            *why = n == ST_ETIMEDOUT ? "TLS handshake timed out"
                                     : "the server closed the connection during the TLS "
                                       "handshake (no TLS there, or our certificate was refused)";
            rc = n == ST_ETIMEDOUT ? ST_ETIMEDOUT : ST_ECONNECTION;
            goto fail;
        }
    }
fail:
    conn_close(c);
    return rc;
}

static int conn_send_all(struct conn *c, const char *data, size_t len, int64_t deadline_ms)
{
    if (!c->tls) return transport_send_all(c->fd, data, len, deadline_ms);
    while (len > 0) { /* in pieces: the ciphertext of one at a time is held */
        size_t n = len < 64 * 1024 ? len : 64 * 1024;
        if (st_tls_conn_write(c->tls, data, n) != 0) return ST_ECONNECTION;
        int rc = conn_tls_flush(c, deadline_ms);
        if (rc != 0) return rc;
        data += n;
        len -= n;
    }
    return 0;
}

/* Waits for and reads up to cap bytes: >0 read, 0 EOF (or a broken
 * connection), negative: the wait failed (ST_ETIMEDOUT ...) or TLS did
 * (ST_EPERM: the server refused our certificate after the handshake, as
 * TLS 1.3 servers do; ST_EPROTO; conn_why says more). */
static long conn_recv(struct conn *c, char *buf, size_t cap, int64_t deadline_ms)
{
    if (!c->tls) {
        for (;;) {
            int rc = transport_wait_fd(c->fd, POLLIN, deadline_ms);
            if (rc != 0) return rc;
            ssize_t n = recv(c->fd, buf, cap, 0);
            if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
            return n < 0 ? 0 : (long)n;
        }
    }
    for (;;) {
        long n = st_tls_conn_read(c->tls, buf, cap);
        if (conn_tls_flush(c, deadline_ms) != 0) return 0;
        if (n > 0) return n;
        if (n == ST_ECLOSED) return 0;
        if (n < 0) return n == ST_EPERM ? ST_EPERM : ST_EPROTO;
        long f = conn_tls_fill(c, deadline_ms);
        if (f <= 0) return f;
    }
}

/* *why for a negative conn_recv result. */
static const char *conn_why(const struct conn *c, long rc, const char *timeout_text)
{
    if (rc == ST_ETIMEDOUT) return timeout_text;
    if (c->tls && (rc == ST_EPERM || rc == ST_EPROTO))
        return conn_tls_why(c, rc == ST_EPERM ? "TLS: the server refused our certificate (it wants "
                                                "one signed by its trusted CA)"
                                              : "TLS failed");
    return st_strerror((int)rc);
}

struct cli_stream {
    struct conn conn;
};

int cli_stream_open(const struct cli_endpoint *ep, const struct cli_buf *head, int timeout_ms,
                    struct cli_stream **out, const char **why)
{
    int64_t deadline = cli_now_ms() + timeout_ms;
    struct cli_stream *s = malloc(sizeof *s);
    if (!s) {
        *why = "out of memory";
        return ST_ENOMEM;
    }
    int rc = conn_open(&s->conn, ep, deadline, why);
    if (rc < 0) {
        free(s);
        return rc;
    }
    rc = conn_send_all(&s->conn, head->data, head->len, deadline);
    if (rc != 0) {
        *why = rc == ST_ETIMEDOUT ? "timed out sending the request" : "connection lost";
        cli_stream_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

long cli_stream_read(struct cli_stream *s, char *buf, size_t cap, int64_t deadline_ms)
{
    return conn_recv(&s->conn, buf, cap, deadline_ms);
}

void cli_stream_close(struct cli_stream *s)
{
    if (!s) return;
    conn_close(&s->conn);
    free(s);
}

int cli_http_exchange(const struct cli_endpoint *ep, const struct cli_buf *head, const void *body,
                      size_t body_len, int timeout_ms, struct cli_buf *rbuf,
                      struct http_response *resp, const char **why)
{
    int64_t deadline = cli_now_ms() + timeout_ms;
    rbuf->len = 0;
    struct conn conn;
    int rc = conn_open(&conn, ep, deadline, why);
    if (rc < 0) return rc;
    rc = conn_send_all(&conn, head->data, head->len, deadline);
    if (rc == 0 && body_len > 0) rc = conn_send_all(&conn, body, body_len, deadline);
    int send_rc = rc;
    if (rc == ST_ETIMEDOUT) {
        *why = "timed out sending the request";
        goto out_fd;
    }
    /* even when sending failed, an early answer may be waiting */
    for (;;) {
        rc = cli_buf_reserve(rbuf, 16 * 1024, CLI_RESPONSE_BYTES_MAX);
        if (rc != 0) {
            *why = "response too large";
            goto out_fd;
        }
        long n = conn_recv(&conn, rbuf->data + rbuf->len, rbuf->cap - rbuf->len - 1, deadline);
        if (n < 0) {
            rc = (int)n;
            *why = conn_why(&conn, n, "timed out waiting for the response");
            goto out_fd;
        }
        bool eof = n == 0;
        if (n > 0) {
            rbuf->len += (size_t)n;
            rbuf->data[rbuf->len] = '\0';
        }
        rc = http_response_parse(rbuf->data, rbuf->len, eof, CLI_RESPONSE_BYTES_MAX, resp);
        if (rc != 0) {
            *why = send_rc != 0 && rbuf->len == 0 ? "connection lost" : "malformed response";
            rc = send_rc != 0 && rbuf->len == 0 ? ST_ECONNECTION : rc;
            goto out_fd;
        }
        if (resp->complete) break;
        if (eof) { /* cannot happen: parse with eof either completes or fails */
            rc = ST_EPROTO;
            *why = "connection closed early";
            goto out_fd;
        }
    }
    rc = 0;
out_fd:
    conn_close(&conn);
    return rc;
}

/* Case-insensitive search for "\r\nName:" in head[0..len); the value after it. */
static const char *head_header(const char *head, size_t len, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + 2 + nl + 1 <= len; i++) {
        if (head[i] == '\r' && head[i + 1] == '\n' && strncasecmp(head + i + 2, name, nl) == 0 &&
            head[i + 2 + nl] == ':') {
            const char *v = head + i + 2 + nl + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
    }
    return NULL;
}

int cli_http_download(const struct cli_endpoint *ep, const struct cli_buf *head, int idle_ms,
                      int out_fd, struct cli_buf *rbuf, struct http_response *resp,
                      uint64_t *body_bytes, const char **why)
{
    *body_bytes = 0;
    rbuf->len = 0;
    memset(resp, 0, sizeof *resp);
    struct conn conn;
    int rc = conn_open(&conn, ep, cli_now_ms() + idle_ms, why);
    if (rc < 0) return rc;
    rc = conn_send_all(&conn, head->data, head->len, cli_now_ms() + idle_ms);
    if (rc != 0) {
        *why = rc == ST_ETIMEDOUT ? "timed out sending the request" : "connection lost";
        goto out_fd;
    }
    /* The head first (into rbuf), bounded. */
    size_t head_end = 0;
    while (head_end == 0) {
        rc = cli_buf_reserve(rbuf, 16 * 1024, 64 * 1024);
        if (rc != 0) {
            *why = "response head too large";
            goto out_fd;
        }
        long n = conn_recv(&conn, rbuf->data + rbuf->len, rbuf->cap - rbuf->len - 1,
                           cli_now_ms() + idle_ms);
        if (n < 0) {
            rc = (int)n;
            *why = conn_why(&conn, n, "timed out waiting for the response");
            goto out_fd;
        }
        if (n == 0) {
            rc = ST_ECONNECTION;
            *why = "connection closed before the response";
            goto out_fd;
        }
        rbuf->len += (size_t)n;
        rbuf->data[rbuf->len] = '\0';
        char *e = strstr(rbuf->data, "\r\n\r\n");
        if (e) head_end = (size_t)(e - rbuf->data) + 4;
    }
    if (strncmp(rbuf->data, "HTTP/1.", 7) != 0 || rbuf->len < 12) {
        rc = ST_EPROTO;
        *why = "malformed response";
        goto out_fd;
    }
    int status = (int)strtol(rbuf->data + 9, NULL, 10);
    if (status != 200) {
        /* An error answer: small, parsed whole as usual. */
        for (;;) {
            rc = http_response_parse(rbuf->data, rbuf->len, false, 1024 * 1024, resp);
            if (rc != 0 || resp->complete) break;
            rc = cli_buf_reserve(rbuf, 16 * 1024, 1024 * 1024);
            if (rc != 0) break;
            long n = conn_recv(&conn, rbuf->data + rbuf->len, rbuf->cap - rbuf->len - 1,
                               cli_now_ms() + idle_ms);
            if (n < 0) {
                rc = (int)n;
                break;
            }
            if (n == 0) {
                rc = http_response_parse(rbuf->data, rbuf->len, true, 1024 * 1024, resp);
                break;
            }
            rbuf->len += (size_t)n;
            rbuf->data[rbuf->len] = '\0';
        }
        if (rc != 0) *why = "malformed response";
        goto out_fd;
    }
    resp->status = 200;
    resp->complete = true;
    const char *cl = head_header(rbuf->data, head_end, "Content-Length");
    if (!cl) {
        rc = ST_EPROTO;
        *why = "no Content-Length in the response";
        goto out_fd;
    }
    uint64_t want = strtoull(cl, NULL, 10);
    /* Body bytes that came with the head, then the rest, straight to out_fd. */
    const char *p = rbuf->data + head_end;
    size_t have = rbuf->len - head_end;
    for (;;) {
        if (have > want - *body_bytes) have = (size_t)(want - *body_bytes);
        while (have > 0) {
            ssize_t w = write(out_fd, p, have);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                rc = st_errno_to_code(errno);
                *why = "writing the file failed";
                goto out_fd;
            }
            p += w;
            have -= (size_t)w;
            *body_bytes += (uint64_t)w;
        }
        if (*body_bytes == want) break;
        long n = conn_recv(&conn, rbuf->data, rbuf->cap - 1, cli_now_ms() + idle_ms);
        if (n < 0) {
            rc = (int)n;
            *why = conn_why(&conn, n, "timed out: no data");
            goto out_fd;
        }
        if (n == 0) {
            rc = ST_EPROTO;
            *why = "the server ended the response early";
            goto out_fd;
        }
        p = rbuf->data;
        have = (size_t)n;
    }
    rc = 0;
out_fd:
    conn_close(&conn);
    return rc;
}
