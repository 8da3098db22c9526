/* libFuzzer driver: fuzz_guard_target (tests/fuzz/targets_guard.h). Build with
 * CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_guard tests/fuzz/corpus/guard */
#include "fuzz/targets_guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_guard_target(data, size);
    return 0;
}
