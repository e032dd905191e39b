#include "server/blockcache/ram_tier.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "absl/hash/hash.h"

namespace tmem::blockcache {

namespace {
constexpr uint32_t kMaxShards = 32;
}  // namespace

RamTier::RamTier(uint64_t capacity_bytes, uint32_t slot_bytes) : slot_bytes_(slot_bytes) {
  const uint64_t slots = slot_bytes == 0 ? 0 : capacity_bytes / slot_bytes;
  if (slots == 0) return;
  // Enough shards to keep request threads off each other's locks, each with some room.
  shard_count_ = static_cast<uint32_t>(std::clamp<uint64_t>(slots / 64, 1, kMaxShards));
  per_shard_ = static_cast<uint32_t>(std::min<uint64_t>(slots / shard_count_, UINT32_MAX));
  capacity_slots_ = uint64_t{per_shard_} * shard_count_;
  memory_bytes_ = capacity_slots_ * slot_bytes_;
  void* m = ::mmap(nullptr, memory_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) throw std::bad_alloc();
  memory_ = static_cast<uint8_t*>(m);
  shards_.reset(new Shard[shard_count_]);
  for (uint32_t i = 0; i < shard_count_; ++i) {
    shards_[i].data = memory_ + uint64_t{i} * per_shard_ * slot_bytes_;
  }
}

RamTier::~RamTier() {
  if (memory_ != nullptr) ::munmap(memory_, memory_bytes_);
}

RamTier::Shard& RamTier::ShardOf(const Key& k) {
  // The high bits of a mixed hash: the low ones also pick the flat_hash_map's buckets.
  const uint64_t h = absl::Hash<Key>{}(k)*0x9E3779B97F4A7C15ull;
  return shards_[(h >> 32) % shard_count_];
}

void RamTier::Insert(uint64_t seq, uint32_t offset, const uint8_t* data) {
  if (!enabled()) return;
  const Key key{seq, offset};
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  uint32_t slot;
  if (auto it = s.index.find(key); it != s.index.end()) {
    slot = it->second;  // the same version again (a promoted or re-read line): refresh
  } else if (s.slots.size() < per_shard_) {
    slot = static_cast<uint32_t>(s.slots.size());
    s.slots.emplace_back();
    used_slots_.fetch_add(1, std::memory_order_relaxed);
    s.index.emplace(key, slot);
  } else {
    // CLOCK: pass over referenced slots once (clearing the bit), evict the first one that is not.
    while (s.slots[s.hand].referenced) {
      s.slots[s.hand].referenced = false;
      s.hand = (s.hand + 1) % per_shard_;
    }
    slot = s.hand;
    s.hand = (s.hand + 1) % per_shard_;
    s.index.erase(s.slots[slot].key);
    evictions_.fetch_add(1, std::memory_order_relaxed);
    s.index.emplace(key, slot);
  }
  s.slots[slot].key = key;
  s.slots[slot].referenced = false;  // a new entry earns its second chance by being read
  std::memcpy(s.data + uint64_t{slot} * slot_bytes_, data, slot_bytes_);
}

bool RamTier::Lookup(uint64_t seq, uint32_t offset, uint8_t* out) {
  if (!enabled()) return false;
  const Key key{seq, offset};
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  auto it = s.index.find(key);
  if (it == s.index.end()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  s.slots[it->second].referenced = true;
  std::memcpy(out, s.data + uint64_t{it->second} * slot_bytes_, slot_bytes_);
  hits_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace tmem::blockcache
