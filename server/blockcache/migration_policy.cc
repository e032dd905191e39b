#include "server/blockcache/migration_policy.h"

#include <algorithm>

namespace tmem::blockcache {
namespace {

// `ns` >= `ms` milliseconds, without multiplying `ms` (which may be as large as a setting's
// range allows).
bool AtLeastMs(int64_t ns, int64_t ms) { return ns >= 0 && ns / 1'000'000 >= ms; }

}  // namespace

MigrationDecision DecideMigration(const MigrationInputs& in) {
  const Tunables& t = in.tunables;
  const uint64_t low =
      t.migrate_free_segments_low > 0 ? t.migrate_free_segments_low : std::max<uint64_t>(2, in.segment_count / 4);
  const bool pending = in.flushed_seq > in.migrated_seq;
  const bool room_low = in.head_seq - in.migrated_seq + low >= in.segment_count;
  const bool idle = AtLeastMs(in.idle_ns, t.migrate_idle_ms);
  // Dirty data may wait for a pause in the load, but not forever.
  const bool aged = pending && t.migrate_max_age_ms > 0 && AtLeastMs(in.oldest_dirty_age_ns, t.migrate_max_age_ms);
  MigrationDecision d;
  if (!in.kicked && !(pending && (room_low || idle || aged))) {
    // Polls: writers waiting for room cannot wake the migrator (they hold no lock it shares).
    d.wait_ms = pending ? std::clamp<int64_t>(t.migrate_idle_ms / 2, 1, 10) : 10;
    return d;
  }
  d.run = true;
  // Busy and short of room with a dirty set that fits: keep it in the cache.
  d.copy_forward = in.copy_forward_enabled && room_low && !idle && in.dirty_lines * 2 < in.capacity_lines;
  return d;
}

}  // namespace tmem::blockcache
