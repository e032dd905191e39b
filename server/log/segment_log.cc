#include "server/log/segment_log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crc32c.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/log/log_metadata.h"
#include "server/log/segment_codec.h"
#include "server/log/segment_scan.h"

namespace tmem::log {
namespace {

uint32_t PageAlignment(uint32_t len) { return std::min<uint32_t>(len, kBlockBytes); }

}  // namespace

absl::StatusOr<std::unique_ptr<SegmentLog>> SegmentLog::Open(io::BlockDevice* device, const LogOptions& options) {
  TMEM_ASSIGN_OR_RETURN(LogGeometry geometry, ReadLogGeometry(device));
  if (options.write_buffer_count < 2 || options.flusher_threads < 1 ||
      options.flusher_threads >= options.write_buffer_count || options.seq_lease_segments < 2) {
    return absl::InvalidArgumentError(absl::StrCat("bad log options: ", options.write_buffer_count,
                                                   " write buffers (need >= 2), ", options.flusher_threads,
                                                   " flushers (need 1 .. buffers-1)"));
  }
  if (geometry.segment_count < uint64_t{options.write_buffer_count} + options.free_segments_ahead + 2) {
    return absl::InvalidArgumentError(absl::StrCat(device->Describe(), " has ", geometry.segment_count, " segments; ",
                                                   options.write_buffer_count, " write buffers and ",
                                                   options.free_segments_ahead, " free segments need at least ",
                                                   options.write_buffer_count + options.free_segments_ahead + 2));
  }
  TMEM_ASSIGN_OR_RETURN(CheckpointDisk best, ReadBestCheckpoint(device, geometry));
  std::unique_ptr<SegmentLog> log(new SegmentLog(device, geometry, options));
  TMEM_RETURN_IF_ERROR(log->Start(best));
  return log;
}

SegmentLog::SegmentLog(io::BlockDevice* device, const LogGeometry& geometry, const LogOptions& options)
    : device_(device), geometry_(geometry), options_(options) {}

absl::Status SegmentLog::Start(const CheckpointDisk& previous) {
  // Sequence numbers come from the device: a checkpoint (CRC and all) whose numbers are out of
  // order or so large that this run's would wrap is damaged or foreign, and refused, not run on.
  constexpr uint64_t kMaxSeq = uint64_t{1} << 62;
  if (previous.seq_lease > kMaxSeq || previous.head_seq > previous.seq_lease || previous.instance > kMaxSeq) {
    return absl::DataLossError(absl::StrCat(
        device_->Describe(), ": the checkpoint's sequence numbers are impossible (head ", previous.head_seq,
        ", reclaimed ", previous.reclaimed_seq, ", lease ", previous.seq_lease, ", instance ", previous.instance,
        "): the device is damaged or not this format; start with --format to format it (destroys its contents)"));
  }
  previous_clean_ = previous.clean == 1;
  instance_ = previous.instance + 1;
  uint64_t head, reclaimed;
  if (previous_clean_) {
    head = previous.head_seq;
    reclaimed = previous.reclaimed_seq;
  } else {
    // The crashed run may have used any number up to its lease; start above all of them (or
    // above the newest one that reached the device) and treat every older segment as gone.
    head = previous.seq_lease;
    if (options_.retention.resume_after_newest_segment) {
      TMEM_ASSIGN_OR_RETURN(head, NewestSegmentIn(device_, geometry_, previous.head_seq, previous.seq_lease));
    }
    reclaimed = head;
  }
  // An owner that indexes the log itself keeps the segments it still needs readable across an
  // unclean stop too (it vouches that no position holding one was reused), and from reuse.
  if (options_.retention.keep_segments_after.has_value()) {
    reclaimed = std::min(reclaimed, *options_.retention.keep_segments_after);
  }
  reclaim_limit_.store(options_.retention.reclaim_limit, std::memory_order_release);
  head_seq_.store(head, std::memory_order_release);
  sealed_seq_.store(head, std::memory_order_release);
  flushed_seq_.store(head, std::memory_order_release);
  reclaimed_seq_.store(reclaimed, std::memory_order_release);
  {
    MutexLock lock(&mu_);
    seq_lease_ = head;
    for (uint32_t i = 0; i < options_.write_buffer_count; ++i) {
      auto b = std::make_unique<WriteBuffer>();
      b->bytes = io::AlignedBuffer(geometry_.segment_bytes, kBlockBytes);
      buffers_.push_back(std::move(b));
    }
  }
  {
    MutexLock lock(&checkpoint_mu_);
    checkpoint_generation_ = previous.generation;
    // Mark the log live (clean = 0) with a fresh lease before any append.
    TMEM_RETURN_IF_ERROR(WriteCheckpoint(false));
  }
  TMEM_LOG(Info) << "opened log on " << device_->Describe() << ": instance " << instance_ << ", previous stop "
                 << (previous_clean_ ? "clean" : "UNCLEAN") << ", head seq " << head << ", " << geometry_.segment_count
                 << " segments of " << geometry_.segment_bytes << " bytes";
  for (uint32_t i = 0; i < options_.flusher_threads; ++i) flushers_.emplace_back([this] { FlusherLoop(); });
  return absl::OkStatus();
}

SegmentLog::~SegmentLog() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    closed_ = true;
    flusher_cv_.SignalAll();
    SignalProgressLocked();
  }
  for (auto& t : flushers_) t.join();
}

absl::Status SegmentLog::WriteCheckpoint(bool clean) {
  CheckpointDisk cp{};
  std::memcpy(cp.device_uuid, geometry_.device_uuid, 16);
  cp.generation = checkpoint_generation_ + 1;
  cp.instance = instance_;
  cp.clean = clean ? 1 : 0;
  {
    MutexLock lock(&mu_);
    cp.head_seq = head_seq_.load(std::memory_order_acquire);
    cp.reclaimed_seq = reclaimed_seq_.load(std::memory_order_acquire);
    cp.seq_lease =
        clean ? std::max(cp.head_seq, seq_lease_) : std::max(seq_lease_, cp.head_seq + options_.seq_lease_segments);
  }
  TMEM_RETURN_IF_ERROR(WriteCheckpointBlock(device_, cp));
  checkpoint_generation_ = cp.generation;
  MutexLock lock(&mu_);
  seq_lease_ = std::max(seq_lease_, cp.seq_lease);
  SignalProgressLocked();
  return absl::OkStatus();
}

uint32_t SegmentLog::max_page_bytes() const {
  uint32_t room = geometry_.segment_bytes - kSegmentHeaderBytes - sizeof(SlotEntryDisk);
  return room / kPageAlignBytes * kPageAlignBytes;
}

uint64_t SegmentLog::free_segments() const {
  uint64_t used = head_seq() - std::min(head_seq(), reclaimed_seq());
  return geometry_.segment_count > used ? geometry_.segment_count - used : 0;
}

uint64_t SegmentLog::SegmentOffset(uint64_t seq) const {
  return kDataOffset + ((seq - 1) % geometry_.segment_count) * geometry_.segment_bytes;
}

void SegmentLog::UnpinMany(uint64_t seq, uint32_t count) {
  MutexLock lock(&mu_);
  for (auto& b : buffers_) {
    if ((b->state == BufferState::kOpen || b->state == BufferState::kSealed) && b->seq == seq && b->pins >= count) {
      // Flushers wait only for the pins of sealed buffers; an open one is written after sealing.
      b->pins -= count;
      if (b->pins == 0 && b->state == BufferState::kSealed) flusher_cv_.SignalAll();
      return;
    }
  }
  TMEM_DCHECK(false);  // an Unpin without its Append
}

void SegmentLog::SetReclaimLimit(uint64_t seq) {
  MutexLock lock(&mu_);
  reclaim_limit_.store(seq, std::memory_order_release);
  SignalProgressLocked();
}

SegmentLog::WriteBuffer* SegmentLog::OpenBufferLocked(bool use_reserve) {
  for (auto& b : buffers_) {
    if (b->state != BufferState::kFree) continue;
    const uint64_t seq = head_seq_.load(std::memory_order_relaxed) + 1;
    // Reclaim: the segment this seq lands on, and free_segments_ahead after it, must hold
    // nothing anyone can still read. One watermark bump; stale index entries die lazily.
    const uint64_t n = geometry_.segment_count;
    const uint64_t target = seq + options_.free_segments_ahead > n ? seq + options_.free_segments_ahead - n : 0;
    const uint64_t reclaimed = reclaimed_seq_.load(std::memory_order_relaxed);
    const uint64_t limit = reclaim_limit_.load(std::memory_order_acquire);
    if (target > limit) return nullptr;  // the owner keeps it
    // The reserve: the last `reserved_segments` positions before the limit are for use_reserve.
    if (!use_reserve && limit != UINT64_MAX &&
        seq + options_.free_segments_ahead + options_.retention.reserved_segments > limit + n) {
      return nullptr;
    }
    if (target > reclaimed) {
      reclaimed_seq_.store(target, std::memory_order_release);
      counters_.segments_reclaimed.fetch_add(target - reclaimed, std::memory_order_relaxed);
    }
    b->state = BufferState::kOpen;
    b->seq = seq;
    b->data_end = kSegmentHeaderBytes;
    b->entries.clear();
    b->first_append_ns = options_.clock->NowNanos();
    head_seq_.store(seq, std::memory_order_release);
    open_ = b.get();
    return open_;
  }
  return nullptr;
}

void SegmentLog::SealLocked(WriteBuffer* buffer) {
  TMEM_DCHECK(buffer == open_ && buffer->state == BufferState::kOpen);
  buffer->state = BufferState::kSealed;
  sealed_.push_back(buffer);
  open_ = nullptr;
  sealed_seq_.store(buffer->seq, std::memory_order_release);
  flusher_cv_.Signal();
}

absl::StatusOr<Location> SegmentLog::Append(const uint8_t (&key)[kSlotKeyBytes], const void* data, uint32_t len,
                                            uint32_t crc, const AppendOptions& options) {
  Location loc;
  TMEM_ASSIGN_OR_RETURN(size_t n, AppendBatch(&key, static_cast<const uint8_t*>(data), len, &crc, 1, &loc, options));
  TMEM_DCHECK(n == 1);
  return loc;
}

absl::StatusOr<size_t> SegmentLog::AppendBatch(const uint8_t (*keys)[kSlotKeyBytes], const uint8_t* data, uint32_t len,
                                               const uint32_t* crcs, size_t n, Location* locs,
                                               const AppendOptions& options) {
  const bool pin = options.pin, may_wait = options.may_wait, use_reserve = options.use_reserve;
  const std::chrono::steady_clock::time_point wait_until = options.wait_until;
  uint64_t* const progress_generation = options.progress_generation;
  if (len == 0 || len % kPageAlignBytes != 0 || len > max_page_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("page length ", len, " must be a positive multiple of ",
                                                   kPageAlignBytes, " up to ", max_page_bytes()));
  }
  if (n == 0) return absl::InvalidArgumentError("an append of no pages");
  MutexLock lock(&mu_);
  bool waited = false;
  // False once `wait_until` has passed (the caller then gets DeadlineExceeded).
  const auto wait = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (wait_until == std::chrono::steady_clock::time_point{}) {
      progress_cv_.Wait(&mu_);
      return true;
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= wait_until) return false;
    progress_cv_.WaitFor(&mu_, wait_until - now);
    return true;
  };
  const auto timed_out = [] { return absl::DeadlineExceededError("no room in the log before the deadline"); };
  while (true) {
    if (closed_) return absl::FailedPreconditionError("the segment log is closed");
    if (open_ != nullptr) {
      WriteBuffer* b = open_;
      size_t done = 0;
      while (done < n) {
        const uint32_t offset = static_cast<uint32_t>(io::AlignUp(b->data_end, PageAlignment(len)));
        if (SegmentUsedBytes(offset + len, b->entries.size() + 1) > geometry_.segment_bytes) break;
        if (offset > b->data_end) std::memset(b->bytes.data() + b->data_end, 0, offset - b->data_end);
        std::memcpy(b->bytes.data() + offset, data + done * len, len);
        SlotEntryDisk e{};
        std::memcpy(e.key, keys[done], kSlotKeyBytes);
        e.offset = offset;
        e.length = len;
        e.crc = crcs[done];
        b->entries.push_back(e);
        b->data_end = offset + len;
        locs[done] = Location{b->seq, offset};
        ++done;
      }
      if (done > 0) {
        if (pin) b->pins += static_cast<uint32_t>(done);
        counters_.appends.fetch_add(done, std::memory_order_relaxed);
        counters_.appended_bytes.fetch_add(uint64_t{len} * done, std::memory_order_relaxed);
        return done;
      }
      SealLocked(b);
    }
    // A position may be reused only once the write of its previous occupant (next - count)
    // completed: buffers free up as their own writes finish, so one stalled flusher would
    // otherwise let the head lap it, and its late write would land on the newer segment.
    const uint64_t next = head_seq_.load(std::memory_order_relaxed) + 1;
    const auto no_room = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (progress_generation != nullptr) *progress_generation = progress_generation_;
      return absl::ResourceExhaustedError("no free write buffer or segment now");
    };
    if (next > geometry_.segment_count &&
        next - geometry_.segment_count > flushed_seq_.load(std::memory_order_relaxed)) {
      if (!may_wait) return no_room();
      if (!waited) counters_.append_waits.fetch_add(1, std::memory_order_relaxed);
      waited = true;
      if (!wait()) return timed_out();
      continue;
    }
    if (head_seq_.load(std::memory_order_relaxed) + 1 > seq_lease_) {
      flusher_cv_.Signal();  // a flusher renews the lease
      if (!may_wait) return no_room();
      if (!wait()) return timed_out();
      continue;
    }
    if (OpenBufferLocked(use_reserve) == nullptr) {
      if (!may_wait) return no_room();
      if (!waited) counters_.append_waits.fetch_add(1, std::memory_order_relaxed);
      waited = true;
      if (!wait()) return timed_out();
    }
  }
}

void SegmentLog::SignalProgressLocked() {
  ++progress_generation_;
  progress_cv_.SignalAll();
}

bool SegmentLog::WaitForProgress(uint64_t generation, std::chrono::steady_clock::time_point until) {
  MutexLock lock(&mu_);
  counters_.append_waits.fetch_add(1, std::memory_order_relaxed);
  while (progress_generation_ == generation && !closed_) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= until) return false;
    progress_cv_.WaitFor(&mu_, until - now);
  }
  return true;
}

void SegmentLog::FinishWriteLocked(WriteBuffer* buffer, bool ok) {
  const uint64_t seq = buffer->seq;
  if (!ok) {
    failed_seqs_.insert(seq);
    failed_count_.store(failed_seqs_.size(), std::memory_order_release);
    write_failed_since_flush_all_ = true;
  }
  completed_.insert(seq);
  uint64_t flushed = flushed_seq_.load(std::memory_order_relaxed);
  while (!completed_.empty() && *completed_.begin() == flushed + 1) {
    completed_.erase(completed_.begin());
    ++flushed;
  }
  flushed_seq_.store(flushed, std::memory_order_release);
  // Failed seqs at or below the reclaim watermark can no longer be read; forget them.
  const uint64_t reclaimed = reclaimed_seq_.load(std::memory_order_relaxed);
  while (!failed_seqs_.empty() && *failed_seqs_.begin() <= reclaimed) failed_seqs_.erase(failed_seqs_.begin());
  failed_count_.store(failed_seqs_.size(), std::memory_order_release);
  buffer->state = BufferState::kFree;
  buffer->entries.clear();
  SignalProgressLocked();
}

void SegmentLog::FlusherLoop() {
  MutexLock lock(&mu_);
  while (!stopping_) {
    const uint64_t head = head_seq_.load(std::memory_order_relaxed);
    const auto steady_now = std::chrono::steady_clock::now();
    if (!lease_renewing_ && head + options_.seq_lease_segments / 2 >= seq_lease_ && steady_now >= lease_retry_at_) {
      lease_renewing_ = true;
      mu_.Unlock();
      absl::Status st;
      {
        MutexLock cp_lock(&checkpoint_mu_);
        st = WriteCheckpoint(false);
      }
      mu_.Lock();
      lease_renewing_ = false;
      if (!st.ok()) {
        TMEM_LOG_RATE_LIMITED(Error) << "renewing the sequence lease failed: " << st;
        // Appends stay blocked at the lease until a later renewal works; retry after a pause,
        // writing sealed buffers meanwhile (a flush waiting for them must get its answer).
        lease_retry_at_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
      }
      continue;
    }
    // A renewal due but held back after a failure: come back for it when the pause is over.
    const bool lease_due = !lease_renewing_ && head + options_.seq_lease_segments / 2 >= seq_lease_;
    WriteBuffer* b = nullptr;
    for (auto it = sealed_.begin(); it != sealed_.end(); ++it) {
      if ((*it)->pins == 0) {
        b = *it;
        sealed_.erase(it);
        break;
      }
    }
    if (b != nullptr) {
      b->state = BufferState::kWriting;
      const uint64_t seq = b->seq;
      mu_.Unlock();
      // The buffer is ours alone now: appends go to other buffers and readers only copy
      // page bytes, which we do not touch.
      const uint32_t used = EncodeSegment(b->bytes.data(), geometry_.device_uuid, seq, b->entries, b->data_end);
      absl::Status st = device_->Write(SegmentOffset(seq), b->bytes.data(), used);
      if (st.ok()) {
        counters_.segments_written.fetch_add(1, std::memory_order_relaxed);
        counters_.bytes_written.fetch_add(used, std::memory_order_relaxed);
      } else {
        counters_.write_errors.fetch_add(1, std::memory_order_relaxed);
        TMEM_LOG_RATE_LIMITED(Error) << "writing segment seq " << seq << " failed; its pages become misses: " << st;
      }
      mu_.Lock();
      FinishWriteLocked(b, st.ok());
      continue;
    }
    if (open_ != nullptr) {
      const int64_t due = open_->first_append_ns + options_.flush_deadline_ns;
      const int64_t now = options_.clock->NowNanos();
      if (now >= due) {
        counters_.deadline_flushes.fetch_add(1, std::memory_order_relaxed);
        SealLocked(open_);
        continue;
      }
      flusher_cv_.WaitFor(&mu_, std::chrono::nanoseconds(due - now));
      continue;
    }
    if (lease_due) {
      flusher_cv_.WaitFor(&mu_, std::chrono::milliseconds(100));
      continue;
    }
    flusher_cv_.Wait(&mu_);
  }
}

absl::Status SegmentLog::FlushUpTo(uint64_t seq) {
  MutexLock lock(&mu_);
  if (open_ != nullptr && open_->seq <= seq) SealLocked(open_);
  while (flushed_seq_.load(std::memory_order_acquire) < seq && !stopping_) progress_cv_.Wait(&mu_);
  if (flushed_seq_.load(std::memory_order_acquire) < seq) {
    return absl::FailedPreconditionError("the segment log stopped before the flush completed");
  }
  // failed_seqs_ holds the failed writes not yet reclaimed; any of them at or below seq counts.
  auto it = failed_seqs_.begin();
  if (it != failed_seqs_.end() && *it <= seq) {
    return absl::InternalError(absl::StrCat("writing segment seq ", *it, " failed"));
  }
  return absl::OkStatus();
}

absl::Status SegmentLog::FlushAll() {
  bool failed;
  {
    MutexLock lock(&mu_);
    const uint64_t target = head_seq_.load(std::memory_order_relaxed);
    if (open_ != nullptr) SealLocked(open_);
    while (flushed_seq_.load(std::memory_order_acquire) < target && !stopping_) progress_cv_.Wait(&mu_);
    if (flushed_seq_.load(std::memory_order_acquire) < target) {
      return absl::FailedPreconditionError("the segment log stopped before the flush completed");
    }
    failed = write_failed_since_flush_all_;
    write_failed_since_flush_all_ = false;
  }
  TMEM_RETURN_IF_ERROR(device_->Sync());
  if (failed) return absl::InternalError("a segment write failed since the last full flush");
  return absl::OkStatus();
}

void SegmentLog::Kick() {
  MutexLock lock(&mu_);
  flusher_cv_.SignalAll();
}

absl::Status SegmentLog::CloseClean() {
  {
    MutexLock lock(&mu_);
    if (stopping_) return absl::FailedPreconditionError("the segment log is already closed");
    closed_ = true;
  }
  absl::Status flushed = FlushAll();
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    flusher_cv_.SignalAll();
    SignalProgressLocked();
  }
  for (auto& t : flushers_) t.join();
  flushers_.clear();
  // A log whose last writes failed must not claim a clean stop: its pages cannot be trusted.
  if (!flushed.ok()) return flushed;
  MutexLock cp_lock(&checkpoint_mu_);
  return WriteCheckpoint(true);
}

void SegmentLog::VisitStats(StatsVisitor& v, const StatLabels& labels) const {
  auto c = [&](std::string_view name, std::string_view help, const std::atomic<uint64_t>& value) {
    v.Counter(name, help, value.load(std::memory_order_relaxed), labels);
  };
  c("log_appends", "Pages appended to write buffers.", counters_.appends);
  c("log_appended_bytes", "Page bytes appended to write buffers.", counters_.appended_bytes);
  c("log_segments_written", "Segments written to the device.", counters_.segments_written);
  c("log_written_bytes", "Bytes written to the device by segment writes (pages, headers, padding).",
    counters_.bytes_written);
  c("log_segments_reclaimed", "Segments reclaimed for reuse (FIFO).", counters_.segments_reclaimed);
  c("log_deadline_flushes", "Partly filled write buffers written because their deadline passed.",
    counters_.deadline_flushes);
  c("log_write_errors", "Segment writes that failed.", counters_.write_errors);
  c("log_read_errors", "Device reads that failed.", counters_.read_errors);
  c("log_buffer_reads", "Pages read from RAM write buffers.", counters_.buffer_reads);
  c("log_device_reads", "Pages read from the device.", counters_.device_reads);
  c("log_crc_failures", "Pages whose CRC32C did not match on read.", counters_.crc_failures);
  c("log_append_waits", "Appends that waited for a free write buffer.", counters_.append_waits);
  v.Gauge("log_free_segments", "Segments that hold no live data.", static_cast<double>(free_segments()), labels);
  v.Gauge("log_segments", "Segments on the device.", static_cast<double>(geometry_.segment_count), labels);
  v.Gauge("log_segment_bytes", "Bytes per segment.", static_cast<double>(geometry_.segment_bytes), labels);
  v.Gauge("log_head_seq", "Last sequence number handed to a write buffer.", static_cast<double>(head_seq()), labels);
  v.Gauge("log_flushed_seq", "Every segment up to this sequence number is written.", static_cast<double>(flushed_seq()),
          labels);
}

}  // namespace tmem::log
