// Blocking socket I/O for the NBD server: whole reads and writes, EINTR retried, never SIGPIPE,
// over a Transport: the socket itself, or a TLS session on it after NBD_OPT_STARTTLS.
#ifndef TMEM_SERVER_NBD_SOCKET_IO_H_
#define TMEM_SERVER_NBD_SOCKET_IO_H_

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

#include "common/socket_write.h"

namespace tmem::nbd {

// A connection's byte stream. Thread-safety: one thread may receive while another sends.
class Transport {
 public:
  virtual ~Transport() = default;
  // Like recv(2) (`wait_all`: MSG_WAITALL): bytes read, 0 at the end, -1 on an error.
  virtual ssize_t Recv(void* buf, size_t len, bool wait_all) = 0;
  // Sends every byte of the iovecs (which it may modify); false on an error.
  virtual bool SendAll(iovec* iov, int count) = 0;
};

using ::tmem::SocketWriteFullV;

// The socket itself.
class SocketTransport final : public Transport {
 public:
  explicit SocketTransport(int fd) : fd_(fd) {}
  ssize_t Recv(void* buf, size_t len, bool wait_all) override {
    while (true) {
      ssize_t n = ::recv(fd_, buf, len, wait_all ? MSG_WAITALL : 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }
  bool SendAll(iovec* iov, int count) override { return SocketWriteFullV(fd_, iov, count); }

 private:
  const int fd_;
};

// False on EOF or error.
inline bool ReadFull(Transport& t, void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = t.Recv(p, len, true);
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

inline bool WriteFullV(Transport& t, iovec* iov, int count) { return t.SendAll(iov, count); }

// Reads from a socket through a buffer, so that requests a client sends back to back (a header,
// a small payload, the next header...) cost one recv() for many. Large payloads bypass the
// buffer, and after one the next refill takes only what is asked for (the next header), so that
// a stream of large writes is not copied through the buffer in part. Not thread-safe: its owner
// serialises readers.
class BufferedReader {
 public:
  explicit BufferedReader(Transport& t, size_t capacity = 256 << 10)
      : t_(t), buf_(new uint8_t[capacity]), cap_(capacity) {}

  // False on EOF or error.
  bool Read(void* dst, size_t len) {
    auto* out = static_cast<uint8_t*>(dst);
    const size_t have = end_ - start_;
    if (have >= len) {
      std::memcpy(out, buf_.get() + start_, len);
      start_ += len;
      return true;
    }
    std::memcpy(out, buf_.get() + start_, have);
    out += have;
    len -= have;
    start_ = end_ = 0;
    if (len >= cap_ / 4) {  // large: straight into place
      // The client sends large payloads: read the next header alone rather than the first part
      // of the next payload into the buffer only to copy it out again.
      refill_ = 0;
      return ReadFull(t_, out, len);
    }
    const size_t want = std::max(len, refill_);
    refill_ = cap_;  // small requests: take in as many as one recv() brings
    while (end_ < len) {
      ssize_t n = t_.Recv(buf_.get() + end_, want - end_, false);
      if (n <= 0) return false;
      end_ += static_cast<size_t>(n);
    }
    std::memcpy(out, buf_.get(), len);
    start_ = len;
    return true;
  }

  // The next `len` bytes if they are in the buffer already (nothing is consumed), else null.
  const uint8_t* Peek(size_t len) const { return end_ - start_ >= len ? buf_.get() + start_ : nullptr; }

  bool Skip(uint64_t len) {
    uint8_t scratch[16384];
    while (len > 0) {
      const size_t n = len < sizeof(scratch) ? static_cast<size_t>(len) : sizeof(scratch);
      if (!Read(scratch, n)) return false;
      len -= n;
    }
    return true;
  }

 private:
  Transport& t_;
  std::unique_ptr<uint8_t[]> buf_;
  const size_t cap_;
  size_t start_ = 0, end_ = 0;
  size_t refill_ = cap_;  // how much a refill asks recv() for: the capacity, or only what is needed
};

inline bool WriteFull(Transport& t, const void* buf, size_t len) {
  iovec iov{const_cast<void*>(buf), len};
  return t.SendAll(&iov, 1);
}

// On a socket directly (tests and tools).
inline bool ReadFull(int fd, void* buf, size_t len) {
  SocketTransport t(fd);
  return ReadFull(t, buf, len);
}
inline bool WriteFull(int fd, const void* buf, size_t len) {
  SocketTransport t(fd);
  return WriteFull(t, buf, len);
}

}  // namespace tmem::nbd

#endif  // TMEM_SERVER_NBD_SOCKET_IO_H_
