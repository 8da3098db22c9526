/* The HTTP API's authentication and its user routes (docs/HTTP-API.md,
 * "Users and tokens"; docs/SECURITY.md).
 *
 *   GET    /auth/whoami                   any authenticated user: name, role
 *   GET    /auth/roles                    the built-in roles
 *   GET    /auth/users                    every user (no secrets)
 *   POST   /auth/users                    {"name","role","prefixes":[..]} -> 201 + token
 *   GET    /auth/users/{name}
 *   DELETE /auth/users/{name}
 *   POST   /auth/users/{name}/token       a new token (the old one stops working)
 *   POST   /auth/users/{name}/grant       {"role"?, "prefix"?}
 *   POST   /auth/users/{name}/revoke      {"prefix"}
 *
 * Everything but whoami needs the admin role; api.c checks it before
 * calling api_auth_route. Threading: the node's loop thread. */
#ifndef ST_API_API_AUTH_H
#define ST_API_API_AUTH_H

struct api;
struct node;
struct http_request;
struct node_principal;

/* Who sent req (api.c): the principal of its bearer token, else anonymous
 * (node_auth_anonymous). 0, or ST_EPERM when a credential was sent and does
 * not check out (answered with 401 like a missing one). */
int api_request_principal(struct api *a, const struct http_request *req,
                          struct node_principal *out);

/* Serves one /auth request (path begins with "/auth"); who is its sender,
 * already authenticated (and an admin unless the path is /auth/whoami). */
void api_auth_route(struct node *n, struct http_request *req, const struct node_principal *who);

#endif
