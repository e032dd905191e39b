// IoWatch: what health checks need to know about I/O going through a device or a backend — how
// many operations failed (cumulative) and how old the oldest operation still in flight is (a
// watchdog over hung I/O). Used by MonitoredDevice (block devices) and by file backends.
//
// Cost per operation: two relaxed atomic stores into a slot claimed by compare-and-swap from a
// fixed table; an operation that finds no free slot (more than kSlots at once) is counted but not
// timed.
//
// Thread-safety: every method is thread-safe; no locks.
#ifndef TMEM_SERVER_IO_IO_WATCH_H_
#define TMEM_SERVER_IO_IO_WATCH_H_

#include <atomic>
#include <cstdint>

#include "common/clock.h"

namespace tmem::io {

class IoWatch {
 public:
  explicit IoWatch(Clock* clock = Clock::Real()) : clock_(clock) {}
  IoWatch(const IoWatch&) = delete;
  IoWatch& operator=(const IoWatch&) = delete;

  // Marks an operation begun; pass the result to End. -1 when the table is full (not timed).
  int Begin();
  // Marks it finished; `failed` operations (of a batch) count as errors when !ok.
  void End(int slot, bool ok, uint64_t failed = 1);

  // Failed operations since the start.
  uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  // Operations finished (successfully or not) since the start.
  uint64_t completed() const { return completed_.load(std::memory_order_relaxed); }
  // Nanoseconds the oldest operation now in flight has been waiting (0: none in flight).
  int64_t OldestInFlightNanos() const;
  // Operations in flight now (timed ones only).
  int InFlight() const;

  static constexpr int kSlots = 256;

 private:
  Clock* const clock_;
  // 0 = free, else the operation's start (clock nanoseconds; a start of 0 is stored as 1).
  std::atomic<int64_t> slots_[kSlots] = {};
  std::atomic<uint32_t> next_slot_{0};  // where the next search starts, spreading threads
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> completed_{0};
};

// Begin and End around one scope: IoScope scope(&watch); ... scope.Done(ok);
class IoScope {
 public:
  explicit IoScope(IoWatch* watch) : watch_(watch), slot_(watch->Begin()) {}
  ~IoScope() {
    if (!done_) watch_->End(slot_, true);
  }
  IoScope(const IoScope&) = delete;
  IoScope& operator=(const IoScope&) = delete;
  // Ends the operation now, counting an error unless `ok`; returns ok.
  bool Done(bool ok, uint64_t failed = 1) {
    done_ = true;
    watch_->End(slot_, ok, failed);
    return ok;
  }

 private:
  IoWatch* const watch_;
  const int slot_;
  bool done_ = false;
};

}  // namespace tmem::io

#endif  // TMEM_SERVER_IO_IO_WATCH_H_
