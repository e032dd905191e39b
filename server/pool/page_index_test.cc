// The page index's write-behind: writes are read back before RocksDB holds them, later writes
// win across batches, range deletes cover pending puts and are ordered against later ones, a
// clean close keeps what was pending, and the pending set stays within its bound. The page store:
// it skips syncs while running and keeps its pages across a clean close, a store that does not
// open is created empty, a metadata store of the older layout gives its pages up and keeps its
// metadata, and dropping every page empties the store and leaves the metadata.
#include "server/pool/page_index.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/stats_testing.h"
#include "server/pool/pool_test_util.h"

namespace tmem::pool {
namespace {

// Keys of one "object": prefix "o<n>/" then a 4-digit index, so that ranges are easy to name.
std::string Key(int object, int index) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "o%d/%04d", object, index);
  return buf;
}

PageIndexOptions Options(const std::string& dir) {
  PageIndexOptions o;
  o.dir = dir;
  // No batch is applied unless a test asks (or the bound is reached).
  o.write_behind_batch = 1 << 20;
  o.write_behind_max = 1 << 20;
  o.write_behind_interval_ms = 3'600'000;
  return o;
}

std::map<std::string, double> Stats(const PageIndex& index) {
  MapVisitor v;
  index.VisitStats(v);
  return v.values;
}

std::optional<std::string> Get(PageIndex& index, const std::string& key) {
  auto v = index.GetPage(key);
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::nullopt;
}

TEST(PageIndexWriteBehindTest, AWriteIsReadBackBeforeRocksDbHoldsIt) {
  auto index = PageIndex::Open(Options(testing::FreshDir("pidx")));
  ASSERT_TRUE(index.ok()) << index.status();
  PageIndex& x = **index;
  ASSERT_TRUE(x.PutPage(Key(1, 1), "A").ok());
  ASSERT_TRUE(x.WritePages(std::vector<std::pair<std::string, std::optional<std::string>>>{
                               {Key(1, 2), std::string("B")}, {Key(1, 3), std::string("C")}, {Key(1, 3), std::nullopt}})
                  .ok());
  EXPECT_EQ(x.pending_writes(), 3u);  // nothing reached RocksDB yet
  EXPECT_EQ(Get(x, Key(1, 1)), "A");
  EXPECT_EQ(Get(x, Key(1, 2)), "B");
  EXPECT_EQ(Get(x, Key(1, 3)), std::nullopt);  // the later write of one key in a batch wins
  auto many = x.MultiGetPages(std::vector<std::string>{Key(1, 2), Key(1, 9), Key(1, 1)});
  ASSERT_EQ(many.size(), 3u);
  EXPECT_EQ(*many[0], "B");
  EXPECT_EQ(*many[1], std::nullopt);
  EXPECT_EQ(*many[2], "A");
  ASSERT_TRUE(x.ApplyPending().ok());
  EXPECT_EQ(x.pending_writes(), 0u);
  EXPECT_EQ(Get(x, Key(1, 1)), "A");
  EXPECT_EQ(Get(x, Key(1, 2)), "B");
  EXPECT_EQ(*x.CountPages(), 2u);
}

TEST(PageIndexWriteBehindTest, APendingWriteHidesAnOlderOneInRocksDb) {
  auto index = PageIndex::Open(Options(testing::FreshDir("pidx")));
  ASSERT_TRUE(index.ok());
  PageIndex& x = **index;
  ASSERT_TRUE(x.PutPage(Key(1, 1), "A").ok());
  ASSERT_TRUE(x.PutPage(Key(1, 2), "A").ok());
  ASSERT_TRUE(x.ApplyPending().ok());
  ASSERT_TRUE(x.PutPage(Key(1, 1), "B").ok());  // put-put: B pending, A in RocksDB
  ASSERT_TRUE(x.DeletePage(Key(1, 2)).ok());    // delete pending, A in RocksDB
  EXPECT_EQ(Get(x, Key(1, 1)), "B");
  EXPECT_EQ(Get(x, Key(1, 2)), std::nullopt);
  auto many = x.MultiGetPages(std::vector<std::string>{Key(1, 1), Key(1, 2)});
  EXPECT_EQ(*many[0], "B");
  EXPECT_EQ(*many[1], std::nullopt);
  ASSERT_TRUE(x.ApplyPending().ok());
  EXPECT_EQ(Get(x, Key(1, 1)), "B");
  EXPECT_EQ(Get(x, Key(1, 2)), std::nullopt);
}

TEST(PageIndexWriteBehindTest, RangeDeletesCoverPendingPutsAndLaterPutsSurviveThem) {
  auto index = PageIndex::Open(Options(testing::FreshDir("pidx")));
  ASSERT_TRUE(index.ok());
  PageIndex& x = **index;
  // Object 1: two pages in RocksDB, then a newer version of one and a third page pending.
  ASSERT_TRUE(x.PutPage(Key(1, 1), "old").ok());
  ASSERT_TRUE(x.PutPage(Key(1, 2), "old").ok());
  ASSERT_TRUE(x.ApplyPending().ok());
  ASSERT_TRUE(x.PutPage(Key(1, 1), "new").ok());
  ASSERT_TRUE(x.PutPage(Key(1, 3), "new").ok());
  ASSERT_TRUE(x.PutPage(Key(2, 1), "other").ok());  // another object, pending
  auto seen = x.DeletePagesIn("o1/", "o10", /*max_point_deletes=*/100);
  ASSERT_TRUE(seen.ok()) << seen.status();
  EXPECT_EQ(*seen, 4u);  // two in RocksDB, two pending
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(Get(x, Key(1, i)), std::nullopt) << i;
  EXPECT_EQ(Get(x, Key(2, 1)), "other");
  // A put after the flush survives it, in RAM and once applied.
  ASSERT_TRUE(x.PutPage(Key(1, 2), "after").ok());
  ASSERT_TRUE(x.ApplyPending().ok());
  EXPECT_EQ(Get(x, Key(1, 1)), std::nullopt);
  EXPECT_EQ(Get(x, Key(1, 2)), "after");
  EXPECT_EQ(Get(x, Key(1, 3)), std::nullopt);
  EXPECT_EQ(Get(x, Key(2, 1)), "other");

  // The same through a RocksDB range tombstone (past max_point_deletes) and DeletePageRange.
  ASSERT_TRUE(x.PutPage(Key(3, 1), "new").ok());
  ASSERT_TRUE(x.PutPage(Key(3, 2), "new").ok());
  ASSERT_TRUE(x.DeletePagesIn("o3/", "o30", /*max_point_deletes=*/0).ok());
  ASSERT_TRUE(x.PutPage(Key(4, 1), "new").ok());
  ASSERT_TRUE(x.DeletePageRange("o4/", "o40").ok());
  ASSERT_TRUE(x.PutPage(Key(4, 2), "after").ok());
  for (const std::string& k : {Key(3, 1), Key(3, 2), Key(4, 1)}) EXPECT_EQ(Get(x, k), std::nullopt) << k;
  EXPECT_EQ(Get(x, Key(4, 2)), "after");
  ASSERT_TRUE(x.ApplyPending().ok());
  for (const std::string& k : {Key(3, 1), Key(3, 2), Key(4, 1)}) EXPECT_EQ(Get(x, k), std::nullopt) << k;
  EXPECT_EQ(Get(x, Key(4, 2)), "after");
}

TEST(PageIndexWriteBehindTest, ACleanCloseKeepsPendingWrites) {
  const std::string dir = testing::FreshDir("pidx");
  {
    auto index = PageIndex::Open(Options(dir));
    ASSERT_TRUE(index.ok());
    ASSERT_TRUE((*index)->PutPage(Key(1, 1), "kept").ok());
    ASSERT_TRUE((*index)->FlushPages().ok());  // what the engine's clean close does
    EXPECT_EQ((*index)->pending_writes(), 0u);
    ASSERT_TRUE((*index)->PutPage(Key(1, 2), "kept too").ok());
    // The destructor applies what came after.
  }
  auto index = PageIndex::Open(Options(dir));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(Get(**index, Key(1, 1)), "kept");
  EXPECT_EQ(Get(**index, Key(1, 2)), "kept too");
}

TEST(PageIndexWriteBehindTest, PendingWritesStayWithinTheBoundAndTheWriterAppliesThem) {
  PageIndexOptions o = Options(testing::FreshDir("pidx"));
  o.write_behind_max = 64;
  auto index = PageIndex::Open(o);
  ASSERT_TRUE(index.ok());
  PageIndex& x = **index;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(x.PutPage(Key(1, i), std::to_string(i)).ok());
    ASSERT_LT(x.pending_writes(), 64u) << "after put " << i;
  }
  auto stats = Stats(x);
  EXPECT_GE(stats["index_write_behind_inline"], 1000 / 64 - 1);
  EXPECT_EQ(stats["index_pending_writes"], double(x.pending_writes()));
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(Get(x, Key(1, i)), std::to_string(i));

  // With a batch size and an interval, the writer applies on its own.
  PageIndexOptions w = Options(testing::FreshDir("pidx"));
  w.write_behind_batch = 16;
  w.write_behind_interval_ms = 1;
  auto index2 = PageIndex::Open(w);
  ASSERT_TRUE(index2.ok());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*index2)->PutPage(Key(1, i), "v").ok());
  for (int t = 0; t < 2000 && (*index2)->pending_writes() > 0; ++t) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_EQ((*index2)->pending_writes(), 0u);
  EXPECT_GE(Stats(**index2)["index_write_behind_batches"], 1);
}

// Writers put rising versions of their own keys and sometimes flush a whole object; readers
// check that no key's version ever goes back, while the writer thread applies batches every
// millisecond (put-put-get and get-get across the pending set, its batches and RocksDB).
TEST(PageIndexWriteBehindTest, ConcurrentWritesBatchesAndReadsNeverGoBack) {
  PageIndexOptions o = Options(testing::FreshDir("pidx"));
  o.write_behind_batch = 32;
  o.write_behind_max = 256;
  o.write_behind_interval_ms = 1;
  auto index = PageIndex::Open(o);
  ASSERT_TRUE(index.ok());
  PageIndex& x = **index;
  constexpr int kWriters = 3, kKeys = 40, kVersions = 400;
  std::atomic<bool> stop{false};
  std::atomic<int> violations{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int v = 1; v <= kVersions; ++v) {
        std::vector<std::pair<std::string, std::optional<std::string>>> ops;
        for (int k = 0; k < kKeys; ++k) ops.emplace_back(Key(w, k), std::to_string(v));
        EXPECT_TRUE(x.WritePages(ops).ok());
      }
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      std::map<std::string, int> last;
      while (!stop.load()) {
        for (int w = 0; w < kWriters; ++w) {
          for (int k = 0; k < kKeys; k += 7) {
            auto v = x.GetPage(Key(w, k));
            if (!v.ok() || !v->has_value()) continue;
            const int version = std::stoi(**v);
            int& seen = last[Key(w, k)];
            if (version < seen) violations.fetch_add(1);
            seen = version;
          }
        }
      }
    });
  }
  for (int w = 0; w < kWriters; ++w) threads[w].join();
  stop.store(true);
  for (size_t t = kWriters; t < threads.size(); ++t) threads[t].join();
  EXPECT_EQ(violations.load(), 0);
  for (int w = 0; w < kWriters; ++w) {
    for (int k = 0; k < kKeys; ++k) EXPECT_EQ(Get(x, Key(w, k)), std::to_string(kVersions));
  }
  ASSERT_TRUE(x.ApplyPending().ok());
  EXPECT_EQ(*x.CountPages(), uint64_t{kWriters * kKeys});
}

TEST(PageStoreTest, TheRunningStoreSkipsSyncsAndACleanCloseKeepsItsPages) {
  const std::string dir = testing::FreshDir("pidx");
  {
    auto index = PageIndex::Open(Options(dir));
    ASSERT_TRUE(index.ok()) << index.status();
    for (int i = 0; i < 100; ++i) ASSERT_TRUE((*index)->PutPage(Key(1, i), std::to_string(i)).ok());
    ASSERT_TRUE((*index)->FlushPages().ok());  // an SST file written, which RocksDB syncs
    EXPECT_GT((*index)->syncs_skipped(), 0u);
    EXPECT_EQ(Stats(**index)["index_syncs_skipped"], double((*index)->syncs_skipped()));
    ASSERT_TRUE((*index)->PutPage(Key(1, 100), "after the flush").ok());
    ASSERT_TRUE((*index)->CloseClean().ok());
    ASSERT_TRUE((*index)->WriteMeta({{"state", "clean"}}, {}).ok());  // metadata works after it
  }
  auto index = PageIndex::Open(Options(dir));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(*(*index)->CountPages(), 101u);
  EXPECT_EQ(Get(**index, Key(1, 7)), "7");
  EXPECT_EQ(Get(**index, Key(1, 100)), "after the flush");
  EXPECT_EQ((*(*index)->GetMeta("state")).value_or(""), "clean");
}

TEST(PageStoreTest, AStoreThatDoesNotOpenIsCreatedEmptyAndTheMetadataStays) {
  const std::string dir = testing::FreshDir("pidx");
  {
    auto index = PageIndex::Open(Options(dir));
    ASSERT_TRUE(index.ok());
    ASSERT_TRUE((*index)->WriteMeta({{"pool", "P"}}, {}).ok());
    ASSERT_TRUE((*index)->PutPage(Key(1, 1), "lost").ok());
    ASSERT_TRUE((*index)->CloseClean().ok());
  }
  // What a power loss may leave of files never synced: CURRENT names a manifest that is not there.
  std::ofstream(dir + "/pages/CURRENT", std::ios::trunc) << "MANIFEST-999999\n";
  auto index = PageIndex::Open(Options(dir));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(Get(**index, Key(1, 1)), std::nullopt);
  EXPECT_EQ(*(*index)->CountPages(), 0u);
  EXPECT_EQ((*(*index)->GetMeta("pool")).value_or(""), "P");
  ASSERT_TRUE((*index)->PutPage(Key(1, 2), "new").ok());
  EXPECT_EQ(Get(**index, Key(1, 2)), "new");
}

TEST(PageStoreTest, AnOlderMetadataStoreGivesUpItsPagesAndKeepsItsMetadata) {
  const std::string dir = testing::FreshDir("pidx");
  {
    // The layout before the page store had its own directory: pages in a column family.
    rocksdb::DBOptions o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}}, {"pages", {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir, cfs, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[0], "pool", "P").ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], Key(1, 1), "old").ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  }
  {
    auto index = PageIndex::Open(Options(dir));
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ((*(*index)->GetMeta("pool")).value_or(""), "P");
    EXPECT_EQ(Get(**index, Key(1, 1)), std::nullopt);
    ASSERT_TRUE((*index)->PutPage(Key(1, 2), "new").ok());
    ASSERT_TRUE((*index)->CloseClean().ok());
  }
  std::vector<std::string> families;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &families).ok());
  EXPECT_EQ(families, std::vector<std::string>{rocksdb::kDefaultColumnFamilyName});
  auto index = PageIndex::Open(Options(dir));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(Get(**index, Key(1, 2)), "new");
}

TEST(PageStoreTest, DroppingEveryPageEmptiesTheStoreAndKeepsTheMetadata) {
  auto index = PageIndex::Open(Options(testing::FreshDir("pidx")));
  ASSERT_TRUE(index.ok());
  PageIndex& x = **index;
  ASSERT_TRUE(x.WriteMeta({{"pool", "P"}}, {}).ok());
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(x.PutPage(Key(1, i), "v").ok());
  ASSERT_TRUE(x.FlushPages().ok());
  ASSERT_TRUE(x.PutPage(Key(2, 1), "pending").ok());
  ASSERT_TRUE(x.DropAllPages().ok());
  EXPECT_EQ(x.pending_writes(), 0u);
  EXPECT_EQ(*x.CountPages(), 0u);
  EXPECT_EQ(Get(x, Key(1, 1)), std::nullopt);
  EXPECT_EQ(Get(x, Key(2, 1)), std::nullopt);
  EXPECT_EQ((*x.GetMeta("pool")).value_or(""), "P");
  ASSERT_TRUE(x.PutPage(Key(3, 1), "after").ok());
  EXPECT_EQ(Get(x, Key(3, 1)), "after");
}

}  // namespace
}  // namespace tmem::pool
