/* `stcache server`: flags, config file, signals, and the loop that runs one
 * node and its HTTP API. */
#include "cli/server.h"

#include "cli/notify.h"

#include "api/api.h"
#include "node/node.h"
#include "resp/server.h"
#include "stcache/errors.h"
#include "util/fdlimit.h"
#include "util/outbudget.h"
#include "util/trace.h"

#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

static const char server_usage[] =
    "usage: stcache server [options]\n"
    "  --id N                  node id (default 1)\n"
    "  --data DIR              data directory (default ./data)\n"
    "  --raft HOST:PORT        peer (Raft) listen address (default 127.0.0.1:7001)\n"
    "  --http HOST:PORT        HTTP API listen address (default 127.0.0.1:8001)\n"
    "  --redis HOST:PORT       also serve the Redis protocol (RESP2/RESP3) there\n"
    "                          (default: none; docs/REDIS.md)\n"
    "  --notify-keyspace-events FLAGS  Redis keyspace notifications on --redis, as\n"
    "                          Redis's letters (e.g. KEA; default empty: off)\n"
    "  --bootstrap             start a new single-node cluster in an empty DIR\n"
    "  --join HTTP_ADDR        join the cluster of the member at HTTP_ADDR (as a learner)\n"
    "  --peers LIST            static membership: 1=h:p,2=h:p,... or 1=h:p/httph:p,...\n"
    "  --force-new-cluster     recover from a lost quorum: restart from DIR with the\n"
    "                          membership rewritten to this node alone (durably, in\n"
    "                          its log); add new members afterwards. Once only:\n"
    "                          docs/OPERATIONS.md, \"A majority lost\"\n"
    "  --advertise-raft A      Raft address given to peers (default --raft)\n"
    "  --advertise-http A      HTTP address given to peers (default --http)\n"
    "  --tick-ms N             tick length (default 10)\n"
    "  --election-ticks N      election timeout in ticks (default 10)\n"
    "  --heartbeat-ticks N     heartbeat interval in ticks (default 1)\n"
    "  --raft-inflight N       appends in flight per follower (default 1; raise it\n"
    "                          on links whose round trip exceeds a disk sync)\n"
    "  --snapshot-threshold N  snapshot about every N applied entries, staggered per node\n"
    "                          id (default 65536; 0 = never)\n"
    "  --snapshot-interval S   check the threshold every S seconds (default 0 = always)\n"
    "  --snapshot-log-bytes N  also snapshot once the log applied since the last one\n"
    "                          holds N payload bytes, whatever the interval; N/4\n"
    "                          bounds the log kept behind a snapshot (default\n"
    "                          67108864; 0 = by entry count only)\n"
    "  --max-memory BYTES      limit on used memory (key + value + 64 bytes per key,\n"
    "                          the same on every replica); 0 = none (default)\n"
    "  --eviction-policy P     at the limit: noeviction (refuse writes: 507),\n"
    "                          allkeys-lru, volatile-lru, allkeys-random or\n"
    "                          volatile-ttl (default noeviction)\n"
    "  --max-key-bytes N       (default 1024)\n"
    "  --max-value-bytes N     (default 1048576)\n"
    "  --max-txn-ops N         guards + operations of one transaction (POST /txn,\n"
    "                          MULTI/EXEC, MSET...; default 1024, at most 65535)\n"
    "  --max-txn-bytes N       encoded bytes of one transaction (default and\n"
    "                          maximum: --max-value-bytes + --max-key-bytes)\n"
    "  --max-sessions N        sessions at most (POST /session; default 4096,\n"
    "                          at most 65536)\n"
    "  --request-timeout-ms N  (default 5000)\n"
    "  --purge-interval-ms N   the leader purges expired keys this often (default 100)\n"
    "  --seed N                election timing seed (tests; default random)\n"
    "  --idempotency-keys-max N  Idempotency-Key records kept (default 100000)\n"
    "  --idempotency-ttl-s S   how long one is kept, by the log clock (default 3600)\n"
    "  --wal-inline-max-us N   sync a lone client's write (and a follower's append)\n"
    "                          on the loop thread while batches take N us or less\n"
    "                          on average (default 2000; 0 = writer threads only)\n"
    "  --snapshot-recv-bytes-max N  refuse a leader's snapshot announced larger than N\n"
    "                          bytes (default 68719476736) or than the free disk space\n"
    "  --wal-segment-bytes N   size of each preallocated WAL segment (default 64 MiB;\n"
    "                          a multiple of 4096 holding the largest entry)\n"
    "  --client-output-bytes-max N\n"
    "                          response bytes queued for all clients that read\n"
    "                          slowly; past it the slowest are disconnected\n"
    "                          (default 67108864 = 64 MiB, min 1 MiB)\n"
    "  --conn-output-bytes-max N\n"
    "                          queued response bytes at which one connection is\n"
    "                          no longer read until it drains (default 1048576)\n"
    "  --max-conns-per-ip N    open HTTP connections per client address; more are\n"
    "                          refused at once (default 256; 0 = no bound)\n"
    "  --watch-history-bytes N key and value bytes of recent changes kept for\n"
    "                          watches (default 16777216 = 16 MiB)\n"
    "  --watch-history-entries N  recent changes kept for watches (default 100000)\n"
    "  --watch-max N           open watches (GET /watch) at most (default 1024)\n"
    "  --seed-api              serve the state-changing GET /set and GET /join\n"
    "                          (default off: any web page could trigger them)\n"
    "  --allowed-hosts LIST    Host header values the HTTP API answers, HOST or\n"
    "                          HOST:PORT, comma-separated, or * (default: with a\n"
    "                          loopback --http, localhost, 127.0.0.1 and [::1];\n"
    "                          else any); requests with another Host or Origin: 403\n"
    "  --peer-cert-file FILE   this node's certificate for mutual TLS with its peers\n"
    "                          (CN stcache-node-<id>: scripts/gen-certs.sh)\n"
    "  --peer-key-file FILE    its private key (readable by its owner only)\n"
    "  --peer-trusted-ca-file FILE  the CA that signed every peer's certificate;\n"
    "                          all three peer flags or none. SIGHUP re-reads them\n"
    "  --cert-file FILE        serve HTTPS (and TLS on --redis) with this certificate\n"
    "  --key-file FILE         its private key (readable by its owner only)\n"
    "  --trusted-ca-file FILE  the CA of client certificates, and of the other members'\n"
    "                          client ports this node calls (forwarding, join)\n"
    "  --client-cert-auth      require a client certificate signed by --trusted-ca-file;\n"
    "                          its Common Name is the user. SIGHUP re-reads these too\n"
    "  --auth                  require a bearer token on every client request\n"
    "                          (HTTP and Redis; roles and prefixes: docs/SECURITY.md)\n"
    "  --initial-admin-token-file FILE  the first admin's token, USER.SECRET, proposed\n"
    "                          once while the user table is empty (never on the\n"
    "                          command line)\n"
    "  --join-token-file FILE  an admin's token, sent by --join to a cluster with --auth\n"
    "  --insecure              allow a non-loopback --http, --redis or --raft without\n"
    "                          --auth and peer TLS (refused otherwise)\n"
    "  --log-level L           debug|info|warn|error (default info)\n"
    "  --config FILE           'key = value' lines with the same names\n"
    "  -h, --help              print this text and exit\n"
    "With no flag at all and an empty ./data, bootstraps node 1 on 127.0.0.1:7001/8001.\n"
    "With an existing data directory the node restarts from it (mode flags are ignored).\n";

int cli_server_parse(int argc, char **argv, struct node_config *cfg, char *err, size_t errlen)
{
    node_config_default(cfg);
    /* --config first, so that flags override the file. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *file = NULL;
        /* argv[i] for i < argc is never NULL (C17 5.1.2.2.1) */
        if (strcmp(a, "--config") == 0) { // NOLINT(clang-analyzer-core.NonNullParamChecker)
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--config needs a file name");
                return 2;
            }
            file = argv[i + 1];
        } else if (strncmp(a, "--config=", 9) == 0) {
            file = a + 9;
        }
        if (file && node_config_load_file(cfg, file, err, errlen) != 0) return 2;
    }
    bool any = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(server_usage, stdout);
            return 1;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            snprintf(err, errlen, "unexpected argument '%s' (see stcache server --help)", a);
            return 2;
        }
        char name[64];
        const char *value = NULL;
        const char *eq = strchr(a + 2, '=');
        size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nl >= sizeof name) {
            snprintf(err, errlen, "unknown option %s", a);
            return 2;
        }
        memcpy(name, a + 2, nl);
        name[nl] = '\0';
        bool is_flag = strcmp(name, "bootstrap") == 0 || strcmp(name, "seed-api") == 0 ||
                       strcmp(name, "force-new-cluster") == 0 ||
                       strcmp(name, "client-cert-auth") == 0 || strcmp(name, "auth") == 0 ||
                       strcmp(name, "insecure") == 0;
        if (eq) {
            value = eq + 1;
        } else if (!is_flag) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "--%s needs a value", name);
                return 2;
            }
            value = argv[++i];
        }
        any = true;
        if (strcmp(name, "config") == 0) continue; /* done above */
        if (node_config_set(cfg, name, value, err, errlen) != 0) return 2;
    }
    if (!any) cfg->bootstrap_if_empty = true;
    if (node_config_validate(cfg, err, errlen) != 0) return 2;
    if (cli_server_insecure_reason(cfg, err, errlen)) return 2;
    return 0;
}

static bool addr_is_loopback(const char *addr)
{
    char host[NODE_ADDR_MAX];
    uint16_t port;
    if (node_addr_split(addr, host, sizeof host, &port) != 0) return false;
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0;
}

bool cli_server_insecure_reason(const struct node_config *cfg, char *why, size_t cap)
{
    if (cfg->insecure) return false;
    const char *what = NULL, *addr = NULL;
    if (!addr_is_loopback(cfg->http_listen)) {
        what = "HTTP";
        addr = cfg->http_listen;
    } else if (cfg->redis_listen[0] && !addr_is_loopback(cfg->redis_listen)) {
        what = "Redis";
        addr = cfg->redis_listen;
    }
    /* A client port off loopback needs both: authentication (tokens, or
     * client certificates) and TLS (a token sent in clear is anyone's). */
    if (what && !cfg->auth && !cfg->client_cert_auth) {
        snprintf(why, cap,
                 "refusing to serve %s on %s to unauthenticated clients: pass --auth (with "
                 "--initial-admin-token-file) or --client-cert-auth, or --insecure",
                 what, addr);
        return true;
    }
    if (what && !cfg->cert_file[0]) {
        snprintf(why, cap,
                 "refusing to serve %s on %s without TLS: pass --cert-file and --key-file, "
                 "or --insecure",
                 what, addr);
        return true;
    }
    if (!addr_is_loopback(cfg->raft_listen) && !cfg->peer_cert_file[0]) {
        snprintf(why, cap,
                 "refusing to listen for peers on %s without TLS: pass --peer-cert-file, "
                 "--peer-key-file and --peer-trusted-ca-file, or --insecure",
                 cfg->raft_listen);
        return true;
    }
    return false;
}

/* ----------------------------------------------------------- running */

struct server {
    uv_loop_t *loop;
    struct node *node;
    struct api *api;
    struct resp_server *resp; /* --redis, NULL without it */
    /* Shared by every client front end (HTTP, Redis). */
    struct st_outbudget out_budget;
    uv_signal_t sigint, sigterm, sighup;
    /* systemd readiness (cli/notify.h): polled while NOTIFY_SOCKET is set. */
    uv_timer_t notify_timer;
    bool notify_ready; /* READY=1 sent */
    char notify_status[128];
    int exit_code;
    bool stopping;
};

#define SERVER_NOTIFY_POLL_MS 100

static void signal_closed_cb(uv_handle_t *h)
{
    (void)h;
}

static void resp_closed_cb(struct resp_server *r, void *ctx)
{
    struct server *s = ctx;
    (void)r;
    resp_server_destroy(s->resp);
    s->resp = NULL;
    uv_close((uv_handle_t *)&s->sigint, signal_closed_cb);
    uv_close((uv_handle_t *)&s->sigterm, signal_closed_cb);
    uv_close((uv_handle_t *)&s->sighup, signal_closed_cb);
    uv_close((uv_handle_t *)&s->notify_timer, signal_closed_cb);
}

static void api_closed_cb(struct api *a, void *ctx)
{
    struct server *s = ctx;
    (void)a;
    api_destroy(s->api);
    s->api = NULL;
    if (s->resp)
        resp_server_close(s->resp, resp_closed_cb, s);
    else
        resp_closed_cb(NULL, s);
}

static void server_node_stopped_cb(struct node *n, void *ctx)
{
    struct server *s = ctx;
    (void)n;
    if (s->api)
        api_close(s->api, api_closed_cb, s);
    else
        api_closed_cb(NULL, s);
}

static void server_shutdown(struct server *s, int exit_code)
{
    if (s->stopping) return;
    s->stopping = true;
    s->exit_code = exit_code;
    uv_timer_stop(&s->notify_timer);
    cli_notify("STOPPING=1\nSTATUS=stopping");
    /* The node first: it fails its pending requests, whose HTTP responses
     * then leave before the server closes. */
    node_stop(s->node, server_node_stopped_cb, s);
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct server *s = h->data;
    ST_TRACE_INFO("server", "signal %d: stopping", signum);
    server_shutdown(s, 0);
}

/* SIGHUP: certificate rotation. A bad new file is refused and the old
 * certificates stay in use; nothing is dropped either way. */
static void sighup_cb(uv_signal_t *h, int signum)
{
    struct server *s = h->data;
    (void)signum;
    if (s->stopping) return;
    char reason[256] = "";
    int rc = node_tls_reload(s->node, reason, sizeof reason);
    if (rc == 0)
        ST_TRACE_INFO("server", "SIGHUP: certificates reloaded");
    else
        ST_TRACE_ERROR("server", "SIGHUP: certificates NOT reloaded, the old ones stay in use: %s",
                       reason);
}

static void fatal_cb(struct node *n, int code, void *ctx)
{
    (void)n;
    (void)code;
    server_shutdown(ctx, 1);
}

/* READY=1 once the node serves: HTTP (and Redis) listening, a leader known,
 * caught up (node_unready_reason) and its applied index at the commit index
 * it recovered, so a restarted node is not announced before it serves what
 * it had acknowledged. STATUS= whenever the description changes. */
static void notify_timer_cb(uv_timer_t *t)
{
    struct server *s = t->data;
    if (s->stopping) return;
    struct node_info *info = malloc(sizeof *info);
    if (!info) return;
    node_info_get(s->node, info);
    const char *why = node_unready_reason(s->node);
    raft_index want = node_recovered_commit(s->node);
    bool serving = !why && info->applied >= want;
    char status[sizeof s->notify_status];
    if (serving && info->role == RAFT_LEADER)
        snprintf(status, sizeof status, "serving: leader of %u member(s), term %" PRIu64,
                 info->n_members, info->term);
    else if (serving)
        snprintf(status, sizeof status, "serving: leader is node %" PRIu64 ", term %" PRIu64,
                 info->leader, info->term);
    else if (!why)
        snprintf(status, sizeof status, "replaying: applied %" PRIu64 " of %" PRIu64, info->applied,
                 want);
    else
        snprintf(status, sizeof status, "waiting: %s", why);
    free(info);
    bool changed = strcmp(status, s->notify_status) != 0;
    if (serving && !s->notify_ready) {
        s->notify_ready = true;
        cli_notify("READY=1\nSTATUS=%s", status);
    } else if (changed) {
        cli_notify("STATUS=%s", status);
    }
    if (changed) snprintf(s->notify_status, sizeof s->notify_status, "%s", status);
}

static void started_cb(struct node *n, int status, void *ctx)
{
    struct server *s = ctx;
    const struct node_config *cfg = node_config_get(n);
    if (status != 0) {
        fprintf(stderr, "stcache server: node %" PRIu64 " could not start: %s\n", cfg->id,
                st_strerror(status));
        server_shutdown(s, 1);
        return;
    }
    st_outbudget_init(&s->out_budget, cfg->client_output_bytes_max);
    int rc = api_create(s->loop, n, cfg->http_listen, &s->out_budget, &s->api);
    if (rc) {
        fprintf(stderr, "stcache server: cannot serve HTTP on %s: %s\n", cfg->http_listen,
                st_strerror(rc));
        server_shutdown(s, 1);
        return;
    }
    if (cfg->redis_listen[0]) {
        struct resp_server_config rc_cfg;
        resp_server_config_default(&rc_cfg);
        rc_cfg.listen = cfg->redis_listen;
        rc_cfg.conn_out_bytes_max = cfg->conn_output_bytes_max;
        rc_cfg.out_budget = &s->out_budget;
        rc_cfg.tls = node_client_tls_server(n); /* NULL: plaintext */
        rc_cfg.notify_keyspace_events = cfg->notify_keyspace_events;
        rc = resp_server_create(s->loop, n, &rc_cfg, &s->resp);
        if (rc) {
            fprintf(stderr, "stcache server: cannot serve Redis on %s: %s\n", cfg->redis_listen,
                    st_strerror(rc));
            server_shutdown(s, 1);
            return;
        }
        printf("stcache: node %" PRIu64 " serving Redis on %s\n", cfg->id, cfg->redis_listen);
    }
    printf("stcache: node %" PRIu64 " of cluster %016" PRIx64 " serving HTTP on %s, raft on %s, "
           "data in %s\n",
           cfg->id, node_cluster_id(n), cfg->http_listen, cfg->raft_listen, cfg->data_dir);
    fflush(stdout);
    if (cli_notify_enabled())
        uv_timer_start(&s->notify_timer, notify_timer_cb, 0, SERVER_NOTIFY_POLL_MS);
}

/* Process-wide heap settings, made by the program and not by the library.
 * glibc's defaults adapt the mmap threshold and give the top of the heap back
 * to the kernel as soon as 128 KiB of it is free, so the loop's per-message
 * buffers (up to msg_bytes_max, 1 MiB by default) were mapped, zero-filled
 * by page faults and unmapped again for every batch a follower received: a
 * follower catching up after a 1 GiB snapshot spent 10 ms of CPU in one loop
 * iteration doing that (bench/reliability/snapshot_stall.py). Fixed bounds
 * keep such buffers in the heap; the node still gives memory back on purpose
 * after a snapshot (node/memory.c, malloc_trim). */
#define SERVER_MALLOC_TRIM_BYTES (32 << 20) /* free heap top kept before trimming */
#define SERVER_MALLOC_MMAP_BYTES (8 << 20)  /* blocks from mmap at or above this */
static void server_malloc_tune(void)
{
#ifdef __GLIBC__
    if (!mallopt(M_TRIM_THRESHOLD, SERVER_MALLOC_TRIM_BYTES) ||
        !mallopt(M_MMAP_THRESHOLD, SERVER_MALLOC_MMAP_BYTES))
        ST_TRACE_WARN("server", "mallopt refused the heap thresholds: glibc defaults kept");
#endif
}

int cli_server_main(int argc, char **argv)
{
    struct node_config cfg;
    char err[256] = "";
    int prc = cli_server_parse(argc, argv, &cfg, err, sizeof err);
    if (prc == 1) return 0;
    if (prc != 0) {
        fprintf(stderr, "stcache server: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    server_malloc_tune();
    /* Idle clients must not starve the store of descriptors: the soft limit
     * (often 1024) goes up to the hard one. */
    uint64_t nofile_before = 0, nofile = 0;
    int lrc = st_nofile_raise(&nofile_before, &nofile);
    if (lrc)
        ST_TRACE_WARN("server", "open files limit %" PRIu64 ": cannot raise it: %s", nofile_before,
                      st_strerror(lrc));
    else
        ST_TRACE_INFO("server", "open files limit %" PRIu64 " (soft limit was %" PRIu64 ")", nofile,
                      nofile_before);
    struct server s;
    memset(&s, 0, sizeof s);
    s.loop = uv_default_loop();
    int rc = node_create(s.loop, &cfg, &s.node);
    if (rc) {
        fprintf(stderr, "stcache server: %s\n", st_strerror(rc));
        return 2;
    }
    node_on_fatal(s.node, fatal_cb, &s);
    uv_signal_init(s.loop, &s.sigint);
    uv_signal_init(s.loop, &s.sigterm);
    s.sigint.data = &s;
    s.sigterm.data = &s;
    uv_signal_start(&s.sigint, signal_cb, SIGINT);
    uv_signal_start(&s.sigterm, signal_cb, SIGTERM);
    uv_signal_init(s.loop, &s.sighup);
    s.sighup.data = &s;
    uv_signal_start(&s.sighup, sighup_cb, SIGHUP);
    uv_timer_init(s.loop, &s.notify_timer);
    s.notify_timer.data = &s;
    cli_notify("STATUS=starting: recovering %s", cfg.data_dir);
    rc = node_start(s.node, started_cb, &s);
    if (rc) {
        fprintf(stderr, "stcache server: node %" PRIu64 " could not start: %s\n", cfg.id,
                rc == ST_EBUSY ? "the data directory is in use by another process"
                               : st_strerror(rc));
        server_shutdown(&s, 1);
    }
    uv_run(s.loop, UV_RUN_DEFAULT);
    node_destroy(s.node);
    uv_loop_close(s.loop);
    return s.exit_code;
}
