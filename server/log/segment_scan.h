// Reading a log device's segments without a live log: recovery (the block cache rebuilds its
// index from them) and finding where a crashed run stopped writing.
//
// Thread-safety: functions of the device; nothing may write it meanwhile.
#ifndef TMEM_SERVER_LOG_SEGMENT_SCAN_H_
#define TMEM_SERVER_LOG_SEGMENT_SCAN_H_

#include <cstdint>
#include <functional>
#include <span>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/io/block_device.h"
#include "server/log/log_format.h"
#include "server/log/log_metadata.h"

namespace tmem::log {

// One segment found on the device by ScanSegments: its header is valid, its slot table
// matches its CRC, and `data` holds its first used_bytes. Each page's own CRC is not checked
// here (a torn write can leave a valid table over old page data): check entry.crc.
struct ScannedSegment {
  uint64_t seq = 0;
  const uint8_t* data = nullptr;
  std::span<const SlotEntryDisk> entries;
};

// Reads every segment of a formatted device whose sequence number is above `min_seq`, and
// calls `fn` for each in ascending sequence order. Segments with a bad header, another
// device's UUID, a sequence number that does not belong at their position or a bad table are
// skipped (counted in *skipped when given). Device errors and errors from `fn` are returned.
absl::Status ScanSegments(io::BlockDevice* device, uint64_t min_seq,
                          const std::function<absl::Status(const ScannedSegment&)>& fn, uint64_t* skipped = nullptr);

// The newest sequence number in (after, upto] with a valid header at its position, or `after`.
// Each position holds the newest number written to it, so this reads each position of the
// range once (at most the whole device).
absl::StatusOr<uint64_t> NewestSegmentIn(io::BlockDevice* device, const LogGeometry& g, uint64_t after, uint64_t upto);

}  // namespace tmem::log

#endif  // TMEM_SERVER_LOG_SEGMENT_SCAN_H_
