/* The shared URL codec (util/url.h): percent-encoding of keys by the CLI,
 * decoding by the server (the plus-as-space flag is tested with the query
 * helpers in tests/unit/http/test_helpers.c). */
#include "test.h"

#include "stcache/errors.h"
#include "util/url.h"

/* ---- URL encoding ---- */

TEST(url_encode_keeps_unreserved_and_escapes_everything_else)
{
    char out[128];
    size_t n;
    ASSERT_EQ(st_url_encode("Az09-._~", 8, out, sizeof out, &n), 0);
    ASSERT_STREQ(out, "Az09-._~");
    ASSERT_EQ(n, 8);
    ASSERT_EQ(st_url_encode("a b/c?d=e&f%+#", 14, out, sizeof out, &n), 0);
    ASSERT_STREQ(out, "a%20b%2Fc%3Fd%3De%26f%25%2B%23");
    ASSERT_EQ(n, strlen(out));
}

TEST(url_encode_is_binary_safe)
{
    const uint8_t key[] = {0x00, 0xff, 0x80, 'x', 0x0a};
    char out[64];
    size_t n;
    ASSERT_EQ(st_url_encode(key, sizeof key, out, sizeof out, &n), 0);
    ASSERT_STREQ(out, "%00%FF%80x%0A");
    ASSERT_EQ(st_url_encoded_len(key, sizeof key), 13);
    uint8_t back[16];
    size_t m;
    ASSERT_EQ(st_url_decode(out, n, 0, back, sizeof back, &m), 0);
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
    ASSERT_EQ(st_url_encode(all, sizeof all, enc, sizeof enc, &n), 0);
    ASSERT_EQ(n, st_url_encoded_len(all, sizeof all));
    for (size_t i = 0; i < n; i++)
        ASSERT_TRUE(((enc[i] >= 'a' && enc[i] <= 'z') || (enc[i] >= 'A' && enc[i] <= 'Z') ||
                     (enc[i] >= '0' && enc[i] <= '9') || strchr("-._~", enc[i]) != NULL) ||
                    enc[i] == '%' || (enc[i] >= 'A' && enc[i] <= 'F'));
    uint8_t back[256];
    ASSERT_EQ(st_url_decode(enc, n, 0, back, sizeof back, &m), 0);
    ASSERT_EQ(m, 256);
    ASSERT_MEMEQ(back, all, 256);
}

TEST(url_encode_reports_a_too_small_buffer_without_overflowing)
{
    char out[6] = "zzzzz";
    ASSERT_EQ(st_url_encode("a/b", 3, out, 5, NULL), ST_ETOOBIG); /* needs 5 + NUL */
    ASSERT_STREQ(out, "");
    ASSERT_EQ(st_url_encode("a/b", 3, out, 6, NULL), 0);
    ASSERT_STREQ(out, "a%2Fb");
    ASSERT_EQ(st_url_encode("", 0, out, 1, NULL), 0);
    ASSERT_STREQ(out, "");
}

TEST(url_decode_rejects_bad_escapes)
{
    uint8_t out[8];
    size_t n;
    ASSERT_EQ(st_url_decode("%", 1, 0, out, sizeof out, &n), ST_EINVAL);
    ASSERT_EQ(st_url_decode("%4", 2, 0, out, sizeof out, &n), ST_EINVAL);
    ASSERT_EQ(st_url_decode("%4g", 3, 0, out, sizeof out, &n), ST_EINVAL);
    ASSERT_EQ(st_url_decode("abc", 3, 0, out, 2, &n), ST_ETOOBIG);
    ASSERT_EQ(st_url_decode("%41%62", 6, 0, out, sizeof out, &n), 0);
    ASSERT_EQ(n, 2);
    ASSERT_MEMEQ(out, "Ab", 2);
}

TEST(url_decode_plus_as_space_is_a_flag)
{
    uint8_t out[8];
    size_t n;
    ASSERT_EQ(st_url_decode("a+b", 3, 0, out, sizeof out, &n), 0);
    ASSERT_MEMEQ(out, "a+b", 3);
    ASSERT_EQ(st_url_decode("a+%2B", 5, ST_URL_PLUS_AS_SPACE, out, sizeof out, &n), 0);
    ASSERT_EQ(n, 3);
    ASSERT_MEMEQ(out, "a +", 3);
}

TEST(hostport_split_takes_names_v4_and_bracketed_v6)
{
    char host[16];
    uint16_t port = 0;
    ASSERT_EQ(st_url_hostport_split("localhost:8001", host, sizeof host, &port), 0);
    ASSERT_STREQ(host, "localhost");
    ASSERT_EQ(port, 8001);
    ASSERT_EQ(st_url_hostport_split("[::1]:65535", host, sizeof host, &port), 0);
    ASSERT_STREQ(host, "::1");
    ASSERT_EQ(port, 65535);
    const char *bad[] = {"",        "h",    "h:",     ":1",      "h:0",
                         "h:65536", "h:1x", "::1:80", "[::1]80", "a-very-long-host-name:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_EQ(st_url_hostport_split(bad[i], host, sizeof host, &port), ST_EINVAL);
}

TEST(hostport_split_any_takes_port_zero_for_listeners)
{
    char host[64];
    uint16_t port;
    ASSERT_EQ(st_url_hostport_split_any("10.1.2.3:7000", host, sizeof(host), &port), 0);
    ASSERT_STREQ(host, "10.1.2.3");
    ASSERT_EQ(port, 7000);
    ASSERT_EQ(st_url_hostport_split_any("[fe80::1]:65535", host, sizeof(host), &port), 0);
    ASSERT_STREQ(host, "fe80::1");
    ASSERT_EQ(port, 65535);
    ASSERT_EQ(st_url_hostport_split_any("node-3.example:0", host, sizeof(host), &port), 0);
    ASSERT_STREQ(host, "node-3.example");
    ASSERT_EQ(port, 0);
    ASSERT_EQ(st_url_hostport_split("node-3.example:0", host, sizeof(host), &port), ST_EINVAL);
    ASSERT_EQ(st_url_hostport_split_any(":80", host, sizeof(host), &port), ST_EINVAL);
    ASSERT_EQ(st_url_hostport_split_any("h:", host, sizeof(host), &port), ST_EINVAL);
    ASSERT_EQ(st_url_hostport_split_any("h:8x", host, sizeof(host), &port), ST_EINVAL);
    ASSERT_EQ(st_url_hostport_split_any("[::1]80", host, sizeof(host), &port), ST_EINVAL);
    ASSERT_EQ(st_url_hostport_split_any("[::1:80", host, sizeof(host), &port), ST_EINVAL);
    ASSERT_EQ(st_url_hostport_split_any("h:65536", host, sizeof(host), &port), ST_EINVAL);
    ASSERT_EQ(st_url_hostport_split_any("abcdefgh:1", host, 8, &port), ST_EINVAL); /* too long */
}

TEST_MAIN()
