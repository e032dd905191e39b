#include "server/log/segment_scan.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "common/status_testing.h"
#include "server/io/memory_device.h"
#include "server/log/segment_codec.h"

namespace tmem::log {
namespace {

constexpr uint32_t kSeg = 128 << 10;

TEST(SegmentScanTest, NewestSegmentInEndsWhenTheLeaseEndsAtTheLastSequenceNumber) {
  io::MemoryDevice dev(kDataOffset + 8 * kSeg, 512);
  ASSERT_OK(FormatLog(&dev, {.segment_bytes = kSeg}));
  auto g = ReadLogGeometry(&dev);
  ASSERT_OK(g);
  // A checkpoint's head and lease are the device's word: a lease at 2^64 - 1 once made the loop
  // `seq <= after + count` run forever (seq wrapped to 0 past the end).
  auto newest = NewestSegmentIn(&dev, *g, UINT64_MAX - 2, UINT64_MAX);
  ASSERT_OK(newest);
  EXPECT_EQ(*newest, UINT64_MAX - 2) << "no segment was written";
  // A segment with the last sequence number, at its position, is found.
  io::AlignedBuffer seg(kSeg, kBlockBytes);
  const uint32_t used =
      EncodeSegment(seg.data(), g->device_uuid, UINT64_MAX, std::vector<SlotEntryDisk>{}, kSegmentHeaderBytes);
  const uint64_t pos = (UINT64_MAX - 1) % g->segment_count;
  ASSERT_OK(dev.Write(kDataOffset + pos * kSeg, seg.data(), used));
  newest = NewestSegmentIn(&dev, *g, UINT64_MAX - 2, UINT64_MAX);
  ASSERT_OK(newest);
  EXPECT_EQ(*newest, UINT64_MAX);
}

}  // namespace
}  // namespace tmem::log
