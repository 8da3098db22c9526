/* Running out of file descriptors never fails the store (issue 14, finding
 * 3): a directory fsync opens nothing (the WAL keeps its directory open), a
 * segment roll that cannot open its file fails the batch cleanly (undone,
 * store usable, same batch retried later), and the group-commit writer
 * retries such a batch until a descriptor is free, keeping the log's order,
 * whether it was submitted or written inline (write_now). */
#include <pthread.h>
#include <time.h>

#include "test.h"
#include "unit/storage/helpers.h"
#include "util/trace.h"

#define SEG 8192u

__attribute__((constructor)) static void quiet(void)
{
    st_trace_set_level(ST_TRACE_ERROR + 1);
}

static struct st_wal_config cfg_of(struct st_fs_sim *sim)
{
    return (struct st_wal_config){.fs = st_fs_sim_fs(sim), .dir = "/wal", .segment_bytes = SEG};
}

static void open_loaded(struct st_fs_sim *sim, struct st_log_store *s)
{
    struct st_wal_config c = cfg_of(sim);
    ASSERT_EQ(st_wal_open(&c, s, NULL), 0);
    struct st_log_state st;
    ASSERT_EQ(s->ops->load(s->self, 0, &st, NULL), 0);
    st_log_state_release(&st);
}

static uint64_t segments(struct st_log_store *s)
{
    struct st_wal_stats ws;
    st_wal_stats_get(s, &ws);
    return ws.segments;
}

/* Entries 1..last with payloads from h_fill, in order, after a reopen. */
static void reopen_check(struct st_fs_sim *sim, raft_index last)
{
    struct st_wal_config c = cfg_of(sim);
    struct st_log_store s;
    ASSERT_EQ(st_wal_open(&c, &s, NULL), 0);
    struct st_log_state st;
    ASSERT_EQ(s.ops->load(s.self, 0, &st, NULL), 0);
    ASSERT_EQ(st.first_index, 1);
    ASSERT_EQ(st.last_index, last);
    for (size_t i = 0; i < st.n_entries; i++)
        ASSERT_TRUE(h_check(&st.entries[i], i + 1, 1));
    st_log_state_release(&st);
    s.ops->close(s.self);
}

TEST(roll_without_a_descriptor_fails_cleanly_and_the_batch_goes_through_later)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    struct st_log_store s;
    open_loaded(sim, &s);
    uint8_t *buf;
    struct raft_entry *e = h_make(1, 200, 1, 700, &buf);
    /* no descriptor left from now on */
    st_fs_sim_set_fds_max(sim, st_fs_sim_fds_open(sim));
    raft_index i = 1;
    int rc = 0;
    for (; i < 200; i++) {
        struct st_log_batch b = {.entries = &e[i - 1], .n_entries = 1};
        rc = s.ops->append(s.self, &b);
        if (rc != 0) break;
        ASSERT_EQ(s.ops->sync(s.self), 0);
    }
    ASSERT_EQ(rc, ST_ENFILE); /* the roll to segment 2 */
    ASSERT_TRUE(i > 2);
    ASSERT_EQ(segments(&s), 1);
    /* the batch was undone: the log ends before it, reads and syncs work */
    raft_index first, last;
    s.ops->bounds(s.self, &first, &last);
    ASSERT_EQ(last, i - 1);
    struct raft_entry got;
    ASSERT_EQ(s.ops->read(s.self, i - 1, i, &got), 0);
    ASSERT_TRUE(h_check(&got, i - 1, 1));
    raft_buf_unref(got.buf);
    ASSERT_EQ(s.ops->sync(s.self), 0);
    /* still none: refused again, nothing kept */
    struct st_log_batch b = {.entries = &e[i - 1], .n_entries = 1};
    ASSERT_EQ(s.ops->append(s.self, &b), ST_ENFILE);
    /* one descriptor: the new segment takes it, and the directory fsync of
     * the sync needs none of its own */
    st_fs_sim_set_fds_max(sim, st_fs_sim_fds_open(sim) + 1);
    ASSERT_EQ(s.ops->append(s.self, &b), 0);
    ASSERT_EQ(s.ops->sync(s.self), 0);
    ASSERT_EQ(segments(&s), 2);
    st_fs_sim_set_fds_max(sim, 256);
    for (i = i + 1; i < 200; i++) {
        struct st_log_batch bb = {.entries = &e[i - 1], .n_entries = 1};
        ASSERT_EQ(s.ops->append(s.self, &bb), 0);
    }
    ASSERT_EQ(s.ops->sync(s.self), 0);
    s.ops->close(s.self);
    /* nothing lost, nothing out of order, and the undone batch left no trace */
    reopen_check(sim, 199);
    free(e);
    free(buf);
    st_fs_sim_destroy(sim);
}

/* ------------------------------------------------------------ the writer */

struct results {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t last_seq;
    raft_index durable;
    int bad_status;
    uint32_t n;
    bool last_on_caller;
};

static void results_cb(void *ctx, const struct st_log_writer_result *res)
{
    struct results *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (res->status != 0 && r->bad_status == 0) r->bad_status = res->status;
    if (res->seq > r->last_seq) r->last_seq = res->seq;
    if (res->durable_index > r->durable) r->durable = res->durable_index;
    r->last_on_caller = res->on_caller_thread;
    r->n++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* Waits (at most 20 s) until the writer has results up to `seq`. */
static bool wait_seq(struct results *r, uint64_t seq)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    while (r->last_seq < seq && rc == 0)
        rc = pthread_cond_timedwait(&r->cv, &r->mu, &dl);
    bool ok = r->last_seq >= seq;
    pthread_mutex_unlock(&r->mu);
    return ok;
}

/* Until the writer has retried at least once for want of a descriptor. */
static bool wait_retrying(struct st_log_writer *w)
{
    for (int i = 0; i < 20000; i++) {
        if (st_log_writer_enfile_retries(w) > 0) return true;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

TEST(writer_retries_until_a_descriptor_is_free_and_keeps_the_order)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    struct st_log_store s;
    open_loaded(sim, &s);
    struct results r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct st_log_writer *w;
    ASSERT_EQ(st_log_writer_create(&s, NULL, results_cb, &r, &w), 0);
    uint8_t *buf;
    const raft_index n = 60;
    struct raft_entry *e = h_make(1, n + 1, 1, 700, &buf);
    st_fs_sim_set_fds_max(sim, st_fs_sim_fds_open(sim));
    /* inline writes until one needs a segment it cannot open: that one is
     * queued for the writer's threads instead of failing */
    raft_index i = 1;
    uint64_t seq = 0;
    for (; i <= n; i++) {
        struct st_log_batch b = {.entries = &e[i - 1], .n_entries = 1};
        ASSERT_EQ(st_log_writer_write_now(w, &b, &seq), 0);
        pthread_mutex_lock(&r.mu);
        bool inline_done = r.last_seq == seq;
        pthread_mutex_unlock(&r.mu);
        if (!inline_done) break;
    }
    ASSERT_TRUE(i < n);
    /* more batches behind it, submitted */
    for (raft_index k = i + 1; k <= n; k++) {
        struct st_log_batch b = {.entries = &e[k - 1], .n_entries = 1};
        ASSERT_EQ(st_log_writer_submit(w, &b, &seq), 0);
    }
    ASSERT_TRUE(wait_retrying(w));
    pthread_mutex_lock(&r.mu);
    ASSERT_EQ(r.bad_status, 0); /* nothing failed */
    ASSERT_TRUE(r.durable < i);
    pthread_mutex_unlock(&r.mu);
    /* descriptors come back: everything goes through, in order */
    st_fs_sim_set_fds_max(sim, 256);
    ASSERT_TRUE(wait_seq(&r, seq));
    pthread_mutex_lock(&r.mu);
    ASSERT_EQ(r.bad_status, 0);
    ASSERT_EQ(r.durable, n);
    ASSERT_FALSE(r.last_on_caller);
    pthread_mutex_unlock(&r.mu);
    ASSERT_TRUE(segments(&s) > 2);
    st_log_writer_destroy(w);
    s.ops->close(s.self);
    reopen_check(sim, n);
    free(e);
    free(buf);
    st_fs_sim_destroy(sim);
}

/* A writer stopped while a batch waits for a descriptor reports it failed
 * (it was not written) instead of waiting forever. */
TEST(writer_stopped_while_retrying_reports_the_batch_failed)
{
    struct st_fs_sim *sim;
    ASSERT_EQ(st_fs_sim_create(&sim), 0);
    struct st_log_store s;
    open_loaded(sim, &s);
    struct results r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct st_log_writer *w;
    ASSERT_EQ(st_log_writer_create(&s, NULL, results_cb, &r, &w), 0);
    uint8_t *buf;
    struct raft_entry *e = h_make(1, 61, 1, 700, &buf);
    st_fs_sim_set_fds_max(sim, st_fs_sim_fds_open(sim));
    uint64_t seq = 0;
    for (raft_index k = 1; k <= 60; k++) {
        struct st_log_batch b = {.entries = &e[k - 1], .n_entries = 1};
        ASSERT_EQ(st_log_writer_submit(w, &b, &seq), 0);
    }
    ASSERT_TRUE(wait_retrying(w));
    st_log_writer_destroy(w);
    ASSERT_EQ(r.last_seq, seq);
    ASSERT_EQ(r.bad_status, ST_ENFILE);
    raft_index first, last;
    s.ops->bounds(s.self, &first, &last);
    ASSERT_EQ(r.durable, last); /* what was reported durable is what the log holds */
    s.ops->close(s.self);
    st_fs_sim_set_fds_max(sim, 256);
    reopen_check(sim, last);
    free(e);
    free(buf);
    st_fs_sim_destroy(sim);
}

TEST_MAIN()
