#include "server/log/segment_scan.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "server/log/segment_codec.h"

namespace tmem::log {

absl::Status ScanSegments(io::BlockDevice* device, uint64_t min_seq,
                          const std::function<absl::Status(const ScannedSegment&)>& fn, uint64_t* skipped) {
  TMEM_ASSIGN_OR_RETURN(LogGeometry g, ReadLogGeometry(device));
  uint64_t bad = 0;
  // Headers first (one block each), then the chosen segments whole, in sequence order.
  std::vector<std::pair<uint64_t, uint64_t>> found;  // (seq, position)
  io::AlignedBuffer block;
  for (uint64_t pos = 0; pos < g.segment_count; ++pos) {
    TMEM_RETURN_IF_ERROR(ReadBlock(device, kDataOffset + pos * g.segment_bytes, &block));
    if (AllZero(block.data(), sizeof(SegmentHeaderDisk))) continue;  // never written
    const uint64_t seq = HeaderSeqAt(block.data(), g, pos);
    if (seq == 0) {
      ++bad;
      continue;
    }
    if (seq > min_seq) found.emplace_back(seq, pos);
  }
  std::sort(found.begin(), found.end());
  io::AlignedBuffer seg(g.segment_bytes, kBlockBytes);
  for (const auto& [seq, pos] : found) {
    TMEM_RETURN_IF_ERROR(device->Read(kDataOffset + pos * g.segment_bytes, seg.data(), g.segment_bytes));
    std::optional<std::vector<SlotEntryDisk>> entries = DecodeSegment(seg.data(), g.segment_bytes, seq);
    if (!entries.has_value()) {
      ++bad;
      continue;
    }
    TMEM_RETURN_IF_ERROR(fn(ScannedSegment{seq, seg.data(), *entries}));
  }
  if (skipped != nullptr) *skipped = bad;
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> NewestSegmentIn(io::BlockDevice* device, const LogGeometry& g, uint64_t after, uint64_t upto) {
  const uint64_t count = std::min(upto - std::min(upto, after), g.segment_count);
  uint64_t newest = after;
  io::AlignedBuffer block;
  // Counted by i, not by seq: the range comes from a checkpoint, and when it ends at 2^64 - 1,
  // `seq <= after + count` would hold for every seq (it wraps to 0) and never end.
  for (uint64_t i = 1; i <= count; ++i) {
    const uint64_t seq = after + i;  // <= upto: count <= upto - after
    const uint64_t pos = (seq - 1) % g.segment_count;
    TMEM_RETURN_IF_ERROR(ReadBlock(device, kDataOffset + pos * g.segment_bytes, &block));
    const uint64_t found = HeaderSeqAt(block.data(), g, pos);
    if (found > newest && found <= upto) newest = found;
  }
  return newest;
}

}  // namespace tmem::log
