/* The JSON reader. Contracts in util/json.h.
 *
 * Every function rescans from the span it is given: a value's end is found
 * by skipping it (json_skip_value), which also validates it. A skip returns
 * the index just past the value, or 0 on error (a value never ends at 0). */
#include "util/json.h"

#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"

static size_t json_skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return i;
}

static int json_hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t json_skip_string(const char *s, size_t len, size_t i)
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
                for (size_t k = 2; k < 6; k++) {
                    if (json_hex_value(s[i + k]) < 0) return 0;
                }
                i += 6;
                continue;
            }
            if (e == '\0' || !strchr("\"\\/bfnrt", e)) return 0;
            i += 2;
            continue;
        }
        i++;
    }
    return 0;
}

static int json_digit_at(const char *s, size_t len, size_t i)
{
    return i < len && s[i] >= '0' && s[i] <= '9';
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static size_t json_skip_number(const char *s, size_t len, size_t i)
{
    if (i < len && s[i] == '-') i++;
    if (!json_digit_at(s, len, i)) return 0;
    if (s[i] == '0') {
        i++;
    } else {
        while (json_digit_at(s, len, i))
            i++;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (!json_digit_at(s, len, i)) return 0;
        while (json_digit_at(s, len, i))
            i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        if (!json_digit_at(s, len, i)) return 0;
        while (json_digit_at(s, len, i))
            i++;
    }
    return i;
}

static size_t json_skip_lit(const char *s, size_t len, size_t i, const char *lit)
{
    size_t n = strlen(lit);
    if (len - i < n || memcmp(s + i, lit, n) != 0) return 0;
    return i + n;
}

/* *too_deep is set when the value nests deeper than ST_JSONR_DEPTH_MAX. */
static size_t json_skip_value(const char *s, size_t len, size_t i, int depth, bool *too_deep)
{
    i = json_skip_ws(s, len, i);
    if (i >= len) return 0;
    switch (s[i]) {
    case '"':
        return json_skip_string(s, len, i);
    case 't':
        return json_skip_lit(s, len, i, "true");
    case 'f':
        return json_skip_lit(s, len, i, "false");
    case 'n':
        return json_skip_lit(s, len, i, "null");
    case '{':
    case '[': {
        if (depth >= ST_JSONR_DEPTH_MAX) {
            *too_deep = true;
            return 0;
        }
        char close = s[i] == '{' ? '}' : ']';
        bool obj = s[i] == '{';
        i = json_skip_ws(s, len, i + 1);
        if (i < len && s[i] == close) return i + 1;
        for (;;) {
            if (obj) {
                i = json_skip_ws(s, len, i);
                i = json_skip_string(s, len, i);
                if (!i) return 0;
                i = json_skip_ws(s, len, i);
                if (i >= len || s[i] != ':') return 0;
                i++;
            }
            i = json_skip_value(s, len, i, depth + 1, too_deep);
            if (!i) return 0;
            i = json_skip_ws(s, len, i);
            if (i >= len) return 0;
            if (s[i] == close) return i + 1;
            if (s[i] != ',') return 0;
            i++;
        }
    }
    default:
        return json_skip_number(s, len, i);
    }
}

int st_jsonr_validate(const char *text, size_t len)
{
    bool too_deep = false;
    size_t end = json_skip_value(text, len, 0, 0, &too_deep);
    if (!end) return too_deep ? ST_ETOOBIG : ST_EINVAL;
    return json_skip_ws(text, len, end) == len ? 0 : ST_EINVAL;
}

struct st_jsonr_span st_jsonr_root(const char *text, size_t len)
{
    size_t i = json_skip_ws(text, len, 0);
    size_t end = len;
    while (end > i && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\n' ||
                       text[end - 1] == '\r'))
        end--;
    return (struct st_jsonr_span){text + i, end - i};
}

enum st_jsonr_type st_jsonr_type(struct st_jsonr_span v)
{
    if (v.len == 0) return ST_JSONR_INVALID;
    switch (v.p[0]) {
    case '{':
        return ST_JSONR_OBJECT;
    case '[':
        return ST_JSONR_ARRAY;
    case '"':
        return ST_JSONR_STRING;
    case 't':
    case 'f':
    case 'n':
        return ST_JSONR_LITERAL;
    default:
        return ST_JSONR_NUMBER;
    }
}

int st_jsonr_get(struct st_jsonr_span obj, const char *key, struct st_jsonr_span *out)
{
    const char *s = obj.p;
    size_t len = obj.len;
    size_t kl = strlen(key);
    bool too_deep = false;
    size_t i = json_skip_ws(s, len, 0);
    if (i >= len || s[i] != '{') return 0;
    i = json_skip_ws(s, len, i + 1);
    while (i < len && s[i] != '}') {
        size_t kend = json_skip_string(s, len, i);
        if (!kend) return 0;
        bool match = kend - i - 2 == kl && memcmp(s + i + 1, key, kl) == 0;
        i = json_skip_ws(s, len, kend);
        if (i >= len || s[i] != ':') return 0;
        size_t vstart = json_skip_ws(s, len, i + 1);
        size_t vend = json_skip_value(s, len, vstart, 1, &too_deep);
        if (!vend) return 0;
        if (match) {
            out->p = s + vstart;
            out->len = vend - vstart;
            return 1;
        }
        i = json_skip_ws(s, len, vend);
        if (i < len && s[i] == ',') i = json_skip_ws(s, len, i + 1);
    }
    return 0;
}

int st_jsonr_array_next(struct st_jsonr_span arr, size_t *cursor, struct st_jsonr_span *out)
{
    const char *s = arr.p;
    size_t len = arr.len;
    size_t i = *cursor;
    bool too_deep = false;
    if (i == 0) {
        i = json_skip_ws(s, len, 0);
        if (i >= len || s[i] != '[') return 0;
        i++;
    }
    i = json_skip_ws(s, len, i);
    if (i < len && s[i] == ',') i = json_skip_ws(s, len, i + 1);
    if (i >= len || s[i] == ']') return 0;
    size_t end = json_skip_value(s, len, i, 1, &too_deep);
    if (!end) return 0;
    out->p = s + i;
    out->len = end - i;
    *cursor = end;
    return 1;
}

int st_jsonr_uint(struct st_jsonr_span v, uint64_t *out)
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

int st_jsonr_int(struct st_jsonr_span v, int64_t *out)
{
    bool neg = v.len > 0 && v.p[0] == '-';
    uint64_t x;
    struct st_jsonr_span digits = {v.p + neg, v.len - neg};
    if (st_jsonr_uint(digits, &x) != 0 || x > (uint64_t)INT64_MAX) return ST_EINVAL;
    *out = neg ? -(int64_t)x : (int64_t)x;
    return 0;
}

int st_jsonr_bool(struct st_jsonr_span v, bool *out)
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

int st_jsonr_string(struct st_jsonr_span v, char *out, size_t cap)
{
    if (v.len < 2 || v.p[0] != '"' || v.p[v.len - 1] != '"') return ST_EINVAL;
    size_t n = v.len - 2;
    if (memchr(v.p + 1, '\\', n) || n + 1 > cap) return ST_EINVAL;
    memcpy(out, v.p + 1, n);
    out[n] = '\0';
    return 0;
}

static size_t json_utf8_put(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Four hex digits at s, or -1. */
static int32_t json_hex4(const char *s)
{
    int32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = json_hex_value(s[i]);
        if (h < 0) return -1;
        v = v << 4 | h;
    }
    return v;
}

int st_jsonr_copy(struct st_jsonr_span v, char *dst, size_t dst_cap)
{
    ST_ASSERT(dst_cap > 0);
    bool str = v.len >= 2 && v.p[0] == '"' && v.p[v.len - 1] == '"';
    const char *s = str ? v.p + 1 : v.p;
    size_t len = str ? v.len - 2 : v.len;
    size_t o = 0;
    dst[0] = '\0';
    for (size_t i = 0; i < len;) {
        char piece[4];
        size_t piece_len = 1;
        piece[0] = s[i];
        if (str && s[i] == '\\') {
            if (i + 1 >= len) return ST_EINVAL;
            char e = s[i + 1];
            i += 2;
            switch (e) {
            case 'b':
                piece[0] = '\b';
                break;
            case 'f':
                piece[0] = '\f';
                break;
            case 'n':
                piece[0] = '\n';
                break;
            case 'r':
                piece[0] = '\r';
                break;
            case 't':
                piece[0] = '\t';
                break;
            case '"':
            case '\\':
            case '/':
                piece[0] = e;
                break;
            case 'u': {
                if (i + 4 > len) return ST_EINVAL;
                int32_t hi = json_hex4(s + i);
                if (hi < 0) return ST_EINVAL;
                uint32_t cp = (uint32_t)hi;
                i += 4;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    if (i + 6 > len || s[i] != '\\' || s[i + 1] != 'u') return ST_EINVAL;
                    int32_t lo = json_hex4(s + i + 2);
                    if (lo < 0xDC00 || lo >= 0xE000) return ST_EINVAL;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                    i += 6;
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    return ST_EINVAL;
                }
                piece_len = json_utf8_put(cp, piece);
                break;
            }
            default:
                return ST_EINVAL;
            }
        } else {
            i++;
        }
        if (o + piece_len >= dst_cap) {
            dst[o] = '\0';
            return ST_ETOOBIG;
        }
        memcpy(dst + o, piece, piece_len);
        o += piece_len;
        dst[o] = '\0'; /* a prefix stays terminated whatever fails next */
    }
    return 0;
}
