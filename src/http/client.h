/* A one-shot asynchronous HTTP/1.1 client on libuv, for the few requests a
 * node makes itself: joining a cluster (POST /cluster/members to a member)
 * and a follower proxying an admin request to the leader's HTTP API.
 * Not for hot paths: one heap object per request.
 *
 * The request is sent with "Connection: close"; the response is read until
 * the response is complete (Content-Length, chunked, or EOF without either:
 * http/response.h), up to HTTP_CLIENT_BODY_BYTES_MAX bytes of body.
 *
 * Callback: runs exactly once on the loop thread, never from inside
 * http_client_request(), unless the request was aborted first (then never).
 * status is the HTTP status (> 0) or a negative code (ST_ECONNECTION,
 * ST_ETIMEDOUT, ST_EPROTO, ST_ETOOBIG, ST_EINVAL). body is valid during the
 * call only (NUL-terminated for convenience). */
#ifndef ST_HTTP_CLIENT_H
#define ST_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define HTTP_CLIENT_BODY_BYTES_MAX (1u << 20)
#define HTTP_CLIENT_HOST_BYTES_MAX 256u

struct http_client;

/* head: the status line and headers (head_len bytes, no final blank line). */
typedef void (*http_client_cb)(void *ctx, int status, const char *body, size_t body_len,
                               const char *head, size_t head_len);

/* addr "host:port"; path starts with '/' (already URL-encoded); body may be
 * NULL; content_type may be NULL; extra_headers NULL or raw header lines,
 * each ending in "\r\n". Returns 0 (and *out when out != NULL, for
 * http_client_abort) or ST_EINVAL / ST_ENOMEM. */
int http_client_request(uv_loop_t *loop, const char *addr, const char *method, const char *path,
                        const char *content_type, const char *extra_headers, const void *body,
                        size_t body_len, uint32_t timeout_ms, http_client_cb cb, void *ctx,
                        struct http_client **out);

/* The same over HTTPS when tls is not NULL: a client context of tls/tls.h
 * (borrowed, must outlive the request) that verifies the server's
 * certificate (chain, and the host name or IP address of addr) and presents
 * its own certificate if it has one. A handshake that fails (the
 * certificate does not verify: ST_EPERM; the server speaks no TLS:
 * ST_EPROTO or ST_ECONNECTION) is the callback's status. */
struct st_tls_ctx;
int http_client_request_tls(struct st_tls_ctx *tls, uv_loop_t *loop, const char *addr,
                            const char *method, const char *path, const char *content_type,
                            const char *extra_headers, const void *body, size_t body_len,
                            uint32_t timeout_ms, http_client_cb cb, void *ctx,
                            struct http_client **out);

/* Cancels a request whose callback has not run yet: the callback will not
 * run; memory is released once libuv has closed the handles. */
void http_client_abort(struct http_client *c);

#endif
