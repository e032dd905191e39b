// Stats leave a component through a visitor, so that only server/metrics knows prometheus-cpp.
#ifndef TMEM_COMMON_STATS_H_
#define TMEM_COMMON_STATS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tmem {

using StatLabels = std::vector<std::pair<std::string, std::string>>;

// Names are snake_case and carry their unit (`bytes_written`, `free_segments`); the metrics
// layer adds the `tmem_` prefix and the `_total` suffix for counters.
class StatsVisitor {
 public:
  virtual ~StatsVisitor() = default;
  // A monotonic count since the process started.
  virtual void Counter(std::string_view name, std::string_view help, uint64_t value, const StatLabels& labels) = 0;
  // A value that goes up and down.
  virtual void Gauge(std::string_view name, std::string_view help, double value, const StatLabels& labels) = 0;
  // A histogram: cumulative counts for each upper bound (seconds for `_seconds` names), the
  // total count and the sum. Visitors that keep no histograms ignore it.
  virtual void Histogram(std::string_view name, std::string_view help, const std::vector<double>& upper_bounds,
                         const std::vector<uint64_t>& cumulative_counts, uint64_t count, double sum,
                         const StatLabels& labels) {}
};

// Receives request latencies (for histograms). `method` is a short fixed name such as "PutPages".
// Implementations are thread-safe.
class LatencyObserver {
 public:
  virtual ~LatencyObserver() = default;
  virtual void ObserveLatency(std::string_view method, double seconds) = 0;
};

}  // namespace tmem

#endif  // TMEM_COMMON_STATS_H_
