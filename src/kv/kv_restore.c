/* kv streaming restore: parses a snapshot stream fed in arbitrary pieces
 * into a shadow state, checked field by field, swapped in only when the
 * whole stream verified. Stream format in docs/KV.md. */
#include "kv/kv_int.h"
#include "kv/kv_auth.h"
#include "kv/kv_session.h"

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/crc32c.h"

/* ---------- streaming restore ---------- */

enum restore_phase {
    RS_FIXED,        /* SNAP_FIXED_BYTES into stage */
    RS_FIXED2,       /* version 2: SNAP_FIXED2_BYTES into stage */
    RS_META,         /* meta_len bytes into meta */
    RS_HDR_CRC,      /* 4 bytes */
    RS_IDEM_HDR,     /* SNAP_IDEM_HEADER_BYTES into stage */
    RS_IDEM_KEY,     /* key bytes into the new record */
    RS_REC_HDR,      /* 24 bytes into stage */
    RS_REC_DATA,     /* key+value bytes into the new entry */
    RS_AUTH_HDR,     /* version 3: SNAP_AUTH_HEADER_BYTES into stage */
    RS_AUTH_REC_HDR, /* SNAP_AUTH_RECORD_BYTES into stage */
    RS_AUTH_REC,     /* a user record into auth_rec */
    RS_SESS_HDR,     /* version 4: SNAP_SESSION_HEADER_BYTES into stage */
    RS_SESS_REC,     /* KV_SESSION_RECORD_FIXED_BYTES into stage */
    RS_SESS_NAME,    /* the name into the session */
    RS_SESS_KEY_HDR, /* KV_SESSION_KEY_FIXED_BYTES into stage */
    RS_SESS_KEY,     /* the key into the attachment */
    RS_TRAILER,      /* 12 bytes */
    RS_DONE,
};

struct kv_restore {
    struct kv *kv;
    struct kv state_kv; /* a shadow kv (same config) owning the new state */
    enum restore_phase phase;
    int err;
    uint8_t stage[SNAP_IDEM_HEADER_BYTES];
    _Static_assert(SNAP_RECORD_HEADER_BYTES <= SNAP_IDEM_HEADER_BYTES &&
                       SNAP_FIXED_BYTES <= SNAP_IDEM_HEADER_BYTES &&
                       SNAP_FIXED2_BYTES <= SNAP_IDEM_HEADER_BYTES &&
                       SNAP_TRAILER_BYTES <= SNAP_IDEM_HEADER_BYTES,
                   "stage holds every fixed-size field");
    size_t have; /* bytes of the current field received */
    uint32_t crc;
    uint64_t applied_index;
    uint64_t keys;
    uint64_t keys_read;
    uint32_t version; /* of the stream: 1 or 2 */
    uint64_t clock_ms;
    uint64_t idem_n;
    uint64_t idem_read;
    struct idem_rec *idem_cur; /* record being filled in RS_IDEM_KEY */
    uint8_t *meta;
    uint32_t meta_len;
    struct kv_entry *cur; /* entry being filled in RS_REC_DATA */
    size_t cur_len;       /* key + value bytes expected */
    /* Version 3: the auth section (kv_auth.c) */
    uint32_t auth_n, auth_read;
    uint64_t auth_version;
    uint32_t auth_len;
    uint8_t *auth_rec; /* KV_AUTH_RECORD_BYTES_MAX, allocated at the section */
    /* Version 4: the session section (kv_session.c) */
    uint32_t sess_n, sess_read;
    uint32_t sess_key; /* attachment of the last session being read */
    uint32_t sess_key_len;
    uint8_t *sess_dst; /* RS_SESS_NAME, RS_SESS_KEY: where the bytes go */
};

/* The phase after the key records: the auth section (version 3) or the
 * trailer. */
static enum restore_phase after_keys(const struct kv_restore *r)
{
    return r->version >= SNAP_VERSION_AUTH ? RS_AUTH_HDR : RS_TRAILER;
}

/* The phase after the auth section: the session section (version 5) or
 * the trailer. */
static enum restore_phase after_auth(const struct kv_restore *r)
{
    return r->version >= KV_SNAPSHOT_VERSION ? RS_SESS_HDR : RS_TRAILER;
}

/* The phase after a session's name or attachment. */
static enum restore_phase sess_next(const struct kv_restore *r)
{
    const struct kv_session_table *t = &r->state_kv.sess;
    if (r->sess_key < t->s[t->n - 1]->n_keys) return RS_SESS_KEY_HDR;
    return r->sess_read == r->sess_n ? RS_TRAILER : RS_SESS_REC;
}

int kv_restore_begin(struct kv *kv, struct kv_restore **out)
{
    if (kv->restoring || kv->snapshots_open) return ST_EBUSY;
    struct kv_restore *r = kv_calloc(&kv->cfg, 1, sizeof(*r));
    if (!r) return ST_ENOMEM;
    r->kv = kv;
    r->state_kv.cfg = kv->cfg;
    r->phase = RS_FIXED;
    kv->restoring = 1;
    *out = r;
    return 0;
}

static size_t phase_need(const struct kv_restore *r)
{
    switch (r->phase) {
    case RS_FIXED:
        return SNAP_FIXED_BYTES;
    case RS_FIXED2:
        return SNAP_FIXED2_BYTES;
    case RS_IDEM_HDR:
        return SNAP_IDEM_HEADER_BYTES;
    case RS_IDEM_KEY:
        return r->idem_cur->key_len;
    case RS_META:
        return r->meta_len;
    case RS_HDR_CRC:
        return 4;
    case RS_REC_HDR:
        return SNAP_RECORD_HEADER_BYTES;
    case RS_REC_DATA:
        return r->cur_len;
    case RS_AUTH_HDR:
        return SNAP_AUTH_HEADER_BYTES;
    case RS_AUTH_REC_HDR:
        return SNAP_AUTH_RECORD_BYTES;
    case RS_AUTH_REC:
        return r->auth_len;
    case RS_SESS_HDR:
        return SNAP_SESSION_HEADER_BYTES;
    case RS_SESS_REC:
        return KV_SESSION_RECORD_FIXED_BYTES;
    case RS_SESS_KEY_HDR:
        return KV_SESSION_KEY_FIXED_BYTES;
    case RS_SESS_NAME:
    case RS_SESS_KEY:
        return r->sess_key_len;
    case RS_TRAILER:
        return SNAP_TRAILER_BYTES;
    case RS_DONE:
        return 0;
    }
    return 0;
}

static uint8_t *phase_dst(struct kv_restore *r)
{
    switch (r->phase) {
    case RS_META:
        return r->meta;
    case RS_REC_DATA:
        return r->cur->data;
    case RS_IDEM_KEY:
        return r->idem_cur->key;
    case RS_AUTH_REC:
        return r->auth_rec;
    case RS_SESS_NAME:
    case RS_SESS_KEY:
        return r->sess_dst;
    default:
        return r->stage;
    }
}

/* Called when the current field is complete. Returns 0 or an error. */
static int restore_field_done(struct kv_restore *r)
{
    struct kv_state *st = &r->state_kv.st;
    switch (r->phase) {
    case RS_FIXED: {
        r->version = get_u32(r->stage + 8);
        if (memcmp(r->stage, kv_snap_magic, 8) != 0 || r->version < SNAP_VERSION_1 ||
            r->version > KV_SNAPSHOT_VERSION || get_u32(r->stage + 12) != 0)
            return ST_ECORRUPT;
        r->applied_index = kv_load_le64(r->stage + 16);
        r->keys = kv_load_le64(r->stage + 24);
        r->meta_len = get_u32(r->stage + 32);
        if (r->meta_len > KV_SNAPSHOT_META_BYTES_MAX) return ST_ECORRUPT;
        if (r->meta_len) {
            r->meta = kv_malloc(&r->kv->cfg, r->meta_len);
            if (!r->meta) return ST_ENOMEM;
        }
        if (r->version != SNAP_VERSION_1) {
            r->phase = RS_FIXED2;
            return 0;
        }
        r->phase = r->meta_len ? RS_META : RS_HDR_CRC;
        return 0;
    }
    case RS_FIXED2:
        r->clock_ms = kv_load_le64(r->stage);
        r->idem_n = kv_load_le64(r->stage + 8);
        /* Every record was written by a distinct entry. */
        if (r->idem_n > r->applied_index) return ST_ECORRUPT;
        r->phase = r->meta_len ? RS_META : RS_HDR_CRC;
        return 0;
    case RS_IDEM_HDR: {
        if (get_u32(r->stage + 40) != st_crc32c(0, r->stage, 40)) return ST_ECORRUPT;
        uint8_t key_len = r->stage[0], type = r->stage[1], status = r->stage[2],
                created = r->stage[3];
        uint64_t index = kv_load_le64(r->stage + 32);
        struct idem_table *it = &r->state_kv.idem;
        if (key_len == 0 || key_len > KV_IDEM_KEY_BYTES_MAX ||
            (type != KV_CMD_PUT && type != KV_CMD_DELETE) || status > KV_STATUS_NOT_FOUND ||
            created > 1 || get_u32(r->stage + 4) != 0 || index == 0 || index > r->applied_index ||
            (it->newest && index <= it->newest->index))
            return ST_ECORRUPT;
        struct idem_rec *rec = kv_malloc(&r->kv->cfg, sizeof(*rec) + key_len);
        if (!rec) return ST_ENOMEM;
        rec->key_len = key_len;
        rec->type = type;
        rec->status = status;
        rec->created = created;
        rec->version = kv_load_le64(r->stage + 8);
        rec->req_digest = kv_load_le64(r->stage + 16);
        rec->expire_at_ms = kv_load_le64(r->stage + 24);
        rec->index = index;
        r->idem_cur = rec;
        r->phase = RS_IDEM_KEY;
        return 0;
    }
    case RS_IDEM_KEY: {
        struct idem_rec *rec = r->idem_cur;
        struct idem_table *it = &r->state_kv.idem;
        r->idem_cur = NULL;
        rec->hash = kv_idem_hash(r->kv, rec->key, rec->key_len);
        if (kv_idem_find(it, rec->hash, rec->key, rec->key_len)) {
            free(rec);
            return ST_ECORRUPT; /* duplicate key */
        }
        if (kv_idem_reserve(&r->kv->cfg, it) != 0) {
            free(rec);
            return ST_ENOMEM;
        }
        kv_idem_link(it, rec);
        r->idem_read++;
        if (r->idem_read == r->idem_n)
            r->phase = r->keys ? RS_REC_HDR : after_keys(r);
        else
            r->phase = RS_IDEM_HDR;
        return 0;
    }
    case RS_META:
        r->phase = RS_HDR_CRC;
        return 0;
    case RS_HDR_CRC: {
        /* r->crc covers the bytes before this field (see restore_feed). */
        if (get_u32(r->stage) != r->crc) return ST_ECORRUPT;
        r->crc = st_crc32c(r->crc, r->stage, 4); /* the body CRC covers the header CRC */
        /* Bounded before rounding: the key count is read from the file, and
         * next_pow2 of a count above 2^63 would never return. */
        uint64_t max = r->kv->cfg.restore_presize_buckets_max;
        uint64_t buckets =
            kv_next_pow2(ST_MIN(ST_MAX(r->keys, (uint64_t)r->kv->cfg.buckets_initial), max));
        buckets = ST_MIN(buckets, max);
        buckets = ST_MAX(buckets, (uint64_t)r->kv->cfg.buckets_initial);
        if (kv_state_init(st, &r->state_kv.cfg, buckets) != 0) return ST_ENOMEM;
        r->phase = r->idem_n ? RS_IDEM_HDR : r->keys ? RS_REC_HDR : after_keys(r);
        return 0;
    }
    case RS_REC_HDR: {
        if (get_u32(r->stage + 24) != st_crc32c(0, r->stage, 24)) return ST_ECORRUPT;
        /* u16 key length, u8 type (version 4; 0 before), u8 0: before
         * version 4 a u32 key length, whose high bytes are 0 if valid. */
        uint32_t key_len = get_u32(r->stage) & 0xffffu, value_len = get_u32(r->stage + 4);
        uint8_t type = r->stage[2];
        if (r->stage[3] != 0 || type > KV_TYPE_HASH ||
            (type != KV_TYPE_STRING && r->version < SNAP_VERSION_4))
            return ST_ECORRUPT;
        uint64_t version = kv_load_le64(r->stage + 8), expire = kv_load_le64(r->stage + 16);
        if (key_len == 0 || key_len > KV_KEY_BYTES_HARD_MAX || value_len > KV_VALUE_BYTES_HARD_MAX)
            return ST_ECORRUPT;
        if (version == 0 || version > r->applied_index) return ST_ECORRUPT;
        if (expire != 0 && kv_heap_reserve(st) != 0) return ST_ENOMEM;
        struct kv_entry *e = kv_malloc(st->cfg, entry_size(key_len, value_len, expire != 0));
        if (!e) return ST_ENOMEM;
        st->entry_bytes += malloc_usable_size(e);
        e->next = NULL;
        e->key_len = (uint16_t)key_len;
        e->value_len = value_len;
        e->version = version;
        e->hash = 0;
        e->flags = 0;
        entry_set_type(e, type);
        entry_set_expiry(e, expire, KV_HEAP_NONE); /* the trailer is after the bytes fed */
        r->cur = e;
        r->cur_len = (size_t)key_len + value_len;
        r->phase = RS_REC_DATA;
        return 0;
    }
    case RS_REC_DATA: {
        struct kv_entry *e = r->cur;
        r->cur = NULL;
        e->hash = kv_hash(r->kv, e->data, e->key_len);
        if (kv_state_find(st, e->hash, e->data, e->key_len, NULL, NULL) ||
            (entry_type(e) == KV_TYPE_HASH &&
             kv_hval_check(e->data + e->key_len, e->value_len, NULL) != 0)) {
            kv_entry_free(st, e);
            return ST_ECORRUPT; /* a duplicate key, a malformed hash */
        }
        if (kv_index_reserve(&st->idx, st->cfg) != 0) { /* kv_index */
            kv_entry_free(st, e);
            return ST_ENOMEM;
        }
        kv_maybe_resize(&r->state_kv, 0); /* presized: never shrink while filling */
        kv_state_rehash_step(st, r->kv->cfg.rehash_buckets_per_op);
        kv_state_link(st, e);
        if (e->flags & ENTRY_F_TTL) kv_heap_push(st, e);
        r->keys_read++;
        r->phase = r->keys_read == r->keys ? after_keys(r) : RS_REC_HDR;
        return 0;
    }
    case RS_AUTH_HDR:
        r->auth_n = get_u32(r->stage);
        /* Version 3 is written only for a table with users; 4 (hashes) and
         * 5 (sessions) with or without users. */
        if ((r->auth_n == 0 && r->version == SNAP_VERSION_3) || r->auth_n > KV_AUTH_USERS_MAX ||
            get_u32(r->stage + 4) != 0)
            return ST_ECORRUPT;
        if (r->auth_n == 0) {
            r->phase = after_auth(r);
            return 0;
        }
        r->auth_rec = kv_malloc(&r->kv->cfg, KV_AUTH_RECORD_BYTES_MAX);
        if (!r->auth_rec) return ST_ENOMEM;
        r->phase = RS_AUTH_REC_HDR;
        return 0;
    case RS_AUTH_REC_HDR:
        r->auth_version = kv_load_le64(r->stage);
        r->auth_len = get_u32(r->stage + 8);
        if (r->auth_len < KV_AUTH_RECORD_FIXED_BYTES || r->auth_len > KV_AUTH_RECORD_BYTES_MAX)
            return ST_ECORRUPT;
        r->phase = RS_AUTH_REC;
        return 0;
    case RS_AUTH_REC: {
        int rc = kv_auth_restore_record(&r->kv->cfg, &r->state_kv.auth, r->auth_version,
                                        r->applied_index, r->auth_rec, r->auth_len);
        if (rc) return rc;
        r->auth_read++;
        r->phase = r->auth_read == r->auth_n ? after_auth(r) : RS_AUTH_REC_HDR;
        return 0;
    }
    case RS_SESS_HDR:
        r->sess_n = get_u32(r->stage);
        /* Version 4 is written only for a table with sessions. */
        if (r->sess_n == 0 || r->sess_n > KV_SESSIONS_HARD_MAX || get_u32(r->stage + 4) != 0)
            return ST_ECORRUPT;
        r->phase = RS_SESS_REC;
        return 0;
    case RS_SESS_REC: {
        struct kv_session_table *t = &r->state_kv.sess;
        int rc = kv_session_restore_begin(&r->kv->cfg, t, r->applied_index, r->stage);
        if (rc) return rc;
        r->sess_read++;
        r->sess_key = 0;
        struct kv_session *s = t->s[t->n - 1];
        if (s->name_len) {
            r->sess_dst = (uint8_t *)s->name;
            r->sess_key_len = s->name_len;
            r->phase = RS_SESS_NAME;
            return 0;
        }
        r->phase = sess_next(r);
        return 0;
    }
    case RS_SESS_NAME:
        r->phase = sess_next(r);
        return 0;
    case RS_SESS_KEY_HDR: {
        uint32_t key_len = get_u32(r->stage + 8);
        int rc =
            kv_session_restore_key(&r->kv->cfg, &r->state_kv.sess, r->sess_key, r->applied_index,
                                   kv_load_le64(r->stage), key_len, &r->sess_dst);
        if (rc) return rc;
        r->sess_key++;
        r->sess_key_len = key_len;
        r->phase = RS_SESS_KEY;
        return 0;
    }
    case RS_SESS_KEY:
        r->phase = sess_next(r);
        return 0;
    case RS_TRAILER:
        if (kv_load_le64(r->stage) != r->keys || get_u32(r->stage + 8) != r->crc)
            return ST_ECORRUPT;
        r->phase = RS_DONE;
        return 0;
    case RS_DONE:
        break;
    }
    ST_UNREACHABLE();
}

int kv_restore_feed(struct kv_restore *r, const void *data, size_t len)
{
    if (r->err) return r->err;
    const uint8_t *p = data;
    while (len > 0) {
        if (r->phase == RS_DONE) {
            r->err = ST_ECORRUPT; /* bytes after the trailer */
            return r->err;
        }
        size_t need = phase_need(r);
        size_t n = ST_MIN(len, need - r->have);
        uint8_t *dst = phase_dst(r);
        memcpy(dst + r->have, p, n);
        /* The CRC covers everything except the trailer's CRC field; the
         * header CRC is checked against the CRC of the bytes before it. */
        if (r->phase == RS_TRAILER) {
            size_t crc_from = 8; /* key count bytes are covered, the CRC is not */
            if (r->have < crc_from) {
                size_t m = ST_MIN(n, crc_from - r->have);
                r->crc = st_crc32c(r->crc, p, m);
            }
        } else if (r->phase != RS_HDR_CRC) {
            r->crc = st_crc32c(r->crc, p, n);
        }
        r->have += n;
        p += n;
        len -= n;
        if (r->have == need) {
            int rc = restore_field_done(r);
            r->have = 0;
            if (rc != 0) {
                r->err = rc;
                return rc;
            }
        }
    }
    return 0;
}

static void restore_release(struct kv_restore *r)
{
    if (r->cur) {
        free(r->cur);
        r->cur = NULL;
    }
    free(r->idem_cur);
    r->idem_cur = NULL;
    kv_idem_free(&r->state_kv.idem);
    kv_auth_free(&r->state_kv.auth);
    kv_session_free(&r->state_kv.sess);
    free(r->auth_rec);
    kv_state_free(&r->state_kv.st);
    free(r->meta);
    r->kv->restoring = 0;
    free(r);
}

int kv_restore_finish(struct kv_restore *r, struct kv_snapshot_info *info)
{
    int rc = r->err;
    if (rc == 0 && r->phase != RS_DONE) rc = ST_ECORRUPT; /* truncated */
    if (rc != 0) {
        restore_release(r);
        return rc;
    }
    struct kv *kv = r->kv;
    kv_state_free(&kv->st);
    kv->st = r->state_kv.st;
    kv->st.cfg = &kv->cfg; /* it pointed at the restore context's copy */
    memset(&r->state_kv.st, 0, sizeof(r->state_kv.st));
    kv_idem_free(&kv->idem);
    kv->idem = r->state_kv.idem;
    memset(&r->state_kv.idem, 0, sizeof(r->state_kv.idem));
    uint64_t auth_gen = kv->auth.generation; /* kv_auth.c: the table, swapped whole */
    kv_auth_free(&kv->auth);
    kv->auth = r->state_kv.auth;
    kv->auth.generation = auth_gen + 1;
    memset(&r->state_kv.auth, 0, sizeof(r->state_kv.auth));
    kv_session_free(&kv->sess); /* kv_session.c: swapped whole too */
    kv->sess = r->state_kv.sess;
    memset(&r->state_kv.sess, 0, sizeof(r->state_kv.sess));
    /* A version 1 snapshot carries no clock: the log clock restarts from
     * the next entry's timestamp (only replicas upgraded across such a
     * snapshot see this; see docs/KV.md). */
    kv->clock_ms = r->clock_ms;
    kv->applied_index = r->applied_index;
    ST_DEBUG_ASSERT(kv_check_invariants(kv) == 0); /* O(n), like the restore itself */
    if (info) {
        info->applied_index = r->applied_index;
        info->keys = r->keys;
        info->meta = r->meta;
        info->meta_len = r->meta_len;
        r->meta = NULL;
    }
    restore_release(r);
    return 0;
}

void kv_restore_abort(struct kv_restore *r)
{
    if (r) restore_release(r);
}
