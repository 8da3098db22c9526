/* Raft message codec: every message type round-trips field by field, entry
 * payloads decode zero-copy into the frame buffer, and every kind of bad input
 * (truncated, corrupted, oversized counts, bad enums) is ST_EPROTO. */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "util/assert.h"
#include "wire/le.h"
#include "wire/msg.h"

#define BUF_CAP (1 << 20)

static struct raft_buf *payload_buf(const char *text)
{
    size_t n = strlen(text);
    struct raft_buf *b = raft_buf_create(n);
    memcpy(b->data, text, n);
    return b;
}

static void fill_conf(struct raft_conf *conf, uint32_t n)
{
    memset(conf, 0, sizeof(*conf));
    conf->n = n;
    for (uint32_t i = 0; i < n; i++) {
        struct raft_member *m = &conf->members[i];
        m->id = 100 + i;
        m->role = (i % 3 == 2) ? RAFT_LEARNER : RAFT_VOTER;
        int len =
            snprintf(m->context, sizeof(m->context), "10.0.0.%u:7000 http=10.0.0.%u:8000", i, i);
        m->context_len = (uint16_t)len;
    }
}

static struct raft_msg sample_msg(uint8_t type)
{
    struct raft_msg m = {
        .type = type,
        .from = 1,
        .to = 0xFFFFFFFFFFFFFFF0ull,
        .term = 7,
        .index = 0x0102030405060708ull,
        .log_term = 6,
        .commit = 99,
        .reject = (type % 2) == 0,
        .reject_hint = 42,
        .hint_term = 5,
        .context = 0xDEADBEEFCAFEull,
    };
    return m;
}

static void assert_msg_eq(const struct raft_msg *a, const struct raft_msg *b)
{
    ASSERT_EQ(a->type, b->type);
    ASSERT_EQ(a->from, b->from);
    ASSERT_TRUE(a->to == b->to);
    ASSERT_EQ(a->term, b->term);
    ASSERT_TRUE(a->index == b->index);
    ASSERT_EQ(a->log_term, b->log_term);
    ASSERT_EQ(a->commit, b->commit);
    ASSERT_EQ(a->reject, b->reject);
    ASSERT_EQ(a->reject_hint, b->reject_hint);
    ASSERT_EQ(a->hint_term, b->hint_term);
    ASSERT_TRUE(a->context == b->context);
    ASSERT_EQ(a->n_entries, b->n_entries);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        ASSERT_EQ(a->entries[i].type, b->entries[i].type);
        ASSERT_EQ(a->entries[i].term, b->entries[i].term);
        ASSERT_EQ(a->entries[i].index, b->entries[i].index);
        ASSERT_EQ(a->entries[i].len, b->entries[i].len);
        if (a->entries[i].len > 0)
            ASSERT_MEMEQ(a->entries[i].data, b->entries[i].data, a->entries[i].len);
    }
    ASSERT_EQ(a->snapshot != NULL, b->snapshot != NULL);
    if (a->snapshot != NULL) {
        ASSERT_EQ(a->snapshot->index, b->snapshot->index);
        ASSERT_EQ(a->snapshot->term, b->snapshot->term);
        ASSERT_EQ(a->snapshot->conf.n, b->snapshot->conf.n);
        for (uint32_t i = 0; i < a->snapshot->conf.n; i++) {
            const struct raft_member *x = &a->snapshot->conf.members[i];
            const struct raft_member *y = &b->snapshot->conf.members[i];
            ASSERT_EQ(x->id, y->id);
            ASSERT_EQ(x->role, y->role);
            ASSERT_EQ(x->context_len, y->context_len);
            ASSERT_MEMEQ(x->context, y->context, x->context_len);
        }
    }
}

/* Encodes m into a fresh raft_buf; returns it (one ref) and the length. */
static struct raft_buf *encode_to_buf(const struct raft_msg *m, size_t *len)
{
    uint64_t size = wire_msg_size(m);
    ST_ASSERT(size > 0 && size < BUF_CAP);
    struct raft_buf *frame = raft_buf_create((size_t)size);
    ST_ASSERT(frame != NULL);
    size_t n = 0;
    int rv = wire_msg_encode(m, frame->data, frame->cap, &n);
    ST_ASSERT(rv == 0);
    ST_ASSERT(n == size);
    *len = n;
    return frame;
}

TEST(every_message_type_round_trips_every_field)
{
    struct raft_snapshot_meta meta = {.index = 1000, .term = 9};
    fill_conf(&meta.conf, 5);
    for (int t = RAFT_MSG_APPEND; t < RAFT_MSG_TYPE_MAX; t++) {
        struct raft_msg m = sample_msg((uint8_t)t);
        if (t == RAFT_MSG_SNAPSHOT) m.snapshot = &meta;
        size_t len;
        struct raft_buf *frame = encode_to_buf(&m, &len);
        struct wire_msg wm;
        wire_msg_init(&wm);
        ASSERT_EQ(wire_msg_decode(&wm, frame, frame->data, len), 0);
        assert_msg_eq(&m, &wm.msg);
        wire_msg_close(&wm);
        raft_buf_unref(frame);
    }
}

TEST(entries_round_trip_and_decode_zero_copy_into_the_frame)
{
    struct raft_buf *a = payload_buf("set k1 v1");
    struct raft_buf *b = payload_buf("a conf change payload");
    struct raft_entry ents[4] = {
        {.term = 3, .index = 10, .type = RAFT_ENTRY_NOOP},
        {.term = 3, .index = 11, .type = RAFT_ENTRY_NORMAL, .buf = a, .data = a->data, .len = 9},
        {.term = 4, .index = 12, .type = RAFT_ENTRY_CONF, .buf = b, .data = b->data, .len = 21},
        {.term = 4,
         .index = 13,
         .type = RAFT_ENTRY_NORMAL,
         .buf = a,
         .data = a->data + 4,
         .len = 2},
    };
    struct raft_msg m = sample_msg(RAFT_MSG_APPEND);
    m.entries = ents;
    m.n_entries = 4;
    size_t len;
    struct raft_buf *frame = encode_to_buf(&m, &len);
    ASSERT_EQ(len, WIRE_MSG_FIXED_SIZE + 4 * WIRE_MSG_ENTRY_DESC_SIZE + 9 + 21 + 2);
    struct wire_msg wm;
    wire_msg_init(&wm);
    ASSERT_EQ(wire_msg_decode(&wm, frame, frame->data, len), 0);
    assert_msg_eq(&m, &wm.msg);
    /* Zero-copy: three payload entries, three references on the frame. */
    ASSERT_EQ(frame->refs, 4);
    ASSERT_TRUE(wm.msg.entries[0].buf == NULL && wm.msg.entries[0].data == NULL);
    for (int i = 1; i < 4; i++) {
        ASSERT_TRUE(wm.msg.entries[i].buf == frame);
        ASSERT_TRUE(wm.msg.entries[i].data > frame->data &&
                    wm.msg.entries[i].data + wm.msg.entries[i].len <= frame->data + len);
    }
    /* A holder (the core) may keep a payload past the release. */
    raft_buf_ref(wm.msg.entries[2].buf);
    wire_msg_release(&wm);
    ASSERT_EQ(frame->refs, 2);
    raft_buf_unref(frame);
    ASSERT_EQ(frame->refs, 1);
    raft_buf_unref(frame);
    /* The decoder is reusable after release. */
    struct raft_msg hb = sample_msg(RAFT_MSG_HEARTBEAT);
    frame = encode_to_buf(&hb, &len);
    ASSERT_EQ(wire_msg_decode(&wm, frame, frame->data, len), 0);
    assert_msg_eq(&hb, &wm.msg);
    wire_msg_close(&wm);
    raft_buf_unref(frame);
    raft_buf_unref(a);
    raft_buf_unref(b);
}

TEST(scatter_gather_header_plus_payloads_equals_contiguous_encoding)
{
    struct raft_buf *a = payload_buf("0123456789abcdef");
    struct raft_entry ents[3];
    for (int i = 0; i < 3; i++)
        ents[i] = (struct raft_entry){.term = 2,
                                      .index = (raft_index)(5 + i),
                                      .type = RAFT_ENTRY_NORMAL,
                                      .buf = a,
                                      .data = a->data + i,
                                      .len = (uint32_t)(3 + i)};
    struct raft_msg m = sample_msg(RAFT_MSG_PROPOSE);
    m.entries = ents;
    m.n_entries = 3;
    uint8_t whole[512], sg[512];
    size_t whole_len, hdr_len, hdr_size;
    ASSERT_EQ(wire_msg_encode(&m, whole, sizeof(whole), &whole_len), 0);
    ASSERT_EQ(wire_msg_header_size(&m, &hdr_size), 0);
    ASSERT_EQ(wire_msg_encode_header(&m, sg, sizeof(sg), &hdr_len), 0);
    ASSERT_EQ(hdr_len, hdr_size);
    size_t pos = hdr_len;
    for (int i = 0; i < 3; i++) {
        memcpy(sg + pos, ents[i].data, ents[i].len);
        pos += ents[i].len;
    }
    ASSERT_EQ(pos, whole_len);
    ASSERT_EQ(wire_msg_size(&m), whole_len);
    ASSERT_MEMEQ(whole, sg, whole_len);
    /* Too small an output buffer is ST_ETOOBIG, not an overflow. */
    ASSERT_EQ(wire_msg_encode_header(&m, sg, hdr_len - 1, &hdr_len), ST_ETOOBIG);
    ASSERT_EQ(wire_msg_encode(&m, sg, whole_len - 1, &pos), ST_ETOOBIG);
    raft_buf_unref(a);
}

TEST(snapshot_meta_with_full_conf_and_max_contexts_round_trips)
{
    struct raft_snapshot_meta meta = {.index = UINT64_MAX, .term = UINT64_MAX - 1};
    fill_conf(&meta.conf, RAFT_MEMBERS_MAX);
    for (uint32_t i = 0; i < meta.conf.n; i++) {
        meta.conf.members[i].context_len = RAFT_MEMBER_CONTEXT_MAX;
        memset(meta.conf.members[i].context, 'a' + (int)(i % 26), RAFT_MEMBER_CONTEXT_MAX);
    }
    struct raft_msg m = sample_msg(RAFT_MSG_SNAPSHOT);
    m.snapshot = &meta;
    size_t len;
    struct raft_buf *frame = encode_to_buf(&m, &len);
    ASSERT_EQ(len, WIRE_MSG_FIXED_SIZE + WIRE_SNAPSHOT_META_SIZE_MAX);
    struct wire_msg wm;
    wire_msg_init(&wm);
    ASSERT_EQ(wire_msg_decode(&wm, frame, frame->data, len), 0);
    assert_msg_eq(&m, &wm.msg);
    wire_msg_close(&wm);
    raft_buf_unref(frame);

    /* The meta codec on its own, with an empty conf too. */
    struct raft_snapshot_meta empty = {.index = 3, .term = 1}, back;
    uint8_t out[64];
    size_t n, used;
    ASSERT_EQ(wire_snapshot_meta_encode(&empty, out, sizeof(out), &n), 0);
    ASSERT_EQ(n, WIRE_SNAPSHOT_META_FIXED_SIZE);
    ASSERT_EQ(wire_snapshot_meta_decode(out, n, &back, &used), 0);
    ASSERT_EQ(used, n);
    ASSERT_EQ(back.index, 3);
    ASSERT_EQ(back.conf.n, 0);
}

TEST(unencodable_messages_are_einval)
{
    struct raft_msg m = sample_msg(RAFT_MSG_TYPE_MAX);
    size_t n;
    uint8_t out[256];
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), ST_EINVAL);
    m = sample_msg(0);
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), ST_EINVAL);
    m = sample_msg(RAFT_MSG_SNAPSHOT); /* snapshot meta missing */
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), ST_EINVAL);
    struct raft_entry e = {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL};
    m = sample_msg(RAFT_MSG_VOTE); /* entries on a vote */
    m.entries = &e;
    m.n_entries = 1;
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), ST_EINVAL);
    m.type = RAFT_MSG_APPEND;
    e.type = 9; /* bad entry type */
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), ST_EINVAL);
    ASSERT_EQ(wire_msg_size(&m), 0);
    struct raft_snapshot_meta meta = {.index = 1, .term = 1};
    fill_conf(&meta.conf, 2);
    meta.conf.members[1].id = meta.conf.members[0].id; /* duplicate member */
    m = sample_msg(RAFT_MSG_SNAPSHOT);
    m.snapshot = &meta;
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), ST_EINVAL);
}

static int decode_copy(const uint8_t *data, size_t len)
{
    /* Decode from an exact-size heap buffer so ASan catches any over-read. */
    struct raft_buf *frame = raft_buf_create(len ? len : 1);
    memcpy(frame->data, data, len);
    struct wire_msg wm;
    wire_msg_init(&wm);
    int rv = wire_msg_decode(&wm, frame, frame->data, len);
    if (rv == 0)
        ST_ASSERT(frame->refs == 1 + wm.refs_held);
    else
        ST_ASSERT(frame->refs == 1 && wm.refs_held == 0);
    wire_msg_close(&wm);
    ST_ASSERT(frame->refs == 1);
    raft_buf_unref(frame);
    return rv;
}

TEST(every_truncation_is_rejected)
{
    struct raft_buf *a = payload_buf("payload-bytes");
    struct raft_entry ents[2] = {
        {.term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL, .buf = a, .data = a->data, .len = 13},
        {.term = 1, .index = 2, .type = RAFT_ENTRY_NORMAL, .buf = a, .data = a->data, .len = 4},
    };
    struct raft_msg m = sample_msg(RAFT_MSG_APPEND);
    m.entries = ents;
    m.n_entries = 2;
    uint8_t out[512];
    size_t n;
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), 0);
    ASSERT_EQ(decode_copy(out, n), 0);
    for (size_t cut = 0; cut < n; cut++)
        ASSERT_EQ(decode_copy(out, cut), ST_EPROTO);
    /* Trailing garbage is rejected too: lengths must add up exactly. */
    out[n] = 0;
    ASSERT_EQ(decode_copy(out, n + 1), ST_EPROTO);

    struct raft_snapshot_meta meta = {.index = 4, .term = 2};
    fill_conf(&meta.conf, 3);
    m = sample_msg(RAFT_MSG_SNAPSHOT);
    m.snapshot = &meta;
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), 0);
    ASSERT_EQ(decode_copy(out, n), 0);
    for (size_t cut = 0; cut < n; cut++)
        ASSERT_EQ(decode_copy(out, cut), ST_EPROTO);
    raft_buf_unref(a);
}

TEST(corrupted_fields_are_eproto)
{
    struct raft_entry e = {.term = 1, .index = 1, .type = RAFT_ENTRY_NOOP};
    struct raft_msg m = sample_msg(RAFT_MSG_APPEND);
    m.entries = &e;
    m.n_entries = 1;
    uint8_t good[256], bad[256] = {0};
    size_t n;
    ASSERT_EQ(wire_msg_encode(&m, good, sizeof(good), &n), 0);
    ASSERT_EQ(decode_copy(good, n), 0);
#define CORRUPT(stmt)                                                                              \
    do {                                                                                           \
        memcpy(bad, good, n);                                                                      \
        stmt;                                                                                      \
        ASSERT_EQ(decode_copy(bad, n), ST_EPROTO);                                                 \
    } while (0)
    CORRUPT(bad[0] = 2);                       /* version */
    CORRUPT(bad[1] = 0);                       /* type */
    CORRUPT(bad[1] = RAFT_MSG_TYPE_MAX);       /* type */
    CORRUPT(bad[1] = RAFT_MSG_VOTE);           /* entries on a vote */
    CORRUPT(bad[1] = RAFT_MSG_SNAPSHOT);       /* snapshot without the flag */
    CORRUPT(bad[2] |= 0x80);                   /* unknown flag */
    CORRUPT(bad[2] |= WIRE_MSG_FLAG_SNAPSHOT); /* flag on a non-snapshot */
    CORRUPT(bad[3] = 1);                       /* reserved */
    CORRUPT(le_put32(bad + 4, 2));             /* count larger than the data */
    CORRUPT(le_put32(bad + 4, 0));             /* count smaller: trailing bytes */
    CORRUPT(le_put32(bad + 4, 0xFFFFFFFFu));   /* count past the bound */
    CORRUPT(bad[80] = 0);                      /* entry type */
    CORRUPT(bad[80] = 4);                      /* entry type */
    CORRUPT(bad[81] = 1);                      /* entry reserved */
    CORRUPT(le_put32(bad + 84, 1));            /* payload length past the end */
    CORRUPT(le_put32(bad + 84, 0xFFFFFFFFu));  /* huge payload length */
    CORRUPT(le_put64(bad + 88, 0));            /* entry term 0 */
    CORRUPT(le_put64(bad + 96, 0));            /* entry index 0 */

    struct raft_snapshot_meta meta = {.index = 4, .term = 2};
    fill_conf(&meta.conf, 2);
    m = sample_msg(RAFT_MSG_SNAPSHOT);
    m.snapshot = &meta;
    ASSERT_EQ(wire_msg_encode(&m, good, sizeof(good), &n), 0);
    ASSERT_EQ(decode_copy(good, n), 0);
    size_t m0 = WIRE_MSG_FIXED_SIZE + WIRE_SNAPSHOT_META_FIXED_SIZE; /* first member */
    CORRUPT(le_put32(bad + 96, RAFT_MEMBERS_MAX + 1));               /* member count */
    CORRUPT(le_put32(bad + 96, 3));                               /* one member more than present */
    CORRUPT(le_put64(bad + m0, 0));                               /* member id 0 */
    CORRUPT(bad[m0 + 8] = 0);                                     /* role */
    CORRUPT(bad[m0 + 8] = 3);                                     /* role */
    CORRUPT(le_put16(bad + m0 + 9, RAFT_MEMBER_CONTEXT_MAX + 1)); /* context length */
    CORRUPT(bad[2] &= (uint8_t)~WIRE_MSG_FLAG_SNAPSHOT);          /* meta not announced */
#undef CORRUPT
}

TEST(bad_single_byte_flips_never_crash_and_release_everything)
{
    struct raft_buf *a = payload_buf("abcdefghij");
    struct raft_entry ents[3];
    for (int i = 0; i < 3; i++)
        ents[i] = (struct raft_entry){.term = 1,
                                      .index = (raft_index)(i + 1),
                                      .type = RAFT_ENTRY_NORMAL,
                                      .buf = a,
                                      .data = a->data,
                                      .len = (uint32_t)(i * 3)};
    struct raft_msg m = sample_msg(RAFT_MSG_APPEND);
    m.entries = ents;
    m.n_entries = 3;
    uint8_t good[512], bad[512];
    size_t n;
    ASSERT_EQ(wire_msg_encode(&m, good, sizeof(good), &n), 0);
    int accepted = 0, rejected = 0;
    for (size_t i = 0; i < n; i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(bad, good, n);
            bad[i] ^= (uint8_t)(1u << bit);
            int rv = decode_copy(bad, n);
            ASSERT_TRUE(rv == 0 || rv == ST_EPROTO);
            if (rv == 0)
                accepted++;
            else
                rejected++;
        }
    }
    /* Flips in ids/terms/payload bytes are undetectable here (the frame CRC
     * catches them); flips in structure are rejected. Both must occur. */
    ASSERT_TRUE(accepted > 0);
    ASSERT_TRUE(rejected > 0);
    raft_buf_unref(a);
}

TEST(forwarded_proposals_may_carry_entries_without_index_or_term)
{
    /* raft_propose() on a follower forwards {type, payload} with index/term 0. */
    struct raft_buf *a = payload_buf("set k v");
    struct raft_entry e = {.type = RAFT_ENTRY_NORMAL, .buf = a, .data = a->data, .len = 7};
    struct raft_msg m = sample_msg(RAFT_MSG_PROPOSE);
    m.entries = &e;
    m.n_entries = 1;
    size_t len;
    struct raft_buf *frame = encode_to_buf(&m, &len);
    struct wire_msg wm;
    wire_msg_init(&wm);
    ASSERT_EQ(wire_msg_decode(&wm, frame, frame->data, len), 0);
    assert_msg_eq(&m, &wm.msg);
    ASSERT_EQ(wm.msg.entries[0].index, 0);
    wire_msg_close(&wm);
    /* The same entry in an APPEND is malformed, both ways. */
    frame->data[1] = RAFT_MSG_APPEND;
    ASSERT_EQ(decode_copy(frame->data, len), ST_EPROTO);
    m.type = RAFT_MSG_APPEND;
    uint8_t out[256];
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &len), ST_EINVAL);
    raft_buf_unref(frame);
    raft_buf_unref(a);
}

TEST(payload_entries_need_a_frame_buffer)
{
    struct raft_buf *a = payload_buf("xy");
    struct raft_entry e = {
        .term = 1, .index = 1, .type = RAFT_ENTRY_NORMAL, .buf = a, .data = a->data, .len = 2};
    struct raft_msg m = sample_msg(RAFT_MSG_APPEND);
    m.entries = &e;
    m.n_entries = 1;
    uint8_t out[256];
    size_t n;
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), 0);
    struct wire_msg wm;
    wire_msg_init(&wm);
    ASSERT_EQ(wire_msg_decode(&wm, NULL, out, n), ST_EINVAL);
    m.n_entries = 0;
    ASSERT_EQ(wire_msg_encode(&m, out, sizeof(out), &n), 0);
    ASSERT_EQ(wire_msg_decode(&wm, NULL, out, n), 0); /* no payload: fine */
    wire_msg_close(&wm);
    raft_buf_unref(a);
}

TEST_MAIN()
