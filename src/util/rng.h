/* Seeded pseudo-random generator (xoshiro256**, seeded by splitmix64).
 * Deterministic: the same seed gives the same sequence on every platform.
 * The consensus core receives one of these at creation; it never reads a
 * global source of randomness. */
#ifndef ST_UTIL_RNG_H
#define ST_UTIL_RNG_H

#include <stdint.h>

struct st_rng {
    uint64_t s[4];
};

void st_rng_init(struct st_rng *rng, uint64_t seed);
uint64_t st_rng_next(struct st_rng *rng);
/* Uniform in [0, bound); bound > 0. */
uint64_t st_rng_below(struct st_rng *rng, uint64_t bound);
/* True with probability num/den. */
int st_rng_chance(struct st_rng *rng, uint64_t num, uint64_t den);

#endif
