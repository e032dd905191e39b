#include "server/log/segment_codec.h"

#include <cstddef>
#include <cstring>

#include "common/crc32c.h"
#include "server/io/block_device.h"

namespace tmem::log {

uint32_t SegmentUsedBytes(uint32_t data_end, size_t entries) {
  return static_cast<uint32_t>(io::AlignUp(data_end + entries * sizeof(SlotEntryDisk), kBlockBytes));
}

uint32_t EncodeSegment(uint8_t* segment, const uint8_t (&device_uuid)[16], uint64_t seq,
                       std::span<const SlotEntryDisk> entries, uint32_t data_end) {
  const uint32_t used = SegmentUsedBytes(data_end, entries.size());
  const size_t table_bytes = entries.size() * sizeof(SlotEntryDisk);
  // An empty span's data() may be null, which memcpy must not get even for 0 bytes.
  if (table_bytes != 0) std::memcpy(segment + data_end, entries.data(), table_bytes);
  std::memset(segment + data_end + table_bytes, 0, used - data_end - table_bytes);
  SegmentHeaderDisk h{};
  h.magic = kSegmentMagic;
  std::memcpy(h.device_uuid, device_uuid, 16);
  h.seq = seq;
  h.entry_count = static_cast<uint32_t>(entries.size());
  h.table_offset = data_end;
  h.used_bytes = used;
  h.table_crc = crc32c::Value(segment + data_end, table_bytes);
  h.header_crc = crc32c::Value(&h, offsetof(SegmentHeaderDisk, header_crc));
  std::memset(segment, 0, kSegmentHeaderBytes);
  std::memcpy(segment, &h, sizeof(h));
  return used;
}

uint64_t HeaderSeqAt(const uint8_t* block, const LogGeometry& g, uint64_t pos) {
  SegmentHeaderDisk h;
  std::memcpy(&h, block, sizeof(h));
  const bool valid = h.magic == kSegmentMagic && std::memcmp(h.device_uuid, g.device_uuid, 16) == 0 &&
                     h.header_crc == crc32c::Value(&h, offsetof(SegmentHeaderDisk, header_crc)) && h.seq > 0 &&
                     (h.seq - 1) % g.segment_count == pos;
  return valid ? h.seq : 0;
}

std::optional<std::vector<SlotEntryDisk>> DecodeSegment(const uint8_t* segment, uint32_t segment_bytes, uint64_t seq) {
  SegmentHeaderDisk h;
  std::memcpy(&h, segment, sizeof(h));
  const uint64_t table_bytes = uint64_t{h.entry_count} * sizeof(SlotEntryDisk);
  const bool valid = h.seq == seq && h.used_bytes <= segment_bytes && h.table_offset >= kSegmentHeaderBytes &&
                     h.table_offset + table_bytes <= h.used_bytes &&
                     h.header_crc == crc32c::Value(&h, offsetof(SegmentHeaderDisk, header_crc)) &&
                     h.table_crc == crc32c::Value(segment + h.table_offset, table_bytes);
  if (!valid) return std::nullopt;
  std::vector<SlotEntryDisk> entries(h.entry_count);
  if (table_bytes != 0) std::memcpy(entries.data(), segment + h.table_offset, table_bytes);  // data() may be null
  for (const SlotEntryDisk& e : entries) {
    if (e.offset < kSegmentHeaderBytes || uint64_t{e.offset} + e.length > h.table_offset) return std::nullopt;
  }
  return entries;
}

}  // namespace tmem::log
