/* The cost of TLS per request and response through tls/ (memory BIOs), as
 * the HTTP server pays it: a client st_tls_conn writes a request of
 * REQ_BYTES, the server feeds the ciphertext, reads the plaintext until
 * nothing is left (as http/server_tls.c pumps), writes a response of
 * RESP_BYTES and hands the ciphertext back. No sockets: the figure is
 * OpenSSL's and tls/'s CPU alone. Prints ns of CPU per exchange (both
 * sides: the client's share is the same work mirrored).
 *
 *   tls_bench CA_CRT NODE_CRT NODE_KEY [EXCHANGES [CONNS]]
 *
 * CONNS pairs of connections (default 1) take turns, one exchange each, as
 * a server's connections do: with 128 the per-connection state no longer
 * stays in the CPU's caches, and ns (not instructions) tell its cost.
 *
 * (certificates from scripts/gen-certs.sh DIR ca; ... DIR node 1). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "stcache/errors.h"
#include "tls/tls.h"

#define REQ_BYTES 180
#define RESP_BYTES 120
#define BUF_BYTES 65536

static unsigned char g_wire[BUF_BYTES];
static unsigned char g_plain[BUF_BYTES];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Moves a's output into b. */
static void pass(struct st_tls_conn *a, struct st_tls_conn *b)
{
    size_t n;
    while ((n = st_tls_conn_take_output(a, g_wire, sizeof g_wire)) > 0) {
        if (st_tls_conn_feed(b, g_wire, n) != 0) {
            fprintf(stderr, "feed failed\n");
            exit(1);
        }
    }
}

/* Reads what b has, as the server's pump does: until it answers 0. */
static size_t drain(struct st_tls_conn *b)
{
    size_t got = 0;
    for (;;) {
        long n = st_tls_conn_read(b, g_plain, sizeof g_plain);
        if (n < 0) {
            fprintf(stderr, "read failed: %s\n", st_tls_conn_reason(b));
            exit(1);
        }
        if (n == 0) return got;
        got += (size_t)n;
    }
}

#define CONNS_MAX 1024
static struct st_tls_conn *g_s[CONNS_MAX], *g_c[CONNS_MAX];

/* A server and a client connection of the two contexts, handshake done. */
static int connect_pair(struct st_tls_ctx *sctx, struct st_tls_ctx *cctx, struct st_tls_conn **sp,
                        struct st_tls_conn **cp)
{
    struct st_tls_conn *s, *c;
    if (st_tls_conn_create(sctx, NULL, &s) != 0) return -1;
    if (st_tls_conn_create(cctx, "127.0.0.1", &c) != 0) return -1;
    *sp = s;
    *cp = c;
    for (int i = 0; i < 20 && !(st_tls_conn_established(c) && st_tls_conn_established(s)); i++) {
        int rc = st_tls_conn_handshake(c);
        if (rc != 0 && rc != ST_EBUSY) {
            fprintf(stderr, "client handshake: %s\n", st_tls_conn_reason(c));
            return -1;
        }
        pass(c, s);
        (void)st_tls_conn_handshake(s);
        pass(s, c);
    }
    if (!st_tls_conn_established(c) || !st_tls_conn_established(s)) {
        fprintf(stderr, "no handshake: %s / %s\n", st_tls_conn_reason(c), st_tls_conn_reason(s));
        return -1;
    }
    drain(c); /* session tickets */
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CA_CRT NODE_CRT NODE_KEY [EXCHANGES [CONNS]]\n", argv[0]);
        return 2;
    }
    long rounds = argc > 4 ? strtol(argv[4], NULL, 10) : 200000;
    if (rounds <= 0) rounds = 200000;
    char reason[ST_TLS_REASON_MAX];
    struct st_tls_files sf = {argv[2], argv[3], argv[1]}, cf = {NULL, NULL, argv[1]};
    struct st_tls_ctx *sctx, *cctx;
    if (st_tls_ctx_create(ST_TLS_SERVER, ST_TLS_VERIFY_NONE, &sf, &sctx, reason) != 0 ||
        st_tls_ctx_create(ST_TLS_CLIENT, ST_TLS_VERIFY_REQUIRE, &cf, &cctx, reason) != 0) {
        fprintf(stderr, "contexts: %s\n", reason);
        return 1;
    }
    long conns = argc > 5 ? strtol(argv[5], NULL, 10) : 1;
    if (conns <= 0 || conns > CONNS_MAX) conns = 1;
    for (long k = 0; k < conns; k++)
        if (connect_pair(sctx, cctx, &g_s[k], &g_c[k]) != 0) return 1;
    static const char req[REQ_BYTES] = "PUT /kv/k0000001 HTTP/1.1\r\n";
    static const char resp[RESP_BYTES] = "HTTP/1.1 200 OK\r\n";
    uint64_t t0 = now_ns();
    double c0 = cpu_ns();
    for (long r = 0; r < rounds; r++) {
        struct st_tls_conn *c = g_c[r % conns], *s = g_s[r % conns];
        if (st_tls_conn_write(c, req, sizeof req) != 0) return 1;
        size_t n = st_tls_conn_take_output(c, g_wire, sizeof g_wire);
        if (st_tls_conn_feed(s, g_wire, n) != 0) return 1;
        if (drain(s) != sizeof req) {
            fprintf(stderr, "short request\n");
            return 1;
        }
        if (st_tls_conn_write(s, resp, sizeof resp) != 0) return 1;
        n = st_tls_conn_take_output(s, g_wire, st_tls_conn_output_len(s));
        if (st_tls_conn_feed(c, g_wire, n) != 0) return 1;
        if (drain(c) != sizeof resp) {
            fprintf(stderr, "short response\n");
            return 1;
        }
    }
    double cpu = cpu_ns() - c0;
    uint64_t wall = now_ns() - t0;
    printf(
        "tls exchanges %ld over %ld connections: %.0f ns of CPU each (both sides); wall %.2f s\n",
        rounds, conns, cpu / (double)rounds, (double)wall / 1e9);
    for (long k = 0; k < conns; k++) {
        st_tls_conn_destroy(g_c[k]);
        st_tls_conn_destroy(g_s[k]);
    }
    st_tls_ctx_destroy(cctx);
    st_tls_ctx_destroy(sctx);
    return 0;
}
