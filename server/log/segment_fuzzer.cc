// libFuzzer target over segments on the device (log_format.h: SegmentHeaderDisk, the slot table):
// HeaderSeqAt and DecodeSegment on each segment, and ScanSegments and NewestSegmentIn over a
// small memory device (8 segments of 128 KiB behind a valid superblock) whose segments hold the
// input, so every on-disk length, offset and entry count is untrusted. The input:
//   [0]   flags: bit 0 recomputes each segment's table CRC (when its table lies inside the
//         segment) and header CRC, so that mutated lengths and counts get past the CRCs
//   then up to 8 segments, each [position u8 (mod 8)][header, 64 bytes][n u16 LE][n bytes
//   written at segment offset 4096 (pages, then the slot table)]; the rest of a segment is zero
// Invariants: HeaderSeqAt accepts exactly a whole header of this device at its position;
// what DecodeSegment accepts lies inside the segment (table within used_bytes within the
// segment, every page between the header block and the table), and EncodeSegment writes a
// canonical one to the same header and table bytes; ScanSegments delivers exactly the
// decodable segments in ascending order and counts every other written one as skipped;
// NewestSegmentIn finds the newest valid header.
//   scripts/fuzz_formats.sh [RUNS]         (libFuzzer)
//   //server/log:segment_fuzz_test         (the default suite: the seeds and a few thousand mutations)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/crc32c.h"
#include "common/fuzz_support.h"
#include "common/logging.h"
#include "server/io/block_device.h"
#include "server/io/memory_device.h"
#include "server/log/log_format.h"
#include "server/log/log_fuzz_util.h"
#include "server/log/log_metadata.h"
#include "server/log/segment_codec.h"
#include "server/log/segment_scan.h"

namespace tmem::log {
namespace {

constexpr uint32_t kSegmentBytes = kMinSegmentBytes;
constexpr uint64_t kSegments = kMinSegmentCount;
constexpr size_t kMaxSegmentsPerInput = 8;

struct Rig {
  io::MemoryDevice device{kDataOffset + kSegments * kSegmentBytes};
  LogGeometry geometry;
  io::AlignedBuffer zeros{kSegmentBytes, kBlockBytes};
  Rig() {
    if (!fuzzing::FormatFixedLog(&device, kSegmentBytes).ok()) abort();
    absl::StatusOr<LogGeometry> g = ReadLogGeometry(&device);
    if (!g.ok() || g->segment_count != kSegments) abort();
    geometry = *g;
  }
};

Rig& R() {
  static Rig* rig = new Rig();
  return *rig;
}

SegmentHeaderDisk HeaderOf(const uint8_t* segment) {
  SegmentHeaderDisk h;
  std::memcpy(&h, segment, sizeof(h));
  return h;
}

// HeaderSeqAt's contract, checked independently.
uint64_t ExpectedSeqAt(const uint8_t* segment, const LogGeometry& g, uint64_t pos) {
  const SegmentHeaderDisk h = HeaderOf(segment);
  const bool whole = h.magic == kSegmentMagic && std::memcmp(h.device_uuid, g.device_uuid, 16) == 0 &&
                     h.header_crc == crc32c::Value(&h, offsetof(SegmentHeaderDisk, header_crc));
  return whole && h.seq > 0 && (h.seq - 1) % g.segment_count == pos ? h.seq : 0;
}

// Checks what DecodeSegment accepted from `segment` (which holds `seq`); returns its entries.
std::optional<std::vector<SlotEntryDisk>> DecodeAndCheck(const uint8_t* segment, uint64_t seq) {
  std::optional<std::vector<SlotEntryDisk>> entries = DecodeSegment(segment, kSegmentBytes, seq);
  // Another lap's number is never taken for this one.
  TMEM_FUZZ_CHECK(!DecodeSegment(segment, kSegmentBytes, seq + kSegments).has_value());
  if (!entries.has_value()) return entries;
  const SegmentHeaderDisk h = HeaderOf(segment);
  const uint64_t table_bytes = uint64_t{h.entry_count} * sizeof(SlotEntryDisk);
  TMEM_FUZZ_CHECK(h.seq == seq && entries->size() == h.entry_count);
  TMEM_FUZZ_CHECK(h.table_offset >= kSegmentHeaderBytes && h.table_offset + table_bytes <= h.used_bytes);
  TMEM_FUZZ_CHECK(h.used_bytes <= kSegmentBytes);
  TMEM_FUZZ_CHECK(h.table_crc == crc32c::Value(segment + h.table_offset, table_bytes));
  if (table_bytes != 0) TMEM_FUZZ_CHECK(std::memcmp(entries->data(), segment + h.table_offset, table_bytes) == 0);
  for (const SlotEntryDisk& e : *entries) {
    TMEM_FUZZ_CHECK(e.offset >= kSegmentHeaderBytes && uint64_t{e.offset} + e.length <= h.table_offset);
  }
  // A canonical segment (what the flusher writes: used_bytes just covers the table, flags and
  // reserved zero) is encoded again to the same header and table.
  if (h.flags == 0 && h.reserved[0] == 0 && h.reserved[1] == 0 &&
      h.used_bytes == SegmentUsedBytes(h.table_offset, entries->size())) {
    io::AlignedBuffer again(kSegmentBytes, kBlockBytes);
    std::memcpy(again.data(), segment, kSegmentBytes);
    const uint32_t used = EncodeSegment(again.data(), R().geometry.device_uuid, seq, *entries, h.table_offset);
    TMEM_FUZZ_CHECK(used == h.used_bytes);
    TMEM_FUZZ_CHECK(std::memcmp(again.data(), segment, sizeof(SegmentHeaderDisk)) == 0);
    TMEM_FUZZ_CHECK(std::memcmp(again.data() + h.table_offset, segment + h.table_offset, table_bytes) == 0);
  }
  return entries;
}

void Run(const uint8_t* data, size_t size) {
  Rig& rig = R();
  const LogGeometry& g = rig.geometry;
  for (uint64_t pos = 0; pos < kSegments; ++pos) {
    TMEM_FUZZ_CHECK(rig.device.Write(kDataOffset + pos * kSegmentBytes, rig.zeros.data(), kSegmentBytes).ok());
  }
  if (size == 0) return;
  const bool fix_crcs = data[0] & 1;
  size_t at = 1;
  io::AlignedBuffer seg(kSegmentBytes, kBlockBytes);
  for (size_t n = 0; n < kMaxSegmentsPerInput && at < size; ++n) {
    const uint64_t pos = data[at++] % kSegments;
    std::memset(seg.data(), 0, kSegmentBytes);
    const size_t header_bytes = std::min(sizeof(SegmentHeaderDisk), size - at);
    std::memcpy(seg.data(), data + at, header_bytes);
    at += header_bytes;
    size_t body = 0;
    if (at + 2 <= size) body = data[at] | (size_t{data[at + 1]} << 8);
    at = std::min(at + 2, size);
    body = std::min({body, size - at, size_t{kSegmentBytes - kSegmentHeaderBytes}});
    std::memcpy(seg.data() + kSegmentHeaderBytes, data + at, body);
    at += body;
    if (fix_crcs) {
      SegmentHeaderDisk h = HeaderOf(seg.data());
      const uint64_t table_bytes = uint64_t{h.entry_count} * sizeof(SlotEntryDisk);
      if (h.table_offset + table_bytes <= kSegmentBytes) {
        h.table_crc = crc32c::Value(seg.data() + h.table_offset, table_bytes);
      }
      h.header_crc = crc32c::Value(&h, offsetof(SegmentHeaderDisk, header_crc));
      std::memcpy(seg.data(), &h, sizeof(h));
    }
    TMEM_FUZZ_CHECK(rig.device.Write(kDataOffset + pos * kSegmentBytes, seg.data(), kSegmentBytes).ok());
  }

  // Each position as the scan will find it: the decoders alone, against their contracts.
  std::vector<uint64_t> decodable;  // sequence numbers ScanSegments must deliver
  uint64_t written = 0, newest = 0;
  for (uint64_t pos = 0; pos < kSegments; ++pos) {
    TMEM_FUZZ_CHECK(rig.device.Read(kDataOffset + pos * kSegmentBytes, seg.data(), kSegmentBytes).ok());
    if (AllZero(seg.data(), sizeof(SegmentHeaderDisk))) continue;
    ++written;
    const uint64_t seq = HeaderSeqAt(seg.data(), g, pos);
    TMEM_FUZZ_CHECK(seq == ExpectedSeqAt(seg.data(), g, pos));
    if (seq == 0) continue;
    TMEM_FUZZ_CHECK(HeaderSeqAt(seg.data(), g, (pos + 1) % kSegments) == 0);  // one position per number
    if (seq <= 2 * kSegments) newest = std::max(newest, seq);
    if (DecodeAndCheck(seg.data(), seq).has_value()) decodable.push_back(seq);
  }
  std::sort(decodable.begin(), decodable.end());

  // The scan: every decodable segment once, oldest first, each page inside its segment.
  std::vector<uint64_t> delivered;
  uint64_t skipped = 0;
  const absl::Status st = ScanSegments(
      &rig.device, 0,
      [&](const ScannedSegment& s) -> absl::Status {
        TMEM_FUZZ_CHECK(delivered.empty() || s.seq > delivered.back());
        delivered.push_back(s.seq);
        const SegmentHeaderDisk h = HeaderOf(s.data);
        TMEM_FUZZ_CHECK(h.seq == s.seq && h.entry_count == s.entries.size() && h.used_bytes <= kSegmentBytes);
        for (const SlotEntryDisk& e : s.entries) {
          TMEM_FUZZ_CHECK(e.offset >= kSegmentHeaderBytes && uint64_t{e.offset} + e.length <= h.table_offset);
          (void)crc32c::Value(s.data + e.offset, e.length);  // what recovery reads: ASan checks the bounds
        }
        return absl::OkStatus();
      },
      &skipped);
  TMEM_FUZZ_CHECK(st.ok());
  TMEM_FUZZ_CHECK(delivered == decodable);
  TMEM_FUZZ_CHECK(delivered.size() + skipped == written);
  // A scan above the newest number delivers nothing.
  if (!delivered.empty()) {
    TMEM_FUZZ_CHECK(ScanSegments(&rig.device, delivered.back(), [](const ScannedSegment&) {
                      TMEM_FUZZ_CHECK(false);
                      return absl::OkStatus();
                    }).ok());
  }

  // Resuming after a crash over (0, 2 * count]: the newest valid header in that range.
  absl::StatusOr<uint64_t> found = NewestSegmentIn(&rig.device, g, 0, 2 * kSegments);
  TMEM_FUZZ_CHECK(found.ok() && *found == newest);
}

// The input of segments that EncodeSegment wrote: (position, sequence number, page lengths).
std::string InputOf(uint8_t flags, const std::vector<std::pair<uint64_t, std::vector<uint32_t>>>& segments) {
  std::string in(1, static_cast<char>(flags));
  io::AlignedBuffer seg(kSegmentBytes, kBlockBytes);
  for (const auto& [seq, lengths] : segments) {
    std::memset(seg.data(), 0, kSegmentBytes);
    std::vector<SlotEntryDisk> entries;
    uint32_t end = kSegmentHeaderBytes;
    for (uint32_t len : lengths) {
      const uint32_t offset = static_cast<uint32_t>(io::AlignUp(end, std::min(len, kBlockBytes)));
      SlotEntryDisk e{};
      for (size_t i = 0; i < kSlotKeyBytes; ++i) e.key[i] = static_cast<uint8_t>(entries.size() * 16 + i);
      std::memset(seg.data() + offset, static_cast<int>(0x40 + entries.size()), len);
      e.offset = offset;
      e.length = len;
      e.crc = crc32c::Value(seg.data() + offset, len);
      entries.push_back(e);
      end = offset + len;
    }
    const uint32_t used = EncodeSegment(seg.data(), fuzzing::kFuzzUuid, seq, entries, end);
    in.push_back(static_cast<char>((seq - 1) % kSegments));
    in.append(reinterpret_cast<const char*>(seg.data()), sizeof(SegmentHeaderDisk));
    const uint32_t body = used - kSegmentHeaderBytes;
    in.push_back(static_cast<char>(body & 0xFF));
    in.push_back(static_cast<char>(body >> 8));
    in.append(reinterpret_cast<const char*>(seg.data() + kSegmentHeaderBytes), body);
  }
  return in;
}

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  // One segment of three small pages (512, 512, 1024 bytes: each at a multiple of its length).
  seeds.push_back(InputOf(0, {{1, {512, 512, 1024}}}));
  // A segment without pages (a deadline flush), and one of a whole 4 KiB line.
  seeds.push_back(InputOf(1, {{2, {}}, {3, {4096}}}));
  // A second lap (seq 9 reuses position 0) beside first-lap segments, out of order.
  seeds.push_back(InputOf(1, {{9, {512}}, {2, {512, 2048}}, {8, {1024, 512}}}));
  return seeds;
}

}  // namespace
}  // namespace tmem::log

std::vector<std::string> TmemFuzzSeeds() { return tmem::log::Seeds(); }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tmem::SetMinLogLevel(tmem::LogLevel::kError);  // FormatLog's line
  tmem::log::R();
  tmem::fuzz::WriteSeedsIfAsked(TmemFuzzSeeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tmem::log::Run(data, size);
  return 0;
}
