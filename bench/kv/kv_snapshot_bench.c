/* Snapshot serialization cost per key: a kv of `keys` PUTs in random order
 * (entries scattered over the heap as in a node that took writes for a
 * while), then kv_snapshot_write into a sink that only counts bytes. What a
 * node spends on every snapshot it takes (the threshold is 65536 entries),
 * before the file write.
 *
 *   kv_snapshot_bench [keys] [rounds]
 *
 * Prints ns per key and MB/s per round. */
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

static int sink(void *ctx, const void *data, size_t len)
{
    (void)data;
    *(size_t *)ctx += len;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t keys = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    int rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 5;
    struct kv *kv = NULL;
    if (kv_create(NULL, &kv) != 0) return 1;
    struct st_rng rng;
    st_rng_init(&rng, 7);
    uint64_t index = 0;
    struct kv_result r;
    uint8_t v[100];
    memset(v, 'v', sizeof v);
    /* every key once, then as many random overwrites (reallocations scatter
     * the entries the way a running node's are) */
    for (uint64_t i = 0; i < 2 * keys; i++) {
        char k[16];
        uint64_t key = i < keys ? i : st_rng_below(&rng, keys);
        snprintf(k, sizeof k, "k%07llu", (unsigned long long)key);
        uint8_t cmd[256];
        size_t len;
        struct kv_command c = {.type = KV_CMD_PUT,
                               .req = {1, i + 1},
                               .key = (const uint8_t *)k,
                               .key_len = (uint32_t)strlen(k),
                               .value = v,
                               .value_len = (uint32_t)(50 + st_rng_below(&rng, 51))};
        if (kv_command_encode(&c, cmd, sizeof cmd, &len) != 0) return 1;
        if (kv_apply(kv, ++index, cmd, len, &r) != 0) return 1;
    }
    for (int round = 0; round < rounds; round++) {
        size_t bytes = 0;
        double t0 = now_ns();
        if (kv_snapshot_write(kv, index, "m", 1, sink, &bytes) != 0) return 1;
        double dt = now_ns() - t0;
        printf("keys %llu: %.1f ns/key, %.0f MB/s (%zu bytes, %.1f ms)\n", (unsigned long long)keys,
               dt / (double)keys, (double)bytes / dt * 1e3, bytes, dt / 1e6);
    }
    kv_destroy(kv);
    return 0;
}
