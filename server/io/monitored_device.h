// MonitoredDevice: a BlockDevice wrapper that watches the I/O going through it (an IoWatch: errors
// and the age of the oldest operation in flight), for health checks. It changes nothing about
// the I/O itself.
//
// Thread-safety: every method is thread-safe; no locks.
#ifndef TMEM_SERVER_IO_MONITORED_DEVICE_H_
#define TMEM_SERVER_IO_MONITORED_DEVICE_H_

#include <memory>
#include <string>

#include "common/clock.h"
#include "server/io/block_device.h"
#include "server/io/io_watch.h"

namespace tmem::io {

class MonitoredDevice final : public BlockDevice {
 public:
  // Borrows `base` (which must outlive this object) and `clock`.
  explicit MonitoredDevice(BlockDevice* base, Clock* clock = Clock::Real()) : base_(base), watch_(clock) {}
  // Owns `base`.
  explicit MonitoredDevice(std::unique_ptr<BlockDevice> base, Clock* clock = Clock::Real())
      : owned_(std::move(base)), base_(owned_.get()), watch_(clock) {}

  uint64_t size_bytes() const override { return base_->size_bytes(); }
  uint32_t alignment() const override { return base_->alignment(); }
  absl::Status Read(uint64_t offset, void* buf, size_t len) override;
  void ReadMany(std::span<ReadOp> ops) override;
  // The base's queue, each batch watched from Submit to Reap.
  std::unique_ptr<ReadQueue> NewReadQueue() override;
  absl::Status Write(uint64_t offset, const void* buf, size_t len) override;
  absl::Status Sync() override;
  std::string Describe() const override { return base_->Describe(); }

  BlockDevice* base() const { return base_; }
  const IoWatch& watch() const { return watch_; }

 private:
  std::unique_ptr<BlockDevice> owned_;
  BlockDevice* const base_;
  IoWatch watch_;
};

}  // namespace tmem::io

#endif  // TMEM_SERVER_IO_MONITORED_DEVICE_H_
