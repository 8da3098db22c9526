/* What the route files of api/ beside api.c use of it: a pooled request
 * with its metrics, and the JSON answers (api.c). */
#ifndef ST_API_INT_H
#define ST_API_INT_H

#include "http/server.h"
#include "node/node.h"
#include "util/membuf.h"

struct api;
struct api_req;

/* A request of route r in flight; NULL when out of memory, after answering
 * req with 503. Every path ends in exactly one api_respond_*. */
struct api_req *api_req_begin(struct api *a, struct http_request *req, enum node_route r);
struct node *api_node(const struct api *a);
/* The principal of the request being dispatched (node/auth.h). */
const struct node_principal *api_principal(const struct api *a);
/* The API's scratch buffer for one JSON body (http_response_send copies). */
struct st_membuf *api_scratch(struct api *a);
struct api *api_of(const struct api_req *ar);
struct http_request *api_http_request(const struct api_req *ar);
void api_respond_json(struct api_req *ar, int status, struct st_membuf *b);
/* {"error": text, "code": code} with status. */
void api_respond_error(struct api_req *ar, int status, const char *code, const char *text);
/* The API's error body: starts {"error": text, "code": code in b (which it
 * resets) so the caller may add fields, and api_error_body_end closes it with
 * its newline. Every route's error answers are built this way. */
struct st_json;
void api_error_body_begin(struct st_json *w, struct st_membuf *b, const char *code,
                          const char *text);
void api_error_body_end(struct st_json *w);
/* The HTTP answer of a node error code (503 no_leader, 413 too_large, ...). */
void api_respond_code(struct api_req *ar, int rc);

/* POST /txn (api_txn.c). */
void api_route_txn(struct api *a, struct http_request *req);

/* /session, /session/ID[/renew], /sessions (api_session.c). */
void api_route_session(struct api *a, struct http_request *req);
/* A follower forwards ar's request (method, path and query) to the
 * leader's HTTP API and answers with the leader's answer. */
void api_proxy_to_leader(struct api_req *ar, const char *method, const char *path_query);
/* The consistency parameter (linearizable when absent): 0 or ST_EINVAL. */
int api_parse_consistency(const struct http_request *req, enum node_consistency *out);

#endif
