/* Wire codec of Raft messages (struct raft_msg <-> bytes). Byte layout in
 * docs/WIRE-FORMAT.md ("Raft message payload"); this is the payload of a
 * transport frame, the frame itself (length, type, CRC32C) is the
 * transport's.
 *
 * Layout (version 1, little-endian), in three parts:
 *
 *     +----------------------+---------------------+------------------+-------------------+
 *     | fixed part (80 B)    | snapshot meta       | entry descriptors| entry payloads    |
 *     | version,type,flags,  | (SNAPSHOT only)     | 24 B per entry   | concatenated, in  |
 *     | n_entries, 9 x u64   |                     |                  | entry order       |
 *     +----------------------+---------------------+------------------+-------------------+
 *     \________________ "header part": wire_msg_encode_header() ______/\__ caller's iovecs _/
 *
 * Scatter/gather: everything but the payloads is the "header part", which
 * wire_msg_encode_header() writes into a small buffer; the sender then writes
 * the entry payloads straight from the entries' raft_bufs (one iovec each),
 * without copying them. wire_msg_encode() produces the same bytes contiguously.
 *
 * Zero-copy decode: wire_msg_decode() of bytes held in a raft_buf gives
 * entries whose buf is that raft_buf (one reference taken per entry with a
 * payload) and whose data points into it.
 *
 * Validation: decoding checks every length, count, enum value and reserved
 * bit against the bounds below and returns ST_EPROTO on any violation; it
 * never reads outside [data, data + len). Log contiguity of the entries is
 * the core's business; the decoder only requires index > 0 and term > 0 on
 * APPEND entries (a forwarded PROPOSE carries entries the leader has not
 * placed yet: index and term are typically 0 and are not checked).
 * Encoding checks the message against the same rules (ST_EINVAL), so that
 * whatever we encode, we can decode.
 *
 * Not thread-safe with respect to raft_buf references (see raft.h). */
#ifndef ST_WIRE_MSG_H
#define ST_WIRE_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "stcache/raft.h"

#define WIRE_MSG_VERSION 1
#define WIRE_MSG_FIXED_SIZE 80      /* bytes of the fixed part */
#define WIRE_MSG_ENTRY_DESC_SIZE 24 /* bytes per entry descriptor */
#define WIRE_MSG_ENTRIES_MAX 65536  /* entries per message */
/* Snapshot meta: index, term, n_members, then per member id, role, context_len, context. */
#define WIRE_SNAPSHOT_META_FIXED_SIZE 20
#define WIRE_MEMBER_FIXED_SIZE 11
#define WIRE_SNAPSHOT_META_SIZE_MAX                                                                \
    (WIRE_SNAPSHOT_META_FIXED_SIZE +                                                               \
     RAFT_MEMBERS_MAX * (WIRE_MEMBER_FIXED_SIZE + RAFT_MEMBER_CONTEXT_MAX))

/* Flags byte of the fixed part. Unknown bits are a protocol error. */
#define WIRE_MSG_FLAG_REJECT 0x01u
#define WIRE_MSG_FLAG_SNAPSHOT 0x02u /* snapshot meta follows the fixed part */

/* ---------------------------------------------------------------- encode */

/* Size of the header part of m (fixed part + snapshot meta + entry
 * descriptors). Returns 0 and *out, or ST_EINVAL if m is not encodable
 * (type out of range, too many entries, bad conf, snapshot missing on a
 * SNAPSHOT message, ...). */
int wire_msg_header_size(const struct raft_msg *m, size_t *out);

/* Total encoded size of m (header part + all entry payloads), or 0 if m is
 * not encodable. */
uint64_t wire_msg_size(const struct raft_msg *m);

/* Writes the header part of m into out[0..cap). Returns 0 and *written,
 * ST_EINVAL (not encodable) or ST_ETOOBIG (cap too small). The entry
 * payloads must follow on the wire, in entry order: m->entries[i].data,
 * m->entries[i].len. Borrows m only for the call. */
int wire_msg_encode_header(const struct raft_msg *m, uint8_t *out, size_t cap, size_t *written);

/* Writes the whole encoding (header part + payloads) contiguously. Same
 * errors as wire_msg_encode_header(). */
int wire_msg_encode(const struct raft_msg *m, uint8_t *out, size_t cap, size_t *written);

/* ---------------------------------------------------------------- decode */

/* A decoded message plus the storage it points into. Caller-owned, reusable:
 * init once, decode/release many times, close once. The entries array grows
 * on demand and is kept between decodes (no allocation per message in the
 * steady state). */
struct wire_msg {
    struct raft_msg msg;                /* entries -> entries, snapshot -> &snapshot */
    struct raft_snapshot_meta snapshot; /* valid when msg.snapshot != NULL */
    struct raft_entry *entries;         /* owned array of entries_cap */
    uint32_t entries_cap;
    uint32_t refs_held; /* raft_buf references taken by the last decode */
};

void wire_msg_init(struct wire_msg *wm);
/* Releases held references and frees the entries array. */
void wire_msg_close(struct wire_msg *wm);

/* Decodes data[0..len) into wm->msg. `frame` is the raft_buf that holds
 * data (data must lie inside frame->data), or NULL: then entries with a
 * payload cannot be referenced and decoding them fails with ST_EINVAL.
 * On success takes one reference on frame per entry with len > 0; drop them
 * with wire_msg_release() once the message has been consumed (raft_step()
 * takes its own references for what it keeps). wm must be released (no
 * references held). Returns 0, ST_EPROTO (malformed input: nothing held),
 * ST_ENOMEM. */
int wire_msg_decode(struct wire_msg *wm, struct raft_buf *frame, const uint8_t *data, size_t len);

/* Drops the references the last decode took; wm->msg becomes invalid. */
void wire_msg_release(struct wire_msg *wm);

/* ------------------------------------------------------- snapshot meta */

/* The snapshot meta codec on its own (also usable for snapshot files).
 * size: ST_EINVAL if meta is not encodable (n > RAFT_MEMBERS_MAX, bad role,
 * context_len > RAFT_MEMBER_CONTEXT_MAX). */
int wire_snapshot_meta_size(const struct raft_snapshot_meta *meta, size_t *out);
int wire_snapshot_meta_encode(const struct raft_snapshot_meta *meta, uint8_t *out, size_t cap,
                              size_t *written);
/* Decodes one meta from the start of data[0..len); *consumed = its size.
 * ST_EPROTO on malformed or truncated input. Unused members of meta->conf are
 * zeroed. */
int wire_snapshot_meta_decode(const uint8_t *data, size_t len, struct raft_snapshot_meta *meta,
                              size_t *consumed);

#endif
