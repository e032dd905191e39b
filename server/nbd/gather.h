// GatherPolicy: whether a connection's reader waits a moment before its next read from the
// socket, so that the requests a busy client is about to send arrive together - the way a
// network card moderates its interrupts.
//
// Why: a server that answers each small write faster than the client sends the next drains the
// socket and sleeps in recv(), so every request the client sends must wake it, and on a loaded
// machine those wakeups (and the socket lock the two sides then take at the same moment) cost
// the client more than the request itself. Waiting ~30 µs lets a client with many requests in
// flight queue several without waking anyone; one read then takes them all, one thread runs
// them (BackendCaps::buffered_writes) and one send carries every reply.
//
// When: only while reads bring several requests each on average (an EWMA over the last few
// reads), so a client with one request at a time pays nothing - except one wait every
// kProbeEvery reads, which notices a client that has begun to pipeline.
//
// Not thread-safe: used under the connection's read lock.
#ifndef TMEM_SERVER_NBD_GATHER_H_
#define TMEM_SERVER_NBD_GATHER_H_

#include <algorithm>
#include <cstdint>

namespace tmem::nbd {

class GatherPolicy {
 public:
  static constexpr uint32_t kThreshold = 3;    // requests per read, on average, to keep waiting
  static constexpr uint32_t kProbeEvery = 64;  // reads without waiting between two probes

  // A read from the socket is due; `requests` were taken since the previous one. True: wait
  // before reading.
  bool BeforeRead(uint32_t requests) {
    // Fixed point (x16); weight 1/4 for the newest read; counts above 64 saturate.
    avg_x16_ = (avg_x16_ * 3 + std::min<uint32_t>(requests, 64) * 16) / 4;
    if (avg_x16_ >= kThreshold * 16 || ++since_probe_ >= kProbeEvery) {
      since_probe_ = 0;
      return true;
    }
    return false;
  }

  // Requests per read, on average (for tests).
  double average() const { return avg_x16_ / 16.0; }

 private:
  uint32_t avg_x16_ = 16;  // one request per read
  uint32_t since_probe_ = 0;
};

}  // namespace tmem::nbd

#endif  // TMEM_SERVER_NBD_GATHER_H_
