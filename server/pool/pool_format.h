// The page pools' metadata records in RocksDB's "default" column family (page_index.h), beside
// the page keys and values of index_codec.h. Integers little-endian unless noted. Prose:
// docs/format.md.
//
// Keys:
//   "state"          the engine state (EngineStateRecord)
//   "next_pool_id"   u32: the next pool id to hand out
//   "pool/" + u32 BE one pool record per pool
//
// Pool record, version 2 (27 + owner bytes):
//   0 version u8 (kPoolRecordVersion) | 1 kind u8 (PoolKind) | 2 pool id u32 | 6 page bytes u32 |
//   10 uuid 16 bytes | 26 owner length u8 | 27 owner bytes
// Version 1 had the same layout, but the name was a shared pool's UUID namespace only (private
// pools had none). Decoding a version 1 record gives its shared pools that name as owner and its
// private pools (and a shared pool with an empty name) `v1_private_owner`; the engine then
// writes the record again as version 2.
#ifndef TMEM_SERVER_POOL_POOL_FORMAT_H_
#define TMEM_SERVER_POOL_POOL_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/pool/pool_types.h"

namespace tmem::pool {

inline constexpr char kStateKey[] = "state";
inline constexpr char kNextPoolIdKey[] = "next_pool_id";
inline constexpr char kPoolPrefix[] = "pool/";
inline constexpr uint8_t kPoolRecordVersion = 2;

// The engine state: which device the index belongs to, and whether the last run stopped cleanly.
struct EngineStateRecord {  // 24 bytes
  uint8_t device_uuid[16];  //  0 the log's (superblock) UUID
  uint64_t clean_instance;  // 16 the log instance that stopped cleanly; 0 while running
};
static_assert(sizeof(EngineStateRecord) == 24);

std::string PoolMetaKey(PoolId id);
std::string EncodePoolRecord(const PoolInfo& p);
// nullopt for a record of an unknown version, a bad kind or a wrong length, and for a pool the
// engine never creates (a page size that is not a power of two from kMinPageBytes to
// kMaxPageBytes; an owner that is empty, longer than kMaxTenantBytes or holds a NUL).
// *version (if given) is the record's version.
std::optional<PoolInfo> DecodePoolRecord(std::string_view s, std::string_view v1_private_owner = kDefaultOwner,
                                         uint8_t* version = nullptr);
std::string EncodeEngineState(const EngineStateRecord& st);
std::optional<EngineStateRecord> DecodeEngineState(std::string_view s);
// The registry's key of a shared pool: tenant, a zero byte, uuid.
std::string SharedPoolKey(std::string_view tenant, const Uuid& uuid);

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_POOL_FORMAT_H_
