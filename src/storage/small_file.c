/* Small checksummed files written whole and atomically (storage.h,
 * "small files"): the payload followed by the CRC32C of the payload,
 * little-endian. Written as NAME.tmp, fsynced, renamed, directory fsynced:
 * a reader sees the old file, the new one, or none. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/storage.h"
#include "storage/common.h"
#include "util/crc32c.h"
#include "wire/le.h"

int st_small_file_write(const struct st_fs *fs, const char *dir, const char *name, const void *data,
                        size_t len)
{
    if (!fs) fs = st_fs_posix();
    if (len > ST_SMALL_FILE_BYTES_MAX) return ST_ETOOBIG;
    uint8_t *b = malloc(len + 4);
    if (!b) return ST_ENOMEM;
    if (len) memcpy(b, data, len);
    le_put32(b + len, st_crc32c(0, b, len));
    int rc = st_write_file_atomic(fs, dir, name, b, len + 4);
    free(b);
    return rc;
}

int st_small_file_read(const struct st_fs *fs, const char *dir, const char *name, void *buf,
                       size_t cap, size_t *len, struct st_errbuf *err)
{
    if (!fs) fs = st_fs_posix();
    char path[ST_STORAGE_PATH_MAX];
    int rc = st_path_join(path, sizeof(path), dir, name);
    if (rc != 0) return rc;
    int fd;
    rc = fs->ops->open(fs->self, path, ST_FS_READ, &fd);
    if (rc == ST_ENOENT) return rc;
    if (rc != 0) {
        st_storage_errf(err, "cannot open %s: %s", path, st_strerror(rc));
        return rc;
    }
    uint8_t *b = malloc(ST_SMALL_FILE_BYTES_MAX + 5);
    size_t n = 0;
    rc = b ? fs->ops->pread(fs->self, fd, b, ST_SMALL_FILE_BYTES_MAX + 5, 0, &n) : ST_ENOMEM;
    fs->ops->close(fs->self, fd);
    if (rc != 0) {
        st_storage_errf(err, "cannot read %s: %s", path, st_strerror(rc));
        free(b);
        return rc;
    }
    if (n < 4 || n > ST_SMALL_FILE_BYTES_MAX + 4 || le_get32(b + n - 4) != st_crc32c(0, b, n - 4)) {
        st_storage_errf(err, "%s is damaged (size %zu, checksum mismatch)", path, n);
        free(b);
        return ST_ECORRUPT;
    }
    if (n - 4 > cap) {
        free(b);
        return ST_ETOOBIG;
    }
    memcpy(buf, b, n - 4);
    *len = n - 4;
    free(b);
    return 0;
}
