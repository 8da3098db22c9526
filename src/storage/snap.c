/* Snapshot store: one directory per snapshot, DATA/snap/<term>-<index>/
 * holding `meta` (index, term, membership, data size and CRC32C, its own
 * CRC32C) and `data` (the state machine's bytes).
 *
 * A snapshot is written into DATA/snap/tmp-<n>/ and appears under its final
 * name only by rename once data and meta are fsynced and the temp directory
 * is fsynced; the parent is fsynced after the rename. So a snapshot directory
 * with a final name is complete unless the disk damaged it later; temp
 * directories left by a crash are removed at open. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/storage.h"
#include "storage/common.h"
#include "storage/snap_meta.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/trace.h"
#include "wire/le.h"

#define SNAP_RETAIN_DEFAULT 2
#define SNAP_LIST_MAX 1024
#define SNAP_IO_CHUNK (1u << 20)

struct snap_id {
    raft_index index;
    raft_term term;
};

struct st_snap_store {
    struct st_fs fs;
    char dir[ST_STORAGE_PATH_MAX - 128];
    uint32_t retain;
    uint32_t skipped;
    pthread_mutex_t mu;
    bool has_latest;
    struct st_snapshot_info latest;
    uint64_t tmp_counter;
    int dir_fd; /* the store's directory, open for its life (directory fsyncs) */
};

struct st_snap_writer {
    struct st_snap_store *s;
    char tmp[ST_STORAGE_PATH_MAX];
    /* Every descriptor the commit needs is opened by begin: a commit opens
     * nothing, so running out of descriptors fails a snapshot at its start. */
    int fd;
    int meta_fd;
    int tmp_fd; /* the temporary directory */
    uint64_t bytes;
    uint64_t written_back; /* bytes handed to fs writeback so far */
    uint32_t crc;
    bool failed;
};

/* A snapshot's data is handed to writeback every SNAP_WRITEBACK_BYTES as it
 * is written, so the fsync at commit (on the loop for a received snapshot)
 * waits for the last stretch only, not for the whole file. */
#define SNAP_WRITEBACK_BYTES (8u << 20)

struct st_snap_reader {
    struct st_snap_store *s;
    int fd;
    uint64_t off;
    uint64_t bytes;
    uint32_t crc;
    uint32_t want_crc;
};

static void snap_name(char *out, size_t cap, raft_term term, raft_index index)
{
    snprintf(out, cap, "%016" PRIx64 "-%016" PRIx64, term, index);
}

static bool parse_hex16(const char *p, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        x = x * 16 + (uint64_t)d;
    }
    *v = x;
    return true;
}

static bool parse_snap_name(const char *name, struct snap_id *id)
{
    return strlen(name) == 33 && name[16] == '-' && parse_hex16(name, &id->term) &&
           parse_hex16(name + 17, &id->index);
}

/* ------------------------------------------------------------ meta codec */

size_t st_snap_meta_encode(const struct st_snapshot_info *info, uint8_t *out)
{
    memset(out, 0, SNAP_META_FIXED);
    memcpy(out, SNAP_META_MAGIC, 8);
    le_put32(out + 8, SNAP_META_VERSION);
    le_put64(out + 16, info->meta.index);
    le_put64(out + 24, info->meta.term);
    le_put64(out + 32, info->data_bytes);
    le_put32(out + 40, info->data_crc);
    le_put32(out + 44, info->meta.conf.n);
    size_t off = SNAP_META_FIXED;
    for (uint32_t i = 0; i < info->meta.conf.n; i++) {
        const struct raft_member *m = &info->meta.conf.members[i];
        le_put64(out + off, m->id);
        out[off + 8] = m->role;
        out[off + 9] = 0;
        le_put16(out + off + 10, m->context_len);
        memcpy(out + off + 12, m->context, m->context_len);
        off += SNAP_MEMBER_FIXED + m->context_len;
    }
    le_put32(out + 12, (uint32_t)(off + 4));
    le_put32(out + off, st_crc32c(0, out, off));
    return off + 4;
}

int st_snap_meta_decode(const uint8_t *in, size_t len, struct st_snapshot_info *info)
{
    if (len < SNAP_META_FIXED + 4 || memcmp(in, SNAP_META_MAGIC, 8) != 0) return ST_ECORRUPT;
    uint32_t total = le_get32(in + 12);
    if (total != len || le_get32(in + len - 4) != st_crc32c(0, in, len - 4)) return ST_ECORRUPT;
    if (le_get32(in + 8) != SNAP_META_VERSION) return ST_EINVAL;
    memset(info, 0, sizeof(*info));
    info->meta.index = le_get64(in + 16);
    info->meta.term = le_get64(in + 24);
    info->data_bytes = le_get64(in + 32);
    info->data_crc = le_get32(in + 40);
    uint32_t n = le_get32(in + 44);
    if (n > RAFT_MEMBERS_MAX) return ST_ECORRUPT;
    info->meta.conf.n = n;
    size_t off = SNAP_META_FIXED;
    for (uint32_t i = 0; i < n; i++) {
        if (off + SNAP_MEMBER_FIXED > len - 4) return ST_ECORRUPT;
        struct raft_member *m = &info->meta.conf.members[i];
        m->id = le_get64(in + off);
        m->role = in[off + 8];
        m->context_len = le_get16(in + off + 10);
        if (m->context_len > RAFT_MEMBER_CONTEXT_MAX ||
            off + SNAP_MEMBER_FIXED + m->context_len > len - 4)
            return ST_ECORRUPT;
        memcpy(m->context, in + off + 12, m->context_len);
        off += SNAP_MEMBER_FIXED + m->context_len;
    }
    return off + 4 == len ? 0 : ST_ECORRUPT;
}

/* ------------------------------------------------------------ listing */

struct snap_list {
    struct snap_id ids[SNAP_LIST_MAX];
    size_t n;
    char tmps[16][64];
    size_t n_tmps;
    char foreign[256];
};

static int list_cb(void *ctx, const char *name)
{
    struct snap_list *l = ctx;
    struct snap_id id;
    if (parse_snap_name(name, &id)) {
        if (l->n < SNAP_LIST_MAX) l->ids[l->n++] = id;
    } else if (strncmp(name, "tmp-", 4) == 0 && strlen(name) < 64) {
        if (l->n_tmps < 16) snprintf(l->tmps[l->n_tmps++], 64, "%s", name);
    } else {
        snprintf(l->foreign, sizeof(l->foreign), "%s", name);
    }
    return 0;
}

static int cmp_desc(const void *a, const void *b)
{
    const struct snap_id *x = a, *y = b;
    if (x->index != y->index) return x->index > y->index ? -1 : 1;
    return x->term > y->term ? -1 : x->term < y->term;
}

static int list_snaps(struct st_snap_store *s, struct snap_list *l)
{
    memset(l, 0, sizeof(*l));
    int rc = s->fs.ops->list_dir(s->fs.self, s->dir, list_cb, l);
    if (rc == 0) qsort(l->ids, l->n, sizeof(l->ids[0]), cmp_desc);
    return rc;
}

/* Removes a snapshot (or temp) directory: its two files, then itself. */
static void remove_dir(struct st_snap_store *s, const char *name)
{
    char d[ST_STORAGE_PATH_MAX], f[ST_STORAGE_PATH_MAX + 8];
    snprintf(d, sizeof(d), "%s/%s", s->dir, name);
    snprintf(f, sizeof(f), "%s/data", d);
    s->fs.ops->unlink(s->fs.self, f);
    snprintf(f, sizeof(f), "%s/meta", d);
    s->fs.ops->unlink(s->fs.self, f);
    int rc = s->fs.ops->rmdir(s->fs.self, d);
    if (rc != 0 && rc != ST_ENOENT)
        ST_TRACE_WARN("storage", "snapshot: cannot remove %s: %s", d, st_strerror(rc));
}

static int read_meta(struct st_snap_store *s, const struct snap_id *id,
                     struct st_snapshot_info *info)
{
    char name[64], path[ST_STORAGE_PATH_MAX];
    snap_name(name, sizeof(name), id->term, id->index);
    snprintf(path, sizeof(path), "%s/%s/meta", s->dir, name);
    int fd;
    int rc = s->fs.ops->open(s->fs.self, path, ST_FS_READ, &fd);
    if (rc != 0) return rc;
    uint8_t *buf = malloc(SNAP_META_MAX + 1);
    if (!buf) {
        s->fs.ops->close(s->fs.self, fd);
        return ST_ENOMEM;
    }
    size_t n = 0;
    rc = s->fs.ops->pread(s->fs.self, fd, buf, SNAP_META_MAX + 1, 0, &n);
    s->fs.ops->close(s->fs.self, fd);
    if (rc == 0) rc = n > SNAP_META_MAX ? ST_ECORRUPT : st_snap_meta_decode(buf, n, info);
    free(buf);
    if (rc == 0 && (info->meta.index != id->index || info->meta.term != id->term)) rc = ST_ECORRUPT;
    return rc;
}

/* Reads the whole data file and checks size and CRC32C. */
static int verify_data(struct st_snap_store *s, const struct st_snapshot_info *info,
                       const char *path)
{
    int fd;
    int rc = s->fs.ops->open(s->fs.self, path, ST_FS_READ, &fd);
    if (rc != 0) return rc;
    uint8_t *buf = malloc(SNAP_IO_CHUNK);
    if (!buf) {
        s->fs.ops->close(s->fs.self, fd);
        return ST_ENOMEM;
    }
    uint64_t off = 0;
    uint32_t crc = 0;
    for (;;) {
        size_t n = 0;
        rc = s->fs.ops->pread(s->fs.self, fd, buf, SNAP_IO_CHUNK, off, &n);
        if (rc != 0 || n == 0) break;
        crc = st_crc32c(crc, buf, n);
        off += n;
    }
    free(buf);
    s->fs.ops->close(s->fs.self, fd);
    if (rc == 0 && (off != info->data_bytes || crc != info->data_crc)) rc = ST_ECORRUPT;
    return rc;
}

static int check_snapshot(struct st_snap_store *s, const struct snap_id *id,
                          struct st_snapshot_info *info, char *why, size_t why_cap)
{
    char name[64], path[ST_STORAGE_PATH_MAX];
    snap_name(name, sizeof(name), id->term, id->index);
    int rc = read_meta(s, id, info);
    if (rc != 0) {
        snprintf(why, why_cap, "%s/%s/meta: %s", s->dir, name,
                 rc == ST_ECORRUPT ? "bad magic, checksum or contents" : st_strerror(rc));
        return rc;
    }
    snprintf(path, sizeof(path), "%s/%s/data", s->dir, name);
    rc = verify_data(s, info, path);
    if (rc != 0)
        snprintf(why, why_cap, "%s: %s", path,
                 rc == ST_ECORRUPT ? "size or CRC32C differs from the meta" : st_strerror(rc));
    return rc;
}

/* ---------------------------------------------------------------- open */

int st_snap_store_open(const struct st_fs *fs, const char *dir, uint32_t retain,
                       struct st_snap_store **out, struct st_errbuf *err)
{
    struct st_snap_store *s = calloc(1, sizeof(*s));
    if (!s) return ST_ENOMEM;
    s->fs = fs ? *fs : *st_fs_posix();
    s->retain = retain ? retain : SNAP_RETAIN_DEFAULT;
    s->dir_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    int rc;
    if (snprintf(s->dir, sizeof(s->dir), "%s", dir) >= (int)sizeof(s->dir)) {
        rc = ST_ETOOBIG;
        goto fail;
    }
    rc = st_mkdir_durable(&s->fs, s->dir);
    if (rc != 0) {
        st_storage_errf(err, "snapshot: cannot create %s: %s", s->dir, st_strerror(rc));
        goto fail;
    }
    rc = s->fs.ops->open_dir(s->fs.self, s->dir, &s->dir_fd);
    if (rc != 0) {
        s->dir_fd = -1;
        st_storage_errf(err, "snapshot: cannot open %s: %s", s->dir, st_strerror(rc));
        goto fail;
    }
    struct snap_list *l = malloc(sizeof(*l));
    if (!l) {
        rc = ST_ENOMEM;
        goto fail;
    }
    rc = list_snaps(s, l);
    if (rc == 0 && l->foreign[0]) {
        st_storage_errf(err, "snapshot: %s holds something that is not a snapshot: %s", s->dir,
                        l->foreign);
        rc = ST_EMISMATCH;
    } else if (rc != 0) {
        st_storage_errf(err, "snapshot: cannot list %s: %s", s->dir, st_strerror(rc));
    }
    if (rc != 0) {
        free(l);
        goto fail;
    }
    for (size_t i = 0; i < l->n_tmps; i++) {
        ST_TRACE_INFO("storage", "snapshot: removing unfinished %s/%s", s->dir, l->tmps[i]);
        remove_dir(s, l->tmps[i]);
    }
    if (l->n_tmps) s->fs.ops->sync_dir_fd(s->fs.self, s->dir_fd);
    for (size_t i = 0; i < l->n; i++) {
        char why[ST_STORAGE_PATH_MAX + 100];
        struct st_snapshot_info info;
        if (check_snapshot(s, &l->ids[i], &info, why, sizeof(why)) == 0) {
            s->latest = info;
            s->has_latest = true;
            break;
        }
        s->skipped++;
        ST_TRACE_WARN("storage",
                      "snapshot: skipping damaged snapshot at index %" PRIu64
                      " (%s); trying the previous one",
                      l->ids[i].index, why);
    }
    free(l);
    *out = s;
    return 0;
fail:
    if (s->dir_fd >= 0) s->fs.ops->close(s->fs.self, s->dir_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
}

void st_snap_store_destroy(struct st_snap_store *s)
{
    if (!s) return;
    if (s->dir_fd >= 0) s->fs.ops->close(s->fs.self, s->dir_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int st_snap_store_latest(struct st_snap_store *s, struct st_snapshot_info *out)
{
    pthread_mutex_lock(&s->mu);
    int rc = s->has_latest ? 0 : ST_ENOENT;
    if (rc == 0) *out = s->latest;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

uint32_t st_snap_store_skipped(const struct st_snap_store *s)
{
    return s->skipped;
}

/* -------------------------------------------------------------- writer */

static void writer_close_fds(struct st_snap_writer *w)
{
    struct st_snap_store *s = w->s;
    if (w->fd >= 0) s->fs.ops->close(s->fs.self, w->fd);
    if (w->meta_fd >= 0) s->fs.ops->close(s->fs.self, w->meta_fd);
    if (w->tmp_fd >= 0) s->fs.ops->close(s->fs.self, w->tmp_fd);
    w->fd = w->meta_fd = w->tmp_fd = -1;
}

static void writer_cleanup(struct st_snap_writer *w)
{
    struct st_snap_store *s = w->s;
    writer_close_fds(w);
    const char *slash = strrchr(w->tmp, '/');
    remove_dir(s, slash ? slash + 1 : w->tmp);
    free(w);
}

int st_snap_write_begin(struct st_snap_store *s, struct st_snap_writer **out)
{
    struct st_snap_writer *w = calloc(1, sizeof(*w));
    if (!w) return ST_ENOMEM;
    w->s = s;
    w->fd = w->meta_fd = w->tmp_fd = -1;
    pthread_mutex_lock(&s->mu);
    uint64_t n = ++s->tmp_counter;
    pthread_mutex_unlock(&s->mu);
    snprintf(w->tmp, sizeof(w->tmp), "%s/tmp-%" PRIu64, s->dir, n);
    int rc = s->fs.ops->mkdir(s->fs.self, w->tmp);
    if (rc == ST_EEXIST) { /* left over: clear it */
        char name[64];
        snprintf(name, sizeof(name), "tmp-%" PRIu64, n);
        remove_dir(s, name);
        rc = s->fs.ops->mkdir(s->fs.self, w->tmp);
    }
    if (rc != 0) goto fail;
    char path[ST_STORAGE_PATH_MAX + 8];
    snprintf(path, sizeof(path), "%s/data", w->tmp);
    rc = s->fs.ops->open(s->fs.self, path, ST_FS_RDWR | ST_FS_CREATE | ST_FS_TRUNC, &w->fd);
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/meta", w->tmp);
        rc =
            s->fs.ops->open(s->fs.self, path, ST_FS_RDWR | ST_FS_CREATE | ST_FS_TRUNC, &w->meta_fd);
        if (rc != 0) w->meta_fd = -1;
    } else {
        w->fd = -1;
    }
    if (rc == 0) {
        rc = s->fs.ops->open_dir(s->fs.self, w->tmp, &w->tmp_fd);
        if (rc != 0) w->tmp_fd = -1;
    }
    if (rc != 0) {
        writer_cleanup(w);
        return rc;
    }
    *out = w;
    return 0;
fail:
    free(w);
    return rc;
}

int st_snap_write(struct st_snap_writer *w, const void *data, size_t len)
{
    if (w->failed) return ST_EIO;
    int rc = w->s->fs.ops->pwrite(w->s->fs.self, w->fd, data, len, w->bytes);
    if (rc != 0) {
        w->failed = true;
        return rc;
    }
    w->crc = st_crc32c(w->crc, data, len);
    w->bytes += len;
    if (w->s->fs.ops->writeback && w->bytes - w->written_back >= SNAP_WRITEBACK_BYTES) {
        (void)w->s->fs.ops->writeback(w->s->fs.self, w->fd, w->written_back,
                                      w->bytes - w->written_back);
        w->written_back = w->bytes;
    }
    return 0;
}

void st_snap_write_abort(struct st_snap_writer *w)
{
    if (w) writer_cleanup(w);
}

/* Keeps the newest `retain` snapshots. */
static void rotate(struct st_snap_store *s)
{
    struct snap_list *l = malloc(sizeof(*l));
    if (!l || list_snaps(s, l) != 0) {
        free(l);
        return;
    }
    bool removed = false;
    for (size_t i = s->retain; i < l->n; i++) {
        char name[64];
        snap_name(name, sizeof(name), l->ids[i].term, l->ids[i].index);
        remove_dir(s, name);
        removed = true;
    }
    if (removed) s->fs.ops->sync_dir_fd(s->fs.self, s->dir_fd);
    free(l);
}

static int find(struct st_snap_store *s, raft_index index, struct st_snapshot_info *info);

int st_snap_write_commit(struct st_snap_writer *w, const struct raft_snapshot_meta *meta,
                         struct st_snapshot_info *info_out)
{
    struct st_snap_store *s = w->s;
    int rc = w->failed ? ST_EIO : 0;
    struct st_snapshot_info info = {.meta = *meta, .data_bytes = w->bytes, .data_crc = w->crc};
    if (meta->conf.n > RAFT_MEMBERS_MAX) rc = ST_EINVAL;
    if (rc == 0) rc = s->fs.ops->fsync(s->fs.self, w->fd);
    uint8_t *mb = NULL;
    if (rc == 0) {
        mb = malloc(SNAP_META_MAX);
        rc = mb ? 0 : ST_ENOMEM;
    }
    if (rc == 0) {
        size_t mlen = st_snap_meta_encode(&info, mb);
        rc = s->fs.ops->pwrite(s->fs.self, w->meta_fd, mb, mlen, 0);
        if (rc == 0) rc = s->fs.ops->fsync(s->fs.self, w->meta_fd);
    }
    free(mb);
    if (rc == 0) rc = s->fs.ops->sync_dir_fd(s->fs.self, w->tmp_fd);
    writer_close_fds(w); /* before the rename: nothing in tmp stays open */
    char name[64], final[ST_STORAGE_PATH_MAX];
    snap_name(name, sizeof(name), meta->term, meta->index);
    snprintf(final, sizeof(final), "%s/%s", s->dir, name);
    bool exists = false;
    if (rc == 0) {
        bool is_dir;
        exists = s->fs.ops->stat(s->fs.self, final, &is_dir) == 0;
    }
    if (rc == 0 && exists) {
        /* The same (term, index) is the same state (Raft's State Machine
         * Safety), and a final name appears only by the rename of a synced
         * copy: the one here is complete. Keep it and drop this copy. A
         * receiver that stored a leader's snapshot and lost power before
         * installing it is sent the same one again and must take it, not
         * refuse it forever (found by tests/wsim, seed 1001625). */
        writer_cleanup(w);
        rc = find(s, meta->index, &info); /* its own meta: sizes and checksum */
        if (rc != 0) {
            ST_TRACE_ERROR("storage", "snapshot: %s exists but cannot be read: %s", final,
                           st_strerror(rc));
            return rc;
        }
        pthread_mutex_lock(&s->mu);
        if (!s->has_latest || info.meta.index >= s->latest.meta.index) {
            s->latest = info;
            s->has_latest = true;
        }
        pthread_mutex_unlock(&s->mu);
        if (info_out) *info_out = info;
        return 0;
    }
    if (rc == 0) rc = s->fs.ops->rename(s->fs.self, w->tmp, final);
    if (rc != 0) {
        ST_TRACE_ERROR("storage", "snapshot: cannot commit %s: %s", final, st_strerror(rc));
        writer_cleanup(w);
        return rc;
    }
    free(w);
    rc = s->fs.ops->sync_dir_fd(s->fs.self, s->dir_fd);
    if (rc != 0) {
        ST_TRACE_ERROR("storage", "snapshot: cannot fsync %s: %s", s->dir, st_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&s->mu);
    if (!s->has_latest || info.meta.index >= s->latest.meta.index) {
        s->latest = info;
        s->has_latest = true;
    }
    rotate(s);
    pthread_mutex_unlock(&s->mu);
    if (info_out) *info_out = info;
    return 0;
}

/* -------------------------------------------------------------- reader */

/* Finds the snapshot at index (0: latest) and reads its meta. */
static int find(struct st_snap_store *s, raft_index index, struct st_snapshot_info *info)
{
    if (index == 0) {
        return st_snap_store_latest(s, info);
    }
    struct snap_list *l = malloc(sizeof(*l));
    if (!l) return ST_ENOMEM;
    int rc = list_snaps(s, l);
    if (rc == 0) {
        rc = ST_ENOENT;
        for (size_t i = 0; i < l->n; i++)
            if (l->ids[i].index == index) {
                rc = read_meta(s, &l->ids[i], info);
                break;
            }
    }
    free(l);
    return rc;
}

int st_snap_data_path(struct st_snap_store *s, raft_index index, char *path, size_t cap,
                      struct st_snapshot_info *info_out)
{
    struct st_snapshot_info info;
    int rc = find(s, index, &info);
    if (rc != 0) return rc;
    char name[64];
    snap_name(name, sizeof(name), info.meta.term, info.meta.index);
    int n = snprintf(path, cap, "%s/%s/data", s->dir, name);
    if (n < 0 || (size_t)n >= cap) return ST_ETOOBIG;
    if (info_out) *info_out = info;
    return 0;
}

int st_snap_read_open(struct st_snap_store *s, raft_index index, struct st_snap_reader **out,
                      struct st_snapshot_info *info_out)
{
    char path[ST_STORAGE_PATH_MAX];
    struct st_snapshot_info info;
    int rc = st_snap_data_path(s, index, path, sizeof(path), &info);
    if (rc != 0) return rc;
    struct st_snap_reader *r = calloc(1, sizeof(*r));
    if (!r) return ST_ENOMEM;
    r->s = s;
    r->bytes = info.data_bytes;
    r->want_crc = info.data_crc;
    rc = s->fs.ops->open(s->fs.self, path, ST_FS_READ, &r->fd);
    if (rc != 0) {
        free(r);
        return rc;
    }
    if (info_out) *info_out = info;
    *out = r;
    return 0;
}

int st_snap_read(struct st_snap_reader *r, void *buf, size_t cap, size_t *n_out)
{
    *n_out = 0;
    size_t want = (size_t)ST_MIN((uint64_t)cap, r->bytes - r->off);
    if (want == 0) return r->crc == r->want_crc ? 0 : ST_ECORRUPT;
    size_t n = 0;
    int rc = r->s->fs.ops->pread(r->s->fs.self, r->fd, buf, want, r->off, &n);
    if (rc != 0) return rc;
    if (n == 0) return ST_ECORRUPT; /* shorter than the meta says */
    r->crc = st_crc32c(r->crc, buf, n);
    r->off += n;
    *n_out = n;
    if (r->off == r->bytes && r->crc != r->want_crc) return ST_ECORRUPT;
    return 0;
}

void st_snap_read_close(struct st_snap_reader *r)
{
    if (!r) return;
    r->s->fs.ops->close(r->s->fs.self, r->fd);
    free(r);
}
