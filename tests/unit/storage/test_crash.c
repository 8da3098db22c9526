/* Power loss at every write and sync point of a scripted workload, through the
 * simulated fs (DESIGN §3.8). After each crash -- unsynced data lost, or kept
 * with the interrupted write torn at (nearly) every byte -- recovery must open
 * the WAL and give back every record that a sync acknowledged, with the right
 * bytes. After a bit flip in synced data, recovery must either do the same or
 * refuse to start; it must never return wrong data. */
#include <pthread.h>

#include "test.h"
#include "unit/storage/helpers.h"
#include "util/assert.h"
#include "util/rng.h"
#include "util/trace.h"

#define MAXI 4096
#define SEGMENT_BYTES 4096

struct model {
    raft_index first, last; /* entries [first, last] */
    raft_term term[MAXI];   /* term of each index in [first, last] */
    struct raft_hard_state hs;
    raft_index snap; /* newest snapshot mark issued */
};

struct run {
    struct model cur;    /* as appended */
    struct model acked;  /* as of the last successful sync */
    uint64_t seen[MAXI]; /* bitmask of terms index i had since the last ack */
    struct raft_hard_state hs_since[64];
    int n_hs_since;
    raft_index min_trunc; /* lowest truncation since the last ack (0: none) */
    int acks;
};

static void ack(struct run *r)
{
    r->acked = r->cur;
    memset(r->seen, 0, sizeof(r->seen));
    for (raft_index i = r->cur.first; i <= r->cur.last; i++)
        r->seen[i] = 1ull << r->cur.term[i];
    r->hs_since[0] = r->cur.hs;
    r->n_hs_since = 1;
    r->min_trunc = 0;
    r->acks++;
}

static int do_batch(struct st_log_store *s, struct run *r, const struct st_log_batch *b)
{
    /* A failed append (the power went out during it) may still have reached
     * the disk in part: the model takes it in as written-but-unacknowledged. */
    int rc = s->ops->append(s->self, b);
    if (rc == ST_EINVAL || rc == ST_ECOMPACTED || rc == ST_ETOOBIG)
        return rc; /* refused up front: nothing was written */
    struct model *m = &r->cur;
    if (b->snapshot_index > m->snap) {
        m->snap = b->snapshot_index;
        if (b->snapshot_index >= m->last) m->last = b->snapshot_index;
        if (m->first < b->snapshot_index + 1) m->first = b->snapshot_index + 1;
    }
    raft_index t = b->truncate_from;
    if (b->n_entries && b->entries[0].index <= m->last && (!t || b->entries[0].index < t))
        t = b->entries[0].index;
    if (t && t <= m->last) {
        m->last = t - 1;
        if (!r->min_trunc || t < r->min_trunc) r->min_trunc = t;
    }
    for (size_t i = 0; i < b->n_entries; i++) {
        raft_index idx = b->entries[i].index;
        m->term[idx] = b->entries[i].term;
        r->seen[idx] |= 1ull << b->entries[i].term;
        m->last = idx;
    }
    if (b->hard_state) {
        m->hs = *b->hard_state;
        if (r->n_hs_since < 64) r->hs_since[r->n_hs_since++] = *b->hard_state;
    }
    return rc;
}

/* Direct I/O on or off for the WAL under test: the crash tests run both ways
 * (with it, every sync rewrites the partial last block whole, padded with
 * zeros, so a torn write can tear synced bytes' block too). */
static int g_direct;
static uint64_t g_direct_writes; /* direct writes the workloads made */

static struct st_wal_config wal_cfg(struct st_fs_sim *sim)
{
    return (struct st_wal_config){.fs = st_fs_sim_fs(sim),
                                  .dir = "/data/wal",
                                  .segment_bytes = SEGMENT_BYTES,
                                  .direct_io = g_direct};
}

/* The scripted workload: appends, conflicting suffixes, hard-state changes,
 * compaction marks, explicit truncations; a sync after most batches. Stops
 * at the first failure (the simulated power loss). */
static void workload(struct st_fs_sim *sim, struct run *r, int steps, uint64_t seed)
{
    memset(r, 0, sizeof(*r));
    r->cur.first = 1;
    ack(r);
    r->acks = 0;
    struct st_rng rng;
    st_rng_init(&rng, seed);
    struct st_log_store s;
    struct st_wal_config cfg = wal_cfg(sim);
    if (st_fs_sim_fs(sim)->ops->mkdir(st_fs_sim_fs(sim)->self, "/data") != 0) return;
    if (st_wal_open(&cfg, &s, NULL) != 0) return;
    struct st_log_state st;
    if (s.ops->load(s.self, 0, &st, NULL) != 0) {
        s.ops->close(s.self);
        return;
    }
    st_log_state_release(&st);
    raft_term term = 1;
    for (int step = 0; step < steps; step++) {
        struct model *m = &r->cur;
        uint64_t op = st_rng_below(&rng, 10);
        struct st_log_batch b = {0};
        struct raft_hard_state hs = m->hs;
        uint8_t *buf = NULL;
        struct raft_entry *e = NULL;
        if (op <= 5 || op == 6) {
            raft_index lo = m->last + 1;
            if (op == 6 && m->last >= m->first) { /* a new leader's conflicting suffix */
                term++;
                uint64_t back = st_rng_below(&rng, 4);
                lo = m->last >= m->first + back ? m->last - back : m->first;
            }
            size_t n = 1 + (size_t)st_rng_below(&rng, 6);
            if (lo + n >= MAXI) break;
            e = h_make(lo, lo + n, term, 300, &buf);
            b.entries = e;
            b.n_entries = n;
            if (st_rng_chance(&rng, 1, 2)) {
                hs.term = term;
                hs.commit = lo - 1 > hs.commit ? lo - 1 : hs.commit;
                b.hard_state = &hs;
            }
        } else if (op == 7) {
            hs.term = ++term;
            hs.vote = 1 + st_rng_below(&rng, 3);
            b.hard_state = &hs;
        } else if (op == 8) {
            if (m->last < m->first) continue;
            raft_index upto = m->first + st_rng_below(&rng, m->last - m->first + 1);
            if (upto <= m->snap) continue;
            b.snapshot_index = upto;
            b.snapshot_term = m->term[upto];
        } else {
            if (m->last < m->first + 1) continue;
            b.truncate_from = m->last - st_rng_below(&rng, 2);
        }
        int rc = do_batch(&s, r, &b);
        free(e);
        free(buf);
        ST_ASSERT(rc != ST_EINVAL && rc != ST_ECOMPACTED); /* the script itself is valid */
        if (rc != 0) break;
        if (st_rng_chance(&rng, 2, 3) || step == steps - 1) {
            if (s.ops->sync(s.self) != 0) break;
            ack(r);
        }
    }
    struct st_wal_stats ws;
    st_wal_stats_get(&s, &ws);
    g_direct_writes += ws.direct_writes;
    s.ops->close(s.self);
}

struct verdict {
    int restored;
    int refused;
};

/* Recovers and checks against the run's model. allow_refusal: a bit flip may
 * be detected as corruption; a plain power loss never may. */
static void recover_and_check(struct st_fs_sim *sim, const struct run *r, bool allow_refusal,
                              struct verdict *v, const char *what)
{
    struct st_wal_config cfg = wal_cfg(sim);
    struct st_log_store s;
    st_fs_sim_fs(sim)->ops->mkdir(st_fs_sim_fs(sim)->self, "/data"); /* may exist */
    char msg[600] = "";
    struct st_errbuf err = {msg, sizeof(msg)};
    int rc = st_wal_open(&cfg, &s, &err);
    struct st_log_state st = {0};
    if (rc == 0) {
        rc = s.ops->load(s.self, r->cur.snap, &st, &err);
        if (rc != 0) s.ops->close(s.self);
    }
    if (rc != 0) {
        if (!allow_refusal || (rc != ST_ECORRUPT && rc != ST_EUNAVAILABLE)) {
            fprintf(stderr, "  %s: recovery failed: %s (%s)\n", what, st_strerror(rc), msg);
            ASSERT_TRUE(0);
        }
        ASSERT_TRUE(strstr(msg, "/data/wal") != NULL); /* the message names the file */
        v->refused++;
        return;
    }
    v->restored++;
    int bad = 0;
    /* every entry returned is one the workload wrote at that index */
    for (size_t i = 0; i < st.n_entries; i++) {
        const struct raft_entry *e = &st.entries[i];
        raft_index idx = st.first_index + i;
        if (idx >= MAXI || !(r->seen[idx] >> e->term & 1) || !h_check(e, idx, e->term)) {
            fprintf(stderr, "  %s: wrong entry at %llu (term %llu)\n", what,
                    (unsigned long long)idx, (unsigned long long)e->term);
            bad++;
        }
    }
    /* every acknowledged entry not superseded by a later write is there */
    raft_index lo = r->acked.first > r->cur.snap + 1 ? r->acked.first : r->cur.snap + 1;
    raft_index hi = r->acked.last;
    if (r->min_trunc && r->min_trunc - 1 < hi) hi = r->min_trunc - 1;
    for (raft_index i = lo; i <= hi; i++) {
        if (i < st.first_index || i > st.last_index ||
            st.entries[i - st.first_index].term != r->acked.term[i]) {
            fprintf(stderr, "  %s: acknowledged entry %llu lost (recovered %llu..%llu)\n", what,
                    (unsigned long long)i, (unsigned long long)st.first_index,
                    (unsigned long long)st.last_index);
            bad++;
            break;
        }
    }
    bool hs_ok = false;
    for (int k = 0; k < r->n_hs_since; k++)
        hs_ok |= memcmp(&st.hard_state, &r->hs_since[k], sizeof(st.hard_state)) == 0;
    if (!hs_ok) {
        fprintf(stderr,
                "  %s: hard state (%llu,%llu,%llu) was never acknowledged nor written last\n", what,
                (unsigned long long)st.hard_state.term, (unsigned long long)st.hard_state.vote,
                (unsigned long long)st.hard_state.commit);
        bad++;
    }
    st_log_state_release(&st);
    s.ops->close(s.self);
    ASSERT_EQ(bad, 0);
}

static uint64_t count_ops(int steps, uint64_t seed, struct run *r)
{
    struct st_fs_sim *sim;
    st_fs_sim_create(&sim);
    workload(sim, r, steps, seed);
    uint64_t n = st_fs_sim_op_count(sim);
    st_fs_sim_destroy(sim);
    return n;
}

static struct run g_run; /* big: keep it off the stack */

static void crash_case(int steps, uint64_t seed, uint64_t k, enum st_fs_sim_crash_mode mode,
                       size_t torn, size_t *torn_len, struct verdict *v)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    st_fs_sim_crash_at(sim, k);
    workload(sim, &g_run, steps, seed);
    size_t len = st_fs_sim_crash(sim, mode, torn);
    if (torn_len) *torn_len = len;
    char what[128];
    snprintf(what, sizeof(what), "crash at op %llu mode %d torn %zu", (unsigned long long)k,
             (int)mode, torn);
    recover_and_check(sim, &g_run, false, v, what);
    st_fs_sim_destroy(sim);
}

__attribute__((constructor)) static void quiet(void)
{
    st_trace_set_level(ST_TRACE_ERROR + 1); /* thousands of expected refusals */
}

static void power_loss_sweep(void);

TEST(power_loss_at_every_write_and_sync_point_keeps_acknowledged_records)
{
    g_direct = 0;
    power_loss_sweep();
}

TEST(power_loss_at_every_point_with_direct_io_keeps_acknowledged_records)
{
    g_direct = 1;
    power_loss_sweep();
    g_direct = 0;
}

static void power_loss_sweep(void)
{
    int steps = h_sanitized() ? 40 : 70;
    uint64_t seeds[] = {1, 2, 3};
    uint64_t points = 0, cases = 0;
    struct verdict v = {0};
    for (size_t si = 0; si < ST_ARRAY_LEN(seeds); si++) {
        g_direct_writes = 0;
        uint64_t n = count_ops(steps, seeds[si], &g_run);
        ASSERT_TRUE(g_run.acks > steps / 3); /* the script really acknowledges data */
        /* the mode under test is the one the WAL used */
        if (g_direct)
            ASSERT_TRUE(g_direct_writes >= (uint64_t)g_run.acks / 2);
        else
            ASSERT_EQ(g_direct_writes, 0);
        for (uint64_t k = 1; k <= n; k++) {
            points++;
            crash_case(steps, seeds[si], k, ST_FS_SIM_LOSE_UNSYNCED, 0, NULL, &v);
            size_t len = 0;
            crash_case(steps, seeds[si], k, ST_FS_SIM_KEEP_TORN, SIZE_MAX, &len, &v);
            cases += 2;
            if (len == 0) continue;
            /* the interrupted write torn at every byte (small writes), else on a stride */
            size_t stride = len <= 600 ? 1 : (h_sanitized() ? 61 : 13);
            for (size_t b = 0; b < len; b += stride) {
                crash_case(steps, seeds[si], k, ST_FS_SIM_KEEP_TORN, b, NULL, &v);
                cases++;
            }
        }
    }
    printf("crash points tested%s: %llu (%llu recoveries: lost unsynced data, torn writes)\n",
           g_direct ? " (direct I/O)" : "", (unsigned long long)points, (unsigned long long)cases);
    ASSERT_EQ(v.refused, 0);
    ASSERT_EQ((uint64_t)v.restored, cases);
}

struct last_nz_ctx {
    char names[64][64];
    int n;
};

static int list_names(void *ctx, const char *name)
{
    struct last_nz_ctx *c = ctx;
    if (c->n < 64) snprintf(c->names[c->n++], 64, "%s", name);
    return 0;
}

TEST(bit_flip_in_synced_data_is_restored_or_refused_never_wrong)
{
    int steps = 60;
    int flips = h_sanitized() ? 400 : 3000;
    struct verdict v = {0};
    struct st_rng rng;
    st_rng_init(&rng, 99);
    for (int f = 0; f < flips; f++) {
        struct st_fs_sim *sim;
        ASSERT_EQ(st_fs_sim_create(&sim), 0);
        workload(sim, &g_run, steps, 7 + (uint64_t)(f % 5));
        const struct st_fs *fs = st_fs_sim_fs(sim);
        struct last_nz_ctx c = {0};
        ASSERT_EQ(fs->ops->list_dir(fs->self, "/data/wal", list_names, &c), 0);
        ASSERT_TRUE(c.n > 0);
        char path[200];
        snprintf(path, sizeof(path), "/data/wal/%s", c.names[st_rng_below(&rng, (uint64_t)c.n)]);
        /* a bit inside the written part of the file */
        int fd;
        ASSERT_EQ(fs->ops->open(fs->self, path, ST_FS_READ, &fd), 0);
        uint8_t data[SEGMENT_BYTES];
        size_t n = 0;
        ASSERT_EQ(fs->ops->pread(fs->self, fd, data, sizeof(data), 0, &n), 0);
        fs->ops->close(fs->self, fd);
        size_t used = n;
        while (used > 0 && data[used - 1] == 0)
            used--;
        ASSERT_TRUE(used > 0);
        uint64_t off = st_rng_below(&rng, used);
        ASSERT_EQ(st_fs_sim_flip_bit(sim, path, off, (unsigned)st_rng_below(&rng, 8)), 0);
        st_fs_sim_crash(sim, ST_FS_SIM_LOSE_UNSYNCED, 0);
        char what[300];
        snprintf(what, sizeof(what), "bit flip in %s at %llu", path, (unsigned long long)off);
        recover_and_check(sim, &g_run, true, &v, what);
        st_fs_sim_destroy(sim);
    }
    printf("bit flips tested: %d (refused to start: %d, restored everything: %d)\n", flips,
           v.refused, v.restored);
    ASSERT_EQ(v.refused + v.restored, flips);
    ASSERT_TRUE(v.refused > flips / 2); /* almost every flip in a record is detected */
}

/* ------------------------------------------- the pipelined group-commit writer */

struct wcrash {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t reported, acked;
};

static void wcrash_cb(void *ctx, const struct st_log_writer_result *r)
{
    struct wcrash *c = ctx;
    pthread_mutex_lock(&c->mu);
    c->reported = r->seq;
    if (r->status == 0) c->acked = r->seq;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

#define WBATCHES 60

/* Submits WBATCHES batches of 1..8 entries without waiting; returns the op count. */
static uint64_t writer_run(struct st_fs_sim *sim, raft_index *last_of, uint64_t *acked)
{
    struct wcrash c = {.reported = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cond, NULL);
    *acked = 0;
    struct st_wal_config cfg = wal_cfg(sim);
    struct st_log_store s;
    const struct st_fs *fs = st_fs_sim_fs(sim);
    if (fs->ops->mkdir(fs->self, "/data") != 0 || st_wal_open(&cfg, &s, NULL) != 0)
        return st_fs_sim_op_count(sim);
    struct st_log_state st;
    if (s.ops->load(s.self, 0, &st, NULL) != 0) {
        s.ops->close(s.self);
        return st_fs_sim_op_count(sim);
    }
    st_log_state_release(&st);
    struct st_log_writer *w;
    ST_ASSERT(st_log_writer_create(&s, NULL, wcrash_cb, &c, &w) == 0);
    uint8_t *bufs[WBATCHES];
    struct raft_entry *ents[WBATCHES];
    raft_index next = 1;
    uint64_t seq = 0;
    int submitted = 0;
    for (int i = 0; i < WBATCHES; i++) {
        size_t n = 1 + (size_t)(i * 7 % 8);
        ents[i] = h_make(next, next + n, 1, 300, &bufs[i]);
        struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = next - 1};
        struct st_log_batch b = {.entries = ents[i], .n_entries = n, .hard_state = &hs};
        next += n;
        last_of[i + 1] = next - 1;
        if (st_log_writer_submit(w, &b, &seq) != 0) {
            free(ents[i]);
            free(bufs[i]);
            break;
        }
        submitted++;
    }
    pthread_mutex_lock(&c.mu);
    while (c.reported < seq)
        pthread_cond_wait(&c.cond, &c.mu);
    *acked = c.acked;
    pthread_mutex_unlock(&c.mu);
    st_log_writer_destroy(w);
    s.ops->close(s.self);
    for (int i = 0; i < submitted; i++) {
        free(ents[i]);
        free(bufs[i]);
    }
    return st_fs_sim_op_count(sim);
}

static void writer_power_loss_sweep(void);

TEST(power_loss_under_the_pipelined_writer_keeps_acknowledged_batches)
{
    g_direct = 0;
    writer_power_loss_sweep();
}

TEST(power_loss_under_the_pipelined_writer_with_direct_io_keeps_acknowledged_batches)
{
    g_direct = 1;
    writer_power_loss_sweep();
    g_direct = 0;
}

static void writer_power_loss_sweep(void)
{
    raft_index last_of[WBATCHES + 1] = {0};
    uint64_t acked;
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    uint64_t n = writer_run(sim, last_of, &acked);
    st_fs_sim_destroy(sim);
    ASSERT_EQ(acked, WBATCHES);
    uint64_t points = 0;
    for (uint64_t k = 1; k <= n; k++) {
        for (int mode = 0; mode < 2; mode++) {
            ASSERT_EQ(st_fs_sim_create(&sim), 0);
            st_fs_sim_crash_at(sim, k);
            writer_run(sim, last_of, &acked);
            st_fs_sim_crash(sim, (enum st_fs_sim_crash_mode)mode, SIZE_MAX / 2);
            st_fs_sim_fs(sim)->ops->mkdir(st_fs_sim_fs(sim)->self, "/data");
            struct st_wal_config cfg = wal_cfg(sim);
            struct st_log_store s;
            ASSERT_EQ(st_wal_open(&cfg, &s, NULL), 0);
            struct st_log_state st;
            ASSERT_EQ(s.ops->load(s.self, 0, &st, NULL), 0);
            raft_index want = acked ? last_of[acked] : 0;
            ASSERT_TRUE(st.last_index >= want);
            for (size_t i = 0; i < st.n_entries; i++)
                ASSERT_TRUE(h_check(&st.entries[i], i + 1, 1));
            /* batch i carried commit = last index of batch i-1 */
            if (acked > 1) ASSERT_TRUE(st.hard_state.commit >= last_of[acked - 1]);
            st_log_state_release(&st);
            s.ops->close(s.self);
            st_fs_sim_destroy(sim);
            points++;
        }
    }
    printf("writer crash points tested: %llu (%llu recoveries)\n", (unsigned long long)n,
           (unsigned long long)points);
}

/* ----------------------------------------------------- garbage of every kind */

/* Random damage to written segments -- overwritten ranges, random bytes,
 * shortened files, whole files of noise -- must never crash recovery nor make
 * it return an entry that was never written. (Zeroing or cutting the very end
 * of the newest segment looks exactly like writes that never happened, so
 * this test does not require every acknowledged entry back; test_wal and the
 * bit-flip test above cover detection.) */
TEST(random_damage_never_crashes_recovery_nor_returns_wrong_data)
{
    int rounds = h_sanitized() ? 150 : 1000;
    struct st_rng rng;
    st_rng_init(&rng, 4242);
    int refused = 0, opened = 0;
    for (int round = 0; round < rounds; round++) {
        struct st_fs_sim *sim;
        ASSERT_EQ(st_fs_sim_create(&sim), 0);
        workload(sim, &g_run, 40, 100 + (uint64_t)(round % 7));
        const struct st_fs *fs = st_fs_sim_fs(sim);
        struct last_nz_ctx c = {0};
        ASSERT_EQ(fs->ops->list_dir(fs->self, "/data/wal", list_names, &c), 0);
        int damages = 1 + (int)st_rng_below(&rng, 3);
        for (int d = 0; d < damages; d++) {
            char path[200];
            snprintf(path, sizeof(path), "/data/wal/%s",
                     c.names[st_rng_below(&rng, (uint64_t)c.n)]);
            int fd;
            ASSERT_EQ(fs->ops->open(fs->self, path, ST_FS_RDWR, &fd), 0);
            uint64_t size = 0;
            ASSERT_EQ(fs->ops->fsize(fs->self, fd, &size), 0);
            uint8_t junk[512];
            uint64_t kind = st_rng_below(&rng, 4);
            uint64_t off = size ? st_rng_below(&rng, size) : 0;
            size_t len = 1 + (size_t)st_rng_below(&rng, sizeof(junk));
            for (size_t i = 0; i < len; i++)
                junk[i] = kind == 1 ? 0 : (uint8_t)st_rng_next(&rng);
            if (kind <= 1) /* random bytes, or zeros, over a range */
                fs->ops->pwrite(fs->self, fd, junk, len, off);
            else if (kind == 2) /* a shorter file */
                fs->ops->ftruncate(fs->self, fd, off);
            else /* a whole file of noise: a header that looks right is still checked */
                for (uint64_t o = 0; o < size; o += sizeof(junk))
                    fs->ops->pwrite(fs->self, fd, junk, sizeof(junk), o);
            fs->ops->fdatasync(fs->self, fd);
            fs->ops->close(fs->self, fd);
        }
        struct st_wal_config cfg = wal_cfg(sim);
        struct st_log_store s;
        struct st_log_state st;
        int rc = st_wal_open(&cfg, &s, NULL);
        if (rc == 0) {
            rc = s.ops->load(s.self, g_run.cur.snap, &st, NULL);
            if (rc == 0) {
                opened++;
                for (size_t i = 0; i < st.n_entries; i++) {
                    const struct raft_entry *e = &st.entries[i];
                    raft_index idx = st.first_index + i;
                    ASSERT_TRUE(idx < MAXI && (g_run.seen[idx] >> e->term & 1 ||
                                               e->term == g_run.acked.term[idx]));
                    ASSERT_TRUE(h_check(e, idx, e->term));
                }
                st_log_state_release(&st);
            }
            s.ops->close(s.self);
        }
        if (rc != 0) refused++;
        st_fs_sim_destroy(sim);
    }
    printf("random damage: %d rounds, %d refused, %d opened with only genuine entries\n", rounds,
           refused, opened);
    ASSERT_EQ(refused + opened, rounds);
}

TEST_MAIN()
