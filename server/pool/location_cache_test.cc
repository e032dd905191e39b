#include "server/pool/location_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "common/stats_testing.h"
#include "server/pool/index_codec.h"

namespace tmem::pool {
namespace {

IndexValue V(uint64_t seq) { return IndexValue{{seq, static_cast<uint32_t>(seq * 8)}, static_cast<uint32_t>(seq)}; }

TEST(LocationCacheTest, FindReturnsWhatWasSetForThatKeyOnly) {
  LocationCache c(1000);
  const std::string a = EncodePageKey(1, "obj", 5), b = EncodePageKey(1, "obj", 6), d = EncodePageKey(2, "obj", 5);
  c.Set(a, V(7), c.Begin(a, 0));
  auto got = c.Find(a, 0);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->loc.seq, 7u);
  EXPECT_EQ(got->loc.offset, 56u);
  EXPECT_EQ(got->crc, 7u);
  EXPECT_FALSE(c.Find(b, 0).has_value());
  EXPECT_FALSE(c.Find(d, 0).has_value());
  c.Set(a, V(9), c.Begin(a, 0));
  EXPECT_EQ(c.Find(a, 0)->loc.seq, 9u);
  EXPECT_EQ(c.entries(), 1u);
  c.Erase(a);
  EXPECT_FALSE(c.Find(a, 0).has_value());
  EXPECT_EQ(c.entries(), 0u);
}

TEST(LocationCacheTest, EraseObjectRemovesEveryPageOfThatObjectAndNoOther) {
  LocationCache c(1000);
  for (uint64_t i = 0; i < 20; ++i) {
    for (const char* obj : {"a", "ab", "b"}) {
      const std::string k = EncodePageKey(3, obj, i);
      c.Set(k, V(i + 1), c.Begin(k, 0));
    }
  }
  EXPECT_EQ(c.entries(), 60u);
  c.EraseObject(ObjectRangeBegin(3, "a"));
  for (uint64_t i = 0; i < 20; ++i) {
    EXPECT_FALSE(c.Find(EncodePageKey(3, "a", i), 0).has_value());
    EXPECT_TRUE(c.Find(EncodePageKey(3, "ab", i), 0).has_value());
    EXPECT_TRUE(c.Find(EncodePageKey(3, "b", i), 0).has_value());
  }
  EXPECT_EQ(c.entries(), 40u);
}

// The race the tickets close: a put or fill read or wrote the index before an object flush
// deleted there, and comes to the cache after the flush erased it.
TEST(LocationCacheTest, ATicketTakenBeforeAnObjectFlushCannotCacheAnEntry) {
  LocationCache c(1000);
  const std::string k = EncodePageKey(1, "inode", 3);
  c.Set(k, V(1), c.Begin(k, 0));
  LocationCache::Ticket late = c.Begin(k, 0);
  c.EraseObject(ObjectRangeBegin(1, "inode"));
  c.Set(k, V(2), late);
  EXPECT_FALSE(c.Find(k, 0).has_value());
  // A fresh ticket works again.
  c.Set(k, V(3), c.Begin(k, 0));
  EXPECT_EQ(c.Find(k, 0)->loc.seq, 3u);
}

TEST(LocationCacheTest, EntriesOfAnOlderPoolGenerationAreNeverReturned) {
  LocationCache c(1000);
  const std::string k = EncodePageKey(1, "inode", 3);
  c.Set(k, V(1), c.Begin(k, /*pool_gen=*/4));
  EXPECT_TRUE(c.Find(k, 4).has_value());
  EXPECT_FALSE(c.Find(k, 5).has_value());  // the pool was flushed: generation 5
  EXPECT_EQ(c.entries(), 0u);              // and the dead entry is gone
}

TEST(LocationCacheTest, StaysWithinItsCapacityDroppingTheOldestFirst) {
  const size_t cap = 64 * LocationCache::kShards;
  LocationCache c(cap);
  for (uint64_t i = 0; i < 10 * cap; ++i) {
    const std::string k = EncodePageKey(1, "o" + std::to_string(i % 997), i);
    c.Set(k, V(i + 1), c.Begin(k, 0));
    if (i % 1000 == 0) c.EraseObject(ObjectRangeBegin(1, "o" + std::to_string((i / 1000) % 997)));
    ASSERT_LE(c.entries(), cap);
  }
  EXPECT_GT(c.entries(), cap / 2);
  // The newest entries are there; the first ones were dropped.
  size_t newest = 0;
  for (uint64_t i = 10 * cap - 100; i < 10 * cap; ++i) {
    newest += c.Find(EncodePageKey(1, "o" + std::to_string(i % 997), i), 0).has_value();
  }
  EXPECT_EQ(newest, 100u);
  EXPECT_FALSE(c.Find(EncodePageKey(1, "o0", 0), 0).has_value());
}

TEST(LocationCacheTest, ZeroEntriesTurnsItOff) {
  LocationCache c(0);
  EXPECT_FALSE(c.enabled());
  const std::string k = EncodePageKey(1, "inode", 3);
  c.Set(k, V(1), c.Begin(k, 0));
  EXPECT_FALSE(c.Find(k, 0).has_value());
  EXPECT_EQ(c.entries(), 0u);
}

// --- Write-back: dirty entries ---------------------------------------------------------------

TEST(LocationCacheTest, ADirtyEntryIsNeverDroppedUnwrittenAndCleanWritesTheOldestFirst) {
  LocationCache c(64);  // one entry a shard
  std::vector<std::string> keys;
  for (uint64_t i = 0; i < 200; ++i) {
    keys.push_back(EncodePageKey(1, "obj", i));
    ASSERT_TRUE(c.Set(keys.back(), V(i + 1), c.Begin(keys.back(), 0), {}, /*dirty=*/true));
  }
  EXPECT_EQ(c.entries(), 200u) << "no dirty entry was dropped to make room";
  EXPECT_EQ(c.dirty_entries(), 200u);
  EXPECT_TRUE(c.needs_clean());
  std::map<std::string, std::string> written;
  const size_t n = c.Clean(
      /*all=*/false, 0, [](std::string_view, const IndexValue&, uint64_t) { return true; },
      [&](std::string_view k, std::string_view v) { written[std::string(k)] = std::string(v); });
  EXPECT_EQ(n, written.size());
  EXPECT_FALSE(c.needs_clean());
  EXPECT_LE(c.entries(), 64u);
  // Whatever left the cache was written first, with its value.
  for (uint64_t i = 0; i < 200; ++i) {
    if (c.Find(keys[i], 0).has_value()) continue;
    ASSERT_EQ(written.count(keys[i]), 1u) << i;
    EXPECT_EQ(written[keys[i]], EncodeIndexValue(V(i + 1)));
  }
  // A clean stop writes every entry still dirty, and drops those of dead generations.
  const std::string dead = EncodePageKey(2, "x", 0);
  c.Set(dead, V(500), c.Begin(dead, 0), {}, true);
  written.clear();
  c.Clean(
      /*all=*/true, 1000, [&](std::string_view k, const IndexValue&, uint64_t) { return k != dead; },
      [&](std::string_view k, std::string_view v) { written[std::string(k)] = std::string(v); });
  EXPECT_EQ(c.dirty_entries(), 0u);
  EXPECT_EQ(written.count(dead), 0u);
  EXPECT_FALSE(c.Find(dead, 0).has_value());
  MapVisitor v;
  c.VisitStats(v);
  EXPECT_EQ(v.values["index_cache_dropped_unwritten"], 1);
}

TEST(LocationCacheTest, AFillNeverReplacesADirtyEntry) {
  LocationCache c(1000);
  const std::string k = EncodePageKey(1, "obj", 1);
  ASSERT_TRUE(c.Set(k, V(2), c.Begin(k, 0), {}, /*dirty=*/true));
  c.Set(k, V(1), c.Begin(k, 0));  // a fill of what the index held before
  EXPECT_EQ(c.Find(k, 0)->loc.seq, 2u);
  EXPECT_EQ(c.dirty_entries(), 1u);
}

// A get that read the pool's generation before a FlushPool must neither erase nor replace an
// entry a later put made under the new generation (the only copy of the newest version).
TEST(LocationCacheTest, AnOlderGenerationNeverErasesOrReplacesANewerEntry) {
  LocationCache c(1000);
  const std::string k = EncodePageKey(1, "obj", 1);
  ASSERT_TRUE(c.Set(k, V(5), c.Begin(k, /*pool_gen=*/1), {}, /*dirty=*/true));
  EXPECT_FALSE(c.Find(k, /*pool_gen=*/0).has_value());  // a miss for the stale reader ...
  c.Set(k, V(3), c.Begin(k, 0));                        // ... whose fill is refused
  ASSERT_TRUE(c.Find(k, 1).has_value()) << "the newer entry was erased";
  EXPECT_EQ(c.Find(k, 1)->loc.seq, 5u);
  EXPECT_EQ(c.dirty_entries(), 1u);
  // An entry of an older generation than the reader's is dead.
  EXPECT_FALSE(c.Find(k, 2).has_value());
  EXPECT_EQ(c.entries(), 0u);
  EXPECT_EQ(c.dirty_entries(), 0u);
}

// --- Records of erased objects ---------------------------------------------------------------

// The FIFO and CLOCK records point at their object: an object erased (a flush, its last page
// evicted) while records still name it must stay until they are gone, and come back whole when
// a page of it is set again. A random mix of every operation on a small cache with a DRAM tier,
// checked against a model: a get finds nothing or the newest version set, never an erased or
// older one; a dirty entry is never lost unwritten. (The asan configuration runs this too.)
TEST(LocationCacheTest, RandomOperationsNeverReturnAnErasedOrOlderVersion) {
  LocationCache c(128, /*ram_bytes=*/64 * 512);
  std::mt19937_64 rng(7);
  std::map<std::string, uint64_t> newest;   // key -> seq of its newest version (absent: erased)
  std::map<std::string, uint64_t> written;  // what Clean wrote, by key
  std::vector<uint8_t> page(512), out(512);
  uint64_t seq = 0;
  const char* objects[] = {"a", "b", "c", "a-rather-long-object-name-past-the-inline-string"};
  for (int op = 0; op < 40000; ++op) {
    const std::string obj = objects[rng() % 4];
    const std::string k = EncodePageKey(1, obj, rng() % 24);
    switch (rng() % 8) {
      case 0:
      case 1: {  // a put: dirty, with its page in RAM half of the time
        ++seq;
        std::fill(page.begin(), page.end(), static_cast<uint8_t>(seq));
        ASSERT_TRUE(c.Set(k, V(seq), c.Begin(k, 0),
                          (rng() & 1) ? std::span<const uint8_t>(page) : std::span<const uint8_t>(),
                          /*dirty=*/true));
        newest[k] = seq;
        break;
      }
      case 2:  // a fill of what the index holds (the model's newest, once written)
        if (auto w = written.find(k); w != written.end() && newest.count(k) && newest[k] == w->second) {
          c.Set(k, V(w->second), c.Begin(k, 0));
        }
        break;
      case 3:
        c.Erase(k);
        newest.erase(k);
        written.erase(k);
        break;
      case 4:
        c.EraseObject(ObjectRangeBegin(1, obj));
        for (auto it = newest.begin(); it != newest.end();) {
          it = it->first.rfind(ObjectRangeBegin(1, obj), 0) == 0 && it->first.size() == k.size() ? newest.erase(it)
                                                                                                 : std::next(it);
        }
        break;
      case 5:
        c.Clean(
            /*all=*/(rng() % 16) == 0, 1 << 20, [](std::string_view, const IndexValue&, uint64_t) { return true; },
            [&](std::string_view key, std::string_view v) {
              written[std::string(key)] = DecodeIndexValue(v)->loc.seq;
            });
        break;
      default: {
        bool from_ram = false;
        const auto buffer = [&] { return std::span<uint8_t>(out); };
        const absl::FunctionRef<std::span<uint8_t>()> out_for = buffer;
        std::optional<IndexValue> got = c.Find(k, 0, &out_for, &from_ram);
        if (!got.has_value()) {
          // Only a clean (written) entry may be dropped.
          if (newest.count(k)) ASSERT_EQ(written[k], newest[k]) << "a dirty entry was lost: " << op;
          break;
        }
        ASSERT_EQ(newest.count(k), 1u) << "an erased entry came back: " << op;
        ASSERT_EQ(got->loc.seq, newest[k]) << op;
        if (from_ram) ASSERT_EQ(out[0], static_cast<uint8_t>(newest[k])) << op;
      }
    }
  }
  EXPECT_LE(c.ram_bytes(), 64u * 512);
}

}  // namespace
}  // namespace tmem::pool
