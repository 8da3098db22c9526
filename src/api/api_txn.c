/* POST /txn: a transaction (docs/HTTP-API.md, "Transactions"): the body is
 * parsed (txn_parse.h) and proposed as one log entry (node_txn.h); the
 * answer carries whether the compares held, the entry's index and each
 * operation's result:
 *   {"succeeded": true, "version": 42,
 *    "results": [{"op": "put"}, {"op": "get", "value": "v"},
 *                {"op": "get", "value": null}, {"op": "delete", "deleted": 1},
 *                {"op": "incr", "value": 7}, {"op": "incr", "error": "..."}]} */
#include "api/api_int.h"
#include "node/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/txn_parse.h"
#include "node/node_txn.h"
#include "stcache/errors.h"
#include "util/json.h"

/* What the answer needs besides the results: the request and the op kinds
 * (success ops, then failure ops) that name them. One small block per
 * transaction, freed when it is answered. */
struct txn_ctx {
    struct api_req *ar;
    uint32_t n;
    uint8_t kinds[]; /* success ops, then failure ops */
};

static void txn_done_cb(void *ctx, const struct node_write_result *res)
{
    struct txn_ctx *tc = ctx;
    struct api_req *ar = tc->ar;
    if (res->status != 0) {
        free(tc);
        api_respond_code(ar, res->status);
        return;
    }
    struct st_membuf *b = api_scratch(api_of(ar));
    st_membuf_reset(b);
    struct st_json w;
    st_json_init(&w, b);
    st_json_object_begin(&w);
    st_json_key(&w, "succeeded");
    st_json_bool(&w, res->txn_succeeded);
    st_json_key(&w, "version");
    st_json_uint(&w, res->index);
    st_json_key(&w, "results");
    st_json_array_begin(&w);
    /* The failure ops follow the success ops in kinds. */
    uint32_t base = res->txn_succeeded ? 0 : tc->n - res->txn_n;
    for (uint32_t i = 0; i < res->txn_n && base + i < tc->n; i++) {
        const struct kv_txn_res *x = &res->txn_res[i];
        uint8_t kind = tc->kinds[base + i];
        st_json_object_begin(&w);
        st_json_key(&w, "op");
        st_json_cstr(&w, api_txn_op_name(kind));
        if (x->kind == KV_TXN_R_ERR) {
            st_json_key(&w, "error");
            st_json_cstr(&w, kv_txn_err_text(x->err));
        } else if (kind == KV_TXN_GET) {
            st_json_key(&w, "value");
            if (x->kind == KV_TXN_R_BULK)
                st_json_string(&w, x->p, x->len);
            else
                st_json_null(&w);
        } else if (kind == KV_TXN_DEL || kind == KV_TXN_DEL_PREFIX) {
            st_json_key(&w, "deleted");
            st_json_int(&w, x->num);
        } else if (kind == KV_TXN_INCRBY) {
            st_json_key(&w, "value");
            st_json_int(&w, x->num);
        } else if (kind == KV_TXN_PUT) {
            st_json_key(&w, "written");
            st_json_bool(&w, x->kind == KV_TXN_R_OK);
        }
        st_json_object_end(&w);
    }
    st_json_array_end(&w);
    st_json_object_end(&w);
    st_membuf_append(b, "\n", 1);
    free(tc);
    if (st_json_finish(&w) != 0 || b->oom) {
        api_respond_error(ar, 500, "internal", "out of memory writing the answer");
        return;
    }
    api_respond_json(ar, 200, b);
}

void api_route_txn(struct api *a, struct http_request *req)
{
    struct api_req *ar = api_req_begin(a, req, NODE_ROUTE_OTHER);
    if (!ar) return; /* answered 503 */
    struct node *n = api_node(a);
    const struct node_config *cfg = node_config_get(n);
    struct api_txn_limits lim = {cfg->max_txn_ops, cfg->max_key_bytes, cfg->max_value_bytes};
    struct api_txn t;
    char err[128];
    int rc = api_txn_parse((const char *)req->body, req->body_len, &lim, &t, err, sizeof err);
    if (rc != 0) {
        api_txn_free(&t);
        if (rc == ST_EINVAL)
            api_respond_error(ar, 400, "bad_request", err);
        else if (rc == ST_ETOOBIG)
            api_respond_error(ar, 413, "too_large", err);
        else
            api_respond_code(ar, rc);
        return;
    }
    /* Every key it names, with --auth: compared ones read, ops' keys read
     * (get) or written; a delete_prefix writes every key under its prefix,
     * which a grant covers exactly when it is a prefix of it. */
    for (uint32_t i = 0; i < t.guards + t.success + t.failure; i++) {
        const struct kv_txn_item *it = &t.items[i];
        bool write = i >= t.guards && it->kind != KV_TXN_GET && it->kind != KV_TXN_EXPIRY;
        if (!node_auth_key_allowed(n, api_principal(a), write, it->key, it->key_len)) {
            api_txn_free(&t);
            api_respond_error(ar, 403, "forbidden",
                              write ? "this user may not write a key of this transaction"
                                    : "this user may not read a key of this transaction");
            return;
        }
    }
    uint32_t ops = t.success + t.failure;
    struct txn_ctx *tc = malloc(sizeof *tc + (ops ? ops : 1));
    if (!tc) {
        api_txn_free(&t);
        api_respond_code(ar, ST_EBUSY);
        return;
    }
    tc->ar = ar;
    tc->n = ops;
    for (uint32_t i = 0; i < ops; i++)
        tc->kinds[i] = t.items[t.guards + i].kind;
    struct node_txn_args args = {t.items, t.guards, t.success, t.failure};
    rc = node_txn(n, &args, txn_done_cb, tc);
    api_txn_free(&t); /* node_txn copied the items */
    if (rc != 0) {
        free(tc);
        if (rc == ST_ETOOBIG)
            api_respond_error(ar, 413, "too_large",
                              "the transaction is larger than --max-txn-bytes");
        else
            api_respond_code(ar, rc);
    }
}
