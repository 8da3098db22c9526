/* Helpers shared by the kv unit tests: build and apply commands. */
#ifndef KV_TEST_HELPERS_H
#define KV_TEST_HELPERS_H

#include <stdlib.h>
#include <string.h>

#include "kv/command.h"
#include "kv/kv.h"
#include "stcache/errors.h"

static inline int kvt_apply_cmd(struct kv *kv, uint64_t index, const struct kv_command *c,
                                struct kv_result *r)
{
    size_t cap = kv_command_encoded_len(c), len = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    if (!buf) return ST_ENOMEM;
    int rc = kv_command_encode(c, buf, cap, &len);
    if (rc == 0) rc = kv_apply(kv, index, buf, len, r);
    free(buf);
    return rc;
}

static inline int kvt_put(struct kv *kv, uint64_t index, uint64_t ts, const char *key,
                          const char *value, uint64_t ttl_ms, enum kv_cond cond,
                          uint64_t cond_version, struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_PUT,
                           .cond = cond,
                           .req = {7, index},
                           .timestamp_ms = ts,
                           .ttl_ms = ttl_ms,
                           .cond_version = cond_version,
                           .key = (const uint8_t *)key,
                           .key_len = (uint32_t)strlen(key),
                           .value = (const uint8_t *)value,
                           .value_len = (uint32_t)strlen(value)};
    return kvt_apply_cmd(kv, index, &c, r);
}

static inline int kvt_del(struct kv *kv, uint64_t index, uint64_t ts, const char *key,
                          enum kv_cond cond, uint64_t cond_version, struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_DELETE,
                           .cond = cond,
                           .req = {7, index},
                           .timestamp_ms = ts,
                           .cond_version = cond_version,
                           .key = (const uint8_t *)key,
                           .key_len = (uint32_t)strlen(key)};
    return kvt_apply_cmd(kv, index, &c, r);
}

static inline int kvt_purge(struct kv *kv, uint64_t index, uint64_t now_ms, uint32_t keys_max,
                            struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_PURGE_EXPIRED,
                           .req = {7, index},
                           .timestamp_ms = now_ms,
                           .keys_max = keys_max};
    return kvt_apply_cmd(kv, index, &c, r);
}

static inline int kvt_evict(struct kv *kv, uint64_t index, const struct kv_evict_key *keys,
                            uint32_t n, struct kv_result *r)
{
    struct kv_command c = {.type = KV_CMD_EVICT,
                           .req = {7, index},
                           .timestamp_ms = 1,
                           .evict_n = n,
                           .evict_keys = keys};
    return kvt_apply_cmd(kv, index, &c, r);
}

/* 1 if key maps to value at now_ms. */
static inline int kvt_has(const struct kv *kv, const char *key, const char *value, uint64_t now_ms)
{
    struct kv_view v;
    if (kv_get(kv, key, strlen(key), now_ms, &v) != 0) return 0;
    return v.value_len == strlen(value) && memcmp(v.value, value, v.value_len) == 0;
}

/* Snapshot sink collecting everything into a growable buffer. */
struct kvt_sink {
    uint8_t *data;
    size_t len, cap;
    size_t calls;
    size_t max_chunk;
};

static inline int kvt_sink_cb(void *ctx, const void *data, size_t len)
{
    struct kvt_sink *s = ctx;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + len)
            cap *= 2;
        uint8_t *d = realloc(s->data, cap);
        if (!d) return ST_ENOMEM;
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, data, len);
    s->len += len;
    s->calls++;
    if (len > s->max_chunk) s->max_chunk = len;
    return 0;
}

/* The format version in a snapshot's header. */
static inline uint32_t kvt_snap_version(const struct kvt_sink *s)
{
    return (uint32_t)s->data[8] | (uint32_t)s->data[9] << 8;
}

/* The whole state into a fresh sink s (meta "m"). */
static inline int kvt_snap(const struct kv *kv, struct kvt_sink *s)
{
    memset(s, 0, sizeof(*s));
    return kv_snapshot_write(kv, kv_applied_index(kv), "m", 1, kvt_sink_cb, s);
}

/* Restores kv from data[0, len) fed in pieces of chunk bytes. */
static inline int kvt_restore(struct kv *kv, const uint8_t *data, size_t len, size_t chunk)
{
    struct kv_restore *rs = NULL;
    int rc = kv_restore_begin(kv, &rs);
    if (rc) return rc;
    for (size_t off = 0; off < len; off += chunk) {
        rc = kv_restore_feed(rs, data + off, len - off < chunk ? len - off : chunk);
        if (rc) {
            kv_restore_abort(rs);
            return rc;
        }
    }
    struct kv_snapshot_info info;
    rc = kv_restore_finish(rs, &info);
    if (rc == 0) free(info.meta);
    return rc;
}

#endif
