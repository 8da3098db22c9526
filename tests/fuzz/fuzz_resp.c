/* libFuzzer driver: fuzz_resp_target (tests/fuzz/targets_resp.h), the Redis
 * protocol request parser. Build with CC=clang cmake -DSTCACHE_FUZZ=ON ...;
 * run:
 *   build-fuzz/tests/fuzz/fuzz_resp tests/fuzz/corpus/resp */
#include "fuzz/targets_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_resp_target(data, size);
    return 0;
}
