#include "server/blockcache/group_commit.h"

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tmem::blockcache {

absl::Status GroupCommit::Flush() {
  c_.counters.flushes.fetch_add(1, std::memory_order_relaxed);
  const int64_t t0 = c_.clock->NowNanos();
  absl::Status st = SyncAll();
  c_.counters.flush_latency.RecordNanos(c_.clock->NowNanos() - t0);
  return st;
}

absl::Status GroupCommit::SyncAll() {
  TMEM_RETURN_IF_ERROR(c_.failure.status());
  const uint64_t target = c_.log->head_seq();
  const int64_t deadline_us = c_.tunables.get().barrier_deadline_us;
  {
    MutexLock lock(&mu_);
    while (true) {
      if (c_.synced_seq.load(std::memory_order_acquire) >= target) return c_.failure.status();
      if (!leading_) break;
      done_cv_.Wait(&mu_);
    }
    leading_ = true;
  }
  // The leader: let flushes arriving within the barrier deadline share this sync.
  if (deadline_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(deadline_us));
  const uint64_t upto = c_.log->head_seq();
  absl::Status st = c_.log->FlushUpTo(upto);
  if (st.ok()) {
    st = c_.device->Sync();
    c_.counters.syncs.fetch_add(1, std::memory_order_relaxed);
  }
  if (!st.ok()) c_.Fail(absl::StrCat("flushing the cache device failed: ", st.message()));
  MutexLock lock(&mu_);
  leading_ = false;
  if (st.ok()) {
    uint64_t cur = c_.synced_seq.load(std::memory_order_acquire);
    while (cur < upto && !c_.synced_seq.compare_exchange_weak(cur, upto)) {
    }
  }
  done_cv_.SignalAll();
  if (!st.ok()) return c_.failure.status();
  return absl::OkStatus();
}

}  // namespace tmem::blockcache
