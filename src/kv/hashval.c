/* kv hash values: the field list layout (kv/hashval.h, docs/KV.md). */
#include "kv/hashval.h"

#include <string.h>

#include "wire/le.h"

int kv_hval_check(const uint8_t *p, size_t len, uint32_t *count)
{
    if (len < KV_HVAL_HEADER_BYTES) return -1;
    uint32_t n = le_get32(p);
    if (n == 0) return -1;
    size_t pos = KV_HVAL_HEADER_BYTES;
    for (uint32_t i = 0; i < n; i++) {
        if (len - pos < 4) return -1;
        uint32_t fl = le_get32(p + pos);
        pos += 4;
        if (len - pos < fl) return -1;
        pos += fl;
        if (len - pos < 4) return -1;
        uint32_t vl = le_get32(p + pos);
        pos += 4;
        if (len - pos < vl) return -1;
        pos += vl;
    }
    if (pos != len) return -1;
    if (count) *count = n;
    return 0;
}

uint32_t kv_hval_count(const uint8_t *p, size_t len)
{
    return len < KV_HVAL_HEADER_BYTES ? 0 : le_get32(p);
}

int kv_hval_next(const uint8_t *p, size_t len, size_t *pos, struct kv_hval_field *out)
{
    if (*pos == 0) *pos = KV_HVAL_HEADER_BYTES;
    if (*pos + KV_HVAL_FIELD_FIXED_BYTES > len) return 0;
    size_t q = *pos;
    out->field_len = le_get32(p + q);
    out->field = p + q + 4;
    q += 4 + out->field_len;
    out->value_len = le_get32(p + q);
    out->value = p + q + 4;
    *pos = q + 4 + out->value_len;
    return 1;
}

int kv_hval_find(const uint8_t *p, size_t len, const uint8_t *field, size_t field_len,
                 struct kv_hval_field *out)
{
    size_t pos = 0;
    struct kv_hval_field f;
    while (kv_hval_next(p, len, &pos, &f))
        if (f.field_len == field_len &&
            (field_len == 0 || memcmp(f.field, field, field_len) == 0)) {
            *out = f;
            return 1;
        }
    return 0;
}

size_t kv_hval_put_field(uint8_t *p, const uint8_t *field, size_t field_len, const uint8_t *value,
                         size_t value_len)
{
    le_put32(p, (uint32_t)field_len);
    if (field_len) memcpy(p + 4, field, field_len);
    le_put32(p + 4 + field_len, (uint32_t)value_len);
    if (value_len) memcpy(p + 8 + field_len, value, value_len);
    return kv_hval_field_bytes(field_len, value_len);
}

void kv_hval_put_count(uint8_t *p, uint32_t count)
{
    le_put32(p, count);
}
