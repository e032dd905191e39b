// SegmentLog: pages appended to RAM write buffers, written to the device a whole segment per
// I/O by flusher threads, and read back by location. Segments are reused in FIFO order; a
// segment's sequence number names both its position ((seq - 1) % segment_count) and its
// generation, so reclaiming the oldest segment is one watermark bump (reclaimed_seq) and every
// location that names an older sequence is known to be gone without touching any index.
//
// Watermarks (monotonic; anyone may wait on them):
//   head_seq      last sequence number handed to a write buffer
//   sealed_seq    last sequence number whose buffer is closed to appends
//   flushed_seq   every segment with seq <= this has been written to the device (or failed)
//   reclaimed_seq every segment with seq <= this is free: its old contents are gone
//
// Thread-safety: every public method is thread-safe.
// Lock order: checkpoint_mu_ -> mu_. No device I/O happens under mu_.
#ifndef TMEM_SERVER_LOG_SEGMENT_LOG_H_
#define TMEM_SERVER_LOG_SEGMENT_LOG_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "common/mutex.h"
#include "common/stats.h"
#include "server/io/block_device.h"
#include "server/log/log_format.h"
#include "server/log/log_metadata.h"
#include "server/log/log_options.h"

namespace tmem::log {

class SegmentLog {
 public:
  enum class ReadOutcome {
    kOk,       // `out` holds the page, CRC verified
    kGone,     // the segment was reclaimed (or its write failed): a miss
    kCorrupt,  // CRC mismatch: a miss; counted in crc_failures
  };

  // Opens a formatted device. `device` is borrowed and must outlive the log. Refuses an
  // unformatted device or foreign data (FailedPrecondition), a corrupt superblock (DataLoss),
  // another format version (FailedPrecondition) — never writes to such a device.
  static absl::StatusOr<std::unique_ptr<SegmentLog>> Open(io::BlockDevice* device, const LogOptions& options);

  // Stops the flushers without a clean checkpoint: the next Open sees an unclean stop.
  ~SegmentLog();
  SegmentLog(const SegmentLog&) = delete;
  SegmentLog& operator=(const SegmentLog&) = delete;

  // Copies `len` bytes (a multiple of 512, at most max_page_bytes()) whose CRC32C is `crc` into
  // the open write buffer and returns where they will live. Blocks only while every write
  // buffer is in flight (see AppendOptions). Errors: InvalidArgument (bad length),
  // FailedPrecondition (log closed), ResourceExhausted and DeadlineExceeded as above.
  absl::StatusOr<Location> Append(const uint8_t (&key)[kSlotKeyBytes], const void* data, uint32_t len, uint32_t crc,
                                  const AppendOptions& options = {});
  // Appends pages `n` at a time: page i is `len` bytes at data + i * len with key `keys[i]` and
  // CRC32C `crcs[i]`. Appends as many as the open buffer takes (or, when it takes none, a new
  // one) — at least one, all into the same segment — and returns how many, their locations in
  // `locs`. Options and errors as for Append; with `pin`, each page holds one pin (UnpinMany).
  // A caller appends the rest in further calls after publishing these, so that it never holds
  // pins while it waits for room.
  absl::StatusOr<size_t> AppendBatch(const uint8_t (*keys)[kSlotKeyBytes], const uint8_t* data, uint32_t len,
                                     const uint32_t* crcs, size_t n, Location* locs, const AppendOptions& options = {});
  // Waits until the log made progress (a buffer freed, a segment written, the lease or the
  // reclaim limit moved) since `generation` was handed out, or the log closed: true; false at
  // `until`.
  bool WaitForProgress(uint64_t generation, std::chrono::steady_clock::time_point until);
  // Releases one pin taken by Append on segment `seq`.
  void Unpin(uint64_t seq) { UnpinMany(seq, 1); }
  // Releases `count` pins taken on segment `seq`.
  void UnpinMany(uint64_t seq, uint32_t count);

  // Reads the page at `loc` into `out` (`len` bytes) from a RAM buffer or the device, and
  // checks it against `expected_crc`. A device error is returned as a Status.
  absl::StatusOr<ReadOutcome> Read(Location loc, uint32_t len, uint32_t expected_crc, void* out);

  // One page read of a batch; `outcome` receives what Read would return.
  struct PageRead {
    Location loc;
    uint32_t len = 0;
    uint32_t expected_crc = 0;
    void* out = nullptr;
    absl::StatusOr<ReadOutcome> outcome = ReadOutcome::kGone;
  };
  // Read for many pages at once: RAM buffers are looked at under one lock, and every device read
  // goes to the device in one batch (BlockDevice::ReadMany), so a batch of N pages costs one
  // wait for the device instead of N.
  void ReadMany(std::span<PageRead> reads);
  // ReadMany in two halves around device reads done elsewhere: StartReads settles what needs no
  // device read (bad locations, reclaimed segments, pages in a write buffer) and leaves the rest
  // in batch->ops(); once they are done, FinishReads settles every page. Batches are reusable.
  class ReadBatch {
   public:
    std::span<io::BlockDevice::ReadOp> ops() { return {ops_.data(), ops_.size()}; }

   private:
    friend class SegmentLog;
    std::span<PageRead> reads_;
    std::vector<uint8_t> state_;
    std::vector<io::BlockDevice::ReadOp> ops_;
    std::vector<size_t> op_page_;
    io::AlignedBuffer scratch_;
  };
  void StartReads(std::span<PageRead> reads, ReadBatch* batch);
  void FinishReads(ReadBatch* batch);
  // StartReads' device reads: here and now, or on a queue of the device's (null: none).
  void ReadDevice(std::span<io::BlockDevice::ReadOp> ops) { device_->ReadMany(ops); }
  std::unique_ptr<io::ReadQueue> NewReadQueue() { return device_->NewReadQueue(); }

  // Segments with a sequence number above `seq` are never reclaimed: an append that would need
  // one waits until the limit moves (the block cache keeps segments that hold dirty data this
  // way). Starts at options.retention.reclaim_limit; the limit may move either way.
  void SetReclaimLimit(uint64_t seq);

  // True while the segment `seq` still holds what was appended to it.
  bool IsLive(uint64_t seq) const {
    return seq > reclaimed_seq_.load(std::memory_order_acquire) && seq <= head_seq_.load(std::memory_order_acquire);
  }

  // Seals the open buffer if its seq <= `seq` and waits until flushed_seq >= seq.
  // Returns Internal if a segment write in that range failed.
  absl::Status FlushUpTo(uint64_t seq);
  // Writes every buffered page and syncs the device.
  absl::Status FlushAll();
  // Wakes the flushers to re-check buffer deadlines (after a ManualClock moved).
  void Kick();

  // FlushAll, stop the flushers, write a clean checkpoint. Later appends fail.
  absl::Status CloseClean();

  uint64_t head_seq() const { return head_seq_.load(std::memory_order_acquire); }
  uint64_t sealed_seq() const { return sealed_seq_.load(std::memory_order_acquire); }
  uint64_t flushed_seq() const { return flushed_seq_.load(std::memory_order_acquire); }
  uint64_t reclaimed_seq() const { return reclaimed_seq_.load(std::memory_order_acquire); }

  // This run's instance id (previous run's + 1) and whether the previous run stopped cleanly.
  uint64_t instance() const { return instance_; }
  uint64_t previous_instance() const { return instance_ - 1; }
  bool previous_stop_clean() const { return previous_clean_; }
  const LogGeometry& geometry() const { return geometry_; }
  uint32_t max_page_bytes() const;
  uint64_t free_segments() const;

  void VisitStats(StatsVisitor& visitor, const StatLabels& labels = {}) const;

  struct Counters {
    std::atomic<uint64_t> appends{0};
    std::atomic<uint64_t> appended_bytes{0};
    std::atomic<uint64_t> segments_written{0};
    std::atomic<uint64_t> bytes_written{0};
    std::atomic<uint64_t> segments_reclaimed{0};
    std::atomic<uint64_t> deadline_flushes{0};
    std::atomic<uint64_t> write_errors{0};
    std::atomic<uint64_t> read_errors{0};
    std::atomic<uint64_t> buffer_reads{0};
    std::atomic<uint64_t> device_reads{0};
    std::atomic<uint64_t> crc_failures{0};
    std::atomic<uint64_t> append_waits{0};
  };
  // Relaxed counters, for tests and the stats visitor.
  const Counters& counters() const { return counters_; }

 private:
  // InvalidArgument unless `len` bytes at `loc` lie within a segment's page area.
  absl::Status CheckLocation(Location loc, uint32_t len) const;
  enum class BufferState { kFree, kOpen, kSealed, kWriting };
  struct WriteBuffer {
    io::AlignedBuffer bytes;
    BufferState state = BufferState::kFree;
    uint64_t seq = 0;
    uint32_t data_end = kSegmentHeaderBytes;
    int64_t first_append_ns = 0;
    uint32_t pins = 0;  // Appends with pin not yet Unpinned: the buffer is not written before 0
    std::vector<SlotEntryDisk> entries;
  };

  SegmentLog(io::BlockDevice* device, const LogGeometry& geometry, const LogOptions& options);

  absl::Status Start(const CheckpointDisk& previous);
  absl::Status WriteCheckpoint(bool clean) ABSL_EXCLUSIVE_LOCKS_REQUIRED(checkpoint_mu_);
  void FlusherLoop();
  void SealLocked(WriteBuffer* buffer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  WriteBuffer* OpenBufferLocked(bool use_reserve) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishWriteLocked(WriteBuffer* buffer, bool ok) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t SegmentOffset(uint64_t seq) const;

  io::BlockDevice* const device_;
  const LogGeometry geometry_;
  const LogOptions options_;
  uint64_t instance_ = 0;        // set in Start, then const
  bool previous_clean_ = false;  // set in Start, then const

  // Watermarks: written under mu_ (release), read anywhere (acquire).
  std::atomic<uint64_t> head_seq_{0};
  std::atomic<uint64_t> sealed_seq_{0};
  std::atomic<uint64_t> flushed_seq_{0};
  std::atomic<uint64_t> reclaimed_seq_{0};
  std::atomic<uint64_t> reclaim_limit_{UINT64_MAX};
  // Number of seqs in failed_seqs_; lets Read skip the lock when no write ever failed.
  std::atomic<uint64_t> failed_count_{0};

  Mutex checkpoint_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  uint64_t checkpoint_generation_ ABSL_GUARDED_BY(checkpoint_mu_) = 0;

  mutable Mutex mu_;
  CondVar flusher_cv_;  // work for the flushers: a sealed buffer, a deadline, stop
  void SignalProgressLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t progress_generation_ ABSL_GUARDED_BY(mu_) = 0;  // counts SignalProgressLocked calls
  CondVar progress_cv_;                                    // a buffer became free, flushed_seq moved, the lease moved
  std::vector<std::unique_ptr<WriteBuffer>> buffers_ ABSL_GUARDED_BY(mu_);
  WriteBuffer* open_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<WriteBuffer*> sealed_ ABSL_GUARDED_BY(mu_);
  std::set<uint64_t> completed_ ABSL_GUARDED_BY(mu_);    // written seqs above flushed_seq_
  std::set<uint64_t> failed_seqs_ ABSL_GUARDED_BY(mu_);  // writes that failed (reads miss)
  uint64_t seq_lease_ ABSL_GUARDED_BY(mu_) = 0;
  bool lease_renewing_ ABSL_GUARDED_BY(mu_) = false;
  // After a failed renewal, the next try waits until then (steady clock); meanwhile the
  // flushers go on writing sealed buffers (they must not starve behind a failing checkpoint).
  std::chrono::steady_clock::time_point lease_retry_at_ ABSL_GUARDED_BY(mu_){};
  bool write_failed_since_flush_all_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;

  std::vector<std::thread> flushers_;  // started in Start, joined in the destructor/CloseClean

  Counters counters_;
};

}  // namespace tmem::log

#endif  // TMEM_SERVER_LOG_SEGMENT_LOG_H_
