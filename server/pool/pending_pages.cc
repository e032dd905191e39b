#include "server/pool/pending_pages.h"

#include <utility>

#include "absl/hash/hash.h"

namespace tmem::pool {
namespace {

// Debian's Abseil has its own string_view type.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

PendingPages::PendingPages() : shards_(std::make_unique<Shard[]>(kShards)) {}

PendingPages::Shard& PendingPages::ShardOf(std::string_view key) const {
  return shards_[absl::Hash<absl::string_view>()(Absl(key)) % kShards];
}

void PendingPages::Add(std::string_view key, std::optional<std::string_view> value) {
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  auto [it, inserted] = s.active.try_emplace(Absl(key));
  if (value.has_value()) {
    it->second.emplace(*value);
  } else {
    it->second.reset();
  }
  if (inserted) active_.fetch_add(1, std::memory_order_relaxed);
}

std::optional<std::optional<std::string>> PendingPages::Find(std::string_view key) const {
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  if (auto it = s.active.find(Absl(key)); it != s.active.end()) return it->second;
  if (auto it = s.applying.find(Absl(key)); it != s.applying.end()) return it->second;
  return std::nullopt;
}

size_t PendingPages::DeleteActiveIn(std::string_view begin, std::string_view end) {
  size_t turned = 0;
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    for (auto& [key, value] : s.active) {
      const std::string_view k(key);
      if (k >= begin && k < end && value.has_value()) {
        value.reset();
        ++turned;
      }
    }
  }
  return turned;
}

size_t PendingPages::size() const {
  size_t n = 0;
  for (size_t i = 0; i < kShards; ++i) {
    MutexLock lock(&shards_[i].mu);
    n += shards_[i].active.size() + shards_[i].applying.size();
  }
  return n;
}

size_t PendingPages::Swap() {
  size_t moved = 0;
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    // The applying set is empty here: the last applier cleared or restored it.
    std::swap(s.active, s.applying);
    moved += s.applying.size();
    active_.fetch_sub(s.applying.size(), std::memory_order_relaxed);
  }
  return moved;
}

void PendingPages::ForEachApplying(
    absl::FunctionRef<void(const std::string& key, const std::optional<std::string>& value)> fn) {
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    for (const auto& [key, value] : s.applying) fn(key, value);
  }
}

void PendingPages::ClearApplying() {
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    Entries done;
    {
      MutexLock lock(&s.mu);
      std::swap(done, s.applying);
    }
    // `done` is freed here, outside the lock.
  }
}

void PendingPages::RestoreApplying() {
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    for (auto& [key, value] : s.applying) {
      // A key written since the swap keeps its newer entry.
      if (s.active.try_emplace(key, std::move(value)).second) active_.fetch_add(1, std::memory_order_relaxed);
    }
    s.applying.clear();
  }
}

}  // namespace tmem::pool
