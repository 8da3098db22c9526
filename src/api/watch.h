/* GET /watch: a node watch (node.h, "watches") streamed as newline-delimited
 * JSON over a chunked HTTP response (docs/HTTP-API.md, "Watches"). */
#ifndef ST_API_WATCH_H
#define ST_API_WATCH_H

#include "http/server.h"

struct node;

/* Output gathered into one chunk at most (then the next waits until this
 * one was written to the client): the bound on what a watch holds besides
 * the shared history. */
#define API_WATCH_PIECE_BYTES (64u * 1024u)
#define API_WATCH_PROGRESS_MS_DEFAULT 1000u

/* Serves req (GET or HEAD /watch?...): answers an error at once, or begins
 * the stream, which ends when the watch is canceled (its last line says
 * why) or the client goes. Completes req in every case. */
struct node_principal;
/* who: the request's principal (node/auth.h); a watch needs read access to
 * its whole prefix (or its key): 403 otherwise. */
void api_watch_route(struct node *n, struct http_request *req, const struct node_principal *who);

#endif
