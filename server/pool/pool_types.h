// Value types of the page pool engine: pool ids, kinds, handles, limits and the pages of batches.
#ifndef TMEM_SERVER_POOL_POOL_TYPES_H_
#define TMEM_SERVER_POOL_POOL_TYPES_H_

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

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

// A copy of one pool's counters (PoolEngine::GetPoolStats).
struct PoolStats {
  PoolInfo info;
  uint64_t puts = 0, puts_dropped = 0, gets_hit = 0, gets_miss = 0;
  uint64_t flush_page = 0, flush_object = 0, flush_pool = 0;
};

// One page of PoolEngine::PutMany, and one handle of GetMany (`out`: the page's buffer).
struct PagePut {
  std::string_view object;
  uint64_t index = 0;
  std::span<const uint8_t> page;
};
struct PageGet {
  std::string_view object;
  uint64_t index = 0;
  std::span<uint8_t> out;
};

// The owner of pools made without naming one, and of private pools from devices of pool
// record version 1 (which recorded no owner): the plaintext peers' tenant by default.
inline constexpr char kDefaultOwner[] = "local";

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_POOL_TYPES_H_
