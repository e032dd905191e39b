// The device is ours alone (DESIGN.md "Trust"): an exclusive lock on a device, a cache device or
// a metadata directory, held for the life of the process. A second tmemd, or tmem-admin format,
// on a device in use is refused with the holder's pid.
//
// flock(2) on a file descriptor of its own (a lock of the open file, so that no other open or
// close of the same file in this process releases it); the holder is found in /proc/locks.
#ifndef TMEM_SERVER_IO_DEVICE_LOCK_H_
#define TMEM_SERVER_IO_DEVICE_LOCK_H_

#include <string>

#include "absl/status/statusor.h"

namespace tmem::io {

class DeviceLock {
 public:
  // Locks `path` (a file, block device or directory). FailedPrecondition "WHAT PATH is in use by
  // pid N (COMMAND)" when another process holds it; NotFound when it does not exist.
  static absl::StatusOr<DeviceLock> Acquire(const std::string& path, const std::string& what);
  DeviceLock(DeviceLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DeviceLock& operator=(DeviceLock&& other) noexcept;
  ~DeviceLock();
  DeviceLock(const DeviceLock&) = delete;
  DeviceLock& operator=(const DeviceLock&) = delete;

 private:
  explicit DeviceLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// The pid holding a flock on `path` (from /proc/locks), or -1.
int LockHolder(const std::string& path);

}  // namespace tmem::io

#endif  // TMEM_SERVER_IO_DEVICE_LOCK_H_
