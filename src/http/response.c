/* HTTP/1.1 response parsing on http_parser. Contract in http/response.h.
 *
 * A chunked body is decoded in place only once the whole response has been
 * seen: a first pass checks completeness without writing, a second pass
 * moves each chunk's data down behind the previous one (http_parser has
 * consumed those bytes already, so the move never overwrites unread input).
 * A response still arriving is therefore never modified, and parsing it
 * again from the start with more bytes stays valid. */
#include "http/response.h"

#include <http_parser.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "stcache/errors.h"

struct response_pass {
    struct http_response *out;
    char *buf;
    size_t body_bytes_max;
    bool decode; /* second pass: move chunk data into place */
    bool headers_done;
    bool complete;
    bool too_big;
    bool bad;
    bool te_seen, te_chunked;
    const char *field; /* name of the header whose value comes next */
    size_t field_len;
    size_t head_end; /* offset just past the last byte of the status line or a header */
    bool body_seen;
    size_t body_start;
    size_t body_len;
};

static bool response_name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

static void response_mark_head(struct response_pass *r, const char *at, size_t len)
{
    size_t end = (size_t)(at - r->buf) + len;
    if (end > r->head_end) r->head_end = end;
}

static int response_on_status(http_parser *p, const char *at, size_t len)
{
    response_mark_head(p->data, at, len);
    return 0;
}

/* RFC 9110 token characters (http_parser lets some others through). */
static bool response_token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int response_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct response_pass *r = p->data;
    for (size_t i = 0; i < len; i++) {
        if (!response_token_char((unsigned char)at[i])) {
            r->bad = true;
            return -1;
        }
    }
    r->field = at;
    r->field_len = len;
    response_mark_head(r, at, len);
    return 0;
}

static int response_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct response_pass *r = p->data;
    struct http_response *out = r->out;
    response_mark_head(r, at, len);
    if (response_name_is(r->field, r->field_len, "etag")) {
        const char *v = at;
        size_t vl = len;
        if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') {
            v++;
            vl -= 2;
        }
        out->has_etag = true;
        if (vl < sizeof(out->etag)) {
            memcpy(out->etag, v, vl);
            out->etag[vl] = '\0';
        } else {
            out->etag[0] = '\0';
        }
    } else if (response_name_is(r->field, r->field_len, "content-type")) {
        out->json = len >= 16 && strncasecmp(at, "application/json", 16) == 0;
    } else if (response_name_is(r->field, r->field_len, "transfer-encoding")) {
        r->te_seen = true;
        r->te_chunked = response_name_is(at, len, "chunked");
    }
    return 0;
}

static int response_on_headers_complete(http_parser *p)
{
    struct response_pass *r = p->data;
    r->headers_done = true;
    if (r->head_end > HTTP_RESPONSE_HEAD_BYTES_MAX) {
        r->too_big = true;
        return -1;
    }
    if (p->status_code < 100 || p->status_code > 599 || (r->te_seen && !r->te_chunked)) {
        r->bad = true;
        return -1;
    }
    if (p->content_length != ULLONG_MAX && p->content_length > r->body_bytes_max) {
        r->too_big = true;
        return -1;
    }
    r->out->status = (int)p->status_code;
    return 0;
}

static int response_on_body(http_parser *p, const char *at, size_t len)
{
    struct response_pass *r = p->data;
    if (!r->body_seen) {
        r->body_seen = true;
        r->body_start = (size_t)(at - r->buf);
    }
    if (len > r->body_bytes_max - r->body_len) {
        r->too_big = true;
        return -1;
    }
    if (r->decode) memmove(r->buf + r->body_start + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int response_on_message_complete(http_parser *p)
{
    struct response_pass *r = p->data;
    r->complete = true;
    http_parser_pause(p, 1); /* a second response (pipelining) is not ours */
    return 0;
}

static const http_parser_settings response_settings = {
    .on_status = response_on_status,
    .on_header_field = response_on_header_field,
    .on_header_value = response_on_header_value,
    .on_headers_complete = response_on_headers_complete,
    .on_body = response_on_body,
    .on_message_complete = response_on_message_complete,
};

static int response_pass_run(struct response_pass *r, size_t len, bool eof)
{
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = r;
    memset(r->out, 0, sizeof(*r->out));
    http_parser_execute(&p, &response_settings, r->buf, len);
    enum http_errno e = HTTP_PARSER_ERRNO(&p);
    if (e == HPE_OK && !r->complete && eof) {
        http_parser_execute(&p, &response_settings, NULL, 0); /* ends a body read until EOF */
        e = HTTP_PARSER_ERRNO(&p);
    }
    if (r->too_big || e == HPE_HEADER_OVERFLOW) return ST_ETOOBIG;
    if (r->complete) return 0;
    if (e != HPE_OK || r->bad) return ST_EPROTO;
    if (!r->headers_done && len > HTTP_RESPONSE_HEAD_BYTES_MAX) return ST_ETOOBIG;
    return eof ? ST_EPROTO : 0;
}

int http_response_parse(char *buf, size_t len, bool eof, size_t body_bytes_max,
                        struct http_response *out)
{
    struct response_pass r = {.out = out, .buf = buf, .body_bytes_max = body_bytes_max};
    int rc = response_pass_run(&r, len, eof);
    if (rc == 0 && r.complete && r.te_chunked) {
        r = (struct response_pass){
            .out = out, .buf = buf, .body_bytes_max = body_bytes_max, .decode = true};
        rc = response_pass_run(&r, len, eof);
    }
    if (rc != 0 || !r.complete) {
        int status = out->status;
        memset(out, 0, sizeof(*out));
        out->status = status;
        return rc;
    }
    out->complete = true;
    out->head = buf;
    out->head_len = r.head_end;
    out->body = r.body_seen ? buf + r.body_start : buf + len;
    out->body_len = r.body_len;
    return 0;
}
