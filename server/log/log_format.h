// The on-disk format of the segment log, shared by the writer (SegmentLog) and recovery.
// Prose description: docs/format.md. All integers are little-endian (x86-64 and arm64 Linux);
// every struct is written as-is. Bump kFormatVersion on any change to this file.
//
// Device layout:
//   [0, 4096)            superblock (SuperblockDisk, rest zero)
//   [4096, 8192)         checkpoint slot 0 (CheckpointDisk, rest zero)
//   [8192, 12288)        checkpoint slot 1
//   [16384, 24576)       two owner record slots for the log's user: zero for page pools, the
//                        block cache's record for a cached export (server/blockcache/format.h)
//   [kDataOffset, ...)   segment_count segments of segment_bytes each
// Segment layout (one I/O writes [0, used_bytes)):
//   [0, 64)              SegmentHeaderDisk
//   [4096, data_end)     page data; a page of length L starts at a multiple of min(L, 4096)
//   [table_offset, +56n) SlotEntryDisk table, n = entry_count
#ifndef TMEM_SERVER_LOG_LOG_FORMAT_H_
#define TMEM_SERVER_LOG_LOG_FORMAT_H_

#include <cstddef>
#include <cstdint>

namespace tmem::log {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint64_t kSuperblockMagic = 0x31474F4C4D454D54ull;  // "TMEMLOG1"
inline constexpr uint64_t kCheckpointMagic = 0x31504B434D454D54ull;  // "TMEMCKP1"
inline constexpr uint64_t kSegmentMagic = 0x314745534D454D54ull;     // "TMEMSEG1"

inline constexpr uint32_t kBlockBytes = 4096;  // unit of every metadata I/O
inline constexpr uint64_t kSuperblockOffset = 0;
inline constexpr uint64_t kCheckpointOffset[2] = {4096, 8192};
inline constexpr uint64_t kOwnerRecordOffset[2] = {16384, 20480};
inline constexpr uint64_t kDataOffset = 1 << 20;       // first segment, 1 MiB aligned
inline constexpr uint32_t kSegmentHeaderBytes = 4096;  // data starts here
inline constexpr uint32_t kSlotKeyBytes = 40;          // opaque to the log
inline constexpr uint32_t kMinSegmentBytes = 128 << 10;
inline constexpr uint32_t kMaxSegmentBytes = 256 << 20;
inline constexpr uint32_t kMinSegmentCount = 8;
inline constexpr uint32_t kPageAlignBytes = 512;  // every page length is a multiple

struct SuperblockDisk {       // 128 bytes at offset 0
  uint64_t magic;             //   0 kSuperblockMagic
  uint32_t format_version;    //   8 kFormatVersion
  uint32_t block_bytes;       //  12 kBlockBytes
  uint8_t device_uuid[16];    //  16 random at format time
  uint32_t segment_bytes;     //  32
  uint32_t reserved0;         //  36 zero
  uint64_t segment_count;     //  40
  uint64_t data_offset;       //  48 kDataOffset
  uint64_t device_bytes;      //  56 device size at format time
  uint64_t format_time_unix;  //  64 seconds since the epoch
  uint8_t reserved1[52];      //  72 zero
  uint32_t crc;               // 124 CRC32C of bytes [0, 124)
};
static_assert(sizeof(SuperblockDisk) == 128);

// Two slots, written alternately; the valid one with the higher generation wins, so a torn
// checkpoint write never loses the previous one.
struct CheckpointDisk {     // 72 bytes at a checkpoint slot
  uint64_t magic;           //   0 kCheckpointMagic
  uint8_t device_uuid[16];  //   8 must equal the superblock's
  uint64_t generation;      //  24 +1 per checkpoint write
  uint64_t instance;        //  32 instance id of the run that wrote it
  uint64_t head_seq;        //  40 last sequence number handed out (clean stop only)
  uint64_t reclaimed_seq;   //  48 segments with seq <= this hold nothing (clean stop only)
  uint64_t seq_lease;       //  56 no run hands out a sequence number above this
  uint32_t clean;           //  64 1 = written by a clean stop, 0 = a run is (or was) live
  uint32_t crc;             //  68 CRC32C of bytes [0, 68)
};
static_assert(sizeof(CheckpointDisk) == 72);

struct SegmentHeaderDisk {  // 64 bytes at the start of each segment
  uint64_t magic;           //   0 kSegmentMagic
  uint8_t device_uuid[16];  //   8 binds the segment to this format
  uint64_t seq;             //  24 sequence number; segment index = (seq - 1) % count
  uint32_t entry_count;     //  32
  uint32_t table_offset;    //  36 bytes from the segment start
  uint32_t used_bytes;      //  40 bytes written, a multiple of kBlockBytes
  uint32_t table_crc;       //  44 CRC32C of the slot table
  uint32_t flags;           //  48 zero
  uint32_t reserved[2];     //  52 zero
  uint32_t header_crc;      //  60 CRC32C of bytes [0, 60)
};
static_assert(sizeof(SegmentHeaderDisk) == 64);

struct SlotEntryDisk {         // 56 bytes per page, in the slot table
  uint8_t key[kSlotKeyBytes];  //   0 the caller's key (pool: pool id, object, index)
  uint32_t offset;             //  40 bytes from the segment start
  uint32_t length;             //  44 bytes, a multiple of kPageAlignBytes
  uint32_t crc;                //  48 CRC32C of the page data
  uint32_t flags;              //  52 zero
};
static_assert(sizeof(SlotEntryDisk) == 56);

}  // namespace tmem::log

#endif  // TMEM_SERVER_LOG_LOG_FORMAT_H_
