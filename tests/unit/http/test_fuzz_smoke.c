/* Deterministic fuzz smoke of the HTTP response parser: the libFuzzer target
 * bodies (tests/fuzz/targets_text.h) run on the seed corpus (tests/fuzz/corpus,
 * written by tests/fuzz/make_corpus.py) and on seeded mutations of it, so
 * every CI run and the ASan build exercise the decoder. */
#include "fuzz/smoke.h"
#include "fuzz/targets_text.h"
#include "test.h"

TEST(response_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("http_response", fuzz_http_response_target), 6);
}

TEST(response_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("http_response", fuzz_http_response_target, 0x4770, 20000, &accepted,
                         &refused);
    ASSERT_GE(accepted, 1000);
    ASSERT_GE(refused, 1000);
}

TEST_MAIN()
