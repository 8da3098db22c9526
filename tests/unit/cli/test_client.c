/* Unit tests for the pieces of the CLI client: URL encoding, endpoint lists,
 * HTTP response parsing. (The URL codec and the JSON reader they use are
 * tested in tests/unit/util.)
 *
 * client.c belongs to the `stcache` executable (not to a library), so it is
 * compiled into this test directly; only its client.h functions are used. */
#include "test.h"

#include "cli/client.c"

/* ---- endpoint lists ---- */

TEST(endpoints_parse_list_with_spaces_schemes_and_ipv6)
{
    struct cli_endpoint eps[4];
    size_t n;
    ASSERT_EQ(cli_endpoints_parse("127.0.0.1:8001, localhost:8002 ,http://[::1]:8003/", eps, 4, &n),
              0);
    ASSERT_EQ(n, 3);
    ASSERT_STREQ(eps[0].host, "127.0.0.1");
    ASSERT_EQ(eps[0].port, 8001);
    ASSERT_STREQ(eps[1].host, "localhost");
    ASSERT_EQ(eps[1].port, 8002);
    ASSERT_STREQ(eps[2].host, "::1");
    ASSERT_EQ(eps[2].port, 8003);
    ASSERT_EQ(cli_endpoints_parse("h:65535", eps, 4, &n), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(eps[0].port, 65535);
}

TEST(endpoints_parse_rejects_malformed_items)
{
    struct cli_endpoint eps[2];
    size_t n = 99;
    const char *bad[] = {"",        " ",       "host",     "host:",    ":8001", "h:0",
                         "h:65536", "h:80x",   "h:-1",     "a:1,,b:2", "a:1,",  "::1:8001",
                         "[::1]",   "[::1]80", "h:123456", "h o:1",    "[]:1"};
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
        int rc = cli_endpoints_parse(bad[i], eps, 2, &n);
        if (rc != ST_EINVAL)
            fprintf(stderr, "  accepted or misreported: \"%s\" (%d)\n", bad[i], rc);
        ASSERT_EQ(rc, ST_EINVAL);
    }
    ASSERT_EQ(n, 99); /* untouched on failure */
    ASSERT_EQ(cli_endpoints_parse(NULL, eps, 2, &n), ST_EINVAL);
}

TEST(endpoints_parse_bounds_count_and_host_length)
{
    struct cli_endpoint eps[2];
    size_t n;
    ASSERT_EQ(cli_endpoints_parse("a:1,b:2,c:3", eps, 2, &n), ST_ETOOBIG);
    char host[CLI_HOST_BYTES_MAX + 16];
    memset(host, 'h', CLI_HOST_BYTES_MAX);
    strcpy(host + CLI_HOST_BYTES_MAX, ":1");
    ASSERT_EQ(cli_endpoints_parse(host, eps, 2, &n), ST_ETOOBIG);
    strcpy(host + CLI_HOST_BYTES_MAX - 1, ":1"); /* exactly the longest allowed host */
    ASSERT_EQ(cli_endpoints_parse(host, eps, 2, &n), 0);
    ASSERT_EQ(strlen(eps[0].host), CLI_HOST_BYTES_MAX - 1);
}

/* ---- response parsing ---- */

/* Parses text (copied to a writable buffer) and returns the result code. */
static int parse_text(const char *text, bool eof, struct cli_response *r, char *buf, size_t cap)
{
    size_t len = strlen(text);
    ST_ASSERT(len < cap);
    memcpy(buf, text, len + 1);
    return cli_response_parse(buf, len, eof, r);
}

TEST(response_with_content_length_and_etag)
{
    char buf[512];
    struct cli_response r;
    const char *text = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                       "ETag: \"42\"\r\ncontent-length: 5\r\n\r\nhello";
    ASSERT_EQ(parse_text(text, false, &r, buf, sizeof buf), 0);
    ASSERT_TRUE(r.complete);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body_len, 5);
    ASSERT_MEMEQ(r.body, "hello", 5);
    ASSERT_TRUE(r.has_etag);
    ASSERT_STREQ(r.etag, "42");
    ASSERT_FALSE(r.json);
}

TEST(response_incomplete_until_every_byte_arrived)
{
    const char *text = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                       "Content-Length: 39\r\n\r\n{\"error\":\"key not found\",\"code\":\"nf\"}  ";
    size_t len = strlen(text);
    char buf[512];
    struct cli_response r;
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(buf, text, cut);
        ASSERT_EQ(cli_response_parse(buf, cut, false, &r), 0);
        ASSERT_FALSE(r.complete);
        /* the peer closing at this point is a truncated response */
        ASSERT_EQ(cli_response_parse(buf, cut, true, &r), ST_EPROTO);
    }
    memcpy(buf, text, len);
    ASSERT_EQ(cli_response_parse(buf, len, false, &r), 0);
    ASSERT_TRUE(r.complete);
    ASSERT_EQ(r.status, 404);
    ASSERT_TRUE(r.json);
    ASSERT_EQ(r.body_len, 39);
}

TEST(response_chunked_body_is_decoded_in_place)
{
    char buf[512];
    struct cli_response r;
    const char *text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n";
    ASSERT_EQ(parse_text(text, false, &r, buf, sizeof buf), 0);
    ASSERT_TRUE(r.complete);
    ASSERT_EQ(r.body_len, 16);
    ASSERT_MEMEQ(r.body, "hello 0123456789", 16);

    /* cut anywhere before the end: not complete, and not an error */
    size_t len = strlen(text);
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(buf, text, len);
        ASSERT_EQ(cli_response_parse(buf, cut, false, &r), 0);
        ASSERT_FALSE(r.complete);
    }
}

TEST(response_without_length_ends_at_eof)
{
    char buf[256];
    struct cli_response r;
    const char *text = "HTTP/1.0 200 OK\r\n\r\nbody-until-close";
    ASSERT_EQ(parse_text(text, false, &r, buf, sizeof buf), 0);
    ASSERT_FALSE(r.complete);
    ASSERT_EQ(parse_text(text, true, &r, buf, sizeof buf), 0);
    ASSERT_TRUE(r.complete);
    ASSERT_EQ(r.body_len, 16);
    /* 204 has no body whatever follows */
    ASSERT_EQ(parse_text("HTTP/1.1 204 No Content\r\n\r\n", false, &r, buf, sizeof buf), 0);
    ASSERT_TRUE(r.complete);
    ASSERT_EQ(r.body_len, 0);
}

TEST(response_malformed_is_a_protocol_error)
{
    char buf[256];
    struct cli_response r;
    const char *bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 999 What\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
        "HTTP/1.1 200 OK\r\nNoColonHere\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
    };
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
        int rc = parse_text(bad[i], false, &r, buf, sizeof buf);
        if (rc != ST_EPROTO) fprintf(stderr, "  case %zu: rc %d\n", i, rc);
        ASSERT_EQ(rc, ST_EPROTO);
    }
}

TEST(response_header_is_bounded)
{
    size_t cap = CLI_HEADER_BYTES_MAX + 64;
    char *buf = malloc(cap);
    ASSERT_TRUE(buf != NULL);
    memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", 21);
    memset(buf + 21, 'a', cap - 21);
    struct cli_response r;
    int rc = cli_response_parse(buf, cap, false, &r);
    free(buf);
    ASSERT_EQ(rc, ST_ETOOBIG);
}

TEST_MAIN()
