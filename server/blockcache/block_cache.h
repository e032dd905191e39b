// BlockCache: a log-structured writeback cache in the manner of dm-lc, as a BlockBackend.
//
// Writes go to 4 KiB cache lines appended to a segment log on the cache device (one dirty bit
// per 512-byte sector) and are acknowledged once in a RAM write buffer. FLUSH and FUA seal the
// open buffer, wait for its segment write and sync the cache device; concurrent flushes share
// one sync (group commit). A migration thread writes dirty lines back to the backing store in
// batches sorted by offset, syncs the backing store, then records the last migrated segment in
// the cache device's owner record; only then may the log reuse those segments.
//
// Recovery (every Open): the segments newer than the recorded one whose header and slot table
// are valid are scanned in sequence order and the line index is rebuilt from them, each page
// only if its own CRC holds (a torn segment write leaves old data under a valid table); the
// lines they hold stay dirty and migration writes them back later. What was acknowledged by a
// completed FLUSH is in a synced segment, so it survives a crash or a power cut; unsynced
// segments add only data that was really written.
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
// The parts, each in its own file: the cache record (cache_record.h), the line index
// (line_index.h), the read path (read_path.h), the write path (write_path.h), the group commit
// of flushes (group_commit.h), the migrator (migrator.h) and its policy (migration_policy.h);
// what they share is in cache_shared.h. This class opens and recovers, and is the facade.
//
// Thread-safety: every public method is thread-safe.
// Lock order: a stripe's write_mu -> its index_mu -> the index's segment lock (line_index.h);
// the migrator's batch lock is taken before a stripe's write_mu; the group commit's lock, the
// migrator's wake lock, the tunables' and the failure's are leaves. The log's own locks are
// leaves below all of these.
#ifndef TMEM_SERVER_BLOCKCACHE_BLOCK_CACHE_H_
#define TMEM_SERVER_BLOCKCACHE_BLOCK_CACHE_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/stats.h"
#include "server/backend/block_backend.h"
#include "server/blockcache/format.h"
#include "server/blockcache/options.h"

namespace tmem::blockcache {

struct CacheShared;
class CacheRecordWriter;
class GroupCommit;
class Migrator;
class ReadPath;
class WritePath;

struct BlockCacheStatus {
  uint64_t dirty_lines = 0;
  uint64_t cached_lines = 0;
  uint64_t head_seq = 0;      // newest segment handed out
  uint64_t synced_seq = 0;    // every segment up to this is on the device and synced
  uint64_t migrated_seq = 0;  // every segment up to this is in the backing store
  uint64_t free_segments = 0;
  uint64_t segment_count = 0;
  uint64_t read_hits = 0;        // lines read from the cache
  uint64_t read_misses = 0;      // lines read from the backing store
  uint64_t read_promotions = 0;  // of those, kept in the cache (read caching)
  uint64_t ram_hits = 0;         // lines read from the RAM tier (counted in read_hits too)
  uint64_t ram_bytes = 0;        // RAM tier in use
  uint64_t ram_capacity_bytes = 0;
  uint64_t ram_mismatches = 0;       // RAM copies that failed their CRC (a bug; the log was read)
  uint64_t ram_evictions = 0;        // entries the RAM tier dropped to make room
  uint64_t full_write_failures = 0;  // writes failed because the cache was full and the store down
  int64_t oldest_dirty_age_ns = 0;   // since the oldest segment not yet migrated got its first line
  uint64_t write_lines = 0;
  uint64_t flushes = 0;  // Flush calls (and FUA writes)
  uint64_t syncs = 0;    // cache device syncs they caused
  uint64_t migrated_lines = 0;
  uint64_t copied_forward_lines = 0;  // copied forward within the cache instead of written back
  uint64_t migrated_bytes = 0;
  uint64_t migration_errors = 0;
  uint64_t recovered_segments = 0;  // scanned by the last Open
  uint64_t recovered_lines = 0;
  uint64_t recovery_torn_pages = 0;  // pages skipped by recovery (CRC mismatch)
  bool failed = false;
  std::string failure;
};

class BlockCache final : public backend::BlockBackend {
 public:
  using Tunables = blockcache::Tunables;

  // Opens (formatting a zero-filled device) and recovers. Errors: FailedPrecondition for a
  // device that holds something else or belongs to a backing store of another size,
  // InvalidArgument for bad options, the backing store's or device's I/O errors.
  static absl::StatusOr<std::unique_ptr<BlockCache>> Open(const BlockCacheOptions& options);
  // Open for a cache that owns its device and backing store (options' pointers are taken from
  // these); they are closed after the cache.
  static absl::StatusOr<std::unique_ptr<BlockCache>> OpenOwning(std::unique_ptr<io::BlockDevice> device,
                                                                std::unique_ptr<backend::BlockBackend> backing,
                                                                BlockCacheOptions options);
  // Syncs the cache device (so that every acknowledged write survives), stops migration and
  // the log. Dirty data stays on the cache device for the next Open.
  ~BlockCache() override;

  uint64_t size() const override;
  backend::BackendCaps caps() const override;
  absl::Status Pread(void* buf, uint32_t len, uint64_t offset) override;
  absl::Status Pwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) override;
  // kWouldWait for a write that is not whole lines, or when the log has no room.
  absl::StatusOr<backend::BufferedOutcome> PwriteBuffered(const void* buf, uint32_t len, uint64_t offset) override;
  // From the RAM tier only: kWouldWait when a line is not cached or its version not in RAM.
  absl::StatusOr<backend::BufferedOutcome> PreadBuffered(void* buf, uint32_t len, uint64_t offset) override;
  absl::Status Flush() override;
  // Writers waiting for room answer Unavailable (EIO) within a second (BlockBackend::CancelWaits).
  void CancelWaits() override;
  absl::Status Trim(uint64_t offset, uint64_t len, bool fua) override;
  absl::Status Zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override;
  std::string Describe() const override;

  // Migrates every segment written so far (flushing first), and returns when done or failed.
  absl::Status MigrateNow();
  // Flushes and migrates until no dirty line remains; the backing store then holds exactly
  // the export's contents (seed 002's lc-detach). Writes that race with it may leave some.
  absl::Status Drain(std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

  Tunables tunables() const;
  // InvalidArgument naming the setting and its range (cache_settings.h) when any is out of
  // range; nothing changes then.
  absl::Status SetTunables(const Tunables& t);

  BlockCacheStatus status() const;
  void VisitStats(StatsVisitor& visitor, const StatLabels& labels) const override;

 private:
  explicit BlockCache(const BlockCacheOptions& options);
  // Rebuilds the line index from the segments after `migrated_seq`.
  absl::Status Recover(uint64_t migrated_seq);

  // Owned by OpenOwning's caches; destroyed after everything below (declared first).
  std::unique_ptr<io::BlockDevice> owned_device_;
  std::unique_ptr<backend::BlockBackend> owned_backing_;

  std::unique_ptr<CacheShared> shared_;
  std::unique_ptr<CacheRecordWriter> record_;
  std::unique_ptr<GroupCommit> commit_;
  std::unique_ptr<ReadPath> reader_;
  std::unique_ptr<WritePath> writer_;
  std::unique_ptr<Migrator> migrator_;
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_BLOCK_CACHE_H_
