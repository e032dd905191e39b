// The clock interface: real monotonic time in production, a manual clock in tests.
#ifndef TMEM_COMMON_CLOCK_H_
#define TMEM_COMMON_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace tmem {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds since an arbitrary origin. Thread-safe.
  virtual int64_t NowNanos() const = 0;

  // The process-wide monotonic clock (std::chrono::steady_clock). Never destroyed.
  static Clock* Real();
};

// A clock that moves only when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_nanos = 1'000'000'000) : now_(start_nanos) {}
  int64_t NowNanos() const override { return now_.load(std::memory_order_acquire); }
  void AdvanceNanos(int64_t d) { now_.fetch_add(d, std::memory_order_acq_rel); }
  void AdvanceMillis(int64_t ms) { AdvanceNanos(ms * 1'000'000); }

 private:
  // Written by AdvanceNanos (acq_rel), read by NowNanos (acquire).
  std::atomic<int64_t> now_;
};

}  // namespace tmem

#endif  // TMEM_COMMON_CLOCK_H_
