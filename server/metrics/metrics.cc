#include "server/metrics/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/latency_histogram.h"
#include "common/mutex.h"
#include "common/version.h"

namespace tmem::metrics {
namespace {

// Turns one visit of the stats source into metric families, grouped by name.
class FamilyBuilder final : public StatsVisitor {
 public:
  void Counter(std::string_view name, std::string_view help, uint64_t value, const StatLabels& labels) override {
    Add("tmem_" + std::string(name) + "_total", help, prometheus::MetricType::Counter, static_cast<double>(value),
        labels);
  }
  void Gauge(std::string_view name, std::string_view help, double value, const StatLabels& labels) override {
    Add("tmem_" + std::string(name), help, prometheus::MetricType::Gauge, value, labels);
  }
  void Histogram(std::string_view name, std::string_view help, const std::vector<double>& upper_bounds,
                 const std::vector<uint64_t>& cumulative_counts, uint64_t count, double sum,
                 const StatLabels& labels) override {
    const std::string full = "tmem_" + std::string(name);
    prometheus::MetricFamily& f = families_[full];
    if (f.name.empty()) {
      f.name = full;
      f.help = std::string(help);
      f.type = prometheus::MetricType::Histogram;
    }
    prometheus::ClientMetric m;
    for (const auto& [k, v] : labels) m.label.push_back({k, v});
    m.histogram.sample_count = count;
    m.histogram.sample_sum = sum;
    for (size_t i = 0; i < upper_bounds.size() && i < cumulative_counts.size(); ++i) {
      m.histogram.bucket.push_back({cumulative_counts[i], upper_bounds[i]});
    }
    m.histogram.bucket.push_back({count, std::numeric_limits<double>::infinity()});
    f.metric.push_back(std::move(m));
  }
  std::vector<prometheus::MetricFamily> Take() {
    std::vector<prometheus::MetricFamily> out;
    for (auto& [name, family] : families_) out.push_back(std::move(family));
    return out;
  }

 private:
  void Add(const std::string& name, std::string_view help, prometheus::MetricType type, double value,
           const StatLabels& labels) {
    prometheus::MetricFamily& f = families_[name];
    if (f.name.empty()) {
      f.name = name;
      f.help = std::string(help);
      f.type = type;
    }
    prometheus::ClientMetric m;
    for (const auto& [k, v] : labels) m.label.push_back({k, v});
    if (type == prometheus::MetricType::Counter) {
      m.counter.value = value;
    } else {
      m.gauge.value = value;
    }
    f.metric.push_back(std::move(m));
  }
  std::map<std::string, prometheus::MetricFamily> families_;
};

class VisitorCollectable final : public prometheus::Collectable {
 public:
  explicit VisitorCollectable(Metrics::Source source) : source_(std::move(source)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    FamilyBuilder b;
    source_(b);
    return b.Take();
  }

 private:
  const Metrics::Source source_;
};

}  // namespace

struct Metrics::State final : public LatencyObserver {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  std::shared_ptr<VisitorCollectable> stats;
  std::unique_ptr<prometheus::Exposer> exposer;
  Mutex mu;  // a leaf
  std::map<std::string, std::unique_ptr<LatencyHistogram>, std::less<>> histograms ABSL_GUARDED_BY(mu);

  // Callers stop observing before the State goes (tmemd: after grpc::Server::Wait). Taking the
  // lock orders the last observation before the map's destruction in a way ThreadSanitizer can
  // see; gRPC's own ordering lives in uninstrumented code.
  ~State() override {
    MutexLock lock(&mu);
    histograms.clear();
  }

  void ObserveLatency(std::string_view method, double seconds) override {
    LatencyHistogram* h;
    {
      MutexLock lock(&mu);
      auto it = histograms.find(method);
      if (it == histograms.end())
        it = histograms.emplace(std::string(method), std::make_unique<LatencyHistogram>()).first;
      h = it->second.get();  // never removed while the State lives
    }
    h->Record(seconds);
  }

  void VisitLatencies(StatsVisitor& v) {
    MutexLock lock(&mu);
    for (const auto& [method, h] : histograms) {
      h->Visit(v, "request_duration_seconds", "Time to serve a request, by method.", {{"method", method}});
    }
  }
};

Metrics::Metrics(std::unique_ptr<State> state) : state_(std::move(state)) {}

Metrics::~Metrics() {
  // Stop serving before the collectables go away.
  state_->exposer.reset();
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(const std::string& listen_address, Source source) {
  auto state = std::make_unique<State>();
  // The state outlives the exposer (~Metrics stops serving first), so the collectable may use it.
  state->stats = std::make_shared<VisitorCollectable>([source = std::move(source), s = state.get()](StatsVisitor& v) {
    source(v);
    s->VisitLatencies(v);
  });
  prometheus::BuildGauge()
      .Name("tmem_build_info")
      .Help("Build information; the value is always 1.")
      .Register(*state->registry)
      .Add({{"version", kVersion}})
      .Set(1);
  try {
    state->exposer = std::make_unique<prometheus::Exposer>(listen_address, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve metrics on ", listen_address, ": ", e.what(), " (is the port in use?)"));
  }
  state->exposer->RegisterCollectable(state->registry);
  state->exposer->RegisterCollectable(state->stats);
  return std::unique_ptr<Metrics>(new Metrics(std::move(state)));
}

int Metrics::port() const {
  std::vector<int> ports = state_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports[0];
}

LatencyObserver* Metrics::latency() { return state_.get(); }

std::string Metrics::Render() const {
  std::vector<prometheus::MetricFamily> all = state_->registry->Collect();
  std::vector<prometheus::MetricFamily> stats = state_->stats->Collect();
  all.insert(all.end(), std::make_move_iterator(stats.begin()), std::make_move_iterator(stats.end()));
  return prometheus::TextSerializer().Serialize(all);
}

}  // namespace tmem::metrics
