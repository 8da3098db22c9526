/* kv auth: the replicated user table (kv_auth.h), its apply, its snapshot
 * section and its record codec. Formats in docs/KV.md, "Auth table". */
#include "kv/kv_auth.h"
#include "kv/kv_int.h"

#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"

static const char *const role_names[] = {NULL, "admin", "readwrite", "readonly"};

const char *kv_auth_role_name(uint8_t role)
{
    return role >= KV_AUTH_ADMIN && role <= KV_AUTH_READONLY ? role_names[role] : NULL;
}

uint8_t kv_auth_role_parse(const char *s, size_t len)
{
    for (unsigned r = KV_AUTH_ADMIN; r <= KV_AUTH_READONLY; r++)
        if (strlen(role_names[r]) == len && memcmp(role_names[r], s, len) == 0) return (uint8_t)r;
    return 0;
}

bool kv_auth_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > KV_AUTH_NAME_BYTES_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static const uint8_t *prefix_at(const struct kv_auth_user *u, uint32_t i)
{
    return u->prefix_bytes + u->prefix_off[i];
}

static int prefix_find(const struct kv_auth_user *u, const uint8_t *p, size_t len)
{
    for (uint32_t i = 0; i < u->n_prefixes; i++)
        if (u->prefix_len[i] == len && memcmp(prefix_at(u, i), p, len) == 0) return (int)i;
    return -1;
}

int kv_auth_user_add_prefix(struct kv_auth_user *u, const uint8_t *p, size_t len)
{
    if (len == 0 || len > KV_AUTH_PREFIX_BYTES_MAX) return ST_EINVAL;
    if (prefix_find(u, p, len) >= 0) return 0;
    if (u->n_prefixes >= KV_AUTH_PREFIXES_MAX) return ST_EINVAL;
    /* Prefixes are packed in order: the next one starts after the last. */
    size_t off = 0;
    if (u->n_prefixes)
        off = (size_t)u->prefix_off[u->n_prefixes - 1] + u->prefix_len[u->n_prefixes - 1];
    ST_ASSERT(off + len <= sizeof u->prefix_bytes);
    memcpy(u->prefix_bytes + off, p, len);
    u->prefix_off[u->n_prefixes] = (uint16_t)off;
    u->prefix_len[u->n_prefixes] = (uint16_t)len;
    u->n_prefixes++;
    return 0;
}

int kv_auth_user_remove_prefix(struct kv_auth_user *u, const uint8_t *p, size_t len)
{
    int at = prefix_find(u, p, len);
    if (at < 0) return ST_ENOENT;
    struct kv_auth_user old = *u;
    u->n_prefixes = 0;
    for (uint32_t i = 0; i < old.n_prefixes; i++)
        if ((int)i != at) (void)kv_auth_user_add_prefix(u, prefix_at(&old, i), old.prefix_len[i]);
    return 0;
}

/* ---------- the record codec ----------
 *   u8 name length N, u8 role, u8 prefix count P, u8 reserved (0)
 *   u32 KDF iterations, 16 salt, 32 hash, N name bytes,
 *   P x (u16 prefix length L, L bytes) */

int kv_auth_record_encode(const struct kv_auth_user *u, uint8_t *buf, size_t cap, size_t *out_len)
{
    if (!kv_auth_name_valid(u->name, u->name_len) || !kv_auth_role_name(u->role) ||
        u->n_prefixes > KV_AUTH_PREFIXES_MAX || u->kdf_iterations == 0 ||
        u->kdf_iterations > KV_AUTH_KDF_ITERATIONS_MAX)
        return ST_EINVAL;
    size_t need = KV_AUTH_RECORD_FIXED_BYTES + u->name_len;
    for (uint32_t i = 0; i < u->n_prefixes; i++)
        need += 2u + u->prefix_len[i];
    if (need > cap) return ST_ETOOBIG;
    uint8_t *p = buf;
    p[0] = u->name_len;
    p[1] = u->role;
    p[2] = u->n_prefixes;
    p[3] = 0;
    put_u32(p + 4, u->kdf_iterations);
    memcpy(p + 8, u->salt, KV_AUTH_SALT_BYTES);
    memcpy(p + 24, u->hash, KV_AUTH_HASH_BYTES);
    p += KV_AUTH_RECORD_FIXED_BYTES;
    memcpy(p, u->name, u->name_len);
    p += u->name_len;
    for (uint32_t i = 0; i < u->n_prefixes; i++) {
        p[0] = (uint8_t)u->prefix_len[i];
        p[1] = (uint8_t)(u->prefix_len[i] >> 8);
        memcpy(p + 2, prefix_at(u, i), u->prefix_len[i]);
        p += 2u + u->prefix_len[i];
    }
    ST_ASSERT((size_t)(p - buf) == need);
    *out_len = need;
    return 0;
}

int kv_auth_record_decode(const uint8_t *p, size_t len, struct kv_auth_user *out)
{
    if (len < KV_AUTH_RECORD_FIXED_BYTES || len > KV_AUTH_RECORD_BYTES_MAX) return ST_EPROTO;
    memset(out, 0, offsetof(struct kv_auth_user, prefix_bytes));
    out->name_len = p[0];
    out->role = p[1];
    uint8_t n_prefixes = p[2];
    out->kdf_iterations = get_u32(p + 4);
    /* The name's length before it is copied: the byte can claim up to 255. */
    if (p[3] != 0 || !kv_auth_role_name(out->role) || n_prefixes > KV_AUTH_PREFIXES_MAX ||
        out->kdf_iterations == 0 || out->kdf_iterations > KV_AUTH_KDF_ITERATIONS_MAX ||
        out->name_len > KV_AUTH_NAME_BYTES_MAX || len - KV_AUTH_RECORD_FIXED_BYTES < out->name_len)
        return ST_EPROTO;
    memcpy(out->salt, p + 8, KV_AUTH_SALT_BYTES);
    memcpy(out->hash, p + 24, KV_AUTH_HASH_BYTES);
    const uint8_t *q = p + KV_AUTH_RECORD_FIXED_BYTES;
    memcpy(out->name, q, out->name_len);
    out->name[out->name_len] = '\0';
    if (!kv_auth_name_valid(out->name, out->name_len)) return ST_EPROTO;
    q += out->name_len;
    size_t rest = len - KV_AUTH_RECORD_FIXED_BYTES - out->name_len;
    for (uint32_t i = 0; i < n_prefixes; i++) {
        if (rest < 2) return ST_EPROTO;
        size_t pl = (size_t)q[0] | ((size_t)q[1] << 8);
        if (pl == 0 || pl > KV_AUTH_PREFIX_BYTES_MAX || rest - 2 < pl) return ST_EPROTO;
        if (prefix_find(out, q + 2, pl) >= 0) return ST_EPROTO; /* one encoding per record */
        if (kv_auth_user_add_prefix(out, q + 2, pl) != 0) return ST_EPROTO;
        q += 2 + pl;
        rest -= 2 + pl;
    }
    return rest == 0 ? 0 : ST_EPROTO;
}

/* ---------- the table: users sorted by name ---------- */

static int name_cmp(const struct kv_auth_user *u, const char *name, size_t len)
{
    size_t n = ST_MIN((size_t)u->name_len, len);
    int c = memcmp(u->name, name, n);
    if (c) return c;
    return (int)u->name_len - (int)len;
}

/* The position of name, or where it would be inserted (*found = 0). */
static uint32_t table_search(const struct kv_auth_table *t, const char *name, size_t len,
                             int *found)
{
    uint32_t lo = 0, hi = t->n;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        int c = name_cmp(t->users[mid], name, len);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

const struct kv_auth_user *kv_auth_find(const struct kv *kv, const char *name, size_t len)
{
    int found;
    uint32_t i = table_search(&kv->auth, name, len, &found);
    return found ? kv->auth.users[i] : NULL;
}

uint32_t kv_auth_count(const struct kv *kv)
{
    return kv->auth.n;
}

const struct kv_auth_user *kv_auth_at(const struct kv *kv, uint32_t i)
{
    ST_ASSERT(i < kv->auth.n);
    return kv->auth.users[i];
}

uint64_t kv_auth_generation(const struct kv *kv)
{
    return kv->auth.generation;
}

void kv_auth_free(struct kv_auth_table *t)
{
    for (uint32_t i = 0; i < t->n; i++)
        free(t->users[i]);
    free(t->users);
    uint64_t gen = t->generation;
    memset(t, 0, sizeof *t);
    t->generation = gen;
}

/* Inserts u (owned by t from now on) at position at, or replaces the user
 * there (replace = 1). The array has room (kv_auth_reserve). */
static void table_put(struct kv_auth_table *t, uint32_t at, struct kv_auth_user *u, int replace)
{
    if (replace) {
        free(t->users[at]);
        t->users[at] = u;
        return;
    }
    memmove(&t->users[at + 1], &t->users[at], (t->n - at) * sizeof t->users[0]);
    t->users[at] = u;
    t->n++;
}

static int table_reserve(const struct kv_config *cfg, struct kv_auth_table *t)
{
    if (t->n < t->cap) return 0;
    uint32_t cap = t->cap ? t->cap * 2 : 8;
    if (cap > KV_AUTH_USERS_MAX) cap = KV_AUTH_USERS_MAX;
    if (cap <= t->n) return ST_EINVAL;
    struct kv_auth_user **u = kv_realloc(cfg, t->users, cap * sizeof *u);
    if (!u) return ST_ENOMEM;
    t->users = u;
    t->cap = cap;
    return 0;
}

int kv_auth_apply(struct kv *kv, uint64_t index, const struct kv_command *c, struct kv_result *r)
{
    struct kv_auth_table *t = &kv->auth;
    r->status = KV_STATUS_OK;
    r->version = index;
    if (c->type == KV_CMD_AUTH_USER_DELETE) {
        int found;
        uint32_t at = table_search(t, (const char *)c->value, c->value_len, &found);
        if (!found) {
            r->status = KV_STATUS_NOT_FOUND;
            r->version = 0;
            return 0;
        }
        if (c->cond == KV_COND_IF_VERSION && t->users[at]->version != c->cond_version) {
            r->status = KV_STATUS_PRECONDITION_FAILED;
            r->version = t->users[at]->version;
            return 0;
        }
        free(t->users[at]);
        memmove(&t->users[at], &t->users[at + 1], (t->n - at - 1) * sizeof t->users[0]);
        t->n--;
        t->generation++;
        return 0;
    }
    ST_ASSERT(c->type == KV_CMD_AUTH_USER_PUT);
    struct kv_auth_user *u = kv_malloc(&kv->cfg, sizeof *u);
    if (!u) return ST_ENOMEM;
    if (kv_auth_record_decode(c->value, c->value_len, u) != 0) {
        free(u);
        return ST_EPROTO;
    }
    int found;
    uint32_t at = table_search(t, u->name, u->name_len, &found);
    const struct kv_auth_user *old = found ? t->users[at] : NULL;
    if ((c->cond == KV_COND_IF_ABSENT && old) ||
        (c->cond == KV_COND_IF_VERSION && (!old || old->version != c->cond_version)) ||
        (!old && t->n >= KV_AUTH_USERS_MAX)) { /* a full table refuses like a failed condition */
        r->status = KV_STATUS_PRECONDITION_FAILED;
        r->version = old ? old->version : 0;
        free(u);
        return 0;
    }
    if (!old && table_reserve(&kv->cfg, t) != 0) {
        free(u);
        return ST_ENOMEM;
    }
    u->version = index;
    r->created = !old;
    table_put(t, at, u, old != NULL);
    t->generation++;
    return 0;
}

uint64_t kv_auth_digest(const struct kv *kv)
{
    uint64_t sum = kv->auth.n;
    uint8_t buf[KV_AUTH_RECORD_BYTES_MAX + 8];
    for (uint32_t i = 0; i < kv->auth.n; i++) {
        size_t len = 0;
        put_u64(buf, kv->auth.users[i]->version);
        if (kv_auth_record_encode(kv->auth.users[i], buf + 8, sizeof buf - 8, &len) != 0) continue;
        sum += kv_siphash13(0x61757468u, 0x7461626c65u, buf, len + 8);
    }
    return sum;
}

/* ---------- the snapshot section ----------
 *   u32 user count U, u32 reserved (0), then U x (u64 version, u32 record
 *   length L, L record bytes), in name order. */

int kv_auth_section_encode(const struct kv *kv, uint8_t **out, size_t *out_len)
{
    const struct kv_auth_table *t = &kv->auth;
    size_t cap = 8 + (size_t)t->n * (12 + KV_AUTH_RECORD_BYTES_MAX);
    uint8_t *buf = kv_malloc(&kv->cfg, cap);
    if (!buf) return ST_ENOMEM;
    put_u32(buf, t->n);
    put_u32(buf + 4, 0);
    size_t used = 8;
    for (uint32_t i = 0; i < t->n; i++) {
        size_t len = 0;
        int rc = kv_auth_record_encode(t->users[i], buf + used + 12, cap - used - 12, &len);
        ST_ASSERT(rc == 0); /* every stored record was decoded from a valid one */
        put_u64(buf + used, t->users[i]->version);
        put_u32(buf + used + 8, (uint32_t)len);
        used += 12 + len;
    }
    *out = buf;
    *out_len = used;
    return 0;
}

int kv_auth_restore_record(const struct kv_config *cfg, struct kv_auth_table *t, uint64_t version,
                           uint64_t applied_index, const uint8_t *rec, size_t len)
{
    if (version == 0 || version > applied_index) return ST_ECORRUPT;
    struct kv_auth_user *u = kv_malloc(cfg, sizeof *u);
    if (!u) return ST_ENOMEM;
    if (kv_auth_record_decode(rec, len, u) != 0) {
        free(u);
        return ST_ECORRUPT;
    }
    u->version = version;
    /* Name order, strictly increasing: one encoding per table. */
    if (t->n && name_cmp(t->users[t->n - 1], u->name, u->name_len) >= 0) {
        free(u);
        return ST_ECORRUPT;
    }
    int rc = table_reserve(cfg, t);
    if (rc) {
        free(u);
        return rc == ST_ENOMEM ? ST_ENOMEM : ST_ECORRUPT;
    }
    t->users[t->n++] = u;
    return 0;
}

/* ---------- permissions ---------- */

static bool has_prefix(const uint8_t *s, size_t len, const uint8_t *p, size_t plen)
{
    return len >= plen && memcmp(s, p, plen) == 0;
}

bool kv_auth_key_allowed(const struct kv_auth_user *u, bool write, const uint8_t *key, size_t len)
{
    if (u->role == KV_AUTH_ADMIN) return true;
    if (write && u->role != KV_AUTH_READWRITE) return false;
    if (u->n_prefixes == 0) return true;
    for (uint32_t i = 0; i < u->n_prefixes; i++)
        if (has_prefix(key, len, prefix_at(u, i), u->prefix_len[i])) return true;
    return false;
}

/* memcmp order of byte strings: <0, 0, >0. */
static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    int c = memcmp(a, b, ST_MIN(al, bl));
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

/* Whether every key in [start, end) begins with p: start begins with p and
 * end <= the first string after every string that begins with p. */
static bool range_within(const uint8_t *p, size_t pl, const uint8_t *start, size_t start_len,
                         const uint8_t *end, size_t end_len)
{
    if (!has_prefix(start, start_len, p, pl) || end_len == 0) return false;
    uint8_t succ[KV_AUTH_PREFIX_BYTES_MAX];
    size_t sl = pl;
    memcpy(succ, p, pl);
    while (sl > 0 && succ[sl - 1] == 0xff)
        sl--;
    if (sl == 0) return true; /* p is all 0xff: nothing sorts after its keys */
    succ[sl - 1]++;
    return bytes_cmp(end, end_len, succ, sl) <= 0;
}

bool kv_auth_range_allowed(const struct kv_auth_user *u, const uint8_t *prefix, size_t prefix_len,
                           const uint8_t *start, size_t start_len, const uint8_t *end,
                           size_t end_len)
{
    if (u->role == KV_AUTH_ADMIN || u->n_prefixes == 0) return true;
    for (uint32_t i = 0; i < u->n_prefixes; i++) {
        const uint8_t *p = prefix_at(u, i);
        size_t pl = u->prefix_len[i];
        if (has_prefix(prefix, prefix_len, p, pl)) return true;
        if (range_within(p, pl, start, start_len, end, end_len)) return true;
    }
    return false;
}
