// Encodings of the page index (RocksDB) and of the log's per-slot key.
//
// Index key (big-endian, so that one pool, and one object of a pool, are contiguous ranges):
//   pool id u32 | object key length u8 | object key bytes | page index u64
// Index value (16 bytes, little-endian): segment seq u64 | offset in segment u32 | page CRC32C u32
// Slot key (40 bytes, stored in the segment's slot table for recovery and inspection):
//   pool id u32 BE | object key length u8 | object key, zero-padded to 24 | page index u64 BE | 0 0 0
#ifndef TMEM_SERVER_POOL_INDEX_CODEC_H_
#define TMEM_SERVER_POOL_INDEX_CODEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/log/log_format.h"
#include "server/log/segment_log.h"
#include "server/pool/pool_types.h"

namespace tmem::pool {

struct IndexValue {
  log::Location loc;
  uint32_t crc = 0;
};

// `object` must be at most kMaxObjectKeyBytes (checked by the caller).
std::string EncodePageKey(PoolId pool, std::string_view object, uint64_t index);
// [begin, end) covering every page of `object` in `pool`.
std::string ObjectRangeBegin(PoolId pool, std::string_view object);
std::string ObjectRangeEnd(PoolId pool, std::string_view object);
// [begin, end) covering every page of `pool`.
std::string PoolRangeBegin(PoolId pool);
std::string PoolRangeEnd(PoolId pool);
// The pool id of an encoded page key; nullopt for a malformed key.
std::optional<PoolId> PoolOfPageKey(std::string_view key);

inline constexpr size_t kIndexValueBytes = 16;
std::string EncodeIndexValue(const IndexValue& v);
// The same bytes into `out` (no allocation).
void EncodeIndexValueTo(const IndexValue& v, char (&out)[kIndexValueBytes]);
std::optional<IndexValue> DecodeIndexValue(std::string_view bytes);

void EncodeSlotKey(PoolId pool, std::string_view object, uint64_t index, uint8_t (&out)[log::kSlotKeyBytes]);

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_INDEX_CODEC_H_
