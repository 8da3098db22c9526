/* WAL recovery: st_wal_open lists the segments, reads each once, checks
 * every record and tells a torn tail (only in the last, not yet durable
 * segment) from corruption (anywhere else: the open fails with a clear
 * error; scan_segment), then load() hands the entries after the snapshot to
 * the caller. Formats in docs/DISK-FORMAT.md.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "storage/wal_int.h"
#include "util/assert.h"
#include "util/trace.h"
#include "wire/le.h"

/* ---------------------------------------------------------------- open */

struct list_ctx {
    uint64_t *seqs;
    size_t n, cap;
    char foreign[256];
    int rc;
    bool spare_seen;
};

static int list_cb(void *ctx, const char *name)
{
    struct list_ctx *l = ctx;
    size_t len = strlen(name);
    uint64_t seq = 0;
    if (strcmp(name, WAL_SPARE_NAME) == 0) { /* a spare of a previous run */
        l->spare_seen = true;
        return 0;
    }
    bool ok = len == 20 && strcmp(name + 16, ".wal") == 0;
    for (size_t i = 0; ok && i < 16; i++) {
        char c = name[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) ok = false;
        seq = seq * 16 + (uint64_t)(d < 0 ? 0 : d);
    }
    if (!ok) {
        snprintf(l->foreign, sizeof(l->foreign), "%s", name);
        return 1;
    }
    if (grow((void **)&l->seqs, &l->cap, l->n + 1, sizeof(uint64_t)) != 0) {
        l->rc = ST_ENOMEM;
        return 1;
    }
    l->seqs[l->n++] = seq;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Offset just past the last nonzero byte of p[0, n). */
static uint64_t last_nonzero(const uint8_t *p, uint64_t n)
{
    uint64_t i = n;
    while (i >= 8) {
        uint64_t v;
        memcpy(&v, p + i - 8, 8);
        if (v) break;
        i -= 8;
    }
    while (i > 0 && p[i - 1] == 0)
        i--;
    return i;
}

static int add_loaded_entries(struct wal *w, struct raft_buf *buf, const struct st_rec_view *v,
                              const char *path, uint64_t off, struct st_errbuf *err,
                              raft_index *first_out, uint32_t *count_out)
{
    if (v->len < ST_REC_ENTRIES_HEADER_BYTES) goto bad;
    raft_index first = le_get64(v->payload);
    uint32_t count = le_get32(v->payload + 8);
    /* Each entry takes at least its header: a count the record cannot hold
     * is malformed, and must not size the index first (a CRC-valid record
     * claiming 4 billion entries asked for 190 GB). */
    if (count > (v->len - ST_REC_ENTRIES_HEADER_BYTES) / ST_REC_ENTRY_HEADER_BYTES) goto bad;
    if (first > WAL_INDEX_MAX - count) goto bad;
    if (count == 0 || first != w->last_index + 1) {
        st_storage_errf(err,
                        "wal: %s offset %" PRIu64 ": entries start at %" PRIu64
                        ", expected %" PRIu64 " (gap or reordering)",
                        path, off, first, w->last_index + 1);
        return ST_ECORRUPT;
    }
    int rc = grow((void **)&w->ents, &w->cap_ents, w->n_ents + count, sizeof(*w->ents));
    if (rc != 0) return rc;
    const uint8_t *q = v->payload + ST_REC_ENTRIES_HEADER_BYTES;
    const uint8_t *end = v->payload + v->len;
    for (uint32_t i = 0; i < count; i++) {
        if ((uint64_t)(end - q) < ST_REC_ENTRY_HEADER_BYTES) goto bad;
        uint32_t len = le_get32(q + 8);
        if ((uint64_t)(end - q) - ST_REC_ENTRY_HEADER_BYTES < len) goto bad;
        w->ents[w->n_ents++] = (struct raft_entry){
            .term = le_get64(q),
            .index = first + i,
            .type = q[12],
            .buf = buf,
            .data = len ? q + ST_REC_ENTRY_HEADER_BYTES : NULL,
            .len = len,
        };
        q += ST_REC_ENTRY_HEADER_BYTES + len;
    }
    w->last_index = first + count - 1;
    *first_out = first;
    *count_out = count;
    return 0;
bad:
    st_storage_errf(err, "wal: %s offset %" PRIu64 ": malformed entries record", path, off);
    return ST_ECORRUPT;
}

/* Scans one segment already read into s->buf (file_size bytes). Torn tail vs
 * corruption: segments are preallocated with zeros and written strictly in
 * order, so the durable part of a segment is a sequence of valid records and
 * everything after the last write is zero. At the first record R that does
 * not check out, let L be the offset just past the last nonzero byte of the
 * file. If R's header is intact and L < end(R) (its trailer was never
 * written), or R's header is damaged and L < R + header size, R is where the
 * last write was torn: only the last segment may end so, and the tail is cut.
 * Anything else -- a complete record with a bad CRC, valid bytes after a bad
 * record, damage in a non-last segment -- is corruption: refuse to start. */
static int scan_segment(struct wal *w, struct wal_seg *s, uint64_t file_size, bool last_seg,
                        struct st_errbuf *err)
{
    char path[ST_STORAGE_PATH_MAX];
    wal_seg_path(w, s->seq, path, sizeof(path));
    const uint8_t *p = s->buf->data;
    uint64_t L = last_nonzero(p, file_size);
    uint64_t off = ST_SEG_HEADER_BYTES;
    uint64_t prev_wseq = 0;
    while (off < L) {
        struct st_rec_view v;
        enum st_rec_check c = st_rec_parse(p + off, file_size - off, w->record_bytes_max, &v);
        if (c == ST_REC_OK && v.wseq < prev_wseq)
            c = ST_REC_BAD_BODY; /* a stale record cannot follow a newer write */
        if (c != ST_REC_OK) {
            bool torn = v.size ? L < off + v.size : L < off + ST_REC_HEADER_BYTES;
            if (c == ST_REC_SHORT && v.size == 0)
                torn = true; /* fewer bytes than a header before the end of file */
            if (!torn || !last_seg) {
                st_storage_errf(err,
                                "wal: corrupt record in %s at offset %" PRIu64 " (%s; %" PRIu64
                                " bytes follow up to the last nonzero byte)%s",
                                path, off,
                                c == ST_REC_BAD_HEADER ? "bad header"
                                : c == ST_REC_SHORT    ? "truncated record"
                                                       : "bad checksum",
                                L - off,
                                last_seg ? "" : "; not the last segment, so not a torn write");
                return ST_ECORRUPT;
            }
            ST_TRACE_WARN("storage",
                          "wal: torn tail cut in %s at offset %" PRIu64 " (%" PRIu64
                          " bytes of an unfinished write)",
                          path, off, L - off);
            uint8_t *zero = calloc(1, (size_t)(L - off));
            if (!zero) return ST_ENOMEM;
            int rc = w->fs.ops->pwrite(w->fs.self, s->fd, zero, (size_t)(L - off), off);
            free(zero);
            if (rc == 0) rc = w->fs.ops->fdatasync(w->fs.self, s->fd);
            if (rc != 0) {
                st_storage_errf(err, "wal: cannot cut the torn tail of %s: %s", path,
                                st_strerror(rc));
                return rc;
            }
            memset(s->buf->data + off, 0, (size_t)(L - off));
            break;
        }
        prev_wseq = v.wseq;
        if (v.wseq > w->wseq) w->wseq = v.wseq;
        int rc = 0;
        switch (v.type) {
        case ST_REC_ENTRIES: {
            raft_index first;
            uint32_t count;
            rc = add_loaded_entries(w, s->buf, &v, path, off, err, &first, &count);
            if (rc != 0) return rc;
            rc = grow((void **)&w->runs, &w->cap_runs, w->n_runs + 1, sizeof(*w->runs));
            if (rc != 0) return rc;
            w->runs[w->n_runs++] = (struct wal_run){
                .first = first, .count = count, .rec_len = v.len, .seg_seq = s->seq, .off = off};
            break;
        }
        case ST_REC_HARD_STATE:
            if (v.len != 24) goto malformed;
            w->hs.term = le_get64(v.payload);
            w->hs.vote = le_get64(v.payload + 8);
            w->hs.commit = le_get64(v.payload + 16);
            break;
        case ST_REC_TRUNCATE: {
            if (v.len != 8) goto malformed;
            raft_index from = le_get64(v.payload);
            if (from > WAL_INDEX_MAX) goto malformed;
            if (from < w->first_index && from > w->snap_index) {
                /* Reaches back into a segment that compaction removed (its
                 * entries all lie at or below a later snapshot mark). */
                w->first_index = from;
                w->last_index = from - 1;
                w->n_runs = 0;
                w->n_ents = 0;
            }
            if (from < w->first_index || from > w->last_index + 1) {
                st_storage_errf(err,
                                "wal: %s offset %" PRIu64 ": truncation at %" PRIu64
                                " outside the log [%" PRIu64 ", %" PRIu64 "]",
                                path, off, from, w->first_index, w->last_index);
                return ST_ECORRUPT;
            }
            wal_index_truncate(w, from);
            break;
        }
        case ST_REC_SNAPSHOT:
            if (v.len != 16 || le_get64(v.payload) > WAL_INDEX_MAX) goto malformed;
            wal_index_mark_snapshot(w, le_get64(v.payload), le_get64(v.payload + 8));
            {
                size_t k = 0;
                while (k < w->n_ents && w->ents[k].index <= w->snap_index)
                    k++;
                if (k) memmove(w->ents, w->ents + k, (w->n_ents - k) * sizeof(*w->ents));
                w->n_ents -= k;
            }
            break;
        default:
            goto malformed;
        }
        off += v.size;
        continue;
    malformed:
        st_storage_errf(err, "wal: %s offset %" PRIu64 ": malformed record of type %u", path, off,
                        v.type);
        return ST_ECORRUPT;
    }
    s->flushed = s->synced = off;
    return 0;
}

/* After the scan of s: the entries it holds that are still in the log (a
 * suffix of w->ents) move into a buffer of their own size and the
 * whole-file buffer is released. Opening then holds one segment file at a
 * time plus the live entries, not every segment whole: a preallocated
 * segment is mostly zeros, and after compaction most of the first segment
 * holds entries a snapshot covers. */
static int seg_buf_shrink(struct wal *w, struct wal_seg *s)
{
    size_t k = w->n_ents;
    uint64_t bytes = 0;
    while (k > 0 && w->ents[k - 1].buf == s->buf) {
        k--;
        bytes += w->ents[k].len;
    }
    struct raft_buf *nb = NULL;
    if (k < w->n_ents) {
        nb = raft_buf_create(bytes);
        if (!nb) return ST_ENOMEM;
        uint8_t *q = nb->data;
        for (size_t i = k; i < w->n_ents; i++) {
            struct raft_entry *e = &w->ents[i];
            if (e->len) {
                memcpy(q, e->data, e->len);
                e->data = q;
                q += e->len;
            }
            e->buf = nb;
        }
    }
    raft_buf_unref(s->buf);
    s->buf = nb;
    return 0;
}

/* Reads segment `seq` entirely, checks its header and scans it. */
static int open_segment(struct wal *w, uint64_t seq, bool first_seg, bool last_seg,
                        struct st_errbuf *err)
{
    char path[ST_STORAGE_PATH_MAX];
    wal_seg_path(w, seq, path, sizeof(path));
    int fd;
    int rc = w->fs.ops->open(w->fs.self, path, ST_FS_RDWR, &fd);
    if (rc != 0) {
        st_storage_errf(err, "wal: cannot open %s: %s", path, st_strerror(rc));
        return rc;
    }
    uint64_t size = 0;
    rc = w->fs.ops->fsize(w->fs.self, fd, &size);
    if (rc != 0) goto fail_fd;
    if (size > UINT32_MAX) {
        st_storage_errf(err, "wal: %s is too large (%" PRIu64 " bytes)", path, size);
        rc = ST_ECORRUPT;
        goto fail_fd;
    }
    struct raft_buf *buf = raft_buf_create(size);
    if (!buf) {
        rc = ST_ENOMEM;
        goto fail_fd;
    }
    rc = st_read_exact(&w->fs, fd, buf->data, size, 0);
    if (rc != 0) {
        st_storage_errf(err, "wal: cannot read %s: %s", path, st_strerror(rc));
        goto fail_buf;
    }
    w->open_bytes_scanned += size;
    struct st_seg_header h;
    rc = size >= ST_SEG_HEADER_BYTES ? st_seg_header_decode(buf->data, &h) : ST_ECORRUPT;
    if (rc != 0) {
        /* A last segment whose creation was interrupted holds nothing but a
         * partial header: remove it (nothing in it was ever acknowledged). */
        if (last_seg && last_nonzero(buf->data, size) < ST_SEG_HEADER_BYTES) {
            ST_TRACE_WARN("storage", "wal: removing %s, whose creation was interrupted", path);
            raft_buf_unref(buf);
            w->fs.ops->close(w->fs.self, fd);
            rc = w->fs.ops->unlink(w->fs.self, path);
            if (rc == 0) rc = wal_dir_sync(w);
            return rc == 0 ? 1 : rc;
        }
        st_storage_errf(err, "wal: %s: %s segment header at offset 0", path,
                        rc == ST_EINVAL ? "unsupported version in" : "bad magic or checksum in");
        rc = ST_ECORRUPT;
        goto fail_buf;
    }
    if (h.first_index == 0 || h.first_index > WAL_INDEX_MAX || h.snap_index > WAL_INDEX_MAX) {
        st_storage_errf(err,
                        "wal: %s: segment header at offset 0 names index %" PRIu64
                        " (snapshot mark %" PRIu64 "), outside 1..2^62",
                        path, h.first_index, h.snap_index);
        rc = ST_ECORRUPT;
        goto fail_buf;
    }
    if (h.seq != seq) {
        st_storage_errf(err, "wal: %s: header says segment %" PRIu64 ", file name says %" PRIu64,
                        path, h.seq, seq);
        rc = ST_ECORRUPT;
        goto fail_buf;
    }
    if (first_seg) {
        w->first_index = h.first_index;
        w->last_index = h.first_index - 1;
        w->hs = h.hs;
        w->wseq = h.wseq;
        if (h.snap_index) {
            wal_index_mark_snapshot(w, h.snap_index, h.snap_term);
        }
    } else if (h.first_index != w->last_index + 1) {
        st_storage_errf(err,
                        "wal: %s offset 0: segment starts at index %" PRIu64
                        " but the previous one ends at %" PRIu64 " (missing data)",
                        path, h.first_index, w->last_index);
        rc = ST_ECORRUPT;
        goto fail_buf;
    }
    rc = grow((void **)&w->segs, &w->cap_segs, w->n_segs + 1, sizeof(*w->segs));
    if (rc != 0) goto fail_buf;
    struct wal_seg *s = &w->segs[w->n_segs++];
    *s = (struct wal_seg){.seq = seq, .fd = fd, .first_index = h.first_index, .buf = buf};
    if (h.wseq > w->wseq) w->wseq = h.wseq;
    rc = scan_segment(w, s, size, last_seg, err);
    if (rc == 0) rc = seg_buf_shrink(w, s);
    if (rc != 0) return rc; /* the segment is in the table: wal_close frees it */
    if (last_seg && size < w->segment_bytes) {
        rc = w->fs.ops->fallocate(w->fs.self, fd, 0, w->segment_bytes);
        if (rc != 0) st_storage_errf(err, "wal: cannot preallocate %s: %s", path, st_strerror(rc));
    }
    return rc;
fail_buf:
    raft_buf_unref(buf);
fail_fd:
    w->fs.ops->close(w->fs.self, fd);
    if (rc == 0) rc = ST_EIO;
    return rc;
}
int st_wal_open(const struct st_wal_config *cfg, struct st_log_store *out, struct st_errbuf *err)
{
    struct wal *w = calloc(1, sizeof(*w));
    if (!w) return ST_ENOMEM;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->idle, NULL);
    pthread_cond_init(&w->prep_cv, NULL);
    pthread_cond_init(&w->spare_cv, NULL);
    w->spare_fd = -1;
    w->dio_fd = -1;
    w->dir_fd = -1;
    w->fs = cfg->fs ? *cfg->fs : *st_fs_posix();
    w->segment_bytes = cfg->segment_bytes ? cfg->segment_bytes : WAL_SEGMENT_BYTES_DEFAULT;
    w->record_bytes_max =
        cfg->record_bytes_max ? cfg->record_bytes_max : WAL_RECORD_BYTES_MAX_DEFAULT;
    w->first_index = 1;
    w->last_index = 0;
    w->wseq = 1;
    int rc;
    if (w->segment_bytes < 4096 || w->segment_bytes > UINT32_MAX ||
        snprintf(w->dir, sizeof(w->dir), "%s", cfg->dir) >= (int)sizeof(w->dir)) {
        st_storage_errf(err, "wal: bad configuration (segment_bytes %" PRIu64 ", dir %s)",
                        w->segment_bytes, cfg->dir);
        rc = ST_EINVAL;
        goto fail;
    }
    if (w->record_bytes_max > w->segment_bytes - ST_SEG_HEADER_BYTES - 64)
        w->record_bytes_max = (uint32_t)(w->segment_bytes - ST_SEG_HEADER_BYTES - 64);
    rc = st_mkdir_durable(&w->fs, w->dir);
    if (rc != 0) {
        st_storage_errf(err, "wal: cannot create directory %s: %s", w->dir, st_strerror(rc));
        goto fail;
    }
    rc = w->fs.ops->open_dir(w->fs.self, w->dir, &w->dir_fd);
    if (rc != 0) {
        w->dir_fd = -1;
        st_storage_errf(err, "wal: cannot open directory %s: %s", w->dir, st_strerror(rc));
        goto fail;
    }
    struct list_ctx l = {0};
    rc = w->fs.ops->list_dir(w->fs.self, w->dir, list_cb, &l);
    if (rc == 0) rc = l.rc;
    if (rc == 0 && l.foreign[0]) {
        st_storage_errf(err, "wal: %s holds a file that is not a WAL segment: %s", w->dir,
                        l.foreign);
        rc = ST_EMISMATCH;
    }
    if (rc != 0) {
        if (rc != ST_EMISMATCH)
            st_storage_errf(err, "wal: cannot list %s: %s", w->dir, st_strerror(rc));
        free(l.seqs);
        goto fail;
    }
    if (l.spare_seen) { /* never trusted: it may be half written */
        char sp[ST_STORAGE_PATH_MAX];
        wal_spare_path(w, sp, sizeof(sp));
        rc = w->fs.ops->unlink(w->fs.self, sp);
        if (rc != 0) {
            st_storage_errf(err, "wal: cannot remove %s: %s", sp, st_strerror(rc));
            free(l.seqs);
            goto fail;
        }
    }
    if (l.n) qsort(l.seqs, l.n, sizeof(uint64_t), cmp_u64);
    for (size_t i = 1; i < l.n; i++) {
        if (l.seqs[i] != l.seqs[i - 1] + 1) {
            st_storage_errf(err,
                            "wal: %s: segment %016" PRIx64 ".wal is missing (after %016" PRIx64
                            ".wal, before %016" PRIx64 ".wal)",
                            w->dir, l.seqs[i - 1] + 1, l.seqs[i - 1], l.seqs[i]);
            free(l.seqs);
            rc = ST_ECORRUPT;
            goto fail;
        }
    }
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < l.n; i++) {
        rc = open_segment(w, l.seqs[i], i == 0, i + 1 == l.n, err);
        if (rc == 1) /* an interrupted creation was removed */
            break;
        if (rc != 0) {
            free(l.seqs);
            goto fail;
        }
    }
    w->open_scan_ns = now_ns() - t0;
    uint64_t next_seq = l.n ? l.seqs[l.n - 1] + 1 : 1;
    free(l.seqs);
    if (cfg->direct_io && w->segment_bytes % WAL_DIO_ALIGN == 0) {
        w->dio_tail = aligned_alloc(WAL_DIO_ALIGN, WAL_DIO_ALIGN);
        w->dio_buf = aligned_alloc(WAL_DIO_ALIGN, WAL_DIO_BUF);
        w->direct_io = w->dio_tail && w->dio_buf; /* no memory: buffered */
    }
    if (w->n_segs == 0) {
        /* A new WAL's first segment is zero-filled like a spare, here on the
         * opening thread (nothing waits on this WAL yet): fallocated, each
         * of its first 64 MiB of syncs would also convert an extent and
         * write the inode (4 KiB synced appends here: 101-110 -> 160-210 us,
         * 41 -> 68-95 us of CPU). If that fails it is fallocated. */
        if (cfg->spare_segments) wal_first_segment_zeroed(w);
        rc = wal_seg_create(w, next_seq);
        if (rc == 0) {
            rc = w->fs.ops->fdatasync(w->fs.self, cur_seg(w)->fd);
            if (rc == 0) rc = wal_dir_sync(w);
            cur_seg(w)->synced = cur_seg(w)->flushed;
            w->dir_dirty = false;
        }
        if (rc != 0) {
            st_storage_errf(err, "wal: cannot create the first segment in %s: %s", w->dir,
                            st_strerror(rc));
            goto fail;
        }
    }
    w->wseq++; /* new writes are newer than anything on disk */
    if (cfg->spare_segments) {
        w->spare_segments = true;
        if (pthread_create(&w->prep, NULL, wal_prep_main, w) == 0) {
            w->prep_started = true;
        } else {
            ST_TRACE_WARN("storage", "wal: no spare-segment thread; segments are fallocated");
            w->prep_failed = true;
        }
    }
    out->ops = &wal_ops;
    out->self = w;
    return 0;
fail:
    wal_free(w);
    return rc;
}

int wal_load(void *self, raft_index after, struct st_log_state *out, struct st_errbuf *err)
{
    struct wal *w = self;
    memset(out, 0, sizeof(*out));
    if (w->loaded) return ST_EINVAL;
    w->loaded = true;
    if (w->first_index > after + 1) {
        st_storage_errf(err,
                        "wal: %s starts at index %" PRIu64 " but the snapshot ends at %" PRIu64
                        ": entries %" PRIu64 "..%" PRIu64 " are missing",
                        w->dir, w->first_index, after, after + 1, w->first_index - 1);
        return ST_EUNAVAILABLE;
    }
    out->hard_state = w->hs;
    raft_index first = after + 1 > w->first_index ? after + 1 : w->first_index;
    out->first_index = first;
    out->last_index = w->last_index >= first ? w->last_index : first - 1;
    out->prev_term = first - 1 == w->snap_index ? w->snap_term : 0;
    size_t n = (size_t)(out->last_index + 1 - first);
    if (n) {
        out->entries = malloc(n * sizeof(*out->entries));
        if (!out->entries) return ST_ENOMEM;
        /* w->ents is contiguous and ends at last_index */
        ST_ASSERT(w->n_ents >= n && w->ents[w->n_ents - 1].index == w->last_index);
        const struct raft_entry *src = w->ents + (w->n_ents - n);
        /* The payloads after `after` move into buffers of their own size
         * (up to WAL_LOAD_CHUNK_BYTES each, or one entry): the segment
         * buffers also hold the entries the snapshot covers. */
        for (size_t i = 0; i < n;) {
            uint64_t bytes = src[i].len;
            size_t k = i + 1;
            while (k < n && bytes + src[k].len <= WAL_LOAD_CHUNK_BYTES)
                bytes += src[k++].len;
            struct raft_buf *chunk = raft_buf_create(bytes);
            if (!chunk) {
                for (size_t j = 0; j < i; j++)
                    raft_buf_unref(out->entries[j].buf);
                free(out->entries);
                out->entries = NULL;
                return ST_ENOMEM;
            }
            uint8_t *q = chunk->data;
            for (size_t j = i; j < k; j++) {
                out->entries[j] = src[j];
                out->entries[j].buf = chunk;
                raft_buf_ref(chunk);
                if (src[j].len) {
                    memcpy(q, src[j].data, src[j].len);
                    out->entries[j].data = q;
                    q += src[j].len;
                }
            }
            raft_buf_unref(chunk); /* the entries hold the references */
            i = k;
        }
        if (first > 1 && w->n_ents > n) out->prev_term = w->ents[w->n_ents - n - 1].term;
    }
    out->n_entries = n;
    /* the store keeps no payloads in memory after load */
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->n_segs; i++) {
        raft_buf_unref(w->segs[i].buf);
        w->segs[i].buf = NULL;
    }
    free(w->ents);
    w->ents = NULL;
    w->n_ents = w->cap_ents = 0;
    pthread_mutex_unlock(&w->mu);
    return 0;
}
