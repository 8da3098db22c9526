/* Deterministic fuzz smoke of the kv snapshot restore: the libFuzzer target
 * bodies (tests/fuzz/targets_snap.h) run on the seed corpus (tests/fuzz/corpus,
 * written by tests/fuzz/make_corpus.py) and on seeded mutations of it, so
 * every CI run and the ASan build exercise the decoder. */
#include "fuzz/smoke.h"
#include "fuzz/targets_snap.h"
#include "test.h"

TEST(kv_snap_corpus_has_the_expected_verdicts)
{
    ASSERT_GE(fuzz_smoke_corpus("kv_snap", fuzz_kv_snap_target), 3);
}

TEST(kv_snap_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("kv_snap", fuzz_kv_snap_target, 0x5a5, 2000, &accepted, &refused);
    fprintf(stderr, "  %d accepted, %d refused\n", accepted, refused);
    ASSERT_GE(accepted, 50);
    ASSERT_GE(refused, 500);
}

/* Found by this smoke test: a header whose CRC is right but whose key count
 * is above 2^63 made the restore presize its table with a rounding loop that
 * never ended (the node hung on a damaged or hostile snapshot). */
TEST(kv_snap_huge_key_count_is_refused_not_hung)
{
    uint8_t snap[56];
    memset(snap, 0, sizeof(snap));
    memcpy(snap, "STKVSNAP", 8);
    le_put32(snap + 8, 2);
    le_put64(snap + 16, 5);                      /* applied index */
    le_put64(snap + 24, UINT64_MAX - 3);         /* key count */
    le_put32(snap + 52, st_crc32c(0, snap, 52)); /* header CRC, no meta */
    struct kv *kv;
    ASSERT_EQ(kv_create(NULL, &kv), 0);
    struct kv_restore *r;
    ASSERT_EQ(kv_restore_begin(kv, &r), 0);
    ASSERT_EQ(kv_restore_feed(r, snap, sizeof(snap)), 0);
    ASSERT_EQ(kv_restore_finish(r, NULL), ST_ECORRUPT); /* the records are missing */
    ASSERT_EQ(kv_applied_index(kv), 0);
    kv_destroy(kv);
}

TEST_MAIN()
