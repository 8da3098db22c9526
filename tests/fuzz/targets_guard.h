/* Fuzz target body for the request checks of the HTTP API (api/guard.h):
 * Host, Origin and Content-Type header values arrive from any client.
 * Shared by the libFuzzer driver (tests/fuzz/fuzz_guard.c) and the
 * deterministic smoke test (tests/unit/api/test_guard_fuzz_smoke.c).
 *
 * Input: "ALLOWLIST\nHEADER VALUE" (no newline: an empty list). Returns 0
 * when the value is an allowed Host for the list, 1 otherwise. Beyond "no
 * crash": the Origin host span stays inside the value, "*" admits every
 * non-empty value, and a value without commas admits itself as a list. */
#ifndef ST_FUZZ_TARGETS_GUARD_H
#define ST_FUZZ_TARGETS_GUARD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/guard.h"
#include "util/assert.h"

static inline int fuzz_guard_target(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t list_len = nl ? (size_t)(nl - data) : 0;
    const uint8_t *v = nl ? nl + 1 : data;
    size_t vlen = size - (size_t)(v - data);
    char *list = malloc(list_len + 1);
    char *value = malloc(vlen ? vlen : 1); /* exact size: ASan sees over-reads */
    char *self = malloc(vlen + 1);
    ST_ASSERT(list && value && self);
    memcpy(list, data, list_len);
    list[list_len] = '\0';
    if (vlen) memcpy(value, v, vlen);
    memcpy(self, v, vlen);
    self[vlen] = '\0';

    const char *oh;
    size_t ohl;
    if (api_guard_origin_host(value, vlen, &oh, &ohl))
        ST_ASSERT(ohl > 0 && oh >= value && oh + ohl <= value + vlen);
    (void)api_guard_content_type_ok(value, vlen);
    (void)api_guard_host_loopback(value, vlen);
    ST_ASSERT(api_guard_host_listed("*", value, vlen) == (vlen > 0));
    if (vlen > 0 && !memchr(value, ',', vlen) && strlen(self) == vlen)
        ST_ASSERT(api_guard_host_listed(self, value, vlen));
    int rc = api_guard_host_listed(list, value, vlen) ? 0 : 1;
    free(list);
    free(value);
    free(self);
    return rc;
}

#endif
