/* node_txn: a transaction as a TXN kv command (node_txn.h). */
#include "node/node_txn.h"

#include <string.h>

#include "kv/command.h"
#include "node/node_int.h"
#include "stcache/errors.h"

uint64_t node_txn_bytes_max(const struct node *n)
{
    const struct node_config *cfg = node_config_get(n);
    return cfg->max_txn_bytes ? cfg->max_txn_bytes
                              : (uint64_t)cfg->max_value_bytes + cfg->max_key_bytes;
}

int node_txn(struct node *n, const struct node_txn_args *a, node_write_cb cb, void *ctx)
{
    const struct node_config *cfg = node_config_get(n);
    uint64_t count = (uint64_t)a->guards + a->success + a->failure;
    if (count > cfg->max_txn_ops) return ST_ETOOBIG;
    for (uint64_t i = 0; i < count; i++) {
        const struct kv_txn_item *it = &a->items[i];
        int guard = i < a->guards;
        uint32_t key2 = !guard && it->kind == KV_TXN_RENAME ? it->val_len : 0;
        if (it->key_len > cfg->max_key_bytes || key2 > cfg->max_key_bytes ||
            it->val_len > cfg->max_value_bytes)
            return ST_ETOOBIG;
        if (kv_txn_item_check(it, guard) != 0) return ST_EINVAL;
    }
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_TXN;
    cmd.txn_items = a->items;
    cmd.txn_guards = a->guards;
    cmd.txn_success = a->success;
    cmd.txn_failure = a->failure;
    cmd.txn_value_bytes_max = cfg->max_value_bytes;
    if (kv_command_encoded_len(&cmd) > node_txn_bytes_max(n)) return ST_ETOOBIG;
    return node_client_submit(n, &cmd, cb, ctx);
}

int node_publish(struct node *n, const uint8_t *channel, size_t channel_len, const uint8_t *msg,
                 size_t msg_len, node_write_cb cb, void *ctx)
{
    const struct node_config *cfg = &n->cfg;
    if (channel_len > cfg->max_key_bytes || msg_len > cfg->max_value_bytes) return ST_ETOOBIG;
    struct kv_command cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.type = KV_CMD_PUBLISH;
    cmd.key = channel;
    cmd.key_len = (uint32_t)channel_len;
    cmd.value = msg;
    cmd.value_len = (uint32_t)msg_len;
    return node_client_submit(n, &cmd, cb, ctx);
}
