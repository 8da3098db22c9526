/* The body of POST /txn (docs/HTTP-API.md) parsed into transaction items
 * (node_txn.h), apart from the route so it can be fuzzed alone:
 *
 *   {"compare": [{"key": K, "target": "version"|"value"|"exists"|"ttl",
 *                 "op": "="|"!="|"<"|">"  (default "="),
 *                 "version": N | "value": S | "exists": B | "ttl": B}, ...],
 *    "success": [OP, ...], "failure": [OP, ...]}
 *   OP: {"put": {"key": K, "value": S, "ttl_ms": N, "keep_ttl": B,
 *                "if_absent": B, "if_exists": B}}
 *     | {"get": {"key": K}} | {"delete": {"key": K}}
 *     | {"delete_prefix": {"prefix": P}}   (P may be "": every key)
 *     | {"incr": {"key": K, "by": N}}
 *
 * "compare", "success" and "failure" may each be absent (empty). Keys and
 * values are JSON strings (UTF-8; \u escapes allowed, but no \u0000). */
#ifndef ST_API_TXN_PARSE_H
#define ST_API_TXN_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "node/node_txn.h"

struct api_txn_limits {
    uint32_t items_max;       /* --max-txn-ops */
    uint32_t key_bytes_max;   /* --max-key-bytes */
    uint32_t value_bytes_max; /* --max-value-bytes */
};

/* A parsed transaction: items (guards, then success, then failure ops)
 * whose keys and values point into arena. Owned by the caller: free with
 * api_txn_free (also after an error). */
struct api_txn {
    struct kv_txn_item *items;
    uint32_t guards, success, failure;
    char *arena;
};

/* Parses body[0..len). Returns 0, ST_EINVAL (malformed: err says why),
 * ST_ETOOBIG (more items, or a longer key or value, than lim allows) or
 * ST_ENOMEM. err (errcap bytes) gets a one-line reason on failure. */
int api_txn_parse(const char *body, size_t len, const struct api_txn_limits *lim,
                  struct api_txn *out, char *err, size_t errcap);
void api_txn_free(struct api_txn *t);

/* The name of an op kind in answers ("put", "get", ...). */
const char *api_txn_op_name(uint8_t kind);

#endif
