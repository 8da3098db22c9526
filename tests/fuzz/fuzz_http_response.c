/* libFuzzer driver: fuzz_http_response_target (tests/fuzz/targets_text.h). Build with
 * CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_http_response tests/fuzz/corpus/http_response */
#include "fuzz/targets_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_http_response_target(data, size);
    return 0;
}
