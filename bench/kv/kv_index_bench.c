/* The ordered index (kv_index.h) at scale: memory per key, its share of a
 * PUT and a DELETE, and listing 1,000 keys under a prefix.
 *
 *   kv_index_bench [keys]      (default 1000000 keys of 100-byte values)
 *
 * Fills a kv with `keys` PUTs of new keys in random order and reports:
 *   - ns per PUT through kv_apply (the index included), and ns per insert
 *     of the same entries into a second, standalone index: the index's
 *     share of a PUT ("without" = the difference);
 *   - the index's bytes per key (malloc accounting, kv_stats.index_bytes)
 *     and the RSS the second index added, against the kv's total;
 *   - kv_list of the 1,000 keys under one prefix (median of 201 runs over
 *     different prefixes), with and without reading each value;
 *   - ns per DELETE through kv_apply of every key, and per standalone
 *     index remove.
 * Not a test: prints figures (docs/BENCHMARKS.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/command.h"
#include "kv/kv.h"
#include "kv/kv_index.h"
#include "kv/kv_int.h"
#include "kv/kv_list.h"

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            v = strtol(line + 6, NULL, 10);
            break;
        }
    if (f) fclose(f);
    return v;
}

static uint64_t rnd_state = 42;
static uint64_t rnd(void)
{
    uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void apply(struct kv *kv, uint64_t index, enum kv_cmd_type type, uint64_t key)
{
    char k[16];
    uint8_t v[100], buf[256];
    size_t len = 0;
    snprintf(k, sizeof k, "k%07llu", (unsigned long long)key);
    memset(v, 'v', sizeof v);
    struct kv_command c = {.type = type,
                           .req = {1, index},
                           .key = (const uint8_t *)k,
                           .key_len = (uint32_t)strlen(k),
                           .value = v,
                           .value_len = type == KV_CMD_PUT ? sizeof v : 0};
    struct kv_result r;
    if (kv_command_encode(&c, buf, sizeof buf, &len) != 0 || kv_apply(kv, index, buf, len, &r) != 0)
        abort();
}

static int touch_cb(void *ctx, const struct kv_list_item *it)
{
    uint64_t *sum = ctx;
    *sum += it->value[it->value_len - 1] + it->key_len;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    if (n < 2000 || n > 10000000) {
        fprintf(stderr, "keys: 2000 .. 10000000\n");
        return 2;
    }
    uint64_t *order = malloc(n * sizeof(*order));
    for (uint64_t i = 0; i < n; i++)
        order[i] = i;
    for (uint64_t i = n - 1; i > 0; i--) {
        uint64_t j = rnd() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return 1;
    long rss0 = rss_kib();
    uint64_t index = 0;
    double t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        apply(kv, ++index, KV_CMD_PUT, order[i]);
    double put_ns = (now_ns() - t0) / (double)n;
    long rss1 = rss_kib();
    struct kv_stats st;
    kv_stats(kv, &st);

    /* The same entries into a standalone index, in the same order. */
    struct kv_entry **ents = malloc(n * sizeof(*ents));
    for (uint64_t i = 0; i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%07llu", (unsigned long long)order[i]);
        ents[i] = kv_index_find(&kv->st.idx, k, strlen(k));
    }
    struct kv_config cfg;
    kv_config_default(&cfg);
    struct kv_index ix;
    kv_index_init(&ix);
    long rss2 = rss_kib();
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        if (kv_index_reserve(&ix, &cfg) != 0) abort();
        kv_index_insert(&ix, ents[i]);
    }
    double ins_ns = (now_ns() - t0) / (double)n;
    long rss3 = rss_kib();
    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        kv_index_remove(&ix, ents[(i * 7919) % n]); /* n not a multiple of 7919: a permutation */
    double rm_ns = (now_ns() - t0) / (double)n;
    kv_index_free(&ix);

    /* List 1,000 keys under a prefix: "k0012" holds k0012000..k0012999. */
    enum { RUNS = 201 };
    double lt[RUNS], lk[RUNS];
    uint64_t sum = 0, listed = 0;
    for (int r = 0; r < RUNS; r++) {
        char p[16];
        snprintf(p, sizeof p, "k%04llu", (unsigned long long)(rnd() % (n / 1000)));
        struct kv_list_args a = {
            .prefix = (const uint8_t *)p, .prefix_len = strlen(p), .limit = 1000};
        struct kv_list_result res;
        t0 = now_ns();
        if (kv_list(kv, &a, 0, touch_cb, &sum, &res) != 0) abort();
        lt[r] = now_ns() - t0;
        listed += res.count;
        t0 = now_ns();
        if (kv_list(kv, &a, 0, NULL, NULL, &res) != 0) abort();
        lk[r] = now_ns() - t0;
    }
    qsort(lt, RUNS, sizeof(double), cmp_double);
    qsort(lk, RUNS, sizeof(double), cmp_double);

    t0 = now_ns();
    for (uint64_t i = 0; i < n; i++)
        apply(kv, ++index, KV_CMD_DELETE, order[(i * 7919) % n]);
    double del_ns = (now_ns() - t0) / (double)n;

    printf("keys                         %llu (100-byte values, random insert order)\n",
           (unsigned long long)n);
    printf("kv memory_bytes per key      %.1f (entries + table + index)\n",
           (double)st.memory_bytes / (double)n);
    printf("index bytes per key          %.1f (malloc usable size of its nodes)\n",
           (double)st.index_bytes / (double)n);
    printf("RSS per key, whole kv        %.1f\n", (double)(rss1 - rss0) * 1024.0 / (double)n);
    printf("RSS per key, a second index  %.1f\n", (double)(rss3 - rss2) * 1024.0 / (double)n);
    printf("PUT (new key) via kv_apply   %.0f ns, of which index insert %.0f ns\n", put_ns, ins_ns);
    printf("DELETE via kv_apply          %.0f ns, index remove alone %.0f ns\n", del_ns, rm_ns);
    printf("list 1000 keys by prefix     median %.1f us (p99 %.1f us) reading values; "
           "count only %.1f us (%llu keys listed in %d runs)\n",
           lt[RUNS / 2] / 1e3, lt[RUNS * 99 / 100] / 1e3, lk[RUNS / 2] / 1e3,
           (unsigned long long)listed, RUNS);
    if (sum == 42) puts("");
    kv_destroy(kv);
    free(ents);
    free(order);
    return 0;
}
