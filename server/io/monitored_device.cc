#include "server/io/monitored_device.h"

#include <algorithm>

namespace tmem::io {

MonitoredDevice::MonitoredDevice(BlockDevice* base, Clock* clock) : base_(base), clock_(clock) {}

MonitoredDevice::MonitoredDevice(std::unique_ptr<BlockDevice> base, Clock* clock)
    : owned_(std::move(base)), base_(owned_.get()), clock_(clock) {}

int MonitoredDevice::Begin() {
  const int64_t now = std::max<int64_t>(clock_->NowNanos(), 1);
  const uint32_t start = next_slot_.fetch_add(1, std::memory_order_relaxed);
  for (int i = 0; i < kSlots; ++i) {
    const int slot = static_cast<int>((start + i) % kSlots);
    int64_t expected = 0;
    if (slots_[slot].load(std::memory_order_relaxed) == 0 &&
        slots_[slot].compare_exchange_strong(expected, now, std::memory_order_relaxed)) {
      return slot;
    }
  }
  return -1;
}

void MonitoredDevice::End(int slot, bool ok, uint64_t failed) {
  if (slot >= 0) slots_[slot].store(0, std::memory_order_relaxed);
  completed_.fetch_add(1, std::memory_order_relaxed);
  if (!ok) errors_.fetch_add(failed, std::memory_order_relaxed);
}

absl::Status MonitoredDevice::Read(uint64_t offset, void* buf, size_t len) {
  const int slot = Begin();
  absl::Status s = base_->Read(offset, buf, len);
  End(slot, s.ok());
  return s;
}

void MonitoredDevice::ReadMany(std::span<ReadOp> ops) {
  const int slot = Begin();
  base_->ReadMany(ops);
  uint64_t failed = 0;
  for (const ReadOp& op : ops) failed += op.status.ok() ? 0 : 1;
  End(slot, failed == 0, failed);
}

absl::Status MonitoredDevice::Write(uint64_t offset, const void* buf, size_t len) {
  const int slot = Begin();
  absl::Status s = base_->Write(offset, buf, len);
  End(slot, s.ok());
  return s;
}

absl::Status MonitoredDevice::Sync() {
  const int slot = Begin();
  absl::Status s = base_->Sync();
  End(slot, s.ok());
  return s;
}

int64_t MonitoredDevice::OldestInFlightNanos() const {
  int64_t oldest = 0;
  for (const auto& s : slots_) {
    const int64_t start = s.load(std::memory_order_relaxed);
    if (start != 0 && (oldest == 0 || start < oldest)) oldest = start;
  }
  return oldest == 0 ? 0 : std::max<int64_t>(clock_->NowNanos() - oldest, 0);
}

int MonitoredDevice::InFlight() const {
  int n = 0;
  for (const auto& s : slots_) n += s.load(std::memory_order_relaxed) != 0 ? 1 : 0;
  return n;
}

}  // namespace tmem::io
