/* HTTP server: http_parser callbacks, bad-request answers, and the loop that
 * parses buffered input and hands requests to the handler. */
#include "http/server_int.h"

#include <ctype.h>
#include <http_parser.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/fdlimit.h"
#include "util/list.h"
#include "util/outbudget.h"
#include "util/trace.h"

/* ---------- parsing ---------- */

static int reject(struct http_conn *c, int status, const char *msg)
{
    c->err_status = status;
    c->err_msg = msg;
    return -1;
}

static int head_append(struct http_conn *c, struct http_slot *s, const char *at, size_t len,
                       int status_if_full)
{
    /* The NUL terminators have their own reserve in head_cap (2 per header
     * + 1 for the URL + slack), so only received bytes count against the bound. */
    if ((uint64_t)s->head_bytes + len > c->srv->cfg.head_bytes_max)
        return reject(c, status_if_full,
                      status_if_full == 414 ? "request line too long"
                                            : "request headers too large");
    ST_ASSERT((uint64_t)s->head_len + len + 3 <= s->head_cap);
    memcpy(s->head + s->head_len, at, len);
    s->head_len += (uint32_t)len;
    s->head_bytes += (uint32_t)len;
    s->head[s->head_len] = 0; /* every span is NUL-terminated at all times (trailers too) */
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    ST_ASSERT(c->cur == NULL);
    struct http_slot *s = http_slot_take(c);
    if (!s) return reject(c, 503, "out of memory");
    c->cur = s;
    c->cur_start_ms = uv_now(c->srv->loop);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    int rc = head_append(c, s, at, len, 414);
    if (rc == 0) s->url_len += (uint32_t)len;
    return rc;
}

static void end_url(struct http_slot *s)
{
    if (!s->url_done) {
        s->head[s->head_len++] = 0;
        s->url_done = 1;
    }
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    end_url(s);
    if (s->n_hdrs == 0 || s->in_value) {
        if (s->n_hdrs > 0) s->head[s->head_len++] = 0; /* end of the previous value */
        if (s->n_hdrs == c->srv->cfg.headers_max) return reject(c, 431, "too many request headers");
        struct hdr_span *h = &s->hdrs[s->n_hdrs++];
        h->name_off = s->head_len;
        h->name_len = 0;
        h->value_off = 0;
        h->value_len = 0;
        s->in_value = 0;
    }
    int rc = head_append(c, s, at, len, 431);
    if (rc == 0) s->hdrs[s->n_hdrs - 1].name_len += (uint32_t)len;
    return rc;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    struct hdr_span *h = &s->hdrs[s->n_hdrs - 1];
    if (!s->in_value) {
        s->head[s->head_len++] = 0; /* end of the name */
        h->value_off = s->head_len;
        s->in_value = 1;
    }
    int rc = head_append(c, s, at, len, 431);
    if (rc == 0) h->value_len += (uint32_t)len;
    return rc;
}

static enum http_verb verb_of(unsigned m)
{
    switch (m) {
    case HTTP_GET:
        return HTTP_VERB_GET;
    case HTTP_HEAD:
        return HTTP_VERB_HEAD;
    case HTTP_PUT:
        return HTTP_VERB_PUT;
    case HTTP_POST:
        return HTTP_VERB_POST;
    case HTTP_DELETE:
        return HTTP_VERB_DELETE;
    default:
        return HTTP_VERB_OTHER;
    }
}

static int on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    struct http_request *req = &s->req;
    end_url(s);
    if (s->n_hdrs > 0 && s->in_value)
        s->head[s->head_len++] = 0;
    else if (s->n_hdrs > 0) { /* a name without value callback: empty value */
        s->head[s->head_len++] = 0;
        s->hdrs[s->n_hdrs - 1].value_off = s->head_len;
        s->head[s->head_len++] = 0;
    }
    req->verb = verb_of(p->method);
    req->method = http_method_str((enum http_method)p->method);
    /* Split the URL: path '?' query '#' fragment. */
    char *url = s->head;
    if (s->url_len == 0 || url[0] != '/')
        return reject(c, 400, "request target must be an absolute path");
    char *hash = memchr(url, '#', s->url_len);
    size_t url_len = hash ? (size_t)(hash - url) : s->url_len;
    if (hash) *hash = 0;
    char *q = memchr(url, '?', url_len);
    req->path = url;
    if (q) {
        *q = 0;
        req->path_len = (size_t)(q - url);
        req->query = q + 1;
        req->query_len = url_len - req->path_len - 1;
    } else {
        req->path_len = url_len;
    }
    for (uint32_t i = 0; i < s->n_hdrs; i++) {
        const struct hdr_span *h = &s->hdrs[i];
        const char *name = s->head + h->name_off;
        if (http_ascii_casecmp_n(name, h->name_len, "If-Match") == 0) {
            req->if_match = s->head + h->value_off;
            req->if_match_len = h->value_len;
        } else if (http_ascii_casecmp_n(name, h->name_len, "If-None-Match") == 0) {
            req->if_none_match = s->head + h->value_off;
            req->if_none_match_len = h->value_len;
        }
    }
    if (p->flags & F_CONTENTLENGTH) {
        req->has_content_length = 1;
        req->content_length = p->content_length;
        if (p->content_length > c->srv->cfg.body_bytes_max)
            return reject(c, 413, "request body too large");
        if (p->content_length > 0 &&
            http_buf_reserve((char **)&s->body, &s->body_cap, (size_t)p->content_length) != 0)
            return reject(c, 503, "out of memory");
    }
    /* Expect: 100-continue, answered only when no earlier response is due
     * (an interim response must not overtake them). */
    size_t elen = 0;
    const char *expect = http_request_header(req, "Expect", &elen);
    if (expect && http_ascii_casecmp_n(expect, elen, "100-continue") == 0 && c->count == 1 &&
        !c->writing) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (http_conn_write_raw(c, cont, sizeof(cont) - 1) != 0)
            return reject(c, 503, "cannot send 100 Continue");
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_slot *s = c->cur;
    if (s->body_len + len > c->srv->cfg.body_bytes_max)
        return reject(c, 413, "request body too large");
    if (http_buf_reserve((char **)&s->body, &s->body_cap, s->body_len + len) != 0)
        return reject(c, 503, "out of memory");
    memcpy(s->body + s->body_len, at, len);
    s->body_len += len;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_server *srv = c->srv;
    struct http_slot *s = c->cur;
    struct http_request *req = &s->req;
    c->cur = NULL;
    req->body = s->body_len ? s->body : (const uint8_t *)"";
    req->body_len = s->body_len;
    req->keep_alive = http_should_keep_alive(p) && !p->upgrade && !srv->closing;
    s->http10 = p->http_major == 1 && p->http_minor == 0;
    if (!req->keep_alive) {
        s->close_after = 1;
        c->no_more = 1;
    }
    req->tls_user = c->tls_user[0] ? c->tls_user : NULL;
    s->state = SLOT_HANDLER;
    c->in_handler++;
    srv->stats.requests++;
    srv->handler(req, srv->handler_ctx);
    /* The handler may have completed it (and even closed the connection). */
    if (c->closing || c->no_more || c->count == srv->cfg.pipeline_max || http_conn_out_full(c))
        http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* A request the server answers itself (malformed, too large): 4xx, close. */
void http_conn_parse_error(struct http_conn *c, enum http_errno e)
{
    int status = c->err_status;
    const char *msg = c->err_msg;
    if (!status) {
        status = e == HPE_HEADER_OVERFLOW ? 431 : 400;
        msg = e == HPE_HEADER_OVERFLOW ? "request headers too large" : http_errno_description(e);
    }
    c->no_more = 1;
    c->srv->stats.requests_bad++;
    struct http_slot *s = c->cur;
    c->cur = NULL;
    if (!s) {
        if (c->count == c->srv->cfg.pipeline_max || !(s = http_slot_take(c))) {
            http_conn_close(c);
            return;
        }
    }
    s->close_after = 1;
    s->state = SLOT_HANDLER;
    c->in_handler++;
    ST_TRACE_DEBUG("http", "bad request: %d %s", status, msg);
    http_response_error(&s->req, status, status, msg);
}

/* Parses buffered input into requests (handing each to the handler), then
 * writes the responses that are ready in one batch; repeats while that freed
 * ring slots and input is waiting. Not reentrant: a call from inside (a
 * handler answering synchronously) returns at once and the outer loop
 * picks the work up. */
void http_conn_process(struct http_conn *c)
{
    if (c->in_execute) return;
    for (;;) {
        c->in_execute = 1;
        while (c->rlen > 0 && !c->closing && !c->no_more && c->count < c->srv->cfg.pipeline_max &&
               !http_conn_out_full(c)) {
            if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) http_parser_pause(&c->parser, 0);
            size_t n =
                http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->rstart, c->rlen);
            ST_ASSERT(n <= c->rlen);
            c->rstart += n;
            c->rlen -= n;
            enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
            if (e == HPE_PAUSED) continue;
            if (c->closing) break;
            if (e != HPE_OK) {
                http_conn_parse_error(c, e);
                break;
            }
            if (c->rlen > 0 && n == 0) { /* no progress without error: defensive */
                http_conn_parse_error(c, HPE_UNKNOWN);
                break;
            }
        }
        if (c->no_more || c->rlen == 0) {
            c->rstart = 0;
            c->rlen = 0; /* nothing after a final request is ever parsed */
        }
        c->in_execute = 0;
        if (c->closing) return;
        uint32_t before = c->count;
        int finish = http_conn_flush(c);
        if (c->closing) return;
        if (finish) {
            http_conn_finish(c);
            return;
        }
        if (c->count < before) {
            if ((c->eof && c->count == 0) || (c->srv->closing && c->count == 0)) {
                http_conn_close(c);
                return;
            }
            http_conn_touch(c);
            if (c->rlen > 0 && !c->no_more) continue; /* slots were freed: parse what is waiting */
        }
        break;
    }
    http_conn_update_reading(c);
}
