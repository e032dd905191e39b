// ReadPath: a cached export's reads. A line the index holds is read from the RAM tier or the
// cache device (its CRC checked); any other line from the backing store, adjacent misses in one
// read. With read caching on, lines read from the backing store are kept as clean lines
// (promoted), except in long sequential runs.
//
// Invariant: a read never returns data older than the line's newest version: a clean entry
// whose segment was reused reads the backing store (which then holds the same data), a dirty
// entry whose segment is gone or corrupt is retried against the index and answered DataLoss
// only when that version is still the newest.
//
// Thread-safety: thread-safe. Takes stripe index locks (briefly, through LineIndex) and, to
// promote, a stripe's write_mu with TryLock only (a read never waits for a writer).
#ifndef TMEM_SERVER_BLOCKCACHE_READ_PATH_H_
#define TMEM_SERVER_BLOCKCACHE_READ_PATH_H_

#include <atomic>
#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/backend/block_backend.h"
#include "server/blockcache/cache_shared.h"

namespace tmem::blockcache {

class ReadPath {
 public:
  explicit ReadPath(CacheShared& shared) : c_(shared) {}
  ReadPath(const ReadPath&) = delete;
  ReadPath& operator=(const ReadPath&) = delete;

  absl::Status Pread(void* buf, uint32_t len, uint64_t offset);
  // From the RAM tier only: kWouldWait when a line is not cached or its version not in RAM.
  absl::StatusOr<backend::BufferedOutcome> PreadBuffered(void* buf, uint32_t len, uint64_t offset);
  // The line's current contents into `out` (4 KiB): from RAM or the log when cached, else from
  // the backing store. `entry` is what the index held (nullopt when absent). For writers that
  // merge a partial line too.
  absl::Status ReadLine(uint64_t line, std::optional<LineEntry> entry, uint8_t* out);

 private:
  // The RAM tier's copy of `entry`'s version into `out`; false when it holds none.
  bool ReadRam(const LineEntry& entry, uint8_t* out, bool count_hit = true);
  // Whether lines [first, first+count) of a read should be promoted (not a long sequential run).
  bool ShouldPromote(uint64_t first, uint64_t count);
  // Keeps `data` (the line's contents, just read from the backing store) as a clean line,
  // unless a writer holds the stripe or the line got cached meanwhile.
  void Promote(uint64_t line, const uint8_t* data);
  void PromoteLocked(LineIndex::Stripe& s, uint64_t line, const uint8_t* data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.write_mu);

  CacheShared& c_;
  // Sequential-run detection for read caching: where the last read ended and how long its run
  // has been (lines). Relaxed: a race only misjudges one read's run.
  std::atomic<uint64_t> read_run_end_{UINT64_MAX};
  std::atomic<uint64_t> read_run_lines_{0};
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_READ_PATH_H_
