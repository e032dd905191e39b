// SegmentLog's reads: one page (Read), a batch (ReadMany), and a batch in two halves around
// device reads done elsewhere (StartReads, FinishReads). The rest of the log is in
// segment_log.cc.
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "server/log/segment_log.h"

namespace tmem::log {

absl::Status SegmentLog::CheckLocation(Location loc, uint32_t len) const {
  if (len == 0 || loc.offset < kSegmentHeaderBytes || uint64_t{loc.offset} + len > geometry_.segment_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("bad page location: offset ", loc.offset, " length ", len));
  }
  return absl::OkStatus();
}

absl::StatusOr<SegmentLog::ReadOutcome> SegmentLog::Read(Location loc, uint32_t len, uint32_t expected_crc, void* out) {
  PageRead r{loc, len, expected_crc, out};
  ReadMany(std::span<PageRead>(&r, 1));
  return r.outcome;
}

namespace {
enum : uint8_t { kDone, kPending, kFromBuffer };
}  // namespace

void SegmentLog::ReadMany(std::span<PageRead> reads) {
  // One batch per thread, reused: a read allocates nothing once the thread has read as much.
  thread_local ReadBatch batch;
  StartReads(reads, &batch);
  if (!batch.ops_.empty()) device_->ReadMany(batch.ops());
  FinishReads(&batch);
}

void SegmentLog::StartReads(std::span<PageRead> reads, ReadBatch* batch) {
  batch->reads_ = reads;
  std::vector<uint8_t>& state = batch->state_;
  state.assign(reads.size(), kDone);
  batch->ops_.clear();
  batch->op_page_.clear();
  bool look_in_buffers = false;
  // flushed_seq_ first: FinishWriteLocked stores failed_count_ before it advances flushed_seq_,
  // so a read that sees a segment as flushed also sees that segment's failure.
  const uint64_t flushed = flushed_seq_.load(std::memory_order_acquire);
  const bool any_failed = failed_count_.load(std::memory_order_acquire) > 0;
  for (size_t i = 0; i < reads.size(); ++i) {
    PageRead& r = reads[i];
    if (absl::Status bad = CheckLocation(r.loc, r.len); !bad.ok()) {
      r.outcome = bad;
      continue;
    }
    if (!IsLive(r.loc.seq)) {
      r.outcome = ReadOutcome::kGone;
      continue;
    }
    state[i] = kPending;
    if (r.loc.seq > flushed || any_failed) look_in_buffers = true;
  }
  if (look_in_buffers) {
    MutexLock lock(&mu_);
    for (size_t i = 0; i < reads.size(); ++i) {
      if (state[i] != kPending) continue;
      PageRead& r = reads[i];
      if (failed_seqs_.count(r.loc.seq) != 0) {
        r.outcome = ReadOutcome::kGone;
        state[i] = kDone;
        continue;
      }
      for (auto& b : buffers_) {
        if (b->state != BufferState::kFree && b->seq == r.loc.seq) {
          std::memcpy(r.out, b->bytes.data() + r.loc.offset, r.len);
          state[i] = kFromBuffer;
          break;
        }
      }
    }
  }
  // Everything still pending is on the device: a buffer leaves RAM only after its segment write
  // completed, so a page that is in no buffer is there. One batch, into the batch's scratch.
  const uint32_t a = device_->alignment();
  uint64_t scratch_bytes = 0;
  for (size_t i = 0; i < reads.size(); ++i) {
    if (state[i] != kPending) continue;
    const uint64_t abs = SegmentOffset(reads[i].loc.seq) + reads[i].loc.offset;
    const uint64_t start = io::AlignDown(abs, a);
    const uint64_t end = io::AlignUp(abs + reads[i].len, a);
    batch->ops_.push_back({.offset = start, .buf = nullptr, .len = end - start});
    batch->op_page_.push_back(i);
    scratch_bytes += end - start;
  }
  if (batch->ops_.empty()) return;
  if (batch->scratch_.size() < scratch_bytes) batch->scratch_ = io::AlignedBuffer(scratch_bytes, kBlockBytes);
  uint64_t at = 0;
  for (io::BlockDevice::ReadOp& op : batch->ops_) {
    op.buf = batch->scratch_.data() + at;
    at += op.len;
  }
}

void SegmentLog::FinishReads(ReadBatch* batch) {
  std::span<PageRead> reads = batch->reads_;
  std::vector<uint8_t>& state = batch->state_;
  for (size_t k = 0; k < batch->ops_.size(); ++k) {
    const io::BlockDevice::ReadOp& op = batch->ops_[k];
    PageRead& r = reads[batch->op_page_[k]];
    if (!op.status.ok()) {
      counters_.read_errors.fetch_add(1, std::memory_order_relaxed);
      r.outcome = op.status;
      state[batch->op_page_[k]] = kDone;
      continue;
    }
    // The segment may have been reclaimed and rewritten while we read; reclaim moves the
    // watermark before any rewrite starts, so checking after the read is enough.
    if (!IsLive(r.loc.seq)) {
      r.outcome = ReadOutcome::kGone;
      state[batch->op_page_[k]] = kDone;
      continue;
    }
    const uint64_t abs = SegmentOffset(r.loc.seq) + r.loc.offset;
    std::memcpy(r.out, static_cast<uint8_t*>(op.buf) + (abs - op.offset), r.len);
    counters_.device_reads.fetch_add(1, std::memory_order_relaxed);
  }
  for (size_t i = 0; i < reads.size(); ++i) {
    if (state[i] == kDone) continue;
    PageRead& r = reads[i];
    if (state[i] == kFromBuffer) counters_.buffer_reads.fetch_add(1, std::memory_order_relaxed);
    if (crc32c::Value(r.out, r.len) != r.expected_crc) {
      counters_.crc_failures.fetch_add(1, std::memory_order_relaxed);
      r.outcome = ReadOutcome::kCorrupt;
    } else {
      r.outcome = ReadOutcome::kOk;
    }
  }
}

}  // namespace tmem::log
