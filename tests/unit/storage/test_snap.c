/* Snapshot store, node identity, and st_storage_open over both. */
#include "test.h"
#include "unit/storage/helpers.h"
#include "util/trace.h"

__attribute__((constructor)) static void quiet(void)
{
    st_trace_set_level(ST_TRACE_ERROR + 1);
}

static void conf_of(struct raft_conf *c, int n)
{
    memset(c, 0, sizeof(*c));
    c->n = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        c->members[i].id = (raft_id)i + 1;
        c->members[i].role = RAFT_VOTER;
        c->members[i].context_len = (uint16_t)snprintf(
            c->members[i].context, RAFT_MEMBER_CONTEXT_MAX, "10.0.0.%d:7000", i + 1);
    }
}

/* Writes a snapshot at (index, term) whose bytes are the payload generator's. */
static int write_snap(struct st_snap_store *s, raft_index index, raft_term term, size_t bytes)
{
    struct st_snap_writer *w;
    int rc = st_snap_write_begin(s, &w);
    if (rc != 0) return rc;
    uint8_t *data = malloc(bytes ? bytes : 1);
    h_fill(data, (uint32_t)bytes, index, term);
    for (size_t off = 0; off < bytes; off += 1000) {
        rc = st_snap_write(w, data + off, bytes - off < 1000 ? bytes - off : 1000);
        if (rc != 0) {
            st_snap_write_abort(w);
            free(data);
            return rc;
        }
    }
    free(data);
    struct raft_snapshot_meta m = {.index = index, .term = term};
    conf_of(&m.conf, 3);
    return st_snap_write_commit(w, &m, NULL);
}

static int read_snap_ok(struct st_snap_store *s, raft_index index, raft_index *got)
{
    struct st_snap_reader *r;
    struct st_snapshot_info info;
    int rc = st_snap_read_open(s, index, &r, &info);
    if (rc != 0) return rc;
    uint8_t *all = malloc(info.data_bytes + 1);
    uint64_t off = 0;
    for (;;) {
        size_t n = 0;
        rc = st_snap_read(r, all + off, 777, &n);
        if (rc != 0 || n == 0) break;
        off += n;
    }
    st_snap_read_close(r);
    if (rc == 0) {
        uint8_t *want = malloc(info.data_bytes + 1);
        h_fill(want, (uint32_t)info.data_bytes, info.meta.index, info.meta.term);
        if (off != info.data_bytes || memcmp(want, all, off) != 0) rc = ST_EINVAL;
        if (info.meta.conf.n != 3 || info.meta.conf.members[2].id != 3 ||
            strcmp(info.meta.conf.members[1].context, "10.0.0.2:7000") != 0)
            rc = ST_EINVAL;
        free(want);
    }
    free(all);
    *got = info.meta.index;
    return rc;
}

TEST(snapshot_roundtrip_and_rotation_keeps_newest_two)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    struct st_snap_store *s;
    ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
    struct st_snapshot_info info;
    ASSERT_EQ(st_snap_store_latest(s, &info), ST_ENOENT);
    ASSERT_EQ(write_snap(s, 100, 2, 5000), 0);
    ASSERT_EQ(write_snap(s, 200, 2, 7000), 0);
    ASSERT_EQ(write_snap(s, 300, 3, 0), 0);
    ASSERT_EQ(st_snap_store_latest(s, &info), 0);
    ASSERT_EQ(info.meta.index, 300);
    raft_index got = 0;
    ASSERT_EQ(read_snap_ok(s, 0, &got), 0);
    ASSERT_EQ(got, 300);
    ASSERT_EQ(read_snap_ok(s, 200, &got), 0);
    ASSERT_EQ(got, 200);
    ASSERT_EQ(read_snap_ok(s, 100, &got), ST_ENOENT); /* rotated away */
    char path[512];
    ASSERT_EQ(st_snap_data_path(s, 200, path, sizeof(path), &info), 0);
    ASSERT_STREQ(path, "/snap/0000000000000002-00000000000000c8/data");
    ASSERT_EQ(info.data_bytes, 7000);
    st_snap_store_destroy(s);
    /* durable across a power loss */
    st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
    ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
    ASSERT_EQ(st_snap_store_latest(s, &info), 0);
    ASSERT_EQ(info.meta.index, 300);
    ASSERT_EQ(read_snap_ok(s, 200, &got), 0);
    st_snap_store_destroy(s);
    st_fs_sim_destroy(sim);
}

TEST(a_snapshot_stored_again_at_the_same_index_and_term_keeps_the_first)
{
    /* A receiver that stored a leader's snapshot and lost power before
     * installing it is sent the same one again: it must take it (it was
     * refused with "already exists" forever: tests/wsim seed 1001625). */
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    struct st_snap_store *s;
    ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
    ASSERT_EQ(write_snap(s, 100, 2, 5000), 0);
    st_snap_store_destroy(s);
    st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
    ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
    ASSERT_EQ(write_snap(s, 100, 2, 5000), 0);
    struct st_snapshot_info info;
    ASSERT_EQ(st_snap_store_latest(s, &info), 0);
    ASSERT_EQ(info.meta.index, 100);
    ASSERT_EQ(info.data_bytes, 5000);
    raft_index got = 0;
    ASSERT_EQ(read_snap_ok(s, 100, &got), 0);
    ASSERT_EQ(got, 100);
    st_snap_store_destroy(s);
    st_fs_sim_destroy(sim);
}

TEST(aborted_and_interrupted_snapshots_leave_nothing)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    struct st_snap_store *s;
    ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
    ASSERT_EQ(write_snap(s, 10, 1, 100), 0);
    struct st_snap_writer *w;
    ASSERT_EQ(st_snap_write_begin(s, &w), 0);
    ASSERT_EQ(st_snap_write(w, "abc", 3), 0);
    st_snap_write_abort(w);
    /* a writer interrupted by a crash: its temp directory is removed at open */
    ASSERT_EQ(st_snap_write_begin(s, &w), 0);
    ASSERT_EQ(st_snap_write(w, "abc", 3), 0);
    st_snap_store_destroy(s);
    ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
    bool is_dir;
    ASSERT_EQ(fs->ops->stat(fs->self, "/snap/tmp-2", &is_dir), ST_ENOENT);
    struct st_snapshot_info info;
    ASSERT_EQ(st_snap_store_latest(s, &info), 0);
    ASSERT_EQ(info.meta.index, 10);
    free(w); /* the interrupted writer's memory (its process "died") */
    st_snap_store_destroy(s);
    st_fs_sim_destroy(sim);
}

TEST(power_loss_during_snapshot_commit_keeps_old_or_new_never_half)
{
    uint64_t points = 0;
    for (uint64_t k = 1;; k++) {
        struct st_fs_sim *sim;
        ASSERT_EQ(st_fs_sim_create(&sim), 0);
        const struct st_fs *fs = st_fs_sim_fs(sim);
        struct st_snap_store *s;
        ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
        ASSERT_EQ(write_snap(s, 10, 1, 3000), 0);
        uint64_t base = st_fs_sim_op_count(sim);
        st_fs_sim_crash_at(sim, base + k);
        int rc = write_snap(s, 20, 1, 3000);
        bool crashed = st_fs_sim_crashed(sim);
        st_snap_store_destroy(s);
        st_fs_sim_crash(sim, ST_FS_SIM_KEEP_TORN, 100);
        ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
        struct st_snapshot_info info;
        ASSERT_EQ(st_snap_store_latest(s, &info), 0);
        ASSERT_TRUE(info.meta.index == 10 || info.meta.index == 20);
        if (rc == 0) ASSERT_EQ(info.meta.index, 20);
        raft_index got;
        ASSERT_EQ(read_snap_ok(s, 0, &got), 0);
        ASSERT_EQ(st_snap_store_skipped(s), 0);
        st_snap_store_destroy(s);
        st_fs_sim_destroy(sim);
        points++;
        if (!crashed) break;
    }
    printf("snapshot commit crash points tested: %llu\n", (unsigned long long)points);
    ASSERT_TRUE(points > 8);
}

TEST(damaged_newest_snapshot_falls_back_with_a_warning)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    struct st_snap_store *s;
    ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
    ASSERT_EQ(write_snap(s, 100, 1, 4000), 0);
    ASSERT_EQ(write_snap(s, 200, 1, 4000), 0);
    st_snap_store_destroy(s);
    ASSERT_EQ(st_fs_sim_flip_bit(sim, "/snap/0000000000000001-00000000000000c8/data", 1234, 5), 0);
    ASSERT_EQ(st_snap_store_open(fs, "/snap", 0, &s, NULL), 0);
    struct st_snapshot_info info;
    ASSERT_EQ(st_snap_store_latest(s, &info), 0);
    ASSERT_EQ(info.meta.index, 100);
    ASSERT_EQ(st_snap_store_skipped(s), 1);
    /* the damaged one, read directly, reports corruption at its end */
    raft_index got;
    ASSERT_EQ(read_snap_ok(s, 200, &got), ST_ECORRUPT);
    st_snap_store_destroy(s);
    st_fs_sim_destroy(sim);
}

/* ------------------------------------------------------------- identity */

TEST(identity_is_created_then_checked_and_foreign_directories_refused)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    const struct st_fs *fs = st_fs_sim_fs(sim);
    char msg[400] = "";
    struct st_errbuf err = {msg, sizeof(msg)};
    ASSERT_EQ(st_identity_ensure(fs, "/d", 3, 0xabc, &err), 0);
    ASSERT_EQ(st_identity_ensure(fs, "/d", 3, 0xabc, &err), 0);
    uint64_t n, c;
    ASSERT_EQ(st_identity_read(fs, "/d", &n, &c, &err), 0);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(c, 0xabc);
    ASSERT_EQ(st_identity_ensure(fs, "/d", 4, 0xabc, &err), ST_EMISMATCH);
    ASSERT_TRUE(strstr(msg, "node 3") && strstr(msg, "not node 4"));
    ASSERT_EQ(st_identity_ensure(fs, "/d", 3, 0xabd, &err), ST_EMISMATCH);
    ASSERT_TRUE(strstr(msg, "cluster abc") != NULL);
    /* survives a power loss */
    st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
    ASSERT_EQ(st_identity_ensure(fs, "/d", 3, 0xabc, &err), 0);
    /* damaged meta */
    ASSERT_EQ(st_fs_sim_flip_bit(sim, "/d/meta", 20, 1), 0);
    ASSERT_EQ(st_identity_ensure(fs, "/d", 3, 0xabc, &err), ST_ECORRUPT);
    ASSERT_TRUE(strstr(msg, "/d/meta") != NULL);
    /* someone else's directory */
    int fd;
    ASSERT_EQ(fs->ops->mkdir(fs->self, "/other"), 0);
    ASSERT_EQ(fs->ops->open(fs->self, "/other/postgresql.conf", ST_FS_RDWR | ST_FS_CREATE, &fd), 0);
    fs->ops->close(fs->self, fd);
    ASSERT_EQ(st_identity_ensure(fs, "/other", 1, 1, &err), ST_EMISMATCH);
    ASSERT_TRUE(strstr(msg, "postgresql.conf") != NULL);
    /* an unreadable meta file */
    st_fs_sim_deny(sim, "/d/meta");
    ASSERT_EQ(st_identity_ensure(fs, "/d", 3, 0xabc, &err), ST_EPERM);
    ASSERT_TRUE(strstr(msg, "cannot open /d/meta: permission denied") != NULL);
    st_fs_sim_deny(sim, NULL);
    /* a meta file with a foreign magic */
    ASSERT_EQ(fs->ops->mkdir(fs->self, "/x"), 0);
    ASSERT_EQ(fs->ops->open(fs->self, "/x/meta", ST_FS_RDWR | ST_FS_CREATE, &fd), 0);
    ASSERT_EQ(fs->ops->pwrite(fs->self, fd, "hello world, not ours at all.....", 32, 0), 0);
    fs->ops->close(fs->self, fd);
    ASSERT_EQ(st_identity_ensure(fs, "/x", 1, 1, &err), ST_EMISMATCH);
    ASSERT_TRUE(strstr(msg, "not a stcache data directory") != NULL);
    st_fs_sim_destroy(sim);
}

/* ------------------------------------------------------- storage_open */

static void put_entries(struct st_log_store *log, raft_index lo, raft_index hi)
{
    uint8_t *buf;
    struct raft_entry *e = h_make(lo, hi, 1, 100, &buf);
    struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = hi - 1};
    struct st_log_batch b = {.entries = e, .n_entries = (size_t)(hi - lo), .hard_state = &hs};
    ASSERT_EQ(log->ops->append(log->self, &b), 0);
    ASSERT_EQ(log->ops->sync(log->self), 0);
    free(e);
    free(buf);
}

TEST(storage_open_restores_snapshot_log_and_hard_state)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    struct st_storage_config cfg = {.fs = st_fs_sim_fs(sim),
                                    .dir = "/data",
                                    .node_id = 1,
                                    .cluster_id = 7,
                                    .segment_bytes = 8192};
    struct st_storage *s;
    struct st_storage_state st;
    ASSERT_EQ(st_storage_open(&cfg, &s, &st, NULL), 0);
    ASSERT_FALSE(st.has_snapshot);
    ASSERT_EQ(st.log.n_entries, 0);
    st_storage_state_release(&st);
    put_entries(&s->log, 1, 301);
    ASSERT_EQ(write_snap(s->snaps, 150, 1, 2000), 0);
    ASSERT_EQ(write_snap(s->snaps, 250, 1, 2000), 0);
    /* keep trailing entries: compact below the older snapshot */
    ASSERT_EQ(s->log.ops->compact(s->log.self, 100, 1), 0);
    ASSERT_EQ(s->log.ops->sync(s->log.self), 0);
    st_storage_close(s);
    ASSERT_EQ(st_storage_open(&cfg, &s, &st, NULL), 0);
    ASSERT_TRUE(st.has_snapshot);
    ASSERT_EQ(st.snapshot.meta.index, 250);
    ASSERT_EQ(st.log.first_index, 251);
    ASSERT_EQ(st.log.last_index, 300);
    ASSERT_EQ(st.log.hard_state.commit, 300);
    for (size_t i = 0; i < st.log.n_entries; i++)
        ASSERT_TRUE(h_check(&st.log.entries[i], 251 + i, 1));
    st_storage_state_release(&st);
    st_storage_close(s);
    /* newest snapshot damaged: the WAL still covers 151..: fall back */
    ASSERT_EQ(st_fs_sim_flip_bit(sim, "/data/snap/0000000000000001-00000000000000fa/meta", 17, 2),
              0);
    ASSERT_EQ(st_storage_open(&cfg, &s, &st, NULL), 0);
    ASSERT_EQ(st.snapshot.meta.index, 150);
    ASSERT_EQ(st.log.first_index, 151);
    ASSERT_EQ(st.log.last_index, 300);
    st_storage_state_release(&st);
    /* now compact past the fallback: a damaged newest snapshot can no longer be covered */
    ASSERT_EQ(write_snap(s->snaps, 280, 1, 2000), 0);
    ASSERT_EQ(s->log.ops->compact(s->log.self, 270, 1), 0);
    ASSERT_EQ(s->log.ops->sync(s->log.self), 0);
    st_storage_close(s);
    ASSERT_EQ(st_fs_sim_flip_bit(sim, "/data/snap/0000000000000001-0000000000000118/data", 5, 2),
              0);
    char msg[500] = "";
    struct st_errbuf err = {msg, sizeof(msg)};
    ASSERT_EQ(st_storage_open(&cfg, &s, &st, &err), ST_ECORRUPT);
    ASSERT_TRUE(strstr(msg, "newest snapshot is damaged") != NULL);
    /* another node's directory */
    cfg.node_id = 2;
    ASSERT_EQ(st_storage_open(&cfg, &s, &st, &err), ST_EMISMATCH);
    st_fs_sim_destroy(sim);
}

/* A leader's snapshot stored past the WAL's end, and the process gone
 * before the WAL batch that marks it: the next open must let the log go on
 * after the snapshot. It resumed at the WAL's old end instead, refused the
 * entries after the snapshot with EINVAL, and the node stopped at every
 * restart (wsim seed 1498 of membership_clock_c). */
TEST(storage_open_marks_a_snapshot_the_wal_does_not_know)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    struct st_storage_config cfg = {.fs = st_fs_sim_fs(sim),
                                    .dir = "/data",
                                    .node_id = 1,
                                    .cluster_id = 7,
                                    .segment_bytes = 8192};
    struct st_storage *s;
    struct st_storage_state st;
    ASSERT_EQ(st_storage_open(&cfg, &s, &st, NULL), 0);
    st_storage_state_release(&st);
    put_entries(&s->log, 1, 11);
    ASSERT_EQ(write_snap(s->snaps, 690, 3, 1000), 0);
    st_storage_close(s);
    ASSERT_EQ(st_storage_open(&cfg, &s, &st, NULL), 0);
    ASSERT_TRUE(st.has_snapshot);
    ASSERT_EQ(st.snapshot.meta.index, 690);
    ASSERT_EQ(st.log.first_index, 691);
    ASSERT_EQ(st.log.last_index, 690);
    st_storage_state_release(&st);
    put_entries(&s->log, 691, 701); /* asserts the append and sync succeed */
    st_storage_close(s);
    ASSERT_EQ(st_storage_open(&cfg, &s, &st, NULL), 0);
    ASSERT_EQ(st.log.first_index, 691);
    ASSERT_EQ(st.log.last_index, 700);
    ASSERT_EQ(st.log.prev_term, 3);
    for (size_t i = 0; i < st.log.n_entries; i++)
        ASSERT_TRUE(h_check(&st.log.entries[i], 691 + i, 1));
    st_storage_state_release(&st);
    st_storage_close(s);
    st_fs_sim_destroy(sim);
}

TEST_MAIN()
