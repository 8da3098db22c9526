/* In-process node harness: real nodes (storage in temp dirs, TCP transport
 * and HTTP API on loopback ports) on ONE libuv loop, an in-loop HTTP client,
 * and run_until() with a watchdog. Event-driven: no sleeps, no timing
 * assertions; the watchdog only bounds a hung test. */
#ifndef ST_TEST_NODE_HARNESS_H
#define ST_TEST_NODE_HARNESS_H

#include "free_port.h"
#include "test.h"

#include "api/api.h"
#include "http/client.h"
#include "node/node.h"
#include "stcache/errors.h"
#include "util/trace.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define H_NODES_MAX 5
#define H_WATCHDOG_MS 30000

struct hnode {
    struct node *node;
    struct api *api;
    struct node_config cfg;
    char dir[128];
    bool running;
    bool stopped;
    int start_status;
    bool started;
};

static uv_loop_t *h_loop;
static uv_timer_t h_watchdog;
static bool h_expired;

/* A free loopback port for a node to bind later (tests/free_port.h). */
static inline uint16_t h_free_port(void)
{
    return st_test_free_port();
}

static inline void h_watchdog_cb(uv_timer_t *t)
{
    (void)t;
    h_expired = true;
}

static inline void h_init(void)
{
    static uv_loop_t loop;
    if (!getenv("STCACHE_TEST_TRACE"))
        st_trace_set_level(ST_TRACE_WARN);
    else
        st_trace_set_level(ST_TRACE_DEBUG);
    uv_loop_init(&loop);
    h_loop = &loop;
    uv_timer_init(h_loop, &h_watchdog);
}

/* Runs the loop until cond(arg) holds; false if the watchdog fired first. */
static inline bool h_run_until(bool (*cond)(void *arg), void *arg)
{
    h_expired = false;
    uv_timer_start(&h_watchdog, h_watchdog_cb, H_WATCHDOG_MS, 0);
    while (!cond(arg) && !h_expired)
        uv_run(h_loop, UV_RUN_ONCE);
    uv_timer_stop(&h_watchdog);
    return cond(arg);
}

static inline void h_walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

static inline void h_fini(void)
{
    uv_close((uv_handle_t *)&h_watchdog, NULL);
    uv_run(h_loop, UV_RUN_DEFAULT);
    uv_walk(h_loop, h_walk_close, NULL);
    uv_run(h_loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(h_loop), 0);
}

static inline void h_mkdtemp(char *out, size_t cap)
{
    snprintf(out, cap, "/tmp/stcache-node-XXXXXX");
    ASSERT_TRUE(mkdtemp(out) != NULL);
    /* The node creates DATA itself: use a fresh subdirectory. */
    strncat(out, "/data", cap - strlen(out) - 1);
}

static inline void h_rmrf(const char *dir)
{
    char cmd[300];
    /* dir is ".../stcache-node-XXXXXX/data": remove the parent. */
    size_t len = strlen(dir);
    ASSERT_TRUE(len > 5 && strcmp(dir + len - 5, "/data") == 0);
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(len - 5), dir);
    /* The test's own mkdtemp directory: no untrusted input reaches the shell. */
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir); // NOLINT(cert-env33-c)
}

static inline void h_config(struct hnode *h, raft_id id)
{
    node_config_default(&h->cfg);
    h->cfg.id = id;
    snprintf(h->cfg.data_dir, sizeof h->cfg.data_dir, "%s", h->dir);
    snprintf(h->cfg.raft_listen, sizeof h->cfg.raft_listen, "127.0.0.1:%u", h_free_port());
    snprintf(h->cfg.http_listen, sizeof h->cfg.http_listen, "127.0.0.1:%u", h_free_port());
    /* Elections of 200-400 ms: a loaded CI machine (ASan, parallel tests)
     * must not stall a leader's loop long enough to depose it mid-test. */
    h->cfg.tick_ms = 10;
    h->cfg.election_ticks = 20;
    h->cfg.request_timeout_ms = 5000;
    h->cfg.seed = 1000 + id;
}

static inline void h_started_cb(struct node *n, int status, void *ctx)
{
    struct hnode *h = ctx;
    h->started = true;
    h->start_status = status;
    if (status == 0) {
        int rc = api_create(h_loop, n, h->cfg.http_listen, NULL, &h->api);
        ASSERT_EQ(rc, 0);
    }
}

static inline int h_start(struct hnode *h)
{
    h->started = false;
    h->stopped = false;
    int rc = node_create(h_loop, &h->cfg, &h->node);
    if (rc) return rc;
    rc = node_start(h->node, h_started_cb, h);
    h->running = true;
    return rc;
}

static inline void h_api_closed_cb(struct api *a, void *ctx)
{
    struct hnode *h = ctx;
    (void)a;
    api_destroy(h->api);
    h->api = NULL;
    h->stopped = true;
}

static inline void h_node_stopped_cb(struct node *n, void *ctx)
{
    struct hnode *h = ctx;
    (void)n;
    if (h->api)
        api_close(h->api, h_api_closed_cb, h);
    else
        h->stopped = true;
}

static inline bool h_cond_stopped(void *arg)
{
    return ((struct hnode *)arg)->stopped;
}

static inline void h_stop(struct hnode *h)
{
    if (!h->running) return;
    node_stop(h->node, h_node_stopped_cb, h);
    ASSERT_TRUE(h_run_until(h_cond_stopped, h));
    node_destroy(h->node);
    h->node = NULL;
    h->running = false;
}

/* ---- in-loop HTTP client ---- */

struct hresp {
    bool done;
    int status;
    char body[65536]; /* /metrics is several KiB */
    size_t body_len;
    char head[2048];
};

static inline void h_http_cb(void *ctx, int status, const char *body, size_t len, const char *head,
                             size_t head_len)
{
    struct hresp *r = ctx;
    r->done = true;
    r->status = status;
    r->body_len = len < sizeof r->body - 1 ? len : sizeof r->body - 1;
    memcpy(r->body, body, r->body_len);
    r->body[r->body_len] = '\0';
    size_t hl = head_len < sizeof r->head - 1 ? head_len : sizeof r->head - 1;
    memcpy(r->head, head, hl);
    r->head[hl] = '\0';
}

static inline bool h_cond_resp(void *arg)
{
    return ((struct hresp *)arg)->done;
}

/* Sends one request to h's HTTP API and waits for the answer. */
static inline void h_http(struct hnode *h, const char *method, const char *path,
                          const char *headers, const char *body, struct hresp *r)
{
    memset(r, 0, sizeof *r);
    /* POSTs need a JSON content type (the API answers 415 otherwise). */
    const char *ctype = strcmp(method, "POST") == 0 ? "application/json" : NULL;
    int rc = http_client_request(h_loop, h->cfg.http_listen, method, path, ctype, headers, body,
                                 body ? strlen(body) : 0, 20000, h_http_cb, r, NULL);
    ASSERT_EQ(rc, 0);
    ASSERT_TRUE(h_run_until(h_cond_resp, r));
}

/* ---- conditions ---- */

struct hcond {
    struct hnode *nodes;
    int n;
    raft_id leader;
    raft_id not_leader; /* wait for a leader other than this one (0: any) */
};

/* Every running node knows the same leader (a running one) and has applied
 * everything the leader has committed. */
static inline bool h_cond_converged(void *arg)
{
    struct hcond *c = arg;
    raft_id leader = RAFT_NONE;
    raft_index commit = 0;
    for (int i = 0; i < c->n; i++) {
        struct hnode *h = &c->nodes[i];
        if (!h->running) continue;
        if (!h->started || h->start_status != 0 || !node_healthy(h->node)) return false;
        struct node_info info;
        node_info_get(h->node, &info);
        if (leader == RAFT_NONE) leader = info.leader;
        if (info.leader != leader) return false;
        if (info.role == RAFT_LEADER) commit = info.commit;
    }
    if (leader == RAFT_NONE || leader == c->not_leader || commit == 0)
        return false; /* commit == 0: the leader is not among the running nodes */
    for (int i = 0; i < c->n; i++) {
        struct hnode *h = &c->nodes[i];
        if (!h->running) continue;
        struct node_info info;
        node_info_get(h->node, &info);
        if (info.applied < commit) return false;
    }
    c->leader = leader;
    return true;
}

/* No snapshot is being written or made durable on h. */
static inline bool h_cond_no_snapshot_job(void *arg)
{
    struct node_info info;
    node_info_get(((struct hnode *)arg)->node, &info);
    return !info.snapshotting;
}

static inline int h_index_of(struct hnode *nodes, int n, raft_id id)
{
    for (int i = 0; i < n; i++)
        if (nodes[i].cfg.id == id) return i;
    return -1;
}

#endif
