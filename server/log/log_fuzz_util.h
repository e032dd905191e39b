// A formatted log with a fixed identity, for the fuzz targets of the on-disk formats
// (log_metadata_fuzzer, segment_fuzzer, blockcache's cache_record_fuzzer). FormatLog draws a
// random device UUID and stamps the time, so its bytes differ per run; a fuzz target's seeds and
// corpus must name the same device every run, or a saved input would no longer match it.
#ifndef TMEM_SERVER_LOG_LOG_FUZZ_UTIL_H_
#define TMEM_SERVER_LOG_LOG_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/status/status.h"
#include "common/crc32c.h"
#include "common/status_macros.h"
#include "server/io/block_device.h"
#include "server/log/log_format.h"
#include "server/log/log_metadata.h"

namespace tmem::log::fuzzing {

inline constexpr uint8_t kFuzzUuid[16] = {0x74, 0x6d, 0x65, 0x6d, 0x2d, 0x66, 0x75, 0x7a,
                                          0x7a, 0x2d, 0x75, 0x75, 0x69, 0x64, 0x00, 0x01};

// Formats `device` with FormatLog (forced), then binds the result to kFuzzUuid with format time
// 0: the superblock's CRC is computed again as FormatLog computes it, and the checkpoint is
// written again by WriteCheckpointBlock. The device's bytes are then the same on every run.
inline absl::Status FormatFixedLog(io::BlockDevice* device, uint32_t segment_bytes) {
  TMEM_RETURN_IF_ERROR(FormatLog(device, {.segment_bytes = segment_bytes, .force = true}));
  io::AlignedBuffer block;
  TMEM_RETURN_IF_ERROR(ReadBlock(device, kSuperblockOffset, &block));
  SuperblockDisk sb;
  std::memcpy(&sb, block.data(), sizeof(sb));
  std::memcpy(sb.device_uuid, kFuzzUuid, 16);
  sb.format_time_unix = 0;
  sb.crc = crc32c::Value(&sb, offsetof(SuperblockDisk, crc));
  std::memcpy(block.data(), &sb, sizeof(sb));
  TMEM_RETURN_IF_ERROR(device->Write(kSuperblockOffset, block.data(), kBlockBytes));
  // FormatLog wrote generation 1 (slot 1) and zeroed slot 0.
  TMEM_RETURN_IF_ERROR(ReadBlock(device, kCheckpointOffset[1], &block));
  CheckpointDisk cp;
  std::memcpy(&cp, block.data(), sizeof(cp));
  std::memcpy(cp.device_uuid, kFuzzUuid, 16);
  return WriteCheckpointBlock(device, cp);
}

}  // namespace tmem::log::fuzzing

#endif  // TMEM_SERVER_LOG_LOG_FUZZ_UTIL_H_
