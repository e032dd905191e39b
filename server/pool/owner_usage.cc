#include "server/pool/owner_usage.h"

namespace tmem::pool {

void OwnerUsage::Forget(uint64_t reclaimed_seq) {
  while (!segments_.empty() && segments_.front().first <= reclaimed_seq) {
    live_ -= segments_.front().second;
    segments_.pop_front();
  }
}

bool OwnerUsage::Admit(uint64_t reclaimed_seq, uint64_t bytes) {
  if (share_bytes_ == UINT64_MAX) return true;  // no share: nothing to check on the put path
  MutexLock lock(&mu_);
  Forget(reclaimed_seq);
  if (live_ + bytes > share_bytes_) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void OwnerUsage::Add(uint64_t seq, uint64_t bytes) {
  MutexLock lock(&mu_);
  if (!segments_.empty() && segments_.back().first >= seq) {
    // Appends of several threads may finish out of order; count it where it belongs or later.
    segments_.back().second += bytes;
  } else {
    segments_.emplace_back(seq, bytes);
  }
  live_ += bytes;
}

uint64_t OwnerUsage::LiveBytes(uint64_t reclaimed_seq) {
  MutexLock lock(&mu_);
  Forget(reclaimed_seq);
  return live_;
}

}  // namespace tmem::pool
