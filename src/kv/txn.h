/* kv transactions: the KV_CMD_TXN command (format version 4, docs/KV.md).
 *
 * A TXN is a list of guards, then a `success` and a `failure` list of
 * operations (etcd's Txn). At apply, on every replica alike, the guards are
 * evaluated against the state; if all hold the success ops run, else the
 * failure ops, in order, each seeing the changes of the ops before it. The
 * whole entry applies atomically (one raft index, no other command between
 * its ops). Time inside a TXN is the entry's timestamp (the log clock) only.
 *
 * An op that fails (INCRBY on a non-integer, RENAME of an absent key, ...)
 * changes nothing and yields an error result; the ops after it still run,
 * as Redis runs the rest of a MULTI/EXEC block.
 *
 * Every guard and op is one item with the same fixed layout (kv_txn_item);
 * what key, val and num mean depends on the kind:
 *
 *   guards (target, cmp)     key          val            num
 *     VERSION                key          -              version (0 = absent)
 *     VALUE                  key          value          -   (absent: never holds)
 *     EXISTS                 key          -              0 or 1
 *     HAS_TTL                key          -              0 or 1 (absent: never holds)
 *   ops (type, flags)
 *     GET                    key          -              -          -> value or nil
 *     PUT (NX XX KEEPTTL ABS) key         value          ttl ms, or absolute expiry ms
 *                                                        with ABS (<= now: stored and
 *                                                        expired at once = deleted)
 *                                                        -> ok, or nil when NX/XX fail
 *     DEL                    key          -              -          -> 1 or 0
 *     DEL_PREFIX             prefix (may be empty: all keys) -      -> keys deleted
 *     INCRBY                 key          -              increment  -> new integer
 *     INCRBYFLOAT            key          increment text -          -> new value (text)
 *     APPEND                 key          suffix         -          -> new length
 *     SETRANGE               key          bytes          offset     -> new length
 *     EXPIRE (NX XX GT LT ABS) key        -              ttl ms, or absolute ms with ABS;
 *                                                        <= now deletes -> 1 or 0
 *     PERSIST                key          -              -          -> 1 or 0
 *     RENAME (NX)            key          new key        -          -> ok / 1 / 0, or
 *                                                        the error NO_KEY
 *     EXPIRY                 key          -              -          -> the absolute expiry
 *                                                        (ms), -1 without one, -2 absent
 *   hash ops (format version 6; kv/hashval.h lists; a hash emptied is deleted)
 *     HSET                   key          field list     -          -> fields added
 *     HSETNX                 key          list of 1      -          -> 1, or 0 (field existed)
 *     HDEL                   key          field list (values empty) -> fields removed
 *     HINCRBY                key          field          increment  -> new integer
 *     HINCRBYFLOAT           key          list of 1: field, increment text -> new value
 *     HGET                   key          field          -          -> value or nil
 *     HREAD                  key          -              -          -> the encoded hash, or nil
 *
 * Types: a key holds a string or a hash (kv.h, enum kv_value_type). GET,
 * INCRBY, INCRBYFLOAT, APPEND and SETRANGE on a hash, and the hash ops on a
 * string, change nothing and yield the error WRONGTYPE; PUT replaces a hash
 * with a string (SET), unless it has KV_TXN_F_STRING (version 6): then it,
 * or a DEL with that flag, yields WRONGTYPE on a hash (SET .. GET, GETSET,
 * GETDEL). DEL, EXPIRE, PERSIST, RENAME and EXPIRY take either type and
 * keep it. The hash ops keep the key's TTL and are bounded by the TXN's
 * value_bytes_max (the whole encoded hash): E_TOO_BIG beyond it.
 *
 * Writes that change a key give it the TXN's index as its new version (so
 * EXPIRE and PERSIST count as changes for a WATCH, as in Redis). INCRBY,
 * INCRBYFLOAT, APPEND and SETRANGE keep the key's TTL; RENAME moves it. */
#ifndef ST_KV_TXN_H
#define ST_KV_TXN_H

#include <stddef.h>
#include <stdint.h>

#define KV_TXN_ITEMS_HARD_MAX 65535u /* guards, success ops, failure ops: each */
#define KV_TXN_ITEM_FIXED_BYTES 20u
#define KV_TXN_FIXED_BYTES 12u /* value_bytes_max, 3 counts, reserved */

enum kv_txn_target {
    KV_TXN_T_VERSION = 1,
    KV_TXN_T_VALUE = 2,
    KV_TXN_T_EXISTS = 3,
    KV_TXN_T_HAS_TTL = 4,
};

enum kv_txn_cmp {
    KV_TXN_EQ = 0,
    KV_TXN_NE = 1,
    KV_TXN_LT = 2,
    KV_TXN_GT = 3,
};

enum kv_txn_op {
    KV_TXN_GET = 1,
    KV_TXN_PUT = 2,
    KV_TXN_DEL = 3,
    KV_TXN_DEL_PREFIX = 4,
    KV_TXN_INCRBY = 5,
    KV_TXN_INCRBYFLOAT = 6,
    KV_TXN_APPEND = 7,
    KV_TXN_SETRANGE = 8,
    KV_TXN_EXPIRE = 9,
    KV_TXN_PERSIST = 10,
    KV_TXN_RENAME = 11,
    KV_TXN_EXPIRY = 12,
    KV_TXN_HSET = 13, /* 13.. : format version 6 */
    KV_TXN_HSETNX = 14,
    KV_TXN_HDEL = 15,
    KV_TXN_HINCRBY = 16,
    KV_TXN_HINCRBYFLOAT = 17,
    KV_TXN_HGET = 18,
    KV_TXN_HREAD = 19,
};
#define KV_TXN_OP_MAX KV_TXN_HREAD
#define KV_TXN_OP_HASH_MIN KV_TXN_HSET

/* Op flags (which ops take which: txn_codec.c, item_check). */
enum {
    KV_TXN_F_NX = 1u << 0,      /* PUT, EXPIRE, RENAME */
    KV_TXN_F_XX = 1u << 1,      /* PUT, EXPIRE */
    KV_TXN_F_KEEPTTL = 1u << 2, /* PUT */
    KV_TXN_F_ABS = 1u << 3,     /* PUT, EXPIRE: num is an absolute time (ms) */
    KV_TXN_F_GT = 1u << 4,      /* EXPIRE */
    KV_TXN_F_LT = 1u << 5,      /* EXPIRE */
    KV_TXN_F_STRING = 1u << 6,  /* PUT, DEL: WRONGTYPE on a hash (version 6) */
};

/* One guard or op. key and val point into the caller's buffer (encode) or
 * into the command bytes (kv_txn_next): no copies. */
struct kv_txn_item {
    uint8_t kind;  /* enum kv_txn_target (guard) or enum kv_txn_op */
    uint8_t flags; /* enum kv_txn_cmp (guard) or KV_TXN_F_* */
    const uint8_t *key;
    uint32_t key_len;
    const uint8_t *val;
    uint32_t val_len;
    int64_t num;
};

/* Result kinds of one op. */
enum kv_txn_res_kind {
    KV_TXN_R_NIL = 0,
    KV_TXN_R_OK = 1,
    KV_TXN_R_INT = 2,
    KV_TXN_R_BULK = 3,
    KV_TXN_R_ERR = 4,
};

/* The errors an op can yield (nothing changed by that op). */
enum kv_txn_err {
    KV_TXN_E_NOT_INTEGER = 1,      /* "value is not an integer or out of range" */
    KV_TXN_E_OVERFLOW = 2,         /* "increment or decrement would overflow" */
    KV_TXN_E_NOT_FLOAT = 3,        /* "value is not a valid float" */
    KV_TXN_E_NAN = 4,              /* "increment would produce NaN or Infinity" */
    KV_TXN_E_NO_KEY = 5,           /* "no such key" (RENAME) */
    KV_TXN_E_TOO_BIG = 6,          /* "string exceeds maximum allowed size" */
    KV_TXN_E_NO_MEMORY = 7,        /* the result could not be kept (the op applied) */
    KV_TXN_E_WRONGTYPE = 8,        /* "WRONGTYPE Operation against a key holding the wrong kind
                                    * of value" (the only one without "ERR ") */
    KV_TXN_E_HASH_NOT_INTEGER = 9, /* "hash value is not an integer" */
    KV_TXN_E_HASH_NOT_FLOAT = 10,  /* "hash value is not a float" */
    KV_TXN_E_HASH_TOO_BIG = 11,    /* "hash exceeds maximum allowed size (--max-value-bytes)" */
    KV_TXN_E_INCR_NAN = 12,        /* "value is NaN or Infinity" (HINCRBYFLOAT's increment) */
};

/* The result of one op. p points into the kv's result buffer: valid until
 * the next kv_apply (the node copies what it keeps). */
struct kv_txn_res {
    uint8_t kind; /* enum kv_txn_res_kind */
    uint8_t err;  /* KV_TXN_R_ERR: enum kv_txn_err */
    int64_t num;  /* KV_TXN_R_INT */
    const uint8_t *p;
    uint32_t len; /* KV_TXN_R_BULK */
};

/* Redis's error text of err (without the "ERR " prefix). */
const char *kv_txn_err_text(uint8_t err);
/* Redis's error prefix of err: "WRONGTYPE" or "ERR". */
const char *kv_txn_err_prefix(uint8_t err);

/* Checks one item against the format rules (kind, flags, lengths). guard: 1
 * for a guard. Returns 0 or -1. */
int kv_txn_item_check(const struct kv_txn_item *it, int guard);

#endif
