#include "server/pool/location_cache.h"

#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace tmem::pool {
namespace {

// An encoded page key is the object prefix (pool, length, object) then the index, big-endian.
constexpr size_t kIndexBytes = 8;

std::string_view PrefixOf(std::string_view key) { return key.substr(0, key.size() - kIndexBytes); }

uint64_t IndexOf(std::string_view key) {
  uint64_t v = 0;
  for (size_t i = key.size() - kIndexBytes; i < key.size(); ++i) v = (v << 8) | static_cast<uint8_t>(key[i]);
  return v;
}

absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

LocationCache::LocationCache(size_t max_entries)
    : per_shard_((max_entries + kShards - 1) / kShards),
      shards_(std::make_unique<Shard[]>(kShards)),
      object_epochs_(std::make_unique<std::atomic<uint64_t>[]>(kObjectEpochs)) {
  for (size_t i = 0; i < kObjectEpochs; ++i) object_epochs_[i].store(0, std::memory_order_relaxed);
}

// By the whole key, so that the pages of one large object spread over every shard.
LocationCache::Shard& LocationCache::ShardOf(std::string_view key) {
  return shards_[absl::Hash<absl::string_view>()(Absl(key)) % kShards];
}

std::atomic<uint64_t>& LocationCache::EpochOf(std::string_view object_prefix) {
  return object_epochs_[absl::Hash<absl::string_view>()(Absl(object_prefix)) % kObjectEpochs];
}

LocationCache::Ticket LocationCache::Begin(std::string_view key, uint64_t pool_gen) {
  if (!enabled() || key.size() <= kIndexBytes) return {};
  return {EpochOf(PrefixOf(key)).load(std::memory_order_acquire), pool_gen};
}

std::optional<IndexValue> LocationCache::Find(std::string_view key, uint64_t pool_gen) {
  if (!enabled() || key.size() <= kIndexBytes) return std::nullopt;
  const std::string_view prefix = PrefixOf(key);
  const uint64_t index = IndexOf(key);
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  auto obj = s.objects.find(Absl(prefix));
  if (obj != s.objects.end()) {
    auto page = obj->second.find(index);
    if (page != obj->second.end()) {
      if (page->second.pool_gen == pool_gen) {
        hits_.fetch_add(1, std::memory_order_relaxed);
        return page->second.value;
      }
      EraseLocked(s, prefix, index);  // made before a FlushPool: dead
    }
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

void LocationCache::Set(std::string_view key, const IndexValue& value, const Ticket& ticket) {
  if (!enabled() || key.size() <= kIndexBytes) return;
  const std::string_view prefix = PrefixOf(key);
  const uint64_t index = IndexOf(key);
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  if (EpochOf(prefix).load(std::memory_order_acquire) != ticket.epoch) {
    // The object was flushed since the ticket (or one sharing its epoch): this entry may be
    // one the flush removed from the index.
    EraseLocked(s, prefix, index);
    refused_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto obj = s.objects.find(Absl(prefix));
  if (obj == s.objects.end()) obj = s.objects.emplace(std::string(prefix), Pages()).first;
  auto [page, inserted] = obj->second.insert_or_assign(index, Slot{value, ticket.pool_gen});
  (void)page;
  if (!inserted) return;
  ++s.entries;
  s.fifo.emplace_back(std::string(prefix), index);
  EvictLocked(s);
}

void LocationCache::Erase(std::string_view key) {
  if (!enabled() || key.size() <= kIndexBytes) return;
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  EraseLocked(s, PrefixOf(key), IndexOf(key));
}

void LocationCache::EraseObject(std::string_view object_prefix) {
  if (!enabled()) return;
  // Epoch first: a Set checking after this is refused; one that checked before finished under
  // its shard lock, and the pass below erases what it added.
  EpochOf(object_prefix).fetch_add(1, std::memory_order_acq_rel);
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    auto obj = s.objects.find(Absl(object_prefix));
    if (obj == s.objects.end()) continue;
    s.entries -= obj->second.size();
    s.objects.erase(obj);
  }
}

bool LocationCache::EraseLocked(Shard& s, std::string_view prefix, uint64_t index) {
  auto obj = s.objects.find(Absl(prefix));
  if (obj == s.objects.end() || obj->second.erase(index) == 0) return false;
  --s.entries;
  if (obj->second.empty()) s.objects.erase(obj);
  return true;
}

void LocationCache::EvictLocked(Shard& s) {
  while (s.entries > per_shard_ && !s.fifo.empty()) {
    auto [prefix, index] = std::move(s.fifo.front());
    s.fifo.pop_front();
    if (EraseLocked(s, prefix, index)) evicted_.fetch_add(1, std::memory_order_relaxed);
  }
  // Records of entries erased by flushes pile up in the fifo: rebuild it from what is cached
  // when it grows past twice the capacity (the order among survivors is then lost).
  if (s.fifo.size() > 2 * per_shard_ + 16) {
    s.fifo.clear();
    for (const auto& [prefix, pages] : s.objects) {
      for (const auto& [index, slot] : pages) s.fifo.emplace_back(prefix, index);
    }
  }
}

size_t LocationCache::entries() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    n += shards_[i].entries;
  }
  return n;
}

void LocationCache::VisitStats(StatsVisitor& v) const {
  const StatLabels none;
  v.Gauge("index_cache_entries", "Page index entries held in RAM in front of RocksDB.", static_cast<double>(entries()),
          none);
  v.Gauge("index_cache_capacity_entries", "Most page index entries the RAM cache holds.",
          static_cast<double>(per_shard_ * kShards), none);
  v.Counter("index_cache_lookups", "Page index lookups in the RAM cache by result.",
            hits_.load(std::memory_order_relaxed), {{"result", "hit"}});
  v.Counter("index_cache_lookups", "Page index lookups in the RAM cache by result.",
            misses_.load(std::memory_order_relaxed), {{"result", "miss"}});
  v.Counter("index_cache_fills_refused", "Cache fills refused because an object flush raced with them.",
            refused_.load(std::memory_order_relaxed), none);
  v.Counter("index_cache_evictions", "Entries dropped from the RAM index cache to stay within its capacity.",
            evicted_.load(std::memory_order_relaxed), none);
}

}  // namespace tmem::pool
