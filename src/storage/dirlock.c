/* One process per data directory: DATA/LOCK, taken before anything in DATA
 * is read and held for the process's life (the kernel drops it when the
 * process dies, so a crash leaves no stale lock). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stcache/storage.h"
#include "storage/common.h"

/* mkdir -p: each missing component is created and its parent fsynced. */
static int mkdir_parents(const struct st_fs *fs, const char *dir)
{
    char path[ST_STORAGE_PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof(path)) return len ? ST_ETOOBIG : ST_EINVAL;
    memcpy(path, dir, len + 1);
    while (len > 1 && path[len - 1] == '/')
        path[--len] = '\0';
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        if (path[i - 1] == '/') continue; /* "a//b" */
        char c = path[i];
        path[i] = '\0';
        int rc = st_mkdir_durable(fs, path);
        path[i] = c;
        if (rc != 0) return rc;
    }
    return 0;
}

int st_dir_lock_acquire(const struct st_fs *fs, const char *dir, struct st_dir_lock *out,
                        struct st_errbuf *err)
{
    if (!fs) fs = st_fs_posix();
    out->fs = fs;
    out->fd = -1;
    int rc = mkdir_parents(fs, dir);
    if (rc != 0) {
        st_storage_errf(err, "cannot create data directory %s: %s", dir, st_strerror(rc));
        return rc;
    }
    char path[ST_STORAGE_PATH_MAX];
    rc = st_path_join(path, sizeof(path), dir, ST_DIR_LOCK_NAME);
    if (rc != 0) return rc;
    uint64_t pid = 0;
    rc = fs->ops->lock(fs->self, path, &out->fd, &pid);
    if (rc == ST_EBUSY) {
        /* no trace line here: the caller prints the one line */
        if (err && err->buf && err->cap) {
            if (pid)
                snprintf(err->buf, err->cap,
                         "data directory %s is in use by another process (pid %" PRIu64
                         ", holding %s): one process per data directory",
                         dir, pid, path);
            else
                snprintf(err->buf, err->cap,
                         "data directory %s is in use by another process (holding %s): one "
                         "process per data directory",
                         dir, path);
        }
        out->fd = -1;
        return ST_EBUSY;
    }
    if (rc != 0) {
        st_storage_errf(err, "cannot lock %s: %s", path, st_strerror(rc));
        out->fd = -1;
        return rc;
    }
    return 0;
}

void st_dir_lock_release(struct st_dir_lock *l)
{
    if (!l || !l->fs || l->fd < 0) return;
    l->fs->ops->close(l->fs->self, l->fd);
    l->fd = -1;
}
