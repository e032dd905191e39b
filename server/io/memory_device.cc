#include "server/io/memory_device.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tmem::io {

MemoryDevice::MemoryDevice(uint64_t size_bytes, uint32_t alignment)
    : size_(AlignDown(size_bytes, alignment)), alignment_(alignment), bytes_(new uint8_t[size_]()) {}

absl::Status MemoryDevice::Read(uint64_t offset, void* buf, size_t len) {
  TMEM_RETURN_IF_ERROR(CheckIo(*this, offset, buf, len));
  ReaderLock lock(&mu_);
  std::memcpy(buf, bytes_.get() + offset, len);
  return absl::OkStatus();
}

absl::Status MemoryDevice::Write(uint64_t offset, const void* buf, size_t len) {
  TMEM_RETURN_IF_ERROR(CheckIo(*this, offset, buf, len));
  WriterLock lock(&mu_);
  std::memcpy(bytes_.get() + offset, buf, len);
  return absl::OkStatus();
}

std::string MemoryDevice::Describe() const { return absl::StrCat("memory:", size_); }

}  // namespace tmem::io
