/* Apply cost of PUT overwrites of a fixed key set, in batches as the node
 * applies committed entries, with and without kv_prefetch() ahead of each
 * command. Between batches a buffer can be swept to stand in for what the
 * node does between two readies (syscalls, other threads): that is where the
 * kv's lines leave the cache.
 *
 *   kv_apply_bench [keys] [batch] [ops] [sweep_kib]
 *
 * Prints ns per command for both; compare the two lines of one run. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kv/command.h"
#include "kv/kv.h"
#include "util/rng.h"

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

struct cmdbuf {
    uint8_t b[256];
    size_t len;
};

static void make_put(struct cmdbuf *out, uint64_t key, uint64_t seq)
{
    char k[16];
    uint8_t v[100];
    snprintf(k, sizeof k, "k%07llu", (unsigned long long)key);
    memset(v, 'v', sizeof v);
    struct kv_command c = {.type = KV_CMD_PUT,
                           .req = {1, seq},
                           .key = (const uint8_t *)k,
                           .key_len = (uint32_t)strlen(k),
                           .value = v,
                           .value_len = sizeof v};
    if (kv_command_encode(&c, out->b, sizeof out->b, &out->len) != 0) abort();
}

static volatile uint8_t sink;

static double run(struct kv *kv, uint64_t *index, struct cmdbuf *cmds, size_t batch, size_t ops,
                  uint8_t *sweep, size_t sweep_bytes, int prefetch)
{
    double total = 0;
    struct kv_result r;
    for (size_t done = 0; done < ops; done += batch) {
        for (size_t i = 0; i < sweep_bytes; i += 64)
            sweep[i]++;
        sink = sweep[0];
        struct cmdbuf *c = &cmds[(done / batch) % 64 * batch];
        double t0 = now_ns();
        if (prefetch) {
            for (size_t j = 0; j < batch && j < 8; j++)
                kv_prefetch(kv, c[j].b, c[j].len, 0);
            for (size_t j = 0; j < batch && j < 4; j++)
                kv_prefetch(kv, c[j].b, c[j].len, 1);
        }
        for (size_t i = 0; i < batch; i++) {
            if (prefetch) {
                if (i + 8 < batch) kv_prefetch(kv, c[i + 8].b, c[i + 8].len, 0);
                if (i + 4 < batch) kv_prefetch(kv, c[i + 4].b, c[i + 4].len, 1);
            }
            if (kv_apply(kv, ++*index, c[i].b, c[i].len, &r) != 0) abort();
        }
        total += now_ns() - t0;
    }
    return total / (double)ops;
}

int main(int argc, char **argv)
{
    uint64_t keys = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    size_t batch = argc > 2 ? strtoull(argv[2], NULL, 10) : 32;
    size_t ops = argc > 3 ? strtoull(argv[3], NULL, 10) : 2000000;
    size_t sweep_bytes = (argc > 4 ? strtoull(argv[4], NULL, 10) : 4096) * 1024;
    if (keys == 0 || batch == 0 || ops == 0) {
        fprintf(stderr, "usage: kv_apply_bench [keys] [batch] [ops] [sweep_kib] (all > 0)\n");
        return 2;
    }
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return 1;
    uint64_t index = 0;
    struct kv_result r;
    struct cmdbuf one;
    for (uint64_t k = 0; k < keys; k++) {
        make_put(&one, k, ++index);
        if (kv_apply(kv, index, one.b, one.len, &r) != 0) return 1;
    }
    struct cmdbuf *cmds = calloc(batch * 64, sizeof *cmds);
    if (!cmds) return 1;
    struct st_rng rng;
    st_rng_init(&rng, 1);
    for (size_t i = 0; i < batch * 64; i++)
        make_put(&cmds[i], st_rng_below(&rng, keys), i);
    uint8_t *sweep = calloc(1, sweep_bytes + 64);
    for (int round = 0; round < 3; round++) {
        double a = run(kv, &index, cmds, batch, ops, sweep, sweep_bytes, 0);
        double b = run(kv, &index, cmds, batch, ops, sweep, sweep_bytes, 1);
        printf("keys %llu batch %zu sweep %zu KiB: plain %.1f ns/op, prefetch %.1f ns/op (%.2fx)\n",
               (unsigned long long)keys, batch, sweep_bytes / 1024, a, b, a / b);
    }
    free(sweep);
    free(cmds);
    kv_destroy(kv);
    return 0;
}
