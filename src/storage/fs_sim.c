/* The simulated file system: files in memory, a page-cache model and fault
 * injection, for crash tests (see st_fs_sim_* in stcache/storage.h).
 *
 * Model. A tree of inodes. A file has `data` (what reads see) and `dur` (what
 * survives a power loss: its content at the last fsync/fdatasync) plus the
 * list of mutations made since (`pend`), replayed in order in KEEP_TORN mode.
 * A directory has `cur` entries (what lookups see) and `dur` entries (as of
 * its last sync_dir). A crash rebuilds every inode from its durable state. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stcache/storage.h"
#include "util/assert.h"

#define SIM_NAME_MAX 128
#define SIM_FDS_MAX 256

struct sim_dirent {
    char name[SIM_NAME_MAX];
    uint32_t ino;
};

struct sim_pend {
    int kind; /* 0 write, 1 resize (ftruncate/fallocate to a size) */
    uint64_t off;
    size_t len;
    uint8_t *bytes;
};

struct sim_inode {
    bool is_dir;
    bool gone; /* a file no name, durable name or handle reaches: its bytes are freed */
    /* file */
    uint8_t *data;
    uint64_t size;
    uint64_t cap;
    uint8_t *dur;
    uint64_t dur_size;
    struct sim_pend *pend;
    size_t n_pend, cap_pend;
    /* dir */
    struct sim_dirent *cur;
    size_t n_cur, cap_cur;
    struct sim_dirent *ddur;
    size_t n_ddur;
};

struct sim_fd {
    bool used;
    bool direct; /* ST_FS_DIRECT: transfers must be aligned, as O_DIRECT's */
    bool dir;    /* from open_dir: only sync_dir_fd and close */
    bool locked; /* from lock: holds the lock of its inode until closed */
    uint32_t ino;
};

struct st_fs_sim {
    pthread_mutex_t mu;
    struct st_fs fs;
    struct sim_inode **inodes;
    size_t n_inodes, cap_inodes;
    uint32_t *free_inos; /* gone files' numbers, reused by inode_new */
    size_t n_free, cap_free;
    struct sim_fd fds[SIM_FDS_MAX];
    uint64_t ops;
    uint64_t crash_op;
    bool crashed;
    /* the pwrite the crash interrupted */
    bool torn_valid;
    uint32_t torn_ino;
    uint64_t torn_off;
    uint8_t *torn_bytes;
    size_t torn_len;
    uint64_t quota_bytes;
    uint32_t fail_syncs;
    char denied[256];
    uint32_t direct_align; /* 0: no direct I/O */
    uint32_t fds_max;      /* open handles allowed (<= SIM_FDS_MAX), as RLIMIT_NOFILE */
};

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    ST_ASSERT(q); /* test-only component: out of memory is not a modelled fault */
    return q;
}

static uint32_t inode_new(struct st_fs_sim *s, bool is_dir)
{
    if (s->n_free) {
        uint32_t ino = s->free_inos[--s->n_free];
        memset(s->inodes[ino], 0, sizeof(*s->inodes[ino])); /* its buffers were freed */
        s->inodes[ino]->is_dir = is_dir;
        return ino;
    }
    if (s->n_inodes == s->cap_inodes) {
        s->cap_inodes = s->cap_inodes ? s->cap_inodes * 2 : 16;
        s->inodes = xrealloc(s->inodes, s->cap_inodes * sizeof(*s->inodes));
    }
    struct sim_inode *in = calloc(1, sizeof(*in));
    ST_ASSERT(in);
    in->is_dir = is_dir;
    s->inodes[s->n_inodes] = in;
    return (uint32_t)s->n_inodes++;
}

static void pend_clear(struct sim_inode *in)
{
    for (size_t i = 0; i < in->n_pend; i++)
        free(in->pend[i].bytes);
    in->n_pend = 0;
}

static void pend_add(struct sim_inode *in, int kind, uint64_t off, const void *bytes, size_t len)
{
    if (in->n_pend == in->cap_pend) {
        in->cap_pend = in->cap_pend ? in->cap_pend * 2 : 8;
        in->pend = xrealloc(in->pend, in->cap_pend * sizeof(*in->pend));
    }
    struct sim_pend *p = &in->pend[in->n_pend++];
    p->kind = kind;
    p->off = off;
    p->len = len;
    p->bytes = NULL;
    if (kind == 0) {
        p->bytes = xrealloc(NULL, len);
        memcpy(p->bytes, bytes, len);
    }
}

/* Resizes a file's durable content; new bytes are zero. */
static void dur_resize(struct sim_inode *in, uint64_t size)
{
    in->dur = xrealloc(in->dur, size ? size : 1);
    if (size > in->dur_size) memset(in->dur + in->dur_size, 0, size - in->dur_size);
    in->dur_size = size;
}

/* Resizes a file's current content; new bytes are zero. */
static void file_resize(struct sim_inode *in, uint64_t size)
{
    if (size > in->cap) {
        uint64_t cap = in->cap ? in->cap : 4096;
        while (cap < size)
            cap *= 2;
        in->data = xrealloc(in->data, cap);
        in->cap = cap;
    }
    if (size > in->size) memset(in->data + in->size, 0, size - in->size);
    in->size = size;
}

static void file_write(struct sim_inode *in, uint64_t off, const void *buf, size_t len)
{
    if (off + len > in->size) file_resize(in, off + len);
    memcpy(in->data + off, buf, len);
}

static uint64_t total_bytes(const struct st_fs_sim *s)
{
    uint64_t t = 0;
    for (size_t i = 0; i < s->n_inodes; i++)
        if (!s->inodes[i]->is_dir) t += s->inodes[i]->size;
    return t;
}

/* ------------------------------------------------------------ directories */

static struct sim_dirent *dir_find(struct sim_inode *d, const char *name)
{
    for (size_t i = 0; i < d->n_cur; i++)
        if (strcmp(d->cur[i].name, name) == 0) return &d->cur[i];
    return NULL;
}

static void dir_add(struct sim_inode *d, const char *name, uint32_t ino)
{
    if (d->n_cur == d->cap_cur) {
        d->cap_cur = d->cap_cur ? d->cap_cur * 2 : 8;
        d->cur = xrealloc(d->cur, d->cap_cur * sizeof(*d->cur));
    }
    struct sim_dirent *e = &d->cur[d->n_cur++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->ino = ino;
}

static void dir_remove(struct sim_inode *d, struct sim_dirent *e)
{
    size_t i = (size_t)(e - d->cur);
    d->cur[i] = d->cur[d->n_cur - 1];
    d->n_cur--;
}

/* Frees a file's bytes once nothing can reach it again: no name, no durable
 * name (a crash would bring that back), no open handle, not the write a crash
 * interrupted. Without this, every deleted file's bytes stayed until the sim
 * was destroyed (a long-running node grew by each deleted WAL segment and
 * snapshot) and counted against the quota. Its number is reused. Call after a name, a durable name
 * or a handle of ino went away; a cheap no-op when ino is still reachable.
 * A directory is freed alike, and then the files only its names reached:
 * a removed snapshot directory still listed its files among its durable
 * names (it is never synced once emptied), which kept every removed
 * snapshot's bytes (fuzz_http_request grew to 4 GiB in 270,000 inputs). */
static void inode_reclaim(struct st_fs_sim *s, uint32_t ino)
{
    struct sim_inode *in = s->inodes[ino];
    if (in->gone || ino == 0) return;
    if (!in->is_dir && s->torn_valid && s->torn_ino == ino) return;
    for (int fd = 0; fd < SIM_FDS_MAX; fd++)
        if (s->fds[fd].used && s->fds[fd].ino == ino) return;
    for (size_t i = 0; i < s->n_inodes; i++) {
        const struct sim_inode *d = s->inodes[i];
        if (!d->is_dir) continue;
        for (size_t k = 0; k < d->n_cur; k++)
            if (d->cur[k].ino == ino) return;
        for (size_t k = 0; k < d->n_ddur; k++)
            if (d->ddur[k].ino == ino) return;
    }
    if (in->is_dir) {
        struct sim_dirent *cur = in->cur, *ddur = in->ddur;
        size_t n_cur = in->n_cur, n_ddur = in->n_ddur;
        in->cur = in->ddur = NULL; /* no longer a name of its children */
        in->n_cur = in->cap_cur = in->n_ddur = 0;
        in->gone = true;
        if (s->n_free == s->cap_free) {
            s->cap_free = s->cap_free ? s->cap_free * 2 : 16;
            s->free_inos = xrealloc(s->free_inos, s->cap_free * sizeof(*s->free_inos));
        }
        s->free_inos[s->n_free++] = ino;
        for (size_t k = 0; k < n_cur; k++)
            inode_reclaim(s, cur[k].ino);
        for (size_t k = 0; k < n_ddur; k++)
            inode_reclaim(s, ddur[k].ino);
        free(cur);
        free(ddur);
        return;
    }
    pend_clear(in);
    free(in->pend);
    free(in->data);
    free(in->dur);
    in->pend = NULL;
    in->cap_pend = 0;
    in->data = in->dur = NULL;
    in->size = in->cap = in->dur_size = 0;
    in->gone = true;
    if (s->n_free == s->cap_free) {
        s->cap_free = s->cap_free ? s->cap_free * 2 : 16;
        s->free_inos = xrealloc(s->free_inos, s->cap_free * sizeof(*s->free_inos));
    }
    s->free_inos[s->n_free++] = ino; /* nothing refers to it any more */
}

/* Makes a directory's current names its durable ones (sync_dir), then frees
 * the files only the old durable names kept. */
static void dir_make_durable(struct st_fs_sim *s, struct sim_inode *d)
{
    struct sim_dirent *old = d->ddur;
    size_t n_old = d->n_ddur;
    d->ddur = xrealloc(NULL, (d->n_cur ? d->n_cur : 1) * sizeof(*d->ddur));
    if (d->n_cur) memcpy(d->ddur, d->cur, d->n_cur * sizeof(*d->cur));
    d->n_ddur = d->n_cur;
    for (size_t i = 0; i < n_old; i++)
        inode_reclaim(s, old[i].ino);
    free(old);
}

/* Splits path into (parent inode, last component). Returns 0, ST_ENOENT when a
 * parent is missing, ST_EINVAL for a bad path. */
static int resolve(struct st_fs_sim *s, const char *path, uint32_t *parent, char *last,
                   uint32_t *ino_out)
{
    uint32_t cur = 0;
    char comp[SIM_NAME_MAX];
    const char *p = path;
    bool have = false;
    *parent = 0;
    last[0] = 0;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p) break;
        size_t n = strcspn(p, "/");
        if (n >= SIM_NAME_MAX) return ST_EINVAL;
        memcpy(comp, p, n);
        comp[n] = 0;
        p += n;
        if (strcmp(comp, ".") == 0) continue;
        if (have) {
            /* descend into the previous component */
            struct sim_inode *d = s->inodes[cur];
            if (!d->is_dir) return ST_ENOENT;
            struct sim_dirent *e = dir_find(d, last);
            if (!e) return ST_ENOENT;
            cur = e->ino;
            if (!s->inodes[cur]->is_dir) return ST_ENOENT;
        }
        *parent = cur;
        memcpy(last, comp, n + 1);
        have = true;
    }
    if (!have) { /* the root itself */
        *ino_out = 0;
        return 1;
    }
    struct sim_dirent *e = dir_find(s->inodes[*parent], last);
    *ino_out = e ? e->ino : UINT32_MAX;
    return 0;
}

/* ---------------------------------------------------------------- ops */

#define SIM_LOCK(s) pthread_mutex_lock(&(s)->mu)
#define SIM_UNLOCK(s) pthread_mutex_unlock(&(s)->mu)

/* Counts a crash-able operation; returns true when it must fail (power lost). */
static bool sim_tick(struct st_fs_sim *s)
{
    if (s->crashed) return true;
    s->ops++;
    if (s->crash_op && s->ops == s->crash_op) {
        s->crashed = true;
        return true;
    }
    return false;
}

/* An O_DIRECT transfer the kernel would refuse with EINVAL. */
static bool sim_misaligned(const struct st_fs_sim *s, int fd, const void *buf, size_t len,
                           uint64_t off)
{
    uint32_t a = s->direct_align;
    return s->fds[fd].direct && ((uintptr_t)buf % a || len % a || off % a);
}

static struct sim_inode *fd_inode(struct st_fs_sim *s, int fd)
{
    if (fd < 0 || fd >= SIM_FDS_MAX || !s->fds[fd].used || s->fds[fd].dir) return NULL;
    return s->inodes[s->fds[fd].ino];
}

/* A free handle, or -1 when fds_max are open (EMFILE). */
static int fd_alloc(struct st_fs_sim *s)
{
    uint32_t used = 0;
    int fd = -1;
    for (int i = 0; i < SIM_FDS_MAX; i++) {
        if (s->fds[i].used)
            used++;
        else if (fd < 0)
            fd = i;
    }
    if (used >= s->fds_max) return -1;
    if (fd >= 0) s->fds[fd] = (struct sim_fd){.used = true};
    return fd;
}

static int sim_open(void *self, const char *path, int flags, int *fd_out)
{
    struct st_fs_sim *s = self;
    int rc = 0;
    SIM_LOCK(s);
    uint32_t parent, ino;
    char last[SIM_NAME_MAX];
    if (s->crashed) {
        rc = ST_EIO;
        goto out;
    }
    if (s->denied[0] && strcmp(s->denied, path) == 0) {
        rc = ST_EPERM;
        goto out;
    }
    if ((flags & ST_FS_DIRECT) && s->direct_align == 0) {
        rc = ST_EINVAL;
        goto out;
    }
    rc = resolve(s, path, &parent, last, &ino);
    if (rc != 0) {
        rc = rc > 0 ? ST_EINVAL : rc;
        goto out;
    }
    if (ino != UINT32_MAX || (flags & ST_FS_CREATE)) {
        /* EMFILE comes before any creation, as in open(2) */
        int probe = fd_alloc(s);
        if (probe < 0) {
            rc = ST_ENFILE;
            goto out;
        }
        s->fds[probe].used = false;
    }
    if (ino == UINT32_MAX) {
        if (!(flags & ST_FS_CREATE)) {
            rc = ST_ENOENT;
            goto out;
        }
        if (sim_tick(s)) {
            rc = ST_EIO;
            goto out;
        }
        ino = inode_new(s, false);
        dir_add(s->inodes[parent], last, ino);
    } else {
        if ((flags & ST_FS_CREATE) && (flags & ST_FS_EXCL)) {
            rc = ST_EEXIST;
            goto out;
        }
        if (s->inodes[ino]->is_dir) {
            rc = ST_EINVAL;
            goto out;
        }
        if (flags & ST_FS_TRUNC) {
            if (sim_tick(s)) {
                rc = ST_EIO;
                goto out;
            }
            file_resize(s->inodes[ino], 0);
            pend_add(s->inodes[ino], 1, 0, NULL, 0);
        }
    }
    int fd = fd_alloc(s);
    ST_ASSERT(fd >= 0); /* probed above, under the same lock */
    s->fds[fd].direct = (flags & ST_FS_DIRECT) != 0;
    s->fds[fd].ino = ino;
    *fd_out = fd;
out:
    SIM_UNLOCK(s);
    return rc;
}

static int sim_close(void *self, int fd)
{
    struct st_fs_sim *s = self;
    SIM_LOCK(s);
    if (fd >= 0 && fd < SIM_FDS_MAX && s->fds[fd].used) {
        s->fds[fd].used = false;
        inode_reclaim(s, s->fds[fd].ino);
    }
    SIM_UNLOCK(s);
    return 0;
}

static int sim_pread(void *self, int fd, void *buf, size_t len, uint64_t off, size_t *n_out)
{
    struct st_fs_sim *s = self;
    int rc = 0;
    SIM_LOCK(s);
    struct sim_inode *in = fd_inode(s, fd);
    if (!in) {
        rc = ST_EIO;
        goto out;
    }
    if (sim_misaligned(s, fd, buf, len, off)) {
        rc = ST_EINVAL;
        goto out;
    }
    size_t n = 0;
    if (off < in->size) n = (size_t)ST_MIN((uint64_t)len, in->size - off);
    if (n) memcpy(buf, in->data + off, n);
    *n_out = n;
out:
    SIM_UNLOCK(s);
    return rc;
}

static int sim_pwrite(void *self, int fd, const void *buf, size_t len, uint64_t off)
{
    struct st_fs_sim *s = self;
    int rc = 0;
    SIM_LOCK(s);
    struct sim_inode *in = fd_inode(s, fd);
    if (!in) {
        rc = ST_EIO;
        goto out;
    }
    if (sim_misaligned(s, fd, buf, len, off)) {
        rc = ST_EINVAL;
        goto out;
    }
    bool was_crashed = s->crashed;
    if (sim_tick(s)) {
        if (!was_crashed) { /* remember the write the power loss interrupted */
            s->torn_valid = true;
            s->torn_ino = s->fds[fd].ino;
            s->torn_off = off;
            free(s->torn_bytes);
            s->torn_bytes = xrealloc(NULL, len);
            memcpy(s->torn_bytes, buf, len);
            s->torn_len = len;
        }
        rc = ST_EIO;
        goto out;
    }
    if (off + len > in->size && s->quota_bytes != UINT64_MAX &&
        total_bytes(s) + (off + len - in->size) > s->quota_bytes) {
        rc = ST_ENOSPC;
        goto out;
    }
    file_write(in, off, buf, len);
    pend_add(in, 0, off, buf, len);
out:
    SIM_UNLOCK(s);
    return rc;
}

static int sim_sync_fd(void *self, int fd)
{
    struct st_fs_sim *s = self;
    int rc = 0;
    SIM_LOCK(s);
    struct sim_inode *in = fd_inode(s, fd);
    if (!in) {
        rc = ST_EIO;
        goto out;
    }
    if (sim_tick(s)) {
        rc = ST_EIO;
        goto out;
    }
    if (s->fail_syncs) {
        s->fail_syncs--;
        rc = ST_EIO;
        goto out;
    }
    /* The durable content becomes the current one: replay onto it the
     * mutations made since the last sync (cheaper than copying the whole
     * file, which made each sync of a preallocated WAL segment cost its
     * full size). */
    for (size_t k = 0; k < in->n_pend; k++) {
        const struct sim_pend *p = &in->pend[k];
        if (p->kind == 0) {
            if (p->off + p->len > in->dur_size) dur_resize(in, p->off + p->len);
            memcpy(in->dur + p->off, p->bytes, p->len);
        } else {
            dur_resize(in, p->off);
        }
    }
    ST_ASSERT(in->dur_size == in->size);
    pend_clear(in);
out:
    SIM_UNLOCK(s);
    return rc;
}

static int sim_resize_op(struct st_fs_sim *s, int fd, uint64_t size, bool only_grow)
{
    int rc = 0;
    SIM_LOCK(s);
    struct sim_inode *in = fd_inode(s, fd);
    if (!in) {
        rc = ST_EIO;
        goto out;
    }
    if (sim_tick(s)) {
        rc = ST_EIO;
        goto out;
    }
    if (only_grow && size <= in->size) goto out;
    if (size > in->size && s->quota_bytes != UINT64_MAX &&
        total_bytes(s) + (size - in->size) > s->quota_bytes) {
        rc = ST_ENOSPC;
        goto out;
    }
    file_resize(in, size);
    pend_add(in, 1, size, NULL, 0);
out:
    SIM_UNLOCK(s);
    return rc;
}

static int sim_fallocate(void *self, int fd, uint64_t off, uint64_t len)
{
    return sim_resize_op(self, fd, off + len, true);
}

static int sim_ftruncate(void *self, int fd, uint64_t len)
{
    return sim_resize_op(self, fd, len, false);
}

static int sim_fsize(void *self, int fd, uint64_t *size_out)
{
    struct st_fs_sim *s = self;
    int rc = 0;
    SIM_LOCK(s);
    struct sim_inode *in = fd_inode(s, fd);
    if (!in)
        rc = ST_EIO;
    else
        *size_out = in->size;
    SIM_UNLOCK(s);
    return rc;
}

static int sim_rename(void *self, const char *from, const char *to)
{
    struct st_fs_sim *s = self;
    int rc;
    SIM_LOCK(s);
    uint32_t fp, fino, tp, tino;
    char flast[SIM_NAME_MAX], tlast[SIM_NAME_MAX];
    rc = resolve(s, from, &fp, flast, &fino);
    if (rc == 0 && fino == UINT32_MAX) rc = ST_ENOENT;
    if (rc != 0) goto out;
    rc = resolve(s, to, &tp, tlast, &tino);
    if (rc != 0) goto out;
    if (sim_tick(s)) {
        rc = ST_EIO;
        goto out;
    }
    if (tino != UINT32_MAX) {
        if (s->inodes[tino]->is_dir && s->inodes[tino]->n_cur) {
            rc = ST_EEXIST;
            goto out;
        }
        dir_remove(s->inodes[tp], dir_find(s->inodes[tp], tlast));
    }
    dir_remove(s->inodes[fp], dir_find(s->inodes[fp], flast));
    dir_add(s->inodes[tp], tlast, fino);
    if (tino != UINT32_MAX && tino != fino) inode_reclaim(s, tino);
out:
    SIM_UNLOCK(s);
    return rc > 0 ? ST_EINVAL : rc;
}

static int sim_unlink_common(struct st_fs_sim *s, const char *path, bool want_dir)
{
    int rc;
    SIM_LOCK(s);
    uint32_t p, ino;
    char last[SIM_NAME_MAX];
    rc = resolve(s, path, &p, last, &ino);
    if (rc == 0 && ino == UINT32_MAX) rc = ST_ENOENT;
    if (rc != 0) goto out;
    if (s->inodes[ino]->is_dir != want_dir) {
        rc = ST_EINVAL;
        goto out;
    }
    if (want_dir && s->inodes[ino]->n_cur) {
        rc = ST_EEXIST;
        goto out;
    }
    if (sim_tick(s)) {
        rc = ST_EIO;
        goto out;
    }
    dir_remove(s->inodes[p], dir_find(s->inodes[p], last));
    inode_reclaim(s, ino);
out:
    SIM_UNLOCK(s);
    return rc > 0 ? ST_EINVAL : rc;
}

static int sim_unlink(void *self, const char *path)
{
    return sim_unlink_common(self, path, false);
}

static int sim_rmdir(void *self, const char *path)
{
    return sim_unlink_common(self, path, true);
}

static int sim_mkdir(void *self, const char *path)
{
    struct st_fs_sim *s = self;
    int rc;
    SIM_LOCK(s);
    uint32_t p, ino;
    char last[SIM_NAME_MAX];
    rc = resolve(s, path, &p, last, &ino);
    if (rc > 0) {
        rc = ST_EEXIST;
        goto out;
    }
    if (rc != 0) goto out;
    if (ino != UINT32_MAX) {
        rc = ST_EEXIST;
        goto out;
    }
    if (sim_tick(s)) {
        rc = ST_EIO;
        goto out;
    }
    uint32_t d = inode_new(s, true);
    dir_add(s->inodes[p], last, d);
out:
    SIM_UNLOCK(s);
    return rc;
}

static int sim_lookup_dir(struct st_fs_sim *s, const char *path, struct sim_inode **out)
{
    uint32_t p, ino;
    char last[SIM_NAME_MAX];
    int rc = resolve(s, path, &p, last, &ino);
    if (rc < 0) return rc;
    if (ino == UINT32_MAX) return ST_ENOENT;
    if (!s->inodes[ino]->is_dir) return ST_EINVAL;
    *out = s->inodes[ino];
    return 0;
}

static int sim_sync_dir(void *self, const char *path)
{
    struct st_fs_sim *s = self;
    SIM_LOCK(s);
    struct sim_inode *d = NULL;
    int rc = sim_lookup_dir(s, path, &d);
    if (rc == 0 && sim_tick(s)) rc = ST_EIO;
    if (rc == 0) {
        dir_make_durable(s, d);
    }
    SIM_UNLOCK(s);
    return rc;
}

static int sim_list_dir(void *self, const char *path, st_fs_list_cb cb, void *ctx)
{
    struct st_fs_sim *s = self;
    SIM_LOCK(s);
    struct sim_inode *d = NULL;
    int rc = sim_lookup_dir(s, path, &d);
    size_t n = 0;
    struct sim_dirent *copy = NULL;
    if (rc == 0 && d->n_cur) {
        n = d->n_cur;
        copy = xrealloc(NULL, n * sizeof(*copy));
        memcpy(copy, d->cur, n * sizeof(*copy));
    }
    SIM_UNLOCK(s);
    for (size_t i = 0; i < n; i++)
        if (cb(ctx, copy[i].name)) break;
    free(copy);
    return rc;
}

static int sim_stat(void *self, const char *path, bool *is_dir)
{
    struct st_fs_sim *s = self;
    SIM_LOCK(s);
    uint32_t p, ino;
    char last[SIM_NAME_MAX];
    int rc = resolve(s, path, &p, last, &ino);
    if (rc > 0) {
        ino = 0;
        rc = 0;
    }
    if (rc == 0 && ino == UINT32_MAX) rc = ST_ENOENT;
    if (rc == 0 && is_dir) *is_dir = s->inodes[ino]->is_dir;
    SIM_UNLOCK(s);
    return rc;
}

/* Two operations for the crash points (power may fail between the write and
 * the sync), as the kernel's write-then-flush may be interrupted. */
static int sim_pwrite_sync(void *self, int fd, const void *buf, size_t len, uint64_t off)
{
    int rc = sim_pwrite(self, fd, buf, len, off);
    return rc != 0 ? rc : sim_sync_fd(self, fd);
}

static int sim_open_dir(void *self, const char *path, int *fd_out)
{
    struct st_fs_sim *s = self;
    SIM_LOCK(s);
    uint32_t p, ino;
    char last[SIM_NAME_MAX];
    int rc = s->crashed ? ST_EIO : resolve(s, path, &p, last, &ino);
    if (rc > 0) { /* the root */
        ino = 0;
        rc = 0;
    }
    if (rc == 0 && ino == UINT32_MAX) rc = ST_ENOENT;
    if (rc == 0 && !s->inodes[ino]->is_dir) rc = ST_EINVAL;
    if (rc == 0) {
        int fd = fd_alloc(s);
        if (fd < 0) {
            rc = ST_ENFILE;
        } else {
            s->fds[fd].dir = true;
            s->fds[fd].ino = ino;
            *fd_out = fd;
        }
    }
    SIM_UNLOCK(s);
    return rc;
}

static int sim_sync_dir_fd(void *self, int fd)
{
    struct st_fs_sim *s = self;
    SIM_LOCK(s);
    int rc = 0;
    /* A handle a crash invalidated, or none; else the tick may crash now. */
    if (fd < 0 || fd >= SIM_FDS_MAX || !s->fds[fd].used || !s->fds[fd].dir || sim_tick(s))
        rc = ST_EIO;
    if (rc == 0) {
        struct sim_inode *d = s->inodes[s->fds[fd].ino];
        dir_make_durable(s, d);
    }
    SIM_UNLOCK(s);
    return rc;
}

/* Not a crash point (it changes no data a test checks); the PID written is
 * not durable, as with the real one. */
static int sim_lock(void *self, const char *path, int *fd_out, uint64_t *holder_pid_out)
{
    struct st_fs_sim *s = self;
    *holder_pid_out = 0;
    SIM_LOCK(s);
    uint32_t parent, ino;
    char last[SIM_NAME_MAX];
    int rc = s->crashed ? ST_EIO : resolve(s, path, &parent, last, &ino);
    if (rc > 0) rc = ST_EINVAL;
    int fd = rc == 0 ? fd_alloc(s) : -1; /* EMFILE before any creation */
    if (rc == 0 && fd < 0) rc = ST_ENFILE;
    if (rc == 0 && ino == UINT32_MAX) {
        ino = inode_new(s, false);
        dir_add(s->inodes[parent], last, ino);
    }
    if (rc == 0 && s->inodes[ino]->is_dir) rc = ST_EINVAL;
    for (int i = 0; rc == 0 && i < SIM_FDS_MAX; i++) {
        if (s->fds[i].used && s->fds[i].locked && s->fds[i].ino == ino) {
            struct sim_inode *in = s->inodes[ino];
            char b[32];
            size_t n = (size_t)ST_MIN(in->size, (uint64_t)sizeof(b) - 1);
            if (n) memcpy(b, in->data, n); /* data is NULL while size is 0 */
            b[n] = '\0';
            *holder_pid_out = strtoull(b, NULL, 10);
            rc = ST_EBUSY;
        }
    }
    if (rc == 0) {
        s->fds[fd].locked = true;
        s->fds[fd].ino = ino;
        struct sim_inode *in = s->inodes[ino];
        char b[32];
        int n = snprintf(b, sizeof(b), "%ld\n", (long)getpid());
        file_resize(in, 0);
        pend_add(in, 1, 0, NULL, 0);
        file_write(in, 0, b, (size_t)n);
        pend_add(in, 0, 0, b, (size_t)n);
        *fd_out = fd;
    } else if (fd >= 0) {
        s->fds[fd].used = false;
    }
    SIM_UNLOCK(s);
    return rc;
}

static const struct st_fs_ops sim_ops = {
    .open = sim_open,
    .close = sim_close,
    .pread = sim_pread,
    .pwrite = sim_pwrite,
    .fdatasync = sim_sync_fd,
    .pwrite_sync = sim_pwrite_sync,
    .fsync = sim_sync_fd,
    .fallocate = sim_fallocate,
    .ftruncate = sim_ftruncate,
    .fsize = sim_fsize,
    .rename = sim_rename,
    .unlink = sim_unlink,
    .mkdir = sim_mkdir,
    .rmdir = sim_rmdir,
    .sync_dir = sim_sync_dir,
    .list_dir = sim_list_dir,
    .stat = sim_stat,
    .open_dir = sim_open_dir,
    .sync_dir_fd = sim_sync_dir_fd,
    .lock = sim_lock,
};

/* ------------------------------------------------------------- control */

int st_fs_sim_create(struct st_fs_sim **out)
{
    struct st_fs_sim *s = calloc(1, sizeof(*s));
    if (!s) return ST_ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    s->fs.ops = &sim_ops;
    s->fs.self = s;
    s->quota_bytes = UINT64_MAX;
    s->direct_align = ST_FS_DIRECT_ALIGN;
    s->fds_max = SIM_FDS_MAX;
    inode_new(s, true); /* root, always durable */
    *out = s;
    return 0;
}

void st_fs_sim_destroy(struct st_fs_sim *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_inodes; i++) {
        struct sim_inode *in = s->inodes[i];
        pend_clear(in);
        free(in->pend);
        free(in->data);
        free(in->dur);
        free(in->cur);
        free(in->ddur);
        free(in);
    }
    free(s->inodes);
    free(s->free_inos);
    free(s->torn_bytes);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

const struct st_fs *st_fs_sim_fs(struct st_fs_sim *s)
{
    return &s->fs;
}

uint64_t st_fs_sim_op_count(const struct st_fs_sim *s)
{
    return s->ops;
}

void st_fs_sim_crash_at(struct st_fs_sim *s, uint64_t op)
{
    SIM_LOCK(s);
    s->crash_op = op;
    SIM_UNLOCK(s);
}

bool st_fs_sim_crashed(const struct st_fs_sim *s)
{
    return s->crashed;
}

size_t st_fs_sim_crash(struct st_fs_sim *s, enum st_fs_sim_crash_mode mode, size_t torn_bytes)
{
    SIM_LOCK(s);
    size_t torn_len = s->torn_valid ? s->torn_len : 0;
    for (size_t i = 0; i < s->n_inodes; i++) {
        struct sim_inode *in = s->inodes[i];
        if (in->gone) continue;
        if (in->is_dir) {
            if (i == 0) continue; /* the root's names are durable by definition */
            in->cur = xrealloc(in->cur, (in->n_ddur ? in->n_ddur : 1) * sizeof(*in->cur));
            if (in->n_ddur) memcpy(in->cur, in->ddur, in->n_ddur * sizeof(*in->cur));
            in->n_cur = in->cap_cur = in->n_ddur;
            if (in->cap_cur == 0) in->cap_cur = 1;
            continue;
        }
        /* The durable content, copied over the current one (no zeroing
         * first: every byte up to dur_size is overwritten). */
        if (in->dur_size > in->cap) {
            in->size = 0;
            file_resize(in, in->dur_size);
        }
        in->size = in->dur_size;
        if (in->dur_size) memcpy(in->data, in->dur, in->dur_size);
        if (mode != ST_FS_SIM_KEEP_TORN) {
            /* Nothing replayed: the durable copy stays what it is. */
            pend_clear(in);
            continue;
        }
        for (size_t k = 0; k < in->n_pend; k++) {
            struct sim_pend *p = &in->pend[k];
            if (p->kind == 0)
                file_write(in, p->off, p->bytes, p->len);
            else
                file_resize(in, p->off);
        }
        if (s->torn_valid && s->torn_ino == i && torn_bytes)
            file_write(in, s->torn_off, s->torn_bytes, ST_MIN(torn_bytes, s->torn_len));
        pend_clear(in);
        in->dur = xrealloc(in->dur, in->size ? in->size : 1);
        if (in->size) memcpy(in->dur, in->data, in->size);
        in->dur_size = in->size;
    }
    /* Root entries are durable at once; keep its durable copy in step. */
    for (int fd = 0; fd < SIM_FDS_MAX; fd++)
        s->fds[fd].used = false;
    s->crashed = false;
    s->crash_op = 0;
    s->torn_valid = false;
    /* Files created but never named durably are gone with the power. */
    for (size_t i = 0; i < s->n_inodes; i++)
        inode_reclaim(s, (uint32_t)i);
    SIM_UNLOCK(s);
    return torn_len;
}

void st_fs_sim_set_quota(struct st_fs_sim *s, uint64_t quota_bytes)
{
    SIM_LOCK(s);
    s->quota_bytes = quota_bytes;
    SIM_UNLOCK(s);
}

void st_fs_sim_set_direct_align(struct st_fs_sim *s, uint32_t align)
{
    SIM_LOCK(s);
    s->direct_align = align;
    SIM_UNLOCK(s);
}

void st_fs_sim_fail_syncs(struct st_fs_sim *s, uint32_t n)
{
    SIM_LOCK(s);
    s->fail_syncs = n;
    SIM_UNLOCK(s);
}

static int sim_file(struct st_fs_sim *s, const char *path, struct sim_inode **out)
{
    uint32_t p, ino;
    char last[SIM_NAME_MAX];
    int rc = resolve(s, path, &p, last, &ino);
    if (rc != 0) return rc < 0 ? rc : ST_EINVAL;
    if (ino == UINT32_MAX) return ST_ENOENT;
    if (s->inodes[ino]->is_dir) return ST_EINVAL;
    *out = s->inodes[ino];
    return 0;
}

int st_fs_sim_flip_bit(struct st_fs_sim *s, const char *path, uint64_t off, unsigned bit)
{
    SIM_LOCK(s);
    struct sim_inode *in = NULL;
    int rc = sim_file(s, path, &in);
    if (rc == 0 && (off >= in->size || bit > 7)) rc = ST_EINVAL;
    if (rc == 0) {
        in->data[off] ^= (uint8_t)(1u << bit);
        if (off < in->dur_size) in->dur[off] ^= (uint8_t)(1u << bit);
    }
    SIM_UNLOCK(s);
    return rc;
}

int st_fs_sim_file_size(struct st_fs_sim *s, const char *path, uint64_t *size_out)
{
    SIM_LOCK(s);
    struct sim_inode *in = NULL;
    int rc = sim_file(s, path, &in);
    if (rc == 0) *size_out = in->size;
    SIM_UNLOCK(s);
    return rc;
}

void st_fs_sim_deny(struct st_fs_sim *s, const char *path)
{
    SIM_LOCK(s);
    snprintf(s->denied, sizeof(s->denied), "%s", path ? path : "");
    SIM_UNLOCK(s);
}

void st_fs_sim_set_fds_max(struct st_fs_sim *s, uint32_t n)
{
    SIM_LOCK(s);
    s->fds_max = n < SIM_FDS_MAX ? n : SIM_FDS_MAX;
    SIM_UNLOCK(s);
}

uint32_t st_fs_sim_fds_open(struct st_fs_sim *s)
{
    SIM_LOCK(s);
    uint32_t n = 0;
    for (int i = 0; i < SIM_FDS_MAX; i++)
        n += s->fds[i].used;
    SIM_UNLOCK(s);
    return n;
}
