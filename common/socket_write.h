// Writing whole iovecs to a socket: every byte sent, EINTR retried, never SIGPIPE. Shared by the
// NBD server and the page wire protocol's client.
#ifndef TMEM_COMMON_SOCKET_WRITE_H_
#define TMEM_COMMON_SOCKET_WRITE_H_

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace tmem {

// Writes every byte of the iovecs (modified in place) to a blocking socket; false on an error or
// a closed peer.
inline bool SocketWriteFullV(int fd, iovec* iov, int count) {
  while (count > 0) {
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(std::min(count, 1024));  // IOV_MAX
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

}  // namespace tmem

#endif  // TMEM_COMMON_SOCKET_WRITE_H_
