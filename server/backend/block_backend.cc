#include <algorithm>
#include <vector>

#include "server/nbd/block_backend.h"

namespace tmem::nbd {

absl::Status ZeroByWriting(BlockBackend& backend, uint64_t offset, uint64_t len, bool fua) {
  static const std::vector<uint8_t> zeros(1 << 20, 0);
  while (len > 0) {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(len, zeros.size()));
    if (absl::Status s = backend.Pwrite(zeros.data(), n, offset, false); !s.ok()) return s;
    offset += n;
    len -= n;
  }
  return fua ? backend.Flush() : absl::OkStatus();
}

}  // namespace tmem::nbd
