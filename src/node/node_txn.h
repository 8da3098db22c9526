/* Transactions through the node: guards, then success or failure ops,
 * applied as one log entry atomically on every replica (kv/txn.h has the
 * op vocabulary and the result kinds; docs/KV.md the semantics).
 *
 * Front ends (resp/, api/) build a list of struct kv_txn_item and call
 * node_txn(); the callback's node_write_result carries txn_succeeded and
 * the per-op results txn_res[0..txn_n), which point into the state
 * machine's buffers: valid during the callback only, copy what you keep. */
#ifndef ST_NODE_TXN_H
#define ST_NODE_TXN_H

#include <stdint.h>

#include "kv/hashval.h" /* the field lists of the hash ops, for resp/ */
#include "kv/txn.h"
#include "node/node.h"

struct node_txn_args {
    const struct kv_txn_item *items; /* guards, then success ops, then failure ops */
    uint32_t guards, success, failure;
};

/* Proposes a transaction (the items are copied at once). Returns 0 (cb runs
 * once, with status 0 when the entry applied, whichever branch ran), or at
 * once: ST_EINVAL for a malformed item (an empty key, flags an op does not
 * take: kv_txn_item_check), ST_ETOOBIG for a key or value over
 * --max-key-bytes/--max-value-bytes, more items than --max-txn-ops or more
 * encoded bytes than --max-txn-bytes, ST_EBUSY, ST_ECLOSED, ST_ENOSPC,
 * ST_EIO as node_put. Callable on the node's loop thread only. */
int node_txn(struct node *n, const struct node_txn_args *a, node_write_cb cb, void *ctx);

/* The encoded bytes bound of one transaction (--max-txn-bytes or its
 * default). */
uint64_t node_txn_bytes_max(const struct node *n);

/* Proposes a pub/sub message (kv KV_CMD_PUBLISH: no state changes): once
 * applied, every node's watches opened with `messages` see it, in log
 * order. The channel is bounded like a key (--max-key-bytes), the message
 * like a value (--max-value-bytes): ST_ETOOBIG. cb as node_put's (the
 * status only). */
int node_publish(struct node *n, const uint8_t *channel, size_t channel_len, const uint8_t *msg,
                 size_t msg_len, node_write_cb cb, void *ctx);

#endif
