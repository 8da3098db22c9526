/* WAL record and segment-header codec (docs/DISK-FORMAT.md has every byte).
 *
 * A record (8-byte aligned, little endian):
 *
 *     0   u32 magic        ST_REC_MAGIC
 *     4   u8  type         enum st_rec_type
 *     5   u8  flags        0
 *     6   u16 reserved     0
 *     8   u32 len          payload bytes
 *     12  u32 header_crc   CRC32C of bytes [0,12) and [16,24)
 *     16  u64 wseq         sequence number of the write (group commit) it belongs to
 *     24  payload[len], then zero padding to a multiple of 8
 *     ..  u32 crc          CRC32C of the header and the padded payload
 *     ..  u32 tail         ST_REC_TAIL (never zero: tells a complete record from a torn one)
 *
 * Pure functions, no IO: the fuzzers and the WAL share them. */
#ifndef ST_STORAGE_RECORD_H
#define ST_STORAGE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stcache/raft.h"

#define ST_REC_MAGIC 0x31525453u /* "STR1" */
#define ST_REC_TAIL 0x45525453u  /* "STRE" */
#define ST_REC_HEADER_BYTES 24u
#define ST_REC_TRAILER_BYTES 8u
#define ST_REC_ENTRIES_HEADER_BYTES 16u /* first_index u64, count u32, reserved u32 */
#define ST_REC_ENTRY_HEADER_BYTES 16u   /* term u64, len u32, type u8, reserved[3] */

enum st_rec_type {
    ST_REC_ENTRIES = 1,    /* a run of contiguous entries */
    ST_REC_HARD_STATE = 2, /* term, vote, commit */
    ST_REC_TRUNCATE = 3,   /* discard every entry >= index */
    ST_REC_SNAPSHOT = 4,   /* log covered up to (index, term) by a snapshot */
};

/* Segment header: the first ST_SEG_HEADER_BYTES of every segment file. */
#define ST_SEG_MAGIC "STCWAL\0\1"
#define ST_SEG_VERSION 1u
#define ST_SEG_HEADER_BYTES 128u

struct st_seg_header {
    uint64_t seq;           /* equals the number in the file name */
    raft_index first_index; /* index the next entry written in this segment gets */
    uint64_t segment_bytes; /* preallocated size when created */
    raft_index snap_index;  /* snapshot mark in force at creation (0: none) */
    raft_term snap_term;
    struct raft_hard_state hs; /* hard state at creation */
    uint64_t wseq;             /* write sequence number at creation */
};

static inline uint32_t st_rec_padded(uint32_t len)
{
    return (len + 7u) & ~7u;
}

/* Total on-disk size of a record with `len` payload bytes. */
static inline uint64_t st_rec_size(uint32_t len)
{
    return (uint64_t)ST_REC_HEADER_BYTES + st_rec_padded(len) + ST_REC_TRAILER_BYTES;
}

/* Writes header, padding and trailer around a payload already placed at
 * out + ST_REC_HEADER_BYTES (len bytes). out must have st_rec_size(len) bytes. */
void st_rec_seal(uint8_t *out, uint8_t type, uint32_t len, uint64_t wseq);

struct st_rec_view {
    uint8_t type;
    uint32_t len;
    uint64_t wseq;
    const uint8_t *payload;
    uint64_t size; /* whole record, st_rec_size(len) */
};

enum st_rec_check {
    ST_REC_OK = 0,
    ST_REC_SHORT,      /* fewer bytes than the header or the record needs */
    ST_REC_BAD_HEADER, /* magic or header CRC wrong: len cannot be trusted */
    ST_REC_BAD_BODY,   /* header fine, tail or body CRC wrong */
};

/* Parses the record at p (avail bytes readable). On ST_REC_OK fills v. On
 * ST_REC_BAD_BODY and ST_REC_SHORT with a good header, v->size holds the
 * size the header announces (0 when the header is unusable). */
enum st_rec_check st_rec_parse(const uint8_t *p, uint64_t avail, uint32_t len_max,
                               struct st_rec_view *v);

void st_seg_header_encode(const struct st_seg_header *h, uint8_t out[ST_SEG_HEADER_BYTES]);
/* 0, or ST_ECORRUPT (bad magic or CRC), ST_EINVAL (unknown version). */
int st_seg_header_decode(const uint8_t in[ST_SEG_HEADER_BYTES], struct st_seg_header *h);

#endif
