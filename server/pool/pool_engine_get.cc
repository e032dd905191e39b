// PoolEngine's gets: one handle (Get) and a batch (GetMany, LookupMany), and the end of a
// read (SettleRead). The rest of the engine is in pool_engine.cc.
#include <algorithm>
#include <cstring>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/pool/index_codec.h"
#include "server/pool/pool_engine.h"
#include "server/pool/pool_format.h"
#include "server/pool/stripe_set_lock.h"

namespace tmem::pool {

absl::StatusOr<GetOutcome> PoolEngine::Get(PoolId id, std::string_view object, uint64_t index, std::span<uint8_t> out) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, CheckHandle(id, object));
  if (out.size() != pool->info.page_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer of ", out.size(), " bytes for pool ", id, " of ", pool->info.page_bytes, "-byte pages"));
  }
  auto miss = [&]() -> GetOutcome {
    pool->counters.gets_miss.fetch_add(1, std::memory_order_relaxed);
    return GetOutcome::kMiss;
  };
  if (!IndexServesGets()) return miss();
  const std::string key = EncodePageKey(id, object, index);
  const bool exclusive = pool->info.kind == PoolKind::kPrivate;
  std::vector<bool> from_ram;
  TMEM_ASSIGN_OR_RETURN(std::vector<std::optional<std::string>> raws,
                        LookupMany(
                            *pool, {key}, exclusive, [&](size_t) { return out; }, &from_ram));
  const std::optional<std::string>& raw = raws[0];
  if (!raw.has_value()) return miss();
  if (from_ram[0]) {
    pool->counters.gets_hit.fetch_add(1, std::memory_order_relaxed);
    return GetOutcome::kHit;
  }
  std::optional<IndexValue> value = DecodeIndexValue(*raw);
  if (!value.has_value()) {
    if (!exclusive) DeleteIfUnchanged(key, *raw);
    return miss();
  }
  const uint64_t gen = pool->cache_gen.load(std::memory_order_acquire);
  absl::StatusOr<log::SegmentLog::ReadOutcome> r =
      log_->Read(value->loc, pool->info.page_bytes, value->crc, out.data());
  const GetOutcome outcome = SettleRead(*pool, key, *raw, exclusive, r, out);
  if (outcome == GetOutcome::kHit && !exclusive) cache_->AttachPage(key, *value, gen, out);
  return outcome;
}

GetOutcome PoolEngine::SettleRead(Pool& pool, const std::string& key, const std::string& raw, bool exclusive,
                                  const absl::StatusOr<log::SegmentLog::ReadOutcome>& r, std::span<uint8_t> out) {
  if (r.ok() && *r == log::SegmentLog::ReadOutcome::kOk) {
    pool.counters.gets_hit.fetch_add(1, std::memory_order_relaxed);
    return GetOutcome::kHit;
  }
  if (!r.ok()) {
    counters_.read_errors.fetch_add(1, std::memory_order_relaxed);
    TMEM_LOG_RATE_LIMITED(Warning) << "get from pool " << pool.info.id << " missed on a device error: " << r.status();
  } else if (*r == log::SegmentLog::ReadOutcome::kGone) {
    counters_.pages_evicted.fetch_add(1, std::memory_order_relaxed);
  }
  // Whatever made this read fail, later gets must miss too (get-get coherency): drop the entry.
  if (!exclusive) DeleteIfUnchanged(key, raw);
  // Never leave a corrupt or partial page in the caller's buffer.
  std::memset(out.data(), 0, out.size());
  pool.counters.gets_miss.fetch_add(1, std::memory_order_relaxed);
  return GetOutcome::kMiss;
}

absl::StatusOr<std::vector<GetOutcome>> PoolEngine::GetMany(PoolId id, std::span<const PageGet> gets,
                                                            const BufferFor& buffer_for) {
  GetBatch batch;
  TMEM_RETURN_IF_ERROR(StartGets(id, gets, buffer_for, &batch));
  if (!batch.device_reads().empty()) log_->ReadDevice(batch.device_reads());
  FinishGets(&batch);
  return std::move(batch.outcomes_);
}

absl::Status PoolEngine::StartGets(PoolId id, std::span<const PageGet> gets, const BufferFor& buffer_for,
                                   GetBatch* batch) {
  batch->pool_.reset();
  batch->outcomes_.assign(gets.size(), GetOutcome::kMiss);
  batch->reads_.clear();
  batch->read_get_.clear();
  batch->keys_.clear();
  batch->raws_.clear();
  TMEM_ENGINE_OPEN_OR_RETURN();
  if (gets.empty()) {
    log_->StartReads({}, &batch->log_batch_);
    return absl::OkStatus();
  }
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, FindPool(id));
  for (size_t i = 0; i < gets.size(); ++i) {
    TMEM_RETURN_IF_ERROR(CheckHandle(id, gets[i].object).status());
    if (gets[i].out.size() != pool->info.page_bytes && !(gets[i].out.empty() && buffer_for)) {
      return absl::InvalidArgumentError(absl::StrCat("get ", i, ": buffer of ", gets[i].out.size(), " bytes for pool ",
                                                     id, " of ", pool->info.page_bytes, "-byte pages"));
    }
  }
  if (!IndexServesGets()) {
    pool->counters.gets_miss.fetch_add(gets.size(), std::memory_order_relaxed);
    log_->StartReads({}, &batch->log_batch_);
    return absl::OkStatus();
  }
  std::vector<std::string>& keys = batch->keys_;
  keys.reserve(gets.size());
  for (const PageGet& g : gets) keys.push_back(EncodePageKey(id, g.object, g.index));
  const bool exclusive = pool->info.kind == PoolKind::kPrivate;
  batch->exclusive_ = exclusive;
  batch->gen_ = pool->cache_gen.load(std::memory_order_acquire);
  // The buffer a get's page goes to: the caller's, or buffer_for's (only for pages found).
  std::vector<std::span<uint8_t>> outs(gets.size());
  auto out_for = [&](size_t i) {
    if (outs[i].empty()) outs[i] = gets[i].out.empty() ? buffer_for(i) : gets[i].out;
    return outs[i];
  };
  std::vector<bool> from_ram;
  TMEM_ASSIGN_OR_RETURN(batch->raws_, LookupMany(*pool, keys, exclusive, out_for, &from_ram));
  const std::vector<std::optional<std::string>>& raws = batch->raws_;
  // Every entry that decodes becomes one read of the batch, but for pages the DRAM tier gave.
  batch->reads_.reserve(gets.size());
  for (size_t i = 0; i < gets.size(); ++i) {
    if (!raws[i].has_value()) {
      pool->counters.gets_miss.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (from_ram[i]) {
      batch->outcomes_[i] = GetOutcome::kHit;
      pool->counters.gets_hit.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    std::optional<IndexValue> value = DecodeIndexValue(*raws[i]);
    if (!value.has_value()) {
      if (!exclusive) DeleteIfUnchanged(keys[i], *raws[i]);
      pool->counters.gets_miss.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    std::span<uint8_t> out = out_for(i);
    if (out.size() != pool->info.page_bytes) return absl::InternalError("StartGets: buffer_for gave a wrong size");
    batch->reads_.push_back(
        {.loc = value->loc, .len = pool->info.page_bytes, .expected_crc = value->crc, .out = out.data()});
    batch->read_get_.push_back(i);
  }
  batch->pool_ = std::move(pool);
  log_->StartReads(std::span<log::SegmentLog::PageRead>(batch->reads_), &batch->log_batch_);
  return absl::OkStatus();
}

void PoolEngine::FinishGets(GetBatch* batch) {
  ReaderLock ops_lock(&ops_mu_);
  if (closed_) {
    // Closed since StartGets (an embedder that closed the engine before its loops): every read
    // is a miss, and the index and the cache are not touched.
    for (size_t i : batch->read_get_) batch->outcomes_[i] = GetOutcome::kMiss;
    batch->pool_.reset();
    return;
  }
  log_->FinishReads(&batch->log_batch_);
  if (batch->pool_ == nullptr) return;
  Pool& pool = *batch->pool_;
  for (size_t k = 0; k < batch->reads_.size(); ++k) {
    const log::SegmentLog::PageRead& read = batch->reads_[k];
    const size_t i = batch->read_get_[k];
    const std::span<uint8_t> page(static_cast<uint8_t*>(read.out), pool.info.page_bytes);
    batch->outcomes_[i] = SettleRead(pool, batch->keys_[i], *batch->raws_[i], batch->exclusive_, read.outcome, page);
    // A shared pool's page read from the device: the next get of it is served from RAM.
    if (batch->outcomes_[i] == GetOutcome::kHit && !batch->exclusive_) {
      cache_->AttachPage(batch->keys_[i], IndexValue{read.loc, read.expected_crc}, batch->gen_, page);
    }
  }
  batch->pool_.reset();
}

absl::StatusOr<std::vector<std::optional<std::string>>> PoolEngine::LookupMany(
    Pool& pool, const std::vector<std::string>& keys, bool exclusive,
    const std::function<std::span<uint8_t>(size_t)>& out_for, std::vector<bool>* from_ram) {
  const uint64_t gen = pool.cache_gen.load(std::memory_order_acquire);
  std::vector<std::optional<std::string>> raws(keys.size());
  if (from_ram != nullptr) from_ram->assign(keys.size(), false);
  // Asks the cache for key i; with out_for, a page the DRAM tier holds is copied out too.
  auto find = [&](size_t i, bool count) -> std::optional<IndexValue> {
    if (!out_for || from_ram == nullptr) return cache_->Find(keys[i], gen, nullptr, nullptr, 0, count);
    bool ram = false;
    // Called only for a page held in RAM; a FunctionRef, so nothing is allocated per key.
    const auto buffer = [&] { return out_for(i); };
    const absl::FunctionRef<std::span<uint8_t>()> out = buffer;
    std::optional<IndexValue> v = cache_->Find(keys[i], gen, &out, &ram, log_->reclaimed_seq(), count);
    (*from_ram)[i] = ram;
    return v;
  };
  // Shared pools: what the cache holds needs no lock (a get racing a put or flush may see either
  // side; the index would answer the same).
  std::vector<size_t> todo;
  todo.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!exclusive) {
      if (std::optional<IndexValue> v = find(i, /*count=*/true)) {
        raws[i] = EncodeIndexValue(*v);
        continue;
      }
    }
    todo.push_back(i);
  }
  // The rest under the stripe locks (ascending, as PutMany takes them, at most kStripesHeld at
  // a time): fills cannot race a put or an exclusive get of the same handle, and of two racing
  // exclusive gets of one handle only one finds it. Within the batch, a handle named twice in a
  // private pool is found once, as two Gets in a row would.
  std::set<std::string_view> taken;
  for (size_t first = 0; first < todo.size(); first += kStripesHeld) {
    const size_t end = std::min(todo.size(), first + kStripesHeld);
    const StripeSetLock held(stripes_.get(), options_.lock_stripes, end - first,
                             [&](size_t k) -> const std::string& { return keys[todo[first + k]]; });
    // Tickets before the index is read; the cache is asked again under the stripes first.
    std::vector<LocationCache::Ticket> tickets;
    std::vector<std::string> lookup;  // keys[todo[first + lookup_of[j]]] for the MultiGet
    std::vector<size_t> lookup_of;
    for (size_t t = first; t < end; ++t) {
      const size_t i = todo[t];
      if (exclusive && taken.count(keys[i]) > 0) continue;  // already found earlier in this batch
      // Asked again under the stripe: a put since the first look may hold its entry in the
      // cache only (write-back), newer than what the index would answer.
      if (std::optional<IndexValue> v = find(i, /*count=*/exclusive)) {
        raws[i] = EncodeIndexValue(*v);
        continue;
      }
      tickets.push_back(cache_->Begin(keys[i], gen));
      lookup.push_back(keys[i]);
      lookup_of.push_back(i);
    }
    absl::Status st;
    if (!lookup.empty()) {
      auto got = index_->MultiGetPages(lookup);
      for (size_t j = 0; j < got.size() && st.ok(); ++j) {
        if (!got[j].ok()) {
          st = got[j].status();
          continue;
        }
        raws[lookup_of[j]] = std::move(*got[j]);
        if (exclusive || !raws[lookup_of[j]].has_value()) continue;
        if (std::optional<IndexValue> v = DecodeIndexValue(*raws[lookup_of[j]])) {
          cache_->Set(lookup[j], *v, tickets[j]);
        }
      }
    }
    if (exclusive && st.ok()) {
      // A hit on a private pool removes the page: from the index, then from the cache.
      std::vector<std::pair<std::string, std::optional<std::string>>> deletes;
      for (size_t t = first; t < end; ++t) {
        const size_t i = todo[t];
        if (!raws[i].has_value()) continue;
        if (taken.insert(keys[i]).second) {
          deletes.emplace_back(keys[i], std::nullopt);
        } else {
          raws[i].reset();  // named twice in this chunk: the first one hit
        }
      }
      // From the cache first, then the index: a dirty entry written back after the index delete
      // would bring the page back.
      for (const auto& d : deletes) cache_->Erase(d.first);
      if (!deletes.empty()) st = index_->WritePages(deletes);
      if (!st.ok()) {
        for (const auto& d : deletes) RememberFailedDelete(d.first);  // gets miss until applied
      }
    }
    TMEM_RETURN_IF_ERROR(st);
  }
  CleanIndexCache(/*all=*/false);  // fills may fill a shard whose oldest entries are dirty
  return raws;
}

}  // namespace tmem::pool
