/* Deterministic fuzz smoke of the HTTP API's request checks: the libFuzzer
 * target body (tests/fuzz/targets_guard.h) runs on the seed corpus
 * (tests/fuzz/corpus/guard, written by tests/fuzz/make_corpus.py) and on
 * seeded mutations of it. */
#include "fuzz/smoke.h"
#include "fuzz/targets_guard.h"
#include "test.h"

TEST(guard_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("guard", fuzz_guard_target), 6);
}

TEST(guard_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("guard", fuzz_guard_target, 0x6a4d, 20000, &accepted, &refused);
    ASSERT_GE(accepted, 1000);
    ASSERT_GE(refused, 1000);
}

TEST_MAIN()
