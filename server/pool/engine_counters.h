// The page pool engine's counters (PoolEngine::counters(), pool_counters()): atomics written on
// the request paths and read by /metrics.
#ifndef TMEM_SERVER_POOL_ENGINE_COUNTERS_H_
#define TMEM_SERVER_POOL_ENGINE_COUNTERS_H_

#include <atomic>
#include <cstdint>

namespace tmem::pool {

struct PoolCounters {
  std::atomic<uint64_t> puts{0};
  std::atomic<uint64_t> puts_dropped{0};
  std::atomic<uint64_t> gets_hit{0};
  std::atomic<uint64_t> gets_miss{0};
  std::atomic<uint64_t> flush_page{0};
  std::atomic<uint64_t> flush_object{0};
  std::atomic<uint64_t> flush_pool{0};
};
struct EngineCounters {
  std::atomic<uint64_t> pages_evicted{0};             // stale entries met by gets
  std::atomic<uint64_t> pages_evicted_compaction{0};  // stale entries dropped by compaction
  std::atomic<uint64_t> read_errors{0};
  std::atomic<uint64_t> pools_destroyed{0};
  // Puts dropped after waiting put_wait_ms for room in the log (hung or failing device,
  // stalled flushers, a lease that cannot be renewed).
  std::atomic<uint64_t> puts_dropped_no_room{0};
  std::atomic<uint64_t> put_room_waits{0};    // times a put waited for room in the log
  std::atomic<uint64_t> put_room_wait_us{0};  // and for how long in all
  // Puts dropped without trying because the index had a background error.
  std::atomic<uint64_t> puts_dropped_index_error{0};
};

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_ENGINE_COUNTERS_H_
