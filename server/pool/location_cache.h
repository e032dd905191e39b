// LocationCache: page index entries in RAM, in front of RocksDB.
//
// A get that finds its handle here skips the RocksDB lookup, which was a third of the server's
// CPU per get hit (docs/benchmarks.md). Entries are the index values of pages recently put or
// read. Bounded: at most `max_entries`, spread over kShards shards by page key, each dropping
// its oldest insertions first. 0 entries turns the cache off (every call is then a no-op).
//
// Coherence: the cache never holds an entry the index no longer holds, once the operation
// that removed it from the index has returned. The engine keeps these rules:
//  - a change of one handle (put, exclusive get, FlushPage, a stale entry dropped) updates the
//    index and then the cache while holding the handle's stripe lock; a fill after an index
//    read (a get that missed here) holds that stripe across the read and the fill;
//  - FlushObject deletes in the index without stripe locks, then calls EraseObject, which
//    moves the object's epoch (one of kObjectEpochs, by hash) and then erases the object's
//    pages shard by shard; FlushPool deletes in the index, then moves the pool's generation
//    (kept by the engine, passed in here).
//  - Puts and fills take a Ticket before touching the index; Set, under the shard lock,
//    refuses a ticket whose object epoch moved (and erases instead), and tags the entry with
//    the ticket's pool generation, which Find compares with the current one. A Set that passed
//    the check before EraseObject moved the epoch is undone by EraseObject's shard pass.
//
// Thread-safety: every method is thread-safe. Lock order: a shard's mutex is a leaf (taken
// under the engine's stripe locks, never the other way round).
#ifndef TMEM_SERVER_POOL_LOCATION_CACHE_H_
#define TMEM_SERVER_POOL_LOCATION_CACHE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/pool/index_codec.h"

namespace tmem::pool {

class LocationCache {
 public:
  static constexpr size_t kShards = 64;
  static constexpr size_t kObjectEpochs = 4096;

  explicit LocationCache(size_t max_entries);
  LocationCache(const LocationCache&) = delete;
  LocationCache& operator=(const LocationCache&) = delete;

  bool enabled() const { return per_shard_ > 0; }

  // What a put or fill saw before it touched the index.
  struct Ticket {
    uint64_t epoch = 0;
    uint64_t pool_gen = 0;
  };
  // `key` is an encoded page key (EncodePageKey); `pool_gen` the pool's current generation.
  Ticket Begin(std::string_view key, uint64_t pool_gen);
  // The entry for `key`, if cached under generation `pool_gen`.
  std::optional<IndexValue> Find(std::string_view key, uint64_t pool_gen);
  // Caches `value` for `key` unless an EraseObject of its object came after `ticket` was taken;
  // then the key is erased instead (the index may or may not still hold the value).
  void Set(std::string_view key, const IndexValue& value, const Ticket& ticket);
  void Erase(std::string_view key);
  // Every page of one object: `object_prefix` is ObjectRangeBegin(pool, object).
  void EraseObject(std::string_view object_prefix);

  size_t entries() const;
  void VisitStats(StatsVisitor& visitor) const;

 private:
  struct Slot {
    IndexValue value;
    uint64_t pool_gen = 0;
  };
  using Pages = absl::flat_hash_map<uint64_t, Slot>;
  struct Shard {
    mutable Mutex mu;
    size_t entries ABSL_GUARDED_BY(mu) = 0;
    // object prefix -> page index -> slot
    absl::flat_hash_map<std::string, Pages> objects ABSL_GUARDED_BY(mu);
    // Insertion order, oldest first; may name entries erased since (skipped when met).
    std::deque<std::pair<std::string, uint64_t>> fifo ABSL_GUARDED_BY(mu);
  };

  Shard& ShardOf(std::string_view key);
  std::atomic<uint64_t>& EpochOf(std::string_view object_prefix);
  // Removes one entry; true if it was there.
  static bool EraseLocked(Shard& s, std::string_view prefix, uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  void EvictLocked(Shard& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

  const size_t per_shard_;
  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<std::atomic<uint64_t>[]> object_epochs_;
  mutable std::atomic<uint64_t> hits_{0}, misses_{0}, refused_{0}, evicted_{0};
};

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_LOCATION_CACHE_H_
