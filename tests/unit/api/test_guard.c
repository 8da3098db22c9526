/* The request checks against DNS rebinding and cross-site requests
 * (api/guard.h). */
#include "test.h"

#include "api/guard.h"

#define LISTED(list, host) api_guard_host_listed(list, host, strlen(host))

TEST(host_allowlist_matches_names_with_any_port_and_exact_host_ports)
{
    const char *list = "localhost,127.0.0.1,[::1],cache.example:8443";
    ASSERT_TRUE(LISTED(list, "localhost"));
    ASSERT_TRUE(LISTED(list, "LOCALHOST:8001"));
    ASSERT_TRUE(LISTED(list, "127.0.0.1:8001"));
    ASSERT_TRUE(LISTED(list, "[::1]:8001"));
    ASSERT_TRUE(LISTED(list, "cache.example:8443"));
    ASSERT_FALSE(LISTED(list, "cache.example:8001"));
    ASSERT_FALSE(LISTED(list, "cache.example"));
    ASSERT_FALSE(LISTED(list, "evil.example:8001")); /* a rebinding name */
    ASSERT_FALSE(LISTED(list, "localhost.evil.example"));
    ASSERT_FALSE(LISTED(list, "127.0.0.10"));
    ASSERT_FALSE(LISTED(list, ""));
    ASSERT_TRUE(LISTED("*", "anything:1"));
    ASSERT_FALSE(LISTED("", "localhost"));
    ASSERT_TRUE(api_guard_host_loopback("127.0.0.1:9", 11));
    ASSERT_FALSE(api_guard_host_loopback("10.0.0.1:9", 10));
}

TEST(origin_host_is_the_part_after_the_scheme)
{
    const char *h;
    size_t n;
    const char *o = "http://evil.example:8080";
    ASSERT_TRUE(api_guard_origin_host(o, strlen(o), &h, &n));
    ASSERT_EQ(n, strlen("evil.example:8080"));
    ASSERT_EQ(memcmp(h, "evil.example:8080", n), 0);
    o = "https://[::1]:8001/";
    ASSERT_TRUE(api_guard_origin_host(o, strlen(o), &h, &n));
    ASSERT_EQ(n, strlen("[::1]:8001"));
    ASSERT_FALSE(api_guard_origin_host("null", 4, &h, &n));
    ASSERT_FALSE(api_guard_origin_host("http://", 7, &h, &n));
    ASSERT_FALSE(api_guard_origin_host("", 0, &h, &n));
}

TEST(state_changing_requests_need_json_or_octet_stream)
{
    const char *ok[] = {"application/json", "Application/JSON; charset=utf-8",
                        "application/octet-stream", "application/json ;x=y"};
    const char *bad[] = {"text/plain",
                         "application/x-www-form-urlencoded",
                         "multipart/form-data",
                         "application/jsonx",
                         "",
                         "application/json-seq"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        ASSERT_TRUE(api_guard_content_type_ok(ok[i], strlen(ok[i])));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ASSERT_FALSE(api_guard_content_type_ok(bad[i], strlen(bad[i])));
    ASSERT_FALSE(api_guard_content_type_ok(NULL, 0));
}

TEST_MAIN()
