/* Deterministic fuzz smoke of the transaction decoders: the libFuzzer
 * target bodies (tests/fuzz/targets_txn.h) on the seed corpora
 * (tests/fuzz/corpus/txn_json, kv_cmd; tests/fuzz/make_corpus.py) and on
 * seeded mutations of them, so every CI run and the ASan build exercise the
 * POST /txn parser and the TXN command decoder and apply. */
#include "fuzz/smoke.h"
#include "fuzz/targets_txn.h"
#include "test.h"

TEST(txn_json_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("txn_json", fuzz_txn_json_target), 8);
}

TEST(txn_json_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("txn_json", fuzz_txn_json_target, 0x7a1, 3000, &accepted, &refused);
    fprintf(stderr, "  %d accepted, %d refused\n", accepted, refused);
    ASSERT_GE(accepted, 50);
    ASSERT_GE(refused, 500);
}

TEST(kv_cmd_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("kv_cmd", fuzz_kv_cmd_target), 6);
}

TEST(kv_cmd_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("kv_cmd", fuzz_kv_cmd_target, 0x7a2, 3000, &accepted, &refused);
    fprintf(stderr, "  %d accepted, %d refused\n", accepted, refused);
    ASSERT_GE(accepted, 30);
    ASSERT_GE(refused, 500);
}

TEST_MAIN()
