/* Request checks the HTTP API makes before any route (docs/SECURITY.md):
 * the Host allowlist against DNS rebinding, the Origin check and the
 * content types of state-changing requests against cross-site requests.
 * Pure functions over strings: no IO, no allocation. */
#ifndef ST_API_GUARD_H
#define ST_API_GUARD_H

#include <stdbool.h>
#include <stddef.h>

/* 1 if host (a Host header value, "name" or "name:port", hostlen bytes)
 * matches an entry of list (comma-separated "name" or "name:port" entries;
 * "*" matches anything; a "name" entry matches any port; names compare
 * case-insensitively). Returns 0 for an empty host. */
bool api_guard_host_listed(const char *list, const char *host, size_t hostlen);

/* 1 if host is a loopback name the default allowlist admits: localhost,
 * 127.0.0.1 or [::1], with or without a port. */
bool api_guard_host_loopback(const char *host, size_t hostlen);

/* The host[:port] part of an Origin header value ("scheme://host[:port]"):
 * sets *host and *hostlen and returns 1, or returns 0 when the value has no
 * "://" or an empty host (e.g. "null"). */
bool api_guard_origin_host(const char *origin, size_t len, const char **host, size_t *hostlen);

/* 1 if a Content-Type value (parameters after ';' ignored) is
 * application/json or application/octet-stream. */
bool api_guard_content_type_ok(const char *ctype, size_t len);

#endif
