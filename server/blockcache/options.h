// What a block cache is opened with, and its runtime tunables. Every option's key, range and
// help are in cache_settings.h (one table for the config file, the flags and Admin).
#ifndef TMEM_SERVER_BLOCKCACHE_OPTIONS_H_
#define TMEM_SERVER_BLOCKCACHE_OPTIONS_H_

#include <cstdint>

#include "server/backend/block_backend.h"
#include "server/io/block_device.h"
#include "server/log/segment_log.h"

namespace tmem::blockcache {

// Runtime tunables (BlockCache::SetTunables, Admin SET_TUNABLES).
struct Tunables {
  int64_t barrier_deadline_us = 0;  // a flush waits this long for others to share its sync
  uint32_t migrate_batch_segments = 8;
  // Migration runs when the foreground (reads and writes) has been idle this long, at once when
  // fewer than `migrate_free_segments_low` segments remain free, and regardless of load once the
  // oldest dirty line has waited `migrate_max_age_ms` (0: no bound); in between it waits.
  int64_t migrate_idle_ms = 50;
  uint32_t migrate_free_segments_low = 0;  // 0: a quarter of the log
  int64_t migrate_max_age_ms = 30'000;
};

struct BlockCacheOptions {
  io::BlockDevice* cache_device = nullptr;   // borrowed; must outlive the cache
  backend::BlockBackend* backing = nullptr;  // borrowed; its size must be a multiple of 4 KiB
  // A cache device that holds anything but this export's cache (zero-filled is fine) is
  // refused unless `format`, which discards what it holds.
  bool format = false;
  uint32_t segment_bytes = 1 << 20;  // when formatting
  log::LogOptions log;
  Tunables tunables;
  int64_t migrate_retry_ms = 200;  // after a backing store error
  // A write that finds the cache full waits for migration to make room, as long as it takes
  // while migration makes progress (a slow store); once migration has failed for this long
  // without a success (the store is down), such a write fails with EIO instead of hanging.
  int64_t full_write_timeout_ms = 60'000;
  // Copy-forward: when the log runs low on room while the foreground is busy and the dirty
  // lines would fill at most half of the log, the oldest segments' still-newest dirty lines are
  // appended again at the head (into a reserve of segments only copy-forward may use) instead
  // of being written to the backing store, so writes go on at the cache device's speed; idle
  // time, MigrateNow and Drain still write everything back.
  bool copy_forward = true;
  // Read caching (off by default): lines read from the backing store are kept in the cache as
  // clean lines, except in sequential runs longer than `read_cache_threshold_lines` (a scan
  // would evict what is worth keeping; dm-writeboost's read_cache_threshold).
  bool read_cache = false;
  uint32_t read_cache_threshold_lines = 32;
  // RAM tier (0: none): a copy in RAM of up to this many bytes of recently written and read
  // lines, so that reads of hot lines need no device read (see ram_tier.h). Volatile: it only
  // spares reads, durability never depends on it.
  uint64_t ram_cache_bytes = 0;
};

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_OPTIONS_H_
