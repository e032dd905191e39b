// What the parts of one block cache share: its devices, log, line index, RAM tier, failure
// state, tunables and counters. BlockCache owns it; the read path, the write path, the group
// commit and the migrator borrow it.
#ifndef TMEM_SERVER_BLOCKCACHE_CACHE_SHARED_H_
#define TMEM_SERVER_BLOCKCACHE_CACHE_SHARED_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/latency_histogram.h"
#include "common/mutex.h"
#include "server/blockcache/format.h"
#include "server/blockcache/line_index.h"
#include "server/blockcache/options.h"
#include "server/blockcache/ram_tier.h"
#include "server/log/segment_log.h"

namespace tmem::blockcache {

// The failed state: once the cache device lost a write, writes and flushes answer with the
// reason and nothing is served from an older version.
class Failure {
 public:
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // OK, or Internal naming the failure.
  absl::Status status() const;
  std::string reason() const;
  // The first call wins; returns true when this call set it.
  bool Set(const std::string& why);

 private:
  // Set once (release) after `why_` is written; read without the lock (acquire).
  std::atomic<bool> failed_{false};
  mutable Mutex mu_;
  bool set_ ABSL_GUARDED_BY(mu_) = false;
  std::string why_ ABSL_GUARDED_BY(mu_);
};

// The tunables, read by the parts at each use.
class TunableState {
 public:
  explicit TunableState(const Tunables& t) : t_(t) {}
  Tunables get() const {
    MutexLock lock(&mu_);
    return t_;
  }
  void set(const Tunables& t) {
    MutexLock lock(&mu_);
    t_ = t;
  }

 private:
  mutable Mutex mu_;  // a leaf
  Tunables t_ ABSL_GUARDED_BY(mu_);
};

// Relaxed counters (stats only; no decision reads them except where noted).
struct CacheCounters {
  std::atomic<uint64_t> read_hits{0}, read_misses{0}, read_promotions{0}, write_lines{0};
  std::atomic<uint64_t> flushes{0}, syncs{0}, migrated_lines{0}, migrated_bytes{0}, migration_errors{0};
  std::atomic<uint64_t> copied_forward_lines{0}, ram_mismatches{0}, full_write_failures{0};
  std::atomic<uint64_t> written_back_bytes{0};  // as each write-back write succeeds (before its commit)
  std::atomic<uint64_t> recovered_segments{0}, recovered_lines{0}, recovery_torn_pages{0};
  LatencyHistogram flush_latency;
};

struct CacheShared {
  CacheShared(const BlockCacheOptions& o, Clock* c)
      : options(o),
        device(o.cache_device),
        backing(o.backing),
        clock(c),
        index(c),
        ram(o.ram_cache_bytes, kLineBytes),
        tunables(o.tunables) {}

  std::string Describe() const { return absl::StrCat("cache ", device->Describe(), " over ", backing->Describe()); }
  // Fails the cache (logged once).
  void Fail(const std::string& why);
  // Foreground load (a read or a write) happened now: background migration waits for a pause.
  void NoteForegroundIo() { last_io_ns.store(clock->NowNanos(), std::memory_order_relaxed); }

  const BlockCacheOptions options;
  io::BlockDevice* const device;
  backend::BlockBackend* const backing;
  Clock* const clock;
  uint64_t size = 0;                     // the export's bytes; set by Open, then const
  std::unique_ptr<log::SegmentLog> log;  // set by Open (after recovery), then const until close
  LineIndex index;
  RamTier ram;
  Failure failure;
  TunableState tunables;
  CacheCounters counters;
  // Watermarks (monotonic; release on store, acquire on load).
  std::atomic<uint64_t> synced_seq{0};    // every segment up to this is on the device and synced
  std::atomic<uint64_t> migrated_seq{0};  // every segment up to this is in the backing store
  // The foreground's last read or write (migration's idle test); relaxed.
  std::atomic<int64_t> last_io_ns{0};
  // First migration failure since the last success (0: none); written by the migrator, read by
  // writers waiting for room; relaxed.
  std::atomic<int64_t> migration_failing_since_ns{0};
  // Set by CancelWaits (a stop): writers waiting for room give up with an error (release/acquire).
  std::atomic<bool> cancel_waits{false};
};

// `s`, its message prefixed with `what` (for I/O errors of the backing store or the device).
inline absl::Status Io(const absl::Status& s, const std::string& what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, ": ", std::string(s.message())));
}

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_CACHE_SHARED_H_
