// libFuzzer target over the segment log's metadata (log_format.h): the superblock and the two
// checkpoint slots, as ReadLogGeometry, ReadBestCheckpoint and ReadLogCheckpoint read them from a
// device, and the recovery step those numbers drive (NewestSegmentIn over a crashed run's lease).
// The input:
//   [0]        flags: bit 0 recomputes the superblock's CRC, bit 1 each checkpoint's (so that
//              mutated fields get past the CRCs to the checks behind them)
//   [1, 9)     the device's size in bytes (u64 LE; the device is sparse, see SparseDevice)
//   [9, 137)   the superblock's 128 bytes (the rest of its block is zero)
//   [137, 209) checkpoint slot 0's 72 bytes, [209, 281) slot 1's
// Missing bytes are zero. Invariants: the geometry ReadLogGeometry accepts fits the device
// (computed without overflow: the superblock's segment_count * segment_bytes is untrusted) and
// is exactly what an independent check of log_format.h accepts; the checkpoint chosen is the
// valid one with the highest generation, and WriteCheckpointBlock encodes it to the same bytes;
// NewestSegmentIn ends, within (head_seq, seq_lease].
//   scripts/fuzz_formats.sh [RUNS]           (libFuzzer)
//   //server/log:log_metadata_fuzz_test      (the default suite: the seeds and a few thousand mutations)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/crc32c.h"
#include "common/fuzz_support.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/io/block_device.h"
#include "server/io/memory_device.h"
#include "server/log/log_format.h"
#include "server/log/log_fuzz_util.h"
#include "server/log/log_metadata.h"
#include "server/log/segment_scan.h"

namespace tmem::log {
namespace {

constexpr size_t kSizeAt = 1, kSuperblockAt = 9, kSlotAt[2] = {137, 209}, kInputBytes = 281;
constexpr uint64_t kHeadBytes = 32 << 10;  // the metadata blocks all lie below this

// A device of any size (up to 2^64 - 4096 bytes) that holds only its first kHeadBytes; the rest
// reads as zeros (no segment was ever written). It lets the superblock's geometry be checked
// against huge devices without allocating them.
class SparseDevice final : public io::BlockDevice {
 public:
  explicit SparseDevice(uint64_t size_bytes) : size_(io::AlignDown(size_bytes, 4096)) {}
  uint64_t size_bytes() const override { return size_; }
  uint32_t alignment() const override { return 4096; }
  absl::Status Read(uint64_t offset, void* buf, size_t len) override {
    TMEM_RETURN_IF_ERROR(io::CheckIo(*this, offset, buf, len));
    std::memset(buf, 0, len);
    if (offset < kHeadBytes) std::memcpy(buf, head_ + offset, std::min<uint64_t>(len, kHeadBytes - offset));
    return absl::OkStatus();
  }
  absl::Status Write(uint64_t offset, const void* buf, size_t len) override {
    TMEM_RETURN_IF_ERROR(io::CheckIo(*this, offset, buf, len));
    if (offset + len > kHeadBytes) return absl::InternalError("the sparse fuzz device keeps only its first 32 KiB");
    std::memcpy(head_ + offset, buf, len);
    return absl::OkStatus();
  }
  absl::Status Sync() override { return absl::OkStatus(); }
  std::string Describe() const override { return absl::StrCat("sparse:", size_); }

 private:
  const uint64_t size_;
  uint8_t head_[kHeadBytes] = {};
};

uint64_t Le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

std::string Le64Bytes(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }

// What log_format.h and docs/format.md say a superblock must be, checked independently of
// ReadLogGeometry, with the device size compared in 128-bit arithmetic.
bool SuperblockAcceptable(const uint8_t* block, uint64_t device_bytes) {
  if (device_bytes < kBlockBytes || AllZero(block, kBlockBytes)) return false;
  SuperblockDisk sb;
  std::memcpy(&sb, block, sizeof(sb));
  if (sb.magic != kSuperblockMagic || sb.crc != crc32c::Value(&sb, offsetof(SuperblockDisk, crc))) return false;
  if (sb.format_version != kFormatVersion || sb.block_bytes != kBlockBytes || sb.data_offset != kDataOffset) {
    return false;
  }
  if (sb.segment_bytes < kMinSegmentBytes || sb.segment_bytes > kMaxSegmentBytes || sb.segment_bytes % kBlockBytes) {
    return false;
  }
  const unsigned __int128 end = static_cast<unsigned __int128>(sb.data_offset) +
                                static_cast<unsigned __int128>(sb.segment_count) * sb.segment_bytes;
  return sb.segment_count >= kMinSegmentCount && end <= device_bytes;
}

bool CheckpointValid(const uint8_t* p, const uint8_t (&uuid)[16]) {
  CheckpointDisk cp;
  std::memcpy(&cp, p, sizeof(cp));
  return cp.magic == kCheckpointMagic && std::memcmp(cp.device_uuid, uuid, 16) == 0 &&
         cp.crc == crc32c::Value(&cp, offsetof(CheckpointDisk, crc));
}

void Run(const uint8_t* data, size_t size) {
  uint8_t in[kInputBytes] = {};
  std::memcpy(in, data, std::min(size, kInputBytes));
  const uint8_t flags = in[0];
  uint64_t device_bytes = Le64(in + kSizeAt);
  if (device_bytes < kHeadBytes) device_bytes = kHeadBytes;
  SparseDevice dev(device_bytes);
  device_bytes = dev.size_bytes();

  io::AlignedBuffer block(kBlockBytes, kBlockBytes);
  std::memcpy(block.data(), in + kSuperblockAt, sizeof(SuperblockDisk));
  if (flags & 1) {
    const uint32_t crc = crc32c::Value(block.data(), offsetof(SuperblockDisk, crc));
    std::memcpy(block.data() + offsetof(SuperblockDisk, crc), &crc, 4);
  }
  TMEM_FUZZ_CHECK(dev.Write(kSuperblockOffset, block.data(), kBlockBytes).ok());
  uint8_t slots[2][sizeof(CheckpointDisk)];
  for (int s = 0; s < 2; ++s) {
    std::memset(block.data(), 0, kBlockBytes);
    std::memcpy(block.data(), in + kSlotAt[s], sizeof(CheckpointDisk));
    if (flags & 2) {
      const uint32_t crc = crc32c::Value(block.data(), offsetof(CheckpointDisk, crc));
      std::memcpy(block.data() + offsetof(CheckpointDisk, crc), &crc, 4);
    }
    std::memcpy(slots[s], block.data(), sizeof(CheckpointDisk));
    TMEM_FUZZ_CHECK(dev.Write(kCheckpointOffset[s], block.data(), kBlockBytes).ok());
  }

  // The superblock.
  io::AlignedBuffer sb_block;
  TMEM_FUZZ_CHECK(ReadBlock(&dev, kSuperblockOffset, &sb_block).ok());
  const bool acceptable = SuperblockAcceptable(sb_block.data(), device_bytes);
  absl::StatusOr<LogGeometry> g = ReadLogGeometry(&dev);
  if (!g.ok()) {
    TMEM_FUZZ_CHECK(!acceptable);  // a superblock the format allows is never refused
    const absl::StatusCode code = g.status().code();
    TMEM_FUZZ_CHECK(code == absl::StatusCode::kFailedPrecondition || code == absl::StatusCode::kDataLoss ||
                    code == absl::StatusCode::kInvalidArgument);
    TMEM_FUZZ_CHECK(!ReadLogCheckpoint(&dev).ok());
    return;
  }
  TMEM_FUZZ_CHECK(acceptable);  // nothing the format forbids is accepted
  SuperblockDisk sb;
  std::memcpy(&sb, sb_block.data(), sizeof(sb));
  TMEM_FUZZ_CHECK(std::memcmp(g->device_uuid, sb.device_uuid, 16) == 0);
  TMEM_FUZZ_CHECK(g->segment_bytes == sb.segment_bytes && g->segment_count == sb.segment_count);
  TMEM_FUZZ_CHECK(g->device_bytes == sb.device_bytes && g->format_version == kFormatVersion);
  // The geometry fits the device: every segment's offset and end are computed without a wrap.
  TMEM_FUZZ_CHECK(g->segment_count <= (device_bytes - kDataOffset) / g->segment_bytes);
  const uint64_t last_segment_end = kDataOffset + g->segment_count * g->segment_bytes;
  TMEM_FUZZ_CHECK(last_segment_end > kDataOffset && last_segment_end <= device_bytes);

  // The checkpoints.
  bool valid[2];
  for (int s = 0; s < 2; ++s) valid[s] = CheckpointValid(slots[s], g->device_uuid);
  absl::StatusOr<CheckpointDisk> best = ReadBestCheckpoint(&dev, *g);
  absl::StatusOr<LogCheckpoint> summary = ReadLogCheckpoint(&dev);
  if (!valid[0] && !valid[1]) {
    TMEM_FUZZ_CHECK(best.status().code() == absl::StatusCode::kDataLoss);
    TMEM_FUZZ_CHECK(summary.status().code() == absl::StatusCode::kDataLoss);
    return;
  }
  TMEM_FUZZ_CHECK(best.ok() && summary.ok());
  CheckpointDisk c[2];
  for (int s = 0; s < 2; ++s) std::memcpy(&c[s], slots[s], sizeof(CheckpointDisk));
  // The valid slot with the higher generation wins (slot 0 on a tie: it is read first).
  const int winner = !valid[0] ? 1 : !valid[1] ? 0 : (c[1].generation > c[0].generation ? 1 : 0);
  TMEM_FUZZ_CHECK(std::memcmp(&*best, slots[winner], sizeof(CheckpointDisk)) == 0);
  TMEM_FUZZ_CHECK(summary->generation == best->generation && summary->instance == best->instance);
  TMEM_FUZZ_CHECK(summary->clean == (best->clean == 1) && summary->head_seq == best->head_seq);
  TMEM_FUZZ_CHECK(summary->reclaimed_seq == best->reclaimed_seq && summary->seq_lease == best->seq_lease);
  // The writer encodes what the reader accepted to the same bytes, in the slot of its generation.
  io::MemoryDevice scratch(kHeadBytes);
  TMEM_FUZZ_CHECK(WriteCheckpointBlock(&scratch, *best).ok());
  io::AlignedBuffer out;
  TMEM_FUZZ_CHECK(ReadBlock(&scratch, kCheckpointOffset[best->generation % 2], &out).ok());
  TMEM_FUZZ_CHECK(std::memcmp(out.data(), &*best, sizeof(CheckpointDisk)) == 0);
  TMEM_FUZZ_CHECK(AllZero(out.data() + sizeof(CheckpointDisk), kBlockBytes - sizeof(CheckpointDisk)));

  // After an unclean stop, an owner that resumes after the newest segment reads the headers of
  // (head_seq, seq_lease] (SegmentLog::Start): at most one read per position, and it must end.
  if (g->segment_count <= 64) {
    absl::StatusOr<uint64_t> newest = NewestSegmentIn(&dev, *g, best->head_seq, best->seq_lease);
    TMEM_FUZZ_CHECK(newest.ok());
    // No segment was ever written on this device: nothing newer than head_seq is found.
    TMEM_FUZZ_CHECK(*newest == best->head_seq);
  }
}

// The fuzz input of the metadata blocks on `dev` (as FormatFixedLog and the writers left them).
std::string InputOf(io::BlockDevice& dev, uint8_t flags) {
  std::string in(1, static_cast<char>(flags));
  in += Le64Bytes(dev.size_bytes());
  io::AlignedBuffer block;
  if (!ReadBlock(&dev, kSuperblockOffset, &block).ok()) abort();
  in.append(reinterpret_cast<const char*>(block.data()), sizeof(SuperblockDisk));
  for (uint64_t offset : kCheckpointOffset) {
    if (!ReadBlock(&dev, offset, &block).ok()) abort();
    in.append(reinterpret_cast<const char*>(block.data()), sizeof(CheckpointDisk));
  }
  return in;
}

CheckpointDisk Checkpoint(uint64_t generation, uint64_t instance, bool clean, uint64_t head, uint64_t reclaimed,
                          uint64_t lease) {
  CheckpointDisk cp{};
  std::memcpy(cp.device_uuid, fuzzing::kFuzzUuid, 16);
  cp.generation = generation;
  cp.instance = instance;
  cp.clean = clean ? 1 : 0;
  cp.head_seq = head;
  cp.reclaimed_seq = reclaimed;
  cp.seq_lease = lease;
  return cp;
}

// Rewrites the superblock on `dev` with `edit` applied and its CRC computed as FormatLog does.
template <typename Edit>
void EditSuperblock(io::BlockDevice& dev, Edit edit) {
  io::AlignedBuffer block;
  if (!ReadBlock(&dev, kSuperblockOffset, &block).ok()) abort();
  SuperblockDisk sb;
  std::memcpy(&sb, block.data(), sizeof(sb));
  edit(sb);
  sb.crc = crc32c::Value(&sb, offsetof(SuperblockDisk, crc));
  std::memcpy(block.data(), &sb, sizeof(sb));
  if (!dev.Write(kSuperblockOffset, block.data(), kBlockBytes).ok()) abort();
}

// Seeds: metadata written by the log's own writers (FormatLog, WriteCheckpointBlock).
std::vector<std::string> Seeds() {
  using fuzzing::FormatFixedLog;
  std::vector<std::string> seeds;
  // The smallest log (8 segments of 128 KiB), as formatted: checkpoint generation 1, clean.
  SparseDevice small(kDataOffset + 8 * kMinSegmentBytes);
  if (!FormatFixedLog(&small, kMinSegmentBytes).ok()) abort();
  seeds.push_back(InputOf(small, 0));
  // A run that crashed: generation 2, unclean, with a lease, beside generation 1.
  if (!WriteCheckpointBlock(&small, Checkpoint(2, 1, false, 5, 0, 5 + 65536)).ok()) abort();
  seeds.push_back(InputOf(small, 3));
  // A clean stop after many laps: generation 3 over generation 2.
  if (!WriteCheckpointBlock(&small, Checkpoint(3, 2, true, 1000, 992, 1000 + 65536)).ok()) abort();
  seeds.push_back(InputOf(small, 0));
  // A crashed run whose lease ends at the top of the sequence numbers (NewestSegmentIn's range
  // ends at 2^64 - 1).
  if (!WriteCheckpointBlock(&small, Checkpoint(4, 3, false, UINT64_MAX - 2, UINT64_MAX - 2, UINT64_MAX)).ok()) abort();
  seeds.push_back(InputOf(small, 2));
  // A 1 TiB device of 256 MiB segments, and one of 1 MiB segments (the default).
  SparseDevice big(uint64_t{1} << 40);
  if (!FormatFixedLog(&big, kMaxSegmentBytes).ok()) abort();
  seeds.push_back(InputOf(big, 0));
  if (!FormatFixedLog(&big, 1 << 20).ok()) abort();
  seeds.push_back(InputOf(big, 1));
  // The superblock check's overflow: 2^47 + 8 segments of 128 KiB wrap segment_count *
  // segment_bytes to 1 MiB, which "fits" a 2 MiB device.
  EditSuperblock(small, [](SuperblockDisk& sb) { sb.segment_count = (uint64_t{1} << 47) + 8; });
  seeds.push_back(InputOf(small, 0));
  return seeds;
}

}  // namespace
}  // namespace tmem::log

std::vector<std::string> TmemFuzzSeeds() { return tmem::log::Seeds(); }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tmem::SetMinLogLevel(tmem::LogLevel::kError);  // FormatLog's line per seed
  tmem::fuzz::WriteSeedsIfAsked(TmemFuzzSeeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tmem::log::Run(data, size);
  return 0;
}
