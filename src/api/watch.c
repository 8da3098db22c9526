/* GET /watch (watch.h; docs/HTTP-API.md "Watches").
 *
 *   route --read barrier--> open (410 compacted, 503 too many) --> stream
 *   stream: more (the last chunk went out) --> pump: items from
 *           node_watch_next into one chunk --> write ... | nothing: wait for
 *           notify --> pump
 *   a CANCELED item is the last line: the chunk after it ends the stream.
 *
 * One chunk in flight per watch: a client that stops reading holds one
 * chunk here and its place in the node's history, which cancels it once the
 * history moves past it ("slow"). */
#include "api/watch.h"

#include "api/api_int.h"
#include "node/auth.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node.h"
#include "stcache/errors.h"
#include "util/json.h"
#include "util/membuf.h"
#include "util/url.h"

struct api_watch {
    struct node *node;
    struct http_request *req;
    struct node_watch *watch;
    struct node_watch_args args;
    uint64_t start_us;
    bool keys_only;
    bool can_write; /* more ran: the next chunk may be written */
    bool ending;    /* the cancel line is out: end the stream at the next more */
    uint8_t key[];
};

/* Output lines are built here and copied by http_response_stream_write:
 * one buffer for every watch of the process (everything runs on the loop
 * thread, and nothing stays in it between calls). */
static struct st_membuf watch_scratch;

static void send_json_error(struct node *n, struct http_request *req, uint64_t start_us, int status,
                            const char *code, const char *text, uint64_t oldest)
{
    struct st_membuf b;
    st_membuf_init(&b);
    struct st_json w;
    api_error_body_begin(&w, &b, code, text);
    if (oldest) {
        st_json_key(&w, "oldest_version");
        st_json_uint(&w, oldest);
    }
    api_error_body_end(&w);
    node_metrics_request(n, NODE_ROUTE_KV_GET, status, node_now_us() - start_us);
    if (b.oom)
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
    else
        http_response_send(req, status, "application/json", NULL, 0, b.data, b.len);
    st_membuf_free(&b);
}

static void watch_free(struct api_watch *aw)
{
    node_watch_close(aw->watch);
    free(aw);
}

static void json_bytes(struct st_json *w, const char *name, const uint8_t *s, size_t len)
{
    if (st_json_utf8_valid(s, len)) {
        st_json_key(w, name);
        st_json_string(w, s, len);
        return;
    }
    char k[32];
    snprintf(k, sizeof k, "%s_base64", name);
    st_json_key(w, k);
    st_json_base64(w, s, len);
}

/* One line per item; 1 when it was the CANCELED one (the last). */
static bool item_line(struct api_watch *aw, struct st_membuf *b, const struct node_watch_item *it)
{
    struct st_json w;
    st_json_init(&w, b);
    st_json_object_begin(&w);
    bool last = false;
    switch (it->kind) {
    case NODE_WATCH_EVENT:
        st_json_key(&w, "type");
        st_json_cstr(&w, node_event_type_name(it->ev.type));
        json_bytes(&w, "key", it->ev.key, it->ev.key_len);
        if (it->ev.type == NODE_EVENT_PUT && it->ev.value_type == NODE_VALUE_HASH) {
            st_json_key(&w, "value_type"); /* a Redis hash: no value (docs/HTTP-API.md) */
            st_json_cstr(&w, "hash");
        } else if (it->ev.type == NODE_EVENT_PUT && !aw->keys_only) {
            json_bytes(&w, "value", it->ev.value, it->ev.value_len);
        }
        st_json_key(&w, "version");
        st_json_uint(&w, it->ev.version);
        if (it->ev.type == NODE_EVENT_PUT) {
            st_json_key(&w, "expire_at_ms");
            if (it->ev.expire_at_ms)
                st_json_uint(&w, it->ev.expire_at_ms);
            else
                st_json_null(&w);
        }
        break;
    case NODE_WATCH_PROGRESS:
        st_json_key(&w, "progress");
        st_json_object_begin(&w);
        st_json_key(&w, "applied");
        st_json_uint(&w, it->applied);
        st_json_object_end(&w);
        break;
    case NODE_WATCH_CANCELED:
        st_json_key(&w, "canceled");
        st_json_object_begin(&w);
        st_json_key(&w, "reason");
        st_json_cstr(&w, it->reason);
        st_json_key(&w, "version");
        st_json_uint(&w, it->version);
        st_json_object_end(&w);
        last = true;
        break;
    }
    st_json_object_end(&w);
    st_membuf_append(b, "\n", 1);
    return last;
}

/* Writes what the watch has now as one chunk, if the last one went out. */
static void watch_pump(struct api_watch *aw)
{
    if (!aw->can_write) return;
    struct st_membuf *b = &watch_scratch;
    st_membuf_reset(b);
    bool last = false;
    struct node_watch_item it;
    while (!last && b->len < API_WATCH_PIECE_BYTES && node_watch_next(aw->watch, &it))
        last = item_line(aw, b, &it);
    if (b->oom) {
        st_membuf_free(b);
        http_response_stream_abort(aw->req);
        watch_free(aw);
        return;
    }
    if (b->len == 0) return; /* the node notifies when there is more */
    aw->can_write = false;
    aw->ending = last;
    int rc = http_response_stream_write(aw->req, b->data, b->len);
    if (b->len > API_WATCH_PIECE_BYTES) st_membuf_free(b); /* a large value: do not keep it */
    if (rc != 0) watch_free(aw);                           /* the client is gone (req consumed) */
}

static void watch_notify_cb(void *ctx)
{
    watch_pump(ctx);
}

static void watch_more_cb(struct http_request *req, void *ctx)
{
    struct api_watch *aw = ctx;
    if (http_request_orphaned(req)) {
        http_response_stream_abort(req);
        watch_free(aw);
        return;
    }
    if (aw->ending) {
        (void)http_response_stream_end(req); /* consumes req in every case */
        watch_free(aw);
        return;
    }
    aw->can_write = true;
    watch_pump(aw);
}

static void watch_ready_cb(void *ctx, const struct node_read_result *res)
{
    struct api_watch *aw = ctx;
    if (res->status != 0) {
        const char *code = res->status == ST_ENOTLEADER  ? "no_leader"
                           : res->status == ST_ECLOSED   ? "shutting_down"
                           : res->status == ST_ETIMEDOUT ? "timeout"
                                                         : "unavailable";
        send_json_error(aw->node, aw->req, aw->start_us, 503, code, st_strerror(res->status), 0);
        free(aw);
        return;
    }
    uint64_t oldest = 0;
    int rc = node_watch_open(aw->node, &aw->args, watch_notify_cb, aw, &aw->watch, &oldest);
    if (rc == ST_ECOMPACTED) {
        send_json_error(aw->node, aw->req, aw->start_us, 410, "compacted",
                        "from_version is older than the watch history", oldest);
        free(aw);
        return;
    }
    if (rc != 0) {
        send_json_error(aw->node, aw->req, aw->start_us, 503,
                        rc == ST_EBUSY ? "too_many_watches" : "unavailable",
                        rc == ST_EBUSY ? "too many watches open (--watch-max)" : st_strerror(rc),
                        0);
        free(aw);
        return;
    }
    struct node_watch_stats st;
    node_watch_stats_get(aw->node, &st);
    char oldest_s[24];
    snprintf(oldest_s, sizeof oldest_s, "%" PRIu64, st.history_first);
    const struct http_header hdrs[] = {{"X-Stcache-Oldest-Version", oldest_s},
                                       {"Cache-Control", "no-store"}};
    node_metrics_request(aw->node, NODE_ROUTE_KV_GET, 200, node_now_us() - aw->start_us);
    rc = http_response_stream_begin(aw->req, 200, "application/x-ndjson", hdrs, 2,
                                    HTTP_STREAM_CHUNKED, watch_more_cb, aw);
    if (rc != 0 || aw->req->verb == HTTP_VERB_HEAD) watch_free(aw); /* HEAD: complete at begin */
}

/* A decoded query parameter into dst (cap bytes): 1 found, 0 absent,
 * ST_EINVAL malformed. */
static int param_bytes(const struct http_request *req, const char *name, uint8_t *dst, size_t cap,
                       size_t *len)
{
    const char *v;
    size_t vl;
    if (!req->query || !http_query_get(req->query, req->query_len, name, &v, &vl)) return 0;
    return st_url_decode(v, vl, ST_URL_PLUS_AS_SPACE, dst, cap, len) == 0 ? 1 : ST_EINVAL;
}

static int param_u64(const struct http_request *req, const char *name, uint64_t *out)
{
    char s[24];
    size_t len = 0;
    int q = param_bytes(req, name, (uint8_t *)s, sizeof s - 1, &len);
    if (q <= 0) return q;
    s[len] = '\0';
    if (len == 0) return ST_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10) return ST_EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return 1;
}

static int param_flag(const struct http_request *req, const char *name, bool *out)
{
    char s[8];
    size_t len = 0;
    int q = param_bytes(req, name, (uint8_t *)s, sizeof s - 1, &len);
    *out = false;
    if (q <= 0) return q;
    s[len] = '\0';
    if (strcmp(s, "1") == 0 || strcmp(s, "true") == 0)
        *out = true;
    else if (strcmp(s, "0") != 0 && strcmp(s, "false") != 0)
        return ST_EINVAL;
    return 1;
}

void api_watch_route(struct node *n, struct http_request *req, const struct node_principal *who)
{
    uint64_t start_us = node_now_us();
    if (req->verb != HTTP_VERB_GET && req->verb != HTTP_VERB_HEAD) {
        struct http_header h = {"Allow", "GET, HEAD"};
        const char *body = "{\"error\":\"method not allowed\",\"code\":\"method_not_allowed\"}\n";
        node_metrics_request(n, NODE_ROUTE_OTHER, 405, 0);
        http_response_send(req, 405, "application/json", &h, 1, body, strlen(body));
        return;
    }
    const struct node_config *cfg = node_config_get(n);
    size_t cap = req->query_len + 1;
    struct api_watch *aw = calloc(1, sizeof(*aw) + cap);
    if (!aw) {
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
        return;
    }
    aw->node = n;
    aw->req = req;
    aw->start_us = start_us;
    size_t plen = 0, klen = 0;
    int qp = param_bytes(req, "prefix", aw->key, cap, &plen);
    int qk = qp == 1 ? 0 : param_bytes(req, "key", aw->key, cap, &klen);
    const char *bad = NULL, *code = "bad_request";
    if (qp < 0 || qk < 0) {
        bad = "prefix and key must be percent-encoded";
    } else if (qp == 1 && param_bytes(req, "key", aw->key + plen, cap - plen, &klen) != 0) {
        bad = "give prefix or key, not both";
    } else if (qp == 0 && qk == 0) {
        bad = "give prefix (prefix= watches every key) or key";
        code = "missing_range";
    } else if (plen > cfg->max_key_bytes || klen > cfg->max_key_bytes) {
        bad = "prefix or key longer than --max-key-bytes";
    } else if (qk == 1 && klen == 0) {
        bad = "key must not be empty";
    }
    aw->args.key = aw->key;
    aw->args.key_len = qp == 1 ? plen : klen;
    aw->args.exact = qk == 1;
    uint64_t progress = API_WATCH_PROGRESS_MS_DEFAULT;
    enum node_consistency cons = NODE_READ_LINEARIZABLE;
    if (!bad) {
        char c[16];
        size_t cl = 0;
        int qc = param_bytes(req, "consistency", (uint8_t *)c, sizeof c - 1, &cl);
        if (qc == 1) {
            c[cl] = '\0';
            if (strcmp(c, "stale") == 0)
                cons = NODE_READ_STALE;
            else if (strcmp(c, "lease") == 0)
                cons = NODE_READ_LEASE;
            else if (strcmp(c, "linearizable") != 0)
                qc = ST_EINVAL;
        }
        if (param_u64(req, "from_version", &aw->args.from_version) < 0)
            bad = "from_version must be a positive integer";
        else if (param_u64(req, "progress_ms", &progress) < 0 || progress > 3600000)
            bad = "progress_ms must be 0 to 3600000";
        else if (param_flag(req, "keys_only", &aw->keys_only) < 0)
            bad = "keys_only must be 0, 1, true or false";
        else if (qc < 0) {
            bad = "consistency must be linearizable, lease or stale";
            code = "bad_consistency";
        }
    }
    if (bad) {
        send_json_error(n, req, start_us, 400, code, bad, 0);
        free(aw);
        return;
    }
    bool allowed = aw->args.exact
                       ? node_auth_key_allowed(n, who, false, aw->key, klen)
                       : node_auth_range_allowed(n, who, aw->key, plen, NULL, 0, NULL, 0);
    if (!allowed) {
        send_json_error(n, req, start_us, 403, "forbidden",
                        "this user may not read every key of this watch", 0);
        free(aw);
        return;
    }
    aw->args.progress_ms = (uint32_t)progress;
    int rc = node_read_barrier(n, cons, watch_ready_cb, aw);
    if (rc != 0) {
        struct node_read_result res;
        memset(&res, 0, sizeof res);
        res.status = rc;
        watch_ready_cb(aw, &res);
    }
}
