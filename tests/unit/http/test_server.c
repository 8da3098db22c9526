/* HTTP server over real sockets: keep-alive, pipelining with out-of-order
 * completion, bounds (413/414/431), malformed input (400), disconnects with
 * pending requests, idle timeout, connection limit, clean shutdown. */
#include "test.h"

#include "httptest.h"

TEST(simple_get_with_query_and_conditional_headers)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    ASSERT_EQ(f->create_rc, 0);
    ASSERT_NE(f->port, 0);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /keys/a%20b?x=1&y=2#frag HTTP/1.1\r\nHost: t\r\n"
                           "If-Match: \"7\"\r\nIf-None-Match: *\r\nX-Any: hello\r\n\r\n"),
              0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STREQ(r.body,
                 "GET /keys/a%20b q=x=1&y=2 im=\"7\" inm=* len=0 crc=00000000 ka=1 xa=hello");
    ASSERT_TRUE(strstr(r.headers, "Content-Type: text/plain\r\n") != NULL);
    ASSERT_FALSE(r.conn_close);
    free(r.body);
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.requests, 1);
    ASSERT_EQ(s.requests_bad, 0);
}

TEST(keep_alive_serves_many_requests_on_one_connection)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    for (int i = 0; i < 50; i++) {
        char req[128], want[64];
        snprintf(req, sizeof(req), "GET /n/%d HTTP/1.1\r\nHost: t\r\n\r\n", i);
        ASSERT_EQ(cl_sends(&c, req), 0);
        struct resp r;
        ASSERT_EQ(cl_read(&c, &r), 0);
        snprintf(want, sizeof(want), "GET /n/%d q=", i);
        ASSERT_EQ(strncmp(r.body, want, strlen(want)), 0);
        free(r.body);
    }
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.connections_accepted, 1);
    ASSERT_EQ(s.requests, 50);
}

TEST(pipelined_requests_completed_in_reverse_are_answered_in_order)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    fx_set_mode(f, FX_BATCH_REVERSE, 5);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    char reqs[1024] = "";
    for (int i = 1; i <= 5; i++) {
        char one[128];
        snprintf(one, sizeof(one), "PUT /p/%d HTTP/1.1\r\nContent-Length: 1\r\n\r\n%d", i, i);
        strcat(reqs, one);
    }
    ASSERT_EQ(cl_sends(&c, reqs), 0); /* one write: all five pipelined */
    for (int i = 1; i <= 5; i++) {
        struct resp r;
        ASSERT_EQ(cl_read(&c, &r), 0);
        char want[64];
        snprintf(want, sizeof(want), "PUT /p/%d q=- im=- inm=- len=1", i);
        ASSERT_EQ(strncmp(r.body, want, strlen(want)), 0);
        free(r.body);
    }
    cl_close(&c);
    fx_stop(f);
}

TEST(pipelining_deeper_than_the_ring_applies_back_pressure_and_keeps_order)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.pipeline_max = 2;
    struct fx *f = fx_start(&cfg, FX_DEFER);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    static char reqs[64 * 1024];
    reqs[0] = 0;
    for (int i = 0; i < 200; i++) {
        char one[128];
        snprintf(one, sizeof(one), "GET /q/%d HTTP/1.1\r\n\r\n", i);
        strcat(reqs, one);
    }
    ASSERT_EQ(cl_sends(&c, reqs), 0);
    for (int i = 0; i < 200; i++) {
        struct resp r;
        ASSERT_EQ(cl_read(&c, &r), 0);
        char want[64];
        snprintf(want, sizeof(want), "GET /q/%d q=", i);
        ASSERT_EQ(strncmp(r.body, want, strlen(want)), 0);
        free(r.body);
    }
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.requests, 200);
}

TEST(large_request_and_response_bodies)
{
    struct fx *f = fx_start(NULL, FX_DEFER);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    size_t n = 2u * 1024u * 1024u; /* exactly body_bytes_max */
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)(i * 7);
    char head[128];
    snprintf(head, sizeof(head), "PUT /big-in HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
    ASSERT_EQ(cl_sends(&c, head), 0);
    ASSERT_EQ(cl_send(&c, body, n), 0);
    ASSERT_EQ(cl_sends(&c, "GET /big HTTP/1.1\r\n\r\n"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    char want[64];
    snprintf(want, sizeof(want), "len=%zu crc=%08x", n, st_crc32c(0, body, n));
    ASSERT_TRUE(strstr(r.body, want) != NULL);
    free(r.body);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body_len, 3u * 1024u * 1024u + 17u);
    for (size_t i = 0; i < r.body_len; i += 4099)
        ASSERT_EQ(r.body[i], (char)('a' + i % 23));
    free(r.body);
    /* The connection still works after the big ones. */
    ASSERT_EQ(cl_sends(&c, "GET /after HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    free(body);
    cl_close(&c);
    fx_stop(f);
}

TEST(chunked_request_body_is_assembled)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
              0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    char want[64];
    snprintf(want, sizeof(want), "len=11 crc=%08x", st_crc32c(0, "hello world", 11));
    ASSERT_TRUE(strstr(r.body, want) != NULL);
    free(r.body);
    /* Trailer headers are visible like headers. */
    ASSERT_EQ(cl_sends(&c, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "2\r\nhi\r\n0\r\nX-Any: trailer\r\n\r\n"),
              0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_TRUE(strstr(r.body, "len=2 ") != NULL);
    ASSERT_TRUE(strstr(r.body, "xa=trailer") != NULL);
    free(r.body);
    cl_close(&c);
    fx_stop(f);
}

static void expect_error_and_close(struct fx *f, const char *request, int status)
{
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_send(&c, request, strlen(request)), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, status);
    ASSERT_TRUE(r.conn_close);
    ASSERT_TRUE(strstr(r.headers, "Content-Type: application/json") != NULL);
    char want[32];
    snprintf(want, sizeof(want), ",\"code\":%d}", status);
    ASSERT_TRUE(strncmp(r.body, "{\"error\":\"", 10) == 0);
    ASSERT_TRUE(strstr(r.body, want) != NULL);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&c));
    cl_close(&c);
}

TEST(oversized_body_gets_413_and_close)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.body_bytes_max = 1000;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    expect_error_and_close(f, "PUT /x HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413);
    /* Chunked bodies are counted as they arrive. */
    char req[4096];
    int n = snprintf(req, sizeof(req),
                     "PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "3e8\r\n");
    memset(req + n, 'a', 1000);
    n += 1000;
    snprintf(req + n, sizeof(req) - (size_t)n, "\r\n1\r\nb\r\n0\r\n\r\n");
    expect_error_and_close(f, req, 413);
    /* The server is still fine for others. */
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "PUT /ok HTTP/1.1\r\nContent-Length: 1000\r\n\r\n"), 0);
    memset(req, 'z', 1000);
    ASSERT_EQ(cl_send(&c, req, 1000), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.requests_bad, 2);
    ASSERT_EQ(s.requests, 1);
}

TEST(rejected_large_body_is_drained_so_the_client_reads_its_413)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.body_bytes_max = 1000;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    size_t n = 8u * 1024u * 1024u; /* far more than the socket buffers hold */
    char *body = calloc(1, n);
    char head[128];
    snprintf(head, sizeof(head), "PUT /x HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
    ASSERT_EQ(cl_sends(&c, head), 0);
    /* The server answers 413 at once but keeps reading: the send completes. */
    ASSERT_EQ(cl_send(&c, body, n), 0);
    free(body);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 413);
    ASSERT_TRUE(r.conn_close);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&c));
    cl_close(&c);
    fx_stop(f);
}

TEST(oversized_headers_get_431_and_long_url_414)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.head_bytes_max = 1024;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    static char req[8192];
    int n = snprintf(req, sizeof(req), "GET /x HTTP/1.1\r\nX-Big: ");
    memset(req + n, 'h', 2000);
    n += 2000;
    snprintf(req + n, sizeof(req) - (size_t)n, "\r\n\r\n");
    expect_error_and_close(f, req, 431);
    n = snprintf(req, sizeof(req), "GET /");
    memset(req + n, 'u', 2000);
    n += 2000;
    snprintf(req + n, sizeof(req) - (size_t)n, " HTTP/1.1\r\n\r\n");
    expect_error_and_close(f, req, 414);
    fx_stop(f);
}

TEST(too_many_headers_get_431)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.headers_max = 8;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    char req[2048];
    int n = snprintf(req, sizeof(req), "GET /x HTTP/1.1\r\n");
    for (int i = 0; i < 9; i++)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "X-H%d: v\r\n", i);
    snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    expect_error_and_close(f, req, 431);
    /* Exactly headers_max is fine. */
    n = snprintf(req, sizeof(req), "GET /x HTTP/1.1\r\n");
    for (int i = 0; i < 8; i++)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "X-H%d: v\r\n", i);
    snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, req), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    cl_close(&c);
    fx_stop(f);
}

TEST(malformed_request_lines_get_400_and_close)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    expect_error_and_close(f, "\x01\x02garbage\r\n\r\n", 400);
    expect_error_and_close(f, "GET /x HTTP/9.9.9\r\n\r\n", 400);
    expect_error_and_close(f, "GET x HTTP/1.1\r\n\r\n", 400);
    expect_error_and_close(f, "GET http://host/x HTTP/1.1\r\n\r\n", 400);
    expect_error_and_close(f, "PUT /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400);
    expect_error_and_close(f, "GET /x HTTP/1.1\r\nBad Header\r\n\r\n", 400);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.requests, 0);
    ASSERT_EQ(s.requests_bad, 6);
}

TEST(garbage_after_a_good_pipelined_request_is_answered_after_it)
{
    struct fx *f = fx_start(NULL, FX_DEFER);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /first HTTP/1.1\r\n\r\nNOT-HTTP\x01\r\n\r\n"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(strncmp(r.body, "GET /first", 10), 0);
    free(r.body);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 400);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&c));
    cl_close(&c);
    fx_stop(f);
}

static int fx_held_n(struct fx *f, void *arg)
{
    return f->n_held == *(int *)arg;
}

static int fx_held_orphaned(struct fx *f, void *arg)
{
    (void)arg;
    for (int i = 0; i < f->n_held; i++)
        if (!http_request_orphaned(f->held[i])) return 0;
    return f->n_held > 0;
}

TEST(client_reset_with_pending_requests_discards_their_responses)
{
    struct fx *f = fx_start(NULL, FX_HOLD);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"), 0);
    int two = 2;
    fx_wait(f, fx_held_n, &two);
    cl_reset(&c);
    fx_wait(f, fx_held_orphaned, NULL); /* the server noticed the reset */
    fx_run(f, fx_release_cmd, NULL);    /* complete both: discarded */
    ASSERT_EQ(f->send_rc_last, 0);
    /* Other clients are unaffected. */
    fx_set_mode(f, FX_ECHO, 0);
    struct client d;
    ASSERT_EQ(cl_connect(&d, f->port), 0);
    ASSERT_EQ(cl_sends(&d, "GET /c HTTP/1.1\r\n\r\n"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&d, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    cl_close(&d);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.responses_discarded, 2);
}

TEST(half_closed_client_still_gets_its_pending_responses)
{
    struct fx *f = fx_start(NULL, FX_HOLD);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"), 0);
    int two = 2;
    fx_wait(f, fx_held_n, &two);
    shutdown(c.fd, SHUT_WR);
    fx_run(f, fx_release_cmd, NULL);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(strncmp(r.body, "GET /a", 6), 0);
    free(r.body);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(strncmp(r.body, "GET /b", 6), 0);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&c)); /* then the server closes */
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.responses_discarded, 0);
}

TEST(idle_connection_is_closed_after_the_timeout)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.idle_timeout_ms = 300; /* ample for the request to arrive first, even on a loaded host */
    struct fx *f = fx_start(&cfg, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /x HTTP/1.1\r\n\r\n"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&c)); /* awaited: the server closes the idle connection */
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.idle_closed, 1);
}

TEST(idle_timeout_spares_connections_with_requests_in_the_handler)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.idle_timeout_ms = 250;
    struct fx *f = fx_start(&cfg, FX_HOLD);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /slow HTTP/1.1\r\n\r\n"), 0);
    int one = 1;
    fx_wait(f, fx_held_n, &one);
    /* A second connection idles out while the first one's request waits:
     * by then the first one's timer has fired too (same timeout, older). */
    struct client d;
    ASSERT_EQ(cl_connect(&d, f->port), 0);
    ASSERT_TRUE(cl_wait_eof(&d));
    cl_close(&d);
    fx_run(f, fx_release_cmd, NULL);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(strncmp(r.body, "GET /slow", 9), 0);
    free(r.body);
    cl_close(&c);
    fx_stop(f);
}

TEST(connections_over_the_limit_get_503_when_none_is_idle)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.connections_max = 1;
    struct fx *f = fx_start(&cfg, FX_HOLD);
    struct client a, b;
    ASSERT_EQ(cl_connect(&a, f->port), 0);
    ASSERT_EQ(cl_sends(&a, "GET /x HTTP/1.1\r\n\r\n"), 0); /* busy: with the handler */
    int one = 1;
    fx_wait(f, fx_held_n, &one);
    struct resp r;
    ASSERT_EQ(cl_connect(&b, f->port), 0);
    ASSERT_EQ(cl_read(&b, &r), 0);
    ASSERT_EQ(r.status, 503);
    ASSERT_STREQ(r.body, "{\"error\":\"too many connections\",\"code\":503}");
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&b));
    cl_close(&b);
    fx_run(f, fx_release_cmd, NULL);
    ASSERT_EQ(cl_read(&a, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    cl_close(&a);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.connections_rejected, 1);
    ASSERT_EQ(s.idle_evicted, 0);
}

/* Idle connections renewed before the idle timeout used to hold every
 * place: at the cap, the one idle longest now makes room for a new one. */
TEST(at_the_cap_the_longest_idle_connection_makes_room)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.connections_max = 2;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    struct client a, b, c;
    struct resp r;
    ASSERT_EQ(cl_connect(&a, f->port), 0);
    ASSERT_EQ(cl_sends(&a, "GET /a HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&a, &r), 0);
    free(r.body);
    ASSERT_EQ(cl_connect(&b, f->port), 0);
    ASSERT_EQ(cl_sends(&b, "GET /b HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&b, &r), 0);
    free(r.body);
    /* Make a the more recently active one: b is now idle longest. */
    ASSERT_EQ(cl_sends(&a, "GET /a2 HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&a, &r), 0);
    free(r.body);
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /c HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&b)); /* b made room */
    ASSERT_EQ(cl_sends(&a, "GET /a3 HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&a, &r), 0); /* a is still served */
    ASSERT_EQ(r.status, 200);
    free(r.body);
    cl_close(&a);
    cl_close(&b);
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.idle_evicted, 1);
    ASSERT_EQ(s.connections_rejected, 0);
}

/* Connects from the loopback source address 127.0.0.<last>. */
static int cl_connect_from(struct client *c, uint16_t port, uint8_t last)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(0x7f000000u | last);
    if (bind(c->fd, (struct sockaddr *)&src, sizeof src) != 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    c->cap = 1u << 20;
    c->buf = malloc(c->cap);
    return connect(c->fd, (struct sockaddr *)&a, sizeof(a));
}

static int fx_connections_n(struct fx *f, void *arg)
{
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    return s.connections == *(uint64_t *)arg;
}

TEST(one_address_cannot_take_more_than_its_share)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.connections_max = 8;
    cfg.conns_per_ip_max = 3;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    struct client a[4], other;
    struct resp r;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(cl_connect_from(&a[i], f->port, 2), 0);
        ASSERT_EQ(cl_sends(&a[i], "GET /a HTTP/1.1\r\n\r\n"), 0);
        ASSERT_EQ(cl_read(&a[i], &r), 0);
        ASSERT_EQ(r.status, 200);
        free(r.body);
    }
    ASSERT_EQ(cl_connect_from(&a[3], f->port, 2), 0);
    ASSERT_EQ(cl_read(&a[3], &r), 0);
    ASSERT_EQ(r.status, 503);
    ASSERT_STREQ(r.body, "{\"error\":\"too many connections from this address\",\"code\":503}");
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&a[3]));
    cl_close(&a[3]);
    ASSERT_EQ(cl_connect_from(&other, f->port, 3), 0);
    ASSERT_EQ(cl_sends(&other, "GET /b HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&other, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    /* A closed connection gives its place back to its address. */
    cl_close(&a[0]);
    uint64_t three = 3;
    fx_wait(f, fx_connections_n, &three);
    ASSERT_EQ(cl_connect_from(&a[0], f->port, 2), 0);
    ASSERT_EQ(cl_sends(&a[0], "GET /c HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&a[0], &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    for (int i = 0; i < 3; i++)
        cl_close(&a[i]);
    cl_close(&other);
    struct http_server_stats s = fx_stop(f);
    ASSERT_GE(s.connections_rejected_per_ip, 1);
    ASSERT_EQ(s.connections_rejected, 0);
}

TEST(connection_close_and_http10_semantics)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(
        cl_sends(&c, "GET /x HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n"),
        0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_TRUE(r.conn_close);
    ASSERT_TRUE(strstr(r.body, "ka=0") != NULL);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&c));
    cl_close(&c);
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /old HTTP/1.0\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_TRUE(r.conn_close);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&c));
    cl_close(&c);
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_TRUE(strstr(r.headers, "Connection: keep-alive") != NULL);
    free(r.body);
    ASSERT_EQ(cl_sends(&c, "GET /ka2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.requests, 4);
}

TEST(head_gets_headers_only_and_extra_headers_cannot_inject)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    /* HEAD: Content-Length of the body that a GET would have, no body bytes. */
    ASSERT_EQ(cl_sends(&c, "HEAD /etag HTTP/1.1\r\n\r\nGET /etag HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_fill(&c) > 0, 1);
    struct resp r;
    /* Parse the HEAD response by hand: its Content-Length has no body. */
    char *end = NULL;
    while (!(end = memmem(c.buf, c.len, "\r\n\r\n", 4)))
        ASSERT_TRUE(cl_fill(&c) > 0);
    size_t hl = (size_t)(end - c.buf) + 4;
    ASSERT_TRUE(memmem(c.buf, hl, "HTTP/1.1 201 Created\r\n", 22) != NULL);
    ASSERT_TRUE(memmem(c.buf, hl, "Content-Length: 4\r\n", 19) != NULL);
    memmove(c.buf, c.buf + hl, c.len - hl);
    c.len -= hl;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 201);
    ASSERT_STREQ(r.body, "made");
    ASSERT_TRUE(strstr(r.headers, "ETag: \"42\"\r\n") != NULL);
    ASSERT_TRUE(strstr(r.headers, "X-Ok: fine\r\n") != NULL);
    ASSERT_TRUE(strstr(r.headers, "Injected") == NULL);
    ASSERT_TRUE(strstr(r.headers, "X-Evil") == NULL);
    ASSERT_TRUE(strstr(r.headers, "Bad Name") == NULL);
    free(r.body);
    ASSERT_EQ(cl_sends(&c, "GET /error HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 404);
    ASSERT_STREQ(r.body, "{\"error\":\"no \\\"such\\\" key\\n\",\"code\":-8}");
    ASSERT_FALSE(r.conn_close); /* handler errors keep the connection */
    free(r.body);
    cl_close(&c);
    fx_stop(f);
}

TEST(expect_100_continue_gets_an_interim_response)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "PUT /e HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"),
              0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0); /* the interim response */
    ASSERT_EQ(r.status, 100);
    free(r.body);
    ASSERT_EQ(cl_sends(&c, "abc"), 0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(strstr(r.body, "len=3") != NULL);
    free(r.body);
    cl_close(&c);
    fx_stop(f);
}

static void fx_check_orphaned_cmd(struct fx *f, void *arg)
{
    *(int *)arg = f->n_held == 1 && http_request_orphaned(f->held[0]);
}

TEST(server_close_waits_for_requests_still_with_the_handler)
{
    struct fx *f = fx_start(NULL, FX_HOLD);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /a HTTP/1.1\r\n\r\n"), 0);
    int one = 1;
    fx_wait(f, fx_held_n, &one);
    fx_run(f, fx_close_cmd, NULL);
    ASSERT_TRUE(cl_wait_eof(&c)); /* connections are closed at once */
    int orphaned = 0;
    fx_run(f, fx_check_orphaned_cmd, &orphaned);
    ASSERT_EQ(f->closed, 0); /* but the held request keeps the server open */
    ASSERT_TRUE(orphaned);
    fx_run(f, fx_release_cmd, NULL); /* the last completion closes the server */
    pthread_join(f->thread, NULL);   /* the loop ends once everything is closed */
    ASSERT_EQ(f->closed, 1);
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    ASSERT_EQ(s.responses_discarded, 1);
    ASSERT_EQ(s.connections, 0);
    http_server_destroy(f->srv);
    ASSERT_EQ(uv_loop_close(&f->loop), 0);
    free(f);
    cl_close(&c);
}

TEST(bind_failure_is_reported_and_leaks_nothing)
{
    struct fx *a = fx_start(NULL, FX_ECHO);
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    uv_loop_t loop;
    uv_loop_init(&loop);
    cfg.port = a->port; /* taken */
    struct http_server *srv = (struct http_server *)1;
    int rc = http_server_create(&loop, &cfg, (http_handler_cb)fx_handler, NULL, &srv);
    ASSERT_TRUE(rc < 0);
    ASSERT_TRUE(srv == NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    cfg.port = 0;
    cfg.host = "not-an-address";
    ASSERT_EQ(http_server_create(&loop, &cfg, (http_handler_cb)fx_handler, NULL, &srv), ST_EINVAL);
    cfg.host = "127.0.0.1";
    cfg.pipeline_max = 0;
    ASSERT_EQ(http_server_create(&loop, &cfg, (http_handler_cb)fx_handler, NULL, &srv), ST_EINVAL);
    fx_stop(a);
}

TEST(requests_split_into_single_bytes_parse_like_whole_ones)
{
    struct fx *f = fx_start(NULL, FX_DEFER);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const char *reqs =
        "PUT /k%41?a=1 HTTP/1.1\r\nIf-Match: \"12\"\r\nX-Any: frag\r\n"
        "Content-Length: 5\r\n\r\nhelloGET /two HTTP/1.1\r\nIf-None-Match: *\r\n\r\n";
    for (const char *p = reqs; *p; p++)
        ASSERT_EQ(cl_send(&c, p, 1), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    char want[160];
    snprintf(want, sizeof(want), "PUT /k%%41 q=a=1 im=\"12\" inm=- len=5 crc=%08x ka=1 xa=frag",
             st_crc32c(0, "hello", 5));
    ASSERT_STREQ(r.body, want);
    free(r.body);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_STREQ(r.body, "GET /two q=- im=- inm=* len=0 crc=00000000 ka=1 xa=-");
    free(r.body);
    cl_close(&c);
    fx_stop(f);
}

TEST(many_clients_pipelining_at_once_each_get_their_own_answers)
{
    struct fx *f = fx_start(NULL, FX_DEFER);
    enum { CLIENTS = 40, PER = 20 };
    static struct client cs[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        ASSERT_EQ(cl_connect(&cs[i], f->port), 0);
        char reqs[PER * 64];
        reqs[0] = 0;
        for (int j = 0; j < PER; j++) {
            char one[64];
            snprintf(one, sizeof(one), "GET /c%d/r%d HTTP/1.1\r\n\r\n", i, j);
            strcat(reqs, one);
        }
        ASSERT_EQ(cl_sends(&cs[i], reqs), 0);
    }
    for (int i = CLIENTS - 1; i >= 0; i--) {
        for (int j = 0; j < PER; j++) {
            struct resp r;
            ASSERT_EQ(cl_read(&cs[i], &r), 0);
            char want[64];
            snprintf(want, sizeof(want), "GET /c%d/r%d q=", i, j);
            ASSERT_EQ(strncmp(r.body, want, strlen(want)), 0);
            free(r.body);
        }
        cl_close(&cs[i]);
    }
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.requests, CLIENTS * PER);
    ASSERT_EQ(s.connections_accepted, CLIENTS);
}

static int fx_no_connections(struct fx *f, void *arg)
{
    (void)arg;
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    return s.connections == 0;
}

TEST(client_reset_during_a_large_response_write_closes_cleanly)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    int small = 4096;
    setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    ASSERT_EQ(cl_sends(&c, "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n"), 0);
    ASSERT_TRUE(cl_fill(&c) > 0); /* the first bytes arrived: the write is under way */
    cl_reset(&c);
    fx_wait(f, fx_no_connections, NULL);
    /* The server still serves others. */
    struct client d;
    ASSERT_EQ(cl_connect(&d, f->port), 0);
    ASSERT_EQ(cl_sends(&d, "GET /x HTTP/1.1\r\n\r\n"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&d, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    cl_close(&d);
    fx_stop(f);
}

TEST(synchronously_answered_pipelined_requests_leave_in_one_write)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    char reqs[1024] = "";
    for (int i = 0; i < 12; i++)
        strcat(reqs, "GET /s HTTP/1.1\r\n\r\n");
    ASSERT_EQ(cl_sends(&c, reqs), 0); /* one small send: one read on loopback */
    for (int i = 0; i < 12; i++) {
        struct resp r;
        ASSERT_EQ(cl_read(&c, &r), 0);
        ASSERT_EQ(r.status, 200);
        free(r.body);
    }
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.requests, 12);
    ASSERT_LE(s.write_batches, 3); /* was one write per response */
}

TEST(responses_completed_in_order_in_one_callback_share_a_write)
{
    struct fx *f = fx_start(NULL, FX_DEFER_FIFO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    char reqs[1024] = "";
    for (int i = 0; i < 12; i++) {
        char one[64];
        snprintf(one, sizeof(one), "GET /o/%d HTTP/1.1\r\n\r\n", i);
        strcat(reqs, one);
    }
    ASSERT_EQ(cl_sends(&c, reqs), 0);
    for (int i = 0; i < 12; i++) {
        struct resp r;
        ASSERT_EQ(cl_read(&c, &r), 0);
        char want[32];
        snprintf(want, sizeof(want), "GET /o/%d q=", i);
        ASSERT_EQ(strncmp(r.body, want, strlen(want)), 0);
        free(r.body);
    }
    cl_close(&c);
    struct http_server_stats s = fx_stop(f);
    ASSERT_LE(s.write_batches, 3); /* was one write per in-order completion */
}

TEST(slow_request_gets_408_at_the_request_timeout)
{
    struct http_server_config cfg;
    http_server_config_default(&cfg);
    cfg.request_timeout_ms = 50;
    struct fx *f = fx_start(&cfg, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    /* Half a request, then nothing: the 408 is the awaited event. */
    ASSERT_EQ(cl_sends(&c, "PUT /slow HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"), 0);
    struct resp r;
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 408);
    ASSERT_TRUE(r.conn_close);
    ASSERT_TRUE(strstr(r.body, "\"code\":408") != NULL);
    free(r.body);
    ASSERT_TRUE(cl_wait_eof(&c));
    cl_close(&c);
    /* Other connections are unaffected. */
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /a HTTP/1.1\r\n\r\n"), 0);
    ASSERT_EQ(cl_read(&c, &r), 0);
    ASSERT_EQ(r.status, 200);
    free(r.body);
    struct http_server_stats s1 = fx_stats(f);
    ASSERT_EQ(s1.request_timeouts, 1);
    cl_close(&c);
    fx_stop(f);
}

static int fx_write_in_flight(struct fx *f, void *arg)
{
    (void)arg;
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    return s.write_batches >= 1 && s.requests >= 1;
}

TEST(server_close_with_a_write_in_flight_releases_everything)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    /* 32 MiB response the client does not read yet: more than the socket
     * buffers hold, so a uv_write stays queued. */
    ASSERT_EQ(cl_sends(&c, "GET /huge HTTP/1.1\r\n\r\n"), 0);
    fx_wait(f, fx_write_in_flight, NULL);
    struct http_server_stats s = fx_stop(f); /* closes with the uv_write pending */
    ASSERT_EQ(s.requests, 1);
    /* The client sees the connection end (EOF or reset), not a timeout, and
     * the response cut short. */
    size_t total = 0;
    ssize_t n;
    for (;;) {
        n = cl_fill(&c);
        if (n <= 0) break;
        total += (size_t)n;
        c.len = 0; /* discard */
    }
    int ended = n == 0 || errno == ECONNRESET;
    cl_close(&c);
    ASSERT_TRUE(ended);
    ASSERT_TRUE(total < 32u * 1024u * 1024u);
}

TEST_MAIN()
