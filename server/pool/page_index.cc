#include "server/pool/page_index.h"

#include <rocksdb/cache.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/pool/page_index_internal.h"
#include "server/pool/unsynced_files.h"

namespace tmem::pool {
namespace {

// The page store's directory under the metadata directory (its own RocksDB instance). Before it
// existed, pages lived in a column family of this name in the metadata store.
constexpr char kPagesDir[] = "pages";
constexpr char kOldPagesCf[] = "pages";

rocksdb::Slice S(std::string_view v) { return rocksdb::Slice(v.data(), v.size()); }

rocksdb::WriteOptions NoWal() {
  rocksdb::WriteOptions w;
  w.disableWAL = true;
  return w;
}

class StaleFilter final : public rocksdb::CompactionFilter {
 public:
  explicit StaleFilter(const std::function<bool(std::string_view, std::string_view)>* is_stale) : is_stale_(is_stale) {}
  bool Filter(int, const rocksdb::Slice& key, const rocksdb::Slice& value, std::string*, bool*) const override {
    return (*is_stale_)(std::string_view(key.data(), key.size()), std::string_view(value.data(), value.size()));
  }
  const char* Name() const override { return "tmem.StaleFilter"; }

 private:
  const std::function<bool(std::string_view, std::string_view)>* is_stale_;
};

class StaleFilterFactory final : public rocksdb::CompactionFilterFactory {
 public:
  explicit StaleFilterFactory(const std::function<bool(std::string_view, std::string_view)>* is_stale)
      : is_stale_(is_stale) {}
  std::unique_ptr<rocksdb::CompactionFilter> CreateCompactionFilter(
      const rocksdb::CompactionFilter::Context&) override {
    return std::make_unique<StaleFilter>(is_stale_);
  }
  const char* Name() const override { return "tmem.StaleFilterFactory"; }

 private:
  const std::function<bool(std::string_view, std::string_view)>* is_stale_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PageIndex>> PageIndex::Open(const PageIndexOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("metadata directory is empty");
  std::unique_ptr<PageIndex> index(new PageIndex());
  index->options_ = options;
  if (!index->options_.is_stale) index->options_.is_stale = [](std::string_view, std::string_view) { return false; };
  index->cache_ = rocksdb::NewLRUCache(options.block_cache_bytes);
  index->listener_ = NewErrorListener(index.get());
  TMEM_RETURN_IF_ERROR(index->OpenMetaStore());
  TMEM_RETURN_IF_ERROR(index->OpenPageStore());
  index->resumer_ = std::thread([p = index.get()] { p->ResumerLoop(); });
  if (index->write_behind()) index->writer_ = std::thread([p = index.get()] { p->WriterLoop(); });
  return index;
}

absl::Status PageIndex::OpenMetaStore() {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.keep_log_file_num = 4;
  db_options.max_log_file_size = 8 << 20;
  db_options.listeners.push_back(listener_);
  db_options.info_log = NewRocksLogger();
  rocksdb::ColumnFamilyOptions meta;
  meta.write_buffer_size = 1 << 20;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, meta}};
  // A store from before the page store had its own directory holds the pages in a column family:
  // it is opened to be dropped (its pages are misses from now on, as after an unclean stop).
  std::vector<std::string> existing;
  const bool old_pages = rocksdb::DB::ListColumnFamilies(db_options, options_.dir, &existing).ok() &&
                         std::find(existing.begin(), existing.end(), kOldPagesCf) != existing.end();
  if (old_pages) cfs.push_back({kOldPagesCf, rocksdb::ColumnFamilyOptions()});
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  TMEM_RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(db_options, options_.dir, cfs, &handles, &db), absl::StrCat("open ", options_.dir)));
  db_.reset(db);
  meta_cf_ = handles[0];
  if (old_pages) {
    rocksdb::Status s = db_->DropColumnFamily(handles[1]);
    db_->DestroyColumnFamilyHandle(handles[1]);
    TMEM_RETURN_IF_ERROR(FromRocks(s, "drop the old page column family"));
    TMEM_LOG(Warning) << "the page index moved to " << options_.dir << "/" << kPagesDir
                      << "; the pages indexed in the metadata store were dropped";
  }
  return absl::OkStatus();
}

absl::Status PageIndex::OpenPageStore() {
  if (pages_env_ == nullptr) pages_env_ = NewUnsyncedEnv(&syncs_skipped_);
  rocksdb::Options o;
  o.env = pages_env_.get();
  o.create_if_missing = true;
  o.max_background_jobs = 2;
  o.keep_log_file_num = 4;
  o.max_log_file_size = 8 << 20;
  // The memory of every memtable together is bounded by the write buffer budget.
  o.db_write_buffer_size = options_.write_buffer_bytes * 3;
  // Written through: writers do not wait for each other's memtable inserts. This gives up
  // snapshot immutability, which the index never uses; each handle's writes are ordered by the
  // engine's stripe locks, and a write is visible once Put returns. Written behind, one writer
  // applies sorted batches, and concurrent inserts would only cost.
  o.unordered_write = !write_behind();
  o.allow_concurrent_memtable_write = !write_behind();
  o.listeners.push_back(listener_);
  o.info_log = NewRocksLogger();

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache_;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter blocks live in the block cache, so that the index's RAM stays bounded by
  // the cache size however many pages are cached.
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.metadata_block_size = 4096;
  table.block_size = 4096;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  o.write_buffer_size = options_.write_buffer_bytes;
  o.max_write_buffer_number = 3;
  o.compression = rocksdb::kNoCompression;
  o.compaction_filter_factory = std::make_shared<StaleFilterFactory>(&options_.is_stale);
  o.level_compaction_dynamic_level_bytes = true;
  // A Bloom filter per memtable: a lookup skips every memtable that lacks the key instead of
  // searching its skip list (a get checks the active and up to two immutable memtables).
  o.memtable_whole_key_filtering = true;
  o.memtable_prefix_bloom_size_ratio = 0.05;

  const std::string dir = absl::StrCat(options_.dir, "/", kPagesDir);
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, dir, &db);
  if (!s.ok() && !s.IsBusy() && s.ToString().find("lock") == std::string::npos) {
    // Files the store never synced, cut short by a power loss: the store is created anew (its
    // pages would be dropped at this start anyway, as after every unclean stop).
    TMEM_LOG(Warning) << "the page store in " << dir << " does not open (" << s.ToString() << "); it is created empty";
    TMEM_RETURN_IF_ERROR(FromRocks(rocksdb::DestroyDB(dir, o), absl::StrCat("remove ", dir)));
    s = rocksdb::DB::Open(o, dir, &db);
  }
  TMEM_RETURN_IF_ERROR(FromRocks(s, absl::StrCat("open ", dir)));
  pages_db_.reset(db);
  pages_cf_ = pages_db_->DefaultColumnFamily();
  return absl::OkStatus();
}

void PageIndex::StopWriter() {
  if (!writer_.joinable()) return;
  {
    MutexLock lock(&writer_mu_);
    writer_stop_ = true;
    writer_cv_.SignalAll();
  }
  writer_.join();
}

void PageIndex::ClosePageStore() {
  if (pages_db_ == nullptr) return;
  pages_db_->Close();
  pages_db_.reset();
  pages_cf_ = nullptr;
}

PageIndex::~PageIndex() {
  StopWriter();
  if (pages_db_ != nullptr && write_behind()) {
    // What is still pending goes to RocksDB (a clean stop applied it already; after an unclean
    // one the pages are dropped at the next start anyway).
    if (absl::Status st = ApplyPending(); !st.ok()) {
      TMEM_LOG(Warning) << "page index closed with " << pending_.size() << " writes not applied: " << st;
    }
  }
  {
    MutexLock lock(&error_mu_);
    closing_ = true;
    error_cv_.SignalAll();
  }
  if (resumer_.joinable()) resumer_.join();
  ClosePageStore();
  if (db_ == nullptr) return;
  // Handles before the DB, as RocksDB requires.
  db_->DestroyColumnFamilyHandle(meta_cf_);
  db_->Close();
  db_.reset();
}

absl::Status PageIndex::CloseClean() {
  StopWriter();
  {
    MutexLock lock(&apply_mu_);
    TMEM_RETURN_IF_ERROR(ApplyPendingLocked());
    TMEM_RETURN_IF_ERROR(RocksFlush());
    // Closed before the sync: no background work writes a file after it.
    ClosePageStore();
  }
  const std::string dir = absl::StrCat(options_.dir, "/", kPagesDir);
  TMEM_RETURN_IF_ERROR(FsyncFilesAndDirectory(dir));
  return FsyncDirectory(options_.dir);  // the page store's directory entry
}

absl::Status PageIndex::PutPage(std::string_view key, std::string_view value) {
  if (!write_behind()) return FromRocks(pages_db_->Put(NoWal(), pages_cf_, S(key), S(value)), "put page");
  TMEM_RETURN_IF_ERROR(MakeRoom(1));
  pending_.Add(key, value);
  Kick();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> PageIndex::GetPage(std::string_view key) {
  if (std::optional<std::optional<std::string>> p = pending_.Find(key); p.has_value()) return std::move(*p);
  std::string value;
  rocksdb::Status s = pages_db_->Get(rocksdb::ReadOptions(), pages_cf_, S(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  TMEM_RETURN_IF_ERROR(FromRocks(s, "get page"));
  return std::optional<std::string>(std::move(value));
}

std::vector<absl::StatusOr<std::optional<std::string>>> PageIndex::MultiGetPages(std::span<const std::string> keys) {
  std::vector<absl::StatusOr<std::optional<std::string>>> out(keys.size(), std::optional<std::string>());
  // Pending writes answer first; RocksDB answers the rest in one MultiGet.
  std::vector<rocksdb::Slice> slices;
  std::vector<size_t> asked;
  slices.reserve(keys.size());
  asked.reserve(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    if (std::optional<std::optional<std::string>> p = pending_.Find(keys[i]); p.has_value()) {
      out[i] = std::move(*p);
    } else {
      slices.push_back(S(keys[i]));
      asked.push_back(i);
    }
  }
  if (slices.empty()) return out;
  std::vector<rocksdb::PinnableSlice> values(slices.size());
  std::vector<rocksdb::Status> statuses(slices.size());
  pages_db_->MultiGet(rocksdb::ReadOptions(), pages_cf_, slices.size(), slices.data(), values.data(), statuses.data());
  for (size_t k = 0; k < slices.size(); ++k) {
    const size_t i = asked[k];
    if (statuses[k].IsNotFound()) continue;
    if (absl::Status st = FromRocks(statuses[k], "get page"); !st.ok()) {
      out[i] = st;
    } else {
      out[i] = std::optional<std::string>(values[k].ToString());
    }
  }
  return out;
}

absl::Status PageIndex::WritePages(std::span<const std::pair<std::string, std::optional<std::string>>> ops) {
  std::vector<PageWrite> writes;
  writes.reserve(ops.size());
  for (const auto& [key, value] : ops) {
    writes.push_back({key, value.has_value() ? std::optional<std::string_view>(*value) : std::nullopt});
  }
  return WritePages(std::span<const PageWrite>(writes));
}

absl::Status PageIndex::WritePages(std::span<const PageWrite> ops) {
  if (!write_behind()) {
    rocksdb::WriteBatch batch;
    for (const PageWrite& w : ops) {
      rocksdb::Status s =
          w.value.has_value() ? batch.Put(pages_cf_, S(w.key), S(*w.value)) : batch.Delete(pages_cf_, S(w.key));
      TMEM_RETURN_IF_ERROR(FromRocks(s, "batch"));
    }
    return FromRocks(pages_db_->Write(NoWal(), &batch), "write pages");
  }
  TMEM_RETURN_IF_ERROR(MakeRoom(ops.size()));
  // In order: of two writes of one key in `ops`, the later stays.
  for (const PageWrite& w : ops) pending_.Add(w.key, w.value);
  Kick();
  return absl::OkStatus();
}

absl::Status PageIndex::DeletePage(std::string_view key) {
  if (!write_behind()) return FromRocks(pages_db_->Delete(NoWal(), pages_cf_, S(key)), "delete page");
  TMEM_RETURN_IF_ERROR(MakeRoom(1));
  pending_.Add(key, std::nullopt);
  Kick();
  return absl::OkStatus();
}

absl::Status PageIndex::MakeRoom(size_t n) {
  const size_t max = options_.write_behind_max;
  if (pending_.active() + n < max) return absl::OkStatus();
  MutexLock lock(&apply_mu_);
  if (pending_.active() + n < max) return absl::OkStatus();  // another applier made room
  inline_applies_.fetch_add(1, std::memory_order_relaxed);
  absl::Status st = ApplyPendingLocked();
  if (st.ok() || pending_.active() + n < 2 * max) return absl::OkStatus();
  // RocksDB refuses writes and twice the bound waits: record nothing more (the caller handles a
  // failed index write as it always did).
  writes_refused_.fetch_add(n, std::memory_order_relaxed);
  return st;
}

void PageIndex::Kick() {
  if (pending_.active() < options_.write_behind_batch) return;
  if (writer_kicked_.exchange(true, std::memory_order_acq_rel)) return;
  MutexLock lock(&writer_mu_);
  writer_cv_.Signal();
}

absl::Status PageIndex::ApplyPending() {
  MutexLock lock(&apply_mu_);
  return ApplyPendingLocked();
}

absl::Status PageIndex::ApplyPendingLocked() {
  if (pending_.Swap() == 0) return absl::OkStatus();
  // In key order: the memtable's skip list then finds each insert's place from the last one's
  // (RocksDB keeps that splice for sequential inserts) instead of searching from the top.
  std::vector<std::pair<std::string_view, std::optional<std::string_view>>> sorted;
  pending_.ForEachApplying(
      [&](std::string_view key, std::optional<std::string_view> value) { sorted.emplace_back(key, value); });
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  rocksdb::WriteBatch batch;
  rocksdb::Status built;
  const size_t n = sorted.size();
  for (const auto& [key, value] : sorted) {
    rocksdb::Status s = value.has_value() ? batch.Put(pages_cf_, S(key), S(*value)) : batch.Delete(pages_cf_, S(key));
    if (built.ok()) built = s;
  }
  absl::Status st = FromRocks(built, "batch");
  if (st.ok()) st = FromRocks(pages_db_->Write(NoWal(), &batch), "write pages");
  if (!st.ok()) {
    pending_.RestoreApplying();
    apply_failures_.fetch_add(1, std::memory_order_relaxed);
    return st;
  }
  pending_.ClearApplying();
  batches_applied_.fetch_add(1, std::memory_order_relaxed);
  entries_applied_.fetch_add(n, std::memory_order_relaxed);
  return absl::OkStatus();
}

void PageIndex::WriterLoop() {
  const auto interval = std::chrono::milliseconds(std::max<int64_t>(1, options_.write_behind_interval_ms));
  MutexLock lock(&writer_mu_);
  while (!writer_stop_) {
    if (!writer_kicked_.load(std::memory_order_acquire)) writer_cv_.WaitFor(&writer_mu_, interval);
    writer_kicked_.store(false, std::memory_order_release);
    if (writer_stop_) break;
    if (pending_.active() == 0) continue;
    writer_mu_.Unlock();
    const absl::Status st = ApplyPending();
    writer_mu_.Lock();
    if (!st.ok()) {
      // RocksDB refuses writes (a background error the resumer is working on): the writes stay
      // pending and readable; try again after the resumer's shortest backoff.
      TMEM_LOG_RATE_LIMITED(Warning) << "page index write-behind: " << st;
      writer_cv_.WaitFor(&writer_mu_, std::chrono::milliseconds(options_.resume_backoff_min_ms));
    }
  }
}

absl::Status PageIndex::RocksDeleteRange(std::string_view begin, std::string_view end) {
  return FromRocks(pages_db_->DeleteRange(NoWal(), pages_cf_, S(begin), S(end)), "delete range");
}

absl::Status PageIndex::DeletePageRange(std::string_view begin, std::string_view end, absl::FunctionRef<void()> then) {
  MutexLock lock(&apply_mu_);
  // A pending put of the range must not be read while RocksDB's range goes, nor reach RocksDB
  // after it: it becomes a pending delete first.
  pending_.DeleteActiveIn(begin, end);
  absl::Status st = RocksDeleteRange(begin, end);
  then();
  return st;
}

absl::StatusOr<uint64_t> PageIndex::DeletePagesIn(std::string_view begin, std::string_view end,
                                                  uint32_t max_point_deletes, absl::FunctionRef<void()> then) {
  MutexLock lock(&apply_mu_);
  absl::StatusOr<uint64_t> seen = DeletePagesInLocked(begin, end, max_point_deletes);
  then();
  return seen;
}

absl::StatusOr<uint64_t> PageIndex::DeletePagesInLocked(std::string_view begin, std::string_view end,
                                                        uint32_t max_point_deletes) {
  const uint64_t pending = pending_.DeleteActiveIn(begin, end);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper = S(end);
  ro.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(pages_db_->NewIterator(ro, pages_cf_));
  rocksdb::WriteBatch batch;
  uint64_t seen = 0;
  for (it->Seek(S(begin)); it->Valid(); it->Next()) {
    if (++seen > max_point_deletes) break;
    TMEM_RETURN_IF_ERROR(FromRocks(batch.Delete(pages_cf_, it->key()), "batch"));
  }
  TMEM_RETURN_IF_ERROR(FromRocks(it->status(), "iterate"));
  if (seen == 0) return pending;
  if (seen > max_point_deletes) {
    TMEM_RETURN_IF_ERROR(RocksDeleteRange(begin, end));
    return seen + pending;
  }
  TMEM_RETURN_IF_ERROR(FromRocks(pages_db_->Write(NoWal(), &batch), "delete pages"));
  return seen + pending;
}

void PageIndex::WriteBack(
    absl::FunctionRef<void(absl::FunctionRef<void(std::string_view key, std::string_view value)> write)> fn) {
  {
    MutexLock lock(&apply_mu_);
    fn([this](std::string_view key, std::string_view value) { pending_.Add(key, value); });
  }
  Kick();
}

absl::Status PageIndex::DropAllPages() {
  MutexLock lock(&apply_mu_);
  // Every pending write goes, then the whole store: a store left by an unclean stop may hold
  // files cut short (it never syncs), which a range delete would leave for compaction to trip on.
  pending_.Swap();
  pending_.ClearApplying();
  rocksdb::Options o;
  o.env = pages_env_.get();
  ClosePageStore();
  const std::string dir = absl::StrCat(options_.dir, "/", kPagesDir);
  TMEM_RETURN_IF_ERROR(FromRocks(rocksdb::DestroyDB(dir, o), absl::StrCat("remove ", dir)));
  return OpenPageStore();
}

absl::Status PageIndex::RocksFlush() {
  rocksdb::FlushOptions f;
  f.wait = true;
  return FromRocks(pages_db_->Flush(f, pages_cf_), "flush");
}

absl::Status PageIndex::FlushPages() {
  MutexLock lock(&apply_mu_);
  TMEM_RETURN_IF_ERROR(ApplyPendingLocked());
  return RocksFlush();
}

absl::Status PageIndex::CompactPages() {
  MutexLock lock(&apply_mu_);
  TMEM_RETURN_IF_ERROR(ApplyPendingLocked());
  TMEM_RETURN_IF_ERROR(RocksFlush());
  rocksdb::CompactRangeOptions c;
  c.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  return FromRocks(pages_db_->CompactRange(c, pages_cf_, nullptr, nullptr), "compact");
}

absl::StatusOr<uint64_t> PageIndex::CountPages() {
  MutexLock lock(&apply_mu_);
  TMEM_RETURN_IF_ERROR(ApplyPendingLocked());
  std::unique_ptr<rocksdb::Iterator> it(pages_db_->NewIterator(rocksdb::ReadOptions(), pages_cf_));
  uint64_t n = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) ++n;
  TMEM_RETURN_IF_ERROR(FromRocks(it->status(), "iterate"));
  return n;
}

absl::Status PageIndex::ForEachPage(const std::function<void(std::string_view key, std::string_view value)>& fn) {
  MutexLock lock(&apply_mu_);
  TMEM_RETURN_IF_ERROR(ApplyPendingLocked());
  rocksdb::ReadOptions r;
  r.fill_cache = false;  // one pass at start: keep the block cache for the lookups that follow
  std::unique_ptr<rocksdb::Iterator> it(pages_db_->NewIterator(r, pages_cf_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    fn(std::string_view(it->key().data(), it->key().size()), std::string_view(it->value().data(), it->value().size()));
  }
  return FromRocks(it->status(), "iterate");
}

absl::StatusOr<std::optional<std::string>> PageIndex::GetMeta(std::string_view key) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_cf_, S(key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  TMEM_RETURN_IF_ERROR(FromRocks(s, "get metadata"));
  return std::optional<std::string>(std::move(value));
}

absl::Status PageIndex::WriteMeta(const std::vector<std::pair<std::string, std::string>>& puts,
                                  const std::vector<std::string>& deletes) {
  rocksdb::WriteBatch batch;
  for (const auto& [k, v] : puts) TMEM_RETURN_IF_ERROR(FromRocks(batch.Put(meta_cf_, k, v), "batch"));
  for (const auto& k : deletes) TMEM_RETURN_IF_ERROR(FromRocks(batch.Delete(meta_cf_, k), "batch"));
  rocksdb::WriteOptions w;
  w.sync = true;
  return FromRocks(db_->Write(w, &batch), "write metadata");
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> PageIndex::ScanMeta(std::string_view prefix) {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_cf_));
  for (it->Seek(S(prefix)); it->Valid() && it->key().starts_with(S(prefix)); it->Next()) {
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  TMEM_RETURN_IF_ERROR(FromRocks(it->status(), "scan metadata"));
  return out;
}

void PageIndex::VisitStats(StatsVisitor& v) const {
  const StatLabels none;
  auto prop = [&](const char* p) -> double {
    uint64_t value = 0;
    if (pages_db_ != nullptr) pages_db_->GetIntProperty(pages_cf_, p, &value);
    return static_cast<double>(value);
  };
  v.Gauge("index_estimated_entries", "Estimated page index entries in RocksDB.", prop("rocksdb.estimate-num-keys"),
          none);
  v.Gauge("index_memtable_bytes", "Bytes held by the page index memtables.", prop("rocksdb.size-all-mem-tables"), none);
  v.Gauge("index_sst_bytes", "Bytes of page index SST files.", prop("rocksdb.total-sst-files-size"), none);
  v.Gauge("index_block_cache_bytes", "Bytes in the page index block cache.", static_cast<double>(cache_->GetUsage()),
          none);
  v.Gauge("index_background_error", "1 while a RocksDB background error stops the page index's writes",
          has_background_error() ? 1 : 0, none);
  v.Counter("index_background_errors", "RocksDB background errors met by the page index", background_errors_seen(),
            none);
  v.Counter(
      "index_syncs_skipped",
      "Syncs of page store files RocksDB asked for and tmemd skipped (the store is synced once, at a clean stop).",
      syncs_skipped(), none);
  v.Counter("index_resumes", "DB::Resume() attempts after background errors", resumes(), none);
  v.Gauge("index_pending_writes", "Page index writes accepted and not yet applied to RocksDB (write-behind).",
          static_cast<double>(pending_.size()), none);
  v.Counter("index_write_behind_batches", "Batches of pending page index writes applied to RocksDB.",
            batches_applied_.load(std::memory_order_relaxed), none);
  v.Counter("index_write_behind_entries", "Pending page index writes applied to RocksDB.",
            entries_applied_.load(std::memory_order_relaxed), none);
  v.Counter("index_write_behind_inline",
            "Writes that found the pending bound reached and applied the batch themselves.",
            inline_applies_.load(std::memory_order_relaxed), none);
  v.Counter("index_write_behind_failures", "Batches of pending page index writes that RocksDB refused (kept, retried).",
            apply_failures_.load(std::memory_order_relaxed), none);
  v.Counter("index_write_behind_refused",
            "Page index writes refused because RocksDB refused writes and twice the pending bound waited.",
            writes_refused_.load(std::memory_order_relaxed), none);
}

}  // namespace tmem::pool
