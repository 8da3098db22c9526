/* HTTP helpers without sockets: percent-decoding, query parsing, the JSON
 * writer's escaping and structure checks, status texts. */
#include "test.h"

#include "http/server.h"
#include "util/json.h"
#include "util/url.h"
#include "stcache/errors.h"

TEST(url_decode_is_binary_safe)
{
    uint8_t out[64];
    size_t n = 0;
    ASSERT_EQ(st_url_decode("a%00b%2Fc%ff%FF", 15, 0, out, sizeof(out), &n), 0);
    ASSERT_EQ(n, 7);
    const uint8_t want[] = {'a', 0, 'b', '/', 'c', 0xff, 0xff};
    ASSERT_MEMEQ(out, want, 7);
}

TEST(url_decode_plus_is_space_only_in_queries)
{
    uint8_t out[16];
    size_t n = 0;
    ASSERT_EQ(st_url_decode("a+b", 3, ST_URL_PLUS_AS_SPACE, out, sizeof(out), &n), 0);
    ASSERT_MEMEQ(out, "a b", 3);
    ASSERT_EQ(st_url_decode("a+b", 3, 0, out, sizeof(out), &n), 0);
    ASSERT_MEMEQ(out, "a+b", 3);
}

TEST(url_decode_rejects_malformed_escapes)
{
    uint8_t out[16];
    size_t n = 0;
    ASSERT_EQ(st_url_decode("%", 1, 0, out, sizeof(out), &n), ST_EINVAL);
    ASSERT_EQ(st_url_decode("a%4", 3, 0, out, sizeof(out), &n), ST_EINVAL);
    ASSERT_EQ(st_url_decode("%zz", 3, 0, out, sizeof(out), &n), ST_EINVAL);
    ASSERT_EQ(st_url_decode("%4g", 3, 0, out, sizeof(out), &n), ST_EINVAL);
    /* A '%' just before the end of a longer buffer is still checked
     * against the given length, not past it. */
    ASSERT_EQ(st_url_decode("ab%41", 4, 0, out, sizeof(out), &n), ST_EINVAL);
    ASSERT_EQ(st_url_decode("", 0, 0, out, sizeof(out), &n), 0);
    ASSERT_EQ(n, 0);
}

TEST(url_decode_in_place)
{
    char buf[] = "k%20e%79";
    size_t n = 0;
    ASSERT_EQ(st_url_decode(buf, strlen(buf), 0, (uint8_t *)buf, sizeof(buf), &n), 0);
    ASSERT_EQ(n, 4);
    ASSERT_MEMEQ(buf, "k ey", 4);
}

TEST(query_iteration_and_lookup)
{
    const char *q = "a=1&&b=&c&d%3D=x%20y&a=2";
    size_t cur = 0, nl, vl;
    const char *n, *v;
    ASSERT_EQ(http_query_next(q, strlen(q), &cur, &n, &nl, &v, &vl), 1);
    ASSERT_EQ(nl, 1);
    ASSERT_EQ(vl, 1);
    ASSERT_EQ(*v, '1');
    ASSERT_EQ(http_query_next(q, strlen(q), &cur, &n, &nl, &v, &vl), 1);
    ASSERT_EQ(*n, 'b');
    ASSERT_EQ(vl, 0);
    ASSERT_EQ(http_query_next(q, strlen(q), &cur, &n, &nl, &v, &vl), 1);
    ASSERT_EQ(*n, 'c');
    ASSERT_EQ(nl, 1);
    ASSERT_EQ(vl, 0);
    ASSERT_EQ(http_query_next(q, strlen(q), &cur, &n, &nl, &v, &vl), 1);
    ASSERT_EQ(nl, 4);
    ASSERT_EQ(http_query_next(q, strlen(q), &cur, &n, &nl, &v, &vl), 1);
    ASSERT_EQ(*v, '2');
    ASSERT_EQ(http_query_next(q, strlen(q), &cur, &n, &nl, &v, &vl), 0);
    /* lookup compares decoded names; the first match wins */
    ASSERT_EQ(http_query_get(q, strlen(q), "d=", &v, &vl), 1);
    ASSERT_EQ(vl, 5);
    ASSERT_MEMEQ(v, "x%20y", 5);
    ASSERT_EQ(http_query_get(q, strlen(q), "a", &v, &vl), 1);
    ASSERT_EQ(*v, '1');
    ASSERT_EQ(http_query_get(q, strlen(q), "zz", &v, &vl), 0);
    ASSERT_EQ(http_query_get(NULL, 0, "a", &v, &vl), 0);
}

static const char *json_of(struct st_membuf *b, struct st_json *w)
{
    ASSERT_EQ(st_json_finish(w), 0);
    return b->data;
}

TEST(json_writer_builds_nested_documents_with_commas)
{
    struct st_membuf b;
    st_membuf_init(&b);
    struct st_json w;
    st_json_init(&w, &b);
    st_json_object_begin(&w);
    st_json_key(&w, "a");
    st_json_uint(&w, 18446744073709551615ULL);
    st_json_key(&w, "b");
    st_json_array_begin(&w);
    st_json_int(&w, -5);
    st_json_bool(&w, 1);
    st_json_null(&w);
    st_json_object_begin(&w);
    st_json_object_end(&w);
    st_json_array_begin(&w);
    st_json_array_end(&w);
    st_json_array_end(&w);
    st_json_key(&w, "c");
    st_json_cstr(&w, "x");
    st_json_object_end(&w);
    ASSERT_STREQ(json_of(&b, &w),
                 "{\"a\":18446744073709551615,\"b\":[-5,true,null,{},[]],\"c\":\"x\"}");
    st_membuf_free(&b);
}

TEST(json_strings_escape_quotes_controls_and_invalid_utf8)
{
    struct st_membuf b;
    st_membuf_init(&b);
    struct st_json w;
    st_json_init(&w, &b);
    const char s[] = "q\"b\\s/\n\r\t\b\f\x01\x1f\x7f"
                     "\xc3\xa9"
                     "\xe2\x82\xac"
                     "\xf0\x9f\x98\x80"
                     "\xff"
                     "\xc3"
                     "\xc0\xaf"
                     "\xed\xa0\x80";
    st_json_string(&w, s, sizeof(s) - 1);
    ASSERT_STREQ(json_of(&b, &w),
                 "\"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\xc3\xa9\xe2\x82\xac"
                 "\xf0\x9f\x98\x80\\u00ff\\u00c3\\u00c0\\u00af\\u00ed\\u00a0\\u0080\"");
    st_membuf_reset(&b);
    st_json_init(&w, &b);
    const char zero[] = {'a', 0, 'b'};
    st_json_string(&w, zero, 3);
    ASSERT_STREQ(json_of(&b, &w), "\"a\\u0000b\"");
    st_membuf_free(&b);
}

TEST(json_writer_reports_misuse)
{
    struct st_membuf b;
    st_membuf_init(&b);
    struct st_json w;
    st_json_init(&w, &b);
    st_json_object_begin(&w);
    ASSERT_EQ(st_json_finish(&w), ST_EINVAL); /* unclosed */
    st_json_key(&w, "k");
    st_json_object_end(&w); /* key without value */
    ASSERT_EQ(st_json_finish(&w), ST_EINVAL);
    st_membuf_reset(&b);
    st_json_init(&w, &b);
    for (int i = 0; i < ST_JSON_DEPTH_MAX + 1; i++)
        st_json_array_begin(&w);
    ASSERT_EQ(st_json_finish(&w), ST_EINVAL);
    st_membuf_reset(&b);
    st_json_init(&w, &b);
    st_json_array_end(&w);
    ASSERT_EQ(st_json_finish(&w), ST_EINVAL);
    st_membuf_free(&b);
}

TEST(status_texts)
{
    ASSERT_STREQ(http_status_text(200), "OK");
    ASSERT_STREQ(http_status_text(412), "Precondition Failed");
    ASSERT_STREQ(http_status_text(431), "Request Header Fields Too Large");
    ASSERT_STREQ(http_status_text(299), "Unknown");
}

TEST_MAIN()
