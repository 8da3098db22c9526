/* The CLI's blocking HTTP client and endpoint failover against scripted
 * loopback servers (one thread each): timeouts, refused connections, early
 * answers to a large upload, chunked and garbage responses, and moving on
 * past dead and leaderless endpoints.
 *
 * The CLI sources belong to the `stcache` executable (not to a library), so they are
 * compiled into this test directly (their static functions are reachable). */
#include "test.h"

#include "cli/backup.c"
#include "cli/client.c"
#include "cli/endpoints.c"
#include "cli/lock.c"
#include "cli/transport.c"
#include "cli/watch.c"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>

enum script {
    SCRIPT_SILENT,    /* read the request, never answer */
    SCRIPT_EARLY_413, /* answer 413 after the headers, then drain the body */
    SCRIPT_CHUNKED,   /* a chunked 200 in several writes */
    SCRIPT_GARBAGE,   /* not HTTP at all */
    SCRIPT_NO_LEADER, /* 503 {"code":"no_leader"} */
    SCRIPT_OK,        /* 200 "fine" */
    SCRIPT_ELECTION,  /* first connection: 503 no_leader; later ones: 200 "fine" */
};

struct server {
    int fd;
    uint16_t port;
    enum script script;
    int connections; /* how many to serve before the thread ends */
    pthread_t thread;
};

static void write_all(int fd, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t n = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += (size_t)n;
    }
}

/* Reads until the end of the request head; returns 0 or -1 on EOF/error. */
static int read_head(int fd)
{
    char buf[4096];
    size_t len = 0;
    while (len < sizeof buf) {
        ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
        if (n <= 0) return -1;
        len += (size_t)n;
        if (memmem(buf, len, "\r\n\r\n", 4) != NULL) return 0;
    }
    return 0;
}

static void drain(int fd)
{
    char buf[65536];
    while (recv(fd, buf, sizeof buf, 0) > 0) {
    }
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    for (int i = 0; i < s->connections; i++) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) break;
        if (read_head(c) == 0) {
            switch (s->script) {
            case SCRIPT_SILENT:
                drain(c); /* until the client gives up and closes */
                break;
            case SCRIPT_EARLY_413:
                write_all(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                             "Content-Length: 44\r\nConnection: close\r\n\r\n"
                             "{\"error\":\"value too large\",\"code\":\"too_big\"}");
                shutdown(c, SHUT_WR);
                drain(c);
                break;
            case SCRIPT_CHUNKED:
                write_all(c,
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nETag: \"9\"\r\n\r\n");
                write_all(c, "5\r\nfir");
                write_all(c, "st\r\n7\r\n-secon");
                write_all(c, "d\r\n0\r\n\r\n");
                break;
            case SCRIPT_GARBAGE:
                write_all(c, "SSH-2.0-OpenSSH_9.0\r\n\r\n");
                break;
            case SCRIPT_NO_LEADER:
                write_all(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 40\r\n\r\n"
                             "{\"error\":\"no leader\",\"code\":\"no_leader\"}");
                break;
            case SCRIPT_OK:
                write_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine");
                break;
            case SCRIPT_ELECTION:
                if (i == 0)
                    write_all(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 40\r\n\r\n"
                                 "{\"error\":\"no leader\",\"code\":\"no_leader\"}");
                else
                    write_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine");
                break;
            }
        }
        close(c);
    }
    return NULL;
}

static void server_start(struct server *s, enum script script, int connections)
{
    s->script = script;
    s->connections = connections;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ST_ASSERT(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ST_ASSERT(bind(s->fd, (struct sockaddr *)&a, sizeof a) == 0);
    ST_ASSERT(listen(s->fd, 8) == 0);
    socklen_t alen = sizeof a;
    ST_ASSERT(getsockname(s->fd, (struct sockaddr *)&a, &alen) == 0);
    s->port = ntohs(a.sin_port);
    ST_ASSERT(pthread_create(&s->thread, NULL, server_main, s) == 0);
}

static void server_join(struct server *s)
{
    pthread_join(s->thread, NULL);
    close(s->fd);
}

/* A loopback port with nothing listening (bound, then closed). */
static uint16_t dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ST_ASSERT(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    socklen_t alen = sizeof a;
    ST_ASSERT(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

static struct cli_endpoint endpoint(uint16_t port)
{
    struct cli_endpoint ep = {.port = port};
    strcpy(ep.host, "127.0.0.1");
    return ep;
}

static int exchange(uint16_t port, const char *body, size_t body_len, int timeout_ms,
                    struct cli_buf *rbuf, struct http_response *resp)
{
    struct cli_endpoint ep = endpoint(port);
    struct cli_buf head = {0};
    ST_ASSERT(cli_buf_printf(&head, "PUT /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n",
                             body_len) == 0);
    const char *why = "";
    int rc = cli_http_exchange(&ep, &head, body, body_len, timeout_ms, rbuf, resp, &why);
    cli_buf_free(&head);
    return rc;
}

TEST(http_silent_server_times_out)
{
    struct server s;
    server_start(&s, SCRIPT_SILENT, 1);
    struct cli_buf rbuf = {0};
    struct http_response resp;
    int rc = exchange(s.port, "v", 1, 200, &rbuf, &resp);
    cli_buf_free(&rbuf);
    server_join(&s);
    ASSERT_EQ(rc, ST_ETIMEDOUT);
}

TEST(http_refused_connection_is_a_connection_error)
{
    struct cli_buf rbuf = {0};
    struct http_response resp;
    int rc = exchange(dead_port(), NULL, 0, 2000, &rbuf, &resp);
    cli_buf_free(&rbuf);
    ASSERT_EQ(rc, ST_ECONNECTION);
}

TEST(http_early_answer_to_a_large_upload_is_heard)
{
    struct server s;
    server_start(&s, SCRIPT_EARLY_413, 1);
    size_t big = 8u << 20;
    char *body = malloc(big);
    ASSERT_TRUE(body != NULL);
    memset(body, 'x', big);
    struct cli_buf rbuf = {0};
    struct http_response resp;
    int rc = exchange(s.port, body, big, 20000, &rbuf, &resp);
    free(body);
    server_join(&s);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(resp.status, 413);
    ASSERT_TRUE(resp.json);
    ASSERT_EQ(resp.body_len, 44);
    cli_buf_free(&rbuf);
}

TEST(http_chunked_answer_in_pieces)
{
    struct server s;
    server_start(&s, SCRIPT_CHUNKED, 1);
    struct cli_buf rbuf = {0};
    struct http_response resp;
    int rc = exchange(s.port, NULL, 0, 5000, &rbuf, &resp);
    server_join(&s);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(resp.status, 200);
    ASSERT_EQ(resp.body_len, 12);
    ASSERT_MEMEQ(resp.body, "first-second", 12);
    ASSERT_STREQ(resp.etag, "9");
    cli_buf_free(&rbuf);
}

TEST(http_garbage_answer_is_a_protocol_error)
{
    struct server s;
    server_start(&s, SCRIPT_GARBAGE, 1);
    struct cli_buf rbuf = {0};
    struct http_response resp;
    int rc = exchange(s.port, NULL, 0, 5000, &rbuf, &resp);
    cli_buf_free(&rbuf);
    server_join(&s);
    ASSERT_EQ(rc, ST_EPROTO);
}

TEST(failover_skips_dead_garbage_and_leaderless_endpoints)
{
    struct server garbage, leaderless, ok;
    server_start(&garbage, SCRIPT_GARBAGE, 1);
    server_start(&leaderless, SCRIPT_NO_LEADER, 1);
    server_start(&ok, SCRIPT_OK, 1);
    struct cli c = {.timeout_ms = 5000};
    c.endpoints[0] = endpoint(dead_port());
    c.endpoints[1] = endpoint(garbage.port);
    c.endpoints[2] = endpoint(leaderless.port);
    c.endpoints[3] = endpoint(ok.port);
    c.endpoints_n = 4;
    int rc = cluster_request(&c, "GET", "/kv/k", NULL, NULL, 0);
    server_join(&garbage);
    server_join(&leaderless);
    server_join(&ok);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(c.endpoint_used, 3);
    ASSERT_EQ(c.resp.status, 200);
    ASSERT_MEMEQ(c.resp.body, "fine", 4);
    cli_buf_free(&c.head);
    cli_buf_free(&c.rbuf);
}

TEST(failover_reports_unavailable_when_no_endpoint_serves)
{
    struct server leaderless;
    server_start(&leaderless, SCRIPT_NO_LEADER, 1);
    struct cli c = {.timeout_ms = 300}; /* retry rounds stop at the overall deadline */
    c.endpoints[0] = endpoint(leaderless.port);
    c.endpoints[1] = endpoint(dead_port());
    c.endpoints_n = 2;
    int rc = cluster_request(&c, "GET", "/kv/k", NULL, NULL, 0);
    server_join(&leaderless);
    ASSERT_EQ(rc, ST_EUNAVAILABLE);
    cli_buf_free(&c.head);
    cli_buf_free(&c.rbuf);
}

/* During an election every node answers 503 no_leader for a few hundred ms:
 * the client must ride through it (retry the list until --timeout) instead of
 * failing at the first round (cluster/cli was flaky on this). */
TEST(failover_retries_through_an_election_until_the_deadline)
{
    struct server electing;
    server_start(&electing, SCRIPT_ELECTION, 2);
    struct cli c = {.timeout_ms = 5000};
    c.endpoints[0] = endpoint(electing.port);
    c.endpoints_n = 1;
    int rc = cluster_request(&c, "GET", "/kv/k", NULL, NULL, 0);
    shutdown(electing.fd, SHUT_RDWR); /* unblocks accept() if the retry never came */
    server_join(&electing);
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(c.resp.status, 200);
    ASSERT_MEMEQ(c.resp.body, "fine", 4);
    cli_buf_free(&c.head);
    cli_buf_free(&c.rbuf);
}

TEST(command_line_errors_exit_2_before_any_network_io)
{
    char *cases[][6] = {
        {"get", NULL},
        {"put", "k", NULL},
        {"get", "k", "--consistency", "bogus", NULL},
        {"get", "k", "--endpoints", "nohostport", NULL},
        {"put", "k", "v", "--if-match", "abc", NULL},
        {"put", "k", "v", "--if-absent", "--if-match", "3"},
        {"del", "k", "--ttl", "5", NULL},
        {"remove", "0", NULL},
        {"frobnicate", NULL},
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(cases); i++) {
        int argc = 0;
        while (argc < 6 && cases[i][argc])
            argc++;
        ASSERT_EQ(cli_client_main(argc, cases[i]), CLI_EXIT_USAGE);
    }
}

TEST_MAIN()
