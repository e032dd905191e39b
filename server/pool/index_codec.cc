#include "server/pool/index_codec.h"

#include <cstring>

namespace tmem::pool {
namespace {

void PutBe32(std::string* s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void PutBe64(std::string* s, uint64_t v) {
  for (int i = 7; i >= 0; --i) s->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

}  // namespace

std::string EncodePageKey(PoolId pool, std::string_view object, uint64_t index) {
  std::string k = ObjectRangeBegin(pool, object);
  PutBe64(&k, index);
  return k;
}

std::string ObjectRangeBegin(PoolId pool, std::string_view object) {
  std::string k;
  k.reserve(4 + 1 + object.size() + 8);
  PutBe32(&k, pool);
  k.push_back(static_cast<char>(object.size()));
  k.append(object);
  return k;
}

std::string ObjectRangeEnd(PoolId pool, std::string_view object) {
  // Every key of the object is the prefix plus exactly 8 bytes, so the prefix plus nine 0xFF
  // bytes sorts after all of them and before any other object's keys.
  std::string k = ObjectRangeBegin(pool, object);
  k.append(9, '\xFF');
  return k;
}

std::string PoolRangeBegin(PoolId pool) {
  std::string k;
  PutBe32(&k, pool);
  return k;
}

std::string PoolRangeEnd(PoolId pool) {
  // pool + 1 would wrap for the last id; the 4-byte id plus one 0xFF... byte run works for all.
  std::string k;
  PutBe32(&k, pool);
  k.append(1 + kMaxObjectKeyBytes + 8 + 1, '\xFF');
  return k;
}

std::optional<PoolId> PoolOfPageKey(std::string_view key) {
  // A whole key only: its object length must say where the page index is, or it is not one
  // EncodePageKey wrote (a damaged index; the compaction filter drops it as stale).
  if (key.size() < 4 + 1 + 8) return std::nullopt;
  const auto* p = reinterpret_cast<const uint8_t*>(key.data());
  if (p[4] > kMaxObjectKeyBytes || key.size() != size_t{4} + 1 + p[4] + 8) return std::nullopt;
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

void EncodeIndexValueTo(const IndexValue& v, char (&out)[kIndexValueBytes]) {
  std::memcpy(&out[0], &v.loc.seq, 8);
  std::memcpy(&out[8], &v.loc.offset, 4);
  std::memcpy(&out[12], &v.crc, 4);
}

std::string EncodeIndexValue(const IndexValue& v) {
  char out[kIndexValueBytes];
  EncodeIndexValueTo(v, out);
  return std::string(out, kIndexValueBytes);
}

std::optional<IndexValue> DecodeIndexValue(std::string_view bytes) {
  if (bytes.size() != 16) return std::nullopt;
  IndexValue v;
  std::memcpy(&v.loc.seq, bytes.data(), 8);
  std::memcpy(&v.loc.offset, bytes.data() + 8, 4);
  std::memcpy(&v.crc, bytes.data() + 12, 4);
  return v;
}

void EncodeSlotKey(PoolId pool, std::string_view object, uint64_t index, uint8_t (&out)[log::kSlotKeyBytes]) {
  std::memset(out, 0, sizeof(out));
  for (int i = 0; i < 4; ++i) out[i] = static_cast<uint8_t>(pool >> (8 * (3 - i)));
  out[4] = static_cast<uint8_t>(object.size());
  std::memcpy(out + 5, object.data(), object.size() <= kMaxObjectKeyBytes ? object.size() : kMaxObjectKeyBytes);
  for (int i = 0; i < 8; ++i) out[29 + i] = static_cast<uint8_t>(index >> (8 * (7 - i)));
}

}  // namespace tmem::pool
