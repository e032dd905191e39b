// tmemd's configuration: a YAML file, then command-line flags that override it.
#ifndef TMEM_SERVER_MAIN_CONFIG_H_
#define TMEM_SERVER_MAIN_CONFIG_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flags.h"

namespace tmem::daemon {

struct Config {
  std::string device_path;           // device.path / --device (required)
  uint64_t device_size_bytes = 0;    // device.size / --device-size: create a file this large if absent
  uint32_t segment_bytes = 1 << 20;  // device.segment_size / --segment-size
  bool segment_bytes_set = false;    // given explicitly: an existing device must match
  std::string metadata_dir;          // metadata_dir / --metadata-dir (default: <device>.index)
  std::vector<std::string> listen = {"127.0.0.1:7070"};  // listen / --listen (comma-separated)
  std::string metrics_listen = "127.0.0.1:9464";         // metrics_listen / --metrics-listen ("" = off)
  std::string log_level = "info";                        // log_level / --log-level
  int64_t shutdown_timeout_ms = 10000;                   // shutdown_timeout_ms / --shutdown-timeout-ms
  int rpc_threads = 16;  // rpc_threads / --rpc-threads: gRPC handler threads kept alive (1..1024)
  // index_cache_entries / --index-cache-entries: page index entries kept in RAM (about 100
  // bytes each; 0 = off).
  uint64_t index_cache_entries = 1 << 20;
  bool format = false;  // --format only: format a device that is foreign, corrupt or of another geometry

  // NBD block exports.
  struct ExportConfig {
    std::string name;
    std::string backend;        // a path, file:PATH, nbd://HOST[:PORT]/NAME, nbd+unix:///NAME?socket=PATH
    uint64_t size_bytes = 0;    // a file backend that does not exist is created this large
    bool read_only = false;
    std::string description;
    // A writeback cache in front of the backend (docs/blockcache.md): exports[].cache /
    // --export-cache=PATH[:SIZE]. Empty device = no cache.
    struct Cache {
      std::string device;              // file or block device; a file that does not exist is created
      uint64_t size_bytes = 0;         // size of a cache file to create
      int64_t barrier_deadline_us = 0;    // a flush waits this long for others to share its sync
      uint32_t migrate_batch_segments = 8;
      int64_t migrate_idle_ms = 50;    // write back once reads and writes pause this long (or when room runs low)
      int64_t migrate_max_age_ms = 30'000;  // ... or whatever the load once dirty data is this old (0: no bound)
      int64_t full_write_timeout_ms = 60'000;  // a full cache fails writes (EIO) once write-back has failed this long
      int64_t buffer_deadline_ms = 5;  // a partly filled RAM segment buffer is written after this long
      bool read_cache = false;         // keep lines read from the backend (clean) in the cache
      uint32_t read_cache_threshold_lines = 32;  // ... except in sequential runs longer than this
      uint64_t ram_cache_bytes = 0;    // RAM copy of hot lines (0: none) / --export-cache-ram
    } cache;
  };
  std::vector<ExportConfig> exports;                     // exports: [...] / --export=NAME=BACKEND[:SIZE]
  std::vector<std::string> nbd_listen = {"127.0.0.1:10809"};  // nbd.listen / --nbd-listen ("" = no TCP)
  std::string nbd_unix_socket;                           // nbd.unix_socket / --nbd-unix-socket
  int nbd_max_connections = 64;                          // nbd.max_connections
  uint64_t nbd_max_bytes_in_flight = 64ull << 20;        // nbd.max_bytes_in_flight (per connection)
  int nbd_max_requests_in_flight = 128;                  // nbd.max_requests_in_flight (per connection)
  int nbd_threads_per_connection = 16;                   // nbd.threads_per_connection
  int nbd_gather_us = 30;                                // nbd.gather_us
};

// The flags tmemd accepts (value flags, then boolean flags).
const std::set<std::string>& ValueFlags();
const std::set<std::string>& BoolFlags();

// Reads `path` (YAML). Unknown keys and malformed values are InvalidArgument naming the key.
absl::StatusOr<Config> LoadConfigFile(const std::string& path, Config base = {});
// Applies the flags over `base`, then checks the result.
absl::StatusOr<Config> ApplyFlags(const Flags& flags, Config base);

}  // namespace tmem::daemon

#endif  // TMEM_SERVER_MAIN_CONFIG_H_
