/* The stcache HTTP API: routes over the generic server (http/server.h) that
 * call the node runtime (node/node.h). Every route, status code and body is
 * documented in docs/HTTP-API.md.
 *
 *   PUT    /kv/{key}[?ttl=S]        body = value; If-Match / If-None-Match: *
 *   GET    /kv/{key}[?consistency=linearizable|lease|stale]
 *   DELETE /kv/{key}
 *   GET    /set?key=K&value=V  GET /get?key=K  GET /join?peerAddress=A&id=N[&http=H]  (seed API)
 *   GET    /cluster   POST /cluster/members   DELETE /cluster/members/{id}
 *   POST   /cluster/transfer?to=ID   POST /snapshot   GET /health   GET /metrics
 *
 * Errors are JSON {"error":"text","code":"name"}; values are raw bytes.
 * Membership and transfer requests that reach a follower are proxied to the
 * leader's HTTP address (from the member context); "?proxied=1" marks a
 * proxied request so it is never proxied twice.
 *
 * Ownership: struct api borrows the node (which must outlive it) and owns
 * its HTTP server. Threading: the node's loop thread only. */
#ifndef ST_API_API_H
#define ST_API_API_H

#include <stdint.h>

#include <uv.h>

struct node;
struct api;
struct st_outbudget;

/* Listens on listen_addr ("host:port", port 0 = ephemeral) and serves the
 * API of node n. Queued responses count against out_budget (borrowed, must
 * outlive the api; NULL = no global bound), each connection's against the
 * node's conn_output_bytes_max. Returns 0 and *out, ST_EINVAL, ST_ENOMEM or
 * a bind error. */
int api_create(uv_loop_t *loop, struct node *n, const char *listen_addr,
               struct st_outbudget *out_budget, struct api **out);

/* The bound HTTP port. */
uint16_t api_port(const struct api *a);

/* Stops listening and closes connections; closed_cb runs once every pending
 * request was completed (stop the node first: it fails its pending requests)
 * and every handle is closed. Then api_destroy(). */
void api_close(struct api *a, void (*closed_cb)(struct api *a, void *ctx), void *ctx);
void api_destroy(struct api *a);

#endif
