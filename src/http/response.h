/* The one parser of HTTP/1.1 responses, built on http_parser: used by the
 * node's asynchronous client (http/client.h) and by the CLI's blocking
 * client (src/cli/transport.c).
 *
 * Stateless: each call parses the whole response from its first byte, so
 * the caller appends what it receives and calls again (responses here are
 * small: an error, a value, the /cluster answer). */
#ifndef ST_HTTP_RESPONSE_H
#define ST_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

/* The status line and headers together, in bytes. */
#define HTTP_RESPONSE_HEAD_BYTES_MAX (64u * 1024u)
#define HTTP_RESPONSE_ETAG_BYTES_MAX 64u

struct http_response {
    bool complete;    /* false: more bytes are needed (nothing else is valid) */
    int status;       /* 100..599 */
    const char *head; /* the status line and headers, without the blank line */
    size_t head_len;
    const char *body; /* points into the parsed buffer; body_len bytes */
    size_t body_len;
    bool has_etag;
    char etag[HTTP_RESPONSE_ETAG_BYTES_MAX]; /* without the quotes; "" if it did not fit */
    bool json;                               /* Content-Type is application/json */
};

/* Parses the len bytes of buf received so far. eof says the peer closed the
 * connection (so a body without Content-Length ends here). Returns 0 with
 * out->complete true when a whole response is in buf (a chunked body is
 * then decoded in place, which is why buf is writable; bytes after the
 * response are ignored), 0 with out->complete false when more bytes are
 * needed, ST_EPROTO on a malformed response (also a Transfer-Encoding other
 * than chunked, a status outside 100..599) or one cut short by eof,
 * ST_ETOOBIG when the head exceeds HTTP_RESPONSE_HEAD_BYTES_MAX or the body
 * (declared or decoded) exceeds body_bytes_max. */
int http_response_parse(char *buf, size_t len, bool eof, size_t body_bytes_max,
                        struct http_response *out);

#endif
