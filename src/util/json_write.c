/* The JSON writer. Contracts in util/json.h. */
#include "util/json.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stcache/errors.h"

void st_json_init(struct st_json *w, struct st_membuf *out)
{
    memset(w, 0, sizeof(*w));
    w->out = out;
}
/* Before a value: a comma if the level already has an element. */
static void json_pre_value(struct st_json *w)
{
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth > 0 && (w->need_comma & (1ULL << w->depth))) st_membuf_append(w->out, ",", 1);
    w->need_comma |= 1ULL << w->depth;
}

static void json_open(struct st_json *w, char ch)
{
    json_pre_value(w);
    if (w->depth + 1 > ST_JSON_DEPTH_MAX) {
        w->err = ST_EINVAL;
        return;
    }
    st_membuf_append(w->out, &ch, 1);
    w->depth++;
    w->need_comma &= ~(1ULL << w->depth);
}

static void json_close(struct st_json *w, char ch)
{
    if (w->depth == 0 || w->after_key) {
        w->err = ST_EINVAL;
        return;
    }
    w->depth--;
    st_membuf_append(w->out, &ch, 1);
}

void st_json_object_begin(struct st_json *w)
{
    json_open(w, '{');
}
void st_json_object_end(struct st_json *w)
{
    json_close(w, '}');
}
void st_json_array_begin(struct st_json *w)
{
    json_open(w, '[');
}
void st_json_array_end(struct st_json *w)
{
    json_close(w, ']');
}

/* Length of a valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t json_utf8_seq(const uint8_t *s, size_t len)
{
    uint8_t c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > len) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0; /* overlong, out of range, surrogate */
    return n;
}

/* Word-at-a-time tests on 8 bytes loaded with json_load8 (SWAR: each holds
 * as a boolean over the whole word). */
#define JSON_ONES 0x0101010101010101ULL
#define JSON_HIGHS 0x8080808080808080ULL
static inline uint64_t json_load8(const uint8_t *s)
{
    uint64_t x;
    memcpy(&x, s, sizeof(x));
    return x;
}
static inline int json_has_zero(uint64_t x)
{
    return ((x - JSON_ONES) & ~x & JSON_HIGHS) != 0;
}
/* 1 when none of the 8 bytes needs escaping or UTF-8 decoding: all in
 * 0x20..0x7e except '"' and '\\'. */
static inline int json_plain8(uint64_t x)
{
    return (x & JSON_HIGHS) == 0 && ((x - JSON_ONES * 0x20) & ~x & JSON_HIGHS) == 0 &&
           !json_has_zero(x ^ (JSON_ONES * '"')) && !json_has_zero(x ^ (JSON_ONES * '\\')) &&
           !json_has_zero(x ^ (JSON_ONES * 0x7f));
}

int st_json_utf8_valid(const uint8_t *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (i + 8 <= len && (json_load8(s + i) & JSON_HIGHS) == 0) {
            i += 8; /* ASCII */
            continue;
        }
        size_t n = json_utf8_seq(s + i, len - i);
        if (n == 0) return 0;
        i += n;
    }
    return 1;
}

static void json_write_string(struct st_json *w, const void *data, size_t len)
{
    const uint8_t *s = data;
    st_membuf_append(w->out, "\"", 1);
    size_t run = 0; /* pending bytes copied verbatim */
    size_t i = 0;
    while (i < len) {
        if (i + 8 <= len && json_plain8(json_load8(s + i))) {
            run += 8;
            i += 8;
            continue;
        }
        uint8_t ch = s[i];
        const char *esc = NULL;
        char ubuf[8];
        size_t adv = 1;
        switch (ch) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                snprintf(ubuf, sizeof(ubuf), "\\u%04x", ch);
                esc = ubuf;
            } else if (ch >= 0x80) {
                adv = json_utf8_seq(s + i, len - i);
                if (adv == 0) {
                    snprintf(ubuf, sizeof(ubuf), "\\u%04x", ch);
                    esc = ubuf;
                    adv = 1;
                }
            }
        }
        if (esc) {
            if (run) st_membuf_append(w->out, s + i - run, run);
            run = 0;
            st_membuf_append(w->out, esc, strlen(esc));
        } else {
            run += adv;
        }
        i += adv;
    }
    if (run) st_membuf_append(w->out, s + len - run, run);
    st_membuf_append(w->out, "\"", 1);
}

void st_json_key(struct st_json *w, const char *key)
{
    if (w->after_key || w->depth == 0) {
        w->err = ST_EINVAL;
        return;
    }
    json_pre_value(w);
    json_write_string(w, key, strlen(key));
    st_membuf_append(w->out, ":", 1);
    w->after_key = 1;
}

void st_json_string(struct st_json *w, const void *s, size_t len)
{
    json_pre_value(w);
    json_write_string(w, s, len);
}

void st_json_base64(struct st_json *w, const void *data, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *s = data;
    json_pre_value(w);
    st_membuf_append(w->out, "\"", 1);
    char b[64];
    size_t bn = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len) v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < len) v |= s[i + 2];
        b[bn++] = tab[(v >> 18) & 63];
        b[bn++] = tab[(v >> 12) & 63];
        b[bn++] = tab[(v >> 6) & 63];
        b[bn++] = tab[v & 63];
        if (i + 2 >= len) b[bn - 1] = '=';
        if (i + 1 >= len) b[bn - 2] = '=';
        if (bn == sizeof(b)) {
            st_membuf_append(w->out, b, bn);
            bn = 0;
        }
    }
    st_membuf_append(w->out, b, bn);
    st_membuf_append(w->out, "\"", 1);
}

void st_json_cstr(struct st_json *w, const char *s)
{
    st_json_string(w, s, strlen(s));
}

void st_json_uint(struct st_json *w, uint64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%" PRIu64, v);
    json_pre_value(w);
    st_membuf_append(w->out, b, (size_t)n);
}

void st_json_int(struct st_json *w, int64_t v)
{
    char b[24];
    int n = snprintf(b, sizeof(b), "%" PRId64, v);
    json_pre_value(w);
    st_membuf_append(w->out, b, (size_t)n);
}

void st_json_bool(struct st_json *w, int v)
{
    json_pre_value(w);
    st_membuf_append(w->out, v ? "true" : "false", v ? 4 : 5);
}

void st_json_null(struct st_json *w)
{
    json_pre_value(w);
    st_membuf_append(w->out, "null", 4);
}

int st_json_finish(const struct st_json *w)
{
    if (w->out->oom) return ST_ENOMEM;
    if (w->err || w->depth != 0 || w->after_key) return ST_EINVAL;
    return 0;
}
