/* Pub/sub's pure parts (resp/cmd_pubsub.c): notify-keyspace-events letters
 * parsed and shown as Redis 7.0 does (CONFIG GET values taken from a real
 * redis-server 7.0.15), and the push header in RESP2 and RESP3. */
#include "test.h"

#include "resp/resp_int.h"
#include "stcache/errors.h"

static const char *fmt(const char *in)
{
    static char out[32];
    uint32_t f = 0;
    if (resp_notify_flags_parse(in, strlen(in), &f) != 0) return "(invalid)";
    resp_notify_flags_format(f, out, sizeof out);
    return out;
}

TEST(notify_flags_show_as_redis_shows_them)
{
    ASSERT_STREQ(fmt(""), "");
    ASSERT_STREQ(fmt("KEA"), "AKE");
    ASSERT_STREQ(fmt("KEAn"), "AKE"); /* Redis drops n under A too */
    ASSERT_STREQ(fmt("Kg$xen"), "g$xenK");
    ASSERT_STREQ(fmt("KEm"), "KEm");
    ASSERT_STREQ(fmt("Kz"), "zK");
    ASSERT_STREQ(fmt("Eg$lshzxetd"), "AE");
    ASSERT_STREQ(fmt("xKx"), "xK");
}

TEST(notify_flags_refuse_unknown_letters)
{
    uint32_t f = 7;
    ASSERT_EQ(resp_notify_flags_parse("q", 1, &f), ST_EINVAL);
    ASSERT_EQ(resp_notify_flags_parse("KEa", 3, &f), ST_EINVAL);
    ASSERT_EQ(resp_notify_flags_parse("K E", 3, &f), ST_EINVAL);
    ASSERT_EQ(f, 7u); /* untouched on error */
}

TEST(push_is_an_array_in_resp2_and_a_push_in_resp3)
{
    struct st_membuf b;
    st_membuf_init(&b);
    struct resp_out o = {&b, 2};
    resp_reply_push(&o, 3);
    o.proto = 3;
    resp_reply_push(&o, 4);
    ASSERT_TRUE(b.len == 8 && memcmp(b.data, "*3\r\n>4\r\n", 8) == 0);
    st_membuf_free(&b);
}

TEST_MAIN()
