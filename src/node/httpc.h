/* A one-shot asynchronous HTTP/1.1 client on libuv, for the few requests a
 * node makes itself: joining a cluster (POST /cluster/members to a member)
 * and a follower proxying an admin request to the leader's HTTP API.
 * Not for hot paths: one heap object per request.
 *
 * The request is sent with "Connection: close"; the response is read until
 * Content-Length bytes of body arrived (or EOF without Content-Length), up
 * to NODE_HTTPC_BODY_MAX bytes. Chunked responses are refused.
 *
 * Callback: runs exactly once on the loop thread, never from inside
 * node_httpc_request(), unless the request was aborted first (then never).
 * status is the HTTP status (> 0) or a negative code (ST_ECONNECTION,
 * ST_ETIMEDOUT, ST_EPROTO, ST_ETOOBIG, ST_EINVAL). body is valid during the
 * call only (NUL-terminated for convenience). */
#ifndef ST_NODE_HTTPC_H
#define ST_NODE_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define NODE_HTTPC_BODY_MAX (1u << 20)

struct node_httpc;

/* head: the status line and headers (head_len bytes, no final blank line). */
typedef void (*node_httpc_cb)(void *ctx, int status, const char *body, size_t body_len,
                              const char *head, size_t head_len);

/* addr "host:port"; path starts with '/' (already URL-encoded); body may be
 * NULL; content_type may be NULL; extra_headers NULL or raw header lines,
 * each ending in "\r\n". Returns 0 (and *out when out != NULL, for
 * node_httpc_abort) or ST_EINVAL / ST_ENOMEM. */
int node_httpc_request(uv_loop_t *loop, const char *addr, const char *method, const char *path,
                       const char *content_type, const char *extra_headers, const void *body,
                       size_t body_len, uint32_t timeout_ms, node_httpc_cb cb, void *ctx,
                       struct node_httpc **out);

/* Cancels a request whose callback has not run yet: the callback will not
 * run; memory is released once libuv has closed the handles. */
void node_httpc_abort(struct node_httpc *c);

#endif
