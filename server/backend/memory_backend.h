// A BlockBackend in RAM, for tests and the protocol fuzzer (the memory device of DESIGN.md).
#ifndef TMEM_SERVER_BACKEND_MEMORY_BACKEND_H_
#define TMEM_SERVER_BACKEND_MEMORY_BACKEND_H_

#include <cstring>
#include <string>
#include <vector>

#include "common/mutex.h"
#include "server/backend/block_backend.h"

namespace tmem::backend {

class MemoryBackend final : public BlockBackend {
 public:
  explicit MemoryBackend(uint64_t size) : bytes_(size, 0) {}
  uint64_t size() const override { return bytes_.size(); }
  BackendCaps caps() const override { return {.trim = true, .buffered_writes = true}; }
  absl::StatusOr<BufferedOutcome> PreadBuffered(void* buf, uint32_t len, uint64_t offset) override {
    if (absl::Status s = Pread(buf, len, offset); !s.ok()) return s;
    return BufferedOutcome::kDone;
  }
  absl::Status Pread(void* buf, uint32_t len, uint64_t offset) override {
    ReaderLock lock(&mu_);
    std::memcpy(buf, bytes_.data() + offset, len);
    return absl::OkStatus();
  }
  absl::Status Pwrite(const void* buf, uint32_t len, uint64_t offset, bool) override {
    WriterLock lock(&mu_);
    std::memcpy(bytes_.data() + offset, buf, len);
    return absl::OkStatus();
  }
  absl::Status Flush() override { return absl::OkStatus(); }
  absl::Status Trim(uint64_t offset, uint64_t len, bool) override { return Zero(offset, len, true, false); }
  absl::Status Zero(uint64_t offset, uint64_t len, bool, bool) override {
    WriterLock lock(&mu_);
    std::memset(bytes_.data() + offset, 0, len);
    return absl::OkStatus();
  }
  std::string Describe() const override { return "memory"; }

 private:
  SharedMutex mu_;
  std::vector<uint8_t> bytes_;
};

}  // namespace tmem::backend

#endif  // TMEM_SERVER_BACKEND_MEMORY_BACKEND_H_
