/* The Redis protocol front end (RESP2 and RESP3) of one node: a libuv TCP
 * listener and its connections, speaking to the node only through
 * node/node.h, like api/ does for HTTP (docs/REDIS.md).
 *
 * Per connection: a read buffer holding only unparsed bytes, a ring of
 * RESP_PIPELINE_MAX reply slots (one per command, in arrival order), and
 * one uv_write in flight carrying every finished reply at the ring's head.
 *
 *   read -> parse every whole command in the buffer -> dispatch each at once
 *           (so the writes of one read join one proposal batch of the node,
 *           and the linearizable reads one ReadIndex round)
 *   slot:   FREE -> BUSY (dispatched) -> DONE (reply complete) -> FREE
 *           (its reply moved to the connection's pending output, in order)
 *
 * Back-pressure: while the ring is full, or the connection holds
 * conn_out_bytes_max or more of output not yet written, it is not read
 * (the client's sends block in TCP). Output of every connection is charged
 * to the shared st_outbudget; past its bound the slowest reader (the one
 * that has taken none of its output for longest) is disconnected, as
 * Redis's client-output-buffer-limit does.
 *
 * A protocol error is answered ("-ERR Protocol error: ...") after the
 * replies of the commands before it, and the connection is closed, as
 * Redis does. Beyond connections_max, a new connection gets
 * "-ERR max number of clients reached" and is closed.
 *
 * Ownership: resp_server_create() allocates; resp_server_close() closes
 * the listener and every connection (node callbacks still pending are
 * awaited: stop the node first so that they complete), then closed_cb;
 * resp_server_destroy() frees. Threading: the loop thread only. */
#ifndef ST_RESP_SERVER_H
#define ST_RESP_SERVER_H

#include <stdint.h>
#include <uv.h>

struct node;
struct resp_server;
struct st_outbudget;
struct st_tls_ctx;

struct resp_server_config {
    const char *listen;          /* HOST:PORT (port 0: ephemeral) */
    uint32_t connections_max;    /* default 10000, as Redis's maxclients */
    uint64_t conn_out_bytes_max; /* default 1 MiB */
    /* Bytes of one command being received (Redis's client-query-buffer-
     * limit); default 4 * max_value_bytes + 1 MiB. */
    uint64_t query_bytes_max;
    uint32_t args_max;               /* arguments per command (RESP_ARGS_MAX_DEFAULT) */
    struct st_outbudget *out_budget; /* borrowed; NULL = no global bound */
    /* TLS on this port (redis-cli --tls): a tls/ server context, borrowed
     * (the node's client context: reloaded on SIGHUP). NULL = plaintext. */
    struct st_tls_ctx *tls;
    /* Redis's notify-keyspace-events letters (docs/REDIS.md, "Keyspace
     * notifications"); NULL or "" = off. Changed later by CONFIG SET. */
    const char *notify_keyspace_events;
};

void resp_server_config_default(struct resp_server_config *cfg);

/* Binds and listens. cfg is copied. Returns 0, ST_EINVAL (bad address or
 * notify_keyspace_events letters),
 * ST_ENOMEM or the translated bind/listen error (e.g. address in use). */
int resp_server_create(uv_loop_t *loop, struct node *n, const struct resp_server_config *cfg,
                       struct resp_server **out);
int resp_server_port(const struct resp_server *srv);

typedef void (*resp_server_closed_cb)(struct resp_server *srv, void *ctx);
void resp_server_close(struct resp_server *srv, resp_server_closed_cb cb, void *ctx);
void resp_server_destroy(struct resp_server *srv);

#endif
