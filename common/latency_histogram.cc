#include "common/latency_histogram.h"

namespace tmem {

void LatencyHistogram::Record(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // a clock that stepped back (or NaN) counts as instant
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

void LatencyHistogram::Add(const LatencyHistogram& other) {
  for (size_t i = 0; i <= kBounds.size(); ++i) {
    buckets_[i].fetch_add(other.buckets_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  count_.fetch_add(other.count_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  sum_ns_.fetch_add(other.sum_ns_.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

std::vector<uint64_t> LatencyHistogram::Cumulative() const {
  std::vector<uint64_t> out;
  out.reserve(kBounds.size());
  uint64_t acc = 0;
  for (size_t i = 0; i < kBounds.size(); ++i) {
    acc += buckets_[i].load(std::memory_order_relaxed);
    out.push_back(acc);
  }
  return out;
}

void LatencyHistogram::Visit(StatsVisitor& visitor, std::string_view name, std::string_view help,
                             const StatLabels& labels) const {
  static const std::vector<double> bounds(kBounds.begin(), kBounds.end());
  std::vector<uint64_t> cumulative = Cumulative();
  // The total from the buckets themselves, so that +Inf is never below the last bound's count.
  const uint64_t total = cumulative.back() + buckets_[kBounds.size()].load(std::memory_order_relaxed);
  visitor.Histogram(name, help, bounds, cumulative, total, sum_seconds(), labels);
}

}  // namespace tmem
