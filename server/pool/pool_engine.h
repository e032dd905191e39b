// PoolEngine: cleancache page pools on the segment log, indexed in RocksDB.
//
// Semantics (DESIGN.md "Contract: page pools", from the cleancache specification):
//  - pages are ephemeral: a put may be dropped and a get may miss at any time, but a get never
//    returns a page other than the last one put to that handle;
//  - a hit on a private pool removes the page (exclusive cache), a hit on a shared pool keeps it;
//  - put-put-get and get-get coherency hold per handle; puts, gets and flushes of one handle are
//    linearizable (a striped lock orders them);
//  - once FlushPage/FlushObject/FlushPool/DestroyPool returns, no get returns the flushed data,
//    also after a restart;
//  - every page read from the device is checked against its CRC32C; a mismatch is a miss;
//  - after an unclean stop every pool's pages are dropped (pool definitions stay); after a clean
//    stop (Close) they are kept.
//
// Thread-safety: every method is thread-safe.
// Lock order: ops_mu_ (shared) -> admin_mu_ -> registry_mu_ -> stripes of stripes_ (several only
// in PutMany and GetMany: at most kStripesHeld, always in ascending index order) -> the log's
// own locks and the location cache's shard locks (leaves). RocksDB and device I/O never happen
// under registry_mu_.
#ifndef TMEM_SERVER_POOL_POOL_ENGINE_H_
#define TMEM_SERVER_POOL_POOL_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/io/block_device.h"
#include "server/log/segment_log.h"
#include "server/pool/engine_counters.h"
#include "server/pool/engine_options.h"
#include "server/pool/index_codec.h"
#include "server/pool/location_cache.h"
#include "server/pool/owner_usage.h"
#include "server/pool/page_index.h"
#include "server/pool/pool_types.h"

namespace tmem::pool {

class PoolEngine {
 public:
  // Opens the log and the index. Refuses a metadata directory that belongs to another device
  // (FailedPrecondition) and every error of SegmentLog::Open and PageIndex::Open.
  static absl::StatusOr<std::unique_ptr<PoolEngine>> Open(const EngineOptions& options);
  // Without a prior Close() this is an unclean stop: the next Open drops every page.
  ~PoolEngine();
  PoolEngine(const PoolEngine&) = delete;
  PoolEngine& operator=(const PoolEngine&) = delete;

  // Writes every buffered page and index entry, then marks the stop clean so that the next
  // Open keeps the pages. Every later call fails with FailedPrecondition.
  absl::Status Close();

  // Pools, each owned by the tenant that made it (`owner`: 1 to 64 bytes). Page size: a power
  // of two from 512 to 65536 bytes, else InvalidArgument. ResourceExhausted past max_pools, or
  // past the owner's max_pools_of (the message says which).
  absl::StatusOr<PoolId> CreatePool(uint32_t page_bytes, std::string_view owner = kDefaultOwner);
  // The same id for the same (owner, uuid); InvalidArgument if it exists with another page size.
  // Another owner's pool of the same UUID is another pool.
  absl::StatusOr<PoolId> CreateSharedPool(const Uuid& uuid, uint32_t page_bytes,
                                          std::string_view owner = kDefaultOwner);
  // Frees every page of the pool and forgets it. NotFound for an unknown pool.
  absl::Status DestroyPool(PoolId pool);
  // Every pool, or only those of `owner`.
  std::vector<PoolInfo> ListPools(std::optional<std::string_view> owner = std::nullopt) const;
  absl::StatusOr<PoolInfo> GetPoolInfo(PoolId pool) const;
  // The pool if `owner` owns it. Another owner's pool is NotFound with the very message of a pool
  // that does not exist: ids reveal nothing to other tenants. Pool ids are never reused and
  // owners never change, so a caller that checked ownership once may act on the id.
  absl::StatusOr<PoolInfo> OwnedPool(PoolId pool, std::string_view owner) const;
  size_t PoolsOwnedBy(std::string_view owner) const;

  // A copy of one pool's counters (safe against a concurrent DestroyPool). NotFound if unknown.
  using PoolStats = pool::PoolStats;
  absl::StatusOr<PoolStats> GetPoolStats(PoolId pool) const;

  // Handle operations. Errors: NotFound (unknown or destroyed pool), InvalidArgument (page not
  // of the pool's size, object key empty or longer than 24 bytes), FailedPrecondition (closed).
  // A put that cannot be stored is dropped (still OK: pages are ephemeral) and counted.
  absl::Status Put(PoolId pool, std::string_view object, uint64_t index, std::span<const uint8_t> page);
  // Puts many pages of one pool with one index write per kStripesHeld pages. Every page is checked first: a bad one
  // rejects the whole call (InvalidArgument) and stores nothing. Of two puts to one handle in a
  // batch, the later wins. Same outcome as Put for each page otherwise.
  using PagePut = pool::PagePut;
  absl::Status PutMany(PoolId pool, std::span<const PagePut> pages);
  // On kHit `out` (exactly the pool's page size) holds the page.
  absl::StatusOr<GetOutcome> Get(PoolId pool, std::string_view object, uint64_t index, std::span<uint8_t> out);
  // Get for many handles of one pool: one index lookup (RocksDB MultiGet) and one batch of
  // device reads (SegmentLog::ReadMany) for the lot. outcomes[i] answers gets[i], as if the
  // gets ran one after another; a handle named twice in a private pool hits at most once.
  // A bad handle or buffer rejects the whole call (InvalidArgument) before anything is read.
  using PageGet = pool::PageGet;
  // With `buffer_for`, a get whose `out` is empty gets its buffer from buffer_for(i) only once its
  // page was found in the index, so that misses cost no page of memory (the gRPC reply's).
  using BufferFor = std::function<std::span<uint8_t>(size_t get)>;
  absl::StatusOr<std::vector<GetOutcome>> GetMany(PoolId pool, std::span<const PageGet> gets,
                                                  const BufferFor& buffer_for = nullptr);
  // GetMany in two halves around device reads done elsewhere (a ReadQueue from NewReadQueue):
  // StartGets checks and looks every handle up (DRAM-tier pages copied at once) and leaves the
  // reads in batch->device_reads(); once done, FinishGets settles batch->outcomes(). `gets` and
  // the buffers stay valid in between. A get is linearized at its lookup. Batches are reusable.
 private:
  struct Pool;

 public:
  class GetBatch {
   public:
    std::span<io::BlockDevice::ReadOp> device_reads() { return log_batch_.ops(); }
    const std::vector<GetOutcome>& outcomes() const { return outcomes_; }

   private:
    friend class PoolEngine;
    std::shared_ptr<Pool> pool_;
    std::vector<std::string> keys_;
    std::vector<std::optional<std::string>> raws_;
    std::vector<GetOutcome> outcomes_;
    std::vector<log::SegmentLog::PageRead> reads_;
    std::vector<size_t> read_get_;
    uint64_t gen_ = 0;
    bool exclusive_ = false;
    log::SegmentLog::ReadBatch log_batch_;
  };
  absl::Status StartGets(PoolId pool, std::span<const PageGet> gets, const BufferFor& buffer_for, GetBatch* batch);
  void FinishGets(GetBatch* batch);
  // A queue for StartGets' device reads (null: none; use GetMany).
  std::unique_ptr<io::ReadQueue> NewReadQueue() { return log_->NewReadQueue(); }
  absl::Status FlushPage(PoolId pool, std::string_view object, uint64_t index);
  absl::Status FlushObject(PoolId pool, std::string_view object);
  absl::Status FlushPool(PoolId pool);

  // Identity of this run: increases by one per open; clients use it to detect a restart.
  uint64_t instance_id() const { return log_->instance(); }
  // True when this open kept the pages of the previous run (it stopped cleanly).
  bool kept_pages_from_previous_run() const { return kept_pages_; }

  void VisitStats(StatsVisitor& visitor) const;

  // OK, or why the page index takes no writes now (a RocksDB background error; it resumes by
  // itself once the cause is gone).
  absl::Status page_index_error() const { return index_->background_error(); }

  // For tests, tools and benchmarks.
  log::SegmentLog& segment_log() { return *log_; }
  PageIndex& page_index() { return *index_; }
  // Every index entry held only in the RAM cache (write-back) to the page index now (nothing once
  // closed).
  void WriteBackIndexCache() {
    ReaderLock lock(&ops_mu_);
    if (!closed_) CleanIndexCache(/*all=*/true);
  }

  using PoolCounters = pool::PoolCounters;
  using EngineCounters = pool::EngineCounters;
  const EngineCounters& counters() const { return counters_; }
  // Per-pool counters; nullptr for an unknown pool. For single-threaded tests only: the pointer
  // dangles once the pool is destroyed. Everything else uses GetPoolStats.
  const PoolCounters* pool_counters(PoolId pool) const;

 private:
  struct Pool {
    PoolInfo info;
    PoolCounters counters;
    std::shared_ptr<OwnerUsage> usage;   // the owner's, shared by its pools; set at creation
    std::atomic<bool> destroyed{false};  // set under admin_mu_; read by every op (acquire)
    // Moves after every FlushPool/DestroyPool: cached index entries made before are dead.
    std::atomic<uint64_t> cache_gen{0};
  };

  // PutMany and GetMany lock the stripes of at most this many handles at a time.
  static constexpr size_t kStripesHeld = 32;

  PoolEngine() = default;
  absl::Status Start(const EngineOptions& options);
  absl::Status LoadPools();
  // Pages kept from the previous run count against their owners' log shares from the start.
  absl::Status CountKeptPages();
  absl::StatusOr<std::shared_ptr<Pool>> FindPool(PoolId id) const;
  static absl::Status CheckObjectKey(std::string_view object);
  absl::StatusOr<std::shared_ptr<Pool>> CheckHandle(PoolId id, std::string_view object) const;
  // InvalidArgument for a bad object key or page size among `pages`.
  absl::Status CheckPuts(const Pool& pool, std::span<const PagePut> pages) const;
  // The append step of Put and PutMany, with the stripes of `keys` (the pages' index keys) held:
  // appends the pages in order, writes their index entries in one batch, then caches them in
  // order (or removes them, so that no older version survives a failed put). Stops at the first
  // page the log has no room for now (without waiting) and returns how many pages it handled
  // (stored or dropped; *no_room_generation is then set for SegmentLog::WaitForProgress). With
  // `drop`, every page is dropped (its older version removed) without trying. Dropped pages are
  // added to *dropped; the first error goes to *error.
  size_t PutLocked(Pool& pool, std::span<const PagePut> pages, std::span<const std::string> keys, bool drop,
                   uint64_t* dropped, uint64_t* no_room_generation, absl::Status* error);
  // Put and PutMany after their checks: chunks of at most kStripesHeld pages under their
  // stripes; waits for room (no stripe held) up to put_wait_ms, then drops what is left.
  void PutPages(Pool& pool, std::span<const PagePut> pages);
  static void CountPuts(Pool& pool, uint64_t puts, uint64_t dropped, const absl::Status& error);
  Mutex& StripeFor(std::string_view key);
  // Copies a checked page into the log and returns its index value. The caller holds the
  // handle's stripe and writes the value to the index and the cache.
  // ResourceExhausted (with *no_room_generation set) when the log has no room now.
  absl::StatusOr<IndexValue> AppendPage(PoolId id, std::string_view object, uint64_t index,
                                        std::span<const uint8_t> page, uint64_t* no_room_generation);
  absl::StatusOr<PoolId> CreatePoolLocked(PoolKind kind, const Uuid& uuid, uint32_t page_bytes, std::string_view owner)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(admin_mu_);
  static absl::Status CheckOwner(std::string_view owner);
  // The end of a get once the page was read: counts the hit, or turns a failed read into a
  // miss (dropping the entry of a shared pool and zeroing `out`).
  GetOutcome SettleRead(Pool& pool, const std::string& key, const std::string& raw, bool exclusive,
                        const absl::StatusOr<log::SegmentLog::ReadOutcome>& r, std::span<uint8_t> out);
  // Index entries of many keys of one pool: from the cache where it has them, else from RocksDB
  // (one MultiGet; what it finds is cached). Private pools: every entry found is removed
  // (exclusive gets; a key named twice is found once). Holds the keys' stripes around the
  // index reads and writes, at most kStripesHeld at a time.
  // With `out_for`, a page the DRAM tier holds is copied into out_for(i) at once and
  // (*from_ram)[i] set: no device read is needed for it.
  absl::StatusOr<std::vector<std::optional<std::string>>> LookupMany(
      Pool& pool, const std::vector<std::string>& keys, bool exclusive,
      const std::function<std::span<uint8_t>(size_t)>& out_for = nullptr, std::vector<bool>* from_ram = nullptr);
  // Deletes `key` if it still maps to `value` (a stale or corrupt entry met by a get).
  void DeleteIfUnchanged(const std::string& key, const std::string& value);
  // While the index takes no writes, a dropped put cannot remove its handle's older version, an
  // exclusive get cannot remove its page: so gets miss while the index has a background error,
  // and the deletes that failed meanwhile are kept (up to kMaxFailedDeletes keys, then whole
  // pools) and applied before gets are served again. False: gets must miss now.
  bool IndexServesGets() ABSL_LOCKS_EXCLUDED(failed_mu_);
  void RememberFailedDelete(const std::string& key) ABSL_LOCKS_EXCLUDED(failed_mu_);
  // A range delete of pool `id` that failed: every page of the pool is dropped before gets are
  // served again (the cache dropped its newest entries; the index may keep older ones).
  void RememberFailedPool(PoolId id) ABSL_LOCKS_EXCLUDED(failed_mu_);
  static constexpr size_t kMaxFailedDeletes = 1 << 16;
  bool IsStale(std::string_view key, std::string_view value) const;
  // Write-back: the RAM cache's dirty entries to the page index (the oldest of full shards, or
  // with `all` every one), those of pools flushed or destroyed since dropped.
  void CleanIndexCache(bool all);
  bool write_back() const { return write_back_; }

  EngineOptions options_;
  bool kept_pages_ = false;  // set in Start, then const
  bool write_back_ = false;  // set in Start, then const

  // Declaration order = destruction in reverse: the index (whose compaction filter calls
  // IsStale, which reads log_ and the registry) goes before the log.
  std::unique_ptr<log::SegmentLog> log_;
  std::unique_ptr<PageIndex> index_;
  std::unique_ptr<LocationCache> cache_;  // created in Start, then const
  // Read by the compaction filter: until the pool records are loaded it must not judge pools.
  std::atomic<bool> registry_loaded_{false};

  // Every public operation holds this shared; Close holds it exclusively.
  mutable SharedMutex ops_mu_;
  bool closed_ ABSL_GUARDED_BY(ops_mu_) = false;

  // Serialises pool creation and destruction, including their durable metadata writes.
  Mutex admin_mu_ ABSL_ACQUIRED_BEFORE(registry_mu_);
  PoolId next_pool_id_ ABSL_GUARDED_BY(admin_mu_) = 1;

  mutable SharedMutex registry_mu_;
  std::map<PoolId, std::shared_ptr<Pool>> pools_ ABSL_GUARDED_BY(registry_mu_);
  std::map<std::string, PoolId> shared_ids_ ABSL_GUARDED_BY(registry_mu_);  // tenant \0 uuid -> id
  // Per owner: its share of the log and what it holds (kept while the engine runs).
  std::map<std::string, std::shared_ptr<OwnerUsage>, std::less<>> usage_ ABSL_GUARDED_BY(registry_mu_);
  std::shared_ptr<OwnerUsage> UsageOf(const std::string& owner) ABSL_EXCLUSIVE_LOCKS_REQUIRED(registry_mu_);

  // Per-handle ordering (a put, an exclusive get, a flush of one handle take turns); sized in
  // Start, then const. Batches hold several through StripeSetLock (ascending, at most
  // kStripesHeld keys' worth at a time).
  std::unique_ptr<Mutex[]> stripes_;

  // Mutable: IsStale() (const, called by RocksDB) counts what it drops.
  mutable EngineCounters counters_;

  // Deletes the index refused (IndexServesGets). Taken under stripes; only RocksDB below it.
  Mutex failed_mu_;
  std::vector<std::string> failed_keys_ ABSL_GUARDED_BY(failed_mu_);
  std::set<PoolId> failed_pools_ ABSL_GUARDED_BY(failed_mu_);  // past kMaxFailedDeletes keys
  std::atomic<bool> failed_deletes_{false};                    // either is non-empty
};

// For the engine's own .cc files: every public operation starts with it (ops_mu_ shared for the
// operation, FailedPrecondition once closed).
#define TMEM_ENGINE_OPEN_OR_RETURN() \
  ReaderLock ops_lock(&ops_mu_);     \
  if (closed_) return absl::FailedPreconditionError("the page pool engine is closed")

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_POOL_ENGINE_H_
