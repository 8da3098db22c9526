/* Open connections per client address (http_server_config.conns_per_ip_max):
 * an open-addressing table with linear probing and backward-shift deletion,
 * sized at creation for every connection the server admits, so counting
 * never allocates. */
#include <stdlib.h>
#include <string.h>

#include "http/server_int.h"
#include "stcache/errors.h"
#include "util/assert.h"

/* FNV-1a over the 16 address bytes. */
static uint32_t ipcount_hash(const uint8_t addr[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++) {
        h ^= addr[i];
        h *= 16777619u;
    }
    return h;
}

int http_ipcount_init(struct http_ipcount *t, uint32_t entries_max)
{
    uint32_t cap = 16;
    while (cap < 2u * entries_max && cap < (1u << 30))
        cap <<= 1;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots) return ST_ENOMEM;
    t->cap = cap;
    t->used = 0;
    return 0;
}

void http_ipcount_free(struct http_ipcount *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->used = 0;
}

static uint32_t ipcount_find(const struct http_ipcount *t, const uint8_t addr[16])
{
    uint32_t mask = t->cap - 1, i = ipcount_hash(addr) & mask;
    while (t->slots[i].count > 0 && memcmp(t->slots[i].addr, addr, 16) != 0)
        i = (i + 1) & mask;
    return i;
}

uint32_t http_ipcount_get(const struct http_ipcount *t, const uint8_t addr[16])
{
    return t->slots[ipcount_find(t, addr)].count;
}

int http_ipcount_add(struct http_ipcount *t, const uint8_t addr[16])
{
    uint32_t i = ipcount_find(t, addr);
    if (t->slots[i].count == 0) {
        if (2u * (t->used + 1) > t->cap) return ST_ENOMEM; /* beyond the sizing: refuse */
        memcpy(t->slots[i].addr, addr, 16);
        t->used++;
    }
    t->slots[i].count++;
    return 0;
}

void http_ipcount_del(struct http_ipcount *t, const uint8_t addr[16])
{
    uint32_t mask = t->cap - 1, i = ipcount_find(t, addr);
    ST_ASSERT(t->slots[i].count > 0);
    if (--t->slots[i].count > 0) return;
    t->used--;
    /* Backward shift: move later entries of the probe run into the hole
     * unless their home slot lies cyclically in (hole, j]. */
    uint32_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (t->slots[j].count == 0) break;
        uint32_t home = ipcount_hash(t->slots[j].addr) & mask;
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        t->slots[hole] = t->slots[j];
        t->slots[j].count = 0;
        hole = j;
    }
}
