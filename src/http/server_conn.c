/* HTTP server: connection lifecycle (timers, close, linger), writing responses
 * and reading requests. */
#include "http/server_int.h"

#include <ctype.h>
#include <http_parser.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stcache/errors.h"
#include "util/assert.h"
#include "util/fdlimit.h"
#include "util/list.h"
#include "util/outbudget.h"
#include "util/trace.h"

static void dirty_unlink(struct http_conn *c);
static void on_flush_idle(uv_idle_t *h);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* ---------- connection lifecycle ---------- */

static void on_trim_timer(uv_timer_t *t)
{
    struct http_server *srv = t->data;
    srv->freed_bytes = 0;
    srv->last_trim_ms = uv_now(srv->loop);
    srv->memory_trimmed = 1;
#ifdef __GLIBC__
    (void)malloc_trim(0);
#endif
    srv->stats.memory_trims++;
}

/* glibc keeps freed heap pages below the top of the heap resident: after
 * many connections with large queued responses closed, that is most of what
 * they held (the slow-reader finding: all 524 MiB stayed). Past
 * HTTP_TRIM_FREED_BYTES of large buffers released by closing connections, a
 * trim runs HTTP_TRIM_DELAY_MS later, so a burst of closes shares one trim
 * (a walk of the free lists), and at most one per HTTP_TRIM_INTERVAL_MS
 * (connection churn must not turn into trimming all the time). */
static void server_note_freed(struct http_server *srv, size_t bytes)
{
    srv->freed_bytes += bytes;
    if (srv->freed_bytes < HTTP_TRIM_FREED_BYTES || !srv->trim_open || srv->closing ||
        uv_is_active((uv_handle_t *)&srv->trim_timer))
        return;
    uint64_t now = uv_now(srv->loop), delay = HTTP_TRIM_DELAY_MS;
    if (srv->memory_trimmed && srv->last_trim_ms + HTTP_TRIM_INTERVAL_MS > now + delay)
        delay = srv->last_trim_ms + HTTP_TRIM_INTERVAL_MS - now;
    uv_timer_start(&srv->trim_timer, on_trim_timer, delay, 0);
}

void http_conn_free(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    dirty_unlink(c);
    st_list_del(&c->link);
    size_t freed = 0;
    for (uint32_t i = 0; i < srv->cfg.pipeline_max; i++)
        freed += http_slot_free_buffers(&c->slots[i]);
    free(c->rbuf);
    http_conn_tls_free(c);
    free(c);
    srv->conns_alive--;
    server_note_freed(srv, freed);
    http_server_maybe_closed(srv);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    ST_ASSERT(c->handles_open > 0);
    if (--c->handles_open > 0) return;
    c->srv->stats.connections--;
    /* Requests still with the handler keep the connection memory alive. */
    for (uint32_t i = 0; i < c->srv->cfg.pipeline_max; i++)
        if (c->slots[i].state != SLOT_HANDLER && c->slots[i].state != SLOT_STREAM)
            c->slots[i].state = SLOT_FREE;
    if (c->in_handler == 0) http_conn_free(c);
}

void http_conn_close(struct http_conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    c->reading = 0;
    if (c->admitted) c->srv->conns_open--;
    if (c->peer_counted) http_ipcount_del(&c->srv->ipcount, c->peer);
    c->admitted = c->peer_counted = 0;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    /* Queued responses are discarded: their bytes leave the budget and their
     * buffers are freed now, so a drop relieves memory at once rather than
     * in the close callbacks (a burst of completions may come first). Safe
     * for a WRITING batch too: uv_close() has closed the descriptor, and
     * libuv only hands a cancelled write back (UV_ECANCELED), never reading
     * its data again. */
    if (c->out_bytes > 0) {
        size_t freed = 0;
        for (uint32_t i = 0; i < c->srv->cfg.pipeline_max; i++) {
            struct http_slot *s = &c->slots[i];
            if ((s->state != SLOT_READY && s->state != SLOT_WRITING) || !s->out) continue;
            if (s->out_cap > HTTP_BUF_KEEP_BYTES) freed += s->out_cap;
            free(s->out);
            s->out = NULL;
            s->out_cap = 0;
            s->out_len = 0;
        }
        http_conn_out_release(c, c->out_bytes);
        server_note_freed(c->srv, freed);
    }
    http_conn_streams_orphan(c);
}

static void conn_arm(struct http_conn *c);

/* The connection timer: idle_timeout_ms after the last activity, or earlier
 * when a request being received reaches request_timeout_ms. */
static void on_conn_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;
    const struct http_server_config *cfg = &c->srv->cfg;
    if (c->cur && cfg->request_timeout_ms > 0 &&
        uv_now(c->srv->loop) - c->cur_start_ms >= cfg->request_timeout_ms) {
        /* Too slow to send its request (slowloris): 408, then close. */
        c->srv->stats.request_timeouts++;
        c->err_status = 408;
        c->err_msg = "request not received in time";
        http_conn_parse_error(c, HPE_OK);
        return;
    }
    /* A client that has taken none of its queued responses for the idle
     * timeout has stopped reading: it would hold them (within the bounds)
     * for as long as it keeps the connection open. Only while a write is
     * pending: responses waiting behind a request still with the handler
     * are not the client's doing. */
    if (c->writing && cfg->idle_timeout_ms > 0) {
        http_conn_out_check_progress(c);
        if (uv_now(c->srv->loop) - c->out_progress_ms >= cfg->idle_timeout_ms) {
            c->srv->stats.stalled_closed++;
            ST_TRACE_INFO("http",
                          "closing a connection that read nothing of its %" PRIu64
                          " queued response bytes for %u ms",
                          c->out_bytes, cfg->idle_timeout_ms);
            http_conn_close(c);
            return;
        }
    }
    /* Busy: a request is with the handler or a response is queued. Only a
     * connection that is idle, stuck mid-request or not reading (above) is
     * closed. The timer is not re-armed on every activity (http_conn_touch), so
     * it may fire early: then it is armed again for what is left. */
    uint32_t busy = c->count - (c->cur ? 1u : 0u);
    if (busy > 0 || cfg->idle_timeout_ms == 0) {
        http_conn_touch(c);
        return;
    }
    if (uv_now(c->srv->loop) - c->active_ms < cfg->idle_timeout_ms) {
        conn_arm(c); /* fired early (see http_conn_touch) */
        return;
    }
    c->srv->stats.idle_closed++;
    http_conn_close(c);
}

/* Records activity and makes sure the timer fires no later than the next
 * deadline (idle or request). An armed timer that fires at or before it is
 * left alone: re-arming on every read and write (a timer-heap removal and
 * insertion each) was a visible share of the loop's CPU per request; an
 * early firing re-arms for what is left. */
static void conn_arm(struct http_conn *c)
{
    const struct http_server_config *cfg = &c->srv->cfg;
    if (c->closing || c->lingering) return;
    uint64_t now = uv_now(c->srv->loop);
    uint64_t ms = cfg->idle_timeout_ms;
    if (ms > 0) {
        uint64_t idle_deadline = c->active_ms + ms;
        ms = idle_deadline > now ? idle_deadline - now : 1;
    }
    if (c->cur && cfg->request_timeout_ms > 0) {
        uint64_t deadline = c->cur_start_ms + cfg->request_timeout_ms;
        uint64_t rem = deadline > now ? deadline - now : 0;
        if (ms == 0 || rem < ms) ms = rem;
    }
    if (ms == 0 && cfg->idle_timeout_ms == 0 && !(c->cur && cfg->request_timeout_ms > 0)) {
        uv_timer_stop(&c->timer);
        return;
    }
    if (uv_is_active((uv_handle_t *)&c->timer) && c->timer_due_ms <= now + ms) return;
    c->timer_due_ms = now + ms;
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

void http_conn_touch(struct http_conn *c)
{
    c->active_ms = uv_now(c->srv->loop);
    conn_arm(c);
}

static void on_shutdown_done(uv_shutdown_t *req, int status)
{
    struct http_conn *c = req->data;
    if (status < 0 && !c->closing) http_conn_close(c);
}

static void on_linger_timer(uv_timer_t *t)
{
    http_conn_close(t->data);
}

/* After the final response of a connection: send FIN, then read and discard
 * what the client still sends (the rest of a rejected body, pipelined requests
 * after "Connection: close") until its EOF or HTTP_LINGER_MS. Closing with
 * unread input would make the kernel send a RST that can destroy the response
 * before the client reads it. */
void http_conn_finish(struct http_conn *c)
{
    if (c->closing || c->lingering) return;
    if (c->eof) {
        http_conn_close(c);
        return;
    }
    c->lingering = 1;
    c->no_more = 1;
    if (!c->in_execute) c->rstart = c->rlen = 0; /* else http_conn_process drops them (no_more) */
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown_done) != 0) {
        http_conn_close(c);
        return;
    }
    uint64_t ms = HTTP_LINGER_MS;
    if (c->srv->cfg.idle_timeout_ms > 0 && c->srv->cfg.idle_timeout_ms < ms)
        ms = c->srv->cfg.idle_timeout_ms;
    uv_timer_start(&c->timer, on_linger_timer, ms, 0);
    if (!c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            http_conn_close(c);
            return;
        }
        c->reading = 1;
    }
}

/* Called after slots were released: finish or close the connection, or
 * resume parsing (which flushes again at its end). */
static void conn_after_release(struct http_conn *c, int finish)
{
    if (c->closing) return;
    if (finish) {
        http_conn_finish(c);
        return;
    }
    if ((c->eof && c->count == 0) || (c->srv->closing && c->count == 0)) {
        http_conn_close(c);
        return;
    }
    http_conn_touch(c);
    http_conn_process(c);
}

/* A response became ready or a write completed: write what can go. While the
 * parser runs (pipelined requests answered synchronously) nothing is written
 * yet: http_conn_process flushes once at its end, so those responses leave in one
 * batch. */
void http_conn_kick(struct http_conn *c)
{
    if (c->in_execute || c->closing || st_list_linked(&c->dirty_link)) return;
    struct http_server *srv = c->srv;
    st_list_push_front(&srv->dirty, &c->dirty_link);
    if (!srv->idle_active) {
        uv_idle_start(&srv->flush_idle, on_flush_idle);
        srv->idle_active = 1;
    }
}

static void dirty_unlink(struct http_conn *c)
{
    st_list_del(&c->dirty_link); /* harmless when not linked */
}

/* Runs in the idle phase of the loop iteration after responses became ready
 * (an idle handle, unlike a check handle, also keeps the poll from blocking):
 * every connection whose responses became ready (handlers completing in
 * order, writes finishing) writes them now, several per write when pipelined. */
static void on_flush_idle(uv_idle_t *h)
{
    struct http_server *srv = h->data;
    while (!st_list_empty(&srv->dirty)) {
        struct http_conn *c = ST_CONTAINER_OF(srv->dirty.next, struct http_conn, dirty_link);
        dirty_unlink(c);
        if (c->closing) continue;
        int finish = http_conn_flush(c);
        conn_after_release(c, finish);
    }
    uv_idle_stop(&srv->flush_idle);
    srv->idle_active = 0;
}

static void on_write_done(uv_write_t *w, int status)
{
    struct http_conn *c = w->data;
    c->writing = 0;
    uint32_t n = c->write_slots;
    c->write_slots = 0;
    if (status < 0 || c->closing) {
        http_conn_close(c);
        return;
    }
    http_conn_out_stamp(c); /* the client took the whole batch */
    if (c->tls_out_cap > HTTP_BUF_KEEP_BYTES) {
        free(c->tls_out);
        c->tls_out = NULL;
        c->tls_out_cap = 0;
    }
    int finish = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct http_slot *s = &c->slots[c->head];
        ST_ASSERT(s->state == SLOT_WRITING);
        finish |= s->close_after && http_slot_done(s);
        http_slot_release_head(c);
        if (c->closing) return; /* a stream's producer gave up */
    }
    if (finish) {
        http_conn_finish(c);
        return;
    }
    http_conn_kick(c);
}

/* http_conn_flush with TLS: the n responses become one ciphertext buffer
 * (c->tls_out); what uv_try_write does not take goes in one uv_write, and
 * all n slots wait for it (a partial write cannot be mapped back to them). */
static int conn_flush_tls(struct http_conn *c, const uv_buf_t *bufs, uint32_t n)
{
    size_t len = 0;
    if (http_conn_tls_encrypt(c, bufs, n, &len) != 0) {
        http_conn_close(c);
        return 0;
    }
    uv_buf_t b = uv_buf_init(c->tls_out, (unsigned int)len);
    int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w == UV_EAGAIN || w == UV_ENOSYS) w = 0;
    if (w < 0) {
        http_conn_close(c);
        return 0;
    }
    if (w > 0) http_conn_out_stamp(c);
    uint32_t max = c->srv->cfg.pipeline_max;
    if ((size_t)w == len) {
        int finish = 0;
        for (uint32_t i = 0; i < n; i++) {
            struct http_slot *s = &c->slots[c->head];
            finish |= s->close_after && http_slot_done(s);
            http_slot_release_head(c);
            if (c->closing) return 0; /* a stream's producer gave up */
        }
        return finish;
    }
    b.base += w;
    b.len -= (size_t)w;
    for (uint32_t k = 0; k < n; k++)
        c->slots[(c->head + k) % max].state = SLOT_WRITING;
    c->write_slots = n;
    c->writing = 1;
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write_done) != 0) {
        c->writing = 0;
        http_conn_close(c);
        return 0;
    }
    c->wq_seen = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    c->out_progress_ms = uv_now(c->srv->loop);
    return 0;
}

/* Sends every consecutive READY response at the head of the ring in one
 * write: uv_try_write first, the rest with uv_write. Releases the slots that
 * went out at once. Returns 1 if a close_after response went out (the caller
 * finishes the connection), 0 otherwise. May close the connection on a write
 * error. */
int http_conn_flush(struct http_conn *c)
{
    if (c->writing || c->closing) return 0;
    uv_buf_t bufs[HTTP_PIPELINE_MAX_LIMIT];
    uint32_t max = c->srv->cfg.pipeline_max, n = 0;
    for (uint32_t k = 0; k < c->count; k++) {
        struct http_slot *s = &c->slots[(c->head + k) % max];
        if (s->state != SLOT_READY) break;
        bufs[n++] = uv_buf_init(s->out, (unsigned int)s->out_len);
        if (s->close_after) break;
    }
    if (n == 0) return 0;
    c->srv->stats.write_batches++;
    if (c->tls) return conn_flush_tls(c, bufs, n);
    int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    if (w == UV_EAGAIN || w == UV_ENOSYS) w = 0;
    if (w < 0) {
        http_conn_close(c);
        return 0;
    }
    if (w > 0) http_conn_out_stamp(c);
    size_t rem = (size_t)w;
    uint32_t done = 0;
    while (done < n && rem >= bufs[done].len) {
        rem -= bufs[done].len;
        done++;
    }
    int finish = 0;
    for (uint32_t i = 0; i < done; i++) {
        struct http_slot *s = &c->slots[c->head];
        finish |= s->close_after && http_slot_done(s);
        http_slot_release_head(c);
        if (c->closing) return 0; /* a stream's producer gave up */
    }
    if (done == n) return finish;
    ST_ASSERT(!finish); /* close_after ends a batch */
    bufs[done].base += rem;
    bufs[done].len -= rem;
    for (uint32_t k = 0; k < n - done; k++)
        c->slots[(c->head + k) % max].state = SLOT_WRITING;
    c->write_slots = n - done;
    c->writing = 1;
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs + done, n - done, on_write_done);
    if (rc != 0) {
        c->writing = 0;
        http_conn_close(c);
        return 0;
    }
    c->wq_seen = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    c->out_progress_ms = uv_now(c->srv->loop); /* the stall clock starts with the write */
    return 0;
}

/* ---------- reading ---------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct http_conn *c = h->data;
    (void)suggested;
    if (c->tls) {
        *buf = uv_buf_init((char *)c->tls_in, HTTP_TLS_IN_BYTES);
        return;
    }
    size_t cap = c->srv->cfg.read_buf_bytes;
    if (!c->rbuf) {
        c->rbuf = malloc(cap);
        if (!c->rbuf) {
            *buf = uv_buf_init(NULL, 0);
            return;
        }
    }
    if (c->rstart > 0 && c->rstart + c->rlen == cap) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rlen);
        c->rstart = 0;
    }
    size_t off = c->rstart + c->rlen;
    *buf = uv_buf_init(c->rbuf + off, (unsigned int)(cap - off));
}

void http_conn_eof(struct http_conn *c)
{
    c->eof = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
    if (c->cur && c->cur->state == SLOT_PARSING) {
        /* A partial request: it will never complete. It is the ring's tail. */
        c->cur->state = SLOT_FREE;
        c->count--;
        if (c->count == 0) c->head = 0;
        c->cur = NULL;
    }
    if (c->count == 0) http_conn_close(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct http_conn *c = stream->data;
    if (nread == 0) return;
    if (c->lingering) {
        if (nread < 0) http_conn_close(c); /* the client's EOF (or an error): done */
        return;                            /* discard */
    }
    if (nread == UV_EOF) {
        http_conn_eof(c);
        return;
    }
    if (nread < 0) {
        http_conn_close(c);
        return;
    }
    if (c->tls) {
        http_conn_tls_on_read(c, (size_t)nread);
        if (!c->closing) http_conn_touch(c);
        return;
    }
    ST_ASSERT(buf->base == c->rbuf + c->rstart + c->rlen);
    c->rlen += (size_t)nread;
    http_conn_process(c);
    http_conn_touch(c); /* after parsing: a request may have begun (its deadline counts) */
}

void http_conn_update_reading(struct http_conn *c)
{
    if (c->closing || c->lingering) return;
    int full = http_conn_out_full(c);
    if (full && !c->out_paused) c->srv->stats.out_paused++;
    c->out_paused = full;
    int want = !c->no_more && !c->eof && c->count < c->srv->cfg.pipeline_max &&
               c->rlen < c->srv->cfg.read_buf_bytes && !full;
    /* With TLS, plaintext OpenSSL already holds is taken first. */
    if (want && c->tls && !c->tls_pumping) {
        http_conn_tls_pump(c);
        if (c->closing || c->lingering) return;
        want = !c->no_more && !c->eof && c->count < c->srv->cfg.pipeline_max &&
               c->rlen < c->srv->cfg.read_buf_bytes && !http_conn_out_full(c);
    }
    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            http_conn_close(c);
            return;
        }
        c->reading = 1;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}
