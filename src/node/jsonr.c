#include "node/jsonr.h"

#include "stcache/errors.h"

#include <string.h>

#define JSONR_DEPTH_MAX 32

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

/* Returns the index just past the value starting at i, or 0 on error (a
 * value never ends at 0). */
static size_t skip_value(const char *s, size_t len, size_t i, int depth);

static size_t skip_string(const char *s, size_t len, size_t i)
{
    if (i >= len || s[i] != '"') return 0;
    i++;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') return i + 1;
        if (c < 0x20) return 0;
        if (c == '\\') {
            if (i + 1 >= len) return 0;
            char e = s[i + 1];
            if (e == 'u') {
                if (i + 5 >= len) return 0;
                for (int k = 2; k < 6; k++) {
                    char h = s[i + (size_t)k];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F')))
                        return 0;
                }
                i += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0') return 0;
            i += 2;
            continue;
        }
        i++;
    }
    return 0;
}

static size_t skip_number(const char *s, size_t len, size_t i)
{
    size_t start = i;
    if (i < len && s[i] == '-') i++;
    size_t digits = i;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == digits) return 0;
    if (i < len && s[i] == '.') {
        i++;
        size_t f = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f) return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        size_t e = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == e) return 0;
    }
    return i > start ? i : 0;
}

static size_t skip_lit(const char *s, size_t len, size_t i, const char *lit)
{
    size_t n = strlen(lit);
    if (i + n > len || memcmp(s + i, lit, n) != 0) return 0;
    return i + n;
}

static size_t skip_value(const char *s, size_t len, size_t i, int depth)
{
    if (depth > JSONR_DEPTH_MAX) return 0;
    i = skip_ws(s, len, i);
    if (i >= len) return 0;
    switch (s[i]) {
    case '"':
        return skip_string(s, len, i);
    case 't':
        return skip_lit(s, len, i, "true");
    case 'f':
        return skip_lit(s, len, i, "false");
    case 'n':
        return skip_lit(s, len, i, "null");
    case '{':
    case '[': {
        char close = s[i] == '{' ? '}' : ']';
        bool obj = s[i] == '{';
        i = skip_ws(s, len, i + 1);
        if (i < len && s[i] == close) return i + 1;
        for (;;) {
            if (obj) {
                i = skip_ws(s, len, i);
                i = skip_string(s, len, i);
                if (!i) return 0;
                i = skip_ws(s, len, i);
                if (i >= len || s[i] != ':') return 0;
                i++;
            }
            i = skip_value(s, len, i, depth + 1);
            if (!i) return 0;
            i = skip_ws(s, len, i);
            if (i >= len) return 0;
            if (s[i] == close) return i + 1;
            if (s[i] != ',') return 0;
            i++;
        }
    }
    default:
        return skip_number(s, len, i);
    }
}

int jsonr_validate(const char *text, size_t len)
{
    size_t end = skip_value(text, len, 0, 0);
    if (!end) return ST_EINVAL;
    return skip_ws(text, len, end) == len ? 0 : ST_EINVAL;
}

int jsonr_get(struct jsonr_span obj, const char *key, struct jsonr_span *out)
{
    const char *s = obj.p;
    size_t len = obj.len;
    size_t kl = strlen(key);
    size_t i = skip_ws(s, len, 0);
    if (i >= len || s[i] != '{') return 0;
    i = skip_ws(s, len, i + 1);
    while (i < len && s[i] != '}') {
        size_t kend = skip_string(s, len, i);
        if (!kend) return 0;
        bool match = kend - i - 2 == kl && memcmp(s + i + 1, key, kl) == 0;
        i = skip_ws(s, len, kend);
        if (i >= len || s[i] != ':') return 0;
        size_t vstart = skip_ws(s, len, i + 1);
        size_t vend = skip_value(s, len, vstart, 1);
        if (!vend) return 0;
        if (match) {
            out->p = s + vstart;
            out->len = vend - vstart;
            return 1;
        }
        i = skip_ws(s, len, vend);
        if (i < len && s[i] == ',') i = skip_ws(s, len, i + 1);
    }
    return 0;
}

int jsonr_uint(struct jsonr_span v, uint64_t *out)
{
    if (v.len == 0 || v.len > 20) return ST_EINVAL;
    uint64_t x = 0;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.p[i];
        if (c < '0' || c > '9') return ST_EINVAL;
        uint64_t d = (uint64_t)(c - '0');
        if (x > (UINT64_MAX - d) / 10) return ST_EINVAL;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

int jsonr_string(struct jsonr_span v, char *out, size_t cap)
{
    if (v.len < 2 || v.p[0] != '"' || v.p[v.len - 1] != '"') return ST_EINVAL;
    size_t n = v.len - 2;
    if (memchr(v.p + 1, '\\', n) || n + 1 > cap) return ST_EINVAL;
    memcpy(out, v.p + 1, n);
    out[n] = '\0';
    return 0;
}

int jsonr_bool(struct jsonr_span v, bool *out)
{
    if (v.len == 4 && memcmp(v.p, "true", 4) == 0) {
        *out = true;
        return 0;
    }
    if (v.len == 5 && memcmp(v.p, "false", 5) == 0) {
        *out = false;
        return 0;
    }
    return ST_EINVAL;
}

int jsonr_array_next(struct jsonr_span arr, size_t *cursor, struct jsonr_span *out)
{
    const char *s = arr.p;
    size_t len = arr.len;
    size_t i = *cursor;
    if (i == 0) {
        i = skip_ws(s, len, 0);
        if (i >= len || s[i] != '[') return 0;
        i++;
    }
    i = skip_ws(s, len, i);
    if (i < len && s[i] == ',') i = skip_ws(s, len, i + 1);
    if (i >= len || s[i] == ']') return 0;
    size_t end = skip_value(s, len, i, 1);
    if (!end) return 0;
    out->p = s + i;
    out->len = end - i;
    *cursor = end;
    return 1;
}
