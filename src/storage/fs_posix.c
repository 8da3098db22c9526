/* The real file system behind the st_fs seam: POSIX calls, errno translated
 * here and nowhere else (st_errno_to_code). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "stcache/storage.h"

static int px_err(void)
{
    return st_errno_to_code(errno);
}

static int px_open(void *self, const char *path, int flags, int *fd_out)
{
    int of = O_CLOEXEC;
    of |= (flags & ST_FS_RDWR) ? O_RDWR : O_RDONLY;
    if (flags & ST_FS_CREATE) of |= O_CREAT;
    if (flags & ST_FS_EXCL) of |= O_EXCL;
    if (flags & ST_FS_TRUNC) of |= O_TRUNC;
    if (flags & ST_FS_DIRECT) of |= O_DIRECT;
    int fd;
    do {
        fd = open(path, of, 0644);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return px_err();
    *fd_out = fd;
    return 0;
}

static int px_close(void *self, int fd)
{
    /* close() may report a deferred write error; the data was not synced, the
     * caller's sync protocol decides durability, so the result is informative. */
    return close(fd) == 0 ? 0 : px_err();
}

static int px_pread(void *self, int fd, void *buf, size_t len, uint64_t off, size_t *n_out)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return px_err();
        }
        if (n == 0) break;
        done += (size_t)n;
    }
    *n_out = done;
    return 0;
}

static int px_pwrite(void *self, int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return px_err();
        }
        if (n == 0) return ST_EIO;
        done += (size_t)n;
    }
    return 0;
}

static int px_fdatasync(void *self, int fd)
{
    return fdatasync(fd) == 0 ? 0 : px_err();
}

static int px_pwrite_sync(void *self, int fd, const void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        /* iovec has no const member: the kernel only reads it for a write */
        struct iovec v = {.iov_base = (void *)((uintptr_t)buf + done), .iov_len = len - done};
        ssize_t n = pwritev2(fd, &v, 1, (off_t)(off + done), RWF_DSYNC);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EOPNOTSUPP || errno == ENOSYS) break; /* kernel before 4.7 */
            return px_err();
        }
        if (n == 0) return ST_EIO;
        done += (size_t)n;
    }
    if (done < len) {
        int rc = px_pwrite(self, fd, (const char *)buf + done, len - done, off + done);
        if (rc != 0) return rc;
        return px_fdatasync(self, fd);
    }
    return 0;
}

static int px_fsync(void *self, int fd)
{
    return fsync(fd) == 0 ? 0 : px_err();
}

static int px_fallocate(void *self, int fd, uint64_t off, uint64_t len)
{
    int rc = posix_fallocate(fd, (off_t)off, (off_t)len); /* returns the error */
    return rc == 0 ? 0 : st_errno_to_code(rc);
}

static int px_ftruncate(void *self, int fd, uint64_t len)
{
    return ftruncate(fd, (off_t)len) == 0 ? 0 : px_err();
}

static int px_fsize(void *self, int fd, uint64_t *size_out)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return px_err();
    *size_out = (uint64_t)st.st_size;
    return 0;
}

static int px_rename(void *self, const char *from, const char *to)
{
    return rename(from, to) == 0 ? 0 : px_err();
}

static int px_unlink(void *self, const char *path)
{
    return unlink(path) == 0 ? 0 : px_err();
}

static int px_mkdir(void *self, const char *path)
{
    /* 0700: a data directory holds the cluster's data and its identity */
    return mkdir(path, 0700) == 0 ? 0 : px_err();
}

static int px_rmdir(void *self, const char *path)
{
    return rmdir(path) == 0 ? 0 : px_err();
}

static int px_sync_dir(void *self, const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return px_err();
    int rc = fsync(fd) == 0 ? 0 : px_err();
    close(fd);
    return rc;
}

static int px_list_dir(void *self, const char *path, st_fs_list_cb cb, void *ctx)
{
    /* open + fdopendir rather than opendir: the same, except that
     * ThreadSanitizer sees the descriptor created (it does not intercept
     * opendir), so a directory listed on a worker thread under a number the
     * loop thread used before is not reported as a race on that number. */
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return px_err();
    DIR *d = fdopendir(fd);
    if (!d) {
        int rc = px_err();
        close(fd);
        return rc;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno) rc = px_err();
            break;
        }
        if (e->d_name[0] == '.' &&
            (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0)))
            continue;
        if (cb(ctx, e->d_name)) break;
    }
    closedir(d);
    return rc;
}

static int px_stat(void *self, const char *path, bool *is_dir)
{
    struct stat st;
    if (stat(path, &st) != 0) return px_err();
    if (is_dir) *is_dir = S_ISDIR(st.st_mode);
    return 0;
}

static int px_writeback(void *self, int fd, uint64_t off, uint64_t len)
{
    (void)self;
    if (sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE) != 0) return px_err();
    return 0;
}

static int px_open_dir(void *self, const char *path, int *fd_out)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return px_err();
    *fd_out = fd;
    return 0;
}

static int px_sync_dir_fd(void *self, int fd)
{
    return fsync(fd) == 0 ? 0 : px_err();
}

/* The PID a holder wrote into the lock file; 0 if unreadable. */
static uint64_t px_lock_holder(int fd)
{
    char b[32];
    ssize_t n = pread(fd, b, sizeof(b) - 1, 0);
    if (n <= 0) return 0;
    b[n] = '\0';
    char *end;
    unsigned long long pid = strtoull(b, &end, 10);
    return end != b ? (uint64_t)pid : 0;
}

static int px_lock(void *self, const char *path, int *fd_out, uint64_t *holder_pid_out)
{
    *holder_pid_out = 0;
    int fd;
    do {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return px_err();
    int rc;
    do {
        rc = flock(fd, LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) *holder_pid_out = px_lock_holder(fd);
        close(fd);
        return e == EWOULDBLOCK ? ST_EBUSY : st_errno_to_code(e);
    }
    /* Informative only (who holds it): not synced, a crash leaves any text. */
    char b[32];
    int n = snprintf(b, sizeof(b), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || px_pwrite(self, fd, b, (size_t)n, 0) != 0) {
        /* the lock holds without the PID */
    }
    *fd_out = fd;
    return 0;
}

static const struct st_fs_ops posix_ops = {
    .open = px_open,
    .close = px_close,
    .pread = px_pread,
    .pwrite = px_pwrite,
    .fdatasync = px_fdatasync,
    .pwrite_sync = px_pwrite_sync,
    .fsync = px_fsync,
    .fallocate = px_fallocate,
    .ftruncate = px_ftruncate,
    .fsize = px_fsize,
    .rename = px_rename,
    .unlink = px_unlink,
    .mkdir = px_mkdir,
    .rmdir = px_rmdir,
    .sync_dir = px_sync_dir,
    .list_dir = px_list_dir,
    .stat = px_stat,
    .writeback = px_writeback,
    .open_dir = px_open_dir,
    .sync_dir_fd = px_sync_dir_fd,
    .lock = px_lock,
};

static const struct st_fs posix_fs = {.ops = &posix_ops, .self = NULL};

const struct st_fs *st_fs_posix(void)
{
    return &posix_fs;
}
