/* A minimal test harness: TEST() functions registered at load time, ASSERT_*
 * macros that report the failing expression and values, and a closing line
 * "N passed, N failed". A failing assertion ends that test only. */
#ifndef ST_TEST_H
#define ST_TEST_H

#include <inttypes.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*st_test_fn)(void);
struct st_test_case {
    const char *name;
    st_test_fn fn;
};
#define ST_TESTS_MAX 512
extern struct st_test_case st_tests[ST_TESTS_MAX];
extern int st_tests_n;
extern jmp_buf st_test_jmp;
extern int st_test_failed;

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void register_##name(void)                                 \
    {                                                                                              \
        if (st_tests_n < ST_TESTS_MAX)                                                             \
            st_tests[st_tests_n++] = (struct st_test_case){#name, test_##name};                    \
    }                                                                                              \
    static void test_##name(void)

#define ST_TEST_FAIL_(...)                                                                         \
    do {                                                                                           \
        fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);                                     \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        st_test_failed = 1;                                                                        \
        longjmp(st_test_jmp, 1);                                                                   \
    } while (0)

#define ASSERT_TRUE(e)                                                                             \
    do {                                                                                           \
        if (!(e)) ST_TEST_FAIL_("expected true: %s", #e);                                          \
    } while (0)
#define ASSERT_FALSE(e) ASSERT_TRUE(!(e))
#define ASSERT_EQ(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) ST_TEST_FAIL_("%s == %s (%lld != %lld)", #a, #b, a_, b_);                    \
    } while (0)
#define ASSERT_NE(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ == b_) ST_TEST_FAIL_("%s != %s (both %lld)", #a, #b, a_);                           \
    } while (0)
#define ASSERT_GE(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (!(a_ >= b_)) ST_TEST_FAIL_("%s >= %s (%lld < %lld)", #a, #b, a_, b_);                  \
    } while (0)
#define ASSERT_LE(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (!(a_ <= b_)) ST_TEST_FAIL_("%s <= %s (%lld > %lld)", #a, #b, a_, b_);                  \
    } while (0)
#define ASSERT_STREQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            ST_TEST_FAIL_("%s == %s (\"%s\" != \"%s\")", #a, #b, a_ ? a_ : "(null)",               \
                          b_ ? b_ : "(null)");                                                     \
    } while (0)
#define ASSERT_MEMEQ(a, b, n)                                                                      \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0)                                                            \
            ST_TEST_FAIL_("memory differs: %s vs %s (%zu bytes)", #a, #b, (size_t)(n));            \
    } while (0)

/* Define once per test executable: provides main(). Run with a test name
 * (or prefix) as argument to run a subset. */
#define TEST_MAIN()                                                                                \
    struct st_test_case st_tests[ST_TESTS_MAX];                                                    \
    int st_tests_n;                                                                                \
    jmp_buf st_test_jmp;                                                                           \
    int st_test_failed;                                                                            \
    static int st_run_one(int i)                                                                   \
    {                                                                                              \
        st_test_failed = 0;                                                                        \
        fprintf(stderr, "[ RUN ] %s\n", st_tests[i].name);                                         \
        if (setjmp(st_test_jmp) == 0) st_tests[i].fn();                                            \
        fprintf(stderr, "[%s] %s\n", st_test_failed ? "FAIL " : "  OK ", st_tests[i].name);        \
        return st_test_failed;                                                                     \
    }                                                                                              \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        int passed = 0, failed = 0;                                                                \
        for (int i = 0; i < st_tests_n; i++) {                                                     \
            if (argc > 1 && strncmp(st_tests[i].name, argv[1], strlen(argv[1])) != 0) continue;    \
            if (st_run_one(i))                                                                     \
                failed++;                                                                          \
            else                                                                                   \
                passed++;                                                                          \
        }                                                                                          \
        printf("%d passed, %d failed\n", passed, failed);                                          \
        return failed ? 1 : (passed ? 0 : 1);                                                      \
    }

#endif
