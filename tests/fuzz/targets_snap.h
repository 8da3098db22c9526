/* Fuzz target bodies for the decoders of files a node reads back or
 * receives from its leader: the kv snapshot (kv_restore_*, format in
 * docs/KV.md; through kv's public API only) and a snapshot directory's meta
 * file (storage/snap_meta.h, docs/DISK-FORMAT.md). Shared by the libFuzzer
 * drivers (tests/fuzz/fuzz_{kv_snap,snap_meta}.c) and the deterministic
 * smoke tests (tests/unit/{kv,storage}/test_fuzz_smoke.c).
 *
 * Both formats carry CRC32Cs, which random mutation almost never gets right:
 * when bit 0 of the first byte is set, the target first rewrites every CRC
 * (and the meta's length field) to match the rest of the input, so that the
 * field decoders behind the checksums are reached too. */
#ifndef ST_FUZZ_TARGETS_SNAP_H
#define ST_FUZZ_TARGETS_SNAP_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"
#include "stcache/errors.h"
#include "storage/snap_meta.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "wire/le.h"

/* Rewrites the CRCs of a kv snapshot (docs/KV.md) in place, walking as far
 * as the lengths allow. */
static inline void fuzz_kv_snap_fix_crcs(uint8_t *p, size_t size)
{
    if (size < 36) return;
    uint32_t version = le_get32(p + 8);
    size_t fixed = version == 1 ? 36 : 52;
    if (size < fixed) return;
    size_t meta = le_get32(p + 32);
    if (meta > size - fixed || size - fixed - meta < 4) return;
    size_t off = fixed + meta;
    le_put32(p + off, st_crc32c(0, p, off));
    off += 4;
    uint64_t idem = version == 1 ? 0 : le_get64(p + 44);
    for (uint64_t i = 0; i < idem && size - off >= 44; i++) {
        le_put32(p + off + 40, st_crc32c(0, p + off, 40));
        off += 44 + p[off];
        if (off > size) return;
    }
    uint64_t keys = le_get64(p + 24);
    for (uint64_t i = 0; i < keys && size - off >= 28; i++) {
        le_put32(p + off + 24, st_crc32c(0, p + off, 24));
        uint64_t rec = 28 + (uint64_t)le_get32(p + off) + le_get32(p + off + 4);
        if (rec > size - off) return;
        off += (size_t)rec;
    }
    if (size - off == 12) le_put32(p + off + 8, st_crc32c(0, p, off + 8));
}

struct fuzz_snap_sink {
    uint8_t *data;
    size_t len, cap;
};

static inline int fuzz_snap_sink_cb(void *ctx, const void *data, size_t len)
{
    struct fuzz_snap_sink *s = ctx;
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + len)
            cap *= 2;
        uint8_t *d = realloc(s->data, cap);
        ST_ASSERT(d != NULL);
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, data, len);
    s->len += len;
    return 0;
}

/* Restores in[0..size) fed in two pieces split at `split`; returns the code. */
static inline int fuzz_kv_restore(struct kv *kv, const uint8_t *in, size_t size, size_t split,
                                  struct kv_snapshot_info *info)
{
    struct kv_restore *r;
    ST_ASSERT(kv_restore_begin(kv, &r) == 0);
    int rc = kv_restore_feed(r, in, split);
    if (rc == 0) rc = kv_restore_feed(r, in + split, size - split);
    int frc = kv_restore_finish(r, info);
    ST_ASSERT(rc == 0 || frc == rc); /* a poisoned context reports its error */
    return frc;
}

/* A kv for the restore target: the presize is capped low, so that a fuzzed
 * key count does not allocate (and ASan poison) 128 MiB per input; the
 * presize path and its cap are still taken. */
static inline struct kv *fuzz_kv_snap_kv(void)
{
    struct kv_config cfg;
    kv_config_default(&cfg);
    cfg.restore_presize_buckets_max = 1024;
    struct kv *kv;
    ST_ASSERT(kv_create(&cfg, &kv) == 0);
    return kv;
}

static inline int fuzz_kv_snap_target(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size ? size : 1);
    ST_ASSERT(in != NULL);
    if (size > 0) memcpy(in, data, size);
    if (size > 0 && (data[0] & 1)) {
        in[0] = 'S'; /* the magic's first byte: bit 0 chose the repair */
        fuzz_kv_snap_fix_crcs(in, size);
    }
    struct kv *kv = fuzz_kv_snap_kv();
    struct kv_snapshot_info info;
    memset(&info, 0, sizeof(info));
    size_t split = size > 0 ? (size_t)data[size - 1] * 7 % (size + 1) : 0;
    int rv = fuzz_kv_restore(kv, in, size, split, &info);
    ST_ASSERT(rv == 0 || rv == ST_ECORRUPT || rv == ST_ETOOBIG || rv == ST_ENOMEM);
    if (rv == 0) {
        /* What restored is a consistent state that snapshots and restores
         * to the same state. */
        ST_ASSERT(kv_check_invariants(kv) == 0);
        ST_ASSERT(kv_applied_index(kv) == info.applied_index);
        struct fuzz_snap_sink sink = {0};
        ST_ASSERT(kv_snapshot_write(kv, info.applied_index, info.meta, info.meta_len,
                                    fuzz_snap_sink_cb, &sink) == 0);
        struct kv *kv2 = fuzz_kv_snap_kv();
        struct kv_snapshot_info info2;
        ST_ASSERT(fuzz_kv_restore(kv2, sink.data, sink.len, sink.len / 2, &info2) == 0);
        ST_ASSERT(kv_digest(kv2) == kv_digest(kv) && info2.keys == info.keys);
        ST_ASSERT(info2.meta_len == info.meta_len);
        ST_ASSERT(info.meta_len == 0 || memcmp(info2.meta, info.meta, info.meta_len) == 0);
        free(info2.meta);
        kv_destroy(kv2);
        free(sink.data);
        free(info.meta);
    } else {
        ST_ASSERT(kv_applied_index(kv) == 0); /* the kv keeps its (empty) state */
    }
    kv_destroy(kv);
    free(in);
    return rv;
}

static inline int fuzz_snap_meta_target(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size ? size : 1);
    ST_ASSERT(in != NULL);
    if (size > 0) memcpy(in, data, size);
    if (size >= SNAP_META_FIXED + 4 && (data[0] & 1)) {
        memcpy(in, SNAP_META_MAGIC, 8);
        le_put32(in + 12, (uint32_t)size);
        le_put32(in + size - 4, st_crc32c(0, in, size - 4));
    }
    struct st_snapshot_info *info = malloc(sizeof(*info));
    ST_ASSERT(info != NULL);
    int rv = st_snap_meta_decode(in, size, info);
    ST_ASSERT(rv == 0 || rv == ST_ECORRUPT || rv == ST_EINVAL);
    if (rv == 0) {
        /* Re-encoding gives a meta that decodes to the same fields. */
        ST_ASSERT(info->meta.conf.n <= RAFT_MEMBERS_MAX);
        uint8_t *out = malloc(SNAP_META_MAX);
        struct st_snapshot_info *again = malloc(sizeof(*again));
        ST_ASSERT(out != NULL && again != NULL);
        size_t n = st_snap_meta_encode(info, out);
        ST_ASSERT(n == size);
        ST_ASSERT(st_snap_meta_decode(out, n, again) == 0);
        ST_ASSERT(again->meta.index == info->meta.index && again->meta.term == info->meta.term);
        ST_ASSERT(again->data_bytes == info->data_bytes && again->data_crc == info->data_crc);
        ST_ASSERT(again->meta.conf.n == info->meta.conf.n);
        for (uint32_t i = 0; i < info->meta.conf.n; i++) {
            const struct raft_member *a = &info->meta.conf.members[i];
            const struct raft_member *b = &again->meta.conf.members[i];
            ST_ASSERT(a->id == b->id && a->role == b->role && a->context_len == b->context_len);
            ST_ASSERT(memcmp(a->context, b->context, a->context_len) == 0);
        }
        free(again);
        free(out);
    }
    free(info);
    free(in);
    return rv;
}

#endif
