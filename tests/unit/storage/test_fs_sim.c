/* The simulated fs frees a deleted file's bytes once nothing can reach it
 * again (no name, no durable name, no open handle), and not before: a crash
 * before the directory's sync brings the file back whole, and an open handle
 * still reads it. Observed through the quota, which counts the bytes the sim
 * holds: a long-running node's deleted WAL segments and snapshots used to
 * stay (and count) until the sim was destroyed. */
#include "test.h"
#include "unit/storage/helpers.h"

#define FILE_BYTES 6000u
#define QUOTA_BYTES 10000u /* one file fits, two do not */

static int write_file(const struct st_fs *fs, const char *path, uint8_t fill, int *fd_out)
{
    uint8_t buf[FILE_BYTES];
    memset(buf, fill, sizeof buf);
    int fd;
    int rc = fs->ops->open(fs->self, path, ST_FS_RDWR | ST_FS_CREATE, &fd);
    if (rc != 0) return rc;
    rc = fs->ops->pwrite(fs->self, fd, buf, sizeof buf, 0);
    if (rc == 0) rc = fs->ops->fsync(fs->self, fd);
    if (rc == 0 && fd_out) {
        *fd_out = fd;
        return 0;
    }
    fs->ops->close(fs->self, fd);
    return rc;
}

static struct st_fs_sim *new_sim(void)
{
    struct st_fs_sim *sim = NULL;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    ASSERT_EQ(fs->ops->mkdir(fs->self, "/d"), 0);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/"), 0);
    st_fs_sim_set_quota(sim, QUOTA_BYTES);
    return sim;
}

TEST(a_deleted_file_whose_deletion_is_durable_frees_its_bytes)
{
    struct st_fs_sim *sim = new_sim();
    const struct st_fs *fs = st_fs_sim_fs(sim);
    ASSERT_EQ(write_file(fs, "/d/a", 1, NULL), 0);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
    ASSERT_EQ(write_file(fs, "/d/b", 2, NULL), ST_ENOSPC);
    ASSERT_EQ(fs->ops->unlink(fs->self, "/d/b"), 0); /* created empty before the refusal */
    ASSERT_EQ(fs->ops->unlink(fs->self, "/d/a"), 0);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
    ASSERT_EQ(write_file(fs, "/d/b", 2, NULL), 0);
    /* Replaced by a rename: the old target's bytes go too (room for two). */
    ASSERT_EQ(fs->ops->rename(fs->self, "/d/b", "/d/c"), 0);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
    st_fs_sim_set_quota(sim, 2 * FILE_BYTES + 1000);
    for (int i = 0; i < 20; i++) {
        ASSERT_EQ(write_file(fs, "/d/tmp", (uint8_t)i, NULL), 0);
        ASSERT_EQ(fs->ops->rename(fs->self, "/d/tmp", "/d/c"), 0);
        ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
    }
    st_fs_sim_destroy(sim);
}

TEST(a_deleted_file_comes_back_whole_after_a_crash_before_the_dir_sync)
{
    struct st_fs_sim *sim = new_sim();
    const struct st_fs *fs = st_fs_sim_fs(sim);
    ASSERT_EQ(write_file(fs, "/d/a", 7, NULL), 0);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
    ASSERT_EQ(fs->ops->unlink(fs->self, "/d/a"), 0);
    (void)st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
    uint64_t size = 0;
    ASSERT_EQ(st_fs_sim_file_size(sim, "/d/a", &size), 0);
    ASSERT_EQ(size, FILE_BYTES);
    int fd;
    uint8_t buf[FILE_BYTES], want[FILE_BYTES];
    size_t n = 0;
    memset(want, 7, sizeof want);
    ASSERT_EQ(fs->ops->open(fs->self, "/d/a", ST_FS_RDWR, &fd), 0);
    ASSERT_EQ(fs->ops->pread(fs->self, fd, buf, sizeof buf, 0, &n), 0);
    ASSERT_EQ(n, sizeof buf);
    ASSERT_MEMEQ(buf, want, sizeof buf);
    fs->ops->close(fs->self, fd);
    st_fs_sim_destroy(sim);
}

TEST(an_open_handle_keeps_a_deleted_file_until_it_is_closed)
{
    struct st_fs_sim *sim = new_sim();
    const struct st_fs *fs = st_fs_sim_fs(sim);
    int fd;
    ASSERT_EQ(write_file(fs, "/d/a", 9, &fd), 0);
    ASSERT_EQ(fs->ops->unlink(fs->self, "/d/a"), 0);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
    uint8_t buf[FILE_BYTES], want[FILE_BYTES];
    size_t n = 0;
    memset(want, 9, sizeof want);
    ASSERT_EQ(fs->ops->pread(fs->self, fd, buf, sizeof buf, 0, &n), 0);
    ASSERT_EQ(n, sizeof buf);
    ASSERT_MEMEQ(buf, want, sizeof buf);
    ASSERT_EQ(write_file(fs, "/d/b", 2, NULL), ST_ENOSPC);
    fs->ops->close(fs->self, fd);
    ASSERT_EQ(write_file(fs, "/d/b", 2, NULL), 0);
    st_fs_sim_destroy(sim);
}

TEST(files_never_named_durably_are_freed_by_a_crash)
{
    struct st_fs_sim *sim = new_sim();
    const struct st_fs *fs = st_fs_sim_fs(sim);
    ASSERT_EQ(write_file(fs, "/d/a", 3, NULL), 0); /* its name is not synced */
    (void)st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
    uint64_t size = 0;
    ASSERT_EQ(st_fs_sim_file_size(sim, "/d/a", &size), ST_ENOENT);
    ASSERT_EQ(write_file(fs, "/d/b", 4, NULL), 0);
    st_fs_sim_destroy(sim);
}

/* As a snapshot directory is removed: its files unlinked (the directory is
 * not synced again), then the directory, then its parent synced. */
static void remove_dir_as_a_snapshot(const struct st_fs *fs)
{
    ASSERT_EQ(fs->ops->unlink(fs->self, "/d/s/data"), 0);
    ASSERT_EQ(fs->ops->rmdir(fs->self, "/d/s"), 0);
}

static void make_dir_as_a_snapshot(const struct st_fs *fs, uint8_t fill)
{
    ASSERT_EQ(fs->ops->mkdir(fs->self, "/d/s"), 0);
    ASSERT_EQ(write_file(fs, "/d/s/data", fill, NULL), 0);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d/s"), 0);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
}

TEST(a_removed_directory_frees_the_files_its_durable_names_kept)
{
    /* The directory's own durable names still listed its file; the
     * directory was never freed, so neither was the file: every removed
     * snapshot's bytes stayed (fuzz_http_request: 4 GiB in 270,000
     * inputs). */
    struct st_fs_sim *sim = new_sim();
    const struct st_fs *fs = st_fs_sim_fs(sim);
    for (int i = 0; i < 5; i++) {
        make_dir_as_a_snapshot(fs, (uint8_t)i);
        remove_dir_as_a_snapshot(fs);
        ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
    }
    ASSERT_EQ(write_file(fs, "/d/b", 2, NULL), 0); /* one file fits again */
    st_fs_sim_destroy(sim);
}

TEST(a_removed_directory_comes_back_whole_after_a_crash_before_its_parent_sync)
{
    struct st_fs_sim *sim = new_sim();
    const struct st_fs *fs = st_fs_sim_fs(sim);
    make_dir_as_a_snapshot(fs, 5);
    remove_dir_as_a_snapshot(fs);
    (void)st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
    uint64_t size = 0;
    ASSERT_EQ(st_fs_sim_file_size(sim, "/d/s/data", &size), 0);
    ASSERT_EQ(size, FILE_BYTES);
    /* Removed for good this time: its bytes go with it. */
    remove_dir_as_a_snapshot(fs);
    ASSERT_EQ(fs->ops->sync_dir(fs->self, "/d"), 0);
    (void)st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
    ASSERT_EQ(st_fs_sim_file_size(sim, "/d/s/data", &size), ST_ENOENT);
    ASSERT_EQ(write_file(fs, "/d/b", 2, NULL), 0);
    st_fs_sim_destroy(sim);
}

TEST_MAIN()
