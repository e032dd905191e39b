#include "server/log/log_metadata.h"

#include <sys/random.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/crc32c.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace tmem::log {
namespace {

// Returns the checkpoint in `block` if it is whole and belongs to `uuid`.
bool ParseCheckpoint(const io::AlignedBuffer& block, const uint8_t (&uuid)[16], CheckpointDisk* out) {
  std::memcpy(out, block.data(), sizeof(*out));
  return out->magic == kCheckpointMagic && std::memcmp(out->device_uuid, uuid, 16) == 0 &&
         out->crc == crc32c::Value(out, offsetof(CheckpointDisk, crc));
}

}  // namespace

std::string UuidString(const uint8_t (&u)[16]) {
  return absl::StrFormat("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
                         u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

bool AllZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

absl::Status ReadBlock(io::BlockDevice* device, uint64_t offset, io::AlignedBuffer* block) {
  *block = io::AlignedBuffer(kBlockBytes, kBlockBytes);
  return device->Read(offset, block->data(), kBlockBytes);
}

absl::StatusOr<LogGeometry> ReadLogGeometry(io::BlockDevice* device) {
  if (kBlockBytes % device->alignment() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(device->Describe(), " needs ", device->alignment(),
                                                   "-byte I/O; the log format uses ", kBlockBytes));
  }
  if (device->size_bytes() < kBlockBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(device->Describe(), " is too small (", device->size_bytes(), " bytes)"));
  }
  io::AlignedBuffer block;
  TMEM_RETURN_IF_ERROR(ReadBlock(device, kSuperblockOffset, &block));
  SuperblockDisk sb;
  std::memcpy(&sb, block.data(), sizeof(sb));
  if (AllZero(block.data(), kBlockBytes)) {
    return absl::FailedPreconditionError(absl::StrCat(
        device->Describe(), " is not formatted (its first block is zero); format it first with `tmem-admin format`"));
  }
  if (sb.magic != kSuperblockMagic) {
    return absl::FailedPreconditionError(
        absl::StrFormat("%s holds foreign data, not a tmem log (first 8 bytes 0x%016x); refusing to use it",
                        device->Describe(), sb.magic));
  }
  if (sb.crc != crc32c::Value(&sb, offsetof(SuperblockDisk, crc))) {
    return absl::DataLossError(
        absl::StrCat("the superblock of ", device->Describe(), " is corrupt (CRC mismatch); refusing to use it"));
  }
  if (sb.format_version != kFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(device->Describe(), " has tmem log format version ",
                                                      sb.format_version, "; this build reads version ",
                                                      kFormatVersion));
  }
  if (sb.block_bytes != kBlockBytes || sb.data_offset != kDataOffset || sb.segment_bytes < kMinSegmentBytes ||
      sb.segment_bytes > kMaxSegmentBytes || sb.segment_bytes % kBlockBytes != 0 ||
      sb.segment_count < kMinSegmentCount) {
    return absl::DataLossError(absl::StrCat("the superblock of ", device->Describe(),
                                            " has an impossible geometry (segment bytes ", sb.segment_bytes, ", count ",
                                            sb.segment_count, ")"));
  }
  // Divided, not multiplied: segment_count comes from the device, and segment_count *
  // segment_bytes can wrap to a size that fits (2^47 + 8 segments of 128 KiB "are" 1 MiB).
  const uint64_t data_bytes = device->size_bytes() > kDataOffset ? device->size_bytes() - kDataOffset : 0;
  if (sb.segment_count > data_bytes / sb.segment_bytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        device->Describe(), " has ", device->size_bytes(), " bytes but its superblock describes ", sb.segment_count,
        " segments of ", sb.segment_bytes, " bytes after the first ", kDataOffset, " (was the device truncated?)"));
  }
  LogGeometry g;
  std::memcpy(g.device_uuid, sb.device_uuid, 16);
  g.segment_bytes = sb.segment_bytes;
  g.segment_count = sb.segment_count;
  g.device_bytes = sb.device_bytes;
  g.format_version = sb.format_version;
  return g;
}

absl::Status FormatLog(io::BlockDevice* device, const FormatOptions& options) {
  if (kBlockBytes % device->alignment() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(device->Describe(), " needs ", device->alignment(),
                                                   "-byte I/O; the log format uses ", kBlockBytes));
  }
  if (options.segment_bytes < kMinSegmentBytes || options.segment_bytes > kMaxSegmentBytes ||
      options.segment_bytes % kBlockBytes != 0) {
    return absl::InvalidArgumentError(absl::StrCat("segment size ", options.segment_bytes,
                                                   " must be a multiple of 4096 between ", kMinSegmentBytes, " and ",
                                                   kMaxSegmentBytes));
  }
  const uint64_t needed = kDataOffset + uint64_t{kMinSegmentCount} * options.segment_bytes;
  if (device->size_bytes() < needed) {
    return absl::InvalidArgumentError(absl::StrCat(device->Describe(), " has ", device->size_bytes(),
                                                   " bytes; a log of ", options.segment_bytes,
                                                   "-byte segments needs at least ", needed));
  }
  io::AlignedBuffer block;
  TMEM_RETURN_IF_ERROR(ReadBlock(device, kSuperblockOffset, &block));
  if (!options.force) {
    uint64_t magic;
    std::memcpy(&magic, block.data(), 8);
    if (magic == kSuperblockMagic) {
      return absl::AlreadyExistsError(absl::StrCat(device->Describe(),
                                                   " already holds a tmem log; pass --force to format it again "
                                                   "(every cached page on it is lost)"));
    }
    if (!AllZero(block.data(), kBlockBytes)) {
      return absl::FailedPreconditionError(absl::StrCat(
          device->Describe(), " holds other data (its first block is not zero); pass --force to overwrite it"));
    }
  }

  SuperblockDisk sb{};
  sb.magic = kSuperblockMagic;
  sb.format_version = kFormatVersion;
  sb.block_bytes = kBlockBytes;
  if (getrandom(sb.device_uuid, sizeof(sb.device_uuid), 0) != sizeof(sb.device_uuid)) {
    return io::ErrnoStatus(errno, "getrandom");
  }
  sb.segment_bytes = options.segment_bytes;
  sb.segment_count = (device->size_bytes() - kDataOffset) / options.segment_bytes;
  sb.data_offset = kDataOffset;
  sb.device_bytes = device->size_bytes();
  sb.format_time_unix = static_cast<uint64_t>(std::time(nullptr));
  sb.crc = crc32c::Value(&sb, offsetof(SuperblockDisk, crc));

  CheckpointDisk cp{};
  cp.magic = kCheckpointMagic;
  std::memcpy(cp.device_uuid, sb.device_uuid, 16);
  cp.generation = 1;
  cp.clean = 1;
  cp.crc = crc32c::Value(&cp, offsetof(CheckpointDisk, crc));

  // Checkpoints first, superblock last: a format cut short leaves no valid superblock. The
  // owner record slots are cleared with them: a new log has no owner's record.
  io::AlignedBuffer out(kBlockBytes, kBlockBytes);
  std::memset(out.data(), 0, kBlockBytes);
  for (uint64_t offset : kOwnerRecordOffset) TMEM_RETURN_IF_ERROR(device->Write(offset, out.data(), kBlockBytes));
  std::memcpy(out.data(), &cp, sizeof(cp));
  // Generation g lives in slot g % 2.
  TMEM_RETURN_IF_ERROR(device->Write(kCheckpointOffset[1], out.data(), kBlockBytes));
  std::memset(out.data(), 0, kBlockBytes);
  TMEM_RETURN_IF_ERROR(device->Write(kCheckpointOffset[0], out.data(), kBlockBytes));
  TMEM_RETURN_IF_ERROR(device->Sync());
  std::memcpy(out.data(), &sb, sizeof(sb));
  TMEM_RETURN_IF_ERROR(device->Write(kSuperblockOffset, out.data(), kBlockBytes));
  TMEM_RETURN_IF_ERROR(device->Sync());
  TMEM_LOG(Info) << "formatted " << device->Describe() << ": " << sb.segment_count << " segments of "
                 << sb.segment_bytes << " bytes, uuid " << UuidString(sb.device_uuid);
  return absl::OkStatus();
}

absl::StatusOr<bool> LogHasOwnerRecord(io::BlockDevice* device) {
  io::AlignedBuffer block;
  for (uint64_t offset : kOwnerRecordOffset) {
    TMEM_RETURN_IF_ERROR(ReadBlock(device, offset, &block));
    if (!AllZero(block.data(), kBlockBytes)) return true;
  }
  return false;
}

absl::StatusOr<CheckpointDisk> ReadBestCheckpoint(io::BlockDevice* device, const LogGeometry& geometry) {
  CheckpointDisk best{};
  bool found = false;
  for (int slot = 0; slot < 2; ++slot) {
    io::AlignedBuffer block;
    TMEM_RETURN_IF_ERROR(ReadBlock(device, kCheckpointOffset[slot], &block));
    CheckpointDisk cp;
    if (ParseCheckpoint(block, geometry.device_uuid, &cp) && (!found || cp.generation > best.generation)) {
      best = cp;
      found = true;
    }
  }
  if (!found) {
    return absl::DataLossError(absl::StrCat("both checkpoint blocks of ", device->Describe(),
                                            " are corrupt; the log cannot tell which sequence numbers were used. "
                                            "Format it again (cached pages are lost)"));
  }
  return best;
}

absl::StatusOr<LogCheckpoint> ReadLogCheckpoint(io::BlockDevice* device) {
  TMEM_ASSIGN_OR_RETURN(LogGeometry geometry, ReadLogGeometry(device));
  TMEM_ASSIGN_OR_RETURN(CheckpointDisk cp, ReadBestCheckpoint(device, geometry));
  LogCheckpoint out;
  out.generation = cp.generation;
  out.instance = cp.instance;
  out.clean = cp.clean == 1;
  out.head_seq = cp.head_seq;
  out.reclaimed_seq = cp.reclaimed_seq;
  out.seq_lease = cp.seq_lease;
  return out;
}

absl::Status WriteCheckpointBlock(io::BlockDevice* device, CheckpointDisk cp) {
  cp.magic = kCheckpointMagic;
  cp.crc = crc32c::Value(&cp, offsetof(CheckpointDisk, crc));
  io::AlignedBuffer block(kBlockBytes, kBlockBytes);
  std::memset(block.data(), 0, kBlockBytes);
  std::memcpy(block.data(), &cp, sizeof(cp));
  // Generation g lives in slot g % 2: the other slot keeps the previous checkpoint whole.
  TMEM_RETURN_IF_ERROR(device->Write(kCheckpointOffset[cp.generation % 2], block.data(), kBlockBytes));
  return device->Sync();
}

}  // namespace tmem::log
