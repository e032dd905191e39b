// RamTier: a bounded copy in RAM of recently written and read cache lines.
//
// Entries are keyed by where a line's version lives in the segment log (segment sequence number
// and offset), never by the line: the block cache's index names the location of each line's
// newest version, so a lookup can only find the bytes of that version. A version that was
// overwritten is simply never asked for again and ages out; sequence numbers are never reused,
// so a segment's reuse cannot alias an old entry. Nothing here needs invalidation, and nothing
// here is durable: the tier starts empty on every Open.
//
// Eviction is CLOCK (second chance) per shard. The memory is allocated and populated when the
// tier is made (MAP_POPULATE, about a second per GiB on this VM, at Open): writes then never
// pay for the kernel's first touch of a page (a fault and a zeroing per 4 KiB, a tenth of a
// small write's cost here while the tier fills), and the memory an operator gives the tier is
// taken at start, not under load.
//
// Thread-safety: every method is thread-safe; each shard has its own lock (a leaf: nothing is
// taken while it is held).
#ifndef TMEM_SERVER_BLOCKCACHE_RAM_TIER_H_
#define TMEM_SERVER_BLOCKCACHE_RAM_TIER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/mutex.h"

namespace tmem::blockcache {

class RamTier {
 public:
  // Holds up to capacity_bytes / slot_bytes entries of slot_bytes each; capacity 0: disabled
  // (every call is a cheap no-op).
  RamTier(uint64_t capacity_bytes, uint32_t slot_bytes);
  ~RamTier();
  RamTier(const RamTier&) = delete;
  RamTier& operator=(const RamTier&) = delete;

  bool enabled() const { return shard_count_ > 0; }
  // Keeps a copy of `data` (slot_bytes) as the contents at (seq, offset).
  void Insert(uint64_t seq, uint32_t offset, const uint8_t* data);
  // Copies the contents at (seq, offset) into `out` (slot_bytes); false when not held.
  bool Lookup(uint64_t seq, uint32_t offset, uint8_t* out);

  uint64_t capacity_bytes() const { return capacity_slots_ * slot_bytes_; }
  uint64_t used_bytes() const { return used_slots_.load(std::memory_order_relaxed) * slot_bytes_; }
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }

 private:
  struct Key {
    uint64_t seq;
    uint32_t offset;
    bool operator==(const Key& o) const { return seq == o.seq && offset == o.offset; }
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.seq, k.offset);
    }
  };
  struct Slot {
    Key key{0, 0};
    bool referenced = false;
  };
  struct Shard {
    Mutex mu;
    absl::flat_hash_map<Key, uint32_t> index ABSL_GUARDED_BY(mu);  // key -> slot in this shard
    std::vector<Slot> slots ABSL_GUARDED_BY(mu);                   // grows up to per_shard_
    uint32_t hand ABSL_GUARDED_BY(mu) = 0;                         // CLOCK hand
    uint8_t* data = nullptr;                                       // per_shard_ * slot_bytes_, inside memory_
  };
  Shard& ShardOf(const Key& k);

  const uint32_t slot_bytes_;
  uint32_t shard_count_ = 0;
  uint32_t per_shard_ = 0;
  uint64_t capacity_slots_ = 0;
  uint8_t* memory_ = nullptr;  // mmap'ed and populated, memory_bytes_ long
  size_t memory_bytes_ = 0;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> used_slots_{0}, hits_{0}, misses_{0}, evictions_{0};
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_RAM_TIER_H_
