/* The client and admin subcommands of the `stcache` executable, and the small
 * pieces they are built from (exposed so unit tests can reach them).
 *
 *   stcache get KEY [--consistency linearizable|lease|stale]
 *   stcache put KEY VALUE|- [--ttl S] [--if-match VERSION | --if-absent]
 *   stcache del KEY
 *   put, del: [--idempotency-key K]
 *   stcache members | add ID RAFT_ADDR HTTP_ADDR | remove ID | transfer ID
 *   stcache snapshot | status
 *   common: --endpoints h:p,h:p,...  (env STCACHE_ENDPOINTS; default 127.0.0.1:8001)
 *           --json  --timeout SECONDS
 *
 * Failover: endpoints are tried in order; the client moves on when a connection
 * fails or times out, or when a node answers 503 (no leader) or "not_leader".
 * A write whose connection broke after the request was sent may have been
 * applied; moving on is still safe: put and del carry an Idempotency-Key
 * (random per invocation, or --idempotency-key K), the same on every
 * endpoint tried, so the cluster applies the write once and answers a retry
 * with the first result (docs/HTTP-API.md).
 *
 * HTTP: one blocking HTTP/1.1 request per connection ("Connection: close"),
 * every wait bounded by poll() against a per-endpoint deadline. */
#ifndef ST_CLI_CLIENT_H
#define ST_CLI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Process exit codes of every client subcommand. */
enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,      /* key not found, or a put/del condition failed (404, 412) */
    CLI_EXIT_USAGE = 2,       /* bad command line */
    CLI_EXIT_UNAVAILABLE = 3, /* no endpoint answered usefully (down, timeout, 503) */
    CLI_EXIT_REJECTED = 4,    /* the server rejected the request (other 4xx/5xx) */
};

/* Entry point: argv[0] is the subcommand name ("get", "put", ...). Returns a
 * cli_exit code. Writes values/results to stdout, diagnostics to stderr. */
int cli_client_main(int argc, char **argv);

/* ---- URL encoding (RFC 3986 percent-encoding) ---- */

/* Bytes that cli_url_encode() produces for src_len bytes of src (without NUL). */
size_t cli_url_encoded_len(const void *src, size_t src_len);

/* Percent-encodes every byte of src except the unreserved set [A-Za-z0-9-._~]
 * (binary-safe: NUL, '/', '%', '?', '+' and bytes >= 0x80 are all encoded).
 * Writes a NUL-terminated string into dst (dst_cap bytes, caller-owned).
 * Returns 0, or ST_ETOOBIG when dst_cap < cli_url_encoded_len() + 1 (dst then
 * holds an empty string). *dst_len_out (may be NULL) gets the length. */
int cli_url_encode(const void *src, size_t src_len, char *dst, size_t dst_cap, size_t *dst_len_out);

/* Inverse of cli_url_encode (also accepts unencoded bytes; '+' stays '+').
 * dst needs at most src_len bytes. Returns 0, ST_EINVAL on a bad %-escape,
 * ST_ETOOBIG when dst_cap is too small. */
int cli_url_decode(const char *src, size_t src_len, void *dst, size_t dst_cap, size_t *dst_len_out);

/* ---- endpoint lists ---- */

#define CLI_ENDPOINTS_MAX 32
#define CLI_HOST_BYTES_MAX 256

struct cli_endpoint {
    char host[CLI_HOST_BYTES_MAX]; /* NUL-terminated, without IPv6 brackets */
    uint16_t port;
};

/* Parses "host:port,host:port,..." (items may be surrounded by spaces, may
 * carry an "http://" prefix and a trailing '/'; IPv6 as "[::1]:8001") into
 * out[0..out_max). Returns 0 and sets *count_out (>= 1); ST_EINVAL on an empty
 * list, empty item, missing/invalid port (1..65535) or empty host, naming
 * nothing else; ST_ETOOBIG when there are more than out_max items or a host
 * is longer than CLI_HOST_BYTES_MAX - 1. */
int cli_endpoints_parse(const char *list, struct cli_endpoint *out, size_t out_max,
                        size_t *count_out);

/* ---- HTTP/1.1 response parsing ---- */

#define CLI_HEADER_BYTES_MAX (64 * 1024)

struct cli_response {
    bool complete;       /* false: more bytes are needed (nothing else is valid) */
    int status;          /* 100..599 */
    size_t header_bytes; /* status line + headers + the blank line */
    const char *body;    /* points into the parsed buffer; body_len bytes */
    size_t body_len;
    bool has_etag;
    char etag[64]; /* ETag value without the surrounding quotes */
    bool json;     /* Content-Type is application/json */
};

/* Parses the len bytes of buf received so far. eof says the peer closed the
 * connection (so a body without Content-Length ends here). Returns 0 with
 * out->complete true when a whole response is in buf (a chunked body is then
 * decoded in place, which is why buf is writable), 0 with out->complete false
 * when more bytes are needed, ST_EPROTO on a malformed response (or one cut
 * short by eof), ST_ETOOBIG when the header exceeds CLI_HEADER_BYTES_MAX.
 * 1xx interim responses are not expected (the client sends no Expect). */
int cli_response_parse(char *buf, size_t len, bool eof, struct cli_response *out);

/* ---- a minimal JSON tokenizer (for the server's small JSON answers) ---- */

enum cli_json_type {
    CLI_JSON_OBJECT = 1,
    CLI_JSON_ARRAY,
    CLI_JSON_STRING,    /* start/end exclude the quotes; escapes left as is */
    CLI_JSON_PRIMITIVE, /* number, true, false, null */
};

struct cli_json_token {
    enum cli_json_type type;
    size_t start, end; /* byte offsets into the text */
    size_t size;       /* children: members of an object (key+value pairs), items of an array */
};

/* Tokenizes one JSON value (surrounding whitespace allowed) into tokens in
 * document order: an object token is followed by key, value, key, value...
 * Returns 0 and *count_out, ST_EINVAL on malformed text, ST_ETOOBIG when more
 * than tokens_max tokens (or nesting deeper than 64) would be needed. */
int cli_json_parse(const char *text, size_t len, struct cli_json_token *tokens, size_t tokens_max,
                   size_t *count_out);

/* Index of the token after the whole subtree rooted at index. */
size_t cli_json_skip(const struct cli_json_token *tokens, size_t count, size_t index);

/* Index of the value of member key in the object at index obj, or -1. */
long cli_json_get(const char *text, const struct cli_json_token *tokens, size_t count, size_t obj,
                  const char *key);

/* Copies a string token unescaped (UTF-8) into dst (NUL-terminated), or the
 * raw text of any other token. Returns 0, ST_EINVAL on a bad escape,
 * ST_ETOOBIG when it does not fit (dst then holds a truncated prefix). */
int cli_json_copy(const char *text, const struct cli_json_token *token, char *dst, size_t dst_cap);

/* Parses a primitive token as a signed 64-bit integer. 0 or ST_EINVAL. */
int cli_json_int(const char *text, const struct cli_json_token *token, int64_t *out);

#endif
