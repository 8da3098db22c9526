/* Backups (GET /snapshot, `stcache snapshot save|inspect`): a node's newest
 * durable snapshot, taken for the purpose, streamed as one file with its
 * meta, cluster id and a trailing checksum. Format in docs/DISK-FORMAT.md
 * ("Backup file"); contracts in node.h. */
#include "node/node.h"

#include "kv/kv.h"
#include "node/node_int.h"
#include "stcache/errors.h"
#include "storage/snap_meta.h"
#include "util/assert.h"
#include "util/crc32c.h"
#include "util/trace.h"
#include "wire/le.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOD "node"

_Static_assert(NODE_BACKUP_HEADER_BYTES == 8 + 4 + 4 + 8 + 8, "backup header layout");

enum backup_phase { PHASE_HEAD, PHASE_DATA, PHASE_TRAILER, PHASE_DONE };

struct node_backup {
    uv_loop_t *loop;
    struct node *node; /* only until the snapshot is durable */
    node_backup_open_cb open_cb;
    void *open_ctx;
    struct node_backup_meta meta;
    int fd;
    enum backup_phase phase;
    uint64_t data_off;
    uint32_t crc;      /* over everything produced so far */
    uint32_t data_crc; /* over the data bytes read so far */
    uv_fs_t fs;
    bool reading;
    bool close_pending; /* closed while a read was on the threadpool */
    node_backup_read_cb read_cb;
    void *read_ctx;
    size_t head_len;
    uint8_t head[NODE_BACKUP_HEADER_BYTES + SNAP_META_MAX];
    uint8_t buf[NODE_BACKUP_CHUNK_BYTES];
};

static size_t backup_head_encode(uint64_t cluster_id, const struct st_snapshot_info *info,
                                 uint8_t *out)
{
    size_t meta_len = st_snap_meta_encode(info, out + NODE_BACKUP_HEADER_BYTES);
    memcpy(out, NODE_BACKUP_MAGIC, 8);
    le_put32(out + 8, NODE_BACKUP_VERSION);
    le_put32(out + 12, (uint32_t)meta_len);
    le_put64(out + 16, cluster_id);
    le_put64(out + 24, info->data_bytes);
    return NODE_BACKUP_HEADER_BYTES + meta_len;
}

static void backup_opened(struct node_backup *b, int status)
{
    node_backup_open_cb cb = b->open_cb;
    void *ctx = b->open_ctx;
    if (status != 0) {
        free(b);
        b = NULL;
    }
    cb(ctx, status, b);
}

/* The snapshot is durable: open its data file (immutable; rotation may
 * unlink it later, the open descriptor keeps it readable). */
static void backup_snapshot_cb(void *ctx, int status, raft_index index)
{
    struct node_backup *b = ctx;
    struct node *n = b->node;
    b->node = NULL;
    if (status != 0) {
        backup_opened(b, status);
        return;
    }
    char path[NODE_PATH_MAX + 128];
    struct st_snapshot_info info;
    int rc = st_snap_data_path(n->storage->snaps, index, path, sizeof path, &info);
    if (rc == 0) {
        b->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (b->fd < 0) rc = st_errno_to_code(errno);
    }
    if (rc != 0) {
        ST_TRACE_WARN(MOD, "node %" PRIu64 ": backup of snapshot %" PRIu64 " failed: %s", n->cfg.id,
                      index, st_strerror(rc));
        backup_opened(b, rc);
        return;
    }
    b->meta.cluster_id = n->cluster_id;
    b->meta.snap = info;
    b->head_len = backup_head_encode(n->cluster_id, &info, b->head);
    b->meta.total_bytes = b->head_len + info.data_bytes + 4;
    ST_TRACE_INFO(MOD,
                  "node %" PRIu64 ": backup of snapshot %" PRIu64 " (%" PRIu64 " bytes) begins",
                  n->cfg.id, index, b->meta.total_bytes);
    backup_opened(b, 0);
}

/* The read barrier answered: this node has applied everything committed
 * when the backup was asked for. Now the snapshot. */
static void backup_barrier_cb(void *ctx, const struct node_read_result *res)
{
    struct node_backup *b = ctx;
    int rc = res->status == ST_ENOENT ? 0 : res->status;
    if (rc == 0) rc = node_snapshot_now(b->node, backup_snapshot_cb, b);
    if (rc != 0) {
        b->node = NULL;
        backup_opened(b, rc);
    }
}

int node_backup_open(struct node *n, node_backup_open_cb cb, void *ctx)
{
    struct node_backup *b = calloc(1, sizeof *b);
    if (!b) return ST_ENOMEM;
    b->loop = n->loop;
    b->node = n;
    b->open_cb = cb;
    b->open_ctx = ctx;
    b->fd = -1;
    /* A linearizable read first (its key does not matter): on a follower, or
     * a leader behind its own commits, the snapshot then covers every write
     * acknowledged anywhere before the request. */
    static const uint8_t barrier_key[] = "stcache-backup-barrier";
    int rc = node_get(n, barrier_key, sizeof barrier_key - 1, NODE_READ_LINEARIZABLE,
                      backup_barrier_cb, b);
    if (rc != 0) free(b);
    return rc;
}

const struct node_backup_meta *node_backup_meta_get(const struct node_backup *b)
{
    return &b->meta;
}

static void backup_deliver(struct node_backup *b, int status, const void *data, size_t len)
{
    if (status == 0 && len > 0) b->crc = st_crc32c(b->crc, data, len);
    b->read_cb(b->read_ctx, status, data, len);
}

static void on_backup_read(uv_fs_t *req)
{
    struct node_backup *b = req->data;
    ssize_t r = req->result;
    uv_fs_req_cleanup(req);
    b->reading = false;
    if (b->close_pending) {
        node_backup_close(b);
        return;
    }
    if (r <= 0) {
        ST_TRACE_WARN(MOD, "backup: reading the snapshot at offset %" PRIu64 ": %s", b->data_off,
                      r == 0 ? "unexpected end of file" : uv_strerror((int)r));
        backup_deliver(b, r == 0 ? ST_ECORRUPT : ST_EIO, NULL, 0);
        return;
    }
    b->data_crc = st_crc32c(b->data_crc, b->buf, (size_t)r);
    b->data_off += (uint64_t)r;
    if (b->data_off == b->meta.snap.data_bytes) {
        b->phase = PHASE_TRAILER;
        if (b->data_crc != b->meta.snap.data_crc) {
            ST_TRACE_ERROR(MOD, "backup: the snapshot's data does not match its checksum");
            backup_deliver(b, ST_ECORRUPT, NULL, 0);
            return;
        }
    }
    backup_deliver(b, 0, b->buf, (size_t)r);
}

int node_backup_read(struct node_backup *b, node_backup_read_cb cb, void *ctx)
{
    ST_ASSERT(!b->reading && b->fd >= 0);
    b->read_cb = cb;
    b->read_ctx = ctx;
    switch (b->phase) {
    case PHASE_HEAD:
        b->phase = b->meta.snap.data_bytes > 0 ? PHASE_DATA : PHASE_TRAILER;
        backup_deliver(b, 0, b->head, b->head_len);
        return 0;
    case PHASE_DATA: {
        uint64_t left = b->meta.snap.data_bytes - b->data_off;
        uv_buf_t ub =
            uv_buf_init((char *)b->buf, (unsigned)(left < sizeof b->buf ? left : sizeof b->buf));
        b->fs.data = b;
        int rc = uv_fs_read(b->loop, &b->fs, b->fd, &ub, 1, (int64_t)b->data_off, on_backup_read);
        if (rc != 0) return st_errno_to_code(-rc);
        b->reading = true;
        return 0;
    }
    case PHASE_TRAILER: {
        uint8_t t[4];
        le_put32(t, b->crc);
        memcpy(b->buf, t, 4);
        b->phase = PHASE_DONE;
        cb(ctx, 0, b->buf, 4); /* the checksum is not part of what it covers */
        return 0;
    }
    case PHASE_DONE:
        cb(ctx, 0, NULL, 0);
        return 0;
    }
    return ST_EINVAL;
}

void node_backup_close(struct node_backup *b)
{
    if (b->reading) {
        b->close_pending = true; /* on_backup_read closes once the threadpool is done */
        return;
    }
    if (b->fd >= 0) close(b->fd);
    free(b);
}

/* ------------------------------------------------------------- offline */

static int check_fail(int rc, uint64_t *bad_offset, uint64_t off, char *why, size_t cap,
                      const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static int check_fail(int rc, uint64_t *bad_offset, uint64_t off, char *why, size_t cap,
                      const char *fmt, ...)
{
    *bad_offset = off;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return rc;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return st_errno_to_code(errno);
        if (r == 0) return ST_ECORRUPT;
        got += (size_t)r;
    }
    return 0;
}

static int check_body(int fd, uint64_t off, const struct node_backup_meta *m, uint32_t *crc,
                      struct node_backup_report *out, uint64_t *bad_offset, char *why, size_t cap)
{
    uint8_t *buf = malloc(NODE_BACKUP_CHUNK_BYTES);
    struct kv *kv = NULL;
    struct kv_restore *kr = NULL;
    int rc = buf ? kv_create(NULL, &kv) : ST_ENOMEM;
    if (rc == 0) rc = kv_restore_begin(kv, &kr);
    if (rc != 0) {
        rc = check_fail(rc, bad_offset, off, why, cap, "%s", st_strerror(rc));
        goto out;
    }
    uint32_t data_crc = 0;
    int kv_rc = 0;
    for (uint64_t done = 0; done < m->snap.data_bytes;) {
        uint64_t left = m->snap.data_bytes - done;
        size_t n = left < NODE_BACKUP_CHUNK_BYTES ? (size_t)left : NODE_BACKUP_CHUNK_BYTES;
        rc = read_at(fd, buf, n, off + done);
        if (rc != 0) {
            rc = check_fail(rc, bad_offset, off + done, why, cap, "reading: %s", st_strerror(rc));
            goto out;
        }
        *crc = st_crc32c(*crc, buf, n);
        data_crc = st_crc32c(data_crc, buf, n);
        if (kv_rc == 0) kv_rc = kv_restore_feed(kr, buf, n);
        done += n;
    }
    if (data_crc != m->snap.data_crc) {
        rc = check_fail(ST_ECORRUPT, bad_offset, off, why, cap,
                        "the state's checksum fails (CRC32C of bytes %" PRIu64 "..%" PRIu64
                        " is %08x, the meta says %08x)",
                        off, off + m->snap.data_bytes, data_crc, m->snap.data_crc);
        goto out;
    }
    struct kv_snapshot_info ki = {0};
    rc = kv_restore_finish(kr, &ki);
    kr = NULL;
    if (rc != 0) {
        rc = check_fail(rc, bad_offset, off, why, cap, "the state does not load: %s",
                        st_strerror(rc));
        goto out;
    }
    free(ki.meta);
    out->keys = ki.keys;
    out->kv_index = ki.applied_index;
out:
    if (kr) kv_restore_abort(kr);
    if (kv) kv_destroy(kv);
    free(buf);
    return rc;
}

int node_backup_check(const char *path, struct node_backup_report *out, uint64_t *bad_offset,
                      char *why, size_t why_cap)
{
    memset(out, 0, sizeof *out);
    *bad_offset = 0;
    why[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int rc = st_errno_to_code(errno);
        return check_fail(rc, bad_offset, 0, why, why_cap, "cannot open %s: %s", path,
                          strerror(errno));
    }
    int rc;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = check_fail(st_errno_to_code(errno), bad_offset, 0, why, why_cap, "stat: %s",
                        strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint8_t head[NODE_BACKUP_HEADER_BYTES + SNAP_META_MAX];
    if (size < NODE_BACKUP_HEADER_BYTES + 4) {
        rc = check_fail(ST_ECORRUPT, bad_offset, size, why, why_cap,
                        "truncated: %" PRIu64 " bytes, less than a header and a checksum", size);
        goto out;
    }
    rc = read_at(fd, head, NODE_BACKUP_HEADER_BYTES, 0);
    if (rc != 0) {
        rc = check_fail(rc, bad_offset, 0, why, why_cap, "reading: %s", st_strerror(rc));
        goto out;
    }
    if (memcmp(head, NODE_BACKUP_MAGIC, 8) != 0) {
        rc = check_fail(ST_ECORRUPT, bad_offset, 0, why, why_cap,
                        "wrong magic: not a stcache backup file");
        goto out;
    }
    uint32_t version = le_get32(head + 8);
    if (version != NODE_BACKUP_VERSION) {
        rc = check_fail(ST_EINVAL, bad_offset, 8, why, why_cap,
                        "backup format version %u: this build reads version %u", version,
                        NODE_BACKUP_VERSION);
        goto out;
    }
    uint32_t meta_len = le_get32(head + 12);
    struct node_backup_meta *m = &out->meta;
    m->cluster_id = le_get64(head + 16);
    uint64_t data_bytes = le_get64(head + 24);
    if (meta_len < SNAP_META_FIXED || meta_len > SNAP_META_MAX) {
        rc = check_fail(ST_ECORRUPT, bad_offset, 12, why, why_cap,
                        "meta length %u out of bounds (%u..%u)", meta_len, SNAP_META_FIXED,
                        (unsigned)SNAP_META_MAX);
        goto out;
    }
    uint64_t want = (uint64_t)NODE_BACKUP_HEADER_BYTES + meta_len + data_bytes + 4;
    if (data_bytes > size || size < want) {
        rc = check_fail(ST_ECORRUPT, bad_offset, size, why, why_cap,
                        "truncated: the file has %" PRIu64 " bytes, its header says %" PRIu64, size,
                        want);
        goto out;
    }
    if (size > want) {
        rc = check_fail(ST_ECORRUPT, bad_offset, want, why, why_cap,
                        "%" PRIu64 " unexpected bytes after the checksum", size - want);
        goto out;
    }
    rc = read_at(fd, head + NODE_BACKUP_HEADER_BYTES, meta_len, NODE_BACKUP_HEADER_BYTES);
    if (rc == 0) rc = st_snap_meta_decode(head + NODE_BACKUP_HEADER_BYTES, meta_len, &m->snap);
    if (rc != 0) {
        rc = check_fail(rc, bad_offset, NODE_BACKUP_HEADER_BYTES, why, why_cap,
                        "the snapshot meta is damaged (%s)", st_strerror(rc));
        goto out;
    }
    if (m->snap.data_bytes != data_bytes) {
        rc = check_fail(ST_ECORRUPT, bad_offset, 24, why, why_cap,
                        "the header's data size %" PRIu64 " differs from the meta's %" PRIu64,
                        data_bytes, m->snap.data_bytes);
        goto out;
    }
    m->total_bytes = size;
    uint32_t crc = st_crc32c(0, head, NODE_BACKUP_HEADER_BYTES + meta_len);
    rc =
        check_body(fd, NODE_BACKUP_HEADER_BYTES + meta_len, m, &crc, out, bad_offset, why, why_cap);
    if (rc != 0) goto out;
    uint8_t t[4];
    rc = read_at(fd, t, 4, size - 4);
    if (rc != 0) {
        rc = check_fail(rc, bad_offset, size - 4, why, why_cap, "reading: %s", st_strerror(rc));
        goto out;
    }
    out->file_crc = le_get32(t);
    if (out->file_crc != crc) {
        rc = check_fail(ST_ECORRUPT, bad_offset, 0, why, why_cap,
                        "the file's checksum fails (CRC32C of bytes 0..%" PRIu64
                        " is %08x, the last 4 bytes say %08x)",
                        size - 4, crc, out->file_crc);
        goto out;
    }
    if (out->kv_index != m->snap.meta.index) {
        rc = check_fail(ST_ECORRUPT, bad_offset, NODE_BACKUP_HEADER_BYTES + meta_len, why, why_cap,
                        "the state is at index %" PRIu64 ", the meta says %" PRIu64, out->kv_index,
                        m->snap.meta.index);
        goto out;
    }
out:
    close(fd);
    return rc;
}

/* ------------------------------------------------------------- restore */

uint64_t node_backup_restore_cluster_id(const struct node_backup_report *r,
                                        const struct node_peer_addr *peers, uint32_t n_peers)
{
    uint64_t h = node_cluster_id_from_peers(peers, n_peers);
    const uint64_t mix[] = {r->meta.cluster_id, r->meta.snap.meta.index, r->meta.snap.meta.term,
                            r->file_crc};
    for (size_t i = 0; i < sizeof mix / sizeof mix[0]; i++) {
        for (int b = 0; b < 8; b++) {
            h ^= (mix[i] >> (8 * b)) & 0xffu;
            h *= 1099511628211ull; /* FNV-1a 64 prime */
        }
    }
    return h ? h : 1;
}

static int dir_holds_data(const char *dir, bool *holds)
{
    *holds = false;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : st_errno_to_code(errno);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        *holds = true;
        break;
    }
    closedir(d);
    return 0;
}

/* The WAL learns that a snapshot covers the log up to its index (as when a
 * follower installs one), and the hard state starts at its term with the
 * commit index there: the first entry the new cluster appends is index + 1. */
static int restore_mark_log(const char *dir, raft_id id, uint64_t cluster_id,
                            const struct raft_snapshot_meta *meta, struct st_errbuf *eb)
{
    struct st_storage_config sc = {.dir = dir, .node_id = id, .cluster_id = cluster_id};
    struct st_storage *st = NULL;
    struct st_storage_state state;
    memset(&state, 0, sizeof state);
    int rc = st_storage_open(&sc, &st, &state, eb);
    if (rc != 0) return rc;
    rc = state.has_snapshot && state.snapshot.meta.index == meta->index ? 0 : ST_ECORRUPT;
    struct raft_hard_state hs = {.term = meta->term, .vote = RAFT_NONE, .commit = meta->index};
    struct st_log_batch batch = {
        .snapshot_index = meta->index, .snapshot_term = meta->term, .hard_state = &hs};
    if (rc == 0) rc = st->log.ops->append(st->log.self, &batch);
    if (rc == 0) rc = st->log.ops->sync(st->log.self);
    st_storage_state_release(&state);
    st_storage_close(st);
    return rc;
}

int node_backup_restore(const char *path, const char *data_dir, raft_id id,
                        const struct node_peer_addr *peers, uint32_t n_peers, uint64_t cluster_id,
                        struct node_backup_report *out, uint64_t *cluster_id_out,
                        uint64_t *bad_offset, char *why, size_t why_cap)
{
    *bad_offset = 0;
    int rc = node_backup_check(path, out, bad_offset, why, why_cap);
    if (rc != 0) return rc;
    bool self = false;
    for (uint32_t i = 0; i < n_peers; i++)
        self |= peers[i].id == id;
    if (!self || n_peers == 0 || n_peers > RAFT_MEMBERS_MAX)
        return check_fail(ST_EINVAL, bad_offset, 0, why, why_cap,
                          "node %" PRIu64 " is not in the member list", id);
    bool holds;
    rc = dir_holds_data(data_dir, &holds);
    if (rc == 0 && holds) rc = ST_EEXIST;
    if (rc != 0)
        return check_fail(rc, bad_offset, 0, why, why_cap, "%s %s", data_dir,
                          rc == ST_EEXIST ? "holds data: restore only into a new directory"
                                          : st_strerror(rc));
    if (cluster_id == 0) cluster_id = node_backup_restore_cluster_id(out, peers, n_peers);
    *cluster_id_out = cluster_id;

    /* The new configuration: every listed member a voter, with its addresses. */
    struct raft_snapshot_meta meta = {.index = out->meta.snap.meta.index,
                                      .term = out->meta.snap.meta.term};
    for (uint32_t i = 0; i < n_peers; i++) {
        struct raft_member *m = &meta.conf.members[meta.conf.n++];
        m->id = peers[i].id;
        m->role = RAFT_VOTER;
        m->context_len = (uint16_t)node_context_format(m->context, peers[i].raft, peers[i].http);
    }
    const struct st_fs *fs = st_fs_posix();
    char errtext[256] = "";
    struct st_errbuf eb = {errtext, sizeof errtext};
    struct st_dir_lock lock;
    rc = st_dir_lock_acquire(fs, data_dir, &lock, &eb);
    if (rc != 0) return check_fail(rc, bad_offset, 0, why, why_cap, "%s: %s", data_dir, errtext);
    char snapdir[NODE_PATH_MAX + 16];
    snprintf(snapdir, sizeof snapdir, "%s/snap", data_dir);
    struct st_snap_store *ss = NULL;
    struct st_snap_writer *w = NULL;
    uint8_t *buf = malloc(NODE_BACKUP_CHUNK_BYTES);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    rc = buf == NULL ? ST_ENOMEM : fd < 0 ? st_errno_to_code(errno) : 0;
    /* The identity first (it refuses a directory with other files), then
     * the snapshot, committed atomically by the store. */
    if (rc == 0) rc = st_identity_ensure(fs, data_dir, id, cluster_id, &eb);
    if (rc == 0) rc = st_snap_store_open(fs, snapdir, 0, &ss, &eb);
    if (rc == 0) rc = st_snap_write_begin(ss, &w);
    uint64_t off = NODE_BACKUP_HEADER_BYTES + (out->meta.total_bytes - NODE_BACKUP_HEADER_BYTES -
                                               out->meta.snap.data_bytes - 4);
    for (uint64_t done = 0; rc == 0 && done < out->meta.snap.data_bytes;) {
        uint64_t left = out->meta.snap.data_bytes - done;
        size_t n = left < NODE_BACKUP_CHUNK_BYTES ? (size_t)left : NODE_BACKUP_CHUNK_BYTES;
        rc = read_at(fd, buf, n, off + done);
        if (rc == 0) rc = st_snap_write(w, buf, n);
        done += n;
    }
    if (w) {
        if (rc == 0)
            rc = st_snap_write_commit(w, &meta, NULL);
        else
            st_snap_write_abort(w);
    }
    if (ss) st_snap_store_destroy(ss);
    if (rc == 0) rc = restore_mark_log(data_dir, id, cluster_id, &meta, &eb);
    if (fd >= 0) close(fd);
    free(buf);
    st_dir_lock_release(&lock);
    if (rc != 0)
        return check_fail(rc, bad_offset, 0, why, why_cap, "writing %s: %s%s%s", data_dir,
                          st_strerror(rc), errtext[0] ? ": " : "", errtext);
    return 0;
}
