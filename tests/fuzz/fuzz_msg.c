/* libFuzzer driver: the Raft message decoder (wire/msg.h) and the snapshot
 * meta decoder. Build: CC=clang cmake -DSTCACHE_FUZZ=ON ...; run:
 *   build/tests/fuzz/fuzz_msg tests/fuzz/corpus/msg */
#include "fuzz/targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_msg_target(data, size);
    return 0;
}
