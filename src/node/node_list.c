/* node list: the ordered listing of the applied state (node.h, "ordered
 * listing"); the kv does the walk (kv_list.h). */
#include "kv/kv_list.h"
#include "node/node_int.h"
#include "stcache/errors.h"

#include <string.h>

struct list_adapter {
    node_list_cb cb;
    void *ctx;
};

static int list_item_cb(void *ctx, const struct kv_list_item *it)
{
    const struct list_adapter *ad = ctx;
    const struct node_list_item item = {
        .key = it->key,
        .key_len = it->key_len,
        .value = it->value,
        .value_len = it->value_len,
        .version = it->version,
        .expire_at_ms = it->expire_at_ms,
        .value_type = it->type,
    };
    return ad->cb(ad->ctx, &item);
}

int node_list(struct node *n, const struct node_list_args *args, node_list_cb cb, void *ctx,
              struct node_list_result *out)
{
    memset(out, 0, sizeof(*out));
    if (!n->running || n->stopping) return ST_ECLOSED;
    const struct kv_list_args ka = {
        .start = args->start,
        .start_len = args->start_len,
        .start_after = args->start_after,
        .end = args->end,
        .end_len = args->end_len,
        .prefix = args->prefix,
        .prefix_len = args->prefix_len,
        .limit = args->limit,
    };
    struct list_adapter ad = {cb, ctx};
    struct kv_list_result kr;
    /* Expiry by the log clock of the state read, as node_get. */
    int rc = kv_list(n->kv, &ka, kv_clock_ms(n->kv), cb ? list_item_cb : NULL, &ad, &kr);
    out->index = kr.index;
    out->count = kr.count;
    out->more = kr.more;
    out->last_key = kr.last_key;
    out->last_key_len = kr.last_key_len;
    return rc;
}
