/* Unit tests for the pieces of the CLI client: URL encoding, endpoint lists,
 * HTTP response parsing, the JSON tokenizer.
 *
 * client.c belongs to the `stcache` executable (not to a library), so it is
 * compiled into this test directly; only its client.h functions are used. */
#include "test.h"

#include "cli/client.c"

/* ---- URL encoding ---- */

TEST(url_encode_keeps_unreserved_and_escapes_everything_else)
{
    char out[128];
    size_t n;
    ASSERT_EQ(cli_url_encode("Az09-._~", 8, out, sizeof out, &n), 0);
    ASSERT_STREQ(out, "Az09-._~");
    ASSERT_EQ(n, 8);
    ASSERT_EQ(cli_url_encode("a b/c?d=e&f%+#", 14, out, sizeof out, &n), 0);
    ASSERT_STREQ(out, "a%20b%2Fc%3Fd%3De%26f%25%2B%23");
    ASSERT_EQ(n, strlen(out));
}

TEST(url_encode_is_binary_safe)
{
    const uint8_t key[] = {0x00, 0xff, 0x80, 'x', 0x0a};
    char out[64];
    size_t n;
    ASSERT_EQ(cli_url_encode(key, sizeof key, out, sizeof out, &n), 0);
    ASSERT_STREQ(out, "%00%FF%80x%0A");
    ASSERT_EQ(cli_url_encoded_len(key, sizeof key), 13);
    uint8_t back[16];
    size_t m;
    ASSERT_EQ(cli_url_decode(out, n, back, sizeof back, &m), 0);
    ASSERT_EQ(m, sizeof key);
    ASSERT_MEMEQ(back, key, sizeof key);
}

TEST(url_encode_round_trips_every_byte_value)
{
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    char enc[256 * 3 + 1];
    size_t n, m;
    ASSERT_EQ(cli_url_encode(all, sizeof all, enc, sizeof enc, &n), 0);
    ASSERT_EQ(n, cli_url_encoded_len(all, sizeof all));
    for (size_t i = 0; i < n; i++)
        ASSERT_TRUE(url_unreserved((uint8_t)enc[i]) || enc[i] == '%' ||
                    (enc[i] >= 'A' && enc[i] <= 'F'));
    uint8_t back[256];
    ASSERT_EQ(cli_url_decode(enc, n, back, sizeof back, &m), 0);
    ASSERT_EQ(m, 256);
    ASSERT_MEMEQ(back, all, 256);
}

TEST(url_encode_reports_a_too_small_buffer_without_overflowing)
{
    char out[6] = "zzzzz";
    ASSERT_EQ(cli_url_encode("a/b", 3, out, 5, NULL), ST_ETOOBIG); /* needs 5 + NUL */
    ASSERT_STREQ(out, "");
    ASSERT_EQ(cli_url_encode("a/b", 3, out, 6, NULL), 0);
    ASSERT_STREQ(out, "a%2Fb");
    ASSERT_EQ(cli_url_encode("", 0, out, 1, NULL), 0);
    ASSERT_STREQ(out, "");
}

TEST(url_decode_rejects_bad_escapes)
{
    uint8_t out[8];
    size_t n;
    ASSERT_EQ(cli_url_decode("%", 1, out, sizeof out, &n), ST_EINVAL);
    ASSERT_EQ(cli_url_decode("%4", 2, out, sizeof out, &n), ST_EINVAL);
    ASSERT_EQ(cli_url_decode("%4g", 3, out, sizeof out, &n), ST_EINVAL);
    ASSERT_EQ(cli_url_decode("abc", 3, out, 2, &n), ST_ETOOBIG);
    ASSERT_EQ(cli_url_decode("%41%62", 6, out, sizeof out, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT_MEMEQ(out, "Ab", 2);
}

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

/* ---- JSON ---- */

TEST(json_cluster_answer_is_navigable)
{
    const char *js =
        "{\"id\":2,\"leader\":1,\"term\":7,\"role\":\"follower\",\"cluster_id\":\"ab\\\"c\","
        " \"members\":[{\"id\":1,\"raft\":\"127.0.0.1:9001\",\"http\":\"h:1\",\"voter\":true},"
        "{\"id\":2,\"raft\":\"r2\",\"http\":\"h:2\",\"voter\":false,\"extra\":{\"a\":[1,2,{}]}}],"
        "\"applied\":-3e2}";
    struct cli_json_token t[64];
    size_t n;
    ASSERT_EQ(cli_json_parse(js, strlen(js), t, 64, &n), 0);
    ASSERT_EQ(t[0].type, CLI_JSON_OBJECT);
    ASSERT_EQ(t[0].size, 7);
    int64_t v;
    long term = cli_json_get(js, t, n, 0, "term");
    ASSERT_TRUE(term > 0);
    ASSERT_EQ(cli_json_int(js, &t[term], &v), 0);
    ASSERT_EQ(v, 7);
    char s[64];
    long cid = cli_json_get(js, t, n, 0, "cluster_id");
    ASSERT_EQ(cli_json_copy(js, &t[cid], s, sizeof s), 0);
    ASSERT_STREQ(s, "ab\"c");
    long m = cli_json_get(js, t, n, 0, "members");
    ASSERT_EQ(t[m].type, CLI_JSON_ARRAY);
    ASSERT_EQ(t[m].size, 2);
    size_t second = cli_json_skip(t, n, (size_t)m + 1);
    long voter = cli_json_get(js, t, n, second, "voter");
    ASSERT_EQ(cli_json_copy(js, &t[voter], s, sizeof s), 0);
    ASSERT_STREQ(s, "false");
    /* "applied" comes after a nested subtree: skip must step over it */
    long applied = cli_json_get(js, t, n, 0, "applied");
    ASSERT_TRUE(applied > 0);
    ASSERT_EQ(cli_json_copy(js, &t[applied], s, sizeof s), 0);
    ASSERT_STREQ(s, "-3e2");
    ASSERT_EQ(cli_json_int(js, &t[applied], &v), ST_EINVAL); /* not an integer */
    ASSERT_EQ(cli_json_get(js, t, n, 0, "absent"), -1);
    ASSERT_EQ(cli_json_get(js, t, n, (size_t)m, "id"), -1); /* not an object */
}

TEST(json_unescapes_unicode_and_surrogates)
{
    const char *js = "\"a\\u00e9\\u20ac\\ud83d\\ude00\\n\"";
    struct cli_json_token t[2];
    size_t n;
    ASSERT_EQ(cli_json_parse(js, strlen(js), t, 2, &n), 0);
    ASSERT_EQ(n, 1);
    char s[32];
    ASSERT_EQ(cli_json_copy(js, &t[0], s, sizeof s), 0);
    ASSERT_STREQ(s, "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\n");
    ASSERT_EQ(cli_json_copy(js, &t[0], s, 4), ST_ETOOBIG);
    const char *lone = "\"\\udc00\"";
    ASSERT_EQ(cli_json_parse(lone, strlen(lone), t, 2, &n), 0);
    ASSERT_EQ(cli_json_copy(lone, &t[0], s, sizeof s), ST_EINVAL);
}

TEST(json_rejects_malformed_and_bounds_tokens)
{
    const char *bad[] = {"",      "{",     "{\"a\"}", "{\"a\":}", "[1,]", "{\"a\":1,}",
                         "[1 2]", "\"abc", "\"\\x\"", "01",       "-",    "1.",
                         "tru",   "{1:2}", "[1]x",    "\"\x01\"", "1e",   "\"\\u12\""};
    struct cli_json_token t[16];
    size_t n;
    for (size_t i = 0; i < ST_ARRAY_LEN(bad); i++) {
        int rc = cli_json_parse(bad[i], strlen(bad[i]), t, 16, &n);
        if (rc != ST_EINVAL) fprintf(stderr, "  accepted: '%s' (%d)\n", bad[i], rc);
        ASSERT_EQ(rc, ST_EINVAL);
    }
    ASSERT_EQ(cli_json_parse("[1,2,3]", 7, t, 3, &n), ST_ETOOBIG);
    ASSERT_EQ(cli_json_parse("[1,2,3]", 7, t, 4, &n), 0);
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    ASSERT_EQ(cli_json_parse(deep, 200, t, 16, &n), ST_ETOOBIG);
}

/* ---- output helpers ---- */

TEST(utf8_validation_decides_text_or_base64)
{
    ASSERT_TRUE(utf8_valid((const uint8_t *)"plain", 5));
    ASSERT_TRUE(utf8_valid((const uint8_t *)"\xc3\xa9\xf0\x9f\x98\x80", 6));
    ASSERT_FALSE(utf8_valid((const uint8_t *)"\xff", 1));
    ASSERT_FALSE(utf8_valid((const uint8_t *)"\xc3", 1));         /* truncated */
    ASSERT_FALSE(utf8_valid((const uint8_t *)"\xc0\x80", 2));     /* overlong */
    ASSERT_FALSE(utf8_valid((const uint8_t *)"\xed\xa0\x80", 3)); /* surrogate */
}

TEST_MAIN()
