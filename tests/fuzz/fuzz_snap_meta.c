/* libFuzzer driver: fuzz_snap_meta_target (tests/fuzz/targets_snap.h). Build with
 * CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_snap_meta tests/fuzz/corpus/snap_meta */
#include "fuzz/targets_snap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_snap_meta_target(data, size);
    return 0;
}
