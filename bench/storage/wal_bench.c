/* wal_bench: what the disk can do, and how close the WAL gets to it.
 *
 *   build/bench/storage/wal_bench [--dir DIR] [--seconds S] [--startup-mib N] [--quick]
 *
 * 1. raw fdatasync rate: 4 KiB pwrite + fdatasync, in a preallocated file
 * 2. sequential bandwidth: 1 MiB pwrite + fdatasync
 * 3. WAL: append + sync of 1, 16, 256 entries of 100 B and 4 KiB
 * 4. WAL through the group-commit writer, 64 submitters' worth of 1-entry batches in flight
 * 5. startup: open + load of an N MiB WAL (default 1024)
 * and the ratios: single-entry durable append latency / raw fdatasync
 * (target <= 1.2) and batched WAL throughput / sequential bandwidth (>= 0.8).
 * DIR (default ./wal_bench.data) must be on the disk under test; it is
 * removed at the end. */
#include <fcntl.h>
#include <sys/stat.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stcache/storage.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct lat {
    uint64_t *v;
    size_t n, cap;
};

static void lat_add(struct lat *l, uint64_t ns)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (!l->v) abort();
    }
    l->v[l->n++] = ns;
}

static double lat_mean_us(const struct lat *l)
{
    double s = 0;
    for (size_t i = 0; i < l->n; i++)
        s += (double)l->v[i];
    return l->n ? s / (double)l->n / 1000.0 : 0;
}

static double lat_pct_us(struct lat *l, double p)
{
    if (!l->n) return 0;
    qsort(l->v, l->n, sizeof(uint64_t), cmp_u64);
    size_t i = (size_t)(p * (double)(l->n - 1));
    return (double)l->v[i] / 1000.0;
}

static char g_dir[900];
static double g_seconds = 2.0;

static void rmrf(const char *path)
{
    char cmd[1000];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    /* The bench's own scratch directory, named by its --dir: no untrusted input. */
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", path); // NOLINT(cert-env33-c)
}

/* ------------------------------------------------------------ raw disk */

struct raw_result {
    double ops_s, mean_us, p99_us, mb_s;
};

static struct raw_result raw_loop(size_t write_bytes, uint64_t file_bytes)
{
    char path[1000];
    snprintf(path, sizeof(path), "%s/raw", g_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || posix_fallocate(fd, 0, (off_t)file_bytes) != 0) {
        perror("raw file");
        exit(1);
    }
    fdatasync(fd);
    uint8_t *buf = malloc(write_bytes);
    memset(buf, 0xab, write_bytes);
    struct lat l = {0};
    uint64_t off = 0, t0 = now_ns(), deadline = t0 + (uint64_t)(g_seconds * 1e9);
    while (now_ns() < deadline && off + write_bytes <= file_bytes) {
        uint64_t a = now_ns();
        if (pwrite(fd, buf, write_bytes, (off_t)off) != (ssize_t)write_bytes ||
            fdatasync(fd) != 0) {
            perror("raw write");
            exit(1);
        }
        lat_add(&l, now_ns() - a);
        off += write_bytes;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    close(fd);
    unlink(path);
    struct raw_result r = {
        .ops_s = (double)l.n / secs,
        .mean_us = lat_mean_us(&l),
        .p99_us = lat_pct_us(&l, 0.99),
        .mb_s = (double)off / secs / 1e6,
    };
    free(l.v);
    free(buf);
    return r;
}

/* ----------------------------------------------------------------- WAL */

static struct st_log_store open_wal(const char *name, uint64_t segment_bytes)
{
    char path[1000];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    struct st_wal_config cfg = {.dir = path, .segment_bytes = segment_bytes};
    struct st_log_store s;
    char msg[300] = "";
    struct st_errbuf err = {msg, sizeof(msg)};
    if (st_wal_open(&cfg, &s, &err) != 0) {
        fprintf(stderr, "wal open: %s\n", msg);
        exit(1);
    }
    struct st_log_state st;
    if (s.ops->load(s.self, 0, &st, &err) != 0) {
        fprintf(stderr, "wal load: %s\n", msg);
        exit(1);
    }
    st_log_state_release(&st);
    return s;
}

struct wal_result {
    double entries_s, syncs_s, mean_us, p99_us, mb_s;
};

static struct wal_result wal_loop(size_t entry_bytes, size_t batch)
{
    rmrf(g_dir);
    mkdir(g_dir, 0755);
    struct st_log_store s = open_wal("wal", 64ull << 20);
    uint8_t *payload = malloc(entry_bytes * batch);
    memset(payload, 0x5a, entry_bytes * batch);
    struct raft_entry *e = calloc(batch, sizeof(*e));
    struct lat l = {0};
    raft_index next = 1;
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(g_seconds * 1e9);
    while (now_ns() < deadline) {
        for (size_t i = 0; i < batch; i++)
            e[i] = (struct raft_entry){.term = 1,
                                       .index = next + i,
                                       .type = RAFT_ENTRY_NORMAL,
                                       .data = payload + i * entry_bytes,
                                       .len = (uint32_t)entry_bytes};
        struct raft_hard_state hs = {.term = 1, .vote = 1, .commit = next - 1};
        struct st_log_batch b = {.entries = e, .n_entries = batch, .hard_state = &hs};
        uint64_t a = now_ns();
        if (s.ops->append(s.self, &b) != 0 || s.ops->sync(s.self) != 0) {
            fprintf(stderr, "wal append/sync failed\n");
            exit(1);
        }
        lat_add(&l, now_ns() - a);
        next += batch;
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    struct wal_result r = {
        .entries_s = (double)(next - 1) / secs,
        .syncs_s = (double)l.n / secs,
        .mean_us = lat_mean_us(&l),
        .p99_us = lat_pct_us(&l, 0.99),
        .mb_s = (double)(next - 1) * (double)entry_bytes / secs / 1e6,
    };
    s.ops->close(s.self);
    free(l.v);
    free(e);
    free(payload);
    return r;
}

/* Group commit under load: keep `window` one-entry batches in flight. */
struct gc_ctx {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t done_seq;
    uint64_t groups;
};

static void gc_cb(void *ctx, const struct st_log_writer_result *r)
{
    struct gc_ctx *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (r->status != 0) {
        fprintf(stderr, "writer: %s\n", st_strerror(r->status));
        exit(1);
    }
    c->done_seq = r->seq;
    c->groups++;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void group_commit(size_t entry_bytes, uint64_t window, double *entries_s, double *per_sync)
{
    rmrf(g_dir);
    mkdir(g_dir, 0755);
    struct st_log_store s = open_wal("wal", 64ull << 20);
    struct gc_ctx c = {.done_seq = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cond, NULL);
    struct st_log_writer *w;
    if (st_log_writer_create(&s, NULL, gc_cb, &c, &w) != 0) exit(1);
    uint8_t *payload = calloc(1, entry_bytes);
    uint64_t seq = 0;
    raft_index next = 1;
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(g_seconds * 1e9);
    while (now_ns() < deadline) {
        pthread_mutex_lock(&c.mu);
        while (seq - c.done_seq >= window)
            pthread_cond_wait(&c.cond, &c.mu);
        pthread_mutex_unlock(&c.mu);
        struct raft_entry e = {.term = 1,
                               .index = next,
                               .type = RAFT_ENTRY_NORMAL,
                               .data = payload,
                               .len = (uint32_t)entry_bytes};
        struct st_log_batch b = {.entries = &e, .n_entries = 1};
        if (st_log_writer_submit(w, &b, &seq) != 0) exit(1);
        next++;
    }
    pthread_mutex_lock(&c.mu);
    while (c.done_seq < seq)
        pthread_cond_wait(&c.cond, &c.mu);
    pthread_mutex_unlock(&c.mu);
    double secs = (double)(now_ns() - t0) / 1e9;
    st_log_writer_destroy(w);
    *entries_s = (double)(next - 1) / secs;
    *per_sync = (double)(next - 1) / (double)c.groups;
    s.ops->close(s.self);
    free(payload);
}

/* ------------------------------------------------------------- startup */

static void startup(uint64_t mib)
{
    rmrf(g_dir);
    mkdir(g_dir, 0755);
    struct st_log_store s = open_wal("wal", 64ull << 20);
    size_t batch = 256, entry = 4096;
    uint8_t *payload = malloc(entry * batch);
    memset(payload, 0x33, entry * batch);
    struct raft_entry *e = calloc(batch, sizeof(*e));
    raft_index next = 1;
    uint64_t total = mib << 20, written = 0;
    uint64_t t0 = now_ns();
    while (written < total) {
        for (size_t i = 0; i < batch; i++)
            e[i] = (struct raft_entry){.term = 1,
                                       .index = next + i,
                                       .type = RAFT_ENTRY_NORMAL,
                                       .data = payload + i * entry,
                                       .len = (uint32_t)entry};
        struct st_log_batch b = {.entries = e, .n_entries = batch};
        if (s.ops->append(s.self, &b) != 0) exit(1);
        next += batch;
        written += batch * entry;
        if ((next / batch) % 16 == 0 && s.ops->sync(s.self) != 0) exit(1);
    }
    if (s.ops->sync(s.self) != 0) exit(1);
    double wsecs = (double)(now_ns() - t0) / 1e9;
    s.ops->close(s.self);
    free(e);
    free(payload);

    char path[1000];
    snprintf(path, sizeof(path), "%s/wal", g_dir);
    struct st_wal_config cfg = {.dir = path, .segment_bytes = 64ull << 20};
    uint64_t a = now_ns();
    if (st_wal_open(&cfg, &s, NULL) != 0) exit(1);
    struct st_log_state st;
    if (s.ops->load(s.self, 0, &st, NULL) != 0) exit(1);
    double secs = (double)(now_ns() - a) / 1e9;
    struct st_wal_stats ws;
    st_wal_stats_get(&s, &ws);
    printf("startup: %" PRIu64 " MiB WAL (%zu entries of 4 KiB, %" PRIu64 " segments) written in "
           "%.1f s; open+load %.3f s (%.0f MB/s, %.0f entries/s; scan %.3f s), page cache warm\n",
           mib, st.n_entries, ws.segments, wsecs, secs, (double)ws.open_bytes_scanned / secs / 1e6,
           (double)st.n_entries / secs, (double)ws.open_scan_ns / 1e9);
    st_log_state_release(&st);
    s.ops->close(s.self);
    /* cold cache, when allowed (root): drop the page cache and reopen */
    sync();
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
    if (f && fputs("3\n", f) >= 0 && fclose(f) == 0) {
        a = now_ns();
        if (st_wal_open(&cfg, &s, NULL) != 0 || s.ops->load(s.self, 0, &st, NULL) != 0) exit(1);
        secs = (double)(now_ns() - a) / 1e9;
        printf("startup: same WAL with a cold page cache: open+load %.3f s (%.0f MB/s)\n", secs,
               (double)(mib << 20) / secs / 1e6);
        st_log_state_release(&st);
        s.ops->close(s.self);
    } else {
        if (f) fclose(f);
        printf("startup: cold-cache run skipped (cannot drop the page cache)\n");
    }
}

/* ------------------------------------------------------------- paired */

/* Alternates one raw pwrite+fdatasync of raw_bytes with one WAL append+sync of
 * `batch` entries of entry_bytes, for g_seconds: both see the same disk
 * weather (this disk is shared and noisy), so their ratio is meaningful. */
struct pair_result {
    double raw_mean_us, raw_median_us, wal_mean_us, wal_median_us;
    double raw_mb_s, wal_mb_s; /* payload bytes per second spent in each */
};

static struct pair_result paired(size_t raw_bytes, size_t entry_bytes, size_t batch)
{
    rmrf(g_dir);
    mkdir(g_dir, 0755);
    char path[1000];
    snprintf(path, sizeof(path), "%s/raw", g_dir);
    uint64_t raw_file = 2048ull << 20;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || posix_fallocate(fd, 0, (off_t)raw_file) != 0) {
        perror("raw file");
        exit(1);
    }
    fdatasync(fd);
    struct st_log_store s = open_wal("wal", 64ull << 20);
    uint8_t *buf = malloc(raw_bytes > entry_bytes * batch ? raw_bytes : entry_bytes * batch);
    memset(buf, 0x5a, raw_bytes > entry_bytes * batch ? raw_bytes : entry_bytes * batch);
    struct raft_entry *e = calloc(batch, sizeof(*e));
    struct lat lr = {0}, lw = {0};
    uint64_t off = 0, tr = 0, tw = 0;
    raft_index next = 1;
    uint64_t deadline = now_ns() + (uint64_t)(g_seconds * 2e9);
    while (now_ns() < deadline && off + raw_bytes <= raw_file) {
        uint64_t a = now_ns();
        if (pwrite(fd, buf, raw_bytes, (off_t)off) != (ssize_t)raw_bytes || fdatasync(fd) != 0)
            exit(1);
        uint64_t d = now_ns() - a;
        lat_add(&lr, d);
        tr += d;
        off += raw_bytes;
        for (size_t i = 0; i < batch; i++)
            e[i] = (struct raft_entry){.term = 1,
                                       .index = next + i,
                                       .type = RAFT_ENTRY_NORMAL,
                                       .data = buf + i * entry_bytes,
                                       .len = (uint32_t)entry_bytes};
        struct st_log_batch b = {.entries = e, .n_entries = batch};
        a = now_ns();
        if (s.ops->append(s.self, &b) != 0 || s.ops->sync(s.self) != 0) exit(1);
        d = now_ns() - a;
        lat_add(&lw, d);
        tw += d;
        next += batch;
    }
    struct pair_result r = {
        .raw_mean_us = lat_mean_us(&lr),
        .raw_median_us = lat_pct_us(&lr, 0.5),
        .wal_mean_us = lat_mean_us(&lw),
        .wal_median_us = lat_pct_us(&lw, 0.5),
        .raw_mb_s = (double)off / ((double)tr / 1e9) / 1e6,
        .wal_mb_s = (double)(next - 1) * (double)entry_bytes / ((double)tw / 1e9) / 1e6,
    };
    close(fd);
    s.ops->close(s.self);
    free(lr.v);
    free(lw.v);
    free(e);
    free(buf);
    return r;
}

/* ------------------------------------------------- through the writer */

/* Single-entry latency through the group-commit writer (submit, wait for the
 * callback), alternating op by op with a raw pwrite+fdatasync of raw_bytes. */
static void paired_writer_latency(size_t raw_bytes, size_t entry_bytes, double *ratio_mean,
                                  double *ratio_median, double *wal_mean, double *raw_mean)
{
    rmrf(g_dir);
    mkdir(g_dir, 0755);
    char path[1000];
    snprintf(path, sizeof(path), "%s/raw", g_dir);
    uint64_t raw_file = 256ull << 20;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || posix_fallocate(fd, 0, (off_t)raw_file) != 0) exit(1);
    fdatasync(fd);
    struct st_log_store s = open_wal("wal", 64ull << 20);
    struct gc_ctx c = {.done_seq = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cond, NULL);
    struct st_log_writer *w;
    if (st_log_writer_create(&s, NULL, gc_cb, &c, &w) != 0) exit(1);
    uint8_t *buf = calloc(1, raw_bytes > entry_bytes ? raw_bytes : entry_bytes);
    struct lat lr = {0}, lw = {0};
    uint64_t off = 0, seq = 0;
    raft_index next = 1;
    uint64_t deadline = now_ns() + (uint64_t)(g_seconds * 2e9);
    while (now_ns() < deadline && off + raw_bytes <= raw_file) {
        uint64_t a = now_ns();
        if (pwrite(fd, buf, raw_bytes, (off_t)off) != (ssize_t)raw_bytes || fdatasync(fd) != 0)
            exit(1);
        lat_add(&lr, now_ns() - a);
        off += raw_bytes;
        struct raft_entry e = {.term = 1,
                               .index = next++,
                               .type = RAFT_ENTRY_NORMAL,
                               .data = buf,
                               .len = (uint32_t)entry_bytes};
        struct st_log_batch b = {.entries = &e, .n_entries = 1};
        a = now_ns();
        if (st_log_writer_submit(w, &b, &seq) != 0) exit(1);
        pthread_mutex_lock(&c.mu);
        while (c.done_seq < seq)
            pthread_cond_wait(&c.cond, &c.mu);
        pthread_mutex_unlock(&c.mu);
        lat_add(&lw, now_ns() - a);
    }
    *wal_mean = lat_mean_us(&lw);
    *raw_mean = lat_mean_us(&lr);
    *ratio_mean = *wal_mean / *raw_mean;
    *ratio_median = lat_pct_us(&lw, 0.5) / lat_pct_us(&lr, 0.5);
    st_log_writer_destroy(w);
    s.ops->close(s.self);
    close(fd);
    free(lr.v);
    free(lw.v);
    free(buf);
}

/* Batched throughput through the writer (`window` batches of 256 x 4 KiB in
 * flight), alternating 0.25 s blocks with raw 1 MiB pwrite+fdatasync. */
static void paired_writer_throughput(double *wal_mb_s, double *raw_mb_s)
{
    rmrf(g_dir);
    mkdir(g_dir, 0755);
    char path[1000];
    snprintf(path, sizeof(path), "%s/raw", g_dir);
    uint64_t raw_file = 4096ull << 20;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || posix_fallocate(fd, 0, (off_t)raw_file) != 0) exit(1);
    fdatasync(fd);
    struct st_log_store s = open_wal("wal", 64ull << 20);
    struct gc_ctx c = {.done_seq = 0};
    pthread_mutex_init(&c.mu, NULL);
    pthread_cond_init(&c.cond, NULL);
    struct st_log_writer *w;
    if (st_log_writer_create(&s, NULL, gc_cb, &c, &w) != 0) exit(1);
    size_t batch = 256, entry = 4096, window = 4;
    uint8_t *buf = calloc(1, batch * entry);
    struct raft_entry *e = calloc(window * batch, sizeof(*e));
    uint64_t off = 0, seq = 0, raw_ns = 0, wal_ns = 0, wal_bytes = 0;
    raft_index next = 1;
    uint64_t end = now_ns() + (uint64_t)(g_seconds * 2e9);
    while (now_ns() < end && off + (1 << 20) <= raw_file) {
        uint64_t a = now_ns(), stop = a + 250000000ull;
        while (now_ns() < stop && off + (1 << 20) <= raw_file) {
            if (pwrite(fd, buf, 1 << 20, (off_t)off) != (1 << 20) || fdatasync(fd) != 0) exit(1);
            off += 1 << 20;
        }
        raw_ns += now_ns() - a;
        a = now_ns();
        stop = a + 250000000ull;
        while (now_ns() < stop) {
            pthread_mutex_lock(&c.mu);
            while (seq - c.done_seq >= window)
                pthread_cond_wait(&c.cond, &c.mu);
            pthread_mutex_unlock(&c.mu);
            struct raft_entry *eb = e + (seq % window) * batch;
            for (size_t i = 0; i < batch; i++)
                eb[i] = (struct raft_entry){.term = 1,
                                            .index = next + i,
                                            .type = RAFT_ENTRY_NORMAL,
                                            .data = buf + i * entry,
                                            .len = (uint32_t)entry};
            struct st_log_batch b = {.entries = eb, .n_entries = batch};
            if (st_log_writer_submit(w, &b, &seq) != 0) exit(1);
            next += batch;
            wal_bytes += batch * entry;
        }
        pthread_mutex_lock(&c.mu);
        while (c.done_seq < seq)
            pthread_cond_wait(&c.cond, &c.mu);
        pthread_mutex_unlock(&c.mu);
        wal_ns += now_ns() - a;
    }
    *wal_mb_s = (double)wal_bytes / ((double)wal_ns / 1e9) / 1e6;
    *raw_mb_s = (double)off / ((double)raw_ns / 1e9) / 1e6;
    st_log_writer_destroy(w);
    s.ops->close(s.self);
    close(fd);
    free(e);
    free(buf);
}

int main(int argc, char **argv)
{
    snprintf(g_dir, sizeof(g_dir), "./wal_bench.data");
    uint64_t startup_mib = 1024;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            snprintf(g_dir, sizeof(g_dir), "%s", argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            g_seconds = strtod(argv[++i], NULL);
        else if (strcmp(argv[i], "--startup-mib") == 0 && i + 1 < argc)
            startup_mib = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--quick") == 0) {
            g_seconds = 0.5;
            startup_mib = 64;
        } else {
            fprintf(stderr, "usage: %s [--dir DIR] [--seconds S] [--startup-mib N] [--quick]\n",
                    argv[0]);
            return 2;
        }
    }
    rmrf(g_dir);
    if (mkdir(g_dir, 0755) != 0) {
        perror(g_dir);
        return 1;
    }
    printf("wal_bench in %s, %.1f s per measurement\n\n", g_dir, g_seconds);
    struct raw_result raw = raw_loop(4096, 256ull << 20);
    printf("raw disk: 4 KiB pwrite+fdatasync: %.0f/s, mean %.1f us, p99 %.1f us\n", raw.ops_s,
           raw.mean_us, raw.p99_us);
    struct raw_result raw_small = raw_loop(128, 64ull << 20);
    printf("raw disk: 128 B pwrite+fdatasync: %.0f/s, mean %.1f us, p99 %.1f us\n", raw_small.ops_s,
           raw_small.mean_us, raw_small.p99_us);
    struct raw_result bw = raw_loop(1 << 20, 2048ull << 20);
    printf("raw disk: 1 MiB pwrite+fdatasync: %.0f MB/s (mean %.1f us per MiB)\n\n", bw.mb_s,
           bw.mean_us);

    printf("%-8s %-6s %12s %10s %12s %10s %10s\n", "entry", "batch", "entries/s", "syncs/s",
           "mean us", "p99 us", "MB/s");
    size_t sizes[] = {100, 4096}, batches[] = {1, 16, 256};
    for (size_t si = 0; si < 2; si++)
        for (size_t bi = 0; bi < 3; bi++) {
            struct wal_result r = wal_loop(sizes[si], batches[bi]);
            printf("%-8zu %-6zu %12.0f %10.0f %12.1f %10.1f %10.1f\n", sizes[si], batches[bi],
                   r.entries_s, r.syncs_s, r.mean_us, r.p99_us, r.mb_s);
        }
    double gc_rate, gc_per_sync;
    group_commit(100, 64, &gc_rate, &gc_per_sync);
    printf(
        "\ngroup commit (writer thread, 64 one-entry batches of 100 B in flight): %.0f entries/s, "
        "%.1f entries per fdatasync\n",
        gc_rate, gc_per_sync);

    printf("\nratios, measured interleaved (one raw op, one WAL op, alternately, %.0f s each):\n",
           2 * g_seconds);
    struct pair_result p1 = paired(128, 100, 1);
    printf("  single 100 B entry: WAL append+sync mean %.1f us (median %.1f) vs raw 128 B "
           "pwrite+fdatasync mean %.1f us (median %.1f): ratio %.2f (median %.2f), target <= 1.2\n",
           p1.wal_mean_us, p1.wal_median_us, p1.raw_mean_us, p1.raw_median_us,
           p1.wal_mean_us / p1.raw_mean_us, p1.wal_median_us / p1.raw_median_us);
    struct pair_result p2 = paired(4096, 4096, 1);
    printf("  single 4 KiB entry: WAL mean %.1f us (median %.1f) vs raw 4 KiB mean %.1f us "
           "(median %.1f): ratio %.2f (median %.2f), target <= 1.2\n",
           p2.wal_mean_us, p2.wal_median_us, p2.raw_mean_us, p2.raw_median_us,
           p2.wal_mean_us / p2.raw_mean_us, p2.wal_median_us / p2.raw_median_us);
    struct pair_result p3 = paired(1 << 20, 4096, 256);
    printf(
        "  batched 256 x 4 KiB (append+sync, serial): WAL %.0f MB/s vs raw 1 MiB writes %.0f MB/s: "
        "ratio %.2f, target >= 0.8\n",
        p3.wal_mb_s, p3.raw_mb_s, p3.wal_mb_s / p3.raw_mb_s);
    double rm, rmed, wm, rwm;
    paired_writer_latency(128, 100, &rm, &rmed, &wm, &rwm);
    printf("  single 100 B entry through the writer thread (submit -> callback): mean %.1f us vs "
           "raw 128 B %.1f us: ratio %.2f (median %.2f), target <= 1.2\n",
           wm, rwm, rm, rmed);
    double wmb, rmb;
    paired_writer_throughput(&wmb, &rmb);
    printf("  batched 256 x 4 KiB through the pipelined writer (4 batches in flight): %.0f MB/s vs "
           "raw %.0f MB/s: ratio %.2f, target >= 0.8\n\n",
           wmb, rmb, wmb / rmb);
    startup(startup_mib);
    rmrf(g_dir);
    return 0;
}
