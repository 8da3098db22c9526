/* Fuzz target body for HTTP requests and routing: the input is sent as the
 * bytes of one client connection to a real node's HTTP API (src/http/server*.c
 * parsing, src/api/api.c routing and handlers, the node's request paths).
 * Shared by the libFuzzer driver (tests/fuzz/fuzz_http_request.c) and the
 * deterministic smoke test (tests/unit/api/test_fuzz_smoke.c).
 *
 * One single-node cluster per process, set up on the first call: bootstrapped
 * on a simulated file system (nothing touches the disk), its raft and HTTP
 * ports on loopback, driven on this thread's libuv loop. Each input is
 * written on a fresh TCP connection, followed by FIN; the loop runs until the
 * server has answered and closed, which it must do within
 * FUZZ_API_DEADLINE_MS (a hang fails), unless a response is a stream (GET
 * /watch), which lasts until the client goes away. The answer must be HTTP: when any byte
 * comes back, the first response parses (src/http/response.c) with a status.
 *
 * Inputs naming membership or leadership routes ("/cluster/", "/join") are
 * skipped: a fuzzed member address would make the node dial (and resolve)
 * arbitrary hosts, and removing itself would leave every later input without
 * a leader. Those routes' request parsing is shared with the others.
 *
 * Returns 0 when the first response is a success (status < 400), 1 when it
 * is an error, 2 when the server closed without answering (an incomplete
 * request at EOF), -1 when the input was skipped. */
#ifndef ST_FUZZ_TARGETS_API_H
#define ST_FUZZ_TARGETS_API_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "free_port.h"
#include "http/response.h"
#include "node/node.h"
#include "stcache/errors.h"
#include "stcache/storage.h"
#include "util/assert.h"

#define FUZZ_API_DEADLINE_MS 10000u
#define FUZZ_API_STREAM_MS 300u             /* after a chunked answer began: see the target */
#define FUZZ_API_REPLY_BYTES_MAX (4u << 20) /* what one input's answers may total */

struct fuzz_api {
    uv_loop_t loop;
    struct st_fs_sim *sim;
    struct node *node;
    struct api *api;
    int started; /* 1 ok, -1 failed */
    char *reply;
};

static inline void fuzz_api_started_cb(struct node *n, int status, void *ctx)
{
    struct fuzz_api *f = ctx;
    if (status != 0 ||
        api_create(&f->loop, n, node_config_get(n)->http_listen, NULL, &f->api) != 0) {
        f->started = -1;
        return;
    }
    f->started = 1;
}

static inline struct fuzz_api *fuzz_api_get(void)
{
    static struct fuzz_api f;
    if (f.started == 1) return &f;
    ST_ASSERT(f.started == 0); /* a failed set-up is not retried */
    ST_ASSERT(uv_loop_init(&f.loop) == 0);
    ST_ASSERT(st_fs_sim_create(&f.sim) == 0);
    const struct st_fs *fs = st_fs_sim_fs(f.sim);
    ST_ASSERT(fs->ops->mkdir(fs->self, "/sim") == 0);
    struct node_config cfg;
    node_config_default(&cfg);
    cfg.id = 1;
    cfg.fs = fs;
    cfg.mode = NODE_START_BOOTSTRAP;
    cfg.seed_api = true; /* GET /set and /join are routes to reach too */
    snprintf(cfg.data_dir, sizeof(cfg.data_dir), "/sim/data");
    uint16_t raft_port = st_test_free_port(), http_port = st_test_free_port();
    ST_ASSERT(raft_port != 0 && http_port != 0);
    snprintf(cfg.raft_listen, sizeof(cfg.raft_listen), "127.0.0.1:%u", raft_port);
    snprintf(cfg.http_listen, sizeof(cfg.http_listen), "127.0.0.1:%u", http_port);
    /* The simulated disk is memory (each leak check reads it whole): keep
     * both the log and the segments small. */
    cfg.snapshot_threshold = 1000;
    /* Every input's keys stay: unbounded, the kv (and each snapshot of it)
     * grew by ~4 KB per input, 1 GB in 220,000 inputs. A bound with
     * eviction keeps the process small and puts eviction on the paths. */
    cfg.max_memory = 32u << 20;
    cfg.eviction_policy = NODE_EVICT_ALLKEYS_LRU;
    cfg.wal_segment_bytes = 2u << 20; /* holds a 1 MiB value (config.c's bound) */
    cfg.request_timeout_ms = 2000;
    ST_ASSERT(node_create(&f.loop, &cfg, &f.node) == 0);
    ST_ASSERT(node_start(f.node, fuzz_api_started_cb, &f) == 0);
    for (;;) {
        uv_run(&f.loop, UV_RUN_ONCE);
        ST_ASSERT(f.started >= 0);
        if (f.started == 1) {
            struct node_info info;
            node_info_get(f.node, &info);
            if (info.role == RAFT_LEADER && info.applied >= info.commit) break;
        }
    }
    /* Not on the heap: libFuzzer runs a LeakSanitizer check after an input
     * that allocated more than it freed (a PUT keeps its key), and each
     * check reads every reachable heap block word by word; this buffer,
     * like the simulated disk's files, was most of those words. */
    f.reply = mmap(NULL, FUZZ_API_REPLY_BYTES_MAX + 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ST_ASSERT(f.reply != MAP_FAILED);
    return &f;
}

static inline int fuzz_api_skipped(const uint8_t *data, size_t size)
{
    static const char *const routes[] = {"/cluster/", "/join"};
    for (size_t r = 0; r < sizeof(routes) / sizeof(routes[0]); r++) {
        size_t n = strlen(routes[r]);
        for (size_t i = 0; i + n <= size; i++)
            if (memcmp(data + i, routes[r], n) == 0) return 1;
    }
    return 0;
}

static inline uint64_t fuzz_api_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline int fuzz_http_request_target(const uint8_t *data, size_t size)
{
    if (fuzz_api_skipped(data, size)) return -1;
    struct fuzz_api *f = fuzz_api_get();
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(api_port(f->api));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ST_ASSERT(fd >= 0);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    ST_ASSERT(rc == 0 || errno == EINPROGRESS);
    size_t sent = 0, got = 0;
    int shut = 0, eof = 0, streaming = 0, stream_capped = 0;
    static const char stream_te[] = "Transfer-Encoding: chunked";
    uint64_t deadline = fuzz_api_now_ms() + FUZZ_API_DEADLINE_MS;
    while (!eof) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        if (sent < size) {
            ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)
                sent = size; /* the server closed early (an error answer): stop sending */
        }
        if (sent == size && !shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        for (;;) {
            char scratch[16384];
            char *dst = got < FUZZ_API_REPLY_BYTES_MAX ? f->reply + got : scratch;
            size_t room =
                got < FUZZ_API_REPLY_BYTES_MAX ? FUZZ_API_REPLY_BYTES_MAX - got : sizeof(scratch);
            ssize_t n = recv(fd, dst, room, 0);
            if (n > 0) {
                if (dst != scratch) got += (size_t)n;
                continue;
            }
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) eof = 1; /* FIN or RST */
            break;
        }
        if (eof) break;
        /* Everything sent and a chunked answer begun: perhaps a stream,
         * which would hold this input until the deadline (10 s, where a
         * corpus of watches made the driver run at ~160 inputs/s). Give it
         * FUZZ_API_STREAM_MS more: a finite chunked answer ends and the
         * server closes well before; one still open is taken for a stream. */
        if (shut && !stream_capped && got >= sizeof stream_te - 1 &&
            memmem(f->reply, got < FUZZ_API_REPLY_BYTES_MAX ? got : FUZZ_API_REPLY_BYTES_MAX,
                   stream_te, sizeof stream_te - 1) != NULL) {
            uint64_t cap = fuzz_api_now_ms() + FUZZ_API_STREAM_MS;
            if (cap < deadline) deadline = cap;
            stream_capped = 1;
        }
        if (fuzz_api_now_ms() >= deadline) {
            /* A stream (GET /watch) ends when its client goes away, not when
             * the client stops sending: with one open, the server still
             * answering is right. Anything else must be answered and closed
             * by now. */
            size_t have = got < FUZZ_API_REPLY_BYTES_MAX ? got : FUZZ_API_REPLY_BYTES_MAX;
            ST_ASSERT(memmem(f->reply, have, stream_te, sizeof stream_te - 1) != NULL);
            streaming = 1;
            break;
        }
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN | (sent < size ? POLLOUT : 0)},
                              {.fd = uv_backend_fd(&f->loop), .events = POLLIN}};
        int timeout = uv_backend_timeout(&f->loop);
        (void)poll(p, 2, timeout < 0 || timeout > 50 ? 50 : timeout);
    }
    close(fd);
    /* The server closed its side before the FIN came back; its close
     * callbacks (which free the connection) run in the next loop turn: run
     * it now, so that an input's memory is freed by the end of the input
     * (libFuzzer takes an input that allocates more than it frees for a
     * leak, and runs a full leak check on it). */
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (got == 0) return 2;
    /* HEAD answers have a Content-Length and no body: parsing them needs the
     * request, so only the status line is checked; so too when a stream was
     * still open (the first response may be it, unfinished). */
    ST_ASSERT(got >= 12 && memcmp(f->reply, "HTTP/1.1 ", 9) == 0);
    int status = (int)strtol(f->reply + 9, NULL, 10);
    ST_ASSERT(status >= 100 && status <= 599);
    if (!streaming && (size < 4 || memcmp(data, "HEAD", 4) != 0)) {
        struct http_response r;
        int prc = http_response_parse(f->reply, got, true, FUZZ_API_REPLY_BYTES_MAX, &r);
        ST_ASSERT(prc == 0 && r.complete && r.status == status);
    }
    return status < 400 ? 0 : 1;
}

#endif
