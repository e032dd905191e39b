#include "server/blockcache/migration_policy.h"

#include <gtest/gtest.h>

namespace tmem::blockcache {
namespace {

constexpr int64_t kMs = 1'000'000;

// A log of 64 segments with 8 unmigrated and written, a busy foreground, young dirty data.
MigrationInputs Busy() {
  MigrationInputs in;
  in.segment_count = 64;
  in.migrated_seq = 100;
  in.head_seq = 108;
  in.flushed_seq = 108;
  in.idle_ns = 1 * kMs;
  in.oldest_dirty_age_ns = 5 * kMs;
  in.dirty_lines = 100;
  in.capacity_lines = 64 * 255;
  in.tunables.migrate_idle_ms = 50;
  in.tunables.migrate_max_age_ms = 30'000;
  return in;
}

TEST(MigrationPolicyTest, ABusyCacheWithRoomAndYoungDataWaits) {
  MigrationDecision d = DecideMigration(Busy());
  EXPECT_FALSE(d.run);
  EXPECT_EQ(d.wait_ms, 10);  // half the idle time, at most 10 ms
}

TEST(MigrationPolicyTest, IdleForegroundRunsWriteBack) {
  MigrationInputs in = Busy();
  in.idle_ns = 50 * kMs;
  MigrationDecision d = DecideMigration(in);
  EXPECT_TRUE(d.run);
  EXPECT_FALSE(d.copy_forward);  // idle time always writes back
  in.idle_ns = 50 * kMs - 1;
  EXPECT_FALSE(DecideMigration(in).run);
}

TEST(MigrationPolicyTest, DirtyDataPastItsMaximumAgeRunsWhateverTheLoad) {
  MigrationInputs in = Busy();
  in.oldest_dirty_age_ns = 30'000 * kMs;
  EXPECT_TRUE(DecideMigration(in).run);
  in.tunables.migrate_max_age_ms = 0;  // no bound
  EXPECT_FALSE(DecideMigration(in).run);
}

TEST(MigrationPolicyTest, LowRoomWhileBusyCopiesForwardASmallDirtySet) {
  MigrationInputs in = Busy();
  in.head_seq = in.migrated_seq + 48;  // 48 + a quarter (16) >= 64
  MigrationDecision d = DecideMigration(in);
  EXPECT_TRUE(d.run);
  EXPECT_TRUE(d.copy_forward);
  in.dirty_lines = in.capacity_lines / 2;  // would fill half the log: write it back
  EXPECT_FALSE(DecideMigration(in).copy_forward);
  in.dirty_lines = 100;
  in.copy_forward_enabled = false;
  EXPECT_FALSE(DecideMigration(in).copy_forward);
  EXPECT_TRUE(DecideMigration(in).run);
}

TEST(MigrationPolicyTest, TheFreeSegmentsLowTunableSetsWhenRoomIsLow) {
  MigrationInputs in = Busy();
  in.head_seq = in.migrated_seq + 40;
  in.tunables.migrate_free_segments_low = 24;  // 40 + 24 >= 64
  EXPECT_TRUE(DecideMigration(in).run);
  in.tunables.migrate_free_segments_low = 23;
  EXPECT_FALSE(DecideMigration(in).run);
}

TEST(MigrationPolicyTest, NothingPendingNeverRunsUnlessKicked) {
  MigrationInputs in = Busy();
  in.flushed_seq = in.migrated_seq;
  in.idle_ns = 1000 * kMs;
  in.head_seq = in.migrated_seq + 60;
  MigrationDecision d = DecideMigration(in);
  EXPECT_FALSE(d.run);
  EXPECT_EQ(d.wait_ms, 10);
  in.kicked = true;
  EXPECT_TRUE(DecideMigration(in).run);
}

TEST(MigrationPolicyTest, HugeTimesNeitherOverflowNorFire) {
  MigrationInputs in = Busy();
  in.tunables.migrate_idle_ms = INT64_MAX / 2;
  in.tunables.migrate_max_age_ms = INT64_MAX / 2;
  in.idle_ns = INT64_MAX;
  in.oldest_dirty_age_ns = INT64_MAX;
  EXPECT_FALSE(DecideMigration(in).run);
  EXPECT_EQ(DecideMigration(in).wait_ms, 10);
}

TEST(MigrationPolicyTest, ShortIdleTimesPollMoreOften) {
  MigrationInputs in = Busy();
  in.tunables.migrate_idle_ms = 6;
  in.idle_ns = 0;
  EXPECT_EQ(DecideMigration(in).wait_ms, 3);
  in.tunables.migrate_idle_ms = 0;  // idle at once
  EXPECT_TRUE(DecideMigration(in).run);
}

}  // namespace
}  // namespace tmem::blockcache
