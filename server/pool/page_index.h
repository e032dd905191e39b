// PageIndex: the RocksDB stores under the page pool engine.
//
// Two stores in the metadata directory:
//   metadata (the directory itself) — engine state record, pool records, shared-pool UUID map,
//               written with the WAL and fsync: pool definitions survive any crash.
//   pages (its "pages" subdirectory) — the page index (index_codec.h), written without the WAL
//               and never synced while tmemd runs: after an unclean stop every page is dropped
//               and the store is created anew (DropAllPages), so a sync would buy nothing, and
//               each one makes the device write back what it holds, the page log's segments
//               with it, stalling them. CloseClean (a clean stop) closes the store and fsyncs
//               its files once. A store that does not open (files cut short by a power loss)
//               is created anew.
// A compaction filter on "pages" drops the entries the owner calls stale (reclaimed segments,
// destroyed pools), so the index shrinks back towards the live pages without a scan.
//
// Write-behind: page entry writes (puts, point deletes) land in a PendingPages set and return;
// a writer thread applies them to RocksDB in one batch when `write_behind_batch` wait or every
// `write_behind_interval_ms`, and a write that finds `write_behind_max` waiting applies them
// itself (back-pressure). Reads look in the pending set first, so a write is visible once it
// returns, exactly as before. Range deletes, drops, flushes, counts and scans are ordered
// against pending writes under apply_mu_ (see each method). After an unclean stop pending
// writes are lost, which is harmless: every page is dropped then; a clean stop (FlushPages, the
// destructor) applies them first.
//
// Background errors (a flush or compaction that met ENOSPC or EIO) stop RocksDB's writes until
// DB::Resume(): a listener records the error, and a resumer thread retries Resume() with backoff
// (resume_backoff_min_ms doubling to resume_backoff_max_ms) until it succeeds; meanwhile
// background_error() says why writes fail (the engine drops puts and turns not serving).
//
// Thread-safety: all methods are thread-safe (RocksDB's own guarantees; error_mu_ is a leaf,
// never held across a RocksDB call).
#ifndef TMEM_SERVER_POOL_PAGE_INDEX_H_
#define TMEM_SERVER_POOL_PAGE_INDEX_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/pool/pending_pages.h"

namespace rocksdb {
class Cache;
class ColumnFamilyHandle;
class DB;
class Env;
class EventListener;
class Statistics;
}  // namespace rocksdb

namespace tmem::pool {

struct PageIndexOptions {
  std::string dir;
  size_t block_cache_bytes = 16 << 20;
  size_t write_buffer_bytes = 8 << 20;
  // Called from RocksDB compaction threads with a page key and its raw value; true drops the
  // entry. Must stay callable until the PageIndex is destroyed.
  std::function<bool(std::string_view key, std::string_view value)> is_stale;
  int64_t resume_backoff_min_ms = 100;
  int64_t resume_backoff_max_ms = 10'000;
  // Write-behind (above). write_behind_max 0: every page write goes to RocksDB before it returns.
  size_t write_behind_batch = 1024;
  size_t write_behind_max = 16384;
  int64_t write_behind_interval_ms = 5;
};

class PageIndex {
 public:
  // Creates the store if `dir` holds none. Errors: the RocksDB status, converted (Internal for
  // I/O errors, DataLoss for corruption, FailedPrecondition when another process holds it).
  static absl::StatusOr<std::unique_ptr<PageIndex>> Open(const PageIndexOptions& options);
  ~PageIndex();
  PageIndex(const PageIndex&) = delete;
  PageIndex& operator=(const PageIndex&) = delete;

  // Pages ("pages" column family, no WAL). Puts and point deletes are written behind (above):
  // they fail only when RocksDB refuses writes and 2 x write_behind_max are already waiting
  // (then nothing of the call is recorded).
  absl::Status PutPage(std::string_view key, std::string_view value);
  // nullopt when absent.
  absl::StatusOr<std::optional<std::string>> GetPage(std::string_view key);
  // GetPage for many keys in one RocksDB MultiGet; results[i] answers keys[i].
  std::vector<absl::StatusOr<std::optional<std::string>>> MultiGetPages(std::span<const std::string> keys);
  absl::Status DeletePage(std::string_view key);
  // Applies puts (value set) and deletes (no value) in order: as one RocksDB write when written
  // through; written behind, each is visible once recorded (no caller needs the batch atomic).
  absl::Status WritePages(std::span<const std::pair<std::string, std::optional<std::string>>> ops);
  // The same without owning the bytes (the put path builds these without allocating).
  struct PageWrite {
    std::string_view key;
    std::optional<std::string_view> value;  // nullopt: a delete
  };
  absl::Status WritePages(std::span<const PageWrite> ops);
  // Range deletes turn pending puts of the range into pending deletes, then delete in RocksDB,
  // with no pending write applied in between (apply_mu_).
  // `then` runs under the same lock after the delete (also when it failed): the engine moves a
  // pool's cache generation there, so that no write-back (WriteBack) comes between the two.
  absl::Status DeletePageRange(
      std::string_view begin, std::string_view end, absl::FunctionRef<void()> then = [] {})
      ABSL_LOCKS_EXCLUDED(apply_mu_);
  // Deletes every page key in [begin, end). Looks first: an empty range writes nothing, up to
  // `max_point_deletes` keys become point deletes, more become one range delete. Range
  // tombstones slow every later read until compaction removes them, and most invalidations
  // (the kernel's flush_inode for each evicted inode) name objects with no cached pages.
  // Returns the number of keys seen (capped at max_point_deletes + 1).
  // `then` as for DeletePageRange (the engine erases the object from its RAM cache there).
  absl::StatusOr<uint64_t> DeletePagesIn(
      std::string_view begin, std::string_view end, uint32_t max_point_deletes, absl::FunctionRef<void()> then = [] {})
      ABSL_LOCKS_EXCLUDED(apply_mu_);
  // Write-back of entries held elsewhere (the engine's RAM cache): `fn` runs under the apply
  // lock and hands each entry to `write`, which records it as a pending put (no bound checked:
  // call ReserveWrites first). Range deletes never run while `fn` does.
  void WriteBack(
      absl::FunctionRef<void(absl::FunctionRef<void(std::string_view key, std::string_view value)> write)> fn)
      ABSL_LOCKS_EXCLUDED(apply_mu_);
  // Room for `n` more pending writes (applies inline at the bound, as a put does).
  absl::Status ReserveWrites(size_t n) ABSL_LOCKS_EXCLUDED(apply_mu_) { return MakeRoom(n); }
  // Drops every page: the page store is removed and created empty. Only before the index serves
  // any page call (the engine calls it at start after an unclean stop).
  absl::Status DropAllPages() ABSL_LOCKS_EXCLUDED(apply_mu_);
  // Pending writes to RocksDB, then memtables of "pages" to SST files.
  absl::Status FlushPages();
  // A clean stop: FlushPages, close the page store, fsync its files and its directory. No page
  // method may be called afterwards; the metadata methods still work.
  absl::Status CloseClean() ABSL_LOCKS_EXCLUDED(apply_mu_);
  // Pending writes to RocksDB now (the writer does it on its own).
  absl::Status ApplyPending() ABSL_LOCKS_EXCLUDED(apply_mu_);
  size_t pending_writes() const { return pending_.size(); }
  // Full compaction of "pages" (tests, maintenance).
  absl::Status CompactPages();
  // Exact count by iteration (tests, tools; O(entries)).
  absl::StatusOr<uint64_t> CountPages();
  // Calls `fn` with every page entry, in key order (at start; O(entries)).
  absl::Status ForEachPage(const std::function<void(std::string_view key, std::string_view value)>& fn);

  // Metadata ("default" column family, WAL + fsync).
  absl::StatusOr<std::optional<std::string>> GetMeta(std::string_view key);
  // Applies every put, then every delete, atomically and durably.
  absl::Status WriteMeta(const std::vector<std::pair<std::string, std::string>>& puts,
                         const std::vector<std::string>& deletes);
  // Every (key, value) whose key starts with `prefix`, in key order.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ScanMeta(std::string_view prefix);

  void VisitStats(StatsVisitor& visitor) const;

  // The background error that stops writes now (OK: none). Cheap: one atomic load when none.
  absl::Status background_error() const ABSL_LOCKS_EXCLUDED(error_mu_);
  bool has_background_error() const { return has_error_.load(std::memory_order_acquire); }
  // One Resume() now (the resumer does it on its own); OK when the error cleared.
  absl::Status ResumeNow() ABSL_LOCKS_EXCLUDED(error_mu_);
  uint64_t background_errors_seen() const { return errors_seen_.load(std::memory_order_relaxed); }
  uint64_t resumes() const { return resumes_.load(std::memory_order_relaxed); }
  // Syncs of page store files skipped (see above).
  uint64_t syncs_skipped() const { return syncs_skipped_.load(std::memory_order_relaxed); }

 private:
  class ErrorListener;
  static std::shared_ptr<rocksdb::EventListener> NewErrorListener(PageIndex* index);
  PageIndex() = default;
  absl::Status OpenMetaStore();
  absl::Status OpenPageStore();
  void ClosePageStore();
  void StopWriter() ABSL_LOCKS_EXCLUDED(writer_mu_);
  void RecordError(const std::string& what) ABSL_LOCKS_EXCLUDED(error_mu_);
  void ResumerLoop() ABSL_LOCKS_EXCLUDED(error_mu_);
  // One batch of every pending write. On failure the writes stay pending.
  absl::Status ApplyPendingLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);
  // Room for `n` more pending writes: applies them inline at write_behind_max; refuses (the
  // error) at twice that if RocksDB still refuses.
  absl::Status MakeRoom(size_t n) ABSL_LOCKS_EXCLUDED(apply_mu_);
  void Kick();  // wakes the writer once the batch size is reached
  void WriterLoop() ABSL_LOCKS_EXCLUDED(writer_mu_, apply_mu_);
  bool write_behind() const { return options_.write_behind_max > 0; }
  absl::Status RocksDeleteRange(std::string_view begin, std::string_view end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);
  absl::Status RocksFlush() ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);
  absl::StatusOr<uint64_t> DeletePagesInLocked(std::string_view begin, std::string_view end, uint32_t max_point_deletes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);

  PageIndexOptions options_;
  std::shared_ptr<rocksdb::Cache> cache_;
  std::shared_ptr<rocksdb::EventListener> listener_;  // background errors of both stores
  std::unique_ptr<rocksdb::DB> db_;                   // the metadata store
  rocksdb::ColumnFamilyHandle* meta_cf_ = nullptr;    // owned by db_
  std::unique_ptr<rocksdb::Env> pages_env_;           // files without syncs; outlives pages_db_
  std::unique_ptr<rocksdb::DB> pages_db_;             // the page store (replaced only by DropAllPages)
  rocksdb::ColumnFamilyHandle* pages_cf_ = nullptr;   // pages_db_'s default column family

  mutable Mutex error_mu_;
  CondVar error_cv_;                                          // an error was recorded, or the index is closing
  std::string error_ ABSL_GUARDED_BY(error_mu_);              // empty: none
  uint64_t error_generation_ ABSL_GUARDED_BY(error_mu_) = 0;  // errors recorded so far
  bool closing_ ABSL_GUARDED_BY(error_mu_) = false;
  std::atomic<bool> has_error_{false};  // !error_.empty(), for the put path (release/acquire)
  std::atomic<uint64_t> errors_seen_{0};
  std::atomic<uint64_t> resumes_{0};
  std::atomic<uint64_t> syncs_skipped_{0};  // the page store is closed in the destructor body, before this goes
  std::thread resumer_;                     // started in Open, joined in the destructor before the DB closes

  // Write-behind. Lock order: apply_mu_ (held across the applier's RocksDB write) before a
  // PendingPages shard; writer_mu_ is a leaf.
  PendingPages pending_;
  Mutex apply_mu_;
  Mutex writer_mu_;
  CondVar writer_cv_;
  bool writer_stop_ ABSL_GUARDED_BY(writer_mu_) = false;
  std::atomic<bool> writer_kicked_{false};
  std::atomic<uint64_t> batches_applied_{0}, entries_applied_{0}, inline_applies_{0}, apply_failures_{0},
      writes_refused_{0};
  std::thread writer_;  // started in Open, joined in the destructor after a last apply
};

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_PAGE_INDEX_H_
