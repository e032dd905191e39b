// PendingPages: page index writes accepted but not yet in RocksDB (the index's write-behind).
//
// A put or delete of a page entry lands here (a hash insert under one shard's lock) and returns;
// PageIndex's writer moves the lot to RocksDB in large batches. Until an entry is in RocksDB,
// this set is the truth for its key: every read of the index looks here first.
//
// Two sets per shard: `active` takes new writes; Swap() moves it to `applying`, which the
// writer turns into one RocksDB batch (ForEachApplying) and drops once that batch is written
// (ClearApplying) or gives back to `active` if it failed (RestoreApplying: a key written again
// since keeps its newer entry). A lookup checks active, then applying, under one lock hold, so it
// never falls between the two and RocksDB while the writer moves an entry on.
//
// Thread-safety: every method is thread-safe. Swap, ForEachApplying, ClearApplying and
// RestoreApplying are called by one applier at a time (PageIndex's apply_mu_). Lock order: a
// shard's mutex is a leaf, never held across a RocksDB call.
#ifndef TMEM_SERVER_POOL_PENDING_PAGES_H_
#define TMEM_SERVER_POOL_PENDING_PAGES_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "common/mutex.h"

namespace tmem::pool {

class PendingPages {
 public:
  static constexpr size_t kShards = 16;

  PendingPages();
  PendingPages(const PendingPages&) = delete;
  PendingPages& operator=(const PendingPages&) = delete;

  // Records a put (`value` set) or a delete (nullopt) of `key`; replaces any pending entry of it.
  void Add(std::string_view key, std::optional<std::string_view> value);
  // nullopt: nothing pending for `key` (ask RocksDB). Otherwise the pending entry: a value, or
  // nullopt inside for a pending delete.
  std::optional<std::optional<std::string>> Find(std::string_view key) const;
  // Turns every active entry whose key is in [begin, end) (bytewise) into a pending delete, so
  // that no read finds a pending put of that range while the caller deletes it in RocksDB.
  // O(active entries). Returns how many it turned.
  size_t DeleteActiveIn(std::string_view begin, std::string_view end);
  // Entries in `active` (approximate while writers run).
  size_t active() const { return active_.load(std::memory_order_relaxed); }
  // Entries in either set.
  size_t size() const;

  // The applier's steps (one applier at a time).
  // Moves every shard's active entries to its applying set; returns how many moved. The new
  // active sets start with room for as many entries as they gave up (no regrowth per batch).
  size_t Swap();
  // `value` is nullopt for a delete. The views stay valid until ClearApplying or RestoreApplying.
  void ForEachApplying(absl::FunctionRef<void(std::string_view key, std::optional<std::string_view> value)> fn);
  void ClearApplying();
  void RestoreApplying();

 private:
  // Bytes kept inline up to kInline (every page key, at most 37 bytes, and every index value, 16
  // bytes, fit), on the heap beyond: an entry costs no allocation of its own.
  class Bytes {
   public:
    static constexpr size_t kInline = 40;
    explicit Bytes(std::string_view s);
    Bytes(const Bytes& o) : Bytes(o.view()) {}
    Bytes& operator=(const Bytes& o);
    Bytes(Bytes&&) noexcept = default;
    Bytes& operator=(Bytes&&) noexcept = default;
    std::string_view view() const { return {heap_ ? heap_.get() : inline_, size_}; }

   private:
    uint32_t size_ = 0;
    char inline_[kInline];
    std::unique_ptr<char[]> heap_;
  };
  struct BytesHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const;
    size_t operator()(const Bytes& b) const { return (*this)(b.view()); }
  };
  struct BytesEq {
    using is_transparent = void;
    static std::string_view V(std::string_view s) { return s; }
    static std::string_view V(const Bytes& b) { return b.view(); }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return V(a) == V(b);
    }
  };
  using Entries = absl::flat_hash_map<Bytes, std::optional<Bytes>, BytesHash, BytesEq>;
  struct Shard {
    mutable Mutex mu;
    Entries active ABSL_GUARDED_BY(mu);
    Entries applying ABSL_GUARDED_BY(mu);
  };
  Shard& ShardOf(std::string_view key) const;
  static std::optional<std::string> Copy(const std::optional<Bytes>& v);

  std::unique_ptr<Shard[]> shards_;
  std::atomic<size_t> active_{0};
};

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_PENDING_PAGES_H_
