/* Fuzz target body for WAL recovery: the scan a node runs over its own
 * segment files at start (storage/wal_recovery.c, format in
 * docs/DISK-FORMAT.md §3). Shared by the libFuzzer driver
 * (tests/fuzz/fuzz_wal.c) and the deterministic smoke test
 * (tests/unit/storage/test_fuzz_smoke.c).
 *
 * The input becomes one or two segment files in a simulated file system
 * (nothing touches the disk), then st_wal_open and load run over them. Byte 0
 * chooses the shape:
 *   bit 0  structured: the rest is a list of chunks (u8 type, u16 length,
 *          payload), each sealed into a record with a valid header, CRC and
 *          tail (st_rec_seal), so that the payload decoders behind the
 *          checksums are reached; a chunk of type 0xff starts the second
 *          segment. Otherwise the bytes are the raw segment bodies; with two
 *          segments, bytes 1-2 (u16) give the first one's length.
 *   bit 1  two segments (the first is then not the last: damage in it is
 *          corruption, never a torn tail).
 *   bits 2-7  the second segment's first index minus one (0..63).
 * Whatever the input, open + load either fail with an error code or return
 * a log whose bounds, entry count and indexes agree. Every refusal is traced:
 * callers silence the trace (st_trace_set_level(ST_TRACE_OFF)). */
#ifndef ST_FUZZ_TARGETS_WAL_H
#define ST_FUZZ_TARGETS_WAL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "stcache/storage.h"
#include "storage/record.h"
#include "util/assert.h"
#include "wire/le.h"

#define FUZZ_WAL_RECORD_BYTES_MAX (1u << 20)
#define FUZZ_WAL_BODY_BYTES_MAX (256u * 1024u)

struct fuzz_wal_seg {
    uint8_t *body;
    size_t len, cap;
};

static inline void fuzz_wal_append(struct fuzz_wal_seg *s, const uint8_t *p, size_t n)
{
    if (n == 0) return;
    if (s->body == NULL || s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + n)
            cap *= 2;
        uint8_t *d = realloc(s->body, cap);
        ST_ASSERT(d != NULL);
        s->body = d;
        s->cap = cap;
    }
    memcpy(s->body + s->len, p, n);
    s->len += n;
}

/* Structured input: chunks sealed into valid records. */
static inline void fuzz_wal_build_records(const uint8_t *in, size_t size, struct fuzz_wal_seg *segs,
                                          int *nseg)
{
    size_t off = 0;
    uint64_t wseq = 1;
    int cur = 0;
    uint8_t rec[ST_REC_HEADER_BYTES + 65536 + ST_REC_TRAILER_BYTES];
    while (size - off >= 3) {
        uint8_t type = in[off];
        uint32_t len = le_get16(in + off + 1);
        off += 3;
        if (type == 0xff) {
            cur = 1;
            *nseg = 2;
            continue;
        }
        if (len > size - off) len = (uint32_t)(size - off);
        /* st_rec_seal writes the header, padding and trailer: only the
         * header is cleared (the whole 64 KiB buffer per chunk was a tenth of
         * the driver's time). */
        memset(rec, 0, ST_REC_HEADER_BYTES);
        memcpy(rec + ST_REC_HEADER_BYTES, in + off, len);
        off += len;
        st_rec_seal(rec, type, len, wseq++);
        fuzz_wal_append(&segs[cur], rec, (size_t)st_rec_size(len));
    }
}

static inline int fuzz_wal_write(const struct st_fs *fs, const char *path, uint64_t seq,
                                 raft_index first_index, const struct fuzz_wal_seg *s)
{
    /* The segment's preallocated size: header + body, rounded up to 4 KiB
     * with zeros, as a fallocated segment reads. */
    uint64_t bytes = (ST_SEG_HEADER_BYTES + s->len + 4095u) & ~(uint64_t)4095u;
    struct st_seg_header h = {
        .seq = seq, .first_index = first_index, .segment_bytes = bytes, .wseq = 0};
    uint8_t head[ST_SEG_HEADER_BYTES];
    st_seg_header_encode(&h, head);
    int fd;
    int rc = fs->ops->open(fs->self, path, ST_FS_RDWR | ST_FS_CREATE, &fd);
    if (rc != 0) return rc;
    rc = fs->ops->fallocate(fs->self, fd, 0, bytes);
    if (rc == 0) rc = fs->ops->pwrite(fs->self, fd, head, sizeof(head), 0);
    if (rc == 0 && s->len) rc = fs->ops->pwrite(fs->self, fd, s->body, s->len, ST_SEG_HEADER_BYTES);
    if (rc == 0) rc = fs->ops->fsync(fs->self, fd);
    fs->ops->close(fs->self, fd);
    return rc;
}

/* Returns the code of open (or of load when open succeeded). */
static inline int fuzz_wal_target(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_WAL_BODY_BYTES_MAX) return 0;
    uint8_t mode = data[0];
    struct fuzz_wal_seg segs[2];
    memset(segs, 0, sizeof(segs));
    int nseg = (mode & 2) ? 2 : 1;
    if (mode & 1) {
        nseg = 1;
        fuzz_wal_build_records(data + 1, size - 1, segs, &nseg);
        if (mode & 2) nseg = 2;
    } else {
        const uint8_t *body = data + 1;
        size_t len = size - 1;
        size_t split = len;
        if (nseg == 2) {
            if (len < 2) return 0;
            split = le_get16(body);
            body += 2;
            len -= 2;
            if (split > len) split = len;
        }
        fuzz_wal_append(&segs[0], body, split);
        if (nseg == 2) fuzz_wal_append(&segs[1], body + split, len - split);
    }

    struct st_fs_sim *sim;
    ST_ASSERT(st_fs_sim_create(&sim) == 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    ST_ASSERT(fs->ops->mkdir(fs->self, "/w") == 0);
    int rc = fuzz_wal_write(fs, "/w/0000000000000001.wal", 1, 1, &segs[0]);
    if (rc == 0 && nseg == 2)
        rc =
            fuzz_wal_write(fs, "/w/0000000000000002.wal", 2, 1 + (raft_index)(mode >> 2), &segs[1]);
    ST_ASSERT(rc == 0);
    ST_ASSERT(fs->ops->sync_dir(fs->self, "/w") == 0);
    free(segs[0].body);
    free(segs[1].body);

    struct st_wal_config cfg = {.fs = fs,
                                .dir = "/w",
                                .segment_bytes = 1u << 20,
                                .record_bytes_max = FUZZ_WAL_RECORD_BYTES_MAX};
    struct st_log_store store;
    struct st_errbuf err;
    memset(&err, 0, sizeof(err));
    rc = st_wal_open(&cfg, &store, &err);
    if (rc == 0) {
        struct st_log_state st;
        memset(&st, 0, sizeof(st));
        rc = store.ops->load(store.self, 0, &st, &err);
        if (rc == 0) {
            ST_ASSERT(st.last_index + 1 >= st.first_index);
            ST_ASSERT(st.n_entries == (size_t)(st.last_index + 1 - st.first_index));
            for (size_t i = 0; i < st.n_entries; i++) {
                ST_ASSERT(st.entries[i].index == st.first_index + i);
                ST_ASSERT(st.entries[i].len == 0 || st.entries[i].data != NULL);
            }
            st_log_state_release(&st);
        }
        store.ops->close(store.self);
    } else {
        ST_ASSERT(rc < 0);
    }
    st_fs_sim_destroy(sim);
    return rc;
}

#endif
