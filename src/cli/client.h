/* The client and admin subcommands of the `stcache` executable, and the small
 * pieces they are built from (exposed so unit tests can reach them).
 *
 *   stcache get KEY [--consistency linearizable|lease|stale]
 *   stcache put KEY VALUE|- [--ttl S] [--if-match VERSION | --if-absent]
 *   stcache del KEY
 *   put, del: [--idempotency-key K]
 *   stcache members | add ID RAFT_ADDR HTTP_ADDR | remove ID | transfer ID
 *   stcache compact (old name: snapshot) | snapshot save|inspect FILE | status
 *   stcache user add NAME ROLE [PREFIX...] | remove NAME | list | passwd NAME
 *   stcache role grant USER ROLE [PREFIX] | revoke USER PREFIX | list
 *   common: --endpoints h:p,h:p,...  (env STCACHE_ENDPOINTS; default 127.0.0.1:8001)
 *           --token T | --token-file F  (env STCACHE_TOKEN)
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

/* ---- endpoint lists ---- */

#define CLI_ENDPOINTS_MAX 32
#define CLI_TOKEN_BYTES_MAX 256 /* --token: == NODE_AUTH_TOKEN_BYTES_MAX */
#define CLI_HOST_BYTES_MAX 256

struct st_tls_ctx;
struct cli_endpoint {
    char host[CLI_HOST_BYTES_MAX]; /* NUL-terminated, without IPv6 brackets */
    uint16_t port;
    bool https; /* written "https://host:port" */
    /* HTTPS when not NULL: the client context (--cacert, --cert, --key;
     * borrowed), set by cli_client_main for every endpoint when any is
     * https:// or a TLS option is given. The server's certificate must
     * name host (DNS or IP subjectAltName). */
    struct st_tls_ctx *tls;
};

/* Parses "host:port,host:port,..." (items may be surrounded by spaces, may
 * carry an "http://" or "https://" prefix (the latter sets https) and a trailing '/'; IPv6 as
 * "[::1]:8001") into out[0..out_max). Returns 0 and sets *count_out (>= 1); ST_EINVAL on an empty
 * list, empty item, missing/invalid port (1..65535) or empty host, naming
 * nothing else; ST_ETOOBIG when there are more than out_max items or a host
 * is longer than CLI_HOST_BYTES_MAX - 1. */
int cli_endpoints_parse(const char *list, struct cli_endpoint *out, size_t out_max,
                        size_t *count_out);

#endif
