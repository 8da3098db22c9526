/* libFuzzer driver: fuzz_kv_cmd_target (tests/fuzz/targets_txn.h). Build with
 * CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_kv_cmd tests/fuzz/corpus/kv_cmd */
#include "fuzz/targets_txn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_kv_cmd_target(data, size);
    return 0;
}
