// PoolEngine's put path: pages appended to the log and indexed; no lock another operation needs
// is held while a put waits for room (docs/concurrency.md); the deletes the index refused during
// a background error, kept until gets may be served again.
#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/pool/index_codec.h"
#include "server/pool/pool_engine.h"
#include "server/pool/stripe_set_lock.h"

namespace tmem::pool {

absl::StatusOr<IndexValue> PoolEngine::AppendPage(PoolId id, std::string_view object, uint64_t index,
                                                  std::span<const uint8_t> page, uint64_t* no_room_generation) {
  const uint32_t crc = crc32c::Value(page.data(), page.size());
  uint8_t slot_key[log::kSlotKeyBytes];
  EncodeSlotKey(id, object, index, slot_key);
  TMEM_ASSIGN_OR_RETURN(log::Location loc,
                        log_->Append(slot_key, page.data(), static_cast<uint32_t>(page.size()), crc,
                                     {.may_wait = false, .progress_generation = no_room_generation}));
  return IndexValue{loc, crc};
}

absl::Status PoolEngine::CheckPuts(const Pool& pool, std::span<const PagePut> pages) const {
  for (size_t i = 0; i < pages.size(); ++i) {
    TMEM_RETURN_IF_ERROR(CheckObjectKey(pages[i].object));
    if (pages[i].page.size() != pool.info.page_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("page ", i, " has ", pages[i].page.size(), " bytes; pool ",
                                                     pool.info.id, " has ", pool.info.page_bytes, "-byte pages"));
    }
  }
  return absl::OkStatus();
}

size_t PoolEngine::PutLocked(Pool& pool, std::span<const PagePut> pages, std::span<const std::string> keys, bool drop,
                             uint64_t* dropped, uint64_t* no_room_generation, absl::Status* error) {
  // Inline storage: a single put allocates nothing here; a batch allocates each array once (the
  // index writes point into `encoded`, which never grows past its reserve).
  const uint64_t gen = pool.cache_gen.load(std::memory_order_acquire);
  struct Encoded {
    char bytes[kIndexValueBytes];
  };
  absl::InlinedVector<LocationCache::Ticket, 1> tickets;
  absl::InlinedVector<PageIndex::PageWrite, 1> ops;
  absl::InlinedVector<Encoded, 1> encoded;
  absl::InlinedVector<std::optional<IndexValue>, 1> values;
  tickets.reserve(pages.size());
  ops.reserve(pages.size());
  encoded.reserve(pages.size());
  values.reserve(pages.size());
  // While the index cannot take writes, a put would only fill the log with pages no index
  // entry names: drop at once.
  if (!drop && index_->has_background_error()) {
    if (error->ok()) *error = index_->background_error();
    counters_.puts_dropped_index_error.fetch_add(pages.size(), std::memory_order_relaxed);
    drop = true;
  }
  size_t handled = 0;
  for (; handled < pages.size(); ++handled) {
    const PagePut& p = pages[handled];
    absl::StatusOr<IndexValue> value = absl::ResourceExhaustedError("dropped");
    if (drop) {
      value = absl::UnavailableError("no room in the page log within pool.put_wait_ms");
    } else if (!pool.usage->Admit(log_->reclaimed_seq(), p.page.size())) {
      // Past its owner's share of the log, a put is dropped (the older version goes too).
      value =
          absl::ResourceExhaustedError(absl::StrCat("tenant '", pool.info.tenant, "' holds its share of the page log"));
    } else {
      value = AppendPage(pool.info.id, p.object, p.index, p.page, no_room_generation);
      // No room now: stop here; the caller waits without the stripes and comes back for the rest.
      if (absl::IsResourceExhausted(value.status())) break;
    }
    tickets.push_back(cache_->Begin(keys[handled], gen));
    if (value.ok()) {
      pool.usage->Add(value->loc.seq, p.page.size());
      EncodeIndexValueTo(*value, encoded.emplace_back().bytes);
      ops.push_back({keys[handled], std::string_view(encoded.back().bytes, kIndexValueBytes)});
      values.push_back(*value);
    } else {
      ops.push_back({keys[handled], std::nullopt});  // never leave an older version behind
      values.push_back(std::nullopt);
      ++*dropped;
      if (error->ok()) *error = value.status();
    }
  }
  if (ops.empty()) return handled;
  if (write_back_) {
    // Each entry stays in the cache only (dirty) and reaches the index when the cache drops it.
    for (size_t k = 0; k < ops.size(); ++k) {
      if (values[k].has_value()) {
        if (cache_->Set(keys[k], *values[k], tickets[k], pages[k].page, /*dirty=*/true)) continue;
        // Refused (an object flush came since the ticket; the cache holds nothing of the key
        // now): the entry goes to the index itself, as without write-back.
        absl::Status st = index_->PutPage(keys[k], *ops[k].value);
        if (st.ok()) continue;
        ++*dropped;
        if (error->ok()) *error = st;
      } else {
        cache_->Erase(keys[k]);
      }
      // Dropped: no older version may survive (the cache's went first).
      if (absl::Status st = index_->DeletePage(keys[k]); !st.ok()) {
        RememberFailedDelete(keys[k]);
        if (error->ok()) *error = st;
      }
    }
    return handled;
  }
  // One entry: a plain RocksDB put (no batch to build); more: one batch.
  absl::Status wst = ops.size() == 1 && ops[0].value.has_value()
                         ? index_->PutPage(ops[0].key, *ops[0].value)
                         : index_->WritePages(std::span<const PageIndex::PageWrite>(ops.data(), ops.size()));
  // In batch order, so that of two puts to one handle the later is cached.
  for (size_t k = 0; k < ops.size(); ++k) {
    if (wst.ok() && values[k].has_value()) {
      // With the page: the DRAM tier keeps the bytes the log now holds (write-through).
      cache_->Set(keys[k], *values[k], tickets[k], pages[k].page);
    } else {
      cache_->Erase(keys[k]);
    }
  }
  if (!wst.ok()) {
    // The batch did not land: make sure no older version of these handles survives either.
    for (size_t k = 0; k < ops.size(); ++k) {
      if (values[k].has_value()) ++*dropped;
      ops[k].value.reset();
    }
    if (absl::Status del = index_->WritePages(std::span<const PageIndex::PageWrite>(ops.data(), ops.size()));
        !del.ok()) {
      wst = del;
    }
    // Deletes the index refused (a background error) are kept until they can be applied; gets
    // miss until then.
    if (!wst.ok()) {
      for (const auto& op : ops) RememberFailedDelete(std::string(op.key));
      *error = wst;
    }
  }
  return handled;
}

void PoolEngine::CountPuts(Pool& pool, uint64_t puts, uint64_t dropped, const absl::Status& error) {
  pool.counters.puts.fetch_add(puts - dropped, std::memory_order_relaxed);
  if (dropped > 0) {
    pool.counters.puts_dropped.fetch_add(dropped, std::memory_order_relaxed);
    TMEM_LOG_RATE_LIMITED(Warning) << dropped << " puts to pool " << pool.info.id << " dropped: " << error;
  }
}

void PoolEngine::PutPages(Pool& pool, std::span<const PagePut> pages) {
  uint64_t dropped = 0;
  absl::Status error;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.put_wait_ms);
  bool out_of_time = false;
  // In chunks, so that a thread never holds more than kStripesHeld stripes; in order, so that of
  // two puts to one handle the later (in a later chunk, or later in this one) wins.
  size_t first = 0;
  while (first < pages.size()) {
    const std::span<const PagePut> chunk = pages.subspan(first, std::min(kStripesHeld, pages.size() - first));
    uint64_t no_room_generation = 0;
    size_t handled;
    if (chunk.size() == 1) {
      const std::string key = EncodePageKey(pool.info.id, chunk[0].object, chunk[0].index);
      MutexLock stripe(&StripeFor(key));
      handled = PutLocked(pool, chunk, std::span<const std::string>(&key, 1), out_of_time, &dropped,
                          &no_room_generation, &error);
    } else {
      std::vector<std::string> keys;
      keys.reserve(chunk.size());
      for (const PagePut& p : chunk) keys.push_back(EncodePageKey(pool.info.id, p.object, p.index));
      const StripeSetLock held(stripes_.get(), options_.lock_stripes, keys.size(), [&](size_t k) { return keys[k]; });
      handled = PutLocked(pool, chunk, keys, out_of_time, &dropped, &no_room_generation, &error);
    }
    first += handled;
    CleanIndexCache(/*all=*/false);  // no stripe held here; returns at once unless a shard is full
    bool room = true;
    if (handled < chunk.size()) {
      const auto waited_from = std::chrono::steady_clock::now();
      room = log_->WaitForProgress(no_room_generation, deadline);
      counters_.put_room_waits.fetch_add(1, std::memory_order_relaxed);
      counters_.put_room_wait_us.fetch_add(
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - waited_from).count(),
          std::memory_order_relaxed);
    }
    if (!room) {
      // No room within the bound: the rest is dropped (older versions removed), never waited for.
      if (!out_of_time) {
        counters_.puts_dropped_no_room.fetch_add(pages.size() - first, std::memory_order_relaxed);
      }
      out_of_time = true;
    }
  }
  CountPuts(pool, pages.size(), dropped, error);
}

absl::Status PoolEngine::Put(PoolId id, std::string_view object, uint64_t index, std::span<const uint8_t> page) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, CheckHandle(id, object));
  const PagePut one{object, index, page};
  TMEM_RETURN_IF_ERROR(CheckPuts(*pool, std::span<const PagePut>(&one, 1)));
  PutPages(*pool, std::span<const PagePut>(&one, 1));
  return absl::OkStatus();
}

absl::Status PoolEngine::PutMany(PoolId id, std::span<const PagePut> pages) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  if (pages.empty()) return absl::OkStatus();
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, FindPool(id));
  TMEM_RETURN_IF_ERROR(CheckPuts(*pool, pages));
  PutPages(*pool, pages);
  return absl::OkStatus();
}

void PoolEngine::RememberFailedDelete(const std::string& key) {
  MutexLock lock(&failed_mu_);
  if (failed_keys_.size() < kMaxFailedDeletes) {
    failed_keys_.push_back(key);
  } else if (std::optional<PoolId> pool = PoolOfPageKey(key); pool.has_value()) {
    failed_pools_.insert(*pool);
  }
  failed_deletes_.store(true, std::memory_order_release);
}

void PoolEngine::RememberFailedPool(PoolId id) {
  MutexLock lock(&failed_mu_);
  failed_pools_.insert(id);
  failed_deletes_.store(true, std::memory_order_release);
}

bool PoolEngine::IndexServesGets() {
  if (index_->has_background_error()) return false;
  if (!failed_deletes_.load(std::memory_order_acquire)) return true;
  MutexLock lock(&failed_mu_);
  if (failed_keys_.empty() && failed_pools_.empty()) return true;
  std::vector<std::pair<std::string, std::optional<std::string>>> ops;
  ops.reserve(failed_keys_.size());
  for (std::string& k : failed_keys_) ops.emplace_back(std::move(k), std::nullopt);
  failed_keys_.clear();
  if (absl::Status st = index_->WritePages(ops); !st.ok()) {
    for (auto& op : ops) failed_keys_.push_back(std::move(op.first));
    return false;
  }
  // (The RAM index cache held none of these keys when they were remembered: whoever failed erased
  // its entry. A newer put since then may be lost by this delete: a miss, never an older page.)
  for (auto it = failed_pools_.begin(); it != failed_pools_.end();) {
    if (!index_->DeletePageRange(PoolRangeBegin(*it), PoolRangeEnd(*it)).ok()) return false;
    it = failed_pools_.erase(it);
  }
  TMEM_LOG(Info) << "the page index takes writes again: the deletes it refused are applied, gets are served";
  failed_deletes_.store(false, std::memory_order_release);
  return true;
}

}  // namespace tmem::pool
