// A segment on the device (log_format.h: SegmentHeaderDisk, the slot table, SlotEntryDisk): the
// writer half (EncodeSegment, used by the flusher) and the reader half (HeaderSeqAt,
// DecodeSegment, used by the scan) in one place, as LevelDB keeps log_writer and log_reader on
// one format.
//
// Layout: header block | pages (each at its slot's offset) | slot table | zeros to a block.
#ifndef TMEM_SERVER_LOG_SEGMENT_CODEC_H_
#define TMEM_SERVER_LOG_SEGMENT_CODEC_H_

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "server/log/log_format.h"
#include "server/log/log_metadata.h"

namespace tmem::log {

// Bytes a segment whose pages end at `data_end` and which has `entries` slots writes (a
// multiple of kBlockBytes).
uint32_t SegmentUsedBytes(uint32_t data_end, size_t entries);

// Completes the segment in `segment` (its pages already in place, ending at `data_end`): the
// slot table after the pages, zeros to the block, the header with both CRCs. Returns the bytes
// to write (SegmentUsedBytes).
uint32_t EncodeSegment(uint8_t* segment, const uint8_t (&device_uuid)[16], uint64_t seq,
                       std::span<const SlotEntryDisk> entries, uint32_t data_end);

// The sequence number in the header `block` read at position `pos`, or 0 unless it is a whole
// header of this device that belongs at that position.
uint64_t HeaderSeqAt(const uint8_t* block, const LogGeometry& g, uint64_t pos);

// The slot table of the whole segment `segment` (segment_bytes long) expected to hold `seq`;
// nullopt when its header or table is not whole or a slot points outside the pages.
std::optional<std::vector<SlotEntryDisk>> DecodeSegment(const uint8_t* segment, uint32_t segment_bytes, uint64_t seq);

}  // namespace tmem::log

#endif  // TMEM_SERVER_LOG_SEGMENT_CODEC_H_
