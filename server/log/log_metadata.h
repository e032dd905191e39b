// The segment log's metadata on its device (log_format.h): the superblock (format, geometry,
// identity) and the two checkpoint slots (generation, instance, clean flag, watermarks and the
// sequence lease). Functions of the device alone; SegmentLog uses them to open and to renew its
// lease, tools to inspect a device.
//
// Thread-safety: each call reads or writes only what it names; callers serialise writes of one
// device's checkpoints (SegmentLog: checkpoint_mu_).
#ifndef TMEM_SERVER_LOG_LOG_METADATA_H_
#define TMEM_SERVER_LOG_LOG_METADATA_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/io/block_device.h"
#include "server/log/log_format.h"

namespace tmem::log {

struct FormatOptions {
  uint32_t segment_bytes = 1 << 20;
  // Format over a device that already holds a tmem log or any other non-zero data.
  bool force = false;
};

// Geometry and identity read from the superblock.
struct LogGeometry {
  uint8_t device_uuid[16] = {};
  uint32_t segment_bytes = 0;
  uint64_t segment_count = 0;
  uint64_t device_bytes = 0;
  uint32_t format_version = 0;
};

// The newest valid checkpoint (for inspection tools).
struct LogCheckpoint {
  uint64_t generation = 0;
  uint64_t instance = 0;  // instance of the run that wrote it
  bool clean = false;     // written by a clean stop
  uint64_t head_seq = 0;
  uint64_t reclaimed_seq = 0;
  uint64_t seq_lease = 0;
};

// Writes a fresh superblock and checkpoints (and clears the owner record slots). Refuses
// (AlreadyExists / FailedPrecondition) a device that holds a tmem log or other non-zero data
// unless options.force; InvalidArgument for a bad segment size or a device too small for
// kMinSegmentCount segments.
absl::Status FormatLog(io::BlockDevice* device, const FormatOptions& options);
// Reads the superblock. Refuses an unformatted device or foreign data (FailedPrecondition), a
// corrupt superblock (DataLoss), another format version (FailedPrecondition).
absl::StatusOr<LogGeometry> ReadLogGeometry(io::BlockDevice* device);
// True when the owner record slots hold anything (a block cache's record).
absl::StatusOr<bool> LogHasOwnerRecord(io::BlockDevice* device);
// The newest valid checkpoint of the two slots; DataLoss when both are corrupt.
absl::StatusOr<CheckpointDisk> ReadBestCheckpoint(io::BlockDevice* device, const LogGeometry& geometry);
// The superblock and the newest checkpoint, without changing anything.
absl::StatusOr<LogCheckpoint> ReadLogCheckpoint(io::BlockDevice* device);
// Writes `cp` (magic and CRC filled in) to the slot of its generation and syncs the device.
absl::Status WriteCheckpointBlock(io::BlockDevice* device, CheckpointDisk cp);

// Helpers shared by the log's parts.
std::string UuidString(const uint8_t (&uuid)[16]);
bool AllZero(const uint8_t* p, size_t n);
absl::Status ReadBlock(io::BlockDevice* device, uint64_t offset, io::AlignedBuffer* block);

}  // namespace tmem::log

#endif  // TMEM_SERVER_LOG_LOG_METADATA_H_
