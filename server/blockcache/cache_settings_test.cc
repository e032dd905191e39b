#include "server/blockcache/cache_settings.h"

#include <gtest/gtest.h>

#include <cstdint>

#include "common/status_testing.h"

namespace tmem::blockcache {
namespace {

// Each tunable, just below and just above its range, is refused naming itself; in range is fine.
TEST(CacheSettingsTest, EveryTunableIsCheckedAgainstItsRangeBelowAndAbove) {
  const auto& table = TunableSettings();
  ASSERT_EQ(table.settings().size(), 5u);
  for (const auto& s : table.settings()) {
    SCOPED_TRACE(s.key);
    Tunables t;
    ASSERT_OK(ValidateTunables(t));
    for (const std::string& bad : {std::to_string(s.min - 1), std::to_string(s.max + 1)}) {
      Tunables copy = t;
      absl::Status st = s.set(copy, bad);
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << bad;
    }
    ASSERT_OK(s.set(t, std::to_string(s.max)));
    ASSERT_OK(ValidateTunables(t));
  }
  Tunables t;
  t.migrate_idle_ms = int64_t{1} << 62;  // overflowed the migrator's nanoseconds once
  absl::Status st = ValidateTunables(t);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("migrate_idle_ms"), std::string::npos) << st;
  EXPECT_NE(st.message().find("0..86400000"), std::string::npos) << st;
  t = Tunables{};
  t.migrate_batch_segments = 0;
  EXPECT_NE(ValidateTunables(t).message().find("migrate_batch_segments"), std::string::npos);
}

TEST(CacheSettingsTest, CacheSettingsIncludeTheTunablesAndTheBufferDeadlineInMilliseconds) {
  const auto& table = CacheSettings();
  for (const auto& s : TunableSettings().settings()) EXPECT_NE(table.Find(s.key), nullptr) << s.key;
  const auto* deadline = table.Find("buffer_deadline_ms");
  ASSERT_NE(deadline, nullptr);
  BlockCacheOptions o;
  ASSERT_OK(deadline->set(o, "7"));
  EXPECT_EQ(o.log.flush_deadline_ns, 7'000'000);
  EXPECT_EQ(deadline->show(o), "7");
  EXPECT_FALSE(deadline->set(o, "0").ok());
  const auto* ram = table.Find("ram_cache");
  ASSERT_NE(ram, nullptr);
  ASSERT_OK(ram->set(o, "1G"));
  EXPECT_EQ(o.ram_cache_bytes, uint64_t{1} << 30);
  EXPECT_EQ(ram->show(o), "1G");
  ASSERT_OK(table.Find("migrate_idle_ms")->set(o, "123"));
  EXPECT_EQ(o.tunables.migrate_idle_ms, 123);
}

}  // namespace
}  // namespace tmem::blockcache
