// The read side of a GnuTLS transport through a buffer: one recv brings in many records, where
// GnuTLS alone reads each record's header and body with a recv each. Shared by tmemd's TLS
// sessions over a socket (server/trust) and libtmemclient's wire streams.
//
// Thread-safety: one thread at a time (the one in GnuTLS's receive calls).
#ifndef TMEM_COMMON_TLS_READ_AHEAD_H_
#define TMEM_COMMON_TLS_READ_AHEAD_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace tmem {

class TlsReadAhead {
 public:
  // Reads `fd` (a connected socket) through a buffer of `bytes`; forgets what was buffered.
  void Reset(int fd, size_t bytes);
  int fd() const { return fd_; }
  // Ciphertext received and not yet taken by GnuTLS.
  bool buffered() const { return start_ < end_; }
  // While set, an empty buffer is EAGAIN rather than a wait on the socket.
  void set_no_wait(bool no_wait) { no_wait_ = no_wait; }

  // Direct use (TlsRecords): the bytes received and not taken yet; taking `n` of them; and a recv
  // into the room left (the bytes not taken moved to the front first): > 0 bytes, 0 at the end
  // of the stream, -1 with errno.
  std::span<const uint8_t> unread() const { return {buf_.get() + start_, end_ - start_}; }
  void Take(size_t n) { start_ += n; }
  ssize_t Fill();

  // GnuTLS's pull and pull-timeout functions; their transport pointer is the TlsReadAhead.
  static ssize_t Pull(void* self, void* data, size_t len);
  static int PullTimeout(void* self, unsigned ms);

 private:
  int fd_ = -1;
  std::unique_ptr<uint8_t[]> buf_;
  size_t size_ = 0;
  size_t start_ = 0, end_ = 0;
  bool no_wait_ = false;
};

}  // namespace tmem

#endif  // TMEM_COMMON_TLS_READ_AHEAD_H_
