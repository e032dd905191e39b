// PageIndex's RocksDB statuses and background errors: conversion to absl::Status, RocksDB's log
// lines in tmemd's log, and the recovery from background errors (the listener and the resumer).
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/listener.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "server/pool/page_index.h"
#include "server/pool/page_index_internal.h"

namespace tmem::pool {

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

namespace {

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

}  // namespace

std::shared_ptr<rocksdb::Logger> NewRocksLogger() { return std::make_shared<RocksLogger>(); }

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

std::shared_ptr<rocksdb::EventListener> PageIndex::NewErrorListener(PageIndex* index) {
  return std::make_shared<ErrorListener>(index);
}

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

}  // namespace tmem::pool
