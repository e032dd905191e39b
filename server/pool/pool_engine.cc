#include "server/pool/pool_engine.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>

#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/pool/index_codec.h"
#include "server/pool/pool_format.h"
#include "server/pool/stripe_set_lock.h"

namespace tmem::pool {
namespace {

// FlushObject turns into point deletes up to this many pages, a range delete beyond.
constexpr uint32_t kMaxPointDeletes = 64;

bool ValidPageBytes(uint32_t n) { return n >= kMinPageBytes && n <= kMaxPageBytes && (n & (n - 1)) == 0; }

}  // namespace

absl::StatusOr<std::unique_ptr<PoolEngine>> PoolEngine::Open(const EngineOptions& options) {
  if (options.device == nullptr) return absl::InvalidArgumentError("no device");
  if (options.lock_stripes == 0) return absl::InvalidArgumentError("lock_stripes must be positive");
  std::unique_ptr<PoolEngine> engine(new PoolEngine());
  TMEM_RETURN_IF_ERROR(engine->Start(options));
  return engine;
}

absl::Status PoolEngine::Start(const EngineOptions& options) {
  options_ = options;
  stripes_ = std::make_unique<Mutex[]>(options.lock_stripes);
  // A cached export's device holds dirty data of its backing store: never take it for pools.
  // (Only on a device that holds a log: anything else gets the log's own refusal below.)
  absl::StatusOr<bool> owned =
      log::ReadLogGeometry(options.device).ok() ? log::LogHasOwnerRecord(options.device) : absl::StatusOr<bool>(false);
  if (owned.ok() && *owned) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.device->Describe(),
                     " is the cache device of a cached block export (it holds a block cache record); "
                     "refusing to use it for page pools (format it to discard it)"));
  }
  TMEM_ASSIGN_OR_RETURN(log_, log::SegmentLog::Open(options.device, options.log));

  PageIndexOptions io;
  io.dir = options.metadata_dir;
  io.block_cache_bytes = options.index_block_cache_bytes;
  io.write_buffer_bytes = options.index_write_buffer_bytes;
  io.resume_backoff_min_ms = options.index_resume_backoff_min_ms;
  io.resume_backoff_max_ms = options.index_resume_backoff_max_ms;
  io.write_behind_max = options.index_write_behind;
  io.write_behind_batch = std::max<size_t>(1, options.index_write_behind / 2);
  io.write_behind_interval_ms = 100;
  io.is_stale = [this](std::string_view k, std::string_view v) { return IsStale(k, v); };
  TMEM_ASSIGN_OR_RETURN(index_, PageIndex::Open(io));
  cache_ = std::make_unique<LocationCache>(options.index_cache_entries, options.ram_cache_bytes);
  write_back_ = options.index_write_back && cache_->enabled() && options.index_write_behind > 0;

  const auto& uuid = log_->geometry().device_uuid;
  TMEM_ASSIGN_OR_RETURN(std::optional<std::string> state_bytes, index_->GetMeta(kStateKey));
  EngineStateRecord state{};
  bool have_state = false;
  if (state_bytes.has_value()) {
    std::optional<EngineStateRecord> decoded = DecodeEngineState(*state_bytes);
    if (!decoded.has_value()) {
      return absl::DataLossError(absl::StrCat("the engine state in ", options.metadata_dir, " is malformed"));
    }
    state = *decoded;
    have_state = true;
    if (std::memcmp(state.device_uuid, uuid, 16) != 0) {
      return absl::FailedPreconditionError(absl::StrCat("metadata directory ", options.metadata_dir,
                                                        " belongs to another device than ", options.device->Describe(),
                                                        " (the device was formatted again, or the paths are mixed up); "
                                                        "remove the directory to start with empty pools"));
    }
  }
  kept_pages_ = have_state && log_->previous_stop_clean() && state.clean_instance == log_->previous_instance();
  if (!kept_pages_) {
    TMEM_RETURN_IF_ERROR(index_->DropAllPages());
    if (have_state) {
      TMEM_LOG(Warning) << "previous run did not stop cleanly; every pool's pages were dropped";
    }
  }
  // Mark the engine running: a crash from here on is an unclean stop.
  std::memcpy(state.device_uuid, uuid, 16);
  state.clean_instance = 0;
  TMEM_RETURN_IF_ERROR(index_->WriteMeta({{kStateKey, EncodeEngineState(state)}}, {}));
  TMEM_RETURN_IF_ERROR(LoadPools());
  if (kept_pages_) {
    if (absl::Status s = CountKeptPages(); !s.ok()) {
      TMEM_LOG(Warning) << "counting the kept pages of each tenant failed (" << s.message()
                        << "); log shares count from zero";
    }
  }
  registry_loaded_.store(true, std::memory_order_release);
  TMEM_LOG(Info) << "page pools ready: instance " << instance_id() << ", " << ListPools().size() << " pools, "
                 << (kept_pages_ ? "pages kept from the previous run" : "starting with no pages");
  return absl::OkStatus();
}

absl::Status PoolEngine::LoadPools() {
  TMEM_ASSIGN_OR_RETURN(auto records, index_->ScanMeta(kPoolPrefix));
  TMEM_ASSIGN_OR_RETURN(std::optional<std::string> next, index_->GetMeta(kNextPoolIdKey));
  MutexLock admin(&admin_mu_);
  if (next.has_value() && next->size() == 4) std::memcpy(&next_pool_id_, next->data(), 4);
  WriterLock lock(&registry_mu_);
  std::vector<std::pair<std::string, std::string>> upgraded;
  for (const auto& [key, value] : records) {
    uint8_t version = 0;
    std::optional<PoolInfo> info = DecodePoolRecord(value, options_.v1_private_owner, &version);
    if (!info.has_value()) {
      return absl::DataLossError(absl::StrCat(
          "malformed pool record under key of ", key.size(), " bytes (version ",
          value.empty() ? 0 : static_cast<uint8_t>(value[0]), "; this tmemd reads versions 1 and ", kPoolRecordVersion,
          "): a newer tmemd wrote it, or the metadata directory is damaged; remove it to start with no pools"));
    }
    // The record must be the one its key names (ids are never 0, and UINT32_MAX would leave no id
    // after it): anything else is a damaged directory, refused rather than half believed.
    if (info->id == 0 || info->id == UINT32_MAX || key != PoolMetaKey(info->id)) {
      return absl::DataLossError(absl::StrCat("pool record for pool ", info->id, " is stored under another key (",
                                              key.size(),
                                              " bytes): the metadata directory is damaged; remove it to "
                                              "start with no pools"));
    }
    if (version != kPoolRecordVersion) upgraded.push_back({key, EncodePoolRecord(*info)});
    auto pool = std::make_shared<Pool>();
    pool->info = *info;
    pool->usage = UsageOf(info->tenant);
    if (info->kind == PoolKind::kShared) shared_ids_[SharedPoolKey(info->tenant, info->uuid)] = info->id;
    pools_[info->id] = std::move(pool);
    if (info->id >= next_pool_id_) next_pool_id_ = info->id + 1;
  }
  if (!upgraded.empty()) {
    // Records of an older device: each pool gets its owner on disk, in one write.
    TMEM_RETURN_IF_ERROR(index_->WriteMeta(upgraded, {}));
    TMEM_LOG(Info) << "upgraded " << upgraded.size() << " pool records to version " << int{kPoolRecordVersion}
                   << " (owners: shared pools their tenant, private pools '" << options_.v1_private_owner << "')";
  }
  return absl::OkStatus();
}

absl::Status PoolEngine::CountKeptPages() {
  struct Owner {
    OwnerUsage* usage;
    uint32_t page_bytes;
  };
  std::map<PoolId, Owner> owners;
  {
    ReaderLock lock(&registry_mu_);
    for (const auto& [id, pool] : pools_) owners[id] = {pool->usage.get(), pool->info.page_bytes};
  }
  // OwnerUsage takes a segment's bytes in ascending segment order: gathered first, then added.
  std::map<OwnerUsage*, std::map<uint64_t, uint64_t>> bytes;  // owner -> segment seq -> bytes
  const uint64_t reclaimed = log_->reclaimed_seq();
  TMEM_RETURN_IF_ERROR(index_->ForEachPage([&](std::string_view key, std::string_view value) {
    std::optional<IndexValue> v = DecodeIndexValue(value);
    std::optional<PoolId> pool = PoolOfPageKey(key);
    if (!v.has_value() || !pool.has_value() || v->loc.seq <= reclaimed) return;
    auto it = owners.find(*pool);
    if (it != owners.end()) bytes[it->second.usage][v->loc.seq] += it->second.page_bytes;
  }));
  for (const auto& [usage, segments] : bytes) {
    for (const auto& [seq, n] : segments) usage->Add(seq, n);
  }
  return absl::OkStatus();
}

PoolEngine::~PoolEngine() {
  // Unclean unless Close() ran: the index closes (its memtables may be written, which is
  // harmless), then the log stops without a clean checkpoint.
  index_.reset();
  log_.reset();
}

absl::Status PoolEngine::Close() {
  WriterLock lock(&ops_mu_);
  if (closed_) return absl::FailedPreconditionError("the engine is already closed");
  closed_ = true;
  TMEM_RETURN_IF_ERROR(log_->FlushAll());
  CleanIndexCache(/*all=*/true);  // every entry held only in RAM to the index first
  // The page store is durable (closed and synced) before the state record calls the stop clean.
  TMEM_RETURN_IF_ERROR(index_->CloseClean());
  EngineStateRecord state{};
  std::memcpy(state.device_uuid, log_->geometry().device_uuid, 16);
  state.clean_instance = log_->instance();
  TMEM_RETURN_IF_ERROR(index_->WriteMeta({{kStateKey, EncodeEngineState(state)}}, {}));
  TMEM_RETURN_IF_ERROR(log_->CloseClean());
  // Release the metadata directory (its lock) so that another engine may open it.
  index_.reset();
  TMEM_LOG(Info) << "page pools closed cleanly (instance " << log_->instance() << ")";
  return absl::OkStatus();
}

absl::Status PoolEngine::CheckOwner(std::string_view owner) {
  if (owner.empty() || owner.size() > kMaxTenantBytes || owner.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("a pool's owner (tenant) has 1 to ", kMaxTenantBytes, " bytes without NUL"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PoolId> PoolEngine::CreatePool(uint32_t page_bytes, std::string_view owner) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  TMEM_RETURN_IF_ERROR(CheckOwner(owner));
  MutexLock admin(&admin_mu_);
  return CreatePoolLocked(PoolKind::kPrivate, Uuid{}, page_bytes, owner);
}

absl::StatusOr<PoolId> PoolEngine::CreateSharedPool(const Uuid& uuid, uint32_t page_bytes, std::string_view tenant) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  TMEM_RETURN_IF_ERROR(CheckOwner(tenant));
  MutexLock admin(&admin_mu_);
  {
    ReaderLock lock(&registry_mu_);
    auto it = shared_ids_.find(SharedPoolKey(tenant, uuid));
    if (it != shared_ids_.end()) {
      const PoolInfo& info = pools_.at(it->second)->info;
      if (info.page_bytes != page_bytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("shared pool ", info.id, " has page size ", info.page_bytes, ", not ", page_bytes));
      }
      return info.id;
    }
  }
  return CreatePoolLocked(PoolKind::kShared, uuid, page_bytes, tenant);
}

absl::StatusOr<PoolId> PoolEngine::CreatePoolLocked(PoolKind kind, const Uuid& uuid, uint32_t page_bytes,
                                                    std::string_view tenant) {
  if (!ValidPageBytes(page_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page size ", page_bytes, " must be a power of two from 512 to 65536 bytes"));
  }
  if (page_bytes > log_->max_page_bytes()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page size ", page_bytes, " exceeds what a segment holds (", log_->max_page_bytes(), ")"));
  }
  {
    ReaderLock lock(&registry_mu_);
    if (pools_.size() >= options_.max_pools) {
      return absl::ResourceExhaustedError(absl::StrCat("too many pools (limit ", options_.max_pools, ")"));
    }
  }
  if (options_.quota_of) {
    const uint32_t limit = options_.quota_of(tenant).max_pools;
    if (PoolsOwnedBy(tenant) >= limit) {
      return absl::ResourceExhaustedError(
          absl::StrCat("tenant '", std::string(tenant), "' holds its quota of ", limit, " pools (max_pools)"));
    }
  }
  if (next_pool_id_ == 0 || next_pool_id_ == UINT32_MAX) {
    return absl::ResourceExhaustedError("pool ids exhausted");
  }
  auto pool = std::make_shared<Pool>();
  pool->info.id = next_pool_id_;
  pool->info.kind = kind;
  pool->info.page_bytes = page_bytes;
  pool->info.uuid = uuid;
  pool->info.tenant = std::string(tenant);
  const PoolId next = next_pool_id_ + 1;
  // Durable before the id is handed out: ids are never reused, so no stale page of an older
  // pool can ever be found under a new pool's id.
  TMEM_RETURN_IF_ERROR(index_->WriteMeta({{PoolMetaKey(pool->info.id), EncodePoolRecord(pool->info)},
                                          {kNextPoolIdKey, std::string(reinterpret_cast<const char*>(&next), 4)}},
                                         {}));
  next_pool_id_ = next;
  WriterLock lock(&registry_mu_);
  if (kind == PoolKind::kShared) shared_ids_[SharedPoolKey(tenant, uuid)] = pool->info.id;
  pool->usage = UsageOf(pool->info.tenant);
  pools_[pool->info.id] = pool;
  return pool->info.id;
}

absl::Status PoolEngine::DestroyPool(PoolId id) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  MutexLock admin(&admin_mu_);
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, FindPool(id));
  TMEM_RETURN_IF_ERROR(index_->WriteMeta({}, {PoolMetaKey(id)}));
  pool->destroyed.store(true, std::memory_order_release);
  {
    WriterLock lock(&registry_mu_);
    if (pool->info.kind == PoolKind::kShared) shared_ids_.erase(SharedPoolKey(pool->info.tenant, pool->info.uuid));
    pools_.erase(id);
  }
  // Entries a racing put adds after this range delete belong to no pool; the compaction
  // filter drops them.
  // The generation moves under the index's lock, with the range delete: no write-back of the
  // pool's cached entries comes between the two.
  absl::Status st = index_->DeletePageRange(PoolRangeBegin(id), PoolRangeEnd(id),
                                            [&] { pool->cache_gen.fetch_add(1, std::memory_order_acq_rel); });
  TMEM_RETURN_IF_ERROR(st);
  counters_.pools_destroyed.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

std::vector<PoolInfo> PoolEngine::ListPools(std::optional<std::string_view> owner) const {
  ReaderLock lock(&registry_mu_);
  std::vector<PoolInfo> out;
  for (const auto& [id, pool] : pools_) {
    if (!owner.has_value() || pool->info.tenant == *owner) out.push_back(pool->info);
  }
  return out;
}

size_t PoolEngine::PoolsOwnedBy(std::string_view owner) const {
  ReaderLock lock(&registry_mu_);
  size_t n = 0;
  for (const auto& [id, pool] : pools_) n += pool->info.tenant == owner;
  return n;
}

absl::StatusOr<PoolInfo> PoolEngine::OwnedPool(PoolId id, std::string_view owner) const {
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, FindPool(id));
  if (pool->info.tenant != owner) return absl::NotFoundError(absl::StrCat("pool ", id, " does not exist"));
  return pool->info;
}

absl::StatusOr<PoolInfo> PoolEngine::GetPoolInfo(PoolId id) const {
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, FindPool(id));
  return pool->info;
}

absl::StatusOr<PoolEngine::PoolStats> PoolEngine::GetPoolStats(PoolId id) const {
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, FindPool(id));
  const PoolCounters& c = pool->counters;
  auto load = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  PoolStats s;
  s.info = pool->info;
  s.puts = load(c.puts);
  s.puts_dropped = load(c.puts_dropped);
  s.gets_hit = load(c.gets_hit);
  s.gets_miss = load(c.gets_miss);
  s.flush_page = load(c.flush_page);
  s.flush_object = load(c.flush_object);
  s.flush_pool = load(c.flush_pool);
  return s;
}

const PoolEngine::PoolCounters* PoolEngine::pool_counters(PoolId id) const {
  ReaderLock lock(&registry_mu_);
  auto it = pools_.find(id);
  return it == pools_.end() ? nullptr : &it->second->counters;
}

std::shared_ptr<OwnerUsage> PoolEngine::UsageOf(const std::string& owner) {
  auto it = usage_.find(owner);
  if (it != usage_.end()) return it->second;
  uint64_t share = UINT64_MAX;
  if (options_.quota_of) {
    const uint32_t percent = options_.quota_of(owner).log_share_percent;
    if (percent < 100) {
      const log::LogGeometry& g = log_->geometry();
      share = g.segment_count * uint64_t{g.segment_bytes} / 100 * percent;
    }
  }
  auto u = std::make_shared<OwnerUsage>(owner, share);
  usage_.emplace(owner, u);
  return u;
}

absl::StatusOr<std::shared_ptr<PoolEngine::Pool>> PoolEngine::FindPool(PoolId id) const {
  ReaderLock lock(&registry_mu_);
  auto it = pools_.find(id);
  if (it == pools_.end()) return absl::NotFoundError(absl::StrCat("pool ", id, " does not exist"));
  return it->second;
}

absl::Status PoolEngine::CheckObjectKey(std::string_view object) {
  if (object.empty() || object.size() > kMaxObjectKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("object key of ", object.size(), " bytes; want 1 to ", kMaxObjectKeyBytes));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<PoolEngine::Pool>> PoolEngine::CheckHandle(PoolId id, std::string_view object) const {
  TMEM_RETURN_IF_ERROR(CheckObjectKey(object));
  return FindPool(id);
}

Mutex& PoolEngine::StripeFor(std::string_view key) { return stripes_[StripeOfKey(key, options_.lock_stripes)]; }

void PoolEngine::DeleteIfUnchanged(const std::string& key, const std::string& value) {
  MutexLock stripe(&StripeFor(key));
  // A newer entry held in the cache (dirty, not in the index yet) stays, and so does the index's.
  // The cache holding this very entry: the index holds it too or (written back) an older one,
  // which must not come back either.
  std::optional<IndexValue> cached = cache_->Peek(key);
  if (cached.has_value() && EncodeIndexValue(*cached) != value) return;
  cache_->Erase(key);
  absl::StatusOr<std::optional<std::string>> now = index_->GetPage(key);
  if (cached.has_value() || (now.ok() && now->has_value() && **now == value)) {
    absl::Status st = index_->DeletePage(key);
    if (!st.ok()) {
      TMEM_LOG_RATE_LIMITED(Warning) << "could not delete a stale index entry: " << st;
      RememberFailedDelete(key);  // an older version must not come back: gets miss until applied
    }
  }
}

absl::Status PoolEngine::FlushPage(PoolId id, std::string_view object, uint64_t index) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, CheckHandle(id, object));
  const std::string key = EncodePageKey(id, object, index);
  {
    MutexLock stripe(&StripeFor(key));
    // The cache first: a dirty entry written back after the index delete would bring the page back.
    cache_->Erase(key);
    if (absl::Status st = index_->DeletePage(key); !st.ok()) {
      RememberFailedDelete(key);  // gets miss until it is applied (the cache held the newest)
      return st;
    }
  }
  pool->counters.flush_page.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status PoolEngine::FlushObject(PoolId id, std::string_view object) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, CheckHandle(id, object));
  const std::string begin = ObjectRangeBegin(id, object);
  // The cache after the index (also when it failed part way): fills that read it before are
  // refused. Under the index's lock with the delete: no write-back of the object's dirty
  // entries comes between the two (they are dropped unwritten).
  absl::Status st =
      index_->DeletePagesIn(begin, ObjectRangeEnd(id, object), kMaxPointDeletes, [&] { cache_->EraseObject(begin); })
          .status();
  // Failed part way, the object's cached entries are gone while the index may keep older
  // versions of them: the whole pool is dropped before gets are served again.
  if (!st.ok()) RememberFailedPool(id);
  TMEM_RETURN_IF_ERROR(st);
  pool->counters.flush_object.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status PoolEngine::FlushPool(PoolId id) {
  TMEM_ENGINE_OPEN_OR_RETURN();
  TMEM_ASSIGN_OR_RETURN(std::shared_ptr<Pool> pool, FindPool(id));
  // Every cached entry of the pool dies with the generation, moved under the index's lock with
  // the range delete: no write-back of the pool's entries comes between the two.
  absl::Status st = index_->DeletePageRange(PoolRangeBegin(id), PoolRangeEnd(id),
                                            [&] { pool->cache_gen.fetch_add(1, std::memory_order_acq_rel); });
  if (!st.ok()) RememberFailedPool(id);  // the range delete is applied before gets are served again
  TMEM_RETURN_IF_ERROR(st);
  pool->counters.flush_pool.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

void PoolEngine::CleanIndexCache(bool all) {
  if (!write_back_) return;
  if (!all && !cache_->needs_clean()) return;
  // The write-back under the index's lock. It may take the pending set past its bound by what
  // one pass writes (a sixteenth of the cache); the writer applies it in the background, and a
  // pass that finds the set past its bound applies it first (back-pressure). A clean stop writes
  // every entry, a bounded part at a time.
  const size_t chunk = std::max<size_t>(1, options_.index_write_behind);
  do {
    (void)index_->ReserveWrites(0);
    index_->WriteBack([&](absl::FunctionRef<void(std::string_view, std::string_view)> write) {
      // Pool generations now: FlushPool and DestroyPool move them under this same lock.
      absl::flat_hash_map<PoolId, uint64_t> gens;
      {
        ReaderLock lock(&registry_mu_);
        for (const auto& [id, pool] : pools_) gens[id] = pool->cache_gen.load(std::memory_order_acquire);
      }
      // A pool the snapshot lacks was created since (ids are never reused) or is being destroyed:
      // its entries are written either way; the compaction filter drops those of pools gone.
      // An entry whose log segment was reclaimed names a page that is gone: not written (any older
      // version the index holds lies in an older segment, reclaimed too).
      const uint64_t reclaimed = log_->reclaimed_seq();
      auto live = [&](std::string_view key, const IndexValue& value, uint64_t gen) {
        if (value.loc.seq <= reclaimed) return false;
        std::optional<PoolId> id = PoolOfPageKey(key);
        if (!id.has_value()) return false;
        auto it = gens.find(*id);
        return it == gens.end() || it->second == gen;
      };
      cache_->Clean(all, chunk, live, write);
    });
  } while (all && cache_->dirty_entries() > 0);
}

bool PoolEngine::IsStale(std::string_view key, std::string_view value) const {
  std::optional<IndexValue> v = DecodeIndexValue(value);
  bool stale = !v.has_value() || v->loc.seq <= log_->reclaimed_seq();
  if (!stale && registry_loaded_.load(std::memory_order_acquire)) {
    std::optional<PoolId> pool = PoolOfPageKey(key);
    ReaderLock lock(&registry_mu_);
    stale = !pool.has_value() || pools_.find(*pool) == pools_.end();
  }
  if (stale) counters_.pages_evicted_compaction.fetch_add(1, std::memory_order_relaxed);
  return stale;
}

void PoolEngine::VisitStats(StatsVisitor& v) const {
  const StatLabels none;
  ReaderLock ops_lock(&ops_mu_);
  log_->VisitStats(v);
  if (!closed_) index_->VisitStats(v);
  cache_->VisitStats(v);
  v.Counter("pages_evicted", "Index entries found stale (segment reclaimed) by a get.",
            counters_.pages_evicted.load(std::memory_order_relaxed), none);
  v.Counter("pages_evicted_compaction", "Stale index entries dropped by RocksDB compaction.",
            counters_.pages_evicted_compaction.load(std::memory_order_relaxed), none);
  v.Counter("page_read_errors", "Gets that missed because the device returned an error.",
            counters_.read_errors.load(std::memory_order_relaxed), none);
  v.Counter("pools_destroyed", "Pools destroyed.", counters_.pools_destroyed.load(std::memory_order_relaxed), none);
  v.Counter("puts_dropped_no_room", "Puts dropped after waiting pool.put_wait_ms for room in the page log.",
            counters_.puts_dropped_no_room.load(std::memory_order_relaxed), none);
  v.Counter("put_room_waits", "Times a put waited for room in the page log (every write buffer in flight).",
            counters_.put_room_waits.load(std::memory_order_relaxed), none);
  v.Gauge("put_room_wait_seconds", "Seconds puts have waited for room in the page log since the start (only grows).",
          static_cast<double>(counters_.put_room_wait_us.load(std::memory_order_relaxed)) / 1e6, none);
  v.Counter("puts_dropped_index_error", "Puts dropped because the page index had a background error.",
            counters_.puts_dropped_index_error.load(std::memory_order_relaxed), none);
  v.Gauge("instance_id", "Instance id of this run (increases at every start).", static_cast<double>(instance_id()),
          none);
  std::vector<std::pair<std::string, std::shared_ptr<Pool>>> pools;
  {
    ReaderLock lock(&registry_mu_);
    for (const auto& [id, p] : pools_) pools.emplace_back(std::to_string(id), p);
  }
  v.Gauge("pools", "Pools that exist.", static_cast<double>(pools.size()), none);
  std::vector<std::shared_ptr<OwnerUsage>> usage;
  {
    ReaderLock lock(&registry_mu_);
    for (const auto& [owner, u] : usage_) usage.push_back(u);
  }
  const uint64_t reclaimed = log_->reclaimed_seq();
  for (const auto& u : usage) {
    const StatLabels t = {{"tenant", u->owner()}};
    v.Gauge("tenant_log_bytes", "Bytes of the page log in live segments that the tenant's puts wrote",
            static_cast<double>(u->LiveBytes(reclaimed)), t);
    if (u->share_bytes() != UINT64_MAX) {
      v.Gauge("tenant_log_share_bytes", "The tenant's share of the page log (log_share_percent)",
              static_cast<double>(u->share_bytes()), t);
    }
    v.Counter("tenant_puts_dropped_quota", "Puts dropped because the tenant held its share of the page log",
              u->dropped(), t);
  }
  for (const auto& [name, p] : pools) {
    const PoolCounters& c = p->counters;
    const char* kind = p->info.kind == PoolKind::kShared ? "shared" : "private";
    auto load = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    v.Counter("pool_puts", "Pages put.", load(c.puts), {{"pool", name}, {"kind", kind}});
    v.Counter("pool_puts_dropped", "Puts dropped because the page could not be stored.", load(c.puts_dropped),
              {{"pool", name}, {"kind", kind}});
    v.Counter("pool_gets", "Gets by result.", load(c.gets_hit), {{"pool", name}, {"kind", kind}, {"result", "hit"}});
    v.Counter("pool_gets", "Gets by result.", load(c.gets_miss), {{"pool", name}, {"kind", kind}, {"result", "miss"}});
    v.Counter("pool_flushes", "Invalidations by kind.", load(c.flush_page),
              {{"pool", name}, {"kind", kind}, {"flush", "page"}});
    v.Counter("pool_flushes", "Invalidations by kind.", load(c.flush_object),
              {{"pool", name}, {"kind", kind}, {"flush", "object"}});
    v.Counter("pool_flushes", "Invalidations by kind.", load(c.flush_pool),
              {{"pool", name}, {"kind", kind}, {"flush", "pool"}});
  }
}

}  // namespace tmem::pool
