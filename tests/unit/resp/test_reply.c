/* The RESP reply writer (resp/reply.h): each type in RESP2 and RESP3, as
 * Redis 7 writes it. */
#include "test.h"

#include "resp/reply.h"

static struct st_membuf b;

static struct resp_out out(int proto)
{
    st_membuf_reset(&b);
    struct resp_out o = {&b, proto};
    return o;
}

#define ASSERT_OUT(expect)                                                                         \
    ASSERT_TRUE(b.len == sizeof(expect) - 1 && memcmp(b.data, expect, b.len) == 0)

TEST(scalars_are_written_as_redis_writes_them)
{
    st_membuf_init(&b);
    struct resp_out o = out(2);
    resp_reply_simple(&o, "OK");
    resp_reply_error(&o, "ERR bad\r\nthing");
    resp_reply_integer(&o, -42);
    resp_reply_bulk(&o, "a\0b", 3);
    resp_reply_bulk(&o, "", 0);
    ASSERT_OUT("+OK\r\n-ERR bad  thing\r\n:-42\r\n$3\r\na\0b\r\n$0\r\n\r\n");
    o = out(2);
    resp_reply_errorf(&o, "wrong number of arguments for '%s' command", "get");
    ASSERT_OUT("-ERR wrong number of arguments for 'get' command\r\n");
    st_membuf_free(&b);
}

TEST(resp3_types_have_their_resp2_spellings)
{
    st_membuf_init(&b);
    struct resp_out o = out(2);
    resp_reply_null(&o);
    resp_reply_null_array(&o);
    resp_reply_map(&o, 2);
    resp_reply_double(&o, 1.5);
    resp_reply_bool(&o, 1);
    resp_reply_verbatim(&o, "txt", "hi", 2);
    ASSERT_OUT("$-1\r\n*-1\r\n*4\r\n$3\r\n1.5\r\n:1\r\n$2\r\nhi\r\n");
    o = out(3);
    resp_reply_null(&o);
    resp_reply_null_array(&o);
    resp_reply_map(&o, 2);
    resp_reply_double(&o, 1.5);
    resp_reply_bool(&o, 0);
    resp_reply_verbatim(&o, "txt", "hi", 2);
    resp_reply_array(&o, 3);
    ASSERT_OUT("_\r\n_\r\n%2\r\n,1.5\r\n#f\r\n=6\r\ntxt:hi\r\n*3\r\n");
    st_membuf_free(&b);
}

TEST_MAIN()
