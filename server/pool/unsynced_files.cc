#include "server/pool/unsynced_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <rocksdb/file_system.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tmem::pool {
namespace {

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

}  // namespace

absl::Status FsyncFilesAndDirectory(const std::string& dir) {
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
  return FsyncDirectory(dir);
}

absl::Status FsyncDirectory(const std::string& dir) { return FsyncPath(dir, O_RDONLY | O_DIRECTORY); }

std::unique_ptr<rocksdb::Env> NewUnsyncedEnv(std::atomic<uint64_t>* skipped) {
  return rocksdb::NewCompositeEnv(std::make_shared<UnsyncedFileSystem>(skipped));
}

}  // namespace tmem::pool
