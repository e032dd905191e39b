// libFuzzer target over the page pools' records in RocksDB (pool_format.h, index_codec.h): the
// input is one stored value or key, given to every decoder — DecodePoolRecord, DecodeEngineState,
// DecodeIndexValue, PoolOfPageKey — and read as (pool id, object key, page index) to build keys.
// Invariants: a pool record that decodes is one the engine could have written (kind, page size
// and owner within the engine's rules, docs/format.md), a version 2 record encodes back to the
// same bytes and a version 1 record to one that decodes the same (the upgrade written at start
// must be readable at the next start); the fixed-size records decode exactly at their size and
// encode back to the same bytes; a page key PoolOfPageKey takes is a whole key that encodes back
// to itself; a page key lies inside its object's and its pool's ranges and outside any other's;
// a slot key has the documented layout.
//   scripts/fuzz_formats.sh [RUNS]           (libFuzzer)
//   //server/pool:pool_format_fuzz_test      (the default suite: the seeds and a few thousand mutations)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fuzz_support.h"
#include "server/log/log_format.h"
#include "server/pool/index_codec.h"
#include "server/pool/pool_format.h"
#include "server/pool/pool_types.h"

namespace tmem::pool {
namespace {

constexpr char kLegacyOwner[] = "legacy";  // the v1_private_owner handed to the decoder

uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
uint64_t Be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

bool SamePool(const PoolInfo& a, const PoolInfo& b) {
  return a.id == b.id && a.kind == b.kind && a.page_bytes == b.page_bytes && a.uuid == b.uuid && a.tenant == b.tenant;
}

// What the engine creates (PoolEngine::CreatePoolLocked, docs/format.md): the only pools a
// record may describe.
bool CreatablePool(const PoolInfo& p) {
  const bool page_ok =
      p.page_bytes >= kMinPageBytes && p.page_bytes <= kMaxPageBytes && (p.page_bytes & (p.page_bytes - 1)) == 0;
  const bool owner_ok =
      !p.tenant.empty() && p.tenant.size() <= kMaxTenantBytes && p.tenant.find('\0') == std::string::npos;
  return (p.kind == PoolKind::kPrivate || p.kind == PoolKind::kShared) && page_ok && owner_ok;
}

void CheckPoolRecord(std::string_view s) {
  uint8_t version = 0;
  const std::optional<PoolInfo> p = DecodePoolRecord(s, kLegacyOwner, &version);
  if (!p.has_value()) return;
  TMEM_FUZZ_CHECK(s.size() >= 27 && s.size() == size_t{27} + static_cast<uint8_t>(s[26]));
  TMEM_FUZZ_CHECK(version == static_cast<uint8_t>(s[0]) && (version == 1 || version == kPoolRecordVersion));
  TMEM_FUZZ_CHECK(CreatablePool(*p));
  uint32_t id, page_bytes;
  std::memcpy(&id, s.data() + 2, 4);
  std::memcpy(&page_bytes, s.data() + 6, 4);
  TMEM_FUZZ_CHECK(p->id == id && p->page_bytes == page_bytes);
  TMEM_FUZZ_CHECK(static_cast<uint8_t>(p->kind) == static_cast<uint8_t>(s[1]));
  TMEM_FUZZ_CHECK(std::memcmp(p->uuid.data(), s.data() + 10, 16) == 0);
  const std::string encoded = EncodePoolRecord(*p);
  if (version == kPoolRecordVersion) {
    TMEM_FUZZ_CHECK(p->tenant == s.substr(27));
    TMEM_FUZZ_CHECK(encoded == s);
  } else {
    // The engine writes a version 1 record again as version 2 at start; the next start reads it.
    uint8_t again_version = 0;
    const std::optional<PoolInfo> again = DecodePoolRecord(encoded, "someone else", &again_version);
    TMEM_FUZZ_CHECK(again.has_value() && again_version == kPoolRecordVersion && SamePool(*again, *p));
  }
}

void CheckFixedRecords(std::string_view s) {
  const std::optional<EngineStateRecord> st = DecodeEngineState(s);
  TMEM_FUZZ_CHECK(st.has_value() == (s.size() == sizeof(EngineStateRecord)));
  if (st.has_value()) TMEM_FUZZ_CHECK(EncodeEngineState(*st) == s);
  const std::optional<IndexValue> v = DecodeIndexValue(s);
  TMEM_FUZZ_CHECK(v.has_value() == (s.size() == 16));
  if (v.has_value()) TMEM_FUZZ_CHECK(EncodeIndexValue(*v) == s);
}

bool Inside(const std::string& key, const std::string& begin, const std::string& end) {
  return begin <= key && key < end;
}

// The ranges DeleteRange is given for flush_object and flush_pool hold exactly their keys.
void CheckKeyOrder(PoolId pool, std::string_view object, uint64_t index) {
  const std::string key = EncodePageKey(pool, object, index);
  TMEM_FUZZ_CHECK(key.size() == 4 + 1 + object.size() + 8);
  TMEM_FUZZ_CHECK(PoolOfPageKey(key) == std::optional<PoolId>(pool));
  TMEM_FUZZ_CHECK(Inside(key, ObjectRangeBegin(pool, object), ObjectRangeEnd(pool, object)));
  TMEM_FUZZ_CHECK(Inside(key, PoolRangeBegin(pool), PoolRangeEnd(pool)));
  if (pool != UINT32_MAX) {
    TMEM_FUZZ_CHECK(!Inside(key, PoolRangeBegin(pool + 1), PoolRangeEnd(pool + 1)));
    TMEM_FUZZ_CHECK(PoolRangeEnd(pool) <= PoolRangeBegin(pool + 1));
  }
  if (pool != 0) TMEM_FUZZ_CHECK(!Inside(key, PoolRangeBegin(pool - 1), PoolRangeEnd(pool - 1)));
  // Another object of the same pool: a longer one, a shorter one, one with a byte changed.
  std::vector<std::string> others;
  if (object.size() < kMaxObjectKeyBytes) others.push_back(std::string(object) + '\0');
  if (!object.empty()) {
    others.push_back(std::string(object.substr(0, object.size() - 1)));
    std::string changed(object);
    changed.back() = static_cast<char>(changed.back() ^ 1);
    others.push_back(changed);
  }
  for (const std::string& other : others) {
    TMEM_FUZZ_CHECK(!Inside(key, ObjectRangeBegin(pool, other), ObjectRangeEnd(pool, other)));
  }
  // The slot key: pool id BE | object length | object zero-padded to 24 | index BE | 0 0 0.
  uint8_t slot[log::kSlotKeyBytes];
  EncodeSlotKey(pool, object, index, slot);
  TMEM_FUZZ_CHECK(Be32(slot) == pool && slot[4] == object.size());
  TMEM_FUZZ_CHECK(std::memcmp(slot + 5, object.data(), object.size()) == 0);
  for (size_t i = 5 + object.size(); i < 29; ++i) TMEM_FUZZ_CHECK(slot[i] == 0);
  TMEM_FUZZ_CHECK(Be64(slot + 29) == index && slot[37] == 0 && slot[38] == 0 && slot[39] == 0);
}

void CheckPageKey(std::string_view s) {
  const std::optional<PoolId> pool = PoolOfPageKey(s);
  if (pool.has_value()) {
    // Only a whole key is taken: its object length says where the page index is.
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    TMEM_FUZZ_CHECK(s.size() >= 13 && p[4] <= kMaxObjectKeyBytes && s.size() == size_t{4} + 1 + p[4] + 8);
    TMEM_FUZZ_CHECK(*pool == Be32(p));
    TMEM_FUZZ_CHECK(EncodePageKey(*pool, s.substr(5, p[4]), Be64(p + 5 + p[4])) == s);
  }
  // The input read as a handle: pool id BE u32, object length u8 (mod 25), object, index BE u64.
  if (s.size() < 5) return;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  const size_t len = std::min<size_t>(p[4] % (kMaxObjectKeyBytes + 1), s.size() - 5);
  uint8_t index_bytes[8] = {};
  std::memcpy(index_bytes, s.data() + 5 + len, std::min<size_t>(8, s.size() - 5 - len));
  CheckKeyOrder(Be32(p), s.substr(5, len), Be64(index_bytes));
}

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  PoolInfo shared;
  shared.id = 7;
  shared.kind = PoolKind::kShared;
  shared.page_bytes = 4096;
  for (size_t i = 0; i < shared.uuid.size(); ++i) shared.uuid[i] = static_cast<uint8_t>(0xA0 + i);
  shared.tenant = "node-1";
  seeds.push_back(EncodePoolRecord(shared));
  PoolInfo priv;
  priv.id = 0x01020304;
  priv.page_bytes = 512;
  priv.tenant = std::string(kMaxTenantBytes, 't');
  seeds.push_back(EncodePoolRecord(priv));
  // Version 1 records (an older device): the same layout, the owner only for shared pools.
  std::string v1 = EncodePoolRecord(shared);
  v1[0] = 1;
  seeds.push_back(v1);
  priv.tenant.clear();
  v1 = EncodePoolRecord(priv);
  v1[0] = 1;
  seeds.push_back(v1);
  EngineStateRecord state{};
  for (int i = 0; i < 16; ++i) state.device_uuid[i] = static_cast<uint8_t>(i + 1);
  state.clean_instance = 42;
  seeds.push_back(EncodeEngineState(state));
  seeds.push_back(EncodeIndexValue(IndexValue{.loc = {.seq = 12345, .offset = 8192}, .crc = 0xDEADBEEF}));
  seeds.push_back(EncodePageKey(1, "inode-77", 3));
  seeds.push_back(EncodePageKey(UINT32_MAX, std::string(kMaxObjectKeyBytes, '\xFF'), UINT64_MAX));
  seeds.push_back(EncodePageKey(0, "", 0));
  return seeds;
}

}  // namespace
}  // namespace tmem::pool

std::vector<std::string> TmemFuzzSeeds() { return tmem::pool::Seeds(); }

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  tmem::fuzz::WriteSeedsIfAsked(TmemFuzzSeeds());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  tmem::pool::CheckPoolRecord(s);
  tmem::pool::CheckFixedRecords(s);
  tmem::pool::CheckPageKey(s);
  return 0;
}
