// The share of the page log one owner (tenant) holds, for quotas per tenant (docs/trust.md).
//
// An owner's usage is the bytes its puts appended to segments that are still live: the log
// reclaims whole segments in FIFO order, so the bytes appended to segments at or below the log's
// reclaimed sequence number are gone. The rule: a put that would take the owner past its share
// is dropped (and counted), so one tenant writing fast can push at most its share of the log
// out from under the others. Overwritten pages still count until their segment is reclaimed
// (the bound errs on the side of the other tenants).
//
// Thread-safety: thread-safe (mu_ is a leaf).
#ifndef TMEM_SERVER_POOL_OWNER_USAGE_H_
#define TMEM_SERVER_POOL_OWNER_USAGE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "common/mutex.h"

namespace tmem::pool {

class OwnerUsage {
 public:
  // `share_bytes`: the most this owner's live pages may take (UINT64_MAX: no limit).
  OwnerUsage(std::string owner, uint64_t share_bytes) : owner_(std::move(owner)), share_bytes_(share_bytes) {}

  // Whether `bytes` more fit in the share, once segments up to `reclaimed_seq` are forgotten.
  // False counts one dropped put.
  bool Admit(uint64_t reclaimed_seq, uint64_t bytes);
  // Records `bytes` appended to segment `seq` (sequence numbers never go down).
  void Add(uint64_t seq, uint64_t bytes);
  // The live bytes, once segments up to `reclaimed_seq` are forgotten.
  uint64_t LiveBytes(uint64_t reclaimed_seq);

  const std::string& owner() const { return owner_; }
  uint64_t share_bytes() const { return share_bytes_; }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  void Forget(uint64_t reclaimed_seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string owner_;
  const uint64_t share_bytes_;
  Mutex mu_;
  std::deque<std::pair<uint64_t, uint64_t>> segments_ ABSL_GUARDED_BY(mu_);  // (seq, bytes), ascending seq
  uint64_t live_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_OWNER_USAGE_H_
