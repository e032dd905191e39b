// LineIndex: where the newest version of each cached line lives, which lines each segment not
// yet migrated received, and how many lines are cached and dirty.
//
// Lines go to stripes in runs of kStripeLines (1 MiB), so that a large write takes one or two
// stripe locks and large writes to different places do not wait for each other. Each stripe has
// a writer lock (`write_mu`, held by whoever changes a line of the stripe across its
// read-modify-append: writers, read promotions, copy-forward) and the index lock.
//
// Thread-safety: every method is thread-safe.
// Lock order: Stripe::write_mu -> Stripe::index_mu -> segs_mu_ (the last two are this class's
// and are never held when a method returns).
#ifndef TMEM_SERVER_BLOCKCACHE_LINE_INDEX_H_
#define TMEM_SERVER_BLOCKCACHE_LINE_INDEX_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "server/log/segment_log.h"

namespace tmem::blockcache {

// One version of a cached line: where it is in the log, its CRC32C, which sectors differ from
// the backing store.
struct LineEntry {
  uint64_t seq = 0;
  uint32_t offset = 0;
  uint32_t crc = 0;
  uint8_t dirty = 0;  // bit i: sector i differs from the backing store

  // The same version (a line's entry changes place on every write and copy-forward).
  bool SameVersion(const LineEntry& o) const { return seq == o.seq && offset == o.offset; }
};

class LineIndex {
 public:
  static constexpr size_t kStripes = 64;
  static constexpr uint64_t kStripeLines = 256;

  class Stripe {
   public:
    // Serialises the changes of this stripe's lines (see the file comment).
    Mutex write_mu;

   private:
    friend class LineIndex;
    mutable Mutex index_mu ABSL_ACQUIRED_AFTER(write_mu);
    absl::flat_hash_map<uint64_t, LineEntry> lines ABSL_GUARDED_BY(index_mu);
  };

  // `clock` (borrowed) dates the first line of each segment (OldestDirtyAgeNs).
  explicit LineIndex(Clock* clock);
  LineIndex(const LineIndex&) = delete;
  LineIndex& operator=(const LineIndex&) = delete;

  static size_t StripeIndex(uint64_t line) { return ((line / kStripeLines) * 0x9E3779B97F4A7C15ull) >> 58; }
  Stripe& StripeOf(uint64_t line) { return stripes_[StripeIndex(line)]; }

  // Sizes the stripes for about `lines` lines in all, so that a cold cache filling up never
  // rehashes under the writers' locks.
  void Reserve(uint64_t lines);

  std::optional<LineEntry> Lookup(uint64_t line) const;

  // Recovery, in ascending segment order: `entry` becomes the line's newest version.
  void Recover(uint64_t line, const LineEntry& entry);
  // After recovery: counts the cached and dirty lines.
  void Recount();

  // Publishes `n` lines from `first` just appended to one segment (at `locs`, CRCs `crcs`),
  // each with `mask` as its dirty bits, and notes them in the segment's line list. `s` is
  // StripeOf(first) and its write_mu is held.
  void Publish(Stripe& s, uint64_t first, size_t n, const log::Location* locs, const uint32_t* crcs, uint8_t mask)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.write_mu);
  // A clean line read from the backing store and appended at `loc`: added unless present (a
  // writer won). True when added. `s` is StripeOf(line), write_mu held.
  bool AddClean(Stripe& s, uint64_t line, const LineEntry& entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.write_mu);
  // `line`'s version was copied forward to `loc` (same contents, same dirty bits).
  void Moved(Stripe& s, uint64_t line, log::Location loc) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.write_mu);
  // After write-back: marks `line` clean if `version` is still its newest. True when it did.
  bool MarkClean(uint64_t line, const LineEntry& version);

  // The first segment with seq >= `from` that has lines noted, and those lines (a line may be
  // noted more than once); nullopt when none.
  struct NotedSegment {
    uint64_t seq;
    std::vector<uint64_t> lines;
  };
  std::optional<NotedSegment> NextNoted(uint64_t from) const;
  // Migration passed every segment up to `seq`.
  void ForgetUpTo(uint64_t seq);
  // How long the oldest segment not yet migrated has held lines (0: none).
  int64_t OldestDirtyAgeNs() const;

  uint64_t cached_lines() const { return cached_lines_.load(std::memory_order_relaxed); }
  uint64_t dirty_lines() const { return dirty_lines_.load(std::memory_order_relaxed); }

 private:
  void NoteLocked(uint64_t seq, uint64_t line) ABSL_EXCLUSIVE_LOCKS_REQUIRED(segs_mu_);

  Clock* const clock_;
  std::unique_ptr<Stripe[]> stripes_;

  // Lines appended to each segment not yet migrated, and when the segment got its first one
  // (a line copied forward starts a new age).
  struct SegmentLines {
    int64_t first_ns = 0;
    std::vector<uint64_t> lines;
  };
  mutable Mutex segs_mu_ ABSL_ACQUIRED_AFTER(Stripe::index_mu);
  std::map<uint64_t, SegmentLines> segments_ ABSL_GUARDED_BY(segs_mu_);

  // Relaxed counts, changed under the index lock of the line's stripe.
  std::atomic<uint64_t> cached_lines_{0};
  std::atomic<uint64_t> dirty_lines_{0};
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_LINE_INDEX_H_
