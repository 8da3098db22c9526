/* Helpers shared by the storage files (not part of the public API). */
#ifndef ST_STORAGE_COMMON_H
#define ST_STORAGE_COMMON_H

#include <stdarg.h>
#include <stddef.h>

#include "stcache/storage.h"

#define ST_STORAGE_PATH_MAX 1024
#define IDENT_VERSION 1u /* the identity file's format (docs/DISK-FORMAT.md) */

/* Formats a refusal/failure message: one ST_TRACE_ERROR line (module
 * "storage") and a copy into err->buf when given. */
void st_storage_errf(struct st_errbuf *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* dir + "/" + name into out; ST_ETOOBIG if it does not fit. */
int st_path_join(char *out, size_t cap, const char *dir, const char *name);

/* Parent directory of path into out ("." when there is no slash). */
void st_path_parent(char *out, size_t cap, const char *path);

/* Creates dir if missing and fsyncs its parent; 0 if it exists. */
int st_mkdir_durable(const struct st_fs *fs, const char *dir);

/* Reads exactly len bytes at off (ST_ECORRUPT if the file is shorter). */
int st_read_exact(const struct st_fs *fs, int fd, void *buf, size_t len, uint64_t off);

/* Writes a small file atomically: path.tmp, fsync, rename, fsync dir. */
int st_write_file_atomic(const struct st_fs *fs, const char *dir, const char *name,
                         const void *data, size_t len);

#endif
