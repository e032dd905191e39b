#include "server/log/log_metadata.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>

#include "common/crc32c.h"
#include "common/status_testing.h"
#include "server/io/memory_device.h"

namespace tmem::log {
namespace {

constexpr uint32_t kSeg = 128 << 10;

// Rewrites the superblock with `segment_count` and a CRC that matches (what a bad or hostile
// device can hold: the CRC proves the block whole, not sane).
void SetSegmentCount(io::BlockDevice& dev, uint64_t segment_count) {
  io::AlignedBuffer block;
  ASSERT_OK(ReadBlock(&dev, kSuperblockOffset, &block));
  SuperblockDisk sb;
  std::memcpy(&sb, block.data(), sizeof(sb));
  sb.segment_count = segment_count;
  sb.crc = crc32c::Value(&sb, offsetof(SuperblockDisk, crc));
  std::memcpy(block.data(), &sb, sizeof(sb));
  ASSERT_OK(dev.Write(kSuperblockOffset, block.data(), kBlockBytes));
}

TEST(LogMetadataTest, ASegmentCountWhoseSizeWrapsAroundIsRefusedNotTakenToFit) {
  io::MemoryDevice dev(kDataOffset + 8 * kSeg, 512);
  ASSERT_OK(FormatLog(&dev, {.segment_bytes = kSeg}));
  auto g = ReadLogGeometry(&dev);
  ASSERT_OK(g);
  EXPECT_EQ(g->segment_count, 8u);
  // (2^47 + 8) * 128 KiB wraps to 1 MiB: as a product it "fits" this 2 MiB device.
  SetSegmentCount(dev, (uint64_t{1} << 47) + 8);
  g = ReadLogGeometry(&dev);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kFailedPrecondition) << g.status();
  EXPECT_NE(g.status().message().find("truncated"), std::string::npos) << g.status();
  // One segment more than the device holds is refused, exactly as many are taken.
  SetSegmentCount(dev, 9);
  EXPECT_EQ(ReadLogGeometry(&dev).status().code(), absl::StatusCode::kFailedPrecondition);
  SetSegmentCount(dev, 8);
  EXPECT_OK(ReadLogGeometry(&dev));
}

}  // namespace
}  // namespace tmem::log
