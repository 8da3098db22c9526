/* The /auth routes: users, roles and tokens (api_auth.h). Not a hot path:
 * one small heap object per change in flight. */
#include "api/api_auth.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "http/server.h"
#include "node/auth.h"
#include "node/node.h"
#include "stcache/errors.h"
#include "util/json.h"
#include "util/membuf.h"
#include "util/assert.h"

#define AUTH_BODY_PREFIX_CHARS_MAX (4 * NODE_AUTH_PREFIX_BYTES_MAX) /* escaped */

static void send_json(struct http_request *req, int status, struct st_membuf *b)
{
    if (b->oom)
        http_response_error(req, 503, ST_ENOMEM, "out of memory");
    else
        http_response_send(req, status, "application/json", NULL, 0, b->data, b->len);
    st_membuf_free(b);
}

/* The API's error body {"error": text, "code": code}. */
static void send_error(struct http_request *req, int status, const char *code, const char *text)
{
    struct st_membuf b;
    st_membuf_init(&b);
    struct st_json w;
    api_error_body_begin(&w, &b, code, text);
    api_error_body_end(&w);
    send_json(req, status, &b);
}

static void send_status(struct http_request *req, int rc)
{
    switch (rc) {
    case ST_EPRECONDITION:
        send_error(req, 409, "conflict", "the user exists, or changed meanwhile: retry");
        return;
    case ST_ENOENT:
        send_error(req, 404, "not_found", "no such user");
        return;
    case ST_EINVAL:
        send_error(req, 400, "bad_request",
                   "want a name of [A-Za-z0-9_-] (1..64), a role admin|readwrite|readonly, "
                   "prefixes of 1..256 bytes, at most 16");
        return;
    case ST_ENOTLEADER:
    case ST_ETIMEDOUT:
    case ST_ECANCELED:
    case ST_ECLOSED:
    case ST_EBUSY:
        send_error(req, 503, "unavailable", st_strerror(rc));
        return;
    default:
        send_error(req, 500, "internal", st_strerror(rc));
    }
}

static void write_prefix(struct st_json *w, const uint8_t *p, size_t len)
{
    st_json_string(w, p, len); /* not UTF-8: written escaped as bytes */
}

static void write_user(struct st_json *w, const struct node_user_info *u)
{
    st_json_object_begin(w);
    st_json_key(w, "name");
    st_json_cstr(w, u->name);
    st_json_key(w, "role");
    st_json_cstr(w, node_auth_role_name(u->role));
    st_json_key(w, "prefixes");
    st_json_array_begin(w);
    for (uint32_t i = 0; i < u->n_prefixes; i++)
        write_prefix(w, u->prefix[i], u->prefix_len[i]);
    st_json_array_end(w);
    st_json_key(w, "version");
    st_json_uint(w, u->version);
    st_json_object_end(w);
}

/* A change in flight: the request, and the token to show once applied. */
struct auth_change {
    struct http_request *req;
    int ok_status;
    bool with_token;
    char name[NODE_AUTH_NAME_BYTES_MAX + 1];
    char token[NODE_AUTH_TOKEN_BYTES_MAX];
};

static void change_done_cb(void *ctx, int status)
{
    struct auth_change *c = ctx;
    if (status != 0) {
        send_status(c->req, status);
    } else {
        struct st_membuf b;
        st_membuf_init(&b);
        struct st_json w;
        st_json_init(&w, &b);
        st_json_object_begin(&w);
        st_json_key(&w, "name");
        st_json_cstr(&w, c->name);
        if (c->with_token) {
            st_json_key(&w, "token");
            st_json_cstr(&w, c->token);
        }
        st_json_object_end(&w);
        st_membuf_append(&b, "\n", 1);
        send_json(c->req, c->ok_status, &b);
    }
    memset(c->token, 0, sizeof c->token);
    free(c);
}

static struct auth_change *change_new(struct http_request *req, const char *name, size_t len,
                                      int ok_status, bool with_token)
{
    struct auth_change *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->req = req;
    c->ok_status = ok_status;
    c->with_token = with_token;
    snprintf(c->name, sizeof c->name, "%.*s", (int)ST_MIN(len, (size_t)NODE_AUTH_NAME_BYTES_MAX),
             name);
    return c;
}

/* Runs a change that did not start (rc != 0) to its answer. */
static void change_started(struct auth_change *c, int rc)
{
    if (rc == 0) return;
    memset(c->token, 0, sizeof c->token);
    send_status(c->req, rc);
    free(c);
}

/* The JSON body, validated, or NULL after answering 400. */
static bool body_doc(struct http_request *req, struct st_jsonr_span *doc)
{
    const char *body = (const char *)req->body;
    if (st_jsonr_validate(body, req->body_len) != 0) {
        send_error(req, 400, "bad_request", "the body must be a JSON object");
        return false;
    }
    *doc = st_jsonr_root(body, req->body_len);
    return true;
}

/* A string member copied into out (unescaped), 1 found, 0 absent, -1 bad. */
static int body_string(struct st_jsonr_span doc, const char *key, char *out, size_t cap,
                       size_t *len)
{
    struct st_jsonr_span v;
    if (!st_jsonr_get(doc, key, &v)) return 0;
    if (st_jsonr_type(v) != ST_JSONR_STRING || st_jsonr_copy(v, out, cap) != 0) return -1;
    *len = strlen(out);
    return 1;
}

static void users_post(struct node *n, struct http_request *req)
{
    struct st_jsonr_span doc, v, arr;
    if (!body_doc(req, &doc)) return;
    char name[NODE_AUTH_NAME_BYTES_MAX + 2], role[16];
    size_t name_len = 0, role_len = 0;
    if (body_string(doc, "name", name, sizeof name, &name_len) != 1 ||
        body_string(doc, "role", role, sizeof role, &role_len) != 1) {
        send_status(req, ST_EINVAL);
        return;
    }
    static char pbuf[NODE_AUTH_PREFIXES_MAX][AUTH_BODY_PREFIX_CHARS_MAX]; /* the loop thread only */
    const uint8_t *prefixes[NODE_AUTH_PREFIXES_MAX];
    size_t lens[NODE_AUTH_PREFIXES_MAX];
    uint32_t np = 0;
    if (st_jsonr_get(doc, "prefixes", &arr)) {
        size_t cur = 0;
        while (st_jsonr_array_next(arr, &cur, &v)) {
            if (np == NODE_AUTH_PREFIXES_MAX || st_jsonr_type(v) != ST_JSONR_STRING ||
                st_jsonr_copy(v, pbuf[np], sizeof pbuf[np]) != 0) {
                send_status(req, ST_EINVAL);
                return;
            }
            prefixes[np] = (const uint8_t *)pbuf[np];
            lens[np] = strlen(pbuf[np]);
            np++;
        }
    }
    struct auth_change *c = change_new(req, name, name_len, 201, true);
    if (!c) {
        send_status(req, ST_ENOMEM);
        return;
    }
    int rc = node_auth_user_add(n, name, name_len, node_auth_role_parse(role, role_len), prefixes,
                                lens, np, c->token, sizeof c->token, change_done_cb, c);
    change_started(c, rc);
}

static void users_list(struct node *n, struct http_request *req)
{
    struct st_membuf b;
    st_membuf_init(&b);
    struct st_json w;
    st_json_init(&w, &b);
    st_json_object_begin(&w);
    st_json_key(&w, "users");
    st_json_array_begin(&w);
    struct node_user_info *u = malloc(sizeof *u);
    if (!u) {
        st_membuf_free(&b);
        send_status(req, ST_ENOMEM);
        return;
    }
    uint32_t count = node_auth_user_count(n);
    for (uint32_t i = 0; i < count; i++)
        if (node_auth_user_at(n, i, u) == 0) write_user(&w, u);
    free(u);
    st_json_array_end(&w);
    st_json_object_end(&w);
    st_membuf_append(&b, "\n", 1);
    send_json(req, 200, &b);
}

static void user_one(struct node *n, struct http_request *req, const char *name, size_t len)
{
    struct node_user_info *u = malloc(sizeof *u);
    if (!u) {
        send_status(req, ST_ENOMEM);
        return;
    }
    if (node_auth_user_get(n, name, len, u) != 0) {
        free(u);
        send_status(req, ST_ENOENT);
        return;
    }
    struct st_membuf b;
    st_membuf_init(&b);
    struct st_json w;
    st_json_init(&w, &b);
    write_user(&w, u);
    st_membuf_append(&b, "\n", 1);
    free(u);
    send_json(req, 200, &b);
}

static void user_change(struct node *n, struct http_request *req, const char *name, size_t len,
                        const char *action)
{
    int rc;
    if (strcmp(action, "token") == 0) {
        struct auth_change *c = change_new(req, name, len, 200, true);
        if (!c) {
            send_status(req, ST_ENOMEM);
            return;
        }
        rc = node_auth_user_token(n, name, len, c->token, sizeof c->token, change_done_cb, c);
        change_started(c, rc);
        return;
    }
    struct st_jsonr_span doc;
    if (!body_doc(req, &doc)) return;
    char role[16], prefix[AUTH_BODY_PREFIX_CHARS_MAX];
    size_t role_len = 0, prefix_len = 0;
    int hr = body_string(doc, "role", role, sizeof role, &role_len);
    int hp = body_string(doc, "prefix", prefix, sizeof prefix, &prefix_len);
    bool grant = strcmp(action, "grant") == 0;
    uint8_t r = hr == 1 ? node_auth_role_parse(role, role_len) : 0;
    if (hr < 0 || hp < 0 || (hr == 1 && !r) || (grant ? hr + hp == 0 : hp != 1 || hr != 0)) {
        send_status(req, ST_EINVAL);
        return;
    }
    struct auth_change *c = change_new(req, name, len, 200, false);
    if (!c) {
        send_status(req, ST_ENOMEM);
        return;
    }
    const uint8_t *p = hp == 1 ? (const uint8_t *)prefix : NULL;
    rc = node_auth_user_set(n, name, len, r, grant ? p : NULL, grant ? prefix_len : 0,
                            grant ? NULL : p, grant ? 0 : prefix_len, change_done_cb, c);
    change_started(c, rc);
}

static void user_delete(struct node *n, struct http_request *req, const char *name, size_t len)
{
    struct auth_change *c = change_new(req, name, len, 200, false);
    if (!c) {
        send_status(req, ST_ENOMEM);
        return;
    }
    change_started(c, node_auth_user_delete(n, name, len, change_done_cb, c));
}

static void whoami(struct http_request *req, const struct node_principal *who)
{
    struct st_membuf b;
    st_membuf_init(&b);
    struct st_json w;
    st_json_init(&w, &b);
    st_json_object_begin(&w);
    st_json_key(&w, "name");
    st_json_cstr(&w, who->name);
    st_json_key(&w, "role");
    st_json_cstr(&w, node_auth_role_name(who->role));
    st_json_object_end(&w);
    st_membuf_append(&b, "\n", 1);
    send_json(req, 200, &b);
}

static void roles(struct http_request *req)
{
    static const char body[] =
        "{\"roles\":[{\"name\":\"admin\",\"keys\":\"readwrite\",\"admin\":true},"
        "{\"name\":\"readwrite\",\"keys\":\"readwrite\",\"admin\":false},"
        "{\"name\":\"readonly\",\"keys\":\"read\",\"admin\":false}]}\n";
    http_response_send(req, 200, "application/json", NULL, 0, body, sizeof body - 1);
}

static void method_not_allowed(struct http_request *req, const char *allow)
{
    struct http_header h = {"Allow", allow};
    const char *body = "{\"error\":\"method not allowed\",\"code\":\"method_not_allowed\"}\n";
    http_response_send(req, 405, "application/json", &h, 1, body, strlen(body));
}

static bool is(const struct http_request *req, const char *path)
{
    return req->path_len == strlen(path) && memcmp(req->path, path, req->path_len) == 0;
}

void api_auth_route(struct node *n, struct http_request *req, const struct node_principal *who)
{
    bool get = req->verb == HTTP_VERB_GET || req->verb == HTTP_VERB_HEAD;
    if (is(req, "/auth/whoami")) {
        if (get)
            whoami(req, who);
        else
            method_not_allowed(req, "GET");
        return;
    }
    if (is(req, "/auth/roles")) {
        if (get)
            roles(req);
        else
            method_not_allowed(req, "GET");
        return;
    }
    if (is(req, "/auth/users")) {
        if (get)
            users_list(n, req);
        else if (req->verb == HTTP_VERB_POST)
            users_post(n, req);
        else
            method_not_allowed(req, "GET, POST");
        return;
    }
    const char *pre = "/auth/users/";
    size_t pl = strlen(pre);
    if (req->path_len > pl && memcmp(req->path, pre, pl) == 0) {
        const char *name = req->path + pl;
        size_t rest = req->path_len - pl;
        const char *slash = memchr(name, '/', rest);
        size_t len = slash ? (size_t)(slash - name) : rest;
        if (!slash) {
            if (get)
                user_one(n, req, name, len);
            else if (req->verb == HTTP_VERB_DELETE)
                user_delete(n, req, name, len);
            else
                method_not_allowed(req, "GET, DELETE");
            return;
        }
        char action[8] = "";
        size_t al = rest - len - 1;
        if (al < sizeof action) memcpy(action, slash + 1, al);
        if (strcmp(action, "token") == 0 || strcmp(action, "grant") == 0 ||
            strcmp(action, "revoke") == 0) {
            if (req->verb == HTTP_VERB_POST)
                user_change(n, req, name, len, action);
            else
                method_not_allowed(req, "POST");
            return;
        }
    }
    send_error(req, 404, "not_found", "no such route");
}
