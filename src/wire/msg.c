/* Raft message codec; layout in msg.h and docs/WIRE-FORMAT.md. */
#include "wire/msg.h"

#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "wire/le.h"

_Static_assert(WIRE_MSG_FIXED_SIZE == 80, "fixed part layout");
_Static_assert(WIRE_MSG_ENTRY_DESC_SIZE == 24, "entry descriptor layout");
_Static_assert(RAFT_MEMBER_CONTEXT_MAX <= UINT16_MAX, "context_len is a u16 on the wire");
_Static_assert(RAFT_MSG_TYPE_MAX <= 255, "type is a u8 on the wire");

/* ------------------------------------------------------------ validation */

static bool entry_type_ok(unsigned t)
{
    return t == RAFT_ENTRY_NORMAL || t == RAFT_ENTRY_CONF || t == RAFT_ENTRY_NOOP;
}

static bool role_ok(unsigned r)
{
    return r == RAFT_VOTER || r == RAFT_LEARNER;
}

static bool carries_entries(unsigned type)
{
    return type == RAFT_MSG_APPEND || type == RAFT_MSG_PROPOSE;
}

/* Member ids are unique and non-zero: a conf the core can trust. */
static bool conf_ok(const struct raft_conf *conf)
{
    if (conf->n > RAFT_MEMBERS_MAX) return false;
    for (uint32_t i = 0; i < conf->n; i++) {
        const struct raft_member *m = &conf->members[i];
        if (m->id == RAFT_NONE || !role_ok(m->role) || m->context_len > RAFT_MEMBER_CONTEXT_MAX)
            return false;
        for (uint32_t j = 0; j < i; j++)
            if (conf->members[j].id == m->id) return false;
    }
    return true;
}

static bool msg_encodable(const struct raft_msg *m)
{
    if (m->type < RAFT_MSG_APPEND || m->type >= RAFT_MSG_TYPE_MAX) return false;
    if (m->n_entries > WIRE_MSG_ENTRIES_MAX) return false;
    if (m->n_entries > 0 && (!carries_entries(m->type) || m->entries == NULL)) return false;
    if ((m->type == RAFT_MSG_SNAPSHOT) != (m->snapshot != NULL)) return false;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (!entry_type_ok(e->type)) return false;
        if (m->type == RAFT_MSG_APPEND && (e->index == 0 || e->term == 0)) return false;
        if (e->len > 0 && e->data == NULL) return false;
    }
    return true;
}

/* ---------------------------------------------------------- snapshot meta */

int wire_snapshot_meta_size(const struct raft_snapshot_meta *meta, size_t *out)
{
    if (!conf_ok(&meta->conf)) return ST_EINVAL;
    size_t n = WIRE_SNAPSHOT_META_FIXED_SIZE;
    for (uint32_t i = 0; i < meta->conf.n; i++)
        n += WIRE_MEMBER_FIXED_SIZE + meta->conf.members[i].context_len;
    ST_ASSERT(n <= WIRE_SNAPSHOT_META_SIZE_MAX);
    *out = n;
    return 0;
}

int wire_snapshot_meta_encode(const struct raft_snapshot_meta *meta, uint8_t *out, size_t cap,
                              size_t *written)
{
    size_t need;
    int rv = wire_snapshot_meta_size(meta, &need);
    if (rv != 0) return rv;
    if (cap < need) return ST_ETOOBIG;
    uint8_t *p = out;
    le_put64(p, meta->index);
    le_put64(p + 8, meta->term);
    le_put32(p + 16, meta->conf.n);
    p += WIRE_SNAPSHOT_META_FIXED_SIZE;
    for (uint32_t i = 0; i < meta->conf.n; i++) {
        const struct raft_member *m = &meta->conf.members[i];
        le_put64(p, m->id);
        p[8] = m->role;
        le_put16(p + 9, m->context_len);
        p += WIRE_MEMBER_FIXED_SIZE;
        memcpy(p, m->context, m->context_len);
        p += m->context_len;
    }
    ST_ASSERT((size_t)(p - out) == need);
    *written = need;
    return 0;
}

int wire_snapshot_meta_decode(const uint8_t *data, size_t len, struct raft_snapshot_meta *meta,
                              size_t *consumed)
{
    if (len < WIRE_SNAPSHOT_META_FIXED_SIZE) return ST_EPROTO;
    memset(meta, 0, sizeof(*meta));
    meta->index = le_get64(data);
    meta->term = le_get64(data + 8);
    uint32_t n = le_get32(data + 16);
    if (n > RAFT_MEMBERS_MAX) return ST_EPROTO;
    size_t pos = WIRE_SNAPSHOT_META_FIXED_SIZE;
    for (uint32_t i = 0; i < n; i++) {
        if (len - pos < WIRE_MEMBER_FIXED_SIZE) return ST_EPROTO;
        struct raft_member *m = &meta->conf.members[i];
        m->id = le_get64(data + pos);
        m->role = data[pos + 8];
        m->context_len = le_get16(data + pos + 9);
        pos += WIRE_MEMBER_FIXED_SIZE;
        if (m->context_len > RAFT_MEMBER_CONTEXT_MAX || len - pos < m->context_len)
            return ST_EPROTO;
        memcpy(m->context, data + pos, m->context_len);
        pos += m->context_len;
    }
    meta->conf.n = n;
    if (!conf_ok(&meta->conf)) return ST_EPROTO;
    *consumed = pos;
    return 0;
}

/* ---------------------------------------------------------------- encode */

int wire_msg_header_size(const struct raft_msg *m, size_t *out)
{
    if (!msg_encodable(m)) return ST_EINVAL;
    size_t n = WIRE_MSG_FIXED_SIZE + (size_t)m->n_entries * WIRE_MSG_ENTRY_DESC_SIZE;
    if (m->snapshot != NULL) {
        size_t meta;
        int rv = wire_snapshot_meta_size(m->snapshot, &meta);
        if (rv != 0) return rv;
        n += meta;
    }
    *out = n;
    return 0;
}

uint64_t wire_msg_size(const struct raft_msg *m)
{
    size_t hdr;
    if (wire_msg_header_size(m, &hdr) != 0) return 0;
    uint64_t n = hdr;
    for (uint32_t i = 0; i < m->n_entries; i++)
        n += m->entries[i].len;
    return n;
}

int wire_msg_encode_header(const struct raft_msg *m, uint8_t *out, size_t cap, size_t *written)
{
    size_t need;
    int rv = wire_msg_header_size(m, &need);
    if (rv != 0) return rv;
    if (cap < need) return ST_ETOOBIG;
    uint8_t *p = out;
    p[0] = WIRE_MSG_VERSION;
    p[1] = m->type;
    p[2] = (uint8_t)((m->reject ? WIRE_MSG_FLAG_REJECT : 0) |
                     (m->snapshot != NULL ? WIRE_MSG_FLAG_SNAPSHOT : 0));
    p[3] = 0;
    le_put32(p + 4, m->n_entries);
    le_put64(p + 8, m->from);
    le_put64(p + 16, m->to);
    le_put64(p + 24, m->term);
    le_put64(p + 32, m->index);
    le_put64(p + 40, m->log_term);
    le_put64(p + 48, m->commit);
    le_put64(p + 56, m->reject_hint);
    le_put64(p + 64, m->hint_term);
    le_put64(p + 72, m->context);
    p += WIRE_MSG_FIXED_SIZE;
    if (m->snapshot != NULL) {
        size_t meta;
        rv = wire_snapshot_meta_encode(m->snapshot, p, cap - (size_t)(p - out), &meta);
        ST_ASSERT(rv == 0);
        p += meta;
    }
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        p[0] = e->type;
        p[1] = p[2] = p[3] = 0;
        le_put32(p + 4, e->len);
        le_put64(p + 8, e->term);
        le_put64(p + 16, e->index);
        p += WIRE_MSG_ENTRY_DESC_SIZE;
    }
    ST_ASSERT((size_t)(p - out) == need);
    *written = need;
    return 0;
}

int wire_msg_encode(const struct raft_msg *m, uint8_t *out, size_t cap, size_t *written)
{
    size_t hdr;
    int rv = wire_msg_encode_header(m, out, cap, &hdr);
    if (rv != 0) return rv;
    size_t pos = hdr;
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (cap - pos < e->len) return ST_ETOOBIG;
        if (e->len > 0) memcpy(out + pos, e->data, e->len);
        pos += e->len;
    }
    *written = pos;
    return 0;
}

/* ---------------------------------------------------------------- decode */

void wire_msg_init(struct wire_msg *wm)
{
    memset(wm, 0, sizeof(*wm));
}

void wire_msg_release(struct wire_msg *wm)
{
    uint32_t dropped = 0;
    for (uint32_t i = 0; i < wm->msg.n_entries && wm->refs_held > 0; i++) {
        if (wm->entries[i].buf != NULL) {
            raft_buf_unref(wm->entries[i].buf);
            wm->entries[i].buf = NULL;
            dropped++;
        }
    }
    ST_ASSERT(dropped == wm->refs_held);
    wm->refs_held = 0;
    memset(&wm->msg, 0, sizeof(wm->msg));
}

void wire_msg_close(struct wire_msg *wm)
{
    wire_msg_release(wm);
    free(wm->entries);
    wm->entries = NULL;
    wm->entries_cap = 0;
}

static int entries_reserve(struct wire_msg *wm, uint32_t n)
{
    if (n <= wm->entries_cap) return 0;
    uint32_t cap = wm->entries_cap < 16 ? 16 : wm->entries_cap;
    while (cap < n)
        cap *= 2;
    struct raft_entry *e = realloc(wm->entries, (size_t)cap * sizeof(*e));
    if (e == NULL) return ST_ENOMEM;
    wm->entries = e;
    wm->entries_cap = cap;
    return 0;
}

int wire_msg_decode(struct wire_msg *wm, struct raft_buf *frame, const uint8_t *data, size_t len)
{
    ST_ASSERT(wm->refs_held == 0);
    if (frame != NULL)
        ST_ASSERT(data >= frame->data && len <= frame->cap &&
                  (size_t)(data - frame->data) <= frame->cap - len);
    memset(&wm->msg, 0, sizeof(wm->msg));
    if (len < WIRE_MSG_FIXED_SIZE) return ST_EPROTO;
    const uint8_t *p = data;
    uint8_t flags = p[2];
    struct raft_msg m = {
        .type = p[1],
        .reject = (flags & WIRE_MSG_FLAG_REJECT) != 0,
        .n_entries = le_get32(p + 4),
        .from = le_get64(p + 8),
        .to = le_get64(p + 16),
        .term = le_get64(p + 24),
        .index = le_get64(p + 32),
        .log_term = le_get64(p + 40),
        .commit = le_get64(p + 48),
        .reject_hint = le_get64(p + 56),
        .hint_term = le_get64(p + 64),
        .context = le_get64(p + 72),
    };
    if (p[0] != WIRE_MSG_VERSION || p[3] != 0) return ST_EPROTO;
    if (m.type < RAFT_MSG_APPEND || m.type >= RAFT_MSG_TYPE_MAX) return ST_EPROTO;
    if ((flags & ~(WIRE_MSG_FLAG_REJECT | WIRE_MSG_FLAG_SNAPSHOT)) != 0) return ST_EPROTO;
    bool has_snapshot = (flags & WIRE_MSG_FLAG_SNAPSHOT) != 0;
    if (has_snapshot != (m.type == RAFT_MSG_SNAPSHOT)) return ST_EPROTO;
    if (m.n_entries > WIRE_MSG_ENTRIES_MAX || (m.n_entries > 0 && !carries_entries(m.type)))
        return ST_EPROTO;
    size_t pos = WIRE_MSG_FIXED_SIZE;
    if (has_snapshot) {
        size_t used;
        if (wire_snapshot_meta_decode(p + pos, len - pos, &wm->snapshot, &used) != 0)
            return ST_EPROTO;
        pos += used;
        m.snapshot = &wm->snapshot;
    }
    /* Descriptors, then exactly the sum of their lengths in payload bytes. */
    if ((len - pos) / WIRE_MSG_ENTRY_DESC_SIZE < m.n_entries) return ST_EPROTO;
    size_t payload_pos = pos + (size_t)m.n_entries * WIRE_MSG_ENTRY_DESC_SIZE;
    uint64_t payload_total = 0;
    for (uint32_t i = 0; i < m.n_entries; i++) {
        const uint8_t *d = p + pos + (size_t)i * WIRE_MSG_ENTRY_DESC_SIZE;
        if (!entry_type_ok(d[0]) || d[1] != 0 || d[2] != 0 || d[3] != 0) return ST_EPROTO;
        /* A forwarded proposal has no index/term yet (the leader assigns them). */
        if (m.type == RAFT_MSG_APPEND && (le_get64(d + 8) == 0 || le_get64(d + 16) == 0))
            return ST_EPROTO;
        payload_total += le_get32(d + 4);
    }
    if (payload_total != len - payload_pos) return ST_EPROTO;
    if (payload_total > 0 && frame == NULL) return ST_EINVAL;
    int rv = entries_reserve(wm, m.n_entries);
    if (rv != 0) return rv;
    size_t off = payload_pos;
    for (uint32_t i = 0; i < m.n_entries; i++) {
        const uint8_t *d = p + pos + (size_t)i * WIRE_MSG_ENTRY_DESC_SIZE;
        struct raft_entry *e = &wm->entries[i];
        e->type = d[0];
        e->len = le_get32(d + 4);
        e->term = le_get64(d + 8);
        e->index = le_get64(d + 16);
        if (e->len > 0) {
            e->buf = frame;
            e->data = p + off;
            raft_buf_ref(frame);
            wm->refs_held++;
        } else {
            e->buf = NULL;
            e->data = NULL;
        }
        off += e->len;
    }
    ST_ASSERT(off == len);
    m.entries = m.n_entries > 0 ? wm->entries : NULL;
    wm->msg = m;
    return 0;
}
