/* The Redis protocol request parser (resp/parse.h): the forms Redis 7
 * accepts, its error texts, the bounds, incremental input; and the fuzz
 * target's corpus and seeded mutations (tests/fuzz/targets_resp.h). */
#include "test.h"

#include "fuzz/smoke.h"
#include "fuzz/targets_resp.h"
#include "resp/parse.h"

static struct resp_limits lim = {8, 16, 64};
static struct resp_arg av[8];
static char err[RESP_ERR_BYTES_MAX];

static enum resp_parse_status parse_str(char *s, uint32_t *argc, size_t *used)
{
    return resp_parse((uint8_t *)s, strlen(s), &lim, av, argc, used, err);
}

static int arg_eq(int i, const char *s)
{
    return av[i].len == strlen(s) && memcmp(av[i].p, s, av[i].len) == 0;
}

TEST(multibulk_command_yields_spans_into_the_buffer)
{
    char in[] = "*2\r\n$3\r\nGET\r\n$0\r\n\r\n*1\r\n$4\r\nPING\r\n";
    uint32_t argc;
    size_t used;
    ASSERT_EQ(parse_str(in, &argc, &used), RESP_PARSE_COMMAND);
    ASSERT_EQ(argc, 2);
    ASSERT_TRUE(arg_eq(0, "GET"));
    ASSERT_EQ(av[1].len, 0);
    ASSERT_EQ(used, 19);
    ASSERT_TRUE(av[0].p == (const uint8_t *)in + 8);
    ASSERT_EQ(parse_str(in + used, &argc, &used), RESP_PARSE_COMMAND);
    ASSERT_TRUE(arg_eq(0, "PING"));
}

TEST(every_prefix_of_a_command_asks_for_more)
{
    const char *full = "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
    char buf[64];
    for (size_t n = 0; n < strlen(full); n++) {
        memcpy(buf, full, n);
        uint32_t argc;
        size_t used;
        ASSERT_EQ(resp_parse((uint8_t *)buf, n, &lim, av, &argc, &used, err), RESP_PARSE_MORE);
        ASSERT_EQ(used, 0);
    }
    memcpy(buf, full, strlen(full));
    uint32_t argc;
    size_t used;
    ASSERT_EQ(resp_parse((uint8_t *)buf, strlen(full), &lim, av, &argc, &used, err),
              RESP_PARSE_COMMAND);
    ASSERT_TRUE(arg_eq(2, "hello"));
}

TEST(inline_commands_split_like_redis_sdssplitargs)
{
    char in[] = "  SET \"a b\\x41\\n\" 'it\\'s' x\"y z\" \r\n";
    uint32_t argc;
    size_t used;
    ASSERT_EQ(parse_str(in, &argc, &used), RESP_PARSE_COMMAND);
    ASSERT_EQ(argc, 4);
    ASSERT_TRUE(arg_eq(0, "SET"));
    ASSERT_TRUE(arg_eq(1, "a bA\n"));
    ASSERT_TRUE(arg_eq(2, "it's"));
    ASSERT_TRUE(arg_eq(3, "xy z"));
    ASSERT_EQ(used, strlen("  SET \"a b\\x41\\n\" 'it\\'s' x\"y z\" \r\n"));
    char lf[] = "PING\n";
    ASSERT_EQ(parse_str(lf, &argc, &used), RESP_PARSE_COMMAND);
    ASSERT_EQ(argc, 1);
    ASSERT_EQ(used, 5);
}

TEST(empty_commands_are_consumed_and_skipped)
{
    uint32_t argc;
    size_t used;
    char a[] = "*0\r\nPING\r\n";
    ASSERT_EQ(parse_str(a, &argc, &used), RESP_PARSE_MORE);
    ASSERT_EQ(used, 4);
    char b[] = "*-1\r\n";
    ASSERT_EQ(parse_str(b, &argc, &used), RESP_PARSE_MORE);
    ASSERT_EQ(used, 5);
    char c[] = "   \r\n";
    ASSERT_EQ(parse_str(c, &argc, &used), RESP_PARSE_MORE);
    ASSERT_EQ(used, 5);
}

static void expect_error(const char *in, const char *text)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", in);
    uint32_t argc;
    size_t used;
    ASSERT_EQ(parse_str(buf, &argc, &used), RESP_PARSE_ERROR);
    ASSERT_STREQ(err, text);
}

TEST(protocol_errors_have_redis_texts)
{
    expect_error("*x\r\n", "Protocol error: invalid multibulk length");
    expect_error("*9\r\n", "Protocol error: invalid multibulk length"); /* over args_max */
    expect_error("*01\r\n", "Protocol error: invalid multibulk length");
    expect_error("*1\r\nPING\r\n", "Protocol error: expected '$', got 'P'");
    expect_error("*1\r\n$-1\r\n", "Protocol error: invalid bulk length");
    expect_error("*1\r\n$17\r\n", "Protocol error: invalid bulk length"); /* over bulk_bytes_max */
    expect_error("*1\r\n$+1\r\n", "Protocol error: invalid bulk length");
    expect_error("SET \"abc\r\n", "Protocol error: unbalanced quotes in request");
    expect_error("SET \"a\"b\r\n", "Protocol error: unbalanced quotes in request");
    expect_error("SET 'a\r\n", "Protocol error: unbalanced quotes in request");
    expect_error("a b c d e f g h i\r\n", "Protocol error: too many arguments in inline request");
}

TEST(lines_over_the_inline_bound_without_newline_are_refused)
{
    char buf[200];
    memset(buf, 'a', sizeof buf);
    uint32_t argc;
    size_t used;
    ASSERT_EQ(resp_parse((uint8_t *)buf, 64, &lim, av, &argc, &used, err), RESP_PARSE_MORE);
    ASSERT_EQ(resp_parse((uint8_t *)buf, 65, &lim, av, &argc, &used, err), RESP_PARSE_ERROR);
    ASSERT_STREQ(err, "Protocol error: too big inline request");
    buf[0] = '*';
    ASSERT_EQ(resp_parse((uint8_t *)buf, 100, &lim, av, &argc, &used, err), RESP_PARSE_ERROR);
    ASSERT_STREQ(err, "Protocol error: too big mbulk count string");
    memcpy(buf, "*1\r\n$", 5);
    ASSERT_EQ(resp_parse((uint8_t *)buf, 100, &lim, av, &argc, &used, err), RESP_PARSE_ERROR);
    ASSERT_STREQ(err, "Protocol error: too big bulk count string");
}

TEST(integers_parse_like_redis_string2ll)
{
    long long v;
    ASSERT_TRUE(resp_parse_ll((const uint8_t *)"-9223372036854775808", 20, &v));
    ASSERT_TRUE(v == INT64_MIN);
    ASSERT_TRUE(resp_parse_ll((const uint8_t *)"9223372036854775807", 19, &v));
    ASSERT_FALSE(resp_parse_ll((const uint8_t *)"9223372036854775808", 19, &v));
    ASSERT_FALSE(resp_parse_ll((const uint8_t *)"-0", 2, &v));
    ASSERT_FALSE(resp_parse_ll((const uint8_t *)"+1", 2, &v));
    ASSERT_FALSE(resp_parse_ll((const uint8_t *)" 1", 2, &v));
    ASSERT_FALSE(resp_parse_ll((const uint8_t *)"", 0, &v));
    ASSERT_TRUE(resp_parse_ll((const uint8_t *)"0", 1, &v) && v == 0);
}

TEST(resp_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("resp", fuzz_resp_target), 10);
}

TEST(resp_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("resp", fuzz_resp_target, 0x6379, 40000, &accepted, &refused);
    ASSERT_GE(accepted, 2000);
    ASSERT_GE(refused, 2000);
}

TEST_MAIN()
