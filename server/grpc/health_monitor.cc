#include "server/grpc/health_monitor.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace tmem::grpc_service {

uint64_t CounterWindow::Observe(uint64_t cumulative) {
  const int64_t now = clock_->NowNanos();
  samples_.emplace_back(now, cumulative);
  // Keep the newest sample at or before the window's start, so that the increase covers the
  // whole window.
  while (samples_.size() > 1 && samples_[1].first <= now - window_ns_) samples_.pop_front();
  return cumulative - samples_.front().second;
}

HealthProbe HungIoProbe(const io::IoWatch* io, std::string what, const HealthLimits& limits, Clock* clock) {
  const int64_t deadline_ns = limits.io_deadline_ms * 1'000'000;
  return [io, what = std::move(what), deadline_ns]() -> std::string {
    const int64_t age = io->OldestInFlightNanos();
    if (age < deadline_ns) return "";
    return absl::StrCat(what, " I/O hung: an operation has been in flight for ", age / 1'000'000,
                        " ms (health.io_deadline_ms ", deadline_ns / 1'000'000, ")");
  };
}

HealthProbe IoErrorProbe(const io::IoWatch* io, std::string what, const HealthLimits& limits, Clock* clock) {
  auto window = std::make_shared<CounterWindow>(clock, limits.window_ms);
  window->Observe(io->errors());  // errors from now on count
  const uint64_t threshold = limits.io_error_threshold;
  const int64_t window_ms = limits.window_ms;
  return [io, what = std::move(what), window, threshold, window_ms]() -> std::string {
    const uint64_t n = window->Observe(io->errors());
    if (n < threshold) return "";
    return absl::StrCat(what, " I/O errors: ", n, " in the last ", window_ms, " ms (health.io_error_threshold ",
                        threshold, ")");
  };
}

HealthProbe CounterIncreaseProbe(std::function<uint64_t()> counter, std::string what, const HealthLimits& limits,
                                 Clock* clock) {
  auto window = std::make_shared<CounterWindow>(clock, limits.window_ms);
  window->Observe(counter());
  const int64_t window_ms = limits.window_ms;
  return [counter = std::move(counter), what = std::move(what), window, window_ms]() -> std::string {
    const uint64_t n = window->Observe(counter());
    if (n == 0) return "";
    return absl::StrCat(what, ": ", n, " in the last ", window_ms, " ms");
  };
}

std::vector<HealthProbe> PagePoolProbes(const pool::PoolEngine* engine, const io::MonitoredDevice* device,
                                        const HealthLimits& limits, Clock* clock) {
  return {
      HungIoProbe(&device->watch(), "page device", limits, clock),
      IoErrorProbe(&device->watch(), "page device", limits, clock),
      CounterIncreaseProbe([engine] { return engine->counters().puts_dropped_no_room.load(std::memory_order_relaxed); },
                           "puts dropped: no room in the page log within pool.put_wait_ms", limits, clock),
      [engine]() -> std::string {
        absl::Status s = engine->page_index_error();
        return s.ok() ? std::string() : std::string(s.message());
      }};
}

std::vector<HealthProbe> CachedExportProbes(const std::string& name, blockcache::BlockCache* cache,
                                            const io::MonitoredDevice* cache_device, const HealthLimits& limits,
                                            Clock* clock) {
  const std::string what = absl::StrCat("cache device of export ", name);
  return {HungIoProbe(&cache_device->watch(), what, limits, clock),
          IoErrorProbe(&cache_device->watch(), what, limits, clock),
          CounterIncreaseProbe([cache] { return cache->status().full_write_failures; },
                               "writes failed: the cache is full and write-back to the store fails", limits, clock),
          [cache]() -> std::string {
            const blockcache::BlockCacheStatus s = cache->status();
            return s.failed ? s.failure : std::string();
          }};
}

std::vector<HealthProbe> PlainExportProbes(const std::string& name, const backend::BlockBackend* backend,
                                           const HealthLimits& limits, Clock* clock) {
  std::vector<HealthProbe> probes = {[backend] { return backend->HealthProblem(); }};
  if (const io::IoWatch* io = backend->io_watch(); io != nullptr) {
    const std::string what = absl::StrCat("backing store of export ", name);
    probes.push_back(HungIoProbe(io, what, limits, clock));
    probes.push_back(IoErrorProbe(io, what, limits, clock));
  }
  return probes;
}

void HealthMonitor::AddService(const std::string& name, std::vector<HealthProbe> probes) {
  MutexLock lock(&mu_);
  services_.push_back(Service{name, std::move(probes)});
  health_->SetServing(name, true);
}

void HealthMonitor::CheckNow() {
  MutexLock lock(&mu_);
  CheckLocked();
}

void HealthMonitor::CheckLocked() {
  bool all = true;
  std::string first_reason;
  for (Service& s : services_) {
    std::string reason;
    int failing = -1;  // the first probe that reports a problem
    // Every probe runs each round, so that windowed probes see every sample.
    for (size_t i = 0; i < s.probes.size(); ++i) {
      std::string r = s.probes[i]();
      if (!r.empty() && reason.empty()) {
        reason = std::move(r);
        failing = static_cast<int>(i);
      }
    }
    const bool serving = reason.empty();
    // Logged when the service turns, and when another probe becomes the reason (not for every
    // new count in the same reason).
    if (serving != s.serving || failing != s.failing_probe) {
      if (!serving) {
        if (s.serving) ++s.turned_not_serving;
        TMEM_LOG(Error) << s.name << " NOT_SERVING: " << reason;
      } else {
        TMEM_LOG(Info) << s.name << " SERVING again";
      }
    }
    s.serving = serving;
    s.reason = reason;
    s.failing_probe = failing;
    health_->SetServing(s.name, serving, reason);
    if (!serving && all) {
      all = false;
      first_reason = absl::StrCat(s.name, ": ", reason);
    }
  }
  health_->SetServing("", all, first_reason);
}

void HealthMonitor::Start() {
  MutexLock lock(&mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] {
    MutexLock l(&mu_);
    while (!stopping_) {
      CheckLocked();
      stop_cv_.WaitFor(&mu_, std::chrono::milliseconds(limits_.interval_ms));
    }
  });
}

void HealthMonitor::Stop() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    stop_cv_.SignalAll();
  }
  if (thread_.joinable()) thread_.join();
}

void HealthMonitor::VisitStats(StatsVisitor& v) const {
  MutexLock lock(&mu_);
  for (const Service& s : services_) {
    const StatLabels labels{{"service", s.name}};
    v.Gauge("service_serving", "1 while the service can serve (grpc.health.v1 SERVING), else 0", s.serving ? 1 : 0,
            labels);
    v.Counter("service_not_serving", "Times the service turned NOT_SERVING", s.turned_not_serving, labels);
  }
}

}  // namespace tmem::grpc_service
