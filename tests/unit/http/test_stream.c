/* Streaming responses (http_response_stream_begin/write/abort): the body
 * arrives whole and in order, at most one piece is queued per connection
 * while the client does not read, a client that goes away is reported to the
 * producer, and an aborted stream closes the connection short. */
#include "httptest.h"
#include "test.h"

/* Reads the head and then the body of a streaming response, checking every
 * byte against fx_stream_byte; returns the body bytes read until EOF. */
static uint64_t read_stream(struct client *c, struct resp *r, int *pattern_ok)
{
    memset(r, 0, sizeof *r);
    char *end;
    for (;;) {
        end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
        if (end) break;
        if (cl_fill(c) <= 0) return 0;
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    memcpy(r->headers, c->buf, head_len < sizeof r->headers ? head_len : sizeof r->headers - 1);
    r->status = (int)strtol(r->headers + 9, NULL, 10);
    const char *conn = find_hdr(r->headers, "Connection");
    r->conn_close = conn && strncasecmp(conn, "close", 5) == 0;
    uint64_t got = 0;
    *pattern_ok = 1;
    size_t pos = head_len;
    for (;;) {
        for (; pos < c->len; pos++, got++)
            if ((uint8_t)c->buf[pos] != fx_stream_byte(got)) *pattern_ok = 0;
        c->len = 0;
        pos = 0;
        ssize_t n = cl_fill(c);
        if (n <= 0) break;
    }
    return got;
}

static int stream_finished(struct fx *f, void *arg)
{
    (void)arg;
    return f->stream_finished;
}

/* A piece is queued and the producer waits for it to be written: with 64 MiB
 * to send and a client that reads nothing, the socket buffers fill (a tiny
 * SO_RCVBUF is not used: zero-window probing then crawls once it reads). */
static int stream_waits_for_the_client(struct fx *f, void *arg)
{
    (void)arg;
    struct http_server_stats s;
    http_server_stats(f->srv, &s);
    return f->stream_req != NULL && f->stream_pieces >= 1 && s.out_bytes > 0 &&
           !uv_is_active((uv_handle_t *)&f->stream_timer);
}

TEST(a_streamed_body_arrives_whole_in_order_and_the_connection_closes)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    uint64_t total = 5u * FX_STREAM_PIECE + 123u;
    char req[128];
    snprintf(req, sizeof req, "GET /stream?%llu HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n",
             (unsigned long long)total);
    ASSERT_EQ(cl_sends(&c, req), 0);
    struct resp r;
    int ok = 0;
    ASSERT_EQ(read_stream(&c, &r, &ok), total); /* then EOF: nothing after it */
    ASSERT_TRUE(ok);
    ASSERT_EQ(r.status, 200);
    ASSERT_TRUE(r.conn_close);
    char want[64];
    snprintf(want, sizeof want, "Content-Length: %llu", (unsigned long long)total);
    ASSERT_TRUE(strstr(r.headers, want) != NULL);
    cl_close(&c);
    fx_wait(f, stream_finished, NULL);
    ASSERT_EQ(f->stream_pieces, 6);
    struct http_server_stats s = fx_stop(f);
    ASSERT_EQ(s.requests, 1); /* nothing after a streamed response is parsed */
}

TEST(a_client_that_does_not_read_holds_at_most_one_piece_in_the_server)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    uint64_t total = 64u * 1024u * 1024u;
    char req[128];
    snprintf(req, sizeof req, "GET /stream?%llu HTTP/1.1\r\n\r\n", (unsigned long long)total);
    ASSERT_EQ(cl_sends(&c, req), 0);
    fx_wait(f, stream_waits_for_the_client, NULL);
    struct http_server_stats s = fx_stats(f);
    ASSERT_LE(s.out_bytes, (uint64_t)FX_STREAM_PIECE);
    ASSERT_TRUE(f->stream_sent < total);
    struct resp r;
    int ok = 0;
    ASSERT_EQ(read_stream(&c, &r, &ok), total);
    ASSERT_TRUE(ok);
    cl_close(&c);
    fx_wait(f, stream_finished, NULL);
    ASSERT_LE(f->stream_out_bytes_max, (uint64_t)FX_STREAM_PIECE + 512u);
    fx_stop(f);
}

TEST(a_client_gone_mid_stream_is_reported_to_the_producer)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /stream?67108864 HTTP/1.1\r\n\r\n"), 0);
    fx_wait(f, stream_waits_for_the_client, NULL);
    cl_reset(&c);
    fx_wait(f, stream_finished, NULL);
    ASSERT_TRUE(f->stream_orphaned);
    ASSERT_TRUE(f->stream_sent < 67108864u);
    fx_stop(f); /* nothing left with the producer: the close completes */
}

TEST(an_aborted_stream_closes_the_connection_with_a_short_body)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    char req[128];
    snprintf(req, sizeof req, "GET /stream?%u&%u HTTP/1.1\r\n\r\n", 4u * FX_STREAM_PIECE,
             2u * FX_STREAM_PIECE);
    ASSERT_EQ(cl_sends(&c, req), 0);
    struct resp r;
    int ok = 0;
    ASSERT_EQ(read_stream(&c, &r, &ok), 2u * FX_STREAM_PIECE);
    ASSERT_TRUE(ok);
    cl_close(&c);
    fx_stop(f);
}

TEST(server_close_mid_stream_ends_the_producer)
{
    struct fx *f = fx_start(NULL, FX_ECHO);
    struct client c;
    ASSERT_EQ(cl_connect(&c, f->port), 0);
    ASSERT_EQ(cl_sends(&c, "GET /stream?67108864 HTTP/1.1\r\n\r\n"), 0);
    fx_wait(f, stream_waits_for_the_client, NULL);
    fx_stop(f); /* would hang if the producer kept the request */
    cl_close(&c);
}

TEST_MAIN()
