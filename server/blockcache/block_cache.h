// BlockCache: a log-structured writeback cache in the manner of dm-lc, as an NBD BlockBackend.
//
// Writes go to 4 KiB cache lines appended to a segment log on the cache device (one dirty bit
// per 512-byte sector) and are acknowledged once in a RAM write buffer. FLUSH and FUA seal the
// open buffer, wait for its segment write and sync the cache device; concurrent flushes share
// one sync (group commit), optionally waiting `barrier_deadline_us` for more to join. A
// migration thread writes dirty lines back to the backing store in batches sorted by offset,
// syncs the backing store, then records the last migrated segment in the cache device's
// owner record; only then may the log reuse those segments.
//
// Recovery (every Open): every segment newer than the recorded one whose header and slot table
// are valid is replayed into the backing store in sequence order, each page only if its own
// CRC holds (a torn segment write leaves old data under a valid table), the backing store is
// synced and the record moved past them. What was acknowledged by a completed FLUSH is in a
// synced segment, so it survives a crash or a power cut; unsynced segments add only data that
// was really written.
//
// Durability contract (DESIGN.md, "Contract: block exports"): a write acknowledged before a
// completed Flush, or written with FUA, survives kill -9 and a power cut of the cache device;
// every read returns the latest write of every byte.
//
// Failure: a failed write to the cache device puts the cache in a failed state — writes and
// flushes answer EIO with the reason, reads of lines whose newest data was lost answer EIO —
// and nothing is ever served from an older version. A failing backing store stops migration
// (retried with backoff, counted); the export stays readable and writable while the cache has
// room; when it has none, writers wait, and fail with EIO only once write-back has failed for
// full_write_timeout_ms without a success.
//
// Thread-safety: every public method is thread-safe.
// Lock order: Stripe::write_mu -> Stripe::index_mu -> segs_mu_; flush_mu_ and migrate_mu_ are
// taken with none of the others held. The log's own locks are leaves below all of these.
// A writer that finds the log full lets go of write_mu before it waits for room (and merges
// again after), so migration — which takes index_mu, and write_mu to copy a line forward — is
// never held up by the writers waiting for it: whoever holds write_mu finishes without it.
#ifndef TMEM_SERVER_BLOCKCACHE_BLOCK_CACHE_H_
#define TMEM_SERVER_BLOCKCACHE_BLOCK_CACHE_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/blockcache/ram_tier.h"
#include "server/io/block_device.h"
#include "server/log/segment_log.h"
#include "server/nbd/block_backend.h"

namespace tmem::blockcache {

inline constexpr uint32_t kLineBytes = 4096;
inline constexpr uint32_t kSectorBytes = 512;
inline constexpr uint32_t kSectorsPerLine = kLineBytes / kSectorBytes;

struct BlockCacheOptions {
  io::BlockDevice* cache_device = nullptr;  // borrowed; must outlive the cache
  nbd::BlockBackend* backing = nullptr;     // borrowed; its size must be a multiple of 4 KiB
  // A cache device that holds anything but this export's cache (zero-filled is fine) is
  // refused unless `format`, which discards what it holds.
  bool format = false;
  uint32_t segment_bytes = 1 << 20;  // when formatting
  log::LogOptions log;
  // Runtime tunables (SetTunables).
  int64_t barrier_deadline_us = 0;    // a flush waits this long for others to share its sync
  uint32_t migrate_batch_segments = 8;
  // Migration runs when the foreground (reads and writes) has been idle this long, at once when
  // fewer than `migrate_free_segments_low` segments remain free, and regardless of load once the
  // oldest dirty line has waited `migrate_max_age_ms` (0: no bound); in between it waits.
  int64_t migrate_idle_ms = 50;
  uint32_t migrate_free_segments_low = 0;  // 0: a quarter of the log
  int64_t migrate_max_age_ms = 30'000;
  int64_t migrate_retry_ms = 200;          // after a backing store error
  // A write that finds the cache full waits for migration to make room, as long as it takes
  // while migration makes progress (a slow store); once migration has failed for this long
  // without a success (the store is down), such a write fails with EIO instead of hanging.
  int64_t full_write_timeout_ms = 60'000;
  // Copy-forward cleaning: when the log runs low on room while the foreground is busy and the
  // dirty lines would fill at most half of the log, the oldest segments' still-newest dirty
  // lines are appended again at the head (into a reserve of segments only this may use) instead
  // of being written to the backing store, so writes go on at the cache device's speed; idle
  // time, MigrateNow and Drain still write everything back.
  bool copy_forward = true;
  // Read caching (off by default): lines read from the backing store are kept in the cache as
  // clean lines, except in sequential runs longer than `read_cache_threshold_lines` (a scan
  // would evict what is worth keeping; dm-writeboost's read_cache_threshold).
  bool read_cache = false;
  uint32_t read_cache_threshold_lines = 32;
  // RAM tier (0: none): a copy in RAM of up to this many bytes of recently written and read
  // lines, so that reads of hot lines need no device read (see ram_tier.h). Volatile: it only
  // spares reads, durability never depends on it.
  uint64_t ram_cache_bytes = 0;
};

struct BlockCacheStatus {
  uint64_t dirty_lines = 0;
  uint64_t cached_lines = 0;
  uint64_t head_seq = 0;       // newest segment handed out
  uint64_t synced_seq = 0;     // every segment up to this is on the device and synced
  uint64_t migrated_seq = 0;   // every segment up to this is in the backing store
  uint64_t free_segments = 0;
  uint64_t segment_count = 0;
  uint64_t read_hits = 0;      // lines read from the cache
  uint64_t read_misses = 0;    // lines read from the backing store
  uint64_t read_promotions = 0;  // of those, kept in the cache (read caching)
  uint64_t ram_hits = 0;         // lines read from the RAM tier (counted in read_hits too)
  uint64_t ram_bytes = 0;        // RAM tier in use
  uint64_t ram_capacity_bytes = 0;
  uint64_t ram_mismatches = 0;   // RAM copies that failed their CRC (a bug; the log was read)
  uint64_t ram_evictions = 0;    // entries the RAM tier dropped to make room
  uint64_t full_write_failures = 0;  // writes failed because the cache was full and the store down
  int64_t oldest_dirty_age_ns = 0;  // since the oldest segment not yet migrated got its first line
  uint64_t write_lines = 0;
  uint64_t flushes = 0;        // Flush calls (and FUA writes)
  uint64_t syncs = 0;          // cache device syncs they caused
  uint64_t migrated_lines = 0;
  uint64_t relocated_lines = 0;  // copied forward within the cache instead of written back
  uint64_t migrated_bytes = 0;
  uint64_t migration_errors = 0;
  uint64_t recovered_segments = 0;  // replayed by the last Open
  uint64_t recovered_lines = 0;
  uint64_t recovery_torn_pages = 0;  // pages skipped by recovery (CRC mismatch)
  bool failed = false;
  std::string failure;
};

class BlockCache final : public nbd::BlockBackend {
 public:
  // Opens (formatting a zero-filled device) and recovers. Errors: FailedPrecondition for a
  // device that holds something else or belongs to a backing store of another size,
  // InvalidArgument for bad options, the backing store's or device's I/O errors.
  static absl::StatusOr<std::unique_ptr<BlockCache>> Open(const BlockCacheOptions& options);
  // Open for a cache that owns its device and backing store (options' pointers are taken from
  // these); they are closed after the cache.
  static absl::StatusOr<std::unique_ptr<BlockCache>> OpenOwning(std::unique_ptr<io::BlockDevice> device,
                                                                std::unique_ptr<nbd::BlockBackend> backing,
                                                                BlockCacheOptions options);
  // Syncs the cache device (so that every acknowledged write survives), stops migration and
  // the log. Dirty data stays on the cache device for the next Open.
  ~BlockCache() override;

  uint64_t size() const override { return size_; }
  nbd::BackendCaps caps() const override;
  absl::Status Pread(void* buf, uint32_t len, uint64_t offset) override;
  absl::Status Pwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) override;
  // Unavailable for a write that is not whole lines, or when the log has no room.
  absl::Status PwriteBuffered(const void* buf, uint32_t len, uint64_t offset) override;
  // From the RAM tier only: Unavailable when a line is not cached or its version not in RAM.
  absl::Status PreadBuffered(void* buf, uint32_t len, uint64_t offset) override;
  absl::Status Flush() override;
  absl::Status Trim(uint64_t offset, uint64_t len, bool fua) override;
  absl::Status Zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override;
  std::string Describe() const override;

  // Migrates every segment written so far (flushing first), and returns when done or failed.
  absl::Status MigrateNow();
  // Flushes and migrates until no dirty line remains; the backing store then holds exactly
  // the export's contents (seed 002's lc-detach). Writes that race with it may leave some.
  absl::Status Drain();

  struct Tunables {
    int64_t barrier_deadline_us;
    uint32_t migrate_batch_segments;
    int64_t migrate_idle_ms;
    uint32_t migrate_free_segments_low;
    int64_t migrate_max_age_ms;
  };
  Tunables tunables() const;
  // InvalidArgument for a zero batch or negative times.
  absl::Status SetTunables(const Tunables& t);

  BlockCacheStatus status() const;
  void VisitStats(StatsVisitor& visitor, const StatLabels& labels) const;

 private:
  struct Entry {
    uint64_t seq = 0;
    uint32_t offset = 0;
    uint32_t crc = 0;
    uint8_t dirty = 0;  // bit i: sector i differs from the backing store
  };
  struct Stripe {
    Mutex write_mu;  // serialises writers of this stripe's lines across read-modify-append
    mutable Mutex index_mu ABSL_ACQUIRED_AFTER(write_mu);
    absl::flat_hash_map<uint64_t, Entry> lines ABSL_GUARDED_BY(index_mu);
  };
  static constexpr size_t kStripes = 64;

  explicit BlockCache(const BlockCacheOptions& options);
  absl::Status Recover(uint64_t migrated_seq);
  // Lines go to stripes in runs of kStripeLines (1 MiB), so that a large write takes one or two
  // stripe locks and large writes to different places do not wait for each other.
  static constexpr uint64_t kStripeLines = 256;
  static size_t StripeIndex(uint64_t line) { return ((line / kStripeLines) * 0x9E3779B97F4A7C15ull) >> 58; }
  Stripe& StripeOf(uint64_t line) { return stripes_[StripeIndex(line)]; }
  // The line's current contents into `out` (4 KiB): from the log when cached, else from the
  // backing store. `entry` is what the index held (nullopt when absent).
  absl::Status ReadLine(uint64_t line, std::optional<Entry> entry, uint8_t* out);
  // The RAM tier's copy of `entry`'s version into `out`; false when it holds none.
  bool ReadRam(const Entry& entry, uint8_t* out, bool count_hit = true);
  std::optional<Entry> Lookup(uint64_t line) const;
  // Without `may_wait`, both answer Unavailable where they would wait for room (WaitForRoom).
  absl::Status WriteLine(uint64_t line, const uint8_t* data, uint32_t begin, uint32_t end, bool may_wait);
  // Writes `count` whole lines from `first` (data: count * 4 KiB), all in one stripe, under its
  // lock and with one log append per segment: the path of large writes.
  absl::Status WriteWholeLines(uint64_t first, uint32_t count, const uint8_t* data, bool may_wait);
  // Pwrite without FUA; `may_wait` as above (and partial lines are Unavailable without it).
  absl::Status WriteRange(const uint8_t* in, uint32_t len, uint64_t offset, bool may_wait);
  // Publishes `n` lines just appended to one segment (from `first`, at `locs`, whole contents
  // `data`, each with `mask` as its dirty bits): RAM tier, index, the segment's line list, then
  // the unpin. The stripe's write_mu is held.
  void Publish(Stripe& s, uint64_t first, size_t n, const log::Location* locs, const uint32_t* crcs, uint8_t mask,
               const uint8_t* data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.write_mu);
  // After an append found the log full (`generation` from it): waits, with no lock held, for the
  // log to make progress (up to a second; the caller retries). Unavailable once write-back has
  // failed for full_write_timeout_ms.
  absl::Status WaitForRoom(uint64_t generation);
  // Read caching: keeps `data` (line's contents, just read from the backing store) as a clean
  // line, unless the line got cached meanwhile.
  void Promote(uint64_t line, const uint8_t* data);
  // Whether lines [first, first+count) of a read should be promoted (not a long sequential run).
  bool ShouldPromote(uint64_t first, uint64_t count);
  absl::Status FailedStatus() const;
  void Fail(const std::string& why);
  // Flush's work: every segment handed out so far on the device and synced (group commit).
  absl::Status SyncAll();
  absl::Status WriteRecord(uint64_t migrated_seq);
  // One migration batch: up to `max_segments` flushed segments. Sets *progress when it moved.
  // With `relocate`, dirty lines are copied forward in the log where possible (see
  // BlockCacheOptions::copy_forward) and written back otherwise.
  absl::Status MigrateBatch(uint32_t max_segments, bool relocate, bool* progress);
  // Appends `data`, line's current version (`entry`), again at the head of the log; false when
  // a writer holds the line's stripe, the line changed, or there is no room.
  bool Relocate(uint64_t line, const Entry& entry, const uint8_t* data);
  void MigratorLoop();

  // Owned by OpenOwning's caches; destroyed after everything below (declared first).
  std::unique_ptr<io::BlockDevice> owned_device_;
  std::unique_ptr<nbd::BlockBackend> owned_backing_;

  const BlockCacheOptions options_;
  io::BlockDevice* const device_;
  nbd::BlockBackend* const backing_;
  uint64_t size_ = 0;
  Clock* clock_ = nullptr;
  std::unique_ptr<log::SegmentLog> log_;
  log::LogGeometry geometry_;
  uint64_t record_generation_ = 0;  // guarded by migrate_mu_ after Open

  std::unique_ptr<Stripe[]> stripes_;
  RamTier ram_;

  // Lines appended to each segment not yet migrated (a line may appear more than once), and
  // when the segment got its first one (a line copied forward starts a new age).
  struct SegLines {
    int64_t first_ns = 0;
    std::vector<uint64_t> lines;
  };
  mutable Mutex segs_mu_ ABSL_ACQUIRED_AFTER(Stripe::index_mu);
  std::map<uint64_t, SegLines> seg_lines_ ABSL_GUARDED_BY(segs_mu_);
  // Records that `line` was appended to segment `seq` (segs_mu_ held).
  void NoteSegmentLine(uint64_t seq, uint64_t line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(segs_mu_);
  int64_t OldestDirtyAgeNs() const;

  // Group commit of flushes.
  mutable Mutex flush_mu_;
  CondVar flush_cv_;
  bool flushing_ ABSL_GUARDED_BY(flush_mu_) = false;
  std::atomic<uint64_t> synced_seq_{0};

  // Migration: one batch at a time (the thread, MigrateNow and Drain take turns).
  Mutex migrate_mu_;
  mutable Mutex wake_mu_;
  CondVar wake_cv_;
  bool stopping_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool kicked_ ABSL_GUARDED_BY(wake_mu_) = false;
  std::atomic<uint64_t> migrated_seq_{0};
  std::atomic<int64_t> last_io_ns_{0};  // the foreground's last read or write (migration throttle)
  std::atomic<int64_t> migration_failing_since_ns_{0};  // first failure since the last success; 0: none
  std::thread migrator_;

  mutable Mutex tunables_mu_;
  Tunables tunables_ ABSL_GUARDED_BY(tunables_mu_);

  // Sequential-run detection for read caching: where the last read ended and how long its run
  // has been (lines).
  std::atomic<uint64_t> read_run_end_{UINT64_MAX};
  std::atomic<uint64_t> read_run_lines_{0};

  std::atomic<bool> failed_{false};
  mutable Mutex failure_mu_;
  std::string failure_ ABSL_GUARDED_BY(failure_mu_);

  struct Counters {
    std::atomic<uint64_t> dirty_lines{0}, cached_lines{0}, read_hits{0}, read_misses{0}, write_lines{0};
    std::atomic<uint64_t> flushes{0}, syncs{0}, migrated_lines{0}, migrated_bytes{0}, migration_errors{0};
    std::atomic<uint64_t> read_promotions{0}, relocated_lines{0}, ram_mismatches{0}, full_write_failures{0};
    std::atomic<uint64_t> recovered_segments{0}, recovered_lines{0}, recovery_torn_pages{0};
    // Flush latency histogram: counts per bucket of kFlushBuckets (last: above all), sum in ns.
    std::atomic<uint64_t> flush_buckets[14] = {};
    std::atomic<uint64_t> flush_ns_sum{0};
  };
  static constexpr double kFlushBuckets[13] = {100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3,
                                               25e-3,  50e-3,  100e-3, 250e-3, 1.0,   2.5};
  Counters counters_;
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_BLOCK_CACHE_H_
