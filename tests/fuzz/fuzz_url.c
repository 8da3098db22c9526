/* libFuzzer driver: fuzz_url_target (tests/fuzz/targets_text.h). Build with
 * CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_url tests/fuzz/corpus/url */
#include "fuzz/targets_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_url_target(data, size);
    return 0;
}
