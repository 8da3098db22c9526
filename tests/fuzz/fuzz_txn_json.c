/* libFuzzer driver: fuzz_txn_json_target (tests/fuzz/targets_txn.h). Build with
 * CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_txn_json tests/fuzz/corpus/txn_json */
#include "fuzz/targets_txn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_txn_json_target(data, size);
    return 0;
}
