/* Fuzz target bodies for the parsers of text that arrives from outside: the
 * JSON reader (request bodies, join replies, answers read by the CLI), the
 * URL codec (paths and queries of every request) and the HTTP response
 * parser (answers read by the node's client and the CLI). Shared by the
 * libFuzzer drivers (tests/fuzz/fuzz_{json,url,http_response}.c) and the
 * deterministic smoke tests CI runs (tests/unit/util/test_fuzz_smoke.c,
 * tests/unit/http/test_fuzz_smoke.c).
 *
 * Every input is copied to an exact-size heap buffer so ASan sees any
 * over-read. Beyond "no crash": results are one of the documented codes,
 * spans stay inside the input, and what the writers produce the readers
 * read back unchanged. */
#ifndef ST_FUZZ_TARGETS_TEXT_H
#define ST_FUZZ_TARGETS_TEXT_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/response.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/json.h"
#include "util/url.h"

static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    ST_ASSERT(copy != NULL);
    if (size > 0) memcpy(copy, data, size);
    return copy;
}

static inline int fuzz_span_inside(struct st_jsonr_span v, const char *text, size_t size)
{
    return v.p >= text && v.len <= size && v.p + v.len <= text + size;
}

/* Reads every value reachable by the reader's API, the way callers do. */
static inline void fuzz_json_walk(struct st_jsonr_span v, const char *text, size_t size, int depth)
{
    ST_ASSERT(depth <= ST_JSONR_DEPTH_MAX + 1);
    ST_ASSERT(fuzz_span_inside(v, text, size));
    char small[64];
    int rc = st_jsonr_copy(v, small, sizeof(small));
    ST_ASSERT(rc == 0 || rc == ST_EINVAL || rc == ST_ETOOBIG);
    ST_ASSERT(strlen(small) < sizeof(small));
    uint64_t u;
    int64_t i;
    bool b;
    (void)st_jsonr_uint(v, &u);
    (void)st_jsonr_int(v, &i);
    (void)st_jsonr_bool(v, &b);
    (void)st_jsonr_string(v, small, sizeof(small));
    struct st_jsonr_span e;
    switch (st_jsonr_type(v)) {
    case ST_JSONR_ARRAY: {
        size_t cursor = 0;
        while (st_jsonr_array_next(v, &cursor, &e))
            fuzz_json_walk(e, text, size, depth + 1);
        break;
    }
    case ST_JSONR_OBJECT: {
        static const char *const keys[] = {"id", "raft", "http", "members", "code", "error", "a"};
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            if (st_jsonr_get(v, keys[k], &e)) fuzz_json_walk(e, text, size, depth + 1);
        }
        break;
    }
    default:
        break;
    }
}

static inline int fuzz_json_target(const uint8_t *data, size_t size)
{
    char *text = (char *)fuzz_copy(data, size);
    int rv = st_jsonr_validate(text, size);
    ST_ASSERT(rv == 0 || rv == ST_EINVAL || rv == ST_ETOOBIG);
    if (rv == 0) {
        struct st_jsonr_span root = st_jsonr_root(text, size);
        ST_ASSERT(root.len > 0 && fuzz_span_inside(root, text, size));
        ST_ASSERT(st_jsonr_validate(root.p, root.len) == 0);
        fuzz_json_walk(root, text, size, 0);
    }

    /* The writer: the input as a string in an array reads back as itself
     * when it is UTF-8, and as something at least as long otherwise. */
    struct st_membuf b;
    struct st_json w;
    st_membuf_init(&b);
    st_json_init(&w, &b);
    st_json_array_begin(&w);
    st_json_string(&w, text, size);
    st_json_array_end(&w);
    ST_ASSERT(st_json_finish(&w) == 0);
    ST_ASSERT(st_jsonr_validate(b.data, b.len) == 0);
    struct st_jsonr_span arr = st_jsonr_root(b.data, b.len), el;
    size_t cursor = 0;
    ST_ASSERT(st_jsonr_array_next(arr, &cursor, &el) == 1);
    size_t cap = 2 * size + 1;
    char *back = malloc(cap);
    ST_ASSERT(back != NULL);
    ST_ASSERT(st_jsonr_copy(el, back, cap) == 0);
    if (st_json_utf8_valid(data, size)) ST_ASSERT(memcmp(back, text, size) == 0 && back[size] == 0);
    free(back);
    st_membuf_free(&b);
    free(text);
    return rv;
}

static inline int fuzz_url_target(const uint8_t *data, size_t size)
{
    const char *in = (const char *)fuzz_copy(data, size);
    uint8_t *out = malloc(size ? size : 1);
    ST_ASSERT(out != NULL);
    size_t n = 0;
    int rv = st_url_decode(in, size, 0, out, size, &n);
    ST_ASSERT(rv == 0 || rv == ST_EINVAL);
    if (rv == 0) ST_ASSERT(n <= size);
    int rv_plus = st_url_decode(in, size, ST_URL_PLUS_AS_SPACE, out, size, &n);
    ST_ASSERT(rv_plus == rv); /* '+' changes bytes, never validity */
    rv_plus = st_url_decode(in, size, ST_URL_PLUS_AS_SPACE, out, size / 2, &n);
    ST_ASSERT(rv_plus == 0 || rv_plus == ST_EINVAL || rv_plus == ST_ETOOBIG);

    /* Whatever the bytes, encoding then decoding gives them back. */
    size_t elen = st_url_encoded_len(in, size);
    char *enc = malloc(elen + 1);
    ST_ASSERT(enc != NULL);
    size_t written = 0;
    ST_ASSERT(st_url_encode(in, size, enc, elen + 1, &written) == 0 && written == elen);
    ST_ASSERT(st_url_decode(enc, elen, 0, out, size, &n) == 0 && n == size);
    ST_ASSERT(size == 0 || memcmp(out, in, size) == 0);
    free(enc);

    /* The input as an address. */
    char addr[300], host[64];
    size_t alen = size < sizeof(addr) - 1 ? size : sizeof(addr) - 1;
    memcpy(addr, in, alen);
    addr[alen] = '\0';
    uint16_t port = 0;
    if (st_url_hostport_split(addr, host, sizeof(host), &port) == 0)
        ST_ASSERT(host[0] != '\0' && strlen(host) < sizeof(host) && port > 0);
    free(out);
    free((void *)(uintptr_t)in);
    return rv;
}

static inline void fuzz_response_check(const char *buf, size_t size, int rc,
                                       const struct http_response *r)
{
    ST_ASSERT(rc == 0 || rc == ST_EPROTO || rc == ST_ETOOBIG);
    if (rc != 0 || !r->complete) return;
    ST_ASSERT(r->status >= 100 && r->status <= 599);
    ST_ASSERT(r->head == buf && r->head_len <= size);
    ST_ASSERT(r->body >= buf && r->body + r->body_len <= buf + size);
    ST_ASSERT(r->body_len <= (1u << 16));
    ST_ASSERT(strlen(r->etag) < sizeof(r->etag));
}

static inline int fuzz_http_response_target(const uint8_t *data, size_t size)
{
    const size_t body_max = 1u << 16;
    struct http_response r, r_eof;
    char *buf = (char *)fuzz_copy(data, size);
    int rv = http_response_parse(buf, size, false, body_max, &r);
    fuzz_response_check(buf, size, rv, &r);
    char *again = (char *)fuzz_copy(data, size);
    int rv_eof = http_response_parse(again, size, true, body_max, &r_eof);
    fuzz_response_check(again, size, rv_eof, &r_eof);
    /* A response complete before EOF is the same response at EOF. */
    if (rv == 0 && r.complete) {
        ST_ASSERT(rv_eof == 0 && r_eof.complete && r_eof.status == r.status);
        ST_ASSERT(r_eof.body_len == r.body_len);
        ST_ASSERT(r.body_len == 0 || memcmp(r.body - buf + again, r_eof.body, r.body_len) == 0);
    }
    /* Every prefix of a complete response is incomplete or complete, never
     * an error the whole does not have (the caller reads in pieces). */
    if (rv == 0 && r.complete && size > 0) {
        for (size_t cut = 0; cut < size; cut += 1 + cut / 8) {
            memcpy(again, data, size);
            struct http_response p;
            int prv = http_response_parse(again, cut, false, body_max, &p);
            ST_ASSERT(prv == 0);
        }
    }
    free(again);
    free(buf);
    return rv == 0 && r.complete ? 0 : 1;
}

#endif
