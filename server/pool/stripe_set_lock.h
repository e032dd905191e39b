// StripeSetLock: holds the stripe locks of a set of keys for its lifetime, taken in ascending
// stripe order (so two holders never wait on each other in a cycle) and each once.
//
// Clang's thread-safety analysis cannot follow a run-time set of locks; the lock and unlock
// loops are the only code exempt from it, here, and no data is guarded by the stripes (they
// order the operations on one handle).
#ifndef TMEM_SERVER_POOL_STRIPE_SET_LOCK_H_
#define TMEM_SERVER_POOL_STRIPE_SET_LOCK_H_

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/crc32c.h"
#include "common/mutex.h"

namespace tmem::pool {

// The stripe of `key` among `count`.
inline uint32_t StripeOfKey(std::string_view key, uint32_t count) {
  return crc32c::Value(key.data(), key.size()) % count;
}

class StripeSetLock {
 public:
  // Locks the stripes (of `stripes`, `count` of them) that the keys key_of(i), i < n, map to.
  template <typename KeyOf>
  StripeSetLock(Mutex* stripes, uint32_t count, size_t n, KeyOf key_of) : stripes_(stripes) {
    held_.reserve(n);
    for (size_t i = 0; i < n; ++i) held_.push_back(StripeOfKey(key_of(i), count));
    std::sort(held_.begin(), held_.end());
    held_.erase(std::unique(held_.begin(), held_.end()), held_.end());
    LockAll();
  }
  ~StripeSetLock() { UnlockAll(); }
  StripeSetLock(const StripeSetLock&) = delete;
  StripeSetLock& operator=(const StripeSetLock&) = delete;

  size_t size() const { return held_.size(); }

 private:
  void LockAll() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (uint32_t s : held_) stripes_[s].Lock();
  }
  void UnlockAll() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto it = held_.rbegin(); it != held_.rend(); ++it) stripes_[*it].Unlock();
  }

  Mutex* const stripes_;
  std::vector<uint32_t> held_;  // ascending, unique
};

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_STRIPE_SET_LOCK_H_
