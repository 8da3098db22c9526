/* A generic HTTP/1.1 server on libuv and http-parser.
 *
 * The server parses requests and hands each one to a handler callback; the
 * handler completes it later (possibly many ms later, from the loop thread)
 * with http_response_send(). Keep-alive and pipelining are supported:
 * responses leave in request order even when handlers complete out of order.
 *
 * Request lifecycle (per connection, a ring of at most pipeline_max slots):
 *
 *   FREE --message begins--> PARSING --message complete--> HANDLER
 *   HANDLER --http_response_send()--> READY --head of line--> WRITING --written--> FREE
 *
 * While every slot is in use the connection stops reading (back-pressure).
 * Bad requests (malformed, too large) get a 4xx with a JSON body
 * {"error":"...","code":<status>} and the connection closes after it.
 *
 * Ownership: a struct http_request is owned by the server; the handler borrows
 * it from the handler call until it calls http_response_send() exactly once.
 * It stays valid until then even if the client disconnects (the response is
 * then discarded). Every request handed to the handler MUST be completed, also
 * during shutdown: http_server_close() finishes only when all are.
 *
 * Writes: every consecutive finished response at the head of a connection's
 * ring goes out in one write (uv_try_write, then uv_write for the rest).
 * Responses of pipelined requests answered during parsing are written once
 * parsing stops; responses completed later are written in the idle phase of
 * the loop iteration, so completions made in one callback (a batch of
 * committed writes) share a write.
 *
 * Memory: per-connection read buffer and per-slot head/body/response buffers
 * are allocated on first use and reused; buffers grown for a large body or
 * response above HTTP_BUF_KEEP_BYTES are released after use. Once connections
 * that closed have released HTTP_TRIM_FREED_BYTES of such large buffers, free
 * heap pages are returned to the OS (malloc_trim, HTTP_TRIM_DELAY_MS later so
 * that one trim covers a burst of closes, at most one per
 * HTTP_TRIM_INTERVAL_MS).
 *
 * Output bounds (slow readers): the bytes of responses that are generated but
 * not yet written (READY and WRITING slots) are counted per connection and
 * charged to the shared budget cfg.out_budget (util/outbudget.h), released
 * when written or when the connection closes.
 *  - Per connection: while a connection holds conn_out_bytes_max or more, no
 *    further pipelined request is parsed and it is not read (back-pressure);
 *    both resume as its output drains. Requests already with the handler
 *    still complete, so a connection may hold up to conn_out_bytes_max plus
 *    pipeline_max responses.
 *  - Global: when a response pushes the budget over its bound, connections
 *    are dropped (closed at once, queued responses discarded), the one whose
 *    client has gone longest without taking any bytes first (not the one
 *    with the largest response), until the budget is within its bound.
 *
 * Threading: everything runs on the loop thread. */
#ifndef ST_HTTP_SERVER_H
#define ST_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct http_server;
struct st_outbudget;
struct st_tls_ctx;

/* Named http_verb (not http_method) to stay clear of http_parser.h. */
enum http_verb {
    HTTP_VERB_OTHER = 0,
    HTTP_VERB_GET,
    HTTP_VERB_HEAD,
    HTTP_VERB_PUT,
    HTTP_VERB_POST,
    HTTP_VERB_DELETE,
};

struct http_request {
    enum http_verb verb;
    const char *method; /* NUL-terminated, e.g. "GET" */
    const char *path;   /* raw (still %-encoded), NUL-terminated, starts with '/' */
    size_t path_len;
    const char *query; /* raw, after '?', NUL-terminated; NULL if no '?' */
    size_t query_len;
    const char *if_match; /* header value, NUL-terminated; NULL if absent */
    size_t if_match_len;
    const char *if_none_match;
    size_t if_none_match_len;
    int has_content_length;
    uint64_t content_length;
    int keep_alive;      /* 0 if the connection closes after this response */
    const uint8_t *body; /* body_len bytes (never NULL, may be empty) */
    size_t body_len;
    void *user; /* free for the handler */
    struct http_server *server;
    /* With client TLS: the Common Name of the client certificate verified
     * against the trusted CA (the user); NULL without TLS or without a
     * verified certificate. Valid like req. */
    const char *tls_user;
};

/* Called once per complete request, on the loop thread. The handler must
 * eventually call http_response_send(req, ...) exactly once (it may do so
 * before returning). */
typedef void (*http_handler_cb)(struct http_request *req, void *ctx);
/* Called when http_server_close() has finished: all handles closed, all
 * pending requests completed, all memory released except the struct itself
 * which the callback may free via http_server_destroy(). */
typedef void (*http_server_closed_cb)(struct http_server *srv, void *ctx);

struct http_server_config {
    const char *host; /* e.g. "127.0.0.1" or "0.0.0.0" */
    uint16_t port;    /* 0 = ephemeral, see http_server_port() */
    int backlog;      /* listen backlog (default 511) */
    /* URL + header names and values, in bytes (default 16 KiB): 414 if the URL
     * alone exceeds it, else 431. http-parser's own 80 KiB bound on the raw
     * head also gives 431. */
    uint32_t head_bytes_max;
    uint32_t headers_max;    /* header count (default 64): 431 */
    uint64_t body_bytes_max; /* (default 2 MiB): 413 */
    /* Close a connection without pending requests after this idle time, and
     * one whose client took none of its queued responses for as long
     * (default 60000; 0 = never). */
    uint32_t idle_timeout_ms;
    /* A request must be fully received within this time from its first byte,
     * else 408 and close (default 30000; 0 = none): bounds slow senders that
     * keep a connection just short of idle. */
    uint32_t request_timeout_ms;
    /* At this many open connections, a new one closes the connection idle
     * longest (no request in progress, no queued output) to take its place,
     * so idle connections cannot lock clients out; when none is idle, the new
     * one gets 503 and is closed (default 1024). */
    uint32_t connections_max;
    /* Open connections per client address (IPv4 and IPv6 alike); one more is
     * answered 503 and closed at once, before the connections_max check, so
     * it takes nothing from the global bound (default 0 = no bound). */
    uint32_t conns_per_ip_max;
    uint32_t pipeline_max;   /* requests in flight per connection (default 16, max 64) */
    uint32_t read_buf_bytes; /* per-connection read buffer (default 16 KiB) */
    /* Queued response bytes at which a connection stops being read (default
     * 1 MiB; 0 = no per-connection bound). */
    uint64_t conn_out_bytes_max;
    /* The global bound on queued response bytes, shared with other front
     * ends; borrowed (must outlive the server). NULL = no global bound. */
    struct st_outbudget *out_budget;
    /* TLS on this port (https): a server context of tls/tls.h, borrowed
     * (must outlive the server; reloading it serves new connections with
     * the new files). NULL = plain HTTP. A client that speaks plain HTTP to
     * a TLS port gets a plain 400 that says so, and the connection closes. */
    struct st_tls_ctx *tls;
};

#define HTTP_BUF_KEEP_BYTES (64u * 1024u)
#define HTTP_TRIM_FREED_BYTES (8u * 1024u * 1024u)
#define HTTP_TRIM_DELAY_MS 50u
#define HTTP_TRIM_INTERVAL_MS 1000u

struct http_server_stats {
    uint64_t connections; /* open now */
    uint64_t connections_accepted;
    uint64_t connections_rejected;        /* over connections_max, none idle */
    uint64_t connections_rejected_per_ip; /* over conns_per_ip_max */
    uint64_t idle_evicted;                /* idle connections closed to admit a new one */
    uint64_t accept_failures;             /* accept errors (EMFILE, ENFILE, ...) */
    uint64_t connections_refused_nofile;  /* closed unread: no descriptor was left */
    uint64_t requests;                    /* handed to the handler */
    uint64_t requests_bad;                /* answered 4xx by the server itself */
    uint64_t responses_discarded;         /* completed after the client left */
    uint64_t idle_closed;
    uint64_t request_timeouts;  /* 408s for requests received too slowly */
    uint64_t write_batches;     /* write calls carrying responses (pipelined ones share) */
    uint64_t out_bytes;         /* response bytes generated, not yet written (now) */
    uint64_t out_paused;        /* times a connection stopped being read: over conn_out_bytes_max */
    uint64_t slow_dropped;      /* connections dropped to bring out_budget within its bound */
    uint64_t stalled_closed;    /* closed: took none of their queued output for idle_timeout_ms */
    uint64_t memory_trims;      /* free heap returned to the OS after connections closed */
    uint64_t tls_failures;      /* TLS handshakes or records that failed (connection closed) */
    uint64_t tls_plain_refused; /* plain HTTP sent to a TLS port (answered 400, closed) */
};

void http_server_config_default(struct http_server_config *cfg);

/* Allocates a server bound to cfg->host:cfg->port on `loop` and starts
 * listening. Sets SIGPIPE to SIG_IGN for the process (a client resetting
 * during a write must not kill it). cfg is copied (host too). Returns 0, ST_EINVAL, ST_ENOMEM or
 * the translated bind/listen error. The caller owns *out: http_server_close() it, then
 * http_server_destroy() it once closed_cb has run. */
int http_server_create(uv_loop_t *loop, const struct http_server_config *cfg,
                       http_handler_cb handler, void *handler_ctx, struct http_server **out);

/* The bound port (useful with port 0). */
uint16_t http_server_port(const struct http_server *srv);

/* Stops accepting, closes every connection (pending requests stay valid until
 * completed; their responses are discarded) and calls closed_cb once all is
 * released. Idempotent. */
void http_server_close(struct http_server *srv, http_server_closed_cb closed_cb, void *ctx);

/* Frees a server that is closed (closed_cb ran) or that never started. */
void http_server_destroy(struct http_server *srv);

void http_server_stats(const struct http_server *srv, struct http_server_stats *out);

/* Completes a request with a final response (status 200..999; the server
 * sends "100 Continue" itself). Copies everything; req is invalid afterwards.
 * content_type may be NULL (no Content-Type). extra_headers: n "Name: value"
 * pairs (no CR/LF allowed in them: such a header is dropped). For HEAD requests
 * the body is not sent but Content-Length is. Returns 0, or ST_ENOMEM (the
 * connection is then closed; req is still consumed). */
struct http_header {
    const char *name;
    const char *value;
};
int http_response_send(struct http_request *req, int status, const char *content_type,
                       const struct http_header *extra_headers, size_t n_extra, const void *body,
                       size_t body_len);

/* Streaming responses: a body of known length produced a piece at a time
 * (a backup file read off the loop), with back-pressure: the next piece is
 * asked for only once the previous one was written to the socket, so at most
 * one piece per connection is held in memory.
 *
 *   http_response_stream_begin --head written--> more(req, ctx)
 *   more --> http_response_stream_write(piece) --written--> more ... --> last piece: done
 *        \-> http_response_stream_abort: the connection closes (short body)
 *
 * begin: like http_response_send without a body; Content-Length is
 * content_length and the connection closes after the response (nothing waits
 * behind a long stream). req stays with the producer (it counts as with the
 * handler: http_server_close() waits for it) until the piece that completes
 * content_length is written by stream_write, or stream_abort; after either
 * the producer must not use req. more runs on the loop each time a piece
 * went out, and once when the client goes away (http_request_orphaned(req)
 * is then 1: call stream_abort); it may call stream_write before returning.
 * Returns 0, or ST_ENOMEM (connection closed, req consumed: more never runs).
 * content_length 0 and HEAD requests complete at begin (more never runs).
 *
 * write: only after more was called and before the next piece was given;
 * 0 < len <= the bytes still owed; copies data. Returns 0 while more is to
 * come, 1 when this piece completes the response (req consumed),
 * ST_ECONNECTION when the client is gone (req consumed), ST_ENOMEM
 * (connection closed, req consumed).
 *
 * abort: ends the response early (the client sees a short body and a
 * closed connection); consumes req. */
/* Chunked streams (content_length HTTP_STREAM_CHUNKED): a body of unknown
 * length, sent with Transfer-Encoding: chunked (a watch). Each stream_write
 * is one chunk (any len > 0; the stream never completes by length); the
 * producer ends it with http_response_stream_end, in the same state as a
 * write (after more), which sends the last chunk and consumes req. */
#define HTTP_STREAM_CHUNKED UINT64_MAX
typedef void (*http_stream_more_cb)(struct http_request *req, void *ctx);
int http_response_stream_begin(struct http_request *req, int status, const char *content_type,
                               const struct http_header *extra_headers, size_t n_extra,
                               uint64_t content_length, http_stream_more_cb more, void *ctx);
int http_response_stream_write(struct http_request *req, const void *data, size_t len);
void http_response_stream_abort(struct http_request *req);
/* Chunked streams only: the last chunk. Returns 1 (req consumed, like the
 * last piece of a stream), ST_ECONNECTION or ST_ENOMEM (req consumed). */
int http_response_stream_end(struct http_request *req);

/* Completes a request with {"error":"<message>","code":<code>} (JSON-escaped). */
int http_response_error(struct http_request *req, int status, int code, const char *message);

/* 1 if the client connection of req is gone (the response will be discarded). */
int http_request_orphaned(const struct http_request *req);

/* Looks up any request header by name (case-insensitive). Returns the value
 * (NUL-terminated) and its length, or NULL. Valid like req. */
const char *http_request_header(const struct http_request *req, const char *name, size_t *len);

/* Standard reason phrase ("Not Found"); "Unknown" for unknown codes. */
const char *http_status_text(int status);

/* ---- helpers ---- */

/* Iterates a raw query string "a=1&b=%20x": on each call returns 1 and sets
 * the raw (still encoded) name/value spans of the next parameter (value_len 0
 * and value pointing past '=' or at the end if absent), or 0 at the end.
 * *cursor starts at 0. Empty parameters ("&&") are skipped. */
int http_query_next(const char *query, size_t query_len, size_t *cursor, const char **name,
                    size_t *name_len, const char **value, size_t *value_len);

/* Finds parameter `name` (compared with its decoded form) and returns its raw
 * value span; 1 if found, 0 if not. */
int http_query_get(const char *query, size_t query_len, const char *name, const char **value,
                   size_t *value_len);

#endif
