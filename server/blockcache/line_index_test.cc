#include "server/blockcache/line_index.h"

#include <gtest/gtest.h>

namespace tmem::blockcache {
namespace {

TEST(LineIndexTest, PublishCountsCachedAndDirtyLinesAndNotesTheirSegment) {
  ManualClock clock;
  LineIndex index(&clock);
  log::Location locs[3] = {{5, 4096}, {5, 8192}, {5, 12288}};
  uint32_t crcs[3] = {1, 2, 3};
  LineIndex::Stripe& s = index.StripeOf(100);
  {
    MutexLock lock(&s.write_mu);
    index.Publish(s, 100, 3, locs, crcs, 0xFF);
  }
  EXPECT_EQ(index.cached_lines(), 3u);
  EXPECT_EQ(index.dirty_lines(), 3u);
  auto e = index.Lookup(101);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->seq, 5u);
  EXPECT_EQ(e->offset, 8192u);
  EXPECT_EQ(e->crc, 2u);
  auto noted = index.NextNoted(1);
  ASSERT_TRUE(noted.has_value());
  EXPECT_EQ(noted->seq, 5u);
  EXPECT_EQ(noted->lines, (std::vector<uint64_t>{100, 101, 102}));
  EXPECT_FALSE(index.NextNoted(6).has_value());
}

TEST(LineIndexTest, MarkCleanOnlyCleansTheVersionThatWasWrittenBack) {
  ManualClock clock;
  LineIndex index(&clock);
  LineIndex::Stripe& s = index.StripeOf(7);
  log::Location first{3, 4096}, second{4, 4096};
  uint32_t crc = 9;
  {
    MutexLock lock(&s.write_mu);
    index.Publish(s, 7, 1, &first, &crc, 0x01);
  }
  const LineEntry written_back = *index.Lookup(7);
  {
    MutexLock lock(&s.write_mu);
    index.Publish(s, 7, 1, &second, &crc, 0x03);  // a newer write while migration ran
  }
  EXPECT_FALSE(index.MarkClean(7, written_back)) << "a newer version was marked clean";
  EXPECT_EQ(index.dirty_lines(), 1u);
  EXPECT_TRUE(index.MarkClean(7, *index.Lookup(7)));
  EXPECT_EQ(index.dirty_lines(), 0u);
  EXPECT_EQ(index.cached_lines(), 1u);
  EXPECT_FALSE(index.MarkClean(7, *index.Lookup(7))) << "cleaned twice";
}

TEST(LineIndexTest, ACleanLineNeverReplacesAWrite) {
  ManualClock clock;
  LineIndex index(&clock);
  LineIndex::Stripe& s = index.StripeOf(1);
  log::Location loc{2, 4096};
  uint32_t crc = 5;
  MutexLock lock(&s.write_mu);
  index.Publish(s, 1, 1, &loc, &crc, 0xFF);
  EXPECT_FALSE(index.AddClean(s, 1, LineEntry{3, 8192, 6, 0}));
  EXPECT_EQ(index.Lookup(1)->seq, 2u);
  EXPECT_TRUE(index.AddClean(s, 2, LineEntry{3, 8192, 6, 0}));
  EXPECT_EQ(index.cached_lines(), 2u);
  EXPECT_EQ(index.dirty_lines(), 1u);
}

TEST(LineIndexTest, DirtyAgeStartsAtASegmentsFirstLineAndEndsWhenMigrationPassesIt) {
  ManualClock clock;
  LineIndex index(&clock);
  EXPECT_EQ(index.OldestDirtyAgeNs(), 0);
  LineIndex::Stripe& s = index.StripeOf(0);
  log::Location a{10, 4096}, b{11, 4096};
  uint32_t crc = 0;
  {
    MutexLock lock(&s.write_mu);
    index.Publish(s, 0, 1, &a, &crc, 0xFF);
  }
  clock.AdvanceMillis(30);
  {
    MutexLock lock(&s.write_mu);
    index.Publish(s, 0, 1, &b, &crc, 0xFF);
  }
  clock.AdvanceMillis(20);
  EXPECT_EQ(index.OldestDirtyAgeNs(), 50'000'000);
  index.ForgetUpTo(10);
  EXPECT_EQ(index.OldestDirtyAgeNs(), 20'000'000);
  index.ForgetUpTo(11);
  EXPECT_EQ(index.OldestDirtyAgeNs(), 0);
}

TEST(LineIndexTest, RecoveryRebuildsTheNewestVersionAndRecounts) {
  ManualClock clock;
  LineIndex index(&clock);
  index.Recover(4, LineEntry{1, 4096, 1, 0xFF});
  index.Recover(4, LineEntry{2, 4096, 2, 0x0F});
  index.Recover(5, LineEntry{2, 8192, 3, 0});
  index.Recount();
  EXPECT_EQ(index.cached_lines(), 2u);
  EXPECT_EQ(index.dirty_lines(), 1u);
  EXPECT_EQ(index.Lookup(4)->seq, 2u);
  EXPECT_EQ(index.Lookup(4)->dirty, 0x0F);
}

TEST(LineIndexTest, LargeRunsShareAStripe) {
  EXPECT_EQ(LineIndex::StripeIndex(0), LineIndex::StripeIndex(LineIndex::kStripeLines - 1));
  size_t distinct = 0;
  std::vector<bool> seen(LineIndex::kStripes, false);
  for (uint64_t run = 0; run < 1024; ++run) {
    const size_t i = LineIndex::StripeIndex(run * LineIndex::kStripeLines);
    ASSERT_LT(i, LineIndex::kStripes);
    if (!seen[i]) ++distinct;
    seen[i] = true;
  }
  EXPECT_EQ(distinct, LineIndex::kStripes) << "runs do not spread over every stripe";
}

}  // namespace
}  // namespace tmem::blockcache
