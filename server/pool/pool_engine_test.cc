#include "server/pool/pool_engine.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include "common/stats_testing.h"
#include "server/io/file_device.h"
#include "server/log/log_format.h"
#include "server/pool/index_codec.h"
#include "server/pool/pool_format.h"
#include "server/pool/pool_test_util.h"

namespace tmem::pool {
namespace {

using testing::EngineHarness;
using testing::MakePage;
using testing::VersionOf;

constexpr std::string_view kObj = "inode-1";

GetOutcome Get(PoolEngine& e, PoolId p, std::string_view obj, uint64_t idx, std::vector<uint8_t>* out,
               uint32_t page_bytes = 4096) {
  out->assign(page_bytes, 0xEE);
  auto r = e.Get(p, obj, idx, *out);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : GetOutcome::kMiss;
}

void Put(PoolEngine& e, PoolId p, std::string_view obj, uint64_t idx, uint64_t version, uint32_t page_bytes = 4096) {
  auto page = MakePage(page_bytes, p, obj, idx, version);
  absl::Status s = e.Put(p, obj, idx, page);
  ASSERT_TRUE(s.ok()) << s;
}

Uuid U(uint8_t b) {
  Uuid u{};
  u.fill(b);
  return u;
}

// --- Pools ---------------------------------------------------------------------------------

// StartGets and FinishGets around device reads done elsewhere give what GetMany gives; a batch
// finished after the engine closed misses, touching neither index nor cache.
TEST(PoolEngineTest, GetsFinishedApartFromTheirLookupAnswerAsGetManyDoes) {
  EngineHarness h;
  h.set_customize([](EngineOptions& o) { o.ram_cache_bytes = 0; });
  PoolEngine& e = h.Open();
  auto id = e.CreateSharedPool(Uuid{3}, 4096, "alpha");
  ASSERT_TRUE(id.ok());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(e.Put(*id, "obj", i, MakePage(4096, *id, "obj", i, 1)).ok());
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  std::vector<std::vector<uint8_t>> outs(5, std::vector<uint8_t>(4096));
  std::vector<PoolEngine::PageGet> gets;
  for (uint64_t i = 0; i < 5; ++i) gets.push_back({"obj", i, outs[i]});  // index 4: never put
  auto finish_apart = [&](PoolEngine& engine, PoolEngine::GetBatch& batch, bool close_first) {
    EXPECT_TRUE(engine.StartGets(*id, gets, nullptr, &batch).ok());
    EXPECT_EQ(batch.device_reads().size(), 4u);
    std::unique_ptr<io::ReadQueue> q = engine.NewReadQueue();
    EXPECT_NE(q, nullptr);
    q->Submit(batch.device_reads(), 1);
    q.reset();  // waits for the reads
    if (close_first) EXPECT_TRUE(engine.Close().ok());
    engine.FinishGets(&batch);
  };
  PoolEngine::GetBatch batch;
  finish_apart(e, batch, false);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(batch.outcomes()[i], GetOutcome::kHit) << i;
    EXPECT_EQ(VersionOf(outs[i], *id, "obj", i), 1) << i;
  }
  EXPECT_EQ(batch.outcomes()[4], GetOutcome::kMiss);
  finish_apart(e, batch, true);  // the same batch reused, finished after Close
  for (uint64_t i = 0; i < 5; ++i) EXPECT_EQ(batch.outcomes()[i], GetOutcome::kMiss) << i;
}

TEST(PoolEngineTest, CreatePoolReturnsANewPrivatePoolEachTime) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  auto a = e.CreatePool(4096), b = e.CreatePool(4096);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(e.GetPoolInfo(*a)->kind, PoolKind::kPrivate);
}

TEST(PoolEngineTest, SharedPoolIdIsTheSameForTheSameUuidWithinATenant) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId a = *e.CreateSharedPool(U(1), 4096, "t1");
  EXPECT_EQ(*e.CreateSharedPool(U(1), 4096, "t1"), a);
  EXPECT_NE(*e.CreateSharedPool(U(1), 4096, "t2"), a) << "another tenant gets its own pool";
  EXPECT_NE(*e.CreateSharedPool(U(2), 4096, "t1"), a);
  auto wrong = e.CreateSharedPool(U(1), 8192, "t1");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument) << wrong.status();
  // The mapping is durable across clean and unclean restarts.
  PoolEngine& e2 = h.ReopenClean();
  EXPECT_EQ(*e2.CreateSharedPool(U(1), 4096, "t1"), a);
  PoolEngine& e3 = h.ReopenAfterPowerCut(false, 1);
  EXPECT_EQ(*e3.CreateSharedPool(U(1), 4096, "t1"), a);
}

TEST(PoolEngineTest, AnotherOwnersPoolIsNotFoundExactlyAsAPoolThatDoesNotExist) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId a = *e.CreatePool(4096, "alice");
  PoolId shared = *e.CreateSharedPool(U(1), 4096, "alice");
  PoolId b = *e.CreateSharedPool(U(1), 4096, "bob");
  EXPECT_NE(b, shared) << "shared pools are keyed by (owner, uuid)";
  EXPECT_TRUE(e.OwnedPool(a, "alice").ok());
  auto other = e.OwnedPool(a, "bob");
  auto none = e.OwnedPool(9999, "bob");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(other.status().message()), absl::StrCat("pool ", a, " does not exist"))
      << "the same words as for an id that does not exist";
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e.ListPools("alice").size(), 2u);
  ASSERT_EQ(e.ListPools("bob").size(), 1u);
  EXPECT_EQ(e.ListPools("bob")[0].id, b);
  EXPECT_EQ(e.ListPools().size(), 3u);
  EXPECT_EQ(e.CreatePool(4096, "").status().code(), absl::StatusCode::kInvalidArgument) << "every pool has an owner";
  // Owners are durable.
  PoolEngine& e2 = h.ReopenClean();
  EXPECT_EQ(e2.GetPoolInfo(a)->tenant, "alice");
  EXPECT_EQ(e2.OwnedPool(b, "alice").status().code(), absl::StatusCode::kNotFound);
}

TEST(PoolEngineTest, AnOwnersPoolQuotaIsEnforcedAndFreedByDestroy) {
  EngineHarness h;
  EngineOptions o = h.Options();
  o.quota_of = [](std::string_view owner) {
    return EngineOptions::OwnerQuota{.max_pools = owner == "bob" ? 2u : 100u};
  };
  auto opened = PoolEngine::Open(o);
  ASSERT_TRUE(opened.ok());
  PoolEngine& e = **opened;
  PoolId b1 = *e.CreatePool(4096, "bob");
  ASSERT_TRUE(e.CreateSharedPool(U(1), 4096, "bob").ok());
  auto third = e.CreatePool(4096, "bob");
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("quota of 2 pools"), std::string::npos) << third.status();
  EXPECT_TRUE(e.CreatePool(4096, "alice").ok()) << "another owner is not limited by bob's quota";
  EXPECT_EQ(*e.CreateSharedPool(U(1), 4096, "bob"), *e.CreateSharedPool(U(1), 4096, "bob"))
      << "joining an existing shared pool costs no quota";
  ASSERT_TRUE(e.DestroyPool(b1).ok());
  EXPECT_TRUE(e.CreatePool(4096, "bob").ok()) << "a destroyed pool frees its place";
}

// Tenant A puts a working set once, then tenant B writes ten times its share of the log: with
// B's share at 30%, A's working set (30% of the log) keeps at least 95% of its hits; with no
// share (100%), B's writes push A's pages out (the test can fail).
double HitRatioOfAAfterBFloods(uint32_t b_share_percent) {
  EngineHarness h;  // 32 segments of 128 KiB: about 1000 pages of 4 KiB
  EngineOptions o = h.Options();
  // Segments written only when full: a slow run (sanitizers) must not spend the log on
  // half-empty segments sealed by their deadline, which would evict a's pages by timing.
  o.log.flush_deadline_ns = 10'000'000'000;
  o.quota_of = [b_share_percent](std::string_view owner) {
    return EngineOptions::OwnerQuota{.log_share_percent = owner == "b" ? b_share_percent : 100u};
  };
  auto opened = PoolEngine::Open(o);
  EXPECT_TRUE(opened.ok()) << opened.status();
  PoolEngine& e = **opened;
  const uint64_t log_pages = uint64_t{32} * (128 << 10) / 4096;
  const uint64_t working_set = log_pages * 30 / 100;
  PoolId a = *e.CreateSharedPool(U(1), 4096, "a");
  PoolId b = *e.CreateSharedPool(U(1), 4096, "b");
  for (uint64_t i = 0; i < working_set; ++i) Put(e, a, "a-file", i, 1);
  const uint64_t b_writes = 10 * log_pages * 30 / 100;
  for (uint64_t i = 0; i < b_writes; ++i) Put(e, b, "b-file", i, 1);
  uint64_t hits = 0;
  for (uint64_t i = 0; i < working_set; ++i) {
    std::vector<uint8_t> out;
    hits += Get(e, a, "a-file", i, &out) == GetOutcome::kHit;
  }
  if (b_share_percent < 100) {
    const PoolEngine::PoolStats st = *e.GetPoolStats(b);
    EXPECT_GT(st.puts_dropped, b_writes / 2) << "b's puts past its share are dropped";
    MapVisitor m;
    e.VisitStats(m);
    EXPECT_GT(m.values["tenant_puts_dropped_quota,tenant=b"], 0.0) << "drops are in the metrics";
    EXPECT_GT(m.values["tenant_log_bytes,tenant=b"], 0.0);
    EXPECT_LE(m.values["tenant_log_bytes,tenant=b"], m.values["tenant_log_share_bytes,tenant=b"]);
  }
  return static_cast<double>(hits) / static_cast<double>(working_set);
}

TEST(PoolEngineTest, ATenantWritingTenTimesItsShareLeavesAnothersWorkingSetCached) {
  const double with_share = HitRatioOfAAfterBFloods(30);
  const double without = HitRatioOfAAfterBFloods(100);
  std::printf("hit ratio of a's working set: %.3f with b's 30%% share, %.3f without a share\n", with_share, without);
  EXPECT_GE(with_share, 0.95) << "tenant b's flood evicted tenant a's working set despite its 30% share";
  EXPECT_LT(without, 0.5) << "without a share the flood should evict a's pages (else this test proves nothing)";
}

TEST(PoolEngineTest, PagesKeptAcrossACleanRestartStillCountAgainstTheirOwnersShare) {
  EngineHarness h;  // 32 segments of 128 KiB
  EngineOptions o = h.Options();
  o.quota_of = [](std::string_view owner) {
    return EngineOptions::OwnerQuota{.log_share_percent = owner == "b" ? 30u : 100u};
  };
  const uint64_t share_pages = uint64_t{32} * (128 << 10) / 4096 * 30 / 100;
  double before = 0;
  {
    auto opened = PoolEngine::Open(o);
    ASSERT_TRUE(opened.ok()) << opened.status();
    PoolEngine& e = **opened;
    PoolId b = *e.CreateSharedPool(U(1), 4096, "b");
    for (uint64_t i = 0; i < share_pages * 2; ++i) Put(e, b, "b-file", i, 1);  // fills the share
    MapVisitor m;
    e.VisitStats(m);
    before = m.values["tenant_log_bytes,tenant=b"];
    ASSERT_GT(before, 0.0);
    ASSERT_TRUE(e.Close().ok());
  }
  auto opened = PoolEngine::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  PoolEngine& e = **opened;
  MapVisitor m;
  e.VisitStats(m);
  EXPECT_EQ(m.values["tenant_log_bytes,tenant=b"], before) << "the kept pages are counted at start";
  PoolId b = *e.CreateSharedPool(U(1), 4096, "b");
  const uint64_t dropped_before = e.GetPoolStats(b)->puts_dropped;
  for (uint64_t i = 0; i < share_pages; ++i) Put(e, b, "b-new", i, 2);
  EXPECT_GE(e.GetPoolStats(b)->puts_dropped - dropped_before, share_pages * 9 / 10)
      << "a tenant that held its share before the restart holds it after: new puts are dropped";
}

// A pool record stored under another pool's key (a damaged directory) is refused at start, not
// half believed: ids would collide, and an id of UINT32_MAX would leave none after it.
TEST(PoolEngineTest, APoolRecordUnderAnotherPoolsKeyIsRefusedAtStart) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  const PoolId id = *e.CreatePool(4096);
  PoolInfo info = *e.GetPoolInfo(id);
  info.id = UINT32_MAX;
  ASSERT_TRUE(e.page_index().WriteMeta({{PoolMetaKey(id + 1), EncodePoolRecord(info)}}, {}).ok());
  ASSERT_TRUE(e.Close().ok());
  auto reopened = PoolEngine::Open(h.Options());
  ASSERT_FALSE(reopened.ok());
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kDataLoss) << reopened.status();
  EXPECT_NE(reopened.status().message().find("stored under another key"), std::string::npos) << reopened.status();
}

TEST(PoolEngineTest, PoolRecordsOfAnOlderDeviceAreUpgradedWithTheirOwners) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId priv = *e.CreatePool(4096, "x");
  PoolId shared = *e.CreateSharedPool(U(5), 4096, "node-a");
  // Rewrite both as version 1 records (which had no owner for private pools).
  for (PoolId id : {priv, shared}) {
    PoolInfo info = *e.GetPoolInfo(id);
    if (info.kind == PoolKind::kPrivate) info.tenant = "";
    std::string v1 = EncodePoolRecord(info);
    v1[0] = 1;
    ASSERT_TRUE(e.page_index().WriteMeta({{PoolMetaKey(id), v1}}, {}).ok());
  }
  PoolEngine& e2 = h.ReopenClean();
  EXPECT_EQ(e2.GetPoolInfo(priv)->tenant, kDefaultOwner) << "private pools go to the configured owner";
  EXPECT_EQ(e2.GetPoolInfo(shared)->tenant, "node-a");
  EXPECT_EQ(*e2.CreateSharedPool(U(5), 4096, "node-a"), shared) << "the shared pool is found under its tenant";
  auto rec = e2.page_index().GetMeta(PoolMetaKey(priv));
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ(static_cast<uint8_t>((**rec)[0]), kPoolRecordVersion) << "the record was written again as version 2";
}

TEST(PoolEngineTest, DestroyPoolFreesItsPagesAndItsId) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(3), 4096);
  PoolId other = *e.CreatePool(4096);
  Put(e, p, kObj, 0, 1);
  Put(e, other, kObj, 0, 1);
  ASSERT_TRUE(e.DestroyPool(p).ok());
  std::vector<uint8_t> out(4096);
  EXPECT_EQ(e.Get(p, kObj, 0, out).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e.Put(p, kObj, 0, out).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e.DestroyPool(p).code(), absl::StatusCode::kNotFound);
  PoolId again = *e.CreateSharedPool(U(3), 4096);
  EXPECT_NE(again, p) << "pool ids are never reused";
  EXPECT_EQ(Get(e, again, kObj, 0, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e, other, kObj, 0, &out), GetOutcome::kHit) << "other pools are untouched";
  // Still gone after a restart.
  PoolEngine& e2 = h.ReopenClean();
  EXPECT_EQ(e2.GetPoolInfo(p).status().code(), absl::StatusCode::kNotFound);
}

TEST(PoolEngineTest, EveryPowerOfTwoPageSizeRoundTripsBitExact) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  for (uint32_t size = 512; size <= 65536; size *= 2) {
    PoolId p = *e.CreateSharedPool(U(static_cast<uint8_t>(size >> 9)), size);
    for (uint64_t i = 0; i < 3; ++i) Put(e, p, kObj, i, 10 + i, size);
    std::vector<uint8_t> out;
    for (uint64_t i = 0; i < 3; ++i) {
      ASSERT_EQ(Get(e, p, kObj, i, &out, size), GetOutcome::kHit) << size;
      EXPECT_EQ(VersionOf(out, p, kObj, i), static_cast<int64_t>(10 + i)) << size;
    }
  }
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  for (const PoolInfo& info : e.ListPools()) {
    std::vector<uint8_t> out;
    ASSERT_EQ(Get(e, info.id, kObj, 1, &out, info.page_bytes), GetOutcome::kHit);
    EXPECT_EQ(VersionOf(out, info.id, kObj, 1), 11);
  }
}

TEST(PoolEngineTest, PutManyStoresEveryPageAndTheLaterOfTwoPutsToAHandleWins) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(30), 4096);
  std::vector<std::vector<uint8_t>> data;
  std::vector<PoolEngine::PagePut> puts;
  for (uint64_t i = 0; i < 100; ++i) data.push_back(MakePage(4096, p, "many", i % 60, i));
  for (uint64_t i = 0; i < 100; ++i) puts.push_back({"many", i % 60, data[i]});
  ASSERT_TRUE(e.PutMany(p, puts).ok());
  std::vector<uint8_t> out;
  for (uint64_t idx = 0; idx < 60; ++idx) {
    ASSERT_EQ(Get(e, p, "many", idx, &out), GetOutcome::kHit) << idx;
    EXPECT_EQ(VersionOf(out, p, "many", idx), static_cast<int64_t>(idx < 40 ? idx + 60 : idx)) << idx;
  }
  EXPECT_EQ(e.pool_counters(p)->puts.load(), 100u);
  // One bad page rejects the batch and stores nothing.
  std::vector<uint8_t> small(100);
  auto good = MakePage(4096, p, "other", 0, 1);
  std::vector<PoolEngine::PagePut> bad = {{"other", 0, good}, {"other", 1, small}};
  EXPECT_EQ(e.PutMany(p, bad).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Get(e, p, "other", 0, &out), GetOutcome::kMiss);
  std::vector<PoolEngine::PagePut> long_key = {{std::string(25, 'k'), 0, good}};
  EXPECT_EQ(e.PutMany(p, long_key).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.PutMany(999, bad).code(), absl::StatusCode::kNotFound);
}

// --- Gets ----------------------------------------------------------------------------------

// GetMany on a private pool: pages from the device and from RAM come back in one call, a
// handle named twice hits once, a device read error is a miss for that page only, and a bad
// handle or buffer rejects the call before anything is taken.
TEST(PoolEngineTest, GetManyAnswersEachHandleAsGetsInARowWould) {
  EngineHarness h;
  // The device path itself: without the DRAM tier, whose copy would (rightly) serve the page.
  h.set_customize([](EngineOptions& o) { o.ram_cache_bytes = 0; });
  PoolEngine& e = h.Open();
  PoolId p = *e.CreatePool(4096);
  for (uint64_t i = 0; i < 40; ++i) Put(e, p, kObj, i, 100 + i);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  for (uint64_t i = 40; i < 44; ++i) Put(e, p, kObj, i, 100 + i);  // still in RAM
  std::vector<uint64_t> idx = {3, 41, 3, 99, 20, 43, 0};
  std::vector<std::vector<uint8_t>> outs(idx.size(), std::vector<uint8_t>(4096, 0xEE));
  std::vector<PoolEngine::PageGet> gets;
  for (size_t k = 0; k < idx.size(); ++k) gets.push_back({kObj, idx[k], outs[k]});

  std::vector<uint8_t> small(512);
  auto bad = gets;
  bad.push_back({kObj, 5, small});
  EXPECT_EQ(e.GetMany(p, bad).status().code(), absl::StatusCode::kInvalidArgument);
  bad.back() = {"", 5, outs[0]};
  EXPECT_EQ(e.GetMany(p, bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.GetMany(p + 100, gets).status().code(), absl::StatusCode::kNotFound);

  // The first device read of the batch fails: index 3 (first named) is on the device.
  h.device().FailNext(io::FaultInjectionDevice::Op::kRead, 1);
  auto r = e.GetMany(p, gets);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::vector<GetOutcome> want = {GetOutcome::kMiss, GetOutcome::kHit, GetOutcome::kMiss, GetOutcome::kMiss,
                                        GetOutcome::kHit,  GetOutcome::kHit, GetOutcome::kHit};
  EXPECT_EQ(*r, want);
  for (size_t k = 0; k < idx.size(); ++k) {
    if ((*r)[k] == GetOutcome::kHit) {
      EXPECT_EQ(testing::VersionOf(outs[k], p, kObj, idx[k]), static_cast<int64_t>(100 + idx[k])) << k;
    } else {
      EXPECT_EQ(outs[k], std::vector<uint8_t>(4096, k == 0 ? 0 : 0xEE)) << "a miss leaves no page bytes behind";
    }
  }
  EXPECT_EQ(e.counters().read_errors.load(), 1u);
  // Exclusive: every hit was taken; the failed read's page is gone as well.
  r = e.GetMany(p, gets);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::count(r->begin(), r->end(), GetOutcome::kHit), 0);
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 1, &out), GetOutcome::kHit) << "pages not named stay";
}

TEST(PoolEngineTest, GetManyOnASharedPoolKeepsThePages) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(7), 4096);
  for (uint64_t i = 0; i < 8; ++i) Put(e, p, kObj, i, 500 + i);
  std::vector<std::vector<uint8_t>> outs(16, std::vector<uint8_t>(4096));
  std::vector<PoolEngine::PageGet> gets;
  for (uint64_t k = 0; k < 16; ++k) gets.push_back({kObj, k % 10, outs[k]});
  for (int round = 0; round < 2; ++round) {
    auto r = e.GetMany(p, gets);
    ASSERT_TRUE(r.ok()) << r.status();
    for (uint64_t k = 0; k < 16; ++k) {
      EXPECT_EQ((*r)[k], k % 10 < 8 ? GetOutcome::kHit : GetOutcome::kMiss) << k;
      if ((*r)[k] == GetOutcome::kHit) EXPECT_EQ(testing::VersionOf(outs[k], p, kObj, k % 10), int64_t(500 + k % 10));
    }
    ASSERT_TRUE(e.segment_log().FlushAll().ok());
  }
  EXPECT_EQ(e.GetPoolStats(p)->gets_hit, 2u * 14);
  EXPECT_EQ(e.GetPoolStats(p)->gets_miss, 2u * 2);
}

TEST(PoolEngineTest, HitOnPrivatePoolRemovesThePage) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreatePool(4096);
  Put(e, p, kObj, 5, 1);
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 5, &out), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, p, kObj, 5), 1);
  EXPECT_EQ(Get(e, p, kObj, 5, &out), GetOutcome::kMiss) << "private pools are exclusive";
}

TEST(PoolEngineTest, HitOnSharedPoolKeepsThePage) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(9), 4096);
  Put(e, p, kObj, 5, 1);
  std::vector<uint8_t> out;
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Get(e, p, kObj, 5, &out), GetOutcome::kHit);
    EXPECT_EQ(VersionOf(out, p, kObj, 5), 1);
  }
}

TEST(PoolEngineTest, PutPutGetNeverReturnsTheFirstVersion) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(4), 4096);
  std::vector<uint8_t> out;
  // In one write buffer, across a flush to the device, and across segments.
  for (uint64_t v = 1; v <= 200; ++v) {
    Put(e, p, kObj, 0, v);
    if (v % 50 == 0) ASSERT_TRUE(e.segment_log().FlushAll().ok());
    ASSERT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kHit);
    ASSERT_EQ(VersionOf(out, p, kObj, 0), static_cast<int64_t>(v));
  }
}

TEST(PoolEngineTest, AfterAMissGetsMissUntilTheNextPut) {
  EngineHarness h(16);
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(5), 4096);
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kMiss);
  // A miss caused by eviction stays a miss: fill the log until handle 0's segment is reclaimed.
  Put(e, p, kObj, 0, 1);
  uint64_t i = 1;
  const uint64_t first_seq = e.segment_log().head_seq();
  while (e.segment_log().reclaimed_seq() < first_seq) Put(e, p, "filler", i++, 1);
  EXPECT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kMiss);
  Put(e, p, kObj, 0, 2);
  EXPECT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, p, kObj, 0), 2);
}

TEST(PoolEngineTest, CorruptPageOnDeviceIsAMissAndACountNeverTheBadBytes) {
  EngineHarness h;
  // The device path itself: without the DRAM tier, whose copy would (rightly) serve the page.
  h.set_customize([](EngineOptions& o) { o.ram_cache_bytes = 0; });
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(6), 4096);
  Put(e, p, kObj, 7, 1);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  // Find the page through the index and flip one byte of it on the device.
  e.WriteBackIndexCache();
  auto raw = e.page_index().GetPage(EncodePageKey(p, kObj, 7));
  ASSERT_TRUE(raw.ok() && raw->has_value());
  IndexValue v = *DecodeIndexValue(**raw);
  const uint64_t seg = (v.loc.seq - 1) % e.segment_log().geometry().segment_count;
  const uint64_t at = log::kDataOffset + seg * e.segment_log().geometry().segment_bytes + v.loc.offset + 2048;
  io::AlignedBuffer b(512, 512);
  ASSERT_TRUE(h.memory().Read(at, b.data(), 512).ok());
  b.data()[3] ^= 0x01;
  ASSERT_TRUE(h.memory().Write(at, b.data(), 512).ok());
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 7, &out), GetOutcome::kMiss);
  EXPECT_EQ(std::count(out.begin(), out.end(), 0), 4096) << "no byte of the corrupt page reaches the caller";
  EXPECT_EQ(e.segment_log().counters().crc_failures.load(), 1u);
  EXPECT_EQ(Get(e, p, kObj, 7, &out), GetOutcome::kMiss) << "get-get coherency after a corrupt read";
  EXPECT_EQ(e.segment_log().counters().crc_failures.load(), 1u) << "the bad entry was dropped";
}

TEST(PoolEngineTest, CorruptByteInTheDeviceFileIsAMissAndACount) {
  const std::string dir = testing::FreshDir("corrupt_file");
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/cache.img";
  auto dev = io::FileDevice::Open({.path = path, .create_size_bytes = 32 << 20});
  ASSERT_TRUE(dev.ok()) << dev.status();
  ASSERT_TRUE(log::FormatLog(dev->get(), {}).ok());
  // The device path itself: without the DRAM tier, whose copy would (rightly) serve the page.
  auto engine = PoolEngine::Open({.device = dev->get(), .metadata_dir = dir + "/meta", .ram_cache_bytes = 0});
  ASSERT_TRUE(engine.ok()) << engine.status();
  PoolEngine& e = **engine;
  PoolId p = *e.CreateSharedPool(U(23), 4096);
  Put(e, p, kObj, 1, 5);
  Put(e, p, kObj, 2, 5);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  e.WriteBackIndexCache();
  IndexValue v = *DecodeIndexValue(**e.page_index().GetPage(EncodePageKey(p, kObj, 1)));
  const uint64_t seg = (v.loc.seq - 1) % e.segment_log().geometry().segment_count;
  const off_t at =
      static_cast<off_t>(log::kDataOffset + seg * e.segment_log().geometry().segment_bytes + v.loc.offset + 100);
  // Flip one byte with an ordinary (buffered) write, as bit rot or a stray writer would.
  int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte;
  ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
  byte ^= 0x80;
  ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 1, &out), GetOutcome::kMiss);
  EXPECT_EQ(std::count(out.begin(), out.end(), 0), 4096);
  EXPECT_EQ(e.segment_log().counters().crc_failures.load(), 1u);
  ASSERT_EQ(Get(e, p, kObj, 2, &out), GetOutcome::kHit) << "the neighbouring page is intact";
  EXPECT_EQ(VersionOf(out, p, kObj, 2), 5);
  MapVisitor stats;
  e.VisitStats(stats);
  EXPECT_EQ(stats.values["log_crc_failures"], 1);
}

TEST(PoolEngineTest, DeviceReadErrorIsAMissThatStaysAMiss) {
  EngineHarness h;
  // The device path itself: without the DRAM tier, whose copy would (rightly) serve the page.
  h.set_customize([](EngineOptions& o) { o.ram_cache_bytes = 0; });
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(7), 4096);
  Put(e, p, kObj, 1, 1);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  h.device().FailNext(io::FaultInjectionDevice::Op::kRead, 1);
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 1, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e, p, kObj, 1, &out), GetOutcome::kMiss);
  EXPECT_EQ(e.counters().read_errors.load(), 1u);
}

// --- Flushes -------------------------------------------------------------------------------

TEST(PoolEngineTest, FlushPageObjectAndPoolRemovePagesStillInRamBuffers) {
  EngineHarness h;
  EngineOptions o = h.Options();
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(8), 4096);
  PoolId q = *e.CreateSharedPool(U(9), 4096);
  for (uint64_t i = 0; i < 4; ++i) {
    Put(e, p, "a", i, 1);
    Put(e, p, "b", i, 1);
    Put(e, q, "a", i, 1);
  }
  ASSERT_GT(e.segment_log().head_seq(), e.segment_log().flushed_seq()) << "pages are still in RAM";
  std::vector<uint8_t> out;
  ASSERT_TRUE(e.FlushPage(p, "a", 0).ok());
  EXPECT_EQ(Get(e, p, "a", 0, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e, p, "a", 1, &out), GetOutcome::kHit);
  ASSERT_TRUE(e.FlushObject(p, "a").ok());
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(Get(e, p, "a", i, &out), GetOutcome::kMiss) << i;
  EXPECT_EQ(Get(e, p, "b", 2, &out), GetOutcome::kHit) << "another object is untouched";
  ASSERT_TRUE(e.FlushPool(p).ok());
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(Get(e, p, "b", i, &out), GetOutcome::kMiss) << i;
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(Get(e, q, "a", i, &out), GetOutcome::kHit) << "another pool is untouched";
  EXPECT_GT(e.segment_log().head_seq(), e.segment_log().flushed_seq()) << "the flushes did not need the device";
  (void)o;
}

TEST(PoolEngineTest, FlushObjectDoesNotTouchObjectsWhoseKeyExtendsIt) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(10), 4096);
  Put(e, p, "ab", 0, 1);
  Put(e, p, "abc", 0, 1);
  Put(e, p, std::string("ab\xff", 3), 0, 1);
  Put(e, p, "ab", UINT64_MAX, 1);
  ASSERT_TRUE(e.FlushObject(p, "ab").ok());
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, "ab", 0, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e, p, "ab", UINT64_MAX, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e, p, "abc", 0, &out), GetOutcome::kHit);
  EXPECT_EQ(Get(e, p, std::string("ab\xff", 3), 0, &out), GetOutcome::kHit);
}

TEST(PoolEngineTest, FlushObjectRemovesLargeObjectsAndWritesNothingForEmptyOnes) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(22), 512);
  for (uint64_t i = 0; i < 300; ++i) Put(e, p, "big", i, 1, 512);  // beyond the point-delete limit
  Put(e, p, "bigger", 0, 1, 512);
  Put(e, p, "bif", 7, 1, 512);
  ASSERT_TRUE(e.FlushObject(p, "big").ok());
  std::vector<uint8_t> out;
  for (uint64_t i = 0; i < 300; ++i) ASSERT_EQ(Get(e, p, "big", i, &out, 512), GetOutcome::kMiss) << i;
  EXPECT_EQ(Get(e, p, "bigger", 0, &out, 512), GetOutcome::kHit);
  EXPECT_EQ(Get(e, p, "bif", 7, &out, 512), GetOutcome::kHit);
  // An object with no pages: the flush succeeds and leaves the index as it was.
  ASSERT_TRUE(e.page_index().FlushPages().ok());
  const uint64_t before = *e.page_index().CountPages();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(e.FlushObject(p, "never-put-" + std::to_string(i)).ok());
  EXPECT_EQ(*e.page_index().CountPages(), before);
  EXPECT_EQ(e.pool_counters(p)->flush_object.load(), 101u);
}

TEST(PoolEngineTest, FlushesAreNotLostAcrossACleanRestart) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(11), 4096);
  for (uint64_t i = 0; i < 8; ++i) Put(e, p, "x", i, 1);
  Put(e, p, "y", 0, 1);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  ASSERT_TRUE(e.FlushPage(p, "x", 0).ok());
  ASSERT_TRUE(e.FlushObject(p, "y").ok());
  PoolEngine& e2 = h.ReopenClean();
  EXPECT_TRUE(e2.kept_pages_from_previous_run());
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e2, p, "x", 0, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e2, p, "y", 0, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e2, p, "x", 1, &out), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, p, "x", 1), 1);
}

// --- Restarts ------------------------------------------------------------------------------

TEST(PoolEngineTest, CleanRestartKeepsPagesAndBumpsTheInstance) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  const uint64_t first = e.instance_id();
  PoolId p = *e.CreateSharedPool(U(12), 4096);
  PoolId priv = *e.CreatePool(1024);
  for (uint64_t i = 0; i < 100; ++i) Put(e, p, "f", i, i);
  Put(e, priv, "g", 0, 3, 1024);  // still in a RAM buffer at Close
  PoolEngine& e2 = h.ReopenClean();
  EXPECT_EQ(e2.instance_id(), first + 1);
  EXPECT_TRUE(e2.kept_pages_from_previous_run());
  std::vector<uint8_t> out;
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_EQ(Get(e2, p, "f", i, &out), GetOutcome::kHit) << i;
    EXPECT_EQ(VersionOf(out, p, "f", i), static_cast<int64_t>(i));
  }
  ASSERT_EQ(Get(e2, priv, "g", 0, &out, 1024), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, priv, "g", 0), 3);
}

TEST(PoolEngineTest, PowerCutDropsEveryPageButKeepsPools) {
  for (bool tear : {false, true}) {
    EngineHarness h;
    PoolEngine& e = h.Open();
    PoolId p = *e.CreateSharedPool(U(13), 4096);
    for (uint64_t i = 0; i < 300; ++i) Put(e, p, "f", i, 1);
    ASSERT_TRUE(e.segment_log().FlushAll().ok());  // synced pages, still dropped
    for (uint64_t i = 0; i < 300; ++i) Put(e, p, "f", i, 2);
    const uint64_t first = e.instance_id();
    PoolEngine& e2 = h.ReopenAfterPowerCut(tear, 77);
    EXPECT_FALSE(e2.kept_pages_from_previous_run());
    EXPECT_EQ(e2.instance_id(), first + 1);
    ASSERT_TRUE(e2.GetPoolInfo(p).ok()) << "pool definitions survive";
    std::vector<uint8_t> out;
    for (uint64_t i = 0; i < 300; ++i) ASSERT_EQ(Get(e2, p, "f", i, &out), GetOutcome::kMiss) << i;
    // And the pool works afterwards.
    Put(e2, p, "f", 0, 3);
    ASSERT_EQ(Get(e2, p, "f", 0, &out), GetOutcome::kHit);
    EXPECT_EQ(VersionOf(out, p, "f", 0), 3);
  }
}

TEST(PoolEngineTest, KillWithoutCloseIsUncleanEvenWhenEverythingWasWritten) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(14), 4096);
  Put(e, p, "f", 0, 1);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  ASSERT_TRUE(e.page_index().FlushPages().ok());
  // Flush after the page reached the device; an unclean stop must not resurrect the page.
  ASSERT_TRUE(e.FlushPage(p, "f", 0).ok());
  h.ReopenAfterPowerCut(false, 3);
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(h.engine(), p, "f", 0, &out), GetOutcome::kMiss);
}

TEST(PoolEngineTest, MetadataOfAnotherDeviceIsRefused) {
  EngineHarness h;
  h.Open();
  ASSERT_TRUE(h.engine().Close().ok());
  // Format the device again: the metadata directory now belongs to a device that is gone.
  ASSERT_TRUE(log::FormatLog(&h.device(), {.segment_bytes = 128 << 10, .force = true}).ok());
  auto e = PoolEngine::Open(h.Options());
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(e.status().message().find("another device"), std::string::npos) << e.status();
}

// --- Reclaim -------------------------------------------------------------------------------

TEST(PoolEngineTest, WritingSeveralCapacitiesKeepsSpaceAndIndexBoundedAndNeverReturnsStale) {
  constexpr uint32_t kSegments = 16;
  EngineHarness h(kSegments);
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(15), 4096);
  const uint64_t pages_per_segment = 30;
  const uint64_t capacity = kSegments * pages_per_segment;
  const uint64_t total = capacity * 4;
  std::vector<uint8_t> out;
  // Handles are rewritten with rising versions; a hit must return the newest version.
  std::vector<int64_t> latest(capacity * 2, -1);
  for (uint64_t n = 0; n < total; ++n) {
    uint64_t idx = (n * 7919) % latest.size();
    Put(e, p, "obj", idx, n);
    latest[idx] = static_cast<int64_t>(n);
    ASSERT_GE(e.segment_log().free_segments(), 2u);
  }
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  uint64_t hits = 0;
  for (uint64_t idx = 0; idx < latest.size(); ++idx) {
    if (Get(e, p, "obj", idx, &out) == GetOutcome::kHit) {
      ++hits;
      ASSERT_EQ(VersionOf(out, p, "obj", idx), latest[idx]) << "stale page for handle " << idx;
    }
  }
  EXPECT_GT(hits, capacity / 2);
  EXPECT_LE(hits, capacity);
  EXPECT_GT(e.segment_log().counters().segments_reclaimed.load(), 3u * kSegments);
  ASSERT_TRUE(e.page_index().CompactPages().ok());
  auto keys = e.page_index().CountPages();
  ASSERT_TRUE(keys.ok());
  EXPECT_LE(*keys, capacity) << "compaction dropped the stale entries";
  EXPECT_GT(e.counters().pages_evicted_compaction.load() + e.counters().pages_evicted.load(), 0u);
}

TEST(PoolEngineTest, CompactionDropsEntriesOfDestroyedPools) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(16), 4096);
  PoolId keep = *e.CreateSharedPool(U(17), 4096);
  for (uint64_t i = 0; i < 50; ++i) Put(e, p, "o", i, 1);
  for (uint64_t i = 0; i < 20; ++i) Put(e, keep, "o", i, 1);
  // Simulate a put that raced DestroyPool: an index entry written after the range delete.
  ASSERT_TRUE(e.DestroyPool(p).ok());
  ASSERT_TRUE(e.page_index()
                  .PutPage(EncodePageKey(p, "o", 999), EncodeIndexValue({{e.segment_log().head_seq(), 4096}, 0}))
                  .ok());
  e.WriteBackIndexCache();  // the kept pool's entries reach RocksDB; the destroyed pool's are dropped
  ASSERT_TRUE(e.page_index().CompactPages().ok());
  EXPECT_EQ(*e.page_index().CountPages(), 20u);
}

// --- Write-back: index entries held only in RAM -------------------------------------------

std::map<std::string, double> EngineStats(const PoolEngine& e) {
  MapVisitor v;
  e.VisitStats(v);
  return v.values;
}

TEST(PoolEngineTest, APagePutAgainWhileCachedCostsNoIndexWriteAndACleanStopKeepsIt) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(40), 4096);
  for (uint64_t v = 1; v <= 2; ++v) {
    for (uint64_t i = 0; i < 100; ++i) Put(e, p, "f", i, v * 1000 + i);
  }
  ASSERT_TRUE(e.page_index().ApplyPending().ok());
  EXPECT_EQ(*e.page_index().CountPages(), 0u) << "no put reached RocksDB";
  EXPECT_EQ(EngineStats(e)["index_write_behind_entries"], 0);
  EXPECT_EQ(EngineStats(e)["index_cache_dirty_entries"], 100);
  std::vector<uint8_t> out;
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_EQ(Get(e, p, "f", i, &out), GetOutcome::kHit);
    ASSERT_EQ(VersionOf(out, p, "f", i), static_cast<int64_t>(2000 + i));
  }
  PoolEngine& e2 = h.ReopenClean();  // the clean stop writes the 100 entries back
  ASSERT_TRUE(e2.kept_pages_from_previous_run());
  EXPECT_EQ(*e2.page_index().CountPages(), 100u);
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_EQ(Get(e2, p, "f", i, &out), GetOutcome::kHit) << i;
    ASSERT_EQ(VersionOf(out, p, "f", i), static_cast<int64_t>(2000 + i));
  }
}

TEST(PoolEngineTest, EntriesTheCacheDropsAreWrittenBackAndTheNewestVersionStillHits) {
  EngineHarness h;
  h.set_index_cache_entries(128);  // two entries a shard
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(41), 512);
  std::map<uint64_t, int64_t> latest;
  for (uint64_t n = 0; n < 3000; ++n) {
    const uint64_t i = (n * 7919) % 1000;
    Put(e, p, "w", i, n, 512);
    latest[i] = static_cast<int64_t>(n);
  }
  const auto stats = EngineStats(e);
  EXPECT_GT(stats.at("index_cache_cleaned"), 1000) << "entries went to the index as the cache dropped them";
  EXPECT_LE(stats.at("index_cache_entries"), 128 + 64) << "dirty entries held the cache past its bound";
  std::vector<uint8_t> out;
  for (const auto& [i, v] : latest) {
    ASSERT_EQ(Get(e, p, "w", i, &out, 512), GetOutcome::kHit) << i;
    ASSERT_EQ(VersionOf(out, p, "w", i), v) << "handle " << i;
  }
}

TEST(PoolEngineTest, FlushedEntriesHeldOnlyInRamNeverReachTheIndex) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(42), 4096);
  PoolId q = *e.CreateSharedPool(U(43), 4096);
  for (uint64_t i = 0; i < 10; ++i) {
    Put(e, p, "gone", i, 1);
    Put(e, p, "kept", i, 1);
    Put(e, q, "gone", i, 1);
  }
  ASSERT_TRUE(e.FlushObject(p, "gone").ok());
  ASSERT_TRUE(e.FlushPool(q).ok());
  ASSERT_TRUE(e.FlushPage(p, "kept", 0).ok());
  e.WriteBackIndexCache();
  ASSERT_TRUE(e.page_index().ApplyPending().ok());
  EXPECT_EQ(*e.page_index().CountPages(), 9u) << "only p/kept 1..9 were written back";
  PoolEngine& e2 = h.ReopenClean();
  std::vector<uint8_t> out;
  for (uint64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(Get(e2, p, "gone", i, &out), GetOutcome::kMiss) << i;
    EXPECT_EQ(Get(e2, q, "gone", i, &out), GetOutcome::kMiss) << i;
    EXPECT_EQ(Get(e2, p, "kept", i, &out), i == 0 ? GetOutcome::kMiss : GetOutcome::kHit) << i;
  }
}

TEST(PoolEngineTest, ACorruptNewestVersionNeverBringsBackAnOlderOne) {
  EngineHarness h;
  h.set_customize([](EngineOptions& o) { o.ram_cache_bytes = 0; });
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(44), 4096);
  Put(e, p, kObj, 3, 1);
  e.WriteBackIndexCache();  // version 1 in the index
  ASSERT_TRUE(e.page_index().ApplyPending().ok());
  const IndexValue v1 = *DecodeIndexValue(**e.page_index().GetPage(EncodePageKey(p, kObj, 3)));
  Put(e, p, kObj, 3, 2);  // version 2 only in the cache: the next page of the same segment
  ASSERT_EQ(e.segment_log().head_seq(), v1.loc.seq);
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  EXPECT_EQ(EngineStats(e)["index_cache_dirty_entries"], 1);
  // Flip a byte of version 2 on the device.
  const uint64_t seg = (v1.loc.seq - 1) % e.segment_log().geometry().segment_count;
  const uint64_t at = log::kDataOffset + seg * e.segment_log().geometry().segment_bytes + v1.loc.offset + 4096 + 1024;
  io::AlignedBuffer b(512, 512);
  ASSERT_TRUE(h.memory().Read(at, b.data(), 512).ok());
  b.data()[7] ^= 0x10;
  ASSERT_TRUE(h.memory().Write(at, b.data(), 512).ok());
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 3, &out), GetOutcome::kMiss);
  EXPECT_EQ(Get(e, p, kObj, 3, &out), GetOutcome::kMiss) << "version 1 came back";
}

// --- Bad input -----------------------------------------------------------------------------

TEST(PoolEngineTest, BadInputGetsAClearStatusAndNoSideEffect) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(18), 4096);
  Put(e, p, kObj, 0, 1);
  std::vector<uint8_t> page(4096), small(1024);
  EXPECT_EQ(e.Put(999, kObj, 0, page).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e.Get(999, kObj, 0, page).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e.FlushPool(999).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e.FlushObject(999, kObj).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(e.FlushPage(999, kObj, 0).code(), absl::StatusCode::kNotFound);
  absl::Status s = e.Put(p, kObj, 0, small);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("1024"), std::string::npos) << s;
  EXPECT_EQ(e.Get(p, kObj, 0, small).status().code(), absl::StatusCode::kInvalidArgument);
  std::string long_key(25, 'k');
  EXPECT_EQ(e.Put(p, long_key, 0, page).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.Get(p, long_key, 0, page).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.FlushObject(p, long_key).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.Put(p, "", 0, page).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(e.Put(p, std::string(24, 'k'), 0, page).ok()) << "24 bytes is the limit, inclusive";
  for (uint32_t bad : {0u, 256u, 1000u, 3000u, 131072u}) {
    EXPECT_EQ(e.CreatePool(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(e.CreateSharedPool(U(19), 4096, std::string(65, 't')).status().code(), absl::StatusCode::kInvalidArgument);
  // None of it disturbed the good page.
  std::vector<uint8_t> out;
  ASSERT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, p, kObj, 0), 1);
}

TEST(PoolEngineTest, PoolLimitIsResourceExhausted) {
  EngineHarness h;
  EngineOptions o = h.Options();
  o.max_pools = 3;
  auto e = PoolEngine::Open(o);
  ASSERT_TRUE(e.ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*e)->CreatePool(4096).ok());
  EXPECT_EQ((*e)->CreatePool(4096).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(PoolEngineTest, ClosedEngineRefusesOperations) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreatePool(4096);
  ASSERT_TRUE(e.Close().ok());
  std::vector<uint8_t> page(4096);
  EXPECT_EQ(e.Put(p, kObj, 0, page).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(e.Get(p, kObj, 0, page).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(e.CreatePool(4096).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(e.Close().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(PoolEngineTest, UnformattedDeviceIsRefused) {
  io::MemoryDevice blank(64 << 20, 512);
  EngineOptions o;
  o.device = &blank;
  o.metadata_dir = testing::FreshDir("unformatted");
  auto e = PoolEngine::Open(o);
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition) << e.status();
}

TEST(PoolEngineTest, ACachedExportsDeviceIsRefusedUntilFormattedAgain) {
  io::MemoryDevice dev(64 << 20, 512);
  ASSERT_TRUE(log::FormatLog(&dev, {.segment_bytes = 1 << 20}).ok());
  // What a block cache leaves in the owner record slot.
  io::AlignedBuffer record(4096, 4096);
  std::memset(record.data(), 0, 4096);
  std::memcpy(record.data(), "TMEMBC01", 8);
  ASSERT_TRUE(dev.Write(log::kOwnerRecordOffset[0], record.data(), 4096).ok());
  EngineOptions o;
  o.device = &dev;
  o.metadata_dir = testing::FreshDir("owned");
  auto e = PoolEngine::Open(o);
  ASSERT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition) << e.status();
  EXPECT_NE(e.status().message().find("cached block export"), std::string::npos) << e.status();
  ASSERT_TRUE(log::FormatLog(&dev, {.segment_bytes = 1 << 20, .force = true}).ok());
  EXPECT_TRUE(PoolEngine::Open(o).ok());
}

// --- Concurrency ---------------------------------------------------------------------------

// Threads race puts of rising versions to one handle while readers get it. With logical
// timestamps taken before and after each call: a get may not return version v if some put w
// completed before the get began and put(v) completed before put(w) began.
TEST(PoolEngineTest, RacingPutsNeverLetAGetReturnAVersionOlderThanACompletedPut) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(20), 4096);
  std::atomic<uint64_t> clock{1}, next_version{1};
  std::atomic<int> puts_done{0};
  struct PutRec {
    uint64_t start, end, version;
  };
  struct GetRec {
    uint64_t start, end;
    int64_t version;
  };
  constexpr int kWriters = 3, kReaders = 3, kOps = 1500;
  std::vector<std::vector<PutRec>> puts(kWriters);
  std::vector<std::vector<GetRec>> gets(kReaders);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kOps; ++i) {
        uint64_t v = next_version.fetch_add(1);
        auto page = MakePage(4096, p, kObj, 0, v);
        uint64_t start = clock.fetch_add(1);
        EXPECT_TRUE(e.Put(p, kObj, 0, page).ok());
        puts[w].push_back({start, clock.fetch_add(1), v});
        puts_done.fetch_add(1);
      }
    });
  }
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      std::vector<uint8_t> out(4096);
      // Read from the first completed put until the last one, so that reads and writes overlap
      // however the threads are scheduled.
      while (puts_done.load() == 0) std::this_thread::yield();
      while (puts_done.load() < kWriters * kOps) {
        uint64_t start = clock.fetch_add(1);
        auto res = e.Get(p, kObj, 0, out);
        uint64_t end = clock.fetch_add(1);
        EXPECT_TRUE(res.ok());
        gets[r].push_back({start, end, res.ok() && *res == GetOutcome::kHit ? VersionOf(out, p, kObj, 0) : -2});
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<PutRec> all;
  std::map<uint64_t, PutRec> by_version;
  for (auto& v : puts)
    for (auto& r : v) all.push_back(r), by_version[r.version] = r;
  std::sort(all.begin(), all.end(), [](auto& a, auto& b) { return a.end < b.end; });
  std::vector<uint64_t> max_start(all.size());
  for (size_t i = 0; i < all.size(); ++i) max_start[i] = std::max(i ? max_start[i - 1] : 0, all[i].start);
  int hits = 0;
  for (auto& v : gets) {
    for (const GetRec& g : v) {
      if (g.version == -2) continue;
      ASSERT_GE(g.version, 1) << "a hit returned bytes that are no intact version";
      ++hits;
      const PutRec& mine = by_version.at(static_cast<uint64_t>(g.version));
      ASSERT_LT(mine.start, g.end) << "returned a version whose put had not started";
      auto it =
          std::lower_bound(all.begin(), all.end(), g.start, [](const PutRec& r, uint64_t t) { return r.end < t; });
      if (it == all.begin()) continue;
      uint64_t latest_start = max_start[(it - all.begin()) - 1];
      EXPECT_FALSE(mine.end < latest_start)
          << "get returned version " << g.version << " though a newer put completed first";
    }
  }
  EXPECT_GT(hits, 0);
}

// Object and pool flushes race puts and gets (single and batched) of a shared pool. With
// logical timestamps: a get that began after a flush ended must not return a version whose put
// ended before that flush began. Run with and without the RAM index cache.
void FlushesRacingPutsAndGets(size_t index_cache_entries, int kHandles = 8) {
  EngineHarness h;
  h.set_index_cache_entries(index_cache_entries);
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(21), 4096);
  const int kRounds = 3200 / kHandles;
  std::atomic<uint64_t> clock{1}, next_version{1};
  std::atomic<bool> stop{false};
  struct Span {
    uint64_t start, end;
  };
  Mutex mu;
  std::map<uint64_t, Span> put_of;  // version -> its put
  std::vector<Span> flushes;
  struct GetRec {
    uint64_t start, end, version;
  };
  std::vector<std::vector<GetRec>> gets(2);
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    for (int i = 0; i < kRounds * kHandles; ++i) {
      const uint64_t v = next_version.fetch_add(1);
      auto page = MakePage(4096, p, kObj, i % kHandles, v);
      const uint64_t start = clock.fetch_add(1);
      if (i % 3 == 0) {
        PoolEngine::PagePut one{kObj, static_cast<uint64_t>(i % kHandles), page};
        EXPECT_TRUE(e.PutMany(p, std::span(&one, 1)).ok());
      } else {
        EXPECT_TRUE(e.Put(p, kObj, i % kHandles, page).ok());
      }
      const uint64_t end = clock.fetch_add(1);
      MutexLock l(&mu);
      put_of[v] = {start, end};
    }
    stop = true;
  });
  threads.emplace_back([&] {
    for (int i = 0; !stop.load(); ++i) {
      const uint64_t start = clock.fetch_add(1);
      EXPECT_TRUE((i % 4 == 0 ? e.FlushPool(p) : e.FlushObject(p, kObj)).ok());
      const uint64_t end = clock.fetch_add(1);
      {
        MutexLock l(&mu);
        flushes.push_back({start, end});
      }
      std::this_thread::yield();
    }
  });
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      std::vector<uint8_t> out(4096);
      for (uint64_t i = 0; !stop.load(); ++i) {
        const uint64_t idx = i % kHandles;
        const uint64_t start = clock.fetch_add(1);
        GetOutcome got = GetOutcome::kMiss;
        if (r == 0) {
          auto res = e.Get(p, kObj, idx, out);
          ASSERT_TRUE(res.ok());
          got = *res;
        } else {
          PoolEngine::PageGet one{kObj, idx, out};
          auto res = e.GetMany(p, std::span(&one, 1));
          ASSERT_TRUE(res.ok());
          got = (*res)[0];
        }
        const uint64_t end = clock.fetch_add(1);
        if (got != GetOutcome::kHit) continue;
        const int64_t v = VersionOf(out, p, kObj, idx);
        ASSERT_GE(v, 1) << "a hit returned bytes that are no intact version";
        gets[r].push_back({start, end, static_cast<uint64_t>(v)});
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_GT(flushes.size(), 10u);
  // For the flushes that began after time t, the earliest end: suffix minimum over starts.
  std::sort(flushes.begin(), flushes.end(), [](const Span& a, const Span& b) { return a.start < b.start; });
  std::vector<uint64_t> min_end(flushes.size() + 1, UINT64_MAX);
  for (size_t i = flushes.size(); i-- > 0;) min_end[i] = std::min(min_end[i + 1], flushes[i].end);
  size_t hits = 0;
  for (const auto& per_reader : gets) {
    for (const GetRec& g : per_reader) {
      ++hits;
      const Span put = put_of.at(g.version);
      auto first = std::upper_bound(flushes.begin(), flushes.end(), put.end,
                                    [](uint64_t t, const Span& f) { return t < f.start; });
      ASSERT_FALSE(min_end[first - flushes.begin()] < g.start)
          << "version " << g.version << " was returned though a flush ran entirely between its put and the get";
    }
  }
  EXPECT_GT(hits, 0u);
}

TEST(PoolEngineTest, FlushesRacingPutsAndGetsNeverLeaveAFlushedPageVisible) {
  FlushesRacingPutsAndGets(/*index_cache_entries=*/1 << 20);
  FlushesRacingPutsAndGets(/*index_cache_entries=*/0);
  // So small that write-back writes entries to the index all the time, racing the flushes.
  FlushesRacingPutsAndGets(/*index_cache_entries=*/64, /*handles=*/200);
}

TEST(PoolEngineTest, ConcurrentGetsOnAPrivatePoolHitAtMostOnce) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreatePool(4096);
  for (int round = 0; round < 200; ++round) {
    Put(e, p, kObj, round, 1);
    std::atomic<int> hits{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        std::vector<uint8_t> out(4096);
        auto r = e.Get(p, kObj, round, out);
        if (r.ok() && *r == GetOutcome::kHit) ++hits;
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(hits.load(), 1) << "round " << round;
  }
}

// --- Stats ---------------------------------------------------------------------------------

TEST(PoolEngineTest, StatsVisitorReportsEveryCounter) {
  EngineHarness h;
  PoolEngine& e = h.Open();
  PoolId p = *e.CreateSharedPool(U(21), 4096);
  Put(e, p, kObj, 0, 1);
  Put(e, p, kObj, 1, 1);
  std::vector<uint8_t> out;
  Get(e, p, kObj, 0, &out);
  Get(e, p, kObj, 9, &out);
  Get(e, p, kObj, 8, &out);
  ASSERT_TRUE(e.FlushPage(p, kObj, 1).ok());
  ASSERT_TRUE(e.FlushObject(p, kObj).ok());
  ASSERT_TRUE(e.FlushPool(p).ok());
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  MapVisitor v;
  e.VisitStats(v);
  const std::string pool = ",pool=" + std::to_string(p) + ",kind=shared";
  EXPECT_EQ(v.values["pool_puts" + pool], 2);
  EXPECT_EQ(v.values["pool_gets" + pool + ",result=hit"], 1);
  EXPECT_EQ(v.values["pool_gets" + pool + ",result=miss"], 2);
  EXPECT_EQ(v.values["pool_flushes" + pool + ",flush=page"], 1);
  EXPECT_EQ(v.values["pool_flushes" + pool + ",flush=object"], 1);
  EXPECT_EQ(v.values["pool_flushes" + pool + ",flush=pool"], 1);
  EXPECT_GE(v.values["log_written_bytes"], 8192);
  EXPECT_EQ(v.values["log_crc_failures"], 0);
  EXPECT_EQ(v.values["log_segments_reclaimed"], 0);
  EXPECT_EQ(v.values["pages_evicted"], 0);
  EXPECT_EQ(v.values["log_free_segments"], 31);
  EXPECT_EQ(v.values["pools"], 1);
  EXPECT_EQ(v.values["instance_id"], static_cast<double>(e.instance_id()));
}

// --- Nothing wedges on a hung device ------------------------------------------------------

TEST(PoolEngineTest, WithTheDeviceHungPutsAreDroppedWithinTheBoundAndPagesInRamStillHit) {
  EngineHarness h;
  h.set_customize([](EngineOptions& o) { o.put_wait_ms = 200; });
  PoolEngine& e = h.Open();
  const PoolId p = *e.CreatePool(4096);
  Put(e, p, kObj, 0, 1);  // in the open write buffer
  Put(e, p, kObj, 1000, 1);
  h.device().StallWrites([](uint64_t, size_t) { return true; });
  // More than every write buffer holds: the flushers hang in their writes, then puts find no room.
  int64_t slowest_ms = 0;
  for (uint64_t i = 1; i < 300 && e.counters().puts_dropped_no_room.load() < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    Put(e, p, kObj, i, 1);
    slowest_ms = std::max<int64_t>(
        slowest_ms,
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
  }
  const uint64_t dropped = e.counters().puts_dropped_no_room.load();
  EXPECT_GT(dropped, 0u);
  EXPECT_GT(h.device().stalled_write_count(), 0);
  // Each put returned within its bound (200 ms), with slack for a loaded machine.
  EXPECT_LT(slowest_ms, 200 + 800);
  // The first page's segment is still being written (hung): it is served from RAM.
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, p, kObj, 0), 1);
  // A dropped put leaves no older version behind: handle 1000 holds version 1 (in RAM); its
  // put of version 2 finds no room and is dropped; a get then misses, never returns version 1.
  const uint64_t before = e.counters().puts_dropped_no_room.load();
  Put(e, p, kObj, 1000, 2);
  ASSERT_EQ(e.counters().puts_dropped_no_room.load(), before + 1) << "the put was not dropped";
  EXPECT_EQ(Get(e, p, kObj, 1000, &out), GetOutcome::kMiss);
  h.device().ReleaseStalledWrites();
  // Once the device answers again, puts are stored.
  ASSERT_TRUE(e.segment_log().FlushAll().ok());
  Put(e, p, kObj, 500, 3);
  EXPECT_EQ(Get(e, p, kObj, 500, &out), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, p, kObj, 500), 3);
  EXPECT_EQ(e.counters().puts_dropped_no_room.load(), dropped + 1);
  MapVisitor v;
  e.VisitStats(v);
  EXPECT_EQ(v.values["puts_dropped_no_room"], static_cast<double>(dropped + 1));
}

TEST(PoolEngineTest, APutWaitingForRoomHoldsNoLockAGetOfTheSameHandleNeeds) {
  EngineHarness h;
  // One stripe for every handle: a put that waited holding any stripe would block every get.
  h.set_customize([](EngineOptions& o) {
    o.put_wait_ms = 60'000;
    o.lock_stripes = 1;
  });
  PoolEngine& e = h.Open();
  const PoolId p = *e.CreatePool(4096);
  Put(e, p, kObj, 0, 1);
  h.device().StallWrites([](uint64_t, size_t) { return true; });
  // One batch larger than every write buffer, with handle 0 last: it waits for room part-way.
  std::vector<std::vector<uint8_t>> pages;
  std::vector<PoolEngine::PagePut> puts;
  for (uint64_t i = 1; i <= 300; ++i) pages.push_back(MakePage(4096, p, kObj, i, 1));
  pages.push_back(MakePage(4096, p, kObj, 0, 2));
  for (size_t k = 0; k < pages.size(); ++k) puts.push_back({kObj, k + 1 == pages.size() ? 0 : k + 1, pages[k]});
  std::atomic<bool> put_done{false};
  const uint64_t waits_before = e.segment_log().counters().append_waits.load();
  std::thread putter([&] {
    EXPECT_TRUE(e.PutMany(p, puts).ok());
    put_done = true;
  });
  while (e.segment_log().counters().append_waits.load() == waits_before) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // The batch waits (without its stripes): a get of handle 0 is answered now, with version 1.
  std::vector<uint8_t> out;
  EXPECT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, p, kObj, 0), 1);
  EXPECT_FALSE(put_done.load());
  h.device().ReleaseStalledWrites();
  putter.join();
  // The batch went on where it stopped; its last put (handle 0, version 2) is the one kept.
  EXPECT_EQ(Get(e, p, kObj, 0, &out), GetOutcome::kHit);
  EXPECT_EQ(VersionOf(out, p, kObj, 0), 2);
  EXPECT_EQ(e.counters().puts_dropped_no_room.load(), 0u);
}

}  // namespace
}  // namespace tmem::pool
