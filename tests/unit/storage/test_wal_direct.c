/* Direct I/O in the WAL (st_wal_config.direct_io) on the real file system:
 * appends of every length go around the page cache as whole blocks (the
 * partial last one kept in memory and rewritten), batches larger than the
 * bounce buffer go in pieces, reads see every entry while the WAL is open and
 * after a reopen with or without direct I/O, and where direct I/O is refused
 * (at open, or a write's alignment) the WAL writes buffered instead. Power loss at every write with
 * direct I/O: test_crash (simulated fs, which checks alignment as the kernel
 * does); kills: test_kill. */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "test.h"
#include "unit/storage/helpers.h"
#include "util/assert.h"
#include "util/trace.h"

#define SEG (4u << 20)

__attribute__((constructor)) static void quiet(void)
{
    st_trace_set_level(ST_TRACE_ERROR + 1);
}

static void open_wal(const char *dir, int direct, struct st_log_store *s, struct st_log_state *st)
{
    struct st_wal_config c = {
        .dir = dir, .segment_bytes = SEG, .spare_segments = 1, .direct_io = direct};
    ASSERT_EQ(st_wal_open(&c, s, NULL), 0);
    ASSERT_EQ(s->ops->load(s->self, 0, st, NULL), 0);
}

/* Entries [lo, hi) of up to max_len bytes (lengths vary: no append ends on a
 * block boundary by design), appended and synced as one batch. */
static void put(struct st_log_store *s, raft_index lo, raft_index hi, uint32_t max_len)
{
    uint8_t *buf;
    struct raft_entry *e = h_make(lo, hi, 1, max_len, &buf);
    struct st_log_batch b = {.entries = e, .n_entries = (size_t)(hi - lo)};
    ASSERT_EQ(s->ops->append(s->self, &b), 0);
    ASSERT_EQ(s->ops->sync(s->self), 0);
    free(e);
    free(buf);
}

static void stats(struct st_log_store *s, struct st_wal_stats *ws)
{
    st_wal_stats_get(s, ws);
}

/* Whether O_DIRECT opens in dir (tmpfs: no). */
static bool fs_has_direct_io(const char *dir)
{
    char p[700];
    snprintf(p, sizeof p, "%s/probe", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_DIRECT, 0644);
    if (fd >= 0) close(fd);
    unlink(p);
    return fd >= 0;
}

/* Pages of the file resident in the page cache, past its first block (the
 * segment header is written through the cache). */
static size_t resident_pages(const char *dir, const char *name)
{
    char p[700];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_RDONLY);
    ASSERT_TRUE(fd >= 0);
    struct stat sb;
    ASSERT_EQ(fstat(fd, &sb), 0);
    size_t len = (size_t)sb.st_size;
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    ASSERT_TRUE(m != MAP_FAILED);
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = (len + pg - 1) / pg;
    unsigned char *vec = malloc(n);
    ASSERT_EQ(mincore(m, len, vec), 0);
    size_t res = 0;
    for (size_t i = 1; i < n; i++)
        res += vec[i] & 1;
    free(vec);
    munmap(m, len);
    return res;
}

static void check_all(const struct st_log_state *st, raft_index last)
{
    ASSERT_EQ(st->first_index, 1);
    ASSERT_EQ(st->last_index, last);
    for (size_t i = 0; i < st->n_entries; i++)
        ASSERT_TRUE(h_check(&st->entries[i], i + 1, 1));
}

TEST(direct_appends_skip_the_page_cache_and_every_entry_reads_back)
{
    char dir[512];
    h_tmpdir(dir, sizeof dir, "direct");
    if (!fs_has_direct_io(dir)) {
        printf("no O_DIRECT under %s: covered by the fallback test only\n", dir);
        h_rmrf(dir);
        return;
    }
    struct st_log_store s;
    struct st_log_state st;
    open_wal(dir, 1, &s, &st);
    st_log_state_release(&st);
    /* many small batches: each sync rewrites the partial last block */
    raft_index next = 1;
    for (int i = 0; i < 300; i++) {
        raft_index n = 1 + (raft_index)(i % 5);
        put(&s, next, next + n, 1 + (uint32_t)(i * 37 % 900));
        next += n;
    }
    struct st_wal_stats ws;
    stats(&s, &ws);
    ASSERT_TRUE(ws.direct_io);
    ASSERT_EQ(ws.direct_writes, 300);
    ASSERT_EQ(ws.segments, 1);
    /* written around the page cache: none of it is resident (tmpfs, which
     * accepts O_DIRECT since Linux 6.6, has no other place for the data) */
    struct statfs sf;
    ASSERT_EQ(statfs(dir, &sf), 0);
    if (sf.f_type != 0x01021994 /* TMPFS_MAGIC */)
        ASSERT_EQ(resident_pages(dir, "0000000000000001.wal"), 0);
    /* reads while open (through the cache) see what direct writes put there */
    struct raft_entry out[40];
    ASSERT_EQ(s.ops->read(s.self, 1, 41, out), 0);
    for (int i = 0; i < 40; i++)
        ASSERT_TRUE(h_check(&out[i], (raft_index)i + 1, 1));
    for (int i = 0; i < 40; i++)
        raft_buf_unref(out[i].buf);
    /* then more appends into blocks just read into the cache */
    put(&s, next, next + 3, 700);
    next += 3;
    ASSERT_EQ(s.ops->read(s.self, next - 3, next, out), 0);
    for (int i = 0; i < 3; i++) {
        ASSERT_TRUE(h_check(&out[i], next - 3 + (raft_index)i, 1));
        raft_buf_unref(out[i].buf);
    }
    /* a batch larger than the 256 KiB bounce buffer goes in pieces */
    put(&s, next, next + 400, 6000); /* ~1.2 MiB */
    next += 400;
    /* and rolls: segments made from direct-written spares */
    uint64_t before = ws.segments;
    while (stats(&s, &ws), ws.segments < before + 2) {
        put(&s, next, next + 50, 4000);
        next += 50;
    }
    ASSERT_TRUE(ws.direct_io);
    ASSERT_TRUE(ws.spares_used >= 1);
    s.ops->close(s.self);
    /* reopen with and without direct I/O: every entry is there, and appends
     * after a reopen continue the partial block found on disk */
    for (int direct = 1; direct >= 0; direct--) {
        open_wal(dir, direct, &s, &st);
        check_all(&st, next - 1);
        st_log_state_release(&st);
        put(&s, next, next + 2, 333);
        next += 2;
        s.ops->close(s.self);
    }
    open_wal(dir, 1, &s, &st);
    check_all(&st, next - 1);
    st_log_state_release(&st);
    s.ops->close(s.self);
    h_rmrf(dir);
}

/* The same workload on the simulated fs, whose direct I/O is refused at open
 * (align 0: a file system without it) or at the first write (align 8192: a
 * disk with larger blocks than the WAL's): buffered writes from then on,
 * nothing lost, and a crash after the switch keeps every synced entry. */
TEST(where_direct_io_is_refused_the_wal_writes_buffered_and_loses_nothing)
{
    uint32_t aligns[] = {0, 8192, ST_FS_DIRECT_ALIGN};
    for (size_t a = 0; a < ST_ARRAY_LEN(aligns); a++) {
        struct st_fs_sim *sim;
        ASSERT_EQ(st_fs_sim_create(&sim), 0);
        st_fs_sim_set_direct_align(sim, aligns[a]);
        struct st_wal_config c = {
            .fs = st_fs_sim_fs(sim), .dir = "/wal", .segment_bytes = 64 * 1024, .direct_io = 1};
        struct st_log_store s;
        struct st_log_state st;
        ASSERT_EQ(st_wal_open(&c, &s, NULL), 0);
        ASSERT_EQ(s.ops->load(s.self, 0, &st, NULL), 0);
        st_log_state_release(&st);
        raft_index next = 1;
        struct st_wal_stats ws;
        uint64_t puts = 0;
        for (stats(&s, &ws); ws.segments < 3; stats(&s, &ws)) { /* rolls */
            put(&s, next, next + 4, 1 + (uint32_t)(puts * 53 % 2000));
            next += 4;
            puts++;
        }
        bool direct = aligns[a] == ST_FS_DIRECT_ALIGN;
        ASSERT_EQ(ws.direct_io, direct);
        /* a roll writes the last bit of a segment too */
        if (direct)
            ASSERT_TRUE(ws.direct_writes >= puts);
        else
            ASSERT_EQ(ws.direct_writes, 0);
        /* unsynced appends, then power loss */
        uint8_t *buf;
        struct raft_entry *e = h_make(next, next + 3, 1, 100, &buf);
        struct st_log_batch b = {.entries = e, .n_entries = 3};
        ASSERT_EQ(s.ops->append(s.self, &b), 0);
        free(e);
        free(buf);
        st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
        s.ops->close(s.self);
        ASSERT_EQ(st_wal_open(&c, &s, NULL), 0);
        ASSERT_EQ(s.ops->load(s.self, 0, &st, NULL), 0);
        check_all(&st, next - 1);
        st_log_state_release(&st);
        s.ops->close(s.self);
        st_fs_sim_destroy(sim);
    }
}

TEST_MAIN()
