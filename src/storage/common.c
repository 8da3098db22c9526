#include "storage/common.h"

#include <stdio.h>
#include <string.h>

#include "util/trace.h"

void st_storage_errf(struct st_errbuf *err, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    // va_start above: clang-analyzer 14 reports a false positive here
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ST_TRACE_ERROR("storage", "%s", msg);
    if (err && err->buf && err->cap) snprintf(err->buf, err->cap, "%s", msg);
}

int st_path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= cap) ? ST_ETOOBIG : 0;
}

void st_path_parent(char *out, size_t cap, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(out, cap, ".");
        return;
    }
    if (slash == path) {
        snprintf(out, cap, "/");
        return;
    }
    snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

int st_mkdir_durable(const struct st_fs *fs, const char *dir)
{
    bool is_dir = false;
    int rc = fs->ops->stat(fs->self, dir, &is_dir);
    if (rc == 0) return is_dir ? 0 : ST_EEXIST;
    if (rc != ST_ENOENT) return rc;
    rc = fs->ops->mkdir(fs->self, dir);
    if (rc != 0) return rc;
    char parent[ST_STORAGE_PATH_MAX];
    st_path_parent(parent, sizeof(parent), dir);
    return fs->ops->sync_dir(fs->self, parent);
}

int st_read_exact(const struct st_fs *fs, int fd, void *buf, size_t len, uint64_t off)
{
    size_t n = 0;
    int rc = fs->ops->pread(fs->self, fd, buf, len, off, &n);
    if (rc != 0) return rc;
    return n == len ? 0 : ST_ECORRUPT;
}

int st_write_file_atomic(const struct st_fs *fs, const char *dir, const char *name,
                         const void *data, size_t len)
{
    char tmp[ST_STORAGE_PATH_MAX], final[ST_STORAGE_PATH_MAX], tname[256];
    snprintf(tname, sizeof(tname), "%s.tmp", name);
    int rc = st_path_join(tmp, sizeof(tmp), dir, tname);
    if (rc == 0) rc = st_path_join(final, sizeof(final), dir, name);
    if (rc != 0) return rc;
    int fd;
    rc = fs->ops->open(fs->self, tmp, ST_FS_RDWR | ST_FS_CREATE | ST_FS_TRUNC, &fd);
    if (rc != 0) return rc;
    rc = fs->ops->pwrite(fs->self, fd, data, len, 0);
    if (rc == 0) rc = fs->ops->fsync(fs->self, fd);
    fs->ops->close(fs->self, fd);
    if (rc == 0) rc = fs->ops->rename(fs->self, tmp, final);
    if (rc == 0) rc = fs->ops->sync_dir(fs->self, dir);
    if (rc != 0) fs->ops->unlink(fs->self, tmp);
    return rc;
}
