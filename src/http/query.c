/* Query strings of request targets: iteration and lookup over the raw
 * (still percent-encoded) text, names compared decoded (contracts in
 * http/server.h). */
#include "http/server.h"

#include <string.h>

#include "util/url.h"

int http_query_next(const char *query, size_t query_len, size_t *cursor, const char **name,
                    size_t *name_len, const char **value, size_t *value_len)
{
    if (!query) return 0;
    size_t i = *cursor;
    while (i < query_len) {
        size_t start = i;
        while (i < query_len && query[i] != '&')
            i++;
        size_t end = i;
        if (i < query_len) i++; /* skip '&' */
        if (end == start) continue;
        const char *eq = memchr(query + start, '=', end - start);
        *name = query + start;
        if (eq) {
            *name_len = (size_t)(eq - (query + start));
            *value = eq + 1;
            *value_len = (size_t)(query + end - (eq + 1));
        } else {
            *name_len = end - start;
            *value = query + end;
            *value_len = 0;
        }
        *cursor = i;
        return 1;
    }
    *cursor = i;
    return 0;
}

int http_query_get(const char *query, size_t query_len, const char *name, const char **value,
                   size_t *value_len)
{
    size_t cur = 0, nlen, vlen, want = strlen(name);
    const char *n, *v;
    uint8_t tmp[256];
    while (http_query_next(query, query_len, &cur, &n, &nlen, &v, &vlen)) {
        if (nlen > sizeof(tmp)) continue;
        size_t dlen;
        if (st_url_decode(n, nlen, ST_URL_PLUS_AS_SPACE, tmp, sizeof(tmp), &dlen) != 0) continue;
        if (dlen == want && memcmp(tmp, name, want) == 0) {
            *value = v;
            *value_len = vlen;
            return 1;
        }
    }
    return 0;
}
