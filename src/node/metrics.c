/* Metrics of the node runtime in the Prometheus text exposition format. */
#include "node/auth.h"
#include "node/node_int.h"

#include "util/assert.h"
#include "util/fdlimit.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const uint64_t node_hist_bounds_us[NODE_HIST_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 5000000,
};

void node_hist_add(struct node_hist *h, uint64_t us)
{
    size_t i = 0;
    while (i < NODE_HIST_BUCKETS && us > node_hist_bounds_us[i])
        i++;
    h->counts[i]++;
    h->sum_us += us;
    h->n++;
}

static const char *route_names[NODE_ROUTE_COUNT] = {
    "kv_get", "kv_put", "kv_delete", "cluster", "admin", "health", "metrics", "other",
};

const char *node_route_name(enum node_route r)
{
    return (unsigned)r < NODE_ROUTE_COUNT ? route_names[r] : "other";
}

void node_metrics_request(struct node *n, enum node_route r, int http_status, uint64_t latency_us)
{
    if ((unsigned)r >= NODE_ROUTE_COUNT) r = NODE_ROUTE_OTHER;
    int cls = http_status / 100;
    if (cls < 1 || cls > 5) cls = 5;
    n->m.route_status[r][cls]++;
    node_hist_add(&n->m.route_latency[r], latency_us);
}

struct out {
    void (*append)(void *actx, const void *p, size_t len);
    void *actx;
};

static void outf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(struct out *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (len > 0) o->append(o->actx, line, ST_MIN((size_t)len, sizeof line - 1));
}

static void counter(struct out *o, const char *name, const char *help, uint64_t v)
{
    outf(o, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static void gauge(struct out *o, const char *name, const char *help, uint64_t v)
{
    outf(o, "# HELP %s %s\n# TYPE %s gauge\n%s %" PRIu64 "\n", name, help, name, name, v);
}

static void hist_body(struct out *o, const char *name, const char *labels,
                      const struct node_hist *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] ? "," : "";
    for (size_t i = 0; i < NODE_HIST_BUCKETS; i++) {
        cum += h->counts[i];
        outf(o, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
             (double)node_hist_bounds_us[i] / 1e6, cum);
    }
    cum += h->counts[NODE_HIST_BUCKETS];
    outf(o, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cum);
    outf(o, "%s_sum%s%s%s %.6f\n", name, labels[0] ? "{" : "", labels, labels[0] ? "}" : "",
         (double)h->sum_us / 1e6);
    outf(o, "%s_count%s%s%s %" PRIu64 "\n", name, labels[0] ? "{" : "", labels,
         labels[0] ? "}" : "", h->n);
}

void node_metrics_write(const struct node *n, void (*append)(void *actx, const void *p, size_t len),
                        void *actx)
{
    struct out o = {append, actx};
    const struct node_metrics *m = &n->m;
    struct raft_stats rs;
    memset(&rs, 0, sizeof rs);
    if (n->raft) raft_stats_get(n->raft, &rs);
    struct node_info info;
    node_info_get(n, &info);

    const struct node_version *ver = node_version_get();
    outf(&o,
         "# HELP stcache_build_info The release and commit of this binary (value 1).\n"
         "# TYPE stcache_build_info gauge\n"
         "stcache_build_info{version=\"%s\",commit=\"%s\"} 1\n",
         ver->release, ver->commit);
    gauge(&o, "stcache_node_id", "This node's id.", n->cfg.id);
    gauge(&o, "stcache_raft_term", "Current Raft term.", info.term);
    gauge(&o, "stcache_raft_leader", "Known leader id (0: none).", info.leader);
    gauge(&o, "stcache_raft_is_leader", "1 if this node leads.", info.role == RAFT_LEADER);
    gauge(&o, "stcache_raft_commit_index", "Highest index known committed.", info.commit);
    gauge(&o, "stcache_raft_applied_index", "Highest index applied to the kv.", info.applied);
    gauge(&o, "stcache_raft_first_index", "First index held in the log.", info.first_index);
    gauge(&o, "stcache_raft_last_index", "Last index in the log.", info.last_index);
    gauge(&o, "stcache_raft_snapshot_index", "Index of the newest local snapshot.",
          info.snapshot_index);
    gauge(&o, "stcache_raft_members", "Members in the configuration.", info.n_members);
    gauge(&o, "stcache_memory_used_bytes",
          "Used memory by the kv's accounting (key + value + 64 per key): what --max-memory "
          "limits.",
          info.used_memory);
    gauge(&o, "stcache_memory_max_bytes", "--max-memory (0: no limit).", info.max_memory);
    struct node_watch_stats wst;
    node_watch_stats_get(n, &wst);
    gauge(&o, "stcache_watches", "Watches open on this node.", wst.watches);
    gauge(&o, "stcache_watch_history_events", "Changes held in the watch history.",
          wst.history_events);
    gauge(&o, "stcache_watch_history_oldest_version", "Oldest version a watch may start from.",
          wst.history_first);
    counter(&o, "stcache_watch_events_sent_total", "Events delivered to watches.", wst.events_sent);
    counter(&o, "stcache_watch_canceled_slow_total", "Watches canceled for falling behind.",
            wst.canceled_slow);
    counter(&o, "stcache_evicted_keys_total", "Keys removed by applied EVICT entries.",
            m->evicted_keys);
    counter(&o, "stcache_evictions_proposed_total", "EVICT entries proposed by this node.",
            m->evictions_proposed);
    counter(&o, "stcache_writes_refused_memory_total",
            "Writes refused with 507 out_of_memory by --max-memory.", m->writes_refused_memory);
    counter(&o, "stcache_raft_leader_changes_total", "Leader changes seen.", rs.leader_changes);
    counter(&o, "stcache_raft_elections_total", "Elections started by this node.",
            rs.elections_started);
    counter(&o, "stcache_raft_msgs_dropped_total", "Peer messages dropped as malformed.",
            rs.msgs_dropped);
    counter(&o, "stcache_raft_msgs_stale_total", "Peer messages with a stale term.", rs.msgs_stale);
    counter(&o, "stcache_proposals_total", "Commands proposed by this node.", m->proposals);
    counter(&o, "stcache_proposals_failed_total", "Proposals refused at once.",
            m->proposals_failed);
    counter(&o, "stcache_writes_completed_total", "Client writes answered with an outcome.",
            m->writes_ok);
    counter(&o, "stcache_writes_failed_total", "Client writes failed (timeout, no leader, ...).",
            m->writes_failed);
    outf(&o, "# HELP stcache_reads_total Client reads by consistency.\n"
             "# TYPE stcache_reads_total counter\n");
    outf(&o, "stcache_reads_total{consistency=\"linearizable\"} %" PRIu64 "\n",
         m->reads_linearizable);
    outf(&o, "stcache_reads_total{consistency=\"lease\"} %" PRIu64 "\n", m->reads_lease);
    outf(&o, "stcache_reads_total{consistency=\"stale\"} %" PRIu64 "\n", m->reads_stale);
    counter(&o, "stcache_read_index_rounds_total", "ReadIndex rounds (batches of reads).",
            m->read_rounds);
    counter(&o, "stcache_read_index_retries_total",
            "Reads passed on to a later ReadIndex round (a lost answer, a leader change).",
            m->read_retries);
    counter(&o, "stcache_requests_timed_out_total", "Requests failed by the request timeout.",
            m->requests_timed_out);
    counter(&o, "stcache_entries_applied_total", "Log entries applied.", m->entries_applied);
    counter(&o, "stcache_snapshots_taken_total", "Snapshots taken locally.", m->snapshots_taken);
    counter(&o, "stcache_snapshots_installed_total", "Snapshots installed from the leader.",
            m->snapshots_installed);
    counter(&o, "stcache_snapshots_loaded_off_loop_total",
            "Leader snapshots loaded into a new state on the threadpool before installing.",
            m->snapshots_loaded_off_loop);
    counter(&o, "stcache_memory_trims_total",
            "Times free heap pages were returned to the OS (after snapshots).", m->memory_trims);
    outf(&o, "# HELP stcache_memory_trim_seconds_total Time spent returning free heap pages.\n");
    outf(&o, "# TYPE stcache_memory_trim_seconds_total counter\n");
    outf(&o, "stcache_memory_trim_seconds_total %.6f\n", (double)m->memory_trim_us / 1e6);
    counter(&o, "stcache_wal_batches_total", "Batches submitted to the WAL writer.",
            m->write_batches);
    counter(&o, "stcache_wal_inline_batches_total",
            "WAL batches written and synced on the loop thread (writer idle).",
            m->wal_inline_batches);
    if (n->storage) {
        struct st_wal_stats ws;
        st_wal_stats_get(&n->storage->log, &ws);
        counter(&o, "stcache_wal_syncs_total",
                "fdatasync calls on the WAL (a group commit covers many batches).", ws.syncs);
        counter(&o, "stcache_wal_bytes_written_total", "Bytes appended to the WAL since start.",
                ws.bytes_written);
        gauge(&o, "stcache_wal_direct_io",
              "1 if WAL appends use direct I/O, 0 if buffered (file system without it).",
              ws.direct_io);
    }
    outf(&o, "# HELP stcache_alarm Alarms raised on this node (1: raised).\n"
             "# TYPE stcache_alarm gauge\n");
    outf(&o, "stcache_alarm{type=\"no_space\"} %d\n", n->nospace ? 1 : 0);
    counter(&o, "stcache_nospace_alarms_total", "Times the full-disk alarm was raised.",
            m->nospace_alarms);
    counter(&o, "stcache_writes_refused_nospace_total",
            "Client writes refused with 507 no_space while the disk was full.",
            m->writes_refused_nospace);
    counter(&o, "stcache_learners_promoted_total", "Learner promotions proposed.",
            m->learners_promoted);
    counter(&o, "stcache_purges_proposed_total", "PURGE_EXPIRED commands proposed.",
            m->purges_proposed);
    counter(&o, "stcache_readies_total", "Ready batches processed.", m->readies);
    counter(&o, "stcache_forward_batches_total",
            "PROPOSE messages a follower sent (each carries a batch of writes).",
            m->forward_batches);
    if (n->kv) {
        struct kv_stats ks;
        kv_stats(n->kv, &ks);
        gauge(&o, "stcache_kv_keys", "Keys held (live and not yet purged).", ks.keys);
        gauge(&o, "stcache_kv_keys_with_ttl", "Keys with an expiry.", ks.keys_with_ttl);
        gauge(&o, "stcache_kv_memory_bytes", "Memory used by the kv.", ks.memory_bytes);
        gauge(&o, "stcache_kv_idempotency_records", "Idempotency-Key records held.",
              ks.idem_records);
    }
    gauge(&o, "stcache_open_files_limit",
          "Soft RLIMIT_NOFILE of the process (raised to the hard limit at start).",
          st_nofile_limit());
    uint64_t nfiles = st_open_files();
    if (nfiles) gauge(&o, "stcache_open_files", "File descriptors open in the process.", nfiles);
    if (n->writer)
        counter(&o, "stcache_wal_enfile_retries_total",
                "WAL appends retried because no file descriptor was free for a new segment.",
                st_log_writer_enfile_retries(n->writer));
    if (n->tr) {
        struct st_tr_stats ts;
        st_tr_stats_get(n->tr, &ts);
        counter(&o, "stcache_transport_accept_failures_total",
                "Peer accept errors (EMFILE, ENFILE, ...).", ts.accept_failures);
        counter(&o, "stcache_transport_msgs_sent_total", "Raft messages sent.", ts.msgs_sent);
        counter(&o, "stcache_transport_msgs_received_total", "Raft messages received.",
                ts.msgs_received);
        counter(&o, "stcache_transport_msgs_dropped_total", "Raft messages dropped.",
                ts.msgs_dropped);
        counter(&o, "stcache_transport_bytes_sent_total", "Bytes sent to peers.", ts.bytes_sent);
        counter(&o, "stcache_transport_snapshots_sent_total", "Snapshots streamed to peers.",
                ts.snapshots_sent);
        counter(&o, "stcache_transport_read_pauses_total",
                "Times reading from a peer paused while a received snapshot was written.",
                ts.read_pauses);
        counter(&o, "stcache_transport_read_turn_pauses_total",
                "Times reading from a peer waited for the next loop turn (a turn's bytes read).",
                ts.read_turn_pauses);
    }
    outf(&o, "# HELP stcache_wal_fsync_seconds WAL batch latency: submit to durable (group "
             "commit, fdatasync).\n# TYPE stcache_wal_fsync_seconds histogram\n");
    hist_body(&o, "stcache_wal_fsync_seconds", "", &m->fsync);
    outf(&o, "# HELP stcache_loop_iteration_seconds Busy time of one event-loop iteration "
             "(callbacks and readies, sleep in the poll excluded).\n"
             "# TYPE stcache_loop_iteration_seconds histogram\n");
    hist_body(&o, "stcache_loop_iteration_seconds", "", &m->loop_busy);
    /* outf() formats at most 512 bytes: one metric per call. */
    outf(&o,
         "# HELP stcache_loop_iteration_max_seconds Longest loop iteration since start.\n"
         "# TYPE stcache_loop_iteration_max_seconds gauge\n"
         "stcache_loop_iteration_max_seconds %.6f\n",
         (double)m->loop_busy_max_us / 1e6);
    outf(&o,
         "# HELP stcache_loop_iteration_max_cpu_seconds The loop thread's CPU time in the "
         "longest iteration (far below its length: the loop waited, preempted or blocked).\n"
         "# TYPE stcache_loop_iteration_max_cpu_seconds gauge\n"
         "stcache_loop_iteration_max_cpu_seconds %.6f\n",
         (double)m->loop_busy_max_cpu_us / 1e6);
    outf(&o,
         "# HELP stcache_loop_iteration_cpu_max_seconds Most CPU time of one loop iteration "
         "since start.\n"
         "# TYPE stcache_loop_iteration_cpu_max_seconds gauge\n"
         "stcache_loop_iteration_cpu_max_seconds %.6f\n",
         (double)m->loop_cpu_max_us / 1e6);
    outf(&o, "# HELP stcache_http_requests_total HTTP requests by route and status class.\n"
             "# TYPE stcache_http_requests_total counter\n");
    for (int r = 0; r < NODE_ROUTE_COUNT; r++)
        for (int c = 1; c <= 5; c++)
            if (m->route_status[r][c])
                outf(&o, "stcache_http_requests_total{route=\"%s\",code=\"%dxx\"} %" PRIu64 "\n",
                     route_names[r], c, m->route_status[r][c]);
    struct node_auth_stats as; /* node/auth.h: tokens checked, cached, refused */
    node_auth_stats_get(n, &as);
    outf(&o, "# HELP stcache_auth_tokens_total Client tokens checked: verified (the KDF ran), "
             "cached (the verified-token cache answered), refused.\n"
             "# TYPE stcache_auth_tokens_total counter\n");
    outf(&o,
         "stcache_auth_tokens_total{outcome=\"verified\"} %" PRIu64 "\n"
         "stcache_auth_tokens_total{outcome=\"cached\"} %" PRIu64 "\n"
         "stcache_auth_tokens_total{outcome=\"refused\"} %" PRIu64 "\n",
         as.verified, as.cache_hits, as.refused);
    counter(&o, "stcache_auth_cache_resets_total",
            "Times the token cache was emptied because the user table changed.", as.cache_resets);
    outf(&o, "# HELP stcache_http_request_seconds HTTP request latency by route.\n"
             "# TYPE stcache_http_request_seconds histogram\n");
    for (int r = 0; r < NODE_ROUTE_COUNT; r++) {
        if (!m->route_latency[r].n) continue;
        char labels[64];
        snprintf(labels, sizeof labels, "route=\"%s\"", route_names[r]);
        hist_body(&o, "stcache_http_request_seconds", labels, &m->route_latency[r]);
    }
}
