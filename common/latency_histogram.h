// LatencyHistogram: durations counted into fixed buckets, lock-free to record, reported through
// a StatsVisitor as a Prometheus-style histogram (seconds). The one histogram of the tree: NBD
// commands, gRPC methods and block cache flushes all use it, with the same bounds.
//
// Thread-safety: Record and Visit may run concurrently from any thread (relaxed atomics; a
// scrape may see a record's bucket before its sum, which Prometheus tolerates).
#ifndef TMEM_COMMON_LATENCY_HISTOGRAM_H_
#define TMEM_COMMON_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/stats.h"

namespace tmem {

class LatencyHistogram {
 public:
  // Upper bounds in seconds: 10 µs to 2.5 s (a page get from RAM to a flush stuck behind a
  // slow device). One more bucket counts what is above the last.
  static constexpr std::array<double, 17> kBounds = {10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3,
                                                     10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 0.5,    1.0,  2.5};

  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  void Record(double seconds);
  void RecordNanos(int64_t ns) { Record(static_cast<double>(ns) / 1e9); }
  // Adds another histogram's counts (to report several as one, e.g. one per event loop).
  void Add(const LatencyHistogram& other);

  // Cumulative counts per bound (Prometheus style).
  std::vector<uint64_t> Cumulative() const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum_seconds() const { return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9; }

  void Visit(StatsVisitor& visitor, std::string_view name, std::string_view help, const StatLabels& labels) const;

 private:
  std::atomic<uint64_t> buckets_[kBounds.size() + 1] = {};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
};

}  // namespace tmem

#endif  // TMEM_COMMON_LATENCY_HISTOGRAM_H_
