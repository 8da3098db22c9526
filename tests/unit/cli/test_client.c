/* Unit tests for the pieces of the CLI client: endpoint lists. (The URL
 * codec and the JSON reader it uses are tested in tests/unit/util, the HTTP
 * response parser in tests/unit/http/test_response.c.)
 *
 * endpoints.c belongs to the `stcache` executable (not to a library), so it is
 * compiled into this test directly; only its client.h functions are used. */
#include "test.h"

#include "cli/endpoints.c"
#include "util/assert.h"

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

TEST(endpoints_parse_marks_https_endpoints)
{
    struct cli_endpoint eps[3];
    size_t n;
    ASSERT_EQ(cli_endpoints_parse("https://h1:8001,HTTPS://[::1]:8002/,http://h3:8003", eps, 3, &n),
              0);
    ASSERT_EQ(n, 3);
    ASSERT_TRUE(eps[0].https);
    ASSERT_STREQ(eps[0].host, "h1");
    ASSERT_TRUE(eps[1].https);
    ASSERT_STREQ(eps[1].host, "::1");
    ASSERT_EQ(eps[1].port, 8002);
    ASSERT_FALSE(eps[2].https);
    ASSERT_TRUE(eps[0].tls == NULL); /* the context is the CLI's to set */
    ASSERT_EQ(cli_endpoints_parse("https://:1", eps, 3, &n), ST_EINVAL);
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

TEST_MAIN()
