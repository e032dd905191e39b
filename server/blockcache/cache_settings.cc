#include "server/blockcache/cache_settings.h"

namespace tmem::blockcache {
namespace {

constexpr int64_t kDayMs = 86'400'000;

}  // namespace

const settings::Table<Tunables>& TunableSettings() {
  static const auto* table = [] {
    auto* t = new settings::Table<Tunables>;
    t->Int("barrier_deadline_us", "barrier-deadline-us", &Tunables::barrier_deadline_us, 0, 1'000'000,
           "A FLUSH waits this long (microseconds) for other flushes to share its device sync.")
        .Int("migrate_batch_segments", "migrate-batch-segments", &Tunables::migrate_batch_segments, 1, 4096,
             "Segments written back to the backing store per migration batch.")
        .Int("migrate_idle_ms", "migrate-idle-ms", &Tunables::migrate_idle_ms, 0, kDayMs,
             "Write back once reads and writes have paused this long (or when room runs low).")
        .Int("migrate_free_segments_low", "migrate-free-segments-low", &Tunables::migrate_free_segments_low, 0, 1 << 30,
             "Write back at once when fewer segments than this are free (0: a quarter of the log).")
        .Int("migrate_max_age_ms", "migrate-max-age-ms", &Tunables::migrate_max_age_ms, 0, 7 * kDayMs,
             "Write back whatever the load once dirty data has waited this long (0: no bound).");
    return t;
  }();
  return *table;
}

const settings::Table<BlockCacheOptions>& CacheSettings() {
  static const auto* table = [] {
    auto* t = new settings::Table<BlockCacheOptions>;
    t->Include<Tunables>(
         "", "", [](BlockCacheOptions& o) -> Tunables& { return o.tunables; }, TunableSettings())
        .Int("full_write_timeout_ms", "full-write-timeout-ms", &BlockCacheOptions::full_write_timeout_ms, 0, kDayMs,
             "A full cache fails writes (EIO) once write-back has failed this long without a success.")
        .IntFn(
            "buffer_deadline_ms", "buffer-deadline-ms", 1, 60'000,
            "A partly filled RAM segment buffer is written to the cache device after this long.",
            [](const BlockCacheOptions& o) { return o.log.flush_deadline_ns / 1'000'000; },
            [](BlockCacheOptions& o, int64_t ms) { o.log.flush_deadline_ns = ms * 1'000'000; })
        .Bool("copy_forward", "copy-forward", &BlockCacheOptions::copy_forward,
              "When room runs low under load, keep a dirty set that fits by copying it forward in the cache.")
        .Bool("read_cache", "read-cache", &BlockCacheOptions::read_cache,
              "Keep lines read from the backend in the cache (clean) ...")
        .Int("read_cache_threshold_lines", "read-cache-threshold-lines", &BlockCacheOptions::read_cache_threshold_lines,
             0, 1 << 20, "... except in sequential runs longer than this many lines.")
        .Size("ram_cache", "ram", &BlockCacheOptions::ram_cache_bytes, 0, uint64_t{1} << 50,
              "RAM copy of recently written and read lines (0: none; at most half the machine's memory).", "0");
    return t;
  }();
  return *table;
}

absl::Status ValidateTunables(const Tunables& t) { return TunableSettings().Validate(t); }

absl::Status ValidateCacheOptions(const BlockCacheOptions& o) {
  if (o.migrate_retry_ms <= 0) return absl::InvalidArgumentError("migrate_retry_ms must be positive");
  if (o.full_write_timeout_ms < 0) return absl::InvalidArgumentError("full_write_timeout_ms must be >= 0");
  if (o.log.flush_deadline_ns <= 0) return absl::InvalidArgumentError("the buffer deadline must be positive");
  return TunableSettings().Validate(o.tunables);
}

}  // namespace tmem::blockcache
