#include "server/pool/page_index.h"

#include <dirent.h>
#include <fcntl.h>
#include <rocksdb/cache.h>
#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace tmem::pool {
namespace {

// The page store's directory under the metadata directory (its own RocksDB instance). Before it
// existed, pages lived in a column family of this name in the metadata store.
constexpr char kPagesDir[] = "pages";
constexpr char kOldPagesCf[] = "pages";

// The page store's files: written, never synced while tmemd runs. A sync buys the page store
// nothing (after an unclean stop every page is dropped and the store is created anew), and here
// it costs every page put: a sync makes the device write back all it holds, the page log's
// segments included, and each segment write waits behind it (300 ms stalls measured on a virtual
// disk, the log's write buffers full meanwhile). PageIndex::CloseClean makes the files durable
// once, after the store is closed.
// Each skipped sync is counted in `*skipped` (tmem_index_syncs_skipped_total).
rocksdb::IOStatus SkipSync(std::atomic<uint64_t>* skipped) {
  skipped->fetch_add(1, std::memory_order_relaxed);
  return rocksdb::IOStatus::OK();
}

class UnsyncedFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  UnsyncedFile(std::unique_ptr<rocksdb::FSWritableFile> f, std::atomic<uint64_t>* skipped)
      : FSWritableFileOwnerWrapper(std::move(f)), skipped_(skipped) {}
  rocksdb::IOStatus Sync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return SkipSync(skipped_); }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return SkipSync(skipped_); }
  rocksdb::IOStatus RangeSync(uint64_t, uint64_t, const rocksdb::IOOptions&, rocksdb::IODebugContext*) override {
    return SkipSync(skipped_);
  }

 private:
  std::atomic<uint64_t>* const skipped_;
};

class UnsyncedDirectory final : public rocksdb::FSDirectoryWrapper {
 public:
  UnsyncedDirectory(std::unique_ptr<rocksdb::FSDirectory> d, std::atomic<uint64_t>* skipped)
      : FSDirectoryWrapper(std::move(d)), skipped_(skipped) {}
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions&, rocksdb::IODebugContext*) override { return SkipSync(skipped_); }
  rocksdb::IOStatus FsyncWithDirOptions(const rocksdb::IOOptions&, rocksdb::IODebugContext*,
                                        const rocksdb::DirFsyncOptions&) override {
    return SkipSync(skipped_);
  }

 private:
  std::atomic<uint64_t>* const skipped_;
};

class UnsyncedFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  explicit UnsyncedFileSystem(std::atomic<uint64_t>* skipped)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), skipped_(skipped) {}
  const char* Name() const override { return "tmem.UnsyncedFileSystem"; }
  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->NewWritableFile(f, o, r, dbg), r);
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->ReopenWritableFile(f, o, r, dbg), r);
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old, const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* dbg) override {
    return Wrap(target()->ReuseWritableFile(f, old, o, r, dbg), r);
  }
  rocksdb::IOStatus NewDirectory(const std::string& name, const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewDirectory(name, o, r, dbg);
    if (s.ok()) *r = std::make_unique<UnsyncedDirectory>(std::move(*r), skipped_);
    return s;
  }

 private:
  rocksdb::IOStatus Wrap(rocksdb::IOStatus s, std::unique_ptr<rocksdb::FSWritableFile>* r) {
    if (s.ok()) *r = std::make_unique<UnsyncedFile>(std::move(*r), skipped_);
    return s;
  }
  std::atomic<uint64_t>* const skipped_;
};

absl::Status ErrnoStatus(std::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(std::string(what), " ", path, ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path);
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  errno = saved;
  return rc == 0 ? absl::OkStatus() : ErrnoStatus("fsync", path);
}

// fsync of every file in `dir` (not recursive), then of `dir` itself.
absl::Status FsyncDirectory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus("open directory", dir);
  absl::Status st;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_type != DT_REG && e->d_type != DT_UNKNOWN) continue;
    const std::string path = absl::StrCat(dir, "/", e->d_name);
    if (e->d_type == DT_UNKNOWN && std::strcmp(e->d_name, ".") == 0) continue;
    if (e->d_type == DT_UNKNOWN && std::strcmp(e->d_name, "..") == 0) continue;
    if (absl::Status f = FsyncPath(path, O_RDONLY); !f.ok() && st.ok()) st = f;
  }
  ::closedir(d);
  TMEM_RETURN_IF_ERROR(st);
  return FsyncPath(dir, O_RDONLY | O_DIRECTORY);
}

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat("rocksdb ", std::string(what), ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) return absl::UnavailableError(msg);
  if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
    return absl::FailedPreconditionError(absl::StrCat(msg, " (is another tmemd using this metadata directory?)"));
  }
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

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

// RocksDB's messages go to tmemd's log (warnings and worse), not to a LOG file in the metadata
// directory: on a full filesystem that file's writer fails, and the next message then trips an
// assertion in RocksDB (Debian's build keeps them) — a full disk must cost puts, not the process.
class RocksLogger final : public rocksdb::Logger {
 public:
  RocksLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {}
  void Logv(const char* format, va_list ap) override { Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap); }
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override {
    if (level < GetInfoLogLevel()) return;
    char buf[1024];
    std::vsnprintf(buf, sizeof(buf), format, ap);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL) {
      TMEM_LOG_RATE_LIMITED(Error) << "rocksdb: " << buf;
    } else {
      TMEM_LOG_RATE_LIMITED(Warning) << "rocksdb: " << buf;
    }
  }
};

// Records every background error and keeps RocksDB's own recovery out of the way, so that one
// loop (ResumerLoop) owns recovery and its backoff.
class PageIndex::ErrorListener final : public rocksdb::EventListener {
 public:
  explicit ErrorListener(PageIndex* index) : index_(index) {}
  void OnBackgroundError(rocksdb::BackgroundErrorReason reason, rocksdb::Status* error) override {
    if (error == nullptr || error->ok()) return;
    static constexpr const char* kReasons[] = {
        "flush", "compaction", "write", "memtable", "manifest write", "flush (no WAL)", "manifest write (no WAL)"};
    const auto r = static_cast<size_t>(reason);
    index_->RecordError(
        absl::StrCat(r < std::size(kReasons) ? kReasons[r] : "background work", ": ", error->ToString()));
  }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status, bool* auto_recovery) override {
    if (auto_recovery != nullptr) *auto_recovery = false;
  }

 private:
  PageIndex* const index_;
};

void PageIndex::RecordError(const std::string& what) {
  MutexLock lock(&error_mu_);
  errors_seen_.fetch_add(1, std::memory_order_relaxed);
  ++error_generation_;
  if (error_.empty()) {
    TMEM_LOG(Error) << "page index (RocksDB) stopped writes: " << what;
  }
  error_ = what;
  has_error_.store(true, std::memory_order_release);
  error_cv_.SignalAll();
}

absl::Status PageIndex::background_error() const {
  if (!has_background_error()) return absl::OkStatus();
  MutexLock lock(&error_mu_);
  if (error_.empty()) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat("page index (RocksDB) background error: ", error_));
}

absl::Status PageIndex::ResumeNow() {
  uint64_t generation;
  {
    MutexLock lock(&error_mu_);
    generation = error_generation_;
  }
  resumes_.fetch_add(1, std::memory_order_relaxed);
  {
    MutexLock lock(&apply_mu_);  // not while DropAllPages replaces the page store
    rocksdb::Status s = db_->Resume();
    if (s.ok() && pages_db_ != nullptr) s = pages_db_->Resume();
    if (!s.ok()) return FromRocks(s, "resume");
  }
  MutexLock lock(&error_mu_);
  // An error recorded while Resume ran (work it restarted met the full disk again) stays.
  if (error_generation_ != generation) return absl::UnavailableError("a new background error came during the resume");
  if (!error_.empty()) {
    TMEM_LOG(Info) << "page index (RocksDB) resumed after: " << error_;
  }
  error_.clear();
  has_error_.store(false, std::memory_order_release);
  return absl::OkStatus();
}

void PageIndex::ResumerLoop() {
  int64_t backoff_ms = options_.resume_backoff_min_ms;
  MutexLock lock(&error_mu_);
  while (!closing_) {
    if (error_.empty()) {
      backoff_ms = options_.resume_backoff_min_ms;
      error_cv_.Wait(&error_mu_);
      continue;
    }
    // Wait out the backoff (an end of the error or closing ends it early), then try.
    error_cv_.WaitFor(&error_mu_, std::chrono::milliseconds(backoff_ms));
    if (closing_ || error_.empty()) continue;
    error_mu_.Unlock();
    const absl::Status s = ResumeNow();
    error_mu_.Lock();
    if (!s.ok()) {
      TMEM_LOG_RATE_LIMITED(Warning) << "page index resume failed, next try in " << backoff_ms * 2 << " ms: " << s;
      backoff_ms = std::min(backoff_ms * 2, options_.resume_backoff_max_ms);
    }
  }
}

absl::StatusOr<std::unique_ptr<PageIndex>> PageIndex::Open(const PageIndexOptions& options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("metadata directory is empty");
  std::unique_ptr<PageIndex> index(new PageIndex());
  index->options_ = options;
  if (!index->options_.is_stale) index->options_.is_stale = [](std::string_view, std::string_view) { return false; };
  index->cache_ = rocksdb::NewLRUCache(options.block_cache_bytes);
  index->listener_ = std::make_shared<ErrorListener>(index.get());
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
  db_options.info_log = std::make_shared<RocksLogger>();
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
  if (pages_env_ == nullptr)
    pages_env_ = rocksdb::NewCompositeEnv(std::make_shared<UnsyncedFileSystem>(&syncs_skipped_));
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
  o.info_log = std::make_shared<RocksLogger>();

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
  TMEM_RETURN_IF_ERROR(FsyncDirectory(dir));
  return FsyncPath(options_.dir, O_RDONLY | O_DIRECTORY);  // the page store's directory entry
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
