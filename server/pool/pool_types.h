// Value types of the page pool engine: pool ids, kinds, handles and limits.
#ifndef TMEM_SERVER_POOL_POOL_TYPES_H_
#define TMEM_SERVER_POOL_POOL_TYPES_H_

#include <array>
#include <cstdint>
#include <string>

namespace tmem::pool {

using PoolId = uint32_t;
using Uuid = std::array<uint8_t, 16>;

inline constexpr uint32_t kDefaultPageBytes = 4096;
inline constexpr uint32_t kMinPageBytes = 512;
inline constexpr uint32_t kMaxPageBytes = 64 << 10;
// The kernel's cleancache_filekey: an inode number or a file handle of up to 24 bytes.
inline constexpr uint32_t kMaxObjectKeyBytes = 24;
inline constexpr uint32_t kMaxTenantBytes = 64;

enum class PoolKind : uint8_t { kPrivate = 1, kShared = 2 };

// A get's expected outcomes. A miss is normal for an ephemeral cache.
enum class GetOutcome { kHit, kMiss };

struct PoolInfo {
  PoolId id = 0;
  PoolKind kind = PoolKind::kPrivate;
  uint32_t page_bytes = kDefaultPageBytes;
  Uuid uuid{};  // shared pools only
  // The owner: the tenant that created the pool (DESIGN.md "Ownership"). Only its owner (and
  // admins) reach it; a shared pool's UUID is unique within its owner.
  std::string tenant = "local";
};

// The owner of pools made without naming one, and of private pools from devices of pool
// record version 1 (which recorded no owner): the plaintext peers' tenant by default.
inline constexpr char kDefaultOwner[] = "local";

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_POOL_TYPES_H_
