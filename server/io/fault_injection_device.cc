#include "server/io/fault_injection_device.h"

#include <cerrno>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace tmem::io {

namespace {
constexpr size_t kSectorBytes = 512;
}

FaultInjectionDevice::FaultInjectionDevice(BlockDevice* base) : base_(base) {}

bool FaultInjectionDevice::ShouldFailLocked(Op op, uint64_t offset, size_t len) {
  if (powered_off_) return true;
  int& n = fail_next_[static_cast<int>(op)];
  if (n > 0) {
    --n;
    return true;
  }
  return predicate_ && predicate_(op, offset, len);
}

absl::Status FaultInjectionDevice::Read(uint64_t offset, void* buf, size_t len) {
  TMEM_RETURN_IF_ERROR(CheckIo(*this, offset, buf, len));
  {
    MutexLock stall(&stall_mu_);
    if (stall_reads_) {
      ++stalled_reads_;
      stall_cv_.SignalAll();
      while (stall_reads_) stall_cv_.Wait(&stall_mu_);
      --stalled_reads_;
    }
  }
  MutexLock lock(&mu_);
  if (ShouldFailLocked(Op::kRead, offset, len)) {
    return ErrnoStatus(EIO, absl::StrCat("injected read fault at ", offset));
  }
  return base_->Read(offset, buf, len);
}

absl::Status FaultInjectionDevice::Write(uint64_t offset, const void* buf, size_t len) {
  TMEM_RETURN_IF_ERROR(CheckIo(*this, offset, buf, len));
  {
    MutexLock stall(&stall_mu_);
    if (stall_pred_ && stall_pred_(offset, len)) {
      ++stalled_;
      stall_cv_.SignalAll();
      while (stall_pred_) stall_cv_.Wait(&stall_mu_);
      --stalled_;
    }
  }
  MutexLock lock(&mu_);
  if (ShouldFailLocked(Op::kWrite, offset, len)) {
    return ErrnoStatus(EIO, absl::StrCat("injected write fault at ", offset));
  }
  // Keep the old contents so that a power cut can put them back. The base read needs an
  // aligned buffer; AlignedBuffer gives one, then the bytes move into the record.
  AlignedBuffer old(len, base_->alignment());
  TMEM_RETURN_IF_ERROR(base_->Read(offset, old.data(), len));
  TMEM_RETURN_IF_ERROR(base_->Write(offset, buf, len));
  unsynced_.push_back(UndoRecord{offset, std::vector<uint8_t>(old.data(), old.data() + len)});
  ++writes_;
  return absl::OkStatus();
}

absl::Status FaultInjectionDevice::Sync() {
  MutexLock lock(&mu_);
  if (ShouldFailLocked(Op::kSync, 0, 0)) return ErrnoStatus(EIO, "injected sync fault");
  TMEM_RETURN_IF_ERROR(base_->Sync());
  unsynced_.clear();
  ++syncs_;
  return absl::OkStatus();
}

std::string FaultInjectionDevice::Describe() const { return absl::StrCat("faulty:", base_->Describe()); }

absl::Status FaultInjectionDevice::SimulatePowerCut(PowerCutMode mode, uint64_t seed) {
  MutexLock lock(&mu_);
  std::mt19937_64 rng(seed);
  AlignedBuffer sector(kSectorBytes < base_->alignment() ? base_->alignment() : kSectorBytes, base_->alignment());
  // Newest first, so that overlapping writes unwind to what the device held at the last Sync.
  for (auto it = unsynced_.rbegin(); it != unsynced_.rend(); ++it) {
    const UndoRecord& rec = *it;
    if (mode == PowerCutMode::kDropUnsynced) {
      AlignedBuffer buf(rec.old_bytes.size(), base_->alignment());
      std::copy(rec.old_bytes.begin(), rec.old_bytes.end(), buf.data());
      TMEM_RETURN_IF_ERROR(base_->Write(rec.offset, buf.data(), rec.old_bytes.size()));
      continue;
    }
    // Tear: each alignment unit independently keeps its new bytes or reverts to the old ones.
    // (The device's alignment is its atomic write unit; 512 bytes on the memory device.)
    const size_t unit = base_->alignment();
    for (size_t off = 0; off < rec.old_bytes.size(); off += unit) {
      if (rng() & 1) continue;  // this unit reached the media
      std::copy(rec.old_bytes.begin() + off, rec.old_bytes.begin() + off + unit, sector.data());
      TMEM_RETURN_IF_ERROR(base_->Write(rec.offset + off, sector.data(), unit));
    }
  }
  unsynced_.clear();
  powered_off_ = true;
  return absl::OkStatus();
}

void FaultInjectionDevice::Restart() {
  MutexLock lock(&mu_);
  powered_off_ = false;
  fail_next_[0] = fail_next_[1] = fail_next_[2] = 0;
  predicate_ = nullptr;
}

void FaultInjectionDevice::FailNext(Op op, int count) {
  MutexLock lock(&mu_);
  fail_next_[static_cast<int>(op)] = count;
}

void FaultInjectionDevice::SetFailurePredicate(FailurePredicate pred) {
  MutexLock lock(&mu_);
  predicate_ = std::move(pred);
}

void FaultInjectionDevice::StallWrites(std::function<bool(uint64_t, size_t)> pred) {
  MutexLock lock(&stall_mu_);
  stall_pred_ = std::move(pred);
}

void FaultInjectionDevice::ReleaseStalledWrites() {
  MutexLock lock(&stall_mu_);
  stall_pred_ = nullptr;
  stall_cv_.SignalAll();
}

void FaultInjectionDevice::StallReads() {
  MutexLock lock(&stall_mu_);
  stall_reads_ = true;
}

void FaultInjectionDevice::ReleaseStalledReads() {
  MutexLock lock(&stall_mu_);
  stall_reads_ = false;
  stall_cv_.SignalAll();
}

int FaultInjectionDevice::stalled_read_count() const {
  MutexLock lock(&stall_mu_);
  return stalled_reads_;
}

int FaultInjectionDevice::stalled_write_count() const {
  MutexLock lock(&stall_mu_);
  return stalled_;
}

uint64_t FaultInjectionDevice::unsynced_write_count() const {
  MutexLock lock(&mu_);
  return unsynced_.size();
}

uint64_t FaultInjectionDevice::write_count() const {
  MutexLock lock(&mu_);
  return writes_;
}

uint64_t FaultInjectionDevice::sync_count() const {
  MutexLock lock(&mu_);
  return syncs_;
}

}  // namespace tmem::io
