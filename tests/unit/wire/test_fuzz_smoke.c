/* Deterministic fuzz smoke of the Raft message codec: the libFuzzer target
 * body (tests/fuzz/targets.h) run on seeded random and mutated inputs for a
 * bounded number of iterations, so every CI run exercises the decoders under
 * ASan/UBSan. The seed corpus (written by tests/fuzz/make_corpus.py, an
 * independent encoder of docs/WIRE-FORMAT.md) must decode. */
#include <dirent.h>
#include <stdio.h>

#include "fuzz/targets.h"
#include "test.h"
#include "util/rng.h"
#include "wire/le.h"

#define INPUT_MAX 4096

struct seeds {
    uint8_t data[32][INPUT_MAX];
    size_t len[32];
    int n;
};

static struct seeds seeds;

static void add_seed(const struct raft_msg *m)
{
    ST_ASSERT(seeds.n < 32);
    size_t n;
    ST_ASSERT(wire_msg_encode(m, seeds.data[seeds.n], INPUT_MAX, &n) == 0);
    seeds.len[seeds.n++] = n;
}

static void make_seeds(void)
{
    static struct raft_snapshot_meta meta;
    static uint8_t payload[600];
    static struct raft_buf *buf;
    seeds.n = 0;
    if (buf == NULL) {
        buf = raft_buf_create(sizeof(payload));
        for (size_t i = 0; i < sizeof(payload); i++)
            buf->data[i] = (uint8_t)(i * 7);
    }
    memset(&meta, 0, sizeof(meta));
    meta.index = 50;
    meta.term = 3;
    meta.conf.n = 4;
    for (uint32_t i = 0; i < 4; i++) {
        meta.conf.members[i].id = i + 1;
        meta.conf.members[i].role = i == 3 ? RAFT_LEARNER : RAFT_VOTER;
        meta.conf.members[i].context_len = (uint16_t)(i * 9);
        memset(meta.conf.members[i].context, 'a' + (int)i, i * 9);
    }
    struct raft_entry ents[5];
    for (uint32_t i = 0; i < 5; i++)
        ents[i] = (struct raft_entry){.term = 2,
                                      .index = 10 + i,
                                      .type = (uint8_t)(1 + i % 3),
                                      .buf = buf,
                                      .data = buf->data + i * 50,
                                      .len = i == 2 ? 0 : 20 + i * 13};
    for (int t = RAFT_MSG_APPEND; t < RAFT_MSG_TYPE_MAX; t++) {
        struct raft_msg m = {.type = (uint8_t)t,
                             .from = 3,
                             .to = 1,
                             .term = 9,
                             .index = 9,
                             .log_term = 2,
                             .commit = 8,
                             .reject = t % 2,
                             .reject_hint = 4,
                             .hint_term = 1,
                             .context = 1234567};
        if (t == RAFT_MSG_SNAPSHOT) m.snapshot = &meta;
        if (t == RAFT_MSG_APPEND || t == RAFT_MSG_PROPOSE) {
            m.entries = ents;
            m.n_entries = t == RAFT_MSG_APPEND ? 5 : 1;
        }
        add_seed(&m);
    }
}

/* One mutation of in[0..len) into out; returns the new length. */
static size_t mutate(struct st_rng *rng, const uint8_t *in, size_t len, uint8_t *out)
{
    memcpy(out, in, len);
    int rounds = 1 + (int)st_rng_below(rng, 4);
    for (int r = 0; r < rounds; r++) {
        switch (st_rng_below(rng, 8)) {
        case 0: /* flip a bit */
            if (len > 0) out[st_rng_below(rng, len)] ^= (uint8_t)(1u << st_rng_below(rng, 8));
            break;
        case 1: { /* an interesting byte */
            static const uint8_t v[] = {0, 1, 2, 3, 0x7f, 0x80, 0xfe, 0xff};
            if (len > 0) out[st_rng_below(rng, len)] = v[st_rng_below(rng, sizeof(v))];
            break;
        }
        case 2: /* truncate */
            if (len > 0) len = st_rng_below(rng, len);
            break;
        case 3: /* a random u32 (a count or a length) at a random offset */
            if (len >= 4) le_put32(out + st_rng_below(rng, len - 3), (uint32_t)st_rng_next(rng));
            break;
        case 4: /* a small delta on a u32 at a 4-aligned offset */
            if (len >= 8) {
                size_t off = st_rng_below(rng, len / 4) * 4;
                if (off + 4 <= len)
                    le_put32(out + off, le_get32(out + off) + (uint32_t)st_rng_below(rng, 5) - 2);
            }
            break;
        case 5: /* insert a byte */
            if (len < INPUT_MAX - 1) {
                size_t at = st_rng_below(rng, len + 1);
                memmove(out + at + 1, out + at, len - at);
                out[at] = (uint8_t)st_rng_next(rng);
                len++;
            }
            break;
        case 6: /* delete a range */
            if (len > 1) {
                size_t at = st_rng_below(rng, len);
                size_t n = 1 + st_rng_below(rng, ST_MIN(len - at, (size_t)16));
                memmove(out + at, out + at + n, len - at - n);
                len -= n;
            }
            break;
        default: /* append random bytes */
            for (int k = 0; k < 8 && len < INPUT_MAX; k++)
                out[len++] = (uint8_t)st_rng_next(rng);
            break;
        }
    }
    return len;
}

TEST(seeds_decode_and_reencode_identically)
{
    make_seeds();
    for (int i = 0; i < seeds.n; i++)
        ASSERT_EQ(fuzz_msg_target(seeds.data[i], seeds.len[i]), 0);
}

TEST(mutated_messages_never_crash_or_leak_references)
{
    make_seeds();
    struct st_rng rng;
    st_rng_init(&rng, 0x5eed);
    static uint8_t buf[INPUT_MAX];
    int accepted = 0, rejected = 0;
    for (int iter = 0; iter < 60000; iter++) {
        int s = (int)st_rng_below(&rng, (uint64_t)seeds.n);
        size_t len = mutate(&rng, seeds.data[s], seeds.len[s], buf);
        if (fuzz_msg_target(buf, len) == 0)
            accepted++;
        else
            rejected++;
    }
    /* Both outcomes must be reached, or the mutator is not testing anything. */
    ASSERT_GE(accepted, 1000);
    ASSERT_GE(rejected, 1000);
}

TEST(random_bytes_never_crash)
{
    struct st_rng rng;
    st_rng_init(&rng, 42);
    static uint8_t buf[INPUT_MAX];
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = st_rng_below(&rng, 400);
        for (size_t i = 0; i < len; i++)
            buf[i] = (uint8_t)st_rng_next(&rng);
        /* Half of them with a plausible fixed part, to get past the first checks. */
        if (iter % 2 == 0 && len >= WIRE_MSG_FIXED_SIZE) {
            buf[0] = WIRE_MSG_VERSION;
            buf[1] = (uint8_t)(1 + st_rng_below(&rng, RAFT_MSG_TYPE_MAX - 1));
            buf[2] &= 3;
            buf[3] = 0;
            le_put32(buf + 4, (uint32_t)st_rng_below(&rng, 4));
        }
        int rv = fuzz_msg_target(buf, len);
        ASSERT_TRUE(rv == 0 || rv == ST_EPROTO);
    }
}

TEST(checked_in_corpus_decodes)
{
    /* The corpus sits next to this file's source tree: tests/fuzz/corpus/msg. */
    char dir[1024];
    const char *me = __FILE__;
    const char *cut = strstr(me, "unit/wire/test_fuzz_smoke.c");
    ASSERT_TRUE(cut != NULL);
    snprintf(dir, sizeof(dir), "%.*sfuzz/corpus/msg", (int)(cut - me), me);
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "  (no corpus at %s: skipped)\n", dir);
        return;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[1400];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        ASSERT_TRUE(f != NULL);
        static uint8_t buf[INPUT_MAX];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        int rv = fuzz_msg_target(buf, len);
        if (strcmp(de->d_name, "snapshot_meta") != 0 && rv != 0)
            ST_TEST_FAIL_("corpus file %s does not decode (%d)", de->d_name, rv);
        n++;
    }
    closedir(d);
    ASSERT_GE(n, 8);
}

TEST_MAIN()
