/* Endpoint lists of the CLI (--endpoints, STCACHE_ENDPOINTS): contract in
 * cli/client.h. */
#include "cli/client.h"

#include "stcache/errors.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int endpoint_parse_one(const char *s, size_t len, struct cli_endpoint *out)
{
    while (len > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    out->https = false;
    out->tls = NULL;
    if (len >= 7 && strncasecmp(s, "http://", 7) == 0) {
        s += 7;
        len -= 7;
    } else if (len >= 8 && strncasecmp(s, "https://", 8) == 0) {
        s += 8;
        len -= 8;
        out->https = true;
    }
    if (len > 0 && s[len - 1] == '/') len--;
    if (len == 0) return ST_EINVAL;

    const char *host;
    size_t host_len;
    const char *port_s;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || (size_t)(close - s) + 1 >= len || close[1] != ':') return ST_EINVAL;
        host = s + 1;
        host_len = (size_t)(close - host);
        port_s = close + 2;
    } else {
        const char *colon = NULL;
        for (size_t i = len; i > 0; i--) {
            if (s[i - 1] == ':') {
                colon = s + i - 1;
                break;
            }
        }
        if (!colon) return ST_EINVAL;
        host = s;
        host_len = (size_t)(colon - s);
        if (memchr(host, ':', host_len)) /* bare IPv6 without brackets: ambiguous */
            return ST_EINVAL;
        port_s = colon + 1;
    }
    size_t port_len = len - (size_t)(port_s - s);
    if (host_len == 0 || port_len == 0 || port_len > 5) return ST_EINVAL;
    if (host_len >= CLI_HOST_BYTES_MAX) return ST_ETOOBIG;
    unsigned port = 0;
    for (size_t i = 0; i < port_len; i++) {
        if (port_s[i] < '0' || port_s[i] > '9') return ST_EINVAL;
        port = port * 10 + (unsigned)(port_s[i] - '0');
    }
    if (port == 0 || port > 65535) return ST_EINVAL;
    for (size_t i = 0; i < host_len; i++) {
        if (host[i] == ' ' || host[i] == '/' || host[i] == '[' || host[i] == ']') return ST_EINVAL;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = (uint16_t)port;
    return 0;
}

int cli_endpoints_parse(const char *list, struct cli_endpoint *out, size_t out_max,
                        size_t *count_out)
{
    size_t n = 0;
    const char *p = list;
    if (!list) return ST_EINVAL;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (n >= out_max) return ST_ETOOBIG;
        int rc = endpoint_parse_one(p, len, &out[n]);
        if (rc != 0) return rc;
        n++;
        if (!comma) break;
        p = comma + 1;
    }
    *count_out = n;
    return 0;
}
