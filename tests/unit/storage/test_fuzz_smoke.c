/* Deterministic fuzz smoke of the snapshot meta decoder: the libFuzzer target
 * bodies (tests/fuzz/targets_snap.h) run on the seed corpus (tests/fuzz/corpus,
 * written by tests/fuzz/make_corpus.py) and on seeded mutations of it, so
 * every CI run and the ASan build exercise the decoder. */
#include "fuzz/smoke.h"
#include "fuzz/targets_snap.h"
#include "fuzz/targets_wal.h"
#include "test.h"
#include "util/trace.h"

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

TEST(wal_corpus_has_the_expected_verdicts)
{
    st_trace_set_level(ST_TRACE_OFF); /* each refused seed is traced */
    ASSERT_GE(fuzz_smoke_corpus("wal", fuzz_wal_target), 7);
}

TEST(wal_recovery_mutations_never_crash_and_reach_both_verdicts)
{
    int accepted, refused;
    fuzz_smoke_mutations("wal", fuzz_wal_target, 0x5a17, 4000, &accepted, &refused);
    fprintf(stderr, "  %d opened, %d refused\n", accepted, refused);
    ASSERT_GE(accepted, 100);
    ASSERT_GE(refused, 100);
}

/* Found by fuzz_wal: an entries record (CRCs valid) whose count exceeds what
 * its payload can hold sized the in-memory index from the count first, and
 * asked for about 190 GB (ST_ENOMEM, or an ASan abort) instead of reporting
 * the record as malformed. */
TEST(wal_entries_count_beyond_the_record_is_corruption_not_an_allocation)
{
    uint8_t in[64];
    size_t n = 0;
    in[n++] = 1; /* structured */
    in[n++] = ST_REC_ENTRIES;
    le_put16(in + n, 16 + 16 + 3); /* chunk length: header + one entry of 3 bytes */
    n += 2;
    le_put64(in + n, 1);               /* first index */
    le_put32(in + n + 8, 0xffffffffu); /* count */
    le_put32(in + n + 12, 0);
    n += 16;
    memset(in + n, 0, 16);
    le_put64(in + n, 1); /* term */
    le_put32(in + n + 8, 3);
    in[n + 12] = 1;
    n += 16;
    memcpy(in + n, "abc", 3);
    n += 3;
    st_trace_set_level(ST_TRACE_OFF);
    ASSERT_EQ(fuzz_wal_target(in, n), ST_ECORRUPT);
    le_put32(in + 4 + 8, 1); /* the same record with its true count opens */
    ASSERT_EQ(fuzz_wal_target(in, n), 0);
}

/* Found by fuzz_wal: a snapshot mark at index 2^64 - 1 (CRCs valid) made the
 * log's first index wrap to 0, and load sized its entry array from the
 * wrapped bounds (an 18-exabyte malloc). Indexes above 2^62 are corruption. */
TEST(wal_snapshot_mark_at_the_top_of_the_index_space_is_corruption)
{
    uint8_t in[64];
    size_t n = 0;
    in[n++] = 1; /* structured */
    in[n++] = ST_REC_ENTRIES;
    le_put16(in + n, 16 + 16 + 1);
    n += 2;
    le_put64(in + n, 1);
    le_put32(in + n + 8, 1);
    le_put32(in + n + 12, 0);
    n += 16;
    memset(in + n, 0, 16);
    le_put64(in + n, 1);
    le_put32(in + n + 8, 1);
    in[n + 12] = 1;
    n += 16;
    in[n++] = 'a';
    in[n++] = ST_REC_SNAPSHOT;
    le_put16(in + n, 16);
    n += 2;
    le_put64(in + n, UINT64_MAX);
    le_put64(in + n + 8, 1);
    n += 16;
    st_trace_set_level(ST_TRACE_OFF);
    ASSERT_EQ(fuzz_wal_target(in, n), ST_ECORRUPT);
}

TEST_MAIN()
