#include "server/backend/block_backend.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tmem::backend {

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

absl::StatusOr<std::unique_ptr<BlockBackend>> OpenBackend(const std::string& spec, bool read_only,
                                                          uint64_t create_size_bytes, const NbdBackendOptions& remote) {
  if (spec.rfind("nbd://", 0) == 0 || spec.rfind("nbd+unix://", 0) == 0 || spec.rfind("nbds://", 0) == 0) {
    NbdBackendOptions o = remote;
    o.uri = spec;
    o.read_only = read_only;
    return OpenNbdBackend(o);
  }
  std::string path = spec.rfind("file:", 0) == 0 ? spec.substr(5) : spec;
  if (path.find("://") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "backend '", spec, "': want a path, file:PATH, nbd://HOST[:PORT]/NAME or nbd+unix:///NAME?socket=PATH"));
  }
  return OpenFileBackend({.path = path, .read_only = read_only, .create_size_bytes = create_size_bytes});
}

}  // namespace tmem::backend
