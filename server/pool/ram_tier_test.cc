// The DRAM tier (location_cache.h) inside the engine: hot pages served from RAM, and every
// coherency rule of the page pools across both tiers.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "common/stats_testing.h"
#include "server/pool/pool_engine.h"
#include "server/pool/pool_test_util.h"

namespace tmem::pool {
namespace {

using testing::EngineHarness;
using testing::MakePage;
using testing::VersionOf;

constexpr std::string_view kObj = "inode-9";

double Stat(PoolEngine& e, const std::string& key) {
  MapVisitor v;
  e.VisitStats(v);
  return v.values[key];
}
double RamHits(PoolEngine& e) { return Stat(e, "ram_tier_hits"); }

void Put(PoolEngine& e, PoolId p, std::string_view obj, uint64_t idx, uint64_t version) {
  ASSERT_TRUE(e.Put(p, obj, idx, MakePage(4096, p, obj, idx, version)).ok());
}

// The version got, -1 on a miss, -2 for bytes that are not an intact page of this handle.
int64_t GetVersion(PoolEngine& e, PoolId p, std::string_view obj, uint64_t idx) {
  std::vector<uint8_t> out(4096, 0xEE);
  auto r = e.Get(p, obj, idx, out);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok() || *r == GetOutcome::kMiss) return -1;
  const int64_t v = VersionOf(out, p, obj, idx);
  return v < 0 ? -2 : v;
}

Uuid U(uint8_t b) {
  Uuid u{};
  u.fill(b);
  return u;
}

TEST(RamTierTest, AHotPageIsServedFromRamAndTheNewestVersionWins) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(1), 4096);
  Put(e, p, kObj, 0, 1);
  Put(e, p, kObj, 0, 2);  // put-put-get: the RAM copy of version 1 must not survive
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  const double before = RamHits(e);
  EXPECT_EQ(GetVersion(e, p, kObj, 0), 2);
  EXPECT_EQ(GetVersion(e, p, kObj, 0), 2);
  EXPECT_EQ(RamHits(e) - before, 2) << "both gets are served from RAM";
  // A batch too.
  std::vector<uint8_t> a(4096), b(4096);
  std::vector<PoolEngine::PageGet> gets = {{kObj, 0, a}, {kObj, 1, b}};
  auto r = e.GetMany(p, gets);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0], GetOutcome::kHit);
  EXPECT_EQ((*r)[1], GetOutcome::kMiss);
  EXPECT_EQ(VersionOf(a, p, kObj, 0), 2);
  EXPECT_EQ(RamHits(e) - before, 3);
}

TEST(RamTierTest, FlushesOfAPageOnlyInRamAreNeverUndoneAlsoAcrossACleanRestart) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(2), 4096);
  // Still in the log's write buffer and in RAM: nothing of them has reached the device.
  for (uint64_t i = 0; i < 6; ++i) Put(e, p, i < 4 ? kObj : "other", i, 1);
  ASSERT_TRUE(e.FlushPage(p, kObj, 0).ok());
  ASSERT_TRUE(e.FlushObject(p, "other").ok());
  EXPECT_EQ(GetVersion(e, p, kObj, 0), -1);
  EXPECT_EQ(GetVersion(e, p, "other", 4), -1);
  EXPECT_EQ(GetVersion(e, p, "other", 5), -1);
  EXPECT_EQ(GetVersion(e, p, kObj, 1), 1);
  ASSERT_TRUE(e.FlushPool(p).ok());
  for (uint64_t i = 1; i < 4; ++i) EXPECT_EQ(GetVersion(e, p, kObj, i), -1);
  // A page put after the flushes is served; the flushed ones stay gone after a clean restart.
  Put(e, p, kObj, 3, 2);
  PoolEngine& again = h.ReopenClean();
  EXPECT_EQ(GetVersion(again, p, kObj, 0), -1);
  EXPECT_EQ(GetVersion(again, p, kObj, 1), -1);
  EXPECT_EQ(GetVersion(again, p, kObj, 3), 2) << "a clean restart keeps the log's pages (RAM starts empty)";
}

TEST(RamTierTest, AnExclusiveGetFromRamRemovesThePageFromBothTiers) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreatePool(4096);
  Put(e, p, kObj, 0, 7);
  const double before = RamHits(e);
  EXPECT_EQ(GetVersion(e, p, kObj, 0), 7);
  EXPECT_EQ(RamHits(e) - before, 1);
  EXPECT_EQ(GetVersion(e, p, kObj, 0), -1) << "a private pool's hit removes the page";
  // Not from the log either, after a restart.
  PoolEngine& again = h.ReopenClean();
  EXPECT_EQ(GetVersion(again, p, kObj, 0), -1);
  // A handle named twice in one batch hits once.
  Put(again, p, kObj, 1, 1);
  std::vector<uint8_t> a(4096), b(4096);
  std::vector<PoolEngine::PageGet> gets = {{kObj, 1, a}, {kObj, 1, b}};
  auto r = again.GetMany(p, gets);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0], GetOutcome::kHit);
  EXPECT_EQ((*r)[1], GetOutcome::kMiss);
}

TEST(RamTierTest, ADeviceReadOfASharedPagePromotesItAndTheTierStaysWithinItsBytes) {
  EngineHarness h(64, 128 << 10);                                            // 8 MiB of log
  h.set_customize([](EngineOptions& o) { o.ram_cache_bytes = 64 * 4096; });  // 1 page per shard
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(3), 4096);
  for (uint64_t i = 0; i < 1000; ++i) Put(e, p, kObj, i, 1);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  EXPECT_LE(Stat(e, "ram_tier_bytes"), 64 * 4096);
  EXPECT_GT(Stat(e, "ram_tier_evictions"), 0);
  // Every page is still there, from the log; the one read is then served from RAM.
  for (uint64_t i = 0; i < 1000; ++i) ASSERT_EQ(GetVersion(e, p, kObj, i), 1) << i;
  double before = RamHits(e);
  EXPECT_EQ(GetVersion(e, p, kObj, 999), 1);
  EXPECT_EQ(RamHits(e) - before, 1) << "the last page read was promoted";
  EXPECT_LE(Stat(e, "ram_tier_bytes"), 64 * 4096);
}

TEST(RamTierTest, APageWhoseLogSegmentWasReclaimedIsNotServedFromRam) {
  EngineHarness h(16, 128 << 10);  // 2 MiB of log: 512 pages
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(4), 4096);
  Put(e, p, kObj, 0, 1);
  // Write the log round more than once: page 0's segment is reclaimed.
  for (uint64_t i = 1; i < 2000; ++i) Put(e, p, "flood", i, 1);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  EXPECT_EQ(GetVersion(e, p, kObj, 0), -1) << "the DRAM tier holds a subset of the log";
}

TEST(RamTierTest, APutRacingGetsOfTheSameHandleNeverShowsAnOlderOrTornPage) {
  EngineHarness h(64, 128 << 10);
  PoolEngine& e = h.Open();
  for (const bool shared : {true, false}) {
    PoolId p = shared ? *e.CreateSharedPool(U(5), 4096) : *e.CreatePool(4096);
    std::atomic<int64_t> put_done{0};  // the newest version whose put returned
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0}, older{0}, hits{0};
    std::thread getter([&] {
      while (!stop.load()) {
        const int64_t floor = put_done.load();
        const int64_t v = GetVersion(e, p, kObj, 0);
        if (v == -2) ++bad;
        if (v >= 0) {
          ++hits;
          // put-put-get: once version n's put returned, no get that starts later sees less.
          if (v < floor) ++older;
        }
      }
    });
    // At least 3000 versions, and on until the getter has seen some hits (a loaded machine may
    // not schedule it early).
    for (int64_t v = 1; v <= 3000 || (hits.load() < 20 && v <= 300000); ++v) {
      Put(e, p, kObj, 0, static_cast<uint64_t>(v));
      put_done.store(v);
    }
    stop = true;
    getter.join();
    EXPECT_EQ(bad.load(), 0) << (shared ? "shared" : "private");
    EXPECT_EQ(older.load(), 0) << (shared ? "shared" : "private");
    EXPECT_GT(hits.load(), 0);
  }
}

}  // namespace
}  // namespace tmem::pool
