// Migrator: writes dirty lines back to the backing store (dm-lc's migration daemon) and owns
// its thread. A batch is: select (up to `migrate_batch_segments` written segments that hold
// lines whose newest version is there, and the segments in between that hold none) → write
// back (read the lines, write their dirty sectors to the store in offset order, coalesced, or
// copy them forward; flush the store) → commit (sync the cache device, mark the lines clean,
// write the record, move migrated_seq and the log's reclaim limit). Only then may the log reuse
// those segments. When to run is migration_policy.h's decision.
//
// Thread-safety: thread-safe. One batch at a time (the thread, MigrateNow and Drain take turns
// on batch_mu_); wake_mu_ is a leaf. Neither is held by the foreground.
// Lock order: batch_mu_ -> (a stripe's write_mu for copy-forward -> LineIndex's locks).
#ifndef TMEM_SERVER_BLOCKCACHE_MIGRATOR_H_
#define TMEM_SERVER_BLOCKCACHE_MIGRATOR_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "common/mutex.h"
#include "server/blockcache/cache_record.h"
#include "server/blockcache/cache_shared.h"
#include "server/blockcache/group_commit.h"

namespace tmem::blockcache {

class Migrator {
 public:
  // Borrows all three; `record` is used only under the batch lock from here on.
  Migrator(CacheShared& shared, GroupCommit& commit, CacheRecordWriter& record)
      : c_(shared), commit_(commit), record_(record) {}
  // Stops and joins the thread.
  ~Migrator();
  Migrator(const Migrator&) = delete;
  Migrator& operator=(const Migrator&) = delete;

  void Start();
  void Stop();
  // Re-decides at once (new tunables).
  void Kick();
  // Migrates every segment written so far (flushing first), and returns when done or failed.
  absl::Status MigrateNow();
  // Flushes and migrates until no dirty line remains; the backing store then holds exactly the
  // export's contents. Unavailable when writes keep the cache dirty.
  // Stops between passes once `deadline` passed (DeadlineExceeded, dirty lines left).
  absl::Status Drain(std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);

 private:
  struct Item {
    uint64_t line;
    LineEntry entry;
  };
  struct Batch {
    uint64_t upto = 0;        // the batch covers segments up to this
    std::vector<Item> items;  // sorted by line, one per line
    std::vector<bool> written_back;
    uint64_t bytes = 0;  // written to the backing store
  };

  void Loop();
  // One batch of up to `max_segments` segments; sets *progress when migrated_seq moved.
  absl::Status RunBatch(uint32_t max_segments, bool copy_forward, bool* progress);
  // False when nothing is written beyond migrated_seq.
  bool SelectBatch(uint32_t max_segments, Batch& b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_);
  absl::Status WriteBack(Batch& b, bool copy_forward) ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_);
  absl::Status Commit(Batch& b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(batch_mu_);
  // Appends `data`, the line's version `entry`, again at the head of the log; false when the
  // line changed or there is no room (it is then written back).
  bool CopyForward(uint64_t line, const LineEntry& entry, const uint8_t* data);

  CacheShared& c_;
  GroupCommit& commit_;
  CacheRecordWriter& record_;

  Mutex batch_mu_ ABSL_ACQUIRED_BEFORE(wake_mu_);

  Mutex wake_mu_;
  CondVar wake_cv_;
  bool stopping_ ABSL_GUARDED_BY(wake_mu_) = false;
  bool kicked_ ABSL_GUARDED_BY(wake_mu_) = false;
  std::thread thread_;
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_MIGRATOR_H_
