#include "server/pool/pending_pages.h"

#include <cstring>
#include <utility>

#include "absl/hash/hash.h"

namespace tmem::pool {
namespace {

// Debian's Abseil has its own string_view type.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace

PendingPages::Bytes::Bytes(std::string_view s) : size_(static_cast<uint32_t>(s.size())) {
  char* to = inline_;
  if (s.size() > kInline) {
    heap_ = std::make_unique<char[]>(s.size());
    to = heap_.get();
  }
  if (!s.empty()) std::memcpy(to, s.data(), s.size());
}

PendingPages::Bytes& PendingPages::Bytes::operator=(const Bytes& o) {
  if (this != &o) *this = Bytes(o.view());
  return *this;
}

size_t PendingPages::BytesHash::operator()(std::string_view s) const {
  return absl::Hash<absl::string_view>()(Absl(s));
}

std::optional<std::string> PendingPages::Copy(const std::optional<Bytes>& v) {
  if (!v.has_value()) return std::nullopt;
  return std::string(v->view());
}

PendingPages::PendingPages() : shards_(std::make_unique<Shard[]>(kShards)) {}

PendingPages::Shard& PendingPages::ShardOf(std::string_view key) const {
  // The shard from the hash's high bits; the map inside uses the low ones.
  return shards_[(BytesHash()(key) >> 56) % kShards];
}

void PendingPages::Add(std::string_view key, std::optional<std::string_view> value) {
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  auto [it, inserted] = s.active.try_emplace(key);
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
  if (auto it = s.active.find(key); it != s.active.end()) return Copy(it->second);
  if (auto it = s.applying.find(key); it != s.applying.end()) return Copy(it->second);
  return std::nullopt;
}

size_t PendingPages::DeleteActiveIn(std::string_view begin, std::string_view end) {
  size_t turned = 0;
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    for (auto& [key, value] : s.active) {
      const std::string_view k = key.view();
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
    s.active.reserve(s.applying.size());
    active_.fetch_sub(s.applying.size(), std::memory_order_relaxed);
  }
  return moved;
}

void PendingPages::ForEachApplying(
    absl::FunctionRef<void(std::string_view key, std::optional<std::string_view> value)> fn) {
  for (size_t i = 0; i < kShards; ++i) {
    Shard& s = shards_[i];
    MutexLock lock(&s.mu);
    for (const auto& [key, value] : s.applying) {
      fn(key.view(), value.has_value() ? std::optional<std::string_view>(value->view()) : std::nullopt);
    }
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
