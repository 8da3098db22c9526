/* DATA/meta: which node of which cluster this data directory belongs to.
 *
 *     0   8  magic "STCDATA1"
 *     8   4  version (1)
 *     12  4  reserved (0)
 *     16  8  node id
 *     24  8  cluster id
 *     32 28  reserved (0)
 *     60  4  CRC32C of bytes [0, 60)
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "stcache/storage.h"
#include "storage/common.h"
#include "util/crc32c.h"
#include "wire/le.h"

#define IDENT_MAGIC "STCDATA1"
#define IDENT_BYTES 64u

int st_identity_read(const struct st_fs *fs, const char *dir, uint64_t *node_id,
                     uint64_t *cluster_id, struct st_errbuf *err)
{
    if (!fs) fs = st_fs_posix();
    char path[ST_STORAGE_PATH_MAX];
    int rc = st_path_join(path, sizeof(path), dir, "meta");
    if (rc != 0) return rc;
    int fd;
    rc = fs->ops->open(fs->self, path, ST_FS_READ, &fd);
    if (rc == ST_ENOENT) return rc;
    if (rc != 0) {
        st_storage_errf(err, "cannot open %s: %s", path, st_strerror(rc));
        return rc;
    }
    uint8_t b[IDENT_BYTES + 1];
    size_t n = 0;
    rc = fs->ops->pread(fs->self, fd, b, sizeof(b), 0, &n);
    fs->ops->close(fs->self, fd);
    if (rc != 0) {
        st_storage_errf(err, "cannot read %s: %s", path, st_strerror(rc));
        return rc;
    }
    if (n < 8 || memcmp(b, IDENT_MAGIC, 8) != 0) {
        st_storage_errf(err, "%s is not a stcache data directory (%s has a foreign magic)", dir,
                        path);
        return ST_EMISMATCH;
    }
    if (n != IDENT_BYTES || le_get32(b + 60) != st_crc32c(0, b, 60)) {
        st_storage_errf(err, "%s is damaged (size %zu, checksum mismatch at offset 60)", path, n);
        return ST_ECORRUPT;
    }
    if (le_get32(b + 8) != IDENT_VERSION) {
        st_storage_errf(err, "%s has version %u; this build reads version %u", path,
                        le_get32(b + 8), IDENT_VERSION);
        return ST_EMISMATCH;
    }
    *node_id = le_get64(b + 16);
    *cluster_id = le_get64(b + 24);
    return 0;
}

struct any_ctx {
    char name[256];
    bool found;
};

static int any_cb(void *ctx, const char *name)
{
    struct any_ctx *a = ctx;
    if (strcmp(name, "meta.tmp") == 0) return 0;       /* our own interrupted initialisation */
    if (strcmp(name, ST_DIR_LOCK_NAME) == 0) return 0; /* st_dir_lock_acquire's */
    /* A joining node's members, stored before meta so that a crash between
     * the two cannot leave a node that knows no peer (node/node_join.c). */
    if (strcmp(name, "join-peers") == 0 || strcmp(name, "join-peers.tmp") == 0) return 0;
    snprintf(a->name, sizeof(a->name), "%s", name);
    a->found = true;
    return 1;
}

int st_identity_ensure(const struct st_fs *fs, const char *dir, uint64_t node_id,
                       uint64_t cluster_id, struct st_errbuf *err)
{
    if (!fs) fs = st_fs_posix();
    int rc = st_mkdir_durable(fs, dir);
    if (rc != 0) {
        st_storage_errf(err, "cannot create data directory %s: %s", dir, st_strerror(rc));
        return rc;
    }
    uint64_t node = 0, cluster = 0;
    rc = st_identity_read(fs, dir, &node, &cluster, err);
    if (rc == 0) {
        if ((node_id && node != node_id) || (cluster_id && cluster != cluster_id)) {
            st_storage_errf(err,
                            "data directory %s belongs to node %" PRIu64 " of cluster %" PRIx64
                            ", not node %" PRIu64 " of cluster %" PRIx64,
                            dir, node, cluster, node_id, cluster_id);
            return ST_EMISMATCH;
        }
        return 0;
    }
    if (rc != ST_ENOENT) return rc;
    struct any_ctx a = {.found = false};
    rc = fs->ops->list_dir(fs->self, dir, any_cb, &a);
    if (rc != 0) {
        st_storage_errf(err, "cannot list %s: %s", dir, st_strerror(rc));
        return rc;
    }
    if (a.found) {
        st_storage_errf(err,
                        "%s is not a stcache data directory: it holds '%s' but no meta "
                        "file; refusing to use it",
                        dir, a.name);
        return ST_EMISMATCH;
    }
    if (!node_id || !cluster_id) {
        st_storage_errf(err, "%s is empty: a node id and a cluster id are needed to initialise it",
                        dir);
        return ST_EINVAL;
    }
    uint8_t b[IDENT_BYTES] = {0};
    memcpy(b, IDENT_MAGIC, 8);
    le_put32(b + 8, IDENT_VERSION);
    le_put64(b + 16, node_id);
    le_put64(b + 24, cluster_id);
    le_put32(b + 60, st_crc32c(0, b, 60));
    rc = st_write_file_atomic(fs, dir, "meta", b, sizeof(b));
    if (rc != 0) st_storage_errf(err, "cannot write %s/meta: %s", dir, st_strerror(rc));
    return rc;
}
