#include "server/io/device_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace tmem::io {

int LockHolder(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF": pid, then MAJOR:MINOR:INODE (hex major
  // and minor) of the file.
  const std::string want = absl::StrCat(absl::Hex(major(st.st_dev), absl::kZeroPad2), ":",
                                        absl::Hex(minor(st.st_dev), absl::kZeroPad2), ":", st.st_ino);
  std::ifstream in("/proc/locks");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string n, kind, mode, rw, pid, id;
    if (!(f >> n >> kind)) continue;
    if (kind == "->") f >> kind;  // a waiter
    if (!(f >> mode >> rw >> pid >> id)) continue;
    if (kind == "FLOCK" && id == want) return std::atoi(pid.c_str());
  }
  return -1;
}

absl::StatusOr<DeviceLock> DeviceLock::Acquire(const std::string& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(what, " ", path, " does not exist"));
    return absl::UnavailableError(absl::StrCat("cannot open ", what, " ", path, " to lock it: ", std::strerror(err)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err != EWOULDBLOCK) {
      return absl::UnavailableError(absl::StrCat("cannot lock ", what, " ", path, ": ", std::strerror(err)));
    }
    const int pid = LockHolder(path);
    if (pid == ::getpid()) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, " ", path, " is already in use by this tmemd (as its page pool device, or another export's cache)"));
    }
    std::string holder = pid > 0 ? absl::StrCat("pid ", pid) : "another process";
    if (pid > 0) {
      std::ifstream comm(absl::StrCat("/proc/", pid, "/comm"));
      std::string name;
      if (std::getline(comm, name) && !name.empty()) absl::StrAppend(&holder, " (", name, ")");
    }
    return absl::FailedPreconditionError(
        absl::StrCat(what, " ", path, " is in use by ", holder, "; stop it first (a device serves one tmemd)"));
  }
  return DeviceLock(fd);
}

DeviceLock& DeviceLock::operator=(DeviceLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

DeviceLock::~DeviceLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace tmem::io
