#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "kshim/relay/shim_device.h"

extern "C" {
#include "tmem_shim_abi.h"
#include "tsf_ring.h"
}

namespace tmem::kshim {
namespace {

absl::Status Errno(const std::string& what) {
  int e = errno;
  return absl::Status(e == ENOENT || e == ENODEV || e == ENXIO ? absl::StatusCode::kUnavailable
                      : e == EBUSY                             ? absl::StatusCode::kFailedPrecondition
                      : e == EPROTO                            ? absl::StatusCode::kFailedPrecondition
                                                               : absl::StatusCode::kInternal,
                      absl::StrCat(what, ": ", strerror(e)));
}

class KernelDevice final : public ShimDevice {
 public:
  explicit KernelDevice(int fd) : fd_(fd) {}
  ~KernelDevice() override {
    if (map_ != MAP_FAILED) munmap(map_, map_bytes_);
    close(fd_);  // detaches
  }

  absl::StatusOr<ShimMapping> Attach() override {
    struct tmem_shim_attach at = {};
    at.abi_version = TMEM_SHIM_ABI_VERSION;
    if (ioctl(fd_, TMEM_SHIM_IOC_ATTACH, &at) != 0) {
      if (errno == EPROTO) {
        return absl::FailedPreconditionError(
            absl::StrCat("the loaded tmem_shim module speaks another ring ABI than this relay (", TMEM_SHIM_ABI_VERSION,
                         "); install matching versions"));
      }
      return Errno("attach");
    }
    map_bytes_ = at.map_bytes;
    map_ = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (map_ == MAP_FAILED) return Errno("mmap of the shared area");
    if (int rc = tsr_check_header(map_, map_bytes_); rc != 0) {
      return absl::FailedPreconditionError(absl::StrCat("the shared area's header is not usable (code ", rc, ")"));
    }
    const auto* h = static_cast<const tmem_shim_header*>(map_);
    return ShimMapping{map_, map_bytes_, h->nr_slots, h->page_bytes, h->generation};
  }

  absl::Status Wait(int timeout_ms) override {
    struct pollfd p = {fd_, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc < 0 && errno != EINTR) return Errno("poll");
    if (rc > 0 && (p.revents & (POLLERR | POLLNVAL))) return absl::InternalError("the device reported an error");
    return absl::OkStatus();
  }

  absl::Status Kick() override {
    if (ioctl(fd_, TMEM_SHIM_IOC_KICK) != 0) return Errno("kick");
    return absl::OkStatus();
  }

 private:
  int fd_;
  void* map_ = MAP_FAILED;
  size_t map_bytes_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ShimDevice>> OpenKernelDevice(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Errno(absl::StrCat("open ", path));
  return std::unique_ptr<ShimDevice>(new KernelDevice(fd));
}

}  // namespace tmem::kshim
