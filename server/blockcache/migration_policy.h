// When the migrator should write back, and whether by copying forward: a pure function of the
// cache's watermarks, its load and its tunables (the clock is read by the caller), tested alone.
//
// Migration runs when dirty data is pending and one of these holds: the log is low on room
// (fewer than `migrate_free_segments_low` segments free — a quarter of the log by default), the
// foreground has been idle for `migrate_idle_ms`, or the oldest dirty data has waited
// `migrate_max_age_ms` (0: no bound); or at once when kicked (MigrateNow, new tunables).
// Copy-forward instead of write-back: when room is low while the foreground is busy and the
// dirty lines would fill at most half of the log.
#ifndef TMEM_SERVER_BLOCKCACHE_MIGRATION_POLICY_H_
#define TMEM_SERVER_BLOCKCACHE_MIGRATION_POLICY_H_

#include <cstdint>

#include "server/blockcache/options.h"

namespace tmem::blockcache {

struct MigrationInputs {
  uint64_t segment_count = 0;
  uint64_t head_seq = 0;      // newest segment handed out
  uint64_t flushed_seq = 0;   // every segment up to this is written
  uint64_t migrated_seq = 0;  // every segment up to this is in the backing store
  int64_t idle_ns = 0;        // since the foreground's last read or write
  int64_t oldest_dirty_age_ns = 0;
  uint64_t dirty_lines = 0;
  uint64_t capacity_lines = 0;  // lines the whole log holds
  bool kicked = false;
  bool copy_forward_enabled = true;
  Tunables tunables;
};

struct MigrationDecision {
  bool run = false;
  bool copy_forward = false;  // with run: copy the batch's lines forward where possible
  int64_t wait_ms = 10;       // without run: check again after this long
};

MigrationDecision DecideMigration(const MigrationInputs& in);

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_MIGRATION_POLICY_H_
