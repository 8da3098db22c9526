/* A real writer process appends and syncs; it reports each acknowledged
 * batch through a pipe only AFTER the sync returned. It is killed with
 * SIGKILL at random moments, many times; every restart must find every
 * acknowledged record, byte for byte. */
#include <signal.h>
#include <sys/wait.h>

#include "test.h"
#include "unit/storage/helpers.h"
#include "util/rng.h"
#include "util/trace.h"

#define KILL_MAX_INDEX 200000

struct ack {
    uint64_t lo, hi, term;
};

enum { KILL_SPARE = 1, KILL_DIRECT = 2 }; /* the WAL's options in a round */

static struct st_wal_config cfg_for(const char *dir, int mode)
{
    return (struct st_wal_config){.dir = dir,
                                  .segment_bytes = 64 * 1024,
                                  .spare_segments = (mode & KILL_SPARE) != 0,
                                  .direct_io = (mode & KILL_DIRECT) != 0};
}

/* The child: continue after what is on disk, forever (until killed). */
static _Noreturn void writer_child(const char *dir, int mode, int fd, uint64_t term, uint64_t seed)
{
    struct st_wal_config cfg = cfg_for(dir, mode);
    struct st_log_store s;
    if (st_wal_open(&cfg, &s, NULL) != 0) _exit(2);
    struct st_log_state st;
    if (s.ops->load(s.self, 0, &st, NULL) != 0) _exit(3);
    raft_index next = st.last_index + 1;
    st_log_state_release(&st);
    struct st_rng rng;
    st_rng_init(&rng, seed);
    for (;;) {
        size_t n = 1 + (size_t)st_rng_below(&rng, 24);
        if (next + n >= KILL_MAX_INDEX) _exit(4);
        uint8_t *buf;
        struct raft_entry *e = h_make(next, next + n, term, 2000, &buf);
        struct raft_hard_state hs = {.term = term, .vote = 1, .commit = next - 1};
        struct st_log_batch b = {.entries = e, .n_entries = n, .hard_state = &hs};
        if (s.ops->append(s.self, &b) != 0 || s.ops->sync(s.self) != 0) _exit(5);
        free(e);
        free(buf);
        struct ack a = {next, next + n - 1, term};
        if (write(fd, &a, sizeof(a)) != (ssize_t)sizeof(a)) _exit(6);
        next += n;
    }
}

static uint8_t g_acked_term[KILL_MAX_INDEX];

/* KILL_SPARE: segments come from zero-filled spares prepared by the WAL's
 * helper thread (renamed in at the roll), so kills also land mid-preparation
 * and around the rename. KILL_DIRECT: appends are direct I/O, each sync
 * rewriting the partial last block (the server's configuration with both). */
static void kill_rounds(int mode)
{
    char dir[512];
    h_tmpdir(dir, sizeof(dir), "kill");
    int kills = h_sanitized() ? 12 : 40;
    struct st_rng rng;
    st_rng_init(&rng, 2024);
    uint64_t max_acked = 0, total_acks = 0;
    memset(g_acked_term, 0, sizeof(g_acked_term));
    for (int round = 1; round <= kills; round++) {
        int p[2];
        ASSERT_EQ(pipe(p), 0);
        fflush(NULL);
        pid_t pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            writer_child(dir, mode, p[1], (uint64_t)round, (uint64_t)round * 77);
        }
        close(p[1]);
        /* let it acknowledge a random number of batches, then kill it mid-flight */
        uint64_t want = 1 + st_rng_below(&rng, 40);
        uint64_t got = 0;
        struct ack a;
        while (got < want && read(p[0], &a, sizeof(a)) == (ssize_t)sizeof(a)) {
            for (uint64_t i = a.lo; i <= a.hi; i++)
                g_acked_term[i] = (uint8_t)a.term;
            if (a.hi > max_acked) max_acked = a.hi;
            got++;
        }
        ASSERT_EQ(kill(pid, SIGKILL), 0);
        int status;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status)); /* it was still writing, not failed */
        /* acknowledgements already in the pipe count too */
        while (read(p[0], &a, sizeof(a)) == (ssize_t)sizeof(a)) {
            for (uint64_t i = a.lo; i <= a.hi; i++)
                g_acked_term[i] = (uint8_t)a.term;
            if (a.hi > max_acked) max_acked = a.hi;
            got++;
        }
        close(p[0]);
        total_acks += got;
        /* restart: everything acknowledged is there */
        struct st_wal_config cfg = cfg_for(dir, mode);
        struct st_log_store s;
        char msg[400] = "";
        struct st_errbuf err = {msg, sizeof(msg)};
        int rc = st_wal_open(&cfg, &s, &err);
        if (rc != 0) fprintf(stderr, "  round %d: %s\n", round, msg);
        ASSERT_EQ(rc, 0);
        struct st_log_state st;
        ASSERT_EQ(s.ops->load(s.self, 0, &st, NULL), 0);
        ASSERT_EQ(st.first_index, 1);
        ASSERT_TRUE(st.last_index >= max_acked);
        int bad = 0;
        for (uint64_t i = 1; i <= max_acked; i++) {
            const struct raft_entry *e = &st.entries[i - 1];
            /* entries between acknowledged ones may come from a killed writer
             * that never got to report them: any term, but the right bytes */
            bool term_ok =
                g_acked_term[i] ? e->term == g_acked_term[i] : e->term < (uint64_t)round + 1;
            if (!term_ok || !h_check(e, i, e->term)) {
                if (bad < 5)
                    fprintf(stderr, "  round %d: entry %llu term %llu (acked %u) len %u\n", round,
                            (unsigned long long)i, (unsigned long long)e->term, g_acked_term[i],
                            e->len);
                bad++;
            }
        }
        ASSERT_EQ(bad, 0);
        raft_index last = st.last_index;
        st_log_state_release(&st);
        if (round == kills) { /* the writers really used the mode under test */
            uint8_t *buf;
            struct raft_entry *e = h_make(last + 1, last + 2, 99, 100, &buf);
            struct st_log_batch b = {.entries = e, .n_entries = 1};
            ASSERT_EQ(s.ops->append(s.self, &b), 0);
            ASSERT_EQ(s.ops->sync(s.self), 0);
            free(e);
            free(buf);
            struct st_wal_stats ws;
            st_wal_stats_get(&s, &ws);
            ASSERT_EQ(ws.direct_writes, (mode & KILL_DIRECT) ? 1 : 0);
        }
        s.ops->close(s.self);
    }
    printf("SIGKILL rounds: %d, acknowledged batches: %llu, acknowledged entries: %llu\n", kills,
           (unsigned long long)total_acks, (unsigned long long)max_acked);
    h_rmrf(dir);
}

TEST(sigkill_at_random_moments_never_loses_an_acknowledged_record)
{
    kill_rounds(0);
}

TEST(sigkill_with_spare_segments_never_loses_an_acknowledged_record)
{
    kill_rounds(KILL_SPARE);
}

TEST(sigkill_with_spares_and_direct_io_never_loses_an_acknowledged_record)
{
    kill_rounds(KILL_SPARE | KILL_DIRECT);
}

TEST_MAIN()
