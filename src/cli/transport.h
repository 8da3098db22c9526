/* The CLI's blocking HTTP/1.1 transport: one request per connection
 * ("Connection: close"), every wait bounded by poll() against a deadline,
 * the answer parsed by http/response.h. Used by the commands in
 * cli/client.c; single-threaded, no global state. */
#ifndef ST_CLI_TRANSPORT_H
#define ST_CLI_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cli/client.h"
#include "http/response.h"

#define CLI_RESPONSE_BYTES_MAX ((size_t)256 * 1024 * 1024) /* whole response, body included */
#define CLI_CONNECT_TIMEOUT_MS_MAX 3000 /* a dead host must not eat the whole budget */

/* A growable buffer (a request head, a response). Zero-initialised is empty;
 * the owner releases it with cli_buf_free(). */
struct cli_buf {
    char *data; /* heap, owned; NUL-terminated after every append (cap > len) */
    size_t len, cap;
};

/* Makes room for extra more bytes (plus the NUL), never beyond bytes_max in
 * total. 0, ST_ETOOBIG or ST_ENOMEM (b unchanged). */
int cli_buf_reserve(struct cli_buf *b, size_t extra, size_t bytes_max);
/* Appends formatted text. 0, ST_EINVAL, ST_ETOOBIG or ST_ENOMEM. */
int cli_buf_printf(struct cli_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_buf_free(struct cli_buf *b);

/* Monotonic milliseconds. */
int64_t cli_now_ms(void);

/* One request (head, then body_len bytes of body) on a fresh connection to
 * ep, all within timeout_ms. On 0, resp describes a complete response whose
 * body lives in rbuf (caller-owned, reused across calls). Negative: the
 * transport failed (ST_ECONNECTION, ST_ETIMEDOUT, ST_EPROTO, ST_ETOOBIG,
 * ST_ENOMEM); *why says how (static text). A server that answers early
 * (e.g. 413) and closes while the request body is still being sent is
 * still heard. */
int cli_http_exchange(const struct cli_endpoint *ep, const struct cli_buf *head, const void *body,
                      size_t body_len, int timeout_ms, struct cli_buf *rbuf,
                      struct http_response *resp, const char **why);

/* A GET whose 200 body goes to out_fd as it arrives (a backup: any size),
 * each wait bounded by idle_ms rather than a total. On 0 with resp->status
 * 200, *body_bytes (== the Content-Length) were written to out_fd; on 0 with
 * another status, resp describes the whole (small, error) answer in rbuf and
 * nothing was written. Negative: as cli_http_exchange, ST_EPROTO when the
 * server ended the body early (*body_bytes tells how far it got), or the
 * write's error. */
/* A response read as it comes (a watch). cli_stream_open connects to ep
 * (TLS for an https endpoint) and sends head (a request without a body)
 * within timeout_ms: 0 and *out (close it with cli_stream_close), or a
 * negative code (ST_ECONNECTION, ST_ETIMEDOUT, TLS refusals) with *why.
 * cli_stream_read reads up to cap bytes by deadline_ms: > 0 bytes, 0 at the
 * end of the stream (or a broken connection), ST_ETIMEDOUT when nothing
 * came by then, or another negative code. */
struct cli_stream;
int cli_stream_open(const struct cli_endpoint *ep, const struct cli_buf *head, int timeout_ms,
                    struct cli_stream **out, const char **why);
long cli_stream_read(struct cli_stream *s, char *buf, size_t cap, int64_t deadline_ms);
void cli_stream_close(struct cli_stream *s);

int cli_http_download(const struct cli_endpoint *ep, const struct cli_buf *head, int idle_ms,
                      int out_fd, struct cli_buf *rbuf, struct http_response *resp,
                      uint64_t *body_bytes, const char **why);

#endif
