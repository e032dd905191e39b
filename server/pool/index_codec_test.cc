#include "server/pool/index_codec.h"

#include <gtest/gtest.h>

#include <string>

#include "server/pool/pool_format.h"

namespace tmem::pool {
namespace {

TEST(IndexCodecTest, OnlyAWholePageKeyNamesItsPool) {
  const std::string key = EncodePageKey(0x01020304, "inode-7", 99);
  EXPECT_EQ(PoolOfPageKey(key), std::optional<PoolId>(0x01020304));
  EXPECT_EQ(PoolOfPageKey(EncodePageKey(5, "", 0)), std::optional<PoolId>(5));
  EXPECT_EQ(PoolOfPageKey(EncodePageKey(6, std::string(kMaxObjectKeyBytes, 'x'), 1)), std::optional<PoolId>(6));
  // Keys EncodePageKey never writes (a damaged index): once taken for pages of the pool in their
  // first 4 bytes, so the compaction filter kept them and the start counted them in its usage.
  EXPECT_FALSE(PoolOfPageKey(key.substr(0, key.size() - 1)).has_value()) << "a short key";
  EXPECT_FALSE(PoolOfPageKey(key + "x").has_value()) << "a long key";
  std::string bad_length = key;
  bad_length[4] = 2;
  EXPECT_FALSE(PoolOfPageKey(bad_length).has_value()) << "an object length that does not match";
  std::string oversize(4 + 1 + 30 + 8, 'k');
  oversize[4] = 30;
  EXPECT_FALSE(PoolOfPageKey(oversize).has_value()) << "an object key longer than kMaxObjectKeyBytes";
  for (const std::string& meta : {std::string(kStateKey), std::string(kNextPoolIdKey), PoolMetaKey(1)}) {
    EXPECT_FALSE(PoolOfPageKey(meta).has_value()) << "the metadata key " << meta;
  }
}

}  // namespace
}  // namespace tmem::pool
