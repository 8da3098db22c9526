#include "node/wal_inline.h"

void node_wal_inline_init(struct node_wal_inline *p, uint32_t max_us)
{
    p->max_us = max_us;
    p->avg_us = 0;
    p->off_until_us = 0;
}

bool node_wal_inline_ok(const struct node_wal_inline *p, uint64_t now_us, size_t n_entries,
                        size_t clients_waiting, bool leader)
{
    bool lone = n_entries <= NODE_WAL_INLINE_ENTRIES_MAX && clients_waiting <= n_entries;
    bool append = !leader && clients_waiting == 0;
    return p->max_us != 0 && (lone || append) && now_us >= p->off_until_us &&
           p->avg_us <= p->max_us;
}

void node_wal_inline_observe(struct node_wal_inline *p, uint64_t took_us, uint64_t done_us)
{
    /* avg += (took - avg) / 8, in unsigned arithmetic */
    if (took_us >= p->avg_us)
        p->avg_us += (took_us - p->avg_us) >> NODE_WAL_INLINE_AVG_SHIFT;
    else
        p->avg_us -= (p->avg_us - took_us) >> NODE_WAL_INLINE_AVG_SHIFT;
    if (took_us > (uint64_t)p->max_us * NODE_WAL_INLINE_STALL_FACTOR)
        p->off_until_us = done_us + NODE_WAL_INLINE_STALL_OFF_US;
}
