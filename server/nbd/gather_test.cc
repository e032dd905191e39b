// When a connection's reader waits before reading the socket: only while reads bring several
// requests each, plus a rare probe.
#include "server/nbd/gather.h"

#include <gtest/gtest.h>

namespace tmem::nbd {
namespace {

TEST(GatherPolicyTest, AClientWithOneRequestAtATimeWaitsOnlyOnTheRareProbe) {
  GatherPolicy g;
  int waits = 0;
  for (int i = 0; i < 64 * 100; ++i) waits += g.BeforeRead(1);
  EXPECT_EQ(waits, 100) << "one wait per " << GatherPolicy::kProbeEvery << " reads";
}

TEST(GatherPolicyTest, ReadsBringingSeveralRequestsKeepTheReaderWaiting) {
  GatherPolicy g;
  EXPECT_FALSE(g.BeforeRead(1));
  // A client that pipelines: a few reads of several requests each start the waits...
  int first = -1;
  for (int i = 0; i < 10 && first < 0; ++i) {
    if (g.BeforeRead(8)) first = i;
  }
  ASSERT_GE(first, 0);
  EXPECT_LE(first, 1) << "two reads of 8 requests each should be enough";
  // ...and every read that keeps bringing them keeps them going.
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(g.BeforeRead(6)) << "read " << i;
  EXPECT_GE(g.average(), 5.0);
}

TEST(GatherPolicyTest, TheWaitsStopSoonAfterTheClientStopsPipelining) {
  GatherPolicy g;
  for (int i = 0; i < 50; ++i) g.BeforeRead(32);
  int waits = 0, reads = 0;
  while (g.BeforeRead(1)) {
    ++waits;
    ASSERT_LT(++reads, 20) << "still waiting after 20 reads of one request each";
  }
  EXPECT_LT(g.average(), GatherPolicy::kThreshold);
  // Two requests per read is not enough to wait for (below the threshold of three): only the
  // probes wait.
  int two = 0;
  for (int i = 0; i < 64 * 10; ++i) two += g.BeforeRead(2);
  EXPECT_EQ(two, 10);
}

TEST(GatherPolicyTest, AProbeThatFindsAPipeliningClientStartsTheWaits) {
  GatherPolicy g;
  int reads = 0;
  while (!g.BeforeRead(1)) ++reads;  // the probe
  EXPECT_EQ(reads, static_cast<int>(GatherPolicy::kProbeEvery) - 1);
  // The probe's wait let 16 requests gather: waiting goes on at once.
  EXPECT_TRUE(g.BeforeRead(16));
  EXPECT_TRUE(g.BeforeRead(16));
}

}  // namespace
}  // namespace tmem::nbd
