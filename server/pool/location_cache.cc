#include "server/pool/location_cache.h"

#include <bit>
#include <cstring>

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

LocationCache::LocationCache(size_t max_entries, size_t ram_bytes)
    : per_shard_((max_entries + kShards - 1) / kShards),
      page_bytes_per_shard_(max_entries == 0 ? 0 : ram_bytes / kShards),
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

std::optional<IndexValue> LocationCache::Find(std::string_view key, uint64_t pool_gen,
                                              const absl::FunctionRef<std::span<uint8_t>()>* out_for, bool* from_ram,
                                              uint64_t reclaimed_seq, bool count) {
  if (!enabled() || key.size() <= kIndexBytes) return std::nullopt;
  const std::string_view prefix = PrefixOf(key);
  const uint64_t index = IndexOf(key);
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  if (Slot* slot = SlotLocked(s, prefix, index); slot != nullptr) {
    if (slot->pool_gen == pool_gen) {
      if (count) hits_.fetch_add(1, std::memory_order_relaxed);
      if (slot->page != nullptr && slot->seq <= reclaimed_seq) {
        DropPageLocked(s, *slot);  // its log copy is gone: so is this one (the get will miss)
      } else if (out_for != nullptr && slot->page != nullptr) {
        std::span<uint8_t> out = (*out_for)();
        if (out.size() == slot->page_len()) {
          std::memcpy(out.data(), slot->page.get(), out.size());
          slot->referenced = 1;
          *from_ram = true;
          ram_hits_.fetch_add(1, std::memory_order_relaxed);
        }
      }
      return slot->value();
    }
    // Made before a FlushPool: dead. One of a newer generation than the caller's (a put after
    // a FlushPool that came after the caller read the generation) is a miss, and stays.
    if (slot->pool_gen < pool_gen) EraseLocked(s, prefix, index);
  }
  if (count) misses_.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

bool LocationCache::Set(std::string_view key, const IndexValue& value, const Ticket& ticket,
                        std::span<const uint8_t> page, bool dirty) {
  if (!enabled() || key.size() <= kIndexBytes) return false;
  const std::string_view prefix = PrefixOf(key);
  const uint64_t index = IndexOf(key);
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  if (EpochOf(prefix).load(std::memory_order_acquire) != ticket.epoch) {
    // The object was flushed since the ticket (or one sharing its epoch): this entry may be
    // one the flush removed from the index.
    EraseLocked(s, prefix, index);
    refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  auto obj = s.objects.find(Absl(prefix));
  if (obj == s.objects.end()) obj = s.objects.emplace(std::string(prefix), Object()).first;
  ObjectNode* node = &*obj;
  auto [it, inserted] = node->second.pages.try_emplace(index);
  Slot& slot = it->second;
  // A fill never replaces an entry of a newer generation, nor a dirty one of its own (newer than
  // the index it read).
  if (!dirty && !inserted && (slot.pool_gen > ticket.pool_gen || (slot.dirty && slot.pool_gen == ticket.pool_gen))) {
    return true;
  }
  DropPageLocked(s, slot);  // an older version's bytes never outlive its entry
  slot.set_value(value);
  slot.pool_gen = ticket.pool_gen;
  if (dirty && !slot.dirty) {
    ++s.dirty;
    dirty_.fetch_add(1, std::memory_order_relaxed);
  } else if (!dirty && slot.dirty) {
    MarkCleanLocked(s, slot);  // a dead dirty entry (older pool generation) replaced by a fill
  }
  slot.dirty = dirty ? 1 : 0;
  if (!page.empty()) AttachLocked(s, node, index, slot, page);
  if (!inserted) return true;
  ++s.entries;
  PushRecordLocked(s, s.fifo, node, index);
  EvictLocked(s);
  return true;
}

LocationCache::Slot* LocationCache::SlotLocked(Shard& s, std::string_view prefix, uint64_t index) {
  auto obj = s.objects.find(Absl(prefix));
  return obj == s.objects.end() ? nullptr : SlotIn(&*obj, index);
}

LocationCache::Slot* LocationCache::SlotIn(ObjectNode* object, uint64_t index) {
  auto it = object->second.pages.find(index);
  return it == object->second.pages.end() ? nullptr : &it->second;
}

void LocationCache::PushRecordLocked(Shard& s, std::deque<Record>& queue, ObjectNode* object, uint64_t index) {
  ++object->second.records;
  queue.push_back({object, index});
}

LocationCache::Record LocationCache::PopRecordLocked(Shard& s, std::deque<Record>& queue) {
  const Record r = queue.front();
  queue.pop_front();
  --r.object->second.records;
  return r;
}

void LocationCache::DropObjectIfUnusedLocked(Shard& s, ObjectNode* object) {
  if (object->second.records != 0 || !object->second.pages.empty()) return;
  s.objects.erase(s.objects.find(object->first));
}

void LocationCache::RebuildLocked(Shard& s, std::deque<Record>& queue, bool (*keep)(const Slot&)) {
  for (const Record& r : queue) --r.object->second.records;
  queue.clear();
  for (auto it = s.objects.begin(); it != s.objects.end();) {
    ObjectNode* node = &*it;
    ++it;  // before node may be freed
    for (const auto& [index, slot] : node->second.pages) {
      if (keep(slot)) PushRecordLocked(s, queue, node, index);
    }
    DropObjectIfUnusedLocked(s, node);
  }
}

std::optional<IndexValue> LocationCache::Peek(std::string_view key) {
  if (!enabled() || key.size() <= kIndexBytes) return std::nullopt;
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  const Slot* slot = SlotLocked(s, PrefixOf(key), IndexOf(key));
  if (slot == nullptr) return std::nullopt;
  return slot->value();
}

void LocationCache::MarkCleanLocked(Shard& s, Slot& slot) {
  if (!slot.dirty) return;
  slot.dirty = 0;
  --s.dirty;
  dirty_.fetch_sub(1, std::memory_order_relaxed);
}

void LocationCache::SetOverLocked(Shard& s, bool over) {
  if (s.over == over) return;
  s.over = over;
  if (over) {
    over_bound_.fetch_add(1, std::memory_order_acq_rel);
  } else {
    over_bound_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

size_t LocationCache::Clean(
    bool all, size_t max,
    absl::FunctionRef<bool(std::string_view key, const IndexValue& value, uint64_t pool_gen)> live,
    absl::FunctionRef<void(std::string_view key, std::string_view value)> write) {
  if (!enabled()) return 0;
  size_t written = 0;
  std::string key;
  char value[kIndexValueBytes];
  // Writes (or, dead, drops) one dirty slot; false when the slot was dropped. Called with s.mu
  // held: Clang's analysis cannot name a lambda parameter's lock for its callers.
  auto clean = [&](Shard& s, std::string_view prefix, uint64_t index, Slot& slot)
                   ABSL_NO_THREAD_SAFETY_ANALYSIS -> bool {
    key.assign(prefix);
    for (int b = 7; b >= 0; --b) key.push_back(static_cast<char>(index >> (8 * b)));
    const IndexValue v = slot.value();
    if (!live(key, v, slot.pool_gen)) {
      dropped_dead_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    EncodeIndexValueTo(v, value);
    write(key, std::string_view(value, kIndexValueBytes));
    MarkCleanLocked(s, slot);
    ++written;
    return true;
  };
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    if (all) {
      if (s.dirty == 0) continue;
      if (written >= max) break;
      std::vector<Record> dead;
      for (auto& node : s.objects) {
        for (auto& [index, slot] : node.second.pages) {
          if (slot.dirty && !clean(s, node.first, index, slot)) dead.push_back({&node, index});
        }
      }
      // An object is freed only once its last page is erased: the records after it are of
      // other pages (or objects).
      for (const Record& r : dead) EraseLocked(s, r.object, r.index);
      continue;
    }
    if (!s.over) continue;
    // Oldest first, down to a sixteenth below the bound, so that the next clean is some way off.
    const size_t target = per_shard_ - per_shard_ / 16;
    while (s.entries > target && !s.fifo.empty()) {
      const Record r = PopRecordLocked(s, s.fifo);
      if (Slot* slot = SlotIn(r.object, r.index); slot != nullptr) {
        if (slot->dirty) clean(s, r.object->first, r.index, *slot);
        if (EraseLocked(s, r.object, r.index)) evicted_.fetch_add(1, std::memory_order_relaxed);
      } else {
        DropObjectIfUnusedLocked(s, r.object);
      }
    }
    SetOverLocked(s, s.entries > per_shard_);
  }
  cleaned_.fetch_add(written, std::memory_order_relaxed);
  return written;
}

void LocationCache::AttachPage(std::string_view key, const IndexValue& value, uint64_t pool_gen,
                               std::span<const uint8_t> page) {
  if (!enabled() || page_bytes_per_shard_ == 0 || key.size() <= kIndexBytes) return;
  const std::string_view prefix = PrefixOf(key);
  const uint64_t index = IndexOf(key);
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  auto obj = s.objects.find(Absl(prefix));
  if (obj == s.objects.end()) return;
  Slot* found = SlotIn(&*obj, index);
  if (found == nullptr) return;
  Slot& slot = *found;
  // Only the bytes of the very location the entry names, under the pool's current generation.
  if (slot.pool_gen != pool_gen || slot.page != nullptr || slot.seq != value.loc.seq ||
      slot.offset != value.loc.offset || slot.crc != value.crc) {
    return;
  }
  AttachLocked(s, &*obj, index, slot, page);
}

void LocationCache::AttachLocked(Shard& s, ObjectNode* object, uint64_t index, Slot& slot,
                                 std::span<const uint8_t> page) {
  if (page_bytes_per_shard_ == 0 || page.size() > page_bytes_per_shard_) return;
  if (page.empty() || (page.size() & (page.size() - 1)) != 0) return;  // not a power of two
  if (!s.spare.empty() && s.spare_len == page.size()) {
    slot.page = std::move(s.spare.back());
    s.spare.pop_back();
  } else {
    slot.page.reset(new uint8_t[page.size()]);
  }
  std::memcpy(slot.page.get(), page.data(), page.size());
  slot.page_shift = static_cast<uint64_t>(std::countr_zero(page.size()));
  slot.referenced = 0;
  s.page_bytes += page.size();
  PushRecordLocked(s, s.clock, object, index);
  ram_admitted_.fetch_add(1, std::memory_order_relaxed);
  // CLOCK: the hand drops pages not got since it last passed; a page got goes round again.
  size_t turns = 0;
  while (s.page_bytes > page_bytes_per_shard_ && !s.clock.empty()) {
    const Record r = PopRecordLocked(s, s.clock);
    Slot* held = SlotIn(r.object, r.index);
    if (held == nullptr || held->page == nullptr) {
      DropObjectIfUnusedLocked(s, r.object);
      continue;
    }
    if (held->referenced && ++turns <= 2 * s.clock.size() + 1) {
      held->referenced = 0;
      PushRecordLocked(s, s.clock, r.object, r.index);
      continue;
    }
    DropPageLocked(s, *held);
    ram_evicted_.fetch_add(1, std::memory_order_relaxed);
  }
  // Records of pages dropped by flushes or overwrites pile up: rebuild from what holds a page.
  if (s.clock.size() > 2 * (page_bytes_per_shard_ / 512) + 16) {
    RebuildLocked(s, s.clock, [](const Slot& held) { return held.page != nullptr; });
  }
}

void LocationCache::DropPageLocked(Shard& s, Slot& slot) {
  if (slot.page == nullptr) return;
  const size_t len = slot.page_len();
  s.page_bytes -= len;
  if (s.spare_len != len) {
    s.spare.clear();
    s.spare_len = len;
  }
  if (s.spare.size() < kSparesPerShard) {
    s.spare.push_back(std::move(slot.page));
  } else {
    slot.page.reset();
  }
  slot.page_shift = 0;
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
    Pages& pages = obj->second.pages;
    s.entries -= pages.size();
    for (auto& [index, slot] : pages) {
      DropPageLocked(s, slot);
      MarkCleanLocked(s, slot);  // a dirty entry of a flushed object is never written
    }
    Pages().swap(pages);
    DropObjectIfUnusedLocked(s, &*obj);  // else freed with its last record
    if (s.entries <= per_shard_) SetOverLocked(s, false);
  }
}

bool LocationCache::EraseLocked(Shard& s, std::string_view prefix, uint64_t index) {
  auto obj = s.objects.find(Absl(prefix));
  return obj != s.objects.end() && EraseLocked(s, &*obj, index);
}

bool LocationCache::EraseLocked(Shard& s, ObjectNode* object, uint64_t index) {
  Pages& pages = object->second.pages;
  auto it = pages.find(index);
  if (it == pages.end()) {
    DropObjectIfUnusedLocked(s, object);
    return false;
  }
  DropPageLocked(s, it->second);
  MarkCleanLocked(s, it->second);
  pages.erase(it);
  --s.entries;
  DropObjectIfUnusedLocked(s, object);
  if (s.over && s.entries <= per_shard_) SetOverLocked(s, false);
  return true;
}

void LocationCache::EvictLocked(Shard& s) {
  while (s.entries > per_shard_ && !s.fifo.empty()) {
    const Record& front = s.fifo.front();
    // A dirty entry is not dropped: the shard stays over its bound until Clean writes it.
    if (const Slot* slot = SlotIn(front.object, front.index); slot != nullptr && slot->dirty) {
      SetOverLocked(s, true);
      break;
    }
    const Record r = PopRecordLocked(s, s.fifo);
    if (EraseLocked(s, r.object, r.index)) evicted_.fetch_add(1, std::memory_order_relaxed);
  }
  // Records of entries erased by flushes pile up in the fifo: rebuild it from what is cached
  // when it grows past twice the capacity (the order among survivors is then lost).
  if (s.fifo.size() > 2 * per_shard_ + 16) {
    RebuildLocked(s, s.fifo, [](const Slot&) { return true; });
  }
}

size_t LocationCache::SumOverShards(size_t Shard::*field) const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    n += shards_[i].*field;
  }
  return n;
}

size_t LocationCache::ram_bytes() const { return SumOverShards(&Shard::page_bytes); }

size_t LocationCache::entries() const { return SumOverShards(&Shard::entries); }

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
  v.Gauge("index_cache_dirty_entries",
          "Page index entries held only in RAM (write-back): newer than RocksDB, written when evicted or at a clean "
          "stop.",
          static_cast<double>(dirty_entries()), none);
  v.Counter("index_cache_cleaned", "Dirty page index entries written from the RAM cache to the page index.",
            cleaned_.load(std::memory_order_relaxed), none);
  v.Counter("index_cache_dropped_unwritten",
            "Dirty page index entries a write-back dropped without writing them (their page's log segment was "
            "reclaimed, or their pool flushed or destroyed).",
            dropped_dead_.load(std::memory_order_relaxed), none);
  v.Counter("index_cache_evictions", "Entries dropped from the RAM index cache to stay within its capacity.",
            evicted_.load(std::memory_order_relaxed), none);
  v.Gauge("ram_tier_bytes", "Page bytes held in the DRAM tier (pages also in the log).",
          static_cast<double>(ram_bytes()), none);
  v.Gauge("ram_tier_capacity_bytes", "Most page bytes the DRAM tier holds (ram_cache).",
          static_cast<double>(page_bytes_per_shard_ * kShards), none);
  v.Counter("ram_tier_hits", "Gets served from the DRAM tier without a device read.",
            ram_hits_.load(std::memory_order_relaxed), none);
  v.Counter("ram_tier_admissions", "Pages copied into the DRAM tier (by puts and by device reads of shared pools).",
            ram_admitted_.load(std::memory_order_relaxed), none);
  v.Counter("ram_tier_evictions", "Pages dropped from the DRAM tier to stay within ram_cache (their log copy stays).",
            ram_evicted_.load(std::memory_order_relaxed), none);
}

}  // namespace tmem::pool
