/* The deterministic side of the fuzz drivers: seeded mutations of a seed
 * corpus, run as ordinary unit tests so that every CI run (and the ASan
 * build) exercises each target. Used by tests/unit/<module>/test_fuzz_smoke.c
 * of the text and snapshot parsers. */
#ifndef ST_FUZZ_SMOKE_H
#define ST_FUZZ_SMOKE_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/assert.h"
#include "util/rng.h"
#include "wire/le.h"

#define FUZZ_SMOKE_INPUT_MAX 8192
#define FUZZ_SMOKE_SEEDS_MAX 48

struct fuzz_smoke_seeds {
    uint8_t data[FUZZ_SMOKE_SEEDS_MAX][FUZZ_SMOKE_INPUT_MAX];
    size_t len[FUZZ_SMOKE_SEEDS_MAX];
    char name[FUZZ_SMOKE_SEEDS_MAX][64];
    int n;
};

/* Loads the files of tests/fuzz/corpus/<kind>/ (found from this header's own path).
 * Returns the number of files loaded (0 if the directory is missing). */
static inline int fuzz_smoke_load(struct fuzz_smoke_seeds *s, const char *kind)
{
    char dir[1024];
    const char *me = __FILE__;
    const char *cut = strstr(me, "smoke.h");
    ST_ASSERT(cut != NULL);
    snprintf(dir, sizeof(dir), "%.*scorpus/%s", (int)(cut - me), me, kind);
    s->n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && s->n < FUZZ_SMOKE_SEEDS_MAX) {
        if (de->d_name[0] == '.') continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        ST_ASSERT(f != NULL);
        s->len[s->n] = fread(s->data[s->n], 1, FUZZ_SMOKE_INPUT_MAX, f);
        fclose(f);
        size_t nl = strnlen(de->d_name, sizeof(s->name[0]) - 1);
        memcpy(s->name[s->n], de->d_name, nl);
        s->name[s->n][nl] = '\0';
        s->n++;
    }
    closedir(d);
    return s->n;
}

/* One mutation of in[0..len) into out (FUZZ_SMOKE_INPUT_MAX bytes); returns
 * the new length. Byte flips, interesting bytes, truncation, random and
 * nudged 32-bit fields, insertions, deletions, appended bytes, and (for the
 * text formats) splices of a few characters that matter to them. */
static inline size_t fuzz_smoke_mutate(struct st_rng *rng, const uint8_t *in, size_t len,
                                       uint8_t *out)
{
    memcpy(out, in, len);
    int rounds = 1 + (int)st_rng_below(rng, 4);
    for (int r = 0; r < rounds; r++) {
        switch (st_rng_below(rng, 9)) {
        case 0:
            if (len > 0) out[st_rng_below(rng, len)] ^= (uint8_t)(1u << st_rng_below(rng, 8));
            break;
        case 1: {
            static const uint8_t v[] = {0, 1, 0x7f, 0x80, 0xff, '"', '\\', '%', '{', ']', '\r'};
            if (len > 0) out[st_rng_below(rng, len)] = v[st_rng_below(rng, sizeof(v))];
            break;
        }
        case 2:
            if (len > 0) len = st_rng_below(rng, len);
            break;
        case 3:
            if (len >= 4) le_put32(out + st_rng_below(rng, len - 3), (uint32_t)st_rng_next(rng));
            break;
        case 4:
            if (len >= 8) {
                size_t off = st_rng_below(rng, len / 4) * 4;
                if (off + 4 <= len)
                    le_put32(out + off, le_get32(out + off) + (uint32_t)st_rng_below(rng, 5) - 2);
            }
            break;
        case 5:
            if (len < FUZZ_SMOKE_INPUT_MAX - 1) {
                size_t at = st_rng_below(rng, len + 1);
                memmove(out + at + 1, out + at, len - at);
                out[at] = (uint8_t)st_rng_next(rng);
                len++;
            }
            break;
        case 6:
            if (len > 1) {
                size_t at = st_rng_below(rng, len);
                size_t n = 1 + st_rng_below(rng, ST_MIN(len - at, (size_t)16));
                memmove(out + at, out + at + n, len - at - n);
                len -= n;
            }
            break;
        case 7: {
            static const char *const tok[] = {
                "\\u", "\r\n", "%2", ",", "[", "\":", "0\r\n\r\n", "\\ud800", "1e", "-0", ":"};
            const char *t = tok[st_rng_below(rng, sizeof(tok) / sizeof(tok[0]))];
            size_t tl = strlen(t);
            if (len + tl < FUZZ_SMOKE_INPUT_MAX) {
                size_t at = st_rng_below(rng, len + 1);
                memmove(out + at + tl, out + at, len - at);
                memcpy(out + at, t, tl);
                len += tl;
            }
            break;
        }
        default:
            for (int k = 0; k < 8 && len < FUZZ_SMOKE_INPUT_MAX; k++)
                out[len++] = (uint8_t)st_rng_next(rng);
            break;
        }
    }
    return len;
}

typedef int (*fuzz_smoke_target_fn)(const uint8_t *data, size_t size);

static struct fuzz_smoke_seeds fuzz_smoke_seeds_of_test;

/* Runs target on every file of corpus/<kind>: a file named bad_* must be
 * refused (nonzero), every other one accepted (0). Returns the file count. */
static inline int fuzz_smoke_corpus(const char *kind, fuzz_smoke_target_fn target)
{
    struct fuzz_smoke_seeds *s = &fuzz_smoke_seeds_of_test;
    int n = fuzz_smoke_load(s, kind);
    static uint8_t exact[FUZZ_SMOKE_INPUT_MAX];
    for (int i = 0; i < n; i++) {
        memcpy(exact, s->data[i], s->len[i]);
        int rc = target(exact, s->len[i]);
        int bad = strncmp(s->name[i], "bad_", 4) == 0;
        if ((rc != 0) != bad) {
            fprintf(stderr, "  corpus/%s/%s: result %d\n", kind, s->name[i], rc);
            ST_ASSERT(!"a seed has the wrong verdict");
        }
    }
    return n;
}

/* iterations mutations of the corpus/<kind> seeds, then as many inputs of
 * random bytes; counts the inputs accepted (0) and refused. */
static inline void fuzz_smoke_mutations(const char *kind, fuzz_smoke_target_fn target,
                                        uint64_t seed, int iterations, int *accepted, int *refused)
{
    struct fuzz_smoke_seeds *s = &fuzz_smoke_seeds_of_test;
    ST_ASSERT(fuzz_smoke_load(s, kind) > 0);
    struct st_rng rng;
    st_rng_init(&rng, seed);
    static uint8_t buf[FUZZ_SMOKE_INPUT_MAX];
    *accepted = *refused = 0;
    for (int iter = 0; iter < iterations; iter++) {
        int k = (int)st_rng_below(&rng, (uint64_t)s->n);
        size_t len = fuzz_smoke_mutate(&rng, s->data[k], s->len[k], buf);
        if (target(buf, len) == 0)
            ++*accepted;
        else
            ++*refused;
    }
    for (int iter = 0; iter < iterations / 4; iter++) {
        size_t len = st_rng_below(&rng, 300);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)st_rng_next(&rng);
        (void)target(buf, len);
    }
}

#endif
