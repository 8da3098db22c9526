/* Shared helpers for the storage tests: deterministic payloads, temp dirs. */
#ifndef ST_TEST_STORAGE_HELPERS_H
#define ST_TEST_STORAGE_HELPERS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stcache/storage.h"

/* Payload of entry (index, term): len bytes derived from both, so a test can
 * check any entry it reads without keeping a copy. */
static inline uint32_t h_len(raft_index index, raft_term term, uint32_t max)
{
    uint64_t x = index * 0x9E3779B97F4A7C15ull ^ term * 0xC2B2AE3D27D4EB4Full;
    x ^= x >> 29;
    return max ? (uint32_t)(x % (max + 1)) : 0;
}

static inline void h_fill(uint8_t *p, uint32_t len, raft_index index, raft_term term)
{
    uint64_t x = index * 1000003ull + term * 7919ull + 1;
    for (uint32_t i = 0; i < len; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (uint8_t)(x >> 56);
    }
}

static inline int h_check(const struct raft_entry *e, raft_index index, raft_term term)
{
    if (e->index != index || e->term != term) return 0;
    uint8_t tmp[70000];
    if (e->len > sizeof(tmp)) return 0;
    h_fill(tmp, e->len, index, term);
    return e->len == 0 || memcmp(tmp, e->data, e->len) == 0;
}

/* Entries [lo, hi) of `term`, payload sizes up to max_len; data in *bufp (free it). */
static inline struct raft_entry *h_make(raft_index lo, raft_index hi, raft_term term,
                                        uint32_t max_len, uint8_t **bufp)
{
    size_t n = (size_t)(hi - lo), total = 0;
    struct raft_entry *e = calloc(n ? n : 1, sizeof(*e));
    for (size_t i = 0; i < n; i++)
        total += h_len(lo + i, term, max_len);
    uint8_t *buf = malloc(total ? total : 1);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t len = h_len(lo + i, term, max_len);
        h_fill(buf + off, len, lo + i, term);
        e[i] = (struct raft_entry){.term = term,
                                   .index = lo + i,
                                   .type = RAFT_ENTRY_NORMAL,
                                   .data = len ? buf + off : NULL,
                                   .len = len};
        off += len;
    }
    *bufp = buf;
    return e;
}

static inline void h_tmpdir(char *out, size_t cap, const char *tag)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, cap, "%s/st-%s-XXXXXX", base ? base : "/tmp", tag);
    if (!mkdtemp(out)) abort();
}

static inline void h_rmrf(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    /* The test's own mkdtemp directory: no untrusted input reaches the shell. */
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir); // NOLINT(cert-env33-c)
}

static inline int h_sanitized(void)
{
    const char *s = getenv("ST_SANITIZED");
    return s && s[0] == '1';
}

#endif
