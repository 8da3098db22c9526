/* The in-memory log store: the same contract as the WAL (st_log_store),
 * with everything durable at once. For tests and the simulator. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/storage.h"
#include "util/assert.h"

struct mem_ent {
    raft_term term;
    uint8_t type;
    uint32_t len;
    uint8_t *data;
};

struct mem_log {
    pthread_mutex_t mu;
    struct mem_ent *ents; /* ents[i] has index first_index + i */
    size_t n, cap;
    raft_index first_index;
    raft_index snap_index;
    raft_term snap_term;
    struct raft_hard_state hs;
};

static raft_index mem_last(const struct mem_log *m)
{
    return m->first_index + m->n - 1;
}

static void drop_back(struct mem_log *m, size_t keep)
{
    for (size_t i = keep; i < m->n; i++)
        free(m->ents[i].data);
    m->n = keep;
}

static void mark_snapshot(struct mem_log *m, raft_index index, raft_term term)
{
    if (index <= m->snap_index) return;
    m->snap_index = index;
    m->snap_term = term;
    if (index >= mem_last(m)) {
        drop_back(m, 0);
        m->first_index = index + 1;
        return;
    }
    if (index >= m->first_index) {
        size_t k = (size_t)(index + 1 - m->first_index);
        for (size_t i = 0; i < k; i++)
            free(m->ents[i].data);
        memmove(m->ents, m->ents + k, (m->n - k) * sizeof(*m->ents));
        m->n -= k;
        m->first_index = index + 1;
    }
}

static int mem_append_locked(struct mem_log *m, const struct st_log_batch *b)
{
    raft_index first = m->first_index, last = mem_last(m);
    if (b->snapshot_index > m->snap_index) {
        if (b->snapshot_index >= last) last = b->snapshot_index;
        if (first < b->snapshot_index + 1) first = b->snapshot_index + 1;
    }
    raft_index trunc = b->truncate_from;
    if (b->n_entries && b->entries[0].index <= last && (trunc == 0 || b->entries[0].index < trunc))
        trunc = b->entries[0].index;
    if (trunc > last) trunc = 0;
    if (trunc) {
        if (trunc < first) return ST_ECOMPACTED;
        last = trunc - 1;
    }
    for (size_t i = 0; i < b->n_entries; i++)
        if (b->entries[i].index != last + 1 + i) return ST_EINVAL;
    /* copy payloads first so a failure leaves the log unchanged */
    struct mem_ent *add = NULL;
    if (b->n_entries) {
        add = calloc(b->n_entries, sizeof(*add));
        if (!add) return ST_ENOMEM;
        for (size_t i = 0; i < b->n_entries; i++) {
            const struct raft_entry *e = &b->entries[i];
            add[i] = (struct mem_ent){.term = e->term, .type = e->type, .len = e->len};
            if (e->len) {
                add[i].data = malloc(e->len);
                if (!add[i].data) {
                    for (size_t j = 0; j < i; j++)
                        free(add[j].data);
                    free(add);
                    return ST_ENOMEM;
                }
                memcpy(add[i].data, e->data, e->len);
            }
        }
    }
    if (b->snapshot_index > m->snap_index) mark_snapshot(m, b->snapshot_index, b->snapshot_term);
    if (trunc) drop_back(m, (size_t)(trunc - m->first_index));
    if (b->n_entries) {
        if (m->n + b->n_entries > m->cap) {
            size_t cap = m->cap ? m->cap : 64;
            while (cap < m->n + b->n_entries)
                cap *= 2;
            struct mem_ent *p = realloc(m->ents, cap * sizeof(*p));
            if (!p) {
                for (size_t j = 0; j < b->n_entries; j++)
                    free(add[j].data);
                free(add);
                return ST_ENOMEM;
            }
            m->ents = p;
            m->cap = cap;
        }
        memcpy(m->ents + m->n, add, b->n_entries * sizeof(*add));
        m->n += b->n_entries;
        free(add);
    }
    if (b->hard_state) m->hs = *b->hard_state;
    return 0;
}

static int mem_append(void *self, const struct st_log_batch *b)
{
    struct mem_log *m = self;
    pthread_mutex_lock(&m->mu);
    int rc = mem_append_locked(m, b);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_sync(void *self)
{
    return 0;
}

static int mem_compact(void *self, raft_index index, raft_term term)
{
    struct st_log_batch b = {.snapshot_index = index, .snapshot_term = term};
    return mem_append(self, &b);
}

static int mem_read_locked(struct mem_log *m, raft_index lo, raft_index hi, struct raft_entry *out)
{
    if (lo >= hi) return 0;
    if (lo < m->first_index) return ST_ECOMPACTED;
    if (hi - 1 > mem_last(m)) return ST_EUNAVAILABLE;
    for (raft_index i = lo; i < hi; i++) {
        const struct mem_ent *e = &m->ents[i - m->first_index];
        struct raft_buf *buf = NULL;
        if (e->len) {
            buf = raft_buf_create(e->len);
            if (!buf) {
                for (raft_index k = lo; k < i; k++)
                    raft_buf_unref(out[k - lo].buf);
                return ST_ENOMEM;
            }
            memcpy(buf->data, e->data, e->len);
        }
        out[i - lo] = (struct raft_entry){.term = e->term,
                                          .index = i,
                                          .type = e->type,
                                          .buf = buf,
                                          .data = buf ? buf->data : NULL,
                                          .len = e->len};
    }
    return 0;
}

static int mem_read(void *self, raft_index lo, raft_index hi, struct raft_entry *out)
{
    struct mem_log *m = self;
    pthread_mutex_lock(&m->mu);
    int rc = mem_read_locked(m, lo, hi, out);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_load(void *self, raft_index after, struct st_log_state *out, struct st_errbuf *err)
{
    struct mem_log *m = self;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&m->mu);
    int rc = 0;
    if (m->first_index > after + 1) {
        rc = ST_EUNAVAILABLE;
        if (err && err->buf && err->cap)
            snprintf(err->buf, err->cap, "memory log starts after the snapshot");
        goto out;
    }
    raft_index first = after + 1 > m->first_index ? after + 1 : m->first_index;
    raft_index last = mem_last(m) >= first ? mem_last(m) : first - 1;
    out->hard_state = m->hs;
    out->first_index = first;
    out->last_index = last;
    out->prev_term = first - 1 == m->snap_index ? m->snap_term
                     : first > m->first_index   ? m->ents[first - 1 - m->first_index].term
                                                : 0;
    size_t n = (size_t)(last + 1 - first);
    if (n) {
        out->entries = malloc(n * sizeof(*out->entries));
        if (!out->entries) {
            rc = ST_ENOMEM;
            goto out;
        }
        rc = mem_read_locked(m, first, last + 1, out->entries);
        if (rc != 0) {
            free(out->entries);
            out->entries = NULL;
            goto out;
        }
    }
    out->n_entries = n;
out:
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static void mem_bounds(void *self, raft_index *first, raft_index *last)
{
    struct mem_log *m = self;
    pthread_mutex_lock(&m->mu);
    *first = m->first_index;
    *last = mem_last(m);
    pthread_mutex_unlock(&m->mu);
}

static void mem_close(void *self)
{
    struct mem_log *m = self;
    drop_back(m, 0);
    free(m->ents);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static const struct st_log_store_ops mem_ops = {
    .load = mem_load,
    .append = mem_append,
    .sync = mem_sync,
    .compact = mem_compact,
    .read = mem_read,
    .bounds = mem_bounds,
    .close = mem_close,
};

int st_mem_log_create(struct st_log_store *out)
{
    struct mem_log *m = calloc(1, sizeof(*m));
    if (!m) return ST_ENOMEM;
    pthread_mutex_init(&m->mu, NULL);
    m->first_index = 1;
    out->ops = &mem_ops;
    out->self = m;
    return 0;
}
