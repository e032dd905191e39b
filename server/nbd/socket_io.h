// Blocking socket I/O for the NBD server: whole reads and writes, EINTR retried, never SIGPIPE.
#ifndef TMEM_SERVER_NBD_SOCKET_IO_H_
#define TMEM_SERVER_NBD_SOCKET_IO_H_

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace tmem::nbd {

// False on EOF or error.
inline bool ReadFull(int fd, void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::recv(fd, p, len, MSG_WAITALL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Reads and throws away `len` bytes.
inline bool Discard(int fd, uint64_t len) {
  uint8_t buf[16384];
  while (len > 0) {
    const size_t n = len < sizeof(buf) ? static_cast<size_t>(len) : sizeof(buf);
    if (!ReadFull(fd, buf, n)) return false;
    len -= n;
  }
  return true;
}

// Writes every byte of the iovecs (modified in place).
inline bool WriteFullV(int fd, iovec* iov, int count) {
  while (count > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    size_t done = static_cast<size_t>(n);
    while (count > 0 && done >= iov->iov_len) {
      done -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<uint8_t*>(iov->iov_base) + done;
      iov->iov_len -= done;
    }
  }
  return true;
}

inline bool WriteFull(int fd, const void* buf, size_t len) {
  iovec iov{const_cast<void*>(buf), len};
  return WriteFullV(fd, &iov, 1);
}

}  // namespace tmem::nbd

#endif  // TMEM_SERVER_NBD_SOCKET_IO_H_
