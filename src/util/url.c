#include "util/url.h"

#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"

static int url_unreserved(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int url_hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t st_url_encoded_len(const void *src, size_t src_len)
{
    const uint8_t *s = src;
    size_t n = 0;
    for (size_t i = 0; i < src_len; i++)
        n += url_unreserved(s[i]) ? 1 : 3;
    return n;
}

int st_url_encode(const void *src, size_t src_len, char *dst, size_t dst_cap, size_t *dst_len_out)
{
    static const char hex[] = "0123456789ABCDEF";
    const uint8_t *s = src;
    size_t need = st_url_encoded_len(src, src_len);
    if (dst_cap < need + 1) {
        if (dst_cap > 0) dst[0] = '\0';
        return ST_ETOOBIG;
    }
    size_t o = 0;
    for (size_t i = 0; i < src_len; i++) {
        if (url_unreserved(s[i])) {
            dst[o++] = (char)s[i];
        } else {
            dst[o++] = '%';
            dst[o++] = hex[s[i] >> 4];
            dst[o++] = hex[s[i] & 15];
        }
    }
    ST_ASSERT(o == need);
    dst[o] = '\0';
    if (dst_len_out) *dst_len_out = o;
    return 0;
}

int st_url_decode(const char *src, size_t src_len, unsigned flags, void *dst, size_t dst_cap,
                  size_t *dst_len_out)
{
    uint8_t *d = dst;
    size_t o = 0;
    for (size_t i = 0; i < src_len; i++) {
        uint8_t c = (uint8_t)src[i];
        if (c == '%') {
            if (src_len - i < 3) return ST_EINVAL;
            int hi = url_hex_value(src[i + 1]), lo = url_hex_value(src[i + 2]);
            if (hi < 0 || lo < 0) return ST_EINVAL;
            c = (uint8_t)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && (flags & ST_URL_PLUS_AS_SPACE)) {
            c = ' ';
        }
        if (o >= dst_cap) return ST_ETOOBIG;
        d[o++] = c;
    }
    if (dst_len_out) *dst_len_out = o;
    return 0;
}

int st_url_hostport_split_any(const char *addr, char *host, size_t host_cap, uint16_t *port)
{
    const char *colon;
    const char *h = addr;
    size_t hl;
    if (!addr || !*addr) return ST_EINVAL;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close[1] != ':') return ST_EINVAL;
        h = addr + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon) return ST_EINVAL;
        hl = (size_t)(colon - addr);
        if (memchr(addr, ':', hl)) return ST_EINVAL; /* bare IPv6 needs brackets */
    }
    if (hl == 0 || hl + 1 > host_cap) return ST_EINVAL;
    const char *p = colon + 1;
    if (!*p) return ST_EINVAL;
    unsigned long v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return ST_EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
        if (v > 65535) return ST_EINVAL;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    return 0;
}

int st_url_hostport_split(const char *addr, char *host, size_t host_cap, uint16_t *port)
{
    uint16_t p;
    int rc = st_url_hostport_split_any(addr, host, host_cap, &p);
    if (rc != 0) return rc;
    if (p == 0) return ST_EINVAL;
    *port = p;
    return 0;
}
