#include "server/io/io_watch.h"

#include <algorithm>

namespace tmem::io {

int IoWatch::Begin() {
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

void IoWatch::End(int slot, bool ok, uint64_t failed) {
  if (slot >= 0) slots_[slot].store(0, std::memory_order_relaxed);
  completed_.fetch_add(1, std::memory_order_relaxed);
  if (!ok) errors_.fetch_add(failed, std::memory_order_relaxed);
}

int64_t IoWatch::OldestInFlightNanos() const {
  int64_t oldest = 0;
  for (const auto& s : slots_) {
    const int64_t start = s.load(std::memory_order_relaxed);
    if (start != 0 && (oldest == 0 || start < oldest)) oldest = start;
  }
  return oldest == 0 ? 0 : std::max<int64_t>(clock_->NowNanos() - oldest, 0);
}

int IoWatch::InFlight() const {
  int n = 0;
  for (const auto& s : slots_) n += s.load(std::memory_order_relaxed) != 0 ? 1 : 0;
  return n;
}

}  // namespace tmem::io
