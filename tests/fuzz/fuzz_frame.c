/* libFuzzer driver: transport frame header + CRC check, HELLO, HELLO_ACK,
 * snapshot status bodies and "host:port" parsing (transport/frame.h). */
#include "fuzz/targets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_frame_target(data, size);
    return 0;
}
