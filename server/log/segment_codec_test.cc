#include "server/log/segment_codec.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "server/io/block_device.h"

namespace tmem::log {
namespace {

constexpr uint32_t kSegment = 128 << 10;

LogGeometry Geometry() {
  LogGeometry g;
  for (int i = 0; i < 16; ++i) g.device_uuid[i] = static_cast<uint8_t>(i + 1);
  g.segment_bytes = kSegment;
  g.segment_count = 16;
  return g;
}

TEST(SegmentCodecTest, WhatTheFlusherEncodesTheScanDecodesAndAnyTamperingIsRefused) {
  const LogGeometry g = Geometry();
  io::AlignedBuffer seg(kSegment, kBlockBytes);
  std::memset(seg.data(), 0xEE, kSegment);  // what the buffer held before: must not leak
  std::vector<SlotEntryDisk> entries(3);
  uint32_t end = kSegmentHeaderBytes;
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].key[0] = static_cast<uint8_t>(i);
    entries[i].offset = end;
    entries[i].length = 4096;
    entries[i].crc = 100 + static_cast<uint32_t>(i);
    end += 4096;
  }
  const uint64_t seq = 21;  // position (21 - 1) % 16 = 4
  const uint32_t used = EncodeSegment(seg.data(), g.device_uuid, seq, entries, end);
  EXPECT_EQ(used, SegmentUsedBytes(end, entries.size()));
  EXPECT_EQ(used % kBlockBytes, 0u);
  EXPECT_EQ(HeaderSeqAt(seg.data(), g, 4), seq);
  EXPECT_EQ(HeaderSeqAt(seg.data(), g, 5), 0u) << "a header at the wrong position";
  auto decoded = DecodeSegment(seg.data(), kSegment, seq);
  ASSERT_TRUE(decoded.has_value());
  ASSERT_EQ(decoded->size(), 3u);
  EXPECT_EQ((*decoded)[2].crc, 102u);
  EXPECT_EQ((*decoded)[1].offset, kSegmentHeaderBytes + 4096);
  EXPECT_FALSE(DecodeSegment(seg.data(), kSegment, seq + 16).has_value()) << "another lap's number";
  seg.data()[end + 3] ^= 1;  // the slot table
  EXPECT_FALSE(DecodeSegment(seg.data(), kSegment, seq).has_value());
  seg.data()[end + 3] ^= 1;
  seg.data()[30] ^= 1;  // the header
  EXPECT_EQ(HeaderSeqAt(seg.data(), g, 4), 0u);
  EXPECT_FALSE(DecodeSegment(seg.data(), kSegment, seq).has_value());
  LogGeometry other = g;
  other.device_uuid[0] ^= 1;
  seg.data()[30] ^= 1;
  EXPECT_EQ(HeaderSeqAt(seg.data(), other, 4), 0u) << "another device's segment";
}

TEST(SegmentCodecTest, ASegmentWithoutPagesEncodesAndDecodes) {
  // An empty span (data() is null): EncodeSegment once passed that null to memcpy, which
  // UBSan reports (segment_fuzzer re-encodes every segment it decodes, empty ones too).
  const LogGeometry g = Geometry();
  io::AlignedBuffer seg(kSegment, kBlockBytes);
  const uint32_t used =
      EncodeSegment(seg.data(), g.device_uuid, 3, std::span<const SlotEntryDisk>(), kSegmentHeaderBytes);
  EXPECT_EQ(used, kBlockBytes);
  EXPECT_EQ(HeaderSeqAt(seg.data(), g, 2), 3u);
  auto decoded = DecodeSegment(seg.data(), kSegment, 3);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_TRUE(decoded->empty());
}

}  // namespace
}  // namespace tmem::log
