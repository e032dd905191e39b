// WritePath: a cached export's writes. Each line is appended to the log's open write buffer
// (a partial line merged with its current contents first, its dirty bits the union) and
// published in the index and the RAM tier before its segment may be written; runs of whole
// lines within a stripe go in one append per segment. When the log has no room, the writer
// lets go of its stripe lock and waits for migration to make some (or, without `may_wait`,
// answers kWouldWait), then merges again from whatever the line holds by then.
//
// Thread-safety: thread-safe. Lock order (LineIndex): a stripe's write_mu, then the index
// locks; write_mu is never held while waiting for room, so copy-forward — which takes it — is
// never held up by the writers waiting for it.
#ifndef TMEM_SERVER_BLOCKCACHE_WRITE_PATH_H_
#define TMEM_SERVER_BLOCKCACHE_WRITE_PATH_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/backend/block_backend.h"
#include "server/blockcache/cache_shared.h"
#include "server/blockcache/read_path.h"

namespace tmem::blockcache {

class WritePath {
 public:
  // `reader` merges partial lines.
  WritePath(CacheShared& shared, ReadPath& reader) : c_(shared), reader_(reader) {}
  WritePath(const WritePath&) = delete;
  WritePath& operator=(const WritePath&) = delete;

  // Writes [offset, offset+len) (not durable until a flush). With `may_wait`, waits for room
  // as long as migration makes progress (always kDone on success). Without it, answers
  // kWouldWait — having written none or only part of the range — where it would wait for room
  // or a partial line would need a read. Errors: Internal once the cache failed; Unavailable
  // when the cache is full and write-back has failed for full_write_timeout_ms; read errors of a
  // partial line's merge.
  absl::StatusOr<backend::BufferedOutcome> WriteRange(const uint8_t* in, uint32_t len, uint64_t offset, bool may_wait);

 private:
  // What one append attempt did.
  struct Attempt {
    bool finished = false;  // everything asked for is written
    bool no_room = false;   // the log had no room; wait with `generation`
    uint64_t generation = 0;
  };
  // The one append-or-wait loop: runs `attempt` (which takes and drops its stripe lock) until
  // it finishes, waiting for room in between with no lock held.
  template <typename TryFn>
  absl::StatusOr<backend::BufferedOutcome> AppendOrWait(bool may_wait, TryFn attempt);
  // Line `line`'s bytes [begin, end) from `data`.
  absl::StatusOr<Attempt> TryWriteLine(uint64_t line, const uint8_t* data, uint32_t begin, uint32_t end);
  // Whole lines [first + *done, first + count) within one stripe; advances *done.
  absl::StatusOr<Attempt> TryWriteWholeLines(uint64_t first, uint32_t count, const uint8_t* data, const uint32_t* crcs,
                                             const uint8_t (*keys)[log::kSlotKeyBytes], log::Location* locs,
                                             uint32_t* done);
  // Publishes lines just appended to one segment: RAM tier, index, then the unpin.
  void Publish(LineIndex::Stripe& s, uint64_t first, size_t n, const log::Location* locs, const uint32_t* crcs,
               uint8_t mask, const uint8_t* data) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.write_mu);
  // One write's wait for room: since when, and where migration stood then.
  struct RoomWait {
    int64_t since_ns = 0;   // 0: not waiting yet
    uint64_t progress = 0;  // MigrationProgress() then
  };
  // Moves whenever write-back gets anything done: a write to the store, a line copied forward,
  // a committed batch.
  uint64_t MigrationProgress() const;
  // After an append found the log full: waits, with no lock held, for the log to make progress
  // (up to a second; the caller retries). Unavailable once write-back has failed for
  // full_write_timeout_ms, or once this write waited that long while migration moved nothing
  // (a store that hangs instead of failing).
  absl::Status WaitForRoom(uint64_t generation, RoomWait* wait);

  CacheShared& c_;
  ReadPath& reader_;
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_WRITE_PATH_H_
