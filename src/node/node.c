/* The node runtime: clocks, creation and destruction, start (opening
 * storage, restoring, creating the core, writer and transport) and stop.
 * The other files of the runtime are listed in node_int.h. */
#include "node/node.h"

#include "http/client.h"
#include "node/node_int.h"
#include "stcache/errors.h"
#include "util/assert.h"
#include "util/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define MOD "node"

uint64_t node_now_us(void)
{
    return uv_hrtime() / 1000u;
}

uint64_t node_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t node_stamp_ms(struct node *n)
{
    uint64_t t = ST_MAX(node_wall_ms(), n->stamp_last_ms);
    if (n->kv) t = ST_MAX(t, kv_clock_ms(n->kv));
    n->stamp_last_ms = t;
    return t;
}

/* Leader: stamps the forwarded commands of a PROPOSE with this node's time
 * before the core appends them. A follower's clock never enters the log, so
 * a follower with a fast clock cannot make a live key look expired at apply
 * (issue 14, finding 10). The payloads are views into the frame just
 * received, which nothing else references yet. */
void node_restamp_forwarded(struct node *n, const struct raft_msg *m)
{
    if (raft_role_get(n->raft) != RAFT_LEADER) return; /* the core drops it */
    uint64_t t = node_stamp_ms(n);
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        if (!e->buf || e->len == 0 || e->data < e->buf->data ||
            (size_t)(e->data - e->buf->data) + e->len > e->buf->cap)
            continue; /* not a view into its buffer: the core drops the message */
        uint8_t *p = e->buf->data + (e->data - e->buf->data);
        (void)kv_command_restamp(p, e->len, t); /* a malformed one fails at apply */
    }
}

static uint64_t random_u64(void)
{
    uint64_t v = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t r = read(fd, &v, sizeof v);
        close(fd);
        if (r == (ssize_t)sizeof v && v != 0) return v;
    }
    /* Fallback: time and pid mixed (splitmix64 finaliser). */
    v = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ node_wall_ms();
    v ^= v >> 30;
    v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 27;
    v *= 0x94d049bb133111ebull;
    v ^= v >> 31;
    return v ? v : 1;
}

/* ------------------------------------------------------------ lifecycle */

int node_create(uv_loop_t *loop, const struct node_config *cfg, struct node **out)
{
    char err[200];
    if (node_config_validate(cfg, err, sizeof err) != 0) {
        ST_TRACE_ERROR(MOD, "bad configuration: %s", err);
        return ST_EINVAL;
    }
    struct node *n = calloc(1, sizeof *n);
    if (!n) return ST_ENOMEM;
    n->loop = loop;
    n->cfg = *cfg;
    node_wal_inline_init(&n->wal_inline, cfg->wal_inline_max_us);
    snprintf(n->advertise_raft, sizeof n->advertise_raft, "%s",
             cfg->advertise_raft[0] ? cfg->advertise_raft : cfg->raft_listen);
    snprintf(n->advertise_http, sizeof n->advertise_http, "%s",
             cfg->advertise_http[0] ? cfg->advertise_http : cfg->http_listen);
    n->limits.key_bytes_max = cfg->max_key_bytes;
    n->limits.value_bytes_max = cfg->max_value_bytes;
    if (uv_mutex_init(&n->wmu) != 0) {
        free(n);
        return ST_ENOMEM;
    }
    int rc = node_waiters_init(n);
    if (rc == 0) {
        rc = node_memory_init(n);
        if (rc) node_waiters_close(n);
    }
    if (rc == 0) {
        rc = node_client_tls_init(n);
        if (rc == 0) rc = node_watch_init(n);
        if (rc) {
            node_client_tls_close(n);
            node_memory_close(n);
            node_waiters_close(n);
        }
    }
    if (rc) {
        uv_mutex_destroy(&n->wmu);
        free(n);
        return rc;
    }
    /* Request ids must never repeat across restarts of this node: entries
     * replayed from the log carry old ids (see docs/ARCHITECTURE.md). */
    n->next_seq = (random_u64() >> 2) | 1;
    n->role = RAFT_FOLLOWER;
    n->dir_lock.fd = -1;
    *out = n;
    return 0;
}

void node_destroy(struct node *n)
{
    if (!n) return;
    ST_ASSERT(!n->running);
    st_dir_lock_release(&n->dir_lock);
    node_waiters_close(n);
    node_memory_close(n);
    node_client_tls_close(n);
    node_watch_fini(n);
    struct node_persist *p = n->persist_free;
    while (p) {
        struct node_persist *next = p->next;
        free(p->bufs);
        free(p->msgs);
        free(p->ents);
        free(p);
        p = next;
    }
    uv_mutex_destroy(&n->wmu);
    free(n);
}

int node_raft_port(const struct node *n)
{
    return n->tr ? st_tr_listen_port(n->tr) : 0;
}

/* --------------------------------------------------------------- start */

static int handles_init(struct node *n)
{
    uv_timer_init(n->loop, &n->tick_timer);
    uv_check_init(n->loop, &n->check);
    uv_prepare_init(n->loop, &n->prepare);
    uv_idle_init(n->loop, &n->idle);
    uv_timer_init(n->loop, &n->join_timer);
    uv_timer_init(n->loop, &n->fatal_timer);
    uv_timer_init(n->loop, &n->nospace_timer);
    n->fatal_timer.data = n;
    n->nospace_timer.data = n;
    n->tick_timer.data = n;
    n->check.data = n;
    n->prepare.data = n;
    n->idle.data = n;
    n->join_timer.data = n;
    n->handles_open = 7;
    if (uv_async_init(n->loop, &n->persist_async, node_persist_async_cb) != 0) return ST_ENOMEM;
    n->persist_async.data = n;
    n->handles_open++;
    return 0;
}

/* Opens storage, restores, creates the core, writer and transport, and
 * starts the handles. initial_conf: brand-new cluster membership or NULL. */
int node_open_and_run(struct node *n, const struct raft_conf *initial_conf)
{
    char errtext[256] = "";
    struct st_errbuf eb = {errtext, sizeof errtext};
    struct st_storage_config sc;
    memset(&sc, 0, sizeof sc);
    sc.fs = n->cfg.fs;
    sc.dir = n->cfg.data_dir;
    sc.node_id = n->cfg.id;
    sc.cluster_id = n->cluster_id;
    sc.segment_bytes = n->cfg.wal_segment_bytes;
    struct st_storage_state state;
    memset(&state, 0, sizeof state);
    /* A join's members are stored before storage creates DATA/meta, which
     * makes the directory a node's: killed in between, the joiner restarted
     * as a node that knew no member and refused every peer. (Killed before
     * meta, it starts over: its --join asks again.) */
    bool joined = n->n_seed_peers > 0;
    int rc = joined ? node_seeds_save(n) : 0;
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": cannot store the join members in %s: %s", n->cfg.id,
                       n->cfg.data_dir, st_strerror(rc));
        return rc;
    }
    rc = st_storage_open(&sc, &n->storage, &state, &eb);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": cannot open data directory %s: %s%s%s", n->cfg.id,
                       n->cfg.data_dir, st_strerror(rc), errtext[0] ? ": " : "", errtext);
        n->storage = NULL;
        return rc;
    }
    /* Before any peer is talked to: the members of an earlier join when
     * restarting. */
    if (!joined) rc = node_seeds_load(n);
    /* A forced node is alone: the members of its join answer are gone. */
    if (rc == 0 && n->cfg.force_new_cluster && n->n_seed_peers) {
        n->n_seed_peers = 0;
        rc = node_seeds_save(n);
    }
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": cannot %s the join members in %s: %s", n->cfg.id,
                       n->n_seed_peers ? "store" : "load", n->cfg.data_dir, st_strerror(rc));
        goto fail_state;
    }
    struct kv_config kc;
    kv_config_default(&kc);
    /* The cluster id is known here in every start mode: read from DATA/meta
     * (restart), chosen (bootstrap, peers) or learnt from the join reply
     * (node_open_and_run runs after it); nothing was restored into a kv before. */
    ST_ASSERT(n->cluster_id != 0);
    kc.hash_seed = kv_hash_seed_for_cluster(n->cluster_id);
    kc.event_cb = node_watch_kv_event; /* the watch history (watch.c) */
    kc.event_ctx = n;
    n->kv_cfg = kc;
    rc = kv_create(&kc, &n->kv);
    if (rc) goto fail_state;
    if (state.has_snapshot) {
        rc = node_snapshot_restore(n, state.snapshot.meta.index);
        if (rc) goto fail_state;
    }
    struct raft_config rcfg;
    raft_config_default(&rcfg, n->cfg.id);
    rcfg.seed = n->cfg.seed ? n->cfg.seed : random_u64();
    rcfg.election_ticks = n->cfg.election_ticks;
    rcfg.heartbeat_ticks = n->cfg.heartbeat_ticks;
    rcfg.inflight_msgs_max = n->cfg.raft_inflight ? n->cfg.raft_inflight : 1;
    rcfg.committed_bytes_max = NODE_APPLY_BYTES_PER_READY;
    rcfg.pre_vote = true;
    rcfg.check_quorum = true;
    rcfg.lease_reads = true;
    rcfg.forward_proposals = true;
    /* One entry must hold the largest command the limits allow. */
    uint64_t cmd_max = (uint64_t)n->cfg.max_value_bytes + n->cfg.max_key_bytes + 4096;
    if (rcfg.msg_bytes_max < cmd_max) rcfg.msg_bytes_max = (uint32_t)ST_MIN(cmd_max, UINT32_MAX);
    n->fwd_bytes_max = rcfg.msg_bytes_max;
    if (rcfg.uncommitted_bytes_max && rcfg.uncommitted_bytes_max < 8 * cmd_max)
        rcfg.uncommitted_bytes_max = 8 * cmd_max;
    /* Trailing log behind a snapshot (DESIGN 3.7): half the threshold,
     * within [8, 1024], so a small threshold still forces snapshot streaming
     * to a far-behind follower (tests) while a large one keeps plenty. */
    n->trailing = n->cfg.snapshot_threshold / 2;
    if (n->trailing < 8) n->trailing = 8;
    if (n->trailing > 1024) n->trailing = 1024;
    rcfg.trailing_entries = n->trailing;
    /* ... and at most a quarter of --snapshot-log-bytes of payload: the log
     * in memory stays below 1.25 x snapshot_log_bytes (plus one entry). */
    n->trailing_bytes = n->cfg.snapshot_log_bytes / 4;
    rcfg.trailing_bytes = n->trailing_bytes;
    struct raft_bootstrap_state bs;
    memset(&bs, 0, sizeof bs);
    bs.hard_state = state.log.hard_state;
    n->hs_cur = n->hs_written = bs.hard_state;
    bs.snapshot = state.has_snapshot ? &state.snapshot.meta : NULL;
    bs.entries = state.log.entries;
    bs.n_entries = state.log.n_entries;
    bool empty = !state.has_snapshot && state.log.n_entries == 0;
    bs.initial_conf = empty ? initial_conf : NULL;
    bs.applied = state.has_snapshot ? state.snapshot.meta.index : 0;
    struct raft_member self;
    if (n->cfg.force_new_cluster) {
        /* etcd's --force-new-cluster: the core appends the conf entries that
         * leave this node alone, committed; the first ready writes them to
         * the WAL like any entry, so a later restart keeps them. */
        if (empty) {
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": --force-new-cluster: %s holds no log to keep",
                           n->cfg.id, n->cfg.data_dir);
            rc = ST_EINVAL;
            goto fail_state;
        }
        memset(&self, 0, sizeof self);
        self.id = n->cfg.id;
        self.role = RAFT_VOTER;
        self.context_len =
            (uint16_t)node_context_format(self.context, n->advertise_raft, n->advertise_http);
        bs.force_self = &self;
    }
    rc = raft_create(&rcfg, &bs, &n->raft);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": the durable state is inconsistent: %s", n->cfg.id,
                       st_strerror(rc));
        goto fail_state;
    }
    ST_TRACE_INFO(MOD,
                  "node %" PRIu64 ": cluster %016" PRIx64 ", term %" PRIu64 ", commit %" PRIu64
                  ", log (%" PRIu64 ", %" PRIu64 "], snapshot %" PRIu64,
                  n->cfg.id, n->cluster_id, bs.hard_state.term, bs.hard_state.commit,
                  state.log.first_index - 1, state.log.last_index, bs.applied);
    n->recovered_commit = raft_commit_index(n->raft);
    if (n->cfg.force_new_cluster)
        ST_TRACE_WARN(MOD,
                      "node %" PRIu64 ": --force-new-cluster: the configuration is now this node "
                      "alone (log up to %" PRIu64 " kept and committed); add new members with "
                      "--join, and never restart the old ones on their old data",
                      n->cfg.id, raft_commit_index(n->raft));
    st_storage_state_release(&state);

    struct st_log_writer_config wc;
    memset(&wc, 0, sizeof wc);
    rc = st_log_writer_create(&n->storage->log, &wc, node_writer_cb, n, &n->writer);
    if (rc) return rc;

    struct st_tr_config tc;
    st_tr_config_default(&tc, n->cfg.id, n->cluster_id, n->cfg.raft_listen);
    if (n->cfg.peer_cert_file[0]) {
        tc.tls_cert_file = n->cfg.peer_cert_file;
        tc.tls_key_file = n->cfg.peer_key_file;
        tc.tls_ca_file = n->cfg.peer_trusted_ca_file;
    }
    snprintf(tc.advertise_addr, sizeof tc.advertise_addr, "%s", n->advertise_raft);
    tc.seed = rcfg.seed ^ 0x5eedull;
    struct st_tr_callbacks cbs = {
        .ctx = n,
        .msg_cb = node_tr_msg_cb,
        .peer_state_cb = node_tr_peer_state_cb,
        .send_failed_cb = node_tr_send_failed_cb,
        .snapshot_begin_cb = node_tr_snap_begin_cb,
        .snapshot_chunk_cb = node_tr_snap_chunk_cb,
        .snapshot_end_cb = node_tr_snap_end_cb,
        .snapshot_sent_cb = node_tr_snap_sent_cb,
    };
    rc = st_tr_create(n->loop, &tc, &cbs, &n->tr);
    if (rc) return rc;
    rc = st_tr_start(n->tr);
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": cannot listen on %s: %s", n->cfg.id,
                       n->cfg.raft_listen, st_strerror(rc));
        return rc;
    }
    n->running = true;
    n->last_snapshot_us = node_now_us();
    n->last_purge_us = node_now_us();
    node_reconcile_peers(n);
    uv_timer_start(&n->tick_timer, node_tick_cb, n->cfg.tick_ms, n->cfg.tick_ms);
    uv_check_start(&n->check, node_check_cb);
    uv_prepare_start(&n->prepare, node_prepare_cb);
    n->started = true;
    /* A single voter elects itself at once instead of waiting a timeout. */
    const struct raft_conf *conf = raft_conf_get(n->raft);
    if (conf->n == 1 && conf->members[0].id == n->cfg.id && conf->members[0].role == RAFT_VOTER)
        raft_campaign(n->raft);
    return 0;

fail_state:
    st_storage_state_release(&state);
    return rc;
}

void node_started(struct node *n, int status)
{
    if (n->started_cb) n->started_cb(n, status, n->started_ctx);
}

int node_start(struct node *n, node_started_cb cb, void *ctx)
{
    n->started_cb = cb;
    n->started_ctx = ctx;
    /* idle time in the poll, for loop_busy_observe (no effect if set before) */
    (void)uv_loop_configure(n->loop, UV_METRICS_IDLE_TIME);
    char errtext[256] = "";
    int rc = node_auth_init(n, errtext, sizeof errtext); /* node/auth.h */
    if (rc) {
        ST_TRACE_ERROR(MOD, "node %" PRIu64 ": %s", n->cfg.id, errtext);
        return rc;
    }
    rc = handles_init(n);
    if (rc) return rc;
    struct st_errbuf eb = {errtext, sizeof errtext};
    /* Before anything in DATA is read: two processes on one directory would
     * each believe they own its log (two leaders of different terms, one of
     * them acknowledging writes the other's log then overwrites). */
    rc = st_dir_lock_acquire(n->cfg.fs, n->cfg.data_dir, &n->dir_lock, &eb);
    if (rc) {
        if (rc == ST_EBUSY)
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": %s", n->cfg.id, errtext);
        else
            ST_TRACE_ERROR(MOD, "node %" PRIu64 ": data directory %s: %s%s%s", n->cfg.id,
                           n->cfg.data_dir, st_strerror(rc), errtext[0] ? ": " : "", errtext);
        return rc;
    }
    errtext[0] = '\0';
    uint64_t nid = 0, cid = 0;
    rc = st_identity_read(n->cfg.fs ? n->cfg.fs : st_fs_posix(), n->cfg.data_dir, &nid, &cid, &eb);
    if (rc == 0) {
        if (nid != n->cfg.id) {
            ST_TRACE_ERROR(MOD, "data directory %s belongs to node %" PRIu64 ", not %" PRIu64,
                           n->cfg.data_dir, nid, n->cfg.id);
            return ST_EMISMATCH;
        }
        if (n->cfg.mode != NODE_START_RESTART)
            ST_TRACE_INFO(MOD,
                          "node %" PRIu64 ": %s holds a node: restarting from it (the start "
                          "mode flag is ignored)",
                          n->cfg.id, n->cfg.data_dir);
        n->cluster_id = cid;
        rc = node_open_and_run(n, NULL);
        if (rc == 0) node_started(n, 0);
        return rc;
    }
    if (rc != ST_ENOENT) {
        ST_TRACE_ERROR(MOD, "data directory %s: %s%s%s", n->cfg.data_dir, st_strerror(rc),
                       errtext[0] ? ": " : "", errtext);
        return rc;
    }
    enum node_start_mode mode = n->cfg.mode;
    if (mode == NODE_START_RESTART && n->cfg.bootstrap_if_empty) mode = NODE_START_BOOTSTRAP;
    struct raft_conf *conf = calloc(1, sizeof *conf);
    if (!conf) return ST_ENOMEM;
    switch (mode) {
    case NODE_START_RESTART:
        if (n->cfg.force_new_cluster) {
            ST_TRACE_ERROR(MOD,
                           "data directory %s is empty: --force-new-cluster recovers a node "
                           "from its own data (restore a backup instead: stcache snapshot "
                           "restore)",
                           n->cfg.data_dir);
            free(conf);
            return ST_ENOENT;
        }
        ST_TRACE_ERROR(MOD,
                       "data directory %s is empty: start a new cluster with --bootstrap, "
                       "join one with --join HTTP_ADDR, or use --peers",
                       n->cfg.data_dir);
        free(conf);
        return ST_ENOENT;
    case NODE_START_BOOTSTRAP:
        n->cluster_id = random_u64();
        conf->n = 1;
        conf->members[0].id = n->cfg.id;
        conf->members[0].role = RAFT_VOTER;
        conf->members[0].context_len = (uint16_t)node_context_format(
            conf->members[0].context, n->advertise_raft, n->advertise_http);
        break;
    case NODE_START_PEERS:
        n->cluster_id = node_cluster_id_from_peers(n->cfg.peers, n->cfg.n_peers);
        for (uint32_t i = 0; i < n->cfg.n_peers; i++) {
            struct raft_member *m = &conf->members[conf->n++];
            m->id = n->cfg.peers[i].id;
            m->role = RAFT_VOTER;
            m->context_len = (uint16_t)node_context_format(m->context, n->cfg.peers[i].raft,
                                                           n->cfg.peers[i].http);
        }
        break;
    case NODE_START_JOIN:
        free(conf);
        node_join_send(n);
        return 0;
    }
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": new cluster %016" PRIx64 " with %u member(s) in %s",
                  n->cfg.id, n->cluster_id, conf->n, n->cfg.data_dir);
    rc = node_open_and_run(n, conf);
    free(conf);
    if (rc == 0) node_started(n, 0);
    return rc;
}

/* ---------------------------------------------------------------- stop */

void node_stop_maybe_finish(struct node *n)
{
    if (n->handles_open > 0 || !n->st_tr_closed || n->snap_commit || n->bg_pending) return;
    if (n->install) node_install_free(n); /* loaded, never installed */
    if (n->bg_pending) return;
    ST_ASSERT(n->snap_in_commit == NULL); /* counted in bg_pending */
    if (n->snap_in) node_snap_in_release(n);
    if (n->snap_in_rd) {
        st_snap_read_close(n->snap_in_rd);
        n->snap_in_rd = NULL;
    }
    if (n->raft) {
        raft_destroy(n->raft);
        n->raft = NULL;
    }
    if (n->kv) {
        kv_destroy(n->kv);
        n->kv = NULL;
    }
    if (n->storage) {
        st_storage_close(n->storage);
        n->storage = NULL;
    }
    node_auth_free(n);
    node_session_free(n);
    st_dir_lock_release(&n->dir_lock); /* last: nothing in DATA is open now */
    ST_TRACE_INFO(MOD, "node %" PRIu64 ": stopped", n->cfg.id);
    if (n->stopped_cb) n->stopped_cb(n, n->stopped_ctx);
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct node *n = h->data;
    n->handles_open--;
    node_stop_maybe_finish(n);
}

static void st_tr_done_cb(void *arg)
{
    struct node *n = arg;
    n->tr = NULL;
    n->st_tr_closed = true;
    node_stop_maybe_finish(n);
}

void node_stop(struct node *n, node_stopped_cb cb, void *ctx)
{
    if (n->stopping) return;
    n->stopping = true;
    n->stopped_cb = cb;
    n->stopped_ctx = ctx;
    if (n->join_req) {
        http_client_abort(n->join_req);
        n->join_req = NULL;
    }
    node_waiters_fail_all(n, ST_ECLOSED);
    node_watch_stop(n);
    node_client_drop_forwards(n);
    if (n->snap_active) node_snap_job_release(n);
    node_snap_waiters_notify(n, ST_ECLOSED, 0);
    /* The commit index the WAL lacks goes last, so that a restart serves
     * everything this node had committed (DESIGN 3.9). Then drain the
     * writer: every queued batch is written and synced (its callback runs
     * on the writer thread while we join it). */
    node_hard_state_flush(n);
    if (n->writer) {
        st_log_writer_destroy(n->writer);
        n->writer = NULL;
    }
    while (n->persist_head) {
        struct node_persist *p = n->persist_head;
        n->persist_head = p->next;
        node_persist_release(n, p);
    }
    n->persist_tail = NULL;
    n->running = false;
    if (n->handles_open > 0) {
        uv_close((uv_handle_t *)&n->tick_timer, handle_closed_cb);
        uv_close((uv_handle_t *)&n->check, handle_closed_cb);
        uv_close((uv_handle_t *)&n->prepare, handle_closed_cb);
        uv_close((uv_handle_t *)&n->idle, handle_closed_cb);
        uv_close((uv_handle_t *)&n->join_timer, handle_closed_cb);
        uv_close((uv_handle_t *)&n->fatal_timer, handle_closed_cb);
        uv_close((uv_handle_t *)&n->nospace_timer, handle_closed_cb);
        if (n->handles_open == 8) uv_close((uv_handle_t *)&n->persist_async, handle_closed_cb);
    }
    if (n->tr)
        st_tr_destroy(n->tr, st_tr_done_cb, n);
    else
        n->st_tr_closed = true;
    node_stop_maybe_finish(n);
}

static void fatal_timer_cb(uv_timer_t *t)
{
    struct node *n = t->data;
    if (n->fatal_cb && !n->stopping) n->fatal_cb(n, n->fatal_code, n->fatal_ctx);
}

void node_fatal(struct node *n, int code, const char *what)
{
    if (n->fatal) return;
    n->fatal = true;
    ST_TRACE_ERROR(MOD, "node %" PRIu64 ": fatal: %s: %s; the node stops serving", n->cfg.id, what,
                   st_strerror(code));
    node_waiters_fail_all(n, ST_EIO);
    /* Tell the owner from a fresh loop iteration: it will likely stop the
     * node, which must not happen in the middle of a ready. */
    n->fatal_code = code;
    if (n->handles_open > 0 && !n->stopping) uv_timer_start(&n->fatal_timer, fatal_timer_cb, 0, 0);
}

void node_on_fatal(struct node *n, void (*cb)(struct node *n, int code, void *ctx), void *ctx)
{
    n->fatal_cb = cb;
    n->fatal_ctx = ctx;
}
