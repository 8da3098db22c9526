/* The one JSON writer and the one JSON reader, shared by the HTTP routes, the
 * node (join requests and replies) and the CLI. Both are allocation-free:
 * the writer appends to a caller-owned st_membuf (reused across responses),
 * the reader returns spans into the caller's text.
 *
 * Chosen over jansson and yajl by measurement (bench/micro/json.c; 2026-12-06,
 * 2-core VM, 1M operations, ns per operation / heap allocations per one):
 *   write a 412 or not_leader answer: ours 247-261 / 0, yajl (one reused
 *     generator) 245-277 / 0, jansson 889-931 / 13.5;
 *   read a join request (validate, 3 members): ours 142-160 / 0, yajl tree
 *     568-618 / (a tree per document), jansson 894-1041 / 14.
 * Writing is on par with yajl, reading 4x faster without allocating, and no
 * new dependency; jansson allocates per value. */
#ifndef ST_UTIL_JSON_H
#define ST_UTIL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/membuf.h"

/* ---- writer ---- */

/* Commas are inserted automatically. Nesting depth is at most
 * ST_JSON_DEPTH_MAX (deeper writes set err). Strings are binary-safe input:
 * valid UTF-8 passes through, '"' '\\' and control characters are escaped
 * (\n, \t, ... or \u00XX), and bytes that are not valid UTF-8 are written as
 * \u00XX (the byte's Latin-1 code point). Misuse (a value where a key is due,
 * unbalanced ends) sets err; st_json_finish() reports it. */
#define ST_JSON_DEPTH_MAX 32
struct st_json {
    struct st_membuf *out; /* borrowed */
    uint32_t depth;
    uint64_t need_comma; /* bit d: level d already has an element */
    int after_key;
    int err;
};
void st_json_init(struct st_json *w, struct st_membuf *out);
void st_json_object_begin(struct st_json *w);
void st_json_object_end(struct st_json *w);
void st_json_array_begin(struct st_json *w);
void st_json_array_end(struct st_json *w);
void st_json_key(struct st_json *w, const char *key); /* NUL-terminated */
void st_json_string(struct st_json *w, const void *s, size_t len);
void st_json_cstr(struct st_json *w, const char *s);
/* data[0..len) as a string value in standard base64 (RFC 4648, padded). */
void st_json_base64(struct st_json *w, const void *data, size_t len);
void st_json_uint(struct st_json *w, uint64_t v);
void st_json_int(struct st_json *w, int64_t v);
void st_json_bool(struct st_json *w, int v);
void st_json_null(struct st_json *w);
/* 0 if the document is complete and no error occurred, ST_EINVAL or ST_ENOMEM. */
int st_json_finish(const struct st_json *w);

/* 1 if s[0..len) is valid UTF-8 (no overlong forms, surrogates or code
 * points above U+10FFFF), else 0. */
int st_json_utf8_valid(const uint8_t *s, size_t len);

/* ---- reader ---- */

/* Validates the syntax of a whole document once (st_jsonr_validate), then
 * answers lookups of object members and walks arrays by rescanning: meant
 * for the small documents of the API (join requests, error answers, the
 * /cluster answer), not for large ones. Values are spans into the caller's
 * text, valid as long as the text. Strict RFC 8259 syntax: no leading zeros,
 * no trailing commas, no control characters in strings. */
#define ST_JSONR_DEPTH_MAX 32

struct st_jsonr_span {
    const char *p; /* first byte of the value (e.g. '{', '"', digit) */
    size_t len;    /* bytes of the whole value */
};

enum st_jsonr_type {
    ST_JSONR_INVALID = 0,
    ST_JSONR_OBJECT,
    ST_JSONR_ARRAY,
    ST_JSONR_STRING,
    ST_JSONR_NUMBER,
    ST_JSONR_LITERAL, /* true, false, null */
};

/* 0 if text[0..len) is one JSON value with optional surrounding whitespace;
 * ST_EINVAL if malformed, ST_ETOOBIG if nested deeper than
 * ST_JSONR_DEPTH_MAX. */
int st_jsonr_validate(const char *text, size_t len);

/* The span of the value in text[0..len) without the surrounding whitespace
 * (call after st_jsonr_validate succeeded). */
struct st_jsonr_span st_jsonr_root(const char *text, size_t len);

/* The type of a value span, from its first byte. */
enum st_jsonr_type st_jsonr_type(struct st_jsonr_span v);

/* Finds member `key` (compared with the raw, still-escaped name) of the
 * object `obj`; 1 and *out if found, else 0 (also when obj is no object). */
int st_jsonr_get(struct st_jsonr_span obj, const char *key, struct st_jsonr_span *out);

/* Iterates the elements of an array: *cursor starts at 0; returns 1 and the
 * next element, 0 at the end (also when arr is no array). */
int st_jsonr_array_next(struct st_jsonr_span arr, size_t *cursor, struct st_jsonr_span *out);

/* Converters. 0 or ST_EINVAL (wrong type, overflow). */
int st_jsonr_uint(struct st_jsonr_span v, uint64_t *out); /* digits only */
int st_jsonr_int(struct st_jsonr_span v, int64_t *out);   /* -?digits */
int st_jsonr_bool(struct st_jsonr_span v, bool *out);
/* Copies a string without escapes into out (cap bytes, NUL-terminated);
 * ST_EINVAL for other types, for escapes, or when it does not fit. For the
 * addresses and ids the node reads, which are never escaped. */
int st_jsonr_string(struct st_jsonr_span v, char *out, size_t cap);
/* Copies a string value unescaped (UTF-8; \uXXXX pairs joined) into dst,
 * NUL-terminated, or the raw text of any other value. Returns 0, ST_EINVAL on
 * a bad escape or lone surrogate, ST_ETOOBIG when it does not fit (dst then
 * holds a truncated prefix). dst_cap > 0. */
int st_jsonr_copy(struct st_jsonr_span v, char *dst, size_t dst_cap);

#endif
