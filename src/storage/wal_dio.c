/* WAL direct I/O (cfg direct_io): writes through an O_DIRECT descriptor of
 * the segment being written, block aligned through a bounce buffer and the
 * kept tail block; falls back to buffered writes for good when the kernel
 * refuses the transfer. Touched only by whoever writes (see struct wal).
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

/* ------------------------------------------------------- direct I/O */

void wal_dio_close(struct wal *w)
{
    if (w->dio_fd >= 0) w->fs.ops->close(w->fs.self, w->dio_fd);
    w->dio_fd = -1;
    w->dio_valid = false;
}

/* Direct I/O refused (or impossible): buffered writes from now on. */
static void dio_give_up(struct wal *w, int rc)
{
    ST_TRACE_INFO("storage", "wal: no direct I/O in %s (%s): buffered writes and fdatasync", w->dir,
                  st_strerror(rc));
    wal_dio_close(w);
    __atomic_store_n(&w->direct_io, false, __ATOMIC_RELAXED); /* the helper reads it */
}

/* Makes dio_fd/dio_tail describe segment `seq` up to `off` (fd: the
 * segment's buffered fd, to read the partial block back). 0, 1 when direct
 * I/O was given up, or the error of reading the block back. */
static int dio_prepare(struct wal *w, uint64_t seq, int fd, uint64_t off)
{
    if (w->dio_fd >= 0 && w->dio_seq != seq) wal_dio_close(w);
    if (w->dio_fd < 0) {
        char path[ST_STORAGE_PATH_MAX];
        wal_seg_path(w, seq, path, sizeof(path));
        int rc = w->fs.ops->open(w->fs.self, path, ST_FS_RDWR | ST_FS_DIRECT, &w->dio_fd);
        if (rc != 0) { /* no direct I/O here (or no fd): the buffered fd works */
            w->dio_fd = -1;
            if (rc != ST_ENFILE) dio_give_up(w, rc); /* else: direct I/O again next time */
            return 1;
        }
        w->dio_seq = seq;
        w->dio_valid = false;
    }
    if (!w->dio_valid || w->dio_end != off) {
        size_t t = (size_t)(off % WAL_DIO_ALIGN);
        int rc = t ? st_read_exact(&w->fs, fd, w->dio_tail, t, off - t) : 0;
        if (rc != 0) return rc;
        w->dio_end = off;
        w->dio_valid = true;
    }
    return 0;
}

/* Writes data at off (== dio_end) with direct I/O: whole blocks, starting
 * with the kept partial block, the last one padded with zeros. A write larger
 * than the bounce buffer goes in pieces and ends with one fdatasync (a FUA
 * write would make only its own piece durable). */
static int dio_write(struct wal *w, const uint8_t *data, size_t len, uint64_t off, bool sync)
{
    bool pieces = false;
    while (len > 0) {
        size_t t = (size_t)(off % WAL_DIO_ALIGN);
        size_t n = ST_MIN(len, (size_t)WAL_DIO_BUF - t);
        size_t total = t + n;
        size_t padded = (size_t)((total + WAL_DIO_ALIGN - 1) / WAL_DIO_ALIGN * WAL_DIO_ALIGN);
        memcpy(w->dio_buf, w->dio_tail, t);
        memcpy(w->dio_buf + t, data, n);
        memset(w->dio_buf + total, 0, padded - total);
        bool last = n == len;
        pieces |= !last;
        int rc = sync && last && !pieces
                     ? w->fs.ops->pwrite_sync(w->fs.self, w->dio_fd, w->dio_buf, padded, off - t)
                     : w->fs.ops->pwrite(w->fs.self, w->dio_fd, w->dio_buf, padded, off - t);
        if (rc != 0) {
            w->dio_valid = false;
            return rc;
        }
        size_t nt = total % WAL_DIO_ALIGN;
        memcpy(w->dio_tail, w->dio_buf + total - nt, nt);
        off += n;
        data += n;
        len -= n;
        w->dio_end = off;
    }
    __atomic_fetch_add(&w->direct_writes, 1, __ATOMIC_RELAXED); /* stats read it */
    if (sync && pieces) return w->fs.ops->fdatasync(w->fs.self, w->dio_fd);
    return 0;
}

/* Writes len bytes at off of segment `seq` (buffered fd `fd`) and, when
 * `sync`, makes them durable: direct I/O when on, else pwrite + fdatasync.
 * Failures are the caller's to make fatal. */
int wal_write_out(struct wal *w, uint64_t seq, int fd, const uint8_t *data, size_t len,
                  uint64_t off, bool sync)
{
    if (w->direct_io && len) {
        int rc = dio_prepare(w, seq, fd, off);
        if (rc < 0) return rc;
        if (rc == 0) {
            rc = dio_write(w, data, len, off, sync);
            /* EINVAL: the kernel refused the transfer (alignment) before
             * doing any of it; buffered writes need none */
            if (rc != ST_EINVAL) return rc;
            dio_give_up(w, rc);
        }
    }
    int rc = len ? w->fs.ops->pwrite(w->fs.self, fd, data, len, off) : 0;
    if (rc == 0 && sync) rc = w->fs.ops->fdatasync(w->fs.self, fd);
    return rc;
}
