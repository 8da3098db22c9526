/* Spare segments (st_wal_config.spare_segments) on the real file system: a
 * helper thread prepares the next segment full of zeros; the roll renames it
 * in. Rolls use them, recovery reads them like fallocated segments, a spare
 * left by a previous run is removed at open and never read, and the blocks
 * of a spare-made segment are written (no "unwritten" extents, which are
 * what make every fdatasync of a fallocated segment write the inode).
 * Kills around the rename: test_kill. */
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "test.h"
#include "unit/storage/helpers.h"
#include "util/trace.h"

#define SEG (64u * 1024u)

__attribute__((constructor)) static void quiet(void)
{
    st_trace_set_level(ST_TRACE_ERROR + 1);
}

static void open_wal(const char *dir, int spare, struct st_log_store *s, struct st_log_state *st)
{
    struct st_wal_config c = {.dir = dir, .segment_bytes = SEG, .spare_segments = spare};
    ASSERT_EQ(st_wal_open(&c, s, NULL), 0);
    ASSERT_EQ(s->ops->load(s->self, 0, st, NULL), 0);
}

static void put(struct st_log_store *s, raft_index lo, raft_index hi)
{
    uint8_t *buf;
    struct raft_entry *e = h_make(lo, hi, 1, 3000, &buf);
    struct st_log_batch b = {.entries = e, .n_entries = (size_t)(hi - lo)};
    ASSERT_EQ(s->ops->append(s->self, &b), 0);
    ASSERT_EQ(s->ops->sync(s->self), 0);
    free(e);
    free(buf);
}

static uint64_t segments(struct st_log_store *s)
{
    struct st_wal_stats ws;
    st_wal_stats_get(s, &ws);
    return ws.segments;
}

static bool exists(const char *dir, const char *name)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* 1: some extent of the file is unwritten, 0: none, -1: FIEMAP unsupported. */
static int has_unwritten(const char *dir, const char *name)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_RDONLY);
    if (fd < 0) return -1;
    enum { N = 64 };
    struct fiemap *fm = calloc(1, sizeof *fm + N * sizeof(struct fiemap_extent));
    fm->fm_length = ~0ULL;
    fm->fm_flags = FIEMAP_FLAG_SYNC;
    fm->fm_extent_count = N;
    int rc = ioctl(fd, FS_IOC_FIEMAP, fm);
    close(fd);
    int out = -1;
    if (rc == 0 && fm->fm_mapped_extents > 0) {
        out = 0;
        for (unsigned i = 0; i < fm->fm_mapped_extents; i++)
            if (fm->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) out = 1;
    }
    free(fm);
    return out;
}

TEST(rolls_take_the_spares_and_recovery_reads_them_back)
{
    char dir[512];
    h_tmpdir(dir, sizeof dir, "spare");
    struct st_log_store s;
    struct st_log_state st;
    open_wal(dir, 1, &s, &st);
    st_log_state_release(&st);
    raft_index next = 1;
    for (int roll = 0; roll < 4; roll++) {
        ASSERT_EQ(st_wal_spare_wait(&s), 0);
        ASSERT_TRUE(exists(dir, "spare.wal.tmp"));
        uint64_t before = segments(&s);
        while (segments(&s) == before) {
            put(&s, next, next + 4);
            next += 4;
        }
    }
    struct st_wal_stats ws;
    st_wal_stats_get(&s, &ws);
    ASSERT_EQ(ws.spares_used, 5); /* the first segment, then every roll */
    ASSERT_EQ(ws.segments, 5);
    /* The current segment (5) came from a spare and is partly written;
     * a fallocated segment partly written keeps unwritten extents after
     * its end. Where the file system reports extents, only it has them. */
    char fdir[512];
    h_tmpdir(fdir, sizeof fdir, "spare-off");
    struct st_log_store f;
    open_wal(fdir, 0, &f, &st);
    st_log_state_release(&st);
    put(&f, 1, 5);
    int u_fallocated = has_unwritten(fdir, "0000000000000001.wal");
    int u_spare = has_unwritten(dir, "0000000000000005.wal");
    f.ops->close(f.self);
    h_rmrf(fdir);
    if (u_fallocated >= 0 && u_spare >= 0) {
        ASSERT_EQ(u_fallocated, 1);
        ASSERT_EQ(u_spare, 0);
    } else {
        printf("FIEMAP unsupported here: extent check skipped\n");
    }
    s.ops->close(s.self);
    ASSERT_FALSE(exists(dir, "spare.wal.tmp")); /* close removes an unused spare */
    /* Reopen, with and without spares: every entry is there. */
    for (int spare = 1; spare >= 0; spare--) {
        open_wal(dir, spare, &s, &st);
        ASSERT_EQ(st.first_index, 1);
        ASSERT_EQ(st.last_index, next - 1);
        for (size_t i = 0; i < st.n_entries; i++)
            ASSERT_TRUE(h_check(&st.entries[i], i + 1, 1));
        st_log_state_release(&st);
        s.ops->close(s.self);
    }
    h_rmrf(dir);
}

TEST(a_new_wal_starts_in_a_zero_filled_segment)
{
    char dir[512];
    h_tmpdir(dir, sizeof dir, "spare-first");
    struct st_log_store s;
    struct st_log_state st;
    open_wal(dir, 1, &s, &st);
    st_log_state_release(&st);
    struct st_wal_stats ws;
    st_wal_stats_get(&s, &ws);
    ASSERT_EQ(ws.segments, 1);
    ASSERT_EQ(ws.spares_used, 1);
    put(&s, 1, 5);
    int u = has_unwritten(dir, "0000000000000001.wal");
    if (u >= 0)
        ASSERT_EQ(u, 0); /* fallocated, its blocks past the appends would be unwritten */
    else
        printf("FIEMAP unsupported here: extent check skipped\n");
    s.ops->close(s.self);
    /* Reopening an existing WAL makes no new first segment. */
    open_wal(dir, 1, &s, &st);
    ASSERT_EQ(st.last_index, 4);
    for (size_t i = 0; i < st.n_entries; i++)
        ASSERT_TRUE(h_check(&st.entries[i], i + 1, 1));
    st_log_state_release(&st);
    st_wal_stats_get(&s, &ws);
    ASSERT_EQ(ws.spares_used, 0);
    ASSERT_EQ(ws.segments, 1);
    s.ops->close(s.self);
    h_rmrf(dir);
}

TEST(a_spare_left_by_a_previous_run_is_removed_at_open_never_read)
{
    char dir[512];
    h_tmpdir(dir, sizeof dir, "spare-left");
    struct st_log_store s;
    struct st_log_state st;
    open_wal(dir, 0, &s, &st);
    st_log_state_release(&st);
    put(&s, 1, 6);
    s.ops->close(s.self);
    /* A half-written spare of a crashed run: not zeros, not a segment. */
    char p[700];
    snprintf(p, sizeof p, "%s/spare.wal.tmp", dir);
    FILE *f = fopen(p, "w");
    ASSERT_TRUE(f != NULL);
    for (int i = 0; i < 5000; i++)
        fputc(0xa5, f);
    fclose(f);
    open_wal(dir, 1, &s, &st);
    ASSERT_EQ(st.last_index, 5);
    st_log_state_release(&st);
    /* The spare there now is a fresh one: zeros over the whole segment. */
    ASSERT_EQ(st_wal_spare_wait(&s), 0);
    int fd = open(p, O_RDONLY);
    ASSERT_TRUE(fd >= 0);
    static uint8_t b[SEG];
    ASSERT_EQ(read(fd, b, sizeof b), (ssize_t)SEG);
    close(fd);
    for (size_t i = 0; i < SEG; i++)
        ASSERT_EQ(b[i], 0);
    s.ops->close(s.self);
    /* Without spares the WAL removes a leftover too, and does not refuse the
     * directory as holding a foreign file. */
    f = fopen(p, "w");
    ASSERT_TRUE(f != NULL);
    fclose(f);
    open_wal(dir, 0, &s, &st);
    ASSERT_EQ(st.last_index, 5);
    st_log_state_release(&st);
    ASSERT_FALSE(exists(dir, "spare.wal.tmp"));
    ASSERT_EQ(st_wal_spare_wait(&s), ST_EUNAVAILABLE);
    s.ops->close(s.self);
    h_rmrf(dir);
}

TEST_MAIN()
