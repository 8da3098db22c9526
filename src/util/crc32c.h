/* CRC32C (Castagnoli), the checksum of every WAL record, snapshot and frame.
 * Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at
 * run time), a table-driven fallback otherwise. Both give identical results. */
#ifndef ST_UTIL_CRC32C_H
#define ST_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends `crc` (start with 0) over `len` bytes. st_crc32c(st_crc32c(0,a),b) == crc of a||b. */
uint32_t st_crc32c(uint32_t crc, const void *data, size_t len);

/* The software path, exposed so tests can compare both implementations. */
uint32_t st_crc32c_sw(uint32_t crc, const void *data, size_t len);

#endif
