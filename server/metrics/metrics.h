// Prometheus metrics: the only component that knows prometheus-cpp.
//
// At every scrape the stats source (e.g. PoolEngine::VisitStats) is visited and its counters and
// gauges become metric families named by Prometheus conventions: `tmem_` + name, counters with
// `_total`. Request latencies (LatencyObserver) go into `tmem_request_duration_seconds`
// histograms labelled by method, and `tmem_build_info{version}` is 1.
//
// Thread-safety: all methods are thread-safe; the source is called from the HTTP server's
// threads and must be thread-safe itself.
#ifndef TMEM_SERVER_METRICS_METRICS_H_
#define TMEM_SERVER_METRICS_METRICS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/stats.h"

namespace tmem::metrics {

class Metrics {
 public:
  using Source = std::function<void(StatsVisitor&)>;

  // Serves /metrics on `listen_address` ("127.0.0.1:9464", "[::]:9464"; port 0 picks one).
  // Errors: Unavailable naming the address when it cannot be bound (in use, no permission).
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(const std::string& listen_address, Source source);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // The bound port (useful with port 0).
  int port() const;
  // Records request latencies into the histograms. Lives as long as this object.
  LatencyObserver* latency();
  // The text exposition format, exactly as /metrics serves it.
  std::string Render() const;

 private:
  struct State;
  explicit Metrics(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace tmem::metrics

#endif  // TMEM_SERVER_METRICS_METRICS_H_
