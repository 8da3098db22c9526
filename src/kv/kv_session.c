/* kv sessions: the session table, the session commands at apply, and the
 * snapshot section. Contracts in kv_session.h, formats in docs/KV.md,
 * "Sessions". */
#include "kv/kv_session.h"

#include <stdlib.h>
#include <string.h>

#include "kv/kv_int.h"
#include "stcache/errors.h"
#include "util/assert.h"

/* ---------- lookups ---------- */

/* The position of id in the table, or of the first larger id. */
static uint32_t sess_pos(const struct kv_session_table *t, uint64_t id)
{
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->s[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct kv_session *sess_find(const struct kv_session_table *t, uint64_t id, uint32_t *pos)
{
    uint32_t i = sess_pos(t, id);
    if (pos) *pos = i;
    return i < t->n && t->s[i]->id == id ? t->s[i] : NULL;
}

uint32_t kv_session_count(const struct kv *kv)
{
    return kv->sess.n;
}

const struct kv_session *kv_session_at(const struct kv *kv, uint32_t i)
{
    ST_ASSERT(i < kv->sess.n);
    return kv->sess.s[i];
}

const struct kv_session *kv_session_find(const struct kv *kv, uint64_t id)
{
    return sess_find(&kv->sess, id, NULL);
}

/* ---------- the table ---------- */

static void sess_free(struct kv_session *s)
{
    for (uint32_t i = 0; i < s->n_keys; i++)
        free(s->keys[i]);
    free(s);
}

void kv_session_free(struct kv_session_table *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        sess_free(t->s[i]);
    free(t->s);
    memset(t, 0, sizeof(*t));
}

/* Room for one more session: 0 or ST_ENOMEM (t unchanged). */
static int sess_reserve(const struct kv_config *cfg, struct kv_session_table *t)
{
    if (t->n < t->cap) return 0;
    uint32_t cap = t->cap ? t->cap * 2 : 16;
    struct kv_session **s = kv_realloc(cfg, t->s, (size_t)cap * sizeof(*s));
    if (!s) return ST_ENOMEM;
    t->s = s;
    t->cap = cap;
    return 0;
}

/* 1 if the attachment still names the live entry it attached (expired
 * entries included: they are gone at the next purge anyway). */
static int attachment_live(const struct kv *kv, const struct kv_session_key *k)
{
    const struct kv_entry *e =
        kv_state_find(&kv->st, kv_hash(kv, k->key, k->key_len), k->key, k->key_len, NULL, NULL);
    return e && e->version == k->version;
}

/* ---------- apply ---------- */

static int apply_create(struct kv *kv, uint64_t index, const struct kv_command *c,
                        struct kv_result *r)
{
    struct kv_session_table *t = &kv->sess;
    if (t->n >= c->keys_max) {
        r->status = KV_STATUS_SESSION_LIMIT;
        return 0;
    }
    ST_ASSERT(t->n == 0 || t->s[t->n - 1]->id < index); /* ids are indexes: appended in order */
    if (sess_reserve(&kv->cfg, t) != 0) return ST_ENOMEM;
    struct kv_session *s = kv_calloc(&kv->cfg, 1, sizeof(*s));
    if (!s) return ST_ENOMEM;
    s->id = index;
    s->ttl_ms = c->ttl_ms;
    s->name_len = c->value_len;
    if (c->value_len) memcpy(s->name, c->value, c->value_len);
    t->s[t->n++] = s;
    r->status = KV_STATUS_OK;
    r->version = index;
    return 0;
}

static void apply_destroy(struct kv *kv, uint64_t index, const struct kv_command *c,
                          struct kv_result *r)
{
    struct kv_session_table *t = &kv->sess;
    uint32_t pos = 0;
    struct kv_session *s = sess_find(t, c->session_id, &pos);
    if (!s) {
        r->status = KV_STATUS_NO_SESSION;
        return;
    }
    struct kv_state *st = &kv->st;
    st->ev_reason = c->reason == KV_SESSION_END_EXPIRED ? KV_EVENT_EXPIRE : KV_EVENT_DELETE;
    uint64_t deleted = 0;
    for (uint32_t i = 0; i < s->n_keys; i++) {
        const struct kv_session_key *k = s->keys[i];
        struct kv_entry **link = NULL;
        int tb = 0;
        struct kv_entry *e =
            kv_state_find(st, kv_hash(kv, k->key, k->key_len), k->key, k->key_len, &link, &tb);
        if (!e || e->version != k->version) continue; /* rewritten or gone since: stays */
        kv_state_remove(st, e, link, tb);
        deleted++;
    }
    sess_free(s);
    memmove(&t->s[pos], &t->s[pos + 1], (size_t)(t->n - pos - 1) * sizeof(t->s[0]));
    t->n--;
    kv_maybe_resize(kv, 1);
    r->status = KV_STATUS_OK;
    r->version = index;
    r->purged = deleted;
}

static int apply_put_session(struct kv *kv, uint64_t index, const struct kv_command *c,
                             struct kv_result *r)
{
    struct kv_session *s = sess_find(&kv->sess, c->session_id, NULL);
    if (!s) {
        r->status = KV_STATUS_NO_SESSION;
        return 0;
    }
    uint32_t slot = s->n_keys;
    for (uint32_t i = 0; i < s->n_keys; i++)
        if (s->keys[i]->key_len == c->key_len && memcmp(s->keys[i]->key, c->key, c->key_len) == 0)
            slot = i;
    struct kv_session_key *fresh = NULL;
    int prune = 0;
    if (slot == s->n_keys) {
        if (s->n_keys == KV_SESSION_KEYS_MAX) {
            /* Attachments whose key was rewritten or deleted since can
             * never delete anything (versions only grow): their slots are
             * free, reclaimed once the write is done (an ST_ENOMEM before
             * then changes nothing). The PUT cannot change their state: its
             * key is not among them. */
            uint32_t live = 0;
            for (uint32_t i = 0; i < s->n_keys; i++)
                live += (uint32_t)attachment_live(kv, s->keys[i]);
            if (live == KV_SESSION_KEYS_MAX) {
                r->status = KV_STATUS_SESSION_LIMIT;
                return 0;
            }
            prune = 1;
        }
        fresh = kv_malloc(&kv->cfg, sizeof(*fresh) + c->key_len);
        if (!fresh) return ST_ENOMEM;
        fresh->key_len = c->key_len;
        memcpy(fresh->key, c->key, c->key_len);
    }
    struct kv_command put = *c;
    put.type = KV_CMD_PUT;
    put.session_id = 0;
    int rc = kv_apply_put(kv, index, &put, r);
    if (rc != 0 || r->status != KV_STATUS_OK) {
        free(fresh);
        return rc;
    }
    if (prune) {
        uint32_t kept = 0;
        for (uint32_t i = 0; i < s->n_keys; i++) {
            if (attachment_live(kv, s->keys[i]))
                s->keys[kept++] = s->keys[i];
            else
                free(s->keys[i]);
        }
        s->n_keys = kept;
    }
    if (fresh) {
        slot = s->n_keys;
        s->keys[slot] = fresh;
        s->n_keys++;
    }
    s->keys[slot]->version = index;
    return 0;
}

int kv_session_apply(struct kv *kv, uint64_t index, const struct kv_command *c, struct kv_result *r)
{
    switch (c->type) {
    case KV_CMD_SESSION_CREATE:
        return apply_create(kv, index, c, r);
    case KV_CMD_SESSION_DESTROY:
        apply_destroy(kv, index, c, r);
        return 0;
    case KV_CMD_PUT_SESSION:
        return apply_put_session(kv, index, c, r);
    default:
        break;
    }
    ST_UNREACHABLE();
}

/* ---------- digest ---------- */

uint64_t kv_session_digest(const struct kv *kv)
{
    uint64_t sum = 0;
    for (uint32_t i = 0; i < kv->sess.n; i++) {
        const struct kv_session *s = kv->sess.s[i];
        uint8_t fixed[24];
        put_u64(fixed, s->id);
        put_u64(fixed + 8, s->ttl_ms);
        put_u32(fixed + 16, s->name_len);
        put_u32(fixed + 20, s->n_keys);
        uint64_t h = kv_siphash13(0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, fixed, 24);
        h ^= kv_siphash13(h, 0xa4093822299f31d0ULL, (const uint8_t *)s->name, s->name_len);
        for (uint32_t k = 0; k < s->n_keys; k++) {
            uint8_t v[8];
            put_u64(v, s->keys[k]->version);
            h += kv_siphash13(h, 0x082efa98ec4e6c89ULL, v, 8) ^
                 kv_siphash13(0x452821e638d01377ULL, h, s->keys[k]->key, s->keys[k]->key_len);
        }
        sum += h;
    }
    return sum;
}

/* ---------- the snapshot section ----------
 *   u32 session count S (>= 1), u32 reserved (0), then S records in id
 *   order: u64 id, u64 ttl_ms, u32 name length N, u32 attachment count A,
 *   N name bytes, A x (u64 version, u32 key length L, L key bytes). */

int kv_session_section_encode(const struct kv *kv, uint8_t **out, size_t *out_len)
{
    const struct kv_session_table *t = &kv->sess;
    size_t cap = 8;
    for (uint32_t i = 0; i < t->n; i++) {
        cap += KV_SESSION_RECORD_FIXED_BYTES + t->s[i]->name_len;
        for (uint32_t k = 0; k < t->s[i]->n_keys; k++)
            cap += KV_SESSION_KEY_FIXED_BYTES + t->s[i]->keys[k]->key_len;
    }
    uint8_t *buf = kv_malloc(&kv->cfg, cap);
    if (!buf) return ST_ENOMEM;
    put_u32(buf, t->n);
    put_u32(buf + 4, 0);
    uint8_t *p = buf + 8;
    for (uint32_t i = 0; i < t->n; i++) {
        const struct kv_session *s = t->s[i];
        put_u64(p, s->id);
        put_u64(p + 8, s->ttl_ms);
        put_u32(p + 16, s->name_len);
        put_u32(p + 20, s->n_keys);
        p += KV_SESSION_RECORD_FIXED_BYTES;
        memcpy(p, s->name, s->name_len);
        p += s->name_len;
        for (uint32_t k = 0; k < s->n_keys; k++) {
            put_u64(p, s->keys[k]->version);
            put_u32(p + 8, s->keys[k]->key_len);
            p += KV_SESSION_KEY_FIXED_BYTES;
            memcpy(p, s->keys[k]->key, s->keys[k]->key_len);
            p += s->keys[k]->key_len;
        }
    }
    ST_ASSERT((size_t)(p - buf) == cap);
    *out = buf;
    *out_len = cap;
    return 0;
}

int kv_session_restore_begin(const struct kv_config *cfg, struct kv_session_table *t,
                             uint64_t applied_index, const uint8_t fixed[24])
{
    uint64_t id = kv_load_le64(fixed), ttl = kv_load_le64(fixed + 8);
    uint32_t name_len = get_u32(fixed + 16), n_keys = get_u32(fixed + 20);
    if (id == 0 || id > applied_index || (t->n && id <= t->s[t->n - 1]->id) ||
        ttl < KV_SESSION_TTL_MS_MIN || ttl > KV_SESSION_TTL_MS_MAX ||
        name_len > KV_SESSION_NAME_BYTES_MAX || n_keys > KV_SESSION_KEYS_MAX ||
        t->n >= KV_SESSIONS_HARD_MAX)
        return ST_ECORRUPT;
    if (sess_reserve(cfg, t) != 0) return ST_ENOMEM;
    struct kv_session *s = kv_calloc(cfg, 1, sizeof(*s));
    if (!s) return ST_ENOMEM;
    s->id = id;
    s->ttl_ms = ttl;
    s->name_len = name_len;
    s->n_keys = n_keys; /* the attachments follow, counted by restore_key */
    t->s[t->n++] = s;
    return 0;
}

int kv_session_restore_key(const struct kv_config *cfg, struct kv_session_table *t, uint32_t i,
                           uint64_t applied_index, uint64_t version, uint32_t key_len,
                           uint8_t **key_out)
{
    struct kv_session *s = t->s[t->n - 1];
    ST_ASSERT(i < s->n_keys);
    if (version == 0 || version > applied_index || version < s->id || key_len == 0 ||
        key_len > KV_KEY_BYTES_HARD_MAX)
        return ST_ECORRUPT;
    struct kv_session_key *k = kv_malloc(cfg, sizeof(*k) + key_len);
    if (!k) return ST_ENOMEM;
    k->version = version;
    k->key_len = key_len;
    s->keys[i] = k;
    *key_out = k->key;
    return 0;
}
