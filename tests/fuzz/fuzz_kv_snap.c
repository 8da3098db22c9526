/* libFuzzer driver: fuzz_kv_snap_target (tests/fuzz/targets_snap.h). Build with
 * CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_kv_snap tests/fuzz/corpus/kv_snap */
#include "fuzz/targets_snap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_kv_snap_target(data, size);
    return 0;
}
