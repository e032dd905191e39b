#include "common/tls_read_ahead.h"

#include <gnutls/gnutls.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tmem {

void TlsReadAhead::Reset(int fd, size_t bytes) {
  fd_ = fd;
  if (size_ != bytes) {
    buf_ = std::make_unique<uint8_t[]>(bytes);
    size_ = bytes;
  }
  start_ = end_ = 0;
  no_wait_ = false;
}

ssize_t TlsReadAhead::Pull(void* self, void* data, size_t len) {
  auto* in = static_cast<TlsReadAhead*>(self);
  if (in->start_ == in->end_) {
    if (in->no_wait_) {
      // The thread's own errno: GnuTLS's per-session errno is shared with the sending thread.
      errno = EAGAIN;
      return -1;
    }
    ssize_t n;
    do {
      n = ::recv(in->fd_, in->buf_.get(), in->size_, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return n;  // 0: end of stream; -1 with errno (EAGAIN after SO_RCVTIMEO)
    in->start_ = 0;
    in->end_ = static_cast<size_t>(n);
  }
  const size_t k = std::min(len, in->end_ - in->start_);
  std::memcpy(data, in->buf_.get() + in->start_, k);
  in->start_ += k;
  return static_cast<ssize_t>(k);
}

ssize_t TlsReadAhead::Fill() {
  if (start_ > 0) {
    std::memmove(buf_.get(), buf_.get() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
  }
  ssize_t n;
  do {
    n = ::recv(fd_, buf_.get() + end_, size_ - end_, 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) end_ += static_cast<size_t>(n);
  return n;
}

int TlsReadAhead::PullTimeout(void* self, unsigned ms) {
  auto* in = static_cast<TlsReadAhead*>(self);
  if (in->buffered()) return 1;
  pollfd p{in->fd_, POLLIN, 0};
  return ::poll(&p, 1, ms == GNUTLS_INDEFINITE_TIMEOUT ? -1 : static_cast<int>(ms));  // > 0 ready, 0 timed out
}

}  // namespace tmem
