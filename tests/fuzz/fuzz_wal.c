/* libFuzzer driver: fuzz_wal_target (tests/fuzz/targets_wal.h), WAL recovery
 * over segment files built from the input. Build with CC=clang cmake
 * -DSTCACHE_FUZZ=ON ...; run:
 *   build-fuzz/tests/fuzz/fuzz_wal tests/fuzz/corpus/wal */
#include "fuzz/targets_wal.h"
#include "util/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_trace_set_level(ST_TRACE_OFF);
    (void)fuzz_wal_target(data, size);
    return 0;
}
