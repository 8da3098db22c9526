/* Deterministic fuzz smoke of the snapshot meta decoder: the libFuzzer target
 * bodies (tests/fuzz/targets_snap.h) run on the seed corpus (tests/fuzz/corpus,
 * written by tests/fuzz/make_corpus.py) and on seeded mutations of it, so
 * every CI run and the ASan build exercise the decoder. */
#include "fuzz/smoke.h"
#include "fuzz/targets_snap.h"
#include "test.h"

TEST(snap_meta_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("snap_meta", fuzz_snap_meta_target), 3);
}

TEST(snap_meta_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("snap_meta", fuzz_snap_meta_target, 0x3e7a, 20000, &accepted, &refused);
    fprintf(stderr, "  %d accepted, %d refused\n", accepted, refused);
    ASSERT_GE(accepted, 200);
    ASSERT_GE(refused, 1000);
}

TEST_MAIN()
