/* Deterministic fuzz smoke of the JSON reader and writer and the URL codec: the libFuzzer target
 * bodies (tests/fuzz/targets_text.h) run on the seed corpus (tests/fuzz/corpus,
 * written by tests/fuzz/make_corpus.py) and on seeded mutations of it, so
 * every CI run and the ASan build exercise the decoder. */
#include "fuzz/smoke.h"
#include "fuzz/targets_text.h"
#include "test.h"

TEST(json_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("json", fuzz_json_target), 8);
}

TEST(json_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("json", fuzz_json_target, 0x150f, 40000, &accepted, &refused);
    ASSERT_GE(accepted, 2000);
    ASSERT_GE(refused, 2000);
}

TEST(url_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("url", fuzz_url_target), 4);
}

TEST(url_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("url", fuzz_url_target, 0x0721, 40000, &accepted, &refused);
    ASSERT_GE(accepted, 2000);
    ASSERT_GE(refused, 2000);
}

TEST_MAIN()
