// LocationCache: page index entries in RAM, in front of RocksDB, and the DRAM tier.
//
// A get that finds its handle here skips the RocksDB lookup, which was a third of the server's
// CPU per get hit (docs/benchmarks.md). Entries are the index values of pages recently put or
// read. Bounded: at most `max_entries`, spread over kShards shards by page key, each dropping
// its oldest insertions first. 0 entries turns the cache off (every call is then a no-op).
//
// The DRAM tier: an entry may also hold its page's bytes (the bytes of exactly the log location
// it names), up to `ram_bytes` in all, so that a hot page is served from memory without a device
// read. Pages come with puts (Set with a page) and with device reads of shared pools
// (AttachPage); when a shard holds more than its share of bytes, pages leave by CLOCK (a page
// got since the hand last passed gets a second chance) while their index entries stay. Because
// the bytes live and die with the entry, every coherence rule below covers both tiers. The rule
// for the log is write-through: every put is also appended to the log, so dropping a page from
// RAM loses nothing and needs no write (docs/design-notes.md says why).
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
// Write-back (the engine's index_write_back): a put may leave its entry here *dirty* — newer
// than anything the page index (its pending set or RocksDB) holds for the key, and not written
// there yet. Rules:
//  - a dirty entry is never dropped to make room; FIFO eviction stops at one, the shard goes
//    over its bound, and needs_clean() says so. Clean() (the engine calls it under the page
//    index's apply lock) writes the oldest dirty entries to the index through its `write`
//    callback, under the shard lock, before it drops them, so that a reader who misses here
//    finds them there;
//  - a fill (Set without dirty, after an index read) never replaces a dirty entry: the index
//    holds an older version;
//  - whoever writes a key's index entry directly (a delete, a put whose dirty Set was refused)
//    first removes the key's dirty entry here (Erase, or the refusal itself), under the key's
//    stripe lock, so that no dirty entry is older than an index write;
//  - an entry of a pool generation that is no longer current (FlushPool, DestroyPool) is dead:
//    Clean drops it without writing (`live` says which are), Find drops it when met.
//
// Thread-safety: every method is thread-safe. Lock order: a shard's mutex is taken under the
// engine's stripe locks and under the page index's apply lock, never the other way round; Clean
// calls `write` (the index's pending set, whose shard locks are leaves) under it.
#ifndef TMEM_SERVER_POOL_LOCATION_CACHE_H_
#define TMEM_SERVER_POOL_LOCATION_CACHE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/functional/function_ref.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/pool/index_codec.h"

namespace tmem::pool {

class LocationCache {
 public:
  static constexpr size_t kShards = 64;
  static constexpr size_t kObjectEpochs = 4096;

  explicit LocationCache(size_t max_entries, size_t ram_bytes = 0);
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
  // The entry for `key`, if cached under generation `pool_gen`. With `out_for`, a page held in
  // RAM is copied into out_for()'s buffer (called only then, under the shard lock) and
  // *from_ram is set — only while its log location is live (its segment's sequence above
  // `reclaimed_seq`): the DRAM tier holds a subset of the log, so eviction from the log (FIFO
  // reclaim, tenants' log shares) evicts from RAM too.
  // `count`: counted in the lookup metrics (a second look at the same key is not).
  std::optional<IndexValue> Find(std::string_view key, uint64_t pool_gen,
                                 const absl::FunctionRef<std::span<uint8_t>()>* out_for = nullptr,
                                 bool* from_ram = nullptr, uint64_t reclaimed_seq = 0, bool count = true);
  // Caches `value` for `key` unless an EraseObject of its object came after `ticket` was taken;
  // then the key is erased instead (the index may or may not still hold the value) and Set
  // returns false. With `page` (the bytes `value` names), the DRAM tier keeps a copy. With
  // `dirty`, the entry is the newest version and the index does not hold it yet (write-back,
  // above); without, an existing dirty entry is left as it is (a fill never replaces one).
  bool Set(std::string_view key, const IndexValue& value, const Ticket& ticket, std::span<const uint8_t> page = {},
           bool dirty = false);
  // The entry for `key` whatever its pool generation (nullopt: none).
  std::optional<IndexValue> Peek(std::string_view key);
  // True while a shard holds more entries than its share because dirty entries block eviction.
  bool needs_clean() const { return over_bound_.load(std::memory_order_acquire) > 0; }
  // Writes dirty entries to the index: `write(key, encoded value)` is called under the entry's
  // shard lock, then the entry is clean. With `all`, every dirty entry (a clean stop); else the
  // oldest ones of each shard over its bound, and those shards are brought a sixteenth below it.
  // Entries `live` calls dead (a pool generation no longer current, a log location reclaimed)
  // are dropped unwritten.
  // With `all`, stops after about `max` entries (call again while dirty_entries() > 0).
  // Returns the entries written.
  size_t Clean(bool all, size_t max,
               absl::FunctionRef<bool(std::string_view key, const IndexValue& value, uint64_t pool_gen)> live,
               absl::FunctionRef<void(std::string_view key, std::string_view value)> write);
  size_t dirty_entries() const { return dirty_.load(std::memory_order_relaxed); }
  // Keeps `page` in RAM for `key` if the entry still names `value` under `pool_gen` (a device
  // read of a shared pool's page: the next get of it is served from memory).
  void AttachPage(std::string_view key, const IndexValue& value, uint64_t pool_gen, std::span<const uint8_t> page);
  void Erase(std::string_view key);
  // Every page of one object: `object_prefix` is ObjectRangeBegin(pool, object).
  void EraseObject(std::string_view object_prefix);

  size_t entries() const;
  size_t ram_bytes() const;  // page bytes held
  void VisitStats(StatsVisitor& visitor) const;

 private:
  // 32 bytes: the index value's fields, the pool generation with three small fields in its top
  // bits, and the DRAM tier's copy.
  struct Slot {
    uint64_t seq = 0;
    uint32_t offset = 0;
    uint32_t crc = 0;
    uint64_t pool_gen : 56 = 0;       // generations count FlushPools: 2^56 is never reached
    uint64_t page_shift : 6 = 0;      // the page copy holds 1 << page_shift bytes (pages are powers of two)
    uint64_t referenced : 1 = 0;      // got since the CLOCK hand passed
    uint64_t dirty : 1 = 0;           // newer than the index; not written there yet
    std::unique_ptr<uint8_t[]> page;  // the DRAM tier's copy, if any

    IndexValue value() const { return IndexValue{{seq, offset}, crc}; }
    void set_value(const IndexValue& v) {
      seq = v.loc.seq;
      offset = v.loc.offset;
      crc = v.crc;
    }
    size_t page_len() const { return page == nullptr ? 0 : size_t{1} << page_shift; }
  };
  static_assert(sizeof(Slot) == 32);
  using Pages = absl::flat_hash_map<uint64_t, Slot>;
  struct Object {
    Pages pages;
    // FIFO and CLOCK records naming this object: an object without pages stays until the last
    // is gone, so that a record never names a freed object.
    uint32_t records = 0;
  };
  // Node-based: an object's address is stable, so records hold it (16 bytes a record instead
  // of a copy of the object's key).
  using Objects = absl::node_hash_map<std::string, Object>;
  using ObjectNode = Objects::value_type;
  struct Record {
    ObjectNode* object;
    uint64_t index;
  };
  struct Shard {
    mutable Mutex mu;
    size_t entries ABSL_GUARDED_BY(mu) = 0;
    size_t dirty ABSL_GUARDED_BY(mu) = 0;
    bool over ABSL_GUARDED_BY(mu) = false;  // counted in over_bound_
    // object prefix -> page index -> slot
    Objects objects ABSL_GUARDED_BY(mu);
    // Insertion order, oldest first; may name entries erased since (skipped when met).
    std::deque<Record> fifo ABSL_GUARDED_BY(mu);
    // The DRAM tier: bytes held, and the CLOCK of entries that got a page (may name entries
    // erased or stripped since).
    size_t page_bytes ABSL_GUARDED_BY(mu) = 0;
    std::deque<Record> clock ABSL_GUARDED_BY(mu);
    // Buffers of pages dropped, of `spare_len` bytes each, kept for the next pages of that size:
    // a full tier takes in a page as it drops one, so a put reuses a buffer instead of
    // allocating (the allocator's page faults were a tenth of the put path's CPU).
    std::vector<std::unique_ptr<uint8_t[]>> spare ABSL_GUARDED_BY(mu);
    size_t spare_len ABSL_GUARDED_BY(mu) = 0;
  };
  static constexpr size_t kSparesPerShard = 8;

  Shard& ShardOf(std::string_view key);
  // A counter of every shard (entries, page_bytes), each read under its shard's lock.
  size_t SumOverShards(size_t Shard::*field) const;
  std::atomic<uint64_t>& EpochOf(std::string_view object_prefix);
  // The entry of (prefix, index), or null.
  static Slot* SlotLocked(Shard& s, std::string_view prefix, uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  static Slot* SlotIn(ObjectNode* object, uint64_t index);
  // Appends a record of (object, index) to `queue` (the shard's fifo or clock).
  static void PushRecordLocked(Shard& s, std::deque<Record>& queue, ObjectNode* object, uint64_t index)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // Takes the oldest record of `queue`; the caller ends with DropObjectIfUnusedLocked.
  static Record PopRecordLocked(Shard& s, std::deque<Record>& queue) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // Frees `object` once it has no page and no record.
  static void DropObjectIfUnusedLocked(Shard& s, ObjectNode* object) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // Records of entries erased since pile up: `queue` is rebuilt from the entries `keep` accepts.
  static void RebuildLocked(Shard& s, std::deque<Record>& queue, bool (*keep)(const Slot&))
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // Removes one entry; true if it was there.
  bool EraseLocked(Shard& s, std::string_view prefix, uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  bool EraseLocked(Shard& s, ObjectNode* object, uint64_t index) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  void MarkCleanLocked(Shard& s, Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  void SetOverLocked(Shard& s, bool over) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  void EvictLocked(Shard& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  // Gives `slot` (of `object`) a copy of `page`, then keeps the shard within its share of page
  // bytes. A page whose size is not a power of two is not kept.
  void AttachLocked(Shard& s, ObjectNode* object, uint64_t index, Slot& slot, std::span<const uint8_t> page)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);
  static void DropPageLocked(Shard& s, Slot& slot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu);

  const size_t per_shard_;
  const size_t page_bytes_per_shard_;  // 0: no DRAM tier
  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<std::atomic<uint64_t>[]> object_epochs_;
  mutable std::atomic<uint64_t> hits_{0}, misses_{0}, refused_{0}, evicted_{0}, cleaned_{0}, dropped_dead_{0};
  std::atomic<size_t> dirty_{0};       // dirty entries in all shards
  std::atomic<size_t> over_bound_{0};  // shards with `over` set
  mutable std::atomic<uint64_t> ram_hits_{0}, ram_admitted_{0}, ram_evicted_{0};
};

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_LOCATION_CACHE_H_
