/* libFuzzer driver: fuzz_http_request_target (tests/fuzz/targets_api.h), one
 * client connection's bytes to a real node's HTTP API. Build with
 * CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_http_request tests/fuzz/corpus/http_request */
#include "fuzz/targets_api.h"
#include "util/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_trace_set_level(ST_TRACE_ERROR);
    (void)fuzz_http_request_target(data, size);
    return 0;
}
