/* Fuzz target bodies for transactions: the POST /txn body parser
 * (api/txn_parse.h) and the kv command decoder with TXN entries applied
 * (kv/command.h, kv/txn.h). Shared by the libFuzzer drivers
 * (tests/fuzz/fuzz_txn_json.c, fuzz_kv_cmd.c) and the deterministic smoke
 * test (tests/unit/api/test_txn_fuzz_smoke.c).
 *
 * fuzz_txn_json_target: 0 when the body parses; then every item is a valid
 * kv item within the limits, and its bytes lie inside the parser's arena.
 * fuzz_kv_cmd_target: 0 when the bytes decode as a command; a decoded
 * command re-encodes to the same bytes (one encoding per command), and a
 * TXN applies to a small state on two replicas alike, which stay valid.
 * The TXN applied is the input with its value bound lowered to at most
 * FUZZ_KV_CMD_VALUE_BYTES_MAX: the bound an input names goes up to
 * KV_VALUE_BYTES_HARD_MAX (256 MiB), and a SETRANGE at a large offset then
 * built, and the digest hashed, a value of that size: one such input in the
 * corpus took 1.4 s (the driver fell from 48,000 to 1,500 inputs/s). Every
 * op compares against the bound the same way, so a small one reaches the
 * same paths, the too-big refusals more often. */
#ifndef ST_FUZZ_TARGETS_TXN_H
#define ST_FUZZ_TARGETS_TXN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/txn_parse.h"
#include "kv/command.h"
#include "kv/kv.h"
#include "util/assert.h"

#define FUZZ_KV_CMD_VALUE_BYTES_MAX (64u * 1024u)

static inline int fuzz_txn_json_target(const uint8_t *data, size_t size)
{
    struct api_txn_limits lim = {64, 32, 256};
    struct api_txn t;
    char err[128];
    int rc = api_txn_parse((const char *)data, size, &lim, &t, err, sizeof err);
    if (rc == 0) {
        uint32_t n = t.guards + t.success + t.failure;
        ST_ASSERT(n <= lim.items_max);
        for (uint32_t i = 0; i < n; i++) {
            const struct kv_txn_item *it = &t.items[i];
            ST_ASSERT(kv_txn_item_check(it, i < t.guards) == 0);
            ST_ASSERT(it->key_len <= lim.key_bytes_max && it->val_len <= lim.value_bytes_max);
            if (it->key_len)
                ST_ASSERT((const char *)it->key >= t.arena &&
                          (const char *)it->key + it->key_len <= t.arena + size + 1);
            if (it->val_len)
                ST_ASSERT((const char *)it->val >= t.arena &&
                          (const char *)it->val + it->val_len <= t.arena + size + 1);
        }
    } else {
        ST_ASSERT(strlen(err) > 0);
    }
    api_txn_free(&t);
    return rc == 0 ? 0 : 1;
}

static inline int fuzz_kv_cmd_target(const uint8_t *data, size_t size)
{
    struct kv_command c;
    if (kv_command_decode(data, size, NULL, &c) != 0) return 1;
    /* Canonical: re-encoding the decoded command gives the same bytes. */
    struct kv_txn_item *items = NULL;
    uint32_t n = c.txn_guards + c.txn_success + c.txn_failure;
    if (c.type == KV_CMD_TXN) {
        items = malloc((n ? n : 1) * sizeof *items);
        ST_ASSERT(items != NULL);
        size_t pos = 0;
        for (uint32_t i = 0; i < n; i++)
            ST_ASSERT(kv_txn_next(&c, &pos, &items[i]) == 1);
        c.txn_items = items;
    }
    uint8_t *re = NULL;
    if (c.type != KV_CMD_EVICT) {
        re = malloc(size ? size : 1);
        size_t len = 0;
        ST_ASSERT(re != NULL);
        ST_ASSERT(kv_command_encode(&c, re, size, &len) == 0);
        ST_ASSERT(len == size && memcmp(re, data, size) == 0);
        if (c.type == KV_CMD_TXN && c.txn_value_bytes_max > FUZZ_KV_CMD_VALUE_BYTES_MAX) {
            c.txn_value_bytes_max = FUZZ_KV_CMD_VALUE_BYTES_MAX;
            ST_ASSERT(kv_command_encode(&c, re, size, &len) == 0 && len == size);
            data = re; /* the same command with the lower bound */
        }
    }
    free(items);
    if (c.type == KV_CMD_TXN) {
        /* Two replicas with a few keys apply it alike. */
        struct kv *a = NULL, *b = NULL;
        ST_ASSERT(kv_create(NULL, &a) == 0 && kv_create(NULL, &b) == 0);
        static const char *const keys[] = {"a", "b", "k", "n"};
        for (int r = 0; r < 2; r++) {
            struct kv *kv = r ? b : a;
            for (uint64_t i = 0; i < 4; i++) {
                struct kv_command p = {.type = KV_CMD_PUT,
                                       .timestamp_ms = 1000,
                                       .ttl_ms = i == 2 ? 500 : 0,
                                       .key = (const uint8_t *)keys[i],
                                       .key_len = 1,
                                       .value = (const uint8_t *)"12",
                                       .value_len = 2};
                uint8_t buf[128];
                size_t len = 0;
                struct kv_result res;
                ST_ASSERT(kv_command_encode(&p, buf, sizeof buf, &len) == 0);
                ST_ASSERT(kv_apply(kv, i + 1, buf, len, &res) == 0);
            }
        }
        struct kv_result ra, rb;
        int rca = kv_apply(a, 10, data, size, &ra);
        int rcb = kv_apply(b, 10, data, size, &rb);
        ST_ASSERT(rca == rcb);
        if (rca == 0) {
            ST_ASSERT(ra.txn_n == rb.txn_n && ra.txn_succeeded == rb.txn_succeeded);
            ST_ASSERT(kv_digest(a) == kv_digest(b));
            ST_ASSERT(kv_check_invariants(a) == 0);
        }
        kv_destroy(a);
        kv_destroy(b);
    }
    free(re);
    return 0;
}

#endif
