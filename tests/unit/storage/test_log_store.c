/* The log store contract, one test body run against every implementation:
 * the in-memory store, the WAL on the simulated fs (tiny segments, so every
 * test crosses segment boundaries) and the WAL on the real fs. */
#include "test.h"
#include "unit/storage/helpers.h"

enum { K_MEM = 0, K_WAL_SIM = 1, K_WAL_REAL = 2 };

struct fx {
    int kind;
    struct st_fs_sim *sim;
    char dir[512];
    struct st_log_store s;
};

static int fx_wal_open(struct fx *f, struct st_errbuf *err)
{
    struct st_wal_config cfg = {
        .fs = f->sim ? st_fs_sim_fs(f->sim) : NULL,
        .dir = f->dir,
        .segment_bytes = 8192,
    };
    return st_wal_open(&cfg, &f->s, err);
}

static void fx_open(struct fx *f, int kind)
{
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    if (kind == K_MEM) {
        ASSERT_EQ(st_mem_log_create(&f->s), 0);
        return;
    }
    if (kind == K_WAL_SIM) {
        ASSERT_EQ(st_fs_sim_create(&f->sim), 0);
        snprintf(f->dir, sizeof(f->dir), "/wal");
    } else {
        h_tmpdir(f->dir, sizeof(f->dir), "logstore");
    }
    ASSERT_EQ(fx_wal_open(f, NULL), 0);
    struct st_log_state st;
    ASSERT_EQ(f->s.ops->load(f->s.self, 0, &st, NULL), 0);
    ASSERT_EQ(st.n_entries, 0);
    st_log_state_release(&st);
}

/* Closes and reopens (durable stores) and loads what follows `after`. */
static int fx_reopen(struct fx *f, raft_index after, struct st_log_state *st)
{
    if (f->kind != K_MEM) {
        f->s.ops->close(f->s.self);
        int rc = fx_wal_open(f, NULL);
        if (rc != 0) {
            f->s.ops = NULL;
            return rc;
        }
    }
    return f->s.ops->load(f->s.self, after, st, NULL);
}

static void fx_close(struct fx *f)
{
    if (f->s.ops) f->s.ops->close(f->s.self);
    st_fs_sim_destroy(f->sim);
    if (f->kind == K_WAL_REAL) h_rmrf(f->dir);
}

static int append_range(struct fx *f, raft_index lo, raft_index hi, raft_term term,
                        uint32_t max_len, const struct raft_hard_state *hs)
{
    uint8_t *buf;
    struct raft_entry *e = h_make(lo, hi, term, max_len, &buf);
    struct st_log_batch b = {.entries = e, .n_entries = (size_t)(hi - lo), .hard_state = hs};
    int rc = f->s.ops->append(f->s.self, &b);
    if (rc == 0) rc = f->s.ops->sync(f->s.self);
    free(e);
    free(buf);
    return rc;
}

/* Reads [lo, hi) and checks every entry against the generator: term_of(i). */
static void check_read(struct fx *f, raft_index lo, raft_index hi, raft_term (*term_of)(raft_index))
{
    size_t n = (size_t)(hi - lo);
    struct raft_entry *out = calloc(n ? n : 1, sizeof(*out));
    ASSERT_EQ(f->s.ops->read(f->s.self, lo, hi, out), 0);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (!h_check(&out[i], lo + i, term_of(lo + i))) bad++;
        raft_buf_unref(out[i].buf);
    }
    free(out);
    ASSERT_EQ(bad, 0);
}

static void check_state(const struct st_log_state *st, raft_term (*term_of)(raft_index))
{
    ASSERT_EQ(st->n_entries, st->last_index + 1 - st->first_index);
    for (size_t i = 0; i < st->n_entries; i++)
        ASSERT_TRUE(h_check(&st->entries[i], st->first_index + i, term_of(st->first_index + i)));
}

static raft_term term1(raft_index i)
{
    return 1;
}

/* ------------------------------------------------------------ bodies */

static void body_append_read_reopen(int kind)
{
    struct fx f;
    fx_open(&f, kind);
    struct raft_hard_state hs = {.term = 1, .vote = 2, .commit = 0};
    raft_index next = 1;
    for (int b = 0; b < 40; b++) {
        size_t n = (size_t)(b % 7) + 1;
        hs.commit = next - 1;
        ASSERT_EQ(append_range(&f, next, next + n, 1, 600, &hs), 0);
        next += n;
    }
    raft_index first, last;
    f.s.ops->bounds(f.s.self, &first, &last);
    ASSERT_EQ(first, 1);
    ASSERT_EQ(last, next - 1);
    check_read(&f, 1, next, term1);
    check_read(&f, 17, 33, term1);
    struct st_log_state st;
    ASSERT_EQ(fx_reopen(&f, 0, &st), 0);
    ASSERT_EQ(st.first_index, 1);
    ASSERT_EQ(st.last_index, next - 1);
    ASSERT_EQ(st.hard_state.term, 1);
    ASSERT_EQ(st.hard_state.vote, 2);
    ASSERT_EQ(st.hard_state.commit, hs.commit);
    check_state(&st, term1);
    st_log_state_release(&st);
    /* the reopened store keeps appending where it stopped */
    ASSERT_EQ(append_range(&f, next, next + 5, 1, 600, NULL), 0);
    check_read(&f, 1, next + 5, term1);
    fx_close(&f);
}

static raft_term term_trunc(raft_index i)
{
    return i <= 5 ? 1 : 2;
}

static void body_conflicting_suffix_truncated(int kind)
{
    struct fx f;
    fx_open(&f, kind);
    ASSERT_EQ(append_range(&f, 1, 11, 1, 300, NULL), 0);
    /* a new leader overwrites 6..8 (Raft figure 3.1: delete the conflict and all that follow) */
    ASSERT_EQ(append_range(&f, 6, 9, 2, 300, NULL), 0);
    raft_index first, last;
    f.s.ops->bounds(f.s.self, &first, &last);
    ASSERT_EQ(last, 8);
    check_read(&f, 1, 9, term_trunc);
    struct raft_entry e[1];
    ASSERT_EQ(f.s.ops->read(f.s.self, 9, 10, e), ST_EUNAVAILABLE);
    struct st_log_state st;
    ASSERT_EQ(fx_reopen(&f, 0, &st), 0);
    ASSERT_EQ(st.last_index, 8);
    check_state(&st, term_trunc);
    st_log_state_release(&st);
    /* explicit truncation without entries */
    struct st_log_batch b = {.truncate_from = 4};
    ASSERT_EQ(f.s.ops->append(f.s.self, &b), 0);
    ASSERT_EQ(f.s.ops->sync(f.s.self), 0);
    ASSERT_EQ(fx_reopen(&f, 0, &st), 0);
    ASSERT_EQ(st.last_index, 3);
    check_state(&st, term_trunc);
    st_log_state_release(&st);
    fx_close(&f);
}

static void body_compaction_drops_prefix(int kind)
{
    struct fx f;
    fx_open(&f, kind);
    for (raft_index i = 1; i <= 1000; i += 50)
        ASSERT_EQ(append_range(&f, i, i + 50, 1, 200, NULL), 0);
    uint64_t segs_before = 0, segs_after = 0;
    struct st_wal_stats ws;
    if (kind != K_MEM) {
        st_wal_stats_get(&f.s, &ws);
        segs_before = ws.segments;
    }
    ASSERT_EQ(f.s.ops->compact(f.s.self, 500, 1), 0);
    ASSERT_EQ(f.s.ops->sync(f.s.self), 0);
    if (kind != K_MEM) {
        st_wal_stats_get(&f.s, &ws);
        segs_after = ws.segments;
        ASSERT_TRUE(segs_before > 5);
        ASSERT_TRUE(segs_after < segs_before - 2); /* whole segments went away */
    }
    raft_index first, last;
    f.s.ops->bounds(f.s.self, &first, &last);
    ASSERT_EQ(first, 501);
    ASSERT_EQ(last, 1000);
    struct raft_entry e[2];
    ASSERT_EQ(f.s.ops->read(f.s.self, 499, 501, e), ST_ECOMPACTED);
    check_read(&f, 501, 1001, term1);
    struct st_log_state st;
    ASSERT_EQ(fx_reopen(&f, 500, &st), 0);
    ASSERT_EQ(st.first_index, 501);
    ASSERT_EQ(st.last_index, 1000);
    ASSERT_EQ(st.prev_term, 1);
    check_state(&st, term1);
    st_log_state_release(&st);
    /* a snapshot older than the log's start cannot be completed from it */
    ASSERT_EQ(fx_reopen(&f, 100, &st), ST_EUNAVAILABLE);
    fx_close(&f);
}

static raft_term term_snap(raft_index i)
{
    return i <= 50 ? 1 : 3;
}

static void body_snapshot_past_log_end(int kind)
{
    struct fx f;
    fx_open(&f, kind);
    ASSERT_EQ(append_range(&f, 1, 11, 1, 100, NULL), 0);
    /* an installed snapshot beyond the log: the log restarts after it */
    ASSERT_EQ(f.s.ops->compact(f.s.self, 50, 3), 0);
    raft_index first, last;
    f.s.ops->bounds(f.s.self, &first, &last);
    ASSERT_EQ(first, 51);
    ASSERT_EQ(last, 50);
    ASSERT_EQ(append_range(&f, 51, 61, 3, 100, NULL), 0);
    struct st_log_state st;
    ASSERT_EQ(fx_reopen(&f, 50, &st), 0);
    ASSERT_EQ(st.first_index, 51);
    ASSERT_EQ(st.last_index, 60);
    ASSERT_EQ(st.prev_term, 3);
    check_state(&st, term_snap);
    st_log_state_release(&st);
    fx_close(&f);
}

static void body_bad_batches_refused(int kind)
{
    struct fx f;
    fx_open(&f, kind);
    ASSERT_EQ(append_range(&f, 1, 6, 1, 100, NULL), 0);
    /* a gap */
    ASSERT_EQ(append_range(&f, 8, 9, 1, 100, NULL), ST_EINVAL);
    /* non-contiguous batch */
    uint8_t *buf;
    struct raft_entry *e = h_make(6, 9, 1, 10, &buf);
    e[2].index = 10;
    struct st_log_batch b = {.entries = e, .n_entries = 3};
    ASSERT_EQ(f.s.ops->append(f.s.self, &b), ST_EINVAL);
    free(e);
    free(buf);
    /* truncating below the compacted prefix */
    ASSERT_EQ(f.s.ops->compact(f.s.self, 3, 1), 0);
    struct st_log_batch t = {.truncate_from = 2};
    ASSERT_EQ(f.s.ops->append(f.s.self, &t), ST_ECOMPACTED);
    raft_index first, last;
    f.s.ops->bounds(f.s.self, &first, &last);
    ASSERT_EQ(first, 4);
    ASSERT_EQ(last, 5);
    ASSERT_EQ(f.s.ops->sync(f.s.self), 0);
    struct st_log_state st;
    ASSERT_EQ(fx_reopen(&f, 3, &st), 0);
    ASSERT_EQ(st.first_index, 4);
    ASSERT_EQ(st.last_index, 5);
    check_state(&st, term1);
    st_log_state_release(&st);
    fx_close(&f);
}

static void body_large_entries_span_segments(int kind)
{
    struct fx f;
    fx_open(&f, kind);
    /* entries of up to 6000 bytes in 8 KiB segments: one per segment, often */
    for (raft_index i = 1; i <= 30; i += 3)
        ASSERT_EQ(append_range(&f, i, i + 3, 1, 6000, NULL), 0);
    check_read(&f, 1, 31, term1);
    struct st_log_state st;
    ASSERT_EQ(fx_reopen(&f, 0, &st), 0);
    ASSERT_EQ(st.last_index, 30);
    check_state(&st, term1);
    st_log_state_release(&st);
    fx_close(&f);
}

static raft_term term_install(raft_index i)
{
    return i <= 10 ? 1 : 2;
}

/* What the node does when a leader's snapshot arrives (raft.h: the core
 * discarded its whole log): one batch with the snapshot mark, a truncation
 * right after it, and the new entries. */
static void body_snapshot_install_inside_log(int kind)
{
    struct fx f;
    fx_open(&f, kind);
    ASSERT_EQ(append_range(&f, 1, 21, 1, 200, NULL), 0);
    uint8_t *buf;
    struct raft_entry *e = h_make(11, 16, 2, 200, &buf);
    struct st_log_batch b = {.snapshot_index = 10,
                             .snapshot_term = 1,
                             .truncate_from = 11,
                             .entries = e,
                             .n_entries = 5};
    ASSERT_EQ(f.s.ops->append(f.s.self, &b), 0);
    ASSERT_EQ(f.s.ops->sync(f.s.self), 0);
    free(e);
    free(buf);
    raft_index first, last;
    f.s.ops->bounds(f.s.self, &first, &last);
    ASSERT_EQ(first, 11);
    ASSERT_EQ(last, 15);
    check_read(&f, 11, 16, term_install);
    struct st_log_state st;
    ASSERT_EQ(fx_reopen(&f, 10, &st), 0);
    ASSERT_EQ(st.first_index, 11);
    ASSERT_EQ(st.last_index, 15);
    ASSERT_EQ(st.prev_term, 1);
    check_state(&st, term_install);
    st_log_state_release(&st);
    /* the same with a snapshot beyond the log's end: truncate_from is moot */
    struct st_log_batch b2 = {.snapshot_index = 40, .snapshot_term = 3, .truncate_from = 41};
    ASSERT_EQ(f.s.ops->append(f.s.self, &b2), 0);
    ASSERT_EQ(f.s.ops->sync(f.s.self), 0);
    ASSERT_EQ(fx_reopen(&f, 40, &st), 0);
    ASSERT_EQ(st.first_index, 41);
    ASSERT_EQ(st.last_index, 40);
    ASSERT_EQ(st.prev_term, 3);
    st_log_state_release(&st);
    fx_close(&f);
}

#define BOTH(name)                                                                                 \
    TEST(name##_mem)                                                                               \
    {                                                                                              \
        body_##name(K_MEM);                                                                        \
    }                                                                                              \
    TEST(name##_wal_sim)                                                                           \
    {                                                                                              \
        body_##name(K_WAL_SIM);                                                                    \
    }                                                                                              \
    TEST(name##_wal_real)                                                                          \
    {                                                                                              \
        body_##name(K_WAL_REAL);                                                                   \
    }

BOTH(append_read_reopen)
BOTH(conflicting_suffix_truncated)
BOTH(compaction_drops_prefix)
BOTH(snapshot_past_log_end)
BOTH(bad_batches_refused)
BOTH(large_entries_span_segments)
BOTH(snapshot_install_inside_log)

TEST_MAIN()
