/* One process per data directory (st_dir_lock_acquire): the lock is taken on
 * DATA/LOCK, a second holder is refused with a message naming the directory
 * and the holder's PID, the directory is created with its missing parents
 * (mode 0700), and a locked directory still opens as a data directory. */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "test.h"
#include "unit/storage/helpers.h"
#include "util/trace.h"

__attribute__((constructor)) static void quiet(void)
{
    st_trace_set_level(ST_TRACE_ERROR + 1);
}

static bool contains(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

TEST(second_holder_in_the_same_process_is_refused_naming_dir_and_pid)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    struct st_dir_lock a, b;
    char msg[300] = "";
    struct st_errbuf eb = {msg, sizeof msg};
    ASSERT_EQ(st_dir_lock_acquire(fs, "/d1", &a, &eb), 0);
    ASSERT_EQ(st_dir_lock_acquire(fs, "/d1", &b, &eb), ST_EBUSY);
    ASSERT_EQ(b.fd, -1);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    ASSERT_TRUE(contains(msg, "/d1"));
    ASSERT_TRUE(contains(msg, pid));
    /* another directory is another lock (several nodes in one test process) */
    ASSERT_EQ(st_dir_lock_acquire(fs, "/d2", &b, NULL), 0);
    st_dir_lock_release(&b);
    /* released: the next holder gets it */
    st_dir_lock_release(&a);
    st_dir_lock_release(&a); /* idempotent */
    ASSERT_EQ(st_dir_lock_acquire(fs, "/d1", &b, NULL), 0);
    st_dir_lock_release(&b);
    st_fs_sim_destroy(sim);
}

TEST(missing_parents_are_created)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    struct st_dir_lock l;
    ASSERT_EQ(st_dir_lock_acquire(fs, "/a/b/c/", &l, NULL), 0);
    bool is_dir = false;
    ASSERT_EQ(fs->ops->stat(fs->self, "/a/b/c", &is_dir), 0);
    ASSERT_TRUE(is_dir);
    ASSERT_EQ(fs->ops->stat(fs->self, "/a/b/c/LOCK", &is_dir), 0);
    ASSERT_FALSE(is_dir);
    /* the created directories are durable: they survive a power loss */
    st_dir_lock_release(&l);
    st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
    ASSERT_EQ(fs->ops->stat(fs->self, "/a/b/c", &is_dir), 0);
    ASSERT_TRUE(is_dir);
    st_fs_sim_destroy(sim);
}

/* The LOCK file is not a foreign file: a locked directory initialises and
 * reopens as a data directory. */
TEST(locked_directory_opens_as_storage)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    struct st_dir_lock l;
    ASSERT_EQ(st_dir_lock_acquire(fs, "/data", &l, NULL), 0);
    struct st_storage_config sc = {.fs = fs, .dir = "/data", .node_id = 1, .cluster_id = 7};
    struct st_storage *s;
    struct st_storage_state st;
    ASSERT_EQ(st_storage_open(&sc, &s, &st, NULL), 0);
    st_storage_state_release(&st);
    st_storage_close(s);
    ASSERT_EQ(st_storage_open(&sc, &s, &st, NULL), 0);
    st_storage_state_release(&st);
    st_storage_close(s);
    st_dir_lock_release(&l);
    st_fs_sim_destroy(sim);
}

/* The real one: flock, across processes; mkdir -p with mode 0700; the PID
 * is written into the lock file. */
TEST(posix_lock_across_processes)
{
    char base[600], dir[700];
    h_tmpdir(base, sizeof base, "dirlock");
    snprintf(dir, sizeof dir, "%s/x/y/data", base);
    struct st_dir_lock l;
    ASSERT_EQ(st_dir_lock_acquire(NULL, dir, &l, NULL), 0);
    struct stat sb;
    ASSERT_EQ(stat(dir, &sb), 0);
    ASSERT_EQ(sb.st_mode & 0777, 0700u);
    char p[800];
    snprintf(p, sizeof p, "%s/x", base);
    ASSERT_EQ(stat(p, &sb), 0);
    ASSERT_EQ(sb.st_mode & 0777, 0700u);
    snprintf(p, sizeof p, "%s/LOCK", dir);
    FILE *f = fopen(p, "r");
    ASSERT_TRUE(f != NULL);
    char line[32] = "";
    ASSERT_TRUE(fgets(line, sizeof line, f) != NULL);
    fclose(f);
    long pid = strtol(line, NULL, 10);
    ASSERT_EQ(pid, (long)getpid());
    /* in this process, a second open of the file is a second holder */
    struct st_dir_lock l2;
    ASSERT_EQ(st_dir_lock_acquire(NULL, dir, &l2, NULL), ST_EBUSY);
    /* another process is refused, and told who holds it */
    pid_t child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        char msg[300] = "";
        struct st_errbuf eb = {msg, sizeof msg};
        struct st_dir_lock c;
        int rc = st_dir_lock_acquire(NULL, dir, &c, &eb);
        char want[32];
        snprintf(want, sizeof want, "pid %ld", (long)getppid());
        _exit(rc == ST_EBUSY && strstr(msg, want) && strstr(msg, dir) ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    /* released (or its holder gone): another process takes it */
    st_dir_lock_release(&l);
    child = fork();
    ASSERT_TRUE(child >= 0);
    if (child == 0) {
        struct st_dir_lock c;
        _exit(st_dir_lock_acquire(NULL, dir, &c, NULL) == 0 ? 0 : 1);
    }
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    h_rmrf(base);
}

TEST_MAIN()
