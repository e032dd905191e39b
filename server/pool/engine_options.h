// What a PoolEngine is opened with: its device and metadata directory, the log's options, the
// RAM it may use (index cache, DRAM tier), bounds on waits, and quotas per owner (tenant).
#ifndef TMEM_SERVER_POOL_ENGINE_OPTIONS_H_
#define TMEM_SERVER_POOL_ENGINE_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "server/io/block_device.h"
#include "server/log/segment_log.h"
#include "server/pool/pool_types.h"

namespace tmem::pool {

struct EngineOptions {
  io::BlockDevice* device = nullptr;  // borrowed; formatted with SegmentLog::Format; outlives the engine
  std::string metadata_dir;           // RocksDB directory, created if missing
  log::LogOptions log;
  // Enough for the index blocks of a few million pages: a lookup that misses it reads an SST file.
  size_t index_block_cache_bytes = 64 << 20;
  size_t index_write_buffer_bytes = 8 << 20;
  // After a RocksDB background error, DB::Resume() is retried from the first backoff doubling up
  // to the last (page_index.h).
  int64_t index_resume_backoff_min_ms = 100;
  int64_t index_resume_backoff_max_ms = 10'000;
  // Page index entries kept in RAM in front of RocksDB (location_cache.h); about 80 bytes
  // each. 0 turns the cache off.
  size_t index_cache_entries = 1 << 21;
  // Page index writes accepted ahead of RocksDB (page_index.h, write-behind): a put costs a hash
  // insert, and RocksDB takes them in batches. 0: every index write reaches RocksDB before the
  // put returns.
  size_t index_write_behind = 16384;
  // Write-back (location_cache.h): a put's index entry stays only in the RAM cache (dirty) and
  // reaches the page index when the cache drops it or at a clean stop, so that a page put again
  // while cached costs no RocksDB write at all. Needs index_cache_entries and index_write_behind.
  bool index_write_back = true;
  // The DRAM tier (location_cache.h): page bytes kept in RAM beside their index entries, so that
  // hot pages are served without a device read. Write-through: every put still goes to the log.
  // 0 turns it off; it needs index_cache_entries.
  size_t ram_cache_bytes = 256 << 20;
  uint32_t max_pools = 1 << 16;
  uint32_t lock_stripes = 1024;
  // How long a put waits for room in the log (a free write buffer, a reclaimed segment, the
  // sequence lease) before its page is dropped and counted (puts_dropped_no_room). The wait
  // holds no lock another operation needs (the handle's stripe is released while it waits).
  int64_t put_wait_ms = 500;
  // Quotas per owner (tenant): pools at once, and the share of the log its pages may hold
  // (owner_usage.h: puts past it are dropped). Null: only max_pools applies.
  struct OwnerQuota {
    uint32_t max_pools = UINT32_MAX;
    uint32_t log_share_percent = 100;
  };
  std::function<OwnerQuota(std::string_view owner)> quota_of;
  // The owner given to private pools of an older device (pool record version 1), which
  // recorded none (pool_format.h).
  std::string v1_private_owner = kDefaultOwner;
};

}  // namespace tmem::pool

#endif  // TMEM_SERVER_POOL_ENGINE_OPTIONS_H_
