// Model-based randomized test: seeded random put/get/flush/create/destroy/restart operations
// against a reference model that knows which answers are allowed. A get may miss at any time
// (pages are ephemeral), but it must never return a page other than the last one put to that
// handle, and after a miss, a private hit, a flush or an unclean restart it must miss until the
// next put.
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <random>
#include <set>
#include <tuple>

#include "server/pool/pool_engine.h"
#include "server/pool/pool_test_util.h"

namespace tmem::pool {
namespace {

using testing::EngineHarness;
using testing::MakePage;
using testing::VersionOf;

struct ModelPool {
  PoolInfo info;
  // handle (object, index) -> the only version a get may return; absent = must miss.
  std::map<std::pair<std::string, uint64_t>, uint64_t> pages;
};

struct Tally {
  uint64_t ops = 0, puts = 0, gets = 0, hits = 0, flushes = 0, clean_restarts = 0, power_cuts = 0, destroys = 0;
};

void RunModel(uint64_t seed, uint64_t op_count, Tally* tally, size_t index_cache_entries = 1 << 20) {
  std::mt19937_64 rng(seed);
  EngineHarness h(/*segment_count=*/24);
  h.set_index_cache_entries(index_cache_entries);
  PoolEngine* e = &h.Open();
  std::map<PoolId, ModelPool> model;
  std::set<PoolId> destroyed;
  uint64_t next_version = 1;
  const uint32_t kSizes[] = {512, 1024, 4096, 8192};
  const std::string objects[] = {"a", "bb", "inode-0003", "inode-0004", std::string(24, 'z')};
  auto create = [&](bool shared) {
    uint32_t size = kSizes[rng() % 4];
    absl::StatusOr<PoolId> id;
    if (shared) {
      Uuid u{};
      u[0] = static_cast<uint8_t>(rng() % 4);  // few UUIDs: re-creating returns the same pool
      id = e->CreateSharedPool(u, size);
      if (!id.ok()) {
        ASSERT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument) << id.status();
        return;  // existing UUID with another page size
      }
    } else {
      id = e->CreatePool(size);
      ASSERT_TRUE(id.ok()) << id.status();
    }
    ASSERT_EQ(destroyed.count(*id), 0u) << "a destroyed pool id came back";
    if (model.count(*id) == 0) model[*id].info = *e->GetPoolInfo(*id);
  };
  for (int i = 0; i < 3; ++i) create(i != 0);

  for (uint64_t op = 0; op < op_count; ++op) {
    ++tally->ops;
    if (model.empty()) create(rng() & 1);
    auto pit = model.begin();
    std::advance(pit, rng() % model.size());
    ModelPool& mp = pit->second;
    const PoolId pid = pit->first;
    const uint32_t size = mp.info.page_bytes;
    const std::string& obj = objects[rng() % 5];
    const uint64_t idx = rng() % 12;
    const auto handle = std::make_pair(obj, idx);
    const uint64_t dice = rng() % 10000;
    if (dice < 4000) {
      uint64_t v = next_version++;
      auto page = MakePage(size, pid, obj, idx, v);
      ASSERT_TRUE(e->Put(pid, obj, idx, page).ok());
      mp.pages[handle] = v;
      ++tally->puts;
    } else if (dice < 7600) {
      // Half of the gets go through GetMany: a batch of 1 to 6 handles (repeats allowed) whose
      // outcomes must be those of the same gets one after another.
      std::vector<std::pair<std::string, uint64_t>> handles{handle};
      const bool many = rng() & 1;
      if (many) {
        for (uint64_t k = rng() % 6; k > 0; --k) handles.emplace_back(objects[rng() % 5], rng() % 12);
      }
      std::vector<std::vector<uint8_t>> outs(handles.size(), std::vector<uint8_t>(size));
      std::vector<GetOutcome> outcomes;
      if (many) {
        std::vector<PoolEngine::PageGet> batch;
        for (size_t k = 0; k < handles.size(); ++k) batch.push_back({handles[k].first, handles[k].second, outs[k]});
        auto r = e->GetMany(pid, batch);
        ASSERT_TRUE(r.ok()) << r.status();
        ASSERT_EQ(r->size(), handles.size());
        outcomes = *r;
      } else {
        auto r = e->Get(pid, obj, idx, outs[0]);
        ASSERT_TRUE(r.ok()) << r.status();
        outcomes.push_back(*r);
      }
      for (size_t k = 0; k < handles.size(); ++k) {
        ++tally->gets;
        auto it = mp.pages.find(handles[k]);
        if (outcomes[k] == GetOutcome::kHit) {
          ++tally->hits;
          ASSERT_NE(it, mp.pages.end()) << "op " << op << ": hit for a handle that must miss (pool " << pid << ")";
          ASSERT_EQ(VersionOf(outs[k], pid, handles[k].first, handles[k].second), static_cast<int64_t>(it->second))
              << "op " << op << ": wrong or stale page";
          if (mp.info.kind == PoolKind::kPrivate) mp.pages.erase(it);
        } else if (it != mp.pages.end()) {
          mp.pages.erase(it);  // get-get coherency: it must miss from now on
        }
      }
    } else if (dice < 8500) {
      ASSERT_TRUE(e->FlushPage(pid, obj, idx).ok());
      mp.pages.erase(handle);
      ++tally->flushes;
    } else if (dice < 9000) {
      ASSERT_TRUE(e->FlushObject(pid, obj).ok());
      for (auto it = mp.pages.begin(); it != mp.pages.end();) it = it->first.first == obj ? mp.pages.erase(it) : ++it;
      ++tally->flushes;
    } else if (dice < 9100) {
      ASSERT_TRUE(e->FlushPool(pid).ok());
      mp.pages.clear();
      ++tally->flushes;
    } else if (dice < 9110) {
      ASSERT_TRUE(e->DestroyPool(pid).ok());
      destroyed.insert(pid);
      model.erase(pit);
      ++tally->destroys;
    } else if (dice < 9120) {
      create(rng() & 1);
    } else if (dice < 9280) {
      // A destroyed pool stays unknown.
      if (!destroyed.empty()) {
        std::vector<uint8_t> out(512);
        EXPECT_EQ(e->Get(*destroyed.begin(), obj, idx, out).status().code(), absl::StatusCode::kNotFound);
      }
    } else if (dice < 9284) {
      e = &h.ReopenClean();
      ASSERT_TRUE(e->kept_pages_from_previous_run());
      ++tally->clean_restarts;
    } else if (dice < 9288) {
      e = &h.ReopenAfterPowerCut(rng() & 1, rng());
      ASSERT_FALSE(e->kept_pages_from_previous_run());
      for (auto& [id, p] : model) p.pages.clear();
      ++tally->power_cuts;
    } else if (dice < 9400) {
      ASSERT_TRUE(e->segment_log().FlushAll().ok());  // move pages from RAM to the device
    } else {
      // Bulk puts to another object push segments through reclaim; half of them go through
      // PutMany (one index write; a repeated handle's later put wins).
      std::vector<std::vector<uint8_t>> bulk;
      std::vector<PoolEngine::PagePut> batch;
      const bool many = rng() & 1;
      for (int k = 0; k < 4; ++k) {
        uint64_t v = next_version++;
        const uint64_t bulk_idx = rng() % 64;
        bulk.push_back(MakePage(size, pid, "bulk", bulk_idx, v));
        if (many) {
          batch.push_back({"bulk", bulk_idx, {}});
        } else {
          ASSERT_TRUE(e->Put(pid, "bulk", bulk_idx, bulk.back()).ok());
        }
        mp.pages[{"bulk", bulk_idx}] = v;
        ++tally->puts;
      }
      if (many) {
        for (size_t k = 0; k < batch.size(); ++k) batch[k].page = bulk[k];
        ASSERT_TRUE(e->PutMany(pid, batch).ok());
      }
    }
  }
}

TEST(PoolModelTest, HundredThousandRandomOperationsNeverReturnAWrongOrStalePage) {
  Tally tally;
  RunModel(/*seed=*/20261122, /*op_count=*/100000, &tally);
  ASSERT_FALSE(HasFatalFailure());
  std::printf("ops %lu puts %lu gets %lu hits %lu flushes %lu destroys %lu clean restarts %lu power cuts %lu\n",
              tally.ops, tally.puts, tally.gets, tally.hits, tally.flushes, tally.destroys, tally.clean_restarts,
              tally.power_cuts);
  // The run must have exercised what it claims to.
  EXPECT_GT(tally.hits, tally.gets / 10);
  EXPECT_LT(tally.hits, tally.gets);
  EXPECT_GT(tally.clean_restarts, 10u);
  EXPECT_GT(tally.power_cuts, 10u);
  EXPECT_GT(tally.destroys, 10u);
}

// The RAM index cache off, and so small that it evicts all the time: the same answers.
TEST(PoolModelTest, AnyIndexCacheSizeGivesTheSameAnswers) {
  for (size_t entries : {size_t{0}, size_t{64}}) {
    Tally tally;
    RunModel(/*seed=*/7, /*op_count=*/30000, &tally, entries);
    ASSERT_FALSE(HasFatalFailure()) << "cache of " << entries << " entries";
    EXPECT_GT(tally.hits, tally.gets / 10);
  }
}

TEST(PoolModelTest, OtherSeedsHoldToo) {
  for (uint64_t seed : {1ull, 2ull, 3ull}) {
    Tally tally;
    RunModel(seed, 10000, &tally);
    ASSERT_FALSE(HasFatalFailure()) << "seed " << seed;
  }
}

}  // namespace
}  // namespace tmem::pool
