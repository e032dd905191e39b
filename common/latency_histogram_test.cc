#include "common/latency_histogram.h"

#include <gtest/gtest.h>

namespace tmem {
namespace {

class HistogramCapture final : public StatsVisitor {
 public:
  void Counter(std::string_view, std::string_view, uint64_t, const StatLabels&) override {}
  void Gauge(std::string_view, std::string_view, double, const StatLabels&) override {}
  void Histogram(std::string_view name, std::string_view, const std::vector<double>& bounds,
                 const std::vector<uint64_t>& cumulative, uint64_t n, double s, const StatLabels& l) override {
    this->name = std::string(name);
    upper = bounds;
    counts = cumulative;
    count = n;
    sum = s;
    labels = l;
  }
  std::string name;
  std::vector<double> upper;
  std::vector<uint64_t> counts;
  uint64_t count = 0;
  double sum = 0;
  StatLabels labels;
};

TEST(LatencyHistogramTest, EachDurationLandsInTheFirstBucketThatHoldsItAndTheRestAboveTheLast) {
  LatencyHistogram h;
  h.Record(5e-6);     // <= 10 µs
  h.Record(10e-6);    // a bound is inclusive
  h.Record(1.5e-3);   // <= 2.5 ms
  h.Record(100.0);    // above 2.5 s: only in the total
  h.RecordNanos(-7);  // a clock that stepped back counts as instant
  HistogramCapture cap;
  h.Visit(cap, "x_seconds", "help", {{"method", "Get"}});
  EXPECT_EQ(cap.name, "x_seconds");
  ASSERT_EQ(cap.upper.size(), LatencyHistogram::kBounds.size());
  ASSERT_EQ(cap.counts.size(), cap.upper.size());
  EXPECT_EQ(cap.counts[0], 3u);      // 5 µs, 10 µs, 0
  EXPECT_EQ(cap.counts[6], 3u);      // <= 1 ms
  EXPECT_EQ(cap.counts[7], 4u);      // <= 2.5 ms
  EXPECT_EQ(cap.counts.back(), 4u);  // <= 2.5 s
  EXPECT_EQ(cap.count, 5u);          // +Inf
  EXPECT_NEAR(cap.sum, 100.0 + 1.5e-3 + 15e-6, 1e-9);
  EXPECT_EQ(cap.labels, (StatLabels{{"method", "Get"}}));
  for (size_t i = 1; i < cap.counts.size(); ++i) EXPECT_LE(cap.counts[i - 1], cap.counts[i]);
}

// One histogram per event loop, reported as one: the sum of their buckets, counts and sums.
TEST(LatencyHistogramTest, AddedHistogramsReportAsOne) {
  LatencyHistogram a, b, all;
  a.Record(5e-6);
  a.Record(100.0);
  b.Record(1.5e-3);
  all.Add(a);
  all.Add(b);
  HistogramCapture cap;
  all.Visit(cap, "x_seconds", "help", {});
  EXPECT_EQ(cap.counts[0], 1u);
  EXPECT_EQ(cap.counts[7], 2u);
  EXPECT_EQ(cap.count, 3u);
  EXPECT_NEAR(cap.sum, 100.0 + 1.5e-3 + 5e-6, 1e-9);
  EXPECT_EQ(a.count(), 2u) << "the added histograms are unchanged";
}

}  // namespace
}  // namespace tmem
