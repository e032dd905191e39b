// CRC32C (Castagnoli), the checksum of every page, segment header and superblock.
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise. Thread-safe.
#ifndef TMEM_COMMON_CRC32C_H_
#define TMEM_COMMON_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace tmem::crc32c {

// Extends `crc` (the CRC32C of some prefix) over `data[0, n)`. Extend(0, d, n) == Value(d, n).
uint32_t Extend(uint32_t crc, const void* data, size_t n);

inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

// True when the hardware path is in use (reported in benchmark output).
bool HardwareAccelerated();

namespace internal {
// The table-driven path, exposed so that tests check it against the hardware path.
uint32_t ExtendPortable(uint32_t crc, const void* data, size_t n);
}  // namespace internal

}  // namespace tmem::crc32c

#endif  // TMEM_COMMON_CRC32C_H_
