/* The one HTTP response parser (http/response.h), used by the node's client
 * and the CLI: lengths, chunked bodies decoded in place, EOF-delimited
 * bodies, malformed and oversized answers. */
#include "test.h"

#include "http/response.h"
#include "stcache/errors.h"
#include "util/assert.h"

#define BODY_MAX ((size_t)1 << 20)

/* ---- response parsing ---- */

/* Parses text (copied to a writable buffer) and returns the result code. */
static int parse_text(const char *text, bool eof, struct http_response *r, char *buf, size_t cap)
{
    size_t len = strlen(text);
    ST_ASSERT(len < cap);
    memcpy(buf, text, len + 1);
    return http_response_parse(buf, len, eof, BODY_MAX, r);
}

TEST(response_with_content_length_and_etag)
{
    char buf[512];
    struct http_response r;
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
    struct http_response r;
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(buf, text, cut);
        ASSERT_EQ(http_response_parse(buf, cut, false, BODY_MAX, &r), 0);
        ASSERT_FALSE(r.complete);
        /* the peer closing at this point is a truncated response */
        ASSERT_EQ(http_response_parse(buf, cut, true, BODY_MAX, &r), ST_EPROTO);
    }
    memcpy(buf, text, len);
    ASSERT_EQ(http_response_parse(buf, len, false, BODY_MAX, &r), 0);
    ASSERT_TRUE(r.complete);
    ASSERT_EQ(r.status, 404);
    ASSERT_TRUE(r.json);
    ASSERT_EQ(r.body_len, 39);
}

TEST(response_chunked_body_is_decoded_in_place)
{
    char buf[512];
    struct http_response r;
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
        ASSERT_EQ(http_response_parse(buf, cut, false, BODY_MAX, &r), 0);
        ASSERT_FALSE(r.complete);
    }
}

TEST(response_without_length_ends_at_eof)
{
    char buf[256];
    struct http_response r;
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
    struct http_response r;
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
    size_t cap = HTTP_RESPONSE_HEAD_BYTES_MAX + 64;
    char *buf = malloc(cap);
    ASSERT_TRUE(buf != NULL);
    memcpy(buf, "HTTP/1.1 200 OK\r\nX: ", 21);
    memset(buf + 21, 'a', cap - 21);
    struct http_response r;
    int rc = http_response_parse(buf, cap, false, BODY_MAX, &r);
    free(buf);
    ASSERT_EQ(rc, ST_ETOOBIG);
}

TEST(response_body_is_bounded)
{
    char buf[256];
    struct http_response r;
    const char *text = "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\nabc";
    ASSERT_EQ(parse_text(text, false, &r, buf, sizeof buf), ST_ETOOBIG);
    const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
    size_t len = strlen(chunked);
    memcpy(buf, chunked, len + 1);
    ASSERT_EQ(http_response_parse(buf, len, false, 6, &r), ST_ETOOBIG);
    ASSERT_EQ(http_response_parse(buf, len, false, 8, &r), 0);
    ASSERT_TRUE(r.complete);
    ASSERT_MEMEQ(r.body, "abcdefgh", 8);
}

TEST(response_head_excludes_the_blank_line_and_later_bytes_are_ignored)
{
    char buf[256];
    struct http_response r;
    const char *text = "HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200";
    ASSERT_EQ(parse_text(text, false, &r, buf, sizeof buf), 0);
    ASSERT_TRUE(r.complete);
    ASSERT_EQ(r.status, 201);
    ASSERT_EQ(r.head_len, strlen("HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 2"));
    ASSERT_MEMEQ(r.head, "HTTP/1.1 201", 12);
    ASSERT_EQ(r.body_len, 2);
    ASSERT_MEMEQ(r.body, "ok", 2);
}

TEST_MAIN()
