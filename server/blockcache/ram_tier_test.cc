#include "server/blockcache/ram_tier.h"

#include <array>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tmem::blockcache {
namespace {

constexpr uint32_t kSlot = 4096;

// Contents that name their own key, so that a lookup returning another entry's bytes shows.
std::array<uint8_t, kSlot> Pattern(uint64_t seq, uint32_t offset) {
  std::array<uint8_t, kSlot> a;
  for (uint32_t i = 0; i < kSlot; i += 16) {
    std::memcpy(a.data() + i, &seq, 8);
    std::memcpy(a.data() + i + 8, &offset, 4);
    std::memcpy(a.data() + i + 12, &i, 4);
  }
  return a;
}

TEST(RamTierTest, ReturnsExactlyTheVersionAtALocation) {
  RamTier t(1 << 20, kSlot);
  ASSERT_TRUE(t.enabled());
  auto a = Pattern(5, 8192), b = Pattern(6, 8192);
  t.Insert(5, 8192, a.data());
  t.Insert(6, 8192, b.data());
  std::array<uint8_t, kSlot> out{};
  ASSERT_TRUE(t.Lookup(5, 8192, out.data()));
  EXPECT_EQ(out, a);
  ASSERT_TRUE(t.Lookup(6, 8192, out.data()));
  EXPECT_EQ(out, b);
  EXPECT_FALSE(t.Lookup(5, 4096, out.data())) << "another offset of the same segment";
  EXPECT_FALSE(t.Lookup(7, 8192, out.data())) << "the same offset of another segment";
  EXPECT_EQ(t.hits(), 2u);
  EXPECT_EQ(t.misses(), 2u);
  EXPECT_EQ(t.used_bytes(), 2u * kSlot);
}

TEST(RamTierTest, ZeroCapacityHoldsNothing) {
  RamTier t(0, kSlot);
  EXPECT_FALSE(t.enabled());
  auto a = Pattern(1, 0);
  t.Insert(1, 0, a.data());
  std::array<uint8_t, kSlot> out{};
  EXPECT_FALSE(t.Lookup(1, 0, out.data()));
  EXPECT_EQ(t.used_bytes(), 0u);
}

TEST(RamTierTest, StaysWithinItsCapacityAndKeepsTheNewest) {
  RamTier t(64 * kSlot, kSlot);  // one shard of 64 slots
  ASSERT_EQ(t.capacity_bytes(), 64u * kSlot);
  for (uint64_t seq = 1; seq <= 1000; ++seq) {
    auto a = Pattern(seq, 0);
    t.Insert(seq, 0, a.data());
    ASSERT_LE(t.used_bytes(), t.capacity_bytes());
  }
  EXPECT_EQ(t.used_bytes(), t.capacity_bytes());
  EXPECT_EQ(t.evictions(), 1000u - 64u);
  std::array<uint8_t, kSlot> out{};
  for (uint64_t seq = 1000 - 63; seq <= 1000; ++seq) {
    ASSERT_TRUE(t.Lookup(seq, 0, out.data())) << seq;
    EXPECT_EQ(out, Pattern(seq, 0));
  }
  EXPECT_FALSE(t.Lookup(1, 0, out.data()));
}

TEST(RamTierTest, AnEntryReadSinceTheHandPassedSurvivesOneMoreRound) {
  RamTier t(64 * kSlot, kSlot);
  for (uint64_t seq = 1; seq <= 64; ++seq) {
    auto a = Pattern(seq, 0);
    t.Insert(seq, 0, a.data());
  }
  std::array<uint8_t, kSlot> out{};
  ASSERT_TRUE(t.Lookup(1, 0, out.data()));  // the oldest is read: second chance
  auto n = Pattern(100, 0);
  t.Insert(100, 0, n.data());
  EXPECT_TRUE(t.Lookup(1, 0, out.data())) << "a referenced entry was evicted before unreferenced ones";
  EXPECT_FALSE(t.Lookup(2, 0, out.data())) << "the oldest unreferenced entry should have gone";
  EXPECT_TRUE(t.Lookup(100, 0, out.data()));
}

TEST(RamTierTest, ConcurrentInsertsAndLookupsNeverMixEntries) {
  RamTier t(256 * kSlot, kSlot);
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  std::atomic<uint64_t> found{0};
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      std::array<uint8_t, kSlot> out;
      for (uint64_t i = 0; i < 20000; ++i) {
        const uint64_t seq = (i * 7 + static_cast<uint64_t>(w)) % 600;
        const uint32_t off = static_cast<uint32_t>(i % 3) * kSlot;
        if (i % 2 == 0) {
          auto a = Pattern(seq, off);
          t.Insert(seq, off, a.data());
        }
        // Right after its own insert (even i) a thread nearly always finds the entry; at odd i it
        // finds whatever other threads left. Either way the bytes must be that key's.
        if (t.Lookup(seq, off, out.data())) {
          found.fetch_add(1);
          if (out != Pattern(seq, off)) wrong.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(found.load(), 0u);
  EXPECT_LE(t.used_bytes(), t.capacity_bytes());
}

}  // namespace
}  // namespace tmem::blockcache
