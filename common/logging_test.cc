#include "common/logging.h"

#include <gtest/gtest.h>

namespace tmem {
namespace {

TEST(LogRateLimiterTest, LetsOneLineThroughPerIntervalAndCountsTheRest) {
  ManualClock clock;
  LogRateLimiter limiter(/*interval_ms=*/1000, &clock);
  uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(&suppressed));
  EXPECT_EQ(suppressed, 0u);
  int allowed = 0;
  for (int i = 0; i < 1000; ++i) allowed += limiter.Allow(&suppressed);
  EXPECT_EQ(allowed, 0);
  clock.AdvanceMillis(999);
  EXPECT_FALSE(limiter.Allow(&suppressed));
  clock.AdvanceMillis(1);
  EXPECT_TRUE(limiter.Allow(&suppressed));
  EXPECT_EQ(suppressed, 1001u);
}

}  // namespace
}  // namespace tmem
