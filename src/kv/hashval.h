/* kv hash values: the byte layout of a hash key's value (docs/KV.md,
 * "Hashes"), shared by the state machine (kv_txn.c applies the hash ops),
 * the proposers that encode field lists into TXN ops, and the readers
 * that answer HGET, HGETALL, HSCAN, ... from a value read locally.
 *
 *   u32 count (>= 1 in a stored hash), then count fields, each:
 *     u32 field_len, field bytes, u32 value_len, value bytes
 *
 * little-endian. Fields are distinct and kept in insertion order: a new
 * field goes to the end, a changed one keeps its place, a deleted one
 * closes its gap. The same layout, with duplicates allowed, carries the
 * field lists of the HSET, HSETNX, HDEL and HINCRBYFLOAT ops (kv/txn.h).
 * Lookups are linear: O(hash size), meant for object-caching hashes
 * bounded by --max-value-bytes. */
#ifndef ST_KV_HASHVAL_H
#define ST_KV_HASHVAL_H

#include <stddef.h>
#include <stdint.h>

#define KV_HVAL_HEADER_BYTES 4u
#define KV_HVAL_FIELD_FIXED_BYTES 8u /* the two lengths */

struct kv_hval_field {
    const uint8_t *field;
    uint32_t field_len;
    const uint8_t *value;
    uint32_t value_len;
};

/* Checks p[0..len) is a well-formed list (lengths agree, count >= 1);
 * duplicate fields are not checked. Sets *count if count is not NULL.
 * Returns 0 or -1. */
int kv_hval_check(const uint8_t *p, size_t len, uint32_t *count);

/* The count of a checked list (0 for len < 4). */
uint32_t kv_hval_count(const uint8_t *p, size_t len);

/* Walks a checked list: *pos starts at 0; reads the field at *pos into
 * *out and advances *pos. Returns 1, or 0 past the end. */
int kv_hval_next(const uint8_t *p, size_t len, size_t *pos, struct kv_hval_field *out);

/* Finds field in a checked list: 1 and *out, or 0. */
int kv_hval_find(const uint8_t *p, size_t len, const uint8_t *field, size_t field_len,
                 struct kv_hval_field *out);

/* Bytes one field takes in a list. */
static inline size_t kv_hval_field_bytes(size_t field_len, size_t value_len)
{
    return KV_HVAL_FIELD_FIXED_BYTES + field_len + value_len;
}

/* Writes one field at p (kv_hval_field_bytes of room); returns the bytes
 * written. */
size_t kv_hval_put_field(uint8_t *p, const uint8_t *field, size_t field_len, const uint8_t *value,
                         size_t value_len);

/* Writes the count header at p. */
void kv_hval_put_count(uint8_t *p, uint32_t count);

#endif
