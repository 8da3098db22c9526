/* LD_PRELOAD shim that turns kill -9 into a power failure for the WAL: data
 * written to a WAL segment stays in this process's memory until an fsync or
 * fdatasync of that file (or a write with RWF_DSYNC) makes it durable, so a
 * process killed before it synced loses what it wrote, exactly as a machine
 * losing power loses its page cache. Without it, kill -9 loses nothing the
 * process wrote, and a build that acknowledges writes before their fsync
 * passes every kill. (Jepsen's LazyFS does the same below a FUSE mount.)
 *
 * Files affected: paths containing STCACHE_POWERLOSS_MATCH (default "/wal/")
 * and ending in ".wal". Everything else passes through. Reads of an affected
 * file see its pending writes (as the page cache would); ftruncate and
 * fallocate first apply what is pending (conservative: never less durable
 * than the real thing). Renames and directory syncs are not emulated.
 *
 * Used by tests/nemesis (--power-loss) and the mutation check in
 * docs/TESTING.md. Thread-safe (one lock); not for production. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define PL_FDS_MAX 4096
#define PL_PENDING_BYTES_MAX (512u << 20) /* past it, writes are applied (never lost) */

struct pl_write {
    struct pl_write *next;
    off_t off;
    size_t len;
    unsigned char *data; /* 4 KiB aligned: applied later through an O_DIRECT fd too */
};

struct pl_file {
    int tracked;
    struct pl_write *head, *tail; /* pending writes, oldest first */
};

static pthread_mutex_t pl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pl_file pl_fds[PL_FDS_MAX];
static size_t pl_pending_bytes;

static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static int (*real_fdatasync)(int);
static int (*real_fsync)(int);
static int (*real_close)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);

static void pl_init(void)
{
    if (real_pwrite64) return;
    real_pread64 = dlsym(RTLD_NEXT, "pread64");
    real_pwritev2 = dlsym(RTLD_NEXT, "pwritev2");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_close = dlsym(RTLD_NEXT, "close");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate64");
    real_fallocate = dlsym(RTLD_NEXT, "fallocate64");
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
}

static int pl_matches(const char *path)
{
    const char *m = getenv("STCACHE_POWERLOSS_MATCH");
    size_t n = strlen(path);
    return strstr(path, m && *m ? m : "/wal/") != NULL && n > 4 &&
           strcmp(path + n - 4, ".wal") == 0;
}

static int pl_track(int fd, const char *path)
{
    if (fd >= 0 && fd < PL_FDS_MAX && pl_matches(path)) {
        pthread_mutex_lock(&pl_lock);
        pl_fds[fd].tracked = 1;
        pthread_mutex_unlock(&pl_lock);
    }
    return fd;
}

static int pl_tracked(int fd)
{
    return fd >= 0 && fd < PL_FDS_MAX && pl_fds[fd].tracked;
}

/* Applies fd's pending writes to the file, oldest first. Lock held. */
static int pl_apply(int fd)
{
    struct pl_file *f = &pl_fds[fd];
    while (f->head) {
        struct pl_write *w = f->head;
        size_t done = 0;
        while (done < w->len) {
            ssize_t n = real_pwrite64(fd, w->data + done, w->len - done, w->off + (off_t)done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) return -1;
            done += (size_t)n;
        }
        f->head = w->next;
        pl_pending_bytes -= w->len;
        free(w->data);
        free(w);
    }
    f->tail = NULL;
    return 0;
}

static void pl_drop(int fd)
{
    struct pl_file *f = &pl_fds[fd];
    while (f->head) {
        struct pl_write *w = f->head;
        f->head = w->next;
        pl_pending_bytes -= w->len;
        free(w->data);
        free(w);
    }
    f->tail = NULL;
    f->tracked = 0;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    pl_init();
    if (!pl_tracked(fd)) return real_pwrite64(fd, buf, len, off);
    pthread_mutex_lock(&pl_lock);
    ssize_t rc;
    struct pl_write *w = NULL;
    if (pl_pending_bytes + len <= PL_PENDING_BYTES_MAX && (w = malloc(sizeof(*w))) != NULL &&
        posix_memalign((void **)&w->data, 4096, len ? len : 1) != 0) {
        free(w);
        w = NULL;
    }
    if (!w) {
        rc = pl_apply(fd) == 0 ? real_pwrite64(fd, buf, len, off) : -1;
    } else {
        w->next = NULL;
        w->off = off;
        w->len = len;
        memcpy(w->data, buf, len);
        struct pl_file *f = &pl_fds[fd];
        if (f->tail)
            f->tail->next = w;
        else
            f->head = w;
        f->tail = w;
        pl_pending_bytes += len;
        rc = (ssize_t)len;
    }
    pthread_mutex_unlock(&pl_lock);
    return rc;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite64(fd, buf, len, off);
}

ssize_t pread64(int fd, void *buf, size_t len, off_t off)
{
    pl_init();
    if (!pl_tracked(fd)) return real_pread64(fd, buf, len, off);
    pthread_mutex_lock(&pl_lock);
    ssize_t n = real_pread64(fd, buf, len, off);
    if (n >= 0) {
        /* Overlay the pending writes, as the page cache would show them; a
         * pending write past the end of the file extends what is read. */
        size_t got = (size_t)n;
        for (struct pl_write *w = pl_fds[fd].head; w; w = w->next) {
            off_t lo = w->off > off ? w->off : off;
            off_t hi = w->off + (off_t)w->len;
            if (hi > off + (off_t)len) hi = off + (off_t)len;
            if (lo >= hi) continue;
            memcpy((unsigned char *)buf + (lo - off), w->data + (lo - w->off), (size_t)(hi - lo));
            if ((size_t)(hi - off) > got) {
                if ((size_t)(lo - off) > got)
                    memset((unsigned char *)buf + got, 0, (size_t)(lo - off) - got);
                got = (size_t)(hi - off);
            }
        }
        n = (ssize_t)got;
    }
    pthread_mutex_unlock(&pl_lock);
    return n;
}

ssize_t pread(int fd, void *buf, size_t len, off_t off)
{
    return pread64(fd, buf, len, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags)
{
    pl_init();
    if (!pl_tracked(fd)) return real_pwritev2(fd, iov, cnt, off, flags);
    if (!(flags & RWF_DSYNC)) {
        /* Buffered like pwrite: gathered into one pending write. */
        size_t len = 0;
        for (int i = 0; i < cnt; i++)
            len += iov[i].iov_len;
        unsigned char *tmp = malloc(len ? len : 1);
        if (!tmp) {
            errno = ENOMEM;
            return -1;
        }
        size_t at = 0;
        for (int i = 0; i < cnt; i++) {
            memcpy(tmp + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        ssize_t rc = pwrite64(fd, tmp, len, off);
        free(tmp);
        return rc;
    }
    pthread_mutex_lock(&pl_lock);
    ssize_t rc = pl_apply(fd) == 0 ? real_pwritev2(fd, iov, cnt, off, flags) : -1;
    pthread_mutex_unlock(&pl_lock);
    return rc;
}

static int pl_sync(int fd, int (*real)(int))
{
    pl_init();
    if (!pl_tracked(fd)) return real(fd);
    pthread_mutex_lock(&pl_lock);
    int rc = pl_apply(fd);
    pthread_mutex_unlock(&pl_lock);
    return rc == 0 ? real(fd) : -1;
}

int fdatasync(int fd)
{
    pl_init();
    return pl_sync(fd, real_fdatasync);
}

int fsync(int fd)
{
    pl_init();
    return pl_sync(fd, real_fsync);
}

int close(int fd)
{
    pl_init();
    if (pl_tracked(fd)) {
        /* Unsynced writes of a closed file are lost at the power failure
         * too; the stores sync before they close what they keep. */
        pthread_mutex_lock(&pl_lock);
        pl_drop(fd);
        pthread_mutex_unlock(&pl_lock);
    }
    return real_close(fd);
}

int ftruncate64(int fd, off_t len)
{
    pl_init();
    if (pl_tracked(fd)) {
        pthread_mutex_lock(&pl_lock);
        int rc = pl_apply(fd);
        pthread_mutex_unlock(&pl_lock);
        if (rc != 0) return -1;
    }
    return real_ftruncate(fd, len);
}

int ftruncate(int fd, off_t len)
{
    return ftruncate64(fd, len);
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    pl_init();
    if (pl_tracked(fd)) {
        pthread_mutex_lock(&pl_lock);
        int rc = pl_apply(fd);
        pthread_mutex_unlock(&pl_lock);
        if (rc != 0) return -1;
    }
    return real_fallocate(fd, mode, off, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    return fallocate64(fd, mode, off, len);
}

/* The mode argument of open(2) and its kin, present only with O_CREAT or
 * O_TMPFILE; must be used in the variadic function itself (va_start). */
#define PL_OPEN_MODE(mode, flags)                                                                  \
    do {                                                                                           \
        if ((flags) & (O_CREAT | O_TMPFILE)) {                                                     \
            va_list ap;                                                                            \
            va_start(ap, flags);                                                                   \
            (mode) = (mode_t)va_arg(ap, int);                                                      \
            va_end(ap);                                                                            \
        }                                                                                          \
    } while (0)

int open(const char *path, int flags, ...)
{
    pl_init();
    mode_t mode = 0;
    PL_OPEN_MODE(mode, flags);
    return pl_track(real_open(path, flags, mode), path);
}

int open64(const char *path, int flags, ...)
{
    pl_init();
    mode_t mode = 0;
    PL_OPEN_MODE(mode, flags);
    return pl_track(real_open64(path, flags, mode), path);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    pl_init();
    mode_t mode = 0;
    PL_OPEN_MODE(mode, flags);
    return pl_track(real_openat(dirfd, path, flags, mode), path);
}
