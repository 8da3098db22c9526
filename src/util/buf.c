/* raft_buf: immutable reference-counted bytes (single-threaded refs). */
#include "stcache/buf.h"
#include "util/assert.h"

#include <stdlib.h>

struct raft_buf *raft_buf_create(size_t cap)
{
    if (cap > UINT32_MAX) return NULL;
    struct raft_buf *b = malloc(sizeof(*b) + (cap ? cap : 1));
    if (!b) return NULL;
    b->refs = 1;
    b->cap = (uint32_t)cap;
    return b;
}

void raft_buf_ref(struct raft_buf *b)
{
    ST_ASSERT(b && b->refs > 0 && b->refs < UINT32_MAX);
    b->refs++;
}

void raft_buf_unref(struct raft_buf *b)
{
    if (!b) return;
    ST_ASSERT(b->refs > 0);
    if (--b->refs == 0) free(b);
}
