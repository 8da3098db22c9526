/* kv apply: one committed command (put, delete, purge, evict, batch) at a
 * time, deterministic on every replica, with the idempotency check. */
#include "kv/kv_int.h"

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/crc32c.h"

/* ---------- apply ---------- */

static uint64_t expiry_of(uint64_t ts, uint64_t ttl)
{
    if (ttl == 0) return 0;
    return ts > UINT64_MAX - ttl ? UINT64_MAX : ts + ttl;
}

int kv_apply_put(struct kv *kv, uint64_t index, const struct kv_command *c, struct kv_result *r)
{
    struct kv_state *st = &kv->st;
    uint32_t h = kv_hash(kv, c->key, c->key_len);
    r->key_hash = h;
    struct kv_entry **link = NULL;
    int t = 0;
    struct kv_entry *e = kv_state_find(st, h, c->key, c->key_len, &link, &t);
    int live = e && !entry_expired(e, c->timestamp_ms);
    if ((c->cond == KV_COND_IF_VERSION && (!live || e->version != c->cond_version)) ||
        (c->cond == KV_COND_IF_ABSENT && live)) {
        r->status = KV_STATUS_PRECONDITION_FAILED;
        r->version = live ? e->version : 0;
        return 0;
    }
    uint64_t expire = expiry_of(c->timestamp_ms, c->ttl_ms);
    size_t need = entry_size(c->key_len, c->value_len, expire != 0);
    if (e) {
        uint64_t used_old = kv_used_bytes_of(e->key_len, e->value_len);
        /* Everything that can fail comes first: an ENOMEM leaves the state
         * as it was. */
        uint64_t old_expire = entry_expire(e);
        uint32_t idx = entry_heap_idx(e);
        if (expire != 0 && old_expire == 0 && kv_heap_reserve(st) != 0) return ST_ENOMEM;
        /* A new allocation takes e's place in its chain and in the heap when
         * the value does not fit, or when an open snapshot cursor still has
         * to emit e as it is (then e goes to the cursor, not free()). */
        struct kv_entry *n = NULL;
        /* Every entry fits its allocation (kv_entry_fits, checked by
         * kv_check), so a value of the same size needs no look at the
         * allocator's header, which is another cache line. */
        int fits = need == entry_size(e->key_len, e->value_len, old_expire != 0) ||
                   kv_entry_fits(malloc_usable_size(e), need);
        if (!fits || (st->cow && kv_cow_needs(st, e, t))) {
            n = kv_malloc(st->cfg, need);
            if (!n) return ST_ENOMEM;
        }
        if (!live) kv_event_emit(st, KV_EVENT_EXPIRE, e); /* the dead key goes first */
        /* While e's trailer is still where its lengths say. */
        if (old_expire != 0 && expire == 0) {
            kv_heap_remove(st, e);
            idx = KV_HEAP_NONE;
        }
        if (n) {
            memcpy(n, e, ENTRY_HDR + e->key_len);
            *link = n;
            kv_index_replace(&st->idx, e, n); /* kv_index: while e is readable */
            if (idx != KV_HEAP_NONE) {
                st->heap[idx] = n;
                entry_set_heap_idx(e, KV_HEAP_NONE);
            }
            kv_entry_release(st, e, t);
            st->entry_bytes += malloc_usable_size(n);
            e = n;
        }
        /* The value may overwrite the old trailer: both were read above. */
        if (c->value_len) memcpy(e->data + e->key_len, c->value, c->value_len);
        e->value_len = c->value_len;
        st->used_bytes = st->used_bytes - used_old + kv_used_bytes_of(e->key_len, e->value_len);
        e->version = index;
        entry_set_expiry(e, expire, idx);
        st->hash_keys -= entry_type(e) == KV_TYPE_HASH;
        entry_set_type(e, c->value_type);
        st->hash_keys += entry_type(e) == KV_TYPE_HASH;
        if (old_expire == 0 && expire != 0) {
            kv_heap_push(st, e);
        } else if (old_expire != 0 && expire != 0 && old_expire != expire) {
            kv_heap_up(st, idx);
            kv_heap_down(st, entry_heap_idx(e));
        }
    } else {
        if (expire != 0 && kv_heap_reserve(st) != 0) return ST_ENOMEM;
        if (kv_index_reserve(&st->idx, st->cfg) != 0) return ST_ENOMEM; /* kv_index */
        kv_maybe_resize(kv, 1);
        e = kv_malloc(st->cfg, need);
        if (!e) return ST_ENOMEM;
        st->entry_bytes += malloc_usable_size(e);
        e->hash = h;
        e->key_len = (uint16_t)c->key_len;
        e->value_len = c->value_len;
        e->version = index;
        memcpy(e->data, c->key, c->key_len);
        if (c->value_len) memcpy(e->data + c->key_len, c->value, c->value_len);
        e->flags = 0;
        entry_set_type(e, c->value_type);
        entry_set_expiry(e, expire, KV_HEAP_NONE);
        kv_state_link(st, e);
        if (expire != 0) kv_heap_push(st, e);
    }
    kv_event_emit(st, KV_EVENT_PUT, e);
    r->status = KV_STATUS_OK;
    r->version = index;
    r->created = !live;
    return 0;
}

void kv_apply_delete(struct kv *kv, uint64_t index, const struct kv_command *c, struct kv_result *r)
{
    struct kv_state *st = &kv->st;
    uint32_t h = kv_hash(kv, c->key, c->key_len);
    r->key_hash = h;
    struct kv_entry **link = NULL;
    int t = 0;
    struct kv_entry *e = kv_state_find(st, h, c->key, c->key_len, &link, &t);
    int live = e && !entry_expired(e, c->timestamp_ms);
    if (c->cond == KV_COND_IF_VERSION && (!live || e->version != c->cond_version)) {
        r->status = KV_STATUS_PRECONDITION_FAILED;
        r->version = live ? e->version : 0;
        return;
    }
    if (e) kv_state_remove(st, e, link, t); /* an expired key goes too: it was dead anyway */
    r->status = live ? KV_STATUS_OK : KV_STATUS_NOT_FOUND;
    r->version = live ? index : 0;
    kv_maybe_resize(kv, 1);
}

static void apply_purge(struct kv *kv, uint64_t index, const struct kv_command *c,
                        struct kv_result *r)
{
    struct kv_state *st = &kv->st;
    uint64_t purged = 0;
    while (st->heap_len > 0 && entry_expire(st->heap[0]) <= c->timestamp_ms &&
           (c->keys_max == 0 || purged < c->keys_max)) {
        struct kv_entry *e = st->heap[0];
        struct kv_entry **link = NULL;
        int t = 0;
        struct kv_entry *found = kv_state_find(st, e->hash, e->data, e->key_len, &link, &t);
        ST_ASSERT(found == e);
        kv_state_remove(st, e, link, t);
        purged++;
    }
    r->status = KV_STATUS_OK;
    r->version = index;
    r->purged = purged;
    r->purge_more = st->heap_len > 0 && entry_expire(st->heap[0]) <= c->timestamp_ms;
    kv_maybe_resize(kv, 1);
}

static void apply_evict(struct kv *kv, uint64_t index, const struct kv_command *c,
                        struct kv_result *r)
{
    struct kv_state *st = &kv->st;
    size_t pos = 0;
    struct kv_evict_key k;
    while (kv_evict_next(c, &pos, &k)) {
        struct kv_entry **link = NULL;
        int t = 0;
        struct kv_entry *e =
            kv_state_find(st, kv_hash(kv, k.key, k.key_len), k.key, k.key_len, &link, &t);
        if (!e || e->version != k.version) continue; /* gone, or rewritten since */
        r->evicted_bytes += kv_used_bytes_of(e->key_len, e->value_len);
        kv_state_remove(st, e, link, t);
        r->evicted++;
    }
    r->status = KV_STATUS_OK;
    r->version = index;
    kv_maybe_resize(kv, 1);
}

void kv_prefetch(const struct kv *kv, const void *data, size_t len, int stage)
{
    struct kv_command c;
    if (kv->restoring || kv_command_decode(data, len, NULL, &c) != 0 || c.key_len == 0) return;
    uint32_t h = kv_hash(kv, c.key, c.key_len);
    const struct kv_state *st = &kv->st;
    for (int t = 0; t <= st->rehashing; t++) {
        const struct kv_table *tb = &st->t[t];
        if (tb->size == 0) continue;
        struct kv_entry *const *slot = &tb->buckets[h & (tb->size - 1)];
        if (stage == 0)
            __builtin_prefetch(slot, 0, 3);
        else if (*slot)
            __builtin_prefetch(*slot, 1, 3);
    }
}

int kv_apply(struct kv *kv, uint64_t index, const void *data, size_t len, struct kv_result *result)
{
    ST_ASSERT(!kv->restoring);
    ST_ASSERT(index > kv->applied_index);
    memset(result, 0, sizeof(*result));
    struct kv_command c;
    if (kv_command_decode(data, len, NULL, &c) != 0) {
        kv->applied_index = index;
        return ST_EPROTO;
    }
    result->type = c.type;
    result->req = c.req;
    result->index = index;
    uint64_t clock = ST_MAX(kv->clock_ms, c.timestamp_ms);
    struct idem_table *it = &kv->idem;
    struct idem_rec *rec = NULL, *fresh = NULL;
    uint64_t h = 0, digest = 0;
    if (c.idem_key_len) {
        /* Decided here, at apply, from replicated state only: every replica
         * replays or applies alike. A record whose age ran out by the log
         * clock is absent even before kv_idem_trim drops it. */
        h = kv_idem_hash(kv, c.idem_key, c.idem_key_len);
        digest = kv_request_digest(&c);
        rec = kv_idem_find(it, h, c.idem_key, c.idem_key_len);
        if (rec && rec->expire_at_ms > clock) {
            result->replayed = 1;
            result->index = rec->index;
            if (rec->req_digest != digest) {
                result->status = KV_STATUS_IDEMPOTENCY_MISMATCH;
            } else {
                result->type = (enum kv_cmd_type)rec->type;
                result->status = (enum kv_status)rec->status;
                result->version = rec->version;
                result->created = rec->created;
            }
            kv_idem_trim(it, UINT64_MAX, clock);
            kv->clock_ms = clock;
            kv->applied_index = index;
            return 0;
        }
        /* Everything that can fail first: ST_ENOMEM changes nothing. */
        fresh = kv_malloc(&kv->cfg, sizeof(*fresh) + c.idem_key_len);
        if (!fresh) return ST_ENOMEM;
        if (kv_idem_reserve(&kv->cfg, it) != 0) {
            free(fresh);
            return ST_ENOMEM;
        }
    }
    /* Apply judges time by the log clock (which includes this command's
     * timestamp): expiry checks, new expiries and the purge threshold never
     * go backwards, even for a command stamped below an earlier one. */
    c.timestamp_ms = clock;
    kv_state_rehash_step(&kv->st, kv->cfg.rehash_buckets_per_op);
    kv->st.ev_index = index; /* change events (kv.h) carry the command's index */
    kv->st.ev_clock_ms = clock;
    kv->st.ev_op = 0; /* kv_txn.c sets it per item */
    kv->st.ev_reason = c.type == KV_CMD_PURGE_EXPIRED ? KV_EVENT_EXPIRE
                       : c.type == KV_CMD_EVICT       ? KV_EVENT_EVICT
                                                      : KV_EVENT_DELETE;
    int rc = 0;
    switch (c.type) {
    case KV_CMD_PUT:
        rc = kv_apply_put(kv, index, &c, result);
        break;
    case KV_CMD_DELETE:
        kv_apply_delete(kv, index, &c, result);
        break;
    case KV_CMD_PURGE_EXPIRED:
        apply_purge(kv, index, &c, result);
        break;
    case KV_CMD_EVICT:
        apply_evict(kv, index, &c, result);
        break;
    case KV_CMD_REFUSE:
        result->status = KV_STATUS_REFUSED;
        break;
    case KV_CMD_AUTH_USER_PUT: /* the auth table: kv_auth.c */
    case KV_CMD_AUTH_USER_DELETE:
        rc = kv_auth_apply(kv, index, &c, result);
        if (rc == ST_EPROTO) { /* as a command that does not decode */
            memset(&result->req, 0, sizeof(result->req));
            kv->applied_index = index;
        }
        break;
    case KV_CMD_TXN:
        rc = kv_apply_txn(kv, index, &c, result);
        break;
    case KV_CMD_PUBLISH: /* no state: only the event */
        if (kv->cfg.event_cb) {
            struct kv_event ev = {.type = KV_EVENT_MESSAGE,
                                  .key = c.key,
                                  .key_len = c.key_len,
                                  .value = c.value,
                                  .value_len = c.value_len,
                                  .version = index};
            kv->cfg.event_cb(kv->cfg.event_ctx, &ev);
        }
        result->status = KV_STATUS_OK;
        break;
    case KV_CMD_SESSION_CREATE: /* sessions: kv_session.c */
    case KV_CMD_SESSION_DESTROY:
    case KV_CMD_PUT_SESSION:
        rc = kv_session_apply(kv, index, &c, result);
        break;
    }
    kv->st.ev_index = 0;
    if (rc != 0) {
        free(fresh);
        return rc;
    }
    if (fresh) {
        if (rec) kv_idem_drop(it, rec); /* aged out: the key starts over */
        fresh->hash = h;
        fresh->expire_at_ms = expiry_of(clock, c.idem_ttl_ms);
        fresh->index = index;
        fresh->version = result->version;
        fresh->req_digest = digest;
        fresh->type = (uint8_t)result->type;
        fresh->status = (uint8_t)result->status;
        fresh->created = (uint8_t)(result->created != 0);
        fresh->key_len = (uint8_t)c.idem_key_len;
        memcpy(fresh->key, c.idem_key, c.idem_key_len);
        kv_idem_link(it, fresh);
        kv_idem_trim(it, c.idem_keys_max, clock);
    } else {
        kv_idem_trim(it, UINT64_MAX, clock);
    }
    kv->clock_ms = clock;
    kv->applied_index = index;
    return 0;
}
