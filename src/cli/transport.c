/* The CLI's blocking HTTP/1.1 transport: one request per connection, every
 * wait bounded by poll() against a deadline; responses parsed by
 * http/response.h. Contracts in cli/transport.h. */
#include "cli/transport.h"

#include "stcache/errors.h"
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

int cli_http_open(const struct cli_endpoint *ep, const struct cli_buf *head, int timeout_ms,
                  const char **why)
{
    int64_t deadline = cli_now_ms() + timeout_ms;
    int fd = transport_connect(ep, deadline, why);
    if (fd < 0) return fd;
    int rc = transport_send_all(fd, head->data, head->len, deadline);
    if (rc != 0) {
        *why = rc == ST_ETIMEDOUT ? "timed out sending the request" : "connection lost";
        close(fd);
        return rc;
    }
    return fd;
}

int cli_wait_readable(int fd, int64_t deadline_ms)
{
    return transport_wait_fd(fd, POLLIN, deadline_ms);
}

int cli_http_exchange(const struct cli_endpoint *ep, const struct cli_buf *head, const void *body,
                      size_t body_len, int timeout_ms, struct cli_buf *rbuf,
                      struct http_response *resp, const char **why)
{
    int64_t deadline = cli_now_ms() + timeout_ms;
    rbuf->len = 0;
    int fd = transport_connect(ep, deadline, why);
    if (fd < 0) return fd;
    int rc = transport_send_all(fd, head->data, head->len, deadline);
    if (rc == 0 && body_len > 0) rc = transport_send_all(fd, body, body_len, deadline);
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
        rc = transport_wait_fd(fd, POLLIN, deadline);
        if (rc != 0) {
            *why = rc == ST_ETIMEDOUT ? "timed out waiting for the response" : st_strerror(rc);
            goto out_fd;
        }
        ssize_t n = recv(fd, rbuf->data + rbuf->len, rbuf->cap - rbuf->len - 1, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        bool eof = n <= 0;
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
    close(fd);
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
    int fd = transport_connect(ep, cli_now_ms() + idle_ms, why);
    if (fd < 0) return fd;
    int rc = transport_send_all(fd, head->data, head->len, cli_now_ms() + idle_ms);
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
        rc = transport_wait_fd(fd, POLLIN, cli_now_ms() + idle_ms);
        if (rc != 0) {
            *why = rc == ST_ETIMEDOUT ? "timed out waiting for the response" : st_strerror(rc);
            goto out_fd;
        }
        ssize_t n = recv(fd, rbuf->data + rbuf->len, rbuf->cap - rbuf->len - 1, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (n <= 0) {
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
            if (rc == 0) rc = transport_wait_fd(fd, POLLIN, cli_now_ms() + idle_ms);
            if (rc != 0) break;
            ssize_t n = recv(fd, rbuf->data + rbuf->len, rbuf->cap - rbuf->len - 1, 0);
            if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
            if (n <= 0) {
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
        rc = transport_wait_fd(fd, POLLIN, cli_now_ms() + idle_ms);
        if (rc != 0) {
            *why = rc == ST_ETIMEDOUT ? "timed out: no data" : st_strerror(rc);
            goto out_fd;
        }
        ssize_t n = recv(fd, rbuf->data, rbuf->cap - 1, 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) {
            have = 0;
            continue;
        }
        if (n <= 0) {
            rc = ST_EPROTO;
            *why = "the server ended the response early";
            goto out_fd;
        }
        p = rbuf->data;
        have = (size_t)n;
    }
    rc = 0;
out_fd:
    close(fd);
    return rc;
}
