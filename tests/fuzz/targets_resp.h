/* Fuzz target body for the Redis protocol request parser (resp/parse.h):
 * bytes any client can send. Shared by the libFuzzer driver
 * (tests/fuzz/fuzz_resp.c) and the deterministic smoke test CI runs
 * (tests/unit/resp/test_parse.c).
 *
 * Beyond "no crash": every span stays inside the input, every call makes
 * progress or asks for more, the same bytes arriving in pieces give the
 * same commands as arriving at once, and every command re-encoded as a
 * multibulk parses back to the same arguments. Returns 0 when the input
 * holds no protocol error, 1 when it does. */
#ifndef ST_FUZZ_TARGETS_RESP_H
#define ST_FUZZ_TARGETS_RESP_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp/parse.h"
#include "util/assert.h"

#define FUZZ_RESP_ARGS_MAX 64u

/* FNV-1a over a command's arguments (lengths included). */
static inline uint64_t fuzz_resp_hash(const struct resp_arg *argv, uint32_t argc)
{
    uint64_t h = 1469598103934665603ull;
    for (uint32_t i = 0; i < argc; i++) {
        for (size_t k = 0; k < sizeof argv[i].len; k++) {
            h ^= (uint8_t)(argv[i].len >> (8 * k));
            h *= 1099511628211ull;
        }
        for (size_t k = 0; k < argv[i].len; k++) {
            h ^= argv[i].p[k];
            h *= 1099511628211ull;
        }
    }
    return h;
}

/* Parses buf whole; records up to cap command hashes. Returns the number
 * of commands; *error set on a protocol error. */
static inline uint32_t fuzz_resp_run(uint8_t *buf, size_t size, const struct resp_limits *lim,
                                     uint64_t *hashes, uint32_t cap, int *error, size_t step)
{
    struct resp_arg argv[FUZZ_RESP_ARGS_MAX];
    char err[RESP_ERR_BYTES_MAX];
    size_t off = 0, avail = step ? (step < size ? step : size) : size;
    uint32_t n = 0;
    *error = 0;
    for (;;) {
        uint32_t argc = 0;
        size_t used = 0;
        enum resp_parse_status st =
            resp_parse(buf + off, avail - off, lim, argv, &argc, &used, err);
        ST_ASSERT(used <= avail - off);
        if (st == RESP_PARSE_ERROR) {
            ST_ASSERT(strncmp(err, "Protocol error: ", 16) == 0);
            *error = 1;
            return n;
        }
        if (st == RESP_PARSE_COMMAND) {
            ST_ASSERT(argc >= 1 && argc <= lim->args_max && used > 0);
            for (uint32_t i = 0; i < argc; i++) {
                ST_ASSERT(argv[i].p >= buf + off && argv[i].p + argv[i].len <= buf + off + used);
                ST_ASSERT(argv[i].len <= lim->bulk_bytes_max || buf[off] != '*');
            }
            if (n < cap) hashes[n] = fuzz_resp_hash(argv, argc);
            n++;
            off += used;
            continue;
        }
        off += used;
        if (used > 0) continue;
        if (avail == size) return n; /* an incomplete tail */
        avail = avail + step < size ? avail + step : size;
    }
}

/* Re-encodes one command as a multibulk and parses it back. */
static inline void fuzz_resp_roundtrip(const struct resp_arg *argv, uint32_t argc,
                                       const struct resp_limits *lim)
{
    size_t cap = 32;
    for (uint32_t i = 0; i < argc; i++)
        cap += argv[i].len + 32;
    uint8_t *enc = malloc(cap);
    ST_ASSERT(enc != NULL);
    size_t len = (size_t)snprintf((char *)enc, cap, "*%u\r\n", argc);
    for (uint32_t i = 0; i < argc; i++) {
        len += (size_t)snprintf((char *)enc + len, cap - len, "$%zu\r\n", argv[i].len);
        memcpy(enc + len, argv[i].p, argv[i].len);
        len += argv[i].len;
        enc[len++] = '\r';
        enc[len++] = '\n';
    }
    struct resp_arg back[FUZZ_RESP_ARGS_MAX];
    uint32_t bc = 0;
    size_t used = 0;
    char err[RESP_ERR_BYTES_MAX];
    enum resp_parse_status st = resp_parse(enc, len, lim, back, &bc, &used, err);
    ST_ASSERT(st == RESP_PARSE_COMMAND && used == len && bc == argc);
    for (uint32_t i = 0; i < argc; i++)
        ST_ASSERT(back[i].len == argv[i].len &&
                  (argv[i].len == 0 || memcmp(back[i].p, argv[i].p, argv[i].len) == 0));
    free(enc);
}

static inline int fuzz_resp_target(const uint8_t *data, size_t size)
{
    struct resp_limits lim = {FUZZ_RESP_ARGS_MAX, 4096, 1024};
    uint8_t *a = malloc(size ? size : 1);
    uint8_t *b = malloc(size ? size : 1);
    ST_ASSERT(a != NULL && b != NULL);
    if (size) {
        memcpy(a, data, size);
        memcpy(b, data, size);
    }
    uint64_t ha[64], hb[64];
    int ea, eb;
    uint32_t na = fuzz_resp_run(a, size, &lim, ha, 64, &ea, 0);
    uint32_t nb = fuzz_resp_run(b, size, &lim, hb, 64, &eb, 7);
    /* In pieces, an inline line over the bound may be refused before its
     * newline arrives; otherwise the verdicts and commands agree. */
    if (!eb) {
        ST_ASSERT(!ea && na == nb);
    }
    uint32_t same = na < nb ? na : nb;
    for (uint32_t i = 0; i < same && i < 64; i++)
        ST_ASSERT(ha[i] == hb[i]);
    /* Round trip of the first command. */
    memcpy(a, data, size);
    struct resp_arg argv[FUZZ_RESP_ARGS_MAX];
    uint32_t argc;
    size_t used;
    char err[RESP_ERR_BYTES_MAX];
    size_t off = 0;
    for (;;) {
        enum resp_parse_status st = resp_parse(a + off, size - off, &lim, argv, &argc, &used, err);
        if (st == RESP_PARSE_COMMAND) fuzz_resp_roundtrip(argv, argc, &lim);
        if (st != RESP_PARSE_MORE || used == 0) break;
        off += used;
    }
    free(a);
    free(b);
    return ea;
}

#endif
