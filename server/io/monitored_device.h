// MonitoredDevice: a BlockDevice wrapper that watches the I/O going through it, for health
// checks: how many operations failed (by kind, cumulative) and how old the oldest operation still
// in flight is (a watchdog over hung I/O). It changes nothing about the I/O itself.
//
// Cost per operation: two relaxed atomic stores into a slot the thread claims by compare-and-swap
// from a fixed table; an operation that finds no free slot (more than kSlots at once) is counted
// but not timed.
//
// Thread-safety: every method is thread-safe; no locks.
#ifndef TMEM_SERVER_IO_MONITORED_DEVICE_H_
#define TMEM_SERVER_IO_MONITORED_DEVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "server/io/block_device.h"

namespace tmem::io {

class MonitoredDevice final : public BlockDevice {
 public:
  // Borrows `base` (which must outlive this object) and `clock`.
  explicit MonitoredDevice(BlockDevice* base, Clock* clock = Clock::Real());
  // Owns `base`.
  explicit MonitoredDevice(std::unique_ptr<BlockDevice> base, Clock* clock = Clock::Real());

  uint64_t size_bytes() const override { return base_->size_bytes(); }
  uint32_t alignment() const override { return base_->alignment(); }
  absl::Status Read(uint64_t offset, void* buf, size_t len) override;
  void ReadMany(std::span<ReadOp> ops) override;
  absl::Status Write(uint64_t offset, const void* buf, size_t len) override;
  absl::Status Sync() override;
  std::string Describe() const override { return base_->Describe(); }

  BlockDevice* base() const { return base_; }

  // Failed operations since the start (a batch of reads counts each failed read).
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  // Operations finished (successfully or not) since the start.
  uint64_t completed() const { return completed_.load(std::memory_order_relaxed); }
  // Nanoseconds the oldest operation now in flight has been waiting (0: none in flight).
  int64_t OldestInFlightNanos() const;
  // Operations in flight now (timed ones only).
  int InFlight() const;

  static constexpr int kSlots = 256;

 private:
  // Claims a slot stamped with the start time; -1 when the table is full.
  int Begin();
  void End(int slot, bool ok, uint64_t failed = 1);

  std::unique_ptr<BlockDevice> owned_;
  BlockDevice* const base_;
  Clock* const clock_;
  // 0 = free, else the operation's start (clock nanoseconds; the clock never reads 0 here: a
  // start of 0 is stored as 1).
  std::atomic<int64_t> slots_[kSlots] = {};
  std::atomic<uint32_t> next_slot_{0};  // where the next search starts, spreading threads
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> completed_{0};
};

}  // namespace tmem::io

#endif  // TMEM_SERVER_IO_MONITORED_DEVICE_H_
