#include "server/pool/pool_format.h"

#include <gtest/gtest.h>

namespace tmem::pool {
namespace {

TEST(PoolFormatTest, APoolRecordRoundTripsAndAMalformedOneIsRefused) {
  PoolInfo p;
  p.id = 0x01020304;
  p.kind = PoolKind::kShared;
  p.page_bytes = 4096;
  for (size_t i = 0; i < p.uuid.size(); ++i) p.uuid[i] = static_cast<uint8_t>(i * 7);
  p.tenant = "node-a";
  const std::string rec = EncodePoolRecord(p);
  ASSERT_EQ(rec.size(), 27u + p.tenant.size());
  EXPECT_EQ(static_cast<uint8_t>(rec[0]), kPoolRecordVersion);
  auto back = DecodePoolRecord(rec);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->id, p.id);
  EXPECT_EQ(back->kind, p.kind);
  EXPECT_EQ(back->page_bytes, p.page_bytes);
  EXPECT_EQ(back->uuid, p.uuid);
  EXPECT_EQ(back->tenant, p.tenant);
  EXPECT_FALSE(DecodePoolRecord(rec.substr(0, rec.size() - 1)).has_value()) << "a short record";
  std::string other = rec;
  other[0] = static_cast<char>(kPoolRecordVersion + 1);
  EXPECT_FALSE(DecodePoolRecord(other).has_value()) << "another version";
  other = rec;
  other[1] = 9;
  EXPECT_FALSE(DecodePoolRecord(other).has_value()) << "an unknown kind";
}

TEST(PoolFormatTest, AVersionOneRecordGetsAnOwnerAndAVersionTwoRecordNeedsOne) {
  PoolInfo p;
  p.id = 7;
  p.kind = PoolKind::kPrivate;
  p.tenant = "";
  std::string v1 = EncodePoolRecord(p);
  v1[0] = 1;  // version 1: private pools recorded no owner
  uint8_t version = 0;
  auto back = DecodePoolRecord(v1, "legacy", &version);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(version, 1);
  EXPECT_EQ(back->tenant, "legacy") << "a private pool of an older device belongs to the configured owner";
  p.kind = PoolKind::kShared;
  p.tenant = "node-a";
  std::string shared_v1 = EncodePoolRecord(p);
  shared_v1[0] = 1;
  back = DecodePoolRecord(shared_v1, "legacy");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->tenant, "node-a") << "a shared pool keeps its tenant as owner";
  p.kind = PoolKind::kPrivate;
  p.tenant = "";
  EXPECT_FALSE(DecodePoolRecord(EncodePoolRecord(p)).has_value()) << "a version 2 record without an owner";
}

TEST(PoolFormatTest, ARecordOfAPoolTheEngineNeverCreatesIsRefused) {
  PoolInfo p;
  p.id = 3;
  p.kind = PoolKind::kShared;
  p.tenant = "node-a";
  for (uint32_t bad : {0u, 511u, 1000u, 4097u, 128u << 10}) {
    p.page_bytes = bad;
    EXPECT_FALSE(DecodePoolRecord(EncodePoolRecord(p)).has_value()) << "page size " << bad;
  }
  for (uint32_t good : {512u, 4096u, 64u << 10}) {
    p.page_bytes = good;
    EXPECT_TRUE(DecodePoolRecord(EncodePoolRecord(p)).has_value()) << "page size " << good;
  }
  p.page_bytes = 4096;
  p.tenant = std::string(kMaxTenantBytes + 1, 'a');
  EXPECT_FALSE(DecodePoolRecord(EncodePoolRecord(p)).has_value()) << "an owner longer than the engine takes";
  p.tenant = std::string("a\0b", 3);
  EXPECT_FALSE(DecodePoolRecord(EncodePoolRecord(p)).has_value()) << "an owner with a NUL";
}

TEST(PoolFormatTest, AVersionOneSharedPoolWithoutANameIsReadAgainAfterItsUpgrade) {
  // Version 1 let a shared pool's name be empty; decoded as is, the version 2 record the engine
  // writes at start had no owner, and the next start refused it (DataLoss).
  PoolInfo p;
  p.id = 9;
  p.kind = PoolKind::kShared;
  p.tenant = "";
  std::string v1 = EncodePoolRecord(p);
  v1[0] = 1;
  auto back = DecodePoolRecord(v1, "legacy");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->tenant, "legacy");
  auto upgraded = DecodePoolRecord(EncodePoolRecord(*back), "someone else");
  ASSERT_TRUE(upgraded.has_value());
  EXPECT_EQ(upgraded->tenant, "legacy");
}

TEST(PoolFormatTest, PoolKeysSortByIdAndTheStateRecordHasItsSize) {
  EXPECT_LT(PoolMetaKey(1), PoolMetaKey(2));
  EXPECT_LT(PoolMetaKey(255), PoolMetaKey(256));  // big-endian
  EXPECT_EQ(PoolMetaKey(1).rfind(kPoolPrefix, 0), 0u);
  EngineStateRecord st{};
  st.device_uuid[3] = 9;
  st.clean_instance = 42;
  auto back = DecodeEngineState(EncodeEngineState(st));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->clean_instance, 42u);
  EXPECT_EQ(back->device_uuid[3], 9);
  EXPECT_FALSE(DecodeEngineState("short").has_value());
  Uuid u{};
  EXPECT_NE(SharedPoolKey("a", u), SharedPoolKey("b", u));
}

}  // namespace
}  // namespace tmem::pool
