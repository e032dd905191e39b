// A BlockDevice in RAM. For unit tests and demos; it enforces the same alignment rules as a
// real O_DIRECT device so that tests catch misaligned I/O.
#ifndef TMEM_SERVER_IO_MEMORY_DEVICE_H_
#define TMEM_SERVER_IO_MEMORY_DEVICE_H_

#include <memory>

#include "common/mutex.h"
#include "server/io/block_device.h"

namespace tmem::io {

class MemoryDevice final : public BlockDevice {
 public:
  // `size_bytes` is rounded down to `alignment`. The contents start zeroed.
  explicit MemoryDevice(uint64_t size_bytes, uint32_t alignment = 4096);

  uint64_t size_bytes() const override { return size_; }
  uint32_t alignment() const override { return alignment_; }
  absl::Status Read(uint64_t offset, void* buf, size_t len) override;
  absl::Status Write(uint64_t offset, const void* buf, size_t len) override;
  absl::Status Sync() override { return absl::OkStatus(); }
  std::string Describe() const override;

 private:
  const uint64_t size_;
  const uint32_t alignment_;
  // Reads share the lock, writes take it exclusively, so that overlapping I/O is not a data
  // race in the C++ sense (a real device gives the same mixed-bytes outcome without one).
  mutable SharedMutex mu_;
  std::unique_ptr<uint8_t[]> bytes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tmem::io

#endif  // TMEM_SERVER_IO_MEMORY_DEVICE_H_
