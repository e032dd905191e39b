// The block cache's settings: each tunable and option once, with its config key, range and help
// (common/settings.h). The config file's exports[].cache section, the --export-cache-* flags,
// tmemd --help, the example config and Admin SET_TUNABLES all use these tables.
#ifndef TMEM_SERVER_BLOCKCACHE_CACHE_SETTINGS_H_
#define TMEM_SERVER_BLOCKCACHE_CACHE_SETTINGS_H_

#include "absl/status/status.h"
#include "common/settings.h"
#include "server/blockcache/options.h"

namespace tmem::blockcache {

// The runtime tunables (also changeable while running: SetTunables).
const settings::Table<Tunables>& TunableSettings();
// Every option a config file sets on a cached export (the tunables included).
const settings::Table<BlockCacheOptions>& CacheSettings();

// InvalidArgument naming the first tunable out of range and its range ("migrate_idle_ms:
// 90000000000 is outside 0..86400000").
absl::Status ValidateTunables(const Tunables& t);
// The same for every option of CacheSettings, plus the internal ones (migrate_retry_ms > 0).
absl::Status ValidateCacheOptions(const BlockCacheOptions& o);

}  // namespace tmem::blockcache

#endif  // TMEM_SERVER_BLOCKCACHE_CACHE_SETTINGS_H_
