/* Shared bound on bytes queued for slow readers (contracts in outbudget.h). */
#include "util/outbudget.h"

#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"

void st_outbudget_init(struct st_outbudget *b, uint64_t max_bytes)
{
    memset(b, 0, sizeof *b);
    b->max_bytes = max_bytes;
}

int st_outbudget_register(struct st_outbudget *b, const struct st_outbudget_user *u)
{
    ST_ASSERT(u->slowest_cb && u->drop_slowest_cb);
    if (b->n_users == ST_OUTBUDGET_USERS_MAX) return ST_ENOMEM;
    b->users[b->n_users++] = *u;
    return 0;
}

void st_outbudget_unregister(struct st_outbudget *b, void *ctx)
{
    for (uint32_t i = 0; i < b->n_users; i++) {
        if (b->users[i].ctx != ctx) continue;
        b->users[i] = b->users[--b->n_users];
        return;
    }
}

void st_outbudget_release(struct st_outbudget *b, uint64_t bytes)
{
    ST_ASSERT(bytes <= b->used_bytes);
    b->used_bytes -= bytes;
}

uint32_t st_outbudget_enforce(struct st_outbudget *b)
{
    if (b->enforcing) return 0;
    b->enforcing = 1;
    uint32_t dropped = 0;
    while (st_outbudget_over(b)) {
        const struct st_outbudget_user *worst = NULL;
        uint64_t worst_stamp = 0;
        for (uint32_t i = 0; i < b->n_users; i++) {
            uint64_t st = b->users[i].slowest_cb(b->users[i].ctx);
            if (st != 0 && (worst_stamp == 0 || st < worst_stamp)) {
                worst_stamp = st;
                worst = &b->users[i];
            }
        }
        if (!worst) break;
        uint64_t before = b->used_bytes;
        worst->drop_slowest_cb(worst->ctx);
        /* A drop that frees nothing would loop forever. */
        ST_ASSERT(b->used_bytes < before);
        b->dropped++;
        b->dropped_bytes += before - b->used_bytes;
        dropped++;
    }
    b->enforcing = 0;
    return dropped;
}
