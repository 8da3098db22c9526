/* kv list: ordered range and prefix walks over the kv index. Contracts in
 * kv_list.h. */
#include "kv/kv_list.h"

#include <string.h>

#include "kv/kv_index.h"
#include "kv/kv_int.h"
#include "stcache/errors.h"

/* 1 if e is past the range (at or after end, or out of the prefix, which
 * the walk enters at its start). */
static int past_range(const struct kv_list_args *a, const struct kv_entry *e)
{
    if (a->end_len && kv_index_key_cmp(a->end, a->end_len, e) <= 0) return 1;
    if (a->prefix_len &&
        (e->key_len < a->prefix_len || memcmp(e->data, a->prefix, a->prefix_len) != 0))
        return 1;
    return 0;
}

int kv_list(const struct kv *kv, const struct kv_list_args *a, uint64_t now_ms, kv_list_cb cb,
            void *ctx, struct kv_list_result *out)
{
    memset(out, 0, sizeof(*out));
    out->index = kv->applied_index;
    if (a->limit == 0) return ST_EINVAL;
    const struct kv_index *ix = &kv->st.idx;
    struct kv_index_iter it;
    /* Start at the larger of start and prefix. */
    const uint8_t *from = a->start;
    size_t from_len = a->start_len;
    int after = a->start_after;
    if (a->prefix_len) {
        size_t n = ST_MIN(a->start_len, a->prefix_len);
        int c = n ? memcmp(a->start, a->prefix, n) : 0;
        if (c < 0 || (c == 0 && a->start_len < a->prefix_len)) {
            from = a->prefix;
            from_len = a->prefix_len;
            after = 0;
        }
    }
    kv_index_seek(ix, &it, from, from_len);
    const struct kv_entry *e = kv_index_iter_entry(&it);
    if (e && after && from_len && kv_index_key_cmp(from, from_len, e) == 0) {
        kv_index_iter_next(&it);
        e = kv_index_iter_entry(&it);
    }
    uint64_t visited = 0;
    for (; e && !past_range(a, e); kv_index_iter_next(&it), e = kv_index_iter_entry(&it)) {
        if (visited == a->limit) {
            out->more = 1;
            return 0;
        }
        visited++;
        out->last_key = e->data;
        out->last_key_len = e->key_len;
        if (entry_expired(e, now_ms)) continue;
        out->count++;
        if (!cb) continue;
        struct kv_list_item item = {
            .key = e->data,
            .key_len = e->key_len,
            .value = e->data + e->key_len,
            .value_len = e->value_len,
            .version = e->version,
            .expire_at_ms = entry_expire(e),
            .type = entry_type(e),
        };
        int rc = cb(ctx, &item);
        if (rc) return rc;
    }
    return 0;
}
