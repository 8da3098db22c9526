/* The stcache HTTP API routes (see api.h and docs/HTTP-API.md). */
#include "api/api.h"
#include "api/api_auth.h"
#include "api/api_int.h"
#include "api/guard.h"
#include "api/watch.h"
#include "node/auth.h"

#include "http/server.h"
#include "node/config.h"
#include "http/client.h"
#include "util/json.h"
#include "node/node.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/outbudget.h"
#include "util/trace.h"
#include "util/url.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MOD "http"
#define API_PARAM_MAX 256 /* decoded query parameter bytes (ids, ttl, addresses) */

enum api_kind {
    API_KV_PUT = 1,
    API_KV_GET,
    API_KV_DELETE,
    API_SEED_SET,
    API_SEED_GET,
    API_SEED_JOIN,
    API_JOIN,
    API_REMOVE,
    API_TRANSFER,
};

/* One request in flight through the node (pooled). */
struct api_req {
    struct api *api;
    struct http_request *req;
    enum node_route route;
    uint8_t kind;
    uint64_t start_us;
    raft_id member_id;
    uint8_t *key; /* decoded key (cap bytes) */
    size_t key_len, key_cap;
    struct http_client *proxy;
    struct node_backup *backup; /* GET /snapshot while it streams */
    struct api_req *next;
};

struct api {
    uv_loop_t *loop;
    struct node *node;
    struct http_server *srv;
    struct api_req *free_reqs;
    size_t reqs_live;
    struct st_membuf scratch;        /* JSON bodies; http_response_send copies */
    struct st_outbudget *out_budget; /* borrowed; NULL = none */
    /* Host allowlist in force: --allowed-hosts, else the loopback names for
     * a loopback listener, else "*". */
    char allowed_hosts[NODE_ALLOWED_HOSTS_MAX];
    bool hosts_explicit; /* allowed_hosts came from --allowed-hosts */
    /* Who sent the request being dispatched (api_request_principal): valid
     * during the handler call only; routes check it before they start. */
    struct node_principal who;
    void (*closed_cb)(struct api *a, void *ctx);
    void *closed_ctx;
};

/* ------------------------------------------------------------ responses */

static struct api_req *req_get(struct api *a, struct http_request *req, enum node_route route)
{
    struct api_req *ar = a->free_reqs;
    if (ar) {
        a->free_reqs = ar->next;
    } else {
        ar = calloc(1, sizeof *ar);
        if (!ar) return NULL;
    }
    ar->api = a;
    ar->req = req;
    ar->route = route;
    ar->kind = 0;
    ar->start_us = node_now_us();
    ar->member_id = 0;
    ar->key_len = 0;
    ar->proxy = NULL;
    ar->backup = NULL;
    ar->next = NULL;
    a->reqs_live++;
    return ar;
}

static void req_put(struct api_req *ar)
{
    struct api *a = ar->api;
    if (ar->key_cap > 4096) {
        free(ar->key);
        ar->key = NULL;
        ar->key_cap = 0;
    }
    ar->req = NULL;
    ar->next = a->free_reqs;
    a->free_reqs = ar;
    a->reqs_live--;
}

static void respond(struct api_req *ar, int status, const char *ctype,
                    const struct http_header *hdrs, size_t n_hdrs, const void *body, size_t len)
{
    struct api *a = ar->api;
    node_metrics_request(a->node, ar->route, status, node_now_us() - ar->start_us);
    http_response_send(ar->req, status, ctype, hdrs, n_hdrs, body, len);
    req_put(ar);
}

static void respond_json(struct api_req *ar, int status, struct st_membuf *b)
{
    respond(ar, status, "application/json", NULL, 0, b->data, b->len);
}

void api_error_body_begin(struct st_json *w, struct st_membuf *b, const char *code,
                          const char *text)
{
    st_membuf_reset(b);
    st_json_init(w, b);
    st_json_object_begin(w);
    st_json_key(w, "error");
    st_json_cstr(w, text);
    st_json_key(w, "code");
    st_json_cstr(w, code);
}

void api_error_body_end(struct st_json *w)
{
    st_json_object_end(w);
    st_membuf_append(w->out, "\n", 1);
}

static void respond_error(struct api_req *ar, int status, const char *code, const char *text)
{
    struct st_membuf *b = &ar->api->scratch;
    struct st_json w;
    api_error_body_begin(&w, b, code, text);
    if (strcmp(code, "no_leader") == 0 || strcmp(code, "not_leader") == 0) {
        struct node_info *info = malloc(sizeof *info);
        st_json_key(&w, "leader");
        if (info) {
            node_info_get(ar->api->node, info);
            if (info->leader)
                st_json_uint(&w, info->leader);
            else
                st_json_null(&w);
            st_json_key(&w, "leader_http");
            if (info->leader && info->leader_http[0])
                st_json_cstr(&w, info->leader_http);
            else
                st_json_null(&w);
            free(info);
        } else {
            st_json_null(&w);
        }
    }
    api_error_body_end(&w);
    respond_json(ar, status, b);
}

/* Maps a node error code to an HTTP status and error code name. */
static void respond_code(struct api_req *ar, int rc)
{
    switch (rc) {
    case ST_ENOTLEADER:
        respond_error(ar, 503, "no_leader", "no leader");
        break;
    case ST_ETIMEDOUT:
        respond_error(ar, 503, "timeout", "request timed out");
        break;
    case ST_ECANCELED:
        respond_error(ar, 503, "leadership_lost",
                      "leadership changed before the request was committed; retry");
        break;
    case ST_ECLOSED:
        respond_error(ar, 503, "shutting_down", "the node is shutting down");
        break;
    case ST_EBUSY:
    case ST_ECONFCHANGE:
    case ST_ETRANSFER:
        respond_error(ar, 503, "unavailable", st_strerror(rc));
        break;
    case ST_ETOOBIG:
        respond_error(ar, 413, "too_large", "key or value too large");
        break;
    case ST_EMEMLIMIT:
        respond_error(ar, 507, "out_of_memory",
                      "the memory limit (--max-memory) is reached; delete keys or raise it");
        break;
    case ST_EIDEMPOTENCY:
        respond_error(ar, 422, "idempotency_key_reused",
                      "this Idempotency-Key was used for a different request");
        break;
    case ST_EINVAL:
        respond_error(ar, 400, "bad_request", "invalid request");
        break;
    case ST_ENOENT:
        respond_error(ar, 404, "not_found", "not found");
        break;
    case ST_EEXIST:
        respond_error(ar, 409, "conflict", "already exists with other attributes");
        break;
    case ST_EPRECONDITION:
        respond_error(ar, 412, "precondition_failed", "precondition failed");
        break;
    case ST_EIO:
        respond_error(ar, 500, "storage_failed", "storage failed; the node stopped serving");
        break;
    case ST_ENOSPC:
        respond_error(ar, 507, "no_space",
                      "the node's disk is full: writes are refused until space is freed; "
                      "reads go on");
        break;
    default:
        respond_error(ar, 500, "internal", st_strerror(rc));
        break;
    }
}

/* ---------------------------------------------------------- parameters */

/* Decoded query parameter into out (cap bytes, NUL-terminated). 1 if
 * present, 0 if absent, ST_EINVAL if malformed or too long. */
static int query_param(const struct http_request *req, const char *name, char *out, size_t cap)
{
    const char *v;
    size_t vl;
    if (!req->query || !http_query_get(req->query, req->query_len, name, &v, &vl)) return 0;
    if (vl >= cap) return ST_EINVAL;
    size_t ol;
    if (st_url_decode(v, vl, ST_URL_PLUS_AS_SPACE, out, cap, &ol) != 0 || memchr(out, 0, ol))
        return ST_EINVAL;
    out[ol] = '\0';
    return 1;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!*s) return ST_EINVAL;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return ST_EINVAL;
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return ST_EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* "\"12\"", "W/\"12\"" or "12" -> 12. */
static int parse_etag(const char *s, size_t len, uint64_t *out)
{
    char tmp[32];
    if (len >= 2 && s[0] == 'W' && s[1] == '/') {
        s += 2;
        len -= 2;
    }
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"') {
        s++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof tmp) return ST_EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return parse_u64(tmp, out);
}

/* Decodes a key into ar->key. 0, ST_EINVAL (empty/malformed), ST_ETOOBIG. */
static int set_key(struct api_req *ar, const char *raw, size_t raw_len, bool plus_as_space)
{
    const struct node_config *cfg = node_config_get(ar->api->node);
    if (raw_len == 0) return ST_EINVAL;
    if (raw_len > ar->key_cap) {
        uint8_t *k = realloc(ar->key, raw_len);
        if (!k) return ST_ENOMEM;
        ar->key = k;
        ar->key_cap = raw_len;
    }
    if (st_url_decode(raw, raw_len, plus_as_space ? ST_URL_PLUS_AS_SPACE : 0, ar->key, raw_len,
                      &ar->key_len) != 0)
        return ST_EINVAL;
    if (ar->key_len == 0) return ST_EINVAL;
    if (ar->key_len > cfg->max_key_bytes) return ST_ETOOBIG;
    return 0;
}

/* --------------------------------------------------------- kv callbacks */

/* Answers 403 when the request's principal may not read (write false) or
 * write the decoded key ar->key; returns whether it did. Synchronous: the
 * principal (a->who) is the dispatched request's. */
static bool key_denied(struct api_req *ar, bool write)
{
    struct api *a = ar->api;
    if (node_auth_key_allowed(a->node, &a->who, write, ar->key, ar->key_len)) return false;
    respond_error(ar, 403, "forbidden",
                  write ? "this user may not write this key" : "this user may not read this key");
    return true;
}

/* "url": the member's advertised HTTP address as a URL, https:// when this
 * node serves client TLS (a cluster's nodes share the setting). */
static void write_json_url(struct st_json *w, const char *key, const char *addr, bool tls)
{
    char url[NODE_ADDR_MAX + 16];
    st_json_key(w, key);
    if (!addr[0]) {
        st_json_null(w);
        return;
    }
    snprintf(url, sizeof url, "%s://%s", tls ? "https" : "http", addr);
    st_json_cstr(w, url);
}

static void write_json_member(struct st_json *w, const struct node_member_info *m, bool tls)
{
    st_json_object_begin(w);
    st_json_key(w, "id");
    st_json_uint(w, m->id);
    st_json_key(w, "raft");
    st_json_cstr(w, m->raft);
    st_json_key(w, "http");
    if (m->http[0])
        st_json_cstr(w, m->http);
    else
        st_json_null(w);
    write_json_url(w, "url", m->http, tls);
    st_json_key(w, "voter");
    st_json_bool(w, m->voter);
    st_json_object_end(w);
}

static void write_done_cb(void *ctx, const struct node_write_result *res)
{
    struct api_req *ar = ctx;
    struct st_membuf *b = &ar->api->scratch;
    if (ar->kind == API_SEED_SET) {
        if (res->status == 0)
            respond(ar, 200, "text/plain", NULL, 0, "ok", 2);
        else
            respond_code(ar, res->status);
        return;
    }
    if (res->status == 0 || (res->status == ST_EPRECONDITION && ar->kind == API_KV_PUT) ||
        res->status == ST_EPRECONDITION) {
        st_membuf_reset(b);
        struct st_json w;
        st_json_init(&w, b);
        st_json_object_begin(&w);
        int status = 200;
        if (res->status == ST_EPRECONDITION) {
            status = 412;
            st_json_key(&w, "error");
            st_json_cstr(&w, "precondition failed");
            st_json_key(&w, "code");
            st_json_cstr(&w, "precondition_failed");
            st_json_key(&w, "version");
            if (res->version)
                st_json_uint(&w, res->version);
            else
                st_json_null(&w);
        } else if (ar->kind == API_KV_DELETE) {
            st_json_key(&w, "deleted");
            st_json_bool(&w, 1);
            st_json_key(&w, "version");
            st_json_uint(&w, res->version);
        } else {
            status = res->created ? 201 : 200;
            st_json_key(&w, "version");
            st_json_uint(&w, res->version);
        }
        st_json_object_end(&w);
        st_membuf_append(b, "\n", 1);
        char etag[32];
        snprintf(etag, sizeof etag, "\"%" PRIu64 "\"", res->version);
        struct http_header h[2];
        size_t nh = 0;
        if (status == 200 || status == 201) h[nh++] = (struct http_header){"ETag", etag};
        if (res->replayed) h[nh++] = (struct http_header){"Idempotent-Replayed", "true"};
        respond(ar, status, "application/json", h, nh, b->data, b->len);
        return;
    }
    if (ar->kind == API_KV_PUT && (res->status == ST_ENOENT || res->status == ST_ETOOBIG)) {
        /* Only a PUT ?session= ends so (node.h, node_put_args). */
        if (res->status == ST_ENOENT)
            respond_error(ar, 404, "no_session", "no such session (it ended or expired)");
        else
            respond_error(ar, 409, "session_key_limit",
                          "the session holds 64 keys already (delete or rewrite some)");
        return;
    }
    if (res->status == ST_ENOENT && ar->kind == API_KV_DELETE) {
        if (res->replayed) {
            struct http_header h = {"Idempotent-Replayed", "true"};
            const char *body = "{\"error\":\"key not found\",\"code\":\"not_found\"}\n";
            respond(ar, 404, "application/json", &h, 1, body, strlen(body));
            return;
        }
        respond_error(ar, 404, "not_found", "key not found");
        return;
    }
    respond_code(ar, res->status);
}

static void read_done_cb(void *ctx, const struct node_read_result *res)
{
    struct api_req *ar = ctx;
    if (ar->kind == API_SEED_GET) {
        if (res->status == 0)
            respond(ar, 200, "text/plain", NULL, 0, res->value, res->value_len);
        else if (res->status == ST_ENOENT)
            respond(ar, 200, "text/plain", NULL, 0, "", 0);
        else
            respond_code(ar, res->status);
        return;
    }
    if (res->status == 0 && res->value_type != NODE_VALUE_STRING) { /* a Redis hash */
        respond_error(ar, 409, "wrong_type", "the key holds a hash (see docs/REDIS.md)");
        return;
    }
    if (res->status == 0) {
        char etag[32];
        snprintf(etag, sizeof etag, "\"%" PRIu64 "\"", res->version);
        struct http_header h = {"ETag", etag};
        respond(ar, 200, "application/octet-stream", &h, 1, res->value, res->value_len);
        return;
    }
    if (res->status == ST_ENOENT) {
        respond_error(ar, 404, "not_found", "key not found");
        return;
    }
    respond_code(ar, res->status);
}

/* ---------------------------------------------------------- kv routes */

/* The consistency query parameter (absent: linearizable); ST_EINVAL. */
static int parse_consistency(const struct http_request *req, enum node_consistency *out)
{
    char c[32];
    *out = NODE_READ_LINEARIZABLE;
    int q = query_param(req, "consistency", c, sizeof c);
    if (q == 1) {
        if (strcmp(c, "linearizable") == 0)
            *out = NODE_READ_LINEARIZABLE;
        else if (strcmp(c, "lease") == 0)
            *out = NODE_READ_LEASE;
        else if (strcmp(c, "stale") == 0)
            *out = NODE_READ_STALE;
        else
            q = ST_EINVAL;
    }
    return q < 0 ? ST_EINVAL : 0;
}

static void route_kv(struct api *a, struct http_request *req, const char *raw_key, size_t raw_len)
{
    enum node_route route = req->verb == HTTP_VERB_PUT      ? NODE_ROUTE_KV_PUT
                            : req->verb == HTTP_VERB_DELETE ? NODE_ROUTE_KV_DELETE
                                                            : NODE_ROUTE_KV_GET;
    struct api_req *ar = req_get(a, req, route);
    if (!ar) {
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
        return;
    }
    if (req->verb != HTTP_VERB_GET && req->verb != HTTP_VERB_HEAD && req->verb != HTTP_VERB_PUT &&
        req->verb != HTTP_VERB_DELETE) {
        struct http_header h = {"Allow", "GET, HEAD, PUT, DELETE"};
        const char *body = "{\"error\":\"method not allowed\",\"code\":\"method_not_allowed\"}\n";
        respond(ar, 405, "application/json", &h, 1, body, strlen(body));
        return;
    }
    int rc = set_key(ar, raw_key, raw_len, false);
    if (rc) {
        if (rc == ST_ETOOBIG)
            respond_error(ar, 413, "key_too_large", "key too large (see --max-key-bytes)");
        else
            respond_error(ar, 400, "bad_key", "missing or malformed key");
        return;
    }
    if (key_denied(ar, req->verb == HTTP_VERB_PUT || req->verb == HTTP_VERB_DELETE)) return;
    const struct node_config *cfg = node_config_get(a->node);
    enum node_cond cond = NODE_COND_NONE;
    uint64_t cond_version = 0;
    if (req->if_match) {
        if (parse_etag(req->if_match, req->if_match_len, &cond_version) != 0) {
            respond_error(ar, 400, "bad_if_match", "If-Match must be \"<version>\"");
            return;
        }
        cond = NODE_COND_IF_VERSION;
    }
    if (req->if_none_match && req->verb == HTTP_VERB_PUT) {
        if (req->if_none_match_len != 1 || req->if_none_match[0] != '*' || cond != NODE_COND_NONE) {
            respond_error(ar, 400, "bad_if_none_match", "If-None-Match supports only *");
            return;
        }
        cond = NODE_COND_IF_ABSENT;
    }
    size_t idem_len = 0;
    const char *idem = http_request_header(req, "Idempotency-Key", &idem_len);
    if (idem && (req->verb == HTTP_VERB_PUT || req->verb == HTTP_VERB_DELETE)) {
        bool ok = idem_len >= 1 && idem_len <= NODE_IDEM_KEY_BYTES_MAX;
        for (size_t i = 0; ok && i < idem_len; i++)
            ok = idem[i] > 0x20 && idem[i] < 0x7f;
        if (!ok) {
            respond_error(ar, 400, "bad_idempotency_key",
                          "Idempotency-Key must be 1 to 128 visible ASCII characters");
            return;
        }
    } else {
        idem = NULL;
        idem_len = 0;
    }
    switch (req->verb) {
    case HTTP_VERB_PUT: {
        if (req->body_len > cfg->max_value_bytes) {
            respond_error(ar, 413, "value_too_large", "value too large (see --max-value-bytes)");
            return;
        }
        char ttl_text[32];
        uint64_t ttl_s = 0;
        int q = query_param(req, "ttl", ttl_text, sizeof ttl_text);
        if (q < 0 || (q == 1 && (parse_u64(ttl_text, &ttl_s) != 0 || ttl_s > UINT64_MAX / 1000))) {
            respond_error(ar, 400, "bad_ttl", "ttl must be a whole number of seconds");
            return;
        }
        char sess_text[32];
        uint64_t session_id = 0;
        q = query_param(req, "session", sess_text, sizeof sess_text);
        if (q < 0 || (q == 1 && (parse_u64(sess_text, &session_id) != 0 || session_id == 0))) {
            respond_error(ar, 400, "bad_session", "session must be a session id");
            return;
        }
        char absent_text[8];
        q = query_param(req, "if_absent", absent_text, sizeof absent_text);
        if (q == 1 && (strcmp(absent_text, "true") == 0 || strcmp(absent_text, "1") == 0)) {
            if (cond == NODE_COND_IF_VERSION) { /* as If-None-Match: * with If-Match */
                respond_error(ar, 400, "bad_if_none_match", "if_absent excludes If-Match");
                return;
            }
            cond = NODE_COND_IF_ABSENT; /* If-None-Match: * as a parameter */
        } else if (q != 0 && !(q == 1 && (strcmp(absent_text, "false") == 0 ||
                                          strcmp(absent_text, "0") == 0))) {
            respond_error(ar, 400, "bad_request", "if_absent must be true or false");
            return;
        }
        if (session_id && idem) {
            respond_error(ar, 400, "bad_request", "a PUT with a session takes no Idempotency-Key");
            return;
        }
        struct node_put_args args = {
            .session_id = session_id,
            .key = ar->key,
            .key_len = ar->key_len,
            .value = req->body,
            .value_len = req->body_len,
            .ttl_ms = ttl_s * 1000u,
            .cond = cond,
            .cond_version = cond_version,
            .idem_key = (const uint8_t *)idem,
            .idem_key_len = idem_len,
        };
        ar->kind = API_KV_PUT;
        rc = node_put(a->node, &args, write_done_cb, ar);
        break;
    }
    case HTTP_VERB_DELETE:
        ar->kind = API_KV_DELETE;
        rc = node_delete_idem(a->node, ar->key, ar->key_len, cond, cond_version,
                              (const uint8_t *)idem, idem_len, write_done_cb, ar);
        break;
    default: {
        enum node_consistency cons;
        if (parse_consistency(req, &cons) != 0) {
            respond_error(ar, 400, "bad_consistency",
                          "consistency must be linearizable, lease or stale");
            return;
        }
        ar->kind = API_KV_GET;
        rc = node_get(a->node, ar->key, ar->key_len, cons, read_done_cb, ar);
        break;
    }
    }
    if (rc) respond_code(ar, rc);
}

/* ------------------------------------------------- listing: GET /kv?... */

/* Page bounds (docs/HTTP-API.md): keys visited per request, and the body
 * size after which a page ends early (more = true). */
#define API_LIST_LIMIT_DEFAULT 1000u
#define API_LIST_LIMIT_MAX 10000u
#define API_LIST_COUNT_LIMIT_MAX 100000u /* count_only: keys visited per request */
#define API_LIST_BODY_BYTES_MAX (8u * 1024u * 1024u)

struct list_params {
    struct node_list_args args;
    enum node_consistency cons;
    bool keys_only, count_only;
    const char *err_code, *err_text; /* set when invalid (400) */
};

/* A decoded parameter into buf at *used (ar->key, sized to the query): 1
 * found, 0 absent, ST_EINVAL malformed. */
static int list_param(struct api_req *ar, const char *name, size_t *used, const uint8_t **out,
                      size_t *out_len)
{
    const struct http_request *req = ar->req;
    const char *v;
    size_t vl;
    if (!req->query || !http_query_get(req->query, req->query_len, name, &v, &vl)) return 0;
    uint8_t *dst = ar->key + *used;
    if (st_url_decode(v, vl, ST_URL_PLUS_AS_SPACE, dst, ar->key_cap - *used, out_len) != 0)
        return ST_EINVAL;
    *out = dst;
    *used += *out_len;
    return 1;
}

static int hex_digit(uint8_t c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static int list_flag(const struct http_request *req, const char *name, bool *out)
{
    char v[8];
    int q = query_param(req, name, v, sizeof v);
    if (q < 0) return q;
    *out = q == 1 && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
    if (q == 1 && !*out && strcmp(v, "0") != 0 && strcmp(v, "false") != 0) return ST_EINVAL;
    return 0;
}

/* Parses the listing parameters (decoded into ar->key); p->err_code set
 * when invalid. Called when the request arrives and again when the state
 * is ready (the request's query lives until the response). ST_ENOMEM. */
static int list_params_parse(struct api_req *ar, struct list_params *p)
{
    const struct http_request *req = ar->req;
    const struct node_config *cfg = node_config_get(ar->api->node);
    memset(p, 0, sizeof(*p));
    size_t need = req->query_len + 1;
    if (need > ar->key_cap) {
        uint8_t *k = realloc(ar->key, need);
        if (!k) return ST_ENOMEM;
        ar->key = k;
        ar->key_cap = need;
    }
    size_t used = 0;
    struct node_list_args *a = &p->args;
    const uint8_t *next = NULL;
    size_t next_len = 0;
    int found[4] = {
        list_param(ar, "prefix", &used, &a->prefix, &a->prefix_len),
        list_param(ar, "start", &used, &a->start, &a->start_len),
        list_param(ar, "end", &used, &a->end, &a->end_len),
        list_param(ar, "next", &used, &next, &next_len),
    };
    if (found[0] < 0 || found[1] < 0 || found[2] < 0 || found[3] < 0) {
        p->err_code = "bad_range";
        p->err_text = "prefix, start, end and next must be percent-encoded";
        return 0;
    }
    if (!found[0] && !found[1] && !found[2] && !found[3]) {
        /* A bare GET /kv is a mistake more often than a wish to list all
         * keys: that takes an explicit (possibly empty) start=. */
        p->err_code = "missing_range";
        p->err_text = "give prefix, start or end (start= lists every key)";
        return 0;
    }
    if (a->prefix_len > cfg->max_key_bytes || a->start_len > cfg->max_key_bytes ||
        a->end_len > cfg->max_key_bytes) {
        p->err_code = "bad_range";
        p->err_text = "prefix, start or end longer than --max-key-bytes";
        return 0;
    }
    if (next) {
        /* The token is the hex of the last key of the previous page. */
        bool ok = next_len % 2 == 0 && next_len > 0 && next_len / 2 <= cfg->max_key_bytes;
        uint8_t *k = (uint8_t *)(uintptr_t)next;
        for (size_t i = 0; ok && i < next_len / 2; i++) {
            int hi = hex_digit(next[2 * i]), lo = hex_digit(next[2 * i + 1]);
            ok = hi >= 0 && lo >= 0;
            k[i] = (uint8_t)(hi * 16 + lo);
        }
        if (!ok) {
            p->err_code = "bad_next";
            p->err_text = "next must be the token of a previous page";
            return 0;
        }
        a->start = k;
        a->start_len = next_len / 2;
        a->start_after = 1;
    }
    if (list_flag(req, "keys_only", &p->keys_only) != 0 ||
        list_flag(req, "count_only", &p->count_only) != 0) {
        p->err_code = "bad_flag";
        p->err_text = "keys_only and count_only must be 0, 1, true or false";
        return 0;
    }
    uint64_t max = p->count_only ? API_LIST_COUNT_LIMIT_MAX : API_LIST_LIMIT_MAX;
    a->limit = p->count_only ? API_LIST_COUNT_LIMIT_MAX : API_LIST_LIMIT_DEFAULT;
    char lt[24];
    int q = query_param(req, "limit", lt, sizeof lt);
    if (q < 0 || (q == 1 && (parse_u64(lt, &a->limit) != 0 || a->limit == 0 || a->limit > max))) {
        p->err_code = "bad_limit";
        p->err_text = p->count_only ? "limit must be 1 to 100000 with count_only"
                                    : "limit must be 1 to 10000";
        return 0;
    }
    if (parse_consistency(req, &p->cons) != 0) {
        p->err_code = "bad_consistency";
        p->err_text = "consistency must be linearizable, lease or stale";
    }
    return 0;
}

/* Writes "name" (valid UTF-8) or "name_base64" and the bytes. */
static void list_json_bytes(struct st_json *w, const char *name, const uint8_t *s, size_t len)
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

struct list_write {
    struct st_json *w;
    bool keys_only;
    const uint8_t *last; /* the last key written (points into the kv) */
    size_t last_len;
    uint64_t written;
};

static int list_item_cb(void *ctx, const struct node_list_item *it)
{
    struct list_write *lw = ctx;
    if (lw->written > 0 && lw->w->out->len >= API_LIST_BODY_BYTES_MAX) return 1; /* page full */
    struct st_json *w = lw->w;
    st_json_object_begin(w);
    list_json_bytes(w, "key", it->key, it->key_len);
    if (it->value_type == NODE_VALUE_HASH) { /* a Redis hash: no value (HTTP-API.md) */
        st_json_key(w, "value_type");
        st_json_cstr(w, "hash");
    } else if (!lw->keys_only) {
        list_json_bytes(w, "value", it->value, it->value_len);
    }
    st_json_key(w, "version");
    st_json_uint(w, it->version);
    st_json_key(w, "expire_at_ms");
    if (it->expire_at_ms)
        st_json_uint(w, it->expire_at_ms);
    else
        st_json_null(w);
    st_json_object_end(w);
    lw->last = it->key;
    lw->last_len = it->key_len;
    lw->written++;
    return 0;
}

static void list_ready_cb(void *ctx, const struct node_read_result *res)
{
    struct api_req *ar = ctx;
    if (res->status != 0) {
        respond_code(ar, res->status);
        return;
    }
    struct list_params p;
    if (list_params_parse(ar, &p) != 0) {
        respond_error(ar, 503, "out_of_memory", "out of memory");
        return;
    }
    struct st_membuf *b = &ar->api->scratch;
    st_membuf_reset(b);
    struct st_json w;
    st_json_init(&w, b);
    st_json_object_begin(&w);
    /* The items are written during the walk, the totals after it. */
    struct list_write lw = {.w = &w, .keys_only = p.keys_only};
    struct node_list_result r;
    st_json_key(&w, "kvs");
    st_json_array_begin(&w);
    int rc = node_list(ar->api->node, &p.args, p.count_only ? NULL : list_item_cb, &lw, &r);
    st_json_array_end(&w);
    if (rc < 0) {
        respond_code(ar, rc);
        return;
    }
    const uint8_t *next = r.last_key;
    size_t next_len = r.last_key_len;
    bool more = r.more != 0;
    if (rc == 1) { /* the body bound ended the page after lw.last */
        more = true;
        next = lw.last;
        next_len = lw.last_len;
    }
    st_json_key(&w, "index");
    st_json_uint(&w, r.index);
    st_json_key(&w, "count");
    st_json_uint(&w, p.count_only ? r.count : lw.written);
    st_json_key(&w, "more");
    st_json_bool(&w, more);
    st_json_key(&w, "next");
    if (more && next) {
        /* hex of the last key visited: the next page starts after it */
        static const char hx[] = "0123456789abcdef";
        char chunk[128];
        size_t cn = 0;
        /* An empty string value, reopened: the hex is appended in chunks
         * (a key's hex may be 128 KiB) and the quote closed by hand. */
        st_json_string(&w, "", 0);
        b->len--;
        for (size_t i = 0; i < next_len; i++) {
            chunk[cn++] = hx[next[i] >> 4];
            chunk[cn++] = hx[next[i] & 15];
            if (cn == sizeof chunk) {
                st_membuf_append(b, chunk, cn);
                cn = 0;
            }
        }
        st_membuf_append(b, chunk, cn);
        st_membuf_append(b, "\"", 1);
    } else {
        st_json_null(&w);
    }
    st_json_object_end(&w);
    st_membuf_append(b, "\n", 1);
    if (st_json_finish(&w) != 0 || b->oom) {
        respond_error(ar, 503, "out_of_memory", "out of memory");
        return;
    }
    char idx[24];
    snprintf(idx, sizeof idx, "%" PRIu64, r.index);
    struct http_header h = {"X-Stcache-Index", idx};
    respond(ar, 200, "application/json", &h, 1, b->data, b->len);
}

/* GET /kv?prefix=P | start=S&end=E, limit, next, keys_only, count_only,
 * consistency (docs/HTTP-API.md). */
static void route_kv_list(struct api *a, struct http_request *req)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_KV_GET);
    if (!ar) {
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
        return;
    }
    if (req->verb != HTTP_VERB_GET && req->verb != HTTP_VERB_HEAD) {
        struct http_header h = {"Allow", "GET, HEAD"};
        const char *body = "{\"error\":\"method not allowed\",\"code\":\"method_not_allowed\"}\n";
        respond(ar, 405, "application/json", &h, 1, body, strlen(body));
        return;
    }
    struct list_params p;
    if (list_params_parse(ar, &p) != 0) {
        respond_error(ar, 503, "out_of_memory", "out of memory");
        return;
    }
    if (p.err_code) {
        respond_error(ar, 400, p.err_code, p.err_text);
        return;
    }
    /* A listing must stay inside what the user may read (docs/SECURITY.md). */
    const struct node_list_args *la = &p.args;
    if (!node_auth_range_allowed(a->node, &a->who, la->prefix, la->prefix_len, la->start,
                                 la->start_len, la->end, la->end_len)) {
        respond_error(ar, 403, "forbidden", "the range is not inside a prefix this user may read");
        return;
    }
    int rc = node_read_barrier(a->node, p.cons, list_ready_cb, ar);
    if (rc) respond_code(ar, rc);
}

/* ------------------------------------------------------------ seed API */

static void route_seed_set(struct api *a, struct http_request *req)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_KV_PUT);
    if (!ar) {
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
        return;
    }
    const char *k, *v;
    size_t kl, vl;
    if (!req->query || !http_query_get(req->query, req->query_len, "key", &k, &kl) ||
        set_key(ar, k, kl, true) != 0) {
        respond_error(ar, 400, "bad_key", "missing or malformed key");
        return;
    }
    if (key_denied(ar, true)) return;
    if (!http_query_get(req->query, req->query_len, "value", &v, &vl)) vl = 0;
    uint8_t *value = malloc(vl ? vl : 1);
    size_t value_len = 0;
    if (!value) {
        respond_code(ar, ST_ENOMEM);
        return;
    }
    if (vl && st_url_decode(v, vl, ST_URL_PLUS_AS_SPACE, value, vl, &value_len) != 0) {
        free(value);
        respond_error(ar, 400, "bad_value", "malformed value");
        return;
    }
    struct node_put_args args = {
        .key = ar->key, .key_len = ar->key_len, .value = value, .value_len = value_len};
    ar->kind = API_SEED_SET;
    int rc = node_put(a->node, &args, write_done_cb, ar); /* copies the value */
    free(value);
    if (rc) respond_code(ar, rc);
}

static void route_seed_get(struct api *a, struct http_request *req)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_KV_GET);
    if (!ar) {
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
        return;
    }
    const char *k;
    size_t kl;
    if (!req->query || !http_query_get(req->query, req->query_len, "key", &k, &kl) ||
        set_key(ar, k, kl, true) != 0) {
        respond_error(ar, 400, "bad_key", "missing or malformed key");
        return;
    }
    if (key_denied(ar, false)) return;
    ar->kind = API_SEED_GET;
    int rc = node_get(a->node, ar->key, ar->key_len, NODE_READ_LINEARIZABLE, read_done_cb, ar);
    if (rc) respond_code(ar, rc);
}

/* ------------------------------------------------------------- cluster */

/* The "version" object of /cluster: what `stcache version` prints. */
static void write_version_json(struct st_json *w)
{
    const struct node_version *v = node_version_get();
    st_json_key(w, "version");
    st_json_object_begin(w);
    st_json_key(w, "release");
    st_json_cstr(w, v->release);
    st_json_key(w, "commit");
    st_json_cstr(w, v->commit);
    st_json_key(w, "compiler");
    st_json_cstr(w, v->compiler);
    const struct {
        const char *name;
        uint32_t v;
    } f[] = {{"wal_segment", v->wal_segment}, {"snapshot_meta", v->snapshot_meta},
             {"identity", v->identity},       {"kv_snapshot", v->kv_snapshot},
             {"kv_command", v->kv_command},   {"frame", v->frame},
             {"handshake", v->handshake},     {"wire_msg", v->wire_msg}};
    st_json_key(w, "formats");
    st_json_object_begin(w);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        st_json_key(w, f[i].name);
        st_json_uint(w, f[i].v);
    }
    st_json_object_end(w);
    st_json_object_end(w);
}

static void write_cluster_json(struct api *a, struct st_json *w, const struct node_info *info,
                               bool full)
{
    char cid[24];
    snprintf(cid, sizeof cid, "%016" PRIx64, info->cluster_id);
    st_json_key(w, "cluster_id");
    /* Only admins see the cluster id (!full: an admin route's answer). */
    if (!full || node_auth_is_admin(a->node, &a->who))
        st_json_cstr(w, cid);
    else
        st_json_null(w);
    write_version_json(w);
    if (full) {
        st_json_key(w, "id");
        st_json_uint(w, info->id);
        st_json_key(w, "role");
        st_json_cstr(w, raft_role_name(info->role));
        st_json_key(w, "leader");
        if (info->leader)
            st_json_uint(w, info->leader);
        else
            st_json_null(w);
        st_json_key(w, "leader_http");
        if (info->leader && info->leader_http[0])
            st_json_cstr(w, info->leader_http);
        else
            st_json_null(w);
        write_json_url(w, "leader_url", info->leader ? info->leader_http : "",
                       node_client_tls_server(a->node) != NULL);
        st_json_key(w, "term");
        st_json_uint(w, info->term);
        st_json_key(w, "commit");
        st_json_uint(w, info->commit);
        st_json_key(w, "applied");
        st_json_uint(w, info->applied);
        st_json_key(w, "first_index");
        st_json_uint(w, info->first_index);
        st_json_key(w, "last_index");
        st_json_uint(w, info->last_index);
        st_json_key(w, "snapshot_index");
        st_json_uint(w, info->snapshot_index);
        st_json_key(w, "snapshotting");
        st_json_bool(w, info->snapshotting);
        st_json_key(w, "used_memory_bytes");
        st_json_uint(w, info->used_memory);
        st_json_key(w, "max_memory_bytes");
        st_json_uint(w, info->max_memory);
        st_json_key(w, "log_clock_ms");
        st_json_uint(w, info->log_clock_ms);
        st_json_key(w, "wall_clock_ms");
        st_json_uint(w, info->wall_clock_ms);
        st_json_key(w, "healthy");
        st_json_bool(w, node_healthy(a->node));
        st_json_key(w, "alarms");
        st_json_array_begin(w);
        if (info->alarm_nospace) st_json_cstr(w, "no_space");
        st_json_array_end(w);
    }
    st_json_key(w, "members");
    st_json_array_begin(w);
    bool tls = node_client_tls_server(a->node) != NULL;
    for (uint32_t i = 0; i < info->n_members; i++)
        write_json_member(w, &info->members[i], tls);
    st_json_array_end(w);
}

static void route_cluster(struct api *a, struct http_request *req)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_CLUSTER);
    if (!ar) {
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
        return;
    }
    struct node_info *info = malloc(sizeof *info);
    if (!info) {
        respond_code(ar, ST_ENOMEM);
        return;
    }
    node_info_get(a->node, info);
    struct st_membuf *b = &a->scratch;
    st_membuf_reset(b);
    struct st_json w;
    st_json_init(&w, b);
    st_json_object_begin(&w);
    write_cluster_json(a, &w, info, true);
    const char *dv;
    size_t dl;
    if (req->query && http_query_get(req->query, req->query_len, "digest", &dv, &dl) &&
        !(dl == 1 && dv[0] == '0')) {
        /* The digest and the index it describes, taken together on the loop. */
        raft_index at;
        char hex[24];
        snprintf(hex, sizeof hex, "%016" PRIx64, node_state_digest(a->node, &at));
        st_json_key(&w, "digest");
        st_json_cstr(&w, hex);
        st_json_key(&w, "digest_applied");
        st_json_uint(&w, at);
    }
    st_json_object_end(&w);
    st_membuf_append(b, "\n", 1);
    free(info);
    respond_json(ar, 200, b);
}

static void admin_done_cb(void *ctx, const struct node_admin_result *res)
{
    struct api_req *ar = ctx;
    struct api *a = ar->api;
    if (res->status != 0) {
        respond_code(ar, res->status);
        return;
    }
    if (ar->kind == API_SEED_JOIN) {
        respond(ar, 200, "text/plain", NULL, 0, "ok", 2);
        return;
    }
    struct node_info *info = malloc(sizeof *info);
    if (!info) {
        respond_code(ar, ST_ENOMEM);
        return;
    }
    node_info_get(a->node, info);
    struct st_membuf *b = &a->scratch;
    st_membuf_reset(b);
    struct st_json w;
    st_json_init(&w, b);
    st_json_object_begin(&w);
    st_json_key(&w, "id");
    st_json_uint(&w, ar->member_id);
    if (res->index) {
        st_json_key(&w, "index");
        st_json_uint(&w, res->index);
    }
    if (ar->kind == API_TRANSFER) {
        st_json_key(&w, "leader");
        st_json_uint(&w, ar->member_id);
    }
    if (ar->kind == API_REMOVE) {
        st_json_key(&w, "removed");
        st_json_bool(&w, 1);
    }
    write_cluster_json(a, &w, info, false);
    st_json_object_end(&w);
    st_membuf_append(b, "\n", 1);
    free(info);
    respond_json(ar, 200, b);
}

static void proxy_done_cb(void *ctx, int status, const char *body, size_t len, const char *head,
                          size_t head_len)
{
    (void)head;
    (void)head_len;
    struct api_req *ar = ctx;
    ar->proxy = NULL;
    /* Only a final status 200..599 is passed on: a 1xx, another status or a
     * malformed or oversized answer is not an answer to give a client. */
    if (status == ST_EPROTO || status == ST_ETOOBIG || (status >= 0 && status < 200) ||
        status > 599) {
        respond_error(ar, 502, "bad_gateway", "the leader answered with an invalid response");
        return;
    }
    if (status < 0) {
        respond_error(ar, 503, "no_leader", "the leader could not be reached");
        return;
    }
    respond(ar, status, "application/json", NULL, 0, body, len);
}

/* A follower forwards an admin request to the leader's HTTP API. */
static void proxy_to_leader(struct api_req *ar, const char *method, const char *path_query)
{
    struct api *a = ar->api;
    struct http_request *req = ar->req;
    char proxied[8];
    if (query_param(req, "proxied", proxied, sizeof proxied) == 1) {
        respond_error(ar, 503, "not_leader", "not the leader (proxied request)");
        return;
    }
    struct node_info *info = malloc(sizeof *info);
    if (!info) {
        respond_code(ar, ST_ENOMEM);
        return;
    }
    node_info_get(a->node, info);
    char leader_http[NODE_ADDR_MAX];
    snprintf(leader_http, sizeof leader_http, "%s", info->leader_http);
    raft_id leader = info->leader;
    free(info);
    if (!leader || !leader_http[0] || leader == node_config_get(a->node)->id) {
        respond_error(ar, 503, "no_leader", "no leader");
        return;
    }
    char target[512];
    snprintf(target, sizeof target, "%s%sproxied=1", path_query,
             strchr(path_query, '?') ? "&" : "?");
    /* The client's credential goes along: the leader checks it again and
     * trusts nothing else of ours ("proxied=1" only stops loops). */
    char auth[NODE_AUTH_TOKEN_BYTES_MAX + 32] = "";
    size_t al = 0;
    const char *ah = http_request_header(req, "Authorization", &al);
    if (ah && al < NODE_AUTH_TOKEN_BYTES_MAX + 8 && !memchr(ah, '\r', al) && !memchr(ah, '\n', al))
        snprintf(auth, sizeof auth, "Authorization: %.*s\r\n", (int)al, ah);
    /* With client TLS the leader's port speaks HTTPS too; this node's
     * certificate authenticates it there (--client-cert-auth). */
    int rc = http_client_request_tls(node_client_tls_client(a->node), a->loop, leader_http, method,
                                     target, "application/json", auth[0] ? auth : NULL, req->body,
                                     req->body_len, node_config_get(a->node)->request_timeout_ms,
                                     proxy_done_cb, ar, &ar->proxy);
    if (rc) respond_error(ar, 503, "no_leader", "the leader could not be reached");
}

/* An admin request object, or NULL after answering 503 (the pool is empty). */
static struct api_req *admin_req_get(struct api *a, struct http_request *req)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_ADMIN);
    if (!ar) http_response_error(req, 503, ST_ENOMEM, "out of memory");
    return ar;
}

/* Answers an admin operation that did not start (rc != 0): a follower proxies
 * the same request (method, target) to the leader; ST_ENOENT is 404; anything
 * else maps through respond_code. rc == 0: nothing, admin_done_cb answers. */
static void admin_not_started(struct api_req *ar, int rc, const char *method, const char *target)
{
    if (rc == ST_ENOTLEADER)
        proxy_to_leader(ar, method, target);
    else if (rc == ST_ENOENT)
        respond_error(ar, 404, "not_found", "no such member");
    else if (rc)
        respond_code(ar, rc);
}

static void route_members_post(struct api *a, struct http_request *req)
{
    struct api_req *ar = admin_req_get(a, req);
    if (!ar) return;
    const char *body = (const char *)req->body;
    struct st_jsonr_span doc = {body, req->body_len}, v;
    uint64_t id = 0;
    char raft_addr[NODE_ADDR_MAX] = "", http_addr[NODE_ADDR_MAX] = "";
    char host[NODE_ADDR_MAX];
    uint16_t port;
    if (st_jsonr_validate(body, req->body_len) != 0 || !st_jsonr_get(doc, "id", &v) ||
        st_jsonr_uint(v, &id) != 0 || id == 0 || !st_jsonr_get(doc, "raft", &v) ||
        st_jsonr_string(v, raft_addr, sizeof raft_addr) != 0 ||
        node_addr_split(raft_addr, host, sizeof host, &port) != 0) {
        respond_error(ar, 400, "bad_request",
                      "want {\"id\":N,\"raft\":\"host:port\",\"http\":\"host:port\"}");
        return;
    }
    if (st_jsonr_get(doc, "http", &v) &&
        (st_jsonr_string(v, http_addr, sizeof http_addr) != 0 ||
         node_addr_split(http_addr, host, sizeof host, &port) != 0)) {
        respond_error(ar, 400, "bad_request", "\"http\" must be \"host:port\"");
        return;
    }
    ar->kind = API_JOIN;
    ar->member_id = id;
    int rc = node_member_add_learner(a->node, id, raft_addr, http_addr, admin_done_cb, ar);
    admin_not_started(ar, rc, "POST", "/cluster/members");
}

static void route_seed_join(struct api *a, struct http_request *req)
{
    struct api_req *ar = admin_req_get(a, req);
    if (!ar) return;
    char raft_addr[NODE_ADDR_MAX], http_addr[NODE_ADDR_MAX] = "", idtext[32], host[NODE_ADDR_MAX];
    uint16_t port;
    uint64_t id = 0;
    if (query_param(req, "peerAddress", raft_addr, sizeof raft_addr) != 1 ||
        node_addr_split(raft_addr, host, sizeof host, &port) != 0 ||
        query_param(req, "id", idtext, sizeof idtext) != 1 || parse_u64(idtext, &id) != 0 ||
        id == 0 || query_param(req, "http", http_addr, sizeof http_addr) < 0) {
        respond_error(ar, 400, "bad_request", "want peerAddress=HOST:PORT&id=N[&http=HOST:PORT]");
        return;
    }
    ar->kind = API_SEED_JOIN;
    ar->member_id = id;
    int rc = node_member_add_learner(a->node, id, raft_addr, http_addr, admin_done_cb, ar);
    char target[3 * NODE_ADDR_MAX + 96];
    snprintf(target, sizeof target, "/join?%.*s", (int)req->query_len, req->query);
    admin_not_started(ar, rc, "GET", target);
}

static void route_member_delete(struct api *a, struct http_request *req, const char *idtext,
                                size_t len)
{
    struct api_req *ar = admin_req_get(a, req);
    if (!ar) return;
    char tmp[32];
    uint64_t id = 0;
    if (len == 0 || len >= sizeof tmp) {
        respond_error(ar, 400, "bad_request", "want /cluster/members/{id}");
        return;
    }
    memcpy(tmp, idtext, len);
    tmp[len] = '\0';
    if (parse_u64(tmp, &id) != 0 || id == 0) {
        respond_error(ar, 400, "bad_request", "want /cluster/members/{id}");
        return;
    }
    ar->kind = API_REMOVE;
    ar->member_id = id;
    int rc = node_member_remove(a->node, id, admin_done_cb, ar);
    char target[64];
    snprintf(target, sizeof target, "/cluster/members/%" PRIu64, id);
    admin_not_started(ar, rc, "DELETE", target);
}

static void route_transfer(struct api *a, struct http_request *req)
{
    struct api_req *ar = admin_req_get(a, req);
    if (!ar) return;
    char idtext[32];
    uint64_t id = 0;
    if (query_param(req, "to", idtext, sizeof idtext) != 1 || parse_u64(idtext, &id) != 0 ||
        id == 0) {
        respond_error(ar, 400, "bad_request", "want /cluster/transfer?to=ID");
        return;
    }
    ar->kind = API_TRANSFER;
    ar->member_id = id;
    int rc = node_transfer(a->node, id, admin_done_cb, ar);
    char target[64];
    snprintf(target, sizeof target, "/cluster/transfer?to=%" PRIu64, id);
    if (rc == ST_EINVAL)
        respond_error(ar, 400, "bad_request", "the target is not a voter");
    else
        admin_not_started(ar, rc, "POST", target);
}

static void snapshot_done_cb(void *ctx, int status, raft_index index)
{
    struct api_req *ar = ctx;
    if (status) {
        respond_code(ar, status);
        return;
    }
    char body[64];
    int len = snprintf(body, sizeof body, "{\"index\":%" PRIu64 "}\n", index);
    respond(ar, 200, "application/json", NULL, 0, body, (size_t)len);
}

/* POST /snapshot: answered once the snapshot is durable; the node keeps
 * serving meanwhile (node_snapshot_now). */
static void route_snapshot(struct api *a, struct http_request *req)
{
    struct api_req *ar = admin_req_get(a, req);
    if (!ar) return;
    int rc = node_snapshot_now(a->node, snapshot_done_cb, ar);
    if (rc) respond_code(ar, rc);
}

/* GET /snapshot: a backup (node_backup_open), streamed with back-pressure
 * (http_response_stream_begin): one threadpool read per piece, the next read
 * only once the previous piece was written to the client. The api_req lives
 * until the stream ends; the request counters record it when it begins. */
static void backup_more_cb(struct http_request *req, void *ctx);

static void backup_piece_cb(void *ctx, int status, const void *data, size_t len)
{
    struct api_req *ar = ctx;
    struct node_backup *b = ar->backup;
    if (status != 0 || len == 0) {
        ST_TRACE_WARN("api", "backup stream ended early: %s",
                      status ? st_strerror(status) : "no more data");
        node_backup_close(b);
        http_response_stream_abort(ar->req);
        req_put(ar);
        return;
    }
    int rc = http_response_stream_write(ar->req, data, len);
    if (rc != 0) { /* complete (1), or the client is gone: req consumed */
        node_backup_close(b);
        req_put(ar);
    }
}

static void backup_more_cb(struct http_request *req, void *ctx)
{
    struct api_req *ar = ctx;
    int rc = http_request_orphaned(req) ? ST_ECONNECTION
                                        : node_backup_read(ar->backup, backup_piece_cb, ar);
    if (rc != 0) {
        node_backup_close(ar->backup);
        http_response_stream_abort(req);
        req_put(ar);
    }
}

static void backup_open_cb(void *ctx, int status, struct node_backup *b)
{
    struct api_req *ar = ctx;
    if (status != 0) {
        respond_code(ar, status);
        return;
    }
    const struct node_backup_meta *m = node_backup_meta_get(b);
    char index[24], cid[24];
    snprintf(index, sizeof index, "%" PRIu64, m->snap.meta.index);
    snprintf(cid, sizeof cid, "%016" PRIx64, m->cluster_id);
    const struct http_header hdrs[] = {{"X-Stcache-Index", index}, {"X-Stcache-Cluster-Id", cid}};
    ar->backup = b;
    node_metrics_request(ar->api->node, ar->route, 200, node_now_us() - ar->start_us);
    int rc = http_response_stream_begin(ar->req, 200, "application/octet-stream", hdrs, 2,
                                        m->total_bytes, backup_more_cb, ar);
    if (rc != 0) {
        node_backup_close(b);
        req_put(ar);
    }
}

static void route_backup(struct api *a, struct http_request *req)
{
    struct api_req *ar = admin_req_get(a, req);
    if (!ar) return;
    int rc = node_backup_open(a->node, backup_open_cb, ar);
    if (rc) respond_code(ar, rc);
}

/* GET /readyz (and /health, its alias): 200 when node_unready_reason() is
 * NULL, else 503 with the reason. GET /livez: 200 while the loop runs and the
 * store has not failed. */
static void route_health(struct api *a, struct http_request *req, bool live)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_HEALTH);
    if (!ar) {
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
        return;
    }
    struct node_info *info = malloc(sizeof *info);
    if (!info) {
        respond_code(ar, ST_ENOMEM);
        return;
    }
    node_info_get(a->node, info);
    const char *why =
        live ? (node_live(a->node) ? NULL : "storage_failed") : node_unready_reason(a->node);
    char leader[24] = "null";
    if (info->leader) snprintf(leader, sizeof leader, "%" PRIu64, info->leader);
    char reason[48] = "";
    if (why) snprintf(reason, sizeof reason, ",\"reason\":\"%s\"", why);
    char body[320];
    int len = snprintf(body, sizeof body,
                       "{\"status\":\"%s\"%s,\"leader\":%s,\"commit\":%" PRIu64
                       ",\"applied\":%" PRIu64 "}\n",
                       why ? "unavailable" : "ok", reason, leader, info->commit, info->applied);
    free(info);
    respond(ar, why ? 503 : 200, "application/json", NULL, 0, body, (size_t)len);
}

static void metrics_append(void *actx, const void *p, size_t len)
{
    st_membuf_append(actx, p, len);
}

static void metric_line(struct st_membuf *b, const char *type, const char *name, const char *help,
                        uint64_t v)
{
    char line[400];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help,
                     name, type, name, v);
    if (n > 0) st_membuf_append(b, line, ST_MIN((size_t)n, sizeof line - 1));
}

/* The HTTP server's own figures and the shared output budget. */
static void metrics_http(struct api *a, struct st_membuf *b)
{
    struct http_server_stats st;
    http_server_stats(a->srv, &st);
    metric_line(b, "gauge", "stcache_http_connections", "Open HTTP client connections.",
                st.connections);
    metric_line(b, "counter", "stcache_http_connections_accepted_total",
                "HTTP connections accepted.", st.connections_accepted);
    metric_line(b, "counter", "stcache_http_connections_rejected_total",
                "HTTP connections refused over the connection limit.", st.connections_rejected);
    metric_line(b, "counter", "stcache_http_connections_rejected_per_ip_total",
                "HTTP connections refused over --max-conns-per-ip.",
                st.connections_rejected_per_ip);
    metric_line(b, "counter", "stcache_http_idle_evicted_total",
                "Idle HTTP connections closed at the connection limit to admit a new one.",
                st.idle_evicted);
    metric_line(b, "gauge", "stcache_http_output_bytes",
                "HTTP response bytes generated and not yet written to clients.", st.out_bytes);
    metric_line(b, "counter", "stcache_http_output_paused_total",
                "Times an HTTP connection stopped being read: its queued output reached "
                "--conn-output-bytes-max.",
                st.out_paused);
    metric_line(b, "counter", "stcache_http_slow_readers_dropped_total",
                "HTTP connections dropped as the slowest readers over "
                "--client-output-bytes-max.",
                st.slow_dropped);
    metric_line(b, "counter", "stcache_http_stalled_closed_total",
                "HTTP connections closed after taking none of their queued responses for the "
                "idle timeout.",
                st.stalled_closed);
    metric_line(b, "counter", "stcache_http_memory_trims_total",
                "Times free heap pages were returned to the OS after connections closed.",
                st.memory_trims);
    if (!a->out_budget) return;
    const struct st_outbudget *ob = a->out_budget;
    metric_line(b, "gauge", "stcache_client_output_bytes",
                "Response bytes queued for clients (all front ends), not yet written.",
                ob->used_bytes);
    metric_line(b, "gauge", "stcache_client_output_bytes_max",
                "The bound on stcache_client_output_bytes (--client-output-bytes-max).",
                ob->max_bytes);
    metric_line(b, "gauge", "stcache_client_output_peak_bytes",
                "Highest stcache_client_output_bytes seen.", ob->peak_bytes);
    metric_line(b, "counter", "stcache_client_slow_readers_dropped_total",
                "Client connections dropped as the slowest readers (all front ends).", ob->dropped);
    metric_line(b, "counter", "stcache_client_slow_readers_dropped_bytes_total",
                "Queued response bytes discarded with them.", ob->dropped_bytes);
}

static void route_metrics(struct api *a, struct http_request *req)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_METRICS);
    if (!ar) {
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
        return;
    }
    struct st_membuf *b = &a->scratch;
    st_membuf_reset(b);
    node_metrics_write(a->node, metrics_append, b);
    struct http_server_stats hs;
    http_server_stats(a->srv, &hs);
    char line[512];
    int n = snprintf(line, sizeof line,
                     "# HELP stcache_http_accept_failures_total HTTP accept errors (EMFILE, "
                     "ENFILE, ...).\n# TYPE stcache_http_accept_failures_total counter\n"
                     "stcache_http_accept_failures_total %" PRIu64 "\n"
                     "# HELP stcache_http_connections_refused_nofile_total HTTP connections "
                     "closed unread for want of a file descriptor.\n"
                     "# TYPE stcache_http_connections_refused_nofile_total counter\n"
                     "stcache_http_connections_refused_nofile_total %" PRIu64 "\n",
                     hs.accept_failures, hs.connections_refused_nofile);
    if (n > 0) st_membuf_append(b, line, ST_MIN((size_t)n, sizeof line - 1));
    metrics_http(a, b);
    respond(ar, 200, "text/plain; version=0.0.4", NULL, 0, b->data, b->len);
}

/* ------------------------------------------------------------ dispatch */

static void method_not_allowed(struct api *a, struct http_request *req, const char *allow)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_OTHER);
    if (!ar) {
        http_response_error(req, 405, 405, "method not allowed");
        return;
    }
    struct http_header h = {"Allow", allow};
    const char *body = "{\"error\":\"method not allowed\",\"code\":\"method_not_allowed\"}\n";
    respond(ar, 405, "application/json", &h, 1, body, strlen(body));
}

static bool path_is(const struct http_request *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

static bool is_get(const struct http_request *req)
{
    return req->verb == HTTP_VERB_GET || req->verb == HTTP_VERB_HEAD;
}

static bool host_allowed(const struct api *a, const char *host, size_t len)
{
    const struct node_config *cfg = node_config_get(a->node);
    const char *adv = cfg->advertise_http[0] ? cfg->advertise_http : cfg->http_listen;
    return api_guard_host_listed(a->allowed_hosts, host, len) ||
           (strlen(adv) == len && strncasecmp(adv, host, len) == 0);
}

static void refuse(struct api *a, struct http_request *req, int status, const char *code,
                   const char *text)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_OTHER);
    if (!ar) {
        http_response_error(req, status, status, text);
        return;
    }
    respond_error(ar, status, code, text);
}

/* The checks every request passes before its route (docs/SECURITY.md):
 * Host in the allowlist (DNS rebinding), an Origin, if sent, naming the
 * request's own host or a listed one (cross-site requests), and a POST
 * carrying a JSON or octet-stream Content-Type (HTML forms and no-cors
 * fetches cannot send those). PUT and DELETE need no Content-Type: a browser
 * sends them cross-site only after a CORS preflight, which is never
 * granted. Answers and returns false when a check fails. */
static bool request_admitted(struct api *a, struct http_request *req)
{
    size_t hl = 0, ol = 0, cl = 0;
    const char *host = http_request_header(req, "Host", &hl);
    if (host && !host_allowed(a, host, hl)) {
        refuse(a, req, 403, "forbidden_host", "Host not allowed (see --allowed-hosts)");
        return false;
    }
    const char *origin = http_request_header(req, "Origin", &ol);
    if (origin) {
        const char *oh;
        size_t ohl;
        bool ok =
            api_guard_origin_host(origin, ol, &oh, &ohl) &&
            ((host && ohl == hl && strncasecmp(oh, host, hl) == 0) ||
             (a->hosts_explicit && strcmp(a->allowed_hosts, "*") != 0 && host_allowed(a, oh, ohl)));
        if (!ok) {
            refuse(a, req, 403, "forbidden_origin", "cross-origin request refused");
            return false;
        }
    }
    const char *ctype = http_request_header(req, "Content-Type", &cl);
    if (req->verb == HTTP_VERB_POST && !api_guard_content_type_ok(ctype, cl)) {
        refuse(a, req, 415, "unsupported_media_type",
               "POST needs Content-Type: application/json or application/octet-stream");
        return false;
    }
    return true;
}

/* Who sent req (node/auth.h): a valid "Authorization: Bearer TOKEN", else
 * the anonymous principal (the implicit admin with --auth off). Returns 0,
 * or ST_EPERM for a credential that does not check out. */
int api_request_principal(struct api *a, const struct http_request *req, struct node_principal *out)
{
    node_auth_anonymous(a->node, out);
    size_t len = 0;
    const char *h = http_request_header(req, "Authorization", &len);
    if (h) {
        if (len <= 7 || strncasecmp(h, "Bearer ", 7) != 0) return ST_EPERM;
        return node_auth_token(a->node, h + 7, len - 7, out);
    }
    /* With no token, a verified client certificate's name is the user
     * (--client-cert-auth; a token wins when both are given). */
    if (req->tls_user)
        return node_auth_user_principal(a->node, req->tls_user, strlen(req->tls_user), out);
    return 0;
}

/* 401 with WWW-Authenticate (RFC 6750); the same answer for a missing, a
 * malformed or a wrong credential. */
static void refuse_unauthenticated(struct api *a, struct http_request *req)
{
    struct api_req *ar = req_get(a, req, NODE_ROUTE_OTHER);
    if (!ar) {
        http_response_error(req, 401, 401, "authentication required");
        return;
    }
    struct http_header h = {"WWW-Authenticate", "Bearer realm=\"stcache\""};
    const char *body = "{\"error\":\"authentication required: send Authorization: Bearer "
                       "TOKEN\",\"code\":\"unauthorized\"}\n";
    respond(ar, 401, "application/json", &h, 1, body, strlen(body));
}

/* Admin routes: membership, transfer, snapshots, users. Answers 403 and
 * returns false for anyone else. */
static bool admin_only(struct api *a, struct http_request *req)
{
    if (node_auth_is_admin(a->node, &a->who)) return true;
    refuse(a, req, 403, "forbidden", "this needs the admin role");
    return false;
}

static void handler(struct http_request *req, void *ctx)
{
    struct api *a = ctx;
    const char *p = req->path;
    size_t pl = req->path_len;
    if (!request_admitted(a, req)) return;
    /* Probes stay open: they tell nothing but whether the node serves. */
    bool open = path_is(req, "/health") || path_is(req, "/readyz") || path_is(req, "/livez");
    int arc = api_request_principal(a, req, &a->who);
    if (!open && (arc != 0 || !a->who.authenticated)) {
        refuse_unauthenticated(a, req);
        return;
    }
    if (pl >= 5 && memcmp(p, "/auth", 5) == 0 && (pl == 5 || p[5] == '/')) {
        if (!path_is(req, "/auth/whoami") && !admin_only(a, req)) return;
        api_auth_route(a->node, req, &a->who);
        return;
    }
    if (pl >= 4 && memcmp(p, "/kv/", 4) == 0) {
        route_kv(a, req, p + 4, pl - 4);
        return;
    }
    if (path_is(req, "/txn")) {
        if (req->verb == HTTP_VERB_POST)
            api_route_txn(a, req);
        else
            method_not_allowed(a, req, "POST");
        return;
    }
    if ((pl >= 8 && memcmp(p, "/session", 8) == 0 && (pl == 8 || p[8] == '/')) ||
        path_is(req, "/sessions")) { /* api/api_session.c */
        api_route_session(a, req);
        return;
    }
    if (path_is(req, "/kv")) { /* listing */
        route_kv_list(a, req);
        return;
    }
    if (path_is(req, "/watch")) { /* api/watch.c */
        api_watch_route(a->node, req, &a->who);
        return;
    }
    if (path_is(req, "/cluster")) {
        if (is_get(req))
            route_cluster(a, req);
        else
            method_not_allowed(a, req, "GET");
        return;
    }
    if (path_is(req, "/cluster/members")) {
        if (req->verb == HTTP_VERB_POST) {
            if (admin_only(a, req)) route_members_post(a, req);
        } else if (is_get(req))
            route_cluster(a, req);
        else
            method_not_allowed(a, req, "GET, POST");
        return;
    }
    if (pl > 17 && memcmp(p, "/cluster/members/", 17) == 0) {
        if (req->verb == HTTP_VERB_DELETE) {
            if (admin_only(a, req)) route_member_delete(a, req, p + 17, pl - 17);
        } else
            method_not_allowed(a, req, "DELETE");
        return;
    }
    if (path_is(req, "/cluster/transfer")) {
        if (req->verb == HTTP_VERB_POST) {
            if (admin_only(a, req)) route_transfer(a, req);
        } else
            method_not_allowed(a, req, "POST");
        return;
    }
    if (path_is(req, "/snapshot")) {
        if (req->verb == HTTP_VERB_POST) {
            if (admin_only(a, req)) route_snapshot(a, req);
        } else if (req->verb == HTTP_VERB_GET) {
            if (admin_only(a, req)) route_backup(a, req);
        } else
            method_not_allowed(a, req, "GET, POST");
        return;
    }
    if (path_is(req, "/health") || path_is(req, "/readyz") || path_is(req, "/livez")) {
        if (is_get(req))
            route_health(a, req, path_is(req, "/livez"));
        else
            method_not_allowed(a, req, "GET");
        return;
    }
    if (path_is(req, "/metrics")) {
        if (is_get(req))
            route_metrics(a, req);
        else
            method_not_allowed(a, req, "GET");
        return;
    }
    if (path_is(req, "/set") || path_is(req, "/get") || path_is(req, "/join")) {
        if (!is_get(req)) {
            method_not_allowed(a, req, "GET");
            return;
        }
        if (p[1] != 'g' && !node_config_get(a->node)->seed_api) {
            refuse(a, req, 403, "seed_api_disabled",
                   "GET /set and GET /join change state: served only with --seed-api");
            return;
        }
        if (p[1] == 's')
            route_seed_set(a, req);
        else if (p[1] == 'g')
            route_seed_get(a, req);
        else if (admin_only(a, req))
            route_seed_join(a, req);
        return;
    }
    struct api_req *ar = req_get(a, req, NODE_ROUTE_OTHER);
    if (!ar) {
        http_response_error(req, 404, 404, "not found");
        return;
    }
    respond_error(ar, 404, "not_found", "no such route");
}

/* ----------------------------------------------------------- lifecycle */

int api_create(uv_loop_t *loop, struct node *n, const char *listen_addr,
               struct st_outbudget *out_budget, struct api **out)
{
    char host[NODE_ADDR_MAX];
    uint16_t port;
    /* port 0 (ephemeral) is allowed here, unlike in node configs */
    const char *colon = strrchr(listen_addr, ':');
    if (colon && strcmp(colon, ":0") == 0) {
        size_t hl = (size_t)(colon - listen_addr);
        if (hl == 0 || hl >= sizeof host) return ST_EINVAL;
        memcpy(host, listen_addr, hl);
        host[hl] = '\0';
        port = 0;
    } else if (node_addr_split(listen_addr, host, sizeof host, &port) != 0) {
        return ST_EINVAL;
    }
    struct api *a = calloc(1, sizeof *a);
    if (!a) return ST_ENOMEM;
    a->loop = loop;
    a->node = n;
    st_membuf_init(&a->scratch);
    const char *hosts = node_config_get(n)->allowed_hosts;
    a->hosts_explicit = hosts[0] != '\0';
    if (!a->hosts_explicit)
        hosts = (strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
                 strcmp(host, "localhost") == 0)
                    ? "localhost,127.0.0.1,[::1]"
                    : "*";
    snprintf(a->allowed_hosts, sizeof a->allowed_hosts, "%s", hosts);
    struct http_server_config sc;
    http_server_config_default(&sc);
    sc.host = host;
    sc.port = port;
    /* Bodies just over the value limit get the API's precise 413; far
     * larger ones are refused by the server before they are buffered. */
    sc.body_bytes_max = (uint64_t)node_config_get(n)->max_value_bytes + 64 * 1024;
    sc.conn_out_bytes_max = node_config_get(n)->conn_output_bytes_max;
    sc.conns_per_ip_max = node_config_get(n)->conns_per_ip_max;
    sc.out_budget = out_budget;
    sc.tls = node_client_tls_server(n); /* NULL: plain HTTP */
    a->out_budget = out_budget;
    int rc = http_server_create(loop, &sc, handler, a, &a->srv);
    if (rc) {
        st_membuf_free(&a->scratch);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

uint16_t api_port(const struct api *a)
{
    return http_server_port(a->srv);
}

static void api_closed_cb(struct http_server *srv, void *ctx)
{
    struct api *a = ctx;
    (void)srv;
    if (a->closed_cb) a->closed_cb(a, a->closed_ctx);
}

void api_close(struct api *a, void (*closed_cb)(struct api *a, void *ctx), void *ctx)
{
    a->closed_cb = closed_cb;
    a->closed_ctx = ctx;
    http_server_close(a->srv, api_closed_cb, a);
}

void api_destroy(struct api *a)
{
    if (!a) return;
    http_server_destroy(a->srv);
    struct api_req *ar = a->free_reqs;
    while (ar) {
        struct api_req *next = ar->next;
        free(ar->key);
        free(ar);
        ar = next;
    }
    st_membuf_free(&a->scratch);
    free(a);
}

/* ------------------------------------------- for the other route files */

struct api_req *api_req_begin(struct api *a, struct http_request *req, enum node_route r)
{
    struct api_req *ar = req_get(a, req, r);
    if (!ar) http_response_error(req, 503, ST_ENOMEM, "out of memory");
    return ar;
}

const struct node_principal *api_principal(const struct api *a)
{
    return &a->who;
}

struct node *api_node(const struct api *a)
{
    return a->node;
}

struct st_membuf *api_scratch(struct api *a)
{
    return &a->scratch;
}

struct api *api_of(const struct api_req *ar)
{
    return ar->api;
}

struct http_request *api_http_request(const struct api_req *ar)
{
    return ar->req;
}

void api_respond_json(struct api_req *ar, int status, struct st_membuf *b)
{
    respond_json(ar, status, b);
}

void api_respond_error(struct api_req *ar, int status, const char *code, const char *text)
{
    respond_error(ar, status, code, text);
}

void api_respond_code(struct api_req *ar, int rc)
{
    respond_code(ar, rc);
}

void api_proxy_to_leader(struct api_req *ar, const char *method, const char *path_query)
{
    proxy_to_leader(ar, method, path_query);
}

int api_parse_consistency(const struct http_request *req, enum node_consistency *out)
{
    return parse_consistency(req, out);
}
