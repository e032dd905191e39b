// GroupCommit: a FLUSH (or FUA write) makes every segment handed out so far durable on the
// cache device — seal the open buffer, wait for the segment writes, sync the device — and
// concurrent flushes share one sync: the first becomes the leader, optionally waits
// `barrier_deadline_us` for others to join (dm-lc's barrier deadline), and every flush whose
// segments the leader's sync covered returns with it.
//
// Publishes `synced_seq` in CacheShared. A failed flush or sync fails the cache.
// Thread-safety: thread-safe. mu_ is a leaf, never held during device I/O.
#ifndef TMEM_SERVER_BLOCKCACHE_GROUP_COMMIT_H_
#define TMEM_SERVER_BLOCKCACHE_GROUP_COMMIT_H_

#include "absl/status/status.h"
#include "common/mutex.h"
#include "server/blockcache/cache_shared.h"

namespace tmem::blockcache {

class GroupCommit {
 public:
  explicit GroupCommit(CacheShared& shared) : c_(shared) {}
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // A client's flush: SyncAll, counted and timed.
  absl::Status Flush();
  // Every segment handed out before the call is on the device and synced (group commit).
  // Internal once the cache failed.
  absl::Status SyncAll();

 private:
  CacheShared& c_;
  Mutex mu_;
  CondVar done_cv_;
  bool leading_ ABSL_GUARDED_BY(mu_) = false;  // a leader is syncing
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_GROUP_COMMIT_H_
