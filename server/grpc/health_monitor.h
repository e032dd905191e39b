// HealthMonitor: decides, every check interval, whether each service (the page pools, each NBD
// export) can serve, and tells the health service (grpc.health.v1, tmemctl info), the log and
// /metrics. A service serves while none of its probes reports a problem; a probe is a function
// that returns why the service cannot serve now, or "" (health_probes below build the usual ones:
// hung device I/O, device errors over a threshold, the log unable to free room, a RocksDB
// background error). The whole server ("") serves while every service does.
//
// Timing: a problem is seen within one check interval of the moment its probe reports it (for
// hung I/O: `io_deadline_ms` after the I/O began, plus one interval); a service serves again at
// the first check after every probe cleared (errors and dropped puts clear once a whole
// `window_ms` passed without new ones).
//
// Thread-safety: every method is thread-safe. Lock order: mu_ -> HealthService's lock (leaf).
// Probes run under mu_, on the monitor's thread or the caller of CheckNow; they must not block.
#ifndef TMEM_SERVER_GRPC_HEALTH_MONITOR_H_
#define TMEM_SERVER_GRPC_HEALTH_MONITOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/backend/block_backend.h"
#include "server/blockcache/block_cache.h"
#include "server/grpc/health_service.h"
#include "server/io/io_watch.h"
#include "server/io/monitored_device.h"
#include "server/pool/pool_engine.h"

namespace tmem::grpc_service {

struct HealthLimits {
  int64_t interval_ms = 1000;       // health.check_interval_ms
  int64_t io_deadline_ms = 5000;    // health.io_deadline_ms: an I/O in flight this long is hung
  uint64_t io_error_threshold = 8;  // health.io_error_threshold: this many errors in a window
  int64_t window_ms = 10000;        // health.window_ms
};

// "" when the service can serve, else the reason it cannot.
using HealthProbe = std::function<std::string()>;

// Counts what a cumulative counter added over the last `window_ms` (clock time).
class CounterWindow {
 public:
  CounterWindow(Clock* clock, int64_t window_ms) : clock_(clock), window_ns_(window_ms * 1'000'000) {}
  // Records the counter's value now and returns its increase over the window.
  uint64_t Observe(uint64_t cumulative);

 private:
  Clock* const clock_;
  const int64_t window_ns_;
  std::deque<std::pair<int64_t, uint64_t>> samples_;  // (time, value), oldest first
};

// Probes for a device's or backend's I/O: an operation in flight past the deadline; errors over
// the threshold in the window. `what` names it in the reason ("page device", "cache device of
// export x").
HealthProbe HungIoProbe(const io::IoWatch* io, std::string what, const HealthLimits& limits,
                        Clock* clock = Clock::Real());
HealthProbe IoErrorProbe(const io::IoWatch* io, std::string what, const HealthLimits& limits,
                         Clock* clock = Clock::Real());
// Any increase of `counter` within the window is a problem, described by `what` (e.g. "puts
// dropped: no room in the log within pool.put_wait_ms") followed by the count.
HealthProbe CounterIncreaseProbe(std::function<uint64_t()> counter, std::string what, const HealthLimits& limits,
                                 Clock* clock = Clock::Real());

// The page pools' probes: the page device hung or failing; puts dropped for want of room in the
// log; the page index stopped by a RocksDB background error. Borrowed pointers outlive them.
std::vector<HealthProbe> PagePoolProbes(const pool::PoolEngine* engine, const io::MonitoredDevice* device,
                                        const HealthLimits& limits, Clock* clock = Clock::Real());
// A cached export's: its cache device hung or failing; writes failed because the cache is full
// and write-back fails; the cache in its failed state.
std::vector<HealthProbe> CachedExportProbes(const std::string& name, blockcache::BlockCache* cache,
                                            const io::MonitoredDevice* cache_device, const HealthLimits& limits,
                                            Clock* clock = Clock::Real());

// A plain export's: its backend's own problem (a remote store's fence), and, where the backend
// watches its I/O (a file or block device), that I/O hung or failing.
std::vector<HealthProbe> PlainExportProbes(const std::string& name, const backend::BlockBackend* backend,
                                           const HealthLimits& limits, Clock* clock = Clock::Real());

class HealthMonitor {
 public:
  // `health` is borrowed and outlives the monitor.
  HealthMonitor(HealthService* health, const HealthLimits& limits) : health_(health), limits_(limits) {}
  ~HealthMonitor() { Stop(); }
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  // Registers a service (serving until its probes say otherwise) before Start.
  void AddService(const std::string& name, std::vector<HealthProbe> probes) ABSL_LOCKS_EXCLUDED(mu_);
  // Evaluates every service once and publishes the outcome (the thread does it every interval).
  void CheckNow() ABSL_LOCKS_EXCLUDED(mu_);
  // Starts/stops the thread that calls CheckNow every interval.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // tmem_service_serving{service} (1 or 0) and tmem_service_not_serving_total{service} (times
  // the service turned not serving).
  void VisitStats(StatsVisitor& visitor) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Service {
    std::string name;
    std::vector<HealthProbe> probes;
    bool serving = true;
    std::string reason;
    int failing_probe = -1;
    uint64_t turned_not_serving = 0;
  };
  void CheckLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  HealthService* const health_;
  const HealthLimits limits_;
  mutable Mutex mu_;
  CondVar stop_cv_;
  std::vector<Service> services_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // started by Start, joined by Stop
};

}  // namespace tmem::grpc_service

#endif  // TMEM_SERVER_GRPC_HEALTH_MONITOR_H_
