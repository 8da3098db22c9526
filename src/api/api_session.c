/* Sessions over HTTP (docs/HTTP-API.md, "Sessions"):
 *   POST   /session            {"ttl_ms": N, "name": S} -> {"id": I, "ttl_ms": N}
 *   PUT    /session/ID/renew   keepalive (also /keepalive), on the leader (a
 *                              follower proxies it)
 *   DELETE /session/ID         ends it; its still-attached keys are deleted
 *   GET    /session/ID         the session and its attached keys
 *   GET    /sessions           every session
 * Keys are attached with PUT /kv/K?session=ID (api.c). Any authenticated
 * user may create, renew and read sessions; attaching a key needs write
 * access to it, and ending a session write access to every key attached
 * to it (ending deletes them). */
#include "api/api_int.h"
#include "node/auth.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/node_session.h"
#include "stcache/errors.h"
#include "util/json.h"

#define SESSION_BODY_BYTES_MAX 4096u

/* The id of /session/ID[/renew] into *id, and whether it ends in /renew
 * (or /keepalive, its other name). 0 or ST_EINVAL. */
static int parse_path(const struct http_request *req, uint64_t *id, bool *renew)
{
    const char *p = req->path + 9; /* after "/session/" */
    size_t len = req->path_len - 9;
    *renew = false;
    if (len > 6 && memcmp(p + len - 6, "/renew", 6) == 0) {
        *renew = true;
        len -= 6;
    } else if (len > 10 && memcmp(p + len - 10, "/keepalive", 10) == 0) {
        *renew = true;
        len -= 10;
    }
    if (len == 0 || len > 20) return ST_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return ST_EINVAL;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return ST_EINVAL;
        v = v * 10 + d;
    }
    if (v == 0) return ST_EINVAL;
    *id = v;
    return 0;
}

/* Starts the JSON answer of ar in the API's scratch buffer. */
static struct st_membuf *json_begin(struct api_req *ar, struct st_json *w)
{
    struct st_membuf *b = api_scratch(api_of(ar));
    st_membuf_reset(b);
    st_json_init(w, b);
    return b;
}

static void answer_id(struct api_req *ar, int status, uint64_t id, uint64_t ttl_ms)
{
    struct st_json w;
    struct st_membuf *b = json_begin(ar, &w);
    st_json_object_begin(&w);
    st_json_key(&w, "id");
    st_json_uint(&w, id);
    st_json_key(&w, "ttl_ms");
    st_json_uint(&w, ttl_ms);
    st_json_object_end(&w);
    st_membuf_append(b, "\n", 1);
    api_respond_json(ar, status, b);
}

/* ---------- POST /session ---------- */

static void create_done_cb(void *ctx, const struct node_write_result *res)
{
    struct api_req *ar = ctx;
    if (res->status == ST_ETOOBIG) {
        api_respond_error(ar, 429, "too_many_sessions",
                          "the cluster holds --max-sessions sessions already");
        return;
    }
    if (res->status != 0) {
        api_respond_code(ar, res->status);
        return;
    }
    /* The TTL is read back from the applied table (the request is gone
     * from our hands; it is the one the entry carried). */
    struct node_session_view v;
    uint64_t ttl = 0;
    if (node_session_get(api_node(api_of(ar)), res->version, &v) == 0) ttl = v.ttl_ms;
    answer_id(ar, 200, res->version, ttl);
}

static void route_create(struct api *a, struct api_req *ar, const struct http_request *req)
{
    if (req->body_len > SESSION_BODY_BYTES_MAX) {
        api_respond_error(ar, 413, "too_large", "the body is larger than 4096 bytes");
        return;
    }
    const char *body = req->body_len ? (const char *)req->body : "{}";
    size_t body_len = req->body_len ? req->body_len : 2;
    if (st_jsonr_validate(body, body_len) != 0 ||
        st_jsonr_type(st_jsonr_root(body, body_len)) != ST_JSONR_OBJECT) {
        api_respond_error(ar, 400, "bad_request", "the body must be a JSON object");
        return;
    }
    struct st_jsonr_span root = st_jsonr_root(body, body_len), v;
    uint64_t ttl_ms = 10000;
    if (st_jsonr_get(root, "ttl_ms", &v) && st_jsonr_uint(v, &ttl_ms) != 0) {
        api_respond_error(ar, 400, "bad_ttl", "ttl_ms must be a whole number");
        return;
    }
    if (ttl_ms < NODE_SESSION_TTL_MS_MIN || ttl_ms > NODE_SESSION_TTL_MS_MAX) {
        api_respond_error(ar, 400, "bad_ttl", "ttl_ms must be 1000..3600000");
        return;
    }
    char name[NODE_SESSION_NAME_BYTES_MAX + 1] = "";
    if (st_jsonr_get(root, "name", &v) &&
        (st_jsonr_type(v) != ST_JSONR_STRING || st_jsonr_copy(v, name, sizeof name) != 0)) {
        api_respond_error(ar, 400, "bad_name", "name must be a string of at most 128 bytes");
        return;
    }
    int rc = node_session_create(api_node(a), ttl_ms, (const uint8_t *)name, strlen(name),
                                 create_done_cb, ar);
    if (rc) api_respond_code(ar, rc);
}

/* ---------- DELETE /session/ID ---------- */

static void destroy_done_cb(void *ctx, const struct node_write_result *res)
{
    struct api_req *ar = ctx;
    if (res->status == ST_ENOENT) {
        api_respond_error(ar, 404, "not_found", "no such session");
        return;
    }
    if (res->status != 0) {
        api_respond_code(ar, res->status);
        return;
    }
    struct st_json w;
    struct st_membuf *b = json_begin(ar, &w);
    st_json_object_begin(&w);
    st_json_key(&w, "destroyed");
    st_json_bool(&w, 1);
    st_json_key(&w, "version");
    st_json_uint(&w, res->index);
    st_json_object_end(&w);
    st_membuf_append(b, "\n", 1);
    api_respond_json(ar, 200, b);
}

/* ---------- GET /session/ID, GET /sessions ---------- */

static void write_session(struct st_json *w, const struct node *n,
                          const struct node_session_view *v, bool keys)
{
    st_json_object_begin(w);
    st_json_key(w, "id");
    st_json_uint(w, v->id);
    st_json_key(w, "ttl_ms");
    st_json_uint(w, v->ttl_ms);
    st_json_key(w, "name");
    st_json_string(w, v->name, v->name_len);
    int64_t left = node_session_remaining_ms(n, v->id);
    if (left >= 0) { /* the leader's deadline, when asked the leader */
        st_json_key(w, "remaining_ms");
        st_json_uint(w, (uint64_t)left);
    }
    if (keys) {
        st_json_key(w, "keys");
        st_json_array_begin(w);
        for (uint32_t k = 0; k < v->n_keys; k++) {
            const uint8_t *key;
            size_t key_len;
            uint64_t version;
            if (node_session_key(n, v->id, k, &key, &key_len, &version) != 0) break;
            st_json_object_begin(w);
            st_json_key(w, "key");
            st_json_string(w, key, key_len);
            st_json_key(w, "version");
            st_json_uint(w, version);
            st_json_object_end(w);
        }
        st_json_array_end(w);
    } else {
        st_json_key(w, "attached");
        st_json_uint(w, v->n_keys);
    }
    st_json_object_end(w);
}

static void read_done_cb(void *ctx, const struct node_read_result *res)
{
    struct api_req *ar = ctx;
    if (res->status != 0) {
        api_respond_code(ar, res->status);
        return;
    }
    struct api *a = api_of(ar);
    const struct http_request *req = api_http_request(ar);
    const struct node *n = api_node(a);
    struct st_json w;
    struct st_membuf *b = json_begin(ar, &w);
    if (req->path_len == 9 && memcmp(req->path, "/sessions", 9) == 0) {
        st_json_object_begin(&w);
        st_json_key(&w, "sessions");
        st_json_array_begin(&w);
        uint32_t count = node_session_count(n);
        for (uint32_t i = 0; i < count; i++) {
            struct node_session_view v;
            node_session_at(n, i, &v);
            write_session(&w, n, &v, false);
        }
        st_json_array_end(&w);
        st_json_object_end(&w);
    } else {
        uint64_t id = 0;
        bool renew = false;
        struct node_session_view v;
        if (parse_path(req, &id, &renew) != 0 || node_session_get(n, id, &v) != 0) {
            api_respond_error(ar, 404, "not_found", "no such session");
            return;
        }
        write_session(&w, n, &v, true);
    }
    st_membuf_append(b, "\n", 1);
    if (st_json_finish(&w) != 0 || b->oom) {
        api_respond_error(ar, 500, "internal", "out of memory writing the answer");
        return;
    }
    api_respond_json(ar, 200, b);
}

/* ---------- dispatch ---------- */

static void not_allowed(struct api_req *ar, const char *allow)
{
    char text[64];
    snprintf(text, sizeof text, "method not allowed (allowed: %s)", allow);
    api_respond_error(ar, 405, "method_not_allowed", text);
}

void api_route_session(struct api *a, struct http_request *req)
{
    struct api_req *ar = api_req_begin(a, req, NODE_ROUTE_OTHER);
    if (!ar) return; /* answered 503 */
    struct node *n = api_node(a);
    bool is_get = req->verb == HTTP_VERB_GET || req->verb == HTTP_VERB_HEAD;
    if (req->path_len == 9 && memcmp(req->path, "/sessions", 9) == 0) {
        if (!is_get) {
            not_allowed(ar, "GET");
            return;
        }
    } else if (req->path_len == 8) { /* /session */
        if (req->verb != HTTP_VERB_POST)
            not_allowed(ar, "POST");
        else
            route_create(a, ar, req);
        return;
    } else {
        uint64_t id = 0;
        bool renew = false;
        if (parse_path(req, &id, &renew) != 0) {
            api_respond_error(ar, 404, "not_found", "no such route (/session/ID[/renew])");
            return;
        }
        if (renew) {
            if (req->verb != HTTP_VERB_PUT) {
                not_allowed(ar, "PUT");
                return;
            }
            uint64_t ttl_ms = 0;
            int rc = node_session_renew(n, id, &ttl_ms);
            if (rc == 0) {
                answer_id(ar, 200, id, ttl_ms);
            } else if (rc == ST_ENOTLEADER) {
                char target[64];
                snprintf(target, sizeof target, "/session/%" PRIu64 "/renew", id);
                api_proxy_to_leader(ar, "PUT", target);
            } else if (rc == ST_ENOENT) {
                api_respond_error(ar, 404, "not_found", "no such session (it ended or expired)");
            } else {
                api_respond_code(ar, rc);
            }
            return;
        }
        if (req->verb == HTTP_VERB_DELETE) {
            /* Ending a session deletes its keys: with --auth, only a user
             * who may write every key attached now may end it. */
            struct node_session_view v;
            if (node_session_get(n, id, &v) == 0) {
                for (uint32_t k = 0; k < v.n_keys; k++) {
                    const uint8_t *key;
                    size_t key_len;
                    uint64_t version;
                    if (node_session_key(n, id, k, &key, &key_len, &version) == 0 &&
                        !node_auth_key_allowed(n, api_principal(a), true, key, key_len)) {
                        api_respond_error(ar, 403, "forbidden",
                                          "this user may not write a key of this session");
                        return;
                    }
                }
            }
            int rc = node_session_destroy(n, id, destroy_done_cb, ar);
            if (rc) api_respond_code(ar, rc);
            return;
        }
        if (!is_get) {
            not_allowed(ar, "GET, DELETE");
            return;
        }
    }
    enum node_consistency cons;
    if (api_parse_consistency(req, &cons) != 0) {
        api_respond_error(ar, 400, "bad_consistency",
                          "consistency must be linearizable, lease or stale");
        return;
    }
    int rc = node_read_barrier(n, cons, read_done_cb, ar);
    if (rc) api_respond_code(ar, rc);
}
