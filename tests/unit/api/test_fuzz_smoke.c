/* Deterministic fuzz smoke of HTTP request parsing and routing: the libFuzzer
 * target body (tests/fuzz/targets_api.h: one connection's bytes to a real
 * single-node cluster's HTTP API) runs on the seed corpus
 * (tests/fuzz/corpus/http_request, written by tests/fuzz/make_corpus.py) and
 * on seeded mutations of it, so every CI run and the ASan build exercise it. */
#include "fuzz/smoke.h"
#include "fuzz/targets_api.h"
#include "test.h"
#include "util/trace.h"

static int target(const uint8_t *data, size_t size)
{
    int rc = fuzz_http_request_target(data, size);
    return rc == -1 ? 0 : rc; /* skipped inputs count as accepted */
}

TEST(http_request_corpus_has_the_expected_verdicts)
{
    st_trace_set_level(ST_TRACE_ERROR);
    ASSERT_GE(fuzz_smoke_corpus("http_request", target), 20);
}

TEST(http_request_mutations_never_crash_hang_or_answer_non_http)
{
    int accepted, refused;
    int n = getenv("ST_SANITIZED") ? 600 : 3000;
    fuzz_smoke_mutations("http_request", target, 0x4771, n, &accepted, &refused);
    fprintf(stderr, "  %d answered with success, %d with an error or nothing\n", accepted, refused);
    ASSERT_GE(accepted, n / 20);
    ASSERT_GE(refused, n / 4);
}

TEST_MAIN()
