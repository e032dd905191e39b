#include "server/io/block_device.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tmem::io {

absl::Status CheckIo(const BlockDevice& dev, uint64_t offset, const void* buf, size_t len) {
  const uint64_t a = dev.alignment();
  if (offset % a != 0 || len % a != 0 || reinterpret_cast<uintptr_t>(buf) % a != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unaligned I/O on ", dev.Describe(), ": offset ", offset, ", length ", len, ", alignment ", a));
  }
  if (offset > dev.size_bytes() || len > dev.size_bytes() - offset) {
    return absl::OutOfRangeError(
        absl::StrCat("I/O past the end of ", dev.Describe(), ": offset ", offset, " + ", len, " > ", dev.size_bytes()));
  }
  return absl::OkStatus();
}

void BlockDevice::ReadMany(std::span<ReadOp> ops) {
  for (ReadOp& op : ops) op.status = Read(op.offset, op.buf, op.len);
}

absl::Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    case EAGAIN:
    case EINTR:
      return absl::UnavailableError(msg);
    default:
      return absl::InternalError(msg);
  }
}

AlignedBuffer::AlignedBuffer(size_t size, size_t alignment) : size_(AlignUp(size, alignment)) {
  if (size_ == 0) return;
  void* p = nullptr;
  if (posix_memalign(&p, alignment, size_) != 0) throw std::bad_alloc();
  std::memset(p, 0, size_);
  data_ = static_cast<uint8_t*>(p);
}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

}  // namespace tmem::io
