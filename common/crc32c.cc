#include "common/crc32c.h"

#include <cstring>
#include <utility>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace tmem::crc32c {
namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

struct Table {
  uint32_t t[8][256];
  constexpr Table() : t() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
  }
};

constexpr Table kTable;

}  // namespace

namespace internal {
uint32_t ExtendPortable(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    w ^= c;
    c = kTable.t[7][w & 0xFF] ^ kTable.t[6][(w >> 8) & 0xFF] ^ kTable.t[5][(w >> 16) & 0xFF] ^
        kTable.t[4][(w >> 24) & 0xFF] ^ kTable.t[3][(w >> 32) & 0xFF] ^ kTable.t[2][(w >> 40) & 0xFF] ^
        kTable.t[1][(w >> 48) & 0xFF] ^ kTable.t[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ kTable.t[0][(c ^ *p++) & 0xFF];
  return ~c;
}
}  // namespace internal

namespace {

#if defined(__x86_64__)
// Shifting a CRC over n zero bytes is linear over GF(2): a 32x32 bit matrix, applied here
// through four 256-entry tables (one per byte of the CRC). With it, three independent streams
// over adjacent blocks are combined: crc(A|B) = shift_len(B)(crc(A)) ^ crc(B) (raw, un-inverted
// CRCs). Three streams keep the crc32 instruction's pipeline full (latency 3, throughput 1).
struct ZeroShift {
  uint32_t t[4][256];
};

uint32_t MatrixTimes(const uint32_t* mat, uint32_t vec) {
  uint32_t sum = 0;
  for (; vec != 0; vec >>= 1, ++mat) {
    if (vec & 1) sum ^= *mat;
  }
  return sum;
}

void MatrixSquare(uint32_t* square, const uint32_t* mat) {
  for (int n = 0; n < 32; ++n) square[n] = MatrixTimes(mat, mat[n]);
}

// The operator that appends `len` zero bytes to a raw CRC (len a power of two, >= 1).
ZeroShift MakeZeroShift(size_t len) {
  uint32_t odd[32], even[32];
  odd[0] = kPoly;  // one zero bit
  for (int n = 1; n < 32; ++n) odd[n] = 1u << (n - 1);
  MatrixSquare(even, odd);  // two zero bits
  MatrixSquare(odd, even);  // four zero bits
  // Each squaring doubles the number of zero bits: after the next one, one zero byte.
  size_t bytes = 1;
  MatrixSquare(even, odd);  // eight bits = one byte, in `even`
  const uint32_t* op = even;
  uint32_t* other = odd;
  uint32_t* cur = even;
  while (bytes < len) {
    MatrixSquare(other, cur);
    std::swap(other, cur);
    bytes <<= 1;
  }
  op = cur;
  ZeroShift z;
  for (uint32_t n = 0; n < 256; ++n) {
    z.t[0][n] = MatrixTimes(op, n);
    z.t[1][n] = MatrixTimes(op, n << 8);
    z.t[2][n] = MatrixTimes(op, n << 16);
    z.t[3][n] = MatrixTimes(op, n << 24);
  }
  return z;
}

inline uint32_t Shift(const ZeroShift& z, uint32_t crc) {
  return z.t[0][crc & 0xFF] ^ z.t[1][(crc >> 8) & 0xFF] ^ z.t[2][(crc >> 16) & 0xFF] ^ z.t[3][crc >> 24];
}

constexpr size_t kLongBlock = 8192;  // streams of this length for large buffers
constexpr size_t kShortBlock = 256;  // and of this length for pages and the rest

__attribute__((target("sse4.2"))) uint64_t ThreeStreams(uint64_t crc0, const uint8_t*& p, size_t& n, size_t block,
                                                        const ZeroShift& shift) {
  while (n >= 3 * block) {
    uint64_t crc1 = 0, crc2 = 0;
    const uint8_t* end = p + block;
    do {
      uint64_t a, b, c;
      std::memcpy(&a, p, 8);
      std::memcpy(&b, p + block, 8);
      std::memcpy(&c, p + 2 * block, 8);
      crc0 = _mm_crc32_u64(crc0, a);
      crc1 = _mm_crc32_u64(crc1, b);
      crc2 = _mm_crc32_u64(crc2, c);
      p += 8;
    } while (p < end);
    crc0 = Shift(shift, static_cast<uint32_t>(crc0)) ^ crc1;
    crc0 = Shift(shift, static_cast<uint32_t>(crc0)) ^ crc2;
    p += 2 * block;
    n -= 3 * block;
  }
  return crc0;
}

__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const uint8_t* p, size_t n) {
  static const ZeroShift* long_shift = new ZeroShift(MakeZeroShift(kLongBlock));
  static const ZeroShift* short_shift = new ZeroShift(MakeZeroShift(kShortBlock));
  uint64_t c = ~crc & 0xFFFFFFFFu;
  c = ThreeStreams(c, p, n, kLongBlock, *long_shift);
  c = ThreeStreams(c, p, n, kShortBlock, *short_shift);
  while (n >= 8) {
    uint64_t a;
    std::memcpy(&a, p, 8);
    c = _mm_crc32_u64(c, a);
    p += 8;
    n -= 8;
  }
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n--) c32 = _mm_crc32_u8(c32, *p++);
  return ~c32;
}

bool DetectSse42() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  return (c & bit_SSE4_2) != 0;
}
#endif

}  // namespace

bool HardwareAccelerated() {
#if defined(__x86_64__)
  static const bool hw = DetectSse42();
  return hw;
#else
  return false;
#endif
}

uint32_t Extend(uint32_t crc, const void* data, size_t n) {
  const auto* p = static_cast<const uint8_t*>(data);
#if defined(__x86_64__)
  if (HardwareAccelerated()) return ExtendSse42(crc, p, n);
#endif
  return internal::ExtendPortable(crc, p, n);
}

}  // namespace tmem::crc32c
