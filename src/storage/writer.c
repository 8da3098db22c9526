/* Group commit, pipelined over two threads.
 *
 *   node thread: submit(batch) -> copies the descriptor and the entry structs
 *                into `in` (reused arrays: no allocation once warmed up)
 *   encoder:     swaps `in` with `work` (takes ALL queued batches), appends
 *                each to the store (framing, CRC32C, copy into the WAL's
 *                stage), and hands a summary of the group to the syncer
 *   syncer:      ONE sync per group, then the callback, on this thread
 *
 * While the syncer waits for group N's fdatasync, the encoder already
 * encodes group N+1: the CPU work of a group hides behind the disk wait of
 * the previous one. (The WAL seals whole batches at sync time, so a group
 * sync may also make part of the next group durable early; it is reported
 * with its own group.) Callbacks come from the syncer only, in seq order.
 *
 * A batch that fails cleanly (ST_ENOSPC) fails together with every batch
 * queued after it (they build on it): the writer is halted, and every later
 * batch reports the same status without touching the store, until
 * st_log_writer_resume(); the ones before it are still synced and reported
 * first. A failed sync is fatal: that group and every later submit report
 * ST_EFATAL.
 *
 * A batch the store refuses for want of a file descriptor (ST_ENFILE: a
 * segment roll could not open its file; the store undid the batch and stays
 * usable) is retried in place after a pause, until it goes through or the
 * writer stops: an open is no sync, so retrying it is safe, and the batches
 * behind it wait, so the order of the log is kept. Nothing fails meanwhile;
 * writes stall until descriptors are free again. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stcache/storage.h"
#include "util/assert.h"
#include "util/trace.h"

#define WRITER_QUEUE_DEFAULT 4096
#define WRITER_GROUPS_MAX 2 /* groups encoded ahead of the sync */
#define WRITER_ENFILE_RETRY_MS_MIN 10
#define WRITER_ENFILE_RETRY_MS_MAX 500

/* What the encoder did with one group, for the syncer. */
struct group {
    uint64_t ok_seq;   /* last batch appended (0: none) */
    uint64_t last_seq; /* last batch of the group */
    int fail;          /* status of the batches after ok_seq */
    raft_index index;  /* durable once the group's sync returns */
    raft_term term;
    struct raft_hard_state hs;
};

struct wq_item {
    uint64_t seq;
    struct st_log_batch b; /* entries == NULL here: they live at ents[ent_off] */
    size_t ent_off;
    bool has_hs;
    struct raft_hard_state hs;
};

struct wq {
    struct wq_item *items;
    size_t n, cap;
    struct raft_entry *ents;
    size_t n_ents, cap_ents;
};

struct st_log_writer {
    struct st_log_store *store;
    st_log_writer_cb cb;
    void *ctx;
    uint32_t queue_max;
    pthread_t thread;
    pthread_mutex_t mu;
    /* One condition variable per role, signalled only when that role's wait
     * predicate holds (wake_roles): a broadcast to both on every change woke
     * a thread that could do nothing about half the time, and those futex
     * round trips were ~15% of a node's CPU at 128 clients. */
    pthread_cond_t enc_cv;
    pthread_cond_t sync_cv;
    pthread_cond_t retry_cv; /* a batch waits to retry (ST_ENFILE); stop wakes it */
    uint64_t enfile_retries; /* appends retried for want of a descriptor */
    bool enc_waiting_space;  /* the encoder waits for room in groups[] */
    struct wq in, work;
    uint64_t next_seq;
    bool stop;
    bool fatal;
    int halted; /* a clean failure (ST_ENOSPC...): later batches fail with it */
    /* encoder -> syncer */
    pthread_t syncer;
    struct group groups[WRITER_GROUPS_MAX];
    size_t group_head, n_groups;
    bool encoder_done;
    bool encoding; /* a thread is appending a group (only one at a time) */
    bool syncing;  /* the syncer is in a sync: the encoder may work ahead */
    /* encoder only: state after the last appended batch */
    raft_index enc_index;
    raft_term enc_term;
    struct raft_hard_state enc_hs;
    /* syncer only: what is durable */
    raft_index durable_index;
    raft_term durable_term;
    struct raft_hard_state hs;
};

static int wq_push(struct wq *q, const struct st_log_batch *b, uint64_t seq)
{
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct wq_item *p = realloc(q->items, cap * sizeof(*p));
        if (!p) return ST_ENOMEM;
        q->items = p;
        q->cap = cap;
    }
    if (q->n_ents + b->n_entries > q->cap_ents) {
        size_t cap = q->cap_ents ? q->cap_ents : 256;
        while (cap < q->n_ents + b->n_entries)
            cap *= 2;
        struct raft_entry *p = realloc(q->ents, cap * sizeof(*p));
        if (!p) return ST_ENOMEM;
        q->ents = p;
        q->cap_ents = cap;
    }
    struct wq_item *it = &q->items[q->n++];
    it->seq = seq;
    it->b = *b;
    it->b.entries = NULL;
    it->b.hard_state = NULL;
    it->ent_off = q->n_ents;
    it->has_hs = b->hard_state != NULL;
    if (b->hard_state) it->hs = *b->hard_state;
    if (b->n_entries) memcpy(q->ents + q->n_ents, b->entries, b->n_entries * sizeof(*b->entries));
    q->n_ents += b->n_entries;
    return 0;
}

static void report(struct st_log_writer *w, uint64_t seq, int status, bool on_caller)
{
    struct st_log_writer_result r = {
        .seq = seq,
        .status = status,
        .on_caller_thread = on_caller,
        .durable_index = w->durable_index,
        .durable_term = w->durable_term,
        .hard_state = w->hs,
    };
    w->cb(w->ctx, &r);
}

static void set_fatal(struct st_log_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->fatal = true;
    pthread_mutex_unlock(&w->mu);
}

/* Appends one batch to the store and advances what it leaves as the last
 * entry and the hard state. */
static int append_one(struct st_log_writer *w, const struct st_log_batch *b, raft_index *idx,
                      raft_term *term, struct raft_hard_state *hs)
{
    int rc = w->store->ops->append(w->store->self, b);
    if (rc != 0) return rc;
    if (b->snapshot_index > *idx) {
        *idx = b->snapshot_index;
        *term = b->snapshot_term;
    }
    if (b->n_entries) {
        *idx = b->entries[b->n_entries - 1].index;
        *term = b->entries[b->n_entries - 1].term;
    } else if (b->truncate_from && b->truncate_from <= *idx) {
        *idx = b->truncate_from - 1; /* term of the new last entry unknown here */
        *term = 0;
    }
    if (b->hard_state) *hs = *b->hard_state;
    return 0;
}

/* A batch failed with ST_ENFILE for the (tries+1)-th time: waits before the
 * next try. false when the writer stops (the batch then fails). */
static bool enfile_wait(struct st_log_writer *w, unsigned tries)
{
    if (tries == 0)
        ST_TRACE_WARN("storage", "log writer: no file descriptor for a new WAL segment; the write "
                                 "is retried until one is free (raise the descriptor limit)");
    uint64_t ms = WRITER_ENFILE_RETRY_MS_MIN << (tries < 6 ? tries : 6);
    if (ms > WRITER_ENFILE_RETRY_MS_MAX) ms = WRITER_ENFILE_RETRY_MS_MAX;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000u;
    ts.tv_sec += (time_t)(ns / 1000000000u);
    ts.tv_nsec = (long)(ns % 1000000000u);
    pthread_mutex_lock(&w->mu);
    w->enfile_retries++;
    if (!w->stop) pthread_cond_timedwait(&w->retry_cv, &w->mu, &ts);
    bool go_on = !w->stop;
    pthread_mutex_unlock(&w->mu);
    return go_on;
}

/* append_one, retrying while the store is out of descriptors. */
static int append_retrying(struct st_log_writer *w, const struct st_log_batch *b, raft_index *idx,
                           raft_term *term, struct raft_hard_state *hs)
{
    int rc;
    unsigned tries = 0;
    while ((rc = append_one(w, b, idx, term, hs)) == ST_ENFILE && enfile_wait(w, tries))
        tries++;
    return rc;
}

/* Encoder: appends a group, returns its summary. */
static void encode_group(struct st_log_writer *w, struct wq *q, struct group *g)
{
    memset(g, 0, sizeof(*g));
    raft_index idx = w->enc_index;
    raft_term term = w->enc_term;
    struct raft_hard_state hs = w->enc_hs;
    size_t ok = 0;
    pthread_mutex_lock(&w->mu);
    bool fatal = w->fatal;
    int halted = w->halted;
    pthread_mutex_unlock(&w->mu);
    if (fatal)
        g->fail = ST_EFATAL;
    else if (halted)
        g->fail = halted;
    for (; !g->fail && ok < q->n; ok++) {
        struct wq_item *it = &q->items[ok];
        struct st_log_batch b = it->b;
        b.entries = it->b.n_entries ? q->ents + it->ent_off : NULL;
        b.hard_state = it->has_hs ? &it->hs : NULL;
        int rc = append_retrying(w, &b, &idx, &term, &hs);
        if (rc != 0) {
            g->fail = rc;
            if (rc != ST_EFATAL) {
                pthread_mutex_lock(&w->mu);
                w->halted = rc;
                pthread_mutex_unlock(&w->mu);
            }
            break;
        }
    }
    if (ok > 0) {
        g->ok_seq = q->items[ok - 1].seq;
        w->enc_index = idx;
        w->enc_term = term;
        w->enc_hs = hs;
    }
    g->index = w->enc_index;
    g->term = w->enc_term;
    g->hs = w->enc_hs;
    g->last_seq = q->items[q->n - 1].seq;
    if (g->fail == ST_EFATAL) set_fatal(w);
}

/* Takes every queued batch as a new group (mu held; encoding set). */
static void take_input(struct st_log_writer *w)
{
    struct wq t = w->in;
    w->in = w->work;
    w->work = t;
    w->in.n = w->in.n_ents = 0;
    w->encoding = true;
}

static void sync_and_report(struct st_log_writer *w, const struct group *g, bool on_caller)
{
    if (g->ok_seq) {
        int rc = w->store->ops->sync(w->store->self);
        if (rc != 0) {
            set_fatal(w);
            ST_TRACE_ERROR("storage", "log writer: sync failed (%s): storage is fatal",
                           st_strerror(rc));
            report(w, g->last_seq, ST_EFATAL, on_caller);
            return;
        }
        w->durable_index = g->index;
        w->durable_term = g->term;
        w->hs = g->hs;
        report(w, g->ok_seq, 0, on_caller);
    }
    if (g->fail) report(w, g->last_seq, g->fail, on_caller);
}

/* Wait predicates (mu held). The encoder only helps while the syncer is busy
 * in a sync: it encodes the next group so that its CPU work overlaps the
 * disk wait. The syncer syncs queued groups, or encodes input itself when
 * nobody else is. */
static bool enc_can_take(const struct st_log_writer *w)
{
    return w->in.n > 0 && !w->encoding && w->syncing;
}

static bool sync_can_act(const struct st_log_writer *w)
{
    return w->n_groups > 0 || (w->in.n > 0 && !w->encoding) ||
           (w->stop && w->encoder_done && w->in.n == 0 && !w->encoding);
}

/* After any change of the shared state (mu held): wakes each thread whose
 * wait predicate now holds. A signal with nobody waiting costs no syscall. */
static void wake_roles(struct st_log_writer *w)
{
    if (enc_can_take(w) || (w->stop && w->in.n == 0) ||
        (w->enc_waiting_space && w->n_groups < WRITER_GROUPS_MAX))
        pthread_cond_signal(&w->enc_cv);
    if (sync_can_act(w)) pthread_cond_signal(&w->sync_cv);
}

static void *encoder_main(void *arg)
{
    struct st_log_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!enc_can_take(w) && !(w->stop && w->in.n == 0))
            pthread_cond_wait(&w->enc_cv, &w->mu);
        if (w->in.n == 0 && w->stop) break;
        take_input(w);
        pthread_mutex_unlock(&w->mu);
        struct group g;
        encode_group(w, &w->work, &g);
        w->work.n = w->work.n_ents = 0;
        pthread_mutex_lock(&w->mu);
        /* still `encoding` while waiting: the syncer must not encode a newer
         * group and sync it before this one is queued */
        w->enc_waiting_space = true;
        while (w->n_groups == WRITER_GROUPS_MAX)
            pthread_cond_wait(&w->enc_cv, &w->mu);
        w->enc_waiting_space = false;
        w->groups[(w->group_head + w->n_groups) % WRITER_GROUPS_MAX] = g;
        w->n_groups++;
        w->encoding = false;
        wake_roles(w);
    }
    w->encoder_done = true;
    wake_roles(w);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* The syncer syncs the groups the encoder queued, in order; when there are
 * none it encodes the waiting batches itself (no hand-off when idle: the
 * latency of a lone batch is one append plus one sync). */
static void *syncer_main(void *arg)
{
    struct st_log_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!sync_can_act(w))
            pthread_cond_wait(&w->sync_cv, &w->mu);
        struct group g;
        if (w->n_groups > 0) {
            g = w->groups[w->group_head];
            w->group_head = (w->group_head + 1) % WRITER_GROUPS_MAX;
            w->n_groups--;
        } else if (w->in.n > 0 && !w->encoding) {
            /* the queue of encoded groups is empty and nobody encodes: this
             * group is the oldest unsynced one */
            take_input(w);
            pthread_mutex_unlock(&w->mu);
            encode_group(w, &w->work, &g);
            w->work.n = w->work.n_ents = 0;
            pthread_mutex_lock(&w->mu);
            w->encoding = false;
        } else {
            break;
        }
        w->syncing = true;
        wake_roles(w);
        pthread_mutex_unlock(&w->mu);
        sync_and_report(w, &g, false);
        pthread_mutex_lock(&w->mu);
        w->syncing = false;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int st_log_writer_create(struct st_log_store *store, const struct st_log_writer_config *cfg,
                         st_log_writer_cb cb, void *ctx, struct st_log_writer **out)
{
    ST_ASSERT(store && cb);
    struct st_log_writer *w = calloc(1, sizeof(*w));
    if (!w) return ST_ENOMEM;
    w->store = store;
    w->cb = cb;
    w->ctx = ctx;
    w->queue_max = cfg && cfg->queue_batches_max ? cfg->queue_batches_max : WRITER_QUEUE_DEFAULT;
    w->next_seq = 1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->enc_cv, NULL);
    pthread_cond_init(&w->sync_cv, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->retry_cv, &ca);
    pthread_condattr_destroy(&ca);
    raft_index first, last;
    store->ops->bounds(store->self, &first, &last);
    w->durable_index = w->enc_index = last;
    if (pthread_create(&w->thread, NULL, encoder_main, w) != 0) goto fail;
    if (pthread_create(&w->syncer, NULL, syncer_main, w) != 0) {
        pthread_mutex_lock(&w->mu);
        w->stop = true;
        wake_roles(w);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        goto fail;
    }
    *out = w;
    return 0;
fail:
    pthread_cond_destroy(&w->enc_cv);
    pthread_cond_destroy(&w->sync_cv);
    pthread_cond_destroy(&w->retry_cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return ST_ENOMEM;
}

int st_log_writer_submit(struct st_log_writer *w, const struct st_log_batch *b, uint64_t *seq_out)
{
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (w->fatal)
        rc = ST_EFATAL;
    else if (w->stop)
        rc = ST_ECLOSED;
    else if (w->in.n >= w->queue_max)
        rc = ST_EBUSY;
    else
        rc = wq_push(&w->in, b, w->next_seq);
    if (rc == 0) {
        *seq_out = w->next_seq++;
        if (w->in.n == 1) wake_roles(w); /* more input: whoever takes it takes all */
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int st_log_writer_write_now(struct st_log_writer *w, const struct st_log_batch *b,
                            uint64_t *seq_out)
{
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    if (w->fatal)
        rc = ST_EFATAL;
    else if (w->stop)
        rc = ST_ECLOSED;
    else if (w->in.n > 0 || w->encoding || w->syncing || w->n_groups > 0)
        rc = ST_EBUSY;
    if (rc) {
        pthread_mutex_unlock(&w->mu);
        return rc;
    }
    /* Both roles taken: the threads find nothing to do until we are done,
     * and a submit from the callback (forbidden anyway) would queue. */
    w->encoding = true;
    w->syncing = true;
    uint64_t seq = w->next_seq++;
    pthread_mutex_unlock(&w->mu);
    *seq_out = seq;

    struct group g;
    memset(&g, 0, sizeof g);
    raft_index idx = w->enc_index;
    raft_term term = w->enc_term;
    struct raft_hard_state hs = w->enc_hs;
    pthread_mutex_lock(&w->mu);
    int halted = w->halted;
    pthread_mutex_unlock(&w->mu);
    g.fail = halted ? halted : append_one(w, b, &idx, &term, &hs);
    if (g.fail == ST_ENFILE) {
        /* Not on the caller's thread (the node's loop): the batch joins the
         * queue, ahead of anything submitted meanwhile, and the writer's
         * threads retry it (append_retrying); its result comes from them. */
        pthread_mutex_lock(&w->mu);
        int qrc = wq_push(&w->in, b, seq);
        if (qrc == 0 && w->in.n > 1) {
            struct wq_item it = w->in.items[w->in.n - 1];
            memmove(w->in.items + 1, w->in.items, (w->in.n - 1) * sizeof(it));
            w->in.items[0] = it;
        }
        if (qrc == 0) {
            w->encoding = false;
            w->syncing = false;
            wake_roles(w);
            pthread_mutex_unlock(&w->mu);
            return 0;
        }
        pthread_mutex_unlock(&w->mu);
        g.fail = qrc; /* no memory to queue it: reported failed, as any append */
    }
    if (g.fail != 0 && g.fail != ST_EFATAL && !halted) {
        pthread_mutex_lock(&w->mu);
        w->halted = g.fail;
        pthread_mutex_unlock(&w->mu);
    }
    if (g.fail == 0) {
        g.ok_seq = seq;
        w->enc_index = idx;
        w->enc_term = term;
        w->enc_hs = hs;
    } else if (g.fail == ST_EFATAL) {
        set_fatal(w);
    }
    g.index = w->enc_index;
    g.term = w->enc_term;
    g.hs = w->enc_hs;
    g.last_seq = seq;
    sync_and_report(w, &g, true);

    pthread_mutex_lock(&w->mu);
    w->encoding = false;
    w->syncing = false;
    /* wakes a thread only for work that arrived meanwhile (a submit from
     * another thread, or stop) */
    wake_roles(w);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void st_log_writer_destroy(struct st_log_writer *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_broadcast(&w->enc_cv);
    pthread_cond_broadcast(&w->sync_cv);
    pthread_cond_broadcast(&w->retry_cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_join(w->syncer, NULL);
    free(w->in.items);
    free(w->in.ents);
    free(w->work.items);
    free(w->work.ents);
    pthread_cond_destroy(&w->enc_cv);
    pthread_cond_destroy(&w->sync_cv);
    pthread_cond_destroy(&w->retry_cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

void st_log_writer_resume(struct st_log_writer *w)
{
    pthread_mutex_lock(&w->mu);
    w->halted = 0;
    pthread_mutex_unlock(&w->mu);
}

size_t st_log_writer_queued_groups(struct st_log_writer *w)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->n_groups;
    pthread_mutex_unlock(&w->mu);
    return n;
}

uint64_t st_log_writer_enfile_retries(struct st_log_writer *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t n = w->enfile_retries;
    pthread_mutex_unlock(&w->mu);
    return n;
}
