/* The TXN command body (format version 4): see kv/txn.h and docs/KV.md.
 *
 *   u32 value_bytes_max (1..KV_VALUE_BYTES_HARD_MAX)
 *   u16 guards, u16 success ops, u16 failure ops, u16 reserved (0)
 *   items, each: u8 kind, u8 flags, u16 reserved (0), u32 key_len,
 *                u32 val_len, i64 num, key bytes, val bytes */
#include "kv/command.h"
#include "kv/hashval.h"

#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "wire/le.h"

const char *kv_txn_err_text(uint8_t err)
{
    switch (err) {
    case KV_TXN_E_NOT_INTEGER:
        return "value is not an integer or out of range";
    case KV_TXN_E_OVERFLOW:
        return "increment or decrement would overflow";
    case KV_TXN_E_NOT_FLOAT:
        return "value is not a valid float";
    case KV_TXN_E_NAN:
        return "increment would produce NaN or Infinity";
    case KV_TXN_E_NO_KEY:
        return "no such key";
    case KV_TXN_E_TOO_BIG:
        return "string exceeds maximum allowed size";
    case KV_TXN_E_NO_MEMORY:
        return "out of memory keeping the result (the operation applied)";
    case KV_TXN_E_WRONGTYPE:
        return "Operation against a key holding the wrong kind of value";
    case KV_TXN_E_HASH_NOT_INTEGER:
        return "hash value is not an integer";
    case KV_TXN_E_HASH_NOT_FLOAT:
        return "hash value is not a float";
    case KV_TXN_E_HASH_TOO_BIG:
        return "hash exceeds maximum allowed size (--max-value-bytes)";
    case KV_TXN_E_INCR_NAN:
        return "value is NaN or Infinity";
    }
    return "unknown error";
}

const char *kv_txn_err_prefix(uint8_t err)
{
    return err == KV_TXN_E_WRONGTYPE ? "WRONGTYPE" : "ERR";
}

/* Flags each op accepts. */
static uint8_t op_flags(uint8_t op)
{
    switch (op) {
    case KV_TXN_PUT:
        return KV_TXN_F_NX | KV_TXN_F_XX | KV_TXN_F_KEEPTTL | KV_TXN_F_ABS | KV_TXN_F_STRING;
    case KV_TXN_DEL:
        return KV_TXN_F_STRING;
    case KV_TXN_EXPIRE:
        return KV_TXN_F_NX | KV_TXN_F_XX | KV_TXN_F_GT | KV_TXN_F_LT | KV_TXN_F_ABS;
    case KV_TXN_RENAME:
        return KV_TXN_F_NX;
    default:
        return 0;
    }
}

static int key_ok(uint32_t len)
{
    return len >= 1 && len <= KV_KEY_BYTES_HARD_MAX;
}

int kv_txn_item_check(const struct kv_txn_item *it, int guard)
{
    if (guard) {
        if (it->kind < KV_TXN_T_VERSION || it->kind > KV_TXN_T_HAS_TTL) return -1;
        if (it->flags > KV_TXN_GT || !key_ok(it->key_len)) return -1;
        if (it->kind != KV_TXN_T_VALUE && it->val_len != 0) return -1;
        if (it->kind == KV_TXN_T_VALUE && it->num != 0) return -1;
        if ((it->kind == KV_TXN_T_EXISTS || it->kind == KV_TXN_T_HAS_TTL) &&
            (it->num < 0 || it->num > 1))
            return -1;
        return it->val_len <= KV_VALUE_BYTES_HARD_MAX ? 0 : -1;
    }
    if (it->kind < KV_TXN_GET || it->kind > KV_TXN_OP_MAX) return -1;
    if (it->flags & ~op_flags(it->kind)) return -1;
    if (it->kind == KV_TXN_DEL_PREFIX ? it->key_len > KV_KEY_BYTES_HARD_MAX : !key_ok(it->key_len))
        return -1;
    if (it->val_len > KV_VALUE_BYTES_HARD_MAX) return -1;
    /* One encoding per command: fields an op does not use are zero. */
    switch (it->kind) {
    case KV_TXN_PUT:
        if ((it->flags & KV_TXN_F_NX) && (it->flags & KV_TXN_F_XX)) return -1;
        if ((it->flags & KV_TXN_F_KEEPTTL) && (it->num != 0 || (it->flags & KV_TXN_F_ABS)))
            return -1;
        return it->num >= 0 ? 0 : -1;
    case KV_TXN_EXPIRE: {
        uint8_t f = it->flags & (KV_TXN_F_NX | KV_TXN_F_XX | KV_TXN_F_GT | KV_TXN_F_LT);
        if ((f & KV_TXN_F_NX) && f != KV_TXN_F_NX) return -1; /* NX goes alone */
        if ((f & KV_TXN_F_GT) && (f & KV_TXN_F_LT)) return -1;
        return it->val_len == 0 ? 0 : -1;
    }
    case KV_TXN_RENAME:
        return key_ok(it->val_len) && it->num == 0 ? 0 : -1;
    case KV_TXN_INCRBY:
        return it->val_len == 0 ? 0 : -1;
    case KV_TXN_SETRANGE:
        return it->num >= 0 ? 0 : -1;
    case KV_TXN_INCRBYFLOAT:
    case KV_TXN_APPEND:
        return it->num == 0 ? 0 : -1;
    case KV_TXN_HSET:
    case KV_TXN_HDEL:
    case KV_TXN_HSETNX:
    case KV_TXN_HINCRBYFLOAT: {
        uint32_t n = 0;
        if (it->num != 0 || kv_hval_check(it->val, it->val_len, &n) != 0) return -1;
        if ((it->kind == KV_TXN_HSETNX || it->kind == KV_TXN_HINCRBYFLOAT) && n != 1) return -1;
        if (it->kind == KV_TXN_HDEL) { /* names only */
            size_t pos = 0;
            struct kv_hval_field f;
            while (kv_hval_next(it->val, it->val_len, &pos, &f))
                if (f.value_len) return -1;
        }
        return 0;
    }
    case KV_TXN_HINCRBY:
        return 0; /* val: the field (any bytes), num: the increment */
    case KV_TXN_HGET:
        return it->num == 0 ? 0 : -1;
    default: /* GET, DEL, DEL_PREFIX, PERSIST, HREAD */
        return it->val_len == 0 && it->num == 0 ? 0 : -1;
    }
}

static uint32_t items_n(const struct kv_command *cmd)
{
    return cmd->txn_guards + cmd->txn_success + cmd->txn_failure;
}

static int item_needs_hash_version(const struct kv_txn_item *it, int guard)
{
    return !guard && (it->kind >= KV_TXN_OP_HASH_MIN || (it->flags & KV_TXN_F_STRING));
}

int kv_txn_needs_hash_version(const struct kv_command *cmd)
{
    if (cmd->txn_items) {
        for (uint32_t i = 0; i < items_n(cmd); i++)
            if (item_needs_hash_version(&cmd->txn_items[i], i < cmd->txn_guards)) return 1;
        return 0;
    }
    size_t pos = 0;
    struct kv_txn_item it;
    for (uint32_t i = 0; kv_txn_next(cmd, &pos, &it); i++)
        if (item_needs_hash_version(&it, i < cmd->txn_guards)) return 1;
    return 0;
}

size_t kv_txn_body_len(const struct kv_command *cmd)
{
    size_t n = KV_TXN_FIXED_BYTES;
    for (uint32_t i = 0; i < items_n(cmd) && cmd->txn_items; i++)
        n +=
            KV_TXN_ITEM_FIXED_BYTES + (size_t)cmd->txn_items[i].key_len + cmd->txn_items[i].val_len;
    return n;
}

int kv_txn_body_check(const struct kv_command *cmd)
{
    if (cmd->txn_guards > KV_TXN_ITEMS_HARD_MAX || cmd->txn_success > KV_TXN_ITEMS_HARD_MAX ||
        cmd->txn_failure > KV_TXN_ITEMS_HARD_MAX || cmd->txn_value_bytes_max == 0 ||
        cmd->txn_value_bytes_max > KV_VALUE_BYTES_HARD_MAX)
        return -1;
    if (cmd->cond != 0 || cmd->idem_key_len != 0) return -1;
    return 0;
}

void kv_txn_body_encode(const struct kv_command *cmd, uint8_t *p)
{
    le_put32(p, cmd->txn_value_bytes_max);
    le_put16(p + 4, (uint16_t)cmd->txn_guards);
    le_put16(p + 6, (uint16_t)cmd->txn_success);
    le_put16(p + 8, (uint16_t)cmd->txn_failure);
    le_put16(p + 10, 0);
    p += KV_TXN_FIXED_BYTES;
    for (uint32_t i = 0; i < items_n(cmd); i++) {
        const struct kv_txn_item *it = &cmd->txn_items[i];
        p[0] = it->kind;
        p[1] = it->flags;
        le_put16(p + 2, 0);
        le_put32(p + 4, it->key_len);
        le_put32(p + 8, it->val_len);
        le_put64(p + 12, (uint64_t)it->num);
        p += KV_TXN_ITEM_FIXED_BYTES;
        if (it->key_len) memcpy(p, it->key, it->key_len);
        p += it->key_len;
        if (it->val_len) memcpy(p, it->val, it->val_len);
        p += it->val_len;
    }
}

static void item_read(const uint8_t *p, struct kv_txn_item *out)
{
    out->kind = p[0];
    out->flags = p[1];
    out->key_len = le_get32(p + 4);
    out->val_len = le_get32(p + 8);
    out->num = (int64_t)le_get64(p + 12);
    out->key = p + KV_TXN_ITEM_FIXED_BYTES;
    out->val = out->key + out->key_len;
}

int kv_txn_body_decode(const uint8_t *p, size_t rest, struct kv_command *out)
{
    if (rest < KV_TXN_FIXED_BYTES || le_get16(p + 10) != 0) return ST_EPROTO;
    out->txn_value_bytes_max = le_get32(p);
    out->txn_guards = le_get16(p + 4);
    out->txn_success = le_get16(p + 6);
    out->txn_failure = le_get16(p + 8);
    if (out->txn_value_bytes_max == 0 || out->txn_value_bytes_max > KV_VALUE_BYTES_HARD_MAX)
        return ST_EPROTO;
    p += KV_TXN_FIXED_BYTES;
    rest -= KV_TXN_FIXED_BYTES;
    out->txn_raw = p;
    out->txn_raw_len = rest;
    uint32_t n = items_n(out);
    for (uint32_t i = 0; i < n; i++) {
        if (rest < KV_TXN_ITEM_FIXED_BYTES || le_get16(p + 2) != 0) return ST_EPROTO;
        struct kv_txn_item it;
        item_read(p, &it);
        rest -= KV_TXN_ITEM_FIXED_BYTES;
        if ((uint64_t)it.key_len + it.val_len > rest) return ST_EPROTO;
        if (kv_txn_item_check(&it, i < out->txn_guards) != 0) {
            if (it.key_len > KV_KEY_BYTES_HARD_MAX || it.val_len > KV_VALUE_BYTES_HARD_MAX)
                return ST_ETOOBIG;
            return ST_EPROTO;
        }
        p += KV_TXN_ITEM_FIXED_BYTES + it.key_len + it.val_len;
        rest -= (size_t)it.key_len + it.val_len;
    }
    return rest == 0 ? 0 : ST_EPROTO;
}

int kv_txn_next(const struct kv_command *cmd, size_t *pos, struct kv_txn_item *out)
{
    if (*pos + KV_TXN_ITEM_FIXED_BYTES > cmd->txn_raw_len) return 0;
    item_read(cmd->txn_raw + *pos, out);
    *pos += KV_TXN_ITEM_FIXED_BYTES + out->key_len + out->val_len;
    ST_ASSERT(*pos <= cmd->txn_raw_len);
    return 1;
}
