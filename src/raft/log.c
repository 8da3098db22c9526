/* The in-memory replicated log: a ring of entries after the compaction point.
 * The core is the whole in-memory log (etcd's MemoryStorage and unstable
 * together): the application's WAL only mirrors what the readies hand out. */
#include "raft/raft_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void log_init(struct raft_log *l, const struct raft_config *cfg)
{
    memset(l, 0, sizeof(*l));
    l->cfg = cfg;
}

static struct raft_entry *slot(const struct raft_log *l, size_t k)
{
    return &l->ents[(l->head + k) & (l->cap - 1)];
}

void log_release_some(struct raft_log *l, size_t max)
{
    while (l->n_garbage > 0 && max-- > 0)
        raft_buf_unref(l->garbage[--l->n_garbage]);
}

/* Keeps b for log_release_some, or releases it now when the list cannot
 * grow (out of memory: correctness does not depend on deferring). */
static void log_defer_release(struct raft_log *l, struct raft_buf *b)
{
    if (!b) return;
    if (l->n_garbage == l->cap_garbage) {
        size_t cap = l->cap_garbage ? l->cap_garbage * 2 : 1024;
        /* Never 0 bytes: a 0-byte realloc frees the list. */
        size_t ptr_bytes = sizeof(struct raft_buf *);
        size_t bytes = cap <= SIZE_MAX / ptr_bytes ? cap * ptr_bytes : 0;
        struct raft_buf **g = bytes ? raft_mem_realloc(l->cfg, l->garbage, bytes) : NULL;
        if (!g) {
            raft_buf_unref(b);
            return;
        }
        l->garbage = g;
        l->cap_garbage = cap;
    }
    l->garbage[l->n_garbage++] = b;
}

void log_close(struct raft_log *l)
{
    for (size_t k = 0; k < l->n; k++)
        raft_buf_unref(slot(l, k)->buf);
    log_release_some(l, SIZE_MAX);
    raft_mem_free(l->cfg, l->garbage);
    raft_mem_free(l->cfg, l->ents);
    const struct raft_config *cfg = l->cfg;
    memset(l, 0, sizeof(*l));
    l->cfg = cfg;
}

raft_index log_first(const struct raft_log *l)
{
    return l->prev_index + 1;
}

raft_index log_last(const struct raft_log *l)
{
    return l->prev_index + l->n;
}

raft_term log_last_term(const struct raft_log *l)
{
    return l->n ? slot(l, l->n - 1)->term : l->prev_term;
}

bool log_term(const struct raft_log *l, raft_index index, raft_term *term)
{
    if (index == l->prev_index) {
        *term = l->prev_term;
        return true;
    }
    if (index < l->prev_index || index > log_last(l)) {
        *term = 0;
        return false;
    }
    *term = slot(l, (size_t)(index - l->prev_index - 1))->term;
    return true;
}

raft_term log_term_or0(const struct raft_log *l, raft_index index)
{
    raft_term t;
    log_term(l, index, &t);
    return t;
}

bool log_match_term(const struct raft_log *l, raft_index index, raft_term term)
{
    raft_term t;
    return log_term(l, index, &t) && t == term;
}

struct raft_entry *log_get(const struct raft_log *l, raft_index index)
{
    if (index <= l->prev_index || index > log_last(l)) return NULL;
    return slot(l, (size_t)(index - l->prev_index - 1));
}

int log_reserve(struct raft_log *l, size_t n)
{
    if (l->n + n <= l->cap) return 0;
    size_t cap = l->cap ? l->cap : 64;
    while (cap < l->n + n)
        cap *= 2;
    struct raft_entry *ents = raft_mem_realloc(l->cfg, NULL, cap * sizeof(*ents));
    if (!ents) return ST_ENOMEM;
    for (size_t k = 0; k < l->n; k++)
        ents[k] = *slot(l, k);
    raft_mem_free(l->cfg, l->ents);
    l->ents = ents;
    l->cap = cap;
    l->head = 0;
    return 0;
}

void log_append(struct raft_log *l, const struct raft_entry *e)
{
    ST_ASSERT(l->n < l->cap);
    ST_ASSERT(e->index == log_last(l) + 1);
    ST_ASSERT(e->term >= log_last_term(l));
    struct raft_entry *s = slot(l, l->n);
    *s = *e;
    if (s->len == 0) {
        s->buf = NULL;
        s->data = NULL;
    } else {
        raft_buf_ref(s->buf);
    }
    l->n++;
}

void log_truncate_from(struct raft_log *l, raft_index index)
{
    ST_ASSERT(index > l->commit);
    ST_ASSERT(index > l->prev_index);
    while (log_last(l) >= index) {
        raft_buf_unref(slot(l, l->n - 1)->buf);
        l->n--;
    }
    /* Readies hand entries out again from index on; a persisted report of an
     * overwritten entry is recognised by its term and ignored. */
    l->handed = ST_MIN(l->handed, index - 1);
    l->stable = ST_MIN(l->stable, index - 1);
}

void log_compact_to(struct raft_log *l, raft_index index)
{
    ST_ASSERT(index <= l->applied && index <= log_last(l));
    while (l->prev_index < index) {
        struct raft_entry *e = slot(l, 0);
        l->prev_index = e->index;
        l->prev_term = e->term;
        log_defer_release(l, e->buf);
        e->buf = NULL;
        l->head = (l->head + 1) & (l->cap - 1);
        l->n--;
    }
}

void log_reset(struct raft_log *l, raft_index index, raft_term term)
{
    for (size_t k = 0; k < l->n; k++)
        raft_buf_unref(slot(l, k)->buf);
    l->n = 0;
    l->head = 0;
    l->prev_index = index;
    l->prev_term = term;
}

bool log_is_up_to_date(const struct raft_log *l, raft_index last_index, raft_term last_term)
{
    /* Raft §5.4.1: compare the terms of the last entries, then the lengths. */
    raft_term t = log_last_term(l);
    return last_term > t || (last_term == t && last_index >= log_last(l));
}

raft_index log_term_start(const struct raft_log *l, raft_index index)
{
    raft_term t;
    if (!log_term(l, index, &t)) return index;
    raft_index i = index;
    while (i > l->prev_index + 1 && log_term_or0(l, i - 1) == t)
        i--;
    return i;
}

raft_index log_last_index_with_term_le(const struct raft_log *l, raft_index index, raft_term term)
{
    if (index > log_last(l)) index = log_last(l);
    for (raft_index i = index;; i--) {
        raft_term t;
        if (!log_term(l, i, &t)) return 0;
        if (t <= term) return i;
        if (i == 0) return 0;
    }
}
