#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/backend/block_backend.h"
#include "server/io/block_device.h"

namespace tmem::backend {
namespace {

class FileBackend final : public BlockBackend {
 public:
  FileBackend(int fd, uint64_t size, bool block_device, const FileBackendOptions& o)
      : fd_(fd), size_(size), block_device_(block_device), read_only_(o.read_only), path_(o.path) {}
  ~FileBackend() override { ::close(fd_); }

  uint64_t size() const override { return size_; }
  BackendCaps caps() const override {
    return {.flush = true, .fua = true, .trim = true, .zero = true, .multi_conn = true, .read_only = read_only_};
  }

  const io::IoWatch* io_watch() const override { return &watch_; }

  // Each operation is watched (io_watch): its duration while in flight, and its failure.
  template <typename Fn>
  absl::Status Watched(Fn fn) {
    io::IoScope scope(&watch_);
    absl::Status s = fn();
    scope.Done(s.ok());
    return s;
  }
  absl::Status Pread(void* buf, uint32_t len, uint64_t offset) override {
    return Watched([&] { return DoPread(buf, len, offset); });
  }
  absl::Status Pwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) override {
    return Watched([&] { return DoPwrite(buf, len, offset, fua); });
  }
  absl::Status Flush() override {
    return Watched([&] { return DoFlush(); });
  }
  absl::Status Trim(uint64_t offset, uint64_t len, bool fua) override {
    return Watched([&] { return DoTrim(offset, len, fua); });
  }
  absl::Status Zero(uint64_t offset, uint64_t len, bool may_trim, bool fua) override {
    return Watched([&] { return DoZero(offset, len, may_trim, fua); });
  }

 private:
  absl::Status DoPread(void* buf, uint32_t len, uint64_t offset) {
    auto* p = static_cast<uint8_t*>(buf);
    while (len > 0) {
      ssize_t n = ::pread(fd_, p, len, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return io::ErrnoStatus(errno, absl::StrCat("pread ", path_));
      if (n == 0) {  // a file shrunk under us: the rest reads as zeros
        std::memset(p, 0, len);
        break;
      }
      p += n;
      len -= static_cast<uint32_t>(n);
      offset += static_cast<uint64_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status DoPwrite(const void* buf, uint32_t len, uint64_t offset, bool fua) {
    const auto* p = static_cast<const uint8_t*>(buf);
    while (len > 0) {
      iovec iov{const_cast<uint8_t*>(p), len};
      ssize_t n = ::pwritev2(fd_, &iov, 1, static_cast<off_t>(offset), fua ? RWF_DSYNC : 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return io::ErrnoStatus(errno, absl::StrCat("pwrite ", path_));
      p += n;
      len -= static_cast<uint32_t>(n);
      offset += static_cast<uint64_t>(n);
    }
    return absl::OkStatus();
  }

  absl::Status DoFlush() {
    if (::fdatasync(fd_) != 0) return io::ErrnoStatus(errno, absl::StrCat("fdatasync ", path_));
    return absl::OkStatus();
  }

  absl::Status DoTrim(uint64_t offset, uint64_t len, bool fua) {
    int rc;
    if (block_device_) {
      uint64_t range[2] = {offset, len};
      rc = ::ioctl(fd_, BLKDISCARD, range);
    } else {
      rc = ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                       static_cast<off_t>(len));
    }
    // Trim is advisory: a filesystem or device that cannot discard keeps the data.
    if (rc != 0 && errno != EOPNOTSUPP && errno != ENOTTY && errno != EINVAL) {
      return io::ErrnoStatus(errno, absl::StrCat("discard ", path_));
    }
    return fua ? Flush() : absl::OkStatus();
  }

  absl::Status DoZero(uint64_t offset, uint64_t len, bool may_trim, bool fua) {
    if (!block_device_) {
      if (may_trim && ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                                  static_cast<off_t>(len)) == 0) {
        return fua ? Flush() : absl::OkStatus();
      }
      if (::fallocate(fd_, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                      static_cast<off_t>(len)) == 0) {
        return fua ? Flush() : absl::OkStatus();
      }
    } else {
      uint64_t range[2] = {offset, len};
      if (::ioctl(fd_, BLKZEROOUT, range) == 0) return fua ? Flush() : absl::OkStatus();
    }
    return ZeroByWriting(*this, offset, len, fua);
  }

 public:
  std::string Describe() const override { return absl::StrCat("file:", path_); }

 private:
  io::IoWatch watch_;
  const int fd_;
  const uint64_t size_;
  const bool block_device_;
  const bool read_only_;
  const std::string path_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlockBackend>> OpenFileBackend(const FileBackendOptions& o) {
  if (o.path.empty()) return absl::InvalidArgumentError("export backend path is empty");
  int flags = (o.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (o.create_size_bytes > 0 && !o.read_only) flags |= O_CREAT;
  int fd = ::open(o.path.c_str(), flags, 0644);
  if (fd < 0) return io::ErrnoStatus(errno, absl::StrCat("open ", o.path));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return io::ErrnoStatus(err, absl::StrCat("stat ", o.path));
  }
  uint64_t size = 0;
  const bool blk = S_ISBLK(st.st_mode);
  if (blk) {
    if (::ioctl(fd, BLKGETSIZE64, &size) != 0) {
      int err = errno;
      ::close(fd);
      return io::ErrnoStatus(err, absl::StrCat("BLKGETSIZE64 ", o.path));
    }
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
    if (size == 0 && o.create_size_bytes > 0) {
      if (::ftruncate(fd, static_cast<off_t>(o.create_size_bytes)) != 0) {
        int err = errno;
        ::close(fd);
        return io::ErrnoStatus(err, absl::StrCat("size ", o.path));
      }
      size = o.create_size_bytes;
    }
  } else {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(o.path, " is neither a regular file nor a block device"));
  }
  if (size == 0) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(o.path, " is empty; give the export a size to create it"));
  }
  return std::unique_ptr<BlockBackend>(new FileBackend(fd, size, blk, o));
}

}  // namespace tmem::backend
