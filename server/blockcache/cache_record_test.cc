#include "server/blockcache/cache_record.h"

#include <gtest/gtest.h>

#include <cstring>

#include "common/status_testing.h"
#include "server/io/memory_device.h"
#include "server/log/log_format.h"

namespace tmem::blockcache {
namespace {

constexpr uint64_t kDeviceBytes = 8 << 20;
constexpr uint64_t kStore = 1 << 20;

log::LogGeometry FormatLog(io::MemoryDevice& dev) {
  EXPECT_OK(log::FormatLog(&dev, {.segment_bytes = 128 << 10, .force = true}));
  auto g = log::ReadLogGeometry(&dev);
  EXPECT_TRUE(g.ok()) << g.status();
  return *g;
}

TEST(CacheRecordTest, AZeroFilledDeviceIsFresh) {
  io::MemoryDevice dev(kDeviceBytes, 512);
  auto state = InspectCacheDevice(&dev, kStore, "store", /*format=*/false);
  ASSERT_OK(state);
  EXPECT_TRUE(state->fresh);
  EXPECT_FALSE(state->record.has_value());
}

TEST(CacheRecordTest, ForeignDataIsRefusedUnlessFormatting) {
  io::MemoryDevice dev(kDeviceBytes, 512);
  io::AlignedBuffer junk(4096, 4096);
  std::memset(junk.data(), 0xAB, 4096);
  ASSERT_OK(dev.Write(0, junk.data(), 4096));
  auto state = InspectCacheDevice(&dev, kStore, "store", false);
  EXPECT_EQ(state.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(state.status().message().find("--format"), std::string::npos) << state.status();
  state = InspectCacheDevice(&dev, kStore, "store", true);
  ASSERT_OK(state);
  EXPECT_TRUE(state->fresh);
}

TEST(CacheRecordTest, ALogWithoutARecordIsAPagePoolDeviceAndRefused) {
  io::MemoryDevice dev(kDeviceBytes, 512);
  FormatLog(dev);
  auto state = InspectCacheDevice(&dev, kStore, "store", false);
  EXPECT_EQ(state.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(state.status().message().find("page pool"), std::string::npos) << state.status();
}

TEST(CacheRecordTest, TheNewestRecordWinsAndACacheOfAnotherStoreIsNeverFormattedOver) {
  io::MemoryDevice dev(kDeviceBytes, 512);
  const log::LogGeometry g = FormatLog(dev);
  CacheRecordWriter w(&dev, g, kStore, 0);
  ASSERT_OK(w.Write(0));
  ASSERT_OK(w.Write(7));
  ASSERT_OK(w.Write(9));
  EXPECT_EQ(w.generation(), 3u);
  auto state = InspectCacheDevice(&dev, kStore, "store", false);
  ASSERT_OK(state);
  EXPECT_FALSE(state->fresh);
  ASSERT_TRUE(state->record.has_value());
  EXPECT_EQ(state->record->migrated_seq, 9u);
  EXPECT_EQ(state->record->generation, 3u);
  // A torn newest record (its slot corrupted): the previous one is still there.
  io::AlignedBuffer block(log::kBlockBytes, log::kBlockBytes);
  ASSERT_OK(dev.Read(log::kOwnerRecordOffset[3 % 2], block.data(), log::kBlockBytes));
  block.data()[20] ^= 1;
  ASSERT_OK(dev.Write(log::kOwnerRecordOffset[3 % 2], block.data(), log::kBlockBytes));
  state = InspectCacheDevice(&dev, kStore, "store", false);
  ASSERT_OK(state);
  EXPECT_EQ(state->record->migrated_seq, 7u);
  // Another store's size: refused even with format (it may hold that store's dirty data).
  state = InspectCacheDevice(&dev, 2 * kStore, "bigger store", true);
  EXPECT_EQ(state.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(state.status().message().find("bigger store"), std::string::npos) << state.status();
}

}  // namespace
}  // namespace tmem::blockcache
