/* The codec of a snapshot's `meta` file (format in docs/DISK-FORMAT.md):
 * exposed inside storage/ so that the fuzz driver (tests/fuzz/fuzz_snap_meta.c)
 * reaches the decoder of these outside bytes directly. */
#ifndef ST_STORAGE_SNAP_META_H
#define ST_STORAGE_SNAP_META_H

#include <stddef.h>
#include <stdint.h>

#include "stcache/storage.h"

#define SNAP_META_MAGIC "STCSNAP1"
#define SNAP_META_VERSION 1u
#define SNAP_META_FIXED 48u
#define SNAP_MEMBER_FIXED 12u
#define SNAP_META_MAX                                                                              \
    (SNAP_META_FIXED + RAFT_MEMBERS_MAX * (SNAP_MEMBER_FIXED + RAFT_MEMBER_CONTEXT_MAX) + 4)

/* Writes the meta of info into out (room for SNAP_META_MAX bytes); returns
 * the bytes written. */
size_t st_snap_meta_encode(const struct st_snapshot_info *info, uint8_t *out);

/* Decodes in[0..len) into *info. 0, ST_ECORRUPT (magic, length, CRC32C,
 * counts), or ST_EINVAL (an unknown version). *info is undefined on error. */
int st_snap_meta_decode(const uint8_t *in, size_t len, struct st_snapshot_info *info);

#endif
