/* Host, Origin and Content-Type checks (see guard.h). */
#include "api/guard.h"

#include <ctype.h>
#include <string.h>

static bool ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen) return false;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return false;
    return true;
}

/* The length of the name part of "name[:port]" ("[v6]:port" included). */
static size_t host_name_len(const char *host, size_t len)
{
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        return close ? (size_t)(close - host) + 1 : len;
    }
    const char *colon = memchr(host, ':', len);
    return colon ? (size_t)(colon - host) : len;
}

static bool entry_matches(const char *e, size_t elen, const char *host, size_t hostlen)
{
    if (elen == 1 && e[0] == '*') return true;
    if (ieq(e, elen, host, hostlen)) return true;
    /* A bare name matches the host with any port. */
    if (host_name_len(e, elen) != elen) return false;
    return ieq(e, elen, host, host_name_len(host, hostlen));
}

bool api_guard_host_listed(const char *list, const char *host, size_t hostlen)
{
    if (!list || hostlen == 0) return false;
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t elen = comma ? (size_t)(comma - p) : strlen(p);
        if (elen > 0 && entry_matches(p, elen, host, hostlen)) return true;
        p += elen;
        if (*p == ',') p++;
    }
    return false;
}

bool api_guard_host_loopback(const char *host, size_t hostlen)
{
    return api_guard_host_listed("localhost,127.0.0.1,[::1]", host, hostlen);
}

bool api_guard_origin_host(const char *origin, size_t len, const char **host, size_t *hostlen)
{
    for (size_t i = 0; i + 3 <= len; i++) {
        if (memcmp(origin + i, "://", 3) != 0) continue;
        const char *h = origin + i + 3;
        size_t hl = len - i - 3;
        const char *slash = memchr(h, '/', hl);
        if (slash) hl = (size_t)(slash - h);
        if (hl == 0) return false;
        *host = h;
        *hostlen = hl;
        return true;
    }
    return false;
}

bool api_guard_content_type_ok(const char *ctype, size_t len)
{
    if (!ctype) return false;
    const char *semi = memchr(ctype, ';', len);
    size_t n = semi ? (size_t)(semi - ctype) : len;
    while (n > 0 && (ctype[n - 1] == ' ' || ctype[n - 1] == '\t'))
        n--;
    return ieq(ctype, n, "application/json", 16) || ieq(ctype, n, "application/octet-stream", 24);
}
